//! `tenantry key ...`, `tenantry whoami` and `tenantry audit`: acting on the current tenant.

use super::context::{explain, Context};
use super::output::{field, json, table};
use super::{AuditArgs, AuditCmd, KeyCmd};
use anyhow::bail;
use serde_json::{json, Map, Value};

pub async fn run(ctx: &Context, cmd: KeyCmd) -> anyhow::Result<()> {
    let (client, t) = ctx.tenant_client().await?;
    let slug = t.slug.as_str();
    match cmd {
        KeyCmd::Create { name, role, prefix, expires_at } => {
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            body.insert("role".into(), json!(role));
            if let Some(p) = prefix {
                body.insert("prefix".into(), json!(p));
            }
            if let Some(e) = expires_at {
                body.insert("expires_at".into(), json!(e));
            }
            let k = client.create_key(&Value::Object(body)).await.map_err(|e| explain(e, Some(slug)))?;
            if ctx.json {
                json(&k);
                return Ok(());
            }
            println!(
                "[{slug}] created key {} ({}, role {}, prefix {})",
                field(&k, "id"),
                field(&k, "name"),
                field(&k, "role"),
                field(&k, "prefix")
            );
            println!("  secret (shown once, keep it safe): {}", field(&k, "key"));
        }
        KeyCmd::List => {
            let keys = client.list_keys().await.map_err(|e| explain(e, Some(slug)))?;
            if ctx.json {
                json(&keys);
                return Ok(());
            }
            println!("[{slug}] keys");
            let rows = keys["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|k| {
                    ["id", "name", "role", "prefix", "created_at", "expires_at", "revoked_at"]
                        .iter()
                        .map(|f| field(k, f))
                        .collect()
                })
                .collect();
            table(&["ID", "NAME", "ROLE", "PREFIX", "CREATED", "EXPIRES", "REVOKED"], rows);
        }
        KeyCmd::Revoke { id } => {
            client.revoke_key(&id).await.map_err(|e| explain(e, Some(slug)))?;
            if ctx.json {
                json(&json!({ "id": id, "revoked": true }));
                return Ok(());
            }
            println!("[{slug}] revoked key {id}");
        }
    }
    Ok(())
}

pub async fn whoami(ctx: &Context) -> anyhow::Result<()> {
    let (client, t) = ctx.tenant_client().await?;
    let me = client.whoami().await.map_err(|e| explain(e, Some(&t.slug)))?;
    if ctx.json {
        json(&me);
        return Ok(());
    }
    let key = &me["key"];
    println!("[{}] tenant {} ({})", t.slug, field(&me["tenant"], "name"), field(&me["tenant"], "status"));
    if key["operator"] == Value::Bool(true) {
        println!("  operator key");
    } else {
        println!("  key {} role {} prefix {}", field(key, "id"), field(key, "role"), field(key, "prefix"));
    }
    Ok(())
}

pub async fn audit(ctx: &Context, args: AuditArgs) -> anyhow::Result<()> {
    let (client, t) = ctx.tenant_client().await?;
    let slug = t.slug.as_str();
    if let Some(AuditCmd::Verify) = args.cmd {
        let report = client.verify_audit().await.map_err(|e| explain(e, Some(slug)))?;
        let ok = report["ok"] == Value::Bool(true);
        if ctx.json {
            json(&report);
        } else if ok {
            println!("[{slug}] audit chain intact: {} entries verified", field(&report, "entries"));
            if let Some(anchor) = report.get("anchor").filter(|a| !a.is_null()) {
                println!(
                    "  entries through seq {} (the last written {}) were pruned; the rest verify from its hash {}",
                    field(anchor, "seq"),
                    field(anchor, "at"),
                    field(anchor, "hash")
                );
            }
        } else {
            println!(
                "[{slug}] audit chain BROKEN at seq {}: {}",
                field(&report, "first_broken_seq"),
                field(&report, "reason")
            );
        }
        if !ok {
            bail!("audit chain of '{slug}' is broken at seq {}", field(&report, "first_broken_seq"));
        }
        return Ok(());
    }
    let mut q = format!("?limit={}", args.limit);
    if let Some(a) = args.after {
        q.push_str(&format!("&after={a}"));
    }
    if let Some(a) = &args.action {
        q.push_str(&format!("&action={}", tenantry_client::encode_query(a)));
    }
    let page = client.audit(&q).await.map_err(|e| explain(e, Some(slug)))?;
    if ctx.json {
        json(&page);
        return Ok(());
    }
    println!("[{slug}] audit log");
    let rows = page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| ["seq", "at", "actor", "action", "target", "result", "ip"].iter().map(|f| field(e, f)).collect())
        .collect();
    table(&["SEQ", "AT", "ACTOR", "ACTION", "TARGET", "RESULT", "IP"], rows);
    if let Some(c) = page["next_cursor"].as_str() {
        println!("  more: --after {c}");
    }
    Ok(())
}
