//! The SMS consumer: when an order is paid for and ready to ship, the customer gets a
//! short text, sent through Twilio's Messages API by this consumer alone, behind its own queue. So a
//! Twilio outage or rate limit delays texts only: email, webhooks and the order flow carry on.
//!
//! - [`message`]: which event gets which text (a plain function).
//! - [`twilio`]: the `SmsSender` port, the Twilio adapter and an in-memory fake.
//! - [`handler`]: the consumer's handler.

pub mod handler;
pub mod message;
pub mod twilio;
