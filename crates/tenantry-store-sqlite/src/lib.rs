//! The embedded storage backend: SQLite in WAL mode under the data dir, implementing
//! tenantry-core's [`Store`](tenantry_core::store::Store) traits.
//!
//! # Layout
//! - [`schema`]: the migrations, applied in order on open; a newer schema is refused.
//! - [`pool`]: one writer connection (all writes are short transactions, serialized) and a small
//!   pool of reader connections, used from tokio's blocking threads.
//! - `blobs`: file bodies over 1 MiB, in files of their own beside the databases.
//! - `cache`: a bounded cache of small hot files in front of the readers.
//! - `store`: the registry, audit, file and usage traits. Every row carries `tenant_id` and
//!   every index is led by it; every query filters on the `TenantScope` it was handed.
//! - `tails`: the audit and event logs are appended to unindexed tails and folded into their
//!   per-tenant tables in batches (many tenants' writes stay as cheap as one tenant's).
//! - `counters`: the tenants' usage counters, appended to a tail and written back in the same
//!   folds, for the same reason.
//! - `journal`: what each change writes beside itself (audit entry, event, webhook outbox rows)
//!   and the hand-off of committed events to the sinks.
//! - `memory`, `search`, `events`, `webhooks`: the data plane's traits.

mod audit;
mod blobs;
mod cache;
mod counters;
mod events;
mod import;
mod journal;
mod memory;
mod moves;
mod placement;
mod pool;
mod schema;
mod search;
mod store;
mod tails;
mod upkeep;
mod webhooks;

pub use pool::OpenOptions;
pub use schema::SCHEMA_VERSION;
pub use store::SqliteStore;
