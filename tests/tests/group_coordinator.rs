//! The group coordinator over the raw Group protocol, with real processes:
//! etcd, a coordinator and three agents. Members (driven by the test, one
//! heartbeat at a time) find the coordinator through any agent, join, get
//! Kafka's range assignment, commit offsets with acks=all into
//! `__consumer_offsets`; then the agent hosting the coordinator is killed
//! with SIGKILL: the new leader of the offsets partition replays it, every
//! committed offset is there, and the members carry on at their epochs
//! without rejoining. Clients cannot write the offsets topic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ballast_proto::v1::data_client::DataClient;
use ballast_proto::v1::group_client::GroupClient;
use ballast_proto::v1::{self as pb, ErrorCode};
use ballast_tests::cluster::{
    channel, committed_offsets, find_active, group_coordinator, on_active, start_agent,
    start_coordinator, wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{BallastProcess, eventually};

const WAIT: Duration = Duration::from_secs(60);
const GROUP: &str = "billing";
const TOPIC: &str = "orders";

/// The coordinator of GROUP as some live agent reports it: (broker, address).
async fn coordinator(bootstrap: &[String]) -> Option<(i32, String)> {
    group_coordinator(bootstrap, GROUP).await
}

#[derive(Debug, Clone)]
struct Member {
    id: String,
    epoch: i32,
    owned: Vec<pb::TopicPartitions>,
}

impl Member {
    fn new(id: &str) -> Self {
        Member {
            id: id.into(),
            epoch: 0,
            owned: Vec::new(),
        }
    }

    /// One heartbeat to `address`; adopts the answer. Returns the error
    /// code.
    async fn beat(&mut self, address: &str) -> i32 {
        let mut c = GroupClient::new(channel(address));
        let req = pb::GroupHeartbeatRequest {
            group_id: GROUP.into(),
            member_id: self.id.clone(),
            member_epoch: self.epoch,
            instance_id: String::new(),
            rebalance_timeout_ms: 30_000,
            session_timeout_ms: 20_000,
            subscribed_topics: vec![TOPIC.into()],
            owned: self.owned.clone(),
            client_id: "raw-test".into(),
        };
        match c.heartbeat(req).await {
            Ok(r) => {
                let r = r.into_inner();
                if r.error == ErrorCode::None as i32 {
                    self.epoch = r.member_epoch;
                    self.owned = r.assignment;
                }
                r.error
            }
            Err(_) => ErrorCode::CoordinatorNotAvailable as i32,
        }
    }

    fn partitions(&self) -> Vec<i32> {
        self.owned
            .iter()
            .filter(|t| t.topic == TOPIC)
            .flat_map(|t| t.partitions.clone())
            .collect()
    }
}

/// GROUP's committed (offset, leader epoch) by partition of TOPIC.
async fn committed(address: &str) -> Option<BTreeMap<i32, (i64, i32)>> {
    let all = committed_offsets(address, GROUP).await?;
    Some(all.into_iter().map(|((_, p), o)| (p, o)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_get_the_range_assignment_and_offsets_survive_coordinator_failover() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator_process = start_coordinator(&etcd.endpoints(), "groups1");
    let addrs = vec![coordinator_process.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dirs = tempfile::tempdir().unwrap();
    let data: Vec<PathBuf> = (1..=3)
        .map(|id| dirs.path().join(format!("b{id}")))
        .collect();
    let mut agents: BTreeMap<i32, BallastProcess> = (1..=3)
        .map(|id| (id, start_agent(&addrs[0], id, &data[id as usize - 1], &[])))
        .collect();
    let bootstrap: Vec<String> = agents.values().map(|a| a.address().to_owned()).collect();
    wait_live_brokers(&addrs, 3, WAIT).await;
    on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: TOPIC.into(),
            partitions: 6,
            replication_factor: 2,
            request_id: "orders-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap();

    // Three members join and converge on Kafka's range assignment:
    // m-a: 0,1  m-b: 2,3  m-c: 4,5 (members sorted by id). Until the
    // offsets partition's leader has applied its push and loaded, the
    // answers are the retriable NOT_COORDINATOR / LOAD_IN_PROGRESS /
    // NOT_AVAILABLE, and the members look the coordinator up again.
    let retriable = [
        ErrorCode::None as i32,
        ErrorCode::NotCoordinator as i32,
        ErrorCode::CoordinatorLoadInProgress as i32,
        ErrorCode::CoordinatorNotAvailable as i32,
    ];
    let mut members: Vec<Member> = ["m-a", "m-b", "m-c"]
        .iter()
        .map(|id| Member::new(id))
        .collect();
    let converged = eventually("range assignment", WAIT, || {
        let mut ms = members.clone();
        let bootstrap = bootstrap.clone();
        async move {
            let (_, coord) = coordinator(&bootstrap).await?;
            for m in &mut ms {
                let code = m.beat(&coord).await;
                assert!(retriable.contains(&code), "heartbeat refused: {code}");
            }
            let got: Vec<Vec<i32>> = ms.iter().map(Member::partitions).collect();
            (got == vec![vec![0, 1], vec![2, 3], vec![4, 5]]).then_some(ms)
        }
    })
    .await;
    members = converged;
    let (coord_id, coord) = coordinator(&bootstrap).await.unwrap();
    let epoch = members[0].epoch;
    assert!(members.iter().all(|m| m.epoch == epoch), "{members:?}");

    // Each member commits its partitions (acks=all into the offsets topic).
    for m in &members {
        let mut c = GroupClient::new(channel(&coord));
        let r = c
            .commit_offsets(pb::CommitOffsetsRequest {
                group_id: GROUP.into(),
                member_id: m.id.clone(),
                member_epoch: m.epoch,
                partitions: m
                    .partitions()
                    .iter()
                    .map(|&p| pb::CommitPartition {
                        topic: TOPIC.into(),
                        partition: p,
                        offset: 100 + i64::from(p),
                        leader_epoch: 0,
                        metadata: format!("by {}", m.id),
                    })
                    .collect(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.error, ErrorCode::None as i32, "{}", r.error_message);
        assert!(r.results.iter().all(|p| p.error == ErrorCode::None as i32));
    }
    let expected: BTreeMap<i32, (i64, i32)> =
        (0..6).map(|p| (p, (100 + i64::from(p), 0))).collect();
    assert_eq!(committed(&coord).await, Some(expected.clone()));

    // A non-coordinator refuses by name.
    let other = bootstrap.iter().find(|a| **a != coord).unwrap();
    let mut m = members[0].clone();
    assert_eq!(m.beat(other).await, ErrorCode::NotCoordinator as i32);

    // Clients cannot write the offsets topic.
    let mut d = DataClient::new(channel(&bootstrap[0]));
    let r = d
        .produce(pb::ProduceRequest {
            acks: 1,
            timeout_ms: 1000,
            partitions: vec![pb::ProducePartition {
                topic: "__consumer_offsets".into(),
                partition: 0,
                records: vec![1, 2, 3],
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.results[0].error, ErrorCode::InvalidTopic as i32);

    // SIGKILL the coordinator's agent: another replica of the offsets
    // partition takes over, replays it, and serves the same offsets.
    agents.get_mut(&coord_id).unwrap().kill();
    let live: Vec<String> = agents
        .iter()
        .filter(|(id, _)| **id != coord_id)
        .map(|(_, a)| a.address().to_owned())
        .collect();
    let (new_id, new_coord) = eventually("a new coordinator", WAIT, || {
        let live = live.clone();
        async move { coordinator(&live).await.filter(|(id, _)| *id != coord_id) }
    })
    .await;
    assert_ne!(new_id, coord_id);
    let after = eventually("offsets served by the new coordinator", WAIT, || {
        committed(&new_coord)
    })
    .await;
    assert_eq!(
        after, expected,
        "every committed offset survives the failover"
    );

    // The members keep their epochs: the new coordinator knows them.
    for m in &mut members {
        let before = m.epoch;
        let code = m.beat(&new_coord).await;
        assert_eq!(
            code,
            ErrorCode::None as i32,
            "member {} after failover",
            m.id
        );
        assert_eq!(m.epoch, before);
    }
    let got: Vec<Vec<i32>> = members.iter().map(Member::partitions).collect();
    assert_eq!(got, vec![vec![0, 1], vec![2, 3], vec![4, 5]]);
}
