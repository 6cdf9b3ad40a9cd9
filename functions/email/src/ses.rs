//! Sending an email: the `EmailSender` port, the SES v2 adapter and an in-memory fake.
//!
//! | SES answer | outcome |
//! | --- | --- |
//! | sent | done |
//! | `TooManyRequestsException`, `LimitExceededException`, 5xx, timeout | retry after a growing delay |
//! | `MessageRejected`, `MailFromDomainNotVerifiedException`, `BadRequestException`, `AccountSuspendedException`, `SendingPausedException`, `NotFoundException` | rejected: permanent, dead-lettered with the reason |

use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

use crate::render::Email;

/// Why an email was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    /// Worth trying again later.
    #[error("email service unavailable: {0}")]
    Unavailable(String),
    /// SES refused this email for good.
    #[error("email rejected: {0}")]
    Rejected(String),
}

/// Sends emails.
#[async_trait]
pub trait EmailSender: Send + Sync {
    /// Sends `email`; on success, the service's message id.
    async fn send(&self, email: &Email) -> Result<String, EmailError>;
}

const REJECTED: &[&str] = &[
    "MessageRejected",
    "MailFromDomainNotVerifiedException",
    "BadRequestException",
    "AccountSuspendedException",
    "SendingPausedException",
    "NotFoundException",
];

/// The SES v2 adapter: sends from a verified identity.
#[derive(Debug, Clone)]
pub struct SesSender {
    client: aws_sdk_sesv2::Client,
    from: String,
}

impl SesSender {
    /// Sends from `from`, an identity verified in SES.
    pub fn new(client: aws_sdk_sesv2::Client, from: impl Into<String>) -> Self {
        Self { client, from: from.into() }
    }
}

fn content(text: &str) -> Result<Content, EmailError> {
    Content::builder().data(text).charset("UTF-8").build().map_err(|e| EmailError::Rejected(e.to_string()))
}

#[async_trait]
impl EmailSender for SesSender {
    async fn send(&self, email: &Email) -> Result<String, EmailError> {
        let message = Message::builder()
            .subject(content(&email.subject)?)
            .body(Body::builder().text(content(&email.text)?).html(content(&email.html)?).build())
            .build();
        let sent = self
            .client
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().to_addresses(&email.to).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await;
        match sent {
            Ok(out) => Ok(out.message_id().unwrap_or_default().to_string()),
            Err(e) => {
                let code = match &e {
                    SdkError::ServiceError(se) => se.err().code().unwrap_or_default().to_string(),
                    _ => String::new(),
                };
                let reason = format!("{code}: {}", e.message().unwrap_or("no message"));
                if REJECTED.contains(&code.as_str()) {
                    Err(EmailError::Rejected(reason))
                } else {
                    Err(EmailError::Unavailable(aws_sdk_sesv2::error::DisplayErrorContext(e).to_string()))
                }
            }
        }
    }
}

/// The in-memory fake: records what it sent.
#[derive(Debug, Default)]
pub struct RecordingEmail {
    sent: Mutex<Vec<Email>>,
}

impl RecordingEmail {
    /// Every email sent, in order.
    pub fn sent(&self) -> Vec<Email> {
        self.sent.lock().expect("lock").clone()
    }
}

#[async_trait]
impl EmailSender for RecordingEmail {
    async fn send(&self, email: &Email) -> Result<String, EmailError> {
        let mut sent = self.sent.lock().expect("lock");
        sent.push(email.clone());
        Ok(format!("msg-{}", sent.len()))
    }
}
