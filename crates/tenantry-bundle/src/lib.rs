//! The tenant bundle (API.md §9, docs/BUNDLE.md): one `.tenantry` file holding everything of a
//! tenant, written as a stream (constant memory however large the tenant) and verified as a
//! stream before anything is applied.
//!
//! Layout: a zstd-compressed tar whose entries are, in order, `bundle.json` (the header: format,
//! version, the tenant's settings), then any number of records (`<kind>/<n>.jsonl`, e.g. memory,
//! webhooks, keys) and files (`files/<n>.json` with the file's metadata, then `files/<n>.data`
//! with its bytes), and last `manifest.json`: the counts and a SHA-256 chained over every entry's
//! name, size and content hash. Any change to any byte, a missing or extra entry, or a truncated
//! stream makes verification fail.
//!
//! This crate knows nothing of tenants beyond the JSON it is handed: the server decides what goes
//! in and what to do with what comes out.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};

/// The value of `format` in `bundle.json` and `manifest.json`.
pub const FORMAT: &str = "tenantry-bundle";
/// The version this crate writes and the only one it reads.
pub const VERSION: u32 = 1;
/// Records per `.jsonl` entry at most, and bytes (so one entry never holds much memory).
const RECORDS_PER_ENTRY: usize = 1000;
const RECORD_BYTES_PER_ENTRY: usize = 8 << 20;
/// The largest entry other than a file's bytes a reader takes: a record entry closes once it
/// passes [`RECORD_BYTES_PER_ENTRY`], so it holds at most that plus one record, and one record
/// (a memory value of at most 16 MiB with its names) stays well under 16 MiB more. Entries are
/// read into memory whole, so a larger declared size is refused before a byte of it is read.
pub const MAX_ENTRY_BYTES: u64 = 32 << 20;
/// Zero bytes a reader accepts after the archive's end (tar pads its last record to 10 KiB).
const MAX_END_PADDING: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("the bundle is damaged: {0}")]
    Damaged(String),
    #[error("the bundle's format version {0} is not supported (this server reads version {VERSION})")]
    Version(u32),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

fn damaged(why: impl Into<String>) -> BundleError {
    BundleError::Damaged(why.into())
}

/// `bundle.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// The tenant's settings (slug, name, tier, quotas, metadata, domains, placement).
    pub tenant: serde_json::Value,
    pub exported_at: String,
    pub producer: String,
}

impl Header {
    pub fn new(tenant: serde_json::Value, exported_at: String) -> Header {
        Header {
            format: FORMAT.into(),
            version: VERSION,
            tenant,
            exported_at,
            producer: concat!("tenantry ", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

/// A file's metadata (`files/<n>.json`). `sha256` is the hex SHA-256 of the bytes that follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub path: String,
    pub size: u64,
    pub sha256: String,
    pub content_type: String,
    pub created_at: String,
    pub updated_at: String,
}

impl FileMeta {
    /// The metadata of `content` stored at `path`, created and last changed at `at` (RFC 3339).
    pub fn describing(path: &str, content: &[u8], content_type: &str, at: &str) -> FileMeta {
        FileMeta {
            path: path.to_owned(),
            size: content.len() as u64,
            sha256: hex::encode(Sha256::digest(content)),
            content_type: content_type.to_owned(),
            created_at: at.to_owned(),
            updated_at: at.to_owned(),
        }
    }
}

/// `manifest.json`, the last entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub files: u64,
    pub file_bytes: u64,
    /// Records by kind (`memory`, `webhooks`, `keys`, ...).
    pub records: std::collections::BTreeMap<String, u64>,
    /// Entries before the manifest.
    pub entries: u64,
    /// SHA-256 chained over every entry before the manifest: `h = sha256(h ‖ name ‖ 0 ‖ size ‖
    /// sha256(content))`, starting from 32 zero bytes.
    pub chain_sha256: String,
}

/// The running chain hash over entries.
#[derive(Clone)]
struct Chain {
    h: [u8; 32],
    entries: u64,
}

impl Chain {
    fn new() -> Chain {
        Chain { h: [0; 32], entries: 0 }
    }
    fn add(&mut self, name: &str, size: u64, content_sha: &[u8; 32]) {
        let mut d = Sha256::new();
        d.update(self.h);
        d.update(name.as_bytes());
        d.update([0u8]);
        d.update(size.to_be_bytes());
        d.update(content_sha);
        self.h = d.finalize().into();
        self.entries += 1;
    }
    fn hex(&self) -> String {
        hex::encode(self.h)
    }
}

/// Hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    sha: Sha256,
    read: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// Writes a bundle to `W` as a stream.
pub struct Writer<W: Write> {
    tar: tar::Builder<zstd::Encoder<'static, W>>,
    chain: Chain,
    files: u64,
    file_bytes: u64,
    records: std::collections::BTreeMap<String, u64>,
    /// Pending records of one kind, flushed as one `.jsonl` entry.
    batch: Option<(String, Vec<u8>, usize)>,
    entry_no: u64,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W, header: &Header) -> Result<Writer<W>, BundleError> {
        let mut encoder = zstd::Encoder::new(out, 3)?;
        // A checksum over every decompressed byte: tar header fields outside the chain hash
        // (modes, times, padding) are covered too.
        encoder.include_checksum(true)?;
        let mut w = Writer {
            tar: tar::Builder::new(encoder),
            chain: Chain::new(),
            files: 0,
            file_bytes: 0,
            records: Default::default(),
            batch: None,
            entry_no: 0,
        };
        let json = serde_json::to_vec_pretty(header).map_err(|e| damaged(e.to_string()))?;
        w.entry("bundle.json", &json)?;
        Ok(w)
    }

    fn header(size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h
    }

    fn entry(&mut self, name: &str, bytes: &[u8]) -> Result<(), BundleError> {
        let sha: [u8; 32] = Sha256::digest(bytes).into();
        self.chain.add(name, bytes.len() as u64, &sha);
        let mut h = Self::header(bytes.len() as u64);
        self.tar.append_data(&mut h, name, bytes)?;
        Ok(())
    }

    fn next_no(&mut self) -> u64 {
        self.entry_no += 1;
        self.entry_no
    }

    /// Adds one record (a JSON object) of `kind` (`memory`, `webhooks`, `keys`, ...).
    pub fn record(&mut self, kind: &str, record: &serde_json::Value) -> Result<(), BundleError> {
        if !kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') || kind.is_empty() || kind == "files" {
            return Err(damaged(format!("invalid record kind {kind:?}")));
        }
        if self.batch.as_ref().is_some_and(|(k, _, _)| k != kind) {
            self.flush_records()?;
        }
        let (_, buf, n) = self.batch.get_or_insert_with(|| (kind.to_owned(), Vec::new(), 0));
        serde_json::to_writer(&mut *buf, record).map_err(|e| damaged(e.to_string()))?;
        buf.push(b'\n');
        *n += 1;
        *self.records.entry(kind.to_owned()).or_default() += 1;
        if *n >= RECORDS_PER_ENTRY || buf.len() >= RECORD_BYTES_PER_ENTRY {
            self.flush_records()?;
        }
        Ok(())
    }

    fn flush_records(&mut self) -> Result<(), BundleError> {
        if let Some((kind, buf, _)) = self.batch.take() {
            let name = format!("{kind}/{:09}.jsonl", self.next_no());
            self.entry(&name, &buf)?;
        }
        Ok(())
    }

    /// Adds a file: its metadata, then exactly `meta.size` bytes read from `content`, which must
    /// hash to `meta.sha256`.
    pub fn file(&mut self, meta: &FileMeta, content: impl Read) -> Result<(), BundleError> {
        self.flush_records()?;
        let no = self.next_no();
        let json = serde_json::to_vec(meta).map_err(|e| damaged(e.to_string()))?;
        self.entry(&format!("files/{no:09}.json"), &json)?;
        let name = format!("files/{no:09}.data");
        let mut reader = HashingReader { inner: content.take(meta.size), sha: Sha256::new(), read: 0 };
        let mut h = Self::header(meta.size);
        self.tar.append_data(&mut h, &name, &mut reader)?;
        if reader.read != meta.size {
            return Err(damaged(format!("{} ended after {} of {} bytes", meta.path, reader.read, meta.size)));
        }
        let sha: [u8; 32] = reader.sha.finalize().into();
        if hex::encode(sha) != meta.sha256 {
            return Err(damaged(format!("{} changed while it was exported", meta.path)));
        }
        self.chain.add(&name, meta.size, &sha);
        self.files += 1;
        self.file_bytes += meta.size;
        Ok(())
    }

    /// Adds a file whose bytes are already in memory and whose `meta.sha256` the caller vouches
    /// for (a store that keeps each file's SHA-256 as its ETag): no second hash of the content.
    /// A wrong hash is not caught here, but by any reader of the bundle.
    pub fn file_with_known_hash(&mut self, meta: &FileMeta, content: &[u8]) -> Result<(), BundleError> {
        if content.len() as u64 != meta.size {
            return Err(damaged(format!("{} is {} bytes, not {}", meta.path, content.len(), meta.size)));
        }
        let sha: [u8; 32] = hex::decode(&meta.sha256)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| damaged(format!("{} has no valid SHA-256", meta.path)))?;
        self.flush_records()?;
        let no = self.next_no();
        let json = serde_json::to_vec(meta).map_err(|e| damaged(e.to_string()))?;
        self.entry(&format!("files/{no:09}.json"), &json)?;
        let name = format!("files/{no:09}.data");
        let mut h = Self::header(meta.size);
        self.tar.append_data(&mut h, &name, content)?;
        self.chain.add(&name, meta.size, &sha);
        self.files += 1;
        self.file_bytes += meta.size;
        Ok(())
    }

    /// Writes the manifest and ends the stream; returns the manifest and the output.
    pub fn finish(mut self) -> Result<(Manifest, W), BundleError> {
        self.flush_records()?;
        let manifest = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            files: self.files,
            file_bytes: self.file_bytes,
            records: self.records.clone(),
            entries: self.chain.entries,
            chain_sha256: self.chain.hex(),
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| damaged(e.to_string()))?;
        let mut h = Self::header(json.len() as u64);
        self.tar.append_data(&mut h, "manifest.json", json.as_slice())?;
        let encoder = self.tar.into_inner()?;
        let out = encoder.finish()?;
        Ok((manifest, out))
    }
}

/// One item read from a bundle, in order.
pub enum Item<'a> {
    Record {
        kind: &'a str,
        record: serde_json::Value,
    },
    /// A file's metadata and a reader of exactly its bytes.
    File {
        meta: FileMeta,
        content: &'a mut dyn Read,
    },
}

/// Reads and checks a whole bundle, handing each item to `visit` in order; the manifest is
/// checked at the end, so a caller that applies items must only commit after this returns `Ok`.
/// `visit` must read a file's content to the end or not at all. Once `visit` refuses an item, it
/// is called no more, but the bundle is still read and checked to its end: a damaged bundle is
/// reported as damaged even when the damage first shows as an item the caller refuses (a flipped
/// byte in a file's metadata makes an invalid path before the checksums are reached).
pub fn read<R: Read>(
    input: R,
    mut visit: impl FnMut(Item<'_>) -> Result<(), BundleError>,
) -> Result<(Header, Manifest), BundleError> {
    let decoder = zstd::Decoder::new(input)?;
    let mut archive = tar::Archive::new(decoder);
    let mut chain = Chain::new();
    let mut header: Option<Header> = None;
    let mut manifest: Option<Manifest> = None;
    let mut pending_meta: Option<(String, FileMeta)> = None;
    let (mut files, mut file_bytes) = (0u64, 0u64);
    let mut records: std::collections::BTreeMap<String, u64> = Default::default();
    let mut refused: Option<BundleError> = None;
    let mut offer = |item: Item<'_>| {
        if refused.is_none() {
            refused = visit(item).err();
        }
    };
    let entries = archive.entries().map_err(|e| damaged(format!("not a bundle: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| damaged(format!("unreadable entry: {e}")))?;
        let name = entry.path().map_err(|e| damaged(e.to_string()))?.to_string_lossy().into_owned();
        let size = entry.size();
        if manifest.is_some() {
            return Err(damaged(format!("entry {name} after the manifest")));
        }
        let is_data = name.starts_with("files/") && name.ends_with(".data");
        if !is_data && size > MAX_ENTRY_BYTES {
            return Err(damaged(format!(
                "entry {name} declares {size} bytes; no bundle writer makes one over {MAX_ENTRY_BYTES}"
            )));
        }
        if name == "manifest.json" {
            let mut buf = Vec::new();
            (&mut entry).take(MAX_ENTRY_BYTES).read_to_end(&mut buf).map_err(|e| damaged(format!("manifest: {e}")))?;
            manifest = Some(serde_json::from_slice(&buf).map_err(|e| damaged(format!("manifest: {e}")))?);
            continue;
        }
        if let Some(no) = name.strip_prefix("files/").and_then(|n| n.strip_suffix(".data")) {
            let (meta_no, meta) = pending_meta.take().ok_or_else(|| damaged(format!("{name} without its metadata")))?;
            if meta_no != no || meta.size != size {
                return Err(damaged(format!("{name} does not match its metadata")));
            }
            let mut reader = HashingReader { inner: &mut entry, sha: Sha256::new(), read: 0 };
            offer(Item::File { meta: meta.clone(), content: &mut reader });
            std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| damaged(format!("{name}: {e}")))?;
            let sha: [u8; 32] = reader.sha.finalize().into();
            if hex::encode(sha) != meta.sha256 || reader.read != size {
                return Err(damaged(format!("the content of {} does not match its SHA-256", meta.path)));
            }
            chain.add(&name, size, &sha);
            files += 1;
            file_bytes += size;
            continue;
        }
        if pending_meta.is_some() {
            return Err(damaged(format!("{name} between a file's metadata and its bytes")));
        }
        let mut buf = Vec::new();
        (&mut entry).take(MAX_ENTRY_BYTES).read_to_end(&mut buf).map_err(|e| damaged(format!("{name}: {e}")))?;
        let sha: [u8; 32] = Sha256::digest(&buf).into();
        chain.add(&name, size, &sha);
        if name == "bundle.json" {
            let h: Header = serde_json::from_slice(&buf).map_err(|e| damaged(format!("bundle.json: {e}")))?;
            if h.format != FORMAT {
                return Err(damaged("not a tenantry bundle"));
            }
            if h.version != VERSION {
                return Err(BundleError::Version(h.version));
            }
            header = Some(h);
        } else if header.is_none() {
            return Err(damaged("bundle.json is not the first entry"));
        } else if let Some(no) = name.strip_prefix("files/").and_then(|n| n.strip_suffix(".json")) {
            let meta: FileMeta = serde_json::from_slice(&buf).map_err(|e| damaged(format!("{name}: {e}")))?;
            pending_meta = Some((no.to_owned(), meta));
        } else if let Some((kind, _)) = name.split_once('/').filter(|(_, rest)| rest.ends_with(".jsonl")) {
            for line in buf.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let record = serde_json::from_slice(line).map_err(|e| damaged(format!("{name}: {e}")))?;
                *records.entry(kind.to_owned()).or_default() += 1;
                offer(Item::Record { kind, record });
            }
        } else {
            return Err(damaged(format!("unknown entry {name}")));
        }
    }
    // Read the stream to its end, so zstd checks its checksum over everything (tar's end blocks
    // included), and make sure nothing but the end's zero padding trails the archive.
    let rest = archive.into_inner();
    let mut trailing = ZeroCheck { zeros: true, len: 0 };
    std::io::copy(&mut rest.take(MAX_END_PADDING + 1), &mut trailing)
        .map_err(|e| damaged(format!("after the manifest: {e}")))?;
    if !trailing.zeros || trailing.len > MAX_END_PADDING {
        return Err(damaged("data after the end of the archive"));
    }
    let header = header.ok_or_else(|| damaged("no bundle.json"))?;
    let manifest = manifest.ok_or_else(|| damaged("no manifest: the bundle is truncated"))?;
    if pending_meta.is_some() {
        return Err(damaged("a file's metadata without its bytes"));
    }
    if manifest.version != VERSION || manifest.format != FORMAT {
        return Err(BundleError::Version(manifest.version));
    }
    if manifest.chain_sha256 != chain.hex()
        || manifest.entries != chain.entries
        || manifest.files != files
        || manifest.file_bytes != file_bytes
        || manifest.records != records
    {
        return Err(damaged("the contents do not match the manifest (altered, missing or extra entries)"));
    }
    match refused {
        Some(e) => Err(e),
        None => Ok((header, manifest)),
    }
}

/// Counts what is written to it and whether it was all zero bytes.
struct ZeroCheck {
    zeros: bool,
    len: u64,
}

impl std::io::Write for ZeroCheck {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.zeros &= buf.iter().all(|&b| b == 0);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Checks a whole bundle without applying anything.
pub fn verify<R: Read>(input: R) -> Result<(Header, Manifest), BundleError> {
    read(input, |_| Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sha(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    /// A writer that has the sample's header and records, ready for its files.
    fn sample_writer() -> Writer<Vec<u8>> {
        let header = Header::new(json!({"slug": "acme", "name": "Acme"}), "2026-11-23T00:00:00.000Z".into());
        let mut w = Writer::new(Vec::new(), &header).unwrap();
        for i in 0..2500 {
            w.record("memory", &json!({"namespace": "ns", "key": format!("k{i}"), "value": i})).unwrap();
        }
        w.record("webhooks", &json!({"url": "https://example.com"})).unwrap();
        w
    }

    fn sample() -> (Vec<u8>, Vec<(FileMeta, Vec<u8>)>) {
        let files: Vec<(FileMeta, Vec<u8>)> =
            [("/a.txt", b"hello".to_vec()), ("/empty", vec![]), ("/ünï/ç/deep.bin", vec![7u8; 100_000])]
                .into_iter()
                .map(|(p, c)| {
                    let meta = FileMeta {
                        path: p.into(),
                        size: c.len() as u64,
                        sha256: sha(&c),
                        content_type: "application/octet-stream".into(),
                        created_at: "2026-11-23T00:00:00.000Z".into(),
                        updated_at: "2026-11-23T00:00:00.000Z".into(),
                    };
                    (meta, c)
                })
                .collect();
        let mut w = sample_writer();
        for (meta, content) in &files {
            w.file(meta, content.as_slice()).unwrap();
        }
        let (manifest, out) = w.finish().unwrap();
        assert_eq!((manifest.files, manifest.records["memory"]), (3, 2500));
        (out, files)
    }

    #[test]
    fn what_is_written_reads_back_in_order_and_verifies() {
        let (bundle, files) = sample();
        let mut got_files = Vec::new();
        let mut memory = 0;
        let (header, manifest) = read(bundle.as_slice(), |item| {
            match item {
                Item::Record { kind: "memory", record } => {
                    assert_eq!(record["value"], memory);
                    memory += 1;
                }
                Item::Record { .. } => {}
                Item::File { meta, content } => {
                    let mut buf = Vec::new();
                    content.read_to_end(&mut buf)?;
                    got_files.push((meta, buf));
                }
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(header.tenant["slug"], "acme");
        assert_eq!(memory, 2500);
        assert_eq!(got_files, files);
        assert_eq!(manifest.file_bytes, 100_005);
    }

    #[test]
    fn damage_that_shows_first_as_a_refused_item_is_reported_as_damage() {
        let (bundle, _) = sample();
        // A file's path altered inside a well-formed stream (same length; zstd's own checksum
        // recomputed), as a flipped byte sometimes decodes: only the manifest's chain catches it.
        let mut tar = zstd::decode_all(bundle.as_slice()).unwrap();
        let at = tar.windows(8).position(|w| w == b"\"/a.txt\"").unwrap();
        tar[at + 1] = b'?';
        let altered = zstd::encode_all(tar.as_slice(), 3).unwrap();
        let refuse_odd_paths = |item: Item<'_>| match item {
            Item::File { meta, .. } if !meta.path.starts_with('/') => Err(refusal()),
            _ => Ok(()),
        };
        match read(altered.as_slice(), refuse_odd_paths) {
            Err(BundleError::Damaged(why)) => assert!(why.contains("manifest"), "{why}"),
            other => panic!("expected damage, got {other:?}"),
        }
        // The same refusal on an intact bundle is the caller's error, after the whole bundle.
        let mut seen = 0;
        let res = read(bundle.as_slice(), |item| {
            seen += 1;
            match item {
                Item::File { .. } => Err(refusal()),
                _ => Ok(()),
            }
        });
        assert!(matches!(res, Err(BundleError::Io(ref e)) if e.to_string() == "refused"), "{res:?}");
        assert_eq!(seen, 2501 + 1, "every record before the first file, then the file; nothing after");
    }

    fn refusal() -> BundleError {
        BundleError::Io(std::io::Error::other("refused"))
    }

    #[test]
    fn a_file_with_a_known_hash_writes_the_same_bundle_and_a_wrong_hash_fails_the_reader() {
        let (bundle, files) = sample();
        let write = |wrong: bool| {
            let mut w = sample_writer();
            for (meta, content) in &files {
                let mut meta = meta.clone();
                if wrong && meta.path == "/a.txt" {
                    meta.sha256 = sha(b"something else");
                }
                w.file_with_known_hash(&meta, content).unwrap();
            }
            w.finish().unwrap().1
        };
        assert_eq!(write(false), bundle, "byte for byte what `file` writes");
        assert!(matches!(verify(write(true).as_slice()), Err(BundleError::Damaged(_))));
        let (meta, content) = &files[0];
        let mut w = Writer::new(Vec::new(), &Header::new(json!({}), String::new())).unwrap();
        assert!(w.file_with_known_hash(meta, &content[1..]).is_err(), "the size must match");
    }

    #[test]
    fn a_truncated_bundle_is_refused() {
        let (bundle, _) = sample();
        for cut in [10, bundle.len() / 2, bundle.len() - 1] {
            assert!(verify(&bundle[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn flipping_any_sampled_byte_is_detected() {
        let (bundle, _) = sample();
        let step = (bundle.len() / 300).max(1);
        for i in (0..bundle.len()).step_by(step) {
            let mut bad = bundle.clone();
            bad[i] ^= 0x55;
            assert!(verify(bad.as_slice()).is_err(), "flip at byte {i} of {} went unnoticed", bundle.len());
        }
    }

    #[test]
    fn a_file_that_changes_while_exported_is_an_error_not_a_bad_bundle() {
        let header = Header::new(json!({}), String::new());
        let mut w = Writer::new(Vec::new(), &header).unwrap();
        let meta = FileMeta {
            path: "/x".into(),
            size: 3,
            sha256: sha(b"abc"),
            content_type: String::new(),
            created_at: String::new(),
            updated_at: String::new(),
        };
        assert!(w.file(&meta, b"abd".as_slice()).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Arbitrary bytes, or a real bundle with a random run of bytes overwritten, are refused
        /// with an error: never a panic, never an accepted bundle.
        #[test]
        fn damaged_input_is_an_error_never_a_panic(
            noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096),
            at in 0usize..6000,
        ) {
            proptest::prop_assert!(verify(noise.as_slice()).is_err());
            let (mut bundle, _) = sample();
            let start = at % bundle.len();
            let mut changed = false;
            for (i, b) in noise.iter().take(64).enumerate() {
                if let Some(x) = bundle.get_mut(start + i) {
                    changed |= *x != *b;
                    *x = *b;
                }
            }
            if changed {
                proptest::prop_assert!(verify(bundle.as_slice()).is_err());
            }
        }
    }

    fn damage_of(result: Result<(Header, Manifest), BundleError>) -> String {
        match result {
            Err(BundleError::Damaged(why)) => why,
            other => panic!("expected a damaged bundle, got {other:?}"),
        }
    }

    #[test]
    fn an_entry_declaring_more_than_a_writer_makes_is_refused_before_it_is_read() {
        // A few KiB compressed, it would expand to 48 MiB read into memory whole (2 GiB would
        // have been as cheap to send).
        let mut tar = tar::Builder::new(zstd::Encoder::new(Vec::new(), 3).unwrap());
        let header = serde_json::to_vec(&Header::new(json!({}), String::new())).unwrap();
        tar.append_data(&mut Writer::<Vec<u8>>::header(header.len() as u64), "bundle.json", header.as_slice()).unwrap();
        let size = 48u64 << 20;
        let mut h = Writer::<Vec<u8>>::header(size);
        tar.append_data(&mut h, "memory/000000002.jsonl", std::io::repeat(b'{').take(size)).unwrap();
        let bundle = tar.into_inner().unwrap().finish().unwrap();
        assert!(bundle.len() < 64 << 10, "{} bytes", bundle.len());
        let mut visited = 0;
        let why = damage_of(read(bundle.as_slice(), |_| {
            visited += 1;
            Ok(())
        }));
        assert_eq!(
            why,
            "entry memory/000000002.jsonl declares 50331648 bytes; no bundle writer makes one over 33554432"
        );
        assert_eq!(visited, 0);
    }

    #[test]
    fn data_after_the_end_of_the_archive_is_refused_and_zero_padding_is_not() {
        let (bundle, _) = sample();
        let tar = zstd::decode_all(bundle.as_slice()).unwrap();
        let again = |tail: &[u8]| {
            let mut t = tar.clone();
            t.extend_from_slice(tail);
            zstd::encode_all(t.as_slice(), 3).unwrap()
        };
        assert!(verify(again(&[0u8; 10240]).as_slice()).is_ok(), "padding to a tar record");
        assert_eq!(damage_of(verify(again(b"smuggled").as_slice())), "data after the end of the archive");
        let mut zeros_then_data = vec![0u8; 4096];
        zeros_then_data.push(1);
        assert_eq!(damage_of(verify(again(&zeros_then_data).as_slice())), "data after the end of the archive");
        assert_eq!(damage_of(verify(again(&vec![0u8; (2 << 20) + 1]).as_slice())), "data after the end of the archive");
    }

    #[test]
    fn another_version_is_refused_with_its_number() {
        let mut header = Header::new(json!({}), String::new());
        header.version = 99;
        let w = Writer::new(Vec::new(), &header).unwrap();
        let (_, out) = w.finish().unwrap();
        assert!(matches!(verify(out.as_slice()), Err(BundleError::Version(99))));
    }
}
