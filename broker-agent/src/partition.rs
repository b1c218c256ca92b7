//! One hosted partition as the agent records it: [`PartitionKey`],
//! [`PartitionRecord`] (the contents of `partition.json`), the replica
//! [`Role`] that follows from it, and the validation of what the network
//! sends (topic names become directory names, so they are checked with
//! Kafka's rules before anything touches the disk).
//!
//! Pure: no I/O.

use std::collections::BTreeMap;
use std::fmt;

use ballast_proto::v1::{AssignedPartition, HostedPartition, PartitionRef, ReplicaRole};
use serde::{Deserialize, Serialize};

/// Kafka's longest topic name.
pub const MAX_TOPIC_LEN: usize = 249;

/// A partition's name: topic and index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey {
    /// Topic name (validated: `[a-zA-Z0-9._-]{1,249}`, not `.` or `..`).
    pub topic: String,
    /// Partition index, `>= 0`.
    pub partition: i32,
}

impl PartitionKey {
    /// Checks a key that came from the network.
    pub fn new(topic: &str, partition: i32) -> Result<Self, String> {
        validate_topic(topic)?;
        if partition < 0 {
            return Err(format!("partition {topic}-{partition}: negative index"));
        }
        Ok(Self {
            topic: topic.to_owned(),
            partition,
        })
    }

    /// Directory name under `partitions/`: `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        self.to_string()
    }

    /// From a wire reference (validated).
    pub fn from_proto(r: &PartitionRef) -> Result<Self, String> {
        Self::new(&r.topic, r.partition)
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// What the agent must (and does) host for one partition: the contents of
/// `partitions/<topic>-<partition>/partition.json`.
///
/// Fencing rule: for the same `topic_id`, a record never replaces one with a
/// higher `(leader_epoch, partition_epoch)`. A different `topic_id` means the
/// topic was deleted and recreated: the old directory goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// Topic name.
    pub topic: String,
    /// Topic id (non-empty); changes when a topic is recreated.
    pub topic_id: String,
    /// Partition index.
    pub partition: i32,
    /// Replica broker ids, preferred leader first.
    pub replicas: Vec<i32>,
    /// Leader broker id, -1 when offline.
    pub leader: i32,
    /// +1 at every leader change.
    pub leader_epoch: i32,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// +1 at every change of replicas, ISR or leader.
    pub partition_epoch: i32,
    /// Topic configs.
    #[serde(default)]
    pub configs: BTreeMap<String, String>,
    /// Replicas a reassignment is adding (also in `replicas`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    /// Replicas a reassignment is removing (also in `replicas`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
}

/// The role this agent plays for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The leader is this broker.
    Leader,
    /// Another broker leads (or nobody: leader -1).
    Follower,
}

impl PartitionRecord {
    /// Its key.
    pub fn key(&self) -> PartitionKey {
        PartitionKey {
            topic: self.topic.clone(),
            partition: self.partition,
        }
    }

    /// `(leader_epoch, partition_epoch)`: the order in which records of one
    /// topic id supersede each other.
    pub fn epochs(&self) -> (i32, i32) {
        (self.leader_epoch, self.partition_epoch)
    }

    /// Leader when `leader == own_broker_id`, else follower.
    pub fn role(&self, own_broker_id: i32) -> Role {
        if self.leader == own_broker_id {
            Role::Leader
        } else {
            Role::Follower
        }
    }

    /// From the wire, validated: topic name, index, non-empty topic id.
    pub fn from_proto(p: &AssignedPartition) -> Result<Self, String> {
        let key = PartitionKey::new(&p.topic, p.partition)?;
        if p.topic_id.is_empty() {
            return Err(format!("partition {key}: empty topic_id"));
        }
        Ok(Self {
            topic: key.topic,
            topic_id: p.topic_id.clone(),
            partition: key.partition,
            replicas: p.replicas.clone(),
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            isr: p.isr.clone(),
            partition_epoch: p.partition_epoch,
            configs: p
                .configs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            adding_replicas: p.adding_replicas.clone(),
            removing_replicas: p.removing_replicas.clone(),
        })
    }

    /// To the wire.
    pub fn to_proto(&self) -> AssignedPartition {
        AssignedPartition {
            topic: self.topic.clone(),
            topic_id: self.topic_id.clone(),
            partition: self.partition,
            replicas: self.replicas.clone(),
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            isr: self.isr.clone(),
            partition_epoch: self.partition_epoch,
            configs: self
                .configs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            adding_replicas: self.adding_replicas.clone(),
            removing_replicas: self.removing_replicas.clone(),
        }
    }

    /// The hosted-partition report for this record.
    pub fn hosted(&self, own_broker_id: i32) -> HostedPartition {
        let role = match self.role(own_broker_id) {
            Role::Leader => ReplicaRole::Leader,
            Role::Follower => ReplicaRole::Follower,
        };
        HostedPartition {
            topic: self.topic.clone(),
            partition: self.partition,
            role: role.into(),
            leader_epoch: self.leader_epoch,
        }
    }
}

/// Kafka's topic-name rule; names become directory names, so this also
/// keeps paths inside the data directory.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("empty topic name".to_owned());
    }
    if topic == "." || topic == ".." {
        return Err(format!("topic name {topic:?} is not allowed"));
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "topic name of {} characters is longer than {MAX_TOPIC_LEN}",
            topic.len()
        ));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {topic:?} contains {c:?}; only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        for ok in [
            "a",
            "orders.v1",
            "__consumer_offsets",
            "a-b_c.d",
            &"x".repeat(249),
        ] {
            validate_topic(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "../etc", "a b", "é", &"x".repeat(250)] {
            assert!(validate_topic(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn keys_refuse_negative_partitions_and_name_directories() {
        assert!(PartitionKey::new("t", -1).is_err());
        assert_eq!(
            PartitionKey::new("my-topic", 3).unwrap().dir_name(),
            "my-topic-3"
        );
    }

    #[test]
    fn proto_round_trip_and_roles() {
        let p = AssignedPartition {
            topic: "t".into(),
            topic_id: "id".into(),
            partition: 2,
            replicas: vec![1, 2, 3],
            leader: 2,
            leader_epoch: 5,
            isr: vec![1, 2],
            partition_epoch: 9,
            configs: [("retention.ms".to_owned(), "1".to_owned())].into(),
            adding_replicas: vec![3],
            removing_replicas: vec![1],
        };
        let r = PartitionRecord::from_proto(&p).unwrap();
        assert_eq!(r.to_proto(), p);
        assert_eq!(r.role(2), Role::Leader);
        assert_eq!(r.role(1), Role::Follower);
        assert_eq!(r.hosted(2).role(), ReplicaRole::Leader);
        assert_eq!(r.hosted(3).role(), ReplicaRole::Follower);

        let no_id = AssignedPartition {
            topic_id: String::new(),
            ..p
        };
        assert!(
            PartitionRecord::from_proto(&no_id)
                .unwrap_err()
                .contains("topic_id")
        );
    }
}
