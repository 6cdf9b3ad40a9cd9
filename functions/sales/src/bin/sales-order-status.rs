//! Lambda entry point of `sales-order-status`: wiring only. See `sales::order_status`.

use std::sync::Arc;
use std::time::Duration;

use orderflow_harness::aws::connections::Service;
use orderflow_harness::config::{self, ConsumerConfig};
use orderflow_harness::{aws, telemetry, Consumer};
use sales::announce::{writer_store, PUBLISH_ON_WRITE};
use sales::deadlines::SchedulerDeadlines;
use sales::order_status::{OrderStatusHandler, StatusInput, BACKORDER_DEADLINE};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let consumer_config = ConsumerConfig::from_env()?;
    let orders_table = config::required("ORDERS_TABLE")?;
    // The outbox's fast path (sales::announce): publish each write's events right after it.
    let bus = config::required(config::vars::EVENT_BUS_NAME)?;
    let publish_on_write = config::parsed_or("OUTBOX_PUBLISH_ON_WRITE", PUBLISH_ON_WRITE)?;
    let marks_table = config::required("OUTBOX_MARKS_TABLE")?;
    let deadline = Duration::from_secs(config::parsed_or("BACKORDER_DEADLINE_SECONDS", BACKORDER_DEADLINE.as_secs())?);
    let sdk = aws::sdk_config_opening(&[Service::DynamoDb, Service::EventBridge]).await?;
    let deadlines = SchedulerDeadlines::new(
        aws_sdk_scheduler::Client::new(&sdk),
        config::required("DEADLINE_SCHEDULE_GROUP")?,
        config::required("DEADLINE_QUEUE_ARN")?,
        config::required("DEADLINE_ROLE_ARN")?,
        config::required("DEADLINE_DEAD_LETTER_ARN")?,
    );
    let handler = OrderStatusHandler::new(
        writer_store(&sdk, orders_table, marks_table, bus, publish_on_write),
        Arc::new(deadlines),
        deadline,
    );
    // Each move is conditional on the order's version, and an order already where an event would put
    // it is left alone: a repeat changes and announces nothing.
    Consumer::<StatusInput>::from_config(&consumer_config, &sdk, Arc::new(handler)).without_claims().run().await
}
