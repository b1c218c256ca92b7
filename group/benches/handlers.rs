//! CPU of the group coordinator's pure handlers, independent of the
//! network and the log: what one heartbeat costs the shard's lock holder.
//!
//! A stable group of `n` members (ids `member-0000`..), all subscribed to
//! one topic of `2n` partitions, each owning its range share (two
//! partitions) at epoch 1, built directly from records (no warm-up
//! heartbeats). For n = 10, 100 and 1,000:
//! * `steady`: a member heartbeats at its epoch with what it owns (the
//!   fast path every member takes between rebalances; no records);
//! * `join`: a new member (`member-0000a`, second in id order, so every
//!   member after it gets a new target) joins with epoch 0: bumps the
//!   group epoch, recomputes the range assignment and returns a record for
//!   every member whose target changed;
//! * `join_apply`: the same plus applying those records to the shard, as
//!   the host does under its lock;
//! * `revoke`: after that join, an existing member heartbeats at the old
//!   epoch and is told to revoke (the common heartbeat during a
//!   rebalance; one member record).
//!
//! `cargo bench -p ballast-group --bench handlers` (about 40 s);
//! `-- --test` runs each once.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use ballast_group::{
    Assignment, GroupConfig, GroupMetadata, GroupRecord, Member, MemberState, Shard,
};
use ballast_proto::v1::GroupHeartbeatRequest;
use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode};

const GROUP: &str = "bench-group";
const TOPIC: &str = "events";
const SESSION_MS: u32 = 30_000;
const REBALANCE_MS: u32 = 60_000;

fn member_id(i: usize) -> String {
    format!("member-{i:04}")
}

/// A shard holding one stable group of `n` members at epoch 1.
fn stable_group(n: usize) -> Shard {
    let mut records = vec![GroupRecord::Metadata {
        group_id: GROUP.into(),
        value: Some(GroupMetadata {
            group_epoch: 1,
            assignment_epoch: 1,
            subscription_metadata: [(TOPIC.to_owned(), 2 * n as i32)].into(),
        }),
    }];
    for i in 0..n {
        let share = Assignment::from_pairs([(TOPIC, 2 * i as i32), (TOPIC, 2 * i as i32 + 1)]);
        records.push(GroupRecord::Member {
            group_id: GROUP.into(),
            member_id: member_id(i),
            value: Some(Member {
                member_id: member_id(i),
                instance_id: None,
                client_id: "bench".into(),
                subscribed_topics: vec![TOPIC.into()],
                rebalance_timeout_ms: REBALANCE_MS,
                session_timeout_ms: SESSION_MS,
                member_epoch: 1,
                previous_member_epoch: 0,
                state: MemberState::Stable,
                assigned: share.clone(),
                revoking: Assignment::new(),
                target: share,
            }),
        });
    }
    let mut shard = Shard::new();
    shard.apply(&records);
    shard
}

fn request(member: &str, epoch: i32, owned: &Assignment) -> GroupHeartbeatRequest {
    GroupHeartbeatRequest {
        group_id: GROUP.into(),
        member_id: member.into(),
        member_epoch: epoch,
        instance_id: String::new(),
        rebalance_timeout_ms: REBALANCE_MS,
        session_timeout_ms: SESSION_MS,
        subscribed_topics: vec![TOPIC.into()],
        owned: owned.to_proto(),
        client_id: "bench".into(),
    }
}

fn bench_handlers(c: &mut Criterion) {
    let config = GroupConfig::default();
    let mut g = c.benchmark_group("heartbeat");
    g.sample_size(20)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in [10usize, 100, 1000] {
        let shard = stable_group(n);
        let topics: HashMap<String, i32> = [(TOPIC.to_owned(), 2 * n as i32)].into();
        let middle = n / 2;
        let owned =
            Assignment::from_pairs([(TOPIC, 2 * middle as i32), (TOPIC, 2 * middle as i32 + 1)]);
        let steady = request(&member_id(middle), 1, &owned);
        // Sanity: the fast path writes nothing and keeps the member as is.
        let out = shard
            .heartbeat(&steady, &topics, &config)
            .expect("steady heartbeat");
        assert!(out.records.is_empty(), "steady heartbeat wrote records");
        assert_eq!(out.response.member_epoch, 1);
        g.bench_with_input(BenchmarkId::new("steady", n), &steady, |b, req| {
            b.iter(|| {
                shard
                    .heartbeat(black_box(req), &topics, &config)
                    .expect("steady")
            });
        });

        let join = request("member-0000a", 0, &Assignment::new());
        let joined = shard.heartbeat(&join, &topics, &config).expect("join");
        assert!(
            joined.records.len() >= n,
            "join wrote {} records for {n} members",
            joined.records.len()
        );
        g.bench_with_input(BenchmarkId::new("join", n), &join, |b, req| {
            b.iter_with_large_drop(|| {
                shard
                    .heartbeat(black_box(req), &topics, &config)
                    .expect("join")
            });
        });
        g.bench_with_input(BenchmarkId::new("join_apply", n), &join, |b, req| {
            b.iter_batched_ref(
                || shard.clone(),
                |s| {
                    let out = s.heartbeat(black_box(req), &topics, &config).expect("join");
                    s.apply(&out.records);
                    out
                },
                BatchSize::LargeInput,
            );
        });

        let mut after = shard.clone();
        after.apply(&joined.records);
        let revoke = request(&member_id(middle), 1, &owned);
        let out = after
            .heartbeat(&revoke, &topics, &config)
            .expect("revoking heartbeat");
        assert_eq!(out.records.len(), 1, "a revocation writes one member");
        assert!(
            out.response
                .assignment
                .iter()
                .map(|t| t.partitions.len())
                .sum::<usize>()
                < 2,
            "the member keeps less than it owned"
        );
        g.bench_with_input(BenchmarkId::new("revoke", n), &revoke, |b, req| {
            b.iter_with_large_drop(|| {
                after
                    .heartbeat(black_box(req), &topics, &config)
                    .expect("revoke")
            });
        });
    }
    g.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_handlers(&mut c);
    c.final_summary();
}
