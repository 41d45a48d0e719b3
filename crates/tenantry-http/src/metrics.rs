//! Prometheus metrics kept with atomics: requests by route template, method and status, a
//! latency histogram by route, and tenants by status. Labels are route *templates*, never raw
//! paths, so the number of series is bounded by the route table. Per-tenant series exist only
//! for the [`TOP_TENANTS`] busiest tenants, and only for a scrape with the operator key (tenant
//! names are not for anonymous eyes).

use axum::http::Method;
use rand::Rng;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tenantry_core::directory::Directory;

const BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Default)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

/// Everything recorded for one route template.
#[derive(Default)]
struct RouteStats {
    by_status: RwLock<HashMap<(Method, u16), AtomicU64>>,
    latency: Histogram,
}

#[derive(Default)]
pub struct Metrics {
    // Looked up by `&str` on the hot path: no allocation once a route has been seen.
    routes: RwLock<HashMap<String, Arc<RouteStats>>>,
}

/// How many tenants get their own series: label cardinality stays bounded however many exist.
pub const TOP_TENANTS: usize = 20;

impl Metrics {
    /// 96 random bits (from the thread's CSPRNG): unique, and unlike a counter they tell a client
    /// nothing of how many requests other tenants made between two of its own.
    pub fn next_request_id(&self) -> String {
        let id: u128 = rand::thread_rng().gen::<u128>() >> 32;
        format!("req_{id:024x}")
    }

    fn route(&self, route: &str) -> Arc<RouteStats> {
        if let Some(r) = self.routes.read().ok().and_then(|m| m.get(route).cloned()) {
            return r;
        }
        let mut m = self.routes.write().unwrap_or_else(|e| e.into_inner());
        m.entry(route.to_owned()).or_default().clone()
    }

    pub fn record(&self, route: &str, method: &Method, status: u16, elapsed: Duration) {
        let stats = self.route(route);
        let key = (method.clone(), status);
        let counted = stats.by_status.read().ok().and_then(|m| m.get(&key).map(|c| c.fetch_add(1, Ordering::Relaxed)));
        if counted.is_none() {
            let mut m = stats.by_status.write().unwrap_or_else(|e| e.into_inner());
            m.entry(key).or_default().fetch_add(1, Ordering::Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        let h = &stats.latency;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                h.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        h.sum_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    /// Per-tenant series for the busiest tenants: (slug, requests, storage bytes, files).
    pub fn render_tenants(rows: &[(String, u64, u64, u64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP tenantry_tenant_requests_total Requests since start, for the busiest tenants only.\n");
        out.push_str("# TYPE tenantry_tenant_requests_total counter\n");
        for (slug, requests, _, _) in rows {
            let _ = writeln!(out, "tenantry_tenant_requests_total{{tenant=\"{}\"}} {requests}", escape(slug));
        }
        out.push_str("# HELP tenantry_tenant_storage_bytes Stored bytes, for the busiest tenants only.\n");
        out.push_str("# TYPE tenantry_tenant_storage_bytes gauge\n");
        for (slug, _, bytes, _) in rows {
            let _ = writeln!(out, "tenantry_tenant_storage_bytes{{tenant=\"{}\"}} {bytes}", escape(slug));
        }
        out.push_str("# HELP tenantry_tenant_files Stored files, for the busiest tenants only.\n");
        out.push_str("# TYPE tenantry_tenant_files gauge\n");
        for (slug, _, _, files) in rows {
            let _ = writeln!(out, "tenantry_tenant_files{{tenant=\"{}\"}} {files}", escape(slug));
        }
        out
    }

    pub fn render(&self, directory: &Directory) -> String {
        let mut routes: Vec<(String, Arc<RouteStats>)> =
            self.routes.read().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::new();
        out.push_str("# HELP tenantry_http_requests_total HTTP requests by route template, method and status.\n");
        out.push_str("# TYPE tenantry_http_requests_total counter\n");
        for (route, stats) in &routes {
            let route = escape(route);
            let mut rows: Vec<_> = stats
                .by_status
                .read()
                .map(|m| m.iter().map(|((me, st), n)| (me.to_string(), *st, n.load(Ordering::Relaxed))).collect())
                .unwrap_or_default();
            rows.sort();
            for (method, status, n) in rows {
                let _ = writeln!(
                    out,
                    "tenantry_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str("# HELP tenantry_http_request_duration_seconds Request latency by route template.\n");
        out.push_str("# TYPE tenantry_http_request_duration_seconds histogram\n");
        for (route, stats) in &routes {
            let route = escape(route);
            let h = &stats.latency;
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "tenantry_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {}",
                    h.buckets[i].load(Ordering::Relaxed)
                );
            }
            let count = h.count.load(Ordering::Relaxed);
            let _ =
                writeln!(out, "tenantry_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {count}");
            let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "tenantry_http_request_duration_seconds_sum{{route=\"{route}\"}} {sum}");
            let _ = writeln!(out, "tenantry_http_request_duration_seconds_count{{route=\"{route}\"}} {count}");
        }
        out.push_str("# HELP tenantry_tenants Tenants by status.\n# TYPE tenantry_tenants gauge\n");
        for (status, n) in directory.count_by_status() {
            let _ = writeln!(out, "tenantry_tenants{{status=\"{}\"}} {n}", status.as_str());
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
