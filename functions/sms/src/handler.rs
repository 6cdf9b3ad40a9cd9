//! The SMS consumer's handler.
//!
//! ```text
//! OrderStatusChanged (ReadyToShip) ─────► shipping text ┐
//! OrderStatusChanged (Cancelled at the deadline, refunded > 0) ─► refund text ┴► a verified phone? ─► E.164? ─► SmsSender
//! OrderStatusChanged (anything else) ───► nothing                └─ none: nothing
//!     sent ─► done · unavailable ─► retry after Retry-After or a growing delay · rejected ─► DLQ
//! ```
//!
//! The first text of an order is sent only once it is paid for (`ReadyToShip` comes after Billing
//! charged it), never on `OrderPlaced`: placing orders cannot make the shop pay for texts. The number
//! is the one the customer's sign-in verified (Sales takes it from the token, never from a request).
//!
//! Twilio has no idempotency key: the harness's deduplication keeps a redelivered event from texting
//! twice, except in the window between a send and the completion mark (a crash there texts twice,
//! which is the better failure for a notification than never texting).

use std::sync::Arc;

use async_trait::async_trait;
use orderflow_contracts::{inbound, is_e164, OrderStatusChanged};
use orderflow_harness::{Handler, HandlerError, RecordContext};
use tracing::info;

use crate::message;
use crate::twilio::{SmsError, SmsSender};

inbound! {
    /// What the SMS consumer listens to.
    pub enum SmsInput {
        StatusChanged(OrderStatusChanged),
    }
}

/// The handler: an SMS sender.
pub struct SmsHandler {
    sender: Arc<dyn SmsSender>,
}

impl SmsHandler {
    /// The handler over its port.
    pub fn new(sender: Arc<dyn SmsSender>) -> Self {
        Self { sender }
    }
}

#[async_trait]
impl Handler<SmsInput> for SmsHandler {
    async fn handle(&self, event: SmsInput, _ctx: &RecordContext) -> Result<(), HandlerError> {
        let SmsInput::StatusChanged(changed) = &event;
        let Some(sms) = message::status_changed(changed) else { return Ok(()) };
        if sms.to.is_empty() {
            info!(order_id = %sms.order_id, "no verified phone: no text");
            return Ok(());
        }
        if !is_e164(&sms.to) {
            return Err(HandlerError::permanent(format!(
                "order {}: the customer's phone number is not E.164; no text sent",
                sms.order_id
            )));
        }
        match self.sender.send(&sms).await {
            Ok(provider_id) => {
                info!(order_id = %sms.order_id, provider_id = %provider_id, "text sent");
                Ok(())
            }
            Err(SmsError::Unavailable { reason, after }) => {
                Err(HandlerError::retry(format!("order {}: {reason}", sms.order_id), after))
            }
            Err(SmsError::Rejected(reason)) => {
                Err(HandlerError::permanent(format!("order {}: {reason}", sms.order_id)))
            }
        }
    }
}
