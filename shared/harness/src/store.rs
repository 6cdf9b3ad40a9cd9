//! The one error every store port returns (orders, invoices, stock, idempotency, ...), saying
//! whether trying again can help. The adapter decides, once, from what the backend answered; call
//! sites just use `?` (a [`StoreError`] becomes the matching [`HandlerError`]).

use crate::error::HandlerError;

/// A store could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{store}: {message}")]
pub struct StoreError {
    /// Which store, e.g. `order store`.
    pub store: &'static str,
    /// What happened, redacted ([`crate::redact`]): it is logged and may become a dead letter's
    /// reason, and a backend's or serde's text can quote the data (an unreadable stored order).
    pub message: String,
    /// Whether a later attempt may succeed (timeouts, throttling, 5xx): the record is redelivered.
    /// Otherwise (a refused request, an unreadable item) it goes to the dead-letter queue at once.
    pub retryable: bool,
}

impl StoreError {
    /// A failure worth retrying.
    pub fn retryable(store: &'static str, message: impl Into<String>) -> Self {
        Self { store, message: crate::redact::redact(&message.into()), retryable: true }
    }

    /// A failure no retry can fix.
    pub fn permanent(store: &'static str, message: impl Into<String>) -> Self {
        Self { store, message: crate::redact::redact(&message.into()), retryable: false }
    }
}

impl From<StoreError> for HandlerError {
    fn from(e: StoreError) -> Self {
        if e.retryable {
            HandlerError::Retryable(e.to_string())
        } else {
            HandlerError::Permanent(e.to_string())
        }
    }
}
