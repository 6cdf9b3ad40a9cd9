//! Talking to the Orderflow stack deployed on the local emulator (`infra/deploy-local.sh`): its
//! outputs, its HTTP API, its tables and queues, and a "tap" that shows every event of one flow.
//! The demo (`src/bin/demo.rs`) and the end-to-end tests (`tests/e2e.rs`) are both built on it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use orderflow_contracts::{OrderState, OrderStatus};
use serde_json::{json, Value};

/// The statuses an order ends in.
pub const FINAL: [OrderStatus; 3] = [OrderStatus::ReadyToShip, OrderStatus::PaymentFailed, OrderStatus::Backordered];

/// A connection to the deployed stack.
pub struct Local {
    outputs: HashMap<String, String>,
    /// HTTP client for the API.
    pub http: reqwest::Client,
    /// DynamoDB.
    pub dynamo: aws_sdk_dynamodb::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// EventBridge.
    pub events: aws_sdk_eventbridge::Client,
    /// S3 (path-style, as the emulator needs).
    pub s3: aws_sdk_s3::Client,
    /// Lambda (event source mappings).
    pub lambda: aws_sdk_lambda::Client,
    /// The SDK configuration the clients share (for other clients).
    pub sdk: aws_config::SdkConfig,
}

/// One event seen on the bus through a [`Tap`].
#[derive(Debug, Clone)]
pub struct Tapped {
    /// `detail-type`.
    pub detail_type: String,
    /// `source`.
    pub source: String,
    /// The order it concerns.
    pub order_id: String,
    /// Envelope event id.
    pub event_id: String,
    /// Envelope correlation id.
    pub correlation_id: String,
    /// When the producer says it happened.
    pub occurred_at: DateTime<Utc>,
    /// The whole EventBridge event, as delivered.
    pub body: String,
    /// The replay that re-delivered it, if any.
    pub replay_name: Option<String>,
}

/// A rule + queue on the bus that receives every Orderflow event whose correlation id starts with a
/// prefix: how the demo prints a timeline and the tests see what was published, without touching the
/// consumers' own queues.
pub struct Tap {
    rule: String,
    /// The tap's queue.
    pub queue_url: String,
    bus: String,
}

impl Local {
    /// Reads `.local/stack-outputs.json` (written by `infra/deploy-local.sh`) and builds clients.
    ///
    /// Also makes sure this process runs the Twilio stand-in (`twilio::TwilioStandIn`, where the
    /// local deployment points the SMS consumer): the texts of every order a test places are then
    /// accepted at once, instead of piling up in the SMS queue's growing retry delays, where they
    /// would hold up tests that wait for that queue to drain. Best effort: if another process
    /// holds the port, its stand-in answers instead.
    pub async fn connect() -> Result<Self> {
        let _ = twilio::TwilioStandIn::shared().await;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.local/stack-outputs.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("{} not found: deploy first with `infra/deploy-local.sh` (or `make demo`)", path.display())
        })?;
        let outputs: HashMap<String, String> = serde_json::from_str(&text)?;
        let endpoint =
            outputs.get("EndpointUrl").cloned().ok_or_else(|| anyhow!("no EndpointUrl in {}", path.display()))?;
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(aws_config::Region::new(std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "orderflow-local"))
            .load()
            .await;
        let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
        Ok(Self {
            outputs,
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
            dynamo: aws_sdk_dynamodb::Client::new(&sdk),
            sqs: aws_sdk_sqs::Client::new(&sdk),
            events: aws_sdk_eventbridge::Client::new(&sdk),
            lambda: aws_sdk_lambda::Client::new(&sdk),
            s3,
            sdk,
        })
    }

    /// Whether the stack has this output (the LocalStack variant lacks the HTTP API's).
    pub fn has_output(&self, key: &str) -> bool {
        self.outputs.contains_key(key)
    }

    /// The names of the stack's outputs.
    pub fn output_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.outputs.keys().cloned().collect();
        names.sort();
        names
    }

    /// A stack output, e.g. `BillingQueueUrl`.
    pub fn output(&self, key: &str) -> &str {
        self.outputs.get(key).map(String::as_str).unwrap_or_else(|| panic!("stack output {key} missing"))
    }

    /// `POST /orders`: status and JSON body.
    pub async fn place_order(
        &self,
        body: &Value,
        correlation_id: &str,
        idempotency_key: Option<&str>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .http
            .post(format!("{}/orders", self.output("LocalApiUrl")))
            .header("x-correlation-id", correlation_id)
            .json(body);
        if let Some(key) = idempotency_key {
            req = req.header("idempotency-key", key);
        }
        let (status, text) = send_to_api(req).await?;
        let json = serde_json::from_str(&text).with_context(|| format!("POST /orders answered {status}: {text}"))?;
        Ok((status, json))
    }

    /// `GET /orders/{id}`.
    pub async fn get_order(&self, order_id: &str) -> Result<Option<OrderState>> {
        let (status, text) =
            send_to_api(self.http.get(format!("{}/orders/{order_id}", self.output("LocalApiUrl")))).await?;
        match status {
            200 => Ok(Some(serde_json::from_str(&text)?)),
            404 => Ok(None),
            other => bail!("GET /orders/{order_id} answered {other}: {text}"),
        }
    }

    /// Polls `GET /orders/{id}` until the order reaches a final status.
    pub async fn wait_final(&self, order_id: &str, timeout: Duration) -> Result<OrderState> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(order) = self.get_order(order_id).await? {
                if FINAL.contains(&order.status) {
                    return Ok(order);
                }
                if Instant::now() > deadline {
                    bail!("order {order_id} still {:?} after {timeout:?}", order.status);
                }
            } else if Instant::now() > deadline {
                bail!("order {order_id} not found after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops or restarts the delivery of a function's queue to the function (its SQS event source
    /// mapping), as if the consumer were down, and waits until the mapping says so.
    pub async fn set_consumer_enabled(&self, function_output: &str, enabled: bool) -> Result<()> {
        let function = self.output(function_output).to_string();
        let mappings = self.lambda.list_event_source_mappings().function_name(&function).send().await?;
        let uuid = mappings
            .event_source_mappings()
            .first()
            .and_then(|m| m.uuid())
            .ok_or_else(|| anyhow!("{function} has no event source mapping"))?
            .to_string();
        self.lambda.update_event_source_mapping().uuid(&uuid).enabled(enabled).send().await?;
        let want = if enabled { "Enabled" } else { "Disabled" };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state = self.lambda.get_event_source_mapping().uuid(&uuid).send().await?.state;
            if state.as_deref() == Some(want) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("event source mapping of {function} still {state:?}, expected {want}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs `body` with the consumer behind `function_output` down (its event source mapping off), and
    /// brings it back afterwards, also when `body` panics, so a failed check never leaves it down.
    pub async fn with_consumer_down<T>(
        &self,
        function_output: &str,
        body: impl std::future::Future<Output = T>,
    ) -> Result<T> {
        use futures::FutureExt;
        self.set_consumer_enabled(function_output, false).await?;
        let outcome = std::panic::AssertUnwindSafe(body).catch_unwind().await;
        self.set_consumer_enabled(function_output, true).await?;
        Ok(outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
    }

    /// The emails SES sent to `to`, as the emulator recorded them (`GET /_ministack/ses/messages`:
    /// `Subject`, `BodyText`, `BodyHtml`, `Source`, ...).
    pub async fn emails_to(&self, to: &str) -> Result<Vec<Value>> {
        let all: Value = self
            .http
            .get(format!("{}/_ministack/ses/messages", self.output("EndpointUrl")))
            .send()
            .await?
            .json()
            .await?;
        Ok(all["messages"]
            .as_object()
            .into_iter()
            .flat_map(|accounts| accounts.values())
            .filter_map(Value::as_array)
            .flatten()
            .filter(|m| m["To"].as_array().is_some_and(|t| t.iter().any(|a| a == to)))
            .cloned()
            .collect())
    }

    /// The value of the stack's secret named by the output `secret_output`.
    pub async fn secret(&self, secret_output: &str) -> Result<String> {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.output("EndpointUrl"))
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "orderflow-local"))
            .load()
            .await;
        let out = aws_sdk_secretsmanager::Client::new(&sdk)
            .get_secret_value()
            .secret_id(self.output(secret_output))
            .send()
            .await?;
        Ok(out.secret_string().unwrap_or_default().to_string())
    }

    /// The stack's Twilio secret (`accountSid`, `authToken`), as the SMS function reads it.
    pub async fn twilio_secret(&self) -> Result<Value> {
        Ok(serde_json::from_str(&self.secret("TwilioSecretId").await?)?)
    }

    /// A request to the webhooks API with the operator key (or `key`), as JSON status and body.
    pub async fn webhooks_api(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.output("LocalApiUrl")));
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let (status, text) = send_to_api(req).await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Puts `sku` in the shop's catalogue at `unit_price_minor` GBP.
    pub async fn set_product(&self, sku: &str, unit_price_minor: i64) -> Result<()> {
        self.dynamo
            .put_item()
            .table_name(self.output("CatalogueTableName"))
            .item("sku", AttributeValue::S(sku.into()))
            .item("name", AttributeValue::S(format!("Test product {sku}")))
            .item("unitPriceMinor", AttributeValue::N(unit_price_minor.to_string()))
            .item("currency", AttributeValue::S("GBP".into()))
            .send()
            .await?;
        Ok(())
    }

    /// A product the shop sells at `unit_price_minor`, with `available` in stock.
    pub async fn stock_product(&self, sku: &str, unit_price_minor: i64, available: u32) -> Result<()> {
        self.set_product(sku, unit_price_minor).await?;
        self.set_stock(sku, available).await
    }

    /// Publishes a marker event for a tap: once the tap has it, every event published before it
    /// has been routed (the bus delivers in order here), so a test can check for what did *not*
    /// arrive without sleeping.
    pub async fn sentinel(&self, correlation_id: &str) -> Result<()> {
        let detail = json!({"metadata": {"correlationId": correlation_id}, "data": {"orderId": "sentinel"}});
        let out = self
            .events
            .put_events()
            .entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .event_bus_name(self.output("EventBusName"))
                    .source("orderflow.e2e")
                    .detail_type("Sentinel")
                    .detail(detail.to_string())
                    .build(),
            )
            .send()
            .await?;
        if out.failed_entry_count() > 0 {
            bail!("sentinel not published: {:?}", out.entries());
        }
        Ok(())
    }

    /// Sends `body` to the queue named by the output `queue_output` `times` times, as if SQS delivered
    /// it again, and waits until the consumer has finished with every copy (the queue, and any queue
    /// in `then_drained` that it feeds, holds nothing visible or in flight): after that, what the
    /// consumer did with the copies has been done.
    pub async fn deliver_again(
        &self,
        queue_output: &str,
        body: &str,
        times: usize,
        then_drained: &[&str],
    ) -> Result<()> {
        self.deliver_again_with(queue_output, body, &[], times, then_drained).await
    }

    /// [`Local::deliver_again`], each copy carrying these string message attributes (a webhook
    /// delivery's `subscriptionId`).
    pub async fn deliver_again_with(
        &self,
        queue_output: &str,
        body: &str,
        attributes: &[(&str, &str)],
        times: usize,
        then_drained: &[&str],
    ) -> Result<()> {
        let queue = self.output(queue_output);
        for _ in 0..times {
            let mut send = self.sqs.send_message().queue_url(queue).message_body(body);
            for (name, value) in attributes {
                let value = aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(*value)
                    .build()?;
                send = send.message_attributes(*name, value);
            }
            send.send().await?;
        }
        self.drained(&[&[queue_output], then_drained].concat()).await
    }

    /// Waits (90 s at most) until each of these queues (stack outputs) holds nothing, visible or in
    /// flight: everything sent to them has been handled, retries included.
    pub async fn drained(&self, queue_outputs: &[&str]) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(90);
        for output in queue_outputs {
            while self.queue_depth(self.output(output)).await? > 0 {
                if Instant::now() > deadline {
                    bail!("{output} did not drain within 90 s");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Ok(())
    }

    /// Messages on a queue, visible or in flight.
    pub async fn queue_depth(&self, queue_url: &str) -> Result<u32> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await?
            .attributes
            .unwrap_or_default();
        let n = |k: A| attrs.get(&k).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
        Ok(n(A::ApproximateNumberOfMessages) + n(A::ApproximateNumberOfMessagesNotVisible))
    }

    /// Sets the stock of `sku` to `available`.
    pub async fn set_stock(&self, sku: &str, available: u32) -> Result<()> {
        self.dynamo
            .put_item()
            .table_name(self.output("StockTableName"))
            .item("sku", AttributeValue::S(sku.into()))
            .item("available", AttributeValue::N(available.to_string()))
            .send()
            .await?;
        Ok(())
    }

    /// What is on hand for `sku`.
    pub async fn stock(&self, sku: &str) -> Result<Option<u32>> {
        let out = self
            .dynamo
            .get_item()
            .table_name(self.output("StockTableName"))
            .key("sku", AttributeValue::S(sku.into()))
            .consistent_read(true)
            .send()
            .await?;
        Ok(out.item().and_then(|i| i.get("available")).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()))
    }

    /// The invoice items of an order (the table is keyed by order id: at most one).
    pub async fn invoice(&self, order_id: &str) -> Result<Option<HashMap<String, AttributeValue>>> {
        let out = self
            .dynamo
            .get_item()
            .table_name(self.output("InvoicesTableName"))
            .key("orderId", AttributeValue::S(order_id.into()))
            .consistent_read(true)
            .send()
            .await?;
        Ok(out.item)
    }

    /// Starts a tap for every event whose correlation id starts with `prefix`.
    pub async fn tap(&self, prefix: &str) -> Result<Tap> {
        self.observe(&json!({
            "source": [{"prefix": "orderflow."}],
            "detail": {"metadata": {"correlationId": [{"prefix": prefix}]}}
        }))
        .await
    }

    /// A rule with `pattern` on the bus, and a queue of its own for what it matches (read it with
    /// [`Local::drain`], remove it with [`Local::close`]).
    pub async fn observe(&self, pattern: &Value) -> Result<Tap> {
        let name = format!("tap-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let (queue_url, arn) = create_queue(&self.sqs, &name).await?;
        let bus = self.output("EventBusName").to_string();
        self.events.put_rule().event_bus_name(&bus).name(&name).event_pattern(pattern.to_string()).send().await?;
        self.events
            .put_targets()
            .event_bus_name(&bus)
            .rule(&name)
            .targets(aws_sdk_eventbridge::types::Target::builder().id("tap").arn(arn).build()?)
            .send()
            .await?;
        Ok(Tap { rule: name, queue_url, bus })
    }

    /// Takes whatever the tap has received (waits up to `wait` for the first message).
    pub async fn drain(&self, tap: &Tap, wait: Duration) -> Result<Vec<Tapped>> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&tap.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .send()
            .await?;
        let mut seen = Vec::new();
        for m in out.messages.unwrap_or_default() {
            if let Some(handle) = m.receipt_handle() {
                self.sqs.delete_message().queue_url(&tap.queue_url).receipt_handle(handle).send().await?;
            }
            let body = m.body.unwrap_or_default();
            seen.push(parse_tapped(&body)?);
        }
        Ok(seen)
    }

    /// Drains the tap until `until` holds for everything seen so far, or `timeout`.
    pub async fn collect(
        &self,
        tap: &Tap,
        timeout: Duration,
        until: impl Fn(&[Tapped]) -> bool,
    ) -> Result<Vec<Tapped>> {
        let deadline = Instant::now() + timeout;
        let mut all = Vec::new();
        while !until(&all) {
            if Instant::now() > deadline {
                bail!(
                    "tap condition not met after {timeout:?}; saw {:?}",
                    all.iter().map(|t: &Tapped| (&t.order_id, &t.detail_type)).collect::<Vec<_>>()
                );
            }
            all.extend(self.drain(tap, Duration::from_secs(1)).await?);
        }
        Ok(all)
    }

    /// Removes the tap's rule and queue.
    pub async fn close(&self, tap: Tap) -> Result<()> {
        self.events.remove_targets().event_bus_name(&tap.bus).rule(&tap.rule).ids("tap").send().await?;
        self.events.delete_rule().event_bus_name(&tap.bus).name(&tap.rule).send().await?;
        self.sqs.delete_queue().queue_url(&tap.queue_url).send().await?;
        Ok(())
    }
}

/// Creates the SQS queue `name`; its URL and ARN (what an EventBridge target needs).
pub async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<(String, String)> {
    let url = sqs.create_queue().queue_name(name).send().await?.queue_url.ok_or_else(|| anyhow!("no queue url"))?;
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .ok_or_else(|| anyhow!("no queue arn"))?;
    Ok((url, arn))
}

fn parse_tapped(body: &str) -> Result<Tapped> {
    let event: Value = serde_json::from_str(body).with_context(|| format!("tap got a non-JSON body: {body}"))?;
    let meta = &event["detail"]["metadata"];
    let data = &event["detail"]["data"];
    let order_id = data["orderId"].as_str().or_else(|| data["order"]["orderId"].as_str()).unwrap_or_default();
    Ok(Tapped {
        detail_type: event["detail-type"].as_str().unwrap_or_default().to_string(),
        source: event["source"].as_str().unwrap_or_default().to_string(),
        order_id: order_id.to_string(),
        event_id: meta["eventId"].as_str().unwrap_or_default().to_string(),
        correlation_id: meta["correlationId"].as_str().unwrap_or_default().to_string(),
        occurred_at: meta["occurredAt"].as_str().and_then(|t| t.parse().ok()).unwrap_or_else(Utc::now),
        body: body.to_string(),
        replay_name: event["replay-name"].as_str().map(str::to_string),
    })
}

/// Sends a request to the stack's HTTP API and returns its status and body. The emulator's own
/// API Gateway answers `404 {"message":"Not Found"}` (it found no API or route: the Lambdas' own 404s
/// always carry `errors`) for a short while after a deployment, seen intermittently on a fresh
/// emulator even after the deployment's smoke check passed; such an answer is retried for up to
/// 10 s. Any other answer, the functions' own 404s included, is returned as it is.
pub async fn send_to_api(req: reqwest::RequestBuilder) -> Result<(u16, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = req.try_clone().ok_or_else(|| anyhow!("a request with a streamed body cannot be retried"))?;
        let resp = attempt.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        if status == 404 && text.trim() == r#"{"message":"Not Found"}"# && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        return Ok((status, text));
    }
}

/// A valid `POST /orders` body for `email` with the given lines (SKU, quantity); prices come from
/// the catalogue.
pub fn order_request(email: &str, lines: &[(&str, u32)]) -> Value {
    json!({
        "customer": {"name": "Ada Lovelace", "email": email, "phone": "+447700900123"},
        "lines": lines.iter().map(|(sku, q)| json!({"sku": sku, "quantity": q})).collect::<Vec<_>>(),
        "currency": "GBP",
        "shippingAddress": {"line1": "12 Analytical Row", "city": "London", "postalCode": "N1 9GU", "country": "GB"}
    })
}

/// A short unique token for names and correlation ids.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// A unique SKU (the catalogue's pattern: upper-case letters, digits, `-`).
pub fn unique_sku(prefix: &str) -> String {
    unique(prefix).to_uppercase()
}
pub mod read_models;
pub mod template;
pub mod twilio;
