//! How a handler tells the harness what to do with a record it could not handle.

use std::time::Duration;

/// A handler's failure, saying whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandlerError {
    /// A dependency timed out, throttled or answered 5xx: the harness holds the record back for its
    /// [`growing_delay`] (the handler need not know the receive count) and SQS redelivers it then,
    /// until the queue's `maxReceiveCount` moves it to the dead-letter queue.
    #[error("retryable: {0}")]
    Retryable(String),
    /// Retryable, but not before `after` (what the provider asked for, e.g. its `Retry-After`, read
    /// with [`retry_after`]) nor before the [`growing_delay`]: the harness sets the message's
    /// visibility timeout to the longer (capped at [`MAX_RETRY_DELAY`], less the time the invocation
    /// has taken), so SQS redelivers it no sooner, the provider is not hammered, and a provider
    /// answering `Retry-After: 0` cannot use up the message's receives in seconds.
    #[error("retryable after {after:?}: {reason}")]
    RetryAfter {
        /// What went wrong.
        reason: String,
        /// How long to wait before the next delivery.
        after: Duration,
    },
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
    /// A retryable failure not to be retried before `after`.
    pub fn retry_after(e: impl std::fmt::Display, after: Duration) -> Self {
        Self::RetryAfter { reason: e.to_string(), after }
    }
    /// A retryable failure, after `after` when the provider said how long, else after the harness's
    /// growing delay.
    pub fn retry(e: impl std::fmt::Display, after: Option<Duration>) -> Self {
        match after {
            Some(after) => Self::retry_after(e, after),
            None => Self::retryable(e),
        }
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

/// The longest a record can be held back (11 h 50 min, see [`crate::visibility::longest_delay`]):
/// SQS's 12 hours from the receive, less a margin for the time before the harness saw the batch.
pub const MAX_RETRY_DELAY: Duration =
    crate::visibility::VISIBILITY_LIMIT.saturating_sub(crate::visibility::RECEIVE_MARGIN);

/// A delay that grows with each delivery: 5 s after the first, doubling, at most 15 minutes. For a
/// dependency that is down without saying for how long; the harness applies it to every
/// [`HandlerError::Retryable`].
pub fn growing_delay(receive_count: u32) -> Duration {
    let exponent = receive_count.saturating_sub(1).min(20);
    Duration::from_secs(5u64.saturating_mul(1 << exponent)).min(Duration::from_secs(900))
}

/// An HTTP `Retry-After` header's value as a delay from `now`: delay-seconds (`120`, Twilio's form)
/// or an HTTP date (`Wed, 02 Dec 2026 01:00:00 GMT`, RFC 9110); a date already past is no delay.
/// Anything else is `None`, and the harness's growing delay applies.
pub fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = std::time::SystemTime::from(at.with_timezone(&chrono::Utc));
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}
