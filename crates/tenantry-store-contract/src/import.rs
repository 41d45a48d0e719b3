//! Imports: staged rows are invisible, a commit publishes them all in one transaction or none,
//! and the conflict policy decides only for paths whose content differs.

use crate::{assert_code, draft, now, path, Backend};
use tenantry_core::events::{EventDraft, Journal};
use tenantry_core::import::{
    ConflictPolicy, ImportPlan, ImportSettings, SettingChange, SettingsChoice, StagedFile, StagedRecord,
};
use tenantry_core::memory::{MemoryKey, Namespace};
use tenantry_core::model::Tenant;
use tenantry_core::search::IndexDoc;
use tenantry_core::slug::Slug;
use tenantry_core::store::{etag_of, StoredUsage, TenantScope};
use tenantry_core::tier::QuotaOverrides;
use tenantry_core::ErrorCode;

pub(crate) fn file(n: u64, p: &str, content: &str) -> StagedFile {
    StagedFile {
        n,
        path: path(p),
        etag: etag_of(content.as_bytes()),
        content_type: "text/plain".into(),
        created_at: now(),
        updated_at: now(),
        content: content.as_bytes().to_vec(),
        indexed: tenantry_core::search::is_indexed_content(content.as_bytes()),
    }
}

fn memory(namespace: &str, key: &str, value: serde_json::Value) -> StagedRecord {
    let value = value.to_string();
    StagedRecord::Memory {
        namespace: namespace.into(),
        key: key.into(),
        index: IndexDoc::of_text(&value),
        value,
        expires_at: None,
        created_at: now(),
        updated_at: now(),
    }
}

pub(crate) fn plan(on_conflict: ConflictPolicy, max_storage_bytes: Option<u64>) -> ImportPlan {
    ImportPlan {
        on_conflict,
        settings: None,
        settings_choice: SettingsChoice::Auto,
        domains_taken: vec![],
        max_storage_bytes,
        max_files: None,
        max_webhooks: 10,
        at: now(),
    }
}

pub(crate) fn journal() -> Journal {
    Journal::with_event(draft("tenant.import", "bundle"), EventDraft::new("tenant.imported", "contract".into()))
}

pub(crate) async fn stage(
    f: &crate::Fixture,
    scope: &TenantScope,
    import: &str,
    policy: ConflictPolicy,
    files: Vec<StagedFile>,
) {
    f.store.begin_import(scope, import, now()).await.unwrap();
    f.store.stage_files(scope, import, policy, files).await.unwrap();
}

pub async fn an_import_publishes_everything_staged_at_once(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    stage(&f, &a, "imp1", ConflictPolicy::Skip, vec![file(0, "/a.txt", "alpha"), file(1, "/dir/b.txt", "bravo!")])
        .await;
    f.store.stage_records(&a, "imp1", vec![(0, memory("ns", "k", serde_json::json!("v")))]).await.unwrap();
    assert!(f.store.stat_file(&a, &path("/a.txt")).await.unwrap().is_none(), "staged files are invisible");
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage::default());
    let report = f.store.commit_import(&a, "imp1", plan(ConflictPolicy::Skip, None), journal()).await.unwrap();
    assert_eq!((report.files.created, report.memory.created, report.file_bytes), (2, 1, 11));
    let (meta, bytes) = f.store.read_file(&a, &path("/dir/b.txt"), None).await.unwrap().unwrap();
    assert_eq!((meta.etag, bytes), (etag_of(b"bravo!"), b"bravo!".to_vec()));
    let ns = Namespace::parse("ns").unwrap();
    let v = f.store.get_memory(&a, &ns, &MemoryKey::parse("k").unwrap(), now()).await.unwrap().unwrap();
    assert_eq!(v.value, Some(serde_json::json!("v")));
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage { storage_bytes: 14, files: 2 });
    let last = f.event_log(&a).await.pop().unwrap();
    assert_eq!(last.kind, "tenant.imported");
}

pub async fn an_import_over_the_storage_limit_changes_nothing(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    f.put(&a, "/kept.txt", "12345").await;
    let (audit, events) = (f.audit_log(&a).await.len(), f.event_log(&a).await.len());
    stage(&f, &a, "imp2", ConflictPolicy::Overwrite, vec![file(0, "/kept.txt", "1"), file(1, "/new.txt", "123456789")])
        .await;
    let r = f.store.commit_import(&a, "imp2", plan(ConflictPolicy::Overwrite, Some(9)), journal()).await;
    assert_code(r, ErrorCode::QuotaExceeded);
    let (_, bytes) = f.store.read_file(&a, &path("/kept.txt"), None).await.unwrap().unwrap();
    assert_eq!(bytes, b"12345", "not even the replacement that shrinks it");
    assert!(f.store.stat_file(&a, &path("/new.txt")).await.unwrap().is_none());
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage { storage_bytes: 5, files: 1 });
    assert_eq!((f.audit_log(&a).await.len(), f.event_log(&a).await.len()), (audit, events));
    // The staged rows are gone: the import cannot be committed again.
    assert!(f.store.commit_import(&a, "imp2", plan(ConflictPolicy::Overwrite, None), journal()).await.is_err());
}

pub async fn an_aborted_import_leaves_nothing(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    stage(&f, &a, "imp3", ConflictPolicy::Skip, vec![file(0, "/x.txt", "staged only")]).await;
    f.store.abort_import(&a, "imp3").await.unwrap();
    assert!(f.store.commit_import(&a, "imp3", plan(ConflictPolicy::Skip, None), journal()).await.is_err());
    assert!(f.store.stat_file(&a, &path("/x.txt")).await.unwrap().is_none());
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage::default());
}

pub async fn the_conflict_policy_decides_only_where_content_differs(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    f.put(&a, "/same.txt", "same").await;
    f.put(&a, "/differs.txt", "mine").await;
    let staged = || vec![file(0, "/same.txt", "same"), file(1, "/differs.txt", "theirs")];
    stage(&f, &a, "skip", ConflictPolicy::Skip, staged()).await;
    let skip = f.store.commit_import(&a, "skip", plan(ConflictPolicy::Skip, None), journal()).await.unwrap();
    assert_eq!((skip.files.unchanged, skip.files.skipped, skip.files.replaced), (1, 1, 0));
    assert_eq!(f.store.read_file(&a, &path("/differs.txt"), None).await.unwrap().unwrap().1, b"mine");
    stage(&f, &a, "over", ConflictPolicy::Overwrite, staged()).await;
    let over = f.store.commit_import(&a, "over", plan(ConflictPolicy::Overwrite, None), journal()).await.unwrap();
    assert_eq!((over.files.unchanged, over.files.replaced), (1, 1));
    assert_eq!(f.store.read_file(&a, &path("/differs.txt"), None).await.unwrap().unwrap().1, b"theirs");
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage { storage_bytes: 10, files: 2 });
}

pub async fn an_import_applies_the_bundles_settings_as_asked_and_reports_each_change(b: &dyn Backend) {
    let f = b.open().await;
    let mut globex = Tenant::new(Slug::parse("globex").unwrap(), "Globex", "free", now());
    globex.domains = vec!["taken.example".into()];
    let gs = TenantScope::for_store_contract(&globex);
    f.store.insert_tenant(&gs, &globex, None, draft("tenant.create", "globex")).await.unwrap();
    let (t, a) = f.tenant("acme").await;
    let settings = |name: &str| ImportSettings {
        name: name.into(),
        tier: "pro".into(),
        quotas: QuotaOverrides::default(),
        metadata: serde_json::json!({"from": name}),
        domains: vec!["acme.example".into(), "taken.example".into()],
    };
    let import = |id: &'static str, policy: ConflictPolicy, choice: SettingsChoice, name: &'static str| {
        let (f, a) = (&f, a.clone());
        async move {
            stage(f, &a, id, policy, vec![file(0, "/a.txt", name)]).await;
            let mut p = plan(policy, None);
            p.settings = Some(settings(name));
            p.settings_choice = choice;
            f.store.commit_import(&a, id, p, journal()).await.unwrap()
        }
    };
    let record = |id| {
        let store = f.store.clone();
        async move {
            let (tenants, _) = store.load_directory().await.unwrap();
            let t = tenants.into_iter().find(|t| t.id == id).unwrap();
            (t.name, t.tier, t.metadata, t.domains)
        }
    };
    let change = |setting: &str, from: serde_json::Value, to: serde_json::Value| SettingChange {
        setting: setting.into(),
        from,
        to,
    };
    use serde_json::json;
    // An empty tenant takes them, but for the domain another tenant holds; each change is told.
    let first = import("i1", ConflictPolicy::Skip, SettingsChoice::Auto, "First").await;
    assert_eq!(first.settings, "applied");
    assert!(first.notes.iter().any(|n| n.contains("taken.example")), "{:?}", first.notes);
    assert_eq!(
        first.settings_changed,
        [
            change("name", json!("acme"), json!("First")),
            change("tier", json!("free"), json!("pro")),
            change("metadata", json!({}), json!({"from": "First"})),
            change("domains", json!([]), json!(["acme.example"])),
        ]
    );
    let applied = ("First".to_owned(), "pro".to_owned(), json!({"from": "First"}), vec!["acme.example".to_owned()]);
    assert_eq!(record(t.id.clone()).await, applied);
    assert_eq!(record(globex.id.clone()).await.3, ["taken.example"]);
    // A tenant holding data keeps its own...
    let second = import("i2", ConflictPolicy::Skip, SettingsChoice::Auto, "Second").await;
    assert_eq!((second.settings.as_str(), second.settings_changed.len()), ("kept", 0));
    assert_eq!(record(t.id.clone()).await, applied);
    // ...and always with settings=keep, even when the import overwrites...
    let kept = import("i3", ConflictPolicy::Overwrite, SettingsChoice::Keep, "Third").await;
    assert_eq!((kept.settings.as_str(), kept.settings_changed.len()), ("kept", 0));
    assert!(kept.notes.iter().any(|n| n.contains("settings=keep")), "{:?}", kept.notes);
    assert_eq!(record(t.id.clone()).await, applied);
    // ...but takes the bundle's when the import overwrites, or with settings=replace.
    let fourth = import("i4", ConflictPolicy::Overwrite, SettingsChoice::Auto, "Fourth").await;
    assert_eq!(fourth.settings, "applied");
    assert_eq!(
        fourth.settings_changed,
        [
            change("name", json!("First"), json!("Fourth")),
            change("metadata", json!({"from": "First"}), json!({"from": "Fourth"}))
        ]
    );
    let fifth = import("i5", ConflictPolicy::Skip, SettingsChoice::Replace, "Fifth").await;
    assert_eq!((fifth.settings.as_str(), fifth.settings_changed[0].to.clone()), ("applied", json!("Fifth")));
    assert_eq!(record(t.id.clone()).await.0, "Fifth");
    let (_, bytes) = f.store.read_file(&a, &path("/a.txt"), None).await.unwrap().unwrap();
    assert_eq!(bytes, b"Fourth", "skip kept the file the overwrite wrote");
}
