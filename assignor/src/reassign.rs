//! Partition reassignment plans: a proposal that moves as few replicas as
//! possible, and the validation of a plan before anything moves.
//!
//! # Proposal ([`propose_reassignment`])
//! Given the current replicas of some partitions and the brokers they
//! should live on, every broker gets a quota of `total / n` replicas, and
//! `total % n` of them one more — the brokers that already hold the most,
//! so that quotas cost as few moves as possible. Then:
//! 1. *keep*: a replica stays where it is if its broker is a target broker
//!    under its quota; leaders are kept before followers (a kept leader
//!    needs no leadership move), partitions in input order;
//! 2. *fill*: each freed slot takes a target broker the partition does not
//!    use yet: first one on a rack the partition does not use yet (when
//!    every target broker has a rack: spreading over racks comes before
//!    balance, as in Kafka's rack-aware placement), then the one with the
//!    most room under its quota, ties by broker id. The new broker takes the slot of the
//!    replica it replaces, so the replica order (and the preferred leader,
//!    when it stays) is kept.
//!
//! Every freed slot is one replica move, and a slot is freed only when it
//! must be: its broker is not a target, or its broker holds more than its
//! quota. So the number of moves equals the lower bound
//! `Σ replicas on non-target brokers + Σ_b max(0, held_b − quota_b)` for a
//! result in which every broker holds its quota; [`Proposal`] reports both
//! (they differ only when the fill step had to exceed a quota because
//! every broker with room already held a replica of that partition).
//! Kafka's own `--generate` places every partition afresh with
//! `assignReplicasToBrokers` and moves nearly everything; this does not.
//!
//! # Validation ([`validate_plan`])
//! Every problem of a plan is collected, so one error lists them all:
//! unknown topics and partitions, unknown brokers, duplicate replicas, a
//! replica count other than the partition's, a partition listed twice, an
//! empty plan.
//!
//! Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::error::Error;
use crate::placement::BrokerMetadata;

/// One partition's replicas, leader (preferred) first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionReplicas {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Broker ids.
    pub replicas: Vec<i32>,
}

/// A proposed reassignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// The new replicas of every input partition, in input order.
    pub partitions: Vec<PartitionReplicas>,
    /// Replicas placed on a broker that did not hold them.
    pub moves: usize,
    /// The fewest moves any balanced result needs (see the module docs).
    pub lower_bound: usize,
    /// Replicas per target broker before and after.
    pub loads: BTreeMap<i32, (usize, usize)>,
}

/// Proposes new replicas for `current` over `brokers`, moving as little as
/// possible (module docs). Errors: no broker, a broker listed twice, or a
/// partition with more replicas than there are brokers.
pub fn propose_reassignment(
    current: &[PartitionReplicas],
    brokers: &[BrokerMetadata],
) -> Result<Proposal, Error> {
    let mut ids: Vec<i32> = brokers.iter().map(|b| b.id).collect();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::DuplicateBrokerId(w[0]));
    }
    for p in current {
        if p.replicas.is_empty() {
            return Err(Error::ReplicationFactorNotPositive);
        }
        if p.replicas.len() > ids.len() {
            return Err(Error::ReplicationFactorTooLarge {
                replication_factor: p.replicas.len() as i32,
                brokers: ids.len(),
            });
        }
    }
    let racks: HashMap<i32, &str> = brokers
        .iter()
        .filter_map(|b| b.rack.as_deref().map(|r| (b.id, r)))
        .collect();
    let rack_aware = !brokers.is_empty() && racks.len() == brokers.len();

    // Current load of each target broker, and the quotas.
    let mut held: BTreeMap<i32, usize> = ids.iter().map(|&b| (b, 0)).collect();
    let mut off_target = 0usize;
    for p in current {
        for r in &p.replicas {
            match held.get_mut(r) {
                Some(n) => *n += 1,
                None => off_target += 1,
            }
        }
    }
    let total: usize = current.iter().map(|p| p.replicas.len()).sum();
    let n = ids.len();
    let (base, extra) = (total / n, total % n);
    let mut by_load: Vec<i32> = ids.clone();
    by_load.sort_by(|a, b| held[b].cmp(&held[a]).then(a.cmp(b)));
    let quota: HashMap<i32, usize> = by_load
        .iter()
        .enumerate()
        .map(|(i, &b)| (b, base + usize::from(i < extra)))
        .collect();
    let lower_bound = off_target
        + ids
            .iter()
            .map(|b| held[b].saturating_sub(quota[b]))
            .sum::<usize>();

    // Keep: leaders first, then followers, each up to its broker's quota.
    let mut slots: Vec<Vec<Option<i32>>> = current
        .iter()
        .map(|p| vec![None; p.replicas.len()])
        .collect();
    let mut kept: HashMap<i32, usize> = ids.iter().map(|&b| (b, 0)).collect();
    for leaders in [true, false] {
        for (i, p) in current.iter().enumerate() {
            for (j, &r) in p.replicas.iter().enumerate() {
                if (j == 0) != leaders || p.replicas[..j].contains(&r) {
                    continue;
                }
                if let Some(k) = kept.get_mut(&r)
                    && *k < quota[&r]
                {
                    *k += 1;
                    slots[i][j] = Some(r);
                }
            }
        }
    }

    // Fill each freed slot.
    let mut load = kept;
    let mut moves = 0usize;
    let mut out = Vec::with_capacity(current.len());
    for (p, mut row) in current.iter().zip(slots) {
        for j in 0..row.len() {
            if row[j].is_some() {
                continue;
            }
            let used: BTreeSet<i32> = row.iter().flatten().copied().collect();
            let used_racks: BTreeSet<&str> =
                used.iter().filter_map(|b| racks.get(b).copied()).collect();
            let pick = ids
                .iter()
                .copied()
                .filter(|b| !used.contains(b))
                .min_by_key(|b| {
                    let room = quota[b] as i64 - load[b] as i64;
                    let same_rack =
                        rack_aware && racks.get(b).is_some_and(|r| used_racks.contains(r));
                    (same_rack, room <= 0, -room, *b)
                });
            // `rf <= n` guarantees a broker not in the partition exists.
            let Some(b) = pick else {
                return Err(Error::ReplicationFactorTooLarge {
                    replication_factor: p.replicas.len() as i32,
                    brokers: n,
                });
            };
            if let Some(l) = load.get_mut(&b) {
                *l += 1;
            }
            if !p.replicas.contains(&b) {
                moves += 1;
            }
            row[j] = Some(b);
        }
        out.push(PartitionReplicas {
            topic: p.topic.clone(),
            partition: p.partition,
            replicas: row.into_iter().flatten().collect(),
        });
    }
    let loads = ids.iter().map(|&b| (b, (held[&b], load[&b]))).collect();
    Ok(Proposal {
        partitions: out,
        moves,
        lower_bound,
        loads,
    })
}

/// One thing wrong with a reassignment plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanProblem {
    /// The plan lists no partition.
    #[error("the plan lists no partition")]
    Empty,
    /// The topic does not exist.
    #[error("{topic}-{partition}: topic {topic:?} does not exist")]
    UnknownTopic {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// The partition does not exist.
    #[error("{topic}-{partition}: the topic has {partitions} partitions")]
    UnknownPartition {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The topic's partition count.
        partitions: usize,
    },
    /// Listed twice.
    #[error("{topic}-{partition}: listed more than once")]
    DuplicatePartition {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
    },
    /// A broker not in the cluster.
    #[error("{topic}-{partition}: broker {broker} does not exist")]
    UnknownBroker {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Broker id.
        broker: i32,
    },
    /// A broker twice in one replica list.
    #[error("{topic}-{partition}: broker {broker} is listed twice")]
    DuplicateReplica {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Broker id.
        broker: i32,
    },
    /// Not the partition's replica count.
    #[error("{topic}-{partition}: {got} replicas, the partition has {want}")]
    WrongReplicaCount {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// In the plan.
        got: usize,
        /// Now.
        want: usize,
    },
}

/// Checks a plan against the cluster: `topics` maps each topic to the
/// current replicas of its partitions (index = partition), `brokers` is
/// every registered broker. Returns every problem found.
pub fn validate_plan(
    plan: &[PartitionReplicas],
    topics: &BTreeMap<String, Vec<Vec<i32>>>,
    brokers: &BTreeSet<i32>,
) -> Result<(), Vec<PlanProblem>> {
    let mut problems = Vec::new();
    if plan.is_empty() {
        problems.push(PlanProblem::Empty);
    }
    let mut seen = BTreeSet::new();
    for p in plan {
        let (topic, partition) = (p.topic.clone(), p.partition);
        if !seen.insert((p.topic.as_str(), p.partition)) {
            problems.push(PlanProblem::DuplicatePartition { topic, partition });
            continue;
        }
        match topics.get(&p.topic) {
            None => problems.push(PlanProblem::UnknownTopic {
                topic: topic.clone(),
                partition,
            }),
            Some(parts) => match usize::try_from(partition).ok().and_then(|i| parts.get(i)) {
                None => problems.push(PlanProblem::UnknownPartition {
                    topic: topic.clone(),
                    partition,
                    partitions: parts.len(),
                }),
                Some(now) if now.len() != p.replicas.len() => {
                    problems.push(PlanProblem::WrongReplicaCount {
                        topic: topic.clone(),
                        partition,
                        got: p.replicas.len(),
                        want: now.len(),
                    });
                }
                Some(_) => {}
            },
        }
        let mut in_list = BTreeSet::new();
        for &b in &p.replicas {
            if !brokers.contains(&b) {
                problems.push(PlanProblem::UnknownBroker {
                    topic: topic.clone(),
                    partition,
                    broker: b,
                });
            }
            if !in_list.insert(b) {
                problems.push(PlanProblem::DuplicateReplica {
                    topic: topic.clone(),
                    partition,
                    broker: b,
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(topic: &str, partition: i32, replicas: &[i32]) -> PartitionReplicas {
        PartitionReplicas {
            topic: topic.into(),
            partition,
            replicas: replicas.to_vec(),
        }
    }

    fn brokers(ids: &[i32]) -> Vec<BrokerMetadata> {
        ids.iter()
            .map(|&id| BrokerMetadata { id, rack: None })
            .collect()
    }

    #[test]
    fn a_balanced_assignment_on_the_target_brokers_does_not_move() {
        let current = vec![p("t", 0, &[1, 2]), p("t", 1, &[2, 3]), p("t", 2, &[3, 1])];
        let prop = propose_reassignment(&current, &brokers(&[1, 2, 3])).unwrap();
        assert_eq!(prop.partitions, current);
        assert_eq!((prop.moves, prop.lower_bound), (0, 0));
    }

    #[test]
    fn adding_a_broker_moves_only_its_share() {
        // 4 partitions x RF 2 on brokers 1-2 (4 each); add 3 and 4: each
        // ends with 2, so exactly 4 replicas move, leaders stay.
        let current: Vec<_> = (0..4)
            .map(|i| p("t", i, if i % 2 == 0 { &[1, 2] } else { &[2, 1] }))
            .collect();
        let prop = propose_reassignment(&current, &brokers(&[1, 2, 3, 4])).unwrap();
        assert_eq!((prop.moves, prop.lower_bound), (4, 4));
        for (before, after) in current.iter().zip(&prop.partitions) {
            assert_eq!(after.replicas[0], before.replicas[0], "leaders stay");
        }
        assert!(
            prop.loads.values().all(|&(_, after)| after == 2),
            "{:?}",
            prop.loads
        );
    }

    #[test]
    fn removing_a_broker_moves_exactly_its_replicas() {
        let current = vec![
            p("t", 0, &[1, 2, 3]),
            p("t", 1, &[2, 3, 1]),
            p("t", 2, &[3, 1, 2]),
        ];
        let prop = propose_reassignment(&current, &brokers(&[1, 2, 4])).unwrap();
        assert_eq!((prop.moves, prop.lower_bound), (3, 3));
        for (before, after) in current.iter().zip(&prop.partitions) {
            for (j, (&b, &a)) in before.replicas.iter().zip(&after.replicas).enumerate() {
                if b == 3 {
                    assert_eq!(a, 4, "slot {j} of {after:?}");
                } else {
                    assert_eq!(a, b);
                }
            }
        }
    }

    #[test]
    fn racks_are_spread_when_every_broker_has_one() {
        let bs = vec![
            BrokerMetadata {
                id: 1,
                rack: Some("a".into()),
            },
            BrokerMetadata {
                id: 2,
                rack: Some("a".into()),
            },
            BrokerMetadata {
                id: 3,
                rack: Some("b".into()),
            },
            BrokerMetadata {
                id: 4,
                rack: Some("b".into()),
            },
        ];
        // Broker 9 goes away; its slot must go to rack b (the partition
        // already uses rack a through broker 1).
        let prop = propose_reassignment(&[p("t", 0, &[1, 9])], &bs).unwrap();
        let b = prop.partitions[0].replicas[1];
        assert!(b == 3 || b == 4, "{:?}", prop.partitions);
    }

    #[test]
    fn impossible_inputs_are_errors() {
        assert!(matches!(
            propose_reassignment(&[p("t", 0, &[1, 2, 3])], &brokers(&[1, 2])),
            Err(Error::ReplicationFactorTooLarge { .. })
        ));
        assert!(matches!(
            propose_reassignment(&[p("t", 0, &[1])], &brokers(&[1, 1])),
            Err(Error::DuplicateBrokerId(1))
        ));
        assert!(matches!(
            propose_reassignment(&[p("t", 0, &[1])], &[]),
            Err(Error::ReplicationFactorTooLarge { .. })
        ));
    }

    #[test]
    fn validation_lists_every_problem() {
        let topics: BTreeMap<String, Vec<Vec<i32>>> =
            [("t".to_string(), vec![vec![1, 2], vec![2, 3]])]
                .into_iter()
                .collect();
        let brokers: BTreeSet<i32> = [1, 2, 3].into_iter().collect();
        assert_eq!(
            validate_plan(&[p("t", 0, &[3, 1])], &topics, &brokers),
            Ok(())
        );
        let plan = vec![
            p("t", 0, &[1, 1]),
            p("t", 0, &[1, 2]),
            p("t", 5, &[1, 2]),
            p("u", 0, &[1, 2]),
            p("t", 1, &[1, 7, 2]),
        ];
        let problems = validate_plan(&plan, &topics, &brokers).unwrap_err();
        assert_eq!(problems.len(), 6, "{problems:#?}");
        assert!(problems.contains(&PlanProblem::DuplicateReplica {
            topic: "t".into(),
            partition: 0,
            broker: 1
        }));
        assert!(problems.contains(&PlanProblem::DuplicatePartition {
            topic: "t".into(),
            partition: 0
        }));
        assert!(problems.contains(&PlanProblem::UnknownPartition {
            topic: "t".into(),
            partition: 5,
            partitions: 2
        }));
        assert!(problems.contains(&PlanProblem::UnknownTopic {
            topic: "u".into(),
            partition: 0
        }));
        assert!(problems.contains(&PlanProblem::UnknownBroker {
            topic: "t".into(),
            partition: 1,
            broker: 7
        }));
        assert!(problems.contains(&PlanProblem::WrongReplicaCount {
            topic: "t".into(),
            partition: 1,
            got: 3,
            want: 2
        }));
        assert_eq!(
            validate_plan(&[], &topics, &brokers),
            Err(vec![PlanProblem::Empty])
        );
    }
}
