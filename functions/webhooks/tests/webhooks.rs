//! Webhooks over fakes: the SSRF guard, the subscriptions API, the fan-out and the delivery, through
//! the real harness where a consumer is involved.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use lambda_http::{Body, Request};
use orderflow_contracts::AnyEvent;
use orderflow_harness_testing::{sqs_batch, sqs_sample, Harnessed};
use pretty_assertions::assert_eq;
use serde_json::{json, Value};
use webhooks::api::WebhooksApi;
use webhooks::delivery::{Answer, Delivery, Poster};
use webhooks::fanout::{Fanout, InMemoryDeliveryQueue};
use webhooks::guard::{self, Checked};
use webhooks::subscriptions::{InMemorySubscriptions, Subscription, SubscriptionStore};
use webhooks::SUBSCRIPTION_ATTRIBUTE;

const PUBLIC: &str = "https://93.184.216.34/hooks";

#[tokio::test]
async fn the_guard_refuses_every_internal_target_and_plain_http() {
    for url in [
        "http://169.254.169.254/",
        "https://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[::ffff:10.0.0.1]/",
        "https://[::127.0.0.1]/",
        "https://10.0.0.1/",
        "https://172.16.5.4/",
        "https://192.168.1.1/",
        "https://127.0.0.1/",
        "https://[::1]/",
        "https://[fd00:ec2::254]/",
        "https://[fe80::1]/",
        "https://100.64.0.1/",
        "https://0.0.0.0/",
        "https://localhost/",
        "http://93.184.216.34/",
        "ftp://93.184.216.34/",
        "https://user:pw@93.184.216.34/",
        // Through a translator or tunnel to an internal IPv4 address, and the other special ranges.
        "https://[64:ff9b::a00:5]/",
        "https://[64:ff9b::a9fe:a9fe]/",
        "https://[64:ff9b:1::1]/",
        "https://[2002:a00:1::1]/",
        "https://[2002:7f00:1::]/",
        "https://[::ffff:0:a00:1]/",
        "https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
        "https://[fec0::1]/",
        "https://[100::1]/",
        "https://198.18.0.1/",
        "https://198.19.255.1/",
        "https://192.0.0.8/",
    ] {
        let refusal = guard::check(url, false).await.expect_err(url);
        assert!(refusal.is_permanent(), "{url} must be refused for good: {refusal}");
    }
    assert!(guard::check(PUBLIC, false).await.is_ok());
    assert!(guard::check("https://[2606:2800:220:1:248:1893:25c8:1946]/", false).await.is_ok());
    // The same forms leading to a public IPv4 address are let through.
    for url in ["https://[64:ff9b::5db8:d822]/", "https://[2002:5db8:d822::1]/", "https://198.20.0.1/"] {
        assert!(guard::check(url, false).await.is_ok(), "{url}");
    }
}

#[tokio::test]
async fn the_local_setting_admits_loopback_and_http_but_nothing_else_internal() {
    assert!(guard::check("http://127.0.0.1:4591/hook", true).await.is_ok());
    assert!(guard::check("http://localhost:4591/hook", true).await.is_ok());
    for url in ["http://169.254.169.254/", "https://10.0.0.1/", "https://[fd00:ec2::254]/", "http://192.168.0.1/"] {
        assert!(guard::check(url, true).await.is_err(), "{url} must be refused even locally");
    }
}

fn api(store: Arc<InMemorySubscriptions>, allow_local: bool) -> WebhooksApi {
    WebhooksApi::new(store, "operator-key".into(), allow_local)
}

/// A request as the HTTP API hands it over once its JWT authorizer verified a caller with these
/// claims (none: no verified caller).
fn request_as(claims: Option<Value>, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> Request {
    use lambda_http::RequestExt;
    let mut builder = lambda_http::http::Request::builder().method(method).uri(format!("https://api.example{path}"));
    if let Some(key) = key {
        builder = builder.header("x-api-key", key);
    }
    let request = builder.body(body.map(|b| Body::Text(b.to_string())).unwrap_or(Body::Empty)).unwrap();
    match claims {
        None => request,
        Some(claims) => {
            let context = serde_json::from_value(json!({
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": "test"},
                "authorizer": {"jwt": {"claims": claims}}
            }))
            .unwrap();
            request.with_request_context(lambda_http::request::RequestContext::ApiGatewayV2(context))
        }
    }
}

/// A request from a signed-in customer (not an operator).
fn request(method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> Request {
    request_as(Some(json!({"sub": "customer-1"})), method, path, key, body)
}

fn json_of(response: &lambda_http::Response<Body>) -> Value {
    serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null)
}

#[tokio::test]
async fn the_api_is_for_operators_only_by_group_or_by_the_machine_key() {
    let api = api(Arc::new(InMemorySubscriptions::default()), false);
    // No verified caller: 401, whatever key.
    for key in [None, Some("operator-key")] {
        let response = api.handle(request_as(None, "GET", "/webhooks", key, None)).await;
        assert_eq!(response.status(), 401, "{key:?}");
    }
    // A signed-in customer: 403 without the key.
    for key in [None, Some("wrong"), Some("")] {
        let response = api.handle(request("GET", "/webhooks", key, None)).await;
        assert_eq!(response.status(), 403, "{key:?}");
        assert_eq!(json_of(&response)["errors"][0]["field"], "Authorization");
    }
    for groups in ["[customers]", "[operators-readonly]"] {
        let claims = json!({"sub": "c", "cognito:groups": groups});
        assert_eq!(
            api.handle(request_as(Some(claims), "GET", "/webhooks", None, None)).await.status(),
            403,
            "{groups}"
        );
    }
    // An operator by group, or a machine client with the key.
    let operator = json!({"sub": "op-1", "cognito:groups": "[operators]"});
    assert_eq!(api.handle(request_as(Some(operator), "GET", "/webhooks", None, None)).await.status(), 200);
    assert_eq!(api.handle(request("GET", "/webhooks", Some("operator-key"), None)).await.status(), 200);
}

#[tokio::test]
async fn subscriptions_are_created_once_with_their_secret_listed_without_it_and_deleted() {
    let store = Arc::new(InMemorySubscriptions::default());
    let api = api(store.clone(), false);
    let created = api
        .handle(request(
            "POST",
            "/webhooks",
            Some("operator-key"),
            Some(json!({"url": PUBLIC, "eventTypes": ["OrderPlaced"]})),
        ))
        .await;
    assert_eq!(created.status(), 201);
    let created = json_of(&created);
    assert!(created["secret"].as_str().unwrap().starts_with("whsec_"));
    let id = created["id"].as_str().unwrap().to_string();

    let listed = json_of(&api.handle(request("GET", "/webhooks", Some("operator-key"), None)).await);
    assert_eq!(listed["webhooks"][0]["id"], id.as_str());
    assert!(listed["webhooks"][0].get("secret").is_none(), "secrets are shown once, at creation");

    assert_eq!(
        api.handle(request("DELETE", &format!("/webhooks/{id}"), Some("operator-key"), None)).await.status(),
        204
    );
    assert!(!store.get(&id).await.unwrap().unwrap().active);
    assert_eq!(api.handle(request("DELETE", "/webhooks/nope", Some("operator-key"), None)).await.status(), 404);
}

#[tokio::test]
async fn internal_targets_and_unknown_event_types_are_refused_at_creation() {
    let store = Arc::new(InMemorySubscriptions::default());
    let api = api(store.clone(), false);
    for (body, field) in [
        (json!({"url": "http://169.254.169.254/", "eventTypes": ["OrderPlaced"]}), "url"),
        (json!({"url": "http://[::ffff:127.0.0.1]/", "eventTypes": ["OrderPlaced"]}), "url"),
        (json!({"url": "https://10.0.0.1/", "eventTypes": ["OrderPlaced"]}), "url"),
        (json!({"url": "https://localhost/", "eventTypes": ["OrderPlaced"]}), "url"),
        (json!({"url": PUBLIC, "eventTypes": ["OrderShipped"]}), "eventTypes"),
        (json!({"url": PUBLIC, "eventTypes": []}), "eventTypes"),
        (json!({"eventTypes": ["OrderPlaced"]}), "url"),
    ] {
        let response = api.handle(request("POST", "/webhooks", Some("operator-key"), Some(body.clone()))).await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(json_of(&response)["errors"][0]["field"], field, "{body}");
    }
    assert!(store.all().await.unwrap().is_empty());
}

fn subscription(id: &str, types: &[&str], active: bool) -> Subscription {
    Subscription {
        id: id.into(),
        url: PUBLIC.into(),
        event_types: types.iter().map(|t| t.to_string()).collect(),
        secret: format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(format!("secret-of-{id}"))),
        active,
        // Before the sample events happened (2026-11-28): a subscription gets only later events.
        created_at: "2026-11-01T00:00:00Z".into(),
    }
}

#[tokio::test]
async fn the_fanout_queues_one_delivery_per_matching_active_subscription() {
    let store = Arc::new(InMemorySubscriptions::default());
    for s in [
        subscription("a", &["OrderPlaced", "OrderBilled"], true),
        subscription("b", &["OrderPlaced"], true),
        subscription("c", &["OrderStatusChanged"], true),
        subscription("d", &["OrderPlaced"], false),
    ] {
        store.create(&s).await.unwrap();
    }
    let queue = Arc::new(InMemoryDeliveryQueue::default());
    let fanout: Harnessed<AnyEvent> = Harnessed::new("webhooks-fanout", Arc::new(Fanout::new(store, queue.clone())));
    assert!(fanout.failures(sqs_sample("webhooks/order-placed.sqs.json")).await.is_empty());
    let queued = queue.queued();
    let mut ids: Vec<&str> = queued.iter().map(|(id, _)| id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, vec!["a", "b"]);
    // Each delivery is the event as EventBridge delivers it: it reads back through the harness.
    let (event, _) = orderflow_harness::consumer::decode::<AnyEvent>(Some(&queued[0].1)).unwrap();
    assert!(matches!(event, AnyEvent::OrderPlaced(ref o) if o.order_id == "ord-7f3a2c"));
}

#[tokio::test]
async fn the_fanout_sends_an_event_to_no_subscription_created_after_it_happened() {
    // The sample event happened at 2026-11-28T10:00:00.120Z; repeated later (a redrive of the
    // fan-out's dead letters, a republish), it still reaches only the subscriptions of its time.
    let store = Arc::new(InMemorySubscriptions::default());
    let at = |id: &str, created_at: &str| Subscription {
        created_at: created_at.into(),
        ..subscription(id, &["OrderPlaced"], true)
    };
    for s in [
        at("before", "2026-11-28T10:00:00.119Z"),
        at("same-instant", "2026-11-28T10:00:00.120Z"),
        at("after", "2026-11-28T10:00:00.121Z"),
        at("other-offset", "2026-11-28T10:30:00+00:30"),
        at("unreadable", "yesterday"),
    ] {
        store.create(&s).await.unwrap();
    }
    let queue = Arc::new(InMemoryDeliveryQueue::default());
    let fanout: Harnessed<AnyEvent> = Harnessed::new("webhooks-fanout", Arc::new(Fanout::new(store, queue.clone())));
    assert!(fanout.failures(sqs_sample("webhooks/order-placed.sqs.json")).await.is_empty());
    let mut ids: Vec<String> = queue.queued().into_iter().map(|(id, _)| id).collect();
    ids.sort();
    // "other-offset" is 10:00:00 UTC, before the event; a time that does not read admits it.
    assert_eq!(ids, vec!["before", "other-offset", "same-instant", "unreadable"]);
}

/// A subscription store of which only the routes may be read, as the fan-out's IAM policy has it
/// (a scan of [`webhooks::subscriptions::ROUTE_ATTRIBUTES`] only).
struct RoutesOnly(InMemorySubscriptions);

#[async_trait]
impl SubscriptionStore for RoutesOnly {
    async fn create(&self, _: &Subscription) -> Result<(), orderflow_harness::StoreError> {
        panic!("the fan-out creates no subscription")
    }
    async fn get(&self, id: &str) -> Result<Option<Subscription>, orderflow_harness::StoreError> {
        panic!("the fan-out read subscription {id}, secret included")
    }
    async fn all(&self) -> Result<Vec<Subscription>, orderflow_harness::StoreError> {
        panic!("the fan-out read every subscription, secrets included")
    }
    async fn deactivate(&self, _: &str) -> Result<bool, orderflow_harness::StoreError> {
        panic!("the fan-out deactivates nothing")
    }
    async fn routes(&self) -> Result<Vec<webhooks::subscriptions::Route>, orderflow_harness::StoreError> {
        self.0.routes().await
    }
}

#[tokio::test]
async fn the_fanout_reads_routes_only_never_a_secret() {
    let inner = InMemorySubscriptions::default();
    inner.create(&subscription("a", &["OrderPlaced"], true)).await.unwrap();
    let queue = Arc::new(InMemoryDeliveryQueue::default());
    let fanout: Harnessed<AnyEvent> =
        Harnessed::new("webhooks-fanout", Arc::new(Fanout::new(Arc::new(RoutesOnly(inner)), queue.clone())));
    assert!(fanout.failures(sqs_sample("webhooks/order-placed.sqs.json")).await.is_empty());
    assert_eq!(queue.queued().len(), 1);
    let routes = webhooks::subscriptions::ROUTE_ATTRIBUTES;
    assert!(!routes.contains(&"secret") && !routes.contains(&"url"), "{routes:?}");
}

/// One request a subscriber got: its headers and body.
type Received = (Vec<(String, String)>, String);

/// A subscriber answering from a script, recording each request.
#[derive(Default)]
struct Subscriber {
    answers: Mutex<VecDeque<Result<Answer, String>>>,
    requests: Mutex<Vec<Received>>,
}

#[async_trait]
impl Poster for Subscriber {
    async fn post(&self, _: &Checked, headers: &[(&str, String)], body: &str) -> Result<Answer, String> {
        self.requests
            .lock()
            .unwrap()
            .push((headers.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(), body.to_string()));
        self.answers.lock().unwrap().pop_front().unwrap_or(Ok(Answer { status: 200, retry_after: None }))
    }
}

fn delivery_batch(subscription_id: &str) -> aws_lambda_events::event::sqs::SqsEvent {
    let body = sqs_sample("webhooks/order-placed.sqs.json").records[0].body.clone().unwrap();
    let mut batch = sqs_batch(vec![body]);
    let mut attribute = aws_lambda_events::event::sqs::SqsMessageAttribute::default();
    attribute.string_value = Some(subscription_id.into());
    attribute.data_type = Some("String".into());
    batch.records[0].message_attributes.insert(SUBSCRIPTION_ATTRIBUTE.into(), attribute);
    batch
}

fn delivery(store: Arc<InMemorySubscriptions>, subscriber: Arc<Subscriber>) -> Harnessed<AnyEvent> {
    let handler = Arc::new(Delivery::new(store, subscriber, false));
    let mut h = Harnessed::new("webhooks-delivery", handler.clone());
    h.consumer = h.consumer.with_scope_attribute(SUBSCRIPTION_ATTRIBUTE);
    h
}

#[tokio::test]
async fn a_delivery_is_signed_per_standard_webhooks_and_verifies_with_another_hmac() {
    let store = Arc::new(InMemorySubscriptions::default());
    let sub = subscription("a", &["OrderPlaced"], true);
    store.create(&sub).await.unwrap();
    let subscriber = Arc::new(Subscriber::default());
    let h = delivery(store.clone(), subscriber.clone());
    assert!(h.failures(delivery_batch("a")).await.is_empty());
    // The same event for another subscription is separate work; for the same one, a duplicate.
    store.create(&subscription("b", &["OrderPlaced"], true)).await.unwrap();
    assert!(h.failures(delivery_batch("b")).await.is_empty());
    assert!(h.failures(delivery_batch("a")).await.is_empty());
    let requests = subscriber.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2, "one per subscription, none twice");

    let (headers, body) = &requests[0];
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap();
    let (id, timestamp, signature) = (header("webhook-id"), header("webhook-timestamp"), header("webhook-signature"));
    let key_bytes = base64::engine::general_purpose::STANDARD.decode(sub.secret.trim_start_matches("whsec_")).unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key_bytes);
    let expected = ring::hmac::sign(&key, format!("{id}.{timestamp}.{body}").as_bytes());
    assert_eq!(signature, format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(expected.as_ref())));
    let payload: Value = serde_json::from_str(body).unwrap();
    assert_eq!(payload["type"], "OrderPlaced");
    assert_eq!(payload["data"]["orderId"], "ord-7f3a2c");
}

#[tokio::test]
async fn each_answer_of_a_subscriber_means_what_the_table_says() {
    let cases: Vec<(Result<Answer, String>, &str)> = vec![
        (Ok(Answer { status: 410, retry_after: None }), "deactivated"),
        (Ok(Answer { status: 429, retry_after: Some(Duration::from_secs(7)) }), "retry 7"),
        (Ok(Answer { status: 503, retry_after: None }), "retry 5"),
        (Err("timed out after 5 s".into()), "retry 5"),
        (Ok(Answer { status: 400, retry_after: None }), "dead-lettered"),
    ];
    for (answer, expected) in cases {
        let store = Arc::new(InMemorySubscriptions::default());
        store.create(&subscription("a", &["OrderPlaced"], true)).await.unwrap();
        let subscriber = Arc::new(Subscriber::default());
        subscriber.answers.lock().unwrap().push_back(answer.clone());
        let h = delivery(store.clone(), subscriber);
        let failures = h.failures(delivery_batch("a")).await;
        let got = if !store.get("a").await.unwrap().unwrap().active {
            "deactivated".to_string()
        } else if let Some((_, after)) = h.delays.delays().first() {
            format!("retry {}", after.as_secs())
        } else if !h.dead_letters.letters().is_empty() {
            "dead-lettered".to_string()
        } else {
            "delivered".to_string()
        };
        assert_eq!(got, expected, "{answer:?}");
        assert_eq!(failures.is_empty(), !expected.starts_with("retry"), "{answer:?}");
    }
}

#[tokio::test]
async fn an_internal_or_inactive_target_gets_nothing() {
    let store = Arc::new(InMemorySubscriptions::default());
    let mut internal = subscription("a", &["OrderPlaced"], true);
    internal.url = "https://10.0.0.1/hook".into();
    store.create(&internal).await.unwrap();
    store.create(&subscription("b", &["OrderPlaced"], false)).await.unwrap();
    let subscriber = Arc::new(Subscriber::default());
    let h = delivery(store, subscriber.clone());
    assert!(h.failures(delivery_batch("a")).await.is_empty());
    assert!(h.failures(delivery_batch("b")).await.is_empty());
    assert!(subscriber.requests.lock().unwrap().is_empty());
    assert!(h.dead_letters.letters()[0].reason.contains("a private address"), "{:?}", h.dead_letters.letters());
}

#[tokio::test]
async fn a_lookup_that_fails_or_times_out_is_unresolved_not_refused() {
    // `.invalid` never resolves (RFC 6761); with a zero timeout the lookup either fails first or is
    // cut off: unresolved either way, never refused.
    let timed_out = guard::check_within("https://subscriber.invalid/hook", false, Duration::ZERO).await.unwrap_err();
    assert!(matches!(timed_out, guard::Refusal::Unresolved(_)), "{timed_out:?}");
    let failed = guard::check("https://subscriber.invalid/hook", false).await.unwrap_err();
    assert!(matches!(failed, guard::Refusal::Unresolved(_)), "{failed:?}");
    assert!(guard::check("https://10.0.0.1/", false).await.unwrap_err().is_permanent());
}

#[tokio::test]
async fn a_target_that_does_not_resolve_is_retried_after_a_delay_not_dead_lettered() {
    let store = Arc::new(InMemorySubscriptions::default());
    let mut sub = subscription("a", &["OrderPlaced"], true);
    sub.url = "https://subscriber.invalid/hook".into();
    store.create(&sub).await.unwrap();
    let subscriber = Arc::new(Subscriber::default());
    let h = delivery(store, subscriber.clone());
    assert_eq!(h.failures(delivery_batch("a")).await, vec!["m0"], "handed back to SQS");
    assert!(h.dead_letters.letters().is_empty(), "DNS trouble is not a reason to give up");
    assert_eq!(h.delays.delays().len(), 1);
    assert_eq!(h.delays.delays()[0].1, Duration::from_secs(5), "the growing delay's first step");
    assert!(subscriber.requests.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_rotated_operator_key_works_at_once_and_the_old_one_stops_with_the_secrets_age() {
    use orderflow_harness::clock::ManualClock;
    use orderflow_harness::secret::{InMemorySecret, RotatingSecret};
    let secret_store = InMemorySecret::new("key-1");
    let clock = Arc::new(ManualClock::at(std::time::SystemTime::now()));
    let key = RotatingSecret::load_with_clock(
        "operator key",
        Box::new(secret_store.clone()),
        |s: &str| Ok(s.to_string()),
        Duration::from_secs(300),
        clock.clone(),
    )
    .await
    .unwrap();
    let api = WebhooksApi::rotating(Arc::new(InMemorySubscriptions::default()), Arc::new(key), false);
    let status = |key: &'static str| {
        let api = &api;
        async move { api.handle(request("GET", "/webhooks", Some(key), None)).await.status().as_u16() }
    };
    assert_eq!(status("key-1").await, 200);
    secret_store.set("key-2");
    assert_eq!(status("key-2").await, 200, "the new key is read at its first use");
    assert_eq!(status("key-1").await, 403, "and replaces the old one");
    assert_eq!(secret_store.reads(), 2);
    clock.advance(Duration::from_millis(500));
    assert_eq!(status("guess").await, 403);
    assert_eq!(secret_store.reads(), 2, "a wrong key reads the secret at most once a second");
    assert_eq!(api.handle(request("GET", "/webhooks", None, None)).await.status(), 403);
    assert_eq!(secret_store.reads(), 2, "no key, no read");
}

#[test]
fn a_subscription_item_that_does_not_read_is_passed_by_not_fatal_to_every_route() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use std::collections::HashMap;
    use webhooks::subscriptions::route_of;
    let item = |id: &str, active: AttributeValue| {
        HashMap::from([
            ("id".to_string(), AttributeValue::S(id.into())),
            ("eventTypes".to_string(), AttributeValue::L(vec![AttributeValue::S("OrderPlaced".into())])),
            ("active".to_string(), active),
            ("createdAt".to_string(), AttributeValue::S("2026-12-01T00:00:00Z".into())),
        ])
    };
    let good = route_of(&item("sub-1", AttributeValue::Bool(true))).expect("reads");
    assert_eq!((good.id.as_str(), good.active, good.event_types), ("sub-1", true, vec!["OrderPlaced".to_string()]));
    // A hand-edited item: `active` as a string.
    assert!(route_of(&item("sub-2", AttributeValue::S("yes".into()))).is_none());
}
