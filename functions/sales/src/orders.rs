//! The order store: the port, its DynamoDB adapter and the in-memory fake, plus the one domain rule
//! about status changes ([`transition`]).
//!
//! Table `orders`, partition key `orderId`. Item: `status` and `version` at the top level (conditions
//! and queries use them), `document` (the [`OrderState`] as JSON), `requestHash` and `correlationId`
//! (for idempotent POST replays), and `outbox`: the event announcing the write, stored by the very
//! same write. The table's stream feeds the outbox relay ([`crate::outbox`]), which publishes each new
//! `outbox` event; so an order is never stored without being announced, nor announced without being
//! stored. What the writer published itself right after its write ([`crate::announce`], the fast
//! path) is marked in a table of its own, which the relay reads to leave it out.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
#[cfg(feature = "aws")]
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use orderflow_contracts::{
    CancelledBy, Envelope, Metadata, OrderCancelled, OrderState, OrderStatus, OrderStatusChanged, StatusEntry,
};
#[cfg(feature = "aws")]
use orderflow_harness::dynamo::{get_n, get_s, is_conditional_check_failed, n, s, store_error};
use orderflow_harness::{OutboundEvent, StoreError};

const STORE: &str = "order store";

/// An order as Sales stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrder {
    /// The order's state, what events carry.
    pub state: OrderState,
    /// Hash of the POST body that created it (an `Idempotency-Key` replay must match it).
    pub request_hash: String,
    /// Correlation id of the request that created it.
    pub correlation_id: String,
}

/// The result of a create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Stored now (and so announced).
    New,
    /// An order with this id already exists (an idempotent replay): here it is.
    Existing(Box<StoredOrder>),
}

/// The result of a versioned write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// Written.
    Saved,
    /// Someone changed the order since it was read: read again and decide again.
    VersionConflict,
}

/// Where Sales keeps its orders. Every write carries the event that announces it.
#[async_trait]
pub trait OrderStore: Send + Sync {
    /// Stores a new order, with `announcement` in its outbox, unless one with its id exists.
    async fn create(&self, order: &StoredOrder, announcement: &OutboundEvent) -> Result<Created, StoreError>;
    /// Reads an order (strongly consistent).
    async fn get(&self, order_id: &str) -> Result<Option<StoredOrder>, StoreError>;
    /// Writes the fields a status change touches (`status`, `version`, `document`, `outbox`) if the
    /// stored version is still `expected_version`; nothing else of the item is rewritten. The
    /// outbox holds `announcements` (at least one: the `OrderStatusChanged`).
    async fn change_status(
        &self,
        state: &OrderState,
        expected_version: u64,
        announcements: &[OutboundEvent],
    ) -> Result<Saved, StoreError>;
}

/// Why a status change is refused: permanent, the event contradicts the order's history.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("order {order_id} cannot move from {from:?} to {to:?}")]
pub struct IllegalTransition {
    /// The order.
    pub order_id: String,
    /// Its status.
    pub from: OrderStatus,
    /// The status asked for.
    pub to: OrderStatus,
}

/// The order after moving to `next`: status, history entry, tracking number, version + 1.
pub fn transition(
    state: &OrderState,
    next: OrderStatus,
    at: DateTime<Utc>,
    reason: Option<String>,
    tracking_number: Option<String>,
) -> Result<OrderState, IllegalTransition> {
    let version = state.version.checked_add(1).filter(|v| *v <= orderflow_contracts::MAX_ORDER_VERSION);
    let (true, Some(version)) = (state.status.can_move_to(next), version) else {
        return Err(IllegalTransition { order_id: state.order_id.clone(), from: state.status, to: next });
    };
    let mut new = state.clone();
    new.status = next;
    new.version = version;
    new.history.push(StatusEntry { status: next, at, reason });
    if tracking_number.is_some() {
        new.tracking_number = tracking_number;
    }
    Ok(new)
}

/// How many times a version conflict is re-decided before giving up for now.
pub const MAX_CONFLICTS: usize = 5;

/// What a cancellation came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancellation {
    /// Accepted now: the order is `Cancelling`, `OrderCancelled` is in its outbox.
    Accepted(OrderState),
    /// Cancelled before (`Cancelling` or `Cancelled`): nothing more to do.
    AlreadyCancelled(OrderState),
    /// Too late (or never possible): the order's status.
    Refused(OrderState),
    /// No such order.
    Unknown,
}

/// Cancels `order_id` if it may still be cancelled: `Cancelling`, with `OrderStatusChanged` and
/// `OrderCancelled` in the same write's outbox. `cause` is the event that decided it (the deadline),
/// or `None` for a customer's request: the events then carry the order's own correlation id (the
/// request that placed it; `correlation_id` if it has none), so one order is one flow in the logs.
/// A version conflict is decided again on the fresh copy.
pub async fn cancel(
    orders: &dyn OrderStore,
    order_id: &str,
    by: CancelledBy,
    cause: Option<&Metadata>,
    correlation_id: &str,
) -> Result<Cancellation, StoreError> {
    for _ in 0..MAX_CONFLICTS {
        let Some(order) = orders.get(order_id).await? else { return Ok(Cancellation::Unknown) };
        let status = order.state.status;
        if matches!(status, OrderStatus::Cancelling | OrderStatus::Cancelled) {
            return Ok(Cancellation::AlreadyCancelled(order.state));
        }
        let now = Utc::now();
        let reason = Some(by.reason().to_string());
        let Ok(state) = transition(&order.state, OrderStatus::Cancelling, now, reason, None) else {
            return Ok(Cancellation::Refused(order.state));
        };
        let changed = OrderStatusChanged { previous_status: status, order: state.clone() };
        let cancelled = OrderCancelled {
            order_id: order_id.to_string(),
            cancelled_by: by,
            currency: state.currency,
            total_minor: state.totals.total_minor,
            cancelled_at: now,
        };
        let announcements = match cause {
            Some(cause) => vec![
                OutboundEvent::from_envelope(&Envelope::caused_by(cause, changed)),
                OutboundEvent::from_envelope(&Envelope::caused_by(cause, cancelled)),
            ],
            None => {
                let flow = Some(order.correlation_id.clone()).filter(|c| !c.is_empty());
                let changed = Envelope::new(changed, flow.or_else(|| Some(correlation_id.to_string())));
                let cancelled = Envelope::caused_by(&changed.metadata, cancelled);
                vec![OutboundEvent::from_envelope(&changed), OutboundEvent::from_envelope(&cancelled)]
            }
        };
        match orders.change_status(&state, order.state.version, &announcements).await? {
            Saved::Saved => return Ok(Cancellation::Accepted(state)),
            Saved::VersionConflict => continue,
        }
    }
    Err(StoreError::retryable(STORE, format!("order {order_id} kept changing under {MAX_CONFLICTS} attempts")))
}

#[cfg(feature = "aws")]
fn document(state: &OrderState) -> AttributeValue {
    s(serde_json::to_string(state).expect("order state serialises"))
}

#[cfg(feature = "aws")]
fn outbox(event: &OutboundEvent) -> AttributeValue {
    s(serde_json::to_string(event).expect("outbound events serialise"))
}

/// Several events of one write: a JSON array (the relay reads one object or an array).
#[cfg(feature = "aws")]
fn outbox_of_all(events: &[OutboundEvent]) -> AttributeValue {
    match events {
        [one] => outbox(one),
        many => s(serde_json::to_string(many).expect("outbound events serialise")),
    }
}

/// The DynamoDB adapter.
#[derive(Debug, Clone)]
#[cfg(feature = "aws")]
pub struct DynamoDbOrderStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

#[cfg(feature = "aws")]
impl DynamoDbOrderStore {
    /// Uses `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn parse(item: &HashMap<String, AttributeValue>) -> Result<StoredOrder, StoreError> {
        let document =
            get_s(item, "document").ok_or_else(|| StoreError::permanent(STORE, "order item without document"))?;
        let mut state: OrderState = serde_json::from_str(document)
            .map_err(|e| StoreError::permanent(STORE, format!("order document unreadable: {e}")))?;
        // The top-level attributes are the truth for the fields conditions are written against.
        if let Some(v) = get_n(item, "version") {
            state.version = v;
        }
        Ok(StoredOrder {
            state,
            request_hash: get_s(item, "requestHash").unwrap_or_default().to_string(),
            correlation_id: get_s(item, "correlationId").unwrap_or_default().to_string(),
        })
    }
}

#[cfg(feature = "aws")]
#[async_trait]
impl OrderStore for DynamoDbOrderStore {
    async fn create(&self, order: &StoredOrder, announcement: &OutboundEvent) -> Result<Created, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("orderId", s(&order.state.order_id))
            .item("status", s(order.state.status.as_str()))
            .item("version", n(order.state.version))
            .item("document", document(&order.state))
            .item("requestHash", s(&order.request_hash))
            .item("correlationId", s(&order.correlation_id))
            .item("outbox", outbox(announcement))
            .condition_expression("attribute_not_exists(orderId)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(Created::New),
            Err(e) if is_conditional_check_failed(&e) => match self.get(&order.state.order_id).await? {
                Some(existing) => Ok(Created::Existing(Box::new(existing))),
                None => Err(StoreError::retryable(STORE, "order vanished between create and read")),
            },
            Err(e) => Err(store_error(STORE, e)),
        }
    }

    async fn get(&self, order_id: &str) -> Result<Option<StoredOrder>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("orderId", s(order_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(STORE, e))?;
        out.item().map(Self::parse).transpose()
    }

    async fn change_status(
        &self,
        state: &OrderState,
        expected_version: u64,
        announcements: &[OutboundEvent],
    ) -> Result<Saved, StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("orderId", s(&state.order_id))
            .update_expression("SET #status = :status, version = :version, document = :document, outbox = :outbox")
            .condition_expression("version = :expected")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", s(state.status.as_str()))
            .expression_attribute_values(":version", n(state.version))
            .expression_attribute_values(":document", document(state))
            .expression_attribute_values(":outbox", outbox_of_all(announcements))
            .expression_attribute_values(":expected", n(expected_version))
            .send()
            .await;
        match update {
            Ok(_) => Ok(Saved::Saved),
            Err(e) if is_conditional_check_failed(&e) => Ok(Saved::VersionConflict),
            Err(e) => Err(store_error(STORE, e)),
        }
    }
}

/// The in-memory fake, with the adapter's semantics. It keeps, in order, every announcement a write
/// stored, as the table's stream would deliver them to the relay.
#[derive(Debug, Default)]
pub struct InMemoryOrderStore {
    orders: Mutex<HashMap<String, StoredOrder>>,
    stream: Mutex<Vec<OutboundEvent>>,
    /// Every write, as the table's stream records it: the order, the outbox before and after.
    records: Mutex<Vec<StreamRecord>>,
}

/// One write as the fake's stream keeps it.
#[derive(Debug, Clone)]
struct StreamRecord {
    order_id: String,
    old: Option<Vec<OutboundEvent>>,
    new: Vec<OutboundEvent>,
    /// When the write happened (the stream's ApproximateCreationDateTime).
    at: DateTime<Utc>,
}

impl InMemoryOrderStore {
    /// Puts an order in place, as a test's GIVEN.
    pub fn insert(&self, order: StoredOrder) {
        self.orders.lock().expect("lock").insert(order.state.order_id.clone(), order);
    }
    /// Every stored order.
    pub fn all(&self) -> Vec<StoredOrder> {
        self.orders.lock().expect("lock").values().cloned().collect()
    }
    /// Every announcement stored with a write, oldest first.
    pub fn announcements(&self) -> Vec<OutboundEvent> {
        self.stream.lock().expect("lock").clone()
    }

    /// Every write since the last call as the table's stream hands it to the relay (INSERT or
    /// MODIFY, the old and new images' `outbox`, sequence numbers in order), then forgotten, as a
    /// stream checkpoint would.
    pub fn take_stream(&self) -> aws_lambda_events::event::dynamodb::Event {
        let records = std::mem::take(&mut *self.records.lock().expect("lock"));
        let image = |order_id: &str, outbox: &[OutboundEvent]| {
            let text = match outbox {
                [one] => serde_json::to_string(one),
                many => serde_json::to_string(many),
            };
            serde_json::json!({"orderId": {"S": order_id}, "outbox": {"S": text.expect("outbound events serialise")}})
        };
        let records: Vec<serde_json::Value> = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut change = serde_json::json!({
                    "Keys": {"orderId": {"S": r.order_id}},
                    "NewImage": image(&r.order_id, &r.new),
                    "SequenceNumber": format!("{:020}", i + 1),
                    "SizeBytes": 900,
                    // Whole seconds, rounded down, as DynamoDB Streams stamps its records.
                    "ApproximateCreationDateTime": r.at.timestamp() as f64,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                });
                if let Some(old) = &r.old {
                    change["OldImage"] = image(&r.order_id, old);
                }
                serde_json::json!({
                    "eventID": format!("fake-{}", i + 1),
                    "eventName": if r.old.is_some() { "MODIFY" } else { "INSERT" },
                    "eventVersion": "1.1",
                    "eventSource": "aws:dynamodb",
                    "awsRegion": "us-east-1",
                    "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/fake",
                    "dynamodb": change,
                })
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "Records": records })).expect("a DynamoDB stream event")
    }

    fn outbox_now(&self, order_id: &str) -> Option<Vec<OutboundEvent>> {
        let records = self.records.lock().expect("lock");
        records.iter().rev().find(|r| r.order_id == order_id).map(|r| r.new.clone())
    }
}

#[async_trait]
impl OrderStore for InMemoryOrderStore {
    async fn create(&self, order: &StoredOrder, announcement: &OutboundEvent) -> Result<Created, StoreError> {
        let mut orders = self.orders.lock().expect("lock");
        if let Some(existing) = orders.get(&order.state.order_id) {
            return Ok(Created::Existing(Box::new(existing.clone())));
        }
        orders.insert(order.state.order_id.clone(), order.clone());
        self.stream.lock().expect("lock").push(announcement.clone());
        let id = order.state.order_id.clone();
        self.records.lock().expect("lock").push(StreamRecord {
            order_id: id,
            old: None,
            new: vec![announcement.clone()],
            at: Utc::now(),
        });
        Ok(Created::New)
    }

    async fn get(&self, order_id: &str) -> Result<Option<StoredOrder>, StoreError> {
        Ok(self.orders.lock().expect("lock").get(order_id).cloned())
    }

    async fn change_status(
        &self,
        state: &OrderState,
        expected_version: u64,
        announcements: &[OutboundEvent],
    ) -> Result<Saved, StoreError> {
        let mut orders = self.orders.lock().expect("lock");
        match orders.get_mut(&state.order_id) {
            Some(current) if current.state.version == expected_version => {
                current.state = state.clone();
                self.stream.lock().expect("lock").extend(announcements.iter().cloned());
                let old = self.outbox_now(&state.order_id).or_else(|| Some(vec![]));
                let record =
                    StreamRecord { order_id: state.order_id.clone(), old, new: announcements.to_vec(), at: Utc::now() };
                self.records.lock().expect("lock").push(record);
                Ok(Saved::Saved)
            }
            _ => Ok(Saved::VersionConflict),
        }
    }
}
