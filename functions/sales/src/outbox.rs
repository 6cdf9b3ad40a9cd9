//! `sales-outbox-relay`: publishes what Sales stored in its orders' outbox.
//!
//! ```text
//! orders table write (state + `outbox` event, one item) ─► DynamoDB stream (INSERT / MODIFY, in order per order)
//!    ─► relay: a new `outbox` event in the record? ─► PutEvents (chunked, failed entries resent)
//!                                                 └─ not sent ─► the first unpublished record and every
//!                                                    record after it reported as batch item failures:
//!                                                    the stream retries from there, in order
//! ```
//!
//! Nothing is checkpointed unpublished. A record that can never be published (its `outbox` does not
//! read, or holds an event over PutEvents' size limit) goes to the relay's dead-letter queue with the
//! reason once the stream moves past it (every record before it published: not on each retry of a
//! batch the bus refused), and the relay carries on past it ([`OutboxRelay::with_dead_letters`]); if
//! that send fails, the batch stops at the record as below. A record that could not be published for a
//! passing reason (the bus down, throttling) stops the batch at its record: the events before it are
//! published, and the stream retries from it, in order, for as long as the template's retry policy
//! allows (hours, for a bus outage), then hands the range to the same queue, from which an operator
//! republishes.
//!
//! With the fast path ([`crate::announce`]), the writer has usually published a write's events
//! already and marked them sent: the relay reads the marks of the batch's orders (consistently, one
//! read per order) and publishes only what is unmarked. A write younger than [`WRITER_GRACE`] whose
//! events are unmarked is looked at again (25 ms, doubling) until they are marked or the grace is
//! over (never into the last [`PUBLISH_RESERVE`] of the invocation), so a relay quicker than the
//! writer does not publish them a second time. Marks it cannot read (an error, or slower than
//! [`MARKS_READ_TIMEOUT`]) end the wait: it publishes. The worst a relay does is publish an event
//! twice, never not at all.
//!
//! The event ids in the outbox are derived (from the order id, or from the cause), so a record the
//! stream delivers twice is published twice as the *same* event, which every consumer drops as a
//! duplicate: each write is announced exactly once as far as consumers can tell.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use chrono::{TimeDelta, Utc};
use orderflow_harness::dead_letter::{DeadLetter, DeadLetterSink};
use orderflow_harness::publisher::{PublishError, MAX_REQUEST_BYTES};
use orderflow_harness::{deadline, telemetry, EventPublisher, OutboundEvent};
use serde_json::Value;
use tracing::{error, info, warn};

use crate::announce::{metrics, SentMarks};

/// The relay: a publisher, the fast path's marks if writers publish too, and where the records that
/// can never be published go.
pub struct OutboxRelay {
    publisher: Arc<dyn EventPublisher>,
    marks: Option<Arc<dyn SentMarks>>,
    dead_letters: Option<Arc<dyn DeadLetterSink>>,
    grace: Duration,
}

/// The name a dead-lettered outbox record carries as its consumer.
pub const RELAY: &str = "sales-outbox-relay";

/// The largest stream record a dead letter carries whole; a bigger one (an event over PutEvents'
/// limit) is dead-lettered with its keys and sequence number, and its order item still holds it.
pub const DEAD_LETTER_RECORD_BYTES: usize = 192 * 1024;

/// The body a record that can never be published is dead-lettered with: the stream record as Lambda
/// delivered it, or, past [`DEAD_LETTER_RECORD_BYTES`], without its images.
pub fn dead_letter_body(record: &EventRecord) -> String {
    let whole = serde_json::to_string(record).unwrap_or_default();
    if whole.len() <= DEAD_LETTER_RECORD_BYTES {
        return whole;
    }
    let mut value = serde_json::to_value(record).unwrap_or_default();
    if let Some(change) = value.get_mut("dynamodb").and_then(Value::as_object_mut) {
        change.remove("NewImage");
        change.remove("OldImage");
    }
    value.to_string()
}

/// How long after a write the relay leaves its events to their writer: the writer's publish budget,
/// the mark after it, and the second the stream's creation time is rounded down to. A record this
/// young with unmarked events is looked at again until they are marked or the grace is over, so a
/// relay that is quicker than the writer's mark does not publish the same events a second time.
pub const WRITER_GRACE: Duration = Duration::from_millis(3_500);

/// How long one read of an order's marks may take before the relay stops waiting and publishes.
pub const MARKS_READ_TIMEOUT: Duration = Duration::from_millis(500);

/// What the relay keeps of its invocation for publishing (the publisher's resends) when it waits
/// for writers' marks: it never waits into it.
pub const PUBLISH_RESERVE: Duration = Duration::from_secs(5);

/// The order a stream record is about (its key `orderId`).
fn order_id_of(record: &EventRecord) -> Option<String> {
    let keys = serde_json::to_value(&record.change.keys).ok()?;
    keys.get("orderId").and_then(|a| a.get("S")).and_then(Value::as_str).map(str::to_string)
}

/// The `outbox` attribute of a stream image (`{"outbox": {"S": "<json>"}}`): one event (a JSON
/// object), or several stored by one write (a JSON array, e.g. a cancellation's `OrderStatusChanged`
/// and `OrderCancelled`).
fn outbox_of(image: &impl serde::Serialize) -> Result<Vec<OutboundEvent>, String> {
    let value = serde_json::to_value(image).map_err(|e| e.to_string())?;
    let unreadable = |e: serde_json::Error| orderflow_harness::redact::redact(&format!("outbox unreadable: {e}"));
    match value.get("outbox").and_then(|a| a.get("S")).and_then(Value::as_str) {
        None => Ok(vec![]),
        Some(text) if text.trim_start().starts_with('[') => serde_json::from_str(text).map_err(unreadable),
        Some(text) => serde_json::from_str(text).map(|e| vec![e]).map_err(unreadable),
    }
}

/// The events a record asks to publish: its new image's outbox, less what the old image already had
/// (a write that did not announce anything new has nothing to publish).
pub fn announcement(record: &EventRecord) -> Result<Vec<OutboundEvent>, String> {
    let new = outbox_of(&record.change.new_image)?;
    let old = outbox_of(&record.change.old_image).unwrap_or_default();
    Ok(new.into_iter().filter(|e| !old.iter().any(|o| o.event_id == e.event_id)).collect())
}

impl OutboxRelay {
    /// The relay over its publisher.
    pub fn new(publisher: Arc<dyn EventPublisher>) -> Self {
        Self { publisher, marks: None, dead_letters: None, grace: WRITER_GRACE }
    }

    /// Waits at most `grace` after a write for its writer's mark (tests: zero).
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Sends a record that can never be published to `sink` (the relay's dead-letter queue) with the
    /// reason, and carries on past it; without one, such a record stops the batch until the stream's
    /// retries run out.
    pub fn with_dead_letters(mut self, sink: Arc<dyn DeadLetterSink>) -> Self {
        self.dead_letters = Some(sink);
        self
    }

    /// Dead-letters a record that can never be published; false if there is nowhere to send it or
    /// the send failed (then the batch stops at it, and the stream keeps it until its retries run out).
    async fn dead_letter(&self, record: &EventRecord, reason: String) -> bool {
        let id = record.change.sequence_number.clone().unwrap_or_else(|| record.event_id.clone());
        let Some(sink) = &self.dead_letters else {
            error!(sequence_number = %id, %reason, "outbox record can never be published, and there is no dead-letter queue");
            return false;
        };
        let letter = DeadLetter {
            consumer: RELAY.into(),
            message_id: id.clone(),
            body: dead_letter_body(record),
            reason: reason.clone(),
            receive_count: 1,
            message_group_id: None,
            attributes: Default::default(),
        };
        match sink.send(letter).await {
            Ok(()) => {
                telemetry::count(metrics::RELAY_DEAD_LETTERED, 1);
                error!(sequence_number = %id, order_id = order_id_of(record).unwrap_or_default(), %reason,
                    "outbox record can never be published: dead-lettered, the relay carries on");
                true
            }
            Err(e) => {
                warn!(sequence_number = %id, error = %e, "outbox record not dead-lettered: the stream retries it");
                false
            }
        }
    }

    /// Leaves out the events their writer already published and marked ([`crate::announce`]).
    pub fn with_sent_marks(mut self, marks: Arc<dyn SentMarks>) -> Self {
        self.marks = Some(marks);
        self
    }

    /// The marked event ids of these orders, read concurrently, each read within
    /// [`MARKS_READ_TIMEOUT`]; `None` if any could not be read (then nothing is known to be sent).
    async fn marked(&self, orders: HashSet<String>) -> Option<HashSet<String>> {
        let marks = self.marks.as_ref()?;
        let reads = orders.iter().map(|order_id| async move {
            match tokio::time::timeout(MARKS_READ_TIMEOUT, marks.sent(order_id)).await {
                Ok(Ok(ids)) => Some(ids),
                Ok(Err(e)) => {
                    warn!(order_id = %order_id, error = %e, "fast-path marks unreadable");
                    None
                }
                Err(_) => {
                    warn!(order_id = %order_id, "fast-path marks not read in time");
                    None
                }
            }
        });
        let all: Option<Vec<Vec<String>>> = futures::future::join_all(reads).await.into_iter().collect();
        all.map(|ids| ids.into_iter().flatten().collect())
    }

    /// Publishes every new announcement of the batch; reports the first record that could not be
    /// published and every record after it (the stream then retries from there, in order; what was
    /// sent before is not lost and what is sent again is the same event).
    pub async fn relay(&self, event: StreamEvent) -> DynamoDbEventResponse {
        let mut response = DynamoDbEventResponse::default();
        let mut pending: Vec<(usize, OutboundEvent)> = Vec::new();
        let mut first_failure: Option<usize> = None;
        // Records that can never be published, with why: dead-lettered once the publish below has
        // settled how far the stream moves on (see after it).
        let mut never_publishable: Vec<(usize, String)> = Vec::new();
        for (i, record) in event.records.iter().enumerate() {
            let never = match announcement(record) {
                Ok(events) => match events.iter().find(|e| e.size() > MAX_REQUEST_BYTES) {
                    Some(e) => Some(format!(
                        "outbox event {} ({}) is {} bytes, over PutEvents' limit of {MAX_REQUEST_BYTES}",
                        e.event_id,
                        e.detail_type,
                        e.size()
                    )),
                    None => {
                        pending.extend(events.into_iter().map(|e| (i, e)));
                        None
                    }
                },
                Err(reason) => Some(reason),
            };
            if let Some(reason) = never {
                never_publishable.push((i, reason));
            }
        }
        if self.marks.is_some() && !pending.is_empty() {
            let before = pending.len();
            let mut pause = Duration::from_millis(25);
            loop {
                let orders = pending.iter().filter_map(|(i, _)| order_id_of(&event.records[*i])).collect();
                let Some(marked) = self.marked(orders).await else {
                    warn!(
                        pending = pending.len(),
                        "publishing without the writers' marks: some events may go out twice"
                    );
                    break;
                };
                pending.retain(|(_, e)| !marked.contains(&e.event_id));
                // The youngest write still unmarked: its writer may be about to mark it.
                // (A record that names no order has no marks to wait for.)
                let youngest = pending
                    .iter()
                    .filter(|(i, _)| order_id_of(&event.records[*i]).is_some())
                    .map(|(i, _)| event.records[*i].change.approximate_creation_date_time)
                    .max();
                let Some(until) = youngest.and_then(|t| t.checked_add_signed(TimeDelta::from_std(self.grace).ok()?))
                else {
                    break;
                };
                let left = (until - Utc::now()).to_std().unwrap_or_default();
                // Never into the time the publish needs.
                let reserve = PUBLISH_RESERVE + MARKS_READ_TIMEOUT;
                let left = deadline::remaining().map_or(left, |r| left.min(r.saturating_sub(reserve)));
                if left.is_zero() {
                    break;
                }
                tokio::time::sleep(pause.min(left)).await;
                pause = (pause * 2).min(Duration::from_millis(400));
            }
            if before > pending.len() {
                telemetry::count(metrics::RELAY_SKIPPED, (before - pending.len()) as u64);
                info!(skipped = before - pending.len(), "already published by their writer");
            }
        }
        let events: Vec<OutboundEvent> = pending.iter().map(|(_, e)| e.clone()).collect();
        let count = events.len();
        if count > 0 {
            match self.publisher.publish(events).await {
                Ok(()) => {
                    telemetry::count(metrics::RELAY_PUBLISHED, count as u64);
                    info!(published = count, "outbox relayed")
                }
                Err(e) => {
                    if let PublishError::NotPublished { failed, .. } = &e {
                        telemetry::count(metrics::RELAY_PUBLISHED, count.saturating_sub(failed.len()) as u64);
                    }
                    warn!(error = %e, "outbox not fully relayed: the stream retries from the first unsent record");
                    // The first record not known to be on the bus: NotPublished names what was not
                    // sent; TooLarge is refused before any call, so nothing is known sent.
                    let named = match &e {
                        PublishError::NotPublished { failed, .. } => pending
                            .iter()
                            .find(|(_, ev)| failed.iter().any(|f| f.event_id == ev.event_id))
                            .map(|(i, _)| *i),
                        PublishError::TooLarge { .. } => None,
                    };
                    first_failure = named.or_else(|| pending.first().map(|(i, _)| *i));
                }
            }
        }
        // Only the records the stream moves past (those before the first failure) are dead-lettered:
        // one the stream will deliver again is dead-lettered then, once, not on every retry of a
        // batch the bus refused. One that cannot be sent stops the batch at it.
        let moved_past = first_failure.unwrap_or(event.records.len());
        for (i, reason) in never_publishable.into_iter().filter(|(i, _)| *i < moved_past) {
            if !self.dead_letter(&event.records[i], reason).await {
                first_failure = Some(i);
                break;
            }
        }
        if let Some(from) = first_failure {
            for record in &event.records[from..] {
                // The sequence number is the stream's checkpoint; a record without one cannot be
                // named, so the event id (also unique per record) is reported, which fails the batch
                // as a whole.
                let id = record.change.sequence_number.clone().unwrap_or_else(|| record.event_id.clone());
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some(id);
                response.batch_item_failures.push(failure);
            }
        }
        response
    }
}
