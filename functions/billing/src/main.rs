//! Lambda entry point of `billing`: wiring only. The handler is `billing::handler`.

use std::sync::Arc;

use billing::{handler, invoices, payments};
use orderflow_harness::aws::connections::Service;
use orderflow_harness::config::{self, ConsumerConfig};
use orderflow_harness::publisher::EventBridgePublisher;
use orderflow_harness::{aws, telemetry, Consumer};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let consumer_config = ConsumerConfig::from_env()?;
    let invoices_table = config::required("INVOICES_TABLE")?;
    let bus = config::required(config::vars::EVENT_BUS_NAME)?;
    let gateway = payments::RuleBasedGateway {
        decline_above_minor: config::parsed_or("DECLINE_ABOVE_MINOR", 100_000)?,
        decline_email_marker: config::parsed_or("DECLINE_EMAIL_MARKER", "+decline@".to_string())?,
    };
    let sdk = aws::sdk_config_opening(&[Service::DynamoDb, Service::EventBridge]).await?;
    let handler = handler::Billing::new(
        Arc::new(invoices::DynamoDbInvoiceStore::new(aws_sdk_dynamodb::Client::new(&sdk), invoices_table)),
        Arc::new(gateway),
        Arc::new(EventBridgePublisher::eventbridge(aws_sdk_eventbridge::Client::new(&sdk), bus)),
    );
    // The invoice is the idempotency record: created once per order (a conditional write), charged
    // and refunded under keys derived from it, and what a redelivery finds settled is announced again
    // with the same event id, which the next consumers drop.
    Consumer::<handler::BillingInput>::from_config(&consumer_config, &sdk, Arc::new(handler))
        .without_claims()
        .run()
        .await
}
