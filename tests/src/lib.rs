//! Talking to the Orderflow stack deployed on the local emulator (`infra/deploy-local.sh`). The
//! demo (`src/bin/demo.rs`) and the end-to-end tests (`tests/`) are built on it, one module a job:
//!
//! - [`stack`]: the deployed stack (`Local`): outputs, clients, queues, consumers down and up, secrets;
//! - [`api`]: the HTTP API: placing (`Placed`) and reading orders, the webhooks API;
//! - [`aws_api`]: signed calls of the AWS APIs no function calls (Cognito, CloudWatch Logs, Athena,
//!   Lambda's configuration);
//! - [`identity`]: customers and operators signed in through the stack's user pool;
//! - [`tap`]: what was published on the bus, seen through a rule and queue of the test's own;
//! - [`fixtures`]: the catalogue, stock, invoices, unique names;
//! - [`wait`]: [`eventually`], the one way to wait for what happens elsewhere;
//! - [`read_models`], [`twilio`], [`template`]: the read models' stores, the Twilio stand-in, the
//!   template read as data.

pub mod api;
pub mod aws_api;
pub mod fixtures;
pub mod identity;
pub mod read_models;
pub mod stack;
pub mod tap;
pub mod template;
pub mod twilio;
pub mod wait;

pub use api::{order_request, send_to_api, Placed};
pub use fixtures::{unique, unique_sku, FINAL};
pub use identity::SignedIn;
pub use stack::{create_queue, Local};
pub use tap::{Tap, Tapped};
pub use wait::eventually;
