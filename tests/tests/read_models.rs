//! End to end, state transfer: the real cache, reporting and lake consumers on the local emulator,
//! asserting on what each read model holds (Redis keys, PostgreSQL rows, S3 objects, and the lake
//! through the emulator's Athena). Ignored by a bare `cargo test`; `make test` runs them.

use std::collections::BTreeMap;
use std::time::Duration;

use orderflow_contracts::{OrderState, OrderStatus};
use orderflow_e2e::read_models::{query, ReadModels};
use orderflow_e2e::{eventually, order_request, unique, unique_sku, Local};
use orderflow_harness_testing::status_changed_body;

const WAIT: Duration = Duration::from_secs(90);

/// Places an order of one in-stock unit and waits until it is ready to ship.
async fn ready_order(local: &Local, tag: &str) -> OrderState {
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 5).await.unwrap();
    let run = unique(tag);
    let placed =
        local.place_order(&order_request(&format!("{run}@example.com"), &[(&sku, 2)]), &run, None).await.unwrap();
    assert_eq!(placed.status(), 201, "{placed:?}");
    let order = local.wait_final(&placed.order_id(), WAIT).await.unwrap();
    assert_eq!(order.status, OrderStatus::ReadyToShip);
    order
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn an_order_reaches_the_cache_the_reporting_tables_and_the_lake() {
    let local = Local::connect().await.unwrap();
    let models = ReadModels::connect(&local).await.unwrap();
    let order = ready_order(&local, "e2e-read-models").await;
    let id = order.order_id.as_str();

    // Cache: the newest version, which GET /orders/{id} answers from.
    let cached = eventually("the order cached at its final version", WAIT, || async {
        Ok(models.cached(id).await?.filter(|c| c.version == order.version))
    })
    .await
    .unwrap();
    assert_eq!(cached, order);
    let response = local
        .http
        .get(format!("{}/orders/{id}", local.output("LocalApiUrl")))
        .header("authorization", local.owner(id).unwrap().bearer())
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-cache"], "hit");

    // Reporting: the final version, billed, with its lines.
    let reported = eventually("the order reported at its final version, billed", WAIT, || async {
        Ok(models.reported(id).await?.filter(|r| r.version == order.version as i64 && r.billed_minor.is_some()))
    })
    .await
    .unwrap();
    assert_eq!(reported.status.as_deref(), Some("ReadyToShip"));
    assert_eq!(reported.total_minor, Some(order.totals.total_minor));
    assert_eq!(reported.billed_minor, Some(order.totals.total_minor));
    assert_eq!(reported.lines, vec![(order.lines[0].sku.clone(), 2, 3998)]);

    // Lake: each of the order's four events once, in its event type's partition of today.
    let expected = ["OrderBilled", "OrderPlaced", "OrderStatusChanged", "ShippingLabelCreated"];
    let lines = eventually("the order's four events in the lake", WAIT, || async {
        let lines = models.lake_lines(&[id]).await?;
        Ok((lines.len() >= expected.len()).then_some(lines))
    })
    .await
    .unwrap();
    let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, line) in &lines {
        let event_type = key.split("event_type=").nth(1).unwrap().split('/').next().unwrap().to_string();
        assert!(key.contains(&format!("/dt={}/", line.occurred_at.get(..10).unwrap())), "{key}");
        by_type.entry(event_type).or_default().push(line.event_id.clone());
    }
    assert_eq!(by_type.keys().map(String::as_str).collect::<Vec<_>>(), expected);
    assert!(by_type.values().all(|ids| ids.len() == 1), "no event twice: {by_type:?}");
    println!(
        "read models for {id}: cache v{}, reporting v{}, lake {} lines",
        cached.version,
        reported.version,
        lines.len()
    );
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn status_changes_delivered_newest_first_leave_the_newest_in_the_cache_and_the_reporting_tables() {
    let local = Local::connect().await.unwrap();
    let models = ReadModels::connect(&local).await.unwrap();
    let order = ready_order(&local, "e2e-reverse").await;
    // Versions 5, 4, 3 of that order, delivered to the cache and reporting queues newest first.
    let versions: Vec<String> = [5, 4, 3]
        .into_iter()
        .map(|version| {
            let mut copy = order.clone();
            copy.version = version;
            copy.status = if version == 5 { OrderStatus::ReadyToShip } else { OrderStatus::Placed };
            status_changed_body(copy)
        })
        .collect();
    for body in &versions {
        local.deliver_again("CacheQueueUrl", body, 1, &[]).await.unwrap();
        local.deliver_again("ReportingQueueUrl", body, 1, &[]).await.unwrap();
    }
    let cached = models.cached(&order.order_id).await.unwrap().unwrap();
    let reported = models.reported(&order.order_id).await.unwrap().unwrap();
    assert_eq!((cached.version, cached.status), (5, OrderStatus::ReadyToShip));
    assert_eq!((reported.version, reported.status.as_deref()), (5, Some("ReadyToShip")));
    println!("reverse delivery of v5, v4, v3: cache holds v{}, reporting v{}", cached.version, reported.version);
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn the_readme_lake_query_finds_the_orders_through_athena() {
    let local = Local::connect().await.unwrap();
    let models = ReadModels::connect(&local).await.unwrap();
    let order = ready_order(&local, "e2e-athena").await;
    eventually("the order's events in the lake", WAIT, || async {
        Ok((models.lake_lines(&[&order.order_id]).await?.len() >= 4).then_some(()))
    })
    .await
    .unwrap();

    // The README's own text: the table definition names the local stack's bucket, and the query.
    let ddl = query("lake-table.sql");
    assert!(ddl.contains(&format!("s3://{}/events/", models.bucket)), "lake-table.sql must name the local bucket");
    let readme = std::fs::read_to_string(orderflow_e2e::template::root().join("README.md")).unwrap();
    for name in ["lake-table.sql", "lake-orders.sql", "daily-report.sql"] {
        assert!(readme.contains(query(name).trim()), "the README shows docs/queries/{name} as it is");
    }
    models.athena(&ddl).await.unwrap();
    let rows = models.athena(&query("lake-orders.sql")).await.unwrap();
    assert_eq!(rows[0], vec!["dt", "order_id", "events"]);
    let ours: Vec<&Vec<String>> = rows.iter().filter(|r| r[1] == order.order_id).collect();
    assert_eq!(ours.len(), 1, "one row for the order: {rows:?}");
    assert_eq!(ours[0][2], "4", "its four events");
    println!("Athena over the lake: {} order(s), ours with {} events", rows.len() - 1, ours[0][2]);
}

#[tokio::test]
#[ignore = "needs the stack on the local emulator: run `make test`"]
async fn the_readme_reporting_query_gives_the_figures_of_the_orders_placed() {
    let local = Local::connect().await.unwrap();
    let models = ReadModels::connect(&local).await.unwrap();
    // Two orders that ship and one whose payment is declined (billed nothing).
    let shipped = [ready_order(&local, "e2e-report").await, ready_order(&local, "e2e-report").await];
    let sku = unique_sku("BOOK");
    local.stock_product(&sku, 1999, 5).await.unwrap();
    let run = unique("e2e-report");
    let placed = local
        .place_order(&order_request(&format!("{run}+decline@example.com"), &[(&sku, 1)]), &run, None)
        .await
        .unwrap();
    assert_eq!(placed.status(), 201, "{placed:?}");
    let declined = local.wait_final(&placed.order_id(), WAIT).await.unwrap();
    assert_eq!(declined.status, OrderStatus::PaymentFailed);
    let orders = [&shipped[0], &shipped[1], &declined];
    for order in orders {
        let billed = order.status == OrderStatus::ReadyToShip;
        eventually("the order reported at its final version", WAIT, || async {
            Ok(models
                .reported(&order.order_id)
                .await?
                .filter(|r| r.version as u64 == order.version && r.billed_minor.is_some() == billed))
        })
        .await
        .unwrap();
    }

    // The figures, computed here from the orders as Sales answered them: per day placed, currency
    // and status, the count and what was billed.
    let name = |v: serde_json::Value| v.as_str().unwrap().to_string();
    let mut expected: BTreeMap<(chrono::NaiveDate, String, String), (i64, i64)> = BTreeMap::new();
    for order in orders {
        let key = (
            order.history[0].at.date_naive(),
            name(serde_json::to_value(order.currency).unwrap()),
            name(serde_json::to_value(order.status).unwrap()),
        );
        let figures = expected.entry(key).or_default();
        figures.0 += 1;
        if order.status == OrderStatus::ReadyToShip {
            figures.1 += order.totals.total_minor;
        }
    }
    let expected: Vec<_> = expected.into_iter().map(|((d, c, s), (n, r))| (d, c, s, n, r)).collect();

    // The README's query over these three orders alone: the others are removed in a transaction that
    // is rolled back (tables locked against writers meanwhile, so none of theirs slips in).
    let ids: Vec<String> = orders.iter().map(|o| o.order_id.clone()).collect();
    let mut tx = models.pg.begin().await.unwrap();
    sqlx::query("LOCK TABLE orders, order_lines IN EXCLUSIVE MODE").execute(&mut *tx).await.unwrap();
    sqlx::query("DELETE FROM orders WHERE NOT (order_id = ANY($1))").bind(&ids).execute(&mut *tx).await.unwrap();
    let report: Vec<(chrono::NaiveDate, String, String, i64, i64)> =
        sqlx::query_as(sqlx::AssertSqlSafe(query("daily-report.sql"))).fetch_all(&mut *tx).await.unwrap();
    tx.rollback().await.unwrap();
    println!("the README's reporting query over three orders: {report:?}");
    assert_eq!(report, expected);
}
