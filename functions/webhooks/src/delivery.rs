//! `webhooks-delivery`: one event to one subscriber, signed per Standard Webhooks.
//!
//! The body is `{"type": <detail-type>, "timestamp": <occurredAt>, "data": <the event>}`; the headers
//! are `webhook-id` (the event id: the same event always has the same id, so a subscriber can drop
//! a repeat), `webhook-timestamp` (seconds) and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of
//! `id.timestamp.body` with the subscription's secret).
//!
//! | subscriber's answer | outcome |
//! | --- | --- |
//! | 2xx | delivered |
//! | 410 Gone | the subscription is deactivated; no more deliveries |
//! | 429, 5xx, timeout (5 s), connection failure | retried after its `Retry-After` or a growing delay |
//! | the URL's host does not resolve (lookup failed or took over 2 s) | retried after a growing delay |
//! | any other status, a refused URL (SSRF guard), a redirect | permanent: dead-lettered with the reason |

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use orderflow_contracts::{AnyEvent, Inbound};
use orderflow_harness::error::retry_after;
use orderflow_harness::{Handler, HandlerError, RecordContext};
use serde_json::json;
use tracing::{info, warn};

use crate::guard::{self, Checked};
use crate::subscriptions::SubscriptionStore;

/// How long one POST to a subscriber may take, connection included.
pub const POST_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest one delivery may take: the subscription's read, the target's lookup
/// ([`guard::LOOKUP_TIMEOUT`]), one POST, and the harness's claim and completion.
pub const RECORD_BUDGET: Duration = Duration::from_secs(9);

/// A subscriber's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Its `Retry-After`, in seconds, if any.
    pub retry_after: Option<Duration>,
}

/// POSTs to subscribers.
#[async_trait]
pub trait Poster: Send + Sync {
    /// POSTs `body` with `headers` to the checked target; `Err` when no answer came (timeout,
    /// connection refused).
    async fn post(&self, target: &Checked, headers: &[(&str, String)], body: &str) -> Result<Answer, String>;
}

/// The HTTP adapter: connects to the address the guard checked (never re-resolving the name), gives
/// up after 5 s, and follows no redirect (a redirect could lead anywhere the guard did not check).
#[derive(Debug, Clone, Default)]
pub struct HttpPoster;

#[async_trait]
impl Poster for HttpPoster {
    async fn post(&self, target: &Checked, headers: &[(&str, String)], body: &str) -> Result<Answer, String> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(2))
            .timeout(POST_TIMEOUT)
            .resolve(&target.host, target.addresses[0])
            .build()
            .map_err(|e| e.to_string())?;
        let mut request = client.post(target.url.clone()).header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.body(body.to_string()).send().await.map_err(|e| {
            if e.is_timeout() {
                "timed out after 5 s".to_string()
            } else {
                format!("no answer ({})", e.without_url())
            }
        })?;
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, SystemTime::now()));
        Ok(Answer { status: response.status().as_u16(), retry_after })
    }
}

/// The delivery handler.
pub struct Delivery {
    subscriptions: Arc<dyn SubscriptionStore>,
    poster: Arc<dyn Poster>,
    allow_local: bool,
}

impl Delivery {
    /// The handler; `allow_local` admits plain http and loopback targets (local deployment only).
    pub fn new(subscriptions: Arc<dyn SubscriptionStore>, poster: Arc<dyn Poster>, allow_local: bool) -> Self {
        Self { subscriptions, poster, allow_local }
    }
}

/// HTTP headers as name and value.
pub type Headers = Vec<(&'static str, String)>;

/// The body and Standard Webhooks headers of one delivery.
pub fn signed(event: &AnyEvent, ctx: &RecordContext, secret: &str) -> Result<(String, Headers), String> {
    let body = json!({"type": event.name(), "timestamp": ctx.metadata.occurred_at, "data": event.data()}).to_string();
    let id = ctx.metadata.event_id.to_string();
    let timestamp = chrono::Utc::now().timestamp();
    let signature = standardwebhooks::Webhook::new(secret)
        .and_then(|w| w.sign(&id, timestamp, body.as_bytes()))
        .map_err(|e| format!("cannot sign with the subscription's secret: {e:?}"))?;
    Ok((body, vec![("webhook-id", id), ("webhook-timestamp", timestamp.to_string()), ("webhook-signature", signature)]))
}

#[async_trait]
impl Handler<AnyEvent> for Delivery {
    async fn handle(&self, event: AnyEvent, ctx: &RecordContext) -> Result<(), HandlerError> {
        let id = ctx.scope.as_deref().ok_or_else(|| HandlerError::permanent("a delivery without a subscriptionId"))?;
        let Some(subscription) = self.subscriptions.get(id).await? else {
            info!(subscription = id, "subscription deleted: nothing to deliver");
            return Ok(());
        };
        if !subscription.active {
            info!(subscription = id, "subscription inactive: nothing to deliver");
            return Ok(());
        }
        let target = guard::check(&subscription.url, self.allow_local).await.map_err(|why| {
            let reason = format!("subscription {id}: the URL {why}");
            if why.is_permanent() {
                HandlerError::permanent(reason)
            } else {
                // DNS did not answer (or not in time): it may later.
                HandlerError::retryable(reason)
            }
        })?;
        let (body, headers) = signed(&event, ctx, &subscription.secret).map_err(HandlerError::permanent)?;
        let answer = match self.poster.post(&target, &headers, &body).await {
            Ok(answer) => answer,
            Err(why) => return Err(HandlerError::retryable(format!("subscription {id}: {why}"))),
        };
        match answer.status {
            200..=299 => {
                info!(subscription = id, status = answer.status, "webhook delivered");
                Ok(())
            }
            410 => {
                self.subscriptions.deactivate(id).await?;
                warn!(subscription = id, "subscriber answered 410 Gone: subscription deactivated");
                Ok(())
            }
            429 | 500..=599 => {
                Err(HandlerError::retry(format!("subscription {id}: HTTP {}", answer.status), answer.retry_after))
            }
            other => Err(HandlerError::permanent(format!("subscription {id}: HTTP {other}"))),
        }
    }
}
