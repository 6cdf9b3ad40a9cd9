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

/// The longest one email may take: one SES call (the SDK's 5 s per call, `harness::aws`) and the
/// harness's claim and completion.
pub const RECORD_BUDGET: std::time::Duration = std::time::Duration::from_secs(6);

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
                // The error code only: SES's message names the address it refused ("Email address is
                // not verified ... ada@example.com"), and reasons are logged and kept with dead
                // letters. A failure without a code (the network) has no address in it.
                if REJECTED.contains(&code.as_str()) {
                    Err(EmailError::Rejected(format!("SES {code}")))
                } else if !code.is_empty() {
                    Err(EmailError::Unavailable(format!("SES {code}")))
                } else {
                    Err(EmailError::Unavailable(aws_sdk_sesv2::error::DisplayErrorContext(e).to_string()))
                }
            }
        }
    }
}

/// Checked once at init: is SES v2 there, and may `from` send? SES v2 missing (LocalStack's free
/// edition has none) stops the function at start with an error naming the service and the fix, rather
/// than failing every email later. A sender identity that is unknown or unverified only warns: SES
/// then rejects each email, which goes to the DLQ with SES's reason, and a redrive sends it once the
/// identity is verified.
pub async fn check_sender(client: &aws_sdk_sesv2::Client, from: &str) -> Result<(), String> {
    let domain = from.rsplit_once('@').map(|(_, d)| d).unwrap_or(from);
    for identity in [from, domain] {
        match client.get_email_identity().email_identity(identity).send().await {
            Ok(found) if found.verified_for_sending_status() => return Ok(()),
            Ok(_) => {
                tracing::warn!(identity, "the SES sender identity is not verified yet: emails will be dead-lettered until it is");
                return Ok(());
            }
            Err(SdkError::ServiceError(se)) if se.err().code() == Some("NotFoundException") => continue,
            Err(e) => {
                return Err(format!(
                    "Amazon SES v2 does not answer here ({}): the email consumer needs SES v2 (on LocalStack that is the paid \
                     edition; locally use MiniStack, the default of make demo and make test)",
                    aws_sdk_sesv2::error::DisplayErrorContext(e)
                ))
            }
        }
    }
    tracing::warn!(
        from,
        "no SES identity for the sender or its domain: emails will be dead-lettered until one is verified"
    );
    Ok(())
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
