//! Readiness and shutdown, and moves between placements (not yet on PostgreSQL: a tenant is
//! placed when it is created, `places`).

use crate::error::pg_error;
use crate::store::PgStore;
use async_trait::async_trait;
use std::sync::Arc;
use tenantry_core::model::Placement;
use tenantry_core::store::{Health, MoveProgress, MoveReport, PlacementStore, TenantScope};
use tenantry_core::{Error, Result};

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
        _scope: &TenantScope,
        to: Placement,
        _progress: Arc<dyn Fn(MoveProgress) + Send + Sync>,
    ) -> Result<MoveReport> {
        Err(Error::invalid_request(format!(
            "moving a tenant to {} placement is not available on the PostgreSQL backend yet",
            to.as_str()
        )))
    }
}
