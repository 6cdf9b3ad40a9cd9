//! Invoices: one per order, keyed by order id, so a redelivered `OrderPlaced` can never bill twice.
//!
//! Table `invoices`, partition key `orderId`. Item: `invoiceId`, `amountMinor`, `currency`, `status`
//! (`PENDING` | `PAID` | `DECLINED` | `VOIDED` | `REFUNDED`), `paymentReference` or `declineReason`,
//! `refundReference`, `cancelRequested` (the order was cancelled while its charge was in flight),
//! `createdAt`.
//!
//! ```text
//! PENDING ─► PAID ─► REFUNDED        (a cancelled order that was charged)
//!         └► DECLINED
//! (none)  ─► VOIDED                  (cancelled before billing: never charged)
//! ```
//!
//! Fails closed: a status this code does not know (or none) reads as [`InvoiceStatus::Unknown`],
//! which is never charged; and an outcome is recorded only while the invoice is still `PENDING`, so
//! a late writer never overwrites the outcome another one recorded.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use orderflow_contracts::Currency;
use orderflow_harness::dynamo::{get_n, get_s, is_conditional_check_failed, n, s, store_error};
use orderflow_harness::StoreError;

/// Where an invoice stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvoiceStatus {
    /// Created, not charged yet (or the charge's outcome was not recorded).
    Pending,
    /// Charged.
    Paid {
        /// The provider's reference.
        payment_reference: String,
    },
    /// The provider declined.
    Declined {
        /// The provider's reason.
        reason: String,
    },
    /// The order was cancelled before it was billed: never charged, however late its `OrderPlaced`.
    Voided,
    /// Charged, then refunded in full.
    Refunded {
        /// The provider's reference of the charge.
        payment_reference: String,
        /// The provider's reference of the refund.
        refund_reference: String,
    },
    /// The stored status is missing or not one this code knows: never charged, left for a human.
    Unknown(String),
}

impl InvoiceStatus {
    fn code(&self) -> &'static str {
        match self {
            InvoiceStatus::Pending => "PENDING",
            InvoiceStatus::Paid { .. } => "PAID",
            InvoiceStatus::Declined { .. } => "DECLINED",
            InvoiceStatus::Voided => "VOIDED",
            InvoiceStatus::Refunded { .. } => "REFUNDED",
            InvoiceStatus::Unknown(_) => "UNKNOWN",
        }
    }
}

/// An invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoice {
    /// `inv-<order id>`.
    pub invoice_id: String,
    /// The order billed.
    pub order_id: String,
    /// Amount, minor units.
    pub amount_minor: i64,
    /// Currency.
    pub currency: Currency,
    /// Where it stands.
    pub status: InvoiceStatus,
    /// The order was cancelled while the invoice was pending (a charge in flight): whoever settles
    /// the charge refunds it.
    pub cancel_requested: bool,
}

const STORE: &str = "invoice store";

/// Billing's invoices.
#[async_trait]
pub trait InvoiceStore: Send + Sync {
    /// Stores `invoice` (`Pending`, or `Voided` for an order cancelled before billing) unless the
    /// order has one; returns the order's invoice either way.
    async fn create_or_get(&self, invoice: Invoice) -> Result<Invoice, StoreError>;
    /// Records the refund of a `Paid` invoice; returns the status that stands (this refund, or
    /// whatever was recorded first).
    async fn refunded(&self, order_id: &str, refund_reference: &str) -> Result<InvoiceStatus, StoreError>;
    /// Records the charge's outcome if the invoice is still pending; returns the outcome that stands
    /// (this one, or the one recorded first).
    async fn settle(&self, order_id: &str, status: &InvoiceStatus) -> Result<InvoiceStatus, StoreError>;
    /// Marks a pending invoice's order as cancelled (only while it is pending: the charge in flight
    /// then refunds itself); returns the invoice as it stands.
    async fn request_cancel(&self, order_id: &str) -> Result<Invoice, StoreError>;
    /// The order's invoice (strongly consistent).
    async fn get(&self, order_id: &str) -> Result<Option<Invoice>, StoreError>;
}

/// The DynamoDB adapter.
#[derive(Debug, Clone)]
pub struct DynamoDbInvoiceStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoDbInvoiceStore {
    /// Uses `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

fn parse(item: &HashMap<String, AttributeValue>) -> Result<Invoice, StoreError> {
    let unreadable = |what: &str| StoreError::permanent(STORE, format!("invoice unreadable: {what}"));
    let field = |name: &str| get_s(item, name).map(str::to_string).ok_or_else(|| unreadable(name));
    let status = match get_s(item, "status") {
        Some("PENDING") => InvoiceStatus::Pending,
        Some("PAID") => match get_s(item, "paymentReference") {
            Some(r) => InvoiceStatus::Paid { payment_reference: r.to_string() },
            None => InvoiceStatus::Unknown("PAID without paymentReference".into()),
        },
        Some("DECLINED") => InvoiceStatus::Declined { reason: get_s(item, "declineReason").unwrap_or_default().into() },
        Some("VOIDED") => InvoiceStatus::Voided,
        Some("REFUNDED") => match (get_s(item, "paymentReference"), get_s(item, "refundReference")) {
            (Some(p), Some(r)) => {
                InvoiceStatus::Refunded { payment_reference: p.to_string(), refund_reference: r.to_string() }
            }
            _ => InvoiceStatus::Unknown("REFUNDED without its references".into()),
        },
        Some(other) => InvoiceStatus::Unknown(other.to_string()),
        None => InvoiceStatus::Unknown("(missing)".into()),
    };
    Ok(Invoice {
        invoice_id: field("invoiceId")?,
        order_id: field("orderId")?,
        amount_minor: get_n(item, "amountMinor").ok_or_else(|| unreadable("amountMinor"))?,
        currency: Currency::parse(&field("currency")?).ok_or_else(|| unreadable("currency"))?,
        status,
        cancel_requested: matches!(item.get("cancelRequested"), Some(AttributeValue::Bool(true))),
    })
}

#[async_trait]
impl InvoiceStore for DynamoDbInvoiceStore {
    async fn create_or_get(&self, invoice: Invoice) -> Result<Invoice, StoreError> {
        if !matches!(invoice.status, InvoiceStatus::Pending | InvoiceStatus::Voided) {
            return Err(StoreError::permanent(STORE, format!("an invoice is created {:?}", invoice.status)));
        }
        let currency = serde_json::to_value(invoice.currency)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("orderId", s(&invoice.order_id))
            .item("invoiceId", s(&invoice.invoice_id))
            .item("amountMinor", n(invoice.amount_minor))
            .item("currency", s(currency))
            .item("status", s(invoice.status.code()))
            .item("createdAt", s(chrono::Utc::now().to_rfc3339()))
            .condition_expression("attribute_not_exists(orderId)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(invoice),
            Err(e) if is_conditional_check_failed(&e) => self.read(&invoice.order_id).await,
            Err(e) => Err(store_error(STORE, e)),
        }
    }

    async fn settle(&self, order_id: &str, status: &InvoiceStatus) -> Result<InvoiceStatus, StoreError> {
        let req = self.client.update_item().table_name(&self.table).key("orderId", s(order_id));
        let req = match status {
            InvoiceStatus::Paid { payment_reference } => req
                .update_expression("SET #s = :s, paymentReference = :r")
                .expression_attribute_values(":s", s("PAID"))
                .expression_attribute_values(":r", s(payment_reference)),
            InvoiceStatus::Declined { reason } => req
                .update_expression("SET #s = :s, declineReason = :r")
                .expression_attribute_values(":s", s("DECLINED"))
                .expression_attribute_values(":r", s(reason)),
            _ => return Err(StoreError::permanent(STORE, format!("{status:?} is not an outcome"))),
        };
        let res = req
            .condition_expression("#s = :pending")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":pending", s("PENDING"))
            .send()
            .await;
        match res {
            Ok(_) => Ok(status.clone()),
            Err(e) if is_conditional_check_failed(&e) => Ok(self.read(order_id).await?.status),
            Err(e) => Err(store_error(STORE, e)),
        }
    }

    async fn request_cancel(&self, order_id: &str) -> Result<Invoice, StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("orderId", s(order_id))
            .update_expression("SET cancelRequested = :yes")
            .condition_expression("#s = :pending")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":pending", s("PENDING"))
            .send()
            .await;
        if let Err(e) = res {
            if !is_conditional_check_failed(&e) {
                return Err(store_error(STORE, e));
            }
        }
        self.read(order_id).await
    }

    async fn get(&self, order_id: &str) -> Result<Option<Invoice>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("orderId", s(order_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error(STORE, e))?;
        out.item().map(parse).transpose()
    }

    async fn refunded(&self, order_id: &str, refund_reference: &str) -> Result<InvoiceStatus, StoreError> {
        let res = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("orderId", s(order_id))
            .update_expression("SET #s = :refunded, refundReference = :r")
            .condition_expression("#s = :paid")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":refunded", s("REFUNDED"))
            .expression_attribute_values(":paid", s("PAID"))
            .expression_attribute_values(":r", s(refund_reference))
            .send()
            .await;
        // Written now, or not PAID any more (refunded before, or never charged): read what stands.
        if let Err(e) = res {
            if !is_conditional_check_failed(&e) {
                return Err(store_error(STORE, e));
            }
        }
        Ok(self.read(order_id).await?.status)
    }
}

impl DynamoDbInvoiceStore {
    async fn read(&self, order_id: &str) -> Result<Invoice, StoreError> {
        self.get(order_id).await?.ok_or_else(|| StoreError::retryable(STORE, "invoice vanished"))
    }
}

/// The in-memory fake.
#[derive(Debug, Default)]
pub struct InMemoryInvoiceStore {
    invoices: Mutex<HashMap<String, Invoice>>,
}

impl InMemoryInvoiceStore {
    /// Every invoice.
    pub fn all(&self) -> Vec<Invoice> {
        self.invoices.lock().expect("lock").values().cloned().collect()
    }
    /// Puts an invoice in place, as a test's GIVEN.
    pub fn insert(&self, invoice: Invoice) {
        self.invoices.lock().expect("lock").insert(invoice.order_id.clone(), invoice);
    }
}

#[async_trait]
impl InvoiceStore for InMemoryInvoiceStore {
    async fn create_or_get(&self, invoice: Invoice) -> Result<Invoice, StoreError> {
        Ok(self.invoices.lock().expect("lock").entry(invoice.order_id.clone()).or_insert(invoice).clone())
    }

    async fn request_cancel(&self, order_id: &str) -> Result<Invoice, StoreError> {
        match self.invoices.lock().expect("lock").get_mut(order_id) {
            Some(invoice) => {
                if invoice.status == InvoiceStatus::Pending {
                    invoice.cancel_requested = true;
                }
                Ok(invoice.clone())
            }
            None => Err(StoreError::retryable(STORE, format!("no invoice for {order_id}"))),
        }
    }

    async fn get(&self, order_id: &str) -> Result<Option<Invoice>, StoreError> {
        Ok(self.invoices.lock().expect("lock").get(order_id).cloned())
    }

    async fn refunded(&self, order_id: &str, refund_reference: &str) -> Result<InvoiceStatus, StoreError> {
        match self.invoices.lock().expect("lock").get_mut(order_id) {
            Some(invoice) => {
                if let InvoiceStatus::Paid { payment_reference } = &invoice.status {
                    invoice.status = InvoiceStatus::Refunded {
                        payment_reference: payment_reference.clone(),
                        refund_reference: refund_reference.to_string(),
                    };
                }
                Ok(invoice.status.clone())
            }
            None => Err(StoreError::retryable(STORE, format!("no invoice for {order_id}"))),
        }
    }

    async fn settle(&self, order_id: &str, status: &InvoiceStatus) -> Result<InvoiceStatus, StoreError> {
        match self.invoices.lock().expect("lock").get_mut(order_id) {
            Some(invoice) if invoice.status == InvoiceStatus::Pending => {
                invoice.status = status.clone();
                Ok(status.clone())
            }
            Some(invoice) => Ok(invoice.status.clone()),
            None => Err(StoreError::retryable(STORE, format!("no invoice for {order_id}"))),
        }
    }
}
