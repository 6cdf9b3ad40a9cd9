//! End to end, with a consumer taken down: the real template on the local emulator
//! (`infra/deploy-local.sh`). `make test` runs these alone, after the other tests, one at a time
//! (`.config/nextest.toml`): while these switch an event source mapping off, no other end-to-end
//! test is running and waiting on that consumer. Ignored by a bare `cargo test`.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use orderflow_contracts::OrderStatus;
use orderflow_e2e::read_models::{with_reporting_database_down, ReadModels};
use orderflow_e2e::template::Template;
use orderflow_e2e::twilio::TwilioStandIn;
use orderflow_e2e::{eventually, order_request, unique, unique_sku, Local, Tapped};

const WAIT: Duration = Duration::from_secs(90);

/// One outage at a time: each test here takes a consumer down that the other's orders need. Within
/// one process (`cargo test`); `make test` runs these tests alone, one after another (tests/run.sh).
static ONE_OUTAGE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn count(events: &[Tapped], order_id: &str, detail_type: &str) -> usize {
    events.iter().filter(|e| e.order_id == order_id && e.detail_type == detail_type).count()
}

/// How many different events (by event id) of this type the order had: what consumers can tell
/// apart. A copy of the same event (EventBridge and SQS deliver at least once, and a handler cut
/// off after publishing publishes the same derived id again) is dropped by every consumer.
fn distinct(events: &[Tapped], order_id: &str, detail_type: &str) -> usize {
    let ids: std::collections::HashSet<&str> = events
        .iter()
        .filter(|e| e.order_id == order_id && e.detail_type == detail_type)
        .map(|e| e.event_id.as_str())
        .collect();
    ids.len()
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
                let placed = local
                    .place_order(&order_request("ada@example.com", &[(&sku, 1)]), &format!("{run}-{i}"), None)
                    .await
                    .unwrap();
                assert_eq!(placed.status(), 201);
                ids.push(placed.order_id());
            }
            // Billing, which is up, does its part for every order ...
            local.collect(&tap, WAIT, |seen| ids.iter().all(|id| count(seen, id, "OrderBilled") == 1)).await.unwrap();
            // ... their OrderBilled events sit in Warehouse's queue (all of it ours: these tests run alone) ...
            let queue = local.output("WarehouseQueueUrl");
            eventually("the OrderBilled events in Warehouse's queue", WAIT, || async {
                Ok((local.queue_depth(queue).await? >= ids.len() as u32).then_some(()))
            })
            .await
            .unwrap();
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
async fn with_the_outbox_relay_down_orders_still_flow_and_the_relay_back_publishes_none_of_them_again() {
    let _alone = ONE_OUTAGE_AT_A_TIME.lock().await;
    let local = Local::connect().await.unwrap();
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 10).await.unwrap();
    let run = unique("e2e-relay-down");
    let tap = local.tap(&run).await.unwrap();

    // The stream's relay is down: the writers' own publishes (sales::announce) carry every order.
    let ids = local
        .with_consumer_down("SalesOutboxRelayFunctionName", async {
            let mut ids = Vec::new();
            for i in 0..2 {
                let placed = local
                    .place_order(&order_request("ada@example.com", &[(&sku, 1)]), &format!("{run}-{i}"), None)
                    .await
                    .unwrap();
                assert_eq!(placed.status(), 201);
                ids.push(placed.order_id());
            }
            for id in &ids {
                let status = local.wait_final(id, WAIT).await.unwrap().status;
                assert_eq!(status, OrderStatus::ReadyToShip, "{id} shipped without the relay");
            }
            ids
        })
        .await
        .unwrap();

    // Back, the relay reads every write of those orders from the stream: all marked, none published
    // again. Its own sentinel, written after them, says it has read that far.
    local.relay_sentinel(&run).await.unwrap();
    let seen = local.collect(&tap, WAIT, |s| s.iter().any(|e| e.detail_type == "Sentinel")).await.unwrap();
    for id in &ids {
        assert_eq!(count(&seen, id, "OrderPlaced"), 1, "{id}: published once, by the API");
        assert_eq!(count(&seen, id, "OrderStatusChanged"), 1, "{id}: published once, by the status consumer");
    }
    local.close(tap).await.unwrap();
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn orders_whose_writer_never_published_them_are_announced_once_by_the_relay_when_it_returns() {
    let _alone = ONE_OUTAGE_AT_A_TIME.lock().await;
    let local = Local::connect().await.unwrap();
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 10).await.unwrap();
    let run = unique("e2e-no-fast-path");
    let tap = local.tap(&run).await.unwrap();

    // The API stores each order and publishes nothing (as if it died right after the write: the
    // fast path off), and the relay is down: nothing may be announced, and nothing may be lost.
    let ids = local
        .with_function_env("SalesApiFunctionName", "OUTBOX_PUBLISH_ON_WRITE", "false", async {
            local
                .with_consumer_down("SalesOutboxRelayFunctionName", async {
                    let mut ids = Vec::new();
                    for i in 0..2 {
                        let request = order_request("ada@example.com", &[(&sku, 1)]);
                        let placed = local.place_order(&request, &format!("{run}-{i}"), None).await.unwrap();
                        assert_eq!(placed.status(), 201, "the order is taken: storing it is what counts");
                        ids.push(placed.order_id());
                    }
                    // Nothing announced yet: a sentinel passes the bus, no OrderPlaced of ours before it.
                    local.sentinel(&run).await.unwrap();
                    let seen =
                        local.collect(&tap, WAIT, |s| s.iter().any(|e| e.detail_type == "Sentinel")).await.unwrap();
                    assert!(seen.iter().all(|e| e.detail_type == "Sentinel"), "announced: {seen:?}");
                    ids
                })
                .await
        })
        .await
        .unwrap()
        .unwrap();

    for id in &ids {
        assert_eq!(local.wait_final(id, WAIT).await.unwrap().status, OrderStatus::ReadyToShip, "{id} announced");
    }
    local.relay_sentinel(&run).await.unwrap();
    let seen = local.collect(&tap, WAIT, |s| s.iter().any(|e| e.detail_type == "Sentinel")).await.unwrap();
    for id in &ids {
        assert_eq!(count(&seen, id, "OrderPlaced"), 1, "{id}: announced exactly once, by the relay");
    }
    local.close(tap).await.unwrap();
}

/// Every dead-letter queue of the stack, by output name, with how many messages it holds.
async fn dead_letters(local: &Local) -> BTreeMap<String, u32> {
    let mut depths = BTreeMap::new();
    for output in local.output_names().into_iter().filter(|k| k.ends_with("DeadLetterQueueUrl")) {
        let depth = local.queue_depth(local.output(&output)).await.unwrap();
        depths.insert(output, depth);
    }
    depths
}

/// Places `n` orders of one unit of `sku` (8 at a time), correlation ids `<run>-<i>`.
async fn place_many(local: &Local, sku: &str, run: &str, n: usize) -> Vec<String> {
    futures::stream::iter(0..n)
        .map(|i| async move {
            let placed = local
                .place_order(
                    &order_request(&format!("{run}-{i}@example.com"), &[(sku, 1)]),
                    &format!("{run}-{i}"),
                    None,
                )
                .await
                .unwrap();
            assert_eq!(placed.status(), 201, "{placed:?}");
            placed.order_id()
        })
        .buffer_unordered(8)
        .collect()
        .await
}

/// Runs `orderflow-ops` (its command line, through the library the binary calls) against the local
/// stack and returns what it printed.
async fn ops(local: &Local, args: &[&str]) -> String {
    let argv = std::iter::once("orderflow-ops").chain(args.iter().copied());
    let printed = orderflow_ops::cli::run(argv, &local.sdk)
        .await
        .unwrap_or_else(|e| panic!("orderflow-ops {args:?} failed: {e:#}"));
    println!("orderflow-ops {}: {}", args.join(" "), printed.trim());
    printed
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn two_hundred_orders_placed_while_billing_is_down_all_ship_once_it_returns() {
    let _alone = ONE_OUTAGE_AT_A_TIME.lock().await;
    TwilioStandIn::shared().await.unwrap();
    let local = Local::connect().await.unwrap();
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 200).await.unwrap();
    let before = dead_letters(&local).await;
    let run = unique("e2e-200");
    let tap = local.tap(&run).await.unwrap();

    let (ids, began) = local
        .with_consumer_down("BillingFunctionName", async {
            // Timed from here, Billing's feed off.
            let began = std::time::Instant::now();
            let ids = place_many(&local, &sku, &run, 200).await;
            // Every OrderPlaced waits in Billing's queue; no order moves.
            eventually("the 200 OrderPlaced in Billing's queue", WAIT, || async {
                Ok((local.queue_depth(local.output("BillingQueueUrl")).await? >= 200).then_some(()))
            })
            .await
            .unwrap();
            println!(
                "billing down: {} orders placed, {} waiting in its queue after {:.1?}",
                ids.len(),
                local.queue_depth(local.output("BillingQueueUrl")).await.unwrap(),
                began.elapsed()
            );
            (ids, began)
        })
        .await
        .unwrap();

    // Billing is back: every order ends ready to ship, billed once.
    let seen = local
        .collect(&tap, Duration::from_secs(300), |s| ids.iter().all(|id| count(s, id, "OrderStatusChanged") >= 1))
        .await
        .unwrap();
    println!("billing back: every order's status changed on the tap after {:.1?}", began.elapsed());
    local.sentinel(&format!("{run}-sentinel")).await.unwrap();
    let mut seen = seen;
    seen.extend(local.collect(&tap, WAIT, |s| s.iter().any(|e| e.detail_type == "Sentinel")).await.unwrap());
    let (mut ready, mut copies) = (0, 0);
    for id in &ids {
        assert_eq!(local.get_order(id).await.unwrap().unwrap().status, OrderStatus::ReadyToShip, "{id}");
        assert!(local.invoice(id).await.unwrap().is_some(), "{id}: an invoice");
        assert_eq!(distinct(&seen, id, "OrderBilled"), 1, "{id}: billed once");
        copies += count(&seen, id, "OrderBilled") - 1;
        ready += 1;
    }
    println!("billing back: {copies} repeated copies of an OrderBilled seen on the tap (same event id)");
    assert_eq!(dead_letters(&local).await, before, "nothing in any dead-letter queue");
    println!(
        "billing back: {ready}/200 ready to ship, {} invoices, 0 dead letters; checked after {:.1?}",
        ids.len(),
        began.elapsed()
    );
    local.close(tap).await.unwrap();
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn with_the_reporting_database_down_cache_and_lake_keep_up_and_reporting_catches_up_exactly() {
    let _alone = ONE_OUTAGE_AT_A_TIME.lock().await;
    TwilioStandIn::shared().await.unwrap();
    let local = Local::connect().await.unwrap();
    let models = ReadModels::connect(&local).await.unwrap();
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 10).await.unwrap();
    let run = unique("e2e-pg-down");

    let orders = with_reporting_database_down(async {
        let ids = place_many(&local, &sku, &run, 10).await;
        let mut orders = Vec::new();
        for id in &ids {
            orders.push(local.wait_final(id, WAIT).await.unwrap());
        }
        // The cache and the lake keep up without the database.
        for order in &orders {
            eventually("the order cached at its final version", WAIT, || async {
                Ok(models.cached(&order.order_id).await?.filter(|c| c.version == order.version))
            })
            .await
            .unwrap();
        }
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let lake = eventually("every order's four events in the lake", WAIT, || async {
            let lines = models.lake_lines(&id_refs).await?;
            Ok((lines.len() >= 4 * ids.len()).then_some(lines.len()))
        })
        .await
        .unwrap();
        // Reporting's events wait in its queue, retried, none dead-lettered.
        assert!(local.queue_depth(local.output("ReportingQueueUrl")).await.unwrap() > 0);
        println!(
            "reporting database down: {} orders final, {} cached, {lake} lake lines, reporting waiting",
            orders.len(),
            orders.len()
        );
        orders
    })
    .await
    .unwrap();

    // The database is back: reporting matches the orders exactly.
    for order in &orders {
        let reported = eventually("the order reported at its final version", Duration::from_secs(240), || async {
            Ok(models
                .reported(&order.order_id)
                .await?
                .filter(|r| r.version == order.version as i64 && r.billed_minor.is_some()))
        })
        .await
        .unwrap();
        assert_eq!(reported.status.as_deref(), Some("ReadyToShip"));
        assert_eq!(reported.total_minor, Some(order.totals.total_minor));
        assert_eq!(reported.billed_minor, Some(order.totals.total_minor));
        assert_eq!(reported.lines, vec![(sku.clone(), 1, 1999)]);
    }
    assert_eq!(local.queue_depth(local.output("ReportingDeadLetterQueueUrl")).await.unwrap(), 0);
    println!("reporting database back: {}/{} orders reported exactly", orders.len(), orders.len());
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn texts_dead_lettered_while_twilio_refused_them_are_sent_once_each_after_redrive() {
    let _alone = ONE_OUTAGE_AT_A_TIME.lock().await;
    let stand_in = TwilioStandIn::shared().await.unwrap();
    let local = Local::connect().await.unwrap();
    let dlq = local.output("SmsDeadLetterQueueUrl").to_string();
    // Whatever earlier tests left there goes back too; count it first.
    let earlier = local.queue_depth(&dlq).await.unwrap();
    // Twilio refuses this customer's texts (a suspended account: 401): the SMS consumer dead-letters
    // both (one per paid order, two orders) at once, without retrying.
    let to = format!("+4477009{:05}", uuid::Uuid::new_v4().as_u128() % 100_000);
    stand_in.fail_first(&to, vec![(401, None), (401, None)]).await;
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 2).await.unwrap();
    let run = unique("e2e-redrive");
    let mut request = order_request(&format!("{run}@example.com"), &[(&sku, 1)]);
    request["customer"]["phone"] = to.clone().into();
    for n in 0..2 {
        let id = local.place_order(&request, &format!("{run}-{n}"), None).await.unwrap().order_id();
        assert_eq!(local.wait_final(&id, WAIT).await.unwrap().status, OrderStatus::ReadyToShip);
    }
    eventually("both texts in the SMS dead-letter queue", WAIT, || async {
        Ok((local.queue_depth(&dlq).await? >= earlier + 2).then_some(()))
    })
    .await
    .unwrap();
    assert!(stand_in.delivered_to(&to).await.is_empty());
    assert_eq!(stand_in.received(&to).await.len(), 2, "refused once each, not retried");

    // Twilio accepts again (the refusals are used up); the operator redrives.
    let printed = ops(&local, &["redrive", "sms"]).await;
    assert!(printed.contains("receive/send/delete"), "says which way it moved them: {printed}");
    let moved: u32 = printed.split("sms: ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert_eq!(moved, earlier + 2, "every dead letter moved");
    eventually("both texts delivered", WAIT, || async {
        Ok((stand_in.delivered_to(&to).await.len() >= 2).then_some(()))
    })
    .await
    .unwrap();
    // None doubled: once the SMS queue is empty, still exactly two texts.
    // (Texts of earlier tests' orders may still be waiting out a retry delay there.)
    eventually("the SMS queue drained", Duration::from_secs(240), || async {
        Ok((local.queue_depth(local.output("SmsQueueUrl")).await? == 0).then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(stand_in.delivered_to(&to).await.len(), 2, "each text once");
    println!("redrive: {moved} moved, {} texts delivered to the customer", stand_in.delivered_to(&to).await.len());
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn reporting_tables_emptied_and_rebuilt_by_replay_equal_what_they_were_and_only_reporting_sees_the_replay() {
    let _alone = ONE_OUTAGE_AT_A_TIME.lock().await;
    TwilioStandIn::shared().await.unwrap();
    let local = Local::connect().await.unwrap();
    let models = ReadModels::connect(&local).await.unwrap();

    // An observer per consumer: a rule with exactly that consumer's pattern (replay guard included).
    let template = Template::load().unwrap();
    let mut observers = Vec::new();
    for f in template.functions() {
        let (Some(queue), Some(name)) = (f.queue.as_deref(), f.consumer_name.clone()) else { continue };
        if let Some(rule) = template.rule_for_queue(queue) {
            observers.push((name, local.observe(&rule.pattern).await.unwrap()));
        }
    }
    assert!(observers.len() >= 9, "{} consumer rules", observers.len());
    // The consumers that refuse replays say so before asking AWS anything.
    let refused =
        orderflow_ops::cli::run(["orderflow-ops", "replay", "sms", "--from", "2026-01-01T00:00:00Z"], &local.sdk)
            .await
            .unwrap_err()
            .to_string();
    assert!(refused.contains("takes no replays"), "{refused}");

    // The window: orders placed by this test alone (these tests run alone).
    let from = chrono::Utc::now() - chrono::Duration::seconds(1);
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 5).await.unwrap();
    let run = unique("e2e-replay");
    let ids = place_many(&local, &sku, &run, 5).await;
    for id in &ids {
        let order = local.wait_final(id, WAIT).await.unwrap();
        eventually("reported at the final version, billed", WAIT, || async {
            Ok(models.reported(id).await?.filter(|r| r.version == order.version as i64 && r.billed_minor.is_some()))
        })
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let to = chrono::Utc::now();
    let snapshot = reporting_rows(&models).await;
    let ours: Vec<_> = snapshot.iter().filter(|r| ids.contains(&r.0)).cloned().collect();
    assert_eq!(ours.len(), 5);

    // Emptied, then rebuilt by replaying the window to reporting alone.
    sqlx::query("TRUNCATE orders, order_lines").execute(&models.pg).await.unwrap();
    let printed = ops(&local, &["replay", "reporting", "--from", &from.to_rfc3339(), "--to", &to.to_rfc3339()]).await;
    assert!(printed.contains("COMPLETED"), "{printed}");
    // The window's orders: late events of earlier tests' orders may still land in the emptied
    // tables meanwhile, so the comparison is of these orders' rows.
    let window_rows =
        || async { reporting_rows(&models).await.into_iter().filter(|r| ids.contains(&r.0)).collect::<Vec<_>>() };
    let rebuilt = match eventually("the reporting tables rebuilt", WAIT, || async {
        let rows = window_rows().await;
        Ok((rows == ours).then_some(rows))
    })
    .await
    {
        Ok(rows) => rows,
        Err(e) => {
            assert_eq!(window_rows().await, ours, "{e}");
            unreachable!()
        }
    };
    assert_eq!(rebuilt, ours, "rebuilt rows equal what they were, lines included");

    // Only the reporting consumer's pattern took the replayed events.
    let mut replayed = BTreeMap::new();
    for (name, tap) in &observers {
        let mut seen = Vec::new();
        loop {
            let batch = local.drain(tap, Duration::from_secs(1)).await.unwrap();
            if batch.is_empty() {
                break;
            }
            seen.extend(batch);
        }
        replayed.insert(name.clone(), seen.iter().filter(|e| e.replay_name.is_some()).count());
    }
    for (_, tap) in observers {
        local.close(tap).await.unwrap();
    }
    println!("replay: {} rows rebuilt; replayed events per consumer rule: {replayed:?}", rebuilt.len());
    assert!(replayed["reporting"] >= 15, "reporting got the window's events (5 orders × 3): {replayed:?}");
    assert!(replayed.iter().filter(|(n, _)| *n != "reporting").all(|(_, c)| *c == 0), "{replayed:?}");

    // Put back what the window did not cover (older orders), so the demo's figures stay whole.
    let archive = local.events.describe_archive().archive_name(local.output("EventArchiveName")).send().await.unwrap();
    let created = archive.creation_time().map(|t| chrono::DateTime::from_timestamp(t.secs(), 0).unwrap()).unwrap();
    if created < from {
        ops(&local, &["replay", "reporting", "--from", &created.to_rfc3339(), "--to", &from.to_rfc3339()]).await;
    }
}

/// An `orders` row: id, version, status, total, billed, invoice.
type OrderRow = (String, i64, Option<String>, Option<i64>, Option<i64>, Option<String>);
/// An `order_lines` row: line number, sku, quantity, line total.
type LineRow = (i32, String, i32, i64);

/// An order's reporting row and its lines.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReportedRow(String, OrderRow, Vec<LineRow>);

/// Every reporting row (orders with their lines), comparable: `updated_at` left out.
async fn reporting_rows(models: &ReadModels) -> Vec<ReportedRow> {
    let orders: Vec<OrderRow> = sqlx::query_as(
        "SELECT order_id, version, status, total_minor, billed_minor, invoice_id FROM orders ORDER BY order_id",
    )
    .fetch_all(&models.pg)
    .await
    .unwrap();
    let mut rows = Vec::new();
    for row in orders {
        let id = row.0.clone();
        let lines = sqlx::query_as(
            "SELECT line_no, sku, quantity, line_total_minor FROM order_lines WHERE order_id = $1 ORDER BY line_no",
        )
        .bind(&id)
        .fetch_all(&models.pg)
        .await
        .unwrap();
        rows.push(ReportedRow(id, row, lines));
    }
    rows
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn an_order_cancelled_after_its_stock_was_allocated_is_refunded_once_and_its_stock_released() {
    let _alone = ONE_OUTAGE_AT_A_TIME.lock().await;
    let local = Local::connect().await.unwrap();
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 10).await.unwrap();
    let run = unique("e2e-release");
    let tap = local.tap(&run).await.unwrap();

    // Sales' status consumer is down: Billing charges and Warehouse allocates and labels, but the
    // order stays Placed, so its customer may still cancel.
    let placed = local
        .with_consumer_down("SalesOrderStatusFunctionName", async {
            let placed = local
                .place_order(&order_request("ada@example.com", &[(&sku, 3)]), &format!("{run}-0"), None)
                .await
                .unwrap();
            let id = placed.order_id();
            local.collect(&tap, WAIT, |seen| count(seen, &id, "ShippingLabelCreated") == 1).await.unwrap();
            assert_eq!(local.stock(&sku).await.unwrap(), Some(7), "allocated");
            let (status, answer) = local.cancel_order(&id).await.unwrap();
            assert_eq!((status, answer["status"].as_str()), (202, Some("Cancelling")), "{answer}");
            // Billing refunds and Warehouse releases while Sales is still down.
            local
                .collect(&tap, WAIT, |seen| {
                    count(seen, &id, "PaymentRefunded") == 1 && count(seen, &id, "StockReleased") == 1
                })
                .await
                .unwrap();
            placed
        })
        .await
        .unwrap();
    let id = placed.order_id();

    // Sales is back: the label is superseded, the refund ends the order.
    let order = local.wait_status(&id, OrderStatus::Cancelled, WAIT).await.unwrap();
    assert_eq!(order.refunded_minor, Some(placed.order().totals.total_minor));
    assert_eq!(order.tracking_number, None, "never ready to ship");
    assert_eq!(local.stock(&sku).await.unwrap(), Some(10), "released");
    assert_eq!(local.invoice(&id).await.unwrap().unwrap()["status"].as_s().unwrap(), "REFUNDED");
    local.sentinel(&format!("{run}-sentinel")).await.unwrap();
    let events = local.collect(&tap, WAIT, |seen| seen.iter().any(|e| e.detail_type == "Sentinel")).await.unwrap();
    assert_eq!(distinct(&events, &id, "PaymentRefunded"), 0, "no second refund after Sales returned");
    assert_eq!(distinct(&events, &id, "StockReleased"), 0);
    local.close(tap).await.unwrap();
}
