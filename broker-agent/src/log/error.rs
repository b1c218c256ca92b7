//! [`LogError`], the one error type of the partition log, and
//! [`LogConfigError`] for a topic configuration the log cannot use.
//!
//! Retryable or caller-actionable refusals (offset out of range, a stale
//! leader epoch, a follower append that does not continue the log) are
//! their own variants, apart from refusals of bad input (corrupt or
//! oversized batches) and from storage failures (I/O errors, which always
//! carry the path). This module never maps errors to gRPC: the agent's
//! `error.rs` is the one place that does.

use std::io;
use std::path::PathBuf;

use ballast_record::RecordError;

/// A topic configuration value the log cannot use. `key` is the config
/// key as the coordinator spells it (`segment.bytes`, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid value {value} for configuration {key}: {reason}")]
pub struct LogConfigError {
    /// The config key.
    pub key: String,
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Everything a partition log operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A file-system operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What the log was doing ("append to", "fsync", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A batch of a produce or follower append is malformed or fails its
    /// CRC. Nothing of the request was written.
    #[error("corrupt batch #{batch} at byte {position} of the request: {reason}")]
    Corrupt {
        /// Index of the batch in the request (0-based).
        batch: usize,
        /// Its byte position in the request.
        position: usize,
        /// Why it was refused.
        reason: RecordError,
    },
    /// A batch is larger than the topic's `max.message.bytes`. Nothing of
    /// the request was written.
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    RecordTooLarge {
        /// The batch size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The request is well formed but not acceptable (no batches, a
    /// keyless record in a compacted topic, inconsistent offsets inside a
    /// batch, ...). Nothing of the request was written.
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// The offset asked for is outside `[log_start, log_end]`.
    #[error("offset {requested} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: i64,
        /// First offset held.
        log_start: i64,
        /// Next offset to be written.
        log_end: i64,
    },
    /// A follower append does not continue the log: its first batch
    /// overlaps what the log holds, or leaves a gap in a log that is not
    /// compacted. Truncate (or fully reset) the log first.
    #[error(
        "follower append at offset {got} does not continue the log (log end offset {expected})"
    )]
    UnexpectedAppendOffset {
        /// The log end offset.
        expected: i64,
        /// Base offset of the offending batch.
        got: i64,
    },
    /// Fencing: a leader append with an epoch below the latest epoch in
    /// the log's leader-epoch cache (a deposed leader).
    #[error("stale leader epoch {epoch}: the log already holds epoch {latest}")]
    StaleLeaderEpoch {
        /// Epoch of the append.
        epoch: i32,
        /// Latest epoch in the log.
        latest: i32,
    },
    /// Idempotent producer: a batch's first sequence does not follow the
    /// last sequence the log holds for its producer and epoch.
    #[error(
        "producer {producer_id} epoch {epoch}: sequence {got} does not follow {last} \
         (records in between are missing)"
    )]
    OutOfOrderSequence {
        /// The producer id.
        producer_id: i64,
        /// Its epoch.
        epoch: i16,
        /// The last sequence the log holds.
        last: i32,
        /// The batch's first sequence.
        got: i32,
    },
    /// Idempotent producer: a batch's producer epoch is below the one the
    /// log holds for its producer.
    #[error("producer {producer_id}: epoch {got} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        /// The producer id.
        producer_id: i64,
        /// The log's epoch for it.
        current: i16,
        /// The batch's epoch.
        got: i16,
    },
    /// A follower append carries a batch whose partition leader epoch is
    /// below the log's latest epoch: the follower has not truncated to the
    /// leader's history (KIP-101) before fetching.
    #[error(
        "batch at offset {offset} has leader epoch {epoch}, below the log's latest epoch {latest}: \
         truncate to the leader's epoch end offset first"
    )]
    EpochOutOfOrder {
        /// Base offset of the batch.
        offset: i64,
        /// Its partition leader epoch.
        epoch: i32,
        /// Latest epoch in the log.
        latest: i32,
    },
    /// A batch read from disk failed its length or CRC check (bit rot, or
    /// damage after recovery). It is never returned.
    #[error("corrupt batch on disk in {} at position {position}: {reason}", path.display())]
    CorruptOnDisk {
        /// The segment file.
        path: PathBuf,
        /// Byte position of the batch.
        position: u64,
        /// What failed.
        reason: RecordError,
    },
    /// The log failed an I/O operation it could not undo (for example an
    /// append that failed half-way and could not be truncated back). It
    /// refuses every further write; reopen it to recover.
    #[error("log {} is offline after an unrecoverable failure: {reason}", dir.display())]
    Offline {
        /// The partition directory.
        dir: PathBuf,
        /// The first failure.
        reason: String,
    },
    /// The topic configuration is invalid.
    #[error(transparent)]
    Config(#[from] LogConfigError),
}

impl LogError {
    /// Shorthand for [`LogError::Io`].
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// `Result` with [`LogError`].
pub type LogResult<T> = Result<T, LogError>;
