//! The SQS plumbing both harnesses share ([`crate::Consumer`] and [`crate::BatchConsumer`]): reading
//! a record's body into a typed event, its receive count, the deadline of an invocation, starting a
//! record only with time left, holding a retried record back (its visibility timeout), sending a
//! permanent failure to the dead-letter queue, and the `SqsBatchResponse` that says which records
//! SQS must redeliver.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsMessage};
use orderflow_contracts::{ContractError, Inbound, Metadata, RawEnvelope, TraceContext};
use serde_json::value::RawValue;
use tracing::{error, info, warn};

#[cfg(feature = "aws")]
use crate::config::ConsumerConfig;
use crate::dead_letter::{DeadLetter, DeadLetterSink};
use crate::telemetry::Counts;
use crate::visibility::{longest_delay, VisibilityPort};

/// Time kept after the last record for what the batch still does: the visibility changes of "retry
/// after", the dead letters' sends, and the response.
pub const SETTLE_RESERVE: Duration = Duration::from_secs(1);

/// Why a whole batch failed (SQS then redelivers all of it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// A record that must be retried has no message id to report.
    #[error("{0} record(s) must be retried but have no message id; failing the whole batch so SQS redelivers it")]
    UnidentifiableFailures(usize),
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Processed,
    Duplicate,
    DeadLettered,
    /// Hand back to SQS; not before the delay, when there is one.
    Retry(Option<Duration>),
}

/// The result of one batch: the response for Lambda and the counts for metrics.
#[derive(Debug, Clone)]
pub struct BatchResult {
    /// What Lambda returns to SQS.
    pub response: SqsBatchResponse,
    /// What happened, for metrics and tests.
    pub counts: Counts,
}

#[cfg(feature = "aws")]
/// The consumer's own SQS queues as the harness's ports: its dead-letter queue, and its queue for
/// "retry after" (shared by [`Consumer`] and [`crate::BatchConsumer`]).
pub(crate) fn sqs_ports(
    config: &ConsumerConfig,
    sdk: &aws_config::SdkConfig,
) -> (Arc<dyn DeadLetterSink>, Arc<dyn VisibilityPort>) {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    (
        Arc::new(crate::dead_letter::SqsDeadLetterQueue::new(sqs.clone(), &config.dead_letter_queue_url)),
        Arc::new(crate::visibility::SqsVisibility::new(sqs, &config.queue_url)),
    )
}

/// `Some(hand back now)` when less than `budget` and the [`SETTLE_RESERVE`] is left before
/// `deadline`: the record is not started, and is made visible again at once so the next invocation
/// takes it.
pub(crate) fn too_late_to_start(
    name: &str,
    record: &SqsMessage,
    deadline: SystemTime,
    budget: Duration,
) -> Option<Outcome> {
    let left = deadline.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
    if left >= budget + SETTLE_RESERVE {
        return None;
    }
    warn!(consumer = %name, message_id = record.message_id.as_deref().unwrap_or_default(),
        left_ms = left.as_millis() as u64, budget_ms = budget.as_millis() as u64,
        "too little time left to start this record: handed back unstarted");
    Some(Outcome::Retry(Some(Duration::ZERO)))
}

/// The deadline of an invocation whose context says `deadline_ms` (epoch milliseconds; 0 when unknown).
pub(crate) fn invocation_deadline(deadline_ms: u64, fallback: Duration) -> SystemTime {
    match deadline_ms {
        0 => SystemTime::now() + fallback,
        ms => UNIX_EPOCH + Duration::from_millis(ms),
    }
}

/// The response for SQS and the counts, from each record's outcome.
pub(crate) fn respond(name: &str, records: &[SqsMessage], outcomes: &[Outcome]) -> Result<BatchResult, BatchError> {
    let mut response = SqsBatchResponse::default();
    let mut counts = Counts::default();
    let mut unidentifiable = 0;
    for (record, outcome) in records.iter().zip(outcomes) {
        match outcome {
            Outcome::Processed => counts.processed += 1,
            Outcome::Duplicate => counts.duplicates_skipped += 1,
            Outcome::DeadLettered => counts.dead_lettered += 1,
            Outcome::Retry(_) => {
                counts.retried += 1;
                match record.message_id.as_deref() {
                    Some(id) if !id.is_empty() => response.add_failure(id),
                    _ => unidentifiable += 1,
                }
            }
        }
    }
    info!(consumer = %name, records = records.len(), processed = counts.processed, retried = counts.retried,
        dead_lettered = counts.dead_lettered, duplicates = counts.duplicates_skipped, "batch done");
    if unidentifiable > 0 {
        error!(consumer = %name, unidentifiable, "records to retry have no message id");
        return Err(BatchError::UnidentifiableFailures(unidentifiable));
    }
    Ok(BatchResult { response, counts })
}

/// Applies each "retry after" as the record's visibility timeout, capped at what is left of SQS's
/// 12 hours since the batch was `received` ([`crate::visibility::longest_delay`]). A failure here
/// only means SQS redelivers sooner (after the queue's own visibility timeout).
pub(crate) async fn hold_back(
    visibility: Option<&Arc<dyn VisibilityPort>>,
    name: &str,
    records: &[SqsMessage],
    outcomes: &[Outcome],
    received: SystemTime,
) {
    let Some(visibility) = visibility else { return };
    let since_batch = SystemTime::now().duration_since(received).unwrap_or(Duration::ZERO);
    let cap = longest_delay(since_batch);
    let delays = records.iter().zip(outcomes).filter_map(|(record, outcome)| match outcome {
        Outcome::Retry(Some(after)) => Some((record, (*after).min(cap))),
        _ => None,
    });
    futures::future::join_all(delays.map(|(record, after)| async move {
        let Some(handle) = record.receipt_handle.as_deref() else { return };
        if let Err(e) = visibility.delay(handle, after).await {
            warn!(consumer = %name, message_id = record.message_id.as_deref().unwrap_or_default(), error = %e,
                "could not hold the record back; SQS redelivers it after the queue's visibility timeout");
        }
    }))
    .await;
}

/// Sends a record that can never be handled to the dead-letter queue, with the reason; if the queue
/// refuses it, SQS redelivers the record instead (nothing is acknowledged unhandled).
pub(crate) async fn dead_letter(
    sink: &dyn DeadLetterSink,
    name: &str,
    record: &SqsMessage,
    receive_count: u32,
    reason: String,
) -> Outcome {
    // Nothing personal in the reason: it is logged and travels with the letter (crate::redact).
    let reason = crate::redact::redact(&reason);
    let letter = DeadLetter {
        consumer: name.to_string(),
        message_id: record.message_id.clone().unwrap_or_default(),
        body: record.body.clone().unwrap_or_default(),
        reason: reason.clone(),
        receive_count,
        message_group_id: record.attributes.get("MessageGroupId").cloned(),
        attributes: record.message_attributes.clone(),
    };
    match sink.send(letter).await {
        Ok(()) => {
            error!(%reason, "permanent failure: sent to the dead-letter queue");
            Outcome::DeadLettered
        }
        Err(e) => {
            error!(%reason, dlq_error = %e, "permanent failure, and the dead-letter queue refused it: SQS will redeliver");
            Outcome::Retry(Some(crate::error::growing_delay(receive_count)))
        }
    }
}

/// How many times SQS has delivered `record` (1 on the first delivery).
pub(crate) fn receive_count(record: &SqsMessage) -> u32 {
    record.attributes.get("ApproximateReceiveCount").and_then(|v| v.parse().ok()).unwrap_or(1)
}

/// Reads one SQS body as an EventBridge event carrying an Orderflow envelope of an event `E` accepts.
pub fn decode<E: Inbound>(body: Option<&str>) -> Result<(E, Metadata), ContractError> {
    decode_delivered(body).map(|d| (d.event, d.metadata))
}

/// An event as the harness decoded it from an SQS body.
#[derive(Debug, Clone)]
pub struct Decoded<E> {
    /// The event, upcast to the version `E` reads.
    pub event: E,
    /// The envelope's metadata.
    pub metadata: Metadata,
    /// The EventBridge replay that re-delivered it, if any.
    pub replay_name: Option<String>,
}

/// What the harness reads of the EventBridge event EventBridge puts on the queue.
#[derive(serde::Deserialize)]
struct Delivered<'a> {
    #[serde(rename = "detail-type")]
    detail_type: String,
    #[serde(borrow)]
    detail: &'a RawValue,
    #[serde(rename = "replay-name", default)]
    replay_name: Option<String>,
}

/// [`decode`], with the replay that re-delivered the event, if any.
///
/// One pass over the body when it is what producers write (the current schema version, in the order
/// EventBridge and the envelope serialise: `detail-type` before `detail`, `metadata` before `data`),
/// straight into the typed event ([`one_pass`]); anything else (an older version to upcast, another
/// order, any error) is read again step by step, which also says precisely what is wrong.
pub fn decode_delivered<E: Inbound>(body: Option<&str>) -> Result<Decoded<E>, ContractError> {
    let body = body.ok_or_else(|| ContractError::NotAnEnvelope("empty body".into()))?;
    if let Some(decoded) = one_pass::decode::<E>(body) {
        return Ok(decoded);
    }
    let event: Delivered<'_> =
        serde_json::from_str(body).map_err(|e| ContractError::NotAnEnvelope(format!("body: {e}")))?;
    if !E::DETAIL_TYPES.contains(&event.detail_type.as_str()) {
        return Err(ContractError::UnknownDetailType(event.detail_type));
    }
    let envelope: RawEnvelope =
        serde_json::from_str(event.detail.get()).map_err(|e| ContractError::NotAnEnvelope(format!("detail: {e}")))?;
    let decoded = E::decode(&event.detail_type, envelope.metadata.schema_version, &envelope.data)?;
    Ok(Decoded { event: decoded, metadata: envelope.metadata, replay_name: event.replay_name })
}

/// Makes the consumer `name`'s handling of this event a span of the event's trace: returns the
/// context the event arrived with (its publisher's span, the parent) and the handling span's, and
/// sets the handling span's into `metadata`, so what the handler publishes
/// (`Envelope::caused_by(&ctx.metadata, ..)`) names it as parent.
pub(crate) fn enter_trace(metadata: &mut Metadata, name: &str) -> (TraceContext, TraceContext) {
    let parent = metadata.trace();
    let handling = parent.child(&metadata.event_id, name);
    metadata.traceparent = Some(handling.to_string());
    (parent, handling)
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    // A panic message may quote the data it choked on.
    crate::redact::redact(&message)
}

/// The harness's common path: an SQS body read once, straight into the typed event. `None` whenever
/// the body is not the common case, and [`decode_delivered`] then reads it step by step.
mod one_pass {
    use std::fmt;
    use std::marker::PhantomData;

    use orderflow_contracts::{Inbound, Metadata};
    use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

    use super::Decoded;

    pub(super) fn decode<E: Inbound>(body: &str) -> Option<Decoded<E>> {
        let mut de = serde_json::Deserializer::from_str(body);
        let decoded = de::Deserializer::deserialize_map(&mut de, Delivered::<E>(PhantomData)).ok()?;
        de.end().ok()?;
        decoded
    }

    /// The keys the one pass looks at; any other is skipped. Read without allocating.
    enum Key {
        DetailType,
        ReplayName,
        Detail,
        Metadata,
        Data,
        Other,
    }

    impl<'de> de::Deserialize<'de> for Key {
        fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Names;
            impl Visitor<'_> for Names {
                type Value = Key;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a key")
                }
                fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                    Ok(match key {
                        "detail-type" => Key::DetailType,
                        "replay-name" => Key::ReplayName,
                        "detail" => Key::Detail,
                        "metadata" => Key::Metadata,
                        "data" => Key::Data,
                        _ => Key::Other,
                    })
                }
            }
            d.deserialize_identifier(Names)
        }
    }

    fn key<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Key>, A::Error> {
        map.next_key::<Key>()
    }

    /// The EventBridge event: `Some` only if its detail was read in one pass.
    struct Delivered<E>(PhantomData<E>);

    impl<'de, E: Inbound> Visitor<'de> for Delivered<E> {
        type Value = Option<Decoded<E>>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an EventBridge event")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let (mut detail_type, mut replay_name, mut detail) = (None::<String>, None::<Option<String>>, None);
            while let Some(key) = key(&mut map)? {
                match key {
                    Key::DetailType if detail_type.is_none() => detail_type = Some(map.next_value()?),
                    Key::ReplayName if replay_name.is_none() => replay_name = Some(map.next_value()?),
                    Key::Detail if detail.is_none() => {
                        let version = detail_type.as_deref().and_then(E::current_version);
                        let (Some(detail_type), Some(version)) = (detail_type.as_deref(), version) else {
                            return Ok(None);
                        };
                        match map.next_value_seed(Envelope::<E> { detail_type, version, _e: PhantomData })? {
                            Some(read) => detail = Some(read),
                            None => return Ok(None),
                        }
                    }
                    // A key twice: the step-by-step read refuses it.
                    Key::DetailType | Key::ReplayName | Key::Detail => return Ok(None),
                    Key::Metadata | Key::Data | Key::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(detail.map(|(event, metadata)| Decoded { event, metadata, replay_name: replay_name.flatten() }))
        }
    }

    /// The envelope in `detail`, for a detail type read at `version`.
    struct Envelope<'a, E> {
        detail_type: &'a str,
        version: u32,
        _e: PhantomData<E>,
    }

    impl<'de, E: Inbound> DeserializeSeed<'de> for Envelope<'_, E> {
        type Value = Option<(E, Metadata)>;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }

    impl<'de, E: Inbound> Visitor<'de> for Envelope<'_, E> {
        type Value = Option<(E, Metadata)>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an Orderflow envelope")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let (mut metadata, mut event) = (None::<Metadata>, None::<E>);
            while let Some(key) = key(&mut map)? {
                match key {
                    Key::Metadata if metadata.is_none() => metadata = Some(map.next_value()?),
                    Key::Data if event.is_none() => match &metadata {
                        Some(m) if m.schema_version == self.version => {
                            event =
                                Some(map.next_value_seed(Data::<E> { detail_type: self.detail_type, _e: PhantomData })?)
                        }
                        // An older version (to upcast), or data before its metadata.
                        _ => return Ok(None),
                    },
                    Key::Metadata | Key::Data => return Ok(None),
                    Key::DetailType | Key::ReplayName | Key::Detail | Key::Other => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(event.zip(metadata))
        }
    }

    /// The event's data, at the current version of its detail type.
    struct Data<'a, E> {
        detail_type: &'a str,
        _e: PhantomData<E>,
    }

    impl<'de, E: Inbound> DeserializeSeed<'de> for Data<'_, E> {
        type Value = E;
        fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<E, D::Error> {
            E::deserialize_current(self.detail_type, d)
        }
    }
}

#[cfg(test)]
mod tests {
    use orderflow_contracts::{AnyEvent, ContractError, OrderPlaced};
    use serde_json::{json, Value};

    use super::*;

    /// A sample's body as SQS hands it over: EventBridge's order of keys, the envelope's.
    fn raw_body(sample: &str) -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events-samples/");
        let sqs: Value = serde_json::from_str(&std::fs::read_to_string(format!("{path}{sample}")).unwrap()).unwrap();
        sqs["Records"][0]["body"].as_str().unwrap().to_string()
    }

    /// The same as JSON (whose keys serialise sorted: `detail` before `detail-type`).
    fn body(sample: &str) -> Value {
        serde_json::from_str(&raw_body(sample)).unwrap()
    }

    /// What the step-by-step path makes of a body (the one-pass path left out).
    fn step_by_step<E: Inbound>(body: &str) -> Result<Decoded<E>, ContractError> {
        let event: Delivered<'_> = serde_json::from_str(body).unwrap();
        let envelope: RawEnvelope = serde_json::from_str(event.detail.get()).unwrap();
        let decoded = E::decode(&event.detail_type, envelope.metadata.schema_version, &envelope.data)?;
        Ok(Decoded { event: decoded, metadata: envelope.metadata, replay_name: event.replay_name })
    }

    #[test]
    fn the_one_pass_path_reads_what_producers_write_as_the_step_by_step_path_does() {
        let text = raw_body("billing/order-placed.sqs.json");
        assert!(text.find("\"detail-type\"") < text.find("\"detail\""), "the sample is in EventBridge's order");
        let text = format!("{},\"replay-name\":\"reporting.20261203\"}}", text.trim_end().strip_suffix('}').unwrap());
        let once = one_pass::decode::<OrderPlaced>(&text).expect("the common case is read in one pass");
        let steps = step_by_step::<OrderPlaced>(&text).unwrap();
        assert_eq!(
            (&once.event, &once.metadata, &once.replay_name),
            (&steps.event, &steps.metadata, &steps.replay_name)
        );
        assert_eq!(once.replay_name.as_deref(), Some("reporting.20261203"));
        // An enum of several accepts it the same way.
        let any = one_pass::decode::<AnyEvent>(&text).unwrap();
        assert_eq!(any.event, AnyEvent::OrderPlaced(steps.event));
    }

    #[test]
    fn anything_else_is_read_step_by_step_with_the_same_result_or_error() {
        let placed = body("billing/order-placed.sqs.json");
        // detail before detail-type, data before metadata: another producer's order of keys.
        let mut reordered = serde_json::Map::new();
        reordered.insert(
            "detail".into(),
            json!({"data": placed["detail"]["data"], "metadata": placed["detail"]["metadata"]}),
        );
        for (k, v) in placed.as_object().unwrap() {
            reordered.entry(k.clone()).or_insert(v.clone());
        }
        let reordered = Value::Object(reordered).to_string();
        assert!(one_pass::decode::<OrderPlaced>(&reordered).is_none());
        assert_eq!(
            decode_delivered::<OrderPlaced>(Some(&reordered)).unwrap().event,
            step_by_step::<OrderPlaced>(&reordered).unwrap().event
        );

        // An older version: upcast.
        let v1 = body("billing/order-placed-v1.sqs.json").to_string();
        assert!(one_pass::decode::<OrderPlaced>(&v1).is_none());
        assert!(decode_delivered::<OrderPlaced>(Some(&v1)).is_ok());

        // Invalid data: the step-by-step path names the field.
        let raw = raw_body("billing/order-placed.sqs.json");
        let invalid = raw.replacen("\"quantity\": 2", "\"quantity\": 0", 1);
        assert_ne!(invalid, raw, "the sample's first line has a quantity of 2");
        assert!(one_pass::decode::<OrderPlaced>(&invalid).is_none());
        let err = decode_delivered::<OrderPlaced>(Some(&invalid)).unwrap_err().to_string();
        assert!(err.contains("quantity"), "{err}");

        // Another detail type, a duplicated key, trailing garbage: never taken by the one pass.
        let other = raw.replacen("\"detail-type\": \"OrderPlaced\"", "\"detail-type\": \"OrderBilled\"", 1);
        assert_ne!(other, raw);
        assert!(one_pass::decode::<OrderPlaced>(&other).is_none());
        assert!(matches!(decode_delivered::<OrderPlaced>(Some(&other)), Err(ContractError::UnknownDetailType(_))));
        let text = raw_body("billing/order-placed.sqs.json");
        assert!(one_pass::decode::<OrderPlaced>(&text).is_some());
        let duplicated = text.replacen("{", "{\"detail-type\":\"OrderPlaced\",", 1);
        assert!(one_pass::decode::<OrderPlaced>(&duplicated).is_none());
        assert!(one_pass::decode::<OrderPlaced>(&format!("{text} x")).is_none());
        // A replay-name twice (the first null): refused by the step-by-step read, so not taken.
        let twice =
            format!("{},\"replay-name\":null,\"replay-name\":\"x\"}}", text.trim_end().strip_suffix('}').unwrap());
        assert!(one_pass::decode::<OrderPlaced>(&twice).is_none());
        assert!(decode_delivered::<OrderPlaced>(Some(&twice)).is_err());
        // An escaped key is the same key on both paths.
        let escaped = text.replacen("\"detail-type\"", "\"detail\\u002dtype\"", 1);
        assert_ne!(escaped, text);
        assert_eq!(
            one_pass::decode::<OrderPlaced>(&escaped).unwrap().event,
            step_by_step::<OrderPlaced>(&text).unwrap().event
        );
        assert!(decode_delivered::<OrderPlaced>(Some(&format!("{text} x"))).is_err());
    }
}
