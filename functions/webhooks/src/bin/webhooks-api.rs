//! Lambda entry point of `webhooks-api`: wiring only. See `webhooks::api`.

use std::sync::Arc;

use lambda_http::{service_fn, Error, Request};
use orderflow_harness::{aws, config, telemetry};
use webhooks::api::WebhooksApi;
use webhooks::subscriptions::DynamoDbSubscriptions;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let table = config::required("SUBSCRIPTIONS_TABLE")?;
    let key_secret = config::required("API_KEY_SECRET_ID")?;
    let allow_local: bool = config::parsed_or("WEBHOOKS_ALLOW_LOCAL", false)?;
    let sdk = aws::sdk_config().await;
    let api_key = aws::secret_string(&sdk, &key_secret).await?;
    let api = Arc::new(WebhooksApi::new(
        Arc::new(DynamoDbSubscriptions::new(aws_sdk_dynamodb::Client::new(&sdk), table)),
        api_key,
        allow_local,
    ));
    lambda_http::run(service_fn(move |req: Request| {
        let api = Arc::clone(&api);
        async move { Ok::<_, Error>(api.handle(req).await) }
    }))
    .await
}
