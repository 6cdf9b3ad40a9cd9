//! The order store: the port, its DynamoDB adapter and the in-memory fake, plus the one domain rule
//! about status changes ([`transition`]).
//!
//! Table `orders`, partition key `orderId`. Item: `status` and `version` at the top level (conditions
//! and queries use them), `document` (the [`OrderState`] as JSON), `requestHash` and `correlationId`
//! (for idempotent POST replays), `published` (whether `OrderPlaced` went out).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use orderflow_contracts::{OrderState, OrderStatus, StatusEntry};
use orderflow_harness::dynamo::{describe, get_n, get_s, is_conditional_check_failed, n, s};

/// An order as Sales stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrder {
    /// The order's state, what events carry.
    pub state: OrderState,
    /// Hash of the POST body that created it (an `Idempotency-Key` replay must match it).
    pub request_hash: String,
    /// Correlation id of the request that created it, reused when `OrderPlaced` is re-sent.
    pub correlation_id: String,
    /// Whether `OrderPlaced` was published.
    pub published: bool,
}

/// The store did not answer; callers retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("order store: {0}")]
pub struct StoreError(pub String);

/// The result of a create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    /// Stored now.
    New,
    /// An order with this id already exists (an idempotent replay): here it is.
    Existing(Box<StoredOrder>),
}

/// The result of a versioned save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    /// Written.
    Saved,
    /// Someone changed the order since it was read: read again and decide again.
    VersionConflict,
}

/// The port.
#[async_trait]
pub trait OrderStore: Send + Sync {
    /// Stores a new order unless one with its id exists.
    async fn create(&self, order: &StoredOrder) -> Result<Created, StoreError>;
    /// Reads an order (strongly consistent).
    async fn get(&self, order_id: &str) -> Result<Option<StoredOrder>, StoreError>;
    /// Writes `order` if the stored version is still `expected_version` (optimistic concurrency).
    async fn save(&self, order: &StoredOrder, expected_version: u64) -> Result<Saved, StoreError>;
    /// Records that `OrderPlaced` was published.
    async fn mark_published(&self, order_id: &str) -> Result<(), StoreError>;
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
    if !state.status.can_move_to(next) {
        return Err(IllegalTransition { order_id: state.order_id.clone(), from: state.status, to: next });
    }
    let mut new = state.clone();
    new.status = next;
    new.version += 1;
    new.history.push(StatusEntry { status: next, at, reason });
    if tracking_number.is_some() {
        new.tracking_number = tracking_number;
    }
    Ok(new)
}

/// The DynamoDB adapter.
#[derive(Debug, Clone)]
pub struct DynamoDbOrderStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDbOrderStore {
    /// Uses `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    fn item(order: &StoredOrder) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("orderId".to_string(), s(&order.state.order_id)),
            ("status".to_string(), s(order.state.status.as_str())),
            ("version".to_string(), n(order.state.version)),
            ("document".to_string(), s(serde_json::to_string(&order.state).expect("order state serialises"))),
            ("requestHash".to_string(), s(&order.request_hash)),
            ("correlationId".to_string(), s(&order.correlation_id)),
            ("published".to_string(), AttributeValue::Bool(order.published)),
        ])
    }

    fn parse(item: &HashMap<String, AttributeValue>) -> Result<StoredOrder, StoreError> {
        let document = get_s(item, "document").ok_or_else(|| StoreError("order item without document".into()))?;
        let mut state: OrderState =
            serde_json::from_str(document).map_err(|e| StoreError(format!("order document unreadable: {e}")))?;
        // The top-level attributes are the truth for the fields conditions are written against.
        if let Some(v) = get_n(item, "version") {
            state.version = v;
        }
        Ok(StoredOrder {
            state,
            request_hash: get_s(item, "requestHash").unwrap_or_default().to_string(),
            correlation_id: get_s(item, "correlationId").unwrap_or_default().to_string(),
            published: item.get("published").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
        })
    }
}

#[async_trait]
impl OrderStore for DynamoDbOrderStore {
    async fn create(&self, order: &StoredOrder) -> Result<Created, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(order)))
            .condition_expression("attribute_not_exists(orderId)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(Created::New),
            Err(e) if is_conditional_check_failed(&e) => match self.get(&order.state.order_id).await? {
                Some(existing) => Ok(Created::Existing(Box::new(existing))),
                None => Err(StoreError("order vanished between create and read".into())),
            },
            Err(e) => Err(StoreError(describe(e))),
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
            .map_err(|e| StoreError(describe(e)))?;
        out.item().map(Self::parse).transpose()
    }

    async fn save(&self, order: &StoredOrder, expected_version: u64) -> Result<Saved, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::item(order)))
            .condition_expression("version = :expected")
            .expression_attribute_values(":expected", n(expected_version))
            .send()
            .await;
        match put {
            Ok(_) => Ok(Saved::Saved),
            Err(e) if is_conditional_check_failed(&e) => Ok(Saved::VersionConflict),
            Err(e) => Err(StoreError(describe(e))),
        }
    }

    async fn mark_published(&self, order_id: &str) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("orderId", s(order_id))
            .update_expression("SET published = :t")
            .condition_expression("attribute_exists(orderId)")
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(|e| StoreError(describe(e)))?;
        Ok(())
    }
}

/// The in-memory fake, with the adapter's semantics.
#[derive(Debug, Default)]
pub struct InMemoryOrderStore {
    orders: Mutex<HashMap<String, StoredOrder>>,
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
}

#[async_trait]
impl OrderStore for InMemoryOrderStore {
    async fn create(&self, order: &StoredOrder) -> Result<Created, StoreError> {
        let mut orders = self.orders.lock().expect("lock");
        if let Some(existing) = orders.get(&order.state.order_id) {
            return Ok(Created::Existing(Box::new(existing.clone())));
        }
        orders.insert(order.state.order_id.clone(), order.clone());
        Ok(Created::New)
    }

    async fn get(&self, order_id: &str) -> Result<Option<StoredOrder>, StoreError> {
        Ok(self.orders.lock().expect("lock").get(order_id).cloned())
    }

    async fn save(&self, order: &StoredOrder, expected_version: u64) -> Result<Saved, StoreError> {
        let mut orders = self.orders.lock().expect("lock");
        match orders.get(&order.state.order_id) {
            Some(current) if current.state.version == expected_version => {
                orders.insert(order.state.order_id.clone(), order.clone());
                Ok(Saved::Saved)
            }
            _ => Ok(Saved::VersionConflict),
        }
    }

    async fn mark_published(&self, order_id: &str) -> Result<(), StoreError> {
        if let Some(o) = self.orders.lock().expect("lock").get_mut(order_id) {
            o.published = true;
        }
        Ok(())
    }
}
