//! Import (API.md §9): the operator loads a bundle into a tenant. The edge reads the bundle as a
//! stream and hands each item here; every item is validated (a path that is not a valid path, a
//! record kind this server does not know, a webhook aimed at a refused address: the import is
//! refused, nothing changed) and staged where nobody sees it. Only after the whole bundle has
//! been read and its manifest checked does `commit_import` publish everything in one
//! transaction; any failure before that drops what was staged.

use super::webhooks::webhook_fields;
use super::{actions, validate_domains, validate_metadata, validate_name, Tenantry};
use crate::caller::Caller;
use crate::error::{Error, ErrorCode, Result};
use crate::events::{types, EventDraft, Journal};
use crate::ids::WebhookId;
use crate::import::{
    ConflictPolicy, ImportPlan, ImportReport, ImportSettings, SettingsChoice, StagedFile, StagedRecord,
};
use crate::memory::{self, MemoryKey, Namespace};
use crate::model::{Tenant, TenantStatus};
use crate::path::TenantPath;
use crate::search::IndexDoc;
use crate::store::TenantScope;
use crate::tier::{Limits, QuotaOverrides};
use crate::time::Timestamp;
use crate::webhook;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;

/// One import in progress (a clone stages into the same import).
#[derive(Debug, Clone)]
pub struct Import {
    id: String,
    scope: TenantScope,
    tenant: Arc<Tenant>,
    limits: Limits,
    policy: ConflictPolicy,
    settings_choice: SettingsChoice,
    actor_audit: crate::model::AuditDraft,
    /// Position of the next item in the bundle.
    next: u64,
    keys: u64,
    webhooks_without_secret: u64,
    /// Files and their bytes taken for staging so far.
    files: u64,
    file_bytes: u64,
}

impl Import {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Takes room for the bundle's next file, of `size` bytes, before any of it is read or
    /// staged: a bundle whose files alone hold more than the tenant's storage or file quota is
    /// refused as soon as it gets there, so staging never writes more than the quota allows.
    pub fn take_room_for_file(&mut self, size: u64) -> Result<()> {
        let (files, bytes) = (self.files + 1, self.file_bytes.saturating_add(size));
        if let Some(max) = self.limits.max_files.filter(|&max| files > max) {
            let mut e = Error::quota_exceeded("max_files", max, files);
            e.message = format!("the bundle holds more than {max} files, the tenant's max_files; nothing was changed");
            return Err(e);
        }
        if let Some(max) = self.limits.max_storage_bytes.filter(|&max| bytes > max) {
            let mut e = Error::quota_exceeded("max_storage_bytes", max, bytes);
            e.message = format!(
                "the bundle's files hold more than {max} bytes, the tenant's max_storage_bytes; nothing was changed"
            );
            return Err(e);
        }
        (self.files, self.file_bytes) = (files, bytes);
        Ok(())
    }
    pub fn policy(&self) -> ConflictPolicy {
        self.policy
    }
}

/// A memory record as an export writes it.
#[derive(Deserialize)]
struct MemoryRecord {
    namespace: String,
    key: String,
    value: Value,
    #[serde(default)]
    expires_at: Option<Timestamp>,
    created_at: Timestamp,
    updated_at: Timestamp,
}

/// A webhook record as an export writes it (`secret` only when the export asked for secrets).
#[derive(Deserialize)]
struct WebhookRecord {
    url: String,
    events: Vec<String>,
    #[serde(default)]
    path_glob: Option<String>,
    enabled: bool,
    #[serde(default)]
    disabled_reason: Option<String>,
    created_at: Timestamp,
    created_by: String,
    #[serde(default)]
    secret: Option<String>,
}

/// The settings part of a bundle's header.
#[derive(Deserialize)]
struct SettingsRecord {
    name: String,
    tier: String,
    #[serde(default)]
    quotas: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    domains: Vec<String>,
}

fn bad_record(kind: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid_request(format!("the bundle holds a {kind} record this server cannot read: {e}"))
}

impl Tenantry {
    /// Starts an import into tenant `slug` (operator only). `on_conflict`: skip (default),
    /// overwrite or rename; `settings`: auto (default), keep or replace.
    pub async fn begin_import(
        &self,
        caller: &Caller,
        slug: &str,
        on_conflict: Option<&str>,
        settings: Option<&str>,
    ) -> Result<Import> {
        let grant = caller.operator()?;
        let tenant = self.tenant_by_slug(slug)?;
        if tenant.status == TenantStatus::Archived {
            return Err(Error::conflict(format!("tenant '{slug}' is archived; restore it first")));
        }
        let policy = match on_conflict.filter(|p| !p.is_empty()) {
            Some(p) => ConflictPolicy::parse(p)?,
            None => ConflictPolicy::default(),
        };
        let settings_choice = match settings.filter(|s| !s.is_empty()) {
            Some(s) => SettingsChoice::parse(s)?,
            None => SettingsChoice::default(),
        };
        let scope = grant.scope_of(&tenant);
        let id = hex::encode(rand::random::<[u8; 12]>());
        self.store.begin_import(&scope, &id, self.clock.now()).await?;
        Ok(Import {
            id,
            scope,
            limits: self.limits_of(&tenant),
            tenant,
            policy,
            settings_choice,
            actor_audit: grant.audit(actions::TENANT_IMPORT, slug, "ok"),
            next: 0,
            keys: 0,
            webhooks_without_secret: 0,
            files: 0,
            file_bytes: 0,
        })
    }

    /// Validates one file of the bundle (its SHA-256 already checked by the bundle reader).
    #[allow(clippy::too_many_arguments)]
    pub fn import_file(
        &self,
        imp: &mut Import,
        path: &str,
        sha256: &str,
        content_type: &str,
        created_at: &str,
        updated_at: &str,
        content: Vec<u8>,
    ) -> Result<StagedFile> {
        // Exactly as an export writes it: a path the server would have to rewrite is not one it
        // exported.
        let path = TenantPath::parse(path).ok().filter(|p| p.as_str() == path).ok_or_else(|| {
            Error::new(ErrorCode::InvalidPath, format!("the bundle holds a file at an invalid path: {path:?}"))
        })?;
        if content.len() as u64 > self.config.max_file_bytes {
            return Err(Error::new(
                ErrorCode::TooLarge,
                format!(
                    "{path} is {} bytes; this server's maximum file size is {}",
                    content.len(),
                    self.config.max_file_bytes
                ),
            ));
        }
        let time = |raw: &str| {
            Timestamp::parse(raw).map_err(|_| bad_record("file", format!("{path} has an invalid time {raw:?}")))
        };
        let content_type = Some(content_type)
            .filter(|c| !c.is_empty() && c.len() <= 255 && !c.chars().any(char::is_control))
            .unwrap_or("application/octet-stream")
            .to_owned();
        let (created_at, updated_at) = (time(created_at)?, time(updated_at)?);
        imp.next += 1;
        Ok(StagedFile {
            n: imp.next,
            indexed: crate::search::is_indexed_content(&content),
            path,
            etag: format!("\"{sha256}\""),
            content_type,
            created_at,
            updated_at,
            content,
        })
    }

    /// Validates one record of the bundle. `None`: nothing to stage (key metadata, which is
    /// counted and reported; a memory entry that has expired).
    pub fn import_record(&self, imp: &mut Import, kind: &str, record: Value) -> Result<Option<(u64, StagedRecord)>> {
        let staged = match kind {
            "keys" => {
                imp.keys += 1;
                return Ok(None);
            }
            "memory" => {
                let m: MemoryRecord = serde_json::from_value(record).map_err(|e| bad_record("memory", e))?;
                let (ns, key) = (Namespace::parse(&m.namespace)?, MemoryKey::parse(&m.key)?);
                if m.expires_at.is_some_and(|e| e <= self.clock.now()) {
                    return Ok(None);
                }
                let value = memory::encode_value(&m.value, self.config.max_memory_value_bytes)?;
                StagedRecord::Memory {
                    namespace: ns.as_str().to_owned(),
                    key: key.as_str().to_owned(),
                    index: IndexDoc::of_text(&memory::searchable_text(&m.value)),
                    value,
                    expires_at: m.expires_at,
                    created_at: m.created_at,
                    updated_at: m.updated_at,
                }
            }
            "webhooks" => {
                let w: WebhookRecord = serde_json::from_value(record).map_err(|e| bad_record("webhook", e))?;
                if !imp.limits.webhooks {
                    let what = "webhooks (the bundle holds some)";
                    return Err(self.missing_feature(&imp.tenant, what, "webhooks", |l| l.webhooks, false));
                }
                let (url, events, path_glob) = webhook_fields(&w.url, &w.events, w.path_glob.as_deref())?;
                webhook::vet_literal_target(&url, self.config.webhooks.allow_private_networks)?;
                let secret = match w.secret.as_deref() {
                    Some(s) => webhook::parse_secret(s)?,
                    None => webhook::new_secret(),
                };
                if w.secret.is_none() {
                    imp.webhooks_without_secret += 1;
                }
                StagedRecord::Webhook {
                    id: WebhookId::generate(),
                    url: url.to_string(),
                    events,
                    path_glob,
                    enabled: w.enabled,
                    disabled_reason: w.disabled_reason,
                    secret,
                    created_at: w.created_at,
                    created_by: w.created_by,
                }
            }
            other => {
                return Err(Error::invalid_request(format!(
                    "the bundle holds records of kind {other:?}, which this server does not know \
                     (a newer server's bundle?); nothing was imported"
                )))
            }
        };
        imp.next += 1;
        Ok(Some((imp.next, staged)))
    }

    pub async fn stage_import_files(&self, imp: &Import, files: Vec<StagedFile>) -> Result<()> {
        self.store.stage_files(&imp.scope, &imp.id, imp.policy, files).await
    }

    pub async fn stage_import_records(&self, imp: &Import, records: Vec<(u64, StagedRecord)>) -> Result<()> {
        self.store.stage_records(&imp.scope, &imp.id, records).await
    }

    /// The bundle's settings, validated; a tier this server does not have keeps the tenant's.
    fn import_settings(&self, imp: &Import, header: &Value, notes: &mut Vec<String>) -> Result<ImportSettings> {
        let s: SettingsRecord = serde_json::from_value(header.clone()).map_err(|e| bad_record("settings", e))?;
        let tier = if self.config.tiers.require(&s.tier).is_ok() {
            s.tier
        } else {
            notes.push(format!("this server has no tier '{}'; the tenant keeps tier '{}'", s.tier, imp.tenant.tier));
            imp.tenant.tier.clone()
        };
        Ok(ImportSettings {
            name: validate_name(&s.name)?,
            tier,
            quotas: match &s.quotas {
                Some(q) => QuotaOverrides::parse(q)?,
                None => QuotaOverrides::default(),
            },
            metadata: validate_metadata(s.metadata.unwrap_or_else(|| serde_json::json!({})))?,
            domains: validate_domains(s.domains)?,
        })
    }

    /// Publishes a staged import (after the whole bundle was read and verified).
    pub async fn commit_import(&self, imp: Import, settings: &Value) -> Result<ImportReport> {
        let mut notes = Vec::new();
        let settings = match self.import_settings(&imp, settings, &mut notes) {
            Ok(s) => s,
            Err(e) => {
                self.store.abort_import(&imp.scope, &imp.id).await?;
                return Err(e);
            }
        };
        let at = self.clock.now();
        let mut settings = settings;
        let directory = self.directory();
        let (free, domains_taken): (Vec<String>, Vec<String>) = settings
            .domains
            .drain(..)
            .partition(|d| directory.domain_owner(d).is_none_or(|owner| owner == imp.tenant.id));
        settings.domains = free;
        let plan = ImportPlan {
            on_conflict: imp.policy,
            domains_taken,
            settings: Some(settings.clone()),
            settings_choice: imp.settings_choice,
            max_storage_bytes: imp.limits.max_storage_bytes,
            max_files: imp.limits.max_files,
            max_webhooks: webhook::MAX_WEBHOOKS_PER_TENANT,
            at,
        };
        if imp.keys > 0 {
            notes.push(format!(
                "{} key records were not imported: a bundle never holds key secrets; create the keys again",
                imp.keys
            ));
        }
        if imp.webhooks_without_secret > 0 {
            notes.push(format!(
                "{} webhooks came without their signing secret (export with include_secrets=true to keep them); \
                 new secrets were generated: `GET /v1/webhooks` lists them, receivers need the new ones",
                imp.webhooks_without_secret
            ));
        }
        let journal = Journal::with_event(
            imp.actor_audit.clone(),
            EventDraft::new(types::TENANT_IMPORTED, "operator".to_owned()),
        );
        let mut report = self.store.commit_import(&imp.scope, &imp.id, plan, journal).await?;
        report.keys_not_imported = imp.keys;
        report.notes.extend(notes);
        if report.settings == "applied" {
            // The directory (which answers every request) takes the settings the store applied.
            if let Some(current) = self.directory.tenant_by_slug(imp.tenant.slug.as_str()) {
                let mut t = (*current).clone();
                t.name = settings.name;
                t.tier = settings.tier;
                t.quotas = settings.quotas;
                t.metadata = settings.metadata;
                t.domains = settings
                    .domains
                    .into_iter()
                    .filter(|d| self.directory.domain_owner(d).is_none_or(|o| o == t.id))
                    .collect();
                t.updated_at = at;
                self.directory.put_tenant(t);
            }
        }
        Ok(report)
    }

    /// Drops a staged import (the bundle was damaged, the client went away, ...).
    pub async fn abort_import(&self, imp: Import) -> Result<()> {
        self.store.abort_import(&imp.scope, &imp.id).await
    }
}
