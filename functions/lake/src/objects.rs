//! From a batch of events to the lake's objects: partition, line format, object name. Plain
//! functions, so the layout that query engines rely on is tested without S3.

use std::collections::BTreeMap;
use std::io::Write;

use chrono::SecondsFormat;
use flate2::write::GzEncoder;
use flate2::Compression;
use orderflow_contracts::{AnyEvent, Inbound, Metadata};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Where the events live in the bucket; the Athena table's `LOCATION` is `s3://<bucket>/events/`.
pub const PREFIX: &str = "events/";

/// One line of the lake: what every event has, as columns, and its data as a JSON string (so one
/// table holds every event type; query it with `json_extract_scalar`), contact details removed
/// ([`without_contact_details`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Line {
    /// The event id (unique per event).
    pub event_id: String,
    /// The order the event is about (none for a stock receipt: JSON null).
    pub order_id: Option<String>,
    /// The flow it belongs to.
    pub correlation_id: String,
    /// The event that caused it, if any.
    pub causation_id: Option<String>,
    /// When it happened (RFC 3339, UTC, milliseconds).
    pub occurred_at: String,
    /// The schema version of `data`.
    pub schema_version: u32,
    /// The EventBridge source.
    pub source: String,
    /// The function that produced it.
    pub producer: String,
    /// The event's data, as JSON text.
    pub data: String,
}

/// The partition an event goes to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Partition {
    /// The event type (`detail-type`).
    pub event_type: &'static str,
    /// The UTC day it occurred, `YYYY-MM-DD`.
    pub dt: String,
}

/// One object to write: its key, its gzip-compressed content and which records it holds.
#[derive(Debug, Clone)]
pub struct Object {
    /// `events/event_type=…/dt=…/<hash>.json.gz`.
    pub key: String,
    /// Gzip of the JSON lines, sorted by event id.
    pub body: Vec<u8>,
    /// Positions, in the batch, of the records it holds.
    pub records: Vec<usize>,
}

/// The lake's customer keys: a keyed hash (HMAC-SHA256) of the customer id under a secret the lake
/// alone reads (Secrets Manager). The same customer always gets the same key, so analytics can
/// count returning customers; without the secret, nobody can tell which key is whose, nor test a
/// candidate (an email, an id) against the lake.
///
/// The key is part of every line's bytes: a new secret gives every customer a new key from then on
/// (older lines keep the old one, and replayed events are written with the new one). Change it
/// only to cut that link on purpose.
pub struct CustomerKeys {
    key: ring::hmac::Key,
}

impl CustomerKeys {
    /// Keys under `secret` (at least 32 bytes, as the template generates it).
    pub fn new(secret: &str) -> Result<Self, String> {
        if secret.len() < 32 {
            return Err(format!("the lake's customer-key secret must be at least 32 bytes, not {}", secret.len()));
        }
        Ok(Self { key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes()) })
    }

    /// The key of `customer_id`: `ck_` and 32 hex digits (128 bits of the HMAC).
    pub fn of(&self, customer_id: &str) -> String {
        let tag = ring::hmac::sign(&self.key, customer_id.as_bytes());
        let hex: String = tag.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("ck_{hex}")
    }
}

/// The lake line for an event.
pub fn line(event: &AnyEvent, metadata: &Metadata, keys: &CustomerKeys) -> Line {
    Line {
        event_id: metadata.event_id.to_string(),
        order_id: event.order_id().map(str::to_string),
        correlation_id: metadata.correlation_id.clone(),
        causation_id: metadata.causation_id.clone(),
        occurred_at: metadata.occurred_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        schema_version: event.schema_version(),
        source: event.source().to_string(),
        producer: metadata.producer.clone(),
        data: without_contact_details(event.data(), keys).to_string(),
    }
}

/// The event data the lake keeps: everything but the customer's contact details (name, email,
/// phone, street and postal code), which analytics has no need for and a lake should not hold
/// (it keeps events for years and many read it), and with the customer id replaced by its
/// [`CustomerKeys`] key. City and country stay.
pub fn without_contact_details(mut data: Value, keys: &CustomerKeys) -> Value {
    fn strip(value: &mut Value, fields: &[&str]) {
        if let Some(object) = value.as_object_mut() {
            for field in fields {
                object.remove(*field);
            }
        }
    }
    fn walk(value: &mut Value, keys: &CustomerKeys) {
        match value {
            Value::Object(object) => {
                object.remove("customerName");
                for (key, child) in object.iter_mut() {
                    match key.as_str() {
                        "customer" => {
                            strip(child, &["name", "email", "phone"]);
                            if let Some(id) = child.get_mut("customerId") {
                                *id = Value::String(keys.of(id.as_str().unwrap_or_default()));
                            }
                        }
                        "shippingAddress" => strip(child, &["line1", "line2", "postalCode"]),
                        _ => walk(child, keys),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| walk(item, keys)),
            _ => {}
        }
    }
    walk(&mut data, keys);
    data
}

/// The partition of an event.
pub fn partition(event: &AnyEvent, metadata: &Metadata) -> Partition {
    Partition { event_type: event.name(), dt: metadata.occurred_at.format("%Y-%m-%d").to_string() }
}

/// The objects for a batch: one per partition, each named from the event ids it holds (sorted, so
/// the same events always give the same name and the same bytes). An event that appears twice in
/// the batch is written once.
pub fn objects<'a>(events: impl IntoIterator<Item = (&'a AnyEvent, &'a Metadata)>, keys: &CustomerKeys) -> Vec<Object> {
    let mut groups: BTreeMap<Partition, BTreeMap<String, (Line, Vec<usize>)>> = BTreeMap::new();
    for (i, (event, metadata)) in events.into_iter().enumerate() {
        let line = line(event, metadata, keys);
        let entry = groups.entry(partition(event, metadata)).or_default();
        entry.entry(line.event_id.clone()).or_insert_with(|| (line, Vec::new())).1.push(i);
    }
    groups
        .into_iter()
        .map(|(partition, lines)| {
            let mut hash = Sha256::new();
            let mut gzip = GzEncoder::new(Vec::new(), Compression::default());
            let mut records = Vec::new();
            for (event_id, (line, positions)) in lines {
                hash.update(event_id.as_bytes());
                hash.update(b"\n");
                serde_json::to_writer(&mut gzip, &line).expect("lines serialise");
                gzip.write_all(b"\n").expect("writing to memory");
                records.extend(positions);
            }
            let name: String = hash.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect();
            Object {
                key: format!("{PREFIX}event_type={}/dt={}/{name}.json.gz", partition.event_type, partition.dt),
                body: gzip.finish().expect("writing to memory"),
                records,
            }
        })
        .collect()
}

/// Reads an object's lines back (for tests and tools).
pub fn read_lines(body: &[u8]) -> std::io::Result<Vec<Line>> {
    use std::io::BufRead;
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(body));
    reader.lines().map(|l| l.and_then(|l| serde_json::from_str(&l).map_err(std::io::Error::other))).collect()
}
