//! The `OrderCache` port, its Redis adapter and an in-memory fake.
//!
//! Two keys per order, in one hash slot (`{id}`), so the script also runs on a Redis cluster:
//!
//! - `orderflow:order:{<id>}`: the order as JSON (what `GET /orders/{id}` answers), expiring after
//!   the cache TTL (default one day);
//! - `orderflow:order:{<id>}:version`: the newest version written, kept for 15 days, longer than an
//!   SQS queue keeps a message (14 days), so an old event redelivered after the order itself expired
//!   cannot put an old copy back.
//!
//! The compare-and-set is one Lua script, so two writers (the consumer and a read-through fill) can
//! never interleave between the comparison and the write.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use orderflow_contracts::OrderState;
use orderflow_harness::StoreError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Script;
use tracing::warn;

const STORE: &str = "order cache";

/// How long the newest version of an order is remembered (longer than SQS keeps a message).
pub const VERSION_TTL: Duration = Duration::from_secs(15 * 86_400);

/// `SET` the order only when its version is newer than the one recorded; returns 1 if it was set.
const SET_IF_NEWER: &str = r"
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[4])
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
";

/// A cache of orders by id.
#[async_trait]
pub trait OrderCache: Send + Sync {
    /// The cached order, if any.
    async fn get(&self, order_id: &str) -> Result<Option<OrderState>, StoreError>;
    /// Stores `order` unless a copy of the same or a newer version was stored; says whether it did.
    async fn put_if_newer(&self, order: &OrderState) -> Result<bool, StoreError>;
}

/// The keys of an order: its JSON and its version.
pub fn keys(order_id: &str) -> (String, String) {
    (format!("orderflow:order:{{{order_id}}}"), format!("orderflow:order:{{{order_id}}}:version"))
}

/// The Redis adapter: one lazily connected, self-reconnecting connection per Lambda instance.
pub struct RedisOrderCache {
    connection: ConnectionManager,
    script: Script,
    ttl: Duration,
}

impl RedisOrderCache {
    /// Connects lazily to `url` (`redis://host:port`, or `rediss://` for TLS as ElastiCache in
    /// transit encryption needs). Every call gives up after `timeout`, so a Redis that is down costs
    /// a reader no more than that.
    pub fn new(url: &str, ttl: Duration, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::permanent(STORE, format!("REDIS_URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::permanent(STORE, e.to_string()))?;
        Ok(Self { connection, script: Script::new(SET_IF_NEWER), ttl })
    }
}

fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::retryable(STORE, e.to_string())
}

#[async_trait]
impl OrderCache for RedisOrderCache {
    async fn get(&self, order_id: &str) -> Result<Option<OrderState>, StoreError> {
        let (order_key, _) = keys(order_id);
        let mut connection = self.connection.clone();
        let json: Option<String> =
            redis::cmd("GET").arg(&order_key).query_async(&mut connection).await.map_err(unavailable)?;
        Ok(json.and_then(|json| match serde_json::from_str(&json) {
            Ok(order) => Some(order),
            Err(e) => {
                // An entry of another shape (an older deployment's): a miss, overwritten by the next write.
                warn!(key = %order_key, error = %e, "unreadable cache entry: treated as a miss");
                None
            }
        }))
    }

    async fn put_if_newer(&self, order: &OrderState) -> Result<bool, StoreError> {
        let (order_key, version_key) = keys(&order.order_id);
        let json = serde_json::to_string(order).expect("orders serialise");
        let mut connection = self.connection.clone();
        let set: i64 = self
            .script
            .key(order_key)
            .key(version_key)
            .arg(order.version)
            .arg(json)
            .arg(self.ttl.as_secs().max(1))
            .arg(VERSION_TTL.as_secs())
            .invoke_async(&mut connection)
            .await
            .map_err(unavailable)?;
        Ok(set == 1)
    }
}

/// The in-memory fake, with the same newest-version-wins rule and a switch that makes it "down".
#[derive(Debug, Default)]
pub struct InMemoryOrderCache {
    orders: Mutex<HashMap<String, OrderState>>,
    down: Mutex<bool>,
}

impl InMemoryOrderCache {
    /// Makes every call fail (retryably) while `down`.
    pub fn set_down(&self, down: bool) {
        *self.down.lock().expect("lock") = down;
    }

    /// The cached copy, looked at directly.
    pub fn cached(&self, order_id: &str) -> Option<OrderState> {
        self.orders.lock().expect("lock").get(order_id).cloned()
    }

    fn check(&self) -> Result<(), StoreError> {
        if *self.down.lock().expect("lock") {
            return Err(StoreError::retryable(STORE, "connection refused (fake)"));
        }
        Ok(())
    }
}

#[async_trait]
impl OrderCache for InMemoryOrderCache {
    async fn get(&self, order_id: &str) -> Result<Option<OrderState>, StoreError> {
        self.check()?;
        Ok(self.cached(order_id))
    }

    async fn put_if_newer(&self, order: &OrderState) -> Result<bool, StoreError> {
        self.check()?;
        let mut orders = self.orders.lock().expect("lock");
        if orders.get(&order.order_id).is_some_and(|cached| cached.version >= order.version) {
            return Ok(false);
        }
        orders.insert(order.order_id.clone(), order.clone());
        Ok(true)
    }
}
