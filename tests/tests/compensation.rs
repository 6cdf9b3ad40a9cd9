//! End to end, the workflow's ways out: a backorder restocked through `POST /stock` ships, a
//! customer's cancellation of a charged order is refunded once, and a backorder that outlives its
//! deadline (30 s in the local deployment, `ORDERFLOW_BACKORDER_DEADLINE_SECONDS`) is cancelled and
//! refunded by the scheduler. The real template on the local emulator; ignored by a bare
//! `cargo test`, run by `make test`. (Cancelling an order whose stock Warehouse had allocated is in
//! `outage.rs`: it holds Sales' status consumer down.)

use std::time::Duration;

use orderflow_contracts::OrderStatus;
use orderflow_e2e::read_models::ReadModels;
use orderflow_e2e::{eventually, order_request, unique, unique_sku, Local, Tapped};

const WAIT: Duration = Duration::from_secs(90);

fn count(events: &[Tapped], order_id: &str, detail_type: &str) -> usize {
    events.iter().filter(|e| e.order_id == order_id && e.detail_type == detail_type).count()
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn out_of_stock_then_restocked_ships_oldest_first_with_stock_right() {
    let local = Local::connect().await.unwrap();
    let run = unique("e2e-restock");
    let rare = unique_sku("RARE");
    local.stock_product(&rare, 4999, 1).await.unwrap();
    // Two orders wait for RARE, the first for three, the second for two.
    let mut ids = vec![];
    for (n, quantity) in [(0, 3), (1, 2)] {
        let body = order_request("alan@example.com", &[(&rare, quantity)]);
        let id = local.place_order(&body, &format!("{run}-{n}"), None).await.unwrap().order_id();
        local.wait_status(&id, OrderStatus::Backordered, WAIT).await.unwrap();
        ids.push(id);
    }
    assert_eq!(local.stock(&rare).await.unwrap(), Some(1), "nothing allocated while short");

    // Three arrive: with the one on the shelf, enough for the older order only.
    let (status, receipt) = local.receive_stock(&rare, 3).await.unwrap();
    assert_eq!(status, 202, "{receipt}");
    let first = local.wait_status(&ids[0], OrderStatus::ReadyToShip, WAIT).await.unwrap();
    assert!(first.tracking_number.is_some());
    assert_eq!(
        first.history.iter().map(|h| h.status).collect::<Vec<_>>(),
        [OrderStatus::Placed, OrderStatus::Backordered, OrderStatus::ReadyToShip]
    );
    assert_eq!(local.stock(&rare).await.unwrap(), Some(1), "1 + 3 - 3");
    assert_eq!(local.get_order(&ids[1]).await.unwrap().unwrap().status, OrderStatus::Backordered, "still short");

    // One more: now the second ships too.
    assert_eq!(local.receive_stock(&rare, 1).await.unwrap().0, 202);
    local.wait_status(&ids[1], OrderStatus::ReadyToShip, WAIT).await.unwrap();
    assert_eq!(local.stock(&rare).await.unwrap(), Some(0));
    for id in &ids {
        assert_eq!(local.invoice(id).await.unwrap().unwrap()["status"].as_s().unwrap(), "PAID");
    }

    // Only an operator books stock in; a malformed receipt names its field.
    let customer = local.customer("alan@example.com", None).await.unwrap();
    let body = serde_json::json!({"sku": rare, "quantity": 5});
    let (status, _) =
        local.webhooks_api(reqwest::Method::POST, "/stock", Some(&customer), Some(body.clone())).await.unwrap();
    assert_eq!(status, 403);
    assert_eq!(local.webhooks_api(reqwest::Method::POST, "/stock", None, Some(body)).await.unwrap().0, 401);
    let (status, refused) = local.receive_stock("not a sku", 5).await.unwrap();
    assert_eq!((status, refused["errors"][0]["field"].as_str()), (400, Some("sku")));
    // Without an Idempotency-Key a retried receipt would count the goods twice: refused.
    let operator = local.operator().await.unwrap();
    let (status, refused) = local
        .webhooks_api(
            reqwest::Method::POST,
            "/stock",
            Some(&operator),
            Some(serde_json::json!({"sku": rare, "quantity": 5})),
        )
        .await
        .unwrap();
    assert_eq!((status, refused["errors"][0]["field"].as_str()), (400, Some("Idempotency-Key")));
    assert_eq!(local.stock(&rare).await.unwrap(), Some(0), "nothing booked in by the refused ones");
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn a_charged_backorder_cancelled_by_its_customer_ends_cancelled_with_one_refund() {
    let local = Local::connect().await.unwrap();
    let run = unique("e2e-cancel");
    let tap = local.tap(&run).await.unwrap();
    let rare = unique_sku("RARE");
    local.stock_product(&rare, 4999, 1).await.unwrap();
    let body = order_request("alan@example.com", &[(&rare, 2)]);
    let placed = local.place_order(&body, &format!("{run}-0"), None).await.unwrap();
    let id = placed.order_id();
    local.wait_status(&id, OrderStatus::Backordered, WAIT).await.unwrap();
    assert_eq!(local.invoice(&id).await.unwrap().unwrap()["status"].as_s().unwrap(), "PAID", "charged");

    let (status, answer) = local.cancel_order(&id).await.unwrap();
    assert_eq!((status, answer["status"].as_str()), (202, Some("Cancelling")), "{answer}");
    let order = local.wait_status(&id, OrderStatus::Cancelled, WAIT).await.unwrap();
    let total = placed.order().totals.total_minor;
    assert_eq!(order.refunded_minor, Some(total));
    assert_eq!(local.invoice(&id).await.unwrap().unwrap()["status"].as_s().unwrap(), "REFUNDED");
    // Asked again: the same end, nothing more.
    assert_eq!(local.cancel_order(&id).await.unwrap().0, 202);
    let events = local
        .collect(&tap, WAIT, |seen| count(seen, &id, "PaymentRefunded") >= 1 && count(seen, &id, "OrderCancelled") >= 1)
        .await
        .unwrap();
    assert_eq!(count(&events, &id, "PaymentRefunded"), 1, "one refund: {events:?}");
    assert_eq!(count(&events, &id, "StockReleased"), 0, "nothing had been allocated");
    assert_eq!(local.stock(&rare).await.unwrap(), Some(1), "the shelf as it was");
    // The read models keep the outcome: the cache the cancelled order with its refund, reporting
    // the refund beside the charge, the lake the new events.
    let models = ReadModels::connect(&local).await.unwrap();
    let cached = eventually("the cache", WAIT, || async {
        Ok(models.cached(&id).await?.filter(|c| c.status == OrderStatus::Cancelled))
    })
    .await
    .unwrap();
    assert_eq!(cached.refunded_minor, Some(total));
    let reported = eventually("reporting", WAIT, || async {
        Ok(models
            .reported(&id)
            .await?
            .filter(|r| r.refunded_minor.is_some() && r.status.as_deref() == Some("Cancelled")))
    })
    .await
    .unwrap();
    assert_eq!((reported.billed_minor, reported.refunded_minor), (Some(total), Some(total)));
    let lake = eventually("the lake", WAIT, || async {
        let lines = models.lake_lines(&[id.as_str()]).await?;
        let has = |t: &str| lines.iter().any(|(key, _)| key.contains(&format!("event_type={t}/")));
        Ok((has("OrderCancelled") && has("PaymentRefunded")).then_some(lines))
    })
    .await;
    assert!(lake.is_ok(), "the lake keeps OrderCancelled and PaymentRefunded: {lake:?}");
    // The stock that arrives later stays on the shelf: the cancelled order no longer waits.
    assert_eq!(local.receive_stock(&rare, 5).await.unwrap().0, 202);
    eventually("the receipt counted", WAIT, || async { Ok((local.stock(&rare).await? == Some(6)).then_some(())) })
        .await
        .unwrap();
    local.drained(&["WarehouseQueueUrl"]).await.unwrap();
    assert_eq!(local.stock(&rare).await.unwrap(), Some(6), "1 + 5, none of it allocated");
    assert_eq!(local.get_order(&id).await.unwrap().unwrap().status, OrderStatus::Cancelled);

    // An order that shipped cannot be cancelled: a 409 naming its status.
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 5).await.unwrap();
    let shipped = local
        .place_order(&order_request("alan@example.com", &[(&sku, 1)]), &format!("{run}-1"), None)
        .await
        .unwrap()
        .order_id();
    local.wait_status(&shipped, OrderStatus::ReadyToShip, WAIT).await.unwrap();
    let (status, refused) = local.cancel_order(&shipped).await.unwrap();
    assert_eq!(status, 409);
    assert!(refused["errors"][0]["message"].as_str().unwrap().contains("ReadyToShip"), "{refused}");
    local.close(tap).await.unwrap();
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn a_backorder_past_its_deadline_is_cancelled_and_refunded_without_anyone() {
    let local = Local::connect().await.unwrap();
    let run = unique("e2e-deadline");
    let rare = unique_sku("RARE");
    local.stock_product(&rare, 4999, 0).await.unwrap();
    let body = order_request("alan@example.com", &[(&rare, 1)]);
    let placed = local.place_order(&body, &format!("{run}-0"), None).await.unwrap();
    let id = placed.order_id();
    let backordered = local.wait_status(&id, OrderStatus::Backordered, WAIT).await.unwrap();
    let since = backordered.history.last().unwrap().at;
    // The deadline as the deployment set it (30 s locally); the emulator's scheduler looks every
    // 10 s, and the cancellation then travels a queue and the bus.
    let deadline: i64 = local
        .function_env("SalesOrderStatusFunctionName", "BACKORDER_DEADLINE_SECONDS")
        .await
        .unwrap()
        .parse()
        .unwrap();
    let order = local.wait_status(&id, OrderStatus::Cancelled, Duration::from_secs(180)).await.unwrap();
    let cancelling = order.history.iter().find(|h| h.status == OrderStatus::Cancelling).unwrap();
    let waited = (cancelling.at - since).num_seconds();
    assert!(
        (deadline - 5..=deadline + 90).contains(&waited),
        "cancelled {waited} s after it was backordered, not at its deadline of {deadline} s"
    );
    assert!(cancelling.reason.as_deref().unwrap().contains("deadline"), "{:?}", cancelling.reason);
    assert_eq!(order.refunded_minor, Some(placed.order().totals.total_minor));
    assert_eq!(local.invoice(&id).await.unwrap().unwrap()["status"].as_s().unwrap(), "REFUNDED");
    assert_eq!(local.stock(&rare).await.unwrap(), Some(0));
}
