//! The embedded storage backend: SQLite in WAL mode under the data dir, implementing
//! tenantry-core's [`Store`](tenantry_core::store::Store) traits.
//!
//! # Layout
//! Listed from the bottom up: a module imports only modules of its own line or of the lines
//! above it (there are no import cycles).
//! - Leaves: `error` (SQLite failures as core errors), [`schema`] (the migrations, applied in
//!   order on open; a newer schema is refused), `blobs` (file bodies over 1 MiB, in files beside
//!   the databases), `cache` (small hot files in memory), `working` (the writer's per-group
//!   working tables), `sinks` (committed events handed to subscribers).
//! - [`pool`]: one database file's writer thread (group commit, a savepoint per write, fair
//!   shares between tenants), its readers and checkpointer. It schedules a `WriterCompanion`'s
//!   work beside the writes and knows nothing else of it.
//! - `counters`, then `tails`: the tenants' usage counters and the audit and event logs, appended
//!   to unindexed tails and folded in batches (many tenants' writes stay as cheap as one
//!   tenant's). `Tails` is the writer's companion; `database` is a pool with it.
//! - `placement` (which database holds a tenant, the fence of a move), then `store`: the
//!   [`SqliteStore`] handle, which routes each read and write to its tenant's database.
//! - Capabilities, each implementing its core traits over the handle: `tenants`, `keys`,
//!   `files`, `usage`, `audit`, `journal` (what every change writes beside itself), `events`,
//!   `webhooks`, `search`, `memory`, `import`, `people` (users, sessions, memberships); `upkeep` (the cross-tenant upkeep trait).
//! - `moves` (the online move engine) and `recovery` (settling at open what a crash left half
//!   done); `SqliteStore::open`, below, opens the databases and runs the recovery.
//!
//! The internals (tails, folds, counters, group commit, blobs, moves) are described in the
//! crate's README.

mod audit;
mod blobs;
mod cache;
mod counters;
mod database;
mod error;
mod events;
mod files;
mod image;
mod import;
mod journal;
mod keys;
mod memory;
mod moves;
mod people;
mod placement;
mod pool;
mod recovery;
mod schema;
mod search;
mod search_layout;
mod search_upkeep;
mod sinks;
mod store;
mod tails;
mod tenants;
mod upkeep;
mod usage;
mod webhooks;
mod working;

pub use pool::OpenOptions;
pub use schema::SCHEMA_VERSION;
pub use store::SqliteStore;

use crate::blobs::Blobs;
use crate::cache::FileCache;
use crate::database::Database;
use crate::placement::{DedicatedPools, Routes};
use crate::sinks::Sinks;
use crate::store::SHARED_DB;
use std::path::Path;
use std::sync::Arc;
use tenantry_core::Result;

impl SqliteStore {
    /// Opens the store in `data_dir` (which must exist), migrating an older schema.
    /// One process at a time: the store holds `DATA/tenantry.lock` locked until it closes (or the
    /// process ends), and a second open of the same directory is refused.
    pub fn open(data_dir: &Path, opts: OpenOptions) -> Result<SqliteStore> {
        let data_lock = crate::store::lock_data_dir(data_dir)?;
        let shared = Arc::new(Database::open_with_tails(&data_dir.join(SHARED_DB), &opts)?);
        let store = SqliteStore {
            data_lock,
            dedicated: Arc::new(DedicatedPools::new(data_dir, &opts, opts.max_open_dedicated)),
            routes: Arc::new(Routes::default()),
            shared,
            cache: Arc::new(FileCache::new(opts.cache_bytes)),
            blobs: Arc::new(Blobs::new(data_dir)),
            sinks: Sinks::default(),
        };
        crate::recovery::recover(&store)?;
        Ok(store)
    }
}
