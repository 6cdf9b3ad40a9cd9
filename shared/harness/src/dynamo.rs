//! Small helpers every DynamoDB adapter uses: attribute constructors, item readers, and the one place
//! that decides whether a failed DynamoDB call is worth retrying.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use crate::store::StoreError;

/// A string attribute.
pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A number attribute.
pub fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The full error chain of an SDK error, for logs and error messages.
pub fn describe<E: std::error::Error + 'static>(e: E) -> String {
    aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()
}

/// Whether a write was refused because its condition expression did not hold (as opposed to a
/// failure worth retrying). Works for every operation's error type.
pub fn is_conditional_check_failed<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    e.as_service_error().and_then(|se| se.code()) == Some("ConditionalCheckFailedException")
}

/// Error codes that say the request itself is wrong: the same request fails the same way again.
const PERMANENT_CODES: &[&str] = &[
    "ValidationException",
    "ConditionalCheckFailedException",
    "SerializationException",
    "ItemCollectionSizeLimitExceededException",
];

/// A failed DynamoDB call as a [`StoreError`] of `store`: a request DynamoDB refuses as invalid (or a
/// condition that did not hold, where the caller did not expect one) is permanent; timeouts,
/// throttling, 5xx, transaction conflicts and anything unrecognised are retryable, so a message is
/// never dead-lettered for a passing fault.
pub fn store_error<E, R>(store: &'static str, e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let permanent = match &e {
        SdkError::ConstructionFailure(_) => true,
        SdkError::ServiceError(se) => se.err().code().is_some_and(|c| PERMANENT_CODES.contains(&c)),
        _ => false,
    };
    let message = describe(e);
    if permanent {
        StoreError::permanent(store, message)
    } else {
        StoreError::retryable(store, message)
    }
}

/// A string attribute of an item, if present.
pub fn get_s<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

/// A number attribute of an item, parsed, if present.
pub fn get_n<T: std::str::FromStr>(item: &HashMap<String, AttributeValue>, name: &str) -> Option<T> {
    item.get(name).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}
