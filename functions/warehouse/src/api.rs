//! `warehouse-api`: stock arrives. Every request comes through the HTTP API's JWT authorizer (no
//! verified caller: 401); only members of the `operators` group may book stock in (403 otherwise).
//!
//! ```text
//! POST /stock {"sku", "quantity"} + Idempotency-Key ─► StockReceived on the bus ─► 202 {"receiptId", ...}
//! ```
//!
//! The route only announces the receipt; the `warehouse` consumer counts it (once per receipt id) and
//! allocates it to waiting backorders. The `Idempotency-Key` is required, and the same key from the
//! same operator is the same receipt, so a client that retries after a timeout or a 503 books the
//! stock in once.

use std::sync::Arc;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use orderflow_contracts::{is_sku, Envelope, StockReceived, MAX_RECEIPT_QUANTITY};
use orderflow_harness::caller::Caller;
use orderflow_harness::{EventPublisher, OutboundEvent};
use serde_json::{json, Value};
use tracing::{error, info, Instrument};
use uuid::Uuid;

/// The API: a publisher.
pub struct WarehouseApi {
    publisher: Arc<dyn EventPublisher>,
}

fn respond(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::Text(body.to_string()))
        .expect("a valid response")
}

fn refusal(status: StatusCode, field: &str, message: impl Into<String>) -> Response<Body> {
    respond(status, &json!({"errors": [{"field": field, "message": message.into()}]}))
}

/// The receipt id: derived from the operator and their `Idempotency-Key`, so the same key is the
/// same receipt, counted once however often it is sent.
pub fn receipt_id(caller: &Caller, idempotency_key: &str) -> String {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("stock/{}/{idempotency_key}", caller.subject).as_bytes()).to_string()
}

impl WarehouseApi {
    /// The API over its publisher.
    pub fn new(publisher: Arc<dyn EventPublisher>) -> Self {
        Self { publisher }
    }

    /// Routes one request.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let path = req.uri().path().trim_end_matches('/').to_string();
        let span = tracing::info_span!("request", method = %req.method(), path = %path);
        async {
            let Some(caller) = Caller::of_request(&req) else {
                info!("refused: no verified caller");
                return refusal(StatusCode::UNAUTHORIZED, "Authorization", "sign in: a valid bearer token is required");
            };
            if !caller.is_operator() {
                info!("refused: not an operator");
                return refusal(
                    StatusCode::FORBIDDEN,
                    "Authorization",
                    "operators only: sign in as a member of the operators group",
                );
            }
            match (req.method(), path.rsplit('/').next()) {
                (&Method::POST, Some("stock")) => self.receive(&req, &caller).await,
                _ => refusal(StatusCode::NOT_FOUND, "path", format!("no route for {} {path}", req.method())),
            }
        }
        .instrument(span)
        .await
    }

    async fn receive(&self, req: &Request, caller: &Caller) -> Response<Body> {
        let body: Value = match serde_json::from_slice(req.body().as_ref()) {
            Ok(v) => v,
            Err(e) => return refusal(StatusCode::BAD_REQUEST, "body", format!("is not valid JSON: {e}")),
        };
        let Some(sku) = body["sku"].as_str().filter(|s| is_sku(s)) else {
            return refusal(StatusCode::BAD_REQUEST, "sku", "is required: 1 to 64 of A-Z, 0-9, - and _");
        };
        let Some(quantity) = body["quantity"].as_u64().filter(|q| (1..=u64::from(MAX_RECEIPT_QUANTITY)).contains(q))
        else {
            return refusal(
                StatusCode::BAD_REQUEST,
                "quantity",
                format!("is required: a whole number from 1 to {MAX_RECEIPT_QUANTITY}"),
            );
        };
        // Required: a receipt sent again after a lost answer or a 503 must not count the goods twice
        // (a new receipt each time would, and ship backorders against stock that is not there).
        let key = req.headers().get("idempotency-key").and_then(|v| v.to_str().ok());
        let Some(key) = key.filter(|k| !k.is_empty() && k.len() <= 128) else {
            return refusal(
                StatusCode::BAD_REQUEST,
                "Idempotency-Key",
                "is required: 1 to 128 characters naming this receipt (a delivery note's number), the same on a retry",
            );
        };
        let received = StockReceived {
            receipt_id: receipt_id(caller, key),
            sku: sku.to_string(),
            quantity: u32::try_from(quantity).expect("bounded above"),
            received_at: chrono::Utc::now(),
        };
        let shown = json!({"receiptId": received.receipt_id, "sku": received.sku, "quantity": received.quantity});
        // The same key: the same receipt, and the same event id, which the consumer drops if it has it.
        let mut envelope = Envelope::new(received, None);
        envelope.metadata.event_id = Uuid::new_v5(&Uuid::NAMESPACE_OID, shown["receiptId"].to_string().as_bytes());
        match self.publisher.publish(vec![OutboundEvent::from_envelope(&envelope)]).await {
            Ok(()) => {
                info!(receipt_id = %shown["receiptId"], sku, quantity, "stock receipt announced");
                respond(StatusCode::ACCEPTED, &shown)
            }
            Err(e) => {
                error!(error = %e, "could not announce the stock receipt");
                refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "body",
                    "the event bus is unavailable, retry with the same Idempotency-Key",
                )
            }
        }
    }
}
