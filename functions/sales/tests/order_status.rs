//! The order-status consumer, GIVEN / WHEN / THEN over the in-memory order store, through the real
//! harness, fed the samples in `events-samples/sales-order-status/`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use orderflow_contracts::{
    Address, Currency, Customer, Envelope, OrderLine, OrderState, OrderStatus, OrderStatusChanged, PaymentDeclined,
    StatusEntry, Totals,
};
use orderflow_harness::consumer::decode;
use orderflow_harness_testing::{eventbridge_body, sqs_batch, sqs_sample, Harnessed};
use pretty_assertions::assert_eq;
use sales::deadlines::InMemoryDeadlines;
use sales::order_status::{OrderStatusHandler, StatusInput};
use sales::orders::{cancel, Cancellation, Created, InMemoryOrderStore, OrderStore, Saved, StoredOrder};

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
            refunded_minor: None,
        },
        request_hash: "h".into(),
        correlation_id: "c0ffee00-1111-4222-8333-444455556666".into(),
    }
}

struct Rig {
    orders: Arc<InMemoryOrderStore>,
    deadlines: Arc<InMemoryDeadlines>,
    consumer: Harnessed<StatusInput>,
}

/// How long a backorder waits in these tests.
const DEADLINE: Duration = Duration::from_secs(3600);

fn handler(orders: Arc<InMemoryOrderStore>, deadlines: Arc<InMemoryDeadlines>) -> Arc<OrderStatusHandler> {
    Arc::new(OrderStatusHandler::new(orders, deadlines, DEADLINE))
}

fn rig(status: OrderStatus) -> Rig {
    let orders = Arc::new(InMemoryOrderStore::default());
    orders.insert(placed(ORDER, status));
    let deadlines = Arc::new(InMemoryDeadlines::default());
    let consumer = Harnessed::new("sales-order-status", handler(orders.clone(), deadlines.clone()));
    Rig { orders, deadlines, consumer }
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
    let consumer: Harnessed<StatusInput> = Harnessed::new("sales-order-status", handler(orders, Arc::default()));
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
        Harnessed::new("sales-order-status", handler(rig.orders.clone(), rig.deadlines.clone()));
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

// ------------------------------------------------------------------ backorders, deadlines, cancellation

use orderflow_contracts::{
    CancelledBy, OrderCancelled, PaymentRefunded, ShippingLabelCreated, Shortage, StockAllocationFailed,
};

fn cancelled(rig: &Rig) -> Vec<Envelope<OrderCancelled>> {
    rig.orders
        .announcements()
        .into_iter()
        .filter(|e| e.detail_type == "OrderCancelled")
        .map(|e| serde_json::from_str(&e.detail).unwrap())
        .collect()
}

async fn status(rig: &Rig) -> OrderState {
    rig.orders.get(ORDER).await.unwrap().unwrap().state
}

async fn deliver<E: orderflow_contracts::Event>(rig: &Rig, data: E) {
    let body = eventbridge_body(&Envelope::new(data, None));
    assert_eq!(rig.consumer.failures(sqs_batch(vec![body])).await, Vec::<String>::new());
}

fn short() -> StockAllocationFailed {
    StockAllocationFailed {
        order_id: ORDER.into(),
        shortages: vec![Shortage { sku: "BOOK-001".into(), requested: 2, available: 0 }],
        failed_at: Utc::now(),
    }
}

fn label() -> ShippingLabelCreated {
    ShippingLabelCreated {
        order_id: ORDER.into(),
        shipment_id: format!("shp-{ORDER}"),
        carrier: "OrderflowPost".into(),
        tracking_number: "OF123GB".into(),
        label_bucket: "b".into(),
        label_key: "k".into(),
        created_at: Utc::now(),
    }
}

fn refunded(amount_minor: i64) -> PaymentRefunded {
    PaymentRefunded {
        order_id: ORDER.into(),
        invoice_id: format!("inv-{ORDER}"),
        amount_minor,
        currency: Currency::GBP,
        refund_reference: (amount_minor > 0).then(|| format!("rfd-inv-{ORDER}")),
        refunded_at: Utc::now(),
    }
}

/// Delivers the order's deadline message as the scheduler would: its body, as set.
async fn fire_deadline(rig: &Rig) {
    let (_, message) = rig.deadlines.of(ORDER).expect("a deadline is scheduled");
    assert_eq!(rig.consumer.failures(sqs_batch(vec![message])).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_backorder_gets_one_deadline_and_when_it_passes_the_order_is_cancelled() {
    let rig = rig(OrderStatus::Placed);
    let before = Utc::now();
    deliver(&rig, short()).await;
    assert_eq!(status(&rig).await.status, OrderStatus::Backordered);
    let (at, _) = rig.deadlines.of(ORDER).expect("a deadline");
    let wait = (at - before).num_seconds();
    assert!((3599..=3601).contains(&wait), "the configured hour, not {wait} s");

    fire_deadline(&rig).await;
    let order = status(&rig).await;
    assert_eq!((order.status, order.version), (OrderStatus::Cancelling, 3));
    let cancel = cancelled(&rig);
    assert_eq!(cancel.len(), 1);
    assert_eq!(cancel[0].data.cancelled_by, CancelledBy::BackorderDeadline);
    assert_eq!((cancel[0].data.total_minor, cancel[0].data.currency), (order.totals.total_minor, order.currency));
    let changes = changed(&rig);
    assert_eq!(changes.last().unwrap().data.order.status, OrderStatus::Cancelling, "read models hear it too");

    // The schedule fires again (at-least-once): nothing more.
    let fresh: Harnessed<StatusInput> =
        Harnessed::new("sales-order-status", handler(rig.orders.clone(), rig.deadlines.clone()));
    let (_, message) = rig.deadlines.of(ORDER).unwrap();
    assert!(fresh.failures(sqs_batch(vec![message])).await.is_empty());
    assert_eq!((status(&rig).await.version, cancelled(&rig).len()), (3, 1));
}

#[tokio::test]
async fn a_restocked_backorder_ships_its_deadline_is_deleted_and_a_late_firing_changes_nothing() {
    let rig = rig(OrderStatus::Placed);
    deliver(&rig, short()).await;
    let (_, message) = rig.deadlines.of(ORDER).unwrap();
    deliver(&rig, label()).await;
    let order = status(&rig).await;
    assert_eq!((order.status, order.tracking_number.as_deref()), (OrderStatus::ReadyToShip, Some("OF123GB")));
    assert_eq!(changed(&rig).last().unwrap().data.previous_status, OrderStatus::Backordered);
    assert!(rig.deadlines.of(ORDER).is_none(), "deleted");
    // A schedule that fired anyway (deleted too late).
    assert!(rig.consumer.failures(sqs_batch(vec![message])).await.is_empty());
    assert_eq!(status(&rig).await.status, OrderStatus::ReadyToShip);
    assert!(cancelled(&rig).is_empty());
    assert!(rig.consumer.dead_letters.letters().is_empty());
}

#[tokio::test]
async fn only_an_order_that_was_backordered_pays_for_deleting_a_deadline() {
    // Shipped straight away, delivered twice: no schedule exists, so no DeleteSchedule is asked for.
    let shipped = rig(OrderStatus::Placed);
    deliver(&shipped, label()).await;
    deliver(&shipped, label()).await;
    assert_eq!(status(&shipped).await.status, OrderStatus::ReadyToShip);
    assert_eq!(shipped.deadlines.deletes(), 0);

    // Backordered, then shipped, then the label again: the repeat deletes again (its first delivery
    // may have died before the delete), once each.
    let backordered = rig(OrderStatus::Placed);
    deliver(&backordered, short()).await;
    deliver(&backordered, label()).await;
    assert_eq!(backordered.deadlines.deletes(), 1);
    deliver(&backordered, label()).await;
    assert_eq!(backordered.deadlines.deletes(), 2);
    assert!(backordered.deadlines.of(ORDER).is_none());
}

/// The order store with a competing write: the first status change finds that a restock's label
/// moved the order to ReadyToShip just before, and loses the version conflict.
struct ShippedMeanwhile {
    inner: Arc<InMemoryOrderStore>,
    raced: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl OrderStore for ShippedMeanwhile {
    async fn create(
        &self,
        order: &StoredOrder,
        announcement: &orderflow_harness::OutboundEvent,
    ) -> Result<Created, orderflow_harness::StoreError> {
        self.inner.create(order, announcement).await
    }

    async fn get(&self, order_id: &str) -> Result<Option<StoredOrder>, orderflow_harness::StoreError> {
        self.inner.get(order_id).await
    }

    async fn change_status(
        &self,
        state: &OrderState,
        expected_version: u64,
        announcements: &[orderflow_harness::OutboundEvent],
    ) -> Result<Saved, orderflow_harness::StoreError> {
        if !self.raced.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let mut shipped = self.inner.get(&state.order_id).await?.unwrap().state;
            shipped.status = OrderStatus::ReadyToShip;
            shipped.version += 1;
            self.inner.change_status(&shipped, expected_version, &[]).await?;
        }
        self.inner.change_status(state, expected_version, announcements).await
    }
}

#[tokio::test]
async fn a_deadline_set_by_a_shortage_that_lost_the_race_to_a_shipment_is_deleted() {
    let inner = Arc::new(InMemoryOrderStore::default());
    inner.insert(placed(ORDER, OrderStatus::Placed));
    let store = Arc::new(ShippedMeanwhile { inner: inner.clone(), raced: Default::default() });
    let deadlines = Arc::new(InMemoryDeadlines::default());
    let consumer =
        Harnessed::new("sales-order-status", Arc::new(OrderStatusHandler::new(store, deadlines.clone(), DEADLINE)));
    let body = eventbridge_body(&Envelope::new(short(), None));
    assert!(consumer.failures(sqs_batch(vec![body])).await.is_empty());
    let order = inner.get(ORDER).await.unwrap().unwrap().state;
    assert_eq!(order.status, OrderStatus::ReadyToShip, "the shipment's write stands");
    assert!(deadlines.of(ORDER).is_none(), "no deadline left for a shipped order");
    assert_eq!(deadlines.deletes(), 1);
}

#[tokio::test]
async fn a_backorder_cancelled_by_its_customer_deletes_its_deadline_once_cancelled() {
    let rig = rig(OrderStatus::Placed);
    deliver(&rig, short()).await;
    assert!(rig.deadlines.of(ORDER).is_some());
    let cancelled = cancel(rig.orders.as_ref(), ORDER, CancelledBy::Customer, None, "c0rr").await.unwrap();
    assert!(matches!(cancelled, Cancellation::Accepted(_)), "{cancelled:?}");
    deliver(&rig, refunded(3998)).await;
    assert_eq!(status(&rig).await.status, OrderStatus::Cancelled);
    assert!(rig.deadlines.of(ORDER).is_none(), "deleted");
    assert_eq!(rig.deadlines.deletes(), 1);
}

#[tokio::test]
async fn a_cancelled_order_ends_cancelled_once_the_refund_is_known_with_the_refund_on_it() {
    let rig = rig(OrderStatus::Cancelling);
    deliver(&rig, refunded(3998)).await;
    let order = status(&rig).await;
    assert_eq!((order.status, order.refunded_minor), (OrderStatus::Cancelled, Some(3998)));
    assert_eq!(order.history.last().unwrap().reason.as_deref(), Some("refunded 39.98 GBP"));
    // The same refund again (Billing answers each cancellation): nothing more.
    deliver(&rig, refunded(3998)).await;
    assert_eq!((status(&rig).await.version, changed(&rig).len()), (2, 1));
}

#[tokio::test]
async fn outcomes_of_steps_under_way_when_the_order_was_cancelled_are_superseded() {
    for (name, late) in [("label", StatusInput::LabelCreated(label())), ("shortage", StatusInput::StockShort(short()))]
    {
        for current in [OrderStatus::Cancelling, OrderStatus::Cancelled] {
            let rig = rig(current);
            let body = match &late {
                StatusInput::LabelCreated(e) => eventbridge_body(&Envelope::new(e.clone(), None)),
                StatusInput::StockShort(e) => eventbridge_body(&Envelope::new(e.clone(), None)),
                _ => unreachable!(),
            };
            assert!(rig.consumer.failures(sqs_batch(vec![body])).await.is_empty());
            assert!(rig.consumer.dead_letters.letters().is_empty(), "{name} on {current:?}: acknowledged");
            assert_eq!((status(&rig).await.status, status(&rig).await.version), (current, 1), "{name}: unchanged");
            assert!(rig.orders.announcements().is_empty());
        }
    }
}

#[tokio::test]
async fn a_refund_for_an_order_that_was_never_cancelled_is_for_a_human() {
    for current in [OrderStatus::Placed, OrderStatus::ReadyToShip, OrderStatus::Backordered] {
        let rig = rig(current);
        deliver(&rig, refunded(100)).await;
        let letters = rig.consumer.dead_letters.letters();
        assert_eq!(letters.len(), 1, "{current:?}");
        assert!(letters[0].reason.contains("to Cancelled"), "{}", letters[0].reason);
        assert_eq!(status(&rig).await.status, current);
    }
}

#[tokio::test]
async fn a_deadline_for_an_order_that_is_not_backordered_changes_nothing() {
    for current in [OrderStatus::Placed, OrderStatus::ReadyToShip, OrderStatus::Cancelling, OrderStatus::Cancelled] {
        let rig = rig(current);
        let at = Utc::now();
        let cause = Envelope::new(short(), None).metadata;
        let message = sales::deadlines::message(ORDER, at, &cause);
        assert!(rig.consumer.failures(sqs_batch(vec![message])).await.is_empty());
        assert!(rig.consumer.dead_letters.letters().is_empty(), "{current:?}");
        assert_eq!(status(&rig).await.status, current);
        assert!(rig.orders.announcements().is_empty());
    }
}

#[tokio::test]
async fn a_shortage_that_arrives_after_a_restock_shipped_the_order_changes_nothing() {
    // The shortage's delivery was delayed (retried); the restock's label came first.
    let rig = rig(OrderStatus::Placed);
    deliver(&rig, label()).await;
    deliver(&rig, short()).await;
    assert!(rig.consumer.dead_letters.letters().is_empty(), "not a case for a human");
    let order = status(&rig).await;
    assert_eq!((order.status, order.version), (OrderStatus::ReadyToShip, 2));
    assert!(rig.deadlines.of(ORDER).is_none(), "no deadline for a shipped order");
}
