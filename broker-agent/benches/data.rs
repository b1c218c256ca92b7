//! Data-plane benchmark (issue 4): three broker agents and a coordinator on
//! the embedded store, all in this process, on loopback.
//!
//! Measures, in one run and on one filesystem:
//! * the raw sequential write bandwidth of the disk the agents use (1 MiB
//!   writes, one fsync at the end, as the agents' default Kafka flush policy
//!   does no fsync per write; and 1 MiB writes each followed by fdatasync);
//! * produce MB/s and per-record latency (send to acknowledgement, p50/p99)
//!   of 1 KiB records to a topic with RF 3, 1 and 3 partitions, acks=1 and
//!   acks=all; and, paced at 2,000 records/s, the latency below saturation;
//! * consume MB/s from offset 0 to the end (page cache warm);
//! * memory per hosted partition replica: this process's VmRSS before and
//!   after creating many RF 3 partitions (three agents plus the coordinator
//!   together).
//!
//! Run: `cargo bench -p ballast-broker-agent --bench data`.
//! `BALLAST_BENCH_SCALE` (default 1.0) scales the bytes produced (512 MiB per
//! scenario at 1.0) and the partition count of the memory scenario;
//! `BALLAST_BENCH_BATCH` sets the producer's batch size in bytes (default
//! 512 KiB); `BALLAST_BENCH_IN_FLIGHT` the producer's sends in flight per
//! partition (`max_in_flight`, default the producer's default);
//! `BALLAST_BENCH_DIR` the parent of the temporary data directory (default
//! the system temp dir).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast_broker_agent::{AgentConfig, AgentHandle};
use ballast_client::consumer::{Consumer, ConsumerConfig, OffsetReset, StartPosition};
use ballast_client::producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use ballast_client::{AdminClient, AdminOptions, NewTopic};
use ballast_coordinator::store::{LocalStore, MetadataStore};
use ballast_coordinator::{Coordinator, CoordinatorConfig, Role};
use bytes::Bytes;
use tokio::sync::{mpsc, watch};

const RECORD_BYTES: usize = 1024;
const FULL_BYTES: u64 = 512 * 1024 * 1024;
const FULL_PARTITIONS: usize = 10_000;
const AGENTS: i32 = 3;
/// Pace of the latency scenarios: 2,000 records/s, ~2 MB/s.
const PACED_RECORDS_PER_S: f64 = 2_000.0;
/// File descriptors a hosted partition keeps open: the active segment's
/// log and its offset and time indexes.
const FDS_PER_REPLICA: usize = 3;

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64()
}

/// A line of `/proc/self/<file>` starting with `key`, its first number.
fn proc_number(file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/self/{file}")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .split_whitespace()
        .find_map(|w| w.parse().ok())
}

fn rss_kib() -> u64 {
    proc_number("status", "VmRSS:").expect("VmRSS in /proc/self/status")
}

fn open_files_limit() -> usize {
    proc_number("limits", "Max open files")
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        .unwrap_or(1024)
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

async fn wait_true(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// A coordinator and three agents under `dir`.
struct Cluster {
    coordinator_address: String,
    agents: Vec<AgentHandle>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    admin: AdminClient,
}

impl Cluster {
    async fn start(dir: &Path) -> Cluster {
        std::fs::create_dir_all(dir).expect("cluster dir");
        let store: Arc<dyn MetadataStore> = Arc::new(
            LocalStore::open(&dir.join("metadata.redb"))
                .await
                .expect("open the embedded store"),
        );
        let (listener, bound) = ballast_coordinator::service::bind("127.0.0.1:0")
            .await
            .expect("bind the coordinator");
        let address = bound.to_string();
        let mut config = CoordinatorConfig::new("bench", address.clone());
        config.heartbeat_interval = Duration::from_millis(500);
        config.session_timeout = Duration::from_secs(30);
        let coordinator = Coordinator::new(config, store).expect("coordinator config");
        let (stop, stop_rx) = watch::channel(false);
        let serve = tokio::spawn({
            let c = coordinator.clone();
            let rx = stop_rx.clone();
            async move {
                let _ = ballast_coordinator::service::serve(c, listener, wait_true(rx)).await;
            }
        });
        let run = tokio::spawn(coordinator.clone().run(wait_true(stop_rx)));
        let mut agents = Vec::new();
        for id in 1..=AGENTS {
            let config =
                AgentConfig::new(id, dir.join(format!("broker-{id}")), vec![address.clone()]);
            agents.push(
                ballast_broker_agent::start(config)
                    .await
                    .expect("start agent"),
            );
        }
        let start = Instant::now();
        loop {
            if let Role::Active(term) = coordinator.role() {
                let state = term.state();
                let ready = agents.iter().all(|a| {
                    state
                        .brokers
                        .get(&a.broker_id())
                        .is_some_and(|b| !b.fenced && b.control_address == a.advertised_address())
                });
                if ready {
                    break;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "cluster not ready in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let options = AdminOptions {
            deadline: Duration::from_secs(120),
            call_timeout: Duration::from_secs(60),
            ..AdminOptions::default()
        };
        let admin = AdminClient::connect(vec![address.clone()], options).expect("admin client");
        Cluster {
            coordinator_address: address,
            agents,
            stop,
            tasks: vec![
                serve,
                tokio::spawn(async move {
                    let _ = run.await;
                }),
            ],
            admin,
        }
    }

    fn bootstrap(&self) -> Vec<String> {
        self.agents
            .iter()
            .map(|a| a.advertised_address().to_owned())
            .collect()
    }

    /// Waits until every agent hosts at least `n` partitions.
    async fn wait_hosted(&self, n: usize, timeout: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.agents.iter().all(|a| a.replicas().all().len() >= n) {
                return start.elapsed();
            }
            if start.elapsed() > timeout {
                let hosted: Vec<usize> = self
                    .agents
                    .iter()
                    .map(|a| a.replicas().all().len())
                    .collect();
                panic!("agents host {hosted:?} partitions, want {n} each, after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every agent hosts every partition of `topic`.
    async fn wait_topic(&self, topic: &str, partitions: i32) {
        let start = Instant::now();
        while !self
            .agents
            .iter()
            .all(|a| (0..partitions).all(|p| a.replicas().find(topic, p).is_some()))
        {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{topic} not hosted in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn create_topic(&self, name: &str, partitions: i32) {
        self.admin
            .create_topic(NewTopic::new(name, partitions, 3))
            .await
            .unwrap_or_else(|e| panic!("create topic {name}: {e}"));
    }

    async fn shutdown(self) {
        for a in self.agents {
            a.shutdown().await.expect("agent shutdown");
        }
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        let _ = self.coordinator_address;
    }
}

/// Raw sequential write of `bytes` in 1 MiB writes into `dir`; fsync once
/// at the end, or fdatasync after every write.
fn raw_write(dir: &Path, bytes: u64, sync_each: bool) -> Duration {
    let path = dir.join(if sync_each { "raw-sync-each" } else { "raw" });
    let chunk = vec![0x5au8; 1024 * 1024];
    let start = Instant::now();
    let mut f = std::fs::File::create(&path).expect("create raw file");
    let mut written = 0u64;
    while written < bytes {
        f.write_all(&chunk).expect("raw write");
        if sync_each {
            f.sync_data().expect("fdatasync");
        }
        written += chunk.len() as u64;
    }
    f.sync_all().expect("fsync");
    let elapsed = start.elapsed();
    drop(f);
    std::fs::remove_file(&path).expect("remove raw file");
    elapsed
}

/// Producer batch size and buffer, and an optional pace in records/s
/// (`None`: as fast as `ready()` allows).
#[derive(Clone, Copy)]
struct Load {
    batch: usize,
    buffer: usize,
    pace: Option<f64>,
}

struct ProduceResult {
    mb_s: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

async fn produce(
    bootstrap: Vec<String>,
    topic: &str,
    partitions: i32,
    acks: Acks,
    records: u64,
    load: Load,
) -> ProduceResult {
    let Load {
        batch,
        buffer,
        pace,
    } = load;
    let config = ProducerConfig {
        acks,
        linger: Duration::from_millis(5),
        batch_size_bytes: batch,
        max_request_bytes: 4 * 1024 * 1024,
        buffer_memory: buffer,
        max_in_flight: std::env::var("BALLAST_BENCH_IN_FLIGHT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(ProducerConfig::default().max_in_flight),
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(bootstrap, config).expect("producer");
    producer
        .partitions_for(topic)
        .await
        .expect("topic in metadata");
    // Warm-up: one acknowledged record per partition (connections, leaders).
    for p in 0..partitions {
        producer
            .send(ProducerRecord::new(topic, vec![0u8; RECORD_BYTES]).partition(p))
            .await
            .expect("warm-up record");
    }
    let value = Bytes::from(vec![0x42u8; RECORD_BYTES]);
    let records_per_batch = (batch / (RECORD_BYTES + 16)).max(1) as u64;
    // One collector per partition: a partition's records are acknowledged
    // in order, so awaiting them in order times each one.
    let mut senders = Vec::new();
    let mut collectors = Vec::new();
    for _ in 0..partitions {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, _)>();
        senders.push(tx);
        collectors.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while let Some((sent, fut)) = rx.recv().await {
                let fut: ballast_client::producer::DeliveryFuture = fut;
                fut.await.expect("record acknowledged");
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let start = Instant::now();
    for i in 0..records {
        if let Some(rate) = pace {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            if due > Instant::now() {
                tokio::time::sleep_until(due.into()).await;
            }
        }
        producer.ready().await;
        let p = ((i / records_per_batch) % partitions as u64) as i32;
        let sent = Instant::now();
        let fut = producer.send(ProducerRecord::new(topic, value.clone()).partition(p));
        senders[p as usize]
            .send((sent, fut))
            .expect("collector alive");
    }
    drop(senders);
    producer.flush().await;
    let mut latencies = Vec::new();
    for c in collectors {
        latencies.extend(c.await.expect("collector"));
    }
    let elapsed = start.elapsed();
    producer.close().await;
    latencies.sort_unstable();
    let pct = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    ProduceResult {
        mb_s: mb_per_s(records * RECORD_BYTES as u64, elapsed),
        p50: pct(0.50),
        p99: pct(0.99),
        max: pct(1.0),
    }
}

/// Reads every partition of `topic` from offset 0 until `records` records
/// (plus the warm-up ones) were read; MB/s of record values.
async fn consume(bootstrap: Vec<String>, topic: &str, partitions: i32, records: u64) -> f64 {
    let config = ConsumerConfig {
        max_poll_records: 100_000,
        partition_max_bytes: 16 * 1024 * 1024,
        max_bytes: 48 * 1024 * 1024,
        auto_offset_reset: OffsetReset::Earliest,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::connect(bootstrap, config).expect("consumer");
    consumer
        .partitions_for(topic)
        .await
        .expect("topic in metadata");
    consumer.assign(
        topic,
        (0..partitions).map(|p| (p, StartPosition::Offset(0))),
    );
    let want = records + partitions as u64;
    let mut got = 0u64;
    let mut bytes = 0u64;
    let start = Instant::now();
    while got < want {
        let batch = consumer.poll(Duration::from_secs(10)).await.expect("poll");
        assert!(!batch.is_empty(), "no records for 10 s at {got}/{want}");
        got += batch.len() as u64;
        bytes += batch
            .iter()
            .map(|r| r.value.as_ref().map_or(0, |v| v.len() as u64))
            .sum::<u64>();
    }
    mb_per_s(bytes, start.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

async fn memory_scenario(dir: &Path, scale: f64) {
    let cluster = Cluster::start(dir).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let limit = open_files_limit();
    let wanted = ((FULL_PARTITIONS as f64 * scale) as usize / 100).max(1) * 100;
    // Every replica in this process keeps FDS_PER_REPLICA files open.
    let fits = (limit.saturating_sub(open_fds() + 2000)) / (AGENTS as usize * FDS_PER_REPLICA);
    let partitions = wanted.min(fits / 100 * 100).max(100);
    if partitions < wanted {
        println!(
            "memory: {wanted} partitions x RF 3 need ~{} open files in one process \
             ({FDS_PER_REPLICA} per replica); RLIMIT_NOFILE is {limit}: measuring {partitions}",
            wanted * AGENTS as usize * FDS_PER_REPLICA
        );
    }
    let before = rss_kib();
    let start = Instant::now();
    let topics = partitions / 100;
    for t in 0..topics {
        cluster.create_topic(&format!("mem-{t:03}"), 100).await;
    }
    let created = start.elapsed();
    let waited = cluster
        .wait_hosted(partitions, Duration::from_secs(600))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib();
    let replicas = partitions * AGENTS as usize;
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / replicas as f64;
    println!(
        "memory: {topics} topics x 100 partitions x RF 3 = {replicas} replicas; created in {:.1} s, \
         hosted by all agents {:.1} s later; VmRSS {before} KiB -> {after} KiB \
         (coordinator + 3 agents); {:.1} KiB per replica, {:.1} KiB per partition (x3 replicas); \
         open fds {}",
        created.as_secs_f64(),
        waited.as_secs_f64(),
        per / 1024.0,
        per * 3.0 / 1024.0,
        open_fds()
    );
    println!(
        "memory: projected for 10,000 partitions per agent: {:.0} MiB per agent",
        per * FULL_PARTITIONS as f64 / (1024.0 * 1024.0)
    );
    cluster.shutdown().await;
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let scale = env_f64("BALLAST_BENCH_SCALE", 1.0);
    let batch = env_f64("BALLAST_BENCH_BATCH", 512.0 * 1024.0) as usize;
    let parent = std::env::var_os("BALLAST_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let tmp = tempfile::Builder::new()
        .prefix("ballast-data-bench-")
        .tempdir_in(&parent)
        .expect("temp dir");
    let bytes = ((FULL_BYTES as f64 * scale) as u64 / (1024 * 1024)).max(1) * 1024 * 1024;
    let records = bytes / RECORD_BYTES as u64;
    println!(
        "data bench: dir {} ({}), scale {scale}, {records} records of {RECORD_BYTES} B \
         ({:.0} MiB) per scenario, producer batch {batch} B, linger 5 ms",
        tmp.path().display(),
        std::fs::read_to_string("/proc/self/mounts")
            .ok()
            .and_then(|m| {
                m.lines()
                    .filter(|l| {
                        let mut w = l.split_whitespace();
                        let mount = w.nth(1).unwrap_or("");
                        tmp.path().starts_with(mount)
                    })
                    .max_by_key(|l| l.split_whitespace().nth(1).map_or(0, str::len))
                    .map(str::to_owned)
            })
            .unwrap_or_default(),
        bytes as f64 / 1048576.0
    );

    memory_scenario(&tmp.path().join("memory"), scale).await;

    let dir = tmp.path().join("data");
    let cluster = Cluster::start(&dir).await;

    let raw = raw_write(&dir, bytes, false);
    let raw_mb_s = mb_per_s(bytes, raw);
    let raw_sync = raw_write(&dir, bytes.min(256 * 1024 * 1024), true);
    let raw_sync_mb_s = mb_per_s(bytes.min(256 * 1024 * 1024), raw_sync);
    println!(
        "raw: 1 MiB writes + one fsync at the end: {raw_mb_s:.0} MB/s; \
         1 MiB writes each + fdatasync: {raw_sync_mb_s:.0} MB/s"
    );

    let bootstrap = cluster.bootstrap();
    for partitions in [1, 3] {
        for (acks, name, target) in [(Acks::Leader, "1", 0.70), (Acks::All, "all", 0.40)] {
            let topic = format!("bench-p{partitions}-acks-{name}");
            cluster.create_topic(&topic, partitions).await;
            cluster.wait_topic(&topic, partitions).await;
            let r = produce(
                bootstrap.clone(),
                &topic,
                partitions,
                acks,
                records,
                Load {
                    batch,
                    buffer: 32 * 1024 * 1024,
                    pace: None,
                },
            )
            .await;
            let ratio = r.mb_s / raw_mb_s;
            println!(
                "produce: {partitions} partition(s) RF 3 acks={name}: {:.0} MB/s ({:.0}% of raw, \
                 target {:.0}%: {}), latency p50 {} p99 {} max {}",
                r.mb_s,
                ratio * 100.0,
                target * 100.0,
                if ratio >= target { "met" } else { "MISSED" },
                ms(r.p50),
                ms(r.p99),
                ms(r.max)
            );
            if acks == Acks::Leader {
                let c = consume(bootstrap.clone(), &topic, partitions, records).await;
                println!("consume: {partitions} partition(s), from offset 0: {c:.0} MB/s");
            }
        }
    }
    // Latency below saturation: paced, default batch size (16 KiB).
    for (acks, name) in [(Acks::Leader, "1"), (Acks::All, "all")] {
        let topic = format!("latency-p1-acks-{name}");
        cluster.create_topic(&topic, 1).await;
        cluster.wait_topic(&topic, 1).await;
        let r = produce(
            bootstrap.clone(),
            &topic,
            1,
            acks,
            (records / 64).max(2_000),
            Load {
                batch: 16 * 1024,
                buffer: 32 * 1024 * 1024,
                pace: Some(PACED_RECORDS_PER_S),
            },
        )
        .await;
        println!(
            "latency: 1 partition RF 3 acks={name}, paced at {:.1} MB/s, batch 16 KiB: {:.1} MB/s, \
             latency p50 {} p99 {} max {}",
            PACED_RECORDS_PER_S * RECORD_BYTES as f64 / 1e6,
            r.mb_s,
            ms(r.p50),
            ms(r.p99),
            ms(r.max)
        );
    }
    let raw_after = mb_per_s(bytes, raw_write(&dir, bytes, false));
    println!("raw again after the produce runs: {raw_after:.0} MB/s");
    cluster.shutdown().await;
}
