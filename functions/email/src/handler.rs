//! The email consumer's handler.
//!
//! ```text
//! OrderPlaced ─────────────────────────────────────────────► order email   ┐
//! OrderStatusChanged (ReadyToShip, after a delay too | PaymentFailed | Backordered | Cancelled,
//!                     with the refund) ───────────────────► notice ├─► EmailSender (SES v2)
//!     sent ─► done · unavailable ─► retry after a growing delay · rejected ─► DLQ with the reason
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use orderflow_contracts::{inbound, OrderPlaced, OrderStatusChanged};
use orderflow_harness::{Handler, HandlerError, RecordContext};
use tracing::info;

use crate::render;
use crate::ses::{EmailError, EmailSender};

inbound! {
    /// What the email consumer listens to.
    pub enum EmailInput {
        Placed(OrderPlaced),
        StatusChanged(OrderStatusChanged),
    }
}

/// The handler: an email sender.
pub struct EmailHandler {
    sender: Arc<dyn EmailSender>,
}

impl EmailHandler {
    /// The handler over its port.
    pub fn new(sender: Arc<dyn EmailSender>) -> Self {
        Self { sender }
    }
}

#[async_trait]
impl Handler<EmailInput> for EmailHandler {
    async fn handle(&self, event: EmailInput, _ctx: &RecordContext) -> Result<(), HandlerError> {
        let email = match &event {
            EmailInput::Placed(order) => render::placed(order),
            EmailInput::StatusChanged(changed) => match render::status_changed(changed) {
                Some(email) => email,
                None => return Ok(()),
            },
        }
        .map_err(|e| HandlerError::permanent(format!("rendering the email: {e}")))?;
        match self.sender.send(&email).await {
            Ok(message_id) => {
                info!(order_id = %email.order_id, message_id = %message_id, "email sent");
                Ok(())
            }
            Err(EmailError::Unavailable(reason)) => {
                Err(HandlerError::retryable(format!("order {}: {reason}", email.order_id)))
            }
            Err(EmailError::Rejected(reason)) => {
                Err(HandlerError::permanent(format!("order {}: {reason}", email.order_id)))
            }
        }
    }
}
