//! KIP-320 end to end: a group member consumes and commits records that an
//! unclean leader election later throws away; the next member of the group
//! resumes where the committed epoch ends in the new leader's log, not at
//! the earliest or latest offset.
//!
//! Three agents; topic `t` lives on brokers 1 and 2 only (unclean election
//! allowed), `__consumer_offsets` on all three so the committed offset
//! survives while brokers 1 and 2 come and go.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ballast_client::consumer::ConsumerConfig;
use ballast_client::producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use ballast_client::{GroupConfig, GroupConsumer, OffsetReset};
use ballast_proto::v1::{self as pb};
use ballast_tests::cluster::{
    describe_partition, find_active, high_watermark, on_active, start_agent, start_coordinator,
    wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{BallastProcess, eventually};

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "t";
const GROUP: &str = "auditors";

async fn partition0(addrs: &[String]) -> pb::PartitionDescription {
    describe_partition(addrs, TOPIC, 0, WAIT).await
}

async fn produce(agent: &str, prefix: &str, n: usize) {
    let p = Producer::connect(
        vec![agent.to_owned()],
        ProducerConfig {
            acks: Acks::Leader,
            delivery_timeout: Duration::from_secs(30),
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..n {
        p.send(ProducerRecord::new(
            TOPIC,
            format!("{prefix}-{i}").into_bytes(),
        ))
        .await
        .unwrap();
    }
}

fn member(bootstrap: &[String], reset: OffsetReset) -> GroupConsumer {
    let mut group = GroupConfig::new(GROUP);
    group.session_timeout = Duration::from_secs(10);
    group.auto_commit = false;
    let mut m = GroupConsumer::connect(
        bootstrap.to_vec(),
        ConsumerConfig {
            auto_offset_reset: reset,
            ..Default::default()
        },
        group,
    )
    .unwrap();
    m.subscribe(&[TOPIC.to_owned()]).unwrap();
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_resumes_where_its_committed_epoch_ends_after_an_unclean_election() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator(&etcd.endpoints(), "kip320");
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dirs = tempfile::tempdir().unwrap();
    let data: Vec<PathBuf> = (1..=3)
        .map(|id| dirs.path().join(format!("b{id}")))
        .collect();
    let flags = [
        "--group-heartbeat-interval",
        "200ms",
        "--replica-lag-time-max",
        "1s",
    ];
    let mut agents: BTreeMap<i32, BallastProcess> = (1..=3)
        .map(|id| {
            (
                id,
                start_agent(&addrs[0], id, &data[id as usize - 1], &flags),
            )
        })
        .collect();
    wait_live_brokers(&addrs, 3, WAIT).await;
    on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: TOPIC.into(),
            assignments: vec![pb::ReplicaList {
                replicas: vec![1, 2],
            }],
            configs: [(
                "unclean.leader.election.enable".to_string(),
                "true".to_string(),
            )]
            .into_iter()
            .collect(),
            request_id: "t-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap();
    let one = agents[&1].address().to_owned();
    produce(&one, "shared", 20).await;
    eventually("both replicas hold the 20 records", WAIT, || async {
        (high_watermark(&one, TOPIC, 0).await? == 20 && partition0(&addrs).await.isr.len() == 2)
            .then_some(())
    })
    .await;

    // Broker 2 goes; broker 1 alone writes 10 more, which a member of the
    // group consumes and commits (offset 30, epoch 0).
    agents.get_mut(&2).unwrap().kill();
    eventually("the ISR shrinks to broker 1", WAIT, || async {
        (partition0(&addrs).await.isr == vec![1]).then_some(())
    })
    .await;
    produce(&one, "lost", 10).await;
    let live: Vec<String> = [1, 3]
        .iter()
        .map(|id| agents[id].address().to_owned())
        .collect();
    let mut first = member(&live, OffsetReset::Earliest);
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while seen.len() < 30 && std::time::Instant::now() < deadline {
        seen.extend(first.poll(Duration::from_millis(500)).await.unwrap());
    }
    assert_eq!(seen.len(), 30);
    assert_eq!(
        seen.last().map(|r| (r.offset, r.leader_epoch)),
        Some((29, 0))
    );
    first.commit_sync().await.unwrap();
    first.close().await.unwrap();

    // Broker 1 goes and broker 2 returns: the unclean election makes 2 the
    // leader at epoch 1 with only the 20 shared records; 5 new ones follow.
    agents.get_mut(&1).unwrap().kill();
    agents
        .get_mut(&2)
        .unwrap()
        .restart(Duration::from_secs(20))
        .unwrap();
    let two = agents[&2].address().to_owned();
    eventually("broker 2 leads by unclean election", WAIT, || async {
        (partition0(&addrs).await.leader == 2).then_some(())
    })
    .await;
    produce(&two, "new", 5).await;

    // The next member starts from the committed (30, epoch 0): epoch 0 ends
    // at 20 in the new leader's log, so it reads "new-0".."new-4" —
    // neither the earliest (0) nor the latest (25) offset.
    let live: Vec<String> = [2, 3]
        .iter()
        .map(|id| agents[id].address().to_owned())
        .collect();
    let mut next = member(&live, OffsetReset::Latest);
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while got.len() < 5 && std::time::Instant::now() < deadline {
        got.extend(next.poll(Duration::from_millis(500)).await.unwrap());
    }
    let read: Vec<(i64, String)> = got
        .iter()
        .map(|r| {
            (
                r.offset,
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    let expected: Vec<(i64, String)> = (0..5).map(|i| (20 + i, format!("new-{i}"))).collect();
    assert_eq!(read, expected);
    next.close().await.unwrap();
}
