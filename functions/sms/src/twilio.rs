//! Sending a text: the `SmsSender` port, the Twilio adapter and an in-memory fake.
//!
//! Twilio's Messages API: `POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded
//! `To`, `From`, `Body`, HTTP basic auth with the account SID and auth token. What its answers mean
//! here:
//!
//! | answer | outcome |
//! | --- | --- |
//! | 2xx | sent |
//! | 429 | retry, not before its `Retry-After` (seconds) or a delay growing with the receive count |
//! | 5xx, timeout, connection failure | retry, likewise |
//! | 401 | the credentials are read again from Secrets Manager: if they changed (a rotation), the text is sent again with them once; if not, rejected |
//! | any other 4xx (bad number, unverified sender, ...) | rejected: permanent, dead-lettered with Twilio's message |
//!
//! The credentials are a [`RotatingSecret`]: kept at most `SECRET_MAX_AGE_SECONDS`, and read again
//! at once when Twilio answers 401, so a rotated auth token costs no dead letter.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orderflow_harness::deadline;
use orderflow_harness::secret::RotatingSecret;

use async_trait::async_trait;
use serde::Deserialize;
use tracing::warn;

use crate::message::Sms;

/// Why a text was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsError {
    /// Worth trying again: not before `after` when the provider said so.
    #[error("SMS provider unavailable: {reason}")]
    Unavailable {
        /// What happened (status and the provider's message; never the number or the text).
        reason: String,
        /// The provider's `Retry-After`, if it gave one.
        after: Option<Duration>,
    },
    /// The provider refused this message for good.
    #[error("SMS rejected: {0}")]
    Rejected(String),
}

/// Sends texts.
#[async_trait]
pub trait SmsSender: Send + Sync {
    /// Sends `sms`; on success, the provider's id of the message.
    async fn send(&self, sms: &Sms) -> Result<String, SmsError>;
}

/// Twilio account credentials, as kept in Secrets Manager (`{"accountSid": ..., "authToken": ...}`).
/// `Debug` never shows the token.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TwilioCredentials {
    /// `AC...`.
    pub account_sid: String,
    /// The auth token.
    pub auth_token: String,
}

impl std::fmt::Debug for TwilioCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioCredentials").field("account_sid", &self.account_sid).field("auth_token", &"***").finish()
    }
}

/// How long one request to Twilio may take, connection included.
pub const TWILIO_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest one text may take: one Twilio request, one read of the secret after a 401 (the SDK's
/// 2 s attempt), and the harness's claim and completion. A second request after a rotation is made
/// only when the invocation has time for it; otherwise the text is retried with the new credentials.
pub const RECORD_BUDGET: Duration = Duration::from_secs(8);

/// The Twilio adapter.
#[derive(Debug, Clone)]
pub struct TwilioSender {
    http: reqwest::Client,
    base_url: String,
    credentials: Arc<RotatingSecret<TwilioCredentials>>,
    from: String,
}

/// The secret's JSON as credentials (the error never quotes the value).
pub fn parse_credentials(secret: &str) -> Result<TwilioCredentials, String> {
    serde_json::from_str(secret).map_err(|_| "is not {\"accountSid\": ..., \"authToken\": ...}".to_string())
}

/// One request's answer.
enum Attempt {
    Done(Result<String, SmsError>),
    Unauthorised(String),
}

#[derive(Deserialize)]
struct Sent {
    sid: String,
}

#[derive(Deserialize)]
struct TwilioProblem {
    code: Option<i64>,
}

/// Twilio's `Retry-After` header (seconds), read by the harness's one parser.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    orderflow_harness::error::retry_after(value, std::time::SystemTime::now())
}

impl TwilioSender {
    /// Sends from `from` (an E.164 number or a messaging service's sender) through the API at
    /// `base_url` (`https://api.twilio.com`; tests point it at their own server) with credentials
    /// that never change. Every request gives up after [`TWILIO_TIMEOUT`], so a slow provider costs a
    /// retry, not the whole batch.
    pub fn new(base_url: impl Into<String>, credentials: TwilioCredentials, from: impl Into<String>) -> Self {
        Self::rotating(base_url, Arc::new(RotatingSecret::fixed("twilio", credentials)), from)
    }

    /// As [`TwilioSender::new`], with credentials from a secret that may rotate.
    pub fn rotating(
        base_url: impl Into<String>,
        credentials: Arc<RotatingSecret<TwilioCredentials>>,
        from: impl Into<String>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(TWILIO_TIMEOUT)
            .build()
            .expect("an HTTP client with timeouts");
        Self { http, base_url: base_url.into().trim_end_matches('/').to_string(), credentials, from: from.into() }
    }
}

#[async_trait]
impl SmsSender for TwilioSender {
    async fn send(&self, sms: &Sms) -> Result<String, SmsError> {
        let current = self.credentials.current().await;
        let reason = match self.attempt(&current.value, sms).await {
            Attempt::Done(result) => return result,
            Attempt::Unauthorised(reason) => reason,
        };
        // 401: a rotated token? Read the secret again; only a changed value is worth another request.
        let fresh = match self.credentials.refresh_after_rejection(current.generation).await {
            Ok(Some(fresh)) => fresh,
            Ok(None) => return Err(SmsError::Rejected(reason)),
            Err(e) => return Err(SmsError::Unavailable { reason: format!("{reason}; {e}"), after: None }),
        };
        if !deadline::allows(Duration::ZERO, TWILIO_TIMEOUT) {
            // Too little time for another request: the next delivery uses the new credentials.
            return Err(SmsError::Unavailable {
                reason: format!("{reason}; credentials rotated"),
                after: Some(Duration::ZERO),
            });
        }
        match self.attempt(&fresh.value, sms).await {
            Attempt::Done(result) => result,
            Attempt::Unauthorised(reason) => Err(SmsError::Rejected(reason)),
        }
    }
}

impl TwilioSender {
    /// One request; a 401 is told apart by its status, so the caller can read the secret again.
    async fn attempt(&self, credentials: &TwilioCredentials, sms: &Sms) -> Attempt {
        let url = format!("{}/2010-04-01/Accounts/{}/Messages.json", self.base_url, credentials.account_sid);
        let sent = self
            .http
            .post(&url)
            .basic_auth(&credentials.account_sid, Some(&credentials.auth_token))
            .form(&[("To", sms.to.as_str()), ("From", self.from.as_str()), ("Body", sms.body.as_str())])
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                return Attempt::Done(Err(SmsError::Unavailable {
                    // reqwest's error names the URL, never the form body.
                    reason: if e.is_timeout() { "timed out".into() } else { format!("request failed: {e}") },
                    after: None,
                }));
            }
        };
        let status = response.status();
        let after = retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            // Twilio took the message: a retry would text the customer twice (and bill twice), so
            // an answer whose body did not read or arrive is still a text sent, its SID unknown.
            let sid = serde_json::from_str::<Sent>(&text).map(|s| s.sid).unwrap_or_else(|e| {
                warn!(status = status.as_u16(), error = %e, "Twilio accepted the text; its answer did not read");
                UNKNOWN_SID.to_string()
            });
            return Attempt::Done(Ok(sid));
        }
        // The status and Twilio's error code only: Twilio's message names the number (21211: "The
        // 'To' number +44... is not a valid phone number"), and reasons are logged and kept with
        // dead letters. The code is what Twilio's error reference and console look up.
        let code = serde_json::from_str::<TwilioProblem>(&text).ok().and_then(|p| p.code);
        let reason = match code {
            Some(code) => format!("HTTP {} Twilio error {code}", status.as_u16()),
            None => format!("HTTP {}", status.as_u16()),
        };
        if status == reqwest::StatusCode::UNAUTHORIZED {
            Attempt::Unauthorised(reason)
        } else if status.as_u16() == 429 || status.is_server_error() {
            Attempt::Done(Err(SmsError::Unavailable { reason, after }))
        } else {
            Attempt::Done(Err(SmsError::Rejected(reason)))
        }
    }
}

/// The provider id of a text Twilio accepted with an answer that did not read.
pub const UNKNOWN_SID: &str = "unknown";

/// The in-memory fake: records what it sent.
#[derive(Debug, Default)]
pub struct RecordingSms {
    sent: Mutex<Vec<Sms>>,
}

impl RecordingSms {
    /// Every text sent, in order.
    pub fn sent(&self) -> Vec<Sms> {
        self.sent.lock().expect("lock").clone()
    }
}

#[async_trait]
impl SmsSender for RecordingSms {
    async fn send(&self, sms: &Sms) -> Result<String, SmsError> {
        let mut sent = self.sent.lock().expect("lock");
        sent.push(sms.clone());
        Ok(format!("SM{:032}", sent.len()))
    }
}
