//! End-to-end coordinator benchmarks (issue 3), as a plain bench binary:
//! every scenario runs a few times on real etcd and prints min / median /
//! max. Results, the command and the diagnosis live in docs/BENCHMARKS.md.
//!
//! Scenarios (positional arguments filter them, exactly or by family:
//! `create` runs `create-standin` and `create-memory`):
//! * `create-standin`, `create-memory`: 1,000 topics x 100 partitions (RF 3)
//!   created over gRPC on an in-process coordinator, sequentially and with
//!   concurrent callers, with stand-in brokers or in-memory agents; then the
//!   same transactions (keys and values of the sizes read back from etcd)
//!   written with the store's `txn` directly, on the same etcd;
//! * `fence-memory`, `fence-agents`: a broker leading a third of 30,000
//!   partitions (in-memory agents) or of a smaller set (real in-process
//!   agents, `--agent-scale`) stops and is fenced at once
//!   (`Term::fence_broker`); time until both survivors report every new
//!   leader and leader epoch the coordinator has;
//! * `failover`: two `ballast coordinator` processes, 100,000 partitions;
//!   kill -9 the active one and time until the standby accepts a write;
//! * `memory-nopush`, `memory-standin` (and `memory-agents`, only when
//!   named): VmRSS of `ballast coordinator` processes before and after
//!   creating 1,000,000 partitions and after a takeover, and the heap of
//!   the loaded state counted by this binary's allocator.
//!
//! Sizes scale with `BALLAST_BENCH_SCALE` (or `--scale`), e.g. `0.01` for a
//! smoke run; `BALLAST_BENCH_RUNS` / `--runs` sets the repetitions,
//! `BALLAST_BENCH_CONCURRENCY` / `--concurrency` the concurrent callers,
//! `BALLAST_BENCH_AGENT_SCALE` / `--agent-scale` the real-agent fencing
//! size, `BALLAST_BENCH_KEEP_LOGS=<dir>` keeps the processes' logs, and
//! `RUST_LOG` shows the in-process coordinator's and agents' logs. The
//! process scenarios need the `ballast` binary of the same profile:
//! `cargo build --release -p ballast-cli`.
//!
//! Nothing here asserts a duration: it measures and prints. Every etcd,
//! coordinator and agent a scenario starts is stopped before the next one;
//! a failing scenario is reported and the others still run.

// `GlobalAlloc` is an unsafe trait. The only unsafe code here forwards each
// call to the system allocator unchanged and counts bytes.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use ballast_broker_agent::{AgentConfig, AgentHandle};
use ballast_coordinator::keys::Keys;
use ballast_coordinator::state::ClusterState;
use ballast_coordinator::store::{
    Compare, CompareOp, EtcdOptions, EtcdStore, MetadataStore, Txn, TxnOp,
};
use ballast_coordinator::term::Term;
use ballast_coordinator::topic::OFFSETS_TOPIC;
use ballast_coordinator::{Coordinator, CoordinatorConfig, Role, service};
use ballast_proto::v1::agent_control_client::AgentControlClient;
use ballast_proto::v1::agent_control_server::{AgentControl, AgentControlServer};
use ballast_proto::v1::{self as pb};
use ballast_tests::bench::{cpu_model, env_or, proc_field, status_bytes};
use ballast_tests::cluster::{BrokerStandIn, FAST, admin, channel, find_active, on_active};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{BallastProcess, free_port};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Cluster id of the coordinator under test.
const CLUSTER: &str = "bench-c";
/// Cluster id (same length) under which the raw etcd comparison writes.
const RAW_CLUSTER: &str = "bench-r";
/// Longest wait for a cluster to reach a state (not a measurement).
const WAIT: Duration = Duration::from_secs(120);
/// Lease TTL of the process scenarios ([`FAST`]).
const LEASE_TTL: Duration = Duration::from_secs(2);

#[path = "coordinator/cluster.rs"]
mod cluster;
use cluster::*;

// ---- allocation counting ------------------------------------------------

/// Counts live heap bytes: as requested, and as glibc's malloc rounds them
/// (request + 8 bytes of header, rounded up to 16, at least 32). Used to
/// size the coordinator's in-memory state without the allocator's retained
/// free memory that VmRSS also shows. Two relaxed atomics per call.
#[derive(Debug)]
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static LIVE_CHUNKS: AtomicUsize = AtomicUsize::new(0);

fn malloc_chunk(size: usize) -> usize {
    (size + 8).next_multiple_of(16).max(32)
}

fn count_alloc(size: usize) {
    LIVE.fetch_add(size, Ordering::Relaxed);
    LIVE_CHUNKS.fetch_add(malloc_chunk(size), Ordering::Relaxed);
}

fn count_free(size: usize) {
    LIVE.fetch_sub(size, Ordering::Relaxed);
    LIVE_CHUNKS.fetch_sub(malloc_chunk(size), Ordering::Relaxed);
}

/// (requested, malloc-rounded) live heap bytes.
fn live_heap() -> (usize, usize) {
    (
        LIVE.load(Ordering::Relaxed),
        LIVE_CHUNKS.load(Ordering::Relaxed),
    )
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count_alloc(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (which is `System`) with
        // `layout`, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) };
        count_free(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is valid per the caller.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count_free(layout.size());
            count_alloc(new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---- options and reporting ---------------------------------------------

#[derive(Debug, Clone)]
struct Opts {
    scale: f64,
    runs: usize,
    concurrency: usize,
    /// Size of the real-agent fencing scenario relative to the issue's
    /// (10 x 3,000 partitions); see `bench_fence`.
    agent_scale: f64,
    only: Vec<String>,
}

impl Opts {
    fn parse() -> Result<Opts> {
        let mut o = Opts {
            scale: env_or("BALLAST_BENCH_SCALE", 1.0)?,
            runs: env_or("BALLAST_BENCH_RUNS", 3)?,
            concurrency: env_or("BALLAST_BENCH_CONCURRENCY", 8)?,
            agent_scale: env_or("BALLAST_BENCH_AGENT_SCALE", 0.05)?,
            only: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut value = |flag: &str| args.next().ok_or_else(|| anyhow!("{flag} needs a value"));
            match a.as_str() {
                "--scale" => o.scale = value("--scale")?.parse().context("--scale")?,
                "--runs" => o.runs = value("--runs")?.parse().context("--runs")?,
                "--agent-scale" => {
                    o.agent_scale = value("--agent-scale")?.parse().context("--agent-scale")?;
                }
                "--concurrency" => {
                    o.concurrency = value("--concurrency")?.parse().context("--concurrency")?;
                }
                // Flags cargo passes to every bench binary (`--bench`).
                s if s.starts_with("--") => {}
                s => o.only.push(s.to_owned()),
            }
        }
        ensure!(o.scale > 0.0, "scale must be positive");
        ensure!(o.runs >= 1, "runs must be at least 1");
        ensure!(o.concurrency >= 1, "concurrency must be at least 1");
        ensure!(o.agent_scale > 0.0, "agent scale must be positive");
        Ok(o)
    }

    /// Whether a default scenario runs: all of them without filters, else
    /// those named exactly or by their family (`create` for `create-*`).
    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty()
            || self.only.iter().any(|o| {
                scenario == o
                    || scenario
                        .strip_prefix(o.as_str())
                        .is_some_and(|rest| rest.starts_with('-'))
            })
    }

    /// Whether an extra variant (not run by default) was named exactly.
    fn exact(&self, scenario: &str) -> bool {
        self.only.iter().any(|o| o == scenario)
    }

    /// `n` scaled, at least 1.
    fn scaled(&self, n: usize) -> usize {
        ((n as f64 * self.scale).round() as usize).max(1)
    }
}

/// (min, median, max).
fn spread(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (v[0], median, v[n - 1])
}

fn report(what: &str, values: &[f64], unit: &str) {
    let (min, median, max) = spread(values);
    println!(
        "  {what:<58} min {} / median {} / max {} {unit}   (n={})",
        fmt_num(min),
        fmt_num(median),
        fmt_num(max),
        values.len()
    );
}

fn fmt_num(x: f64) -> String {
    if x.abs() >= 1000.0 {
        let s = format!("{:.0}", x);
        let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn machine_facts() {
    let cpu = cpu_model();
    let mem = proc_field("/proc/meminfo", "MemTotal:").unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let etcd = std::process::Command::new(ballast_tests::etcd::etcd_binary())
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default();
    println!(
        "machine: {} cpus ({cpu}), {:.1} GiB, kernel {}, {etcd}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem as f64 / (1024.0 * 1024.0),
        kernel.trim()
    );
}

/// A `kB` field of a /proc status-like file, in kB.
/// (VmRSS, VmHWM) of a process, in bytes.
fn rss(pid: u32) -> Result<(u64, u64)> {
    Ok((status_bytes(pid, "VmRSS:")?, status_bytes(pid, "VmHWM:")?))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

// ---- scenario 1: topic creation throughput -------------------------------

#[derive(Debug, Clone, Copy)]
struct CreateRun {
    partitions: usize,
    coordinator: Duration,
    raw: Duration,
    p50: Duration,
    p99: Duration,
}

impl CreateRun {
    fn rate(&self) -> f64 {
        self.partitions as f64 / secs(self.coordinator)
    }
    fn raw_rate(&self) -> f64 {
        self.partitions as f64 / secs(self.raw)
    }
}

fn bench_create(rt: &Runtime, o: &Opts, kind: BrokerKind, runs: usize) -> Result<()> {
    let topics = o.scaled(1000);
    let per_topic = 100;
    println!(
        "\n== create: {topics} topics x {per_topic} partitions, RF 3, in-process coordinator, {} ==",
        kind.name()
    );
    let modes = [1, o.concurrency];
    let mut all: BTreeMap<usize, Vec<CreateRun>> = BTreeMap::new();
    for run in 1..=runs {
        for &c in &modes {
            let etcd = EtcdServer::start()?;
            let r = rt.block_on(create_once(&etcd.endpoints(), topics, per_topic, c, kind))?;
            drop(etcd);
            println!(
                "  run {run} callers {c}: coordinator {:.2} s = {} partitions/s (call p50 {:.1} ms, p99 {:.1} ms); raw etcd {:.2} s = {} partitions/s; ratio {:.2}",
                secs(r.coordinator),
                fmt_num(r.rate()),
                r.p50.as_secs_f64() * 1e3,
                r.p99.as_secs_f64() * 1e3,
                secs(r.raw),
                fmt_num(r.raw_rate()),
                r.rate() / r.raw_rate()
            );
            all.entry(c).or_default().push(r);
        }
    }
    for (c, rs) in &all {
        let label = if *c == 1 {
            "sequential".to_owned()
        } else {
            format!("{c} callers")
        };
        report(
            &format!("create {label}: coordinator partitions/s"),
            &rs.iter().map(CreateRun::rate).collect::<Vec<_>>(),
            "",
        );
        report(
            &format!("create {label}: raw etcd partitions/s"),
            &rs.iter().map(CreateRun::raw_rate).collect::<Vec<_>>(),
            "",
        );
        report(
            &format!("create {label}: ratio coordinator / raw"),
            &rs.iter()
                .map(|r| r.rate() / r.raw_rate())
                .collect::<Vec<_>>(),
            "",
        );
    }
    Ok(())
}

async fn create_once(
    endpoints: &[String],
    topics: usize,
    per_topic: i32,
    concurrency: usize,
    kind: BrokerKind,
) -> Result<CreateRun> {
    let coordinator = InProcess::start(endpoints, CLUSTER).await?;
    let brokers = start_brokers(kind, 3, std::slice::from_ref(&coordinator.address)).await?;
    wait_ready(&coordinator.address, 3).await?;
    let names: Vec<String> = (0..topics).map(|i| format!("t-{i:05}")).collect();
    let Created {
        elapsed,
        mut latencies,
        ..
    } = create_topics(&coordinator.address, &[], &names, per_topic, 3, concurrency).await?;
    let p50 = percentile(&mut latencies, 0.5);
    let p99 = percentile(&mut latencies, 0.99);

    // The same transactions straight to etcd, on a connection of its own.
    let store = EtcdStore::connect(endpoints, EtcdOptions::default()).await?;
    let keys = Keys::new(CLUSTER);
    let chunks: Vec<Vec<u8>> = store
        .range_prefix(&keys.partitions(&names[0]))
        .await?
        .kvs
        .into_iter()
        .map(|kv| kv.value)
        .collect();
    let record = store
        .range_prefix(&keys.topic(&names[0]))
        .await?
        .kvs
        .into_iter()
        .find(|kv| kv.key == keys.topic(&names[0]))
        .context("the created topic's record")?
        .value;
    ensure!(
        !chunks.is_empty(),
        "no partition chunk stored for {}",
        names[0]
    );
    let raw = raw_etcd(&store, &names, &chunks, &record, concurrency).await?;
    println!(
        "    (per topic: {} chunk(s) of {} bytes, topic record of {} bytes)",
        chunks.len(),
        chunks.iter().map(Vec::len).max().unwrap_or(0),
        record.len()
    );

    drop(brokers);
    coordinator.stop().await;
    Ok(CreateRun {
        partitions: topics * per_topic as usize,
        coordinator: elapsed,
        raw,
        p50,
        p99,
    })
}

/// What the coordinator's writer sends per topic, without the coordinator:
/// one fenced transaction per chunk batch (here one chunk), then the topic
/// record fenced and guarded by "absent"; each failure branch reads the
/// fence key, as the writer's does.
async fn raw_etcd(
    store: &EtcdStore,
    names: &[String],
    chunks: &[Vec<u8>],
    record: &[u8],
    concurrency: usize,
) -> Result<Duration> {
    let keys = Keys::new(RAW_CLUSTER);
    let mut fence_key = keys.election();
    fence_key.extend_from_slice(b"raw");
    let fence_rev = store.put(&fence_key, b"bench").await?;
    let fence = Compare::create_revision(fence_key.clone(), CompareOp::Equal, fence_rev);
    let names = Arc::new(names.to_vec());
    let chunks = Arc::new(chunks.to_vec());
    let record = Arc::new(record.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<JoinHandle<Result<()>>> = (0..concurrency)
        .map(|_| {
            let (store, keys, names, chunks, record, next, fence, fence_key) = (
                store.clone(),
                keys.clone(),
                names.clone(),
                chunks.clone(),
                record.clone(),
                next.clone(),
                fence.clone(),
                fence_key.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(name) = names.get(i) else {
                        return Ok(());
                    };
                    let puts: Vec<TxnOp> = chunks
                        .iter()
                        .enumerate()
                        .map(|(c, v)| TxnOp::put(keys.chunk(name, c as u32), v.clone()))
                        .collect();
                    for batch in ballast_coordinator::writer::pack(puts)? {
                        let r = store
                            .txn(
                                Txn::new()
                                    .when([fence.clone()])
                                    .and_then(batch)
                                    .or_else([TxnOp::get(fence_key.clone())]),
                            )
                            .await?;
                        ensure!(r.succeeded, "raw chunk txn failed");
                    }
                    let r = store
                        .txn(
                            Txn::new()
                                .when([fence.clone(), Compare::absent(keys.topic(name))])
                                .and_then([TxnOp::put(keys.topic(name), record.to_vec())])
                                .or_else([TxnOp::get(fence_key.clone())]),
                        )
                        .await?;
                    ensure!(r.succeeded, "raw topic txn failed");
                }
            })
        })
        .collect();
    for w in workers {
        w.await??;
    }
    Ok(start.elapsed())
}

// ---- scenario 2: fencing a broker that leads 10,000 partitions ---------

/// What hosts the partitions in the fencing scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hosts {
    /// Real agents (`ballast_broker_agent::start`) with data directories on
    /// disk.
    Agents,
    /// [`MemBroker`]s: isolates the coordinator's part (persist, push, ack).
    Memory,
}

/// The running hosts of one fencing run; index `i` is broker `i + 1`.
#[derive(Debug)]
enum Running {
    Agents(Vec<Option<AgentHandle>>),
    Memory(Vec<Option<MemBroker>>),
}

impl Running {
    async fn start(hosts: Hosts, dir: &std::path::Path, coordinator: &str) -> Result<Running> {
        Ok(match hosts {
            Hosts::Agents => {
                let mut v = Vec::new();
                for id in 1..=3 {
                    let config = AgentConfig::new(
                        id,
                        dir.join(format!("agent-{id}")),
                        vec![coordinator.to_owned()],
                    );
                    v.push(Some(ballast_broker_agent::start(config).await?));
                }
                Running::Agents(v)
            }
            Hosts::Memory => {
                let mut v = Vec::new();
                for id in 1..=3 {
                    v.push(Some(
                        MemBroker::start(id, vec![coordinator.to_owned()]).await?,
                    ));
                }
                Running::Memory(v)
            }
        })
    }

    /// AgentControl addresses, broker 1 first.
    fn addresses(&self) -> Vec<String> {
        match self {
            Running::Agents(v) => v
                .iter()
                .flatten()
                .map(|a| a.local_addr().to_string())
                .collect(),
            Running::Memory(v) => v.iter().flatten().map(|b| b.control.clone()).collect(),
        }
    }

    /// Stop broker `id` (agents: a clean shutdown; in-memory: abort).
    async fn stop(&mut self, id: i32) -> Result<()> {
        let i = usize::try_from(id - 1)?;
        match self {
            Running::Agents(v) => {
                if let Some(a) = v.get_mut(i).and_then(Option::take) {
                    a.shutdown().await?;
                }
            }
            Running::Memory(v) => drop(v.get_mut(i).and_then(Option::take)),
        }
        Ok(())
    }

    async fn stop_all(self) -> Result<()> {
        if let Running::Agents(v) = self {
            for a in v.into_iter().flatten() {
                a.shutdown().await?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct FenceRun {
    led: usize,
    changed: usize,
    persisted: Duration,
    /// Per survivor: when it reported every new leader; `None` if it had
    /// not within the convergence bound.
    acked: [Option<Duration>; 2],
}

fn bench_fence(rt: &Runtime, o: &Opts, hosts: Hosts, scale: f64) -> Result<()> {
    let topics = 10usize;
    // A multiple of 3: each broker leads exactly a third of every topic.
    let per_topic = (o.scaled((3000.0 * scale).round() as usize).div_ceil(3) * 3) as i32;
    let what = match hosts {
        Hosts::Agents => "3 real in-process agents (data on disk)",
        Hosts::Memory => "3 in-memory agents",
    };
    println!(
        "\n== fence: {topics} topics x {per_topic} partitions, RF 3, {what}, in-process coordinator =="
    );
    let mut runs = Vec::new();
    for run in 1..=o.runs {
        let etcd = EtcdServer::start()?;
        let dir = tempfile::Builder::new()
            .prefix("ballast-bench-")
            .tempdir()?;
        let r = rt.block_on(fence_once(
            &etcd.endpoints(),
            dir.path(),
            hosts,
            topics,
            per_topic,
        ))?;
        drop(etcd);
        let show = |d: Option<Duration>| {
            d.map_or(format!("not within {:?}", converge_bound(hosts)), |d| {
                format!("{:.3} s", secs(d))
            })
        };
        println!(
            "  run {run}: broker 1 led {} partitions (all moved), {} partitions changed (ISR shrink); fence_broker returned (persisted) {:.3} s; survivors reported every new leader after {} / {}",
            r.led,
            r.changed,
            secs(r.persisted),
            show(r.acked[0]),
            show(r.acked[1]),
        );
        runs.push(r);
    }
    report(
        "fence: fence_broker returned (persisted), s",
        &runs.iter().map(|r| secs(r.persisted)).collect::<Vec<_>>(),
        "s",
    );
    let acked: Vec<f64> = runs
        .iter()
        .filter_map(|r| Some(secs(r.acked[0]?.max(r.acked[1]?))))
        .collect();
    report(
        "fence: both survivors report every new leader, s",
        &acked,
        "s",
    );
    if acked.len() < runs.len() {
        println!(
            "  {} of {} runs did not converge within {:?}",
            runs.len() - acked.len(),
            runs.len(),
            converge_bound(hosts)
        );
    }
    Ok(())
}

/// How long the fencing scenario waits for the survivors before it
/// reports "not converged" instead of a time.
fn converge_bound(hosts: Hosts) -> Duration {
    match hosts {
        Hosts::Agents => Duration::from_secs(60),
        Hosts::Memory => WAIT,
    }
}

/// Leader and leader epoch of every partition, by topic then index.
type Leaders = HashMap<String, Vec<(i32, i32)>>;

fn leaders_of(topics: &[pb::TopicDescription]) -> Leaders {
    topics
        .iter()
        .map(|t| {
            let mut v = vec![(-2, -2); t.partitions.len()];
            for p in &t.partitions {
                if let Some(slot) = v.get_mut(p.partition as usize) {
                    *slot = (p.leader, p.leader_epoch);
                }
            }
            (t.name.clone(), v)
        })
        .collect()
}

/// Partition epoch of every partition, by topic then index.
fn partition_epochs(topics: &[pb::TopicDescription]) -> HashMap<String, Vec<i32>> {
    topics
        .iter()
        .map(|t| {
            let mut v = vec![-2; t.partitions.len()];
            for p in &t.partitions {
                if let Some(slot) = v.get_mut(p.partition as usize) {
                    *slot = p.partition_epoch;
                }
            }
            (t.name.clone(), v)
        })
        .collect()
}

fn total(leaders: &Leaders) -> usize {
    leaders.values().map(Vec::len).sum()
}

/// How many of the expected partitions the agent reports with the expected
/// leader and leader epoch.
fn agent_matching(state: &pb::GetAgentStateResponse, expected: &Leaders) -> usize {
    state
        .partitions
        .iter()
        .filter(|p| {
            expected
                .get(&p.topic)
                .and_then(|v| v.get(p.partition as usize))
                == Some(&(p.leader, p.leader_epoch))
        })
        .count()
}

/// Poll an agent's GetState until it reports exactly the expected leaders;
/// the time from `start` to the receipt of the first matching answer, or
/// `None` (with what it had) after `bound`.
async fn wait_agent(
    address: String,
    expected: Arc<Leaders>,
    start: Instant,
    bound: Duration,
) -> Result<Option<Duration>> {
    let mut client = AgentControlClient::new(channel(&address)).max_decoding_message_size(1 << 30);
    let want = total(&expected);
    let mut last = (0, 0);
    loop {
        let error = match client.get_state(pb::GetAgentStateRequest {}).await {
            Ok(s) => {
                let s = s.into_inner();
                last = (agent_matching(&s, &expected), s.partitions.len());
                if last == (want, want) {
                    return Ok(Some(start.elapsed()));
                }
                None
            }
            Err(e) => Some(e),
        };
        if start.elapsed() > bound {
            println!(
                "  agent {address}: {} of {want} partitions with the expected leader after {bound:?} ({} hosted){}",
                last.0,
                last.1,
                error.map_or(String::new(), |e| format!("; last GetState failed: {e}"))
            );
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn fence_once(
    endpoints: &[String],
    dir: &std::path::Path,
    hosts: Hosts,
    topics: usize,
    per_topic: i32,
) -> Result<FenceRun> {
    let coordinator = InProcess::start(endpoints, CLUSTER).await?;
    let mut running = Running::start(hosts, dir, &coordinator.address).await?;
    wait_ready(&coordinator.address, 3).await?;
    let addresses = running.addresses();
    let names: Vec<String> = (0..topics).map(|i| format!("f-{i:02}")).collect();
    let setup = Instant::now();
    // Topic by topic, each hosted everywhere before the next: one push per
    // topic stays well within the coordinator's push timeout on real agents.
    for name in &names {
        create_topics(
            &coordinator.address,
            &[],
            std::slice::from_ref(name),
            per_topic,
            3,
            1,
        )
        .await?;
        let now = Arc::new(leaders_of(&describe_all(&coordinator.address).await?));
        for a in &addresses {
            wait_agent(a.clone(), now.clone(), Instant::now(), WAIT)
                .await?
                .with_context(|| format!("agent {a} did not host {name}"))?;
        }
    }
    let described = describe_all(&coordinator.address).await?;
    let before = Arc::new(leaders_of(&described));
    let epochs_before = partition_epochs(&described);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
    println!(
        "  (setup: {} partitions created and hosted by all 3 in {:.1} s; this process has {fds} open file descriptors)",
        total(&before),
        secs(setup.elapsed())
    );
    let victim = 1;
    let led = before
        .values()
        .flatten()
        .filter(|(leader, _)| *leader == victim)
        .count();
    let term = coordinator.term()?;
    running.stop(victim).await?;

    let start = Instant::now();
    term.fence_broker(victim).await?;
    let persisted = start.elapsed();
    let expected: Leaders = {
        let state = term.state();
        state
            .topics
            .iter()
            .map(|(name, t)| {
                (
                    name.clone(),
                    t.partitions
                        .iter()
                        .map(|p| (p.leader, p.leader_epoch))
                        .collect(),
                )
            })
            .collect()
    };
    let expected = Arc::new(expected);
    let bound = converge_bound(hosts);
    let (a, b) = tokio::join!(
        wait_agent(addresses[1].clone(), expected.clone(), start, bound),
        wait_agent(addresses[2].clone(), expected.clone(), start, bound),
    );
    let acked = [a?, b?];

    // Untimed checks: DescribeTopics agrees, the fenced broker leads nothing.
    let described = describe_all(&coordinator.address).await?;
    ensure!(
        leaders_of(&described) == *expected,
        "DescribeTopics differs from the term's state"
    );
    ensure!(
        expected.values().flatten().all(|(l, _)| *l != victim),
        "the fenced broker still leads something"
    );
    let moved = expected
        .iter()
        .flat_map(|(name, v)| v.iter().enumerate().map(move |(p, s)| (name, p, s)))
        .filter(|(name, p, s)| before.get(*name).and_then(|v| v.get(*p)) != Some(s))
        .count();
    let changed = partition_epochs(&described)
        .iter()
        .flat_map(|(name, v)| v.iter().enumerate().map(move |(p, e)| (name, p, e)))
        .filter(|(name, p, e)| epochs_before.get(*name).and_then(|v| v.get(*p)) != Some(e))
        .count();
    ensure!(moved == led, "{moved} leaders moved, {led} expected");
    running.stop_all().await?;
    coordinator.stop().await;
    Ok(FenceRun {
        led,
        changed,
        persisted,
        acked,
    })
}

// ---- scenario 3: failover with 100,000 partitions -----------------------

#[derive(Debug, Clone, Copy)]
struct FailoverRun {
    total: Duration,
    /// From the kill to the standby's "elected ... loading state" log line.
    elected: Option<f64>,
    /// From "loading state" to "active".
    load: Option<f64>,
}

/// Seconds since midnight UTC of a tracing timestamp at the start of `line`
/// (`2026-11-22T10:11:12.123456Z ...`).
fn log_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let time = stamp.split_once('T')?.1.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

fn day_seconds(t: SystemTime) -> f64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs() % 86_400) as f64 + f64::from(d.subsec_nanos()) / 1e9
}

/// How often a coordinator's log says it stopped acting because its lease
/// was not renewed in time (or was lost).
fn stepdowns(log: &str) -> usize {
    log.matches("lease stale or lost").count()
}

/// How often a coordinator's log says it won the election.
fn elections(log: &str) -> usize {
    log.matches("elected active coordinator").count()
}

/// Times of the last "loading state" and the "active" line after it.
fn takeover_lines(log: &str) -> Option<(f64, f64)> {
    let lines: Vec<&str> = log.lines().collect();
    let i = lines
        .iter()
        .rposition(|l| l.contains("elected active coordinator; loading state"))?;
    let elected = log_time(lines[i])?;
    let active = lines[i..]
        .iter()
        .find(|l| l.contains("ballast_coordinator::ha: active"))
        .and_then(|l| log_time(l))?;
    Some((elected, active))
}

/// CreateTopic of a fresh 1-partition RF 1 topic against `address` every
/// ~10 ms until it succeeds; the number of attempts.
async fn hammer(address: &str, name: &str) -> Result<u32> {
    let req = pb::CreateTopicRequest {
        name: name.to_owned(),
        partitions: 1,
        replication_factor: 1,
        request_id: name.to_owned(),
        ..Default::default()
    };
    let mut client = admin(address);
    let deadline = Instant::now() + WAIT;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let sent = Instant::now();
        match tokio::time::timeout(Duration::from_secs(2), client.create_topic(req.clone())).await {
            Ok(Ok(_)) => return Ok(attempts),
            Ok(Err(s))
                if matches!(
                    s.code(),
                    tonic::Code::FailedPrecondition
                        | tonic::Code::Unavailable
                        | tonic::Code::Unknown
                        | tonic::Code::DeadlineExceeded
                ) => {}
            Ok(Err(s)) => bail!("CreateTopic {name} on {address}: {s}"),
            Err(_) => {}
        }
        if Instant::now() > deadline {
            bail!("{address} did not accept a write within {WAIT:?}");
        }
        tokio::time::sleep_until(tokio::time::Instant::from_std(
            sent + Duration::from_millis(10),
        ))
        .await;
    }
}

/// Wait until the standby at `standby` names `active` as the active one.
async fn wait_following(standby: &str, active: &str) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(info) = admin(standby)
            .get_cluster_info(pb::GetClusterInfoRequest {})
            .await
        {
            let info = info.into_inner();
            if !info.active && info.active_address == active {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{standby} does not follow {active}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn bench_failover(rt: &Runtime, o: &Opts) -> Result<()> {
    check_binary()?;
    let topics = 100usize;
    let per_topic = o.scaled(1000) as i32;
    println!(
        "\n== failover: {topics} topics x {per_topic} partitions, RF 3, 2 coordinator processes (lease TTL {:?}), 3 stand-in brokers ==",
        LEASE_TTL
    );
    let etcd = EtcdServer::start()?;
    let endpoints = etcd.endpoints();
    let ports = [free_port(), free_port()];
    let mut procs = [
        coordinator_process(&endpoints, ports[0], &[])?,
        coordinator_process(&endpoints, ports[1], &[])?,
    ];
    let addresses: Vec<String> = procs.iter().map(|p| p.address().to_owned()).collect();
    let (active, _) = rt.block_on(async {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(a) = find_active(&addresses).await {
                return Ok(a);
            }
            if Instant::now() > deadline {
                bail!("no active coordinator");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })?;
    let brokers = rt.block_on(start_brokers(BrokerKind::StandIn, 3, &addresses))?;
    rt.block_on(wait_ready(&active, 3))?;
    let names: Vec<String> = (0..topics).map(|i| format!("l-{i:03}")).collect();
    let load = rt
        .block_on(create_topics(
            &active,
            &[],
            &names,
            per_topic,
            3,
            o.concurrency,
        ))?
        .elapsed;
    let partitions = topics * per_topic as usize;
    println!(
        "  (setup: {partitions} partitions created in {:.1} s)",
        secs(load)
    );

    let mut runs = Vec::new();
    for run in 1..=o.runs {
        let (active, standby, a) = rt.block_on(async {
            let deadline = Instant::now() + WAIT;
            loop {
                if let Some((active, _)) = find_active(&addresses).await {
                    let a = usize::from(active != addresses[0]);
                    let standby = addresses[1 - a].clone();
                    wait_following(&standby, &active).await?;
                    wait_ready(&active, 3).await?;
                    return Ok::<_, anyhow::Error>((active, standby, a));
                }
                if Instant::now() > deadline {
                    bail!("no active coordinator");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })?;
        // Let the lease renewals and heartbeats settle into their rhythm.
        std::thread::sleep(Duration::from_secs(2));
        let before_kill = stepdowns(&procs[a].log());
        if before_kill > 0 {
            println!(
                "  note: the active coordinator has stepped down {before_kill} times so far (lease not renewed in time)"
            );
        }
        let killed_wall = SystemTime::now();
        let start = Instant::now();
        procs[a].kill();
        let attempts = rt
            .block_on(hammer(&standby, &format!("failover-{run}")))
            .inspect_err(|_| dump_logs(&[&procs[0], &procs[1]]))?;
        let total = start.elapsed();
        let lines = takeover_lines(&procs[1 - a].log());
        let r = FailoverRun {
            total,
            elected: lines.map(|(e, _)| e - day_seconds(killed_wall)),
            load: lines.map(|(e, act)| act - e),
        };
        println!(
            "  run {run}: killed {active}; {standby} accepted a write after {:.3} s ({:+.3} s beyond the TTL, {attempts} attempts); log: elected {} s after the kill, state loaded in {} s",
            secs(total),
            secs(total) - secs(LEASE_TTL),
            r.elected.map_or("?".into(), |v| format!("{v:.3}")),
            r.load.map_or("?".into(), |v| format!("{v:.3}")),
        );
        runs.push(r);
        procs[a].restart(Duration::from_secs(20))?;
    }
    report(
        "failover: kill -9 to first accepted write, s",
        &runs.iter().map(|r| secs(r.total)).collect::<Vec<_>>(),
        "s",
    );
    report(
        "failover: same, beyond the lease TTL, s",
        &runs
            .iter()
            .map(|r| secs(r.total) - secs(LEASE_TTL))
            .collect::<Vec<_>>(),
        "s",
    );
    report(
        "failover: kill to \"elected; loading state\" (log), s",
        &runs.iter().filter_map(|r| r.elected).collect::<Vec<_>>(),
        "s",
    );
    report(
        "failover: \"loading state\" to \"active\" (log), s",
        &runs.iter().filter_map(|r| r.load).collect::<Vec<_>>(),
        "s",
    );
    drop(brokers);
    for p in &mut procs {
        p.stop();
    }
    keep_logs("failover", &[&procs[0], &procs[1]]);
    drop(etcd);
    Ok(())
}

// ---- scenario 4: coordinator memory with 1,000,000 partitions ----------

/// Which coordinator is active among `addresses` (index), waiting for one.
async fn active_index(addresses: &[String]) -> Result<usize> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some((a, _)) = find_active(addresses).await
            && let Some(i) = addresses.iter().position(|x| *x == a)
        {
            return Ok(i);
        }
        if Instant::now() > deadline {
            bail!("no active coordinator among {addresses:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn bench_memory(rt: &Runtime, o: &Opts, kind: BrokerKind) -> Result<()> {
    check_binary()?;
    let topics = o.scaled(1000);
    let per_topic = 1000i32;
    let partitions = topics * per_topic as usize;
    println!(
        "\n== memory: {topics} topics x {per_topic} partitions, RF 3, coordinator processes, {} ==",
        kind.name()
    );
    let etcd = EtcdServer::start()?;
    let endpoints = etcd.endpoints();
    // Production timings: this scenario is about memory, and FAST's 1.3 s
    // renew deadline is shorter than the stalls a busy coordinator has here.
    let extra = [
        "--lease-ttl",
        "6s",
        "--renew-deadline",
        "4s",
        "--session-timeout",
        "9s",
        "--heartbeat-interval",
        "1s",
        "--full-sync-interval",
        "60s",
    ];
    let first = coordinator_process(&endpoints, free_port(), &extra)?;
    let first_address = first.address().to_owned();
    rt.block_on(active_index(std::slice::from_ref(&first_address)))?;
    let second = coordinator_process(&endpoints, free_port(), &extra)?;
    let addresses = vec![first_address.clone(), second.address().to_owned()];
    let mut procs = [first, second];
    let pids = [
        procs[0].pid().context("coordinator pid")?,
        procs[1].pid().context("coordinator pid")?,
    ];
    let brokers = rt.block_on(start_brokers(kind, 3, &addresses))?;
    rt.block_on(wait_ready(&first_address, 3))?;
    std::thread::sleep(Duration::from_secs(2));
    let before = [rss(pids[0])?.0, rss(pids[1])?.0];

    let names: Vec<String> = (0..topics).map(|i| format!("m-{i:04}")).collect();
    let created = rt
        .block_on(create_topics(
            &first_address,
            &addresses,
            &names,
            per_topic,
            3,
            o.concurrency,
        ))
        .inspect_err(|_| {
            dump_logs(&[&procs[0], &procs[1]]);
            keep_logs(&format!("memory-{}", kind.short()), &[&procs[0], &procs[1]]);
        })?;
    println!(
        "  {partitions} partitions created in {:.1} s ({} partitions/s with {} callers){}",
        secs(created.elapsed),
        fmt_num(partitions as f64 / secs(created.elapsed)),
        o.concurrency,
        if created.retried > 0 {
            format!(
                "; {} calls were refused because leadership moved and were retried on the new active coordinator",
                created.retried
            )
        } else {
            String::new()
        }
    );
    let a = rt.block_on(active_index(&addresses))?;
    let right_after = rss(pids[a])?.0;
    std::thread::sleep(Duration::from_secs(5));
    let a2 = rt.block_on(active_index(&addresses))?;
    let (after, hwm) = rss(pids[a2])?;
    println!(
        "  active ({}): VmRSS {:.1} MiB before, {:.1} MiB right after, {:.1} MiB 5 s later (VmHWM {:.1} MiB): {:.0} bytes per partition",
        if a == 0 && a2 == 0 {
            "the first process"
        } else {
            "leadership moved: see below"
        },
        mib(before[a2]),
        mib(right_after),
        mib(after),
        mib(hwm),
        (after as f64 - before[a2] as f64) / partitions as f64
    );
    let (requested, rounded) = rt.block_on(state_heap(&endpoints))?;
    println!(
        "  in-memory state (ClusterState::load of the stored state, counted in this process): {:.1} MiB requested = {:.0} bytes per partition; {:.1} MiB = {:.0} bytes per partition with malloc's rounding",
        mib(requested as u64),
        requested as f64 / partitions as f64,
        mib(rounded as u64),
        rounded as f64 / partitions as f64
    );
    println!(
        "  leadership so far: process 1 elected {} times, stepped down {} times; process 2 elected {} times, stepped down {} times",
        elections(&procs[0].log()),
        stepdowns(&procs[0].log()),
        elections(&procs[1].log()),
        stepdowns(&procs[1].log()),
    );

    // Kill whichever is active now; the other takes over (the load path).
    let a = rt.block_on(active_index(&addresses))?;
    let s = 1 - a;
    let elected_before = elections(&procs[s].log());
    let start = Instant::now();
    procs[a].kill();
    let standby_address = addresses[s].clone();
    rt.block_on(async {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(info) = admin(&standby_address)
                .get_cluster_info(pb::GetClusterInfoRequest {})
                .await
            {
                let info = info.into_inner();
                if info.active && info.partitions as usize >= partitions {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("the standby did not take over");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })?;
    let takeover = start.elapsed();
    let taken_over = rss(pids[s])?.0;
    std::thread::sleep(Duration::from_secs(5));
    let (settled, standby_hwm) = rss(pids[s])?;
    let load_log = takeover_lines(&procs[s].log()).map(|(e, a)| a - e);
    println!(
        "  takeover: killed process {}; process {} answered as active with all partitions {:.2} s later (state loaded in {} s); its VmRSS {:.1} MiB before, {:.1} MiB at takeover, {:.1} MiB 5 s later (VmHWM {:.1} MiB): {:.0} bytes per partition",
        a + 1,
        s + 1,
        secs(takeover),
        load_log.map_or("?".into(), |v| format!("{v:.2}")),
        mib(before[s]),
        mib(taken_over),
        mib(settled),
        mib(standby_hwm),
        (settled as f64 - before[s] as f64) / partitions as f64
    );
    println!(
        "  leadership after the kill: process {} elected {} more times, stepped down {} times in all",
        s + 1,
        elections(&procs[s].log()) - elected_before,
        stepdowns(&procs[s].log()),
    );
    if kind == BrokerKind::Memory {
        let (bytes, parts) = *LARGEST_PUSH.lock().unwrap_or_else(|e| e.into_inner());
        println!(
            "  largest push an agent received: {:.1} MB encoded, {parts} partitions",
            bytes as f64 / 1e6
        );
    }
    let db = std::fs::metadata(etcd.data_dir().join("member/snap/db")).map_or(0, |m| m.len());
    println!(
        "  etcd: backend db file {:.1} MiB (quota 2 GiB), data directory {:.1} MiB (WAL included)",
        mib(db),
        mib(dir_bytes(&etcd.data_dir()))
    );
    drop(brokers);
    for p in &mut procs {
        p.stop();
    }
    keep_logs(&format!("memory-{}", kind.short()), &[&procs[0], &procs[1]]);
    drop(etcd);
    Ok(())
}

/// Heap bytes of the state a coordinator loads at takeover: the same
/// `ClusterState::load` over the same three prefixes, in this process, with
/// the counting allocator; (requested, malloc-rounded).
async fn state_heap(endpoints: &[String]) -> Result<(usize, usize)> {
    let store = EtcdStore::connect(endpoints, EtcdOptions::default()).await?;
    let keys = Keys::new(CLUSTER);
    let brokers = store.range_prefix(&keys.brokers()).await?.kvs;
    let topics = store.range_prefix(&keys.topics()).await?.kvs;
    let chunks = store.range_prefix(&keys.all_partitions()).await?.kvs;
    let before = live_heap();
    let (state, report) = ClusterState::load(&keys, &brokers, &topics, &chunks)
        .map_err(|e| anyhow!("loading the stored state: {e}"))?;
    let after = live_heap();
    ensure!(
        report.orphan_chunks.is_empty(),
        "orphan chunks in the store"
    );
    drop(state);
    Ok((
        after.0.saturating_sub(before.0),
        after.1.saturating_sub(before.1),
    ))
}

// ---- main ----------------------------------------------------------------

fn main() -> Result<()> {
    let o = Opts::parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if std::env::var_os("RUST_LOG").is_some() {
        // For diagnosis: the in-process coordinator's and agents' logs.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    machine_facts();
    println!(
        "scale {}, runs {}, concurrent callers {}, real-agent fencing scale {}",
        o.scale, o.runs, o.concurrency, o.agent_scale
    );
    let started = Instant::now();
    // A failing scenario is reported and the others still run.
    let mut failed: Vec<(&str, anyhow::Error)> = Vec::new();
    let mut check = |name: &'static str, r: Result<()>| {
        if let Err(e) = r {
            println!("\n!! scenario {name} failed: {e:#}");
            failed.push((name, e));
        }
    };
    if o.wants("create-standin") {
        check(
            "create-standin",
            bench_create(&rt, &o, BrokerKind::StandIn, o.runs),
        );
    }
    if o.wants("create-memory") {
        // One run unless named: with the current coordinator it takes about
        // two minutes (see docs/BENCHMARKS.md).
        let runs = if o.exact("create-memory") { o.runs } else { 1 };
        check(
            "create-memory",
            bench_create(&rt, &o, BrokerKind::Memory, runs),
        );
    }
    if o.wants("fence-memory") {
        check("fence-memory", bench_fence(&rt, &o, Hosts::Memory, 1.0));
    }
    if o.wants("fence-agents") {
        check(
            "fence-agents",
            bench_fence(&rt, &o, Hosts::Agents, o.agent_scale),
        );
    }
    if o.wants("failover") {
        check("failover", bench_failover(&rt, &o));
    }
    if o.wants("memory-nopush") {
        check("memory-nopush", bench_memory(&rt, &o, BrokerKind::NoPush));
    }
    if o.wants("memory-standin") {
        check("memory-standin", bench_memory(&rt, &o, BrokerKind::StandIn));
    }
    if o.exact("memory-agents") {
        check("memory-agents", bench_memory(&rt, &o, BrokerKind::Memory));
    }
    println!("\ntotal {:.0} s", secs(started.elapsed()));
    match failed.len() {
        0 => Ok(()),
        n => bail!(
            "{n} scenario(s) failed: {}",
            failed
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
