//! The order cache: a copy of each order in Redis (ElastiCache in AWS), kept from the
//! `OrderStatusChanged` events Sales publishes, so reads of an order need not touch the orders table.
//!
//! ```text
//! OrderStatusChanged (the whole order, version n) ─► cache consumer ─► set if n > cached version (Lua, atomic)
//! GET /orders/{id} ─► cache hit ─► 200 from Redis
//!                 └► miss ─► orders table ─► fill the cache (same compare-and-set) ─► 200
//!                 └► Redis down ─► orders table (the API never fails because the cache does)
//! ```
//!
//! - [`store`]: the `OrderCache` port, the Redis adapter (keys, script, TTLs) and an in-memory fake,
//!   from the shared crate `orderflow-order-cache` (`shared/order-cache`), which Sales' API uses too.
//! - [`handler`]: the consumer's handler.

pub mod handler;
pub use orderflow_order_cache as store;
