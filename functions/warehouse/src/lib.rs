//! The Warehouse service: on `OrderBilled` it allocates stock for every line (all or none), stores a
//! shipping label document in S3 and publishes `ShippingLabelCreated`, or `StockAllocationFailed`
//! when stock is short. It knows nothing of Billing beyond the event it reads.

pub mod api;
pub mod handler;
pub mod labels;
pub mod stock;
