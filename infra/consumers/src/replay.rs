//! The replay contract, in one place: how a replay is named, and the guard every bus rule carries
//! so that a replay reaches the one consumer it is for.
//!
//! EventBridge `StartReplay` puts archived events back on the bus with a `replay-name` field, and
//! `FilterArns` limits them to one rule. The local emulator ignores `FilterArns`, so the rules make it
//! hold without them too: a rule takes an event when it has no `replay-name` (live traffic) or, for a
//! consumer that takes replays, one that starts with the consumer's own name and a dot.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::{Consumer, Replays};

/// The name of a replay for `consumer` started at `at`: `<consumer>.<yyyymmddThhmmss>` (at most 64
/// characters, as EventBridge requires).
pub fn replay_name(consumer: &str, at: DateTime<Utc>) -> String {
    format!("{consumer}.{}", at.format("%Y%m%dT%H%M%S"))
}

/// What every replay of `consumer` starts with.
pub fn prefix(consumer: &str) -> String {
    format!("{consumer}.")
}

/// The part of a rule's event pattern that decides which replays it takes, as the pattern's JSON:
/// `("$or", [live, own replays])` for a consumer that takes replays, `("replay-name", live)` for one
/// that does not.
pub fn rule_guard(consumer: &Consumer) -> (&'static str, Value) {
    let live = json!([{"exists": false}]);
    match consumer.replays {
        Replays::Accepted => (
            "$or",
            json!([
                {"replay-name": live},
                {"replay-name": [{"prefix": prefix(consumer.name)}]},
            ]),
        ),
        Replays::Refused(_) => ("replay-name", live),
    }
}
