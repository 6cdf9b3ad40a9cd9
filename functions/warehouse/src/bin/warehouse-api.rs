//! Lambda entry point of `warehouse-api`: wiring only. See `warehouse::api`.

use std::sync::Arc;

use lambda_http::{service_fn, Error, Request};
use orderflow_harness::aws::connections::Service;
use orderflow_harness::publisher::EventBridgePublisher;
use orderflow_harness::{aws, config, telemetry};
use warehouse::api::WarehouseApi;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let bus = config::required(config::vars::EVENT_BUS_NAME)?;
    let sdk = aws::sdk_config_opening(&[Service::EventBridge]).await?;
    let api = Arc::new(WarehouseApi::new(Arc::new(EventBridgePublisher::eventbridge(
        aws_sdk_eventbridge::Client::new(&sdk),
        bus,
    ))));
    lambda_http::run(service_fn(move |req: Request| {
        let api = Arc::clone(&api);
        async move {
            let started = std::time::Instant::now();
            let response = api.handle(req).await;
            telemetry::emit_invocation("warehouse-api", started);
            Ok::<_, Error>(response)
        }
    }))
    .await
}
