//! The event sinks (live streams, the webhook dispatcher's wake-up), and the events a write
//! publishes, handed to them only once its commit is durable, on the writer thread, so they
//! reach subscribers in commit order.

use std::sync::{Arc, Mutex, RwLock};
use tenantry_core::events::{Event, EventSink};
use tenantry_core::ids::TenantId;

/// The sinks told about committed events.
pub(crate) type Sinks = Arc<RwLock<Vec<Arc<dyn EventSink>>>>;

/// Events a write published, kept until its commit.
#[derive(Default, Clone)]
pub(crate) struct Published(Arc<Mutex<Vec<Event>>>);

impl Published {
    pub(crate) fn push(&self, e: Event) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(e);
    }

    /// The hook that hands the events to the sinks after the commit (then runs `then`).
    pub(crate) fn on_commit(
        &self,
        tenant: TenantId,
        sinks: Sinks,
        then: Option<Box<dyn FnOnce() + Send>>,
    ) -> Box<dyn FnOnce() + Send> {
        let events = self.0.clone();
        Box::new(move || {
            if let Some(f) = then {
                f();
            }
            let events = std::mem::take(&mut *events.lock().unwrap_or_else(|e| e.into_inner()));
            if !events.is_empty() {
                for sink in sinks.read().unwrap_or_else(|e| e.into_inner()).iter() {
                    sink.published(&tenant, &events);
                }
            }
        })
    }
}
