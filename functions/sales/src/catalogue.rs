//! What the shop sells and at what price: the port, its DynamoDB adapter, the in-memory fake, and
//! [`price`], the plain function that turns a validated request into priced lines and totals.
//!
//! Table `catalogue`, partition key `sku` (the pattern of [`crate::validation::is_sku`]). Item:
//! `name`, `unitPriceMinor` (N, 1..=`MAX_AMOUNT_MINOR`), `currency` (ISO 4217). Seeded by
//! `infra/deploy-local.sh` locally; maintained by the shop elsewhere.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
#[cfg(feature = "aws")]
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use orderflow_contracts::{Currency, OrderLine, Totals};
#[cfg(feature = "aws")]
use orderflow_harness::dynamo::{get_n, get_s, s, store_error};
use orderflow_harness::StoreError;

use crate::validation::{field_error, FieldError, OrderRequest};

#[cfg(feature = "aws")]
const STORE: &str = "catalogue";

/// One product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// Its SKU.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Price of one unit, minor units of `currency`.
    pub unit_price_minor: i64,
    /// The currency it is sold in.
    pub currency: Currency,
}

/// Reads products by SKU.
#[async_trait]
pub trait Catalogue: Send + Sync {
    /// The products among `skus` that the shop sells (unknown SKUs are simply absent).
    async fn products(&self, skus: &[String]) -> Result<HashMap<String, Product>, StoreError>;
}

/// Priced lines and totals for `request`, or the fields that cannot be priced: a SKU the shop does
/// not sell, one sold in another currency, or an amount that would not fit ([`Totals::for_lines`]).
pub fn price(
    request: &OrderRequest,
    products: &HashMap<String, Product>,
    shipping_minor: i64,
) -> Result<(Vec<OrderLine>, Totals), Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut lines = Vec::with_capacity(request.lines.len());
    for (i, line) in request.lines.iter().enumerate() {
        match products.get(&line.sku) {
            None => errors.push(field_error(format!("lines[{i}].sku"), format!("`{}` is not sold here", line.sku))),
            Some(p) if p.currency != request.currency => errors.push(field_error(
                format!("lines[{i}].sku"),
                format!("`{}` is sold in {:?}, not {:?}", line.sku, p.currency, request.currency),
            )),
            Some(p) => lines.push(OrderLine {
                sku: line.sku.clone(),
                quantity: line.quantity,
                unit_price_minor: p.unit_price_minor,
            }),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let totals = Totals::for_lines(&lines, shipping_minor, 0).map_err(|e| {
        // `lines[i]` (a line's total) is a quantity the client chose; name the field they can change.
        let field = if e.field.starts_with("lines[") && !e.field.contains('.') {
            format!("{}.quantity", e.field)
        } else {
            e.field
        };
        vec![field_error(field, format!("makes the order too large: {}", e.reason))]
    })?;
    Ok((lines, totals))
}

#[cfg(feature = "aws")]
fn parse(item: &HashMap<String, AttributeValue>) -> Option<Product> {
    let unit_price_minor: i64 = get_n(item, "unitPriceMinor")?;
    Some(Product {
        sku: get_s(item, "sku")?.to_string(),
        name: get_s(item, "name").unwrap_or_default().to_string(),
        unit_price_minor: (1..=orderflow_contracts::MAX_AMOUNT_MINOR)
            .contains(&unit_price_minor)
            .then_some(unit_price_minor)?,
        currency: Currency::parse(get_s(item, "currency")?)?,
    })
}

/// The DynamoDB adapter.
#[derive(Debug, Clone)]
#[cfg(feature = "aws")]
pub struct DynamoDbCatalogue {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

#[cfg(feature = "aws")]
impl DynamoDbCatalogue {
    /// Uses `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

#[cfg(feature = "aws")]
#[async_trait]
impl Catalogue for DynamoDbCatalogue {
    async fn products(&self, skus: &[String]) -> Result<HashMap<String, Product>, StoreError> {
        let mut unique: Vec<&String> = skus.iter().collect();
        unique.sort();
        unique.dedup();
        let mut keys: Vec<HashMap<String, AttributeValue>> =
            unique.into_iter().map(|sku| HashMap::from([("sku".to_string(), s(sku))])).collect();
        let mut products = HashMap::new();
        // BatchGetItem may leave keys unprocessed under load; ask again for those, a few times.
        for _ in 0..4 {
            if keys.is_empty() {
                return Ok(products);
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut keys)))
                .build()
                .map_err(|e| StoreError::permanent(STORE, e.to_string()))?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| store_error(STORE, e))?;
            for item in out.responses().and_then(|r| r.get(&self.table)).into_iter().flatten() {
                match parse(item) {
                    Some(p) => {
                        products.insert(p.sku.clone(), p);
                    }
                    None => {
                        tracing::error!(sku = get_s(item, "sku").unwrap_or("?"), "catalogue item unreadable: not sold")
                    }
                }
            }
            keys =
                out.unprocessed_keys().and_then(|u| u.get(&self.table)).map(|k| k.keys().to_vec()).unwrap_or_default();
        }
        if keys.is_empty() {
            Ok(products)
        } else {
            Err(StoreError::retryable(STORE, format!("{} SKUs left unprocessed", keys.len())))
        }
    }
}

/// The in-memory fake.
#[derive(Debug, Default)]
pub struct InMemoryCatalogue {
    products: Mutex<HashMap<String, Product>>,
}

impl InMemoryCatalogue {
    /// The catalogue the request samples (`events-samples/sales-api/`) order from: BOOK-001 at 19.99
    /// and MUG-002 at 12.50 (GBP), RING-9 at 9 999.00 EUR. The API's tests and its fuzz target use it.
    pub fn of_the_samples() -> Self {
        Self::with(&[
            ("BOOK-001", 1999, Currency::GBP),
            ("MUG-002", 1250, Currency::GBP),
            ("RING-9", 999_900, Currency::EUR),
        ])
    }

    /// A catalogue of `(sku, unit price, currency)`.
    pub fn with(products: &[(&str, i64, Currency)]) -> Self {
        let c = Self::default();
        for (sku, price, currency) in products {
            c.put(Product {
                sku: sku.to_string(),
                name: sku.to_string(),
                unit_price_minor: *price,
                currency: *currency,
            });
        }
        c
    }
    /// Adds or replaces a product.
    pub fn put(&self, product: Product) {
        self.products.lock().expect("lock").insert(product.sku.clone(), product);
    }
}

#[async_trait]
impl Catalogue for InMemoryCatalogue {
    async fn products(&self, skus: &[String]) -> Result<HashMap<String, Product>, StoreError> {
        let products = self.products.lock().expect("lock");
        Ok(skus.iter().filter_map(|s| products.get(s).map(|p| (s.clone(), p.clone()))).collect())
    }
}
