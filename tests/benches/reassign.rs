//! Reassignment throughput against the throttle, as a plain bench binary:
//! real etcd, a `ballast coordinator` and three `ballast agent` processes
//! (the binary of this profile: `cargo build --release -p ballast-cli`
//! first, then `cargo bench -p ballast-tests --bench reassign`). It
//! measures and prints; nothing asserts a duration. Results and the
//! command live in docs/BENCHMARKS.md ("Reassignment").
//!
//! One partition on brokers 1 and 2 is filled with `BALLAST_BENCH_MIB`
//! MiB (default 64, acks=1, 16 KiB records); then, for each throttle of
//! `BALLAST_BENCH_THROTTLES` (MiB/s, default `4,16,0`, 0 = unthrottled),
//! the partition moves to the broker that does not hold it (1 -> 3, then
//! back, ...) and the bench reports the copy time (from the moment the
//! coordinator shows the move started until it completes) and the rate it
//! implies, beside the throttle.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ballast_client::admin::{
    AdminClient, AdminOptions, ExecuteReassignmentRequest, ReassignmentPartition,
};
use ballast_client::producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use ballast_proto::v1::{self as pb};
use ballast_tests::bench::{cpu_model, env_or};
use ballast_tests::cluster::{
    find_active, on_active, start_agent, start_coordinator, wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{BallastProcess, eventually};

const WAIT: Duration = Duration::from_secs(600);
const TOPIC: &str = "bulk";

fn log_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                .sum()
        })
        .unwrap_or(0)
}

async fn run() -> Result<()> {
    let mib: u64 = env_or("BALLAST_BENCH_MIB", 64)?;
    let throttles: String = env_or("BALLAST_BENCH_THROTTLES", "4,16,0".to_owned())?;
    let throttles: Vec<u64> = throttles
        .split(',')
        .map(|t| t.trim().parse::<u64>().context("BALLAST_BENCH_THROTTLES"))
        .collect::<Result<_>>()?;
    println!("cpu: {}, data: {mib} MiB", cpu_model());

    let etcd = EtcdServer::start()?;
    let coordinator = start_coordinator(&etcd.endpoints(), "bench-reassign");
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dirs = tempfile::Builder::new()
        .prefix("ballast-bench-reassign-")
        .tempdir()?;
    let data: Vec<PathBuf> = (1..=3)
        .map(|id| dirs.path().join(format!("b{id}")))
        .collect();
    let _agents: Vec<BallastProcess> = (1..=3)
        .map(|id| start_agent(&addrs[0], id, &data[id as usize - 1], &[]))
        .collect();
    wait_live_brokers(&addrs, 3, WAIT).await;
    on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: TOPIC.into(),
            assignments: vec![pb::ReplicaList {
                replicas: vec![1, 2],
            }],
            request_id: "bench-bulk".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .map_err(|s| anyhow!("create: {s}"))?;
    let bootstrap: Vec<String> = _agents.iter().map(|a| a.address().to_owned()).collect();
    let producer = Producer::connect(
        bootstrap,
        ProducerConfig {
            acks: Acks::Leader,
            ..Default::default()
        },
    )?;
    let record = vec![b'r'; 16 << 10];
    let n = mib * 64;
    let started = Instant::now();
    let mut pending = Vec::new();
    for _ in 0..n {
        producer.ready().await;
        pending.push(producer.send(ProducerRecord::new(TOPIC, record.clone()).partition(0)));
        if pending.len() >= 256 {
            for f in pending.drain(..) {
                f.await?;
            }
        }
    }
    for f in pending {
        f.await?;
    }
    println!(
        "filled {mib} MiB in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let admin = AdminClient::connect(addrs.clone(), AdminOptions::default())?;
    let mut holders = vec![1, 2];
    let mut spare = 3;
    println!("throttle MiB/s | bytes MiB | copy s | rate MiB/s | rate / throttle");
    for throttle in throttles {
        let leaving = holders[0];
        let target = vec![spare, holders[1]];
        let bytes = log_bytes(
            &data[leaving as usize - 1]
                .join("partitions")
                .join(format!("{TOPIC}-0")),
        );
        admin
            .execute_reassignment(ExecuteReassignmentRequest {
                partitions: vec![ReassignmentPartition {
                    topic: TOPIC.into(),
                    partition: 0,
                    replicas: target.clone(),
                }],
                throttle_bytes_per_sec: throttle << 20,
                ..Default::default()
            })
            .await?;
        // From the moment the move shows as started to its completion.
        let mut moving_since: Option<Instant> = None;
        let deadline = Instant::now() + WAIT;
        let done = loop {
            let r = admin.describe_reassignment().await?;
            if moving_since.is_none()
                && r.partitions
                    .first()
                    .is_some_and(|p| p.state == pb::PartitionMoveState::Moving as i32)
            {
                moving_since = Some(Instant::now());
            }
            if r.state == "completed" {
                break Instant::now();
            }
            if Instant::now() > deadline {
                bail!("the move did not finish within {WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let secs = done
            .duration_since(moving_since.unwrap_or(done))
            .as_secs_f64()
            .max(1e-3);
        let rate = bytes as f64 / secs / f64::from(1 << 20);
        let ratio = if throttle > 0 {
            format!("{:.3}", rate / throttle as f64)
        } else {
            "-".into()
        };
        println!(
            "{:>14} | {:>9.1} | {secs:>6.2} | {rate:>10.2} | {ratio}",
            if throttle == 0 {
                "none".to_owned()
            } else {
                throttle.to_string()
            },
            bytes as f64 / f64::from(1 << 20)
        );
        holders = target;
        spare = leaving;
        // Let the old replica's removal settle before the next move.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

fn main() -> Result<()> {
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        // `cargo bench -- --test` (and test listing): nothing to check here
        // without a release cluster.
        return Ok(());
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}
