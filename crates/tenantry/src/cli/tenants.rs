//! `tenantry tenant ...`: administration with the operator key, and the active-tenant context.

use super::context::{explain, write_active_tenant, Context};
use super::failure::usage;
use super::output::{all_pages, field, human_bytes, json, table};
use super::TenantCmd;
use anyhow::{bail, Context as _};
use serde_json::{json, Map, Value};
use std::io::{BufRead, IsTerminal, Write};

fn print_tenant(ctx: &Context, t: &Value, headline: &str) {
    if ctx.json {
        return json(t);
    }
    println!("[{}] {headline}", field(t, "slug"));
    for (k, label) in [
        ("id", "id"),
        ("name", "name"),
        ("tier", "tier"),
        ("status", "status"),
        ("placement", "placement"),
        ("created_at", "created"),
    ] {
        println!("  {label:<10} {}", field(t, k));
    }
    if let Some(d) = t["domains"].as_array().filter(|d| !d.is_empty()) {
        println!("  {:<10} {}", "domains", d.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "));
    }
}

/// Asks the user to type the slug, unless `--yes`.
fn confirm(slug: &str, what: &str, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(usage(format!("refusing to {what} tenant '{slug}' without confirmation: pass --yes")));
    }
    eprint!("type the slug '{slug}' to {what} it: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != slug {
        bail!("not confirmed; nothing changed");
    }
    Ok(())
}

fn parse_json_object(s: &str, what: &str) -> anyhow::Result<Value> {
    let v: Value = serde_json::from_str(s).map_err(|e| usage(format!("{what} is not valid JSON ({e})")))?;
    if !v.is_object() {
        return Err(usage(format!("{what} must be a JSON object")));
    }
    Ok(v)
}

pub async fn run(ctx: &Context, cmd: TenantCmd) -> anyhow::Result<()> {
    let client = ctx.client();
    match cmd {
        TenantCmd::Create { slug, name, tier, placement, domains, metadata } => {
            let mut body = Map::new();
            body.insert("slug".into(), json!(slug));
            if let Some(n) = name {
                body.insert("name".into(), json!(n));
            }
            if let Some(t) = tier {
                body.insert("tier".into(), json!(t));
            }
            if let Some(p) = placement {
                body.insert("placement".into(), json!(p));
            }
            if !domains.is_empty() {
                body.insert("domains".into(), json!(domains));
            }
            if let Some(m) = metadata {
                body.insert("metadata".into(), parse_json_object(&m, "--metadata")?);
            }
            let t = client.create_tenant(&Value::Object(body)).await.map_err(|e| explain(e, Some(&slug)))?;
            if ctx.json {
                json(&t);
                return Ok(());
            }
            print_tenant(ctx, &t, "created");
            println!("  owner key (shown once, keep it safe): {}", field(&t, "owner_key"));
        }
        TenantCmd::List { status } => {
            let client = &client;
            let items = all_pages(|cursor| {
                let mut q = String::from("?limit=1000");
                if let Some(s) = &status {
                    q.push_str(&format!("&status={}", tenantry_client::encode_query(s)));
                }
                if let Some(c) = cursor {
                    q.push_str(&format!("&cursor={c}"));
                }
                async move { client.list_tenants(&q).await }
            })
            .await
            .map_err(|e| explain(e, None))?;
            if ctx.json {
                json(&json!({ "items": items }));
                return Ok(());
            }
            let rows = items
                .iter()
                .map(|t| {
                    ["slug", "name", "tier", "status", "placement", "created_at"].iter().map(|k| field(t, k)).collect()
                })
                .collect();
            table(&["SLUG", "NAME", "TIER", "STATUS", "PLACEMENT", "CREATED"], rows);
        }
        TenantCmd::Show { slug } => {
            let slug = match slug {
                Some(s) => s,
                None => ctx.resolve().await?.slug,
            };
            let t = client.show_tenant(&slug).await.map_err(|e| explain(e, Some(&slug)))?;
            print_tenant(ctx, &t, "tenant");
            if !ctx.json {
                println!("  limits     {}", t["limits"]);
                println!("  quotas     {}", t["quotas"]);
                println!("  metadata   {}", t["metadata"]);
            }
        }
        TenantCmd::Update { slug, name, tier, quotas, metadata, domains, clear_domains } => {
            let mut patch = Map::new();
            if let Some(n) = name {
                patch.insert("name".into(), json!(n));
            }
            if let Some(t) = tier {
                patch.insert("tier".into(), json!(t));
            }
            if !quotas.is_empty() {
                let mut q = Map::new();
                for pair in quotas {
                    let (k, v) =
                        pair.split_once('=').ok_or_else(|| usage(format!("--quota {pair:?}: use NAME=VALUE")))?;
                    let v: Value = serde_json::from_str(v.trim())
                        .map_err(|_| usage(format!("--quota {pair:?}: VALUE must be a number, true, false or null")))?;
                    q.insert(k.trim().to_owned(), v);
                }
                patch.insert("quotas".into(), Value::Object(q));
            }
            if let Some(m) = metadata {
                patch.insert("metadata".into(), parse_json_object(&m, "--metadata")?);
            }
            if clear_domains || !domains.is_empty() {
                patch.insert("domains".into(), json!(domains));
            }
            if patch.is_empty() {
                return Err(usage("nothing to change: give --name, --tier, --quota, --metadata or --domain"));
            }
            let t = client.update_tenant(&slug, &Value::Object(patch)).await.map_err(|e| explain(e, Some(&slug)))?;
            print_tenant(ctx, &t, "updated");
        }
        TenantCmd::Suspend { slug } => action(ctx, &slug, "suspend", "suspended").await?,
        TenantCmd::Resume { slug } => action(ctx, &slug, "resume", "resumed").await?,
        TenantCmd::Restore { slug } => action(ctx, &slug, "restore", "restored").await?,
        TenantCmd::Delete { slug, yes } => {
            confirm(&slug, "archive", yes)?;
            let t = client.archive_tenant(&slug).await.map_err(|e| explain(e, Some(&slug)))?;
            print_tenant(ctx, &t, "archived: keys stop working, data kept (`tenantry tenant restore` undoes it)");
        }
        TenantCmd::Purge { slug, yes } => {
            confirm(&slug, "purge", yes)?;
            client.purge_tenant(&slug).await.map_err(|e| explain(e, Some(&slug)))?;
            if ctx.json {
                json(&json!({ "slug": slug, "purged": true }));
            } else {
                println!("[{slug}] purged: every byte of its data is erased");
            }
        }
        TenantCmd::Usage { slug, from, to, granularity, csv } => {
            let slug = match slug {
                Some(s) => s,
                None => ctx.resolve().await?.slug,
            };
            let mut q = format!("?granularity={}", tenantry_client::encode_query(&granularity));
            for (name, v) in [("from", &from), ("to", &to)] {
                if let Some(v) = v {
                    q.push_str(&format!("&{name}={}", tenantry_client::encode_query(v)));
                }
            }
            if let Some(file) = csv {
                let bytes = client.tenant_usage_csv(&slug, &q).await.map_err(|e| explain(e, Some(&slug)))?;
                std::fs::write(&file, &bytes).with_context(|| format!("cannot write {}", file.display()))?;
                if ctx.json {
                    json(&json!({ "tenant": slug, "csv": file, "bytes": bytes.len() }));
                } else {
                    println!(
                        "[{slug}] usage written to {} ({} lines)",
                        file.display(),
                        bytes.iter().filter(|b| **b == b'\n').count()
                    );
                }
                return Ok(());
            }
            let report = client.tenant_usage(&slug, &q).await.map_err(|e| explain(e, Some(&slug)))?;
            if ctx.json {
                json(&report);
                return Ok(());
            }
            print_usage(&slug, &report);
        }
        TenantCmd::Switch { slug: None, .. } => {
            let path = write_active_tenant(None)?;
            if ctx.json {
                json(&json!({ "tenant": null, "config": path }));
            } else {
                println!(
                    "no active tenant now (cleared in {}): commands act on --tenant or TENANTRY_TENANT, else the \
                     key's own tenant, else the only tenant besides default, else default",
                    path.display()
                );
            }
        }
        TenantCmd::Switch { slug: Some(slug), .. } => {
            // Check that the key can act on it before making it the default.
            let c = client.with_tenant(Some(slug.clone()));
            let me = c.whoami().await.map_err(|e| explain(e, Some(&slug)))?;
            let path = write_active_tenant(Some(&slug))?;
            if ctx.json {
                json(&json!({ "tenant": slug, "config": path, "whoami": me }));
            } else {
                println!("[{slug}] is now the active tenant (saved in {})", path.display());
            }
        }
        TenantCmd::Export { slug, output, include_secrets } => {
            let path = format!(
                "/v1/tenants/{}/export{}",
                tenantry_client::encode_query(&slug),
                if include_secrets { "?include_secrets=true" } else { "" }
            );
            // Written beside the target and renamed once verified: a failed export never leaves a
            // file that looks like a bundle.
            let partial = output.with_extension("tenantry.partial");
            let file =
                std::fs::File::create(&partial).with_context(|| format!("cannot write {}", partial.display()))?;
            let mut sink = super::export_sink::ExportSink::new(file);
            let bar = if ctx.json { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new_spinner() };
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {bytes} {binary_bytes_per_sec} {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            let got = client.download(&path, &mut sink, |n| bar.set_position(n)).await;
            bar.finish_and_clear();
            let bytes = match got {
                Ok(n) => n,
                Err(e) => {
                    let _ = std::fs::remove_file(&partial);
                    return Err(explain(e, Some(&slug)));
                }
            };
            let manifest = match sink.finish()? {
                Ok(m) => m,
                Err(e) => {
                    let _ = std::fs::remove_file(&partial);
                    bail!("the export of '{slug}' did not verify ({e}); see the server log, then try again");
                }
            };
            std::fs::rename(&partial, &output).with_context(|| format!("cannot write {}", output.display()))?;
            if ctx.json {
                json(&json!({ "tenant": slug, "output": output, "bytes": bytes, "manifest": manifest }));
            } else {
                let records: Vec<String> = manifest.records.iter().map(|(k, n)| format!("{n} {k}")).collect();
                println!(
                    "[{slug}] exported to {} ({}): {} files ({}), {}; verified",
                    output.display(),
                    super::output::human_bytes(bytes),
                    manifest.files,
                    super::output::human_bytes(manifest.file_bytes),
                    if records.is_empty() { "no records".to_owned() } else { records.join(", ") }
                );
            }
        }
        TenantCmd::Import { slug, bundle, on_conflict, settings } => {
            let file = std::fs::File::open(&bundle).with_context(|| format!("cannot read {}", bundle.display()))?;
            let total = file.metadata().map(|m| m.len()).unwrap_or(0);
            let bar = if ctx.json { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(total) };
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let path = format!(
                "/v1/tenants/{}/import?on_conflict={}&settings={}",
                tenantry_client::encode_query(&slug),
                tenantry_client::encode_query(&on_conflict),
                tenantry_client::encode_query(&settings)
            );
            let progress = {
                let bar = bar.clone();
                std::sync::Arc::new(move |n: u64| bar.set_position(n))
            };
            let sent = client.upload(&path, Box::new(std::io::BufReader::new(file)), progress).await;
            bar.finish_and_clear();
            let report = sent.map_err(|e| explain(e, Some(&slug)))?;
            if ctx.json {
                json(&report);
            } else {
                print_import_report(&slug, &bundle, &report);
            }
        }
        TenantCmd::Move { slug, to } => {
            let bar = if ctx.json { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(0) };
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let moving = {
                let (c, slug) = (client.clone(), slug.clone());
                tokio::spawn(async move { c.move_tenant(&slug, &to).await })
            };
            // The server answers when the move is done; meanwhile its progress is polled.
            while !moving.is_finished() {
                if let Ok(status) = client.move_status(&slug).await {
                    bar.set_length(status["total_bytes"].as_u64().unwrap_or(0));
                    bar.set_position(status["copied_bytes"].as_u64().unwrap_or(0));
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            bar.finish_and_clear();
            let report = moving.await.context("the move request failed")?.map_err(|e| explain(e, Some(&slug)))?;
            if ctx.json {
                json(&report);
            } else {
                println!(
                    "[{slug}] moved {} -> {}: {} files ({}), writes paused {} ms, {}",
                    field(&report, "from"),
                    field(&report, "to"),
                    report["files"],
                    super::output::human_bytes(report["file_bytes"].as_u64().unwrap_or(0)),
                    report["fence_ms"],
                    if report["verified"] == Value::Bool(true) {
                        "verified".to_owned()
                    } else {
                        "NOT verified: the old copy was kept, see the server log".to_owned()
                    }
                );
            }
        }
        TenantCmd::Status => {
            let (c, resolved) = ctx.tenant_client().await?;
            let me = c.whoami().await.map_err(|e| explain(e, Some(&resolved.slug)))?;
            if ctx.json {
                json(&json!({ "tenant": resolved.slug, "source": resolved.source, "url": ctx.url, "whoami": me }));
                return Ok(());
            }
            println!("[{}] acting on this tenant: {}", resolved.slug, resolved.source);
            println!("  server     {}", ctx.url);
            let key = &me["key"];
            let who = if key["operator"] == Value::Bool(true) {
                "operator key".to_owned()
            } else {
                format!("key {} ({})", field(key, "id"), field(key, "role"))
            };
            println!("  acting as  {who}");
            println!("  status     {}", field(&me["tenant"], "status"));
        }
    }
    Ok(())
}

fn print_import_report(slug: &str, bundle: &std::path::Path, r: &Value) {
    let counts = |v: &Value| {
        let parts: Vec<String> = ["created", "replaced", "renamed", "skipped", "unchanged"]
            .iter()
            .filter_map(|k| v[*k].as_u64().filter(|n| *n > 0).map(|n| format!("{n} {k}")))
            .collect();
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    };
    println!("[{slug}] imported {} (on_conflict={})", bundle.display(), field(r, "on_conflict"));
    println!("  files      {} ({} written)", counts(&r["files"]), human_bytes(r["file_bytes"].as_u64().unwrap_or(0)));
    println!("  memory     {}", counts(&r["memory"]));
    println!("  webhooks   {}", counts(&r["webhooks"]));
    println!("  settings   {}", field(r, "settings"));
    for change in r["settings_changed"].as_array().into_iter().flatten() {
        println!("  changed    {}: {} → {}", field(change, "setting"), change["from"], change["to"]);
    }
    for item in r["renamed"].as_array().into_iter().flatten() {
        println!("  renamed    {} -> {}", field(item, "from"), field(item, "to"));
    }
    for note in r["notes"].as_array().into_iter().flatten() {
        println!("  note       {}", note.as_str().unwrap_or_default());
    }
}

async fn action(ctx: &Context, slug: &str, verb: &str, done: &str) -> anyhow::Result<()> {
    let t = ctx.client().tenant_action(slug, verb).await.map_err(|e| explain(e, Some(slug)))?;
    print_tenant(ctx, &t, done);
    Ok(())
}

/// Limits and use as a table, then a bar per day (or month) of API calls.
fn print_usage(slug: &str, r: &Value) {
    println!(
        "[{slug}] usage {} → {} (tier {})",
        field(&r["period"], "from"),
        field(&r["period"], "to"),
        field(r, "tier")
    );
    let rows = [
        ("storage_bytes", "max_storage_bytes"),
        ("files", "max_files"),
        ("keys", "max_keys"),
        ("api_calls", "max_api_calls_month"),
        ("reads", ""),
        ("writes", ""),
        ("bytes_in", ""),
        ("bytes_out", ""),
        ("searches", ""),
    ]
    .iter()
    .map(|(u, l)| {
        let shown = |v: &Value| match (v.as_u64(), u.contains("bytes")) {
            (Some(n), true) => human_bytes(n),
            (None, _) if v.is_null() => "unlimited".to_owned(),
            _ => v.to_string(),
        };
        let limit = if l.is_empty() { String::new() } else { shown(&r["limits"][l]) };
        vec![u.to_string(), shown(&r["usage"][u]), limit]
    })
    .collect();
    table(&["", "USED", "LIMIT"], rows);
    let series = r["series"].as_array().cloned().unwrap_or_default();
    let max = series.iter().filter_map(|p| p["api_calls"].as_u64()).max().unwrap_or(0);
    let Some(first) = series.first() else { return };
    // A month is named `2026-11`, a day `2026-11-23`.
    let per = if field(first, "period").len() == 7 { "month" } else { "day" };
    println!("API calls per {per} (a full bar is {max})");
    for p in &series {
        let n = p["api_calls"].as_u64().unwrap_or(0);
        let width = if max == 0 { 0 } else { ((n as f64 / max as f64) * 40.0).round() as usize };
        println!("  {:<10} {:>8}  {}", field(p, "period"), n, "█".repeat(width));
    }
}
