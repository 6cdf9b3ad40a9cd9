//! Webhooks: subscribed systems get every event they asked for, POSTed and signed per Standard
//! Webhooks, each subscriber's deliveries independent of the others'.
//!
//! ```text
//! operator ─► webhooks-api (x-api-key) ─► subscriptions table          (api, subscriptions, guard)
//! bus ─► fan-out queue ─► webhooks-fanout ─► deliveries queue: one message per matching subscription
//!        (fanout)              └─ message attribute subscriptionId; idempotency per event and subscription
//! deliveries queue ─► webhooks-delivery ─► SSRF guard ─► POST signed (delivery)
//!        2xx done · 410 subscription deactivated · 429/5xx/timeout retry after · other 4xx DLQ
//! ```
//!
//! A slow or failing subscriber only holds back its own messages on the deliveries queue (each is
//! retried after its own delay), never another subscriber's.

pub mod api;
pub mod delivery;
pub mod fanout;
pub mod guard;
pub mod subscriptions;

/// The message attribute naming the subscription a delivery is for.
pub const SUBSCRIPTION_ATTRIBUTE: &str = "subscriptionId";
