//! A tenant's image: every row a store holds of one tenant, in a form no backend owns, so a whole
//! tenant can be copied from one backend to another (`tenantry db copy`) and the copy checked
//! against its source, row for row and byte for byte.
//!
//! An image is a stream of [`ImageItem`]s in a fixed order: the rows of each of [`TABLES`] in
//! turn (each table's rows ordered by its key, text compared bytewise), then the files in path
//! order, each followed by its body in pieces. Both ends hash the stream the same way
//! ([`ImageDigest`]), which walks the audit chain on the way. What is not in an image: staged
//! imports nobody can see yet (an import interrupted by the copy is lost as a crash loses it),
//! and whatever a store keeps only to run itself (caches, fold indexes, moves under way).
//!
//! [`copy_tenant`] decides how a copy goes; backends only read ([`ImageSource`]) and write
//! ([`ImageTarget`]) images.

use crate::audit::{AuditAnchor, ChainReport, ChainWalk};
use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::model::AuditEntry;
use crate::time::Timestamp;
use async_trait::async_trait;
use sha2::{Digest, Sha256};

/// How a column's values are carried. Booleans are `Int` 0 or 1 (SQLite stores them so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Int,
    Text,
    Bytes,
}

/// A value of a row. Every column may be null.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

/// A table of an image: its name in both backends' schemas, the column naming the tenant, and
/// the columns carried (never the tenant's, which the image implies), of which the first `key`
/// order the rows.
#[derive(Debug)]
pub struct ImageTable {
    pub name: &'static str,
    pub tenant_column: &'static str,
    pub columns: &'static [Column],
    pub key: usize,
}

const fn int(name: &'static str) -> Column {
    Column { name, kind: Kind::Int }
}
const fn text(name: &'static str) -> Column {
    Column { name, kind: Kind::Text }
}
const fn bytes(name: &'static str) -> Column {
    Column { name, kind: Kind::Bytes }
}

/// The tables of an image, in the order an image carries them. The anchor comes before the
/// audit entries, so a chain is walked from it as it streams.
pub const TABLES: &[ImageTable] = &[
    ImageTable {
        name: "tenants",
        tenant_column: "id",
        columns: &[
            text("slug"),
            text("name"),
            text("tier"),
            text("status"),
            text("placement"),
            text("domains"),
            text("quotas"),
            text("metadata"),
            int("created_at"),
            int("updated_at"),
        ],
        key: 0,
    },
    ImageTable { name: "tenant_domains", tenant_column: "tenant_id", columns: &[text("domain")], key: 1 },
    ImageTable {
        name: "keys",
        tenant_column: "tenant_id",
        columns: &[
            text("id"),
            text("name"),
            text("role"),
            text("prefix"),
            bytes("hash"),
            int("created_at"),
            text("created_by"),
            int("expires_at"),
            int("revoked_at"),
        ],
        key: 1,
    },
    ImageTable {
        name: "tenant_usage",
        tenant_column: "tenant_id",
        columns: &[int("storage_bytes"), int("files"), int("last_event_seq"), int("search_docs"), int("search_words")],
        key: 0,
    },
    ImageTable {
        name: "usage_daily",
        tenant_column: "tenant_id",
        columns: &[
            int("day"),
            int("api_calls"),
            int("reads"),
            int("writes"),
            int("bytes_in"),
            int("bytes_out"),
            int("searches"),
        ],
        key: 1,
    },
    ImageTable {
        name: "audit_anchor",
        tenant_column: "tenant_id",
        columns: &[int("seq"), text("hash"), int("at")],
        key: 0,
    },
    ImageTable {
        name: "audit",
        tenant_column: "tenant_id",
        columns: &[
            int("seq"),
            int("at"),
            text("tenant_slug"),
            text("actor"),
            text("action"),
            text("target"),
            text("result"),
            text("request_id"),
            text("ip"),
            text("prev_hash"),
            text("hash"),
        ],
        key: 1,
    },
    ImageTable {
        name: "events",
        tenant_column: "tenant_id",
        columns: &[
            int("seq"),
            text("type"),
            text("path"),
            text("namespace"),
            text("key"),
            text("detail"),
            text("actor"),
            int("at"),
        ],
        key: 1,
    },
    ImageTable {
        name: "memory",
        tenant_column: "tenant_id",
        columns: &[
            text("namespace"),
            text("key"),
            text("value"),
            int("size"),
            int("expires_at"),
            int("created_at"),
            int("updated_at"),
        ],
        key: 2,
    },
    // The search index as documents and postings: what every layout can give and take (a
    // backend keeps its own layout beside them: SQLite's segments, PostgreSQL's term lists).
    ImageTable {
        name: "search_docs",
        tenant_column: "tenant_id",
        columns: &[int("kind"), text("doc"), int("len")],
        key: 2,
    },
    ImageTable {
        name: "search_postings",
        tenant_column: "tenant_id",
        columns: &[text("term"), int("kind"), text("doc"), int("tf"), int("len")],
        key: 3,
    },
    ImageTable {
        name: "webhooks",
        tenant_column: "tenant_id",
        columns: &[
            text("id"),
            text("url"),
            text("events"),
            text("path_glob"),
            text("secret"),
            int("enabled"),
            text("disabled_reason"),
            int("consecutive_failures"),
            int("created_at"),
            text("created_by"),
        ],
        key: 1,
    },
    ImageTable {
        name: "webhook_outbox",
        tenant_column: "tenant_id",
        columns: &[
            int("id"),
            text("webhook_id"),
            int("event_seq"),
            text("event"),
            int("attempts"),
            int("next_attempt_at"),
        ],
        key: 1,
    },
    ImageTable {
        name: "webhook_attempts",
        tenant_column: "tenant_id",
        columns: &[
            int("n"),
            text("webhook_id"),
            int("delivery_id"),
            int("event_seq"),
            text("event_type"),
            int("attempt"),
            int("status"),
            int("latency_ms"),
            text("error"),
            text("outcome"),
            int("at"),
        ],
        key: 1,
    },
    ImageTable {
        name: "memberships",
        tenant_column: "tenant_id",
        columns: &[text("user_id"), text("role"), int("created_at"), text("created_by")],
        key: 1,
    },
    // How far each relay of the tenant's events (NATS) got: a copy goes on from there, not from
    // the first event kept.
    ImageTable {
        name: "event_relays",
        tenant_column: "tenant_id",
        columns: &[text("relay"), int("seq"), text("holder"), int("lease_until")],
        key: 1,
    },
];

/// The install's own tables of people (API.md §11), not a tenant's: users, their sessions, and
/// the invitations not yet accepted (`tenant_column` is empty: every row is carried). A copy
/// carries them before any tenant, so each tenant's memberships (in [`TABLES`]) name users the
/// target holds.
pub const PEOPLE_TABLES: &[ImageTable] = &[
    ImageTable {
        name: "users",
        tenant_column: "",
        columns: &[
            text("id"),
            text("email"),
            text("name"),
            text("password"),
            int("super_admin"),
            int("disabled_at"),
            int("created_at"),
            int("updated_at"),
        ],
        key: 1,
    },
    ImageTable {
        name: "sessions",
        tenant_column: "",
        columns: &[
            text("id"),
            text("user_id"),
            bytes("hash"),
            int("created_at"),
            int("expires_at"),
            int("last_seen_at"),
        ],
        key: 1,
    },
    ImageTable {
        name: "invitations",
        tenant_column: "",
        columns: &[
            text("id"),
            text("tenant_id"),
            text("email"),
            text("role"),
            bytes("hash"),
            int("created_at"),
            int("expires_at"),
            text("created_by"),
        ],
        key: 1,
    },
];

/// The rows of each of [`PEOPLE_TABLES`], in its order, each table's rows ordered by its key.
pub type PeopleRows = Vec<Vec<Vec<Cell>>>;

/// What copying the people did, per table of [`PEOPLE_TABLES`]: rows in the source, how many of
/// them were added, and how many the target does not hold after the copy (only after an earlier
/// copy: a session ended or an invitation used there since, or one made in the source after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeopleCopied {
    pub rows: Vec<u64>,
    pub added: Vec<u64>,
    pub not_there: Vec<u64>,
}

/// Copies the install's people from `source` to `target`, all in one transaction of the target or
/// none, before any tenant (`held`: the tenants the target holds). Copied before (the target holds
/// people, or one of the source's tenants), nothing is written: the target's users must equal the
/// source's, else `conflict`; its sessions and invitations are left as use has made them, so one
/// ended there stays ended.
pub async fn copy_people(
    source: &dyn ImageSource,
    target: &dyn ImageTarget,
    held: &[TenantId],
) -> Result<PeopleCopied> {
    let rows = source.people_rows().await?;
    let copied_before = source.image_tenants().await?.iter().any(|t| held.contains(t));
    let (added, not_there) = target.write_people(&rows, copied_before).await?;
    Ok(PeopleCopied { rows: rows.iter().map(|t| t.len() as u64).collect(), added, not_there })
}

/// A row's key (its first `table.key` cells) as one comparable text.
fn row_key(table: &ImageTable, row: &[Cell]) -> String {
    format!("{:?}", &row[..table.key])
}

/// How many rows of `wanted` have no row of the same key in `held`.
pub fn rows_not_held(table: &ImageTable, wanted: &[Vec<Cell>], held: &[Vec<Cell>]) -> u64 {
    let held: std::collections::HashSet<String> = held.iter().map(|r| row_key(table, r)).collect();
    wanted.iter().filter(|r| !held.contains(&row_key(table, r))).count() as u64
}

/// The rows of `wanted` (a source's) that `held` (the target's, same table) lacks or holds
/// otherwise, as messages: the check a people copy makes before it commits (`written`: after
/// writing `wanted`, when a row missing means another row there holds one of its unique values).
pub fn people_differences(table: &ImageTable, wanted: &[Vec<Cell>], held: &[Vec<Cell>], written: bool) -> Vec<String> {
    let key = |row: &[Cell]| row_key(table, row);
    let held: std::collections::HashMap<String, &Vec<Cell>> = held.iter().map(|r| (key(r), r)).collect();
    let mut out = Vec::new();
    for row in wanted {
        match held.get(&key(row)) {
            Some(there) if *there == row => {}
            Some(_) => out.push(format!("{} {} is in the target already, different", table.name, key(row))),
            None if written => out.push(format!(
                "{} {} could not be written: the target holds another row with one of its unique values (an email)",
                table.name,
                key(row)
            )),
            None => out.push(format!("{} {} is not in the target", table.name, key(row))),
        }
    }
    out
}

/// The index in [`TABLES`] of the table named `name`.
pub fn table_index(name: &str) -> usize {
    TABLES.iter().position(|t| t.name == name).expect("a table of the image")
}

/// The columns of a file's row, in path order; its body follows it.
pub const FILE_COLUMNS: &[Column] = &[
    text("path"),
    int("size"),
    text("etag"),
    int("version"),
    text("content_type"),
    int("created_at"),
    int("updated_at"),
];

/// One item of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageItem {
    /// A row of `TABLES[table]`, its cells in the table's column order.
    Row { table: usize, cells: Vec<Cell> },
    /// A file's row ([`FILE_COLUMNS`]); exactly its `size` bytes of body follow as `Body` items.
    File { cells: Vec<Cell> },
    /// The next piece of the last file's body (pieces of any size: each backend reads its own).
    Body(Vec<u8>),
}

/// The stream of a tenant's image, read by a backend.
#[async_trait]
pub trait ImageItems: Send {
    /// The next item; `None` at the end.
    async fn next(&mut self) -> Result<Option<ImageItem>>;
}

/// A store whose tenants can be read as images.
#[async_trait]
pub trait ImageSource: Send + Sync {
    /// Every tenant the store holds (whatever its status), in id order.
    async fn image_tenants(&self) -> Result<Vec<TenantId>>;
    /// The tenant's image, read from one snapshot of the store.
    async fn read_image(&self, tenant: &TenantId) -> Result<Box<dyn ImageItems>>;
    /// How far the store has numbered what it numbers across tenants: ids ever given, including
    /// those of rows since deleted.
    async fn numbering(&self) -> Result<Numbering>;
    /// Every row of [`PEOPLE_TABLES`], read from one snapshot of the store.
    async fn people_rows(&self) -> Result<PeopleRows>;
}

/// The highest webhook delivery id and delivery-attempt number a store has given. A copy's target
/// numbers past them: a receiver de-duplicates deliveries by id, so an id must never be given
/// twice, even one whose rows are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Numbering {
    pub deliveries: i64,
    pub attempts: i64,
}

/// A store tenants can be copied into.
#[async_trait]
pub trait ImageTarget: ImageSource {
    /// Whether a tenant's record may say `dedicated` here.
    fn places_dedicated(&self) -> bool;
    /// Writes the whole image in one transaction, which commits only if what the target then
    /// holds of the tenant (read back inside that transaction) passes `transfer.verify`. A tenant
    /// the target already holds is refused (`conflict`), and so is a slug or domain another
    /// tenant holds there.
    async fn write_image(&self, tenant: &TenantId, transfer: &mut Transfer) -> Result<()>;
    /// Numbers past `source`'s from now on (never lowers its own).
    async fn continue_numbering(&self, source: Numbering) -> Result<()>;
    /// Writes `rows` (of [`PEOPLE_TABLES`]) into a target that holds no people yet, in one
    /// transaction that commits only if every row is then held exactly ([`people_differences`]
    /// finds none; else `conflict`). A target that holds people already, or that the people were
    /// copied into before (`copied_before`), is not written to: its users must equal `rows`'
    /// (else `conflict`). Per table, how many rows it added, and how many of `rows` it does not
    /// hold ([`rows_not_held`]; none after a write).
    async fn write_people(&self, rows: &PeopleRows, copied_before: bool) -> Result<(Vec<u64>, Vec<u64>)>;
}

/// Before any tenant is copied: the target will number past everything the source numbered, so a
/// copy interrupted after some tenants leaves a target that is right to serve.
pub async fn prepare_copy(source: &dyn ImageSource, target: &dyn ImageTarget) -> Result<Vec<TenantId>> {
    target.continue_numbering(source.numbering().await?).await?;
    target.image_tenants().await
}

/// What an image held: its hash, what it counted, and how its audit chain verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    /// The tenant's slug, from its record.
    pub slug: String,
    pub sha256: String,
    /// Rows per table of [`TABLES`].
    pub rows: Vec<u64>,
    pub files: u64,
    pub file_bytes: u64,
    pub audit: ChainReport,
}

/// Hashes an image as it streams (every item length-prefixed; a body without its piece
/// boundaries, which differ between backends), checks its shape (tables in order, each body
/// exactly its file's size) and walks its audit chain.
pub struct ImageDigest {
    slug: String,
    hasher: Sha256,
    rows: Vec<u64>,
    files: u64,
    file_bytes: u64,
    at: usize,
    body_left: u64,
    anchor: Option<AuditAnchor>,
    chain: Option<ChainWalk>,
}

impl Default for ImageDigest {
    fn default() -> Self {
        ImageDigest {
            slug: String::new(),
            hasher: Sha256::new(),
            rows: vec![0; TABLES.len()],
            files: 0,
            file_bytes: 0,
            at: 0,
            body_left: 0,
            anchor: None,
            chain: None,
        }
    }
}

fn malformed(what: impl Into<String>) -> Error {
    Error::internal(format!("a tenant image is malformed: {}", what.into()))
}

fn int_at(cells: &[Cell], i: usize) -> Result<i64> {
    match cells.get(i) {
        Some(Cell::Int(v)) => Ok(*v),
        other => Err(malformed(format!("column {i} should be a number, is {other:?}"))),
    }
}

fn text_at(cells: &[Cell], i: usize) -> Result<String> {
    match cells.get(i) {
        Some(Cell::Text(v)) => Ok(v.clone()),
        other => Err(malformed(format!("column {i} should be text, is {other:?}"))),
    }
}

impl ImageDigest {
    fn hash_cells(&mut self, tag: u8, cells: &[Cell]) {
        self.hasher.update([tag]);
        self.hasher.update((cells.len() as u64).to_be_bytes());
        for c in cells {
            match c {
                Cell::Null => self.hasher.update([0]),
                Cell::Int(v) => {
                    self.hasher.update([1]);
                    self.hasher.update(v.to_be_bytes());
                }
                Cell::Text(t) => {
                    self.hasher.update([2]);
                    self.hasher.update((t.len() as u64).to_be_bytes());
                    self.hasher.update(t.as_bytes());
                }
                Cell::Bytes(b) => {
                    self.hasher.update([3]);
                    self.hasher.update((b.len() as u64).to_be_bytes());
                    self.hasher.update(b);
                }
            }
        }
    }

    fn end_body(&self) -> Result<()> {
        match self.body_left {
            0 => Ok(()),
            n => Err(malformed(format!("a file's body is {n} bytes short of its size"))),
        }
    }

    pub fn add(&mut self, item: &ImageItem) -> Result<()> {
        match item {
            ImageItem::Row { table, cells } => {
                let spec = TABLES.get(*table).ok_or_else(|| malformed(format!("no table {table}")))?;
                if *table < self.at || self.files > 0 {
                    return Err(malformed(format!("rows of {} out of order", spec.name)));
                }
                if cells.len() != spec.columns.len() {
                    return Err(malformed(format!("a row of {} has {} cells", spec.name, cells.len())));
                }
                self.at = *table;
                self.rows[*table] += 1;
                self.hash_cells(*table as u8, cells);
                match spec.name {
                    "tenants" => self.slug = text_at(cells, 0)?,
                    "audit_anchor" => {
                        self.anchor = Some(AuditAnchor {
                            seq: int_at(cells, 0)? as u64,
                            hash: text_at(cells, 1)?,
                            at: Timestamp::from_millis(int_at(cells, 2)?),
                        })
                    }
                    "audit" => {
                        let entry = audit_entry(cells)?;
                        let anchor = self.anchor.clone();
                        self.chain.get_or_insert_with(|| ChainWalk::new(anchor)).push(&entry);
                    }
                    _ => {}
                }
                Ok(())
            }
            ImageItem::File { cells } => {
                self.end_body()?;
                if cells.len() != FILE_COLUMNS.len() {
                    return Err(malformed(format!("a file's row has {} cells", cells.len())));
                }
                let size = int_at(cells, 1)?;
                self.body_left = u64::try_from(size).map_err(|_| malformed("a negative file size"))?;
                self.files += 1;
                self.file_bytes += self.body_left;
                self.hash_cells(0xff, cells);
                Ok(())
            }
            ImageItem::Body(piece) => {
                let n = piece.len() as u64;
                if n > self.body_left {
                    return Err(malformed("a file's body is longer than its size"));
                }
                self.body_left -= n;
                self.hasher.update(piece);
                Ok(())
            }
        }
    }

    pub fn finish(self) -> Result<ImageSummary> {
        self.end_body()?;
        let audit = self.chain.unwrap_or_else(|| ChainWalk::new(self.anchor)).finish();
        Ok(ImageSummary {
            slug: self.slug,
            sha256: hex::encode(self.hasher.finalize()),
            rows: self.rows,
            files: self.files,
            file_bytes: self.file_bytes,
            audit,
        })
    }
}

/// An audit row of an image as the entry it is.
fn audit_entry(cells: &[Cell]) -> Result<AuditEntry> {
    Ok(AuditEntry {
        seq: int_at(cells, 0)? as u64,
        at: Timestamp::from_millis(int_at(cells, 1)?),
        tenant: text_at(cells, 2)?,
        actor: text_at(cells, 3)?,
        action: text_at(cells, 4)?,
        target: text_at(cells, 5)?,
        result: text_at(cells, 6)?,
        request_id: text_at(cells, 7)?,
        ip: text_at(cells, 8)?,
        prev_hash: text_at(cells, 9)?,
        hash: text_at(cells, 10)?,
    })
}

/// Reads a whole image, keeping only its summary.
pub async fn summarize(items: &mut dyn ImageItems, shared_only: bool) -> Result<ImageSummary> {
    let mut digest = ImageDigest::default();
    while let Some(mut item) = items.next().await? {
        if shared_only {
            as_shared(&mut item);
        }
        digest.add(&item)?;
    }
    digest.finish()
}

/// A tenant's record placed `shared` (on a target that places no tenant on its own).
fn as_shared(item: &mut ImageItem) {
    const PLACEMENT: usize = 4;
    if let ImageItem::Row { table: 0, cells } = item {
        if cells.get(PLACEMENT).is_some_and(|c| *c == Cell::Text("dedicated".into())) {
            cells[PLACEMENT] = Cell::Text("shared".into());
        }
    }
}

/// A source image on its way into a target: hashed as it passes, then compared with what the
/// target holds.
pub struct Transfer {
    items: Box<dyn ImageItems>,
    digest: Option<ImageDigest>,
    shared_only: bool,
    was_dedicated: bool,
    source: Option<ImageSummary>,
}

impl Transfer {
    /// The next item for the target to write.
    pub async fn next(&mut self) -> Result<Option<ImageItem>> {
        let Some(digest) = self.digest.as_mut() else { return Ok(None) };
        match self.items.next().await? {
            Some(mut item) => {
                if self.shared_only {
                    let before = item.clone();
                    as_shared(&mut item);
                    self.was_dedicated |= before != item;
                }
                digest.add(&item)?;
                Ok(Some(item))
            }
            None => {
                let summary = self.digest.take().expect("present").finish()?;
                self.source = Some(summary);
                Ok(None)
            }
        }
    }

    /// Whether what the target wrote (read back by it, as `written`) is the whole source image,
    /// and its audit chain verifies as the source's did. The target commits only if so.
    pub async fn verify(&mut self, written: &mut dyn ImageItems) -> Result<ImageSummary> {
        let source = self
            .source
            .as_ref()
            .ok_or_else(|| Error::internal("a copy was checked before its source was read to the end"))?;
        let target = summarize(written, false).await?;
        if target != *source {
            return Err(Error::internal(format!(
                "the copy does not match its source (rows {:?}, {} files of {} bytes, sha256 {}; the source has \
                 rows {:?}, {} files of {} bytes, sha256 {}): nothing of the tenant was committed",
                target.rows,
                target.files,
                target.file_bytes,
                target.sha256,
                source.rows,
                source.files,
                source.file_bytes,
                source.sha256
            )));
        }
        if source.audit.ok && !target.audit.ok {
            return Err(Error::internal("the copy's audit chain does not verify"));
        }
        Ok(target)
    }
}

/// What copying one tenant came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyOutcome {
    /// Copied now, and what the target holds matches the source.
    Copied { summary: ImageSummary, was_dedicated: bool },
    /// The target held the tenant already, matching the source: nothing was written.
    AlreadyThere { summary: ImageSummary },
}

impl CopyOutcome {
    pub fn summary(&self) -> &ImageSummary {
        match self {
            CopyOutcome::Copied { summary, .. } | CopyOutcome::AlreadyThere { summary } => summary,
        }
    }
}

/// Copies one tenant from `source` into `target` (`held`: the tenants [`prepare_copy`] found
/// there), or finds it there already. A tenant the target holds is never written to: if it
/// differs from the source (changed on either side since it was copied), the copy of it is
/// refused, and nothing changes. So a copy interrupted anywhere can be run again, and running it
/// again once it finished changes nothing.
pub async fn copy_tenant(
    source: &dyn ImageSource,
    target: &dyn ImageTarget,
    held: &[TenantId],
    tenant: &TenantId,
) -> Result<CopyOutcome> {
    let shared_only = !target.places_dedicated();
    if held.contains(tenant) {
        let held = summarize(target.read_image(tenant).await?.as_mut(), false).await?;
        let wanted = summarize(source.read_image(tenant).await?.as_mut(), shared_only).await?;
        if held != wanted {
            return Err(Error::conflict(format!(
                "tenant {tenant} is in the target already and differs from the source (sha256 {} there, {} here): \
                 it changed on one side after an earlier copy. Nothing of it was copied",
                held.sha256, wanted.sha256
            )));
        }
        return Ok(CopyOutcome::AlreadyThere { summary: held });
    }
    let mut transfer = Transfer {
        items: source.read_image(tenant).await?,
        digest: Some(ImageDigest::default()),
        shared_only,
        was_dedicated: false,
        source: None,
    };
    target.write_image(tenant, &mut transfer).await?;
    let summary = transfer.source.take().ok_or_else(|| Error::internal("the target did not read the whole image"))?;
    Ok(CopyOutcome::Copied { summary, was_dedicated: transfer.was_dedicated })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::next_entry;
    use crate::model::AuditDraft;

    fn audit_row(e: &AuditEntry) -> ImageItem {
        ImageItem::Row {
            table: table_index("audit"),
            cells: vec![
                Cell::Int(e.seq as i64),
                Cell::Int(e.at.millis()),
                Cell::Text(e.tenant.clone()),
                Cell::Text(e.actor.clone()),
                Cell::Text(e.action.clone()),
                Cell::Text(e.target.clone()),
                Cell::Text(e.result.clone()),
                Cell::Text(e.request_id.clone()),
                Cell::Text(e.ip.clone()),
                Cell::Text(e.prev_hash.clone()),
                Cell::Text(e.hash.clone()),
            ],
        }
    }

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for seq in 1..=n {
            let prev = out.last().map(|e| (e.seq, e.hash.as_str()));
            let draft = AuditDraft {
                actor: "operator".into(),
                action: "file.write".into(),
                target: format!("/f{seq}"),
                result: "ok".into(),
                request_id: String::new(),
                ip: String::new(),
            };
            out.push(next_entry(prev, "acme", draft, Timestamp::from_millis(seq as i64)));
        }
        out
    }

    fn file(path: &str, size: i64) -> ImageItem {
        ImageItem::File {
            cells: vec![
                Cell::Text(path.into()),
                Cell::Int(size),
                Cell::Text("e".into()),
                Cell::Int(1),
                Cell::Text("text/plain".into()),
                Cell::Int(0),
                Cell::Int(0),
            ],
        }
    }

    fn digest(items: &[ImageItem]) -> Result<ImageSummary> {
        let mut d = ImageDigest::default();
        for i in items {
            d.add(i)?;
        }
        d.finish()
    }

    #[test]
    fn people_differences_name_each_row_missing_or_changed() {
        let users = &PEOPLE_TABLES[0];
        let user = |id: &str, email: &str| {
            let mut row = vec![Cell::Text(id.into()), Cell::Text(email.into()), Cell::Text("N".into())];
            row.extend([Cell::Null, Cell::Int(0), Cell::Null, Cell::Int(1), Cell::Int(1)]);
            row
        };
        let wanted = vec![user("usr_a", "a@x"), user("usr_b", "b@x"), user("usr_c", "c@x")];
        assert!(people_differences(users, &wanted, &wanted, true).is_empty());
        let held = vec![user("usr_a", "a@x"), user("usr_b", "other@x"), user("usr_z", "z@x")];
        let found = people_differences(users, &wanted, &held, true);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("users [Text(\"usr_b\")] is in the target already, different"), "{found:?}");
        assert!(found[1].starts_with("users [Text(\"usr_c\")] could not be written"), "{found:?}");
        let found = people_differences(users, &wanted, &held, false);
        assert_eq!(found[1], "users [Text(\"usr_c\")] is not in the target");
    }

    #[test]
    fn a_body_hashes_alike_whatever_its_pieces() {
        let whole = digest(&[file("/a", 6), ImageItem::Body(b"abcdef".to_vec())]).unwrap();
        let pieces = digest(&[
            file("/a", 6),
            ImageItem::Body(b"ab".to_vec()),
            ImageItem::Body(vec![]),
            ImageItem::Body(b"cdef".to_vec()),
        ])
        .unwrap();
        assert_eq!(whole, pieces);
        assert_eq!((whole.files, whole.file_bytes), (1, 6));
        let other = digest(&[file("/a", 6), ImageItem::Body(b"abcdeg".to_vec())]).unwrap();
        assert_ne!(whole.sha256, other.sha256);
    }

    #[test]
    fn a_body_short_or_long_of_its_size_is_malformed() {
        assert!(digest(&[file("/a", 6), ImageItem::Body(b"abc".to_vec())]).is_err());
        assert!(digest(&[file("/a", 6), ImageItem::Body(b"abc".to_vec()), file("/b", 0)]).is_err());
        assert!(digest(&[file("/a", 2), ImageItem::Body(b"abc".to_vec())]).is_err());
    }

    #[test]
    fn rows_out_of_table_order_are_malformed() {
        let e = chain(1);
        let mut cells = vec![Cell::Null; TABLES[0].columns.len()];
        cells[0] = Cell::Text("acme".into());
        let tenant_row = ImageItem::Row { table: 0, cells };
        assert!(digest(&[tenant_row.clone(), audit_row(&e[0])]).is_ok());
        assert!(digest(&[audit_row(&e[0]), tenant_row]).is_err());
        assert!(digest(&[file("/a", 0), audit_row(&e[0])]).is_err());
    }

    #[test]
    fn the_audit_chain_is_walked_as_it_streams() {
        let entries = chain(5);
        let rows: Vec<ImageItem> = entries.iter().map(audit_row).collect();
        let ok = digest(&rows).unwrap();
        assert_eq!((ok.audit.ok, ok.audit.entries), (true, 5));
        assert_eq!(ok.rows[table_index("audit")], 5);
        let mut tampered = entries.clone();
        tampered[2].target = "/elsewhere".into();
        let bad = digest(&tampered.iter().map(audit_row).collect::<Vec<_>>()).unwrap();
        assert!(!bad.audit.ok);
        assert_eq!(bad.audit.first_broken_seq, Some(3));
        assert_ne!(bad.sha256, ok.sha256);
    }

    #[test]
    fn a_dedicated_record_reads_as_shared_for_a_target_without_dedicated_placement() {
        let mut cells = vec![Cell::Null; TABLES[0].columns.len()];
        cells[4] = Cell::Text("dedicated".into());
        let mut item = ImageItem::Row { table: 0, cells };
        as_shared(&mut item);
        let ImageItem::Row { cells, .. } = item else { unreachable!() };
        assert_eq!(cells[4], Cell::Text("shared".into()));
    }
}
