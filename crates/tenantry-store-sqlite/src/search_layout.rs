//! How the SQLite search index's tails and segments are stored and read back (`search` says
//! what the layout is for; `search_upkeep` flushes and merges it): a tail document's term list
//! as text, the catalog row of a segment, and segments' document lists (cached by uid).

use crate::error::sql_error;
use rusqlite::{params, Connection};
use std::collections::HashMap;
use tenantry_core::ids::TenantId;
use tenantry_core::search::segment::{self, SegDoc};
use tenantry_core::search::DocKind;
use tenantry_core::{Error, Result};

pub(crate) fn kind_of(code: i64) -> Result<DocKind> {
    match code {
        0 => Ok(DocKind::File),
        1 => Ok(DocKind::Memory),
        other => Err(Error::internal(format!("a search document of unknown kind {other}"))),
    }
}

/// A tail document's terms as stored: `term count` lines in term order (terms are letters and
/// digits only, so neither separator can occur inside one).
pub(crate) fn tail_terms(terms: &[(String, u32)]) -> String {
    let mut out = String::with_capacity(terms.len() * 10);
    for (i, (term, tf)) in terms.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(term);
        out.push(' ');
        out.push_str(&tf.to_string());
    }
    out
}

/// The terms of a tail document back.
pub(crate) fn parse_tail_terms(text: &str) -> Result<Vec<(String, u32)>> {
    text.split('\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (term, tf) =
                line.split_once(' ').ok_or_else(|| Error::internal("a tail document's terms do not parse"))?;
            let tf: u32 = tf.parse().map_err(|_| Error::internal("a tail document's terms do not parse"))?;
            Ok((term.to_owned(), tf))
        })
        .collect()
}

/// The count of `word` in a tail document's terms, found without parsing them.
pub(crate) fn tail_tf(terms: &str, word: &str) -> Option<u32> {
    let bytes = terms.as_bytes();
    let needle = format!("{word} ");
    for at in memchr::memmem::find_iter(bytes, needle.as_bytes()) {
        if at == 0 || bytes[at - 1] == b'\n' {
            let rest = &terms[at + needle.len()..];
            let end = rest.find('\n').unwrap_or(rest.len());
            return rest[..end].parse().ok();
        }
    }
    None
}

/// The words of a tail document starting with `prefix`, with their counts.
pub(crate) fn tail_prefixed(terms: &str, prefix: &str) -> Vec<(String, u32)> {
    let bytes = terms.as_bytes();
    let mut out = Vec::new();
    for at in memchr::memmem::find_iter(bytes, prefix.as_bytes()) {
        if at == 0 || bytes[at - 1] == b'\n' {
            let line = &terms[at..];
            let line = &line[..line.find('\n').unwrap_or(line.len())];
            if let Some((term, tf)) = line.split_once(' ') {
                if let Ok(tf) = tf.parse() {
                    out.push((term.to_owned(), tf));
                }
            }
        }
    }
    out
}

/// Segments' document lists as searches decode them, by segment uid (a segment never changes, so
/// a list read once serves every later search until evicted). Bounded by documents held.
#[derive(Default)]
pub(crate) struct SegmentDocuments {
    lists: std::sync::Mutex<HashMap<i64, std::sync::Arc<Vec<SegDoc>>>>,
}

/// Documents [`SegmentDocuments`] holds at most, for the whole process (some 60 bytes each).
const CACHED_DOCUMENTS: usize = 1 << 19;

/// The process's document lists: one bound for every database (uids are random, so lists of
/// different databases never collide).
pub(crate) fn segment_documents() -> &'static SegmentDocuments {
    static DOCUMENTS: std::sync::OnceLock<SegmentDocuments> = std::sync::OnceLock::new();
    DOCUMENTS.get_or_init(SegmentDocuments::default)
}

impl SegmentDocuments {
    fn get(&self, uid: i64) -> Option<std::sync::Arc<Vec<SegDoc>>> {
        self.lists.lock().unwrap_or_else(|e| e.into_inner()).get(&uid).cloned()
    }

    fn put(&self, uid: i64, list: std::sync::Arc<Vec<SegDoc>>) {
        let mut lists = self.lists.lock().unwrap_or_else(|e| e.into_inner());
        let mut held: usize = lists.values().map(|l| l.len()).sum();
        // Any entries go first: a search reads every segment of its tenant, so what one evicts
        // another soon reads again; the bound is what matters.
        while held + list.len() > CACHED_DOCUMENTS {
            let Some(uid) = lists.keys().next().copied() else { break };
            held -= lists.remove(&uid).map_or(0, |l| l.len());
        }
        lists.insert(uid, list);
    }
}

/// A segment as a search reads it: its catalog row.
pub(crate) struct SegmentView {
    pub seg: i64,
    pub docs: usize,
    pub dead: Vec<u8>,
    uid: i64,
}

/// The tenant's segments, oldest first.
pub(crate) fn segments_tx(conn: &Connection, tenant: &TenantId) -> Result<Vec<SegmentView>> {
    let mut s = conn
        .prepare_cached("SELECT seg, docs, dead, uid FROM search_segments WHERE tenant_id = ?1 ORDER BY seg")
        .map_err(sql_error)?;
    let rows = s
        .query_map(params![tenant.as_str()], |r| {
            Ok(SegmentView {
                seg: r.get(0)?,
                docs: r.get::<_, i64>(1)?.max(0) as usize,
                dead: r.get(2)?,
                uid: r.get(3)?,
            })
        })
        .map_err(sql_error)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sql_error)
}

/// A segment's whole document list, in number order.
pub(crate) fn documents_tx(conn: &Connection, tenant: &TenantId, seg: i64) -> Result<Vec<SegDoc>> {
    let mut s = conn
        .prepare_cached("SELECT docs FROM search_segment_docs WHERE tenant_id = ?1 AND seg = ?2 ORDER BY chunk")
        .map_err(sql_error)?;
    let mut rows = s.query(params![tenant.as_str(), seg]).map_err(sql_error)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(sql_error)? {
        let bytes: Vec<u8> = r.get(0).map_err(sql_error)?;
        out.extend(segment::decode_docs(&bytes)?);
    }
    Ok(out)
}

impl SegmentView {
    /// Its document list, from `cache` or read (and kept there).
    pub(crate) fn documents(
        &self,
        conn: &Connection,
        tenant: &TenantId,
        cache: &SegmentDocuments,
    ) -> Result<std::sync::Arc<Vec<SegDoc>>> {
        if let Some(list) = cache.get(self.uid) {
            return Ok(list);
        }
        let list = std::sync::Arc::new(documents_tx(conn, tenant, self.seg)?);
        if list.len() != self.docs {
            return Err(Error::internal(format!(
                "search segment {} lists {} documents, not {}",
                self.seg,
                list.len(),
                self.docs
            )));
        }
        cache.put(self.uid, list.clone());
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_terms_are_found_by_word_and_prefix_without_parsing() {
        let terms = tail_terms(&[("deploy".into(), 2), ("deployed".into(), 1), ("ploy".into(), 7)]);
        assert_eq!(parse_tail_terms(&terms).unwrap().len(), 3);
        assert_eq!(tail_tf(&terms, "deploy"), Some(2));
        assert_eq!(tail_tf(&terms, "ploy"), Some(7));
        assert_eq!(tail_tf(&terms, "deplo"), None);
        assert_eq!(tail_tf(&terms, "loy"), None);
        assert_eq!(tail_prefixed(&terms, "dep"), [("deploy".to_owned(), 2), ("deployed".to_owned(), 1)]);
        assert_eq!(tail_prefixed(&terms, "loy"), Vec::<(String, u32)>::new());
        assert_eq!(tail_terms(&[]), "");
        assert!(parse_tail_terms("").unwrap().is_empty());
    }
}
