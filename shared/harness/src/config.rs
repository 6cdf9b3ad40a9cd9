//! Configuration from environment variables, read once at init. Errors name the variable, so a
//! misconfigured function fails its first (init) phase with a message that says what to fix.

use std::str::FromStr;
use std::time::Duration;

/// A missing or malformed environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Not set, or empty.
    #[error("environment variable {0} is required but not set")]
    Missing(String),
    /// Set to something that does not parse.
    #[error("environment variable {name}={value:?} is malformed: {reason}")]
    Malformed {
        /// The variable.
        name: String,
        /// Its value.
        value: String,
        /// What the parser said.
        reason: String,
    },
}

/// The value of `name`, which must be set and non-empty.
pub fn required(name: &str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v),
        _ => Err(ConfigError::Missing(name.to_string())),
    }
}

/// The value of `name` parsed as `T`, or `default` when unset.
pub fn parsed_or<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map_err(|e: T::Err| ConfigError::Malformed {
            name: name.to_string(),
            value: v.clone(),
            reason: e.to_string(),
        }),
        _ => Ok(default),
    }
}

/// What the consumer harness needs, from the environment the SAM template sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// `CONSUMER_NAME`: names the consumer in idempotency keys, logs and metrics.
    pub consumer_name: String,
    /// `QUEUE_URL`: the consumer's own queue, where "retry after" sets a record's visibility timeout.
    pub queue_url: String,
    /// `DEAD_LETTER_QUEUE_URL`: where permanent failures go at once.
    pub dead_letter_queue_url: String,
    /// `IDEMPOTENCY_TABLE`: the DynamoDB table of processed event ids.
    pub idempotency_table: String,
    /// `MAX_CONCURRENCY` (default 8): records of one batch handled at once.
    pub max_concurrency: usize,
    /// `IDEMPOTENCY_TTL_SECONDS` (default 86400): how long a completed event id is remembered; keep it
    /// above the queue's retention so any redelivery is caught.
    pub completed_ttl: Duration,
}

impl ConsumerConfig {
    /// Reads the variables above.
    pub fn from_env() -> Result<Self, ConfigError> {
        let max_concurrency: usize = parsed_or("MAX_CONCURRENCY", 8)?;
        if max_concurrency == 0 {
            return Err(ConfigError::Malformed {
                name: "MAX_CONCURRENCY".into(),
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(Self {
            consumer_name: required("CONSUMER_NAME")?,
            queue_url: required("QUEUE_URL")?,
            dead_letter_queue_url: required("DEAD_LETTER_QUEUE_URL")?,
            idempotency_table: required("IDEMPOTENCY_TABLE")?,
            max_concurrency,
            completed_ttl: Duration::from_secs(parsed_or("IDEMPOTENCY_TTL_SECONDS", 86_400)?),
        })
    }
}
