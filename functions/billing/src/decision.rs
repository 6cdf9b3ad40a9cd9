//! Billing's rules as plain functions over plain types: what to do with an order given its invoice,
//! and what an outcome means. No port, no SDK: the handler does the I/O around them.

use orderflow_contracts::OrderPlaced;

use crate::invoices::{Invoice, InvoiceStatus};
use crate::payments::{Charge, ChargeOutcome};

/// What to do next for an order and its invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing is settled yet: charge (the invoice id is the provider's idempotency key).
    Charge(Charge),
    /// The outcome is recorded: announce it again (a redelivery after a crash before publishing).
    Announce(InvoiceStatus),
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
        settled @ (InvoiceStatus::Paid { .. } | InvoiceStatus::Declined { .. }) => Decision::Announce(settled.clone()),
        InvoiceStatus::Unknown(status) => Decision::Refuse(format!(
            "invoice {} has status `{status}`: not charging it again without a human",
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
