//! The outbox's fast path: whoever writes an order (the API, the status consumer) publishes the
//! write's outbox events right after the write, and marks them sent; the stream relay
//! ([`crate::outbox`]) then publishes only what is not marked.
//!
//! ```text
//! write (state + outbox, one item) ─► publish the outbox now (one attempt, within PUBLISH_BUDGET)
//!       │                                 ├─ on the bus ─► add their ids to sentIds ─► the relay
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
use orderflow_harness::{EventPublisher, OutboundEvent, StoreError};
use tracing::{info, warn};

use crate::orders::{Created, OrderStore, Saved, SentMarks, StoredOrder};

/// How long a writer waits for its own publish before leaving it to the relay.
pub const PUBLISH_BUDGET: Duration = Duration::from_secs(1);

/// An [`OrderStore`] whose writes are published on the writer's path as well as by the relay.
pub struct PublishOnWrite {
    orders: Arc<dyn OrderStore>,
    marks: Arc<dyn SentMarks>,
    publisher: Arc<dyn EventPublisher>,
    budget: Duration,
}

impl PublishOnWrite {
    /// `orders` and `marks` are the same table (the DynamoDB adapter implements both); `publisher`
    /// should make one attempt: the relay is the retry.
    pub fn new(orders: Arc<dyn OrderStore>, marks: Arc<dyn SentMarks>, publisher: Arc<dyn EventPublisher>) -> Self {
        Self { orders, marks, publisher, budget: PUBLISH_BUDGET }
    }

    /// Waits at most `budget` for a publish.
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// Publishes what a write stored, then marks it. Never fails the write: the relay publishes
    /// whatever is not marked.
    async fn announce(&self, order_id: &str, events: &[OutboundEvent]) {
        let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
        match tokio::time::timeout(self.budget, self.publisher.publish(events.to_vec())).await {
            Ok(Ok(())) => match self.marks.mark_sent(order_id, &ids).await {
                Ok(()) => info!(order_id, published = ids.len(), "outbox published on the write's path"),
                Err(e) => warn!(order_id, error = %e,
                    "outbox published on the write's path but not marked: the relay publishes it again, consumers drop the repeat"),
            },
            Ok(Err(e)) => {
                warn!(order_id, error = %e, "outbox not published on the write's path: the relay publishes it")
            }
            Err(_) => warn!(
                order_id,
                budget_ms = self.budget.as_millis() as u64,
                "outbox publish on the write's path too slow: the relay publishes it"
            ),
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
/// path over `bus` when `publish_on_write` (else the relay alone publishes).
pub fn writer_store(
    sdk: &aws_config::SdkConfig,
    table: String,
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
    Arc::new(PublishOnWrite::new(store.clone(), store, Arc::new(publisher)))
}
