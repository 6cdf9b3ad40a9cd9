//! `sales-order-status`: the last step of the workflow, as Sales sees it.
//!
//! ```text
//! ShippingLabelCreated  ─► ReadyToShip   ┐
//! PaymentDeclined       ─► PaymentFailed ├─► versioned save ─► OrderStatusChanged (full order, version)
//! StockAllocationFailed ─► Backordered   ┘
//! ```
//!
//! Only legal transitions are written (out of `Placed`); an event that contradicts the order's history
//! is a permanent failure and goes to the dead-letter queue for a human. A concurrent change of the
//! order is detected by its version and the decision is made again on the fresh copy.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use orderflow_contracts::{
    inbound, Envelope, OrderStatus, OrderStatusChanged, PaymentDeclined, ShippingLabelCreated, StockAllocationFailed,
};
use orderflow_harness::{EventPublisher, Handler, HandlerError, OutboundEvent, RecordContext};
use tracing::info;

use crate::orders::{transition, OrderStore, Saved, StoredOrder};

inbound! {
    /// The events that end an order's workflow.
    pub enum StatusInput {
        LabelCreated(ShippingLabelCreated),
        PaymentDeclined(PaymentDeclined),
        StockShort(StockAllocationFailed),
    }
}

/// How many times a version conflict is re-decided before the record is handed back to SQS.
const MAX_CONFLICTS: usize = 5;

/// The handler: the order store and the publisher.
pub struct OrderStatusHandler {
    orders: Arc<dyn OrderStore>,
    publisher: Arc<dyn EventPublisher>,
}

impl OrderStatusHandler {
    /// The handler over its ports.
    pub fn new(orders: Arc<dyn OrderStore>, publisher: Arc<dyn EventPublisher>) -> Self {
        Self { orders, publisher }
    }

    async fn announce(&self, order: &StoredOrder, ctx: &RecordContext) -> Result<(), HandlerError> {
        let previous_status = order.state.history.iter().rev().nth(1).map(|h| h.status).unwrap_or(OrderStatus::Placed);
        let changed = OrderStatusChanged { previous_status, order: order.state.clone() };
        let envelope = Envelope::caused_by(&ctx.metadata, changed);
        self.publisher.publish(vec![OutboundEvent::from_envelope(&envelope)]).await?;
        Ok(())
    }
}

#[async_trait]
impl Handler<StatusInput> for OrderStatusHandler {
    async fn handle(&self, event: StatusInput, ctx: &RecordContext) -> Result<(), HandlerError> {
        let (order_id, next, reason, tracking) = match event {
            StatusInput::LabelCreated(e) => (e.order_id, OrderStatus::ReadyToShip, None, Some(e.tracking_number)),
            StatusInput::PaymentDeclined(e) => (e.order_id, OrderStatus::PaymentFailed, Some(e.reason), None),
            StatusInput::StockShort(e) => {
                let short: Vec<String> = e
                    .shortages
                    .iter()
                    .map(|s| format!("{}: {} requested, {} available", s.sku, s.requested, s.available))
                    .collect();
                (e.order_id, OrderStatus::Backordered, Some(format!("out of stock ({})", short.join("; "))), None)
            }
        };
        for _ in 0..MAX_CONFLICTS {
            let order = self
                .orders
                .get(&order_id)
                .await
                .map_err(HandlerError::retryable)?
                .ok_or_else(|| HandlerError::permanent(format!("order {order_id} is unknown to Sales")))?;
            if order.state.status == next {
                // Moved already by an earlier attempt that failed before (or while) publishing:
                // announce again; the event id is derived from the cause, so it is the same event.
                info!(order_id = %order_id, status = next.as_str(), "already in this status; announcing again");
                return self.announce(&order, ctx).await;
            }
            let state = transition(&order.state, next, Utc::now(), reason.clone(), tracking.clone())
                .map_err(HandlerError::permanent)?;
            let expected = order.state.version;
            let updated = StoredOrder { state, ..order };
            match self.orders.save(&updated, expected).await.map_err(HandlerError::retryable)? {
                Saved::Saved => {
                    info!(order_id = %order_id, status = next.as_str(), version = updated.state.version, "order status changed");
                    return self.announce(&updated, ctx).await;
                }
                Saved::VersionConflict => continue,
            }
        }
        Err(HandlerError::retryable(format!("order {order_id} kept changing under {MAX_CONFLICTS} attempts")))
    }
}
