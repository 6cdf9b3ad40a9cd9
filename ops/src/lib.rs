//! Operator commands for a deployed Orderflow stack (`orderflow-ops --help`):
//!
//! - [`redrive`]: a consumer's dead-letter queue back to its queue, once the cause is fixed;
//! - [`replay`]: the events of a time window, from the bus archive, to one consumer alone (to rebuild
//!   a read model).
//!
//! A consumer is named as in its `CONSUMER_NAME` (`billing`, `reporting`, ...); [`stack`] finds its
//! function, queues and rule in the CloudFormation stack, so nothing here hard-codes resource names.

pub mod cli;
pub mod redrive;
pub mod replay;
pub mod stack;
