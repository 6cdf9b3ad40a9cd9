//! End to end: infra/template.yaml deployed on the local emulator with the real binaries
//! (`infra/deploy-local.sh`), driven over HTTP and SQS, asserting on stored state and queue contents.
//! Ignored by a bare `cargo test`; `make test` deploys and runs them (`tests/all.rs` says how).
//! Every test uses its own SKUs and correlation-id prefix, so they run concurrently. Tests that take a
//! consumer down are in `outage.rs`, which `make test` runs alone, so they never stall these.

use std::collections::HashMap;
use std::time::Duration;

use futures::future::join_all;
use orderflow_contracts::{Metadata, OrderStatus, TraceContext};
use orderflow_e2e::{eventually, order_request, unique, unique_sku, Local, Placed, Tapped};

const WAIT: Duration = Duration::from_secs(90);

fn count(events: &[Tapped], order_id: &str, detail_type: &str) -> usize {
    events.iter().filter(|e| e.order_id == order_id && e.detail_type == detail_type).count()
}

fn has_status_change(events: &[Tapped], order_id: &str) -> bool {
    count(events, order_id, "OrderStatusChanged") > 0
}

/// The fields a refused `POST /orders` names; an order taken fails the test.
fn refused_fields(placed: Placed) -> (u16, Vec<String>) {
    match placed {
        Placed::Refused { status, fields, .. } => (status, fields),
        taken => panic!("expected a refusal, the order was taken: {taken:?}"),
    }
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn twenty_concurrent_orders_all_reach_ready_to_ship_with_one_invoice_each_and_correct_stock() {
    let local = Local::connect().await.unwrap();
    let (book, mug) = (unique_sku("BOOK"), unique_sku("MUG"));
    local.stock_product(&book, 1999, 100).await.unwrap();
    local.stock_product(&mug, 1250, 50).await.unwrap();
    let run = unique("e2e-twenty");
    let tap = local.tap(&run).await.unwrap();

    let body = order_request("ada@example.com", &[(&book, 2), (&mug, 1)]);
    let placed = join_all((0..20).map(|i| {
        let (local, body, run) = (&local, &body, &run);
        async move { local.place_order(body, &format!("{run}-{i}"), None).await.unwrap() }
    }))
    .await;
    let ids: Vec<String> = placed
        .iter()
        .map(|placed| {
            assert!(matches!(placed, Placed::Created(_)), "{placed:?}");
            placed.order_id()
        })
        .collect();

    for id in &ids {
        let order = local.wait_final(id, WAIT).await.unwrap();
        assert_eq!(order.status, OrderStatus::ReadyToShip, "{id}: {:?}", order.history);
        assert_eq!(order.version, 2);
        assert!(order.tracking_number.is_some());
        let invoice = local.invoice(id).await.unwrap().unwrap_or_else(|| panic!("{id} has no invoice"));
        assert_eq!(invoice["status"].as_s().unwrap(), "PAID");
        assert_eq!(invoice["amountMinor"].as_n().unwrap(), &(2 * 1999 + 1250 + 495).to_string());
    }
    assert_eq!(local.stock(&book).await.unwrap(), Some(100 - 20 * 2));
    assert_eq!(local.stock(&mug).await.unwrap(), Some(50 - 20));

    let events = local.collect(&tap, WAIT, |seen| ids.iter().all(|id| has_status_change(seen, id))).await.unwrap();
    for id in &ids {
        for detail_type in ["OrderPlaced", "OrderBilled", "ShippingLabelCreated", "OrderStatusChanged"] {
            assert_eq!(count(&events, id, detail_type), 1, "{id}: exactly one {detail_type}");
        }
    }
    // Correlation carried from the HTTP request through every service.
    let by_order: HashMap<&str, Vec<&Tapped>> = events.iter().fold(HashMap::new(), |mut m, e| {
        m.entry(e.order_id.as_str()).or_default().push(e);
        m
    });
    for (id, evs) in by_order {
        let first = &evs[0].correlation_id;
        assert!(evs.iter().all(|e| &e.correlation_id == first), "{id}: one correlation id across the flow");
    }
    // One trace per order across every hop: each event names as parent the span of the consumer that
    // handled its cause (the API, then Billing, Warehouse, Sales' status consumer), whose id the
    // harness derives from the cause and the consumer.
    let metadata = |e: &Tapped| -> Metadata {
        let body: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        serde_json::from_value(body["detail"]["metadata"].clone()).unwrap()
    };
    for id in &ids {
        let of = |detail_type: &str| {
            metadata(events.iter().find(|e| &e.order_id == id && e.detail_type == detail_type).unwrap())
        };
        let placed = of("OrderPlaced");
        assert!(placed.traceparent.is_some(), "{id}: the API starts the trace");
        let chain = [
            ("billing", of("OrderBilled")),
            ("warehouse", of("ShippingLabelCreated")),
            ("sales-order-status", of("OrderStatusChanged")),
        ];
        let mut cause = placed;
        for (consumer, event) in chain {
            assert_eq!(
                TraceContext::parse(event.traceparent.as_deref().unwrap()),
                Some(cause.trace().child(&cause.event_id, consumer)),
                "{id}: {} is a child of {consumer}'s handling of {}",
                event.event_type,
                cause.event_type
            );
            cause = event;
        }
    }
    // The label document is in S3 where the event says.
    let label = events.iter().find(|e| e.detail_type == "ShippingLabelCreated").unwrap();
    let body: serde_json::Value = serde_json::from_str(&label.body).unwrap();
    let object = local
        .s3
        .get_object()
        .bucket(body["detail"]["data"]["labelBucket"].as_str().unwrap())
        .key(body["detail"]["data"]["labelKey"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&object.body.collect().await.unwrap().into_bytes()).unwrap();
    assert_eq!(doc["trackingNumber"], body["detail"]["data"]["trackingNumber"]);
    local.close(tap).await.unwrap();
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn a_declined_payment_ends_payment_failed_and_allocates_nothing() {
    let local = Local::connect().await.unwrap();
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 10).await.unwrap();
    let placed = local
        .place_order(&order_request("grace+decline@example.com", &[(&sku, 1)]), &unique("e2e-declined"), None)
        .await
        .unwrap();
    assert_eq!(placed.status(), 201);
    let id = &placed.order_id();
    let order = local.wait_final(id, WAIT).await.unwrap();
    assert_eq!(order.status, OrderStatus::PaymentFailed);
    assert!(order.history.last().unwrap().reason.as_deref().unwrap().contains("declined"));
    assert_eq!(local.invoice(id).await.unwrap().unwrap()["status"].as_s().unwrap(), "DECLINED");
    assert_eq!(local.stock(&sku).await.unwrap(), Some(10));
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn an_order_larger_than_stock_ends_backordered_with_stock_unchanged() {
    let local = Local::connect().await.unwrap();
    let (plenty, rare) = (unique_sku("BOOK"), unique_sku("RARE"));
    local.stock_product(&plenty, 1999, 10).await.unwrap();
    local.stock_product(&rare, 4999, 2).await.unwrap();
    let body = order_request("alan@example.com", &[(&plenty, 1), (&rare, 3)]);
    let placed = local.place_order(&body, &unique("e2e-short"), None).await.unwrap();
    assert_eq!(placed.status(), 201);
    let id = &placed.order_id();
    let order = local.wait_final(id, WAIT).await.unwrap();
    assert_eq!(order.status, OrderStatus::Backordered);
    assert!(order
        .history
        .last()
        .unwrap()
        .reason
        .as_deref()
        .unwrap()
        .contains(&format!("{rare}: 3 requested, 2 available")));
    assert_eq!(local.stock(&plenty).await.unwrap(), Some(10), "all lines or none");
    assert_eq!(local.stock(&rare).await.unwrap(), Some(2));
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn an_invalid_post_gets_a_4xx_naming_the_field_and_publishes_nothing() {
    let local = Local::connect().await.unwrap();
    let run = unique("e2e-invalid");
    let tap = local.tap(&run).await.unwrap();
    let sku = unique_sku("X");
    local.stock_product(&sku, 100, 10).await.unwrap();

    let mut body = order_request("ada@example.com", &[("BOOK-001", 0)]);
    body["currency"] = serde_json::json!("XYZ");
    let refused = refused_fields(local.place_order(&body, &format!("{run}-0"), None).await.unwrap());
    assert_eq!(refused, (400, vec!["lines[0].quantity".into(), "currency".into()]));

    // Prices are the shop's: a client price is refused, an unknown SKU names its line.
    let mut body = order_request("ada@example.com", &[(&sku, 1000), ("NOT-SOLD-1", 1)]);
    body["lines"][0]["unitPriceMinor"] = serde_json::json!(i64::MAX);
    let refused = refused_fields(local.place_order(&body, &format!("{run}-0"), None).await.unwrap());
    assert_eq!(refused, (400, vec!["lines[0].unitPriceMinor".into()]));
    let body = order_request("ada@example.com", &[(&sku, 1), ("NOT-SOLD-1", 1)]);
    let refused = refused_fields(local.place_order(&body, &format!("{run}-0"), None).await.unwrap());
    assert_eq!(refused, (400, vec!["lines[1].sku".into()]));

    // A valid order on the same tap proves the tap works; only its events may arrive.
    let ok =
        local.place_order(&order_request("ada@example.com", &[(&sku, 1)]), &format!("{run}-1"), None).await.unwrap();
    assert_eq!(ok.status(), 201);
    let ok_id = ok.order_id();
    let events = local.collect(&tap, WAIT, |seen| has_status_change(seen, &ok_id)).await.unwrap();
    assert!(events.iter().all(|e| e.correlation_id == format!("{run}-1")), "the invalid requests published nothing");
    local.close(tap).await.unwrap();
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn garbage_on_the_billing_queue_is_dead_lettered_after_one_receive_while_orders_keep_flowing() {
    let local = Local::connect().await.unwrap();
    let garbage = format!("garbage {}", unique("poison"));
    local.sqs.send_message().queue_url(local.output("BillingQueueUrl")).message_body(&garbage).send().await.unwrap();

    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 5).await.unwrap();
    let placed =
        local.place_order(&order_request("ada@example.com", &[(&sku, 1)]), &unique("e2e-poison"), None).await.unwrap();
    let order = local.wait_final(&placed.order_id(), WAIT).await.unwrap();
    assert_eq!(order.status, OrderStatus::ReadyToShip, "other orders keep flowing");

    let dlq = local.output("BillingDeadLetterQueueUrl");
    let letter = eventually("the garbage in Billing's DLQ", WAIT, || async {
        let out = local
            .sqs
            .receive_message()
            .queue_url(dlq)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(0)
            .message_attribute_names("All")
            .send()
            .await?;
        Ok(out.messages().iter().find(|m| m.body() == Some(garbage.as_str())).cloned())
    })
    .await
    .unwrap();
    let attrs = letter.message_attributes().unwrap();
    assert_eq!(attrs["orderflow.receiveCount"].string_value(), Some("1"), "dead-lettered on its first receive");
    assert_eq!(attrs["orderflow.consumer"].string_value(), Some("billing"));
    assert!(attrs["orderflow.reason"].string_value().unwrap().contains("not an EventBridge event"));
    local.sqs.delete_message().queue_url(dlq).receipt_handle(letter.receipt_handle().unwrap()).send().await.unwrap();
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn the_same_order_placed_delivered_twice_bills_allocates_and_changes_status_once() {
    let local = Local::connect().await.unwrap();
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 10).await.unwrap();
    let run = unique("e2e-dup");
    let tap = local.tap(&run).await.unwrap();
    let id = local.place_order(&order_request("ada@example.com", &[(&sku, 2)]), &run, None).await.unwrap().order_id();
    let mut seen = local.collect(&tap, WAIT, |seen| has_status_change(seen, &id)).await.unwrap();
    let placed = seen.iter().find(|e| e.detail_type == "OrderPlaced").unwrap().body.clone();
    let invoice_before = local.invoice(&id).await.unwrap().unwrap();

    // The very same OrderPlaced, delivered to Billing twice more, concurrently.
    // Wait until Billing has finished with both (nothing visible or in flight on its queue) ...
    local.deliver_again("BillingQueueUrl", &placed, 2, &[]).await.unwrap();
    // ... then let a sentinel through the bus after anything those runs published, and count.
    // Then the same for what they publish, hop by hop: Warehouse, then Sales' status consumer.
    for next in [Some("WarehouseQueueUrl"), Some("SalesOrderStatusQueueUrl"), None] {
        local.sentinel(&run).await.unwrap();
        let rest = local.collect(&tap, WAIT, |s| s.iter().any(|e| e.detail_type == "Sentinel")).await.unwrap();
        seen.extend(rest);
        if let Some(queue) = next {
            local.drained(&[queue]).await.unwrap();
        }
    }
    // Billing keeps no claims (its invoice is its idempotency record): each copy finds the invoice
    // paid and announces it again, as the *same* event, which the consumers that claim drop and the
    // rest handle to no effect. What counts: one invoice, untouched (no second charge), stock
    // allocated once, and the customer's order changed status once.
    let billed: Vec<&str> = seen
        .iter()
        .filter(|e| e.order_id == id && e.detail_type == "OrderBilled")
        .map(|e| e.event_id.as_str())
        .collect();
    assert!(
        !billed.is_empty() && billed.iter().all(|e| *e == billed[0]),
        "every OrderBilled is the same event: {billed:?}"
    );
    let labels: Vec<&str> = seen
        .iter()
        .filter(|e| e.order_id == id && e.detail_type == "ShippingLabelCreated")
        .map(|e| e.event_id.as_str())
        .collect();
    assert!(labels.iter().all(|e| *e == labels[0]), "every ShippingLabelCreated is the same event: {labels:?}");
    assert_eq!(count(&seen, &id, "OrderStatusChanged"), 1, "the order changed status once: {seen:?}");
    assert_eq!(local.invoice(&id).await.unwrap().unwrap(), invoice_before, "one invoice, untouched");
    assert_eq!(local.stock(&sku).await.unwrap(), Some(8), "allocated once");
    local.close(tap).await.unwrap();
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn a_tap_dropped_by_a_failing_test_removes_its_rule_and_queue() {
    let local = Local::connect().await.unwrap();
    let tap = local.tap(&unique("e2e-dropped")).await.unwrap();
    let (rule, queue) = (tap.rule().to_string(), tap.queue_url.clone());
    assert_eq!(rules_named(&local, &rule).await, vec![rule.clone()], "the tap's rule is on the bus");
    // A test that fails while it holds a tap: the tap is dropped as the panic unwinds.
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _held = tap;
        panic!("a failing check");
    }));
    assert!(failed.is_err());
    assert_eq!(rules_named(&local, &rule).await, Vec::<String>::new(), "its rule is gone");
    let gone = local.sqs.get_queue_attributes().queue_url(&queue).send().await;
    assert!(gone.is_err(), "its queue is gone");
}

/// The rules on the bus whose name starts with `name`.
async fn rules_named(local: &Local, name: &str) -> Vec<String> {
    let rules =
        local.events.list_rules().event_bus_name(local.output("EventBusName")).name_prefix(name).send().await.unwrap();
    rules.rules().iter().filter_map(|r| r.name().map(str::to_string)).collect()
}
