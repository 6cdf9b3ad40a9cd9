//! The order cache's store: the Redis adapter against the machine's Redis (`REDIS_URL`, default
//! `redis://127.0.0.1:6379`; `make test` makes sure it runs), and the in-memory fake's expiry.

use std::sync::Arc;
use std::time::Duration;

use orderflow_contracts::{OrderState, OrderStatus};
use orderflow_harness_testing::sample_order;
use orderflow_order_cache::{keys, InMemoryOrderCache, OrderCache, RedisOrderCache, VERSION_TTL};
use pretty_assertions::assert_eq;

/// The sample's order at `version` and `status`, under `order_id`.
fn order(order_id: &str, version: u64, status: OrderStatus) -> OrderState {
    sample_order("cache/order-status-changed.sqs.json", 0, order_id, version, status)
}

fn redis_url() -> String {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    orderflow_harness_testing::needs_service("Redis", &url);
    url
}

#[tokio::test]
async fn redis_keeps_the_newest_version_whatever_the_order_of_writes() {
    let cache = RedisOrderCache::new(&redis_url(), "", Duration::from_secs(60), Duration::from_secs(2)).unwrap();
    let id = format!("test-{}", uuid::Uuid::new_v4());
    assert_eq!(cache.get(&id).await.unwrap(), None);
    assert!(cache.put_if_newer(&order(&id, 3, OrderStatus::ReadyToShip)).await.unwrap());
    assert!(!cache.put_if_newer(&order(&id, 2, OrderStatus::Placed)).await.unwrap(), "older: refused");
    assert!(!cache.put_if_newer(&order(&id, 3, OrderStatus::ReadyToShip)).await.unwrap(), "same: refused");
    assert_eq!(cache.get(&id).await.unwrap().map(|o| o.version), Some(3));
    assert!(cache.put_if_newer(&order(&id, 4, OrderStatus::ReadyToShip)).await.unwrap());

    // TTLs as documented: the order expires with the cache TTL, its version lives longer.
    let client = redis::Client::open(redis_url().as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let (order_key, version_key) = keys(&id);
    let order_ttl: i64 = redis::cmd("TTL").arg(&order_key).query_async(&mut conn).await.unwrap();
    let version_ttl: i64 = redis::cmd("TTL").arg(&version_key).query_async(&mut conn).await.unwrap();
    assert!((1..=60).contains(&order_ttl), "order TTL {order_ttl}");
    assert!(version_ttl > 60 && version_ttl <= VERSION_TTL.as_secs() as i64, "version TTL {version_ttl}");

    // Once the order has expired, an old redelivered event still cannot put an old copy back.
    let _: () = redis::cmd("DEL").arg(&order_key).query_async(&mut conn).await.unwrap();
    assert!(!cache.put_if_newer(&order(&id, 2, OrderStatus::Placed)).await.unwrap());
    assert_eq!(cache.get(&id).await.unwrap(), None);
}

#[tokio::test]
async fn redis_refills_an_expired_order_with_its_own_version_and_never_an_older_one() {
    // A one-second cache TTL: the order key expires, the version key (15 days) does not.
    let cache = RedisOrderCache::new(&redis_url(), "", Duration::from_secs(1), Duration::from_secs(2)).unwrap();
    let id = format!("test-{}", uuid::Uuid::new_v4());
    assert!(cache.put_if_newer(&order(&id, 4, OrderStatus::ReadyToShip)).await.unwrap());
    assert!(!cache.put_if_newer(&order(&id, 4, OrderStatus::ReadyToShip)).await.unwrap(), "still cached: no write");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(cache.get(&id).await.unwrap(), None, "the order key expired");
    assert!(!cache.put_if_newer(&order(&id, 3, OrderStatus::Placed)).await.unwrap(), "older: still refused");
    assert!(cache.put_if_newer(&order(&id, 4, OrderStatus::ReadyToShip)).await.unwrap(), "the same version refills");
    assert_eq!(cache.get(&id).await.unwrap().map(|o| o.version), Some(4));
}

#[tokio::test]
async fn the_fake_expires_orders_and_refills_them_as_redis_does() {
    use orderflow_harness::clock::ManualClock;
    let clock = Arc::new(ManualClock::at(std::time::SystemTime::now()));
    let cache = InMemoryOrderCache::new(Duration::from_secs(60), clock.clone());
    assert!(cache.put_if_newer(&order("o-9", 4, OrderStatus::ReadyToShip)).await.unwrap());
    clock.advance(Duration::from_secs(61));
    assert_eq!(cache.get("o-9").await.unwrap(), None, "expired after the cache TTL");
    assert!(!cache.put_if_newer(&order("o-9", 3, OrderStatus::Placed)).await.unwrap(), "older: refused");
    assert!(cache.put_if_newer(&order("o-9", 4, OrderStatus::ReadyToShip)).await.unwrap(), "same version refills");
    clock.advance(VERSION_TTL);
    assert!(cache.put_if_newer(&order("o-9", 3, OrderStatus::Placed)).await.unwrap(), "after the version key expired");
}

#[tokio::test]
async fn a_redis_that_refuses_connections_is_a_retryable_error_within_the_timeout() {
    // Port 1 on loopback: nothing listens, the connection is refused.
    let cache =
        RedisOrderCache::new("redis://127.0.0.1:1", "", Duration::from_secs(60), Duration::from_millis(300)).unwrap();
    let started = std::time::Instant::now();
    let error = cache.get("o-1").await.unwrap_err();
    assert!(error.retryable);
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[tokio::test]
async fn opening_at_init_answers_as_a_read_would() {
    // Against the machine's Redis: open, and the connection then serves the first read.
    let cache = RedisOrderCache::new(&redis_url(), "", Duration::from_secs(60), Duration::from_secs(2)).unwrap();
    cache.open().await.unwrap();
    assert_eq!(cache.get(&format!("never-{}", std::process::id())).await.unwrap(), None);
    // A Redis that refuses: a retryable error within the timeout, which init logs and goes on.
    let refused =
        RedisOrderCache::new("redis://127.0.0.1:1", "", Duration::from_secs(60), Duration::from_millis(300)).unwrap();
    let started = std::time::Instant::now();
    assert!(refused.open().await.unwrap_err().retryable);
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}
