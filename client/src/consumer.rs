//! A simple consumer: partitions assigned by the caller (no group), records
//! fetched from each partition's leader.
//!
//! Owns positions and fetching. The caller [`Consumer::assign`]s partitions
//! with a start ([`StartPosition`]); [`Consumer::poll`] resolves starts that
//! need the log (earliest, latest, by timestamp) with `ListOffsets`, keeps
//! at most one long-polling `Fetch` in flight per leader, decodes the
//! batches that come back ([`decode_fetched`], pure), and hands out records
//! in offset order per partition, advancing each position past what it
//! handed out. Fetches and offset lookups run as tasks that outlive a
//! `poll` call, so a short poll loses nothing: a late answer is used by the
//! next poll, or dropped if the caller [`Consumer::seek`]ed meanwhile.
//!
//! Truncation detection (KIP-320): each partition remembers the leader
//! epoch of the last record handed out (or the epoch a caller gave with
//! [`Consumer::assign_at`], e.g. a group's committed offset) and sends it as
//! `last_fetched_epoch` with every fetch. When the leader's log no longer
//! holds that history (an unclean election truncated it), the answer carries
//! `diverging_epoch` and the partition moves back to its end offset, logged
//! as a warning ([`on_diverging`], pure), instead of applying the reset
//! policy. An answer without a usable end offset applies the reset policy.
//!
//! Errors, by kind: a leader that moved (`NOT_LEADER` with a hint updates
//! the one partition; without, a metadata refresh), an epoch mismatch, an
//! unreachable agent or an agent-side timeout are retried after a backoff
//! and never reach the caller. `OFFSET_OUT_OF_RANGE` applies
//! [`ConsumerConfig::auto_offset_reset`]. A corrupt batch or a refusal that
//! a retry cannot cure is returned by `poll` once, and that partition stops
//! until the caller seeks it.
//!
//! Guarantees: records of a partition are returned in offset order, each
//! once per position walk (a seek backwards returns them again); records
//! before the requested offset in the first batch are skipped. Only records
//! below the high watermark are returned (the agent sends no more).
//! Must never hold a lock across an await or decode bytes without bounds
//! (`ballast-record` checks every length).
//!
//! ```no_run
//! # async fn demo() -> Result<(), ballast_client::ConsumeError> {
//! use std::time::Duration;
//! use ballast_client::{Consumer, ConsumerConfig, StartPosition};
//!
//! let mut consumer = Consumer::connect(vec!["127.0.0.1:9092".into()], ConsumerConfig::default())?;
//! let partitions = consumer.partitions_for("orders").await?;
//! consumer.assign("orders", (0..partitions).map(|p| (p, StartPosition::Earliest)));
//! loop {
//!     for r in consumer.poll(Duration::from_secs(1)).await? {
//!         println!("{}-{} @ {}: {:?}", r.topic, r.partition, r.offset, r.value);
//!     }
//! }
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use ballast_proto::v1::{
    EpochEndOffset, ErrorCode, FetchPartition, FetchPartitionResult, FetchRequest, FetchResponse,
    LeaderHint, ListOffsetsPartition, ListOffsetsRequest, ListOffsetsResponse, ListOffsetsResult,
};
use ballast_record::{Batch, Header, MAX_BATCH_BYTES, RecordError, split_batches};
use bytes::Bytes;
use tokio::task::JoinSet;
use tonic::{Code, Status};

use crate::accumulator::TopicPartition;
use crate::connection::{Connections, error_code_name, transport_retriable};
use crate::metadata::{Metadata, MetadataError, MetadataOptions};
use crate::retry::code_name;

/// Where to start reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    /// The log start offset.
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
    /// This offset (out of range: see [`ConsumerConfig::auto_offset_reset`]).
    Offset(i64),
    /// The first record with a timestamp at or after this one (ms since
    /// the epoch); the high watermark if none is.
    Timestamp(i64),
}

/// What to do when a position is outside the log (Kafka's
/// `auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// Go to the log start offset.
    Earliest,
    /// Go to the high watermark.
    #[default]
    Latest,
    /// Return [`ConsumeError::OffsetOutOfRange`] and stop the partition.
    Error,
}

/// Consumer settings; the defaults are Kafka's where Kafka has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerConfig {
    /// Long poll: an agent holds a fetch up to this long waiting for
    /// `min_bytes` (`fetch.max.wait.ms`).
    pub max_wait: Duration,
    /// Bytes an agent waits for before answering (`fetch.min.bytes`).
    pub min_bytes: u32,
    /// Limit on one fetch answer (`fetch.max.bytes`); the first batch is
    /// returned whole even if larger.
    pub max_bytes: u32,
    /// Limit per partition in one fetch (`max.partition.fetch.bytes`).
    pub partition_max_bytes: u32,
    /// Most records one [`Consumer::poll`] returns (`max.poll.records`).
    pub max_poll_records: usize,
    /// What to do at a position outside the log.
    pub auto_offset_reset: OffsetReset,
    /// Limit on one request beyond its long-poll wait.
    pub request_timeout: Duration,
    /// Pause before retrying a partition after a retriable error.
    pub retry_backoff: Duration,
    /// How long [`Consumer::partitions_for`] waits for a topic to appear.
    pub metadata_timeout: Duration,
    /// Metadata refresh settings.
    pub metadata: MetadataOptions,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 16 * 1024 * 1024,
            partition_max_bytes: 1024 * 1024,
            max_poll_records: 500,
            auto_offset_reset: OffsetReset::Latest,
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            metadata_timeout: Duration::from_secs(60),
            metadata: MetadataOptions::default(),
        }
    }
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Create time, or the log-append time for such topics (ms).
    pub timestamp: i64,
    /// Key (`None`: null).
    pub key: Option<Bytes>,
    /// Value (`None`: null, a tombstone).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// Leader epoch of the batch (the leader that wrote it).
    pub leader_epoch: i32,
}

/// Why [`Consumer::poll`] (or another call) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsumeError {
    /// No bootstrap address, a bad one, or a topic never found.
    #[error(transparent)]
    Metadata(#[from] MetadataError),

    /// A setting is out of range.
    #[error("invalid consumer config: {field}: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// The partition is not assigned to this consumer.
    #[error("{topic}-{partition} is not assigned")]
    NotAssigned {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },

    /// The position is outside the log and the reset policy is `Error`.
    #[error(
        "{topic}-{partition}: offset {offset} is out of range (log start {log_start_offset}, log end {log_end_offset})"
    )]
    OffsetOutOfRange {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The position.
        offset: i64,
        /// The log's first offset, as the agent said.
        log_start_offset: i64,
        /// The log end offset, as the agent said.
        log_end_offset: i64,
    },

    /// A batch could not be decoded (corrupt, or compressed).
    #[error("{topic}-{partition}: cannot read the batch at offset {offset}: {reason}")]
    Corrupt {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The batch's base offset.
        offset: i64,
        /// What is wrong.
        reason: String,
    },

    /// The leader refused with an error a retry will not cure.
    #[error("{topic}-{partition}: {}: {message} (agent {address})", error_code_name(*.code))]
    Rejected {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The Data service's error code.
        code: i32,
        /// The agent's message.
        message: String,
        /// The agent that answered.
        address: String,
    },

    /// The agent's gRPC server refused the call in a way a retry would not
    /// cure (e.g. `UNIMPLEMENTED`).
    #[error("{topic}-{partition}: {} from agent {address}: {message}", code_name(*.code))]
    Transport {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The agent called.
        address: String,
        /// The gRPC status code.
        code: Code,
        /// The status message.
        message: String,
    },
}

/// Records decoded from one partition's fetch answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// Records at or after the fetch offset, in offset order.
    pub records: Vec<ConsumerRecord>,
    /// Where the next fetch starts: after the last whole batch read (past
    /// offsets compaction removed and control batches), never before the
    /// fetch offset.
    pub next_offset: i64,
}

/// Decodes one partition's fetched bytes (concatenated RecordBatch v2):
/// skips batches and records before `fetch_offset` and control batches,
/// and stops at a partial batch at the end. A bad batch after good ones
/// ends the answer there (the next fetch starts at it); a bad first batch
/// is an error with its base offset. Keys and values share `bytes`.
pub fn decode_fetched(
    topic: &str,
    partition: i32,
    fetch_offset: i64,
    bytes: Bytes,
) -> Result<Fetched, (i64, RecordError)> {
    let mut records = Vec::new();
    let mut next = fetch_offset;
    for item in split_batches(&bytes) {
        let (header, batch_bytes) = match item {
            Ok(b) => b,
            Err(e) => {
                let partial_tail =
                    matches!(e.error, RecordError::Truncated { .. }) && e.valid_batches > 0;
                if partial_tail || next > fetch_offset || !records.is_empty() {
                    break;
                }
                return Err((next, e.error));
            }
        };
        if header.next_offset() <= next {
            continue;
        }
        if header.is_control() {
            next = header.next_offset();
            continue;
        }
        let batch = match Batch::parse(batch_bytes) {
            Ok(b) => b,
            Err(e) if next == fetch_offset && records.is_empty() => {
                return Err((header.base_offset, e));
            }
            Err(_) => break,
        };
        let mut whole = true;
        for r in batch.records() {
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    if records.is_empty() && next == fetch_offset {
                        return Err((header.base_offset, e));
                    }
                    whole = false;
                    break;
                }
            };
            if r.offset < next {
                continue;
            }
            records.push(ConsumerRecord {
                topic: topic.to_owned(),
                partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.map(|k| bytes.slice_ref(k)),
                value: r.value.map(|v| bytes.slice_ref(v)),
                headers: r
                    .headers()
                    .map(|h| Header {
                        key: h.key.to_owned(),
                        value: h.value.map(<[u8]>::to_vec),
                    })
                    .collect(),
                leader_epoch: header.partition_leader_epoch,
            });
            next = r.offset + 1;
        }
        if !whole {
            break;
        }
        next = next.max(header.next_offset());
    }
    Ok(Fetched {
        records,
        next_offset: next,
    })
}

/// A partition's read position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// To be looked up with ListOffsets.
    Lookup(StartPosition),
    /// The next offset to hand out.
    At(i64),
    /// An error was returned for it; waits for a seek.
    Stopped,
}

#[derive(Debug)]
struct PartitionState {
    position: Position,
    /// Fetched, not yet handed out.
    buffer: VecDeque<ConsumerRecord>,
    /// The position once the buffer is handed out.
    buffer_next: i64,
    /// A fetch or lookup including this partition is in flight.
    busy: bool,
    retry_at: Option<Instant>,
    high_watermark: Option<i64>,
    /// Leader epoch of the last record handed out (or given with the
    /// start offset); sent as `last_fetched_epoch`. `None`: unknown.
    last_epoch: Option<i32>,
}

impl PartitionState {
    fn new(start: StartPosition) -> PartitionState {
        PartitionState {
            position: initial(start),
            buffer: VecDeque::new(),
            buffer_next: 0,
            busy: false,
            retry_at: None,
            high_watermark: None,
            last_epoch: None,
        }
    }
}

/// What a fetch answer's `diverging_epoch` means for a partition read at
/// `fetch_offset` (KIP-320).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Divergence {
    /// No divergence reported, or one that does not reach back before the
    /// fetch offset: use the answer as usual.
    None,
    /// The log was truncated below the position: continue at `offset`,
    /// the end of the last epoch both logs share, with `epoch` as the
    /// last fetched epoch.
    Truncated {
        /// Where to continue.
        offset: i64,
        /// The shared epoch whose end that is.
        epoch: i32,
    },
    /// Diverged, but the leader named no usable end offset: apply the
    /// reset policy.
    Reset,
}

/// Decides what a `diverging_epoch` in a fetch answer means (pure). Kafka's
/// rule: only an end offset below the fetch offset is a truncation; a
/// negative epoch or end offset means the leader has no common history.
pub fn on_diverging(fetch_offset: i64, diverging: Option<&EpochEndOffset>) -> Divergence {
    match diverging {
        None => Divergence::None,
        Some(d) if d.epoch < 0 || d.end_offset < 0 => Divergence::Reset,
        Some(d) if d.end_offset < fetch_offset => Divergence::Truncated {
            offset: d.end_offset,
            epoch: d.epoch,
        },
        Some(_) => Divergence::None,
    }
}

fn initial(start: StartPosition) -> Position {
    match start {
        StartPosition::Offset(o) => Position::At(o),
        other => Position::Lookup(other),
    }
}

/// What a background request brought back.
#[derive(Debug)]
enum Done {
    Fetched {
        broker_id: i32,
        address: String,
        requested: Vec<(TopicPartition, i64)>,
        result: Result<FetchResponse, Status>,
    },
    Listed {
        broker_id: i32,
        address: String,
        requested: Vec<(TopicPartition, StartPosition)>,
        result: Result<ListOffsetsResponse, Status>,
    },
    Refreshed(Result<(), MetadataError>),
}

/// A consumer of assigned partitions. Not shared: one task polls it.
#[derive(Debug)]
pub struct Consumer {
    config: ConsumerConfig,
    metadata: Metadata,
    connections: Connections,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    tasks: JoinSet<Done>,
    /// Brokers with a fetch in flight (one each).
    fetching: BTreeSet<i32>,
    refreshing: bool,
    refresh_wanted: bool,
    errors: VecDeque<ConsumeError>,
    /// Where the next poll starts handing out records (fairness).
    rotate: usize,
}

impl Consumer {
    /// A consumer that finds the cluster through the agents at `bootstrap`
    /// (`host:port` of their Data service). Dials nothing until polled.
    pub fn connect(
        bootstrap: Vec<String>,
        config: ConsumerConfig,
    ) -> Result<Consumer, ConsumeError> {
        let bad = |field: &'static str, reason: &str| {
            Err(ConsumeError::InvalidConfig {
                field,
                reason: reason.to_owned(),
            })
        };
        if config.max_poll_records == 0 {
            return bad("max_poll_records", "must be at least 1");
        }
        if config.max_bytes == 0 || config.partition_max_bytes == 0 {
            return bad("max_bytes", "must be at least 1");
        }
        if config.max_wait.as_millis() > u128::from(u32::MAX) {
            return bad("max_wait", "must be below 49 days");
        }
        let connections = Connections::new(config.metadata.connect_timeout);
        let metadata = Metadata::new(bootstrap, config.metadata.clone(), connections.clone())?;
        Ok(Consumer {
            config,
            metadata,
            connections,
            partitions: BTreeMap::new(),
            tasks: JoinSet::new(),
            fetching: BTreeSet::new(),
            refreshing: false,
            refresh_wanted: false,
            errors: VecDeque::new(),
            rotate: 0,
        })
    }

    /// The settings this consumer was made with.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// The metadata cache (shared with the consumer's tasks), for the group
    /// member built on this consumer.
    pub(crate) fn metadata_handle(&self) -> Metadata {
        self.metadata.clone()
    }

    /// The topic's partition count, waiting up to `metadata_timeout` for it
    /// to appear in metadata.
    pub async fn partitions_for(&self, topic: &str) -> Result<i32, ConsumeError> {
        Ok(self
            .metadata
            .wait_for_topic(topic, None, self.config.metadata_timeout)
            .await?)
    }

    /// Assigns partitions of `topic`, each with where to start; a partition
    /// already assigned starts over there. Other partitions are kept.
    pub fn assign(
        &mut self,
        topic: &str,
        partitions: impl IntoIterator<Item = (i32, StartPosition)>,
    ) {
        if self.metadata.with(|c| c.want(topic)) {
            self.refresh_wanted = true;
        }
        for (partition, start) in partitions {
            let tp = TopicPartition::new(topic, partition);
            match self.partitions.get_mut(&tp) {
                Some(state) => reposition(state, start),
                None => {
                    self.partitions.insert(tp, PartitionState::new(start));
                }
            }
        }
    }

    /// Assigns one partition (or moves it, if assigned) to start at
    /// `offset`, remembering `leader_epoch` as the epoch of the record
    /// before it: how a group member resumes at a committed offset. The
    /// first fetch then carries that epoch so a log truncated since the
    /// commit is detected (see the module documentation); `None` skips the
    /// check. Records fetched for an old position are dropped.
    pub fn assign_at(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        leader_epoch: Option<i32>,
    ) {
        self.assign(topic, [(partition, StartPosition::Offset(offset))]);
        if let Some(state) = self
            .partitions
            .get_mut(&TopicPartition::new(topic, partition))
        {
            state.last_epoch = leader_epoch.filter(|e| *e >= 0);
        }
    }

    /// Drops every partition of `topic` from the assignment.
    pub fn unassign(&mut self, topic: &str) {
        self.partitions.retain(|tp, _| tp.topic != topic);
    }

    /// Drops these partitions from the assignment, with anything fetched
    /// for them and not handed out; others are kept. A fetch in flight for
    /// them is ignored when it comes back.
    pub fn unassign_partitions(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.partitions.remove(tp);
        }
    }

    /// The leader epoch of the last record handed out for the partition
    /// (or the one given to [`Consumer::assign_at`]); `None` when unknown
    /// or not assigned. With [`Consumer::position`] it is what a group
    /// member commits.
    pub fn last_epoch(&self, topic: &str, partition: i32) -> Option<i32> {
        self.partitions
            .get(&TopicPartition::new(topic, partition))?
            .last_epoch
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }

    /// Moves a partition's position; records fetched for the old one are
    /// dropped. Also resumes a partition stopped by an error.
    pub fn seek(
        &mut self,
        topic: &str,
        partition: i32,
        start: StartPosition,
    ) -> Result<(), ConsumeError> {
        let tp = TopicPartition::new(topic, partition);
        let state = self
            .partitions
            .get_mut(&tp)
            .ok_or(ConsumeError::NotAssigned {
                topic: topic.to_owned(),
                partition,
            })?;
        reposition(state, start);
        Ok(())
    }

    /// The offset of the next record [`Consumer::poll`] returns for the
    /// partition; `None` when not assigned, not looked up yet, or stopped.
    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        match self
            .partitions
            .get(&TopicPartition::new(topic, partition))?
            .position
        {
            Position::At(o) => Some(o),
            _ => None,
        }
    }

    /// The partition's high watermark from the last fetch answer.
    pub fn high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        self.partitions
            .get(&TopicPartition::new(topic, partition))?
            .high_watermark
    }

    /// Waits up to `timeout` for records of the assigned partitions and
    /// returns at most `max_poll_records` of them (empty when none came).
    /// An error is returned once; see the module documentation.
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ConsumeError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(e) = self.errors.pop_front() {
                return Err(e);
            }
            let records = self.take_buffered();
            if !records.is_empty() {
                return Ok(records);
            }
            let now = tokio::time::Instant::now().into_std();
            self.start_refresh(now);
            self.start_lookups(now);
            self.start_fetches(now);
            let retry = self
                .partitions
                .values()
                .filter_map(|s| s.retry_at)
                .filter(|t| *t > now)
                .min();
            let mut wake = deadline;
            if let Some(t) = retry {
                wake = wake.min(tokio::time::Instant::from_std(t));
            }
            if self.tasks.is_empty() {
                // Nothing in flight: partitions wait for a leader or a
                // backoff; look again soon.
                let soon = tokio::time::Instant::from_std(now + self.config.retry_backoff);
                wake = wake.min(soon);
            }
            tokio::select! {
                Some(joined) = self.tasks.join_next() => match joined {
                    Ok(done) => self.on_done(done),
                    // A task panicked or was aborted: its partitions are
                    // released below so they are tried again.
                    Err(_) => self.release_all(),
                },
                () = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= deadline {
                        if let Some(e) = self.errors.pop_front() {
                            return Err(e);
                        }
                        return Ok(self.take_buffered());
                    }
                }
            }
        }
    }

    /// Hands out up to `max_poll_records` buffered records, a partition's
    /// records in order, starting at a rotating partition.
    fn take_buffered(&mut self) -> Vec<ConsumerRecord> {
        let mut out = Vec::new();
        let n = self.partitions.len();
        if n == 0 {
            return out;
        }
        let start = self.rotate % n;
        self.rotate = self.rotate.wrapping_add(1);
        let limit = self.config.max_poll_records;
        for state in self.partitions.values_mut().skip(start) {
            take_from(state, &mut out, limit);
        }
        for state in self.partitions.values_mut().take(start) {
            take_from(state, &mut out, limit);
        }
        out
    }

    fn release_all(&mut self) {
        // Only reached if a task panicked: forget what was in flight.
        for s in self.partitions.values_mut() {
            s.busy = false;
        }
        self.fetching.clear();
        self.refreshing = false;
    }

    fn start_refresh(&mut self, now: Instant) {
        if self.refreshing || self.partitions.is_empty() {
            return;
        }
        let max_age = self.config.metadata.max_age;
        if !(self.refresh_wanted || self.metadata.with(|c| c.is_stale(now, max_age))) {
            return;
        }
        self.refresh_wanted = false;
        self.refreshing = true;
        let metadata = self.metadata.clone();
        self.tasks
            .spawn(async move { Done::Refreshed(metadata.refresh().await) });
    }

    /// Partitions that may send a request now, grouped by their leader.
    fn eligible(
        &mut self,
        now: Instant,
        want: impl Fn(&PartitionState) -> bool,
    ) -> BTreeMap<(i32, String), Vec<(TopicPartition, i32)>> {
        let mut groups: BTreeMap<(i32, String), Vec<(TopicPartition, i32)>> = BTreeMap::new();
        let mut refresh = false;
        for (tp, s) in &self.partitions {
            if s.busy || s.retry_at.is_some_and(|t| t > now) || !want(s) {
                continue;
            }
            match self.metadata.with(|c| c.leader(&tp.topic, tp.partition)) {
                Some(l) => groups
                    .entry((l.broker_id, l.address))
                    .or_default()
                    .push((tp.clone(), l.leader_epoch)),
                None => refresh = true,
            }
        }
        if refresh {
            self.refresh_wanted = true;
        }
        groups
    }

    fn start_lookups(&mut self, now: Instant) {
        let groups = self.eligible(now, |s| matches!(s.position, Position::Lookup(_)));
        for ((broker_id, address), tps) in groups {
            let mut partitions = Vec::new();
            let mut requested = Vec::new();
            for (tp, epoch) in tps {
                let Some(state) = self.partitions.get_mut(&tp) else {
                    continue;
                };
                let Position::Lookup(start) = state.position else {
                    continue;
                };
                let timestamp = match start {
                    StartPosition::Earliest => -2,
                    StartPosition::Latest => -1,
                    StartPosition::Timestamp(t) => t,
                    StartPosition::Offset(o) => {
                        state.position = Position::At(o);
                        continue;
                    }
                };
                state.busy = true;
                partitions.push(ListOffsetsPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    timestamp,
                    current_leader_epoch: epoch,
                });
                requested.push((tp, start));
            }
            if partitions.is_empty() {
                continue;
            }
            let client = self
                .connections
                .data_client(&address, crate::connection::DEFAULT_MAX_DECODE);
            let timeout = self.config.request_timeout;
            let connections = self.connections.clone();
            self.tasks.spawn(async move {
                let request = ListOffsetsRequest { partitions };
                let result = call(
                    client,
                    &connections,
                    &address,
                    timeout,
                    |mut c| async move { c.list_offsets(request).await },
                )
                .await;
                Done::Listed {
                    broker_id,
                    address,
                    requested,
                    result,
                }
            });
        }
    }

    fn start_fetches(&mut self, now: Instant) {
        let groups = self.eligible(now, |s| {
            matches!(s.position, Position::At(_)) && s.buffer.is_empty()
        });
        for ((broker_id, address), tps) in groups {
            if self.fetching.contains(&broker_id) {
                continue;
            }
            let mut partitions = Vec::new();
            let mut requested = Vec::new();
            for (tp, epoch) in tps {
                let Some(state) = self.partitions.get_mut(&tp) else {
                    continue;
                };
                let Position::At(offset) = state.position else {
                    continue;
                };
                state.busy = true;
                partitions.push(FetchPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    fetch_offset: offset,
                    current_leader_epoch: epoch,
                    last_fetched_epoch: state.last_epoch.unwrap_or(-1),
                    partition_max_bytes: self.config.partition_max_bytes,
                });
                requested.push((tp, offset));
            }
            if partitions.is_empty() {
                continue;
            }
            self.fetching.insert(broker_id);
            let request = FetchRequest {
                replica_id: -1,
                broker_epoch: -1,
                max_wait_ms: u32::try_from(self.config.max_wait.as_millis()).unwrap_or(u32::MAX),
                min_bytes: self.config.min_bytes,
                max_bytes: self.config.max_bytes,
                partitions,
            };
            // The first batch comes whole even past max_bytes.
            let max_decode = self.config.max_bytes as usize + MAX_BATCH_BYTES + (1 << 20);
            let client = self.connections.data_client(&address, max_decode);
            let timeout = self.config.max_wait + self.config.request_timeout;
            let connections = self.connections.clone();
            self.tasks.spawn(async move {
                let result = call(
                    client,
                    &connections,
                    &address,
                    timeout,
                    |mut c| async move { c.fetch(request).await },
                )
                .await;
                Done::Fetched {
                    broker_id,
                    address,
                    requested,
                    result,
                }
            });
        }
    }

    fn on_done(&mut self, done: Done) {
        let now = tokio::time::Instant::now().into_std();
        match done {
            Done::Refreshed(result) => {
                self.refreshing = false;
                if let Err(e) = result {
                    tracing::debug!(error = %e, "metadata refresh failed");
                }
            }
            Done::Fetched {
                broker_id,
                address,
                requested,
                result,
            } => {
                self.fetching.remove(&broker_id);
                match result {
                    Ok(response) => {
                        let mut by_tp: HashMap<(String, i32), FetchPartitionResult> = response
                            .results
                            .into_iter()
                            .map(|r| ((r.topic.clone(), r.partition), r))
                            .collect();
                        for (tp, offset) in requested {
                            let r = by_tp.remove(&(tp.topic.clone(), tp.partition));
                            self.on_fetched(&tp, offset, r, broker_id, &address, now);
                        }
                    }
                    Err(status) => {
                        let tps = requested.into_iter().map(|(tp, _)| tp).collect();
                        self.on_transport_error(tps, &address, &status, now);
                    }
                }
            }
            Done::Listed {
                broker_id,
                address,
                requested,
                result,
            } => match result {
                Ok(response) => {
                    let mut by_tp: HashMap<(String, i32), ListOffsetsResult> = response
                        .results
                        .into_iter()
                        .map(|r| ((r.topic.clone(), r.partition), r))
                        .collect();
                    for (tp, start) in requested {
                        let r = by_tp.remove(&(tp.topic.clone(), tp.partition));
                        self.on_listed(&tp, start, r, broker_id, &address, now);
                    }
                }
                Err(status) => {
                    let tps = requested.into_iter().map(|(tp, _)| tp).collect();
                    self.on_transport_error(tps, &address, &status, now);
                }
            },
        }
    }

    fn on_transport_error(
        &mut self,
        tps: Vec<TopicPartition>,
        address: &str,
        status: &Status,
        now: Instant,
    ) {
        let retriable = transport_retriable(status.code());
        if retriable {
            self.refresh_wanted = true;
        }
        for tp in tps {
            let Some(state) = self.partitions.get_mut(&tp) else {
                continue;
            };
            state.busy = false;
            if retriable {
                state.retry_at = Some(now + self.config.retry_backoff);
            } else {
                state.position = Position::Stopped;
                self.errors.push_back(ConsumeError::Transport {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    address: address.to_owned(),
                    code: status.code(),
                    message: status.message().to_owned(),
                });
            }
        }
    }

    /// Applies a retriable partition error: hint or refresh, then backoff.
    fn retry_partition(
        &mut self,
        tp: &TopicPartition,
        code: ErrorCode,
        hint: Option<&LeaderHint>,
        broker_id: i32,
        now: Instant,
    ) {
        let redirected = match (code, hint) {
            (ErrorCode::NotLeader, Some(h)) => self
                .metadata
                .with(|c| c.apply_hint(&tp.topic, tp.partition, h, broker_id)),
            (ErrorCode::NotLeader, None) => {
                self.metadata
                    .with(|c| c.invalidate_leader(&tp.topic, tp.partition, broker_id));
                false
            }
            _ => false,
        };
        if !redirected {
            self.refresh_wanted = true;
        }
        if let Some(state) = self.partitions.get_mut(tp) {
            state.retry_at = (!redirected).then(|| now + self.config.retry_backoff);
        }
    }

    fn stop(&mut self, tp: &TopicPartition, error: ConsumeError) {
        if let Some(state) = self.partitions.get_mut(tp) {
            state.position = Position::Stopped;
        }
        self.errors.push_back(error);
    }

    fn on_fetched(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
        result: Option<FetchPartitionResult>,
        broker_id: i32,
        address: &str,
        now: Instant,
    ) {
        let Some(state) = self.partitions.get_mut(tp) else {
            return;
        };
        state.busy = false;
        if state.position != Position::At(offset) || !state.buffer.is_empty() {
            // Seeked meanwhile: the answer is for an old position.
            return;
        }
        let Some(r) = result else {
            state.retry_at = Some(now + self.config.retry_backoff);
            return;
        };
        if r.high_watermark >= 0 {
            state.high_watermark = Some(r.high_watermark);
        }
        match ErrorCode::try_from(r.error) {
            Ok(ErrorCode::None) if r.diverging_epoch.is_some() => {
                match on_diverging(offset, r.diverging_epoch.as_ref()) {
                    Divergence::Truncated { offset: to, epoch } => {
                        tracing::warn!(
                            topic = %tp.topic,
                            partition = tp.partition,
                            position = offset,
                            last_fetched_epoch = ?state.last_epoch,
                            diverging_epoch = epoch,
                            truncate_to = to,
                            "log truncation detected: the leader's log no longer holds the records before the position; continuing at the end of the shared epoch"
                        );
                        state.retry_at = None;
                        state.position = Position::At(to);
                        state.last_epoch = Some(epoch);
                    }
                    Divergence::Reset => {
                        tracing::warn!(
                            topic = %tp.topic,
                            partition = tp.partition,
                            position = offset,
                            last_fetched_epoch = ?state.last_epoch,
                            "log truncation detected without a shared epoch; applying the offset reset policy"
                        );
                        state.last_epoch = None;
                        self.reset_position(tp, offset, &r);
                    }
                    Divergence::None => {
                        // Not below the position: nothing was lost. Fetch
                        // again without the stale epoch.
                        state.retry_at = None;
                        state.last_epoch = r.diverging_epoch.as_ref().map(|d| d.epoch);
                    }
                }
            }
            Ok(ErrorCode::None) => {
                let bytes = Bytes::from(r.records);
                match decode_fetched(&tp.topic, tp.partition, offset, bytes) {
                    Ok(fetched) => {
                        state.retry_at = None;
                        if fetched.records.is_empty() {
                            state.position = Position::At(fetched.next_offset);
                        } else {
                            state.buffer = fetched.records.into();
                            state.buffer_next = fetched.next_offset;
                        }
                    }
                    Err((at, e)) => self.stop(
                        tp,
                        ConsumeError::Corrupt {
                            topic: tp.topic.clone(),
                            partition: tp.partition,
                            offset: at,
                            reason: e.to_string(),
                        },
                    ),
                }
            }
            Ok(ErrorCode::OffsetOutOfRange) => self.reset_position(tp, offset, &r),
            Ok(
                code @ (ErrorCode::NotLeader
                | ErrorCode::UnknownTopicOrPartition
                | ErrorCode::FencedLeaderEpoch
                | ErrorCode::UnknownLeaderEpoch
                | ErrorCode::StorageError
                | ErrorCode::RequestTimedOut
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::NotEnoughReplicasAfterAppend),
            ) => self.retry_partition(tp, code, r.leader_hint.as_ref(), broker_id, now),
            Ok(_) | Err(_) => self.stop(
                tp,
                ConsumeError::Rejected {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    code: r.error,
                    message: r.error_message,
                    address: address.to_owned(),
                },
            ),
        }
    }

    /// Applies [`ConsumerConfig::auto_offset_reset`] to a partition whose
    /// position `offset` is outside the log (or diverged without a shared
    /// epoch).
    fn reset_position(&mut self, tp: &TopicPartition, offset: i64, r: &FetchPartitionResult) {
        let Some(state) = self.partitions.get_mut(tp) else {
            return;
        };
        state.last_epoch = None;
        match self.config.auto_offset_reset {
            OffsetReset::Earliest => state.position = Position::Lookup(StartPosition::Earliest),
            OffsetReset::Latest => state.position = Position::Lookup(StartPosition::Latest),
            OffsetReset::Error => self.stop(
                tp,
                ConsumeError::OffsetOutOfRange {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    offset,
                    log_start_offset: r.log_start_offset,
                    log_end_offset: r.log_end_offset,
                },
            ),
        }
    }

    fn on_listed(
        &mut self,
        tp: &TopicPartition,
        start: StartPosition,
        result: Option<ListOffsetsResult>,
        broker_id: i32,
        address: &str,
        now: Instant,
    ) {
        let Some(state) = self.partitions.get_mut(tp) else {
            return;
        };
        state.busy = false;
        if state.position != Position::Lookup(start) {
            return;
        }
        let Some(r) = result else {
            state.retry_at = Some(now + self.config.retry_backoff);
            return;
        };
        match ErrorCode::try_from(r.error) {
            Ok(ErrorCode::None) => {
                state.retry_at = None;
                state.position = if r.offset >= 0 {
                    Position::At(r.offset)
                } else {
                    // No record at or after the timestamp: the end.
                    Position::Lookup(StartPosition::Latest)
                };
            }
            Ok(
                code @ (ErrorCode::NotLeader
                | ErrorCode::UnknownTopicOrPartition
                | ErrorCode::FencedLeaderEpoch
                | ErrorCode::UnknownLeaderEpoch
                | ErrorCode::StorageError
                | ErrorCode::RequestTimedOut),
            ) => self.retry_partition(tp, code, r.leader_hint.as_ref(), broker_id, now),
            Ok(_) | Err(_) => self.stop(
                tp,
                ConsumeError::Rejected {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    code: r.error,
                    message: r.error_message,
                    address: address.to_owned(),
                },
            ),
        }
    }
}

fn reposition(state: &mut PartitionState, start: StartPosition) {
    state.position = initial(start);
    state.buffer.clear();
    state.retry_at = None;
    state.last_epoch = None;
}

/// Moves buffered records of one partition into `out`, up to `limit` in
/// all, advancing its position.
fn take_from(state: &mut PartitionState, out: &mut Vec<ConsumerRecord>, limit: usize) {
    while out.len() < limit {
        let Some(r) = state.buffer.pop_front() else {
            break;
        };
        state.position = Position::At(r.offset + 1);
        state.last_epoch = Some(r.leader_epoch);
        out.push(r);
        if state.buffer.is_empty() {
            state.position = Position::At(state.buffer_next);
        }
    }
}

/// One call with a timeout; a timeout drops the channel so the next call
/// dials afresh.
async fn call<Resp, F, Fut>(
    client: Result<ballast_proto::v1::data_client::DataClient<tonic::transport::Channel>, String>,
    connections: &Connections,
    address: &str,
    timeout: Duration,
    send: F,
) -> Result<Resp, Status>
where
    F: FnOnce(ballast_proto::v1::data_client::DataClient<tonic::transport::Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let client =
        client.map_err(|reason| Status::unavailable(format!("invalid address: {reason}")))?;
    match tokio::time::timeout(timeout, send(client)).await {
        Ok(r) => r.map(tonic::Response::into_inner),
        Err(_) => {
            connections.forget(address);
            Err(Status::deadline_exceeded(format!(
                "no answer within {:.1}s",
                timeout.as_secs_f64()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_record::{BatchBuilder, set_base_offset, set_partition_leader_epoch};

    fn batch(base: i64, values: &[&str]) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for v in values {
            b.append(
                1_000,
                Some(b"k"),
                Some(v.as_bytes()),
                &[Header::new("h", "x")],
            )
            .unwrap();
        }
        let mut bytes = b.build();
        set_base_offset(&mut bytes, base);
        set_partition_leader_epoch(&mut bytes, 3);
        bytes
    }

    fn values(f: &Fetched) -> Vec<(i64, String)> {
        f.records
            .iter()
            .map(|r| {
                let v = r
                    .value
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(v).into_owned());
                (r.offset, v.unwrap_or_default())
            })
            .collect()
    }

    #[test]
    fn skips_records_before_the_fetch_offset() {
        let mut bytes = batch(10, &["a", "b", "c"]);
        bytes.extend(batch(13, &["d", "e"]));
        let f = decode_fetched("t", 0, 11, Bytes::from(bytes)).unwrap();
        assert_eq!(
            values(&f),
            [
                (11, "b".into()),
                (12, "c".into()),
                (13, "d".into()),
                (14, "e".into())
            ]
        );
        assert_eq!(f.next_offset, 15);
        let r = &f.records[0];
        assert_eq!((r.leader_epoch, r.timestamp), (3, 1_000));
        assert_eq!(r.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(r.headers, [Header::new("h", "x")]);
    }

    #[test]
    fn batches_wholly_before_are_skipped_and_gaps_advance() {
        let mut bytes = batch(0, &["a", "b"]);
        // Compaction left offsets 2..=4 out.
        bytes.extend(batch(5, &["f"]));
        let f = decode_fetched("t", 0, 2, Bytes::from(bytes)).unwrap();
        assert_eq!(values(&f), [(5, "f".into())]);
        assert_eq!(f.next_offset, 6);
        // Nothing at or after the offset: the position does not go back.
        let f = decode_fetched("t", 0, 9, Bytes::from(batch(0, &["a"]))).unwrap();
        assert!(f.records.is_empty());
        assert_eq!(f.next_offset, 9);
        let f = decode_fetched("t", 0, 4, Bytes::new()).unwrap();
        assert_eq!(f.next_offset, 4);
    }

    #[test]
    fn partial_and_corrupt_batches() {
        // A partial batch at the end is ignored.
        let mut bytes = batch(0, &["a"]);
        let second = batch(1, &["b"]);
        bytes.extend(&second[..second.len() - 5]);
        let f = decode_fetched("t", 0, 0, Bytes::from(bytes.clone())).unwrap();
        assert_eq!((values(&f).len(), f.next_offset), (1, 1));
        // A corrupt batch after a good one ends the answer there.
        let mut bad = batch(1, &["b"]);
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        let mut bytes = batch(0, &["a"]);
        bytes.extend(&bad);
        let f = decode_fetched("t", 0, 0, Bytes::from(bytes)).unwrap();
        assert_eq!((values(&f).len(), f.next_offset), (1, 1));
        // The corrupt batch first: an error naming its offset.
        let e = decode_fetched("t", 0, 1, Bytes::from(bad)).unwrap_err();
        assert_eq!(e.0, 1);
        assert!(matches!(e.1, RecordError::CrcMismatch { .. }), "{e:?}");
        // A lone partial batch is an error too.
        let e = decode_fetched("t", 0, 1, Bytes::from(second[..20].to_vec())).unwrap_err();
        assert!(matches!(e.1, RecordError::Truncated { .. }), "{e:?}");
    }

    #[test]
    fn buffered_records_advance_the_position() {
        let mut s = PartitionState::new(StartPosition::Offset(10));
        let f = decode_fetched("t", 0, 10, Bytes::from(batch(10, &["a", "b", "c"]))).unwrap();
        s.buffer = f.records.into();
        s.buffer_next = 20;
        let mut out = Vec::new();
        take_from(&mut s, &mut out, 2);
        assert_eq!(out.len(), 2);
        assert_eq!(s.position, Position::At(12));
        take_from(&mut s, &mut out, 10);
        assert_eq!(out.len(), 3);
        assert_eq!(
            s.position,
            Position::At(20),
            "past the batch once handed out"
        );
        reposition(&mut s, StartPosition::Latest);
        assert_eq!(s.position, Position::Lookup(StartPosition::Latest));
    }

    #[test]
    fn handed_out_records_set_the_last_epoch() {
        let mut s = PartitionState::new(StartPosition::Offset(10));
        assert_eq!(s.last_epoch, None);
        let f = decode_fetched("t", 0, 10, Bytes::from(batch(10, &["a", "b"]))).unwrap();
        s.buffer = f.records.into();
        s.buffer_next = 12;
        let mut out = Vec::new();
        take_from(&mut s, &mut out, 1);
        assert_eq!(s.last_epoch, Some(3), "the batch's leader epoch");
        reposition(&mut s, StartPosition::Offset(0));
        assert_eq!(s.last_epoch, None, "a seek forgets the epoch");
    }

    #[test]
    fn diverging_epochs() {
        let d = |epoch, end_offset| EpochEndOffset { epoch, end_offset };
        assert_eq!(on_diverging(50, None), Divergence::None);
        assert_eq!(
            on_diverging(50, Some(&d(4, 40))),
            Divergence::Truncated {
                offset: 40,
                epoch: 4
            }
        );
        // Ends at or after the position: nothing the consumer read was lost.
        assert_eq!(on_diverging(50, Some(&d(4, 50))), Divergence::None);
        assert_eq!(on_diverging(50, Some(&d(4, 70))), Divergence::None);
        // No shared history: the reset policy decides.
        assert_eq!(on_diverging(50, Some(&d(-1, -1))), Divergence::Reset);
        assert_eq!(on_diverging(50, Some(&d(2, -1))), Divergence::Reset);
    }

    fn consumer_with(reset: OffsetReset) -> Consumer {
        Consumer::connect(
            vec!["a:1".into()],
            ConsumerConfig {
                auto_offset_reset: reset,
                ..ConsumerConfig::default()
            },
        )
        .unwrap()
    }

    fn answer(diverging: Option<EpochEndOffset>, records: Vec<u8>) -> FetchPartitionResult {
        FetchPartitionResult {
            topic: "t".into(),
            partition: 0,
            high_watermark: 100,
            log_start_offset: 0,
            log_end_offset: 100,
            records,
            diverging_epoch: diverging,
            ..FetchPartitionResult::default()
        }
    }

    #[test]
    fn a_diverging_answer_moves_the_position_back_and_drops_its_records() {
        let mut c = consumer_with(OffsetReset::Latest);
        c.assign_at("t", 0, 50, Some(7));
        assert_eq!(c.last_epoch("t", 0), Some(7));
        let tp = TopicPartition::new("t", 0);
        let now = Instant::now();
        let diverging = Some(EpochEndOffset {
            epoch: 5,
            end_offset: 42,
        });
        c.on_fetched(
            &tp,
            50,
            Some(answer(diverging, batch(50, &["x"]))),
            1,
            "a:1",
            now,
        );
        assert_eq!(c.position("t", 0), Some(42));
        assert_eq!(c.last_epoch("t", 0), Some(5));
        assert!(
            c.take_buffered().is_empty(),
            "records of a diverged answer are dropped"
        );

        // Without a shared epoch: the reset policy, not the old position.
        let diverging = Some(EpochEndOffset {
            epoch: -1,
            end_offset: -1,
        });
        c.on_fetched(&tp, 42, Some(answer(diverging, vec![])), 1, "a:1", now);
        assert_eq!(c.position("t", 0), None, "looking up the latest offset");
        assert_eq!(c.last_epoch("t", 0), None);

        // The error policy stops the partition with OffsetOutOfRange.
        let mut c = consumer_with(OffsetReset::Error);
        c.assign_at("t", 0, 50, Some(7));
        c.on_fetched(&tp, 50, Some(answer(diverging, vec![])), 1, "a:1", now);
        assert!(matches!(
            c.errors.pop_front(),
            Some(ConsumeError::OffsetOutOfRange { offset: 50, .. })
        ));
    }

    #[test]
    fn assign_at_and_unassign_partitions() {
        let mut c = consumer_with(OffsetReset::Latest);
        c.assign(
            "t",
            [(0, StartPosition::Earliest), (1, StartPosition::Latest)],
        );
        c.assign_at("u", 2, 9, Some(-1));
        assert_eq!(c.position("u", 2), Some(9));
        assert_eq!(c.last_epoch("u", 2), None, "a negative epoch is unknown");
        c.assign_at("u", 2, 11, Some(4));
        assert_eq!(
            (c.position("u", 2), c.last_epoch("u", 2)),
            (Some(11), Some(4))
        );
        c.unassign_partitions(&[TopicPartition::new("t", 1), TopicPartition::new("x", 0)]);
        assert_eq!(
            c.assignment(),
            [TopicPartition::new("t", 0), TopicPartition::new("u", 2)]
        );
    }

    #[test]
    fn connect_checks_config_and_addresses() {
        let e = Consumer::connect(vec![], ConsumerConfig::default()).err();
        assert_eq!(e, Some(ConsumeError::Metadata(MetadataError::NoAddresses)));
        let e = Consumer::connect(
            vec!["a:1".into()],
            ConsumerConfig {
                max_poll_records: 0,
                ..ConsumerConfig::default()
            },
        )
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("invalid consumer config: max_poll_records: must be at least 1")
        );
        let mut c = Consumer::connect(vec!["a:1".into()], ConsumerConfig::default()).unwrap();
        c.assign(
            "t",
            [(0, StartPosition::Offset(5)), (1, StartPosition::Earliest)],
        );
        assert_eq!(c.position("t", 0), Some(5));
        assert_eq!(c.position("t", 1), None);
        assert_eq!(c.assignment().len(), 2);
        assert!(matches!(
            c.seek("t", 9, StartPosition::Latest),
            Err(ConsumeError::NotAssigned { .. })
        ));
        c.seek("t", 1, StartPosition::Offset(3)).unwrap();
        assert_eq!(c.position("t", 1), Some(3));
        c.unassign("t");
        assert!(c.assignment().is_empty());
    }
}
