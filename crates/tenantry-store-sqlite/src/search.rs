//! The search index on plain tables (see tenantry_core::search for the why): postings keyed by
//! (tenant, term, kind, doc), so one term's documents under a path prefix are one key range, and
//! the statistics BM25 needs are counted inside the tenant (and the prefix) only.

use crate::counters::{self, Counters};
use crate::error::sql_error;
use crate::store::SqliteStore;
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashSet;
use tenantry_core::ids::TenantId;
use tenantry_core::memory::{searchable_text, SEPARATOR};
use tenantry_core::search::{
    prefix_upper, too_broad, DocKind, Found, IndexDoc, Posting, ScopeStats, SearchAnswer, MAX_PREFIX_WORDS,
};
use tenantry_core::store::{ScopePart, SearchIndex, SearchQuery, TenantScope};
use tenantry_core::Result;

/// A memory entry's document id.
pub(crate) fn memory_doc(namespace: &str, key: &str) -> String {
    format!("{namespace}{SEPARATOR}{key}")
}

/// Postings written or deleted per statement: one statement per row costs more in SQLite's VM
/// than the B-tree work itself.
const BATCH: usize = 32;

/// Makes the index hold `new` for a document (`None`: not indexed any more). Only what changed is
/// written: postings of words no longer present are deleted, the others are upserted in batches.
pub(crate) fn reindex_tx(
    tx: &Connection,
    tenant: &TenantId,
    kind: DocKind,
    doc: &str,
    new: Option<&IndexDoc>,
) -> Result<()> {
    let old: Option<(i64, String)> = tx
        .prepare_cached("SELECT len, terms FROM search_docs WHERE tenant_id = ?1 AND kind = ?2 AND doc = ?3")
        .and_then(|mut s| {
            s.query_row(params![tenant.as_str(), kind as i64, doc], |r| Ok((r.get(0)?, r.get(1)?))).optional()
        })
        .map_err(sql_error)?;
    if old.is_none() && new.is_none() {
        return Ok(());
    }
    let keep: HashSet<&str> = new.map(|n| n.terms.iter().map(|(t, _)| t.as_str()).collect()).unwrap_or_default();
    let removed: Vec<&str> = match &old {
        Some((_, terms)) => terms.split(' ').filter(|t| !t.is_empty() && !keep.contains(t)).collect(),
        None => Vec::new(),
    };
    let k = kind as i64;
    for chunk in removed.chunks(BATCH) {
        // A full batch's statement, the IN list padded with its first term.
        let mut s = tx
            .prepare_cached(&format!(
                "DELETE FROM search_postings WHERE tenant_id = ?1 AND kind = ?2 AND doc = ?3 AND term IN ({})",
                (4..4 + BATCH).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ")
            ))
            .map_err(sql_error)?;
        let padded: Vec<&str> = (0..BATCH).map(|i| chunk.get(i).copied().unwrap_or(chunk[0])).collect();
        let mut all: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(3 + BATCH);
        let tenant_str = tenant.as_str();
        all.push(&tenant_str);
        all.push(&k);
        all.push(&doc);
        for t in &padded {
            all.push(t);
        }
        s.execute(all.as_slice()).map_err(sql_error)?;
    }
    match new {
        Some(entry) => {
            let upsert_sql = |rows: usize| {
                format!(
                    "INSERT INTO search_postings (tenant_id, term, kind, doc, tf, len) VALUES {}
                     ON CONFLICT (tenant_id, term, kind, doc) DO UPDATE SET tf = excluded.tf, len = excluded.len",
                    (0..rows)
                        .map(|r| format!("(?1, ?{}, ?2, ?3, ?{}, ?4)", 5 + 2 * r, 6 + 2 * r))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let tenant_str = tenant.as_str();
            let len = i64::from(entry.len);
            for chunk in entry.terms.chunks(BATCH) {
                let mut s = tx.prepare_cached(&upsert_sql(chunk.len().min(BATCH))).map_err(sql_error)?;
                let mut all: Vec<&dyn rusqlite::ToSql> = vec![&tenant_str, &k, &doc, &len];
                for (term, tf) in chunk {
                    all.push(term);
                    all.push(tf);
                }
                s.execute(all.as_slice()).map_err(sql_error)?;
            }
            let terms: Vec<&str> = entry.terms.iter().map(|(t, _)| t.as_str()).collect();
            tx.prepare_cached(
                "INSERT INTO search_docs (tenant_id, kind, doc, len, terms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (tenant_id, kind, doc) DO UPDATE SET len = excluded.len, terms = excluded.terms",
            )
            .and_then(|mut s| s.execute(params![tenant.as_str(), k, doc, entry.len, terms.join(" ")]))
            .map_err(sql_error)?;
        }
        None => {
            tx.prepare_cached("DELETE FROM search_docs WHERE tenant_id = ?1 AND kind = ?2 AND doc = ?3")
                .and_then(|mut s| s.execute(params![tenant.as_str(), k, doc]))
                .map_err(sql_error)?;
        }
    }
    let old_len = old.as_ref().map_or(0, |o| o.0);
    let docs = i64::from(new.is_some()) - i64::from(old.is_some());
    move_search_counters(tx, tenant, docs, new.map_or(0, |n| i64::from(n.len)) - old_len)
}

fn move_search_counters(tx: &Connection, tenant: &TenantId, docs: i64, words: i64) -> Result<()> {
    counters::add_tx(tx, tenant, Counters { search_docs: docs, search_words: words, ..Default::default() })
}

fn postings_tx(
    conn: &Connection,
    tenant: &TenantId,
    term: &str,
    part: &ScopePart,
    out: &mut Vec<Posting>,
) -> Result<()> {
    let kind = part.kind;
    let map = |r: &rusqlite::Row<'_>| -> rusqlite::Result<Posting> {
        Ok(Posting { kind, doc: r.get(0)?, tf: r.get(1)?, len: r.get(2)? })
    };
    let rows: Vec<Posting> = match &part.range {
        None => conn
            .prepare_cached(
                "SELECT doc, tf, len FROM search_postings WHERE tenant_id = ?1 AND term = ?2 AND kind = ?3 ORDER BY doc",
            )
            .and_then(|mut s| s.query_map(params![tenant.as_str(), term, kind as i64], map)?.collect())
            .map_err(sql_error)?,
        Some((lo, hi)) => conn
            .prepare_cached(
                "SELECT doc, tf, len FROM search_postings WHERE tenant_id = ?1 AND term = ?2 AND kind = ?3
                   AND ((doc >= ?4 AND doc < ?5) OR doc = ?6) ORDER BY doc",
            )
            .and_then(|mut s| s.query_map(params![tenant.as_str(), term, kind as i64, lo, hi, part.exact], map)?.collect())
            .map_err(sql_error)?,
    };
    out.extend(rows);
    Ok(())
}

/// The part's postings of every word in `[prefix, prefix_upper(prefix))`, with the word, added
/// to `out`; refused once more than [`MAX_PREFIX_WORDS`] distinct words are met in the scope
/// (rows come in word order, so that is found before the rest is read).
fn prefix_postings_tx(
    conn: &Connection,
    tenant: &TenantId,
    prefix: &str,
    part: &ScopePart,
    out: &mut Vec<(String, Posting)>,
) -> Result<()> {
    let kind = part.kind;
    let upper = prefix_upper(prefix);
    let mut words: HashSet<String> = out.iter().map(|(w, _)| w.clone()).collect();
    let mut take = |r: &rusqlite::Row<'_>| -> Result<()> {
        let term: String = r.get(0).map_err(sql_error)?;
        if !term.starts_with(prefix) {
            return Ok(());
        }
        if !words.contains(&term) {
            if words.len() == MAX_PREFIX_WORDS {
                return Err(too_broad(prefix));
            }
            words.insert(term.clone());
        }
        let posting = Posting {
            kind,
            doc: r.get(1).map_err(sql_error)?,
            tf: r.get(2).map_err(sql_error)?,
            len: r.get(3).map_err(sql_error)?,
        };
        out.push((term, posting));
        Ok(())
    };
    match &part.range {
        None => {
            let mut s = conn
                .prepare_cached(
                    "SELECT term, doc, tf, len FROM search_postings
                     WHERE tenant_id = ?1 AND term >= ?2 AND term < ?3 AND kind = ?4 ORDER BY term",
                )
                .map_err(sql_error)?;
            let mut rows = s.query(params![tenant.as_str(), prefix, upper, kind as i64]).map_err(sql_error)?;
            while let Some(r) = rows.next().map_err(sql_error)? {
                take(r)?;
            }
        }
        Some((lo, hi)) => {
            let mut s = conn
                .prepare_cached(
                    "SELECT term, doc, tf, len FROM search_postings
                     WHERE tenant_id = ?1 AND term >= ?2 AND term < ?3 AND kind = ?4
                       AND ((doc >= ?5 AND doc < ?6) OR doc = ?7) ORDER BY term",
                )
                .map_err(sql_error)?;
            let mut rows =
                s.query(params![tenant.as_str(), prefix, upper, kind as i64, lo, hi, part.exact]).map_err(sql_error)?;
            while let Some(r) = rows.next().map_err(sql_error)? {
                take(r)?;
            }
        }
    }
    Ok(())
}

fn stats_tx(conn: &Connection, tenant: &TenantId, parts: &[ScopePart]) -> Result<ScopeStats> {
    let mut stats = ScopeStats::default();
    for part in parts {
        let (docs, words): (i64, i64) = match &part.range {
            None => conn
                .prepare_cached(
                    "SELECT count(*), COALESCE(sum(len), 0) FROM search_docs WHERE tenant_id = ?1 AND kind = ?2",
                )
                .and_then(|mut s| {
                    s.query_row(params![tenant.as_str(), part.kind as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                })
                .map_err(sql_error)?,
            Some((lo, hi)) => conn
                .prepare_cached(
                    "SELECT count(*), COALESCE(sum(len), 0) FROM search_docs WHERE tenant_id = ?1 AND kind = ?2
                       AND ((doc >= ?3 AND doc < ?4) OR doc = ?5)",
                )
                .and_then(|mut s| {
                    s.query_row(params![tenant.as_str(), part.kind as i64, lo, hi, part.exact], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                })
                .map_err(sql_error)?,
        };
        stats.docs += docs.max(0) as u64;
        stats.words += words.max(0) as u64;
    }
    Ok(stats)
}

/// The tenant's whole index: kept as counters, so the common unnarrowed search counts nothing.
fn tenant_stats(c: Counters) -> ScopeStats {
    ScopeStats { docs: c.search_docs.max(0) as u64, words: c.search_words.max(0) as u64 }
}

/// The searchable text of a document, or `None` if it is gone or expired.
fn text_tx(conn: &Connection, tenant: &TenantId, kind: DocKind, doc: &str, now: i64) -> Result<Option<String>> {
    match kind {
        DocKind::File => {
            let content: Option<Vec<u8>> = conn
                .prepare_cached(
                    "SELECT content FROM files
                     JOIN file_content ON file_content.id = files.content_id AND file_content.tenant_id = files.tenant_id
                     WHERE files.tenant_id = ?1 AND path = ?2",
                )
                .and_then(|mut s| s.query_row(params![tenant.as_str(), doc], |r| r.get(0)).optional())
                .map_err(sql_error)?;
            Ok(content.map(|c| String::from_utf8_lossy(&c).into_owned()))
        }
        DocKind::Memory => {
            let Some((namespace, key)) = doc.split_once(SEPARATOR) else { return Ok(None) };
            let value: Option<String> = conn
                .prepare_cached(
                    "SELECT value FROM memory WHERE tenant_id = ?1 AND namespace = ?2 AND key = ?3
                       AND (expires_at IS NULL OR expires_at > ?4)",
                )
                .and_then(|mut s| s.query_row(params![tenant.as_str(), namespace, key, now], |r| r.get(0)).optional())
                .map_err(sql_error)?;
            Ok(value.map(|v| serde_json::from_str(&v).map(|v| searchable_text(&v)).unwrap_or(v)))
        }
    }
}

#[async_trait]
impl SearchIndex for SqliteStore {
    async fn search(&self, scope: &TenantScope, query: SearchQuery) -> Result<SearchAnswer> {
        let tenant = scope.tenant_id().clone();
        let pool = self.pool_of(&tenant)?;
        // Taken before the read starts (see `counters`).
        let known = pool.tails().usage(&tenant);
        crate::pool::read_on(pool, move |conn| {
            // One snapshot for postings, statistics and texts.
            let snapshot = conn.unchecked_transaction().map_err(sql_error)?;
            let conn: &Connection = &snapshot;
            let parts = query.parts();
            let mut found = Found::for_query(&query.query);
            for (word, list) in query.query.words().iter().zip(&mut found.words) {
                for part in &parts {
                    postings_tx(conn, &tenant, word, part, list)?;
                }
            }
            for (prefix, list) in query.query.prefixes().iter().zip(&mut found.prefixes) {
                for part in &parts {
                    prefix_postings_tx(conn, &tenant, prefix, part, list)?;
                }
            }
            if found.is_empty() {
                return Ok(SearchAnswer::default());
            }
            let stats = if query.is_whole_index() {
                tenant_stats(known.map_or_else(|| counters::stored(conn, &tenant), Ok)?)
            } else {
                stats_tx(conn, &tenant, &parts)?
            };
            let mut selection = query.select(found, stats);
            while let Some((kind, doc)) = selection.to_read() {
                selection.offer(text_tx(conn, &tenant, kind, &doc, query.now.millis())?);
            }
            let answer = selection.finish();
            drop(snapshot);
            Ok(answer)
        })
        .await
    }
}
