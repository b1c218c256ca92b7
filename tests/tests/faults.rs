//! The fault-injection suite (issue 8, first slice): a real cluster on
//! loopback (3 etcd members, 2 coordinators, 4 agents), a workload that
//! records what its clients saw, faults on a seeded schedule, and the
//! checkers of `ballast_tests::faults::check` over the recorded history.
//!
//! Workload: topic `faults` (4 partitions, RF 3, min.insync.replicas=2);
//! 2 producers with acks=all writing `p{producer}-{seq}` round-robin over
//! the partitions and recording every acknowledgement; a group of 2
//! members consuming with auto-commit every 500 ms and recording their
//! assignments, deliveries and acknowledged commits; a sampler describing
//! the group's committed offsets every 500 ms; a sampler asking every
//! coordinator every 250 ms whether it is active, and at which epoch.
//! Faults (one at a time): kill -9 and restart of an agent, a coordinator
//! or an etcd member; SIGSTOP/SIGCONT of an agent (past the broker
//! session), a coordinator (past its lease) or an etcd member; a full disk
//! on agent 1 (its data dir is a tmpfs, filled by a ballast file); a
//! network partition isolating agent 3 (it runs in its own network
//! namespace); a network partition isolating the active coordinator past
//! its lease (each coordinator runs in its own network namespace; the
//! standby must take over during the cut); and, in the same rounds, a
//! reassignment of one partition that copies it to the agent without a
//! replica of it and makes that agent its preferred leader, with a
//! preferred-leader election (data and leader move under acks=all
//! production).
//!
//! Knobs (see docs/RELIABILITY.md): `BALLAST_FAULTS_SEED` replays a run,
//! `BALLAST_FAULTS_DURATION` sets the fault phase (default 105 s, enough
//! for seed 1 to try every kind; the whole test stays around 2 minutes), `BALLAST_FAULTS_STRICT=1` also fails on
//! properties marked as known product bugs. A failure prints the seed and
//! the command that replays it, and copies the processes' logs and the
//! history under `target/tmp/faults-<seed>/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballast_client::admin::{
    AdminClient, AdminOptions, ExecuteReassignmentRequest, ReassignmentPartition,
};
use ballast_client::consumer::{Consumer, ConsumerConfig, StartPosition};
use ballast_client::producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use ballast_client::{
    CommitEvent, GroupAdmin, GroupAdminOptions, GroupConfig, GroupConsumer, OffsetReset,
    RebalanceEvent, RebalanceListener,
};
use ballast_proto::v1::{self as pb};
use ballast_tests::cluster::{admin, find_active, on_active};
use ballast_tests::faults::check::{self, healed};
use ballast_tests::faults::cluster::FaultCluster;
use ballast_tests::faults::history::{
    Ack, Change, Commit, CoordinatorIsolation, CoordinatorSample, Delivery, HealthSample, History,
    OffsetSample, Ownership, Reassignment, ReassignmentOutcome, SendFailure,
};
use ballast_tests::faults::rng::Knobs;
use ballast_tests::faults::schedule::{Fault, Shape, Timing, plan};
use ballast_tests::process::eventually;
use tokio::task::JoinSet;

const TOPIC: &str = "faults";
const PARTITIONS: i32 = 4;
const REPLICATION: usize = 3;
const GROUP: &str = "faults-group";
const PRODUCERS: u32 = 2;
const MEMBERS: usize = 2;
const WAIT: Duration = Duration::from_secs(60);
/// Property 4's bound: full ISR and a stable group this soon after healing.
const HEAL_BOUND: Duration = Duration::from_secs(60);
/// Pause between two sends of one producer (~100 records/s each).
const SEND_INTERVAL: Duration = Duration::from_millis(10);
/// How long the workload runs before the first fault.
const WARM_UP: Duration = Duration::from_secs(3);

/// Properties failing on a known, reported product bug: still checked and
/// printed as FAIL, but they fail the run only with
/// `BALLAST_FAULTS_STRICT=1` (see "Known product bugs" in
/// docs/RELIABILITY.md). Remove an entry once its bug is fixed.
///
/// * committed offsets: a leader restarted within the broker session
///   timeout comes back at the same leader epoch with a stale high
///   watermark; its consumer fetches answer a false KIP-320 divergence
///   (the epoch's end offset capped at that high watermark), the member
///   seeks back and auto-commits the lower offset (seed
///   4711824479639929712: partition 2 committed 206, then 0).
const KNOWN_BUGS: &[&str] = &[];

/// The shared history and the run's clock.
#[derive(Clone)]
struct Recorder {
    start: Instant,
    history: Arc<Mutex<History>>,
}

impl Recorder {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn with<R>(&self, f: impl FnOnce(&mut History) -> R) -> R {
        f(&mut self.history.lock().unwrap())
    }
}

/// Records one member's ownership changes and acknowledged commits.
struct Listener {
    member: String,
    rec: Recorder,
}

impl Listener {
    fn ownership(&self, e: &RebalanceEvent, change: Change) {
        let partitions: Vec<i32> = e
            .partitions
            .iter()
            .filter(|tp| tp.topic == TOPIC)
            .map(|tp| tp.partition)
            .collect();
        if partitions.is_empty() {
            return;
        }
        let at = self.rec.now();
        self.rec.with(|h| {
            h.ownership.push(Ownership {
                member: self.member.clone(),
                member_epoch: e.member_epoch,
                partitions,
                change,
                at,
            })
        });
    }
}

impl RebalanceListener for Listener {
    fn on_assigned(&mut self, e: &RebalanceEvent) {
        self.ownership(e, Change::Assigned);
    }

    fn on_revoked(&mut self, e: &RebalanceEvent) {
        self.ownership(e, Change::Revoked);
    }

    fn on_lost(&mut self, e: &RebalanceEvent) {
        self.ownership(e, Change::Lost);
    }

    fn on_committed(&mut self, e: &CommitEvent) {
        let at = self.rec.now();
        self.rec.with(|h| {
            for (tp, offset) in &e.offsets {
                if tp.topic == TOPIC {
                    h.commits.push(Commit {
                        member: self.member.clone(),
                        member_epoch: e.member_epoch,
                        partition: tp.partition,
                        offset: *offset,
                        at,
                    });
                }
            }
        });
    }
}

/// Producer `p`: sends until `stop`, then waits for every outstanding
/// record to settle.
async fn produce(p: u32, bootstrap: Vec<String>, rec: Recorder, stop: Arc<AtomicBool>) {
    let producer = Producer::connect(
        bootstrap,
        ProducerConfig {
            acks: Acks::All,
            request_timeout: Duration::from_secs(5),
            delivery_timeout: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .unwrap();
    let mut outstanding = JoinSet::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::SeqCst) {
        producer.ready().await;
        let partition = ((seq + u64::from(p)) % PARTITIONS as u64) as i32;
        let value = format!("p{p}-{seq}");
        let delivery = producer
            .send(ProducerRecord::new(TOPIC, value.clone().into_bytes()).partition(partition));
        let rec = rec.clone();
        outstanding.spawn(async move {
            let result = delivery.await;
            let at = rec.now();
            rec.with(|h| match result {
                Ok(md) => h.acks.push(Ack {
                    producer: p,
                    seq,
                    partition: md.partition,
                    offset: md.offset,
                    value,
                    at,
                }),
                Err(e) => h.failures.push(SendFailure {
                    producer: p,
                    value,
                    error: e.to_string(),
                    at,
                }),
            });
        });
        seq += 1;
        while outstanding.try_join_next().is_some() {}
        tokio::time::sleep(SEND_INTERVAL).await;
    }
    while outstanding.join_next().await.is_some() {}
    producer.close().await;
}

/// Group member `label`: polls until `stop`, then leaves the group.
async fn consume(
    label: String,
    bootstrap: Vec<String>,
    rec: Recorder,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut group = GroupConfig::new(GROUP);
    group.session_timeout = Duration::from_secs(6);
    group.rebalance_timeout = Duration::from_secs(30);
    group.auto_commit = true;
    group.auto_commit_interval = Duration::from_millis(500);
    group.client_id = label.clone();
    let mut member = GroupConsumer::connect(
        bootstrap,
        ConsumerConfig {
            auto_offset_reset: OffsetReset::Earliest,
            request_timeout: Duration::from_secs(5),
            ..Default::default()
        },
        group,
    )
    .unwrap();
    member.set_listener(Box::new(Listener {
        member: label.clone(),
        rec: rec.clone(),
    }));
    member.subscribe(&[TOPIC.to_owned()]).unwrap();
    let mut errors = 0usize;
    while !stop.load(Ordering::SeqCst) {
        match member.poll(Duration::from_millis(500)).await {
            Ok(records) => {
                let at = rec.now();
                let mut ranges: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
                for r in records.iter().filter(|r| r.topic == TOPIC) {
                    let e = ranges.entry(r.partition).or_insert((r.offset, r.offset));
                    e.0 = e.0.min(r.offset);
                    e.1 = e.1.max(r.offset);
                }
                rec.with(|h| {
                    for (partition, (first, last)) in ranges {
                        h.deliveries.push(Delivery {
                            member: label.clone(),
                            partition,
                            first,
                            last,
                            at,
                        });
                    }
                });
            }
            Err(e) => {
                errors += 1;
                if errors <= 5 {
                    eprintln!("faults: {label} poll error: {e}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    if let Err(e) = member.close().await {
        eprintln!("faults: {label} close: {e}");
    }
    errors
}

fn group_admin(bootstrap: Vec<String>) -> GroupAdmin {
    GroupAdmin::connect(
        bootstrap,
        GroupAdminOptions {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(3),
            deadline: Duration::from_secs(5),
            retry_backoff: Duration::from_millis(100),
        },
    )
    .unwrap()
}

/// Describes the group's committed offsets every 500 ms until `stop`.
async fn sample_offsets(bootstrap: Vec<String>, rec: Recorder, stop: Arc<AtomicBool>) {
    let admin = group_admin(bootstrap);
    while !stop.load(Ordering::SeqCst) {
        let at = rec.now();
        if let Ok(d) = admin.describe_group(GROUP).await {
            let offsets = d
                .group
                .offsets
                .iter()
                .filter(|o| o.topic == TOPIC && o.offset >= 0)
                .map(|o| (o.partition, o.offset))
                .collect();
            rec.with(|h| h.offset_samples.push(OffsetSample { at, offsets }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Asks every coordinator every 250 ms whether it is active (no
/// redirects: each answers for itself; a paused one does not answer).
async fn sample_coordinators(addresses: Vec<String>, rec: Recorder, stop: Arc<AtomicBool>) {
    let clients: Vec<_> = addresses.iter().map(|a| admin(a)).collect();
    while !stop.load(Ordering::SeqCst) {
        for (i, c) in clients.iter().enumerate() {
            let sent = rec.now();
            let mut c = c.clone();
            let answer = tokio::time::timeout(
                Duration::from_millis(500),
                c.get_cluster_info(pb::GetClusterInfoRequest {}),
            )
            .await;
            if let Ok(Ok(info)) = answer {
                let info = info.into_inner();
                let answered = rec.now();
                rec.with(|h| {
                    h.coordinator_samples.push(CoordinatorSample {
                        coordinator: i,
                        sent,
                        answered,
                        active: info.active,
                        epoch: info.coordinator_epoch,
                    })
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Where a reassignment moves `replicas` among agents `1..=agents`: when
/// an agent holds no replica, it takes the preferred leader's place at the
/// head of the list (its data is copied to the new agent, which then
/// leads, and the old leader's replica is removed); when every agent holds
/// one, a rotation (a new preferred leader, no data moved).
fn reassignment_target(replicas: &[i32], agents: i32) -> Vec<i32> {
    match (1..=agents).find(|a| !replicas.contains(a)) {
        Some(spare) if !replicas.is_empty() => {
            let mut target = vec![spare];
            target.extend_from_slice(&replicas[1..]);
            target
        }
        _ => {
            let mut target = replicas.to_vec();
            if !target.is_empty() {
                target.rotate_left(1);
            }
            target
        }
    }
}

#[test]
fn a_reassignment_moves_the_leader_to_the_spare_agent() {
    assert_eq!(reassignment_target(&[2, 3, 1], 4), [4, 3, 1]);
    assert_eq!(reassignment_target(&[4, 1, 2], 4), [3, 1, 2]);
    assert_eq!(reassignment_target(&[2, 3, 1], 3), [3, 1, 2]);
    assert!(reassignment_target(&[], 4).is_empty());
}

/// Moves `partition` to new replicas ([`reassignment_target`]: onto the
/// agent without a replica, which becomes the preferred leader), elects
/// the preferred leaders (the leader moves), waits `hold` and records how
/// the reassignment stands.
async fn reassign(
    cluster: &FaultCluster,
    admin: &AdminClient,
    partition: i32,
    hold: Duration,
    rec: &Recorder,
) {
    let at = rec.now();
    let original = cluster
        .describe_partitions(Duration::from_secs(5))
        .await
        .into_iter()
        .find(|p| p.topic == TOPIC && p.partition == partition)
        .map(|p| p.replicas)
        .unwrap_or_default();
    let agents = i32::try_from(cluster.shape().agents).unwrap_or(i32::MAX);
    let target = reassignment_target(&original, agents);
    let accepted = if target.is_empty() {
        Err("partition not described".to_owned())
    } else {
        admin
            .execute_reassignment(ExecuteReassignmentRequest {
                partitions: vec![ReassignmentPartition {
                    topic: TOPIC.into(),
                    partition,
                    replicas: target.clone(),
                }],
                ..Default::default()
            })
            .await
            .map(|r| r.id)
            .map_err(|e| e.to_string())
    };
    if let Err(e) = &accepted {
        eprintln!("faults: reassignment of partition {partition} not accepted: {e}");
    }
    tokio::time::sleep(hold / 2).await;
    if accepted.is_ok()
        && let Err(e) = admin.elect_preferred_leaders(Some(TOPIC)).await
    {
        eprintln!("faults: preferred leader election: {e}");
    }
    tokio::time::sleep(hold - hold / 2).await;
    let described = admin.describe_reassignment().await.ok().map(|d| {
        let p = d
            .partitions
            .iter()
            .find(|p| p.topic == TOPIC && p.partition == partition);
        ReassignmentOutcome {
            id: d.id.clone(),
            state: d.state.clone(),
            partition_state: p
                .map(|p| p.state().as_str_name().to_owned())
                .unwrap_or_default(),
            replicas: p.map(|p| p.replicas.clone()).unwrap_or_default(),
        }
    });
    if let Some(d) = &described {
        eprintln!(
            "faults: reassignment {} is {} (partition {partition}: {}, replicas {:?})",
            d.id, d.state, d.partition_state, d.replicas
        );
    }
    rec.with(|h| {
        h.reassignments.push(Reassignment {
            partition,
            original,
            target,
            at,
            accepted,
            described,
        })
    });
}

/// One look at partitions and the group.
async fn health_sample(cluster: &FaultCluster, admin: &GroupAdmin, at: Duration) -> HealthSample {
    let partitions = cluster.describe_partitions(Duration::from_secs(5)).await;
    let mut sample = HealthSample {
        at,
        partitions,
        group_state: String::new(),
        group_members: 0,
        stable_members: 0,
        assigned_partitions: 0,
    };
    if let Ok(d) = admin.describe_group(GROUP).await {
        let g = d.group;
        sample.group_state = g.state;
        sample.group_members = g.members.len();
        sample.stable_members = g.members.iter().filter(|m| m.state == "Stable").count();
        let assigned: BTreeSet<i32> = g
            .members
            .iter()
            .flat_map(|m| m.assignment.iter())
            .filter(|tp| tp.topic == TOPIC)
            .flat_map(|tp| tp.partitions.iter().copied())
            .collect();
        sample.assigned_partitions = assigned.len();
    }
    sample
}

/// Reads every partition from offset 0 up to its high watermark (at least
/// past the highest acknowledged offset), into the history's logs.
async fn read_logs(bootstrap: Vec<String>, rec: &Recorder) {
    let max_acked: BTreeMap<i32, i64> = rec.with(|h| {
        let mut m = BTreeMap::new();
        for a in &h.acks {
            let e = m.entry(a.partition).or_insert(a.offset);
            *e = (*e).max(a.offset);
        }
        m
    });
    let mut consumer = Consumer::connect(
        bootstrap,
        ConsumerConfig {
            request_timeout: Duration::from_secs(5),
            ..Default::default()
        },
    )
    .unwrap();
    consumer.assign(TOPIC, (0..PARTITIONS).map(|p| (p, StartPosition::Earliest)));
    let mut logs: BTreeMap<i32, Vec<(i64, String)>> =
        (0..PARTITIONS).map(|p| (p, Vec::new())).collect();
    let mut last_error = String::new();
    let deadline = Instant::now() + WAIT;
    let pending = |c: &Consumer| -> Vec<(i32, String)> {
        (0..PARTITIONS)
            .filter_map(|p| {
                let hw = c.high_watermark(TOPIC, p);
                let pos = c.position(TOPIC, p);
                let need = max_acked.get(&p).map_or(0, |o| o + 1);
                match (hw, pos) {
                    (Some(hw), Some(pos)) if pos >= hw && hw >= need => None,
                    _ => Some((
                        p,
                        format!(
                            "position {pos:?}, high watermark {hw:?}, highest ack + 1 = {need}"
                        ),
                    )),
                }
            })
            .collect()
    };
    loop {
        match consumer.poll(Duration::from_secs(1)).await {
            Ok(records) => {
                for r in records {
                    let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                        .into_owned();
                    if let Some(log) = logs.get_mut(&r.partition) {
                        log.push((r.offset, value));
                    }
                }
            }
            Err(e) => last_error = e.to_string(),
        }
        let left = pending(&consumer);
        if left.is_empty() || Instant::now() > deadline {
            rec.with(|h| {
                h.logs = logs;
                h.incomplete_reads = left
                    .into_iter()
                    .map(|(p, why)| (p, format!("{why}; last error: {last_error}")))
                    .collect();
            });
            return;
        }
    }
}

/// Keeps a failing run's evidence: process logs and the history.
fn keep_evidence(cluster: &FaultCluster, history: &History, seed: u64) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("faults-{seed}"));
    let _ = std::fs::create_dir_all(&dir);
    for (name, path) in cluster.log_files() {
        let _ = std::fs::copy(path, dir.join(format!("{name}.log")));
    }
    let _ = std::fs::write(dir.join("history.txt"), format!("{history:#?}"));
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_faults_keep_every_property() {
    let knobs = Knobs::from_env().expect("fault knobs");
    eprintln!("faults: {}", knobs.replay_commands());
    let mut cluster = FaultCluster::start("faults", WAIT)
        .await
        .expect("cluster starts");
    let shape = Shape {
        partitions: PARTITIONS,
        ..cluster.shape()
    };
    let steps = plan(knobs.seed, knobs.duration, shape, Timing::DEFAULT);
    eprintln!(
        "faults: seed {} ({}), fault phase {:?}, {} faults over {:?}",
        knobs.seed,
        if knobs.seed_given { "given" } else { "fresh" },
        knobs.duration,
        steps.len(),
        shape.kinds()
    );
    let coordinators = cluster.coordinators().to_vec();
    on_active(&coordinators, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: TOPIC.into(),
            partitions: PARTITIONS,
            replication_factor: REPLICATION as i32,
            configs: [("min.insync.replicas".to_string(), "2".to_string())]
                .into_iter()
                .collect(),
            request_id: "faults-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .expect("create topic");
    eventually("the topic in full ISR", WAIT, || async {
        let parts = cluster.describe_partitions(Duration::from_secs(5)).await;
        let ours: Vec<_> = parts.iter().filter(|p| p.topic == TOPIC).collect();
        (ours.len() == PARTITIONS as usize
            && ours
                .iter()
                .all(|p| p.leader >= 0 && p.isr.len() == REPLICATION))
        .then_some(())
    })
    .await;

    let rec = Recorder {
        start: Instant::now(),
        history: Arc::new(Mutex::new(History {
            topic: TOPIC.into(),
            partitions: PARTITIONS,
            replication_factor: REPLICATION,
            group_members: MEMBERS,
            ..Default::default()
        })),
    };
    let bootstrap = cluster.agents().to_vec();
    let stop_producers = Arc::new(AtomicBool::new(false));
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let mut producers = JoinSet::new();
    for p in 0..PRODUCERS {
        producers.spawn(produce(
            p,
            bootstrap.clone(),
            rec.clone(),
            stop_producers.clone(),
        ));
    }
    let mut members = JoinSet::new();
    for m in 0..MEMBERS {
        members.spawn(consume(
            format!("c{m}"),
            bootstrap.clone(),
            rec.clone(),
            stop_consumers.clone(),
        ));
    }
    let sampler = tokio::spawn(sample_offsets(
        bootstrap.clone(),
        rec.clone(),
        stop_consumers.clone(),
    ));
    let stop_coordinator_sampler = Arc::new(AtomicBool::new(false));
    let coordinator_sampler = tokio::spawn(sample_coordinators(
        coordinators.clone(),
        rec.clone(),
        stop_coordinator_sampler.clone(),
    ));
    let reassigner = AdminClient::connect(coordinators.clone(), AdminOptions::default()).unwrap();
    tokio::time::sleep(WARM_UP).await;

    // The fault phase. inject/heal block this task (not the workload's).
    let phase = tokio::time::Instant::now();
    let mut heal_errors = Vec::new();
    for step in &steps {
        tokio::time::sleep_until(phase + step.at).await;
        let start = rec.now();
        eprintln!(
            "faults: {:>7.1}s {} for {:?}",
            start.as_secs_f64(),
            step.fault,
            step.hold
        );
        // A pause or a cut of "coordinator i" hits the active one when
        // there is one (the schedule cannot know which): the standby must
        // take over and the deposed one must not act after the heal.
        let active = match step.fault {
            Fault::PauseCoordinator(_) | Fault::IsolateCoordinator(_) => find_active(&coordinators)
                .await
                .and_then(|(a, epoch)| Some((coordinators.iter().position(|c| *c == a)?, epoch))),
            _ => None,
        };
        let fault = match (step.fault, active) {
            (Fault::PauseCoordinator(_), Some((i, _))) => Fault::PauseCoordinator(i),
            (Fault::IsolateCoordinator(_), Some((i, _))) => Fault::IsolateCoordinator(i),
            (f, _) => f,
        };
        if let Some((i, epoch)) = active {
            eprintln!(
                "faults:          (coordinator {} is the active one, epoch {epoch})",
                i + 1
            );
        }
        if let Fault::Reassign(p) = step.fault {
            reassign(&cluster, &reassigner, p, step.hold, &rec).await;
            let end = rec.now();
            rec.with(|h| h.faults.push((start, end, step.fault)));
            continue;
        }
        cluster
            .inject(fault)
            .unwrap_or_else(|e| panic!("inject {fault}: {e:#}\n{}", knobs.replay_commands()));
        tokio::time::sleep(step.hold).await;
        if matches!(
            step.fault,
            Fault::FillDisk(_)
                | Fault::IsolateAgent(_)
                | Fault::PauseCoordinator(_)
                | Fault::IsolateCoordinator(_)
        ) {
            // What the fault did, for the log: the ISRs and who is active.
            let isr: Vec<String> = cluster
                .describe_partitions(Duration::from_secs(3))
                .await
                .iter()
                .filter(|p| p.topic == TOPIC)
                .map(|p| format!("{}:{:?}", p.partition, p.isr))
                .collect();
            let active = rec.with(|h| {
                h.coordinator_samples
                    .iter()
                    .rev()
                    .find(|c| c.active)
                    .map(|c| (c.coordinator + 1, c.epoch))
            });
            eprintln!(
                "faults:          before healing: ISR {isr:?}, active coordinator {active:?}"
            );
        }
        if let Err(e) = cluster.heal(fault) {
            eprintln!("faults: healing {fault} failed: {e:#}");
            heal_errors.push(format!("{fault}: {e:#}"));
        }
        let end = rec.now();
        rec.with(|h| {
            h.faults.push((start, end, fault));
            if let (Fault::IsolateCoordinator(i), Some((_, epoch))) = (fault, active) {
                h.isolations.push(CoordinatorIsolation {
                    coordinator: i,
                    epoch,
                    start,
                    end,
                });
            }
        });
    }
    // Heal-all right after the last fault's heal, so that property 4
    // measures the recovery from it.
    if steps.is_empty() {
        tokio::time::sleep_until(phase + knobs.duration).await;
    }
    if let Err(e) = cluster.heal_all() {
        eprintln!("faults: healing everything failed: {e:#}");
        heal_errors.push(format!("heal all: {e:#}"));
    }
    let healed_at = rec.now();
    rec.with(|h| h.healed_at = Some(healed_at));
    eprintln!("faults: {:>7.1}s healed", healed_at.as_secs_f64());

    // Property 4's observations, while the workload still runs.
    let admin = group_admin(bootstrap.clone());
    let look_until = Instant::now() + HEAL_BOUND + Duration::from_secs(5);
    loop {
        let sample = health_sample(&cluster, &admin, rec.now()).await;
        let healthy = rec.with(|h| {
            let ok = healed::problems(&sample, h).is_empty();
            h.health.push(sample);
            ok
        });
        if healthy || Instant::now() > look_until {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    stop_producers.store(true, Ordering::SeqCst);
    while producers.join_next().await.is_some() {}
    stop_consumers.store(true, Ordering::SeqCst);
    let mut poll_errors = 0;
    while let Some(n) = members.join_next().await {
        poll_errors += n.unwrap_or(0);
    }
    let _ = sampler.await;
    stop_coordinator_sampler.store(true, Ordering::SeqCst);
    let _ = coordinator_sampler.await;
    read_logs(bootstrap.clone(), &rec).await;
    rec.with(|h| h.end = rec.now());

    let history = rec.history.lock().unwrap().clone();
    eprintln!(
        "faults: {} acked, {} failed sends, {} commits, {} ownership changes, {} offset samples, {} member poll errors, {:.1}s",
        history.acks.len(),
        history.failures.len(),
        history.commits.len(),
        history.ownership.len(),
        history.offset_samples.len(),
        poll_errors,
        history.end.as_secs_f64()
    );
    let reports = check::all(&history, HEAL_BOUND);
    let mut failed = Vec::new();
    for r in &reports {
        eprintln!("faults: {r}");
        if !r.passed() {
            let known = KNOWN_BUGS.contains(&r.property);
            if known && !knobs.strict {
                eprintln!(
                    "faults: ^ a known product bug (docs/RELIABILITY.md); fails only with BALLAST_FAULTS_STRICT=1"
                );
            } else {
                failed.push(r.property);
            }
        }
    }
    if !failed.is_empty() || !heal_errors.is_empty() {
        let evidence = keep_evidence(&cluster, &history, knobs.seed);
        cluster.stop();
        panic!(
            "fault run with seed {} failed: {:?}{}\nevidence: {}\n{}",
            knobs.seed,
            failed,
            if heal_errors.is_empty() {
                String::new()
            } else {
                format!("; heal errors: {heal_errors:?}")
            },
            evidence.display(),
            knobs.replay_commands()
        );
    }
    cluster.stop();
}
