//! The change feed: each tenant's events by seq (written by `journal`), and the sinks that hear
//! them once committed.

use crate::journal::event_tx;
use crate::store::{begin, commit, lock_usage, PgStore};
use async_trait::async_trait;
use std::sync::Arc;
use tenantry_core::events::{Event, EventDraft, EventSink};
use tenantry_core::path::PathPrefix;
use tenantry_core::store::{past_folder, EventLog, TenantScope};
use tenantry_core::time::Timestamp;
use tenantry_core::Result;
use tokio_postgres::Row;

pub(crate) const EVENT_COLUMNS: &str = "seq, type, path, namespace, key, detail, actor, at";

pub(crate) fn event_from_row(r: &Row) -> Event {
    let detail: Option<String> = r.get(5);
    Event {
        seq: r.get::<_, i64>(0) as u64,
        kind: r.get(1),
        path: r.get(2),
        namespace: r.get(3),
        key: r.get(4),
        detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
        actor: r.get(6),
        at: Timestamp::from_millis(r.get(7)),
    }
}

#[async_trait]
impl EventLog for PgStore {
    async fn list_events(
        &self,
        scope: &TenantScope,
        after: u64,
        visible: Option<PathPrefix>,
        limit: usize,
    ) -> Result<Vec<Event>> {
        let tenant = scope.tenant_id();
        let (after, limit) = (after.min(i64::MAX as u64) as i64, limit.min(i64::MAX as usize) as i64);
        let rows = match visible {
            None => {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
                );
                self.read_rows(tenant, &sql, &[&tenant.as_str(), &after, &limit]).await?
            }
            Some(prefix) => {
                // Events about the prefix itself or any path under it.
                let (dir, exact) = (prefix.as_dir(), prefix.as_str());
                let end = past_folder(&dir);
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events WHERE tenant_id = $1 AND seq > $2
                     AND ((path >= $3 AND path < $4) OR path = $5) ORDER BY seq LIMIT $6"
                );
                self.read_rows(tenant, &sql, &[&tenant.as_str(), &after, &dir, &end, &exact, &limit]).await?
            }
        };
        Ok(rows.iter().map(event_from_row).collect())
    }

    async fn last_event_seq(&self, scope: &TenantScope) -> Result<u64> {
        let tenant = scope.tenant_id();
        let sql = "SELECT last_event_seq FROM tenant_usage WHERE tenant_id = $1";
        let seq: Option<i64> = self.read_row(tenant, sql, &[&tenant.as_str()]).await?.map(|r| r.get(0));
        Ok(seq.unwrap_or(0).max(0) as u64)
    }

    async fn publish_event(&self, scope: &TenantScope, draft: EventDraft) -> Result<()> {
        let tenant = scope.tenant_id();
        let _turn = self.turn(tenant).await;
        let mut conn = self.conn_of(tenant).await?;
        let tx = begin(&mut conn, tenant).await?;
        lock_usage(&self.places, &tx, tenant).await?;
        let mut published = Vec::new();
        event_tx(&tx, tenant, scope.slug().as_str(), draft, &mut published).await?;
        commit(tx).await?;
        self.publish(tenant, &published);
        Ok(())
    }

    fn add_event_sink(&self, sink: Arc<dyn EventSink>) {
        self.listeners.add_sink(sink);
    }
}
