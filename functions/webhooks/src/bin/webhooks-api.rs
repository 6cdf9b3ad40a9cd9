//! Lambda entry point of `webhooks-api`: wiring only. See `webhooks::api`.

use std::sync::Arc;
use std::time::Duration;

use lambda_http::{service_fn, Error, Request};
use orderflow_harness::aws::connections::Service;
use orderflow_harness::secret::{RotatingSecret, SecretsManagerSource};
use orderflow_harness::{aws, config, telemetry};
use webhooks::api::WebhooksApi;
use webhooks::subscriptions::DynamoDbSubscriptions;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let table = config::required("SUBSCRIPTIONS_TABLE")?;
    let key_secret = config::required("API_KEY_SECRET_ID")?;
    let allow_local: bool = config::parsed_or("WEBHOOKS_ALLOW_LOCAL", false)?;
    let max_age = Duration::from_secs(config::parsed_or(config::vars::SECRET_MAX_AGE_SECONDS, 300)?);
    // Secrets Manager: its connection is opened by the key's read below.
    let sdk = aws::sdk_config_opening(&[Service::DynamoDb]).await?;
    let source = Box::new(SecretsManagerSource::new(&sdk, &key_secret));
    let api_key = RotatingSecret::load(key_secret, source, |key: &str| Ok(key.to_string()), max_age).await?;
    let api = Arc::new(WebhooksApi::rotating(
        Arc::new(DynamoDbSubscriptions::new(aws_sdk_dynamodb::Client::new(&sdk), table)),
        Arc::new(api_key),
        allow_local,
    ));
    lambda_http::run(service_fn(move |req: Request| {
        let api = Arc::clone(&api);
        async move {
            let started = std::time::Instant::now();
            let response = api.handle(req).await;
            telemetry::emit_invocation("webhooks-api", started);
            Ok::<_, Error>(response)
        }
    }))
    .await
}
