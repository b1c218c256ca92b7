//! The leader's view of one partition's replicas: the in-sync replica set
//! (ISR), each follower's log end offset and lag, the high watermark, and
//! the ISR changes the leader asks the coordinator to persist.
//!
//! Pure: no I/O, no clock, no lock. Every method takes the time it runs at
//! (`now_ms`, milliseconds on a monotonic clock) and returns [`Command`]s
//! for the caller to carry out (send an AlterIsr, complete acks=all
//! waiters up to the new high watermark), so the rules below are tested
//! deterministically with explicit times.
//!
//! Rules (Kafka's `Partition`, KIP-497 and AlterPartition):
//! * **Follower log end offset** is the offset it fetches from (it holds
//!   everything before it). Unknown (-1) until its first fetch after this
//!   broker became leader.
//! * **Caught up** (Kafka's `lastCaughtUpTimeMs`): a fetch at or past the
//!   leader's log end offset makes the follower caught up *now*; a fetch at
//!   or past the leader's log end offset *of the follower's previous
//!   fetch* makes it caught up as of that previous fetch.
//! * **Shrink**: an ISR follower is out of sync when its log end offset is
//!   below the leader's and it has not been caught up for more than
//!   `replica.lag.time.max.ms`.
//! * **Expand**: a replica outside the ISR joins once its log end offset is
//!   at least the high watermark *and* at least the start offset of the
//!   current leader epoch (so it holds this leader's history, KIP-101).
//! * **One change in flight** per partition. The change takes effect when
//!   the coordinator commits it (the AlterIsr answer or a later push).
//! * **High watermark** = min log end offset over the *maximal* ISR: the
//!   committed ISR plus members of a pending change. So a pending
//!   expansion holds the high watermark back at once (the new member will
//!   be electable as soon as the change commits, so it must not miss
//!   anything below the high watermark), and a pending shrink still waits
//!   for the member being removed until the removal commits. This is
//!   Kafka's `maximalIsr`; using the committed ISR alone during an
//!   expansion would let the high watermark pass the joining replica's log
//!   end, and a clean election of it right after the commit would lose
//!   acknowledged records. The high watermark never goes down while this
//!   broker leads.
//! * **min.insync.replicas** is judged against the committed ISR.
//!
//! Fencing: every AlterIsr carries the leader epoch and the partition epoch
//! it was planned at; the coordinator refuses a stale one. An answer for
//! another leader epoch, or older than what a push already told us, is
//! ignored. After a refusal the leader plans nothing until a push brings
//! the coordinator's state (or `retry_after_refusal_ms` passes).

use std::collections::BTreeMap;

/// "Not known yet" for a follower's log end offset.
pub const UNKNOWN_OFFSET: i64 = -1;

/// What the leader tracks per follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// The offset the follower last fetched from ([`UNKNOWN_OFFSET`] before
    /// its first fetch to this leader).
    pub log_end_offset: i64,
    /// When the follower was last caught up (see the module doc).
    pub last_caught_up_ms: i64,
    /// When it last fetched (0: not since this broker became leader).
    pub last_fetch_ms: i64,
    /// The leader's log end offset at its last fetch.
    pub last_fetch_leader_leo: i64,
}

impl FollowerState {
    fn new(in_sync: bool, now_ms: i64) -> Self {
        FollowerState {
            log_end_offset: UNKNOWN_OFFSET,
            // An ISR member gets a full lag period to show up.
            last_caught_up_ms: if in_sync { now_ms } else { 0 },
            last_fetch_ms: 0,
            last_fetch_leader_leo: UNKNOWN_OFFSET,
        }
    }

    fn is_caught_up(&self, leader_leo: i64, now_ms: i64, lag_max_ms: i64) -> bool {
        self.log_end_offset == leader_leo
            || now_ms.saturating_sub(self.last_caught_up_ms) <= lag_max_ms
    }
}

/// Whether a proposed ISR change adds or removes members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// Followers that caught up join.
    Expand,
    /// Lagging followers leave.
    Shrink,
}

/// An ISR change to send to the coordinator (`BrokerControl.AlterIsr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    /// Expand or shrink.
    pub kind: ChangeKind,
    /// The ISR wanted, in replica order, always holding the leader.
    pub new_isr: Vec<i32>,
    /// Leader epoch the change was planned at.
    pub leader_epoch: i32,
    /// Partition epoch the change was planned at.
    pub partition_epoch: i32,
}

/// What the caller must do after a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send this change to the active coordinator (it is now in flight).
    SendAlterIsr(IsrChange),
    /// The high watermark moved up to `high_watermark`: record it in the
    /// log, complete acks=all waiters whose records end at or below it
    /// (acknowledged when `enough_replicas`, else
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND), wake long polls.
    AdvanceHighWatermark {
        /// The new high watermark.
        high_watermark: i64,
        /// The committed ISR is at least `min.insync.replicas`.
        enough_replicas: bool,
    },
}

/// What becoming leader needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderStart {
    /// This broker.
    pub me: i32,
    /// Replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// Committed ISR as pushed.
    pub isr: Vec<i32>,
    /// This leader's epoch.
    pub leader_epoch: i32,
    /// Partition epoch as pushed.
    pub partition_epoch: i32,
    /// First offset of this leader epoch (the log end offset when it
    /// became leader).
    pub epoch_start_offset: i64,
    /// The local log's end offset.
    pub log_end_offset: i64,
    /// The local high watermark (kept: it only grows).
    pub high_watermark: i64,
    /// `min.insync.replicas`.
    pub min_insync_replicas: usize,
    /// `replica.lag.time.max.ms`.
    pub lag_max_ms: i64,
    /// How long to plan no ISR change after a refusal when no push comes.
    pub retry_after_refusal_ms: i64,
}

/// How the coordinator answered an AlterIsr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterIsrOutcome {
    /// Committed (or already current): the partition's state now.
    Committed {
        /// ISR now.
        isr: Vec<i32>,
        /// Leader epoch now.
        leader_epoch: i32,
        /// Partition epoch now.
        partition_epoch: i32,
    },
    /// Refused (fenced leader epoch, stale partition epoch, invalid ISR).
    Refused,
}

/// A follower fetch the leader cannot account for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("broker {0} is not a replica of this partition")]
pub struct NotAReplica(pub i32);

/// The leader-side state of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderState {
    me: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    leader_epoch: i32,
    partition_epoch: i32,
    epoch_start_offset: i64,
    log_end_offset: i64,
    high_watermark: i64,
    min_insync: usize,
    lag_max_ms: i64,
    retry_after_refusal_ms: i64,
    followers: BTreeMap<i32, FollowerState>,
    pending: Option<IsrChange>,
    /// After a refusal: plan nothing before this time (or the next push).
    blocked_until_ms: Option<i64>,
}

impl LeaderState {
    /// The state of a broker that just became leader, and what to do at
    /// once (with an ISR of the leader alone the high watermark moves to
    /// the log end offset).
    pub fn start(s: LeaderStart, now_ms: i64) -> (Self, Vec<Command>) {
        let followers = s
            .replicas
            .iter()
            .filter(|&&r| r != s.me)
            .map(|&r| (r, FollowerState::new(s.isr.contains(&r), now_ms)))
            .collect();
        let mut state = LeaderState {
            me: s.me,
            replicas: s.replicas,
            isr: s.isr,
            leader_epoch: s.leader_epoch,
            partition_epoch: s.partition_epoch,
            epoch_start_offset: s.epoch_start_offset,
            log_end_offset: s.log_end_offset,
            high_watermark: s.high_watermark.min(s.log_end_offset),
            min_insync: s.min_insync_replicas,
            lag_max_ms: s.lag_max_ms,
            retry_after_refusal_ms: s.retry_after_refusal_ms,
            followers,
            pending: None,
            blocked_until_ms: None,
        };
        let mut out = Vec::new();
        state.advance_high_watermark(&mut out);
        (state, out)
    }

    /// The leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// The committed partition epoch.
    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    /// The committed ISR.
    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    /// The replicas.
    pub fn replicas(&self) -> &[i32] {
        &self.replicas
    }

    /// The high watermark.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// The start offset of the current leader epoch.
    pub fn epoch_start_offset(&self) -> i64 {
        self.epoch_start_offset
    }

    /// The change in flight, if any.
    pub fn pending(&self) -> Option<&IsrChange> {
        self.pending.as_ref()
    }

    /// A follower's state.
    pub fn follower(&self, id: i32) -> Option<&FollowerState> {
        self.followers.get(&id)
    }

    /// `min.insync.replicas`.
    pub fn min_insync_replicas(&self) -> usize {
        self.min_insync
    }

    /// The committed ISR is at least `min.insync.replicas` (acks=all is
    /// accepted in sync replication mode).
    pub fn has_enough_replicas(&self) -> bool {
        self.isr.len() >= self.min_insync
    }

    /// Committed ISR plus members of a pending change.
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut out = self.isr.clone();
        if let Some(p) = &self.pending {
            for &b in &p.new_isr {
                if !out.contains(&b) {
                    out.push(b);
                }
            }
        }
        out
    }

    /// The leader appended: its log end offset is now `log_end_offset`.
    pub fn on_append(&mut self, log_end_offset: i64, _now_ms: i64) -> Vec<Command> {
        self.log_end_offset = self.log_end_offset.max(log_end_offset);
        let mut out = Vec::new();
        self.advance_high_watermark(&mut out);
        out
    }

    /// Follower `replica` fetched from `fetch_offset` (the caller has
    /// checked epochs and divergence, and that `fetch_offset` is within the
    /// log). Updates its state, maybe the high watermark, maybe proposes an
    /// expansion.
    pub fn on_follower_fetch(
        &mut self,
        replica: i32,
        fetch_offset: i64,
        now_ms: i64,
    ) -> Result<Vec<Command>, NotAReplica> {
        let leo = self.log_end_offset;
        let Some(f) = self.followers.get_mut(&replica) else {
            return Err(NotAReplica(replica));
        };
        let fetch_offset = fetch_offset.min(leo);
        if fetch_offset >= leo {
            f.last_caught_up_ms = f.last_caught_up_ms.max(now_ms);
        } else if f.last_fetch_leader_leo != UNKNOWN_OFFSET
            && fetch_offset >= f.last_fetch_leader_leo
        {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.last_fetch_leader_leo = leo;
        f.last_fetch_ms = now_ms;
        f.log_end_offset = fetch_offset;
        let mut out = Vec::new();
        self.advance_high_watermark(&mut out);
        self.maybe_expand(now_ms, &mut out);
        Ok(out)
    }

    /// Periodic check (every lag/2 or so): shrink the ISR when followers
    /// lag, retry an expansion after a refusal.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Command> {
        let mut out = Vec::new();
        self.maybe_shrink(now_ms, &mut out);
        self.maybe_expand(now_ms, &mut out);
        out
    }

    /// The coordinator answered the change in flight.
    pub fn on_alter_isr_outcome(&mut self, outcome: AlterIsrOutcome, now_ms: i64) -> Vec<Command> {
        let mut out = Vec::new();
        match outcome {
            AlterIsrOutcome::Committed {
                isr,
                leader_epoch,
                partition_epoch,
            } => {
                if leader_epoch != self.leader_epoch {
                    // Another leader epoch: a push will replace this state.
                    self.pending = None;
                    self.blocked_until_ms = Some(now_ms + self.retry_after_refusal_ms);
                    return out;
                }
                self.pending = None;
                if partition_epoch > self.partition_epoch {
                    self.adopt_isr(isr, partition_epoch, now_ms);
                }
            }
            AlterIsrOutcome::Refused => {
                self.pending = None;
                self.blocked_until_ms = Some(now_ms + self.retry_after_refusal_ms);
            }
        }
        self.advance_high_watermark(&mut out);
        self.maybe_shrink(now_ms, &mut out);
        self.maybe_expand(now_ms, &mut out);
        out
    }

    /// A push for this leader epoch brought the coordinator's state
    /// (replicas, ISR, partition epoch, min.insync.replicas). An older
    /// partition epoch than the one held is ignored; a newer one supersedes
    /// any change in flight.
    pub fn on_push(
        &mut self,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        partition_epoch: i32,
        min_insync_replicas: usize,
        now_ms: i64,
    ) -> Vec<Command> {
        self.min_insync = min_insync_replicas;
        if partition_epoch > self.partition_epoch {
            self.pending = None;
            self.blocked_until_ms = None;
            if replicas != self.replicas {
                self.followers.retain(|id, _| replicas.contains(id));
                for &r in &replicas {
                    if r != self.me {
                        self.followers
                            .entry(r)
                            .or_insert_with(|| FollowerState::new(isr.contains(&r), now_ms));
                    }
                }
                self.replicas = replicas;
            }
            // A replica the coordinator took out of the ISR (it was fenced,
            // or lagged) must fetch again before it can be proposed back:
            // its last known log end offset may belong to a dead process.
            for r in &self.isr {
                if !isr.contains(r)
                    && let Some(f) = self.followers.get_mut(r)
                {
                    f.log_end_offset = UNKNOWN_OFFSET;
                }
            }
            self.adopt_isr(isr, partition_epoch, now_ms);
        }
        let mut out = Vec::new();
        self.advance_high_watermark(&mut out);
        self.maybe_shrink(now_ms, &mut out);
        self.maybe_expand(now_ms, &mut out);
        out
    }

    fn adopt_isr(&mut self, isr: Vec<i32>, partition_epoch: i32, now_ms: i64) {
        for (&id, f) in &mut self.followers {
            // A member that just joined gets a full lag period, as at start.
            if isr.contains(&id) && !self.isr.contains(&id) {
                f.last_caught_up_ms = f.last_caught_up_ms.max(now_ms);
            }
        }
        self.isr = isr;
        self.partition_epoch = partition_epoch;
    }

    fn can_plan(&self, now_ms: i64) -> bool {
        self.pending.is_none() && self.blocked_until_ms.is_none_or(|t| now_ms >= t)
    }

    fn propose(&mut self, kind: ChangeKind, new_isr: Vec<i32>, out: &mut Vec<Command>) {
        let change = IsrChange {
            kind,
            new_isr,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
        };
        self.pending = Some(change.clone());
        self.blocked_until_ms = None;
        out.push(Command::SendAlterIsr(change));
    }

    fn in_replica_order(&self, members: impl Fn(i32) -> bool) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .replicas
            .iter()
            .copied()
            .filter(|&r| r == self.me || members(r))
            .collect();
        if !v.contains(&self.me) {
            v.insert(0, self.me);
        }
        v
    }

    fn maybe_shrink(&mut self, now_ms: i64, out: &mut Vec<Command>) {
        if !self.can_plan(now_ms) {
            return;
        }
        let leo = self.log_end_offset;
        let lagging: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|&r| r != self.me)
            .filter(|r| {
                // An ISR member that is not even a replica any more goes too.
                self.followers
                    .get(r)
                    .is_none_or(|f| !f.is_caught_up(leo, now_ms, self.lag_max_ms))
            })
            .collect();
        if lagging.is_empty() {
            return;
        }
        let isr = self.isr.clone();
        let new_isr = self.in_replica_order(|r| isr.contains(&r) && !lagging.contains(&r));
        self.propose(ChangeKind::Shrink, new_isr, out);
    }

    fn maybe_expand(&mut self, now_ms: i64, out: &mut Vec<Command>) {
        if !self.can_plan(now_ms) {
            return;
        }
        let joining: Vec<i32> = self
            .followers
            .iter()
            .filter(|(id, f)| {
                !self.isr.contains(id)
                    && f.log_end_offset != UNKNOWN_OFFSET
                    && f.log_end_offset >= self.high_watermark
                    && f.log_end_offset >= self.epoch_start_offset
            })
            .map(|(&id, _)| id)
            .collect();
        if joining.is_empty() {
            return;
        }
        let isr = self.isr.clone();
        let new_isr = self.in_replica_order(|r| isr.contains(&r) || joining.contains(&r));
        self.propose(ChangeKind::Expand, new_isr, out);
    }

    fn advance_high_watermark(&mut self, out: &mut Vec<Command>) {
        let mut candidate = self.log_end_offset;
        for id in self.maximal_isr() {
            if id == self.me {
                continue;
            }
            let leo = self
                .followers
                .get(&id)
                .map_or(UNKNOWN_OFFSET, |f| f.log_end_offset);
            candidate = candidate.min(leo);
        }
        if candidate > self.high_watermark {
            self.high_watermark = candidate;
            out.push(Command::AdvanceHighWatermark {
                high_watermark: candidate,
                enough_replicas: self.has_enough_replicas(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: i64 = 1_000;

    fn leader(isr: &[i32], leo: i64, hw: i64, min_insync: usize) -> (LeaderState, Vec<Command>) {
        LeaderState::start(
            LeaderStart {
                me: 1,
                replicas: vec![1, 2, 3],
                isr: isr.to_vec(),
                leader_epoch: 4,
                partition_epoch: 10,
                epoch_start_offset: leo,
                log_end_offset: leo,
                high_watermark: hw,
                min_insync_replicas: min_insync,
                lag_max_ms: LAG,
                retry_after_refusal_ms: 500,
            },
            0,
        )
    }

    fn hw(to: i64, enough: bool) -> Command {
        Command::AdvanceHighWatermark {
            high_watermark: to,
            enough_replicas: enough,
        }
    }

    fn send(kind: ChangeKind, isr: &[i32], pe: i32) -> Command {
        Command::SendAlterIsr(IsrChange {
            kind,
            new_isr: isr.to_vec(),
            leader_epoch: 4,
            partition_epoch: pe,
        })
    }

    #[test]
    fn a_lone_leader_advances_the_high_watermark_on_append() {
        let (mut l, cmds) = leader(&[1], 5, 3, 1);
        assert_eq!(cmds, vec![hw(5, true)]);
        assert_eq!(l.on_append(8, 1), vec![hw(8, true)]);
        assert_eq!(l.on_append(8, 2), vec![]);
    }

    #[test]
    fn high_watermark_is_the_min_over_the_isr_and_waits_for_unknown_followers() {
        let (mut l, cmds) = leader(&[1, 2, 3], 10, 10, 2);
        assert!(cmds.is_empty());
        assert_eq!(l.on_append(15, 1), vec![]);
        // 2 fetches at 12: 3 is still unknown.
        assert_eq!(l.on_follower_fetch(2, 12, 2).unwrap(), vec![]);
        assert_eq!(l.on_follower_fetch(3, 11, 3).unwrap(), vec![hw(11, true)]);
        assert_eq!(l.on_follower_fetch(3, 15, 4).unwrap(), vec![hw(12, true)]);
        assert_eq!(l.on_follower_fetch(2, 15, 5).unwrap(), vec![hw(15, true)]);
        assert_eq!(l.high_watermark(), 15);
        assert_eq!(l.on_follower_fetch(7, 15, 6), Err(NotAReplica(7)));
    }

    #[test]
    fn high_watermark_never_goes_down() {
        // Becoming leader with a local HW above what followers report.
        let (mut l, _) = leader(&[1, 2], 20, 18, 1);
        assert_eq!(l.high_watermark(), 18);
        assert_eq!(l.on_follower_fetch(2, 17, 1).unwrap(), vec![]);
        assert_eq!(l.high_watermark(), 18);
        assert_eq!(l.on_follower_fetch(2, 20, 2).unwrap(), vec![hw(20, true)]);
    }

    #[test]
    fn caught_up_rule_uses_the_leader_end_at_the_previous_fetch() {
        let (mut l, _) = leader(&[1, 2, 3], 0, 0, 1);
        l.on_follower_fetch(3, 0, 0).unwrap();
        l.on_append(10, 100);
        // Fetch at 0 while the leader is at 10: not caught up now, but it
        // reached the leader's end (0) as of the previous fetch (time 0).
        l.on_follower_fetch(2, 0, 100).unwrap();
        assert_eq!(l.follower(2).unwrap().last_caught_up_ms, 0);
        l.on_append(20, 200);
        // Now at 10 = the leader's end at the previous fetch (t=100).
        l.on_follower_fetch(2, 10, 300).unwrap();
        assert_eq!(l.follower(2).unwrap().last_caught_up_ms, 100);
        l.on_follower_fetch(2, 20, 400).unwrap();
        assert_eq!(l.follower(2).unwrap().last_caught_up_ms, 400);
    }

    #[test]
    fn a_lagging_follower_is_shrunk_after_the_lag_time_and_only_then() {
        let (mut l, _) = leader(&[1, 2, 3], 0, 0, 2);
        l.on_append(5, 10);
        l.on_follower_fetch(2, 5, 20).unwrap();
        // 3 never fetches. Within the lag time: nothing.
        assert_eq!(l.tick(LAG), vec![]);
        // Past it: shrink to [1, 2], still pending so HW waits for 3.
        assert_eq!(l.tick(LAG + 1), vec![send(ChangeKind::Shrink, &[1, 2], 10)]);
        assert_eq!(l.high_watermark(), 0);
        assert_eq!(l.maximal_isr(), vec![1, 2, 3]);
        // One change in flight: another tick plans nothing.
        assert_eq!(l.tick(LAG + 50), vec![]);
        let cmds = l.on_alter_isr_outcome(
            AlterIsrOutcome::Committed {
                isr: vec![1, 2],
                leader_epoch: 4,
                partition_epoch: 11,
            },
            LAG + 60,
        );
        assert_eq!(cmds, vec![hw(5, true)]);
        assert_eq!((l.isr(), l.partition_epoch()), (&[1, 2][..], 11));
    }

    #[test]
    fn an_idle_follower_at_the_leader_end_stays_in_sync() {
        let (mut l, _) = leader(&[1, 2], 7, 7, 1);
        l.on_follower_fetch(2, 7, 1).unwrap();
        assert_eq!(l.tick(10 * LAG), vec![]);
    }

    #[test]
    fn shrinking_below_min_insync_completes_waiters_as_not_enough_replicas() {
        let (mut l, _) = leader(&[1, 2], 0, 0, 2);
        l.on_append(3, 1);
        assert_eq!(l.tick(LAG + 2), vec![send(ChangeKind::Shrink, &[1], 10)]);
        let cmds = l.on_alter_isr_outcome(
            AlterIsrOutcome::Committed {
                isr: vec![1],
                leader_epoch: 4,
                partition_epoch: 11,
            },
            LAG + 3,
        );
        assert_eq!(cmds, vec![hw(3, false)]);
        assert!(!l.has_enough_replicas());
    }

    #[test]
    fn a_follower_rejoins_once_at_the_high_watermark_and_the_epoch_start() {
        let (mut l, _) = leader(&[1, 2], 10, 10, 1);
        l.on_append(20, 1);
        l.on_follower_fetch(2, 20, 2).unwrap();
        assert_eq!(l.high_watermark(), 20);
        // 3 is behind the HW: no expansion.
        assert_eq!(l.on_follower_fetch(3, 15, 3).unwrap(), vec![]);
        // At the HW: expansion, and from now on the HW waits for 3.
        assert_eq!(
            l.on_follower_fetch(3, 20, 4).unwrap(),
            vec![send(ChangeKind::Expand, &[1, 2, 3], 10)]
        );
        l.on_append(30, 5);
        l.on_follower_fetch(2, 30, 6).unwrap();
        assert_eq!(l.high_watermark(), 20);
        assert_eq!(l.on_follower_fetch(3, 30, 7).unwrap(), vec![hw(30, true)]);
        l.on_alter_isr_outcome(
            AlterIsrOutcome::Committed {
                isr: vec![1, 2, 3],
                leader_epoch: 4,
                partition_epoch: 11,
            },
            8,
        );
        assert_eq!(l.isr(), &[1, 2, 3]);
    }

    #[test]
    fn a_replica_the_coordinator_removed_must_fetch_again_to_rejoin() {
        // 3 was caught up, then died; the coordinator fenced it and pushed
        // an ISR without it. Its old log end offset must not bring it back.
        let (mut l, _) = leader(&[1, 2, 3], 10, 10, 1);
        l.on_follower_fetch(2, 10, 1).unwrap();
        l.on_follower_fetch(3, 10, 1).unwrap();
        let cmds = l.on_push(vec![1, 2, 3], vec![1, 2], 11, 1, 2);
        assert!(
            cmds.iter().all(|c| !matches!(c, Command::SendAlterIsr(_))),
            "{cmds:?}"
        );
        assert_eq!(l.tick(3), vec![]);
        // Once it fetches again at the HW, it is proposed.
        assert_eq!(
            l.on_follower_fetch(3, 10, 4).unwrap(),
            vec![send(ChangeKind::Expand, &[1, 2, 3], 11)]
        );
    }

    #[test]
    fn a_follower_below_the_epoch_start_does_not_join() {
        // Leader epoch began at 10 with HW 5; 2 (ISR) has not fetched yet.
        let (mut l, cmds) = LeaderState::start(
            LeaderStart {
                me: 1,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2],
                leader_epoch: 4,
                partition_epoch: 10,
                epoch_start_offset: 10,
                log_end_offset: 10,
                high_watermark: 5,
                min_insync_replicas: 1,
                lag_max_ms: LAG,
                retry_after_refusal_ms: 500,
            },
            0,
        );
        assert!(cmds.is_empty());
        // 3 is at 8: past the HW but not at this epoch's start.
        assert_eq!(l.on_follower_fetch(3, 8, 1).unwrap(), vec![]);
        assert_eq!(
            l.on_follower_fetch(3, 10, 2).unwrap(),
            vec![send(ChangeKind::Expand, &[1, 2, 3], 10)]
        );
    }

    #[test]
    fn refusal_blocks_planning_until_a_push_or_the_retry_time() {
        let (mut l, _) = leader(&[1, 2, 3], 0, 0, 1);
        l.on_append(5, 1);
        l.on_follower_fetch(2, 5, 2).unwrap();
        assert_eq!(l.tick(LAG + 1).len(), 1);
        assert!(
            l.on_alter_isr_outcome(AlterIsrOutcome::Refused, LAG + 2)
                .is_empty()
        );
        assert!(l.pending().is_none());
        assert_eq!(l.tick(LAG + 100), vec![]);
        // The retry time passed: plan again.
        assert_eq!(
            l.tick(LAG + 600),
            vec![send(ChangeKind::Shrink, &[1, 2], 10)]
        );
        // A push with a newer partition epoch supersedes the change in
        // flight and is adopted.
        let cmds = l.on_push(vec![1, 2, 3], vec![1, 2], 12, 1, LAG + 700);
        assert_eq!(cmds, vec![hw(5, true)]);
        assert!(l.pending().is_none());
        assert_eq!(l.partition_epoch(), 12);
        // An older push is ignored.
        l.on_push(vec![1, 2, 3], vec![1, 2, 3], 11, 1, LAG + 800);
        assert_eq!(l.isr(), &[1, 2]);
    }

    #[test]
    fn an_answer_older_than_a_push_or_for_another_epoch_changes_nothing() {
        let (mut l, _) = leader(&[1, 2, 3], 0, 0, 1);
        l.on_append(5, 1);
        l.on_follower_fetch(2, 5, 2).unwrap();
        l.on_follower_fetch(3, 5, 2).unwrap();
        l.on_push(vec![1, 2, 3], vec![1, 2, 3], 13, 1, 3);
        l.on_alter_isr_outcome(
            AlterIsrOutcome::Committed {
                isr: vec![1],
                leader_epoch: 4,
                partition_epoch: 12,
            },
            4,
        );
        assert_eq!((l.isr(), l.partition_epoch()), (&[1, 2, 3][..], 13));
        l.on_alter_isr_outcome(
            AlterIsrOutcome::Committed {
                isr: vec![1],
                leader_epoch: 5,
                partition_epoch: 20,
            },
            5,
        );
        assert_eq!(l.isr(), &[1, 2, 3]);
    }

    #[test]
    fn replica_changes_by_push_add_and_drop_followers() {
        let (mut l, _) = leader(&[1, 2, 3], 0, 0, 1);
        l.on_push(vec![1, 2, 4], vec![1, 2], 11, 1, 5);
        assert!(l.follower(3).is_none());
        assert_eq!(l.follower(4).unwrap().log_end_offset, UNKNOWN_OFFSET);
        assert_eq!(l.on_follower_fetch(3, 0, 6), Err(NotAReplica(3)));
    }
}
