//! gRPC requests as protobuf bytes: `[kind][message...]`. The first byte
//! picks the request type (modulo [`KINDS`]), prost decodes the rest as
//! that message, and the decoded request goes through the code the server
//! runs on it before acting:
//!
//! * coordinator (Admin): the planners the handlers call, against a fixed
//!   snapshot of three brokers and two topics (`ClusterState::
//!   plan_create_topic` / `plan_add_partitions` / `plan_delete_topic`,
//!   `term::plan_preferred_election`, `term::plan_reassignment`,
//!   `assignor::coordinator_partition`), the request turned into the
//!   planner's input by the handlers' own functions
//!   (`service::create_topic_request`, `service::replica_lists`);
//! * group coordinator (Group): `Shard::heartbeat`, `commit_offsets`,
//!   `fetch_offsets`, `describe_group`, `delete_group`, on a shard holding
//!   one stable group;
//! * agent (Data): Produce through the request-level checks of
//!   `produce_inner` (size, acks; restated here, private to
//!   `broker-agent/src/data.rs`) and the agent's own batch gate
//!   `ballast_broker_agent::validate_batches` ([`crate::agent_accepts`]); Fetch and
//!   ListOffsets decode only (their checks need a hosted partition).
//!
//! Each must end in a value or a named error. Checked where cheap: an
//! accepted CreateTopic has a name Kafka accepts (1..=249 of
//! `[a-zA-Z0-9._-]`, not `.` or `..`) and replica lists that are
//! non-empty, of one length, without repeats and on registered brokers;
//! an accepted AddPartitions grows the topic to exactly the total asked
//! for; an accepted reassignment targets only existing partitions.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use ballast_assignor::JavaRandom;
use ballast_coordinator::keys::Keys;
use ballast_coordinator::partition::PartitionState;
use ballast_coordinator::service::{create_topic_request, replica_lists};
use ballast_coordinator::state::{ClusterState, CreateTopic, TopicEntry};
use ballast_coordinator::term::{plan_preferred_election, plan_reassignment};
use ballast_group::{GroupConfig, Shard};
use ballast_proto::v1::{self as pb, metadata::BrokerRecord};
use prost::Message;

/// Request types, in the order of the first byte.
pub const KINDS: [&str; 16] = [
    "CreateTopic",
    "DeleteTopic",
    "AddPartitions",
    "ElectPreferredLeaders",
    "ExecuteReassignment",
    "FindCoordinatorPartition",
    "DescribeTopics",
    "Produce",
    "Fetch",
    "ListOffsets",
    "GroupHeartbeat",
    "CommitOffsets",
    "FetchOffsets",
    "DescribeGroup",
    "DeleteGroup",
    "ProposeBalance",
];

/// Largest partition count the fuzzer lets through to placement (the
/// coordinator allows 1,000,000; a request for that many is legitimate and
/// takes about a second, which would only slow the search down).
const FUZZ_MAX_PARTITIONS: i32 = 10_000;

/// Three brokers (1 and 3 on rack r1, 2 on r2; broker 3 fenced) and topics `orders` (3
/// partitions, rf 2) and `__consumer_offsets` (internal, 2 partitions).
fn snapshot() -> &'static ClusterState {
    static STATE: OnceLock<ClusterState> = OnceLock::new();
    STATE.get_or_init(|| {
        let mut s = ClusterState::default();
        for id in 1..=3 {
            s.brokers.insert(
                id,
                BrokerRecord {
                    broker_id: id,
                    rack: if id == 2 { "r2".into() } else { "r1".into() },
                    fenced: id == 3,
                    ..Default::default()
                },
            );
        }
        let keys = Keys::new("fuzz");
        let mut rng = JavaRandom::new(1);
        for (name, partitions, internal) in [("orders", 3, false), ("__consumer_offsets", 2, true)]
        {
            let req = CreateTopic {
                name: name.into(),
                partitions,
                replication_factor: 2,
                internal,
                ..Default::default()
            };
            let (mut entry, _) = s
                .plan_create_topic(&keys, &req, name.into(), &mut rng)
                .expect("valid topic")
                .expect("new topic");
            // A leader that is not the preferred one, for the election.
            if let Some(p) = entry.partitions.get_mut(1) {
                p.leader = p.replicas.get(1).copied().unwrap_or(p.leader);
            }
            s.topics.insert(name.into(), Arc::new(entry));
        }
        s
    })
}

/// A shard with group `g`: member `m` joined and subscribed to `orders`.
fn shard() -> &'static (Shard, HashMap<String, i32>) {
    static SHARD: OnceLock<(Shard, HashMap<String, i32>)> = OnceLock::new();
    SHARD.get_or_init(|| {
        let topics: HashMap<String, i32> = [("orders".to_string(), 3)].into_iter().collect();
        let mut shard = Shard::default();
        let join = pb::GroupHeartbeatRequest {
            group_id: "g".into(),
            member_id: "m".into(),
            member_epoch: 0,
            subscribed_topics: vec!["orders".into()],
            ..Default::default()
        };
        let out = shard
            .heartbeat(&join, &topics, &GroupConfig::default())
            .expect("a valid join");
        shard.apply(&out.records);
        (shard, topics)
    })
}

/// Kafka's topic name rule, restated independently of the coordinator.
pub fn kafka_topic_name_ok(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn assert_replica_lists(lists: &[Vec<i32>], state: &ClusterState, what: &str) {
    let rf = lists.first().map_or(0, Vec::len);
    for (p, r) in lists.iter().enumerate() {
        assert!(!r.is_empty(), "{what}: partition {p} has no replicas");
        assert_eq!(r.len(), rf, "{what}: partition {p} has another rf");
        for (i, b) in r.iter().enumerate() {
            assert!(!r[..i].contains(b), "{what}: partition {p} repeats {b}");
            assert!(
                state.brokers.contains_key(b),
                "{what}: partition {p} is on unknown broker {b}"
            );
        }
    }
}

fn replicas_of(entry: &TopicEntry) -> Vec<Vec<i32>> {
    entry
        .partitions
        .iter()
        .map(|p: &PartitionState| p.replicas.clone())
        .collect()
}

/// One fuzz input: see the module docs.
pub fn grpc_requests(data: &[u8]) {
    let [kind, bytes @ ..] = data else {
        return;
    };
    let state = snapshot();
    let keys = Keys::new("fuzz");
    // A decode error is a named error (prost::DecodeError): done.
    match usize::from(*kind) % KINDS.len() {
        0 => {
            let Ok(req) = pb::CreateTopicRequest::decode(bytes) else {
                return;
            };
            let (create, _validate_only) = create_topic_request(req);
            if create.assignments.is_empty() && create.partitions > FUZZ_MAX_PARTITIONS {
                return;
            }
            let mut rng = JavaRandom::new(7);
            if let Ok(planned) = state.plan_create_topic(&keys, &create, "id".into(), &mut rng) {
                let Some((entry, plan)) = planned else {
                    panic!("a retry answered for a topic that does not exist");
                };
                assert!(
                    kafka_topic_name_ok(&create.name),
                    "accepted the topic name {:?}",
                    create.name
                );
                assert!(!entry.partitions.is_empty(), "accepted no partitions");
                assert_eq!(entry.record.partitions as usize, entry.partitions.len());
                assert_replica_lists(&replicas_of(&entry), state, "CreateTopic");
                assert!(!plan.final_ops.is_empty());
            }
        }
        1 => {
            let Ok(req) = pb::DeleteTopicRequest::decode(bytes) else {
                return;
            };
            if state.plan_delete_topic(&keys, &req.name).is_ok() {
                assert_eq!(req.name, "orders", "deleted a topic that is not deletable");
            }
        }
        2 => {
            let Ok(req) = pb::AddPartitionsRequest::decode(bytes) else {
                return;
            };
            let assignments = replica_lists(&req.assignments);
            if assignments.is_empty() && req.total_partitions > FUZZ_MAX_PARTITIONS {
                return;
            }
            if let Ok((next, _plan)) =
                state.plan_add_partitions(&keys, &req.name, req.total_partitions, &assignments)
            {
                assert_eq!(
                    next.partitions.len() as i64,
                    i64::from(req.total_partitions)
                );
                assert_replica_lists(&replicas_of(&next), state, "AddPartitions");
            }
        }
        3 => {
            let Ok(req) = pb::ElectPreferredLeadersRequest::decode(bytes) else {
                return;
            };
            let topic = (!req.topic.is_empty()).then_some(req.topic.as_str());
            if let Ok((changes, _, _)) = plan_preferred_election(state, topic, None) {
                for ((t, _), s) in &changes {
                    assert!(topic.is_none_or(|w| w == t));
                    assert_eq!(s.replicas.first(), Some(&s.leader));
                }
            }
        }
        4 => {
            let Ok(req) = pb::ExecuteReassignmentRequest::decode(bytes) else {
                return;
            };
            if let Ok((r, _, response)) = plan_reassignment(state, &req, 5, 50) {
                assert_eq!(r.targets.len(), req.partitions.len());
                for t in &r.targets {
                    let exists = state.topics.get(&t.topic).is_some_and(|e| {
                        usize::try_from(t.partition).is_ok_and(|p| p < e.partitions.len())
                    });
                    assert!(
                        exists,
                        "a plan for {}-{} was accepted",
                        t.topic, t.partition
                    );
                }
                assert_eq!(
                    (response.partitions + response.unchanged) as usize,
                    r.targets.len()
                );
            }
        }
        5 => {
            let Ok(req) = pb::FindCoordinatorPartitionRequest::decode(bytes) else {
                return;
            };
            let n = if req.offsets_partitions == 0 {
                50
            } else {
                req.offsets_partitions
            };
            if let Ok(p) = ballast_assignor::coordinator_partition(&req.group_id, n) {
                assert!((0..n).contains(&p), "partition {p} of {n}");
            }
        }
        6 => {
            let Ok(req) = pb::DescribeTopicsRequest::decode(bytes) else {
                return;
            };
            let filter =
                pb::PartitionFilter::try_from(req.filter).unwrap_or(pb::PartitionFilter::All);
            for name in &req.names {
                if let Some(t) = state.topics.get(name) {
                    let d = ballast_coordinator::service::describe_topic(t, filter);
                    assert_eq!(&d.name, name);
                }
            }
        }
        7 => {
            let Ok(req) = pb::ProduceRequest::decode(bytes) else {
                return;
            };
            // produce_inner's request-level refusals (restated: private to
            // data.rs), then each partition's batch gate (the agent's own).
            let size: usize = req.partitions.iter().map(|p| p.records.len()).sum();
            if size > 64 << 20 || !matches!(req.acks, -1..=1) {
                return;
            }
            let max = ballast_broker_agent::log::LogConfig::default().max_message_bytes;
            for p in &req.partitions {
                let _ = crate::agent_accepts(&p.records, max);
            }
        }
        8 => {
            let _ = pb::FetchRequest::decode(bytes);
        }
        9 => {
            let _ = pb::ListOffsetsRequest::decode(bytes);
        }
        10 => {
            let Ok(req) = pb::GroupHeartbeatRequest::decode(bytes) else {
                return;
            };
            let (shard, topics) = shard();
            if let Ok(out) = shard.heartbeat(&req, topics, &GroupConfig::default()) {
                let mut next = shard.clone();
                next.apply(&out.records);
            }
        }
        11 => {
            let Ok(req) = pb::CommitOffsetsRequest::decode(bytes) else {
                return;
            };
            let (shard, _) = shard();
            if let Ok(out) = shard.commit_offsets(&req, 1_000, &GroupConfig::default()) {
                let mut next = shard.clone();
                next.apply(&out.records);
            }
        }
        12 => {
            let Ok(req) = pb::FetchOffsetsRequest::decode(bytes) else {
                return;
            };
            let _ = shard().0.fetch_offsets(&req);
        }
        13 => {
            let Ok(req) = pb::DescribeGroupRequest::decode(bytes) else {
                return;
            };
            let _ = shard().0.describe_group(&req.group_id, 1);
        }
        14 => {
            let Ok(req) = pb::DeleteGroupRequest::decode(bytes) else {
                return;
            };
            if let Ok(out) = shard().0.delete_group(&req.group_id) {
                let mut next = shard().0.clone();
                next.apply(&out.records);
            }
        }
        _ => {
            // ProposeBalance's planning runs on a blocking thread over the
            // whole cluster: decode only.
            let _ = pb::ProposeBalanceRequest::decode(bytes);
        }
    }
}
