//! Warehouse's handler over its fakes: allocation, labels, shortages, redeliveries and replays.

use orderflow_contracts::{Envelope, OrderLine, Shortage};
use orderflow_harness::consumer::decode;
use orderflow_harness::publisher::InMemoryPublisher;
use orderflow_harness_testing::{eventbridge_body, sqs_batch, sqs_sample, Harnessed};
use pretty_assertions::assert_eq;

use std::sync::Arc;

use orderflow_contracts::{OrderBilled, ShippingLabelCreated, StockAllocationFailed};
use warehouse::handler::{Warehouse, WarehouseInput};
use warehouse::labels::InMemoryLabelStore;
use warehouse::stock::InMemoryStockStore;

struct Rig {
    stock: Arc<InMemoryStockStore>,
    labels: Arc<InMemoryLabelStore>,
    published: Arc<InMemoryPublisher>,
    warehouse: Harnessed<WarehouseInput>,
}

fn rig(levels: &[(&str, u32)]) -> Rig {
    let stock = Arc::new(InMemoryStockStore::with_levels(levels));
    let labels = Arc::new(InMemoryLabelStore::default());
    let published = Arc::new(InMemoryPublisher::default());
    let handler = Warehouse::new(stock.clone(), labels.clone(), published.clone());
    Rig { stock, labels, published, warehouse: Harnessed::new("warehouse", Arc::new(handler)) }
}

fn sample() -> (OrderBilled, orderflow_contracts::Metadata, String) {
    let event = sqs_sample("warehouse/order-billed.sqs.json");
    let body = event.records[0].body.clone().unwrap();
    let (billed, meta) = decode::<OrderBilled>(Some(&body)).unwrap();
    (billed, meta, body)
}

#[tokio::test]
async fn the_sample_is_allocated_labelled_and_announced() {
    let rig = rig(&[("BOOK-001", 10), ("MUG-002", 5)]);
    let (billed, cause, _) = sample();
    let event = sqs_sample("warehouse/order-billed.sqs.json");
    assert_eq!(rig.warehouse.failures(event).await, Vec::<String>::new());

    assert_eq!((rig.stock.level("BOOK-001"), rig.stock.level("MUG-002")), (Some(8), Some(4)));
    let created = rig.published.envelopes::<ShippingLabelCreated>();
    assert_eq!(created.len(), 1);
    let c = &created[0];
    assert_eq!(c.data.order_id, billed.order_id);
    assert_eq!(c.data.label_key, format!("labels/{}.json", billed.order_id));
    assert_eq!(c.metadata.correlation_id, cause.correlation_id);
    let label = rig.labels.get(&c.data.label_key).expect("label stored");
    assert_eq!(label.tracking_number, c.data.tracking_number);
    assert_eq!(label.address, billed.shipping_address);
    assert_eq!(label.contents, vec![("BOOK-001".to_string(), 2), ("MUG-002".to_string(), 1)]);
}

#[tokio::test]
async fn a_short_line_allocates_nothing_and_says_what_is_short() {
    let rig = rig(&[("BOOK-001", 10), ("MUG-002", 0)]);
    let (_, _, body) = sample();
    assert!(rig.warehouse.failures(sqs_batch(vec![body])).await.is_empty());
    assert_eq!((rig.stock.level("BOOK-001"), rig.stock.level("MUG-002")), (Some(10), Some(0)), "all lines or none");
    let failed = rig.published.envelopes::<StockAllocationFailed>();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].data.shortages, vec![Shortage { sku: "MUG-002".into(), requested: 1, available: 0 }]);
    assert!(rig.published.envelopes::<ShippingLabelCreated>().is_empty());
}

#[tokio::test]
async fn a_redelivered_order_is_not_allocated_twice() {
    let rig = rig(&[("BOOK-001", 10), ("MUG-002", 5)]);
    let (billed, cause, _) = sample();
    // Two different deliveries of the same business event (e.g. after the harness's completion
    // mark was lost): the handler itself must not allocate twice.
    for _ in 0..2 {
        let fresh = Envelope { metadata: cause.clone(), data: billed.clone() };
        let h = Harnessed::new(
            "warehouse",
            Arc::new(Warehouse::new(rig.stock.clone(), rig.labels.clone(), rig.published.clone())),
        );
        assert!(h.failures(sqs_batch(vec![eventbridge_body(&fresh)])).await.is_empty());
    }
    assert_eq!((rig.stock.level("BOOK-001"), rig.stock.level("MUG-002")), (Some(8), Some(4)));
    let created = rig.published.envelopes::<ShippingLabelCreated>();
    assert_eq!(created.len(), 2);
    assert_eq!(created[0].metadata.event_id, created[1].metadata.event_id, "the same event, announced again");
    assert_eq!(created[0].data.tracking_number, created[1].data.tracking_number);
}

#[tokio::test]
async fn lines_of_the_same_sku_are_allocated_together() {
    let rig = rig(&[("BOOK-001", 3)]);
    let (mut billed, _, _) = sample();
    billed.lines = vec![
        OrderLine { sku: "BOOK-001".into(), quantity: 2, unit_price_minor: 1 },
        OrderLine { sku: "BOOK-001".into(), quantity: 2, unit_price_minor: 1 },
    ];
    let envelope = Envelope::new(billed, None);
    assert!(rig.warehouse.failures(sqs_batch(vec![eventbridge_body(&envelope)])).await.is_empty());
    let failed = rig.published.envelopes::<StockAllocationFailed>();
    assert_eq!(failed[0].data.shortages, vec![Shortage { sku: "BOOK-001".into(), requested: 4, available: 3 }]);
    assert_eq!(rig.stock.level("BOOK-001"), Some(3));
}

#[tokio::test]
async fn a_shortage_is_remembered_so_a_replay_after_restocking_gives_the_same_answer() {
    let rig = rig(&[("BOOK-001", 10), ("MUG-002", 0)]);
    let (billed, cause, _) = sample();
    assert!(rig
        .warehouse
        .failures(sqs_batch(vec![eventbridge_body(&Envelope { metadata: cause.clone(), data: billed.clone() })]))
        .await
        .is_empty());
    // Stock arrives; then the same OrderBilled comes back (archive replay, idempotency record expired).
    rig.stock.set_levels(&[("MUG-002", 5)]);
    let fresh = Harnessed::new(
        "warehouse",
        Arc::new(Warehouse::new(rig.stock.clone(), rig.labels.clone(), rig.published.clone())),
    );
    assert!(fresh
        .failures(sqs_batch(vec![eventbridge_body(&Envelope { metadata: cause, data: billed })]))
        .await
        .is_empty());
    assert_eq!((rig.stock.level("BOOK-001"), rig.stock.level("MUG-002")), (Some(10), Some(5)), "nothing allocated");
    let failed = rig.published.envelopes::<StockAllocationFailed>();
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0].metadata.event_id, failed[1].metadata.event_id, "the same event");
    assert_eq!(failed[0].data.shortages, failed[1].data.shortages, "the same answer");
    assert!(rig.published.envelopes::<ShippingLabelCreated>().is_empty());
}

// ------------------------------------------------------------------ restock and cancellation

use orderflow_contracts::{CancelledBy, Currency, OrderCancelled, ReleasedLine, StockReceived, StockReleased};

fn billed_order(order_id: &str, lines: &[(&str, u32)]) -> OrderBilled {
    let (mut billed, _, _) = sample();
    billed.order_id = order_id.into();
    billed.lines =
        lines.iter().map(|(sku, q)| OrderLine { sku: sku.to_string(), quantity: *q, unit_price_minor: 100 }).collect();
    billed.amount_minor = billed.lines.iter().map(|l| i64::from(l.quantity) * 100).sum();
    billed
}

fn body<E: orderflow_contracts::Event>(data: E) -> String {
    eventbridge_body(&Envelope::new(data, None))
}

fn receipt(receipt_id: &str, sku: &str, quantity: u32) -> StockReceived {
    StockReceived { receipt_id: receipt_id.into(), sku: sku.into(), quantity, received_at: chrono::Utc::now() }
}

fn cancelled(order_id: &str) -> OrderCancelled {
    OrderCancelled {
        order_id: order_id.into(),
        cancelled_by: CancelledBy::Customer,
        currency: Currency::GBP,
        total_minor: 100,
        cancelled_at: chrono::Utc::now(),
    }
}

async fn deliver(rig: &Rig, bodies: Vec<String>) {
    assert_eq!(rig.warehouse.failures(sqs_batch(bodies)).await, Vec::<String>::new());
}

fn labelled(rig: &Rig) -> Vec<String> {
    rig.published.envelopes::<ShippingLabelCreated>().into_iter().map(|e| e.data.order_id).collect()
}

#[tokio::test]
async fn a_restock_ships_waiting_backorders_oldest_first_and_only_whole_orders() {
    let rig = rig(&[("RARE", 0), ("ODD", 0)]);
    // Three orders short of RARE (the second also of ODD), in this order.
    for billed in [
        billed_order("o-1", &[("RARE", 3)]),
        billed_order("o-2", &[("RARE", 1), ("ODD", 1)]),
        billed_order("o-3", &[("RARE", 2)]),
    ] {
        deliver(&rig, vec![body(billed)]).await;
    }
    assert_eq!(rig.published.envelopes::<StockAllocationFailed>().len(), 3);

    // Four RARE arrive: o-1 takes three; o-2 still lacks ODD; o-3 needs two, one is left.
    deliver(&rig, vec![body(receipt("r-1", "RARE", 4))]).await;
    assert_eq!(labelled(&rig), vec!["o-1"]);
    assert_eq!(rig.stock.level("RARE"), Some(1));
    assert!(rig.stock.is_waiting("o-2") && rig.stock.is_waiting("o-3") && !rig.stock.is_waiting("o-1"));
    let label = rig.labels.get("labels/o-1.json").expect("o-1's label");
    assert_eq!(label.contents, vec![("RARE".to_string(), 3)]);

    // One ODD arrives: o-2 now has every line.
    deliver(&rig, vec![body(receipt("r-2", "ODD", 1))]).await;
    assert_eq!(labelled(&rig), vec!["o-1", "o-2"]);
    assert_eq!((rig.stock.level("RARE"), rig.stock.level("ODD")), (Some(0), Some(0)));
    assert!(rig.stock.is_waiting("o-3"), "still waiting for two RARE");
}

#[tokio::test]
async fn a_receipt_is_counted_once_however_often_it_is_delivered() {
    let rig = rig(&[("BOOK-001", 1)]);
    // Two deliveries of one receipt as different events (the harness's dedup cannot see they match).
    deliver(&rig, vec![body(receipt("r-1", "BOOK-001", 5))]).await;
    deliver(&rig, vec![body(receipt("r-1", "BOOK-001", 5))]).await;
    assert_eq!(rig.stock.level("BOOK-001"), Some(6));
}

#[tokio::test]
async fn a_restock_that_dies_before_announcing_announces_the_same_labels_when_redelivered() {
    let rig = rig(&[("RARE", 0)]);
    deliver(&rig, vec![body(billed_order("o-1", &[("RARE", 1)]))]).await;
    rig.published.fail_next(1);
    let received = eventbridge_body(&Envelope::new(receipt("r-1", "RARE", 1), None));
    assert_eq!(rig.warehouse.failures(sqs_batch(vec![received.clone()])).await, vec!["m0"]);
    assert!(labelled(&rig).is_empty(), "allocated, not announced");
    assert_eq!(rig.stock.level("RARE"), Some(0));

    assert!(rig.warehouse.failures(sqs_batch(vec![received])).await.is_empty());
    assert_eq!(labelled(&rig), vec!["o-1"], "announced on the redelivery");
    assert_eq!(rig.stock.level("RARE"), Some(0), "counted once, allocated once");
}

#[tokio::test]
async fn cancelling_an_allocated_order_gives_its_stock_back_once() {
    let rig = rig(&[("BOOK-001", 10), ("MUG-002", 5)]);
    deliver(&rig, vec![body(billed_order("o-1", &[("BOOK-001", 2), ("MUG-002", 1), ("BOOK-001", 1)]))]).await;
    assert_eq!((rig.stock.level("BOOK-001"), rig.stock.level("MUG-002")), (Some(7), Some(4)));
    assert!(rig.labels.get("labels/o-1.json").is_some());
    deliver(&rig, vec![body(cancelled("o-1"))]).await;
    assert!(rig.labels.get("labels/o-1.json").is_none(), "nobody ships a cancelled order");
    deliver(&rig, vec![body(cancelled("o-1"))]).await;
    assert_eq!((rig.stock.level("BOOK-001"), rig.stock.level("MUG-002")), (Some(10), Some(5)), "given back once");
    let released = rig.published.envelopes::<StockReleased>();
    assert_eq!(released.len(), 2, "each cancellation is answered");
    assert_eq!(
        released[0].data.lines,
        vec![ReleasedLine { sku: "BOOK-001".into(), quantity: 3 }, ReleasedLine { sku: "MUG-002".into(), quantity: 1 }]
    );
}

#[tokio::test]
async fn a_cancelled_backorder_stops_waiting_and_a_restock_passes_it_by() {
    let rig = rig(&[("RARE", 0)]);
    deliver(&rig, vec![body(billed_order("o-1", &[("RARE", 1)]))]).await;
    deliver(&rig, vec![body(billed_order("o-2", &[("RARE", 1)]))]).await;
    deliver(&rig, vec![body(cancelled("o-1"))]).await;
    assert!(rig.published.envelopes::<StockReleased>().is_empty(), "nothing was allocated");
    deliver(&rig, vec![body(receipt("r-1", "RARE", 1))]).await;
    assert_eq!(labelled(&rig), vec!["o-2"], "the cancelled o-1 is passed by");
}

#[tokio::test]
async fn an_order_cancelled_before_it_was_billed_is_never_allocated() {
    let rig = rig(&[("BOOK-001", 10)]);
    deliver(&rig, vec![body(cancelled("o-1"))]).await;
    deliver(&rig, vec![body(billed_order("o-1", &[("BOOK-001", 2)]))]).await;
    assert_eq!(rig.stock.level("BOOK-001"), Some(10));
    assert!(rig.published.published().is_empty(), "no label, no shortage, no release");
}

#[tokio::test]
async fn restock_and_cancel_together_end_in_one_state_whichever_comes_first() {
    for cancel_first in [true, false] {
        let rig = rig(&[("RARE", 0)]);
        deliver(&rig, vec![body(billed_order("o-1", &[("RARE", 2)]))]).await;
        let (restock, cancel) = (body(receipt("r-1", "RARE", 2)), body(cancelled("o-1")));
        let order = if cancel_first { vec![cancel, restock] } else { vec![restock, cancel] };
        for b in order {
            deliver(&rig, vec![b]).await;
        }
        assert_eq!(rig.stock.level("RARE"), Some(2), "cancel first: {cancel_first}: the stock is on the shelf");
        assert!(!rig.stock.is_waiting("o-1"));
        let released = rig.published.envelopes::<StockReleased>().len();
        assert_eq!((labelled(&rig).len(), released), if cancel_first { (0, 0) } else { (1, 1) });
    }
}

#[tokio::test]
async fn the_same_receipt_id_for_other_goods_is_for_a_human_and_counts_nothing() {
    let rig = rig(&[("BOOK-001", 1)]);
    deliver(&rig, vec![body(receipt("r-1", "BOOK-001", 5))]).await;
    deliver(&rig, vec![body(receipt("r-1", "BOOK-001", 50))]).await;
    let letters = rig.warehouse.dead_letters.letters();
    assert_eq!(letters.len(), 1);
    assert!(letters[0].reason.contains("other goods"), "{}", letters[0].reason);
    assert_eq!(rig.stock.level("BOOK-001"), Some(6));
}

#[tokio::test]
async fn a_restocked_orders_label_is_caused_by_the_receipt_and_joins_the_orders_own_flow() {
    let rig = rig(&[("RARE", 0)]);
    let billed = Envelope::new(billed_order("o-1", &[("RARE", 1)]), Some("order-flow-1".into()));
    deliver(&rig, vec![eventbridge_body(&billed)]).await;
    let received = Envelope::new(receipt("r-1", "RARE", 1), Some("receipt-flow".into()));
    deliver(&rig, vec![eventbridge_body(&received)]).await;
    let created = rig.published.envelopes::<ShippingLabelCreated>();
    assert_eq!(created[0].metadata.correlation_id, "order-flow-1", "the order's flow");
    assert_eq!(created[0].metadata.causation_id, Some(received.metadata.event_id.to_string()), "caused by the receipt");
}

#[tokio::test]
async fn a_restock_redelivered_after_its_order_was_cancelled_does_not_label_it_again() {
    let rig = rig(&[("RARE", 0)]);
    deliver(&rig, vec![body(billed_order("o-1", &[("RARE", 1)]))]).await;
    // The restock allocates o-1, then cannot announce it ...
    rig.published.fail_next(1);
    let received = eventbridge_body(&Envelope::new(receipt("r-1", "RARE", 1), None));
    assert_eq!(rig.warehouse.failures(sqs_batch(vec![received.clone()])).await, vec!["m0"]);
    // ... meanwhile the customer cancels (Sales still says Backordered): stock back, label gone.
    deliver(&rig, vec![body(cancelled("o-1"))]).await;
    assert_eq!(rig.stock.level("RARE"), Some(1));
    // The receipt's redelivery announces nothing and writes no label.
    assert!(rig.warehouse.failures(sqs_batch(vec![received])).await.is_empty());
    assert!(labelled(&rig).is_empty());
    assert!(rig.labels.get("labels/o-1.json").is_none());
    // ... and takes o-1 off the receipt's list: the next redelivery has nothing to look at again.
    let again = rig.stock.receive(&receipt("r-1", "RARE", 1)).await.unwrap();
    assert_eq!(again.allocated_before, Vec::<String>::new());
}

// ------------------------------------------------------------------ races and long backlogs

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use orderflow_harness::{Handler, HandlerError, RecordContext, StoreError};
use warehouse::labels::{Label, LabelStore, StoredLabel};
use warehouse::stock::{Allocation, Backorder, Receipt, Release, StockStore};

/// Labels whose writing is overtaken by a cancellation: the order's release commits while its
/// label is being written (as a concurrent invocation's `OrderCancelled` may).
struct CancelledDuringPut {
    labels: Arc<InMemoryLabelStore>,
    stock: Arc<InMemoryStockStore>,
}

#[async_trait]
impl LabelStore for CancelledDuringPut {
    async fn put(&self, label: &Label) -> Result<StoredLabel, StoreError> {
        self.stock.release(&label.order_id).await?;
        self.labels.put(label).await
    }
    async fn remove(&self, order_id: &str) -> Result<(), StoreError> {
        self.labels.remove(order_id).await
    }
}

#[tokio::test]
async fn an_order_released_while_its_label_is_written_keeps_no_label_and_is_not_announced() {
    // Paid while in stock, and restocked from a backorder: both write a label after allocating.
    for restocked in [false, true] {
        let stock = Arc::new(InMemoryStockStore::with_levels(&[("RARE", if restocked { 0 } else { 1 })]));
        let labels = Arc::new(InMemoryLabelStore::default());
        let published = Arc::new(InMemoryPublisher::default());
        let racing = Arc::new(CancelledDuringPut { labels: labels.clone(), stock: stock.clone() });
        let warehouse = Harnessed::new("warehouse", Arc::new(Warehouse::new(stock.clone(), racing, published.clone())));
        let billed = body(billed_order("o-1", &[("RARE", 1)]));
        assert!(warehouse.failures(sqs_batch(vec![billed])).await.is_empty());
        if restocked {
            assert!(warehouse.failures(sqs_batch(vec![body(receipt("r-1", "RARE", 1))])).await.is_empty());
        }
        assert!(labels.get("labels/o-1.json").is_none(), "restocked: {restocked}: nobody ships a cancelled order");
        assert!(published.envelopes::<ShippingLabelCreated>().is_empty(), "restocked: {restocked}");
        assert_eq!(stock.level("RARE"), Some(1), "restocked: {restocked}: the unit is back on the shelf");
    }
}

/// The fake stock store, counting the backorders tried and taking `delay` over each.
struct Watched {
    stock: Arc<InMemoryStockStore>,
    tried: AtomicUsize,
    delay: Duration,
}

#[async_trait]
impl StockStore for Watched {
    async fn allocate(&self, billed: &OrderBilled, correlation_id: &str) -> Result<Allocation, StoreError> {
        self.stock.allocate(billed, correlation_id).await
    }
    async fn receive(&self, receipt: &StockReceived) -> Result<Receipt, StoreError> {
        self.stock.receive(receipt).await
    }
    async fn backorders(&self, sku: &str) -> Result<Vec<Backorder>, StoreError> {
        self.stock.backorders(sku).await
    }
    async fn backorder(&self, order_id: &str) -> Result<Option<Backorder>, StoreError> {
        self.stock.backorder(order_id).await
    }
    async fn allocate_backorder(&self, backorder: &Backorder, receipt_id: Option<&str>) -> Result<bool, StoreError> {
        self.tried.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.stock.allocate_backorder(backorder, receipt_id).await
    }
    async fn announced(&self, receipt_id: &str, order_ids: &[String]) -> Result<(), StoreError> {
        self.stock.announced(receipt_id, order_ids).await
    }
    async fn allocation_stands(&self, order_id: &str) -> Result<bool, StoreError> {
        self.stock.allocation_stands(order_id).await
    }
    async fn on_hand(&self, sku: &str) -> Result<u32, StoreError> {
        self.stock.on_hand(sku).await
    }
    async fn release(&self, order_id: &str) -> Result<Release, StoreError> {
        self.stock.release(order_id).await
    }
}

/// A warehouse over [`Watched`] with `backorders` orders of one RARE each waiting.
async fn backlog(backorders: usize, delay: Duration) -> (Arc<Watched>, Warehouse, Arc<InMemoryPublisher>) {
    let watched =
        Arc::new(Watched { stock: Arc::new(InMemoryStockStore::with_levels(&[("RARE", 0)])), tried: 0.into(), delay });
    let published = Arc::new(InMemoryPublisher::default());
    let warehouse = Warehouse::new(watched.clone(), Arc::new(InMemoryLabelStore::default()), published.clone());
    for i in 0..backorders {
        handle(&warehouse, WarehouseInput::Billed(billed_order(&format!("o-{i:02}"), &[("RARE", 1)])), None)
            .await
            .expect("backordered");
    }
    (watched, warehouse, published)
}

/// Handles one event as the harness would, before `deadline` if one is given.
async fn handle(
    warehouse: &Warehouse,
    event: WarehouseInput,
    deadline: Option<SystemTime>,
) -> Result<(), HandlerError> {
    let ctx = RecordContext {
        message_id: "m0".into(),
        metadata: Envelope::new(receipt("cause", "RARE", 1), None).metadata,
        receive_count: 1,
        scope: None,
        replay_name: None,
    };
    match deadline {
        Some(deadline) => orderflow_harness::deadline::within(deadline, warehouse.handle(event, &ctx)).await,
        None => warehouse.handle(event, &ctx).await,
    }
}

#[tokio::test]
async fn a_restock_stops_trying_backorders_once_its_sku_runs_out() {
    let (watched, warehouse, published) = backlog(6, Duration::ZERO).await;
    handle(&warehouse, WarehouseInput::Received(receipt("r-1", "RARE", 2)), None).await.expect("handled");
    assert_eq!(labelled_in(&published), vec!["o-00", "o-01"], "the two oldest");
    // The third finds none left; the three behind it, which need RARE too, are not tried.
    assert_eq!(watched.tried.load(Ordering::SeqCst), 3);
}

fn labelled_in(published: &InMemoryPublisher) -> Vec<String> {
    published.envelopes::<ShippingLabelCreated>().into_iter().map(|e| e.data.order_id).collect()
}

#[tokio::test]
async fn a_restock_out_of_time_announces_what_it_allocated_and_its_redelivery_goes_on_from_there() {
    // Twelve waiting; each allocation takes 150 ms; the invocation has 2.75 s, and the handler keeps
    // 2 s for the last order's label and announcement: about five fit.
    let (watched, warehouse, published) = backlog(12, Duration::from_millis(150)).await;
    let received = || WarehouseInput::Received(receipt("r-1", "RARE", 12));
    let deadline = SystemTime::now() + Duration::from_millis(2_750);
    let error = handle(&warehouse, received(), Some(deadline)).await.expect_err("more than its time allows");
    assert!(error.to_string().contains("more backorders than one invocation's time allows"), "{error}");
    let first = labelled_in(&published);
    assert!((1..12).contains(&first.len()), "some, not all: {first:?}");
    assert_eq!(watched.tried.load(Ordering::SeqCst), first.len(), "every allocation announced before the deadline");
    assert_eq!(watched.stock.level("RARE"), Some(12 - first.len() as u32));

    // The redelivery allocates the rest and announces only those: the first ones were recorded as
    // announced, so they are not labelled and announced again.
    handle(&warehouse, received(), None).await.expect("the rest");
    let all = labelled_in(&published);
    let expected: Vec<String> = (0..12).map(|i| format!("o-{i:02}")).collect();
    assert_eq!(all, expected, "each of the twelve once, oldest first");
    assert_eq!(watched.stock.level("RARE"), Some(0));
}
