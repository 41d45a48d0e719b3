//! Printing: tables for people, exactly one JSON document for scripts.

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::Table;
use serde_json::Value;

pub fn json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into()));
}

pub fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(headers.to_vec());
    for r in rows {
        t.add_row(r);
    }
    println!("{t}");
}

/// A field as text: strings bare, null as `-`, anything else as JSON.
pub fn field(v: &Value, name: &str) -> String {
    match &v[name] {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Every item of a paged listing: `fetch(cursor)` returns one page (`{"items", "next_cursor"}`),
/// called with `None` first and then each page's `next_cursor` until there is none.
pub async fn all_pages<F, Fut, E>(mut fetch: F) -> Result<Vec<Value>, E>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Value, E>>,
{
    let mut items = Vec::new();
    let mut cursor = None;
    loop {
        let page = fetch(cursor).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            return Ok(items);
        }
    }
}
