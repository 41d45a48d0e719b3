//! The in-memory directory of tenants and keys: the hot path authenticates and resolves a tenant
//! here with hash-map lookups and no database round trip (DESIGN.md §4). The store is the truth;
//! the service updates this view right after each committed change, so a revoke, suspend or
//! archive takes effect for the very next request. Where several nodes share the store, each
//! node re-reads a tenant when the store tells it (a [`DirectoryFollower`]) that another node
//! changed it, and everything when the store may have missed changes.

use crate::activity::TenantActivity;
use crate::ids::{KeyId, TenantId};
use crate::model::{KeyRecord, Tenant, TenantStatus};
use crate::time::Timestamp;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// One tenant in the directory: its current record (replaced after each committed update) and
/// what the request path counts for it. One allocation for the tenant's whole life in the
/// directory: its keys' entries point at it, so authentication finds the key, the tenant and
/// the tenant's counters in one hash-map lookup, and an update of the tenant needs no visit to
/// its keys.
#[derive(Debug)]
pub struct TenantEntry {
    current: RwLock<Arc<Tenant>>,
    activity: TenantActivity,
}

impl TenantEntry {
    fn new(tenant: Tenant) -> TenantEntry {
        TenantEntry { current: RwLock::new(Arc::new(tenant)), activity: TenantActivity::default() }
    }

    /// The tenant as last committed.
    pub fn tenant(&self) -> Arc<Tenant> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn activity(&self) -> &TenantActivity {
        &self.activity
    }
}

#[derive(Default)]
struct Inner {
    tenants: HashMap<TenantId, Arc<TenantEntry>>,
    /// Ordered so tenant listings page in slug order without sorting; each with its status, so
    /// a listing by status reads no tenant record it leaves out.
    by_slug: BTreeMap<String, Listed>,
    /// The switcher's search index, built by the first search after a change to `by_slug` or a
    /// name, and dropped by that change (which holds the write lock).
    search: OnceLock<SearchIndex>,
    by_domain: HashMap<String, TenantId>,
    /// Each key with its tenant's entry.
    keys: HashMap<KeyId, (Arc<KeyRecord>, Arc<TenantEntry>)>,
    /// Changes this node put, per tenant and in all (re-reads of what other nodes changed are
    /// not counted): how a re-read knows whether it may be older than the directory.
    local: HashMap<TenantId, u64>,
    local_total: u64,
}

/// A tenant as the slug index holds it.
struct Listed {
    id: TenantId,
    status: TenantStatus,
    /// Its part of [`SearchIndex::text`], made when the tenant is indexed, so a rebuild of the
    /// search index only copies bytes.
    searched: Box<str>,
}

impl Listed {
    fn of(tenant: &Tenant) -> Listed {
        Listed { id: tenant.id.clone(), status: tenant.status, searched: searched_text(tenant).into_boxed_str() }
    }
}

/// Ends a tenant's slug in [`SearchIndex::text`], and its name: characters no search holds, so
/// a match never spans two fields or two tenants.
const SLUG_END: char = '\u{1}';
const NAME_END: char = '\u{2}';

/// Every tenant's slug and lower-cased name, in slug order, in one string: a search is one
/// `memmem` pass over it (about 4 MB for 100,000 tenants) instead of a walk of the tree.
struct SearchIndex {
    text: String,
    /// Where each tenant's part of `text` starts, in slug order.
    starts: Vec<usize>,
    tenants: Vec<(TenantId, TenantStatus)>,
}

impl SearchIndex {
    fn build(by_slug: &BTreeMap<String, Listed>) -> SearchIndex {
        let size = by_slug.values().map(|l| l.searched.len()).sum();
        let mut index = SearchIndex {
            text: String::with_capacity(size),
            starts: Vec::with_capacity(by_slug.len()),
            tenants: Vec::with_capacity(by_slug.len()),
        };
        for listed in by_slug.values() {
            index.starts.push(index.text.len());
            index.tenants.push((listed.id.clone(), listed.status));
            index.text.push_str(&listed.searched);
        }
        index
    }

    fn slug(&self, i: usize) -> &str {
        let rest = &self.text[self.starts[i]..];
        &rest[..rest.find(SLUG_END).unwrap_or(rest.len())]
    }

    /// The tenants (by position) after `after_slug` whose slug or name contains `needle` (lower
    /// case, no control character), in slug order, until `keep` has taken `limit`.
    fn search(&self, needle: &str, after_slug: Option<&str>, mut keep: impl FnMut(usize) -> bool, limit: usize) {
        if limit == 0 {
            return;
        }
        // The first tenant whose slug sorts after `after_slug` (binary search: slugs are sorted).
        let (mut first, mut end) = (0, self.starts.len());
        if let Some(after) = after_slug {
            while first < end {
                let mid = first + (end - first) / 2;
                if self.slug(mid) <= after {
                    first = mid + 1;
                } else {
                    end = mid;
                }
            }
        }
        let from = self.starts.get(first).copied().unwrap_or(self.text.len());
        let mut taken = 0;
        let mut last = None;
        for found in memchr::memmem::find_iter(&self.text.as_bytes()[from..], needle.as_bytes()) {
            let i = self.starts.partition_point(|&s| s <= from + found) - 1;
            if last == Some(i) {
                continue;
            }
            last = Some(i);
            if keep(i) {
                taken += 1;
                if taken == limit {
                    return;
                }
            }
        }
    }
}

impl Inner {
    fn tenant(&self, id: &TenantId) -> Option<Arc<Tenant>> {
        self.tenants.get(id).map(|e| e.tenant())
    }

    fn count_local(&mut self, tenant: &TenantId) {
        *self.local.entry(tenant.clone()).or_insert(0) += 1;
        self.local_total += 1;
    }

    fn replace_tenant(&mut self, tenant: Tenant) {
        if let Some(old) = self.tenant(&tenant.id) {
            self.by_slug.remove(old.slug.as_str());
            for d in &old.domains {
                self.by_domain.remove(d);
            }
        }
        index_tenant(self, tenant);
    }

    fn remove_tenant(&mut self, id: &TenantId) {
        self.search.take();
        if let Some(old) = self.tenants.remove(id) {
            let old = old.tenant();
            self.by_slug.remove(old.slug.as_str());
            for d in &old.domains {
                self.by_domain.remove(d);
            }
        }
        self.keys.retain(|_, (k, _)| &k.tenant_id != id);
    }

    fn put_key(&mut self, key: KeyRecord) {
        // A key is indexed with its tenant's entry; the service puts a tenant before its keys.
        if let Some(entry) = self.tenants.get(&key.tenant_id).cloned() {
            self.keys.insert(key.id.clone(), (Arc::new(key), entry));
        }
    }
}

/// Told by a store that several nodes share when the directory's truth changed under this node.
/// Called from the store's own task: it must not block.
pub trait DirectoryFollower: Send + Sync {
    /// `tenant`'s record or keys changed, or it was purged (also for this node's own changes:
    /// re-reading after each keeps the view right whatever order the re-reads finish in).
    fn tenant_changed(&self, tenant: &TenantId);
    /// `key` of `tenant` was revoked at `at` (by any node): told before the tenant's
    /// [`tenant_changed`](DirectoryFollower::tenant_changed), so a follower may refuse the key
    /// at once instead of after the re-read. Ignoring it is correct, only slower.
    fn key_revoked(&self, _tenant: &TenantId, _key: &KeyId, _at: Timestamp) {}
    /// A user or their sessions changed (any node: signed in or out, password changed, disabled).
    fn person_changed(&self, _user: &crate::ids::UserId) {}
    /// Changes may have been missed (the store's feed was interrupted): re-read everything.
    fn resync(&self);
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
            inner.put_key(k);
        }
        *self.write() = inner;
    }

    /// Changes this node has put for `tenant` so far (see [`Directory::apply_reread`]).
    pub fn local_changes(&self, tenant: &TenantId) -> u64 {
        self.read().local.get(tenant).copied().unwrap_or(0)
    }

    /// Changes this node has put for any tenant so far (see [`Directory::sync`]).
    pub fn all_local_changes(&self) -> u64 {
        self.read().local_total
    }

    /// Applies a re-read of one tenant (`None`: it is gone) begun when this node's count of its
    /// own changes to the tenant was `seen`. When this node has changed the tenant since, the
    /// re-read may be older than what the directory holds, and nothing is applied (`false`): the
    /// store tells of that change too, and the re-read it brings is newer.
    pub fn apply_reread(&self, id: &TenantId, found: Option<(Tenant, Vec<KeyRecord>)>, seen: u64) -> bool {
        let mut inner = self.write();
        if inner.local.get(id).copied().unwrap_or(0) != seen {
            return false;
        }
        match found {
            Some((tenant, keys)) => {
                inner.replace_tenant(tenant);
                for key in keys {
                    inner.put_key(key);
                }
            }
            None => inner.remove_tenant(id),
        }
        true
    }

    /// Replaces the whole view with what the store holds now (read when this node's count of its
    /// own changes was `seen`), keeping the entry (and so the counters) of every tenant still
    /// there: a resynchronization, not a restart. `false`, with nothing applied, when this node
    /// changed anything since: the read may be older than the directory, and must be made again.
    pub fn sync(&self, tenants: Vec<Tenant>, keys: Vec<KeyRecord>, seen: u64) -> bool {
        let mut inner = self.write();
        if inner.local_total != seen {
            return false;
        }
        let mut old = std::mem::take(&mut inner.tenants);
        let (local, local_total) = (std::mem::take(&mut inner.local), inner.local_total);
        *inner = Inner { local, local_total, ..Inner::default() };
        for t in tenants {
            if let Some(entry) = old.remove(&t.id) {
                inner.tenants.insert(t.id.clone(), entry);
            }
            index_tenant(&mut inner, t);
        }
        for k in keys {
            inner.put_key(k);
        }
        true
    }

    /// Adds or replaces a tenant (after a committed create or update). A replaced tenant keeps
    /// its entry, so its keys and counters carry over.
    pub fn put_tenant(&self, tenant: Tenant) {
        let mut inner = self.write();
        inner.count_local(&tenant.id);
        inner.replace_tenant(tenant);
    }

    /// Forgets a purged tenant, all its keys and its counters.
    pub fn remove_tenant(&self, id: &TenantId) {
        let mut inner = self.write();
        inner.count_local(id);
        inner.remove_tenant(id);
    }

    /// Adds or replaces a key of a tenant already in the directory (a key of an unknown tenant
    /// is not indexed: it could not authenticate anyway).
    pub fn put_key(&self, key: KeyRecord) {
        let mut inner = self.write();
        inner.count_local(&key.tenant_id);
        inner.put_key(key);
    }

    /// Marks a key of `tenant` revoked at `at`, if the directory holds it and it is not revoked
    /// yet (counted as this node's change: a re-read begun before it may be older, and is not
    /// applied). Whether it was changed.
    pub fn revoke_key(&self, tenant: &TenantId, id: &KeyId, at: Timestamp) -> bool {
        let mut inner = self.write();
        let Some((key, _)) = inner.keys.get(id) else { return false };
        if key.tenant_id != *tenant || key.revoked_at.is_some() {
            return false;
        }
        let mut revoked = (**key).clone();
        revoked.revoked_at = Some(at);
        inner.count_local(tenant);
        inner.put_key(revoked);
        true
    }

    /// A key, its tenant and the tenant's entry, in one lookup (the hot path of authentication).
    pub fn key_with_tenant(&self, id: &KeyId) -> Option<(Arc<KeyRecord>, Arc<Tenant>, Arc<TenantEntry>)> {
        let inner = self.read();
        let (key, entry) = inner.keys.get(id)?;
        Some((key.clone(), entry.tenant(), entry.clone()))
    }

    /// A tenant's entry (for its counters).
    pub fn entry(&self, id: &TenantId) -> Option<Arc<TenantEntry>> {
        self.read().tenants.get(id).cloned()
    }

    /// Calls `f` with every tenant's id and counters (under the directory's read lock: `f` must
    /// be quick).
    pub fn for_each_activity(&self, mut f: impl FnMut(&TenantId, &TenantActivity)) {
        for (id, entry) in &self.read().tenants {
            f(id, &entry.activity);
        }
    }

    pub fn key(&self, id: &KeyId) -> Option<Arc<KeyRecord>> {
        self.read().keys.get(id).map(|(k, _)| k.clone())
    }

    pub fn tenant(&self, id: &TenantId) -> Option<Arc<Tenant>> {
        self.read().tenant(id)
    }

    /// A tenant by slug, with its entry.
    pub fn entry_by_slug(&self, slug: &str) -> Option<Arc<TenantEntry>> {
        let inner = self.read();
        inner.by_slug.get(slug).and_then(|l| inner.tenants.get(&l.id)).cloned()
    }

    /// A tenant by one of its domains, with its entry.
    pub fn entry_by_domain(&self, host: &str) -> Option<Arc<TenantEntry>> {
        let inner = self.read();
        inner.by_domain.get(host).and_then(|id| inner.tenants.get(id)).cloned()
    }

    pub fn tenant_by_slug(&self, slug: &str) -> Option<Arc<Tenant>> {
        let inner = self.read();
        inner.by_slug.get(slug).and_then(|l| inner.tenant(&l.id))
    }

    pub fn tenant_by_domain(&self, host: &str) -> Option<Arc<Tenant>> {
        let inner = self.read();
        inner.by_domain.get(host).and_then(|id| inner.tenant(id))
    }

    /// The tenant a domain belongs to, if any (to refuse registering it twice).
    pub fn domain_owner(&self, domain: &str) -> Option<TenantId> {
        self.read().by_domain.get(domain).cloned()
    }

    /// Tenants in slug order after `after_slug`, optionally of one status, and optionally only
    /// those whose slug or name contains `text` (any case): the tenant switcher's search. A
    /// search walks the slug index in memory, so it costs no storage round trip.
    pub fn list_tenants(
        &self,
        status: Option<TenantStatus>,
        text: Option<&str>,
        after_slug: Option<&str>,
        limit: usize,
    ) -> Vec<Arc<Tenant>> {
        let inner = self.read();
        if let Some(text) = text.map(str::to_lowercase).filter(|t| !t.is_empty()) {
            let mut found = Vec::new();
            if text.chars().any(char::is_control) {
                return found;
            }
            let index = inner.search.get_or_init(|| SearchIndex::build(&inner.by_slug));
            let keep = |i: usize| {
                let (id, s) = &index.tenants[i];
                let Some(tenant) = status.is_none_or(|want| *s == want).then(|| inner.tenant(id)).flatten() else {
                    return false;
                };
                found.push(tenant);
                true
            };
            index.search(&text, after_slug, keep, limit);
            return found;
        }
        let range = match after_slug {
            Some(after) => {
                inner.by_slug.range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            }
            None => inner.by_slug.range::<str, _>(..),
        };
        range
            .filter(|(_, l)| status.is_none_or(|s| l.status == s))
            .filter_map(|(_, l)| inner.tenant(&l.id))
            .take(limit)
            .collect()
    }

    pub fn count_by_status(&self) -> [(TenantStatus, usize); 3] {
        let inner = self.read();
        let mut counts = [(TenantStatus::Active, 0), (TenantStatus::Suspended, 0), (TenantStatus::Archived, 0)];
        for entry in inner.tenants.values() {
            let t = entry.current.read().unwrap_or_else(|e| e.into_inner());
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
    inner.by_slug.insert(tenant.slug.as_str().to_owned(), Listed::of(&tenant));
    inner.search.take();
    for d in &tenant.domains {
        inner.by_domain.insert(d.clone(), tenant.id.clone());
    }
    match inner.tenants.get(&tenant.id) {
        Some(entry) => *entry.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tenant),
        None => {
            inner.tenants.insert(tenant.id.clone(), Arc::new(TenantEntry::new(tenant)));
        }
    }
}

/// What a search looks in for a tenant: its slug and its lower-cased name (control characters
/// left out), each ended by a control character, so no search (which holds none) spans the two.
fn searched_text(tenant: &Tenant) -> String {
    let name: String = tenant.name.to_lowercase().chars().filter(|c| !c.is_control()).collect();
    format!("{}{SLUG_END}{name}{NAME_END}", tenant.slug.as_str())
}

/// Whether the tenant's slug or name contains `text_lower` (a lower-cased search): the same test
/// as a listing's search, for a person's few tenants.
pub(crate) fn tenant_matches(tenant: &Tenant, text_lower: &str) -> bool {
    !text_lower.chars().any(char::is_control) && searched_text(tenant).contains(text_lower)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TenantStatus;
    use crate::slug::Slug;
    use crate::time::Timestamp;

    fn tenant(slug: &str) -> Tenant {
        Tenant::new(Slug::parse(slug).unwrap(), slug, "free", Timestamp::from_millis(0))
    }

    #[test]
    fn a_search_matches_slug_or_name_in_any_case_in_slug_order() {
        let d = Directory::default();
        let mut named = tenant("zeta");
        named.name = "ACME Holdings Ünited".into();
        d.put_tenant(named);
        let mut suspended = tenant("acme-labs");
        suspended.status = TenantStatus::Suspended;
        d.put_tenant(suspended);
        for slug in ["acme", "globex", "initech"] {
            d.put_tenant(tenant(slug));
        }
        let slugs = |status, text, after, limit| {
            d.list_tenants(status, text, after, limit).iter().map(|t| t.slug.as_str().to_owned()).collect::<Vec<_>>()
        };
        assert_eq!(slugs(None, Some("Acme"), None, 10), ["acme", "acme-labs", "zeta"]);
        assert_eq!(slugs(None, Some("üNITED"), None, 10), ["zeta"]);
        assert_eq!(slugs(None, Some("acme"), Some("acme"), 1), ["acme-labs"]);
        assert_eq!(slugs(Some(TenantStatus::Active), Some("acme"), None, 10), ["acme", "zeta"]);
        assert_eq!(slugs(None, Some(""), None, 10).len(), 5, "an empty search is no filter");
        assert!(slugs(None, Some("nothing-like-it"), None, 10).is_empty());
        assert!(slugs(None, Some("acme\u{1}"), None, 10).is_empty(), "no match spans a slug and its name");
        // A change is seen by the next search: a rename, a new tenant, a removal.
        let mut renamed = d.tenant_by_slug("globex").unwrap().as_ref().clone();
        renamed.name = "Acme's rival".into();
        d.put_tenant(renamed.clone());
        d.put_tenant(tenant("acme-two"));
        assert_eq!(slugs(None, Some("acme"), None, 10), ["acme", "acme-labs", "acme-two", "globex", "zeta"]);
        d.remove_tenant(&renamed.id);
        assert_eq!(slugs(None, Some("acme"), Some("acme-labs"), 10), ["acme-two", "zeta"]);
    }

    #[test]
    fn a_search_finds_what_a_walk_of_every_tenant_finds() {
        let d = Directory::default();
        let words = ["Acme", "Globex", "Initech", "Ünited", "Hooli", "stark"];
        for i in 0..300 {
            let mut t = tenant(&format!("t{i:03}"));
            t.name = format!("{} {} {i}", words[i % 6], words[(i / 6) % 6]);
            if i % 7 == 0 {
                t.status = TenantStatus::Suspended;
            }
            d.put_tenant(t);
        }
        let all = d.list_tenants(None, None, None, usize::MAX);
        for query in ["a", "ACME", "ünit", "t1", "oli st", "9", "me g", "zzz", "2 1"] {
            for status in [None, Some(TenantStatus::Suspended)] {
                for (after, limit) in [(None, 1000), (Some("t150"), 1000), (Some("t100"), 3)] {
                    let lower = query.to_lowercase();
                    let walked: Vec<_> = all
                        .iter()
                        .filter(|t| after.is_none_or(|a| t.slug.as_str() > a))
                        .filter(|t| status.is_none_or(|s| t.status == s) && tenant_matches(t, &lower))
                        .take(limit)
                        .map(|t| t.slug.as_str().to_owned())
                        .collect();
                    let searched: Vec<_> = d
                        .list_tenants(status, Some(query), after, limit)
                        .iter()
                        .map(|t| t.slug.as_str().to_owned())
                        .collect();
                    assert_eq!(searched, walked, "{query:?} {status:?} after {after:?}");
                }
            }
        }
    }

    #[test]
    fn a_reread_this_nodes_own_change_overtook_is_dropped() {
        let d = Directory::default();
        let t = tenant("acme");
        d.put_tenant(t.clone());
        // A re-read begins; meanwhile this node suspends the tenant.
        let seen = d.local_changes(&t.id);
        let stale = t.clone();
        let mut suspended = t.clone();
        suspended.status = TenantStatus::Suspended;
        d.put_tenant(suspended);
        assert!(!d.apply_reread(&t.id, Some((stale.clone(), vec![])), seen));
        assert_eq!(d.tenant(&t.id).unwrap().status, TenantStatus::Suspended);
        // A re-read begun after it applies, and does not count as this node's change.
        let seen = d.local_changes(&t.id);
        assert!(d.apply_reread(&t.id, Some((stale, vec![])), seen));
        assert_eq!(d.tenant(&t.id).unwrap().status, TenantStatus::Active);
        assert_eq!(d.local_changes(&t.id), seen);
        assert!(d.apply_reread(&t.id, None, seen));
        assert!(d.tenant(&t.id).is_none());
    }

    #[test]
    fn a_revocation_heard_from_elsewhere_takes_the_key_at_once_and_outlives_older_rereads() {
        let d = Directory::default();
        let (t, other) = (tenant("acme"), tenant("globex"));
        let id = crate::ids::KeyId::generate();
        let key = KeyRecord {
            id: id.clone(),
            tenant_id: t.id.clone(),
            name: "k".into(),
            role: crate::role::Role::Reader,
            prefix: None,
            hash: crate::secret::KeySecret::mint(&id).hash(),
            created_at: Timestamp::from_millis(0),
            created_by: "operator".into(),
            expires_at: None,
            revoked_at: None,
        };
        d.load(vec![t.clone(), other.clone()], vec![key.clone()]);
        let at = Timestamp::from_millis(5);
        assert!(!d.revoke_key(&other.id, &id, at), "a key is revoked only as its own tenant's");
        let seen = d.local_changes(&t.id);
        assert!(d.revoke_key(&t.id, &id, at));
        assert_eq!(d.key(&id).unwrap().revoked_at, Some(at));
        assert!(!d.key(&id).unwrap().is_usable(Timestamp::from_millis(6)));
        assert!(!d.revoke_key(&t.id, &id, Timestamp::from_millis(9)), "revoked once, at its first time");
        // A re-read begun before the revocation holds the key unrevoked: it is not applied.
        assert!(!d.apply_reread(&t.id, Some((t.clone(), vec![key])), seen));
        assert_eq!(d.key(&id).unwrap().revoked_at, Some(at));
    }

    #[test]
    fn a_resync_keeps_entries_and_is_refused_when_overtaken() {
        let d = Directory::default();
        let (a, b) = (tenant("acme"), tenant("globex"));
        d.put_tenant(a.clone());
        d.put_tenant(b.clone());
        let entry = d.entry(&a.id).unwrap();
        entry.activity().count_request();
        let seen = d.all_local_changes();
        d.put_tenant(tenant("initech"));
        assert!(!d.sync(vec![a.clone()], vec![], seen));
        assert_eq!(d.tenant_count(), 3);
        assert!(d.sync(vec![a.clone()], vec![], d.all_local_changes()));
        assert_eq!(d.tenant_count(), 1);
        assert!(d.tenant(&b.id).is_none());
        assert_eq!(d.entry(&a.id).unwrap().activity().requests(), 1, "the entry and its counters carried over");
    }
}
