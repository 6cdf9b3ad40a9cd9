//! A stand-in for Twilio's Messages API: an HTTP server (wiremock) on the port the local deployment
//! points the SMS consumer at (`infra/deploy-local.sh`, 127.0.0.1:4590). It answers every text like
//! Twilio does (201 with a message sid) and keeps what it received, so the tests and the demo can
//! look at the texts the real binary sent. A phone number can be given a script of failures first
//! (503s, 429 with `Retry-After`), to see the consumer hold back and recover.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context as _, Result};
use tokio::sync::OnceCell;
use wiremock::matchers::{body_string_contains, method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// One text as the stand-in received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// The form's `To`.
    pub to: String,
    /// The form's `Body`.
    pub body: String,
    /// The `Authorization` header.
    pub authorization: String,
    /// The status the stand-in answered.
    pub status: u16,
}

/// The stand-in server and what it received.
pub struct TwilioStandIn {
    server: MockServer,
    log: Arc<Mutex<Vec<Received>>>,
}

fn received(request: &Request, status: u16) -> Received {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&request.body).unwrap_or_default();
    let field = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
    Received {
        at: Instant::now(),
        to: field("To"),
        body: field("Body"),
        authorization: request.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().into(),
        status,
    }
}

/// Answers its script first (one answer per request), then 201 like Twilio; logs every request.
struct Scripted {
    script: Mutex<Vec<ResponseTemplate>>,
    statuses: Mutex<Vec<u16>>,
    log: Arc<Mutex<Vec<Received>>>,
    /// How long each accepted text takes to answer.
    delay: std::time::Duration,
}

impl Respond for Scripted {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let mut script = self.script.lock().unwrap();
        let mut statuses = self.statuses.lock().unwrap();
        let (answer, status) = if script.is_empty() {
            (
                ResponseTemplate::new(201)
                    .set_body_json(serde_json::json!({"sid": "SM-stand-in", "status": "queued"}))
                    .set_delay(self.delay),
                201,
            )
        } else {
            (script.remove(0), statuses.remove(0))
        };
        self.log.lock().unwrap().push(received(request, status));
        answer
    }
}

static STAND_IN: OnceCell<TwilioStandIn> = OnceCell::const_new();

impl TwilioStandIn {
    /// The stand-in of this process, started on first use on 127.0.0.1:4590 (or
    /// `ORDERFLOW_TWILIO_STAND_IN_PORT`). It runs on a thread of its own, for the whole process.
    pub async fn shared() -> Result<&'static TwilioStandIn> {
        STAND_IN
            .get_or_try_init(|| async {
                let port = std::env::var("ORDERFLOW_TWILIO_STAND_IN_PORT").unwrap_or_else(|_| "4590".into());
                let listener = std::net::TcpListener::bind(format!("127.0.0.1:{port}"))
                    .with_context(|| format!("the Twilio stand-in cannot listen on 127.0.0.1:{port}"))?;
                let server = MockServer::builder().listener(listener).start().await;
                let log = Arc::new(Mutex::new(Vec::new()));
                let stand_in = TwilioStandIn { server, log };
                stand_in.script("", Vec::new(), 100, std::time::Duration::ZERO).await;
                Ok(stand_in)
            })
            .await
    }

    async fn script(&self, to: &str, answers: Vec<(u16, Option<u64>)>, priority: u8, delay: std::time::Duration) {
        let statuses = answers.iter().map(|(s, _)| *s).collect();
        // A 400 says what Twilio's does, number and all (error 21211), as a provider's text would.
        let number = to.to_string();
        let script = answers
            .into_iter()
            .map(|(status, retry_after)| match retry_after {
                Some(secs) => ResponseTemplate::new(status).insert_header("Retry-After", secs.to_string().as_str()),
                None if status == 400 => ResponseTemplate::new(status).set_body_json(serde_json::json!({
                    "code": 21211,
                    "message": format!("The 'To' number {number} is not a valid phone number."),
                    "status": 400
                })),
                None => ResponseTemplate::new(status),
            })
            .collect();
        let responder =
            Scripted { script: Mutex::new(script), statuses: Mutex::new(statuses), log: Arc::clone(&self.log), delay };
        let to_field = format!("To={}", to.replace('+', "%2B"));
        Mock::given(method("POST"))
            .and(path_regex(r"^/2010-04-01/Accounts/[^/]+/Messages\.json$"))
            .and(body_string_contains(if to.is_empty() { "To=" } else { to_field.as_str() }))
            .respond_with(responder)
            .with_priority(priority)
            .mount(&self.server)
            .await;
    }

    /// Texts to `to` are answered with these `(status, Retry-After seconds)` first, then accepted.
    pub async fn fail_first(&self, to: &str, answers: Vec<(u16, Option<u64>)>) {
        self.script(to, answers, 1, std::time::Duration::ZERO).await;
    }

    /// Texts to `to` are accepted, each answered only after `delay` (a slow provider).
    pub async fn answer_slowly(&self, to: &str, delay: std::time::Duration) {
        self.script(to, Vec::new(), 1, delay).await;
    }

    /// Every request for `to` so far, oldest first.
    pub fn received_for(&self, to: &str) -> Vec<Received> {
        self.log.lock().unwrap().iter().filter(|r| r.to == to).cloned().collect()
    }

    /// The texts to `to` that were accepted (answered 2xx).
    pub fn delivered_to(&self, to: &str) -> Vec<Received> {
        self.received_for(to).into_iter().filter(|r| (200..300).contains(&r.status)).collect()
    }
}
