//! One hosted partition at run time: its [`PartitionLog`], its role
//! (leader with its [`LeaderState`], or follower of a leader at an epoch),
//! the acks=all waiters, and the offsets long polls wait on.
//!
//! Locks: the log sits behind a `std::sync::RwLock` (reads share it,
//! appends, truncations and flushes take it alone; the log's own docs say
//! a `RwLock` is enough), the rest behind a `std::sync::Mutex`. Order:
//! log, then state; the state lock is never held while waiting for the
//! log, and neither is held across an `.await`: every method here is
//! synchronous and the callers run the ones that touch the disk on a
//! blocking thread. Role changes take the log lock exclusively, so an
//! append checked against leader epoch E is written at E before any role
//! change is applied, never after.
//!
//! The high watermark lives in the state (the leader's [`LeaderState`]
//! decides it); it is copied into the log (for retention, compaction and
//! its checkpoint file) whenever the log is held exclusively anyway.
//!
//! Leader epochs (KIP-101): becoming leader at epoch E records that E
//! starts at the current log end offset. The log records an epoch only
//! with its first batch, so until then the leader answers follower
//! divergence checks from a copy of the log's epoch cache with E added
//! (see [`leader_end_offset_for_epoch`]): a follower that holds a suffix
//! this leader never had learns where to truncate even if the leader has
//! not written yet.
//!
//! This module never talks to the network: it returns the ISR changes to
//! send ([`IsrChange`]) and the fetcher and services do the I/O.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use ballast_proto::v1::{ErrorCode, FetchPartitionResult};
use ballast_record::{BatchHeader, split_batches};
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use super::isr::{AlterIsrOutcome, Command, IsrChange, LeaderStart, LeaderState};
use super::{ReplicaError, ReplicationMode};
use crate::log::{
    EpochEndOffset, FlushPolicy, LogConfig, LogError, PartitionLog, ReadResult, UNDEFINED_EPOCH,
    follower_truncation,
};
use crate::partition::{PartitionKey, PartitionRecord};

/// How long a follower waits before fetching a partition again after the
/// leader did not know it (yet) or the leader's epoch.
const RETRY_UNKNOWN: Duration = Duration::from_millis(200);
/// After a local failure (append, truncation) or an unexpected error.
const RETRY_FAILED: Duration = Duration::from_secs(1);
/// After the leader refused the fetch (not leader, fenced epoch, not a
/// replica): until the next push, or this long.
const RETRY_REFUSED: Duration = Duration::from_secs(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

/// A topic's settings as the replica runtime reads them from the pushed
/// `configs` map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSettings {
    /// `min.insync.replicas` (default 1).
    pub min_insync_replicas: usize,
    /// `replication.mode` (default sync).
    pub mode: ReplicationMode,
    /// What the log reads (segment size, retention, flush, ...).
    pub log: LogConfig,
}

impl Default for TopicSettings {
    fn default() -> Self {
        TopicSettings {
            min_insync_replicas: 1,
            mode: ReplicationMode::Sync,
            log: LogConfig::default(),
        }
    }
}

impl TopicSettings {
    /// Reads the settings; a bad value keeps that setting's default and is
    /// reported in the second value (the coordinator validates configs, so
    /// this only happens across versions).
    pub fn from_configs(configs: &BTreeMap<String, String>) -> (Self, Vec<String>) {
        let mut s = TopicSettings::default();
        let mut problems = Vec::new();
        match LogConfig::from_topic_config(configs) {
            Ok(c) => s.log = c,
            Err(e) => problems.push(e.to_string()),
        }
        if let Some(v) = configs.get("min.insync.replicas") {
            match v.trim().parse::<usize>() {
                Ok(n) if n >= 1 => s.min_insync_replicas = n,
                _ => problems.push(format!("min.insync.replicas: bad value {v:?}")),
            }
        }
        if let Some(v) = configs.get("replication.mode") {
            match v.trim() {
                "sync" => s.mode = ReplicationMode::Sync,
                "async" => s.mode = ReplicationMode::Async,
                _ => problems.push(format!("replication.mode: bad value {v:?}")),
            }
        }
        (s, problems)
    }
}

/// What long polls watch: any change wakes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offsets {
    /// First offset held.
    pub log_start: i64,
    /// Log end offset.
    pub log_end: i64,
    /// High watermark.
    pub high_watermark: i64,
    /// Bumped at every role or epoch change and when the partition closes.
    pub generation: u64,
}

/// Where a follower fetches from next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerPosition {
    /// The leader epoch the follower knows.
    pub leader_epoch: i32,
    /// Its log end offset.
    pub fetch_offset: i64,
    /// The latest epoch in its log (-1: none).
    pub last_fetched_epoch: i32,
}

/// A successful read for a fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchData {
    /// Whole batches.
    pub records: Vec<u8>,
    /// High watermark at the time.
    pub high_watermark: i64,
    /// Log start offset.
    pub log_start: i64,
    /// Log end offset.
    pub log_end: i64,
    /// Set when the follower's log diverges from this leader's.
    pub diverging: Option<EpochEndOffset>,
}

impl FetchData {
    /// The batches of a log read, with the high watermark at the time.
    fn read(r: ReadResult, high_watermark: i64) -> FetchData {
        FetchData {
            records: r.records,
            high_watermark,
            log_start: r.log_start_offset,
            log_end: r.log_end_offset,
            diverging: None,
        }
    }
}

/// The outcome of an acks=all produce once the high watermark passes it.
pub type AckResult = Result<(), ReplicaError>;

/// A leader append.
#[derive(Debug)]
pub struct Appended {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The log start offset.
    pub log_start: i64,
    /// For acks=all in sync replication mode: resolves once the high
    /// watermark passes the records (or leadership is lost).
    pub replicated: Option<oneshot::Receiver<AckResult>>,
}

/// An offset found by ListOffsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset (-1 when no record matches).
    pub offset: i64,
    /// Its timestamp (-1 unless found by time).
    pub timestamp: i64,
    /// Leader epoch of the batch holding it (-1 when unknown).
    pub leader_epoch: i32,
}

#[derive(Debug)]
enum Role {
    Leader(LeaderState),
    /// Following `leader` (-1: no leader) at `leader_epoch`.
    Follower {
        leader: i32,
        leader_epoch: i32,
    },
}

/// When a follower may fetch again (a push opens the gate at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FetchGate {
    Open,
    RetryAt(Instant),
}

#[derive(Debug)]
struct State {
    record: PartitionRecord,
    settings: TopicSettings,
    role: Role,
    high_watermark: i64,
    log_start: i64,
    log_end: i64,
    latest_epoch: Option<i32>,
    /// acks=all waiters by the offset the high watermark must reach.
    waiters: BTreeMap<i64, Vec<oneshot::Sender<AckResult>>>,
    /// Waiters the high watermark passed, answered once the new offsets
    /// are published (so an acknowledged producer never sees an older
    /// high watermark in [`Partition::offsets`]).
    completed: Vec<(oneshot::Sender<AckResult>, AckResult)>,
    gate: FetchGate,
    generation: u64,
    closed: bool,
}

impl State {
    fn not_leader(&self) -> ReplicaError {
        ReplicaError::NotLeader {
            leader: self.record.leader,
            leader_epoch: self.record.leader_epoch,
        }
    }

    /// Epoch checks of Kafka's `currentLeaderEpoch` (skipped when -1).
    fn check_epoch(&self, current_leader_epoch: i32) -> Result<(), ReplicaError> {
        let ours = self.record.leader_epoch;
        if current_leader_epoch < 0 || current_leader_epoch == ours {
            return Ok(());
        }
        if current_leader_epoch < ours {
            Err(ReplicaError::FencedLeaderEpoch {
                request: current_leader_epoch,
                current: ours,
            })
        } else {
            Err(ReplicaError::UnknownLeaderEpoch {
                request: current_leader_epoch,
                current: ours,
            })
        }
    }

    fn fail_waiters(&mut self, error: &ReplicaError) {
        for (_, ws) in std::mem::take(&mut self.waiters) {
            for w in ws {
                let _ = w.send(Err(error.clone()));
            }
        }
    }

    /// Carries out the leader state's commands; returns the ISR changes to
    /// send.
    fn run(&mut self, commands: Vec<Command>, changes: &mut Vec<IsrChange>) {
        for c in commands {
            match c {
                Command::SendAlterIsr(change) => changes.push(change),
                Command::AdvanceHighWatermark {
                    high_watermark,
                    enough_replicas,
                } => {
                    self.high_watermark = self.high_watermark.max(high_watermark);
                    let later = self.waiters.split_off(&(high_watermark + 1));
                    let done = std::mem::replace(&mut self.waiters, later);
                    for (_, ws) in done {
                        for w in ws {
                            let outcome = if enough_replicas {
                                Ok(())
                            } else {
                                Err(ReplicaError::NotEnoughReplicasAfterAppend)
                            };
                            self.completed.push((w, outcome));
                        }
                    }
                }
            }
        }
    }
}

/// One hosted partition.
#[derive(Debug)]
pub struct Partition {
    key: PartitionKey,
    topic_id: String,
    me: i32,
    lag_max_ms: i64,
    log: RwLock<PartitionLog>,
    state: Mutex<State>,
    offsets: watch::Sender<Offsets>,
}

impl Partition {
    /// Opens (recovering) the log in `dir` and starts as a follower of
    /// nobody; [`Partition::apply_record`] gives it its role. Blocking.
    pub fn open(
        dir: &Path,
        me: i32,
        record: &PartitionRecord,
        settings: TopicSettings,
        lag_max_ms: i64,
    ) -> Result<Partition, LogError> {
        let log = PartitionLog::open(dir, settings.log.clone())?;
        let state = State {
            record: PartitionRecord {
                leader: -1,
                leader_epoch: -1,
                partition_epoch: -1,
                ..record.clone()
            },
            settings,
            role: Role::Follower {
                leader: -1,
                leader_epoch: -1,
            },
            high_watermark: log.high_watermark(),
            log_start: log.log_start_offset(),
            log_end: log.log_end_offset(),
            latest_epoch: log.latest_epoch(),
            waiters: BTreeMap::new(),
            completed: Vec::new(),
            gate: FetchGate::Open,
            generation: 0,
            closed: false,
        };
        let offsets = watch::Sender::new(Offsets::default());
        let p = Partition {
            key: record.key(),
            topic_id: record.topic_id.clone(),
            me,
            lag_max_ms,
            log: RwLock::new(log),
            state: Mutex::new(state),
            offsets,
        };
        p.publish(&mut lock(&p.state));
        Ok(p)
    }

    /// Its key.
    pub fn key(&self) -> &PartitionKey {
        &self.key
    }

    /// The topic id it was opened for.
    pub fn topic_id(&self) -> &str {
        &self.topic_id
    }

    /// The record last applied.
    pub fn record(&self) -> PartitionRecord {
        lock(&self.state).record.clone()
    }

    /// Which follower throttle applies to this replica on broker `me`, if
    /// any: being added by a reassignment, or following from out of the
    /// ISR. `None` when it leads or is in sync.
    pub fn throttle_class(&self, me: i32) -> Option<super::throttle::ThrottleClass> {
        let st = lock(&self.state);
        if matches!(st.role, Role::Leader(_)) {
            return None;
        }
        if st.record.adding_replicas.contains(&me) {
            Some(super::throttle::ThrottleClass::Reassignment)
        } else if !st.record.isr.contains(&me) {
            Some(super::throttle::ThrottleClass::CatchUp)
        } else {
            None
        }
    }

    /// This replica's size for the coordinator's reassignment progress and
    /// balancing: `None` unless `all` or a reassignment moves the partition.
    /// Blocking (reads the log's size).
    pub fn size_report(&self, me: i32, all: bool) -> Option<ballast_proto::v1::ReplicaSize> {
        let (moving, leader, log_end) = {
            let st = lock(&self.state);
            if st.closed {
                return None;
            }
            (
                !st.record.adding_replicas.is_empty() || !st.record.removing_replicas.is_empty(),
                matches!(st.role, Role::Leader(_)) && st.record.leader == me,
                st.log_end,
            )
        };
        if !all && !moving {
            return None;
        }
        Some(ballast_proto::v1::ReplicaSize {
            topic: self.key.topic.clone(),
            partition: self.key.partition,
            size_bytes: read(&self.log).size_bytes(),
            log_end_offset: log_end,
            leader,
        })
    }

    /// The leader and ISR as this agent knows them: the leader's own
    /// committed ISR when it leads, else the pushed one.
    pub fn replicas_and_isr(&self) -> (Vec<i32>, Vec<i32>) {
        let st = lock(&self.state);
        match &st.role {
            Role::Leader(l) => (l.replicas().to_vec(), l.isr().to_vec()),
            Role::Follower { .. } => (st.record.replicas.clone(), st.record.isr.clone()),
        }
    }

    /// The leader epoch this agent leads at, or `None` when it follows or
    /// the partition is closed.
    pub fn leading_epoch(&self) -> Option<i32> {
        let st = lock(&self.state);
        match &st.role {
            Role::Leader(l) if !st.closed => Some(l.leader_epoch()),
            _ => None,
        }
    }

    /// The leader's own log from `offset`, up to its log end (not the high
    /// watermark): what a new group coordinator replays. Leader only.
    /// Blocking.
    pub fn read_local(&self, offset: i64, max_bytes: usize) -> Result<FetchData, ReplicaError> {
        let log = read(&self.log);
        let hw = {
            let st = lock(&self.state);
            if st.closed {
                return Err(ReplicaError::UnknownTopicOrPartition);
            }
            if !matches!(st.role, Role::Leader(_)) {
                return Err(st.not_leader());
            }
            st.high_watermark
        };
        let r = log.read(offset, max_bytes, None)?;
        Ok(FetchData::read(r, hw))
    }

    /// The leader this agent follows (-1: none), or `None` when it leads.
    pub fn following(&self) -> Option<i32> {
        match lock(&self.state).role {
            Role::Leader(_) => None,
            Role::Follower { leader, .. } => Some(leader),
        }
    }

    /// Whether a produce request starting with batch `h` overtook an
    /// earlier request of its idempotent producer that is not written yet.
    /// `None` when the log is busy (an append holds it): ask again after
    /// the next change of the offsets. Never blocks.
    pub fn sequence_ahead(&self, h: &BatchHeader) -> Option<bool> {
        match self.log.try_read() {
            Ok(log) => Some(log.sequence_ahead(h)),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner().sequence_ahead(h)),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Watch for long polls.
    pub fn subscribe(&self) -> watch::Receiver<Offsets> {
        self.offsets.subscribe()
    }

    /// The current offsets.
    pub fn offsets(&self) -> Offsets {
        *self.offsets.borrow()
    }

    /// The topic's settings.
    pub fn settings(&self) -> TopicSettings {
        lock(&self.state).settings.clone()
    }

    /// Publishes the offsets to long polls, then answers the acks=all
    /// waiters the high watermark passed.
    fn publish(&self, st: &mut State) {
        let now = Offsets {
            log_start: st.log_start,
            log_end: st.log_end,
            high_watermark: st.high_watermark,
            generation: st.generation,
        };
        self.offsets.send_if_modified(|o| {
            if *o == now {
                false
            } else {
                *o = now;
                true
            }
        });
        for (w, outcome) in st.completed.drain(..) {
            let _ = w.send(outcome);
        }
    }

    /// Applies the desired state of a push: becomes leader or follower, or
    /// updates the leader's view of replicas and ISR. A record with lower
    /// (leader epoch, partition epoch) than the one held is ignored.
    /// Returns the ISR changes to send. Blocking (takes the log).
    pub fn apply_record(
        &self,
        record: &PartitionRecord,
        settings: TopicSettings,
        now_ms: i64,
    ) -> Vec<IsrChange> {
        let mut log = write(&self.log);
        if log.config() != &settings.log {
            log.set_config(settings.log.clone());
        }
        let mut st = lock(&self.state);
        if st.closed || record.epochs() < st.record.epochs() {
            return Vec::new();
        }
        let mut changes = Vec::new();
        let epoch = record.leader_epoch;
        let min_insync = settings.min_insync_replicas;
        if record.leader == self.me {
            let commands = match &mut st.role {
                Role::Leader(l) if l.leader_epoch() == epoch => l.on_push(
                    record.replicas.clone(),
                    record.isr.clone(),
                    record.partition_epoch,
                    min_insync,
                    now_ms,
                ),
                _ => {
                    let leo = log.log_end_offset();
                    let epoch_start = match log.epoch_cache().latest_entry() {
                        Some(e) if e.epoch == epoch => e.start_offset,
                        Some(e) if e.epoch > epoch => {
                            warn!(
                                partition = %self.key, epoch, log_epoch = e.epoch,
                                "leading at an epoch older than the log's latest; appends will be refused"
                            );
                            leo
                        }
                        _ => leo,
                    };
                    let (l, commands) = LeaderState::start(
                        LeaderStart {
                            me: self.me,
                            replicas: record.replicas.clone(),
                            isr: record.isr.clone(),
                            leader_epoch: epoch,
                            partition_epoch: record.partition_epoch,
                            epoch_start_offset: epoch_start,
                            log_end_offset: leo,
                            high_watermark: st.high_watermark,
                            min_insync_replicas: min_insync,
                            lag_max_ms: self.lag_max_ms,
                            retry_after_refusal_ms: self.lag_max_ms.max(1_000),
                        },
                        now_ms,
                    );
                    info!(
                        partition = %self.key, leader_epoch = epoch, log_end = leo,
                        high_watermark = st.high_watermark, isr = ?record.isr,
                        "became leader"
                    );
                    st.role = Role::Leader(l);
                    st.generation += 1;
                    commands
                }
            };
            st.run(commands, &mut changes);
        } else {
            let same = matches!(
                st.role,
                Role::Follower { leader, leader_epoch } if leader == record.leader && leader_epoch == epoch
            );
            if !same {
                if matches!(st.role, Role::Leader(_)) {
                    let e = ReplicaError::NotLeader {
                        leader: record.leader,
                        leader_epoch: epoch,
                    };
                    st.fail_waiters(&e);
                }
                info!(
                    partition = %self.key, leader = record.leader, leader_epoch = epoch,
                    log_end = st.log_end, "following"
                );
                st.role = Role::Follower {
                    leader: record.leader,
                    leader_epoch: epoch,
                };
                st.generation += 1;
            }
            // Any push may have fixed what made the leader refuse us.
            st.gate = FetchGate::Open;
        }
        st.record = record.clone();
        st.settings = settings;
        log.set_high_watermark(st.high_watermark);
        self.publish(&mut st);
        changes
    }

    /// Appends a producer's batches as leader. `acks_all` asks for the
    /// acks=all rules: under sync replication the ISR must hold at least
    /// `min.insync.replicas` (else nothing is written) and the result
    /// carries a receiver completed when the high watermark passes the
    /// records. Flushes before returning when the log says a flush is due
    /// (always under `flush.mode=sync`). Blocking.
    pub fn append(
        &self,
        batches: &[u8],
        acks_all: bool,
        wall_now_ms: i64,
        now_ms: i64,
    ) -> Result<Appended, ReplicaError> {
        let mut log = write(&self.log);
        let (epoch, wait) = {
            let st = lock(&self.state);
            if st.closed {
                return Err(ReplicaError::UnknownTopicOrPartition);
            }
            let Role::Leader(l) = &st.role else {
                return Err(st.not_leader());
            };
            let sync = st.settings.mode == ReplicationMode::Sync;
            if acks_all && sync && !l.has_enough_replicas() {
                return Err(ReplicaError::NotEnoughReplicas {
                    isr: l.isr().len(),
                    min: l.min_insync_replicas(),
                });
            }
            (l.leader_epoch(), acks_all && sync)
        };
        let info = match log.append_as_leader(batches, epoch, wall_now_ms) {
            Ok(info) => info,
            Err(LogError::StaleLeaderEpoch { .. }) => return Err(lock(&self.state).not_leader()),
            Err(e) => return Err(e.into()),
        };
        let flushed = if info.flush_due { log.flush() } else { Ok(()) };
        let mut st = lock(&self.state);
        st.log_end = info.log_end_offset;
        st.latest_epoch = Some(epoch);
        let mut changes = Vec::new();
        let commands = match &mut st.role {
            Role::Leader(l) => l.on_append(info.log_end_offset, now_ms),
            // Unreachable: role changes take the log lock we hold.
            Role::Follower { .. } => Vec::new(),
        };
        st.run(commands, &mut changes);
        debug_assert!(changes.is_empty(), "appends never plan ISR changes");
        let replicated = wait.then(|| {
            let (tx, rx) = oneshot::channel();
            let required = info.last_offset + 1;
            if st.high_watermark >= required {
                let enough = matches!(&st.role, Role::Leader(l) if l.has_enough_replicas());
                let _ = tx.send(if enough {
                    Ok(())
                } else {
                    Err(ReplicaError::NotEnoughReplicasAfterAppend)
                });
            } else {
                st.waiters.entry(required).or_default().push(tx);
            }
            rx
        });
        log.set_high_watermark(st.high_watermark);
        self.publish(&mut st);
        drop(st);
        if let Err(e) = flushed {
            warn!(partition = %self.key, error = %e, "flush after append failed");
            return Err(ReplicaError::Storage(e.to_string()));
        }
        Ok(Appended {
            base_offset: info.first_offset,
            last_offset: info.last_offset,
            log_start: log.log_start_offset(),
            replicated,
        })
    }

    /// The leader's side of a follower fetch (`replica` >= 0): epoch and
    /// replica checks, divergence (KIP-595 style), the follower's progress
    /// (maybe moving the high watermark or planning an expansion), then
    /// batches from `fetch_offset` up to the log end. Returns the ISR
    /// changes to send beside the answer. Blocking.
    pub fn serve_replica_fetch(
        &self,
        replica: i32,
        fetch_offset: i64,
        current_leader_epoch: i32,
        last_fetched_epoch: i32,
        max_bytes: usize,
        now_ms: i64,
    ) -> (Result<FetchData, ReplicaError>, Vec<IsrChange>) {
        let log = read(&self.log);
        let mut changes = Vec::new();
        let mut st = lock(&self.state);
        if st.closed {
            return (Err(ReplicaError::UnknownTopicOrPartition), changes);
        }
        if let Err(e) = st.check_epoch(current_leader_epoch) {
            return (Err(e), changes);
        }
        let not_leader = st.not_leader();
        let hw = st.high_watermark;
        let Role::Leader(l) = &mut st.role else {
            return (Err(not_leader), changes);
        };
        if !l.replicas().contains(&replica) || replica == self.me {
            return (
                Err(ReplicaError::NotReplica(format!(
                    "broker {replica} is not a follower of {}",
                    self.key
                ))),
                changes,
            );
        }
        let leo = log.log_end_offset();
        let log_start = log.log_start_offset();
        if last_fetched_epoch >= 0 {
            let eo = leader_end_offset_for_epoch(
                &log,
                l.leader_epoch(),
                l.epoch_start_offset(),
                last_fetched_epoch,
            );
            if eo.epoch != last_fetched_epoch || eo.end_offset < fetch_offset {
                debug!(
                    partition = %self.key, replica, fetch_offset, last_fetched_epoch,
                    diverging_epoch = eo.epoch, end_offset = eo.end_offset,
                    "follower log diverges"
                );
                return (
                    Ok(FetchData {
                        records: Vec::new(),
                        high_watermark: hw,
                        log_start,
                        log_end: leo,
                        diverging: Some(eo),
                    }),
                    changes,
                );
            }
        }
        if fetch_offset < log_start || fetch_offset > leo {
            return (
                Err(ReplicaError::OffsetOutOfRange {
                    requested: fetch_offset,
                    log_start,
                    log_end: leo,
                }),
                changes,
            );
        }
        match l.on_follower_fetch(replica, fetch_offset, now_ms) {
            Ok(commands) => st.run(commands, &mut changes),
            Err(e) => return (Err(ReplicaError::NotReplica(e.to_string())), changes),
        }
        let hw = st.high_watermark;
        self.publish(&mut st);
        drop(st);
        let result = log
            .read(fetch_offset, max_bytes, None)
            .map(|r| FetchData::read(r, hw))
            .map_err(ReplicaError::from);
        (result, changes)
    }

    /// A consumer fetch: batches from `fetch_offset` below the high
    /// watermark, from the leader only. With `last_fetched_epoch` >= 0 (the
    /// leader epoch of the last record the consumer consumed or committed,
    /// KIP-320) a log that no longer holds that position in that epoch
    /// (truncated by an unclean leader change) answers with `diverging`
    /// instead of records: the consumer resumes at its end offset. Blocking.
    pub fn serve_consumer_fetch(
        &self,
        fetch_offset: i64,
        current_leader_epoch: i32,
        last_fetched_epoch: i32,
        max_bytes: usize,
    ) -> Result<FetchData, ReplicaError> {
        let log = read(&self.log);
        let (hw, epoch, epoch_start) = {
            let st = lock(&self.state);
            if st.closed {
                return Err(ReplicaError::UnknownTopicOrPartition);
            }
            st.check_epoch(current_leader_epoch)?;
            let Role::Leader(l) = &st.role else {
                return Err(st.not_leader());
            };
            (st.high_watermark, l.leader_epoch(), l.epoch_start_offset())
        };
        if last_fetched_epoch >= 0 && fetch_offset > log.log_start_offset() {
            // Not capped at the high watermark: a leader's high watermark
            // can lag what its consumers saw (restored from the checkpoint
            // after a restart, until the followers fetch again), and a
            // position between the two is not a divergence: the read below
            // just waits for the high watermark to pass it. (Capping made a
            // restarted leader send consumers back, and they committed the
            // older offset: found by the fault-injection suite, seed
            // 4711824479639929712.)
            let eo = leader_end_offset_for_epoch(&log, epoch, epoch_start, last_fetched_epoch);
            // An epoch the log has no record of (-1) says nothing.
            if eo.end_offset >= 0 && eo.end_offset < fetch_offset {
                debug!(
                    partition = %self.key, fetch_offset, last_fetched_epoch,
                    diverging_epoch = eo.epoch, end_offset = eo.end_offset,
                    "consumer position diverges from the log"
                );
                return Ok(FetchData {
                    records: Vec::new(),
                    high_watermark: hw,
                    log_start: log.log_start_offset(),
                    log_end: log.log_end_offset(),
                    diverging: Some(eo),
                });
            }
        }
        let r = log.read(fetch_offset, max_bytes, Some(hw))?;
        Ok(FetchData::read(r, hw))
    }

    /// ListOffsets on the leader: -2 earliest (log start), -1 latest (the
    /// high watermark), else the first batch whose timestamp is at least
    /// `timestamp`, below the high watermark. Blocking.
    pub fn list_offset(
        &self,
        timestamp: i64,
        current_leader_epoch: i32,
    ) -> Result<ListedOffset, ReplicaError> {
        let log = read(&self.log);
        let (hw, epoch) = {
            let st = lock(&self.state);
            if st.closed {
                return Err(ReplicaError::UnknownTopicOrPartition);
            }
            st.check_epoch(current_leader_epoch)?;
            if !matches!(st.role, Role::Leader(_)) {
                return Err(st.not_leader());
            }
            (st.high_watermark, st.record.leader_epoch)
        };
        let epoch_of = |o: i64| log.epoch_cache().epoch_for_offset(o).unwrap_or(-1);
        match timestamp {
            -2 => {
                let start = log.log_start_offset();
                Ok(ListedOffset {
                    offset: start,
                    timestamp: -1,
                    leader_epoch: epoch_of(start),
                })
            }
            -1 => Ok(ListedOffset {
                offset: hw,
                timestamp: -1,
                leader_epoch: epoch,
            }),
            t if t < 0 => Err(ReplicaError::InvalidRequest(format!(
                "timestamp {t}: use -2 (earliest), -1 (latest) or a time in ms"
            ))),
            t => match log.offset_for_timestamp(t)? {
                Some((offset, ts)) if offset < hw => Ok(ListedOffset {
                    offset,
                    timestamp: ts,
                    leader_epoch: epoch_of(offset),
                }),
                _ => Ok(ListedOffset {
                    offset: -1,
                    timestamp: -1,
                    leader_epoch: -1,
                }),
            },
        }
    }

    /// Where to fetch from `leader` next, when this agent follows it at
    /// some epoch and may fetch now.
    pub fn follower_position(&self, leader: i32, now: Instant) -> Option<FollowerPosition> {
        let mut st = lock(&self.state);
        if st.closed {
            return None;
        }
        let Role::Follower {
            leader: l,
            leader_epoch,
        } = st.role
        else {
            return None;
        };
        if l != leader {
            return None;
        }
        match st.gate {
            FetchGate::Open => {}
            FetchGate::RetryAt(t) if now >= t => st.gate = FetchGate::Open,
            FetchGate::RetryAt(_) => return None,
        }
        Some(FollowerPosition {
            leader_epoch,
            fetch_offset: st.log_end,
            last_fetched_epoch: st.latest_epoch.unwrap_or(UNDEFINED_EPOCH),
        })
    }

    /// Applies the leader's answer to a fetch sent at `sent`: truncates on
    /// divergence, appends records, moves the high watermark to
    /// min(leader's, own log end), or pauses fetching after an error. An
    /// answer that no longer fits (role, epoch or log end changed since)
    /// is dropped. Blocking (takes the log).
    pub fn apply_fetch_result(
        &self,
        leader: i32,
        sent: FollowerPosition,
        result: &FetchPartitionResult,
    ) {
        let mut log = write(&self.log);
        {
            let st = lock(&self.state);
            let current = matches!(
                st.role,
                Role::Follower { leader: l, leader_epoch } if l == leader && leader_epoch == sent.leader_epoch
            );
            if st.closed || !current || log.log_end_offset() != sent.fetch_offset {
                return;
            }
        }
        let outcome = self.follow(&mut log, result);
        let mut st = lock(&self.state);
        st.gate = match outcome {
            Ok(()) => FetchGate::Open,
            Err(gate) => gate,
        };
        st.log_end = log.log_end_offset();
        st.log_start = log.log_start_offset();
        st.latest_epoch = log.latest_epoch();
        st.high_watermark = st.high_watermark.min(st.log_end);
        if result.error == ErrorCode::None as i32 && result.diverging_epoch.is_none() {
            let hw = result.high_watermark.min(st.log_end);
            st.high_watermark = st.high_watermark.max(hw);
        }
        log.set_high_watermark(st.high_watermark);
        self.publish(&mut st);
    }

    /// The follower's log work for one answer; `Err` says when to fetch
    /// again.
    fn follow(
        &self,
        log: &mut PartitionLog,
        result: &FetchPartitionResult,
    ) -> Result<(), FetchGate> {
        let retry = |d: Duration| FetchGate::RetryAt(Instant::now() + d);
        let code = ErrorCode::try_from(result.error).unwrap_or(ErrorCode::InvalidRequest);
        match code {
            ErrorCode::None => {}
            ErrorCode::OffsetOutOfRange => {
                let leo = log.log_end_offset();
                let r = if leo > result.log_end_offset {
                    // The leader's log is shorter and no epoch told us
                    // where we diverge: keep its prefix.
                    warn!(
                        partition = %self.key, leo, leader_log_end = result.log_end_offset,
                        "follower ahead of the leader; truncating to the leader's log end"
                    );
                    log.truncate_to(result.log_end_offset).map(|_| ())
                } else if leo < result.log_start_offset {
                    info!(
                        partition = %self.key, leo, leader_log_start = result.log_start_offset,
                        "follower behind the leader's log start; starting over there"
                    );
                    log.truncate_fully_and_start_at(result.log_start_offset)
                } else {
                    return Err(retry(RETRY_FAILED));
                };
                return r.map_err(|e| {
                    warn!(partition = %self.key, error = %e, "follower truncation failed");
                    retry(RETRY_FAILED)
                });
            }
            ErrorCode::UnknownLeaderEpoch | ErrorCode::UnknownTopicOrPartition => {
                // The leader has not applied its push yet.
                return Err(retry(RETRY_UNKNOWN));
            }
            ErrorCode::NotLeader | ErrorCode::FencedLeaderEpoch | ErrorCode::NotReplica => {
                // Only a push can change our view (and re-opens the gate at
                // once), but the leader may be the one behind: ask again
                // after a while rather than wait for a push that may not
                // come until the next full sync.
                debug!(
                    partition = %self.key, ?code, message = %result.error_message,
                    "leader refused the fetch"
                );
                return Err(retry(RETRY_REFUSED));
            }
            other => {
                debug!(
                    partition = %self.key, code = ?other, message = %result.error_message,
                    "fetch failed"
                );
                return Err(retry(RETRY_FAILED));
            }
        }
        if let Some(d) = result.diverging_epoch {
            let leader = EpochEndOffset {
                epoch: d.epoch,
                end_offset: d.end_offset,
            };
            let leo = log.log_end_offset();
            let t = follower_truncation(leader, log.epoch_cache(), leo, log.high_watermark());
            info!(
                partition = %self.key, leo, diverging_epoch = d.epoch,
                leader_end_offset = d.end_offset, truncate_to = t.offset, complete = t.complete,
                "follower log diverges from the leader's; truncating"
            );
            return log.truncate_to(t.offset).map(|_| ()).map_err(|e| {
                warn!(partition = %self.key, error = %e, "follower truncation failed");
                retry(RETRY_FAILED)
            });
        }
        if result.records.is_empty() {
            return Ok(());
        }
        self.append_fetched(log, &result.records).map_err(|e| {
            warn!(partition = %self.key, error = %e, "follower append failed");
            retry(RETRY_FAILED)
        })
    }

    /// Appends fetched batches: skips any wholly below the log end and,
    /// when one straddles it (the leader's batch holding our log end
    /// starts earlier), truncates to that batch's start first.
    fn append_fetched(&self, log: &mut PartitionLog, records: &[u8]) -> Result<(), LogError> {
        let leo = log.log_end_offset();
        let mut from = 0;
        let mut straddle = None;
        for b in split_batches(records) {
            let Ok((h, bytes)) = b else {
                break; // the log verifies and refuses what follows
            };
            if h.next_offset() <= leo {
                from += bytes.len();
                continue;
            }
            if h.base_offset < leo {
                straddle = Some(h.base_offset);
            }
            break;
        }
        if from >= records.len() {
            return Ok(());
        }
        if let Some(base) = straddle {
            log.truncate_to(base)?;
        }
        let info = log.append_as_follower(&records[from..])?;
        if info.flush_due {
            log.flush()?;
        }
        Ok(())
    }

    /// Periodic leader work: ISR shrink checks, dropping waiters whose
    /// producers gave up. Returns the ISR changes to send.
    pub fn tick(&self, now_ms: i64) -> Vec<IsrChange> {
        let mut st = lock(&self.state);
        let mut changes = Vec::new();
        for ws in st.waiters.values_mut() {
            ws.retain(|w| !w.is_closed());
        }
        st.waiters.retain(|_, ws| !ws.is_empty());
        let closed = st.closed;
        let commands = match &mut st.role {
            Role::Leader(l) if !closed => l.tick(now_ms),
            _ => Vec::new(),
        };
        st.run(commands, &mut changes);
        self.publish(&mut st);
        changes
    }

    /// The ISR change in flight, if this agent leads and has one.
    pub fn pending_change(&self) -> Option<IsrChange> {
        match &lock(&self.state).role {
            Role::Leader(l) => l.pending().cloned(),
            Role::Follower { .. } => None,
        }
    }

    /// The coordinator answered `change`; ignored unless it is still the
    /// change in flight. Returns further ISR changes to send.
    pub fn on_alter_isr_outcome(
        &self,
        change: &IsrChange,
        outcome: AlterIsrOutcome,
        now_ms: i64,
    ) -> Vec<IsrChange> {
        let mut st = lock(&self.state);
        let mut changes = Vec::new();
        let commands = match &mut st.role {
            Role::Leader(l) if l.pending() == Some(change) => {
                info!(
                    partition = %self.key, new_isr = ?change.new_isr, ?outcome,
                    "ISR change answered"
                );
                l.on_alter_isr_outcome(outcome, now_ms)
            }
            _ => Vec::new(),
        };
        st.run(commands, &mut changes);
        self.publish(&mut st);
        changes
    }

    /// Flushes when the topic's flush policy says a flush is due (the
    /// background flusher). Blocking.
    pub fn flush_if_due(&self, wall_now_ms: i64) {
        if lock(&self.state).settings.log.flush == FlushPolicy::KAFKA_DEFAULT {
            return;
        }
        if let Err(e) = write(&self.log).flush_if_due(wall_now_ms) {
            warn!(partition = %self.key, error = %e, "background flush failed");
        }
    }

    /// Writes the high watermark, recovery point and log start
    /// checkpoints. Blocking.
    pub fn checkpoint(&self) {
        let mut log = write(&self.log);
        let hw = lock(&self.state).high_watermark;
        log.set_high_watermark(hw);
        if let Err(e) = log.write_checkpoints() {
            warn!(partition = %self.key, error = %e, "writing checkpoints failed");
        }
    }

    /// Retention, then compaction when the topic compacts. Blocking.
    pub fn retain_and_compact(&self, wall_now_ms: i64) {
        let mut log = write(&self.log);
        let hw = lock(&self.state).high_watermark;
        log.set_high_watermark(hw);
        if let Err(e) = log.apply_retention(wall_now_ms) {
            warn!(partition = %self.key, error = %e, "retention failed");
        }
        if log.config().is_compacted() {
            match log.compact(wall_now_ms) {
                Ok(o) if o.segments_cleaned > 0 || o.segments_removed > 0 => {
                    info!(partition = %self.key, outcome = ?o, "compacted");
                }
                Ok(_) => {}
                Err(e) => warn!(partition = %self.key, error = %e, "compaction failed"),
            }
        }
        let mut st = lock(&self.state);
        st.log_start = log.log_start_offset();
        st.high_watermark = st.high_watermark.max(log.high_watermark());
        self.publish(&mut st);
    }

    /// Stops using the partition: fails acks=all waiters, flushes and
    /// writes checkpoints. Later calls answer UNKNOWN_TOPIC_OR_PARTITION.
    /// Blocking.
    pub fn close(&self, flush: bool) {
        let mut log = write(&self.log);
        let mut st = lock(&self.state);
        if st.closed {
            return;
        }
        st.closed = true;
        st.generation += 1;
        let e = st.not_leader();
        st.fail_waiters(&e);
        if flush {
            log.set_high_watermark(st.high_watermark);
            if let Err(e) = log.flush().and_then(|()| log.write_checkpoints()) {
                warn!(partition = %self.key, error = %e, "flush at close failed");
            }
        }
        self.publish(&mut st);
    }
}

/// The leader's answer to "where does `requested` end in your log?" when
/// it leads at `leader_epoch` from `epoch_start`: the log's epoch cache
/// with the current epoch added if the log has not recorded it yet (it
/// does with the first batch), so the answer is right before that batch.
pub fn leader_end_offset_for_epoch(
    log: &PartitionLog,
    leader_epoch: i32,
    epoch_start: i64,
    requested: i32,
) -> EpochEndOffset {
    if log.latest_epoch().is_some_and(|e| e >= leader_epoch) {
        return log.end_offset_for_epoch(requested);
    }
    let mut cache = log.epoch_cache().clone();
    cache.assign(leader_epoch, epoch_start);
    cache.end_offset_for_epoch(requested, log.log_end_offset())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn settings_read_replication_keys_and_keep_defaults_on_bad_values() {
        let (s, problems) = TopicSettings::from_configs(&configs(&[
            ("min.insync.replicas", "2"),
            ("replication.mode", "async"),
            ("flush.mode", "sync"),
        ]));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.min_insync_replicas, 2);
        assert_eq!(s.mode, ReplicationMode::Async);
        assert!(s.log.flush.sync_every_append);
        let (s, problems) = TopicSettings::from_configs(&configs(&[
            ("min.insync.replicas", "0"),
            ("replication.mode", "sometimes"),
        ]));
        assert_eq!(problems.len(), 2);
        assert_eq!(s, TopicSettings::default());
    }
}
