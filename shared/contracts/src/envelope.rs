//! The envelope every event's `detail` is wrapped in, and how a new event inherits the correlation of
//! the event that caused it.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::{Event, TraceContext};

/// Provenance of one event. Consumers deduplicate on `event_id`; logs and traces join on
/// `correlation_id`, which is set once where a flow starts (the HTTP request that placed the order) and
/// copied to every event caused by it. `causation_id` is the `event_id` of the direct cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// Unique per event; the idempotency key of every consumer.
    pub event_id: Uuid,
    /// Same as the EventBridge `detail-type`.
    pub event_type: String,
    /// Version of `data`'s schema.
    pub schema_version: u32,
    /// Shared by every event of one business flow.
    pub correlation_id: String,
    /// `event_id` of the event this one was caused by; absent where a flow starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// When it happened, as the producer saw it.
    pub occurred_at: DateTime<Utc>,
    /// The service (and function) that produced it, e.g. `orderflow.billing`.
    pub producer: String,
    /// The W3C trace context of the span that published it (`00-<trace>-<span>-<flags>`), so the
    /// spans of one flow link up across functions (see [`TraceContext`]). Absent from older events:
    /// [`Metadata::trace`] then derives one from the correlation id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Metadata {
    /// The trace context this event carries, or, when it carries none that is valid, the one derived
    /// from its correlation id (every event of the flow then shares the trace id all the same).
    pub fn trace(&self) -> TraceContext {
        self.traceparent
            .as_deref()
            .and_then(TraceContext::parse)
            .unwrap_or_else(|| TraceContext::derived(&self.correlation_id, &self.event_id))
    }
}

/// An event as it travels in EventBridge `detail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(bound(deserialize = "T: serde::de::DeserializeOwned"))]
pub struct Envelope<T> {
    /// Provenance.
    pub metadata: Metadata,
    /// The event.
    pub data: T,
}

/// An envelope whose data has not been decoded yet: the first step of reading any `detail`.
#[derive(Debug, Deserialize)]
pub struct RawEnvelope {
    /// Provenance.
    pub metadata: Metadata,
    /// The event, as JSON text of `metadata.schema_version`.
    pub data: Box<RawValue>,
}

impl<E: Event> Envelope<E> {
    /// The first event of a flow: a new correlation id unless the caller has one (e.g. from a
    /// request header), and no cause.
    ///
    /// It starts a new trace ([`TraceContext::new_root`]); [`Envelope::in_trace`] puts it in the
    /// invocation's own (X-Ray's) instead. Not one derived from the correlation id, which a caller
    /// may choose: which trace an order joins is not the caller's to say.
    pub fn new(data: E, correlation_id: Option<String>) -> Self {
        let mut envelope = Self::build(data, correlation_id.unwrap_or_else(|| Uuid::new_v4().to_string()), None);
        envelope.metadata.traceparent = Some(TraceContext::new_root().to_string());
        envelope
    }

    /// An event caused by `cause`: same correlation id, `causation_id` = the cause's event id.
    ///
    /// Its `event_id` is derived from the cause's id and this event's name (UUID v5), so a handler that
    /// is retried after a partial failure publishes the *same* event again, which downstream consumers
    /// then recognise as a duplicate instead of acting twice.
    ///
    /// It continues the cause's trace: its `traceparent` is the cause's (which the consumer harness
    /// sets to the span that handled the cause), or the one derived from the correlation id.
    pub fn caused_by(cause: &Metadata, data: E) -> Self {
        let mut envelope = Self::build(data, cause.correlation_id.clone(), Some(cause.event_id.to_string()));
        envelope.metadata.event_id = Uuid::new_v5(&cause.event_id, E::NAME.as_bytes());
        envelope.metadata.traceparent = Some(cause.trace().to_string());
        envelope
    }

    /// The same event in the trace `trace` (where a flow starts: the API's invocation's trace).
    pub fn in_trace(mut self, trace: TraceContext) -> Self {
        self.metadata.traceparent = Some(trace.to_string());
        self
    }

    /// One of several events of the same type caused by `cause` (a restock that ships several
    /// backorders): as [`Envelope::caused_by`], with `key` (e.g. the order id) in the derived id, so
    /// each is distinct and each is the same again when the handler is retried.
    pub fn caused_by_for(cause: &Metadata, data: E, key: &str) -> Self {
        let mut envelope = Self::caused_by(cause, data);
        envelope.metadata.event_id = Uuid::new_v5(&cause.event_id, format!("{}/{key}", E::NAME).as_bytes());
        envelope
    }

    /// The one event of its type about `subject` (an invoice's refund, an order's label), whatever
    /// caused it: as [`Envelope::caused_by`], but its id is derived from the type and `subject`
    /// alone, so every path that can announce it (the cancellation, a redelivered order, a restock)
    /// announces the *same* event, which consumers drop when it comes again.
    pub fn once_per(cause: &Metadata, data: E, subject: &str) -> Self {
        let mut envelope = Self::caused_by(cause, data);
        envelope.metadata.event_id = Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("{}/{subject}", E::NAME).as_bytes());
        envelope
    }

    fn build(data: E, correlation_id: String, causation_id: Option<String>) -> Self {
        Self {
            metadata: Metadata {
                event_id: Uuid::new_v4(),
                event_type: E::NAME.to_string(),
                schema_version: E::SCHEMA_VERSION,
                correlation_id,
                causation_id,
                occurred_at: Utc::now(),
                producer: E::SOURCE.to_string(),
                traceparent: None,
            },
            data,
        }
    }
}
