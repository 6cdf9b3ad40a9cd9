//! Shipping labels: a JSON document per order in S3, at `labels/<order id>.json`. Writing the same key
//! again is harmless, so a retried handler just rewrites it. The label of an order cancelled after
//! allocation is removed (the versioned bucket keeps it, behind a delete marker), so nobody ships it.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use orderflow_contracts::Address;
use orderflow_harness::StoreError;
use serde::{Deserialize, Serialize};

/// What a label says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Label {
    /// The order.
    pub order_id: String,
    /// The shipment.
    pub shipment_id: String,
    /// Carrier.
    pub carrier: String,
    /// Tracking number.
    pub tracking_number: String,
    /// Recipient.
    pub recipient: String,
    /// Destination.
    pub address: Address,
    /// SKU and quantity per parcel line.
    pub contents: Vec<(String, u32)>,
}

/// Where a stored label is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLabel {
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
}

const STORE: &str = "label store";

/// Where label documents go.
#[async_trait]
pub trait LabelStore: Send + Sync {
    /// Stores the label document, returning where.
    async fn put(&self, label: &Label) -> Result<StoredLabel, StoreError>;
    /// Removes the order's label, if there is one (removing it again is harmless).
    async fn remove(&self, order_id: &str) -> Result<(), StoreError>;
}

/// The key of an order's label.
pub fn label_key(order_id: &str) -> String {
    format!("labels/{order_id}.json")
}

/// The S3 adapter.
#[derive(Debug, Clone)]
pub struct S3LabelStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3LabelStore {
    /// Uses `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into() }
    }
}

#[async_trait]
impl LabelStore for S3LabelStore {
    async fn put(&self, label: &Label) -> Result<StoredLabel, StoreError> {
        let key = label_key(&label.order_id);
        let body = serde_json::to_vec_pretty(label).expect("labels serialise");
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(body.into())
            .send()
            .await
            // A put of a fresh key can only fail for passing reasons (timeouts, 5xx, throttling) or
            // misconfiguration that an operator fixes while SQS retries: retryable either way.
            .map_err(|e| StoreError::retryable(STORE, aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        Ok(StoredLabel { bucket: self.bucket.clone(), key })
    }

    async fn remove(&self, order_id: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(label_key(order_id))
            .send()
            .await
            .map_err(|e| StoreError::retryable(STORE, aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        Ok(())
    }
}

/// The in-memory fake.
#[derive(Debug, Default)]
pub struct InMemoryLabelStore {
    labels: Mutex<HashMap<String, Label>>,
}

impl InMemoryLabelStore {
    /// The label stored under `key`.
    pub fn get(&self, key: &str) -> Option<Label> {
        self.labels.lock().expect("lock").get(key).cloned()
    }
}

#[async_trait]
impl LabelStore for InMemoryLabelStore {
    async fn put(&self, label: &Label) -> Result<StoredLabel, StoreError> {
        let key = label_key(&label.order_id);
        self.labels.lock().expect("lock").insert(key.clone(), label.clone());
        Ok(StoredLabel { bucket: "in-memory".into(), key })
    }

    async fn remove(&self, order_id: &str) -> Result<(), StoreError> {
        self.labels.lock().expect("lock").remove(&label_key(order_id));
        Ok(())
    }
}
