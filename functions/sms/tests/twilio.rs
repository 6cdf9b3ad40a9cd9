//! The Twilio adapter against an HTTP server the test runs (wiremock): the request Twilio's API
//! expects, and what each kind of answer becomes.

use std::time::Duration;

use pretty_assertions::assert_eq;
use sms::message::Sms;
use sms::twilio::{SmsError, SmsSender, TwilioCredentials, TwilioSender};
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
                .set_body_json(serde_json::json!({"code": 21211, "message": "Invalid 'To' Phone Number"})),
            SmsError::Rejected("HTTP 400 21211 Invalid 'To' Phone Number".into()),
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
