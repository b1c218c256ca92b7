//! Replication: the runtime of every hosted partition (leader or follower),
//! the follower fetchers, ISR tracking on the leader and the AlterIsr
//! requests it sends, and the background work on the logs (flush,
//! checkpoints, retention, compaction).
//!
//! * [`isr`]: PURE leader-side state (follower progress, high watermark,
//!   ISR shrink and expansion), tested with explicit times.
//! * [`partition`]: one hosted partition: its [`crate::log::PartitionLog`],
//!   its role, acks=all waiters and long-poll notifications.
//! * [`fetcher`]: one fetch loop per leader broker, batching every
//!   partition this agent follows on it.
//! * [`alter_isr`]: sends the leader's ISR changes to the active
//!   coordinator.
//! * [`manager`]: the set of hosted partitions, driven by the pushes the
//!   control side applies, and the agent's background tasks.
//!
//! # What is and is not guaranteed
//!
//! **Order.** Records of one produce request to one partition are
//! appended in request order, as one contiguous range of offsets. A
//! partition's order is the order in which its leader appended; there is
//! no order across partitions, nor between two produce requests in flight
//! at once (the client must wait for one before sending the next if it
//! needs their order). Consumers see a partition's offsets in increasing
//! order, without gaps except those left by compaction, and only below the
//! high watermark.
//!
//! **Durability.** A record acknowledged with acks=all under
//! `replication.mode=sync` is held by every member of the ISR at the time
//! (the high watermark passed it) and the ISR had at least
//! `min.insync.replicas` members; with `min.insync.replicas >= 2` it
//! survives the loss of any one replica, and clean leader elections (from
//! the ISR) never lose it. It is on disk (fsynced) only under
//! `flush.mode=sync` or once a flush ran; otherwise it survives on the
//! replicas' page caches, as in Kafka. acks=1 and acks=0 records are
//! acknowledged once the leader wrote them: a leader failure before a
//! follower fetched them loses them (the new leader's log wins and the old
//! leader truncates them when it follows). `replication.mode=async`
//! (MetaQ's ASYNC_MASTER) treats acks=all like acks=1: it answers after
//! the leader's write and loses the same records; its only difference from
//! acks=1 is the name of what the producer asked for. An unclean election
//! (`unclean.leader.election.enable`) can lose acknowledged records; the
//! replicas then still converge on the new leader's log (KIP-101
//! truncation), so they never diverge.
//!
//! **Failures the producer sees.** NOT_ENOUGH_REPLICAS means nothing was
//! written. NOT_ENOUGH_REPLICAS_AFTER_APPEND, REQUEST_TIMED_OUT and
//! NOT_LEADER after the append mean the records were written by the
//! leader but not acknowledged: they may or may not survive, and a retry
//! can duplicate them (there is no idempotent producer yet).

pub mod alter_isr;
pub mod fetcher;
pub mod isr;
pub mod manager;
pub mod partition;
pub mod throttle;

use std::time::Duration;

use ballast_proto::v1::ErrorCode;

use crate::log::LogError;

pub use manager::ReplicaManager;

/// Agent-wide replication and data-plane settings (per-topic settings come
/// with each pushed partition's configs). Defaults are Kafka's where Kafka
/// has the setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// `replica.lag.time.max.ms`: an ISR follower not caught up for longer
    /// leaves the ISR (default 30 s).
    pub replica_lag_time_max: Duration,
    /// `replica.fetch.wait.max.ms`: a follower's long poll (default 500 ms).
    pub replica_fetch_max_wait: Duration,
    /// `replica.fetch.response.max.bytes`: bytes per follower fetch
    /// (default 10 MiB).
    pub replica_fetch_max_bytes: u32,
    /// `replica.fetch.max.bytes`: bytes per partition in a follower fetch
    /// (default 1 MiB; one batch is always returned, however large).
    pub replica_fetch_partition_max_bytes: u32,
    /// Largest produce request accepted, in record bytes; larger ones are
    /// refused with REQUEST_TOO_LARGE (default 64 MiB).
    pub max_request_bytes: usize,
    /// Largest fetch response, in record bytes (consumers asking for more
    /// get this; default 64 MiB).
    pub max_fetch_bytes: usize,
    /// Longest long poll a consumer may ask for (default 30 s).
    pub max_fetch_wait: Duration,
    /// Longest produce timeout honoured, and the one used when a request
    /// gives 0 is [`ReplicationConfig::default_produce_timeout`]
    /// (default 5 min).
    pub max_produce_timeout: Duration,
    /// Produce timeout when a request gives none (default 30 s).
    pub default_produce_timeout: Duration,
    /// `log.retention.check.interval.ms`: how often retention and
    /// compaction run (default 5 min).
    pub retention_check_interval: Duration,
    /// `replica.high.watermark.checkpoint.interval.ms`: how often the high
    /// watermark and recovery point are written (default 5 s).
    pub checkpoint_interval: Duration,
    /// `log.flush.scheduler.interval.ms`: how often background flushes are
    /// considered (default 100 ms).
    pub flush_check_interval: Duration,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            replica_lag_time_max: Duration::from_secs(30),
            replica_fetch_max_wait: Duration::from_millis(500),
            replica_fetch_max_bytes: 10 << 20,
            replica_fetch_partition_max_bytes: 1 << 20,
            max_request_bytes: 64 << 20,
            max_fetch_bytes: 64 << 20,
            max_fetch_wait: Duration::from_secs(30),
            max_produce_timeout: Duration::from_secs(300),
            default_produce_timeout: Duration::from_secs(30),
            retention_check_interval: Duration::from_secs(300),
            checkpoint_interval: Duration::from_secs(5),
            flush_check_interval: Duration::from_millis(100),
        }
    }
}

impl ReplicationConfig {
    /// Checks every field; the error names the first bad one (as a flag
    /// name) and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            ("replica-lag-time-max", self.replica_lag_time_max),
            ("replica-fetch-max-wait", self.replica_fetch_max_wait),
            ("max-fetch-wait", self.max_fetch_wait),
            ("max-produce-timeout", self.max_produce_timeout),
            ("default-produce-timeout", self.default_produce_timeout),
            ("retention-check-interval", self.retention_check_interval),
            ("checkpoint-interval", self.checkpoint_interval),
            ("flush-check-interval", self.flush_check_interval),
        ];
        for (name, d) in positive {
            if d.is_zero() {
                return Err((name, "must be more than 0".to_owned()));
            }
        }
        if self.replica_fetch_max_bytes == 0 {
            return Err(("replica-fetch-max-bytes", "must be more than 0".to_owned()));
        }
        if self.replica_fetch_partition_max_bytes == 0 {
            return Err((
                "replica-fetch-partition-max-bytes",
                "must be more than 0".to_owned(),
            ));
        }
        for (name, v) in [
            ("max-request-bytes", self.max_request_bytes),
            ("max-fetch-bytes", self.max_fetch_bytes),
        ] {
            if v == 0 || v > MAX_DATA_MESSAGE_BYTES {
                return Err((
                    name,
                    format!("must be in 1..={MAX_DATA_MESSAGE_BYTES}, got {v}"),
                ));
            }
        }
        Ok(())
    }
}

/// Upper bound for the request and fetch size settings: 1 GiB (gRPC
/// messages are held in memory whole).
pub const MAX_DATA_MESSAGE_BYTES: usize = 1 << 30;

/// `replication.mode` of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationMode {
    /// acks=all waits for the ISR (MetaQ's SYNC_MASTER; the default).
    Sync,
    /// acks=all answers after the leader's write (MetaQ's ASYNC_MASTER).
    Async,
}

/// A per-partition refusal of a produce, fetch or list-offsets request.
/// Each variant is one [`ErrorCode`] ([`ReplicaError::code`] is the one
/// mapping). Retryable ones (`NotLeader`, the epoch errors, the
/// not-enough-replicas ones, timeouts) are separate from refusals of the
/// input (`RecordTooLarge`, `CorruptMessage`, `InvalidRequest`) and from
/// storage failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// This agent does not lead the partition; the leader as last pushed
    /// (-1 when unknown or offline).
    #[error("not the leader; the leader is broker {leader} (leader epoch {leader_epoch})")]
    NotLeader {
        /// The leader's broker id, -1 when none is known.
        leader: i32,
        /// Its leader epoch.
        leader_epoch: i32,
    },
    /// The partition is not hosted here and its leader is unknown.
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// acks=all and the committed ISR is smaller than
    /// `min.insync.replicas`: nothing was written.
    #[error("not enough replicas: ISR has {isr} members, min.insync.replicas is {min}")]
    NotEnoughReplicas {
        /// Committed ISR size.
        isr: usize,
        /// `min.insync.replicas`.
        min: usize,
    },
    /// Written, but the ISR fell below `min.insync.replicas` before the
    /// high watermark passed the records: not acknowledged.
    #[error(
        "written by the leader, but the ISR fell below min.insync.replicas before it was replicated"
    )]
    NotEnoughReplicasAfterAppend,
    /// Written, but not replicated within the request timeout.
    #[error("written by the leader, but not replicated to the ISR within {timeout_ms} ms")]
    RequestTimedOut {
        /// The timeout applied.
        timeout_ms: u64,
    },
    /// A batch larger than the topic's `max.message.bytes`.
    #[error("batch of {size} bytes exceeds max.message.bytes {max}")]
    RecordTooLarge {
        /// Batch size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A batch failed its CRC or is malformed; nothing was written.
    #[error("corrupt message: {0}")]
    CorruptMessage(String),
    /// The offset is outside the log.
    #[error("offset {requested} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// Offset asked for.
        requested: i64,
        /// First offset held.
        log_start: i64,
        /// Log end offset.
        log_end: i64,
    },
    /// The request's leader epoch is older than the partition's.
    #[error("fenced leader epoch: request has {request}, partition is at {current}")]
    FencedLeaderEpoch {
        /// In the request.
        request: i32,
        /// Current.
        current: i32,
    },
    /// The request's leader epoch is newer than this agent knows.
    #[error("unknown leader epoch: request has {request}, this agent knows {current}")]
    UnknownLeaderEpoch {
        /// In the request.
        request: i32,
        /// Known here.
        current: i32,
    },
    /// The request is not acceptable.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The log failed an I/O operation.
    #[error("storage error: {0}")]
    Storage(String),
    /// The request is larger than the agent accepts.
    #[error("request of {size} record bytes exceeds the limit of {max}")]
    RequestTooLarge {
        /// Record bytes in the request.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A follower fetch from a broker that is not a replica, or with a
    /// stale broker epoch.
    #[error("not a replica: {0}")]
    NotReplica(String),
    /// A client write to an internal topic.
    #[error("topic {0} is internal: only the group coordinator writes it")]
    InvalidTopic(String),
    /// Idempotent producer: records between the last sequence and this
    /// batch are missing.
    #[error("{0}")]
    OutOfOrderSequence(String),
    /// Idempotent producer: an older epoch of the producer.
    #[error("{0}")]
    InvalidProducerEpoch(String),
}

impl ReplicaError {
    /// The wire code: the one place replica errors become [`ErrorCode`]s.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotLeader { .. } => ErrorCode::NotLeader,
            Self::UnknownTopicOrPartition => ErrorCode::UnknownTopicOrPartition,
            Self::NotEnoughReplicas { .. } => ErrorCode::NotEnoughReplicas,
            Self::NotEnoughReplicasAfterAppend => ErrorCode::NotEnoughReplicasAfterAppend,
            Self::RequestTimedOut { .. } => ErrorCode::RequestTimedOut,
            Self::RecordTooLarge { .. } => ErrorCode::RecordTooLarge,
            Self::CorruptMessage(_) => ErrorCode::CorruptMessage,
            Self::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            Self::FencedLeaderEpoch { .. } => ErrorCode::FencedLeaderEpoch,
            Self::UnknownLeaderEpoch { .. } => ErrorCode::UnknownLeaderEpoch,
            Self::InvalidRequest(_) => ErrorCode::InvalidRequest,
            Self::Storage(_) => ErrorCode::StorageError,
            Self::RequestTooLarge { .. } => ErrorCode::RequestTooLarge,
            Self::NotReplica(_) => ErrorCode::NotReplica,
            Self::InvalidTopic(_) => ErrorCode::InvalidTopic,
            Self::OutOfOrderSequence(_) => ErrorCode::OutOfOrderSequenceNumber,
            Self::InvalidProducerEpoch(_) => ErrorCode::InvalidProducerEpoch,
        }
    }
}

impl From<LogError> for ReplicaError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::Corrupt { .. } => Self::CorruptMessage(e.to_string()),
            LogError::RecordTooLarge { size, max } => Self::RecordTooLarge { size, max },
            LogError::InvalidRecord(m) => Self::InvalidRequest(m),
            LogError::OffsetOutOfRange {
                requested,
                log_start,
                log_end,
            } => Self::OffsetOutOfRange {
                requested,
                log_start,
                log_end,
            },
            // A leader append refused because the log holds a newer epoch:
            // this agent has been deposed.
            LogError::StaleLeaderEpoch { .. } => Self::NotLeader {
                leader: -1,
                leader_epoch: -1,
            },
            LogError::Config(c) => Self::InvalidRequest(c.to_string()),
            LogError::OutOfOrderSequence { .. } => Self::OutOfOrderSequence(e.to_string()),
            LogError::InvalidProducerEpoch { .. } => Self::InvalidProducerEpoch(e.to_string()),
            other => Self::Storage(other.to_string()),
        }
    }
}

/// Milliseconds since the Unix epoch (record timestamps, retention).
pub(crate) fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A monotonic clock in milliseconds since the agent started, for lag and
/// timeouts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    start: std::time::Instant,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            start: std::time::Instant::now(),
        }
    }

    /// Milliseconds since [`Clock::new`] (at least 1, so that 0 can mean
    /// "never").
    pub fn now_ms(&self) -> i64 {
        i64::try_from(self.start.elapsed().as_millis())
            .unwrap_or(i64::MAX)
            .saturating_add(1)
    }
}
