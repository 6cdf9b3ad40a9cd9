//! The floor an order's latency is measured against (`make bench`): the same hop types as an order,
//! with no logic between them. One binary, three roles (`FLOOR_ROLE`), wired by
//! `tests/bench/floor.yaml`:
//!
//! ```text
//! POST /chains ─► api: PutItem {id, outbox: FloorPlaced} ─► table stream ─► relay ─► PutEvents FloorPlaced
//!   ─► queue 1 ─► consumer: PutEvents FloorStep1 ─► queue 2 ─► consumer: PutEvents FloorStep2
//!   ─► queue 3 ─► consumer: UpdateItem {outbox: FloorDone} ─► table stream ─► relay ─► PutEvents FloorDone
//! ```
//!
//! An order goes API ─► table ─► stream ─► relay ─► bus ─► Billing ─► bus ─► Warehouse ─► bus ─►
//! Sales' status consumer ─► table ─► stream ─► relay ─► bus: the same hops, each here doing only
//! the AWS call that carries the chain on, with the harness's SDK configuration (its HTTPS client,
//! timeouts and request counting) and its metrics line.

use std::time::Instant;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::encodings::Body;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use orderflow_harness::{aws, config, telemetry};
use serde_json::{json, Value};

/// What the floor's functions share: the table, the bus and the next step.
struct Floor {
    dynamodb: aws_sdk_dynamodb::Client,
    events: aws_sdk_eventbridge::Client,
    table: String,
    bus: String,
    /// A consumer's step: the detail-type it publishes next, or `write` (the chain's last consumer,
    /// whose write is the second stream hop).
    next: String,
}

impl Floor {
    /// Publishes `detail_type` for each id, ten entries a request (PutEvents' limit).
    async fn publish(&self, detail_type: &str, ids: &[String]) -> Result<(), Error> {
        for chunk in ids.chunks(10) {
            let entries = chunk
                .iter()
                .map(|id| {
                    PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus)
                        .source("orderflow.floor")
                        .detail_type(detail_type)
                        .detail(json!({ "id": id }).to_string())
                        .build()
                })
                .collect();
            let out = self.events.put_events().set_entries(Some(entries)).send().await?;
            if out.failed_entry_count > 0 {
                return Err(format!("{} entries not published", out.failed_entry_count).into());
            }
        }
        Ok(())
    }

    async fn api(&self, _request: ApiGatewayV2httpRequest) -> Result<ApiGatewayV2httpResponse, Error> {
        let id = uuid::Uuid::new_v4().to_string();
        self.dynamodb
            .put_item()
            .table_name(&self.table)
            .item("id", AttributeValue::S(id.clone()))
            .item("outbox", AttributeValue::S("FloorPlaced".into()))
            .send()
            .await?;
        let mut response = ApiGatewayV2httpResponse::default();
        response.status_code = 201;
        response.body = Some(Body::Text(json!({ "id": id }).to_string()));
        Ok(response)
    }

    /// Each record whose new image has an outbox its old one did not: published, in order.
    async fn relay(&self, event: StreamEvent) -> Result<(), Error> {
        for record in &event.records {
            let new = serde_json::to_value(&record.change.new_image)?;
            let old = serde_json::to_value(&record.change.old_image)?;
            let outbox = |image: &Value| image.pointer("/outbox/S").and_then(Value::as_str).map(str::to_string);
            if let (Some(detail_type), Some(id)) = (outbox(&new), new.pointer("/id/S").and_then(Value::as_str)) {
                if outbox(&old).as_deref() != Some(detail_type.as_str()) {
                    self.publish(&detail_type, &[id.to_string()]).await?;
                }
            }
        }
        Ok(())
    }

    async fn consume(&self, event: SqsEvent) -> Result<SqsBatchResponse, Error> {
        let mut ids = Vec::new();
        for record in &event.records {
            let body: Value = serde_json::from_str(record.body.as_deref().unwrap_or("{}"))?;
            ids.push(
                body.pointer("/detail/id").and_then(Value::as_str).ok_or("an event without detail.id")?.to_string(),
            );
        }
        if self.next == "write" {
            for id in &ids {
                self.dynamodb
                    .update_item()
                    .table_name(&self.table)
                    .key("id", AttributeValue::S(id.clone()))
                    .update_expression("SET outbox = :done")
                    .expression_attribute_values(":done", AttributeValue::S("FloorDone".into()))
                    .send()
                    .await?;
            }
        } else {
            self.publish(&self.next, &ids).await?;
        }
        Ok(SqsBatchResponse::default())
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let sdk = aws::sdk_config().await;
    let role = config::required("FLOOR_ROLE")?;
    let floor: &'static Floor = Box::leak(Box::new(Floor {
        dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
        events: aws_sdk_eventbridge::Client::new(&sdk),
        table: config::required("FLOOR_TABLE")?,
        bus: config::required(config::vars::EVENT_BUS_NAME)?,
        next: std::env::var("FLOOR_NEXT").unwrap_or_default(),
    }));
    let name: &'static str = Box::leak(format!("floor-{role}").into_boxed_str());
    match role.as_str() {
        "api" => serve(name, |event| floor.api(event)).await,
        "relay" => serve(name, |event| floor.relay(event)).await,
        "consumer" => serve(name, |event| floor.consume(event)).await,
        other => Err(format!("FLOOR_ROLE must be api, relay or consumer, not {other}").into()),
    }
}

/// Runs `handler` as the function, each invocation followed by its metrics line (as every
/// Orderflow function's is).
async fn serve<E, R, F, Fut>(name: &'static str, handler: F) -> Result<(), Error>
where
    E: serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + Send + 'static,
    F: Fn(E) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = Result<R, Error>> + Send,
{
    lambda_runtime::run(service_fn(move |event: LambdaEvent<E>| async move {
        let started = Instant::now();
        let response = handler(event.payload).await;
        telemetry::emit_invocation(name, started);
        response
    }))
    .await
}
