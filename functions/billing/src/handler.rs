//! Billing's steps of the workflow: on `OrderPlaced`, bill the order; on `OrderCancelled`, refund it.
//!
//! ```text
//! OrderPlaced ─► billable? (total > 0) ─► invoice (one per order) ─► decide (crate::decision)
//!    Charge ─► provider (idempotent per invoice) ─► settle if still pending ─► outcome that stands
//!    Announce (settled before) ─┘
//!    Refuse (unknown status, mismatch) ─► dead-letter queue, never charged
//!             ─► OrderBilled (carries lines + address for Warehouse) | PaymentDeclined
//! ```
//!
//! ```text
//! OrderCancelled ─► the order's invoice (a voided one if none yet: a late OrderPlaced never charges)
//!    PAID ─► refund (idempotent per invoice) ─► REFUNDED if still PAID ─► PaymentRefunded (amount)
//!    REFUNDED ─┘ (a redelivery: announce again)
//!    VOIDED | DECLINED ─► PaymentRefunded (0: nothing was taken)
//!    PENDING ─► retry later (a charge may be in flight; its outcome decides)
//! ```
//!
//! Every step is safe to repeat: the invoice is keyed by order, the charge is keyed by invoice, the
//! outcome is written only over a pending invoice, and the event published is derived from the cause,
//! so a retry after any failure (even a crash between charge and settle) publishes the same event once
//! more and takes the money once.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use orderflow_contracts::{
    inbound, Envelope, OrderBilled, OrderCancelled, OrderPlaced, PaymentDeclined, PaymentRefunded,
};
use orderflow_harness::{EventPublisher, Handler, HandlerError, OutboundEvent, RecordContext};
use tracing::info;

use crate::decision::{decide, refund_step, settlement, unbillable, Decision, RefundDecision};
use crate::invoices::{Invoice, InvoiceStatus, InvoiceStore};
use crate::payments::PaymentGateway;

inbound! {
    /// What Billing listens to.
    pub enum BillingInput {
        Placed(OrderPlaced),
        Cancelled(OrderCancelled),
    }
}

/// How long a refund waits for a charge in flight before looking again.
const PENDING_RETRY: std::time::Duration = std::time::Duration::from_secs(30);

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
impl Handler<BillingInput> for Billing {
    async fn handle(&self, event: BillingInput, ctx: &RecordContext) -> Result<(), HandlerError> {
        match event {
            BillingInput::Placed(order) => self.bill(order, ctx).await,
            BillingInput::Cancelled(cancelled) => self.refund(cancelled, ctx).await,
        }
    }
}

impl Billing {
    async fn refund(&self, cancelled: OrderCancelled, ctx: &RecordContext) -> Result<(), HandlerError> {
        // Not billed yet: a voided invoice takes its place, so the order's OrderPlaced, however late,
        // finds it and never charges.
        let invoice = self
            .invoices
            .create_or_get(Invoice {
                invoice_id: format!("inv-{}", cancelled.order_id),
                order_id: cancelled.order_id.clone(),
                amount_minor: cancelled.total_minor,
                currency: cancelled.currency,
                status: InvoiceStatus::Voided,
            })
            .await?;
        let (amount_minor, refund_reference) = match refund_step(&invoice) {
            RefundDecision::Refuse(reason) => return Err(HandlerError::Permanent(reason)),
            RefundDecision::Wait(reason) => return Err(HandlerError::RetryAfter { reason, after: PENDING_RETRY }),
            RefundDecision::Announce { amount_minor, refund_reference } => (amount_minor, refund_reference),
            RefundDecision::Refund(refund) => {
                let reference = self.payments.refund(&refund).await.map_err(HandlerError::retryable)?;
                match self.invoices.refunded(&cancelled.order_id, &reference).await? {
                    InvoiceStatus::Refunded { refund_reference, .. } => (refund.amount_minor, Some(refund_reference)),
                    other => {
                        return Err(HandlerError::Permanent(format!(
                            "invoice {} is {other:?} after its refund",
                            invoice.invoice_id
                        )))
                    }
                }
            }
        };
        info!(order_id = %cancelled.order_id, invoice_id = %invoice.invoice_id, amount_minor, "cancelled order settled");
        let event = OutboundEvent::from_envelope(&Envelope::caused_by(
            &ctx.metadata,
            PaymentRefunded {
                order_id: cancelled.order_id,
                invoice_id: invoice.invoice_id,
                amount_minor,
                currency: invoice.currency,
                refund_reference,
                refunded_at: Utc::now(),
            },
        ));
        self.publisher.publish(vec![event]).await?;
        Ok(())
    }

    async fn bill(&self, order: OrderPlaced, ctx: &RecordContext) -> Result<(), HandlerError> {
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
            Decision::Cancelled => {
                info!(order_id = %order.order_id, invoice_id = %invoice.invoice_id, "order cancelled before billing; not charging");
                return Ok(());
            }
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
