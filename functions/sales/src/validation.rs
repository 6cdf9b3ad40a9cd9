//! What a `POST /orders` body must look like, checked before anything is stored: every invalid field
//! is named, so a client fixes its request in one go.
//!
//! The request says *what* to buy (SKUs and quantities), the name to ship to and *where* it goes. It
//! never says what anything costs: prices and shipping come from the shop ([`crate::catalogue`]), and
//! a body that carries `unitPriceMinor` or `shippingMinor` is refused rather than silently ignored.
//! Nor does it say who buys: the customer, their email and their phone come from the caller's
//! verified sign-in ([`orderflow_harness::caller`]), and a body that names them is refused, so no
//! request can make the shop text or email anyone but the caller.

use orderflow_contracts::{Address, Currency};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// The bounds every event holds orders to (most lines, most units of one line).
pub use orderflow_contracts::{MAX_LINES, MAX_QUANTITY};

/// Longest accepted text field, in bytes.
pub const MAX_TEXT: usize = 200;

/// Longest accepted `POST /orders` body, in bytes (16 KiB: an order of [`MAX_LINES`] lines with every
/// text field at [`MAX_TEXT`] is about 6 KiB). Longer is a 413.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Longest accepted email address, in bytes (RFC 5321's path limit less the angle brackets).
pub const MAX_EMAIL: usize = 254;

/// The fields a `POST /orders` body may have, by object: anything else is refused, named, rather
/// than silently ignored. (`unitPriceMinor` and `shippingMinor` have their own message.)
const TOP_FIELDS: &[&str] = &["customer", "lines", "currency", "shippingAddress", "shippingMinor"];
const CUSTOMER_FIELDS: &[&str] = &["name", "customerId", "email", "phone"];
/// Customer fields that come from the caller's sign-in, never from the body.
const FROM_SIGN_IN: &[&str] = &["customerId", "email", "phone"];
const LINE_FIELDS: &[&str] = &["sku", "quantity", "unitPriceMinor"];
const ADDRESS_FIELDS: &[&str] = &["line1", "line2", "city", "postalCode", "country"];

/// Characters no text field may hold: control characters (line breaks included: a name is not a
/// header block) and the Unicode bidirectional overrides and isolates, which make text display in
/// another order than it is stored (a "Trojan Source" name or address on a label or in an email).
pub fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A single plain address `local@domain.tld`: a dot-atom local part (RFC 5322's atext and dots), a
/// domain of at least two letter-digit-hyphen labels ending in an alphabetic top-level label. No
/// display name, no comments, no quoted local part, no domain literal (`x@[10.0.0.1]`), no line
/// break, no second address: what goes to SES as a recipient is exactly one mailbox.
pub fn is_plain_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else { return false };
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c);
    let local_ok =
        (1..=64).contains(&local.len()) && local.split('.').all(|part| !part.is_empty() && part.chars().all(atext));
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        (1..=63).contains(&l.len())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let tld_ok = labels.last().is_some_and(|t| t.len() >= 2 && t.chars().all(|c| c.is_ascii_alphabetic()));
    email.len() <= MAX_EMAIL && local_ok && labels.len() >= 2 && labels.iter().all(label_ok) && tld_ok
}

/// Whether `id` has the shape of an order id (a UUID in its hyphenated lower-case form, what Sales
/// issues): anything else is no order, answered without asking the store.
pub fn is_order_id(id: &str) -> bool {
    id.len() == 36 && Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == id)
}

/// Namespace of the ids derived from an order id (the event ids of its announcements, UUID v5).
/// Order ids themselves are random (v4): nothing about a caller or a key derives one.
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
    /// The name to ship to, if the body gives one (else the sign-in's name is used).
    pub customer_name: Option<String>,
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
                } else if s.chars().any(is_forbidden_char) {
                    self.errors
                        .push(field_error(field, "must not contain control characters or bidirectional overrides"));
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

    /// Names every field of the object at `at` (a path such as `customer` or `lines[0]`) that is not
    /// one of `known`.
    fn unknown(&mut self, object: Option<&Value>, at: &str, known: &[&str]) {
        let Some(Value::Object(map)) = object else { return };
        for key in map.keys().filter(|k| !known.contains(&k.as_str())) {
            let field = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
            self.errors.push(field_error(field, "is not a field of an order: remove it"));
        }
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
    f.unknown(Some(body), "", TOP_FIELDS);
    f.unknown(f.at(&["customer"]), "customer", CUSTOMER_FIELDS);
    f.unknown(f.at(&["shippingAddress"]), "shippingAddress", ADDRESS_FIELDS);

    let name = f.text(f.at(&["customer", "name"]), "customer.name", false);
    for field in FROM_SIGN_IN {
        if f.at(&["customer", field]).is_some() {
            f.errors
                .push(field_error(format!("customer.{field}"), "comes from your sign-in, not the request: omit it"));
        }
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
                f.unknown(Some(item), &format!("lines[{i}]"), LINE_FIELDS);
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
            customer_name: Some(name).filter(|n| !n.is_empty()),
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
