//! The SQS consumer harness: one SQS batch of EventBridge events in, one `SqsBatchResponse` out.
//!
//! Per record:
//!
//! ```text
//! body ─► EventBridge event ─► detail-type known? ─► envelope ─► schema version / upcast ─► validate
//!   │ any step fails: permanent ─► dead-letter queue now (reason attached) ─► acknowledged
//!   │                               └─ DLQ send fails ─► batch item failure (SQS redelivers)
//!   ▼
//! claim consumer#event_id until the invocation's deadline (unless the consumer runs `without_claims`)
//!   │   └► completed already: acknowledged (duplicate)
//!   │   └► in progress elsewhere: batch item failure · store down: the growing delay, batch item failure
//!   ▼
//! handler ─► Ok: complete our claim, acknowledged
//!         ├► Retryable or panic: release our claim, visibility timeout := the growing delay, batch item failure
//!         ├► RetryAfter(D): release our claim, visibility timeout := min(D, what is left of SQS's 12 h), batch item failure
//!         └► Permanent: release our claim, dead-letter queue now, acknowledged
//! ```
//!
//! A panic anywhere on that path (decoding, validation, the stores, the handler) fails that record
//! alone: it is handed back to SQS and the rest of the batch carries on. That needs panics to unwind,
//! which the crate checks at compile time. Each record runs inside [`deadline::within`] the
//! invocation's deadline, so what it calls can stop retrying in time, and no record is started once
//! the time left is below what one record may take ([`ConsumerSettings::record_budget`]): such records
//! are handed back unstarted, visible again at once, so a slow provider never times the whole
//! invocation out (which would lose the delays already set and send again what it already sent).
//!
//! The SQS side of this (decoding, dead letters, visibility, the response) is [`crate::sqs`], which
//! [`crate::BatchConsumer`] shares. Records run concurrently up to a bound. On a FIFO queue records of one message group run in order
//! and, once one of them fails, the rest of that group is handed back unprocessed, so SQS redelivers
//! them in order (other groups carry on). A record that must be retried but has no message id cannot be
//! named in the response; then the whole invocation fails and SQS redelivers the batch (records already
//! handled are recognised as duplicates), because an empty id in the response would do the same, only
//! less explicitly.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use futures::{FutureExt, StreamExt};
use orderflow_contracts::{Inbound, Metadata};
use tracing::{error, info, warn, Instrument};

#[cfg(feature = "aws")]
use crate::config::ConsumerConfig;
use crate::dead_letter::DeadLetterSink;
use crate::deadline;
use crate::error::{growing_delay, HandlerError};
use crate::idempotency::{Claim, IdempotencyStore};
use crate::sqs::{
    dead_letter, decode_delivered, enter_trace, hold_back, invocation_deadline, panic_message, receive_count, respond,
    too_late_to_start, Outcome,
};
pub use crate::sqs::{decode, BatchError, BatchResult, Decoded, SETTLE_RESERVE};
use crate::telemetry;
use crate::visibility::VisibilityPort;

/// What a handler knows about the record it is handling.
#[derive(Debug, Clone)]
pub struct RecordContext {
    /// The SQS message id.
    pub message_id: String,
    /// The envelope's metadata: pass it to `Envelope::caused_by` for the events this one causes.
    pub metadata: Metadata,
    /// How many times SQS has delivered this message (1 on the first delivery).
    pub receive_count: u32,
    /// The value of the message attribute named by [`ConsumerSettings::scope_attribute`], if any
    /// (e.g. the webhook subscription a delivery is for).
    pub scope: Option<String>,
    /// The EventBridge replay that re-delivered this event (its `replay-name`), if it is one.
    pub replay_name: Option<String>,
}

/// A consumer's business logic for one event.
#[async_trait]
pub trait Handler<E>: Send + Sync {
    /// Handles one event. Must be safe to run again for the same event (the harness deduplicates,
    /// but a crash between the handler's side effects and the completion mark replays it).
    async fn handle(&self, event: E, ctx: &RecordContext) -> Result<(), HandlerError>;
}

/// Tuning of the harness; see [`ConsumerConfig`] for the environment variables behind each.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerSettings {
    /// Records of one batch handled at once.
    pub max_concurrency: usize,
    /// How long an invocation is assumed to last when its deadline is unknown ([`Consumer::process`],
    /// used by tests and benchmarks). Under Lambda the claim lasts until the invocation's deadline.
    pub in_progress_expiry: Duration,
    /// How long a completed event id is remembered.
    pub completed_ttl: Duration,
    /// A string message attribute that, with the event id, identifies the work: for a queue that
    /// carries the same event once per target (webhook deliveries: once per subscription), so that
    /// handling it for one target does not mark it handled for the others. `None`: the event id alone.
    pub scope_attribute: Option<&'static str>,
    /// The longest one record may take (its handler's client timeouts plus the harness's own calls):
    /// a record is not started when less than this is left before the invocation's deadline.
    pub record_budget: Duration,
}

/// The record budget of a consumer whose handler only calls AWS: the harness's claim and completion
/// and the handler's own calls, each within the SDK's 2 s attempt timeout (`aws::timeouts`).
pub const AWS_ONLY_RECORD_BUDGET: Duration = Duration::from_secs(3);

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            max_concurrency: 8,
            in_progress_expiry: Duration::from_secs(60),
            completed_ttl: Duration::from_secs(86_400),
            scope_attribute: None,
            record_budget: AWS_ONLY_RECORD_BUDGET,
        }
    }
}

/// The harness. Build it once at init and call [`Consumer::process`] per invocation.
pub struct Consumer<E> {
    name: String,
    handler: Arc<dyn Handler<E>>,
    /// `None`: the handler's own writes make a repeat harmless, and no claim is kept
    /// ([`Consumer::without_claims`]).
    idempotency: Option<Arc<dyn IdempotencyStore>>,
    dead_letters: Arc<dyn DeadLetterSink>,
    visibility: Option<Arc<dyn VisibilityPort>>,
    settings: ConsumerSettings,
}

impl<E: Inbound> Consumer<E> {
    /// A consumer named `name` (idempotency keys, logs, metrics) over the given ports.
    pub fn new(
        name: impl Into<String>,
        handler: Arc<dyn Handler<E>>,
        idempotency: Arc<dyn IdempotencyStore>,
        dead_letters: Arc<dyn DeadLetterSink>,
        settings: ConsumerSettings,
    ) -> Self {
        Self { name: name.into(), handler, idempotency: Some(idempotency), dead_letters, visibility: None, settings }
    }

    /// Keeps no claim and no completion mark: every delivery runs the handler. For a handler whose
    /// own writes already make a repeat harmless (a compare-and-set on a version, a conditional
    /// write keyed by the event or its order, a content-derived key) and whose events carry ids
    /// derived from their cause, so what it publishes again is dropped downstream. A claim would
    /// cost two DynamoDB writes per delivery to prevent what the handler already prevents. Not for
    /// a handler whose effect is not keyed (an email, a text message): keep the claims there.
    pub fn without_claims(mut self) -> Self {
        self.idempotency = None;
        self
    }

    /// Identifies work by the event id *and* this string message attribute (see
    /// [`ConsumerSettings::scope_attribute`]).
    pub fn with_scope_attribute(mut self, name: &'static str) -> Self {
        self.settings.scope_attribute = Some(name);
        self
    }

    /// The longest one record may take (see [`ConsumerSettings::record_budget`]): its clients'
    /// timeouts and a margin for the harness's own calls.
    pub fn with_record_budget(mut self, budget: Duration) -> Self {
        self.settings.record_budget = budget;
        self
    }

    /// Where "retry after D" is applied (the consumer's own queue). Without it such records are
    /// retried after the queue's visibility timeout.
    pub fn with_visibility(mut self, visibility: Arc<dyn VisibilityPort>) -> Self {
        self.visibility = Some(visibility);
        self
    }

    /// The production wiring: DynamoDB idempotency store and SQS dead-letter queue from `config`.
    #[cfg(feature = "aws")]
    pub fn from_config(config: &ConsumerConfig, sdk: &aws_config::SdkConfig, handler: Arc<dyn Handler<E>>) -> Self {
        let (dead_letters, visibility) = crate::sqs::sqs_ports(config, sdk);
        Self::new(
            config.consumer_name.clone(),
            handler,
            Arc::new(crate::idempotency::DynamoDbIdempotencyStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                &config.idempotency_table,
            )),
            dead_letters,
            ConsumerSettings {
                max_concurrency: config.max_concurrency,
                completed_ttl: config.completed_ttl,
                ..ConsumerSettings::default()
            },
        )
        .with_visibility(visibility)
    }

    /// Serves Lambda invocations until the runtime stops.
    pub async fn run(self) -> Result<(), lambda_runtime::Error> {
        let consumer = Arc::new(self);
        lambda_runtime::run(lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<SqsEvent>| {
            let consumer = Arc::clone(&consumer);
            async move {
                let started = std::time::Instant::now();
                let deadline = invocation_deadline(event.context.deadline, consumer.settings.in_progress_expiry);
                let result = consumer.process_until(event.payload, deadline).await?;
                telemetry::emit(&consumer.name, result.counts, started);
                Ok::<_, lambda_runtime::Error>(result.response)
            }
        }))
        .await
    }

    /// Handles one batch, assuming the invocation lasts `in_progress_expiry` from now.
    pub async fn process(&self, event: SqsEvent) -> Result<BatchResult, BatchError> {
        self.process_until(event, SystemTime::now() + self.settings.in_progress_expiry).await
    }

    /// Handles one batch of an invocation that ends at `deadline`, and says which records SQS must
    /// redeliver.
    pub async fn process_until(&self, event: SqsEvent, deadline: SystemTime) -> Result<BatchResult, BatchError> {
        let received = SystemTime::now();
        let records = event.records;
        let fifo = records.iter().any(|r| r.event_source_arn.as_deref().is_some_and(|a| a.ends_with(".fifo")));
        let outcomes: Vec<Outcome> =
            if fifo { self.process_fifo(&records, deadline).await } else { self.process_all(&records, deadline).await };

        hold_back(self.visibility.as_ref(), &self.name, &records, &outcomes, received).await;
        respond(&self.name, &records, &outcomes)
    }

    async fn process_all(&self, records: &[SqsMessage], deadline: SystemTime) -> Vec<Outcome> {
        let mut indexed: Vec<(usize, Outcome)> = futures::stream::iter(records.iter().enumerate())
            .map(|(i, r)| async move { (i, self.guarded(r, deadline).await) })
            .buffer_unordered(self.settings.max_concurrency.max(1))
            .collect()
            .await;
        indexed.sort_by_key(|(i, _)| *i);
        indexed.into_iter().map(|(_, o)| o).collect()
    }

    async fn process_fifo(&self, records: &[SqsMessage], deadline: SystemTime) -> Vec<Outcome> {
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            let group = r.attributes.get("MessageGroupId").cloned().unwrap_or_default();
            let slot = *index.entry(group.clone()).or_insert_with(|| {
                groups.push((group, Vec::new()));
                groups.len() - 1
            });
            groups[slot].1.push(i);
        }
        let per_group: Vec<Vec<(usize, Outcome)>> = futures::stream::iter(groups)
            .map(|(group, members)| async move {
                let mut out = Vec::with_capacity(members.len());
                let mut stopped = false;
                for i in members {
                    if stopped {
                        out.push((i, Outcome::Retry(None)));
                        continue;
                    }
                    let outcome = self.guarded(&records[i], deadline).await;
                    if matches!(outcome, Outcome::Retry(_)) {
                        warn!(consumer = %self.name, group = %group, "FIFO group stopped: later messages handed back in order");
                        stopped = true;
                    }
                    out.push((i, outcome));
                }
                out
            })
            .buffer_unordered(self.settings.max_concurrency.max(1))
            .collect()
            .await;
        let mut indexed: Vec<(usize, Outcome)> = per_group.into_iter().flatten().collect();
        indexed.sort_by_key(|(i, _)| *i);
        indexed.into_iter().map(|(_, o)| o).collect()
    }

    /// One record, within the deadline, with any panic on its path turned into a retry of it alone;
    /// not started when less than the record budget is left.
    async fn guarded(&self, record: &SqsMessage, deadline: SystemTime) -> Outcome {
        if let Some(outcome) = too_late_to_start(&self.name, record, deadline, self.settings.record_budget) {
            return outcome;
        }
        let run = deadline::within(deadline, self.process_record(record, deadline));
        match AssertUnwindSafe(run).catch_unwind().await {
            Ok(outcome) => outcome,
            Err(panic) => {
                error!(consumer = %self.name, message_id = record.message_id.as_deref().unwrap_or_default(),
                    panic = %panic_message(&panic), "panic while handling a record: SQS will redeliver it");
                Outcome::Retry(Some(growing_delay(receive_count(record))))
            }
        }
    }

    async fn process_record(&self, record: &SqsMessage, deadline: SystemTime) -> Outcome {
        let message_id = record.message_id.clone().unwrap_or_default();
        let receive_count = receive_count(record);
        let span = tracing::info_span!("record", consumer = %self.name, message_id = %message_id, receive_count,
            event_id = tracing::field::Empty, correlation_id = tracing::field::Empty, detail_type = tracing::field::Empty,
            trace_id = tracing::field::Empty, span_id = tracing::field::Empty, parent_span_id = tracing::field::Empty);
        async move {
            let Decoded { event, mut metadata, replay_name } = match decode_delivered::<E>(record.body.as_deref()) {
                Ok(decoded) => decoded,
                Err(e) => {
                    return dead_letter(self.dead_letters.as_ref(), &self.name, record, receive_count, e.to_string())
                        .await
                }
            };
            let (parent, handling) = enter_trace(&mut metadata, &self.name);
            let span = tracing::Span::current();
            if !span.is_disabled() {
                span.record("trace_id", handling.trace_id_hex());
                span.record("span_id", handling.span_id_hex());
                span.record("parent_span_id", parent.span_id_hex());
            }
            span.record("event_id", tracing::field::display(&metadata.event_id));
            span.record("correlation_id", tracing::field::display(&metadata.correlation_id));
            span.record("detail_type", event.name());

            let scope = self.settings.scope_attribute.and_then(|name| {
                record.message_attributes.get(name).and_then(|a| a.string_value.clone())
            });
            // A replay is a deliberate second delivery (to rebuild a read model): it is deduplicated
            // within itself, not against the live delivery the idempotency store remembers.
            let key = idempotency_key(&self.name, &metadata.event_id, scope.as_deref(), replay_name.as_deref());
            let token = match &self.idempotency {
                None => None,
                Some(store) => match store.claim(&key, deadline).await {
                    Ok(Claim::Acquired(token)) => Some((store, token)),
                    Ok(Claim::AlreadyCompleted) => {
                        info!("duplicate of a completed event: acknowledged without handling");
                        return Outcome::Duplicate;
                    }
                    Ok(Claim::InProgress) => {
                        warn!("event is being handled by another invocation: retry later");
                        return Outcome::Retry(None);
                    }
                    Err(e) => {
                        warn!(error = %e, "idempotency store unavailable: retry later");
                        return Outcome::Retry(Some(growing_delay(receive_count)));
                    }
                },
            };

            let ctx = RecordContext { message_id: message_id.clone(), metadata, receive_count, scope, replay_name };
            let result = AssertUnwindSafe(self.handler.handle(event, &ctx)).catch_unwind().await;
            let failure = match result {
                Ok(Ok(())) => {
                    let completed = match &token {
                        Some((store, token)) => store.complete(&key, token, self.settings.completed_ttl).await,
                        None => Ok(()),
                    };
                    if let Err(e) = completed {
                        // Handled: acknowledging is right. Until the claim expires a redelivery is
                        // retried; after it (or if the claim was taken over meanwhile), the
                        // handler's own idempotence has to hold.
                        warn!(error = %e, "handled, but the completion mark was not stored");
                    }
                    info!("handled");
                    return Outcome::Processed;
                }
                Ok(Err(e)) => e,
                Err(panic) => HandlerError::Retryable(format!("handler panicked: {}", panic_message(&panic))),
            };
            if let Some((store, token)) = &token {
                if let Err(e) = store.release(&key, token).await {
                    warn!(error = %e, "could not release the claim; a redelivery waits for it to expire");
                }
            }
            match failure {
                HandlerError::Retryable(reason) => {
                    let after = growing_delay(receive_count);
                    warn!(reason = %crate::redact::redact(&reason), retry_after_s = after.as_secs(), "retryable failure: SQS will redeliver after the growing delay");
                    Outcome::Retry(Some(after))
                }
                HandlerError::RetryAfter { reason, after } => {
                    // The provider's word is a floor, never a way round the growing delay: a
                    // `Retry-After: 0` from a subscriber must not use up every receive in seconds.
                    let after = after.max(growing_delay(receive_count));
                    warn!(reason = %crate::redact::redact(&reason), retry_after_s = after.as_secs(), "retryable failure: SQS will redeliver, not sooner than asked");
                    Outcome::Retry(Some(after))
                }
                HandlerError::Permanent(reason) => {
                    dead_letter(self.dead_letters.as_ref(), &self.name, record, receive_count, reason).await
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// `consumer#event_id`, then `#scope` and `#replay:name` when there are: what one claim is for.
/// Built in one allocation (every record's handling makes one).
fn idempotency_key(consumer: &str, event_id: &uuid::Uuid, scope: Option<&str>, replay: Option<&str>) -> String {
    let extra = scope.map_or(0, |s| s.len() + 1) + replay.map_or(0, |r| r.len() + 8);
    let mut key = String::with_capacity(consumer.len() + 37 + extra);
    key.push_str(consumer);
    key.push('#');
    key.push_str(event_id.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()));
    if let Some(scope) = scope {
        key.push('#');
        key.push_str(scope);
    }
    if let Some(replay) = replay {
        key.push_str("#replay:");
        key.push_str(replay);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::idempotency_key;

    #[test]
    fn the_idempotency_key_is_what_earlier_versions_wrote() {
        // A key that changed shape would make every claim stored before a deploy miss after it.
        let id = uuid::Uuid::parse_str("0190f3a2-7b1c-7def-8a12-3456789abcde").unwrap();
        assert_eq!(idempotency_key("email", &id, None, None), "email#0190f3a2-7b1c-7def-8a12-3456789abcde");
        assert_eq!(
            idempotency_key("webhooks-delivery", &id, Some("sub-1"), Some("reporting.2026")),
            format!("{}#{id}#{}#replay:{}", "webhooks-delivery", "sub-1", "reporting.2026")
        );
        assert_eq!(idempotency_key("r", &id, None, Some("x")), format!("r#{id}#replay:x"));
        assert_eq!(idempotency_key("r", &id, Some(""), None), format!("r#{id}#"));
    }
}
