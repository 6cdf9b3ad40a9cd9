//! The command line of `orderflow-ops`, as a library function: the binary calls [`run`] with its
//! arguments, and the fault tests call it with theirs (no separately built binary needed).

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use crate::redrive::{self, Method};
use crate::replay::{self, Bus};
use crate::stack;

/// Operator commands for a deployed Orderflow stack. AWS credentials, region and endpoint come
/// from the environment (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL for the local emulator).
#[derive(Parser)]
#[command(name = "orderflow-ops", version)]
pub struct Cli {
    /// The CloudFormation stack.
    #[arg(long, env = "ORDERFLOW_STACK", default_value = "orderflow")]
    stack: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Moves a consumer's dead-letter queue back to its queue (once the cause is fixed).
    Redrive {
        /// The consumer, as its row in the consumer table names it (billing, reporting, ...).
        consumer: String,
    },
    /// Re-delivers the archived events of a time window to one consumer alone.
    Replay {
        /// The consumer (a read model: cache, reporting, lake, sales-order-status; the others refuse,
        /// saying why).
        consumer: String,
        /// Start of the window (RFC 3339, e.g. 2026-11-29T00:00:00Z).
        #[arg(long)]
        from: DateTime<Utc>,
        /// End of the window (RFC 3339; default: now).
        #[arg(long)]
        to: Option<DateTime<Utc>>,
    },
}

/// Parses `args` (the first is the program's name, as in `std::env::args`), runs the command
/// against the AWS that `sdk` reaches, and returns the line it reports.
pub async fn run<I, T>(args: I, sdk: &aws_config::SdkConfig) -> Result<String>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::try_parse_from(args).map_err(|e| anyhow::anyhow!("{e}"))?;
    let cfn = aws_sdk_cloudformation::Client::new(sdk);
    match cli.command {
        Command::Redrive { consumer } => {
            let row = stack::row(&consumer)?;
            let outputs = stack::outputs(&cfn, &cli.stack).await?;
            let consumer = stack::consumer(row, &cli.stack, &outputs)?;
            let sqs = aws_sdk_sqs::Client::new(sdk);
            let done = redrive::redrive(&sqs, &consumer).await?;
            let how = match done.method {
                Method::MessageMoveTask => "SQS StartMessageMoveTask",
                Method::ReceiveSendDelete => "receive/send/delete (this SQS has no StartMessageMoveTask)",
            };
            Ok(format!(
                "redrive {}: {} message(s) moved back to its queue, with {how}; {} of them events its rule could not deliver",
                consumer.name, done.moved, done.undelivered
            ))
        }
        Command::Replay { consumer, from, to } => {
            let row = stack::row(&consumer)?;
            // Refused before anything is asked of AWS (and again by `replay::replay`).
            replay::allowed(row)?;
            let outputs = stack::outputs(&cfn, &cli.stack).await?;
            let consumer = stack::consumer(row, &cli.stack, &outputs)?;
            let output = |key: &str| outputs.get(key).cloned().with_context(|| format!("stack output {key}"));
            let bus = Bus {
                name: output("EventBusName")?,
                arn: output("EventBusArn")?,
                archive: output("EventArchiveName")?,
            };
            let events = aws_sdk_eventbridge::Client::new(sdk);
            let to = to.unwrap_or_else(Utc::now);
            let done = replay::replay(&events, &bus, row, &consumer, from, to).await?;
            Ok(format!(
                "replay {}: {} from {from} to {to} {} (limited to rule {})",
                consumer.name, done.name, done.state, done.rule_arn
            ))
        }
    }
}
