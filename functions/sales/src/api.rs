//! `sales-api`: the orders HTTP API behind API Gateway (HTTP API, payload 2.0). Routing and answers
//! only: what a valid request is lives in [`crate::validation`], what things cost in
//! [`crate::catalogue`].
//!
//! ```text
//! every route: no verified caller (the JWT authorizer's claims) ─► 401
//! POST /orders ─► validate (400 naming every bad field) ─► price from the catalogue (400: unknown SKU)
//!              ─► the customer from the caller's sign-in (403 without a verified email)
//!              ─► Idempotency-Key? claim it for this caller (422: used for another request)
//!              ─► count it against the caller's orders this hour (429 with Retry-After past the limit)
//!              ─► store as Placed with OrderPlaced in the item's outbox (one conditional put)
//!              ─► OrderPlaced on the bus, marked sent (crate::announce; within a second) ─► 201
//!                        └─ the table's stream ─► outbox relay ─► OrderPlaced, if not marked
//! (first: Content-Type application/json or 415, a body of at most MAX_BODY_BYTES or 413, a
//! printable ASCII Idempotency-Key or 400)
//! POST /orders/{id}/cancel ─► not the caller's order: 404 ─► Placed or Backordered: Cancelling, with
//!                   OrderStatusChanged and OrderCancelled in the same write's outbox ─► 202
//!                   └► Cancelling or Cancelled already ─► 202 (a retry changes nothing)
//!                   └► ReadyToShip or PaymentFailed ─► 409 naming the status
//! GET /orders/{id} ─► not an id Sales issues: 404, nothing asked ─► the order cache (when configured) ─► hit: 200 from the cache
//!                   └► miss ─► orders table ─► 200, and the cache filled (newest version wins)
//!                   └► cache down ─► orders table ─► 200 (the cache never makes a read fail)
//!                   └► another caller's order ─► 404, the same answer as no order
//!                   the `x-cache` header says which: hit, miss or bypass
//! ```
//!
//! Storing and announcing are one write, so there is no order that was stored but never announced,
//! whatever fails after the put. An `Idempotency-Key` header makes POST safe to retry: the key is the
//! caller's own ([`crate::callers`]) and stands for the random order id of its first request, so a
//! retry finds the order it created and answers it (200) instead of placing a second one. The same
//! key with a different body is refused (422).

use std::sync::Arc;

use chrono::Utc;
use lambda_http::http::{HeaderMap, Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use orderflow_contracts::canonical::canonical;
use orderflow_contracts::{
    is_e164, CancelledBy, Customer, Envelope, OrderPlaced, OrderState, OrderStatus, StatusEntry, TraceContext,
};
use orderflow_harness::caller::Caller;
use orderflow_harness::OutboundEvent;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tracing::{error, info, warn, Instrument};
use uuid::Uuid;

use orderflow_order_cache::OrderCache;

use crate::callers::{CallerRecords, KeyClaim, Quota};
use crate::catalogue::{price, Catalogue};
use crate::orders::{cancel, Cancellation, Created, OrderStore, StoredOrder};
use crate::validation::{
    field_error, is_forbidden_char, is_order_id, is_plain_email, validate, FieldError, ID_NAMESPACE, MAX_BODY_BYTES,
    MAX_TEXT,
};

/// How many orders one caller may place in a clock hour unless configured otherwise
/// (`ORDERS_PER_CALLER_PER_HOUR`).
pub const ORDERS_PER_CALLER_PER_HOUR: u32 = 20;

/// The HTTP API's handler: the order store, the per-caller records, the catalogue and the shop's
/// shipping charge.
pub struct SalesApi {
    orders: Arc<dyn OrderStore>,
    callers: Arc<dyn CallerRecords>,
    catalogue: Arc<dyn Catalogue>,
    shipping_minor: i64,
    cache: Option<Arc<dyn OrderCache>>,
    orders_per_hour: u32,
}

fn json_response(status: StatusCode, body: &impl Serialize, correlation_id: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("x-correlation-id", correlation_id)
        .body(Body::Text(serde_json::to_string(body).expect("responses serialise")))
        .expect("a valid response")
}

fn with_cache_header(mut response: Response<Body>, state: &'static str) -> Response<Body> {
    response.headers_mut().insert("x-cache", lambda_http::http::HeaderValue::from_static(state));
    response
}

/// An error answer: the fields and what is wrong with each, and the request id to quote (never an
/// internal error's text: that goes to the log under the same id).
fn errors(status: StatusCode, errors: Vec<FieldError>, correlation_id: &str) -> Response<Body> {
    json_response(status, &json!({ "errors": errors, "requestId": correlation_id }), correlation_id)
}

fn unavailable(field: &str, correlation_id: &str) -> Response<Body> {
    errors(
        StatusCode::SERVICE_UNAVAILABLE,
        vec![field_error(field, "the shop is unavailable, retry later")],
        correlation_id,
    )
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
}

fn no_order(correlation_id: &str) -> Response<Body> {
    errors(StatusCode::NOT_FOUND, vec![field_error("orderId", "no such order")], correlation_id)
}

/// The customer an order from `caller` is for: the sign-in's subject, verified email and verified
/// phone (none: no texts), and the name the body gives or else the sign-in's.
fn customer_of(caller: &Caller, name: Option<String>) -> Result<Customer, (StatusCode, FieldError)> {
    let email = caller.email.clone().filter(|e| is_plain_email(e)).ok_or_else(|| {
        (StatusCode::FORBIDDEN, field_error("Authorization", "your sign-in has no verified email address"))
    })?;
    // The sign-in's name is held to the body's rules (a user may write their own name claim).
    let signed_in_name = caller.name.clone().filter(|n| n.len() <= MAX_TEXT && !n.chars().any(is_forbidden_char));
    let name = name.or(signed_in_name).ok_or_else(|| {
        (StatusCode::BAD_REQUEST, field_error("customer.name", "is required (your sign-in has no usable name)"))
    })?;
    Ok(Customer {
        customer_id: caller.subject.clone(),
        name,
        email,
        phone: caller.phone.clone().filter(|p| is_e164(p)).unwrap_or_default(),
    })
}

/// The trace this invocation belongs to: the X-Ray trace Lambda started for it (`Tracing: Active`;
/// Lambda makes its own, whatever trace header a caller sends an HTTP API), if any. Without one,
/// the order starts a trace of its own ([`TraceContext::new_root`]). A caller's `traceparent` or
/// correlation id never picks the trace: which trace an order joins, and whether it is recorded,
/// are not the caller's to choose.
pub fn invocation_trace(req: &Request) -> Option<TraceContext> {
    req.lambda_context_ref().and_then(|c| c.xray_trace_id.as_deref()).and_then(TraceContext::from_xray)
}

/// The `OrderPlaced` announcing `order`, in the trace `trace`. Its event id is derived from the
/// order id, so the order is always announced as the same event, however often the relay sends it.
pub fn order_placed(order: &StoredOrder, trace: TraceContext) -> OutboundEvent {
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
    envelope.metadata.event_id = Uuid::new_v5(&ID_NAMESPACE, format!("OrderPlaced/{}", s.order_id).as_bytes());
    OutboundEvent::from_envelope(&envelope.in_trace(trace))
}

impl SalesApi {
    /// The API over its ports; `shipping_minor` is the flat shipping charge the shop sets. Each
    /// caller may place [`ORDERS_PER_CALLER_PER_HOUR`] orders an hour.
    pub fn new(
        orders: Arc<dyn OrderStore>,
        callers: Arc<dyn CallerRecords>,
        catalogue: Arc<dyn Catalogue>,
        shipping_minor: i64,
    ) -> Self {
        Self { orders, callers, catalogue, shipping_minor, cache: None, orders_per_hour: ORDERS_PER_CALLER_PER_HOUR }
    }

    /// Lets each caller place `limit` orders per clock hour.
    pub fn with_orders_per_hour(mut self, limit: u32) -> Self {
        self.orders_per_hour = limit;
        self
    }

    /// Reads orders through `cache` (see the module's diagram).
    pub fn with_cache(mut self, cache: Arc<dyn OrderCache>) -> Self {
        self.cache = Some(cache);
        self
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
        let path = req.uri().path().trim_end_matches('/').to_string();
        let span =
            tracing::info_span!("request", method = %req.method(), path = %path, correlation_id = %correlation_id);
        async {
            let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            // API Gateway may keep a stage prefix; the route is the tail.
            let route = segments.iter().rposition(|s| *s == "orders").map(|i| &segments[i..]).unwrap_or(&[]);
            let Some(caller) = Caller::of_request(&req) else {
                return errors(
                    StatusCode::UNAUTHORIZED,
                    vec![field_error("Authorization", "sign in: a valid bearer token is required")],
                    &correlation_id,
                );
            };
            match (req.method(), route) {
                (&Method::POST, ["orders"]) => self.place(&req, &caller, &correlation_id).await,
                (&Method::GET, ["orders", id]) => self.get(id, &caller, &correlation_id).await,
                (&Method::POST, ["orders", id, "cancel"]) => self.cancel(id, &caller, &correlation_id).await,
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
        .instrument(span)
        .await
    }

    async fn cancel(&self, order_id: &str, caller: &Caller, correlation_id: &str) -> Response<Body> {
        if !is_order_id(order_id) {
            return no_order(correlation_id);
        }
        // Only the order's customer, and another caller learns nothing: the same 404 as no order.
        match self.orders.get(order_id).await {
            Ok(Some(order)) if order.state.customer.customer_id == caller.subject => {}
            Ok(_) => return no_order(correlation_id),
            Err(e) => {
                error!(error = %e, "order store unavailable");
                return unavailable("orderId", correlation_id);
            }
        }
        match cancel(self.orders.as_ref(), order_id, CancelledBy::Customer, None, correlation_id).await {
            Ok(Cancellation::Accepted(state)) => {
                info!(order_id, "order cancelled by its customer");
                json_response(StatusCode::ACCEPTED, &state, correlation_id)
            }
            Ok(Cancellation::AlreadyCancelled(state)) => json_response(StatusCode::ACCEPTED, &state, correlation_id),
            Ok(Cancellation::Refused(state)) => errors(
                StatusCode::CONFLICT,
                vec![field_error(
                    "status",
                    format!("the order is {}: it can no longer be cancelled", state.status.as_str()),
                )],
                correlation_id,
            ),
            Ok(Cancellation::Unknown) => no_order(correlation_id),
            Err(e) => {
                error!(error = %e, "could not cancel the order");
                unavailable("orderId", correlation_id)
            }
        }
    }

    async fn get(&self, order_id: &str, caller: &Caller, correlation_id: &str) -> Response<Body> {
        if !is_order_id(order_id) {
            // Not an id Sales issues: no order, and nothing asked of the cache or the table.
            return no_order(correlation_id);
        }
        let mut cache_state = "bypass";
        if let Some(cache) = &self.cache {
            match cache.get(order_id).await {
                // Another caller's order is answered as no order, header and all: neither its
                // existence nor its being cached is told.
                Ok(Some(order)) if order.customer.customer_id != caller.subject => {
                    return with_cache_header(no_order(correlation_id), "miss")
                }
                Ok(Some(order)) => {
                    return with_cache_header(json_response(StatusCode::OK, &order, correlation_id), "hit")
                }
                Ok(None) => cache_state = "miss",
                Err(e) => warn!(error = %e, "order cache unavailable: reading the orders table"),
            }
        }
        let response = self.get_from_table(order_id, caller, correlation_id).await;
        with_cache_header(response, cache_state)
    }

    async fn get_from_table(&self, order_id: &str, caller: &Caller, correlation_id: &str) -> Response<Body> {
        match self.orders.get(order_id).await {
            Ok(Some(order)) if order.state.customer.customer_id != caller.subject => no_order(correlation_id),
            Ok(Some(order)) => {
                if let Some(cache) = &self.cache {
                    if let Err(e) = cache.put_if_newer(&order.state).await {
                        warn!(error = %e, "could not fill the order cache");
                    }
                }
                json_response(StatusCode::OK, &order.state, correlation_id)
            }
            Ok(None) => no_order(correlation_id),
            Err(e) => {
                error!(error = %e, "order store unavailable");
                unavailable("orderId", correlation_id)
            }
        }
    }

    async fn place(&self, req: &Request, caller: &Caller, correlation_id: &str) -> Response<Body> {
        let json_content = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
        if !json_content {
            return errors(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                vec![field_error("Content-Type", "must be application/json")],
                correlation_id,
            );
        }
        if req.body().len() > MAX_BODY_BYTES {
            return errors(
                StatusCode::PAYLOAD_TOO_LARGE,
                vec![field_error("body", format!("must be at most {MAX_BODY_BYTES} bytes"))],
                correlation_id,
            );
        }
        // A key that is there but is not printable ASCII is refused, never taken for no key (which
        // would place a second order on a retry).
        let raw_key = req.headers().get("idempotency-key");
        let key = raw_key.and_then(|v| v.to_str().ok()).map(str::trim).filter(|k| !k.is_empty());
        if raw_key.is_some() && key.is_none_or(|k| !k.bytes().all(|b| b.is_ascii_graphic())) {
            return errors(
                StatusCode::BAD_REQUEST,
                vec![field_error("Idempotency-Key", "must be printable ASCII without spaces")],
                correlation_id,
            );
        }
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
        let request = match validate(&body) {
            Ok(request) => request,
            Err(errs) => {
                info!(invalid_fields = ?errs.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), "order refused");
                return errors(StatusCode::BAD_REQUEST, errs, correlation_id);
            }
        };
        let skus: Vec<String> = request.lines.iter().map(|l| l.sku.clone()).collect();
        let products = match self.catalogue.products(&skus).await {
            Ok(products) => products,
            Err(e) => {
                error!(error = %e, "catalogue unavailable");
                return unavailable("lines", correlation_id);
            }
        };
        let (lines, totals) = match price(&request, &products, self.shipping_minor) {
            Ok(priced) => priced,
            Err(errs) => {
                info!(invalid_fields = ?errs.iter().map(|e| e.field.as_str()).collect::<Vec<_>>(), "order refused");
                return errors(StatusCode::BAD_REQUEST, errs, correlation_id);
            }
        };
        let customer = match customer_of(caller, request.customer_name.clone()) {
            Ok(customer) => customer,
            Err((status, error)) => return errors(status, vec![error], correlation_id),
        };
        let request_hash: String =
            Sha256::digest(canonical(&body).to_string().as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        let now = Utc::now();
        let mut order_id = Uuid::new_v4().to_string();
        let mut claimed_now = false;
        if let Some(key) = key {
            match self.callers.claim_key(&caller.subject, key, &order_id, &request_hash, now).await {
                Ok(KeyClaim::New) => claimed_now = true,
                Ok(KeyClaim::Existing { request_hash: first, .. }) if first != request_hash => {
                    return errors(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        vec![field_error("Idempotency-Key", "was already used for a different request")],
                        correlation_id,
                    );
                }
                Ok(KeyClaim::Existing { order_id: first, .. }) => match self.orders.get(&first).await {
                    Ok(Some(existing)) if existing.state.customer.customer_id == caller.subject => {
                        info!(order_id = %first, "idempotent replay");
                        return self.placed(&existing, StatusCode::OK, correlation_id);
                    }
                    // Claimed, but the order was never stored (the process stopped between the
                    // two writes, or the store failed): store it now, under the claimed id.
                    Ok(_) => order_id = first,
                    Err(e) => {
                        error!(error = %e, "order store unavailable");
                        return unavailable("body", correlation_id);
                    }
                },
                Err(e) => {
                    error!(error = %e, "caller records unavailable");
                    return unavailable("body", correlation_id);
                }
            }
        }
        match self.callers.count_order(&caller.subject, self.orders_per_hour, now).await {
            Ok(Quota::Allowed) => {}
            Ok(Quota::Exceeded { retry_at }) => {
                info!(limit = self.orders_per_hour, "order refused: the caller's hourly limit");
                // The key stands for no order: let it go, so refused requests leave nothing behind.
                if let (Some(key), true) = (key, claimed_now) {
                    if let Err(e) = self.callers.release_key(&caller.subject, key).await {
                        warn!(error = %e, "could not release the idempotency key of a refused order");
                    }
                }
                let mut response = errors(
                    StatusCode::TOO_MANY_REQUESTS,
                    vec![field_error(
                        "body",
                        format!(
                            "at most {} orders an hour; retry after {}",
                            self.orders_per_hour,
                            retry_at.to_rfc3339()
                        ),
                    )],
                    correlation_id,
                );
                let seconds = (retry_at - now).num_seconds().max(1);
                if let Ok(value) = seconds.to_string().parse() {
                    response.headers_mut().insert("retry-after", value);
                }
                return response;
            }
            Err(e) => {
                error!(error = %e, "caller records unavailable");
                return unavailable("body", correlation_id);
            }
        }
        let order = StoredOrder {
            state: OrderState {
                order_id,
                status: OrderStatus::Placed,
                version: 1,
                customer,
                lines,
                currency: request.currency,
                totals,
                shipping_address: request.shipping_address,
                tracking_number: None,
                history: vec![StatusEntry { status: OrderStatus::Placed, at: now, reason: None }],
                refunded_minor: None,
            },
            request_hash,
            correlation_id: correlation_id.to_string(),
        };
        let trace = invocation_trace(req).unwrap_or_else(TraceContext::new_root);
        let announcement = order_placed(&order, trace);
        let (order, status, trace) = match self.orders.create(&order, &announcement).await {
            // The trace this order's events travel in (a replay's is the first request's).
            Ok(Created::New) => (order, StatusCode::CREATED, Some(trace)),
            // Only a claimed id can already exist, and only the same caller's request claims it.
            Ok(Created::Existing(existing))
                if existing.request_hash != order.request_hash
                    || existing.state.customer.customer_id != caller.subject =>
            {
                return errors(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    vec![field_error("Idempotency-Key", "was already used for a different request")],
                    correlation_id,
                );
            }
            Ok(Created::Existing(existing)) => {
                info!(order_id = %existing.state.order_id, "idempotent replay");
                (*existing, StatusCode::OK, None)
            }
            Err(e) => {
                error!(error = %e, "order store unavailable");
                return unavailable("body", correlation_id);
            }
        };
        info!(order_id = %order.state.order_id, total_minor = order.state.totals.total_minor,
            trace_id = trace.map(|t| t.trace_id_hex()), span_id = trace.map(|t| t.span_id_hex()), "order placed");
        self.placed(&order, status, correlation_id)
    }

    fn placed(&self, order: &StoredOrder, status: StatusCode, correlation_id: &str) -> Response<Body> {
        let mut response = json_response(status, &order.state, correlation_id);
        if let Ok(location) = format!("/orders/{}", order.state.order_id).parse() {
            response.headers_mut().insert("location", location);
        }
        response
    }
}
