//! Scenario `many`: 10,000 groups on one coordinator. The coordinator runs
//! with `--offsets-partitions 1`, so the one agent leading
//! `__consumer_offsets-0` coordinates every group. Each group has one
//! member subscribed to a 4-partition topic (it owns all four) and commits
//! one offset per partition once. Measured on that agent: VmRSS before the
//! groups, after the joins, after the commits and after the steady window;
//! then CPU time (/proc/<pid>/stat) over a steady window in which every
//! member heartbeats at the interval the coordinator returns, divided by
//! the heartbeats answered in it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use ballast_proto::v1::{self as pb, ErrorCode};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::cluster::{
    Cluster, clients, clock_ticks, cpu_seconds, load_average, rss, rss_line, status_bytes,
};
use crate::member::{self, Board, Counters, Env, MemberHandle, Spec};
use crate::{Opts, fmt_num};

const TOPIC: &str = "events";
const PARTITIONS: i32 = 4;
/// Joins and commits in flight while setting up.
const SETUP_CONCURRENCY: usize = 64;

pub(crate) async fn bench_many(o: &Opts) -> Result<()> {
    let groups = o.scaled(10_000);
    let interval = o.many_interval;
    let interval_flag = format!("{}ms", interval.as_millis());
    println!(
        "\n== many: {groups} groups x 1 member on one coordinator (--offsets-partitions 1), heartbeat interval {interval_flag} ==",
    );
    let cluster = Cluster::start(
        &["--offsets-partitions", "1"],
        &["--group-heartbeat-interval", &interval_flag],
    )
    .await?;
    cluster.create_topic(TOPIC, PARTITIONS, 1).await?;
    let group_id = |i: usize| format!("group-{i:05}");
    let (coordinator_id, address) = cluster.coordinator_of(&group_id(0)).await?;
    let pid = cluster.agent_pid(coordinator_id)?;
    let pids = cluster.agent_pids()?;
    let ticks = clock_ticks();
    // Let the agents finish hosting the topics before the baseline.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss0 = rss(pid)?;
    let anon = |pid| status_bytes(pid, "RssAnon:");
    let anon0 = anon(pid)?;
    println!(
        "  coordinator: agent {coordinator_id} (pid {pid}); before the groups {}; load {}",
        rss_line(pid)?,
        load_average()
    );

    // Joins, 64 in flight; each member then heartbeats at the interval.
    let pool = clients(&address, o.channels);
    let env = Env {
        board: Arc::new(Board::default()),
        counters: Arc::new(Counters::default()),
        join_permits: Some(Arc::new(Semaphore::new(SETUP_CONCURRENCY))),
    };
    let started = Instant::now();
    let members: Vec<MemberHandle> = (0..groups)
        .map(|i| {
            member::spawn(
                pool[i % pool.len()].clone(),
                Spec {
                    group: group_id(i),
                    member: format!("member-{i:05}"),
                    topic: TOPIC.into(),
                },
                Duration::ZERO,
                env.clone(),
            )
        })
        .collect();
    let epochs: Vec<i32> = loop {
        let ready: Option<Vec<i32>> = {
            let views = env.board.lock();
            (0..groups)
                .map(|i| {
                    views
                        .get(&format!("member-{i:05}"))
                        .filter(|v| v.epoch > 0 && v.owned.len() == PARTITIONS as usize)
                        .map(|v| v.epoch)
                })
                .collect()
        };
        if let Some(e) = ready {
            break e;
        }
        ensure!(
            started.elapsed() < crate::cluster::WAIT,
            "groups not joined within {:?} ({})",
            crate::cluster::WAIT,
            env.counters.problems()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let joined = started.elapsed();
    let (rss1, anon1) = (rss(pid)?, anon(pid)?);
    println!(
        "  {groups} joins ({SETUP_CONCURRENCY} in flight): {:.2} s = {} joins/s; {}: +{:.0} bytes per group (anon +{:.0}); {}",
        joined.as_secs_f64(),
        fmt_num(groups as f64 / joined.as_secs_f64()),
        rss_line(pid)?,
        rss1.saturating_sub(rss0) as f64 / groups as f64,
        anon1.saturating_sub(anon0) as f64 / groups as f64,
        env.counters.problems()
    );

    // One commit of all four partitions per group.
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let refused = Arc::new(AtomicU64::new(0));
    let mut commits = JoinSet::new();
    for (i, epoch) in epochs.iter().copied().enumerate() {
        let permit = Arc::clone(&permits).acquire_owned().await?;
        let mut client = pool[i % pool.len()].clone();
        let refused = Arc::clone(&refused);
        commits.spawn(async move {
            let r = client
                .commit_offsets(pb::CommitOffsetsRequest {
                    group_id: format!("group-{i:05}"),
                    member_id: format!("member-{i:05}"),
                    member_epoch: epoch,
                    partitions: (0..PARTITIONS)
                        .map(|p| pb::CommitPartition {
                            topic: TOPIC.into(),
                            partition: p,
                            offset: 1_000 + i64::from(p),
                            leader_epoch: 0,
                            metadata: String::new(),
                        })
                        .collect(),
                })
                .await;
            let ok = r.is_ok_and(|r| {
                let r = r.into_inner();
                r.error == ErrorCode::None as i32
                    && r.results.iter().all(|p| p.error == ErrorCode::None as i32)
            });
            if !ok {
                refused.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        });
        while commits.try_join_next().is_some() {}
    }
    while commits.join_next().await.is_some() {}
    let committed = started.elapsed();
    let (rss2, anon2) = (rss(pid)?, anon(pid)?);
    println!(
        "  {groups} commits of {PARTITIONS} offsets ({SETUP_CONCURRENCY} in flight): {:.2} s = {} commits/s, {} refused; {}: +{:.0} bytes per group since the joins (anon +{:.0})",
        committed.as_secs_f64(),
        fmt_num(groups as f64 / committed.as_secs_f64()),
        refused.load(Ordering::Relaxed),
        rss_line(pid)?,
        rss2.saturating_sub(rss1) as f64 / groups as f64,
        anon2.saturating_sub(anon1) as f64 / groups as f64
    );

    // Steady state: one interval to spread out, then the window.
    tokio::time::sleep(interval).await;
    let window = o.window;
    let problems0 = env.counters.problem_count();
    let ok0 = env.counters.ok();
    let cpu0: Vec<(i32, f64)> = pids
        .iter()
        .map(|(&id, &p)| Ok((id, cpu_seconds(p, ticks)?)))
        .collect::<Result<_>>()?;
    let self0 = cpu_seconds(0, ticks)?;
    let t0 = Instant::now();
    // RssAnon every fifth of the window: growth while nothing but
    // heartbeats happens would be a leak or allocator fragmentation.
    let mut samples = Vec::new();
    for k in 1..=5u32 {
        tokio::time::sleep_until((t0 + window * k / 5).into()).await;
        samples.push(format!("{:.1}", anon(pid)? as f64 / (1024.0 * 1024.0)));
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let beats = env.counters.ok() - ok0;
    let cpu1: Vec<(i32, f64)> = pids
        .iter()
        .map(|(&id, &p)| Ok((id, cpu_seconds(p, ticks)?)))
        .collect::<Result<_>>()?;
    let self1 = cpu_seconds(0, ticks)?;
    let (rss3, anon3) = (rss(pid)?, anon(pid)?);
    let per_1000 = |cpu: f64| cpu / beats.max(1) as f64 * 1000.0;
    println!(
        "  steady window {elapsed:.1} s: {beats} heartbeats answered = {} /s (expected {} /s); {} new problems; load {}",
        fmt_num(beats as f64 / elapsed),
        fmt_num(groups as f64 / interval.as_secs_f64()),
        env.counters.problem_count() - problems0,
        load_average()
    );
    for ((id, c0), (_, c1)) in cpu0.iter().zip(&cpu1) {
        let cpu = c1 - c0;
        let role = if *id == coordinator_id {
            "coordinator"
        } else {
            "follower of the offsets partition"
        };
        println!(
            "    agent {id} ({role}): CPU {cpu:.2} s = {:.1}% of one core; {:.3} CPU-s per 1,000 heartbeats",
            cpu / elapsed * 100.0,
            per_1000(cpu)
        );
    }
    println!(
        "    bench process (the {groups} simulated members): CPU {:.2} s = {:.3} CPU-s per 1,000 heartbeats",
        self1 - self0,
        per_1000(self1 - self0)
    );
    println!(
        "  coordinating agent after the window: {}: {:.0} bytes per group over the baseline (anon {:.0}); RssAnon during the window {} MiB; {}",
        rss_line(pid)?,
        rss3.saturating_sub(rss0) as f64 / groups as f64,
        anon3.saturating_sub(anon0) as f64 / groups as f64,
        samples.join(" / "),
        env.counters.problems()
    );
    // Not a clean leave: 10,000 leaves are 10,000 writes, and the cluster
    // goes away with the members.
    drop(members);
    drop(cluster);
    Ok(())
}
