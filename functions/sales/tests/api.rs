//! The orders HTTP API, GIVEN / WHEN / THEN over the in-memory order store and publisher, fed the
//! API Gateway samples in `events-samples/sales-api/`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use lambda_http::{Body, Request, Response};
use orderflow_contracts::{OrderPlaced, OrderState, OrderStatus};
use orderflow_harness::publisher::{InMemoryPublisher, PublishError};
use orderflow_harness::testing::sample_text;
use orderflow_harness::{EventPublisher, OutboundEvent};
use pretty_assertions::assert_eq;
use sales::api::{order_id_for, SalesApi};
use sales::orders::{InMemoryOrderStore, OrderStore};
use serde_json::{json, Value};

fn request(sample: &str) -> Request {
    lambda_http::request::from_str(&sample_text(sample)).expect("an API Gateway request")
}

fn with_body(sample: &str, body: Value) -> Request {
    let mut event: Value = serde_json::from_str(&sample_text(sample)).unwrap();
    event["body"] = Value::String(body.to_string());
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

fn sample_body() -> Value {
    let event: Value = serde_json::from_str(&sample_text("sales-api/post-order.http.json")).unwrap();
    serde_json::from_str(event["body"].as_str().unwrap()).unwrap()
}

fn json_of(response: &Response<Body>) -> Value {
    serde_json::from_slice(response.body().as_ref()).expect("a JSON body")
}

fn fields(response: &Response<Body>) -> Vec<String> {
    json_of(response)["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap().to_string()).collect()
}

/// Fails the first `fail_first` publishes, like EventBridge throttling.
#[derive(Default)]
struct FlakyPublisher {
    inner: InMemoryPublisher,
    fail_first: usize,
    calls: AtomicUsize,
}

#[async_trait]
impl EventPublisher for FlakyPublisher {
    async fn publish(&self, events: Vec<OutboundEvent>) -> Result<(), PublishError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.fail_first {
            return Err(PublishError::NotPublished { failed: vec![], total: events.len(), attempts: 4 });
        }
        self.inner.publish(events).await
    }
}

struct Rig {
    orders: Arc<InMemoryOrderStore>,
    publisher: Arc<FlakyPublisher>,
    api: SalesApi,
}

fn rig(fail_first: usize) -> Rig {
    let orders = Arc::new(InMemoryOrderStore::default());
    let publisher = Arc::new(FlakyPublisher { fail_first, ..FlakyPublisher::default() });
    let api = SalesApi::new(orders.clone(), publisher.clone());
    Rig { orders, publisher, api }
}

#[tokio::test]
async fn the_post_sample_places_an_order_and_announces_it() {
    let rig = rig(0);
    let response = rig.api.handle(request("sales-api/post-order.http.json")).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-correlation-id"], "c0ffee00-1111-4222-8333-444455556666");
    let order: OrderState = serde_json::from_value(json_of(&response)).unwrap();
    assert_eq!(order.order_id, order_id_for(Some("3f0c9a4e-5b1d-4c8e-9f2a-7d6b5e4c3a21")));
    assert_eq!(response.headers()["location"], format!("/orders/{}", order.order_id).as_str());
    assert_eq!((order.status, order.version), (OrderStatus::Placed, 1));
    assert_eq!(order.totals.subtotal_minor, 2 * 1999 + 1250);
    assert_eq!(order.totals.total_minor, 2 * 1999 + 1250 + 495);

    let stored = rig.orders.get(&order.order_id).await.unwrap().expect("stored");
    assert!(stored.published);
    let placed = rig.publisher.inner.envelopes::<OrderPlaced>();
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0].data.order_id, order.order_id);
    assert_eq!(placed[0].data.totals, order.totals);
    assert_eq!(placed[0].metadata.correlation_id, "c0ffee00-1111-4222-8333-444455556666");
}

#[tokio::test]
async fn the_invalid_sample_is_refused_naming_every_field_and_nothing_happens() {
    let rig = rig(0);
    let response = rig.api.handle(request("sales-api/post-order-invalid.http.json")).await;
    assert_eq!(response.status(), 400);
    assert_eq!(fields(&response), vec!["customer.email", "customer.phone", "lines[0].quantity", "currency"]);
    let body = json_of(&response);
    assert_eq!(body["errors"][2]["message"], "must be a positive integer");
    assert!(body["errors"][3]["message"].as_str().unwrap().contains("unknown currency `XYZ`"));
    assert!(rig.orders.all().is_empty());
    assert!(rig.publisher.inner.published().is_empty());
}

#[tokio::test]
async fn each_rule_names_its_field() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("lines", json!([]), "lines"),
        ("lines", json!([{"sku": "A", "quantity": -1, "unitPriceMinor": 1}]), "lines[0].quantity"),
        ("lines", json!([{"sku": "", "quantity": 1, "unitPriceMinor": 1}]), "lines[0].sku"),
        ("lines", json!([{"sku": "A", "quantity": 1, "unitPriceMinor": -5}]), "lines[0].unitPriceMinor"),
        ("lines", json!([{"sku": "A", "quantity": "two", "unitPriceMinor": 1}]), "lines[0].quantity"),
        ("currency", json!("DOGE"), "currency"),
        ("shippingMinor", json!(-1), "shippingMinor"),
    ];
    for (key, value, field) in cases {
        let rig = rig(0);
        let mut body = sample_body();
        body[key] = value.clone();
        let response = rig.api.handle(with_body("sales-api/post-order-invalid.http.json", body)).await;
        assert_eq!(response.status(), 400, "{key}={value}");
        assert_eq!(fields(&response), vec![field], "{key}={value}");
    }
    for (path, value, field) in [
        ("email", json!("ada@@example"), "customer.email"),
        ("phone", json!("+0123"), "customer.phone"),
        ("name", json!("  "), "customer.name"),
    ] {
        let rig = rig(0);
        let mut body = sample_body();
        body["customer"][path] = value;
        let response = rig.api.handle(with_body("sales-api/post-order-invalid.http.json", body)).await;
        assert_eq!(fields(&response), vec![field]);
    }
    let rig = rig(0);
    let mut body = sample_body();
    body["shippingAddress"]["country"] = json!("Britain");
    body.as_object_mut().unwrap().remove("lines");
    let response = rig.api.handle(with_body("sales-api/post-order-invalid.http.json", body)).await;
    assert_eq!(fields(&response), vec!["lines", "shippingAddress.country"]);
}

#[tokio::test]
async fn malformed_json_is_a_400_naming_the_body() {
    let rig = rig(0);
    let mut event: Value = serde_json::from_str(&sample_text("sales-api/post-order-invalid.http.json")).unwrap();
    event["body"] = json!("{\"customer\": ");
    let response = rig.api.handle(lambda_http::request::from_str(&event.to_string()).unwrap()).await;
    assert_eq!(response.status(), 400);
    assert_eq!(fields(&response), vec!["body"]);
    assert!(json_of(&response)["errors"][0]["message"].as_str().unwrap().contains("not valid JSON"));
}

#[tokio::test]
async fn a_retried_post_with_the_same_key_returns_the_first_order() {
    let rig = rig(0);
    let first = rig.api.handle(request("sales-api/post-order.http.json")).await;
    let again = rig.api.handle(request("sales-api/post-order.http.json")).await;
    assert_eq!((first.status().as_u16(), again.status().as_u16()), (201, 200));
    assert_eq!(json_of(&first)["orderId"], json_of(&again)["orderId"]);
    assert_eq!(rig.orders.all().len(), 1);
    assert_eq!(rig.publisher.inner.envelopes::<OrderPlaced>().len(), 1, "announced once");

    let mut other = sample_body();
    other["lines"][0]["quantity"] = json!(3);
    let mut event: Value = serde_json::from_str(&sample_text("sales-api/post-order.http.json")).unwrap();
    event["body"] = Value::String(other.to_string());
    let conflict = rig.api.handle(lambda_http::request::from_str(&event.to_string()).unwrap()).await;
    assert_eq!(conflict.status(), 422);
    assert_eq!(fields(&conflict), vec!["Idempotency-Key"]);
    assert_eq!(rig.orders.all().len(), 1);
}

#[tokio::test]
async fn posts_without_a_key_place_separate_orders() {
    let rig = rig(0);
    let body = sample_body();
    let a = rig.api.handle(with_body("sales-api/post-order-invalid.http.json", body.clone())).await;
    let b = rig.api.handle(with_body("sales-api/post-order-invalid.http.json", body)).await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (201, 201));
    assert_ne!(json_of(&a)["orderId"], json_of(&b)["orderId"]);
    assert_eq!(rig.publisher.inner.envelopes::<OrderPlaced>().len(), 2);
}

#[tokio::test]
async fn a_failed_announcement_is_a_503_and_the_retry_announces_the_same_event() {
    let rig = rig(1);
    let first = rig.api.handle(request("sales-api/post-order.http.json")).await;
    assert_eq!(first.status(), 503);
    assert!(json_of(&first)["errors"][0]["message"].as_str().unwrap().contains("same Idempotency-Key"));
    let stored = rig.orders.all();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].published);

    let retry = rig.api.handle(request("sales-api/post-order.http.json")).await;
    assert_eq!(retry.status(), 200);
    assert!(rig.orders.all()[0].published);
    let placed = rig.publisher.inner.envelopes::<OrderPlaced>();
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0].metadata.correlation_id, "c0ffee00-1111-4222-8333-444455556666");
}

#[tokio::test]
async fn get_returns_the_order_with_its_history_or_404() {
    let rig = rig(0);
    let placed = rig.api.handle(request("sales-api/post-order.http.json")).await;
    let id = json_of(&placed)["orderId"].as_str().unwrap().to_string();

    let mut event: Value = serde_json::from_str(&sample_text("sales-api/get-order.http.json")).unwrap();
    event["rawPath"] = json!(format!("/orders/{id}"));
    event["requestContext"]["http"]["path"] = json!(format!("/orders/{id}"));
    event["pathParameters"]["orderId"] = json!(id);
    let response = rig.api.handle(lambda_http::request::from_str(&event.to_string()).unwrap()).await;
    assert_eq!(response.status(), 200);
    let order: OrderState = serde_json::from_value(json_of(&response)).unwrap();
    assert_eq!(order.order_id, id);
    assert_eq!(order.history.len(), 1);
    assert_eq!(order.history[0].status, OrderStatus::Placed);

    let missing = rig.api.handle(request("sales-api/get-order.http.json")).await;
    assert_eq!(missing.status(), 404);
    assert_eq!(fields(&missing), vec!["orderId"]);
}

#[tokio::test]
async fn a_replay_with_the_fields_in_another_order_is_the_same_request() {
    let rig = rig(0);
    let first = rig.api.handle(request("sales-api/post-order.http.json")).await;
    // The same order, keys written in reverse order.
    let mut event: Value = serde_json::from_str(&sample_text("sales-api/post-order.http.json")).unwrap();
    let body = sample_body();
    let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    keys.sort();
    keys.reverse();
    let text =
        format!("{{{}}}", keys.iter().map(|k| format!("{:?}:{}", k, body[k.as_str()])).collect::<Vec<_>>().join(","));
    assert!(text.starts_with("{\"shippingMinor\""), "{text}");
    event["body"] = Value::String(text);
    let replay = rig.api.handle(lambda_http::request::from_str(&event.to_string()).unwrap()).await;
    assert_eq!((first.status().as_u16(), replay.status().as_u16()), (201, 200));
    assert_eq!(json_of(&first)["orderId"], json_of(&replay)["orderId"]);
}
