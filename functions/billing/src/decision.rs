//! Billing's rules as plain functions over plain types: what to do with an order given its invoice,
//! and what an outcome means. No port, no SDK: the handler does the I/O around them.

use orderflow_contracts::OrderPlaced;

use crate::invoices::{Invoice, InvoiceStatus};
use crate::payments::{Charge, ChargeOutcome, Refund};

/// What to do next for an order and its invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is settled yet: charge (the invoice id is the provider's idempotency key).
    Charge(Charge),
    /// The outcome is recorded: announce it again (a redelivery after a crash before publishing).
    Announce(InvoiceStatus),
    /// The order was cancelled before billing (a voided invoice): nothing to charge or announce.
    Cancelled,
    /// Never charge: the reason goes with the record to the dead-letter queue, for a human.
    Refuse(String),
}

/// Why an order is not billable at all (checked before an invoice is created).
pub fn unbillable(order: &OrderPlaced) -> Option<String> {
    (order.totals.total_minor <= 0).then(|| {
        format!(
            "order {} has a total of {}; only a positive total is charged",
            order.order_id, order.totals.total_minor
        )
    })
}

/// The next step for `order`, whose invoice is `invoice`. Fails closed: an invoice that does not
/// match the order, or whose status is unknown, is never charged.
pub fn decide(order: &OrderPlaced, invoice: &Invoice) -> Decision {
    if invoice.status == InvoiceStatus::Voided {
        return Decision::Cancelled;
    }
    if invoice.amount_minor != order.totals.total_minor || invoice.currency != order.currency {
        return Decision::Refuse(format!(
            "invoice {} is for {} {:?}, the order totals {} {:?}",
            invoice.invoice_id, invoice.amount_minor, invoice.currency, order.totals.total_minor, order.currency
        ));
    }
    match &invoice.status {
        InvoiceStatus::Pending => Decision::Charge(Charge {
            invoice_id: invoice.invoice_id.clone(),
            amount_minor: invoice.amount_minor,
            currency: invoice.currency,
            customer_email: order.customer.email.clone(),
        }),
        // Refunded: announced again as billed and refunded (a redelivery after the refund whose
        // announcement was lost must not leave the order waiting for it).
        settled @ (InvoiceStatus::Paid { .. } | InvoiceStatus::Declined { .. } | InvoiceStatus::Refunded { .. }) => {
            Decision::Announce(settled.clone())
        }
        InvoiceStatus::Voided => Decision::Cancelled,
        InvoiceStatus::Unknown(status) => Decision::Refuse(format!(
            "invoice {} has status `{status}`: not charging it again without a human",
            invoice.invoice_id
        )),
    }
}

/// What to do for a cancelled order, given its invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundDecision {
    /// Charged: refund it all (the invoice id is the provider's idempotency key).
    Refund(Refund),
    /// Settled: announce that `amount_minor` was given back (0: nothing was ever taken).
    Announce {
        /// Given back.
        amount_minor: i64,
        /// The provider's refund reference, when money moved.
        refund_reference: Option<String>,
    },
    /// A charge may be in flight (the invoice is pending): mark the cancellation on the invoice, and
    /// whoever settles the charge refunds it.
    Wait(String),
    /// Never act: for a human.
    Refuse(String),
}

/// The compensation for a cancelled order whose invoice is `invoice`. At most one refund: only a
/// `Paid` invoice is refunded, and its refund is recorded before it is announced.
pub fn refund_step(invoice: &Invoice) -> RefundDecision {
    match &invoice.status {
        InvoiceStatus::Paid { payment_reference } => RefundDecision::Refund(Refund {
            invoice_id: invoice.invoice_id.clone(),
            idempotency_key: format!("refund-{}", invoice.invoice_id),
            payment_reference: payment_reference.clone(),
            amount_minor: invoice.amount_minor,
            currency: invoice.currency,
        }),
        InvoiceStatus::Refunded { refund_reference, .. } => RefundDecision::Announce {
            amount_minor: invoice.amount_minor,
            refund_reference: Some(refund_reference.clone()),
        },
        InvoiceStatus::Voided | InvoiceStatus::Declined { .. } => {
            RefundDecision::Announce { amount_minor: 0, refund_reference: None }
        }
        InvoiceStatus::Pending => RefundDecision::Wait(format!(
            "invoice {} is pending: its charge may be in flight; refunding once it is settled",
            invoice.invoice_id
        )),
        InvoiceStatus::Unknown(status) => RefundDecision::Refuse(format!(
            "invoice {} has status `{status}`: not refunding without a human",
            invoice.invoice_id
        )),
    }
}

/// The invoice status a provider's answer records.
pub fn settlement(outcome: ChargeOutcome) -> InvoiceStatus {
    match outcome {
        ChargeOutcome::Approved { payment_reference } => InvoiceStatus::Paid { payment_reference },
        ChargeOutcome::Declined { reason } => InvoiceStatus::Declined { reason },
    }
}
