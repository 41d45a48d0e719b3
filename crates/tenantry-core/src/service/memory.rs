//! Memory use cases (API.md §7). Memory is not under any file path, so a key limited to a path
//! prefix cannot reach it: least privilege for keys handed to one agent's folder.

use super::{actions, decode_cursor, encode_cursor, page_limit, Tenantry};
use crate::caller::Caller;
use crate::error::{Error, Result};
use crate::events::{types, EventDraft, Journal};
use crate::memory::{self, MemoryEntry, MemoryKey, Namespace};
use crate::model::Page;
use crate::role::Role;
use crate::search::IndexDoc;
use crate::store::{MemoryListing, MemoryWrite};

impl Tenantry {
    pub async fn set_memory(
        &self,
        caller: &Caller,
        namespace: &str,
        key: &str,
        value: serde_json::Value,
        ttl_seconds: Option<u64>,
    ) -> Result<MemoryEntry> {
        caller.require_role(Role::Writer)?;
        caller.require_whole_tenant("memory")?;
        self.require_live(caller)?;
        let (namespace, key) = (Namespace::parse(namespace)?, MemoryKey::parse(key)?);
        let now = self.clock.now();
        let expires_at = memory::expiry(ttl_seconds, now)?;
        let text = memory::encode_value(&value, self.config.max_memory_value_bytes)?;
        let searchable = memory::searchable_text(&value);
        let index = if searchable.len() >= crate::search::OFFLOAD_BYTES {
            self.config.index_work.of_text(searchable).await
        } else {
            IndexDoc::of_text(&searchable)
        };
        let journal = Journal::with_event(
            caller.audit(actions::MEMORY_SET, &format!("{}/{}", namespace.as_str(), key.as_str()), "ok"),
            EventDraft::new(types::MEMORY_SET, caller.actor()).memory(namespace.as_str(), key.as_str()),
        );
        let write = MemoryWrite {
            namespace,
            key,
            value: text,
            expires_at,
            at: now,
            max_storage_bytes: caller.limits().max_storage_bytes,
            index,
        };
        let mut entry = self.store.put_memory(&caller.scope(), write, journal).await?;
        entry.value = Some(value);
        Ok(entry)
    }

    pub async fn get_memory(&self, caller: &Caller, namespace: &str, key: &str) -> Result<MemoryEntry> {
        caller.require_whole_tenant("memory")?;
        self.require_live(caller)?;
        let (ns, k) = (Namespace::parse(namespace)?, MemoryKey::parse(key)?);
        self.store
            .get_memory(&caller.scope(), &ns, &k, self.clock.now())
            .await?
            .ok_or_else(|| Error::not_found(format!("no memory entry {namespace}/{key}")))
    }

    pub async fn delete_memory(&self, caller: &Caller, namespace: &str, key: &str) -> Result<()> {
        caller.require_role(Role::Writer)?;
        caller.require_whole_tenant("memory")?;
        self.require_live(caller)?;
        let (ns, k) = (Namespace::parse(namespace)?, MemoryKey::parse(key)?);
        let journal = Journal::with_event(
            caller.audit(actions::MEMORY_DELETE, &format!("{namespace}/{key}"), "ok"),
            EventDraft::new(types::MEMORY_DELETED, caller.actor()).memory(namespace, key),
        );
        self.store.delete_memory(&caller.scope(), &ns, &k, self.clock.now(), journal).await
    }

    /// One namespace's entries in key order, optionally only keys starting with `prefix`.
    pub async fn list_memory(
        &self,
        caller: &Caller,
        namespace: &str,
        prefix: Option<&str>,
        with_values: bool,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Page<MemoryEntry>> {
        caller.require_whole_tenant("memory")?;
        self.require_live(caller)?;
        let namespace = Namespace::parse(namespace)?;
        let limit = page_limit(limit)?;
        let listing = MemoryListing {
            namespace,
            prefix: prefix.unwrap_or_default().to_owned(),
            after: decode_cursor(cursor)?,
            limit: limit + 1,
            with_values,
            now: self.clock.now(),
        };
        let items = self.store.list_memory(&caller.scope(), listing).await?;
        Ok(Page::cut(items, limit, |e| encode_cursor(&e.key)))
    }

    /// Background upkeep: reclaims expired entries in batches; returns how many.
    pub async fn reclaim_expired_memory(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = self.store.reclaim_expired_memory(self.clock.now(), 500).await?;
            total += n;
            if n < 500 {
                return Ok(total);
            }
        }
    }
}
