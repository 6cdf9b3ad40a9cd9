//! `sales-order-status`: the last step of the workflow, as Sales sees it.
//!
//! ```text
//! ShippingLabelCreated  ─► ReadyToShip   ┐
//! PaymentDeclined       ─► PaymentFailed ├─► versioned update, OrderStatusChanged (full order, version)
//! StockAllocationFailed ─► Backordered   ┘    in the same write's outbox ─► stream ─► relay ─► bus
//! ```
//!
//! Only legal transitions are written (out of `Placed`); an event that contradicts the order's history
//! is a permanent failure and goes to the dead-letter queue for a human. A concurrent change of the
//! order is detected by its version and the decision is made again on the fresh copy. The change and
//! its announcement are one write, so a crash after it loses nothing and a redelivery finds the order
//! already moved and has nothing left to do.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use orderflow_contracts::{
    inbound, Envelope, OrderStatus, OrderStatusChanged, PaymentDeclined, ShippingLabelCreated, StockAllocationFailed,
};
use orderflow_harness::{Handler, HandlerError, OutboundEvent, RecordContext};
use tracing::info;

use crate::orders::{transition, OrderStore, Saved};

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

/// The handler: the order store.
pub struct OrderStatusHandler {
    orders: Arc<dyn OrderStore>,
}

impl OrderStatusHandler {
    /// The handler over its port.
    pub fn new(orders: Arc<dyn OrderStore>) -> Self {
        Self { orders }
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
                .await?
                .ok_or_else(|| HandlerError::permanent(format!("order {order_id} is unknown to Sales")))?;
            if order.state.status == next {
                // Moved by an earlier delivery; that write carried its announcement.
                info!(order_id = %order_id, status = next.as_str(), "already in this status");
                return Ok(());
            }
            let state = transition(&order.state, next, Utc::now(), reason.clone(), tracking.clone())
                .map_err(HandlerError::permanent)?;
            let changed = OrderStatusChanged { previous_status: order.state.status, order: state.clone() };
            let announcement = OutboundEvent::from_envelope(&Envelope::caused_by(&ctx.metadata, changed));
            match self.orders.change_status(&state, order.state.version, &announcement).await? {
                Saved::Saved => {
                    info!(order_id = %order_id, status = next.as_str(), version = state.version, "order status changed");
                    return Ok(());
                }
                Saved::VersionConflict => continue,
            }
        }
        Err(HandlerError::retryable(format!("order {order_id} kept changing under {MAX_CONFLICTS} attempts")))
    }
}
