//! Lambda entry point of `sms`: wiring only. The handler is `sms::handler`.
//!
//! The Twilio account SID and auth token come from the Secrets Manager secret named by
//! `TWILIO_SECRET_ID` (never from the environment, never logged): read at init, again once they are
//! `SECRET_MAX_AGE_SECONDS` old, and at once when Twilio answers 401 (a rotation).

use std::sync::Arc;

use std::time::Duration;

use orderflow_harness::aws::connections::Service;
use orderflow_harness::config::{self, ConsumerConfig};
use orderflow_harness::secret::{RotatingSecret, SecretsManagerSource};
use orderflow_harness::{aws, telemetry, Consumer};
use sms::handler::{SmsHandler, SmsInput};
use sms::twilio::{parse_credentials, TwilioSender, RECORD_BUDGET};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let consumer_config = ConsumerConfig::from_env()?;
    let secret_id = config::required("TWILIO_SECRET_ID")?;
    let from = config::required("TWILIO_FROM")?;
    let base_url = config::parsed_or("TWILIO_BASE_URL", "https://api.twilio.com".to_string())?;
    let max_age = Duration::from_secs(config::parsed_or(config::vars::SECRET_MAX_AGE_SECONDS, 300)?);
    // Secrets Manager: its connection is opened by the secret's read below.
    let sdk = aws::sdk_config_opening(&[Service::DynamoDb]).await?;
    let source = Box::new(SecretsManagerSource::new(&sdk, &secret_id));
    let credentials = RotatingSecret::load(secret_id, source, parse_credentials, max_age).await?;
    let handler = SmsHandler::new(Arc::new(TwilioSender::rotating(base_url, Arc::new(credentials), from)));
    Consumer::<SmsInput>::from_config(&consumer_config, &sdk, Arc::new(handler))
        .with_record_budget(RECORD_BUDGET)
        .run()
        .await
}
