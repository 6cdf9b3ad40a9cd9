//! Test data: the shop's catalogue and stock, invoices, unique names and SKUs.

use std::collections::HashMap;

use anyhow::Result;
use aws_sdk_dynamodb::types::AttributeValue;
use orderflow_contracts::OrderStatus;

use crate::stack::Local;

/// Where an order comes to rest: the final statuses, and `Backordered`, where it waits for stock or
/// its deadline ([`Local::wait_status`] waits past it).
pub const FINAL: [OrderStatus; 4] =
    [OrderStatus::ReadyToShip, OrderStatus::PaymentFailed, OrderStatus::Backordered, OrderStatus::Cancelled];

impl Local {
    /// Puts `sku` in the shop's catalogue at `unit_price_minor` GBP.
    pub async fn set_product(&self, sku: &str, unit_price_minor: i64) -> Result<()> {
        self.dynamo
            .put_item()
            .table_name(self.output("CatalogueTableName"))
            .item("sku", AttributeValue::S(sku.into()))
            .item("name", AttributeValue::S(format!("Test product {sku}")))
            .item("unitPriceMinor", AttributeValue::N(unit_price_minor.to_string()))
            .item("currency", AttributeValue::S("GBP".into()))
            .send()
            .await?;
        Ok(())
    }

    /// A product the shop sells at `unit_price_minor`, with `available` in stock.
    pub async fn stock_product(&self, sku: &str, unit_price_minor: i64, available: u32) -> Result<()> {
        self.set_product(sku, unit_price_minor).await?;
        self.set_stock(sku, available).await
    }

    /// Sets the stock of `sku` to `available`.
    pub async fn set_stock(&self, sku: &str, available: u32) -> Result<()> {
        self.dynamo
            .put_item()
            .table_name(self.output("StockTableName"))
            .item("sku", AttributeValue::S(sku.into()))
            .item("available", AttributeValue::N(available.to_string()))
            .send()
            .await?;
        Ok(())
    }

    /// What is on hand for `sku`.
    pub async fn stock(&self, sku: &str) -> Result<Option<u32>> {
        let out = self
            .dynamo
            .get_item()
            .table_name(self.output("StockTableName"))
            .key("sku", AttributeValue::S(sku.into()))
            .consistent_read(true)
            .send()
            .await?;
        Ok(out.item().and_then(|i| i.get("available")).and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()))
    }

    /// The invoice items of an order (the table is keyed by order id: at most one).
    pub async fn invoice(&self, order_id: &str) -> Result<Option<HashMap<String, AttributeValue>>> {
        let out = self
            .dynamo
            .get_item()
            .table_name(self.output("InvoicesTableName"))
            .key("orderId", AttributeValue::S(order_id.into()))
            .consistent_read(true)
            .send()
            .await?;
        Ok(out.item)
    }
}

/// A short unique token for names and correlation ids.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// A unique SKU (the catalogue's pattern: upper-case letters, digits, `-`).
pub fn unique_sku(prefix: &str) -> String {
    unique(prefix).to_uppercase()
}
