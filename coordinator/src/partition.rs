//! Partition state and its transitions: leader elections on broker fencing
//! and return, preferred-leader elections, and ISR changes requested by
//! leaders (Kafka's AlterPartition).
//!
//! Every function here is pure: it takes the current state and the facts it
//! needs (which brokers are live) and returns the next state, or `None` when
//! nothing changes. The coordinator persists what these return, fenced by its
//! epoch, then pushes it. The rules:
//!
//! * **Leader epoch** +1 whenever the leader changes (including to none).
//! * **Partition epoch** +1 on every change of leader, ISR or replicas.
//! * **Fencing a broker** removes it from the ISR, except that the ISR never
//!   becomes empty: as in Kafka, the last member stays so that, when it
//!   returns, the partition can come back with a clean election instead of
//!   losing acknowledged data. A partition it led gets the first live replica
//!   of the remaining ISR, in replica order; with none, it goes offline
//!   (leader -1) unless unclean election is allowed, which picks the first
//!   live replica and resets the ISR to it.
//! * **A broker returning** leads again any offline partition whose ISR
//!   holds it; it re-enters the ISR of other partitions only when their leader
//!   asks (it must catch up first).

/// Leader id meaning "no leader" (offline), Kafka's `NO_LEADER`.
pub const NO_LEADER: i32 = -1;

/// The replicated state of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionState {
    /// Replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// Current leader, or [`NO_LEADER`].
    pub leader: i32,
    /// Bumped at every leader change.
    pub leader_epoch: i32,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Bumped at every change.
    pub partition_epoch: i32,
    /// Replicas being added by a reassignment (in `replicas` too).
    pub adding: Vec<i32>,
    /// Replicas being removed by a reassignment (in `replicas` too).
    pub removing: Vec<i32>,
}

impl PartitionState {
    /// A new partition: preferred leader leads, every replica in sync, epochs 0.
    pub fn new(replicas: Vec<i32>) -> Self {
        PartitionState {
            leader: replicas.first().copied().unwrap_or(NO_LEADER),
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// True while a reassignment moves the partition.
    pub fn is_moving(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// True when the partition has no leader.
    pub fn is_offline(&self) -> bool {
        self.leader == NO_LEADER
    }

    /// True when a replica is out of the ISR. Replicas being added by a
    /// reassignment do not count until they join (as in Kafka after
    /// KIP-455): copying a new replica does not make a partition
    /// under-replicated.
    pub fn is_under_replicated(&self) -> bool {
        self.replicas
            .iter()
            .any(|b| !self.isr.contains(b) && !self.adding.contains(b))
    }

    fn with_leader(&self, leader: i32, isr: Vec<i32>) -> PartitionState {
        let leader_changed = leader != self.leader;
        PartitionState {
            replicas: self.replicas.clone(),
            leader,
            leader_epoch: self.leader_epoch + i32::from(leader_changed),
            isr,
            partition_epoch: self.partition_epoch + 1,
            adding: self.adding.clone(),
            removing: self.removing.clone(),
        }
    }
}

/// Replicas an unclean election may pick: not one being added by a
/// reassignment (it may hold nothing yet), unless only those are left.
fn unclean_candidates(state: &PartitionState) -> Vec<i32> {
    let settled: Vec<i32> = state
        .replicas
        .iter()
        .copied()
        .filter(|b| !state.adding.contains(b))
        .collect();
    if settled.is_empty() {
        state.replicas.clone()
    } else {
        settled
    }
}

/// The next state after `broker` is fenced, or `None` if the partition does
/// not involve it.
pub fn on_broker_fenced(
    state: &PartitionState,
    broker: i32,
    is_live: impl Fn(i32) -> bool,
    unclean_allowed: bool,
) -> Option<PartitionState> {
    let in_isr = state.isr.contains(&broker);
    if !in_isr && state.leader != broker {
        return None;
    }
    let live = |b: i32| b != broker && is_live(b);
    let mut isr: Vec<i32> = state.isr.iter().copied().filter(|&b| b != broker).collect();
    if state.leader != broker {
        // A follower left; the leader stays.
        if isr.is_empty() {
            return None;
        }
        return Some(state.with_leader(state.leader, isr));
    }
    if let Some(l) = ballast_assignor::next_leader(&state.replicas, &isr, live) {
        return Some(state.with_leader(l, isr));
    }
    if unclean_allowed
        && let Some(l) =
            ballast_assignor::next_leader_unclean(&unclean_candidates(state), &[], live)
    {
        return Some(state.with_leader(l, vec![l]));
    }
    // Offline. Keep the last in-sync member(s) so a clean election is possible
    // when one returns.
    if isr.is_empty() {
        isr = state.isr.clone();
    }
    Some(state.with_leader(NO_LEADER, isr))
}

/// The next state when a broker becomes live again: an offline partition
/// whose ISR holds a live replica gets a clean leader; failing that, when its
/// topic allows unclean election, the first live replica leads with an ISR
/// of itself (Kafka's offline-partition election runs unclean too).
pub fn on_broker_unfenced(
    state: &PartitionState,
    is_live: impl Fn(i32) -> bool,
    unclean_allowed: bool,
) -> Option<PartitionState> {
    if !state.is_offline() {
        return None;
    }
    if let Some(l) = ballast_assignor::next_leader(&state.replicas, &state.isr, &is_live) {
        return Some(state.with_leader(l, state.isr.clone()));
    }
    if unclean_allowed {
        let l = ballast_assignor::next_leader_unclean(&state.replicas, &[], &is_live)?;
        return Some(state.with_leader(l, vec![l]));
    }
    None
}

/// The next state of a preferred-leader election: the first replica leads if
/// it is live and in sync and does not already.
pub fn elect_preferred(
    state: &PartitionState,
    is_live: impl Fn(i32) -> bool,
) -> Option<PartitionState> {
    let preferred = ballast_assignor::preferred_leader(&state.replicas)?;
    if state.leader == preferred || !state.isr.contains(&preferred) || !is_live(preferred) {
        return None;
    }
    Some(state.with_leader(preferred, state.isr.clone()))
}

/// An ISR change requested by a partition leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterIsr {
    /// The requesting broker.
    pub leader: i32,
    /// Leader epoch the request was planned under.
    pub leader_epoch: i32,
    /// Partition epoch the request was planned under.
    pub partition_epoch: i32,
    /// The ISR the leader wants.
    pub new_isr: Vec<i32>,
}

/// Why an ISR change is refused (Kafka's AlterPartition error codes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlterIsrError {
    /// The requester is not the leader, or its leader epoch is stale.
    #[error(
        "fenced leader epoch: request from broker {leader} in leader epoch {leader_epoch}, current leader {current_leader} in epoch {current_epoch}"
    )]
    FencedLeaderEpoch {
        leader: i32,
        leader_epoch: i32,
        current_leader: i32,
        current_epoch: i32,
    },
    /// The request was planned against an older partition epoch.
    #[error(
        "invalid update version: request planned at partition epoch {requested}, current is {current}"
    )]
    InvalidUpdateVersion { requested: i32, current: i32 },
    /// The new ISR names a broker that is not a replica, is fenced, or omits
    /// the leader.
    #[error("invalid ISR {isr:?}: {reason}")]
    InvalidIsr { isr: Vec<i32>, reason: String },
}

/// Apply an ISR change request: checks the leader and partition epochs, then
/// the new ISR (replicas only, live only, the leader included, no
/// duplicates). Returns the new state; an unchanged ISR still bumps nothing
/// and returns the current state.
pub fn alter_isr(
    state: &PartitionState,
    req: &AlterIsr,
    is_live: impl Fn(i32) -> bool,
) -> Result<PartitionState, AlterIsrError> {
    if req.leader != state.leader || req.leader_epoch != state.leader_epoch {
        return Err(AlterIsrError::FencedLeaderEpoch {
            leader: req.leader,
            leader_epoch: req.leader_epoch,
            current_leader: state.leader,
            current_epoch: state.leader_epoch,
        });
    }
    if req.partition_epoch != state.partition_epoch {
        return Err(AlterIsrError::InvalidUpdateVersion {
            requested: req.partition_epoch,
            current: state.partition_epoch,
        });
    }
    let bad = |reason: String| AlterIsrError::InvalidIsr {
        isr: req.new_isr.clone(),
        reason,
    };
    if !req.new_isr.contains(&req.leader) {
        return Err(bad("it must contain the leader".into()));
    }
    let mut seen = Vec::with_capacity(req.new_isr.len());
    for &b in &req.new_isr {
        if !state.replicas.contains(&b) {
            return Err(bad(format!("broker {b} is not a replica")));
        }
        if seen.contains(&b) {
            return Err(bad(format!("broker {b} appears twice")));
        }
        if !is_live(b) {
            return Err(bad(format!("broker {b} is fenced")));
        }
        seen.push(b);
    }
    if req.new_isr == state.isr {
        return Ok(state.clone());
    }
    // Keep the ISR in replica order, whatever order the leader sent.
    let isr: Vec<i32> = state
        .replicas
        .iter()
        .copied()
        .filter(|b| seen.contains(b))
        .collect();
    Ok(state.with_leader(state.leader, isr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(replicas: &[i32], leader: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: 5,
            isr: isr.to_vec(),
            partition_epoch: 9,
            ..Default::default()
        }
    }

    #[test]
    fn fencing_the_leader_elects_from_isr_in_replica_order() {
        let s = st(&[1, 2, 3], 1, &[3, 2, 1]);
        let n = on_broker_fenced(&s, 1, |_| true, false).unwrap();
        assert_eq!((n.leader, n.leader_epoch, n.partition_epoch), (2, 6, 10));
        assert_eq!(n.isr, vec![3, 2]);
        // A dead ISR member is skipped.
        let n = on_broker_fenced(&s, 1, |b| b != 2, false).unwrap();
        assert_eq!(n.leader, 3);
    }

    #[test]
    fn fencing_a_follower_only_shrinks_isr() {
        let s = st(&[1, 2, 3], 1, &[1, 2, 3]);
        let n = on_broker_fenced(&s, 3, |_| true, false).unwrap();
        assert_eq!((n.leader, n.leader_epoch, n.partition_epoch), (1, 5, 10));
        assert_eq!(n.isr, vec![1, 2]);
        assert_eq!(
            on_broker_fenced(&st(&[1, 2, 3], 1, &[1, 2]), 3, |_| true, false),
            None
        );
        assert_eq!(on_broker_fenced(&s, 7, |_| true, false), None);
    }

    #[test]
    fn last_isr_member_goes_offline_and_comes_back_clean() {
        let s = st(&[1, 2, 3], 1, &[1]);
        let off = on_broker_fenced(&s, 1, |b| b != 1, false).unwrap();
        assert_eq!((off.leader, off.leader_epoch), (NO_LEADER, 6));
        assert_eq!(off.isr, vec![1]);
        assert!(off.is_offline());
        // 2 returning does not help: it is not in sync.
        assert_eq!(on_broker_unfenced(&off, |b| b == 2, false), None);
        // Unless the topic allows an unclean election.
        let unclean = on_broker_unfenced(&off, |b| b == 2, true).unwrap();
        assert_eq!((unclean.leader, unclean.isr.clone()), (2, vec![2]));
        let back = on_broker_unfenced(&off, |_| true, false).unwrap();
        assert_eq!(
            (back.leader, back.leader_epoch, back.partition_epoch),
            (1, 7, 11)
        );
    }

    #[test]
    fn unclean_election_picks_first_live_replica() {
        let s = st(&[1, 2, 3], 1, &[1]);
        let n = on_broker_fenced(&s, 1, |b| b != 1, true).unwrap();
        assert_eq!((n.leader, n.isr.clone()), (2, vec![2]));
        let none = on_broker_fenced(&s, 1, |_| false, true).unwrap();
        assert!(none.is_offline());
    }

    #[test]
    fn preferred_election() {
        let s = st(&[1, 2, 3], 2, &[1, 2, 3]);
        let n = elect_preferred(&s, |_| true).unwrap();
        assert_eq!((n.leader, n.leader_epoch), (1, 6));
        assert_eq!(elect_preferred(&n, |_| true), None);
        assert_eq!(elect_preferred(&st(&[1, 2], 2, &[2]), |_| true), None);
        assert_eq!(elect_preferred(&s, |b| b != 1), None);
    }

    #[test]
    fn alter_isr_checks_epochs_and_members() {
        let s = st(&[1, 2, 3], 1, &[1, 2]);
        let req = |leader, le, pe, isr: &[i32]| AlterIsr {
            leader,
            leader_epoch: le,
            partition_epoch: pe,
            new_isr: isr.to_vec(),
        };
        let n = alter_isr(&s, &req(1, 5, 9, &[3, 1, 2]), |_| true).unwrap();
        assert_eq!(
            (n.isr.clone(), n.partition_epoch, n.leader_epoch),
            (vec![1, 2, 3], 10, 5)
        );
        assert!(matches!(
            alter_isr(&s, &req(2, 5, 9, &[2]), |_| true),
            Err(AlterIsrError::FencedLeaderEpoch { .. })
        ));
        assert!(matches!(
            alter_isr(&s, &req(1, 4, 9, &[1]), |_| true),
            Err(AlterIsrError::FencedLeaderEpoch { .. })
        ));
        assert!(matches!(
            alter_isr(&s, &req(1, 5, 8, &[1]), |_| true),
            Err(AlterIsrError::InvalidUpdateVersion { .. })
        ));
        assert!(matches!(
            alter_isr(&s, &req(1, 5, 9, &[2]), |_| true),
            Err(AlterIsrError::InvalidIsr { .. })
        ));
        assert!(matches!(
            alter_isr(&s, &req(1, 5, 9, &[1, 4]), |_| true),
            Err(AlterIsrError::InvalidIsr { .. })
        ));
        assert!(matches!(
            alter_isr(&s, &req(1, 5, 9, &[1, 1]), |_| true),
            Err(AlterIsrError::InvalidIsr { .. })
        ));
        assert!(matches!(
            alter_isr(&s, &req(1, 5, 9, &[1, 3]), |b| b != 3),
            Err(AlterIsrError::InvalidIsr { .. })
        ));
        assert_eq!(
            alter_isr(&s, &req(1, 5, 9, &[1, 2]), |_| true),
            Ok(s.clone())
        );
    }
}
