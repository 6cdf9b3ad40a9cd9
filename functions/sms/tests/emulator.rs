//! A Twilio token rotated in the emulator's Secrets Manager in the middle of a run (run by `make
//! test`; ignored by a bare `cargo test`): the consumer, its credentials read through the real
//! Secrets Manager adapter, sends every text and dead-letters nothing.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use orderflow_contracts::Envelope;
use orderflow_harness::consumer::decode;
use orderflow_harness::secret::{RotatingSecret, SecretsManagerSource};
use orderflow_harness_testing::{eventbridge_body, sqs_batch, sqs_sample, Harnessed};
use sms::handler::{SmsHandler, SmsInput};
use sms::twilio::{parse_credentials, TwilioSender};
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SID: &str = "AC00000000000000000000000000000002";

fn credentials(token: &str) -> String {
    serde_json::json!({"accountSid": SID, "authToken": token}).to_string()
}

/// A Twilio that accepts only `token`.
async fn twilio_accepting(server: &MockServer, token: &str) {
    server.reset().await;
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{token}")));
    Mock::given(method("POST"))
        .and(header("authorization", basic.as_str()))
        .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({"sid": "SM789"})))
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(401)).with_priority(10).mount(server).await;
}

/// A ready-to-ship body for a new order, so each is a new event.
fn placed(n: u32) -> String {
    let event = sqs_sample("sms/order-status-changed.sqs.json");
    let (SmsInput::StatusChanged(mut changed), mut cause) =
        decode::<SmsInput>(event.records[0].body.as_deref()).unwrap();
    // A cause of its own: an event caused by it gets an id derived from it, so each text is new.
    cause.event_id = uuid::Uuid::new_v4();
    changed.order.order_id = format!("ord-rotation-{n}");
    eventbridge_body(&Envelope::caused_by(&cause, changed))
}

#[tokio::test]
#[ignore = "needs the local AWS emulator: run `make test`"]
async fn a_token_rotated_mid_run_costs_no_dead_letter() {
    assert!(std::env::var("AWS_ENDPOINT_URL").is_ok(), "AWS_ENDPOINT_URL is not set: run `make test`");
    let sdk = orderflow_harness::aws::sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let name = format!("orderflow-test-twilio-{}", uuid::Uuid::new_v4().simple());
    secrets.create_secret().name(&name).secret_string(credentials("token-1")).send().await.unwrap();

    let server = MockServer::start().await;
    twilio_accepting(&server, "token-1").await;
    let source = Box::new(SecretsManagerSource::new(&sdk, &name));
    let secret = RotatingSecret::load(&name, source, parse_credentials, Duration::from_secs(300)).await.unwrap();
    let sender = TwilioSender::rotating(server.uri(), Arc::new(secret), "+15005550006");
    let consumer = Harnessed::new("sms", Arc::new(SmsHandler::new(Arc::new(sender))));

    assert!(consumer.failures(sqs_batch(vec![placed(1)])).await.is_empty(), "sent with the first token");

    // The rotation: Secrets Manager gets the new token, and Twilio stops accepting the old one.
    secrets.put_secret_value().secret_id(&name).secret_string(credentials("token-2")).send().await.unwrap();
    twilio_accepting(&server, "token-2").await;

    assert!(consumer.failures(sqs_batch(vec![placed(2), placed(3)])).await.is_empty(), "sent with the new token");
    assert!(consumer.dead_letters.letters().is_empty(), "nothing dead-lettered by the rotation");
    let new_token = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{SID}:token-2")));
    let with_new_token = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(new_token.as_str()))
        .count();
    assert_eq!(with_new_token, 2, "each text after the rotation sent once, with the new token");
    let _ = secrets.delete_secret().secret_id(&name).force_delete_without_recovery(true).send().await;
}
