//! What Sales keeps per caller: the idempotency keys they used and how many orders they placed this
//! hour. The port, its DynamoDB adapter and the in-memory fake.
//!
//! Table `callers`, partition key `pk`, items expiring through the table's TTL (`expiresAt`):
//!
//! ```text
//! key#<sub>#<Idempotency-Key>   orderId, requestHash   claimed before the order is stored; kept KEY_DAYS
//! orders#<sub>#<hour>           count                  one per caller and clock hour; kept 2 hours
//! ```
//!
//! A key is the caller's own (the subject is in the item's key), so two callers using the same key
//! never meet, and nobody learns whether another caller used a key. The order id a key stands for is
//! random and stored with the claim: knowing a key (and a subject) tells nothing about it.
//!
//! The claim is written before the order. If the process dies between the two writes, the retry
//! finds the claim (same request hash), finds no order, and stores it under the claimed id: one order,
//! never two.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, DurationRound, Utc};
#[cfg(feature = "aws")]
use orderflow_harness::dynamo::{get_s, is_conditional_check_failed, n, s, store_error};
use orderflow_harness::StoreError;

#[cfg(feature = "aws")]
const STORE: &str = "caller records";

/// How long an idempotency key is remembered: a retry with the same key after that is a new order.
pub const KEY_DAYS: i64 = 7;

/// What a key claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyClaim {
    /// The key is new: it now stands for the order id given.
    New,
    /// The caller used the key before, for this order id and request hash.
    Existing {
        /// The order the key stands for.
        order_id: String,
        /// The hash of the request that first used it.
        request_hash: String,
    },
}

/// Whether a caller may place another order now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// Counted: go on.
    Allowed,
    /// The caller placed `limit` orders this hour; the next window opens at `retry_at`.
    Exceeded {
        /// When the caller may try again.
        retry_at: DateTime<Utc>,
    },
}

/// Where Sales keeps per-caller records.
#[async_trait]
pub trait CallerRecords: Send + Sync {
    /// Claims `key` for `subject`, as standing for `order_id` with `request_hash`, unless the caller
    /// claimed it before (then returns that claim).
    async fn claim_key(
        &self,
        subject: &str,
        key: &str,
        order_id: &str,
        request_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<KeyClaim, StoreError>;

    /// Forgets a key claimed for an order that was then refused (the caller's limit).
    async fn release_key(&self, subject: &str, key: &str) -> Result<(), StoreError>;

    /// Counts one order for `subject` in the clock hour of `now`, unless `limit` are counted already.
    async fn count_order(&self, subject: &str, limit: u32, now: DateTime<Utc>) -> Result<Quota, StoreError>;
}

fn hour_of(now: DateTime<Utc>) -> DateTime<Utc> {
    now.duration_trunc(Duration::hours(1)).unwrap_or(now)
}

fn key_pk(subject: &str, key: &str) -> String {
    format!("key#{subject}#{key}")
}

fn window_pk(subject: &str, now: DateTime<Utc>) -> String {
    format!("orders#{subject}#{}", hour_of(now).format("%Y-%m-%dT%H"))
}

/// The DynamoDB adapter.
#[derive(Debug, Clone)]
#[cfg(feature = "aws")]
pub struct DynamoDbCallerRecords {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

#[cfg(feature = "aws")]
impl DynamoDbCallerRecords {
    /// Uses `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

#[cfg(feature = "aws")]
#[async_trait]
impl CallerRecords for DynamoDbCallerRecords {
    async fn claim_key(
        &self,
        subject: &str,
        key: &str,
        order_id: &str,
        request_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<KeyClaim, StoreError> {
        let pk = key_pk(subject, key);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(&pk))
            .item("orderId", s(order_id))
            .item("requestHash", s(request_hash))
            .item("expiresAt", n((now + Duration::days(KEY_DAYS)).timestamp()))
            // An expired claim counts as none, whenever DynamoDB's TTL gets round to deleting it.
            .condition_expression("attribute_not_exists(pk) OR expiresAt < :now")
            .expression_attribute_values(":now", n(now.timestamp()))
            .send()
            .await;
        match put {
            Ok(_) => Ok(KeyClaim::New),
            Err(e) if is_conditional_check_failed(&e) => {
                let out = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("pk", s(&pk))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| store_error(STORE, e))?;
                let item = out.item().ok_or_else(|| StoreError::retryable(STORE, "key claim vanished"))?;
                Ok(KeyClaim::Existing {
                    order_id: get_s(item, "orderId").unwrap_or_default().to_string(),
                    request_hash: get_s(item, "requestHash").unwrap_or_default().to_string(),
                })
            }
            Err(e) => Err(store_error(STORE, e)),
        }
    }

    async fn release_key(&self, subject: &str, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(key_pk(subject, key)))
            .send()
            .await
            .map_err(|e| store_error(STORE, e))?;
        Ok(())
    }

    async fn count_order(&self, subject: &str, limit: u32, now: DateTime<Utc>) -> Result<Quota, StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(window_pk(subject, now)))
            .update_expression("ADD #count :one SET expiresAt = :expires")
            .condition_expression("attribute_not_exists(#count) OR #count < :limit")
            .expression_attribute_names("#count", "count")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":limit", n(limit))
            .expression_attribute_values(":expires", n((hour_of(now) + Duration::hours(2)).timestamp()))
            .send()
            .await;
        match update {
            Ok(_) => Ok(Quota::Allowed),
            Err(e) if is_conditional_check_failed(&e) => {
                Ok(Quota::Exceeded { retry_at: hour_of(now) + Duration::hours(1) })
            }
            Err(e) => Err(store_error(STORE, e)),
        }
    }
}

/// The in-memory fake, with the adapter's semantics (windows by clock hour, keys per subject).
#[derive(Debug, Default)]
pub struct InMemoryCallerRecords {
    keys: Mutex<HashMap<String, (String, String)>>,
    counts: Mutex<HashMap<String, u32>>,
}

#[async_trait]
impl CallerRecords for InMemoryCallerRecords {
    async fn claim_key(
        &self,
        subject: &str,
        key: &str,
        order_id: &str,
        request_hash: &str,
        _now: DateTime<Utc>,
    ) -> Result<KeyClaim, StoreError> {
        let mut keys = self.keys.lock().expect("lock");
        match keys.get(&key_pk(subject, key)) {
            Some((order_id, request_hash)) => {
                Ok(KeyClaim::Existing { order_id: order_id.clone(), request_hash: request_hash.clone() })
            }
            None => {
                keys.insert(key_pk(subject, key), (order_id.to_string(), request_hash.to_string()));
                Ok(KeyClaim::New)
            }
        }
    }

    async fn release_key(&self, subject: &str, key: &str) -> Result<(), StoreError> {
        self.keys.lock().expect("lock").remove(&key_pk(subject, key));
        Ok(())
    }

    async fn count_order(&self, subject: &str, limit: u32, now: DateTime<Utc>) -> Result<Quota, StoreError> {
        let mut counts = self.counts.lock().expect("lock");
        let count = counts.entry(window_pk(subject, now)).or_default();
        if *count >= limit {
            return Ok(Quota::Exceeded { retry_at: hour_of(now) + Duration::hours(1) });
        }
        *count += 1;
        Ok(Quota::Allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_clock_hours() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(window_pk("u", at("2026-12-02T10:59:59Z")), "orders#u#2026-12-02T10");
        assert_eq!(window_pk("u", at("2026-12-02T11:00:00Z")), "orders#u#2026-12-02T11");
    }
}
