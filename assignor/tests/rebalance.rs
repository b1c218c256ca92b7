//! The balancer (`ballast_assignor::rebalance`): worked examples and
//! properties over random clusters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use ballast_assignor::rebalance::{
    BalancePartition, BalanceRequest, Goal, balanced_byte_ranges, balanced_ranges,
    lower_bound_bytes, lower_bound_moves, propose_balance,
};
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
                let ranges = balanced_ranges(&request(&brokers, &parts, goal, &remove)).unwrap();
                let balanced = brokers.iter().filter(|b| !remove.contains(&b.id)).all(|b| {
                    let n = c.get(&b.id).copied().unwrap_or(0);
                    let (lo, hi) = ranges[&b.id];
                    (lo..=hi).contains(&n)
                });
                if !racked {
                    // Without racks, balanced is ⌊R/n⌋..=⌈R/n⌉.
                    prop_assert!(ranges.values().all(|r| *r == (total / targets, total.div_ceil(targets))
                        || *r == (total / targets - usize::from(total.is_multiple_of(targets)), total / targets)));
                }
                prop_assert_eq!(
                    plan.lower_bound_moves,
                    lower_bound_moves(&request(&brokers, &parts, goal, &remove)).unwrap()
                );
                if balanced {
                    // The bound holds for any balanced result, the plan's too.
                    prop_assert!(plan.replica_moves >= plan.lower_bound_moves,
                        "{} moves for a bound of {}", plan.replica_moves, plan.lower_bound_moves);
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

/// Every valid result of a tiny cluster: each partition's listed replicas
/// on any set of targets of the same size that keeps the rack rule (at
/// least `min(racks spanned before, racks of the targets)` racks). Calls
/// `f(counts per target, moves)`.
fn every_result(
    brokers: &[BrokerMetadata],
    parts: &[BalancePartition],
    remove: &[i32],
    f: &mut dyn FnMut(&BTreeMap<i32, usize>, usize),
) {
    every_result_bytes(brokers, parts, remove, &mut |c, moves, _, _| f(c, moves));
}

/// What [`every_result_bytes`] calls per result: counts per target, moves,
/// bytes per target, bytes moved.
type OnResult<'f> = dyn FnMut(&BTreeMap<i32, usize>, usize, &BTreeMap<i32, u64>, u64) + 'f;

/// [`every_result`], also with bytes per target and bytes moved:
/// `f(counts, moves, bytes, bytes moved)`.
fn every_result_bytes(
    brokers: &[BrokerMetadata],
    parts: &[BalancePartition],
    remove: &[i32],
    f: &mut OnResult<'_>,
) {
    let targets: Vec<&BrokerMetadata> =
        brokers.iter().filter(|b| !remove.contains(&b.id)).collect();
    let racked = brokers.iter().all(|b| b.rack.is_some());
    let target_racks: BTreeSet<_> = targets.iter().filter_map(|b| b.rack.clone()).collect();
    let rack = |id: i32| {
        brokers
            .iter()
            .find(|b| b.id == id)
            .and_then(|b| b.rack.clone())
    };
    // Per partition: every allowed set with the moves it costs.
    let options: Vec<Vec<(Vec<i32>, usize)>> = parts
        .iter()
        .map(|p| {
            let before: BTreeSet<i32> = p.replicas.iter().copied().collect();
            let spans: BTreeSet<_> = p.replicas.iter().filter_map(|b| rack(*b)).collect();
            let need = if racked {
                spans.len().min(target_racks.len())
            } else {
                0
            };
            let a = p.replicas.len();
            let mut out = Vec::new();
            for mask in 0u32..(1 << targets.len()) {
                if mask.count_ones() as usize != a {
                    continue;
                }
                let set: Vec<i32> = (0..targets.len())
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| targets[i].id)
                    .collect();
                let spans: BTreeSet<_> = set.iter().filter_map(|b| rack(*b)).collect();
                if spans.len() < need {
                    continue;
                }
                let moves = set.iter().filter(|b| !before.contains(b)).count();
                out.push((set, moves));
            }
            out
        })
        .collect();
    let mut pick = vec![0usize; parts.len()];
    loop {
        let mut c: BTreeMap<i32, usize> = targets.iter().map(|b| (b.id, 0)).collect();
        let mut bytes: BTreeMap<i32, u64> = targets.iter().map(|b| (b.id, 0)).collect();
        let (mut moves, mut moved) = (0, 0u64);
        for (i, o) in options.iter().enumerate() {
            let (set, m) = &o[pick[i]];
            moves += m;
            moved += *m as u64 * parts[i].size_bytes;
            for b in set {
                *c.entry(*b).or_default() += 1;
                *bytes.entry(*b).or_default() += parts[i].size_bytes;
            }
        }
        f(&c, moves, &bytes, moved);
        // Next combination.
        let mut i = 0;
        loop {
            if i == pick.len() {
                return;
            }
            pick[i] += 1;
            if pick[i] < options[i].len() {
                break;
            }
            pick[i] = 0;
            i += 1;
        }
    }
}

fn tiny_cluster() -> impl Strategy<Value = (Vec<BrokerMetadata>, Vec<BalancePartition>, Vec<i32>)> {
    (3usize..6, 0u8..3, 1usize..4, 1usize..5, any::<bool>())
        .prop_flat_map(|(n, layout, rf, parts, drain)| {
            let rf = rf.min(n - 1);
            (
                Just(n),
                Just(layout),
                proptest::collection::vec(
                    proptest::sample::subsequence((1..=n as i32).collect::<Vec<_>>(), rf),
                    parts,
                ),
                Just(drain && n > rf + 1),
            )
        })
        .prop_map(|(n, layout, placements, drain)| {
            let brokers: Vec<BrokerMetadata> = (1..=n as i32)
                .map(|id| match layout {
                    0 => BrokerMetadata::new(id),
                    1 => BrokerMetadata::with_rack(id, format!("r{}", id % 2)),
                    // Uneven: broker 1 alone, the rest together.
                    _ => BrokerMetadata::with_rack(id, if id == 1 { "solo" } else { "big" }),
                })
                .collect();
            let parts = placements
                .iter()
                .enumerate()
                .map(|(p, r)| part(p as i32, r, 1))
                .collect();
            let remove = if drain { vec![n as i32] } else { Vec::new() };
            (brokers, parts, remove)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The bound's claim, checked exhaustively: no valid balanced result of
    /// a tiny cluster (racks or not, uneven or not, draining or not) moves
    /// fewer replicas than the bound.
    #[test]
    fn no_balanced_result_beats_the_bound((brokers, parts, remove) in tiny_cluster()) {
        let req = request(&brokers, &parts, Goal::Replicas, &remove);
        let bound = lower_bound_moves(&req).unwrap();
        let ranges = balanced_ranges(&req).unwrap();
        let mut best: Option<usize> = None;
        every_result(&brokers, &parts, &remove, &mut |c, moves| {
            if c.iter().all(|(b, n)| (ranges[b].0..=ranges[b].1).contains(n)) {
                best = Some(best.map_or(moves, |m| m.min(moves)));
            }
        });
        if let Some(best) = best {
            prop_assert!(best >= bound, "a balanced result moves {} < bound {}", best, bound);
        }
    }
}

#[test]
fn uneven_racks_hold_what_the_rack_rule_allows() {
    // Broker 1 alone on rack a, brokers 2..=5 on rack b; every partition
    // spans both racks (RF 2), so rack b holds one replica of each of the
    // 8 partitions at most, and broker 1 the other 8: 16 replicas, quota
    // 16/5 = 3.2 per broker is out of reach. Broker 1 holds all 8 (rack a
    // must hold one of each partition), brokers 2..=5 two each.
    let b = vec![
        BrokerMetadata::with_rack(1, "a"),
        BrokerMetadata::with_rack(2, "b"),
        BrokerMetadata::with_rack(3, "b"),
        BrokerMetadata::with_rack(4, "b"),
        BrokerMetadata::with_rack(5, "b"),
    ];
    // Brokers 2 and 3 hold 4 each, 4 and 5 none.
    let parts: Vec<_> = (0..8)
        .map(|p| part(p, &[1, if p % 2 == 0 { 2 } else { 3 }], 1))
        .collect();
    let req = request(&b, &parts, Goal::Replicas, &[]);
    let ranges = balanced_ranges(&req).unwrap();
    // Water level 8 (Σ min(C_k, |k|·8) = 8 + 8 = 16): broker 1 may hold
    // 7..=8 by its own range, and 8 once rack b holds its 8 at most; rack b
    // is capped, 8 over 4 brokers.
    assert_eq!(ranges[&1], (7, 8));
    assert_eq!(ranges[&2], (2, 2));
    // The rack-blind bound (quota 3, one broker 4: broker 1 sheds 4,
    // brokers 2 and 3 one each) would say 6, but no valid result sheds
    // from broker 1 at all; the forced moves are 2 + 2 from brokers 2 and
    // 3, down to 2 each.
    assert_eq!(lower_bound_moves(&req).unwrap(), 4);
    let plan = propose_balance(&req).unwrap();
    assert_eq!(plan.replica_moves, 4);
    assert_eq!(plan.lower_bound_moves, 4);
    let after: Vec<usize> = plan.after.values().map(|u| u.replicas).collect();
    assert_eq!(after, vec![8, 2, 2, 2, 2]);
}

#[test]
fn a_rack_every_partition_must_reach_forces_moves_counts_do_not_see() {
    // Racks a = {1}, b = {2}, c = {3, 4, 5, 6}; RF 2 spanning two racks.
    // Six partitions on a+b only, none on c. Rack c can hold one replica
    // of each partition (6), a and b 6 each: 12 replicas, so the water
    // level puts 3 on each of a and b and 6 on c (1 or 2 per broker).
    // Counts: brokers 1 and 2 hold 6 each and must shed 3 each (6 moves),
    // which is also what the racks need: every partition must gain a rack-c
    // replica. Bound 6, and the balancer moves 6.
    let b = vec![
        BrokerMetadata::with_rack(1, "a"),
        BrokerMetadata::with_rack(2, "b"),
        BrokerMetadata::with_rack(3, "c"),
        BrokerMetadata::with_rack(4, "c"),
        BrokerMetadata::with_rack(5, "c"),
        BrokerMetadata::with_rack(6, "c"),
    ];
    let parts: Vec<_> = (0..6).map(|p| part(p, &[1, 2], 1)).collect();
    let req = request(&b, &parts, Goal::Replicas, &[]);
    let ranges = balanced_ranges(&req).unwrap();
    assert_eq!((ranges[&1], ranges[&3]), ((2, 3), (1, 2)));
    assert_eq!(lower_bound_moves(&req).unwrap(), 6);
    let plan = propose_balance(&req).unwrap();
    assert_eq!(plan.replica_moves, 6);
}

#[test]
fn a_rack_every_partition_must_reach_costs_a_move_counts_miss() {
    // Racks a = {1}, b = {2}, c = {3}, d = {4, 6}, e = {5}; four partitions
    // of RF 3 on three racks each. 12 replicas on 6 brokers: every rack may
    // hold one replica of each partition (4), so the water level is 2 and
    // every broker must end with exactly 2. Broker 5 holds 3, broker 4 one.
    let racks = ["a", "b", "c", "d", "e", "d"];
    let b: Vec<_> = (1..=6)
        .map(|id| BrokerMetadata::with_rack(id, racks[id as usize - 1]))
        .collect();
    let parts = vec![
        part(0, &[1, 6, 5], 1), // a d e
        part(1, &[6, 2, 5], 1), // d b e
        part(2, &[3, 2, 1], 1), // c b a
        part(3, &[5, 4, 3], 1), // e d c
    ];
    let req = request(&b, &parts, Goal::Replicas, &[]);
    let ranges = balanced_ranges(&req).unwrap();
    assert!(ranges.values().all(|r| *r == (1, 2)));
    // Counts alone (the rack-blind bound too): broker 5 sheds one, 1 move.
    // But rack d must end with a replica of every partition (4 brokers-worth
    // of room: 2 + 2), and partition 2 has none there: one of its replicas
    // moves to broker 4, and broker 5's extra replica moves as well (to b
    // or c, not d, which its partitions already use). 2 moves.
    assert_eq!(lower_bound_moves(&req).unwrap(), 2);
    let mut best = usize::MAX;
    every_result(&b, &parts, &[], &mut |c, moves| {
        if c.values().all(|n| *n == 2) {
            best = best.min(moves);
        }
    });
    assert_eq!(best, 2, "the bound is reached");
    let plan = propose_balance(&req).unwrap();
    // The balancer finds it: every broker at 2 in 2 moves.
    assert_eq!((plan.replica_moves, plan.lower_bound_moves), (2, 2));
    assert!(plan.after.values().all(|u| u.replicas == 2));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// The disk goal's byte bound, checked exhaustively: no valid result of
    /// a tiny cluster with every target within its byte band
    /// (`balanced_byte_ranges`: racks or not, uneven or not, draining or
    /// not) moves fewer bytes than the bound, and the plan reports it.
    #[test]
    fn no_balanced_result_beats_the_byte_bound(
        (brokers, mut parts, remove) in tiny_cluster(),
        sizes in proptest::collection::vec(0u64..12, 4),
    ) {
        for (p, s) in parts.iter_mut().zip(&sizes) {
            p.size_bytes = *s;
        }
        let req = request(&brokers, &parts, Goal::Disk, &remove);
        let bound = lower_bound_bytes(&req).unwrap();
        let ranges = balanced_byte_ranges(&req).unwrap();
        let mut best: Option<u64> = None;
        every_result_bytes(&brokers, &parts, &remove, &mut |_, _, bytes, moved| {
            if bytes.iter().all(|(b, v)| (ranges[b].0..=ranges[b].1).contains(v)) {
                best = Some(best.map_or(moved, |m| m.min(moved)));
            }
        });
        if let Some(best) = best {
            prop_assert!(best >= bound, "a balanced result moves {} bytes < bound {}", best, bound);
        }
        let plan = propose_balance(&req).unwrap();
        prop_assert_eq!(plan.lower_bound_bytes, bound);
        let after_within = plan
            .after
            .iter()
            .filter(|(b, _)| !remove.contains(b))
            .all(|(b, u)| (ranges[b].0..=ranges[b].1).contains(&u.bytes));
        if after_within {
            prop_assert!(plan.bytes_moved >= bound, "{} bytes moved < bound {}", plan.bytes_moved, bound);
        }
    }
}

#[test]
fn the_byte_band_follows_rack_capacity() {
    // Broker 1 alone on rack a, brokers 2..=5 on rack b; 8 partitions of
    // 100 bytes and RF 2 spanning both racks, so each rack holds at most
    // one replica of each: 800 bytes. T = 1,600; water level 800 (Σ
    // min(B_k, |k|·800) = 800 + 800): rack a is not capped, τ_1 = 800;
    // rack b is (800 < 4·800), τ = 200 for each of its brokers. Tolerance
    // max(1,600/5/20, 100/2) = 50.
    let b = vec![
        BrokerMetadata::with_rack(1, "a"),
        BrokerMetadata::with_rack(2, "b"),
        BrokerMetadata::with_rack(3, "b"),
        BrokerMetadata::with_rack(4, "b"),
        BrokerMetadata::with_rack(5, "b"),
    ];
    let parts: Vec<_> = (0..8)
        .map(|p| part(p, &[1, if p % 2 == 0 { 2 } else { 3 }], 100))
        .collect();
    let req = request(&b, &parts, Goal::Disk, &[]);
    let ranges = balanced_byte_ranges(&req).unwrap();
    assert_eq!(ranges[&1], (750, 850));
    assert_eq!(ranges[&2], (150, 250));
    // Brokers 2 and 3 hold 400 each and may keep 250: 300 bytes must
    // leave (the rack-blind band around 320 asked broker 1 to shed 430,
    // which no valid result does). Whole partitions: 400 at best.
    assert_eq!(lower_bound_bytes(&req).unwrap(), 300);
    let mut best = u64::MAX;
    every_result_bytes(&b, &parts, &[], &mut |_, _, bytes, moved| {
        if bytes
            .iter()
            .all(|(b, v)| (ranges[b].0..=ranges[b].1).contains(v))
        {
            best = best.min(moved);
        }
    });
    assert_eq!(best, 400);
    let plan = propose_balance(&req).unwrap();
    assert_eq!((plan.bytes_moved, plan.lower_bound_bytes), (400, 300));
    let after: Vec<u64> = plan.after.values().map(|u| u.bytes).collect();
    assert_eq!(after, vec![800, 200, 200, 200, 200]);
}

#[test]
fn bytes_a_rack_must_receive_count_when_counts_miss_them() {
    // The racks of `a_rack_every_partition_must_reach_costs_a_move_counts_miss`
    // with 1-byte partitions: tolerance 0, so every broker must end with
    // exactly 2 bytes. Per broker only broker 5's extra byte must leave,
    // but rack d must end with a replica of every partition and partition
    // 2 has none there: the rack flow bound says 2, which is reached.
    let racks = ["a", "b", "c", "d", "e", "d"];
    let b: Vec<_> = (1..=6)
        .map(|id| BrokerMetadata::with_rack(id, racks[id as usize - 1]))
        .collect();
    let parts = vec![
        part(0, &[1, 6, 5], 1),
        part(1, &[6, 2, 5], 1),
        part(2, &[3, 2, 1], 1),
        part(3, &[5, 4, 3], 1),
    ];
    let req = request(&b, &parts, Goal::Disk, &[]);
    let ranges = balanced_byte_ranges(&req).unwrap();
    assert!(ranges.values().all(|r| *r == (2, 2)));
    assert_eq!(lower_bound_bytes(&req).unwrap(), 2);
    let plan = propose_balance(&req).unwrap();
    assert_eq!(plan.lower_bound_bytes, 2);
}

#[test]
fn a_broker_over_its_band_sheds_its_own_replicas() {
    // Racks a = {1}, b = {2, 3}, c = {4}. Broker 3 holds partitions 1 and
    // 2 (7 bytes each, on racks a, b and c); broker 2 holds partition 0
    // (7 bytes, racks b and c). Bands: 15..=21 on racks a and c, 7..=13 on
    // rack b; broker 3 holds 14 (1 over), broker 1 holds 14 (1 under),
    // brokers 2 and 4 are within.
    let racks = ["a", "b", "b", "c"];
    let b: Vec<_> = (1..=4)
        .map(|id| BrokerMetadata::with_rack(id, racks[id as usize - 1]))
        .collect();
    let parts = vec![
        part(0, &[2, 4], 7),
        part(1, &[3, 1, 4], 7),
        part(2, &[3, 1, 4], 7),
    ];
    let req = request(&b, &parts, Goal::Disk, &[]);
    let ranges = balanced_byte_ranges(&req).unwrap();
    assert_eq!((ranges[&1], ranges[&3]), ((15, 21), (7, 13)));
    // Broker 3's partitions use every other rack, so what it sheds stays on
    // rack b (1 byte at least, moved within the rack), and broker 1 must
    // receive a byte (1 more). Counted per rack, rack b holds 21 and may
    // keep 20, and partition 0 leaving rack b for broker 1 would settle
    // both at once (a bound of 1); but partition 0 is on broker 2, not on
    // broker 3: the hot broker's own keep node sees that. So 2.
    let bound = lower_bound_bytes(&req).unwrap();
    assert_eq!(bound, 2);
    let mut best = u64::MAX;
    every_result_bytes(&b, &parts, &[], &mut |_, _, bytes, moved| {
        if bytes
            .iter()
            .all(|(b, v)| (ranges[b].0..=ranges[b].1).contains(v))
        {
            best = best.min(moved);
        }
    });
    // Whole partitions: broker 3 gives 7 bytes to broker 2, which then gives
    // partition 0 to broker 1 (the greedy plan does not find this chain).
    assert!(best >= bound);
    assert_eq!(best, 14);
    assert_eq!(propose_balance(&req).unwrap().lower_bound_bytes, bound);
}

#[test]
fn the_disk_goal_takes_back_moves_it_does_not_need() {
    // Racks a = {1}, b = {2, 3}, c = {4, 5}; bands 5..=13 for broker 1 and
    // 3..=11 for the others. Broker 3 is empty and must receive 3 bytes:
    // the cheapest result moves partition 1 (4 bytes) from broker 1 to it.
    // The greedy rounds also hand it partition 0 (2 bytes, from broker 2),
    // which is then not needed: the last pass gives it back, and the plan
    // moves what exhaustive search finds least.
    let racks = ["a", "b", "b", "c", "c"];
    let b: Vec<_> = (1..=5)
        .map(|id| BrokerMetadata::with_rack(id, racks[id as usize - 1]))
        .collect();
    let parts = vec![
        part(0, &[5, 2], 2),
        part(1, &[4, 1], 4),
        part(2, &[2, 1, 5], 9),
    ];
    let req = request(&b, &parts, Goal::Disk, &[]);
    let ranges = balanced_byte_ranges(&req).unwrap();
    let mut best = u64::MAX;
    every_result_bytes(&b, &parts, &[], &mut |_, _, bytes, moved| {
        if bytes
            .iter()
            .all(|(b, v)| (ranges[b].0..=ranges[b].1).contains(v))
        {
            best = best.min(moved);
        }
    });
    let plan = propose_balance(&req).unwrap();
    assert!(
        plan.after
            .iter()
            .all(|(b, u)| (ranges[b].0..=ranges[b].1).contains(&u.bytes)),
        "{:?}",
        plan.after
    );
    assert_eq!(plan.bytes_moved, best);
    assert!(plan.bytes_moved >= plan.lower_bound_bytes);
}
