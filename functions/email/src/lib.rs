//! The email consumer: an email when an order is placed, and a notice when it is ready to ship,
//! declined or backordered, sent with Amazon SES v2 by this consumer alone, behind its own queue. So
//! SES throttling or an outage delays emails only.
//!
//! - [`render`]: which event gets which email, rendered as HTML and text from the templates in
//!   `templates/` (minijinja; HTML escaped).
//! - [`ses`]: the `EmailSender` port, the SES v2 adapter and an in-memory fake.
//! - [`handler`]: the consumer's handler.

pub mod handler;
pub mod render;
pub mod ses;
