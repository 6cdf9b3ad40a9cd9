//! `webhooks-api`: the operator's routes for subscriptions. Every request comes through the HTTP
//! API's JWT authorizer (no verified caller: 401); the caller must then be an operator: in the
//! `operators` group, or, for a machine client, carrying the operator API key (kept in Secrets
//! Manager, compared in constant time). Anyone else signed in gets 403. The key is read at init,
//! again once it is `SECRET_MAX_AGE_SECONDS` old, and at once when a request's key does not match (at
//! most once a second), so a rotated key works at once and the old one stops working within that age.
//!
//! ```text
//! POST   /webhooks        {"url", "eventTypes"} ─► URL through the SSRF guard ─► 201 with the secret (shown once)
//! GET    /webhooks        ─► 200 {"webhooks": [...]} (no secrets)
//! DELETE /webhooks/{id}   ─► 204 (deliveries stop), or 404
//! ```

use std::sync::Arc;

use base64::Engine as _;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use orderflow_contracts::{AnyEvent, Inbound};
use serde::Serialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq;
use tracing::{error, info, Instrument};

use orderflow_harness::caller::Caller;
use orderflow_harness::secret::RotatingSecret;

use crate::guard;
use crate::subscriptions::{Subscription, SubscriptionStore};

/// The API: the store, the operator key and the guard's setting.
pub struct WebhooksApi {
    store: Arc<dyn SubscriptionStore>,
    api_key: Arc<RotatingSecret<String>>,
    allow_local: bool,
}

fn matches(given: &[u8], key: &str) -> bool {
    !key.is_empty() && bool::from(given.ct_eq(key.as_bytes()))
}

fn respond(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::Text(serde_json::to_string(body).expect("responses serialise")))
        .expect("a valid response")
}

fn refusal(status: StatusCode, field: &str, message: impl Into<String>) -> Response<Body> {
    respond(status, &json!({"errors": [{"field": field, "message": message.into()}]}))
}

/// A new signing secret: `whsec_` and 32 random bytes in base64 (Standard Webhooks' format).
fn new_secret() -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

impl WebhooksApi {
    /// The API over its store; requests must carry `x-api-key: <api_key>`.
    pub fn new(store: Arc<dyn SubscriptionStore>, api_key: String, allow_local: bool) -> Self {
        Self::rotating(store, Arc::new(RotatingSecret::fixed("operator API key", api_key)), allow_local)
    }

    /// As [`WebhooksApi::new`], with the key from a secret that may rotate.
    pub fn rotating(
        store: Arc<dyn SubscriptionStore>,
        api_key: Arc<RotatingSecret<String>>,
        allow_local: bool,
    ) -> Self {
        Self { store, api_key, allow_local }
    }

    /// Whether the request carries the current key. A key that does not match makes the secret be
    /// read again (a rotation), and is compared once more with a changed value.
    async fn authorised(&self, req: &Request) -> bool {
        let given = req.headers().get("x-api-key").map(|v| v.as_bytes()).unwrap_or_default();
        if given.is_empty() {
            return false;
        }
        let current = self.api_key.current().await;
        if matches(given, &current.value) {
            return true;
        }
        match self.api_key.refresh_after_rejection(current.generation).await {
            Ok(Some(fresh)) => matches(given, &fresh.value),
            Ok(None) => false,
            Err(e) => {
                error!(error = %e, "could not read the operator API key again");
                false
            }
        }
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
            if !caller.is_operator() && !self.authorised(&req).await {
                info!("refused: not an operator");
                return refusal(
                    StatusCode::FORBIDDEN,
                    "Authorization",
                    "operators only: sign in as a member of the operators group, or send the operator API key",
                );
            }
            let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            let route = segments.iter().rposition(|s| *s == "webhooks").map(|i| &segments[i..]).unwrap_or(&[]);
            let result = match (req.method(), route) {
                (&Method::POST, ["webhooks"]) => self.create(&req).await,
                (&Method::GET, ["webhooks"]) => self.list().await,
                (&Method::DELETE, ["webhooks", id]) => self.delete(id).await,
                _ => Ok(refusal(StatusCode::NOT_FOUND, "path", format!("no route for {} {path}", req.method()))),
            };
            result.unwrap_or_else(|e| {
                error!(error = %e, "subscription store unavailable");
                refusal(StatusCode::SERVICE_UNAVAILABLE, "body", "the subscription store is unavailable, retry later")
            })
        }
        .instrument(span)
        .await
    }

    async fn create(&self, req: &Request) -> Result<Response<Body>, orderflow_harness::StoreError> {
        let body: Value = match serde_json::from_slice(req.body().as_ref()) {
            Ok(v) => v,
            Err(e) => return Ok(refusal(StatusCode::BAD_REQUEST, "body", format!("is not valid JSON: {e}"))),
        };
        let Some(url) = body["url"].as_str() else {
            return Ok(refusal(StatusCode::BAD_REQUEST, "url", "is required"));
        };
        let event_types: Vec<String> = body["eventTypes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        if event_types.is_empty() {
            return Ok(refusal(StatusCode::BAD_REQUEST, "eventTypes", "must list at least one event type"));
        }
        if let Some(unknown) = event_types.iter().find(|t| !AnyEvent::DETAIL_TYPES.contains(&t.as_str())) {
            return Ok(refusal(
                StatusCode::BAD_REQUEST,
                "eventTypes",
                format!("unknown event type `{unknown}` (known: {})", AnyEvent::DETAIL_TYPES.join(", ")),
            ));
        }
        if let Err(why) = guard::check(url, self.allow_local).await {
            info!(%why, "subscription refused by the SSRF guard");
            return Ok(refusal(StatusCode::BAD_REQUEST, "url", why.to_string()));
        }
        let subscription = Subscription {
            id: uuid::Uuid::new_v4().to_string(),
            url: url.to_string(),
            event_types,
            secret: new_secret(),
            active: true,
            created_at: chrono::Utc::now().to_rfc3339(),
        };
        self.store.create(&subscription).await?;
        info!(subscription = %subscription.id, "subscription created");
        let mut shown = serde_json::to_value(&subscription).expect("subscriptions serialise");
        shown["secret"] = json!(subscription.secret);
        Ok(respond(StatusCode::CREATED, &shown))
    }

    async fn list(&self) -> Result<Response<Body>, orderflow_harness::StoreError> {
        Ok(respond(StatusCode::OK, &json!({"webhooks": self.store.all().await?})))
    }

    async fn delete(&self, id: &str) -> Result<Response<Body>, orderflow_harness::StoreError> {
        Ok(if self.store.deactivate(id).await? {
            Response::builder().status(StatusCode::NO_CONTENT).body(Body::Empty).expect("a valid response")
        } else {
            refusal(StatusCode::NOT_FOUND, "id", format!("no subscription `{id}`"))
        })
    }
}
