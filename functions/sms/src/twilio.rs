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
//! | any other 4xx (bad number, unverified sender, ...) | rejected: permanent, dead-lettered with Twilio's message |

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

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

/// The Twilio adapter.
#[derive(Debug, Clone)]
pub struct TwilioSender {
    http: reqwest::Client,
    base_url: String,
    credentials: TwilioCredentials,
    from: String,
}

#[derive(Deserialize)]
struct Sent {
    sid: String,
}

#[derive(Deserialize)]
struct TwilioProblem {
    code: Option<i64>,
    message: Option<String>,
}

/// A `Retry-After` header in seconds (Twilio's form); an HTTP date is not used by Twilio and reads as
/// absent, which falls back to the growing delay.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

impl TwilioSender {
    /// Sends from `from` (an E.164 number or a messaging service's sender) through the API at
    /// `base_url` (`https://api.twilio.com`; tests point it at their own server). Every request gives
    /// up after 5 s, so a slow provider costs a retry, not the whole batch.
    pub fn new(base_url: impl Into<String>, credentials: TwilioCredentials, from: impl Into<String>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client with timeouts");
        Self { http, base_url: base_url.into().trim_end_matches('/').to_string(), credentials, from: from.into() }
    }
}

#[async_trait]
impl SmsSender for TwilioSender {
    async fn send(&self, sms: &Sms) -> Result<String, SmsError> {
        let url = format!("{}/2010-04-01/Accounts/{}/Messages.json", self.base_url, self.credentials.account_sid);
        let response = self
            .http
            .post(&url)
            .basic_auth(&self.credentials.account_sid, Some(&self.credentials.auth_token))
            .form(&[("To", sms.to.as_str()), ("From", self.from.as_str()), ("Body", sms.body.as_str())])
            .send()
            .await
            .map_err(|e| SmsError::Unavailable {
                // reqwest's error names the URL, never the form body.
                reason: if e.is_timeout() { "timed out".into() } else { format!("request failed: {e}") },
                after: None,
            })?;
        let status = response.status();
        let after = retry_after(response.headers());
        let text = response.text().await.unwrap_or_default();
        if status.is_success() {
            return serde_json::from_str::<Sent>(&text)
                .map(|s| s.sid)
                .map_err(|e| SmsError::Unavailable { reason: format!("unreadable answer ({e})"), after: None });
        }
        let problem = serde_json::from_str::<TwilioProblem>(&text).ok();
        let detail = problem
            .map(|p| format!("{} {}", p.code.map(|c| c.to_string()).unwrap_or_default(), p.message.unwrap_or_default()))
            .unwrap_or_default();
        let reason = format!("HTTP {} {}", status.as_u16(), detail.trim()).trim_end().to_string();
        if status.as_u16() == 429 || status.is_server_error() {
            Err(SmsError::Unavailable { reason, after })
        } else {
            Err(SmsError::Rejected(reason))
        }
    }
}

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
