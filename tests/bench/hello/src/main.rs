//! The floor the functions' cold start is measured against: `lambda_runtime` answering every event
//! with `{}`, with the release profile of the functions and a subscriber like theirs (JSON or text,
//! a level filter, no `EnvFilter`: the functions' `harness::telemetry::init` links none either).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let logs = tracing_subscriber::fmt().with_max_level(tracing::Level::INFO).with_target(false).without_time();
    if std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json().init();
    } else {
        logs.init();
    }
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| async { Ok::<_, Error>(serde_json::json!({})) })).await
}
