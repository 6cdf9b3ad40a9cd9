//! Stock levels and allocations.
//!
//! Table `stock`, partition key `sku`, attribute `available` (N). Table `shipments`, partition key
//! `orderId`: one record per order, saying what Warehouse answered, `status` `ALLOCATED` (with
//! `allocation`) or `SHORT` (with `shortages`). Allocation is one DynamoDB transaction: every line's
//! `available` decreases only if it stays at or above zero, and the order's record is created only if
//! absent, so stock is never oversold, an order is allocated all lines or none, and a redelivered
//! event never allocates twice. A shortage is recorded the same way, so the answer to an order never
//! changes: a replay after restocking (a lost acknowledgement, an archive replay once the idempotency
//! record has expired) does not allocate stock to an order Sales has already marked `Backordered`.
//!
//! A transaction cancelled only because a concurrent allocation touched the same SKU is retried here,
//! at once, with jittered backoff, instead of waiting a whole SQS visibility timeout.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{KeysAndAttributes, Put, TransactWriteItem, Update};
use backon::{BackoffBuilder, ExponentialBuilder};
use orderflow_contracts::{OrderLine, Shortage};
use orderflow_harness::dynamo::{get_n, get_s, is_conditional_check_failed, n, s, store_error};
use orderflow_harness::StoreError;

const STORE: &str = "stock store";

/// How many times one allocation is tried in-process before the record goes back to SQS.
const ATTEMPTS: usize = 6;

/// The answer to an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    /// Every line allocated now.
    Allocated,
    /// This order was allocated before (a redelivery).
    AlreadyAllocated,
    /// Some lines are short; nothing was allocated. Remembered: the same order gets the same answer.
    Short(Vec<Shortage>),
}

/// Stock and the answers given to orders.
#[async_trait]
pub trait StockStore: Send + Sync {
    /// Allocates every line of `order_id`, or none; the first answer for an order is final.
    async fn allocate(&self, order_id: &str, lines: &[OrderLine]) -> Result<Allocation, StoreError>;
}

/// Quantities per SKU (an order may list a SKU twice), summed with checked arithmetic: a sum that
/// does not fit is a permanent error naming the line.
pub fn demand(lines: &[OrderLine]) -> Result<BTreeMap<String, u32>, StoreError> {
    let mut demand: BTreeMap<String, u32> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let total = demand.entry(line.sku.clone()).or_insert(0);
        *total = total.checked_add(line.quantity).ok_or_else(|| {
            StoreError::permanent(STORE, format!("lines[{i}]: the demand for {} overflows", line.sku))
        })?;
    }
    Ok(demand)
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

/// What the shipments table says about an order.
enum Recorded {
    Nothing,
    Allocated,
    Short(Vec<Shortage>),
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

    async fn recorded(&self, order_id: &str) -> Result<Recorded, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.shipments_table)
            .key("orderId", s(order_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(STORE, e))?;
        let Some(item) = out.item() else { return Ok(Recorded::Nothing) };
        match get_s(item, "status") {
            Some("SHORT") => {
                let shortages = get_s(item, "shortages")
                    .and_then(|j| serde_json::from_str(j).ok())
                    .ok_or_else(|| StoreError::permanent(STORE, format!("shortage record of {order_id} unreadable")))?;
                Ok(Recorded::Short(shortages))
            }
            // Records from before statuses existed are allocations.
            _ => Ok(Recorded::Allocated),
        }
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
                    .map_err(|e| StoreError::permanent(STORE, e.to_string()))?,
            )
            .send()
            .await
            .map_err(|e| store_error(STORE, e))?;
        if out.unprocessed_keys().is_some_and(|u| !u.is_empty()) {
            return Err(StoreError::retryable(STORE, "stock levels only partly read"));
        }
        let mut levels = HashMap::new();
        for item in out.responses().and_then(|r| r.get(&self.stock_table)).into_iter().flatten() {
            if let (Some(sku), Some(available)) = (get_s(item, "sku"), get_n::<u32>(item, "available")) {
                levels.insert(sku.to_string(), available);
            }
        }
        Ok(levels)
    }

    /// Records a shortage as the order's answer, unless another answer was recorded first (then
    /// that one stands).
    async fn record_short(&self, order_id: &str, shortages: Vec<Shortage>) -> Result<Allocation, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.shipments_table)
            .item("orderId", s(order_id))
            .item("status", s("SHORT"))
            .item("shortages", s(serde_json::to_string(&shortages).expect("shortages serialise")))
            .item("recordedAt", s(chrono::Utc::now().to_rfc3339()))
            .condition_expression("attribute_not_exists(orderId)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(Allocation::Short(shortages)),
            Err(e) if is_conditional_check_failed(&e) => match self.recorded(order_id).await? {
                Recorded::Allocated => Ok(Allocation::AlreadyAllocated),
                Recorded::Short(recorded) => Ok(Allocation::Short(recorded)),
                Recorded::Nothing => Err(StoreError::retryable(STORE, "shipment record vanished")),
            },
            Err(e) => Err(store_error(STORE, e)),
        }
    }

    async fn transact(&self, order_id: &str, demand: &BTreeMap<String, u32>) -> Result<bool, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::permanent(STORE, e.to_string());
        let mut items = Vec::with_capacity(demand.len() + 1);
        for (sku, quantity) in demand {
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
                        .item("status", s("ALLOCATED"))
                        .item("allocation", s(allocated.join(",")))
                        .item("allocatedAt", s(chrono::Utc::now().to_rfc3339()))
                        .condition_expression("attribute_not_exists(orderId)")
                        .build()
                        .map_err(build)?,
                )
                .build(),
        );
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_transaction_canceled_exception()) => Ok(false),
            Err(e) => Err(store_error(STORE, e)),
        }
    }
}

#[async_trait]
impl StockStore for DynamoDbStockStore {
    async fn allocate(&self, order_id: &str, lines: &[OrderLine]) -> Result<Allocation, StoreError> {
        // No read first: the transaction's condition on the shipment record catches a redelivery,
        // and only a cancelled transaction pays for the reads that tell why.
        let demand = demand(lines)?;
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(20))
            .with_max_delay(Duration::from_millis(400))
            .with_max_times(ATTEMPTS - 1)
            .with_jitter()
            .build();
        for attempt in 1..=ATTEMPTS {
            if self.transact(order_id, &demand).await? {
                return Ok(Allocation::Allocated);
            }
            // Cancelled. An answer already given stands; otherwise see whether stock is short.
            match self.recorded(order_id).await? {
                Recorded::Allocated => return Ok(Allocation::AlreadyAllocated),
                Recorded::Short(recorded) => return Ok(Allocation::Short(recorded)),
                Recorded::Nothing => {}
            }
            let levels = self.levels(demand.keys().cloned().collect()).await?;
            let shortages = shortages(&demand, &levels);
            if !shortages.is_empty() {
                return self.record_short(order_id, shortages).await;
            }
            // Enough stock, yet cancelled: a concurrent transaction on the same SKU. Try again soon.
            let delay = delays.next().unwrap_or(Duration::from_millis(100));
            if attempt == ATTEMPTS || !orderflow_harness::deadline::allows(delay, Duration::from_secs(1)) {
                break;
            }
            tracing::info!(order_id, attempt, delay_ms = delay.as_millis() as u64, "allocation lost a race; retrying");
            tokio::time::sleep(delay).await;
        }
        Err(StoreError::retryable(STORE, format!("allocation for {order_id} kept conflicting with concurrent ones")))
    }
}

/// The in-memory fake, with the adapter's semantics (all lines or none, the first answer final).
#[derive(Debug, Default)]
pub struct InMemoryStockStore {
    levels: Mutex<HashMap<String, u32>>,
    allocated: Mutex<HashSet<String>>,
    short: Mutex<HashMap<String, Vec<Shortage>>>,
}

impl InMemoryStockStore {
    /// A warehouse holding these levels.
    pub fn with_levels(levels: &[(&str, u32)]) -> Self {
        let store = Self::default();
        store.restock(levels);
        store
    }
    /// Sets these levels (stock arrived).
    pub fn restock(&self, levels: &[(&str, u32)]) {
        self.levels.lock().expect("lock").extend(levels.iter().map(|(k, v)| (k.to_string(), *v)));
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
        let mut short = self.short.lock().expect("lock");
        if let Some(recorded) = short.get(order_id) {
            return Ok(Allocation::Short(recorded.clone()));
        }
        let mut levels = self.levels.lock().expect("lock");
        let demand = demand(lines)?;
        let shortages = shortages(&demand, &levels);
        if !shortages.is_empty() {
            short.insert(order_id.to_string(), shortages.clone());
            return Ok(Allocation::Short(shortages));
        }
        for (sku, q) in demand {
            let level = levels.get_mut(&sku).expect("checked above");
            *level = level.checked_sub(q).expect("no shortage: the level covers the demand");
        }
        allocated.insert(order_id.to_string());
        Ok(Allocation::Allocated)
    }
}
