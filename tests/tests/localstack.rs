//! Against LocalStack as its users run it (here on the host, without Docker: `infra/localstack.sh`,
//! started and stopped by `make test`). LocalStack on the host runs EventBridge, SQS and S3 but no
//! Lambda or DynamoDB, so what is checked here is the routing and the S3 writes:
//!
//! - every event type, published by the real publisher, reaches exactly the queues whose rules in
//!   `infra/template.yaml` match it (patterns read from the template, not copied), and each consumer's
//!   queue gets exactly what its Rust `Inbound` type reads;
//! - Warehouse's S3 label adapter writes a label LocalStack serves back.
//!
//! Ignored by a bare `cargo test`; `make test` runs it with `ORDERFLOW_LOCALSTACK_URL` set, while
//! LocalStack is still starting: each test waits for it to answer first.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use orderflow_contracts::{schemas, Address};
use orderflow_e2e::template::{root, Template};
use orderflow_e2e::{create_queue, eventually, unique};
use orderflow_harness::publisher::EventBridgePublisher;
use orderflow_harness::{EventPublisher, OutboundEvent};
use serde_json::Value;
use warehouse::labels::{Label, LabelStore, S3LabelStore};

/// One sample of every event type, as SQS delivered them (EventBridge event in the body).
const SAMPLES: &[&str] = &[
    "billing/order-placed.sqs.json",
    "warehouse/order-billed.sqs.json",
    "sales-order-status/payment-declined.sqs.json",
    "sales-order-status/shipping-label-created.sqs.json",
    "sales-order-status/stock-allocation-failed.sqs.json",
    "cache/order-status-changed.sqs.json",
    "billing/order-cancelled.sqs.json",
    "sales-order-status/payment-refunded.sqs.json",
    "warehouse/stock-received.sqs.json",
    "webhooks/stock-released.sqs.json",
];

/// How long a test waits for LocalStack to answer: `make test` starts it in the background and runs
/// the tests without waiting for it (about 35 s on 2 cores, the other tests meanwhile).
const STARTING: Duration = Duration::from_secs(180);

async fn sdk() -> aws_config::SdkConfig {
    let endpoint = std::env::var("ORDERFLOW_LOCALSTACK_URL")
        .expect("ORDERFLOW_LOCALSTACK_URL is not set: run `make test` (it starts LocalStack with infra/localstack.sh)");
    assert!(endpoint.contains("127.0.0.1") || endpoint.contains("localhost"), "refusing to run against {endpoint}");
    wait_for_localstack(&endpoint).await;
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(orderflow_harness::aws::https_client())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "localstack"))
        .load()
        .await
}

/// Until LocalStack's health says SQS is up, as `infra/localstack.sh up` waits for it.
async fn wait_for_localstack(endpoint: &str) {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let what = format!(
        "LocalStack at {endpoint} answering (see .local/localstack-up.log, its install and start, and \
         .local/localstack/localstack.log)"
    );
    eventually(&what, STARTING, || async {
        // Refused, or no answer yet, while it starts: not yet, not a failure.
        let Ok(answer) =
            client.get(format!("{endpoint}/_localstack/health")).timeout(Duration::from_secs(2)).send().await
        else {
            return Ok(None);
        };
        let body: Value = answer.json().await.unwrap_or(Value::Null);
        Ok(matches!(body["services"]["sqs"].as_str(), Some("available" | "running")).then_some(()))
    })
    .await
    .unwrap();
    println!("LocalStack answered after {:?}", started.elapsed());
}

fn sample_event(file: &str) -> OutboundEvent {
    let text = std::fs::read_to_string(root().join("events-samples").join(file)).unwrap();
    let sqs: Value = serde_json::from_str(&text).unwrap();
    let body: Value = serde_json::from_str(sqs["Records"][0]["body"].as_str().unwrap()).unwrap();
    OutboundEvent {
        event_id: body["detail"]["metadata"]["eventId"].as_str().unwrap().to_string(),
        source: body["source"].as_str().unwrap().to_string(),
        detail_type: body["detail-type"].as_str().unwrap().to_string(),
        detail: body["detail"].to_string(),
        trace_header: None,
    }
}

#[tokio::test]
#[ignore = "needs LocalStack on the host: run `make test`"]
async fn every_event_type_reaches_exactly_the_queues_whose_template_rules_match_it() {
    let sdk = sdk().await;
    let (events, sqs) = (aws_sdk_eventbridge::Client::new(&sdk), aws_sdk_sqs::Client::new(&sdk));
    let template = Template::load().unwrap();
    let bus = unique("orderflow-bus");
    events.create_event_bus().name(&bus).send().await.unwrap();

    // One queue per consumer, behind a rule with the template's own pattern.
    let mut queues: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for f in template.functions().into_iter().filter(|f| f.queue.is_some()) {
        // A queue fed by another function (webhook deliveries) has no rule to check here.
        let Some(rule) = template.rule_for_queue(f.queue.as_deref().unwrap()) else { continue };
        let (url, arn) = create_queue(&sqs, &unique(&f.binary)).await.unwrap();
        let name = unique(&rule.logical_id);
        events
            .put_rule()
            .event_bus_name(&bus)
            .name(&name)
            .event_pattern(rule.pattern.to_string())
            .send()
            .await
            .unwrap();
        events
            .put_targets()
            .event_bus_name(&bus)
            .rule(&name)
            .targets(aws_sdk_eventbridge::types::Target::builder().id("queue").arn(arn).build().unwrap())
            .send()
            .await
            .unwrap();
        let row = orderflow_consumers::CONSUMERS.iter().find(|c| c.binary == f.binary).unwrap();
        // What comes over the bus: a consumer's own timer messages (Sales' backorder deadlines, which
        // the scheduler sends straight to its queue) are not bus events.
        let expected: BTreeSet<String> = row
            .routes()
            .unwrap()
            .detail_types
            .iter()
            .filter(|t| schemas::all().iter().any(|(file, _)| file.starts_with(&format!("{t}.v"))))
            .map(|s| s.to_string())
            .collect();
        queues.insert(f.binary.clone(), (url, expected));
    }

    // Every event type the contracts define, published by the publisher the functions use.
    let samples: Vec<OutboundEvent> = SAMPLES.iter().map(|f| sample_event(f)).collect();
    let published: BTreeSet<&str> = samples.iter().map(|e| e.detail_type.as_str()).collect();
    let defined: BTreeSet<String> =
        schemas::all().into_iter().map(|(file, _)| file.split(".v").next().unwrap().to_string()).collect();
    assert_eq!(published, defined.iter().map(String::as_str).collect(), "a sample of every event type");
    EventBridgePublisher::eventbridge(events.clone(), &bus).publish(samples).await.unwrap();

    for (consumer, (url, expected)) in &queues {
        let mut got: Vec<String> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        // Until the expected ones arrived, then one more look for anything that should not have.
        let mut settled = false;
        while !settled {
            let done = got.len() >= expected.len();
            let out = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            for m in out.messages.unwrap_or_default() {
                let body: Value = serde_json::from_str(m.body().unwrap()).unwrap();
                got.push(body["detail-type"].as_str().unwrap().to_string());
            }
            settled = done || Instant::now() > deadline;
        }
        println!("LocalStack: {consumer} queue received {got:?}");
        assert_eq!(got.len(), expected.len(), "{consumer}: each matching event once, nothing else: {got:?}");
        assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), *expected, "{consumer}");
    }
}

#[tokio::test]
#[ignore = "needs LocalStack on the host: run `make test`"]
async fn the_label_adapter_writes_to_s3() {
    let sdk = sdk().await;
    let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
    let bucket = unique("labels");
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let label = Label {
        order_id: "ord-ls-1".into(),
        shipment_id: "shp-ord-ls-1".into(),
        carrier: "OrderflowPost".into(),
        tracking_number: "OF0000000001GB".into(),
        recipient: "Ada Lovelace".into(),
        address: Address {
            line1: "12 Analytical Row".into(),
            line2: None,
            city: "London".into(),
            postal_code: "N1 9GU".into(),
            country: "GB".into(),
        },
        contents: vec![("BOOK-001".into(), 2)],
    };
    let stored = S3LabelStore::new(s3.clone(), &bucket).put(&label).await.unwrap();
    let object = s3.get_object().bucket(&stored.bucket).key(&stored.key).send().await.unwrap();
    let doc: Value = serde_json::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(doc["trackingNumber"], "OF0000000001GB");
    assert_eq!(doc["contents"][0][0], "BOOK-001");
}

#[tokio::test]
#[ignore = "needs LocalStack on the host: run `make test`"]
async fn without_ses_v2_the_email_consumer_stops_at_start_naming_the_service() {
    // LocalStack's free edition has no SES v2 (here it serves no SES at all): the email function's
    // init check must refuse to start, saying what is missing and what to do, not fail every email.
    let sdk = sdk().await;
    let err =
        email::ses::check_sender(&aws_sdk_sesv2::Client::new(&sdk), "orders@orderflow.example").await.unwrap_err();
    assert!(err.contains("SES v2") && err.contains("MiniStack"), "{err}");
}
