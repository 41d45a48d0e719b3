//! Noisy neighbours at the edge: each tenant may have at most `max_in_flight_per_tenant`
//! requests inside handlers at once; more wait here (without using a worker, a reader or the
//! writer) until one of its own finishes. A tenant holding hundreds of slow requests (large
//! uploads, heavy searches) therefore occupies a bounded share of the server. The writer shares
//! its groups between tenants too (see tenantry-store-sqlite's `pool`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tenantry_core::ids::TenantId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct InFlight {
    per_tenant: usize,
    tenants: Mutex<HashMap<TenantId, Arc<Semaphore>>>,
}

impl InFlight {
    pub fn new(per_tenant: usize) -> InFlight {
        InFlight { per_tenant: per_tenant.max(1), tenants: Mutex::default() }
    }

    /// Waits for one of the tenant's slots; the slot is freed when the permit is dropped.
    pub async fn enter(&self, tenant: &TenantId) -> OwnedSemaphorePermit {
        let sem = {
            let mut tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
            tenants.entry(tenant.clone()).or_insert_with(|| Arc::new(Semaphore::new(self.per_tenant))).clone()
        };
        // The semaphore is never closed, so acquiring cannot fail.
        sem.acquire_owned().await.expect("the in-flight semaphore is never closed")
    }

    /// Requests of `tenant` inside handlers now (for tests and metrics).
    pub fn in_flight(&self, tenant: &TenantId) -> usize {
        let tenants = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        tenants.get(tenant).map_or(0, |s| self.per_tenant - s.available_permits())
    }
}

/// The default bound: 16 per core, at least 32.
pub fn default_per_tenant() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).saturating_mul(16).max(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tenant_beyond_its_bound_waits_while_another_tenant_gets_in_at_once() {
        let f = Arc::new(InFlight::new(2));
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let p1 = f.enter(&a).await;
        let _p2 = f.enter(&a).await;
        assert_eq!(f.in_flight(&a), 2);
        let third = {
            let (f, a) = (f.clone(), a.clone());
            tokio::spawn(async move { f.enter(&a).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "the third request of a waits");
        let _pb = tokio::time::timeout(std::time::Duration::from_millis(50), f.enter(&b)).await.expect("b gets in");
        drop(p1);
        let _p3 = tokio::time::timeout(std::time::Duration::from_secs(1), third).await.unwrap().unwrap();
        assert_eq!(f.in_flight(&a), 2);
    }
}
