//! The orders HTTP API, GIVEN / WHEN / THEN over the in-memory order store and catalogue, fed the
//! API Gateway samples in `events-samples/sales-api/`.

use std::sync::Arc;

use lambda_http::{Body, Request, Response};
use orderflow_contracts::{Currency, Envelope, OrderPlaced, OrderState, OrderStatus, TraceContext, MAX_AMOUNT_MINOR};
use orderflow_harness_testing::sample_text;
use orderflow_order_cache::{InMemoryOrderCache, OrderCache};
use pretty_assertions::assert_eq;
use sales::api::SalesApi;
use sales::callers::InMemoryCallerRecords;
use sales::catalogue::{InMemoryCatalogue, Product};
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

/// A sample's event with these claims changed (an empty value removes the claim).
fn signed_in(sample: &str, claims: &[(&str, &str)]) -> Value {
    let mut event: Value = serde_json::from_str(&sample_text(sample)).unwrap();
    let map = event["requestContext"]["authorizer"]["jwt"]["claims"].as_object_mut().unwrap();
    for (name, value) in claims {
        if value.is_empty() {
            map.remove(*name);
        } else {
            map.insert(name.to_string(), json!(value));
        }
    }
    event
}

fn req(event: &Value) -> Request {
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

struct Rig {
    orders: Arc<InMemoryOrderStore>,
    api: SalesApi,
}

/// The shop of the samples (`InMemoryCatalogue::of_the_samples`); shipping 4.95.
fn rig() -> Rig {
    let orders = Arc::new(InMemoryOrderStore::default());
    let catalogue = Arc::new(InMemoryCatalogue::of_the_samples());
    let api = SalesApi::new(orders.clone(), Arc::new(InMemoryCallerRecords::default()), catalogue, 495);
    Rig { orders, api }
}

/// The samples' shop without the ring: BOOK-001 at 19.99 and MUG-002 at 12.50 (GBP).
fn books_and_mugs() -> Arc<InMemoryCatalogue> {
    Arc::new(InMemoryCatalogue::with(&[("BOOK-001", 1999, Currency::GBP), ("MUG-002", 1250, Currency::GBP)]))
}

/// `GET /orders/{id}`, from the sample.
fn get_request(id: &str) -> Request {
    let mut event: Value = serde_json::from_str(&sample_text("sales-api/get-order.http.json")).unwrap();
    event["rawPath"] = json!(format!("/orders/{id}"));
    event["requestContext"]["http"]["path"] = json!(format!("/orders/{id}"));
    event["pathParameters"]["orderId"] = json!(id);
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

fn announced(rig: &Rig) -> Vec<Envelope<OrderPlaced>> {
    rig.orders
        .announcements()
        .into_iter()
        .filter(|e| e.detail_type == "OrderPlaced")
        .map(|e| serde_json::from_str(&e.detail).unwrap())
        .collect()
}

#[tokio::test]
async fn the_post_sample_places_an_order_and_announces_it() {
    let rig = rig();
    let response = rig.api.handle(request("sales-api/post-order.http.json")).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-correlation-id"], "c0ffee00-1111-4222-8333-444455556666");
    let order: OrderState = serde_json::from_value(json_of(&response)).unwrap();
    assert_eq!(uuid::Uuid::parse_str(&order.order_id).unwrap().get_version_num(), 4, "a random id");
    // The customer is the caller the authorizer verified, with the sign-in's contacts.
    assert_eq!(order.customer.customer_id, "5f1c2a9e-7b3d-4e8f-a1c2-3d4e5f6a7b8c");
    assert_eq!(
        (order.customer.name.as_str(), order.customer.email.as_str(), order.customer.phone.as_str()),
        ("Ada Lovelace", "ada@example.com", "+447700900123")
    );
    assert_eq!(response.headers()["location"], format!("/orders/{}", order.order_id).as_str());
    assert_eq!((order.status, order.version), (OrderStatus::Placed, 1));
    assert_eq!(order.totals.subtotal_minor, 2 * 1999 + 1250);
    assert_eq!(order.totals.total_minor, 2 * 1999 + 1250 + 495);

    assert_eq!(order.lines[0].unit_price_minor, 1999, "the catalogue's price");
    rig.orders.get(&order.order_id).await.unwrap().expect("stored");
    let placed = announced(&rig);
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0].data.order_id, order.order_id);
    assert_eq!(placed[0].data.totals, order.totals);
    assert_eq!(placed[0].metadata.correlation_id, "c0ffee00-1111-4222-8333-444455556666");
}

#[tokio::test]
async fn the_invalid_sample_is_refused_naming_every_field_and_nothing_happens() {
    let rig = rig();
    let response = rig.api.handle(request("sales-api/post-order-invalid.http.json")).await;
    assert_eq!(response.status(), 400);
    assert_eq!(fields(&response), vec!["customer.email", "customer.phone", "lines[0].quantity", "currency"]);
    let body = json_of(&response);
    assert_eq!(body["errors"][2]["message"], "must be a positive integer");
    assert!(body["errors"][3]["message"].as_str().unwrap().contains("unknown currency `XYZ`"));
    assert!(rig.orders.all().is_empty());
    assert!(rig.orders.announcements().is_empty());
}

#[tokio::test]
async fn each_rule_names_its_field() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("lines", json!([]), "lines"),
        ("lines", json!([{"sku": "BOOK-001", "quantity": -1}]), "lines[0].quantity"),
        ("lines", json!([{"sku": "BOOK-001", "quantity": 10_001}]), "lines[0].quantity"),
        ("lines", json!([{"sku": "", "quantity": 1}]), "lines[0].sku"),
        ("lines", json!([{"sku": "book-001", "quantity": 1}]), "lines[0].sku"),
        ("lines", json!([{"sku": "BOOK-001", "quantity": 1, "unitPriceMinor": 1}]), "lines[0].unitPriceMinor"),
        ("lines", json!([{"sku": "BOOK-001", "quantity": "two"}]), "lines[0].quantity"),
        ("lines", json!([{"sku": "BOOK-001", "quantity": 1}, {"sku": "NOPE-1", "quantity": 1}]), "lines[1].sku"),
        ("lines", json!([{"sku": "RING-9", "quantity": 1}]), "lines[0].sku"),
        ("currency", json!("DOGE"), "currency"),
        ("shippingMinor", json!(0), "shippingMinor"),
    ];
    for (key, value, field) in cases {
        let rig = rig();
        let mut body = sample_body();
        body[key] = value.clone();
        let response = rig.api.handle(with_body("sales-api/post-order-invalid.http.json", body)).await;
        assert_eq!(response.status(), 400, "{key}={value}");
        assert_eq!(fields(&response), vec![field], "{key}={value}");
    }
    for (path, value, field) in [
        ("email", json!("ada@@example"), "customer.email"),
        ("phone", json!("+0123"), "customer.phone"),
        ("customerId", json!("cus-1"), "customer.customerId"),
        ("name", json!(7), "customer.name"),
    ] {
        let rig = rig();
        let mut body = sample_body();
        body["customer"][path] = value;
        let response = rig.api.handle(with_body("sales-api/post-order-invalid.http.json", body)).await;
        assert_eq!(fields(&response), vec![field]);
    }
    let rig = rig();
    let mut body = sample_body();
    body["shippingAddress"]["country"] = json!("Britain");
    body.as_object_mut().unwrap().remove("lines");
    let response = rig.api.handle(with_body("sales-api/post-order-invalid.http.json", body)).await;
    assert_eq!(fields(&response), vec!["lines", "shippingAddress.country"]);
}

#[tokio::test]
async fn malformed_json_is_a_400_naming_the_body() {
    let rig = rig();
    let mut event: Value = serde_json::from_str(&sample_text("sales-api/post-order-invalid.http.json")).unwrap();
    event["body"] = json!("{\"customer\": ");
    let response = rig.api.handle(lambda_http::request::from_str(&event.to_string()).unwrap()).await;
    assert_eq!(response.status(), 400);
    assert_eq!(fields(&response), vec!["body"]);
    assert!(json_of(&response)["errors"][0]["message"].as_str().unwrap().contains("not valid JSON"));
}

#[tokio::test]
async fn a_retried_post_with_the_same_key_returns_the_first_order() {
    let rig = rig();
    let first = rig.api.handle(request("sales-api/post-order.http.json")).await;
    let again = rig.api.handle(request("sales-api/post-order.http.json")).await;
    assert_eq!((first.status().as_u16(), again.status().as_u16()), (201, 200));
    assert_eq!(json_of(&first)["orderId"], json_of(&again)["orderId"]);
    assert_eq!(rig.orders.all().len(), 1);
    assert_eq!(announced(&rig).len(), 1, "announced once");

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
    let rig = rig();
    let body = sample_body();
    let a = rig.api.handle(with_body("sales-api/post-order-invalid.http.json", body.clone())).await;
    let b = rig.api.handle(with_body("sales-api/post-order-invalid.http.json", body)).await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (201, 201));
    assert_ne!(json_of(&a)["orderId"], json_of(&b)["orderId"]);
    assert_eq!(announced(&rig).len(), 2);
}

#[tokio::test]
async fn the_issue_6_amounts_are_refused_naming_the_field_and_nothing_is_stored() {
    // The client cannot set a price at all ...
    let rig = rig();
    let mut body = sample_body();
    body["lines"] = json!([{"sku": "BOOK-001", "quantity": 1000, "unitPriceMinor": 9_223_372_036_854_775_807i64}]);
    let response = rig.api.handle(with_body("sales-api/post-order-invalid.http.json", body)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(fields(&response), vec!["lines[0].unitPriceMinor"]);

    // ... and an order the shop's own prices would push past the cap is refused, not wrapped.
    let rig = self::rig();
    rig.api.handle(request("sales-api/post-order.http.json")).await;
    let catalogue = Arc::new(InMemoryCatalogue::default());
    catalogue.put(Product {
        sku: "GOLD-1".into(),
        name: "Gold".into(),
        unit_price_minor: MAX_AMOUNT_MINOR / 1000,
        currency: Currency::GBP,
    });
    let api = SalesApi::new(rig.orders.clone(), Arc::new(InMemoryCallerRecords::default()), catalogue, 495);
    let mut body = sample_body();
    body["lines"] = json!([{"sku": "GOLD-1", "quantity": 10_000}]);
    let response = api.handle(with_body("sales-api/post-order-invalid.http.json", body)).await;
    assert_eq!(response.status(), 400);
    assert_eq!(fields(&response), vec!["lines[0].quantity"]);
    assert!(json_of(&response)["errors"][0]["message"].as_str().unwrap().contains("maximum amount"));
    assert_eq!(rig.orders.all().len(), 1, "only the earlier order");
}

#[tokio::test]
async fn the_order_and_its_announcement_are_one_write() {
    // Whatever happens after the write, the stored order carries its OrderPlaced: the relay
    // publishes it from the table's stream, with an id derived from the order.
    let rig = rig();
    let response = rig.api.handle(request("sales-api/post-order.http.json")).await;
    let id = json_of(&response)["orderId"].as_str().unwrap().to_string();
    let announcements = rig.orders.announcements();
    assert_eq!(announcements.len(), 1);
    let placed: Envelope<OrderPlaced> = serde_json::from_str(&announcements[0].detail).unwrap();
    assert_eq!(placed.data.order_id, id);
    assert_eq!(announcements[0].event_id, placed.metadata.event_id.to_string());
    let stored = rig.orders.get(&id).await.unwrap().unwrap();
    assert_eq!(
        sales::api::order_placed(&stored, TraceContext::new_root()).event_id,
        announcements[0].event_id,
        "stable event id"
    );
}

#[tokio::test]
async fn get_returns_the_order_with_its_history_or_404() {
    let rig = rig();
    let placed = rig.api.handle(request("sales-api/post-order.http.json")).await;
    let id = json_of(&placed)["orderId"].as_str().unwrap().to_string();

    let response = rig.api.handle(get_request(&id)).await;
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
    let rig = rig();
    let first = rig.api.handle(request("sales-api/post-order.http.json")).await;
    // The same order, keys written in reverse order.
    let mut event: Value = serde_json::from_str(&sample_text("sales-api/post-order.http.json")).unwrap();
    let body = sample_body();
    let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    keys.sort();
    keys.reverse();
    let text =
        format!("{{{}}}", keys.iter().map(|k| format!("{:?}:{}", k, body[k.as_str()])).collect::<Vec<_>>().join(","));
    assert!(text.starts_with("{\"shippingAddress\""), "{text}");
    event["body"] = Value::String(text);
    let replay = rig.api.handle(lambda_http::request::from_str(&event.to_string()).unwrap()).await;
    assert_eq!((first.status().as_u16(), replay.status().as_u16()), (201, 200));
    assert_eq!(json_of(&first)["orderId"], json_of(&replay)["orderId"]);
}

fn x_cache(response: &Response<Body>) -> &str {
    response.headers().get("x-cache").and_then(|v| v.to_str().ok()).unwrap_or_default()
}

#[tokio::test]
async fn get_reads_through_the_cache_and_falls_back_to_the_table_when_it_is_down() {
    let orders = Arc::new(InMemoryOrderStore::default());
    let cache = Arc::new(InMemoryOrderCache::default());
    let catalogue = books_and_mugs();
    let api = SalesApi::new(orders.clone(), Arc::new(InMemoryCallerRecords::default()), catalogue, 495)
        .with_cache(cache.clone());
    let placed = api.handle(request("sales-api/post-order.http.json")).await;
    let id = json_of(&placed)["orderId"].as_str().unwrap().to_string();

    // A miss reads the table and fills the cache; the next read is a hit with the same body.
    let miss = api.handle(get_request(&id)).await;
    assert_eq!((miss.status().as_u16(), x_cache(&miss)), (200, "miss"));
    assert_eq!(cache.cached(&id).map(|o| o.version), Some(1));
    let hit = api.handle(get_request(&id)).await;
    assert_eq!((hit.status().as_u16(), x_cache(&hit)), (200, "hit"));
    assert_eq!(json_of(&hit), json_of(&miss));

    // What the cache consumer wrote (a newer version) is what a hit answers.
    let mut newer = cache.cached(&id).unwrap();
    newer.version = 2;
    newer.status = OrderStatus::ReadyToShip;
    cache.put_if_newer(&newer).await.unwrap();
    assert_eq!(json_of(&api.handle(get_request(&id)).await)["status"], "ReadyToShip");

    // The cache down: the table answers, and a missing order is still a 404.
    cache.set_down(true);
    let bypass = api.handle(get_request(&id)).await;
    assert_eq!((bypass.status().as_u16(), x_cache(&bypass)), (200, "bypass"));
    assert_eq!(json_of(&bypass)["orderId"], id.as_str());
    assert_eq!(api.handle(get_request("nope")).await.status(), 404);
}

#[tokio::test]
async fn once_the_cached_order_expires_a_read_refills_the_cache() {
    use orderflow_harness::clock::ManualClock;
    let orders = Arc::new(InMemoryOrderStore::default());
    let clock = Arc::new(ManualClock::at(std::time::SystemTime::now()));
    let cache = Arc::new(InMemoryOrderCache::new(std::time::Duration::from_secs(86_400), clock.clone()));
    let catalogue = books_and_mugs();
    let api = SalesApi::new(orders.clone(), Arc::new(InMemoryCallerRecords::default()), catalogue, 495)
        .with_cache(cache.clone());
    let placed = api.handle(request("sales-api/post-order.http.json")).await;
    let id = json_of(&placed)["orderId"].as_str().unwrap().to_string();
    assert_eq!(x_cache(&api.handle(get_request(&id)).await), "miss");
    assert_eq!(x_cache(&api.handle(get_request(&id)).await), "hit");

    // A day later the order key has expired (its version key lives 15 days): one miss refills it.
    clock.advance(std::time::Duration::from_secs(86_401));
    assert_eq!(x_cache(&api.handle(get_request(&id)).await), "miss");
    assert_eq!(x_cache(&api.handle(get_request(&id)).await), "hit", "the fill after expiry was stored");
}

/// A POST of `body` (raw text) with these headers replacing the sample's.
fn raw_post(body: &str, headers: &[(&str, &str)]) -> Request {
    let mut event: Value = serde_json::from_str(&sample_text("sales-api/post-order.http.json")).unwrap();
    event["body"] = json!(body);
    for (name, value) in headers {
        event["headers"][*name] = json!(value);
    }
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

#[tokio::test]
async fn hostile_bodies_are_refused_with_the_status_and_field_that_say_why_and_nothing_is_stored() {
    let rig = rig();
    let body = sample_body().to_string();
    // Not JSON by its content type: 415, whatever the body.
    let response = rig.api.handle(raw_post(&body, &[("content-type", "text/plain")])).await;
    assert_eq!((response.status().as_u16(), fields(&response)), (415, vec!["Content-Type".to_string()]));
    // Over the limit: 413, before parsing.
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(sales::validation::MAX_BODY_BYTES));
    let response = rig.api.handle(raw_post(&huge, &[])).await;
    assert_eq!((response.status().as_u16(), fields(&response)), (413, vec!["body".to_string()]));
    // A key that is not printable ASCII is refused, not taken for no key.
    let response = rig.api.handle(raw_post(&body, &[("idempotency-key", "clé-1")])).await;
    assert_eq!((response.status().as_u16(), fields(&response)), (400, vec!["Idempotency-Key".to_string()]));
    // Unknown fields, at every level, named.
    let mut extra = sample_body();
    extra["coupon"] = json!("FREE");
    extra["customer"]["role"] = json!("admin");
    extra["lines"][0]["discount"] = json!(100);
    extra["shippingAddress"]["gate"] = json!("B");
    let response = rig.api.handle(with_body("sales-api/post-order.http.json", extra)).await;
    assert_eq!(response.status(), 400);
    let mut named = fields(&response);
    named.sort();
    assert_eq!(named, vec!["coupon", "customer.role", "lines[0].discount", "shippingAddress.gate"]);
    // Control characters and bidirectional overrides in text.
    for (path, value, field) in [
        (["customer", "name"], "Ada\r\nBcc: x@evil.example", "customer.name"),
        (["shippingAddress", "line1"], "12 Analytical Row\u{202E}woR", "shippingAddress.line1"),
        (["shippingAddress", "city"], "Lon\u{2066}don", "shippingAddress.city"),
    ] {
        let mut bad = sample_body();
        bad[path[0]][path[1]] = json!(value);
        let response = rig.api.handle(with_body("sales-api/post-order.http.json", bad)).await;
        assert_eq!((response.status().as_u16(), fields(&response)), (400, vec![field.to_string()]), "{value:?}");
    }
    // One plain address, nothing else: an identity provider's odd email is not sent to either.
    for email in [
        "\"Ada\r\nBcc: x@evil\" <ada@example.com>",
        "Ada <ada@example.com>",
        "a@x.com, b@y.com <c@z.com>",
        "a@x.com,b@y.com",
        "root@localhost",
        "x@[10.0.0.1]",
        "\"quoted local\"@example.com",
        "ada@example.com\n",
        "ada..lovelace@example.com",
        "ada@-example.com",
        "ada@example.c0m",
    ] {
        let response = rig.api.handle(req(&signed_in("sales-api/post-order.http.json", &[("email", email)]))).await;
        assert_eq!(
            (response.status().as_u16(), fields(&response)),
            (403, vec!["Authorization".to_string()]),
            "{email:?}"
        );
    }
    for email in ["ada@example.com", "ada.lovelace+orders@mail.example.co.uk", "o'brien@example.ie"] {
        assert!(sales::validation::is_plain_email(email), "{email}");
    }
    assert!(rig.orders.all().is_empty() && rig.orders.announcements().is_empty());
}

/// An order store that must not be asked anything.
struct Unasked;

#[async_trait::async_trait]
impl OrderStore for Unasked {
    async fn create(
        &self,
        _: &sales::orders::StoredOrder,
        _: &orderflow_harness::OutboundEvent,
    ) -> Result<sales::orders::Created, orderflow_harness::StoreError> {
        panic!("the store was asked to create")
    }
    async fn get(&self, id: &str) -> Result<Option<sales::orders::StoredOrder>, orderflow_harness::StoreError> {
        panic!("the store was asked for {id}")
    }
    async fn change_status(
        &self,
        _: &OrderState,
        _: u64,
        _: &[orderflow_harness::OutboundEvent],
    ) -> Result<sales::orders::Saved, orderflow_harness::StoreError> {
        panic!("the store was asked to change a status")
    }
}

#[tokio::test]
async fn an_order_id_of_the_wrong_shape_is_a_404_without_asking_the_store() {
    let catalogue = Arc::new(InMemoryCatalogue::with(&[("BOOK-001", 1999, Currency::GBP)]));
    let api = SalesApi::new(Arc::new(Unasked), Arc::new(InMemoryCallerRecords::default()), catalogue, 495);
    for id in ["a".repeat(3000), "not-an-order".into(), "6F72646572666C6F7700000000000001".into(), "%00".into()] {
        let response = api.handle(get_request(&id)).await;
        assert_eq!(response.status(), 404, "{}", &id[..id.len().min(20)]);
        let body = json_of(&response);
        assert_eq!(
            body["requestId"],
            response.headers()["x-correlation-id"].to_str().unwrap(),
            "a request id to quote"
        );
    }
}

const BEA: &str = "0b8e3c55-1f7a-4a57-9a43-2b1c0d9e8f70";

#[tokio::test]
async fn without_a_verified_caller_every_route_is_a_401_and_nothing_is_read_or_stored() {
    let catalogue = Arc::new(InMemoryCatalogue::with(&[("BOOK-001", 1999, Currency::GBP)]));
    let api = SalesApi::new(Arc::new(Unasked), Arc::new(InMemoryCallerRecords::default()), catalogue, 495);
    for sample in ["sales-api/post-order.http.json", "sales-api/get-order.http.json"] {
        let mut event: Value = serde_json::from_str(&sample_text(sample)).unwrap();
        event["requestContext"].as_object_mut().unwrap().remove("authorizer");
        let response = api.handle(req(&event)).await;
        assert_eq!(
            (response.status().as_u16(), fields(&response)),
            (401, vec!["Authorization".to_string()]),
            "{sample}"
        );
        // Claims without a subject are no caller either.
        let response = api.handle(req(&signed_in(sample, &[("sub", "")]))).await;
        assert_eq!(response.status(), 401, "{sample}");
    }
}

#[tokio::test]
async fn an_order_cannot_make_the_shop_text_or_email_anyone_but_the_caller() {
    let rig = rig();
    // A body naming another number, address or customer is refused, each named.
    let mut body = sample_body();
    body["customer"] =
        json!({"name": "Ada", "phone": "+19005550100", "email": "victim@example.com", "customerId": "c-1"});
    let response = rig.api.handle(with_body("sales-api/post-order.http.json", body)).await;
    let mut named = fields(&response);
    named.sort();
    assert_eq!(
        (response.status().as_u16(), named),
        (400, vec!["customer.customerId".to_string(), "customer.email".to_string(), "customer.phone".to_string()])
    );
    assert!(rig.orders.all().is_empty());

    // The order carries the sign-in's verified phone; an unverified one is no phone (no texts) ...
    let event = signed_in(
        "sales-api/post-order.http.json",
        &[("phone_number", "+19005550100"), ("phone_number_verified", "false")],
    );
    let order = json_of(&rig.api.handle(req(&event)).await);
    assert_eq!(
        (order["customer"]["phone"].as_str(), order["customer"]["email"].as_str()),
        (Some(""), Some("ada@example.com"))
    );
    // ... and an unverified email is no order at all (every order is confirmed by email).
    let event = signed_in("sales-api/post-order-invalid.http.json", &[("email_verified", "false")]);
    let mut event = event;
    event["body"] = json!(sample_body().to_string());
    let response = rig.api.handle(req(&event)).await;
    assert_eq!((response.status().as_u16(), fields(&response)), (403, vec!["Authorization".to_string()]));
    assert_eq!(rig.orders.all().len(), 1);
    assert!(rig.orders.all().iter().all(|o| o.state.customer.phone.is_empty()));
}

#[tokio::test]
async fn another_callers_order_is_a_404_like_no_order_from_the_table_and_from_the_cache() {
    let orders = Arc::new(InMemoryOrderStore::default());
    let cache = Arc::new(InMemoryOrderCache::default());
    let catalogue = books_and_mugs();
    let api = SalesApi::new(orders.clone(), Arc::new(InMemoryCallerRecords::default()), catalogue, 495)
        .with_cache(cache.clone());
    let id =
        json_of(&api.handle(request("sales-api/post-order.http.json")).await)["orderId"].as_str().unwrap().to_string();
    let get_as = |sub: &str| {
        let mut event = signed_in("sales-api/get-order.http.json", &[("sub", sub)]);
        event["rawPath"] = json!(format!("/orders/{id}"));
        event["requestContext"]["http"]["path"] = json!(format!("/orders/{id}"));
        event["pathParameters"]["orderId"] = json!(id);
        req(&event)
    };
    let missing = api.handle(get_request("6f726465-7266-4c6f-9700-000000000009")).await;
    let other = api.handle(get_as(BEA)).await;
    assert_eq!((other.status().as_u16(), x_cache(&other)), (404, x_cache(&missing)));
    let missing = json_of(&missing);
    let mut answer = json_of(&other);
    answer["requestId"] = missing["requestId"].clone();
    assert_eq!(answer, missing, "the same answer as an order that does not exist");
    assert!(cache.cached(&id).is_none());

    // The owner reads it (and fills the cache); the stranger is refused from the cache too.
    assert_eq!(api.handle(get_request(&id)).await.status(), 200);
    assert!(cache.cached(&id).is_some());
    let other = api.handle(get_as(BEA)).await;
    assert_eq!((other.status().as_u16(), x_cache(&other)), (404, "miss"), "a cached order is not told either");
    assert_eq!(api.handle(get_request(&id)).await.status(), 200);
}

#[tokio::test]
async fn idempotency_keys_are_each_callers_own_and_give_no_order_id_away() {
    let rig = rig();
    let ada = rig.api.handle(request("sales-api/post-order.http.json")).await;
    let ada_id = json_of(&ada)["orderId"].clone();
    // Bea uses the very same key and body: her own new order, nothing of Ada's told or given.
    let bea = rig.api.handle(req(&signed_in("sales-api/post-order.http.json", &[("sub", BEA)]))).await;
    assert_eq!((ada.status().as_u16(), bea.status().as_u16()), (201, 201));
    assert_ne!(json_of(&bea)["orderId"], ada_id);
    assert_eq!(json_of(&bea)["customer"]["customerId"], BEA);
    // Bea's key with another body is Bea's conflict only; Ada's retry still finds Ada's order.
    let mut other = signed_in("sales-api/post-order.http.json", &[("sub", BEA)]);
    other["body"] = json!(sample_body().to_string().replace("\"quantity\":2", "\"quantity\":5"));
    assert_eq!(rig.api.handle(req(&other)).await.status(), 422);
    let again = rig.api.handle(request("sales-api/post-order.http.json")).await;
    assert_eq!((again.status().as_u16(), json_of(&again)["orderId"].clone()), (200, ada_id));
    assert_eq!(rig.orders.all().len(), 2);
    // A second deployment (a fresh process) gives the same key another id: ids come from no key.
    let fresh = self::rig();
    let elsewhere = fresh.api.handle(request("sales-api/post-order.http.json")).await;
    assert_ne!(json_of(&elsewhere)["orderId"], json_of(&again)["orderId"]);
}

#[tokio::test]
async fn a_key_claimed_by_a_request_that_died_before_storing_its_order_places_it_once_on_retry() {
    use sales::callers::{CallerRecords, KeyClaim};
    let rig = rig();
    let callers = Arc::new(InMemoryCallerRecords::default());
    let catalogue = books_and_mugs();
    let api = SalesApi::new(rig.orders.clone(), callers.clone(), catalogue, 495);
    // The first attempt claimed the key (with its request hash) and died: learn the hash from a
    // twin deployment, then claim the key in ours as the dead attempt did.
    let twin = self::rig();
    let placed = json_of(&twin.api.handle(request("sales-api/post-order.http.json")).await);
    let hash = twin.orders.get(placed["orderId"].as_str().unwrap()).await.unwrap().unwrap().request_hash;
    let claimed = "9d3c1b1e-2a4f-4f6e-8c7b-1a2b3c4d5e6f";
    let sub = "5f1c2a9e-7b3d-4e8f-a1c2-3d4e5f6a7b8c";
    let now = chrono::Utc::now();
    assert_eq!(
        callers.claim_key(sub, "3f0c9a4e-5b1d-4c8e-9f2a-7d6b5e4c3a21", claimed, &hash, now).await.unwrap(),
        KeyClaim::New
    );
    let retry = api.handle(request("sales-api/post-order.http.json")).await;
    assert_eq!((retry.status().as_u16(), json_of(&retry)["orderId"].as_str()), (201, Some(claimed)));
    let again = api.handle(request("sales-api/post-order.http.json")).await;
    assert_eq!((again.status().as_u16(), json_of(&again)["orderId"].as_str()), (200, Some(claimed)));
    assert_eq!((rig.orders.all().len(), announced(&rig).len()), (1, 1));
}

#[tokio::test]
async fn each_caller_places_at_most_the_limit_an_hour_and_retries_do_not_count() {
    let rig = rig();
    let catalogue = books_and_mugs();
    let callers = Arc::new(InMemoryCallerRecords::default());
    let api = SalesApi::new(rig.orders.clone(), callers.clone(), catalogue, 495).with_orders_per_hour(3);
    let keyed = |n: u32| {
        let mut event = signed_in("sales-api/post-order.http.json", &[]);
        event["headers"]["idempotency-key"] = json!(format!("key-{n}"));
        req(&event)
    };
    for n in 0..3 {
        assert_eq!(api.handle(keyed(n)).await.status(), 201, "order {n}");
    }
    let refused = api.handle(keyed(3)).await;
    assert_eq!((refused.status().as_u16(), fields(&refused)), (429, vec!["body".to_string()]));
    let after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&after), "until the next clock hour: {after}");
    // The refused request's key was let go: it stands for no order.
    use sales::callers::{CallerRecords, KeyClaim};
    let sub = "5f1c2a9e-7b3d-4e8f-a1c2-3d4e5f6a7b8c";
    let again = callers.claim_key(sub, "key-3", "6f726465-7266-4c6f-9700-00000000000a", "h", chrono::Utc::now());
    assert_eq!(again.await.unwrap(), KeyClaim::New);
    // A retry of an order already placed is answered, not counted; another caller is not limited.
    assert_eq!(api.handle(keyed(1)).await.status(), 200);
    let bea = signed_in("sales-api/post-order.http.json", &[("sub", BEA)]);
    assert_eq!(api.handle(req(&bea)).await.status(), 201);
    assert_eq!(rig.orders.all().len(), 4);
}

mod round_trip {
    //! Property: any order the API accepts reaches consumers as exactly what was accepted: the
    //! announced `OrderPlaced`, decoded by the harness the way every consumer decodes it, carries
    //! the request's lines and address and the caller's identity, unchanged.
    use super::*;
    use orderflow_harness::consumer::decode;
    use orderflow_harness_testing::eventbridge_body;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        // Printable text of any script (no control or format characters), 1 to 50 characters: at most
        // 200 bytes, the API's limit for a text field.
        "\\PC{1,50}".prop_filter("not blank", |s| !s.trim().is_empty())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn any_accepted_order_round_trips_through_order_placed_unchanged(
            name in text(),
            lines in prop::collection::vec((0usize..2, 1u32..=10_000), 1..=20),
            line1 in text(),
            line2 in prop::option::of(text()),
            city in text(),
            postal_code in "[A-Z0-9 ]{1,10}".prop_filter("not blank", |s| !s.trim().is_empty()),
            country in "[A-Z]{2}",
        ) {
            let rig = rig();
            let skus = ["BOOK-001", "MUG-002"];
            let mut address = json!({"line1": line1, "city": city, "postalCode": postal_code, "country": country});
            if let Some(line2) = &line2 {
                address["line2"] = json!(line2);
            }
            let body = json!({
                "customer": {"name": name},
                "lines": lines.iter().map(|(i, q)| json!({"sku": skus[*i], "quantity": q})).collect::<Vec<_>>(),
                "currency": "GBP",
                "shippingAddress": address,
            });
            let response = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(rig.api.handle(with_body("sales-api/post-order.http.json", body)));
            prop_assert_eq!(response.status().as_u16(), 201, "{}", json_of(&response));
            let accepted: OrderState = serde_json::from_value(json_of(&response)).unwrap();

            let announced = rig.orders.announcements();
            let envelope: Envelope<OrderPlaced> = serde_json::from_str(&announced[0].detail).unwrap();
            let (placed, _) = decode::<OrderPlaced>(Some(&eventbridge_body(&envelope))).unwrap();
            prop_assert_eq!(&placed.order_id, &accepted.order_id);
            prop_assert_eq!(&placed.customer, &accepted.customer);
            prop_assert_eq!(&placed.lines, &accepted.lines);
            prop_assert_eq!(placed.totals, accepted.totals);
            prop_assert_eq!(&placed.shipping_address, &accepted.shipping_address);
            // And what was accepted is what was asked (text trimmed, nothing else touched).
            prop_assert_eq!(placed.customer.name.as_str(), name.trim());
            prop_assert_eq!(placed.customer.customer_id.as_str(), "5f1c2a9e-7b3d-4e8f-a1c2-3d4e5f6a7b8c");
            prop_assert_eq!(placed.shipping_address.line1.as_str(), line1.trim());
            prop_assert_eq!(placed.shipping_address.line2.as_deref(), line2.as_deref().map(str::trim));
            prop_assert_eq!(placed.shipping_address.city.as_str(), city.trim());
            let asked: Vec<(String, u32)> = lines.iter().map(|(i, q)| (skus[*i].to_string(), *q)).collect();
            let got: Vec<(String, u32)> = placed.lines.iter().map(|l| (l.sku.clone(), l.quantity)).collect();
            prop_assert_eq!(got, asked);
        }
    }
}

// ------------------------------------------------------------------ POST /orders/{id}/cancel

/// `POST /orders/{id}/cancel` from the sample, as the caller `sub`.
fn cancel_request(id: &str, sub: &str) -> Request {
    let mut event = signed_in("sales-api/cancel-order.http.json", &[("sub", sub)]);
    event["rawPath"] = json!(format!("/orders/{id}/cancel"));
    event["requestContext"]["http"]["path"] = json!(format!("/orders/{id}/cancel"));
    event["pathParameters"]["orderId"] = json!(id);
    req(&event)
}

/// The samples' caller.
const ADA: &str = "5f1c2a9e-7b3d-4e8f-a1c2-3d4e5f6a7b8c";

fn announced_types(rig: &Rig) -> Vec<String> {
    rig.orders.announcements().into_iter().map(|e| e.detail_type).collect()
}

async fn placed_order(rig: &Rig) -> String {
    let placed = rig.api.handle(request("sales-api/post-order.http.json")).await;
    json_of(&placed)["orderId"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn the_customer_cancels_a_placed_order_and_billing_and_warehouse_are_told_in_the_same_write() {
    let rig = rig();
    let id = placed_order(&rig).await;
    let response = rig.api.handle(cancel_request(&id, ADA)).await;
    assert_eq!(response.status(), 202);
    assert_eq!(json_of(&response)["status"], "Cancelling");
    let order = rig.orders.get(&id).await.unwrap().unwrap().state;
    assert_eq!((order.status, order.version), (OrderStatus::Cancelling, 2));
    assert_eq!(announced_types(&rig), vec!["OrderPlaced", "OrderStatusChanged", "OrderCancelled"]);
    let cancelled: Envelope<orderflow_contracts::OrderCancelled> =
        serde_json::from_str(&rig.orders.announcements()[2].detail).unwrap();
    assert_eq!(cancelled.data.cancelled_by, orderflow_contracts::CancelledBy::Customer);
    assert_eq!((cancelled.data.total_minor, cancelled.data.currency), (order.totals.total_minor, order.currency));

    // Asked again (a retry): the same answer, nothing more announced.
    let again = rig.api.handle(cancel_request(&id, ADA)).await;
    assert_eq!((again.status().as_u16(), json_of(&again)["status"].as_str()), (202, Some("Cancelling")));
    assert_eq!(rig.orders.announcements().len(), 3);
}

#[tokio::test]
async fn a_backordered_order_can_be_cancelled_and_a_shipped_or_declined_one_is_a_409_naming_its_status() {
    for (status, expected) in [
        (OrderStatus::Backordered, 202),
        (OrderStatus::ReadyToShip, 409),
        (OrderStatus::PaymentFailed, 409),
        (OrderStatus::Cancelled, 202),
    ] {
        let rig = rig();
        let id = placed_order(&rig).await;
        let mut stored = rig.orders.get(&id).await.unwrap().unwrap();
        stored.state.status = status;
        rig.orders.insert(stored);
        let before = rig.orders.announcements().len();
        let response = rig.api.handle(cancel_request(&id, ADA)).await;
        assert_eq!(response.status().as_u16(), expected, "{status:?}");
        if expected == 409 {
            assert_eq!(fields(&response), vec!["status"]);
            let message = json_of(&response)["errors"][0]["message"].as_str().unwrap().to_string();
            assert!(message.contains(status.as_str()), "{message}");
            assert_eq!(rig.orders.get(&id).await.unwrap().unwrap().state.status, status, "unchanged");
        }
        let new = rig.orders.announcements().len() - before;
        assert_eq!(new, if status == OrderStatus::Backordered { 2 } else { 0 }, "{status:?}");
    }
}

#[tokio::test]
async fn only_the_orders_customer_may_cancel_it_and_a_stranger_learns_nothing() {
    let rig = rig();
    let id = placed_order(&rig).await;
    let stranger = rig.api.handle(cancel_request(&id, BEA)).await;
    let missing = rig.api.handle(cancel_request("6f726465-7266-4c6f-9700-000000000009", BEA)).await;
    assert_eq!((stranger.status().as_u16(), missing.status().as_u16()), (404, 404));
    assert_eq!(json_of(&stranger)["errors"], json_of(&missing)["errors"], "the same answer as no order");
    assert_eq!(rig.orders.get(&id).await.unwrap().unwrap().state.status, OrderStatus::Placed);
    assert_eq!(announced_types(&rig), vec!["OrderPlaced"]);
    // Without a verified caller: 401.
    let anonymous = {
        let mut event = signed_in("sales-api/cancel-order.http.json", &[]);
        event["requestContext"]["authorizer"] = Value::Null;
        event["rawPath"] = json!(format!("/orders/{id}/cancel"));
        req(&event)
    };
    assert_eq!(rig.api.handle(anonymous).await.status(), 401);
}
