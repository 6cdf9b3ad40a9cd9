//! The order cache's store: the `OrderCache` port, its Redis adapter and an in-memory fake. The cache
//! consumer (`functions/cache`) writes it; the Sales API (`functions/sales`) reads through it. It is a
//! shared crate so that no function crate depends on another.
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
//! never interleave between the comparison and the write. A newer version always wins; the same
//! version is written again only when its order key has expired (a read-through fill after the
//! cache TTL), so a `GET` refills the cache instead of missing until the version key expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use orderflow_contracts::OrderState;
use orderflow_harness::clock::{Clock, SystemClock};
use orderflow_harness::StoreError;
#[cfg(feature = "redis")]
use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    Script,
};

const STORE: &str = "order cache";

/// The environment variables [`RedisOrderCache::from_env`] reads when set (the template test reads
/// this list for every main that calls it).
pub mod vars {
    /// How long a cached order lives, in seconds (default one day).
    pub const CACHE_TTL_SECONDS: &str = "CACHE_TTL_SECONDS";
    /// A PEM file whose CA alone is trusted for `rediss://` (default: the Mozilla roots).
    pub const REDIS_CA_FILE: &str = "REDIS_CA_FILE";
    /// All of them.
    pub const OPTIONAL: [&str; 2] = [CACHE_TTL_SECONDS, REDIS_CA_FILE];
}

/// How long the newest version of an order is remembered (longer than SQS keeps a message).
pub const VERSION_TTL: Duration = Duration::from_secs(15 * 86_400);

/// `SET` the order when its version is newer than the one recorded, or the same version whose order
/// key has expired; returns 1 if it was set.
#[cfg(feature = "redis")]
const SET_IF_NEWER: &str = r"
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
local version = tonumber(ARGV[1])
if current > version then return 0 end
if current == version and redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[4])
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
";

/// A cache of orders by id.
#[async_trait]
pub trait OrderCache: Send + Sync {
    /// The cached order, if any.
    async fn get(&self, order_id: &str) -> Result<Option<OrderState>, StoreError>;
    /// Stores `order` unless a newer version was stored, or the same version is still cached; says
    /// whether it did.
    async fn put_if_newer(&self, order: &OrderState) -> Result<bool, StoreError>;
}

/// The keys of an order: its JSON and its version.
pub fn keys(order_id: &str) -> (String, String) {
    (format!("orderflow:order:{{{order_id}}}"), format!("orderflow:order:{{{order_id}}}:version"))
}

/// The Redis adapter: one lazily connected, self-reconnecting connection per Lambda instance.
#[cfg(feature = "redis")]
pub struct RedisOrderCache {
    connection: ConnectionManager,
    script: Script,
    ttl: Duration,
}

#[cfg(feature = "redis")]
impl RedisOrderCache {
    /// [`RedisOrderCache::new`] as the functions configure it (the cache consumer and the Sales API
    /// alike): `url` (their `REDIS_URL`), `REDIS_CA_FILE` (none), `CACHE_TTL_SECONDS` (86,400).
    pub fn from_env(url: &str, timeout: Duration) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        use orderflow_harness::config::parsed_or;
        let ttl = Duration::from_secs(parsed_or(vars::CACHE_TTL_SECONDS, 86_400)?);
        Ok(Self::new(url, &parsed_or(vars::REDIS_CA_FILE, String::new())?, ttl, timeout)?)
    }

    /// Connects lazily to `url`: `redis://host:port`, or `rediss://host:port` for TLS, as
    /// ElastiCache's in-transit encryption needs. Over TLS the server's certificate must name the
    /// host and chain to a root: the Mozilla roots compiled in (Amazon Trust Services' among them;
    /// what ElastiCache presents was not checked here), or, when `ca_file` names one
    /// (`REDIS_CA_FILE`), that file's CA alone. Every call gives up after `timeout`, so a Redis that
    /// is down costs a reader no more than that.
    pub fn new(url: &str, ca_file: &str, ttl: Duration, timeout: Duration) -> Result<Self, StoreError> {
        let client = if ca_file.is_empty() {
            redis::Client::open(url).map_err(|e| StoreError::permanent(STORE, format!("REDIS_URL: {e}")))?
        } else {
            let setting =
                |e: &dyn std::fmt::Display| StoreError::permanent(STORE, format!("REDIS_CA_FILE {ca_file}: {e}"));
            let root = std::fs::read(ca_file).map_err(|e| setting(&e))?;
            // The crate skips what is not a PEM certificate and would trust an empty set: every
            // handshake would then fail, each a retry, where init can say what is wrong.
            if !root.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(setting(&"holds no PEM certificate"));
            }
            // (A `redis://` URL with a CA file is refused here: the CA would go unused.)
            redis::Client::build_with_tls(url, redis::TlsCertificates { client_tls: None, root_cert: Some(root) })
                .map_err(|e| setting(&e))?
        };
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| StoreError::permanent(STORE, e.to_string()))?;
        Ok(Self { connection, script: Script::new(SET_IF_NEWER), ttl })
    }

    /// Opens the connection now (a `PING`), not on the first read or write.
    pub async fn open(&self) -> Result<(), StoreError> {
        let mut connection = self.connection.clone();
        let _: String = redis::cmd("PING").query_async(&mut connection).await.map_err(unavailable)?;
        Ok(())
    }
}

#[cfg(feature = "redis")]
fn unavailable(e: redis::RedisError) -> StoreError {
    StoreError::retryable(STORE, e.to_string())
}

#[cfg(feature = "redis")]
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
                tracing::warn!(key = %order_key, error = %orderflow_harness::redact::redact(&e.to_string()), "unreadable cache entry: treated as a miss");
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

/// The in-memory fake, with the same rule and the same expiry as Redis (the order key after the cache
/// TTL, the version key after [`VERSION_TTL`], on its clock), and a switch that makes it "down".
#[derive(Debug)]
pub struct InMemoryOrderCache {
    orders: Mutex<HashMap<String, (OrderState, SystemTime)>>,
    versions: Mutex<HashMap<String, (u64, SystemTime)>>,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    down: Mutex<bool>,
}

impl Default for InMemoryOrderCache {
    /// A one-day cache TTL on the machine's clock.
    fn default() -> Self {
        Self::new(Duration::from_secs(86_400), Arc::new(SystemClock))
    }
}

impl InMemoryOrderCache {
    /// Orders expire `ttl` after they are written, by `clock`.
    pub fn new(ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        Self { orders: Mutex::default(), versions: Mutex::default(), ttl, clock, down: Mutex::new(false) }
    }

    /// Makes every call fail (retryably) while `down`.
    pub fn set_down(&self, down: bool) {
        *self.down.lock().expect("lock") = down;
    }

    /// The cached copy, looked at directly (`None` once expired).
    pub fn cached(&self, order_id: &str) -> Option<OrderState> {
        let now = self.clock.now();
        self.orders.lock().expect("lock").get(order_id).filter(|(_, expires)| *expires > now).map(|(o, _)| o.clone())
    }

    fn version(&self, order_id: &str) -> u64 {
        let now = self.clock.now();
        self.versions.lock().expect("lock").get(order_id).filter(|(_, expires)| *expires > now).map_or(0, |(v, _)| *v)
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
        let current = self.version(&order.order_id);
        if current > order.version || (current == order.version && self.cached(&order.order_id).is_some()) {
            return Ok(false);
        }
        let now = self.clock.now();
        self.versions.lock().expect("lock").insert(order.order_id.clone(), (order.version, now + VERSION_TTL));
        self.orders
            .lock()
            .expect("lock")
            .insert(order.order_id.clone(), (order.clone(), now + self.ttl.max(Duration::from_secs(1))));
        Ok(true)
    }
}
