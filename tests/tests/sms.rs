//! End to end, texts: the real SMS binary on the local emulator, sending to the Twilio stand-in
//! (`orderflow_e2e::twilio`, on the port the local deployment points the consumer at: `make test`
//! runs one for the whole run). Assertions are on what the stand-in received, never on logs. Ignored by a bare
//! `cargo test`; `make test` runs them.

use std::time::Duration;

use base64::Engine as _;

use orderflow_contracts::OrderStatus;
use orderflow_e2e::twilio::{Received, TwilioStandIn};
use orderflow_e2e::{eventually, order_request, unique, unique_sku, Local};

const WAIT: Duration = Duration::from_secs(90);

/// A phone number of its own for each test (E.164, UK drama range).
fn phone() -> String {
    // Five random digits (a u128's leading digits cluster): numbers of concurrent tests differ.
    format!("+4477009{:05}", uuid::Uuid::new_v4().as_u128() % 100_000)
}

async fn place(local: &Local, phone: &str, run: &str) -> String {
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 10).await.unwrap();
    let mut body = order_request(&format!("{run}@example.com"), &[(&sku, 1)]);
    body["customer"]["phone"] = serde_json::json!(phone);
    local.place_order(&body, run, None).await.unwrap().order_id()
}

fn bodies(texts: &[Received]) -> Vec<String> {
    let mut b: Vec<String> = texts.iter().map(|t| t.body.clone()).collect();
    b.sort();
    b
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn a_paid_order_gets_one_shipping_text_with_twilios_auth_none_when_placed_none_when_delivered_twice() {
    let stand_in = TwilioStandIn::shared().await.unwrap();
    let local = Local::connect().await.unwrap();
    let to = phone();
    let run = unique("e2e-sms");
    let tap = local.tap(&run).await.unwrap();
    let id = place(&local, &to, &run).await;
    assert_eq!(local.wait_final(&id, WAIT).await.unwrap().status, OrderStatus::ReadyToShip);
    eventually("the shipping text", WAIT, || async {
        Ok((!stand_in.delivered_to(&to).await.is_empty()).then_some(()))
    })
    .await
    .unwrap();

    let texts = stand_in.delivered_to(&to).await;
    let short = &id[..8];
    assert!(
        texts[0].body.contains(&format!("order {short} is ready to ship. Tracking number OF")),
        "{}",
        texts[0].body
    );
    // Twilio's basic auth: the account SID and the token from the stack's secret (not printed).
    let secret = local.twilio_secret().await.unwrap();
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            secret["accountSid"].as_str().unwrap(),
            secret["authToken"].as_str().unwrap()
        ))
    );
    assert!(texts.iter().all(|t| t.authorization == expected), "basic auth with the account SID and token");

    // The same ReadyToShip delivered to the SMS consumer once more: no second text.
    let ready = |s: &[orderflow_e2e::Tapped]| {
        s.iter().any(|e| e.detail_type == "OrderStatusChanged" && e.body.contains("ReadyToShip"))
    };
    let events = local.collect(&tap, WAIT, ready).await.unwrap();
    let changed = events.iter().find(|e| e.detail_type == "OrderStatusChanged" && e.body.contains("ReadyToShip"));
    local.deliver_again("SmsQueueUrl", &changed.unwrap().body, 1, &[]).await.unwrap();
    // A sentinel order through the same consumer, after the redelivery: by the time its text has
    // come, a second text (or a text at placement) would have come too.
    let sentinel = phone();
    place(&local, &sentinel, &format!("{run}-sentinel")).await;
    eventually("the sentinel's text", WAIT, || async {
        Ok((!stand_in.delivered_to(&sentinel).await.is_empty()).then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(bodies(&stand_in.received(&to).await), bodies(&texts), "one text, nothing sent twice");
    assert_eq!(texts.len(), 1, "no text when the order was placed: {texts:?}");
    local.close(tap).await.unwrap();
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn twilio_down_for_a_while_delays_only_the_texts_and_loses_none() {
    let stand_in = TwilioStandIn::shared().await.unwrap();
    let local = Local::connect().await.unwrap();
    let to = phone();
    stand_in.fail_first(&to, vec![(503, None), (503, None), (503, None)]).await;
    let run = unique("e2e-sms-down");
    let id = place(&local, &to, &run).await;

    // The order flow and the emails do not wait for texts.
    let order = local.wait_final(&id, WAIT).await.unwrap();
    assert_eq!(order.status, OrderStatus::ReadyToShip);
    let customer = format!("{run}@example.com");
    eventually("the two emails", WAIT, || async { Ok((local.emails_to(&customer).await?.len() >= 2).then_some(())) })
        .await
        .unwrap();
    assert!(stand_in.delivered_to(&to).await.is_empty(), "Twilio was still down when the order was ready and emailed");

    eventually("the text after Twilio recovers", WAIT, || async {
        Ok((!stand_in.delivered_to(&to).await.is_empty()).then_some(()))
    })
    .await
    .unwrap();
    // A sentinel order's text through the same consumer, placed after it arrived: anything sent
    // twice would have arrived by the time the sentinel's did.
    let sentinel = phone();
    place(&local, &sentinel, &format!("{run}-sentinel")).await;
    eventually("the sentinel's text", WAIT, || async {
        Ok((!stand_in.delivered_to(&sentinel).await.is_empty()).then_some(()))
    })
    .await
    .unwrap();
    local.drained(&["SmsQueueUrl"]).await.unwrap();
    let received = stand_in.received(&to).await;
    println!("SMS with Twilio down: {} requests, {} delivered", received.len(), stand_in.delivered_to(&to).await.len());
    let delivered = bodies(&stand_in.delivered_to(&to).await);
    assert_eq!(delivered.len(), 1, "none lost, none doubled: {delivered:?}");
    assert_eq!(received.len(), 4, "three 503s and the text, nothing more");
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn a_429_with_retry_after_is_not_retried_sooner() {
    let stand_in = TwilioStandIn::shared().await.unwrap();
    let local = Local::connect().await.unwrap();
    let to = phone();
    // 12 s: neither the growing delay's first step (5 s) nor the queue's visibility timeout (90 s).
    const RETRY_AFTER: u64 = 12;
    stand_in.fail_first(&to, vec![(429, Some(RETRY_AFTER))]).await;
    place(&local, &to, &unique("e2e-sms-429")).await;

    eventually("the text", WAIT, || async { Ok((!stand_in.delivered_to(&to).await.is_empty()).then_some(())) })
        .await
        .unwrap();
    let received = stand_in.received(&to).await;
    let limited = received.iter().find(|r| r.status == 429).expect("the first text was rate-limited");
    let retry = received.iter().find(|r| r.body == limited.body && r.status == 201).expect("and sent later");
    let waited = retry.at - limited.at;
    println!("SMS 429 Retry-After {RETRY_AFTER}: retried after {waited:?}");
    let asked = Duration::from_secs(RETRY_AFTER);
    assert!(waited >= asked, "retried after {waited:?}, sooner than the {asked:?} asked");
    assert!(
        waited < asked + Duration::from_secs(10),
        "retried after {waited:?}: Retry-After said {asked:?}, and the queue's own visibility timeout is 90 s"
    );
}

/// A ready-to-ship `OrderStatusChanged` for a new order texting `to`, as EventBridge puts it on the
/// SMS queue.
fn placed_for(to: &str, n: usize) -> String {
    use orderflow_contracts::{Envelope, OrderStatusChanged};
    use orderflow_harness::consumer::decode;
    use orderflow_harness_testing::{eventbridge_body, sqs_sample};
    let sample = sqs_sample("sms/order-status-changed.sqs.json");
    let (mut changed, mut cause) = decode::<OrderStatusChanged>(sample.records[0].body.as_deref()).unwrap();
    // A cause of its own: an event caused by it gets an id derived from it, so each text is new.
    cause.event_id = uuid::Uuid::new_v4();
    // The text shows the order id's first 8 characters: make those differ per text.
    changed.order.order_id = format!("s{n:02}{}", uuid::Uuid::new_v4().simple());
    changed.order.customer.phone = to.to_string();
    eventbridge_body(&Envelope::caused_by(&cause, changed))
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn a_twilio_answering_in_4_s_gets_every_queued_text_once() {
    let stand_in = TwilioStandIn::shared().await.unwrap();
    let local = Local::connect().await.unwrap();
    let to = phone();
    // Slow, and 1 s inside the consumer's 5 s timeout (TWILIO_TIMEOUT, functions/sms/src/twilio.rs).
    // No thinner: a request answered in 4.9 s timed out on a loaded machine (a CI run with the fuzz
    // build beside the tests) and was sent again, two texts in twelve requests: the duplicate a
    // timeout after Twilio took the text makes by design (functions/sms/src/handler.rs), not the
    // one this test is after.
    stand_in.answer_slowly(&to, Duration::from_secs(4)).await;
    // Ten texts queued in one call: one batch, more waves of the consumer's four at a time than the
    // harness starts in one invocation. The third wave would start about 8 s into a 15 s invocation,
    // under the 8 s a text may take plus the harness's 1 s reserve: its texts are handed back to the
    // next invocation unstarted. What this test holds the deployed consumer to is every text once
    // from a slow provider, hand-back included; that a record is never started without the time to
    // finish is the harness's test (`records_are_not_started_when_less_than_their_budget_is_left_and_come_back_at_once`,
    // shared/harness/tests/consumer.rs): at 4 s a third wave that did start would end by 12 s.
    let queue = local.output("SmsQueueUrl");
    let mut batch = local.sqs.send_message_batch().queue_url(queue);
    for n in 0..10 {
        let entry = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
            .id(format!("text-{n}"))
            .message_body(placed_for(&to, n))
            .build()
            .unwrap();
        batch = batch.entries(entry);
    }
    let sent = batch.send().await.unwrap();
    assert!(sent.failed.is_empty(), "{:?}", sent.failed);
    eventually("ten texts from a slow Twilio", WAIT, || async {
        Ok((stand_in.delivered_to(&to).await.len() >= 10).then_some(()))
    })
    .await
    .unwrap();
    let sentinel = phone();
    local.sqs.send_message().queue_url(queue).message_body(placed_for(&sentinel, 0)).send().await.unwrap();
    eventually("the sentinel's text", WAIT, || async {
        Ok((!stand_in.delivered_to(&sentinel).await.is_empty()).then_some(()))
    })
    .await
    .unwrap();
    // And nothing left on the queue, visible or in flight: a text waiting out a visibility timeout
    // (an invocation cut off at its deadline) would be sent again after it.
    local.drained(&["SmsQueueUrl"]).await.unwrap();
    let received = stand_in.received(&to).await;
    let mut distinct = bodies(&received);
    distinct.dedup();
    println!("SMS with Twilio answering in 4 s: {} requests for 10 texts", received.len());
    assert_eq!(distinct.len(), 10, "every text delivered");
    assert_eq!(received.len(), 10, "none sent twice");
}
