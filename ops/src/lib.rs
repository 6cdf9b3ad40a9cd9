//! Operator commands for a deployed Orderflow stack (`orderflow-ops --help`):
//!
//! - [`redrive`]: a consumer's dead-letter queue back to its queue, once the cause is fixed;
//! - [`replay`]: the events of a time window, from the bus archive, to one consumer alone (to rebuild
//!   a read model).
//!
//! A consumer is named as in the consumer table (`orderflow-consumers`: `billing`, `reporting`, ...);
//! [`stack`] reads its queues, rule and function from the stack's outputs the table names, so
//! nothing here hard-codes resource names.

pub mod cli;
pub mod redrive;
pub mod replay;
pub mod stack;
