//! Where the lake's objects go: the `ObjectStore` port, its S3 adapter and an in-memory fake.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use orderflow_harness::StoreError;

const STORE: &str = "lake bucket";

/// Writes an object, replacing any object of the same key.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Puts `body` at `key`.
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError>;
}

/// The S3 adapter.
pub struct S3ObjectStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3ObjectStore {
    /// Writes into `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into() }
    }
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            // Not `Content-Encoding: gzip`: readers must get the compressed bytes, as Athena expects.
            .content_type("application/gzip")
            .body(body.into())
            .send()
            .await
            // Timeouts, 5xx and throttling pass; a missing bucket or permission is fixed by an
            // operator while SQS retries (and after maxReceiveCount it is in the DLQ): retryable.
            .map_err(|e| StoreError::retryable(STORE, aws_sdk_s3::error::DisplayErrorContext(e).to_string()))?;
        Ok(())
    }
}

/// The in-memory fake: a map of keys to bodies, with a switch to fail keys that contain a string.
#[derive(Debug, Default)]
pub struct InMemoryObjectStore {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    puts: Mutex<usize>,
    failing: Mutex<Option<String>>,
}

impl InMemoryObjectStore {
    /// Every object, by key.
    pub fn objects(&self) -> BTreeMap<String, Vec<u8>> {
        self.objects.lock().expect("lock").clone()
    }

    /// How many puts succeeded.
    pub fn puts(&self) -> usize {
        *self.puts.lock().expect("lock")
    }

    /// Makes puts of keys containing `part` fail (retryably); `None` heals.
    pub fn fail_keys_containing(&self, part: Option<&str>) {
        *self.failing.lock().expect("lock") = part.map(str::to_string);
    }
}

#[async_trait]
impl ObjectStore for InMemoryObjectStore {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        if self.failing.lock().expect("lock").as_deref().is_some_and(|part| key.contains(part)) {
            return Err(StoreError::retryable(STORE, "injected failure"));
        }
        self.objects.lock().expect("lock").insert(key.to_string(), body);
        *self.puts.lock().expect("lock") += 1;
        Ok(())
    }
}
