//! The data lake: every event of the bus, kept in S3 as gzip-compressed JSON Lines under Hive-style
//! partitions, for Athena (or any engine that reads Hive partitions):
//!
//! ```text
//! s3://<LakeBucket>/events/event_type=OrderPlaced/dt=2026-11-29/<hash of the event ids>.json.gz
//! ```
//!
//! One object per batch and partition, named from the event ids it holds, so a redelivered batch
//! overwrites its object instead of adding a second copy. Each line is one event: its metadata as
//! columns and its data (upcast to the current schema version) as a JSON string.
//!
//! - [`objects`]: a batch of events → the objects to write (plain functions).
//! - [`store`]: the `ObjectStore` port, its S3 adapter and an in-memory fake.
//! - [`handler`]: the batch handler.

pub mod handler;
pub mod objects;
pub mod store;
