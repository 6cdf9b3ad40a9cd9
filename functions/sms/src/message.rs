//! Which event gets which text. Texts are short (one SMS segment where possible) and carry no more
//! personal data than the customer's own order needs.

use orderflow_contracts::{display_amount, CancelledBy, OrderStatus, OrderStatusChanged};

/// One text to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sms {
    /// The order it is about (for logs and idempotency; never the phone number).
    pub order_id: String,
    /// E.164 phone number.
    pub to: String,
    /// The text.
    pub body: String,
}

/// The first 8 characters of an order id: enough for a customer to recognise it.
fn short(order_id: &str) -> &str {
    orderflow_contracts::short_order_id(order_id)
}

/// The text for a status change, if that status gets one: `ReadyToShip` (saying so when it comes
/// after a delay), and `Cancelled` by the backorder deadline when money was given back: the
/// customer did not ask for it. A cancellation the customer asked for gets an email, no text:
/// ordering and cancelling must not make the shop pay for texts. The other outcomes are explained
/// by email.
pub fn status_changed(changed: &OrderStatusChanged) -> Option<Sms> {
    let order = &changed.order;
    let id = short(&order.order_id);
    let body = match order.status {
        OrderStatus::ReadyToShip => {
            let news = if changed.previous_status == OrderStatus::Backordered {
                format!("Orderflow: good news, order {id} is back in stock and ready to ship.")
            } else {
                format!("Orderflow: order {id} is ready to ship.")
            };
            match &order.tracking_number {
                Some(tracking) => format!("{news} Tracking number {tracking}."),
                None => news,
            }
        }
        OrderStatus::Cancelled => {
            let why = order.history.iter().rev().find(|h| h.status == OrderStatus::Cancelling)?.reason.as_deref();
            if why != Some(CancelledBy::BackorderDeadline.reason()) {
                return None;
            }
            let refunded = order.refunded_minor.filter(|m| *m > 0)?;
            format!(
                "Orderflow: order {id} is cancelled; {} is refunded to your card.",
                display_amount(refunded, order.currency)
            )
        }
        _ => return None,
    };
    Some(Sms { order_id: order.order_id.clone(), to: order.customer.phone.clone(), body })
}
