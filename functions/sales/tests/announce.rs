//! The outbox's fast path (`sales::announce`): writers publish their own writes and mark them, the
//! relay publishes what is unmarked. One bus stands for EventBridge throughout, so what the writer
//! and the relay each sent adds up to what consumers would see; the relay reads the fake table's
//! stream (`InMemoryOrderStore::take_stream`) and the fake marks.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lambda_http::Request;
use orderflow_contracts::{CancelledBy, OrderState};
use orderflow_harness::publisher::{InMemoryPublisher, PublishError};
use orderflow_harness::{EventPublisher, OutboundEvent, StoreError};
use orderflow_harness_testing::sample_text;
use pretty_assertions::assert_eq;
use sales::announce::{InMemorySentMarks, PublishOnWrite, SentMarks};
use sales::api::SalesApi;
use sales::callers::InMemoryCallerRecords;
use sales::catalogue::InMemoryCatalogue;
use sales::orders::{cancel, Cancellation, InMemoryOrderStore};
use sales::outbox::OutboxRelay;

fn post() -> Request {
    lambda_http::request::from_str(&sample_text("sales-api/post-order.http.json")).expect("an API Gateway request")
}

/// The API over the fast path: `writer_bus` is what the writer publishes to, `marks` what it marks in.
fn api(orders: &Arc<InMemoryOrderStore>, marks: Arc<dyn SentMarks>, writer_bus: Arc<dyn EventPublisher>) -> SalesApi {
    let writer = PublishOnWrite::new(orders.clone(), marks, writer_bus).with_budget(Duration::from_millis(200));
    SalesApi::new(
        Arc::new(writer),
        Arc::new(InMemoryCallerRecords::default()),
        Arc::new(InMemoryCatalogue::of_the_samples()),
        495,
    )
}

async fn place(api: &SalesApi) -> OrderState {
    let response = api.handle(post()).await;
    assert_eq!(response.status(), 201, "the order is taken whatever happens to its publish");
    serde_json::from_slice(response.body().as_ref()).unwrap()
}

/// Runs the relay over everything the table's stream holds now; nothing may be left to retry.
async fn relay_the_stream(
    orders: &Arc<InMemoryOrderStore>,
    marks: &Arc<InMemorySentMarks>,
    bus: Arc<dyn EventPublisher>,
) {
    let relay = OutboxRelay::new(bus).with_sent_marks(marks.clone()).with_grace(Duration::ZERO);
    let response = relay.relay(orders.take_stream()).await;
    assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
}

fn kinds(bus: &InMemoryPublisher) -> Vec<String> {
    bus.published().iter().map(|e| e.detail_type.clone()).collect()
}

#[tokio::test]
async fn a_write_published_on_its_path_is_marked_and_the_relay_does_not_publish_it_again() {
    let orders = Arc::new(InMemoryOrderStore::default());
    let marks = Arc::new(InMemorySentMarks::default());
    let bus = Arc::new(InMemoryPublisher::default());
    let api = api(&orders, marks.clone(), bus.clone());
    let order = place(&api).await;
    assert_eq!(kinds(&bus), vec!["OrderPlaced"], "on the bus before the 201");
    let placed_id = bus.published()[0].event_id.clone();
    assert_eq!(marks.sent(&order.order_id).await.unwrap(), vec![placed_id]);

    relay_the_stream(&orders, &marks, bus.clone()).await;
    assert_eq!(kinds(&bus), vec!["OrderPlaced"], "the relay left the marked event alone");
}

#[tokio::test]
async fn a_cancellation_publishes_both_its_events_on_its_path_and_the_relay_neither_again() {
    let orders = Arc::new(InMemoryOrderStore::default());
    let marks = Arc::new(InMemorySentMarks::default());
    let bus = Arc::new(InMemoryPublisher::default());
    let api = api(&orders, marks.clone(), bus.clone());
    let order = place(&api).await;
    let writer = PublishOnWrite::new(orders.clone(), marks.clone(), bus.clone());
    let cancelled = cancel(&writer, &order.order_id, CancelledBy::Customer, None, "c").await.unwrap();
    assert!(matches!(cancelled, Cancellation::Accepted(_)), "{cancelled:?}");
    assert_eq!(kinds(&bus), vec!["OrderPlaced", "OrderStatusChanged", "OrderCancelled"]);
    assert_eq!(marks.sent(&order.order_id).await.unwrap().len(), 3, "both writes' events marked");

    relay_the_stream(&orders, &marks, bus.clone()).await;
    assert_eq!(bus.published().len(), 3, "{:?}", kinds(&bus));
}

#[tokio::test]
async fn a_write_whose_publish_fails_is_taken_and_published_by_the_relay_once() {
    let orders = Arc::new(InMemoryOrderStore::default());
    let marks = Arc::new(InMemorySentMarks::default());
    let bus = Arc::new(InMemoryPublisher::default());
    bus.fail_next(1);
    let api = api(&orders, marks.clone(), bus.clone());
    let order = place(&api).await;
    assert!(bus.published().is_empty());
    assert!(marks.sent(&order.order_id).await.unwrap().is_empty(), "nothing marked that is not on the bus");

    relay_the_stream(&orders, &marks, bus.clone()).await;
    assert_eq!(kinds(&bus), vec!["OrderPlaced"]);
    assert_eq!(bus.published()[0].event_id, orders.announcements()[0].event_id, "the stored event");
}

/// A bus that never answers: the process dies (or gives up) between the write and the publish.
struct Hangs;

#[async_trait]
impl EventPublisher for Hangs {
    async fn publish(&self, _events: Vec<OutboundEvent>) -> Result<(), PublishError> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_process_that_dies_between_the_write_and_the_publish_loses_nothing() {
    let orders = Arc::new(InMemoryOrderStore::default());
    let marks = Arc::new(InMemorySentMarks::default());
    let api = api(&orders, marks.clone(), Arc::new(Hangs));
    // The invocation is dropped mid-publish, as a killed process would leave it.
    let died = tokio::time::timeout(Duration::from_millis(50), api.handle(post())).await;
    assert!(died.is_err(), "still publishing when it died");
    let stored = orders.all();
    assert_eq!(stored.len(), 1, "the write happened");

    let bus = Arc::new(InMemoryPublisher::default());
    relay_the_stream(&orders, &marks, bus.clone()).await;
    assert_eq!(kinds(&bus), vec!["OrderPlaced"], "announced by the relay");
}

#[tokio::test]
async fn a_publish_slower_than_the_budget_is_left_to_the_relay_and_the_caller_is_answered() {
    let orders = Arc::new(InMemoryOrderStore::default());
    let marks = Arc::new(InMemorySentMarks::default());
    let api = api(&orders, marks.clone(), Arc::new(Hangs));
    let started = std::time::Instant::now();
    let order = place(&api).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(2), "waited {waited:?}");
    assert!(marks.sent(&order.order_id).await.unwrap().is_empty());
}

/// Marks that cannot be written: the table refuses the mark after the publish.
struct Unmarkable(Arc<InMemorySentMarks>);

#[async_trait]
impl SentMarks for Unmarkable {
    async fn mark_sent(&self, _order_id: &str, _event_ids: &[String]) -> Result<(), StoreError> {
        Err(StoreError::retryable("order store", "throttled"))
    }
    async fn sent(&self, order_id: &str) -> Result<Vec<String>, StoreError> {
        self.0.sent(order_id).await
    }
}

#[tokio::test]
async fn published_but_not_marked_is_published_again_as_the_same_event() {
    let orders = Arc::new(InMemoryOrderStore::default());
    let marks = Arc::new(InMemorySentMarks::default());
    let bus = Arc::new(InMemoryPublisher::default());
    let api = api(&orders, Arc::new(Unmarkable(marks.clone())), bus.clone());
    place(&api).await;
    relay_the_stream(&orders, &marks, bus.clone()).await;
    let published = bus.published();
    assert_eq!(kinds(&bus), vec!["OrderPlaced", "OrderPlaced"], "twice rather than never");
    assert_eq!(published[0].event_id, published[1].event_id, "the same event: consumers drop the second");
}

#[tokio::test]
async fn a_mark_that_lands_after_a_later_write_still_spares_the_relay() {
    let orders = Arc::new(InMemoryOrderStore::default());
    let marks = Arc::new(InMemorySentMarks::default());
    let bus = Arc::new(InMemoryPublisher::default());
    // The first write is published, its mark not yet written ...
    let api = api(&orders, Arc::new(Unmarkable(marks.clone())), bus.clone());
    let order = place(&api).await;
    // ... a cancellation is written whose publish fails ...
    let writer = PublishOnWrite::new(orders.clone(), marks.clone(), Arc::new(Hangs)).with_budget(Duration::ZERO);
    cancel(&writer, &order.order_id, CancelledBy::Customer, None, "c").await.unwrap();
    // ... then the first write's mark lands.
    let placed = bus.published()[0].event_id.clone();
    marks.mark_sent(&order.order_id, std::slice::from_ref(&placed)).await.unwrap();
    assert_eq!(marks.sent(&order.order_id).await.unwrap(), vec![placed]);

    // The relay publishes the cancellation's events, and only them.
    relay_the_stream(&orders, &marks, bus.clone()).await;
    assert_eq!(kinds(&bus), vec!["OrderPlaced", "OrderStatusChanged", "OrderCancelled"]);
}

#[tokio::test]
async fn marks_that_cannot_be_read_make_the_relay_publish_rather_than_skip() {
    struct Unreadable;
    #[async_trait]
    impl SentMarks for Unreadable {
        async fn mark_sent(&self, _: &str, _: &[String]) -> Result<(), StoreError> {
            Ok(())
        }
        async fn sent(&self, _: &str) -> Result<Vec<String>, StoreError> {
            Err(StoreError::retryable("order store", "timed out"))
        }
    }
    let orders = Arc::new(InMemoryOrderStore::default());
    let marks = Arc::new(InMemorySentMarks::default());
    let bus = Arc::new(InMemoryPublisher::default());
    place(&api(&orders, marks.clone(), bus.clone())).await;
    let relay = OutboxRelay::new(bus.clone()).with_sent_marks(Arc::new(Unreadable)).with_grace(Duration::ZERO);
    assert!(relay.relay(orders.take_stream()).await.batch_item_failures.is_empty());
    assert_eq!(kinds(&bus), vec!["OrderPlaced", "OrderPlaced"]);
}

/// Marks written `late` after the publish (within the writer's budget), as a writer slower than the
/// relay would.
struct SlowMarks {
    inner: Arc<InMemorySentMarks>,
    late: Duration,
}

#[async_trait]
impl SentMarks for SlowMarks {
    async fn mark_sent(&self, order_id: &str, event_ids: &[String]) -> Result<(), StoreError> {
        tokio::time::sleep(self.late).await;
        self.inner.mark_sent(order_id, event_ids).await
    }
    async fn sent(&self, order_id: &str) -> Result<Vec<String>, StoreError> {
        self.inner.sent(order_id).await
    }
}

#[tokio::test]
async fn a_relay_quicker_than_the_writers_mark_waits_for_it_and_publishes_nothing_again() {
    let orders = Arc::new(InMemoryOrderStore::default());
    let marks = Arc::new(InMemorySentMarks::default());
    let bus = Arc::new(InMemoryPublisher::default());
    let slow = Arc::new(SlowMarks { inner: marks.clone(), late: Duration::from_millis(100) });
    let api = api(&orders, slow, bus.clone());
    // The relay reads the stream while the writer is still between its publish and its mark.
    let writer = async { place(&api).await };
    let relay = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The write is stored (the writer is between its publish and its mark by now).
        while orders.all().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let relay = OutboxRelay::new(bus.clone()).with_sent_marks(marks.clone()).with_grace(Duration::from_secs(2));
        let started = std::time::Instant::now();
        assert!(relay.relay(orders.take_stream()).await.batch_item_failures.is_empty());
        started.elapsed()
    };
    let (_, waited) = tokio::join!(writer, relay);
    assert_eq!(kinds(&bus), vec!["OrderPlaced"], "published once, by the writer");
    assert!(waited >= Duration::from_millis(30) && waited < Duration::from_secs(1), "waited {waited:?} for the mark");
}

#[tokio::test]
async fn a_young_write_left_unmarked_is_published_once_its_writers_grace_is_over() {
    let orders = Arc::new(InMemoryOrderStore::default());
    let marks = Arc::new(InMemorySentMarks::default());
    let bus = Arc::new(InMemoryPublisher::default());
    bus.fail_next(1);
    place(&api(&orders, marks.clone(), bus.clone())).await;
    // The stream stamps whole seconds, rounded down: a grace of 1.4 s from that stamp ends 0.4 to
    // 1.4 s from now.
    let relay = OutboxRelay::new(bus.clone()).with_sent_marks(marks.clone()).with_grace(Duration::from_millis(1400));
    let started = std::time::Instant::now();
    assert!(relay.relay(orders.take_stream()).await.batch_item_failures.is_empty());
    let waited = started.elapsed();
    assert_eq!(kinds(&bus), vec!["OrderPlaced"]);
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_millis(1900), "waited {waited:?}");
}
