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

/// The names of the environment variables that more than one place knows: the harness and the
/// functions read them, the template generator (`orderflow-consumers`) sets them, the tests check
/// them. Each constant's value is its own name.
pub mod vars {
    /// The consumer's name (idempotency keys, logs, metrics, the replay guard).
    pub const CONSUMER_NAME: &str = "CONSUMER_NAME";
    /// The consumer's own queue.
    pub const QUEUE_URL: &str = "QUEUE_URL";
    /// The consumer's dead-letter queue.
    pub const DEAD_LETTER_QUEUE_URL: &str = "DEAD_LETTER_QUEUE_URL";
    /// The idempotency table.
    pub const IDEMPOTENCY_TABLE: &str = "IDEMPOTENCY_TABLE";
    /// Records of one batch handled at once.
    pub const MAX_CONCURRENCY: &str = "MAX_CONCURRENCY";
    /// How long a completed event id is remembered.
    pub const IDEMPOTENCY_TTL_SECONDS: &str = "IDEMPOTENCY_TTL_SECONDS";
    /// The event bus a function publishes to.
    pub const EVENT_BUS_NAME: &str = "EVENT_BUS_NAME";
    /// How long a warm function keeps a secret before reading it again.
    pub const SECRET_MAX_AGE_SECONDS: &str = "SECRET_MAX_AGE_SECONDS";

    /// What [`super::ConsumerConfig::from_env`] requires.
    pub const CONSUMER_REQUIRED: [&str; 4] = [CONSUMER_NAME, QUEUE_URL, DEAD_LETTER_QUEUE_URL, IDEMPOTENCY_TABLE];
    /// What [`super::ConsumerConfig::from_env`] reads when set.
    pub const CONSUMER_OPTIONAL: [&str; 2] = [MAX_CONCURRENCY, IDEMPOTENCY_TTL_SECONDS];
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
        let max_concurrency: usize = parsed_or(vars::MAX_CONCURRENCY, 8)?;
        if max_concurrency == 0 {
            return Err(ConfigError::Malformed {
                name: vars::MAX_CONCURRENCY.into(),
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        Ok(Self {
            consumer_name: required(vars::CONSUMER_NAME)?,
            queue_url: required(vars::QUEUE_URL)?,
            dead_letter_queue_url: required(vars::DEAD_LETTER_QUEUE_URL)?,
            idempotency_table: required(vars::IDEMPOTENCY_TABLE)?,
            max_concurrency,
            completed_ttl: Duration::from_secs(parsed_or(vars::IDEMPOTENCY_TTL_SECONDS, 86_400)?),
        })
    }
}
