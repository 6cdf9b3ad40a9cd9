//! Lambda entry point of `sales-api`: wiring only. See `sales::api` for what it does.

use std::sync::Arc;

use lambda_http::{service_fn, Error, Request};
use orderflow_harness::publisher::EventBridgePublisher;
use orderflow_harness::{aws, config, telemetry};
use sales::api::SalesApi;
use sales::orders::DynamoDbOrderStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let orders_table = config::required("ORDERS_TABLE")?;
    let bus = config::required("EVENT_BUS_NAME")?;
    let sdk = aws::sdk_config().await;
    let api = Arc::new(SalesApi::new(
        Arc::new(DynamoDbOrderStore::new(aws_sdk_dynamodb::Client::new(&sdk), orders_table)),
        Arc::new(EventBridgePublisher::eventbridge(aws_sdk_eventbridge::Client::new(&sdk), bus)),
    ));
    lambda_http::run(service_fn(move |req: Request| {
        let api = Arc::clone(&api);
        async move { Ok::<_, Error>(api.handle(req).await) }
    }))
    .await
}
