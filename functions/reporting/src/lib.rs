//! The reporting store: PostgreSQL tables of orders and order lines (an OLAP-style copy for reports),
//! kept from the events alone, and a view of daily figures.
//!
//! ```text
//! OrderPlaced (version 1) ──────────┐
//! OrderStatusChanged (version n) ───┴─► upsert the order and its lines, only if n > the stored version
//! OrderBilled ──────────────────────► set the invoice, amount billed and when (any version)
//! ```
//!
//! Events arrive in any order and more than once; the version check makes a late, older event a
//! no-op, and every write is an idempotent upsert.
//!
//! - [`rows`]: events → rows (plain functions).
//! - [`store`]: the `ReportingStore` port, the PostgreSQL adapter (one lazily opened pool per Lambda
//!   instance; the schema from `migrations/`, applied by sqlx's migrator) and an in-memory fake.
//! - [`handler`]: the consumer's handler.

pub mod handler;
pub mod rows;
pub mod store;
