//! Webhook use cases (API.md §7): `admin`+ keys of a tier with the `webhooks` feature manage
//! them; the delivery worker asks here what each attempt's outcome means (retry when, give up,
//! disable), so the policy lives in the core and the worker only moves bytes.

use super::{actions, Tenantry};
use crate::caller::Caller;
use crate::error::{Error, Result};
use crate::events::{types, EventDraft, Journal};
use crate::ids::WebhookId;
use crate::model::TenantStatus;
use crate::role::Role;
use crate::store::{AttemptReport, DueDelivery, NewWebhookRecord};
use crate::time::Timestamp;
use crate::webhook::{self, DeliveryAttempt, HostResolver, Webhook};
use serde::Deserialize;

/// `POST /v1/webhooks`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"url": "https://hooks.example.com/tenantry", "events": ["file.written"], "path_glob": "/uploads/*.csv"})))]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    pub url: String,
    /// Event types (API.md §7), or `["*"]` for every type.
    pub events: Vec<String>,
    pub path_glob: Option<String>,
    /// The signing secret; generated (and shown once) when absent.
    pub secret: Option<String>,
}

/// `PATCH /v1/webhooks/{id}`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    pub enabled: Option<bool>,
}

/// How one delivery attempt went, as the worker saw it.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
}

/// A webhook's target, event types (sorted, without duplicates) and path glob, checked.
pub(super) fn webhook_fields(
    url: &str,
    events: &[String],
    path_glob: Option<&str>,
) -> Result<(url::Url, Vec<String>, Option<String>)> {
    let url = webhook::parse_target(url)?;
    if events.is_empty() || events.len() > types::ALL.len() {
        return Err(Error::invalid_request("`events` must list 1 or more event types (or \"*\")"));
    }
    for e in events {
        if e != "*" && !types::ALL.contains(&e.as_str()) {
            return Err(Error::invalid_request(format!(
                "unknown event type {e:?}; known types: {}",
                types::ALL.join(", ")
            )));
        }
    }
    let path_glob = path_glob.filter(|g| !g.is_empty()).map(webhook::parse_glob).transpose()?;
    let mut events = events.to_vec();
    events.sort();
    events.dedup();
    Ok((url, events, path_glob))
}

impl Tenantry {
    fn webhooks_not_in_tier(&self, caller: &Caller) -> Error {
        self.missing_feature(caller.tenant(), "webhooks", "webhooks", |l| l.webhooks, false)
    }

    fn require_webhook_admin(&self, caller: &Caller) -> Result<()> {
        caller.require_role(Role::Admin)?;
        // Webhooks see every event of the tenant.
        caller.require_whole_tenant("a webhook")
    }

    fn webhook_not_found(id: &str) -> Error {
        Error::not_found(format!("webhook '{id}' not found"))
    }

    fn webhook_id(id: &str) -> Result<WebhookId> {
        WebhookId::parse(id).ok_or_else(|| Self::webhook_not_found(id))
    }

    /// Creates a webhook; returns it with its signing secret (shown this once).
    pub async fn create_webhook(
        &self,
        caller: &Caller,
        req: NewWebhook,
        resolver: &dyn HostResolver,
    ) -> Result<(Webhook, String)> {
        self.require_webhook_admin(caller)?;
        self.require_live(caller)?;
        if !caller.limits().webhooks {
            return Err(self.webhooks_not_in_tier(caller));
        }
        let (url, events, path_glob) = webhook_fields(&req.url, &req.events, req.path_glob.as_deref())?;
        let secret = match req.secret.as_deref() {
            Some(s) => webhook::parse_secret(s)?,
            None => webhook::new_secret(),
        };
        webhook::vet_target(&url, resolver, self.config.webhooks.allow_private_networks).await?;
        let hook = Webhook {
            id: WebhookId::generate(),
            url: url.to_string(),
            events,
            path_glob,
            enabled: true,
            disabled_reason: None,
            consecutive_failures: 0,
            created_at: self.clock.now(),
            created_by: caller.actor(),
        };
        let journal = Journal::with_event(
            caller.audit(actions::WEBHOOK_CREATE, hook.id.as_str(), "ok"),
            EventDraft::new(types::WEBHOOK_CREATED, caller.actor())
                .detail(serde_json::json!({"id": hook.id, "url": hook.url})),
        );
        let record = NewWebhookRecord { hook: hook.clone(), secret: secret.clone() };
        self.store.insert_webhook(&caller.scope(), record, webhook::MAX_WEBHOOKS_PER_TENANT, journal).await?;
        Ok((hook, secret))
    }

    pub async fn list_webhooks(&self, caller: &Caller) -> Result<Vec<Webhook>> {
        self.require_webhook_admin(caller)?;
        self.store.list_webhooks(&caller.scope()).await
    }

    pub async fn get_webhook(&self, caller: &Caller, id: &str) -> Result<Webhook> {
        self.require_webhook_admin(caller)?;
        let wid = Self::webhook_id(id)?;
        self.store.get_webhook(&caller.scope(), &wid).await?.ok_or_else(|| Self::webhook_not_found(id))
    }

    /// Enables or disables a webhook (enabling clears its failure count).
    pub async fn update_webhook(&self, caller: &Caller, id: &str, patch: WebhookPatch) -> Result<Webhook> {
        self.require_webhook_admin(caller)?;
        self.require_live(caller)?;
        let wid = Self::webhook_id(id)?;
        let scope = caller.scope();
        if self.store.get_webhook(&scope, &wid).await?.is_none() {
            return Err(Self::webhook_not_found(id));
        }
        if let Some(enabled) = patch.enabled {
            if enabled && !caller.limits().webhooks {
                return Err(self.webhooks_not_in_tier(caller));
            }
            self.store.set_webhook_enabled(&scope, &wid, enabled).await?;
            self.store.append_audit(&scope, caller.audit(actions::WEBHOOK_UPDATE, id, "ok")).await?;
        }
        self.store.get_webhook(&scope, &wid).await?.ok_or_else(|| Self::webhook_not_found(id))
    }

    pub async fn delete_webhook(&self, caller: &Caller, id: &str) -> Result<()> {
        self.require_webhook_admin(caller)?;
        self.require_live(caller)?;
        let wid = Self::webhook_id(id)?;
        let journal = Journal::with_event(
            caller.audit(actions::WEBHOOK_DELETE, id, "ok"),
            EventDraft::new(types::WEBHOOK_DELETED, caller.actor()).detail(serde_json::json!({"id": id})),
        );
        self.store.delete_webhook(&caller.scope(), &wid, journal).await
    }

    /// A webhook's delivery attempts, newest first; `before` pages back.
    pub async fn list_deliveries(
        &self,
        caller: &Caller,
        id: &str,
        before: Option<u64>,
        limit: Option<usize>,
    ) -> Result<crate::model::Page<DeliveryAttempt>> {
        self.require_webhook_admin(caller)?;
        let wid = Self::webhook_id(id)?;
        let scope = caller.scope();
        if self.store.get_webhook(&scope, &wid).await?.is_none() {
            return Err(Self::webhook_not_found(id));
        }
        let limit = super::page_limit(limit)?;
        let items = self.store.list_deliveries(&scope, &wid, before, limit + 1).await?;
        Ok(crate::model::Page::cut(items, limit, |a| a.id.to_string()))
    }

    // ---- the delivery worker's side -----------------------------------------------------------

    /// Deliveries due now (at most `per_tenant` of one tenant), with those the tenant may no
    /// longer receive already settled.
    pub async fn due_deliveries(&self, limit: usize, per_tenant: usize) -> Result<Vec<DueDelivery>> {
        let now = self.clock.now();
        let due = self.store.due_deliveries(now, limit, per_tenant).await?;
        let mut out = Vec::with_capacity(due.len());
        for d in due {
            let refusal = match self.directory.tenant(&d.tenant_id) {
                None => Some("the tenant no longer exists"),
                Some(t) if t.status == TenantStatus::Archived => Some("the tenant is archived"),
                Some(t) if !self.limits_of(&t).webhooks => Some("webhooks are not part of the tenant's tier"),
                _ => None,
            };
            match refusal {
                Some(why) => {
                    let result = AttemptResult { status: None, latency_ms: 0, error: Some(why.to_owned()) };
                    let mut report = self.attempt_report(&d, result);
                    report.retry_at = None;
                    self.store.record_attempt(report).await?;
                }
                None => out.push(d),
            }
        }
        Ok(out)
    }

    /// Turns an attempt's result into what the store records: delivered on a 2xx; otherwise a
    /// retry after the backoff, until the attempts run out.
    pub fn attempt_report(&self, due: &DueDelivery, result: AttemptResult) -> AttemptReport {
        let policy = &self.config.webhooks;
        let delivered = result.status.is_some_and(|s| (200..300).contains(&s));
        let attempt = due.attempts + 1;
        let now = self.clock.now();
        let retry_at = (!delivered && attempt < policy.max_attempts).then(|| {
            Timestamp::from_millis(
                now.millis().saturating_add(webhook::retry_delay_ms(attempt, policy.retry_base_ms) as i64),
            )
        });
        AttemptReport {
            tenant_id: due.tenant_id.clone(),
            delivery_id: due.id,
            status: result.status,
            latency_ms: result.latency_ms,
            error: result.error,
            delivered,
            at: now,
            retry_at,
            disable_after: policy.disable_after,
        }
    }

    /// Claims a due delivery for this worker for as long as an attempt can take (the delivery
    /// timeout) and a minute more: another node's worker does not take it meanwhile.
    pub async fn claim_delivery(&self, due: &DueDelivery) -> Result<bool> {
        let now = self.clock.now();
        let lease_ms = self.config.webhooks.timeout_ms.saturating_add(60_000).min(i64::MAX as u64) as i64;
        let until = Timestamp::from_millis(now.millis().saturating_add(lease_ms));
        self.store.claim_delivery(&due.tenant_id, due.id, now, until).await
    }

    pub async fn record_attempt(&self, report: AttemptReport) -> Result<()> {
        self.store.record_attempt(report).await
    }

    /// When the worker should look again at the latest, if anything is pending.
    pub async fn next_delivery_at(&self) -> Result<Option<Timestamp>> {
        self.store.next_delivery_at().await
    }

    pub fn webhook_policy(&self) -> &super::WebhookPolicy {
        &self.config.webhooks
    }
}
