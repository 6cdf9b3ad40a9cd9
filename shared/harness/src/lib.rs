//! What every Orderflow function stands on.
//!
//! ```text
//!  SQS batch ──► consumer::Consumer ──► decode (EventBridge event ► envelope ► typed event)
//!                     │                    └─ permanent error ──► dead_letter (DLQ now, reason attached)
//!                     ├─► idempotency (claim consumer#event_id; duplicates are acknowledged)
//!                     ├─► your Handler ──► publisher (PutEvents, ≤10 entries, failed entries resent)
//!                     └─► SqsBatchResponse: exactly the ids SQS must redeliver
//! ```
//!
//! Ports are small traits with in-memory fakes beside their AWS adapters, so handlers are unit-tested
//! without AWS and the adapters are tested against the local emulator.

pub mod aws;
pub mod config;
pub mod consumer;
pub mod dead_letter;
pub mod dynamo;
pub mod error;
pub mod idempotency;
pub mod publisher;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use consumer::{Consumer, ConsumerSettings, Handler, RecordContext};
pub use error::HandlerError;
pub use publisher::{EventPublisher, OutboundEvent};
