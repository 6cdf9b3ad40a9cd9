//! The stack's HTTP API: placing and reading orders, the webhooks API.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use orderflow_contracts::OrderState;
use serde_json::{json, Value};

use crate::fixtures::FINAL;
use crate::stack::Local;
use crate::wait::eventually;

/// What `POST /orders` answered.
#[derive(Debug, Clone)]
pub enum Placed {
    /// 201: a new order, as Sales stored it.
    Created(OrderState),
    /// 200: the order an earlier request with the same idempotency key created.
    Repeated(OrderState),
    /// Anything else: the status, the fields its errors name (in order), and the whole body.
    Refused {
        /// The HTTP status.
        status: u16,
        /// Each error's `field`.
        fields: Vec<String>,
        /// The body.
        body: Value,
    },
}

impl Placed {
    /// The order, when it was taken; a refusal panics, showing what was answered.
    pub fn order(&self) -> &OrderState {
        match self {
            Placed::Created(order) | Placed::Repeated(order) => order,
            Placed::Refused { status, body, .. } => panic!("POST /orders was refused with {status}: {body}"),
        }
    }

    /// The order's id, when it was taken.
    pub fn order_id(&self) -> String {
        self.order().order_id.clone()
    }

    /// The status answered.
    pub fn status(&self) -> u16 {
        match self {
            Placed::Created(_) => 201,
            Placed::Repeated(_) => 200,
            Placed::Refused { status, .. } => *status,
        }
    }
}

impl Local {
    /// `POST /orders`, read as a [`Placed`].
    pub async fn place_order(
        &self,
        body: &Value,
        correlation_id: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Placed> {
        let mut req = self
            .http
            .post(format!("{}/orders", self.output("LocalApiUrl")))
            .header("x-correlation-id", correlation_id)
            .json(body);
        if let Some(key) = idempotency_key {
            req = req.header("idempotency-key", key);
        }
        let (status, text) = send_to_api(req).await?;
        let json: Value =
            serde_json::from_str(&text).with_context(|| format!("POST /orders answered {status}: {text}"))?;
        let order = || serde_json::from_value::<OrderState>(json.clone()).with_context(|| format!("{status}: {text}"));
        Ok(match status {
            201 => Placed::Created(order()?),
            200 => Placed::Repeated(order()?),
            _ => Placed::Refused {
                status,
                fields: json["errors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e["field"].as_str().map(str::to_string))
                    .collect(),
                body: json,
            },
        })
    }

    /// `GET /orders/{id}`.
    pub async fn get_order(&self, order_id: &str) -> Result<Option<OrderState>> {
        let (status, text) =
            send_to_api(self.http.get(format!("{}/orders/{order_id}", self.output("LocalApiUrl")))).await?;
        match status {
            200 => Ok(Some(serde_json::from_str(&text)?)),
            404 => Ok(None),
            other => bail!("GET /orders/{order_id} answered {other}: {text}"),
        }
    }

    /// Polls `GET /orders/{id}` until the order reaches a final status.
    pub async fn wait_final(&self, order_id: &str, timeout: Duration) -> Result<OrderState> {
        eventually(&format!("order {order_id} in a final status"), timeout, || async {
            Ok(self.get_order(order_id).await?.filter(|order| FINAL.contains(&order.status)))
        })
        .await
    }

    /// A request to the webhooks API with the operator key (or `key`), as JSON status and body.
    pub async fn webhooks_api(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.output("LocalApiUrl")));
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let (status, text) = send_to_api(req).await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

/// Sends a request to the stack's HTTP API and returns its status and body. The emulator's own
/// API Gateway answers `404 {"message":"Not Found"}` (it found no API or route: the Lambdas' own 404s
/// always carry `errors`) for a short while after a deployment, seen intermittently on a fresh
/// emulator even after the deployment's smoke check passed; such an answer is retried for up to
/// 10 s. Any other answer, the functions' own 404s included, is returned as it is.
pub async fn send_to_api(req: reqwest::RequestBuilder) -> Result<(u16, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = req.try_clone().ok_or_else(|| anyhow!("a request with a streamed body cannot be retried"))?;
        let resp = attempt.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        if status == 404 && text.trim() == r#"{"message":"Not Found"}"# && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        return Ok((status, text));
    }
}

/// A valid `POST /orders` body for `email` with the given lines (SKU, quantity); prices come from
/// the catalogue.
pub fn order_request(email: &str, lines: &[(&str, u32)]) -> Value {
    json!({
        "customer": {"name": "Ada Lovelace", "email": email, "phone": "+447700900123"},
        "lines": lines.iter().map(|(sku, q)| json!({"sku": sku, "quantity": q})).collect::<Vec<_>>(),
        "currency": "GBP",
        "shippingAddress": {"line1": "12 Analytical Row", "city": "London", "postalCode": "N1 9GU", "country": "GB"}
    })
}
