//! `tenantry mem ...`, `tenantry fs search`, `tenantry events` and `tenantry webhook ...`: the
//! data plane of the current tenant (API.md §7). `events --follow --json` prints one JSON document
//! per line, as events arrive (a stream cannot be one document).

use super::context::{explain, Context};
use super::failure::usage;
use super::output::{all_pages, field, human_bytes, json, table};
use super::{EventsArgs, MemCmd, WebhookCmd};
use anyhow::{bail, Context as _};
use serde_json::{json, Map, Value};
use std::io::Read;

fn read_value(value: Option<String>, as_string: bool) -> anyhow::Result<Value> {
    let text = match value {
        Some(v) => v,
        None => {
            let mut buf = String::new();
            std::io::stdin().read_to_string(&mut buf).context("cannot read standard input")?;
            buf
        }
    };
    if as_string {
        return Ok(Value::String(text));
    }
    serde_json::from_str(&text).map_err(|e| {
        usage(format!("the value is not JSON ({e}); quote it as JSON, or pass --string to store it as text"))
    })
}

pub async fn mem(ctx: &Context, cmd: MemCmd) -> anyhow::Result<()> {
    let (client, t) = ctx.tenant_client().await?;
    let slug = t.slug.as_str();
    let err = |e| explain(e, Some(slug));
    match cmd {
        MemCmd::Set { namespace, entry: key, value, ttl, string } => {
            let value = read_value(value, string)?;
            let entry = client.set_memory(&namespace, &key, &value, ttl).await.map_err(err)?;
            if ctx.json {
                json(&entry);
                return Ok(());
            }
            let expires = entry["expires_at"].as_str().map(|e| format!(", expires {e}")).unwrap_or_default();
            println!("[{slug}] set {namespace}/{key} ({}{expires})", human_bytes(entry["size"].as_u64().unwrap_or(0)));
        }
        MemCmd::Get { namespace, entry: key } => {
            let entry = client.get_memory(&namespace, &key).await.map_err(err)?;
            if ctx.json {
                json(&entry);
                return Ok(());
            }
            println!("[{slug}] {namespace}/{key} (updated {})", field(&entry, "updated_at"));
            println!("{}", serde_json::to_string_pretty(&entry["value"]).unwrap_or_default());
        }
        MemCmd::Ls { namespace, prefix } => {
            let prefix = tenantry_client::encode_query(prefix.as_deref().unwrap_or(""));
            let items = all_pages(|cursor| {
                let mut q = format!("?values=false&prefix={prefix}");
                if let Some(c) = cursor {
                    q.push_str(&format!("&cursor={}", tenantry_client::encode_query(&c)));
                }
                let (client, namespace) = (&client, &namespace);
                async move { client.list_memory(namespace, &q).await }
            })
            .await
            .map_err(err)?;
            if ctx.json {
                json(&json!({ "items": items }));
                return Ok(());
            }
            println!("[{slug}] {} entr{} in {namespace}", items.len(), if items.len() == 1 { "y" } else { "ies" });
            let rows = items
                .iter()
                .map(|e| {
                    vec![
                        field(e, "key"),
                        human_bytes(e["size"].as_u64().unwrap_or(0)),
                        field(e, "updated_at"),
                        field(e, "expires_at"),
                    ]
                })
                .collect();
            table(&["KEY", "SIZE", "UPDATED", "EXPIRES"], rows);
        }
        MemCmd::Rm { namespace, entry: key } => {
            client.delete_memory(&namespace, &key).await.map_err(err)?;
            if ctx.json {
                json(&json!({ "namespace": namespace, "key": key, "deleted": true }));
                return Ok(());
            }
            println!("[{slug}] deleted {namespace}/{key}");
        }
    }
    Ok(())
}

/// `tenantry fs search`, with the client `fs` resolved.
pub async fn search(
    ctx: &Context,
    client: &tenantry_client::Client,
    slug: &str,
    query: &str,
    prefix: Option<String>,
    kind: Option<String>,
    limit: u32,
) -> anyhow::Result<()> {
    let mut extra = format!("&limit={limit}");
    if let Some(p) = &prefix {
        extra.push_str(&format!("&prefix={}", tenantry_client::encode_query(p)));
    }
    if let Some(k) = &kind {
        extra.push_str(&format!("&kind={}", tenantry_client::encode_query(k)));
    }
    let found = client.search(query, &extra).await.map_err(|e| explain(e, Some(slug)))?;
    if ctx.json {
        json(&found);
        return Ok(());
    }
    let items = found["items"].as_array().cloned().unwrap_or_default();
    println!("[{slug}] {} hit(s) for {query:?}", items.len());
    let rows = items
        .iter()
        .map(|h| {
            let what = match h["kind"].as_str() {
                Some("file") => field(h, "path"),
                _ => format!("{}/{}", field(h, "namespace"), field(h, "key")),
            };
            let snippet = field(h, "snippet").replace("<mark>", "«").replace("</mark>", "»");
            vec![field(h, "kind"), what, format!("{:.3}", h["score"].as_f64().unwrap_or(0.0)), snippet]
        })
        .collect();
    table(&["KIND", "WHERE", "SCORE", "SNIPPET"], rows);
    Ok(())
}

fn event_line(e: &Value) -> String {
    let target = match (e["path"].as_str(), e["namespace"].as_str()) {
        (Some(p), _) => p.to_owned(),
        (None, Some(ns)) => format!("{ns}/{}", field(e, "key")),
        _ => e.get("detail").map(|d| d.to_string()).unwrap_or_default(),
    };
    format!("{:>6}  {}  {:<16} {}  ({})", field(e, "seq"), field(e, "at"), field(e, "type"), target, field(e, "actor"))
}

pub async fn events(ctx: &Context, args: EventsArgs) -> anyhow::Result<()> {
    let (client, t) = ctx.tenant_client().await?;
    let slug = t.slug.as_str();
    let err = |e| explain(e, Some(slug));
    if args.follow {
        let mut stream = client.event_stream(args.after).await.map_err(err)?;
        if !ctx.json {
            println!("[{slug}] following events (Ctrl-C to stop)");
        }
        while let Some(e) = stream.next().await.map_err(err)? {
            if ctx.json {
                println!("{e}");
            } else {
                println!("{}", event_line(&e));
            }
        }
        bail!("the server ended the stream (key revoked, tenant suspended, or server stopping)");
    }
    let page = client.events(args.after.unwrap_or(0), Some(args.limit as usize)).await.map_err(err)?;
    if ctx.json {
        json(&page);
        return Ok(());
    }
    let items = page["items"].as_array().cloned().unwrap_or_default();
    println!("[{slug}] {} event(s)", items.len());
    for e in &items {
        println!("{}", event_line(e));
    }
    if let Some(next) = page["next_cursor"].as_str() {
        println!("more: tenantry events --after {next}");
    }
    Ok(())
}

pub async fn webhook(ctx: &Context, cmd: WebhookCmd) -> anyhow::Result<()> {
    let (client, t) = ctx.tenant_client().await?;
    let slug = t.slug.as_str();
    let err = |e| explain(e, Some(slug));
    match cmd {
        WebhookCmd::Create { target: url, events, path_glob, secret } => {
            let mut body = Map::new();
            body.insert("url".into(), json!(url));
            body.insert("events".into(), json!(if events.is_empty() { vec!["*".to_owned()] } else { events }));
            if let Some(g) = path_glob {
                body.insert("path_glob".into(), json!(g));
            }
            if let Some(s) = secret {
                body.insert("secret".into(), json!(s));
            }
            let h = client.create_webhook(&Value::Object(body)).await.map_err(err)?;
            if ctx.json {
                json(&h);
                return Ok(());
            }
            println!("[{slug}] created webhook {} → {}", field(&h, "id"), field(&h, "url"));
            println!("  signing secret (shown once, keep it safe): {}", field(&h, "secret"));
        }
        WebhookCmd::List => {
            let list = client.list_webhooks().await.map_err(err)?;
            if ctx.json {
                json(&list);
                return Ok(());
            }
            let items = list["items"].as_array().cloned().unwrap_or_default();
            println!("[{slug}] {} webhook(s)", items.len());
            let rows = items
                .iter()
                .map(|h| {
                    let events: Vec<String> = h["events"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default();
                    let state = if h["enabled"] == true { "enabled".to_owned() } else { field(h, "disabled_reason") };
                    vec![field(h, "id"), field(h, "url"), events.join(","), field(h, "path_glob"), state]
                })
                .collect();
            table(&["ID", "URL", "EVENTS", "PATHS", "STATE"], rows);
        }
        WebhookCmd::Rm { id } => {
            client.delete_webhook(&id).await.map_err(err)?;
            if ctx.json {
                json(&json!({ "id": id, "deleted": true }));
                return Ok(());
            }
            println!("[{slug}] deleted webhook {id}");
        }
        WebhookCmd::Deliveries { id } => {
            let page = client.webhook_deliveries(&id).await.map_err(err)?;
            if ctx.json {
                json(&page);
                return Ok(());
            }
            let items = page["items"].as_array().cloned().unwrap_or_default();
            println!("[{slug}] {} recent attempt(s) of webhook {id}", items.len());
            let rows = items
                .iter()
                .map(|d| {
                    vec![
                        field(d, "at"),
                        format!("{} #{}", field(d, "event_type"), field(d, "event_seq")),
                        field(d, "attempt"),
                        field(d, "outcome"),
                        field(d, "status"),
                        format!("{} ms", field(d, "latency_ms")),
                        field(d, "error"),
                    ]
                })
                .collect();
            table(&["AT", "EVENT", "ATTEMPT", "OUTCOME", "STATUS", "LATENCY", "ERROR"], rows);
        }
    }
    Ok(())
}
