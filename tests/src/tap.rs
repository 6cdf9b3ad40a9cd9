//! A tap: a rule and a queue of its own on the bus, to see what was published without touching
//! the consumers' queues. Removed by [`Local::close`], or when dropped (a failed test too).

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::stack::{create_queue, Local};
use crate::wait::eventually;

/// One event seen on the bus through a [`Tap`].
#[derive(Debug, Clone)]
pub struct Tapped {
    /// `detail-type`.
    pub detail_type: String,
    /// `source`.
    pub source: String,
    /// The order it concerns.
    pub order_id: String,
    /// Envelope event id.
    pub event_id: String,
    /// Envelope correlation id.
    pub correlation_id: String,
    /// When the producer says it happened.
    pub occurred_at: DateTime<Utc>,
    /// The whole EventBridge event, as delivered.
    pub body: String,
    /// The replay that re-delivered it, if any.
    pub replay_name: Option<String>,
}

/// A rule + queue on the bus that receives every Orderflow event whose correlation id starts with a
/// prefix: how the demo prints a timeline and the tests see what was published, without touching the
/// consumers' own queues. Dropped without [`Local::close`] (a test that failed), it removes its rule
/// and queue all the same: a tap left behind would receive every later event and slow the emulator
/// for every later test.
pub struct Tap {
    rule: String,
    /// The tap's queue.
    pub queue_url: String,
    bus: String,
    endpoint: String,
    closed: bool,
}

impl Tap {
    /// The name of the tap's rule on the bus.
    pub fn rule(&self) -> &str {
        &self.rule
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let (rule, bus, queue, endpoint) =
            (self.rule.clone(), self.bus.clone(), self.queue_url.clone(), self.endpoint.clone());
        // Drop cannot await, and may run while a test's runtime unwinds a panic: the removal runs on
        // a thread of its own, with its own runtime and clients, and is waited for.
        let removed = std::thread::spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let sdk = crate::stack::sdk_config(&endpoint).await;
                remove(&aws_sdk_eventbridge::Client::new(&sdk), &aws_sdk_sqs::Client::new(&sdk), &bus, &rule, &queue)
                    .await
            })
        })
        .join();
        match removed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("tap {}: could not remove it: {e:#}", self.rule),
            Err(_) => eprintln!("tap {}: its removal panicked", self.rule),
        }
    }
}

async fn remove(
    events: &aws_sdk_eventbridge::Client,
    sqs: &aws_sdk_sqs::Client,
    bus: &str,
    rule: &str,
    queue: &str,
) -> Result<()> {
    // Each removal is tried, whatever became of the one before: a rule left behind is what costs.
    let target = events.remove_targets().event_bus_name(bus).rule(rule).ids("tap").send().await.map(|_| ());
    let rule_gone = events.delete_rule().event_bus_name(bus).name(rule).send().await.map(|_| ());
    let queue_gone = sqs.delete_queue().queue_url(queue).send().await.map(|_| ());
    let failed: Vec<String> = [
        target.err().map(|e| format!("its target: {}", aws_sdk_eventbridge::error::DisplayErrorContext(e))),
        rule_gone.err().map(|e| format!("its rule: {}", aws_sdk_eventbridge::error::DisplayErrorContext(e))),
        queue_gone.err().map(|e| format!("its queue: {}", aws_sdk_sqs::error::DisplayErrorContext(e))),
    ]
    .into_iter()
    .flatten()
    .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("tap {rule}: not removed: {}", failed.join("; "))
    }
}

impl Local {
    /// Starts a tap for every event whose correlation id starts with `prefix`.
    pub async fn tap(&self, prefix: &str) -> Result<Tap> {
        self.observe(&json!({
            "source": [{"prefix": "orderflow."}],
            "detail": {"metadata": {"correlationId": [{"prefix": prefix}]}}
        }))
        .await
    }

    /// A rule with `pattern` on the bus, and a queue of its own for what it matches (read it with
    /// [`Local::drain`], remove it with [`Local::close`]).
    pub async fn observe(&self, pattern: &Value) -> Result<Tap> {
        let name = format!("tap-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let (queue_url, arn) = create_queue(&self.sqs, &name).await?;
        let bus = self.output("EventBusName").to_string();
        // The tap exists from here: whatever fails next, dropping it removes what was made.
        let tap = Tap { rule: name, queue_url, bus, endpoint: self.output("EndpointUrl").to_string(), closed: false };
        self.events
            .put_rule()
            .event_bus_name(&tap.bus)
            .name(&tap.rule)
            .event_pattern(pattern.to_string())
            .send()
            .await?;
        self.events
            .put_targets()
            .event_bus_name(&tap.bus)
            .rule(&tap.rule)
            .targets(aws_sdk_eventbridge::types::Target::builder().id("tap").arn(arn).build()?)
            .send()
            .await?;
        Ok(tap)
    }

    /// Takes whatever the tap has received (waits up to `wait` for the first message).
    pub async fn drain(&self, tap: &Tap, wait: Duration) -> Result<Vec<Tapped>> {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&tap.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .send()
            .await?;
        let mut seen = Vec::new();
        for m in out.messages.unwrap_or_default() {
            if let Some(handle) = m.receipt_handle() {
                self.sqs.delete_message().queue_url(&tap.queue_url).receipt_handle(handle).send().await?;
            }
            let body = m.body.unwrap_or_default();
            seen.push(parse_tapped(&body)?);
        }
        Ok(seen)
    }

    /// Drains the tap until `until` holds for everything seen so far, or `timeout`.
    pub async fn collect(
        &self,
        tap: &Tap,
        timeout: Duration,
        until: impl Fn(&[Tapped]) -> bool,
    ) -> Result<Vec<Tapped>> {
        let all = std::sync::Mutex::new(Vec::new());
        let done = eventually("the tap's condition", timeout, || async {
            let batch =
                if until(&all.lock().unwrap()) { Vec::new() } else { self.drain(tap, Duration::from_secs(1)).await? };
            let mut seen = all.lock().unwrap();
            seen.extend(batch);
            Ok(until(&seen).then_some(()))
        })
        .await;
        let all = all.into_inner().unwrap();
        match done {
            Ok(()) => Ok(all),
            Err(e) => bail!("{e}; saw {:?}", all.iter().map(|t| (&t.order_id, &t.detail_type)).collect::<Vec<_>>()),
        }
    }

    /// Removes the tap's rule and queue.
    pub async fn close(&self, mut tap: Tap) -> Result<()> {
        tap.closed = true;
        remove(&self.events, &self.sqs, &tap.bus, &tap.rule, &tap.queue_url).await
    }
}

fn parse_tapped(body: &str) -> Result<Tapped> {
    let event: Value = serde_json::from_str(body).with_context(|| format!("tap got a non-JSON body: {body}"))?;
    let meta = &event["detail"]["metadata"];
    let data = &event["detail"]["data"];
    let order_id = data["orderId"].as_str().or_else(|| data["order"]["orderId"].as_str()).unwrap_or_default();
    Ok(Tapped {
        detail_type: event["detail-type"].as_str().unwrap_or_default().to_string(),
        source: event["source"].as_str().unwrap_or_default().to_string(),
        order_id: order_id.to_string(),
        event_id: meta["eventId"].as_str().unwrap_or_default().to_string(),
        correlation_id: meta["correlationId"].as_str().unwrap_or_default().to_string(),
        occurred_at: meta["occurredAt"].as_str().and_then(|t| t.parse().ok()).unwrap_or_else(Utc::now),
        body: body.to_string(),
        replay_name: event["replay-name"].as_str().map(str::to_string),
    })
}
