//! Lambda entry point of `email`: wiring only. The handler is `email::handler`.

use std::sync::Arc;

use email::handler::{EmailHandler, EmailInput};
use email::ses::SesSender;
use orderflow_harness::aws::connections::Service;
use orderflow_harness::config::{self, ConsumerConfig};
use orderflow_harness::{aws, telemetry, Consumer};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let consumer_config = ConsumerConfig::from_env()?;
    let from = config::required("EMAIL_FROM")?;
    // SES: its connection is opened by the sender check below.
    let sdk = aws::sdk_config_opening(&[Service::DynamoDb]).await?;
    let ses = aws_sdk_sesv2::Client::new(&sdk);
    email::ses::check_sender(&ses, &from).await?;
    let handler = EmailHandler::new(Arc::new(SesSender::new(ses, from)));
    Consumer::<EmailInput>::from_config(&consumer_config, &sdk, Arc::new(handler))
        .with_record_budget(email::ses::RECORD_BUDGET)
        .run()
        .await
}
