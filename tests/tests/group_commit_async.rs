//! `GroupConsumer::commit_async` against a real cluster (etcd, a
//! coordinator, one agent).
//!
//! A member without auto-commit reads every record of a two-partition
//! topic and calls `commit_async`, which returns at once; the
//! acknowledgement reaches the listener's `on_committed` from a later
//! `poll`, and the committed offsets are what the coordinator's
//! FetchOffsets and `ballast groups describe` show. A second `commit_async`
//! is followed directly by `close`, with no poll in between: `close` waits
//! for it and reports it (`on_committed` has been called by the time
//! `close` returns; only `poll` and `close` report async commits), and the
//! offsets are committed. With auto-commit off, `close` commits nothing of
//! its own, so those offsets came from the async commit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballast_client::producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use ballast_client::{
    CommitEvent, ConsumerConfig, GroupConfig, GroupConsumer, GroupError, OffsetReset,
    RebalanceListener, TopicPartition,
};
use ballast_proto::v1 as pb;
use ballast_tests::cluster::{
    committed_offsets, find_active, group_coordinator, on_active, start_agent, start_coordinator,
    wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{eventually, run_ballast};

const WAIT: Duration = Duration::from_secs(60);
const GROUP: &str = "invoicing";
const TOPIC: &str = "invoices";

/// What the listener was told about commits, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Told {
    Committed(Vec<(TopicPartition, i64)>),
    Failed(String),
}

struct Recorder(Arc<Mutex<Vec<Told>>>);

impl RebalanceListener for Recorder {
    fn on_committed(&mut self, e: &CommitEvent) {
        self.0
            .lock()
            .unwrap()
            .push(Told::Committed(e.offsets.clone()));
    }
    fn on_commit_failed(&mut self, e: &GroupError) {
        self.0.lock().unwrap().push(Told::Failed(e.to_string()));
    }
}

async fn produce(bootstrap: &str, partition: i32, n: usize) {
    let p = Producer::connect(
        vec![bootstrap.to_owned()],
        ProducerConfig {
            acks: Acks::All,
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..n {
        p.send(ProducerRecord {
            partition: Some(partition),
            ..ProducerRecord::new(TOPIC, format!("i{partition}-{i}").into_bytes())
        })
        .await
        .unwrap();
    }
}

/// Polls until the member's positions are `want` (partition -> offset).
async fn read_up_to(member: &mut GroupConsumer, want: &BTreeMap<i32, i64>) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let at: BTreeMap<i32, i64> = want
            .keys()
            .filter_map(|p| Some((*p, member.consumer().position(TOPIC, *p)?)))
            .collect();
        if &at == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "positions {at:?}, want {want:?}"
        );
        member.poll(Duration::from_millis(200)).await.unwrap();
    }
}

/// The group's committed offsets of TOPIC from its coordinator.
async fn fetched(bootstrap: &str) -> BTreeMap<i32, i64> {
    let agents = [bootstrap.to_owned()];
    let (_, coord) = eventually("the coordinator", WAIT, || {
        group_coordinator(&agents, GROUP)
    })
    .await;
    committed_offsets(&coord, GROUP)
        .await
        .unwrap()
        .into_iter()
        .filter(|((t, _), _)| t == TOPIC)
        .map(|((_, p), (o, _))| (p, o))
        .collect()
}

/// (partition, committed offset) from `ballast groups describe`.
fn described(bootstrap: &str) -> BTreeMap<i64, i64> {
    let out = run_ballast(&[
        "groups",
        "describe",
        GROUP,
        "--format",
        "json",
        "--bootstrap",
        bootstrap,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().unwrap(),
                p["committed_offset"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_commits_are_acknowledged_visible_and_awaited_by_close() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator(&etcd.endpoints(), "groups-async");
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = start_agent(
        &addrs[0],
        1,
        &dir.path().join("b1"),
        &["--group-heartbeat-interval", "200ms"],
    );
    let b = agent.address().to_owned();
    wait_live_brokers(&addrs, 1, WAIT).await;
    on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: TOPIC.into(),
            partitions: 2,
            replication_factor: 1,
            request_id: "invoices-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap();
    produce(&b, 0, 10).await;
    produce(&b, 1, 6).await;

    let told: Arc<Mutex<Vec<Told>>> = Arc::default();
    let mut member = GroupConsumer::connect(
        vec![b.clone()],
        ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            max_wait: Duration::from_millis(100),
            ..ConsumerConfig::default()
        },
        GroupConfig {
            auto_commit: false,
            ..GroupConfig::new(GROUP)
        },
    )
    .unwrap();
    member.set_listener(Box::new(Recorder(told.clone())));
    member.subscribe(&[TOPIC.to_owned()]).unwrap();
    read_up_to(&mut member, &[(0, 10), (1, 6)].into()).await;
    assert!(told.lock().unwrap().is_empty(), "no auto-commit");

    // Acknowledged, and reported by a later poll.
    member.commit_async().unwrap();
    let first = Told::Committed(vec![
        (TopicPartition::new(TOPIC, 0), 10),
        (TopicPartition::new(TOPIC, 1), 6),
    ]);
    let deadline = std::time::Instant::now() + WAIT;
    while told.lock().unwrap().is_empty() {
        assert!(std::time::Instant::now() < deadline, "never acknowledged");
        member.poll(Duration::from_millis(100)).await.unwrap();
    }
    assert_eq!(*told.lock().unwrap(), vec![first.clone()]);
    // Visible through FetchOffsets and describe (the member still in the
    // group).
    assert_eq!(fetched(&b).await, [(0, 10), (1, 6)].into());
    assert_eq!(described(&b), [(0, 10), (1, 6)].into());

    // commit_async, then close at once: close reports it before returning.
    produce(&b, 1, 4).await;
    read_up_to(&mut member, &[(0, 10), (1, 10)].into()).await;
    member.commit_async().unwrap();
    member.close().await.unwrap();
    assert_eq!(
        *told.lock().unwrap(),
        vec![
            first,
            Told::Committed(vec![
                (TopicPartition::new(TOPIC, 0), 10),
                (TopicPartition::new(TOPIC, 1), 10),
            ]),
        ],
        "close reports the outstanding async commit"
    );
    assert_eq!(fetched(&b).await, [(0, 10), (1, 10)].into());
    assert_eq!(described(&b), [(0, 10), (1, 10)].into());
}
