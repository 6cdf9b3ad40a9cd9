//! `POST /orders` with any body, from a signed-in caller, through the real `SalesApi` over its
//! in-memory fakes. What must hold for every input: no panic; an answer the API documents (never a
//! 5xx: the fakes never fail); every error names a field; an order taken is one whose announcement
//! decodes and validates as the `OrderPlaced` consumers receive, carrying the caller's identity.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use orderflow_contracts::{Currency, Envelope, OrderPlaced};
use sales::api::SalesApi;
use sales::callers::InMemoryCallerRecords;
use sales::catalogue::InMemoryCatalogue;
use sales::orders::InMemoryOrderStore;
use serde_json::{json, Value};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().unwrap())
}

fn request(body: &str) -> lambda_http::Request {
    let event = json!({
        "version": "2.0", "routeKey": "POST /orders", "rawPath": "/orders", "rawQueryString": "",
        "headers": {"content-type": "application/json"},
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
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else { return };
    let orders = Arc::new(InMemoryOrderStore::default());
    let catalogue = Arc::new(InMemoryCatalogue::with(&[
        ("BOOK-001", 1999, Currency::GBP),
        ("MUG-002", 1250, Currency::GBP),
        ("RING-9", 999_900, Currency::EUR),
    ]));
    let api = SalesApi::new(orders.clone(), Arc::new(InMemoryCallerRecords::default()), catalogue, 495);
    let response = runtime().block_on(api.handle(request(body)));
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
        400 | 413 | 415 => {
            let errors = answer["errors"].as_array().expect("errors");
            assert!(!errors.is_empty() && errors.iter().all(|e| e["field"].is_string()), "{answer}");
            assert!(orders.all().is_empty(), "nothing stored on a refusal");
        }
        other => panic!("answer {other} to a body: {answer}"),
    }
});
