//! `sales-outbox-relay`: publishes what Sales stored in its orders' outbox.
//!
//! ```text
//! orders table write (state + `outbox` event, one item) ─► DynamoDB stream (INSERT / MODIFY, in order per order)
//!    ─► relay: a new `outbox` event in the record? ─► PutEvents (chunked, failed entries resent)
//!                                                 └─ not sent ─► that record reported as the batch item
//!                                                    failure: the stream retries from it, in order
//! ```
//!
//! The event ids in the outbox are derived (from the order id, or from the cause), so a record the
//! stream delivers twice is published twice as the *same* event, which every consumer drops as a
//! duplicate: each write is announced exactly once as far as consumers can tell.

use std::sync::Arc;

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use orderflow_harness::publisher::PublishError;
use orderflow_harness::{EventPublisher, OutboundEvent};
use serde_json::Value;
use tracing::{error, info, warn};

/// The relay: a publisher.
pub struct OutboxRelay {
    publisher: Arc<dyn EventPublisher>,
}

/// The `outbox` attribute of a stream image (`{"outbox": {"S": "<json>"}}`), if any.
fn outbox_of(image: &impl serde::Serialize) -> Result<Option<OutboundEvent>, String> {
    let value = serde_json::to_value(image).map_err(|e| e.to_string())?;
    match value.get("outbox").and_then(|a| a.get("S")).and_then(Value::as_str) {
        None => Ok(None),
        Some(text) => serde_json::from_str(text).map(Some).map_err(|e| format!("outbox unreadable: {e}")),
    }
}

/// The event a record asks to publish: its new image's outbox, unless the old image had the same one
/// (a write that did not announce anything new).
pub fn announcement(record: &EventRecord) -> Result<Option<OutboundEvent>, String> {
    let Some(new) = outbox_of(&record.change.new_image)? else { return Ok(None) };
    let old = outbox_of(&record.change.old_image).unwrap_or(None);
    Ok((old.map(|o| o.event_id) != Some(new.event_id.clone())).then_some(new))
}

impl OutboxRelay {
    /// The relay over its publisher.
    pub fn new(publisher: Arc<dyn EventPublisher>) -> Self {
        Self { publisher }
    }

    /// Publishes every new announcement of the batch; reports the first record that could not be
    /// published (the stream then retries from there, in order; what was sent before is not lost and
    /// what is sent again is the same event).
    pub async fn relay(&self, event: StreamEvent) -> DynamoDbEventResponse {
        let mut response = DynamoDbEventResponse::default();
        let mut pending: Vec<(usize, OutboundEvent)> = Vec::new();
        let mut first_failure: Option<usize> = None;
        for (i, record) in event.records.iter().enumerate() {
            match announcement(record) {
                Ok(Some(e)) => pending.push((i, e)),
                Ok(None) => {}
                Err(reason) => {
                    // Never skipped: the stream keeps it until an operator looks (see the alarm).
                    error!(sequence_number = ?record.change.sequence_number, %reason, "outbox record unreadable");
                    first_failure = Some(i);
                    break;
                }
            }
        }
        if let Some(stop) = first_failure {
            pending.retain(|(i, _)| *i < stop);
        }
        let events: Vec<OutboundEvent> = pending.iter().map(|(_, e)| e.clone()).collect();
        let count = events.len();
        if count > 0 {
            match self.publisher.publish(events).await {
                Ok(()) => info!(published = count, "outbox relayed"),
                Err(e) => {
                    warn!(error = %e, "outbox not fully relayed: the stream retries from the first unsent record");
                    let unsent: Vec<String> = match &e {
                        PublishError::NotPublished { failed, .. } => {
                            failed.iter().map(|f| f.event_id.clone()).collect()
                        }
                        PublishError::TooLarge { event_id, .. } => vec![event_id.clone()],
                    };
                    let failed_at = pending.iter().find(|(_, ev)| unsent.contains(&ev.event_id)).map(|(i, _)| *i);
                    first_failure = match (failed_at, first_failure) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
            }
        }
        if let Some(i) = first_failure {
            let record = &event.records[i];
            // The sequence number is the stream's checkpoint; a record without one cannot be named,
            // so the event id (also unique per record) is reported, which fails the batch as a whole.
            let id = record.change.sequence_number.clone().unwrap_or_else(|| record.event_id.clone());
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(id);
            response.batch_item_failures.push(failure);
        }
        response
    }
}
