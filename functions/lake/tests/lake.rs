//! The lake over an in-memory object store, on the repository's sample batch (one order's
//! `OrderPlaced`, `OrderBilled`, `ShippingLabelCreated` and `OrderStatusChanged`).

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use lake::handler::LakeHandler;
use lake::objects::{read_lines, CustomerKeys};
use lake::store::InMemoryObjectStore;
use orderflow_contracts::AnyEvent;
use orderflow_harness::dead_letter::InMemoryDeadLetters;
use orderflow_harness::BatchConsumer;
use orderflow_harness_testing::sqs_sample;
use pretty_assertions::assert_eq;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn keys() -> CustomerKeys {
    CustomerKeys::new(SECRET).unwrap()
}

fn rig() -> (BatchConsumer<AnyEvent>, Arc<InMemoryObjectStore>, Arc<InMemoryDeadLetters>) {
    let store = Arc::new(InMemoryObjectStore::default());
    let dlq = Arc::new(InMemoryDeadLetters::default());
    (BatchConsumer::new("lake", Arc::new(LakeHandler::new(store.clone(), keys())), dlq.clone()), store, dlq)
}

fn batch() -> SqsEvent {
    sqs_sample("lake/mixed-batch.sqs.json")
}

fn failed(result: &orderflow_harness::consumer::BatchResult) -> Vec<String> {
    result.response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect()
}

#[tokio::test]
async fn each_event_type_and_day_gets_one_hive_partitioned_gzip_json_lines_object() {
    let (consumer, store, dlq) = rig();
    let result = consumer.process(batch()).await.unwrap();
    assert!(failed(&result).is_empty());
    assert!(dlq.letters().is_empty());
    let objects = store.objects();
    let partitions: Vec<String> = objects.keys().map(|k| k.rsplit_once('/').unwrap().0.to_string()).collect();
    assert_eq!(
        partitions,
        vec![
            "events/event_type=OrderBilled/dt=2026-11-28",
            "events/event_type=OrderPlaced/dt=2026-11-28",
            "events/event_type=OrderStatusChanged/dt=2026-11-28",
            "events/event_type=ShippingLabelCreated/dt=2026-11-28",
        ]
    );
    assert!(objects.keys().all(|k| k.ends_with(".json.gz")));
    let placed = objects.iter().find(|(k, _)| k.contains("OrderPlaced")).unwrap().1;
    let lines = read_lines(placed).unwrap();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].order_id.as_deref(), Some("ord-7f3a2c"));
    assert_eq!(lines[0].schema_version, 2);
    assert_eq!(lines[0].source, "orderflow.sales");
    let data: serde_json::Value = serde_json::from_str(&lines[0].data).unwrap();
    assert_eq!(data["totals"]["totalMinor"], 5743);
}

#[tokio::test]
async fn a_redelivered_batch_overwrites_its_objects_instead_of_duplicating_them() {
    let (consumer, store, _) = rig();
    consumer.process(batch()).await.unwrap();
    let first = store.objects();
    // Same events, another delivery (new receipt, records in another order).
    let mut again = batch();
    again.records.reverse();
    consumer.process(again).await.unwrap();
    assert_eq!(store.objects(), first, "same keys, same bytes");
    assert_eq!(store.puts(), 8, "each of the 4 objects was written twice, to the same key");
}

#[tokio::test]
async fn a_failed_put_retries_only_the_records_of_that_object() {
    let (consumer, store, dlq) = rig();
    store.fail_keys_containing(Some("event_type=OrderBilled"));
    let event = batch();
    let billed_message = event.records[1].message_id.clone().unwrap();
    let result = consumer.process(event).await.unwrap();
    assert_eq!(failed(&result), vec![billed_message]);
    assert!(dlq.letters().is_empty());
    assert_eq!(store.objects().len(), 3);
}

#[tokio::test]
async fn an_event_delivered_twice_in_one_batch_is_one_line() {
    let (consumer, store, _) = rig();
    let mut event = batch();
    let mut twin = event.records[0].clone();
    twin.message_id = Some("twin".into());
    event.records.push(twin);
    let result = consumer.process(event).await.unwrap();
    assert!(failed(&result).is_empty());
    let placed = store.objects().into_iter().find(|(k, _)| k.contains("OrderPlaced")).unwrap().1;
    assert_eq!(read_lines(&placed).unwrap().len(), 1);
}

#[tokio::test]
async fn a_record_that_is_not_an_event_goes_to_the_dlq_and_the_rest_are_written() {
    let (consumer, store, dlq) = rig();
    let mut event = batch();
    event.records[2].body = Some("{}".into());
    let result = consumer.process(event).await.unwrap();
    assert!(failed(&result).is_empty());
    assert_eq!(dlq.letters().len(), 1);
    assert_eq!(store.objects().len(), 3);
}

#[tokio::test]
async fn the_lake_keeps_no_contact_details() {
    let (consumer, store, _) = rig();
    consumer.process(batch()).await.unwrap();
    let mut all = String::new();
    for body in store.objects().values() {
        for line in read_lines(body).unwrap() {
            all.push_str(&line.data);
        }
    }
    // The samples' customer: Ada Lovelace, ada@example.com, +447700900123, 12 Analytical Row, N1 9GU.
    for personal in ["Ada Lovelace", "ada@example.com", "+447700900123", "Analytical Row", "N1 9GU"] {
        assert!(!all.contains(personal), "{personal} in the lake");
    }
    // What analytics needs stays: the customer's key, the city, the country, the amounts.
    for kept in [keys().of("cus-1001").as_str(), "London", "GB", "5743"] {
        assert!(all.contains(kept), "{kept} missing from the lake");
    }
    // The customer id itself is not there: its key is a keyed hash, not a hash anyone can compute
    // from an id or an email without the secret.
    assert!(!all.contains("cus-1001"), "the customer id in the lake");
    let other = CustomerKeys::new("another-secret-of-at-least-32-bytes!!").unwrap();
    assert_ne!(other.of("cus-1001"), keys().of("cus-1001"));
    assert_eq!(keys().of("cus-1001"), keys().of("cus-1001"), "the same customer, the same key");
    assert!(CustomerKeys::new("short").is_err(), "a weak secret is refused at start");
}

/// On AWS, Athena finds the lake's partitions by projection (`docs/queries/lake-table.sql`): an
/// event type missing from the projection's `event_type` values is written and never read.
#[test]
fn the_athena_tables_projection_names_every_event_type_the_lake_writes() {
    let ddl = include_str!("../../../docs/queries/lake-table.sql");
    let values = ddl
        .lines()
        .find_map(|line| line.trim().strip_prefix("'projection.event_type.values' = '"))
        .and_then(|rest| rest.split('\'').next())
        .expect("lake-table.sql projects event_type with a list of values");
    let mut projected: Vec<&str> = values.split(',').map(str::trim).collect();
    projected.sort_unstable();
    let mut written = <AnyEvent as orderflow_contracts::Inbound>::DETAIL_TYPES.to_vec();
    written.sort_unstable();
    assert_eq!(projected, written);
}
