//! The main job: four orders placed over HTTP against the stack on the local emulator, each followed
//! event by event until it reaches its final status.
//!
//! - one that completes:      OrderPlaced -> OrderBilled -> ShippingLabelCreated -> ReadyToShip
//! - one whose card declines: OrderPlaced -> PaymentDeclined -> PaymentFailed
//! - one larger than stock:   OrderPlaced -> OrderBilled -> StockAllocationFailed -> Backordered,
//!   then an operator's POST /stock -> StockReceived -> ShippingLabelCreated -> ReadyToShip
//! - one its customer cancels while it waits for stock: ... Backordered, POST /orders/{id}/cancel
//!   -> Cancelling, OrderCancelled -> PaymentRefunded -> Cancelled
//!
//! Run it with `make demo` (which deploys first).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use orderflow_contracts::OrderStatus;
use orderflow_e2e::read_models::{query, ReadModels};
use orderflow_e2e::twilio::TwilioStandIn;
use orderflow_e2e::{eventually, order_request, unique, Local, Placed};

#[tokio::main]
async fn main() -> Result<()> {
    let local = Local::connect().await?;
    // On LocalStack's free edition (LOCAL_AWS=localstack) there is no HTTP API and no Cognito to
    // sign customers in with, so no order can be placed: the demo runs on MiniStack.
    if !local.has_output("ApiId") {
        bail!("the demo needs the HTTP API and its Cognito sign-in: deploy to MiniStack (`make demo`), not LocalStack");
    }
    // Texts go to a stand-in for Twilio's API that this program runs (the port the local deployment
    // points the SMS consumer at); with real credentials they would go to Twilio.
    let twilio = TwilioStandIn::shared().await?;
    // A webhook subscriber: an HTTP server this program runs, subscribed (by an operator) to every
    // event type.
    let operator = local.operator().await?;
    let (subscriber, subscription_id) = local.subscribe_to_every_event(&operator, "orderflow").await?;
    // The shop: what it sells, at its prices, and what is on the shelf (nothing of the lamp, one of
    // the rare book).
    local.stock_product("DEMO-BOOK", 1999, 100).await?;
    local.stock_product("DEMO-MUG", 1250, 100).await?;
    local.stock_product("DEMO-RARE", 4999, 1).await?;
    local.stock_product("DEMO-LAMP", 3450, 0).await?;
    let run = unique("demo");
    let tap = local.tap(&run).await?;

    let mut orders = [
        ("completes", order_request("ada@example.com", &[("DEMO-BOOK", 2), ("DEMO-MUG", 1)])),
        ("declined", order_request("grace+decline@example.com", &[("DEMO-BOOK", 1)])),
        ("out of stock", order_request("alan@example.com", &[("DEMO-RARE", 5)])),
        ("cancelled", order_request("mary@example.com", &[("DEMO-LAMP", 1)])),
    ];
    // A phone number per order, fresh for each run, so the texts shown are this run's.
    let phones: Vec<String> =
        (0..orders.len()).map(|i| format!("+4477009{:04}{i}", uuid::Uuid::new_v4().as_u128() % 10_000)).collect();
    for ((_, body), phone) in orders.iter_mut().zip(&phones) {
        body["customer"]["phone"] = serde_json::json!(phone);
        // A fresh address per run too, so the emails shown are this run's.
        // (Before Billing's "+decline@" test-card marker, which must stay at the end.)
        let email = body["customer"]["email"].as_str().unwrap_or_default();
        let email = match email.strip_suffix("+decline@example.com") {
            Some(user) => format!("{user}+{}+decline@example.com", &run[5..]),
            None => email.replacen('@', &format!("+{}@", &run[5..]), 1),
        };
        body["customer"]["email"] = serde_json::json!(email);
    }
    let mut labels: HashMap<String, &str> = HashMap::new();
    let mut placed_at: HashMap<String, chrono::DateTime<chrono::Utc>> = HashMap::new();
    println!("Placing {} orders on {}/orders\n", orders.len(), local.output("LocalApiUrl"));
    for (i, (label, body)) in orders.iter().enumerate() {
        let placed = local.place_order(body, &format!("{run}-{i}"), Some(&unique("key"))).await?;
        let Placed::Created(order) = placed else { bail!("POST /orders: {placed:?}") };
        let id = order.order_id.clone();
        println!("  {label:<13} order {id}  HTTP 201  total {} {:?}", order.totals.total_minor, order.currency);
        let at = order.history.first().map(|h| h.at).unwrap_or_else(chrono::Utc::now);
        labels.insert(id.clone(), label);
        placed_at.insert(id, at);
    }

    println!("\nTimeline, as the events arrive (time: when the event happened, since the order was placed):");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut finished: HashMap<String, OrderStatus> = HashMap::new();
    while finished.len() < labels.len() {
        if Instant::now() > deadline {
            bail!("not every order reached a final status within 120 s: {finished:?}");
        }
        for event in local.drain(&tap, Duration::from_secs(1)).await? {
            let since =
                placed_at.get(&event.order_id).map(|t| (event.occurred_at - *t).num_milliseconds()).unwrap_or(0);
            let label = labels.get(&event.order_id).copied().unwrap_or("restock");
            let mut line = format!("  +{since:>5} ms  {label:<13} {:<22} from {}", event.detail_type, event.source);
            let mut then = None;
            if event.detail_type == "OrderStatusChanged" {
                let body: serde_json::Value = serde_json::from_str(&event.body)?;
                let status = body["detail"]["data"]["order"]["status"].as_str().unwrap_or_default().to_string();
                line.push_str(&format!("  -> {status}"));
                match OrderStatus::parse(&status) {
                    Some(s) if s.is_final() => {
                        finished.insert(event.order_id.clone(), s);
                    }
                    Some(OrderStatus::Backordered) => then = Some(label),
                    _ => {}
                }
            }
            println!("{line}");
            // What people do while an order waits for stock: the warehouse books stock in, or the
            // customer gives up.
            match then {
                Some("out of stock") => {
                    let (status, receipt) = local.receive_stock("DEMO-RARE", 10).await?;
                    if status != 202 {
                        bail!("POST /stock answered {status}: {receipt}");
                    }
                    println!(
                        "  {:>10}  an operator: POST /stock {{\"sku\": \"DEMO-RARE\", \"quantity\": 10}} -> HTTP 202",
                        ""
                    );
                }
                Some("cancelled") => {
                    let (status, answer) = local.cancel_order(&event.order_id).await?;
                    if status != 202 {
                        bail!("POST /orders/{}/cancel answered {status}: {answer}", event.order_id);
                    }
                    println!("  {:>10}  its customer: POST /orders/{}/cancel -> HTTP 202", "", &event.order_id);
                }
                _ => {}
            }
        }
    }
    local.close(tap).await?;

    println!("\nFinal state (GET /orders/{{id}}):");
    for (id, label) in &labels {
        let order = local.wait_final(id, Duration::from_secs(5)).await?;
        let history: Vec<String> = order
            .history
            .iter()
            .map(|h| match &h.reason {
                Some(r) => format!("{} ({r})", h.status.as_str()),
                None => h.status.as_str().to_string(),
            })
            .collect();
        println!("  {label:<13} {:<13} v{}  {}", order.status.as_str(), order.version, history.join(" -> "));
    }
    show_read_models(&local, &labels).await?;
    let expected = [
        ("completes", OrderStatus::ReadyToShip),
        ("declined", OrderStatus::PaymentFailed),
        ("out of stock", OrderStatus::ReadyToShip),
        ("cancelled", OrderStatus::Cancelled),
    ];
    for (label, want) in expected {
        let got = labels.iter().find(|(_, l)| **l == label).and_then(|(id, _)| finished.get(id));
        if got != Some(&want) {
            bail!("order `{label}` ended {got:?}, expected {want:?}");
        }
    }
    {
        // No text when an order is placed (nobody pays for texts to an order that is never paid
        // for): a shipping text for each order that was charged and ships; a cancellation the
        // customer asked for is told by email, not by a text the shop pays for.
        println!("\nTexts (as the Twilio stand-in received them from the SMS consumer):");
        eventually("the texts", Duration::from_secs(30), || async {
            let mut texts = 0;
            for phone in &phones {
                texts += twilio.delivered_to(phone).await.len();
            }
            Ok((texts >= 2).then_some(()))
        })
        .await?;
        for ((label, _), phone) in orders.iter().zip(&phones) {
            for text in twilio.delivered_to(phone).await {
                println!("  {label:<13} to {phone}: {}", text.body);
            }
        }
        // And the emails, as SES (the emulator's) recorded them.
        println!("\nEmails (as SES recorded them from the email consumer):");
        // Each order's email, one notice per status that gets one (ready to ship, payment failed,
        // delayed, cancelled): 2 + 2 + 3 + 3, for this run's orders only.
        eventually("the emails", Duration::from_secs(30), || async {
            let mut count = 0;
            for (_, body) in &orders {
                count += local.emails_to(body["customer"]["email"].as_str().unwrap_or_default()).await?.len();
            }
            Ok((count >= 10).then_some(()))
        })
        .await?;
        for (label, body) in &orders {
            let to = body["customer"]["email"].as_str().unwrap_or_default();
            for email in local.emails_to(to).await? {
                println!("  {label:<13} to {to}: {}", email["Subject"].as_str().unwrap_or_default());
            }
        }
        // And the webhooks, as the subscriber received them (one per event of each flow).
        println!("\nWebhooks (as the subscriber received them, signed):");
        let per_order = |requests: &[wiremock::Request], id: &str| -> Vec<String> {
            requests
                .iter()
                .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
                .filter(|b| b["data"]["orderId"] == id || b["data"]["order"]["orderId"] == id)
                .map(|b| b["type"].as_str().unwrap_or_default().to_string())
                .collect()
        };
        // Three to eight events per flow: OrderPlaced, the billing outcome, the warehouse outcome
        // where billed, each OrderStatusChanged, and a cancellation's OrderCancelled and refund.
        eventually("the webhooks", Duration::from_secs(30), || async {
            let requests = subscriber.received_requests().await.unwrap_or_default();
            Ok(labels
                .keys()
                .all(|id| {
                    let got = per_order(&requests, id);
                    got.iter().any(|t| t == "OrderStatusChanged") && got.len() >= 3
                })
                .then_some(()))
        })
        .await?;
        let requests = subscriber.received_requests().await.unwrap_or_default();
        for (id, label) in &labels {
            println!("  {label:<13} {}", per_order(&requests, id).join(", "));
        }
        local
            .webhooks_api(reqwest::Method::DELETE, &format!("/webhooks/{subscription_id}"), Some(&operator), None)
            .await?;
    }
    println!("\nEvery order reached a final status, the one its story predicts:");
    for (label, want) in expected {
        println!("  {label:<13} {}", want.as_str());
    }
    Ok(())
}

/// Each order's copies in the read models (state transfer: each built from the events alone), then
/// the reporting view's figures, as the README's query gives them.
async fn show_read_models(local: &Local, labels: &HashMap<String, &str>) -> Result<()> {
    let models = ReadModels::connect(local).await?;
    let wait = Duration::from_secs(60);
    println!("\nRead models (each kept from the events by its own consumer):");
    for (id, label) in labels {
        let order = local.wait_final(id, Duration::from_secs(5)).await?;
        let version = order.version;
        let cached =
            eventually("the cache", wait, || async { Ok(models.cached(id).await?.filter(|c| c.version == version)) })
                .await?;
        let reported = eventually("the reporting tables", wait, || async {
            Ok(models.reported(id).await?.filter(|r| r.version == version as i64))
        })
        .await?;
        let lake = eventually("the lake", wait, || async {
            let lines = models.lake_lines(&[id.as_str()]).await?;
            Ok((lines.len() >= 3).then_some(lines))
        })
        .await?;
        let money = |minor: Option<i64>| {
            minor.map(|m| orderflow_contracts::display_amount(m, order.currency)).unwrap_or_else(|| "-".into())
        };
        println!(
            "  {label:<13} cache v{} {:<13} | reporting v{} {:<13} total {:>10} billed {:>10} refunded {:>10} | lake {} events: {}",
            cached.version,
            cached.status.as_str(),
            reported.version,
            reported.status.as_deref().unwrap_or("-"),
            money(reported.total_minor),
            money(reported.billed_minor),
            money(reported.refunded_minor),
            lake.len(),
            lake.iter()
                .map(|(key, _)| key
                    .split("event_type=")
                    .nth(1)
                    .unwrap_or_default()
                    .split('/')
                    .next()
                    .unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("\nReporting view (docs/queries/daily-report.sql; amounts in minor units):");
    let rows: Vec<(chrono::NaiveDate, String, String, i64, i64)> =
        sqlx::query_as(sqlx::AssertSqlSafe(query("daily-report.sql"))).fetch_all(&models.pg).await?;
    println!("  {:<10}  {:<8}  {:<13}  {:>6}  {:>13}", "day", "currency", "status", "orders", "revenue_minor");
    for (day, currency, status, orders, revenue) in rows {
        println!("  {day:<10}  {currency:<8}  {status:<13}  {orders:>6}  {revenue:>13}");
    }
    Ok(())
}
