//! Error text made safe to log and to store as a dead letter's reason: nothing personal in it.
//!
//! What an error says is written by others: serde quotes the value it could not read
//! (`invalid type: string "Ada Lovelace", expected u32`), a provider names the number or address it
//! refused. The harness passes every failure's reason through [`redact`] before it reaches a log line
//! or a dead letter's `reason` attribute; adapters also keep provider messages out of their errors
//! (a status and an error code say what happened; the provider's console has the rest).
//!
//! Masked: every double-quoted string (`"…"`), backticked text that is not shaped like a name in
//! code, anything shaped like an email address, and numbers of nine digits or more, or any run of
//! digits after a `+` (phone numbers). Kept: field names in backticks, event names, order and event
//! ids, HTTP statuses, provider error codes. (A lone word in backticks is kept: `OrderShipped` and
//! `Ada` cannot be told apart, and one word alone identifies nobody.)
//!
//! The patterns run on `regex-lite` (already linked by the SDK), whose `\d`, `\s` and `\w` are ASCII:
//! a non-ASCII space does not end an address and a non-ASCII letter does not guard a number (both
//! mask more), but a phone number written in another script's digits is no longer masked unless it
//! is quoted (serde quotes every string value it reports).

use std::sync::LazyLock;

use regex_lite::{Captures, Regex};

static QUOTED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r#""(?:[^"\\]|\\.)*""#).expect("a valid pattern"));
/// Backtick-quoted text: ours names fields and event types (kept), serde's names the unknown value
/// it met (`unknown variant `12 Analytical Row``), masked unless it looks like a name in code.
static BACKTICKED: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"`([^`]*)`").expect("a valid pattern"));
static IDENTIFIER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9_.\[\]-]{0,63}$").expect("a valid pattern"));
static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"[^\s"'`<>(),;:\[\]]+@[^\s"'`<>(),;:\[\]]+"#).expect("a valid pattern"));
static PHONE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(^|[^\w-])(\+[\d ()-]{6,}\d|\d{9,})").expect("a valid pattern"));

/// `text` with quoted values, email addresses and phone-like numbers masked.
pub fn redact(text: &str) -> String {
    let text = QUOTED.replace_all(text, "\"…\"");
    let text =
        BACKTICKED.replace_all(
            &text,
            |c: &Captures<'_>| {
                if IDENTIFIER.is_match(&c[1]) {
                    c[0].to_string()
                } else {
                    "`…`".to_string()
                }
            },
        );
    let text = EMAIL.replace_all(&text, "[email]");
    PHONE.replace_all(&text, "${1}[number]").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_addresses_and_numbers_are_masked() {
        for (text, gone) in [
            (r#"OrderPlaced: malformed data: invalid type: string "Ada Lovelace", expected u32 at line 1"#, "Ada"),
            (r#"unknown field "12 Analytical Row""#, "Analytical"),
            (r#"escaped "a \"quoted\" ada@example.com" value"#, "ada@"),
            ("HTTP 400 21211 The 'To' number +44 7700 900123 is not valid", "900123"),
            ("to +447700900123: refused", "447700900123"),
            ("MessageRejected: Email address is not verified: ada+orders@example.co.uk.", "ada+orders"),
            ("invalid type: integer 447700900123, expected a string", "447700900123"),
            ("unknown variant `12 Analytical Row`, expected one of `EUR`, `USD`", "Analytical"),
        ] {
            let safe = redact(text);
            assert!(!safe.contains(gone), "{text:?} -> {safe:?}");
        }
    }

    #[test]
    fn what_an_operator_needs_is_kept() {
        for text in [
            "order 6f726465-7266-4c6f-9700-000000000009: HTTP 400 21211",
            "OrderPlaced: invalid `lines[0].quantity`: must be at most 10000",
            "unknown detail-type `OrderShipped` for this consumer",
            "MessageRejected",
            "schema version 9 is not supported (supported: 1..=2)",
        ] {
            assert_eq!(redact(text), text);
        }
    }
}
