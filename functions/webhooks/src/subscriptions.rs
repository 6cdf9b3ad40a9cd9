//! Webhook subscriptions: the port, its DynamoDB adapter and the in-memory fake.
//!
//! Table `webhook-subscriptions`, partition key `id`. Item: `url`, `eventTypes` (list), `secret`
//! (`whsec_...`, shown once, when created), `active` (false once the subscriber answered 410 Gone or
//! the subscription was deleted), `createdAt`.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use orderflow_harness::dynamo::{get_s, is_conditional_check_failed, s, store_error};
use orderflow_harness::StoreError;
use serde::Serialize;

const STORE: &str = "subscription store";

/// One subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    /// Its id.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// The `detail-type`s it wants.
    pub event_types: Vec<String>,
    /// The signing secret (`whsec_` + base64). Never listed.
    #[serde(skip)]
    pub secret: String,
    /// Whether deliveries are made.
    pub active: bool,
    /// When it was created (RFC 3339).
    pub created_at: String,
}

/// Where subscriptions are kept.
#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Stores a new subscription.
    async fn create(&self, subscription: &Subscription) -> Result<(), StoreError>;
    /// One subscription.
    async fn get(&self, id: &str) -> Result<Option<Subscription>, StoreError>;
    /// Every subscription (a small table: the operator's list).
    async fn all(&self) -> Result<Vec<Subscription>, StoreError>;
    /// Stops deliveries to it; false when there is no such subscription.
    async fn deactivate(&self, id: &str) -> Result<bool, StoreError>;
}

/// The DynamoDB adapter.
#[derive(Debug, Clone)]
pub struct DynamoDbSubscriptions {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDbSubscriptions {
    /// Uses `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

fn parse(item: &HashMap<String, AttributeValue>) -> Result<Subscription, StoreError> {
    let field = |name: &str| {
        get_s(item, name)
            .map(str::to_string)
            .ok_or_else(|| StoreError::permanent(STORE, format!("subscription without {name}")))
    };
    Ok(Subscription {
        id: field("id")?,
        url: field("url")?,
        event_types: item
            .get("eventTypes")
            .and_then(|v| v.as_l().ok())
            .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
            .unwrap_or_default(),
        secret: field("secret")?,
        active: item.get("active").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
        created_at: get_s(item, "createdAt").unwrap_or_default().to_string(),
    })
}

#[async_trait]
impl SubscriptionStore for DynamoDbSubscriptions {
    async fn create(&self, sub: &Subscription) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item("id", s(&sub.id))
            .item("url", s(&sub.url))
            .item("eventTypes", AttributeValue::L(sub.event_types.iter().map(s).collect()))
            .item("secret", s(&sub.secret))
            .item("active", AttributeValue::Bool(sub.active))
            .item("createdAt", s(&sub.created_at))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await
            .map_err(|e| store_error(STORE, e))?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(STORE, e))?;
        out.item().map(parse).transpose()
    }

    async fn all(&self) -> Result<Vec<Subscription>, StoreError> {
        let mut subscriptions = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error(STORE, e))?;
            for item in out.items() {
                subscriptions.push(parse(item)?);
            }
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(subscriptions);
            }
        }
    }

    async fn deactivate(&self, id: &str) -> Result<bool, StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(id))
            .update_expression("SET active = :f")
            .condition_expression("attribute_exists(id)")
            .expression_attribute_values(":f", AttributeValue::Bool(false))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_check_failed(&e) => Ok(false),
            Err(e) => Err(store_error(STORE, e)),
        }
    }
}

/// The in-memory fake.
#[derive(Debug, Default)]
pub struct InMemorySubscriptions {
    subscriptions: Mutex<HashMap<String, Subscription>>,
}

#[async_trait]
impl SubscriptionStore for InMemorySubscriptions {
    async fn create(&self, sub: &Subscription) -> Result<(), StoreError> {
        self.subscriptions.lock().expect("lock").insert(sub.id.clone(), sub.clone());
        Ok(())
    }
    async fn get(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        Ok(self.subscriptions.lock().expect("lock").get(id).cloned())
    }
    async fn all(&self) -> Result<Vec<Subscription>, StoreError> {
        let mut all: Vec<Subscription> = self.subscriptions.lock().expect("lock").values().cloned().collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(all)
    }
    async fn deactivate(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.subscriptions.lock().expect("lock").get_mut(id).map(|s| s.active = false).is_some())
    }
}
