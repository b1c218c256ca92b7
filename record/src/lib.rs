//! Kafka's RecordBatch v2, the unit Ballast stores on disk and sends on the
//! wire, so that a Kafka-protocol front end can later serve fetches without
//! re-encoding.
//!
//! This crate is pure (no I/O) and treats every byte as untrusted: every
//! length and count is bounded before anything is allocated, and a batch is
//! never handed out unless its CRC-32C matched. It must never panic on any
//! input (a fuzz target in `record/fuzz` checks this).
//!
//! * [`header`]: the fixed 61-byte batch header, its fields and CRC check,
//!   stamping base offset, leader epoch and log-append time.
//! * [`record`]: one record, owned ([`Record`]) and borrowed
//!   ([`RecordRef`]).
//! * [`batch`]: verifying a batch and iterating its records without copies
//!   ([`Batch`]), walking concatenated batches ([`split_batches`]), and the
//!   checks before appending a client's batch ([`validate_for_append`]).
//! * [`builder`]: building an uncompressed batch ([`BatchBuilder`]).
//! * [`compact`]: keeping some records of a batch ([`retain_records`]).
//!
//! Only uncompressed batches are decoded; a compressed one is
//! [`RecordError::UnsupportedCompression`].
//!
//! ```
//! use ballast_record::{Batch, BatchBuilder, Header};
//!
//! let mut builder = BatchBuilder::new();
//! builder.append(1_700_000_000_000, Some(b"user-1"), Some(b"hello"), &[Header::new("h", "v")])?;
//! let bytes = builder.build();
//!
//! let (header, records) = Batch::decode(&bytes)?;
//! assert_eq!(header.records_count, 1);
//! for record in records {
//!     let record = record?;
//!     assert_eq!(record.value, Some(&b"hello"[..]));
//! }
//! # Ok::<(), ballast_record::RecordError>(())
//! ```

pub mod batch;
pub mod builder;
pub mod compact;
pub mod header;
pub mod record;
mod varint;

pub use batch::{
    Batch, Batches, RecordsIter, SplitError, records, split_batches, validate_for_append,
};
pub use builder::BatchBuilder;
pub use compact::{Retained, retain_records};
pub use header::{
    BATCH_HEADER_LEN, BatchHeader, LOG_OVERHEAD, MAGIC_V2, MAX_BATCH_BYTES, RecordError,
    TimestampType, compression_name, set_base_offset, set_log_append_time,
    set_partition_leader_epoch, set_producer,
};
pub use record::{Header, HeaderRef, HeadersIter, Record, RecordRef};
