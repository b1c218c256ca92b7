//! Idempotent producers: the last batches each producer wrote to a
//! partition, so that a retried batch is recognised and answered with its
//! original offsets instead of being written twice (Kafka's
//! `ProducerStateManager`, without transactions).
//!
//! A producer stamps every batch with its id, an epoch and the sequence of
//! its first record; sequences count records per partition from 0 and wrap
//! at `i32::MAX`. Per producer the log keeps its epoch, the last sequence it
//! holds and the offsets of its last [`KEPT_BATCHES`] batches. A batch of
//! the producer is then:
//! * a **duplicate** when its sequences equal one of the kept batches': the
//!   leader answers with that batch's offsets and writes nothing;
//! * **next** when its first sequence follows the last one (or is 0 under a
//!   newer epoch, or the producer is unknown here): it is written;
//! * otherwise refused: an older epoch is [`LogError::InvalidProducerEpoch`]
//!   (a fenced incarnation), a gap or a sequence before the kept window
//!   [`LogError::OutOfOrderSequence`].
//!
//! What a producer is unknown to: the state is rebuilt from the headers of
//! the last segments when the log opens or is truncated, so a producer
//! idle for longer than that is accepted at any sequence (as Kafka accepts
//! a producer whose state expired). Batches without a producer id are not
//! tracked. Pure: no I/O.

use std::collections::{HashMap, VecDeque};

use ballast_record::BatchHeader;

use super::error::LogError;

/// Batches remembered per producer (Kafka keeps five: the most a producer
/// may have in flight per partition).
pub const KEPT_BATCHES: usize = 5;

/// Producers remembered per partition; past this the least recently
/// written is forgotten.
pub const MAX_PRODUCERS: usize = 10_000;

/// One batch of a producer: its sequences and offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptBatch {
    /// First sequence.
    pub first_seq: i32,
    /// Last sequence.
    pub last_seq: i32,
    /// First offset.
    pub base_offset: i64,
    /// Last offset.
    pub last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    epoch: i16,
    batches: VecDeque<KeptBatch>,
    /// Offset of the latest batch (for forgetting the least recent).
    last_offset: i64,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Write it.
    Append,
    /// Already written: these are its offsets.
    Duplicate(KeptBatch),
}

/// The producers of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerStates {
    producers: HashMap<i64, Entry>,
}

/// The sequence after `seq` (wrapping at `i32::MAX`, as Kafka does).
fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX { 0 } else { seq + 1 }
}

fn tracked(h: &BatchHeader) -> bool {
    h.producer_id >= 0 && h.base_sequence >= 0 && !h.is_control()
}

impl ProducerStates {
    /// Producers known.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// No producer known.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Judges an incoming batch (its offsets not yet assigned).
    pub fn check(&self, h: &BatchHeader) -> Result<Verdict, LogError> {
        if !tracked(h) {
            return Ok(Verdict::Append);
        }
        let Some(e) = self.producers.get(&h.producer_id) else {
            return Ok(Verdict::Append);
        };
        let (first, last) = (h.base_sequence, h.last_sequence());
        if h.producer_epoch < e.epoch {
            return Err(LogError::InvalidProducerEpoch {
                producer_id: h.producer_id,
                current: e.epoch,
                got: h.producer_epoch,
            });
        }
        if h.producer_epoch > e.epoch {
            return if first == 0 {
                Ok(Verdict::Append)
            } else {
                Err(LogError::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    epoch: h.producer_epoch,
                    last: -1,
                    got: first,
                })
            };
        }
        if let Some(b) = e
            .batches
            .iter()
            .find(|b| b.first_seq == first && b.last_seq == last)
        {
            return Ok(Verdict::Duplicate(*b));
        }
        let held = e.batches.back().map_or(-1, |b| b.last_seq);
        if first == next_seq(held) {
            return Ok(Verdict::Append);
        }
        Err(LogError::OutOfOrderSequence {
            producer_id: h.producer_id,
            epoch: h.producer_epoch,
            last: held,
            got: first,
        })
    }

    /// Whether `h` comes after a batch of its producer that is not here yet:
    /// same producer epoch, and its first sequence lies ahead of the next
    /// expected one (by less than half the sequence space, so a stale retry
    /// from before the kept window is not mistaken for one). The leader may
    /// briefly hold such a batch for the one it overtook (`data.rs`).
    pub fn is_ahead(&self, h: &BatchHeader) -> bool {
        if !tracked(h) {
            return false;
        }
        let Some(e) = self.producers.get(&h.producer_id) else {
            return false;
        };
        if h.producer_epoch != e.epoch {
            return false;
        }
        let Some(held) = e.batches.back().map(|b| b.last_seq) else {
            return false;
        };
        let next = i64::from(next_seq(held));
        let first = i64::from(h.base_sequence);
        // Forward distance on the wrapping sequence circle [0, i32::MAX].
        let span = i64::from(i32::MAX) + 1;
        let ahead = (first - next).rem_euclid(span);
        ahead > 0 && ahead < span / 2
    }

    /// Records a batch written to the log (by the leader, with its offsets
    /// assigned, or fetched by a follower, or read back at recovery).
    pub fn record(&mut self, h: &BatchHeader) {
        if !tracked(h) {
            return;
        }
        let kept = KeptBatch {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        };
        let e = self.producers.entry(h.producer_id).or_insert(Entry {
            epoch: h.producer_epoch,
            batches: VecDeque::new(),
            last_offset: kept.last_offset,
        });
        if h.producer_epoch != e.epoch {
            e.epoch = h.producer_epoch;
            e.batches.clear();
        }
        e.batches.push_back(kept);
        while e.batches.len() > KEPT_BATCHES {
            e.batches.pop_front();
        }
        e.last_offset = kept.last_offset;
        if self.producers.len() > MAX_PRODUCERS
            && let Some(oldest) = self
                .producers
                .iter()
                .min_by_key(|(id, e)| (e.last_offset, **id))
                .map(|(id, _)| *id)
        {
            self.producers.remove(&oldest);
        }
    }

    /// Forget everything (before a rebuild from the log).
    pub fn clear(&mut self) {
        self.producers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(pid: i64, epoch: i16, seq: i32, count: i32, offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset: offset,
            batch_length: 49 + count,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn a_retried_batch_is_a_duplicate_with_its_offsets() {
        let mut s = ProducerStates::default();
        let b = batch(7, 0, 0, 3, 100);
        assert_eq!(s.check(&b).unwrap(), Verdict::Append);
        s.record(&b);
        let next = batch(7, 0, 3, 2, 103);
        s.record(&next);
        // The same sequences again, whatever offset the retry was given.
        match s.check(&batch(7, 0, 0, 3, 0)).unwrap() {
            Verdict::Duplicate(k) => assert_eq!((k.base_offset, k.last_offset), (100, 102)),
            v => panic!("{v:?}"),
        }
        match s.check(&batch(7, 0, 3, 2, 0)).unwrap() {
            Verdict::Duplicate(k) => assert_eq!((k.base_offset, k.last_offset), (103, 104)),
            v => panic!("{v:?}"),
        }
        assert_eq!(s.check(&batch(7, 0, 5, 1, 0)).unwrap(), Verdict::Append);
    }

    #[test]
    fn gaps_old_epochs_and_new_epochs() {
        let mut s = ProducerStates::default();
        s.record(&batch(7, 2, 0, 3, 0));
        assert!(matches!(
            s.check(&batch(7, 2, 4, 1, 0)),
            Err(LogError::OutOfOrderSequence {
                last: 2,
                got: 4,
                ..
            })
        ));
        assert!(matches!(
            s.check(&batch(7, 1, 3, 1, 0)),
            Err(LogError::InvalidProducerEpoch {
                current: 2,
                got: 1,
                ..
            })
        ));
        // A newer epoch starts again at 0, and only at 0.
        assert!(s.check(&batch(7, 3, 5, 1, 0)).is_err());
        assert_eq!(s.check(&batch(7, 3, 0, 1, 0)).unwrap(), Verdict::Append);
        s.record(&batch(7, 3, 0, 1, 3));
        // The old epoch's batches are forgotten with it.
        assert!(s.check(&batch(7, 2, 0, 3, 0)).is_err());
    }

    #[test]
    fn unknown_and_untracked_producers_are_written() {
        let s = ProducerStates::default();
        assert_eq!(s.check(&batch(9, 0, 42, 1, 0)).unwrap(), Verdict::Append);
        assert_eq!(s.check(&batch(-1, -1, -1, 1, 0)).unwrap(), Verdict::Append);
        let mut s = ProducerStates::default();
        s.record(&batch(-1, -1, -1, 1, 0));
        assert!(s.is_empty());
    }

    #[test]
    fn a_batch_is_ahead_only_past_a_gap_of_the_same_epoch() {
        let mut s = ProducerStates::default();
        // Unknown producer, untracked batch: never ahead.
        assert!(!s.is_ahead(&batch(7, 0, 9, 1, 0)));
        assert!(!s.is_ahead(&batch(-1, -1, -1, 1, 0)));
        s.record(&batch(7, 0, 0, 3, 0));
        assert!(!s.is_ahead(&batch(7, 0, 3, 1, 0)), "next is not ahead");
        assert!(s.is_ahead(&batch(7, 0, 4, 1, 0)));
        assert!(s.is_ahead(&batch(7, 0, 1_000, 1, 0)));
        assert!(!s.is_ahead(&batch(7, 0, 0, 3, 0)), "a duplicate");
        assert!(!s.is_ahead(&batch(7, 1, 4, 1, 0)), "another epoch");
        // Far behind (a stale retry) is not ahead, also across the wrap.
        let mut s = ProducerStates::default();
        s.record(&batch(1, 0, i32::MAX - 1, 2, 0));
        assert!(!s.is_ahead(&batch(1, 0, 0, 1, 0)), "next after the wrap");
        assert!(s.is_ahead(&batch(1, 0, 2, 1, 0)), "ahead across the wrap");
        assert!(!s.is_ahead(&batch(1, 0, i32::MAX - 10, 1, 0)));
    }

    #[test]
    fn sequences_wrap_and_only_five_batches_are_kept() {
        let mut s = ProducerStates::default();
        s.record(&batch(1, 0, i32::MAX - 1, 2, 0));
        assert_eq!(s.check(&batch(1, 0, 0, 1, 0)).unwrap(), Verdict::Append);
        let mut s = ProducerStates::default();
        for i in 0..7 {
            s.record(&batch(1, 0, i, 1, i64::from(i)));
        }
        // The two oldest fell out of the window: neither duplicate nor next.
        assert!(s.check(&batch(1, 0, 0, 1, 0)).is_err());
        assert!(matches!(
            s.check(&batch(1, 0, 2, 1, 0)).unwrap(),
            Verdict::Duplicate(_)
        ));
    }
}
