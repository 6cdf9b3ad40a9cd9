//! The events of the order flow and the data they carry.
//!
//! Events carry the changed data, not just ids (state transfer): a consumer can keep its own copy of
//! what it needs without calling back the producer. Money is always an integer number of minor units
//! (cents) beside an ISO 4217 currency, never a float.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::{ContractError, Event};

/// EventBridge `source` of the Sales service.
pub const SALES: &str = "orderflow.sales";
/// EventBridge `source` of the Billing service.
pub const BILLING: &str = "orderflow.billing";
/// EventBridge `source` of the Warehouse service.
pub const WAREHOUSE: &str = "orderflow.warehouse";

/// The currencies Orderflow sells in (ISO 4217). All have two minor digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Currency {
    /// Euro.
    EUR,
    /// US dollar.
    USD,
    /// Pound sterling.
    GBP,
    /// Swiss franc.
    CHF,
}

impl Currency {
    /// Parses an ISO 4217 code this shop sells in.
    pub fn parse(code: &str) -> Option<Self> {
        serde_json::from_value(Value::String(code.to_string())).ok()
    }
}

/// The first 8 characters of an order id, for subjects and texts; never cuts a character in two.
pub fn short_order_id(order_id: &str) -> &str {
    order_id.char_indices().nth(8).map_or(order_id, |(i, _)| &order_id[..i])
}

/// An amount for people to read, e.g. `57.43 GBP` (every currency here has two minor digits).
pub fn display_amount(minor: i64, currency: Currency) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    format!("{sign}{}.{:02} {currency:?}", abs / 100, abs % 100)
}

/// E.164: a plus, then 8 to 15 digits, not starting with 0 (what SMS providers accept).
pub fn is_e164(phone: &str) -> bool {
    let digits = phone.strip_prefix('+').unwrap_or("");
    (8..=15).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0')
}

/// The buyer, as needed by email, SMS and shipping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    /// Stable customer id.
    pub customer_id: String,
    /// Full name.
    pub name: String,
    /// Email address (validated by Sales).
    pub email: String,
    /// Phone number in E.164 (validated by Sales), for SMS.
    pub phone: String,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderLine {
    /// Stock keeping unit.
    pub sku: String,
    /// 1 to [`MAX_QUANTITY`].
    pub quantity: u32,
    /// Price of one unit, in minor units.
    pub unit_price_minor: i64,
}

/// The largest amount, in minor units, that any price, line, shipping charge or total may reach:
/// 10^12 (ten billion in major units). Far above any real order and far below `i64::MAX`, so that
/// no sum or product of accepted amounts can wrap; every computation is checked all the same.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;

/// Most lines one order may have (Warehouse allocates stock in one DynamoDB transaction, which
/// takes at most 100 items).
pub const MAX_LINES: usize = 50;

/// Most units of one line.
pub const MAX_QUANTITY: u32 = 10_000;

/// Highest version an order may reach: 1 when placed, one more per status change. Far beyond any
/// real order's history, and far below 2^53, so Redis's Lua numbers and PostgreSQL's `bigint` hold
/// it exactly; an event past it is refused (permanently), so it can never pin a read model's copy.
pub const MAX_ORDER_VERSION: u64 = 1_000;

fn invalid(event: &'static str, field: impl Into<String>, reason: impl Into<String>) -> ContractError {
    ContractError::Invalid { event, field: field.into(), reason: reason.into() }
}

/// Lines within bounds: at least one, at most [`MAX_LINES`], each quantity 1 to [`MAX_QUANTITY`].
fn check_lines(event: &'static str, prefix: &str, lines: &[OrderLine]) -> Result<(), ContractError> {
    if lines.is_empty() {
        return Err(invalid(event, format!("{prefix}lines"), "an order needs at least one line"));
    }
    if lines.len() > MAX_LINES {
        return Err(invalid(event, format!("{prefix}lines"), format!("must have at most {MAX_LINES} lines")));
    }
    for (i, line) in lines.iter().enumerate() {
        if line.quantity == 0 {
            return Err(invalid(event, format!("{prefix}lines[{i}].quantity"), "must be at least 1"));
        }
        if line.quantity > MAX_QUANTITY {
            return Err(invalid(
                event,
                format!("{prefix}lines[{i}].quantity"),
                format!("must be at most {MAX_QUANTITY}"),
            ));
        }
    }
    Ok(())
}

/// Totals that are what the lines, shipping and tax add up to, every amount checked.
fn check_totals(event: &'static str, prefix: &str, lines: &[OrderLine], totals: &Totals) -> Result<(), ContractError> {
    let expected = Totals::for_lines(lines, totals.shipping_minor, totals.tax_minor)
        .map_err(|e| invalid(event, format!("{prefix}{}", e.field), e.reason))?;
    if totals.subtotal_minor != expected.subtotal_minor {
        return Err(invalid(
            event,
            format!("{prefix}totals.subtotalMinor"),
            "is not the sum of quantity × unit price over the lines",
        ));
    }
    if totals.total_minor != expected.total_minor {
        return Err(invalid(event, format!("{prefix}totals.totalMinor"), "is not subtotal + shipping + tax"));
    }
    Ok(())
}

/// A charge: more than zero, at most [`MAX_AMOUNT_MINOR`].
fn check_charge(event: &'static str, amount: i64) -> Result<(), ContractError> {
    let amount = checked_amount("amountMinor", Some(amount)).map_err(|e| invalid(event, e.field, e.reason))?;
    if amount == 0 {
        return Err(invalid(event, "amountMinor", "must be more than zero"));
    }
    Ok(())
}

fn check_order_id(event: &'static str, field: &str, order_id: &str) -> Result<(), ContractError> {
    if order_id.trim().is_empty() {
        return Err(invalid(event, field, "must not be empty"));
    }
    Ok(())
}

/// An amount that is negative, too large, or whose computation would overflow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}` {reason}")]
pub struct AmountError {
    /// The field it concerns, e.g. `lines[2]` or `totals.totalMinor`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// `value` as an accepted amount of `field`: computed without overflow, not negative, at most
/// [`MAX_AMOUNT_MINOR`].
pub fn checked_amount(field: impl Into<String>, value: Option<i64>) -> Result<i64, AmountError> {
    let reason = match value {
        None => "overflows".to_string(),
        Some(v) if v < 0 => "must not be negative".to_string(),
        Some(v) if v > MAX_AMOUNT_MINOR => format!("exceeds the maximum amount of {MAX_AMOUNT_MINOR} minor units"),
        Some(v) => return Ok(v),
    };
    Err(AmountError { field: field.into(), reason })
}

/// Totals of an order, all in minor units of the order's currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Sum of `quantity * unit_price_minor` over the lines.
    pub subtotal_minor: i64,
    /// Shipping cost.
    pub shipping_minor: i64,
    /// Tax.
    pub tax_minor: i64,
    /// `subtotal + shipping + tax`: what is charged.
    pub total_minor: i64,
}

impl Totals {
    /// Totals for `lines` with the given shipping and tax, every product and sum checked: an amount
    /// out of range names its field (`lines[i].unitPriceMinor`, `lines[i]` for the line's total,
    /// `totals.subtotalMinor`, `totals.shippingMinor`, `totals.taxMinor`, `totals.totalMinor`).
    pub fn for_lines(lines: &[OrderLine], shipping_minor: i64, tax_minor: i64) -> Result<Self, AmountError> {
        let mut subtotal_minor: i64 = 0;
        for (i, line) in lines.iter().enumerate() {
            let price = checked_amount(format!("lines[{i}].unitPriceMinor"), Some(line.unit_price_minor))?;
            let line_total = checked_amount(format!("lines[{i}]"), i64::from(line.quantity).checked_mul(price))?;
            subtotal_minor = checked_amount("totals.subtotalMinor", subtotal_minor.checked_add(line_total))?;
        }
        let shipping_minor = checked_amount("totals.shippingMinor", Some(shipping_minor))?;
        let tax_minor = checked_amount("totals.taxMinor", Some(tax_minor))?;
        let total_minor = checked_amount(
            "totals.totalMinor",
            subtotal_minor.checked_add(shipping_minor).and_then(|s| s.checked_add(tax_minor)),
        )?;
        Ok(Self { subtotal_minor, shipping_minor, tax_minor, total_minor })
    }
}

/// Where the parcel goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// Street and number.
    pub line1: String,
    /// Flat, floor, care-of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<String>,
    /// City.
    pub city: String,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
}

/// Where an order stands. The legal moves are [`OrderStatus::TRANSITIONS`]; `ReadyToShip`,
/// `PaymentFailed` and `Cancelled` are final.
///
/// Adding a status is a new schema version of [`OrderStatusChanged`] (a reader of the old version
/// would not know it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum OrderStatus {
    /// Accepted by Sales; billing and warehouse are at work.
    Placed,
    /// Billed, stock allocated, label printed.
    ReadyToShip,
    /// The payment was declined.
    PaymentFailed,
    /// Billed, but stock was short: waits for a restock, or for its deadline.
    Backordered,
    /// The customer (or the backorder deadline) cancelled it: Billing refunds, Warehouse releases.
    Cancelling,
    /// Cancelled, and what was charged is refunded.
    Cancelled,
}

impl OrderStatus {
    /// Every status, in the order of the lifecycle.
    pub const ALL: [OrderStatus; 6] = [
        OrderStatus::Placed,
        OrderStatus::Backordered,
        OrderStatus::Cancelling,
        OrderStatus::ReadyToShip,
        OrderStatus::PaymentFailed,
        OrderStatus::Cancelled,
    ];

    /// Every legal move, with what makes it: the README's state diagram is drawn from this table.
    pub const TRANSITIONS: &'static [(OrderStatus, OrderStatus, &'static str)] = &[
        (OrderStatus::Placed, OrderStatus::ReadyToShip, "ShippingLabelCreated"),
        (OrderStatus::Placed, OrderStatus::PaymentFailed, "PaymentDeclined"),
        (OrderStatus::Placed, OrderStatus::Backordered, "StockAllocationFailed"),
        (OrderStatus::Placed, OrderStatus::Cancelling, "POST /orders/{id}/cancel"),
        (OrderStatus::Backordered, OrderStatus::ReadyToShip, "StockReceived, then ShippingLabelCreated"),
        (OrderStatus::Backordered, OrderStatus::Cancelling, "POST /orders/{id}/cancel, or the backorder deadline"),
        (OrderStatus::Cancelling, OrderStatus::Cancelled, "PaymentRefunded"),
    ];

    /// Whether the workflow may move an order from `self` to `next`.
    pub fn can_move_to(self, next: OrderStatus) -> bool {
        Self::TRANSITIONS.iter().any(|(from, to, _)| (*from, *to) == (self, next))
    }

    /// Whether the order's workflow has ended (no move leads out of it).
    pub fn is_final(self) -> bool {
        !Self::TRANSITIONS.iter().any(|(from, _, _)| *from == self)
    }

    /// Whether the customer may still cancel.
    pub fn can_cancel(self) -> bool {
        self.can_move_to(OrderStatus::Cancelling)
    }

    /// The name stored and shown, e.g. `ReadyToShip`.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "Placed",
            OrderStatus::ReadyToShip => "ReadyToShip",
            OrderStatus::PaymentFailed => "PaymentFailed",
            OrderStatus::Backordered => "Backordered",
            OrderStatus::Cancelling => "Cancelling",
            OrderStatus::Cancelled => "Cancelled",
        }
    }

    /// Parses [`OrderStatus::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Self> {
        serde_json::from_value(Value::String(s.to_string())).ok()
    }

    /// The README's state diagram (Mermaid), drawn from [`OrderStatus::TRANSITIONS`]; a test holds
    /// the README to it.
    pub fn mermaid() -> String {
        let mut out = String::from("stateDiagram-v2\n    [*] --> Placed: POST /orders\n");
        for (from, to, why) in Self::TRANSITIONS {
            out.push_str(&format!("    {} --> {}: {}\n", from.as_str(), to.as_str(), why.replace(':', " ")));
        }
        for status in Self::ALL.iter().filter(|s| s.is_final()) {
            out.push_str(&format!("    {} --> [*]\n", status.as_str()));
        }
        out
    }
}

/// Sales accepted an order. Starts the workflow. Version 2 nests the customer (with a phone for SMS)
/// and splits the totals; version 1 payloads are upcast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderPlaced {
    /// The order.
    pub order_id: String,
    /// The buyer.
    pub customer: Customer,
    /// At least one line.
    pub lines: Vec<OrderLine>,
    /// Currency of every amount.
    pub currency: Currency,
    /// Amounts.
    pub totals: Totals,
    /// Destination.
    pub shipping_address: Address,
    /// When Sales accepted it.
    pub placed_at: DateTime<Utc>,
}

impl Event for OrderPlaced {
    const NAME: &'static str = "OrderPlaced";
    const SOURCE: &'static str = SALES;
    const SCHEMA_VERSION: u32 = 2;
    const MIN_SCHEMA_VERSION: u32 = 1;

    /// v1 had a flat `customerName`/`customerEmail`/`customerId`, no phone, and a single `totalMinor`
    /// (lines plus shipping).
    fn upcast_step(from: u32, mut data: Value) -> Result<Value, ContractError> {
        match from {
            1 => {
                let obj = data.as_object_mut().ok_or_else(|| ContractError::Malformed {
                    event: Self::NAME.to_string(),
                    reason: "v1 data is not an object".into(),
                })?;
                let mut take = |k: &str| obj.remove(k).unwrap_or(Value::Null);
                let customer = json!({
                    "customerId": take("customerId"),
                    "name": take("customerName"),
                    "email": take("customerEmail"),
                    "phone": take("customerPhone").as_str().map(str::to_string).unwrap_or_default(),
                });
                // v1's one total included shipping and no tax: the lines make the subtotal, the rest
                // was shipping. Unreadable figures are left for `validate` to refuse.
                let total = take("totalMinor");
                let subtotal: Option<i64> = obj.get("lines").and_then(Value::as_array).and_then(|lines| {
                    lines.iter().try_fold(0i64, |sum, l| {
                        let line = l["quantity"].as_i64()?.checked_mul(l["unitPriceMinor"].as_i64()?)?;
                        sum.checked_add(line)
                    })
                });
                let (subtotal, shipping) = match (subtotal, total.as_i64()) {
                    (Some(s), Some(t)) => (json!(s), json!(t.checked_sub(s).unwrap_or(-1))),
                    _ => (total.clone(), json!(0)),
                };
                obj.insert("customer".into(), customer);
                obj.insert(
                    "totals".into(),
                    json!({"subtotalMinor": subtotal, "shippingMinor": shipping, "taxMinor": 0, "totalMinor": total}),
                );
                Ok(data)
            }
            _ => Err(ContractError::UnsupportedSchemaVersion {
                event: Self::NAME,
                found: from,
                supported: (Self::MIN_SCHEMA_VERSION, Self::SCHEMA_VERSION),
            }),
        }
    }

    fn validate(&self) -> Result<(), ContractError> {
        check_order_id(Self::NAME, "orderId", &self.order_id)?;
        check_lines(Self::NAME, "", &self.lines)?;
        // Recompute every amount, checked, and hold the producer's figures to it.
        check_totals(Self::NAME, "", &self.lines, &self.totals)
    }
}

/// Billing charged the order. Carries what Warehouse needs to allocate and ship.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderBilled {
    /// The order.
    pub order_id: String,
    /// The invoice created for it.
    pub invoice_id: String,
    /// Amount charged, minor units.
    pub amount_minor: i64,
    /// Currency charged.
    pub currency: Currency,
    /// The payment provider's reference.
    pub payment_reference: String,
    /// The order's lines, for stock allocation.
    pub lines: Vec<OrderLine>,
    /// Recipient name, for the label.
    pub customer_name: String,
    /// Destination, for the label.
    pub shipping_address: Address,
    /// When the charge succeeded.
    pub billed_at: DateTime<Utc>,
}

impl Event for OrderBilled {
    const NAME: &'static str = "OrderBilled";
    const SOURCE: &'static str = BILLING;
    const SCHEMA_VERSION: u32 = 1;

    fn validate(&self) -> Result<(), ContractError> {
        check_order_id(Self::NAME, "orderId", &self.order_id)?;
        check_lines(Self::NAME, "", &self.lines)?;
        check_charge(Self::NAME, self.amount_minor)?;
        // What was charged covers the lines (shipping and tax come on top).
        let lines = Totals::for_lines(&self.lines, 0, 0).map_err(|e| invalid(Self::NAME, e.field, e.reason))?;
        if self.amount_minor < lines.subtotal_minor {
            return Err(invalid(Self::NAME, "amountMinor", "is less than the lines' sum"));
        }
        Ok(())
    }
}

/// The payment provider declined the charge. The order ends here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentDeclined {
    /// The order.
    pub order_id: String,
    /// The invoice that stays unpaid.
    pub invoice_id: String,
    /// Amount that was asked for.
    pub amount_minor: i64,
    /// Its currency.
    pub currency: Currency,
    /// The provider's reason, for the customer and support.
    pub reason: String,
    /// When it was declined.
    pub declined_at: DateTime<Utc>,
}

impl Event for PaymentDeclined {
    const NAME: &'static str = "PaymentDeclined";
    const SOURCE: &'static str = BILLING;
    const SCHEMA_VERSION: u32 = 1;

    fn validate(&self) -> Result<(), ContractError> {
        check_order_id(Self::NAME, "orderId", &self.order_id)?;
        check_charge(Self::NAME, self.amount_minor)
    }
}

/// Warehouse allocated the stock and created the shipping label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ShippingLabelCreated {
    /// The order.
    pub order_id: String,
    /// The shipment.
    pub shipment_id: String,
    /// Carrier name.
    pub carrier: String,
    /// Carrier tracking number.
    pub tracking_number: String,
    /// S3 bucket holding the label document.
    pub label_bucket: String,
    /// S3 key of the label document.
    pub label_key: String,
    /// When the label was created.
    pub created_at: DateTime<Utc>,
}

impl Event for ShippingLabelCreated {
    const NAME: &'static str = "ShippingLabelCreated";
    const SOURCE: &'static str = WAREHOUSE;
    const SCHEMA_VERSION: u32 = 1;

    fn validate(&self) -> Result<(), ContractError> {
        check_order_id(Self::NAME, "orderId", &self.order_id)
    }
}

/// A line the warehouse could not fill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Shortage {
    /// The SKU.
    pub sku: String,
    /// Quantity the order asked for.
    pub requested: u32,
    /// Quantity on hand at the time.
    pub available: u32,
}

/// Warehouse could not allocate every line; nothing was allocated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockAllocationFailed {
    /// The order.
    pub order_id: String,
    /// The lines that were short (at least one).
    pub shortages: Vec<Shortage>,
    /// When allocation failed.
    pub failed_at: DateTime<Utc>,
}

impl Event for StockAllocationFailed {
    const NAME: &'static str = "StockAllocationFailed";
    const SOURCE: &'static str = WAREHOUSE;
    const SCHEMA_VERSION: u32 = 1;

    fn validate(&self) -> Result<(), ContractError> {
        check_order_id(Self::NAME, "orderId", &self.order_id)?;
        if self.shortages.is_empty() || self.shortages.len() > MAX_LINES {
            return Err(invalid(Self::NAME, "shortages", format!("must have 1 to {MAX_LINES} entries")));
        }
        // Lines of one SKU are summed, so one SKU may be asked for up to MAX_LINES × MAX_QUANTITY.
        let most = MAX_QUANTITY.saturating_mul(MAX_LINES as u32);
        for (i, shortage) in self.shortages.iter().enumerate() {
            if !(1..=most).contains(&shortage.requested) {
                return Err(invalid(Self::NAME, format!("shortages[{i}].requested"), format!("must be 1 to {most}")));
            }
            if shortage.available >= shortage.requested {
                return Err(invalid(Self::NAME, format!("shortages[{i}].available"), "is not less than requested"));
            }
        }
        Ok(())
    }
}

/// One entry of an order's status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusEntry {
    /// The status entered.
    pub status: OrderStatus,
    /// When.
    pub at: DateTime<Utc>,
    /// Why (e.g. the decline reason), where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The full current state of an order, as Sales keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderState {
    /// The order.
    pub order_id: String,
    /// Where it stands.
    pub status: OrderStatus,
    /// Grows by one on every change (1 to [`MAX_ORDER_VERSION`]): consumers keep a copy only if it is
    /// newer than theirs.
    pub version: u64,
    /// The buyer.
    pub customer: Customer,
    /// Lines.
    pub lines: Vec<OrderLine>,
    /// Currency.
    pub currency: Currency,
    /// Amounts.
    pub totals: Totals,
    /// Destination.
    pub shipping_address: Address,
    /// Tracking number once a label exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_number: Option<String>,
    /// Every status the order went through, oldest first.
    pub history: Vec<StatusEntry>,
    /// What was given back once it is `Cancelled`, minor units (0 when nothing had been charged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded_minor: Option<i64>,
}

/// Sales changed an order's status. Carries the whole order (state transfer), so caches, reporting
/// stores and the data lake keep their copies without calling Sales.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderStatusChanged {
    /// The status before.
    pub previous_status: OrderStatus,
    /// The order as it is now.
    pub order: OrderState,
}

impl Event for OrderStatusChanged {
    const NAME: &'static str = "OrderStatusChanged";
    const SOURCE: &'static str = SALES;
    /// Version 2 adds the statuses `Cancelling` and `Cancelled` and `order.refundedMinor`.
    const SCHEMA_VERSION: u32 = 2;
    const MIN_SCHEMA_VERSION: u32 = 1;

    /// Every version 1 payload is a version 2 payload: nothing to change.
    fn upcast_step(from: u32, data: Value) -> Result<Value, ContractError> {
        match from {
            1 => Ok(data),
            _ => Err(ContractError::UnsupportedSchemaVersion {
                event: Self::NAME,
                found: from,
                supported: (Self::MIN_SCHEMA_VERSION, Self::SCHEMA_VERSION),
            }),
        }
    }

    fn validate(&self) -> Result<(), ContractError> {
        let order = &self.order;
        check_order_id(Self::NAME, "order.orderId", &order.order_id)?;
        if !(1..=MAX_ORDER_VERSION).contains(&order.version) {
            return Err(invalid(Self::NAME, "order.version", format!("must be 1 to {MAX_ORDER_VERSION}")));
        }
        check_lines(Self::NAME, "order.", &order.lines)?;
        check_totals(Self::NAME, "order.", &order.lines, &order.totals)?;
        if let Some(refunded) = order.refunded_minor {
            if !(0..=order.totals.total_minor).contains(&refunded) {
                return Err(invalid(Self::NAME, "order.refundedMinor", "must be 0 to the order's total"));
            }
        }
        Ok(())
    }
}

/// Most units one stock receipt may bring.
pub const MAX_RECEIPT_QUANTITY: u32 = 1_000_000;

/// SKUs: 1 to 64 of `A-Z`, `0-9`, `-` and `_` (what the catalogue holds).
pub fn is_sku(sku: &str) -> bool {
    (1..=64).contains(&sku.len())
        && sku.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Stock arrived at the warehouse (`POST /stock`, by an operator). Warehouse adds it to what is on
/// hand and allocates it to waiting backorders of the SKU, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockReceived {
    /// The receipt: the same receipt is counted once, however often it is delivered.
    pub receipt_id: String,
    /// The SKU.
    pub sku: String,
    /// Units that arrived, 1 to [`MAX_RECEIPT_QUANTITY`].
    pub quantity: u32,
    /// When it was booked in.
    pub received_at: DateTime<Utc>,
}

impl Event for StockReceived {
    const NAME: &'static str = "StockReceived";
    const SOURCE: &'static str = WAREHOUSE;
    const SCHEMA_VERSION: u32 = 1;

    fn validate(&self) -> Result<(), ContractError> {
        check_order_id(Self::NAME, "receiptId", &self.receipt_id)?;
        if !is_sku(&self.sku) {
            return Err(invalid(Self::NAME, "sku", "must be 1 to 64 of A-Z, 0-9, - and _"));
        }
        if !(1..=MAX_RECEIPT_QUANTITY).contains(&self.quantity) {
            return Err(invalid(Self::NAME, "quantity", format!("must be 1 to {MAX_RECEIPT_QUANTITY}")));
        }
        Ok(())
    }
}

/// Who or what cancelled an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CancelledBy {
    /// The order's customer, through `POST /orders/{id}/cancel`.
    Customer,
    /// The backorder deadline passed before stock arrived.
    BackorderDeadline,
}

impl CancelledBy {
    /// The reason Sales writes on the order's `Cancelling` history entry (consumers tell the two
    /// apart by it).
    pub fn reason(self) -> &'static str {
        match self {
            CancelledBy::Customer => "cancelled by the customer",
            CancelledBy::BackorderDeadline => "not back in stock by the backorder deadline",
        }
    }
}

/// Sales accepted a cancellation (the order is `Cancelling`). Billing refunds what it charged (or
/// makes sure nothing will be), Warehouse releases what it allocated and forgets the backorder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderCancelled {
    /// The order.
    pub order_id: String,
    /// Why.
    pub cancelled_by: CancelledBy,
    /// The order's currency.
    pub currency: Currency,
    /// The order's total, minor units: what Billing's invoice is for, charged or not.
    pub total_minor: i64,
    /// When Sales accepted it.
    pub cancelled_at: DateTime<Utc>,
}

impl Event for OrderCancelled {
    const NAME: &'static str = "OrderCancelled";
    const SOURCE: &'static str = SALES;
    const SCHEMA_VERSION: u32 = 1;

    fn validate(&self) -> Result<(), ContractError> {
        check_order_id(Self::NAME, "orderId", &self.order_id)?;
        checked_amount("totalMinor", Some(self.total_minor)).map_err(|e| invalid(Self::NAME, e.field, e.reason))?;
        Ok(())
    }
}

/// Billing settled a cancelled order: what it had charged is refunded, or nothing was charged and
/// nothing ever will be (`amountMinor` 0, no `refundReference`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRefunded {
    /// The order.
    pub order_id: String,
    /// Its invoice.
    pub invoice_id: String,
    /// Given back, minor units: the whole charge, or 0.
    pub amount_minor: i64,
    /// Its currency.
    pub currency: Currency,
    /// The provider's refund reference, when money moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_reference: Option<String>,
    /// When.
    pub refunded_at: DateTime<Utc>,
}

impl Event for PaymentRefunded {
    const NAME: &'static str = "PaymentRefunded";
    const SOURCE: &'static str = BILLING;
    const SCHEMA_VERSION: u32 = 1;

    fn validate(&self) -> Result<(), ContractError> {
        check_order_id(Self::NAME, "orderId", &self.order_id)?;
        checked_amount("amountMinor", Some(self.amount_minor)).map_err(|e| invalid(Self::NAME, e.field, e.reason))?;
        if (self.amount_minor > 0) != self.refund_reference.is_some() {
            return Err(invalid(Self::NAME, "refundReference", "is given exactly when an amount was refunded"));
        }
        Ok(())
    }
}

/// Warehouse gave back to stock what it had allocated to a cancelled order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StockReleased {
    /// The order.
    pub order_id: String,
    /// What went back on the shelf, per SKU (quantity summed over the order's lines).
    pub lines: Vec<ReleasedLine>,
    /// When.
    pub released_at: DateTime<Utc>,
}

/// One SKU given back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleasedLine {
    /// The SKU.
    pub sku: String,
    /// Units.
    pub quantity: u32,
}

impl Event for StockReleased {
    const NAME: &'static str = "StockReleased";
    const SOURCE: &'static str = WAREHOUSE;
    const SCHEMA_VERSION: u32 = 1;

    fn validate(&self) -> Result<(), ContractError> {
        check_order_id(Self::NAME, "orderId", &self.order_id)?;
        if self.lines.is_empty() || self.lines.len() > MAX_LINES {
            return Err(invalid(Self::NAME, "lines", format!("must have 1 to {MAX_LINES} entries")));
        }
        Ok(())
    }
}
