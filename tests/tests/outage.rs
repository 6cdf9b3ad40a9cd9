//! End to end, with a consumer taken down: the real template on the local emulator
//! (`infra/deploy-local.sh`). A test binary of its own, because cargo runs test binaries one after
//! another: while these switch an event source mapping off, no other end-to-end test is running and
//! waiting on that consumer. Ignored by a bare `cargo test`; `make test` runs them.

use std::time::Duration;

use orderflow_contracts::OrderStatus;
use orderflow_e2e::{order_request, unique, unique_sku, Local, Tapped};

const WAIT: Duration = Duration::from_secs(90);

/// One outage at a time: each test here takes a consumer down that the other's orders need.
static ONE_OUTAGE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn count(events: &[Tapped], order_id: &str, detail_type: &str) -> usize {
    events.iter().filter(|e| e.order_id == order_id && e.detail_type == detail_type).count()
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn a_consumer_that_is_down_loses_nothing_and_catches_up_when_it_returns() {
    let _alone = ONE_OUTAGE_AT_A_TIME.lock().await;
    let local = Local::connect().await.unwrap();
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 10).await.unwrap();
    let run = unique("e2e-down");
    let tap = local.tap(&run).await.unwrap();

    // Warehouse goes down: its queue keeps receiving, nothing is delivered to the function.
    let ids = local
        .with_consumer_down("WarehouseFunctionName", async {
            let mut ids = Vec::new();
            for i in 0..3 {
                let (status, order) = local
                    .place_order(&order_request("ada@example.com", &[(&sku, 1)]), &format!("{run}-{i}"), None)
                    .await
                    .unwrap();
                assert_eq!(status, 201);
                ids.push(order["orderId"].as_str().unwrap().to_string());
            }
            // Billing, which is up, does its part for every order ...
            local.collect(&tap, WAIT, |seen| ids.iter().all(|id| count(seen, id, "OrderBilled") == 1)).await.unwrap();
            // ... their OrderBilled events sit in Warehouse's queue (all of it ours: this binary runs alone) ...
            let queue = local.output("WarehouseQueueUrl");
            let deadline = std::time::Instant::now() + WAIT;
            while local.queue_depth(queue).await.unwrap() < ids.len() as u32 {
                assert!(std::time::Instant::now() < deadline, "the OrderBilled events never reached Warehouse's queue");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // ... and the orders wait, with nothing allocated, while Warehouse is down.
            for id in &ids {
                assert_eq!(local.get_order(id).await.unwrap().unwrap().status, OrderStatus::Placed);
            }
            assert_eq!(local.stock(&sku).await.unwrap(), Some(10));
            ids
        })
        .await
        .unwrap();
    // Warehouse is back.

    for id in &ids {
        assert_eq!(local.wait_final(id, WAIT).await.unwrap().status, OrderStatus::ReadyToShip, "{id} caught up");
    }
    assert_eq!(local.stock(&sku).await.unwrap(), Some(7));
    local.close(tap).await.unwrap();
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn orders_stored_while_the_outbox_relay_is_down_are_announced_once_when_it_returns() {
    let _alone = ONE_OUTAGE_AT_A_TIME.lock().await;
    let local = Local::connect().await.unwrap();
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 10).await.unwrap();
    let run = unique("e2e-relay-down");
    let tap = local.tap(&run).await.unwrap();

    // The publish path is down: the relay receives nothing from the orders table's stream.
    let ids = local
        .with_consumer_down("SalesOutboxRelayFunctionName", async {
            let mut ids = Vec::new();
            for i in 0..2 {
                let (status, order) = local
                    .place_order(&order_request("ada@example.com", &[(&sku, 1)]), &format!("{run}-{i}"), None)
                    .await
                    .unwrap();
                assert_eq!(status, 201, "the order is taken: storing it is what counts");
                ids.push(order["orderId"].as_str().unwrap().to_string());
            }
            // Nothing announced yet: a sentinel passes the bus, no OrderPlaced of ours before it.
            local.sentinel(&run).await.unwrap();
            let seen = local.collect(&tap, WAIT, |s| s.iter().any(|e| e.detail_type == "Sentinel")).await.unwrap();
            assert!(seen.iter().all(|e| e.detail_type == "Sentinel"), "announced while the relay was down: {seen:?}");
            ids
        })
        .await
        .unwrap();

    for id in &ids {
        assert_eq!(local.wait_final(id, WAIT).await.unwrap().status, OrderStatus::ReadyToShip, "{id} announced");
    }
    local.sentinel(&run).await.unwrap();
    let seen = local
        .collect(&tap, WAIT, |s| {
            ids.iter().all(|id| count(s, id, "OrderStatusChanged") == 1)
                && s.iter().any(|e| e.detail_type == "Sentinel")
        })
        .await
        .unwrap();
    for id in &ids {
        assert_eq!(count(&seen, id, "OrderPlaced"), 1, "{id}: announced exactly once");
    }
    local.close(tap).await.unwrap();
}
