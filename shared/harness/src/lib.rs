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
//! without AWS and the adapters are tested against the local emulator. The adapters and the SDK's
//! configuration are the default feature `aws`; without it (the fuzz targets, `shared/fuzz`) the
//! crate builds with the fakes alone and no AWS SDK.

// The consumer contains a panic to the record that caused it (`catch_unwind`), which only works when
// panics unwind. `cargo lambda build --release` defaults to `panic = "abort"` unless the workspace's
// release profile says otherwise; this stops such a build instead of shipping a binary in which one
// bad record kills the whole batch.
#[cfg(not(panic = "unwind"))]
compile_error!(
    "orderflow-harness needs panic = \"unwind\" (set it in [profile.release]): the consumer contains panics per record"
);

#[cfg(feature = "aws")]
pub mod aws;
pub mod batch;
pub mod caller;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod dead_letter;
pub mod deadline;
#[cfg(feature = "aws")]
pub mod dynamo;
pub mod error;
pub mod idempotency;
pub mod publisher;
pub mod redact;
pub mod secret;
pub mod sqs;
pub mod store;
pub mod telemetry;
pub mod visibility;

pub use batch::{BatchConsumer, BatchHandler, BatchRecord};
pub use consumer::{Consumer, ConsumerSettings, Handler, RecordContext};
pub use error::HandlerError;
pub use publisher::{EventPublisher, OutboundEvent};
pub use store::StoreError;
