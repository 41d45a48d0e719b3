//! Tenantry's domain core: what a tenant, key, role, path and tier *are*, the rules between them,
//! and the storage traits a backend implements. It performs no I/O and knows nothing of HTTP or SQL.
//!
//! # Layout
//! - [`slug`], [`path`], [`role`], [`secret`], [`time`], [`ids`]: parsed newtypes ("parse, don't
//!   validate"); everything past the edge takes these, never raw strings.
//! - [`model`]: the records (tenants, keys, files, audit entries) as the API shows them.
//! - [`tier`]: tiers, limits and per-tenant quota overrides.
//! - [`directory`]: the in-memory view of tenants and keys that authenticates a request without a
//!   database round trip, and [`caller`]: the authenticated [`caller::Caller`] it produces.
//!   A [`store::TenantScope`] can only be obtained from a `Caller`: that is the isolation lock.
//! - [`people`]: users, their memberships of tenants and their sessions, in memory as the
//!   directory holds keys; password hashing and sign-in throttling.
//! - [`store`]: the capability traits a storage backend implements.
//! - [`service`]: the use cases (tenants, keys, files, audit) tying rules, store and audit together.
//! - [`audit`]: the tamper-evident hash chain of each tenant's audit log.
//! - [`import`]: bundle imports (conflict policy, rename rule, staged items, the report).
//! - The data plane: [`memory`] (namespaced JSON values), [`search`] (tokens, per-tenant BM25,
//!   snippets), [`events`] (the change feed and the [`events::Journal`] every change writes) and
//!   [`webhook`] (subscriptions, signatures, retries, the private-network guard) with its path
//!   [`glob`]s, matched by an automaton in time linear in the path.

pub mod activity;
pub mod audit;
pub mod caller;
pub mod content_type;
pub mod directory;
pub mod error;
pub mod events;
pub mod glob;
pub mod ids;
pub mod image;
pub mod import;
pub mod memory;
pub mod model;
pub mod path;
pub mod people;
pub mod quota;
pub mod ratelimit;
pub mod role;
pub mod search;
pub mod secret;
pub mod service;
pub mod slug;
pub mod store;
pub mod tier;
pub mod time;
pub mod usage;
pub mod webhook;

pub use error::{Error, ErrorCode, Result};
