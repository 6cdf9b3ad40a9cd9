//! The lake's batch handler.
//!
//! ```text
//! batch of any events ─► objects (one per event_type/dt, named from its event ids) ─► put each
//!     put ok ─► its records acknowledged · put failed ─► its records retried after a growing delay
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::join_all;
use orderflow_contracts::AnyEvent;
use orderflow_harness::{BatchHandler, BatchRecord, HandlerError};
use tracing::{info, warn};

use crate::objects::{objects, CustomerKeys};
use crate::store::ObjectStore;

/// The handler: an object store and the customer keys.
pub struct LakeHandler {
    store: Arc<dyn ObjectStore>,
    keys: CustomerKeys,
}

impl LakeHandler {
    /// The handler over its port, keying customers with `keys`.
    pub fn new(store: Arc<dyn ObjectStore>, keys: CustomerKeys) -> Self {
        Self { store, keys }
    }
}

#[async_trait]
impl BatchHandler<AnyEvent> for LakeHandler {
    async fn handle_batch(&self, records: &[BatchRecord<AnyEvent>]) -> Vec<Result<(), HandlerError>> {
        let objects = objects(records.iter().map(|r| (&r.event, &r.ctx.metadata)), &self.keys);
        let puts = join_all(objects.into_iter().map(|object| async move {
            let lines = object.records.len();
            let outcome = self.store.put(&object.key, object.body).await;
            match &outcome {
                Ok(()) => info!(key = %object.key, lines, "lake object written"),
                Err(e) => {
                    warn!(key = %object.key, lines, error = %e, "lake object not written: its records are retried")
                }
            }
            (object.records, outcome)
        }))
        .await;
        let mut results: Vec<Result<(), HandlerError>> = records.iter().map(|_| Ok(())).collect();
        for (positions, outcome) in puts {
            if let Err(e) = outcome {
                for i in positions {
                    results[i] = Err(HandlerError::retryable(&e));
                }
            }
        }
        results
    }
}
