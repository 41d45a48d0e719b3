//! The writer connection's working tables (`temp.audit_heads`, `temp.tails_deleted`,
//! `temp.usage_now`): what one group of writes changed in the chain heads and counters, moved
//! into memory after each commit (see `tails` and `counters`). What both keepers share.

use rusqlite::Connection;

/// The `tail_id` in a working table (`temp.audit_heads`, `temp.usage_now`) of a tenant whose
/// rows the group deleted (tail ids start at 1).
pub(crate) const DELETED: i64 = 0;

/// Hands every row `select` reads from one of the group's working tables to `each`, then
/// empties the table with `delete`: at the registration after a commit, which moves the group's
/// rows into memory (the tables are one group's only).
pub(crate) fn drain_working(
    conn: &Connection,
    select: &str,
    delete: &str,
    mut each: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let mut s = conn.prepare_cached(select)?;
    let mut rows = s.query([])?;
    let mut any = false;
    while let Some(r) = rows.next()? {
        each(r)?;
        any = true;
    }
    drop(rows);
    if any {
        conn.prepare_cached(delete)?.execute([])?;
    }
    Ok(())
}
