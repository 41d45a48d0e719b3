//! The in-memory directory of tenants and keys: the hot path authenticates and resolves a tenant
//! here with hash-map lookups and no database round trip (DESIGN.md §4). The store is the truth;
//! the service updates this view right after each committed change, so a revoke, suspend or
//! archive takes effect for the very next request.

use crate::ids::{KeyId, TenantId};
use crate::model::{KeyRecord, Tenant, TenantStatus};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[derive(Default)]
struct Inner {
    tenants: HashMap<TenantId, Arc<Tenant>>,
    /// Ordered so tenant listings page in slug order without sorting.
    by_slug: BTreeMap<String, TenantId>,
    by_domain: HashMap<String, TenantId>,
    keys: HashMap<KeyId, Arc<KeyRecord>>,
}

#[derive(Default)]
pub struct Directory {
    // std RwLock: held only for hash-map operations, never across an await.
    inner: RwLock<Inner>,
}

impl Directory {
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn load(&self, tenants: Vec<Tenant>, keys: Vec<KeyRecord>) {
        let mut inner = Inner::default();
        for t in tenants {
            index_tenant(&mut inner, t);
        }
        for k in keys {
            inner.keys.insert(k.id.clone(), Arc::new(k));
        }
        *self.write() = inner;
    }

    /// Adds or replaces a tenant (after a committed create or update).
    pub fn put_tenant(&self, tenant: Tenant) {
        let mut inner = self.write();
        if let Some(old) = inner.tenants.get(&tenant.id).cloned() {
            inner.by_slug.remove(old.slug.as_str());
            for d in &old.domains {
                inner.by_domain.remove(d);
            }
        }
        index_tenant(&mut inner, tenant);
    }

    /// Forgets a purged tenant and all its keys.
    pub fn remove_tenant(&self, id: &TenantId) {
        let mut inner = self.write();
        if let Some(old) = inner.tenants.remove(id) {
            inner.by_slug.remove(old.slug.as_str());
            for d in &old.domains {
                inner.by_domain.remove(d);
            }
        }
        inner.keys.retain(|_, k| &k.tenant_id != id);
    }

    pub fn put_key(&self, key: KeyRecord) {
        self.write().keys.insert(key.id.clone(), Arc::new(key));
    }

    /// A key and its tenant under one lock acquisition (the hot path of authentication).
    pub fn key_with_tenant(&self, id: &KeyId) -> Option<(Arc<KeyRecord>, Arc<Tenant>)> {
        let inner = self.read();
        let key = inner.keys.get(id)?;
        let tenant = inner.tenants.get(&key.tenant_id)?;
        Some((key.clone(), tenant.clone()))
    }

    pub fn key(&self, id: &KeyId) -> Option<Arc<KeyRecord>> {
        self.read().keys.get(id).cloned()
    }

    pub fn tenant(&self, id: &TenantId) -> Option<Arc<Tenant>> {
        self.read().tenants.get(id).cloned()
    }

    pub fn tenant_by_slug(&self, slug: &str) -> Option<Arc<Tenant>> {
        let inner = self.read();
        inner.by_slug.get(slug).and_then(|id| inner.tenants.get(id)).cloned()
    }

    pub fn tenant_by_domain(&self, host: &str) -> Option<Arc<Tenant>> {
        let inner = self.read();
        inner.by_domain.get(host).and_then(|id| inner.tenants.get(id)).cloned()
    }

    /// The tenant a domain belongs to, if any (to refuse registering it twice).
    pub fn domain_owner(&self, domain: &str) -> Option<TenantId> {
        self.read().by_domain.get(domain).cloned()
    }

    /// Tenants in slug order after `after_slug`, optionally of one status.
    pub fn list_tenants(
        &self,
        status: Option<TenantStatus>,
        after_slug: Option<&str>,
        limit: usize,
    ) -> Vec<Arc<Tenant>> {
        let inner = self.read();
        let range = match after_slug {
            Some(after) => {
                inner.by_slug.range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            }
            None => inner.by_slug.range::<str, _>(..),
        };
        range
            .filter_map(|(_, id)| inner.tenants.get(id))
            .filter(|t| status.is_none_or(|s| t.status == s))
            .take(limit)
            .cloned()
            .collect()
    }

    pub fn count_by_status(&self) -> [(TenantStatus, usize); 3] {
        let inner = self.read();
        let mut counts = [(TenantStatus::Active, 0), (TenantStatus::Suspended, 0), (TenantStatus::Archived, 0)];
        for t in inner.tenants.values() {
            for c in counts.iter_mut() {
                if c.0 == t.status {
                    c.1 += 1;
                }
            }
        }
        counts
    }

    pub fn tenant_count(&self) -> usize {
        self.read().tenants.len()
    }
}

fn index_tenant(inner: &mut Inner, tenant: Tenant) {
    inner.by_slug.insert(tenant.slug.as_str().to_owned(), tenant.id.clone());
    for d in &tenant.domains {
        inner.by_domain.insert(d.clone(), tenant.id.clone());
    }
    inner.tenants.insert(tenant.id.clone(), Arc::new(tenant));
}
