//! The cluster metadata an agent keeps to answer clients (live brokers,
//! partition leaders, the offsets-topic partition count), and how a push
//! updates it.
//!
//! A full push replaces the metadata. A delta merges: brokers are upserted
//! by id, leaders by `(topic, partition)`, and a non-zero
//! `offsets_partitions` replaces the old value. A leader entry with leader
//! -1 *and* leader epoch -1 is the coordinator's mark for a deleted
//! partition: the entry is dropped (leader -1 with a real epoch is an
//! offline partition and is kept). Pure: no I/O.

use std::collections::BTreeMap;

use ballast_proto::v1::{ClusterMetadata, PartitionLeader};

/// Updates `current` with the metadata of one push. A push without metadata
/// changes nothing.
pub fn update(current: &mut ClusterMetadata, full: bool, pushed: Option<&ClusterMetadata>) {
    let Some(pushed) = pushed else {
        return;
    };
    if full {
        // Sorted, one entry per partition (the last one pushed wins).
        let leaders: BTreeMap<(&str, i32), &PartitionLeader> = pushed
            .leaders
            .iter()
            .filter(|l| !is_deleted(l))
            .map(|l| (leader_key(l), l))
            .collect();
        let leaders = leaders.into_values().cloned().collect();
        *current = ClusterMetadata {
            brokers: pushed.brokers.clone(),
            leaders,
            offsets_partitions: pushed.offsets_partitions,
        };
        return;
    }
    for broker in &pushed.brokers {
        match current
            .brokers
            .iter_mut()
            .find(|b| b.broker_id == broker.broker_id)
        {
            Some(slot) => *slot = broker.clone(),
            None => current.brokers.push(broker.clone()),
        }
    }
    current.brokers.sort_by_key(|b| b.broker_id);
    if !pushed.leaders.is_empty() {
        // One merge of two sorted lists (the last entry for a key in the
        // push wins), not a search per pushed leader: a fencing delta
        // carries thousands of leaders.
        let updates: BTreeMap<(&str, i32), &PartitionLeader> =
            pushed.leaders.iter().map(|l| (leader_key(l), l)).collect();
        let old = std::mem::take(&mut current.leaders);
        let mut merged = Vec::with_capacity(old.len() + updates.len());
        let mut ups = updates.into_iter().peekable();
        for l in old {
            while let Some((k, u)) = ups.next_if(|(k, _)| *k < leader_key(&l)) {
                let _ = k;
                if !is_deleted(u) {
                    merged.push(u.clone());
                }
            }
            match ups.next_if(|(k, _)| *k == leader_key(&l)) {
                Some((_, u)) => {
                    if !is_deleted(u) {
                        merged.push(u.clone());
                    }
                }
                None => merged.push(l),
            }
        }
        merged.extend(ups.filter(|(_, u)| !is_deleted(u)).map(|(_, u)| u.clone()));
        current.leaders = merged;
    }
    if pushed.offsets_partitions != 0 {
        current.offsets_partitions = pushed.offsets_partitions;
    }
}

/// The sort key of the leader list.
fn leader_key(l: &PartitionLeader) -> (&str, i32) {
    (l.topic.as_str(), l.partition)
}

/// The coordinator's mark for a deleted partition.
fn is_deleted(l: &PartitionLeader) -> bool {
    l.leader == -1 && l.leader_epoch == -1
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_proto::v1::BrokerInfo;

    fn broker(id: i32, fenced: bool) -> BrokerInfo {
        BrokerInfo {
            broker_id: id,
            fenced,
            ..Default::default()
        }
    }

    fn leader(topic: &str, partition: i32, leader: i32) -> PartitionLeader {
        PartitionLeader {
            topic: topic.into(),
            partition,
            leader,
            leader_epoch: 0,
        }
    }

    #[test]
    fn full_replaces_and_delta_merges() {
        let mut m = ClusterMetadata::default();
        let first = ClusterMetadata {
            brokers: vec![broker(1, false), broker(2, false)],
            leaders: vec![leader("a", 0, 1), leader("a", 1, 2)],
            offsets_partitions: 50,
        };
        update(&mut m, true, Some(&first));
        assert_eq!(m, first);

        let delta = ClusterMetadata {
            brokers: vec![broker(2, true), broker(3, false)],
            leaders: vec![leader("a", 1, 1), leader("b", 0, 3)],
            offsets_partitions: 0,
        };
        update(&mut m, false, Some(&delta));
        assert_eq!(
            m.brokers,
            vec![broker(1, false), broker(2, true), broker(3, false)]
        );
        assert_eq!(
            m.leaders,
            vec![leader("a", 0, 1), leader("a", 1, 1), leader("b", 0, 3)]
        );
        assert_eq!(m.offsets_partitions, 50);

        let deleted = ClusterMetadata {
            leaders: vec![PartitionLeader {
                topic: "b".into(),
                partition: 0,
                leader: -1,
                leader_epoch: -1,
            }],
            ..Default::default()
        };
        update(&mut m, false, Some(&deleted));
        assert_eq!(m.leaders, vec![leader("a", 0, 1), leader("a", 1, 1)]);

        update(&mut m, false, None);
        assert_eq!(m.brokers.len(), 3);
        let replace = ClusterMetadata {
            brokers: vec![broker(9, false)],
            ..Default::default()
        };
        update(&mut m, true, Some(&replace));
        assert_eq!(m, replace);
    }

    /// The merge equals the obvious per-entry upsert/delete, sorted.
    #[test]
    fn delta_merge_equals_naive_upserts() {
        use proptest::prelude::*;
        let entry =
            (0..3u8, 0..6i32, -1..3i32, -1..2i32).prop_map(|(t, p, l, e)| PartitionLeader {
                topic: format!("t{t}"),
                partition: p,
                leader: l,
                leader_epoch: e,
            });
        let lists = (
            proptest::collection::vec(entry.clone(), 0..20),
            proptest::collection::vec(entry, 0..20),
        );
        proptest!(|((start, delta) in lists)| {
            let mut m = ClusterMetadata::default();
            update(&mut m, true, Some(&ClusterMetadata { leaders: start, ..Default::default() }));
            let mut naive = m.leaders.clone();
            for l in &delta {
                naive.retain(|x| !(x.topic == l.topic && x.partition == l.partition));
                if !is_deleted(l) {
                    naive.push(l.clone());
                }
            }
            naive.sort_by(|a, b| leader_key(a).cmp(&leader_key(b)));
            update(&mut m, false, Some(&ClusterMetadata { leaders: delta, ..Default::default() }));
            prop_assert_eq!(m.leaders, naive);
        });
    }
}
