//! The storage traits, split by capability (tenants and keys, audit, files, memory, search,
//! events, webhooks). A backend implements them all; every method is one atomic transaction.
//! Methods on a tenant's data take a [`TenantScope`], which only an authenticated
//! [`crate::caller::Caller`] can hand out. A method that changes something takes a [`Journal`]:
//! its audit entry and event are written in the same transaction, the event's webhook deliveries
//! queued in the outbox with them, and the event handed to the [`crate::events::EventSink`]
//! after the commit.

use crate::error::Result;
use crate::events::{Event, Journal};
use crate::ids::{KeyId, TenantId, WebhookId};
use crate::memory::{MemoryEntry, MemoryKey, Namespace, SEPARATOR};
use crate::model::{AuditDraft, AuditEntry, FileMeta, KeyRecord, Placement, Tenant};
use crate::path::{PathPrefix, TenantPath};
pub use crate::quota::StoredUsage;
use crate::search::{DocKind, Found, IndexDoc, Query, ScopeStats, SearchAnswer, Selection};
use crate::slug::Slug;
use crate::time::Timestamp;
use crate::webhook::{DeliveryAttempt, Webhook};
use async_trait::async_trait;

/// The tenant a piece of work is for. Its fields are private and its constructor is crate-private:
/// outside this crate one is obtained only from `Caller::scope()` (or, for the operator's tenant
/// administration, `OperatorGrant::scope_of`), so no code path can read a tenant's data without
/// having authenticated for that tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantScope {
    id: TenantId,
    slug: Slug,
    placement: Placement,
}

impl TenantScope {
    pub(crate) fn new(tenant: &Tenant) -> TenantScope {
        TenantScope { id: tenant.id.clone(), slug: tenant.slug.clone(), placement: tenant.placement }
    }
    /// A scope without a caller, for the store contract suite only (feature `store-contract`,
    /// which only that suite turns on; the workspace's default members leave it out).
    #[cfg(feature = "store-contract")]
    pub fn for_store_contract(tenant: &Tenant) -> TenantScope {
        TenantScope::new(tenant)
    }
    pub fn tenant_id(&self) -> &TenantId {
        &self.id
    }
    pub fn slug(&self) -> &Slug {
        &self.slug
    }
    pub fn placement(&self) -> Placement {
        self.placement
    }
}

/// Conditional-request checks, evaluated inside the write transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Precondition {
    #[default]
    None,
    /// `If-Match`: the current ETag must be one of these (`*`: the file must exist).
    IfMatch(Vec<String>),
    /// `If-None-Match: *`: the file must not exist.
    IfNoneMatchAny,
}

#[derive(Debug, Clone)]
pub struct FileWrite {
    pub path: TenantPath,
    pub content: Vec<u8>,
    pub content_type: String,
    pub precondition: Precondition,
    pub at: Timestamp,
    /// Hard limits, checked by the store inside the write transaction (`None`: unlimited).
    pub max_storage_bytes: Option<u64>,
    pub max_files: Option<u64>,
    /// The search index entry of the new content (`None`: not indexed, e.g. binary).
    pub index: Option<IndexDoc>,
}

/// The file a write finds at its path, as far as the rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldFile<'a> {
    pub etag: &'a str,
    pub version: u64,
    pub size: u64,
    pub created_at: Timestamp,
}

/// What a file write does, decided from the file it finds (see [`FileWrite::decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutDecision {
    pub outcome: WriteOutcome,
    /// 1 for a new file, one more than the file it replaces otherwise.
    pub version: u64,
    /// The replaced file's creation time, or the write's time for a new file.
    pub created_at: Timestamp,
    pub delta: crate::quota::UsageDelta,
}

impl FileWrite {
    /// Checks the write's precondition against the file it finds at its path (`None`: none) and
    /// decides its outcome, version, creation time and change of usage. The backend calls this
    /// inside the write's transaction, then holds the change to the limits with
    /// [`crate::quota::storage`] and [`FileWrite::limits`].
    pub fn decide(&self, held: Option<HeldFile<'_>>) -> Result<PutDecision> {
        self.precondition.check(held.map(|h| h.etag))?;
        let bytes = self.content.len() as i64;
        Ok(match held {
            Some(h) => PutDecision {
                outcome: WriteOutcome::Replaced,
                version: h.version + 1,
                created_at: h.created_at,
                delta: crate::quota::UsageDelta { bytes: bytes - h.size as i64, files: 0 },
            },
            None => PutDecision {
                outcome: WriteOutcome::Created,
                version: 1,
                created_at: self.at,
                delta: crate::quota::UsageDelta { bytes, files: 1 },
            },
        })
    }

    /// The storage limits the write is held to.
    pub fn limits(&self) -> crate::quota::StorageLimits {
        crate::quota::StorageLimits { max_storage_bytes: self.max_storage_bytes, max_files: self.max_files }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Created,
    Replaced,
}

/// A listing request, already narrowed: `within` is the directory to list (the caller's key
/// prefix has been applied by the service).
#[derive(Debug, Clone)]
pub struct FileListing {
    pub within: PathPrefix,
    pub recursive: bool,
    /// Also list a file whose path is exactly `within` (a key's prefix covers itself).
    pub include_within: bool,
    /// Only paths strictly greater than this (the cursor).
    pub after: Option<String>,
    pub limit: usize,
}

/// One entry of a listing by folder (`delimiter=/`): a file directly in the folder listed, or a
/// folder under it that holds at least one file. A folder's path ends in `/` and sorts by it, so
/// `/docs.txt` < `/docs/` < `/docs0`. Serialized with its `kind` (`file` or `folder`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum ListedEntry {
    File(FileMeta),
    Folder { path: String },
}

impl ListedEntry {
    pub fn path(&self) -> &str {
        match self {
            ListedEntry::File(f) => f.path.as_str(),
            ListedEntry::Folder { path } => path,
        }
    }
}

/// The least path that sorts after every path under the folder `dir` (which ends in `/`): the
/// folder with its final `/` bumped to `0`, the next byte.
pub fn past_folder(dir: &str) -> String {
    debug_assert!(dir.ends_with('/'));
    format!("{}0", &dir[..dir.len() - 1])
}

/// A listing by folder ([`FileStore::list_folder`]) as a skip scan, one index seek per entry:
/// the backend finds the first file at (`inclusive`) or after `from` and before [`Self::end`],
/// and [`Self::take`] makes it the next entry and moves past it, past its whole folder when it
/// lies in one, however many files that folder holds.
#[derive(Debug, Clone)]
pub struct FolderScan {
    dir: String,
    end: String,
    pub from: String,
    pub inclusive: bool,
}

impl FolderScan {
    /// The scan of `within`, resuming after the cursor `after`: a cursor under a folder of this
    /// level (a folder entry itself, or any path below one) resumes past that whole folder, which
    /// was listed once already.
    pub fn new(within: &PathPrefix, after: Option<String>) -> FolderScan {
        let dir = within.as_dir();
        let end = past_folder(&dir);
        let (mut from, mut inclusive) = match after {
            Some(after) => match after.strip_prefix(dir.as_str()).and_then(|rest| rest.split_once('/')) {
                Some((step, _)) => (past_folder(&format!("{dir}{step}/")), true),
                None => (after, false),
            },
            None => (dir.clone(), true),
        };
        if from < dir {
            (from, inclusive) = (dir.clone(), true);
        }
        FolderScan { dir, end, from, inclusive }
    }

    /// The first path past the folder listed.
    pub fn end(&self) -> &str {
        &self.end
    }

    /// Whether the scan has not moved past `path` yet: the next seek would find it. A backend
    /// that reads several files per seek passes each through this before [`Self::take`], so the
    /// files of a folder already taken are skipped.
    pub fn admits(&self, path: &str) -> bool {
        if self.inclusive {
            path >= self.from.as_str()
        } else {
            path > self.from.as_str()
        }
    }

    /// The entry `file` (the next one the seek found) stands for, moving the scan past it.
    pub fn take(&mut self, file: FileMeta) -> ListedEntry {
        match file.path.as_str()[self.dir.len()..].split_once('/') {
            Some((step, _)) => {
                let folder = format!("{}{step}/", self.dir);
                (self.from, self.inclusive) = (past_folder(&folder), true);
                ListedEntry::Folder { path: folder }
            }
            None => {
                (self.from, self.inclusive) = (file.path.as_str().to_owned(), false);
                ListedEntry::File(file)
            }
        }
    }
}

/// A byte range of a file, inclusive start and exclusive end, already clamped to the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

#[async_trait]
pub trait TenantRegistry: Send + Sync {
    /// Creates a tenant with its owner key; `conflict` if the slug or a domain is taken.
    async fn insert_tenant(
        &self,
        scope: &TenantScope,
        tenant: &Tenant,
        owner: Option<&KeyRecord>,
        audit: AuditDraft,
    ) -> Result<()>;
    /// Stores a changed tenant record (name, tier, status, quotas, ...).
    async fn update_tenant(&self, scope: &TenantScope, tenant: &Tenant, journal: Journal) -> Result<()>;
    /// Erases every row of the tenant, its record included.
    async fn purge_tenant(&self, scope: &TenantScope) -> Result<()>;
    /// Adds a key; `quota_exceeded` if the tenant already has `max_keys` usable keys (checked in
    /// the transaction, so concurrent creations cannot pass the limit together).
    async fn insert_key(
        &self,
        scope: &TenantScope,
        key: &KeyRecord,
        max_keys: Option<u64>,
        journal: Journal,
    ) -> Result<()>;
    async fn revoke_key(&self, scope: &TenantScope, id: &KeyId, at: Timestamp, journal: Journal) -> Result<()>;
    async fn list_keys(&self, scope: &TenantScope) -> Result<Vec<KeyRecord>>;
}

/// What one [`AuditLog::prune_audit`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditPruned {
    /// Entries deleted.
    pub deleted: u64,
    /// When the oldest entry still kept was written (`None`: the tenant has no entry).
    pub oldest_kept: Option<Timestamp>,
}

#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends an entry on its own (refused requests, which change nothing else).
    async fn append_audit(&self, scope: &TenantScope, draft: AuditDraft) -> Result<()>;
    /// Entries with `seq` past both `after` and the tenant's anchor, in order.
    async fn list_audit(
        &self,
        scope: &TenantScope,
        after: u64,
        action: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>>;
    /// Where the tenant's chain starts, once older entries were pruned.
    async fn audit_anchor(&self, scope: &TenantScope) -> Result<Option<crate::audit::AuditAnchor>>;
}

#[async_trait]
pub trait FileStore: Send + Sync {
    async fn put_file(
        &self,
        scope: &TenantScope,
        write: FileWrite,
        journal: Journal,
    ) -> Result<(FileMeta, WriteOutcome)>;
    async fn stat_file(&self, scope: &TenantScope, path: &TenantPath) -> Result<Option<FileMeta>>;
    /// The file's metadata and bytes (the whole file, or `range`).
    async fn read_file(
        &self,
        scope: &TenantScope,
        path: &TenantPath,
        range: Option<ByteRange>,
    ) -> Result<Option<(FileMeta, Vec<u8>)>>;
    /// The whole file without touching the hot-file cache: bulk reads (exports) must neither
    /// evict other tenants' hot files nor grow memory with what they read.
    async fn read_file_cold(&self, scope: &TenantScope, path: &TenantPath) -> Result<Option<(FileMeta, Vec<u8>)>>;
    /// `not_found` if absent; `precondition_failed` if the precondition does not hold.
    async fn delete_file(
        &self,
        scope: &TenantScope,
        path: &TenantPath,
        precondition: Precondition,
        at: Timestamp,
        journal: Journal,
    ) -> Result<()>;
    async fn list_files(&self, scope: &TenantScope, listing: FileListing) -> Result<Vec<FileMeta>>;
    /// Up to `listing.limit` entries of the folder `listing.within`, in path order: the files
    /// directly in it and, once each, the folders under it that hold a file (`recursive` and
    /// `include_within` are not read). An `after` ending in `/` names a folder: the listing
    /// resumes past everything under it.
    async fn list_folder(&self, scope: &TenantScope, listing: FileListing) -> Result<Vec<ListedEntry>>;
    /// The tenant's usage counters (bytes and number of files).
    async fn usage(&self, scope: &TenantScope) -> Result<StoredUsage>;
}

/// A memory write, validated by the service.
#[derive(Debug, Clone)]
pub struct MemoryWrite {
    pub namespace: Namespace,
    pub key: MemoryKey,
    /// The value as compact JSON.
    pub value: String,
    pub expires_at: Option<Timestamp>,
    pub at: Timestamp,
    pub max_storage_bytes: Option<u64>,
    pub index: IndexDoc,
}

/// The entry a memory write finds at its key, as far as the rules need it (expired or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldEntry {
    pub size: u64,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

/// What a memory write does, decided from the entry it finds (see [`MemoryWrite::decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryDecision {
    /// The replaced entry's creation time if it was live, else the write's time (an expired
    /// entry being replaced is a new entry).
    pub created_at: Timestamp,
    /// The value's size and the change of the tenant's storage: the new value's size less what
    /// the held entry took (an expired entry's bytes count until it is replaced or reclaimed).
    pub size: u64,
    pub delta: crate::quota::UsageDelta,
}

impl MemoryWrite {
    /// Decides the write's creation time and change of usage from the entry it finds (`None`:
    /// none). The backend calls this inside the write's transaction, then holds the change to
    /// the limits with [`crate::quota::storage`] and [`MemoryWrite::limits`].
    pub fn decide(&self, held: Option<HeldEntry>) -> MemoryDecision {
        let size = self.value.len() as u64;
        let created_at = match held {
            Some(h) if crate::memory::is_live(h.expires_at, self.at) => h.created_at,
            _ => self.at,
        };
        let old = held.map_or(0, |h| h.size as i64);
        MemoryDecision { created_at, size, delta: crate::quota::UsageDelta { bytes: size as i64 - old, files: 0 } }
    }

    /// The storage limits the write is held to (memory values count against storage only).
    pub fn limits(&self) -> crate::quota::StorageLimits {
        crate::quota::StorageLimits { max_storage_bytes: self.max_storage_bytes, max_files: None }
    }
}

/// A memory listing: one namespace, keys starting with `prefix`, after the cursor.
#[derive(Debug, Clone)]
pub struct MemoryListing {
    pub namespace: Namespace,
    pub prefix: String,
    pub after: Option<String>,
    pub limit: usize,
    pub with_values: bool,
    /// Entries expiring at or before this instant are left out.
    pub now: Timestamp,
}

#[async_trait]
pub trait MemoryStore: Send + Sync {
    /// Sets a value (creating or replacing it); storage counts toward `max_storage_bytes`.
    async fn put_memory(&self, scope: &TenantScope, write: MemoryWrite, journal: Journal) -> Result<MemoryEntry>;
    /// The entry unless absent or expired at `now`.
    async fn get_memory(
        &self,
        scope: &TenantScope,
        namespace: &Namespace,
        key: &MemoryKey,
        now: Timestamp,
    ) -> Result<Option<MemoryEntry>>;
    /// `not_found` if absent or expired.
    async fn delete_memory(
        &self,
        scope: &TenantScope,
        namespace: &Namespace,
        key: &MemoryKey,
        now: Timestamp,
        journal: Journal,
    ) -> Result<()>;
    /// In key order.
    async fn list_memory(&self, scope: &TenantScope, listing: MemoryListing) -> Result<Vec<MemoryEntry>>;
    /// Every live entry of the tenant in (namespace, key) order, after `after` (for export).
    async fn list_all_memory(
        &self,
        scope: &TenantScope,
        after: Option<(String, String)>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Vec<MemoryEntry>>;
}

/// A search, narrowed by the service to what the caller may see.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    pub query: Query,
    /// Files under this prefix (`None`: no files). The scope whose statistics rank the hits.
    pub files: Option<PathPrefix>,
    /// Memory entries, of this namespace when given (`None`: no memory).
    pub memory: Option<Option<Namespace>>,
    /// Only files whose path matches this glob (validated) are hits; it narrows the hits, not
    /// the statistics.
    pub glob: Option<String>,
    pub limit: usize,
    pub now: Timestamp,
}

/// One part of a searched scope as the index keys it: documents of a kind, all of them or those
/// whose id is in `[lo, hi)`, plus one exact id (a path prefix covers the file at exactly its
/// path too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePart {
    pub kind: DocKind,
    pub range: Option<(String, String)>,
    pub exact: Option<String>,
}

impl SearchQuery {
    /// The parts of the index the search reads: file ids sort by path, memory ids by namespace
    /// then key (joined by [`crate::memory::SEPARATOR`]), so a prefix or namespace is a range.
    pub fn parts(&self) -> Vec<ScopePart> {
        let mut parts = Vec::new();
        if let Some(prefix) = &self.files {
            if prefix.is_root() {
                parts.push(ScopePart { kind: DocKind::File, range: None, exact: None });
            } else {
                let dir = prefix.as_dir();
                let upper = format!("{}0", &dir[..dir.len() - 1]);
                parts.push(ScopePart {
                    kind: DocKind::File,
                    range: Some((dir, upper)),
                    exact: Some(prefix.as_str().to_owned()),
                });
            }
        }
        if let Some(namespace) = &self.memory {
            let range = namespace.as_ref().map(|ns| {
                let lo = format!("{}{SEPARATOR}", ns.as_str());
                let hi = format!("{}{}", ns.as_str(), char::from_u32(SEPARATOR as u32 + 1).unwrap_or(' '));
                (lo, hi)
            });
            parts.push(ScopePart { kind: DocKind::Memory, range, exact: None });
        }
        parts
    }

    /// Whether the search covers the tenant's whole index (every file and every memory entry),
    /// so the tenant's totals are its statistics; a narrower scope counts its own documents.
    pub fn is_whole_index(&self) -> bool {
        let parts = self.parts();
        parts.len() == 2 && parts.iter().all(|p| p.range.is_none())
    }

    /// Starts the [`Selection`] of this search over what the store `found` in a scope with
    /// `stats`.
    pub fn select(&self, found: Found, stats: ScopeStats) -> Selection {
        let glob = self.glob.as_deref().map(crate::glob::Glob::new);
        let admits = move |kind: DocKind, doc: &str| match (&glob, kind) {
            (Some(glob), DocKind::File) => glob.matches(doc),
            (Some(_), DocKind::Memory) => false,
            (None, _) => true,
        };
        Selection::new(&self.query, found, stats, admits, self.limit)
    }
}

#[async_trait]
pub trait SearchIndex: Send + Sync {
    /// The best hits of the query ([`Selection`] decides them), ranked with statistics of the
    /// searched scope only.
    async fn search(&self, scope: &TenantScope, query: SearchQuery) -> Result<SearchAnswer>;
}

#[async_trait]
pub trait EventLog: Send + Sync {
    /// Events with `seq > after` in order; with `visible`, only those about paths under it.
    async fn list_events(
        &self,
        scope: &TenantScope,
        after: u64,
        visible: Option<PathPrefix>,
        limit: usize,
    ) -> Result<Vec<Event>>;
    /// The tenant's latest `seq` (0 before its first event).
    async fn last_event_seq(&self, scope: &TenantScope) -> Result<u64>;
    /// Writes an event that no change of data carries (a warning raised on the request path).
    async fn publish_event(&self, scope: &TenantScope, draft: crate::events::EventDraft) -> Result<()>;
    /// Registers a sink told about every event after its commit, in commit order.
    fn add_event_sink(&self, sink: std::sync::Arc<dyn crate::events::EventSink>);
}

/// Where a relay of a tenant's events stands (see [`Upkeep::claim_relay`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayPosition {
    /// The last seq relayed.
    pub seq: u64,
    /// Whether the claim took it: else another holder has it, until `lease_until`.
    pub taken: bool,
    pub lease_until: Timestamp,
}

/// A webhook to store, with its secret (kept for signing; never shown again).
#[derive(Debug, Clone)]
pub struct NewWebhookRecord {
    pub hook: Webhook,
    pub secret: String,
}

/// A delivery that is due, with what it takes to make it.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: u64,
    pub tenant_id: TenantId,
    pub webhook_id: WebhookId,
    pub url: String,
    pub secret: String,
    /// The event's type (for the `Tenantry-Event` header).
    pub event_type: String,
    /// The delivery body as queued with the event: its JSON plus `"tenant"`. Sent byte for
    /// byte, so every retry signs and carries the same bytes.
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
}

/// What became of one attempt.
#[derive(Debug, Clone)]
pub struct AttemptReport {
    pub tenant_id: TenantId,
    pub delivery_id: u64,
    pub status: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    pub delivered: bool,
    pub at: Timestamp,
    /// When to try again (`None` with `delivered == false`: give up on this delivery).
    pub retry_at: Option<Timestamp>,
    /// Disable the webhook when its consecutive failures reach this many.
    pub disable_after: u32,
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// `quota_exceeded` beyond `max` webhooks for the tenant.
    async fn insert_webhook(
        &self,
        scope: &TenantScope,
        record: NewWebhookRecord,
        max: usize,
        journal: Journal,
    ) -> Result<()>;
    async fn list_webhooks(&self, scope: &TenantScope) -> Result<Vec<Webhook>>;
    /// The signing secrets of the tenant's webhooks (for an export that asks for them).
    async fn webhook_secrets(&self, scope: &TenantScope) -> Result<Vec<(WebhookId, String)>>;
    async fn get_webhook(&self, scope: &TenantScope, id: &WebhookId) -> Result<Option<Webhook>>;
    /// Sets `enabled` (re-enabling clears the failure count and reason).
    async fn set_webhook_enabled(&self, scope: &TenantScope, id: &WebhookId, enabled: bool) -> Result<()>;
    /// Deletes the webhook, its pending deliveries and its delivery log; `not_found` if absent.
    async fn delete_webhook(&self, scope: &TenantScope, id: &WebhookId, journal: Journal) -> Result<()>;
    /// The webhook's delivery attempts, newest first, with `id < before` when given.
    async fn list_deliveries(
        &self,
        scope: &TenantScope,
        id: &WebhookId,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<DeliveryAttempt>>;
}

/// Bundle imports (see [`crate::import`]): staged rows are invisible until `commit_import`
/// publishes them all in one transaction; a staged import that is aborted, or that a crash
/// interrupted, leaves nothing behind (the backend sweeps it when it opens).
#[async_trait]
pub trait ImportStore: Send + Sync {
    /// Opens an import into the tenant.
    async fn begin_import(&self, scope: &TenantScope, import: &str, at: Timestamp) -> Result<()>;
    /// Stores files' bytes and metadata where nobody sees them. A file whose path holds the same
    /// content (or, under `skip`, any content) is staged without its bytes: nothing to write.
    async fn stage_files(
        &self,
        scope: &TenantScope,
        import: &str,
        policy: crate::import::ConflictPolicy,
        files: Vec<crate::import::StagedFile>,
    ) -> Result<()>;
    /// Stores records (by their position in the bundle) where nobody sees them.
    async fn stage_records(
        &self,
        scope: &TenantScope,
        import: &str,
        records: Vec<(u64, crate::import::StagedRecord)>,
    ) -> Result<()>;
    /// Publishes everything staged, deciding each conflict now, checking the limits, applying the
    /// settings when the plan says so, and writing the journal (its event carries the report).
    /// All or nothing; the staged rows are gone afterwards either way.
    async fn commit_import(
        &self,
        scope: &TenantScope,
        import: &str,
        plan: crate::import::ImportPlan,
        journal: Journal,
    ) -> Result<crate::import::ImportReport>;
    /// Drops a staged import.
    async fn abort_import(&self, scope: &TenantScope, import: &str) -> Result<()>;
}

/// What a move between placements did (the answer of `POST /v1/tenants/{slug}/move`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MoveReport {
    pub tenant: String,
    pub from: Placement,
    pub to: Placement,
    pub files: u64,
    pub file_bytes: u64,
    /// Rows copied in all (files, memory, search index, audit, events, keys, webhooks, ...).
    pub rows: u64,
    /// Copy rounds made while the tenant kept serving, before the fence.
    pub rounds: u32,
    /// Time from the start to the switch.
    pub copy_ms: u64,
    /// How long the tenant's writes waited: the fence, from closing it to the switch.
    pub fence_ms: u64,
    /// Every row compared equal in both places before the switch, and every file's bytes hashed
    /// to its ETag in the new place after it.
    pub verified: bool,
}

/// How far a move has come (for progress reports while it runs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MoveProgress {
    pub copied_bytes: u64,
    pub total_bytes: u64,
}

/// Moving tenants between the shared store and stores of their own.
#[async_trait]
pub trait PlacementStore: Send + Sync {
    /// Moves the tenant's rows to `to` while it keeps serving: copy, catch up, a short write
    /// fence, switch, verify, then delete the old copy. `conflict` if it is there already or a
    /// move is under way. `progress` hears the bytes copied so far, never while the fence
    /// holds the tenant's writes (a slow listener would hold them longer).
    async fn move_tenant(
        &self,
        scope: &TenantScope,
        to: Placement,
        progress: std::sync::Arc<dyn Fn(MoveProgress) + Send + Sync>,
    ) -> Result<MoveReport>;
}

/// Metered request usage, by tenant and UTC day (see [`crate::usage`]).
#[async_trait]
pub trait UsageLog: Send + Sync {
    /// The tenant's counters summed over days `[from_day, to_day)`.
    async fn usage_between(&self, scope: &TenantScope, from_day: i64, to_day: i64) -> Result<crate::usage::Counters>;
    /// The tenant's counters per day over `[from_day, to_day)`, days without usage left out.
    async fn usage_by_day(
        &self,
        scope: &TenantScope,
        from_day: i64,
        to_day: i64,
    ) -> Result<Vec<(i64, crate::usage::Counters)>>;
}

/// One number a backend reports about itself for `/metrics` (its caches, its queues): the name
/// and help text are the backend's, and the server renders them as they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreMetric {
    pub name: &'static str,
    pub help: &'static str,
    /// A counter only ever grows (since start); otherwise it is a gauge.
    pub counter: bool,
    pub value: u64,
}

/// Background work across tenants: loading the directory at start, metering, pruning, expiry
/// and webhook deliveries. Apart from the traits a request reaches: only the service's upkeep
/// and the delivery worker call these, and the service does not hand the store to the HTTP
/// layer.
#[async_trait]
pub trait Upkeep: Send + Sync {
    /// Every tenant and every key, to fill the in-memory directory at start.
    async fn load_directory(&self) -> Result<(Vec<Tenant>, Vec<KeyRecord>)>;
    /// One tenant and all its keys, as [`Upkeep::load_directory`] gives them (`None`: no such
    /// tenant, e.g. purged): what a node re-reads when another node changed the tenant.
    async fn load_tenant_directory(&self, tenant: &TenantId) -> Result<Option<(Tenant, Vec<KeyRecord>)>>;
    /// Registers whom to tell when another node sharing this store changes the directory. A store
    /// that only one node writes to has nothing to tell, and keeps no follower.
    fn add_directory_follower(&self, _follower: std::sync::Arc<dyn crate::directory::DirectoryFollower>) {}
    /// Tells the other nodes sharing this store what this node counted; they hear it through
    /// their [`crate::activity::ActivityFollower`]s. A store only one node uses has nobody to tell.
    async fn announce_activity(&self, _shares: &[crate::activity::ActivityShare]) -> Result<()> {
        Ok(())
    }
    /// Registers whom to tell what other nodes counted (see [`Upkeep::announce_activity`]).
    fn add_activity_follower(&self, _follower: std::sync::Arc<dyn crate::activity::ActivityFollower>) {}
    /// Adds a batch of counters (one transaction). Counters of a tenant no longer registered are
    /// dropped, checked inside the transaction: a purge may commit while a batch is on its way,
    /// and must leave no row of the purged tenant behind.
    async fn add_usage(&self, batch: Vec<(TenantId, i64, crate::usage::Counters)>) -> Result<()>;
    /// Every tenant's API calls over days `[from_day, to_day)` (to seed the monthly allowance).
    async fn calls_between(&self, from_day: i64, to_day: i64) -> Result<Vec<(TenantId, u64)>>;
    /// Background upkeep across tenants: deletes a batch of events (and webhook delivery logs)
    /// older than `before`, returning how many events; `seq` numbers are never reused. With
    /// `relay`, a tenant's events that relay has not passed yet are kept, whatever their age
    /// (all of them while it has no position for the tenant).
    async fn prune_events(&self, before: Timestamp, relay: Option<&str>) -> Result<u64>;
    /// Takes the tenant's relay `relay` (an outside copy of its events, such as NATS) for
    /// `holder` until `lease_until`, if nobody holds it, `holder` does, or the lease ended before
    /// `now`. Returns where the relay stands, taken or not (seq 0 for a relay new to the tenant),
    /// or `None` when the tenant is gone.
    async fn claim_relay(
        &self,
        scope: &TenantScope,
        relay: &str,
        holder: &str,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Option<RelayPosition>>;
    /// Records that `holder` relayed the tenant's events through `seq` (a position never moves
    /// back) and holds on until `lease_until`: `false`, with nothing changed, when `holder` holds
    /// the relay no more (its lease ended and another holder claimed it).
    async fn advance_relay(
        &self,
        scope: &TenantScope,
        relay: &str,
        holder: &str,
        seq: u64,
        lease_until: Timestamp,
    ) -> Result<bool>;
    /// Background upkeep of one tenant: deletes, oldest first, at most `max` of its entries
    /// written before `before`, never its newest one; in the same transaction records the last
    /// one deleted as the tenant's anchor and appends [`crate::audit::prune_record`] of it.
    async fn prune_audit(&self, scope: &TenantScope, before: Timestamp, max: usize) -> Result<AuditPruned>;
    /// Background upkeep across tenants: deletes up to `limit` entries expired at `now` (with their
    /// index entries and storage), returning how many.
    async fn reclaim_expired_memory(&self, now: Timestamp, limit: usize) -> Result<u64>;
    /// The delivery worker's queue, across tenants: deliveries due at `now` of enabled webhooks,
    /// oldest first, at most `per_tenant` of any one tenant.
    async fn due_deliveries(&self, now: Timestamp, limit: usize, per_tenant: usize) -> Result<Vec<DueDelivery>>;
    /// Claims a due delivery for one worker: if it is still due at `now`, its next attempt moves
    /// to `lease_until`, so no other worker (on another node) takes it meanwhile; `false` when
    /// another worker took it first, or it is gone or no longer due. A worker that stops during
    /// its attempt leaves the delivery to whoever finds it due again when the lease ends.
    async fn claim_delivery(&self, tenant: &TenantId, id: u64, now: Timestamp, lease_until: Timestamp) -> Result<bool>;
    /// Logs an attempt and reschedules, completes or gives up on the delivery; updates the
    /// webhook's failure count (disabling it at `disable_after`).
    async fn record_attempt(&self, report: AttemptReport) -> Result<()>;
    /// The earliest time a pending delivery of an enabled webhook is due, if any.
    async fn next_delivery_at(&self) -> Result<Option<Timestamp>>;
}

/// Operational checks of the backend.
#[async_trait]
pub trait Health: Send + Sync {
    /// Ok when the storage answers a trivial query.
    async fn ready(&self) -> Result<()>;
    /// Flushes and closes; called once on shutdown.
    async fn close(&self) -> Result<()>;
    /// Numbers about the backend's own workings, read from memory (no query): cheap to scrape.
    fn metrics(&self) -> Vec<StoreMetric> {
        Vec::new()
    }
}

/// People (API.md §11). Users, sessions and invitations belong to the install (kept with the
/// registry); memberships are rows of their tenant, like its keys: moved and purged with it, and
/// changed with the tenant's journal in one transaction.
#[async_trait]
pub trait PeopleStore: Send + Sync {
    /// Every user, session and membership: what a node holds in memory.
    async fn load_people(
        &self,
    ) -> Result<(Vec<crate::people::UserRecord>, Vec<crate::people::SessionRecord>, Vec<crate::people::Membership>)>;
    /// One user and their sessions (`None`: no such user), after another node changed them.
    async fn load_person(
        &self,
        user: &crate::ids::UserId,
    ) -> Result<Option<(crate::people::UserRecord, Vec<crate::people::SessionRecord>)>>;
    /// A tenant's memberships, oldest first.
    async fn load_members(&self, scope: &TenantScope) -> Result<Vec<crate::people::Membership>>;
    /// Creates a user: `conflict` when another user has the email.
    async fn insert_user(&self, user: &crate::people::UserRecord) -> Result<()>;
    /// Replaces a user's row if it is still the version `was` (its `updated_at`): `conflict`
    /// when it changed meanwhile, `not_found` when there is none. With `end_sessions`, deletes
    /// the user's sessions in the same transaction.
    async fn update_user(&self, user: &crate::people::UserRecord, was: Timestamp, end_sessions: bool) -> Result<()>;
    /// Creates a session if its user is still the version `user_was` (its `updated_at`) and not
    /// disabled: `conflict` otherwise (a password change or disabling raced the sign-in).
    async fn insert_session(&self, session: &crate::people::SessionRecord, user_was: Timestamp) -> Result<()>;
    /// Deletes a session (none is no error: it may have ended already).
    async fn delete_session(&self, id: &crate::ids::SessionId) -> Result<()>;
    /// Records when sessions were last used (those that still exist; never moved back).
    async fn touch_sessions(&self, seen: &[(crate::ids::SessionId, Timestamp)]) -> Result<()>;
    /// Deletes the sessions past their absolute end at `now`, or unused for `idle_ms`, and the
    /// invitations past their end.
    async fn delete_ended_sessions(&self, now: Timestamp, idle_ms: i64) -> Result<u64>;
    /// Adds a membership with the journal of the change: `conflict` when the user is a member.
    async fn insert_member(
        &self,
        scope: &TenantScope,
        member: &crate::people::Membership,
        journal: Journal,
    ) -> Result<()>;
    /// Changes a member's role with the journal of the change: `not_found` when not a member.
    async fn set_member_role(
        &self,
        scope: &TenantScope,
        user: &crate::ids::UserId,
        role: crate::role::Role,
        journal: Journal,
    ) -> Result<()>;
    /// Removes a membership with the journal of the change: `not_found` when there is none.
    async fn remove_member(&self, scope: &TenantScope, user: &crate::ids::UserId, journal: Journal) -> Result<()>;
    /// Stores an invitation, replacing the tenant's earlier one for the same email.
    async fn insert_invitation(&self, invitation: &crate::people::InvitationRecord) -> Result<()>;
    async fn get_invitation(&self, id: &crate::ids::InviteId) -> Result<Option<crate::people::InvitationRecord>>;
    /// Deletes an invitation: whether it was there (of two accepting at once, one gets `true`).
    async fn delete_invitation(&self, id: &crate::ids::InviteId) -> Result<bool>;
    /// A tenant's pending invitations, oldest first.
    async fn list_invitations(&self, scope: &TenantScope) -> Result<Vec<crate::people::InvitationRecord>>;
}

/// Everything a backend provides.
pub trait Store:
    TenantRegistry
    + PeopleStore
    + AuditLog
    + FileStore
    + MemoryStore
    + SearchIndex
    + EventLog
    + WebhookStore
    + ImportStore
    + PlacementStore
    + UsageLog
    + Upkeep
    + Health
    + 'static
{
}
impl<T> Store for T where
    T: TenantRegistry
        + PeopleStore
        + AuditLog
        + FileStore
        + MemoryStore
        + SearchIndex
        + EventLog
        + WebhookStore
        + ImportStore
        + PlacementStore
        + UsageLog
        + Upkeep
        + Health
        + 'static
{
}

/// The ETag of some content: its SHA-256, quoted as HTTP wants it.
pub fn etag_of(content: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("\"{}\"", hex::encode(Sha256::digest(content)))
}

impl Precondition {
    /// Checks the precondition against the current ETag (`None`: no such file).
    pub fn check(&self, current: Option<&str>) -> Result<()> {
        let holds = match self {
            Precondition::None => true,
            Precondition::IfNoneMatchAny => current.is_none(),
            // Strong comparison (RFC 9110 §13.1.1): a weak tag (`W/"..."`) never matches.
            Precondition::IfMatch(tags) => current.is_some_and(|c| tags.iter().any(|t| t == "*" || t == c)),
        };
        if holds {
            Ok(())
        } else {
            Err(crate::error::Error::new(
                crate::error::ErrorCode::PreconditionFailed,
                match (self, current) {
                    (Precondition::IfNoneMatchAny, _) => "the file already exists (If-None-Match: *)".to_owned(),
                    (_, None) => "the file does not exist (If-Match)".to_owned(),
                    (_, Some(c)) => format!("the file's ETag is {c} (If-Match)"),
                },
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_scan_admits_what_its_next_seek_would_find_and_skips_a_taken_folders_files() {
        let file = |p: &str| FileMeta {
            path: TenantPath::parse(p).unwrap(),
            size: 1,
            etag: "\"e\"".into(),
            version: 1,
            content_type: "text/plain".into(),
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
        };
        let mut scan = FolderScan::new(&PathPrefix::parse("/d").unwrap(), None);
        assert!(scan.admits("/d/a"));
        assert_eq!(scan.take(file("/d/a")).path(), "/d/a");
        assert!(!scan.admits("/d/a"), "a file is listed once");
        assert!(scan.admits("/d/m/x"));
        assert_eq!(scan.take(file("/d/m/x")).path(), "/d/m/");
        assert!(!scan.admits("/d/m/y") && !scan.admits("/d/m/z/deep"), "the folder's other files are skipped");
        assert!(scan.admits("/d/m0") && scan.admits("/d/n"));
    }

    #[test]
    fn if_match_compares_strongly() {
        let tag = "\"abc\"";
        assert!(Precondition::IfMatch(vec![tag.into()]).check(Some(tag)).is_ok());
        assert!(Precondition::IfMatch(vec!["*".into()]).check(Some(tag)).is_ok());
        let weak = Precondition::IfMatch(vec!["W/\"abc\"".into()]).check(Some(tag)).unwrap_err();
        assert_eq!(weak.message, "the file's ETag is \"abc\" (If-Match)");
        assert!(Precondition::IfMatch(vec!["*".into()]).check(None).is_err());
    }

    #[test]
    fn a_write_is_decided_from_the_file_it_finds() {
        let write = |content: &[u8], precondition| FileWrite {
            path: TenantPath::parse("/a").unwrap(),
            content: content.to_vec(),
            content_type: "text/plain".into(),
            precondition,
            at: Timestamp::from_millis(5_000),
            max_storage_bytes: Some(10),
            max_files: None,
            index: None,
        };
        let new = write(b"12345", Precondition::None).decide(None).unwrap();
        assert_eq!((new.outcome, new.version, new.created_at.millis()), (WriteOutcome::Created, 1, 5_000));
        assert_eq!((new.delta.bytes, new.delta.files), (5, 1));
        let held = HeldFile { etag: "\"old\"", version: 3, size: 8, created_at: Timestamp::from_millis(1_000) };
        let replaced = write(b"12345", Precondition::IfMatch(vec!["\"old\"".into()])).decide(Some(held)).unwrap();
        assert_eq!(
            (replaced.outcome, replaced.version, replaced.created_at.millis()),
            (WriteOutcome::Replaced, 4, 1_000)
        );
        assert_eq!((replaced.delta.bytes, replaced.delta.files), (-3, 0));
        let refused = write(b"x", Precondition::IfNoneMatchAny).decide(Some(held)).unwrap_err();
        assert_eq!(refused.code, crate::error::ErrorCode::PreconditionFailed);
        assert_eq!(write(b"x", Precondition::None).limits().max_storage_bytes, Some(10));
    }

    #[test]
    fn a_memory_write_keeps_a_live_entrys_creation_time_and_counts_the_size_it_replaces() {
        let write = MemoryWrite {
            namespace: Namespace::parse("ns").unwrap(),
            key: MemoryKey::parse("k").unwrap(),
            value: "\"abcdef\"".into(),
            expires_at: None,
            at: Timestamp::from_millis(5_000),
            max_storage_bytes: Some(100),
            index: IndexDoc::of_text("k abcdef"),
        };
        let at = Timestamp::from_millis;
        let new = write.decide(None);
        assert_eq!((new.created_at, new.size, new.delta.bytes, new.delta.files), (at(5_000), 8, 8, 0));
        let live = HeldEntry { size: 20, created_at: at(1_000), expires_at: Some(at(5_001)) };
        let replaced = write.decide(Some(live));
        assert_eq!((replaced.created_at, replaced.size, replaced.delta.bytes), (at(1_000), 8, -12));
        // Expired at the write's time: a new entry, though its bytes still counted until now.
        let expired = write.decide(Some(HeldEntry { expires_at: Some(at(5_000)), ..live }));
        assert_eq!((expired.created_at, expired.delta.bytes), (at(5_000), -12));
        assert_eq!((write.limits().max_storage_bytes, write.limits().max_files), (Some(100), None));
    }
}
