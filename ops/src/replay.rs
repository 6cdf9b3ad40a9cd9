//! `replay <consumer> --from … --to …`: re-delivers the archived events of a time window to one
//! consumer, to rebuild its read model.
//!
//! EventBridge `StartReplay` puts the archived events back on the bus with a `replay-name` field,
//! and `FilterArns` limits them to the consumer's rule. The local emulator ignores `FilterArns`, so
//! the template makes it hold without them too: every consumer's rule accepts an event only when it
//! has no `replay-name` (live traffic) or one that starts with the consumer's own name and a dot
//! ([`rule_guard`]); replays are named [`replay_name`]. A replay thus reaches its consumer alone,
//! on AWS and on the emulator alike.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_eventbridge::types::{ReplayDestination, ReplayState};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::stack::{queue_arn, ConsumerResources};

/// The name of a replay for `consumer` started at `at`: `<consumer>.<yyyymmddThhmmss>`.
pub fn replay_name(consumer: &str, at: DateTime<Utc>) -> String {
    format!("{consumer}.{}", at.format("%Y%m%dT%H%M%S"))
}

/// The `$or` every consumer rule's pattern carries: live events, or this consumer's replays.
pub fn rule_guard(consumer: &str) -> Value {
    json!([
        {"replay-name": [{"exists": false}]},
        {"replay-name": [{"prefix": format!("{consumer}.")}]},
    ])
}

/// A finished replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Its name.
    pub name: String,
    /// The rule it was limited to.
    pub rule_arn: String,
    /// Its final state.
    pub state: String,
}

/// What a replay needs from the stack.
#[derive(Debug, Clone)]
pub struct Bus {
    /// The bus's name.
    pub name: String,
    /// The bus's ARN.
    pub arn: String,
    /// The archive's name (`<stack>-archive`).
    pub archive: String,
}

/// Replays `[from, to]` from the archive to `consumer` and waits until the replay has finished.
pub async fn replay(
    events: &aws_sdk_eventbridge::Client,
    sqs: &aws_sdk_sqs::Client,
    bus: &Bus,
    consumer: &ConsumerResources,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Replayed> {
    if from >= to {
        bail!("--from must be before --to");
    }
    let archive =
        events.describe_archive().archive_name(&bus.archive).send().await.context("describing the archive")?;
    let archive_arn = archive.archive_arn().ok_or_else(|| anyhow!("the archive {} has no ARN", bus.archive))?;
    let target = queue_arn(sqs, &consumer.queue_url).await?;
    let rules = events
        .list_rule_names_by_target()
        .target_arn(&target)
        .event_bus_name(&bus.name)
        .send()
        .await
        .context("finding the consumer's rule")?;
    let rule = rules.rule_names().first().ok_or_else(|| anyhow!("no rule of {} targets {target}", bus.name))?;
    let rule_arn = events
        .describe_rule()
        .name(rule)
        .event_bus_name(&bus.name)
        .send()
        .await?
        .arn()
        .ok_or_else(|| anyhow!("the rule {rule} has no ARN"))?
        .to_string();
    let name = replay_name(&consumer.name, Utc::now());
    events
        .start_replay()
        .replay_name(&name)
        .event_source_arn(archive_arn)
        .event_start_time(aws_smithy_types::DateTime::from_millis(from.timestamp_millis()))
        .event_end_time(aws_smithy_types::DateTime::from_millis(to.timestamp_millis()))
        .destination(ReplayDestination::builder().arn(&bus.arn).filter_arns(&rule_arn).build()?)
        .send()
        .await
        .map_err(|e| anyhow!("{}", aws_sdk_eventbridge::error::DisplayErrorContext(e)))
        .context("StartReplay")?;
    for _ in 0..600 {
        let replay = events.describe_replay().replay_name(&name).send().await?;
        match replay.state() {
            Some(ReplayState::Completed) => {
                return Ok(Replayed { name, rule_arn, state: "COMPLETED".into() });
            }
            Some(state @ (ReplayState::Failed | ReplayState::Cancelled)) => {
                bail!("replay {name} ended {state:?}: {}", replay.state_reason().unwrap_or_default())
            }
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    bail!("replay {name} did not finish within 5 minutes; see `aws events describe-replay --replay-name {name}`")
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_replay_name_starts_with_its_consumer_and_a_dot_and_fits_eventbridge() {
        let at = Utc.with_ymd_and_hms(2026, 11, 29, 6, 5, 4).unwrap();
        let name = replay_name("sales-order-status", at);
        assert_eq!(name, "sales-order-status.20261129T060504");
        assert!(name.len() <= 64);
        let prefix = rule_guard("sales-order-status")[1]["replay-name"][0]["prefix"].as_str().unwrap().to_string();
        assert!(name.starts_with(&prefix));
        // Another consumer whose name is a prefix of this one's would not take its replays.
        assert!(!name.starts_with(rule_guard("sales")[1]["replay-name"][0]["prefix"].as_str().unwrap()));
    }
}
