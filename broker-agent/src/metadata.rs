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

use ballast_proto::v1::{ClusterMetadata, PartitionLeader};

/// Updates `current` with the metadata of one push. A push without metadata
/// changes nothing.
pub fn update(current: &mut ClusterMetadata, full: bool, pushed: Option<&ClusterMetadata>) {
    let Some(pushed) = pushed else {
        return;
    };
    if full {
        *current = pushed.clone();
        current.leaders.retain(|l| !is_deleted(l));
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
    for leader in &pushed.leaders {
        if is_deleted(leader) {
            current
                .leaders
                .retain(|l| !(l.topic == leader.topic && l.partition == leader.partition));
            continue;
        }
        match current
            .leaders
            .iter_mut()
            .find(|l| l.topic == leader.topic && l.partition == leader.partition)
        {
            Some(slot) => *slot = leader.clone(),
            None => current.leaders.push(leader.clone()),
        }
    }
    current
        .leaders
        .sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    if pushed.offsets_partitions != 0 {
        current.offsets_partitions = pushed.offsets_partitions;
    }
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
}
