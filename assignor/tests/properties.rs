//! Property tests of the assignor's invariants. The bounds checked here are
//! the ones proved in the module docs of `placement.rs` and `range.rs`.

use std::collections::{BTreeMap, BTreeSet};

use ballast_assignor::{
    BrokerMetadata, JavaRandom, Member, PlacementRequest, StartIndex, Subscriber, TopicPartitions,
    assign_replicas_to_brokers, rack_alternated_broker_list, range::member_order, range_assign,
};
use proptest::prelude::*;

/// Distinct broker ids in a shuffled order, with a replication factor that fits.
fn brokers_and_rf() -> impl Strategy<Value = (Vec<i32>, i32)> {
    proptest::collection::btree_set(0i32..10_000, 1..40)
        .prop_map(|s| s.into_iter().collect::<Vec<_>>())
        .prop_shuffle()
        .prop_flat_map(|ids| {
            let n = ids.len() as i32;
            (Just(ids), 1..=n.min(6))
        })
}

fn counts(assignment: &BTreeMap<i32, Vec<i32>>, ids: &[i32]) -> (Vec<u64>, Vec<u64>) {
    let mut leaders: BTreeMap<i32, u64> = ids.iter().map(|&b| (b, 0)).collect();
    let mut replicas = leaders.clone();
    for r in assignment.values() {
        *leaders.entry(r[0]).or_default() += 1;
        for b in r {
            *replicas.entry(*b).or_default() += 1;
        }
    }
    (
        leaders.into_values().collect(),
        replicas.into_values().collect(),
    )
}

fn spread(v: &[u64]) -> u64 {
    v.iter().max().unwrap_or(&0) - v.iter().min().unwrap_or(&0)
}

fn place(
    brokers: &[BrokerMetadata],
    partitions: i32,
    rf: i32,
    seed: Option<i64>,
    fixed: u32,
    start_partition: i32,
) -> BTreeMap<i32, Vec<i32>> {
    let mut rng = JavaRandom::new(seed.unwrap_or(0));
    let start_index = match seed {
        Some(_) => StartIndex::Random(&mut rng),
        None => StartIndex::Fixed(fixed),
    };
    let a = assign_replicas_to_brokers(PlacementRequest {
        brokers,
        partitions,
        replication_factor: rf,
        start_index,
        start_partition_id: start_partition,
    })
    .expect("valid request");
    a.iter().map(|(p, r)| (p, r.to_vec())).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Rack-unaware: distinct replicas from the list; leaders differ by at most
    /// 1; replicas by at most rf from partition 0 (at most 2 rf from any start
    /// partition), and by 0 when the broker count divides the partition count.
    #[test]
    fn rack_unaware_balance(
        (ids, rf) in brokers_and_rf(),
        partitions in 1i32..400,
        seed in proptest::option::of(any::<i64>()),
        fixed in 0u32..100,
        start_partition in prop_oneof![Just(0i32), 0i32..500],
    ) {
        let brokers: Vec<BrokerMetadata> = ids.iter().map(|&i| BrokerMetadata::new(i)).collect();
        let a = place(&brokers, partitions, rf, seed, fixed, start_partition);
        prop_assert_eq!(a.len(), partitions as usize);
        prop_assert_eq!(a.keys().next().copied(), Some(start_partition));
        let known: BTreeSet<i32> = ids.iter().copied().collect();
        for r in a.values() {
            prop_assert_eq!(r.len(), rf as usize);
            let distinct: BTreeSet<i32> = r.iter().copied().collect();
            prop_assert_eq!(distinct.len(), r.len(), "broker twice in {:?}", r);
            prop_assert!(distinct.is_subset(&known));
        }
        let (leaders, replicas) = counts(&a, &ids);
        prop_assert!(spread(&leaders) <= 1, "leaders {:?}", leaders);
        let n = ids.len() as i32;
        if start_partition == 0 {
            prop_assert!(spread(&replicas) <= rf as u64, "replicas {:?}", replicas);
            if partitions % n == 0 {
                prop_assert_eq!(spread(&replicas), 0, "replicas {:?}", replicas);
            }
        } else {
            prop_assert!(spread(&replicas) <= 2 * rf as u64, "replicas {:?}", replicas);
        }
    }

    /// Rack-aware: distinct replicas, every partition spans min(racks, rf)
    /// racks, and leaders differ by at most 1.
    #[test]
    fn rack_aware_coverage(
        (ids, rf) in brokers_and_rf(),
        rack_of in proptest::collection::vec(0u8..6, 40),
        partitions in 1i32..300,
        seed in proptest::option::of(any::<i64>()),
        start_partition in 0i32..200,
    ) {
        let brokers: Vec<BrokerMetadata> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| BrokerMetadata::with_rack(id, format!("rack-{}", rack_of[i])))
            .collect();
        let racks: BTreeMap<i32, &str> =
            brokers.iter().map(|b| (b.id, b.rack.as_deref().unwrap_or(""))).collect();
        let rack_count = racks.values().collect::<BTreeSet<_>>().len();

        let arranged = rack_alternated_broker_list(&brokers);
        let arranged_ids: BTreeSet<i32> = arranged.iter().map(|(id, _)| *id).collect();
        prop_assert_eq!(arranged.len(), ids.len());
        prop_assert_eq!(arranged_ids, ids.iter().copied().collect::<BTreeSet<_>>());

        let a = place(&brokers, partitions, rf, seed, 0, start_partition);
        for r in a.values() {
            let distinct: BTreeSet<i32> = r.iter().copied().collect();
            prop_assert_eq!(distinct.len(), r.len(), "broker twice in {:?}", r);
            let covered: BTreeSet<&str> = r.iter().map(|b| racks[b]).collect();
            prop_assert_eq!(covered.len(), rack_count.min(rf as usize), "racks of {:?}", r);
        }
        let (leaders, _) = counts(&a, &ids);
        prop_assert!(spread(&leaders) <= 1, "leaders {:?}", leaders);
    }

    /// Range: each partition of a subscribed, known topic goes to exactly one
    /// subscriber; nothing else is assigned; per-topic counts differ by at most
    /// one; the lowest-ordered subscriber gets partition 0; every member appears.
    #[test]
    fn range_invariants(
        topic_sizes in proptest::collection::vec(0u32..25, 0..6),
        members in proptest::collection::vec(
            (proptest::collection::vec(0usize..7, 0..5), proptest::option::of(0u8..20), "[a-c\u{FF61}\u{1F600}]{0,3}"),
            0..12,
        ),
    ) {
        let topics: Vec<TopicPartitions> = topic_sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| TopicPartitions { name: format!("t{i}"), partitions: n })
            .collect();
        // Topic index 6 never exists in metadata (sizes has at most 6 topics).
        let mut seen_instances = BTreeSet::new();
        let members: Vec<Member> = members
            .into_iter()
            .enumerate()
            .map(|(i, (subs, instance, suffix))| Member {
                member_id: format!("m{suffix}{i}"),
                group_instance_id: instance
                    .filter(|x| seen_instances.insert(*x))
                    .map(|x| format!("inst-{x}")),
                topics: subs.into_iter().map(|t| format!("t{t}")).collect(),
            })
            .collect();
        let out = range_assign(&topics, &members).expect("valid input");
        prop_assert_eq!(out.len(), members.len());

        for t in &topics {
            let mut subscribers: Vec<&Member> =
                members.iter().filter(|m| m.topics.contains(&t.name)).collect();
            subscribers.sort_by(|a, b| {
                member_order(
                    &Subscriber { member_id: &a.member_id, group_instance_id: a.group_instance_id.as_deref(), topics: &[] },
                    &Subscriber { member_id: &b.member_id, group_instance_id: b.group_instance_id.as_deref(), topics: &[] },
                )
            });
            let mut owners: Vec<u32> = vec![0; t.partitions as usize];
            let mut per_member = Vec::new();
            for (member_id, per_topic) in &out {
                if let Some(ps) = per_topic.get(&t.name) {
                    prop_assert!(subscribers.iter().any(|m| &m.member_id == member_id),
                        "{} got {} without subscribing", member_id, t.name);
                    for &p in ps {
                        owners[p as usize] += 1;
                    }
                }
            }
            for m in &subscribers {
                per_member.push(out[&m.member_id].get(&t.name).map_or(0, |v| v.len() as u64));
            }
            if subscribers.is_empty() {
                prop_assert!(owners.iter().all(|&c| c == 0));
            } else {
                prop_assert!(owners.iter().all(|&c| c == 1), "owners {:?}", owners);
                prop_assert!(spread(&per_member) <= 1, "counts {:?}", per_member);
                if t.partitions > 0 {
                    let first = &out[&subscribers[0].member_id][&t.name];
                    prop_assert_eq!(first.first().copied(), Some(0));
                }
            }
        }
    }
}

mod reassignment {
    use std::collections::{BTreeMap, BTreeSet};

    use ballast_assignor::{BrokerMetadata, PartitionReplicas, propose_reassignment};
    use proptest::prelude::*;

    fn case() -> impl Strategy<Value = (Vec<PartitionReplicas>, Vec<i32>)> {
        // Brokers 0..8 hold the current replicas; the targets are a
        // random non-empty subset of 0..10 (some new, some gone).
        (1usize..4, proptest::collection::btree_set(0i32..10, 1..8))
            .prop_flat_map(|(rf, targets)| {
                let targets: Vec<i32> = targets.into_iter().collect();
                let rf = rf.min(targets.len());
                let partition =
                    proptest::sample::subsequence((0..8).collect::<Vec<i32>>(), rf).prop_shuffle();
                (proptest::collection::vec(partition, 1..30), Just(targets))
            })
            .prop_map(|(parts, targets)| {
                let current = parts
                    .into_iter()
                    .enumerate()
                    .map(|(i, replicas)| PartitionReplicas {
                        topic: format!("t{}", i % 3),
                        partition: i as i32,
                        replicas,
                    })
                    .collect();
                (current, targets)
            })
    }

    proptest! {
        /// Same replica count, distinct target brokers, at most the lower
        /// bound of moves, and exactly it whenever every broker ends at its
        /// quota.
        #[test]
        fn proposals_are_valid_and_move_no_more_than_needed((current, targets) in case()) {
            let brokers: Vec<BrokerMetadata> = targets.iter().map(|&id| BrokerMetadata { id, rack: None }).collect();
            let prop = propose_reassignment(&current, &brokers).unwrap();
            let target_set: BTreeSet<i32> = targets.iter().copied().collect();
            let mut moves = 0;
            for (before, after) in current.iter().zip(&prop.partitions) {
                prop_assert_eq!(before.replicas.len(), after.replicas.len());
                let distinct: BTreeSet<i32> = after.replicas.iter().copied().collect();
                prop_assert_eq!(distinct.len(), after.replicas.len());
                prop_assert!(distinct.is_subset(&target_set));
                moves += after.replicas.iter().filter(|b| !before.replicas.contains(b)).count();
            }
            prop_assert_eq!(moves, prop.moves);
            prop_assert!(prop.moves <= prop.lower_bound);
            let total: usize = current.iter().map(|p| p.replicas.len()).sum();
            let (base, extra) = (total / targets.len(), total % targets.len());
            let loads: BTreeMap<i32, usize> = prop.loads.iter().map(|(&b, &(_, after))| (b, after)).collect();
            let balanced = loads.values().all(|&l| l == base || l == base + 1)
                && loads.values().filter(|&&l| l == base + 1).count() == extra;
            if balanced {
                prop_assert_eq!(prop.moves, prop.lower_bound);
            }
        }
    }
}
