//! Lambda entry point of `sales-api`: wiring only. See `sales::api` for what it does.

use std::sync::Arc;
use std::time::Duration;

use lambda_http::{service_fn, Error, Request};
use orderflow_harness::aws::connections::Service;
use orderflow_harness::{aws, config, telemetry};
use orderflow_order_cache::RedisOrderCache;
use sales::announce::{writer_store, PUBLISH_ON_WRITE};
use sales::api::{SalesApi, ORDERS_PER_CALLER_PER_HOUR};
use sales::callers::DynamoDbCallerRecords;
use sales::catalogue::DynamoDbCatalogue;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let orders_table = config::required("ORDERS_TABLE")?;
    // The outbox's fast path (sales::announce): publish each write's events right after it.
    let bus = config::required(config::vars::EVENT_BUS_NAME)?;
    let publish_on_write = config::parsed_or("OUTBOX_PUBLISH_ON_WRITE", PUBLISH_ON_WRITE)?;
    let marks_table = config::required("OUTBOX_MARKS_TABLE")?;
    let catalogue_table = config::required("CATALOGUE_TABLE")?;
    let callers_table = config::required("CALLERS_TABLE")?;
    let orders_per_hour: u32 = config::parsed_or("ORDERS_PER_CALLER_PER_HOUR", ORDERS_PER_CALLER_PER_HOUR)?;
    let shipping_minor: i64 = config::parsed_or("SHIPPING_FLAT_MINOR", 495)?;
    orderflow_contracts::checked_amount("SHIPPING_FLAT_MINOR", Some(shipping_minor))?;
    let sdk = aws::sdk_config_opening(&[Service::DynamoDb, Service::EventBridge]).await?;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let mut api = SalesApi::new(
        writer_store(&sdk, orders_table, marks_table, bus, publish_on_write),
        Arc::new(DynamoDbCallerRecords::new(dynamo.clone(), callers_table)),
        Arc::new(DynamoDbCatalogue::new(dynamo, catalogue_table)),
        shipping_minor,
    )
    .with_orders_per_hour(orders_per_hour);
    // Optional: with REDIS_URL set, GET /orders/{id} reads through the order cache. A short timeout,
    // so a cache that is down costs a read at most that before it falls back to the table.
    let redis_url = config::parsed_or("REDIS_URL", String::new())?;
    if !redis_url.is_empty() {
        api = api.with_cache(Arc::new(RedisOrderCache::from_env(&redis_url, Duration::from_millis(250))?));
    }
    let api = Arc::new(api);
    lambda_http::run(service_fn(move |req: Request| {
        let api = Arc::clone(&api);
        async move {
            let started = std::time::Instant::now();
            let response = api.handle(req).await;
            telemetry::emit_invocation("sales-api", started);
            Ok::<_, Error>(response)
        }
    }))
    .await
}
