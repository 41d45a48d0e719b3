//! `tenantry db ...`: preparing a PostgreSQL database. `--url` names the database here (the
//! global option, which names the server for every other command), else TENANTRY_DATABASE_URL.

use super::context::Context;
use super::failure::{usage, Failure, EXIT_FAILED};
use super::output::json;
use super::DbCmd;
use serde_json::json;

/// The database URL: --url when it is a PostgreSQL one, else TENANTRY_DATABASE_URL.
fn database_url(ctx: &Context) -> anyhow::Result<String> {
    let is_postgres = |u: &str| u.starts_with("postgres://") || u.starts_with("postgresql://");
    if is_postgres(&ctx.url) {
        return Ok(ctx.url.clone());
    }
    match std::env::var("TENANTRY_DATABASE_URL") {
        Ok(u) if is_postgres(&u) => Ok(u),
        _ => Err(usage("name the database: --url postgres://ROLE@HOST/DATABASE (or TENANTRY_DATABASE_URL)")),
    }
}

pub async fn run(ctx: &Context, cmd: DbCmd) -> anyhow::Result<()> {
    match cmd {
        DbCmd::Migrate { app_role } => {
            let url = database_url(ctx)?;
            let done = tenantry_store_postgres::migrate_url(&url, &app_role)
                .await
                .map_err(|e| Failure::error(EXIT_FAILED, e.code.as_str(), e.message))?;
            if ctx.json {
                json(&json!({"from": done.from, "to": done.to, "app_role": app_role}));
            } else if done.from == done.to {
                println!("[db] schema version {} is current; {app_role} has row access to every table", done.to);
            } else {
                println!(
                    "[db] schema version {} → {}; {app_role} has row access to every table (and owns none)",
                    done.from, done.to
                );
            }
        }
    }
    Ok(())
}
