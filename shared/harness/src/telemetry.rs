//! Logs and metrics. Logs are `tracing` events, JSON or text as Lambda's log-format setting says
//! (`AWS_LAMBDA_LOG_FORMAT`, level from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`). Metrics are CloudWatch
//! Embedded Metric Format lines on stdout: CloudWatch extracts them from the log stream, so counting
//! costs no API call and no extra latency.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

/// The CloudWatch namespace of every Orderflow metric.
pub const NAMESPACE: &str = "Orderflow";

/// Installs the global tracing subscriber the Lambda way. Call once, first thing in `main`.
///
/// The logs of `lambda_runtime`'s `init_default_subscriber`: JSON when Lambda's log format is JSON
/// (`AWS_LAMBDA_LOG_FORMAT`), text otherwise, without the time (Lambda stamps each line) or the
/// target; the filter is [`log_filter`]. Its `EnvFilter` is not used: it links the regex engines,
/// about 0.5 MB of every zip, for span and field filters nobody sets on a Lambda function.
pub fn init() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let var = |name| std::env::var(name).ok();
    let filter = log_filter(var("RUST_LOG").as_deref(), var("AWS_LAMBDA_LOG_LEVEL").as_deref());
    let json = var("AWS_LAMBDA_LOG_FORMAT").is_some_and(|format| format.eq_ignore_ascii_case("json"));
    let logs = tracing_subscriber::registry().with(filter);
    let layer = tracing_subscriber::fmt::layer().with_target(false).without_time();
    if json {
        logs.with(layer.json()).init();
    } else {
        logs.with(layer).init();
    }
}

/// Which log lines are written: `RUST_LOG`'s directives (`info`, `sales=debug,aws_smithy=warn`,
/// `sales` for all of a target's; a directive that does not parse, or filters on spans or fields,
/// is ignored), and for every target they leave out, the level Lambda's logging controls set
/// (`AWS_LAMBDA_LOG_LEVEL`, from the template's `ApplicationLogLevel`; its `FATAL` is `error`), else
/// `info`. (`EnvFilter` turned every target off that `RUST_LOG=sales=debug` did not name.)
pub fn log_filter(rust_log: Option<&str>, lambda_level: Option<&str>) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};

    let level = |text: &str| match text.trim() {
        fatal if fatal.eq_ignore_ascii_case("fatal") => Some(LevelFilter::ERROR),
        other => other.parse::<LevelFilter>().ok(),
    };
    let mut default = lambda_level.and_then(level).unwrap_or(LevelFilter::INFO);
    let mut targets = Targets::new();
    let plain = |target: &str| !target.is_empty() && !target.contains(['[', ']', '{', '}', ' ']);
    for directive in rust_log.unwrap_or_default().split(',').map(str::trim).filter(|d| !d.is_empty()) {
        match directive.split_once('=') {
            // A level alone is the default; a target alone is that target at every level.
            None => match level(directive) {
                Some(level) => default = level,
                None if plain(directive) => targets = targets.with_target(directive, LevelFilter::TRACE),
                None => {}
            },
            Some((target, text)) => {
                if let (true, false, Some(level)) = (plain(target.trim()), text.trim().is_empty(), level(text)) {
                    targets = targets.with_target(target.trim(), level);
                }
            }
        }
    }
    targets.with_default(default)
}

/// What happened to the records of one batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Records handled successfully.
    pub processed: u64,
    /// Records handed back to SQS for redelivery.
    pub retried: u64,
    /// Records sent to the dead-letter queue.
    pub dead_lettered: u64,
    /// Duplicates of completed events, acknowledged without running the handler.
    pub duplicates_skipped: u64,
}

static COLD: AtomicBool = AtomicBool::new(true);

/// Counters a function keeps beside the harness's own (e.g. the outbox's fast path), emitted with
/// the invocation's metrics line and started again from zero.
static COUNTERS: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

/// Adds `n` to the counter `metric` of the current invocation: it becomes a metric of that name
/// (unit Count) on the invocation's EMF line, so an alarm can watch it.
pub fn count(metric: &'static str, n: u64) {
    *COUNTERS.lock().unwrap_or_else(|p| p.into_inner()).entry(metric).or_default() += n;
}

fn take_counters() -> BTreeMap<&'static str, u64> {
    std::mem::take(&mut *COUNTERS.lock().unwrap_or_else(|p| p.into_inner()))
}

/// The EMF line for one batch of `consumer`; the first call in a process also counts a cold start.
/// `requests` are the AWS requests the invocation sent (`aws::requests::take`): their total is the
/// metric `AwsRequests`, and each operation's count is a property (`AwsRequestsByOperation`), for
/// Logs Insights and the benchmark.
pub fn emf_line(consumer: &str, counts: Counts, work: &Work, timestamp_ms: i64) -> String {
    let values = [
        ("Processed", counts.processed),
        ("Retried", counts.retried),
        ("DeadLettered", counts.dead_lettered),
        ("DuplicatesSkipped", counts.duplicates_skipped),
    ];
    line("Consumer", consumer, &values, work, timestamp_ms)
}

/// What one invocation cost: the AWS requests it sent (`aws::requests::take`) and how long its
/// handler ran (what Lambda bills, less the runtime's own few microseconds).
#[derive(Debug, Clone, Default)]
pub struct Work {
    /// Requests by `service:Operation`.
    pub requests: BTreeMap<String, u64>,
    /// The handler's time.
    pub elapsed: Duration,
    /// The function's own counters ([`count`]).
    pub counters: BTreeMap<&'static str, u64>,
}

impl Work {
    /// The requests sent since the last call, and the time since `started`.
    pub fn since(started: Instant) -> Self {
        Self { requests: aws_requests(), elapsed: started.elapsed(), counters: take_counters() }
    }
}

#[cfg(feature = "aws")]
fn aws_requests() -> BTreeMap<String, u64> {
    crate::aws::requests::take()
}

/// Built without the AWS adapters (the fuzz targets): no request is ever sent.
#[cfg(not(feature = "aws"))]
fn aws_requests() -> BTreeMap<String, u64> {
    BTreeMap::new()
}

/// The EMF line for one invocation of a function that is not a consumer (an API, the outbox relay):
/// its cold start and its AWS requests, with the dimension `Function`.
pub fn invocation_line(function: &str, work: &Work, timestamp_ms: i64) -> String {
    line("Function", function, &[], work, timestamp_ms)
}

fn line(dimension: &str, name: &str, values: &[(&str, u64)], work: &Work, timestamp_ms: i64) -> String {
    let cold_start = u64::from(COLD.swap(false, Ordering::Relaxed));
    let requests = &work.requests;
    let total: u64 = requests.values().sum();
    let values: Vec<(&str, u64)> = values
        .iter()
        .copied()
        .chain([("ColdStart", cold_start), ("AwsRequests", total)])
        .chain(work.counters.iter().map(|(name, n)| (*name, *n)))
        .collect();
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[dimension]],
                "Metrics": values.iter().map(|(n, _)| json!({"Name": n, "Unit": "Count"}))
                    .chain([json!({"Name": "HandlerMs", "Unit": "Milliseconds"})])
                    .collect::<Vec<_>>(),
            }],
        }),
    );
    line.insert(dimension.into(), Value::String(name.to_string()));
    for (metric, value) in values {
        line.insert(metric.into(), json!(value));
    }
    line.insert("HandlerMs".into(), json!((work.elapsed.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0));
    line.insert("AwsRequestsByOperation".into(), json!(requests));
    Value::Object(line).to_string()
}

/// Prints the EMF line for one batch that started at `started` on stdout, where Lambda ships it to
/// CloudWatch Logs.
pub fn emit(consumer: &str, counts: Counts, started: Instant) {
    println!("{}", emf_line(consumer, counts, &Work::since(started), chrono::Utc::now().timestamp_millis()));
}

/// Prints the EMF line for one invocation of `function` (not a consumer) that started at `started`.
pub fn emit_invocation(function: &str, started: Instant) {
    println!("{}", invocation_line(function, &Work::since(started), chrono::Utc::now().timestamp_millis()));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metric names an EMF line declares.
    fn declared(line: &Value) -> Vec<&str> {
        let metrics = line["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap();
        metrics.iter().map(|m| m["Name"].as_str().unwrap()).collect()
    }

    #[test]
    fn log_levels_come_from_rust_log_then_lambdas_controls_then_info() {
        use tracing::Level;
        let enabled = |rust_log, lambda, target, level| log_filter(rust_log, lambda).would_enable(target, &level);
        // Nothing set: info and above, for every target.
        assert!(enabled(None, None, "sales", Level::INFO));
        assert!(!enabled(None, None, "sales", Level::DEBUG));
        // Lambda's ApplicationLogLevel; FATAL is error, and a level it does not know leaves info.
        assert!(!enabled(None, Some("WARN"), "sales", Level::INFO));
        assert!(enabled(None, Some("WARN"), "sales", Level::WARN));
        assert!(!enabled(None, Some("FATAL"), "sales", Level::WARN));
        assert!(enabled(None, Some("FATAL"), "sales", Level::ERROR));
        assert!(enabled(None, Some("LOUD"), "sales", Level::INFO));
        assert!(!enabled(None, Some("LOUD"), "sales", Level::DEBUG));
        // RUST_LOG's bare level wins over Lambda's; a target's own level applies to it and its
        // modules only, the rest keep the default.
        assert!(enabled(Some("debug"), Some("WARN"), "sales", Level::DEBUG));
        let rust_log = Some("sales=debug,aws_smithy_runtime=error");
        assert!(enabled(rust_log, Some("WARN"), "sales::api", Level::DEBUG));
        assert!(!enabled(rust_log, Some("WARN"), "billing", Level::INFO));
        assert!(!enabled(rust_log, None, "aws_smithy_runtime::client", Level::WARN));
        assert!(enabled(rust_log, None, "billing", Level::INFO));
        // What does not parse, or filters on spans, is left out, not read as something else.
        let odd = Some("sales[handle]=trace,=debug,billing=loud,warehouse=off,email=");
        assert!(!enabled(odd, None, "sales", Level::DEBUG));
        assert!(enabled(odd, None, "email", Level::INFO));
        // A target alone: all of its lines.
        assert!(enabled(Some("sales"), None, "sales::api", Level::TRACE));
        assert!(!enabled(Some("sales"), None, "billing", Level::DEBUG));
        assert!(!enabled(odd, None, "billing", Level::DEBUG));
        assert!(enabled(odd, None, "billing", Level::INFO));
        assert!(!enabled(odd, None, "warehouse", Level::ERROR));
    }

    #[test]
    fn emf_line_declares_and_carries_every_counter() {
        let counts = Counts { processed: 3, retried: 1, dead_lettered: 2, duplicates_skipped: 4 };
        let requests = BTreeMap::from([("dynamodb:PutItem".to_string(), 3), ("events:PutEvents".to_string(), 1)]);
        let work = Work { requests, elapsed: Duration::from_micros(2_500), counters: BTreeMap::new() };
        let line: Value = serde_json::from_str(&emf_line("billing", counts, &work, 1_700_000_000_000)).unwrap();
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Orderflow");
        assert_eq!(line["_aws"]["Timestamp"], 1_700_000_000_000i64);
        for name in declared(&line) {
            assert!(line.get(name).is_some(), "{name} declared but missing");
        }
        assert_eq!(line["Consumer"], "billing");
        assert_eq!((line["Processed"].as_u64(), line["Retried"].as_u64()), (Some(3), Some(1)));
        assert_eq!((line["DeadLettered"].as_u64(), line["DuplicatesSkipped"].as_u64()), (Some(2), Some(4)));
        assert_eq!(line["AwsRequests"].as_u64(), Some(4));
        assert_eq!(line["HandlerMs"].as_f64(), Some(2.5));
        assert_eq!(line["AwsRequestsByOperation"]["dynamodb:PutItem"].as_u64(), Some(3));
    }

    #[test]
    fn a_functions_counters_become_metrics_of_its_invocation_then_start_again() {
        count("OutboxFastPathMissed", 2);
        count("OutboxFastPathMissed", 1);
        count("OutboxFastPathPublished", 4);
        let work = Work::since(Instant::now());
        let line: Value = serde_json::from_str(&invocation_line("sales-api", &work, 1)).unwrap();
        let declared = declared(&line);
        assert!(declared.contains(&"OutboxFastPathMissed") && declared.contains(&"OutboxFastPathPublished"));
        assert_eq!(line["OutboxFastPathMissed"].as_u64(), Some(3));
        assert_eq!(line["OutboxFastPathPublished"].as_u64(), Some(4));
        assert_eq!(line["Function"], "sales-api");
        // The next invocation starts from zero: a counter is not declared when nothing counted it.
        let next: Value = serde_json::from_str(&invocation_line("sales-api", &Work::since(Instant::now()), 2)).unwrap();
        assert!(next.get("OutboxFastPathMissed").is_none(), "{next}");
    }
}
