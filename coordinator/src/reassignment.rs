//! Partition reassignment: the plan the coordinator persists, and the pure
//! transitions that move one partition from its original replicas to its
//! target replicas (Kafka's KIP-455), or back when cancelled.
//!
//! A move goes through the partition's own state, so a coordinator that
//! takes over finds every move in flight in the partition records it loads:
//!
//! 1. **start** ([`start_move`]): `replicas` becomes the target followed by
//!    the replicas leaving; `adding` and `removing` name the difference. The
//!    leader and ISR do not change. Agents named in `adding` create the
//!    replica and fetch from the leader (throttled when the plan has a
//!    throttle); the leader adds them to the ISR once caught up (AlterIsr).
//! 2. **finish** ([`finish_move`]), once every added replica is in the ISR:
//!    if the leader is leaving, the first target replica that is live and in
//!    sync leads (leader epoch +1); `replicas` becomes the target, the ISR
//!    keeps only target replicas, `adding`/`removing` clear. Agents no longer
//!    named drop the partition. A finished move never loses an acknowledged
//!    record: the new leader was in the ISR.
//! 3. **revert** ([`revert_move`], on cancel): `replicas` becomes the
//!    original again and the ISR keeps only original replicas; if the leader
//!    was an added replica (it was elected while in sync), leadership goes
//!    back to an original replica in sync first.
//!
//! Steps 2 and 3 wait (return `None`) rather than leave a partition without
//! a leader in sync. The partition epoch bumps at every step, the leader
//! epoch when the leader changes.
//!
//! [`schedule`] picks which pending moves start, bounded per broker (moves
//! in which a broker gains or loses a replica) and cluster-wide.
//!
//! Pure: no I/O, no clock.

use std::collections::HashMap;

use ballast_proto::v1::metadata::{
    ReassignmentChunk, ReassignmentRecord, ReassignmentState, ReassignmentTarget,
};
use prost::Message;

use crate::keys::Keys;
use crate::partition::{NO_LEADER, PartitionState};
use crate::records::CorruptRecord;

/// Plan targets per stored chunk.
pub const TARGETS_PER_CHUNK: usize = 1000;

/// The latest reassignment as persisted: its record and its plan.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reassignment {
    /// Id, phase, throttle, bounds, times.
    pub record: ReassignmentRecord,
    /// The plan, in the order given.
    pub targets: Vec<Target>,
}

impl Reassignment {
    /// The phase from the record.
    pub fn phase(&self) -> Phase {
        match self.record.state() {
            ReassignmentState::Running | ReassignmentState::Unspecified => Phase::Running,
            ReassignmentState::Cancelling => Phase::Cancelling,
            ReassignmentState::Completed => Phase::Completed,
            ReassignmentState::Cancelled => Phase::Cancelled,
        }
    }

    /// True while partitions may still move (running or cancelling).
    pub fn is_active(&self) -> bool {
        matches!(self.phase(), Phase::Running | Phase::Cancelling)
    }

    /// The plan chunks to store, keyed.
    pub fn chunk_puts(&self, keys: &Keys) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.targets
            .chunks(TARGETS_PER_CHUNK)
            .enumerate()
            .map(|(i, c)| {
                let chunk = ReassignmentChunk {
                    targets: c
                        .iter()
                        .map(|t| ReassignmentTarget {
                            topic: t.topic.clone(),
                            partition: t.partition,
                            target: t.target.clone(),
                            original: t.original.clone(),
                        })
                        .collect(),
                };
                (
                    keys.reassignment_chunk(&self.record.id, i as u32),
                    chunk.encode_to_vec(),
                )
            })
            .collect()
    }

    /// Rebuild from the keys under `reassignment/`: the record and the
    /// chunks of its plan. Returns it (if any) and the keys of plan chunks
    /// of other (older, or never completed) reassignments, to delete.
    pub fn load(
        keys: &Keys,
        kvs: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(Option<Reassignment>, Vec<Vec<u8>>), CorruptRecord> {
        let corrupt = |key: &[u8], reason: String| CorruptRecord {
            what: "reassignment",
            key: String::from_utf8_lossy(key).into_owned(),
            reason,
        };
        let current_key = keys.reassignment();
        let record = match kvs.iter().find(|(k, _)| *k == current_key) {
            None => None,
            Some((k, v)) => Some(
                ReassignmentRecord::decode(v.as_slice()).map_err(|e| corrupt(k, e.to_string()))?,
            ),
        };
        let own = record
            .as_ref()
            .map(|r| keys.reassignment_plan(&r.id))
            .unwrap_or_default();
        let plans = keys.reassignment_plans();
        let mut orphans = Vec::new();
        let mut chunks: Vec<(&Vec<u8>, &Vec<u8>)> = Vec::new();
        for (k, v) in kvs {
            if !k.starts_with(&plans) {
                continue;
            }
            if record.is_some() && k.starts_with(&own) {
                chunks.push((k, v));
            } else {
                orphans.push(k.clone());
            }
        }
        let Some(record) = record else {
            return Ok((None, orphans));
        };
        chunks.sort();
        if chunks.len() != record.chunks as usize {
            return Err(corrupt(
                &current_key,
                format!(
                    "{} plan chunks stored, {} expected",
                    chunks.len(),
                    record.chunks
                ),
            ));
        }
        let mut targets = Vec::with_capacity(record.partitions as usize);
        for (k, v) in chunks {
            let c =
                ReassignmentChunk::decode(v.as_slice()).map_err(|e| corrupt(k, e.to_string()))?;
            targets.extend(c.targets.into_iter().map(|t| Target {
                topic: t.topic,
                partition: t.partition,
                target: t.target,
                original: t.original,
            }));
        }
        Ok((Some(Reassignment { record, targets }), orphans))
    }
}

/// One partition of a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Replicas wanted, preferred leader first.
    pub target: Vec<i32>,
    /// Replicas when the plan was accepted (where a cancel returns).
    pub original: Vec<i32>,
}

/// Where one partition of a plan stands, derived from the plan's phase and
/// the partition's current state (nothing else is persisted per partition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MoveState {
    /// Not started.
    Pending,
    /// Replicas being added or removed.
    Moving,
    /// On its target replicas.
    Complete,
    /// Cancel requested while moving: going back.
    Reverting,
    /// Cancelled before it finished: on its original replicas.
    Cancelled,
    /// The partition no longer exists, or its replicas are neither the
    /// original nor the target.
    Failed,
}

impl MoveState {
    /// True when nothing more will happen to the partition.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            MoveState::Complete | MoveState::Cancelled | MoveState::Failed
        )
    }
}

/// The phase of a whole reassignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Moving partitions.
    Running,
    /// Going back.
    Cancelling,
    /// Every partition complete (or failed).
    Completed,
    /// Cancelled; every partition complete, cancelled or failed.
    Cancelled,
}

/// The state of `t` given the plan's phase and the partition's state
/// (`None`: the partition no longer exists).
pub fn move_state(phase: Phase, t: &Target, current: Option<&PartitionState>) -> MoveState {
    let Some(s) = current else {
        return MoveState::Failed;
    };
    if s.is_moving() {
        return match phase {
            Phase::Running => MoveState::Moving,
            _ => MoveState::Reverting,
        };
    }
    if s.replicas == t.target {
        return MoveState::Complete;
    }
    if s.replicas == t.original {
        return match phase {
            Phase::Running => MoveState::Pending,
            Phase::Cancelling | Phase::Cancelled => MoveState::Cancelled,
            // A finished plan whose partition is back on its original
            // replicas did not end where it should have.
            Phase::Completed => MoveState::Failed,
        };
    }
    MoveState::Failed
}

fn minus(a: &[i32], b: &[i32]) -> Vec<i32> {
    a.iter().copied().filter(|x| !b.contains(x)).collect()
}

/// The first step of moving `s` to `target`: see the module docs. A pure
/// reorder (same brokers) finishes at once: `replicas` becomes the target.
pub fn start_move(s: &PartitionState, target: &[i32]) -> PartitionState {
    let adding = minus(target, &s.replicas);
    let removing = minus(&s.replicas, target);
    let mut replicas = target.to_vec();
    replicas.extend_from_slice(&removing);
    PartitionState {
        replicas,
        leader: s.leader,
        leader_epoch: s.leader_epoch,
        isr: s.isr.clone(),
        partition_epoch: s.partition_epoch + 1,
        adding,
        removing,
    }
}

/// The target replicas of a moving partition.
pub fn target_of(s: &PartitionState) -> Vec<i32> {
    minus(&s.replicas, &s.removing)
}

/// Settle a moving partition on `replicas` (the target or the original),
/// keeping the leader when it stays, else electing the first of `replicas`
/// that is live and in sync. `None` while that is impossible.
fn settle(
    s: &PartitionState,
    replicas: Vec<i32>,
    is_live: impl Fn(i32) -> bool,
) -> Option<PartitionState> {
    let leader = if s.leader != NO_LEADER && replicas.contains(&s.leader) {
        s.leader
    } else {
        *replicas
            .iter()
            .find(|&&b| s.isr.contains(&b) && is_live(b))?
    };
    let isr: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|b| s.isr.contains(b))
        .collect();
    Some(PartitionState {
        leader,
        leader_epoch: s.leader_epoch + i32::from(leader != s.leader),
        isr,
        partition_epoch: s.partition_epoch + 1,
        replicas,
        adding: Vec::new(),
        removing: Vec::new(),
    })
}

/// The last step of a move, once every added replica is in the ISR; `None`
/// while it must wait (or when `s` is not moving).
pub fn finish_move(s: &PartitionState, is_live: impl Fn(i32) -> bool) -> Option<PartitionState> {
    if !s.is_moving() || !s.adding.iter().all(|b| s.isr.contains(b)) {
        return None;
    }
    settle(s, target_of(s), is_live)
}

/// Cancel a move in flight: back to `original`. `None` while it must wait
/// for an original replica in sync to lead (or when `s` is not moving).
pub fn revert_move(
    s: &PartitionState,
    original: &[i32],
    is_live: impl Fn(i32) -> bool,
) -> Option<PartitionState> {
    if !s.is_moving() {
        return None;
    }
    settle(s, original.to_vec(), is_live)
}

/// Concurrency bounds of a reassignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Moves at once in which one broker gains or loses a replica.
    pub per_broker: usize,
    /// Moves at once in the cluster.
    pub total: usize,
}

/// The brokers a move of `s` to `target` involves (gaining or losing a
/// replica).
fn involved(replicas: &[i32], target: &[i32]) -> Vec<i32> {
    let mut v = minus(target, replicas);
    v.extend(minus(replicas, target));
    v
}

/// Which pending moves to start now: `moving` are the partitions in flight
/// (their current state), `pending` the candidates in plan order with their
/// current replicas and target. A pending move whose added brokers are not
/// all live waits. Returns indexes into `pending`.
pub fn schedule<'a>(
    moving: impl IntoIterator<Item = &'a PartitionState>,
    pending: &[(&[i32], &[i32])],
    limits: Limits,
    is_live: impl Fn(i32) -> bool,
) -> Vec<usize> {
    let mut per_broker: HashMap<i32, usize> = HashMap::new();
    let mut total = 0usize;
    for s in moving {
        total += 1;
        for b in s.adding.iter().chain(&s.removing) {
            *per_broker.entry(*b).or_default() += 1;
        }
    }
    let mut start = Vec::new();
    for (i, (replicas, target)) in pending.iter().enumerate() {
        let brokers = involved(replicas, target);
        if brokers.is_empty() {
            // A reorder moves no data.
            start.push(i);
            continue;
        }
        if total >= limits.total {
            break;
        }
        if minus(target, replicas).iter().any(|&b| !is_live(b))
            || brokers
                .iter()
                .any(|b| per_broker.get(b).copied().unwrap_or(0) >= limits.per_broker)
        {
            continue;
        }
        total += 1;
        for b in brokers {
            *per_broker.entry(b).or_default() += 1;
        }
        start.push(i);
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(replicas: &[i32], leader: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: 3,
            isr: isr.to_vec(),
            partition_epoch: 7,
            ..Default::default()
        }
    }

    fn t(original: &[i32], target: &[i32]) -> Target {
        Target {
            topic: "t".into(),
            partition: 0,
            target: target.to_vec(),
            original: original.to_vec(),
        }
    }

    #[test]
    fn start_puts_target_first_and_names_the_difference() {
        let s = st(&[1, 2, 3], 1, &[1, 2, 3]);
        let m = start_move(&s, &[4, 2, 5]);
        assert_eq!(m.replicas, vec![4, 2, 5, 1, 3]);
        assert_eq!(m.adding, vec![4, 5]);
        assert_eq!(m.removing, vec![1, 3]);
        assert_eq!((m.leader, m.leader_epoch, m.partition_epoch), (1, 3, 8));
        assert_eq!(m.isr, vec![1, 2, 3]);
        assert_eq!(target_of(&m), vec![4, 2, 5]);
        assert_eq!(
            move_state(Phase::Running, &t(&[1, 2, 3], &[4, 2, 5]), Some(&m)),
            MoveState::Moving
        );
    }

    #[test]
    fn finish_waits_for_every_added_replica_then_moves_leadership() {
        let m = start_move(&st(&[1, 2, 3], 1, &[1, 2, 3]), &[4, 2, 5]);
        assert_eq!(finish_move(&m, |_| true), None);
        let mut half = m.clone();
        half.isr = vec![1, 2, 3, 4];
        assert_eq!(finish_move(&half, |_| true), None);
        let mut all = m.clone();
        all.isr = vec![4, 2, 5, 1, 3];
        let done = finish_move(&all, |_| true).unwrap();
        assert_eq!(done.replicas, vec![4, 2, 5]);
        // Broker 1 leaves: the first target replica in sync leads.
        assert_eq!((done.leader, done.leader_epoch), (4, 4));
        assert_eq!(done.isr, vec![4, 2, 5]);
        assert!(!done.is_moving());
        assert_eq!(done.partition_epoch, m.partition_epoch + 1);
        // Not live: the next one.
        let done = finish_move(&all, |b| b != 4).unwrap();
        assert_eq!(done.leader, 2);
        assert_eq!(
            move_state(Phase::Running, &t(&[1, 2, 3], &[4, 2, 5]), Some(&done)),
            MoveState::Complete
        );
    }

    #[test]
    fn a_staying_leader_keeps_its_epoch() {
        let mut m = start_move(&st(&[1, 2, 3], 2, &[1, 2, 3]), &[2, 3, 4]);
        m.isr = vec![2, 3, 4, 1];
        let done = finish_move(&m, |_| true).unwrap();
        assert_eq!((done.leader, done.leader_epoch), (2, 3));
        assert_eq!(done.isr, vec![2, 3, 4]);
    }

    #[test]
    fn shrinking_waits_for_a_target_replica_in_sync() {
        // Target [3] only; 3 is out of sync and the leader 1 leaves.
        let m = start_move(&st(&[1, 2, 3], 1, &[1, 2]), &[3, 2]);
        assert!(m.adding.is_empty());
        let done = finish_move(&m, |_| true).unwrap();
        assert_eq!((done.leader, done.isr.clone()), (2, vec![2]));
        let m = start_move(&st(&[1, 2, 3], 1, &[1]), &[3, 2]);
        assert_eq!(finish_move(&m, |_| true), None);
    }

    #[test]
    fn revert_goes_back_and_takes_leadership_back_if_needed() {
        let m = start_move(&st(&[1, 2, 3], 1, &[1, 2, 3]), &[4, 5, 6]);
        let back = revert_move(&m, &[1, 2, 3], |_| true).unwrap();
        assert_eq!(back.replicas, vec![1, 2, 3]);
        assert_eq!((back.leader, back.leader_epoch), (1, 3));
        assert!(!back.is_moving());
        let tt = t(&[1, 2, 3], &[4, 5, 6]);
        assert_eq!(
            move_state(Phase::Cancelling, &tt, Some(&m)),
            MoveState::Reverting
        );
        assert_eq!(
            move_state(Phase::Cancelling, &tt, Some(&back)),
            MoveState::Cancelled
        );
        // An added replica leads (elected while in sync after 1 failed).
        let mut led = m.clone();
        led.leader = 4;
        led.isr = vec![4, 2];
        let back = revert_move(&led, &[1, 2, 3], |b| b != 1).unwrap();
        assert_eq!(
            (back.leader, back.leader_epoch, back.isr.clone()),
            (2, 4, vec![2])
        );
        // No original replica in sync and live: wait.
        led.isr = vec![4];
        assert_eq!(revert_move(&led, &[1, 2, 3], |_| true), None);
    }

    #[test]
    fn states_of_a_plan() {
        let tt = t(&[1, 2, 3], &[1, 2, 4]);
        let orig = st(&[1, 2, 3], 1, &[1, 2, 3]);
        assert_eq!(
            move_state(Phase::Running, &tt, Some(&orig)),
            MoveState::Pending
        );
        assert_eq!(move_state(Phase::Running, &tt, None), MoveState::Failed);
        assert_eq!(
            move_state(Phase::Completed, &tt, Some(&orig)),
            MoveState::Failed
        );
        let other = st(&[7, 8, 9], 7, &[7]);
        assert_eq!(
            move_state(Phase::Running, &tt, Some(&other)),
            MoveState::Failed
        );
        let same = t(&[1, 2, 3], &[1, 2, 3]);
        assert_eq!(
            move_state(Phase::Running, &same, Some(&orig)),
            MoveState::Complete
        );
        assert!(MoveState::Complete.is_final() && !MoveState::Reverting.is_final());
    }

    #[test]
    fn schedule_bounds_per_broker_and_in_total() {
        let limits = Limits {
            per_broker: 1,
            total: 10,
        };
        let a: &[i32] = &[1, 2];
        let moves: Vec<(&[i32], &[i32])> = vec![
            (a, &[1, 3]), // 2 -> 3
            (a, &[1, 4]), // 2 busy
            (a, &[5, 2]), // 1 -> 5
            (a, &[2, 1]), // reorder: always
            (a, &[6, 7]), // 1, 2 busy
        ];
        assert_eq!(schedule([], &moves, limits, |_| true), vec![0, 2, 3]);
        // An added broker that is not live waits.
        assert_eq!(schedule([], &moves, limits, |b| b != 3), vec![1, 2, 3]);
        // In flight counts.
        let flying = start_move(&st(&[1, 9], 1, &[1, 9]), &[1, 8]);
        assert_eq!(schedule([&flying], &moves, limits, |_| true), vec![0, 2, 3]);
        let busy = start_move(&st(&[2, 9], 2, &[2, 9]), &[8, 9]);
        assert_eq!(schedule([&busy], &moves, limits, |_| true), vec![2, 3]);
        let one = Limits {
            per_broker: 5,
            total: 1,
        };
        assert_eq!(schedule([], &moves, one, |_| true), vec![0]);
        assert_eq!(
            schedule([&busy], &moves, one, |_| true),
            Vec::<usize>::new()
        );
    }
}
