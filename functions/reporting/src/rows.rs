//! What the reporting tables hold, derived from the events (plain functions).

use chrono::{DateTime, Utc};
use orderflow_contracts::{OrderBilled, OrderLine, OrderPlaced, OrderState, OrderStatus, PaymentRefunded, Totals};

/// One `orders` row as an order event describes it (the billing columns aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    /// The order.
    pub order_id: String,
    /// Its version: 1 when placed, then one more per status change.
    pub version: u64,
    /// `Placed`, `ReadyToShip`, ...
    pub status: String,
    /// ISO 4217 code.
    pub currency: String,
    /// Amounts, minor units.
    pub totals: Totals,
    /// When it was placed.
    pub placed_at: DateTime<Utc>,
    /// When it entered its status.
    pub status_at: DateTime<Utc>,
    /// Once a label exists.
    pub tracking_number: Option<String>,
    /// Its lines, numbered from 1 in the event's order.
    pub lines: Vec<OrderLine>,
}

/// The billing columns of an `orders` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillingRow {
    /// The order.
    pub order_id: String,
    /// Its invoice.
    pub invoice_id: String,
    /// Charged, minor units.
    pub billed_minor: i64,
    /// When billing happened.
    pub billed_at: DateTime<Utc>,
}

fn name<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// The row of a newly placed order (version 1, `Placed`).
pub fn placed(event: &OrderPlaced) -> OrderRow {
    OrderRow {
        order_id: event.order_id.clone(),
        version: 1,
        status: name(&OrderStatus::Placed),
        currency: name(&event.currency),
        totals: event.totals,
        placed_at: event.placed_at,
        status_at: event.placed_at,
        tracking_number: None,
        lines: event.lines.clone(),
    }
}

/// The row of an order as a status change carries it.
pub fn state(order: &OrderState, occurred_at: DateTime<Utc>) -> OrderRow {
    OrderRow {
        order_id: order.order_id.clone(),
        version: order.version,
        status: name(&order.status),
        currency: name(&order.currency),
        totals: order.totals,
        placed_at: order.history.first().map(|h| h.at).unwrap_or(occurred_at),
        status_at: order.history.last().map(|h| h.at).unwrap_or(occurred_at),
        tracking_number: order.tracking_number.clone(),
        lines: order.lines.clone(),
    }
}

/// The billing columns an `OrderBilled` sets.
pub fn billed(event: &OrderBilled, occurred_at: DateTime<Utc>) -> BillingRow {
    BillingRow {
        order_id: event.order_id.clone(),
        invoice_id: event.invoice_id.clone(),
        billed_minor: event.amount_minor,
        billed_at: occurred_at,
    }
}

/// The refund columns of an `orders` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRow {
    /// The order.
    pub order_id: String,
    /// Given back, minor units (0: nothing had been charged).
    pub refunded_minor: i64,
    /// When.
    pub refunded_at: DateTime<Utc>,
}

/// The refund columns a `PaymentRefunded` sets.
pub fn refunded(event: &PaymentRefunded) -> RefundRow {
    RefundRow { order_id: event.order_id.clone(), refunded_minor: event.amount_minor, refunded_at: event.refunded_at }
}
