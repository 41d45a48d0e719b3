//! `tenantry user ...` (the operator's users) and `tenantry member ...` (the current tenant's
//! members). Passwords are read from standard input, never taken as arguments (those show in
//! `ps` and shell histories).

use super::context::{explain, Context};
use super::failure::usage;
use super::output::{all_pages, field, json, table};
use super::{MemberCmd, UserCmd};
use anyhow::Context as _;
use serde_json::{json, Map, Value};
use std::io::BufRead;
use tenantry_client::Client;

/// One line of standard input, without its line ending: a password.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        return Err(usage(
            "no password on standard input: pipe one line, e.g. `printf '%s\\n' \"$PW\" | tenantry ...`",
        ));
    }
    Ok(password)
}

/// A user by id (`usr_...`) or email.
async fn find_user(client: &Client, who: &str) -> anyhow::Result<Value> {
    if who.starts_with("usr_") {
        return client.get_user(who).await.map_err(|e| explain(e, None));
    }
    let email = who.trim().to_lowercase();
    let all = all_pages(|c| {
        let client = &client;
        async move { client.list_users(c.as_deref()).await }
    })
    .await
    .map_err(|e| explain(e, None))?;
    all.into_iter().find(|u| u["email"] == email.as_str()).ok_or_else(|| usage(format!("no user with email {email}")))
}

fn describe_user(u: &Value) -> String {
    let mut flags = Vec::new();
    if u["super_admin"] == true {
        flags.push("super-admin");
    }
    if u["disabled"] == true {
        flags.push("disabled");
    }
    if u["has_password"] == false {
        flags.push("no password");
    }
    let flags = if flags.is_empty() { String::new() } else { format!(" ({})", flags.join(", ")) };
    format!("{} {} {}{flags}", field(u, "id"), field(u, "email"), field(u, "name"))
}

pub async fn user(ctx: &Context, cmd: UserCmd) -> anyhow::Result<()> {
    let client = ctx.client();
    let print = |u: &Value, what: &str| {
        if ctx.json {
            json(u);
        } else {
            println!("{what} {}", describe_user(u));
        }
    };
    match cmd {
        UserCmd::Create { email, name, super_admin, password_stdin } => {
            let mut body = Map::new();
            body.insert("email".into(), json!(email));
            if let Some(n) = name {
                body.insert("name".into(), json!(n));
            }
            if super_admin {
                body.insert("super_admin".into(), json!(true));
            }
            if password_stdin {
                body.insert("password".into(), json!(password_from_stdin()?));
            }
            let u = client.create_user(&Value::Object(body)).await.map_err(|e| explain(e, None))?;
            print(&u, "created user");
        }
        UserCmd::List => {
            let all = all_pages(|c| {
                let client = &client;
                async move { client.list_users(c.as_deref()).await }
            })
            .await
            .map_err(|e| explain(e, None))?;
            if ctx.json {
                json(&json!({ "items": all }));
                return Ok(());
            }
            let yes_no = |u: &Value, f: &str| if u[f] == true { "yes".to_owned() } else { "no".to_owned() };
            let rows = all
                .iter()
                .map(|u| {
                    vec![
                        field(u, "id"),
                        field(u, "email"),
                        field(u, "name"),
                        yes_no(u, "super_admin"),
                        yes_no(u, "disabled"),
                        yes_no(u, "has_password"),
                    ]
                })
                .collect();
            table(&["ID", "EMAIL", "NAME", "SUPER-ADMIN", "DISABLED", "PASSWORD"], rows);
        }
        UserCmd::Show { user } => {
            let u = find_user(&client, &user).await?;
            print(&u, "user");
        }
        UserCmd::Disable { user, enable } => {
            let id = find_user(&client, &user).await?["id"].as_str().unwrap_or_default().to_owned();
            let body = json!({ "disabled": !enable });
            let u = client.update_user(&id, &body).await.map_err(|e| explain(e, None))?;
            print(&u, if enable { "enabled user" } else { "disabled user (signed out everywhere)" });
        }
        UserCmd::Passwd { user } => {
            let id = find_user(&client, &user).await?["id"].as_str().unwrap_or_default().to_owned();
            let body = json!({ "password": password_from_stdin()? });
            let u = client.update_user(&id, &body).await.map_err(|e| explain(e, None))?;
            print(&u, "new password for user (signed out everywhere)");
        }
    }
    Ok(())
}

pub async fn member(ctx: &Context, cmd: MemberCmd) -> anyhow::Result<()> {
    let (client, t) = ctx.tenant_client().await?;
    let slug = t.slug.as_str();
    let fail = |e| explain(e, Some(slug));
    match cmd {
        MemberCmd::Add { email, role } => {
            let body = json!({ "email": email, "role": role });
            let added = client.add_member(&body).await.map_err(fail)?;
            if ctx.json {
                json(&added);
                return Ok(());
            }
            match added["status"].as_str() {
                Some("member") => println!("[{slug}] added {} as {}", field(&added, "email"), field(&added, "role")),
                _ => {
                    let inv = &added["invitation"];
                    println!(
                        "[{slug}] invited {} as {} (until {})",
                        field(&added, "email"),
                        field(&added, "role"),
                        field(inv, "expires_at")
                    );
                    println!("  invitation token (shown once; the person accepts it with POST /v1/auth/accept):");
                    println!("  {}", field(inv, "token"));
                }
            }
        }
        MemberCmd::List => {
            let list = client.list_members().await.map_err(fail)?;
            if ctx.json {
                json(&list);
                return Ok(());
            }
            println!("[{slug}] members");
            let rows = list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| ["user_id", "email", "name", "role", "created_at"].iter().map(|f| field(m, f)).collect())
                .collect();
            table(&["USER", "EMAIL", "NAME", "ROLE", "SINCE"], rows);
            let pending = list["invitations"].as_array().cloned().unwrap_or_default();
            if !pending.is_empty() {
                println!("[{slug}] invitations not accepted yet");
                let rows = pending
                    .iter()
                    .map(|i| ["id", "email", "role", "expires_at"].iter().map(|f| field(i, f)).collect())
                    .collect();
                table(&["ID", "EMAIL", "ROLE", "EXPIRES"], rows);
            }
        }
        MemberCmd::SetRole { user, role } => {
            let m = client.set_member_role(&user, &role).await.map_err(fail)?;
            if ctx.json {
                json(&m);
                return Ok(());
            }
            println!("[{slug}] {} is now {}", field(&m, "email"), field(&m, "role"));
        }
        MemberCmd::Rm { user } => {
            if user.starts_with("inv_") {
                client.withdraw_invitation(&user).await.map_err(fail)?;
            } else {
                client.remove_member(&user).await.map_err(fail)?;
            }
            if ctx.json {
                json(&json!({ "id": user, "removed": true }));
                return Ok(());
            }
            println!("[{slug}] removed {user}");
        }
    }
    Ok(())
}
