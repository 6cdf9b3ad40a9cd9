//! Why an event could not be read. Every variant is permanent: the same bytes will fail the same way
//! on every retry, so consumers dead-letter them at once instead of letting SQS redeliver them.

/// A contract violation found while reading an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    /// The message body is not an EventBridge event wrapping an Orderflow envelope.
    #[error("not an EventBridge event with an Orderflow envelope: {0}")]
    NotAnEnvelope(String),
    /// The consumer does not listen to this `detail-type` (its rule should not have routed it).
    #[error("unknown detail-type `{0}` for this consumer")]
    UnknownDetailType(String),
    /// The producer wrote a version this build cannot read or upcast.
    #[error("{event}: schema version {found} is not supported (supported: {}..={})", supported.0, supported.1)]
    UnsupportedSchemaVersion {
        /// The event's name.
        event: &'static str,
        /// The version found in the envelope.
        found: u32,
        /// The oldest and newest readable versions.
        supported: (u32, u32),
    },
    /// The data does not have the event's shape.
    #[error("{event}: malformed data: {reason}")]
    Malformed {
        /// The event's name.
        event: String,
        /// serde's description, which names the field.
        reason: String,
    },
    /// The data has the right shape but breaks a business rule.
    #[error("{event}: invalid `{field}`: {reason}")]
    Invalid {
        /// The event's name.
        event: &'static str,
        /// The path of the offending field, e.g. `lines[0].quantity`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}
