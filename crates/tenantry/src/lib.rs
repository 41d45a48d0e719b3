//! The `tenantry` binary's library half: glue, no business logic. [`config`] layers defaults,
//! the TOML file, `TENANTRY_*` variables and flags into one struct; [`server`] wires the SQLite
//! store, the core service and the HTTP server; [`cli`] is the command-line client.
//! Tests start the real server in-process through [`server::start`].

pub mod cli;
pub mod config;
pub mod server;
