//! The use cases of API.md §3–§6 and §8: each public method is one operation a caller may ask
//! for. Rules (roles, prefixes, tiers, state transitions) are applied here, the change is made
//! through the store in one transaction together with its audit entry, and the in-memory
//! directory is updated after the commit.

use crate::caller::{self, Caller, RequestFacts, TenantNaming};
use crate::directory::Directory;
use crate::error::{Error, ErrorCode, Result};
use crate::events::{types as event_types, EventDraft, Journal};
use crate::ids::{KeyId, TenantId};
use crate::model::{
    AuditDraft, FileMeta, KeyInfo, KeyRecord, MintedKey, Page, Placement, Tenant, TenantStatus, TenantView,
};
use crate::path::{PathPrefix, TenantPath};
use crate::role::Role;
use crate::secret::{KeySecret, SecretHash};
use crate::slug::{Slug, DEFAULT_SLUG};
use crate::store::{ByteRange, FileListing, FileWrite, ListedEntry, Precondition, Store, TenantScope, WriteOutcome};
use crate::tier::{Limits, QuotaOverrides, TierTable};
use crate::time::{Clock, Timestamp};
use serde_json::Value;
use std::sync::Arc;

/// Audit action names, shared by the service (for changes) and the edge (for refusals).
pub mod actions {
    pub const TENANT_CREATE: &str = "tenant.create";
    pub const TENANT_UPDATE: &str = "tenant.update";
    pub const TENANT_SUSPEND: &str = "tenant.suspend";
    pub const TENANT_RESUME: &str = "tenant.resume";
    pub const TENANT_ARCHIVE: &str = "tenant.archive";
    pub const TENANT_RESTORE: &str = "tenant.restore";
    pub const TENANT_PURGE: &str = "tenant.purge";
    pub const TENANT_READ: &str = "tenant.read";
    pub const TENANT_EXPORT: &str = "tenant.export";
    pub const TENANT_IMPORT: &str = "tenant.import";
    pub const TENANT_MOVE: &str = "tenant.move";
    pub const KEY_CREATE: &str = "key.create";
    pub const KEY_REVOKE: &str = "key.revoke";
    pub const KEY_READ: &str = "key.read";
    pub const FILE_WRITE: &str = "file.write";
    pub const FILE_DELETE: &str = "file.delete";
    pub const FILE_READ: &str = "file.read";
    pub const AUDIT_READ: &str = "audit.read";
    pub const USAGE_READ: &str = "usage.read";
    pub const MEMORY_SET: &str = "memory.set";
    pub const MEMORY_DELETE: &str = "memory.delete";
    pub const MEMORY_READ: &str = "memory.read";
    pub const SEARCH: &str = "search";
    pub const EVENTS_READ: &str = "events.read";
    pub const WEBHOOK_CREATE: &str = "webhook.create";
    pub const WEBHOOK_UPDATE: &str = "webhook.update";
    pub const WEBHOOK_DELETE: &str = "webhook.delete";
    pub const WEBHOOK_READ: &str = "webhook.read";
    pub const USER_CREATE: &str = "user.create";
    pub const USER_UPDATE: &str = "user.update";
    pub const USER_READ: &str = "user.read";
    pub const MEMBER_ADD: &str = "member.add";
    pub const MEMBER_UPDATE: &str = "member.update";
    pub const MEMBER_REMOVE: &str = "member.remove";
    pub const MEMBER_READ: &str = "member.read";
    pub const MEMBER_INVITE: &str = "member.invite";
    pub const MEMBER_WITHDRAW: &str = "member.withdraw";
    pub const AUTH_LOGIN: &str = "auth.login";
    pub const AUTH_LOGOUT: &str = "auth.logout";
    pub const AUTH_ACCEPT: &str = "auth.accept";
    pub const AUTH_SESSION: &str = "auth.session";
    pub const REQUEST: &str = "request";
}

mod audit_log;
mod events;
mod export;
mod import;
mod memory;
mod people;
mod placement;
mod search;
mod webhooks;

pub use events::EVENT_PAGE_MAX;
pub use export::Export;
pub use import::Import;
pub use people::{
    AcceptInvitation, Invitation, MemberAdded, MemberList, MemberPatch, NewMember, NewUser, SessionTenant, SessionView,
    SignIn, UserPatch,
};
pub use placement::MoveStatus;
pub use search::SearchRequest;
pub use webhooks::{AttemptResult, NewWebhook, WebhookPatch};

/// Largest page any listing returns, whatever `limit` asks.
pub const MAX_PAGE: usize = 1000;
pub const DEFAULT_PAGE: usize = 100;

/// How often a node tells the others what it counted ([`Tenantry::share_activity`]): how far
/// behind the other nodes' view of a tenant's rate may be.
pub const SHARE_ACTIVITY_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// The name NATS publishing records its position in each tenant's events under.
pub const NATS_RELAY: &str = "nats";

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub tiers: TierTable,
    pub naming: TenantNaming,
    /// Largest file body accepted (413 `too_large` beyond).
    pub max_file_bytes: u64,
    /// Largest memory value accepted, in bytes of compact JSON (413 `too_large` beyond).
    pub max_memory_value_bytes: u64,
    /// How long events are kept (`GET /v1/events` and SSE resume reach back this far).
    pub event_retention_days: u64,
    /// The relay of events to elsewhere this install runs (NATS publishing: [`NATS_RELAY`]), if
    /// any: pruning keeps a tenant's events that it has not relayed yet, however old.
    pub event_relay: Option<String>,
    pub webhooks: WebhookPolicy,
    /// How long sessions and invitations last.
    pub sessions: crate::people::SessionPolicy,
    /// Where password hashing runs.
    pub password_work: Arc<dyn crate::people::PasswordWork>,
    /// Where large documents are tokenized for the search index.
    pub index_work: Arc<dyn crate::search::IndexWork>,
}

/// How webhooks are delivered (config `[webhooks]`).
#[derive(Debug, Clone)]
pub struct WebhookPolicy {
    /// Deliver to loopback, private, link-local and similar addresses too (off by default).
    pub allow_private_networks: bool,
    /// Attempts per delivery before it is given up as failed.
    pub max_attempts: u32,
    /// Consecutive failed attempts after which a webhook is disabled.
    pub disable_after: u32,
    /// First retry delay; each further retry waits twice as long (at most an hour).
    pub retry_base_ms: u64,
    /// Time allowed for one delivery (connect, send, answer).
    pub timeout_ms: u64,
}

impl Default for WebhookPolicy {
    fn default() -> Self {
        WebhookPolicy {
            allow_private_networks: false,
            max_attempts: 8,
            disable_after: 20,
            retry_base_ms: 5_000,
            timeout_ms: 10_000,
        }
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            tiers: TierTable::default(),
            naming: TenantNaming::default(),
            max_file_bytes: 64 << 20,
            max_memory_value_bytes: crate::memory::DEFAULT_MAX_VALUE_BYTES,
            event_retention_days: 7,
            event_relay: None,
            webhooks: WebhookPolicy::default(),
            sessions: crate::people::SessionPolicy::default(),
            password_work: Arc::new(crate::people::InlinePasswordWork),
            index_work: Arc::new(crate::search::InlineIndexWork),
        }
    }
}

/// A request to create a tenant (API.md §4), fields still raw: the service parses them.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"slug": "acme", "name": "Acme Inc", "tier": "starter", "metadata": {"plan": "trial"}})))]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Lowercase letters, digits and `-`, 3 to 63 characters.
    #[cfg_attr(feature = "openapi", schema(example = "acme"))]
    pub slug: String,
    pub name: Option<String>,
    /// A configured tier (built in: free, starter, pro, enterprise); the default tier if absent.
    pub tier: Option<String>,
    /// `shared` (the default) or `dedicated`.
    pub placement: Option<String>,
    /// Overrides of the tier's limits, by name (`null`: unlimited).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub quotas: Option<Value>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<Value>,
    pub domains: Option<Vec<String>>,
}

/// A change to a tenant: only the fields given change.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"tier": "pro", "quotas": {"max_files": 50000}})))]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub tier: Option<String>,
    /// Replaces the previous overrides whole.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub quotas: Option<Value>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<Value>,
    pub domains: Option<Vec<String>>,
}

/// A request to create a key (API.md §5).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"name": "docs-bot", "role": "reader", "prefix": "/docs/"})))]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    #[cfg_attr(feature = "openapi", schema(example = "ci"))]
    pub name: String,
    /// `reader`, `writer`, `admin` or `owner`: at most the creating key's.
    #[cfg_attr(feature = "openapi", schema(example = "writer"))]
    pub role: String,
    /// A path prefix the key is confined to, within the creating key's.
    pub prefix: Option<String>,
    /// RFC 3339; at most the creating key's.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub expires_at: Option<String>,
}

/// The status transitions an operator can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Suspend,
    Resume,
    Archive,
    Restore,
}

/// The period a usage report covers: `from` and `to` (dates or RFC 3339, `to` exclusive; this
/// month by default) and the `granularity` of its `series` (`day` or `month`). All unset: this
/// month's totals, without a series.
#[derive(Debug, Clone, Copy, Default)]
pub struct UsagePeriod<'a> {
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub granularity: Option<&'a str>,
}

/// The body of `GET /v1/usage` (API.md §8).
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageReport {
    pub tenant: String,
    pub tier: String,
    pub period: Period,
    pub usage: UsageNumbers,
    pub limits: Limits,
    /// With a `from`/`to`/`granularity` query: the counters per day or month of the period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<Vec<SeriesPoint>>,
}

/// One day (`2026-11-23`) or month (`2026-11`) of metered usage.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeriesPoint {
    pub period: String,
    #[serde(flatten)]
    pub counters: crate::usage::Counters,
}

#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Period {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub from: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub to: Timestamp,
}

#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageNumbers {
    pub storage_bytes: u64,
    pub files: u64,
    pub keys: u64,
    #[serde(flatten)]
    pub counters: crate::usage::Counters,
}

/// What `whoami` answers.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WhoAmI {
    pub tenant: TenantView,
    /// The credential's rights: for a signed-in person, their role here (`id` is `null`).
    pub key: WhoAmIKey,
    /// The signed-in person, when the request came with a session (absent for keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<crate::people::UserInfo>,
}

#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WhoAmIKey {
    /// `null` for the operator key.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub id: Option<KeyId>,
    pub role: Role,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub prefix: Option<PathPrefix>,
    pub operator: bool,
}

pub struct Tenantry {
    store: Arc<dyn Store>,
    directory: Directory,
    /// Users, memberships and sessions, in memory like the directory.
    people: crate::people::People,
    throttle: crate::people::LoginThrottle,
    config: ServiceConfig,
    operator_hash: SecretHash,
    clock: Arc<dyn Clock>,
    /// Warnings raised on the request path, written by the next usage flush.
    warnings: std::sync::Mutex<Vec<(TenantId, EventDraft)>>,
    /// Moves under way, with how far each has come.
    moving: Arc<std::sync::Mutex<std::collections::HashMap<TenantId, crate::store::MoveProgress>>>,
    /// When each tenant's audit log is next due for pruning.
    audit_prune: audit_log::PruneSchedule,
    /// Numbers of background workers outside the store (the NATS relay) for `/metrics`.
    metric_sources: std::sync::RwLock<Vec<Arc<dyn MetricSource>>>,
}

/// Something besides the store that reports numbers about its workings for `/metrics`, read
/// from memory (cheap to scrape).
pub trait MetricSource: Send + Sync {
    fn metrics(&self) -> Vec<crate::store::StoreMetric>;
}

fn validate_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(Error::invalid_request("`name` must be 1 to 200 characters without control characters"));
    }
    Ok(name.to_owned())
}

fn validate_metadata(v: Value) -> Result<Value> {
    if !v.is_object() {
        return Err(Error::invalid_request("`metadata` must be a JSON object"));
    }
    if serde_json::to_vec(&v).map(|b| b.len()).unwrap_or(usize::MAX) > 64 * 1024 {
        return Err(Error::new(ErrorCode::TooLarge, "`metadata` is larger than 64 KiB"));
    }
    Ok(v)
}

fn validate_domains(domains: Vec<String>) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(domains.len());
    for d in domains {
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid = !d.is_empty()
            && d.len() <= 253
            && d.contains('.')
            && d.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !valid {
            return Err(Error::invalid_request(format!(
                "invalid domain {d:?}: use a hostname such as files.example.com"
            )));
        }
        if !out.contains(&d) {
            out.push(d);
        }
    }
    if out.len() > 32 {
        return Err(Error::invalid_request("at most 32 domains per tenant"));
    }
    Ok(out)
}

fn decode_cursor(cursor: Option<&str>) -> Result<Option<String>> {
    match cursor.filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(c) => hex::decode(c)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(Some)
            .ok_or_else(|| Error::invalid_request("invalid `cursor`: pass back a `next_cursor` unchanged")),
    }
}

fn encode_cursor(last: &str) -> String {
    hex::encode(last.as_bytes())
}

/// The longest tenant search accepted: longer than any slug or name.
const MAX_SEARCH_CHARS: usize = 200;

/// A tenant search (`q`), trimmed; empty is none.
fn search_text(text: Option<&str>) -> Result<Option<&str>> {
    let text = text.map(str::trim).filter(|t| !t.is_empty());
    if text.is_some_and(|t| t.chars().count() > MAX_SEARCH_CHARS) {
        return Err(Error::invalid_request(format!("`q` is longer than {MAX_SEARCH_CHARS} characters")));
    }
    Ok(text)
}

fn page_limit(limit: Option<usize>) -> Result<usize> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(0) => Err(Error::invalid_request("`limit` must be at least 1")),
        Some(n) => Ok(n.min(MAX_PAGE)),
    }
}

impl Tenantry {
    /// Loads the directory from the store and makes sure the `default` tenant exists.
    pub async fn start(
        store: Arc<dyn Store>,
        config: ServiceConfig,
        operator_key: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Tenantry> {
        let this = Tenantry {
            store,
            directory: Directory::default(),
            people: Default::default(),
            throttle: Default::default(),
            config,
            operator_hash: SecretHash::of(operator_key),
            clock,
            warnings: Default::default(),
            metric_sources: Default::default(),
            moving: Default::default(),
            audit_prune: Default::default(),
        };
        let (tenants, keys) = this.store.load_directory().await?;
        this.directory.load(tenants, keys);
        let (users, sessions, members) = this.store.load_people().await?;
        this.people.load(users, sessions, members);
        this.catch_up_months().await?;
        if this.directory.tenant_by_slug(DEFAULT_SLUG).is_none() {
            let now = this.clock.now();
            let tenant = Tenant::new(Slug::default_tenant(), "Default", "enterprise", now);
            let audit = AuditDraft {
                actor: "system".into(),
                action: actions::TENANT_CREATE.into(),
                target: DEFAULT_SLUG.into(),
                result: "ok".into(),
                request_id: String::new(),
                ip: String::new(),
            };
            match this.store.insert_tenant(&TenantScope::new(&tenant), &tenant, None, audit).await {
                Ok(()) => this.directory.put_tenant(tenant),
                // Another node sharing the store created it first.
                Err(e) if e.code == ErrorCode::Conflict => {
                    let (tenants, keys) = this.store.load_directory().await?;
                    this.directory.load(tenants, keys);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(this)
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// Whether the storage answers (readiness).
    pub async fn storage_ready(&self) -> Result<()> {
        self.store.ready().await
    }

    /// The storage backend's own figures, for `/metrics`.
    pub fn storage_metrics(&self) -> Vec<crate::store::StoreMetric> {
        self.store.metrics()
    }

    /// The numbers of the registered [`MetricSource`]s, for `/metrics`.
    pub fn worker_metrics(&self) -> Vec<crate::store::StoreMetric> {
        let sources = self.metric_sources.read().unwrap_or_else(|e| e.into_inner()).clone();
        sources.iter().flat_map(|s| s.metrics()).collect()
    }

    /// Registers a worker's numbers for `/metrics`.
    pub fn add_metric_source(&self, source: Arc<dyn MetricSource>) {
        self.metric_sources.write().unwrap_or_else(|e| e.into_inner()).push(source);
    }

    /// Registers a sink told about every committed event (the SSE hub, the delivery worker).
    pub fn add_event_sink(&self, sink: Arc<dyn crate::events::EventSink>) {
        self.store.add_event_sink(sink);
    }

    /// Registers whom the store tells when another node changes the directory (several nodes on
    /// one database); the follower calls [`Tenantry::reload_tenant`] and
    /// [`Tenantry::resync_directory`].
    pub fn add_directory_follower(&self, follower: Arc<dyn crate::directory::DirectoryFollower>) {
        self.store.add_directory_follower(follower);
    }

    /// Re-reads one tenant, its keys and its members (after a node changed them): a purged
    /// tenant leaves the directory. A re-read of the tenant and keys that this node's own change
    /// overtook is dropped ([`Directory::apply_reread`]): that change's own notice brings a newer
    /// one. Members are read again until no change of this node overtakes the read.
    pub async fn reload_tenant(&self, id: &TenantId) -> Result<()> {
        let seen = self.directory.local_changes(id);
        let found = self.store.load_tenant_directory(id).await?;
        self.directory.apply_reread(id, found.clone(), seen);
        // Memberships: read again while this node's own membership changes overtake the read
        // (a removal here must not be undone by an older read).
        for _ in 0..20 {
            let seen_members = self.people.member_changes(id);
            let members = match &found {
                Some((tenant, _)) => self.store.load_members(&TenantScope::new(tenant)).await?,
                None => Vec::new(),
            };
            if self.people.replace_members(id, members, seen_members) {
                return Ok(());
            }
        }
        Err(Error::internal(format!("this node's own membership changes of {id} overtook 20 re-reads in a row")))
    }

    /// Brings each tenant's API calls this month up to what the store holds (every node's flushed
    /// usage) plus this node's unflushed ones: at start, and after a resynchronization (other
    /// nodes' counts this node missed are there once those nodes have flushed them).
    pub async fn catch_up_months(&self) -> Result<()> {
        let (month_start, month_end) = self.clock.now().month_bounds();
        let day = |t: Timestamp| t.millis().div_euclid(crate::usage::DAY_MS);
        for (tenant, n) in self.store.calls_between(day(month_start), day(month_end)).await? {
            if let Some(entry) = self.directory.entry(&tenant) {
                entry.activity().catch_up_month(month_start.millis(), month_end.millis(), n);
            }
        }
        Ok(())
    }

    /// Another node revoked `key` of `tenant` at `at`: refused here from now on, before the
    /// tenant is re-read (see [`crate::directory::DirectoryFollower::key_revoked`]).
    pub fn key_revoked_elsewhere(&self, tenant: &TenantId, key: &KeyId, at: Timestamp) {
        self.directory.revoke_key(tenant, key, at);
    }

    /// Re-reads the whole directory (changes may have been missed), keeping each tenant's
    /// counters; read again while this node's own changes overtake the read. (Counts missed
    /// meanwhile come back with [`Tenantry::catch_up_months`].)
    pub async fn resync_directory(&self) -> Result<()> {
        for _ in 0..20 {
            let seen = self.directory.all_local_changes();
            let (tenants, keys) = self.store.load_directory().await?;
            let (users, sessions, members) = self.store.load_people().await?;
            if self.directory.sync(tenants, keys, seen) {
                self.people.load(users, sessions, members);
                return Ok(());
            }
        }
        Err(Error::internal("this node's own directory changes overtook 20 re-reads in a row"))
    }

    /// The refusal of a feature `tenant` lacks (`name`: its name among the limits, e.g.
    /// `webhooks`), naming the command that gives it: its override turned back on when its tier
    /// has the feature, else the smallest larger tier that does (none while `creating`: the
    /// tenant does not exist yet to be updated, and `create` is told the tier instead).
    pub(crate) fn missing_feature(
        &self,
        tenant: &Tenant,
        what: &str,
        name: &str,
        has: impl Fn(&Limits) -> bool,
        creating: bool,
    ) -> Error {
        let slug = tenant.slug.as_str();
        let own = self.config.tiers.get(&tenant.tier);
        let overridden = own.is_some_and(&has);
        let verb = if creating { "create" } else { "update" };
        let lift = if overridden {
            (!creating).then(|| format!("tenantry tenant update {slug} --quota {name}=true"))
        } else {
            let floor = own.map_or(0, |l| l.max_storage_bytes.unwrap_or(u64::MAX));
            self.config
                .tiers
                .smallest_with(|l| has(l) && l.max_storage_bytes.unwrap_or(u64::MAX) > floor)
                .map(|t| format!("tenantry tenant {verb} {slug} --tier {t}"))
        };
        Error::feature_not_in_tier(what, &tenant.tier, overridden, lift.as_deref())
    }

    /// Effective limits of a tenant: its tier's, with its own overrides on top.
    pub fn limits_of(&self, tenant: &Tenant) -> Limits {
        self.config.tiers.limits_of(tenant)
    }

    pub fn view(&self, tenant: &Tenant) -> TenantView {
        TenantView { tenant: tenant.clone(), limits: self.limits_of(tenant) }
    }

    // ---- the edge -------------------------------------------------------------------------

    /// Authenticates a request (API.md §3). Refusals that concern a known tenant are audited there.
    pub async fn authenticate(&self, facts: RequestFacts) -> Result<Caller> {
        let authority = caller::Authority {
            dir: &self.directory,
            people: &self.people,
            naming: &self.config.naming,
            tiers: &self.config.tiers,
            operator_hash: &self.operator_hash,
            sessions: &self.config.sessions,
        };
        match caller::authenticate(&authority, facts, self.clock.now()) {
            Ok(c) => Ok(c),
            Err(refusal) => {
                if let Some(audit) = refusal.audit_in {
                    // A refusal past the key costs its tenant what an answer does: a place in
                    // its rate limit and an API call metered. Past the limit it is answered 429
                    // like any other request, and not audited a second time.
                    let (caller, draft) = *audit;
                    if let Some(d) = self.admit(&caller).filter(|d| !d.allowed) {
                        return Err(Error::rate_limited(d.limit, d.retry_after_secs));
                    }
                    self.record_refused(&caller);
                    self.store.append_audit(&caller.scope(), draft).await?;
                }
                Err(refusal.error)
            }
        }
    }

    /// Whether `secret` is the operator key (for the operator-only parts of `/metrics`).
    pub fn is_operator_key(&self, secret: &str) -> bool {
        self.operator_hash.matches(secret)
    }

    /// The `n` tenants with the most requests since start (answered or refused), busiest first.
    pub fn busiest_tenants(&self, n: usize) -> Vec<(TenantId, u64)> {
        let mut all = Vec::new();
        self.directory.for_each_activity(|id, a| {
            if a.requests() > 0 {
                all.push((id.clone(), a.requests()));
            }
        });
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    /// (slug, requests, stored bytes, files) of the given tenants, for the busiest-tenants metrics.
    /// Tenants purged meanwhile are left out.
    pub async fn tenant_gauges(&self, busiest: Vec<(TenantId, u64)>) -> Result<Vec<(String, u64, u64, u64)>> {
        let mut rows = Vec::with_capacity(busiest.len());
        for (id, requests) in busiest {
            let Some(tenant) = self.directory.tenant(&id) else { continue };
            let used = self.store.usage(&crate::store::TenantScope::new(&tenant)).await?;
            rows.push((tenant.slug.to_string(), requests, used.storage_bytes, used.files));
        }
        Ok(rows)
    }

    /// Counts a tenant-key request against its tenant's `max_requests_per_minute` (API.md §8).
    /// `None` for the operator and for tenants without a rate limit.
    pub fn admit(&self, caller: &Caller) -> Option<crate::ratelimit::RateDecision> {
        if caller.is_operator() {
            return None;
        }
        let per_minute = caller.limits().max_requests_per_minute?;
        Some(caller.activity().admit(per_minute, self.clock.now().millis()))
    }

    /// The monthly allowance (`max_api_calls_month`): 429 `quota_exceeded` once spent. Counted
    /// in memory, so the check costs no database round trip. Tenant keys only.
    pub fn check_allowance(&self, caller: &Caller) -> Result<()> {
        if caller.is_operator() {
            return Ok(());
        }
        let Some(max) = caller.limits().max_api_calls_month else { return Ok(()) };
        let (month_start, _) = self.clock.now().month_bounds();
        let used = caller.activity().month_calls(month_start.millis());
        if used >= max {
            let mut e = Error::quota_exceeded("max_api_calls_month", max, used);
            e.code = ErrorCode::AllowanceExceeded;
            e.message = format!("the monthly allowance of {max} API calls is spent; it renews on the 1st (UTC)");
            return Err(e);
        }
        Ok(())
    }

    /// Meters one answered request of a tenant key (API.md §8 usage). Crossing 80% of the monthly
    /// allowance queues a `quota.warning`, written with the next flush (this path never waits on
    /// storage).
    pub fn record_request(&self, caller: &Caller, read: bool, bytes_in: u64, bytes_out: u64) {
        if caller.is_operator() {
            return;
        }
        let now = self.clock.now();
        let c = crate::usage::Counters {
            api_calls: 1,
            reads: u64::from(read),
            writes: u64::from(!read),
            bytes_in,
            bytes_out,
            searches: 0,
        };
        let tenant = caller.tenant();
        let (before, after) = caller.activity().record(now.millis(), now.month_bounds().0.millis(), c);
        let max = caller.limits().max_api_calls_month;
        if crate::tier::crosses_warning(before, after, max) {
            let draft = EventDraft::quota_warning("max_api_calls_month", max.unwrap_or(0), after);
            self.warnings.lock().unwrap_or_else(|e| e.into_inner()).push((tenant.id.clone(), draft));
        }
    }

    /// Meters a request of a tenant key refused before its handler (a tenant mismatch, a
    /// suspended tenant): one API call, neither a read nor a write.
    fn record_refused(&self, caller: &Caller) {
        let now = self.clock.now();
        let c = crate::usage::Counters { api_calls: 1, ..Default::default() };
        caller.activity().record(now.millis(), now.month_bounds().0.millis(), c);
    }

    /// Tells the other nodes sharing the store what this node let through and metered since the
    /// last time, so each tenant's rate limit and monthly allowance hold for the cluster as a
    /// whole (called every [`SHARE_ACTIVITY_EVERY`] where several nodes may share the store).
    pub async fn share_activity(&self) -> Result<()> {
        let mut shares = Vec::new();
        self.directory.for_each_activity(|tenant, activity| {
            let (admitted, calls) = activity.take_unshared();
            if admitted > 0 || calls > 0 {
                shares.push(crate::activity::ActivityShare { tenant: tenant.clone(), admitted, calls });
            }
        });
        if shares.is_empty() {
            return Ok(());
        }
        let told = self.store.announce_activity(&shares).await;
        if told.is_err() {
            for share in &shares {
                if let Some(entry) = self.directory.entry(&share.tenant) {
                    entry.activity().restore_unshared(share.admitted, share.calls);
                }
            }
        }
        told
    }

    /// Writes the metered usage to the store (called every few seconds and at shutdown).
    pub async fn flush_usage(&self) -> Result<()> {
        let mut warnings = std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|e| e.into_inner())).into_iter();
        while let Some((tenant, draft)) = warnings.next() {
            let Some(t) = self.directory.tenant(&tenant) else { continue };
            if let Err(e) = self.store.publish_event(&crate::store::TenantScope::new(&t), draft.clone()).await {
                // Kept for the next flush, this one first.
                let mut pending = self.warnings.lock().unwrap_or_else(|e| e.into_inner());
                let rest: Vec<_> = std::iter::once((tenant, draft)).chain(warnings).collect();
                pending.splice(0..0, rest);
                return Err(e);
            }
        }
        let mut batch = Vec::new();
        self.directory.for_each_activity(|tenant, activity| {
            batch.extend(activity.take_pending().into_iter().map(|(d, c)| (tenant.clone(), d, c)));
        });
        if batch.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.store.add_usage(batch.clone()).await {
            // Purged meanwhile: nothing to bill, nowhere to hand it back to.
            for (tenant, d, c) in batch {
                if let Some(entry) = self.directory.entry(&tenant) {
                    entry.activity().restore_pending(d, &c);
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// Usage of `tenant` not yet flushed, per day on days `[from_day, to_day)`.
    fn pending_usage(&self, tenant: &TenantId, from_day: i64, to_day: i64) -> Vec<(i64, crate::usage::Counters)> {
        self.directory.entry(tenant).map(|e| e.activity().pending_by_day(from_day, to_day)).unwrap_or_default()
    }

    async fn usage_report(&self, tenant: &Tenant, scope: &TenantScope) -> Result<UsageReport> {
        let (from, to) = self.clock.now().month_bounds();
        let day = |t: Timestamp| t.millis().div_euclid(crate::usage::DAY_MS);
        let mut counters = self.store.usage_between(scope, day(from), day(to)).await?;
        for (_, c) in self.pending_usage(&tenant.id, day(from), day(to)) {
            counters.add(&c);
        }
        let stored = self.store.usage(scope).await?;
        let keys = self.store.list_keys(scope).await?;
        let now = self.clock.now();
        let usable = keys.iter().filter(|k| k.is_usable(now)).count() as u64;
        Ok(UsageReport {
            tenant: tenant.slug.to_string(),
            tier: tenant.tier.clone(),
            period: Period { from, to },
            usage: UsageNumbers { storage_bytes: stored.storage_bytes, files: stored.files, keys: usable, counters },
            limits: self.limits_of(tenant),
            series: None,
        })
    }

    /// `GET /v1/usage`: the caller's tenant, this month, or over a period as for
    /// [`Self::tenant_usage`].
    pub async fn usage(&self, caller: &Caller, period: UsagePeriod<'_>) -> Result<UsageReport> {
        self.usage_over(caller.tenant(), &caller.scope(), period).await
    }

    /// `GET /v1/tenants/{slug}/usage`: the same for any tenant, for the operator. With `from`
    /// and/or `to` (dates or RFC 3339; `to` exclusive) the counters cover that period, and
    /// `series` breaks it down by `granularity` (`day`, the default, or `month`).
    pub async fn tenant_usage(&self, caller: &Caller, slug: &str, period: UsagePeriod<'_>) -> Result<UsageReport> {
        let grant = caller.operator()?;
        let tenant = self.tenant_by_slug(slug)?;
        self.usage_over(&tenant, &grant.scope_of(&tenant), period).await
    }

    async fn usage_over(&self, tenant: &Tenant, scope: &TenantScope, period: UsagePeriod<'_>) -> Result<UsageReport> {
        let UsagePeriod { from, to, granularity } = period;
        let mut report = self.usage_report(tenant, scope).await?;
        if from.is_none() && to.is_none() && granularity.is_none() {
            return Ok(report);
        }
        let parse = |s: &str| {
            let s = s.trim();
            if s.len() == 10 {
                Timestamp::parse(&format!("{s}T00:00:00Z"))
            } else {
                Timestamp::parse(s)
            }
        };
        let from = match from.filter(|s| !s.is_empty()) {
            Some(s) => parse(s)?,
            None => report.period.from,
        };
        let to = match to.filter(|s| !s.is_empty()) {
            Some(s) => parse(s)?,
            None => report.period.to,
        };
        if to <= from {
            return Err(Error::invalid_request("`to` must be after `from`"));
        }
        let monthly = match granularity.unwrap_or("day") {
            "day" => false,
            "month" => true,
            other => return Err(Error::invalid_request(format!("unknown granularity {other:?}: use day or month"))),
        };
        let day_of = |t: Timestamp| t.millis().div_euclid(crate::usage::DAY_MS);
        let (from_day, to_day) = (day_of(from), day_of(Timestamp::from_millis(to.millis() + crate::usage::DAY_MS - 1)));
        let mut days: std::collections::BTreeMap<i64, crate::usage::Counters> = Default::default();
        for (d, c) in self.store.usage_by_day(scope, from_day, to_day).await? {
            days.entry(d).or_default().add(&c);
        }
        for (d, c) in self.pending_usage(&tenant.id, from_day, to_day) {
            days.entry(d).or_default().add(&c);
        }
        let mut series: std::collections::BTreeMap<String, crate::usage::Counters> = Default::default();
        let mut total = crate::usage::Counters::default();
        for (d, c) in &days {
            let date = Timestamp::from_millis(d * crate::usage::DAY_MS).to_string();
            let key = if monthly { date[..7].to_owned() } else { date[..10].to_owned() };
            series.entry(key).or_default().add(c);
            total.add(c);
        }
        report.period = Period { from, to };
        report.usage.counters = total;
        report.series = Some(series.into_iter().map(|(period, counters)| SeriesPoint { period, counters }).collect());
        Ok(report)
    }

    /// Records a refused request in the caller's tenant's audit log.
    /// Audits a request refused after authentication; `rate_bucket`: refused by the tenant's
    /// rate limit.
    pub async fn audit_refusal(
        &self,
        caller: &Caller,
        action: &str,
        target: &str,
        code: &str,
        rate_bucket: bool,
    ) -> Result<()> {
        if self.directory.tenant(&caller.tenant().id).is_none() {
            return Ok(()); // purged meanwhile: nothing left to write to.
        }
        // A client that keeps going past its rate limit gets 429 after 429 from the rate bucket:
        // the first of such a run is audited, the rest are not (each would be a write on the
        // shared writer).
        if rate_bucket && !caller.activity().first_limited_in_run() {
            return Ok(());
        }
        let draft = caller.audit(action, target, &format!("refused:{code}"));
        self.store.append_audit(&caller.scope(), draft).await
    }

    // ---- tenants (operator) ---------------------------------------------------------------

    fn tenant_by_slug(&self, slug: &str) -> Result<Arc<Tenant>> {
        self.directory.tenant_by_slug(slug).ok_or_else(|| Error::tenant_not_found(slug))
    }

    fn check_domains_free(&self, domains: &[String], owner: Option<&TenantId>) -> Result<()> {
        for d in domains {
            if let Some(other) = self.directory.domain_owner(d) {
                if Some(&other) != owner {
                    return Err(Error::conflict(format!("domain '{d}' is already registered to another tenant")));
                }
            }
        }
        Ok(())
    }

    pub async fn create_tenant(&self, caller: &Caller, req: NewTenant) -> Result<(TenantView, MintedKey)> {
        let grant = caller.operator()?;
        let slug = Slug::parse(req.slug.trim())?;
        let tier = req.tier.unwrap_or_else(|| self.config.tiers.default_tier.clone());
        let tier_limits = *self.config.tiers.require(&tier)?;
        let quotas = match &req.quotas {
            Some(v) => QuotaOverrides::parse(v)?,
            None => QuotaOverrides::default(),
        };
        let placement = match req.placement.as_deref() {
            None => Placement::Shared,
            Some(p) => Placement::parse(p)
                .ok_or_else(|| Error::invalid_request(format!("unknown placement {p:?}: use shared or dedicated")))?,
        };
        if placement == Placement::Dedicated && !tier_limits.with_overrides(&quotas).dedicated_placement {
            let asked =
                Tenant { quotas: quotas.clone(), ..Tenant::new(slug.clone(), "", tier.clone(), self.clock.now()) };
            let has = |l: &Limits| l.dedicated_placement;
            return Err(self.missing_feature(&asked, "dedicated placement", "dedicated_placement", has, true));
        }
        let name = validate_name(req.name.as_deref().unwrap_or(slug.as_str()))?;
        let metadata = validate_metadata(req.metadata.unwrap_or_else(|| serde_json::json!({})))?;
        let domains = validate_domains(req.domains.unwrap_or_default())?;
        if self.directory.tenant_by_slug(slug.as_str()).is_some() {
            return Err(Error::conflict(format!("slug '{slug}' is taken")));
        }
        self.check_domains_free(&domains, None)?;

        let now = self.clock.now();
        let tenant = Tenant { placement, domains, quotas, metadata, ..Tenant::new(slug.clone(), name, tier, now) };
        let (owner, secret) = mint_key(&tenant.id, "owner", Role::Owner, None, None, "operator", now);
        let audit = grant.audit(actions::TENANT_CREATE, slug.as_str(), "ok");
        self.store.insert_tenant(&grant.scope_of(&tenant), &tenant, Some(&owner), audit).await?;
        let minted = MintedKey { info: owner.info(), key: secret.expose().to_owned() };
        self.directory.put_tenant(tenant.clone());
        self.directory.put_key(owner);
        Ok((self.view(&tenant), minted))
    }

    pub fn list_tenants(
        &self,
        caller: &Caller,
        status: Option<&str>,
        text: Option<&str>,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Page<TenantView>> {
        caller.operator()?;
        let text = search_text(text)?;
        let status = match status.filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(TenantStatus::parse(s).ok_or_else(|| {
                Error::invalid_request(format!("unknown status {s:?}: use active, suspended or archived"))
            })?),
        };
        let limit = page_limit(limit)?;
        let after = decode_cursor(cursor)?;
        let items = self.directory.list_tenants(status, text, after.as_deref(), limit + 1);
        let page = Page::cut(items, limit, |t| encode_cursor(t.slug.as_str()));
        Ok(Page { items: page.items.iter().map(|t| self.view(t)).collect(), next_cursor: page.next_cursor })
    }

    pub fn get_tenant(&self, caller: &Caller, slug: &str) -> Result<TenantView> {
        caller.operator()?;
        Ok(self.view(&*self.tenant_by_slug(slug)?))
    }

    pub async fn update_tenant(&self, caller: &Caller, slug: &str, patch: TenantPatch) -> Result<TenantView> {
        let grant = caller.operator()?;
        let mut tenant = (*self.tenant_by_slug(slug)?).clone();
        if let Some(name) = patch.name {
            tenant.name = validate_name(&name)?;
        }
        if let Some(tier) = patch.tier {
            self.config.tiers.require(&tier)?;
            tenant.tier = tier;
        }
        if let Some(q) = patch.quotas {
            tenant.quotas = QuotaOverrides::parse(&q)?;
        }
        if let Some(m) = patch.metadata {
            tenant.metadata = validate_metadata(m)?;
        }
        if let Some(d) = patch.domains {
            tenant.domains = validate_domains(d)?;
            self.check_domains_free(&tenant.domains, Some(&tenant.id))?;
        }
        tenant.updated_at = self.clock.now();
        let journal = grant.audit(actions::TENANT_UPDATE, slug, "ok").into();
        self.store.update_tenant(&grant.scope_of(&tenant), &tenant, journal).await?;
        self.directory.put_tenant(tenant.clone());
        Ok(self.view(&tenant))
    }

    pub async fn transition(&self, caller: &Caller, slug: &str, to: Transition) -> Result<TenantView> {
        let grant = caller.operator()?;
        let mut tenant = (*self.tenant_by_slug(slug)?).clone();
        use TenantStatus::*;
        let (allowed_from, next, action): (&[TenantStatus], TenantStatus, &str) = match to {
            Transition::Suspend => (&[Active, Suspended], Suspended, actions::TENANT_SUSPEND),
            Transition::Resume => (&[Suspended, Active], Active, actions::TENANT_RESUME),
            Transition::Archive => (&[Active, Suspended, Archived], Archived, actions::TENANT_ARCHIVE),
            Transition::Restore => (&[Archived], Active, actions::TENANT_RESTORE),
        };
        if tenant.slug.as_str() == DEFAULT_SLUG && next != Active {
            return Err(Error::conflict("the `default` tenant always stays active"));
        }
        if !allowed_from.contains(&tenant.status) {
            let hint = match tenant.status {
                Archived => "; restore it first",
                _ => "",
            };
            return Err(Error::conflict(format!("tenant '{slug}' is {}{hint}", tenant.status.as_str())));
        }
        if tenant.status == next {
            return Ok(self.view(&tenant)); // already there: nothing to change or audit.
        }
        tenant.status = next;
        tenant.updated_at = self.clock.now();
        let event = match next {
            Suspended => Some(event_types::TENANT_SUSPENDED),
            Active if to == Transition::Resume => Some(event_types::TENANT_RESUMED),
            _ => None,
        };
        let journal = Journal {
            audit: grant.audit(action, slug, "ok"),
            event: event.map(|kind| EventDraft::new(kind, "operator".to_owned())),
        };
        self.store.update_tenant(&grant.scope_of(&tenant), &tenant, journal).await?;
        self.directory.put_tenant(tenant.clone());
        Ok(self.view(&tenant))
    }

    pub async fn purge_tenant(&self, caller: &Caller, slug: &str) -> Result<()> {
        let grant = caller.operator()?;
        let tenant = self.tenant_by_slug(slug)?;
        if tenant.status != TenantStatus::Archived {
            return Err(Error::conflict(format!(
                "tenant '{slug}' is {}: only an archived tenant can be purged (archive it with DELETE first)",
                tenant.status.as_str()
            )));
        }
        self.store.purge_tenant(&grant.scope_of(&tenant)).await?;
        self.directory.remove_tenant(&tenant.id);
        self.people.forget_tenant(&tenant.id);
        Ok(())
    }

    // ---- keys -------------------------------------------------------------------------------

    pub async fn create_key(&self, caller: &Caller, req: NewKey) -> Result<MintedKey> {
        caller.require_role(Role::Admin)?;
        let name = validate_name(&req.name)?;
        let role = Role::parse(&req.role)?;
        if role > caller.role() {
            return Err(Error::forbidden(format!("a {} key cannot create a {role} key", caller.role())));
        }
        // `None`: not given (inherit the creator's); `Some(root)`: explicitly everything.
        let asked = match req.prefix.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => Some(PathPrefix::parse(p)?),
            None => None,
        };
        let prefix = match (caller.prefix(), asked) {
            (None, p) => p.filter(|p| !p.is_root()),
            (Some(own), None) => Some(own.clone()),
            (Some(own), Some(p)) if p.is_within(own) => Some(p),
            (Some(own), Some(_)) => {
                return Err(Error::forbidden(format!("the new key's prefix must lie under {}", own.as_dir())))
            }
        };
        let now = self.clock.now();
        let asked = match req.expires_at.as_deref() {
            Some(s) => {
                let t = Timestamp::parse(s)?;
                if t <= now {
                    return Err(Error::invalid_request("`expires_at` is in the past"));
                }
                Some(t)
            }
            None => None,
        };
        // A key never outlives the key that minted it: without `expires_at` it inherits the
        // creator's expiry, and a later one is refused.
        let expires_at = match (caller.expires_at(), asked) {
            (None, asked) => asked,
            (Some(own), None) => Some(own),
            (Some(own), Some(t)) if t <= own => Some(t),
            (Some(own), Some(_)) => {
                return Err(Error::forbidden(format!(
                    "the new key cannot outlive the key creating it, which expires at {own}"
                )))
            }
        };
        let scope = caller.scope();
        let (record, secret) = mint_key(scope.tenant_id(), &name, role, prefix, expires_at, &caller.actor(), now);
        let max_keys = caller.limits().max_keys;
        let event = EventDraft::new(event_types::KEY_CREATED, caller.actor()).detail(serde_json::json!({
            "id": record.id, "name": record.name, "role": record.role.as_str(),
            "prefix": record.prefix.as_ref().map(|p| p.as_str().to_owned()),
        }));
        let journal = Journal::with_event(caller.audit(actions::KEY_CREATE, record.id.as_str(), "ok"), event);
        self.store.insert_key(&scope, &record, max_keys, journal).await?;
        let minted = MintedKey { info: record.info(), key: secret.expose().to_owned() };
        self.directory.put_key(record);
        Ok(minted)
    }

    pub async fn list_keys(&self, caller: &Caller) -> Result<Vec<KeyInfo>> {
        caller.require_role(Role::Admin)?;
        let keys = self.store.list_keys(&caller.scope()).await?;
        // A prefixed key sees only the keys it could act on; a key without a prefix sees all.
        let sees = |k: &&KeyRecord| caller.prefix().is_none() || caller.require_not_narrower_than(k).is_ok();
        Ok(keys.iter().filter(sees).map(KeyRecord::info).collect())
    }

    pub async fn revoke_key(&self, caller: &Caller, id: &str) -> Result<()> {
        caller.require_role(Role::Admin)?;
        let scope = caller.scope();
        let not_found = || Error::not_found(format!("key '{id}' not found"));
        let key_id = KeyId::parse(id).ok_or_else(not_found)?;
        // A key out of a prefixed caller's reach answers as one that does not exist: its
        // listing leaves such keys out too.
        let key = self
            .directory
            .key(&key_id)
            .filter(|k| &k.tenant_id == scope.tenant_id() && caller.reaches_key(k))
            .ok_or_else(not_found)?;
        caller.require_not_narrower_than(&key)?;
        if key.revoked_at.is_some() {
            return Ok(());
        }
        let now = self.clock.now();
        let event = EventDraft::new(event_types::KEY_REVOKED, caller.actor()).detail(serde_json::json!({"id": id}));
        let journal = Journal::with_event(caller.audit(actions::KEY_REVOKE, id, "ok"), event);
        self.store.revoke_key(&scope, &key_id, now, journal).await?;
        let mut revoked = (*key).clone();
        revoked.revoked_at = Some(now);
        self.directory.put_key(revoked);
        Ok(())
    }

    pub fn whoami(&self, caller: &Caller) -> WhoAmI {
        let key = match caller.principal() {
            caller::Principal::Operator => WhoAmIKey { id: None, role: Role::Owner, prefix: None, operator: true },
            caller::Principal::Key(k) => {
                WhoAmIKey { id: Some(k.id.clone()), role: k.role, prefix: k.prefix.clone(), operator: false }
            }
            caller::Principal::Person(p) => WhoAmIKey { id: None, role: p.role, prefix: None, operator: p.operator },
        };
        let user = caller.person().map(|p| p.user.info());
        WhoAmI { tenant: self.view(caller.tenant()), key, user }
    }

    // ---- files ------------------------------------------------------------------------------

    /// Data-plane work is refused on an archived tenant even for the operator. The caller's
    /// tenant snapshot was taken when the request was authenticated, so it is current.
    fn require_live(&self, caller: &Caller) -> Result<()> {
        let t = caller.tenant();
        if t.status == TenantStatus::Archived {
            return Err(Error::conflict(format!("tenant '{}' is archived; restore it first", t.slug)));
        }
        Ok(())
    }

    pub async fn put_file(
        &self,
        caller: &Caller,
        path: TenantPath,
        content: Vec<u8>,
        content_type: Option<String>,
        precondition: Precondition,
    ) -> Result<(FileMeta, WriteOutcome)> {
        caller.require_role(Role::Writer)?;
        caller.require_path(&path)?;
        self.require_live(caller)?;
        if content.len() as u64 > self.config.max_file_bytes {
            return Err(Error::new(
                ErrorCode::TooLarge,
                format!("file is {} bytes; the maximum is {}", content.len(), self.config.max_file_bytes),
            ));
        }
        let content_type = crate::content_type::for_file(&path, content_type.as_deref());
        let journal = Journal::with_event(
            caller.audit(actions::FILE_WRITE, path.as_str(), "ok"),
            EventDraft::new(event_types::FILE_WRITTEN, caller.actor()).path(path.as_str()),
        );
        let limits = *caller.limits();
        let (content, index) =
            // Only a size check here: whether the content is text is read once, where its words are.
            if (crate::search::OFFLOAD_BYTES..=crate::search::MAX_INDEXED_BYTES).contains(&content.len()) {
                self.config.index_work.of_file(content).await
            } else {
                let index = crate::search::IndexDoc::of_file(&content);
                (content, index)
            };
        let write = FileWrite {
            path,
            content,
            content_type,
            precondition,
            at: self.clock.now(),
            max_storage_bytes: limits.max_storage_bytes,
            max_files: limits.max_files,
            index,
        };
        self.store.put_file(&caller.scope(), write, journal).await
    }

    fn file_not_found(path: &TenantPath) -> Error {
        Error::not_found(format!("no file at {path}"))
    }

    pub async fn stat_file(&self, caller: &Caller, path: &TenantPath) -> Result<FileMeta> {
        caller.require_path(path)?;
        self.require_live(caller)?;
        self.store.stat_file(&caller.scope(), path).await?.ok_or_else(|| Self::file_not_found(path))
    }

    pub async fn read_file(
        &self,
        caller: &Caller,
        path: &TenantPath,
        range: Option<ByteRange>,
    ) -> Result<(FileMeta, Vec<u8>)> {
        caller.require_path(path)?;
        self.require_live(caller)?;
        self.store.read_file(&caller.scope(), path, range).await?.ok_or_else(|| Self::file_not_found(path))
    }

    pub async fn delete_file(&self, caller: &Caller, path: &TenantPath, precondition: Precondition) -> Result<()> {
        caller.require_role(Role::Writer)?;
        caller.require_path(path)?;
        self.require_live(caller)?;
        let journal = Journal::with_event(
            caller.audit(actions::FILE_DELETE, path.as_str(), "ok"),
            EventDraft::new(event_types::FILE_DELETED, caller.actor()).path(path.as_str()),
        );
        self.store.delete_file(&caller.scope(), path, precondition, self.clock.now(), journal).await
    }

    /// Lists files in path order under `prefix`, leaving out whatever the key may not see.
    pub async fn list_files(
        &self,
        caller: &Caller,
        prefix: Option<&str>,
        recursive: bool,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Page<FileMeta>> {
        self.require_live(caller)?;
        let asked = PathPrefix::parse(prefix.unwrap_or("/"))?;
        let limit = page_limit(limit)?;
        let after = decode_cursor(cursor)?;
        // Narrow to the key's prefix; disjoint prefixes list nothing (no error: listings just
        // leave out what the key may not see).
        let (within, include_within) = match caller.prefix() {
            None => (asked.clone(), false),
            Some(own) if asked.is_within(own) => (asked.clone(), false),
            // Narrowed to the key's prefix, which covers a file at exactly that path too.
            Some(own) if recursive && own.is_within(&asked) => (own.clone(), own != &asked),
            Some(own) if own.is_within(&asked) => (asked.clone(), false),
            Some(_) => return Ok(Page { items: vec![], next_cursor: None }),
        };
        let listing = FileListing { within, recursive, include_within, after, limit: limit + 1 };
        let items = self.store.list_files(&caller.scope(), listing).await?;
        let mut page = Page::cut(items, limit, |f| encode_cursor(f.path.as_str()));
        page.items.retain(|f| caller.sees(f.path.as_str()));
        Ok(page)
    }

    /// Lists one folder as an S3 listing with a delimiter does (`delimiter=/`): the files directly
    /// in `prefix` and, once each, the folders under it, in path order. A key limited to a deeper
    /// prefix sees only the way to its own files: the one folder leading there, and only when
    /// something is there.
    pub async fn list_folder(
        &self,
        caller: &Caller,
        prefix: Option<&str>,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Page<ListedEntry>> {
        self.require_live(caller)?;
        let asked = PathPrefix::parse(prefix.unwrap_or("/"))?;
        let limit = page_limit(limit)?;
        let after = decode_cursor(cursor)?;
        let items = match caller.prefix() {
            Some(own) if !asked.is_within(own) && own.is_within(&asked) => {
                let mut entries = self.entries_toward(caller, &asked, own).await?;
                entries.retain(|e| after.as_deref().is_none_or(|a| e.path() > a));
                entries
            }
            Some(own) if !asked.is_within(own) => vec![],
            _ => {
                let listing =
                    FileListing { within: asked, recursive: false, include_within: false, after, limit: limit + 1 };
                self.store.list_folder(&caller.scope(), listing).await?
            }
        };
        Ok(Page::cut(items, limit, |e| encode_cursor(e.path())))
    }

    /// What a key limited to `own`, strictly inside `asked`, sees of the folder `asked`: `own`'s
    /// first step below `asked` as a folder when anything lies under it, and `own` itself as a
    /// file when it is one directly in `asked`.
    async fn entries_toward(&self, caller: &Caller, asked: &PathPrefix, own: &PathPrefix) -> Result<Vec<ListedEntry>> {
        let dir = asked.as_dir();
        let below = &own.as_str()[dir.len()..];
        let listing = FileListing { within: own.clone(), recursive: true, include_within: true, after: None, limit: 2 };
        let mut found = self.store.list_files(&caller.scope(), listing).await?.into_iter().peekable();
        let mut entries = Vec::new();
        match below.split_once('/') {
            Some((step, _)) => {
                if found.next().is_some() {
                    entries.push(ListedEntry::Folder { path: format!("{dir}{step}/") });
                }
            }
            None => {
                if let Some(file) = found.next_if(|f| f.path.as_str() == own.as_str()) {
                    entries.push(ListedEntry::File(file));
                }
                if found.next().is_some() {
                    entries.push(ListedEntry::Folder { path: own.as_dir() });
                }
            }
        }
        Ok(entries)
    }
}

fn mint_key(
    tenant: &TenantId,
    name: &str,
    role: Role,
    prefix: Option<PathPrefix>,
    expires_at: Option<Timestamp>,
    created_by: &str,
    now: Timestamp,
) -> (KeyRecord, KeySecret) {
    let id = KeyId::generate();
    let secret = KeySecret::mint(&id);
    let record = KeyRecord {
        id,
        tenant_id: tenant.clone(),
        name: name.to_owned(),
        role,
        prefix,
        hash: secret.hash(),
        created_at: now,
        created_by: created_by.to_owned(),
        expires_at,
        revoked_at: None,
    };
    (record, secret)
}

/// What other nodes counted, added to each tenant's rate state and monthly calls.
impl crate::activity::ActivityFollower for Tenantry {
    fn counted_elsewhere(&self, shares: &[crate::activity::ActivityShare]) {
        let now = self.clock.now();
        let (month_start, _) = now.month_bounds();
        for share in shares {
            let Some(entry) = self.directory.entry(&share.tenant) else { continue };
            let per_minute = self.limits_of(&entry.tenant()).max_requests_per_minute;
            entry.activity().counted_elsewhere(share, per_minute, now.millis(), month_start.millis());
        }
    }
}
