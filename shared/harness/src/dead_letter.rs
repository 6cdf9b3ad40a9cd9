//! Where a record that can never succeed goes at once: the consumer's own dead-letter queue, with the
//! reason attached as message attributes. The copy keeps everything redrive needs: the original body
//! unchanged, every message attribute it had (a webhook delivery's `subscriptionId`, say) and its FIFO
//! group, so a redriven message is the message that failed, plus the `orderflow.*` reason attributes.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsMessageAttribute;
#[cfg(feature = "aws")]
use aws_sdk_sqs::{primitives::Blob, types::MessageAttributeValue};

/// The prefix of the attributes the harness adds to a dead letter (reason, consumer, source message
/// id, receive count). An original attribute with this prefix (from an earlier dead-lettering that
/// was redriven) is replaced, never kept twice.
pub const ATTRIBUTE_PREFIX: &str = "orderflow.";

/// SQS's limit of message attributes per message.
pub const MAX_ATTRIBUTES: usize = 10;

/// One dead-lettered record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The consumer that gave up on it.
    pub consumer: String,
    /// The SQS message id it had on the source queue.
    pub message_id: String,
    /// The original body, unchanged.
    pub body: String,
    /// Why it can never succeed.
    pub reason: String,
    /// How many times the source queue had delivered it.
    pub receive_count: u32,
    /// `MessageGroupId` on a FIFO source queue.
    pub message_group_id: Option<String>,
    /// Every message attribute the original had.
    pub attributes: HashMap<String, SqsMessageAttribute>,
}

/// Sending to the dead-letter queue failed; the harness then hands the record back to SQS instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not dead-letter message {message_id}: {reason}")]
pub struct DeadLetterError {
    /// The record.
    pub message_id: String,
    /// What went wrong.
    pub reason: String,
}

/// The port.
#[async_trait]
pub trait DeadLetterSink: Send + Sync {
    /// Stores `letter` durably, or fails.
    async fn send(&self, letter: DeadLetter) -> Result<(), DeadLetterError>;
}

#[cfg(feature = "aws")]
/// The SQS adapter.
#[derive(Debug, Clone)]
pub struct SqsDeadLetterQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

#[cfg(feature = "aws")]
impl SqsDeadLetterQueue {
    /// Sends to `queue_url` (a FIFO DLQ when it ends in `.fifo`).
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }
}

#[cfg(feature = "aws")]
fn attribute(value: impl Into<String>) -> Result<MessageAttributeValue, String> {
    MessageAttributeValue::builder().data_type("String").string_value(value).build().map_err(|e| e.to_string())
}

#[cfg(feature = "aws")]
/// An attribute as Lambda delivered it, as SQS takes it back.
fn original(value: &SqsMessageAttribute) -> Result<MessageAttributeValue, String> {
    MessageAttributeValue::builder()
        .data_type(value.data_type.clone().unwrap_or_else(|| "String".into()))
        .set_string_value(value.string_value.clone())
        .set_binary_value(value.binary_value.as_ref().map(|b| Blob::new(b.0.clone())))
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(feature = "aws")]
/// The attributes of the copy: the reason, every original one (but stale `orderflow.*` ones), then
/// the harness's other ones as far as SQS's ten allow. Only an original with all ten of SQS's
/// attributes loses one (the last by name) to the reason, with a warning.
pub fn copy_attributes(letter: &DeadLetter) -> Result<Vec<(String, MessageAttributeValue)>, String> {
    let mut out: Vec<(String, MessageAttributeValue)> = Vec::new();
    let mut names: Vec<&String> = letter.attributes.keys().filter(|k| !k.starts_with(ATTRIBUTE_PREFIX)).collect();
    names.sort();
    if names.len() >= MAX_ATTRIBUTES {
        let dropped: Vec<&String> = names.split_off(MAX_ATTRIBUTES - 1);
        tracing::warn!(consumer = %letter.consumer, message_id = %letter.message_id, ?dropped,
            "the original has all ten message attributes: dead-lettered without these, to keep the reason");
    }
    for name in names {
        out.push((name.clone(), original(&letter.attributes[name])?));
    }
    // SQS attribute values are limited to 256 KB with the body; reasons are short, cut them anyway.
    let reason: String = letter.reason.chars().take(1024).collect();
    out.insert(0, ("orderflow.reason".to_string(), attribute(reason)?));
    let ours = [
        ("orderflow.consumer", attribute(letter.consumer.clone())?),
        ("orderflow.sourceMessageId", attribute(letter.message_id.clone())?),
        (
            "orderflow.receiveCount",
            MessageAttributeValue::builder()
                .data_type("Number")
                .string_value(letter.receive_count.to_string())
                .build()
                .map_err(|e| e.to_string())?,
        ),
    ];
    for (name, value) in ours {
        if out.len() < MAX_ATTRIBUTES {
            out.push((name.to_string(), value));
        }
    }
    Ok(out)
}

#[cfg(feature = "aws")]
#[async_trait]
impl DeadLetterSink for SqsDeadLetterQueue {
    async fn send(&self, letter: DeadLetter) -> Result<(), DeadLetterError> {
        let fail = |reason: String| DeadLetterError { message_id: letter.message_id.clone(), reason };
        let mut req = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            // SQS refuses an empty body; an empty record is still worth keeping with its reason.
            .message_body(if letter.body.is_empty() { "(empty body)".to_string() } else { letter.body.clone() });
        for (name, value) in copy_attributes(&letter).map_err(fail)? {
            req = req.message_attributes(name, value);
        }
        if self.queue_url.ends_with(".fifo") {
            req = req
                .message_group_id(letter.message_group_id.clone().unwrap_or_else(|| letter.consumer.clone()))
                .message_deduplication_id(letter.message_id.clone());
        }
        req.send().await.map_err(|e| fail(aws_sdk_sqs::error::DisplayErrorContext(e).to_string()))?;
        Ok(())
    }
}

/// The in-memory fake: keeps what it was sent, and can be told to fail.
#[derive(Debug, Default)]
pub struct InMemoryDeadLetters {
    letters: Mutex<Vec<DeadLetter>>,
    failing: std::sync::atomic::AtomicBool,
}

impl InMemoryDeadLetters {
    /// Everything dead-lettered so far.
    pub fn letters(&self) -> Vec<DeadLetter> {
        self.letters.lock().expect("lock").clone()
    }
    /// Makes every later send fail (the queue is unreachable).
    pub fn fail_sends(&self, failing: bool) {
        self.failing.store(failing, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait]
impl DeadLetterSink for InMemoryDeadLetters {
    async fn send(&self, letter: DeadLetter) -> Result<(), DeadLetterError> {
        if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(DeadLetterError { message_id: letter.message_id, reason: "queue unreachable".into() });
        }
        self.letters.lock().expect("lock").push(letter);
        Ok(())
    }
}
