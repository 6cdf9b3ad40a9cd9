//! End to end, webhooks: the real API, fan-out and delivery binaries on the local emulator, POSTing
//! to receivers this test runs (wiremock, on 127.0.0.1: the local deployment turns the SSRF guard's
//! local setting on; the unit tests check it off). Assertions on what the receivers got, and the
//! signatures verified with an HMAC implementation other than the one that signed them. Ignored by a
//! bare `cargo test`; `make test` runs them.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::FutureExt;
use orderflow_contracts::OrderStatus;
use orderflow_e2e::{eventually, order_request, unique, unique_sku, Local, SignedIn};
use reqwest::Method;
use serde_json::{json, Value};
use wiremock::matchers::{body_string_contains, method};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const WAIT: Duration = Duration::from_secs(90);

/// Each test's receivers get every order's events while it is subscribed: the other tests', which
/// run beside these, too. A receiver's scripted answer (the slow one's hang, the 404) is for the
/// test's own order only, matched by its SKU, so another order neither uses it up nor gets it; the
/// assertions count what arrived for the test's own order.
fn own(sku: &str) -> wiremock::matchers::BodyContainsMatcher {
    body_string_contains(format!("\"sku\":\"{sku}\""))
}

/// The requests a receiver got for `order_id`, by `type`, in the order they arrived.
fn for_order(requests: &[Request], order_id: &str, event_type: &str) -> Vec<Request> {
    requests
        .iter()
        .filter(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            body["type"] == event_type
                && (body["data"]["orderId"] == order_id || body["data"]["order"]["orderId"] == order_id)
        })
        .cloned()
        .collect()
}

fn verify(request: &Request, secret: &str) {
    let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok()).unwrap().to_string();
    let key = base64::engine::general_purpose::STANDARD.decode(secret.trim_start_matches("whsec_")).unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let signed =
        format!("{}.{}.{}", header("webhook-id"), header("webhook-timestamp"), String::from_utf8_lossy(&request.body));
    let signature = header("webhook-signature");
    let mac = base64::engine::general_purpose::STANDARD.decode(signature.trim_start_matches("v1,")).unwrap();
    ring::hmac::verify(&key, signed.as_bytes(), &mac).expect("the signature verifies with the subscription's secret");
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn subscribers_get_signed_events_and_a_slow_one_holds_back_nobody() {
    let local = Local::connect().await.unwrap();
    // Operators only: no token is the authorizer's 401, a customer's token the function's 403.
    let key = local.operator().await.unwrap();
    assert_eq!(local.webhooks_api(Method::GET, "/webhooks", None, None).await.unwrap().0, 401);
    let customer = local.customer("ada@example.com", None).await.unwrap();
    assert_eq!(local.webhooks_api(Method::GET, "/webhooks", Some(&customer), None).await.unwrap().0, 403);

    // Internal targets are refused even here, where loopback is allowed for the test receivers.
    for url in ["http://169.254.169.254/latest/meta-data/", "https://10.0.0.1/hook"] {
        let (status, answer) = local
            .webhooks_api(
                Method::POST,
                "/webhooks",
                Some(&key),
                Some(json!({"url": url, "eventTypes": ["OrderPlaced"]})),
            )
            .await
            .unwrap();
        assert_eq!((status, answer["errors"][0]["field"].as_str()), (400, Some("url")), "{url}: {answer}");
    }

    // A answers at once; B takes 8 s the first time it gets this test's order (past the 5 s
    // timeout), then at once.
    let sku = unique_sku("BOOK");
    let (fast, slow) = (MockServer::start().await, MockServer::start().await);
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(204)).mount(&fast).await;
    Mock::given(method("POST"))
        .and(own(&sku))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(8)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&slow)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&slow).await;
    let made = RefCell::new(Vec::new());
    let subscriptions = unsubscribing(&local, &key, &made, async {
        let a = subscribe(&local, &key, &made, &fast, json!(["OrderPlaced", "OrderStatusChanged"])).await;
        let b = subscribe(&local, &key, &made, &slow, json!(["OrderPlaced"])).await;

        local.stock_product(&sku, 1999, 10).await.unwrap();
        let run = unique("e2e-webhooks");
        let tap = local.tap(&run).await.unwrap();
        let id =
            local.place_order(&order_request("ada@example.com", &[(&sku, 1)]), &run, None).await.unwrap().order_id();
        let placed = local.collect(&tap, WAIT, |s| s.iter().any(|e| e.detail_type == "OrderPlaced")).await.unwrap();
        let placed = placed.into_iter().find(|e| e.detail_type == "OrderPlaced").unwrap();

        // B's first delivery of the order begins, and hangs.
        let slow_at = eventually("B's first delivery of the order", WAIT, || async {
            Ok((!for_order(&slow.received_requests().await.unwrap(), &id, "OrderPlaced").is_empty()).then(Instant::now))
        })
        .await
        .unwrap();
        // While it hangs, a new event for A goes straight onto the deliveries queue (the order's
        // OrderPlaced under another event id). A gets both, the fan-out's delivery of the order and
        // this one, while B's attempt still hangs. Were A's deliveries held back by B's, in B's
        // batch or behind its invocation, they would come when B's attempt is cut, 5 s after it
        // began. Timed from B's attempt, not from the POST: the tests beside this one load the
        // emulator, and how long the fan-out takes to start is not what this asserts.
        let mut fresh: Value = serde_json::from_str(&placed.body).unwrap();
        let fresh_id = uuid::Uuid::new_v4().to_string();
        fresh["detail"]["metadata"]["eventId"] = json!(fresh_id);
        local
            .send_with("WebhookDeliveryQueueUrl", &fresh.to_string(), &[("subscriptionId", a.0.as_str())])
            .await
            .unwrap();
        let fast_at = eventually("A's two OrderPlaced", WAIT, || async {
            Ok((for_order(&fast.received_requests().await.unwrap(), &id, "OrderPlaced").len() >= 2).then(Instant::now))
        })
        .await
        .unwrap();
        let behind = fast_at.saturating_duration_since(slow_at);
        println!("webhooks: the fast subscriber had both events {behind:?} after the slow one's attempt began");
        assert!(behind < Duration::from_secs(4), "A was held back by B: {behind:?} after B's hanging attempt began");
        assert_eq!(
            for_order(&slow.received_requests().await.unwrap(), &id, "OrderPlaced").len(),
            1,
            "B not retried yet"
        );

        assert_eq!(local.wait_final(&id, WAIT).await.unwrap().status, OrderStatus::ReadyToShip);
        eventually("A's OrderStatusChanged", WAIT, || async {
            Ok((!for_order(&fast.received_requests().await.unwrap(), &id, "OrderStatusChanged").is_empty())
                .then_some(()))
        })
        .await
        .unwrap();
        // B gets its OrderPlaced once it answers in time: once (the timed-out attempt aside).
        eventually("B's webhook again after timing out", WAIT, || async {
            Ok((for_order(&slow.received_requests().await.unwrap(), &id, "OrderPlaced").len() >= 2).then_some(()))
        })
        .await
        .unwrap();

        let fast_got = fast.received_requests().await.unwrap();
        let webhook_ids = |requests: &[Request]| -> BTreeSet<String> {
            requests.iter().map(|r| r.headers.get("webhook-id").unwrap().to_str().unwrap().to_string()).collect()
        };
        let to_a = for_order(&fast_got, &id, "OrderPlaced");
        assert_eq!(to_a.len(), 2, "the order's OrderPlaced and the new event to A, once each");
        assert_eq!(webhook_ids(&to_a), BTreeSet::from([placed.event_id.clone(), fresh_id.clone()]));
        assert_eq!(for_order(&fast_got, &id, "OrderStatusChanged").len(), 1, "one OrderStatusChanged to A");
        assert!(for_order(&fast_got, &id, "OrderBilled").is_empty(), "only what A subscribed to");
        for request in &to_a {
            verify(request, &a.1);
        }
        let slow_got = for_order(&slow.received_requests().await.unwrap(), &id, "OrderPlaced");
        verify(&slow_got[1], &b.1);
        assert_eq!(
            slow_got[0].headers.get("webhook-id"),
            slow_got[1].headers.get("webhook-id"),
            "the same event, retried"
        );

        // The same delivery (OrderPlaced for A) twice more, straight onto the deliveries queue, past
        // the fan-out: the delivery's own de-duplication (event id and subscription) posts nothing
        // more. Counted once the queue has been seen empty, every copy handled.
        let to_a = [("subscriptionId", a.0.as_str())];
        local.deliver_again_with("WebhookDeliveryQueueUrl", &placed.body, &to_a, 2, &[]).await.unwrap();
        assert_eq!(for_order(&fast.received_requests().await.unwrap(), &id, "OrderPlaced").len(), 2, "still two to A");
        // And the order's OrderPlaced twice more onto the fan-out's queue: nothing more reaches A or B.
        local.deliver_again("WebhookFanoutQueueUrl", &placed.body, 2, &["WebhookDeliveryQueueUrl"]).await.unwrap();
        assert_eq!(for_order(&fast.received_requests().await.unwrap(), &id, "OrderPlaced").len(), 2, "still two to A");
        assert_eq!(for_order(&slow.received_requests().await.unwrap(), &id, "OrderPlaced").len(), 2, "still two to B");
        local.close(tap).await.unwrap();
        [a.0, b.0]
    })
    .await;

    // Deleted (by `unsubscribing`): listed inactive, without their secret.
    let (_, listed) = local.webhooks_api(Method::GET, "/webhooks", Some(&key), None).await.unwrap();
    for sub in &subscriptions {
        let entry = listed["webhooks"].as_array().unwrap().iter().find(|w| w["id"] == sub.as_str()).unwrap();
        assert_eq!(entry["active"], false);
        assert!(entry.get("secret").is_none());
    }
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn a_delivery_dead_lettered_by_a_404_is_redriven_to_its_subscriber_once_it_is_fixed() {
    let local = Local::connect().await.unwrap();
    let key = local.operator().await.unwrap();
    let receiver = MockServer::start().await;
    // Broken for this test's order; other tests' orders, which reach it too, are answered.
    let sku = unique_sku("BOOK");
    let broken = Mock::given(method("POST"))
        .and(own(&sku))
        .respond_with(ResponseTemplate::new(404))
        .with_priority(1)
        .mount_as_scoped(&receiver)
        .await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(204)).mount(&receiver).await;
    let made = RefCell::new(Vec::new());
    unsubscribing(&local, &key, &made, async {
        let (subscription, _) = subscribe(&local, &key, &made, &receiver, json!(["OrderPlaced"])).await;

        local.stock_product(&sku, 1999, 10).await.unwrap();
        let run = unique("e2e-webhooks-404");
        let id =
            local.place_order(&order_request("ada@example.com", &[(&sku, 1)]), &run, None).await.unwrap().order_id();

        // The 404 is permanent: the delivery goes to the dead-letter queue at once, its subscriber
        // kept.
        let letter = eventually("the 404'd delivery in the dead-letter queue", WAIT, || async {
            Ok(local
                .sqs
                .receive_message()
                .queue_url(local.output("WebhookDeliveryDeadLetterQueueUrl"))
                .max_number_of_messages(10)
                .visibility_timeout(0)
                .message_attribute_names("All")
                .send()
                .await?
                .messages
                .unwrap_or_default()
                .into_iter()
                .find(|m| m.body().is_some_and(|b| b.contains(&id))))
        })
        .await
        .unwrap();
        let attributes = letter.message_attributes().unwrap();
        assert_eq!(attributes["subscriptionId"].string_value(), Some(subscription.as_str()), "kept for redrive");
        assert!(attributes["orderflow.reason"].string_value().unwrap().contains("HTTP 404"));
        assert_eq!(for_order(&receiver.received_requests().await.unwrap(), &id, "OrderPlaced").len(), 1);

        // The subscriber is fixed; the operator redrives.
        drop(broken);
        let argv = ["orderflow-ops", "redrive", "webhooks-delivery"];
        let printed = orderflow_ops::cli::run(argv, &local.sdk).await.unwrap();
        println!("orderflow-ops redrive webhooks-delivery: {printed}");

        eventually("the redriven delivery at the subscriber", WAIT, || async {
            Ok((for_order(&receiver.received_requests().await.unwrap(), &id, "OrderPlaced").len() >= 2).then_some(()))
        })
        .await
        .unwrap();
        // Counted once the deliveries queue has been seen empty: nothing of this order is left to
        // deliver, a retry included.
        local.drained(&["WebhookDeliveryQueueUrl"]).await.unwrap();
        let got = for_order(&receiver.received_requests().await.unwrap(), &id, "OrderPlaced");
        assert_eq!(got.len(), 2, "the 404, then exactly one delivery");
        assert_eq!(got[0].headers.get("webhook-id"), got[1].headers.get("webhook-id"), "the same event");
    })
    .await;
}

/// Subscribes `receiver` to `types`, and notes the subscription in `made` for [`unsubscribing`]:
/// its id and signing secret.
async fn subscribe(
    local: &Local,
    key: &SignedIn,
    made: &RefCell<Vec<String>>,
    receiver: &MockServer,
    types: Value,
) -> (String, String) {
    let body = json!({"url": format!("{}/hooks", receiver.uri()), "eventTypes": types});
    let (status, created) = local.webhooks_api(Method::POST, "/webhooks", Some(key), Some(body)).await.unwrap();
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    made.borrow_mut().push(id.clone());
    (id, created["secret"].as_str().unwrap().to_string())
}

/// Runs `body`, then deletes every subscription it made ([`subscribe`]), also when it panics: left
/// active, a subscription would go on getting every order's events at a receiver that is gone
/// (each retried, then dead-lettered) under the other tests' feet, and in later runs on the same
/// stack.
async fn unsubscribing<T>(
    local: &Local,
    key: &SignedIn,
    made: &RefCell<Vec<String>>,
    body: impl std::future::Future<Output = T>,
) -> T {
    let outcome = AssertUnwindSafe(body).catch_unwind().await;
    let mut failed = Vec::new();
    for id in made.take() {
        match local.webhooks_api(Method::DELETE, &format!("/webhooks/{id}"), Some(key), None).await {
            Ok((204, _)) => {}
            other => failed.push(format!("{id}: {other:?}")),
        }
    }
    // The body's own panic first: it is what went wrong.
    let value = outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    assert!(failed.is_empty(), "subscriptions not deleted: {failed:?}");
    value
}
