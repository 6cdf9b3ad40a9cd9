//! Which event gets which text. Texts are short (one SMS segment where possible) and carry no more
//! personal data than the customer's own order needs.

use orderflow_contracts::{OrderStatus, OrderStatusChanged};

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

/// The text for a status change, if that status gets one (only `ReadyToShip` does; the other
/// outcomes are explained by email).
pub fn status_changed(changed: &OrderStatusChanged) -> Option<Sms> {
    let order = &changed.order;
    (order.status == OrderStatus::ReadyToShip).then(|| Sms {
        order_id: order.order_id.clone(),
        to: order.customer.phone.clone(),
        body: match &order.tracking_number {
            Some(tracking) => {
                format!("Orderflow: order {} is ready to ship. Tracking number {tracking}.", short(&order.order_id))
            }
            None => format!("Orderflow: order {} is ready to ship.", short(&order.order_id)),
        },
    })
}
