//! Server configuration, layered: built-in defaults → TOML file (`--config`) → `TENANTRY_*`
//! environment → flags. Everything ends in one typed [`ServeConfig`].

use anyhow::{bail, Context};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tenantry_core::service::WebhookPolicy;
use tenantry_core::tier::{Limits, TierTable};
use tenantry_http::HttpConfig;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
pub const DEFAULT_DATA: &str = "./tenantry-data";

/// The environment variables Tenantry reads; any other `TENANTRY_*` gets a warning.
pub const KNOWN_ENV: &[&str] = &[
    "TENANTRY_LISTEN",
    "TENANTRY_DATA",
    "TENANTRY_CONFIG",
    "TENANTRY_ADMIN_KEY",
    "TENANTRY_URL",
    "TENANTRY_KEY",
    "TENANTRY_TENANT",
    "TENANTRY_LOG",
    "TENANTRY_CLIENT_CONFIG",
    "TENANTRY_WEBHOOKS_ALLOW_PRIVATE_NETWORKS",
    "TENANTRY_DATABASE_URL",
    "TENANTRY_DATABASE_OWNER_URL",
    "TENANTRY_NATS_URL",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierConfig {
    pub max_keys: Option<u64>,
    pub max_storage_bytes: Option<u64>,
    pub max_files: Option<u64>,
    pub max_api_calls_month: Option<u64>,
    pub max_requests_per_minute: Option<u64>,
    pub audit_retention_days: Option<u64>,
    pub webhooks: Option<bool>,
    pub dedicated_placement: Option<bool>,
}

/// `[limits]`: the HTTP layer's protections against slow, idle and oversized clients.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_connections: Option<usize>,
    pub header_timeout_secs: Option<u64>,
    pub request_timeout_secs: Option<u64>,
    pub max_header_bytes: Option<usize>,
    pub max_json_bytes: Option<usize>,
    pub max_in_flight_per_tenant: Option<usize>,
    pub max_body_memory_bytes: Option<usize>,
    pub max_streams_per_tenant: Option<usize>,
    pub stream_stall_secs: Option<u64>,
}

/// `[memory]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    pub max_value_bytes: Option<u64>,
}

/// `[events]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    pub retention_days: Option<u64>,
}

/// `[storage]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// `postgres://...`: PostgreSQL instead of the embedded store (TENANTRY_DATABASE_URL).
    pub url: Option<String>,
    /// Connections a node opens at most (default 16).
    pub max_connections: Option<usize>,
    /// The role that owns the tables, with CREATEDB: dedicated tenants' databases are created
    /// with it (TENANTRY_DATABASE_OWNER_URL).
    pub owner_url: Option<String>,
}

/// `[nats]` (API.md §12; docs/NATS.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsFileConfig {
    /// `nats://host:4222` (comma-separated for several; TENANTRY_NATS_URL): publish every event.
    pub url: Option<String>,
    /// First token(s) of every subject (default `tenantry`).
    pub subject_prefix: Option<String>,
    /// The JetStream stream to publish into (default `TENANTRY`, created on `{prefix}.>`, keeping
    /// messages as long as `[events] retention_days`, if missing).
    pub stream: Option<String>,
    /// A `.creds` file the server connects to NATS with.
    pub credentials: Option<PathBuf>,
}

/// `[webhooks]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    pub allow_private_networks: Option<bool>,
    pub max_attempts: Option<u32>,
    pub disable_after: Option<u32>,
    pub retry_base_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub data: Option<PathBuf>,
    pub base_domain: Option<String>,
    pub max_file_bytes: Option<u64>,
    pub default_tier: Option<String>,
    /// `full` (default) or `normal`; see docs/ARCHITECTURE.md on durability.
    pub synchronous: Option<String>,
    /// Dedicated tenants' databases open at once at most.
    pub max_open_dedicated: Option<usize>,
    /// Mark the session cookie `Secure` (behind a TLS-terminating proxy; TENANTRY_SECURE_COOKIES).
    pub secure_cookies: Option<bool>,
    pub log: Option<String>,
    #[serde(default)]
    pub tiers: BTreeMap<String, TierConfig>,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub memory: MemoryConfig,
    #[serde(default)]
    pub events: EventsConfig,
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub nats: NatsFileConfig,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: String,
    pub data: PathBuf,
    pub base_domain: Option<String>,
    pub max_file_bytes: u64,
    pub tiers: TierTable,
    pub synchronous_full: bool,
    pub max_open_dedicated: usize,
    pub admin_key: Option<String>,
    pub log: String,
    pub http: HttpConfig,
    pub max_memory_value_bytes: u64,
    pub event_retention_days: u64,
    pub webhooks: WebhookPolicy,
    /// How often expired memory is reclaimed and old events pruned.
    pub upkeep_interval: Duration,
    /// `postgres://...`: serve from PostgreSQL instead of the embedded store (`[storage] url`,
    /// TENANTRY_DATABASE_URL); the data dir then keeps only the operator key.
    pub database_url: Option<String>,
    /// Connections to PostgreSQL a node opens at most (`[storage] max_connections`).
    pub database_connections: usize,
    /// The owning role's URL, for dedicated tenants' databases (`[storage] owner_url`,
    /// TENANTRY_DATABASE_OWNER_URL).
    pub database_owner_url: Option<String>,
    /// Publishing every event to NATS (`[nats]`, TENANTRY_NATS_URL), when set.
    pub nats: Option<tenantry_nats::NatsConfig>,
}

/// Largest memory value the configuration may allow (it travels in one JSON body).
pub const MAX_MEMORY_VALUE_CEILING: u64 = 16 << 20;

/// What flags and the environment said (clap merges those two, flags winning).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub admin_key: Option<String>,
}

/// Largest file size the inline-BLOB storage accepts (see docs/ARCHITECTURE.md).
pub const MAX_FILE_BYTES_CEILING: u64 = 512 << 20;

pub fn read_file_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

impl ServeConfig {
    pub fn load(o: Overrides) -> anyhow::Result<ServeConfig> {
        let file = match &o.config {
            Some(p) => read_file_config(p)?,
            None => FileConfig::default(),
        };
        let database_url =
            std::env::var("TENANTRY_DATABASE_URL").ok().filter(|u| !u.is_empty()).or(file.storage.url.clone());
        if let Some(url) = &database_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                bail!("TENANTRY_DATABASE_URL (or [storage] url) must be a postgres:// URL");
            }
        }
        let database_owner_url = std::env::var("TENANTRY_DATABASE_OWNER_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .or(file.storage.owner_url.clone());
        if let Some(url) = &database_owner_url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                bail!("TENANTRY_DATABASE_OWNER_URL (or [storage] owner_url) must be a postgres:// URL");
            }
            if database_url.is_none() {
                bail!("[storage] owner_url (TENANTRY_DATABASE_OWNER_URL) is for PostgreSQL: set [storage] url too");
            }
        }
        let nats = match std::env::var("TENANTRY_NATS_URL").ok().filter(|u| !u.is_empty()).or(file.nats.url.clone()) {
            None => {
                if file.nats.subject_prefix.is_some() || file.nats.stream.is_some() || file.nats.credentials.is_some() {
                    bail!("[nats] needs url (or TENANTRY_NATS_URL) to publish");
                }
                None
            }
            Some(url) => {
                let mut nats = tenantry_nats::NatsConfig::new(url);
                if let Some(prefix) = &file.nats.subject_prefix {
                    nats.subject_prefix = prefix.clone();
                }
                if let Some(stream) = &file.nats.stream {
                    nats.stream = stream.clone();
                }
                nats.stream_max_age =
                    Duration::from_secs(file.events.retention_days.unwrap_or(7).saturating_mul(86_400));
                nats.credentials = file.nats.credentials.clone();
                nats.check().map_err(|e| anyhow::anyhow!(e))?;
                Some(nats)
            }
        };
        let database_connections = file.storage.max_connections.unwrap_or(16);
        if database_connections == 0 {
            bail!("[storage] max_connections must be at least 1");
        }
        let mut tiers = TierTable::default();
        for (name, t) in &file.tiers {
            if name.is_empty()
                || !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                bail!("tier name {name:?} in the config file: use lowercase letters, digits, - and _");
            }
            // A built-in tier keeps the values the file leaves out; a new tier starts unlimited
            // with no features.
            let base = tiers.get(name).cloned().unwrap_or(Limits {
                webhooks: false,
                dedicated_placement: false,
                ..Limits::unlimited()
            });
            tiers.set(
                name,
                Limits {
                    max_keys: t.max_keys.or(base.max_keys),
                    max_storage_bytes: t.max_storage_bytes.or(base.max_storage_bytes),
                    max_files: t.max_files.or(base.max_files),
                    max_api_calls_month: t.max_api_calls_month.or(base.max_api_calls_month),
                    max_requests_per_minute: t.max_requests_per_minute.or(base.max_requests_per_minute),
                    audit_retention_days: t.audit_retention_days.or(base.audit_retention_days),
                    webhooks: t.webhooks.unwrap_or(base.webhooks),
                    dedicated_placement: t.dedicated_placement.unwrap_or(base.dedicated_placement),
                },
            );
        }
        if let Some(d) = &file.default_tier {
            if tiers.get(d).is_none() {
                bail!("default_tier {d:?} is not a configured tier");
            }
            tiers.default_tier = d.clone();
        }
        let max_file_bytes = file.max_file_bytes.unwrap_or(64 << 20);
        if max_file_bytes == 0 || max_file_bytes > MAX_FILE_BYTES_CEILING {
            bail!("max_file_bytes must be between 1 and {MAX_FILE_BYTES_CEILING}");
        }
        let synchronous_full = match file.synchronous.as_deref() {
            None | Some("full") => true,
            Some("normal") => false,
            Some(other) => bail!("synchronous = {other:?}: use \"full\" or \"normal\""),
        };
        let max_open_dedicated = file.max_open_dedicated.unwrap_or(64);
        if max_open_dedicated == 0 {
            bail!("max_open_dedicated must be at least 1");
        }
        let secure_cookies = match std::env::var("TENANTRY_SECURE_COOKIES").ok().as_deref() {
            None | Some("") => file.secure_cookies.unwrap_or(false),
            Some("1") | Some("true") => true,
            Some("0") | Some("false") => false,
            Some(other) => bail!("TENANTRY_SECURE_COOKIES={other:?}: use true or false"),
        };
        let mut http = HttpConfig { secure_cookies, ..HttpConfig::default() };
        let l = &file.limits;
        if let Some(n) = l.max_connections {
            if n == 0 {
                bail!("limits.max_connections must be at least 1");
            }
            http.max_connections = n;
        }
        if let Some(s) = l.header_timeout_secs {
            http.header_timeout = Duration::from_secs(s.max(1));
        }
        if let Some(s) = l.request_timeout_secs {
            http.request_timeout = Duration::from_secs(s.max(1));
        }
        if let Some(n) = l.max_header_bytes {
            http.max_header_bytes = n.clamp(8192, 1 << 20);
        }
        if let Some(n) = l.max_in_flight_per_tenant {
            if n == 0 {
                bail!("limits.max_in_flight_per_tenant must be at least 1");
            }
            http.max_in_flight_per_tenant = n;
        }
        if let Some(n) = l.max_body_memory_bytes {
            // Raised to the largest single body a route accepts when the server starts.
            http.max_body_memory_bytes = n;
        }
        if let Some(n) = l.max_streams_per_tenant {
            if n == 0 {
                bail!("limits.max_streams_per_tenant must be at least 1");
            }
            http.max_streams_per_tenant = n;
        }
        if let Some(s) = l.stream_stall_secs {
            http.stream_stall_timeout = Duration::from_secs(s.max(1));
        }
        if let Some(n) = l.max_json_bytes {
            http.max_json_bytes = n.clamp(1024, 64 << 20);
        }
        let max_memory_value_bytes =
            file.memory.max_value_bytes.unwrap_or(tenantry_core::memory::DEFAULT_MAX_VALUE_BYTES);
        if max_memory_value_bytes == 0 || max_memory_value_bytes > MAX_MEMORY_VALUE_CEILING {
            bail!("memory.max_value_bytes must be between 1 and {MAX_MEMORY_VALUE_CEILING}");
        }
        let event_retention_days = file.events.retention_days.unwrap_or(7);
        if event_retention_days == 0 || event_retention_days > 3650 {
            bail!("events.retention_days must be between 1 and 3650");
        }
        let w = &file.webhooks;
        let defaults = WebhookPolicy::default();
        let env_private = match std::env::var("TENANTRY_WEBHOOKS_ALLOW_PRIVATE_NETWORKS").ok().as_deref() {
            None | Some("") => None,
            Some("1") | Some("true") => Some(true),
            Some("0") | Some("false") => Some(false),
            Some(other) => bail!("TENANTRY_WEBHOOKS_ALLOW_PRIVATE_NETWORKS={other:?}: use 1 or 0"),
        };
        let webhooks = WebhookPolicy {
            allow_private_networks: env_private.or(w.allow_private_networks).unwrap_or(false),
            max_attempts: w.max_attempts.unwrap_or(defaults.max_attempts).clamp(1, 100),
            disable_after: w.disable_after.unwrap_or(defaults.disable_after).clamp(1, 10_000),
            retry_base_ms: w.retry_base_ms.unwrap_or(defaults.retry_base_ms).clamp(10, 3_600_000),
            timeout_ms: w.timeout_ms.unwrap_or(defaults.timeout_ms).clamp(100, 120_000),
        };
        let base_domain =
            file.base_domain.map(|d| d.trim().trim_matches('.').to_ascii_lowercase()).filter(|d| !d.is_empty());
        Ok(ServeConfig {
            listen: o.listen.or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            data: o.data.or(file.data).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA)),
            base_domain,
            max_file_bytes,
            tiers,
            synchronous_full,
            max_open_dedicated,
            admin_key: o.admin_key.filter(|k| !k.is_empty()),
            log: file.log.unwrap_or_else(|| "info".to_owned()),
            http,
            max_memory_value_bytes,
            event_retention_days,
            webhooks,
            upkeep_interval: Duration::from_secs(30),
            database_url,
            database_owner_url,
            database_connections,
            nats,
        })
    }
}

/// Names of `TENANTRY_*` variables that are set but mean nothing to Tenantry (likely typos).
pub fn unknown_env_vars() -> Vec<String> {
    std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("TENANTRY_") && !KNOWN_ENV.contains(&k.as_str()))
        .collect()
}

/// A commented example configuration (`tenantry config default`).
pub const EXAMPLE_CONFIG: &str = r#"# Tenantry server configuration. Every key is optional; flags and TENANTRY_* variables win.

# Address to listen on (TENANTRY_LISTEN, --listen).
listen = "127.0.0.1:7070"
# Data directory (TENANTRY_DATA, --data).
data = "./tenantry-data"
# With a base domain, {slug}.{base_domain} names tenant {slug} for the operator key.
# base_domain = "tenantry.example.com"
# Largest file accepted, in bytes (413 too_large beyond). At most 536870912.
max_file_bytes = 67108864
# "full": a write is on disk when answered, even across power loss. "normal": faster, survives
# a crash of the process but may lose the last writes on power loss.
synchronous = "full"
# Dedicated tenants' databases kept open at once (least recently used closed first): open files
# stay bounded however many tenants are dedicated. Each open one holds 3 connections.
max_open_dedicated = 64
# Tier given to new tenants.
default_tier = "free"
# Log filter (TENANTRY_LOG), e.g. "info" or "tenantry=debug".
log = "info"
# Mark the session cookie of signed-in people Secure (sent over HTTPS only): set it when the
# server is reached over HTTPS through a proxy (TENANTRY_SECURE_COOKIES).
secure_cookies = false

# Protections against slow, idle and oversized clients.
[limits]
# Open connections beyond this are closed at once.
max_connections = 16384
# Seconds to send a request's headers; also how long an idle keep-alive connection is kept.
header_timeout_secs = 15
# Seconds for a whole request, body included (408 beyond).
request_timeout_secs = 120
# Largest request line plus headers, in bytes (431 beyond).
max_header_bytes = 65536
# Largest JSON body, in bytes (413 too_large beyond).
max_json_bytes = 1048576
# Requests of one tenant inside handlers at once; more wait for a slot (default 16 per core,
# at least 32). Keeps one flooding tenant to a bounded share of the server.
# max_in_flight_per_tenant = 32
# Memory for request bodies being read at once, all requests together, in bytes; a body waits
# (before it is read) for its share. Never below the largest single body (max_file_bytes). One
# tenant's bodies hold at most an eighth of it (at least one largest body) at once.
max_body_memory_bytes = 1073741824
# Event streams (SSE) one tenant may have open at once; more get 429 rate_limited.
max_streams_per_tenant = 64
# Seconds a stream's client may read nothing while events wait for it; then the stream ends.
stream_stall_secs = 30

[memory]
# Largest memory value, in bytes of compact JSON (413 too_large beyond). At most 16777216.
max_value_bytes = 1048576

[events]
# Days events are kept for GET /v1/events and SSE resume (webhook delivery logs too).
retention_days = 7

[webhooks]
# Deliver to loopback, private, link-local, CGNAT and metadata addresses too. Leave off unless
# every tenant is trusted (TENANTRY_WEBHOOKS_ALLOW_PRIVATE_NETWORKS=1 also sets it).
allow_private_networks = false
# Attempts per delivery before it is logged as failed.
max_attempts = 8
# Consecutive failed attempts after which a webhook is disabled.
disable_after = 20
# First retry after this many milliseconds, doubling each time (at most an hour).
retry_base_ms = 5000
# Milliseconds allowed per delivery.
timeout_ms = 10000

# PostgreSQL instead of the embedded store (TENANTRY_DATABASE_URL), as a role that owns nothing;
# `tenantry db migrate --url postgres://OWNER@HOST/DB` prepares the database first. Dedicated
# tenants get a database of their own, DB_<tenant id>, created as owner_url's role (the one that
# owns the tables, with CREATEDB; TENANTRY_DATABASE_OWNER_URL); without it they, and moves
# between placements, are refused.
# [storage]
# url = "postgres://tenantry_app@db.internal/tenantry"
# owner_url = "postgres://tenantry_owner@db.internal/tenantry"
# max_connections = 16

# Publish every tenant's events to NATS (TENANTRY_NATS_URL), to {subject_prefix}.{slug}.{type},
# at least once and in order, into the JetStream stream `stream` (created on "{subject_prefix}.>"
# if missing, keeping messages for [events] retention_days). See docs/NATS.md.
# [nats]
# url = "nats://127.0.0.1:4222"
# subject_prefix = "tenantry"
# stream = "TENANTRY"
# credentials = "/etc/tenantry/nats.creds"

# Tiers: a built-in tier (free, starter, pro, enterprise) keeps the values you leave out; a new
# tier starts unlimited and without features.
# [tiers.team]
# max_keys = 25
# max_storage_bytes = 53687091200
# max_files = 500000
# max_api_calls_month = 50000
# max_requests_per_minute = 600
# audit_retention_days = 180     # audit entries older than this are pruned (built in: free 30,
#                                # starter 90, pro 365, enterprise keeps all)
# webhooks = true
# dedicated_placement = false
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_flags_beat_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(&p, format!("{EXAMPLE_CONFIG}\n[tiers.team]\nmax_keys = 25\n[tiers.free]\nmax_keys = 3\n"))
            .unwrap();
        let c = ServeConfig::load(Overrides {
            config: Some(p.clone()),
            listen: Some("127.0.0.1:1".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:1");
        assert_eq!(c.data, PathBuf::from("./tenantry-data"));
        assert_eq!(c.tiers.get("team").unwrap().max_keys, Some(25));
        assert_eq!(c.tiers.get("team").unwrap().max_files, None);
        assert_eq!(c.tiers.get("free").unwrap().max_keys, Some(3));
        assert_eq!(c.tiers.get("free").unwrap().max_files, Some(10_000));
        std::fs::write(&p, "bogus = 1\n").unwrap();
        assert!(ServeConfig::load(Overrides { config: Some(p), ..Default::default() }).is_err());
    }
}
