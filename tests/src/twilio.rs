//! A stand-in for Twilio's Messages API: an HTTP server (wiremock) on the port the local deployment
//! points the SMS consumer at (`infra/deploy-local.sh`, 127.0.0.1:4590). It answers every text like
//! Twilio does (201 with a message sid) and keeps what it received, so the tests and the demo can
//! look at the texts the real binary sent. A phone number can be given a script of failures first
//! (503s, 429 with `Retry-After`), to see the consumer hold back and recover.
//!
//! One server answers for every process: the tests run as a process each, many at a time (cargo
//! nextest), and the deployment calls one port. Scripts are set and texts read over HTTP, beside
//! Twilio's path (`/_stand-in/...`), so a test talks to the stand-in the same way whichever process
//! runs it. `make test` starts it for the whole run (the `twilio-stand-in` binary); a process that
//! finds the port free (a test or the demo run by hand) starts it on a thread of its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use wiremock::matchers::{method, path, path_regex};
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

/// A text as the server keeps it and hands it out: its arrival on the server's own monotonic
/// clock, nanoseconds since the server started.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Logged {
    at_nanos: u64,
    to: String,
    body: String,
    authorization: String,
    status: u16,
}

/// A number's script: these answers first, then accepted after `delay_millis`.
#[derive(Debug, Serialize, Deserialize)]
struct Script {
    to: String,
    /// `(status, Retry-After seconds)`.
    answers: Vec<(u16, Option<u64>)>,
    delay_millis: u64,
}

/// What the server holds: the scripts by number, and every request.
struct State {
    started: Instant,
    scripts: HashMap<String, Script>,
    log: Vec<Logged>,
}

impl State {
    fn now_nanos(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// What `GET /_stand-in/received` answers: the texts, and the server's clock as it answered.
#[derive(Serialize, Deserialize)]
struct Texts {
    now_nanos: u64,
    texts: Vec<Logged>,
}

/// Twilio's `Messages.json`: the number's script first (one answer per request), then 201 like
/// Twilio; logs every request.
struct Messages(Arc<Mutex<State>>);

impl Respond for Messages {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&request.body).unwrap_or_default();
        let field = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
        let to = field("To");
        let mut state = self.0.lock().unwrap();
        let (answer, status) = match state.scripts.get_mut(&to) {
            Some(script) if !script.answers.is_empty() => {
                let (status, retry_after) = script.answers.remove(0);
                (scripted(&to, status, retry_after), status)
            }
            script => {
                let delay = script.map_or(0, |s| s.delay_millis);
                let accepted = ResponseTemplate::new(201)
                    .set_body_json(serde_json::json!({"sid": "SM-stand-in", "status": "queued"}))
                    .set_delay(Duration::from_millis(delay));
                (accepted, 201)
            }
        };
        let at_nanos = state.now_nanos();
        state.log.push(Logged {
            at_nanos,
            to,
            body: field("Body"),
            authorization: request
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .into(),
            status,
        });
        answer
    }
}

/// A scripted failure as Twilio answers it; a 400 says what Twilio's does, number and all (error
/// 21211), as a provider's text would.
fn scripted(to: &str, status: u16, retry_after: Option<u64>) -> ResponseTemplate {
    match retry_after {
        Some(secs) => ResponseTemplate::new(status).insert_header("Retry-After", secs.to_string().as_str()),
        None if status == 400 => ResponseTemplate::new(status).set_body_json(serde_json::json!({
            "code": 21211,
            "message": format!("The 'To' number {to} is not a valid phone number."),
            "status": 400
        })),
        None => ResponseTemplate::new(status),
    }
}

/// `POST /_stand-in/scripts`: a number's script, replacing any it had.
struct SetScript(Arc<Mutex<State>>);

impl Respond for SetScript {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        match serde_json::from_slice::<Script>(&request.body) {
            Ok(script) => {
                self.0.lock().unwrap().scripts.insert(script.to.clone(), script);
                ResponseTemplate::new(204)
            }
            Err(e) => ResponseTemplate::new(400).set_body_string(format!("not a script: {e}")),
        }
    }
}

/// `GET /_stand-in/received?to=...`: every request for that number so far, oldest first.
struct Read(Arc<Mutex<State>>);

impl Respond for Read {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let to = request.url.query_pairs().find(|(k, _)| k == "to").map(|(_, v)| v.into_owned());
        let state = self.0.lock().unwrap();
        let texts = state.log.iter().filter(|l| Some(&l.to) == to.as_ref()).cloned().collect();
        ResponseTemplate::new(200).set_body_json(Texts { now_nanos: state.now_nanos(), texts })
    }
}

/// The port the local deployment texts (`ORDERFLOW_TWILIO_STAND_IN_PORT`, default 4590).
pub fn port() -> u16 {
    std::env::var("ORDERFLOW_TWILIO_STAND_IN_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(4590)
}

/// Serves the stand-in on `listener` (on a thread of wiremock's own) until the returned server is
/// dropped.
pub async fn serve(listener: std::net::TcpListener) -> MockServer {
    let server = MockServer::builder().listener(listener).start().await;
    let state = Arc::new(Mutex::new(State { started: Instant::now(), scripts: HashMap::new(), log: Vec::new() }));
    Mock::given(method("POST"))
        .and(path_regex(r"^/2010-04-01/Accounts/[^/]+/Messages\.json$"))
        .respond_with(Messages(Arc::clone(&state)))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/_stand-in/scripts"))
        .respond_with(SetScript(Arc::clone(&state)))
        .mount(&server)
        .await;
    Mock::given(method("GET")).and(path("/_stand-in/received")).respond_with(Read(state)).mount(&server).await;
    server
}

/// The stand-in, as a process talks to it.
pub struct TwilioStandIn {
    base: String,
    http: reqwest::Client,
    /// The server, when this process runs it.
    _server: Option<MockServer>,
}

static STAND_IN: OnceCell<TwilioStandIn> = OnceCell::const_new();

impl TwilioStandIn {
    /// The stand-in on 127.0.0.1:`port()`: the one already listening there (`make test` starts it
    /// for the whole run), or else one this process starts and runs until it exits (never with
    /// `ORDERFLOW_TWILIO_STAND_IN=external`, as `make test` sets it).
    pub async fn shared() -> Result<&'static TwilioStandIn> {
        STAND_IN
            .get_or_try_init(|| async {
                let port = port();
                let base = format!("http://127.0.0.1:{port}");
                // No idle connections kept: the client outlives the runtime of the test that built
                // it (`cargo test` runs several tests in one process, a runtime each).
                let http =
                    reqwest::Client::builder().timeout(Duration::from_secs(10)).pool_max_idle_per_host(0).build()?;
                // `make test` runs the stand-in for the whole run and says so: a test process that
                // started its own there, had it died, would take it down with it when it ends.
                let external = std::env::var("ORDERFLOW_TWILIO_STAND_IN").is_ok_and(|v| v == "external");
                let server = match std::net::TcpListener::bind(("127.0.0.1", port)) {
                    Ok(_) if external => bail!("the run's Twilio stand-in is not listening on {base} (stopped?)"),
                    Ok(listener) => Some(serve(listener).await),
                    Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => None,
                    Err(e) => return Err(e).with_context(|| format!("the Twilio stand-in cannot listen on {base}")),
                };
                let stand_in = TwilioStandIn { base, http, _server: server };
                // Whoever holds the port must be the stand-in, or every text would go elsewhere.
                stand_in.received_for("").await.with_context(|| {
                    format!("127.0.0.1:{port} is held by something that is not the Twilio stand-in")
                })?;
                Ok(stand_in)
            })
            .await
    }

    async fn script(&self, to: &str, answers: Vec<(u16, Option<u64>)>, delay: Duration) -> Result<()> {
        let script = Script { to: to.to_string(), answers, delay_millis: delay.as_millis().try_into()? };
        let answer = self.http.post(format!("{}/_stand-in/scripts", self.base)).json(&script).send().await?;
        if !answer.status().is_success() {
            bail!("the stand-in refused the script: {} {}", answer.status(), answer.text().await.unwrap_or_default());
        }
        Ok(())
    }

    /// Texts to `to` are answered with these `(status, Retry-After seconds)` first, then accepted.
    pub async fn fail_first(&self, to: &str, answers: Vec<(u16, Option<u64>)>) {
        self.script(to, answers, Duration::ZERO).await.expect("the Twilio stand-in takes a script");
    }

    /// Texts to `to` are accepted, each answered only after `delay` (a slow provider).
    pub async fn answer_slowly(&self, to: &str, delay: Duration) {
        self.script(to, Vec::new(), delay).await.expect("the Twilio stand-in takes a script");
    }

    async fn received_for(&self, to: &str) -> Result<Vec<Received>> {
        let answer = self.http.get(format!("{}/_stand-in/received", self.base)).query(&[("to", to)]).send().await?;
        if !answer.status().is_success() {
            return Err(anyhow!("GET /_stand-in/received: {}", answer.status()));
        }
        let answer: Texts = answer.json().await?;
        // The server's clock, anchored once for the whole answer: the differences between two
        // texts' arrivals are the server's own, to the nanosecond (a Retry-After is checked from
        // them), whatever the wall clock does.
        let now = Instant::now();
        Ok(answer
            .texts
            .into_iter()
            .map(|l| {
                let ago = Duration::from_nanos(answer.now_nanos.saturating_sub(l.at_nanos));
                Received {
                    at: now.checked_sub(ago).unwrap_or(now),
                    to: l.to,
                    body: l.body,
                    authorization: l.authorization,
                    status: l.status,
                }
            })
            .collect())
    }

    /// Every request for `to` so far, oldest first.
    pub async fn received(&self, to: &str) -> Vec<Received> {
        self.received_for(to).await.expect("the Twilio stand-in answers")
    }

    /// The texts to `to` that were accepted (answered 2xx).
    pub async fn delivered_to(&self, to: &str) -> Vec<Received> {
        self.received(to).await.into_iter().filter(|r| (200..300).contains(&r.status)).collect()
    }
}
