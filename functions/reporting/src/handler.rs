//! The reporting consumer's handler.
//!
//! ```text
//! OrderPlaced / OrderStatusChanged ─► upsert_order (newer version only) ─► done
//! OrderBilled ─────────────────────► record_billing ─► done
//! PaymentRefunded ─────────────────► record_refund ─► done (revenue nets it)
//!     database down ─► retried after a growing delay · a row it refuses ─► DLQ with its reason
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use orderflow_contracts::{inbound, OrderBilled, OrderPlaced, OrderStatusChanged, PaymentRefunded};
use orderflow_harness::{Handler, HandlerError, RecordContext, StoreError};
use tracing::info;

use crate::rows;
use crate::store::ReportingStore;

inbound! {
    /// What the reporting consumer listens to.
    pub enum ReportingInput {
        Placed(OrderPlaced),
        Billed(OrderBilled),
        StatusChanged(OrderStatusChanged),
        Refunded(PaymentRefunded),
    }
}

/// The handler: a reporting store.
pub struct ReportingHandler {
    store: Arc<dyn ReportingStore>,
}

impl ReportingHandler {
    /// The handler over its port.
    pub fn new(store: Arc<dyn ReportingStore>) -> Self {
        Self { store }
    }
}

fn failed(e: StoreError) -> HandlerError {
    if e.retryable {
        HandlerError::retryable(e)
    } else {
        HandlerError::permanent(e)
    }
}

#[async_trait]
impl Handler<ReportingInput> for ReportingHandler {
    async fn handle(&self, event: ReportingInput, ctx: &RecordContext) -> Result<(), HandlerError> {
        let row = match &event {
            ReportingInput::Billed(billed) => {
                let billing = rows::billed(billed, ctx.metadata.occurred_at);
                self.store.record_billing(&billing).await.map_err(failed)?;
                info!(order_id = %billing.order_id, "billing reported");
                return Ok(());
            }
            ReportingInput::Refunded(refunded) => {
                let refund = rows::refunded(refunded);
                self.store.record_refund(&refund).await.map_err(failed)?;
                info!(order_id = %refund.order_id, refunded_minor = refund.refunded_minor, "refund reported");
                return Ok(());
            }
            ReportingInput::Placed(placed) => rows::placed(placed),
            ReportingInput::StatusChanged(changed) => rows::state(&changed.order, ctx.metadata.occurred_at),
        };
        let applied = self.store.upsert_order(&row).await.map_err(failed)?;
        if applied {
            info!(order_id = %row.order_id, version = row.version, status = %row.status, "order reported");
        } else {
            info!(order_id = %row.order_id, version = row.version, "the stored row is as new or newer: nothing to do");
        }
        Ok(())
    }
}
