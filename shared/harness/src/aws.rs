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
