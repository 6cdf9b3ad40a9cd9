//! The Twilio adapter against an HTTP server the test runs (wiremock): the request Twilio's API
//! expects, and what each kind of answer becomes.

use std::sync::Arc;
use std::time::Duration;

use orderflow_harness::secret::{InMemorySecret, RotatingSecret};
use pretty_assertions::assert_eq;
use sms::message::Sms;
use sms::twilio::{parse_credentials, SmsError, SmsSender, TwilioCredentials, TwilioSender};
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SID: &str = "AC00000000000000000000000000000001";

fn sender(server: &MockServer) -> TwilioSender {
    TwilioSender::new(
        server.uri(),
        TwilioCredentials { account_sid: SID.into(), auth_token: "test-token".into() },
        "+15005550006",
    )
}

fn sms() -> Sms {
    Sms { order_id: "ord-1".into(), to: "+447700900123".into(), body: "Orderflow: order ord-1 & co.".into() }
}

#[tokio::test]
async fn a_text_is_a_form_post_with_basic_auth_to_the_accounts_messages() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/2010-04-01/Accounts/{SID}/Messages.json")))
        // base64("AC...1:test-token")
        .and(header("authorization", "Basic QUMwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMTp0ZXN0LXRva2Vu"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains("To=%2B447700900123"))
        .and(body_string_contains("From=%2B15005550006"))
        .and(body_string_contains("Body=Orderflow%3A+order+ord-1+%26+co."))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({"sid": "SM123", "status": "queued"})))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(sender(&server).send(&sms()).await.unwrap(), "SM123");
}

#[tokio::test]
async fn each_answer_means_what_twilio_documents() {
    let cases: Vec<(ResponseTemplate, SmsError)> = vec![
        (
            ResponseTemplate::new(429).insert_header("Retry-After", "2"),
            SmsError::Unavailable { reason: "HTTP 429".into(), after: Some(Duration::from_secs(2)) },
        ),
        (ResponseTemplate::new(503), SmsError::Unavailable { reason: "HTTP 503".into(), after: None }),
        (
            ResponseTemplate::new(400)
                .set_body_json(serde_json::json!({"code": 21211, "message": "The 'To' number +447700900123 is not a valid phone number."})),
            // The code, never Twilio's message: it names the number.
            SmsError::Rejected("HTTP 400 Twilio error 21211".into()),
        ),
        (ResponseTemplate::new(401), SmsError::Rejected("HTTP 401".into())),
    ];
    for (answer, expected) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST")).respond_with(answer).mount(&server).await;
        assert_eq!(sender(&server).send(&sms()).await.unwrap_err(), expected);
    }
}

#[tokio::test]
async fn a_text_twilio_accepted_is_sent_even_when_its_answer_does_not_read() {
    // Retrying would text the customer a second time, at the shop's cost.
    for body in ["<html>gateway</html>", ""] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(201).set_body_string(body))
            .expect(1)
            .mount(&server)
            .await;
        assert_eq!(sender(&server).send(&sms()).await, Ok(sms::twilio::UNKNOWN_SID.to_string()), "{body:?}");
    }
}

#[tokio::test]
async fn a_provider_that_does_not_answer_in_time_is_unavailable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(8)))
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    let err = sender(&server).send(&sms()).await.unwrap_err();
    assert_eq!(err, SmsError::Unavailable { reason: "timed out".into(), after: None });
    assert!(started.elapsed() < Duration::from_secs(7), "gave up at the 5 s timeout");
}

/// A Twilio that accepts only `token` (and answers 401 to any other), as after a rotation.
async fn accepting_only(token: &str) -> MockServer {
    let server = MockServer::start().await;
    let basic = base64_basic(SID, token);
    Mock::given(method("POST"))
        .and(header("authorization", basic.as_str()))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({"sid": "SM456"})))
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(serde_json::json!({"code": 20003, "message": "Authenticate"})),
        )
        .with_priority(10)
        .mount(&server)
        .await;
    server
}

fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn credentials(token: &str) -> String {
    serde_json::json!({"accountSid": SID, "authToken": token}).to_string()
}

async fn rotating_sender(server: &MockServer, store: &Arc<InMemorySecret>) -> TwilioSender {
    let secret =
        RotatingSecret::load("twilio", Box::new(store.clone()), parse_credentials, Duration::from_secs(300)).await;
    TwilioSender::rotating(server.uri(), Arc::new(secret.unwrap()), "+15005550006")
}

#[tokio::test]
async fn a_rotated_token_is_read_again_on_401_and_the_text_sent_with_it() {
    let server = accepting_only("token-2").await;
    let store = InMemorySecret::new(credentials("token-1"));
    let sender = rotating_sender(&server, &store).await;
    store.set(credentials("token-2"));
    assert_eq!(sender.send(&sms()).await.unwrap(), "SM456");
    assert_eq!(server.received_requests().await.unwrap().len(), 2, "the refused request, then one with the new token");
    assert_eq!(sender.send(&sms()).await.unwrap(), "SM456");
    assert_eq!(server.received_requests().await.unwrap().len(), 3, "the new token kept");
}

#[tokio::test]
async fn a_401_with_an_unchanged_secret_is_rejected_after_one_request() {
    let server = accepting_only("token-2").await;
    let store = InMemorySecret::new(credentials("wrong"));
    let sender = rotating_sender(&server, &store).await;
    assert_eq!(sender.send(&sms()).await.unwrap_err(), SmsError::Rejected("HTTP 401 Twilio error 20003".into()));
    assert_eq!(server.received_requests().await.unwrap().len(), 1, "no second request with the same token");
    assert_eq!(store.reads(), 2, "read once at load, once after the 401");
}
