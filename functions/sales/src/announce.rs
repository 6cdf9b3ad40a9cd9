//! The outbox's fast path: whoever writes an order (the API, the status consumer) publishes the
//! write's outbox events right after the write, and marks them sent; the stream relay
//! ([`crate::outbox`]) then publishes only what is not marked.
//!
//! ```text
//! write (state + outbox, one item) ─► publish the outbox now (one attempt, within PUBLISH_BUDGET)
//!       │                                 ├─ on the bus ─► mark them (marks table) ─► the relay
//!       │                                 │                skips them
//!       │                                 └─ failed, slow, or the process died ─► no mark
//!       └─ the table's stream ─► relay ─► consistent read of sentIds ─► publishes what is unmarked
//! ```
//!
//! The guarantee is the outbox's, unchanged: the write alone decides that the events go out, so
//! nothing is stored and never announced, whatever dies between the write, the publish and the mark.
//! What the fast path adds is a window in which an event can be published twice (published, then
//! the relay reads before the mark lands, or the mark fails): the same event, with the same derived
//! id, which every consumer drops. What it saves is the stream's poll on the order's path (on AWS,
//! a shard is polled four times a second). Events of one order may then reach the bus out of the
//! writes' order (a fast path that failed, then a later write's that did not); every consumer of
//! Sales' events already tolerates that (versioned read models, the workflow's steps keyed by
//! order).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orderflow_contracts::OrderState;
use orderflow_harness::{telemetry, EventPublisher, OutboundEvent, StoreError};
use tracing::{info, warn};

use crate::orders::{Created, OrderStore, Saved, StoredOrder};

/// The marks of the fast path: which of an order's outbox events its writer already published. A
/// mark only saves the relay a publish; a missing mark costs a duplicate, which every consumer drops
/// (the events' ids are derived). Kept apart from the orders table (whose stream would hand every
/// mark to the relay as one more write, and whose items hold the customer's details).
#[async_trait]
pub trait SentMarks: Send + Sync {
    /// Adds `event_ids` (a write's outbox, published) to the order's marks. Every write's marks are
    /// kept (a few per order), so a late mark still spares the relay, whatever was written since.
    async fn mark_sent(&self, order_id: &str, event_ids: &[String]) -> Result<(), StoreError>;
    /// The event ids marked sent for the order (strongly consistent); none if it has no marks.
    async fn sent(&self, order_id: &str) -> Result<Vec<String>, StoreError>;
}

/// How long marks are kept: far beyond any stream record's life (24 h) and the relay's retries.
pub const MARKS_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// The DynamoDB adapter. Table: partition key `orderId` (S); `sentIds` (SS); TTL `expiresAt`.
#[derive(Debug, Clone)]
#[cfg(feature = "aws")]
pub struct DynamoDbSentMarks {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

#[cfg(feature = "aws")]
impl DynamoDbSentMarks {
    /// Uses `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

#[cfg(feature = "aws")]
const MARKS: &str = "outbox marks";

#[cfg(feature = "aws")]
#[async_trait]
impl SentMarks for DynamoDbSentMarks {
    async fn mark_sent(&self, order_id: &str, event_ids: &[String]) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::AttributeValue;
        use orderflow_harness::dynamo::{n, s, store_error};
        if event_ids.is_empty() {
            return Ok(());
        }
        let expires = std::time::SystemTime::now() + MARKS_KEPT;
        let expires = expires.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        self.client
            .update_item()
            .table_name(&self.table)
            .key("orderId", s(order_id))
            .update_expression("ADD sentIds :ids SET expiresAt = :expires")
            .expression_attribute_values(":ids", AttributeValue::Ss(event_ids.to_vec()))
            .expression_attribute_values(":expires", n(expires))
            .send()
            .await
            .map_err(|e| store_error(MARKS, e))?;
        Ok(())
    }

    async fn sent(&self, order_id: &str) -> Result<Vec<String>, StoreError> {
        use orderflow_harness::dynamo::{s, store_error};
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("orderId", s(order_id))
            .projection_expression("sentIds")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(MARKS, e))?;
        Ok(out.item().and_then(|i| i.get("sentIds")).and_then(|v| v.as_ss().ok()).cloned().unwrap_or_default())
    }
}

/// The in-memory fake: a string set per order.
#[derive(Debug, Default)]
pub struct InMemorySentMarks {
    sent: std::sync::Mutex<std::collections::HashMap<String, Vec<String>>>,
}

#[async_trait]
impl SentMarks for InMemorySentMarks {
    async fn mark_sent(&self, order_id: &str, event_ids: &[String]) -> Result<(), StoreError> {
        let mut sent = self.sent.lock().expect("lock");
        let marks = sent.entry(order_id.to_string()).or_default();
        for id in event_ids {
            if !marks.contains(id) {
                marks.push(id.clone());
            }
        }
        Ok(())
    }

    async fn sent(&self, order_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.sent.lock().expect("lock").get(order_id).cloned().unwrap_or_default())
    }
}

/// The fast path's metrics (namespace `Orderflow`, on each invocation's EMF line): what the writers
/// published themselves, what they left to the relay, and what the relay published and skipped. With
/// the fast path on, the relay publishing at all means writers are failing: the template's
/// `SalesOutboxFastPathAlarm` watches [`RELAY_PUBLISHED`].
pub mod metrics {
    /// Events a writer published and marked on its write's path (dimension `Function` or `Consumer`).
    pub const FAST_PATH_PUBLISHED: &str = "OutboxFastPathPublished";
    /// Events a writer left to the relay: the publish or the mark failed or ran over its budget.
    pub const FAST_PATH_MISSED: &str = "OutboxFastPathMissed";
    /// Events the relay published (with the fast path on: those no writer marked in time).
    pub const RELAY_PUBLISHED: &str = "OutboxRelayPublished";
    /// Events the relay left out because their writer had marked them.
    pub const RELAY_SKIPPED: &str = "OutboxRelaySkipped";
    /// Stream records the relay sent to its dead-letter queue: they can never be published.
    pub const RELAY_DEAD_LETTERED: &str = "OutboxRelayDeadLettered";
}

/// How long a writer waits for its own publish, and then for its mark, before leaving them to the
/// relay.
pub const PUBLISH_BUDGET: Duration = Duration::from_secs(1);

/// An [`OrderStore`] whose writes are published on the writer's path as well as by the relay.
pub struct PublishOnWrite {
    orders: Arc<dyn OrderStore>,
    marks: Arc<dyn SentMarks>,
    publisher: Arc<dyn EventPublisher>,
    budget: Duration,
}

impl PublishOnWrite {
    /// The orders, the marks, and a `publisher` that makes one attempt: the relay is the retry.
    pub fn new(orders: Arc<dyn OrderStore>, marks: Arc<dyn SentMarks>, publisher: Arc<dyn EventPublisher>) -> Self {
        Self { orders, marks, publisher, budget: PUBLISH_BUDGET }
    }

    /// Waits at most `budget` for a publish.
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// Publishes what a write stored, then marks it, each within the budget (so the mark lands
    /// inside the relay's grace, [`crate::outbox::WRITER_GRACE`], or not at all). Never fails the
    /// write: the relay publishes whatever is not marked. The mark comes only after the bus took
    /// every event: a mark is the relay's reason to skip one.
    async fn announce(&self, order_id: &str, events: &[OutboundEvent]) {
        let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
        let over = |what: &'static str| move |_| (what, format!("over the budget of {:?}", self.budget));
        let outcome: Result<(), (&str, String)> = async {
            let published = tokio::time::timeout(self.budget, self.publisher.publish(events.to_vec())).await;
            published.map_err(over("not published"))?.map_err(|e| ("not published", e.to_string()))?;
            let marked = tokio::time::timeout(self.budget, self.marks.mark_sent(order_id, &ids)).await;
            marked.map_err(over("published but not marked"))?.map_err(|e| ("published but not marked", e.to_string()))
        }
        .await;
        match outcome {
            Ok(()) => {
                telemetry::count(metrics::FAST_PATH_PUBLISHED, ids.len() as u64);
                info!(order_id, published = ids.len(), "outbox published on the write's path")
            }
            Err((what, error)) => {
                telemetry::count(metrics::FAST_PATH_MISSED, ids.len() as u64);
                warn!(order_id, error = %error,
                "outbox {what} on the write's path: the relay publishes it (a repeat, if it was published, is dropped by consumers)")
            }
        }
    }
}

#[async_trait]
impl OrderStore for PublishOnWrite {
    async fn create(&self, order: &StoredOrder, announcement: &OutboundEvent) -> Result<Created, StoreError> {
        let created = self.orders.create(order, announcement).await?;
        if created == Created::New {
            self.announce(&order.state.order_id, std::slice::from_ref(announcement)).await;
        }
        Ok(created)
    }

    async fn get(&self, order_id: &str) -> Result<Option<StoredOrder>, StoreError> {
        self.orders.get(order_id).await
    }

    async fn change_status(
        &self,
        state: &OrderState,
        expected_version: u64,
        announcements: &[OutboundEvent],
    ) -> Result<Saved, StoreError> {
        let saved = self.orders.change_status(state, expected_version, announcements).await?;
        if saved == Saved::Saved {
            self.announce(&state.order_id, announcements).await;
        }
        Ok(saved)
    }
}

/// Whether writers publish on their own path unless configured otherwise (`OUTBOX_PUBLISH_ON_WRITE`).
pub const PUBLISH_ON_WRITE: bool = true;

/// The order store a writer (the API, the status consumer) uses: the DynamoDB table, with the fast
/// path over `bus`, marked in `marks_table`, when `publish_on_write` (else the relay alone publishes).
#[cfg(feature = "aws")]
pub fn writer_store(
    sdk: &aws_config::SdkConfig,
    table: String,
    marks_table: String,
    bus: String,
    publish_on_write: bool,
) -> Arc<dyn OrderStore> {
    use orderflow_harness::publisher::{ChunkedPublisher, EventBridgeApi};
    let store = Arc::new(crate::orders::DynamoDbOrderStore::new(aws_sdk_dynamodb::Client::new(sdk), table));
    if !publish_on_write {
        return store;
    }
    // One attempt: a failed publish is the relay's to repeat, not the caller's to wait for.
    let api = EventBridgeApi::new(aws_sdk_eventbridge::Client::new(sdk), bus);
    let publisher = ChunkedPublisher::with_policy(api, 1, Duration::ZERO);
    let marks = DynamoDbSentMarks::new(aws_sdk_dynamodb::Client::new(sdk), marks_table);
    Arc::new(PublishOnWrite::new(store, Arc::new(marks), Arc::new(publisher)))
}
