//! A group coordinator answers COORDINATOR_LOAD_IN_PROGRESS while it
//! replays its offsets partition, with real processes: etcd, a coordinator
//! (one `__consumer_offsets` partition) and one agent.
//!
//! Nothing is held artificially: the offsets partition is made large with
//! real admin commits (many partitions per commit, each a record), then the
//! agent is killed with SIGKILL and started again on the same data
//! directory. When it leads the offsets partition again it must replay
//! every record before serving; a client asking it for the group's offsets
//! the whole time sees COORDINATOR_NOT_AVAILABLE or NOT_COORDINATOR (not
//! yet leading), then COORDINATOR_LOAD_IN_PROGRESS, then the offsets, the
//! last committed ones, and never an answer without an error before the
//! load is done.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use ballast_proto::v1::group_client::GroupClient;
use ballast_proto::v1::{self as pb, ErrorCode};
use ballast_tests::cluster::{
    channel, find_active, start_agent, start_coordinator_with, wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::eventually;

const WAIT: Duration = Duration::from_secs(120);
const GROUP: &str = "archive";
/// Offsets records written: COMMITS commits of PER_COMMIT partitions.
const COMMITS: i32 = 20;
const PER_COMMIT: i32 = 10_000;
/// A partition whose offset the test checks after the load.
const PROBE: i32 = 54_321;

/// Commits offset `offset` for partitions `from..from + PER_COMMIT` of a
/// topic as an admin (no member: epoch -1).
async fn commit(c: &mut GroupClient<tonic::transport::Channel>, from: i32, offset: i64) {
    let r = c
        .commit_offsets(pb::CommitOffsetsRequest {
            group_id: GROUP.into(),
            member_id: String::new(),
            member_epoch: -1,
            partitions: (from..from + PER_COMMIT)
                .map(|p| pb::CommitPartition {
                    topic: "archived-events".into(),
                    partition: p,
                    offset,
                    leader_epoch: -1,
                    metadata: String::new(),
                })
                .collect(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.error, ErrorCode::None as i32, "{}", r.error_message);
    assert!(r.results.iter().all(|p| p.error == ErrorCode::None as i32));
}

/// One FetchOffsets of the probe partition: (error code, offset).
async fn fetch_probe(c: &mut GroupClient<tonic::transport::Channel>) -> Option<(i32, i64)> {
    let r = c
        .fetch_offsets(pb::FetchOffsetsRequest {
            group_id: GROUP.into(),
            partitions: vec![pb::TopicPartitions {
                topic: "archived-events".into(),
                partitions: vec![PROBE],
            }],
        })
        .await
        .ok()?
        .into_inner();
    let offset = r.offsets.first().map_or(-1, |o| o.offset);
    Some((r.error, offset))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loading_coordinator_answers_load_in_progress_until_it_has_replayed_its_partition() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator_with(
        &etcd.endpoints(),
        "group-load",
        &["--offsets-partitions", "1"],
    );
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = start_agent(&addrs[0], 1, &dir.path().join("b1"), &[]);
    wait_live_brokers(&addrs, 1, WAIT).await;
    let mut c = GroupClient::new(channel(agent.address()));
    eventually("the agent coordinates the group", WAIT, || {
        let mut c = c.clone();
        async move {
            fetch_probe(&mut c)
                .await
                .filter(|(e, _)| *e == ErrorCode::None as i32)
        }
    })
    .await;
    // Each partition committed twice (offset 1, then 2): records the load
    // must apply in order.
    for offset in 1..=2 {
        for i in 0..COMMITS / 2 {
            commit(&mut c, i * PER_COMMIT, offset).await;
        }
    }
    assert_eq!(fetch_probe(&mut c).await, Some((ErrorCode::None as i32, 2)));

    agent.restart(Duration::from_secs(60)).unwrap();
    let mut c = GroupClient::new(channel(agent.address()));
    // Ask as fast as answers come, recording each change of answer.
    let mut seen: Vec<(i32, i64)> = Vec::new();
    let mut load_in_progress = 0u32;
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(
            Instant::now() < deadline,
            "never served after the restart; answers: {seen:?}"
        );
        let Some(answer) = fetch_probe(&mut c).await else {
            continue;
        };
        if answer.0 == ErrorCode::CoordinatorLoadInProgress as i32 {
            load_in_progress += 1;
        }
        if seen.last() != Some(&answer) {
            seen.push(answer);
        }
        if answer.0 == ErrorCode::None as i32 {
            break;
        }
    }
    let names: Vec<(String, i64)> = seen
        .iter()
        .map(|(e, o)| (ballast_client::error_code_name(*e), *o))
        .collect();
    let loaded = agent
        .log()
        .lines()
        .rfind(|l| l.contains("group coordinator loaded"))
        .map(str::to_owned);
    assert!(
        load_in_progress > 0,
        "no COORDINATOR_LOAD_IN_PROGRESS seen; answers in order: {names:?}; {loaded:?}"
    );
    // Served only once loaded, and then with everything committed.
    assert_eq!(seen.last(), Some(&(ErrorCode::None as i32, 2)), "{names:?}");
    let first_loading = seen
        .iter()
        .position(|(e, _)| *e == ErrorCode::CoordinatorLoadInProgress as i32)
        .unwrap();
    assert!(
        seen[..first_loading].iter().all(|(e, _)| [
            ErrorCode::NotCoordinator as i32,
            ErrorCode::CoordinatorNotAvailable as i32
        ]
        .contains(e)),
        "before loading, only NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE: {names:?}"
    );
    assert!(
        seen[first_loading..seen.len() - 1]
            .iter()
            .all(|(e, _)| *e == ErrorCode::CoordinatorLoadInProgress as i32),
        "while loading, only COORDINATOR_LOAD_IN_PROGRESS: {names:?}"
    );
    eprintln!("{load_in_progress} answers COORDINATOR_LOAD_IN_PROGRESS; {loaded:?}");
}
