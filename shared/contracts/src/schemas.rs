//! JSON Schemas of every envelope, generated from the Rust types. `events-samples/schemas/` holds the
//! committed copies that non-Rust consumers read; a test fails when they are stale, and
//! `UPDATE_SCHEMAS=1 cargo test -p orderflow-contracts` rewrites them.

use schemars::schema_for;

use crate::{
    Envelope, Event, OrderBilled, OrderCancelled, OrderPlaced, OrderStatusChanged, PaymentDeclined, PaymentRefunded,
    ShippingLabelCreated, StockAllocationFailed, StockReceived, StockReleased,
};

fn one<E: Event>() -> (String, String) {
    let schema = schema_for!(Envelope<E>);
    let file = format!("{}.v{}.schema.json", E::NAME, E::SCHEMA_VERSION);
    let value = serde_json::to_value(&schema).expect("a schema serialises");
    let mut text = serde_json::to_string_pretty(&crate::canonical::canonical(&value)).expect("JSON serialises");
    text.push('\n');
    (file, text)
}

/// Every schema as (file name, pretty JSON text).
pub fn all() -> Vec<(String, String)> {
    vec![
        one::<OrderPlaced>(),
        one::<OrderBilled>(),
        one::<PaymentDeclined>(),
        one::<ShippingLabelCreated>(),
        one::<StockAllocationFailed>(),
        one::<OrderStatusChanged>(),
        one::<OrderCancelled>(),
        one::<PaymentRefunded>(),
        one::<StockReceived>(),
        one::<StockReleased>(),
    ]
}
