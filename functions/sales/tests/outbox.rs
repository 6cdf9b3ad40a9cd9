//! The outbox relay over a fake publisher, fed DynamoDB stream records as Lambda delivers them
//! (`events-samples/sales-outbox-relay/`), including the publish path failing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::event::dynamodb::Event as StreamEvent;
use orderflow_contracts::OrderPlaced;
use orderflow_harness::publisher::{FailedEntry, InMemoryPublisher, PublishError};
use orderflow_harness::testing::sample_text;
use orderflow_harness::{EventPublisher, OutboundEvent};
use pretty_assertions::assert_eq;
use sales::outbox::OutboxRelay;

/// EventBridge down for the first `down_for` calls.
#[derive(Default)]
struct FlakyBus {
    inner: InMemoryPublisher,
    down_for: usize,
    calls: AtomicUsize,
}

#[async_trait]
impl EventPublisher for FlakyBus {
    async fn publish(&self, events: Vec<OutboundEvent>) -> Result<(), PublishError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < self.down_for {
            let failed = events
                .iter()
                .map(|e| FailedEntry {
                    event_id: e.event_id.clone(),
                    detail_type: e.detail_type.clone(),
                    code: "InternalFailure".into(),
                    message: "down".into(),
                })
                .collect();
            return Err(PublishError::NotPublished { failed, total: events.len(), attempts: 4, retryable: true });
        }
        self.inner.publish(events).await
    }
}

fn sample() -> StreamEvent {
    serde_json::from_str(&sample_text("sales-outbox-relay/orders-stream.json")).expect("a DynamoDB stream event")
}

#[tokio::test]
async fn new_outbox_events_are_published_and_rewrites_without_one_are_not() {
    // The sample: an INSERT (OrderPlaced), a MODIFY that changed nothing in the outbox, and a MODIFY
    // with a new OrderStatusChanged.
    let bus = Arc::new(FlakyBus::default());
    let response = OutboxRelay::new(bus.clone()).relay(sample()).await;
    assert!(response.batch_item_failures.is_empty());
    let published: Vec<String> = bus.inner.published().iter().map(|e| e.detail_type.clone()).collect();
    assert_eq!(published, vec!["OrderPlaced", "OrderStatusChanged"]);
    let placed = bus.inner.envelopes::<OrderPlaced>();
    assert_eq!(placed[0].data.order_id, "ord-7f3a2c");
}

#[tokio::test]
async fn when_the_bus_is_down_the_stream_retries_from_the_first_unsent_record_and_sends_the_same_events() {
    let bus = Arc::new(FlakyBus { down_for: 1, ..FlakyBus::default() });
    let relay = OutboxRelay::new(bus.clone());
    let event = sample();
    let first_sequence = event.records[0].change.sequence_number.clone();

    let response = relay.relay(event).await;
    let failures: Vec<Option<String>> =
        response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    assert_eq!(failures, vec![first_sequence], "the checkpoint stays before the first unsent record");
    assert!(bus.inner.published().is_empty());

    // Lambda redelivers from that record; the bus is back.
    let retry = relay.relay(sample()).await;
    assert!(retry.batch_item_failures.is_empty());
    let ids: Vec<String> = bus.inner.published().iter().map(|e| e.event_id.clone()).collect();
    assert_eq!(ids.len(), 2);
    let stored: Vec<String> =
        sample().records.iter().filter_map(|r| sales::outbox::announcement(r).unwrap()).map(|e| e.event_id).collect();
    assert_eq!(ids, stored, "exactly the stored events, with their stored ids");
}
