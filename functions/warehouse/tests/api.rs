//! Warehouse's stock route over a fake publisher, fed the API Gateway request of
//! `events-samples/warehouse-api/post-stock.http.json`.

use std::sync::Arc;

use lambda_http::{Body, Request};
use orderflow_contracts::StockReceived;
use orderflow_harness::publisher::InMemoryPublisher;
use orderflow_harness_testing::sample_text;
use pretty_assertions::assert_eq;
use serde_json::Value;
use warehouse::api::WarehouseApi;

/// The sample with `change` applied to its event.
fn request(change: impl FnOnce(&mut Value)) -> Request {
    let mut event: Value = serde_json::from_str(&sample_text("warehouse-api/post-stock.http.json")).unwrap();
    change(&mut event);
    lambda_http::request::from_str(&event.to_string()).expect("an API Gateway request")
}

fn json_of(response: &lambda_http::Response<Body>) -> Value {
    serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null)
}

#[tokio::test]
async fn the_sample_is_announced_once_as_the_same_receipt_however_often_it_is_sent() {
    let published = Arc::new(InMemoryPublisher::default());
    let api = WarehouseApi::new(published.clone());
    let first = api.handle(request(|_| {})).await;
    assert_eq!(first.status(), 202);
    let again = api.handle(request(|_| {})).await;
    assert_eq!(json_of(&again)["receiptId"], json_of(&first)["receiptId"], "the same key, the same receipt");
    let receipts = published.envelopes::<StockReceived>();
    assert_eq!(receipts.len(), 2);
    assert_eq!(receipts[0].metadata.event_id, receipts[1].metadata.event_id, "the same event, dropped downstream");
    assert_eq!((receipts[0].data.sku.as_str(), receipts[0].data.quantity), ("BOOK-001", 24));
    // Another operator's same key is another receipt.
    let other = api
        .handle(request(|e| e["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = "another-operator".into()))
        .await;
    assert_ne!(json_of(&other)["receiptId"], json_of(&first)["receiptId"]);
}

#[tokio::test]
async fn a_receipt_without_an_idempotency_key_is_refused_naming_the_header() {
    let published = Arc::new(InMemoryPublisher::default());
    let api = WarehouseApi::new(published.clone());
    for key in [None, Some(""), Some(&*"k".repeat(129))] {
        let response = api
            .handle(request(|e| match key {
                None => {
                    e["headers"].as_object_mut().unwrap().remove("idempotency-key");
                }
                Some(key) => e["headers"]["idempotency-key"] = key.into(),
            }))
            .await;
        assert_eq!(response.status(), 400, "{key:?}");
        assert_eq!(json_of(&response)["errors"][0]["field"], "Idempotency-Key", "{key:?}");
    }
    assert!(published.published().is_empty(), "nothing announced");
}

#[tokio::test]
async fn only_an_operator_books_stock_in() {
    let api = WarehouseApi::new(Arc::new(InMemoryPublisher::default()));
    let customer = api
        .handle(request(|e| {
            e["requestContext"]["authorizer"]["jwt"]["claims"]["cognito:groups"] = "[customers]".into()
        }))
        .await;
    assert_eq!(customer.status(), 403);
    let nobody = api
        .handle(request(|e| e["requestContext"].as_object_mut().unwrap().remove("authorizer").map(drop).unwrap_or(())))
        .await;
    assert_eq!(nobody.status(), 401);
}
