//! One group-coordinator shard hosted on the leader of one
//! `__consumer_offsets` partition, for one leader epoch.
//!
//! Lifecycle: created when this agent becomes the partition's leader; it
//! first replays the partition's log (its own, up to its log end) into a
//! [`Shard`] — requests meanwhile get COORDINATOR_LOAD_IN_PROGRESS — then
//! serves. Dropped (and answering NOT_COORDINATOR) when leadership moves.
//!
//! A request runs under the host's lock (inline; its append, if any,
//! inside `block_in_place` on the agent's multi-threaded runtime): the pure
//! handler computes records and a response from the shard; the records
//! are appended to the partition as one batch with acks=all; only then are
//! they applied to the shard. The answer waits, without the lock, until
//! the high watermark passes the records (or, for an answer that wrote
//! nothing, everything written before it), so no client ever sees state
//! that a failover could lose. Appends happen only under the lock, in
//! order, so the shard always equals the replay of the local log.
//!
//! A timer task removes members whose session or rebalance timeout ran
//! out, through the same path.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ballast_group::{GroupError, GroupRecord, Outcome, Sessions, Shard};
use ballast_record::{BatchBuilder, split_batches};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::replica::ReplicaError;
use crate::replica::manager::ReplicaManager;
use crate::replica::partition::{AckResult, Partition};

/// How long an answer waits for replication before giving up.
const REPLICATION_WAIT: Duration = Duration::from_secs(30);
/// Most bytes read per step while loading.
const LOAD_CHUNK: usize = 4 * 1024 * 1024;
/// Most records per appended batch (a delete of a huge group is split).
const MAX_RECORDS_PER_BATCH: usize = 10_000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A served request: the answer, the replication to wait for, and the
/// offset the high watermark must pass before answering.
type Planned<R> = (R, Option<oneshot::Receiver<AckResult>>, i64);

/// Why a hosted request was not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// This agent no longer leads the offsets partition.
    #[error("this agent does not coordinate the group")]
    NotCoordinator,
    /// Still replaying the offsets partition.
    #[error("the coordinator is loading its offsets partition")]
    LoadInProgress,
    /// The write to the offsets partition failed or timed out.
    #[error("the coordinator cannot persist: {0}")]
    NotAvailable(String),
    /// The handler refused.
    #[error(transparent)]
    Group(#[from] GroupError),
}

#[derive(Debug)]
enum Phase {
    Loading,
    Active(Active),
    Stopped,
}

/// The served state.
#[derive(Debug)]
pub(crate) struct Active {
    pub(crate) shard: Shard,
    pub(crate) sessions: Sessions,
    /// Offset after the last record this host appended (or loaded): what
    /// the high watermark must pass before an answer is given.
    written_end: i64,
}

/// A shard bound to (offsets partition, leader epoch).
#[derive(Debug)]
pub(crate) struct ShardHost {
    pub(crate) partition_index: i32,
    pub(crate) leader_epoch: i32,
    partition: Arc<Partition>,
    manager: Arc<ReplicaManager>,
    phase: Mutex<Phase>,
    cancel: CancellationToken,
}

impl ShardHost {
    /// Starts hosting: loads in the background, then runs the timers.
    pub(crate) fn start(
        partition_index: i32,
        leader_epoch: i32,
        partition: Arc<Partition>,
        manager: Arc<ReplicaManager>,
        parent: &CancellationToken,
    ) -> Arc<ShardHost> {
        let host = Arc::new(ShardHost {
            partition_index,
            leader_epoch,
            partition,
            manager,
            phase: Mutex::new(Phase::Loading),
            cancel: parent.child_token(),
        });
        let h = Arc::clone(&host);
        tokio::spawn(async move { h.run().await });
        host
    }

    /// Stops serving: pending and later requests get NOT_COORDINATOR.
    pub(crate) fn stop(&self) {
        self.cancel.cancel();
        *lock(&self.phase) = Phase::Stopped;
    }

    /// Whether it serves (loaded and not stopped).
    pub(crate) fn is_active(&self) -> bool {
        matches!(*lock(&self.phase), Phase::Active(_))
    }

    async fn run(self: Arc<Self>) {
        let h = Arc::clone(&self);
        let loaded = tokio::task::spawn_blocking(move || h.load()).await;
        match loaded {
            Ok(Ok(active)) => {
                let mut phase = lock(&self.phase);
                if matches!(*phase, Phase::Loading) {
                    *phase = Phase::Active(active);
                } else {
                    return;
                }
            }
            Ok(Err(e)) => {
                warn!(partition = self.partition_index, leader_epoch = self.leader_epoch, error = %e, "group coordinator load failed");
                *lock(&self.phase) = Phase::Stopped;
                return;
            }
            Err(e) => {
                warn!(partition = self.partition_index, error = %e, "group coordinator load task failed");
                *lock(&self.phase) = Phase::Stopped;
                return;
            }
        }
        self.expire_loop().await;
    }

    /// Replays the partition from its log start to its log end.
    fn load(&self) -> Result<Active, ReplicaError> {
        let started = std::time::Instant::now();
        let start = self.partition.offsets();
        let end = start.log_end;
        let mut offset = start.log_start;
        let mut shard = Shard::new();
        let (mut records, mut skipped) = (0u64, 0u64);
        while offset < end {
            if self.cancel.is_cancelled() {
                return Err(ReplicaError::UnknownTopicOrPartition);
            }
            let data = self.partition.read_local(offset, LOAD_CHUNK)?;
            let before = offset;
            for batch in split_batches(&data.records) {
                let Ok((header, bytes)) = batch else {
                    break;
                };
                if header.base_offset >= end {
                    break;
                }
                match ballast_record::batch::records(bytes) {
                    Ok(iter) => {
                        for r in iter {
                            let Ok(r) = r else {
                                skipped += 1;
                                break;
                            };
                            if r.offset < offset || r.offset >= end {
                                continue;
                            }
                            let Some(key) = r.key else {
                                skipped += 1;
                                continue;
                            };
                            match GroupRecord::decode(key, r.value) {
                                Ok(rec) => {
                                    shard.apply(std::slice::from_ref(&rec));
                                    records += 1;
                                }
                                Err(e) => {
                                    skipped += 1;
                                    debug!(offset = r.offset, error = %e, "skipped an offsets-topic record");
                                }
                            }
                        }
                    }
                    Err(e) => {
                        skipped += 1;
                        warn!(offset = header.base_offset, error = %e, "skipped an unreadable offsets-topic batch");
                    }
                }
                offset = offset.max(header.next_offset());
            }
            if offset == before {
                // Nothing readable at `offset` (e.g. a gap left by
                // compaction): move to what the log says is next.
                offset = (offset + 1).max(data.log_start);
            }
        }
        let now_ms = self.manager.clocks().1;
        let sessions = Sessions::loaded(&shard, now_ms);
        info!(
            partition = self.partition_index,
            leader_epoch = self.leader_epoch,
            groups = shard.groups().len(),
            records,
            skipped,
            log_end = end,
            took_ms = started.elapsed().as_millis() as u64,
            "group coordinator loaded"
        );
        Ok(Active {
            shard,
            sessions,
            written_end: end,
        })
    }

    /// Runs a handler: see the module docs. `after` runs under the lock
    /// once the records are applied (session bookkeeping).
    pub(crate) async fn execute<R, H, A>(
        self: &Arc<Self>,
        handler: H,
        after: A,
    ) -> Result<R, HostError>
    where
        R: Send + 'static,
        H: Fn(&Active, i64) -> Result<Outcome<R>, GroupError> + Send + Sync + 'static,
        A: FnOnce(&mut Active, &R, i64) + Send + 'static,
    {
        // Most requests (steady heartbeats, offset fetches) write nothing:
        // they are answered inline, the handler taking microseconds under
        // the lock (a hop to a blocking thread cost more than the work,
        // docs/BENCHMARKS.md). A request whose records must be appended
        // does file I/O: on the multi-threaded runtime (the agent's) the
        // worker becomes a blocking thread for it (`block_in_place`: the
        // other tasks move to the remaining workers) and the handler runs
        // once; elsewhere (a current-thread runtime in tests) the request
        // is run again, from scratch, on a blocking thread: the handler,
        // a pure function of the state, is simply recomputed there.
        let mut after = Some(after);
        let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread;
        let planned = if multi_thread {
            self.plan_and_append(&handler, &mut after, true)?
                .ok_or_else(|| HostError::NotAvailable("append refused".into()))?
        } else {
            match self.plan_and_append(&handler, &mut after, false)? {
                Some(p) => p,
                None => {
                    let host = Arc::clone(self);
                    tokio::task::spawn_blocking(move || {
                        host.plan_and_append(&handler, &mut after, true)
                    })
                    .await
                    .map_err(|e| HostError::NotAvailable(format!("task failed: {e}")))??
                    .ok_or_else(|| HostError::NotAvailable("append refused".into()))?
                }
            }
        };
        let (response, replicated, wait_for) = planned;
        if let Some(rx) = replicated {
            match tokio::time::timeout(REPLICATION_WAIT, rx).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(ReplicaError::NotLeader { .. }))) | Ok(Err(_)) => {
                    return Err(HostError::NotCoordinator);
                }
                Ok(Ok(Err(e))) => return Err(HostError::NotAvailable(e.to_string())),
                Err(_) => {
                    return Err(HostError::NotAvailable(format!(
                        "not replicated within {REPLICATION_WAIT:?}"
                    )));
                }
            }
        }
        self.wait_high_watermark(wait_for).await?;
        Ok(response)
    }

    /// Runs the handler under the lock; with `write`, appends its records
    /// and applies them, then runs `after`. Without `write`, an outcome
    /// with records changes nothing and gives `None`.
    fn plan_and_append<R, H, A>(
        &self,
        handler: &H,
        after: &mut Option<A>,
        write: bool,
    ) -> Result<Option<Planned<R>>, HostError>
    where
        H: Fn(&Active, i64) -> Result<Outcome<R>, GroupError>,
        A: FnOnce(&mut Active, &R, i64),
    {
        let mut phase = lock(&self.phase);
        let active = match &mut *phase {
            Phase::Active(a) => a,
            Phase::Loading => return Err(HostError::LoadInProgress),
            Phase::Stopped => return Err(HostError::NotCoordinator),
        };
        if self.partition.leading_epoch() != Some(self.leader_epoch) {
            return Err(HostError::NotCoordinator);
        }
        let (wall_ms, now_ms) = self.manager.clocks();
        let outcome = handler(active, wall_ms)?;
        if !write && !outcome.records.is_empty() {
            return Ok(None);
        }
        let mut replicated = None;
        for chunk in outcome.records.chunks(MAX_RECORDS_PER_BATCH) {
            let batch = encode(chunk, wall_ms)?;
            let appended =
                match blocking_io(|| self.partition.append(&batch, true, wall_ms, now_ms)) {
                    Ok(a) => a,
                    Err(ReplicaError::NotLeader { .. } | ReplicaError::UnknownTopicOrPartition) => {
                        return Err(HostError::NotCoordinator);
                    }
                    Err(e) => return Err(HostError::NotAvailable(e.to_string())),
                };
            let bumps = chunk
                .iter()
                .filter(|r| match r {
                    ballast_group::record::GroupRecord::Metadata {
                        group_id,
                        value: Some(v),
                    } => {
                        v.group_epoch
                            > active
                                .shard
                                .group(group_id)
                                .map_or(0, ballast_group::state::Group::group_epoch)
                    }
                    _ => false,
                })
                .count() as u64;
            active.shard.apply(chunk);
            self.manager.metrics().group_epoch_bumps.inc_by(bumps);
            active.written_end = appended.last_offset + 1;
            replicated = appended.replicated;
        }
        if let Some(after) = after.take() {
            after(active, &outcome.response, now_ms);
        }
        Ok(Some((outcome.response, replicated, active.written_end)))
    }

    async fn wait_high_watermark(&self, offset: i64) -> Result<(), HostError> {
        let mut rx: watch::Receiver<_> = self.partition.subscribe();
        let wait = async {
            loop {
                if rx.borrow_and_update().high_watermark >= offset {
                    return Ok(());
                }
                if rx.changed().await.is_err() {
                    return Err(HostError::NotCoordinator);
                }
            }
        };
        tokio::select! {
            r = wait => r,
            () = self.cancel.cancelled() => Err(HostError::NotCoordinator),
            () = tokio::time::sleep(REPLICATION_WAIT) => Err(HostError::NotAvailable(format!(
                "the high watermark did not reach {offset} within {REPLICATION_WAIT:?}"
            ))),
        }
    }

    /// Removes members whose deadlines passed, until stopped.
    async fn expire_loop(self: Arc<Self>) {
        loop {
            let (now_ms, next) = {
                let phase = lock(&self.phase);
                let Phase::Active(a) = &*phase else {
                    return;
                };
                (self.manager.clocks().1, a.sessions.next_deadline())
            };
            let sleep_ms = next.map_or(1_000, |t| (t - now_ms).clamp(0, 1_000));
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {}
            }
            let expired = {
                let phase = lock(&self.phase);
                let Phase::Active(a) = &*phase else {
                    return;
                };
                a.sessions.expired(self.manager.clocks().1)
            };
            for (group, member, why) in expired {
                let topics = self.manager.metadata();
                let (g, m) = (group.clone(), member.clone());
                let result = self
                    .execute(
                        move |a, _| a.shard.remove_member(&g, &m, &topics.partition_counts),
                        |a, _, _| {
                            let shard = &a.shard;
                            a.sessions.retain_members(shard);
                        },
                    )
                    .await;
                match result {
                    Ok(()) => {
                        info!(group, member, reason = ?why, "removed a member whose timeout ran out")
                    }
                    Err(HostError::NotCoordinator) => return,
                    Err(e) => {
                        warn!(group, member, error = %e, "could not remove an expired member; will retry")
                    }
                }
            }
        }
    }
}

/// The records as one RecordBatch v2.
fn encode(records: &[GroupRecord], wall_ms: i64) -> Result<Vec<u8>, HostError> {
    let mut b = BatchBuilder::new();
    for r in records {
        let key = r.key();
        let value = r.value();
        b.append(wall_ms, Some(&key), value.as_deref(), &[])
            .map_err(|e| HostError::NotAvailable(format!("cannot encode records: {e}")))?;
    }
    Ok(b.build())
}

/// Runs file I/O from async code: on a worker of the multi-threaded
/// runtime through `block_in_place` (its other tasks move to the remaining
/// workers), anywhere else (a blocking thread, a current-thread runtime)
/// directly.
fn blocking_io<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
