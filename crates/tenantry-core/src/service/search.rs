//! Search use case (API.md §7): narrows the query to what the caller may see *before* ranking, so
//! a key with a prefix still gets its full `limit` of hits and never a count or score shaped by
//! documents outside its reach.

use super::Tenantry;
use crate::caller::Caller;
use crate::error::{Error, Result};
use crate::memory::Namespace;
use crate::path::PathPrefix;
use crate::search::{self, SearchAnswer};
use crate::store::SearchQuery;

/// `GET /v1/search` parameters as the client sent them.
#[derive(Debug, Clone, Default)]
pub struct SearchRequest {
    pub q: String,
    pub prefix: Option<String>,
    pub namespace: Option<String>,
    /// `file` or `memory`; both when absent.
    pub kind: Option<String>,
    /// Only files whose path matches this glob (`*`, `**`, `?` as in webhooks' `path_glob`).
    pub glob: Option<String>,
    pub limit: Option<usize>,
}

impl Tenantry {
    pub async fn search(&self, caller: &Caller, req: SearchRequest) -> Result<SearchAnswer> {
        self.require_live(caller)?;
        let query = search::Query::parse(&req.q)?;
        let glob =
            req.glob.as_deref().filter(|g| !g.is_empty()).map(|g| crate::glob::parse_named(g, "glob")).transpose()?;
        let limit = match req.limit {
            None => search::DEFAULT_LIMIT,
            Some(0) => return Err(Error::invalid_request("`limit` must be at least 1")),
            Some(n) => n.min(search::MAX_LIMIT),
        };
        let (want_files, want_memory) = match req.kind.as_deref().filter(|k| !k.is_empty()) {
            None => (true, true),
            Some("file") => (true, false),
            Some("memory") => (false, true),
            Some(other) => {
                return Err(Error::invalid_request(format!("`kind` must be `file` or `memory`, not {other:?}")))
            }
        };
        let asked = req.prefix.as_deref().filter(|p| !p.is_empty()).map(PathPrefix::parse).transpose()?;
        // Files: the asked prefix, narrowed to the key's; disjoint prefixes search no files.
        let files = match (caller.prefix(), &asked) {
            _ if !want_files => None,
            (None, a) => Some(a.clone().unwrap_or_else(PathPrefix::root)),
            (Some(own), None) => Some(own.clone()),
            (Some(own), Some(a)) if a.is_within(own) => Some(a.clone()),
            (Some(own), Some(a)) if own.is_within(a) => Some(own.clone()),
            (Some(_), Some(_)) => None,
        };
        // Memory lies under no path: searched only by keys without a prefix and when no path
        // prefix narrows the search. A glob keeps it in the scope's statistics but admits no
        // memory entry as a hit (`SearchQuery::select`).
        let namespace = req.namespace.as_deref().filter(|n| !n.is_empty()).map(Namespace::parse).transpose()?;
        let memory = (want_memory && caller.prefix().is_none() && asked.is_none()).then_some(namespace);
        let now = self.clock.now();
        let c = crate::usage::Counters { searches: 1, ..Default::default() };
        if !caller.is_operator() {
            caller.activity().record(now.millis(), now.month_bounds().0.millis(), c);
        }
        if files.is_none() && memory.is_none() {
            return Ok(SearchAnswer::default());
        }
        self.store.search(&caller.scope(), SearchQuery { query, files, memory, glob, limit, now }).await
    }
}
