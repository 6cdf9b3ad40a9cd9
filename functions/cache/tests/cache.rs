//! The cache consumer over the in-memory fake (the store's own tests, against the machine's Redis,
//! are in `shared/order-cache/tests/`).

use std::sync::Arc;

use cache::handler::CacheHandler;
use cache::store::InMemoryOrderCache;
use orderflow_contracts::{OrderState, OrderStatus};
use orderflow_harness_testing::{sample_order, sqs_batch, sqs_sample, status_changed_body, Harnessed};
use pretty_assertions::assert_eq;

/// The sample's order at `version` and `status`, under `order_id`.
fn order(order_id: &str, version: u64, status: OrderStatus) -> OrderState {
    sample_order("cache/order-status-changed.sqs.json", 0, order_id, version, status)
}

#[tokio::test]
async fn the_sample_event_is_cached() {
    let cache = Arc::new(InMemoryOrderCache::default());
    let consumer = Harnessed::new("cache", Arc::new(CacheHandler::new(cache.clone())));
    assert!(consumer.failures(sqs_sample("cache/order-status-changed.sqs.json")).await.is_empty());
    let cached = cache.cached("ord-7f3a2c").expect("cached");
    assert_eq!((cached.version, cached.status), (2, OrderStatus::ReadyToShip));
}

#[tokio::test]
async fn versions_delivered_in_reverse_leave_the_newest_cached() {
    let cache = Arc::new(InMemoryOrderCache::default());
    let consumer = Harnessed::new("cache", Arc::new(CacheHandler::new(cache.clone())));
    let bodies = vec![
        status_changed_body(order("o-1", 3, OrderStatus::ReadyToShip)),
        status_changed_body(order("o-1", 2, OrderStatus::Placed)),
    ];
    for body in bodies {
        assert!(consumer.failures(sqs_batch(vec![body])).await.is_empty());
    }
    assert_eq!(cache.cached("o-1").unwrap().version, 3);
}

#[tokio::test]
async fn a_cache_that_is_down_means_retry_after_a_delay() {
    let cache = Arc::new(InMemoryOrderCache::default());
    cache.set_down(true);
    let consumer = Harnessed::new("cache", Arc::new(CacheHandler::new(cache.clone())));
    let failures =
        consumer.failures(sqs_batch(vec![status_changed_body(order("o-2", 2, OrderStatus::ReadyToShip))])).await;
    assert_eq!(failures, vec!["m0"]);
    assert_eq!(consumer.delays.delays().len(), 1, "held back rather than hammered");
    cache.set_down(false);
    assert!(consumer
        .failures(sqs_batch(vec![status_changed_body(order("o-2", 2, OrderStatus::ReadyToShip))]))
        .await
        .is_empty());
    assert!(cache.cached("o-2").is_some());
}
