//! Keys and the tenant registry.

use crate::{assert_code, draft, key, now, Backend};
use tenantry_core::ErrorCode;

pub async fn a_key_is_listed_until_revoked_and_then_carries_its_revocation(b: &dyn Backend) {
    let f = b.open().await;
    let (t, a) = f.tenant("acme").await;
    let k = key(&t, "ci");
    f.store.insert_key(&a, &k, None, draft("key.create", "ci").into()).await.unwrap();
    assert_eq!(f.store.list_keys(&a).await.unwrap(), vec![k.clone()]);
    let at = now();
    f.store.revoke_key(&a, &k.id, at, draft("key.revoke", "ci").into()).await.unwrap();
    let listed = f.store.list_keys(&a).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].revoked_at, Some(at));
    assert_code(f.store.revoke_key(&a, &k.id, now(), draft("key.revoke", "ci").into()).await, ErrorCode::NotFound);
}

pub async fn the_directory_loads_every_tenant_and_key(b: &dyn Backend) {
    let f = b.open().await;
    let (ta, a) = f.tenant("acme").await;
    let (tb, other) = f.tenant("globex").await;
    let (ka, kb) = (key(&ta, "a"), key(&tb, "b"));
    f.store.insert_key(&a, &ka, None, draft("key.create", "a").into()).await.unwrap();
    f.store.insert_key(&other, &kb, None, draft("key.create", "b").into()).await.unwrap();
    let (mut tenants, mut keys) = f.store.load_directory().await.unwrap();
    tenants.sort_by(|x, y| x.slug.as_str().cmp(y.slug.as_str()));
    keys.sort_by(|x, y| x.name.cmp(&y.name));
    assert_eq!(tenants, vec![ta, tb]);
    assert_eq!(keys, vec![ka, kb]);
}

pub async fn one_tenant_reads_back_with_all_its_keys_and_none_once_purged(b: &dyn Backend) {
    let f = b.open().await;
    let (ta, a) = f.tenant("acme").await;
    let (tb, other) = f.tenant("globex").await;
    let (k1, k2, kb) = (key(&ta, "one"), key(&ta, "two"), key(&tb, "b"));
    for (scope, k) in [(&a, &k1), (&a, &k2), (&other, &kb)] {
        f.store.insert_key(scope, k, None, draft("key.create", &k.name).into()).await.unwrap();
    }
    let at = now();
    f.store.revoke_key(&a, &k2.id, at, draft("key.revoke", "two").into()).await.unwrap();
    let (tenant, mut keys) = f.store.load_tenant_directory(&ta.id).await.unwrap().expect("acme is there");
    keys.sort_by(|x, y| x.name.cmp(&y.name));
    let revoked = tenantry_core::model::KeyRecord { revoked_at: Some(at), ..k2 };
    assert_eq!((tenant, keys), (ta.clone(), vec![k1, revoked]));
    f.store.purge_tenant(&a).await.unwrap();
    assert_eq!(f.store.load_tenant_directory(&ta.id).await.unwrap(), None);
    assert_eq!(f.store.load_tenant_directory(&tb.id).await.unwrap(), Some((tb, vec![kb])));
}

pub async fn revoked_keys_no_longer_count_toward_the_limit(b: &dyn Backend) {
    let f = b.open().await;
    let (t, a) = f.tenant("acme").await;
    let (k1, k2) = (key(&t, "one"), key(&t, "two"));
    f.store.insert_key(&a, &k1, Some(1), draft("key.create", "one").into()).await.unwrap();
    assert_code(
        f.store.insert_key(&a, &k2, Some(1), draft("key.create", "two").into()).await,
        ErrorCode::QuotaExceeded,
    );
    f.store.revoke_key(&a, &k1.id, now(), draft("key.revoke", "one").into()).await.unwrap();
    f.store.insert_key(&a, &k2, Some(1), draft("key.create", "two").into()).await.unwrap();
    assert_eq!(f.store.list_keys(&a).await.unwrap().len(), 2);
}
