//! The Sales service. Three Lambdas share its private order store:
//!
//! - `sales-api` ([`api`]): `POST /orders` validates ([`validation`]), prices from the shop's
//!   catalogue ([`catalogue`]) and stores the order as `Placed` with its `OrderPlaced` in the same
//!   write; `GET /orders/{id}` returns the order with its status history.
//! - `sales-order-status` ([`order_status`]): on `ShippingLabelCreated`, `PaymentDeclined` or
//!   `StockAllocationFailed` it moves the order to `ReadyToShip`, `PaymentFailed` or `Backordered`,
//!   with `OrderStatusChanged` (the order's full state) in the same write.
//! - `sales-outbox-relay` ([`outbox`]): reads the orders table's stream and publishes what each write
//!   stored in its outbox (transactional outbox) and its writer did not publish already: the API and
//!   the status consumer publish their own writes right after them ([`announce`], the fast path).
//!
//! Sales never calls Billing or Warehouse, and they never call Sales: the workflow is the sum of
//! each service reacting to the events it subscribes to (choreography).

pub mod announce;
pub mod api;
pub mod callers;
pub mod catalogue;
pub mod deadlines;
pub mod order_status;
pub mod orders;
pub mod outbox;
pub mod validation;
