//! Change events (API.md §7): every change of a tenant's data or keys is an [`Event`] with a
//! per-tenant increasing `seq`, written by the store in the same transaction as the change and its
//! audit entry (together a [`Journal`]). A key with a path prefix sees only events under it.

use crate::model::AuditDraft;
use crate::path::PathPrefix;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Event type names. Clients filter on them: never rename one.
pub mod types {
    pub const FILE_WRITTEN: &str = "file.written";
    pub const FILE_DELETED: &str = "file.deleted";
    pub const MEMORY_SET: &str = "memory.set";
    pub const MEMORY_DELETED: &str = "memory.deleted";
    pub const KEY_CREATED: &str = "key.created";
    pub const KEY_REVOKED: &str = "key.revoked";
    pub const MEMBER_ADDED: &str = "member.added";
    pub const MEMBER_UPDATED: &str = "member.updated";
    pub const MEMBER_REMOVED: &str = "member.removed";
    pub const TENANT_SUSPENDED: &str = "tenant.suspended";
    pub const TENANT_RESUMED: &str = "tenant.resumed";
    pub const WEBHOOK_CREATED: &str = "webhook.created";
    pub const WEBHOOK_DELETED: &str = "webhook.deleted";
    pub const QUOTA_WARNING: &str = "quota.warning";
    /// A bundle was imported into the tenant; `detail` is the import's report.
    pub const TENANT_IMPORTED: &str = "tenant.imported";

    /// Every type a webhook may subscribe to.
    pub const ALL: &[&str] = &[
        FILE_WRITTEN,
        FILE_DELETED,
        MEMORY_SET,
        MEMORY_DELETED,
        KEY_CREATED,
        KEY_REVOKED,
        MEMBER_ADDED,
        MEMBER_UPDATED,
        MEMBER_REMOVED,
        TENANT_SUSPENDED,
        TENANT_RESUMED,
        WEBHOOK_CREATED,
        WEBHOOK_DELETED,
        QUOTA_WARNING,
        TENANT_IMPORTED,
    ];
}

/// One committed change, as `GET /v1/events`, the SSE stream and webhook deliveries show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"seq": 42, "type": "file.written", "path": "/docs/hello.txt", "actor": "key:key_7f3k2m9q1x8c4v6b", "at": "2026-12-06T14:00:00.000Z"})))]
pub struct Event {
    pub seq: u64,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Whatever else the type carries (a key's id and role, a quota's numbers); absent when empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
    pub actor: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub at: Timestamp,
}

impl Event {
    /// Whether a key limited to `prefix` may see this event: only events about a path under it.
    pub fn visible_under(&self, prefix: Option<&PathPrefix>) -> bool {
        match prefix {
            None => true,
            Some(p) => self.path.as_deref().is_some_and(|path| p.covers(path)),
        }
    }
}

/// What a change asks to be published; the store adds `seq` and `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventDraft {
    pub kind: &'static str,
    pub path: Option<String>,
    pub namespace: Option<String>,
    pub key: Option<String>,
    pub detail: Option<serde_json::Value>,
    pub actor: String,
}

impl EventDraft {
    pub fn new(kind: &'static str, actor: String) -> EventDraft {
        EventDraft { kind, path: None, namespace: None, key: None, detail: None, actor }
    }
    pub fn path(mut self, path: &str) -> EventDraft {
        self.path = Some(path.to_owned());
        self
    }
    pub fn memory(mut self, namespace: &str, key: &str) -> EventDraft {
        self.namespace = Some(namespace.to_owned());
        self.key = Some(key.to_owned());
        self
    }
    pub fn detail(mut self, detail: serde_json::Value) -> EventDraft {
        self.detail = Some(detail);
        self
    }
    /// `quota.warning`: usage of `quota` crossed 80% of its limit with this change.
    pub fn quota_warning(quota: &str, limit: u64, current: u64) -> EventDraft {
        EventDraft::new(types::QUOTA_WARNING, "system".to_owned()).detail(serde_json::json!({
            "quota": quota, "limit": limit, "current": current, "threshold": 0.8,
        }))
    }

    pub fn into_event(self, seq: u64, at: Timestamp) -> Event {
        Event {
            seq,
            kind: self.kind.to_owned(),
            path: self.path,
            namespace: self.namespace,
            key: self.key,
            detail: self.detail,
            actor: self.actor,
            at,
        }
    }
}

/// Everything a change writes beside itself, in its transaction: the audit entry and, for changes
/// that clients can subscribe to, the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Journal {
    pub audit: AuditDraft,
    pub event: Option<EventDraft>,
}

impl Journal {
    pub fn with_event(audit: AuditDraft, event: EventDraft) -> Journal {
        Journal { audit, event: Some(event) }
    }
}

impl From<AuditDraft> for Journal {
    fn from(audit: AuditDraft) -> Journal {
        Journal { audit, event: None }
    }
}

/// Told about events right after they commit, in commit order (the SSE hub, the webhook worker).
/// Called on the store's writer thread: it must not block.
///
/// Where several nodes share the store, a sink also hears the events other nodes commit, for the
/// tenants it [`follows`](EventSink::follows), soon after their commit: those may come before or
/// after this node's own events of the same tenant, so a sink that needs them in order goes by
/// `seq` (and reads the store for any it has not heard).
pub trait EventSink: Send + Sync {
    fn published(&self, tenant: &crate::ids::TenantId, events: &[Event]);
    /// Whether this sink wants `tenant`'s events committed by other nodes (each such batch is
    /// read from the store once per node, for the sinks that want it).
    fn follows(&self, _tenant: &crate::ids::TenantId) -> bool {
        false
    }
    /// Other nodes' events may have been committed unheard (the store's feed from the other
    /// nodes was interrupted): whatever the sink keeps in step with them must be re-read.
    fn missed(&self) {}
    /// The tenants whose other nodes' events this sink wants (those [`follows`](Self::follows)
    /// says yes to), for a store that checks on them.
    fn followed(&self) -> Vec<crate::ids::TenantId> {
        Vec::new()
    }
    /// Some of `tenant`'s events may have been committed unheard (a node that wrote them stopped
    /// before telling the others): the sink re-reads that tenant's.
    fn missed_of(&self, _tenant: &crate::ids::TenantId) {
        self.missed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(path: Option<&str>) -> Event {
        let mut d = EventDraft::new(types::FILE_WRITTEN, "key:x".into());
        d.path = path.map(str::to_owned);
        d.into_event(1, Timestamp::from_millis(0))
    }

    #[test]
    fn a_prefixed_key_sees_only_events_about_paths_under_its_prefix() {
        let docs = PathPrefix::parse("/docs").unwrap();
        assert!(event(Some("/docs/a")).visible_under(Some(&docs)));
        assert!(event(Some("/docs")).visible_under(Some(&docs)));
        assert!(!event(Some("/docs2/a")).visible_under(Some(&docs)));
        assert!(!event(None).visible_under(Some(&docs)));
        assert!(event(None).visible_under(None));
    }

    #[test]
    fn events_serialize_without_absent_fields() {
        let e = event(Some("/a"));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "file.written");
        assert_eq!(v["path"], "/a");
        assert!(v.get("namespace").is_none() && v.get("detail").is_none());
        assert_eq!(v["at"], "1970-01-01T00:00:00.000Z");
    }
}
