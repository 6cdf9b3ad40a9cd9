//! The Sales service. Two Lambdas share its private order store:
//!
//! - `sales-api` ([`api`]): `POST /orders` validates, stores the order as `Placed` and publishes
//!   `OrderPlaced`; `GET /orders/{id}` returns the order with its status history.
//! - `sales-order-status` ([`order_status`]): on `ShippingLabelCreated`, `PaymentDeclined` or
//!   `StockAllocationFailed` it moves the order to `ReadyToShip`, `PaymentFailed` or `Backordered` and
//!   publishes `OrderStatusChanged` with the order's full state.
//!
//! Sales never calls Billing or Warehouse, and they never call Sales: the workflow is the sum of
//! each service reacting to the events it subscribes to (choreography).

pub mod api;
pub mod order_status;
pub mod orders;
