//! Backorder deadlines: a backordered order that is not fulfilled in time is cancelled (and so
//! refunded) without a human.
//!
//! ```text
//! Backordered ─► one-time schedule per order (EventBridge Scheduler, at(now + BACKORDER_DEADLINE_SECONDS))
//!     at the deadline ─► BackorderDeadlinePassed on sales-order-status's own queue
//!         still Backordered? ─► Cancelling (OrderCancelled: BackorderDeadline) ─► refund ─► Cancelled
//!         shipped or cancelled since ─► nothing
//! ReadyToShip | Cancelled ─► the schedule is deleted (tidiness: a late firing finds nothing to do)
//! ```
//!
//! The schedule is created *before* the order is written `Backordered` (creating it again is a
//! no-op), so a crash between the two leaves a schedule that fires for an order in another status,
//! which changes nothing; never a backorder without a deadline. The message is Sales' own timer, not
//! a bus event: it goes straight to the queue of `sales-order-status`, as an EventBridge event in
//! form so the harness reads it like any other.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
#[cfg(feature = "aws")]
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode, Target,
};
use chrono::{DateTime, SecondsFormat, Utc};
use orderflow_contracts::{ContractError, Envelope, Event, Metadata};
use orderflow_harness::StoreError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

#[cfg(feature = "aws")]
const STORE: &str = "backorder deadlines";

/// A backordered order's time is up (Sales' own timer message; never on the bus).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackorderDeadlinePassed {
    /// The order.
    pub order_id: String,
    /// The deadline.
    pub deadline: DateTime<Utc>,
}

impl Event for BackorderDeadlinePassed {
    const NAME: &'static str = "BackorderDeadlinePassed";
    const SOURCE: &'static str = orderflow_contracts::SALES;
    const SCHEMA_VERSION: u32 = 1;

    fn validate(&self) -> Result<(), ContractError> {
        if self.order_id.trim().is_empty() {
            return Err(ContractError::Invalid {
                event: Self::NAME,
                field: "orderId".into(),
                reason: "must not be empty".into(),
            });
        }
        Ok(())
    }
}

/// The schedule's name: one per order, whatever the order id's characters (names allow 64 of
/// `[0-9a-zA-Z-_.]`).
pub fn schedule_name(order_id: &str) -> String {
    format!("backorder-{}", Uuid::new_v5(&Uuid::NAMESPACE_OID, order_id.as_bytes()).simple())
}

/// The message the schedule delivers: an EventBridge event in form, whose envelope's id is derived
/// from the order (a repeat is the same message) and whose correlation is the backorder's.
pub fn message(order_id: &str, deadline: DateTime<Utc>, cause: &Metadata) -> String {
    let mut envelope = Envelope::caused_by(cause, BackorderDeadlinePassed { order_id: order_id.to_string(), deadline });
    envelope.metadata.event_id = Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("deadline/{order_id}").as_bytes());
    envelope.metadata.occurred_at = deadline;
    json!({
        "version": "0", "id": envelope.metadata.event_id.to_string(),
        "detail-type": BackorderDeadlinePassed::NAME, "source": BackorderDeadlinePassed::SOURCE,
        "account": "", "time": deadline, "region": "", "resources": [],
        "detail": envelope,
    })
    .to_string()
}

/// Where deadlines are kept.
#[async_trait]
pub trait Deadlines: Send + Sync {
    /// Makes sure `order_id` has a schedule that delivers `message` at `at` (a second call for the
    /// same order changes nothing).
    async fn set(&self, order_id: &str, at: DateTime<Utc>, message: String) -> Result<(), StoreError>;
    /// Deletes the order's schedule, if there is one.
    async fn clear(&self, order_id: &str) -> Result<(), StoreError>;
}

/// The EventBridge Scheduler adapter: a one-time `at()` schedule per order, sending to the queue of
/// `sales-order-status` with the scheduler's role, deleted by the scheduler after it fires. A
/// delivery the scheduler gives up on goes to `dead_letter_arn` (the consumer's dead-letter queue,
/// whose alarm pages), never silently nowhere.
#[derive(Debug, Clone)]
#[cfg(feature = "aws")]
pub struct SchedulerDeadlines {
    client: aws_sdk_scheduler::Client,
    group: String,
    queue_arn: String,
    role_arn: String,
    dead_letter_arn: String,
}

#[cfg(feature = "aws")]
impl SchedulerDeadlines {
    /// Schedules in `group`, delivering to `queue_arn` as `role_arn`, failures to `dead_letter_arn`.
    pub fn new(
        client: aws_sdk_scheduler::Client,
        group: String,
        queue_arn: String,
        role_arn: String,
        dead_letter_arn: String,
    ) -> Self {
        Self { client, group, queue_arn, role_arn, dead_letter_arn }
    }
}

#[cfg(feature = "aws")]
fn scheduler_error<E>(e: aws_sdk_scheduler::error::SdkError<E>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError::retryable(STORE, aws_sdk_scheduler::error::DisplayErrorContext(e).to_string())
}

#[cfg(feature = "aws")]
#[async_trait]
impl Deadlines for SchedulerDeadlines {
    async fn set(&self, order_id: &str, at: DateTime<Utc>, message: String) -> Result<(), StoreError> {
        let build = |e: aws_sdk_scheduler::error::BuildError| StoreError::permanent(STORE, e.to_string());
        let window = FlexibleTimeWindow::builder().mode(FlexibleTimeWindowMode::Off).build().map_err(build)?;
        let target = Target::builder()
            .arn(&self.queue_arn)
            .role_arn(&self.role_arn)
            .input(message)
            .dead_letter_config(DeadLetterConfig::builder().arn(&self.dead_letter_arn).build())
            .build()
            .map_err(build)?;
        let created = self
            .client
            .create_schedule()
            .name(schedule_name(order_id))
            .group_name(&self.group)
            .schedule_expression(format!("at({})", at.format("%Y-%m-%dT%H:%M:%S")))
            .schedule_expression_timezone("UTC")
            .flexible_time_window(window)
            .target(target)
            .action_after_completion(ActionAfterCompletion::Delete)
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_conflict_exception()) => Ok(()),
            Err(e) => Err(scheduler_error(e)),
        }
    }

    async fn clear(&self, order_id: &str) -> Result<(), StoreError> {
        let deleted = self.client.delete_schedule().name(schedule_name(order_id)).group_name(&self.group).send().await;
        match deleted {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|se| se.is_resource_not_found_exception()) => Ok(()),
            Err(e) => Err(scheduler_error(e)),
        }
    }
}

/// The in-memory fake: one schedule per order, as the scheduler keeps them (a second `set` keeps the
/// first, as `CreateSchedule` answers a conflict).
#[derive(Debug, Default)]
pub struct InMemoryDeadlines {
    schedules: Mutex<HashMap<String, (DateTime<Utc>, String)>>,
    deletes: std::sync::atomic::AtomicUsize,
}

impl InMemoryDeadlines {
    /// The order's schedule: when, and the message it delivers.
    pub fn of(&self, order_id: &str) -> Option<(DateTime<Utc>, String)> {
        self.schedules.lock().expect("lock").get(order_id).cloned()
    }

    /// How many deletes were asked for, found or not: each is a DeleteSchedule request on AWS.
    pub fn deletes(&self) -> usize {
        self.deletes.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait]
impl Deadlines for InMemoryDeadlines {
    async fn set(&self, order_id: &str, at: DateTime<Utc>, message: String) -> Result<(), StoreError> {
        self.schedules.lock().expect("lock").entry(order_id.to_string()).or_insert((at, message));
        Ok(())
    }

    async fn clear(&self, order_id: &str) -> Result<(), StoreError> {
        self.deletes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.schedules.lock().expect("lock").remove(order_id);
        Ok(())
    }
}

/// Formats a deadline for people and logs.
pub fn show(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}
