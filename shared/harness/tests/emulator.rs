//! The AWS adapters against the local emulator for real (MiniStack, started by `make test` through
//! `infra/local-aws.sh up`). Ignored by a bare `cargo test`, which has no emulator; `make test` runs
//! them with `--include-ignored`. Each test makes its own uniquely named resources.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use orderflow_contracts::{Envelope, OrderPlaced};
use orderflow_harness::dead_letter::{DeadLetter, DeadLetterSink, SqsDeadLetterQueue};
use orderflow_harness::idempotency::{Claim, DynamoDbIdempotencyStore, IdempotencyStore, InMemoryIdempotencyStore};
use orderflow_harness::publisher::EventBridgePublisher;
use orderflow_harness::{
    Consumer, ConsumerSettings, EventPublisher, Handler, HandlerError, OutboundEvent, RecordContext,
};
use serde_json::Value;

const IGNORE: &str = "needs the local AWS emulator: run `make test`";

async fn sdk() -> aws_config::SdkConfig {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .unwrap_or_else(|_| panic!("AWS_ENDPOINT_URL is not set: {IGNORE} (or eval \"$(infra/local-aws.sh env)\")"));
    assert!(endpoint.contains("127.0.0.1") || endpoint.contains("localhost"), "refusing to run against {endpoint}");
    orderflow_harness::aws::sdk_config().await
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

async fn idempotency_table(client: &aws_sdk_dynamodb::Client) -> String {
    let table = unique("idem");
    client
        .create_table()
        .table_name(&table)
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("id").attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("id").key_type(KeyType::Hash).build().unwrap())
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
    table
}

async fn queue(client: &aws_sdk_sqs::Client) -> (String, String) {
    let url = client.create_queue().queue_name(unique("q")).send().await.unwrap().queue_url.unwrap();
    let arn = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    (url, arn)
}

async fn drain(client: &aws_sdk_sqs::Client, url: &str, want: usize) -> Vec<aws_sdk_sqs::types::Message> {
    let mut got = Vec::new();
    for _ in 0..20 {
        let out = client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        for m in out.messages.unwrap_or_default() {
            client.delete_message().queue_url(url).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
            got.push(m);
        }
        if got.len() >= want {
            break;
        }
    }
    got
}

#[tokio::test]
#[ignore = "needs the local AWS emulator: run `make test`"]
async fn dynamodb_idempotency_store_claims_completes_and_releases() {
    let sdk = sdk().await;
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let store = DynamoDbIdempotencyStore::new(client.clone(), idempotency_table(&client).await);
    let in_a_minute = || SystemTime::now() + Duration::from_secs(60);
    let acquired = |c: Claim| match c {
        Claim::Acquired(token) => token,
        other => panic!("expected Acquired, got {other:?}"),
    };

    let t1 = acquired(store.claim("billing#e1", in_a_minute()).await.unwrap());
    assert_eq!(
        store.claim("billing#e1", in_a_minute()).await.unwrap(),
        Claim::InProgress,
        "second claim while in progress"
    );
    acquired(store.claim("warehouse#e1", in_a_minute()).await.unwrap());
    store.complete("billing#e1", &t1, Duration::from_secs(3600)).await.unwrap();
    assert_eq!(store.claim("billing#e1", in_a_minute()).await.unwrap(), Claim::AlreadyCompleted);
    store.release("billing#e1", &t1).await.unwrap();
    assert_eq!(
        store.claim("billing#e1", in_a_minute()).await.unwrap(),
        Claim::AlreadyCompleted,
        "release never drops a completion"
    );

    let t2 = acquired(store.claim("billing#e2", in_a_minute()).await.unwrap());
    store.release("billing#e2", &t2).await.unwrap();
    acquired(store.claim("billing#e2", in_a_minute()).await.unwrap());

    // A claim locked until a deadline that has passed is taken over; its first holder, slow but
    // alive, can then neither complete nor release the new holder's claim.
    let slow = acquired(store.claim("billing#e3", SystemTime::now()).await.unwrap());
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = acquired(store.claim("billing#e3", in_a_minute()).await.unwrap());
    assert!(
        store.complete("billing#e3", &slow, Duration::from_secs(3600)).await.is_err(),
        "not the slow holder's any more"
    );
    store.release("billing#e3", &slow).await.unwrap();
    assert_eq!(
        store.claim("billing#e3", in_a_minute()).await.unwrap(),
        Claim::InProgress,
        "the second holder keeps it"
    );
    store.complete("billing#e3", &second, Duration::from_secs(3600)).await.unwrap();
    assert_eq!(store.claim("billing#e3", in_a_minute()).await.unwrap(), Claim::AlreadyCompleted);
}

#[tokio::test]
#[ignore = "needs the local AWS emulator: run `make test`"]
async fn eventbridge_publisher_delivers_every_event_through_a_rule() {
    let sdk = sdk().await;
    let eb = aws_sdk_eventbridge::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let bus = unique("bus");
    eb.create_event_bus().name(&bus).send().await.unwrap();
    let (url, arn) = queue(&sqs).await;
    let rule = unique("rule");
    eb.put_rule()
        .event_bus_name(&bus)
        .name(&rule)
        .event_pattern(r#"{"source":["orderflow.sales"],"detail-type":["OrderPlaced"]}"#)
        .send()
        .await
        .unwrap();
    eb.put_targets()
        .event_bus_name(&bus)
        .rule(&rule)
        .targets(aws_sdk_eventbridge::types::Target::builder().id("q").arn(&arn).build().unwrap())
        .send()
        .await
        .unwrap();

    let sample: OrderPlaced = {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../events-samples/billing/order-placed.sqs.json"
        ))
        .unwrap();
        let event: SqsEvent = serde_json::from_str(&text).unwrap();
        orderflow_harness::consumer::decode::<OrderPlaced>(event.records[0].body.as_deref()).unwrap().0
    };
    // 12 events: two PutEvents requests (10 + 2).
    let envelopes: Vec<Envelope<OrderPlaced>> = (0..12)
        .map(|i| {
            let mut data = sample.clone();
            data.order_id = format!("ord-{i}");
            Envelope::new(data, Some("corr-emulator".into()))
        })
        .collect();
    let publisher = EventBridgePublisher::eventbridge(eb.clone(), &bus);
    publisher.publish(envelopes.iter().map(OutboundEvent::from_envelope).collect()).await.unwrap();

    let messages = drain(&sqs, &url, 12).await;
    assert_eq!(messages.len(), 12);
    let mut ids: Vec<String> = messages
        .iter()
        .map(|m| {
            let body = m.body().unwrap();
            let event: Value = serde_json::from_str(body).unwrap();
            assert_eq!(event["detail-type"], "OrderPlaced");
            assert_eq!(event["source"], "orderflow.sales");
            let (decoded, meta) = orderflow_harness::consumer::decode::<OrderPlaced>(Some(body)).unwrap();
            assert_eq!(meta.correlation_id, "corr-emulator");
            assert!(decoded.order_id.starts_with("ord-"));
            meta.event_id.to_string()
        })
        .collect();
    let mut want: Vec<String> = envelopes.iter().map(|e| e.metadata.event_id.to_string()).collect();
    ids.sort();
    want.sort();
    assert_eq!(ids, want, "every published event arrived, once");
}

#[tokio::test]
#[ignore = "needs the local AWS emulator: run `make test`"]
async fn sqs_dead_letter_queue_keeps_body_reason_and_every_original_attribute() {
    let sdk = sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (url, _) = queue(&sqs).await;
    let sink = SqsDeadLetterQueue::new(sqs.clone(), &url);
    let mut subscription = aws_lambda_events::event::sqs::SqsMessageAttribute::default();
    subscription.data_type = Some("String".into());
    subscription.string_value = Some("sub-42".into());
    let mut stale = subscription.clone();
    stale.string_value = Some("an earlier failure".into());
    sink.send(DeadLetter {
        consumer: "billing".into(),
        message_id: "m-1".into(),
        body: "{\"not\":\"an event\"}".into(),
        reason: "not an EventBridge event with an Orderflow envelope".into(),
        receive_count: 1,
        message_group_id: None,
        attributes: std::collections::HashMap::from([
            ("subscriptionId".to_string(), subscription),
            ("orderflow.reason".to_string(), stale),
        ]),
    })
    .await
    .unwrap();
    let messages = drain(&sqs, &url, 1).await;
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.body(), Some("{\"not\":\"an event\"}"));
    let attrs = m.message_attributes().unwrap();
    assert_eq!(attrs["orderflow.reason"].string_value(), Some("not an EventBridge event with an Orderflow envelope"));
    assert_eq!(attrs["orderflow.consumer"].string_value(), Some("billing"));
    assert_eq!(attrs["orderflow.sourceMessageId"].string_value(), Some("m-1"));
    assert_eq!(attrs["subscriptionId"].string_value(), Some("sub-42"), "the original attribute redrive needs");
    assert_eq!(attrs.len(), 5, "the original attribute and the four reason attributes, the stale reason replaced");
}

struct Ok_;

#[async_trait::async_trait]
impl Handler<OrderPlaced> for Ok_ {
    async fn handle(&self, _: OrderPlaced, _: &RecordContext) -> Result<(), HandlerError> {
        Ok(())
    }
}

#[tokio::test]
#[ignore = "needs the local AWS emulator: run `make test`"]
async fn consumer_with_real_adapters_dead_letters_garbage_and_acknowledges_it() {
    let sdk = sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (dlq, _) = queue(&sqs).await;
    let consumer = Consumer::<OrderPlaced>::new(
        "billing",
        Arc::new(Ok_),
        Arc::new(InMemoryIdempotencyStore::default()),
        Arc::new(SqsDeadLetterQueue::new(sqs.clone(), &dlq)),
        ConsumerSettings::default(),
    );
    let mut garbage = SqsMessage::default();
    garbage.message_id = Some("garbage-1".into());
    garbage.body = Some("definitely not json".into());
    garbage.attributes = HashMap::from([("ApproximateReceiveCount".into(), "1".into())]);
    let mut batch = SqsEvent::default();
    batch.records = vec![garbage];
    let result = consumer.process(batch).await.unwrap();
    assert!(result.response.batch_item_failures.is_empty(), "dead-lettered, so acknowledged");
    let messages = drain(&sqs, &dlq, 1).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body(), Some("definitely not json"));
}

#[tokio::test]
#[ignore = "needs the local AWS emulator: run `make test`"]
async fn a_held_back_message_is_redelivered_no_sooner_than_asked() {
    use orderflow_harness::visibility::{SqsVisibility, VisibilityPort};
    let sdk = sdk().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (url, _) = queue(&sqs).await;
    sqs.send_message().queue_url(&url).message_body("rate limited").send().await.unwrap();
    let receive = || sqs.receive_message().queue_url(&url).max_number_of_messages(1).visibility_timeout(1).send();
    let first = receive().await.unwrap().messages.unwrap_or_default();
    let handle = first[0].receipt_handle().unwrap().to_string();

    // Held back for 3 s, longer than the 1 s the receive asked for.
    let held_at = std::time::Instant::now();
    SqsVisibility::new(sqs.clone(), &url).delay(&handle, Duration::from_secs(3)).await.unwrap();
    loop {
        let got = receive().await.unwrap().messages.unwrap_or_default();
        if !got.is_empty() {
            let waited = held_at.elapsed();
            assert!(waited >= Duration::from_millis(2_500), "redelivered after {waited:?}, asked for 3 s");
            break;
        }
        assert!(held_at.elapsed() < Duration::from_secs(15), "never redelivered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
