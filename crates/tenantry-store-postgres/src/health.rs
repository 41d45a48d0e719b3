//! Readiness and shutdown, and placement: on PostgreSQL every tenant lives in the one database
//! for now (a database of a tenant's own, and moves to it, are still to come).

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
        let conn = self.conn().await?;
        conn.query_one("SELECT 1", &[]).await.map_err(pg_error)?;
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        drop(self.feed.lock().unwrap_or_else(|e| e.into_inner()).take());
        self.db.close();
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
