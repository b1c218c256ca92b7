//! Property: after the faults heal, every acknowledged record is in its
//! partition exactly once, at the offset its acknowledgement named, and a
//! producer's records of one partition are in its send order.
//!
//! Kinds, most critical first: `lost` (not in the log at all), `unverified`
//! (not found, but the full read of that partition did not complete),
//! `moved` (present once but at another offset than acknowledged),
//! `reordered` (a producer's later record before an earlier one),
//! `duplicate` (present more than once: a retried batch written twice).
//! Records whose send failed are indeterminate and not required; their
//! duplicates are only counted in the summary.

use std::collections::BTreeMap;

use crate::faults::check::{Report, Violation};
use crate::faults::history::{Ack, History};

/// The property's name.
pub const PROPERTY: &str = "acknowledged records present exactly once, in order";

/// Checks [`PROPERTY`].
pub fn check(history: &History) -> Report {
    let empty = Vec::new();
    let mut violations = Vec::new();
    let mut acks_by_partition: BTreeMap<i32, Vec<&Ack>> = BTreeMap::new();
    for ack in &history.acks {
        acks_by_partition
            .entry(ack.partition)
            .or_default()
            .push(ack);
    }
    let mut unacked_duplicates = 0usize;
    let mut log_records = 0usize;
    for (partition, log) in &history.logs {
        log_records += log.len();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, v) in log {
            *seen.entry(v.as_str()).or_insert(0) += 1;
        }
        let acked: std::collections::BTreeSet<&str> = acks_by_partition
            .get(partition)
            .map(|a| a.iter().map(|a| a.value.as_str()).collect())
            .unwrap_or_default();
        unacked_duplicates += seen
            .iter()
            .filter(|(v, n)| **n > 1 && !acked.contains(*v))
            .count();
    }
    for (partition, acks) in &acks_by_partition {
        let log = history.logs.get(partition).unwrap_or(&empty);
        let mut positions: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        for (offset, value) in log {
            positions.entry(value.as_str()).or_default().push(*offset);
        }
        let incomplete = history.incomplete_reads.get(partition);
        // Where each producer's acknowledged records are, in send order.
        let mut by_producer: BTreeMap<u32, Vec<(u64, i64)>> = BTreeMap::new();
        for ack in acks {
            match positions.get(ack.value.as_str()).map(Vec::as_slice) {
                None | Some([]) => violations.push(Violation {
                    kind: if incomplete.is_some() {
                        "unverified"
                    } else {
                        "lost"
                    },
                    detail: format!(
                        "partition {partition}: {:?} acknowledged at offset {} ({:?}) is not in the log{}",
                        ack.value,
                        ack.offset,
                        ack.at,
                        incomplete
                            .map(|r| format!(" (read incomplete: {r})"))
                            .unwrap_or_default()
                    ),
                }),
                Some([offset]) => {
                    if *offset != ack.offset {
                        violations.push(Violation {
                            kind: "moved",
                            detail: format!(
                                "partition {partition}: {:?} acknowledged at offset {} is at offset {offset}",
                                ack.value, ack.offset
                            ),
                        });
                    }
                    by_producer
                        .entry(ack.producer)
                        .or_default()
                        .push((ack.seq, *offset));
                }
                Some(many) => {
                    violations.push(Violation {
                        kind: "duplicate",
                        detail: format!(
                            "partition {partition}: {:?} acknowledged at offset {} is in the log {} times, at offsets {many:?}",
                            ack.value,
                            ack.offset,
                            many.len()
                        ),
                    });
                    by_producer
                        .entry(ack.producer)
                        .or_default()
                        .push((ack.seq, many[0]));
                }
            }
        }
        for (producer, mut placed) in by_producer {
            placed.sort();
            for w in placed.windows(2) {
                if w[1].1 < w[0].1 {
                    violations.push(Violation {
                        kind: "reordered",
                        detail: format!(
                            "partition {partition}: p{producer}-{} (sent later) is at offset {}, before p{producer}-{} at offset {}",
                            w[1].0, w[1].1, w[0].0, w[0].1
                        ),
                    });
                }
            }
        }
    }
    Report {
        property: PROPERTY,
        summary: format!(
            "{} acknowledged, {} failed sends, {} records read in {} partitions, {} unacknowledged values duplicated",
            history.acks.len(),
            history.failures.len(),
            log_records,
            history.logs.len(),
            unacked_duplicates
        ),
        violations,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;

    /// An acknowledgement of `p{producer}-{seq}` at (partition, offset).
    pub(crate) fn ack(producer: u32, seq: u64, partition: i32, offset: i64) -> Ack {
        Ack {
            producer,
            seq,
            partition,
            offset,
            value: format!("p{producer}-{seq}"),
            at: Duration::from_millis(seq * 10),
        }
    }

    fn log(values: &[&str]) -> Vec<(i64, String)> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64, (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_ack_in_place_passes() {
        let h = History {
            acks: vec![ack(0, 0, 0, 0), ack(1, 0, 0, 1), ack(0, 1, 0, 2)],
            // An unacknowledged record may be there too.
            logs: [(0, log(&["p0-0", "p1-0", "p0-1", "p1-1"]))].into(),
            ..Default::default()
        };
        let r = check(&h);
        assert!(r.passed(), "{r}");
    }

    #[test]
    fn a_missing_record_is_lost() {
        let h = History {
            acks: vec![ack(0, 0, 0, 0), ack(0, 1, 0, 1)],
            logs: [(0, log(&["p0-0"]))].into(),
            ..Default::default()
        };
        let r = check(&h);
        assert_eq!(r.counts(), [("lost", 1)].into(), "{r}");
    }

    #[test]
    fn a_missing_record_of_an_incomplete_read_is_unverified() {
        let h = History {
            acks: vec![ack(0, 0, 0, 0)],
            logs: [(0, Vec::new())].into(),
            incomplete_reads: [(0, "timed out".to_owned())].into(),
            ..Default::default()
        };
        assert!(check(&h).has("unverified"));
    }

    #[test]
    fn duplicates_are_told_apart_from_losses() {
        let h = History {
            acks: vec![ack(0, 0, 0, 0), ack(0, 1, 0, 2)],
            logs: [(0, log(&["p0-0", "p0-0", "p0-1"]))].into(),
            ..Default::default()
        };
        let r = check(&h);
        assert_eq!(r.counts(), [("duplicate", 1)].into(), "{r}");
    }

    #[test]
    fn moved_and_reordered_records_fail() {
        let h = History {
            acks: vec![ack(0, 0, 0, 0), ack(0, 1, 0, 1)],
            logs: [(0, log(&["p0-1", "p0-0"]))].into(),
            ..Default::default()
        };
        let r = check(&h);
        assert!(r.has("moved") && r.has("reordered"), "{r}");
    }
}
