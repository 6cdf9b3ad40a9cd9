//! The Billing service: on `OrderPlaced` it creates the order's invoice, charges it through the
//! payment port and publishes `OrderBilled` or `PaymentDeclined`. It knows nothing of Warehouse or of
//! what Sales does next.

pub mod decision;
pub mod handler;
pub mod invoices;
pub mod payments;
