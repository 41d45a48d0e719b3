//! Readiness and shutdown, and moves between placements (`moves`).

use crate::error::pg_error;
use crate::store::PgStore;
use async_trait::async_trait;
use std::sync::Arc;
use tenantry_core::model::Placement;
use tenantry_core::store::{Health, MoveProgress, MoveReport, PlacementStore, TenantScope};
use tenantry_core::Result;

#[async_trait]
impl Health for PgStore {
    async fn ready(&self) -> Result<()> {
        let conn = self.shared_conn().await?;
        conn.query_one("SELECT 1", &[]).await.map_err(pg_error)?;
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        drop(self.feed.lock().unwrap_or_else(|e| e.into_inner()).take());
        self.places.close();
        self.directory_db.close();
        Ok(())
    }
}

#[async_trait]
impl PlacementStore for PgStore {
    async fn move_tenant(
        &self,
        scope: &TenantScope,
        to: Placement,
        progress: Arc<dyn Fn(MoveProgress) + Send + Sync>,
    ) -> Result<MoveReport> {
        self.move_between_places(scope, to, progress).await
    }
}
