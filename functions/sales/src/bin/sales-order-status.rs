//! Lambda entry point of `sales-order-status`: wiring only. See `sales::order_status`.

use std::sync::Arc;

use orderflow_harness::config::{self, ConsumerConfig};
use orderflow_harness::{aws, telemetry, Consumer};
use sales::order_status::{OrderStatusHandler, StatusInput};
use sales::orders::DynamoDbOrderStore;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let consumer_config = ConsumerConfig::from_env()?;
    let orders_table = config::required("ORDERS_TABLE")?;
    let sdk = aws::sdk_config().await;
    let handler =
        OrderStatusHandler::new(Arc::new(DynamoDbOrderStore::new(aws_sdk_dynamodb::Client::new(&sdk), orders_table)));
    Consumer::<StatusInput>::from_config(&consumer_config, &sdk, Arc::new(handler)).run().await
}
