//! `tenantry db ...`: preparing a PostgreSQL database, and copying an embedded install into one.
//! `--url` names the database for `migrate` (the global option, which names the server for every
//! other command), else TENANTRY_DATABASE_URL; `copy` takes `--from` and `--to`.

use super::context::Context;
use super::failure::{usage, Failure, EXIT_FAILED, REPORTED};
use super::output::json;
use super::DbCmd;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use tenantry_core::image::{
    copy_people, copy_tenant, prepare_copy, table_index, CopyOutcome, ImageSource, ImageSummary, PEOPLE_TABLES,
};
use tenantry_store_postgres::PgImages;
use tenantry_store_sqlite::{OpenOptions, SqliteStore};

/// The database URL: --url when it is a PostgreSQL one, else TENANTRY_DATABASE_URL.
fn database_url(ctx: &Context) -> anyhow::Result<String> {
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
            let (done, dedicated) = tenantry_store_postgres::migrate_url(&url, &app_role)
                .await
                .map_err(|e| Failure::error(EXIT_FAILED, e.code.as_str(), e.message))?;
            let and_dedicated = match dedicated {
                0 => String::new(),
                n => format!(" (and in the {n} dedicated tenants' databases)"),
            };
            if ctx.json {
                json(
                    &json!({"from": done.from, "to": done.to, "app_role": app_role, "dedicated_databases": dedicated}),
                );
            } else if done.from == done.to {
                println!(
                    "[db] schema version {} is current{and_dedicated}; {app_role} has row access to every table",
                    done.to
                );
            } else {
                println!(
                    "[db] schema version {} → {}{and_dedicated}; {app_role} has row access to every table (and owns none)",
                    done.from, done.to
                );
            }
        }
        DbCmd::Copy { from, to } => copy(ctx, &from, &to).await?,
    }
    Ok(())
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `db copy`: every tenant of the install at `from`, one at a time, each in one transaction of the
/// database at `to`; a tenant that fails is reported and the others go on.
async fn copy(ctx: &Context, from: &Path, to: &str) -> anyhow::Result<()> {
    if !is_postgres(to) {
        return Err(usage("--to names the database: postgres://OWNER@HOST/DATABASE"));
    }
    if !from.join("tenantry.db").is_file() {
        return Err(usage(format!("{} is not a Tenantry data directory (it has no tenantry.db)", from.display())));
    }
    let target = PgImages::connect(to).await.map_err(|e| Failure::error(EXIT_FAILED, e.code.as_str(), e.message))?;
    let data = from.to_owned();
    let source = tokio::task::spawn_blocking(move || SqliteStore::open(&data, OpenOptions::default()))
        .await?
        .map_err(|e| Failure::error(EXIT_FAILED, e.code.as_str(), format!("{}: {}", from.display(), e.message)))?;
    let source = Arc::new(source);
    let outcome = copy_all(ctx, source.as_ref(), &target).await;
    let closed = tenantry_core::store::Health::close(source.as_ref()).await;
    let (copied, there, failed) = outcome?;
    closed.map_err(|e| Failure::error(EXIT_FAILED, e.code.as_str(), e.message))?;
    if failed > 0 {
        return Err(Failure::error(
            EXIT_FAILED,
            if ctx.json { REPORTED } else { "copy_incomplete" },
            format!("{failed} tenant(s) not copied ({copied} copied, {there} there already): see above; run the copy again once fixed"),
        ));
    }
    Ok(())
}

/// What the people step did, in a line.
fn people_line(p: &tenantry_core::image::PeopleCopied) -> String {
    let each = |counts: &[u64]| {
        PEOPLE_TABLES.iter().zip(counts).map(|(t, n)| format!("{n} {}", t.name)).collect::<Vec<_>>().join(", ")
    };
    if p.added.iter().any(|n| *n > 0) || p.rows.iter().all(|n| *n == 0) {
        return format!("[db copy] people copied: {}; every one matches its source", each(&p.added));
    }
    let mut line = format!("[db copy] people there already: {} as in the source", each(&p.rows[..1]));
    let gone: u64 = p.not_there[1..].iter().sum();
    if gone > 0 {
        line.push_str(&format!(
            "; not there, and not carried: {} (ended or used there since the first copy, or made here after it)",
            PEOPLE_TABLES[1..]
                .iter()
                .zip(&p.not_there[1..])
                .map(|(t, n)| format!("{n} {}", t.name))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    line
}

/// What a line (or JSON object) says of a tenant's image.
fn described(s: &ImageSummary) -> (String, serde_json::Value) {
    let count = |table: &str| s.rows[table_index(table)];
    let text = format!(
        "{} keys, {} members, {} files ({} bytes), {} memory entries, {} events, {} webhooks ({} deliveries queued), {} audit entries (chain {})",
        count("keys"),
        count("memberships"),
        s.files,
        s.file_bytes,
        count("memory"),
        count("events"),
        count("webhooks"),
        count("webhook_outbox"),
        count("audit"),
        if s.audit.ok { "verifies" } else { "does NOT verify, as in the source" }
    );
    let rows: serde_json::Map<String, serde_json::Value> =
        tenantry_core::image::TABLES.iter().zip(&s.rows).map(|(t, n)| (t.name.to_owned(), json!(n))).collect();
    let value = json!({
        "slug": s.slug, "sha256": s.sha256, "rows": rows, "files": s.files, "file_bytes": s.file_bytes,
        "audit_entries": s.audit.entries, "audit_chain_verifies": s.audit.ok,
    });
    (text, value)
}

async fn copy_all(ctx: &Context, source: &SqliteStore, target: &PgImages) -> anyhow::Result<(u64, u64, u64)> {
    let fail = |e: tenantry_core::Error| Failure::error(EXIT_FAILED, e.code.as_str(), e.message);
    // As a server's start does: a dedicated tenant's settings, written first in its own database,
    // are made the registry's too (a crash may have come between the two writes).
    tenantry_core::store::Upkeep::load_directory(source).await.map_err(fail)?;
    let tenants = source.image_tenants().await.map_err(fail)?;
    let held = prepare_copy(source, target).await.map_err(fail)?;
    // People first: the install's users, sessions and invitations, all or none, so the tenants'
    // memberships name users the target holds.
    let people = copy_people(source, target, &held).await.map_err(fail)?;
    let people_json: serde_json::Map<String, serde_json::Value> = PEOPLE_TABLES
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let v = json!({"rows": people.rows[i], "added": people.added[i], "not_there": people.not_there[i]});
            (t.name.to_owned(), v)
        })
        .collect();
    if !ctx.json {
        println!("{}", people_line(&people));
    }
    let (mut copied, mut there, mut failed) = (0u64, 0u64, 0u64);
    let mut report = Vec::new();
    for (n, tenant) in tenants.iter().enumerate() {
        eprintln!("[db copy] copying tenant {} of {}: {} ...", n + 1, tenants.len(), tenant.as_str());
        match copy_tenant(source, target, &held, tenant).await {
            Ok(outcome) => {
                let (text, mut value) = described(outcome.summary());
                let (what, note) = match &outcome {
                    CopyOutcome::Copied { was_dedicated, .. } => {
                        copied += 1;
                        let note = if *was_dedicated {
                            " (it had a database of its own; on PostgreSQL it is placed shared)"
                        } else {
                            ""
                        };
                        ("copied", note)
                    }
                    CopyOutcome::AlreadyThere { .. } => {
                        there += 1;
                        ("already_there", "")
                    }
                };
                value["id"] = json!(tenant.as_str());
                value["outcome"] = json!(what);
                if !ctx.json {
                    let verb = if what == "copied" {
                        "copied, matches its source"
                    } else {
                        "there already, matches its source"
                    };
                    println!("[db copy] {} ({}): {verb}: {text}{note}", outcome.summary().slug, tenant.as_str());
                }
                report.push(value);
            }
            Err(e) => {
                failed += 1;
                if !ctx.json {
                    println!("[db copy] {}: NOT copied: {} ({})", tenant.as_str(), e.message, e.code.as_str());
                }
                report.push(
                    json!({"id": tenant.as_str(), "outcome": "failed", "code": e.code.as_str(), "error": e.message}),
                );
            }
        }
    }
    if ctx.json {
        json(
            &json!({"people": people_json, "tenants": report, "copied": copied, "already_there": there, "failed": failed}),
        );
    } else {
        println!("[db copy] {} tenants: {copied} copied, {there} there already, {failed} not copied", tenants.len());
    }
    Ok((copied, there, failed))
}
