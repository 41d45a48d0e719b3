//! Export (API.md §9): what a bundle of a tenant holds, read page by page so the exporter's
//! memory does not grow with the tenant. The operator asks; secrets of webhooks only on request,
//! key secrets never (they are not stored).

use super::{actions, Tenantry, MAX_PAGE};
use crate::caller::Caller;
use crate::error::Result;
use crate::memory::MemoryEntry;
use crate::model::{FileMeta, KeyInfo};
use crate::path::PathPrefix;
use crate::path::TenantPath;
use crate::store::{FileListing, TenantScope};

/// One export in progress: the tenant it reads and what it may include.
#[derive(Debug, Clone)]
pub struct Export {
    scope: TenantScope,
    /// The tenant's settings as the bundle header carries them.
    pub settings: serde_json::Value,
    pub include_secrets: bool,
}

impl Tenantry {
    /// Starts an export of tenant `slug` (operator only; recorded in the tenant's audit log).
    pub async fn begin_export(&self, caller: &Caller, slug: &str, include_secrets: bool) -> Result<Export> {
        let grant = caller.operator()?;
        let tenant = self.tenant_by_slug(slug)?;
        let scope = grant.scope_of(&tenant);
        let settings = serde_json::to_value(&*tenant).map_err(|e| crate::Error::internal(e.to_string()))?;
        let target = if include_secrets { format!("{slug} (with webhook secrets)") } else { slug.to_owned() };
        self.store.append_audit(&scope, grant.audit(actions::TENANT_EXPORT, &target, "ok")).await?;
        Ok(Export { scope, settings, include_secrets })
    }

    /// The next page of files in path order, after `after`.
    pub async fn export_files(&self, e: &Export, after: Option<String>) -> Result<Vec<FileMeta>> {
        let listing =
            FileListing { within: PathPrefix::root(), recursive: true, include_within: false, after, limit: MAX_PAGE };
        self.store.list_files(&e.scope, listing).await
    }

    /// A file's metadata and bytes (`None`: deleted since it was listed).
    pub async fn export_file(&self, e: &Export, path: &TenantPath) -> Result<Option<(FileMeta, Vec<u8>)>> {
        self.store.read_file_cold(&e.scope, path).await
    }

    /// The next page of memory entries in (namespace, key) order.
    pub async fn export_memory(&self, e: &Export, after: Option<(String, String)>) -> Result<Vec<MemoryEntry>> {
        self.store.list_all_memory(&e.scope, after, MAX_PAGE, self.clock.now()).await
    }

    /// The webhooks as bundle records (with `secret` only when asked for).
    pub async fn export_webhooks(&self, e: &Export) -> Result<Vec<serde_json::Value>> {
        let hooks = self.store.list_webhooks(&e.scope).await?;
        let secrets = if e.include_secrets { self.store.webhook_secrets(&e.scope).await? } else { Vec::new() };
        Ok(hooks
            .into_iter()
            .map(|h| {
                let mut v = serde_json::to_value(&h).unwrap_or_default();
                if let Some((_, s)) = secrets.iter().find(|(id, _)| *id == h.id) {
                    v["secret"] = serde_json::Value::String(s.clone());
                }
                v
            })
            .collect())
    }

    /// Key metadata (never secrets).
    pub async fn export_keys(&self, e: &Export) -> Result<Vec<KeyInfo>> {
        Ok(self.store.list_keys(&e.scope).await?.iter().map(|k| k.info()).collect())
    }
}
