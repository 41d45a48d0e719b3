//! Placement (API.md §9): the operator moves a tenant between the shared store and a store of
//! its own while it keeps serving. The tier's `dedicated_placement` feature gates moving in;
//! moving back to shared is always allowed.

use super::{actions, Tenantry};
use crate::caller::Caller;
use crate::error::{Error, Result};
use crate::model::Placement;
use crate::store::{MoveProgress, MoveReport};
use std::sync::Arc;

/// `GET /v1/tenants/{slug}/move`: whether a move is under way and how far it has come.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MoveStatus {
    pub tenant: String,
    pub placement: Placement,
    pub moving: bool,
    pub copied_bytes: u64,
    pub total_bytes: u64,
}

impl Tenantry {
    pub async fn move_tenant(&self, caller: &Caller, slug: &str, placement: &str) -> Result<MoveReport> {
        let grant = caller.operator()?;
        let tenant = self.tenant_by_slug(slug)?;
        let to = Placement::parse(placement).ok_or_else(|| {
            Error::invalid_request(format!("unknown placement {placement:?}: use shared or dedicated"))
        })?;
        if to == Placement::Dedicated && !self.limits_of(&tenant).dedicated_placement {
            let has = |l: &crate::tier::Limits| l.dedicated_placement;
            return Err(self.missing_feature(&tenant, "dedicated placement", "dedicated_placement", has, false));
        }
        let scope = grant.scope_of(&tenant);
        {
            let mut moving = self.moving.lock().unwrap_or_else(|e| e.into_inner());
            if moving.contains_key(&tenant.id) {
                return Err(Error::conflict(format!("tenant '{slug}' is being moved already")));
            }
            moving.insert(tenant.id.clone(), MoveProgress::default());
        }
        let (moving, id) = (self.moving.clone(), tenant.id.clone());
        let progress: Arc<dyn Fn(MoveProgress) + Send + Sync> = Arc::new(move |p| {
            if let Some(slot) = moving.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&id) {
                *slot = p;
            }
        });
        let moved = self.store.move_tenant(&scope, to, progress).await;
        self.moving.lock().unwrap_or_else(|e| e.into_inner()).remove(&tenant.id);
        let report = moved?;
        if let Some(current) = self.directory.tenant_by_slug(slug) {
            let mut t = (*current).clone();
            t.placement = to;
            self.directory.put_tenant(t);
        }
        let target = format!(
            "{slug}: {} -> {} ({} files, fence {} ms)",
            report.from.as_str(),
            report.to.as_str(),
            report.files,
            report.fence_ms
        );
        let scope = grant.scope_of(&*self.tenant_by_slug(slug)?);
        self.store.append_audit(&scope, grant.audit(actions::TENANT_MOVE, &target, "ok")).await?;
        Ok(report)
    }

    pub fn move_status(&self, caller: &Caller, slug: &str) -> Result<MoveStatus> {
        caller.operator()?;
        let tenant = self.tenant_by_slug(slug)?;
        let progress = self.moving.lock().unwrap_or_else(|e| e.into_inner()).get(&tenant.id).copied();
        Ok(MoveStatus {
            tenant: slug.to_owned(),
            placement: tenant.placement,
            moving: progress.is_some(),
            copied_bytes: progress.map_or(0, |p| p.copied_bytes),
            total_bytes: progress.map_or(0, |p| p.total_bytes),
        })
    }
}
