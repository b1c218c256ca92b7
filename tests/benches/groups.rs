//! End-to-end consumer-group benchmarks, as a plain bench binary: real
//! etcd, a `ballast coordinator` and three `ballast agent` processes (the
//! release binary: `cargo build --release -p ballast-cli` first), driven
//! over the raw Group gRPC protocol by simulated members (tokio tasks
//! sharing a few HTTP/2 connections). It measures and prints; nothing
//! asserts a duration. Results, the command and the analysis live in
//! docs/BENCHMARKS.md ("Consumer groups").
//!
//! Scenarios (positional arguments pick some; default: all):
//! * `rebalance`: one member joins, then leaves, a stable group of 10, 100
//!   and 1,000 members; time until every member owns its new range share
//!   at the new epoch ([`rebalance`]);
//! * `many`: 10,000 one-member groups on one coordinator: the agent's
//!   VmRSS, and its CPU per heartbeat over a steady window ([`many`]);
//! * `commits`: offset commits per second and their latency with 1, 16
//!   and 64 committers in flight, acks=all, RF 3 ([`commits`]).
//!
//! Knobs (environment): `BALLAST_BENCH_SCALE` (1.0; sizes, group count and
//! commit time; 0.1 for a smoke run), `BALLAST_BENCH_RUNS` (8
//! repetitions per group size), `BALLAST_BENCH_INTERVAL_MS` (500: the
//! agents' `--group-heartbeat-interval` for `rebalance`),
//! `BALLAST_BENCH_MANY_INTERVAL_MS` (5000, for `many`),
//! `BALLAST_BENCH_WINDOW_SECS` (20: the steady window of `many`),
//! `BALLAST_BENCH_CHANNELS` (4 connections shared by the members),
//! `BALLAST_BENCH_SIZES` (e.g. `1000`: the rebalance group sizes, unscaled),
//! `BALLAST_BENCH_SEED` (42: member ids and start phases).
//!
//! Every process a scenario starts is stopped (and its temp dir removed)
//! before the next scenario; a failing scenario is reported and the others
//! still run.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail, ensure};
use ballast_tests::bench::{cpu_model, env_or};

#[path = "groups/cluster.rs"]
mod cluster;
#[path = "groups/commits.rs"]
mod commits;
#[path = "groups/many.rs"]
mod many;
#[path = "groups/member.rs"]
mod member;
#[path = "groups/rebalance.rs"]
mod rebalance;

// ---- options ----------------------------------------------------------------

#[derive(Debug, Clone)]
pub(crate) struct Opts {
    scale: f64,
    pub(crate) runs: usize,
    /// Heartbeat interval of the rebalance scenario.
    pub(crate) interval: Duration,
    /// Heartbeat interval of the many-groups scenario.
    pub(crate) many_interval: Duration,
    /// Steady window of the many-groups scenario.
    pub(crate) window: Duration,
    /// Connections the simulated members share.
    pub(crate) channels: usize,
    pub(crate) seed: u64,
    /// How long each commit level runs (after a warm-up).
    pub(crate) commit_time: Duration,
    pub(crate) commit_concurrency: Vec<usize>,
    /// Group sizes of the rebalance scenario, when given explicitly.
    sizes: Option<Vec<usize>>,
    only: Vec<String>,
}

impl Opts {
    fn parse() -> Result<Opts> {
        let scale: f64 = env_or("BALLAST_BENCH_SCALE", 1.0)?;
        ensure!(scale > 0.0, "BALLAST_BENCH_SCALE must be positive");
        let o = Opts {
            scale,
            runs: env_or("BALLAST_BENCH_RUNS", 8)?,
            interval: Duration::from_millis(env_or("BALLAST_BENCH_INTERVAL_MS", 500)?),
            many_interval: Duration::from_millis(env_or("BALLAST_BENCH_MANY_INTERVAL_MS", 5000)?),
            window: Duration::from_secs(env_or("BALLAST_BENCH_WINDOW_SECS", 20)?),
            channels: env_or("BALLAST_BENCH_CHANNELS", 4)?,
            seed: env_or("BALLAST_BENCH_SEED", 42)?,
            commit_time: Duration::from_secs_f64((5.0 * scale).max(1.0)),
            commit_concurrency: vec![1, 16, 64],
            sizes: match std::env::var("BALLAST_BENCH_SIZES") {
                Ok(v) => Some(
                    v.split(',')
                        .map(|n| n.trim().parse::<usize>())
                        .collect::<Result<_, _>>()
                        .map_err(|_| anyhow!("BALLAST_BENCH_SIZES={v:?}: sizes like 10,100"))?,
                ),
                Err(_) => None,
            },
            // Flags cargo passes to every bench binary (`--bench`).
            only: std::env::args()
                .skip(1)
                .filter(|a| !a.starts_with("--"))
                .collect(),
        };
        ensure!(o.runs >= 1, "BALLAST_BENCH_RUNS must be at least 1");
        ensure!(
            !o.interval.is_zero() && !o.many_interval.is_zero(),
            "heartbeat intervals must be positive"
        );
        for s in &o.only {
            ensure!(
                ["rebalance", "many", "commits"].contains(&s.as_str()),
                "unknown scenario {s:?}: rebalance, many or commits"
            );
        }
        Ok(o)
    }

    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == scenario)
    }

    /// `n` scaled, at least 1.
    pub(crate) fn scaled(&self, n: usize) -> usize {
        ((n as f64 * self.scale).round() as usize).max(1)
    }

    /// Group sizes of the rebalance scenario: 10, 100, 1,000 scaled (at
    /// least 2 members, without repeats).
    pub(crate) fn group_sizes(&self) -> Vec<usize> {
        if let Some(v) = &self.sizes {
            return v.iter().map(|&n| n.max(2)).collect();
        }
        let mut v: Vec<usize> = [10, 100, 1000]
            .iter()
            .map(|&n| self.scaled(n).max(2))
            .collect();
        v.dedup();
        v
    }
}

// ---- random ids and phases (seeded, no dependency) --------------------------

/// xorshift64*: member ids and start phases, reproducible from the seed.
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// In [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A member id as a client would pick one (random, fixed length).
    pub(crate) fn member_id(&mut self) -> String {
        format!("member-{:016x}", self.next_u64())
    }
}

// ---- reporting ----------------------------------------------------------------

/// Nearest-rank percentile (sorts in place).
pub(crate) fn percentile(values: &mut [Duration], q: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    values.sort();
    let i = ((values.len() as f64 - 1.0) * q).round() as usize;
    values[i]
}

pub(crate) fn fmt_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

pub(crate) fn fmt_num(x: f64) -> String {
    if x.abs() < 1000.0 {
        return format!("{x:.0}");
    }
    let s = format!("{x:.0}");
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// min / median / p99 / max, and the same minus `interval` when given.
pub(crate) fn report_latencies(what: &str, values: &[Duration], interval: Option<Duration>) {
    let mut v = values.to_vec();
    let q = |v: &mut [Duration], p: f64| percentile(v, p);
    let (min, med, p99, max) = (
        q(&mut v, 0.0),
        q(&mut v, 0.5),
        q(&mut v, 0.99),
        q(&mut v, 1.0),
    );
    println!(
        "    {what:<22} min {} / median {} / p99 {} / max {}   (n={})",
        fmt_ms(min),
        fmt_ms(med),
        fmt_ms(p99),
        fmt_ms(max),
        v.len()
    );
    if let Some(i) = interval {
        let s = |d: Duration| {
            let ms = d.as_secs_f64() * 1e3 - i.as_secs_f64() * 1e3;
            format!("{ms:+.1} ms")
        };
        println!(
            "    {:<22} minus the interval: min {} / median {} / p99 {} / max {}",
            "",
            s(min),
            s(med),
            s(p99),
            s(max)
        );
    }
}

fn machine_facts() {
    let cpu = cpu_model();
    println!(
        "machine: {} cpus ({cpu}); load average {}; binary {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim(),
        ballast_tests::bin_path::ballast_bin().display()
    );
}

fn main() -> Result<()> {
    let o = Opts::parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    machine_facts();
    println!(
        "scale {}, runs {}, rebalance interval {}, many interval {}, window {} s, {} channels, seed {}",
        o.scale,
        o.runs,
        fmt_ms(o.interval),
        fmt_ms(o.many_interval),
        o.window.as_secs(),
        o.channels,
        o.seed
    );
    let started = Instant::now();
    let mut failed = Vec::new();
    let mut check = |name: &'static str, r: Result<()>| {
        if let Err(e) = r {
            println!("\n!! scenario {name} failed: {e:#}");
            failed.push(name);
        }
    };
    if o.wants("rebalance") {
        check("rebalance", rt.block_on(rebalance::bench_rebalance(&o)));
    }
    if o.wants("many") {
        check("many", rt.block_on(many::bench_many(&o)));
    }
    if o.wants("commits") {
        check("commits", rt.block_on(commits::bench_commits(&o)));
    }
    println!("\ntotal {:.0} s", started.elapsed().as_secs_f64());
    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    Ok(())
}
