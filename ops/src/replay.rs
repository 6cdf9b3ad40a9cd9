//! `replay <consumer> --from … --to …`: re-delivers the archived events of a time window to one
//! consumer, to rebuild its read model.
//!
//! `StartReplay` limits the replay to the consumer's rule (`FilterArns`), and every rule carries the
//! replay guard of `orderflow_consumers::replay`, so a replay reaches its consumer alone on the
//! emulator too (which ignores `FilterArns`). A consumer whose row refuses replays (its effects
//! reach people or other systems) is refused here, before anything is asked of AWS.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_eventbridge::types::{ReplayDestination, ReplayState};
use chrono::{DateTime, Utc};
use orderflow_consumers::replay::replay_name;
use orderflow_consumers::{Consumer, Replays};

use crate::stack::ConsumerResources;

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
    /// The archive's name (the stack's output `EventArchiveName`).
    pub archive: String,
}

/// `Ok` when `consumer` takes replays; otherwise the refusal, saying why.
pub fn allowed(consumer: &Consumer) -> Result<()> {
    match consumer.replays {
        Replays::Accepted => Ok(()),
        Replays::Refused(why) => bail!(
            "consumer `{}` takes no replays: {why}. Its rule accepts live events only (infra/consumers/src/table.rs)",
            consumer.name
        ),
    }
}

/// Replays `[from, to]` from the archive to `consumer` (whose row is `row`) and waits until the
/// replay has finished; a consumer whose row refuses replays is refused.
pub async fn replay(
    events: &aws_sdk_eventbridge::Client,
    bus: &Bus,
    row: &Consumer,
    consumer: &ConsumerResources,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Replayed> {
    allowed(row)?;
    if from >= to {
        bail!("--from must be before --to");
    }
    let archive =
        events.describe_archive().archive_name(&bus.archive).send().await.context("describing the archive")?;
    let archive_arn = archive.archive_arn().ok_or_else(|| anyhow!("the archive {} has no ARN", bus.archive))?;
    let rule_arn = consumer
        .rule_arn
        .clone()
        .ok_or_else(|| anyhow!("no rule feeds {}: it receives no events from the bus to replay", consumer.name))?;
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
    use orderflow_consumers::find;
    use orderflow_consumers::replay::{prefix, replay_name};

    use super::*;

    #[test]
    fn a_replay_name_starts_with_its_consumer_and_a_dot_and_fits_eventbridge() {
        let at = Utc.with_ymd_and_hms(2026, 11, 29, 6, 5, 4).unwrap();
        let name = replay_name("sales-order-status", at);
        assert_eq!(name, "sales-order-status.20261129T060504");
        assert!(name.len() <= 64);
        assert!(name.starts_with(&prefix("sales-order-status")));
        // Another consumer whose name is a prefix of this one's would not take its replays.
        assert!(!name.starts_with(&prefix("sales")));
    }

    #[test]
    fn consumers_that_refuse_replays_are_refused_with_the_reason() {
        let err = allowed(find("sms").unwrap()).unwrap_err().to_string();
        assert!(err.contains("sms") && err.contains("reach people"), "{err}");
        assert!(allowed(find("reporting").unwrap()).is_ok());
    }
}
