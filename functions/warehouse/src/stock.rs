//! Stock levels and allocations.
//!
//! Table `stock`, partition key `sku`, attribute `available` (N). Table `shipments`, partition key
//! `orderId`: one allocation per order. Allocation is one DynamoDB transaction: every line's
//! `available` decreases only if it stays at or above zero, and the order's allocation record is
//! created only if absent, so stock is never oversold, an order is allocated all lines or none, and a
//! redelivered event never allocates twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{KeysAndAttributes, Put, TransactWriteItem, Update};
use orderflow_contracts::{OrderLine, Shortage};
use orderflow_harness::dynamo::{describe, get_n, get_s, n, s};

/// The answer to an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    /// Every line allocated now.
    Allocated,
    /// This order was allocated before (a redelivery).
    AlreadyAllocated,
    /// Some lines are short; nothing was allocated.
    Short(Vec<Shortage>),
}

/// The store could not answer, or lost a race it should retry: retryable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stock store: {0}")]
pub struct StoreError(pub String);

/// The port.
#[async_trait]
pub trait StockStore: Send + Sync {
    /// Allocates every line of `order_id`, or none.
    async fn allocate(&self, order_id: &str, lines: &[OrderLine]) -> Result<Allocation, StoreError>;
}

/// Quantities per SKU (an order may list a SKU twice).
pub fn demand(lines: &[OrderLine]) -> BTreeMap<String, u32> {
    let mut demand = BTreeMap::new();
    for line in lines {
        *demand.entry(line.sku.clone()).or_insert(0) += line.quantity;
    }
    demand
}

/// The lines `levels` cannot fill (an unknown SKU has none on hand).
pub fn shortages(demand: &BTreeMap<String, u32>, levels: &HashMap<String, u32>) -> Vec<Shortage> {
    demand
        .iter()
        .filter_map(|(sku, &requested)| {
            let available = levels.get(sku).copied().unwrap_or(0);
            (available < requested).then(|| Shortage { sku: sku.clone(), requested, available })
        })
        .collect()
}

/// The DynamoDB adapter.
#[derive(Debug, Clone)]
pub struct DynamoDbStockStore {
    client: aws_sdk_dynamodb::Client,
    stock_table: String,
    shipments_table: String,
}

impl DynamoDbStockStore {
    /// Uses the two tables.
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        stock_table: impl Into<String>,
        shipments_table: impl Into<String>,
    ) -> Self {
        Self { client, stock_table: stock_table.into(), shipments_table: shipments_table.into() }
    }

    async fn already_allocated(&self, order_id: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.shipments_table)
            .key("orderId", s(order_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError(describe(e)))?;
        Ok(out.item().is_some())
    }

    async fn levels(&self, skus: Vec<String>) -> Result<HashMap<String, u32>, StoreError> {
        let keys = skus.iter().map(|sku| HashMap::from([("sku".to_string(), s(sku))])).collect::<Vec<_>>();
        let out = self
            .client
            .batch_get_item()
            .request_items(
                &self.stock_table,
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError(e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| StoreError(describe(e)))?;
        let mut levels = HashMap::new();
        for item in out.responses().and_then(|r| r.get(&self.stock_table)).into_iter().flatten() {
            if let (Some(sku), Some(available)) = (get_s(item, "sku"), get_n::<u32>(item, "available")) {
                levels.insert(sku.to_string(), available);
            }
        }
        Ok(levels)
    }
}

#[async_trait]
impl StockStore for DynamoDbStockStore {
    async fn allocate(&self, order_id: &str, lines: &[OrderLine]) -> Result<Allocation, StoreError> {
        // No read first: the transaction's condition on the shipment record catches a redelivery,
        // and only a cancelled transaction (rare) pays for the reads that tell why.
        let demand = demand(lines);
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError(e.to_string());
        let mut items = Vec::with_capacity(demand.len() + 1);
        for (sku, quantity) in &demand {
            items.push(
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&self.stock_table)
                            .key("sku", s(sku))
                            .update_expression("SET available = available - :q")
                            .condition_expression("attribute_exists(sku) AND available >= :q")
                            .expression_attribute_values(":q", n(quantity))
                            .build()
                            .map_err(build)?,
                    )
                    .build(),
            );
        }
        let allocated: Vec<String> = demand.iter().map(|(sku, q)| format!("{sku}:{q}")).collect();
        items.push(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.shipments_table)
                        .item("orderId", s(order_id))
                        .item("allocation", s(allocated.join(",")))
                        .item("allocatedAt", s(chrono::Utc::now().to_rfc3339()))
                        .condition_expression("attribute_not_exists(orderId)")
                        .build()
                        .map_err(build)?,
                )
                .build(),
        );
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(Allocation::Allocated),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_transaction_canceled_exception()) => {
                // Which condition failed? Another invocation may have allocated this order meanwhile;
                // otherwise look at the levels now.
                if self.already_allocated(order_id).await? {
                    return Ok(Allocation::AlreadyAllocated);
                }
                let levels = self.levels(demand.keys().cloned().collect()).await?;
                let shortages = shortages(&demand, &levels);
                if shortages.is_empty() {
                    // Lost a race with a concurrent allocation that has since been undone or was
                    // transient (e.g. a transaction conflict): try again later.
                    Err(StoreError(format!("allocation for {order_id} cancelled without a shortage: {}", describe(e))))
                } else {
                    Ok(Allocation::Short(shortages))
                }
            }
            Err(e) => Err(StoreError(describe(e))),
        }
    }
}

/// The in-memory fake.
#[derive(Debug, Default)]
pub struct InMemoryStockStore {
    levels: Mutex<HashMap<String, u32>>,
    allocated: Mutex<HashSet<String>>,
}

impl InMemoryStockStore {
    /// A warehouse holding these levels.
    pub fn with_levels(levels: &[(&str, u32)]) -> Self {
        let store = Self::default();
        store.levels.lock().expect("lock").extend(levels.iter().map(|(k, v)| (k.to_string(), *v)));
        store
    }
    /// What is on hand for `sku`.
    pub fn level(&self, sku: &str) -> Option<u32> {
        self.levels.lock().expect("lock").get(sku).copied()
    }
}

#[async_trait]
impl StockStore for InMemoryStockStore {
    async fn allocate(&self, order_id: &str, lines: &[OrderLine]) -> Result<Allocation, StoreError> {
        let mut allocated = self.allocated.lock().expect("lock");
        if allocated.contains(order_id) {
            return Ok(Allocation::AlreadyAllocated);
        }
        let mut levels = self.levels.lock().expect("lock");
        let demand = demand(lines);
        let shortages = shortages(&demand, &levels);
        if !shortages.is_empty() {
            return Ok(Allocation::Short(shortages));
        }
        for (sku, q) in demand {
            *levels.get_mut(&sku).expect("checked above") -= q;
        }
        allocated.insert(order_id.to_string());
        Ok(Allocation::Allocated)
    }
}
