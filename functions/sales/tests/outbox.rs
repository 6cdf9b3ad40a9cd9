//! The outbox relay over a fake publisher, fed DynamoDB stream records as Lambda delivers them
//! (`events-samples/sales-outbox-relay/`), including the publish path failing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use orderflow_contracts::OrderPlaced;
use orderflow_harness::dead_letter::{DeadLetter, DeadLetterError, DeadLetterSink, InMemoryDeadLetters};
use orderflow_harness::publisher::{
    CallFailure, ChunkedPublisher, FailedEntry, InMemoryPublisher, PublishError, PutEventsApi, MAX_REQUEST_BYTES,
};
use orderflow_harness::{EventPublisher, OutboundEvent};
use orderflow_harness_testing::sample_text;
use pretty_assertions::assert_eq;
use sales::outbox::OutboxRelay;

/// EventBridge down for the first `down_for` calls.
#[derive(Default)]
struct FlakyBus {
    inner: InMemoryPublisher,
    down_for: usize,
    calls: AtomicUsize,
}

#[async_trait]
impl EventPublisher for FlakyBus {
    async fn publish(&self, events: Vec<OutboundEvent>) -> Result<(), PublishError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.down_for {
            let failed = events
                .iter()
                .map(|e| FailedEntry {
                    event_id: e.event_id.clone(),
                    detail_type: e.detail_type.clone(),
                    code: "InternalFailure".into(),
                    message: "down".into(),
                })
                .collect();
            return Err(PublishError::NotPublished { failed, total: events.len(), attempts: 4, retryable: true });
        }
        self.inner.publish(events).await
    }
}

fn sample() -> StreamEvent {
    serde_json::from_str(&sample_text("sales-outbox-relay/orders-stream.json")).expect("a DynamoDB stream event")
}

#[tokio::test]
async fn new_outbox_events_are_published_and_rewrites_without_one_are_not() {
    // The sample: an INSERT (OrderPlaced), a MODIFY that changed nothing in the outbox, and a MODIFY
    // with a new OrderStatusChanged.
    let bus = Arc::new(FlakyBus::default());
    let response = OutboxRelay::new(bus.clone()).relay(sample()).await;
    assert!(response.batch_item_failures.is_empty());
    let published: Vec<String> = bus.inner.published().iter().map(|e| e.detail_type.clone()).collect();
    assert_eq!(published, vec!["OrderPlaced", "OrderStatusChanged"]);
    let placed = bus.inner.envelopes::<OrderPlaced>();
    assert_eq!(placed[0].data.order_id, "ord-7f3a2c");
}

#[tokio::test]
async fn when_the_bus_is_down_the_stream_retries_from_the_first_unsent_record_and_sends_the_same_events() {
    let bus = Arc::new(FlakyBus { down_for: 1, ..FlakyBus::default() });
    let relay = OutboxRelay::new(bus.clone());
    let event = sample();
    let sequences: Vec<Option<String>> = event.records.iter().map(|r| r.change.sequence_number.clone()).collect();

    let response = relay.relay(event).await;
    let failures: Vec<Option<String>> =
        response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(failures, sequences, "the first unsent record and everything after it");
    assert!(bus.inner.published().is_empty());

    // Lambda redelivers from that record; the bus is back.
    let retry = relay.relay(sample()).await;
    assert!(retry.batch_item_failures.is_empty());
    let ids: Vec<String> = bus.inner.published().iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids.len(), 2);
    let stored: Vec<String> =
        sample().records.iter().flat_map(|r| sales::outbox::announcement(r).unwrap()).map(|e| e.event_id).collect();
    assert_eq!(ids, stored, "exactly the stored events, with their stored ids");
}

/// Accepts everything it is sent: the real chunking publisher over it.
#[derive(Default)]
struct AcceptingApi {
    sent: std::sync::Mutex<Vec<OutboundEvent>>,
}

#[async_trait]
impl PutEventsApi for AcceptingApi {
    async fn put_events(&self, entries: &[OutboundEvent]) -> Result<Vec<Option<(String, String)>>, CallFailure> {
        self.sent.lock().unwrap().extend(entries.iter().cloned());
        Ok(vec![None; entries.len()])
    }
}

/// The sample with its last record's OrderStatusChanged grown past PutEvents' size limit.
fn oversized_last() -> StreamEvent {
    let mut v: serde_json::Value = serde_json::from_str(&sample_text("sales-outbox-relay/orders-stream.json")).unwrap();
    let slot = &mut v["Records"][2]["dynamodb"]["NewImage"]["outbox"]["S"];
    let mut e: OutboundEvent = serde_json::from_str(slot.as_str().unwrap()).unwrap();
    e.detail = serde_json::json!({"padding": "x".repeat(MAX_REQUEST_BYTES)}).to_string();
    *slot = serde_json::Value::String(serde_json::to_string(&e).unwrap());
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn an_oversized_event_never_lets_the_stream_checkpoint_an_unpublished_record() {
    let publisher = Arc::new(ChunkedPublisher::new(AcceptingApi::default()));
    let response = OutboxRelay::new(publisher.clone()).relay(oversized_last()).await;
    let records = oversized_last().records;
    let sequences: Vec<Option<String>> = records.iter().map(|r| r.change.sequence_number.clone()).collect();
    let failures: Vec<Option<String>> =
        response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(failures, sequences[2..].to_vec(), "the oversized record and all after it");
    // Every record the stream may checkpoint (those before the first failure) was published.
    let sent: Vec<String> = publisher.api().sent.lock().unwrap().iter().map(|e| e.event_id.clone()).collect();
    for record in &records[..2] {
        for e in sales::outbox::announcement(record).unwrap() {
            assert!(sent.contains(&e.event_id), "{} checkpointed unpublished", e.detail_type);
        }
    }
    assert_eq!(sent.len(), 1, "the OrderPlaced before it went out");
}

/// A publisher that refuses a batch before sending any of it (as the chunking publisher does with
/// an event over the size limit it was not asked to check first).
struct RefusingPublisher;

#[async_trait]
impl EventPublisher for RefusingPublisher {
    async fn publish(&self, events: Vec<OutboundEvent>) -> Result<(), PublishError> {
        let last = events.last().unwrap();
        Err(PublishError::TooLarge {
            event_id: last.event_id.clone(),
            detail_type: last.detail_type.clone(),
            size: MAX_REQUEST_BYTES + 1,
        })
    }
}

#[tokio::test]
async fn a_batch_refused_whole_reports_every_record_from_the_first_pending_one() {
    let response = OutboxRelay::new(Arc::new(RefusingPublisher)).relay(sample()).await;
    let sequences: Vec<Option<String>> = sample().records.iter().map(|r| r.change.sequence_number.clone()).collect();
    let failures: Vec<Option<String>> =
        response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(failures, sequences, "nothing was sent: nothing may be checkpointed");
}

/// The sample with its second record's outbox no longer JSON (a bad hand edit, a bug in a writer).
fn unreadable_second() -> StreamEvent {
    let mut v: serde_json::Value = serde_json::from_str(&sample_text("sales-outbox-relay/orders-stream.json")).unwrap();
    v["Records"][1]["dynamodb"]["NewImage"]["outbox"]["S"] = serde_json::Value::String("{not json".into());
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn a_record_that_can_never_be_published_is_dead_lettered_with_its_reason_and_the_rest_go_out() {
    for (name, event, bad) in [("unreadable", unreadable_second(), 1), ("oversized", oversized_last(), 2)] {
        let publisher = Arc::new(ChunkedPublisher::new(AcceptingApi::default()));
        let letters = Arc::new(InMemoryDeadLetters::default());
        let relay = OutboxRelay::new(publisher.clone()).with_dead_letters(letters.clone());
        let records = event.records.clone();
        let response = relay.relay(event).await;
        assert!(response.batch_item_failures.is_empty(), "{name}: the stream moves on");
        let letters = letters.letters();
        assert_eq!(letters.len(), 1, "{name}");
        let letter = &letters[0];
        assert_eq!(letter.consumer, "sales-outbox-relay");
        assert_eq!(Some(letter.message_id.clone()), records[bad].change.sequence_number, "{name}");
        let reason = if bad == 1 { "outbox unreadable" } else { "over PutEvents' limit" };
        assert!(letter.reason.contains(reason), "{name}: {}", letter.reason);
        // The record as the stream gave it (its keys at least), for the operator who fixes it.
        let body: serde_json::Value = serde_json::from_str(&letter.body).unwrap();
        assert_eq!(body["dynamodb"]["Keys"]["orderId"]["S"], "ord-7f3a2c", "{name}");
        assert_eq!(body["dynamodb"].get("NewImage").is_some(), bad == 1, "{name}: whole only when small enough");
        // Every other record's new events went out.
        let sent: Vec<String> = publisher.api().sent.lock().unwrap().iter().map(|e| e.event_id.clone()).collect();
        let expected: Vec<String> = records
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != bad)
            .flat_map(|(_, r)| sales::outbox::announcement(r).unwrap())
            .map(|e| e.event_id)
            .collect();
        assert_eq!(sent, expected, "{name}");
    }
}

#[tokio::test]
async fn a_record_that_can_never_be_published_is_dead_lettered_once_however_often_the_bus_refuses_its_batch() {
    let bus = Arc::new(FlakyBus { down_for: 3, ..FlakyBus::default() });
    let letters = Arc::new(InMemoryDeadLetters::default());
    let relay = OutboxRelay::new(bus.clone()).with_dead_letters(letters.clone());
    let sequences: Vec<Option<String>> =
        unreadable_second().records.iter().map(|r| r.change.sequence_number.clone()).collect();
    // The bus refuses the first record's events three times: the stream retries the whole batch,
    // the unreadable record with it, which is not dead-lettered while it will come back.
    for _ in 0..3 {
        let response = relay.relay(unreadable_second()).await;
        let failures: Vec<Option<String>> =
            response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
        assert_eq!(failures, sequences, "from the first unsent record");
        assert!(letters.letters().is_empty(), "not while the stream delivers it again");
    }
    // The bus is back: published, and the unreadable record dead-lettered once as the stream moves on.
    assert!(relay.relay(unreadable_second()).await.batch_item_failures.is_empty());
    assert_eq!(letters.letters().len(), 1);
    let published: Vec<String> = bus.inner.published().iter().map(|e| e.detail_type.clone()).collect();
    assert_eq!(published, vec!["OrderPlaced", "OrderStatusChanged"], "the first and third records'");
}

/// A dead-letter queue that cannot be reached.
struct UnreachableDeadLetters;

#[async_trait]
impl DeadLetterSink for UnreachableDeadLetters {
    async fn send(&self, letter: DeadLetter) -> Result<(), DeadLetterError> {
        Err(DeadLetterError { message_id: letter.message_id, reason: "SQS unreachable".into() })
    }
}

#[tokio::test]
async fn a_record_that_could_not_be_dead_lettered_stops_the_batch_at_it() {
    let publisher = Arc::new(ChunkedPublisher::new(AcceptingApi::default()));
    let relay = OutboxRelay::new(publisher.clone()).with_dead_letters(Arc::new(UnreachableDeadLetters));
    let records = unreadable_second().records;
    let response = relay.relay(unreadable_second()).await;
    let failures: Vec<Option<String>> =
        response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    let sequences: Vec<Option<String>> = records.iter().map(|r| r.change.sequence_number.clone()).collect();
    assert_eq!(failures, sequences[1..].to_vec(), "the unreadable record and all after it");
    // What came before it went out; what comes after it may go out again on the retry, as the same
    // event (the same id), which consumers drop.
    let sent: Vec<String> = publisher.api().sent.lock().unwrap().iter().map(|e| e.detail_type.clone()).collect();
    assert_eq!(sent.first().map(String::as_str), Some("OrderPlaced"), "{sent:?}");
}
