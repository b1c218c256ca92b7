//! The active term's side of partition reassignment: accepting a plan
//! (validated whole, persisted before anything moves), driving it (on every
//! tick and after every ISR change), cancelling it, and describing its
//! progress from the replica sizes agents report with their heartbeats.
//!
//! Resumption after a failover needs nothing special: the plan is in the
//! store, and every move in flight is in its partition's record
//! (`adding`/`removing`), so the next term's first drive pass carries on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ballast_assignor::{PartitionReplicas, validate_plan};
use ballast_proto::v1::metadata::{ReassignmentRecord, ReassignmentState};
use ballast_proto::v1::{self as pb};
use prost::Message;

use super::{ServiceError, Term};
use crate::partition::PartitionState;
use crate::reassignment::{
    Limits, MoveState, Phase, Reassignment, Target, finish_move, move_state, revert_move, schedule,
    start_move,
};
use crate::state::{ClusterState, WritePlan};
use crate::store::TxnOp;

/// One replica's size as last reported by its agent.
#[derive(Debug, Clone, Copy)]
struct Observed {
    size: u64,
    at: Instant,
    /// The first report seen while this coordinator has been active, for
    /// the copy rate.
    first: (Instant, u64),
}

/// Replica sizes by partition and broker, from heartbeats. In memory only:
/// a new term starts empty and fills within one size-report interval.
#[derive(Debug, Default)]
pub(crate) struct SizeBook {
    replicas: HashMap<(String, i32), HashMap<i32, Observed>>,
    /// For each moving partition: bytes copied when last seen to grow, and
    /// when (first sight counts as growth), for stuck detection.
    progress: HashMap<(String, i32), (u64, Instant)>,
}

impl SizeBook {
    fn record(&mut self, broker: i32, sizes: &[pb::ReplicaSize], all: bool, now: Instant) {
        if all {
            let reported: BTreeSet<(&str, i32)> = sizes
                .iter()
                .map(|s| (s.topic.as_str(), s.partition))
                .collect();
            self.replicas.retain(|(t, p), by_broker| {
                if !reported.contains(&(t.as_str(), *p)) {
                    by_broker.remove(&broker);
                }
                !by_broker.is_empty()
            });
        }
        for s in sizes {
            let slot = self
                .replicas
                .entry((s.topic.clone(), s.partition))
                .or_default();
            let first = match slot.get(&broker) {
                Some(o) if o.size <= s.size_bytes => o.first,
                // New, or shrunk (truncated or re-created): start over.
                _ => (now, s.size_bytes),
            };
            slot.insert(
                broker,
                Observed {
                    size: s.size_bytes,
                    at: now,
                    first,
                },
            );
        }
    }

    fn size(&self, topic: &str, partition: i32, broker: i32) -> Option<Observed> {
        self.replicas
            .get(&(topic.to_owned(), partition))
            .and_then(|m| m.get(&broker))
            .copied()
    }

    /// The largest reported size of each partition (the leader's, as a rule).
    pub(crate) fn partition_sizes(&self) -> HashMap<(String, i32), u64> {
        self.replicas
            .iter()
            .map(|(k, m)| (k.clone(), m.values().map(|o| o.size).max().unwrap_or(0)))
            .collect()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Running => "running",
        Phase::Cancelling => "cancelling",
        Phase::Completed => "completed",
        Phase::Cancelled => "cancelled",
    }
}

fn partition_of<'s>(state: &'s ClusterState, topic: &str, p: i32) -> Option<&'s PartitionState> {
    state
        .topics
        .get(topic)?
        .partitions
        .get(usize::try_from(p).ok()?)
}

/// A reassignment id: the creation time and a random suffix.
fn new_id() -> String {
    format!("{}-{:08x}", now_ms(), super::random_u64() as u32)
}

/// Validates an ExecuteReassignment request against `state` and plans it:
/// the reassignment to persist, the id of the previous one (whose plan
/// chunks go), and the answer. Refuses with `ReassignmentInProgress` or
/// `InvalidPlan` (every problem listed); no I/O. Zero limits in the request
/// take the given defaults (the coordinator's config).
pub fn plan_reassignment(
    state: &ClusterState,
    req: &pb::ExecuteReassignmentRequest,
    default_max_moves_per_broker: u32,
    default_max_moves: u32,
) -> Result<
    (
        Reassignment,
        Option<String>,
        pb::ExecuteReassignmentResponse,
    ),
    ServiceError,
> {
    if let Some(r) = state.reassignment.as_ref().filter(|r| r.is_active()) {
        return Err(ServiceError::ReassignmentInProgress(r.record.id.clone()));
    }
    let plan: Vec<PartitionReplicas> = req
        .partitions
        .iter()
        .map(|p| PartitionReplicas {
            topic: p.topic.clone(),
            partition: p.partition,
            replicas: p.replicas.clone(),
        })
        .collect();
    let topics: BTreeMap<String, Vec<Vec<i32>>> = state
        .topics
        .iter()
        .filter(|(name, _)| plan.iter().any(|p| &p.topic == *name))
        .map(|(name, e)| {
            (
                name.clone(),
                e.partitions.iter().map(|s| s.replicas.clone()).collect(),
            )
        })
        .collect();
    let brokers: BTreeSet<i32> = state.brokers.keys().copied().collect();
    if let Err(problems) = validate_plan(&plan, &topics, &brokers) {
        return Err(ServiceError::InvalidPlan(
            problems.iter().map(ToString::to_string).collect(),
        ));
    }
    let mut targets = Vec::with_capacity(plan.len());
    let (mut moving, mut moves, mut unchanged) = (0u32, 0u32, 0u32);
    for p in plan {
        let current = partition_of(state, &p.topic, p.partition)
            .map(|s| s.replicas.clone())
            .unwrap_or_default();
        if current == p.replicas {
            unchanged += 1;
        } else {
            moving += 1;
            moves += p.replicas.iter().filter(|b| !current.contains(b)).count() as u32;
        }
        targets.push(Target {
            topic: p.topic,
            partition: p.partition,
            target: p.replicas,
            original: current,
        });
    }
    let pick = |given: u32, default: u32| if given == 0 { default } else { given };
    let record = ReassignmentRecord {
        id: new_id(),
        state: ReassignmentState::Running as i32,
        throttle_bytes_per_sec: req.throttle_bytes_per_sec,
        max_moves_per_broker: pick(req.max_moves_per_broker, default_max_moves_per_broker),
        max_moves: pick(req.max_moves, default_max_moves),
        created_ms: now_ms(),
        finished_ms: 0,
        chunks: targets
            .len()
            .div_ceil(crate::reassignment::TARGETS_PER_CHUNK) as u32,
        partitions: targets.len() as u32,
    };
    let response = pb::ExecuteReassignmentResponse {
        id: record.id.clone(),
        partitions: moving,
        replica_moves: moves,
        unchanged,
    };
    let previous = state.reassignment.as_ref().map(|r| r.record.id.clone());
    Ok((Reassignment { record, targets }, previous, response))
}

impl Term {
    /// Accept a plan: validate it whole, persist it, then start moving.
    pub async fn execute_reassignment(
        &self,
        req: pb::ExecuteReassignmentRequest,
    ) -> Result<pb::ExecuteReassignmentResponse, ServiceError> {
        self.ensure_fresh()?;
        let _w = self.write.lock().await;
        let (next, previous_id, response) = plan_reassignment(
            &self.state(),
            &req,
            self.config.reassignment_max_moves_per_broker,
            self.config.reassignment_max_moves,
        )?;
        if req.validate_only {
            return Ok(response);
        }
        // The plan chunks first (invisible until the record names them),
        // then the record, with the previous plan's chunks removed.
        let mut plan = WritePlan::default();
        for (k, v) in next.chunk_puts(&self.keys) {
            plan.prepare.push(TxnOp::put(k, v));
        }
        plan.final_ops.push(TxnOp::put(
            self.keys.reassignment(),
            next.record.encode_to_vec(),
        ));
        if let Some(id) = previous_id {
            plan.final_ops
                .push(TxnOp::delete_prefix(self.keys.reassignment_plan(&id)));
        }
        self.write(plan).await?;
        tracing::info!(
            id = %next.record.id,
            partitions = response.partitions,
            replica_moves = response.replica_moves,
            throttle = next.record.throttle_bytes_per_sec,
            "reassignment accepted"
        );
        self.state().reassignment = Some(Arc::new(next));
        // Throttles reach every agent with the next push.
        self.pushers.notify_brokers();
        self.drive_locked().await?;
        Ok(response)
    }

    /// Request a cancel: partitions not finished go back to their original
    /// replicas; pending ones never start.
    pub async fn cancel_reassignment(
        &self,
    ) -> Result<pb::CancelReassignmentResponse, ServiceError> {
        self.ensure_fresh()?;
        let _w = self.write.lock().await;
        let (record, response) = {
            let state = self.state();
            let Some(r) = state.reassignment.as_ref().filter(|r| r.is_active()) else {
                return Err(ServiceError::NoReassignment);
            };
            let phase = r.phase();
            let mut response = pb::CancelReassignmentResponse::default();
            for t in &r.targets {
                match move_state(phase, t, partition_of(&state, &t.topic, t.partition)) {
                    MoveState::Complete => response.complete += 1,
                    MoveState::Failed => {}
                    _ => response.cancelled += 1,
                }
            }
            let mut record = r.record.clone();
            record.state = ReassignmentState::Cancelling as i32;
            (record, response)
        };
        self.write(WritePlan {
            final_ops: vec![TxnOp::put(self.keys.reassignment(), record.encode_to_vec())],
            ..Default::default()
        })
        .await?;
        {
            let mut state = self.state();
            if let Some(r) = state.reassignment.as_mut() {
                Arc::make_mut(r).record = record;
            }
        }
        tracing::info!(
            cancelled = response.cancelled,
            complete = response.complete,
            "reassignment cancel requested"
        );
        self.drive_locked().await?;
        Ok(response)
    }

    /// One pass over the reassignment: finish, revert and start moves, and
    /// close the reassignment when every partition is final.
    pub async fn drive_reassignment(&self) -> Result<(), ServiceError> {
        self.ensure_fresh()?;
        let _w = self.write.lock().await;
        self.drive_locked().await
    }

    /// [`Self::drive_reassignment`] with the write lock already held.
    async fn drive_locked(&self) -> Result<(), ServiceError> {
        let changes = {
            let state = self.state();
            let Some(r) = state.reassignment.clone().filter(|r| r.is_active()) else {
                return Ok(());
            };
            plan_pass(&state, &r)
        };
        let changed = !changes.is_empty();
        self.apply_partition_changes(changes).await?;
        let closing = {
            let state = self.state();
            let Some(r) = state.reassignment.as_ref().filter(|r| r.is_active()) else {
                return Ok(());
            };
            let phase = r.phase();
            let all_final = r.targets.iter().all(|t| {
                move_state(phase, t, partition_of(&state, &t.topic, t.partition)).is_final()
            });
            all_final.then(|| {
                let mut record = r.record.clone();
                record.state = match phase {
                    Phase::Cancelling => ReassignmentState::Cancelled,
                    _ => ReassignmentState::Completed,
                } as i32;
                record.finished_ms = now_ms();
                record
            })
        };
        if let Some(record) = closing {
            self.write(WritePlan {
                final_ops: vec![TxnOp::put(self.keys.reassignment(), record.encode_to_vec())],
                ..Default::default()
            })
            .await?;
            tracing::info!(id = %record.id, state = ?record.state(), "reassignment finished; throttles removed");
            {
                let mut state = self.state();
                if let Some(r) = state.reassignment.as_mut() {
                    Arc::make_mut(r).record = record;
                }
            }
            // The next push to every agent carries no throttle.
            self.pushers.notify_brokers();
        } else if changed {
            tracing::debug!("reassignment pass moved partitions");
        }
        Ok(())
    }

    /// Record replica sizes reported with a heartbeat.
    pub fn record_sizes(&self, broker: i32, sizes: &[pb::ReplicaSize], all: bool) {
        if sizes.is_empty() && !all {
            return;
        }
        self.sizes.lock().unwrap_or_else(|e| e.into_inner()).record(
            broker,
            sizes,
            all,
            Instant::now(),
        );
    }

    /// The largest reported size of every partition.
    pub fn partition_sizes(&self) -> HashMap<(String, i32), u64> {
        self.sizes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .partition_sizes()
    }

    /// The latest reassignment with per-partition progress.
    pub fn describe_reassignment(&self) -> pb::DescribeReassignmentResponse {
        let state = self.state();
        let Some(r) = state.reassignment.clone() else {
            return pb::DescribeReassignmentResponse::default();
        };
        let mut sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        let phase = r.phase();
        let now = Instant::now();
        let stuck_after = self.config.reassignment_stuck_after;
        let mut seen: BTreeSet<(String, i32)> = BTreeSet::new();
        let partitions = r
            .targets
            .iter()
            .map(|t| {
                let current = partition_of(&state, &t.topic, t.partition);
                let ms = move_state(phase, t, current);
                let mut out = pb::PartitionMoveProgress {
                    topic: t.topic.clone(),
                    partition: t.partition,
                    original: t.original.clone(),
                    target: t.target.clone(),
                    replicas: current.map(|s| s.replicas.clone()).unwrap_or_default(),
                    state: match ms {
                        MoveState::Pending => pb::PartitionMoveState::Pending,
                        MoveState::Moving => pb::PartitionMoveState::Moving,
                        MoveState::Complete => pb::PartitionMoveState::Complete,
                        MoveState::Reverting => pb::PartitionMoveState::Reverting,
                        MoveState::Cancelled => pb::PartitionMoveState::Cancelled,
                        MoveState::Failed => pb::PartitionMoveState::Failed,
                    } as i32,
                    ..Default::default()
                };
                if let Some(s) = current {
                    progress(&sizes, t, s, ms, &mut out);
                } else {
                    out.detail = "the partition no longer exists".into();
                }
                if ms == MoveState::Moving {
                    let key = (t.topic.clone(), t.partition);
                    let mark = sizes
                        .progress
                        .entry(key.clone())
                        .or_insert((out.bytes_copied, now));
                    if out.bytes_copied > mark.0 {
                        *mark = (out.bytes_copied, now);
                    }
                    let idle = now.duration_since(mark.1);
                    if idle >= stuck_after {
                        out.stuck = true;
                        out.detail = format!(
                            "stuck: nothing copied for {}s ({})",
                            idle.as_secs(),
                            out.detail
                        );
                    }
                    seen.insert(key);
                }
                out
            })
            .collect();
        sizes.progress.retain(|k, _| seen.contains(k));
        pb::DescribeReassignmentResponse {
            exists: true,
            id: r.record.id.clone(),
            state: phase_name(phase).into(),
            throttle_bytes_per_sec: r.record.throttle_bytes_per_sec,
            max_moves_per_broker: r.record.max_moves_per_broker,
            max_moves: r.record.max_moves,
            created_ms: r.record.created_ms,
            finished_ms: r.record.finished_ms,
            partitions,
        }
    }

    /// The throttle agents must apply now (0 when no reassignment runs).
    pub fn reassignment_throttle(state: &ClusterState) -> u64 {
        state
            .reassignment
            .as_ref()
            .filter(|r| r.is_active())
            .map_or(0, |r| r.record.throttle_bytes_per_sec)
    }
}

/// Bytes to copy and copied for one partition, and a detail line.
fn progress(
    sizes: &SizeBook,
    t: &Target,
    s: &PartitionState,
    ms: MoveState,
    out: &mut pb::PartitionMoveProgress,
) {
    let leader = sizes.size(&t.topic, t.partition, s.leader).map(|o| o.size);
    let adding: Vec<i32> = match ms {
        MoveState::Moving | MoveState::Reverting => s.adding.clone(),
        MoveState::Pending => t
            .target
            .iter()
            .copied()
            .filter(|b| !t.original.contains(b))
            .collect(),
        _ => Vec::new(),
    };
    let Some(leader_size) = leader else {
        if !adding.is_empty() {
            out.detail = "waiting for the leader's size report".into();
        }
        return;
    };
    out.bytes_total = leader_size * adding.len() as u64;
    let mut rate = 0.0;
    for b in &adding {
        if ms == MoveState::Pending {
            continue;
        }
        if let Some(o) = sizes.size(&t.topic, t.partition, *b) {
            out.bytes_copied += o.size.min(leader_size);
            let secs = o.at.duration_since(o.first.0).as_secs_f64();
            if secs > 0.0 {
                rate += o.size.saturating_sub(o.first.1) as f64 / secs;
            }
        }
    }
    out.bytes_per_sec = rate;
    if ms == MoveState::Moving {
        let waiting: Vec<String> = s
            .adding
            .iter()
            .filter(|b| !s.isr.contains(b))
            .map(ToString::to_string)
            .collect();
        out.detail = if waiting.is_empty() {
            "all new replicas in sync; finishing".into()
        } else {
            format!("copying to broker(s) {}", waiting.join(","))
        };
    }
}

/// The partition changes of one drive pass (under the state lock).
fn plan_pass(state: &ClusterState, r: &Reassignment) -> BTreeMap<(String, i32), PartitionState> {
    let phase = r.phase();
    let live = |b: i32| state.is_live(b);
    let mut changes = BTreeMap::new();
    let mut in_flight: Vec<&PartitionState> = Vec::new();
    let mut pending: Vec<(&Target, &PartitionState)> = Vec::new();
    for t in &r.targets {
        let Some(s) = partition_of(state, &t.topic, t.partition) else {
            continue;
        };
        let key = (t.topic.clone(), t.partition);
        match move_state(phase, t, Some(s)) {
            MoveState::Moving => match finish_move(s, live) {
                Some(next) => {
                    changes.insert(key, next);
                }
                None => in_flight.push(s),
            },
            MoveState::Reverting => {
                if let Some(next) = revert_move(s, &t.original, live) {
                    changes.insert(key, next);
                }
            }
            MoveState::Pending => pending.push((t, s)),
            MoveState::Complete | MoveState::Cancelled | MoveState::Failed => {}
        }
    }
    if phase == Phase::Running && !pending.is_empty() {
        let limits = Limits {
            per_broker: r.record.max_moves_per_broker.max(1) as usize,
            total: r.record.max_moves.max(1) as usize,
        };
        let candidates: Vec<(&[i32], &[i32])> = pending
            .iter()
            .map(|(t, s)| (s.replicas.as_slice(), t.target.as_slice()))
            .collect();
        for i in schedule(in_flight, &candidates, limits, live) {
            let (t, s) = pending[i];
            changes.insert((t.topic.clone(), t.partition), start_move(s, &t.target));
        }
    }
    changes
}
