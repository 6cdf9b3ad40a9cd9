//! Warehouse's handler over its fakes: allocation, labels, shortages, redeliveries and replays.

use orderflow_contracts::{Envelope, OrderLine, Shortage};
use orderflow_harness::consumer::decode;
use orderflow_harness::publisher::InMemoryPublisher;
use orderflow_harness::testing::{eventbridge_body, sqs_batch, sqs_sample, Harnessed};
use pretty_assertions::assert_eq;

use std::sync::Arc;

use orderflow_contracts::{OrderBilled, ShippingLabelCreated, StockAllocationFailed};
use warehouse::handler::Warehouse;
use warehouse::labels::InMemoryLabelStore;
use warehouse::stock::InMemoryStockStore;

struct Rig {
    stock: Arc<InMemoryStockStore>,
    labels: Arc<InMemoryLabelStore>,
    published: Arc<InMemoryPublisher>,
    warehouse: Harnessed<OrderBilled>,
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
    rig.stock.restock(&[("MUG-002", 5)]);
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
