//! AWS SDK configuration, loaded once at init. `aws-config` reads region, credentials and
//! `AWS_ENDPOINT_URL` from the environment, so the same binary talks to AWS or to the local emulator.
//!
//! Every call has a bounded time: without timeouts a dead TCP connection holds an invocation until
//! Lambda kills it at its deadline, and the batch's outcome is never reported.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;

/// Connect within 1 s; each attempt within 2 s; a whole call, with the SDK's own retries, within 5 s
/// (the functions' timeout is 10 s, leaving time to report the batch).
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build()
}

/// The shared SDK configuration every client is built from.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts()).load().await
}

/// The value of the Secrets Manager secret `secret_id` (name or ARN), read once at init by a function
/// that needs credentials (never from an environment variable, never logged). The error names the
/// secret, not its value.
pub async fn secret_string(sdk: &aws_config::SdkConfig, secret_id: &str) -> Result<String, String> {
    let out =
        aws_sdk_secretsmanager::Client::new(sdk).get_secret_value().secret_id(secret_id).send().await.map_err(|e| {
            format!("reading the secret {secret_id}: {}", aws_sdk_secretsmanager::error::DisplayErrorContext(e))
        })?;
    out.secret_string().map(str::to_string).ok_or_else(|| format!("the secret {secret_id} holds no string"))
}
