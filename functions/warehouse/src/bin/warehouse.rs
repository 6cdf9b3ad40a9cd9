//! Lambda entry point of `warehouse`: wiring only. The handler is `warehouse::handler`.

use std::sync::Arc;

use orderflow_harness::aws::connections::Service;
use orderflow_harness::config::{self, ConsumerConfig};
use orderflow_harness::publisher::EventBridgePublisher;
use orderflow_harness::{aws, telemetry, Consumer};
use warehouse::{handler, labels, stock};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let consumer_config = ConsumerConfig::from_env()?;
    let stock_table = config::required("STOCK_TABLE")?;
    let shipments_table = config::required("SHIPMENTS_TABLE")?;
    let bucket = config::required("LABELS_BUCKET")?;
    let bus = config::required(config::vars::EVENT_BUS_NAME)?;
    let sdk =
        aws::sdk_config_opening(&[Service::DynamoDb, Service::EventBridge, Service::S3Bucket(bucket.clone())]).await?;
    // Against a local emulator (AWS_ENDPOINT_URL set) buckets are addressed by path, not subdomain.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(std::env::var_os("AWS_ENDPOINT_URL").is_some())
            .build(),
    );
    let handler = handler::Warehouse::new(
        Arc::new(stock::DynamoDbStockStore::new(aws_sdk_dynamodb::Client::new(&sdk), stock_table, shipments_table)),
        Arc::new(labels::S3LabelStore::new(s3, bucket)),
        Arc::new(EventBridgePublisher::eventbridge(aws_sdk_eventbridge::Client::new(&sdk), bus)),
    );
    // The shipment record is the idempotency record: the allocation transaction is conditional on it
    // and a receipt remembers what it allocated, so a redelivery allocates nothing twice and announces
    // again with the same event id.
    Consumer::<handler::WarehouseInput>::from_config(&consumer_config, &sdk, Arc::new(handler))
        .without_claims()
        .run()
        .await
}
