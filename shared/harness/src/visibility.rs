//! Holding a record back: a handler that says "retry after D" (a `Retry-After` header, or a delay
//! growing with the receive count) gets its record's visibility timeout set to D with SQS
//! `ChangeMessageVisibility` before the record is reported as a batch item failure, so SQS redelivers
//! it no sooner. One slow or rate-limiting provider then delays only its own records, without the
//! consumer hammering it every visibility timeout.
//!
//! SQS refuses any `ChangeMessageVisibility` that would keep a message invisible past 12 hours from
//! when *this delivery* received it, so the longest delay is what is left of those 12 hours:
//! [`longest_delay`] measures it from when the harness got the batch, less [`RECEIVE_MARGIN`] for the
//! time Lambda's poller held the messages before invoking (its batching window is at most 5 minutes).

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use std::sync::Mutex;

/// How long SQS lets a delivery stay invisible, counted from its receive.
pub const VISIBILITY_LIMIT: Duration = Duration::from_secs(43_200);

/// Time assumed to have passed between SQS's receive and the harness seeing the batch: Lambda's
/// batching window (at most 300 s) and the invoke, with room to spare.
pub const RECEIVE_MARGIN: Duration = Duration::from_secs(600);

/// The longest delay a record can be held back by, asked `since_batch` after the harness got its
/// batch: 11 h 50 min at once, less the time the invocation has taken.
pub fn longest_delay(since_batch: Duration) -> Duration {
    VISIBILITY_LIMIT.saturating_sub(RECEIVE_MARGIN).saturating_sub(since_batch)
}

/// Sets how long a received message stays invisible.
#[async_trait]
pub trait VisibilityPort: Send + Sync {
    /// Makes the message with `receipt_handle` visible again only after `after` (SQS refuses a value
    /// past 12 hours from the receive; the harness caps it with [`longest_delay`] before calling).
    async fn delay(&self, receipt_handle: &str, after: Duration) -> Result<(), String>;
}

#[cfg(feature = "aws")]
/// The SQS adapter: the consumer's own queue.
#[derive(Debug, Clone)]
pub struct SqsVisibility {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

#[cfg(feature = "aws")]
impl SqsVisibility {
    /// For the queue at `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }
}

#[cfg(feature = "aws")]
#[async_trait]
impl VisibilityPort for SqsVisibility {
    async fn delay(&self, receipt_handle: &str, after: Duration) -> Result<(), String> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(i32::try_from(after.as_secs()).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
        Ok(())
    }
}

/// The in-memory fake: remembers every delay SQS would accept, and refuses the rest as SQS does (a
/// value over 12 hours, or one that would keep the message invisible past 12 hours from its receive).
/// Every message counts as received when the fake was made (or at [`RecordedDelays::received_at`]).
#[derive(Debug)]
pub struct RecordedDelays {
    received: SystemTime,
    delays: Mutex<Vec<(String, Duration)>>,
}

impl Default for RecordedDelays {
    fn default() -> Self {
        Self::received_at(SystemTime::now())
    }
}

impl RecordedDelays {
    /// A fake whose messages were received at `received`.
    pub fn received_at(received: SystemTime) -> Self {
        Self { received, delays: Mutex::new(Vec::new()) }
    }

    /// Every accepted `(receipt handle, delay)`, in order.
    pub fn delays(&self) -> Vec<(String, Duration)> {
        self.delays.lock().expect("lock").clone()
    }
}

#[async_trait]
impl VisibilityPort for RecordedDelays {
    async fn delay(&self, receipt_handle: &str, after: Duration) -> Result<(), String> {
        let since_receive = SystemTime::now().duration_since(self.received).unwrap_or(Duration::ZERO);
        if after > VISIBILITY_LIMIT || since_receive + after > VISIBILITY_LIMIT {
            return Err(format!(
                "InvalidParameterValue: Value {} for parameter VisibilityTimeout is invalid. Reason: Total \
                 VisibilityTimeout for the message is beyond the limit [43200 seconds]",
                after.as_secs()
            ));
        }
        self.delays.lock().expect("lock").push((receipt_handle.to_string(), after));
        Ok(())
    }
}
