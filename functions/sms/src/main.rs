//! Lambda entry point of `sms`: wiring only. The handler is `sms::handler`.
//!
//! The Twilio account SID and auth token are read once, at init, from the Secrets Manager secret
//! named by `TWILIO_SECRET_ID` (never from the environment, never logged).

use std::sync::Arc;

use orderflow_harness::config::{self, ConsumerConfig};
use orderflow_harness::{aws, telemetry, Consumer};
use sms::handler::{SmsHandler, SmsInput};
use sms::twilio::{TwilioCredentials, TwilioSender};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let consumer_config = ConsumerConfig::from_env()?;
    let secret_id = config::required("TWILIO_SECRET_ID")?;
    let from = config::required("TWILIO_FROM")?;
    let base_url = config::parsed_or("TWILIO_BASE_URL", "https://api.twilio.com".to_string())?;
    let sdk = aws::sdk_config().await;
    let secret = aws::secret_string(&sdk, &secret_id).await?;
    let credentials: TwilioCredentials = serde_json::from_str(&secret)
        .map_err(|_| format!("the secret {secret_id} is not {{\"accountSid\": ..., \"authToken\": ...}}"))?;
    let handler = SmsHandler::new(Arc::new(TwilioSender::new(base_url, credentials, from)));
    Consumer::<SmsInput>::from_config(&consumer_config, &sdk, Arc::new(handler)).run().await
}
