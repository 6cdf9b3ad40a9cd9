//! The stack's HTTP API: placing and reading orders, the webhooks API.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use orderflow_contracts::{OrderState, OrderStatus};
use serde_json::{json, Value};

use crate::fixtures::FINAL;
use crate::identity::SignedIn;
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
    /// `POST /orders` by the customer the body names: signed in as the user with that email and
    /// phone (made on first use), the body sent without them (they come from the sign-in). Read as
    /// a [`Placed`]; the order is remembered as theirs for [`Local::get_order`].
    pub async fn place_order(
        &self,
        body: &Value,
        correlation_id: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Placed> {
        let mut body = body.clone();
        let customer = body["customer"].as_object_mut().ok_or_else(|| anyhow!("a body without a customer"))?;
        let email = customer.remove("email").and_then(|e| e.as_str().map(str::to_string));
        let phone = customer.remove("phone").and_then(|p| p.as_str().map(str::to_string));
        let email = email.ok_or_else(|| anyhow!("order_request names the customer by email"))?;
        let caller = self.customer(&email, phone.as_deref()).await?;
        let placed = self.place_order_as(&caller, &body, correlation_id, idempotency_key).await?;
        if let Placed::Created(order) | Placed::Repeated(order) = &placed {
            self.owners.lock().expect("lock").insert(order.order_id.clone(), caller);
        }
        Ok(placed)
    }

    /// `POST /orders` as `caller`, with the body as it is.
    pub async fn place_order_as(
        &self,
        caller: &SignedIn,
        body: &Value,
        correlation_id: &str,
        idempotency_key: Option<&str>,
    ) -> Result<Placed> {
        let mut req = self
            .http
            .post(format!("{}/orders", self.output("LocalApiUrl")))
            .header("authorization", caller.bearer())
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

    /// Who placed the order (through [`Local::place_order`] in this process).
    pub fn owner(&self, order_id: &str) -> Result<SignedIn> {
        let owner = self.owners.lock().expect("lock").get(order_id).cloned();
        owner.ok_or_else(|| anyhow!("order {order_id} was not placed by this process"))
    }

    /// `GET /orders/{id}` as the customer who placed it (through [`Local::place_order`]).
    pub async fn get_order(&self, order_id: &str) -> Result<Option<OrderState>> {
        self.get_order_as(&self.owner(order_id)?, order_id).await
    }

    /// `GET /orders/{id}` as `caller`: the order, or `None` for a 404.
    pub async fn get_order_as(&self, caller: &SignedIn, order_id: &str) -> Result<Option<OrderState>> {
        let req = self
            .http
            .get(format!("{}/orders/{order_id}", self.output("LocalApiUrl")))
            .header("authorization", caller.bearer());
        let (status, text) = send_to_api(req).await?;
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

    /// Polls `GET /orders/{id}` until the order is in `status`.
    pub async fn wait_status(&self, order_id: &str, status: OrderStatus, timeout: Duration) -> Result<OrderState> {
        eventually(&format!("order {order_id} {}", status.as_str()), timeout, || async {
            Ok(self.get_order(order_id).await?.filter(|order| order.status == status))
        })
        .await
    }

    /// `POST /orders/{id}/cancel` as the customer who placed it: the status and the JSON answered.
    pub async fn cancel_order(&self, order_id: &str) -> Result<(u16, Value)> {
        let req = self
            .http
            .post(format!("{}/orders/{order_id}/cancel", self.output("LocalApiUrl")))
            .header("authorization", self.owner(order_id)?.bearer());
        let (status, text) = send_to_api(req).await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// `POST /stock` as an operator: `quantity` units of `sku` arrive, a receipt of its own (a new
    /// `Idempotency-Key`). The status and JSON answered.
    pub async fn receive_stock(&self, sku: &str, quantity: u32) -> Result<(u16, Value)> {
        let operator = self.operator().await?;
        let req = self
            .http
            .post(format!("{}/stock", self.output("LocalApiUrl")))
            .header("authorization", operator.bearer())
            .header("idempotency-key", uuid::Uuid::new_v4().to_string())
            .json(&json!({"sku": sku, "quantity": quantity}));
        let (status, text) = send_to_api(req).await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// A webhook subscriber this process runs (answering 204), subscribed by `operator` to every
    /// event type at `<server>/<path>`: the server and the subscription's id.
    pub async fn subscribe_to_every_event(
        &self,
        operator: &SignedIn,
        path: &str,
    ) -> Result<(wiremock::MockServer, String)> {
        let subscriber = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .respond_with(wiremock::ResponseTemplate::new(204))
            .mount(&subscriber)
            .await;
        let every_type = <orderflow_contracts::AnyEvent as orderflow_contracts::Inbound>::DETAIL_TYPES;
        let url = format!("{}/{path}", subscriber.uri());
        let body = json!({"url": url, "eventTypes": every_type});
        let (status, created) =
            self.webhooks_api(reqwest::Method::POST, "/webhooks", Some(operator), Some(body)).await?;
        if status != 201 {
            bail!("POST /webhooks answered {status}: {}", created["errors"]);
        }
        Ok((subscriber, created["id"].as_str().unwrap_or_default().to_string()))
    }

    /// A request to the HTTP API (the webhooks and stock routes) as `caller` (none: no token), as JSON
    /// status and body.
    pub async fn webhooks_api(
        &self,
        method: reqwest::Method,
        path: &str,
        caller: Option<&SignedIn>,
        body: Option<Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.output("LocalApiUrl")));
        if let Some(caller) = caller {
            req = req.header("authorization", caller.bearer());
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

/// A valid `POST /orders` body for the customer `email` with the given lines (SKU, quantity); prices
/// come from the catalogue. The customer's email and phone are for [`Local::place_order`], which
/// signs that customer in and sends the body without them.
pub fn order_request(email: &str, lines: &[(&str, u32)]) -> Value {
    json!({
        "customer": {"name": "Ada Lovelace", "email": email, "phone": "+447700900123"},
        "lines": lines.iter().map(|(sku, q)| json!({"sku": sku, "quantity": q})).collect::<Vec<_>>(),
        "currency": "GBP",
        "shippingAddress": {"line1": "12 Analytical Row", "city": "London", "postalCode": "N1 9GU", "country": "GB"}
    })
}
