//! Lambda entry point of `cache`: wiring only. The handler is `cache::handler`.
//!
//! `REDIS_URL` names the Redis (ElastiCache) endpoint; `CACHE_TTL_SECONDS` (default 86400) how long
//! an order stays cached.

use std::sync::Arc;
use std::time::Duration;

use cache::handler::CacheHandler;
use cache::store::RedisOrderCache;
use orderflow_contracts::OrderStatusChanged;
use orderflow_harness::config::{self, ConsumerConfig};
use orderflow_harness::{aws, telemetry, Consumer};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let consumer_config = ConsumerConfig::from_env()?;
    let url = config::required("REDIS_URL")?;
    let cache = RedisOrderCache::from_env(&url, Duration::from_secs(1))?;
    aws::connections::open_with("redis", cache.open()).await?;
    // No AWS call on its first invocation's common path to open at init (its store is opened above).
    let sdk = aws::sdk_config_opening(&[]).await?;
    Consumer::<OrderStatusChanged>::from_config(&consumer_config, &sdk, Arc::new(CacheHandler::new(Arc::new(cache))))
        // Newest version wins in one Redis script: a repeat changes nothing.
        .without_claims()
        .run()
        .await
}
