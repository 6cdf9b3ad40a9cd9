//! Lambda entry point of `webhooks-delivery`: wiring only. See `webhooks::delivery`.

use std::sync::Arc;

use orderflow_contracts::AnyEvent;
use orderflow_harness::aws::connections::Service;
use orderflow_harness::config::{self, ConsumerConfig};
use orderflow_harness::{aws, telemetry, Consumer};
use webhooks::delivery::{Delivery, HttpPoster};
use webhooks::subscriptions::DynamoDbSubscriptions;
use webhooks::SUBSCRIPTION_ATTRIBUTE;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let consumer_config = ConsumerConfig::from_env()?;
    let table = config::required("SUBSCRIPTIONS_TABLE")?;
    let allow_local: bool = config::parsed_or("WEBHOOKS_ALLOW_LOCAL", false)?;
    let sdk = aws::sdk_config_opening(&[Service::DynamoDb]).await?;
    let handler = Delivery::new(
        Arc::new(DynamoDbSubscriptions::new(aws_sdk_dynamodb::Client::new(&sdk), table)),
        Arc::new(HttpPoster),
        allow_local,
    );
    Consumer::<AnyEvent>::from_config(&consumer_config, &sdk, Arc::new(handler))
        .with_scope_attribute(SUBSCRIPTION_ATTRIBUTE)
        .with_record_budget(webhooks::delivery::RECORD_BUDGET)
        .run()
        .await
}
