//! Large file bodies (over 1 MiB) live in files of their own under `DATA/blobs/<tenant id>/`:
//! served whole and in ranges, one body per file whatever is replaced or deleted, none left by a
//! refused write, swept at start when no row names them, erased by purge, untouched by a move,
//! and carried by export and import.
use crate::helpers::*;
use crate::import::{export, import_ok};
use rand::{Rng, SeedableRng};
use reqwest::Method;
use serde_json::json;
use std::path::PathBuf;

const MIB: usize = 1 << 20;

fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.gen()).collect()
}

fn blob_dir(app: &TestApp, tenant_id: &str) -> PathBuf {
    app.data.join("blobs").join(tenant_id)
}

/// The sizes of the tenant's body files, sorted.
fn bodies(app: &TestApp, tenant_id: &str) -> Vec<u64> {
    let mut sizes: Vec<u64> = match std::fs::read_dir(blob_dir(app, tenant_id)) {
        Ok(entries) => entries.map(|e| e.unwrap().metadata().unwrap().len()).collect(),
        Err(_) => Vec::new(),
    };
    sizes.sort_unstable();
    sizes
}

/// Every byte of the shared database and its WAL.
fn database_bytes(app: &TestApp) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(&app.data).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name().unwrap().to_string_lossy().starts_with("tenantry.db") {
            all.extend(std::fs::read(&p).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_body_over_1_mib_is_kept_once_in_a_file_of_its_own_and_served_whole_and_in_ranges() {
    if sqlite_only("large bodies as files of the embedded store") {
        return;
    }
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let c = app.as_key(&t.owner);
    // Exactly 1 MiB stays in the database; one byte more goes to a file.
    let at_limit = random_bytes(1, MIB);
    c.put_file("/limit.bin", at_limit.clone(), None).await.unwrap();
    assert_eq!(bodies(&app, &t.id), Vec::<u64>::new());
    let big = random_bytes(2, 3 * MIB + 17);
    let meta = c.put_file("/big.bin", big.clone(), Some("application/x-big")).await.unwrap();
    assert_eq!(meta["size"], 3 * MIB as u64 + 17);
    assert_eq!(bodies(&app, &t.id), vec![3 * MIB as u64 + 17]);
    assert!(!contains(&database_bytes(&app), &big[MIB..MIB + 64]), "the body is not in the database too");

    assert_eq!(&c.get_file("/big.bin").await.unwrap()[..], &big[..]);
    assert_eq!(&c.get_file("/limit.bin").await.unwrap()[..], &at_limit[..]);
    let k = Some(t.owner.as_str());
    let res = app.raw(k, Method::GET, "/v1/files/big.bin", None, &[("range", "bytes=2097150-2097159")]).await;
    assert_eq!(res.status, 206);
    assert_eq!(&res.body[..], &big[2_097_150..2_097_160]);
    let last = format!("bytes {}-{}/{}", big.len() - 5, big.len() - 1, big.len());
    let res = app.raw(k, Method::GET, "/v1/files/big.bin", None, &[("range", "bytes=-5")]).await;
    assert_eq!((res.status.as_u16(), res.header("content-range")), (206, Some(last.as_str())));
    assert_eq!(&res.body[..], &big[big.len() - 5..]);
    let res = app.raw(k, Method::HEAD, "/v1/files/big.bin", None, &[]).await;
    assert_eq!(res.header("content-length"), Some((3 * MIB + 17).to_string().as_str()));
    assert_eq!(res.header("content-type"), Some("application/x-big"));

    // Replaced by another large body: still one file, holding the new bytes.
    let bigger = random_bytes(3, 2 * MIB);
    c.put_file("/big.bin", bigger.clone(), None).await.unwrap();
    assert_eq!(bodies(&app, &t.id), vec![2 * MIB as u64]);
    assert_eq!(&c.get_file("/big.bin").await.unwrap()[..], &bigger[..]);
    // Replaced by a small body: the file goes.
    c.put_file("/big.bin", b"small now".to_vec(), None).await.unwrap();
    assert_eq!(bodies(&app, &t.id), Vec::<u64>::new());
    assert_eq!(&c.get_file("/big.bin").await.unwrap()[..], b"small now");
    // A small file grown large, then deleted.
    c.put_file("/limit.bin", big.clone(), None).await.unwrap();
    assert_eq!(bodies(&app, &t.id), vec![big.len() as u64]);
    c.delete_file("/limit.bin").await.unwrap();
    assert_eq!(bodies(&app, &t.id), Vec::<u64>::new());
    assert_eq!(c.get_file("/limit.bin").await.unwrap_err().code(), Some("not_found"));
    let usage = c.json(Method::GET, "/v1/usage", None).await.unwrap();
    assert_eq!(usage["usage"]["storage_bytes"], 9, "{usage}");
    assert_eq!(usage["usage"]["files"], 1, "{usage}");
}

#[tokio::test]
async fn a_refused_large_write_changes_nothing_and_leaves_no_body_behind() {
    if sqlite_only("large bodies as files of the embedded store") {
        return;
    }
    let app = spawn_app().await;
    let t = app
        .create_tenant_with(
            json!({"slug": "small", "quotas": {"max_storage_bytes": 5 * MIB, "max_requests_per_minute": null}}),
        )
        .await;
    let c = app.as_key(&t.owner);
    let first = random_bytes(4, 2 * MIB);
    c.put_file("/a.bin", first.clone(), None).await.unwrap();
    // Over the storage quota.
    let err = c.put_file("/b.bin", random_bytes(5, 4 * MIB), None).await.unwrap_err();
    assert_eq!((err.status(), err.code()), (Some(403), Some("quota_exceeded")));
    // A failed precondition.
    let res = app
        .raw(
            Some(&t.owner),
            Method::PUT,
            "/v1/files/a.bin",
            Some(&random_bytes(6, 2 * MIB)),
            &[("if-match", "\"not-the-etag\"")],
        )
        .await;
    assert_error(&res, 412, "precondition_failed");
    assert_eq!(bodies(&app, &t.id), vec![2 * MIB as u64]);
    assert_eq!(&c.get_file("/a.bin").await.unwrap()[..], &first[..]);
    assert_eq!(c.get_file("/b.bin").await.unwrap_err().code(), Some("not_found"));
}

#[tokio::test]
async fn bodies_no_row_names_are_swept_at_start_and_named_ones_survive_it() {
    if sqlite_only("large bodies as files of the embedded store") {
        return;
    }
    let mut app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let big = random_bytes(7, MIB + 1);
    app.as_key(&t.owner).put_file("/keep.bin", big.clone(), None).await.unwrap();
    // What a crash can leave: a body written for a write that never committed, and the bodies of
    // a tenant whose purge was cut short.
    std::fs::write(blob_dir(&app, &t.id).join("0123456789abcdef0123456789abcdef"), b"stray").unwrap();
    let gone = app.data.join("blobs").join("tnt_0000000000000000");
    std::fs::create_dir_all(&gone).unwrap();
    std::fs::write(gone.join("fedcba9876543210fedcba9876543210"), b"of no tenant").unwrap();
    app.restart().await;
    assert_eq!(bodies(&app, &t.id), vec![MIB as u64 + 1]);
    assert!(!gone.exists());
    assert_eq!(&app.as_key(&t.owner).get_file("/keep.bin").await.unwrap()[..], &big[..]);
}

#[tokio::test]
async fn readers_of_a_large_file_being_replaced_get_one_whole_version_every_time() {
    if sqlite_only("large bodies as files of the embedded store") {
        return;
    }
    let app = spawn_app().await;
    let t = app.create_tenant("acme").await;
    let versions: Vec<Vec<u8>> = (0..4).map(|i| random_bytes(10 + i, MIB + 1000 * i as usize)).collect();
    let c = app.as_key(&t.owner);
    c.put_file("/hot.bin", versions[0].clone(), None).await.unwrap();
    let writer = {
        let (c, versions) = (c.clone(), versions.clone());
        tokio::spawn(async move {
            for round in 1..40 {
                c.put_file("/hot.bin", versions[round % 4].clone(), None).await.unwrap();
            }
        })
    };
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (c, versions) = (c.clone(), versions.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0;
            for _ in 0..25 {
                let got = c.get_file("/hot.bin").await.unwrap();
                assert!(versions.iter().any(|v| v[..] == got[..]), "a read returned a mix of versions");
                reads += 1;
            }
            reads
        }));
    }
    writer.await.unwrap();
    for r in readers {
        assert_eq!(r.await.unwrap(), 25);
    }
    assert_eq!(bodies(&app, &t.id), vec![versions[39 % 4].len() as u64]);
}

#[tokio::test]
async fn purge_erases_a_tenants_large_bodies_and_keeps_the_others() {
    if sqlite_only("large bodies as files of the embedded store") {
        return;
    }
    let app = spawn_app().await;
    let a = app.create_tenant("acme").await;
    let g = app.create_tenant("globex").await;
    let secret = random_bytes(20, 2 * MIB);
    let kept = random_bytes(21, 2 * MIB);
    app.as_key(&a.owner).put_file("/secret.bin", secret.clone(), None).await.unwrap();
    app.as_key(&g.owner).put_file("/kept.bin", kept.clone(), None).await.unwrap();
    app.operator().archive_tenant("acme").await.unwrap();
    app.operator().purge_tenant("acme").await.unwrap();
    assert!(!blob_dir(&app, &a.id).exists());
    assert_eq!(bodies(&app, &g.id), vec![2 * MIB as u64]);
    assert_eq!(&app.as_key(&g.owner).get_file("/kept.bin").await.unwrap()[..], &kept[..]);
}

#[tokio::test]
async fn a_move_there_and_back_keeps_large_bodies_where_they_are() {
    if sqlite_only("large bodies as files of the embedded store") {
        return;
    }
    let app = spawn_app().await;
    let t = app.create_tenant_with(json!({"slug": "grad", "tier": "enterprise"})).await;
    let c = app.as_key(&t.owner);
    let big = random_bytes(30, 3 * MIB);
    c.put_file("/big.bin", big.clone(), None).await.unwrap();
    c.put_file("/small.txt", b"small".to_vec(), None).await.unwrap();
    let before: Vec<u64> = bodies(&app, &t.id);
    for to in ["dedicated", "shared"] {
        let report = app.operator().move_tenant("grad", to).await.unwrap();
        assert_eq!(report["verified"], true, "{report}");
        assert_eq!(bodies(&app, &t.id), before, "moving to {to}");
        assert_eq!(&c.get_file("/big.bin").await.unwrap()[..], &big[..]);
        // Written while in the new place, then replaced: one body each.
        let more = random_bytes(31, 2 * MIB);
        c.put_file("/more.bin", more.clone(), None).await.unwrap();
        assert_eq!(&c.get_file("/more.bin").await.unwrap()[..], &more[..]);
        c.delete_file("/more.bin").await.unwrap();
        assert_eq!(bodies(&app, &t.id), before);
    }
    assert_eq!(&c.get_file("/small.txt").await.unwrap()[..], b"small");
}

#[tokio::test]
async fn export_and_import_carry_large_bodies_and_a_second_import_writes_none() {
    if sqlite_only("large bodies as files of the embedded store") {
        return;
    }
    let app = spawn_app().await;
    let src = app.create_tenant("src").await;
    let dst = app.create_tenant("dst").await;
    let big = random_bytes(40, 2 * MIB + 5);
    let other = random_bytes(41, MIB + 7);
    let c = app.as_key(&src.owner);
    c.put_file("/a/big.bin", big.clone(), None).await.unwrap();
    c.put_file("/a/other.bin", other.clone(), None).await.unwrap();
    c.put_file("/a/small.txt", b"small".to_vec(), None).await.unwrap();
    let bundle = export(&app, "src").await;
    let report = import_ok(&app, "dst", &bundle, "").await;
    assert_eq!(report["files"]["created"], 3, "{report}");
    let d = app.as_key(&dst.owner);
    assert_eq!(&d.get_file("/a/big.bin").await.unwrap()[..], &big[..]);
    assert_eq!(&d.get_file("/a/other.bin").await.unwrap()[..], &other[..]);
    assert_eq!(bodies(&app, &dst.id), vec![MIB as u64 + 7, 2 * MIB as u64 + 5]);
    // The same bundle again: every file unchanged, no body written or left behind.
    let report = import_ok(&app, "dst", &bundle, "skip").await;
    assert_eq!(report["files"]["unchanged"], 3, "{report}");
    assert_eq!(bodies(&app, &dst.id), vec![MIB as u64 + 7, 2 * MIB as u64 + 5]);
    // Overwrite with other content: the replaced bodies go.
    let newer = random_bytes(42, 3 * MIB);
    c.put_file("/a/big.bin", newer.clone(), None).await.unwrap();
    let report = import_ok(&app, "dst", &export(&app, "src").await, "overwrite").await;
    assert_eq!(report["files"]["replaced"], 1, "{report}");
    assert_eq!(bodies(&app, &dst.id), vec![MIB as u64 + 7, 3 * MIB as u64]);
    assert_eq!(&d.get_file("/a/big.bin").await.unwrap()[..], &newer[..]);
}
