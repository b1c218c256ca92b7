//! The balancer (`ballast_assignor::rebalance`): worked examples and
//! properties over random clusters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use ballast_assignor::rebalance::{BalancePartition, BalanceRequest, Goal, propose_balance};
use ballast_assignor::{BrokerMetadata, Error};
use proptest::prelude::*;

fn brokers(ids: &[i32]) -> Vec<BrokerMetadata> {
    ids.iter().map(|&id| BrokerMetadata::new(id)).collect()
}

fn part(p: i32, replicas: &[i32], size: u64) -> BalancePartition {
    BalancePartition {
        topic: "t".into(),
        partition: p,
        replicas: replicas.to_vec(),
        size_bytes: size,
    }
}

fn request<'a>(
    b: &'a [BrokerMetadata],
    parts: &'a [BalancePartition],
    goal: Goal,
    remove: &'a [i32],
) -> BalanceRequest<'a> {
    BalanceRequest {
        brokers: b,
        partitions: parts,
        goal,
        remove,
        add: &[],
    }
}

/// The replicas of every partition after applying a plan.
fn applied(
    parts: &[BalancePartition],
    plan: &ballast_assignor::rebalance::BalancePlan,
) -> Vec<Vec<i32>> {
    let changed: BTreeMap<i32, Vec<i32>> = plan
        .partitions
        .iter()
        .map(|p| (p.partition, p.replicas.clone()))
        .collect();
    parts
        .iter()
        .map(|p| {
            changed
                .get(&p.partition)
                .cloned()
                .unwrap_or(p.replicas.clone())
        })
        .collect()
}

fn counts(result: &[Vec<i32>]) -> BTreeMap<i32, usize> {
    let mut c = BTreeMap::new();
    for r in result {
        for b in r {
            *c.entry(*b).or_default() += 1;
        }
    }
    c
}

#[test]
fn a_new_broker_is_filled_with_the_fewest_moves() {
    // Six partitions on brokers 1 and 2; broker 3 joins empty.
    let b = brokers(&[1, 2, 3]);
    let parts: Vec<_> = (0..6)
        .map(|p| part(p, if p % 2 == 0 { &[1, 2] } else { &[2, 1] }, 100))
        .collect();
    let plan = propose_balance(&request(&b, &parts, Goal::Replicas, &[])).unwrap();
    assert_eq!(plan.lower_bound_moves, 4);
    assert_eq!(plan.replica_moves, 4);
    assert_eq!(plan.bytes_moved, 400);
    let after = counts(&applied(&parts, &plan));
    assert_eq!(after.values().copied().collect::<Vec<_>>(), vec![4, 4, 4]);
    // Followers move before leaders: every preferred leader stays.
    assert_eq!(plan.leader_changes, 0);
    assert_eq!(plan.before[&3].replicas, 0);
    assert_eq!(plan.after[&3].replicas, 4);
    assert_eq!(plan.after[&3].bytes, 400);
}

#[test]
fn a_removed_broker_is_drained() {
    let b = brokers(&[1, 2, 3]);
    let parts = vec![
        part(0, &[3, 1], 10),
        part(1, &[2, 3], 20),
        part(2, &[1, 2], 30),
    ];
    let plan = propose_balance(&request(&b, &parts, Goal::Replicas, &[3])).unwrap();
    let result = applied(&parts, &plan);
    assert!(result.iter().all(|r| !r.contains(&3)));
    assert_eq!(plan.lower_bound_moves, 2);
    assert_eq!(plan.replica_moves, 2);
    assert_eq!(plan.lower_bound_bytes, 30);
    assert_eq!(plan.after[&3], Default::default());
    // The new replica takes the leaving one's slot.
    assert_eq!(result[0][1], 1);
    assert_eq!(result[1][0], 2);
}

#[test]
fn rack_spread_is_never_reduced() {
    // Racks a, a, b, c; a partition on racks a and b loses its rack-b
    // broker: the replacement must be on rack c, not on rack a.
    let b = vec![
        BrokerMetadata::with_rack(1, "a"),
        BrokerMetadata::with_rack(2, "a"),
        BrokerMetadata::with_rack(3, "b"),
        BrokerMetadata::with_rack(4, "c"),
    ];
    let parts = vec![part(0, &[1, 3], 1)];
    let plan = propose_balance(&request(&b, &parts, Goal::Replicas, &[3])).unwrap();
    assert_eq!(plan.partitions[0].replicas, vec![1, 4]);
}

#[test]
fn leaders_are_evened_out_by_reordering() {
    let b = brokers(&[1, 2, 3]);
    // Balanced replicas, every preferred leader on broker 1.
    let parts = vec![
        part(0, &[1, 2], 1),
        part(1, &[1, 3], 1),
        part(2, &[1, 2], 1),
        part(3, &[2, 3], 1),
        part(4, &[1, 3], 1),
        part(5, &[3, 2], 1),
    ];
    let plan = propose_balance(&request(&b, &parts, Goal::Leaders, &[])).unwrap();
    assert_eq!(plan.replica_moves, 0);
    let result = applied(&parts, &plan);
    let mut leaders = BTreeMap::new();
    for r in &result {
        *leaders.entry(r[0]).or_insert(0) += 1;
    }
    assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    for (p, r) in parts.iter().zip(&result) {
        let (x, y): (BTreeSet<_>, BTreeSet<_>) = (p.replicas.iter().collect(), r.iter().collect());
        assert_eq!(x, y, "only the order changes");
    }
    assert_eq!(plan.leader_changes, 2);
}

#[test]
fn a_chain_of_hand_overs_when_no_direct_one_exists() {
    // Broker 1 leads 3, broker 3 leads none, but no partition led by 1 has
    // a replica on 3: 1 hands one to 2, which hands one of its own to 3.
    let b = brokers(&[1, 2, 3]);
    let parts = vec![
        part(0, &[1, 2], 1),
        part(1, &[1, 2], 1),
        part(2, &[1, 2], 1),
        part(3, &[2, 3], 1),
        part(4, &[3, 2], 1),
        part(5, &[3, 2], 1),
    ];
    // Replica counts: 1:3, 2:6, 3:3 — replicas step moves some first; use
    // a Replicas plan to learn the result, then check the leader goal.
    let plan = propose_balance(&request(&b, &parts, Goal::Leaders, &[])).unwrap();
    let result = applied(&parts, &plan);
    let mut leaders = BTreeMap::new();
    for r in &result {
        *leaders.entry(r[0]).or_insert(0) += 1;
    }
    assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
}

#[test]
fn disk_evens_out_bytes() {
    let b = brokers(&[1, 2, 3]);
    // Broker 1 holds the big partitions.
    let parts = vec![
        part(0, &[1], 900),
        part(1, &[1], 800),
        part(2, &[2], 100),
        part(3, &[3], 100),
        part(4, &[1], 100),
        part(5, &[2], 100),
    ];
    let plan = propose_balance(&request(&b, &parts, Goal::Disk, &[])).unwrap();
    let before_spread = 1800 - 100;
    let after: Vec<u64> = plan.after.values().map(|u| u.bytes).collect();
    let spread = after.iter().max().unwrap() - after.iter().min().unwrap();
    assert!(spread < before_spread, "{after:?}");
    // Mean 700, tolerance 450 (half the largest partition): broker 1 holds
    // 650 over 1150, which is the bound.
    assert_eq!(plan.lower_bound_bytes, 650);
    assert!(plan.bytes_moved >= plan.lower_bound_bytes);
    assert_eq!(after.iter().sum::<u64>(), 2100);
}

#[test]
fn the_bound_is_not_always_reachable() {
    // Drain broker 3 (7 replicas) and take one from broker 2 (13, quota
    // 12): bound 8. Three of broker 3's partitions also hold broker 4, so
    // they can only go to broker 5 (room for 2) or over a quota to 1 or 2,
    // which then must pass one on: 9 at best.
    let lists: [[i32; 2]; 24] = [
        [2, 1],
        [2, 3],
        [2, 1],
        [1, 3],
        [2, 1],
        [2, 5],
        [4, 2],
        [1, 2],
        [5, 1],
        [3, 4],
        [2, 1],
        [3, 4],
        [3, 1],
        [2, 5],
        [5, 2],
        [1, 5],
        [4, 2],
        [3, 4],
        [5, 1],
        [4, 5],
        [5, 1],
        [2, 5],
        [2, 1],
        [3, 5],
    ];
    let parts: Vec<_> = lists
        .iter()
        .enumerate()
        .map(|(i, r)| part(i as i32, r, 1))
        .collect();
    let b = brokers(&[1, 2, 3, 4, 5]);
    let plan = propose_balance(&request(&b, &parts, Goal::Replicas, &[3])).unwrap();
    assert_eq!(plan.lower_bound_moves, 8);
    assert!(
        (9..=10).contains(&plan.replica_moves),
        "{}",
        plan.replica_moves
    );
    let after: Vec<usize> = plan.after.values().map(|u| u.replicas).collect();
    assert_eq!(after, vec![12, 12, 0, 12, 12]);
}

#[test]
fn bad_requests_are_named() {
    let b = brokers(&[1, 2]);
    let parts = vec![part(0, &[1, 2], 1)];
    let err = |remove: &[i32], add: &[i32]| {
        propose_balance(&BalanceRequest {
            brokers: &b,
            partitions: &parts,
            goal: Goal::Replicas,
            remove,
            add,
        })
        .unwrap_err()
        .to_string()
    };
    assert!(err(&[9], &[]).contains("broker 9 is not in the broker list"));
    assert!(err(&[1], &[1]).contains("both added and removed"));
    assert!(err(&[1], &[]).contains("2 replicas but only 1 brokers"));
    assert!(err(&[1, 2], &[]).contains("no broker is left"));
    let dup = vec![BrokerMetadata::new(1), BrokerMetadata::new(1)];
    assert_eq!(
        propose_balance(&request(&dup, &parts, Goal::Replicas, &[])),
        Err(Error::DuplicateBrokerId(1))
    );
    let twice = vec![part(0, &[1, 1], 1)];
    assert!(
        propose_balance(&request(&b, &twice, Goal::Replicas, &[]))
            .unwrap_err()
            .to_string()
            .contains("listed twice")
    );
}

#[test]
fn replicas_on_unlisted_brokers_stay() {
    // Broker 9 is fenced and not listed: its replica stays, counted for
    // nobody.
    let b = brokers(&[1, 2, 3]);
    let parts = vec![part(0, &[9, 1], 1), part(1, &[1, 2], 1)];
    let plan = propose_balance(&request(&b, &parts, Goal::Replicas, &[])).unwrap();
    let result = applied(&parts, &plan);
    assert_eq!(result[0][0], 9);
}

fn cluster() -> impl Strategy<Value = (Vec<BrokerMetadata>, Vec<BalancePartition>, Vec<i32>, bool)>
{
    (3usize..12, 0u8..3, 1usize..4, 1usize..80, any::<u64>())
        .prop_flat_map(|(n, racked, rf, parts, seed)| {
            let rf = rf.min(n - 1).max(1);
            (
                Just(n),
                Just(racked),
                Just(rf),
                proptest::collection::vec(
                    proptest::sample::subsequence((1..=n as i32).collect::<Vec<_>>(), rf),
                    parts,
                ),
                proptest::collection::vec(1u64..1000, parts),
                proptest::sample::subsequence(
                    (1..=n as i32).collect::<Vec<_>>(),
                    0..=(n - rf - 1).min(2),
                ),
                Just(seed),
            )
        })
        .prop_map(|(n, layout, _rf, placements, sizes, remove, seed)| {
            // No racks; three even racks; or uneven ones (one broker
            // alone, a quarter on a middle rack, the rest on a big one).
            let racked = layout > 0;
            let brokers: Vec<BrokerMetadata> = (1..=n as i32)
                .map(|id| match layout {
                    0 => BrokerMetadata::new(id),
                    1 => BrokerMetadata::with_rack(id, format!("r{}", id % 3)),
                    _ => BrokerMetadata::with_rack(
                        id,
                        match id {
                            1 => "solo",
                            _ if id % 4 == 0 => "mid",
                            _ => "big",
                        },
                    ),
                })
                .collect();
            let parts = placements
                .into_iter()
                .zip(sizes)
                .enumerate()
                .map(|(p, (mut replicas, size))| {
                    // Vary the preferred leader.
                    let k = (seed as usize + p) % replicas.len();
                    replicas.rotate_left(k);
                    part(p as i32, &replicas, size)
                })
                .collect();
            (brokers, parts, remove, racked)
        })
}

fn racks_of(brokers: &[BrokerMetadata], r: &[i32]) -> usize {
    r.iter()
        .filter_map(|b| {
            brokers
                .iter()
                .find(|x| x.id == *b)
                .and_then(|x| x.rack.clone())
        })
        .collect::<BTreeSet<_>>()
        .len()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn every_goal_keeps_placements_valid((brokers, parts, remove, racked) in cluster()) {
        for goal in [Goal::Replicas, Goal::Leaders, Goal::Disk] {
            let plan = propose_balance(&request(&brokers, &parts, goal, &remove)).unwrap();
            let again = propose_balance(&request(&brokers, &parts, goal, &remove)).unwrap();
            prop_assert_eq!(&plan, &again, "deterministic");
            let result = applied(&parts, &plan);
            let mut bytes = 0u64;
            let mut moves = 0usize;
            for (p, r) in parts.iter().zip(&result) {
                prop_assert_eq!(r.len(), p.replicas.len());
                let set: BTreeSet<_> = r.iter().collect();
                prop_assert_eq!(set.len(), r.len(), "no broker twice");
                prop_assert!(r.iter().all(|b| !remove.contains(b)), "removed brokers are drained");
                if racked {
                    // Kept, unless the racks left are too few.
                    let left: BTreeSet<_> = brokers
                        .iter()
                        .filter(|b| !remove.contains(&b.id))
                        .filter_map(|b| b.rack.clone())
                        .collect();
                    let want = racks_of(&brokers, &p.replicas).min(left.len());
                    prop_assert!(racks_of(&brokers, r) >= want,
                        "rack spread of {:?} -> {:?}", p.replicas, r);
                }
                let added = r.iter().filter(|b| !p.replicas.contains(b)).count();
                moves += added;
                bytes += added as u64 * p.size_bytes;
            }
            prop_assert_eq!(plan.replica_moves, moves);
            prop_assert_eq!(plan.bytes_moved, bytes);
            if goal != Goal::Disk {
                // Greedy pairing, then repairs: within 5 % (and two moves)
                // of the bound, which small clusters cannot always reach
                // (see `the_bound_is_not_always_reachable`). Rack rules can
                // force more: the bound ignores them; the benchmark
                // measures racked clusters.
                prop_assert!(
                    racked
                        || plan.replica_moves
                            <= plan.lower_bound_moves + plan.lower_bound_moves / 20 + 2,
                    "{} moves for a bound of {}", plan.replica_moves, plan.lower_bound_moves
                );
                let c = counts(&result);
                let targets = brokers.len() - remove.len();
                let total: usize = parts.iter().map(|p| p.replicas.len()).sum();
                let balanced = brokers.iter().filter(|b| !remove.contains(&b.id)).all(|b| {
                    let n = c.get(&b.id).copied().unwrap_or(0);
                    n == total / targets || n == total.div_ceil(targets)
                });
                if balanced {
                    // The bound holds for any balanced result.
                    prop_assert!(plan.replica_moves >= plan.lower_bound_moves);
                }
                // Without racks nothing stops balance.
                prop_assert!(balanced || racked, "unbalanced: {:?} of {}", c, total);
                // With them, no broker ends fuller than the fullest was, or
                // than its quota (what the rack rule keeps is spread).
                if remove.is_empty() {
                    let before = counts(&parts.iter().map(|p| p.replicas.clone()).collect::<Vec<_>>());
                    let most = before.values().copied().max().unwrap_or(0).max(total.div_ceil(targets));
                    prop_assert!(c.values().all(|n| *n <= most), "{:?} from {:?}", c, before);
                }
            }
            if goal == Goal::Leaders {
                // Reordering only after the replicas step: same sets as the
                // Replicas goal.
                let base = applied(&parts, &propose_balance(&request(&brokers, &parts, Goal::Replicas, &remove)).unwrap());
                for (a, b) in base.iter().zip(&result) {
                    let (x, y): (BTreeSet<_>, BTreeSet<_>) = (a.iter().collect(), b.iter().collect());
                    prop_assert_eq!(x, y);
                }
            }
        }
    }
}
