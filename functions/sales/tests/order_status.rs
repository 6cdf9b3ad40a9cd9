//! The order-status consumer, GIVEN / WHEN / THEN over the in-memory order store, through the real
//! harness, fed the samples in `events-samples/sales-order-status/`.

use std::sync::Arc;

use chrono::Utc;
use orderflow_contracts::{
    Address, Currency, Customer, Envelope, OrderLine, OrderState, OrderStatus, OrderStatusChanged, PaymentDeclined,
    StatusEntry, Totals,
};
use orderflow_harness::consumer::decode;
use orderflow_harness::testing::{eventbridge_body, sqs_batch, sqs_sample, Harnessed};
use pretty_assertions::assert_eq;
use sales::order_status::{OrderStatusHandler, StatusInput};
use sales::orders::{InMemoryOrderStore, OrderStore, StoredOrder};

const ORDER: &str = "ord-7f3a2c";

fn placed(order_id: &str, status: OrderStatus) -> StoredOrder {
    let lines = vec![OrderLine { sku: "BOOK-001".into(), quantity: 2, unit_price_minor: 1999 }];
    StoredOrder {
        state: OrderState {
            order_id: order_id.into(),
            status,
            version: 1,
            customer: Customer {
                customer_id: "c".into(),
                name: "Ada".into(),
                email: "ada@example.com".into(),
                phone: "+447700900123".into(),
            },
            totals: Totals::for_lines(&lines, 0, 0).unwrap(),
            lines,
            currency: Currency::GBP,
            shipping_address: Address {
                line1: "1".into(),
                line2: None,
                city: "London".into(),
                postal_code: "N1".into(),
                country: "GB".into(),
            },
            tracking_number: None,
            history: vec![StatusEntry { status, at: Utc::now(), reason: None }],
        },
        request_hash: "h".into(),
        correlation_id: "c0ffee00-1111-4222-8333-444455556666".into(),
    }
}

struct Rig {
    orders: Arc<InMemoryOrderStore>,
    consumer: Harnessed<StatusInput>,
}

fn rig(status: OrderStatus) -> Rig {
    let orders = Arc::new(InMemoryOrderStore::default());
    orders.insert(placed(ORDER, status));
    let handler = OrderStatusHandler::new(orders.clone());
    Rig { orders, consumer: Harnessed::new("sales-order-status", Arc::new(handler)) }
}

/// The `OrderStatusChanged` events the store's writes carried in their outbox.
fn changed(rig: &Rig) -> Vec<Envelope<OrderStatusChanged>> {
    rig.orders
        .announcements()
        .into_iter()
        .filter(|e| e.detail_type == "OrderStatusChanged")
        .map(|e| serde_json::from_str(&e.detail).unwrap())
        .collect()
}

#[tokio::test]
async fn each_sample_moves_a_placed_order_to_its_final_status() {
    for (file, status, reason) in [
        ("sales-order-status/shipping-label-created.sqs.json", OrderStatus::ReadyToShip, None),
        (
            "sales-order-status/payment-declined.sqs.json",
            OrderStatus::PaymentFailed,
            Some("card declined: insufficient funds"),
        ),
        (
            "sales-order-status/stock-allocation-failed.sqs.json",
            OrderStatus::Backordered,
            Some("out of stock (MUG-002: 1 requested, 0 available)"),
        ),
    ] {
        let rig = rig(OrderStatus::Placed);
        let event = sqs_sample(file);
        let (_, cause) = decode::<StatusInput>(event.records[0].body.as_deref()).unwrap();
        assert_eq!(rig.consumer.failures(event).await, Vec::<String>::new(), "{file}");

        let order = rig.orders.get(ORDER).await.unwrap().unwrap().state;
        assert_eq!((order.status, order.version), (status, 2), "{file}");
        assert_eq!(order.history.last().unwrap().reason.as_deref(), reason, "{file}");
        if status == OrderStatus::ReadyToShip {
            assert_eq!(order.tracking_number.as_deref(), Some("OF123456789GB"));
        }
        let changed = changed(&rig);
        assert_eq!(changed.len(), 1, "{file}");
        assert_eq!(changed[0].data.previous_status, OrderStatus::Placed);
        assert_eq!(changed[0].data.order, order, "carries the full state");
        assert_eq!(changed[0].metadata.correlation_id, cause.correlation_id);
        assert_eq!(changed[0].metadata.causation_id, Some(cause.event_id.to_string()));
    }
}

#[tokio::test]
async fn an_illegal_transition_goes_to_the_dead_letter_queue() {
    let rig = rig(OrderStatus::PaymentFailed);
    let event = sqs_sample("sales-order-status/shipping-label-created.sqs.json");
    assert_eq!(rig.consumer.failures(event).await, Vec::<String>::new(), "dead-lettered, so acknowledged");
    let letters = rig.consumer.dead_letters.letters();
    assert_eq!(letters.len(), 1);
    assert!(letters[0].reason.contains("cannot move from PaymentFailed to ReadyToShip"), "{}", letters[0].reason);
    assert_eq!(rig.orders.get(ORDER).await.unwrap().unwrap().state.status, OrderStatus::PaymentFailed, "unchanged");
    assert!(rig.orders.announcements().is_empty());
}

#[tokio::test]
async fn an_unknown_order_goes_to_the_dead_letter_queue() {
    let orders = Arc::new(InMemoryOrderStore::default());
    let consumer: Harnessed<StatusInput> =
        Harnessed::new("sales-order-status", Arc::new(OrderStatusHandler::new(orders)));
    let event = sqs_sample("sales-order-status/payment-declined.sqs.json");
    assert!(consumer.failures(event).await.is_empty());
    assert!(consumer.dead_letters.letters()[0].reason.contains("unknown to Sales"));
}

#[tokio::test]
async fn a_redelivery_after_the_move_neither_moves_nor_announces_again() {
    let rig = rig(OrderStatus::Placed);
    let body = sqs_sample("sales-order-status/payment-declined.sqs.json").records[0].body.clone().unwrap();
    let (declined, cause) = decode::<PaymentDeclined>(Some(&body)).unwrap();
    assert!(rig.consumer.failures(sqs_batch(vec![body])).await.is_empty());
    // A fresh harness (the completion mark was lost) receives the same event again.
    let again: Harnessed<StatusInput> =
        Harnessed::new("sales-order-status", Arc::new(OrderStatusHandler::new(rig.orders.clone())));
    let envelope = Envelope { metadata: cause, data: declined };
    assert!(again.failures(sqs_batch(vec![eventbridge_body(&envelope)])).await.is_empty());

    let order = rig.orders.get(ORDER).await.unwrap().unwrap().state;
    assert_eq!((order.status, order.version, order.history.len()), (OrderStatus::PaymentFailed, 2, 2));
    assert_eq!(changed(&rig).len(), 1, "the move's own write announced it, once");
}

#[tokio::test]
async fn a_status_change_rewrites_only_its_own_fields() {
    // GIVEN an order whose idempotency data the API wrote
    let rig = rig(OrderStatus::Placed);
    let before = rig.orders.get(ORDER).await.unwrap().unwrap();
    // WHEN it moves
    let event = sqs_sample("sales-order-status/shipping-label-created.sqs.json");
    assert!(rig.consumer.failures(event).await.is_empty());
    // THEN what the change does not own is as it was
    let after = rig.orders.get(ORDER).await.unwrap().unwrap();
    assert_eq!((after.request_hash, after.correlation_id), (before.request_hash, before.correlation_id));
}
