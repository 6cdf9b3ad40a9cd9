//! The payment port (charge, refund) and its default adapter.
//!
//! Orderflow ships no real payment provider. [`RuleBasedGateway`] approves, except where a
//! configurable rule declines: a total above `DECLINE_ABOVE_MINOR`, or a customer email containing
//! `DECLINE_EMAIL_MARKER` (a "test card" for demos and tests). A real provider adapter implements
//! [`PaymentGateway`] and passes the invoice id as its idempotency key.

use async_trait::async_trait;
use orderflow_contracts::Currency;

/// What to charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// Idempotency key for the provider: one charge per invoice, however often it is asked.
    pub invoice_id: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: Currency,
    /// The payer.
    pub customer_email: String,
}

/// The provider's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// Money taken.
    Approved {
        /// The provider's reference.
        payment_reference: String,
    },
    /// Refused; a business outcome, not an error.
    Declined {
        /// Why.
        reason: String,
    },
}

/// The provider could not be reached or failed: retryable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("payment provider: {0}")]
pub struct PaymentError(pub String);

/// What to give back: the whole of one captured charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    /// The invoice whose charge is refunded.
    pub invoice_id: String,
    /// Idempotency key for the provider: `refund-<invoice id>`, one refund per invoice however often
    /// it is asked, and never the charge's key (a provider whose keys span the account would answer
    /// a refund sent under the charge's key with the charge's cached response).
    pub idempotency_key: String,
    /// The charge being refunded (the provider's reference).
    pub payment_reference: String,
    /// Amount, minor units: what was charged.
    pub amount_minor: i64,
    /// Currency.
    pub currency: Currency,
}

/// The port.
///
/// Billing keeps no idempotency claims (the invoice is its record), so two copies of one
/// `OrderPlaced` can reach a provider at once: an adapter must be idempotent per key for *concurrent*
/// requests too (the provider answers the second with the first's outcome, or with a retryable "in
/// progress"), as Stripe's and Adyen's idempotency keys are.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Charges, idempotently per invoice id.
    async fn charge(&self, charge: &Charge) -> Result<ChargeOutcome, PaymentError>;
    /// Refunds a captured charge in full, idempotently per invoice id; returns the provider's refund
    /// reference (the same one when asked again).
    async fn refund(&self, refund: &Refund) -> Result<String, PaymentError>;
}

/// The default adapter: approve unless a rule declines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleBasedGateway {
    /// Totals above this are declined ("exceeds card limit").
    pub decline_above_minor: i64,
    /// Emails containing this are declined ("test card"); empty disables the rule.
    pub decline_email_marker: String,
}

#[async_trait]
impl PaymentGateway for RuleBasedGateway {
    async fn charge(&self, charge: &Charge) -> Result<ChargeOutcome, PaymentError> {
        if charge.amount_minor > self.decline_above_minor {
            return Ok(ChargeOutcome::Declined {
                reason: format!(
                    "amount {} exceeds the card limit of {}",
                    charge.amount_minor, self.decline_above_minor
                ),
            });
        }
        if !self.decline_email_marker.is_empty() && charge.customer_email.contains(&self.decline_email_marker) {
            return Ok(ChargeOutcome::Declined { reason: "card declined by issuer (test card)".into() });
        }
        Ok(ChargeOutcome::Approved { payment_reference: format!("pay-{}", charge.invoice_id) })
    }

    async fn refund(&self, refund: &Refund) -> Result<String, PaymentError> {
        Ok(format!("rfd-{}", refund.invoice_id))
    }
}
