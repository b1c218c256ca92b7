//! The leader-epoch cache (Kafka's KIP-101 / KIP-279): for each leader
//! epoch that wrote to the log, the offset of its first batch. It answers
//! "where does epoch E end in this log?" ([`LeaderEpochCache::end_offset_for_epoch`]),
//! which a follower asks the leader after a leader change so that it
//! truncates exactly the suffix the leader does not have, and
//! [`follower_truncation`] turns that answer into the follower's
//! truncation offset.
//!
//! Pure: no I/O and no clock. [`super::PartitionLog`] persists the entries
//! (`leader-epoch-checkpoint`) whenever they change.
//!
//! Invariant: entries are strictly increasing in both epoch and start
//! offset. [`LeaderEpochCache::assign`] keeps it by dropping later entries
//! that conflict with a new one (as Kafka does).

/// "No epoch" in requests and answers (Kafka's `UNDEFINED_EPOCH`).
pub const UNDEFINED_EPOCH: i32 = -1;
/// "No offset" in answers (Kafka's `UNDEFINED_EPOCH_OFFSET`).
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// One epoch and the offset of its first batch in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: i32,
    /// Offset of the first batch the epoch's leader wrote.
    pub start_offset: i64,
}

/// Answer to an OffsetsForLeaderEpoch question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEndOffset {
    /// The largest epoch <= the requested one that this log knows (or the
    /// requested epoch when the log only knows later ones), or
    /// [`UNDEFINED_EPOCH`].
    pub epoch: i32,
    /// The offset after that epoch's last batch in this log (the start
    /// offset of the next epoch, or the log end offset for the latest
    /// epoch), or [`UNDEFINED_EPOCH_OFFSET`].
    pub end_offset: i64,
}

impl EpochEndOffset {
    /// The "unknown" answer.
    pub const UNDEFINED: EpochEndOffset = EpochEndOffset {
        epoch: UNDEFINED_EPOCH,
        end_offset: UNDEFINED_EPOCH_OFFSET,
    };
}

/// The ordered (epoch, start offset) entries of one log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// A cache holding `entries`, which must be strictly increasing in
    /// epoch and start offset, with no negative value (as written by this
    /// module); otherwise the reason they are not.
    pub fn from_entries(entries: Vec<EpochEntry>) -> Result<Self, String> {
        for (i, e) in entries.iter().enumerate() {
            if e.epoch < 0 || e.start_offset < 0 {
                return Err(format!("negative entry {e:?}"));
            }
            if i > 0 {
                let p = entries[i - 1];
                if e.epoch <= p.epoch || e.start_offset <= p.start_offset {
                    return Err(format!("entry {e:?} does not follow {p:?}"));
                }
            }
        }
        Ok(LeaderEpochCache { entries })
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The latest epoch, if any.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// The latest entry, if any.
    pub fn latest_entry(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// The earliest entry, if any.
    pub fn earliest_entry(&self) -> Option<EpochEntry> {
        self.entries.first().copied()
    }

    /// The epoch of the leader that wrote `offset` (the latest entry
    /// starting at or before it).
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.start_offset <= offset)
            .map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset`. A repeated epoch at a
    /// later offset changes nothing (the first offset stays); a new epoch,
    /// or the latest epoch at an earlier offset, drops every entry whose
    /// epoch or start offset is not below the new one, then adds it.
    /// Negative values are ignored (batches without an epoch). Returns
    /// whether the entries changed (and must be persisted).
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        if let Some(last) = self.entries.last()
            && last.epoch == epoch
            && last.start_offset <= start_offset
        {
            return false;
        }
        while let Some(last) = self.entries.last() {
            if last.epoch >= epoch || last.start_offset >= start_offset {
                self.entries.pop();
            } else {
                break;
            }
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Kafka's `endOffsetFor` (KIP-279): the largest epoch <= `requested`
    /// and the start offset of the first larger epoch, or `log_end_offset`
    /// when `requested` is the latest epoch. When every known epoch is
    /// larger, the answer is `requested` with the first epoch's start
    /// offset (the log has lost the earlier history, and the asker must
    /// not keep anything past it). Undefined for [`UNDEFINED_EPOCH`], an
    /// empty cache, or an epoch above the latest.
    pub fn end_offset_for_epoch(&self, requested: i32, log_end_offset: i64) -> EpochEndOffset {
        if requested == UNDEFINED_EPOCH {
            return EpochEndOffset::UNDEFINED;
        }
        if self.latest_epoch() == Some(requested) {
            return EpochEndOffset {
                epoch: requested,
                end_offset: log_end_offset,
            };
        }
        let Some(higher) = self.entries.iter().find(|e| e.epoch > requested) else {
            return EpochEndOffset::UNDEFINED;
        };
        match self.entries.iter().rev().find(|e| e.epoch <= requested) {
            None => EpochEndOffset {
                epoch: requested,
                end_offset: higher.start_offset,
            },
            Some(floor) => EpochEndOffset {
                epoch: floor.epoch,
                end_offset: higher.start_offset,
            },
        }
    }

    /// After truncating the log to `end_offset`: drops every entry starting
    /// at or after it. A negative offset changes nothing. Returns whether
    /// the entries changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        if end_offset < 0 {
            return false;
        }
        let before = self.entries.len();
        while self
            .entries
            .last()
            .is_some_and(|e| e.start_offset >= end_offset)
        {
            self.entries.pop();
        }
        self.entries.len() != before
    }

    /// After moving the log start to `start_offset`: drops the entries
    /// starting at or before it, keeping the last of them (the epoch that
    /// wrote `start_offset`) re-based to start there. Returns whether the
    /// entries changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covered = self
            .entries
            .iter()
            .take_while(|e| e.start_offset <= start_offset)
            .count();
        if covered == 0 {
            return false;
        }
        let epoch = self.entries[covered - 1].epoch;
        let unchanged = covered == 1 && self.entries[0].start_offset == start_offset;
        self.entries.drain(..covered);
        self.entries.insert(
            0,
            EpochEntry {
                epoch,
                start_offset,
            },
        );
        !unchanged
    }

    /// Drops every entry. Returns whether there were any.
    pub fn clear(&mut self) -> bool {
        let had = !self.entries.is_empty();
        self.entries.clear();
        had
    }
}

/// Where a follower truncates, given the leader's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    /// Truncate the follower's log to this offset (never above its log
    /// end offset).
    pub offset: i64,
    /// False when the follower must ask the leader again, with its own
    /// latest epoch after this truncation, before fetching.
    pub complete: bool,
}

/// KIP-279's follower side (Kafka's `getOffsetTruncationState`): the
/// follower asked the leader `end_offset_for_epoch(its latest epoch)` and
/// got `leader`. Returns where the follower truncates:
///
/// * the leader knows no such offset: truncate to the follower's high
///   watermark (the pre-KIP-101 rule, the only safe guess);
/// * the leader answered with an epoch the follower also has: truncate to
///   min(leader's end offset, the follower's end offset for that epoch,
///   the follower's log end) — done;
/// * the leader answered with an epoch the follower does not have (the
///   follower's log holds only earlier ones there): truncate to the end of
///   the follower's largest epoch below it and ask again;
/// * the follower knows no epoch at or below it: truncate to min(leader's
///   end offset, log end).
///
/// After a complete truncation the follower's log is a prefix of the
/// leader's, so replicas never diverge, including after an unclean
/// election.
pub fn follower_truncation(
    leader: EpochEndOffset,
    follower: &LeaderEpochCache,
    follower_log_end: i64,
    follower_high_watermark: i64,
) -> Truncation {
    if leader.end_offset == UNDEFINED_EPOCH_OFFSET {
        return Truncation {
            offset: follower_high_watermark.min(follower_log_end),
            complete: true,
        };
    }
    if leader.epoch == UNDEFINED_EPOCH {
        return Truncation {
            offset: leader.end_offset.min(follower_log_end),
            complete: true,
        };
    }
    let own = follower.end_offset_for_epoch(leader.epoch, follower_log_end);
    if own.end_offset == UNDEFINED_EPOCH_OFFSET {
        return Truncation {
            offset: leader.end_offset.min(follower_log_end),
            complete: true,
        };
    }
    if own.epoch != leader.epoch {
        return Truncation {
            offset: own.end_offset.min(follower_log_end),
            complete: false,
        };
    }
    Truncation {
        offset: own.end_offset.min(leader.end_offset).min(follower_log_end),
        complete: true,
    }
}

#[cfg(test)]
mod tests {
    //! Golden cases from Kafka's `LeaderEpochFileCacheTest`, with the log
    //! end offset passed explicitly.
    use super::*;

    fn e(epoch: i32, start_offset: i64) -> EpochEntry {
        EpochEntry {
            epoch,
            start_offset,
        }
    }

    fn eo(epoch: i32, end_offset: i64) -> EpochEndOffset {
        EpochEndOffset { epoch, end_offset }
    }

    fn cache(assigns: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::new();
        for &(epoch, start) in assigns {
            c.assign(epoch, start);
        }
        c
    }

    #[test]
    fn add_epoch_and_latest_returns_log_end() {
        let c = cache(&[(2, 10)]);
        assert_eq!(c.latest_epoch(), Some(2));
        assert_eq!(c.entries(), &[e(2, 10)]);
        assert_eq!(c.end_offset_for_epoch(2, 11), eo(2, 11));
        let c = cache(&[(2, 11), (2, 12)]);
        assert_eq!(c.end_offset_for_epoch(2, 14), eo(2, 14));
    }

    #[test]
    fn undefined_requests_and_empty_cache() {
        let c = cache(&[(2, 11), (3, 12)]);
        assert_eq!(
            c.end_offset_for_epoch(UNDEFINED_EPOCH, 20),
            EpochEndOffset::UNDEFINED
        );
        let empty = LeaderEpochCache::new();
        assert_eq!(empty.end_offset_for_epoch(0, 73), EpochEndOffset::UNDEFINED);
        assert_eq!(
            empty.end_offset_for_epoch(UNDEFINED_EPOCH, 73),
            EpochEndOffset::UNDEFINED
        );
        assert_eq!(empty.end_offset_for_epoch(7, 0), EpochEndOffset::UNDEFINED);
        assert_eq!(empty.latest_epoch(), None);
        // Epoch above the latest.
        let c = cache(&[(2, 100)]);
        assert_eq!(c.end_offset_for_epoch(3, 100), EpochEndOffset::UNDEFINED);
    }

    #[test]
    fn first_offset_of_an_epoch_is_kept() {
        let c = cache(&[(2, 9), (2, 10)]);
        assert_eq!(c.entries(), &[e(2, 9)]);
        let c = cache(&[(2, 6), (2, 10)]);
        assert_eq!(c.entries(), &[e(2, 6)]);
        let c = cache(&[(2, 6), (2, 7)]);
        assert_eq!(c.entries(), &[e(2, 6)]);
    }

    #[test]
    fn monotonic_offsets_and_epochs_enforced() {
        assert_eq!(cache(&[(2, 9), (3, 9)]).entries(), &[e(3, 9)]);
        assert_eq!(cache(&[(2, 6), (3, 5)]).entries(), &[e(3, 5)]);
        let c = cache(&[(1, 5), (2, 6), (1, 7)]);
        assert_eq!(c.latest_epoch(), Some(1));
        assert_eq!(c.end_offset_for_epoch(1, 8), eo(1, 8));
        assert_eq!(c.end_offset_for_epoch(2, 8), EpochEndOffset::UNDEFINED);
        assert_eq!(c.entries(), &[e(1, 7)]);
    }

    #[test]
    fn requested_epoch_below_the_first() {
        let c = cache(&[(5, 11), (6, 12), (7, 13)]);
        assert_eq!(c.end_offset_for_epoch(4, 20), eo(4, 11));
    }

    #[test]
    fn latest_epoch_at_an_earlier_offset_truncates() {
        let c = cache(&[(5, 11), (6, 12), (7, 13), (7, 12)]);
        assert_eq!(c.end_offset_for_epoch(5, 20), eo(5, 12));
        assert_eq!(c.end_offset_for_epoch(6, 20), eo(5, 12));
    }

    #[test]
    fn previous_epoch_ends_where_the_next_starts() {
        let c = cache(&[(1, 11), (1, 12), (2, 13), (2, 14), (3, 15), (3, 16)]);
        assert_eq!(c.end_offset_for_epoch(2, 17), eo(2, 15));
        let c = cache(&[(0, 10), (2, 13), (4, 17)]);
        assert_eq!(c.end_offset_for_epoch(1, 20), eo(0, 13));
        assert_eq!(c.end_offset_for_epoch(2, 20), eo(2, 17));
        assert_eq!(c.end_offset_for_epoch(3, 20), eo(2, 17));
    }

    #[test]
    fn epochs_that_do_not_start_at_zero() {
        let c = cache(&[(2, 6)]);
        assert_eq!(c.end_offset_for_epoch(2, 7), eo(2, 7));
        assert_eq!(c.entries(), &[e(2, 6)]);
    }

    #[test]
    fn many_leader_changes() {
        let mut c = cache(&[(0, 0), (1, 0)]);
        assert_eq!(c.latest_epoch(), Some(1));
        assert_eq!(c.end_offset_for_epoch(1, 0), eo(1, 0));
        assert_eq!(c.end_offset_for_epoch(0, 0), eo(0, 0));
        assert_eq!(c.end_offset_for_epoch(1, 5), eo(1, 5));
        assert_eq!(c.end_offset_for_epoch(0, 5), eo(0, 0));
        c.assign(2, 5);
        assert_eq!(c.end_offset_for_epoch(2, 10), eo(2, 10));
        assert_eq!(c.end_offset_for_epoch(1, 10), eo(1, 5));
        assert_eq!(c.end_offset_for_epoch(0, 10), eo(0, 0));
    }

    #[test]
    fn follower_receiving_many_messages() {
        let c = cache(&[(0, 0), (0, 1), (0, 2)]);
        assert_eq!(c.end_offset_for_epoch(0, 3), eo(0, 3));
        let c = cache(&[(0, 0), (0, 1), (0, 2), (1, 3), (1, 4), (1, 5)]);
        assert_eq!(c.end_offset_for_epoch(1, 6), eo(1, 6));
        let c = cache(&[(0, 0), (0, 1), (0, 2), (1, 3), (1, 4), (2, 6), (2, 8)]);
        assert_eq!(c.latest_epoch(), Some(2));
        assert_eq!(c.end_offset_for_epoch(2, 9), eo(2, 9));
        assert_eq!(c.end_offset_for_epoch(0, 9), eo(0, 3));
        assert_eq!(c.end_offset_for_epoch(1, 9), eo(1, 6));
    }

    #[test]
    fn truncate_from_end() {
        let base = cache(&[(2, 6), (3, 8), (4, 11)]);
        let mut c = base.clone();
        assert!(c.truncate_from_end(8));
        assert_eq!(c.entries(), &[e(2, 6)]);
        let mut c = base.clone();
        assert!(c.truncate_from_end(9));
        assert_eq!(c.latest_epoch(), Some(3));
        assert_eq!(c.entries(), &[e(2, 6), e(3, 8)]);
        let mut c = base.clone();
        assert!(!c.truncate_from_end(UNDEFINED_EPOCH_OFFSET));
        assert_eq!(c, base);
        assert!(!LeaderEpochCache::new().truncate_from_end(7));
    }

    #[test]
    fn truncate_from_start() {
        let base = cache(&[(2, 6), (3, 8), (4, 11)]);
        let cases: &[(i64, &[EpochEntry])] = &[
            (8, &[e(3, 8), e(4, 11)]),
            (9, &[e(3, 9), e(4, 11)]),
            (1, &[e(2, 6), e(3, 8), e(4, 11)]),
            (6, &[e(2, 6), e(3, 8), e(4, 11)]),
            (11, &[e(4, 11)]),
            (15, &[e(4, 15)]),
        ];
        for (offset, expected) in cases {
            let mut c = base.clone();
            let changed = c.truncate_from_start(*offset);
            assert_eq!(c.entries(), *expected, "truncate_from_start({offset})");
            assert_eq!(changed, c != base, "changed flag for {offset}");
        }
        let mut c = cache(&[(0, 0), (1, 7), (2, 10)]);
        c.truncate_from_start(5);
        assert_eq!(c.entries(), &[e(0, 5), e(1, 7), e(2, 10)]);
        assert!(!LeaderEpochCache::new().truncate_from_start(7));
    }

    #[test]
    fn clear_and_from_entries() {
        let mut c = cache(&[(2, 6), (3, 8), (4, 11)]);
        assert!(c.clear());
        assert!(c.entries().is_empty());
        assert!(LeaderEpochCache::from_entries(vec![e(1, 0), e(2, 5)]).is_ok());
        assert!(LeaderEpochCache::from_entries(vec![e(2, 0), e(1, 5)]).is_err());
        assert!(LeaderEpochCache::from_entries(vec![e(1, 5), e(2, 5)]).is_err());
        assert!(LeaderEpochCache::from_entries(vec![e(-1, 5)]).is_err());
    }

    #[test]
    fn epoch_for_offset() {
        let c = cache(&[(2, 6), (3, 8)]);
        assert_eq!(c.epoch_for_offset(5), None);
        assert_eq!(c.epoch_for_offset(6), Some(2));
        assert_eq!(c.epoch_for_offset(7), Some(2));
        assert_eq!(c.epoch_for_offset(100), Some(3));
    }

    /// KIP-101's unclean-election case: A (leader, epoch 0) wrote [0, 12),
    /// B replicated only [0, 10); B was elected uncleanly at epoch 1 and
    /// wrote [10, 15). A, now a follower, asks B for epoch 0's end: 10.
    #[test]
    fn follower_truncates_a_suffix_the_new_leader_never_had() {
        let b = cache(&[(0, 0), (1, 10)]);
        let a = cache(&[(0, 0)]);
        let answer = b.end_offset_for_epoch(a.latest_epoch().unwrap(), 15);
        assert_eq!(answer, eo(0, 10));
        assert_eq!(
            follower_truncation(answer, &a, 12, 10),
            Truncation {
                offset: 10,
                complete: true
            }
        );
    }

    /// The follower B holds a diverging epoch-1 suffix [10, 13) that no one
    /// replicated; A was then elected at epoch 2 and wrote [10, 16). B asks
    /// for epoch 1's end: A answers (0, 10) and B truncates to 10.
    #[test]
    fn follower_truncates_a_diverging_epoch_suffix() {
        let a = cache(&[(0, 0), (2, 10)]);
        let b = cache(&[(0, 0), (1, 10)]);
        let answer = a.end_offset_for_epoch(1, 16);
        assert_eq!(answer, eo(0, 10));
        assert_eq!(
            follower_truncation(answer, &b, 13, 5),
            Truncation {
                offset: 10,
                complete: true
            }
        );
        // Logs that agree: nothing to truncate.
        let answer = a.end_offset_for_epoch(0, 16);
        assert_eq!(
            follower_truncation(answer, &cache(&[(0, 0)]), 8, 5),
            Truncation {
                offset: 8,
                complete: true
            }
        );
    }

    /// The leader answers with an epoch the follower does not know: the
    /// follower truncates to the end of its own largest epoch below it and
    /// asks again with that epoch.
    #[test]
    fn follower_walks_back_through_unknown_epochs() {
        let a = cache(&[(0, 0), (1, 10), (4, 15)]);
        let b = cache(&[(0, 0), (3, 12)]);
        let answer = a.end_offset_for_epoch(3, 30);
        assert_eq!(answer, eo(1, 15));
        let t = follower_truncation(answer, &b, 20, 8);
        assert_eq!(
            t,
            Truncation {
                offset: 12,
                complete: false
            }
        );
        let mut b = b;
        b.truncate_from_end(t.offset);
        let answer = a.end_offset_for_epoch(b.latest_epoch().unwrap(), 30);
        assert_eq!(answer, eo(0, 10));
        assert_eq!(
            follower_truncation(answer, &b, 12, 8),
            Truncation {
                offset: 10,
                complete: true
            }
        );
        // An undefined answer falls back to the high watermark.
        assert_eq!(
            follower_truncation(EpochEndOffset::UNDEFINED, &b, 12, 8),
            Truncation {
                offset: 8,
                complete: true
            }
        );
    }
}
