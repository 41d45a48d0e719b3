//! `tenantry migrate --from DIR [--dry-run]` (API.md §9): copies a single-tenant folder into the
//! current tenant's files, paths relative to DIR. Names that are not valid tenant paths are
//! reported, never silently dropped; a file already there with the same content (same SHA-256,
//! the ETag) is left alone, so running it twice changes nothing the second time.

use super::context::{explain, Context};
use super::failure::usage;
use super::output::{all_pages, human_bytes, json};
use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tenantry_core::path::TenantPath;

/// What migrate found for one entry of DIR.
enum Found {
    File {
        local: PathBuf,
        path: String,
        size: u64,
    },
    /// Not copied, with the reason (an invalid name, a symlink, a special file).
    Skipped {
        local: PathBuf,
        why: String,
    },
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Found>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let local = entry.path();
        let kind = entry.file_type().with_context(|| format!("cannot stat {}", local.display()))?;
        if kind.is_symlink() {
            out.push(Found::Skipped { local, why: "a symbolic link (not followed)".into() });
        } else if kind.is_dir() {
            walk(root, &local, out)?;
        } else if !kind.is_file() {
            out.push(Found::Skipped { local, why: "not a regular file".into() });
        } else {
            let rel = local.strip_prefix(root).unwrap_or(&local);
            let parts: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
            let Some(parts) = parts else {
                out.push(Found::Skipped { local, why: "the name is not UTF-8".into() });
                continue;
            };
            let raw = format!("/{}", parts.join("/"));
            match TenantPath::parse(&raw) {
                Ok(p) => {
                    let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    out.push(Found::File { local, path: p.as_str().to_owned(), size });
                }
                Err(e) => out.push(Found::Skipped { local, why: e.message }),
            }
        }
    }
    Ok(())
}

fn content_type(path: &str) -> Option<&'static str> {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase())?;
    Some(match ext.as_str() {
        "txt" | "log" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "json" => "application/json",
        "yaml" | "yml" => "application/yaml",
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        _ => return None,
    })
}

fn etag_of_file(path: &Path) -> anyhow::Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("\"{}\"", hex::encode(h.finalize())))
}

pub async fn run(ctx: &Context, from: PathBuf, dry_run: bool) -> anyhow::Result<()> {
    if !from.is_dir() {
        return Err(usage(format!("{} is not a directory: pass the folder to import with --from", from.display())));
    }
    let (client, t) = ctx.tenant_client().await?;
    let slug = t.slug.as_str();
    let mut found = Vec::new();
    walk(&from, &from, &mut found)?;

    // What the tenant already holds: path → ETag.
    let lister = &client;
    let remote_items = all_pages(|cursor| async move { lister.list_files("/", true, cursor.as_deref()).await })
        .await
        .map_err(|e| explain(e, Some(slug)))?;
    let remote: HashMap<String, String> = remote_items
        .iter()
        .filter_map(|f| Some((f["path"].as_str()?.to_owned(), f["etag"].as_str()?.to_owned())))
        .collect();

    let mut plan: Vec<(PathBuf, String, u64, &'static str)> = Vec::new();
    let mut skipped: Vec<Value> = Vec::new();
    for f in found {
        match f {
            Found::Skipped { local, why } => skipped.push(json!({ "local": local.to_string_lossy(), "reason": why })),
            Found::File { local, path, size } => {
                let action = match remote.get(&path) {
                    None => "create",
                    Some(etag) if *etag == etag_of_file(&local)? => "unchanged",
                    Some(_) => "replace",
                };
                plan.push((local, path, size, action));
            }
        }
    }
    let count = |a: &str| plan.iter().filter(|p| p.3 == a).count();
    let bytes = |a: &str| plan.iter().filter(|p| p.3 == a).map(|p| p.2).sum::<u64>();
    let to_write = bytes("create") + bytes("replace");

    let mut failed: Vec<Value> = Vec::new();
    if !dry_run {
        let bar = if ctx.json { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(to_write) };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        for (local, path, size, action) in plan.iter().filter(|p| p.3 != "unchanged") {
            bar.set_message(path.clone());
            let result = match std::fs::read(local) {
                Ok(content) => client
                    .put_file(path, content, content_type(path))
                    .await
                    .map(|_| ())
                    .map_err(|e| explain(e, Some(slug)).to_string()),
                Err(e) => Err(format!("cannot read {}: {e}", local.display())),
            };
            if let Err(why) = result {
                failed.push(json!({ "path": path, "action": action, "error": why }));
            }
            bar.inc(*size);
        }
        bar.finish_and_clear();
    }

    let summary = json!({
        "tenant": slug,
        "from": from.to_string_lossy(),
        "dry_run": dry_run,
        "create": { "files": count("create"), "bytes": bytes("create") },
        "replace": { "files": count("replace"), "bytes": bytes("replace") },
        "unchanged": { "files": count("unchanged"), "bytes": bytes("unchanged") },
        "skipped": skipped,
        "failed": failed,
    });
    if ctx.json {
        json(&summary);
    } else {
        let verb = if dry_run { "would copy" } else { "copied" };
        println!(
            "[{slug}] {} {verb} into the tenant: {} new, {} replaced ({}), {} unchanged; {} skipped{}",
            from.display(),
            count("create"),
            count("replace"),
            human_bytes(to_write),
            count("unchanged"),
            skipped.len(),
            if failed.is_empty() { String::new() } else { format!("; {} failed", failed.len()) }
        );
        if dry_run {
            for (_, path, size, action) in plan.iter().filter(|p| p.3 != "unchanged") {
                println!("  {action:<8} {path} ({})", human_bytes(*size));
            }
        }
        for s in &skipped {
            println!(
                "  skipped  {}: {}",
                s["local"].as_str().unwrap_or_default(),
                s["reason"].as_str().unwrap_or_default()
            );
        }
        for f in &failed {
            println!(
                "  failed   {}: {}",
                f["path"].as_str().unwrap_or_default(),
                f["error"].as_str().unwrap_or_default()
            );
        }
    }
    if !failed.is_empty() {
        bail!("{} file(s) could not be copied (listed above); run the same command again to retry them", failed.len());
    }
    Ok(())
}
