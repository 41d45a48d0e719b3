//! Files: bytes and metadata, versions, preconditions, listings, usage counters.

use crate::{assert_code, file_journal, now, path, write, Backend};
use tenantry_core::path::PathPrefix;
use tenantry_core::store::{etag_of, ByteRange, FileListing, ListedEntry, Precondition, StoredUsage, WriteOutcome};
use tenantry_core::time::Timestamp;
use tenantry_core::ErrorCode;

pub async fn a_put_file_reads_back_byte_for_byte_with_its_metadata(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let mut w = write("/docs/a.txt", b"hello world");
    w.content_type = "text/markdown".into();
    w.at = Timestamp::from_millis(1_700_000_000_000);
    let (meta, outcome) = f.put_with(&a, w).await.unwrap();
    assert_eq!(outcome, WriteOutcome::Created);
    assert_eq!((meta.size, meta.version, meta.etag.as_str()), (11, 1, etag_of(b"hello world").as_str()));
    assert_eq!((meta.created_at, meta.updated_at), (Timestamp::from_millis(1_700_000_000_000), meta.created_at));
    let (read, bytes) = f.store.read_file(&a, &path("/docs/a.txt"), None).await.unwrap().unwrap();
    assert_eq!((read, bytes), (meta.clone(), b"hello world".to_vec()));
    assert_eq!(f.store.stat_file(&a, &path("/docs/a.txt")).await.unwrap(), Some(meta.clone()));
    let (cold, bytes) = f.store.read_file_cold(&a, &path("/docs/a.txt")).await.unwrap().unwrap();
    assert_eq!((cold, bytes), (meta.clone(), b"hello world".to_vec()));
    assert_eq!(meta.content_type, "text/markdown");
    assert!(f.store.stat_file(&a, &path("/docs/b.txt")).await.unwrap().is_none());
}

pub async fn replacing_a_file_bumps_its_version_and_keeps_its_creation_time(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let mut first = write("/a", b"one");
    first.at = Timestamp::from_millis(1_000);
    let (m1, _) = f.put_with(&a, first).await.unwrap();
    let mut second = write("/a", b"second");
    second.at = Timestamp::from_millis(2_000);
    let (m2, outcome) = f.put_with(&a, second).await.unwrap();
    assert_eq!(outcome, WriteOutcome::Replaced);
    assert_eq!((m2.version, m2.size, m2.etag.clone()), (2, 6, etag_of(b"second")));
    assert_eq!((m2.created_at, m2.updated_at), (m1.created_at, Timestamp::from_millis(2_000)));
    let (_, bytes) = f.store.read_file(&a, &path("/a"), None).await.unwrap().unwrap();
    assert_eq!(bytes, b"second");
}

pub async fn a_read_racing_replacements_gets_one_whole_version(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    // Versions of different sizes and bytes, several chunks long where a backend chunks bodies.
    let versions: Vec<Vec<u8>> = (0..8u8).map(|v| vec![v; 300_000 + v as usize * 70_000]).collect();
    f.store.put_file(&a, write("/hot", &versions[0]), file_journal("/hot")).await.unwrap();
    let store = f.store.clone();
    let (scope, all) = (a.clone(), versions.clone());
    let writer = tokio::spawn(async move {
        for i in 1..40 {
            let v = &all[i % all.len()];
            store.put_file(&scope, write("/hot", v), file_journal("/hot")).await.unwrap();
        }
    });
    let mut reads = 0;
    while !writer.is_finished() || reads < 20 {
        let (meta, bytes) = f.store.read_file(&a, &path("/hot"), None).await.unwrap().expect("always there");
        assert!(versions.contains(&bytes), "read {reads}: {} bytes that are no version", bytes.len());
        assert_eq!(meta.size as usize, bytes.len(), "read {reads}: metadata of another version");
        reads += 1;
    }
    writer.await.unwrap();
}

pub async fn a_large_file_reads_back_whole_and_by_range(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    // 3 MiB of bytes that are not text (so not indexed), every offset distinct mod 251.
    let content: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut w = write("/big.bin", &content);
    w.index = None;
    f.put_with(&a, w).await.unwrap();
    let (meta, whole) = f.store.read_file(&a, &path("/big.bin"), None).await.unwrap().unwrap();
    assert_eq!((meta.size, meta.etag), (3 << 20, etag_of(&content)));
    assert!(whole == content, "the whole file differs");
    let range = ByteRange { start: (1 << 20) + 7, end: (2 << 20) + 3 };
    let (_, part) = f.store.read_file(&a, &path("/big.bin"), Some(range)).await.unwrap().unwrap();
    assert!(part == content[range.start as usize..range.end as usize], "the range differs");
    let (_, cold) = f.store.read_file_cold(&a, &path("/big.bin")).await.unwrap().unwrap();
    assert!(cold == content);
}

pub async fn if_none_match_any_refuses_an_existing_file_and_changes_nothing(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let mut w = write("/a", b"first");
    w.precondition = Precondition::IfNoneMatchAny;
    let (m1, _) = f.put_with(&a, w).await.unwrap();
    let mut again = write("/a", b"other");
    again.precondition = Precondition::IfNoneMatchAny;
    assert_code(f.put_with(&a, again).await, ErrorCode::PreconditionFailed);
    let (m, bytes) = f.store.read_file(&a, &path("/a"), None).await.unwrap().unwrap();
    assert_eq!((m, bytes), (m1, b"first".to_vec()));
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage { storage_bytes: 5, files: 1 });
}

pub async fn if_match_takes_only_the_current_etag(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let (m1, _) = f.put(&a, "/a", "v1").await;
    f.put(&a, "/a", "v2").await;
    let mut stale = write("/a", b"v3");
    stale.precondition = Precondition::IfMatch(vec![m1.etag.clone()]);
    assert_code(f.put_with(&a, stale).await, ErrorCode::PreconditionFailed);
    let mut missing = write("/nothing", b"x");
    missing.precondition = Precondition::IfMatch(vec!["*".into()]);
    assert_code(f.put_with(&a, missing).await, ErrorCode::PreconditionFailed);
    assert!(f.store.stat_file(&a, &path("/nothing")).await.unwrap().is_none());
    let mut current = write("/a", b"v3");
    current.precondition = Precondition::IfMatch(vec![m1.etag.clone(), etag_of(b"v2")]);
    let (m3, _) = f.put_with(&a, current).await.unwrap();
    assert_eq!((m3.version, m3.etag), (3, etag_of(b"v3")));
}

pub async fn deleting_a_missing_file_is_not_found(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let r = f.store.delete_file(&a, &path("/never"), Precondition::None, now(), file_journal("/never")).await;
    assert_code(r, ErrorCode::NotFound);
    f.put(&a, "/once", "x").await;
    f.store.delete_file(&a, &path("/once"), Precondition::None, now(), file_journal("/once")).await.unwrap();
    let again = f.store.delete_file(&a, &path("/once"), Precondition::None, now(), file_journal("/once")).await;
    assert_code(again, ErrorCode::NotFound);
    assert!(f.store.read_file(&a, &path("/once"), None).await.unwrap().is_none());
}

pub async fn a_delete_with_a_stale_etag_is_refused_and_changes_nothing(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let (m1, _) = f.put(&a, "/a", "v1").await;
    let (m2, _) = f.put(&a, "/a", "v2").await;
    let stale = Precondition::IfMatch(vec![m1.etag]);
    assert_code(
        f.store.delete_file(&a, &path("/a"), stale, now(), file_journal("/a")).await,
        ErrorCode::PreconditionFailed,
    );
    assert_eq!(f.store.stat_file(&a, &path("/a")).await.unwrap(), Some(m2.clone()));
    f.store
        .delete_file(&a, &path("/a"), Precondition::IfMatch(vec![m2.etag]), now(), file_journal("/a"))
        .await
        .unwrap();
    assert_eq!(f.store.usage(&a).await.unwrap(), StoredUsage::default());
}

fn listing(within: &str, recursive: bool, after: Option<&str>, limit: usize) -> FileListing {
    FileListing {
        within: PathPrefix::parse(within).unwrap(),
        recursive,
        include_within: false,
        after: after.map(str::to_owned),
        limit,
    }
}

fn paths(files: &[tenantry_core::model::FileMeta]) -> Vec<&str> {
    files.iter().map(|m| m.path.as_str()).collect()
}

pub async fn listings_are_in_path_order_direct_or_recursive_and_resume_after_a_cursor(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    for p in ["/d/b", "/d/a", "/d/sub/x", "/d/sub/y", "/d-other", "/d0", "/e", "/d/c"] {
        f.put(&a, p, "x").await;
    }
    let direct = f.store.list_files(&a, listing("/d", false, None, 100)).await.unwrap();
    assert_eq!(paths(&direct), ["/d/a", "/d/b", "/d/c"]);
    let all = f.store.list_files(&a, listing("/d", true, None, 100)).await.unwrap();
    assert_eq!(paths(&all), ["/d/a", "/d/b", "/d/c", "/d/sub/x", "/d/sub/y"]);
    let page = f.store.list_files(&a, listing("/d", true, Some("/d/c"), 2)).await.unwrap();
    assert_eq!(paths(&page), ["/d/sub/x", "/d/sub/y"]);
    let root = f.store.list_files(&a, listing("/", false, None, 100)).await.unwrap();
    assert_eq!(paths(&root), ["/d-other", "/d0", "/e"]);
    let everything = f.store.list_files(&a, listing("/", true, None, 3)).await.unwrap();
    assert_eq!(paths(&everything), ["/d-other", "/d/a", "/d/b"]);
}

pub async fn a_listing_includes_the_file_at_its_own_prefix_only_when_asked(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    f.put(&a, "/p", "the file at the prefix").await;
    f.put(&a, "/p/q", "under it").await;
    let mut l = listing("/p", true, None, 10);
    assert_eq!(paths(&f.store.list_files(&a, l.clone()).await.unwrap()), ["/p/q"]);
    l.include_within = true;
    assert_eq!(paths(&f.store.list_files(&a, l).await.unwrap()), ["/p", "/p/q"]);
}

fn entries(found: &[ListedEntry]) -> Vec<String> {
    found
        .iter()
        .map(|e| match e {
            ListedEntry::File(f) => format!("file {}", f.path.as_str()),
            ListedEntry::Folder { path } => format!("folder {path}"),
        })
        .collect()
}

pub async fn a_folder_lists_its_files_and_each_folder_under_it_once_in_path_order(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    for p in ["/d/b", "/d/a", "/d/sub/x", "/d/sub/deeper/y", "/d/sub.txt", "/d/sub0", "/d/t/z", "/e/f", "/top"] {
        f.put(&a, p, "x").await;
    }
    let folder = |within: &str, after: Option<&str>, limit: usize| {
        let listing = listing(within, false, after, limit);
        async { entries(&f.store.list_folder(&a, listing).await.unwrap()) }
    };
    let whole = ["file /d/a", "file /d/b", "file /d/sub.txt", "folder /d/sub/", "file /d/sub0", "folder /d/t/"];
    assert_eq!(folder("/d", None, 100).await, whole);
    assert_eq!(folder("/", None, 100).await, ["folder /d/", "folder /e/", "file /top"]);
    assert_eq!(folder("/d/sub", None, 100).await, ["folder /d/sub/deeper/", "file /d/sub/x"]);
    assert_eq!(folder("/nothing", None, 100).await, Vec::<String>::new());
    // Pages of two, each resuming after the last entry of the one before, a folder included.
    assert_eq!(folder("/d", None, 2).await, whole[..2]);
    assert_eq!(folder("/d", Some("/d/b"), 2).await, whole[2..4]);
    assert_eq!(folder("/d", Some("/d/sub/"), 2).await, whole[4..6]);
    assert_eq!(folder("/d", Some("/d/t/"), 2).await, Vec::<String>::new());
    // A cursor below a folder (a recursive listing's, say) resumes past the whole folder.
    assert_eq!(folder("/d", Some("/d/sub/deeper/y"), 2).await, whole[4..6]);
    assert_eq!(folder("/d", Some("/d/sub/deeper/"), 2).await, whole[4..6]);
    assert_eq!(folder("/", Some("/d/"), 5).await, ["folder /e/", "file /top"]);
    // A folder whose last file is gone is gone too.
    f.store
        .delete_file(&a, &path("/e/f"), Precondition::None, Timestamp::from_millis(1), file_journal("/e/f"))
        .await
        .unwrap();
    assert_eq!(folder("/", None, 100).await, ["folder /d/", "file /top"]);

    // Many files before a folder of many files and some after it (a backend reading several
    // files per seek must skip the folder's and still list each file once), whole and in pages
    // of seven.
    let mut many = Vec::new();
    for i in 0..40 {
        f.put(&a, &format!("/big/a{i:02}"), "x").await;
        f.put(&a, &format!("/big/m/x{i:02}"), "x").await;
        many.push(format!("file /big/a{i:02}"));
    }
    many.push("folder /big/m/".into());
    for i in 0..10 {
        f.put(&a, &format!("/big/z{i:02}"), "x").await;
        many.push(format!("file /big/z{i:02}"));
    }
    assert_eq!(folder("/big", None, 100).await, many);
    assert_eq!(folder("/big", None, 45).await, many[..45]);
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    for round in 0.. {
        assert!(round <= many.len(), "the pages never end");
        let page = {
            let listing = listing("/big", false, after.as_deref(), 7);
            f.store.list_folder(&a, listing).await.unwrap()
        };
        if page.is_empty() {
            break;
        }
        after = page.last().map(|e| e.path().to_owned());
        paged.extend(entries(&page));
    }
    assert_eq!(paged, many);
}

pub async fn usage_follows_every_put_replace_and_delete_exactly(b: &dyn Backend) {
    let f = b.open().await;
    let (_, a) = f.tenant("acme").await;
    let usage = || async { f.store.usage(&a).await.unwrap() };
    assert_eq!(usage().await, StoredUsage::default());
    f.put(&a, "/a", "12345").await;
    f.put(&a, "/b", "123").await;
    assert_eq!(usage().await, StoredUsage { storage_bytes: 8, files: 2 });
    f.put(&a, "/a", "1").await;
    assert_eq!(usage().await, StoredUsage { storage_bytes: 4, files: 2 });
    f.store.delete_file(&a, &path("/b"), Precondition::None, now(), file_journal("/b")).await.unwrap();
    assert_eq!(usage().await, StoredUsage { storage_bytes: 1, files: 1 });
    f.put(&a, "/empty", "").await;
    assert_eq!(usage().await, StoredUsage { storage_bytes: 1, files: 2 });
}
