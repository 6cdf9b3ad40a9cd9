//! At-least-once delivery made effectively-once: before a consumer handles an event it claims
//! `consumer#event_id`. A claim is `IN_PROGRESS` until the handler finishes, then `COMPLETED` for a
//! while (TTL). A duplicate of a completed event is acknowledged without running the handler again; a
//! duplicate of one still in progress is retried later.
//!
//! Claims run on Lambda's clock: an in-progress claim is locked only until the deadline of the
//! invocation that took it (as Powertools' `register_lambda_context` does), because after that the
//! invocation is gone. So a record whose invocation crashed or timed out is handled on its first
//! redelivery, not one visibility timeout later. Each claim carries an owner token: `complete` and
//! `release` only touch the caller's own claim, so a slow holder whose claim expired and was taken
//! over can neither complete nor drop the new holder's claim.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::clock::{Clock, SystemClock};
#[cfg(feature = "aws")]
use crate::dynamo::{get_s, is_conditional_check_failed, n, s, store_error};
pub use crate::store::StoreError;

const STORE: &str = "idempotency store";

/// Proof of holding a claim: given by [`IdempotencyStore::claim`], required to complete or release it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimToken(String);

impl ClaimToken {
    /// Unique across processes (a random id drawn once per process) and within one (a counter):
    /// one draw from the system's random source per process, not one per claim.
    fn new() -> Self {
        static PROCESS: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string());
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(format!("{}-{n}", *PROCESS))
    }
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nobody has handled it: go ahead, and complete or release with this token.
    Acquired(ClaimToken),
    /// Handled already: acknowledge without handling.
    AlreadyCompleted,
    /// Someone is handling it right now: try later.
    InProgress,
}

/// Which events a consumer has handled. Errors are retryable unless they say otherwise; a record
/// whose claim cannot be made is never acknowledged unhandled.
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` until `locked_until` (the invocation's deadline), unless it is completed or
    /// claimed by someone whose lock has not run out.
    async fn claim(&self, key: &str, locked_until: SystemTime) -> Result<Claim, StoreError>;
    /// Marks `key` completed, remembered for `keep_for`, if `token` still holds its claim; a claim
    /// taken over by someone else is left alone and reported as a permanent error.
    async fn complete(&self, key: &str, token: &ClaimToken, keep_for: Duration) -> Result<(), StoreError>;
    /// Drops the claim after a failure, so a redelivery can claim it at once; only the holder's own.
    async fn release(&self, key: &str, token: &ClaimToken) -> Result<(), StoreError>;
}

#[cfg(feature = "aws")]
fn epoch_secs(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[cfg(feature = "aws")]
fn epoch_millis(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn lost(key: &str) -> StoreError {
    StoreError::permanent(STORE, format!("claim on {key} is no longer ours (expired and taken over)"))
}

#[cfg(feature = "aws")]
/// The DynamoDB adapter. Table: partition key `id` (S); TTL attribute `expiresAt` (epoch seconds).
/// Item: `status` (`IN_PROGRESS` | `COMPLETED`), `lockedUntil` (epoch ms), `owner` (the claim token).
#[derive(Debug, Clone)]
pub struct DynamoDbIdempotencyStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

#[cfg(feature = "aws")]
impl DynamoDbIdempotencyStore {
    /// Uses `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

#[cfg(feature = "aws")]
#[async_trait]
impl IdempotencyStore for DynamoDbIdempotencyStore {
    async fn claim(&self, key: &str, locked_until: SystemTime) -> Result<Claim, StoreError> {
        let now = SystemTime::now();
        let token = ClaimToken::new();
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("id", s(key))
            .item("status", s("IN_PROGRESS"))
            .item("owner", s(&token.0))
            .item("lockedUntil", n(epoch_millis(locked_until)))
            .item("expiresAt", n(epoch_secs(locked_until) + 3600))
            // Free, or a claim whose holder's invocation has ended, or a completed record DynamoDB's
            // TTL (which may lag by hours) has not deleted yet.
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
            Ok(_) => Ok(Claim::Acquired(token)),
            Err(e) if is_conditional_check_failed(&e) => {
                let item = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("id", s(key))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| store_error(STORE, e))?;
                let status = item.item().and_then(|i| get_s(i, "status"));
                Ok(match status {
                    Some("COMPLETED") => Claim::AlreadyCompleted,
                    _ => Claim::InProgress,
                })
            }
            Err(e) => Err(store_error(STORE, e)),
        }
    }

    async fn complete(&self, key: &str, token: &ClaimToken, keep_for: Duration) -> Result<(), StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(key))
            .update_expression("SET #status = :completed, expiresAt = :expires REMOVE lockedUntil, #owner")
            .condition_expression("#status = :in_progress AND #owner = :token")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":completed", s("COMPLETED"))
            .expression_attribute_values(":in_progress", s("IN_PROGRESS"))
            .expression_attribute_values(":token", s(&token.0))
            .expression_attribute_values(":expires", n(epoch_secs(SystemTime::now() + keep_for)))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_check_failed(&e) => Err(lost(key)),
            Err(e) => Err(store_error(STORE, e)),
        }
    }

    async fn release(&self, key: &str, token: &ClaimToken) -> Result<(), StoreError> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", s(key))
            .condition_expression("#status = :in_progress AND #owner = :token")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":in_progress", s("IN_PROGRESS"))
            .expression_attribute_values(":token", s(&token.0))
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            // Completed, gone, or someone else's claim now: nothing of ours to release.
            Err(e) if is_conditional_check_failed(&e) => Ok(()),
            Err(e) => Err(store_error(STORE, e)),
        }
    }
}

#[derive(Debug, Clone)]
enum Entry {
    InProgress { until: SystemTime, owner: ClaimToken },
    Completed { until: SystemTime },
}

/// The in-memory fake, with the same semantics as the DynamoDB adapter, on a clock tests can move.
#[derive(Debug)]
pub struct InMemoryIdempotencyStore {
    entries: Mutex<HashMap<String, Entry>>,
    clock: Arc<dyn Clock>,
}

impl Default for InMemoryIdempotencyStore {
    fn default() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }
}

impl InMemoryIdempotencyStore {
    /// A store that reads the time from `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self { entries: Mutex::new(HashMap::new()), clock }
    }
    /// Whether `key` is completed and remembered.
    pub fn is_completed(&self, key: &str) -> bool {
        let now = self.clock.now();
        matches!(self.entries.lock().expect("lock").get(key), Some(Entry::Completed { until }) if *until > now)
    }
    /// Whether `key` is claimed in progress.
    pub fn is_in_progress(&self, key: &str) -> bool {
        let now = self.clock.now();
        matches!(self.entries.lock().expect("lock").get(key), Some(Entry::InProgress { until, .. }) if *until > now)
    }
}

#[async_trait]
impl IdempotencyStore for InMemoryIdempotencyStore {
    async fn claim(&self, key: &str, locked_until: SystemTime) -> Result<Claim, StoreError> {
        let now = self.clock.now();
        let mut entries = self.entries.lock().expect("lock");
        match entries.get(key) {
            Some(Entry::Completed { until }) if *until > now => Ok(Claim::AlreadyCompleted),
            Some(Entry::InProgress { until, .. }) if *until > now => Ok(Claim::InProgress),
            _ => {
                let token = ClaimToken::new();
                entries.insert(key.to_string(), Entry::InProgress { until: locked_until, owner: token.clone() });
                Ok(Claim::Acquired(token))
            }
        }
    }

    async fn complete(&self, key: &str, token: &ClaimToken, keep_for: Duration) -> Result<(), StoreError> {
        let mut entries = self.entries.lock().expect("lock");
        match entries.get(key) {
            Some(Entry::InProgress { owner, .. }) if owner == token => {
                entries.insert(key.to_string(), Entry::Completed { until: self.clock.now() + keep_for });
                Ok(())
            }
            _ => Err(lost(key)),
        }
    }

    async fn release(&self, key: &str, token: &ClaimToken) -> Result<(), StoreError> {
        let mut entries = self.entries.lock().expect("lock");
        if matches!(entries.get(key), Some(Entry::InProgress { owner, .. }) if owner == token) {
            entries.remove(key);
        }
        Ok(())
    }
}
