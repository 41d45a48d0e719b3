//! The storage traits, split by capability (tenants and keys, audit, files). A backend implements
//! them all; every method is one atomic transaction. Methods on a tenant's data take a
//! [`TenantScope`], which only an authenticated [`crate::caller::Caller`] can hand out.

use crate::error::Result;
use crate::ids::{KeyId, TenantId};
use crate::model::{AuditDraft, AuditEntry, FileMeta, KeyRecord, Placement, Tenant};
use crate::path::{PathPrefix, TenantPath};
use crate::slug::Slug;
use crate::time::Timestamp;
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
}

/// A tenant's stored usage, as the usage counters hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoredUsage {
    pub storage_bytes: u64,
    pub files: u64,
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

/// A byte range of a file, inclusive start and exclusive end, already clamped to the size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

#[async_trait]
pub trait TenantRegistry: Send + Sync {
    /// Every tenant and every key, to fill the in-memory directory at start.
    async fn load_directory(&self) -> Result<(Vec<Tenant>, Vec<KeyRecord>)>;
    /// Creates a tenant with its owner key; `conflict` if the slug or a domain is taken.
    async fn insert_tenant(&self, tenant: &Tenant, owner: Option<&KeyRecord>, audit: AuditDraft) -> Result<()>;
    /// Stores a changed tenant record (name, tier, status, quotas, ...).
    async fn update_tenant(&self, tenant: &Tenant, audit: AuditDraft) -> Result<()>;
    /// Erases every row of the tenant, its record included.
    async fn purge_tenant(&self, scope: &TenantScope) -> Result<()>;
    /// Adds a key; `quota_exceeded` if the tenant already has `max_keys` usable keys (checked in
    /// the transaction, so concurrent creations cannot pass the limit together).
    async fn insert_key(
        &self,
        scope: &TenantScope,
        key: &KeyRecord,
        max_keys: Option<u64>,
        audit: AuditDraft,
    ) -> Result<()>;
    async fn revoke_key(&self, scope: &TenantScope, id: &KeyId, at: Timestamp, audit: AuditDraft) -> Result<()>;
    async fn list_keys(&self, scope: &TenantScope) -> Result<Vec<KeyRecord>>;
}

#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends an entry on its own (refused requests, which change nothing else).
    async fn append_audit(&self, scope: &TenantScope, draft: AuditDraft) -> Result<()>;
    async fn list_audit(
        &self,
        scope: &TenantScope,
        after: u64,
        action: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>>;
}

#[async_trait]
pub trait FileStore: Send + Sync {
    async fn put_file(
        &self,
        scope: &TenantScope,
        write: FileWrite,
        audit: AuditDraft,
    ) -> Result<(FileMeta, WriteOutcome)>;
    async fn stat_file(&self, scope: &TenantScope, path: &TenantPath) -> Result<Option<FileMeta>>;
    /// The file's metadata and bytes (the whole file, or `range`).
    async fn read_file(
        &self,
        scope: &TenantScope,
        path: &TenantPath,
        range: Option<ByteRange>,
    ) -> Result<Option<(FileMeta, Vec<u8>)>>;
    /// `not_found` if absent; `precondition_failed` if the precondition does not hold.
    async fn delete_file(
        &self,
        scope: &TenantScope,
        path: &TenantPath,
        precondition: Precondition,
        at: Timestamp,
        audit: AuditDraft,
    ) -> Result<()>;
    async fn list_files(&self, scope: &TenantScope, listing: FileListing) -> Result<Vec<FileMeta>>;
    /// The tenant's usage counters (bytes and number of files).
    async fn usage(&self, scope: &TenantScope) -> Result<StoredUsage>;
}

/// Metered request usage, by tenant and UTC day (see [`crate::usage`]).
#[async_trait]
pub trait UsageLog: Send + Sync {
    /// Adds a batch of counters (one transaction).
    async fn add_usage(&self, batch: Vec<(TenantId, i64, crate::usage::Counters)>) -> Result<()>;
    /// The tenant's counters summed over days `[from_day, to_day)`.
    async fn usage_between(&self, scope: &TenantScope, from_day: i64, to_day: i64) -> Result<crate::usage::Counters>;
    /// The tenant's counters per day over `[from_day, to_day)`, days without usage left out.
    async fn usage_by_day(
        &self,
        scope: &TenantScope,
        from_day: i64,
        to_day: i64,
    ) -> Result<Vec<(i64, crate::usage::Counters)>>;
    /// Every tenant's API calls over days `[from_day, to_day)` (to seed the monthly allowance).
    async fn calls_between(&self, from_day: i64, to_day: i64) -> Result<Vec<(TenantId, u64)>>;
}

/// Operational checks of the backend.
#[async_trait]
pub trait Health: Send + Sync {
    /// Ok when the storage answers a trivial query.
    async fn ready(&self) -> Result<()>;
    /// Flushes and closes; called once on shutdown.
    async fn close(&self) -> Result<()>;
}

/// Everything a backend provides.
pub trait Store: TenantRegistry + AuditLog + FileStore + UsageLog + Health + 'static {}
impl<T: TenantRegistry + AuditLog + FileStore + UsageLog + Health + 'static> Store for T {}

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
            Precondition::IfMatch(tags) => {
                current.is_some_and(|c| tags.iter().any(|t| t == "*" || t == c || t.trim_start_matches("W/") == c))
            }
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
