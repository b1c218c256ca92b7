//! Partition reassignment end to end with real processes (etcd,
//! coordinators, agents, the `ballast` CLI):
//!
//! * moving replicas (and a leader) under acks=all production loses no
//!   acknowledged record, keeps offsets continuous on the new replicas, and
//!   removes the old replicas' data;
//! * kill -9 of the active coordinator mid-reassignment: the standby loads
//!   the persisted plan and the moves in flight and completes them;
//! * cancel returns unfinished partitions to their original replicas;
//! * decommissioning a broker empties it, and no partition is
//!   under-replicated for longer than a catch-up;
//! * moving a `__consumer_offsets` partition moves its group coordinator:
//!   the group keeps its committed offsets and the member carries on with
//!   the new coordinator by itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ballast_client::consumer::{Consumer, ConsumerConfig, OffsetReset, StartPosition};
use ballast_client::group::{GroupConfig, GroupConsumer};
use ballast_client::producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use ballast_proto::v1::agent_control_client::AgentControlClient;
use ballast_proto::v1::{self as pb};
use ballast_tests::cluster::{
    channel, committed_offsets, describe_partition, find_active, group_coordinator, on_active,
    start_agent, start_coordinator_with, wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{BallastProcess, eventually, run_ballast};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

/// etcd, coordinators and agents 1..=n with their data directories.
struct Cluster {
    _etcd: EtcdServer,
    coordinators: Vec<BallastProcess>,
    addrs: Vec<String>,
    agents: BTreeMap<i32, BallastProcess>,
    data: BTreeMap<i32, PathBuf>,
    _dirs: tempfile::TempDir,
}

impl Cluster {
    async fn start(name: &str, coordinators: usize, agents: i32) -> Cluster {
        Self::start_with(name, coordinators, agents, &[]).await
    }

    async fn start_with(name: &str, coordinators: usize, agents: i32, extra: &[&str]) -> Cluster {
        let etcd = EtcdServer::start().unwrap();
        let coordinators: Vec<BallastProcess> = (0..coordinators)
            .map(|_| start_coordinator_with(&etcd.endpoints(), name, extra))
            .collect();
        let addrs: Vec<String> = coordinators
            .iter()
            .map(|c| c.address().to_owned())
            .collect();
        eventually("active", WAIT, || find_active(&addrs)).await;
        let dirs = tempfile::tempdir().unwrap();
        let data: BTreeMap<i32, PathBuf> = (1..=agents)
            .map(|id| (id, dirs.path().join(format!("b{id}"))))
            .collect();
        let joined = addrs.join(",");
        let agents = data
            .iter()
            .map(|(id, d)| (*id, start_agent(&joined, *id, d, &[])))
            .collect();
        wait_live_brokers(&addrs, agents_len(&data), WAIT).await;
        Cluster {
            _etcd: etcd,
            coordinators,
            addrs,
            agents,
            data,
            _dirs: dirs,
        }
    }

    fn bootstrap(&self) -> Vec<String> {
        self.agents
            .values()
            .map(|a| a.address().to_owned())
            .collect()
    }

    fn coordinator_flag(&self) -> String {
        self.addrs.join(",")
    }

    async fn create(&self, topic: &str, assignments: &[Vec<i32>]) {
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
                    configs: [("min.insync.replicas".to_string(), "2".to_string())]
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

    fn has_dir(&self, broker: i32, topic: &str, partition: i32) -> bool {
        self.data[&broker]
            .join("partitions")
            .join(format!("{topic}-{partition}"))
            .exists()
    }
}

fn agents_len(data: &BTreeMap<i32, PathBuf>) -> u32 {
    data.len() as u32
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
        &cluster.coordinator_flag(),
    ]))
    .await;
    serde_json::from_str(&out).unwrap()
}

/// Produce `n` records of `size` bytes to `partition` with acks=all.
async fn fill(producer: &Producer, topic: &str, partition: i32, n: usize, size: usize) {
    let mut pending = Vec::new();
    for i in 0..n {
        producer.ready().await;
        let mut value = format!("fill-{partition}-{i:08}-").into_bytes();
        value.resize(size, b'x');
        pending.push(producer.send(ProducerRecord::new(topic, value).partition(partition)));
    }
    for f in pending {
        f.await.expect("fill acknowledged");
    }
}

fn producer(bootstrap: Vec<String>) -> Producer {
    Producer::connect(
        bootstrap,
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(2),
            request_timeout: Duration::from_secs(5),
            delivery_timeout: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reassignment_under_acks_all_production_loses_nothing() {
    let cluster = Cluster::start("reassign-exec", 1, 4).await;
    let topic = "moving";
    cluster.create(topic, &[vec![1, 2, 3], vec![2, 3, 1]]).await;
    let producer = producer(cluster.bootstrap());
    fill(&producer, topic, 0, 2000, 1000).await;

    // Production continues all through the reassignment.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = std::sync::Arc::clone(&stop);
    let background = tokio::spawn(async move {
        let mut acked: Vec<(i32, String, i64)> = Vec::new();
        let mut failed = 0usize;
        let mut i = 0usize;
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            let mut batch = Vec::new();
            for _ in 0..20 {
                let p = (i % 2) as i32;
                let v = format!("live-{i:08}");
                producer.ready().await;
                batch.push((
                    p,
                    v.clone(),
                    producer.send(ProducerRecord::new(topic, v.into_bytes()).partition(p)),
                ));
                i += 1;
            }
            for (p, v, f) in batch {
                match f.await {
                    Ok(meta) => acked.push((p, v, meta.offset)),
                    Err(_) => failed += 1,
                }
            }
        }
        (acked, failed)
    });

    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(dir.path(), topic, &[(0, vec![4, 2, 3]), (1, vec![2, 3, 4])]);
    let out = ballast_ok(args(&[
        "reassign",
        "execute",
        "--plan",
        plan.to_str().unwrap(),
        "--throttle",
        "20MiB/s",
        "--wait",
        "--coordinator",
        &cluster.coordinator_flag(),
    ]))
    .await;
    assert!(
        out.contains("2 partitions move (2 replicas to copy)"),
        "{out}"
    );
    assert!(out.contains("is complete"), "{out}");
    // Keep producing a little on the new replicas, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (acked, failed) = background.await.unwrap();
    assert!(acked.len() >= 100, "{} acked, {failed} failed", acked.len());

    let p0 = describe_partition(&cluster.addrs, topic, 0, WAIT).await;
    let p1 = describe_partition(&cluster.addrs, topic, 1, WAIT).await;
    assert_eq!(p0.replicas, vec![4, 2, 3]);
    assert_eq!(p1.replicas, vec![2, 3, 4]);
    // Broker 1 left partition 0, which it led: the first target replica in
    // sync leads now. Partition 1 keeps its leader.
    assert_eq!(p0.leader, 4);
    assert_eq!(p1.leader, 2);
    eventually("old replicas' data removed", WAIT, || async {
        (!cluster.has_dir(1, topic, 0) && !cluster.has_dir(1, topic, 1)).then_some(())
    })
    .await;
    assert!(cluster.has_dir(4, topic, 0) && cluster.has_dir(4, topic, 1));

    // Every acknowledged record is there at its offset; offsets continuous.
    for p in 0..2 {
        let mut consumer =
            Consumer::connect(cluster.bootstrap(), ConsumerConfig::default()).unwrap();
        consumer.assign(topic, [(p, StartPosition::Earliest)]);
        let end = acked
            .iter()
            .filter(|(q, ..)| *q == p)
            .map(|(_, _, o)| *o)
            .max()
            .unwrap();
        let mut got: BTreeMap<i64, String> = BTreeMap::new();
        let mut next = 0i64;
        while next <= end {
            for r in consumer.poll(Duration::from_secs(5)).await.unwrap() {
                if r.partition != p {
                    continue;
                }
                assert_eq!(r.offset, next, "offsets are continuous on partition {p}");
                next += 1;
                got.insert(
                    r.offset,
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
                );
            }
        }
        for (q, v, o) in acked.iter().filter(|(q, ..)| *q == p) {
            assert_eq!(
                got.get(o),
                Some(v),
                "acknowledged {v} at {q}-{o} is missing"
            );
        }
    }

    // The throttle is gone with the reassignment.
    let status = status_json(&cluster).await;
    assert_eq!(status["state"], "completed", "{status}");
    let verify = ballast_ok(args(&[
        "reassign",
        "verify",
        "--coordinator",
        &cluster.coordinator_flag(),
    ]))
    .await;
    assert!(verify.contains("is complete"), "{verify}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_completes_a_reassignment_after_kill9_of_the_active() {
    let mut cluster = Cluster::start("reassign-ha", 2, 3).await;
    let topic = "ha";
    cluster.create(topic, &[vec![1, 2]]).await;
    let producer = producer(cluster.bootstrap());
    // 6 MiB to copy at 1 MiB/s: the move is in flight for seconds.
    fill(&producer, topic, 0, 1500, 4096).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(dir.path(), topic, &[(0, vec![3, 2])]);
    ballast_ok(args(&[
        "reassign",
        "execute",
        "--plan",
        plan.to_str().unwrap(),
        "--throttle",
        "1MiB/s",
        "--coordinator",
        &cluster.coordinator_flag(),
    ]))
    .await;
    eventually("copying to broker 3", WAIT, || async {
        let s = status_json(&cluster).await;
        let p = &s["partitions"][0];
        (p["state"] == "moving" && p["bytes_copied"].as_u64() > Some(0)).then_some(())
    })
    .await;
    let (active, epoch) = find_active(&cluster.addrs).await.unwrap();
    let idx = cluster.addrs.iter().position(|a| *a == active).unwrap();
    cluster.coordinators[idx].kill();
    let others: Vec<String> = cluster
        .addrs
        .iter()
        .filter(|a| **a != active)
        .cloned()
        .collect();
    let (_, new_epoch) = eventually("standby takes over", WAIT, || find_active(&others)).await;
    assert!(new_epoch > epoch);
    cluster.addrs = others;
    eventually("reassignment completed by the standby", WAIT, || async {
        let s = status_json(&cluster).await;
        (s["state"] == "completed").then_some(())
    })
    .await;
    let p = describe_partition(&cluster.addrs, topic, 0, WAIT).await;
    assert_eq!((p.replicas.clone(), p.leader), (vec![3, 2], 3), "{p:?}");
    assert_eq!(p.isr, vec![3, 2]);
    eventually("broker 1's copy removed", WAIT, || async {
        (!cluster.has_dir(1, topic, 0)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_returns_partitions_to_their_original_replicas() {
    let cluster = Cluster::start("reassign-cancel", 1, 3).await;
    let topic = "back";
    cluster.create(topic, &[vec![1, 2], vec![2, 1]]).await;
    let producer = producer(cluster.bootstrap());
    fill(&producer, topic, 0, 1000, 4096).await;
    let dir = tempfile::tempdir().unwrap();
    // Slow enough never to finish before the cancel; one move at a time, so
    // partition 1 is still pending when it comes.
    let plan = plan_file(dir.path(), topic, &[(0, vec![3, 2]), (1, vec![3, 1])]);
    ballast_ok(args(&[
        "reassign",
        "execute",
        "--plan",
        plan.to_str().unwrap(),
        "--throttle",
        "64KiB/s",
        "--max-moves",
        "1",
        "--coordinator",
        &cluster.coordinator_flag(),
    ]))
    .await;
    eventually("partition 0 moving, 1 pending", WAIT, || async {
        let s = status_json(&cluster).await;
        (s["partitions"][0]["state"] == "moving" && s["partitions"][1]["state"] == "pending")
            .then_some(())
    })
    .await;
    assert_eq!(
        describe_partition(&cluster.addrs, topic, 0, WAIT)
            .await
            .replicas,
        vec![3, 2, 1]
    );
    // The throttle is in force on the agents while the reassignment runs...
    let three = cluster.agents[&3].address().to_owned();
    eventually("broker 3 throttled", WAIT, || async {
        (agent_state(&three).await?.throttle_bytes_per_sec == 64 << 10).then_some(())
    })
    .await;
    let out = ballast_ok(args(&[
        "reassign",
        "cancel",
        "--coordinator",
        &cluster.coordinator_flag(),
    ]))
    .await;
    assert!(out.contains("2 partitions go back"), "{out}");
    eventually("cancelled", WAIT, || async {
        let s = status_json(&cluster).await;
        (s["state"] == "cancelled").then_some(())
    })
    .await;
    let verify = ballast_ok(args(&[
        "reassign",
        "verify",
        "--coordinator",
        &cluster.coordinator_flag(),
    ]))
    .await;
    assert!(verify.contains("was cancelled"), "{verify}");
    // ... and gone once it ended, with nothing for the operator to undo.
    eventually("throttle removed", WAIT, || async {
        (agent_state(&three).await?.throttle_bytes_per_sec == 0).then_some(())
    })
    .await;
    for (p, original) in [(0, vec![1, 2]), (1, vec![2, 1])] {
        let d = describe_partition(&cluster.addrs, topic, p, WAIT).await;
        assert_eq!(d.replicas, original);
        assert_eq!(d.leader, original[0]);
    }
    eventually(
        "the half-copied replica on broker 3 removed",
        WAIT,
        || async { (!cluster.has_dir(3, topic, 0) && !cluster.has_dir(3, topic, 1)).then_some(()) },
    )
    .await;
    // The cluster still takes writes with acks=all on the original replicas.
    producer
        .send(ProducerRecord::new(topic, b"after".to_vec()).partition(0))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decommissioned_broker_ends_empty_without_under_replication() {
    let cluster = Cluster::start("reassign-decom", 1, 4).await;
    let topic = "spread";
    let assignments = vec![vec![1, 2, 4], vec![2, 4, 3], vec![4, 3, 1], vec![3, 1, 2]];
    cluster.create(topic, &assignments).await;
    let producer = producer(cluster.bootstrap());
    for p in 0..4 {
        fill(&producer, topic, p, 300, 1000).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let generated = ballast_ok(args(&[
        "reassign",
        "generate",
        "--topics",
        &format!("{topic},__consumer_offsets"),
        "--brokers",
        "1,2,3",
        "--format",
        "json",
        "--coordinator",
        &cluster.coordinator_flag(),
    ]))
    .await;
    let v: Value = serde_json::from_str(&generated).unwrap();
    let plan = dir.path().join("decommission.json");
    std::fs::write(&plan, v["proposed"].to_string()).unwrap();

    // Watch under-replication while the plan runs.
    let addrs = cluster.addrs.clone();
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let w2 = std::sync::Arc::clone(&watching);
    let watcher = tokio::spawn(async move {
        let mut since: BTreeMap<i32, Instant> = BTreeMap::new();
        let mut longest = Duration::ZERO;
        while w2.load(std::sync::atomic::Ordering::SeqCst) {
            for p in 0..4 {
                let d = describe_partition(&addrs, topic, p, WAIT).await;
                if d.under_replicated {
                    let start = *since.entry(p).or_insert_with(Instant::now);
                    longest = longest.max(start.elapsed());
                } else {
                    since.remove(&p);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        longest
    });
    let out = ballast_ok(args(&[
        "reassign",
        "execute",
        "--plan",
        plan.to_str().unwrap(),
        "--wait",
        "--coordinator",
        &cluster.coordinator_flag(),
    ]))
    .await;
    assert!(out.contains("is complete"), "{out}");
    watching.store(false, std::sync::atomic::Ordering::SeqCst);
    let longest = watcher.await.unwrap();
    // Added replicas do not count as under-replication while they copy;
    // nothing else failed, so no partition should have been under-replicated
    // beyond a moment's ISR bookkeeping.
    assert!(
        longest < Duration::from_secs(5),
        "a partition was under-replicated for {longest:?}"
    );
    let brokers = on_active(&cluster.addrs, WAIT, |mut c| async move {
        c.list_brokers(pb::ListBrokersRequest {}).await
    })
    .await
    .unwrap()
    .into_inner()
    .brokers;
    let four = brokers.iter().find(|b| b.broker_id == 4).unwrap();

    assert_eq!(
        (four.replicas, four.leaders),
        (0, 0),
        "{four:?} after {out} with plan {}",
        v["proposed"]
    );
    for p in 0..4 {
        let d = describe_partition(&cluster.addrs, topic, p, WAIT).await;
        assert!(!d.replicas.contains(&4), "{d:?}");
        assert_eq!(d.isr.len(), 3, "{d:?}");
    }
    eventually("broker 4 holds no partition data", WAIT, || async {
        let left = std::fs::read_dir(cluster.data[&4].join("partitions"))
            .map(|d| d.count())
            .unwrap_or(0);
        (left == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_an_offsets_partition_moves_its_group_coordinator_cleanly() {
    let cluster = Cluster::start("reassign-offsets", 1, 4).await;
    let topic = "events";
    cluster.create(topic, &[vec![1, 2, 3]]).await;
    let producer = producer(cluster.bootstrap());
    fill(&producer, topic, 0, 50, 100).await;
    let group_id = "reassigned-group";
    let mut group = GroupConfig::new(group_id);
    group.session_timeout = Duration::from_secs(10);
    group.auto_commit = false;
    let mut member = GroupConsumer::connect(
        cluster.bootstrap(),
        ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            ..Default::default()
        },
        group,
    )
    .unwrap();
    member.subscribe(&[topic.to_owned()]).unwrap();
    let mut seen = 0;
    let deadline = Instant::now() + WAIT;
    while seen < 50 && Instant::now() < deadline {
        seen += member.poll(Duration::from_millis(300)).await.unwrap().len();
    }
    assert_eq!(seen, 50);
    member.commit_sync().await.unwrap();
    let (old_leader, old_address) = group_coordinator(&cluster.bootstrap(), group_id)
        .await
        .unwrap();
    let before = committed_offsets(&old_address, group_id).await.unwrap();
    assert_eq!(before[&(topic.to_owned(), 0)].0, 50);

    // Move the group's offsets partition off its leader onto the broker
    // that holds no replica of it, which leads it afterwards.
    let p = ballast_assignor::coordinator_partition(group_id, 3).unwrap();
    let d = describe_partition(&cluster.addrs, "__consumer_offsets", p, WAIT).await;
    assert_eq!(d.leader, old_leader);
    let spare = (1..=4).find(|b| !d.replicas.contains(b)).unwrap();
    let mut target = vec![spare];
    target.extend(d.replicas.iter().copied().filter(|b| *b != old_leader));
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(dir.path(), "__consumer_offsets", &[(p, target.clone())]);
    let out = ballast_ok(args(&[
        "reassign",
        "execute",
        "--plan",
        plan.to_str().unwrap(),
        "--wait",
        "--coordinator",
        &cluster.coordinator_flag(),
    ]))
    .await;
    assert!(out.contains("is complete"), "{out}");
    let (new_leader, new_address) = eventually("the new coordinator answers", WAIT, || async {
        group_coordinator(&cluster.bootstrap(), group_id)
            .await
            .filter(|(b, _)| *b == spare)
    })
    .await;
    assert_ne!(new_leader, old_leader);
    // It replayed the offsets partition: the committed offset is there.
    let after = eventually("offsets loaded", WAIT, || {
        committed_offsets(&new_address, group_id)
    })
    .await;
    assert_eq!(after, before);

    // The member finds the new coordinator by itself and goes on.
    fill(&producer, topic, 0, 20, 100).await;
    let mut more = 0;
    let deadline = Instant::now() + WAIT;
    while more < 20 && Instant::now() < deadline {
        more += member.poll(Duration::from_millis(300)).await.unwrap().len();
    }
    assert_eq!(more, 20);
    let deadline = Instant::now() + WAIT;
    while let Err(e) = member.commit_sync().await {
        assert!(Instant::now() < deadline, "commit never succeeded: {e}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let now = committed_offsets(&new_address, group_id).await.unwrap();
    assert_eq!(now[&(topic.to_owned(), 0)].0, 70);
    member.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_to_a_dead_broker_is_reported_stuck_and_can_be_cancelled() {
    let mut cluster = Cluster::start_with(
        "reassign-stuck",
        1,
        3,
        &["--reassignment-stuck-after", "1s"],
    )
    .await;
    let topic = "stalled";
    cluster.create(topic, &[vec![1, 2]]).await;
    let producer = producer(cluster.bootstrap());
    fill(&producer, topic, 0, 500, 4096).await;
    let dir = tempfile::tempdir().unwrap();
    let plan = plan_file(dir.path(), topic, &[(0, vec![3, 2])]);
    ballast_ok(args(&[
        "reassign",
        "execute",
        "--plan",
        plan.to_str().unwrap(),
        "--throttle",
        "64KiB/s",
        "--coordinator",
        &cluster.coordinator_flag(),
    ]))
    .await;
    eventually("moving", WAIT, || async {
        let s = status_json(&cluster).await;
        (s["partitions"][0]["state"] == "moving").then_some(())
    })
    .await;
    cluster.agents.get_mut(&3).unwrap().kill();
    eventually("reported stuck", WAIT, || async {
        let out = ballast_ok(args(&[
            "cluster",
            "status",
            "--format",
            "json",
            "--coordinator",
            &cluster.coordinator_flag(),
        ]))
        .await;
        let v: Value = serde_json::from_str(&out).ok()?;
        (v["problems"]["stuck_reassignment_partitions"] == 1).then_some(())
    })
    .await;
    let s = status_json(&cluster).await;
    assert!(
        s["partitions"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("stuck: nothing copied"),
        "{s}"
    );
    ballast_ok(args(&[
        "reassign",
        "cancel",
        "--coordinator",
        &cluster.coordinator_flag(),
    ]))
    .await;
    eventually("cancelled", WAIT, || async {
        (status_json(&cluster).await["state"] == "cancelled").then_some(())
    })
    .await;
    let d = describe_partition(&cluster.addrs, topic, 0, WAIT).await;
    assert_eq!((d.replicas, d.leader), (vec![1, 2], 1));
}
