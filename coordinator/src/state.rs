//! The coordinator's in-memory picture of the cluster, loaded from the store
//! at takeover, and the planning of every metadata change against it.
//!
//! Plan, then I/O, then apply: `plan_*` functions validate a request against
//! this state and return what to write (store operations) together with the
//! state to apply once the write succeeds. They never touch the store, the
//! network or a clock; randomness comes in as a seeded [`JavaRandom`]. The
//! active coordinator runs the writes (each fenced by its epoch) and only then
//! applies the result, so memory never runs ahead of the store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ballast_assignor::{BrokerMetadata, JavaRandom, PlacementRequest, StartIndex};
use ballast_proto::v1::metadata::{BrokerRecord, PartitionChunk, TopicRecord, TopicState};
use prost::Message;

use crate::keys::{CHUNK_PARTITIONS, Keys, chunk_of};
use crate::partition::PartitionState;
use crate::records::{CorruptRecord, decode, encode_chunk};
use crate::store::{KeyValue, TxnOp};
use crate::topic::{OFFSETS_TOPIC, TopicConfig, TopicError, check_collision, validate_topic_name};

/// Upper bound on partitions per topic (Kafka has none; a typo of a few
/// zeros should not create a billion partitions).
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 1_000_000;

/// A topic with its partitions.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicEntry {
    /// The stored record (name, id, counts, configs as strings, state).
    pub record: TopicRecord,
    /// The configs, typed.
    pub config: TopicConfig,
    /// Partition `i` at index `i`.
    pub partitions: Vec<PartitionState>,
}

/// Why an admin request is refused. Messages name the field and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// Invalid name or config.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// Kafka's placement errors (partitions, replication factor, racks).
    #[error(transparent)]
    Placement(#[from] ballast_assignor::Error),
    /// Kafka: TopicExistsException.
    #[error("Topic '{0}' already exists.")]
    TopicAlreadyExists(String),
    /// Kafka: UnknownTopicOrPartitionException.
    #[error("This server does not host this topic: {0}")]
    UnknownTopic(String),
    /// Kafka: InvalidReplicaAssignmentException.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// Kafka: InvalidPartitionsException.
    #[error("{0}")]
    InvalidPartitions(String),
    /// Kafka: InvalidRequestException.
    #[error("{0}")]
    InvalidRequest(String),
}

/// Everything the active coordinator knows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterState {
    /// Registered brokers by id, fenced ones included.
    pub brokers: BTreeMap<i32, BrokerRecord>,
    /// Topics by name. Entries are shared and replaced whole on change, so
    /// a snapshot of the map (for building a full push outside the state
    /// lock) is one cheap clone.
    pub topics: BTreeMap<String, Arc<TopicEntry>>,
    /// The latest reassignment (running, or finished and kept for status).
    pub reassignment: Option<Arc<crate::reassignment::Reassignment>>,
}

/// What loading found besides the state: keys to clean up.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Partition chunks without a topic, or past its chunk count (left by a
    /// creation that did not finish).
    pub orphan_chunks: Vec<Vec<u8>>,
}

/// A request to create a topic, already parsed.
#[derive(Debug, Clone, Default)]
pub struct CreateTopic {
    /// Name.
    pub name: String,
    /// Partition count (0 with explicit assignments).
    pub partitions: i32,
    /// Replication factor (0 with explicit assignments).
    pub replication_factor: i32,
    /// Explicit replica lists, partition `i` at index `i`.
    pub assignments: Vec<Vec<i32>>,
    /// Config overrides.
    pub configs: BTreeMap<String, String>,
    /// Idempotency key.
    pub request_id: String,
    /// Internal topic (the offsets topic).
    pub internal: bool,
}

/// A planned write: store operations (unfenced; the caller adds the fence)
/// grouped so that the `final_ops` make the change visible atomically.
#[derive(Debug, Default)]
pub struct WritePlan {
    /// Written first, in any number of transactions; invisible until
    /// `final_ops` land (partition chunks of a new topic).
    pub prepare: Vec<TxnOp>,
    /// Written in one transaction, guarded by `final_guard`.
    pub final_ops: Vec<TxnOp>,
    /// Extra compares for the final transaction (e.g. topic absent).
    pub final_guard: Vec<crate::store::Compare>,
}

impl ClusterState {
    /// Rebuild the state from the three prefixes, read at one revision.
    pub fn load(
        keys: &Keys,
        brokers: &[KeyValue],
        topics: &[KeyValue],
        chunks: &[KeyValue],
    ) -> Result<(ClusterState, LoadReport), CorruptRecord> {
        let mut state = ClusterState::default();
        let mut report = LoadReport::default();
        for kv in brokers {
            let b: BrokerRecord = decode("broker", &kv.key, &kv.value)?;
            state.brokers.insert(b.broker_id, b);
        }
        for kv in topics {
            let record: TopicRecord = decode("topic", &kv.key, &kv.value)?;
            let config = TopicConfig::default()
                .with_overrides(&record.configs.clone().into_iter().collect())
                .map_err(|e| CorruptRecord {
                    what: "topic",
                    key: String::from_utf8_lossy(&kv.key).into_owned(),
                    reason: e.to_string(),
                })?;
            let partitions = vec![PartitionState::default(); record.partitions.max(0) as usize];
            state.topics.insert(
                record.name.clone(),
                Arc::new(TopicEntry {
                    record,
                    config,
                    partitions,
                }),
            );
        }
        let mut filled: HashMap<String, usize> = HashMap::new();
        for kv in chunks {
            let Some((topic, index)) = keys.parse_chunk(&kv.key) else {
                report.orphan_chunks.push(kv.key.clone());
                continue;
            };
            let Some(entry) = state.topics.get_mut(topic).map(Arc::make_mut) else {
                report.orphan_chunks.push(kv.key.clone());
                continue;
            };
            if index >= entry.record.chunks {
                report.orphan_chunks.push(kv.key.clone());
                continue;
            }
            let chunk: PartitionChunk = decode("partition chunk", &kv.key, &kv.value)?;
            let first = chunk.first_partition;
            let corrupt = |reason: String| CorruptRecord {
                what: "partition chunk",
                key: String::from_utf8_lossy(&kv.key).into_owned(),
                reason,
            };
            if first != index as i32 * CHUNK_PARTITIONS {
                return Err(corrupt(format!("first partition {first} in chunk {index}")));
            }
            for (i, p) in chunk.partitions.into_iter().enumerate() {
                let slot = entry
                    .partitions
                    .get_mut(first as usize + i)
                    .ok_or_else(|| {
                        corrupt(format!(
                            "partition {} past the topic's count",
                            first as usize + i
                        ))
                    })?;
                *slot = p.into();
                *filled.entry(topic.to_owned()).or_default() += 1;
            }
        }
        for (name, entry) in &state.topics {
            let have = filled.get(name).copied().unwrap_or(0);
            if have != entry.partitions.len() {
                return Err(CorruptRecord {
                    what: "topic",
                    key: name.clone(),
                    reason: format!("{have} of {} partitions stored", entry.partitions.len()),
                });
            }
        }
        Ok((state, report))
    }

    /// Live (unfenced) brokers sorted by id, as placement wants them.
    pub fn live_brokers(&self) -> Vec<BrokerMetadata> {
        self.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| BrokerMetadata {
                id: b.broker_id,
                rack: (!b.rack.is_empty()).then(|| b.rack.clone()),
            })
            .collect()
    }

    /// True when broker `id` is registered and not fenced.
    pub fn is_live(&self, id: i32) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// Validate a creation and plan it. `Ok(None)` means the topic already
    /// exists with the same (non-empty) request id: a retry of a creation
    /// that succeeded, answered with success and no write.
    pub fn plan_create_topic(
        &self,
        keys: &Keys,
        req: &CreateTopic,
        topic_id: String,
        rng: &mut JavaRandom,
    ) -> Result<Option<(TopicEntry, WritePlan)>, AdminError> {
        validate_topic_name(&req.name)?;
        if let Some(existing) = self.topics.get(&req.name) {
            if !req.request_id.is_empty() && existing.record.request_id == req.request_id {
                return Ok(None);
            }
            return Err(AdminError::TopicAlreadyExists(req.name.clone()));
        }
        if req.name == OFFSETS_TOPIC && !req.internal {
            return Err(TopicError::Reserved(req.name.clone()).into());
        }
        check_collision(&req.name, self.topics.keys().map(String::as_str))?;
        let config = TopicConfig::default().with_overrides(&req.configs)?;
        let replicas = if req.assignments.is_empty() {
            if req.partitions > MAX_PARTITIONS_PER_TOPIC {
                return Err(AdminError::InvalidPartitions(format!(
                    "Number of partitions {} exceeds the limit of {MAX_PARTITIONS_PER_TOPIC} per topic.",
                    req.partitions
                )));
            }
            let placed = ballast_assignor::assign_replicas_to_brokers(PlacementRequest {
                brokers: &self.live_brokers(),
                partitions: req.partitions,
                replication_factor: req.replication_factor,
                start_index: StartIndex::Random(rng),
                start_partition_id: 0,
            })?;
            placed.iter().map(|(_, r)| r.to_vec()).collect()
        } else {
            if req.partitions != 0 || req.replication_factor != 0 {
                return Err(AdminError::InvalidRequest(
                    "A manual partition assignment was specified, but partitions and replication factor were not left unset (0).".into(),
                ));
            }
            self.validate_assignments(&req.assignments, None)?;
            req.assignments.clone()
        };
        let partitions: Vec<PartitionState> =
            replicas.into_iter().map(PartitionState::new).collect();
        let count = partitions.len() as i32;
        let chunks = chunk_of(count - 1) + 1;
        let record = TopicRecord {
            name: req.name.clone(),
            topic_id,
            partitions: count,
            replication_factor: partitions.first().map_or(0, |p| p.replicas.len() as i32),
            configs: req.configs.clone().into_iter().collect(),
            state: TopicState::Active as i32,
            request_id: req.request_id.clone(),
            internal: req.internal,
            chunks,
        };
        let entry = TopicEntry {
            record,
            config,
            partitions,
        };
        let mut plan = WritePlan::default();
        for c in 0..chunks {
            plan.prepare.push(TxnOp::put(
                keys.chunk(&req.name, c),
                chunk_bytes(&entry.partitions, c),
            ));
        }
        plan.final_ops.push(TxnOp::put(
            keys.topic(&req.name),
            entry.record.encode_to_vec(),
        ));
        plan.final_guard
            .push(crate::store::Compare::absent(keys.topic(&req.name)));
        Ok(Some((entry, plan)))
    }

    /// Kafka's manual assignment rules (messages from its
    /// ReplicationControlManager). `rf` fixes the replication factor when
    /// adding partitions to a topic.
    fn validate_assignments(
        &self,
        assignments: &[Vec<i32>],
        rf: Option<usize>,
    ) -> Result<(), AdminError> {
        let bad = |m: String| Err(AdminError::InvalidReplicaAssignment(m));
        let mut expected = rf;
        for a in assignments {
            if a.is_empty() {
                return bad(
                    "The manual partition assignment includes an empty replica list.".into(),
                );
            }
            for (i, b) in a.iter().enumerate() {
                if a[..i].contains(b) {
                    return bad(format!(
                        "The manual partition assignment includes the broker {b} more than once."
                    ));
                }
                if !self.brokers.contains_key(b) {
                    return bad(format!(
                        "The manual partition assignment includes broker {b}, but no such broker is registered."
                    ));
                }
            }
            match expected {
                Some(rf) if rf != a.len() => {
                    return bad(format!(
                        "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {rf} replica(s).",
                        a.len()
                    ));
                }
                _ => expected = Some(a.len()),
            }
        }
        Ok(())
    }

    /// Plan growing `topic` to `total` partitions, continuing Kafka's
    /// placement from the start partition id (or with explicit lists for the
    /// new partitions).
    pub fn plan_add_partitions(
        &self,
        keys: &Keys,
        topic: &str,
        total: i32,
        assignments: &[Vec<i32>],
    ) -> Result<(TopicEntry, WritePlan), AdminError> {
        let entry = self
            .topics
            .get(topic)
            .ok_or_else(|| AdminError::UnknownTopic(topic.to_owned()))?;
        let current = entry.partitions.len() as i32;
        if entry.record.internal {
            return Err(AdminError::InvalidPartitions(format!(
                "The partition count of the internal topic {topic} is fixed: group coordinators are chosen by hash modulo this count."
            )));
        }
        if total <= current {
            return Err(AdminError::InvalidPartitions(format!(
                "Topic currently has {current} partitions, which is higher than the requested {total}."
            )));
        }
        if total > MAX_PARTITIONS_PER_TOPIC {
            return Err(AdminError::InvalidPartitions(format!(
                "Number of partitions {total} exceeds the limit of {MAX_PARTITIONS_PER_TOPIC} per topic."
            )));
        }
        let added = total - current;
        let rf = entry.record.replication_factor;
        let new_replicas: Vec<Vec<i32>> = if assignments.is_empty() {
            // Kafka's AdminZkClient.createPartitions: a fixed start index
            // (which also fixes the follower shift) at the first broker, by
            // id, not below partition 0's preferred leader; partition ids
            // continue from the current count.
            let brokers = self.live_brokers();
            let first = entry.partitions.first().and_then(|p| p.replicas.first());
            let start = first
                .and_then(|f| brokers.iter().position(|b| b.id >= *f))
                .unwrap_or(0);
            let placed = ballast_assignor::assign_replicas_to_brokers(PlacementRequest {
                brokers: &brokers,
                partitions: added,
                replication_factor: rf,
                start_index: StartIndex::Fixed(u32::try_from(start).unwrap_or(0)),
                start_partition_id: current,
            })?;
            placed.iter().map(|(_, r)| r.to_vec()).collect()
        } else {
            if assignments.len() != added as usize {
                return Err(AdminError::InvalidReplicaAssignment(format!(
                    "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
                    assignments.len()
                )));
            }
            self.validate_assignments(assignments, Some(rf as usize))?;
            assignments.to_vec()
        };
        let mut next = TopicEntry::clone(entry);
        next.partitions
            .extend(new_replicas.into_iter().map(PartitionState::new));
        next.record.partitions = total;
        next.record.chunks = chunk_of(total - 1) + 1;
        let mut plan = WritePlan::default();
        // Rewrite the last existing chunk (it may have grown) and write new ones.
        for c in chunk_of(current - 1)..next.record.chunks {
            plan.final_ops.push(TxnOp::put(
                keys.chunk(topic, c),
                chunk_bytes(&next.partitions, c),
            ));
        }
        plan.final_ops
            .push(TxnOp::put(keys.topic(topic), next.record.encode_to_vec()));
        Ok((next, plan))
    }

    /// Plan deleting a topic: its record and every chunk, in one transaction.
    pub fn plan_delete_topic(&self, keys: &Keys, topic: &str) -> Result<WritePlan, AdminError> {
        let entry = self
            .topics
            .get(topic)
            .ok_or_else(|| AdminError::UnknownTopic(topic.to_owned()))?;
        if entry.record.internal {
            return Err(AdminError::InvalidRequest(format!(
                "Topic {topic} is internal and cannot be deleted."
            )));
        }
        Ok(WritePlan {
            prepare: Vec::new(),
            final_ops: vec![
                TxnOp::delete(keys.topic(topic)),
                TxnOp::delete_prefix(keys.partitions(topic)),
            ],
            final_guard: Vec::new(),
        })
    }

    /// The current states of `keys` (`None` for one that does not exist),
    /// in order.
    pub fn partition_states<'k>(
        &self,
        keys: impl Iterator<Item = &'k (String, i32)>,
    ) -> Vec<Option<PartitionState>> {
        keys.map(|(t, p)| {
            self.topics
                .get(t)
                .and_then(|e| e.partitions.get(usize::try_from(*p).ok()?))
                .cloned()
        })
        .collect()
    }

    /// Plan writing changed partition states: one put per touched chunk.
    /// `changes` maps (topic, partition) to the new state.
    pub fn plan_partition_changes(
        &self,
        keys: &Keys,
        changes: &BTreeMap<(String, i32), PartitionState>,
    ) -> (BTreeMap<String, TopicEntry>, WritePlan) {
        let mut touched: BTreeMap<String, TopicEntry> = BTreeMap::new();
        for ((topic, p), s) in changes {
            let Some(entry) = self.topics.get(topic) else {
                continue;
            };
            let e = touched
                .entry(topic.clone())
                .or_insert_with(|| TopicEntry::clone(entry));
            if let Some(slot) = e.partitions.get_mut(*p as usize) {
                *slot = s.clone();
            }
        }
        let mut plan = WritePlan::default();
        for (topic, entry) in &touched {
            let mut chunks: Vec<u32> = changes
                .keys()
                .filter(|(t, _)| t == topic)
                .map(|(_, p)| chunk_of(*p))
                .collect();
            chunks.dedup();
            for c in chunks {
                plan.prepare.push(TxnOp::put(
                    keys.chunk(topic, c),
                    chunk_bytes(&entry.partitions, c),
                ));
            }
        }
        (touched, plan)
    }
}

fn chunk_bytes(partitions: &[PartitionState], chunk: u32) -> Vec<u8> {
    let start = chunk as usize * CHUNK_PARTITIONS as usize;
    let end = (start + CHUNK_PARTITIONS as usize).min(partitions.len());
    encode_chunk(start as i32, &partitions[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: i32, rack: &str) -> BrokerRecord {
        BrokerRecord {
            broker_id: id,
            rack: rack.into(),
            ..Default::default()
        }
    }

    fn state(n: i32) -> ClusterState {
        let mut s = ClusterState::default();
        for i in 1..=n {
            s.brokers.insert(i, broker(i, ""));
        }
        s
    }

    fn create(name: &str, partitions: i32, rf: i32) -> CreateTopic {
        CreateTopic {
            name: name.into(),
            partitions,
            replication_factor: rf,
            ..Default::default()
        }
    }

    fn kv(key: Vec<u8>, value: Vec<u8>) -> KeyValue {
        KeyValue {
            key,
            value,
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease: 0,
        }
    }

    /// Apply a plan's puts to a fake key space and load it back.
    fn round_trip(keys: &Keys, plans: &[&WritePlan], base: &ClusterState) -> ClusterState {
        let mut space: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        for b in base.brokers.values() {
            space.insert(keys.broker(b.broker_id), b.encode_to_vec());
        }
        for plan in plans {
            for op in plan.prepare.iter().chain(&plan.final_ops) {
                if let TxnOp::Put { key, value, .. } = op {
                    space.insert(key.clone(), value.clone());
                }
            }
        }
        let pick = |prefix: Vec<u8>| -> Vec<KeyValue> {
            space
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(k, v)| kv(k.clone(), v.clone()))
                .collect()
        };
        let (s, report) = ClusterState::load(
            keys,
            &pick(keys.brokers()),
            &pick(keys.topics()),
            &pick(keys.all_partitions()),
        )
        .unwrap();
        assert!(report.orphan_chunks.is_empty());
        s
    }

    #[test]
    fn create_places_like_kafka_and_round_trips() {
        let keys = Keys::new("t");
        let s = state(5);
        let mut rng = JavaRandom::new(42);
        let (entry, plan) = s
            .plan_create_topic(&keys, &create("orders", 2500, 3), "id1".into(), &mut rng)
            .unwrap()
            .unwrap();
        // Seed 42 over 5 brokers: start index 0, shift 3 (java.util.Random).
        assert_eq!(entry.partitions[0].replicas, vec![1, 5, 2]);
        assert_eq!(entry.partitions[0].leader, 1);
        assert_eq!(entry.record.chunks, 3);
        assert_eq!(plan.prepare.len(), 3);
        let mut after = s.clone();
        after
            .topics
            .insert("orders".into(), Arc::new(entry.clone()));
        assert_eq!(round_trip(&keys, &[&plan], &s), after);
    }

    #[test]
    fn create_refusals() {
        let keys = Keys::new("t");
        let mut s = state(3);
        let mut rng = JavaRandom::new(1);
        let err = |s: &ClusterState, c: CreateTopic| {
            s.plan_create_topic(&keys, &c, "x".into(), &mut JavaRandom::new(1))
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(
            err(&s, create("t", 3, 4)),
            Some("Replication factor: 4 larger than available brokers: 3.".into())
        );
        assert_eq!(
            err(&s, create("t", 0, 1)),
            Some("Number of partitions must be larger than 0.".into())
        );
        assert!(err(&s, create("bad name", 1, 1)).is_some());
        assert!(err(&s, create(OFFSETS_TOPIC, 1, 1)).is_some());
        let (e, _) = s
            .plan_create_topic(
                &keys,
                &CreateTopic {
                    request_id: "r1".into(),
                    ..create("a.b", 1, 1)
                },
                "i".into(),
                &mut rng,
            )
            .unwrap()
            .unwrap();
        s.topics.insert("a.b".into(), Arc::new(e));
        assert_eq!(
            err(&s, create("a.b", 1, 1)),
            Some("Topic 'a.b' already exists.".into())
        );
        assert_eq!(
            err(&s, create("a_b", 1, 1)),
            Some("Topic 'a_b' collides with existing topic: a.b".into())
        );
        // A retry with the same request id is a success with nothing to write.
        let retry = CreateTopic {
            request_id: "r1".into(),
            ..create("a.b", 1, 1)
        };
        assert!(
            s.plan_create_topic(&keys, &retry, "i".into(), &mut rng)
                .unwrap()
                .is_none()
        );

        let manual = |a: Vec<Vec<i32>>| CreateTopic {
            assignments: a,
            ..create("m", 0, 0)
        };
        assert_eq!(
            err(&s, manual(vec![vec![1, 2], vec![2]])),
            Some("The manual partition assignment includes a partition with 1 replica(s), but this is not consistent with previous partitions, which have 2 replica(s).".into())
        );
        assert!(
            err(&s, manual(vec![vec![1, 1]]))
                .unwrap()
                .contains("more than once")
        );
        assert!(
            err(&s, manual(vec![vec![9]]))
                .unwrap()
                .contains("no such broker is registered")
        );
        assert!(
            err(&s, manual(vec![vec![]]))
                .unwrap()
                .contains("empty replica list")
        );
        assert!(
            err(
                &s,
                CreateTopic {
                    assignments: vec![vec![1]],
                    ..create("m", 1, 0)
                }
            )
            .is_some()
        );
        assert!(
            err(&s, create("big", MAX_PARTITIONS_PER_TOPIC + 1, 1))
                .unwrap()
                .contains("exceeds the limit")
        );
        let cfg = CreateTopic {
            configs: [("retention.ms".to_string(), "-5".to_string())]
                .into_iter()
                .collect(),
            ..create("c", 1, 1)
        };
        assert!(err(&s, cfg).unwrap().contains("retention.ms"));
    }

    #[test]
    fn the_offsets_topic_cannot_grow_or_be_deleted() {
        let keys = Keys::new("t");
        let mut s = state(3);
        let mut rng = JavaRandom::new(7);
        let req = CreateTopic {
            internal: true,
            ..create(OFFSETS_TOPIC, 50, 3)
        };
        let (e, _) = s
            .plan_create_topic(&keys, &req, "offsets".into(), &mut rng)
            .unwrap()
            .unwrap();
        s.topics.insert(OFFSETS_TOPIC.into(), Arc::new(e));
        match s.plan_add_partitions(&keys, OFFSETS_TOPIC, 60, &[]) {
            Err(AdminError::InvalidPartitions(m)) => {
                assert!(m.contains("fixed") && m.contains(OFFSETS_TOPIC), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert!(s.plan_delete_topic(&keys, OFFSETS_TOPIC).is_err());
        // A client cannot create it either.
        assert!(
            s.plan_create_topic(&keys, &create(OFFSETS_TOPIC, 50, 3), "x".into(), &mut rng)
                .is_err()
        );
    }

    #[test]
    fn add_partitions_continues_placement() {
        let keys = Keys::new("t");
        let s0 = state(4);
        let mut rng = JavaRandom::new(7);
        let (e, p1) = s0
            .plan_create_topic(&keys, &create("t", 999, 2), "id".into(), &mut rng)
            .unwrap()
            .unwrap();
        let mut s = s0.clone();
        s.topics.insert("t".into(), Arc::new(e));
        let (grown, p2) = s.plan_add_partitions(&keys, "t", 1003, &[]).unwrap();
        assert_eq!(grown.partitions.len(), 1003);
        assert_eq!(grown.record.chunks, 2);
        // Exactly Kafka's: fixed start at partition 0's preferred leader
        // (brokers by id), partition ids continuing at 999.
        let brokers = s.live_brokers();
        let lead = s.topics["t"].partitions[0].replicas[0];
        let start = brokers.iter().position(|b| b.id >= lead).unwrap() as u32;
        let want = ballast_assignor::assign_replicas_to_brokers(PlacementRequest {
            brokers: &brokers,
            partitions: 4,
            replication_factor: 2,
            start_index: StartIndex::Fixed(start),
            start_partition_id: 999,
        })
        .unwrap();
        let got: Vec<Vec<i32>> = grown.partitions[999..]
            .iter()
            .map(|p| p.replicas.clone())
            .collect();
        let want: Vec<Vec<i32>> = want.iter().map(|(_, r)| r.to_vec()).collect();
        assert_eq!(got, want);
        assert!(
            grown.partitions[999..]
                .iter()
                .all(|p| p.replicas.len() == 2)
        );
        let mut expect = s.clone();
        expect.topics.insert("t".into(), Arc::new(grown));
        assert_eq!(round_trip(&keys, &[&p1, &p2], &s0), expect);
        assert!(s.plan_add_partitions(&keys, "t", 999, &[]).is_err());
        assert!(s.plan_add_partitions(&keys, "nope", 2000, &[]).is_err());
        assert!(
            s.plan_add_partitions(&keys, "t", 1000, &[vec![1, 2, 3]])
                .is_err()
        );
        assert!(
            s.plan_add_partitions(&keys, "t", 1000, &[vec![1, 2]])
                .is_ok()
        );
    }

    #[test]
    fn load_reports_orphans_and_refuses_gaps() {
        let keys = Keys::new("t");
        let s = state(2);
        let (e, plan) = s
            .plan_create_topic(
                &keys,
                &create("t", 10, 2),
                "id".into(),
                &mut JavaRandom::new(3),
            )
            .unwrap()
            .unwrap();
        let topic = kv(keys.topic("t"), e.record.encode_to_vec());
        let chunk = match &plan.prepare[0] {
            TxnOp::Put { key, value, .. } => kv(key.clone(), value.clone()),
            _ => unreachable!(),
        };
        let orphan = kv(keys.chunk("gone", 0), chunk.value.clone());
        let (_, report) = ClusterState::load(
            &keys,
            &[],
            std::slice::from_ref(&topic),
            &[chunk.clone(), orphan],
        )
        .unwrap();
        assert_eq!(report.orphan_chunks, vec![keys.chunk("gone", 0)]);
        // A topic whose chunks are missing is corrupt, not silently empty.
        assert!(ClusterState::load(&keys, &[], &[topic], &[]).is_err());
    }
}
