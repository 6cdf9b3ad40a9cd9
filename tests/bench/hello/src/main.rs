//! The floor the functions' cold start is measured against: `lambda_runtime` answering every event
//! with `{}`, with the same tracing subscriber and release profile as the functions.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::tracing::init_default_subscriber();
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| async { Ok::<_, Error>(serde_json::json!({})) })).await
}
