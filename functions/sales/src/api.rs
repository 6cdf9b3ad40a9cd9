//! `sales-api`: the orders HTTP API behind API Gateway (HTTP API, payload 2.0).
//!
//! ```text
//! POST /orders ─► parse + validate (400 naming every bad field) ─► store as Placed (conditional put)
//!              ─► publish OrderPlaced ─► mark published ─► 201 + the order
//! GET /orders/{id} ─► 200 + the order with its status history, or 404
//! ```
//!
//! An `Idempotency-Key` header makes POST safe to retry: the order id is derived from the key, so a
//! retry finds the order it created and answers it (200) instead of placing a second one; if the first
//! attempt stored the order but failed to publish, the retry publishes it (same event id, so consumers
//! see one event). The same key with a different body is refused.

use std::sync::Arc;

use chrono::Utc;
use lambda_http::http::{HeaderMap, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use orderflow_contracts::canonical::canonical;
use orderflow_contracts::{
    Address, Currency, Customer, Envelope, OrderLine, OrderPlaced, OrderState, OrderStatus, StatusEntry, Totals,
};
use orderflow_harness::{EventPublisher, OutboundEvent};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tracing::{error, info, warn};
use uuid::Uuid;

use crate::orders::{Created, OrderStore, StoredOrder};

/// Most lines one order may have (DynamoDB transactions, which Warehouse allocates stock with, take
/// at most 100 items).
pub const MAX_LINES: usize = 50;

/// Namespace of ids derived from client idempotency keys and order ids (UUID v5).
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_7266_6c6f_7700_0000_0000_0001);

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Path of the field in the request, e.g. `lines[1].quantity`, or a header name.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

fn field_error(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), message: message.into() }
}

/// A validated order request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// The buyer.
    pub customer: Customer,
    /// The lines.
    pub lines: Vec<OrderLine>,
    /// The currency.
    pub currency: Currency,
    /// Where to ship.
    pub shipping_address: Address,
    /// Shipping cost.
    pub shipping_minor: i64,
}

struct Fields<'a> {
    errors: Vec<FieldError>,
    root: &'a Value,
}

impl<'a> Fields<'a> {
    fn at(&self, path: &[&str]) -> Option<&'a Value> {
        path.iter().try_fold(self.root, |v, k| v.get(k)).filter(|v| !v.is_null())
    }

    fn text(&mut self, v: Option<&Value>, field: &str, required: bool) -> String {
        match v {
            Some(Value::String(s)) if !s.trim().is_empty() => {
                if s.len() > 200 {
                    self.errors.push(field_error(field, "must be at most 200 characters"));
                }
                s.trim().to_string()
            }
            Some(Value::String(_)) if required => {
                self.errors.push(field_error(field, "must not be empty"));
                String::new()
            }
            None if required => {
                self.errors.push(field_error(field, "is required"));
                String::new()
            }
            Some(Value::String(_)) | None => String::new(),
            Some(_) => {
                self.errors.push(field_error(field, "must be a string"));
                String::new()
            }
        }
    }

    fn integer(&mut self, v: Option<&Value>, field: &str, min: i64, default: Option<i64>) -> i64 {
        match (v, default) {
            (None, Some(d)) => d,
            (None, None) => {
                self.errors.push(field_error(field, "is required"));
                0
            }
            (Some(v), _) => match v.as_i64() {
                Some(i) if i >= min => i,
                Some(_) if min == 1 => {
                    self.errors.push(field_error(field, "must be a positive integer"));
                    0
                }
                Some(_) => {
                    self.errors.push(field_error(field, format!("must be at least {min}")));
                    0
                }
                None => {
                    self.errors.push(field_error(field, "must be an integer"));
                    0
                }
            },
        }
    }
}

/// E.164: a plus, then 8 to 15 digits, not starting with 0.
fn is_e164(phone: &str) -> bool {
    let digits = phone.strip_prefix('+').unwrap_or("");
    (8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0')
}

/// Validates a `POST /orders` body, naming every invalid field.
pub fn validate(body: &Value) -> Result<NewOrder, Vec<FieldError>> {
    if !body.is_object() {
        return Err(vec![field_error("body", "must be a JSON object")]);
    }
    let mut f = Fields { errors: Vec::new(), root: body };

    let name = f.text(f.at(&["customer", "name"]), "customer.name", true);
    let email = f.text(f.at(&["customer", "email"]), "customer.email", true);
    if !email.is_empty() && !email_address::EmailAddress::is_valid(&email) {
        f.errors.push(field_error("customer.email", "is not a valid email address"));
    }
    let phone = f.text(f.at(&["customer", "phone"]), "customer.phone", true);
    if !phone.is_empty() && !is_e164(&phone) {
        f.errors.push(field_error("customer.phone", "must be in E.164 format, e.g. +447700900123"));
    }
    let mut customer_id = f.text(f.at(&["customer", "customerId"]), "customer.customerId", false);
    if customer_id.is_empty() {
        customer_id = format!("guest-{}", Uuid::new_v5(&ID_NAMESPACE, email.to_lowercase().as_bytes()).simple());
    }

    let mut lines = Vec::new();
    match f.at(&["lines"]) {
        None => f.errors.push(field_error("lines", "is required")),
        Some(Value::Array(items)) if items.is_empty() => {
            f.errors.push(field_error("lines", "must contain at least one line"))
        }
        Some(Value::Array(items)) if items.len() > MAX_LINES => {
            f.errors.push(field_error("lines", format!("must contain at most {MAX_LINES} lines")))
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.is_object() {
                    f.errors.push(field_error(format!("lines[{i}]"), "must be an object"));
                    continue;
                }
                let sku = f.text(item.get("sku"), &format!("lines[{i}].sku"), true);
                let quantity = f.integer(item.get("quantity"), &format!("lines[{i}].quantity"), 1, None);
                if quantity > 10_000 {
                    f.errors.push(field_error(format!("lines[{i}].quantity"), "must be at most 10000"));
                }
                let price = f.integer(item.get("unitPriceMinor"), &format!("lines[{i}].unitPriceMinor"), 0, None);
                lines.push(OrderLine { sku, quantity: quantity.clamp(0, 10_000) as u32, unit_price_minor: price });
            }
        }
        Some(_) => f.errors.push(field_error("lines", "must be an array")),
    }

    let code = f.text(f.at(&["currency"]), "currency", true);
    let currency = Currency::parse(&code);
    if currency.is_none() && !code.is_empty() {
        f.errors.push(field_error("currency", format!("unknown currency `{code}` (accepted: EUR, USD, GBP, CHF)")));
    }

    let line1 = f.text(f.at(&["shippingAddress", "line1"]), "shippingAddress.line1", true);
    let line2 = f.text(f.at(&["shippingAddress", "line2"]), "shippingAddress.line2", false);
    let city = f.text(f.at(&["shippingAddress", "city"]), "shippingAddress.city", true);
    let postal_code = f.text(f.at(&["shippingAddress", "postalCode"]), "shippingAddress.postalCode", true);
    let country = f.text(f.at(&["shippingAddress", "country"]), "shippingAddress.country", true);
    let alpha2 = country.len() == 2 && country.chars().all(|c| c.is_ascii_uppercase());
    if !country.is_empty() && !alpha2 {
        f.errors.push(field_error("shippingAddress.country", "must be an ISO 3166-1 alpha-2 code, e.g. GB"));
    }
    let shipping_minor = f.integer(f.at(&["shippingMinor"]), "shippingMinor", 0, Some(0));

    match (f.errors.is_empty(), currency) {
        (true, Some(currency)) => Ok(NewOrder {
            customer: Customer { customer_id, name, email, phone },
            lines,
            currency,
            shipping_address: Address {
                line1,
                line2: Some(line2).filter(|l| !l.is_empty()),
                city,
                postal_code,
                country,
            },
            shipping_minor,
        }),
        _ => Err(f.errors),
    }
}

/// The HTTP API's handler: the order store and the publisher.
pub struct SalesApi {
    orders: Arc<dyn OrderStore>,
    publisher: Arc<dyn EventPublisher>,
}

fn json_response(status: StatusCode, body: &impl Serialize, correlation_id: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-correlation-id", correlation_id)
        .body(Body::Text(serde_json::to_string(body).expect("responses serialise")))
        .expect("a valid response")
}

fn errors(status: StatusCode, errors: Vec<FieldError>, correlation_id: &str) -> Response<Body> {
    json_response(status, &json!({ "errors": errors }), correlation_id)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

/// The order id for a request: derived from its idempotency key, or fresh.
pub fn order_id_for(idempotency_key: Option<&str>) -> String {
    match idempotency_key {
        Some(key) => Uuid::new_v5(&ID_NAMESPACE, key.as_bytes()).to_string(),
        None => Uuid::new_v4().to_string(),
    }
}

impl SalesApi {
    /// The API over its ports.
    pub fn new(orders: Arc<dyn OrderStore>, publisher: Arc<dyn EventPublisher>) -> Self {
        Self { orders, publisher }
    }

    /// Routes one request.
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let correlation_id = header(req.headers(), "x-correlation-id")
            .filter(|c| c.len() <= 128)
            .map(str::to_string)
            .unwrap_or_else(|| {
                req.lambda_context_ref()
                    .map(|c| c.request_id.clone())
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| Uuid::new_v4().to_string())
            });
        let path = req.uri().path().to_string();
        let path = path.trim_end_matches('/');
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        // API Gateway may keep a stage prefix; the route is the tail.
        let route = segments.iter().rposition(|s| *s == "orders").map(|i| &segments[i..]).unwrap_or(&[]);
        let span =
            tracing::info_span!("request", method = %req.method(), path = %path, correlation_id = %correlation_id);
        let _enter = span.enter();
        match (req.method(), route) {
            (&Method::POST, ["orders"]) => self.place(&req, &correlation_id).await,
            (&Method::GET, ["orders", id]) => self.get(id, &correlation_id).await,
            (_, ["orders"]) | (_, ["orders", _]) => errors(
                StatusCode::METHOD_NOT_ALLOWED,
                vec![field_error("method", "not allowed on this path")],
                &correlation_id,
            ),
            _ => errors(
                StatusCode::NOT_FOUND,
                vec![field_error("path", format!("no route for {path}"))],
                &correlation_id,
            ),
        }
    }

    async fn get(&self, order_id: &str, correlation_id: &str) -> Response<Body> {
        match self.orders.get(order_id).await {
            Ok(Some(order)) => json_response(StatusCode::OK, &order.state, correlation_id),
            Ok(None) => errors(
                StatusCode::NOT_FOUND,
                vec![field_error("orderId", format!("no order `{order_id}`"))],
                correlation_id,
            ),
            Err(e) => {
                error!(error = %e, "order store unavailable");
                errors(
                    StatusCode::SERVICE_UNAVAILABLE,
                    vec![field_error("orderId", "the order store is unavailable, retry later")],
                    correlation_id,
                )
            }
        }
    }

    async fn place(&self, req: &Request, correlation_id: &str) -> Response<Body> {
        let key = header(req.headers(), "idempotency-key");
        if key.is_some_and(|k| k.len() > 255) {
            return errors(
                StatusCode::BAD_REQUEST,
                vec![field_error("Idempotency-Key", "must be at most 255 characters")],
                correlation_id,
            );
        }
        let body: Value = match serde_json::from_slice(req.body().as_ref()) {
            Ok(v) => v,
            Err(e) => {
                return errors(
                    StatusCode::BAD_REQUEST,
                    vec![field_error("body", format!("is not valid JSON: {e}"))],
                    correlation_id,
                )
            }
        };
        let new = match validate(&body) {
            Ok(new) => new,
            Err(errs) => {
                info!(invalid_fields = ?errs.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), "order refused");
                return errors(StatusCode::BAD_REQUEST, errs, correlation_id);
            }
        };
        let request_hash: String =
            Sha256::digest(canonical(&body).to_string().as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        let now = Utc::now();
        let totals = Totals::for_lines(&new.lines, new.shipping_minor, 0);
        let order = StoredOrder {
            state: OrderState {
                order_id: order_id_for(key),
                status: OrderStatus::Placed,
                version: 1,
                customer: new.customer,
                lines: new.lines,
                currency: new.currency,
                totals,
                shipping_address: new.shipping_address,
                tracking_number: None,
                history: vec![StatusEntry { status: OrderStatus::Placed, at: now, reason: None }],
            },
            request_hash,
            correlation_id: correlation_id.to_string(),
            published: false,
        };
        let (order, status) = match self.orders.create(&order).await {
            Ok(Created::New) => (order, StatusCode::CREATED),
            Ok(Created::Existing(existing)) if existing.request_hash != order.request_hash => {
                return errors(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    vec![field_error("Idempotency-Key", "was already used for a different request")],
                    correlation_id,
                );
            }
            Ok(Created::Existing(existing)) => {
                info!(order_id = %existing.state.order_id, "idempotent replay");
                (*existing, StatusCode::OK)
            }
            Err(e) => {
                error!(error = %e, "order store unavailable");
                return errors(
                    StatusCode::SERVICE_UNAVAILABLE,
                    vec![field_error("body", "the order store is unavailable, retry later")],
                    correlation_id,
                );
            }
        };
        if !order.published {
            if let Err(e) = self.publish_placed(&order).await {
                error!(order_id = %order.state.order_id, error = %e, "order stored but OrderPlaced not published");
                let hint =
                    if key.is_some() { "retry with the same Idempotency-Key" } else { "retry with an Idempotency-Key" };
                return errors(
                    StatusCode::SERVICE_UNAVAILABLE,
                    vec![field_error("body", format!("the order was stored but not yet announced; {hint}"))],
                    correlation_id,
                );
            }
        }
        info!(order_id = %order.state.order_id, total_minor = order.state.totals.total_minor, "order placed");
        let mut response = json_response(status, &order.state, correlation_id);
        if let Ok(location) = format!("/orders/{}", order.state.order_id).parse() {
            response.headers_mut().insert("location", location);
        }
        response
    }

    async fn publish_placed(&self, order: &StoredOrder) -> Result<(), String> {
        let s = &order.state;
        let placed = OrderPlaced {
            order_id: s.order_id.clone(),
            customer: s.customer.clone(),
            lines: s.lines.clone(),
            currency: s.currency,
            totals: s.totals,
            shipping_address: s.shipping_address.clone(),
            placed_at: s.history.first().map(|h| h.at).unwrap_or_else(Utc::now),
        };
        let mut envelope = Envelope::new(placed, Some(order.correlation_id.clone()));
        // The same order always announces itself with the same event id, so a re-send after a
        // failure is a duplicate to every consumer, not a second order.
        envelope.metadata.event_id = Uuid::new_v5(&ID_NAMESPACE, format!("OrderPlaced/{}", s.order_id).as_bytes());
        self.publisher.publish(vec![OutboundEvent::from_envelope(&envelope)]).await.map_err(|e| e.to_string())?;
        if let Err(e) = self.orders.mark_published(&s.order_id).await {
            // Published; a replay would publish again with the same event id, which consumers drop.
            warn!(error = %e, "OrderPlaced published but not marked");
        }
        Ok(())
    }
}
