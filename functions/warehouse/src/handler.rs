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
//! and the order, and the receipt remembers the orders it allocated, so a redelivery after a crash
//! announces the same labels again, and no order is allocated twice.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use orderflow_contracts::{
    inbound, Envelope, Metadata, OrderBilled, OrderCancelled, ShippingLabelCreated, StockAllocationFailed,
    StockReceived, StockReleased,
};
use orderflow_harness::{EventPublisher, Handler, HandlerError, OutboundEvent, RecordContext};
use tracing::info;
use uuid::Uuid;

use crate::labels::{Label, LabelStore};
use crate::stock::{demand, Allocation, Release, StockStore};

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

    /// Stores the order's label and says so.
    async fn label(&self, billed: &OrderBilled) -> Result<ShippingLabelCreated, HandlerError> {
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
        info!(order_id = %billed.order_id, tracking_number = %label.tracking_number, key = %stored.key, "stock allocated, label created");
        Ok(ShippingLabelCreated {
            order_id: label.order_id,
            shipment_id: label.shipment_id,
            carrier: label.carrier,
            tracking_number: label.tracking_number,
            label_bucket: stored.bucket,
            label_key: stored.key,
            created_at: Utc::now(),
        })
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
            Allocation::Allocated | Allocation::AlreadyAllocated => {
                // One ShippingLabelCreated per order, whether its payment or a restock allocated
                // it: a redelivered OrderBilled announces the same event again.
                OutboundEvent::from_envelope(&Envelope::once_per(cause, self.label(&billed).await?, &billed.order_id))
            }
        };
        self.publisher.publish(vec![event]).await?;
        Ok(())
    }

    async fn received(&self, received: StockReceived, cause: &Metadata) -> Result<(), HandlerError> {
        let receipt = self.stock.receive(&received).await?;
        info!(receipt_id = %received.receipt_id, sku = %received.sku, quantity = received.quantity, counted_now = receipt.counted_now, "stock received");
        let mut shipped = Vec::new();
        // Orders this receipt allocated before a crash: announced again, under the same ids, unless
        // cancelled and released since (their label is gone and must stay gone).
        for order_id in &receipt.allocated_before {
            match self.stock.backorder(order_id).await? {
                Some(backorder) => shipped.push(backorder),
                None => info!(order_id = %order_id, "allocated by this receipt, released since: not announced"),
            }
        }
        let mut more_waiting = false;
        for backorder in self.stock.backorders(&received.sku).await? {
            if !orderflow_harness::deadline::allows(Duration::ZERO, Duration::from_secs(2)) {
                more_waiting = true;
                break;
            }
            if self.stock.allocate_backorder(&backorder, Some(&received.receipt_id)).await? {
                info!(order_id = %backorder.billed.order_id, waiting_since = %backorder.waiting_since, "backorder allocated");
                shipped.push(backorder);
            }
        }
        let mut events = Vec::with_capacity(shipped.len());
        for backorder in &shipped {
            let created = self.label(&backorder.billed).await?;
            let mut envelope = Envelope::once_per(cause, created, &backorder.billed.order_id);
            // Caused by the receipt, part of the order's own flow: its logs and timeline join it.
            if !backorder.correlation_id.is_empty() {
                envelope.metadata.correlation_id = backorder.correlation_id.clone();
            }
            events.push(OutboundEvent::from_envelope(&envelope));
        }
        if !events.is_empty() {
            self.publisher.publish(events).await?;
        }
        if more_waiting {
            // What is announced stays announced; the redelivery picks up the rest of the backlog.
            return Err(HandlerError::retryable(format!(
                "receipt {}: more backorders than one invocation's time allows",
                received.receipt_id
            )));
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
