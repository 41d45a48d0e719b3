//! The search index on PostgreSQL tables (see tenantry_core::search for the why): postings in
//! `search_postings` keyed by (tenant, term, kind, doc), so one term's documents under a path
//! prefix or in a namespace are one key range; each indexed document's length and terms in
//! `search_docs`, so it can be unindexed; the tenant's document and word totals in its
//! `tenant_usage` row (`search_docs`, `search_words`). Hits, order and scores are decided by
//! `tenantry_core::search::Selection`, fed with statistics counted inside the tenant and the
//! searched prefix or namespace only.

use crate::error::pg_error;
use crate::journal::{in_one_flight, Pending};
use crate::store::{commit, PgStore};
use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Transaction};
use std::collections::{HashMap, HashSet};
use tenantry_core::ids::TenantId;
use tenantry_core::memory::{searchable_text, SEPARATOR};
use tenantry_core::search::{
    prefix_upper, too_broad, DocKind, Found, IndexDoc, Posting, ScopeStats, SearchAnswer, MAX_PREFIX_WORDS,
};
use tenantry_core::store::{ScopePart, SearchIndex, SearchQuery, TenantScope};
use tenantry_core::Result;

/// A memory entry's document id: namespace and key joined by the separator neither may hold.
pub(crate) fn memory_doc(namespace: &str, key: &str) -> String {
    format!("{namespace}{SEPARATOR}{key}")
}

/// Postings written or deleted per statement (terms travel as one array parameter each).
const BATCH: usize = 4096;

/// A document kind as stored (`kind SMALLINT`).
pub(crate) fn kind_code(kind: DocKind) -> i16 {
    kind as i16
}

/// A count as stored (`INTEGER`); a document's counts never come near the bound.
fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A stored count back (never negative as written).
fn to_u32(n: i32) -> u32 {
    n.max(0) as u32
}

/// A document's terms, each once with its count (the last count of a term given twice wins, as
/// repeated rows of one upsert would leave it), in the order given. Empty terms are left out: the
/// space-joined list in `search_docs` could not give them back to unindex.
fn distinct_terms(doc: &IndexDoc) -> Vec<(&str, i32)> {
    let mut at: HashMap<&str, usize> = HashMap::with_capacity(doc.terms.len());
    let mut out: Vec<(&str, i32)> = Vec::with_capacity(doc.terms.len());
    for (term, tf) in &doc.terms {
        let term = term.as_str();
        if term.is_empty() {
            continue;
        }
        match at.get(term) {
            Some(&i) => out[i].1 = to_i32(*tf),
            None => {
                at.insert(term, out.len());
                out.push((term, to_i32(*tf)));
            }
        }
    }
    out
}

/// A document's stored length and terms: what [`plan_reindex`] compares a new version with.
pub(crate) const OLD_DOC: &str = "SELECT len, terms FROM search_docs WHERE tenant_id = $1 AND kind = $2 AND doc = $3";

/// What the index stores for a document as [`OLD_DOC`] reads it.
pub(crate) fn old_doc(row: Option<&tokio_postgres::Row>) -> Option<(i32, String)> {
    row.map(|r| (r.get::<_, i32>(0), r.get::<_, String>(1)))
}

/// How a document's index rows change: postings of words no longer present are deleted, the
/// others upserted (a posting whose count and document length are unchanged is left as it is),
/// and the tenant's totals move by `docs` and `words`.
pub(crate) struct Reindex<'n> {
    kind: i16,
    removed: Vec<String>,
    terms: Vec<(&'n str, i32)>,
    new_len: i32,
    /// Whether the document is indexed after the change, and was before.
    indexed: bool,
    was_indexed: bool,
    pub docs: i64,
    pub words: i64,
}

pub(crate) fn plan_reindex<'n>(kind: DocKind, old: Option<(i32, String)>, new: Option<&'n IndexDoc>) -> Reindex<'n> {
    let new = new.filter(|n| n.is_indexed());
    let terms: Vec<(&str, i32)> = new.map(distinct_terms).unwrap_or_default();
    let keep: HashSet<&str> = terms.iter().map(|(t, _)| *t).collect();
    let removed: Vec<String> = match &old {
        Some((_, stored)) => {
            stored.split(' ').filter(|t| !t.is_empty() && !keep.contains(t)).map(str::to_owned).collect()
        }
        None => Vec::new(),
    };
    let new_len: i32 = new.map_or(0, |n| to_i32(n.len));
    let old_len: i64 = old.as_ref().map_or(0, |(len, _)| i64::from(*len));
    Reindex {
        kind: kind_code(kind),
        removed,
        terms,
        new_len,
        indexed: new.is_some(),
        was_indexed: old.is_some(),
        docs: i64::from(new.is_some()) - i64::from(old.is_some()),
        words: i64::from(new_len) - old_len,
    }
}

/// The statements that make the index hold `plan` for the document `doc` (the totals are the
/// caller's to write), for one flight with the rest of a write.
pub(crate) async fn reindex_statements<'a, C: GenericClient>(
    tx: &'a C,
    tenant: &'a TenantId,
    doc: &'a str,
    plan: &'a Reindex<'_>,
) -> Result<Vec<Pending<'a>>> {
    let mut out: Vec<Pending<'a>> = Vec::new();
    if !plan.indexed && !plan.was_indexed {
        return Ok(out);
    }
    let (id, k) = (tenant.as_str(), &plan.kind);
    if !plan.removed.is_empty() {
        let st = tx
            .prepare_cached(
                "DELETE FROM search_postings WHERE tenant_id = $1 AND kind = $2 AND doc = $3 AND term = ANY($4::text[])",
            )
            .await
            .map_err(pg_error)?;
        for chunk in plan.removed.chunks(BATCH) {
            let st = st.clone();
            out.push(Box::pin(async move { tx.execute(&st, &[&id, k, &doc, &chunk]).await.map_err(pg_error) }));
        }
    }
    if plan.indexed {
        if !plan.terms.is_empty() {
            let st = tx
                .prepare_cached(
                    "INSERT INTO search_postings (tenant_id, term, kind, doc, tf, len)
                     SELECT $1::text, t.term, $2::int2, $3::text, t.tf, $4::int4
                     FROM unnest($5::text[], $6::int4[]) AS t(term, tf)
                     ON CONFLICT (tenant_id, term, kind, doc) DO UPDATE SET tf = excluded.tf, len = excluded.len
                     WHERE search_postings.tf <> excluded.tf OR search_postings.len <> excluded.len",
                )
                .await
                .map_err(pg_error)?;
            for chunk in plan.terms.chunks(BATCH) {
                let st = st.clone();
                out.push(Box::pin(async move {
                    let words: Vec<&str> = chunk.iter().map(|(t, _)| *t).collect();
                    let counts: Vec<i32> = chunk.iter().map(|(_, n)| *n).collect();
                    tx.execute(&st, &[&id, k, &doc, &plan.new_len, &words, &counts]).await.map_err(pg_error)
                }));
            }
        }
        let st = tx
            .prepare_cached(
                "INSERT INTO search_docs (tenant_id, kind, doc, len, terms) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (tenant_id, kind, doc) DO UPDATE SET len = excluded.len, terms = excluded.terms",
            )
            .await
            .map_err(pg_error)?;
        out.push(Box::pin(async move {
            let joined: String = plan.terms.iter().map(|(t, _)| *t).collect::<Vec<&str>>().join(" ");
            tx.execute(&st, &[&id, k, &doc, &plan.new_len, &joined]).await.map_err(pg_error)
        }));
    } else {
        let st = tx
            .prepare_cached("DELETE FROM search_docs WHERE tenant_id = $1 AND kind = $2 AND doc = $3")
            .await
            .map_err(pg_error)?;
        out.push(Box::pin(async move { tx.execute(&st, &[&id, k, &doc]).await.map_err(pg_error) }));
    }
    Ok(out)
}

/// Makes the index hold `new` for a document (`None`: not indexed any more), and moves the
/// tenant's totals by the change ([`plan_reindex`]), in two flights. Runs inside a write that
/// holds the tenant's usage row.
pub(crate) async fn reindex_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    kind: DocKind,
    doc: &str,
    new: Option<&IndexDoc>,
) -> Result<()> {
    let k: i16 = kind_code(kind);
    let st = tx.prepare_cached(OLD_DOC).await.map_err(pg_error)?;
    let old = old_doc(tx.query_opt(&st, &[&tenant.as_str(), &k, &doc]).await.map_err(pg_error)?.as_ref());
    let plan = plan_reindex(kind, old, new);
    let mut statements = reindex_statements(tx, tenant, doc, &plan).await?;
    if plan.docs != 0 || plan.words != 0 {
        let st = tx
            .prepare_cached(
                "UPDATE tenant_usage SET search_docs = search_docs + $2, search_words = search_words + $3
                 WHERE tenant_id = $1",
            )
            .await
            .map_err(pg_error)?;
        let (id, docs, words) = (tenant.as_str(), plan.docs, plan.words);
        statements.push(Box::pin(async move { tx.execute(&st, &[&id, &docs, &words]).await.map_err(pg_error) }));
    }
    in_one_flight(statements).await
}

/// Adds the part's postings of every query term to that term's list (`lists[i]` for
/// `terms[i]`): one statement per part for all the terms.
async fn postings_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    terms: &[String],
    part: &ScopePart,
    lists: &mut [Vec<Posting>],
) -> Result<()> {
    let k: i16 = kind_code(part.kind);
    let rows = match &part.range {
        None => {
            let st = tx
                .prepare_cached(
                    "SELECT term, doc, tf, len FROM search_postings
                     WHERE tenant_id = $1 AND term = ANY($2::text[]) AND kind = $3 ORDER BY term, doc",
                )
                .await
                .map_err(pg_error)?;
            tx.query(&st, &[&tenant.as_str(), &terms, &k]).await.map_err(pg_error)?
        }
        Some((lo, hi)) => {
            let st = tx
                .prepare_cached(
                    "SELECT term, doc, tf, len FROM search_postings
                     WHERE tenant_id = $1 AND term = ANY($2::text[]) AND kind = $3
                       AND ((doc >= $4 AND doc < $5) OR doc = $6) ORDER BY term, doc",
                )
                .await
                .map_err(pg_error)?;
            tx.query(&st, &[&tenant.as_str(), &terms, &k, lo, hi, &part.exact]).await.map_err(pg_error)?
        }
    };
    for r in &rows {
        let term: String = r.get::<_, String>(0);
        let posting = Posting {
            kind: part.kind,
            doc: r.get::<_, String>(1),
            tf: to_u32(r.get::<_, i32>(2)),
            len: to_u32(r.get::<_, i32>(3)),
        };
        for (i, t) in terms.iter().enumerate() {
            if *t == term {
                lists[i].push(posting.clone());
            }
        }
    }
    Ok(())
}

/// Adds the part's postings of every word starting with a prefix to that prefix's list
/// (`lists[i]` for `prefixes[i]`): one range read per prefix.
async fn prefix_postings_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    prefixes: &[String],
    part: &ScopePart,
    lists: &mut [Vec<(String, Posting)>],
) -> Result<()> {
    let k: i16 = kind_code(part.kind);
    for (prefix, list) in prefixes.iter().zip(lists.iter_mut()) {
        let upper = prefix_upper(prefix);
        // The words of other parts count toward the bound too.
        let before: HashSet<String> = list.iter().map(|(w, _)| w.clone()).collect();
        let rows = match &part.range {
            None => {
                let st = tx
                    .prepare_cached(
                        "SELECT term, doc, tf, len FROM search_postings
                         WHERE tenant_id = $1 AND term >= $2 AND term < $3 AND kind = $4 ORDER BY term",
                    )
                    .await
                    .map_err(pg_error)?;
                tx.query(&st, &[&tenant.as_str(), prefix, &upper, &k]).await.map_err(pg_error)?
            }
            Some((lo, hi)) => {
                let st = tx
                    .prepare_cached(
                        "SELECT term, doc, tf, len FROM search_postings
                         WHERE tenant_id = $1 AND term >= $2 AND term < $3 AND kind = $4
                           AND ((doc >= $5 AND doc < $6) OR doc = $7) ORDER BY term",
                    )
                    .await
                    .map_err(pg_error)?;
                tx.query(&st, &[&tenant.as_str(), prefix, &upper, &k, lo, hi, &part.exact]).await.map_err(pg_error)?
            }
        };
        let mut words: HashSet<String> = before;
        for r in &rows {
            let term: String = r.get::<_, String>(0);
            if !term.starts_with(prefix.as_str()) {
                continue;
            }
            if !words.contains(&term) {
                if words.len() == MAX_PREFIX_WORDS {
                    return Err(too_broad(prefix));
                }
                words.insert(term.clone());
            }
            let posting = Posting {
                kind: part.kind,
                doc: r.get::<_, String>(1),
                tf: to_u32(r.get::<_, i32>(2)),
                len: to_u32(r.get::<_, i32>(3)),
            };
            list.push((term, posting));
        }
    }
    Ok(())
}

/// The statistics of a narrowed scope, counted from `search_docs`: each part's documents and
/// their words.
async fn stats_tx(tx: &Transaction<'_>, tenant: &TenantId, parts: &[ScopePart]) -> Result<ScopeStats> {
    let mut stats = ScopeStats::default();
    for part in parts {
        let k: i16 = kind_code(part.kind);
        let row = match &part.range {
            None => {
                let st = tx
                    .prepare_cached(
                        "SELECT count(*), COALESCE(sum(len), 0)::bigint FROM search_docs
                         WHERE tenant_id = $1 AND kind = $2",
                    )
                    .await
                    .map_err(pg_error)?;
                tx.query_one(&st, &[&tenant.as_str(), &k]).await.map_err(pg_error)?
            }
            Some((lo, hi)) => {
                let st = tx
                    .prepare_cached(
                        "SELECT count(*), COALESCE(sum(len), 0)::bigint FROM search_docs
                         WHERE tenant_id = $1 AND kind = $2 AND ((doc >= $3 AND doc < $4) OR doc = $5)",
                    )
                    .await
                    .map_err(pg_error)?;
                tx.query_one(&st, &[&tenant.as_str(), &k, lo, hi, &part.exact]).await.map_err(pg_error)?
            }
        };
        let (docs, words): (i64, i64) = (row.get::<_, i64>(0), row.get::<_, i64>(1));
        stats.docs += docs.max(0) as u64;
        stats.words += words.max(0) as u64;
    }
    Ok(stats)
}

/// The tenant's whole index: kept as totals in its usage row, so the common unnarrowed search
/// counts nothing.
async fn tenant_stats_tx(tx: &Transaction<'_>, tenant: &TenantId) -> Result<ScopeStats> {
    let st = tx
        .prepare_cached("SELECT search_docs, search_words FROM tenant_usage WHERE tenant_id = $1")
        .await
        .map_err(pg_error)?;
    let row = tx.query_opt(&st, &[&tenant.as_str()]).await.map_err(pg_error)?;
    Ok(match row {
        Some(r) => ScopeStats { docs: r.get::<_, i64>(0).max(0) as u64, words: r.get::<_, i64>(1).max(0) as u64 },
        None => ScopeStats::default(),
    })
}

/// The searchable text of a document, or `None` if it is gone or expired.
async fn text_tx(
    tx: &Transaction<'_>,
    tenant: &TenantId,
    kind: DocKind,
    doc: &str,
    now_ms: i64,
) -> Result<Option<String>> {
    match kind {
        DocKind::File => {
            // The file's row and its body's chunks in one statement, so one snapshot: a write
            // replacing the file meanwhile cannot leave the row pointing at a dropped body. No
            // row lock (a search only reads). An empty body has one row with no chunk.
            let st = tx
                .prepare_cached(
                    "SELECT f.size, c.bytes FROM files f
                     LEFT JOIN file_chunks c ON c.tenant_id = f.tenant_id AND c.body_id = f.body_id
                     WHERE f.tenant_id = $1 AND f.path = $2 ORDER BY c.n",
                )
                .await
                .map_err(pg_error)?;
            let rows = tx.query(&st, &[&tenant.as_str(), &doc]).await.map_err(pg_error)?;
            let Some(first) = rows.first() else { return Ok(None) };
            let size: usize = first.get::<_, i64>(0).max(0) as usize;
            let mut content: Vec<u8> = Vec::with_capacity(size);
            for r in &rows {
                if let Some(bytes) = r.get::<_, Option<Vec<u8>>>(1) {
                    content.extend_from_slice(&bytes);
                }
            }
            content.truncate(size);
            Ok(Some(String::from_utf8_lossy(&content).into_owned()))
        }
        DocKind::Memory => {
            let Some((namespace, key)) = doc.split_once(SEPARATOR) else { return Ok(None) };
            let st = tx
                .prepare_cached(
                    "SELECT value FROM memory WHERE tenant_id = $1 AND namespace = $2 AND key = $3
                       AND (expires_at IS NULL OR expires_at > $4)",
                )
                .await
                .map_err(pg_error)?;
            let row = tx.query_opt(&st, &[&tenant.as_str(), &namespace, &key, &now_ms]).await.map_err(pg_error)?;
            Ok(row.map(|r| {
                let value: String = r.get::<_, String>(0);
                serde_json::from_str::<serde_json::Value>(&value).map(|v| searchable_text(&v)).unwrap_or(value)
            }))
        }
    }
}

#[async_trait]
impl SearchIndex for PgStore {
    async fn search(&self, scope: &TenantScope, query: SearchQuery) -> Result<SearchAnswer> {
        let tenant = scope.tenant_id();
        let parts = query.parts();
        let (words, prefixes) = (query.query.words(), query.query.prefixes());
        if parts.is_empty() {
            return Ok(SearchAnswer::default());
        }
        let mut conn = self.conn_of(tenant).await?;
        let tx = crate::tenant_snapshot(&mut conn, tenant).await?;
        let mut found = Found::for_query(&query.query);
        for part in &parts {
            postings_tx(&tx, tenant, &words, part, &mut found.words).await?;
            prefix_postings_tx(&tx, tenant, &prefixes, part, &mut found.prefixes).await?;
        }
        if found.is_empty() {
            commit(tx).await?;
            return Ok(SearchAnswer::default());
        }
        let stats = if query.is_whole_index() {
            tenant_stats_tx(&tx, tenant).await?
        } else {
            stats_tx(&tx, tenant, &parts).await?
        };
        let now_ms: i64 = query.now.millis();
        let mut selection = query.select(found, stats);
        while let Some((kind, doc)) = selection.to_read() {
            selection.offer(text_tx(&tx, tenant, kind, &doc, now_ms).await?);
        }
        let hits = selection.finish();
        commit(tx).await?;
        Ok(hits)
    }
}
