//! The email consumer through the real harness over an in-memory sender, fed the samples in
//! `events-samples/email/`: what each event renders to, and what each SES answer becomes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use email::handler::{EmailHandler, EmailInput};
use email::render::Email;
use email::ses::{EmailError, EmailSender, RecordingEmail};
use orderflow_contracts::{Envelope, OrderStatus, StatusEntry};
use orderflow_harness::consumer::decode;
use orderflow_harness_testing::{eventbridge_body, sqs_batch, sqs_sample, Harnessed};
use pretty_assertions::assert_eq;

fn rig() -> (Arc<RecordingEmail>, Harnessed<EmailInput>) {
    let sender = Arc::new(RecordingEmail::default());
    (sender.clone(), Harnessed::new("email", Arc::new(EmailHandler::new(sender))))
}

#[tokio::test]
async fn a_placed_order_gets_one_email_with_its_lines_and_total() {
    let (sender, email) = rig();
    let event = sqs_sample("email/order-placed.sqs.json");
    assert!(email.failures(event.clone()).await.is_empty());
    assert!(email.failures(event).await.is_empty(), "a redelivery sends nothing more");
    let sent = sender.sent();
    assert_eq!(sent.len(), 1);
    let e = &sent[0];
    assert_eq!((e.to.as_str(), e.subject.as_str()), ("ada@example.com", "We have your order ord-7f3a"));
    for part in [
        "Hello Ada Lovelace",
        "BOOK-001 x 2  39.98 GBP",
        "MUG-002 x 1  12.50 GBP",
        "Shipping  4.95 GBP",
        "Total  57.43 GBP",
        "12 Analytical Row, Flat 3, London, N1 9GU, GB",
    ] {
        assert!(e.text.contains(part), "text lacks {part:?}:\n{}", e.text);
    }
    assert!(e.html.contains("<strong>57.43 GBP</strong>"), "{}", e.html);
}

#[tokio::test]
async fn html_is_escaped_text_is_not() {
    let (sender, email) = rig();
    let event = sqs_sample("email/order-placed.sqs.json");
    let (EmailInput::Placed(mut order), metadata) = decode::<EmailInput>(event.records[0].body.as_deref()).unwrap()
    else {
        panic!("the sample is an OrderPlaced")
    };
    order.customer.name = "<script>alert(1)</script>".into();
    assert!(email.failures(sqs_batch(vec![eventbridge_body(&Envelope { metadata, data: order })])).await.is_empty());
    let e = &sender.sent()[0];
    assert!(e.html.contains("Hello &lt;script&gt;alert(1)&lt;") && !e.html.contains("<script>"), "{}", e.html);
    assert!(e.text.contains("Hello <script>alert(1)</script>"));
}

#[tokio::test]
async fn each_final_status_gets_its_notice() {
    let event = sqs_sample("email/order-status-changed.sqs.json");
    let (EmailInput::StatusChanged(changed), cause) = decode::<EmailInput>(event.records[0].body.as_deref()).unwrap()
    else {
        panic!("the sample is an OrderStatusChanged")
    };
    for (status, reason, subject, says) in [
        (OrderStatus::ReadyToShip, None, "Your order ord-7f3a is ready to ship", "Tracking number: OF123456789GB"),
        (
            OrderStatus::PaymentFailed,
            Some("card declined by issuer"),
            "We could not take payment for order ord-7f3a",
            "so it will not be shipped: card declined by issuer",
        ),
        (
            OrderStatus::Backordered,
            Some("out of stock (MUG-002: 1 requested, 0 available)"),
            "Your order ord-7f3a is delayed",
            "MUG-002: 1 requested, 0 available",
        ),
    ] {
        let (sender, email) = rig();
        let mut data = changed.clone();
        data.order.status = status;
        data.order.history.push(StatusEntry { status, at: data.order.history[0].at, reason: reason.map(String::from) });
        let envelope = Envelope { metadata: cause.clone(), data };
        assert!(email.failures(sqs_batch(vec![eventbridge_body(&envelope)])).await.is_empty());
        let sent = sender.sent();
        assert_eq!(sent.len(), 1, "{status:?}");
        assert_eq!(sent[0].subject, subject);
        assert!(sent[0].text.contains(says), "{status:?}: {}", sent[0].text);
        let key = says.rsplit(": ").next().unwrap();
        assert!(sent[0].html.contains(key), "{status:?}: {}", sent[0].html);
    }
}

struct Failing(EmailError);

#[async_trait]
impl EmailSender for Failing {
    async fn send(&self, _: &Email) -> Result<String, EmailError> {
        Err(self.0.clone())
    }
}

#[tokio::test]
async fn throttling_is_retried_later_and_a_rejected_recipient_is_dead_lettered() {
    let throttled: Harnessed<EmailInput> = Harnessed::new(
        "email",
        Arc::new(EmailHandler::new(Arc::new(Failing(EmailError::Unavailable("TooManyRequestsException".into()))))),
    );
    let event = sqs_sample("email/order-placed.sqs.json");
    let (id, handle) = (event.records[0].message_id.clone().unwrap(), event.records[0].receipt_handle.clone().unwrap());
    assert_eq!(throttled.failures(event.clone()).await, vec![id]);
    assert_eq!(throttled.delays.delays(), vec![(handle, Duration::from_secs(5))]);

    let rejected: Harnessed<EmailInput> = Harnessed::new(
        "email",
        Arc::new(EmailHandler::new(Arc::new(Failing(EmailError::Rejected(
            "MessageRejected: Email address is not verified: ada@example.com".into(),
        ))))),
    );
    assert!(rejected.failures(event).await.is_empty());
    assert!(rejected.dead_letters.letters()[0].reason.contains("MessageRejected"));
    assert!(!rejected.dead_letters.letters()[0].reason.contains("ada@"), "no address in the reason");
}

#[tokio::test]
async fn an_order_id_of_multi_byte_characters_is_shortened_by_characters_without_a_panic() {
    let (sender, email) = rig();
    let event = sqs_sample("email/order-placed.sqs.json");
    let (EmailInput::Placed(mut order), cause) = decode::<EmailInput>(event.records[0].body.as_deref()).unwrap() else {
        panic!("the sample is an OrderPlaced")
    };
    // Byte 8 falls inside the third character: slicing at a byte offset panics.
    order.order_id = "注文-日本語の注文番号".into();
    let body = eventbridge_body(&Envelope::caused_by(&cause, order));
    assert!(email.failures(sqs_batch(vec![body])).await.is_empty());
    assert_eq!(sender.sent()[0].subject, "We have your order 注文-日本語の注");
}

#[tokio::test]
async fn the_new_outcomes_get_their_notices_shipped_after_a_delay_and_cancelled_with_the_refund() {
    use orderflow_contracts::CancelledBy;
    let event = sqs_sample("email/order-status-changed.sqs.json");
    let (EmailInput::StatusChanged(changed), cause) = decode::<EmailInput>(event.records[0].body.as_deref()).unwrap()
    else {
        panic!("the sample is an OrderStatusChanged")
    };
    let at = changed.order.history[0].at;
    let send = |data: orderflow_contracts::OrderStatusChanged| {
        let cause = cause.clone();
        async move {
            let (sender, email) = rig();
            let body = eventbridge_body(&Envelope { metadata: cause, data });
            assert!(email.failures(sqs_batch(vec![body])).await.is_empty());
            sender.sent()
        }
    };

    // Shipped after a delay.
    let mut late = changed.clone();
    late.previous_status = OrderStatus::Backordered;
    let sent = send(late).await;
    assert!(sent[0].text.contains("ready to ship after all"), "{}", sent[0].text);

    // Cancelled: why, and what was refunded (or that nothing was charged); no email while Cancelling.
    for (by, refunded, says) in [
        (CancelledBy::BackorderDeadline, Some(5743), "We refunded 57.43 GBP"),
        (CancelledBy::Customer, Some(0), "Nothing was charged"),
    ] {
        let mut data = changed.clone();
        data.order.history.push(StatusEntry { status: OrderStatus::Cancelling, at, reason: Some(by.reason().into()) });
        data.order.status = OrderStatus::Cancelling;
        assert!(send(data.clone()).await.is_empty(), "no email while Cancelling");
        data.order.history.push(StatusEntry { status: OrderStatus::Cancelled, at, reason: None });
        data.order.status = OrderStatus::Cancelled;
        data.order.refunded_minor = refunded;
        let sent = send(data).await;
        assert_eq!(sent[0].subject, "Your order ord-7f3a is cancelled");
        assert!(sent[0].text.contains(says) && sent[0].text.contains(by.reason()), "{}", sent[0].text);
        assert!(sent[0].html.contains(by.reason()), "{}", sent[0].html);
    }
}
