//! Stock levels, the answer given to each order, backorders and receipts.
//!
//! Table `stock`, partition key `sku`, attribute `available` (N); and one item per stock receipt,
//! `sku` = `receipt#<receipt id>` (a key no SKU can take: SKUs have no `#`), holding the orders that
//! receipt allocated and has not announced yet (`allocatedOrders`, a string set: an order joins it in
//! the transaction that allocates it, and leaves it once its label was announced), so a redelivered
//! receipt labels again only what it had not announced, and the item holds only those.
//!
//! Table `shipments`, partition key `orderId`: one record per order, saying what Warehouse answered.
//!
//! ```text
//! (none) ─► ALLOCATED ─► RELEASED        (cancelled after allocation: stock given back)
//!        └► SHORT ─────► ALLOCATED        (a restock, oldest backorder first)
//!        │        └────► CANCELLED        (cancelled while waiting)
//!        └► CANCELLED                     (cancelled before OrderBilled arrived: never allocated)
//! ```
//!
//! A `SHORT` record is a backorder: it keeps the order's `OrderBilled` (lines, recipient, address,
//! for the label) and, while it waits, `backlog` = `waiting` and `waitingSince`, the keys of the
//! sparse index `Backorders` that lists waiting orders oldest first.
//!
//! Every change is one DynamoDB transaction with conditions: a line's `available` decreases only if
//! it stays at or above zero, an order is allocated all lines or none, a backorder is allocated only
//! while it waits, stock is given back only once, and a receipt is counted once. So stock is never
//! oversold nor released twice, and a redelivered event never acts twice.
//!
//! A transaction cancelled only because a concurrent allocation touched the same SKU is retried here,
//! at once, with jittered backoff, instead of waiting a whole SQS visibility timeout.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, Put, TransactWriteItem, Update};
use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use orderflow_contracts::{OrderBilled, OrderLine, ReleasedLine, Shortage, StockReceived};
use orderflow_harness::dynamo::{get_n, get_s, is_conditional_check_failed, n, s, store_error};
use orderflow_harness::StoreError;

const STORE: &str = "stock store";

/// How many times one allocation is tried in-process before the record goes back to SQS.
const ATTEMPTS: usize = 6;

/// The value of `backlog` while an order waits (the partition key of the `Backorders` index).
const WAITING: &str = "waiting";

/// The sparse index of waiting backorders.
pub const BACKORDERS_INDEX: &str = "Backorders";

/// The answer to an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    /// Every line allocated now.
    Allocated,
    /// This order was allocated before (a redelivery, or a restock got there first).
    AlreadyAllocated,
    /// Some lines are short; nothing was allocated; the order waits for stock (a backorder).
    Short(Vec<Shortage>),
    /// The order was cancelled before it could be allocated: nothing to do.
    Cancelled,
}

/// A backorder: an order that waits for stock, with what its label needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backorder {
    /// The billed order.
    pub billed: OrderBilled,
    /// The order's flow (its events' correlation id): the label a restock makes joins it.
    pub correlation_id: String,
    /// Since when it waits.
    pub waiting_since: DateTime<Utc>,
}

/// What a receipt did to stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Whether it was counted now (false: counted before, a redelivery).
    pub counted_now: bool,
    /// The orders this receipt allocated before and has not announced (a redelivery after a crash,
    /// or after the invocation's time ran out): their labels are written and announced again.
    pub allocated_before: Vec<String>,
}

/// What cancelling did to an order's stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Nothing was allocated (it waited, or had not been billed): nothing to give back.
    NothingAllocated,
    /// Given back (now, or before: a redelivery).
    Released(Vec<ReleasedLine>),
}

/// Stock and the answers given to orders.
#[async_trait]
pub trait StockStore: Send + Sync {
    /// Allocates every line of the billed order, or none (then it is recorded as a backorder, with
    /// the order's `correlation_id`); the first answer for an order stands until a restock or a
    /// cancellation changes it.
    async fn allocate(&self, billed: &OrderBilled, correlation_id: &str) -> Result<Allocation, StoreError>;
    /// Adds the receipt's units to stock, once per receipt id.
    async fn receive(&self, receipt: &StockReceived) -> Result<Receipt, StoreError>;
    /// The waiting backorders that need `sku`, oldest first.
    async fn backorders(&self, sku: &str) -> Result<Vec<Backorder>, StoreError>;
    /// The backorder of `order_id` while a restock's allocation of it stands (its `OrderBilled` stays
    /// on the record); none once it was released, or if it never was a backorder.
    async fn backorder(&self, order_id: &str) -> Result<Option<Backorder>, StoreError>;
    /// Allocates every line of a waiting backorder, or none, crediting `receipt_id` (the receipt that
    /// made it possible, if any); false when stock is short or the order no longer waits.
    async fn allocate_backorder(&self, backorder: &Backorder, receipt_id: Option<&str>) -> Result<bool, StoreError>;
    /// Records that `receipt_id`'s allocations of `order_ids` were announced, taking them off its
    /// list: a redelivery of the receipt leaves them out of [`Receipt::allocated_before`].
    async fn announced(&self, receipt_id: &str, order_ids: &[String]) -> Result<(), StoreError>;
    /// Whether the order's allocation still stands, read consistently: false once it was released
    /// (cancelled), or if it never was allocated. Asked after its label is written, since a
    /// cancellation may release it between the allocation and the label.
    async fn allocation_stands(&self, order_id: &str) -> Result<bool, StoreError>;
    /// How many of `sku` are on hand, read consistently (0 for a SKU the warehouse never held).
    async fn on_hand(&self, sku: &str) -> Result<u32, StoreError>;
    /// Gives back what was allocated to a cancelled order, stops it waiting, and makes sure it is
    /// never allocated later.
    async fn release(&self, order_id: &str) -> Result<Release, StoreError>;
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

fn released_lines(demand: &BTreeMap<String, u32>) -> Vec<ReleasedLine> {
    demand.iter().map(|(sku, q)| ReleasedLine { sku: sku.clone(), quantity: *q }).collect()
}

/// The `allocation` attribute (`SKU:quantity,...`) read back.
fn parse_allocation(text: &str) -> Option<BTreeMap<String, u32>> {
    text.split(',')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (sku, q) = part.rsplit_once(':')?;
            Some((sku.to_string(), q.parse().ok()?))
        })
        .collect()
}

fn receipt_key(receipt_id: &str) -> String {
    format!("receipt#{receipt_id}")
}

/// What the shipments table says about an order.
#[derive(Debug)]
enum Recorded {
    Nothing,
    Allocated(Option<BTreeMap<String, u32>>),
    Short { shortages: Vec<Shortage>, waiting: bool },
    Cancelled,
    Released(BTreeMap<String, u32>),
}

/// The DynamoDB adapter.
#[derive(Debug, Clone)]
pub struct DynamoDbStockStore {
    client: aws_sdk_dynamodb::Client,
    stock_table: String,
    shipments_table: String,
}

type Item = HashMap<String, AttributeValue>;

fn build(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::permanent(STORE, e.to_string())
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

    async fn item(&self, table: &str, key: (&str, &str)) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .key(key.0, s(key.1))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(STORE, e))?;
        Ok(out.item().cloned())
    }

    async fn recorded(&self, order_id: &str) -> Result<Recorded, StoreError> {
        let Some(item) = self.item(&self.shipments_table, ("orderId", order_id)).await? else {
            return Ok(Recorded::Nothing);
        };
        let unreadable = || StoreError::permanent(STORE, format!("shipment record of {order_id} unreadable"));
        let allocation = get_s(&item, "allocation").and_then(parse_allocation);
        match get_s(&item, "status") {
            Some("SHORT") => {
                let shortages =
                    get_s(&item, "shortages").and_then(|j| serde_json::from_str(j).ok()).ok_or_else(unreadable)?;
                Ok(Recorded::Short { shortages, waiting: get_s(&item, "backlog") == Some(WAITING) })
            }
            Some("CANCELLED") => Ok(Recorded::Cancelled),
            Some("RELEASED") => Ok(Recorded::Released(allocation.ok_or_else(unreadable)?)),
            // Records from before statuses existed are allocations.
            _ => Ok(Recorded::Allocated(allocation)),
        }
    }

    async fn levels(&self, skus: Vec<String>) -> Result<HashMap<String, u32>, StoreError> {
        let keys = skus.iter().map(|sku| HashMap::from([("sku".to_string(), s(sku))])).collect::<Vec<_>>();
        let out = self
            .client
            .batch_get_item()
            .request_items(
                &self.stock_table,
                KeysAndAttributes::builder().set_keys(Some(keys)).consistent_read(true).build().map_err(build)?,
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

    /// Records a shortage as the order's answer (a waiting backorder), unless another answer was
    /// recorded first (then that one stands).
    async fn record_short(
        &self,
        billed: &OrderBilled,
        correlation_id: &str,
        shortages: Vec<Shortage>,
    ) -> Result<Allocation, StoreError> {
        let now = Utc::now();
        let put = self
            .client
            .put_item()
            .table_name(&self.shipments_table)
            .item("orderId", s(&billed.order_id))
            .item("status", s("SHORT"))
            .item("shortages", s(serde_json::to_string(&shortages).expect("shortages serialise")))
            .item("billed", s(serde_json::to_string(billed).expect("events serialise")))
            .item("correlationId", s(correlation_id))
            .item("backlog", s(WAITING))
            .item("waitingSince", s(format!("{}#{}", now.to_rfc3339(), billed.order_id)))
            .item("recordedAt", s(now.to_rfc3339()))
            .condition_expression("attribute_not_exists(orderId)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(Allocation::Short(shortages)),
            Err(e) if is_conditional_check_failed(&e) => self.answer(&billed.order_id).await,
            Err(e) => Err(store_error(STORE, e)),
        }
    }

    /// The answer already recorded for an order.
    async fn answer(&self, order_id: &str) -> Result<Allocation, StoreError> {
        match self.recorded(order_id).await? {
            Recorded::Allocated(_) => Ok(Allocation::AlreadyAllocated),
            Recorded::Short { shortages, .. } => Ok(Allocation::Short(shortages)),
            Recorded::Cancelled | Recorded::Released(_) => Ok(Allocation::Cancelled),
            Recorded::Nothing => Err(StoreError::retryable(STORE, "shipment record vanished")),
        }
    }

    /// One SKU's level changed by `quantity` inside a transaction: taken only while that many are on
    /// hand, given back (a receipt, a release) only while the level stays within `u32`, what a level
    /// is read as.
    fn stock_change(&self, sku: &str, quantity: u32, take: bool) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder().table_name(&self.stock_table).key("sku", s(sku));
        let update = if take {
            update
                .update_expression("SET available = available - :q")
                .condition_expression("attribute_exists(sku) AND available >= :q")
        } else {
            update
                .update_expression("ADD available :q")
                .condition_expression("attribute_not_exists(available) OR available <= :cap")
                .expression_attribute_values(":cap", n(u32::MAX - quantity))
        };
        let update = update.expression_attribute_values(":q", n(quantity)).build().map_err(build)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    fn take_stock(&self, sku: &str, quantity: u32) -> Result<TransactWriteItem, StoreError> {
        self.stock_change(sku, quantity, true)
    }

    fn give_stock(&self, sku: &str, quantity: u32) -> Result<TransactWriteItem, StoreError> {
        self.stock_change(sku, quantity, false)
    }

    /// An order's shipment record moved from one status to another (only from it), stamped with
    /// when, and off the backlog if `stop_waiting`.
    fn record_move(
        &self,
        order_id: &str,
        (from, to): (&str, &str),
        stamp: &str,
        at: &str,
        stop_waiting: bool,
    ) -> Result<TransactWriteItem, StoreError> {
        let remove = if stop_waiting { " REMOVE backlog" } else { "" };
        let update = Update::builder()
            .table_name(&self.shipments_table)
            .key("orderId", s(order_id))
            .update_expression(format!("SET #status = :to, {stamp} = :at{remove}"))
            // Allocation records from before statuses existed have none: they are allocations.
            .condition_expression(if from == "ALLOCATED" {
                "#status = :from OR attribute_not_exists(#status)"
            } else {
                "#status = :from"
            })
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":to", s(to))
            .expression_attribute_values(":from", s(from))
            .expression_attribute_values(":at", s(at))
            .build()
            .map_err(build)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<bool, StoreError> {
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_transaction_canceled_exception()) => Ok(false),
            Err(e) => Err(store_error(STORE, e)),
        }
    }

    /// The transaction's items that take `demand` off the shelf, and the `allocation` attribute
    /// (`SKU:quantity,...`) that records it.
    fn taking(&self, demand: &BTreeMap<String, u32>) -> Result<(Vec<TransactWriteItem>, String), StoreError> {
        let mut items = Vec::with_capacity(demand.len() + 2);
        for (sku, quantity) in demand {
            items.push(self.take_stock(sku, *quantity)?);
        }
        let allocated: Vec<String> = demand.iter().map(|(sku, q)| format!("{sku}:{q}")).collect();
        Ok((items, allocated.join(",")))
    }

    async fn allocate_new(&self, order_id: &str, demand: &BTreeMap<String, u32>) -> Result<bool, StoreError> {
        let (mut items, allocation) = self.taking(demand)?;
        items.push(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.shipments_table)
                        .item("orderId", s(order_id))
                        .item("status", s("ALLOCATED"))
                        .item("allocation", s(allocation))
                        .item("allocatedAt", s(Utc::now().to_rfc3339()))
                        .condition_expression("attribute_not_exists(orderId)")
                        .build()
                        .map_err(build)?,
                )
                .build(),
        );
        self.transact(items).await
    }

    fn backoff() -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(20))
            .with_max_delay(Duration::from_millis(400))
            .with_max_times(ATTEMPTS - 1)
            .with_jitter()
            .build()
    }

    fn parse_backorder(item: &Item) -> Result<Backorder, StoreError> {
        let unreadable = |what: &str| StoreError::permanent(STORE, format!("backorder unreadable: {what}"));
        let billed: OrderBilled =
            get_s(item, "billed").and_then(|j| serde_json::from_str(j).ok()).ok_or_else(|| unreadable("billed"))?;
        let since = get_s(item, "waitingSince")
            .and_then(|w| w.split('#').next())
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| unreadable("waitingSince"))?;
        let correlation_id = get_s(item, "correlationId").unwrap_or_default().to_string();
        Ok(Backorder { billed, correlation_id, waiting_since: since })
    }
}

#[async_trait]
impl StockStore for DynamoDbStockStore {
    async fn allocate(&self, billed: &OrderBilled, correlation_id: &str) -> Result<Allocation, StoreError> {
        // No read first: the transaction's condition on the shipment record catches a redelivery,
        // and only a cancelled transaction pays for the reads that tell why.
        let demand = demand(&billed.lines)?;
        let mut delays = Self::backoff();
        for attempt in 1..=ATTEMPTS {
            if self.allocate_new(&billed.order_id, &demand).await? {
                return Ok(Allocation::Allocated);
            }
            // Cancelled. An answer already given stands; otherwise see whether stock is short.
            match self.recorded(&billed.order_id).await? {
                Recorded::Nothing => {}
                _ => return self.answer(&billed.order_id).await,
            }
            let levels = self.levels(demand.keys().cloned().collect()).await?;
            let shortages = shortages(&demand, &levels);
            if !shortages.is_empty() {
                let answer = self.record_short(billed, correlation_id, shortages).await?;
                // A receipt counted between the levels read and the backorder recorded looked for
                // backorders before this one existed: look at the levels again, now that it waits.
                if matches!(answer, Allocation::Short(_)) {
                    let levels = self.levels(demand.keys().cloned().collect()).await?;
                    let backorder = Backorder {
                        billed: billed.clone(),
                        correlation_id: correlation_id.to_string(),
                        waiting_since: Utc::now(),
                    };
                    if self::shortages(&demand, &levels).is_empty() && self.allocate_backorder(&backorder, None).await?
                    {
                        return Ok(Allocation::Allocated);
                    }
                }
                return Ok(answer);
            }
            // Enough stock, yet cancelled: a concurrent transaction on the same SKU. Try again soon.
            let delay = delays.next().unwrap_or(Duration::from_millis(100));
            if attempt == ATTEMPTS || !orderflow_harness::deadline::allows(delay, Duration::from_secs(1)) {
                break;
            }
            tracing::info!(order_id = %billed.order_id, attempt, delay_ms = delay.as_millis() as u64, "allocation lost a race; retrying");
            tokio::time::sleep(delay).await;
        }
        Err(StoreError::retryable(
            STORE,
            format!("allocation for {} kept conflicting with concurrent ones", billed.order_id),
        ))
    }

    async fn receive(&self, receipt: &StockReceived) -> Result<Receipt, StoreError> {
        let key = receipt_key(&receipt.receipt_id);
        let items = vec![
            self.give_stock(&receipt.sku, receipt.quantity)?,
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.stock_table)
                        .item("sku", s(&key))
                        .item("receiptSku", s(&receipt.sku))
                        .item("quantity", n(receipt.quantity))
                        .item("receivedAt", s(receipt.received_at.to_rfc3339()))
                        .condition_expression("attribute_not_exists(sku)")
                        .build()
                        .map_err(build)?,
                )
                .build(),
        ];
        if self.transact(items).await? {
            return Ok(Receipt { counted_now: true, allocated_before: vec![] });
        }
        let Some(item) = self.item(&self.stock_table, ("sku", &key)).await? else {
            let level = self.levels(vec![receipt.sku.clone()]).await?.get(&receipt.sku).copied().unwrap_or(0);
            if level.checked_add(receipt.quantity).is_none() {
                return Err(StoreError::permanent(
                    STORE,
                    format!(
                        "receipt {}: {} on hand of {} plus {} would not fit",
                        receipt.receipt_id, level, receipt.sku, receipt.quantity
                    ),
                ));
            }
            // Cancelled by a concurrent change of the SKU's level: SQS tries again.
            return Err(StoreError::retryable(STORE, "stock receipt conflicted with a concurrent change"));
        };
        if get_s(&item, "receiptSku") != Some(receipt.sku.as_str())
            || get_n::<u32>(&item, "quantity") != Some(receipt.quantity)
        {
            // The same receipt id for other goods (an Idempotency-Key reused): never counted twice,
            // never silently dropped.
            return Err(StoreError::permanent(
                STORE,
                format!(
                    "receipt {} was booked for other goods than {} x {}",
                    receipt.receipt_id, receipt.quantity, receipt.sku
                ),
            ));
        }
        let allocated_before = match item.get("allocatedOrders") {
            Some(AttributeValue::Ss(orders)) => orders.clone(),
            _ => vec![],
        };
        Ok(Receipt { counted_now: false, allocated_before })
    }

    async fn backorders(&self, sku: &str) -> Result<Vec<Backorder>, StoreError> {
        let mut found = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.shipments_table)
                .index_name(BACKORDERS_INDEX)
                .key_condition_expression("backlog = :w")
                .expression_attribute_values(":w", s(WAITING))
                .scan_index_forward(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| store_error(STORE, e))?;
            for item in out.items() {
                match Self::parse_backorder(item) {
                    Ok(backorder) if backorder.billed.lines.iter().any(|l| l.sku == sku) => found.push(backorder),
                    Ok(_) => {}
                    // One unreadable record must not hold up every restock: it waits for a human
                    // (and its order for its deadline).
                    Err(e) => {
                        tracing::error!(order_id = get_s(item, "orderId").unwrap_or_default(), error = %e, "unreadable backorder passed by")
                    }
                }
            }
            match out.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        found.sort_by_key(|a| a.waiting_since);
        Ok(found)
    }

    async fn backorder(&self, order_id: &str) -> Result<Option<Backorder>, StoreError> {
        match self.item(&self.shipments_table, ("orderId", order_id)).await? {
            Some(item) if item.contains_key("billed") && get_s(&item, "status") == Some("ALLOCATED") => {
                Self::parse_backorder(&item).map(Some)
            }
            _ => Ok(None),
        }
    }

    async fn allocate_backorder(&self, backorder: &Backorder, receipt_id: Option<&str>) -> Result<bool, StoreError> {
        let order_id = &backorder.billed.order_id;
        let demand = demand(&backorder.billed.lines)?;
        let mut delays = Self::backoff();
        for _ in 1..=ATTEMPTS {
            let (mut items, allocation) = self.taking(&demand)?;
            items.push(
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&self.shipments_table)
                            .key("orderId", s(order_id))
                            .update_expression(
                                "SET #status = :allocated, allocation = :allocation, allocatedAt = :at \
                                 REMOVE backlog",
                            )
                            .condition_expression("#status = :short AND backlog = :waiting")
                            .expression_attribute_names("#status", "status")
                            .expression_attribute_values(":allocated", s("ALLOCATED"))
                            .expression_attribute_values(":allocation", s(allocation))
                            .expression_attribute_values(":at", s(Utc::now().to_rfc3339()))
                            .expression_attribute_values(":short", s("SHORT"))
                            .expression_attribute_values(":waiting", s(WAITING))
                            .build()
                            .map_err(build)?,
                    )
                    .build(),
            );
            if let Some(receipt_id) = receipt_id {
                items.push(
                    TransactWriteItem::builder()
                        .update(
                            Update::builder()
                                .table_name(&self.stock_table)
                                .key("sku", s(receipt_key(receipt_id)))
                                .update_expression("ADD allocatedOrders :order")
                                .condition_expression("attribute_exists(sku)")
                                .expression_attribute_values(":order", AttributeValue::Ss(vec![order_id.clone()]))
                                .build()
                                .map_err(build)?,
                        )
                        .build(),
                );
            }
            if self.transact(items).await? {
                return Ok(true);
            }
            // Cancelled: no longer waiting, or short, or a concurrent change of a SKU.
            match self.recorded(order_id).await? {
                Recorded::Short { waiting: true, .. } => {}
                _ => return Ok(false),
            }
            let levels = self.levels(demand.keys().cloned().collect()).await?;
            if !shortages(&demand, &levels).is_empty() {
                return Ok(false);
            }
            let delay = delays.next().unwrap_or(Duration::from_millis(100));
            tokio::time::sleep(delay).await;
        }
        Err(StoreError::retryable(STORE, format!("backorder {order_id} kept conflicting with concurrent allocations")))
    }

    async fn announced(&self, receipt_id: &str, order_ids: &[String]) -> Result<(), StoreError> {
        if order_ids.is_empty() {
            return Ok(());
        }
        self.client
            .update_item()
            .table_name(&self.stock_table)
            .key("sku", s(receipt_key(receipt_id)))
            .update_expression("DELETE allocatedOrders :orders")
            .condition_expression("attribute_exists(sku)")
            .expression_attribute_values(":orders", AttributeValue::Ss(order_ids.to_vec()))
            .send()
            .await
            .map_err(|e| store_error(STORE, e))?;
        Ok(())
    }

    async fn allocation_stands(&self, order_id: &str) -> Result<bool, StoreError> {
        Ok(matches!(self.recorded(order_id).await?, Recorded::Allocated(_)))
    }

    async fn on_hand(&self, sku: &str) -> Result<u32, StoreError> {
        let item = self.item(&self.stock_table, ("sku", sku)).await?;
        Ok(item.as_ref().and_then(|i| get_n::<u32>(i, "available")).unwrap_or(0))
    }

    async fn release(&self, order_id: &str) -> Result<Release, StoreError> {
        for _ in 0..ATTEMPTS {
            let now = Utc::now().to_rfc3339();
            match self.recorded(order_id).await? {
                Recorded::Cancelled | Recorded::Short { waiting: false, .. } => return Ok(Release::NothingAllocated),
                Recorded::Released(allocation) => return Ok(Release::Released(released_lines(&allocation))),
                Recorded::Nothing => {
                    // Not billed yet (or its OrderBilled is late): a record that says so, so it is
                    // never allocated.
                    let put = self
                        .client
                        .put_item()
                        .table_name(&self.shipments_table)
                        .item("orderId", s(order_id))
                        .item("status", s("CANCELLED"))
                        .item("cancelledAt", s(&now))
                        .condition_expression("attribute_not_exists(orderId)")
                        .send()
                        .await;
                    match put {
                        Ok(_) => return Ok(Release::NothingAllocated),
                        Err(e) if is_conditional_check_failed(&e) => {}
                        Err(e) => return Err(store_error(STORE, e)),
                    }
                }
                Recorded::Short { waiting: true, .. } => {
                    let stop_waiting = self.record_move(order_id, ("SHORT", "CANCELLED"), "cancelledAt", &now, true)?;
                    if self.transact(vec![stop_waiting]).await? {
                        return Ok(Release::NothingAllocated);
                    }
                }
                Recorded::Allocated(allocation) => {
                    let allocation = allocation.ok_or_else(|| {
                        StoreError::permanent(STORE, format!("allocation of {order_id} unreadable: not releasing"))
                    })?;
                    let mut items = Vec::with_capacity(allocation.len() + 1);
                    for (sku, quantity) in &allocation {
                        items.push(self.give_stock(sku, *quantity)?);
                    }
                    items.push(self.record_move(order_id, ("ALLOCATED", "RELEASED"), "releasedAt", &now, false)?);
                    if self.transact(items).await? {
                        return Ok(Release::Released(released_lines(&allocation)));
                    }
                }
            }
            // The record changed under us (a restock, a late OrderBilled): look again.
        }
        Err(StoreError::retryable(STORE, format!("release of {order_id} kept conflicting with concurrent changes")))
    }
}

/// One order's record in the fake.
#[derive(Debug, Clone)]
enum Record {
    Allocated(BTreeMap<String, u32>),
    Short { shortages: Vec<Shortage>, waiting: bool },
    Cancelled,
    Released(BTreeMap<String, u32>),
}

/// The in-memory fake, with the adapter's semantics (all lines or none, a receipt counted once, a
/// backorder allocated only while it waits, stock given back once).
#[derive(Debug, Default)]
pub struct InMemoryStockStore {
    state: Mutex<FakeState>,
}

#[derive(Debug, Default)]
struct FakeState {
    levels: HashMap<String, u32>,
    records: HashMap<String, Record>,
    /// Every backorder's `OrderBilled`, kept after it is allocated (as the item keeps `billed`).
    backorders: HashMap<String, Backorder>,
    receipts: HashMap<String, Vec<String>>,
    receipt_goods: HashMap<String, (String, u32)>,
}

impl FakeState {
    fn take(&mut self, demand: &BTreeMap<String, u32>) -> Result<(), Vec<Shortage>> {
        let shortages = shortages(demand, &self.levels);
        if !shortages.is_empty() {
            return Err(shortages);
        }
        for (sku, q) in demand {
            let level = self.levels.get_mut(sku).expect("checked above");
            *level = level.checked_sub(*q).expect("no shortage: the level covers the demand");
        }
        Ok(())
    }
}

impl InMemoryStockStore {
    /// A warehouse holding these levels.
    pub fn with_levels(levels: &[(&str, u32)]) -> Self {
        let store = Self::default();
        store.set_levels(levels);
        store
    }
    /// Sets these levels.
    pub fn set_levels(&self, levels: &[(&str, u32)]) {
        self.state.lock().expect("lock").levels.extend(levels.iter().map(|(k, v)| (k.to_string(), *v)));
    }
    /// What is on hand for `sku`.
    pub fn level(&self, sku: &str) -> Option<u32> {
        self.state.lock().expect("lock").levels.get(sku).copied()
    }
    /// Whether `order_id` waits for stock.
    pub fn is_waiting(&self, order_id: &str) -> bool {
        matches!(self.state.lock().expect("lock").records.get(order_id), Some(Record::Short { waiting: true, .. }))
    }
}

#[async_trait]
impl StockStore for InMemoryStockStore {
    async fn allocate(&self, billed: &OrderBilled, correlation_id: &str) -> Result<Allocation, StoreError> {
        let demand = demand(&billed.lines)?;
        let mut state = self.state.lock().expect("lock");
        match state.records.get(&billed.order_id) {
            Some(Record::Allocated(_)) => return Ok(Allocation::AlreadyAllocated),
            Some(Record::Short { shortages, .. }) => return Ok(Allocation::Short(shortages.clone())),
            Some(Record::Cancelled | Record::Released(_)) => return Ok(Allocation::Cancelled),
            None => {}
        }
        match state.take(&demand) {
            Ok(()) => {
                state.records.insert(billed.order_id.clone(), Record::Allocated(demand));
                Ok(Allocation::Allocated)
            }
            Err(shortages) => {
                let backorder = Backorder {
                    billed: billed.clone(),
                    correlation_id: correlation_id.to_string(),
                    waiting_since: Utc::now(),
                };
                state.backorders.insert(billed.order_id.clone(), backorder);
                state
                    .records
                    .insert(billed.order_id.clone(), Record::Short { shortages: shortages.clone(), waiting: true });
                Ok(Allocation::Short(shortages))
            }
        }
    }

    async fn receive(&self, receipt: &StockReceived) -> Result<Receipt, StoreError> {
        let mut state = self.state.lock().expect("lock");
        if let Some(allocated) = state.receipts.get(&receipt.receipt_id) {
            if state.receipt_goods.get(&receipt.receipt_id) != Some(&(receipt.sku.clone(), receipt.quantity)) {
                return Err(StoreError::permanent(
                    STORE,
                    format!("receipt {} was booked for other goods", receipt.receipt_id),
                ));
            }
            return Ok(Receipt { counted_now: false, allocated_before: allocated.clone() });
        }
        let level = state.levels.entry(receipt.sku.clone()).or_insert(0);
        *level = level
            .checked_add(receipt.quantity)
            .ok_or_else(|| StoreError::permanent(STORE, format!("the level of {} overflows", receipt.sku)))?;
        state.receipts.insert(receipt.receipt_id.clone(), vec![]);
        state.receipt_goods.insert(receipt.receipt_id.clone(), (receipt.sku.clone(), receipt.quantity));
        Ok(Receipt { counted_now: true, allocated_before: vec![] })
    }

    async fn backorders(&self, sku: &str) -> Result<Vec<Backorder>, StoreError> {
        let state = self.state.lock().expect("lock");
        let mut found: Vec<Backorder> = state
            .backorders
            .values()
            .filter(|b| matches!(state.records.get(&b.billed.order_id), Some(Record::Short { waiting: true, .. })))
            .filter(|b| b.billed.lines.iter().any(|l| l.sku == sku))
            .cloned()
            .collect();
        found.sort_by_key(|a| a.waiting_since);
        Ok(found)
    }

    async fn backorder(&self, order_id: &str) -> Result<Option<Backorder>, StoreError> {
        let state = self.state.lock().expect("lock");
        match state.records.get(order_id) {
            Some(Record::Allocated(_)) => Ok(state.backorders.get(order_id).cloned()),
            _ => Ok(None),
        }
    }

    async fn allocate_backorder(&self, backorder: &Backorder, receipt_id: Option<&str>) -> Result<bool, StoreError> {
        let order_id = &backorder.billed.order_id;
        let demand = demand(&backorder.billed.lines)?;
        let mut state = self.state.lock().expect("lock");
        if !matches!(state.records.get(order_id), Some(Record::Short { waiting: true, .. })) {
            return Ok(false);
        }
        if receipt_id.is_some_and(|r| !state.receipts.contains_key(r)) {
            return Err(StoreError::permanent(STORE, format!("no receipt {receipt_id:?}")));
        }
        if state.take(&demand).is_err() {
            return Ok(false);
        }
        state.records.insert(order_id.clone(), Record::Allocated(demand));
        if let Some(receipt_id) = receipt_id {
            state.receipts.get_mut(receipt_id).expect("checked above").push(order_id.clone());
        }
        Ok(true)
    }

    async fn announced(&self, receipt_id: &str, order_ids: &[String]) -> Result<(), StoreError> {
        let mut state = self.state.lock().expect("lock");
        let Some(allocated) = state.receipts.get_mut(receipt_id) else {
            return Err(StoreError::permanent(STORE, format!("no receipt {receipt_id}")));
        };
        allocated.retain(|o| !order_ids.contains(o));
        Ok(())
    }

    async fn allocation_stands(&self, order_id: &str) -> Result<bool, StoreError> {
        Ok(matches!(self.state.lock().expect("lock").records.get(order_id), Some(Record::Allocated(_))))
    }

    async fn on_hand(&self, sku: &str) -> Result<u32, StoreError> {
        Ok(self.state.lock().expect("lock").levels.get(sku).copied().unwrap_or(0))
    }

    async fn release(&self, order_id: &str) -> Result<Release, StoreError> {
        let mut state = self.state.lock().expect("lock");
        match state.records.get(order_id).cloned() {
            None => {
                state.records.insert(order_id.to_string(), Record::Cancelled);
                Ok(Release::NothingAllocated)
            }
            Some(Record::Cancelled) => Ok(Release::NothingAllocated),
            Some(Record::Short { .. }) => {
                state.records.insert(order_id.to_string(), Record::Cancelled);
                Ok(Release::NothingAllocated)
            }
            Some(Record::Released(allocation)) => Ok(Release::Released(released_lines(&allocation))),
            Some(Record::Allocated(allocation)) => {
                for (sku, q) in &allocation {
                    let level = state.levels.entry(sku.clone()).or_insert(0);
                    *level = level.checked_add(*q).ok_or_else(|| {
                        StoreError::permanent(STORE, format!("giving back {q} of {sku} overflows its level"))
                    })?;
                }
                state.records.insert(order_id.to_string(), Record::Released(allocation.clone()));
                Ok(Release::Released(released_lines(&allocation)))
            }
        }
    }
}
