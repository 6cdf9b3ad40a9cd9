//! The floors an order's latency is measured against (`make bench`): the same hop types as an order,
//! with no logic between them. One binary in several roles (`FLOOR_ROLE`), wired by
//! `tests/bench/floor.yaml`, deployed twice:
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
//!
//! **The same-calls floor** (`Calls=same`) is that chain making the AWS requests an order makes, with
//! no logic between them: each function runs a script of calls (`FLOOR_CALLS`, e.g.
//! `dynamodb:BatchGetItem dynamodb:PutItem > dynamodb:UpdateItem`: before and after the call that
//! carries the chain on), the two writers publish their own events as Sales' do on the outbox's fast
//! path (the relay then only reads, as Sales' reads its marks), each consumer publishes per record as
//! the harness's handlers do (`FLOOR_SAME_CALLS`), and side
//! consumers make the calls of the consumers off the chain (email, SMS, the webhooks' fan-out and
//! deliveries, the lake). The calls are named as the harness's request counter names them, so the
//! benchmark can print the floor's requests per chain beside an order's.

use std::collections::BTreeSet;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::encodings::Body;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use orderflow_harness::{aws, config, telemetry};
use serde_json::{json, Value};

/// An AWS request the same-calls floor can make, by the name the harness's counter gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    GetItem,
    PutItem,
    UpdateItem,
    BatchGetItem,
    TransactWriteItems,
    Scan,
    PutEvents,
    PutObject,
    SendEmail,
    SendMessageBatch,
    /// The harness's claim and completion (`IDEMPOTENCY_TABLE`), which its counter names
    /// `dynamodb:PutItem (idempotency)` and `dynamodb:UpdateItem (idempotency)`.
    Claim,
    Complete,
}

impl Call {
    const ALL: [(&'static str, Call); 10] = [
        ("dynamodb:GetItem", Call::GetItem),
        ("dynamodb:PutItem", Call::PutItem),
        ("dynamodb:UpdateItem", Call::UpdateItem),
        ("dynamodb:BatchGetItem", Call::BatchGetItem),
        ("dynamodb:TransactWriteItems", Call::TransactWriteItems),
        ("dynamodb:Scan", Call::Scan),
        ("events:PutEvents", Call::PutEvents),
        ("s3:PutObject", Call::PutObject),
        ("ses:SendEmail", Call::SendEmail),
        ("sqs:SendMessageBatch", Call::SendMessageBatch),
    ];
}

/// A function's calls per record: those before the call that carries the chain on, and those after.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Script {
    before: Vec<Call>,
    after: Vec<Call>,
}

impl std::str::FromStr for Script {
    type Err = String;

    /// `op op*2 > op`: names as [`Call::ALL`] spells them, `*n` for n in a row, `>` between the
    /// calls before and after the chain's own; `dynamodb:PutItem (idempotency)` and
    /// `dynamodb:UpdateItem (idempotency)` are the harness's claim and completion.
    fn from_str(text: &str) -> Result<Self, String> {
        let mut script = Script::default();
        let mut after = false;
        for word in text.split_whitespace() {
            if word == ">" {
                after = true;
                continue;
            }
            if word == "(idempotency)" {
                let calls = if after { &mut script.after } else { &mut script.before };
                match calls.last_mut() {
                    Some(last @ Call::PutItem) => *last = Call::Claim,
                    Some(last @ Call::UpdateItem) => *last = Call::Complete,
                    _ => return Err("`(idempotency)` follows dynamodb:PutItem or dynamodb:UpdateItem".into()),
                }
                continue;
            }
            let (name, times) = word.split_once('*').unwrap_or((word, "1"));
            let times: usize = times.parse().map_err(|_| format!("`{word}`: a count after `*`"))?;
            let call = Call::ALL
                .iter()
                .find(|(known, _)| *known == name)
                .map(|(_, call)| *call)
                .ok_or_else(|| format!("`{name}` is not a call the floor makes"))?;
            let calls = if after { &mut script.after } else { &mut script.before };
            calls.extend(std::iter::repeat_n(call, times));
        }
        Ok(script)
    }
}

/// What the floor's functions share: the tables, the bus, the next step, the calls.
struct Floor {
    dynamodb: aws_sdk_dynamodb::Client,
    events: aws_sdk_eventbridge::Client,
    s3: aws_sdk_s3::Client,
    ses: aws_sdk_sesv2::Client,
    sqs: aws_sdk_sqs::Client,
    table: String,
    bus: String,
    /// A consumer's step: the detail-type it publishes next, `write` (the chain's last consumer,
    /// whose write is the second stream hop), or nothing (a side consumer).
    next: String,
    /// The same-calls floor's script, and the scripts of particular detail-types (`FLOOR_CALLS_<type>`).
    calls: Script,
    calls_by_type: Vec<(String, Script)>,
    /// Run the script once per detail-type in a batch, not once per record (the lake's one object
    /// per batch and partition).
    per_batch: bool,
    /// The same-calls floor: the writers publish their own events (the relay only reads), and each
    /// consumer publishes per record, as Sales' writers and the harness's handlers do.
    same_calls: bool,
    /// Where the scripts' calls go: a table without a stream, a bucket, an SES sender, a queue.
    scratch: String,
    claims: String,
    bucket: String,
    sender: String,
    side_queue: String,
    /// Which function this stands for (`FLOOR_NAME`, else the role).
    label: String,
    /// Records of a batch handled at a time (the harness's `records_at_once`).
    at_once: usize,
}

impl Floor {
    fn script(&self, detail_type: &str) -> &Script {
        self.calls_by_type.iter().find(|(t, _)| t == detail_type).map_or(&self.calls, |(_, s)| s)
    }

    /// Makes `calls` for the chain or record `id`, one after another, as a handler's are.
    async fn make(&self, calls: &[Call], id: &str) -> Result<(), Error> {
        // Each function's own items, as each function writes its own tables and claims.
        let key = |n: usize| AttributeValue::S(format!("{}#{id}#{n}", self.label));
        for (n, call) in calls.iter().enumerate() {
            match call {
                Call::GetItem => {
                    self.dynamodb
                        .get_item()
                        .table_name(&self.scratch)
                        .key("id", key(n))
                        .consistent_read(true)
                        .send()
                        .await?;
                }
                Call::PutItem => {
                    self.dynamodb
                        .put_item()
                        .table_name(&self.scratch)
                        .item("id", key(n))
                        .item("at", AttributeValue::N(n.to_string()))
                        .send()
                        .await?;
                }
                // As the harness claims: a claim already there (a redelivery) is read, not an error.
                Call::Claim => {
                    let claimed = self
                        .dynamodb
                        .put_item()
                        .table_name(&self.claims)
                        .item("id", key(n))
                        .item("status", AttributeValue::S("IN_PROGRESS".into()))
                        .condition_expression("attribute_not_exists(id)")
                        .send()
                        .await;
                    if let Err(e) = claimed {
                        if !e.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) {
                            return Err(e.into());
                        }
                        self.dynamodb.get_item().table_name(&self.claims).key("id", key(n)).send().await?;
                    }
                }
                // The record's claim: the first call of every script that claims.
                Call::Complete => {
                    self.dynamodb
                        .update_item()
                        .table_name(&self.claims)
                        .key("id", key(0))
                        .update_expression("SET #s = :done")
                        .expression_attribute_names("#s", "status")
                        .expression_attribute_values(":done", AttributeValue::S("COMPLETED".into()))
                        .send()
                        .await?;
                }
                Call::UpdateItem => {
                    self.dynamodb
                        .update_item()
                        .table_name(&self.scratch)
                        .key("id", key(n))
                        .update_expression("ADD n :one")
                        .expression_attribute_values(":one", AttributeValue::N("1".into()))
                        .send()
                        .await?;
                }
                Call::BatchGetItem => {
                    let keys = KeysAndAttributes::builder()
                        .keys([("id".to_string(), key(n))].into())
                        .keys([("id".to_string(), key(n + 1))].into())
                        .build()?;
                    self.dynamodb.batch_get_item().request_items(&self.scratch, keys).send().await?;
                }
                Call::TransactWriteItems => {
                    let update = |k| {
                        Update::builder()
                            .table_name(&self.scratch)
                            .key("id", k)
                            .update_expression("ADD n :one")
                            .expression_attribute_values(":one", AttributeValue::N("1".into()))
                            .build()
                    };
                    let put = Put::builder().table_name(&self.scratch).item("id", key(n + 2)).build()?;
                    self.dynamodb
                        .transact_write_items()
                        .transact_items(TransactWriteItem::builder().update(update(key(n))?).build())
                        .transact_items(TransactWriteItem::builder().update(update(key(n + 1))?).build())
                        .transact_items(TransactWriteItem::builder().put(put).build())
                        .send()
                        .await?;
                }
                // A few items' table, as the webhooks' subscriptions are.
                Call::Scan => {
                    self.dynamodb.scan().table_name(&self.table).limit(5).send().await?;
                }
                // An event no rule matches.
                Call::PutEvents => self.publish("FloorNoise", &[id.to_string()]).await?,
                Call::PutObject => {
                    let body = json!({ "id": id, "n": n }).to_string().into_bytes();
                    let key = format!("floor/{id}/{n}.json");
                    self.s3.put_object().bucket(&self.bucket).key(key).body(body.into()).send().await?;
                }
                Call::SendEmail => {
                    use aws_sdk_sesv2::types::{Body as MailBody, Content, Destination, EmailContent, Message};
                    let text = |t: &str| Content::builder().data(t).build();
                    let message = Message::builder()
                        .subject(text("floor")?)
                        .body(MailBody::builder().text(text(id)?).build())
                        .build();
                    self.ses
                        .send_email()
                        .from_email_address(&self.sender)
                        .destination(Destination::builder().to_addresses(&self.sender).build())
                        .content(EmailContent::builder().simple(message).build())
                        .send()
                        .await?;
                }
                Call::SendMessageBatch => {
                    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
                    let entry = SendMessageBatchRequestEntry::builder()
                        .id("0")
                        .message_body(json!({ "detail": { "id": id } }).to_string())
                        .build()?;
                    self.sqs.send_message_batch().queue_url(&self.side_queue).entries(entry).send().await?;
                }
            }
        }
        Ok(())
    }

    /// Publishes `detail_type` for each of `ids`, ten entries a request (PutEvents' limit), with
    /// `written_ms`, when the chain's item was written, if given (the benchmark's write-to-tap
    /// figure, as an order's envelope carries `occurredAt`).
    async fn publish_at(&self, detail_type: &str, ids: &[String], written_ms: Option<u64>) -> Result<(), Error> {
        for chunk in ids.chunks(10) {
            let entries = chunk
                .iter()
                .map(|id| {
                    PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus)
                        .source("orderflow.floor")
                        .detail_type(detail_type)
                        .detail(match written_ms {
                            Some(at) => json!({ "id": id, "writtenMs": at }).to_string(),
                            None => json!({ "id": id }).to_string(),
                        })
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

    /// Publishes `detail_type` for each of `ids`, without a write's time.
    async fn publish(&self, detail_type: &str, ids: &[String]) -> Result<(), Error> {
        self.publish_at(detail_type, ids, None).await
    }

    async fn api(&self, _request: ApiGatewayV2httpRequest) -> Result<ApiGatewayV2httpResponse, Error> {
        let id = uuid::Uuid::new_v4().to_string();
        self.make(&self.calls.before, &id).await?;
        // Stamped just before the write, as Sales stamps an order's `occurredAt`.
        let written_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        self.dynamodb
            .put_item()
            .table_name(&self.table)
            .item("id", AttributeValue::S(id.clone()))
            .item("outbox", AttributeValue::S("FloorPlaced".into()))
            .item("writtenMs", AttributeValue::N(written_ms.to_string()))
            .send()
            .await?;
        if self.same_calls {
            self.publish_at("FloorPlaced", std::slice::from_ref(&id), Some(written_ms)).await?;
        }
        self.make(&self.calls.after, &id).await?;
        let mut response = ApiGatewayV2httpResponse::default();
        response.status_code = 201;
        response.body = Some(Body::Text(json!({ "id": id }).to_string()));
        Ok(response)
    }

    /// Each record whose new image has an outbox its old one did not: published, in order; or,
    /// where the writers publish their own, only its script (the marks' reads), for all of the
    /// batch's records at once, as Sales' relay reads its marks.
    async fn relay(&self, event: StreamEvent) -> Result<(), Error> {
        let mut due = Vec::new();
        for record in &event.records {
            let new = serde_json::to_value(&record.change.new_image)?;
            let old = serde_json::to_value(&record.change.old_image)?;
            let outbox = |image: &Value| image.pointer("/outbox/S").and_then(Value::as_str).map(str::to_string);
            if let (Some(detail_type), Some(id)) = (outbox(&new), new.pointer("/id/S").and_then(Value::as_str)) {
                if outbox(&old).as_deref() != Some(detail_type.as_str()) {
                    // Only the chain's first event carries its write's time (the second's is the same item's).
                    let written_ms = new.pointer("/writtenMs/N").and_then(Value::as_str).and_then(|n| n.parse().ok());
                    let written_ms = written_ms.filter(|_| detail_type == "FloorPlaced");
                    due.push((id.to_string(), detail_type, written_ms));
                }
            }
        }
        if self.same_calls {
            let reads = due.into_iter().map(|(id, detail_type, _)| async move {
                let event = format!("{id}.{detail_type}");
                self.make(&self.calls.before, &event).await?;
                self.make(&self.calls.after, &event).await
            });
            futures::future::try_join_all(reads).await?;
            return Ok(());
        }
        for (id, detail_type, written_ms) in &due {
            self.publish_at(detail_type, std::slice::from_ref(id), *written_ms).await?;
        }
        Ok(())
    }

    /// One record: its script's calls before, the call that carries the chain on, its calls after.
    async fn handle(&self, id: &str, detail_type: &str) -> Result<(), Error> {
        let script = self.script(detail_type);
        // The scripts' items are the event's, as claims are keyed by the event, not the order.
        let event = format!("{id}.{detail_type}");
        self.make(&script.before, &event).await?;
        match self.next.as_str() {
            "write" => {
                self.dynamodb
                    .update_item()
                    .table_name(&self.table)
                    .key("id", AttributeValue::S(id.to_string()))
                    .update_expression("SET outbox = :done")
                    .expression_attribute_values(":done", AttributeValue::S("FloorDone".into()))
                    .send()
                    .await?;
                if self.same_calls {
                    self.publish("FloorDone", &[id.to_string()]).await?;
                }
            }
            "" => {}
            next => self.publish(next, &[id.to_string()]).await?,
        }
        self.make(&script.after, &event).await
    }

    async fn consume(&self, event: SqsEvent) -> Result<SqsBatchResponse, Error> {
        let mut records = Vec::new();
        for record in &event.records {
            let body: Value = serde_json::from_str(record.body.as_deref().unwrap_or("{}"))?;
            let id = body.pointer("/detail/id").and_then(Value::as_str).ok_or("an event without detail.id")?;
            let detail_type = body["detail-type"].as_str().unwrap_or_default();
            records.push((id.to_string(), detail_type.to_string()));
        }
        if self.per_batch {
            // One object per batch and detail-type, written at once (the lake's join).
            let types: BTreeSet<&str> = records.iter().map(|(_, t)| t.as_str()).collect();
            let first = records.first().map(|(id, _)| id.as_str()).unwrap_or_default();
            let writes = types.into_iter().enumerate().map(|(n, detail_type)| {
                let (key, detail_type) = (format!("{first}-{n}"), detail_type.to_string());
                async move { self.make(&self.script(&detail_type).before, &key).await }
            });
            futures::future::try_join_all(writes).await?;
            return Ok(SqsBatchResponse::default());
        }
        let next = self.next.as_str();
        if !self.same_calls && !matches!(next, "write" | "") {
            // The plain floor: the batch's events in one request.
            let ids: Vec<String> = records.iter().map(|(id, _)| id.clone()).collect();
            self.publish(next, &ids).await?;
            return Ok(SqsBatchResponse::default());
        }
        // Each record as the harness runs a handler: up to `at_once` of the batch at a time.
        use futures::{StreamExt as _, TryStreamExt as _};
        let handled = records.into_iter().map(|(id, detail_type)| async move { self.handle(&id, &detail_type).await });
        futures::stream::iter(handled).buffer_unordered(self.at_once).try_collect::<Vec<()>>().await?;
        Ok(SqsBatchResponse::default())
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let sdk = aws::sdk_config().await;
    let role = config::required("FLOOR_ROLE")?;
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let calls: Script = var("FLOOR_CALLS").parse()?;
    let mut calls_by_type = Vec::new();
    for (name, text) in std::env::vars() {
        if let Some(detail_type) = name.strip_prefix("FLOOR_CALLS_").filter(|t| t.starts_with("Floor")) {
            calls_by_type.push((detail_type.to_string(), text.parse::<Script>()?));
        }
    }
    // The metrics line's name: the role, or the function it stands for (`FLOOR_NAME`).
    let label = Some(var("FLOOR_NAME")).filter(|n| !n.is_empty()).unwrap_or_else(|| role.clone());
    let floor: &'static Floor = Box::leak(Box::new(Floor {
        dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
        events: aws_sdk_eventbridge::Client::new(&sdk),
        s3: aws_sdk_s3::Client::new(&sdk),
        ses: aws_sdk_sesv2::Client::new(&sdk),
        sqs: aws_sdk_sqs::Client::new(&sdk),
        table: config::required("FLOOR_TABLE")?,
        bus: config::required(config::vars::EVENT_BUS_NAME)?,
        next: var("FLOOR_NEXT"),
        calls,
        calls_by_type,
        per_batch: var("FLOOR_CALLS_PER_BATCH") == "true",
        same_calls: var("FLOOR_SAME_CALLS") == "true",
        scratch: var("FLOOR_SCRATCH_TABLE"),
        claims: var("IDEMPOTENCY_TABLE"),
        bucket: var("FLOOR_BUCKET"),
        sender: var("FLOOR_SENDER"),
        side_queue: var("FLOOR_SIDE_QUEUE_URL"),
        label: label.clone(),
        at_once: var("FLOOR_RECORDS_AT_ONCE").parse().unwrap_or(8),
    }));
    let name: &'static str = Box::leak(format!("floor-{label}").into_boxed_str());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_reads_calls_counts_and_the_chains_place() {
        let script: Script = "dynamodb:BatchGetItem dynamodb:PutItem*2 > dynamodb:UpdateItem".parse().unwrap();
        assert_eq!(script.before, [Call::BatchGetItem, Call::PutItem, Call::PutItem]);
        assert_eq!(script.after, [Call::UpdateItem]);
        assert_eq!("".parse::<Script>().unwrap(), Script::default());
        let unknown = "dynamodb:DeleteTable".parse::<Script>().unwrap_err();
        assert!(unknown.contains("dynamodb:DeleteTable"), "{unknown}");
        assert!("dynamodb:GetItem*x".parse::<Script>().is_err());
        let claimed: Script =
            "dynamodb:PutItem (idempotency) ses:SendEmail dynamodb:UpdateItem (idempotency)".parse().unwrap();
        assert_eq!(claimed.before, [Call::Claim, Call::SendEmail, Call::Complete]);
        assert!("dynamodb:GetItem (idempotency)".parse::<Script>().is_err());
    }
}
