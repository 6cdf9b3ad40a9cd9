//! How a handler tells the harness what to do with a record it could not handle.

/// A handler's failure, saying whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// A dependency timed out, throttled or answered 5xx: SQS redelivers the record after its
    /// visibility timeout, until the queue's `maxReceiveCount` moves it to the dead-letter queue.
    #[error("retryable: {0}")]
    Retryable(String),
    /// The record can never succeed (bad data, a broken business invariant): it goes to the
    /// dead-letter queue at once with this reason.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl HandlerError {
    /// A retryable failure from anything displayable.
    pub fn retryable(e: impl std::fmt::Display) -> Self {
        Self::Retryable(e.to_string())
    }
    /// A permanent failure from anything displayable.
    pub fn permanent(e: impl std::fmt::Display) -> Self {
        Self::Permanent(e.to_string())
    }
}

impl From<crate::publisher::PublishError> for HandlerError {
    fn from(e: crate::publisher::PublishError) -> Self {
        if e.is_retryable() {
            Self::Retryable(e.to_string())
        } else {
            Self::Permanent(e.to_string())
        }
    }
}
