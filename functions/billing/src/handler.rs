//! Billing's step of the workflow: on `OrderPlaced`, bill the order.
//!
//! ```text
//! OrderPlaced ─► billable? (total > 0) ─► invoice (one per order) ─► decide (crate::decision)
//!    Charge ─► provider (idempotent per invoice) ─► settle if still pending ─► outcome that stands
//!    Announce (settled before) ─┘
//!    Refuse (unknown status, mismatch) ─► dead-letter queue, never charged
//!             ─► OrderBilled (carries lines + address for Warehouse) | PaymentDeclined
//! ```
//!
//! Every step is safe to repeat: the invoice is keyed by order, the charge is keyed by invoice, the
//! outcome is written only over a pending invoice, and the event published is derived from the cause,
//! so a retry after any failure (even a crash between charge and settle) publishes the same event once
//! more and takes the money once.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use orderflow_contracts::{Envelope, OrderBilled, OrderPlaced, PaymentDeclined};
use orderflow_harness::{EventPublisher, Handler, HandlerError, OutboundEvent, RecordContext};
use tracing::info;

use crate::decision::{decide, settlement, unbillable, Decision};
use crate::invoices::{Invoice, InvoiceStatus, InvoiceStore};
use crate::payments::PaymentGateway;

/// The handler: invoices, payments, publisher.
pub struct Billing {
    invoices: Arc<dyn InvoiceStore>,
    payments: Arc<dyn PaymentGateway>,
    publisher: Arc<dyn EventPublisher>,
}

impl Billing {
    /// The handler over its ports.
    pub fn new(
        invoices: Arc<dyn InvoiceStore>,
        payments: Arc<dyn PaymentGateway>,
        publisher: Arc<dyn EventPublisher>,
    ) -> Self {
        Self { invoices, payments, publisher }
    }
}

#[async_trait]
impl Handler<OrderPlaced> for Billing {
    async fn handle(&self, order: OrderPlaced, ctx: &RecordContext) -> Result<(), HandlerError> {
        if let Some(reason) = unbillable(&order) {
            return Err(HandlerError::Permanent(reason));
        }
        let invoice = self
            .invoices
            .create_or_get(Invoice {
                invoice_id: format!("inv-{}", order.order_id),
                order_id: order.order_id.clone(),
                amount_minor: order.totals.total_minor,
                currency: order.currency,
                status: InvoiceStatus::Pending,
            })
            .await?;

        let status = match decide(&order, &invoice) {
            Decision::Refuse(reason) => return Err(HandlerError::Permanent(reason)),
            Decision::Announce(settled) => settled,
            Decision::Charge(charge) => {
                let outcome = self.payments.charge(&charge).await.map_err(HandlerError::retryable)?;
                self.invoices.settle(&order.order_id, &settlement(outcome)).await?
            }
        };

        let event = match status {
            InvoiceStatus::Paid { payment_reference } => {
                info!(order_id = %order.order_id, invoice_id = %invoice.invoice_id, amount_minor = invoice.amount_minor, "order billed");
                OutboundEvent::from_envelope(&Envelope::caused_by(
                    &ctx.metadata,
                    OrderBilled {
                        order_id: order.order_id,
                        invoice_id: invoice.invoice_id,
                        amount_minor: invoice.amount_minor,
                        currency: invoice.currency,
                        payment_reference,
                        lines: order.lines,
                        customer_name: order.customer.name,
                        shipping_address: order.shipping_address,
                        billed_at: Utc::now(),
                    },
                ))
            }
            InvoiceStatus::Declined { reason } => {
                info!(order_id = %order.order_id, invoice_id = %invoice.invoice_id, %reason, "payment declined");
                OutboundEvent::from_envelope(&Envelope::caused_by(
                    &ctx.metadata,
                    PaymentDeclined {
                        order_id: order.order_id,
                        invoice_id: invoice.invoice_id,
                        amount_minor: invoice.amount_minor,
                        currency: invoice.currency,
                        reason,
                        declined_at: Utc::now(),
                    },
                ))
            }
            other => {
                return Err(HandlerError::Permanent(format!(
                    "invoice {} settled as {other:?}: not announcing",
                    invoice.invoice_id
                )))
            }
        };
        self.publisher.publish(vec![event]).await?;
        Ok(())
    }
}
