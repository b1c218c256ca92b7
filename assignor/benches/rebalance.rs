//! Criterion benchmarks for the balancer at issue 6's size: 1,000 brokers
//! over 10 racks and 1,000,000 replicas (333,334 partitions at RF 3, placed
//! by Kafka's rack-aware placement in topics of 1,000 partitions, so
//! replica counts start uneven between topics' start brokers). Target:
//! under 2 s per proposal, and moves within 1.05x of the lower bound.
//!
//! Cases: `add-50` (50 empty brokers join), `remove-10` (drain 10 brokers),
//! `leaders` (the leaders goal after 50 join), `disk` (random sizes, the
//! disk goal, 50 joined), and on uneven racks (rack k holds brokers
//! 2^k..2^(k+1), so 1, 2, 4, ... 512 brokers: the small racks' brokers are
//! hot, since rack-aware placement alternates racks) `uneven-add-50` and
//! `uneven-disk`. Before the timed runs each case prints its moves beside
//! the lower bound (rack-aware: the fewest moves any result as even as the
//! rack rule allows needs; `rebalance/target.rs`). Run with
//! `cargo bench -p ballast-assignor --bench rebalance`
//! (`-- --test` runs each once; `-- uneven` only the cases whose name
//! contains `uneven`, printed and timed). Results live in
//! docs/BENCHMARKS.md.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ballast_assignor::rebalance::{
    BalancePartition, BalanceRequest, Goal, lower_bound_moves, propose_balance,
};
use ballast_assignor::{
    BrokerMetadata, JavaRandom, PlacementRequest, StartIndex, assign_replicas_to_brokers,
};
use criterion::{Criterion, SamplingMode};

const BROKERS: i32 = 1000;
const RACKS: i32 = 10;
const REPLICAS: i32 = 1_000_000;
const RF: i32 = 3;
const TOPIC_PARTITIONS: i32 = 1000;

fn brokers(n: i32) -> Vec<BrokerMetadata> {
    (1..=n)
        .map(|id| BrokerMetadata::with_rack(id, format!("rack-{}", id % RACKS)))
        .collect()
}

/// Racks of 1, 2, 4, ... brokers: broker `id` on rack ⌊log2 id⌋.
fn uneven_brokers(n: i32) -> Vec<BrokerMetadata> {
    (1..=n)
        .map(|id| BrokerMetadata::with_rack(id, format!("rack-{}", id.ilog2())))
        .collect()
}

/// Topics of 1,000 partitions placed over `on`.
fn cluster(on: &[BrokerMetadata]) -> Vec<BalancePartition> {
    let mut rng = JavaRandom::new(42);
    let mut out = Vec::with_capacity((REPLICAS / RF + 1) as usize);
    let total = (REPLICAS + RF - 1) / RF;
    let mut t = 0;
    while (out.len() as i32) < total {
        let n = TOPIC_PARTITIONS.min(total - out.len() as i32);
        let a = assign_replicas_to_brokers(PlacementRequest {
            brokers: on,
            partitions: n,
            replication_factor: RF,
            start_index: StartIndex::Random(&mut rng),
            start_partition_id: 0,
        })
        .expect("valid placement");
        for (p, replicas) in a.iter() {
            out.push(BalancePartition {
                topic: format!("topic-{t:04}"),
                partition: p,
                replicas: replicas.to_vec(),
                size_bytes: 0,
            });
        }
        t += 1;
    }
    out
}

fn with_sizes(mut parts: Vec<BalancePartition>) -> Vec<BalancePartition> {
    let mut rng = JavaRandom::new(7);
    for p in &mut parts {
        // 1 MiB to 1 GiB, skewed towards small.
        let r = rng.next_int_bounded(1 << 20).unwrap_or(0) as u64;
        p.size_bytes = (1 << 20) + r * r / 1024;
    }
    parts
}

struct Case {
    name: &'static str,
    brokers: Vec<BrokerMetadata>,
    parts: Vec<BalancePartition>,
    goal: Goal,
    remove: Vec<i32>,
}

fn cases() -> Vec<Case> {
    let joined = cluster(&brokers(BROKERS - 50));
    let full = cluster(&brokers(BROKERS));
    let uneven = cluster(&uneven_brokers(BROKERS - 50));
    vec![
        Case {
            name: "add-50",
            brokers: brokers(BROKERS),
            parts: joined.clone(),
            goal: Goal::Replicas,
            remove: Vec::new(),
        },
        Case {
            name: "remove-10",
            brokers: brokers(BROKERS),
            parts: full,
            goal: Goal::Replicas,
            remove: (1..=10).map(|i| i * 97).collect(),
        },
        Case {
            name: "leaders",
            brokers: brokers(BROKERS),
            parts: joined.clone(),
            goal: Goal::Leaders,
            remove: Vec::new(),
        },
        Case {
            name: "disk",
            brokers: brokers(BROKERS),
            parts: with_sizes(joined),
            goal: Goal::Disk,
            remove: Vec::new(),
        },
        Case {
            name: "uneven-add-50",
            brokers: uneven_brokers(BROKERS),
            parts: uneven.clone(),
            goal: Goal::Replicas,
            remove: Vec::new(),
        },
        Case {
            name: "uneven-disk",
            brokers: uneven_brokers(BROKERS),
            parts: with_sizes(uneven),
            goal: Goal::Disk,
            remove: Vec::new(),
        },
    ]
}

fn request(c: &Case) -> BalanceRequest<'_> {
    BalanceRequest {
        brokers: &c.brokers,
        partitions: &c.parts,
        goal: c.goal,
        remove: &c.remove,
        add: &[],
    }
}

fn run(c: &Case) -> ballast_assignor::rebalance::BalancePlan {
    propose_balance(&request(c)).expect("valid request")
}

fn bench(crit: &mut Criterion) {
    // Criterion's name filter (a bare argument) also picks what is printed.
    // (Options other than these flags take a value, which is no filter.)
    const FLAGS: [&str; 11] = [
        "--bench",
        "--test",
        "--list",
        "--exact",
        "--verbose",
        "-v",
        "--quiet",
        "--noplot",
        "--ignored",
        "--nocapture",
        "--quick",
    ];
    let mut filters: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if !a.starts_with('-') {
            filters.push(a);
        } else if !FLAGS.contains(&a.as_str()) && !a.contains('=') {
            args.next();
        }
    }
    let cases: Vec<Case> = cases()
        .into_iter()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.name.contains(f.as_str())))
        .collect();
    for c in &cases {
        let started = Instant::now();
        let plan = run(c);
        let secs = started.elapsed().as_secs_f64();
        // The bound alone (part of every proposal's time).
        let started = Instant::now();
        let bound = lower_bound_moves(&request(c)).expect("valid request");
        let bound_secs = started.elapsed().as_secs_f64();
        let spread =
            |m: &std::collections::BTreeMap<i32, ballast_assignor::rebalance::BrokerUsage>,
             f: fn(&ballast_assignor::rebalance::BrokerUsage) -> u64| {
                let v: Vec<u64> = m
                    .iter()
                    .filter(|(b, _)| !c.remove.contains(b))
                    .map(|(_, u)| f(u))
                    .collect();
                (
                    v.iter().copied().min().unwrap_or(0),
                    v.iter().copied().max().unwrap_or(0),
                )
            };
        let rep = |u: &ballast_assignor::rebalance::BrokerUsage| u.replicas as u64;
        let lead = |u: &ballast_assignor::rebalance::BrokerUsage| u.leaders as u64;
        let bytes = |u: &ballast_assignor::rebalance::BrokerUsage| u.bytes >> 20;
        println!(
            "{}: {:.3} s; moves {} / lower bound {} = {:.4} (replicas-goal bound {}, computed in {:.3} s); \
             bytes moved {} MiB / bound {} MiB; \
             leader changes {}; replicas/broker {:?} -> {:?}; leaders/broker {:?} -> {:?}; MiB/broker {:?} -> {:?}",
            c.name,
            secs,
            plan.replica_moves,
            plan.lower_bound_moves,
            plan.replica_moves as f64 / plan.lower_bound_moves.max(1) as f64,
            bound,
            bound_secs,
            plan.bytes_moved >> 20,
            plan.lower_bound_bytes >> 20,
            plan.leader_changes,
            spread(&plan.before, rep),
            spread(&plan.after, rep),
            spread(&plan.before, lead),
            spread(&plan.after, lead),
            spread(&plan.before, bytes),
            spread(&plan.after, bytes),
        );
    }
    let mut g = crit.benchmark_group("rebalance-1000-brokers-1M-replicas");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    for c in &cases {
        g.bench_function(c.name, |b| b.iter(|| black_box(run(c))));
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
