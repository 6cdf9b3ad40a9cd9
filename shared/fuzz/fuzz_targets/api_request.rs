//! `POST /orders` with any body and `Idempotency-Key`, from a signed-in caller, through the real
//! `SalesApi` over its in-memory fakes. Input: a length byte, that many bytes of key (0: no key
//! header), then the body. What must hold for every input: no panic; an answer the API documents (never a
//! 5xx: the fakes never fail); every error names a field; an order taken is one whose announcement
//! decodes and validates as the `OrderPlaced` consumers receive, carrying the caller's identity.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use orderflow_contracts::{Envelope, Event as _, OrderPlaced};
use sales::api::SalesApi;
use sales::callers::InMemoryCallerRecords;
use sales::catalogue::InMemoryCatalogue;
use sales::orders::InMemoryOrderStore;
use serde_json::{json, Value};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().unwrap())
}

/// The request as API Gateway would hand it over, or `None` for a key no HTTP header can carry
/// (API Gateway never delivers one).
fn request(key: Option<&str>, body: &str) -> Option<lambda_http::Request> {
    let mut headers = json!({"content-type": "application/json"});
    if let Some(key) = key {
        headers["idempotency-key"] = json!(key);
    }
    let event = json!({
        "version": "2.0", "routeKey": "POST /orders", "rawPath": "/orders", "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "http": {"method": "POST", "path": "/orders", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10", "userAgent": "fuzz"},
            "authorizer": {"jwt": {"claims": {
                "sub": "fuzz-caller", "email": "ada@example.com", "email_verified": "true",
                "phone_number": "+447700900123", "phone_number_verified": "true", "name": "Ada"
            }}}
        },
        "isBase64Encoded": false,
        "body": body
    });
    lambda_http::request::from_str(&event.to_string()).ok()
}

fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first() else { return };
    let (key, body) = rest.split_at((len as usize).min(rest.len()));
    let (Ok(key), Ok(body)) = (std::str::from_utf8(key), std::str::from_utf8(body)) else { return };
    let key = (len > 0).then_some(key);
    let orders = Arc::new(InMemoryOrderStore::default());
    let catalogue = Arc::new(InMemoryCatalogue::of_the_samples());
    let api = SalesApi::new(orders.clone(), Arc::new(InMemoryCallerRecords::default()), catalogue, 495);
    let Some(request) = request(key, body) else { return };
    let response = runtime().block_on(api.handle(request));
    let status = response.status().as_u16();
    let answer: Value = serde_json::from_slice(response.body().as_ref()).expect("every answer is JSON");
    match status {
        201 => {
            let announced = orders.announcements();
            assert_eq!(announced.len(), 1, "an order taken is announced once");
            let placed: Envelope<OrderPlaced> = serde_json::from_str(&announced[0].detail).unwrap();
            placed.data.validate().expect("what Sales announces, consumers accept");
            assert_eq!(placed.data.customer.customer_id, "fuzz-caller");
            assert_eq!(placed.data.customer.email, "ada@example.com", "the sign-in's email, whatever the body says");
            assert_eq!(answer["orderId"], placed.data.order_id.as_str());
        }
        400 | 413 | 415 | 422 => {
            let errors = answer["errors"].as_array().expect("errors");
            assert!(!errors.is_empty() && errors.iter().all(|e| e["field"].is_string()), "{answer}");
            assert!(orders.all().is_empty(), "nothing stored on a refusal");
        }
        other => panic!("answer {other} to a body: {answer}"),
    }
});
