//! `tenantry fs ...`: files of the current tenant. `fs get` writes the bytes unchanged, so its
//! `[slug]` line goes to standard error.

use super::context::{explain, Context};
use super::output::{all_pages, field, human_bytes, json, table};
use super::FsCmd;
use anyhow::Context as _;
use serde_json::json;
use std::io::{Read, Write};

pub async fn run(ctx: &Context, cmd: FsCmd) -> anyhow::Result<()> {
    let (client, t) = ctx.tenant_client().await?;
    let slug = t.slug.as_str();
    match cmd {
        FsCmd::Put { path, local_file, content_type } => {
            let content = match &local_file {
                Some(f) => std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?,
                None => {
                    let mut buf = Vec::new();
                    std::io::stdin().read_to_end(&mut buf).context("cannot read standard input")?;
                    buf
                }
            };
            let meta =
                client.put_file(&path, content, content_type.as_deref()).await.map_err(|e| explain(e, Some(slug)))?;
            if ctx.json {
                json(&meta);
                return Ok(());
            }
            let size = meta["size"].as_u64().unwrap_or(0);
            println!(
                "[{slug}] wrote {} ({}, version {}, etag {})",
                field(&meta, "path"),
                human_bytes(size),
                field(&meta, "version"),
                field(&meta, "etag")
            );
        }
        FsCmd::Get { path, output } => {
            let bytes = client.get_file(&path).await.map_err(|e| explain(e, Some(slug)))?;
            match &output {
                Some(f) => {
                    std::fs::write(f, &bytes).with_context(|| format!("cannot write {}", f.display()))?;
                    if ctx.json {
                        json(&json!({ "path": path, "size": bytes.len(), "output": f }));
                    } else {
                        println!("[{slug}] {path} → {} ({})", f.display(), human_bytes(bytes.len() as u64));
                    }
                }
                None => {
                    eprintln!("[{slug}] {path} ({})", human_bytes(bytes.len() as u64));
                    let mut out = std::io::stdout().lock();
                    out.write_all(&bytes)?;
                    out.flush()?;
                }
            }
        }
        FsCmd::Ls { prefix, recursive } => {
            let prefix = prefix.unwrap_or_else(|| "/".into());
            let (client, prefix) = (&client, &prefix);
            // One level shows the folders under it too; --recursive shows every file instead.
            let items = all_pages(|cursor| async move {
                match recursive {
                    true => client.list_files(prefix, true, cursor.as_deref()).await,
                    false => client.list_folder(prefix, cursor.as_deref()).await,
                }
            })
            .await
            .map_err(|e| explain(e, Some(slug)))?;
            if ctx.json {
                json(&json!({ "items": items }));
                return Ok(());
            }
            let folders = items.iter().filter(|i| i["kind"] == "folder").count();
            let files = items.len() - folders;
            match folders {
                0 => println!("[{slug}] {files} file(s) under {prefix}"),
                _ => println!("[{slug}] {files} file(s) and {folders} folder(s) under {prefix}"),
            }
            let rows = items
                .iter()
                .map(|f| match f["kind"].as_str() {
                    Some("folder") => vec![field(f, "path"), "folder".into(), String::new(), String::new()],
                    _ => vec![
                        field(f, "path"),
                        field(f, "content_type"),
                        human_bytes(f["size"].as_u64().unwrap_or(0)),
                        field(f, "updated_at"),
                    ],
                })
                .collect();
            table(&["PATH", "TYPE", "SIZE", "UPDATED"], rows);
        }
        FsCmd::Rm { path } => {
            client.delete_file(&path).await.map_err(|e| explain(e, Some(slug)))?;
            if ctx.json {
                json(&json!({ "path": path, "deleted": true }));
                return Ok(());
            }
            println!("[{slug}] deleted {path}");
        }
        FsCmd::Search { query, prefix, kind, limit } => {
            super::data::search(ctx, &client, slug, &query, prefix, kind, limit).await?;
        }
    }
    Ok(())
}
