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
use aws_smithy_runtime_api::client::http::HttpConnectorSettings;
use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpConnector, HttpConnectorFuture, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;

use crate::config::ConfigError;

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Connect within 1 s; each attempt within 2 s; a whole call, with the SDK's own retries, within 5 s
/// (the functions' timeout is 10 s, leaving time to report the batch).
pub fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(5))
        .build()
}

/// The SDK's own HTTPS client on rustls with ring: the one TLS stack of every binary (reqwest and
/// sqlx use ring too; the SDK's default would add aws-lc beside it). The tools' SDK configurations
/// (the tests, `orderflow-ops`) are given this client and the functions' its connector
/// ([`sdk_config`]): the SDK crates are built without a default one.
pub fn https_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(rustls_on_ring()).build_https()
}

fn rustls_on_ring() -> tls::Provider {
    tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring)
}

/// The same connector as [`https_client`]'s, built now: its trusted roots (those [`roots`] chose)
/// are read and its TLS configuration made here, at init, not by the first request (the SDK's own
/// client does the same when it is chosen; wrapped to count requests, it would not).
fn https_connector(roots: roots::Roots) -> SharedHttpConnector {
    SharedHttpConnector::new(
        aws_smithy_http_client::Connector::builder()
            .connector_settings(HttpConnectorSettings::builder().connect_timeout(CONNECT_TIMEOUT).build())
            .tls_provider(rustls_on_ring())
            .tls_context(roots.tls_context())
            .build(),
    )
}

/// The shared SDK configuration every client is built from: one HTTPS connector (one pool of
/// connections) for every client, with every request counted. A function's init calls
/// [`sdk_config_opening`], which also fails on a malformed `TRUSTED_ROOTS`; here one is taken as
/// `system` (the tests, the benchmark's floor).
pub async fn sdk_config() -> aws_config::SdkConfig {
    load(https_connector(roots::chosen().unwrap_or(roots::Roots::System))).await
}

/// [`sdk_config`], and with `OPEN_CONNECTIONS_AT_INIT=true` the connections to `services` opened
/// before it returns (see [`connections`]): what the function's first invocation calls.
pub async fn sdk_config_opening(services: &[connections::Service]) -> Result<aws_config::SdkConfig, ConfigError> {
    let open = connections::at_init()?;
    let roots = roots::chosen()?;
    // Said once at init: a handshake refused later (`invalid peer certificate: UnknownIssuer`) is
    // then read beside the roots that refused it.
    tracing::info!(roots = ?roots, "AWS connections trust {}", roots.describe());
    let connector = https_connector(roots);
    let sdk = load(connector.clone()).await;
    if open {
        let region = sdk.region().map(|r| r.as_ref()).unwrap_or("us-east-1");
        connections::open(&connector, services.iter().map(|s| s.endpoint(region)).collect()).await;
    }
    Ok(sdk)
}

async fn load(connector: SharedHttpConnector) -> aws_config::SdkConfig {
    // One connector whatever a client asks of it: every client built from this configuration has
    // the timeouts above, and the connector only applies the connect timeout (the SDK applies the
    // others). A client given other connect or read timeouts (aws-config's IMDS or container
    // credentials clients, not used on Lambda, where credentials are in the environment) gets this
    // connector's.
    let counted = SharedHttpConnector::new(Counting(connector));
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts())
        .http_client(http_client_fn(move |_, _| counted.clone()));
    // Lambda puts the function's credentials in the environment, where the default chain looks
    // first and finds them. Named directly, they spare init building the rest of the chain (its web
    // identity provider alone builds an STS client: a sixth of a function's init, counted in
    // instructions). Without them (SnapStart, the tools) the default chain is used.
    let in_environment = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        .iter()
        .all(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()));
    if in_environment {
        loader.credentials_provider(aws_config::environment::EnvironmentVariableCredentialsProvider::new()).load().await
    } else {
        loader.load().await
    }
}

/// Which certificate authorities the functions' AWS connections trust.
///
/// Reading the system's trusted roots is most of a function's init: a distribution's bundle holds
/// about 140 certificates (Lambda's Amazon Linux 2023 one bundle, Debian a bundle and a folder of
/// the same again), each decoded from PEM (a constant-time base64 decoder) and parsed. Counted in
/// instructions (callgrind, README "Cold start"), billing's whole process up to its first
/// `next` is 11.7 million with Debian's bundle alone, 21.0 million with its bundle and folder, and
/// 3.1 million with the five roots of Amazon Trust Services (`certs/amazon-trust-services.pem`,
/// compiled in; reading them is 0.25 million), which issues AWS's service endpoints' certificates.
///
/// `TRUSTED_ROOTS` (template parameter `TrustedRoots`):
/// - `auto` (the default): Amazon Trust Services' roots when every TLS connection the SDK makes
///   goes to AWS's own standard endpoints in the `aws` partition; the system's when an
///   `AWS_ENDPOINT_URL*` names an `https` endpoint (a VPC endpoint's own name, a proxy, an
///   emulator behind TLS), when `SSL_CERT_FILE` or `SSL_CERT_DIR` is set (a CA of one's own, such
///   as a TLS-inspecting proxy's, in a bundle of one's own: the system's loading reads exactly
///   those), when FIPS or dual-stack endpoints are asked for, or when the region is of another
///   partition (GovCloud, China, the isolated regions, the European Sovereign Cloud): what their
///   endpoints present was not checked here;
/// - `system`: the system's, always (should AWS's endpoints ever present another CA's certificates).
///
/// Only the AWS SDK's connections: Twilio and the webhooks' subscribers are reached by reqwest with
/// the Mozilla roots compiled into it (`webpki-roots`), the reporting store by sqlx likewise.
pub mod roots {
    use aws_smithy_http_client::tls::{TlsContext, TrustStore};

    use crate::config::ConfigError;

    /// The setting: `auto` (default) or `system`.
    pub const TRUSTED_ROOTS: &str = "TRUSTED_ROOTS";

    /// Amazon Trust Services' five roots (the file says where they come from).
    const AMAZON_TRUST_SERVICES: &str = include_str!("../certs/amazon-trust-services.pem");

    /// The roots chosen.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Roots {
        /// Amazon Trust Services' five.
        Amazon,
        /// The system's (`rustls-native-certs`: `SSL_CERT_FILE` and `SSL_CERT_DIR` when set, else
        /// the distribution's bundle and folder).
        System,
    }

    impl Roots {
        pub(super) fn describe(self) -> &'static str {
            match self {
                Roots::Amazon => "Amazon Trust Services' five roots (TRUSTED_ROOTS=auto; system for the system's)",
                Roots::System => "the system's roots",
            }
        }

        pub(super) fn tls_context(self) -> TlsContext {
            let store = match self {
                Roots::Amazon => TrustStore::empty().with_pem_certificate(AMAZON_TRUST_SERVICES.as_bytes()),
                Roots::System => TrustStore::default(),
            };
            TlsContext::builder().with_trust_store(store).build().expect("a trust store alone always builds")
        }
    }

    /// The roots `TRUSTED_ROOTS` and the environment choose (see the module).
    pub fn chosen() -> Result<Roots, ConfigError> {
        // Variables that are not Unicode are none of those read here.
        chosen_in(
            std::env::vars_os().filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?))),
        )
    }

    pub(crate) fn chosen_in(vars: impl IntoIterator<Item = (String, String)>) -> Result<Roots, ConfigError> {
        let vars: std::collections::BTreeMap<String, String> =
            vars.into_iter().filter(|(_, value)| !value.trim().is_empty()).collect();
        match vars.get(TRUSTED_ROOTS).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("auto") => {}
            Some("system") => return Ok(Roots::System),
            Some(other) => {
                return Err(ConfigError::Malformed {
                    name: TRUSTED_ROOTS.to_string(),
                    value: other.to_string(),
                    reason: "expected auto or system".to_string(),
                })
            }
        }
        let own_roots = vars.contains_key("SSL_CERT_FILE") || vars.contains_key("SSL_CERT_DIR");
        // Any service's override (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_<SERVICE>`) that is not
        // plain HTTP: its certificate may be anyone's.
        let https_override = vars
            .iter()
            .filter(|(name, _)| name.starts_with("AWS_ENDPOINT_URL"))
            .any(|(_, url)| !url.trim_start().to_ascii_lowercase().starts_with("http://"));
        // FIPS and dual-stack endpoints are other hosts (`*.api.aws`, `*-fips.*`), not checked.
        let other_kind = ["AWS_USE_FIPS_ENDPOINT", "AWS_USE_DUALSTACK_ENDPOINT"]
            .iter()
            .any(|name| vars.get(*name).is_some_and(|v| v.trim().eq_ignore_ascii_case("true")));
        let region = vars.get("AWS_REGION").or_else(|| vars.get("AWS_DEFAULT_REGION"));
        Ok(match region {
            Some(region) if in_checked_partition(region) && !own_roots && !https_override && !other_kind => {
                Roots::Amazon
            }
            _ => Roots::System,
        })
    }

    /// Whether `region` is of the `aws` partition, whose endpoints present Amazon Trust Services'
    /// certificates: `us-east-1`, `eu-central-2`; not `us-gov-west-1`, `cn-north-1`,
    /// `us-iso-east-1`, `eusc-de-east-1` or a name unknown.
    fn in_checked_partition(region: &str) -> bool {
        const PREFIXES: &[&str] = &["us-", "eu-", "ap-", "ca-", "sa-", "me-", "af-", "il-", "mx-"];
        PREFIXES.iter().any(|p| region.starts_with(p))
            && !region.contains("-iso")
            && !region.starts_with("us-gov-")
            && region.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    }
}

/// A connector with each request it sends counted in [`requests`].
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

/// Opening at init the connections a function's first invocation needs.
///
/// Each AWS service is an HTTPS endpoint of its own: a function's first request to it opens a TCP
/// connection and makes a TLS handshake first. With `OPEN_CONNECTIONS_AT_INIT=true` init does that
/// instead, for the services the function names (those of its first invocation's common path): one
/// unsigned `GET /` to each endpoint, through the connector every SDK client sends through; its short
/// answer leaves the connection in the pool for the SDK's first request (a long one, which no AWS
/// endpoint gives, would close it: the answer is never read). The same setting opens
/// the cache's Redis connection and reporting's PostgreSQL pool ([`open_with`]). Unsigned, the
/// request carries no credentials, needs no permission and changes nothing: the endpoint answers
/// with a health line (DynamoDB) or a refusal, which reaches no billed operation (at worst S3 bills
/// the refused listing as one request). It is not counted in [`requests`], which counts API calls.
///
/// Off by default: on an on-demand cold start, init and the first invocation both wait in front of
/// the first request, so opening the connections early moves the handshakes rather than removes
/// them, and the opening request adds a round trip (measured against a local TLS endpoint, it added
/// more to init than it saved the first invocation for 10 of 12 functions: the README's "Cold start
/// over TLS, and opening the connections at init"). It can pay where init runs before any request
/// arrives (provisioned concurrency), while the pool keeps the connection (90 s idle).
pub mod connections {
    use std::time::{Duration, Instant};

    use aws_smithy_runtime_api::client::http::{HttpConnector, SharedHttpConnector};
    use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
    use aws_smithy_types::body::SdkBody;
    use tracing::{info, warn};

    use crate::config::{self, ConfigError};

    /// The setting (`true` or `false`, default `false`).
    pub const OPEN_CONNECTIONS_AT_INIT: &str = "OPEN_CONNECTIONS_AT_INIT";

    /// How long init waits for one connection: a slow endpoint is left to the first request.
    const OPEN_TIMEOUT: Duration = Duration::from_secs(1);

    /// The same for a connection of another kind (the adapters' own connect timeouts are 1 to 3 s).
    pub const OPEN_OTHER_TIMEOUT: Duration = Duration::from_secs(3);

    /// An AWS endpoint a function talks to.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Service {
        /// DynamoDB.
        DynamoDb,
        /// EventBridge (`PutEvents`).
        EventBridge,
        /// SQS.
        Sqs,
        /// SES v2.
        Ses,
        /// Secrets Manager.
        SecretsManager,
        /// One S3 bucket (addressed as its own host on AWS).
        S3Bucket(String),
    }

    impl Service {
        /// The service's endpoint: `AWS_ENDPOINT_URL_<SERVICE>` or `AWS_ENDPOINT_URL` when set (as
        /// the SDK reads them), else its regional endpoint in the `aws` partition.
        pub fn endpoint(&self, region: &str) -> String {
            self.endpoint_in(region, |name| std::env::var(name).ok())
        }

        pub(crate) fn endpoint_in(&self, region: &str, env: impl Fn(&str) -> Option<String>) -> String {
            let (variable, host) = match self {
                Service::DynamoDb => ("DYNAMODB", format!("dynamodb.{region}.amazonaws.com")),
                Service::EventBridge => ("EVENTBRIDGE", format!("events.{region}.amazonaws.com")),
                Service::Sqs => ("SQS", format!("sqs.{region}.amazonaws.com")),
                Service::Ses => ("SESV2", format!("email.{region}.amazonaws.com")),
                Service::SecretsManager => ("SECRETS_MANAGER", format!("secretsmanager.{region}.amazonaws.com")),
                // A bucket is its own host, unless its name has dots (TLS: the SDK addresses it by
                // path) or is not a bucket's name at all (then only S3's host is opened).
                Service::S3Bucket(bucket) if is_bucket_host(bucket) => {
                    ("S3", format!("{bucket}.s3.{region}.amazonaws.com"))
                }
                Service::S3Bucket(_) => ("S3", format!("s3.{region}.amazonaws.com")),
            };
            [format!("AWS_ENDPOINT_URL_{variable}"), "AWS_ENDPOINT_URL".to_string()]
                .iter()
                .find_map(|v| env(v).filter(|url| !url.is_empty()))
                .map(|url| format!("{}/", url.trim_end_matches('/')))
                .unwrap_or_else(|| format!("https://{host}/"))
        }
    }

    /// Whether `OPEN_CONNECTIONS_AT_INIT` asks for the connections to be opened at init.
    pub fn at_init() -> Result<bool, ConfigError> {
        config::parsed_or(OPEN_CONNECTIONS_AT_INIT, false)
    }

    /// With `OPEN_CONNECTIONS_AT_INIT=true`, opens a connection of another kind (Redis, PostgreSQL)
    /// at init with `open`, under the adapter's own timeouts and at most [`OPEN_OTHER_TIMEOUT`]; a
    /// failure is logged, never fatal, and the first invocation opens it.
    pub async fn open_with<E: std::fmt::Display>(
        what: &str,
        open: impl std::future::Future<Output = Result<(), E>>,
    ) -> Result<(), ConfigError> {
        if !at_init()? {
            return Ok(());
        }
        let started = Instant::now();
        match tokio::time::timeout(OPEN_OTHER_TIMEOUT, open).await {
            Ok(Ok(())) => info!(what, elapsed_ms = started.elapsed().as_millis() as u64, "connection opened at init"),
            Ok(Err(error)) => warn!(what, error = %crate::redact::redact(&error.to_string()),
                "could not open the connection at init: the first invocation will"),
            Err(_) => warn!(what, "no connection within 3 s at init: the first invocation will open it"),
        }
        Ok(())
    }

    /// Whether `bucket` can be a host name as S3 serves it: 3 to 63 lowercase letters, digits and
    /// hyphens.
    fn is_bucket_host(bucket: &str) -> bool {
        (3..=63).contains(&bucket.len())
            && bucket.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            && !bucket.starts_with('-')
            && !bucket.ends_with('-')
    }

    /// Opens a connection to each of `endpoints` at once, one an endpoint (against an emulator every
    /// service is the same one); one that cannot be opened within [`OPEN_TIMEOUT`] is left to the
    /// first request (logged, never fatal).
    pub(super) async fn open(connector: &SharedHttpConnector, mut endpoints: Vec<String>) {
        endpoints.sort();
        endpoints.dedup();
        let started = Instant::now();
        let opened = futures::future::join_all(
            endpoints
                .iter()
                .map(|url| async move { (url, tokio::time::timeout(OPEN_TIMEOUT, get(connector, url)).await) }),
        )
        .await;
        for (url, result) in &opened {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => warn!(url = %crate::redact::redact(url), error = %crate::redact::redact(error),
                    "could not open a connection at init: the first request will"),
                Err(_) => {
                    warn!(url = %crate::redact::redact(url), "no connection within 1 s at init: the first request will open it")
                }
            }
        }
        info!(
            endpoints = opened.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "connections opened at init"
        );
    }

    /// An unsigned `GET /`; its answer's status. The body is read to its end (a few hundred bytes
    /// of error): hyper pools a connection only once its answer is done, and one whose body was
    /// dropped unread was closed instead whenever the body came in a read of its own (seen under
    /// load; `..._when_its_body_came_apart` below fails without it).
    async fn get(connector: &SharedHttpConnector, url: &str) -> Result<u16, String> {
        let mut request = HttpRequest::new(SdkBody::empty());
        request.set_uri(url).map_err(|e| e.to_string())?;
        let response = connector.call(request).await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        aws_smithy_types::byte_stream::ByteStream::new(response.into_body())
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(status)
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
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::requests::operation_of;
    use super::*;
    use crate::dynamo::s;

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

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn trusts_amazons_roots_only_where_every_endpoint_is_awss_own() {
        use roots::{chosen_in, Roots};
        let lambda = [("AWS_REGION", "eu-west-1"), ("AWS_ACCESS_KEY_ID", "AKIA")];
        assert_eq!(chosen_in(env(&lambda)), Ok(Roots::Amazon));
        assert_eq!(chosen_in(env(&[("AWS_DEFAULT_REGION", "ap-southeast-2")])), Ok(Roots::Amazon));
        // Plain HTTP overrides (the emulator) make no TLS connection to anyone else.
        let emulator = [("AWS_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")];
        assert_eq!(chosen_in(env(&emulator)), Ok(Roots::Amazon));
        assert_eq!(chosen_in(env(&[("AWS_REGION", "us-east-1"), ("TRUSTED_ROOTS", "auto")])), Ok(Roots::Amazon));
        // A scheme's case is not its meaning.
        assert_eq!(chosen_in(env(&[("AWS_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", "HTTP://x")])), Ok(Roots::Amazon));
        // AWS_REGION first, as the SDK reads them.
        let both = [("AWS_REGION", "eu-west-1"), ("AWS_DEFAULT_REGION", "cn-north-1")];
        assert_eq!(chosen_in(env(&both)), Ok(Roots::Amazon));
        let both = [("AWS_REGION", "cn-north-1"), ("AWS_DEFAULT_REGION", "eu-west-1")];
        assert_eq!(chosen_in(env(&both)), Ok(Roots::System));
        assert_eq!(
            chosen_in(env(&[("AWS_REGION", "us-east-1"), ("AWS_USE_FIPS_ENDPOINT", "false")])),
            Ok(Roots::Amazon)
        );

        for other in [
            vec![("AWS_REGION", "us-east-1"), ("TRUSTED_ROOTS", "system")],
            vec![("AWS_REGION", "us-east-1"), ("TRUSTED_ROOTS", " System ")],
            vec![("AWS_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", " https://x")],
            vec![("AWS_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", "http://x"), ("AWS_ENDPOINT_URL_S3", "https://x")],
            vec![("AWS_REGION", "us-east-1"), ("AWS_USE_FIPS_ENDPOINT", "true")],
            vec![("AWS_REGION", "us-east-1"), ("AWS_USE_DUALSTACK_ENDPOINT", "TRUE")],
            vec![("AWS_REGION", "us-gov-west-1")],
            vec![("AWS_REGION", "us-east-1.example")],
            vec![("AWS_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", "https://localhost:4443")],
            vec![
                ("AWS_REGION", "us-east-1"),
                ("AWS_ENDPOINT_URL_SQS", "https://vpce-1.sqs.us-east-1.vpce.amazonaws.com"),
            ],
            vec![("AWS_REGION", "us-east-1"), ("AWS_ENDPOINT_URL_DYNAMODB", "HTTPS://proxy")],
            vec![("AWS_REGION", "us-east-1"), ("SSL_CERT_FILE", "/opt/ca.pem")],
            vec![("AWS_REGION", "us-east-1"), ("SSL_CERT_DIR", "/opt/certs")],
            vec![("AWS_REGION", "cn-north-1")],
            vec![("AWS_REGION", "us-iso-east-1")],
            vec![("AWS_REGION", "us-isob-east-1")],
            vec![("AWS_REGION", "eusc-de-east-1")],
            vec![("AWS_REGION", "US-EAST-1")],
            vec![],
        ] {
            assert_eq!(chosen_in(env(&other)), Ok(Roots::System), "{other:?}");
        }
        // Empty is unset, as everywhere in the configuration.
        assert_eq!(chosen_in(env(&[("AWS_REGION", "us-east-1"), ("SSL_CERT_FILE", "")])), Ok(Roots::Amazon));
        assert!(matches!(
            chosen_in(env(&[("AWS_REGION", "us-east-1"), ("TRUSTED_ROOTS", "amazon-only")])),
            Err(ConfigError::Malformed { name, .. }) if name == "TRUSTED_ROOTS"
        ));
    }

    #[test]
    fn the_amazon_roots_are_the_published_ones() {
        use base64::Engine as _;
        let pem = include_str!("../certs/amazon-trust-services.pem");
        let fingerprints: Vec<String> = pem
            .split("-----BEGIN CERTIFICATE-----")
            .skip(1)
            .map(|section| {
                let body: String =
                    section.split("-----END CERTIFICATE-----").next().unwrap().split_whitespace().collect();
                let der = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
                ring::digest::digest(&ring::digest::SHA256, &der).as_ref().iter().map(|b| format!("{b:02X}")).collect()
            })
            .collect();
        // https://www.amazontrust.com/repository/: Amazon Root CA 1 to 4, Starfield Services Root
        // Certificate Authority - G2.
        assert_eq!(
            fingerprints,
            [
                "8ECDE6884F3D87B1125BA31AC3FCB13D7016DE7F57CC904FE1CB97C6AE98196E",
                "1BA5B2AA8C65401A82960118F80BEC4F62304D83CEC4713A19C39C011EA46DB4",
                "18CE6CFE7BF14E60B2E347B8DFE868CB31D02EBB3ADA271569F50343B46DB3A4",
                "E35D28419ED02025CFA69038CD623962458DA5C695FBDEA3C22B0BFB25897092",
                "568D6905A2C88708A4B3025190EDCFEDB1974A606A13C6E5290FCB2AE63EDAB5",
            ]
        );
        // The connector takes them (it parses each into a trust anchor when built, and panics on one
        // it cannot).
        let _ = https_connector(roots::Roots::Amazon);
    }

    #[test]
    fn opens_the_endpoint_the_sdk_will_use() {
        use connections::Service;
        let none = |_: &str| None;
        assert_eq!(Service::DynamoDb.endpoint_in("eu-west-1", none), "https://dynamodb.eu-west-1.amazonaws.com/");
        assert_eq!(Service::EventBridge.endpoint_in("eu-west-1", none), "https://events.eu-west-1.amazonaws.com/");
        assert_eq!(Service::Ses.endpoint_in("us-east-1", none), "https://email.us-east-1.amazonaws.com/");
        assert_eq!(
            Service::S3Bucket("labels-1".into()).endpoint_in("eu-west-1", none),
            "https://labels-1.s3.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            Service::S3Bucket("a.b.c".into()).endpoint_in("eu-west-1", none),
            "https://s3.eu-west-1.amazonaws.com/"
        );
        assert_eq!(
            Service::S3Bucket("evil.example.com/".into()).endpoint_in("eu-west-1", none),
            "https://s3.eu-west-1.amazonaws.com/"
        );
        // The emulator's one endpoint; a service's own setting before it.
        let local = |name: &str| match name {
            "AWS_ENDPOINT_URL" => Some("http://localhost:4566".to_string()),
            "AWS_ENDPOINT_URL_SQS" => Some("http://localhost:9324/".to_string()),
            _ => None,
        };
        assert_eq!(Service::DynamoDb.endpoint_in("eu-west-1", local), "http://localhost:4566/");
        assert_eq!(Service::Sqs.endpoint_in("eu-west-1", local), "http://localhost:9324/");
    }

    /// An HTTP server answering every request with `{}`: how many connections it accepted, and
    /// how many requests it answered. With `body_apart`, each answer's body follows its head 50 ms
    /// later, so that a client reads it apart.
    fn counting_server(body_apart: bool) -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (connections, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (c, r) = (connections.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut out = stream;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut length = 0;
                        loop {
                            let mut header = String::new();
                            reader.read_line(&mut header).unwrap();
                            if header.trim().is_empty() {
                                break;
                            }
                            if let Some((name, value)) = header.split_once(':') {
                                if name.eq_ignore_ascii_case("content-length") {
                                    length = value.trim().parse().unwrap();
                                }
                            }
                        }
                        reader.read_exact(&mut vec![0; length]).unwrap();
                        r.fetch_add(1, Ordering::SeqCst);
                        let body = "{}";
                        write!(
                            out,
                            "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n",
                            body.len()
                        )
                        .unwrap();
                        if body_apart {
                            out.flush().unwrap();
                            std::thread::sleep(std::time::Duration::from_millis(50));
                        }
                        write!(out, "{body}").unwrap();
                    }
                });
            }
        });
        (url, connections, requests)
    }

    #[tokio::test]
    async fn the_first_request_goes_over_the_connection_opened_at_init() {
        the_first_request_goes_over_the_connection_opened_at_init_when(false).await;
    }

    /// The answer to the warm-up's `GET /` in two reads, its body after its head: the connection
    /// is pooled only once the body is read (dropped unread, it was closed and the SDK's first
    /// request opened a second: this test failed so before `get` read the body).
    #[tokio::test]
    async fn the_first_request_goes_over_the_connection_opened_at_init_when_its_body_came_apart() {
        the_first_request_goes_over_the_connection_opened_at_init_when(true).await;
    }

    async fn the_first_request_goes_over_the_connection_opened_at_init_when(body_apart: bool) {
        let (url, connections, requests) = counting_server(body_apart);
        let connector = https_connector(roots::Roots::Amazon);
        let config = |connector: SharedHttpConnector| {
            aws_sdk_dynamodb::Config::builder()
                .behavior_version_latest()
                .region(aws_sdk_dynamodb::config::Region::new("eu-west-1"))
                .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("AKID", "SECRET", None, None, "test"))
                .endpoint_url(&url)
                .http_client(http_client_fn(move |_, _| connector.clone()))
                .build()
        };
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(config(connector.clone()));
        let local = |name: &str| (name == "AWS_ENDPOINT_URL").then(|| url.clone());
        connections::open(&connector, vec![connections::Service::DynamoDb.endpoint_in("eu-west-1", local)]).await;
        assert_eq!((connections.load(Ordering::SeqCst), requests.load(Ordering::SeqCst)), (1, 1), "opened at init");
        // Between init and the first invoke Lambda's runtime waits on its `next` request: hyper
        // puts the opened connection back in its pool on a task of its own once the warm-up's
        // answer is done, and the SDK's request must find it there, as it does on Lambda.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        dynamodb.get_item().table_name("orders").key("id", s("1")).send().await.unwrap();
        assert_eq!(
            (connections.load(Ordering::SeqCst), requests.load(Ordering::SeqCst)),
            (1, 2),
            "the SDK's first request took the open connection"
        );

        // A client on another connector opens its own.
        let other = aws_sdk_dynamodb::Client::from_conf(config(https_connector(roots::Roots::Amazon)));
        other.get_item().table_name("orders").key("id", s("1")).send().await.unwrap();
        assert_eq!(connections.load(Ordering::SeqCst), 2);
    }
}
