//! CPU-heavy work of one request run on tokio's blocking pool, at most one task per core at a
//! time: argon2id password hashing, and tokenizing large documents for the search index. On an
//! async worker, tens of milliseconds of such work would hold up every request sharing that
//! worker, whatever its tenant; here a flood of it waits its turn, holding no worker.

use std::sync::Arc;
use tenantry_core::people::{PasswordHash, PasswordWork};
use tenantry_core::search::{IndexDoc, IndexWork};
use tokio::sync::Semaphore;

/// Turns on the blocking pool, one per core but one (a core stays for the requests and the
/// writer); the server shares one `Offload` between password hashing and indexing.
#[derive(Debug, Clone)]
pub struct Offload {
    running: Arc<Semaphore>,
}

impl Default for Offload {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Offload { running: Arc::new(Semaphore::new(cores.saturating_sub(1).max(1))) }
    }
}

impl Offload {
    /// Runs `work` once a core is free; the turn is held by the blocking task itself, so a request
    /// dropped meanwhile (its client gone) does not free it early.
    async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let turn = self.running.clone().acquire_owned().await.ok()?;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            work()
        })
        .await
        .ok()
    }
}

/// Password hashing off the async workers (each hash takes 19 MiB: a flood of sign-ins waits
/// for its turn holding no memory).
#[derive(Debug, Default)]
pub struct BlockingPasswordWork(pub Offload);

#[async_trait::async_trait]
impl PasswordWork for BlockingPasswordWork {
    async fn hash(&self, password: String) -> tenantry_core::Result<PasswordHash> {
        self.0
            .run(move || PasswordHash::new(&password))
            .await
            .unwrap_or_else(|| Err(tenantry_core::Error::internal("the password hashing task failed")))
    }

    async fn verify(&self, hash: Option<PasswordHash>, password: String) -> bool {
        self.0
            .run(move || match hash {
                Some(h) => h.verify(&password),
                None => {
                    PasswordHash::verify_nothing(&password);
                    false
                }
            })
            .await
            .unwrap_or(false)
    }
}

/// Large documents tokenized off the async workers. Should the task fail (it does not panic:
/// tokenizing takes any text), the words are read on the calling thread instead.
#[derive(Debug, Default)]
pub struct BlockingIndexWork(pub Offload);

#[async_trait::async_trait]
impl IndexWork for BlockingIndexWork {
    async fn of_text(&self, text: String) -> IndexDoc {
        let shared = Arc::new(text);
        let moved = shared.clone();
        match self.0.run(move || IndexDoc::of_text(&moved)).await {
            Some(index) => index,
            None => IndexDoc::of_text(&shared),
        }
    }

    async fn of_file(&self, content: Vec<u8>) -> (Vec<u8>, Option<IndexDoc>) {
        let shared = Arc::new(content);
        let moved = shared.clone();
        let index = match self.0.run(move || IndexDoc::of_file(&moved)).await {
            Some(index) => index,
            None => IndexDoc::of_file(&shared),
        };
        // The task has ended and dropped its handle: the content is had back without a copy.
        (Arc::try_unwrap(shared).unwrap_or_else(|still| (*still).clone()), index)
    }
}
