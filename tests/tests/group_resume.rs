//! A new member resumes exactly at the committed offsets after the group's
//! coordinator failed over, with real processes: etcd, a coordinator and
//! three agents.
//!
//! A member (the client library's `GroupConsumer`, in this process) reads
//! every partition of a topic and commits a different offset K(p) on each
//! partition p, none of them 0 or the log end; it leaves. The agent that
//! coordinates the group, the leader of `__consumer_offsets` partition
//! `coordinator_partition(group, N)`, is killed with SIGKILL and records
//! are produced after the kill. Then a fresh `ballast consume --group`
//! process (no `--from-beginning`, so without committed offsets it would
//! start at the log end) joins the same group: the first record it prints
//! on every partition p is exactly K(p), and it reads every record from
//! there on without a gap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ballast_assignor::coordinator_partition;
use ballast_client::producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use ballast_client::{
    ConsumerConfig, GroupConfig, GroupConsumer, OffsetCommit, OffsetReset, TopicPartition,
};
use ballast_proto::v1 as pb;
use ballast_tests::cluster::{
    committed_offsets, describe_partition, find_active, group_coordinator, on_active, start_agent,
    start_coordinator, wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{BallastProcess, eventually, run_ballast};

const WAIT: Duration = Duration::from_secs(90);
const GROUP: &str = "settlement";
const TOPIC: &str = "payments";
const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// `--offsets-partitions` of the harness's coordinator (`cluster::FAST`).
const OFFSETS_PARTITIONS: i32 = 3;
/// Records per partition before the kill, and after it.
const BEFORE: i64 = 20;
const AFTER: i64 = 5;
/// The offset committed on each partition.
const COMMIT: [i64; 3] = [5, 12, 17];

async fn produce(bootstrap: &[String], tag: &str, n: i64) {
    let p = Producer::connect(
        bootstrap.to_vec(),
        ProducerConfig {
            acks: Acks::All,
            delivery_timeout: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..n {
        for partition in 0..3 {
            p.send(ProducerRecord {
                partition: Some(partition),
                ..ProducerRecord::new(TOPIC, format!("{tag}-{partition}-{i}").into_bytes())
            })
            .await
            .unwrap();
        }
    }
}

/// Reads until it has seen record K(p) - 1 on every partition, then commits
/// exactly K(p) with the leader epoch of that record, and leaves.
async fn commit_and_leave(bootstrap: &[String]) {
    let mut member = GroupConsumer::connect(
        bootstrap.to_vec(),
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
    member.subscribe(&[TOPIC.to_owned()]).unwrap();
    // Leader epoch of record K(p) - 1, per partition.
    let mut epochs: BTreeMap<i32, i32> = BTreeMap::new();
    let deadline = std::time::Instant::now() + WAIT;
    while epochs.len() < COMMIT.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first member never read up to the offsets to commit; saw {epochs:?}"
        );
        for r in member.poll(Duration::from_millis(200)).await.unwrap() {
            if r.offset == COMMIT[r.partition as usize] - 1 {
                epochs.insert(r.partition, r.leader_epoch);
            }
        }
    }
    let offsets: Vec<OffsetCommit> = epochs
        .iter()
        .map(|(p, epoch)| OffsetCommit {
            partition: TopicPartition::new(TOPIC, *p),
            offset: COMMIT[*p as usize],
            leader_epoch: Some(*epoch),
            metadata: String::new(),
        })
        .collect();
    let event = member.commit(offsets).await.unwrap();
    assert_eq!(event.offsets.len(), COMMIT.len(), "{event:?}");
    member.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_member_starts_at_the_committed_offsets_after_the_coordinator_is_killed() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator_process = start_coordinator(&etcd.endpoints(), "group-resume");
    let addrs = vec![coordinator_process.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dirs = tempfile::tempdir().unwrap();
    let flags = [
        "--group-heartbeat-interval",
        "200ms",
        "--replica-lag-time-max",
        "2s",
    ];
    let mut agents: BTreeMap<i32, BallastProcess> = (1..=3)
        .map(|id| {
            let dir = dirs.path().join(format!("b{id}"));
            (id, start_agent(&addrs[0], id, &dir, &flags))
        })
        .collect();
    let bootstrap: Vec<String> = agents.values().map(|a| a.address().to_owned()).collect();
    wait_live_brokers(&addrs, 3, WAIT).await;
    on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: TOPIC.into(),
            partitions: 3,
            replication_factor: 3,
            configs: [("min.insync.replicas".to_string(), "2".to_string())]
                .into_iter()
                .collect(),
            request_id: "payments-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap();
    produce(&bootstrap, "before", BEFORE).await;

    commit_and_leave(&bootstrap).await;

    // The coordinator is the leader of the group's offsets partition.
    let index = coordinator_partition(GROUP, OFFSETS_PARTITIONS).unwrap();
    let (coord_id, coord) = eventually("the group's coordinator", WAIT, || {
        group_coordinator(&bootstrap, GROUP)
    })
    .await;
    let leader = describe_partition(&addrs, OFFSETS_TOPIC, index, WAIT)
        .await
        .leader;
    assert_eq!(
        coord_id, leader,
        "the coordinator of {GROUP} is the leader of {OFFSETS_TOPIC}-{index}"
    );
    let want: BTreeMap<(String, i32), i64> = (0..3)
        .map(|p| ((TOPIC.to_owned(), p), COMMIT[p as usize]))
        .collect();
    let before: BTreeMap<(String, i32), i64> = committed_offsets(&coord, GROUP)
        .await
        .unwrap()
        .into_iter()
        .map(|(tp, (o, _))| (tp, o))
        .collect();
    assert_eq!(before, want, "committed before the kill");

    agents.get_mut(&coord_id).unwrap().kill();
    let live: Vec<String> = agents
        .iter()
        .filter(|(id, _)| **id != coord_id)
        .map(|(_, a)| a.address().to_owned())
        .collect();
    // Records written after the failover: a member that lost the committed
    // offsets would start at one of these (the log end) or at 0.
    produce(&live, "after", AFTER).await;
    eventually("a new coordinator", WAIT, || {
        let live = live.clone();
        async move {
            group_coordinator(&live, GROUP)
                .await
                .filter(|(id, _)| *id != coord_id)
        }
    })
    .await;

    // A fresh member process, not --from-beginning.
    let expected_records: i64 = COMMIT.iter().map(|k| BEFORE + AFTER - k).sum();
    let max = expected_records.to_string();
    let bootstrap_flag = live.join(",");
    let out = run_ballast(&[
        "consume",
        "--group",
        GROUP,
        "--topic",
        TOPIC,
        "--print-offset",
        "--max-messages",
        &max,
        "--timeout-ms",
        "30000",
        "--bootstrap",
        &bootstrap_flag,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the new member failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `payments:P:O\tvalue`, in the order printed.
    let mut first: BTreeMap<i32, i64> = BTreeMap::new();
    let mut seen: BTreeMap<i32, BTreeSet<i64>> = BTreeMap::new();
    for line in stdout.lines() {
        let head = line.split('\t').next().unwrap_or_default();
        let mut parts = head.rsplitn(3, ':');
        let (Some(o), Some(p), Some(t)) = (parts.next(), parts.next(), parts.next()) else {
            panic!("unexpected line {line:?}");
        };
        assert_eq!(t, TOPIC, "{line:?}");
        let (p, o): (i32, i64) = (p.parse().unwrap(), o.parse().unwrap());
        first.entry(p).or_insert(o);
        seen.entry(p).or_default().insert(o);
    }
    let want_first: BTreeMap<i32, i64> = (0..3).map(|p| (p, COMMIT[p as usize])).collect();
    assert_eq!(
        first, want_first,
        "the new member's first record per partition is the committed offset\n{stdout}"
    );
    for (p, offsets) in &seen {
        let want: BTreeSet<i64> = (COMMIT[*p as usize]..BEFORE + AFTER).collect();
        assert_eq!(offsets, &want, "partition {p}: every record from K on");
    }
}
