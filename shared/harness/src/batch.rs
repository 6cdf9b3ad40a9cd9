//! The harness for consumers that act on a batch as a whole, such as the data lake, which writes one
//! object per batch (per partition). Same contract with SQS as [`crate::Consumer`]:
//!
//! ```text
//! each record ─► decode (as Consumer does) ─► permanent error ─► dead-letter queue now, acknowledged
//! the decoded records ─► BatchHandler::handle_batch ─► one result per record
//!     Ok ─► acknowledged · Retryable (the growing delay) / RetryAfter ─► batch item failure · Permanent ─► dead-letter queue
//!     panic, or a result count that does not match ─► every decoded record is a batch item failure
//! ```
//!
//! There is no idempotency store here: a batch handler's writes must be idempotent on their own
//! (the lake names each object from the event ids it holds, so a redelivered batch overwrites what
//! it wrote before). Standard queues only: a FIFO queue's ordering per group is not kept.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use futures::FutureExt;
use orderflow_contracts::Inbound;
use tracing::{error, warn};

#[cfg(feature = "aws")]
use crate::config::ConsumerConfig;
use crate::consumer::{RecordContext, AWS_ONLY_RECORD_BUDGET};
use crate::dead_letter::DeadLetterSink;
use crate::error::{growing_delay, HandlerError};
use crate::sqs::{
    dead_letter, decode_delivered, enter_trace, hold_back, invocation_deadline, panic_message, receive_count, respond,
    too_late_to_start, BatchError, BatchResult, Decoded, Outcome,
};
use crate::visibility::VisibilityPort;
use crate::{deadline, telemetry};

/// One decoded record of a batch.
#[derive(Debug, Clone)]
pub struct BatchRecord<E> {
    /// The event, upcast to the version this consumer reads.
    pub event: E,
    /// Its SQS message id, envelope metadata and receive count.
    pub ctx: RecordContext,
}

/// A consumer's business logic for a whole batch.
#[async_trait]
pub trait BatchHandler<E>: Send + Sync {
    /// Handles the batch's decoded records and returns one result per record, in their order.
    /// Must be idempotent: a batch (or part of it) can be delivered again.
    async fn handle_batch(&self, records: &[BatchRecord<E>]) -> Vec<Result<(), HandlerError>>;
}

/// The batch harness. Build it once at init and call [`BatchConsumer::process`] per invocation.
pub struct BatchConsumer<E> {
    name: String,
    handler: Arc<dyn BatchHandler<E>>,
    dead_letters: Arc<dyn DeadLetterSink>,
    visibility: Option<Arc<dyn VisibilityPort>>,
    assumed_duration: Duration,
    record_budget: Duration,
}

impl<E: Inbound> BatchConsumer<E> {
    /// A batch consumer named `name` (logs, metrics) over the given ports.
    pub fn new(
        name: impl Into<String>,
        handler: Arc<dyn BatchHandler<E>>,
        dead_letters: Arc<dyn DeadLetterSink>,
    ) -> Self {
        Self {
            name: name.into(),
            handler,
            dead_letters,
            visibility: None,
            assumed_duration: Duration::from_secs(60),
            record_budget: AWS_ONLY_RECORD_BUDGET,
        }
    }

    /// The longest one handler call may take: the batch is handed back unstarted when less is left.
    pub fn with_record_budget(mut self, budget: Duration) -> Self {
        self.record_budget = budget;
        self
    }

    /// Where "retry after" is applied (the consumer's own queue).
    pub fn with_visibility(mut self, visibility: Arc<dyn VisibilityPort>) -> Self {
        self.visibility = Some(visibility);
        self
    }

    /// The production wiring: the SQS dead-letter queue and visibility from `config`.
    #[cfg(feature = "aws")]
    pub fn from_config(
        config: &ConsumerConfig,
        sdk: &aws_config::SdkConfig,
        handler: Arc<dyn BatchHandler<E>>,
    ) -> Self {
        let (dead_letters, visibility) = crate::sqs::sqs_ports(config, sdk);
        Self::new(config.consumer_name.clone(), handler, dead_letters).with_visibility(visibility)
    }

    /// Serves Lambda invocations until the runtime stops.
    pub async fn run(self) -> Result<(), lambda_runtime::Error> {
        let consumer = Arc::new(self);
        lambda_runtime::run(lambda_runtime::service_fn(move |event: lambda_runtime::LambdaEvent<SqsEvent>| {
            let consumer = Arc::clone(&consumer);
            async move {
                let started = std::time::Instant::now();
                let deadline = invocation_deadline(event.context.deadline, consumer.assumed_duration);
                let result = consumer.process_until(event.payload, deadline).await?;
                telemetry::emit(&consumer.name, result.counts, started);
                Ok::<_, lambda_runtime::Error>(result.response)
            }
        }))
        .await
    }

    /// Handles one batch, assuming the invocation lasts a minute from now.
    pub async fn process(&self, event: SqsEvent) -> Result<BatchResult, BatchError> {
        self.process_until(event, SystemTime::now() + self.assumed_duration).await
    }

    /// Handles one batch of an invocation that ends at `deadline`.
    pub async fn process_until(&self, event: SqsEvent, deadline: SystemTime) -> Result<BatchResult, BatchError> {
        let received = SystemTime::now();
        let records = event.records;
        let mut outcomes: Vec<Option<Outcome>> = vec![None; records.len()];
        let mut decoded = Vec::new();
        let mut positions = Vec::new();
        for (i, record) in records.iter().enumerate() {
            let count = receive_count(record);
            match AssertUnwindSafe(async { decode_delivered::<E>(record.body.as_deref()) }).catch_unwind().await {
                Ok(Ok(Decoded { event, mut metadata, replay_name })) => {
                    enter_trace(&mut metadata, &self.name);
                    let ctx = RecordContext {
                        message_id: record.message_id.clone().unwrap_or_default(),
                        metadata,
                        receive_count: count,
                        scope: None,
                        replay_name,
                    };
                    decoded.push(BatchRecord { event, ctx });
                    positions.push(i);
                }
                Ok(Err(e)) => {
                    outcomes[i] =
                        Some(dead_letter(self.dead_letters.as_ref(), &self.name, record, count, e.to_string()).await)
                }
                Err(panic) => {
                    error!(consumer = %self.name, panic = %panic_message(&panic), "panic while decoding: SQS will redeliver");
                    outcomes[i] = Some(Outcome::Retry(Some(growing_delay(count))));
                }
            }
        }
        if !decoded.is_empty() {
            // One handler call for the whole batch: not started with less than its budget left.
            if let Some(outcome) = too_late_to_start(&self.name, &records[positions[0]], deadline, self.record_budget) {
                for &i in &positions {
                    outcomes[i] = Some(outcome.clone());
                }
            } else {
                let results = self.handle(&decoded, deadline).await;
                for ((i, result), record) in positions.iter().copied().zip(results).zip(&decoded) {
                    outcomes[i] = Some(self.settle(&records[i], record, result).await);
                }
            }
        }
        let outcomes: Vec<Outcome> = outcomes.into_iter().map(|o| o.unwrap_or(Outcome::Retry(None))).collect();
        hold_back(self.visibility.as_ref(), &self.name, &records, &outcomes, received).await;
        respond(&self.name, &records, &outcomes)
    }

    /// The handler's results, one per decoded record; a panic or a miscount retries them all.
    async fn handle(&self, decoded: &[BatchRecord<E>], deadline: SystemTime) -> Vec<Result<(), HandlerError>> {
        let run = deadline::within(deadline, self.handler.handle_batch(decoded));
        let retry_all = |reason: String| decoded.iter().map(|_| Err(HandlerError::Retryable(reason.clone()))).collect();
        match AssertUnwindSafe(run).catch_unwind().await {
            Ok(results) if results.len() == decoded.len() => results,
            Ok(results) => {
                error!(consumer = %self.name, records = decoded.len(), results = results.len(),
                    "the batch handler answered for the wrong number of records: retrying them all");
                retry_all("batch handler miscounted".into())
            }
            Err(panic) => {
                let reason = format!("batch handler panicked: {}", panic_message(&panic));
                error!(consumer = %self.name, reason = %crate::redact::redact(&reason), "SQS will redeliver the batch's records");
                retry_all(reason)
            }
        }
    }

    async fn settle(&self, record: &SqsMessage, decoded: &BatchRecord<E>, result: Result<(), HandlerError>) -> Outcome {
        let event_id = decoded.ctx.metadata.event_id;
        match result {
            Ok(()) => Outcome::Processed,
            Err(HandlerError::Retryable(reason)) => {
                let after = growing_delay(decoded.ctx.receive_count);
                warn!(consumer = %self.name, %event_id, reason = %crate::redact::redact(&reason), retry_after_s = after.as_secs(), "retryable failure: SQS will redeliver after the growing delay");
                Outcome::Retry(Some(after))
            }
            Err(HandlerError::RetryAfter { reason, after }) => {
                let after = after.max(growing_delay(decoded.ctx.receive_count));
                warn!(consumer = %self.name, %event_id, reason = %crate::redact::redact(&reason), retry_after_s = after.as_secs(), "retryable failure: SQS will redeliver, not sooner than asked");
                Outcome::Retry(Some(after))
            }
            Err(HandlerError::Permanent(reason)) => {
                dead_letter(self.dead_letters.as_ref(), &self.name, record, decoded.ctx.receive_count, reason).await
            }
        }
    }
}
