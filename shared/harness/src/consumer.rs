//! The SQS consumer harness: one SQS batch of EventBridge events in, one `SqsBatchResponse` out.
//!
//! Per record:
//!
//! ```text
//! body ─► EventBridge event ─► detail-type known? ─► envelope ─► schema version / upcast ─► validate
//!   │ any step fails: permanent ─► dead-letter queue now (reason attached) ─► acknowledged
//!   │                               └─ DLQ send fails ─► batch item failure (SQS redelivers)
//!   ▼
//! claim consumer#event_id until the invocation's deadline
//!   │   └► completed already: acknowledged (duplicate)
//!   │   └► in progress elsewhere / store down: batch item failure
//!   ▼
//! handler ─► Ok: complete our claim, acknowledged
//!         ├► Retryable or panic: release our claim, batch item failure
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
//! Records run concurrently up to a bound. On a FIFO queue records of one message group run in order
//! and, once one of them fails, the rest of that group is handed back unprocessed, so SQS redelivers
//! them in order (other groups carry on). A record that must be retried but has no message id cannot be
//! named in the response; then the whole invocation fails and SQS redelivers the batch (records already
//! handled are recognised as duplicates), because an empty id in the response would do the same, only
//! less explicitly.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use futures::{FutureExt, StreamExt};
use orderflow_contracts::{ContractError, Inbound, Metadata, RawEnvelope};
use serde_json::value::RawValue;
use tracing::{error, info, warn, Instrument};

use crate::config::ConsumerConfig;
use crate::dead_letter::{DeadLetter, DeadLetterSink, SqsDeadLetterQueue};
use crate::deadline;
use crate::error::HandlerError;
use crate::idempotency::{Claim, DynamoDbIdempotencyStore, IdempotencyStore};
use crate::telemetry::{self, Counts};
use crate::visibility::{longest_delay, SqsVisibility, VisibilityPort};

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

/// Time kept after the last record for what the batch still does: the visibility changes of "retry
/// after", the dead letters' sends, and the response.
pub const SETTLE_RESERVE: Duration = Duration::from_secs(1);

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

/// Why a whole batch failed (SQS then redelivers all of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// A record that must be retried has no message id to report.
    #[error("{0} record(s) must be retried but have no message id; failing the whole batch so SQS redelivers it")]
    UnidentifiableFailures(usize),
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Processed,
    Duplicate,
    DeadLettered,
    /// Hand back to SQS; not before the delay, when there is one.
    Retry(Option<Duration>),
}

/// The result of one batch: the response for Lambda and the counts for metrics.
#[derive(Debug, Clone)]
pub struct BatchResult {
    /// What Lambda returns to SQS.
    pub response: SqsBatchResponse,
    /// What happened, for metrics and tests.
    pub counts: Counts,
}

/// The harness. Build it once at init and call [`Consumer::process`] per invocation.
pub struct Consumer<E> {
    name: String,
    handler: Arc<dyn Handler<E>>,
    idempotency: Arc<dyn IdempotencyStore>,
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
        Self { name: name.into(), handler, idempotency, dead_letters, visibility: None, settings }
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
    pub fn from_config(config: &ConsumerConfig, sdk: &aws_config::SdkConfig, handler: Arc<dyn Handler<E>>) -> Self {
        let (dead_letters, visibility) = sqs_ports(config, sdk);
        Self::new(
            config.consumer_name.clone(),
            handler,
            Arc::new(DynamoDbIdempotencyStore::new(aws_sdk_dynamodb::Client::new(sdk), &config.idempotency_table)),
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
                let deadline = invocation_deadline(event.context.deadline, consumer.settings.in_progress_expiry);
                let result = consumer.process_until(event.payload, deadline).await?;
                telemetry::emit(&consumer.name, result.counts);
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
                Outcome::Retry(None)
            }
        }
    }

    async fn process_record(&self, record: &SqsMessage, deadline: SystemTime) -> Outcome {
        let message_id = record.message_id.clone().unwrap_or_default();
        let receive_count = receive_count(record);
        let span = tracing::info_span!("record", consumer = %self.name, message_id = %message_id, receive_count,
            event_id = tracing::field::Empty, correlation_id = tracing::field::Empty, detail_type = tracing::field::Empty);
        async move {
            let Decoded { event, metadata, replay_name } = match decode_delivered::<E>(record.body.as_deref()) {
                Ok(decoded) => decoded,
                Err(e) => {
                    return dead_letter(self.dead_letters.as_ref(), &self.name, record, receive_count, e.to_string())
                        .await
                }
            };
            let span = tracing::Span::current();
            span.record("event_id", tracing::field::display(&metadata.event_id));
            span.record("correlation_id", tracing::field::display(&metadata.correlation_id));
            span.record("detail_type", event.name());

            let scope = self.settings.scope_attribute.and_then(|name| {
                record.message_attributes.get(name).and_then(|a| a.string_value.clone())
            });
            // A replay is a deliberate second delivery (to rebuild a read model): it is deduplicated
            // within itself, not against the live delivery the idempotency store remembers.
            let mut key = format!("{}#{}", self.name, metadata.event_id);
            if let Some(scope) = &scope {
                key = format!("{key}#{scope}");
            }
            if let Some(replay) = &replay_name {
                key = format!("{key}#replay:{replay}");
            }
            let token = match self.idempotency.claim(&key, deadline).await {
                Ok(Claim::Acquired(token)) => token,
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
                    return Outcome::Retry(None);
                }
            };

            let ctx = RecordContext { message_id: message_id.clone(), metadata, receive_count, scope, replay_name };
            let result = AssertUnwindSafe(self.handler.handle(event, &ctx)).catch_unwind().await;
            let failure = match result {
                Ok(Ok(())) => {
                    if let Err(e) = self.idempotency.complete(&key, &token, self.settings.completed_ttl).await {
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
            if let Err(e) = self.idempotency.release(&key, &token).await {
                warn!(error = %e, "could not release the claim; a redelivery waits for it to expire");
            }
            match failure {
                HandlerError::Retryable(reason) => {
                    warn!(%reason, "retryable failure: SQS will redeliver");
                    Outcome::Retry(None)
                }
                HandlerError::RetryAfter { reason, after } => {
                    warn!(%reason, retry_after_s = after.as_secs(), "retryable failure: SQS will redeliver, not sooner than asked");
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

/// The consumer's own SQS queues as the harness's ports: its dead-letter queue, and its queue for
/// "retry after" (shared by [`Consumer`] and [`crate::BatchConsumer`]).
pub(crate) fn sqs_ports(
    config: &ConsumerConfig,
    sdk: &aws_config::SdkConfig,
) -> (Arc<dyn DeadLetterSink>, Arc<dyn VisibilityPort>) {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    (
        Arc::new(SqsDeadLetterQueue::new(sqs.clone(), &config.dead_letter_queue_url)),
        Arc::new(SqsVisibility::new(sqs, &config.queue_url)),
    )
}

/// `Some(hand back now)` when less than `budget` and the [`SETTLE_RESERVE`] is left before
/// `deadline`: the record is not started, and is made visible again at once so the next invocation
/// takes it.
pub(crate) fn too_late_to_start(
    name: &str,
    record: &SqsMessage,
    deadline: SystemTime,
    budget: Duration,
) -> Option<Outcome> {
    let left = deadline.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
    if left >= budget + SETTLE_RESERVE {
        return None;
    }
    warn!(consumer = %name, message_id = record.message_id.as_deref().unwrap_or_default(),
        left_ms = left.as_millis() as u64, budget_ms = budget.as_millis() as u64,
        "too little time left to start this record: handed back unstarted");
    Some(Outcome::Retry(Some(Duration::ZERO)))
}

/// The deadline of an invocation whose context says `deadline_ms` (epoch milliseconds; 0 when unknown).
pub(crate) fn invocation_deadline(deadline_ms: u64, fallback: Duration) -> SystemTime {
    match deadline_ms {
        0 => SystemTime::now() + fallback,
        ms => UNIX_EPOCH + Duration::from_millis(ms),
    }
}

/// The response for SQS and the counts, from each record's outcome.
pub(crate) fn respond(name: &str, records: &[SqsMessage], outcomes: &[Outcome]) -> Result<BatchResult, BatchError> {
    let mut response = SqsBatchResponse::default();
    let mut counts = Counts::default();
    let mut unidentifiable = 0;
    for (record, outcome) in records.iter().zip(outcomes) {
        match outcome {
            Outcome::Processed => counts.processed += 1,
            Outcome::Duplicate => counts.duplicates_skipped += 1,
            Outcome::DeadLettered => counts.dead_lettered += 1,
            Outcome::Retry(_) => {
                counts.retried += 1;
                match record.message_id.as_deref() {
                    Some(id) if !id.is_empty() => response.add_failure(id),
                    _ => unidentifiable += 1,
                }
            }
        }
    }
    info!(consumer = %name, records = records.len(), processed = counts.processed, retried = counts.retried,
        dead_lettered = counts.dead_lettered, duplicates = counts.duplicates_skipped, "batch done");
    if unidentifiable > 0 {
        error!(consumer = %name, unidentifiable, "records to retry have no message id");
        return Err(BatchError::UnidentifiableFailures(unidentifiable));
    }
    Ok(BatchResult { response, counts })
}

/// Applies each "retry after" as the record's visibility timeout, capped at what is left of SQS's
/// 12 hours since the batch was `received` ([`crate::visibility::longest_delay`]). A failure here
/// only means SQS redelivers sooner (after the queue's own visibility timeout).
pub(crate) async fn hold_back(
    visibility: Option<&Arc<dyn VisibilityPort>>,
    name: &str,
    records: &[SqsMessage],
    outcomes: &[Outcome],
    received: SystemTime,
) {
    let Some(visibility) = visibility else { return };
    let since_batch = SystemTime::now().duration_since(received).unwrap_or(Duration::ZERO);
    let cap = longest_delay(since_batch);
    let delays = records.iter().zip(outcomes).filter_map(|(record, outcome)| match outcome {
        Outcome::Retry(Some(after)) => Some((record, (*after).min(cap))),
        _ => None,
    });
    futures::future::join_all(delays.map(|(record, after)| async move {
        let Some(handle) = record.receipt_handle.as_deref() else { return };
        if let Err(e) = visibility.delay(handle, after).await {
            warn!(consumer = %name, message_id = record.message_id.as_deref().unwrap_or_default(), error = %e,
                "could not hold the record back; SQS redelivers it after the queue's visibility timeout");
        }
    }))
    .await;
}

/// Sends a record that can never be handled to the dead-letter queue, with the reason; if the queue
/// refuses it, SQS redelivers the record instead (nothing is acknowledged unhandled).
pub(crate) async fn dead_letter(
    sink: &dyn DeadLetterSink,
    name: &str,
    record: &SqsMessage,
    receive_count: u32,
    reason: String,
) -> Outcome {
    let letter = DeadLetter {
        consumer: name.to_string(),
        message_id: record.message_id.clone().unwrap_or_default(),
        body: record.body.clone().unwrap_or_default(),
        reason: reason.clone(),
        receive_count,
        message_group_id: record.attributes.get("MessageGroupId").cloned(),
        attributes: record.message_attributes.clone(),
    };
    match sink.send(letter).await {
        Ok(()) => {
            error!(%reason, "permanent failure: sent to the dead-letter queue");
            Outcome::DeadLettered
        }
        Err(e) => {
            error!(%reason, dlq_error = %e, "permanent failure, and the dead-letter queue refused it: SQS will redeliver");
            Outcome::Retry(None)
        }
    }
}

/// How many times SQS has delivered `record` (1 on the first delivery).
pub(crate) fn receive_count(record: &SqsMessage) -> u32 {
    record.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok()).unwrap_or(1)
}

/// Reads one SQS body as an EventBridge event carrying an Orderflow envelope of an event `E` accepts.
pub fn decode<E: Inbound>(body: Option<&str>) -> Result<(E, Metadata), ContractError> {
    decode_delivered(body).map(|d| (d.event, d.metadata))
}

/// An event as the harness decoded it from an SQS body.
#[derive(Debug, Clone)]
pub struct Decoded<E> {
    /// The event, upcast to the version `E` reads.
    pub event: E,
    /// The envelope's metadata.
    pub metadata: Metadata,
    /// The EventBridge replay that re-delivered it, if any.
    pub replay_name: Option<String>,
}

/// What the harness reads of the EventBridge event EventBridge puts on the queue.
#[derive(serde::Deserialize)]
struct Delivered<'a> {
    #[serde(rename = "detail-type")]
    detail_type: String,
    #[serde(borrow)]
    detail: &'a RawValue,
    #[serde(rename = "replay-name", default)]
    replay_name: Option<String>,
}

/// [`decode`], with the replay that re-delivered the event, if any.
pub fn decode_delivered<E: Inbound>(body: Option<&str>) -> Result<Decoded<E>, ContractError> {
    let body = body.ok_or_else(|| ContractError::NotAnEnvelope("empty body".into()))?;
    let event: Delivered<'_> =
        serde_json::from_str(body).map_err(|e| ContractError::NotAnEnvelope(format!("body: {e}")))?;
    if !E::DETAIL_TYPES.contains(&event.detail_type.as_str()) {
        return Err(ContractError::UnknownDetailType(event.detail_type));
    }
    let envelope: RawEnvelope =
        serde_json::from_str(event.detail.get()).map_err(|e| ContractError::NotAnEnvelope(format!("detail: {e}")))?;
    let decoded = E::decode(&event.detail_type, envelope.metadata.schema_version, &envelope.data)?;
    Ok(Decoded { event: decoded, metadata: envelope.metadata, replay_name: event.replay_name })
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}
