//! The AWS APIs that only the tests, the demo and the benchmark call (Cognito's admin calls,
//! CloudWatch Logs' `FilterLogEvents`, Athena, Lambda's configuration and event source mappings),
//! as signed JSON requests: no function calls them, so their SDK crates were compiled for these
//! few calls alone, 139 s of a cold build's compile units out of the tests' 340 (README, "Build and
//! test time"). The requests are what those SDK clients send (the services' JSON protocols, signed
//! with the SDK's own SigV4 signer, `aws-sigv4`), and an error says the service's code and message.

use std::fmt;
use std::time::SystemTime;

use aws_sdk_sqs::config::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use reqwest::{Method, Url};
use serde_json::Value;

/// A service spoken to in the JSON protocol (`X-Amz-Target: <prefix>.<Operation>`).
#[derive(Debug, Clone, Copy)]
pub struct JsonService {
    /// The name requests are signed for.
    signing_name: &'static str,
    /// The target's prefix.
    target: &'static str,
    /// `application/x-amz-json-1.0` or `-1.1`.
    content_type: &'static str,
}

/// Cognito user pools (`AdminCreateUser`, `AdminInitiateAuth`, ...).
pub const COGNITO: JsonService = JsonService {
    signing_name: "cognito-idp",
    target: "AWSCognitoIdentityProviderService",
    content_type: "application/x-amz-json-1.1",
};
/// CloudWatch Logs.
pub const LOGS: JsonService =
    JsonService { signing_name: "logs", target: "Logs_20140328", content_type: "application/x-amz-json-1.1" };
/// Athena.
pub const ATHENA: JsonService =
    JsonService { signing_name: "athena", target: "AmazonAthena", content_type: "application/x-amz-json-1.1" };

/// A refused or failed call: the operation, the HTTP status, the service's error code (e.g.
/// `UsernameExistsException`) and its message.
#[derive(Debug)]
pub struct ApiError {
    pub operation: String,
    pub status: Option<u16>,
    pub code: String,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "{}: HTTP {status} {}: {}", self.operation, self.code, self.message),
            None => write!(f, "{}: {}: {}", self.operation, self.code, self.message),
        }
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// Whether the SDK's standard retry would try again: no answer, 429, 5xx, throttling.
    fn retryable(&self) -> bool {
        match self.status {
            None => self.code == "Transport",
            Some(status) => status == 429 || status >= 500 || self.code.contains("Throttl"),
        }
    }
}

/// Signed calls to one endpoint (the emulator's) in one region, with one set of credentials
/// (the emulator's dummy ones, `stack::local_credentials`).
#[derive(Clone)]
pub struct AwsApi {
    http: reqwest::Client,
    endpoint: Url,
    region: String,
    credentials: Credentials,
}

impl AwsApi {
    /// Calls at `endpoint`, signed for `region` with `credentials`.
    pub fn new(endpoint: &str, region: &str, credentials: Credentials) -> Result<Self, ApiError> {
        let endpoint = Url::parse(endpoint).map_err(|e| failure("endpoint", "InvalidEndpoint", e))?;
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| failure("client", "Client", e))?;
        Ok(Self { http, endpoint, region: region.to_string(), credentials })
    }

    /// `operation` of a JSON-protocol `service`, with `body`; the answer's JSON.
    pub async fn json(&self, service: JsonService, operation: &str, body: &Value) -> Result<Value, ApiError> {
        let target = format!("{}.{operation}", service.target);
        let headers = [("content-type", service.content_type), ("x-amz-target", target.as_str())];
        let url = self.endpoint.clone();
        let call = Call { signing_name: service.signing_name, operation, method: Method::POST, url, headers: &headers };
        self.send(&call, &body.to_string()).await
    }

    /// A call of a REST-JSON service (Lambda): `method` on the path `segments` (each percent-encoded)
    /// with `query`, and `body` if any.
    pub async fn rest(
        &self,
        signing_name: &str,
        operation: &str,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let mut url = self.endpoint.clone();
        url.path_segments_mut()
            .map_err(|()| failure(operation, "InvalidEndpoint", "no path"))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let (headers, body) = match body {
            Some(body) => (&[("content-type", "application/json")][..], body.to_string()),
            None => (&[][..], String::new()),
        };
        self.send(&Call { signing_name, operation, method, url, headers }, &body).await
    }

    /// Sends the request, signed anew each time, up to three times where the SDK's standard retry
    /// would try again (no answer, 429, 5xx, a throttling code), 100 then 200 ms apart.
    async fn send(&self, call: &Call<'_>, body: &str) -> Result<Value, ApiError> {
        let mut attempt = 1;
        loop {
            match self.send_once(call, body).await {
                Err(e) if e.retryable() && attempt < 3 => {
                    tokio::time::sleep(std::time::Duration::from_millis(100 << (attempt - 1))).await;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }

    async fn send_once(&self, call: &Call<'_>, body: &str) -> Result<Value, ApiError> {
        let Call { signing_name, operation, method, url, headers } = call;
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        all.push(("host", &host));
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(signing_name)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| failure(operation, "Signing", e))?
            .into();
        let signable = SignableRequest::new(
            method.as_str(),
            url.as_str(),
            all.iter().copied(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|e| failure(operation, "Signing", e))?;
        let (instructions, _) = sign(signable, &params).map_err(|e| failure(operation, "Signing", e))?.into_parts();
        let mut request = self.http.request(method.clone(), url.clone());
        for (name, value) in headers.iter().copied().chain(instructions.headers()) {
            request = request.header(name, value);
        }
        let response = request.body(body.to_string()).send().await.map_err(|e| failure(operation, "Transport", e))?;
        let status = response.status();
        // REST-JSON: the x-amzn-ErrorType header ("Code" or "Code:http://..."), read first as the
        // SDK does; awsJson: `__type` in the body ("Code" or "namespace#Code", maybe with ":...").
        let error_type = response.headers().get("x-amzn-errortype").and_then(|v| v.to_str().ok()).map(str::to_string);
        let text = response.text().await.map_err(|e| failure(operation, "Transport", e))?;
        let answer: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|e| ApiError {
                operation: operation.to_string(),
                status: Some(status.as_u16()),
                code: "NotJson".into(),
                message: format!("{e}: {}", text.chars().take(500).collect::<String>()),
            })?
        };
        if status.is_success() {
            return Ok(answer);
        }
        let code = error_type
            .as_deref()
            .or(answer["__type"].as_str())
            .map(|t| t.rsplit('#').next().unwrap_or(t).split(':').next().unwrap_or(t).to_string())
            .unwrap_or_else(|| "Unknown".into());
        let message = answer["message"].as_str().or(answer["Message"].as_str()).unwrap_or(&text).to_string();
        Err(ApiError { operation: operation.to_string(), status: Some(status.as_u16()), code, message })
    }
}

/// One request: whom it is signed for, the operation (for errors), and what is sent but the body.
struct Call<'a> {
    signing_name: &'a str,
    operation: &'a str,
    method: Method,
    url: Url,
    headers: &'a [(&'a str, &'a str)],
}

fn failure(operation: &str, code: &str, e: impl fmt::Display) -> ApiError {
    ApiError { operation: operation.to_string(), status: None, code: code.to_string(), message: e.to_string() }
}
