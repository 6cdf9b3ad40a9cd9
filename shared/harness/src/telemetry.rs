//! Logs and metrics. Logs are `tracing` events, JSON or text as Lambda's log-format setting says
//! (`AWS_LAMBDA_LOG_FORMAT`, level from `AWS_LAMBDA_LOG_LEVEL` or `RUST_LOG`). Metrics are CloudWatch
//! Embedded Metric Format lines on stdout: CloudWatch extracts them from the log stream, so counting
//! costs no API call and no extra latency.

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{json, Map, Value};

/// The CloudWatch namespace of every Orderflow metric.
pub const NAMESPACE: &str = "Orderflow";

/// Installs the global tracing subscriber the Lambda way. Call once, first thing in `main`.
pub fn init() {
    lambda_runtime::tracing::init_default_subscriber();
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

/// The EMF line for one batch of `consumer`; the first call in a process also counts a cold start.
pub fn emf_line(consumer: &str, counts: Counts, timestamp_ms: i64) -> String {
    let cold_start = u64::from(COLD.swap(false, Ordering::Relaxed));
    let values = [
        ("Processed", counts.processed),
        ("Retried", counts.retried),
        ("DeadLettered", counts.dead_lettered),
        ("DuplicatesSkipped", counts.duplicates_skipped),
        ("ColdStart", cold_start),
    ];
    let mut line = Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Consumer"]],
                "Metrics": values.iter().map(|(n, _)| json!({"Name": n, "Unit": "Count"})).collect::<Vec<_>>(),
            }],
        }),
    );
    line.insert("Consumer".into(), Value::String(consumer.to_string()));
    for (name, value) in values {
        line.insert(name.into(), json!(value));
    }
    Value::Object(line).to_string()
}

/// Prints the EMF line for one batch on stdout, where Lambda ships it to CloudWatch Logs.
pub fn emit(consumer: &str, counts: Counts) {
    println!("{}", emf_line(consumer, counts, chrono::Utc::now().timestamp_millis()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_declares_and_carries_every_counter() {
        let counts = Counts { processed: 3, retried: 1, dead_lettered: 2, duplicates_skipped: 4 };
        let line: Value = serde_json::from_str(&emf_line("billing", counts, 1_700_000_000_000)).unwrap();
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Orderflow");
        assert_eq!(line["_aws"]["Timestamp"], 1_700_000_000_000i64);
        let declared: Vec<&str> = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        for name in declared {
            assert!(line.get(name).is_some(), "{name} declared but missing");
        }
        assert_eq!(line["Consumer"], "billing");
        assert_eq!((line["Processed"].as_u64(), line["Retried"].as_u64()), (Some(3), Some(1)));
        assert_eq!((line["DeadLettered"].as_u64(), line["DuplicatesSkipped"].as_u64()), (Some(2), Some(4)));
    }
}
