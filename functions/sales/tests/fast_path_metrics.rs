//! The fast path's metrics (`sales::announce::metrics`): what the writers published and missed, and
//! what the relay published and skipped, each on the invocation's metrics line where the template's
//! alarm reads it. One test alone in this binary: the counters are the process's, as in a Lambda
//! process, which runs one invocation at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lambda_http::Request;
use orderflow_harness::publisher::InMemoryPublisher;
use orderflow_harness::telemetry::Work;
use orderflow_harness_testing::sample_text;
use pretty_assertions::assert_eq;
use sales::announce::metrics::{FAST_PATH_MISSED, FAST_PATH_PUBLISHED, RELAY_PUBLISHED, RELAY_SKIPPED};
use sales::announce::{InMemorySentMarks, PublishOnWrite};
use sales::api::SalesApi;
use sales::callers::InMemoryCallerRecords;
use sales::catalogue::InMemoryCatalogue;
use sales::orders::InMemoryOrderStore;
use sales::outbox::OutboxRelay;

/// The sample order, under an idempotency key of its own (so each is a new order).
fn post(key: &str) -> Request {
    let text = sample_text("sales-api/post-order.http.json").replace("3f0c9a4e-5b1d-4c8e-9f2a-7d6b5e4c3a21", key);
    lambda_http::request::from_str(&text).expect("an API Gateway request")
}

/// The counters of the "invocation" since the last call, as its metrics line would carry them.
fn invocation_counters() -> Vec<(&'static str, u64)> {
    Work::since(Instant::now()).counters.into_iter().collect()
}

#[tokio::test]
async fn writers_count_what_they_published_and_missed_and_the_relay_what_it_published_and_skipped() {
    let orders = Arc::new(InMemoryOrderStore::default());
    let marks = Arc::new(InMemorySentMarks::default());
    let bus = Arc::new(InMemoryPublisher::default());
    let writer =
        PublishOnWrite::new(orders.clone(), marks.clone(), bus.clone()).with_budget(Duration::from_millis(200));
    let api = SalesApi::new(
        Arc::new(writer),
        Arc::new(InMemoryCallerRecords::default()),
        Arc::new(InMemoryCatalogue::of_the_samples()),
        495,
    );
    let _ = invocation_counters();

    // Two orders: the first published on its path, the second's publish refused.
    assert_eq!(api.handle(post("8a1d3c2e-0000-4000-8000-000000000001")).await.status(), 201);
    assert_eq!(invocation_counters(), vec![(FAST_PATH_PUBLISHED, 1)]);
    bus.fail_next(1);
    assert_eq!(api.handle(post("8a1d3c2e-0000-4000-8000-000000000002")).await.status(), 201);
    assert_eq!(invocation_counters(), vec![(FAST_PATH_MISSED, 1)]);

    // The relay skips the marked one and publishes the other.
    let relay = OutboxRelay::new(bus.clone()).with_sent_marks(marks.clone()).with_grace(Duration::ZERO);
    let response = relay.relay(orders.take_stream()).await;
    assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
    assert_eq!(invocation_counters(), vec![(RELAY_PUBLISHED, 1), (RELAY_SKIPPED, 1)]);
    assert_eq!(bus.published().len(), 2, "each order announced once");
}
