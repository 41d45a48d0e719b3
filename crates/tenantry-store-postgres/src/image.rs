//! Tenants' images (`tenantry_core::image`) read from and written into a database, for
//! `tenantry db copy`. This runs as the role that owns the tables (the one `tenantry db migrate`
//! ran as), on connections of its own: it moves the sequences that number deliveries past the
//! source's, which the server's role may not. Its transactions still set the tenant, as every transaction here does.
//!
//! A tenant is written in one transaction: its rows by table in multi-row inserts (`unnest` of one
//! array per column; `COPY FROM` is refused on tables under row-level security), its bodies
//! re-cut into `CHUNK`-byte chunks (range reads count on it). Before the commit the transaction
//! reads the tenant back as an image and the core compares it with the source: a copy that does
//! not match is rolled back whole.

use crate::error::{describe, pg_error};
use crate::files::CHUNK;
use crate::schema::check_version;
use async_trait::async_trait;
use futures_util::StreamExt;
use std::pin::Pin;
use std::sync::Arc;
use tenantry_core::ids::TenantId;
use tenantry_core::image::{
    people_differences, rows_not_held, Cell, ImageItem, ImageItems, ImageSource, ImageTable, ImageTarget, Kind,
    Numbering, PeopleRows, Transfer, FILE_COLUMNS, PEOPLE_TABLES, TABLES,
};
use tenantry_core::{Error, Result};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, RowStream};

/// Rows per insert statement at most, and their bytes (memory values and search terms can be
/// large) at most.
const BATCH_ROWS: usize = 1000;
const BATCH_BYTES: usize = 4 << 20;

/// A database tenants are copied into, reached as the tables' owner.
pub struct PgImages {
    target: crate::Target,
}

async fn connect(target: &crate::Target) -> Result<Arc<Client>> {
    let client = target
        .connect()
        .await
        .map_err(|e| Error::internal(format!("cannot connect to the database: {}", describe(&e))))?;
    Ok(Arc::new(client))
}

impl PgImages {
    /// Checks that the database has this binary's schema and that `url`'s role owns its tables.
    pub async fn connect(url: &str) -> Result<PgImages> {
        let images = PgImages { target: crate::Target::parse(url)? };
        let client = connect(&images.target).await?;
        check_version(&client).await?;
        let owns: bool = client
            .query_one(
                "SELECT tableowner = current_user FROM pg_tables WHERE schemaname = 'public' AND tablename = 'tenants'",
                &[],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        if !owns {
            return Err(Error::invalid_request(
                "copy as the role that owns the tables (the one `tenantry db migrate --url` ran as), not the server's role",
            ));
        }
        Ok(images)
    }
}

/// The type a column of `table` has here, by asking the database (a row of no table is read).
async fn column_types(client: &Client, table: &ImageTable) -> Result<Vec<Type>> {
    let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
    let st =
        client.prepare(&format!("SELECT {} FROM {} LIMIT 0", names.join(", "), table.name)).await.map_err(pg_error)?;
    Ok(st.columns().iter().map(|c| c.type_().clone()).collect())
}

/// A column's values of one batch, typed as the database's column is.
enum Values {
    I16(Vec<Option<i16>>),
    I32(Vec<Option<i32>>),
    I64(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
    Text(Vec<Option<String>>),
    Bytes(Vec<Option<Vec<u8>>>),
}

impl Values {
    fn of(ty: &Type) -> Result<Values> {
        Ok(match *ty {
            Type::INT2 => Values::I16(Vec::new()),
            Type::INT4 => Values::I32(Vec::new()),
            Type::INT8 => Values::I64(Vec::new()),
            Type::BOOL => Values::Bool(Vec::new()),
            Type::TEXT | Type::VARCHAR => Values::Text(Vec::new()),
            Type::BYTEA => Values::Bytes(Vec::new()),
            ref other => return Err(Error::internal(format!("a column of type {other} is not copied"))),
        })
    }

    fn array_type(&self) -> &'static str {
        match self {
            Values::I16(_) => "int2[]",
            Values::I32(_) => "int4[]",
            Values::I64(_) => "int8[]",
            Values::Bool(_) => "bool[]",
            Values::Text(_) => "text[]",
            Values::Bytes(_) => "bytea[]",
        }
    }

    fn push(&mut self, cell: Cell, column: &str) -> Result<()> {
        let wrong = |c: &Cell| Error::internal(format!("column {column} cannot hold {c:?}"));
        let int = |c: Cell| match c {
            Cell::Null => Ok(None),
            Cell::Int(v) => Ok(Some(v)),
            other => Err(wrong(&other)),
        };
        match self {
            Values::I16(v) => v.push(int(cell)?.map(i16::try_from).transpose().map_err(|_| wrong(&Cell::Null))?),
            Values::I32(v) => v.push(int(cell)?.map(i32::try_from).transpose().map_err(|_| wrong(&Cell::Null))?),
            Values::I64(v) => v.push(int(cell)?),
            Values::Bool(v) => v.push(int(cell)?.map(|i| i != 0)),
            Values::Text(v) => v.push(match cell {
                Cell::Null => None,
                Cell::Text(t) => Some(t),
                other => return Err(wrong(&other)),
            }),
            Values::Bytes(v) => v.push(match cell {
                Cell::Null => None,
                Cell::Bytes(b) => Some(b),
                other => return Err(wrong(&other)),
            }),
        }
        Ok(())
    }

    fn clear(&mut self) {
        match self {
            Values::I16(v) => v.clear(),
            Values::I32(v) => v.clear(),
            Values::I64(v) => v.clear(),
            Values::Bool(v) => v.clear(),
            Values::Text(v) => v.clear(),
            Values::Bytes(v) => v.clear(),
        }
    }

    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Values::I16(v) => v,
            Values::I32(v) => v,
            Values::I64(v) => v,
            Values::Bool(v) => v,
            Values::Text(v) => v,
            Values::Bytes(v) => v,
        }
    }
}

/// The rows of one table on their way in, a batch at a time.
struct TableWriter {
    sql: String,
    tenant: Vec<String>,
    values: Vec<Values>,
    bytes: usize,
    table: &'static ImageTable,
}

impl TableWriter {
    async fn new(client: &Client, table: &'static ImageTable) -> Result<TableWriter> {
        let types = column_types(client, table).await?;
        let values = types.iter().map(Values::of).collect::<Result<Vec<Values>>>()?;
        let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
        let arrays: Vec<String> =
            values.iter().enumerate().map(|(i, v)| format!("${}::{}", i + 2, v.array_type())).collect();
        // Columns an image does not carry, filled once the tenant's rows are all in
        // (`settle_copied`).
        let (later, later_values) = match table.name {
            "search_docs" => (", terms", ", ''"),
            _ => ("", ""),
        };
        let sql = format!(
            "INSERT INTO {} ({}, {}{later}) SELECT *{later_values} FROM unnest($1::text[], {})",
            table.name,
            table.tenant_column,
            names.join(", "),
            arrays.join(", ")
        );
        Ok(TableWriter { sql, tenant: Vec::new(), values, bytes: 0, table })
    }

    async fn push(&mut self, client: &Client, tenant: &TenantId, cells: Vec<Cell>) -> Result<()> {
        for ((cell, values), column) in cells.into_iter().zip(&mut self.values).zip(self.table.columns) {
            self.bytes += match &cell {
                Cell::Text(t) => t.len(),
                Cell::Bytes(b) => b.len(),
                _ => 8,
            };
            values.push(cell, column.name)?;
        }
        self.tenant.push(tenant.as_str().to_owned());
        if self.tenant.len() >= BATCH_ROWS || self.bytes >= BATCH_BYTES {
            self.flush(client).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, client: &Client) -> Result<()> {
        if self.tenant.is_empty() {
            return Ok(());
        }
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&self.tenant];
        params.extend(self.values.iter().map(Values::param));
        client.execute(self.sql.as_str(), &params).await.map_err(pg_error)?;
        self.tenant.clear();
        self.values.iter_mut().for_each(Values::clear);
        self.bytes = 0;
        Ok(())
    }
}

/// A file on its way in: its row waits for its body's chunks.
struct FileWriter {
    cells: Vec<Cell>,
    body_id: i64,
    next_chunk: i32,
    pending: Vec<u8>,
}

impl FileWriter {
    async fn chunk(&mut self, client: &Client, tenant: &TenantId, bytes: &[u8]) -> Result<()> {
        client
            .execute(
                "INSERT INTO file_chunks (tenant_id, body_id, n, bytes) VALUES ($1, $2, $3, $4)",
                &[&tenant.as_str(), &self.body_id, &self.next_chunk, &bytes],
            )
            .await
            .map_err(pg_error)?;
        self.next_chunk += 1;
        Ok(())
    }

    async fn piece(&mut self, client: &Client, tenant: &TenantId, mut piece: &[u8]) -> Result<()> {
        while !piece.is_empty() {
            let take = (CHUNK - self.pending.len()).min(piece.len());
            self.pending.extend_from_slice(&piece[..take]);
            piece = &piece[take..];
            if self.pending.len() == CHUNK {
                let full = std::mem::take(&mut self.pending);
                self.chunk(client, tenant, &full).await?;
            }
        }
        Ok(())
    }

    async fn finish(mut self, client: &Client, tenant: &TenantId) -> Result<()> {
        if !self.pending.is_empty() {
            let last = std::mem::take(&mut self.pending);
            self.chunk(client, tenant, &last).await?;
        }
        let text = |i: usize| match &self.cells[i] {
            Cell::Text(t) => Ok(t.as_str()),
            other => Err(Error::internal(format!("a file's {} is {other:?}", FILE_COLUMNS[i].name))),
        };
        let int = |i: usize| match &self.cells[i] {
            Cell::Int(v) => Ok(*v),
            other => Err(Error::internal(format!("a file's {} is {other:?}", FILE_COLUMNS[i].name))),
        };
        client
            .execute(
                "INSERT INTO files (tenant_id, path, size, etag, version, content_type, created_at, updated_at, body_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &tenant.as_str(),
                    &text(0)?,
                    &int(1)?,
                    &text(2)?,
                    &int(3)?,
                    &text(4)?,
                    &int(5)?,
                    &int(6)?,
                    &self.body_id,
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }
}

/// Writes the items of `transfer` inside the transaction open on `client`.
async fn write_items(client: &Client, tenant: &TenantId, transfer: &mut Transfer) -> Result<()> {
    let mut table: Option<TableWriter> = None;
    let mut file: Option<FileWriter> = None;
    while let Some(item) = transfer.next().await? {
        match item {
            ImageItem::Row { table: i, cells } => {
                if table.as_ref().is_none_or(|t| !std::ptr::eq(t.table, &TABLES[i])) {
                    if let Some(mut done) = table.take() {
                        done.flush(client).await?;
                    }
                    table = Some(TableWriter::new(client, &TABLES[i]).await?);
                }
                table.as_mut().expect("set").push(client, tenant, cells).await?;
            }
            ImageItem::File { cells } => {
                if let Some(mut done) = table.take() {
                    done.flush(client).await?;
                }
                if let Some(done) = file.take() {
                    done.finish(client, tenant).await?;
                }
                let body_id: i64 =
                    client.query_one("SELECT nextval('file_bodies')", &[]).await.map_err(pg_error)?.get(0);
                file = Some(FileWriter { cells, body_id, next_chunk: 0, pending: Vec::new() });
            }
            ImageItem::Body(piece) => match file.as_mut() {
                Some(f) => f.piece(client, tenant, &piece).await?,
                None => return Err(Error::internal("a body came before any file")),
            },
        }
    }
    if let Some(mut done) = table.take() {
        done.flush(client).await?;
    }
    if let Some(done) = file.take() {
        done.finish(client, tenant).await?;
    }
    Ok(())
}

/// What the copied rows imply beyond themselves: the audit chain's head, where the next entry
/// links (kept beside the counters here), and each search document's term list (what unindexing
/// it deletes), from its postings.
async fn settle_copied(client: &Client, tenant: &TenantId) -> Result<()> {
    client
        .execute(
            "UPDATE search_docs d SET terms = p.terms
             FROM (SELECT kind, doc, string_agg(term, ' ' ORDER BY term) AS terms FROM search_postings
                   WHERE tenant_id = $1 GROUP BY kind, doc) p
             WHERE d.tenant_id = $1 AND d.kind = p.kind AND d.doc = p.doc",
            &[&tenant.as_str()],
        )
        .await
        .map_err(pg_error)?;
    client
        .execute(
            "UPDATE tenant_usage u SET audit_seq = a.seq, audit_head = a.hash
             FROM (SELECT seq, hash FROM audit WHERE tenant_id = $1 ORDER BY seq DESC LIMIT 1) a
             WHERE u.tenant_id = $1",
            &[&tenant.as_str()],
        )
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// The sequences that number deliveries and attempts here, and how far each has gone.
const SEQUENCES: [&str; 2] = ["webhook_deliveries", "webhook_attempts_n_seq"];

async fn sequence_at(client: &Client, sequence: &str) -> Result<i64> {
    let row = client
        .query_one(&format!("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {sequence}"), &[])
        .await
        .map_err(pg_error)?;
    Ok(row.get(0))
}

/// A tenant's image read from the transaction open on a connection: table by table in key order
/// (text bytewise, as `COLLATE "C"` compares), then each file and its chunks.
struct PgImageReader {
    client: Arc<Client>,
    tenant: TenantId,
    /// The next table to read; `TABLES.len()` once the files are next.
    next_table: usize,
    rows: Option<(usize, Pin<Box<RowStream>>)>,
    files: Option<std::vec::IntoIter<(Vec<Cell>, i64)>>,
    chunks: Option<Pin<Box<RowStream>>>,
    /// Whether the connection is this reader's, its transaction to end with it.
    own_transaction: bool,
}

fn order_by(table: &ImageTable) -> String {
    if table.key == 0 {
        return String::new();
    }
    let keys: Vec<String> = table.columns[..table.key]
        .iter()
        .map(|c| match c.kind {
            Kind::Text => format!("{} COLLATE \"C\"", c.name),
            _ => c.name.to_owned(),
        })
        .collect();
    format!(" ORDER BY {}", keys.join(", "))
}

/// A column as an image carries it: integers of every width as `int8`, booleans as 0 or 1.
fn select_expr(name: &str, kind: Kind, ty: &Type) -> String {
    match (kind, ty) {
        (Kind::Int, &Type::BOOL) => format!("{name}::int::int8"),
        (Kind::Int, _) => format!("{name}::int8"),
        _ => name.to_owned(),
    }
}

fn cell_at(row: &tokio_postgres::Row, i: usize, kind: Kind) -> Result<Cell> {
    let got = match kind {
        Kind::Int => row.try_get::<_, Option<i64>>(i).map(|v| v.map_or(Cell::Null, Cell::Int)),
        Kind::Text => row.try_get::<_, Option<String>>(i).map(|v| v.map_or(Cell::Null, Cell::Text)),
        Kind::Bytes => row.try_get::<_, Option<Vec<u8>>>(i).map(|v| v.map_or(Cell::Null, Cell::Bytes)),
    };
    got.map_err(pg_error)
}

impl PgImageReader {
    async fn start_table(&mut self, i: usize) -> Result<()> {
        let table = &TABLES[i];
        let types = column_types(&self.client, table).await?;
        let columns: Vec<String> =
            table.columns.iter().zip(&types).map(|(c, ty)| select_expr(c.name, c.kind, ty)).collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {} = $1{}",
            columns.join(", "),
            table.name,
            table.tenant_column,
            order_by(table)
        );
        let stream = self.client.query_raw(sql.as_str(), [self.tenant.as_str()]).await.map_err(pg_error)?;
        self.rows = Some((i, Box::pin(stream)));
        Ok(())
    }

    async fn load_files(&mut self) -> Result<()> {
        let columns: Vec<String> = FILE_COLUMNS.iter().map(|c| select_expr(c.name, c.kind, &Type::TEXT)).collect();
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT {}, body_id FROM files WHERE tenant_id = $1 ORDER BY path COLLATE \"C\"",
                    columns.join(", ")
                ),
                &[&self.tenant.as_str()],
            )
            .await
            .map_err(pg_error)?;
        let mut files = Vec::with_capacity(rows.len());
        for row in rows {
            let mut cells = Vec::with_capacity(FILE_COLUMNS.len());
            for (i, c) in FILE_COLUMNS.iter().enumerate() {
                cells.push(cell_at(&row, i, c.kind)?);
            }
            files.push((cells, row.get::<_, i64>(FILE_COLUMNS.len())));
        }
        self.files = Some(files.into_iter());
        Ok(())
    }
}

#[async_trait]
impl ImageItems for PgImageReader {
    async fn next(&mut self) -> Result<Option<ImageItem>> {
        loop {
            if let Some((i, stream)) = self.rows.as_mut() {
                let i = *i;
                match stream.next().await {
                    Some(row) => {
                        let row = row.map_err(pg_error)?;
                        let cells = TABLES[i]
                            .columns
                            .iter()
                            .enumerate()
                            .map(|(n, c)| cell_at(&row, n, c.kind))
                            .collect::<Result<Vec<Cell>>>()?;
                        return Ok(Some(ImageItem::Row { table: i, cells }));
                    }
                    None => self.rows = None,
                }
                continue;
            }
            if self.next_table < TABLES.len() {
                let i = self.next_table;
                self.next_table += 1;
                self.start_table(i).await?;
                continue;
            }
            if let Some(stream) = self.chunks.as_mut() {
                match stream.next().await {
                    Some(row) => return Ok(Some(ImageItem::Body(row.map_err(pg_error)?.get(0)))),
                    None => self.chunks = None,
                }
                continue;
            }
            if self.files.is_none() {
                self.load_files().await?;
            }
            match self.files.as_mut().and_then(Iterator::next) {
                Some((cells, body_id)) => {
                    let stream = self
                        .client
                        .query_raw(
                            "SELECT bytes FROM file_chunks WHERE tenant_id = $1 AND body_id = $2 ORDER BY n",
                            [&self.tenant.as_str() as &(dyn ToSql + Sync), &body_id],
                        )
                        .await
                        .map_err(pg_error)?;
                    self.chunks = Some(Box::pin(stream));
                    return Ok(Some(ImageItem::File { cells }));
                }
                None => {
                    if self.own_transaction {
                        self.own_transaction = false;
                        self.client.batch_execute("COMMIT").await.map_err(pg_error)?;
                    }
                    return Ok(None);
                }
            }
        }
    }
}

fn reader(client: Arc<Client>, tenant: &TenantId, own_transaction: bool) -> PgImageReader {
    PgImageReader {
        client,
        tenant: tenant.clone(),
        next_table: 0,
        rows: None,
        files: None,
        chunks: None,
        own_transaction,
    }
}

/// Every row of one of the install's tables (`PEOPLE_TABLES`), in key order, as an image
/// carries it.
async fn install_rows(client: &Client, table: &ImageTable) -> Result<Vec<Vec<Cell>>> {
    let types = column_types(client, table).await?;
    let columns: Vec<String> =
        table.columns.iter().zip(&types).map(|(c, ty)| select_expr(c.name, c.kind, ty)).collect();
    let sql = format!("SELECT {} FROM {}{}", columns.join(", "), table.name, order_by(table));
    let rows = client.query(sql.as_str(), &[]).await.map_err(pg_error)?;
    rows.iter().map(|row| table.columns.iter().enumerate().map(|(n, c)| cell_at(row, n, c.kind)).collect()).collect()
}

/// Inserts `rows` into one of the install's tables, leaving every row whose key (or another
/// unique value) the table holds already; how many it inserted.
async fn insert_install_rows(client: &Client, table: &ImageTable, rows: &[Vec<Cell>]) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let types = column_types(client, table).await?;
    let mut values = types.iter().map(Values::of).collect::<Result<Vec<Values>>>()?;
    for row in rows {
        for ((cell, v), column) in row.iter().zip(&mut values).zip(table.columns) {
            v.push(cell.clone(), column.name)?;
        }
    }
    let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
    let arrays: Vec<String> =
        values.iter().enumerate().map(|(i, v)| format!("${}::{}", i + 1, v.array_type())).collect();
    let sql = format!(
        "INSERT INTO {} ({}) SELECT * FROM unnest({}) ON CONFLICT DO NOTHING",
        table.name,
        names.join(", "),
        arrays.join(", ")
    );
    let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(Values::param).collect();
    client.execute(sql.as_str(), &params).await.map_err(pg_error)
}

fn begin(tenant: &TenantId, read_only: bool) -> Result<String> {
    Ok(format!(
        "BEGIN ISOLATION LEVEL REPEATABLE READ{}; SELECT set_config('tenantry.tenant_id', '{}', true)",
        if read_only { " READ ONLY" } else { "" },
        crate::tenant_literal(tenant)?
    ))
}

#[async_trait]
impl ImageSource for PgImages {
    async fn image_tenants(&self) -> Result<Vec<TenantId>> {
        let client = connect(&self.target).await?;
        let rows = client.query("SELECT id FROM tenants ORDER BY id", &[]).await.map_err(pg_error)?;
        rows.iter()
            .map(|r| {
                let id: String = r.get(0);
                TenantId::parse(&id).ok_or_else(|| Error::internal(format!("a stored tenant id {id:?}")))
            })
            .collect()
    }

    async fn read_image(&self, tenant: &TenantId) -> Result<Box<dyn ImageItems>> {
        let client = connect(&self.target).await?;
        client.batch_execute(&begin(tenant, true)?).await.map_err(pg_error)?;
        Ok(Box::new(reader(client, tenant, true)))
    }

    async fn numbering(&self) -> Result<Numbering> {
        let client = connect(&self.target).await?;
        Ok(Numbering {
            deliveries: sequence_at(&client, SEQUENCES[0]).await?,
            attempts: sequence_at(&client, SEQUENCES[1]).await?,
        })
    }

    async fn people_rows(&self) -> Result<PeopleRows> {
        let client = connect(&self.target).await?;
        client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(pg_error)?;
        let mut out = Vec::with_capacity(PEOPLE_TABLES.len());
        for table in PEOPLE_TABLES {
            out.push(install_rows(&client, table).await?);
        }
        client.batch_execute("COMMIT").await.map_err(pg_error)?;
        Ok(out)
    }
}

#[async_trait]
impl ImageTarget for PgImages {
    fn places_dedicated(&self) -> bool {
        false
    }

    async fn write_image(&self, tenant: &TenantId, transfer: &mut Transfer) -> Result<()> {
        let client = connect(&self.target).await?;
        client.batch_execute(&begin(tenant, false)?).await.map_err(pg_error)?;
        let exists = client
            .query_opt("SELECT 1 FROM tenants WHERE id = $1", &[&tenant.as_str()])
            .await
            .map_err(pg_error)?
            .is_some();
        if exists {
            return Err(Error::conflict(format!("tenant {tenant} is in the database already")));
        }
        // Dropping the connection on any failure ends the transaction as a rollback.
        write_items(&client, tenant, transfer).await?;
        settle_copied(&client, tenant).await?;
        let mut written = reader(client.clone(), tenant, false);
        transfer.verify(&mut written).await?;
        drop(written);
        client.batch_execute("COMMIT").await.map_err(pg_error)?;
        Ok(())
    }

    async fn write_people(&self, rows: &PeopleRows, copied_before: bool) -> Result<(Vec<u64>, Vec<u64>)> {
        let client = connect(&self.target).await?;
        // Dropping the connection on any failure ends the transaction as a rollback. The lock
        // keeps two copies (of two installs) from both finding the tables empty.
        client
            .batch_execute(
                "BEGIN ISOLATION LEVEL REPEATABLE READ; LOCK TABLE users, sessions, invitations IN EXCLUSIVE MODE",
            )
            .await
            .map_err(pg_error)?;
        let mut held = Vec::with_capacity(PEOPLE_TABLES.len());
        for table in PEOPLE_TABLES {
            held.push(install_rows(&client, table).await?);
        }
        let conflict = |differences: Vec<String>| {
            let n = differences.len();
            let shown = differences.into_iter().take(5).collect::<Vec<_>>().join("; ");
            let more = if n > 5 { format!("; and {} more", n - 5) } else { String::new() };
            Error::conflict(format!("the target's people differ from the source's, so none were copied: {shown}{more}"))
        };
        if copied_before || held.iter().any(|rows| !rows.is_empty()) {
            // Copied before: the users must be as they were. Sessions and invitations change
            // by use (a sign-out, an acceptance), and are never written again: an ended one
            // must stay ended.
            let differences = people_differences(&PEOPLE_TABLES[0], &rows[0], &held[0], false);
            if !differences.is_empty() {
                return Err(conflict(differences));
            }
            let not_held = PEOPLE_TABLES.iter().zip(rows.iter().zip(&held)).map(|(t, (w, h))| rows_not_held(t, w, h));
            return Ok((vec![0; PEOPLE_TABLES.len()], not_held.collect()));
        }
        let mut added = Vec::with_capacity(PEOPLE_TABLES.len());
        let mut differences = Vec::new();
        for (table, wanted) in PEOPLE_TABLES.iter().zip(rows) {
            added.push(insert_install_rows(&client, table, wanted).await?);
            differences.extend(people_differences(table, wanted, &install_rows(&client, table).await?, true));
        }
        if !differences.is_empty() {
            return Err(conflict(differences));
        }
        client.batch_execute("COMMIT").await.map_err(pg_error)?;
        Ok((added, vec![0; PEOPLE_TABLES.len()]))
    }

    async fn continue_numbering(&self, source: Numbering) -> Result<()> {
        let client = connect(&self.target).await?;
        for (sequence, past) in SEQUENCES.into_iter().zip([source.deliveries, source.attempts]) {
            if past > sequence_at(&client, sequence).await? {
                client.execute("SELECT setval($1::text::regclass, $2)", &[&sequence, &past]).await.map_err(pg_error)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantry_core::image::table_index;

    #[test]
    fn every_table_of_an_image_is_a_tenant_table_here() {
        for table in TABLES {
            assert!(
                crate::schema::TENANT_TABLES.iter().any(|(t, c)| *t == table.name && *c == table.tenant_column),
                "{}",
                table.name
            );
        }
        assert_eq!(table_index("tenants"), 0);
    }
}
