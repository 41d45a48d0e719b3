//! The store contract (crates/tenantry-store-contract) against PostgreSQL: a database of its own
//! per behaviour on the test cluster (scripts/pg-cluster.sh), migrated, as the server's role,
//! with the owner's URL for dedicated tenants' databases.

use std::sync::Arc;
use tenantry_store_contract::{Backend, Fixture};
use tenantry_store_postgres::testing::{cluster_configured, TestDatabase};
use tenantry_store_postgres::{schema, PgStore, PlacementOptions};

struct Postgres;

#[async_trait::async_trait]
impl Backend for Postgres {
    async fn open(&self) -> Fixture {
        let db = TestDatabase::create().await.expect("the test cluster");
        let mut owner = db.connect_as(&db.owner_role).await;
        schema::migrate(&mut owner, &db.app_role).await.unwrap();
        let store = open(&db).await;
        Fixture::new(Arc::new(store), db)
    }

    async fn reopen(&self, fixture: Fixture) -> Fixture {
        let (store, keep) = fixture.into_parts();
        store.close().await.unwrap();
        drop(store);
        let db = keep.downcast::<TestDatabase>().expect("the fixture keeps its database");
        let store = open(&db).await;
        Fixture::new(Arc::new(store), *db)
    }

    fn available(&self) -> bool {
        cluster_configured()
    }
}

async fn open(db: &TestDatabase) -> PgStore {
    let placement = PlacementOptions { owner_url: Some(db.owner_url()), max_open_dedicated: 8 };
    PgStore::open_with(&db.app_url(), 8, &placement).await.unwrap()
}

tenantry_store_contract::suite!(Postgres);
