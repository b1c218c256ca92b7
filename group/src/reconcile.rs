//! Moving one member towards its target assignment without ever letting two
//! members hold a partition at once (KIP-848's current-assignment builder).
//!
//! The rules, for a member at epoch `e` with target at epoch `t`:
//! * **Unrevoked partitions**: it still holds `revoking`. Once it reports
//!   owning none of them, they are released and the member moves on as
//!   below. Until then nothing changes (its epoch stays `e`).
//! * **Moving on** (stable below `t`, or waiting for unreleased ones): keep
//!   = assigned ∩ target. If it holds anything outside the target, it must
//!   first revoke that: state unrevoked, assigned = keep, epoch unchanged.
//!   Otherwise it takes every target partition no other member holds,
//!   reaches epoch `t`, and is stable if it got all of its target, else
//!   waits for the rest (unreleased).
//!
//! Pure: the caller says which partitions other members hold.

use crate::assignment::Assignment;
use crate::state::{Member, MemberState};

/// The member after reconciling against `target` at `target_epoch`.
/// `owned` is what the member reported owning in this heartbeat (`None`
/// when not reporting, e.g. on a timer); `held_by_other` says whether
/// another member of the group holds a partition.
pub fn reconcile(
    member: &Member,
    target_epoch: i32,
    owned: Option<&Assignment>,
    held_by_other: impl Fn(&str, i32) -> bool,
) -> Member {
    let mut m = member.clone();
    match m.state {
        MemberState::UnrevokedPartitions => {
            let released = owned.is_some_and(|o| !o.overlaps(&m.revoking));
            if !released {
                return m;
            }
            m.revoking = Assignment::new();
        }
        MemberState::Stable if m.member_epoch == target_epoch && m.assigned == m.target => {
            return m;
        }
        MemberState::Stable | MemberState::UnreleasedPartitions => {}
    }
    let keep = m.assigned.intersection(&m.target);
    let revoke = m.assigned.difference(&m.target);
    if !revoke.is_empty() {
        m.assigned = keep;
        m.revoking = revoke;
        m.state = MemberState::UnrevokedPartitions;
        return m;
    }
    let missing = m.target.difference(&keep);
    let free = missing.filter(|t, p| !held_by_other(t, p));
    let unreleased = missing.len() > free.len();
    m.assigned = keep.union(&free);
    if m.member_epoch != target_epoch {
        m.previous_member_epoch = m.member_epoch;
        m.member_epoch = target_epoch;
    }
    m.state = if unreleased {
        MemberState::UnreleasedPartitions
    } else {
        MemberState::Stable
    };
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(pairs: &[i32]) -> Assignment {
        Assignment::from_pairs(pairs.iter().map(|&p| ("t", p)))
    }

    fn member(epoch: i32, assigned: &[i32], target: &[i32]) -> Member {
        Member {
            member_id: "m".into(),
            member_epoch: epoch,
            assigned: a(assigned),
            target: a(target),
            ..Member::default()
        }
    }

    #[test]
    fn a_new_member_takes_its_free_target() {
        let m = reconcile(&member(0, &[], &[0, 1]), 3, Some(&a(&[])), |_, _| false);
        assert_eq!(m.assigned, a(&[0, 1]));
        assert_eq!((m.member_epoch, m.previous_member_epoch), (3, 0));
        assert_eq!(m.state, MemberState::Stable);
    }

    #[test]
    fn partitions_held_elsewhere_wait() {
        let m = reconcile(&member(0, &[], &[0, 1]), 3, None, |_, p| p == 1);
        assert_eq!(m.assigned, a(&[0]));
        assert_eq!(m.member_epoch, 3);
        assert_eq!(m.state, MemberState::UnreleasedPartitions);
        // Released later: the same epoch, now stable.
        let m = reconcile(&m, 3, None, |_, _| false);
        assert_eq!(m.assigned, a(&[0, 1]));
        assert_eq!((m.member_epoch, m.state), (3, MemberState::Stable));
    }

    #[test]
    fn revocation_comes_first_and_keeps_the_epoch() {
        let m = reconcile(&member(2, &[0, 1, 2], &[0, 3]), 3, None, |_, _| false);
        assert_eq!(m.state, MemberState::UnrevokedPartitions);
        assert_eq!(m.assigned, a(&[0]));
        assert_eq!(m.revoking, a(&[1, 2]));
        assert_eq!(m.member_epoch, 2);
        // Still owning 2: nothing moves.
        let same = reconcile(&m, 3, Some(&a(&[0, 2])), |_, _| false);
        assert_eq!(same, m);
        // No report at all: nothing moves.
        assert_eq!(reconcile(&m, 3, None, |_, _| false), m);
        // Released: moves to epoch 3 and takes 3.
        let done = reconcile(&m, 3, Some(&a(&[0])), |_, _| false);
        assert_eq!(done.assigned, a(&[0, 3]));
        assert!(done.revoking.is_empty());
        assert_eq!((done.member_epoch, done.previous_member_epoch), (3, 2));
        assert_eq!(done.state, MemberState::Stable);
    }

    #[test]
    fn a_stable_member_at_the_target_is_untouched() {
        let m = member(3, &[0], &[0]);
        assert_eq!(reconcile(&m, 3, Some(&a(&[])), |_, _| true), m);
    }
}
