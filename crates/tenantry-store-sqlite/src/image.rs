//! Reading a tenant's image (`tenantry_core::image`) for a copy to another backend: the registry's
//! rows of the tenant from the shared database, then its data from the database that holds it
//! (shared or its own), in one read snapshot each, and its bodies from wherever they are (inline,
//! or a blob file). The image is produced on a blocking thread into a short channel, so a large
//! tenant is never held in memory.

use crate::counters;
use crate::error::sql_error;
use crate::store::SqliteStore;
use async_trait::async_trait;
use rusqlite::types::ValueRef;
use rusqlite::Connection;
use std::io::Read;
use tenantry_core::ids::TenantId;
use tenantry_core::image::{
    table_index, Cell, Column, ImageItem, ImageItems, ImageSource, ImageTable, Kind, Numbering, PeopleRows,
    FILE_COLUMNS, PEOPLE_TABLES, TABLES,
};
use tenantry_core::{Error, Result};
use tokio::sync::mpsc;

/// Bytes of a blob body per item.
const BODY_PIECE: usize = 256 * 1024;

/// Items read ahead of the consumer at most.
const AHEAD: usize = 16;

/// The tables read from the shared database's registry, whatever the tenant's placement.
const REGISTRY: &[&str] = &["tenants", "tenant_domains", "usage_daily"];

/// Where an image table's rows are read from, and a column's name there when it differs. The log
/// views hold every entry once and may show one twice while a fold runs (`tails`): a row whose key
/// repeats the previous one's is skipped.
fn source_of(table: &ImageTable) -> (&'static str, bool) {
    match table.name {
        "audit" => ("audit_all", true),
        "events" => ("events_all", true),
        other => (other, false),
    }
}

fn column_expr(table: &ImageTable, column: &Column) -> &'static str {
    match (table.name, column.name) {
        ("webhook_attempts", "n") => "id",
        (_, name) => name,
    }
}

fn cell_of(value: ValueRef<'_>, column: &Column) -> Result<Cell> {
    match (value, column.kind) {
        (ValueRef::Null, _) => Ok(Cell::Null),
        (ValueRef::Integer(i), Kind::Int) => Ok(Cell::Int(i)),
        (ValueRef::Text(t), Kind::Text) => String::from_utf8(t.to_vec()).map(Cell::Text).map_err(|_| {
            Error::internal(format!("column {} holds text that is not UTF-8: this binary never wrote it", column.name))
        }),
        (ValueRef::Blob(b), Kind::Bytes) => Ok(Cell::Bytes(b.to_vec())),
        (other, kind) => Err(Error::internal(format!(
            "column {} holds {other:?} where {kind:?} was expected: the database holds something this binary never \
             wrote",
            column.name
        ))),
    }
}

/// Every row of one of the install's tables (`PEOPLE_TABLES`, in the shared database), in key
/// order.
fn install_rows(conn: &Connection, table: &ImageTable) -> Result<Vec<Vec<Cell>>> {
    let columns: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
    let sql = format!("SELECT {} FROM {} ORDER BY {}", columns.join(", "), table.name, columns[..table.key].join(", "));
    let mut st = conn.prepare(&sql).map_err(sql_error)?;
    let mut rows = st.query([]).map_err(sql_error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sql_error)? {
        let cells = table
            .columns
            .iter()
            .enumerate()
            .map(|(i, column)| cell_of(row.get_ref(i).map_err(sql_error)?, column))
            .collect::<Result<Vec<Cell>>>()?;
        out.push(cells);
    }
    Ok(out)
}

/// The tenant's rows of `table`, in key order, each passed to `each`.
fn table_rows(
    conn: &Connection,
    table: &ImageTable,
    tenant: &TenantId,
    each: &mut dyn FnMut(Vec<Cell>) -> Result<bool>,
) -> Result<()> {
    let (from, dedupe) = source_of(table);
    let columns: Vec<&str> = table.columns.iter().map(|c| column_expr(table, c)).collect();
    let order = if table.key == 0 { String::new() } else { format!(" ORDER BY {}", columns[..table.key].join(", ")) };
    let sql = format!("SELECT {} FROM {from} WHERE {} = ?1{order}", columns.join(", "), table.tenant_column);
    let mut st = conn.prepare(&sql).map_err(sql_error)?;
    let mut rows = st.query([tenant.as_str()]).map_err(sql_error)?;
    let mut last_key: Option<Vec<Cell>> = None;
    while let Some(row) = rows.next().map_err(sql_error)? {
        let mut cells = Vec::with_capacity(table.columns.len());
        for (i, column) in table.columns.iter().enumerate() {
            cells.push(cell_of(row.get_ref(i).map_err(sql_error)?, column)?);
        }
        if dedupe {
            let key = cells[..table.key].to_vec();
            if last_key.as_ref() == Some(&key) {
                continue;
            }
            last_key = Some(key);
        }
        if !each(cells)? {
            return Ok(());
        }
    }
    Ok(())
}

/// Runs `f` in one read transaction (one snapshot of the database).
fn in_snapshot<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    conn.execute_batch("BEGIN").map_err(sql_error)?;
    let out = f(conn);
    let _ = conn.execute_batch("COMMIT");
    out
}

/// What the reading thread sends: items, then the end (or the error that ended it). A channel
/// closed before the end (the thread panicked) is an error, never a shorter image.
enum Sent {
    Item(ImageItem),
    End,
    Failed(Error),
}

/// Sends items to the consumer; false once it is gone (the copy stopped: stop reading).
struct Out(mpsc::Sender<Sent>);

impl Out {
    fn send(&self, item: ImageItem) -> bool {
        self.0.blocking_send(Sent::Item(item)).is_ok()
    }
}

/// A file's row and where its body is.
struct FileRow {
    cells: Vec<Cell>,
    content_id: i64,
    blob: Option<String>,
}

fn file_rows(conn: &Connection, tenant: &TenantId) -> Result<Vec<FileRow>> {
    let columns: Vec<String> = FILE_COLUMNS.iter().map(|c| format!("f.{}", c.name)).collect();
    let sql = format!(
        "SELECT {}, c.id, c.blob FROM files f LEFT JOIN file_content c ON c.id = f.content_id
         WHERE f.tenant_id = ?1 ORDER BY f.path",
        columns.join(", ")
    );
    let mut st = conn.prepare(&sql).map_err(sql_error)?;
    let mut rows = st.query([tenant.as_str()]).map_err(sql_error)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(sql_error)? {
        let mut cells = Vec::with_capacity(FILE_COLUMNS.len());
        for (i, column) in FILE_COLUMNS.iter().enumerate() {
            cells.push(cell_of(row.get_ref(i).map_err(sql_error)?, column)?);
        }
        let n = FILE_COLUMNS.len();
        let content_id: Option<i64> = row.get(n).map_err(sql_error)?;
        let Some(content_id) = content_id else {
            return Err(Error::internal(format!("the file {:?} has no body in the database", cells[0])));
        };
        out.push(FileRow { cells, content_id, blob: row.get(n + 1).map_err(sql_error)? });
    }
    Ok(out)
}

impl SqliteStore {
    /// Reads the tenant's image into `out`, in the order `tenantry_core::image` gives.
    fn produce_image(&self, tenant: &TenantId, out: &Out) -> Result<()> {
        // The registry's rows first (small), kept until their place in the order comes.
        let mut registry: Vec<Vec<Vec<Cell>>> = vec![Vec::new(); TABLES.len()];
        {
            let conn = self.shared.reader();
            in_snapshot(&conn, |c| {
                for name in REGISTRY {
                    let i = table_index(name);
                    table_rows(c, &TABLES[i], tenant, &mut |cells| {
                        registry[i].push(cells);
                        Ok(true)
                    })?;
                }
                Ok(())
            })?;
        }
        if registry[table_index("tenants")].is_empty() {
            return Err(Error::not_found(format!("no tenant {tenant} in this data directory")));
        }
        let db = self.pool_of(tenant)?;
        let conn = db.reader();
        in_snapshot(&conn, |c| {
            for (i, table) in TABLES.iter().enumerate() {
                if REGISTRY.contains(&table.name) {
                    for cells in std::mem::take(&mut registry[i]) {
                        if !out.send(ImageItem::Row { table: i, cells }) {
                            return Ok(());
                        }
                    }
                    continue;
                }
                if table.name == "tenant_usage" {
                    // A tenant's counters are wherever `counters` keeps them (zeros if nowhere).
                    let u = counters::in_snapshot(c, tenant)?;
                    let cells = [u.storage_bytes, u.files, u.last_event_seq, u.search_docs, u.search_words]
                        .into_iter()
                        .map(Cell::Int)
                        .collect();
                    if !out.send(ImageItem::Row { table: i, cells }) {
                        return Ok(());
                    }
                    continue;
                }
                let mut open = true;
                if table.name == "search_postings" {
                    crate::search::image_postings(c, tenant, &mut |(term, kind, doc, tf, len)| {
                        let cells = vec![
                            Cell::Text(term),
                            Cell::Int(kind as i64),
                            Cell::Text(doc),
                            Cell::Int(i64::from(tf)),
                            Cell::Int(i64::from(len)),
                        ];
                        open = out.send(ImageItem::Row { table: i, cells });
                        Ok(open)
                    })?;
                } else {
                    table_rows(c, table, tenant, &mut |cells| {
                        open = out.send(ImageItem::Row { table: i, cells });
                        Ok(open)
                    })?;
                }
                if !open {
                    return Ok(());
                }
            }
            for file in file_rows(c, tenant)? {
                if !out.send(ImageItem::File { cells: file.cells }) {
                    return Ok(());
                }
                let sent = match file.blob {
                    None => {
                        let content: Vec<u8> = c
                            .query_row(
                                "SELECT content FROM file_content WHERE tenant_id = ?1 AND id = ?2",
                                rusqlite::params![tenant.as_str(), file.content_id],
                                |r| r.get(0),
                            )
                            .map_err(sql_error)?;
                        out.send(ImageItem::Body(content))
                    }
                    Some(name) => self.send_blob(tenant, &name, out)?,
                };
                if !sent {
                    return Ok(());
                }
            }
            Ok(())
        })
    }

    /// A body kept in a file of its own, in pieces.
    fn send_blob(&self, tenant: &TenantId, name: &str, out: &Out) -> Result<bool> {
        let path = self.blobs.path(tenant, name);
        let mut file = std::fs::File::open(&path)
            .map_err(|e| Error::internal(format!("cannot read the body {}: {e}", path.display())))?;
        loop {
            let mut piece = vec![0u8; BODY_PIECE];
            let mut filled = 0;
            while filled < piece.len() {
                match file.read(&mut piece[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Error::internal(format!("cannot read the body {}: {e}", path.display()))),
                }
            }
            if filled == 0 {
                return Ok(true);
            }
            piece.truncate(filled);
            if !out.send(ImageItem::Body(piece)) {
                return Ok(false);
            }
        }
    }
}

/// An image read on a blocking thread, item by item.
struct Received(mpsc::Receiver<Sent>);

#[async_trait]
impl ImageItems for Received {
    async fn next(&mut self) -> Result<Option<ImageItem>> {
        match self.0.recv().await {
            Some(Sent::Item(item)) => Ok(Some(item)),
            Some(Sent::End) => Ok(None),
            Some(Sent::Failed(e)) => Err(e),
            None => Err(Error::internal("the read of the source stopped before the end of the tenant")),
        }
    }
}

/// The highest id `table`'s AUTOINCREMENT has given in the database (0 if none).
fn sequence_of(conn: &Connection, table: &str) -> Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = ?1", [table], |r| r.get(0))
        .map_err(sql_error)
}

#[async_trait]
impl ImageSource for SqliteStore {
    async fn image_tenants(&self) -> Result<Vec<TenantId>> {
        let shared = self.shared.clone();
        crate::pool::read_on(shared, |c| {
            let mut st = c.prepare("SELECT id FROM tenants ORDER BY id").map_err(sql_error)?;
            let ids = st.query_map([], |r| r.get::<_, String>(0)).map_err(sql_error)?;
            let mut out = Vec::new();
            for id in ids {
                let id = id.map_err(sql_error)?;
                out.push(TenantId::parse(&id).ok_or_else(|| Error::internal(format!("a stored tenant id {id:?}")))?);
            }
            Ok(out)
        })
        .await
    }

    async fn read_image(&self, tenant: &TenantId) -> Result<Box<dyn ImageItems>> {
        let (tx, rx) = mpsc::channel(AHEAD);
        let (store, tenant) = (self.clone(), tenant.clone());
        tokio::task::spawn_blocking(move || {
            let out = Out(tx);
            let last = match store.produce_image(&tenant, &out) {
                Ok(()) => Sent::End,
                Err(e) => Sent::Failed(e),
            };
            let _ = out.0.blocking_send(last);
        });
        Ok(Box::new(Received(rx)))
    }

    async fn numbering(&self) -> Result<Numbering> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || -> Result<Numbering> {
            let mut databases = vec![store.shared.clone()];
            for tenant in store.routes.dedicated_tenants() {
                databases.push(store.dedicated.get(&tenant)?);
            }
            let mut n = Numbering::default();
            for db in databases {
                let conn = db.reader();
                n.deliveries = n.deliveries.max(sequence_of(&conn, "webhook_outbox")?);
                n.attempts = n.attempts.max(sequence_of(&conn, "webhook_attempts")?);
            }
            Ok(n)
        })
        .await
        .map_err(|e| Error::internal(format!("store task failed: {e}")))?
    }

    async fn people_rows(&self) -> Result<PeopleRows> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let conn = shared.reader();
            in_snapshot(&conn, |c| PEOPLE_TABLES.iter().map(|t| install_rows(c, t)).collect())
        })
        .await
        .map_err(|e| Error::internal(format!("store task failed: {e}")))?
    }
}
