//! Replica placement: Kafka's `AdminUtils.assignReplicasToBrokers`, exactly.
//!
//! # Rack-unaware (no broker has a rack)
//! Brokers are indexed in the order given. A start index `s` and an initial
//! follower shift `f` are drawn from the random source (in that order, each
//! `nextInt(brokers)`), unless a fixed start index is given, which then fixes
//! both. For partition id `p` (counting from the start partition id):
//! the shift grows by one each time `p > 0` is a multiple of the broker count
//! (Kafka does *not* replay the shifts of partitions before the start
//! partition id when partitions are added: neither do we); the leader is
//! broker `(p + s) % n`, and follower `j` is at
//! `(first + 1 + (f + j) % (n - 1)) % n`.
//!
//! # Rack-aware (every broker has a rack)
//! The broker list is rearranged rack-alternating: racks in sorted order
//! (Java string order), ids ascending within each rack, taken round-robin.
//! The same walk runs over that list with the shift multiplied by the number
//! of racks, and a candidate follower is skipped while its rack already holds
//! a replica and some rack holds none, or while it already is a replica.
//!
//! # Errors
//! In Kafka's order and wording: partitions < 1; replication factor < 1;
//! replication factor > brokers; some brokers with a rack and some without.
//! Then ours: duplicate broker ids, partition ids past `i32::MAX`.
//!
//! # Balance (what the property tests check)
//! * Leaders: consecutive partitions take consecutive leader positions, so
//!   leader counts over the brokers differ by at most 1, in both variants.
//! * Replicas, rack-unaware, start partition 0: each aligned block of `n`
//!   partitions shares one shift and gives every broker exactly `rf`
//!   replicas; the final partial block gives each broker between 0 and `rf`.
//!   So replica counts differ by at most `rf` (by 0 when `n` divides the
//!   partition count).
//! * Rack-aware: every partition spans `min(racks, rf)` racks.

use crate::error::Error;
use crate::java::{JavaRandom, java_string_cmp};

/// A broker as placement sees it: its id and optional rack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetadata {
    /// Broker id.
    pub id: i32,
    /// Rack, if the broker has one.
    pub rack: Option<String>,
}

impl BrokerMetadata {
    /// A broker without a rack.
    pub fn new(id: i32) -> Self {
        BrokerMetadata { id, rack: None }
    }

    /// A broker in `rack`.
    pub fn with_rack(id: i32, rack: impl Into<String>) -> Self {
        BrokerMetadata {
            id,
            rack: Some(rack.into()),
        }
    }
}

/// Where the walk starts: Kafka's `fixedStartIndex` (`-1` there means random).
#[derive(Debug)]
pub enum StartIndex<'r> {
    /// A fixed start index, which also fixes the initial follower shift.
    Fixed(u32),
    /// Draw the start index and then the follower shift from this source.
    Random(&'r mut JavaRandom),
}

/// What to place.
#[derive(Debug)]
pub struct PlacementRequest<'a, 'r> {
    /// Brokers, in the order Kafka would receive them (the coordinator sorts
    /// by id; `ballast assign` keeps the order given).
    pub brokers: &'a [BrokerMetadata],
    /// Number of partitions to place (Kafka's `nPartitions`).
    pub partitions: i32,
    /// Replicas per partition.
    pub replication_factor: i32,
    /// Start index: fixed or random.
    pub start_index: StartIndex<'r>,
    /// Id of the first partition placed; non-zero when adding partitions to
    /// an existing topic.
    pub start_partition_id: i32,
}

/// Replica lists for partitions `start_partition_id..start_partition_id + len`,
/// stored flat (`replication_factor` ids per partition, preferred leader
/// first) so a million partitions cost one allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaAssignment {
    start_partition_id: i32,
    replication_factor: usize,
    replicas: Vec<i32>,
}

impl ReplicaAssignment {
    /// Number of partitions placed.
    pub fn len(&self) -> usize {
        self.replicas.len() / self.replication_factor.max(1)
    }

    /// True when no partition was placed (never the case for a successful
    /// placement, which requires at least one partition).
    pub fn is_empty(&self) -> bool {
        self.replicas.is_empty()
    }

    /// Replicas per partition.
    pub fn replication_factor(&self) -> usize {
        self.replication_factor
    }

    /// Id of the first partition placed.
    pub fn start_partition_id(&self) -> i32 {
        self.start_partition_id
    }

    /// The replica list of partition id `partition`, if it was placed here.
    pub fn replicas(&self, partition: i32) -> Option<&[i32]> {
        let offset = usize::try_from(partition.checked_sub(self.start_partition_id)?).ok()?;
        let rf = self.replication_factor;
        self.replicas.get(offset * rf..offset * rf + rf)
    }

    /// `(partition id, replicas)` in partition order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (i32, &[i32])> + '_ {
        let start = self.start_partition_id;
        self.replicas
            .chunks_exact(self.replication_factor.max(1))
            .enumerate()
            // The constructor guarantees every id fits in an i32.
            .map(move |(i, r)| (start + i as i32, r))
    }

    /// Bytes held by the result (the benchmark's memory yardstick).
    pub fn heap_bytes(&self) -> usize {
        self.replicas.capacity() * std::mem::size_of::<i32>()
    }
}

/// Kafka's `AdminUtils.assignReplicasToBrokers`.
pub fn assign_replicas_to_brokers(
    req: PlacementRequest<'_, '_>,
) -> Result<ReplicaAssignment, Error> {
    let PlacementRequest {
        brokers,
        partitions,
        replication_factor,
        start_index,
        start_partition_id,
    } = req;
    // Kafka's checks, in Kafka's order.
    if partitions <= 0 {
        return Err(Error::InvalidPartitions);
    }
    if replication_factor <= 0 {
        return Err(Error::ReplicationFactorNotPositive);
    }
    if replication_factor as usize > brokers.len() {
        return Err(Error::ReplicationFactorTooLarge {
            replication_factor,
            brokers: brokers.len(),
        });
    }
    let any_rack = brokers.iter().any(|b| b.rack.is_some());
    if any_rack && brokers.iter().any(|b| b.rack.is_none()) {
        return Err(Error::PartialRackInformation);
    }
    // Ours.
    check_unique_ids(brokers)?;
    if start_partition_id < 0 {
        return Err(Error::Negative {
            field: "start partition id",
            value: i64::from(start_partition_id),
        });
    }
    if i64::from(start_partition_id) + i64::from(partitions) - 1 > i64::from(i32::MAX) {
        return Err(Error::PartitionIdOverflow {
            start: start_partition_id,
            count: partitions,
        });
    }

    let n = brokers.len();
    let (start, shift) = match start_index {
        StartIndex::Fixed(i) => (u64::from(i), u64::from(i)),
        StartIndex::Random(rng) => {
            // Java's list size is an int; no real broker list comes near.
            let bound = i32::try_from(n).unwrap_or(i32::MAX);
            let s = rng.next_int_bounded(bound).unwrap_or(0);
            let f = rng.next_int_bounded(bound).unwrap_or(0);
            (s as u64, f as u64)
        }
    };
    let walk = Walk {
        n: n as u64,
        rf: replication_factor as usize,
        start,
        shift,
        first_partition: start_partition_id as u64,
        partitions: partitions as usize,
    };
    // Reserve the result up front so a huge request is a named error, not
    // an aborted process.
    let slots = walk.partitions as u128 * walk.rf as u128;
    let mut out: Vec<i32> = Vec::new();
    usize::try_from(slots)
        .ok()
        .and_then(|n| out.try_reserve_exact(n).ok())
        .ok_or(Error::TooLarge {
            what: "replica placement",
            bytes: slots * std::mem::size_of::<i32>() as u128,
        })?;
    if any_rack {
        rack_aware(brokers, &walk, &mut out);
    } else {
        let ids: Vec<i32> = brokers.iter().map(|b| b.id).collect();
        rack_unaware(&ids, &walk, &mut out);
    }
    let replicas = out;
    Ok(ReplicaAssignment {
        start_partition_id,
        replication_factor: walk.rf,
        replicas,
    })
}

fn check_unique_ids(brokers: &[BrokerMetadata]) -> Result<(), Error> {
    let mut ids: Vec<i32> = brokers.iter().map(|b| b.id).collect();
    ids.sort_unstable();
    match ids.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(Error::DuplicateBrokerId(w[0])),
        None => Ok(()),
    }
}

/// The parameters of one placement walk.
struct Walk {
    n: u64,
    rf: usize,
    start: u64,
    shift: u64,
    first_partition: u64,
    partitions: usize,
}

/// Kafka's `replicaIndex`: the position of follower `j`. Requires `n >= 2`.
#[inline]
fn replica_index(first: u64, shift: u64, j: u64, n: u64) -> u64 {
    let offset = 1 + (shift + j) % (n - 1);
    (first + offset) % n
}

fn rack_unaware(ids: &[i32], w: &Walk, out: &mut Vec<i32>) {
    let mut shift = w.shift;
    for p in w.first_partition..w.first_partition + w.partitions as u64 {
        if p > 0 && p.is_multiple_of(w.n) {
            shift += 1;
        }
        let first = (p + w.start) % w.n;
        out.push(ids[first as usize]);
        for j in 0..(w.rf as u64 - 1) {
            out.push(ids[replica_index(first, shift, j, w.n) as usize]);
        }
    }
}

/// Kafka's `getRackAlternatedBrokerList`: racks in Java string order, ids
/// ascending within a rack, taken round-robin. Returns `(broker id, rack
/// number)` per position, rack numbers counting the sorted racks from 0.
pub fn rack_alternated_broker_list(brokers: &[BrokerMetadata]) -> Vec<(i32, u32)> {
    let mut by_rack: Vec<(&str, i32)> = brokers
        .iter()
        .map(|b| (b.rack.as_deref().unwrap_or(""), b.id))
        .collect();
    by_rack.sort_by(|a, b| java_string_cmp(a.0, b.0).then(a.1.cmp(&b.1)));
    // Group boundaries: racks[r] = slice of ids in rack r.
    let mut racks: Vec<&[(&str, i32)]> = Vec::new();
    let mut i = 0;
    while i < by_rack.len() {
        let mut j = i + 1;
        while j < by_rack.len() && by_rack[j].0 == by_rack[i].0 {
            j += 1;
        }
        racks.push(&by_rack[i..j]);
        i = j;
    }
    let mut cursor = vec![0usize; racks.len()];
    let mut out = Vec::with_capacity(by_rack.len());
    let mut r = 0;
    while out.len() < by_rack.len() {
        if cursor[r] < racks[r].len() {
            out.push((racks[r][cursor[r]].1, r as u32));
            cursor[r] += 1;
        }
        r = (r + 1) % racks.len();
    }
    out
}

fn rack_aware(brokers: &[BrokerMetadata], w: &Walk, out: &mut Vec<i32>) {
    let arranged = rack_alternated_broker_list(brokers);
    let num_racks = arranged
        .iter()
        .map(|&(_, r)| r)
        .max()
        .map_or(0, |r| r as usize + 1);
    let n = w.n;
    // Membership sets as generation stamps: O(1) per check, O(brokers) memory.
    let mut rack_stamp = vec![u64::MAX; num_racks];
    let mut broker_stamp = vec![u64::MAX; arranged.len()];
    let mut shift = w.shift;
    for p in w.first_partition..w.first_partition + w.partitions as u64 {
        // Partition p's generation stamp for the membership sets.
        let stamp = p;
        if p > 0 && p.is_multiple_of(n) {
            shift += 1;
        }
        let first = (p + w.start) % n;
        let (leader, leader_rack) = arranged[first as usize];
        out.push(leader);
        rack_stamp[leader_rack as usize] = stamp;
        broker_stamp[first as usize] = stamp;
        let (mut racks_used, mut brokers_used) = (1usize, 1u64);
        let mut k = 0u64;
        for _ in 1..w.rf {
            loop {
                let idx = replica_index(first, shift * num_racks as u64, k, n);
                k += 1;
                let (broker, rack) = arranged[idx as usize];
                let rack_free = rack_stamp[rack as usize] != stamp || racks_used == num_racks;
                let broker_free = broker_stamp[idx as usize] != stamp || brokers_used == n;
                if rack_free && broker_free {
                    out.push(broker);
                    if rack_stamp[rack as usize] != stamp {
                        rack_stamp[rack as usize] = stamp;
                        racks_used += 1;
                    }
                    if broker_stamp[idx as usize] != stamp {
                        broker_stamp[idx as usize] = stamp;
                        brokers_used += 1;
                    }
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn place(
        brokers: &[BrokerMetadata],
        partitions: i32,
        rf: i32,
        fixed: u32,
        start_partition: i32,
    ) -> Result<BTreeMap<i32, Vec<i32>>, Error> {
        let a = assign_replicas_to_brokers(PlacementRequest {
            brokers,
            partitions,
            replication_factor: rf,
            start_index: StartIndex::Fixed(fixed),
            start_partition_id: start_partition,
        })?;
        Ok(a.iter().map(|(p, r)| (p, r.to_vec())).collect())
    }

    fn plain(ids: impl IntoIterator<Item = i32>) -> Vec<BrokerMetadata> {
        ids.into_iter().map(BrokerMetadata::new).collect()
    }

    fn racked(map: &[(i32, &str)]) -> Vec<BrokerMetadata> {
        map.iter()
            .map(|&(id, r)| BrokerMetadata::with_rack(id, r))
            .collect()
    }

    fn table(rows: &[(i32, &[i32])]) -> BTreeMap<i32, Vec<i32>> {
        rows.iter().map(|(p, r)| (*p, r.to_vec())).collect()
    }

    // Kafka: AdminTest.testReplicaAssignment (brokers 0..4, 10 partitions, RF 3, fixed start 0).
    #[test]
    fn kafka_admin_test_replica_assignment() {
        let expected = table(&[
            (0, &[0, 1, 2]),
            (1, &[1, 2, 3]),
            (2, &[2, 3, 4]),
            (3, &[3, 4, 0]),
            (4, &[4, 0, 1]),
            (5, &[0, 2, 3]),
            (6, &[1, 3, 4]),
            (7, &[2, 4, 0]),
            (8, &[3, 0, 1]),
            (9, &[4, 1, 2]),
        ]);
        assert_eq!(place(&plain(0..5), 10, 3, 0, 0), Ok(expected));
    }

    // Kafka: AdminRackAwareTest.testGetRackAlternatedBrokerListAndAssignReplicasToBrokers.
    #[test]
    fn kafka_rack_alternated_list_and_assignment() {
        let map = [
            (0, "rack1"),
            (1, "rack3"),
            (2, "rack3"),
            (3, "rack2"),
            (4, "rack2"),
            (5, "rack1"),
        ];
        let ids = |v: Vec<(i32, u32)>| v.into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(
            ids(rack_alternated_broker_list(&racked(&map))),
            vec![0, 3, 1, 5, 4, 2]
        );
        assert_eq!(
            ids(rack_alternated_broker_list(&racked(&map[..5]))),
            vec![0, 3, 1, 4, 2]
        );
        let expected = table(&[
            (0, &[0, 3, 1]),
            (1, &[3, 1, 5]),
            (2, &[1, 5, 4]),
            (3, &[5, 4, 2]),
            (4, &[4, 2, 0]),
            (5, &[2, 0, 3]),
            (6, &[0, 4, 2]),
        ]);
        assert_eq!(place(&racked(&map), 7, 3, 0, 0), Ok(expected));
    }

    // Kafka: AdminRackAwareTest.testAssignmentWithRackAwareWithRandomStartIndex /
    // testAssignmentWithRackAware: each partition covers 3 racks, counts even.
    #[test]
    fn kafka_rack_aware_even_racks_fixed_start_2() {
        let map = [
            (0, "rack1"),
            (1, "rack2"),
            (2, "rack2"),
            (3, "rack3"),
            (4, "rack3"),
            (5, "rack1"),
        ];
        let a = place(&racked(&map), 6, 3, 2, 0).unwrap_or_default();
        assert_eq!(a.len(), 6);
        let rack: BTreeMap<i32, &str> = map.iter().copied().collect();
        let mut replicas = BTreeMap::<i32, usize>::new();
        let mut leaders = BTreeMap::<i32, usize>::new();
        for r in a.values() {
            let racks: BTreeSet<&str> = r.iter().map(|b| rack[b]).collect();
            assert_eq!(racks.len(), 3, "{r:?}");
            *leaders.entry(r[0]).or_default() += 1;
            for b in r {
                *replicas.entry(*b).or_default() += 1;
            }
        }
        assert!(replicas.values().all(|&c| c == 3), "{replicas:?}");
        assert!(leaders.values().all(|&c| c == 1), "{leaders:?}");
    }

    // Kafka: AdminRackAwareTest.testAssignmentWith2ReplicasRackAware and
    // testRackAwareExpansion: adding partitions continues from the start
    // partition id without replaying earlier shifts.
    #[test]
    fn start_partition_does_not_replay_shifts() {
        let brokers = plain(0..5);
        let all = place(&brokers, 10, 3, 0, 0).unwrap_or_default();
        let tail = place(&brokers, 5, 3, 0, 5).unwrap_or_default();
        // The shift bumps at p=5 in both, so the tails agree here...
        assert_eq!(tail.get(&5), all.get(&5));
        // ...but starting at 7 there is no bump at all (7 is not a multiple of
        // 5) and the shift stays at the initial value, unlike the full walk.
        let from7 = place(&brokers, 3, 3, 0, 7).unwrap_or_default();
        assert_eq!(from7.get(&7), Some(&vec![2, 3, 4]));
        assert_eq!(all.get(&7), Some(&vec![2, 4, 0]));
    }

    #[test]
    fn errors_in_kafka_order_and_wording() {
        let five = plain(0..5);
        let e = |r: Result<BTreeMap<i32, Vec<i32>>, Error>| r.err().map(|e| e.to_string());
        assert_eq!(
            e(place(&five, 0, 0, 0, 0)),
            Some("Number of partitions must be larger than 0.".into())
        );
        assert_eq!(
            e(place(&five, 10, 0, 0, 0)),
            Some("Replication factor must be larger than 0.".into())
        );
        assert_eq!(
            e(place(&five, 10, 6, 0, 0)),
            Some("Replication factor: 6 larger than available brokers: 5.".into())
        );
        let mixed = vec![BrokerMetadata::with_rack(1, "a"), BrokerMetadata::new(2)];
        assert_eq!(
            e(place(&mixed, 3, 3, 0, 0)),
            Some("Replication factor: 3 larger than available brokers: 2.".into())
        );
        assert_eq!(
            e(place(&mixed, 3, 2, 0, 0)),
            Some("Not all brokers have rack information for replica rack aware assignment.".into())
        );
        assert_eq!(
            place(&plain([1, 2, 1]), 3, 2, 0, 0),
            Err(Error::DuplicateBrokerId(1))
        );
        assert_eq!(
            place(&plain([1, 2]), 2, 1, 0, i32::MAX),
            Err(Error::PartitionIdOverflow {
                start: i32::MAX,
                count: 2
            })
        );
        assert!(place(&plain([1, 2]), 1, 1, 0, i32::MAX).is_ok());
        assert_eq!(
            place(&[], 1, 1, 0, 0),
            Err(Error::ReplicationFactorTooLarge {
                replication_factor: 1,
                brokers: 0
            })
        );
        assert_eq!(
            Error::PartialRackInformation.kafka_error(),
            Some("AdminOperationException")
        );
    }

    #[test]
    fn huge_requests_are_named_errors() {
        // 2^31 partitions x RF 1000 = 8 TiB of replica ids: refused by the
        // allocator on any machine, and reported, not aborted.
        let e = place(&plain(0..1000), i32::MAX, 1000, 0, 0);
        assert!(matches!(e, Err(Error::TooLarge { .. })), "{e:?}");
    }

    #[test]
    fn single_broker() {
        assert_eq!(
            place(&plain([7]), 3, 1, 0, 0),
            Ok(table(&[(0, &[7]), (1, &[7]), (2, &[7])]))
        );
        let one = racked(&[(7, "r")]);
        assert_eq!(place(&one, 2, 1, 0, 0), Ok(table(&[(0, &[7]), (1, &[7])])));
    }

    #[test]
    fn seeded_random_is_java_random() {
        // With new Random(42) and 5 brokers Kafka draws nextInt(5) twice.
        let mut probe = JavaRandom::new(42);
        let s = probe.next_int_bounded(5).unwrap_or(-1) as u32;
        let f = probe.next_int_bounded(5).unwrap_or(-1) as u32;
        let brokers = plain([10, 20, 30, 40, 50]);
        let mut rng = JavaRandom::new(42);
        let random = assign_replicas_to_brokers(PlacementRequest {
            brokers: &brokers,
            partitions: 12,
            replication_factor: 3,
            start_index: StartIndex::Random(&mut rng),
            start_partition_id: 0,
        });
        // Recompute the walk by hand with the drawn start and shift.
        let ids = [10, 20, 30, 40, 50];
        let mut shift = u64::from(f);
        let mut expected = Vec::new();
        for p in 0u64..12 {
            if p > 0 && p % 5 == 0 {
                shift += 1;
            }
            let first = (p + u64::from(s)) % 5;
            expected.push(ids[first as usize]);
            for j in 0..2 {
                expected.push(ids[((first + 1 + (shift + j) % 4) % 5) as usize]);
            }
        }
        let got: Vec<i32> = random
            .map(|a| a.iter().flat_map(|(_, r)| r.to_vec()).collect())
            .unwrap_or_default();
        assert_eq!(got, expected);
        // And the seed 42 draws are Java's: nextInt(5), nextInt(5) = 0, 3.
        assert_eq!((s, f), (0, 3));
    }

    #[test]
    fn lookup_by_partition_id() {
        let brokers = plain(0..3);
        let a = assign_replicas_to_brokers(PlacementRequest {
            brokers: &brokers,
            partitions: 2,
            replication_factor: 2,
            start_index: StartIndex::Fixed(0),
            start_partition_id: 4,
        });
        let a = a.ok();
        assert_eq!(a.as_ref().and_then(|a| a.replicas(4)), Some(&[1, 2][..]));
        assert_eq!(a.as_ref().and_then(|a| a.replicas(3)), None);
        assert_eq!(a.as_ref().and_then(|a| a.replicas(6)), None);
        assert_eq!(a.as_ref().map(|a| a.len()), Some(2));
    }
}
