//! `redrive <consumer>`: moves every message of the consumer's dead-letter queue back to its queue,
//! and every event its rule could not put on the queue (the rule's dead-letter queue) too.
//!
//! On AWS it asks SQS to do it (`StartMessageMoveTask`, the console's "start DLQ redrive") and
//! waits for the task to finish. Where SQS does not offer that call (the local emulator answers
//! `InvalidAction`), it moves them itself: receive, send to the queue, then delete from the DLQ, so
//! a crash between the two leaves a message in both queues (handled once: consumers are
//! idempotent), never in neither.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use aws_sdk_sqs::error::ProvideErrorMetadata;
use aws_sdk_sqs::types::MessageSystemAttributeName;

use crate::stack::{queue_arn, ConsumerResources};

/// How the messages were moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// SQS's own move task.
    MessageMoveTask,
    /// This command's receive / send / delete loop.
    ReceiveSendDelete,
}

/// What `redrive` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redriven {
    /// How.
    pub method: Method,
    /// How many messages went back to the queue, in all.
    pub moved: u64,
    /// Of them, how many came from the rule's dead-letter queue (events the bus could not deliver).
    pub undelivered: u64,
}

/// Moves the consumer's dead letters, and its rule's, back to its queue.
///
/// The rule's dead-letter queue is EventBridge's, not the dead-letter queue of an SQS queue, which is
/// all SQS's move task takes: its events are always moved with receive / send / delete.
pub async fn redrive(sqs: &aws_sdk_sqs::Client, consumer: &ConsumerResources) -> Result<Redriven> {
    let mut done = move_dead_letters(sqs, &consumer.dead_letter_queue_url, &consumer.queue_url).await?;
    if let Some(rule_dlq) = &consumer.rule_dead_letter_queue_url {
        let undelivered = receive_send_delete(sqs, rule_dlq, &consumer.queue_url).await.with_context(|| {
            format!("{} dead letter(s) moved back; then moving the rule's undelivered events failed", done.moved)
        })?;
        done.undelivered = undelivered;
        done.moved += undelivered;
    }
    Ok(done)
}

/// Moves every message of the dead-letter queue `from` to its source queue `to`.
async fn move_dead_letters(sqs: &aws_sdk_sqs::Client, from: &str, to: &str) -> Result<Redriven> {
    let source = queue_arn(sqs, from).await?;
    let destination = queue_arn(sqs, to).await?;
    match sqs.start_message_move_task().source_arn(&source).destination_arn(&destination).send().await {
        Ok(_) => Ok(Redriven {
            method: Method::MessageMoveTask,
            moved: wait_for_move_task(sqs, &source).await?,
            undelivered: 0,
        }),
        Err(e)
            if matches!(
                e.code(),
                Some("InvalidAction" | "UnsupportedOperation" | "AWS.SimpleQueueService.UnsupportedOperation")
            ) =>
        {
            Ok(Redriven {
                method: Method::ReceiveSendDelete,
                moved: receive_send_delete(sqs, from, to).await?,
                undelivered: 0,
            })
        }
        Err(e) => bail!("StartMessageMoveTask: {}", aws_sdk_sqs::error::DisplayErrorContext(e)),
    }
}

async fn wait_for_move_task(sqs: &aws_sdk_sqs::Client, source_arn: &str) -> Result<u64> {
    for _ in 0..600 {
        let tasks = sqs.list_message_move_tasks().source_arn(source_arn).max_results(1).send().await?;
        if let Some(task) = tasks.results().first() {
            match task.status() {
                Some("COMPLETED") => return Ok(task.approximate_number_of_messages_moved() as u64),
                Some("FAILED") | Some("CANCELLED") => {
                    bail!("the move task ended {:?}: {}", task.status(), task.failure_reason().unwrap_or_default())
                }
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("the move task did not finish within 10 minutes; see `aws sqs list-message-move-tasks`")
}

async fn receive_send_delete(sqs: &aws_sdk_sqs::Client, from: &str, to: &str) -> Result<u64> {
    let mut moved = 0;
    loop {
        let received = sqs
            .receive_message()
            .queue_url(from)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(60)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .context("receiving from the dead-letter queue")?;
        let messages = received.messages();
        if messages.is_empty() {
            return Ok(moved);
        }
        for message in messages {
            let mut send = sqs
                .send_message()
                .queue_url(to)
                .message_body(message.body().unwrap_or_default())
                .set_message_attributes(message.message_attributes().cloned());
            if let Some(group) = message.attributes().and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId)) {
                send = send.message_group_id(group);
            }
            send.send().await.context("sending back to the queue")?;
            if let Some(handle) = message.receipt_handle() {
                sqs.delete_message()
                    .queue_url(from)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .context("deleting from the dead-letter queue")?;
            }
            moved += 1;
        }
    }
}
