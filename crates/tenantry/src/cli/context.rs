//! What every client command needs: the client, the key, and which tenant to act on, resolved in
//! the order of API.md §1 (flag, TENANTRY_TENANT, active tenant, the only tenant, `default`).

use super::Cli;
use anyhow::Context as _;
use std::path::PathBuf;
use tenantry_client::{Client, ClientError};

pub struct Context {
    pub json: bool,
    pub url: String,
    key: Option<String>,
    flag_tenant: Option<String>,
}

/// Where the tenant came from, shown by `tenant status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub slug: String,
    pub source: &'static str,
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

pub fn write_active_tenant(slug: &str) -> anyhow::Result<PathBuf> {
    let path = client_config_path().context("no config directory: set HOME or TENANTRY_CLIENT_CONFIG")?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = toml::to_string(&ClientConfig { tenant: Some(slug.to_owned()) })?;
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The key to send: --key / TENANTRY_KEY, else TENANTRY_ADMIN_KEY, else the operator key a local
/// server stored in `$TENANTRY_DATA/admin.key` (so the quickstart needs no copying of keys).
fn find_key(flag: Option<String>) -> Option<String> {
    flag.filter(|k| !k.is_empty())
        .or_else(|| std::env::var("TENANTRY_ADMIN_KEY").ok().filter(|k| !k.is_empty()))
        .or_else(|| {
            let data = std::env::var_os("TENANTRY_DATA")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(crate::config::DEFAULT_DATA));
            std::fs::read_to_string(data.join(crate::server::ADMIN_KEY_FILE)).ok().map(|k| k.trim().to_owned())
        })
}

impl Context {
    pub fn new(cli: &Cli) -> Context {
        Context {
            json: cli.json,
            url: cli.url.clone(),
            key: find_key(cli.key.clone()),
            flag_tenant: cli.tenant.clone(),
        }
    }

    /// A client that names no tenant (tenant administration, or "whatever the key's tenant is").
    /// A request refused for the rate limit is sent again after its `Retry-After`, a few times.
    pub fn client(&self) -> Client {
        Client::new(&self.url, self.key.clone()).retrying_when_rate_limited(3)
    }

    /// A client bound to the resolved tenant.
    pub async fn tenant_client(&self) -> anyhow::Result<(Client, Resolved)> {
        let resolved = self.resolve().await?;
        Ok((self.client().with_tenant(Some(resolved.slug.clone())), resolved))
    }

    pub async fn resolve(&self) -> anyhow::Result<Resolved> {
        if let Some(t) = self.flag_tenant.as_ref().filter(|t| !t.is_empty()) {
            let from_env = std::env::var("TENANTRY_TENANT").ok().as_deref() == Some(t.as_str());
            return Ok(Resolved { slug: t.clone(), source: if from_env { "TENANTRY_TENANT" } else { "--tenant" } });
        }
        if let Some(t) = read_client_config().tenant {
            return Ok(Resolved { slug: t, source: "active tenant (tenantry tenant switch)" });
        }
        let client = self.client();
        let me = client.whoami().await.map_err(|e| explain(e, None))?;
        if me["key"]["operator"] != serde_json::Value::Bool(true) {
            let slug = me["tenant"]["slug"].as_str().unwrap_or("default").to_owned();
            return Ok(Resolved { slug, source: "the key's own tenant" });
        }
        let page = client.list_tenants("?limit=3").await.map_err(|e| explain(e, None))?;
        let others: Vec<String> = page["items"]
            .as_array()
            .map(|a| {
                a.iter().filter_map(|t| t["slug"].as_str()).filter(|s| *s != "default").map(str::to_owned).collect()
            })
            .unwrap_or_default();
        if others.len() == 1 {
            return Ok(Resolved { slug: others[0].clone(), source: "the only tenant besides default" });
        }
        Ok(Resolved { slug: "default".into(), source: "default" })
    }
}

/// Turns a client error into one line that says what to do next.
pub fn explain(e: ClientError, slug: Option<&str>) -> anyhow::Error {
    let hint = match (&e, e.code()) {
        (ClientError::Transport { url, .. }, _) => {
            format!("cannot reach {url}: is `tenantry serve` running? Set TENANTRY_URL or --url to its address")
        }
        (_, Some("tenant_not_found")) => {
            format!("tenant '{}' not found; `tenantry tenant list` shows the tenants", slug.unwrap_or("?"))
        }
        (_, Some("unauthenticated")) => {
            "the server did not accept the key: set TENANTRY_KEY (or --key) to a valid tenant key or the operator key".into()
        }
        (_, Some("tenant_mismatch")) => format!(
            "the key belongs to another tenant than '{}': drop --tenant/TENANTRY_TENANT (or `tenantry tenant switch`) or use that tenant's key",
            slug.unwrap_or("?")
        ),
        // A quota refusal names the command that lifts it, with the tenant as SLUG.
        (ClientError::Api { message, code, .. }, _) => match slug {
            Some(s) => format!("{} ({code})", message.replace("tenant update SLUG", &format!("tenant update {s}"))),
            None => format!("{message} ({code})"),
        },
        (other, _) => other.to_string(),
    };
    anyhow::anyhow!(hint)
}
