//! Warehouse's step of the workflow: on `OrderBilled`, allocate and label.
//!
//! ```text
//! OrderBilled ─► allocate all lines (or none) ─► Allocated / AlreadyAllocated ─► label in S3
//!                                                      ─► ShippingLabelCreated
//!                                             └► Short ─► StockAllocationFailed (nothing allocated)
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use orderflow_contracts::{Envelope, OrderBilled, ShippingLabelCreated, StockAllocationFailed};
use orderflow_harness::{EventPublisher, Handler, HandlerError, OutboundEvent, RecordContext};
use tracing::info;
use uuid::Uuid;

use crate::labels::{Label, LabelStore};
use crate::stock::{demand, Allocation, StockStore};

/// The carrier every label is made out for.
pub const CARRIER: &str = "OrderflowPost";

/// A stable tracking number per order, so a retried label is the same label.
pub fn tracking_number(order_id: &str) -> String {
    let hash = Uuid::new_v5(&Uuid::NAMESPACE_OID, order_id.as_bytes()).simple().to_string().to_uppercase();
    format!("OF{}GB", &hash[..10])
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
}

#[async_trait]
impl Handler<OrderBilled> for Warehouse {
    async fn handle(&self, billed: OrderBilled, ctx: &RecordContext) -> Result<(), HandlerError> {
        let allocation = self.stock.allocate(&billed.order_id, &billed.lines).await?;
        let event = match allocation {
            Allocation::Short(shortages) => {
                info!(order_id = %billed.order_id, short = shortages.len(), "stock short; nothing allocated");
                OutboundEvent::from_envelope(&Envelope::caused_by(
                    &ctx.metadata,
                    StockAllocationFailed { order_id: billed.order_id, shortages, failed_at: Utc::now() },
                ))
            }
            Allocation::Allocated | Allocation::AlreadyAllocated => {
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
                OutboundEvent::from_envelope(&Envelope::caused_by(
                    &ctx.metadata,
                    ShippingLabelCreated {
                        order_id: label.order_id,
                        shipment_id: label.shipment_id,
                        carrier: label.carrier,
                        tracking_number: label.tracking_number,
                        label_bucket: stored.bucket,
                        label_key: stored.key,
                        created_at: Utc::now(),
                    },
                ))
            }
        };
        self.publisher.publish(vec![event]).await?;
        Ok(())
    }
}
