//! The order-flow benchmark (`make bench`): what one order costs in time and AWS requests, on the
//! stack deployed to the local emulator with release binaries.
//!
//! 1. Warm-up: a few orders one after another, so cold starts are not measured as latency.
//! 2. One order at a time (20): `POST /orders` to its `OrderPlaced` on the bus, and to its final
//!    status (`ReadyToShip`), seen through a tap of its own on the bus.
//! 3. Load: N orders POSTed, `--in-flight` (25) at a time; each order's time from its POST to its final status, the
//!    POSTs' own latency, and the throughput (orders that reached their end per second).
//! 4. The AWS requests each order made, by function and operation, read from the metrics line every
//!    invocation logs (`orderflow_harness::telemetry`), and from them and the handlers' measured time
//!    the cost of a million orders at AWS list prices (the formula is printed with the figures).
//!
//! Writes `.local/bench/orders.json` (every latency, for `tests/bench/chart.py`) and prints tables.
//! Usage: `bench [--orders N] [--sequential N] [--in-flight N]`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use orderflow_e2e::{order_request, unique, Local, Placed, SignedIn};
use serde_json::{json, Value};

/// POSTs answered 503 and sent again.
static RETRIED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Events on a tap timed by when a reader got them, their message carrying no usable `SentTimestamp`.
static READ_TIMED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What one order's events did, as seen on the tap: when its POST started and answered, when its
/// first and its final status change reached the bus.
#[derive(Debug, Clone, Default)]
struct Timeline {
    /// The order's correlation id (its spans' `correlation_id`).
    correlation: String,
    posted: Option<Instant>,
    answered: Option<Instant>,
    announced: Option<Instant>,
    finished: Option<Instant>,
    final_status: Option<String>,
    /// The outbox's two hops, in ms: from the order's write, then from its final status's write
    /// (each event's envelope `occurredAt`, stamped just before the write), to the event on the tap
    /// (the writer's own publish on the outbox's fast path, or the stream and the relay; the bus,
    /// and its delivery to the tap).
    first_hop_ms: Option<f64>,
    last_hop_ms: Option<f64>,
}

type Timelines = Arc<Mutex<HashMap<String, Timeline>>>;

fn arg(name: &str, default: usize) -> Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args.get(i + 1).context("a number after the flag")?.parse().context(name.to_string()),
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let load = arg("--orders", 200)?;
    let sequential = arg("--sequential", 20)?;
    let in_flight = arg("--in-flight", 25)?.max(1);
    let local = Arc::new(Local::connect().await?);
    if !local.has_output("ApiId") {
        bail!("the benchmark needs the HTTP API: deploy to MiniStack (`make bench` does)");
    }
    let started_ms = chrono::Utc::now().timestamp_millis();
    // A webhook subscriber for every event type, as in the demo: deliveries are part of an order's cost.
    let operator = local.operator().await?;
    // A subscription an earlier run left behind (it stopped before removing it) points at a server
    // that is gone: its deliveries would fail and retry through this run.
    let (_, listed) = local.webhooks_api(reqwest::Method::GET, "/webhooks", Some(&operator), None).await?;
    for stale in listed["webhooks"].as_array().into_iter().flatten() {
        if stale["url"].as_str().is_some_and(|u| u.ends_with("/bench")) {
            let id = stale["id"].as_str().unwrap_or_default();
            local.webhooks_api(reqwest::Method::DELETE, &format!("/webhooks/{id}"), Some(&operator), None).await?;
        }
    }
    let (_subscriber, subscription) = local.subscribe_to_every_event(&operator, "bench").await?;
    local.stock_product("BENCH-BOOK", 1999, 1_000_000).await?;
    local.stock_product("BENCH-MUG", 1250, 1_000_000).await?;

    let run = unique("bench");
    let customer = local.customer(&format!("{run}@example.com"), Some("+447700900123")).await?;
    let tap = local
        .observe(&json!({
            "detail-type": ["OrderPlaced", "OrderStatusChanged"],
            "detail": {"metadata": {"correlationId": [{"prefix": run.clone()}]}}
        }))
        .await?;
    let timelines: Timelines = Arc::default();
    let watching = watchers(&local, &tap.queue_url, &timelines, order_stage);

    // 1. Warm-up.
    let mut placed = 0usize;
    for i in 0..3 {
        let id = place(&local, &customer, &format!("{run}-warm-{i}"), &timelines).await?;
        wait_final(&timelines, &[id], Duration::from_secs(60)).await?;
        placed += 1;
    }
    // 2. One at a time, each after a random pause (`jitter`).
    let mut single = Vec::new();
    let single_from = now_ms();
    for i in 0..sequential {
        jitter().await;
        let id = place(&local, &customer, &format!("{run}-one-{i}"), &timelines).await?;
        wait_final(&timelines, std::slice::from_ref(&id), Duration::from_secs(60)).await?;
        single.push(timelines.lock().unwrap()[&id].clone());
        placed += 1;
    }
    let single_window = (single_from, now_ms());
    // 3. Load: every POST at once.
    let load_started = Instant::now();
    let posts = (0..load).map(|i| {
        let (local, customer, timelines) = (Arc::clone(&local), customer.clone(), Arc::clone(&timelines));
        let correlation = format!("{run}-load-{i}");
        async move { place(&local, &customer, &correlation, &timelines).await }
    });
    // At most `in_flight` POSTs at a time: the emulator runs every invocation as a process on the
    // same 2 cores, and 200 at once time its API out (502) before any reaches the table.
    let ids: Vec<String> = {
        use futures::StreamExt as _;
        futures::stream::iter(posts).buffered(in_flight).collect::<Vec<_>>().await.into_iter().collect::<Result<_>>()?
    };
    let all_placed = load_started.elapsed();
    placed += ids.len();
    wait_final(&timelines, &ids, Duration::from_secs(600)).await?;
    let loaded: Vec<Timeline> = ids.iter().map(|id| timelines.lock().unwrap()[id].clone()).collect();
    watching.iter().for_each(|w| w.abort());
    local.close(tap).await?;

    // 4. What the orders asked of AWS: once every consumer has handled everything (the lake waits
    // out its batching window; the deliveries the fan-out queues as it catches up), and the last
    // invocations have shipped their log lines. Only then does the subscription go: deleted
    // earlier, every event the fan-out had not reached yet found none (an order made 1.17
    // deliveries where it makes 4).
    let queues: Vec<String> =
        local.output_names().into_iter().filter(|k| k.ends_with("QueueUrl") && !k.contains("DeadLetter")).collect();
    let urls: Vec<&str> = queues.iter().map(|q| local.output(q)).collect();
    local.all_drained(&urls, Duration::from_secs(300)).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (invocations, spans) = metrics_lines(&local, &local.log_groups().await?, started_ms).await?;
    // The subscriber goes away with this process: so does its subscription.
    local.webhooks_api(reqwest::Method::DELETE, &format!("/webhooks/{subscription}"), Some(&operator), None).await?;

    // 5. The floor, in the same emulator, once the orders' work is done: the same measurements.
    // A floor that fails (not deployed in this emulator's life, its API refusing) costs its
    // columns, not the orders' figures.
    let floor = measure_floor(Arc::clone(&local), "floor", sequential, load, in_flight).await.unwrap_or_else(|e| {
        eprintln!("the floor was not measured: {e:#}");
        None
    });
    // 6. The same-calls floor: the same chain making the AWS requests an order makes.
    let floor_calls =
        measure_floor(Arc::clone(&local), "floor-calls", sequential, load, in_flight).await.unwrap_or_else(|e| {
            eprintln!("the same-calls floor was not measured: {e:#}");
            None
        });

    let report = Report {
        single,
        single_window,
        loaded,
        all_placed,
        orders: placed,
        invocations,
        spans,
        in_flight,
        floor,
        floor_calls,
    };
    report.print();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.local/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("orders.json"), serde_json::to_string_pretty(&report.json())?)?;
    Ok(())
}

/// Places one order of two lines as `customer`, correlation id `correlation`; its order id.
async fn place(local: &Local, customer: &SignedIn, correlation: &str, timelines: &Timelines) -> Result<String> {
    let mut body = order_request("unused@example.com", &[("BENCH-BOOK", 2), ("BENCH-MUG", 1)]);
    let c = body["customer"].as_object_mut().context("customer")?;
    c.remove("email");
    c.remove("phone");
    let posted = Instant::now();
    // As a client should: a 502-504 (the function or a dependency did not answer in time) is retried
    // after a pause, under the same idempotency key, so a retry never places a second order.
    let order_id = retrying(|| async {
        match local.place_order_as(customer, &body, correlation, Some(correlation)).await? {
            Placed::Created(order) | Placed::Repeated(order) => Ok((201, Some(order.order_id))),
            Placed::Refused { status: status @ 502..=504, .. } => Ok((status, None)),
            other => bail!("{other:?}"),
        }
    })
    .await
    .with_context(|| format!("POST /orders ({correlation})"))?;
    let answered = Instant::now();
    let mut all = timelines.lock().unwrap();
    let t = all.entry(order_id.clone()).or_default();
    t.posted = Some(posted);
    t.answered = Some(answered);
    t.correlation = correlation.to_string();
    Ok(order_id)
}

/// A pause of 0-99 ms, drawn at random, before each POST of the one-at-a-time runs, so that no
/// run's POSTs keep one phase against the emulator's cycles (its 100 ms looks at a queue, its
/// stream polls), for the orders and the floors alike. (The tap's readers, whose phase made tens of
/// milliseconds of difference when they timed the events, no longer do: `watch`.)
async fn jitter() {
    let ms = (uuid::Uuid::new_v4().as_u128() % 100) as u64;
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// What an event on a tap says of a timeline: whose it is, and whether it is the first
/// announcement or the end (with the final status).
enum Stage {
    /// Whose, and when its producer stamped it (`occurredAt`), if it says.
    Announced(String, Option<chrono::DateTime<chrono::Utc>>),
    /// Whose, the final status, and when its producer stamped it.
    Finished(String, String, Option<chrono::DateTime<chrono::Utc>>),
}

/// When the producer stamped an Orderflow event (its envelope's `occurredAt`).
fn stamped(event: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    event["detail"]["metadata"]["occurredAt"].as_str().and_then(|t| t.parse().ok())
}

/// An order's events: `OrderPlaced` announces it; a final status ends it.
fn order_stage(event: &Value) -> Option<Stage> {
    if event["detail-type"] == "OrderPlaced" {
        return Some(Stage::Announced(event["detail"]["data"]["orderId"].as_str()?.to_string(), stamped(event)));
    }
    let order = &event["detail"]["data"]["order"];
    let (id, status) = (order["orderId"].as_str()?, order["status"].as_str()?);
    matches!(status, "ReadyToShip" | "PaymentFailed" | "Cancelled" | "Backordered")
        .then(|| Stage::Finished(id.to_string(), status.to_string(), stamped(event)))
}

/// A floor chain's events (tests/bench/floor): `FloorPlaced` announces it, `FloorDone` ends it.
fn floor_stage(event: &Value) -> Option<Stage> {
    let id = event["detail"]["id"].as_str()?.to_string();
    match event["detail-type"].as_str()? {
        "FloorPlaced" => Some(Stage::Announced(
            id,
            event["detail"]["writtenMs"].as_i64().and_then(chrono::DateTime::from_timestamp_millis),
        )),
        "FloorDone" => Some(Stage::Finished(id, "done".into(), None)),
        _ => None,
    }
}

/// Readers of one tap, started 20 ms apart: the emulator answers a long poll only when it next looks
/// at the queue, every 100 ms (MiniStack's `ReceiveMessage`), so a reader gets an event up to 100 ms
/// after it reached the queue. The figures do not wait on them: each event is timed by when it
/// reached the tap's queue (`watch`); the five readers only keep the tap from filling. Abort them
/// when done.
fn watchers(
    local: &Arc<Local>,
    queue_url: &str,
    timelines: &Timelines,
    stage: fn(&Value) -> Option<Stage>,
) -> Vec<tokio::task::JoinHandle<Result<()>>> {
    (0..5u64)
        .map(|i| {
            let (local, queue_url, timelines) = (Arc::clone(local), queue_url.to_string(), Arc::clone(timelines));
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20 * i)).await;
                watch(local, queue_url, timelines, stage).await
            })
        })
        .collect()
}

/// Reads a tap as fast as it fills, stamping each timeline's announcement and end with the time
/// its event reached the tap's queue: SQS's `SentTimestamp` (ms; the bus's delivery, which
/// MiniStack makes within `PutEvents`, on this machine's clock), not when a reader got it, which
/// adds the emulator's 100 ms looks and their phase. Without the attribute, when it was read.
async fn watch(
    local: Arc<Local>,
    queue_url: String,
    timelines: Timelines,
    stage: fn(&Value) -> Option<Stage>,
) -> Result<()> {
    loop {
        let out = local
            .sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await?;
        let (read, read_at) = (Instant::now(), chrono::Utc::now());
        let messages = out.messages.unwrap_or_default();
        let mut delete = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let event: Value = serde_json::from_str(m.body().unwrap_or("{}")).unwrap_or_default();
            // When it reached the queue, on both clocks: the wall clock's, and the same moment as an
            // `Instant` (read less the time it waited), which the POSTs are timed against.
            // A stamp from the future or from long ago (MiniStack writes "0" for a missing one) is
            // not used, and counted.
            let sent = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                .and_then(|ms| ms.parse::<i64>().ok())
                .and_then(chrono::DateTime::from_timestamp_millis)
                .filter(|sent| *sent <= read_at && *sent > read_at - chrono::Duration::minutes(10));
            let received_at = match sent {
                Some(sent) => mid_ms(sent).min(read_at),
                None => {
                    READ_TIMED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    read_at
                }
            };
            let now = read.checked_sub((read_at - received_at).to_std().unwrap_or_default()).unwrap_or(read);
            // An event that reached the tap twice (a writer's publish and the relay's) counts from
            // its first copy, whichever reader gets which.
            match stage(&event) {
                Some(Stage::Announced(id, stamped)) => {
                    let mut all = timelines.lock().unwrap();
                    let t = all.entry(id).or_default();
                    if t.announced.is_none_or(|seen| now < seen) {
                        t.announced = Some(now);
                        t.first_hop_ms = stamped.map(|at| since(mid_ms(at), received_at));
                    }
                }
                Some(Stage::Finished(id, status, stamped)) => {
                    let mut all = timelines.lock().unwrap();
                    let t = all.entry(id).or_default();
                    if t.finished.is_none_or(|seen| now < seen) {
                        t.finished = Some(now);
                        t.last_hop_ms = stamped.map(|at| since(mid_ms(at), received_at));
                        t.final_status = Some(status);
                    }
                }
                None => {}
            }
            if let Some(handle) = m.receipt_handle() {
                delete.push(
                    aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()?,
                );
            }
        }
        if !delete.is_empty() {
            local.sqs.delete_message_batch().queue_url(&queue_url).set_entries(Some(delete)).send().await?;
        }
    }
}

/// The floor's runs, measured as the orders were: one chain at a time, then as many as the orders'
/// load, as many in flight; and the AWS requests its functions made, by function and operation.
struct FloorRun {
    single: Vec<Timeline>,
    /// When the one-at-a-time chains ran (ms since the epoch, wall clock): which invocations were theirs.
    single_window: (i64, i64),
    loaded: Vec<Timeline>,
    all_placed: Duration,
    chains: usize,
    invocations: Vec<Invocation>,
}

impl FloorRun {
    /// The floor's AWS requests per chain, by function and operation (its metrics lines, as the
    /// orders' are read): what shows the same-calls floor makes an order's requests.
    fn print_requests(&self) {
        let mut by_function: BTreeMap<&str, (u64, BTreeMap<&str, u64>)> = BTreeMap::new();
        for inv in &self.invocations {
            let entry = by_function.entry(&inv.function).or_default();
            entry.0 += 1;
            for (op, n) in &inv.requests {
                *entry.1.entry(op).or_default() += n;
            }
        }
        let per_chain = |n: u64| n as f64 / self.chains as f64;
        println!(
            "\n== the same-calls floor's AWS requests per chain ({} chains), by function and operation",
            self.chains
        );
        let (mut total, mut invocations) = (0.0, 0.0);
        for (function, (count, ops)) in &by_function {
            let n: u64 = ops.values().sum();
            let calls: Vec<String> = ops.iter().map(|(op, k)| format!("{op} {:.2}", per_chain(*k))).collect();
            println!(
                "{function:<26} {:>6.2} requests, {:>5.2} invocations: {}",
                per_chain(n),
                per_chain(*count),
                calls.join(", ")
            );
            total += per_chain(n);
            invocations += per_chain(*count);
        }
        println!("{:<26} {total:>6.2} requests, {invocations:>5.2} invocations", "all");
    }
}

/// A floor (tests/bench/floor.yaml, deployed by tests/bench/deploy-floor.sh as stack
/// `<stack>-<name>`, its outputs in `.local/<name>-outputs.json`): `None` if it is not deployed.
async fn measure_floor(
    local: Arc<Local>,
    name: &str,
    sequential: usize,
    load: usize,
    in_flight: usize,
) -> Result<Option<FloorRun>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../.local/{name}-outputs.json"));
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("no {name}: {} is missing (tests/bench/deploy-floor.sh deploys it)", path.display());
        return Ok(None);
    };
    let started_ms = chrono::Utc::now().timestamp_millis();
    let outputs: HashMap<String, String> = serde_json::from_str(&text)?;
    let output = |k: &str| outputs.get(k).cloned().with_context(|| format!("{k} in {}", path.display()));
    let (api, tap) = (format!("{}/chains", output("LocalApiUrl")?), output("TapQueueUrl")?);
    let timelines: Timelines = Arc::default();
    let watching = watchers(&local, &tap, &timelines, floor_stage);
    let start = |local: Arc<Local>, api: String, timelines: Timelines| async move {
        let posted = Instant::now();
        let id = retrying(|| async {
            let response = local.http.post(&api).send().await?;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or_default();
            Ok((status, body["id"].as_str().map(str::to_string)))
        })
        .await
        .context("POST /chains")?;
        let mut all = timelines.lock().unwrap();
        let t = all.entry(id.clone()).or_default();
        (t.posted, t.answered) = (Some(posted), Some(Instant::now()));
        Ok::<_, anyhow::Error>(id)
    };
    // Three to warm up, then one at a time, each after a random pause, as the orders.
    let one = || async {
        jitter().await;
        let id = start(Arc::clone(&local), api.clone(), Arc::clone(&timelines)).await?;
        wait_final(&timelines, std::slice::from_ref(&id), Duration::from_secs(60)).await?;
        anyhow::Ok(timelines.lock().unwrap()[&id].clone())
    };
    for _ in 0..3 {
        one().await?;
    }
    let mut single = Vec::new();
    let single_from = now_ms();
    for _ in 0..sequential {
        single.push(one().await?);
    }
    let single_window = (single_from, now_ms());
    let load_started = Instant::now();
    let ids: Vec<String> = {
        use futures::StreamExt as _;
        let posts = (0..load).map(|_| start(Arc::clone(&local), api.clone(), Arc::clone(&timelines)));
        futures::stream::iter(posts).buffered(in_flight).collect::<Vec<_>>().await.into_iter().collect::<Result<_>>()?
    };
    let all_placed = load_started.elapsed();
    wait_final(&timelines, &ids, Duration::from_secs(600)).await?;
    watching.iter().for_each(|w| w.abort());
    let loaded = ids.iter().map(|id| timelines.lock().unwrap()[id].clone()).collect();
    // Chains started: a POST retried after a 502-504 whose invocation still ran started one more.
    let chains = timelines.lock().unwrap().len();
    // What its functions asked of AWS, once its queues are all empty at once (the side consumers',
    // the lake waiting out its window, the deliveries after the fan-out) and their lines shipped.
    // Without these the latencies still stand.
    let queues: Vec<&str> = outputs
        .iter()
        .filter(|(k, _)| k.ends_with("QueueUrl") && *k != "TapQueueUrl")
        .map(|(_, v)| v.as_str())
        .collect();
    let stack = format!("{}-{name}", std::env::var("ORDERFLOW_STACK").unwrap_or_else(|_| "orderflow".into()));
    let invocations = async {
        local.all_drained(&queues, Duration::from_secs(120)).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let groups = local.function_log_groups(&stack).await?;
        anyhow::Ok(metrics_lines(&local, &groups, started_ms).await?.0)
    }
    .await
    .unwrap_or_else(|e| {
        eprintln!("{name}: its requests were not counted: {e:#}");
        Vec::new()
    });
    Ok(Some(FloorRun { single, single_window, loaded, all_placed, chains, invocations }))
}

/// Sends a request until it is answered other than 502-504 (the function or a dependency did not
/// answer in time: the emulator under load), at most 10 times, pausing longer each time. The id
/// an answer 2xx carries, or the error.
async fn retrying<F, Fut>(send: F) -> Result<String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(u16, Option<String>)>>,
{
    for attempt in 1..=10u64 {
        match send().await? {
            (200..=299, Some(id)) => return Ok(id),
            (502..=504, _) if attempt < 10 => {
                RETRIED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            (status, _) => bail!("answered {status}"),
        }
    }
    unreachable!("the last attempt returns")
}

async fn wait_final(timelines: &Timelines, ids: &[String], timeout: Duration) -> Result<()> {
    let until = Instant::now() + timeout;
    loop {
        let waiting: Vec<String> = {
            let all = timelines.lock().unwrap();
            ids.iter().filter(|id| all.get(*id).and_then(|t| t.finished).is_none()).cloned().collect()
        };
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() > until {
            bail!(
                "{} orders did not reach a final status within {timeout:?}: {:?}",
                waiting.len(),
                &waiting[..waiting.len().min(5)]
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One invocation's metrics line: who, which AWS requests, how long its handler ran.
#[derive(Debug, Clone)]
struct Invocation {
    function: String,
    requests: BTreeMap<String, u64>,
    handler_ms: f64,
    /// Records the invocation took from SQS (a consumer's), whatever became of them.
    records: u64,
    /// When its metrics line was logged (ms since the epoch), if the log event says.
    at_ms: Option<i64>,
}

/// One span's end as its function logged it: the API's "order placed" and each consumer's
/// "handled" (`orderflow_harness::consumer`), with the trace the span belongs to.
#[derive(Debug, Clone)]
struct SpanLine {
    function: String,
    correlation_id: String,
    trace_id: String,
    at: chrono::DateTime<chrono::Utc>,
}

/// A log line (JSON, as the template's LoggingConfig asks) that ends a span of an order, logged at
/// `at_ms` (the log event's time: Lambda's JSON lines carry none of their own).
fn span_line(line: &Value, at_ms: i64) -> Option<SpanLine> {
    let at = chrono::DateTime::from_timestamp_millis(at_ms)?;
    let span = &line["span"];
    let (function, trace_id) = match line["fields"]["message"].as_str()? {
        "handled" if span["name"] == "record" => (span["consumer"].as_str()?, span["trace_id"].as_str()?),
        "order placed" => ("sales-api", line["fields"]["trace_id"].as_str()?),
        _ => return None,
    };
    let correlation_id = span["correlation_id"].as_str()?.to_string();
    Some(SpanLine { function: function.to_string(), correlation_id, trace_id: trace_id.to_string(), at })
}

/// Every metrics line the functions logged to `groups` since `since_ms`, and every span line.
async fn metrics_lines(local: &Local, groups: &[String], since_ms: i64) -> Result<(Vec<Invocation>, Vec<SpanLine>)> {
    let mut out = Vec::new();
    let mut spans = Vec::new();
    for group in groups {
        for (at, message) in local.log_events(group, Some(since_ms)).await? {
            let Ok(line) = serde_json::from_str::<Value>(message.trim()) else { continue };
            if let Some(span) = at.and_then(|at| span_line(&line, at)) {
                spans.push(span);
                continue;
            }
            let Some(by_op) = line.get("AwsRequestsByOperation") else { continue };
            let function = line["Consumer"].as_str().or(line["Function"].as_str()).unwrap_or("?").to_string();
            let requests = serde_json::from_value(by_op.clone()).unwrap_or_default();
            let records = ["Processed", "Retried", "DeadLettered", "DuplicatesSkipped"]
                .iter()
                .filter_map(|k| line[*k].as_u64())
                .sum();
            let handler_ms = line["HandlerMs"].as_f64().unwrap_or(0.0);
            // The log event's time, or else the line's own (EMF's `_aws.Timestamp`, the function's clock).
            let at_ms = at.or_else(|| line["_aws"]["Timestamp"].as_i64());
            out.push(Invocation { function, requests, handler_ms, records, at_ms });
        }
    }
    Ok((out, spans))
}

struct Report {
    single: Vec<Timeline>,
    /// When the one-at-a-time orders ran (ms since the epoch, wall clock).
    single_window: (i64, i64),
    loaded: Vec<Timeline>,
    all_placed: Duration,
    orders: usize,
    invocations: Vec<Invocation>,
    spans: Vec<SpanLine>,
    in_flight: usize,
    floor: Option<FloorRun>,
    floor_calls: Option<FloorRun>,
}

/// Now, in ms since the epoch (wall clock, as the log events' times).
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The API's part of the first hop, one at a time: each POST's time to its answer, as the client
/// measured it; the API function's handler time (the `HandlerMs` of its metrics lines logged within
/// `window`); and what the client waited outside the function: the HTTP API (with its JWT
/// authorizer, for orders), the Lambda invoke, the way back.
struct ApiPart {
    posts: usize,
    handlers: usize,
    post_p50: f64,
    handler_p50: f64,
    /// The p50 of each POST's time less its own invocation's handler time. The POSTs went one at a
    /// time, so the n-th invocation in the window (by its log time) is the n-th POST's; `None` when
    /// the counts differ and they cannot be paired.
    outside_p50: Option<f64>,
}

fn api_part(single: &[Timeline], invocations: &[Invocation], window: (i64, i64)) -> ApiPart {
    let mut posts: Vec<f64> = single.iter().filter_map(|t| Some(ms(t.answered?.duration_since(t.posted?)))).collect();
    let mut handlers: Vec<(i64, f64)> = invocations
        .iter()
        .filter_map(|i| {
            let at = i.at_ms?;
            (i.function.ends_with("sales-api") && at >= window.0 && at <= window.1).then_some((at, i.handler_ms))
        })
        .collect();
    handlers.sort_by_key(|(at, _)| *at);
    let mut outside: Vec<f64> = if posts.len() == handlers.len() {
        posts.iter().zip(&handlers).map(|(post, (_, handler))| post - handler).collect()
    } else {
        Vec::new()
    };
    let mut handler_ms: Vec<f64> = handlers.iter().map(|(_, h)| *h).collect();
    ApiPart {
        posts: posts.len(),
        handlers: handler_ms.len(),
        post_p50: percentile(&mut posts, 50.0),
        handler_p50: percentile(&mut handler_ms, 50.0),
        outside_p50: (!outside.is_empty()).then(|| percentile(&mut outside, 50.0)),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p`th percentile (nearest rank) of `values`, which it sorts.
fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * values.len() as f64).ceil().max(1.0) as usize;
    values[rank.min(values.len()) - 1]
}

/// The middle of `at`'s millisecond. SQS's `SentTimestamp` and the floors' `writtenMs` are whole
/// milliseconds (rounded down), an order's `occurredAt` is not: each is taken at the middle of its
/// millisecond, so that the time from one to another is not half a millisecond off on average.
fn mid_ms(at: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(at) + chrono::Duration::microseconds(500)
}

/// Milliseconds from `at` to `then`, both wall clock (the producers run on this machine).
fn since(at: chrono::DateTime<chrono::Utc>, then: chrono::DateTime<chrono::Utc>) -> f64 {
    (then - at).num_microseconds().unwrap_or(0) as f64 / 1e3
}

/// Milliseconds as the tables print them: `748ms`, `29.1s`.
fn show_ms(ms: f64) -> String {
    match ms {
        m if m.is_nan() => "-".into(),
        m if m >= 10_000.0 => format!("{:.1}s", m / 1000.0),
        m => format!("{m:.0}ms"),
    }
}

/// `a / b` as the tables print a ratio: `2.1x`, or `-` without a floor.
fn ratio(a: f64, b: f64) -> String {
    if (a / b).is_finite() {
        format!("{:.1}x", a / b)
    } else {
        "-".into()
    }
}

fn span(t: &Timeline, to: Option<Instant>) -> Option<f64> {
    Some(ms(to?.duration_since(t.posted?)))
}

/// AWS list prices, us-east-1, on-demand, as published in 2026 (USD).
mod price {
    /// Lambda: per request.
    pub(super) const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    /// Lambda, arm64 (the template's default `Architecture`): per GB-second.
    pub(super) const LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
    /// Lambda bills in 1 ms steps; the template gives every function 256 MB.
    pub(super) const MEMORY_GB: f64 = 256.0 / 1024.0;
    /// DynamoDB on demand: per write request unit (an item up to 1 KB; a transaction's item: 2).
    pub(super) const DYNAMODB_WRITE: f64 = 0.625 / 1e6;
    /// DynamoDB on demand: per read request unit (a strongly consistent read up to 4 KB).
    pub(super) const DYNAMODB_READ: f64 = 0.125 / 1e6;
    /// SQS standard: per request (up to 64 KB).
    pub(super) const SQS_REQUEST: f64 = 0.40 / 1e6;
    /// EventBridge: per custom event published.
    pub(super) const EVENTBRIDGE_EVENT: f64 = 1.00 / 1e6;
    /// S3 Standard: per PUT, per GET.
    pub(super) const S3_PUT: f64 = 0.005 / 1e3;
    pub(super) const S3_GET: f64 = 0.0004 / 1e3;
    /// SES: per email.
    pub(super) const SES_EMAIL: f64 = 0.10 / 1e3;
    /// Secrets Manager: per API call.
    pub(super) const SECRETS_CALL: f64 = 0.05 / 1e4;
}

/// The list price of one request of `operation` (`service:Operation`), as the formula prints it.
fn unit_price(operation: &str) -> f64 {
    let op = operation.split(' ').next().unwrap_or(operation);
    match op.split_once(':') {
        Some(("dynamodb", "TransactWriteItems")) => 2.0 * price::DYNAMODB_WRITE,
        Some(("dynamodb", "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem")) => price::DYNAMODB_WRITE,
        Some(("dynamodb", _)) => price::DYNAMODB_READ,
        Some(("sqs", _)) => price::SQS_REQUEST,
        Some(("events", "PutEvents")) => price::EVENTBRIDGE_EVENT,
        Some(("s3", "GetObject" | "HeadObject")) => price::S3_GET,
        Some(("s3", _)) => price::S3_PUT,
        Some(("ses", "SendEmail")) => price::SES_EMAIL,
        Some(("secretsmanager", _)) => price::SECRETS_CALL,
        // Scheduler bills the invocations schedules make ($1.00/M after 14 M a month free), not the
        // API calls that create or delete them; only a backorder's deadline ever fires.
        Some(("scheduler", _)) => 0.0,
        _ => 0.0,
    }
}

impl Report {
    /// Where one order's time goes, from its spans (the log line that ends each: the API's "order
    /// placed", each consumer's "handled"), joined by the trace they share: the order's write and
    /// publish to Billing's handling, to Warehouse's, to Sales' status consumer's. Also says
    /// whether every span of each order was in one trace (the trace context carried across hops).
    fn print_stages(&self) {
        let stages = [("sales-api", "billing"), ("billing", "warehouse"), ("warehouse", "sales-order-status")];
        println!("\n== per stage, from the spans (their log lines' times, joined by trace id): p50 / p90");
        for (label, ts) in [("one at a time", &self.single), ("under the load", &self.loaded)] {
            let mut gaps: Vec<Vec<f64>> = vec![Vec::new(); stages.len()];
            let (mut one_trace, mut traced) = (0, 0);
            for t in ts.iter() {
                let mine: Vec<&SpanLine> = self.spans.iter().filter(|s| s.correlation_id == t.correlation).collect();
                if mine.is_empty() {
                    continue;
                }
                traced += 1;
                let traces: std::collections::BTreeSet<&str> = mine.iter().map(|s| s.trace_id.as_str()).collect();
                if traces.len() == 1 && stages.iter().all(|(a, _)| mine.iter().any(|s| s.function == *a)) {
                    one_trace += 1;
                }
                // A function's span of this order: its last (a redelivery handles it again).
                let at = |f: &str| mine.iter().filter(|s| s.function == f).map(|s| s.at).max();
                for (i, (from, to)) in stages.iter().enumerate() {
                    if let (Some(a), Some(b)) = (at(from), at(to)) {
                        gaps[i].push(since(a, b));
                    }
                }
            }
            println!("  {label}: {one_trace} of {traced} orders with every span in one trace");
            for ((from, to), mut gap) in stages.iter().zip(gaps) {
                println!(
                    "    {:<58} {:>9} {:>9}",
                    format!("{from} -> {to} ({} orders)", gap.len()),
                    show_ms(percentile(&mut gap, 50.0)),
                    show_ms(percentile(&mut gap, 90.0))
                );
            }
        }
    }

    fn per_order(&self, n: f64) -> f64 {
        n / self.orders as f64
    }

    /// The latency table: the orders' figures beside `floor`'s, and their ratio.
    fn print_latency(&self, floor: Option<&FloorRun>) {
        let ends = |ts: &[Timeline], f: fn(&Timeline) -> Option<Instant>| -> Vec<f64> {
            ts.iter().filter_map(|t| span(t, f(t))).collect()
        };
        type End = fn(&Timeline) -> Option<Instant>;
        let (announced, finished, answered): (End, End, End) = (|t| t.announced, |t| t.finished, |t| t.answered);
        println!("{:<62} {:>9} {:>9} | {:>9} {:>9} | {:>6}", "", "p50", "p90", "floor p50", "floor p90", "ratio");
        let rows = [
            (
                format!("one order: POST to OrderPlaced on the bus ({})", self.single.len()),
                &self.single,
                announced,
                floor.map(|f| &f.single),
            ),
            (
                "one order: POST to OrderStatusChanged ReadyToShip".to_string(),
                &self.single,
                finished,
                floor.map(|f| &f.single),
            ),
            (
                format!("{} orders, {} POSTs in flight: POST to final status", self.loaded.len(), self.in_flight),
                &self.loaded,
                finished,
                floor.map(|f| &f.loaded),
            ),
            ("  their POSTs alone".to_string(), &self.loaded, answered, floor.map(|f| &f.loaded)),
        ];
        for (label, ours, end, theirs) in rows {
            let mut ours = ends(ours, end);
            let mut theirs = theirs.map(|t| ends(t, end)).unwrap_or_default();
            let (p50, floor50) = (percentile(&mut ours, 50.0), percentile(&mut theirs, 50.0));
            println!(
                "{label:<62} {:>9} {:>9} | {:>9} {:>9} | {:>6}",
                show_ms(p50),
                show_ms(percentile(&mut ours, 90.0)),
                show_ms(floor50),
                show_ms(percentile(&mut theirs, 90.0)),
                ratio(p50, floor50)
            );
        }
        let throughput = |ts: &[Timeline]| {
            let first_post = ts.iter().filter_map(|t| t.posted).min();
            let last_end = ts.iter().filter_map(|t| t.finished).max();
            match (first_post, last_end) {
                (Some(a), Some(b)) => ts.len() as f64 / b.duration_since(a).as_secs_f64(),
                _ => f64::NAN,
            }
        };
        let (ours, theirs) = (throughput(&self.loaded), floor.map_or(f64::NAN, |f| throughput(&f.loaded)));
        println!(
            "{:<62} {:>8.1}/s {:>9} | {:>8.1}/s {:>9} | {:>6}",
            "  throughput (ended per second; ratio: the floor's / ours)",
            ours,
            "",
            theirs,
            "",
            ratio(theirs, ours)
        );
        println!(
            "{:<62} {:>8.2}s {:>9} | {:>8.2}s",
            "  all placed in",
            self.all_placed.as_secs_f64(),
            "",
            floor.map_or(f64::NAN, |f| f.all_placed.as_secs_f64())
        );
    }

    fn print(&self) {
        println!("\n== latency (release binaries on the local emulator), each beside its floor (tests/bench/floor: the same hops, no logic)");
        self.print_latency(self.floor.as_ref());
        println!("\n== the same, beside the same-calls floor (the same hops making the AWS requests an order makes, no logic)");
        self.print_latency(self.floor_calls.as_ref());
        // The outbox's two hops, each order's share of its own time, single and under load.
        for (label, ts) in [("one at a time", &self.single), ("under the load", &self.loaded)] {
            let (mut h1, mut h2, mut share) = (Vec::new(), Vec::new(), Vec::new());
            for t in ts.iter() {
                let (Some(a), Some(b), Some(whole)) = (t.first_hop_ms, t.last_hop_ms, span(t, t.finished)) else {
                    continue;
                };
                h1.push(a);
                h2.push(b);
                share.push(100.0 * (a + b) / whole);
            }
            println!(
                "  the outbox's two hops, {label} (p50 of {} orders): {} + {} (each write to its event on the bus: the writer's publish, or the stream's relay), {:.0} % of each order's time",
                share.len(),
                show_ms(percentile(&mut h1, 50.0)),
                show_ms(percentile(&mut h2, 50.0)),
                percentile(&mut share, 50.0)
            );
        }
        // The first hop without the API's part: from the write (the order's `occurredAt`, the
        // floor's `writtenMs`, each stamped just before the write) to the event on the tap.
        let write_to_tap = |ts: &[Timeline]| {
            let mut hops: Vec<f64> = ts.iter().filter_map(|t| t.first_hop_ms).collect();
            (hops.len(), percentile(&mut hops, 50.0))
        };
        let (n, ours) = write_to_tap(&self.single);
        let floor = |f: Option<&FloorRun>| f.map_or((0, f64::NAN), |f| write_to_tap(&f.single));
        let ((nf, plain), (nc, same)) = (floor(self.floor.as_ref()), floor(self.floor_calls.as_ref()));
        println!(
            "  the first hop, write to the event on the tap, one at a time (p50): orders {} ({n}), floor {} ({nf}), same-calls floor {} ({nc}); ratio to the same-calls floor {}",
            show_ms(ours),
            show_ms(plain),
            show_ms(same),
            ratio(ours, same)
        );
        // The first hop's API part, told apart: the API function's handler, and what the client
        // waits outside it (for orders only, the HTTP API's JWT authorizer).
        println!("  the first hop's API part, one at a time (p50): POST to its answer; the API function's handler (HandlerMs); outside it, each POST less its own invocation's handler (the HTTP API, the invoke; for orders the JWT authorizer too)");
        let parts = [
            ("orders", Some(api_part(&self.single, &self.invocations, self.single_window))),
            ("floor", self.floor.as_ref().map(|f| api_part(&f.single, &f.invocations, f.single_window))),
            (
                "same-calls floor",
                self.floor_calls.as_ref().map(|f| api_part(&f.single, &f.invocations, f.single_window)),
            ),
        ];
        for (label, part) in parts {
            let Some(part) = part else { continue };
            let outside = part.outside_p50.map_or_else(|| "not paired".to_string(), show_ms);
            println!(
                "    {label:<17} POST {}, handler {}, outside it {} ({} POSTs, {} invocations)",
                show_ms(part.post_p50),
                show_ms(part.handler_p50),
                outside,
                part.posts,
                part.handlers
            );
        }
        println!(
            "{:<62} {:>9}",
            "  POSTs answered 502-504 and sent again (orders and floors)",
            RETRIED.load(std::sync::atomic::Ordering::Relaxed)
        );
        println!(
            "{:<62} {:>9}",
            "  events timed when read, without a SentTimestamp (all taps)",
            READ_TIMED.load(std::sync::atomic::Ordering::Relaxed)
        );

        self.print_stages();

        // Requests by function and operation, per order.
        // By function: invocations, requests by operation, handler milliseconds, records.
        type Tally<'a> = (u64, BTreeMap<&'a str, u64>, f64, u64);
        let mut by_function: BTreeMap<&str, Tally> = BTreeMap::new();
        for inv in &self.invocations {
            let entry = by_function.entry(&inv.function).or_default();
            entry.0 += 1;
            entry.2 += inv.handler_ms;
            entry.3 += inv.records;
            for (op, n) in &inv.requests {
                *entry.1.entry(op).or_default() += n;
            }
        }
        println!("\n== AWS requests per order ({} orders), by function and operation", self.orders);
        let (mut total, mut bookkeeping, mut cost_requests, mut invocations, mut gb_s) = (0.0, 0.0, 0.0, 0.0, 0.0);
        let mut unclaimed = 0.0;
        for (function, (count, ops, handler_ms, records)) in &by_function {
            let n: u64 = ops.values().sum();
            let calls: Vec<String> =
                ops.iter().map(|(op, k)| format!("{op} {:.2}", self.per_order(*k as f64))).collect();
            println!(
                "{function:<20} {:>6.2} requests, {:>5.2} invocations, {:>5.2} records: {}",
                self.per_order(n as f64),
                self.per_order(*count as f64),
                self.per_order(*records as f64),
                calls.join(", ")
            );
            let claims = orderflow_consumers::CONSUMERS.iter().find(|c| c.name == *function).map(|c| c.idempotency);
            // A consumer that keeps no claims saves a claim and a completion per record; the lake
            // (the batch harness) never kept any.
            if claims == Some(false) && *function != "lake" {
                unclaimed += 2.0 * self.per_order(*records as f64);
            }
            total += self.per_order(n as f64);
            invocations += self.per_order(*count as f64);
            // Lambda bills each invocation's duration rounded up to the millisecond.
            gb_s += self.per_order(handler_ms + *count as f64 * 0.5) / 1000.0 * price::MEMORY_GB;
            for (op, k) in ops {
                if op.ends_with("(idempotency)") {
                    bookkeeping += self.per_order(*k as f64);
                }
                cost_requests += self.per_order(*k as f64) * unit_price(op);
            }
        }
        println!("{:<20} {total:>6.2} requests, {invocations:>5.2} invocations", "all");
        println!("{:<20} {bookkeeping:>6.2} requests (the harness's claims and completions)", "  idempotency");
        println!(
            "{:<20} {unclaimed:>6.2} requests saved: the claim and completion per record of the consumers without claims",
            "  not claimed"
        );
        if let Some(calls) = &self.floor_calls {
            calls.print_requests();
        }

        // What SQS bills that no function sends: EventBridge's SendMessage to each consumer queue and
        // the event source mapping's receive and delete, one of each per delivery at worst.
        let deliveries: u64 = self
            .invocations
            .iter()
            .filter(|i| {
                !matches!(i.function.as_str(), "sales-api" | "sales-outbox-relay" | "warehouse-api" | "webhooks-api")
            })
            .count() as u64;
        let sqs_hidden = 3.0 * self.per_order(deliveries as f64);
        let lambda = invocations * price::LAMBDA_REQUEST + gb_s * price::LAMBDA_GB_SECOND;
        let per_order = cost_requests + sqs_hidden * price::SQS_REQUEST + lambda;
        println!("\n== cost of 1,000,000 orders at AWS list prices (us-east-1, on demand, arm64, 256 MB)");
        println!(
            "  requests the functions send     ${:>8.2}   (sum over operations of requests/order x unit price)",
            cost_requests * 1e6
        );
        println!("  SQS requests no function sends  ${:>8.2}   (3 per batch: EventBridge's send, Lambda's receive and delete; {:.2}/order)", sqs_hidden * price::SQS_REQUEST * 1e6, sqs_hidden);
        println!(
            "  Lambda invocations and duration ${:>8.2}   ({invocations:.2} x $0.20/M + {:.5} GB-s x $0.0000133334)",
            lambda * 1e6,
            gb_s
        );
        println!("  total                           ${:>8.2}   per million orders", per_order * 1e6);
        println!("  unit prices: DynamoDB write $0.625/M (transaction item x2), read $0.125/M; SQS $0.40/M; EventBridge $1.00/M events;");
        println!("  S3 PUT $0.005/1000, GET $0.0004/1000; SES $0.10/1000 emails; Secrets Manager $0.05/10,000; Scheduler API calls free.");
        println!("  Handler time is measured on the emulator, where an AWS call takes ~1 ms; on AWS it takes 5-20 ms.");
    }

    fn json(&self) -> Value {
        let lat = |ts: &[Timeline], f: fn(&Timeline) -> Option<f64>| ts.iter().filter_map(f).collect::<Vec<_>>();
        let floor = |f: &FloorRun| {
            json!({
                "single_announced_ms": lat(&f.single, |t| span(t, t.announced)),
                "single_final_ms": lat(&f.single, |t| span(t, t.finished)),
                "load_final_ms": lat(&f.loaded, |t| span(t, t.finished)),
                "load_post_ms": lat(&f.loaded, |t| span(t, t.answered)),
            })
        };
        json!({
            "single_announced_ms": lat(&self.single, |t| span(t, t.announced)),
            "single_final_ms": lat(&self.single, |t| span(t, t.finished)),
            "load_final_ms": lat(&self.loaded, |t| span(t, t.finished)),
            "load_post_ms": lat(&self.loaded, |t| span(t, t.answered)),
            "floor": self.floor.as_ref().map(&floor),
            "floor_calls": self.floor_calls.as_ref().map(floor),
            "orders": self.orders,
            "in_flight": self.in_flight,
        })
    }
}
