//! Warehouse's steps of the workflow.
//!
//! ```text
//! OrderBilled ─► allocate all lines (or none) ─► Allocated / AlreadyAllocated ─► label in S3
//!                                                      ─► ShippingLabelCreated
//!                                             └► Short ─► StockAllocationFailed (nothing allocated;
//!                                                          the order waits as a backorder)
//!                                             └► Cancelled (cancelled before billing) ─► nothing
//! StockReceived ─► count the receipt once ─► waiting backorders of the SKU, oldest first:
//!                  each allocated whole (all lines or none) ─► label ─► ShippingLabelCreated
//! OrderCancelled ─► give back what was allocated, remove its label ─► StockReleased; stop waiting;
//!                   never allocate later
//! ```
//!
//! A restock may ship many backorders; each `ShippingLabelCreated` has an id derived from the receipt
//! and the order, and the receipt remembers the orders it allocated and has not announced, so a
//! redelivery after a crash, or after the invocation's time ran out, announces what was not yet
//! announced under the same ids, and no order is allocated twice. The backorders are announced ten
//! at a time as they are allocated, so a long backlog moves forward one invocation after another.
//! Once the received SKU runs out, the backorders further down the list are not tried.
//!
//! A label is written after its allocation; a cancellation releases the allocation and then removes
//! the label; so the label's writer reads the allocation again after writing, and removes the label
//! it wrote for an order released in between.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use orderflow_contracts::{
    inbound, Envelope, Metadata, OrderBilled, OrderCancelled, ShippingLabelCreated, StockAllocationFailed,
    StockReceived, StockReleased,
};
use orderflow_harness::publisher::MAX_ENTRIES;
use orderflow_harness::{EventPublisher, Handler, HandlerError, OutboundEvent, RecordContext};
use tracing::info;
use uuid::Uuid;

use crate::labels::{Label, LabelStore};
use crate::stock::{demand, Allocation, Backorder, Release, StockStore};

/// The carrier every label is made out for.
pub const CARRIER: &str = "OrderflowPost";

/// A stable tracking number per order, so a retried label is the same label.
pub fn tracking_number(order_id: &str) -> String {
    let hash = Uuid::new_v5(&Uuid::NAMESPACE_OID, order_id.as_bytes()).simple().to_string().to_uppercase();
    format!("OF{}GB", &hash[..10])
}

inbound! {
    /// What Warehouse listens to.
    pub enum WarehouseInput {
        Billed(OrderBilled),
        Received(StockReceived),
        Cancelled(OrderCancelled),
    }
}

/// A receipt's announcements not yet published, and the orders they settle (with those settled
/// without one: released since they were allocated).
struct Announcing<'a> {
    receipt_id: &'a str,
    cause: &'a Metadata,
    events: Vec<OutboundEvent>,
    orders: Vec<String>,
}

impl<'a> Announcing<'a> {
    fn new(receipt_id: &'a str, cause: &'a Metadata) -> Self {
        Self { receipt_id, cause, events: Vec::new(), orders: Vec::new() }
    }
}

/// The handler: stock, labels, publisher.
pub struct Warehouse {
    stock: Arc<dyn StockStore>,
    labels: Arc<dyn LabelStore>,
    publisher: Arc<dyn EventPublisher>,
}

impl Warehouse {
    /// The handler over its ports.
    pub fn new(stock: Arc<dyn StockStore>, labels: Arc<dyn LabelStore>, publisher: Arc<dyn EventPublisher>) -> Self {
        Self { stock, labels, publisher }
    }

    /// Stores the order's label and says so; `None` when the order was released (cancelled) while
    /// its label was written: the label is removed again and nothing is announced.
    ///
    /// A cancellation releases the allocation first and removes the label after, so reading the
    /// allocation after the label is written closes the gap: either this read sees it released, or
    /// the release's removal comes after this label was written.
    async fn label(&self, billed: &OrderBilled) -> Result<Option<ShippingLabelCreated>, HandlerError> {
        let label = Label {
            order_id: billed.order_id.clone(),
            shipment_id: format!("shp-{}", billed.order_id),
            carrier: CARRIER.into(),
            tracking_number: tracking_number(&billed.order_id),
            recipient: billed.customer_name.clone(),
            address: billed.shipping_address.clone(),
            contents: demand(&billed.lines)?.into_iter().collect(),
        };
        let stored = self.labels.put(&label).await?;
        if !self.stock.allocation_stands(&billed.order_id).await? {
            self.labels.remove(&billed.order_id).await?;
            info!(order_id = %billed.order_id, "released while its label was written: label removed, not announced");
            return Ok(None);
        }
        info!(order_id = %billed.order_id, tracking_number = %label.tracking_number, key = %stored.key, "stock allocated, label created");
        Ok(Some(ShippingLabelCreated {
            order_id: label.order_id,
            shipment_id: label.shipment_id,
            carrier: label.carrier,
            tracking_number: label.tracking_number,
            label_bucket: stored.bucket,
            label_key: stored.key,
            created_at: Utc::now(),
        }))
    }

    async fn billed(&self, billed: OrderBilled, cause: &Metadata) -> Result<(), HandlerError> {
        let event = match self.stock.allocate(&billed, &cause.correlation_id).await? {
            Allocation::Cancelled => {
                info!(order_id = %billed.order_id, "order cancelled before allocation; nothing to do");
                return Ok(());
            }
            Allocation::Short(shortages) => {
                info!(order_id = %billed.order_id, short = shortages.len(), "stock short; nothing allocated, backordered");
                OutboundEvent::from_envelope(&Envelope::caused_by(
                    cause,
                    StockAllocationFailed { order_id: billed.order_id, shortages, failed_at: Utc::now() },
                ))
            }
            Allocation::Allocated | Allocation::AlreadyAllocated => match self.label(&billed).await? {
                // One ShippingLabelCreated per order, whether its payment or a restock allocated
                // it: a redelivered OrderBilled announces the same event again.
                Some(created) => OutboundEvent::from_envelope(&Envelope::once_per(cause, created, &billed.order_id)),
                None => return Ok(()),
            },
        };
        self.publisher.publish(vec![event]).await?;
        Ok(())
    }

    async fn received(&self, received: StockReceived, cause: &Metadata) -> Result<(), HandlerError> {
        let receipt = self.stock.receive(&received).await?;
        info!(receipt_id = %received.receipt_id, sku = %received.sku, quantity = received.quantity, counted_now = receipt.counted_now, "stock received");
        // Time for one more order: its allocation, its label and the announcement of up to a full
        // PutEvents call of them. Checked before each order, so what was done is announced and
        // recorded before Lambda's deadline, and the redelivery goes on from there.
        let time_for_one_more = || orderflow_harness::deadline::allows(Duration::ZERO, Duration::from_secs(2));
        let mut announcing = Announcing::new(&received.receipt_id, cause);
        let mut out_of_time = false;
        // Orders this receipt allocated but did not announce (a crash, or its time ran out): labelled
        // and announced again, under the same ids, unless cancelled and released since (their label
        // is gone and must stay gone).
        for order_id in &receipt.allocated_before {
            if !time_for_one_more() {
                out_of_time = true;
                break;
            }
            match self.stock.backorder(order_id).await? {
                Some(backorder) => self.announce(&mut announcing, &backorder).await?,
                None => {
                    info!(order_id = %order_id, "allocated by this receipt, released since: not announced");
                    // Settled: off the receipt's list with the next announcements.
                    announcing.orders.push(order_id.clone());
                }
            }
        }
        if !out_of_time {
            for backorder in self.stock.backorders(&received.sku).await? {
                if !time_for_one_more() {
                    out_of_time = true;
                    break;
                }
                if self.stock.allocate_backorder(&backorder, Some(&received.receipt_id)).await? {
                    info!(order_id = %backorder.billed.order_id, waiting_since = %backorder.waiting_since, "backorder allocated");
                    self.announce(&mut announcing, &backorder).await?;
                } else if self.stock.on_hand(&received.sku).await? == 0 {
                    // Every backorder passed here needs this SKU: none further can be allocated now.
                    break;
                }
            }
        }
        self.flush(&mut announcing).await?;
        if out_of_time {
            // What is announced stays announced; the redelivery picks up the rest of the backlog.
            return Err(HandlerError::retryable(format!(
                "receipt {}: more backorders than one invocation's time allows",
                received.receipt_id
            )));
        }
        Ok(())
    }

    /// Labels an order a receipt allocated and queues its announcement, sent with up to a full
    /// `PutEvents` call of others.
    async fn announce(&self, announcing: &mut Announcing<'_>, backorder: &Backorder) -> Result<(), HandlerError> {
        let Some(created) = self.label(&backorder.billed).await? else {
            // Released while labelled: nothing to announce, and off the receipt's list.
            announcing.orders.push(backorder.billed.order_id.clone());
            return Ok(());
        };
        let mut envelope = Envelope::once_per(announcing.cause, created, &backorder.billed.order_id);
        // Caused by the receipt, part of the order's own flow: its logs and timeline join it.
        if !backorder.correlation_id.is_empty() {
            envelope.metadata.correlation_id = backorder.correlation_id.clone();
        }
        announcing.events.push(OutboundEvent::from_envelope(&envelope));
        announcing.orders.push(backorder.billed.order_id.clone());
        if announcing.events.len() >= MAX_ENTRIES {
            self.flush(announcing).await?;
        }
        Ok(())
    }

    /// Publishes the queued announcements, then takes their orders (and those settled without one)
    /// off the receipt's list.
    async fn flush(&self, announcing: &mut Announcing<'_>) -> Result<(), HandlerError> {
        if !announcing.events.is_empty() {
            self.publisher.publish(std::mem::take(&mut announcing.events)).await?;
        }
        if !announcing.orders.is_empty() {
            self.stock.announced(announcing.receipt_id, &std::mem::take(&mut announcing.orders)).await?;
        }
        Ok(())
    }

    async fn cancelled(&self, cancelled: OrderCancelled, cause: &Metadata) -> Result<(), HandlerError> {
        match self.stock.release(&cancelled.order_id).await? {
            Release::NothingAllocated => {
                info!(order_id = %cancelled.order_id, "order cancelled; nothing was allocated");
                Ok(())
            }
            Release::Released(lines) => {
                // The parcel must not leave: its label goes with the allocation.
                self.labels.remove(&cancelled.order_id).await?;
                info!(order_id = %cancelled.order_id, skus = lines.len(), "order cancelled; stock released, label removed");
                let released = StockReleased { order_id: cancelled.order_id, lines, released_at: Utc::now() };
                self.publisher
                    .publish(vec![OutboundEvent::from_envelope(&Envelope::caused_by(cause, released))])
                    .await?;
                Ok(())
            }
        }
    }
}

#[async_trait]
impl Handler<WarehouseInput> for Warehouse {
    async fn handle(&self, event: WarehouseInput, ctx: &RecordContext) -> Result<(), HandlerError> {
        match event {
            WarehouseInput::Billed(billed) => self.billed(billed, &ctx.metadata).await,
            WarehouseInput::Received(received) => self.received(received, &ctx.metadata).await,
            WarehouseInput::Cancelled(cancelled) => self.cancelled(cancelled, &ctx.metadata).await,
        }
    }
}
