//! `sales-order-status`: where the workflow's steps end up, as Sales sees them.
//!
//! ```text
//! ShippingLabelCreated    ─► ReadyToShip   (from Placed, or Backordered after a restock)
//! PaymentDeclined         ─► PaymentFailed
//! StockAllocationFailed   ─► Backordered   (its deadline scheduled first: crate::deadlines)
//! BackorderDeadlinePassed ─► Cancelling    (still Backordered? OrderCancelled: BackorderDeadline)
//! PaymentRefunded         ─► Cancelled     (from Cancelling; the refund recorded on the order)
//!        every change: a versioned update, OrderStatusChanged (full order) in the same write's outbox
//!                      ─► bus at once (crate::announce), and ─► stream ─► relay ─► bus if not marked
//! ```
//!
//! Only legal transitions are written ([`OrderStatus::TRANSITIONS`]); an event that contradicts the
//! order's history is a permanent failure and goes to the dead-letter queue for a human. Once an
//! order is `Cancelling` or `Cancelled`, the outcomes of steps that were under way (a label, a
//! decline, a shortage) are superseded: Billing refunds and Warehouse releases whatever they did, so
//! they are acknowledged and change nothing; so is a shortage that arrives after a restock already
//! shipped the order (`ReadyToShip`). A concurrent change of the order is detected by its
//! version and the decision is made again on the fresh copy. The change and its announcement are
//! one write, so a crash after it loses nothing and a redelivery finds the order already moved.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use orderflow_contracts::{
    display_amount, inbound, CancelledBy, Envelope, OrderState, OrderStatus, OrderStatusChanged, PaymentDeclined,
    PaymentRefunded, ShippingLabelCreated, StockAllocationFailed,
};
use orderflow_harness::{Handler, HandlerError, OutboundEvent, RecordContext};
use tracing::{info, warn};

use crate::deadlines::{self, BackorderDeadlinePassed, Deadlines};
use crate::orders::{cancel, transition, Cancellation, OrderStore, Saved, MAX_CONFLICTS};

inbound! {
    /// The events that move an order on.
    pub enum StatusInput {
        LabelCreated(ShippingLabelCreated),
        PaymentDeclined(PaymentDeclined),
        StockShort(StockAllocationFailed),
        Refunded(PaymentRefunded),
        DeadlinePassed(BackorderDeadlinePassed),
    }
}

/// How long a backorder waits for stock unless configured otherwise (`BACKORDER_DEADLINE_SECONDS`).
pub const BACKORDER_DEADLINE: Duration = Duration::from_secs(14 * 24 * 3600);

/// The handler: the order store, the deadlines and how long a backorder may wait.
pub struct OrderStatusHandler {
    orders: Arc<dyn OrderStore>,
    deadlines: Arc<dyn Deadlines>,
    backorder_deadline: Duration,
}

impl OrderStatusHandler {
    /// The handler over its ports.
    pub fn new(orders: Arc<dyn OrderStore>, deadlines: Arc<dyn Deadlines>, backorder_deadline: Duration) -> Self {
        Self { orders, deadlines, backorder_deadline }
    }

    /// Deletes a deadline that can no longer matter; a failure only leaves a schedule that will
    /// find nothing to do.
    async fn clear_deadline(&self, order_id: &str) {
        if let Err(e) = self.deadlines.clear(order_id).await {
            warn!(order_id, error = %e, "could not delete the backorder deadline; it will fire and change nothing");
        }
    }

    async fn deadline_passed(&self, event: BackorderDeadlinePassed, ctx: &RecordContext) -> Result<(), HandlerError> {
        let order_id = event.order_id;
        let Some(order) = self.orders.get(&order_id).await? else {
            return Err(HandlerError::permanent(format!("order {order_id} is unknown to Sales")));
        };
        if order.state.status != OrderStatus::Backordered {
            info!(order_id = %order_id, status = order.state.status.as_str(), "backorder deadline passed; no longer backordered");
            return Ok(());
        }
        let outcome = cancel(
            self.orders.as_ref(),
            &order_id,
            CancelledBy::BackorderDeadline,
            Some(&ctx.metadata),
            &ctx.metadata.correlation_id,
        )
        .await?;
        match outcome {
            Cancellation::Accepted(_) => info!(order_id = %order_id, "backorder deadline passed: order cancelled"),
            // The status only: the order itself holds the customer's contact details.
            Cancellation::AlreadyCancelled(state) | Cancellation::Refused(state) => {
                info!(order_id = %order_id, status = state.status.as_str(), "backorder deadline passed; nothing to cancel")
            }
            Cancellation::Unknown => info!(order_id = %order_id, "backorder deadline passed; the order is gone"),
        }
        Ok(())
    }
}

/// Whether the order was ever backordered: the orders whose deadline may still be scheduled when they
/// reach ReadyToShip or Cancelled. (Every other order would cost a DeleteSchedule that finds nothing;
/// the one other way to leave a schedule behind, a deadline set before a write that then lost a
/// version conflict, is cleared where it happens, in `handle`.)
fn was_backordered(state: &OrderState) -> bool {
    state.history.iter().any(|h| h.status == OrderStatus::Backordered)
}

#[async_trait]
impl Handler<StatusInput> for OrderStatusHandler {
    async fn handle(&self, event: StatusInput, ctx: &RecordContext) -> Result<(), HandlerError> {
        let mut refunded_minor = None;
        let (order_id, next, reason, tracking) = match event {
            StatusInput::DeadlinePassed(e) => return self.deadline_passed(e, ctx).await,
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
            StatusInput::Refunded(e) => {
                refunded_minor = Some(e.amount_minor);
                let reason = if e.amount_minor == 0 {
                    "nothing was charged".to_string()
                } else {
                    format!("refunded {}", display_amount(e.amount_minor, e.currency))
                };
                (e.order_id, OrderStatus::Cancelled, Some(reason), None)
            }
        };
        // Whether this delivery scheduled the deadline (before its write, which may then lose a
        // version conflict to a write that leaves the order not backordered).
        let mut scheduled = false;
        for _ in 0..MAX_CONFLICTS {
            let order = self
                .orders
                .get(&order_id)
                .await?
                .ok_or_else(|| HandlerError::permanent(format!("order {order_id} is unknown to Sales")))?;
            let current = order.state.status;
            if current == next {
                // Moved by an earlier delivery; that write carried its announcement.
                info!(order_id = %order_id, status = next.as_str(), "already in this status");
                // The earlier delivery may have died before deleting the deadline: delete it again,
                // for an order that was ever backordered.
                if matches!(next, OrderStatus::ReadyToShip | OrderStatus::Cancelled) && was_backordered(&order.state) {
                    self.clear_deadline(&order_id).await;
                }
                return Ok(());
            }
            if matches!(current, OrderStatus::Cancelling | OrderStatus::Cancelled) && next != OrderStatus::Cancelled {
                // A step that was under way when the order was cancelled: Billing and Warehouse
                // compensate for it, so it changes nothing here.
                info!(order_id = %order_id, status = current.as_str(), superseded = next.as_str(), "outcome superseded by the cancellation");
                if scheduled {
                    self.clear_deadline(&order_id).await;
                }
                return Ok(());
            }
            if (current, next) == (OrderStatus::ReadyToShip, OrderStatus::Backordered) {
                // A shortage delivered late, after a restock already shipped the order.
                info!(order_id = %order_id, "a shortage overtaken by the restock that shipped the order");
                if scheduled {
                    self.clear_deadline(&order_id).await;
                }
                return Ok(());
            }
            let now = Utc::now();
            let mut state = transition(&order.state, next, now, reason.clone(), tracking.clone())
                .map_err(HandlerError::permanent)?;
            if next == OrderStatus::Backordered {
                // The deadline first: a crash after it leaves a schedule that finds nothing to do,
                // never a backorder without one.
                let at =
                    now + chrono::Duration::from_std(self.backorder_deadline).unwrap_or(chrono::Duration::days(14));
                self.deadlines.set(&order_id, at, deadlines::message(&order_id, at, &ctx.metadata)).await?;
                scheduled = true;
                info!(order_id = %order_id, deadline = %deadlines::show(at), "backorder deadline set");
            }
            if next == OrderStatus::Cancelled {
                state.refunded_minor = refunded_minor;
            }
            let changed = OrderStatusChanged { previous_status: current, order: state.clone() };
            let announcement = OutboundEvent::from_envelope(&Envelope::caused_by(&ctx.metadata, changed));
            match self.orders.change_status(&state, order.state.version, &[announcement]).await? {
                Saved::Saved => {
                    info!(order_id = %order_id, from = current.as_str(), status = next.as_str(), version = state.version, "order status changed");
                    if matches!(next, OrderStatus::ReadyToShip | OrderStatus::Cancelled) && was_backordered(&state) {
                        self.clear_deadline(&order_id).await;
                    }
                    return Ok(());
                }
                Saved::VersionConflict => continue,
            }
        }
        Err(HandlerError::retryable(format!("order {order_id} kept changing under {MAX_CONFLICTS} attempts")))
    }
}
