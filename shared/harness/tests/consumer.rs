//! The harness's promises, over in-memory fakes: every outcome of a record, asserted on the batch
//! response ids, on what reached the dead-letter queue and on what the handler saw.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use orderflow_contracts::{Envelope, OrderPlaced};
use orderflow_harness::clock::{Clock, ManualClock};
use orderflow_harness::consumer::BatchError;
use orderflow_harness::dead_letter::InMemoryDeadLetters;
use orderflow_harness::idempotency::{Claim, ClaimToken, IdempotencyStore, InMemoryIdempotencyStore, StoreError};
use orderflow_harness::{Consumer, ConsumerSettings, Handler, HandlerError, RecordContext};
use pretty_assertions::assert_eq;
use serde_json::json;

/// Behaves according to the order id: `retry-*` fails retryably, `perm-*` permanently, `panic-*`
/// panics, `slow-*` takes a while, `hang-*` never returns the first time; anything else succeeds. Records every order id it was called with.
#[derive(Default)]
struct ScriptedHandler {
    calls: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl ScriptedHandler {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl Handler<OrderPlaced> for ScriptedHandler {
    async fn handle(&self, event: OrderPlaced, ctx: &RecordContext) -> Result<(), HandlerError> {
        assert!(!ctx.metadata.correlation_id.is_empty());
        self.calls.lock().unwrap().push(event.order_id.clone());
        let id = event.order_id.as_str();
        if id.starts_with("slow-") {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        if id.starts_with("retry-") {
            return Err(HandlerError::retryable("payment provider timed out"));
        }
        if id.starts_with("perm-") {
            return Err(HandlerError::permanent("order total does not match its lines"));
        }
        if id.starts_with("panic-") {
            panic!("boom in {id}");
        }
        if id.starts_with("now-") {
            return Err(HandlerError::retry_after("503, Retry-After: 0", Duration::ZERO));
        }
        if id.starts_with("later-") {
            return Err(HandlerError::retry_after("429 from provider, Retry-After: 30", Duration::from_secs(30)));
        }
        if id.starts_with("sluggish-") {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        if id.starts_with("twelve-") {
            return Err(HandlerError::retry_after("Retry-After: 43200", Duration::from_secs(43_200)));
        }
        if id.starts_with("tomorrow-") {
            return Err(HandlerError::retry_after("Retry-After: 72000", Duration::from_secs(72_000)));
        }
        if id.starts_with("hang-") && self.calls().iter().filter(|c| *c == id).count() == 1 {
            // The first invocation never finishes: Lambda kills it at its deadline.
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

fn order_data(order_id: &str) -> serde_json::Value {
    json!({
        "orderId": order_id,
        "customer": {"customerId": "c-1", "name": "Ada", "email": "ada@example.com", "phone": "+447700900123"},
        "lines": [{"sku": "SKU-1", "quantity": 1, "unitPriceMinor": 100}],
        "currency": "EUR",
        "totals": {"subtotalMinor": 100, "shippingMinor": 0, "taxMinor": 0, "totalMinor": 100},
        "shippingAddress": {"line1": "1 Main St", "city": "Paris", "postalCode": "75001", "country": "FR"},
        "placedAt": "2026-11-28T10:00:00Z"
    })
}

fn envelope_body(detail_type: &str, schema_version: u32, data: serde_json::Value, event_id: &str) -> String {
    json!({
        "version": "0", "id": "eb-1", "detail-type": detail_type, "source": "orderflow.sales",
        "account": "123456789012", "time": "2026-11-28T10:00:00Z", "region": "us-east-1", "resources": [],
        "detail": {
            "metadata": {"eventId": event_id, "eventType": detail_type, "schemaVersion": schema_version,
                "correlationId": "corr-1", "occurredAt": "2026-11-28T10:00:00Z", "producer": "orderflow.sales"},
            "data": data
        }
    })
    .to_string()
}

fn event_id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

fn order_body(order_id: &str, n: u32) -> String {
    envelope_body("OrderPlaced", 2, order_data(order_id), &event_id(n))
}

fn record(message_id: &str, body: &str) -> SqsMessage {
    let mut r = SqsMessage::default();
    r.message_id = Some(message_id.to_string());
    r.receipt_handle = Some(format!("rh-{message_id}"));
    r.body = Some(body.to_string());
    r.attributes = HashMap::from([("ApproximateReceiveCount".to_string(), "1".to_string())]);
    r.event_source_arn = Some("arn:aws:sqs:us-east-1:123456789012:orderflow-billing".into());
    r
}

fn batch(records: Vec<SqsMessage>) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = records;
    e
}

struct Rig {
    handler: Arc<ScriptedHandler>,
    store: Arc<InMemoryIdempotencyStore>,
    dlq: Arc<InMemoryDeadLetters>,
    consumer: Consumer<OrderPlaced>,
}

fn rig() -> Rig {
    rig_with(Arc::new(InMemoryIdempotencyStore::default()))
}

fn rig_with(store: Arc<InMemoryIdempotencyStore>) -> Rig {
    let handler = Arc::new(ScriptedHandler::default());
    let dlq = Arc::new(InMemoryDeadLetters::default());
    let consumer = Consumer::new("billing", handler.clone(), store.clone(), dlq.clone(), ConsumerSettings::default());
    Rig { handler, store, dlq, consumer }
}

fn failure_ids(result: &orderflow_harness::consumer::BatchResult) -> Vec<String> {
    result.response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect()
}

#[tokio::test]
async fn success_is_acknowledged_and_remembered() {
    let rig = rig();
    let result = rig.consumer.process(batch(vec![record("m1", &order_body("ord-1", 1))])).await.unwrap();
    assert_eq!(failure_ids(&result), Vec::<String>::new());
    assert_eq!(rig.handler.calls(), vec!["ord-1"]);
    assert!(rig.store.is_completed(&format!("billing#{}", event_id(1))));
    assert_eq!(result.counts.processed, 1);
    assert!(rig.dlq.letters().is_empty());
}

#[tokio::test]
async fn retryable_failure_is_reported_alone_and_its_claim_released() {
    let rig = rig();
    let result = rig
        .consumer
        .process(batch(vec![
            record("m1", &order_body("ord-1", 1)),
            record("m2", &order_body("retry-2", 2)),
            record("m3", &order_body("ord-3", 3)),
        ]))
        .await
        .unwrap();
    assert_eq!(failure_ids(&result), vec!["m2"]);
    assert!(rig.dlq.letters().is_empty(), "retryable failures are not dead-lettered");
    let key = format!("billing#{}", event_id(2));
    assert!(!rig.store.is_in_progress(&key) && !rig.store.is_completed(&key), "claim released for the redelivery");
    assert_eq!(result.counts.retried, 1);
    assert_eq!(result.counts.processed, 2);
}

#[tokio::test]
async fn each_permanent_cause_goes_to_the_dead_letter_queue_at_once() {
    let rig = rig();
    let mut bad_version = order_data("ord-v9");
    bad_version["x"] = json!(1);
    let mut invalid = order_data("ord-invalid");
    invalid["lines"][0]["quantity"] = json!(0);
    let cases = vec![
        ("not-json", "this is not json".to_string(), "not an EventBridge event"),
        (
            "not-envelope",
            json!({"detail-type": "OrderPlaced", "source": "x", "detail": {"foo": 1}}).to_string(),
            "not an EventBridge event",
        ),
        (
            "unknown-type",
            envelope_body("OrderShipped", 1, json!({}), &event_id(10)),
            "unknown detail-type `OrderShipped`",
        ),
        (
            "bad-version",
            envelope_body("OrderPlaced", 9, bad_version, &event_id(11)),
            "schema version 9 is not supported",
        ),
        ("invalid", envelope_body("OrderPlaced", 2, invalid, &event_id(12)), "invalid `lines[0].quantity`"),
        ("handler-permanent", order_body("perm-1", 13), "order total does not match its lines"),
    ];
    let records = cases.iter().map(|(id, body, _)| record(id, body)).collect();
    let result = rig.consumer.process(batch(records)).await.unwrap();

    assert_eq!(failure_ids(&result), Vec::<String>::new(), "dead-lettered records are acknowledged");
    let letters = rig.dlq.letters();
    assert_eq!(letters.len(), cases.len());
    for (id, body, reason) in &cases {
        let letter = letters.iter().find(|l| l.message_id == *id).unwrap_or_else(|| panic!("{id} not dead-lettered"));
        assert!(letter.reason.contains(reason), "{id}: reason {:?} lacks {reason:?}", letter.reason);
        assert_eq!(&letter.body, body, "the original body is kept for a redrive");
        assert_eq!(letter.consumer, "billing");
        assert_eq!(letter.receive_count, 1);
    }
    assert_eq!(rig.handler.calls(), vec!["perm-1"], "undecodable records never reach the handler");
    assert_eq!(result.counts.dead_lettered, 6);
}

#[tokio::test]
async fn a_permanent_failure_the_dlq_refuses_is_retried_instead() {
    let rig = rig();
    rig.dlq.fail_sends(true);
    let result = rig
        .consumer
        .process(batch(vec![record("bad", "garbage"), record("ok", &order_body("ord-1", 1))]))
        .await
        .unwrap();
    assert_eq!(failure_ids(&result), vec!["bad"]);
    assert!(rig.dlq.letters().is_empty());
}

#[tokio::test]
async fn a_panic_fails_its_record_alone() {
    let rig = rig();
    let result = rig
        .consumer
        .process(batch(vec![
            record("m1", &order_body("ord-1", 1)),
            record("m2", &order_body("panic-2", 2)),
            record("m3", &order_body("ord-3", 3)),
        ]))
        .await
        .unwrap();
    assert_eq!(failure_ids(&result), vec!["m2"]);
    let mut calls = rig.handler.calls();
    calls.sort();
    assert_eq!(calls, vec!["ord-1", "ord-3", "panic-2"]);
    assert!(!rig.store.is_in_progress(&format!("billing#{}", event_id(2))), "claim released after the panic");
}

#[tokio::test]
async fn a_duplicate_of_a_completed_event_is_acknowledged_without_handling() {
    let rig = rig();
    let body = order_body("ord-1", 1);
    rig.consumer.process(batch(vec![record("m1", &body)])).await.unwrap();
    let result = rig.consumer.process(batch(vec![record("m1-again", &body)])).await.unwrap();
    assert_eq!(failure_ids(&result), Vec::<String>::new());
    assert_eq!(rig.handler.calls(), vec!["ord-1"], "handled once");
    assert_eq!(result.counts.duplicates_skipped, 1);

    // Within one batch too (EventBridge can deliver the same event twice to one queue).
    let fresh = self::rig();
    let result = fresh.consumer.process(batch(vec![record("a", &body), record("b", &body)])).await.unwrap();
    assert_eq!(fresh.handler.calls(), vec!["ord-1"]);
    // The second copy is either a duplicate (first finished) or in progress (retried later): never run twice.
    assert!(failure_ids(&result).iter().all(|id| id == "b"));
}

/// `body` as an EventBridge replay named `replay` re-delivers it.
fn replayed(body: &str, replay: &str) -> String {
    let mut event: serde_json::Value = serde_json::from_str(body).unwrap();
    event["replay-name"] = json!(replay);
    event.to_string()
}

#[tokio::test]
async fn a_replay_is_handled_again_once_per_replay() {
    let rig = rig();
    let body = order_body("ord-1", 1);
    rig.consumer.process(batch(vec![record("live", &body)])).await.unwrap();
    // The replay of an event handled live is handled (that is what a replay is for) ...
    let first = replayed(&body, "billing.20261129T060000");
    let result = rig.consumer.process(batch(vec![record("r1", &first)])).await.unwrap();
    assert_eq!(result.counts.processed, 1);
    assert_eq!(rig.handler.calls(), vec!["ord-1", "ord-1"]);
    // ... but once per replay: SQS delivering the replayed copy twice is still a duplicate.
    let result = rig.consumer.process(batch(vec![record("r1-again", &first)])).await.unwrap();
    assert_eq!(result.counts.duplicates_skipped, 1);
    // A later replay is a new deliberate delivery.
    rig.consumer.process(batch(vec![record("r2", &replayed(&body, "billing.20261130T060000"))])).await.unwrap();
    assert_eq!(rig.handler.calls().len(), 3);
}

#[tokio::test]
async fn a_duplicate_of_an_event_in_progress_is_retried_later() {
    let store = Arc::new(InMemoryIdempotencyStore::default());
    store.claim(&format!("billing#{}", event_id(1)), SystemTime::now() + Duration::from_secs(60)).await.unwrap();
    let rig = rig_with(store);
    let result = rig.consumer.process(batch(vec![record("m1", &order_body("ord-1", 1))])).await.unwrap();
    assert_eq!(failure_ids(&result), vec!["m1"]);
    assert!(rig.handler.calls().is_empty());
}

#[tokio::test]
async fn an_expired_in_progress_claim_is_taken_over() {
    let store = Arc::new(InMemoryIdempotencyStore::default());
    store.claim(&format!("billing#{}", event_id(1)), SystemTime::now()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let rig = rig_with(store);
    let result = rig.consumer.process(batch(vec![record("m1", &order_body("ord-1", 1))])).await.unwrap();
    assert_eq!(failure_ids(&result), Vec::<String>::new());
    assert_eq!(rig.handler.calls(), vec!["ord-1"]);
}

struct DownStore;

#[async_trait]
impl IdempotencyStore for DownStore {
    async fn claim(&self, _: &str, _: SystemTime) -> Result<Claim, StoreError> {
        Err(StoreError::retryable("idempotency store", "ProvisionedThroughputExceededException"))
    }
    async fn complete(&self, _: &str, _: &ClaimToken, _: Duration) -> Result<(), StoreError> {
        unreachable!("nothing was claimed")
    }
    async fn release(&self, _: &str, _: &ClaimToken) -> Result<(), StoreError> {
        unreachable!("nothing was claimed")
    }
}

#[tokio::test]
async fn an_unavailable_idempotency_store_means_retry_never_unchecked_handling() {
    let handler = Arc::new(ScriptedHandler::default());
    let dlq = Arc::new(InMemoryDeadLetters::default());
    let consumer = Consumer::new("billing", handler.clone(), Arc::new(DownStore), dlq, ConsumerSettings::default());
    let result = consumer.process(batch(vec![record("m1", &order_body("ord-1", 1))])).await.unwrap();
    assert_eq!(failure_ids(&result), vec!["m1"]);
    assert!(handler.calls().is_empty());
}

#[tokio::test]
async fn without_claims_every_delivery_runs_the_handler_and_the_store_is_never_called() {
    // GIVEN a consumer whose handler is idempotent by its own writes, over a store that is down
    // (the store would turn every record into a retry if it were asked)
    let handler = Arc::new(ScriptedHandler::default());
    let dlq = Arc::new(InMemoryDeadLetters::default());
    let consumer =
        Consumer::new("cache", handler.clone(), Arc::new(DownStore), dlq.clone(), ConsumerSettings::default())
            .without_claims();
    // WHEN the same event arrives twice, beside one that fails for good and one that must be retried
    let body = order_body("ord-1", 1);
    let result = consumer
        .process(batch(vec![
            record("a", &body),
            record("b", &body),
            record("c", &order_body("perm-2", 2)),
            record("d", &order_body("retry-3", 3)),
        ]))
        .await
        .unwrap();
    // THEN both copies ran the handler, the permanent failure went to the DLQ, the retry came back
    let mut calls = handler.calls();
    calls.sort();
    assert_eq!(calls, vec!["ord-1", "ord-1", "perm-2", "retry-3"]);
    assert_eq!(failure_ids(&result), vec!["d"]);
    assert_eq!(dlq.letters().len(), 1);
    assert_eq!((result.counts.processed, result.counts.duplicates_skipped), (2, 0));
}

#[tokio::test]
async fn an_empty_message_id_is_never_reported_the_batch_fails_instead() {
    let rig = rig();
    let mut nameless = record("", &order_body("retry-1", 1));
    nameless.message_id = Some(String::new());
    let mut absent = record("x", &order_body("retry-2", 2));
    absent.message_id = None;
    let err =
        rig.consumer.process(batch(vec![nameless, absent, record("m3", &order_body("ord-3", 3))])).await.unwrap_err();
    assert_eq!(err, BatchError::UnidentifiableFailures(2));

    // A nameless record that succeeds or is dead-lettered needs no id: the batch succeeds.
    let rig = self::rig();
    let mut ok = record("", &order_body("ord-9", 9));
    ok.message_id = None;
    let mut garbage = record("", "garbage");
    garbage.message_id = None;
    let result = rig.consumer.process(batch(vec![ok, garbage])).await.unwrap();
    assert!(result.response.batch_item_failures.is_empty());
    assert_eq!(rig.dlq.letters().len(), 1);
}

fn fifo_record(message_id: &str, group: &str, body: &str) -> SqsMessage {
    let mut r = record(message_id, body);
    r.event_source_arn = Some("arn:aws:sqs:us-east-1:123456789012:orderflow-billing.fifo".into());
    r.attributes.insert("MessageGroupId".into(), group.into());
    r
}

#[tokio::test]
async fn fifo_failure_stops_the_rest_of_its_group_only() {
    let rig = rig();
    let result = rig
        .consumer
        .process(batch(vec![
            fifo_record("a1", "A", &order_body("ord-a1", 1)),
            fifo_record("b1", "B", &order_body("ord-b1", 2)),
            fifo_record("a2", "A", &order_body("retry-a2", 3)),
            fifo_record("b2", "B", &order_body("ord-b2", 4)),
            fifo_record("a3", "A", &order_body("ord-a3", 5)),
            fifo_record("a4", "A", &order_body("ord-a4", 6)),
        ]))
        .await
        .unwrap();
    assert_eq!(failure_ids(&result), vec!["a2", "a3", "a4"], "the failed record and everything after it in group A");
    let calls = rig.handler.calls();
    assert!(!calls.contains(&"ord-a3".to_string()) && !calls.contains(&"ord-a4".to_string()), "{calls:?}");
    let group_a: Vec<&String> = calls.iter().filter(|c| c.contains("-a")).collect();
    assert_eq!(group_a, vec!["ord-a1", "retry-a2"], "group A ran in order");
    assert!(calls.contains(&"ord-b2".to_string()), "group B carried on");
}

#[tokio::test]
async fn records_run_concurrently_up_to_the_bound() {
    let handler = Arc::new(ScriptedHandler::default());
    let settings = ConsumerSettings { max_concurrency: 3, ..ConsumerSettings::default() };
    let consumer = Consumer::new(
        "billing",
        handler.clone(),
        Arc::new(InMemoryIdempotencyStore::default()),
        Arc::new(InMemoryDeadLetters::default()),
        settings,
    );
    let records = (0..10).map(|i| record(&format!("m{i}"), &order_body(&format!("slow-{i}"), i))).collect();
    let result = consumer.process(batch(records)).await.unwrap();
    assert!(result.response.batch_item_failures.is_empty());
    assert_eq!(handler.calls().len(), 10);
    assert_eq!(handler.max_in_flight.load(Ordering::SeqCst), 3, "ran concurrently, never above the bound");
}

#[tokio::test]
async fn a_v1_event_reaches_the_handler_as_the_current_version() {
    let rig = rig();
    let v1 = json!({
        "orderId": "ord-old", "customerId": "c-1", "customerName": "Ada", "customerEmail": "ada@example.com",
        "lines": [{"sku": "SKU-1", "quantity": 1, "unitPriceMinor": 100}], "currency": "EUR", "totalMinor": 100,
        "shippingAddress": {"line1": "1 Main St", "city": "Paris", "postalCode": "75001", "country": "FR"},
        "placedAt": "2026-11-28T10:00:00Z"
    });
    let result = rig
        .consumer
        .process(batch(vec![record("m1", &envelope_body("OrderPlaced", 1, v1, &event_id(1)))]))
        .await
        .unwrap();
    assert!(result.response.batch_item_failures.is_empty());
    assert_eq!(rig.handler.calls(), vec!["ord-old"]);
}

#[test]
fn envelopes_built_by_producers_decode_in_consumers() {
    let placed: OrderPlaced = serde_json::from_value(order_data("ord-1")).unwrap();
    let envelope = Envelope::new(placed.clone(), None);
    let body = json!({"detail-type": "OrderPlaced", "source": "orderflow.sales", "detail": envelope}).to_string();
    let (decoded, metadata) = orderflow_harness::consumer::decode::<OrderPlaced>(Some(&body)).unwrap();
    assert_eq!(decoded, placed);
    assert_eq!(metadata, envelope.metadata);
}

#[tokio::test]
async fn a_crashed_invocations_record_is_handled_on_its_first_redelivery() {
    // GIVEN a consumer whose claims are judged on a clock the test moves
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let clock = Arc::new(ManualClock::at(t0));
    let rig = rig_with(Arc::new(InMemoryIdempotencyStore::with_clock(clock.clone())));
    let body = order_body("hang-1", 1);

    // WHEN the first invocation (10 s timeout) claims the record and is killed before finishing
    let first = rig.consumer.process_until(batch(vec![record("m1", &body)]), t0 + Duration::from_secs(10));
    assert!(tokio::time::timeout(Duration::from_millis(50), first).await.is_err(), "the first invocation hangs");
    assert!(rig.store.is_in_progress(&format!("billing#{}", event_id(1))));

    // THEN the claim ends with that invocation ...
    clock.advance(Duration::from_secs(11));
    assert!(!rig.store.is_in_progress(&format!("billing#{}", event_id(1))), "locked only until the deadline");
    // ... so the redelivery after SQS's visibility timeout (60 s) is handled, not bounced again.
    clock.advance(Duration::from_secs(49));
    let redelivery = rig
        .consumer
        .process_until(batch(vec![record("m1", &body)]), clock.now() + Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(failure_ids(&redelivery), Vec::<String>::new());
    assert_eq!(rig.handler.calls(), vec!["hang-1", "hang-1"]);
    assert!(rig.store.is_completed(&format!("billing#{}", event_id(1))));
}

#[tokio::test]
async fn a_slow_first_holder_cannot_release_or_complete_a_claim_taken_over_by_a_second() {
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let clock = Arc::new(ManualClock::at(t0));
    let store = InMemoryIdempotencyStore::with_clock(clock.clone());
    let Claim::Acquired(slow) = store.claim("billing#e1", t0 + Duration::from_secs(10)).await.unwrap() else {
        panic!("first claim")
    };
    clock.advance(Duration::from_secs(11));
    let Claim::Acquired(second) = store.claim("billing#e1", clock.now() + Duration::from_secs(10)).await.unwrap()
    else {
        panic!("an expired claim is taken over")
    };

    let err = store.complete("billing#e1", &slow, Duration::from_secs(3600)).await.unwrap_err();
    assert!(!err.retryable, "{err}");
    store.release("billing#e1", &slow).await.unwrap();
    assert!(store.is_in_progress("billing#e1"), "the second holder's claim survives the first holder");
    assert!(!store.is_completed("billing#e1"));

    store.complete("billing#e1", &second, Duration::from_secs(3600)).await.unwrap();
    assert!(store.is_completed("billing#e1"));
}

/// Reads `OrderPlaced`, but its decoder has a bug that panics on orders whose id starts `boom-`.
#[derive(Debug)]
struct Fragile(OrderPlaced);

impl orderflow_contracts::Inbound for Fragile {
    const DETAIL_TYPES: &'static [&'static str] = &["OrderPlaced"];
    const SOURCES: &'static [&'static str] = &["orderflow.sales"];
    fn decode(
        detail_type: &str,
        schema_version: u32,
        data: &serde_json::value::RawValue,
    ) -> Result<Self, orderflow_contracts::ContractError> {
        let order = <OrderPlaced as orderflow_contracts::Inbound>::decode(detail_type, schema_version, data)?;
        assert!(!order.order_id.starts_with("boom-"), "decoder bug on {}", order.order_id);
        Ok(Fragile(order))
    }
    fn name(&self) -> &'static str {
        "OrderPlaced"
    }
    fn current_version(detail_type: &str) -> Option<u32> {
        <OrderPlaced as orderflow_contracts::Inbound>::current_version(detail_type)
    }
    fn deserialize_current<'de, D: serde::Deserializer<'de>>(detail_type: &str, d: D) -> Result<Self, D::Error> {
        let order = <OrderPlaced as orderflow_contracts::Inbound>::deserialize_current(detail_type, d)?;
        assert!(!order.order_id.starts_with("boom-"), "decoder bug on {}", order.order_id);
        Ok(Fragile(order))
    }
}

#[derive(Default)]
struct Accepts(Mutex<Vec<String>>);

#[async_trait]
impl Handler<Fragile> for Accepts {
    async fn handle(&self, event: Fragile, _: &RecordContext) -> Result<(), HandlerError> {
        self.0.lock().unwrap().push(event.0.order_id);
        Ok(())
    }
}

#[tokio::test]
async fn a_panic_while_decoding_fails_its_record_alone() {
    let handler = Arc::new(Accepts::default());
    let dlq = Arc::new(InMemoryDeadLetters::default());
    let consumer = Consumer::<Fragile>::new(
        "billing",
        handler.clone(),
        Arc::new(InMemoryIdempotencyStore::default()),
        dlq.clone(),
        ConsumerSettings::default(),
    );
    let result = consumer
        .process(batch(vec![
            record("m1", &order_body("ord-1", 1)),
            record("m2", &order_body("boom-2", 2)),
            record("m3", &order_body("ord-3", 3)),
        ]))
        .await
        .unwrap();
    assert_eq!(failure_ids(&result), vec!["m2"]);
    let mut handled = handler.0.lock().unwrap().clone();
    handled.sort();
    assert_eq!(handled, vec!["ord-1", "ord-3"]);
    assert!(dlq.letters().is_empty(), "a panic is retried, not dead-lettered");
}

/// An idempotency store whose adapter panics on one key (a bug in an adapter, not in the handler).
struct PanicsOn(String, InMemoryIdempotencyStore);

#[async_trait]
impl IdempotencyStore for PanicsOn {
    async fn claim(&self, key: &str, until: SystemTime) -> Result<Claim, StoreError> {
        assert!(!key.ends_with(&self.0), "adapter bug on {key}");
        self.1.claim(key, until).await
    }
    async fn complete(&self, key: &str, token: &ClaimToken, keep_for: Duration) -> Result<(), StoreError> {
        self.1.complete(key, token, keep_for).await
    }
    async fn release(&self, key: &str, token: &ClaimToken) -> Result<(), StoreError> {
        self.1.release(key, token).await
    }
}

#[tokio::test]
async fn a_panic_in_an_adapter_fails_its_record_alone() {
    let handler = Arc::new(ScriptedHandler::default());
    let store = Arc::new(PanicsOn(event_id(2), InMemoryIdempotencyStore::default()));
    let consumer = Consumer::new(
        "billing",
        handler.clone(),
        store,
        Arc::new(InMemoryDeadLetters::default()),
        ConsumerSettings::default(),
    );
    let result = consumer
        .process(batch(vec![
            record("m1", &order_body("ord-1", 1)),
            record("m2", &order_body("ord-2", 2)),
            record("m3", &order_body("ord-3", 3)),
        ]))
        .await
        .unwrap();
    assert_eq!(failure_ids(&result), vec!["m2"]);
    let mut calls = handler.calls();
    calls.sort();
    assert_eq!(calls, vec!["ord-1", "ord-3"]);
}

/// A consumer whose "retry after" goes to a visibility fake that behaves as SQS does: it refuses a
/// delay that would keep a message invisible past 12 hours from its receive (here: the moment the
/// fake is made, just before the batch is handled).
fn held_back(
    settings: ConsumerSettings,
) -> (Arc<ScriptedHandler>, Arc<orderflow_harness::visibility::RecordedDelays>, Consumer<OrderPlaced>) {
    let handler = Arc::new(ScriptedHandler::default());
    let delays = Arc::new(orderflow_harness::visibility::RecordedDelays::default());
    let consumer = Consumer::new(
        "sms",
        handler.clone(),
        Arc::new(InMemoryIdempotencyStore::default()),
        Arc::new(InMemoryDeadLetters::default()),
        settings,
    )
    .with_visibility(delays.clone());
    (handler, delays, consumer)
}

#[tokio::test]
async fn retry_after_holds_the_record_back_within_what_sqs_accepts_from_the_receive() {
    use orderflow_harness::error::MAX_RETRY_DELAY;
    let (_, delays, consumer) = held_back(ConsumerSettings::default());
    let result = consumer
        .process(batch(vec![
            record("m1", &order_body("later-1", 1)),
            record("m2", &order_body("ord-2", 2)),
            record("m3", &order_body("tomorrow-3", 3)),
            record("m4", &order_body("retry-4", 4)),
            record("m5", &order_body("twelve-5", 5)),
        ]))
        .await
        .unwrap();
    assert_eq!(failure_ids(&result), vec!["m1", "m3", "m4", "m5"]);
    let got: std::collections::BTreeMap<String, Duration> = delays.delays().into_iter().collect();
    let handles: Vec<&str> = got.keys().map(String::as_str).collect();
    assert_eq!(handles, vec!["rh-m1", "rh-m3", "rh-m4", "rh-m5"], "every retry is held back, every delay accepted");
    assert_eq!(got["rh-m1"], Duration::from_secs(30), "a Retry-After within the limit is applied as asked");
    assert_eq!(got["rh-m4"], Duration::from_secs(5), "a plain retry gets the harness's growing delay (first delivery)");
    assert_eq!(MAX_RETRY_DELAY, Duration::from_secs(12 * 3600 - 600), "the longest delay: 11 h 50 min");
    for handle in ["rh-m3", "rh-m5"] {
        let delay = got[handle];
        assert!(
            delay <= MAX_RETRY_DELAY && delay > MAX_RETRY_DELAY - Duration::from_secs(5),
            "{handle}: capped at what is left of the 12 hours, less the margin: {delay:?}"
        );
    }
}

#[tokio::test]
async fn the_harness_applies_the_growing_delay_to_plain_retries_and_panics_by_receive_count() {
    // The handler only says "retry"; how long to wait is the harness's, from the receive count.
    let (_, delays, consumer) = held_back(ConsumerSettings::default());
    let mut third = record("m1", &order_body("retry-1", 1));
    third.attributes.insert("ApproximateReceiveCount".into(), "3".into());
    let mut sixth = record("m2", &order_body("panic-2", 2));
    sixth.attributes.insert("ApproximateReceiveCount".into(), "6".into());
    let result = consumer.process(batch(vec![third, sixth])).await.unwrap();
    assert_eq!(failure_ids(&result), vec!["m1", "m2"]);
    let got: std::collections::BTreeMap<String, Duration> = delays.delays().into_iter().collect();
    assert_eq!(got["rh-m1"], Duration::from_secs(20), "5 s doubled twice");
    assert_eq!(got["rh-m2"], Duration::from_secs(160), "5 s doubled five times");
}

#[tokio::test]
async fn a_retry_after_shorter_than_the_growing_delay_waits_the_growing_delay() {
    // A subscriber answering `Retry-After: 0` must not use up the message's receives in seconds.
    let (_, delays, consumer) = held_back(ConsumerSettings::default());
    let mut fourth = record("m1", &order_body("now-1", 1));
    fourth.attributes.insert("ApproximateReceiveCount".into(), "4".into());
    let result = consumer.process(batch(vec![fourth])).await.unwrap();
    assert_eq!(failure_ids(&result), vec!["m1"]);
    assert_eq!(delays.delays(), vec![("rh-m1".to_string(), Duration::from_secs(40))], "5 s doubled three times");
}

#[test]
fn one_retry_after_parser_reads_seconds_and_http_dates() {
    use orderflow_harness::error::retry_after;
    use std::time::UNIX_EPOCH;
    // 2026-12-02T01:00:00Z
    let now = UNIX_EPOCH + Duration::from_secs(1_796_173_200);
    assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
    assert_eq!(retry_after("Wed, 02 Dec 2026 01:01:30 GMT", now), Some(Duration::from_secs(90)));
    assert_eq!(retry_after("Wed, 02 Dec 2026 00:59:00 GMT", now), Some(Duration::ZERO), "a date past is no delay");
    assert_eq!(retry_after("soon", now), None);
    assert_eq!(retry_after("-5", now), None);
}

#[tokio::test]
async fn records_are_not_started_when_less_than_their_budget_is_left_and_come_back_at_once() {
    let (handler, delays, consumer) = held_back(ConsumerSettings { max_concurrency: 2, ..ConsumerSettings::default() });
    let consumer = consumer.with_record_budget(Duration::from_millis(500));
    let records = (1..=6).map(|n| record(&format!("m{n}"), &order_body(&format!("sluggish-{n}"), n))).collect();
    // Each record takes 300 ms, two at a time, in an invocation of 2 s: the third pair would start
    // with 1.4 s left, under the 500 ms budget and the harness's 1 s reserve for settling the batch.
    let result = consumer.process_until(batch(records), SystemTime::now() + Duration::from_secs(2)).await.unwrap();
    let mut calls = handler.calls();
    calls.sort();
    assert_eq!(calls, vec!["sluggish-1", "sluggish-2", "sluggish-3", "sluggish-4"], "the last pair never started");
    assert_eq!(failure_ids(&result), vec!["m5", "m6"]);
    let mut got = delays.delays();
    got.sort();
    assert_eq!(
        got,
        vec![("rh-m5".to_string(), Duration::ZERO), ("rh-m6".to_string(), Duration::ZERO)],
        "handed back visible at once, not after the queue's visibility timeout"
    );
}

#[tokio::test]
async fn a_dead_letter_keeps_every_attribute_of_the_original() {
    let r = rig();
    let mut m = record("m1", &order_body("perm-1", 1));
    let mut subscription = aws_lambda_events::event::sqs::SqsMessageAttribute::default();
    subscription.data_type = Some("String".into());
    subscription.string_value = Some("sub-42".into());
    m.message_attributes.insert("subscriptionId".into(), subscription.clone());
    r.consumer.process(batch(vec![m])).await.unwrap();
    let letters = r.dlq.letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attributes.get("subscriptionId"), Some(&subscription));
    let copy = orderflow_harness::dead_letter::copy_attributes(&letters[0]).unwrap();
    let names: Vec<&str> = copy.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "orderflow.reason",
            "subscriptionId",
            "orderflow.consumer",
            "orderflow.sourceMessageId",
            "orderflow.receiveCount"
        ]
    );
    assert_eq!(copy[1].1.string_value(), Some("sub-42"));

    // An original with SQS's ten attributes still gets its reason (one of its own gives way).
    let mut full = letters[0].clone();
    for n in 0..10 {
        full.attributes.insert(format!("a{n}"), subscription.clone());
    }
    let copy = orderflow_harness::dead_letter::copy_attributes(&full).unwrap();
    assert_eq!(copy.len(), 10);
    assert_eq!(copy[0].0, "orderflow.reason");
}

#[test]
fn the_growing_delay_doubles_from_five_seconds_up_to_fifteen_minutes() {
    use orderflow_harness::error::growing_delay;
    let secs: Vec<u64> = (1..=10).map(|n| growing_delay(n).as_secs()).collect();
    assert_eq!(secs, vec![5, 10, 20, 40, 80, 160, 320, 640, 900, 900]);
    assert_eq!(growing_delay(0).as_secs(), 5);
    assert_eq!(growing_delay(u32::MAX).as_secs(), 900);
}

/// Keeps the context each record reached it with.
#[derive(Default)]
struct SeesContext(Mutex<Vec<RecordContext>>);

#[async_trait]
impl Handler<OrderPlaced> for SeesContext {
    async fn handle(&self, _: OrderPlaced, ctx: &RecordContext) -> Result<(), HandlerError> {
        self.0.lock().unwrap().push(ctx.clone());
        Ok(())
    }
}

#[tokio::test]
async fn each_handling_is_a_span_of_its_events_trace_and_what_it_causes_names_it_as_parent() {
    use orderflow_contracts::{PaymentDeclined, TraceContext};
    let seen = Arc::new(SeesContext::default());
    let consumer = |name: &str| {
        Consumer::new(
            name.to_string(),
            seen.clone() as Arc<dyn Handler<OrderPlaced>>,
            Arc::new(InMemoryIdempotencyStore::default()),
            Arc::new(InMemoryDeadLetters::default()),
            ConsumerSettings::default(),
        )
    };
    let published = TraceContext::new_root().to_string();
    let published = published.as_str();
    let mut traced: serde_json::Value = serde_json::from_str(&order_body("o-1", 1)).unwrap();
    traced["detail"]["metadata"]["traceparent"] = json!(published);
    let untraced = order_body("o-2", 2);
    for name in ["billing", "email", "billing"] {
        let result = consumer(name)
            .process(batch(vec![record("m-1", &traced.to_string()), record("m-2", &untraced)]))
            .await
            .unwrap();
        assert!(result.response.batch_item_failures.is_empty());
    }
    let seen = seen.0.lock().unwrap().clone();
    let trace = |ctx: &RecordContext| TraceContext::parse(ctx.metadata.traceparent.as_deref().unwrap()).unwrap();
    let by_order = |i: usize| -> Vec<TraceContext> {
        seen.iter().filter(|c| c.message_id == format!("m-{i}")).map(trace).collect()
    };
    let (first, second) = (by_order(1), by_order(2));
    let parent = TraceContext::parse(published).unwrap();
    for handling in &first {
        assert_eq!(handling.trace_id, parent.trace_id, "the publisher's trace");
        assert_ne!(handling.span_id, parent.span_id, "a span of its own");
    }
    assert_eq!(first[0], first[2], "a redelivery to the same consumer is the same span");
    assert_ne!(first[0].span_id, first[1].span_id, "each consumer its own span");
    // No context carried: the flow's (from its correlation id), for every consumer alike.
    let flow = TraceContext::derived("corr-1", &event_id(2).parse().unwrap());
    assert!(second.iter().all(|t| t.trace_id == flow.trace_id), "{second:?}");

    // What the handler publishes names its handling as parent.
    let ctx = seen.iter().find(|c| c.message_id == "m-1").unwrap();
    let declined = PaymentDeclined {
        order_id: "o-1".into(),
        invoice_id: "inv-1".into(),
        amount_minor: 100,
        currency: orderflow_contracts::Currency::EUR,
        reason: "limit".into(),
        declined_at: chrono::Utc::now(),
    };
    let caused = Envelope::caused_by(&ctx.metadata, declined);
    assert_eq!(caused.metadata.trace(), first[0]);
    let outbound = orderflow_harness::OutboundEvent::from_envelope(&caused);
    assert_eq!(
        outbound.trace_header,
        Some(format!(
            "Root=1-{}-{};Parent={};Sampled=1",
            &published[3..11],
            &published[11..35],
            first[0].span_id_hex()
        )),
        "the bus is handed the trace in X-Ray's form"
    );
}
