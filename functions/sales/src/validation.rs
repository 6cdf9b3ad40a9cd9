//! What a `POST /orders` body must look like, checked before anything is stored: every invalid field
//! is named, so a client fixes its request in one go.
//!
//! The request says *what* to buy (SKUs and quantities), *who* buys and *where* it goes. It never
//! says what anything costs: prices and shipping come from the shop ([`crate::catalogue`]), and a body
//! that carries `unitPriceMinor` or `shippingMinor` is refused rather than silently ignored.

use orderflow_contracts::{is_e164, Address, Currency, Customer};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// The bounds every event holds orders to (most lines, most units of one line).
pub use orderflow_contracts::{MAX_LINES, MAX_QUANTITY};

/// Longest accepted text field, in bytes.
pub const MAX_TEXT: usize = 200;

/// Namespace of ids derived from emails, client idempotency keys and order ids (UUID v5).
pub const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_7266_6c6f_7700_0000_0000_0001);

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Path of the field in the request, e.g. `lines[1].quantity`, or a header name.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// A [`FieldError`].
pub fn field_error(field: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError { field: field.into(), message: message.into() }
}

/// A SKU: 2 to 32 characters, upper-case ASCII letters, digits and `-`, starting with a letter or
/// digit (e.g. `BOOK-001`). The catalogue's keys follow the same pattern.
pub fn is_sku(sku: &str) -> bool {
    (2..=32).contains(&sku.len())
        && sku.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-')
        && !sku.starts_with('-')
}

/// One line as the client asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedLine {
    /// What.
    pub sku: String,
    /// How many, 1 to [`MAX_QUANTITY`].
    pub quantity: u32,
}

/// A validated order request, not yet priced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    /// The buyer.
    pub customer: Customer,
    /// The lines.
    pub lines: Vec<RequestedLine>,
    /// The currency the client expects to pay in (each SKU must be sold in it).
    pub currency: Currency,
    /// Where to ship.
    pub shipping_address: Address,
}

struct Fields<'a> {
    errors: Vec<FieldError>,
    root: &'a Value,
}

impl<'a> Fields<'a> {
    fn at(&self, path: &[&str]) -> Option<&'a Value> {
        path.iter().try_fold(self.root, |v, k| v.get(k)).filter(|v| !v.is_null())
    }

    fn text(&mut self, v: Option<&Value>, field: &str, required: bool) -> String {
        match v {
            Some(Value::String(s)) if !s.trim().is_empty() => {
                if s.len() > MAX_TEXT {
                    self.errors.push(field_error(field, format!("must be at most {MAX_TEXT} characters")));
                }
                s.trim().to_string()
            }
            Some(Value::String(_)) if required => {
                self.errors.push(field_error(field, "must not be empty"));
                String::new()
            }
            None if required => {
                self.errors.push(field_error(field, "is required"));
                String::new()
            }
            Some(Value::String(_)) | None => String::new(),
            Some(_) => {
                self.errors.push(field_error(field, "must be a string"));
                String::new()
            }
        }
    }

    fn quantity(&mut self, v: Option<&Value>, field: &str) -> u32 {
        match v.map(Value::as_u64) {
            None => self.errors.push(field_error(field, "is required")),
            Some(Some(q)) if (1..=u64::from(MAX_QUANTITY)).contains(&q) => return q as u32,
            Some(Some(0)) => self.errors.push(field_error(field, "must be a positive integer")),
            Some(Some(_)) => self.errors.push(field_error(field, format!("must be at most {MAX_QUANTITY}"))),
            Some(None) if v.and_then(Value::as_i64).is_some() => {
                self.errors.push(field_error(field, "must be a positive integer"))
            }
            Some(None) => self.errors.push(field_error(field, "must be an integer")),
        }
        0
    }

    fn set_by_the_shop(&mut self, v: Option<&Value>, field: &str) {
        if v.is_some() {
            self.errors.push(field_error(field, "is set by the shop, not the client: omit it"));
        }
    }
}

/// Validates a `POST /orders` body, naming every invalid field.
pub fn validate(body: &Value) -> Result<OrderRequest, Vec<FieldError>> {
    if !body.is_object() {
        return Err(vec![field_error("body", "must be a JSON object")]);
    }
    let mut f = Fields { errors: Vec::new(), root: body };

    let name = f.text(f.at(&["customer", "name"]), "customer.name", true);
    let email = f.text(f.at(&["customer", "email"]), "customer.email", true);
    if !email.is_empty() && !email_address::EmailAddress::is_valid(&email) {
        f.errors.push(field_error("customer.email", "is not a valid email address"));
    }
    let phone = f.text(f.at(&["customer", "phone"]), "customer.phone", true);
    if !phone.is_empty() && !is_e164(&phone) {
        f.errors.push(field_error("customer.phone", "must be in E.164 format, e.g. +447700900123"));
    }
    let mut customer_id = f.text(f.at(&["customer", "customerId"]), "customer.customerId", false);
    if customer_id.is_empty() {
        customer_id = format!("guest-{}", Uuid::new_v5(&ID_NAMESPACE, email.to_lowercase().as_bytes()).simple());
    }

    let mut lines = Vec::new();
    match f.at(&["lines"]) {
        None => f.errors.push(field_error("lines", "is required")),
        Some(Value::Array(items)) if items.is_empty() => {
            f.errors.push(field_error("lines", "must contain at least one line"))
        }
        Some(Value::Array(items)) if items.len() > MAX_LINES => {
            f.errors.push(field_error("lines", format!("must contain at most {MAX_LINES} lines")))
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                if !item.is_object() {
                    f.errors.push(field_error(format!("lines[{i}]"), "must be an object"));
                    continue;
                }
                let sku = f.text(item.get("sku"), &format!("lines[{i}].sku"), true);
                if !sku.is_empty() && !is_sku(&sku) {
                    f.errors.push(field_error(
                        format!("lines[{i}].sku"),
                        "must be 2-32 upper-case letters, digits or '-', e.g. BOOK-001",
                    ));
                }
                let quantity = f.quantity(item.get("quantity"), &format!("lines[{i}].quantity"));
                f.set_by_the_shop(item.get("unitPriceMinor"), &format!("lines[{i}].unitPriceMinor"));
                lines.push(RequestedLine { sku, quantity });
            }
        }
        Some(_) => f.errors.push(field_error("lines", "must be an array")),
    }

    let code = f.text(f.at(&["currency"]), "currency", true);
    let currency = Currency::parse(&code);
    if currency.is_none() && !code.is_empty() {
        f.errors.push(field_error("currency", format!("unknown currency `{code}` (accepted: EUR, USD, GBP, CHF)")));
    }

    let line1 = f.text(f.at(&["shippingAddress", "line1"]), "shippingAddress.line1", true);
    let line2 = f.text(f.at(&["shippingAddress", "line2"]), "shippingAddress.line2", false);
    let city = f.text(f.at(&["shippingAddress", "city"]), "shippingAddress.city", true);
    let postal_code = f.text(f.at(&["shippingAddress", "postalCode"]), "shippingAddress.postalCode", true);
    let country = f.text(f.at(&["shippingAddress", "country"]), "shippingAddress.country", true);
    let alpha2 = country.len() == 2 && country.chars().all(|c| c.is_ascii_uppercase());
    if !country.is_empty() && !alpha2 {
        f.errors.push(field_error("shippingAddress.country", "must be an ISO 3166-1 alpha-2 code, e.g. GB"));
    }
    f.set_by_the_shop(f.at(&["shippingMinor"]), "shippingMinor");

    match (f.errors.is_empty(), currency) {
        (true, Some(currency)) => Ok(OrderRequest {
            customer: Customer { customer_id, name, email, phone },
            lines,
            currency,
            shipping_address: Address {
                line1,
                line2: Some(line2).filter(|l| !l.is_empty()),
                city,
                postal_code,
                country,
            },
        }),
        _ => Err(f.errors),
    }
}
