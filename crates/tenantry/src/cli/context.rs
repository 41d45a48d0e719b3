//! What every client command needs: the client, the key, and which tenant to act on, resolved in
//! the order of API.md §1 (flag, TENANTRY_TENANT, active tenant, the only tenant, `default`).

use super::failure::{exit_status_of, usage, Failure, EXIT_FAILED, EXIT_UNREACHABLE};
use super::Cli;
use anyhow::Context as _;
use std::path::PathBuf;
use tenantry_client::{Client, ClientError};

pub struct Context {
    pub json: bool,
    pub url: String,
    key: Option<FoundKey>,
    flag_tenant: Option<String>,
}

/// Where the tenant came from, shown by `tenant status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub slug: String,
    pub source: String,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct ClientConfig {
    tenant: Option<String>,
}

/// The user's client config file: `$TENANTRY_CLIENT_CONFIG`, else
/// `$XDG_CONFIG_HOME/tenantry/config.toml`, else `~/.config/tenantry/config.toml`.
pub fn client_config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TENANTRY_CLIENT_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("tenantry").join("config.toml"))
}

fn read_client_config() -> ClientConfig {
    client_config_path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| toml::from_str(&t).ok())
        .unwrap_or_default()
}

/// Stores `slug` as the active tenant, or forgets the active tenant (`None`).
pub fn write_active_tenant(slug: Option<&str>) -> anyhow::Result<PathBuf> {
    let path = client_config_path().context("no config directory: set HOME or TENANTRY_CLIENT_CONFIG")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = toml::to_string(&ClientConfig { tenant: slug.map(str::to_owned) })?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The key a command sends, and where it was found.
#[derive(Debug, Clone)]
struct FoundKey {
    secret: String,
    /// `--key`, `TENANTRY_KEY`, `TENANTRY_ADMIN_KEY` or the admin.key file's path.
    source: String,
}

impl FoundKey {
    /// Given for this command (flag or `TENANTRY_KEY`), not found in the operator's places.
    fn is_explicit(&self) -> bool {
        self.source == "--key" || self.source == "TENANTRY_KEY"
    }
}

/// Where the operator key of a local server is looked for: `$TENANTRY_DATA/admin.key`.
fn admin_key_file() -> PathBuf {
    let data = std::env::var_os("TENANTRY_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_DATA));
    let file = data.join(crate::server::ADMIN_KEY_FILE);
    std::path::absolute(&file).unwrap_or(file)
}

/// The key to send: --key / TENANTRY_KEY, else TENANTRY_ADMIN_KEY, else the operator key a local
/// server stored in `$TENANTRY_DATA/admin.key` (so the quickstart needs no copying of keys).
fn find_key(flag: Option<String>) -> Option<FoundKey> {
    let env = |name: &str| std::env::var(name).ok().filter(|k| !k.is_empty());
    if let Some(secret) = flag.filter(|k| !k.is_empty()) {
        let source = if env("TENANTRY_KEY").as_deref() == Some(secret.as_str()) { "TENANTRY_KEY" } else { "--key" };
        return Some(FoundKey { secret, source: source.into() });
    }
    if let Some(secret) = env("TENANTRY_ADMIN_KEY") {
        return Some(FoundKey { secret, source: "TENANTRY_ADMIN_KEY".into() });
    }
    let file = admin_key_file();
    let secret = std::fs::read_to_string(&file).ok().map(|k| k.trim().to_owned()).filter(|k| !k.is_empty())?;
    Some(FoundKey { secret, source: file.display().to_string() })
}

/// Where the key came from, for the message when the server refuses it (one client per process).
static KEY_SOURCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

impl Context {
    pub fn new(cli: &Cli) -> Context {
        let key = find_key(cli.key.clone());
        if let Some(k) = &key {
            let _ = KEY_SOURCE.set(k.source.clone());
        }
        Context { json: cli.json, url: cli.url.clone(), key, flag_tenant: cli.tenant.clone() }
    }

    /// Fails, saying where it looked, when no key was found: every command that talks to the
    /// server needs one.
    pub fn require_key(&self) -> anyhow::Result<()> {
        if self.key.is_some() {
            return Ok(());
        }
        let file = admin_key_file();
        let state = match std::fs::read_to_string(&file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                "does not exist (a server started with that data folder writes it)".to_owned()
            }
            Err(e) => format!("cannot be read ({e})"),
            Ok(_) => "is empty".to_owned(),
        };
        Err(usage(format!(
            "no key to send: no --key, TENANTRY_KEY and TENANTRY_ADMIN_KEY are unset, and {} {state}; pass --key \
             or set TENANTRY_KEY to a tenant key or the operator key",
            file.display()
        )))
    }

    /// A client that names no tenant (tenant administration, or "whatever the key's tenant is").
    /// A request refused for the rate limit is sent again after its `Retry-After`, a few times.
    pub fn client(&self) -> Client {
        let client = Client::new(&self.url, self.key.as_ref().map(|k| k.secret.clone())).retrying_when_rate_limited(3);
        if self.json {
            client.quietly()
        } else {
            client
        }
    }

    /// A client bound to the resolved tenant.
    pub async fn tenant_client(&self) -> anyhow::Result<(Client, Resolved)> {
        let resolved = self.resolve().await?;
        Ok((self.client().with_tenant(Some(resolved.slug.clone())), resolved))
    }

    pub async fn resolve(&self) -> anyhow::Result<Resolved> {
        if let Some(t) = self.flag_tenant.as_ref().filter(|t| !t.is_empty()) {
            let from_env = std::env::var("TENANTRY_TENANT").ok().as_deref() == Some(t.as_str());
            let source = if from_env { "TENANTRY_TENANT" } else { "--tenant" };
            return Ok(Resolved { slug: t.clone(), source: source.into() });
        }
        let active = read_client_config().tenant;
        // A tenant key given for this command acts on its own tenant, whatever tenant is active:
        // it can act on no other.
        let explicit = self.key.as_ref().filter(|k| k.is_explicit());
        if active.is_none() || explicit.is_some() {
            let me = self.client().whoami().await.map_err(|e| explain(e, None))?;
            if me["key"]["operator"] != serde_json::Value::Bool(true) {
                let slug = me["tenant"]["slug"].as_str().unwrap_or("default").to_owned();
                let source = match (&active, explicit) {
                    (Some(a), Some(k)) if *a != slug => {
                        // Said under --json too: standard output stays the one document.
                        eprintln!(
                            "note: acting on '{slug}', the tenant of the key from {}; the active tenant '{a}' is \
                             not used",
                            k.source
                        );
                        format!("the tenant of the key from {}, not the active tenant '{a}'", k.source)
                    }
                    _ => "the key's own tenant".to_owned(),
                };
                return Ok(Resolved { slug, source });
            }
        }
        if let Some(t) = active {
            return Ok(Resolved { slug: t, source: "active tenant (tenantry tenant switch)".into() });
        }
        let client = self.client();
        let page = client.list_tenants("?limit=3").await.map_err(|e| explain(e, None))?;
        let others: Vec<String> = page["items"]
            .as_array()
            .map(|a| {
                a.iter().filter_map(|t| t["slug"].as_str()).filter(|s| *s != "default").map(str::to_owned).collect()
            })
            .unwrap_or_default();
        if others.len() == 1 {
            return Ok(Resolved { slug: others[0].clone(), source: "the only tenant besides default".into() });
        }
        Ok(Resolved { slug: "default".into(), source: "default".into() })
    }
}

/// Turns a client error into one line that says what to do next, with the exit status of its
/// kind.
pub fn explain(e: ClientError, slug: Option<&str>) -> anyhow::Error {
    let hint = match (&e, e.code()) {
        (ClientError::Transport { url, .. }, _) => {
            let hint = format!("cannot reach {url}: is `tenantry serve` running? Set TENANTRY_URL or --url to its address");
            return Failure::error(EXIT_UNREACHABLE, "unreachable", hint);
        }
        (_, Some("tenant_not_found")) => {
            format!("tenant '{}' not found; `tenantry tenant list` shows the tenants", slug.unwrap_or("?"))
        }
        (_, Some("unauthenticated")) => format!(
            "the server did not accept the key from {}: it is unknown, revoked or expired; pass --key or set \
             TENANTRY_KEY to a valid tenant key or the operator key",
            KEY_SOURCE.get().map(String::as_str).unwrap_or("--key")
        ),
        (_, Some("tenant_mismatch")) => format!(
            "the key belongs to another tenant than '{}': drop --tenant/TENANTRY_TENANT (or `tenantry tenant switch --clear`) or use that tenant's key",
            slug.unwrap_or("?")
        ),
        // A quota refusal names the command that lifts it, with the tenant as SLUG.
        (ClientError::Api { message, code, .. }, _) => match slug {
            Some(s) => format!("{} ({code})", message.replace("tenant update SLUG", &format!("tenant update {s}"))),
            None => format!("{message} ({code})"),
        },
        (other, _) => other.to_string(),
    };
    let exit_status = e.status().map(exit_status_of).unwrap_or(EXIT_FAILED);
    Failure::error(exit_status, e.code().unwrap_or("failed"), hint)
}
