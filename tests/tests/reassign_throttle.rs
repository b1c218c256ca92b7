//! Follower throttles and reassignment concurrency, measured with real
//! processes (etcd, a coordinator, agents, the `ballast` CLI):
//!
//! * a reassignment's throttle applies to the moving replica only: an
//!   in-sync follower of another partition on the same broker pair keeps
//!   carrying acks=all traffic at full speed while the moving replica copies
//!   at about the throttle; `reassign verify` says "in progress" meanwhile,
//!   and the agents' throttle is back to 0 once the reassignment completes;
//! * the coordinator's catch-up throttle (`--catch-up-throttle`) bounds a
//!   follower returning from far behind: its catch-up takes at least about
//!   size / throttle, and it rejoins the ISR afterwards;
//! * `--max-moves-per-broker 1` moves one partition at a time when every
//!   move involves the same broker.
//!
//! Timings are measured against generous bounds (a rate bound is checked
//! at half or 0.6x of what the throttle implies, never tightly).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ballast_client::producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use ballast_proto::v1::agent_control_client::AgentControlClient;
use ballast_proto::v1::{self as pb};
use ballast_tests::cluster::{
    channel, describe_partition, find_active, on_active, start_agent, start_coordinator_with,
    wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{BallastProcess, eventually, run_ballast};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);
const MIB: u64 = 1 << 20;
/// Record value size: large, so batch overhead is small against the data.
const RECORD: usize = 4096;

/// etcd, one coordinator and agents 1..=n.
struct Cluster {
    _etcd: EtcdServer,
    _coordinator: BallastProcess,
    addrs: Vec<String>,
    agents: BTreeMap<i32, BallastProcess>,
    _dirs: tempfile::TempDir,
}

impl Cluster {
    async fn start(name: &str, agents: i32, extra: &[&str]) -> Cluster {
        let etcd = EtcdServer::start().unwrap();
        let coordinator = start_coordinator_with(&etcd.endpoints(), name, extra);
        let addrs = vec![coordinator.address().to_owned()];
        eventually("active", WAIT, || find_active(&addrs)).await;
        let dirs = tempfile::tempdir().unwrap();
        let agents: BTreeMap<i32, BallastProcess> = (1..=agents)
            .map(|id| {
                let dir = dirs.path().join(format!("b{id}"));
                (id, start_agent(&addrs[0], id, &dir, &[]))
            })
            .collect();
        wait_live_brokers(&addrs, agents.len() as u32, WAIT).await;
        Cluster {
            _etcd: etcd,
            _coordinator: coordinator,
            addrs,
            agents,
            _dirs: dirs,
        }
    }

    fn bootstrap(&self) -> Vec<String> {
        self.agents
            .values()
            .map(|a| a.address().to_owned())
            .collect()
    }

    fn agent(&self, id: i32) -> String {
        self.agents[&id].address().to_owned()
    }

    async fn create(&self, topic: &str, min_isr: u32, assignments: &[Vec<i32>]) {
        let assignments: Vec<pb::ReplicaList> = assignments
            .iter()
            .map(|r| pb::ReplicaList {
                replicas: r.clone(),
            })
            .collect();
        let topic = topic.to_owned();
        on_active(&self.addrs, WAIT, |mut c| {
            let (topic, assignments) = (topic.clone(), assignments.clone());
            async move {
                c.create_topic(pb::CreateTopicRequest {
                    name: topic.clone(),
                    assignments,
                    configs: [("min.insync.replicas".to_string(), min_isr.to_string())]
                        .into_iter()
                        .collect(),
                    request_id: format!("{topic}-create"),
                    ..Default::default()
                })
                .await
            }
        })
        .await
        .unwrap();
    }
}

async fn agent_state(address: &str) -> Option<pb::GetAgentStateResponse> {
    AgentControlClient::new(channel(address))
        .get_state(pb::GetAgentStateRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

/// Writes a plan file in Kafka's JSON.
fn plan_file(dir: &Path, topic: &str, targets: &[(i32, Vec<i32>)]) -> PathBuf {
    let v = json!({
        "version": 1,
        "partitions": targets
            .iter()
            .map(|(p, r)| json!({"topic": topic, "partition": p, "replicas": r}))
            .collect::<Vec<_>>(),
    });
    let path = dir.join(format!("plan-{topic}.json"));
    std::fs::write(&path, v.to_string()).unwrap();
    path
}

/// `ballast <args>` on a blocking thread; stdout on success, panics with
/// stderr otherwise.
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

async fn status_json(cluster: &Cluster) -> Value {
    let out = ballast_ok(args(&[
        "reassign",
        "status",
        "--format",
        "json",
        "--coordinator",
        &cluster.addrs[0],
    ]))
    .await;
    serde_json::from_str(&out).unwrap()
}

fn producer(bootstrap: Vec<String>) -> Producer {
    Producer::connect(
        bootstrap,
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(2),
            request_timeout: Duration::from_secs(10),
            delivery_timeout: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .unwrap()
}

/// Produce `bytes` of [`RECORD`]-sized values to `partition` with acks=all;
/// every record acknowledged.
async fn fill(producer: &Producer, topic: &str, partition: i32, bytes: u64) {
    let n = bytes as usize / RECORD;
    let mut pending = Vec::with_capacity(n);
    for i in 0..n {
        producer.ready().await;
        let mut value = format!("{topic}-{partition}-{i:08}-").into_bytes();
        value.resize(RECORD, b'x');
        pending.push(producer.send(ProducerRecord::new(topic, value).partition(partition)));
    }
    for f in pending {
        f.await.expect("acknowledged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_moving_replica_is_throttled_and_the_throttle_ends_with_the_reassignment() {
    let cluster = Cluster::start("throttle-scope", 3, &[]).await;
    // "moving" goes from [1,2] to [1,3]; "steady" stays on [1,3]: broker 3
    // fetches both from leader 1, one throttled and one in sync.
    cluster.create("moving", 2, &[vec![1, 2]]).await;
    cluster.create("steady", 2, &[vec![1, 3]]).await;
    let producer = producer(cluster.bootstrap());
    let moving_bytes = 6 * MIB;
    fill(&producer, "moving", 0, moving_bytes).await;

    let throttle = MIB;
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(dir.path(), "moving", &[(0, vec![1, 3])]);
    ballast_ok(args(&[
        "reassign",
        "execute",
        "--plan",
        plan.to_str().unwrap(),
        "--throttle",
        "1MiB/s",
        "--coordinator",
        &cluster.addrs[0],
    ]))
    .await;
    let three = cluster.agent(3);
    eventually("broker 3 throttled", WAIT, || async {
        (agent_state(&three).await?.throttle_bytes_per_sec == throttle).then_some(())
    })
    .await;
    let (t1, copied1) = eventually("copying to broker 3", WAIT, || async {
        let s = status_json(&cluster).await;
        let p = &s["partitions"][0];
        let copied = p["bytes_copied"].as_u64()?;
        (p["state"] == "moving" && copied > 0).then_some((Instant::now(), copied))
    })
    .await;

    // `verify` while it runs: in progress, exit 0.
    let verify = ballast_ok(args(&[
        "reassign",
        "verify",
        "--coordinator",
        &cluster.addrs[0],
    ]))
    .await;
    assert!(
        verify.contains("is in progress (running): 0 of 1 partitions finished"),
        "{verify}"
    );

    // 8 MiB acks=all (min.insync.replicas=2, so broker 3 must have each
    // record before it is acknowledged) to the partition broker 3 follows in
    // sync. Throttled like the moving replica it would take >= 8 s.
    let steady_bytes = 8 * MIB;
    let started = Instant::now();
    fill(&producer, "steady", 0, steady_bytes).await;
    let steady_secs = started.elapsed().as_secs_f64();
    let throttled_secs = steady_bytes as f64 / throttle as f64;
    assert!(
        steady_secs < throttled_secs / 2.0,
        "8 MiB acks=all through the in-sync follower took {steady_secs:.2} s; \
         at the reassignment throttle it would take {throttled_secs:.0} s"
    );

    // The copy was still under way all along.
    let s = status_json(&cluster).await;
    assert_eq!(s["partitions"][0]["state"], "moving", "{s}");
    let steady = describe_partition(&cluster.addrs, "steady", 0, WAIT).await;
    assert_eq!(steady.isr, vec![1, 3], "{steady:?}");

    // The moving replica copies at about the throttle: from the first
    // sample to completion.
    let t_done = eventually("reassignment completed", WAIT, || async {
        let s = status_json(&cluster).await;
        (s["state"] == "completed").then(Instant::now)
    })
    .await;
    let rate = (moving_bytes - copied1.min(moving_bytes)) as f64 / (t_done - t1).as_secs_f64();
    eprintln!(
        "steady: {} MiB in {steady_secs:.2} s ({:.1} MiB/s); moving replica copied at {:.2} MiB/s \
         against a 1 MiB/s throttle",
        steady_bytes / MIB,
        steady_bytes as f64 / MIB as f64 / steady_secs,
        rate / MIB as f64
    );
    assert!(
        rate <= throttle as f64 * 1.3 && rate >= throttle as f64 * 0.5,
        "moving replica copied at {rate:.0} B/s against a throttle of {throttle} B/s"
    );
    let d = describe_partition(&cluster.addrs, "moving", 0, WAIT).await;
    assert_eq!((d.replicas, d.isr), (vec![1, 3], vec![1, 3]));

    // Completed (not cancelled): every agent's throttle is back to 0.
    for id in 1..=3 {
        let address = cluster.agent(id);
        eventually(&format!("broker {id} unthrottled"), WAIT, || async {
            let st = agent_state(&address).await?;
            (st.throttle_bytes_per_sec == 0 && st.catch_up_throttle_bytes_per_sec == 0)
                .then_some(())
        })
        .await;
    }
    let verify = ballast_ok(args(&[
        "reassign",
        "verify",
        "--coordinator",
        &cluster.addrs[0],
    ]))
    .await;
    assert!(verify.contains("is complete"), "{verify}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catch_up_throttle_bounds_a_follower_returning_from_far_behind() {
    let mut cluster =
        Cluster::start("throttle-catch-up", 2, &["--catch-up-throttle", "1MiB/s"]).await;
    let throttle = MIB;
    cluster.create("behind", 1, &[vec![1, 2]]).await;
    let producer = producer(cluster.bootstrap());
    fill(&producer, "behind", 0, 64 << 10).await;
    eventually("both in sync", WAIT, || async {
        let d = describe_partition(&cluster.addrs, "behind", 0, WAIT).await;
        (d.isr.len() == 2).then_some(())
    })
    .await;

    // Broker 2 goes away; the ISR shrinks to the leader; 5 MiB arrive.
    cluster.agents.get_mut(&2).unwrap().kill();
    eventually("broker 2 out of the ISR", WAIT, || async {
        let d = describe_partition(&cluster.addrs, "behind", 0, WAIT).await;
        (d.isr == vec![1]).then_some(())
    })
    .await;
    let behind = 5 * MIB;
    fill(&producer, "behind", 0, behind).await;

    // It returns: out of the ISR, so catch-up throttled.
    let started = Instant::now();
    cluster
        .agents
        .get_mut(&2)
        .unwrap()
        .restart(Duration::from_secs(20))
        .unwrap();
    let two = cluster.agent(2);
    let st = eventually("broker 2 has the catch-up throttle", WAIT, || async {
        agent_state(&two)
            .await
            .filter(|s| s.catch_up_throttle_bytes_per_sec == throttle)
    })
    .await;
    assert_eq!(st.throttle_bytes_per_sec, 0, "no reassignment runs");
    eventually("broker 2 back in the ISR", WAIT, || async {
        let d = describe_partition(&cluster.addrs, "behind", 0, WAIT).await;
        (d.isr.contains(&2)).then_some(())
    })
    .await;
    let secs = started.elapsed().as_secs_f64();
    let floor = behind as f64 / throttle as f64;
    eprintln!(
        "caught up {} MiB in {secs:.2} s at a 1 MiB/s catch-up throttle",
        behind / MIB
    );
    assert!(
        secs >= floor * 0.6,
        "caught up {behind} bytes in {secs:.2} s; the throttle allows no less than {floor:.1} s"
    );
    let d = describe_partition(&cluster.addrs, "behind", 0, WAIT).await;
    assert_eq!(d.isr.len(), 2, "{d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_moves_per_broker_one_moves_one_partition_at_a_time() {
    let cluster = Cluster::start("throttle-per-broker", 4, &[]).await;
    // Every move adds broker 3, from different sources, so broker 3 is the
    // only one they share.
    cluster
        .create("many", 1, &[vec![1, 2], vec![2, 4], vec![4, 1]])
        .await;
    let producer = producer(cluster.bootstrap());
    for p in 0..3 {
        fill(&producer, "many", p, MIB + MIB / 2).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(
        dir.path(),
        "many",
        &[(0, vec![3, 2]), (1, vec![3, 4]), (2, vec![3, 1])],
    );
    ballast_ok(args(&[
        "reassign",
        "execute",
        "--plan",
        plan.to_str().unwrap(),
        "--throttle",
        "1MiB/s",
        "--max-moves-per-broker",
        "1",
        "--coordinator",
        &cluster.addrs[0],
    ]))
    .await;
    let mut most_at_once = 0usize;
    let mut seen_moving: BTreeSet<i64> = BTreeSet::new();
    let mut samples = 0usize;
    let deadline = Instant::now() + WAIT;
    loop {
        let s = status_json(&cluster).await;
        assert_eq!(s["max_moves_per_broker"], 1, "{s}");
        let moving: Vec<i64> = s["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["state"] == "moving")
            .map(|p| p["partition"].as_i64().unwrap())
            .collect();
        most_at_once = most_at_once.max(moving.len());
        seen_moving.extend(&moving);
        samples += 1;
        if s["state"] == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "not completed: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("{samples} samples; partitions seen moving: {seen_moving:?}");
    assert_eq!(
        most_at_once, 1,
        "partitions moving at once with a limit of 1"
    );
    // Each move takes over a second at the throttle: the samples saw every
    // partition move, one after another.
    assert_eq!(seen_moving, BTreeSet::from([0, 1, 2]));
    for (p, target) in [(0, vec![3, 2]), (1, vec![3, 4]), (2, vec![3, 1])] {
        let d = describe_partition(&cluster.addrs, "many", p, WAIT).await;
        assert_eq!(d.replicas, target, "{d:?}");
    }
}
