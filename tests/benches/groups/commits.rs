//! Scenario `commits`: offset commits per second against one coordinator
//! (`--offsets-partitions 1`; the offsets topic has RF 3 and
//! min.insync.replicas 2, and every commit is appended with acks=all and
//! answered once replicated). C committers in flight (1, 16, 64), each a
//! simple consumer of its own group (no members: member id "" and epoch
//! -1) committing one partition's offset per request, back to back, for a
//! fixed time after a short warm-up. Reports commits/s, latency
//! percentiles and the agents' CPU per 1,000 commits.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use ballast_proto::v1::{self as pb, ErrorCode};
use tokio::task::JoinSet;

use crate::cluster::{Cluster, clients, clock_ticks, cpu_seconds, load_average};
use crate::{Opts, fmt_ms, fmt_num, percentile};

const TOPIC: &str = "events";
const WARM_UP: Duration = Duration::from_millis(500);

pub(crate) async fn bench_commits(o: &Opts) -> Result<()> {
    println!(
        "\n== commits: offset commits against one coordinator (--offsets-partitions 1, RF 3, acks=all), {} per level ==",
        fmt_ms(o.commit_time)
    );
    let cluster = Cluster::start(&["--offsets-partitions", "1"], &[]).await?;
    cluster.create_topic(TOPIC, 64, 1).await?;
    let (coordinator_id, address) = cluster.coordinator_of("committer-0").await?;
    let pids = cluster.agent_pids()?;
    let ticks = clock_ticks();
    let pool = clients(&address, o.channels);
    println!(
        "  coordinator: agent {coordinator_id}; load {}",
        load_average()
    );
    for &c in &o.commit_concurrency {
        let stop_at = Instant::now() + WARM_UP + o.commit_time;
        let measure_from = Instant::now() + WARM_UP;
        let mut workers = JoinSet::new();
        for w in 0..c {
            let mut client = pool[w % pool.len()].clone();
            workers.spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let mut offset = 0i64;
                loop {
                    let now = Instant::now();
                    if now >= stop_at {
                        break;
                    }
                    offset += 1;
                    let r = client
                        .commit_offsets(pb::CommitOffsetsRequest {
                            group_id: format!("committer-{w}"),
                            member_id: String::new(),
                            member_epoch: -1,
                            partitions: vec![pb::CommitPartition {
                                topic: TOPIC.into(),
                                partition: (w % 64) as i32,
                                offset,
                                leader_epoch: 0,
                                metadata: String::new(),
                            }],
                        })
                        .await;
                    let ok = r.is_ok_and(|r| {
                        let r = r.into_inner();
                        r.error == ErrorCode::None as i32
                            && r.results.iter().all(|p| p.error == ErrorCode::None as i32)
                    });
                    if now >= measure_from {
                        if ok {
                            latencies.push(now.elapsed());
                        } else {
                            errors += 1;
                        }
                    }
                }
                (latencies, errors)
            });
        }
        tokio::time::sleep_until(measure_from.into()).await;
        let cpu0: Vec<f64> = pids
            .values()
            .map(|&p| cpu_seconds(p, ticks))
            .collect::<Result<_>>()?;
        let t0 = Instant::now();
        let mut latencies = Vec::new();
        let mut errors = 0;
        while let Some(r) = workers.join_next().await {
            let (l, e) = r?;
            latencies.extend(l);
            errors += e;
        }
        // The window ends when the last commit started before `stop_at`
        // is answered.
        let elapsed = t0.elapsed().as_secs_f64();
        let cpu1: Vec<f64> = pids
            .values()
            .map(|&p| cpu_seconds(p, ticks))
            .collect::<Result<_>>()?;
        if latencies.is_empty() {
            bail!("no commit succeeded with {c} in flight ({errors} errors)");
        }
        let n = latencies.len();
        let rate = n as f64 / elapsed;
        let p50 = percentile(&mut latencies, 0.5);
        let p99 = percentile(&mut latencies, 0.99);
        let max = percentile(&mut latencies, 1.0);
        let cpu: Vec<String> = pids
            .keys()
            .zip(cpu0.iter().zip(&cpu1))
            .map(|(id, (a, b))| {
                format!(
                    "agent {id}{} {:.3}",
                    if *id == coordinator_id {
                        " (coord)"
                    } else {
                        ""
                    },
                    (b - a) / n as f64 * 1000.0
                )
            })
            .collect();
        println!(
            "  {c:>3} in flight: {n} commits in {elapsed:.2} s = {} commits/s; latency p50 {} p99 {} max {}; {errors} errors; CPU-s per 1,000 commits: {}; load {}",
            fmt_num(rate),
            fmt_ms(p50),
            fmt_ms(p99),
            fmt_ms(max),
            cpu.join(", "),
            load_average()
        );
    }
    drop(cluster);
    Ok(())
}
