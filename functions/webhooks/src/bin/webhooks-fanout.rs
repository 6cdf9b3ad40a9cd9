//! Lambda entry point of `webhooks-fanout`: wiring only. See `webhooks::fanout`.

use std::sync::Arc;

use orderflow_contracts::AnyEvent;
use orderflow_harness::aws::connections::Service;
use orderflow_harness::config::{self, ConsumerConfig};
use orderflow_harness::{aws, telemetry, Consumer};
use webhooks::fanout::{Fanout, SqsDeliveryQueue};
use webhooks::subscriptions::DynamoDbSubscriptions;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let consumer_config = ConsumerConfig::from_env()?;
    let table = config::required("SUBSCRIPTIONS_TABLE")?;
    let deliveries = config::required("DELIVERIES_QUEUE_URL")?;
    let sdk = aws::sdk_config_opening(&[Service::DynamoDb, Service::Sqs]).await?;
    let handler = Fanout::new(
        Arc::new(DynamoDbSubscriptions::new(aws_sdk_dynamodb::Client::new(&sdk), table)),
        Arc::new(SqsDeliveryQueue::new(aws_sdk_sqs::Client::new(&sdk), deliveries)),
    );
    // With claims, though each delivery is de-duplicated again by webhooks-delivery's claim on its
    // event id and subscription: without them, a repeated event would go to the subscriptions
    // active at the repeat (created since, too), and a delivery's copy could POST while the first
    // waits out a subscriber's Retry-After (README, "Claims only where nothing else de-duplicates").
    Consumer::<AnyEvent>::from_config(&consumer_config, &sdk, Arc::new(handler)).run().await
}
