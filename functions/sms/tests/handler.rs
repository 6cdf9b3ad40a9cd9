//! The SMS consumer through the real harness, over an in-memory sender and fakes, fed the samples in
//! `events-samples/sms/`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orderflow_contracts::{Envelope, OrderStatus, OrderStatusChanged};
use orderflow_harness::consumer::decode;
use orderflow_harness_testing::{eventbridge_body, sqs_batch, sqs_sample, Harnessed};
use pretty_assertions::assert_eq;
use sms::handler::{SmsHandler, SmsInput};
use sms::message::Sms;
use sms::twilio::{RecordingSms, SmsError, SmsSender};

fn rig() -> (Arc<RecordingSms>, Harnessed<SmsInput>) {
    let sender = Arc::new(RecordingSms::default());
    (sender.clone(), Harnessed::new("sms", Arc::new(SmsHandler::new(sender))))
}

#[test]
fn placing_an_order_sends_no_text_the_first_comes_once_it_is_paid_for() {
    // The queue is fed only what SmsInput names: no OrderPlaced, so no text before payment.
    use orderflow_contracts::Inbound;
    assert_eq!(SmsInput::DETAIL_TYPES, &["OrderStatusChanged"]);
}

#[tokio::test]
async fn a_customer_without_a_verified_phone_gets_no_text_and_nothing_is_dead_lettered() {
    let (sender, sms) = rig();
    let event = sqs_sample("sms/order-status-changed.sqs.json");
    let (SmsInput::StatusChanged(mut changed), metadata) =
        decode::<SmsInput>(event.records[0].body.as_deref()).unwrap();
    changed.order.customer.phone = String::new();
    assert!(sms.failures(sqs_batch(vec![eventbridge_body(&Envelope { metadata, data: changed })])).await.is_empty());
    assert!(sender.sent().is_empty());
    assert!(sms.dead_letters.letters().is_empty());
}

#[tokio::test]
async fn ready_to_ship_gets_a_text_with_the_tracking_number_and_other_statuses_none() {
    let (sender, sms) = rig();
    let event = sqs_sample("sms/order-status-changed.sqs.json");
    let (SmsInput::StatusChanged(changed), cause) = decode::<SmsInput>(event.records[0].body.as_deref()).unwrap();
    assert!(sms.failures(event).await.is_empty());
    assert_eq!(sender.sent()[0].body, "Orderflow: order ord-7f3a is ready to ship. Tracking number OF123456789GB.");

    for status in [OrderStatus::PaymentFailed, OrderStatus::Backordered] {
        let mut other = changed.clone();
        other.order.status = status;
        let mut metadata = cause.clone();
        metadata.event_id = uuid::Uuid::new_v4();
        let body = eventbridge_body(&Envelope::<OrderStatusChanged> { metadata, data: other });
        assert!(sms.failures(sqs_batch(vec![body])).await.is_empty());
    }
    assert_eq!(sender.sent().len(), 1, "only ReadyToShip is texted");
}

/// A provider that answers with the given error.
struct Failing(SmsError);

#[async_trait]
impl SmsSender for Failing {
    async fn send(&self, _: &Sms) -> Result<String, SmsError> {
        Err(self.0.clone())
    }
}

fn failing(error: SmsError) -> Harnessed<SmsInput> {
    Harnessed::new("sms", Arc::new(SmsHandler::new(Arc::new(Failing(error)))))
}

#[tokio::test]
async fn a_rate_limited_text_is_retried_no_sooner_than_the_provider_asked() {
    // 30 s: longer than the harness's growing delay on a first delivery (5 s), which it would get
    // without the provider's word.
    let sms = failing(SmsError::Unavailable { reason: "HTTP 429".into(), after: Some(Duration::from_secs(30)) });
    let event = sqs_sample("sms/order-status-changed.sqs.json");
    let (id, handle) = (event.records[0].message_id.clone().unwrap(), event.records[0].receipt_handle.clone().unwrap());
    assert_eq!(sms.failures(event).await, vec![id]);
    assert_eq!(sms.delays.delays(), vec![(handle, Duration::from_secs(30))]);
    assert!(sms.dead_letters.letters().is_empty());
}

#[tokio::test]
async fn a_provider_down_without_a_retry_after_is_retried_after_a_growing_delay() {
    let sms = failing(SmsError::Unavailable { reason: "HTTP 503".into(), after: None });
    let mut event = sqs_sample("sms/order-status-changed.sqs.json");
    event.records[0].attributes.insert("ApproximateReceiveCount".into(), "3".into());
    let (id, handle) = (event.records[0].message_id.clone().unwrap(), event.records[0].receipt_handle.clone().unwrap());
    assert_eq!(sms.failures(event).await, vec![id]);
    assert_eq!(sms.delays.delays(), vec![(handle, Duration::from_secs(20))], "5 s doubling: 20 s at the third");
}

#[tokio::test]
async fn a_rejected_text_is_dead_lettered_with_the_providers_reason() {
    // A reason as a provider might word it, number and all: the harness redacts it.
    let sms = failing(SmsError::Rejected("HTTP 400 21211 The 'To' number +447700900123 is not valid".into()));
    assert!(sms.failures(sqs_sample("sms/order-status-changed.sqs.json")).await.is_empty());
    let letters = sms.dead_letters.letters();
    assert_eq!(letters.len(), 1);
    assert!(letters[0].reason.contains("21211"), "{}", letters[0].reason);
    assert!(!letters[0].reason.contains("+4477"), "no phone number in the reason");
}

#[tokio::test]
async fn a_phone_number_that_is_not_e164_is_dead_lettered_without_calling_the_provider() {
    let (sender, sms) = rig();
    let event = sqs_sample("sms/order-status-changed.sqs.json");
    let (SmsInput::StatusChanged(mut changed), metadata) =
        decode::<SmsInput>(event.records[0].body.as_deref()).unwrap();
    changed.order.customer.phone = "07700 900123".into();
    assert!(sms.failures(sqs_batch(vec![eventbridge_body(&Envelope { metadata, data: changed })])).await.is_empty());
    assert!(sender.sent().is_empty());
    assert!(sms.dead_letters.letters()[0].reason.contains("not E.164"));
}

#[tokio::test]
async fn an_order_id_of_multi_byte_characters_is_shortened_by_characters() {
    let (sender, sms) = rig();
    let event = sqs_sample("sms/order-status-changed.sqs.json");
    let (SmsInput::StatusChanged(mut changed), cause) = decode::<SmsInput>(event.records[0].body.as_deref()).unwrap();
    changed.order.order_id = "注文-日本語の注文番号".into();
    let body = eventbridge_body(&Envelope::caused_by(&cause, changed));
    assert!(sms.failures(sqs_batch(vec![body])).await.is_empty());
    assert!(
        sender.sent()[0].body.starts_with("Orderflow: order 注文-日本語の注 is ready"),
        "{}",
        sender.sent()[0].body
    );
}

#[test]
fn a_refund_is_texted_only_when_the_deadline_cancelled_the_order_and_money_moved() {
    use orderflow_contracts::{CancelledBy, StatusEntry};
    let event = sqs_sample("sms/order-status-changed.sqs.json");
    let (SmsInput::StatusChanged(changed), _) = decode::<SmsInput>(event.records[0].body.as_deref()).unwrap();
    let cancelled = |by: CancelledBy, refunded: i64| {
        let mut c = changed.clone();
        c.previous_status = OrderStatus::Cancelling;
        c.order.status = OrderStatus::Cancelled;
        c.order.refunded_minor = Some(refunded);
        c.order.history.push(StatusEntry {
            status: OrderStatus::Cancelling,
            at: chrono::Utc::now(),
            reason: Some(by.reason().into()),
        });
        c.order.history.push(StatusEntry { status: OrderStatus::Cancelled, at: chrono::Utc::now(), reason: None });
        sms::message::status_changed(&c)
    };
    let text = cancelled(CancelledBy::BackorderDeadline, 5743).expect("a text");
    assert_eq!(text.body, "Orderflow: order ord-7f3a is cancelled; 57.43 GBP is refunded to your card.");
    assert_eq!(cancelled(CancelledBy::BackorderDeadline, 0), None, "nothing was charged");
    assert_eq!(cancelled(CancelledBy::Customer, 5743), None, "the customer asked: an email, no text");

    let mut late = changed.clone();
    late.previous_status = OrderStatus::Backordered;
    assert_eq!(
        sms::message::status_changed(&late).unwrap().body,
        "Orderflow: good news, order ord-7f3a is back in stock and ready to ship. Tracking number OF123456789GB."
    );
}
