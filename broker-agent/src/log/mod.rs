//! Partition logs: the storage of one partition replica on an agent.
//!
//! Owns everything under a partition directory except `partition.json`
//! (the control side's): segments, indexes, checkpoints, and the rules for
//! appending, reading, recovering, truncating, flushing, retaining and
//! compacting them. It never talks to the network or the coordinator, never
//! reads a clock (callers pass `now_ms`), and never hands out a batch whose
//! CRC it has not verified.
//!
//! * [`PartitionLog`] (`partition_log.rs`): the log and its operations.
//! * [`LogConfig`] (`config.rs`): the topic configuration it obeys.
//! * [`LeaderEpochCache`] (`epoch.rs`): KIP-101/279 epochs, pure, and
//!   [`follower_truncation`].
//! * `segment.rs`, `index.rs`: one segment and its sparse indexes.
//! * [`retention`]: which old segments to delete (pure planner).
//! * [`compaction`]: keeping the latest record per key.
//! * [`checkpoint`]: atomic checkpoint files.
//!
//! On disk, in the partition directory:
//!
//! | file | contents |
//! |---|---|
//! | `<base:020>.log` | record batches (Kafka's RecordBatch v2) back to back, as on the wire |
//! | `<base:020>.index` | sparse offset index: big-endian relative offset `u32` + position `u32`, one every `index.interval.bytes` |
//! | `<base:020>.timeindex` | sparse time index: largest timestamp so far `i64` + relative offset `u32` |
//! | `<base:020>.log.cleaned`, `.log.swap` | compaction in progress (finished or discarded at open) |
//! | `high-watermark`, `recovery-point`, `log-start-offset` | `0\n<offset>\n` |
//! | `leader-epoch-checkpoint` | `0\n<count>\n<epoch> <start offset>\n...` |
//! | `*.tmp` | a checkpoint being written (removed at open) |

pub mod checkpoint;
pub mod compaction;
pub mod config;
pub mod epoch;
pub mod error;
mod index;
mod partition_log;
pub mod producer_state;
pub mod retention;
mod segment;

pub use compaction::CompactionOutcome;
pub use config::{CleanupPolicy, FlushPolicy, LogConfig};
pub use epoch::{
    EpochEndOffset, EpochEntry, LeaderEpochCache, Truncation, UNDEFINED_EPOCH,
    UNDEFINED_EPOCH_OFFSET, follower_truncation,
};
pub use error::{LogConfigError, LogError, LogResult};
pub use partition_log::{AppendInfo, PartitionLog, ReadResult, RecoveryReport, RetentionOutcome};
pub use retention::RetentionReason;
pub use segment::{INDEX_SUFFIX, LOG_SUFFIX, NO_TIMESTAMP, TIME_INDEX_SUFFIX, file_stem};
