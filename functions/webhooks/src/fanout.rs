//! `webhooks-fanout`: one event in, one delivery per matching active subscription out, onto the
//! deliveries queue. The delivery carries the event exactly as EventBridge delivers it (so the
//! delivery consumer reads it through the same harness) and the subscription's id as a message
//! attribute (so each subscription's delivery is deduplicated on its own).

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageAttributeValue, SendMessageBatchRequestEntry};
use orderflow_contracts::{AnyEvent, Inbound, Metadata};
use orderflow_harness::{Handler, HandlerError, RecordContext};
use serde_json::json;
use tracing::info;

use crate::subscriptions::SubscriptionStore;
use crate::SUBSCRIPTION_ATTRIBUTE;

/// Where deliveries are queued.
#[async_trait]
pub trait DeliveryQueue: Send + Sync {
    /// Queues `body` once per subscription id.
    async fn enqueue(&self, body: &str, subscription_ids: &[String]) -> Result<(), String>;
}

/// The SQS adapter (batches of 10, SQS's limit).
#[derive(Debug, Clone)]
pub struct SqsDeliveryQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsDeliveryQueue {
    /// Queues to `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }
}

#[async_trait]
impl DeliveryQueue for SqsDeliveryQueue {
    async fn enqueue(&self, body: &str, subscription_ids: &[String]) -> Result<(), String> {
        for chunk in subscription_ids.chunks(10) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, id) in chunk.iter().enumerate() {
                let attribute = MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(id)
                    .build()
                    .map_err(|e| e.to_string())?;
                entries.push(
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .message_attributes(SUBSCRIPTION_ATTRIBUTE, attribute)
                        .build()
                        .map_err(|e| e.to_string())?,
                );
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
            if !out.failed().is_empty() {
                return Err(format!("{} deliveries not queued", out.failed().len()));
            }
        }
        Ok(())
    }
}

/// The in-memory fake.
#[derive(Debug, Default)]
pub struct InMemoryDeliveryQueue {
    queued: Mutex<Vec<(String, String)>>,
}

impl InMemoryDeliveryQueue {
    /// `(subscription id, body)` of every delivery queued.
    pub fn queued(&self) -> Vec<(String, String)> {
        self.queued.lock().expect("lock").clone()
    }
}

#[async_trait]
impl DeliveryQueue for InMemoryDeliveryQueue {
    async fn enqueue(&self, body: &str, subscription_ids: &[String]) -> Result<(), String> {
        self.queued.lock().expect("lock").extend(subscription_ids.iter().map(|id| (id.clone(), body.to_string())));
        Ok(())
    }
}

/// The event as EventBridge delivers it to a queue (what the harness reads).
pub fn eventbridge_body(event: &AnyEvent, metadata: &Metadata) -> String {
    json!({
        "version": "0",
        "id": metadata.event_id,
        "detail-type": event.name(),
        "source": event.source(),
        "time": metadata.occurred_at,
        "resources": [],
        "detail": {"metadata": metadata, "data": event.data()},
    })
    .to_string()
}

/// The fan-out handler.
pub struct Fanout {
    subscriptions: Arc<dyn SubscriptionStore>,
    deliveries: Arc<dyn DeliveryQueue>,
}

impl Fanout {
    /// The handler over its ports.
    pub fn new(subscriptions: Arc<dyn SubscriptionStore>, deliveries: Arc<dyn DeliveryQueue>) -> Self {
        Self { subscriptions, deliveries }
    }
}

#[async_trait]
impl Handler<AnyEvent> for Fanout {
    async fn handle(&self, event: AnyEvent, ctx: &RecordContext) -> Result<(), HandlerError> {
        // Read for every event (a scan of a small table, no cache): a subscription gets the very next
        // event after it is created, and none after it is deleted; an event that happened before it
        // was created (repeated later: a redrive, a republish) it never gets (`Route::wants`). With
        // many subscriptions, an index by event type would be the next step.
        let matching: Vec<String> = self
            .subscriptions
            .routes()
            .await?
            .into_iter()
            .filter(|s| s.wants(event.name(), ctx.metadata.occurred_at))
            .map(|s| s.id)
            .collect();
        if matching.is_empty() {
            return Ok(());
        }
        // A retry after a partial failure queues some deliveries again; each is deduplicated by the
        // delivery consumer on event id and subscription.
        self.deliveries
            .enqueue(&eventbridge_body(&event, &ctx.metadata), &matching)
            .await
            .map_err(HandlerError::retryable)?;
        info!(subscriptions = matching.len(), "deliveries queued");
        Ok(())
    }
}
