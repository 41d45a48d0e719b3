//! Architecture invariants checked as plain tests (rust-analyzer's "tidy" idea): what a crate
//! may depend on, and that every source file says what it is for.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().parent().unwrap().to_owned()
}

fn dependencies(crate_name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(workspace().join("crates").join(crate_name).join("Cargo.toml")).unwrap();
    let mut out = Vec::new();
    let mut in_deps = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps {
            if let Some((name, _)) = line.split_once('=') {
                out.push(name.trim().split('.').next().unwrap().to_owned());
            }
        }
    }
    out
}

#[test]
fn the_core_imports_no_http_sql_runtime_or_network_crate() {
    let deps = dependencies("tenantry-core");
    for forbidden in ["axum", "hyper", "tower", "tokio", "rusqlite", "tokio-postgres", "deadpool-postgres", "reqwest"] {
        assert!(!deps.iter().any(|d| d == forbidden), "tenantry-core must not depend on {forbidden}");
    }
}

#[test]
fn the_http_crate_knows_no_storage_backend() {
    let deps = dependencies("tenantry-http");
    for forbidden in ["rusqlite", "tokio-postgres", "tenantry-store-sqlite", "tenantry-store-postgres"] {
        assert!(!deps.iter().any(|d| d == forbidden), "tenantry-http must not depend on {forbidden}");
    }
}

#[test]
fn the_nats_relay_knows_no_storage_backend_and_no_http() {
    let deps = dependencies("tenantry-nats");
    assert!(deps.contains(&"async-nats".to_owned()), "{deps:?}");
    for forbidden in
        ["tenantry-store-sqlite", "tenantry-store-postgres", "rusqlite", "tokio-postgres", "tenantry-http", "axum"]
    {
        assert!(!deps.iter().any(|d| d == forbidden), "tenantry-nats depends on {forbidden}");
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_source_file_opens_with_a_doc_comment_saying_what_it_is_for() {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    let missing: Vec<_> =
        files.iter().filter(|f| !std::fs::read_to_string(f).unwrap().trim_start().starts_with("//!")).collect();
    assert!(missing.is_empty(), "files without a leading //! comment: {missing:?}");
}

#[test]
fn only_the_edge_and_the_core_turn_requests_into_callers() {
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        // A module's unit tests (after `#[cfg(test)]`) may make callers as a request would.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let rel = f.strip_prefix(workspace()).unwrap().to_string_lossy().to_string();
        if code.contains(".authenticate(")
            && !rel.ends_with("tests/tidy.rs")
            && !rel.starts_with("crates/tenantry-core/")
            && !rel.ends_with("tenantry-http/src/edge.rs")
        {
            panic!("{rel} authenticates requests itself; use the edge's Authed extractor");
        }
    }
}
