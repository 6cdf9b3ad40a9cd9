//! Invoices: one per order, keyed by order id, so a redelivered `OrderPlaced` can never bill twice.
//!
//! Table `invoices`, partition key `orderId`. Item: `invoiceId`, `amountMinor`, `currency`, `status`
//! (`PENDING` | `PAID` | `DECLINED`), `paymentReference` or `declineReason`, `createdAt`.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use orderflow_contracts::Currency;
use orderflow_harness::dynamo::{describe, get_n, get_s, is_conditional_check_failed, n, s};

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
}

/// The store did not answer; the record is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invoice store: {0}")]
pub struct StoreError(pub String);

/// The port.
#[async_trait]
pub trait InvoiceStore: Send + Sync {
    /// Stores `invoice` unless the order has one; returns the order's invoice either way.
    async fn create_or_get(&self, invoice: Invoice) -> Result<Invoice, StoreError>;
    /// Records the charge's outcome.
    async fn settle(&self, order_id: &str, status: &InvoiceStatus) -> Result<(), StoreError>;
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
    let field =
        |name: &str| get_s(item, name).map(str::to_string).ok_or_else(|| StoreError(format!("invoice without {name}")));
    let status = match get_s(item, "status") {
        Some("PAID") => InvoiceStatus::Paid { payment_reference: field("paymentReference")? },
        Some("DECLINED") => InvoiceStatus::Declined { reason: field("declineReason")? },
        _ => InvoiceStatus::Pending,
    };
    Ok(Invoice {
        invoice_id: field("invoiceId")?,
        order_id: field("orderId")?,
        amount_minor: get_n(item, "amountMinor").ok_or_else(|| StoreError("invoice without amountMinor".into()))?,
        currency: Currency::parse(&field("currency")?).ok_or_else(|| StoreError("invoice currency unknown".into()))?,
        status,
    })
}

#[async_trait]
impl InvoiceStore for DynamoDbInvoiceStore {
    async fn create_or_get(&self, invoice: Invoice) -> Result<Invoice, StoreError> {
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
            .item("status", s("PENDING"))
            .item("createdAt", s(chrono::Utc::now().to_rfc3339()))
            .condition_expression("attribute_not_exists(orderId)")
            .send()
            .await;
        match put {
            Ok(_) => Ok(invoice),
            Err(e) if is_conditional_check_failed(&e) => {
                let out = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .key("orderId", s(&invoice.order_id))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| StoreError(describe(e)))?;
                parse(out.item().ok_or_else(|| StoreError("invoice vanished".into()))?)
            }
            Err(e) => Err(StoreError(describe(e))),
        }
    }

    async fn settle(&self, order_id: &str, status: &InvoiceStatus) -> Result<(), StoreError> {
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
            InvoiceStatus::Pending => return Ok(()),
        };
        req.expression_attribute_names("#s", "status").send().await.map_err(|e| StoreError(describe(e)))?;
        Ok(())
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
}

#[async_trait]
impl InvoiceStore for InMemoryInvoiceStore {
    async fn create_or_get(&self, invoice: Invoice) -> Result<Invoice, StoreError> {
        Ok(self.invoices.lock().expect("lock").entry(invoice.order_id.clone()).or_insert(invoice).clone())
    }

    async fn settle(&self, order_id: &str, status: &InvoiceStatus) -> Result<(), StoreError> {
        match self.invoices.lock().expect("lock").get_mut(order_id) {
            Some(invoice) => {
                invoice.status = status.clone();
                Ok(())
            }
            None => Err(StoreError(format!("no invoice for {order_id}"))),
        }
    }
}
