//! Publishing events to the bus.
//!
//! `PutEvents` takes at most 10 entries and 256 KB per call and can fail *per entry* while the call as
//! a whole succeeds (`FailedEntryCount > 0`). [`ChunkedPublisher`] cuts a list of events into legal
//! requests, resends only the entries that failed with a retryable error (throttling, an internal
//! error, a timed-out or 5xx call), with exponential backoff and jitter, a bounded number of times and
//! never past the invocation's deadline ([`crate::deadline`]), and then reports exactly which events
//! could not be sent and whether a later attempt may succeed. [`EventBridgeApi`] is the thin SDK
//! adapter under it; tests put a scripted fake there instead.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use backon::{BackoffBuilder, ExponentialBuilder};
use orderflow_contracts::{Envelope, Event, TraceContext};

/// `PutEvents`' entry limit per request.
pub const MAX_ENTRIES: usize = 10;
/// `PutEvents`' size limit per request, in bytes, as EventBridge counts them.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

/// Per-entry error codes worth resending: EventBridge was busy or failed inside. Anything else
/// (`MalformedDetail`, `InvalidArgument`, `AccessDeniedException`, ...) fails the same way again.
pub const RETRYABLE_ENTRY_CODES: &[&str] =
    &["ThrottlingException", "InternalFailure", "InternalException", "ServiceUnavailable"];

/// Time kept back before the deadline for reporting the batch once resending stops.
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

/// One event ready for the bus. Serialisable, so a service can store it beside the state change it
/// announces (a transactional outbox) and a relay can publish it later, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundEvent {
    /// The envelope's event id (for error reports).
    pub event_id: String,
    /// EventBridge `source`.
    pub source: String,
    /// EventBridge `detail-type`.
    pub detail_type: String,
    /// EventBridge `detail`: the envelope as JSON.
    pub detail: String,
    /// EventBridge `TraceHeader`: the envelope's trace context in X-Ray's form, so the bus hands the
    /// trace on to its targets (and X-Ray, with `Tracing: Active`, links the consumers' invocations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_header: Option<String>,
}

impl OutboundEvent {
    /// The bus entry for an envelope.
    pub fn from_envelope<E: Event>(envelope: &Envelope<E>) -> Self {
        Self {
            event_id: envelope.metadata.event_id.to_string(),
            source: E::SOURCE.to_string(),
            detail_type: E::NAME.to_string(),
            detail: serde_json::to_string(envelope).expect("envelopes always serialise"),
            trace_header: envelope
                .metadata
                .traceparent
                .as_deref()
                .and_then(TraceContext::parse)
                .and_then(|t| t.xray_header(std::time::SystemTime::now())),
        }
    }

    /// The entry's size as EventBridge counts it towards the 256 KB limit.
    pub fn size(&self) -> usize {
        // Time (14 bytes when set; we let EventBridge set it) + Source + DetailType + Detail.
        14 + self.source.len() + self.detail_type.len() + self.detail.len()
    }
}

/// An event that could not be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedEntry {
    /// Its event id.
    pub event_id: String,
    /// Its detail-type.
    pub detail_type: String,
    /// EventBridge's error code, e.g. `ThrottlingException`.
    pub code: String,
    /// EventBridge's message.
    pub message: String,
}

/// Why publishing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// Some entries still failed when resending stopped (attempts used up, a non-retryable error,
    /// or the deadline near); the others were sent.
    #[error("{} of {total} events not published after {attempts} attempt(s): {}", failed.len(),
        failed.iter().map(|f| format!("{} {} ({}: {})", f.detail_type, f.event_id, f.code, f.message)).collect::<Vec<_>>().join("; "))]
    NotPublished {
        /// The events that were not sent.
        failed: Vec<FailedEntry>,
        /// How many events were asked for.
        total: usize,
        /// Attempts made.
        attempts: usize,
        /// Whether every failure was of a kind a later attempt may fix.
        retryable: bool,
    },
    /// One event alone is over the request limit: no resend can help.
    #[error("event {event_id} ({detail_type}) is {size} bytes, over PutEvents' {MAX_REQUEST_BYTES}-byte limit")]
    TooLarge {
        /// Its event id.
        event_id: String,
        /// Its detail-type.
        detail_type: String,
        /// Its size.
        size: usize,
    },
}

impl PublishError {
    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, PublishError::NotPublished { retryable: true, .. })
    }
}

/// The port handlers publish through.
#[async_trait]
pub trait EventPublisher: Send + Sync {
    /// Publishes every event, or says which ones could not be.
    async fn publish(&self, events: Vec<OutboundEvent>) -> Result<(), PublishError>;
}

/// A whole `PutEvents` call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    /// What went wrong.
    pub message: String,
    /// Timeouts, connection failures, throttling and 5xx are worth another attempt; a refused request
    /// (validation, access denied, unknown bus) is not.
    pub retryable: bool,
}

/// One raw `PutEvents` call: per entry, `None` when accepted or `Some((code, message))` when not.
/// An `Err` means the whole call failed.
#[async_trait]
pub trait PutEventsApi: Send + Sync {
    /// Sends up to [`MAX_ENTRIES`] entries.
    async fn put_events(&self, entries: &[OutboundEvent]) -> Result<Vec<Option<(String, String)>>, CallFailure>;
}

#[cfg(feature = "aws")]
fn call_failure<E, R>(e: aws_sdk_eventbridge::error::SdkError<E, R>) -> CallFailure
where
    E: aws_sdk_eventbridge::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    use aws_sdk_eventbridge::error::SdkError;
    let retryable = match &e {
        SdkError::ConstructionFailure(_) => false,
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default();
            RETRYABLE_ENTRY_CODES.contains(&code) || code.contains("Throttl") || code.is_empty()
        }
        // Timeouts, dispatch failures, unreadable responses.
        _ => true,
    };
    CallFailure { message: aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string(), retryable }
}

#[cfg(feature = "aws")]
/// The SDK adapter: the client and the bus it sends to.
#[derive(Debug, Clone)]
pub struct EventBridgeApi {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

#[cfg(feature = "aws")]
impl EventBridgeApi {
    /// Sends to `bus` (name or ARN).
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        Self { client, bus: bus.into() }
    }
}

#[cfg(feature = "aws")]
#[async_trait]
impl PutEventsApi for EventBridgeApi {
    async fn put_events(&self, entries: &[OutboundEvent]) -> Result<Vec<Option<(String, String)>>, CallFailure> {
        let mut req = self.client.put_events();
        for e in entries {
            req = req.entries(
                aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
                    .event_bus_name(&self.bus)
                    .source(&e.source)
                    .detail_type(&e.detail_type)
                    .detail(&e.detail)
                    .set_trace_header(e.trace_header.clone())
                    .build(),
            );
        }
        let out = req.send().await.map_err(call_failure)?;
        let results = out.entries();
        if results.len() != entries.len() {
            // The API promises one result per entry in order; without that we cannot tell which failed.
            return Err(CallFailure {
                message: format!("PutEvents answered {} results for {} entries", results.len(), entries.len()),
                retryable: true,
            });
        }
        Ok(results
            .iter()
            .map(|r| r.error_code().map(|code| (code.to_string(), r.error_message().unwrap_or_default().to_string())))
            .collect())
    }
}

/// Chunking, per-entry resend and backoff over any [`PutEventsApi`].
#[derive(Debug, Clone)]
pub struct ChunkedPublisher<A> {
    api: A,
    attempts: usize,
    backoff: ExponentialBuilder,
}

#[cfg(feature = "aws")]
/// The production publisher.
pub type EventBridgePublisher = ChunkedPublisher<EventBridgeApi>;

#[cfg(feature = "aws")]
impl EventBridgePublisher {
    /// Publishes to `bus` with the default retry policy.
    pub fn eventbridge(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> Self {
        ChunkedPublisher::new(EventBridgeApi::new(client, bus))
    }
}

impl<A: PutEventsApi> ChunkedPublisher<A> {
    /// Four attempts, 50 ms doubling up to 1 s, with jitter: well inside a Lambda timeout, and long
    /// enough to ride out a throttling burst.
    pub fn new(api: A) -> Self {
        Self::with_policy(api, 4, Duration::from_millis(50))
    }

    /// A custom policy: `attempts` in all, the first resend after about `first_delay`.
    pub fn with_policy(api: A, attempts: usize, first_delay: Duration) -> Self {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(first_delay)
            .with_max_delay(Duration::from_secs(1))
            .with_max_times(attempts.saturating_sub(1))
            .with_jitter();
        Self { api, attempts: attempts.max(1), backoff }
    }

    /// The wrapped API (tests inspect their fake through it).
    pub fn api(&self) -> &A {
        &self.api
    }
}

/// Cuts `events` into requests of at most [`MAX_ENTRIES`] entries and [`MAX_REQUEST_BYTES`] bytes.
pub fn chunks(events: &[OutboundEvent]) -> Result<Vec<&[OutboundEvent]>, PublishError> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, e) in events.iter().enumerate() {
        let size = e.size();
        if size > MAX_REQUEST_BYTES {
            return Err(PublishError::TooLarge {
                event_id: e.event_id.clone(),
                detail_type: e.detail_type.clone(),
                size,
            });
        }
        if i - start == MAX_ENTRIES || bytes + size > MAX_REQUEST_BYTES {
            out.push(&events[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < events.len() {
        out.push(&events[start..]);
    }
    Ok(out)
}

#[async_trait]
impl<A: PutEventsApi> EventPublisher for ChunkedPublisher<A> {
    async fn publish(&self, events: Vec<OutboundEvent>) -> Result<(), PublishError> {
        let total = events.len();
        let mut pending = events;
        let mut failed: Vec<FailedEntry> = Vec::new();
        let mut delays = self.backoff.build();
        let mut attempt = 0;
        loop {
            attempt += 1;
            failed.clear();
            // (entry, retryable) for every entry not accepted in this attempt.
            let mut still_pending: Vec<(OutboundEvent, bool)> = Vec::new();
            let mut fail = |entry: &OutboundEvent, code: String, message: String, retryable: bool| {
                failed.push(FailedEntry {
                    event_id: entry.event_id.clone(),
                    detail_type: entry.detail_type.clone(),
                    code,
                    message,
                });
                still_pending.push((entry.clone(), retryable));
            };
            for chunk in chunks(&pending)? {
                match self.api.put_events(chunk).await {
                    Ok(results) => {
                        for (entry, result) in chunk.iter().zip(results) {
                            if let Some((code, message)) = result {
                                let retryable = RETRYABLE_ENTRY_CODES.contains(&code.as_str());
                                fail(entry, code, message, retryable);
                            }
                        }
                    }
                    Err(call) => {
                        let code = if call.retryable { "RequestFailed" } else { "RequestRefused" };
                        for entry in chunk {
                            fail(entry, code.into(), call.message.clone(), call.retryable);
                        }
                    }
                }
            }
            if still_pending.is_empty() {
                return Ok(());
            }
            let retryable = still_pending.iter().all(|(_, r)| *r);
            let delay = delays.next().unwrap_or(Duration::from_millis(50));
            let stop = if !retryable {
                Some("a failure no resend can fix")
            } else if attempt >= self.attempts {
                Some("attempts used up")
            } else if !crate::deadline::allows(delay, DEADLINE_MARGIN) {
                Some("the invocation's deadline is near")
            } else {
                None
            };
            if let Some(why) = stop {
                tracing::warn!(attempt, failed = still_pending.len(), total, why, "PutEvents entries not published");
                return Err(PublishError::NotPublished { failed, total, attempts: attempt, retryable });
            }
            tracing::warn!(
                attempt,
                failed = still_pending.len(),
                total,
                "PutEvents entries failed; resending those only"
            );
            pending = still_pending.into_iter().map(|(e, _)| e).collect();
            tokio::time::sleep(delay).await;
        }
    }
}

/// The in-memory fake: records what was published; [`InMemoryPublisher::fail_next`] makes it fail
/// as EventBridge does in an outage (nothing of the call published, every entry named, retryable).
#[derive(Debug, Default)]
pub struct InMemoryPublisher {
    published: Mutex<Vec<OutboundEvent>>,
    failures: std::sync::atomic::AtomicUsize,
}

impl InMemoryPublisher {
    /// Fails the next `calls` publishes.
    pub fn fail_next(&self, calls: usize) {
        self.failures.store(calls, std::sync::atomic::Ordering::SeqCst);
    }

    /// Everything published, in order.
    pub fn published(&self) -> Vec<OutboundEvent> {
        self.published.lock().expect("lock").clone()
    }

    /// The published envelopes of one event type, decoded.
    pub fn envelopes<E: Event>(&self) -> Vec<Envelope<E>> {
        self.published()
            .into_iter()
            .filter(|e| e.detail_type == E::NAME)
            .map(|e| serde_json::from_str(&e.detail).expect("published envelopes decode"))
            .collect()
    }
}

#[async_trait]
impl EventPublisher for InMemoryPublisher {
    async fn publish(&self, events: Vec<OutboundEvent>) -> Result<(), PublishError> {
        use std::sync::atomic::Ordering;
        if self.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            let total = events.len();
            let failed = events
                .into_iter()
                .map(|e| FailedEntry {
                    event_id: e.event_id,
                    detail_type: e.detail_type,
                    code: "InternalFailure".into(),
                    message: "the bus is down (fake)".into(),
                })
                .collect();
            return Err(PublishError::NotPublished { failed, total, attempts: 1, retryable: true });
        }
        self.published.lock().expect("lock").extend(events);
        Ok(())
    }
}
