//! The store contract suite (crates/tenantry-store-contract) against SQLite: each behaviour on
//! a fresh data dir of its own.

use std::sync::Arc;
use tenantry_store_contract::{Backend, Fixture};
use tenantry_store_sqlite::{OpenOptions, SqliteStore};

struct Sqlite;

#[async_trait::async_trait]
impl Backend for Sqlite {
    async fn open(&self) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path, OpenOptions::default()))
            .await
            .unwrap()
            .unwrap();
        Fixture::new(Arc::new(store), dir)
    }

    async fn reopen(&self, fixture: Fixture) -> Fixture {
        let (store, keep) = fixture.into_parts();
        store.close().await.unwrap();
        drop(store);
        let dir: Box<tempfile::TempDir> = keep.downcast().expect("a SQLite fixture keeps its data dir");
        let path = dir.path().to_owned();
        let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path, OpenOptions::default()))
            .await
            .unwrap()
            .unwrap();
        Fixture::new(Arc::new(store), *dir)
    }
}

tenantry_store_contract::suite!(Sqlite);

/// The same suite with every write's search document flushed into a segment at once (and
/// segments merged as soon as enough are there): the index's answers may not depend on where a
/// document is.
mod in_segments {
    use super::*;

    struct SqliteInSegments;

    fn options() -> OpenOptions {
        OpenOptions { search_flush_at: 1, search_step_rows: 2, ..OpenOptions::default() }
    }

    #[async_trait::async_trait]
    impl Backend for SqliteInSegments {
        async fn open(&self) -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().to_owned();
            let store =
                tokio::task::spawn_blocking(move || SqliteStore::open(&path, options())).await.unwrap().unwrap();
            Fixture::new(Arc::new(store), dir)
        }

        async fn reopen(&self, fixture: Fixture) -> Fixture {
            let (store, keep) = fixture.into_parts();
            store.close().await.unwrap();
            drop(store);
            let dir: Box<tempfile::TempDir> = keep.downcast().expect("a SQLite fixture keeps its data dir");
            let path = dir.path().to_owned();
            let store =
                tokio::task::spawn_blocking(move || SqliteStore::open(&path, options())).await.unwrap().unwrap();
            Fixture::new(Arc::new(store), *dir)
        }
    }

    tenantry_store_contract::suite!(SqliteInSegments);
}
