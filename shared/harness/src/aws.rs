//! AWS SDK configuration, loaded once at init. `aws-config` reads region, credentials and
//! `AWS_ENDPOINT_URL` from the environment, so the same binary talks to AWS or to the local emulator.
//!
//! Every call has a bounded time: without timeouts a dead TCP connection holds an invocation until
//! Lambda kills it at its deadline, and the batch's outcome is never reported.
//!
//! Every request is counted, by service and operation ([`requests`]): AWS bills per request, so the
//! requests an order makes are its cost. The count is taken at the HTTP layer, below the SDK's retry
//! loop, so a retried attempt counts as the request it is. [`crate::telemetry`] reports the counts of
//! each invocation in its metrics line.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_smithy_http_client::tls;
use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;

/// Connect within 1 s; each attempt within 2 s; a whole call, with the SDK's own retries, within 5 s
/// (the functions' timeout is 10 s, leaving time to report the batch).
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build()
}

/// The SDK's own HTTPS client on rustls with ring: the one TLS stack of every binary (reqwest and
/// sqlx use ring too; the SDK's default would add aws-lc beside it). Every SDK configuration of the
/// workspace is given this client: the SDK crates are built without a default one.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https()
}

/// The shared SDK configuration every client is built from: [`https_client`], with every request
/// counted.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts())
        .http_client(counting(https_client()))
        .load()
        .await
}

/// `inner`, with each request it sends counted in [`requests`].
pub fn counting(inner: SharedHttpClient) -> SharedHttpClient {
    http_client_fn(move |settings, components| {
        SharedHttpConnector::new(Counting(inner.http_connector(settings, components)))
    })
}

#[derive(Debug)]
struct Counting(SharedHttpConnector);

impl HttpConnector for Counting {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let mut operation = requests::operation_of(&request);
        if operation.starts_with("dynamodb:") && requests::on_idempotency_table(&request) {
            operation.push_str(" (idempotency)");
        }
        requests::count(operation);
        self.0.call(request)
    }
}

/// The AWS requests this process has sent since the last [`requests::take`]. A Lambda process serves
/// one invocation at a time, so what is taken at the end of an invocation is that invocation's
/// (with, on the first, what init sent).
pub mod requests {
    use super::*;

    static COUNTS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

    pub(super) fn count(operation: String) {
        let mut counts = COUNTS.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(operation).or_default() += 1;
    }

    /// Whether a DynamoDB request names the harness's idempotency table (`IDEMPOTENCY_TABLE`): the
    /// bookkeeping a consumer pays before any business call is counted apart, as
    /// `dynamodb:PutItem (idempotency)`.
    pub(super) fn on_idempotency_table(request: &HttpRequest) -> bool {
        static NEEDLE: std::sync::OnceLock<Option<Vec<u8>>> = std::sync::OnceLock::new();
        let needle = NEEDLE.get_or_init(|| {
            std::env::var(crate::config::vars::IDEMPOTENCY_TABLE)
                .ok()
                .filter(|t| !t.is_empty())
                .map(|t| format!("\"TableName\":\"{t}\"").into_bytes())
        });
        match (needle, request.body().bytes()) {
            (Some(needle), Some(body)) => body.windows(needle.len()).any(|w| w == needle.as_slice()),
            _ => false,
        }
    }

    /// The counts by `service:Operation` since the last call, and starts again from zero.
    pub fn take() -> BTreeMap<String, u64> {
        std::mem::take(&mut *COUNTS.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// `service:Operation` of a request. The JSON protocols (DynamoDB, SQS, EventBridge, Secrets
    /// Manager, CloudWatch Logs) name it in `X-Amz-Target` (`DynamoDB_20120810.PutItem` ->
    /// `dynamodb:PutItem`); the REST ones (S3, SES v2, EventBridge Scheduler) by method and path.
    pub fn operation_of(request: &HttpRequest) -> String {
        if let Some(target) = request.headers().get("x-amz-target") {
            let (service, op) = target.split_once('.').unwrap_or(("unknown", target));
            let service = service.split('_').next().unwrap_or(service);
            let service = match service {
                "DynamoDB" => "dynamodb",
                "AmazonSQS" => "sqs",
                "AWSEvents" => "events",
                "Logs" => "logs",
                other => other,
            };
            return format!("{}:{op}", service.to_ascii_lowercase());
        }
        let method = request.method();
        let path = request.uri().split("://").nth(1).and_then(|rest| rest.find('/').map(|i| &rest[i..])).unwrap_or("/");
        let path = path.split('?').next().unwrap_or(path);
        if let Some(rest) = path.strip_prefix("/v2/email/") {
            let op = match (method, rest.split('/').next().unwrap_or_default()) {
                ("POST", "outbound-emails") => "SendEmail",
                ("GET", "identities") => "GetEmailIdentity",
                (_, other) => return format!("ses:{method} {other}"),
            };
            return format!("ses:{op}");
        }
        if path.starts_with("/schedules/") {
            let op = match method {
                "POST" => "CreateSchedule",
                "DELETE" => "DeleteSchedule",
                "GET" => "GetSchedule",
                "PUT" => "UpdateSchedule",
                other => return format!("scheduler:{other}"),
            };
            return format!("scheduler:{op}");
        }
        let op = match method {
            "PUT" => "PutObject",
            "GET" => "GetObject",
            "DELETE" => "DeleteObject",
            "HEAD" => "HeadObject",
            other => return format!("s3:{other}"),
        };
        format!("s3:{op}")
    }
}

#[cfg(test)]
mod tests {
    use super::requests::operation_of;
    use super::*;

    fn request(method: &str, uri: &str, target: Option<&str>) -> HttpRequest {
        let mut builder = http::Request::builder().method(method).uri(uri);
        if let Some(target) = target {
            builder = builder.header("x-amz-target", target);
        }
        HttpRequest::try_from(builder.body(aws_smithy_types::body::SdkBody::empty()).unwrap()).unwrap()
    }

    #[test]
    fn names_the_operation_of_each_protocol() {
        let cases = [
            (request("POST", "http://localhost:4566/", Some("DynamoDB_20120810.PutItem")), "dynamodb:PutItem"),
            (request("POST", "https://sqs.eu-west-1.amazonaws.com/", Some("AmazonSQS.SendMessage")), "sqs:SendMessage"),
            (request("POST", "http://localhost:4566/", Some("AWSEvents.PutEvents")), "events:PutEvents"),
            (
                request("POST", "http://localhost:4566/", Some("secretsmanager.GetSecretValue")),
                "secretsmanager:GetSecretValue",
            ),
            (request("POST", "http://localhost:4566/v2/email/outbound-emails", None), "ses:SendEmail"),
            (
                request("GET", "http://localhost:4566/v2/email/identities/shop%40example.com", None),
                "ses:GetEmailIdentity",
            ),
            (request("POST", "http://localhost:4566/schedules/backorder-1?x=1", None), "scheduler:CreateSchedule"),
            (request("DELETE", "http://localhost:4566/schedules/backorder-1", None), "scheduler:DeleteSchedule"),
            (request("PUT", "http://localhost:4566/lake/events/x.gz?x-id=PutObject", None), "s3:PutObject"),
            (request("DELETE", "https://labels.s3.amazonaws.com/labels/o.pdf", None), "s3:DeleteObject"),
        ];
        for (req, want) in cases {
            assert_eq!(operation_of(&req), want, "{} {}", req.method(), req.uri());
        }
    }
}
