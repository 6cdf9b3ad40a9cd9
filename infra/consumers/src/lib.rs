//! The consumer table: the one place an SQS consumer is declared.
//!
//! ```text
//!  table::CONSUMERS ──► render::template ──► infra/template.yaml, between its "consumers" markers
//!         │         └─► render::diagram  ──► README.md's flow diagram, between its markers
//!         ├─► orderflow-ops: a consumer's stack outputs (queue, dead-letter queues, rule) and replay policy
//!         └─► the tests: the template's rules, environment and limits against the code
//! ```
//!
//! A row names the consumer, its binary and the `Inbound` type it reads (so its rule's
//! `detail-type`s and `source`s cannot drift from the code), and its operating limits: batch size,
//! `maxReceiveCount`, concurrency, timeout, alarms, condition, environment, permissions and whether
//! it takes replays. `make generate` writes what follows from the table; a test fails when the
//! committed files are stale.

pub mod render;
pub mod replay;
pub mod table;

pub use table::CONSUMERS;

use orderflow_contracts::Inbound;

/// One SQS consumer: a queue, its dead-letter queue, what feeds it, the function that reads it, and
/// that function's limits and alarms.
#[derive(Debug, Clone, Copy)]
pub struct Consumer {
    /// Its `CONSUMER_NAME`: idempotency keys, logs, metrics, the replay guard, `orderflow-ops`'s argument.
    pub name: &'static str,
    /// The prefix of its resources' logical ids (`Billing` -> `BillingQueue`, `BillingFunction`, ...).
    pub id: &'static str,
    /// The Lambda binary (`Metadata.BuildProperties.Binary`).
    pub binary: &'static str,
    /// Where its handler lives, for the reader (`functions/billing`).
    pub code: &'static str,
    /// What it does, in a line (the function's `Description`).
    pub does: &'static str,
    /// What puts events on its queue.
    pub feed: Feed,
    /// Records per invocation (`BatchSize`).
    pub batch_size: u32,
    /// How long Lambda gathers a batch (`MaximumBatchingWindowInSeconds`).
    pub batching_window_s: u32,
    /// Deliveries before SQS moves a message to the dead-letter queue (`maxReceiveCount`); with the
    /// harness's growing delay between them, 8 rides out about 10 minutes of a dependency's outage.
    pub max_receive_count: u32,
    /// Instances at most (`ScalingConfig.MaximumConcurrency`, 2 to 1000).
    pub max_concurrency: u32,
    /// Records of one batch handled at once by one instance (`MAX_CONCURRENCY`): with
    /// `max_concurrency`, how many calls to a provider can be in flight.
    pub records_at_once: u32,
    /// Why that many, in a line (a comment in the template).
    pub concurrency_why: &'static str,
    /// The function's timeout; the queue's visibility timeout is six times it (AWS's advice).
    pub timeout_s: u32,
    /// The age of the oldest message that raises the alarm (`ApproximateAgeOfOldestMessage`).
    pub oldest_message_alarm_s: u32,
    /// A template condition the consumer exists under (its store is configured), if any.
    pub condition: Option<&'static str>,
    /// A resource its function waits for (`DependsOn`), if any.
    pub depends_on: Option<&'static str>,
    /// Whether the function joins the VPC when `SubnetIds` is given (it reaches Redis or PostgreSQL).
    pub in_vpc: bool,
    /// Its own environment variables, beside the harness's: name, and the value as YAML.
    pub env: &'static [(&'static str, &'static str)],
    /// Its own permissions, beside the harness's (its idempotency records, its queues, publishing).
    pub allow: &'static [Allow],
    /// The `source` it publishes its events as (`orderflow.billing`), if it publishes: its
    /// `events:PutEvents` is allowed for that source only.
    pub publishes: Option<&'static str>,
    /// The detail types it publishes, which every publishing consumer names: its `events:PutEvents`
    /// is allowed for these only (Sales' status consumer may not announce an order placed, nor
    /// Billing a shipping label).
    pub publishes_only: &'static [&'static str],
    /// Whether the harness keeps idempotency records for it: it may then write only the records
    /// under its own name (`dynamodb:LeadingKeys`). Not for the batch harness, nor for a consumer
    /// whose main runs `without_claims()` because its handler's own writes make a repeat harmless
    /// (a test holds the row and the main to the same answer).
    pub idempotency: bool,
    /// Whether `orderflow-ops replay` may re-deliver archived events to it.
    pub replays: Replays,
}

/// What puts events on a consumer's queue.
#[derive(Debug, Clone, Copy)]
pub enum Feed {
    /// A rule on the bus, matching exactly what its `Inbound` type reads.
    Bus(Routes),
    /// Another consumer's function, named by its table name, which sends to this queue's URL in the
    /// variable `env` (webhook deliveries, one per subscription, from the fan-out).
    Consumer {
        /// The feeding consumer's [`Consumer::name`].
        name: &'static str,
        /// The feeding function's variable holding this queue's URL.
        env: &'static str,
    },
}

/// The `detail-type`s a consumer reads and their `source`s.
#[derive(Debug, Clone, Copy)]
pub struct Routes {
    /// `Inbound::DETAIL_TYPES`.
    pub detail_types: &'static [&'static str],
    /// `Inbound::SOURCES` (may repeat; the rule lists each once).
    pub sources: &'static [&'static str],
}

/// The routes of the `Inbound` type `I`.
pub const fn routes<I: Inbound>() -> Routes {
    Routes { detail_types: I::DETAIL_TYPES, sources: I::SOURCES }
}

impl Routes {
    /// The sources, each once, in the order they first appear.
    pub fn unique_sources(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for s in self.sources {
            if !out.contains(s) {
                out.push(s);
            }
        }
        out
    }
}

/// One permission statement: actions on a resource (YAML, e.g. `!GetAtt InvoicesTable.Arn`).
#[derive(Debug, Clone, Copy)]
pub struct Allow {
    /// IAM actions.
    pub actions: &'static [&'static str],
    /// The resource, as YAML.
    pub resource: &'static str,
    /// A condition narrowing it, as YAML (a flow mapping), if any.
    pub condition: Option<&'static str>,
}

/// Whether a consumer takes replayed events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replays {
    /// Its rule takes its own replays (`orderflow-ops replay <name>`): for read models, which a
    /// replay rebuilds.
    Accepted,
    /// Its rule takes live events only, and `orderflow-ops replay` refuses it, saying why.
    Refused(&'static str),
}

/// A row's defaults: struct update syntax keeps each row to what is its own.
pub const DEFAULTS: Consumer = Consumer {
    name: "",
    id: "",
    binary: "",
    code: "",
    does: "",
    feed: Feed::Bus(Routes { detail_types: &[], sources: &[] }),
    batch_size: 10,
    batching_window_s: 1,
    max_receive_count: 8,
    max_concurrency: 5,
    records_at_once: 8,
    concurrency_why: "",
    timeout_s: 10,
    oldest_message_alarm_s: 900,
    condition: None,
    depends_on: None,
    in_vpc: false,
    env: &[],
    allow: &[],
    publishes: None,
    publishes_only: &[],
    idempotency: true,
    replays: Replays::Refused(""),
};

/// The outputs of the stack that name a consumer's resources, as [`Consumer::output`] spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Its queue's URL.
    QueueUrl,
    /// Its dead-letter queue's URL.
    DeadLetterQueueUrl,
    /// Its function's name.
    FunctionName,
    /// Its rule's ARN (bus-fed consumers).
    RuleArn,
    /// The URL of the queue where the bus keeps events it could not put on the consumer's queue.
    RuleDeadLetterQueueUrl,
}

impl Consumer {
    /// The logical id of one of its resources: `Queue` -> `BillingQueue`.
    pub fn logical(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.id)
    }

    /// The key of one of its stack outputs.
    pub fn output(&self, output: Output) -> String {
        self.logical(match output {
            Output::QueueUrl => "QueueUrl",
            Output::DeadLetterQueueUrl => "DeadLetterQueueUrl",
            Output::FunctionName => "FunctionName",
            Output::RuleArn => "RuleArn",
            Output::RuleDeadLetterQueueUrl => "RuleDeadLetterQueueUrl",
        })
    }

    /// Its routes, when a bus rule feeds it.
    pub fn routes(&self) -> Option<Routes> {
        match self.feed {
            Feed::Bus(routes) => Some(routes),
            Feed::Consumer { .. } => None,
        }
    }

    /// Its queue's visibility timeout: six times the function's timeout plus the batching window, as
    /// AWS advises for a queue that feeds Lambda (a batch's retries by the poller fit inside it).
    pub fn visibility_timeout_s(&self) -> u32 {
        6 * self.timeout_s + self.batching_window_s
    }
}

/// The consumer named `name`, if the table has it.
pub fn find(name: &str) -> Option<&'static Consumer> {
    CONSUMERS.iter().find(|c| c.name == name)
}

/// Every consumer's name, for messages.
pub fn names() -> Vec<&'static str> {
    CONSUMERS.iter().map(|c| c.name).collect()
}
