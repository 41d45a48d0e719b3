//! Durability: what a store acknowledged is there, whole and unchanged, after the store is
//! closed and opened again on the same storage, and the tenant's sequences go on from where they
//! stopped (no seq reused, no link of the audit chain broken).

use crate::{draft, key, memory_journal, memory_write, path, write, Backend};
use serde_json::json;
use tenantry_core::audit::verify;
use tenantry_core::memory::{MemoryKey, Namespace};
use tenantry_core::store::{FileListing, StoredUsage};

pub async fn everything_acknowledged_is_there_after_a_close_and_reopen(b: &dyn Backend) {
    let f = b.open().await;
    let ((acme, a), (_, other)) = (f.tenant("acme").await, f.tenant("other").await);
    // A body kept apart from the rows in backends that do (over 1 MiB), and small ones.
    let big: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 251) as u8).collect();
    let mut w = write("/big.bin", &big);
    w.index = None;
    f.put_with(&a, w).await.unwrap();
    f.put(&a, "/notes/a.txt", "durable words").await;
    f.put(&a, "/notes/a.txt", "durable words, replaced").await;
    f.put(&other, "/x", "the other tenant's").await;
    let value = json!({"plan": ["a", "b"]});
    f.store.put_memory(&a, memory_write("ns", "k", value.clone()), memory_journal("ns", "k")).await.unwrap();
    let ci = key(&acme, "ci");
    f.store.insert_key(&a, &ci, None, draft("key.create", "ci").into()).await.unwrap();
    let hook = crate::webhooks::hook(&["file.written"], None);
    f.store.insert_webhook(&a, hook.clone(), 10, draft("webhook.create", "hook").into()).await.unwrap();
    let usage = f.store.usage(&a).await.unwrap();
    let (audit, events) = (f.audit_log(&a).await, f.event_log(&a).await);
    assert_eq!(usage, StoredUsage { storage_bytes: (2 << 20) + 23 + value.to_string().len() as u64, files: 2 });

    let f = b.reopen(f).await;
    let (_, bytes) = f.store.read_file(&a, &path("/big.bin"), None).await.unwrap().unwrap();
    assert!(bytes == big, "the large body differs after the reopen");
    let (meta, bytes) = f.store.read_file(&a, &path("/notes/a.txt"), None).await.unwrap().unwrap();
    assert_eq!((bytes.as_slice(), meta.version), (b"durable words, replaced".as_slice(), 2));
    let (_, bytes) = f.store.read_file(&other, &path("/x"), None).await.unwrap().unwrap();
    assert_eq!(bytes, b"the other tenant's");
    assert_eq!(f.store.usage(&a).await.unwrap(), usage);
    let listing = FileListing {
        within: tenantry_core::path::PathPrefix::root(),
        recursive: true,
        include_within: false,
        after: None,
        limit: 10,
    };
    let paths: Vec<String> =
        f.store.list_files(&a, listing).await.unwrap().into_iter().map(|m| m.path.as_str().to_owned()).collect();
    assert_eq!(paths, ["/big.bin", "/notes/a.txt"]);
    let (ns, k) = (Namespace::parse("ns").unwrap(), MemoryKey::parse("k").unwrap());
    let entry = f.store.get_memory(&a, &ns, &k, crate::now()).await.unwrap().unwrap();
    assert_eq!(entry.value, Some(value));
    let keys: Vec<_> = f.store.list_keys(&a).await.unwrap().into_iter().map(|k| k.id).collect();
    assert_eq!(keys, [ci.id]);
    assert_eq!(f.store.list_webhooks(&a).await.unwrap(), [hook.hook]);
    assert_eq!((f.audit_log(&a).await, f.event_log(&a).await), (audit.clone(), events.clone()));

    // The sequences go on: the next entry links to the last one before the reopen.
    f.put(&a, "/after.txt", "after").await;
    let (audit_after, events_after) = (f.audit_log(&a).await, f.event_log(&a).await);
    assert_eq!(audit_after.len(), audit.len() + 1);
    assert_eq!(audit_after.last().unwrap().prev_hash, audit.last().unwrap().hash);
    assert!(verify(None, &audit_after).ok);
    let seqs: Vec<u64> = events_after.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=events.len() as u64 + 1).collect::<Vec<_>>());
}
