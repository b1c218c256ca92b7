//! The rebalancer with real processes (etcd, coordinator, agents, the CLI):
//!
//! * `balance propose` fills a broker that joined empty with the fewest
//!   moves and `balance apply --wait` carries the plan out; a saved
//!   `--remove-broker` proposal applied with `--plan` drains a broker;
//! * the coordinator's catch-up throttle reaches every agent;
//! * the continuous mode (`--auto-balance`) fills a broker that joins on its
//!   own, drains a broker down longer than the grace period, and says so in
//!   `cluster status`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use ballast_proto::v1::agent_control_client::AgentControlClient;
use ballast_proto::v1::{self as pb};
use ballast_tests::cluster::{
    channel, find_active, on_active, start_agent, start_coordinator_with, wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{BallastProcess, eventually, run_ballast};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

async fn ballast_ok(args: Vec<String>) -> String {
    let out = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_ballast(&refs)
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "ballast failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// Replicas per broker from the active coordinator.
async fn replicas(addrs: &[String]) -> BTreeMap<i32, u32> {
    on_active(addrs, WAIT, |mut c| async move {
        c.list_brokers(pb::ListBrokersRequest {}).await
    })
    .await
    .unwrap()
    .into_inner()
    .brokers
    .into_iter()
    .map(|b| (b.broker_id, b.replicas))
    .collect()
}

async fn create(addrs: &[String], name: &str, assignments: Vec<Vec<i32>>) {
    let name = name.to_owned();
    on_active(addrs, WAIT, |mut c| {
        let (name, assignments) = (name.clone(), assignments.clone());
        async move {
            c.create_topic(pb::CreateTopicRequest {
                name: name.clone(),
                assignments: assignments
                    .into_iter()
                    .map(|replicas| pb::ReplicaList { replicas })
                    .collect(),
                request_id: format!("{name}-1"),
                ..Default::default()
            })
            .await
        }
    })
    .await
    .unwrap();
}

struct Setup {
    _etcd: EtcdServer,
    _coordinator: BallastProcess,
    addrs: Vec<String>,
    agents: BTreeMap<i32, BallastProcess>,
    dirs: tempfile::TempDir,
}

async fn setup(name: &str, extra: &[&str], agents: i32) -> Setup {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator_with(&etcd.endpoints(), name, extra);
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dirs = tempfile::tempdir().unwrap();
    let agents: BTreeMap<i32, BallastProcess> = (1..=agents)
        .map(|id| {
            let dir: PathBuf = dirs.path().join(format!("b{id}"));
            (id, start_agent(&addrs[0], id, &dir, &[]))
        })
        .collect();
    wait_live_brokers(&addrs, agents.len() as u32, WAIT).await;
    Setup {
        _etcd: etcd,
        _coordinator: coordinator,
        addrs,
        agents,
        dirs,
    }
}

impl Setup {
    fn add_agent(&mut self, id: i32) {
        let dir = self.dirs.path().join(format!("b{id}"));
        self.agents
            .insert(id, start_agent(&self.addrs[0], id, &dir, &[]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propose_and_apply_fill_a_new_broker_and_drain_an_old_one() {
    let mut s = setup("balance-cli", &["--catch-up-throttle", "1MiB/s"], 3).await;
    // The coordinator's catch-up throttle reaches every agent with the
    // pushes (it applies to followers out of the ISR).
    for a in s.agents.values() {
        let address = a.address().to_owned();
        eventually("catch-up throttle pushed", WAIT, || async {
            let st = AgentControlClient::new(channel(&address))
                .get_state(pb::GetAgentStateRequest {})
                .await
                .ok()?
                .into_inner();
            (st.catch_up_throttle_bytes_per_sec == 1 << 20 && st.throttle_bytes_per_sec == 0)
                .then_some(())
        })
        .await;
    }
    // 12 partitions x RF 2 on brokers 1-3 (8 each), then broker 4 joins.
    let assignments: Vec<Vec<i32>> = (0..12).map(|p| vec![p % 3 + 1, (p + 1) % 3 + 1]).collect();
    create(&s.addrs, "orders", assignments).await;
    s.add_agent(4);
    wait_live_brokers(&s.addrs, 4, WAIT).await;
    let coordinator = s.addrs[0].clone();

    let out = ballast_ok(args(&[
        "balance",
        "propose",
        "--format",
        "json",
        "--coordinator",
        &coordinator,
    ]))
    .await;
    let v: Value = serde_json::from_str(&out).unwrap();
    // Broker 4 gets its quota (the offsets topic may or may not exist yet),
    // with no more moves than the bound.
    assert_eq!(v["replica_moves"], v["lower_bound_moves"], "{v}");
    let moves = v["replica_moves"].as_u64().unwrap();
    assert!(moves >= 6, "{v}");

    let out = ballast_ok(args(&[
        "balance",
        "apply",
        "--wait",
        "--coordinator",
        &coordinator,
    ]))
    .await;
    assert!(out.contains("is complete"), "{out}");
    let counts = replicas(&s.addrs).await;
    let (min, max) = (
        counts.values().min().copied().unwrap(),
        counts.values().max().copied().unwrap(),
    );
    assert!(max - min <= 1, "balanced: {counts:?}");

    // Drain broker 2 with a saved proposal.
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("drain.json");
    let text = ballast_ok(args(&[
        "balance",
        "propose",
        "--remove-broker",
        "2",
        "--output",
        plan.to_str().unwrap(),
        "--coordinator",
        &coordinator,
    ]))
    .await;
    assert!(text.contains("Plan written to"), "{text}");
    assert!(text.contains("BROKER"), "{text}");
    ballast_ok(args(&[
        "balance",
        "apply",
        "--plan",
        plan.to_str().unwrap(),
        "--wait",
        "--coordinator",
        &coordinator,
    ]))
    .await;
    let counts = replicas(&s.addrs).await;
    assert_eq!(counts[&2], 0, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuous_mode_fills_a_joining_broker_and_drains_a_dead_one() {
    let mut s = setup(
        "balance-auto",
        &[
            "--auto-balance",
            "--auto-balance-interval",
            "1s",
            "--auto-balance-check-interval",
            "200ms",
            "--auto-balance-grace",
            "2s",
        ],
        3,
    )
    .await;
    let assignments: Vec<Vec<i32>> = (0..9).map(|p| vec![p % 3 + 1, (p + 1) % 3 + 1]).collect();
    create(&s.addrs, "events", assignments).await;
    s.add_agent(4);
    eventually("broker 4 filled by the balancer", WAIT, || async {
        let c = replicas(&s.addrs).await;
        (c.get(&4).copied().unwrap_or(0) >= 4).then_some(())
    })
    .await;
    let status = ballast_ok(args(&["cluster", "status", "--coordinator", &s.addrs[0]])).await;
    // Broker 4 joined empty, or (when the offsets topic was created with
    // it) with too few replicas: either trigger starts a reassignment.
    assert!(
        status.contains("auto-balance:        on; last:"),
        "{status}"
    );
    assert!(status.contains("started reassignment"), "{status}");

    // Broker 3 dies: after the session timeout it is fenced, after the
    // grace it is drained.
    s.agents.get_mut(&3).unwrap().kill();
    eventually("broker 3 drained", WAIT, || async {
        let c = replicas(&s.addrs).await;
        (c.get(&3).copied() == Some(0)).then_some(())
    })
    .await;
    eventually("every partition back in full ISR", WAIT, || async {
        let topics = on_active(&s.addrs, WAIT, |mut c| async move {
            c.describe_topics(pb::DescribeTopicsRequest {
                filter: pb::PartitionFilter::UnderReplicated as i32,
                include_internal: true,
                ..Default::default()
            })
            .await
        })
        .await
        .ok()?
        .into_inner()
        .topics;
        topics.iter().all(|t| t.partitions.is_empty()).then_some(())
    })
    .await;
    let status = ballast_ok(args(&["cluster", "status", "--coordinator", &s.addrs[0]])).await;
    assert!(status.contains("down longer than"), "{status}");
}
