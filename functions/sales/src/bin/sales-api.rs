//! Lambda entry point of `sales-api`: wiring only. See `sales::api` for what it does.

use std::sync::Arc;

use lambda_http::{service_fn, Error, Request};
use orderflow_harness::{aws, config, telemetry};
use sales::api::SalesApi;
use sales::catalogue::DynamoDbCatalogue;
use sales::orders::DynamoDbOrderStore;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let orders_table = config::required("ORDERS_TABLE")?;
    let catalogue_table = config::required("CATALOGUE_TABLE")?;
    let shipping_minor: i64 = config::parsed_or("SHIPPING_FLAT_MINOR", 495)?;
    orderflow_contracts::checked_amount("SHIPPING_FLAT_MINOR", Some(shipping_minor))?;
    let sdk = aws::sdk_config().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let api = Arc::new(SalesApi::new(
        Arc::new(DynamoDbOrderStore::new(dynamo.clone(), orders_table)),
        Arc::new(DynamoDbCatalogue::new(dynamo, catalogue_table)),
        shipping_minor,
    ));
    lambda_http::run(service_fn(move |req: Request| {
        let api = Arc::clone(&api);
        async move { Ok::<_, Error>(api.handle(req).await) }
    }))
    .await
}
