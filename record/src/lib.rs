//! Kafka's RecordBatch v2, the unit Ballast stores on disk and sends on the
//! wire, so that a Kafka-protocol front end can later serve fetches without
//! re-encoding.
//!
//! This crate is pure (no I/O) and treats every byte as untrusted: every
//! length and count is bounded before anything is allocated, and a batch is
//! never handed out unless its CRC-32C matched.
//!
//! * [`header`]: the fixed 61-byte batch header, its fields and CRC check.

pub mod header;

pub use header::{BATCH_HEADER_LEN, BatchHeader, RecordError};
