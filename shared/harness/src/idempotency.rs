//! At-least-once delivery made effectively-once: before a consumer handles an event it claims
//! `consumer#event_id`. A claim is `IN_PROGRESS` until the handler finishes, then `COMPLETED` for a
//! while (TTL). A duplicate of a completed event is acknowledged without running the handler again; a
//! duplicate of one still in progress is retried later; an in-progress claim left by a crashed
//! invocation expires and can be taken over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::dynamo::{describe, get_s, is_conditional_check_failed, n, s};
use async_trait::async_trait;

/// The answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Nobody has handled it: go ahead.
    Acquired,
    /// Handled already: acknowledge without handling.
    AlreadyCompleted,
    /// Someone is handling it right now: try later.
    InProgress,
}

/// The store could not answer; the record is retried (it is never acknowledged unhandled).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("idempotency store: {0}")]
pub struct StoreError(pub String);

/// The port.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` for `in_progress_for`, unless it is completed or claimed by someone else.
    async fn claim(&self, key: &str, in_progress_for: Duration) -> Result<Claim, StoreError>;
    /// Marks `key` completed, remembered for `keep_for`.
    async fn complete(&self, key: &str, keep_for: Duration) -> Result<(), StoreError>;
    /// Drops an in-progress claim (after a failure), so a redelivery can claim it at once.
    async fn release(&self, key: &str) -> Result<(), StoreError>;
}

fn epoch_secs(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn epoch_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The DynamoDB adapter. Table: partition key `id` (S); TTL attribute `expiresAt` (epoch seconds).
/// Item: `status` (`IN_PROGRESS` | `COMPLETED`), `lockedUntil` (epoch ms, for in-progress expiry).
#[derive(Debug, Clone)]
pub struct DynamoDbIdempotencyStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDbIdempotencyStore {
    /// Uses `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

fn sdk_err<E: std::error::Error + 'static>(e: E) -> StoreError {
    StoreError(describe(e))
}

#[async_trait]
impl IdempotencyStore for DynamoDbIdempotencyStore {
    async fn claim(&self, key: &str, in_progress_for: Duration) -> Result<Claim, StoreError> {
        let now = SystemTime::now();
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", s(key))
            .item("status", s("IN_PROGRESS"))
            .item("lockedUntil", n(epoch_millis(now + in_progress_for)))
            .item("expiresAt", n(epoch_secs(now + in_progress_for) + 3600))
            // Free, or a claim whose holder died, or a completed record DynamoDB's TTL (which may lag
            // by hours) has not deleted yet.
            .condition_expression(
                "attribute_not_exists(id) OR (#status = :in_progress AND lockedUntil < :now_ms) OR expiresAt < :now_s",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", s("IN_PROGRESS"))
            .expression_attribute_values(":now_ms", n(epoch_millis(now)))
            .expression_attribute_values(":now_s", n(epoch_secs(now)))
            .send()
            .await;
        match put {
            Ok(_) => Ok(Claim::Acquired),
            Err(e) if is_conditional_check_failed(&e) => {
                let item = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("id", s(key))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(sdk_err)?;
                let status = item.item().and_then(|i| get_s(i, "status"));
                Ok(match status {
                    Some("COMPLETED") => Claim::AlreadyCompleted,
                    _ => Claim::InProgress,
                })
            }
            Err(e) => Err(sdk_err(e)),
        }
    }

    async fn complete(&self, key: &str, keep_for: Duration) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("id", s(key))
            .item("status", s("COMPLETED"))
            .item("expiresAt", n(epoch_secs(SystemTime::now() + keep_for)))
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", s(key))
            .condition_expression("#status = :in_progress")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":in_progress", s("IN_PROGRESS"))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            // Already completed or gone: nothing to release.
            Err(e) if is_conditional_check_failed(&e) => Ok(()),
            Err(e) => Err(sdk_err(e)),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Entry {
    InProgress { until: SystemTime },
    Completed { until: SystemTime },
}

/// The in-memory fake, with the same semantics as the DynamoDB adapter.
#[derive(Debug, Default)]
pub struct InMemoryIdempotencyStore {
    entries: Mutex<HashMap<String, Entry>>,
}

impl InMemoryIdempotencyStore {
    /// Whether `key` is completed and remembered.
    pub fn is_completed(&self, key: &str) -> bool {
        matches!(self.entries.lock().expect("lock").get(key), Some(Entry::Completed { until }) if *until > SystemTime::now())
    }
    /// Whether `key` is claimed in progress.
    pub fn is_in_progress(&self, key: &str) -> bool {
        matches!(self.entries.lock().expect("lock").get(key), Some(Entry::InProgress { until }) if *until > SystemTime::now())
    }
}

#[async_trait]
impl IdempotencyStore for InMemoryIdempotencyStore {
    async fn claim(&self, key: &str, in_progress_for: Duration) -> Result<Claim, StoreError> {
        let now = SystemTime::now();
        let mut entries = self.entries.lock().expect("lock");
        match entries.get(key) {
            Some(Entry::Completed { until }) if *until > now => Ok(Claim::AlreadyCompleted),
            Some(Entry::InProgress { until }) if *until > now => Ok(Claim::InProgress),
            _ => {
                entries.insert(key.to_string(), Entry::InProgress { until: now + in_progress_for });
                Ok(Claim::Acquired)
            }
        }
    }

    async fn complete(&self, key: &str, keep_for: Duration) -> Result<(), StoreError> {
        self.entries
            .lock()
            .expect("lock")
            .insert(key.to_string(), Entry::Completed { until: SystemTime::now() + keep_for });
        Ok(())
    }

    async fn release(&self, key: &str) -> Result<(), StoreError> {
        let mut entries = self.entries.lock().expect("lock");
        if matches!(entries.get(key), Some(Entry::InProgress { .. })) {
            entries.remove(key);
        }
        Ok(())
    }
}
