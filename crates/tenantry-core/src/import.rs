//! Importing a bundle into a tenant (API.md §9): the conflict policy, the rename rule, what is
//! staged, and the report an import answers with. The service reads a verified stream of bundle
//! items into staged rows nobody sees; the store then publishes them in one transaction, deciding
//! each conflict against what the tenant holds at that moment.

use crate::error::{Error, Result};
use crate::ids::WebhookId;
use crate::memory::MemoryKey;
use crate::path::TenantPath;
use crate::search::IndexDoc;
use crate::tier::QuotaOverrides;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// What an import does with a path (or memory key) that already holds *different* content.
/// The same content is never a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConflictPolicy {
    /// Keep what the tenant has (the default).
    #[default]
    Skip,
    /// Replace it with the bundle's.
    Overwrite,
    /// Keep both: the incoming one goes to a renamed path ([`renamed_path`]).
    Rename,
}

impl ConflictPolicy {
    pub fn parse(raw: &str) -> Result<ConflictPolicy> {
        match raw {
            "skip" => Ok(ConflictPolicy::Skip),
            "overwrite" => Ok(ConflictPolicy::Overwrite),
            "rename" => Ok(ConflictPolicy::Rename),
            other => {
                Err(Error::invalid_request(format!("unknown on_conflict {other:?}: use skip, overwrite or rename")))
            }
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            ConflictPolicy::Skip => "skip",
            ConflictPolicy::Overwrite => "overwrite",
            ConflictPolicy::Rename => "rename",
        }
    }
}

/// Whose settings (name, tier, quotas, metadata, domains) a tenant has after an import
/// (`settings=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SettingsChoice {
    /// The bundle's when the tenant held no files and no memory, or with `on_conflict=overwrite`;
    /// else the tenant's own (the default).
    #[default]
    Auto,
    /// Always the tenant's own.
    Keep,
    /// Always the bundle's.
    Replace,
}

impl SettingsChoice {
    pub fn parse(raw: &str) -> Result<SettingsChoice> {
        match raw {
            "auto" => Ok(SettingsChoice::Auto),
            "keep" => Ok(SettingsChoice::Keep),
            "replace" => Ok(SettingsChoice::Replace),
            other => Err(Error::invalid_request(format!("unknown settings {other:?}: use keep, replace or auto"))),
        }
    }
}

/// One setting an import changed, with its value before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SettingChange {
    /// `name`, `tier`, `quotas`, `metadata` or `domains`.
    pub setting: String,
    pub from: serde_json::Value,
    pub to: serde_json::Value,
}

/// What an import does with one incoming item (file or memory value), decided from what the
/// tenant holds under its name when the import is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Nothing (live) is there: the item is created.
    Create,
    /// The same content is there: nothing to do.
    Unchanged,
    /// Different content is there and stays (`skip`).
    Skip,
    /// Different content is there and the item replaces it (`overwrite`).
    Replace,
    /// Different content is there and the item goes under a new name (`rename`; see
    /// [`RenameProbe`]).
    Rename,
}

impl ConflictPolicy {
    /// The resolution of an item whose name holds nothing live (`None`), the same content
    /// (`Some(true)`) or different content (`Some(false)`).
    pub fn resolve(self, held_same: Option<bool>) -> Resolution {
        match (held_same, self) {
            (None, _) => Resolution::Create,
            (Some(true), _) => Resolution::Unchanged,
            (Some(false), ConflictPolicy::Skip) => Resolution::Skip,
            (Some(false), ConflictPolicy::Overwrite) => Resolution::Replace,
            (Some(false), ConflictPolicy::Rename) => Resolution::Rename,
        }
    }
}

/// While renaming: what the next candidate name (attempt 1, 2, ...) holds decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameProbe {
    /// Free: the item goes there.
    Take,
    /// The same content is there already (the same bundle imported again): unchanged.
    AlreadyThere,
    /// Other content: try the next name.
    Next,
}

impl RenameProbe {
    /// Of a candidate name holding nothing live (`None`), the same content or different content.
    pub fn of(held_same: Option<bool>) -> RenameProbe {
        match held_same {
            None => RenameProbe::Take,
            Some(true) => RenameProbe::AlreadyThere,
            Some(false) => RenameProbe::Next,
        }
    }
}

fn suffix(attempt: u32) -> String {
    if attempt <= 1 {
        ".imported".to_owned()
    } else {
        format!(".imported-{attempt}")
    }
}

/// Where `rename` puts an incoming file: `.imported` before the extension of the last segment
/// (`/docs/report.pdf` → `/docs/report.imported.pdf`; no extension or a dot file: at the end,
/// `/Makefile` → `/Makefile.imported`), `.imported-2`, `-3`, ... when that is taken too.
pub fn renamed_path(path: &TenantPath, attempt: u32) -> Result<TenantPath> {
    let p = path.as_str();
    let name_start = p.rfind('/').map_or(0, |i| i + 1);
    let name = &p[name_start..];
    let cut = match name.rfind('.') {
        Some(dot) if dot > 0 => name_start + dot,
        _ => p.len(),
    };
    let renamed = format!("{}{}{}", &p[..cut], suffix(attempt), &p[cut..]);
    TenantPath::parse(&renamed).map_err(|_| {
        Error::invalid_request(format!("{p} conflicts and cannot be renamed: {renamed} is not a valid path"))
    })
}

/// Where `rename` puts an incoming memory entry: the key with `.imported` (then `-2`, ...) added.
pub fn renamed_memory_key(key: &str, attempt: u32) -> Result<MemoryKey> {
    MemoryKey::parse(&format!("{key}{}", suffix(attempt)))
}

/// What holds a name an incoming item may land on: whether it is the item's own content (`None`:
/// nothing live, such as an expired memory entry), and the bytes it counts, freed if the item
/// lands there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub same: Option<bool>,
    pub size: i64,
}

/// The running totals of publishing an import: its report, and how far the tenant's stored
/// usage moves.
#[derive(Debug, Default)]
pub struct Tally {
    pub report: ImportReport,
    pub bytes_delta: i64,
    pub files_delta: i64,
}

impl Tally {
    /// Before anything is published: the report names the tenant and the policy, and says the
    /// tenant's settings were kept until they are applied.
    pub fn new(tenant_slug: &str, policy: ConflictPolicy) -> Tally {
        let report = ImportReport {
            tenant: tenant_slug.to_owned(),
            on_conflict: policy.as_str().to_owned(),
            settings: "kept".into(),
            ..ImportReport::default()
        };
        Tally { report, bytes_delta: 0, files_delta: 0 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemKind {
    File,
    Memory,
}

/// Where one staged item lands, decided as the backend says what holds one name after another
/// (the item's own name, then, under `rename`, each candidate in turn), counting the outcome
/// into a [`Tally`]. Both backends publish through it, so the rules are the same everywhere:
///
/// ```text
/// let mut landing = Landing::file(policy, path, size, staged_with_bytes);
/// loop {
///     let held = /* what holds landing.name() now */;
///     match landing.held(held, &mut tally)? {
///         Step::LookAgain => continue,          // landing.name() is the next candidate
///         Step::Land => /* write it at landing.name(), over what is there */,
///         Step::Stay => /* write nothing; drop the staged bytes */,
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Landing {
    kind: ItemKind,
    policy: ConflictPolicy,
    /// The path, or the memory key.
    original: String,
    namespace: String,
    name: String,
    size: i64,
    with_bytes: bool,
    /// 0 while the item's own name is looked at; then the rename candidate's number.
    attempt: u32,
}

/// What [`Landing::held`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Look at [`Landing::name`], the next candidate, and call [`Landing::held`] again.
    LookAgain,
    /// Write the item at [`Landing::name`], over what holds it (a replacement frees its bytes,
    /// or its body).
    Land,
    /// Write nothing; the staged bytes, if any, are no longer needed.
    Stay,
}

impl Landing {
    /// A staged file at `path` of `size` bytes. `with_bytes` is false when it was staged without
    /// its bytes because the tenant held the same content (or, under `skip`, other content).
    pub fn file(policy: ConflictPolicy, path: &str, size: i64, with_bytes: bool) -> Landing {
        Landing::new(ItemKind::File, policy, "", path, size, with_bytes)
    }

    /// A staged memory entry whose value is `size` bytes.
    pub fn memory(policy: ConflictPolicy, namespace: &str, key: &str, size: i64) -> Landing {
        Landing::new(ItemKind::Memory, policy, namespace, key, size, true)
    }

    fn new(
        kind: ItemKind,
        policy: ConflictPolicy,
        namespace: &str,
        name: &str,
        size: i64,
        with_bytes: bool,
    ) -> Landing {
        Landing {
            kind,
            policy,
            original: name.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            size,
            with_bytes,
            attempt: 0,
        }
    }

    /// The name to look at (and, after [`Step::Land`], to write at): a path, or a memory key.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What [`Landing::name`] holds (`None`: nothing at all) decides the next step.
    pub fn held(&mut self, held: Option<Held>, tally: &mut Tally) -> Result<Step> {
        let same = held.and_then(|h| h.same);
        let counts = match self.kind {
            ItemKind::File => &mut tally.report.files,
            ItemKind::Memory => &mut tally.report.memory,
        };
        if !self.with_bytes {
            // Staged without bytes: if what is there changed while importing, the change stands.
            match same {
                Some(true) => counts.unchanged += 1,
                _ => counts.skipped += 1,
            }
            return Ok(Step::Stay);
        }
        if self.attempt == 0 {
            match self.policy.resolve(same) {
                Resolution::Create => counts.created += 1,
                Resolution::Replace => counts.replaced += 1,
                Resolution::Unchanged => {
                    counts.unchanged += 1;
                    return Ok(Step::Stay);
                }
                Resolution::Skip => {
                    counts.skipped += 1;
                    return Ok(Step::Stay);
                }
                Resolution::Rename => return self.next_candidate(),
            }
        } else {
            match RenameProbe::of(same) {
                RenameProbe::Next => return self.next_candidate(),
                // Imported and renamed before: the same bundle imported again.
                RenameProbe::AlreadyThere => {
                    counts.unchanged += 1;
                    return Ok(Step::Stay);
                }
                RenameProbe::Take => {
                    counts.renamed += 1;
                    if tally.report.renamed.len() < MAX_RENAMED_LISTED {
                        let (kind, from, to) = match self.kind {
                            ItemKind::File => ("file", self.original.clone(), self.name.clone()),
                            ItemKind::Memory => (
                                "memory",
                                format!("{}/{}", self.namespace, self.original),
                                format!("{}/{}", self.namespace, self.name),
                            ),
                        };
                        tally.report.renamed.push(Renamed { kind: kind.into(), from, to });
                    }
                }
            }
        }
        tally.bytes_delta += self.size - held.map_or(0, |h| h.size);
        if self.kind == ItemKind::File {
            tally.report.file_bytes += self.size as u64;
            if held.is_none() {
                tally.files_delta += 1;
            }
        }
        Ok(Step::Land)
    }

    fn next_candidate(&mut self) -> Result<Step> {
        self.attempt += 1;
        self.name = match self.kind {
            ItemKind::File => {
                let path = TenantPath::parse(&self.original)
                    .map_err(|_| Error::internal(format!("a staged path does not parse: {:?}", self.original)))?;
                renamed_path(&path, self.attempt)?.as_str().to_owned()
            }
            ItemKind::Memory => renamed_memory_key(&self.original, self.attempt)?.as_str().to_owned(),
        };
        Ok(Step::LookAgain)
    }
}

/// A file read from a bundle, waiting to be published.
#[derive(Debug, Clone)]
pub struct StagedFile {
    /// Its position in the bundle: files are published in this order.
    pub n: u64,
    pub path: TenantPath,
    pub etag: String,
    pub content_type: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub content: Vec<u8>,
    /// Whether the content goes into the search index ([`crate::search::is_indexed_content`]).
    /// Its terms are not carried here: the store reads them from the content when it publishes
    /// the file ([`IndexDoc::of_file`]), the one time they are needed.
    pub indexed: bool,
}

/// A record read from a bundle, validated, waiting to be published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StagedRecord {
    Memory {
        namespace: String,
        key: String,
        /// Compact JSON.
        value: String,
        expires_at: Option<Timestamp>,
        created_at: Timestamp,
        updated_at: Timestamp,
        index: IndexDoc,
    },
    Webhook {
        /// A new id (webhook ids are unique across the server, and the source may still exist).
        id: WebhookId,
        url: String,
        events: Vec<String>,
        path_glob: Option<String>,
        enabled: bool,
        disabled_reason: Option<String>,
        /// The bundle's secret, or a new one when the bundle holds none.
        secret: String,
        created_at: Timestamp,
        created_by: String,
    },
}

/// The tenant settings a bundle carries, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportSettings {
    pub name: String,
    pub tier: String,
    pub quotas: QuotaOverrides,
    pub metadata: serde_json::Value,
    pub domains: Vec<String>,
}

impl ImportSettings {
    /// A tenant's own settings, to compare with a bundle's.
    pub fn of_tenant(t: &crate::model::Tenant) -> ImportSettings {
        ImportSettings {
            name: t.name.clone(),
            tier: t.tier.clone(),
            quotas: t.quotas.clone(),
            metadata: t.metadata.clone(),
            domains: t.domains.clone(),
        }
    }

    /// The settings that differ between `self` (before) and `after`, in a fixed order.
    pub fn changes_to(&self, after: &ImportSettings) -> Vec<SettingChange> {
        use serde_json::json;
        let pairs = [
            ("name", json!(self.name), json!(after.name)),
            ("tier", json!(self.tier), json!(after.tier)),
            ("quotas", self.quotas.to_value(), after.quotas.to_value()),
            ("metadata", self.metadata.clone(), after.metadata.clone()),
            ("domains", json!(self.domains), json!(after.domains)),
        ];
        pairs
            .into_iter()
            .filter(|(_, from, to)| from != to)
            .map(|(setting, from, to)| SettingChange { setting: setting.into(), from, to })
            .collect()
    }
}

/// How an import is published: decided by the service, applied by the store in one transaction.
#[derive(Debug, Clone)]
pub struct ImportPlan {
    pub on_conflict: ConflictPolicy,
    /// The bundle's settings; whether they apply is [`ImportPlan::applies_settings`].
    pub settings: Option<ImportSettings>,
    pub settings_choice: SettingsChoice,
    /// The bundle's domains the directory knows as another tenant's, already left out of
    /// `settings` (the store checks the rest again as it applies them).
    pub domains_taken: Vec<String>,
    pub max_storage_bytes: Option<u64>,
    pub max_files: Option<u64>,
    pub max_webhooks: usize,
    pub at: Timestamp,
}

/// What happened to the items of one kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportCounts {
    /// New in the tenant.
    pub created: u64,
    /// Replaced different content (`overwrite`).
    pub replaced: u64,
    /// Kept next to different content under a new name (`rename`).
    pub renamed: u64,
    /// Left out: the tenant holds different content (`skip`), or it changed while importing.
    pub skipped: u64,
    /// Already there with the same content.
    pub unchanged: u64,
}

/// One item `rename` put under a new name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Renamed {
    /// `file` or `memory`.
    pub kind: String,
    pub from: String,
    pub to: String,
}

/// What an import did (the answer of `POST /v1/tenants/{slug}/import`, and the detail of its
/// `tenant.imported` event).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportReport {
    pub tenant: String,
    pub on_conflict: String,
    pub files: ImportCounts,
    /// Bytes of the files created, replaced or renamed.
    pub file_bytes: u64,
    pub memory: ImportCounts,
    pub webhooks: ImportCounts,
    /// Key records in the bundle: never imported (a bundle holds no key secrets).
    pub keys_not_imported: u64,
    /// `applied` or `kept`.
    pub settings: String,
    /// Each setting the import changed, from what to what (none when kept).
    #[serde(default)]
    pub settings_changed: Vec<SettingChange>,
    /// Items put under a new name (the first 1,000).
    pub renamed: Vec<Renamed>,
    /// What the operator should know: keys to create again, domains held by another tenant, ...
    pub notes: Vec<String>,
}

/// Renamed items listed in a report at most.
pub const MAX_RENAMED_LISTED: usize = 1000;

impl ImportPlan {
    /// Whether the bundle's settings (if it has them) replace the tenant's: as `settings_choice`
    /// says; by default when the tenant held no files and no memory before the import, or with
    /// `overwrite`.
    pub fn applies_settings(&self, tenant_was_empty: bool) -> bool {
        self.settings.is_some()
            && match self.settings_choice {
                SettingsChoice::Keep => false,
                SettingsChoice::Replace => true,
                SettingsChoice::Auto => tenant_was_empty || self.on_conflict == ConflictPolicy::Overwrite,
            }
    }
}

impl ImportReport {
    /// The bundle's settings were applied, changing `changed`, but for `taken`: domains another
    /// tenant holds.
    pub fn settings_applied(&mut self, changed: Vec<SettingChange>, taken: &[String]) {
        self.settings = "applied".into();
        self.settings_changed = changed;
        if !taken.is_empty() {
            let mut taken = taken.to_vec();
            taken.sort();
            taken.dedup();
            self.notes.push(format!("domains registered to another tenant were not applied: {}", taken.join(", ")));
        }
    }

    /// The bundle had settings and the tenant's were kept.
    pub fn settings_kept(&mut self, choice: SettingsChoice) {
        self.settings = "kept".into();
        self.notes.push(match choice {
            SettingsChoice::Keep => "the tenant's settings were kept, as settings=keep asks".into(),
            _ => {
                "the tenant already held data, so its settings were kept (settings=replace applies the bundle's)".into()
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_decides_only_where_different_content_is_held() {
        use ConflictPolicy::*;
        for policy in [Skip, Overwrite, Rename] {
            assert_eq!(policy.resolve(None), Resolution::Create);
            assert_eq!(policy.resolve(Some(true)), Resolution::Unchanged);
        }
        assert_eq!(
            [Skip, Overwrite, Rename].map(|p| p.resolve(Some(false))),
            [Resolution::Skip, Resolution::Replace, Resolution::Rename]
        );
        assert_eq!(
            [None, Some(true), Some(false)].map(RenameProbe::of),
            [RenameProbe::Take, RenameProbe::AlreadyThere, RenameProbe::Next]
        );
    }

    fn p(s: &str) -> TenantPath {
        TenantPath::parse(s).unwrap()
    }

    fn held(same: Option<bool>, size: i64) -> Option<Held> {
        Some(Held { same, size })
    }

    #[test]
    fn a_landing_counts_what_it_decides_and_moves_usage_by_what_it_replaces() {
        use ConflictPolicy::*;
        let mut t = Tally::default();
        let mut new_file = Landing::file(Skip, "/new.txt", 25, true);
        assert_eq!(new_file.held(None, &mut t).unwrap(), Step::Land);
        assert_eq!(new_file.name(), "/new.txt");
        let mut replacing = Landing::file(Overwrite, "/old.txt", 25, true);
        assert_eq!(replacing.held(held(Some(false), 10), &mut t).unwrap(), Step::Land);
        assert_eq!(Landing::file(Overwrite, "/same", 5, true).held(held(Some(true), 5), &mut t).unwrap(), Step::Stay);
        assert_eq!(Landing::file(Skip, "/other", 5, true).held(held(Some(false), 9), &mut t).unwrap(), Step::Stay);
        assert_eq!(t.report.files, ImportCounts { created: 1, replaced: 1, renamed: 0, skipped: 1, unchanged: 1 });
        assert_eq!((t.bytes_delta, t.files_delta, t.report.file_bytes), (25 + 15, 1, 50));
    }

    #[test]
    fn a_rename_looks_at_each_candidate_until_one_is_free_or_already_holds_the_item() {
        let mut t = Tally::default();
        let mut landing = Landing::file(ConflictPolicy::Rename, "/docs/a.txt", 4, true);
        assert_eq!(landing.held(held(Some(false), 1), &mut t).unwrap(), Step::LookAgain);
        assert_eq!(landing.name(), "/docs/a.imported.txt");
        assert_eq!(landing.held(held(Some(false), 2), &mut t).unwrap(), Step::LookAgain);
        assert_eq!(landing.name(), "/docs/a.imported-2.txt");
        assert_eq!(landing.held(None, &mut t).unwrap(), Step::Land);
        assert_eq!(landing.name(), "/docs/a.imported-2.txt");
        assert_eq!(
            t.report.renamed,
            vec![Renamed { kind: "file".into(), from: "/docs/a.txt".into(), to: "/docs/a.imported-2.txt".into() }]
        );
        assert_eq!((t.report.files.renamed, t.bytes_delta, t.files_delta), (1, 4, 1));
        let mut again = Landing::file(ConflictPolicy::Rename, "/docs/a.txt", 4, true);
        assert_eq!(again.held(held(Some(false), 1), &mut t).unwrap(), Step::LookAgain);
        assert_eq!(again.held(held(Some(true), 4), &mut t).unwrap(), Step::Stay, "imported here before");
        assert_eq!(t.report.files.unchanged, 1);
        assert_eq!((t.bytes_delta, t.files_delta), (4, 1));
    }

    #[test]
    fn memory_landing_frees_an_expired_entry_and_names_renames_with_their_namespace() {
        let mut t = Tally::default();
        let mut over_expired = Landing::memory(ConflictPolicy::Skip, "ns", "k", 3);
        assert_eq!(over_expired.held(held(None, 7), &mut t).unwrap(), Step::Land);
        let mut renamed = Landing::memory(ConflictPolicy::Rename, "ns", "k", 5);
        assert_eq!(renamed.held(held(Some(false), 2), &mut t).unwrap(), Step::LookAgain);
        assert_eq!(renamed.name(), "k.imported");
        assert_eq!(renamed.held(None, &mut t).unwrap(), Step::Land);
        assert_eq!(t.report.memory, ImportCounts { created: 1, replaced: 0, renamed: 1, skipped: 0, unchanged: 0 });
        assert_eq!(t.report.renamed[0].from, "ns/k");
        assert_eq!(t.report.renamed[0].to, "ns/k.imported");
        assert_eq!((t.bytes_delta, t.files_delta, t.report.file_bytes), (3 - 7 + 5, 0, 0));
    }

    #[test]
    fn a_file_staged_without_bytes_stays_and_counts_by_what_is_there_now() {
        let mut t = Tally::default();
        for (now, policy) in [
            (held(Some(true), 3), ConflictPolicy::Overwrite),
            (held(Some(false), 3), ConflictPolicy::Overwrite),
            (None, ConflictPolicy::Rename),
        ] {
            assert_eq!(Landing::file(policy, "/f", 3, false).held(now, &mut t).unwrap(), Step::Stay);
        }
        assert_eq!((t.report.files.unchanged, t.report.files.skipped), (1, 2));
        assert_eq!((t.bytes_delta, t.files_delta, t.report.file_bytes), (0, 0, 0));
    }

    #[test]
    fn renames_keep_the_extension_and_count_up() {
        assert_eq!(renamed_path(&p("/docs/report.pdf"), 1).unwrap().as_str(), "/docs/report.imported.pdf");
        assert_eq!(renamed_path(&p("/docs/report.pdf"), 2).unwrap().as_str(), "/docs/report.imported-2.pdf");
        assert_eq!(renamed_path(&p("/a.tar.gz"), 1).unwrap().as_str(), "/a.tar.imported.gz");
        assert_eq!(renamed_path(&p("/Makefile"), 1).unwrap().as_str(), "/Makefile.imported");
        assert_eq!(renamed_path(&p("/x/.env"), 3).unwrap().as_str(), "/x/.env.imported-3");
        assert_eq!(renamed_path(&p("/v1.2/notes"), 1).unwrap().as_str(), "/v1.2/notes.imported");
        assert_eq!(renamed_memory_key("notes/today", 1).unwrap().as_str(), "notes/today.imported");
        assert_eq!(renamed_memory_key("k", 2).unwrap().as_str(), "k.imported-2");
    }

    #[test]
    fn a_rename_past_the_longest_path_is_refused_not_truncated() {
        let long = format!("/{}", "a".repeat(crate::path::MAX_PATH_BYTES - 1));
        let err = renamed_path(&p(&long), 1).unwrap_err();
        assert_eq!(err.code, crate::ErrorCode::InvalidRequest);
    }

    #[test]
    fn policies_parse_and_print() {
        for raw in ["skip", "overwrite", "rename"] {
            assert_eq!(ConflictPolicy::parse(raw).unwrap().as_str(), raw);
        }
        assert!(ConflictPolicy::parse("merge").is_err());
    }

    #[test]
    fn staged_records_survive_their_json_form() {
        let r = StagedRecord::Memory {
            namespace: "ns".into(),
            key: "k".into(),
            value: "{\"a\":1}".into(),
            expires_at: None,
            created_at: Timestamp::from_millis(5),
            updated_at: Timestamp::from_millis(6),
            index: IndexDoc::of_text("hello world"),
        };
        let back: StagedRecord = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }
}
