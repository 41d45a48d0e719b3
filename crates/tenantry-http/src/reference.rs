//! docs/API.md, the API reference in the repository, rendered from the OpenAPI document so the
//! two cannot drift: a test renders it and compares it with the file (and rewrites the file when
//! `TENANTRY_WRITE_API_DOC=1`).

use serde_json::Value;
use std::fmt::Write;

/// What every route shares, said once before the routes.
const PREAMBLE: &str = "\
# Tenantry HTTP API reference

Rendered from the OpenAPI document the server serves at `GET /openapi.json` (browsable at
`GET /docs`); do not edit by hand: `TENANTRY_WRITE_API_DOC=1 cargo test -p tenantry-http
reference` writes it again, and the same test fails when it is out of date. The command line is
described by `tenantry --help` and the README.

## Basics

- **Keys.** Every `/v1/` route takes `Authorization: Bearer KEY`: the operator key (every tenant)
  or a tenant key (one tenant, a role — `reader`, `writer`, `admin`, `owner` — and an optional path
  prefix). The operations routes (`/healthz`, `/readyz`, `/metrics`, `/openapi.json`, `/docs`) need none.
- **Which tenant.** A tenant key acts on its own tenant. The operator names one by `X-Tenant-ID`
  (slug or id), by the path prefix `/t/{slug}/v1/...`, or by the host (a subdomain of the
  configured base domain, or a tenant's custom domain). Naming another tenant with a tenant key is
  403 `tenant_mismatch`.
- **Bodies** are JSON (`application/json`), but for file contents and bundles, which are raw bytes.
- **Errors** always have one shape, with a stable `code`:
  `{\"error\": {\"code\": \"tenant_not_found\", \"message\": \"human words\", \"request_id\": \"req_...\"}}`.
  Every response carries `X-Request-Id`. Anything of another tenant is 404, as if it did not exist.
- **Pages.** Listings answer `{\"items\": [...], \"next_cursor\": \"...\"}`; pass `cursor=` back
  for the next page (`limit=` 1 to 1000, default 100). No `next_cursor`: the last page.
- **Storage away.** On PostgreSQL, while the database cannot be reached, requests answer 503
  `storage_unavailable` with `Retry-After`, and `/readyz` says so; service resumes by itself.
  The same answer (nothing of the request kept) for a change other than to a file or memory
  entry that meets the moment a tenant's move between placements switches; retried, it lands.
- **Limits.** A 429 carries `Retry-After` (seconds): `rate_limited`, or `quota_exceeded` once the
  monthly call allowance is spent. Other quotas and tiers: 403 `quota_exceeded` or
  `feature_not_in_tier`, whose message names the command that lifts it.
";

/// The statuses every `/v1/` operation may answer, listed once under Errors.
fn common_errors(spec: &Value) -> Vec<(String, String)> {
    let mut seen: Vec<(String, String)> = Vec::new();
    for item in spec["paths"].as_object().into_iter().flat_map(|p| p.values()) {
        for op in item.as_object().into_iter().flat_map(|o| o.values()) {
            for (status, response) in op["responses"].as_object().into_iter().flatten() {
                let error_body =
                    response["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error";
                let described = response["description"].as_str().unwrap_or_default().to_owned();
                if error_body && !seen.iter().any(|(s, _)| s == status) {
                    seen.push((status.clone(), described));
                }
            }
        }
    }
    seen.sort();
    seen
}

/// A schema in a few words: a type, `[T]`, a link to a named schema, `A | B`.
fn type_of(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("[{name}](#{})", name.to_lowercase());
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema[key].as_array() {
            let parts: Vec<String> = options.iter().map(type_of).collect();
            return parts.join(if key == "allOf" { " & " } else { " \\| " });
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => vec![],
    };
    let shown: Vec<String> = types
        .iter()
        .map(|t| match *t {
            "array" => format!("[{}]", type_of(&schema["items"])),
            "string" => match schema["format"].as_str() {
                Some(f) => format!("string ({f})"),
                None => match schema["enum"].as_array() {
                    Some(values) => values
                        .iter()
                        .map(|v| format!("`{}`", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(" \\| "),
                    None => "string".into(),
                },
            },
            other => other.to_owned(),
        })
        .collect();
    if shown.is_empty() {
        "any".into()
    } else {
        shown.join(" or ")
    }
}

/// Text for one table cell: one line, pipes escaped.
fn cell(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "\\|")
}

fn render_operation(out: &mut String, method: &str, path: &str, op: &Value, common: &[(String, String)]) {
    let _ = writeln!(out, "### `{} {path}`\n", method.to_uppercase());
    let _ = write!(out, "`{}`", op["operationId"].as_str().unwrap_or(""));
    if op["security"].as_array().is_some_and(|s| s.iter().all(|r| r.as_object().is_some_and(|o| o.is_empty()))) {
        out.push_str(" · no key needed");
    }
    out.push_str("\n\n");
    for text in [&op["summary"], &op["description"]] {
        if let Some(t) = text.as_str() {
            let _ = writeln!(out, "{t}\n");
        }
    }
    let params: Vec<&Value> =
        op["parameters"].as_array().into_iter().flatten().filter(|p| p["name"] != "X-Tenant-ID").collect();
    if !params.is_empty() {
        out.push_str("| parameter | in | type | required | description |\n|---|---|---|---|---|\n");
        for p in params {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} |",
                p["name"].as_str().unwrap_or(""),
                p["in"].as_str().unwrap_or(""),
                type_of(&p["schema"]),
                if p["required"] == true { "yes" } else { "no" },
                cell(p["description"].as_str().unwrap_or("")),
            );
        }
        out.push('\n');
    }
    if let Some(content) = op["requestBody"]["content"].as_object() {
        for (media, body) in content {
            let _ = writeln!(out, "Request body (`{media}`): {}", type_of(&body["schema"]));
        }
        if let Some(d) = op["requestBody"]["description"].as_str() {
            let _ = writeln!(out, "— {}", cell(d));
        }
        out.push('\n');
    }
    out.push_str("| status | meaning | body |\n|---|---|---|\n");
    for (status, response) in op["responses"].as_object().into_iter().flatten() {
        let description = response["description"].as_str().unwrap_or("");
        if common.iter().any(|(s, d)| s == status && d == description) {
            continue;
        }
        let body = response["content"]
            .as_object()
            .map(|c| {
                c.iter()
                    .map(|(media, b)| format!("{} (`{media}`)", type_of(&b["schema"])))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        let _ = writeln!(out, "| {status} | {} | {body} |", cell(description));
    }
    out.push('\n');
}

fn render_schema(out: &mut String, name: &str, schema: &Value) {
    let _ = writeln!(out, "### {name}\n");
    if let Some(d) = schema["description"].as_str() {
        let _ = writeln!(out, "{}\n", cell(d));
    }
    match schema["properties"].as_object() {
        Some(props) => {
            let required: Vec<&str> =
                schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            out.push_str("| field | type | required | description |\n|---|---|---|---|\n");
            for (field, p) in props {
                let _ = writeln!(
                    out,
                    "| `{field}` | {} | {} | {} |",
                    type_of(p),
                    if required.contains(&field.as_str()) { "yes" } else { "no" },
                    cell(p["description"].as_str().unwrap_or("")),
                );
            }
        }
        None => {
            let _ = writeln!(out, "{}", type_of(schema));
        }
    }
    if let Some(example) = schema.get("example").or_else(|| schema["examples"].get(0)) {
        let _ =
            writeln!(out, "\nExample:\n\n```json\n{}\n```", serde_json::to_string_pretty(example).unwrap_or_default());
    }
    out.push('\n');
}

/// docs/API.md for the document `spec`.
pub fn markdown(spec: &Value) -> String {
    let mut out = String::from(PREAMBLE);
    let common = common_errors(spec);
    out.push_str(
        "\nStatuses any `/v1/` route may answer, each with the error body:\n\n| status | code(s) |\n|---|---|\n",
    );
    for (status, description) in &common {
        let _ = writeln!(out, "| {status} | {} |", cell(description));
    }
    let _ = writeln!(out, "\nVersion {}.", spec["info"]["version"].as_str().unwrap_or("?"));
    // Operations grouped by their first tag, in the order tags first appear.
    let mut tags: Vec<String> = Vec::new();
    let mut ops: Vec<(String, String, String, Value)> = Vec::new();
    for (path, item) in spec["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let tag = op["tags"][0].as_str().unwrap_or("other").to_owned();
            if !tags.contains(&tag) {
                tags.push(tag.clone());
            }
            ops.push((tag, method.clone(), path.clone(), op.clone()));
        }
    }
    // The resources in the order a user meets them; any other tag after them.
    const ORDER: &[&str] = &[
        "tenants",
        "keys",
        "people",
        "files",
        "memory",
        "search",
        "events",
        "webhooks",
        "audit",
        "usage",
        "operations",
    ];
    tags.sort_by_key(|t| ORDER.iter().position(|o| o == t).unwrap_or(ORDER.len()));
    out.push('\n');
    for tag in &tags {
        let _ = writeln!(out, "## {tag}\n");
        for (_, method, path, op) in ops.iter().filter(|(t, ..)| t == tag) {
            render_operation(&mut out, method, path, op, &common);
        }
    }
    out.push_str("## Schemas\n\n");
    for (name, schema) in spec["components"]["schemas"].as_object().into_iter().flatten() {
        render_schema(&mut out, name, schema);
    }
    format!("{}\n", out.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_api_md_is_the_reference_of_the_current_document() {
        let spec = serde_json::to_value(crate::openapi::spec()).unwrap();
        let rendered = markdown(&spec);
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/API.md");
        if std::env::var_os("TENANTRY_WRITE_API_DOC").is_some() {
            std::fs::write(&file, &rendered).unwrap();
        }
        let on_disk = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            on_disk == rendered,
            "docs/API.md is not the reference of the current OpenAPI document: run \
             TENANTRY_WRITE_API_DOC=1 cargo test -p tenantry-http reference, and commit it"
        );
    }

    #[test]
    fn the_reference_lists_every_operation_and_schema() {
        let spec = serde_json::to_value(crate::openapi::spec()).unwrap();
        let md = markdown(&spec);
        for (path, item) in spec["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                assert!(md.contains(&format!("### `{} {path}`", method.to_uppercase())), "{method} {path}");
            }
        }
        for name in spec["components"]["schemas"].as_object().unwrap().keys() {
            assert!(md.contains(&format!("\n### {name}\n")), "{name}");
        }
        assert!(md.contains("| `delimiter` | query | string | no |"), "parameters are listed");
    }
}
