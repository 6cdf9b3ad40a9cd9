//! Webhook subscriptions: the port, its DynamoDB adapter and the in-memory fake.
//!
//! Table `webhook-subscriptions`, partition key `id`. Item: `url`, `eventTypes` (list), `secret`
//! (`whsec_...`, shown once, when created), `active` (false once the subscriber answered 410 Gone or
//! the subscription was deleted), `createdAt`.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use orderflow_harness::dynamo::{is_conditional_check_failed, s, store_error};
use orderflow_harness::StoreError;
use serde::{Deserialize, Serialize};

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

/// Who gets which events: a subscription without its URL and secret, all the fan-out may read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    /// The subscription's id.
    pub id: String,
    /// The `detail-type`s it wants.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Whether deliveries are made.
    #[serde(default)]
    pub active: bool,
    /// When the subscription was created (RFC 3339): it gets only events that happened since.
    #[serde(default)]
    pub created_at: Option<String>,
}

impl Route {
    /// Whether an event of `event_type` that happened at `occurred_at` is for this subscription:
    /// active, subscribed to that type, and created by then. A repeat of an older event (a redrive
    /// of the fan-out's dead letters, a republish) does not reach a subscription created since, nor
    /// one deleted and created again under a new id. A creation time that does not read (none is
    /// written so) admits the event, as before there was one.
    pub fn wants(&self, event_type: &str, occurred_at: chrono::DateTime<chrono::Utc>) -> bool {
        let created_by_then = self
            .created_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .is_none_or(|created| created <= occurred_at);
        self.active && self.event_types.iter().any(|t| t == event_type) && created_by_then
    }
}

/// The attributes a [`Route`] is read from: the fan-out's policy allows its scan these only.
pub const ROUTE_ATTRIBUTES: [&str; 4] = ["id", "eventTypes", "active", "createdAt"];

/// The attributes the operator's list is read from ([`SubscriptionStore::all`]): every one but the
/// signing secret, which the webhooks API shows once, at creation, and never reads back. Its policy
/// allows its scan these only.
pub const LISTED_ATTRIBUTES: [&str; 5] = ["id", "url", "eventTypes", "active", "createdAt"];

/// The attributes [`SubscriptionStore::deactivate`]'s update names (the key and `active`): the
/// delivery consumer's policy allows its `UpdateItem` these only, so it can switch a subscription
/// off (a subscriber's 410) but never re-point its URL or change its secret.
pub const DEACTIVATION_ATTRIBUTES: [&str; 2] = ["id", "active"];

/// Where subscriptions are kept.
#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Stores a new subscription.
    async fn create(&self, subscription: &Subscription) -> Result<(), StoreError>;
    /// One subscription.
    async fn get(&self, id: &str) -> Result<Option<Subscription>, StoreError>;
    /// Every subscription, without its secret (empty): the operator's list (a small table), read
    /// as [`LISTED_ATTRIBUTES`] alone.
    async fn all(&self) -> Result<Vec<Subscription>, StoreError>;
    /// Stops deliveries to it; false when there is no such subscription.
    async fn deactivate(&self, id: &str) -> Result<bool, StoreError>;
    /// Every subscription's route: what the fan-out reads, never a secret.
    async fn routes(&self) -> Result<Vec<Route>, StoreError>;
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

    /// Every item of the table, page by page, each read with `read`, the scan asking for
    /// `attributes` alone (what the caller's policy allows it: [`ROUTE_ATTRIBUTES`] for the fan-out,
    /// [`LISTED_ATTRIBUTES`] for the webhooks API).
    async fn scan<T>(
        &self,
        attributes: &[&str],
        read: impl Fn(&HashMap<String, AttributeValue>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut found = Vec::new();
        let mut start = None;
        let projection = (0..attributes.len()).map(|i| format!("#a{i}")).collect::<Vec<_>>().join(", ");
        loop {
            let mut scan = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start)
                .select(aws_sdk_dynamodb::types::Select::SpecificAttributes)
                .projection_expression(&projection);
            for (i, name) in attributes.iter().enumerate() {
                scan = scan.expression_attribute_names(format!("#a{i}"), *name);
            }
            let out = scan.send().await.map_err(|e| store_error(STORE, e))?;
            for item in out.items() {
                found.push(read(item)?);
            }
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(found);
            }
        }
    }
}

/// The route an item of the subscriptions table holds; `None`, logged with the item's id, for one
/// that does not read (a hand edit, a bug): one bad subscription must not stop every event reaching
/// every other subscriber (the fan-out would dead-letter them all).
pub fn route_of(item: &HashMap<String, AttributeValue>) -> Option<Route> {
    match serde_dynamo::from_item(item.clone()) {
        Ok(route) => Some(route),
        Err(e) => {
            let id = match item.get("id") {
                Some(AttributeValue::S(id)) => id.as_str(),
                _ => "",
            };
            tracing::error!(subscription_id = id, error = %e, "a subscription item that does not read: passed by");
            None
        }
    }
}

/// A subscription as its item stores it: every field, the secret included (the API's JSON, from
/// [`Subscription`]'s own `Serialize`, never shows it). Mapped to and from DynamoDB's attributes by
/// `serde_dynamo`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    id: String,
    url: String,
    #[serde(default)]
    event_types: Vec<String>,
    secret: String,
    #[serde(default)]
    active: bool,
    #[serde(default)]
    created_at: String,
}

fn to_item(sub: &Subscription) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let item = Item {
        id: sub.id.clone(),
        url: sub.url.clone(),
        event_types: sub.event_types.clone(),
        secret: sub.secret.clone(),
        active: sub.active,
        created_at: sub.created_at.clone(),
    };
    serde_dynamo::to_item(item).map_err(|e| StoreError::permanent(STORE, format!("subscription item: {e}")))
}

/// A subscription as the operator's list reads it: [`LISTED_ATTRIBUTES`], no secret.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    id: String,
    url: String,
    #[serde(default)]
    event_types: Vec<String>,
    #[serde(default)]
    active: bool,
    #[serde(default)]
    created_at: String,
}

fn parse_listed(item: &HashMap<String, AttributeValue>) -> Result<Subscription, StoreError> {
    let Listed { id, url, event_types, active, created_at } = serde_dynamo::from_item(item.clone())
        .map_err(|e| StoreError::permanent(STORE, format!("a subscription item that does not read: {e}")))?;
    Ok(Subscription { id, url, event_types, secret: String::new(), active, created_at })
}

fn parse(item: &HashMap<String, AttributeValue>) -> Result<Subscription, StoreError> {
    let Item { id, url, event_types, secret, active, created_at } = serde_dynamo::from_item(item.clone())
        .map_err(|e| StoreError::permanent(STORE, format!("a subscription item that does not read: {e}")))?;
    Ok(Subscription { id, url, event_types, secret, active, created_at })
}

#[async_trait]
impl SubscriptionStore for DynamoDbSubscriptions {
    async fn create(&self, sub: &Subscription) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(sub)?))
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
        self.scan(&LISTED_ATTRIBUTES, parse_listed).await
    }

    async fn routes(&self) -> Result<Vec<Route>, StoreError> {
        Ok(self.scan(&ROUTE_ATTRIBUTES, |item| Ok(route_of(item))).await?.into_iter().flatten().collect())
    }

    async fn deactivate(&self, id: &str) -> Result<bool, StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(DEACTIVATION_ATTRIBUTES[0], s(id))
            .update_expression("SET #active = :f")
            .condition_expression("attribute_exists(#id)")
            .expression_attribute_names("#id", DEACTIVATION_ATTRIBUTES[0])
            .expression_attribute_names("#active", DEACTIVATION_ATTRIBUTES[1])
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
        // As the adapter reads them: without their secrets.
        let mut all: Vec<Subscription> = self
            .subscriptions
            .lock()
            .expect("lock")
            .values()
            .map(|s| Subscription { secret: String::new(), ..s.clone() })
            .collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(all)
    }
    async fn deactivate(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.subscriptions.lock().expect("lock").get_mut(id).map(|s| s.active = false).is_some())
    }
    async fn routes(&self) -> Result<Vec<Route>, StoreError> {
        Ok(self
            .all()
            .await?
            .into_iter()
            .map(|s| Route { id: s.id, event_types: s.event_types, active: s.active, created_at: Some(s.created_at) })
            .collect())
    }
}
