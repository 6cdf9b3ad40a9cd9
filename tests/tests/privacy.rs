//! After an end-to-end run: every log line the stack's functions wrote and every dead letter's
//! reason, read back from the emulator, hold no customer email, phone, street, token or configured
//! secret. `tests/run.sh` runs it last, on its own, after every other test has placed its orders,
//! texted and emailed; a bare `cargo test` ignores it. It makes its own dead letters first, from
//! the inputs most likely to leak: an event whose bad field holds personal data (the decode error
//! quotes it) and a text Twilio refuses with a message naming the number.

use std::collections::HashSet;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use orderflow_e2e::twilio::TwilioStandIn;
use orderflow_e2e::{eventually, order_request, unique, unique_sku, Local};
use regex::Regex;
use serde_json::{json, Value};

/// The shapes of what the tests' customers and callers are made of.
fn personal() -> Vec<(&'static str, Regex)> {
    vec![
        ("a customer's email", Regex::new(r"[A-Za-z0-9._%+-]+@example\.com").unwrap()),
        ("a customer's phone", Regex::new(r"\+?447700\s?9\d{5}").unwrap()),
        ("a street", Regex::new(r"Analytical Row").unwrap()),
        ("a customer's name", Regex::new(r"Ada Lovelace|Grace Hopper").unwrap()),
        ("a token", Regex::new(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ").unwrap()),
        ("a webhook signing secret", Regex::new(r"whsec_[A-Za-z0-9+/=]{16,}").unwrap()),
    ]
}

/// Every log event of the stack's log groups, the groups read at once (about 20,000 lines after a
/// run: one group after another took about a minute).
async fn log_lines(local: &Local) -> Vec<(String, String)> {
    let groups = local.log_groups().await.unwrap();
    assert!(groups.len() >= 10, "the stack's log groups: {groups:?}");
    let reads = groups.into_iter().map(|group| async move {
        let events = local.log_events(&group, None).await.unwrap();
        events.into_iter().map(|(_, message)| (group.clone(), message)).collect::<Vec<_>>()
    });
    futures::future::join_all(reads).await.into_iter().flatten().collect()
}

/// Every dead letter's attributes (its reason, consumer, ...), without taking any off its queue.
async fn dead_letter_reasons(local: &Local) -> Vec<(String, String)> {
    let mut reasons = Vec::new();
    for name in local.output_names().into_iter().filter(|n| n.ends_with("DeadLetterQueueUrl")) {
        let url = local.output(&name).to_string();
        let mut seen = HashSet::new();
        for _ in 0..20 {
            let got = local
                .sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .visibility_timeout(0)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .unwrap();
            let fresh: Vec<_> =
                got.messages().iter().filter(|m| seen.insert(m.message_id().unwrap_or_default().to_string())).collect();
            if fresh.is_empty() {
                break;
            }
            for message in fresh {
                for (attribute, value) in message.message_attributes().into_iter().flatten() {
                    reasons.push((format!("{name} {attribute}"), value.string_value().unwrap_or_default().to_string()));
                }
            }
        }
    }
    reasons
}

/// Dead letters made from personal data: an `OrderPlaced` on Billing's queue whose quantity is a
/// customer's contact details, and a text to `to` that Twilio refuses naming the number.
async fn dead_letters_made_of_personal_data(local: &Local) {
    use orderflow_harness_testing::sample_text;
    let stand_in = TwilioStandIn::shared().await.unwrap();
    let (billing_dlq, sms_dlq) = (local.output("BillingDeadLetterQueueUrl"), local.output("SmsDeadLetterQueueUrl"));
    let before = (local.queue_depth(billing_dlq).await.unwrap(), local.queue_depth(sms_dlq).await.unwrap());

    let sample: Value = serde_json::from_str(&sample_text("billing/order-placed.sqs.json")).unwrap();
    let mut event: Value = serde_json::from_str(sample["Records"][0]["body"].as_str().unwrap()).unwrap();
    event["detail"]["metadata"]["eventId"] = json!(uuid::Uuid::new_v4());
    event["detail"]["data"]["lines"][0]["quantity"] = json!("grace.hopper@example.com +447700900999 12 Analytical Row");
    local
        .sqs
        .send_message()
        .queue_url(local.output("BillingQueueUrl"))
        .message_body(event.to_string())
        .send()
        .await
        .unwrap();

    let to = "+447700900998";
    stand_in.fail_first(to, vec![(400, None)]).await;
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 1).await.unwrap();
    let run = unique("e2e-privacy");
    let mut body = order_request(&format!("{run}@example.com"), &[(&sku, 1)]);
    body["customer"]["phone"] = json!(to);
    local.place_order(&body, &run, None).await.unwrap();
    eventually("both dead letters", std::time::Duration::from_secs(90), || async {
        let now = (local.queue_depth(billing_dlq).await?, local.queue_depth(sms_dlq).await?);
        Ok((now.0 > before.0 && now.1 > before.1).then_some(()))
    })
    .await
    .unwrap();
}

#[tokio::test]
#[ignore = "reads what an end-to-end run left behind: tests/run.sh runs it after every other test"]
async fn logs_and_dead_letters_hold_no_personal_data_or_secrets() {
    let local = Local::connect().await.unwrap();
    let started = std::time::Instant::now();
    dead_letters_made_of_personal_data(&local).await;
    let made = started.elapsed();
    let mut secrets = vec![
        ("the Twilio auth token", local.twilio_secret().await.unwrap()["authToken"].as_str().unwrap().to_string()),
        ("the webhooks operator key", local.secret("WebhooksApiKeySecretId").await.unwrap()),
        ("the lake's customer-key secret", local.secret("LakeCustomerKeySecretId").await.unwrap()),
    ];
    secrets.retain(|(_, value)| value.len() >= 16);
    assert_eq!(secrets.len(), 3, "every configured secret is known to the test");

    let lines = log_lines(&local).await;
    let read = started.elapsed();
    let reasons = dead_letter_reasons(&local).await;
    println!(
        "privacy: the dead letters made in {made:.1?}, the log groups read in {:.1?}, the dead letters in {:.1?}",
        read - made,
        started.elapsed() - read
    );
    // Something to read: the run logged orders and dead-lettered the tests' poison messages.
    assert!(lines.iter().any(|(_, l)| l.contains("order placed")), "no log line of a placed order: {}", lines.len());
    let reason_of =
        |queue: &str| reasons.iter().any(|(at, r)| at.starts_with(queue) && at.ends_with("reason") && !r.is_empty());
    assert!(reason_of("BillingDeadLetterQueueUrl") && reason_of("SmsDeadLetterQueueUrl"), "{reasons:?}");

    // The patterns compiled once: compiled for each of the ~20,000 lines they took 46 s of the
    // test's 48 (debug build), the reads of the logs and dead letters about 1 s.
    let patterns = personal();
    let mut found = Vec::new();
    for (place, text) in lines.iter().chain(&reasons) {
        for (what, pattern) in &patterns {
            if let Some(m) = pattern.find(text) {
                found.push(format!("{what} ({}) in {place}: {}", m.as_str(), &text[..text.len().min(300)]));
            }
        }
        for (what, value) in &secrets {
            if text.contains(value.as_str()) {
                found.push(format!("{what} in {place}"));
            }
        }
    }
    println!("privacy: {} log lines and {} dead-letter attributes read", lines.len(), reasons.len());
    for (at, reason) in reasons.iter().filter(|(at, _)| at.ends_with("orderflow.reason")) {
        println!("privacy: {at}: {reason}");
    }
    assert!(found.is_empty(), "{} findings:\n{}", found.len(), found.join("\n"));
}
