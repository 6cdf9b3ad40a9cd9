//! AWS SDK configuration, loaded once at init. `aws-config` reads region, credentials and
//! `AWS_ENDPOINT_URL` from the environment, so the same binary talks to AWS or to the local emulator.

/// The shared SDK configuration every client is built from.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}
