//! Consumer groups end to end with real processes: etcd, a coordinator,
//! three agents and `ballast consume --group` processes as members, each
//! recording its membership events (`--events`) and printing what it
//! consumed (`topic:partition:offset`).
//!
//! Three members join and own Kafka's range assignment; one is killed with
//! SIGKILL and after its session timeout the two survivors own the range
//! assignment for two; a partition-count increase and a subscription change
//! (a static member restarting with one more topic) each bump the group
//! epoch and end in the range assignment again; the agent hosting the
//! group's coordinator is killed with SIGKILL: every offset committed
//! before is there afterwards and consumption resumes from the committed
//! offsets, so every record produced is consumed by some member. Across
//! all of it, the ownership intervals the members recorded never overlap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ballast_assignor::{Member as RangeMember, TopicPartitions as RangeTopic, range_assign};
use ballast_client::producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use ballast_proto::v1::group_client::GroupClient;
use ballast_proto::v1::{self as pb, ErrorCode};
use ballast_tests::bin_path::ballast_bin;
use ballast_tests::cluster::{
    channel, committed_offsets, find_active, group_coordinator, high_watermark, on_active,
    start_agent, start_coordinator, wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{BallastProcess, eventually};

const WAIT: Duration = Duration::from_secs(90);
const GROUP: &str = "ledger-readers";
const EVENTS: &str = "events";
const AUDIT: &str = "audit";
/// Members' session timeout: longer than an agent failover (the agent
/// session is 3 s), so the coordinator's move costs no member its place.
const SESSION_MS: &str = "8000";

type Tp = (String, i32);

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// One `ballast consume --group` process.
struct Member {
    name: String,
    child: Option<Child>,
    events: PathBuf,
    stdout: PathBuf,
    /// When it was killed with SIGKILL (µs), closing its open intervals.
    killed_at: Option<i64>,
}

impl Member {
    fn start(
        dir: &Path,
        name: &str,
        bootstrap: &str,
        topics: &[&str],
        instance: Option<&str>,
    ) -> Member {
        let events = dir.join(format!("{name}.events"));
        let stdout = dir.join(format!("{name}.out"));
        let stderr = dir.join(format!("{name}.err"));
        let mut args: Vec<String> = vec![
            "consume".into(),
            "--group".into(),
            GROUP.into(),
            "--from-beginning".into(),
            "--print-offset".into(),
            "--session-timeout-ms".into(),
            SESSION_MS.into(),
            "--auto-commit-interval-ms".into(),
            "200".into(),
            "--events".into(),
            events.to_string_lossy().into_owned(),
            "--bootstrap".into(),
            bootstrap.into(),
        ];
        for t in topics {
            args.push("--topic".into());
            args.push((*t).into());
        }
        if let Some(i) = instance {
            args.push("--instance-id".into());
            args.push(i.into());
        }
        let child = Command::new(ballast_bin())
            .args(&args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(std::fs::File::create(&stdout).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
            .spawn()
            .unwrap();
        Member {
            name: name.into(),
            child: Some(child),
            events,
            stdout,
            killed_at: None,
        }
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([format!("-{sig}"), c.id().to_string()])
                .status();
        }
    }

    fn kill9(&mut self) {
        self.signal("KILL");
        self.killed_at = Some(now_us());
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// SIGTERM: commit and leave; waits for the exit.
    fn terminate(&mut self) {
        self.signal("TERM");
        if let Some(mut c) = self.child.take() {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    panic!("{} did not stop on SIGTERM", self.name);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.events)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Its member id (from its first event).
    fn member_id(&self) -> Option<String> {
        self.lines()
            .iter()
            .find_map(|e| e["member_id"].as_str().map(str::to_owned))
    }

    /// What it owns now, replaying its events.
    fn owned(&self) -> BTreeSet<Tp> {
        let mut owned = BTreeSet::new();
        for e in self.lines() {
            for tp in partitions(&e) {
                match e["event"].as_str() {
                    Some("assigned") => {
                        owned.insert(tp);
                    }
                    Some("revoked" | "lost") => {
                        owned.remove(&tp);
                    }
                    _ => {}
                }
            }
        }
        owned
    }

    /// Offsets it printed, by partition.
    fn consumed(&self) -> BTreeMap<Tp, BTreeSet<i64>> {
        let mut out: BTreeMap<Tp, BTreeSet<i64>> = BTreeMap::new();
        for line in std::fs::read_to_string(&self.stdout)
            .unwrap_or_default()
            .lines()
        {
            let first = line.split('\t').next().unwrap_or_default();
            let mut parts = first.rsplitn(3, ':');
            let (Some(o), Some(p), Some(t)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            if let (Ok(o), Ok(p)) = (o.parse::<i64>(), p.parse::<i32>()) {
                out.entry((t.to_owned(), p)).or_default().insert(o);
            }
        }
        out
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn partitions(e: &serde_json::Value) -> Vec<Tp> {
    e["partitions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|tp| Some((tp[0].as_str()?.to_owned(), tp[1].as_i64()? as i32)))
                .collect()
        })
        .unwrap_or_default()
}

/// Kafka's range assignment for members (member id, instance id, topics).
fn expected(
    members: &[(String, Option<String>, Vec<&str>)],
    counts: &[(&str, u32)],
) -> BTreeMap<String, BTreeSet<Tp>> {
    let ms: Vec<RangeMember> = members
        .iter()
        .map(|(id, inst, topics)| RangeMember {
            member_id: id.clone(),
            group_instance_id: inst.clone(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
        })
        .collect();
    let topics: Vec<RangeTopic> = counts
        .iter()
        .map(|(t, n)| RangeTopic {
            name: t.to_string(),
            partitions: *n,
        })
        .collect();
    range_assign(&topics, &ms)
        .unwrap()
        .into_iter()
        .map(|(m, per)| {
            let set = per
                .into_iter()
                .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
                .collect();
            (m, set)
        })
        .collect()
}

/// Waits until every listed member owns exactly its range share.
async fn wait_for_range(
    what: &str,
    members: &[&Member],
    spec: &[(Option<&str>, Vec<&str>)],
    counts: &[(&str, u32)],
) {
    eventually(what, WAIT, || async {
        let mut list = Vec::new();
        for (m, (inst, topics)) in members.iter().zip(spec) {
            list.push((m.member_id()?, inst.map(str::to_owned), topics.clone()));
        }
        let want = expected(&list, counts);
        let ok = members
            .iter()
            .zip(&list)
            .all(|(m, (id, _, _))| m.owned() == want[id]);
        ok.then_some(())
    })
    .await;
}

/// Ownership intervals from every member's events must not overlap.
fn assert_no_double_ownership(members: &[&Member]) {
    let end = now_us() + 1;
    let mut intervals: BTreeMap<Tp, Vec<(i64, i64, String)>> = BTreeMap::new();
    for m in members {
        let mut open: BTreeMap<Tp, i64> = BTreeMap::new();
        for e in m.lines() {
            let ts = e["ts_us"].as_i64().unwrap_or(0);
            for tp in partitions(&e) {
                match e["event"].as_str() {
                    Some("assigned") => {
                        open.insert(tp, ts);
                    }
                    Some("revoked" | "lost") => {
                        if let Some(start) = open.remove(&tp) {
                            intervals
                                .entry(tp)
                                .or_default()
                                .push((start, ts, m.name.clone()));
                        }
                    }
                    _ => {}
                }
            }
        }
        let close = m.killed_at.unwrap_or(end);
        for (tp, start) in open {
            intervals
                .entry(tp)
                .or_default()
                .push((start, close, m.name.clone()));
        }
    }
    for (tp, mut list) in intervals {
        list.sort();
        for w in list.windows(2) {
            assert!(
                w[0].1 <= w[1].0,
                "{tp:?} owned by {} until {} and by {} from {}",
                w[0].2,
                w[0].1,
                w[1].2,
                w[1].0
            );
        }
    }
}

async fn group_epoch(address: &str) -> Option<i32> {
    let mut c = GroupClient::new(channel(address));
    let r = c
        .describe_group(pb::DescribeGroupRequest {
            group_id: GROUP.into(),
        })
        .await
        .ok()?
        .into_inner();
    (r.error == ErrorCode::None as i32).then_some(r.group_epoch)
}

/// (broker id, address) of the group's coordinator, as the agents report it.
async fn coordinator(bootstrap: &[String]) -> Option<(i32, String)> {
    group_coordinator(bootstrap, GROUP).await
}

async fn committed(address: &str) -> Option<BTreeMap<Tp, i64>> {
    let all = committed_offsets(address, GROUP).await?;
    Some(all.into_iter().map(|(tp, (o, _))| (tp, o)).collect())
}

async fn produce(
    bootstrap: &[String],
    topic: &str,
    partitions: i32,
    per_partition: usize,
    tag: &str,
) {
    let p = Producer::connect(
        bootstrap.to_vec(),
        ProducerConfig {
            acks: Acks::All,
            delivery_timeout: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .unwrap();
    let mut pending = Vec::new();
    for i in 0..per_partition {
        for partition in 0..partitions {
            pending.push(p.send(ProducerRecord {
                partition: Some(partition),
                ..ProducerRecord::new(topic, format!("{tag}-{partition}-{i}").into_bytes())
            }));
        }
    }
    for f in pending {
        f.await.unwrap();
    }
}

/// The high watermark of every partition of `topic`, from its leaders.
async fn ends(bootstrap: &[String], topic: &str, partitions: i32) -> BTreeMap<Tp, i64> {
    let mut out = BTreeMap::new();
    for p in 0..partitions {
        let hw = eventually("a leader answers ListOffsets", WAIT, || async {
            for a in bootstrap {
                if let Some(hw) = high_watermark(a, topic, p).await {
                    return Some(hw);
                }
            }
            None
        })
        .await;
        out.insert((topic.to_owned(), p), hw);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_rebalance_without_double_ownership_and_offsets_survive_coordinator_failover() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator_process = start_coordinator(&etcd.endpoints(), "groups-e2e");
    let addrs = vec![coordinator_process.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dirs = tempfile::tempdir().unwrap();
    let group_flags = [
        "--group-heartbeat-interval",
        "200ms",
        "--replica-lag-time-max",
        "2s",
    ];
    let mut agents: BTreeMap<i32, BallastProcess> = (1..=3)
        .map(|id| {
            let dir = dirs.path().join(format!("b{id}"));
            (id, start_agent(&addrs[0], id, &dir, &group_flags))
        })
        .collect();
    let bootstrap: Vec<String> = agents.values().map(|a| a.address().to_owned()).collect();
    let bootstrap_flag = bootstrap.join(",");
    wait_live_brokers(&addrs, 3, WAIT).await;
    for (name, n) in [(EVENTS, 6), (AUDIT, 2)] {
        on_active(&addrs, WAIT, |mut c| async move {
            c.create_topic(pb::CreateTopicRequest {
                name: name.into(),
                partitions: n,
                replication_factor: 3,
                configs: [("min.insync.replicas".to_string(), "2".to_string())]
                    .into_iter()
                    .collect(),
                request_id: format!("{name}-1"),
                ..Default::default()
            })
            .await
        })
        .await
        .unwrap();
    }
    produce(&bootstrap, EVENTS, 6, 30, "a").await;
    produce(&bootstrap, AUDIT, 2, 10, "a").await;
    eventually("a coordinator for the group", WAIT, || {
        coordinator(&bootstrap)
    })
    .await;

    let work = dirs.path().join("members");
    std::fs::create_dir_all(&work).unwrap();
    let only_events = || (None, vec![EVENTS]);
    let mut m1 = Member::start(&work, "m1", &bootstrap_flag, &[EVENTS], None);
    let mut m2 = Member::start(&work, "m2", &bootstrap_flag, &[EVENTS], None);
    let mut m3 = Member::start(&work, "m3", &bootstrap_flag, &[EVENTS], None);
    wait_for_range(
        "three members own the range assignment",
        &[&m1, &m2, &m3],
        &[only_events(), only_events(), only_events()],
        &[(EVENTS, 6)],
    )
    .await;
    assert_no_double_ownership(&[&m1, &m2, &m3]);

    // SIGKILL one member: after its session timeout the two survivors own
    // the range assignment for two.
    m2.kill9();
    wait_for_range(
        "the survivors take over after the session timeout",
        &[&m1, &m3],
        &[only_events(), only_events()],
        &[(EVENTS, 6)],
    )
    .await;
    assert_no_double_ownership(&[&m1, &m2, &m3]);

    // A partition-count increase is a rebalance trigger.
    let (_, coord) = coordinator(&bootstrap).await.unwrap();
    let before = eventually("group epoch", WAIT, || group_epoch(&coord)).await;
    on_active(&addrs, WAIT, |mut c| async move {
        c.add_partitions(pb::AddPartitionsRequest {
            name: EVENTS.into(),
            total_partitions: 8,
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap();
    wait_for_range(
        "the new partitions are assigned",
        &[&m1, &m3],
        &[only_events(), only_events()],
        &[(EVENTS, 8)],
    )
    .await;
    let after = group_epoch(&coord).await.unwrap();
    assert!(
        after > before,
        "partition count change bumps the group epoch ({before} -> {after})"
    );
    produce(&bootstrap, EVENTS, 8, 10, "b").await;

    // A subscription change: a static member restarts (within its session)
    // subscribed to one more topic, and takes its place with the new
    // subscription.
    let mut s1 = Member::start(&work, "s1", &bootstrap_flag, &[EVENTS], Some("static-1"));
    wait_for_range(
        "a static member joins",
        &[&s1, &m1, &m3],
        &[
            (Some("static-1"), vec![EVENTS]),
            only_events(),
            only_events(),
        ],
        &[(EVENTS, 8)],
    )
    .await;
    let before = group_epoch(&coord).await.unwrap();
    s1.terminate();
    let s1b = Member::start(
        &work,
        "s1b",
        &bootstrap_flag,
        &[EVENTS, AUDIT],
        Some("static-1"),
    );
    wait_for_range(
        "the subscription change is assigned",
        &[&s1b, &m1, &m3],
        &[
            (Some("static-1"), vec![EVENTS, AUDIT]),
            only_events(),
            only_events(),
        ],
        &[(EVENTS, 8), (AUDIT, 2)],
    )
    .await;
    let after = group_epoch(&coord).await.unwrap();
    assert_eq!(
        after,
        before + 1,
        "one bump for the subscription change, none for the restart"
    );
    assert_no_double_ownership(&[&m1, &m2, &m3, &s1, &s1b]);

    // Everything produced so far gets consumed and committed.
    let targets = {
        let mut t = ends(&bootstrap, EVENTS, 8).await;
        t.extend(ends(&bootstrap, AUDIT, 2).await);
        t
    };
    eventually("every record so far is committed", WAIT, || async {
        let c = committed(&coord).await?;
        targets
            .iter()
            .all(|(tp, end)| c.get(tp).copied().unwrap_or(-1) >= *end)
            .then_some(())
    })
    .await;

    // SIGKILL the agent hosting the coordinator.
    let (coord_id, coord) = coordinator(&bootstrap).await.unwrap();
    let before_kill = committed(&coord).await.unwrap();
    agents.get_mut(&coord_id).unwrap().kill();
    let live: Vec<String> = agents
        .iter()
        .filter(|(id, _)| **id != coord_id)
        .map(|(_, a)| a.address().to_owned())
        .collect();
    let (_, new_coord) = eventually("a new coordinator", WAIT, || {
        let live = live.clone();
        async move { coordinator(&live).await.filter(|(id, _)| *id != coord_id) }
    })
    .await;
    let after_kill = eventually("offsets from the new coordinator", WAIT, || {
        committed(&new_coord)
    })
    .await;
    for (tp, offset) in &before_kill {
        let now = after_kill.get(tp).copied().unwrap_or(-1);
        assert!(
            now >= *offset,
            "{tp:?}: committed {offset} before the kill, {now} after"
        );
    }

    // Consumption resumes from the committed offsets: records produced
    // after the failover are all consumed.
    produce(&live, EVENTS, 8, 10, "c").await;
    produce(&live, AUDIT, 2, 10, "c").await;
    let mut targets = ends(&live, EVENTS, 8).await;
    targets.extend(ends(&live, AUDIT, 2).await);
    let all = [&m1, &m2, &m3, &s1, &s1b];
    eventually("every record is consumed", WAIT, || async {
        let mut seen: BTreeMap<Tp, BTreeSet<i64>> = BTreeMap::new();
        for m in all {
            for (tp, offsets) in m.consumed() {
                seen.entry(tp).or_default().extend(offsets);
            }
        }
        targets
            .iter()
            .all(|(tp, end)| (0..*end).all(|o| seen.get(tp).is_some_and(|s| s.contains(&o))))
            .then_some(())
    })
    .await;
    // The members kept their partitions across the coordinator's move.
    wait_for_range(
        "still the range assignment",
        &[&s1b, &m1, &m3],
        &[
            (Some("static-1"), vec![EVENTS, AUDIT]),
            only_events(),
            only_events(),
        ],
        &[(EVENTS, 8), (AUDIT, 2)],
    )
    .await;
    assert_no_double_ownership(&all);
    let mut s1b = s1b;
    for m in [&mut m1, &mut m3, &mut s1b] {
        m.terminate();
    }
}
