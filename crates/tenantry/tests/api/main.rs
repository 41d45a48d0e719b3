//! Black-box tests: the real server over HTTP, one test per contract row of API.md §2–§6, §8
//! and §10, plus the cross-tenant matrix.

mod audit;
mod bodies;
mod bundles;
mod cluster;
mod events;
mod files;
mod helpers;
mod hostile_tenants;
mod import;
mod isolation;
mod keys;
mod memory;
mod model;
mod ops;
mod people;
mod placement;
mod quotas;
mod routing;
mod search;
mod tenants;
mod usage;
mod webhooks;
