//! Criterion benchmarks for the assignor at the sizes issue 2 sets, plus a
//! peak-memory report printed before the timed runs.
//!
//! Scenarios (targets on the project's 2-core machine: under 100 ms each,
//! peak memory during the call within 2x of the result's own size):
//! * placement of 1,000,000 partitions x RF 3 over 1,000 brokers, without
//!   racks, over 10 even racks and over 7 uneven racks;
//! * range assignment of 10,000 members over 1,000 topics x 100 partitions,
//!   every member subscribed to every topic: the id-based core (what the
//!   group coordinator calls) and the by-name wrapper (what the CLI calls).
//!
//! Inputs are built once, outside the timed closures; results are dropped
//! outside the timing too. Run with
//! `cargo bench -p ballast-assignor --bench assignor`
//! (`-- --test` runs every benchmark once, as a quick check).
//! Results live in docs/BENCHMARKS.md.

// The memory report needs a global allocator that counts bytes, and
// `GlobalAlloc` is an unsafe trait. The only unsafe code here forwards each
// call unchanged to `std::alloc::System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ballast_assignor::{
    BrokerMetadata, IdAssignment, JavaRandom, Member, PlacementRequest, StartIndex, Subscriber,
    TopicId, TopicPartitions, assign_replicas_to_brokers, range_assign, range_assign_ids,
};
use criterion::{BatchSize, Criterion, SamplingMode};

// ---------------------------------------------------------------------------
// Counting allocator
// ---------------------------------------------------------------------------

/// Bytes currently allocated (by requested size, not by the allocator's
/// rounded-up block size).
static CURRENT: AtomicUsize = AtomicUsize::new(0);
/// Highest value `CURRENT` reached since the last `reset_peak`.
static PEAK: AtomicUsize = AtomicUsize::new(0);

/// `System`, counting live bytes. A `realloc` counts only the size change:
/// the system allocator grows large blocks in place (mremap), and a small
/// block copied to a new place is at most one block counted twice for an
/// instant, which this count misses.
struct Counting;

fn grew(bytes: usize) {
    let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    CURRENT.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments, so
// `System`'s guarantees hold; the counters never affect the pointers.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator (hence `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds
        // the rest of `realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` once and reports the bytes it allocated above what was live
/// before the call, at the peak, and the bytes it left allocated (the
/// result, once `f`'s temporaries are freed).
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    let before = CURRENT.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let out = black_box(f());
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let retained = CURRENT.load(Ordering::Relaxed).saturating_sub(before);
    (out, peak, retained)
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn report(name: &str, peak: usize, result: usize) {
    println!(
        "memory {name}: peak {:.2} MiB during the call, result {:.2} MiB, ratio {:.2}",
        mib(peak),
        mib(result),
        peak as f64 / result.max(1) as f64
    );
}

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

const BROKERS: i32 = 1_000;
const PARTITIONS: i32 = 1_000_000;
const RF: i32 = 3;
const SEED: i64 = 42;

const MEMBERS: usize = 10_000;
const TOPICS: u32 = 1_000;
const PARTITIONS_PER_TOPIC: u32 = 100;

/// Brokers `0..1000`, each in rack `i % racks` (`None`: no racks).
fn brokers(racks: Option<i32>) -> Vec<BrokerMetadata> {
    (0..BROKERS)
        .map(|i| match racks {
            None => BrokerMetadata::new(i),
            Some(r) => BrokerMetadata::with_rack(i, format!("rack-{:02}", i % r)),
        })
        .collect()
}

/// Kafka's `createTopic` path: a random start index, here seeded.
fn place(brokers: &[BrokerMetadata], rng: &mut JavaRandom) -> ballast_assignor::ReplicaAssignment {
    assign_replicas_to_brokers(PlacementRequest {
        brokers,
        partitions: PARTITIONS,
        replication_factor: RF,
        start_index: StartIndex::Random(rng),
        start_partition_id: 0,
    })
    .expect("placement input is valid")
}

/// The group: `consumer-00000`.. in a shuffled input order (a seeded
/// Fisher-Yates with Java's Random), every fourth member static with
/// instance id `instance-NNNNN`.
struct Group {
    /// `(member id, group instance id)` in input order.
    ids: Vec<(String, Option<String>)>,
    /// Topic ids `0..TOPICS`, shared by every subscription.
    all_topics: Vec<TopicId>,
    /// Partition counts per topic id.
    counts: Vec<Option<u32>>,
}

impl Group {
    fn new() -> Self {
        let mut order: Vec<usize> = (0..MEMBERS).collect();
        let mut rng = JavaRandom::new(SEED);
        for i in (1..order.len()).rev() {
            let bound = i32::try_from(i + 1).unwrap_or(i32::MAX);
            let j = rng.next_int_bounded(bound).unwrap_or(0) as usize;
            order.swap(i, j);
        }
        let ids = order
            .into_iter()
            .map(|i| {
                let instance = (i % 4 == 0).then(|| format!("instance-{i:05}"));
                (format!("consumer-{i:05}"), instance)
            })
            .collect();
        Group {
            ids,
            all_topics: (0..TOPICS).collect(),
            counts: vec![Some(PARTITIONS_PER_TOPIC); TOPICS as usize],
        }
    }

    fn subscribers(&self) -> Vec<Subscriber<'_>> {
        self.ids
            .iter()
            .map(|(member_id, instance)| Subscriber {
                member_id,
                group_instance_id: instance.as_deref(),
                topics: &self.all_topics,
            })
            .collect()
    }

    fn topic_name(t: u32) -> String {
        format!("topic-{t:04}")
    }

    fn topics_by_name(&self) -> Vec<TopicPartitions> {
        (0..TOPICS)
            .map(|t| TopicPartitions {
                name: Self::topic_name(t),
                partitions: PARTITIONS_PER_TOPIC,
            })
            .collect()
    }

    /// Ten million owned topic names: what the by-name API takes.
    fn members_by_name(&self) -> Vec<Member> {
        let names: Vec<String> = (0..TOPICS).map(Self::topic_name).collect();
        self.ids
            .iter()
            .map(|(member_id, instance)| Member {
                member_id: member_id.clone(),
                group_instance_id: instance.clone(),
                topics: names.clone(),
            })
            .collect()
    }
}

/// Heap bytes of an id assignment: the outer vector plus every inner one.
fn id_assignment_bytes(a: &IdAssignment) -> usize {
    a.capacity() * size_of::<Vec<(TopicId, std::ops::Range<u32>)>>()
        + a.iter()
            .map(|v| v.capacity() * size_of::<(TopicId, std::ops::Range<u32>)>())
            .sum::<usize>()
}

/// Every input, built once.
struct Inputs {
    plain: Vec<BrokerMetadata>,
    racks10: Vec<BrokerMetadata>,
    racks7: Vec<BrokerMetadata>,
    group: Group,
    topics: Vec<TopicPartitions>,
    members: Vec<Member>,
}

impl Inputs {
    fn new() -> Self {
        let group = Group::new();
        let topics = group.topics_by_name();
        let members = group.members_by_name();
        Inputs {
            plain: brokers(None),
            racks10: brokers(Some(10)),
            racks7: brokers(Some(7)),
            group,
            topics,
            members,
        }
    }
}

// ---------------------------------------------------------------------------
// Memory report
// ---------------------------------------------------------------------------

fn memory_report(inp: &Inputs) {
    for (name, brokers) in [
        ("placement/rack_unaware", &inp.plain),
        ("placement/rack_aware_10_racks", &inp.racks10),
        ("placement/rack_aware_7_racks_uneven", &inp.racks7),
    ] {
        let mut rng = JavaRandom::new(SEED);
        let (a, peak, _) = measure(|| place(brokers, &mut rng));
        report(name, peak, a.heap_bytes());
    }

    let subs = inp.group.subscribers();
    let (a, peak, retained) =
        measure(|| range_assign_ids(&inp.group.counts, &subs).expect("range input is valid"));
    let size = id_assignment_bytes(&a);
    report("range/ids", peak, size);
    if size != retained {
        println!("  (the allocator saw {retained} bytes retained, {size} computed)");
    }
    drop(a);

    // A tree of maps and strings: its size is what the call left allocated.
    let (a, peak, retained) =
        measure(|| range_assign(&inp.topics, &inp.members).expect("range input is valid"));
    report("range/names", peak, retained);
    drop(a);
}

// ---------------------------------------------------------------------------
// Criterion
// ---------------------------------------------------------------------------

fn bench_placement(c: &mut Criterion, inp: &Inputs) {
    let mut g = c.benchmark_group("placement_1m_partitions_rf3_1000_brokers");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, brokers) in [
        ("rack_unaware", &inp.plain),
        ("rack_aware_10_racks", &inp.racks10),
        ("rack_aware_7_racks_uneven", &inp.racks7),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || JavaRandom::new(SEED),
                |mut rng| place(black_box(brokers), &mut rng),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

fn bench_range(c: &mut Criterion, inp: &Inputs) {
    let mut g = c.benchmark_group("range_10k_members_1000_topics_x100");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let subs = inp.group.subscribers();
    g.bench_function("ids", |b| {
        b.iter_batched(
            || (),
            |()| range_assign_ids(black_box(&inp.group.counts), black_box(&subs)),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("names", |b| {
        b.iter_batched(
            || (),
            |()| range_assign(black_box(&inp.topics), black_box(&inp.members)),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn main() {
    let inputs = Inputs::new();
    memory_report(&inputs);
    let mut c = Criterion::default().configure_from_args();
    bench_placement(&mut c, &inputs);
    bench_range(&mut c, &inputs);
    c.final_summary();
}
