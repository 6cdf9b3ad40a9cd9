//! Holding a record back: a handler that says "retry after D" (a `Retry-After` header, or a delay
//! growing with the receive count) gets its record's visibility timeout set to D with SQS
//! `ChangeMessageVisibility` before the record is reported as a batch item failure, so SQS redelivers
//! it no sooner. One slow or rate-limiting provider then delays only its own records, without the
//! consumer hammering it every visibility timeout.

use std::time::Duration;

use async_trait::async_trait;
use std::sync::Mutex;

/// Sets how long a received message stays invisible.
#[async_trait]
pub trait VisibilityPort: Send + Sync {
    /// Makes the message with `receipt_handle` visible again only after `after` (at most 12 hours;
    /// the harness caps it before calling).
    async fn delay(&self, receipt_handle: &str, after: Duration) -> Result<(), String>;
}

/// The SQS adapter: the consumer's own queue.
#[derive(Debug, Clone)]
pub struct SqsVisibility {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsVisibility {
    /// For the queue at `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }
}

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

/// The in-memory fake: remembers every delay asked for.
#[derive(Debug, Default)]
pub struct RecordedDelays {
    delays: Mutex<Vec<(String, Duration)>>,
}

impl RecordedDelays {
    /// Every `(receipt handle, delay)`, in order.
    pub fn delays(&self) -> Vec<(String, Duration)> {
        self.delays.lock().expect("lock").clone()
    }
}

#[async_trait]
impl VisibilityPort for RecordedDelays {
    async fn delay(&self, receipt_handle: &str, after: Duration) -> Result<(), String> {
        self.delays.lock().expect("lock").push((receipt_handle.to_string(), after));
        Ok(())
    }
}
