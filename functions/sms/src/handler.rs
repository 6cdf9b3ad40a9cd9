//! The SMS consumer's handler.
//!
//! ```text
//! OrderPlaced ──────────────────────────► confirmation text ┐
//! OrderStatusChanged (ReadyToShip) ─────► shipping text     ├─► E.164? ─► SmsSender
//! OrderStatusChanged (anything else) ───► nothing           ┘
//!     sent ─► done · unavailable ─► retry after Retry-After or a growing delay · rejected ─► DLQ
//! ```
//!
//! Twilio has no idempotency key: the harness's deduplication keeps a redelivered event from texting
//! twice, except in the window between a send and the completion mark (a crash there texts twice,
//! which is the better failure for a notification than never texting).

use std::sync::Arc;

use async_trait::async_trait;
use orderflow_contracts::{inbound, is_e164, OrderPlaced, OrderStatusChanged};
use orderflow_harness::{Handler, HandlerError, RecordContext};
use tracing::info;

use crate::message;
use crate::twilio::{SmsError, SmsSender};

inbound! {
    /// What the SMS consumer listens to.
    pub enum SmsInput {
        Placed(OrderPlaced),
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
        let sms = match &event {
            SmsInput::Placed(order) => message::placed(order),
            SmsInput::StatusChanged(changed) => match message::status_changed(changed) {
                Some(sms) => sms,
                None => return Ok(()),
            },
        };
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
