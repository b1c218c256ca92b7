//! Leader choice and load figures, for the coordinator's elections and the
//! balancer.
//!
//! * The preferred leader of a partition is its first replica.
//! * A clean election picks the first replica, in replica order, that is both
//!   in the ISR and live (Kafka's `PartitionLeaderElectionAlgorithms`
//!   `offlinePartitionLeaderElection` without the unclean fallback).
//! * An unclean election (only when the topic allows it) falls back to the
//!   first live replica, accepting data loss.
//! * Kafka's automatic preferred-leader election looks, per broker, at the
//!   partitions whose preferred leader is that broker and counts those led by
//!   someone else; when that ratio passes `leader.imbalance.per.broker.percentage`
//!   (default 10) it moves them back. [`leader_imbalance`] computes the ratio.

use std::collections::BTreeMap;

/// Kafka's default `leader.imbalance.per.broker.percentage`.
pub const DEFAULT_LEADER_IMBALANCE_PERCENTAGE: u32 = 10;

/// The preferred leader: the first replica.
pub fn preferred_leader(replicas: &[i32]) -> Option<i32> {
    replicas.first().copied()
}

/// The clean election choice: the first replica, in replica order, that is in
/// the ISR and live. `None` means the partition goes offline (unless its
/// topic allows an unclean election).
pub fn next_leader(replicas: &[i32], isr: &[i32], is_live: impl Fn(i32) -> bool) -> Option<i32> {
    replicas
        .iter()
        .copied()
        .find(|r| isr.contains(r) && is_live(*r))
}

/// The election choice with unclean election allowed: a clean choice if there
/// is one, else the first live replica, else `None`.
pub fn next_leader_unclean(
    replicas: &[i32],
    isr: &[i32],
    is_live: impl Fn(i32) -> bool,
) -> Option<i32> {
    next_leader(replicas, isr, &is_live).or_else(|| replicas.iter().copied().find(|r| is_live(*r)))
}

/// One partition as the load figures see it.
#[derive(Debug, Clone, Copy)]
pub struct PartitionView<'a> {
    /// Replicas, preferred leader first.
    pub replicas: &'a [i32],
    /// Current leader, if any.
    pub leader: Option<i32>,
}

/// What one broker carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerLoad {
    /// Replicas hosted.
    pub replicas: u64,
    /// Partitions currently led.
    pub leaders: u64,
    /// Partitions whose preferred leader this broker is.
    pub preferred: u64,
    /// Of those, the ones currently led by another broker (or by nobody).
    pub preferred_not_leading: u64,
}

impl BrokerLoad {
    /// Kafka's per-broker leader imbalance ratio, in percent:
    /// `preferred_not_leading / preferred * 100` (0 when nothing is
    /// preferred here).
    pub fn imbalance_percent(&self) -> f64 {
        if self.preferred == 0 {
            0.0
        } else {
            self.preferred_not_leading as f64 * 100.0 / self.preferred as f64
        }
    }
}

/// Per-broker load over a set of partitions. Brokers listed in `brokers`
/// appear even when they carry nothing.
pub fn broker_loads<'a>(
    brokers: &[i32],
    partitions: impl IntoIterator<Item = PartitionView<'a>>,
) -> BTreeMap<i32, BrokerLoad> {
    let mut loads: BTreeMap<i32, BrokerLoad> = brokers
        .iter()
        .map(|&b| (b, BrokerLoad::default()))
        .collect();
    for p in partitions {
        for &r in p.replicas {
            loads.entry(r).or_default().replicas += 1;
        }
        if let Some(l) = p.leader {
            loads.entry(l).or_default().leaders += 1;
        }
        if let Some(pref) = preferred_leader(p.replicas) {
            let load = loads.entry(pref).or_default();
            load.preferred += 1;
            if p.leader != Some(pref) {
                load.preferred_not_leading += 1;
            }
        }
    }
    loads
}

/// Brokers whose leader imbalance passes `threshold_percent` (Kafka triggers
/// a preferred-leader election for those when the ratio is strictly greater).
pub fn leader_imbalance(loads: &BTreeMap<i32, BrokerLoad>, threshold_percent: u32) -> Vec<i32> {
    loads
        .iter()
        .filter(|(_, l)| l.imbalance_percent() > f64::from(threshold_percent))
        .map(|(&b, _)| b)
        .collect()
}

/// Spread of one figure (replicas or leaders) over brokers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Smallest count.
    pub min: u64,
    /// Largest count.
    pub max: u64,
    /// Mean count.
    pub mean: f64,
}

impl Spread {
    /// Over `values`; all zero when there are none.
    pub fn of(values: impl IntoIterator<Item = u64>) -> Spread {
        let (mut min, mut max, mut sum, mut n) = (u64::MAX, 0u64, 0u64, 0u64);
        for v in values {
            min = min.min(v);
            max = max.max(v);
            sum += v;
            n += 1;
        }
        if n == 0 {
            return Spread {
                min: 0,
                max: 0,
                mean: 0.0,
            };
        }
        Spread {
            min,
            max,
            mean: sum as f64 / n as f64,
        }
    }

    /// How far the busiest broker is above the mean, in percent (0 = even).
    pub fn imbalance_percent(&self) -> f64 {
        if self.mean == 0.0 {
            0.0
        } else {
            (self.max as f64 - self.mean) * 100.0 / self.mean
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn election_choices() {
        let replicas = [3, 1, 2];
        assert_eq!(preferred_leader(&replicas), Some(3));
        assert_eq!(preferred_leader(&[]), None);
        // ISR order does not matter; replica order does.
        assert_eq!(next_leader(&replicas, &[2, 1], |_| true), Some(1));
        assert_eq!(next_leader(&replicas, &[2, 1], |b| b != 1), Some(2));
        assert_eq!(next_leader(&replicas, &[1], |b| b != 1), None);
        assert_eq!(next_leader_unclean(&replicas, &[1], |b| b != 1), Some(3));
        assert_eq!(next_leader_unclean(&replicas, &[1], |_| false), None);
        // A live ISR member that is not a replica (stale ISR) is never chosen.
        assert_eq!(next_leader(&replicas, &[9], |_| true), None);
    }

    #[test]
    fn loads_and_imbalance() {
        let ps = [
            PartitionView {
                replicas: &[1, 2],
                leader: Some(1),
            },
            PartitionView {
                replicas: &[1, 2],
                leader: Some(2),
            },
            PartitionView {
                replicas: &[2, 1],
                leader: Some(2),
            },
            PartitionView {
                replicas: &[2, 1],
                leader: None,
            },
        ];
        let loads = broker_loads(&[1, 2, 3], ps);
        assert_eq!(
            loads[&1],
            BrokerLoad {
                replicas: 4,
                leaders: 1,
                preferred: 2,
                preferred_not_leading: 1
            }
        );
        assert_eq!(
            loads[&2],
            BrokerLoad {
                replicas: 4,
                leaders: 2,
                preferred: 2,
                preferred_not_leading: 1
            }
        );
        assert_eq!(loads[&3], BrokerLoad::default());
        assert_eq!(loads[&1].imbalance_percent(), 50.0);
        assert_eq!(
            leader_imbalance(&loads, DEFAULT_LEADER_IMBALANCE_PERCENTAGE),
            vec![1, 2]
        );
        assert_eq!(leader_imbalance(&loads, 50), Vec::<i32>::new());
        let s = Spread::of(loads.values().map(|l| l.leaders));
        assert_eq!((s.min, s.max, s.mean), (0, 2, 1.0));
        assert_eq!(s.imbalance_percent(), 100.0);
        assert_eq!(Spread::of([]).imbalance_percent(), 0.0);
    }
}
