//! The cache consumer's handler.
//!
//! ```text
//! OrderStatusChanged ─► put_if_newer(order) ─► set ─► done
//!                                          ├► an equal or newer copy is cached ─► done (nothing to do)
//!                                          └► Redis down ─► retried after a growing delay
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use orderflow_contracts::OrderStatusChanged;
use orderflow_harness::{Handler, HandlerError, RecordContext};
use tracing::info;

use crate::store::OrderCache;

/// The handler: an order cache.
pub struct CacheHandler {
    cache: Arc<dyn OrderCache>,
}

impl CacheHandler {
    /// The handler over its port.
    pub fn new(cache: Arc<dyn OrderCache>) -> Self {
        Self { cache }
    }
}

#[async_trait]
impl Handler<OrderStatusChanged> for CacheHandler {
    async fn handle(&self, event: OrderStatusChanged, _ctx: &RecordContext) -> Result<(), HandlerError> {
        let order = &event.order;
        match self.cache.put_if_newer(order).await {
            Ok(true) => {
                info!(order_id = %order.order_id, version = order.version, status = ?order.status, "order cached")
            }
            Ok(false) => info!(order_id = %order.order_id, version = order.version,
                "an equal or newer copy is cached: this older event changes nothing"),
            Err(e) => return Err(HandlerError::retryable(e)),
        }
        Ok(())
    }
}
