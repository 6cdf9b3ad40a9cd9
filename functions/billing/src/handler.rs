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
//!    PENDING ─► cancelRequested on the invoice (a charge is in flight): done here; the OrderPlaced
//!               handler that settles the charge sees the mark and refunds (PaymentRefunded)
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
    inbound, Envelope, Metadata, OrderBilled, OrderCancelled, OrderPlaced, PaymentDeclined, PaymentRefunded,
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
        let mut invoice = self
            .invoices
            .create_or_get(Invoice {
                invoice_id: format!("inv-{}", cancelled.order_id),
                order_id: cancelled.order_id.clone(),
                amount_minor: cancelled.total_minor,
                currency: cancelled.currency,
                status: InvoiceStatus::Voided,
                cancel_requested: false,
            })
            .await?;
        if invoice.status == InvoiceStatus::Pending {
            // A charge in flight: marked only while still pending, so either its handler sees the
            // mark when it settles and refunds, or it settled first and the refund is done here.
            invoice = self.invoices.request_cancel(&cancelled.order_id).await?;
            if invoice.status == InvoiceStatus::Pending {
                info!(order_id = %cancelled.order_id, invoice_id = %invoice.invoice_id, "cancelled while its charge is in flight; the charge's settlement refunds it");
                return Ok(());
            }
        }
        let event = self.compensate(&invoice, &ctx.metadata).await?;
        self.publisher.publish(vec![event]).await?;
        Ok(())
    }

    /// Refunds a cancelled order's invoice (at most once) and says so: `PaymentRefunded`, caused by
    /// `cause`.
    async fn compensate(&self, invoice: &Invoice, cause: &Metadata) -> Result<OutboundEvent, HandlerError> {
        let (amount_minor, refund_reference) = match refund_step(invoice) {
            RefundDecision::Refuse(reason) => return Err(HandlerError::Permanent(reason)),
            RefundDecision::Wait(reason) => return Err(HandlerError::retryable(reason)),
            RefundDecision::Announce { amount_minor, refund_reference } => (amount_minor, refund_reference),
            RefundDecision::Refund(refund) => {
                let reference = self.payments.refund(&refund).await.map_err(HandlerError::retryable)?;
                match self.invoices.refunded(&invoice.order_id, &reference).await? {
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
        info!(order_id = %invoice.order_id, invoice_id = %invoice.invoice_id, amount_minor, "cancelled order settled");
        // One PaymentRefunded per invoice, whichever path announces it (the cancellation, or a
        // redelivered OrderPlaced that finds the invoice refunded): the same event id.
        Ok(OutboundEvent::from_envelope(&Envelope::once_per(
            cause,
            PaymentRefunded {
                order_id: invoice.order_id.clone(),
                invoice_id: invoice.invoice_id.clone(),
                amount_minor,
                currency: invoice.currency,
                refund_reference,
                refunded_at: Utc::now(),
            },
            &invoice.invoice_id,
        )))
    }

    async fn bill(&self, order: OrderPlaced, ctx: &RecordContext) -> Result<(), HandlerError> {
        if let Some(reason) = unbillable(&order) {
            return Err(HandlerError::Permanent(reason));
        }
        let order_id = order.order_id.clone();
        let invoice = self
            .invoices
            .create_or_get(Invoice {
                invoice_id: format!("inv-{}", order.order_id),
                order_id: order.order_id.clone(),
                amount_minor: order.totals.total_minor,
                currency: order.currency,
                status: InvoiceStatus::Pending,
                cancel_requested: false,
            })
            .await?;

        let mut cancel_requested = invoice.cancel_requested;
        let status = match decide(&order, &invoice) {
            Decision::Refuse(reason) => return Err(HandlerError::Permanent(reason)),
            Decision::Cancelled => {
                info!(order_id = %order.order_id, invoice_id = %invoice.invoice_id, "order cancelled before billing; not charging");
                return Ok(());
            }
            Decision::Announce(settled) => settled,
            Decision::Charge(charge) => {
                let outcome = self.payments.charge(&charge).await.map_err(HandlerError::retryable)?;
                let status = self.invoices.settle(&order.order_id, &settlement(outcome)).await?;
                // Cancelled while the charge was in flight? (Marked only while pending, so this
                // read after settling sees any mark.)
                cancel_requested = self.invoices.get(&order.order_id).await?.is_some_and(|i| i.cancel_requested);
                status
            }
        };

        // Refunded (the order was cancelled, this charge given back): announce the charge for the
        // books, and the refund again below.
        let status = match status {
            InvoiceStatus::Refunded { payment_reference, .. } => {
                cancel_requested = true;
                InvoiceStatus::Paid { payment_reference }
            }
            other => other,
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
        let mut events = vec![event];
        if cancel_requested {
            // The order was cancelled while this charge was in flight: the refund is this
            // handler's to give (the cancellation's handler left it here).
            let settled =
                self.invoices.get(&order_id).await?.ok_or_else(|| {
                    HandlerError::Permanent(format!("the invoice of {order_id} vanished after settling"))
                })?;
            events.push(self.compensate(&settled, &ctx.metadata).await?);
        }
        self.publisher.publish(events).await?;
        Ok(())
    }
}
