//! Property: no partition is owned by two members of the group at once.
//!
//! Ownership intervals come from the members' rebalance callbacks, whose
//! ordering the client guarantees (see `RebalanceListener`): an interval
//! opens at `on_assigned` (after the coordinator named the partition,
//! before any of its records is handed out) and closes at `on_revoked`
//! (before the release reaches the coordinator). A partition given up by
//! `on_lost` (session timeout, fencing) may already belong to someone else
//! when the callback runs, so a lost interval ends at the last delivery of
//! that partition to the member within it (ownership that nothing was done
//! with cannot clash). All members live in one process: one clock.
//!
//! Kinds: `double owner` (two members' intervals of one partition
//! overlap), `epoch backwards` (a later owner was assigned at a lower
//! member epoch than the previous owner), `unowned delivery` (records of a
//! partition handed to a member outside its intervals).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::faults::check::{Report, Violation};
use crate::faults::history::{Change, History};

/// The property's name.
pub const PROPERTY: &str = "no partition owned by two members at once";

/// One member's ownership of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    /// Member label.
    pub member: String,
    /// Partition.
    pub partition: i32,
    /// The assignment's member epoch.
    pub epoch: i32,
    /// `on_assigned`.
    pub start: Duration,
    /// `on_revoked`, the last delivery before `on_lost`, or the run's end.
    pub end: Duration,
    /// How it ended: `revoked`, `lost` or `open`.
    pub ended: &'static str,
}

/// Ownership intervals from the history's callbacks and deliveries.
pub fn intervals(history: &History) -> Vec<Interval> {
    let last_delivery = |member: &str, partition: i32, from: Duration, to: Duration| {
        history
            .deliveries
            .iter()
            .filter(|d| d.member == member && d.partition == partition)
            .filter(|d| d.at >= from && d.at <= to)
            .map(|d| d.at)
            .max()
            .unwrap_or(from)
    };
    let mut open: BTreeMap<(String, i32), (i32, Duration)> = BTreeMap::new();
    let mut out = Vec::new();
    let mut events: Vec<&crate::faults::history::Ownership> = history.ownership.iter().collect();
    events.sort_by_key(|e| e.at);
    for e in events {
        for &p in &e.partitions {
            let key = (e.member.clone(), p);
            match e.change {
                Change::Assigned => {
                    open.entry(key).or_insert((e.member_epoch, e.at));
                }
                Change::Revoked | Change::Lost => {
                    if let Some((epoch, start)) = open.remove(&key) {
                        let (end, ended) = if e.change == Change::Revoked {
                            (e.at, "revoked")
                        } else {
                            (last_delivery(&e.member, p, start, e.at), "lost")
                        };
                        out.push(Interval {
                            member: e.member.clone(),
                            partition: p,
                            epoch,
                            start,
                            end,
                            ended,
                        });
                    }
                }
            }
        }
    }
    for ((member, partition), (epoch, start)) in open {
        out.push(Interval {
            member,
            partition,
            epoch,
            start,
            end: history.end.max(start),
            ended: "open",
        });
    }
    out.sort_by_key(|a| (a.partition, a.start));
    out
}

/// Checks [`PROPERTY`].
pub fn check(history: &History) -> Report {
    let all = intervals(history);
    let mut violations = Vec::new();
    let mut by_partition: BTreeMap<i32, Vec<&Interval>> = BTreeMap::new();
    for i in &all {
        by_partition.entry(i.partition).or_default().push(i);
    }
    for (partition, list) in &by_partition {
        for (n, a) in list.iter().enumerate() {
            for b in &list[n + 1..] {
                if a.member != b.member && a.start < b.end && b.start < a.end {
                    violations.push(Violation {
                        kind: "double owner",
                        detail: format!(
                            "partition {partition}: {} (epoch {}) owned it {:?}..{:?} ({}) while {} (epoch {}) owned it {:?}..{:?} ({})",
                            a.member, a.epoch, a.start, a.end, a.ended,
                            b.member, b.epoch, b.start, b.end, b.ended
                        ),
                    });
                }
            }
        }
        for w in list.windows(2) {
            if w[0].member != w[1].member && w[1].epoch < w[0].epoch {
                violations.push(Violation {
                    kind: "epoch backwards",
                    detail: format!(
                        "partition {partition}: {} was assigned it at epoch {} ({:?}) after {} at epoch {} ({:?})",
                        w[1].member, w[1].epoch, w[1].start, w[0].member, w[0].epoch, w[0].start
                    ),
                });
            }
        }
    }
    for d in &history.deliveries {
        let owned = all.iter().any(|i| {
            i.member == d.member && i.partition == d.partition && i.start <= d.at && d.at <= i.end
        });
        if !owned {
            violations.push(Violation {
                kind: "unowned delivery",
                detail: format!(
                    "partition {}: offsets {}..={} handed to {} at {:?} outside its ownership",
                    d.partition, d.first, d.last, d.member, d.at
                ),
            });
        }
    }
    Report {
        property: PROPERTY,
        summary: format!(
            "{} ownership intervals ({} lost), {} deliveries",
            all.len(),
            all.iter().filter(|i| i.ended == "lost").count(),
            history.deliveries.len()
        ),
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::history::{Delivery, Ownership};

    fn own(member: &str, epoch: i32, partitions: &[i32], change: Change, at_ms: u64) -> Ownership {
        Ownership {
            member: member.into(),
            member_epoch: epoch,
            partitions: partitions.to_vec(),
            change,
            at: Duration::from_millis(at_ms),
        }
    }

    fn delivery(member: &str, partition: i32, at_ms: u64) -> Delivery {
        Delivery {
            member: member.into(),
            partition,
            first: 0,
            last: 0,
            at: Duration::from_millis(at_ms),
        }
    }

    #[test]
    fn a_clean_handover_passes() {
        let h = History {
            ownership: vec![
                own("c0", 1, &[0, 1], Change::Assigned, 10),
                own("c0", 1, &[1], Change::Revoked, 50),
                own("c1", 2, &[1], Change::Assigned, 60),
            ],
            deliveries: vec![delivery("c0", 1, 40), delivery("c1", 1, 70)],
            end: Duration::from_millis(100),
            ..Default::default()
        };
        let r = check(&h);
        assert!(r.passed(), "{r}");
    }

    #[test]
    fn a_lost_partition_ends_at_its_last_delivery() {
        // c0 loses partition 0 at 90, but handed nothing out after 30; c1
        // took over at 60.
        let h = History {
            ownership: vec![
                own("c0", 1, &[0], Change::Assigned, 10),
                own("c1", 2, &[0], Change::Assigned, 60),
                own("c0", 1, &[0], Change::Lost, 90),
            ],
            deliveries: vec![delivery("c0", 0, 30), delivery("c1", 0, 70)],
            end: Duration::from_millis(100),
            ..Default::default()
        };
        let r = check(&h);
        assert!(r.passed(), "{r}");
    }

    #[test]
    fn overlapping_owners_fail() {
        let h = History {
            ownership: vec![
                own("c0", 1, &[0], Change::Assigned, 10),
                own("c1", 2, &[0], Change::Assigned, 60),
                own("c0", 1, &[0], Change::Lost, 90),
            ],
            deliveries: vec![delivery("c0", 0, 80), delivery("c1", 0, 70)],
            end: Duration::from_millis(100),
            ..Default::default()
        };
        let r = check(&h);
        assert!(r.has("double owner"), "{r}");
    }

    #[test]
    fn a_lower_epoch_later_or_an_unowned_delivery_fails() {
        let h = History {
            ownership: vec![
                own("c0", 5, &[0], Change::Assigned, 10),
                own("c0", 5, &[0], Change::Revoked, 20),
                own("c1", 4, &[0], Change::Assigned, 30),
            ],
            deliveries: vec![delivery("c0", 0, 25)],
            end: Duration::from_millis(100),
            ..Default::default()
        };
        let r = check(&h);
        assert!(r.has("epoch backwards") && r.has("unowned delivery"), "{r}");
    }
}
