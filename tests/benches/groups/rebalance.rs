//! Scenario `rebalance`: end-to-end latency of a rebalance caused by one
//! member joining a stable group of n members (n = 10, 100, 1,000), and,
//! for information, by it leaving again.
//!
//! One topic per size with 2n partitions (RF 1: nothing is produced; the
//! coordinator needs only the partition count). The n members start with
//! random delays within one heartbeat interval and the group settles. Then
//! each repetition: a member with a fresh random id (so a random place in
//! the range order) joins; the latency runs from just before its join
//! request to the moment the last member received the answer that left it
//! at the new epoch owning exactly its range share (members report what
//! they see on the [`Board`]; the share is computed here from the sorted
//! member ids). The coordinator's DescribeGroup is then checked to agree
//! (Stable, every member at the group epoch with assignment == target).
//! Then the new member leaves and the same is measured back to n members.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use ballast_proto::v1::group_client::GroupClient;
use ballast_proto::v1::{self as pb, ErrorCode};
use tonic::transport::Channel;

use crate::cluster::{Cluster, clients, cpu_seconds, load_average};
use crate::member::{self, Board, Counters, Env, MemberHandle, Spec};
use crate::{Opts, Rng, fmt_ms, report_latencies};

/// Longest wait for one group to settle (not a measurement).
const SETTLE: Duration = Duration::from_secs(180);

/// Kafka's range share of each member over `partitions` partitions of one
/// topic: members sorted by id; the first `partitions % n` get one more.
pub(crate) fn range_shares(ids: &[String], partitions: i32) -> BTreeMap<String, Vec<i32>> {
    let mut sorted: Vec<&String> = ids.iter().collect();
    sorted.sort();
    let n = sorted.len() as i32;
    let (q, r) = (partitions / n, partitions % n);
    sorted
        .into_iter()
        .enumerate()
        .map(|(k, id)| {
            let k = k as i32;
            let start = k * q + k.min(r);
            let len = q + i32::from(k < r);
            (id.clone(), (start..start + len).collect())
        })
        .collect()
}

/// When every expected member sees its share at one epoch of at least
/// `min_epoch`: that epoch and the latest instant a member's view changed.
fn settled(
    board: &Board,
    expected: &BTreeMap<String, Vec<i32>>,
    min_epoch: i32,
) -> Option<(i32, Instant)> {
    let views = board.lock();
    let mut epoch = None;
    let mut last: Option<Instant> = None;
    for (id, want) in expected {
        let v = views.get(id)?;
        if v.owned != *want || v.epoch < min_epoch || epoch.is_some_and(|e| e != v.epoch) {
            return None;
        }
        epoch = Some(v.epoch);
        last = Some(last.map_or(v.changed_at, |l| l.max(v.changed_at)));
    }
    Some((epoch?, last?))
}

async fn wait_settled(
    board: &Board,
    expected: &BTreeMap<String, Vec<i32>>,
    min_epoch: i32,
    what: &str,
) -> Result<(i32, Instant)> {
    let start = Instant::now();
    loop {
        if let Some(s) = settled(board, expected, min_epoch) {
            return Ok(s);
        }
        if start.elapsed() > SETTLE {
            let views = board.lock();
            let wrong = expected
                .iter()
                .filter(|(id, want)| {
                    views
                        .get(*id)
                        .is_none_or(|v| v.owned != **want || v.epoch < min_epoch)
                })
                .count();
            bail!(
                "{what}: not settled within {SETTLE:?} ({wrong} of {} members not at their share at epoch >= {min_epoch})",
                expected.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The coordinator agrees: Stable at `epoch`, every member at it with its
/// target and `expected` share. Retries briefly (an answer in flight).
async fn check_describe(
    client: &mut GroupClient<Channel>,
    group: &str,
    expected: &BTreeMap<String, Vec<i32>>,
    epoch: i32,
) -> Result<()> {
    let mut last = String::new();
    for _ in 0..20 {
        let d = client
            .describe_group(pb::DescribeGroupRequest {
                group_id: group.to_owned(),
            })
            .await?
            .into_inner();
        ensure!(
            d.error == ErrorCode::None as i32,
            "describe {group}: {}",
            d.error_message
        );
        let parts = |l: &[pb::TopicPartitions]| -> Vec<i32> {
            let mut v: Vec<i32> = l.iter().flat_map(|t| t.partitions.clone()).collect();
            v.sort_unstable();
            v
        };
        let members: BTreeMap<&str, &pb::GroupMemberDescription> = d
            .members
            .iter()
            .map(|m| (m.member_id.as_str(), m))
            .collect();
        let agree = d.state == "Stable"
            && d.group_epoch == epoch
            && members.len() == expected.len()
            && expected.iter().all(|(id, want)| {
                members.get(id.as_str()).is_some_and(|m| {
                    m.member_epoch == epoch
                        && m.state == "Stable"
                        && parts(&m.assignment) == *want
                        && parts(&m.target_assignment) == *want
                        && m.revoking.is_empty()
                })
            });
        if agree {
            return Ok(());
        }
        last = format!(
            "state {} group epoch {} (members at {epoch}), {} members",
            d.state,
            d.group_epoch,
            d.members.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("DescribeGroup {group} disagrees with what the members see: {last}")
}

/// How long after `since` the last of the `expected` members got its
/// first answer (the heartbeat round in which everyone heard of the
/// change).
fn round_done(board: &Board, expected: &BTreeMap<String, Vec<i32>>, since: Instant) -> Duration {
    let views = board.lock();
    expected
        .keys()
        .filter_map(|id| views.get(id).and_then(|v| v.seen_at))
        .max()
        .map_or(Duration::ZERO, |t| t.saturating_duration_since(since))
}

/// One group size's results.
#[derive(Debug, Default)]
struct SizeResult {
    join: Vec<Duration>,
    leave: Vec<Duration>,
}

pub(crate) async fn bench_rebalance(o: &Opts) -> Result<()> {
    let interval = o.interval;
    let interval_flag = format!("{}ms", interval.as_millis());
    println!(
        "\n== rebalance: one member joins (then leaves) a stable group; members heartbeat every {} (agents: --group-heartbeat-interval {interval_flag}) ==",
        fmt_ms(interval)
    );
    let cluster = Cluster::start(&[], &["--group-heartbeat-interval", &interval_flag]).await?;
    let sizes = o.group_sizes();
    for &n in &sizes {
        cluster
            .create_topic(&format!("rebalance-{n}"), 2 * n as i32, 1)
            .await?;
    }
    let mut rng = Rng::new(o.seed);
    let mut results: BTreeMap<usize, SizeResult> = BTreeMap::new();
    for &n in &sizes {
        let r = run_size(&cluster, o, n, &mut rng).await?;
        results.insert(n, r);
    }
    println!(
        "  summary (latency from the join / leave request to the last member's answer at its new share):"
    );
    for (n, r) in &results {
        report_latencies(&format!("join, {n} members"), &r.join, Some(interval));
        report_latencies(&format!("leave, {n} members"), &r.leave, Some(interval));
    }
    drop(cluster);
    Ok(())
}

async fn run_size(cluster: &Cluster, o: &Opts, n: usize, rng: &mut Rng) -> Result<SizeResult> {
    let group = format!("rebalance-{n}");
    let topic = group.clone();
    let partitions = 2 * n as i32;
    let (coordinator_id, address) = cluster.coordinator_of(&group).await?;
    let coordinator_pid = cluster.agent_pid(coordinator_id)?;
    let ticks = crate::cluster::clock_ticks();
    let pool = clients(&address, o.channels);
    let env = Env {
        board: Arc::new(Board::default()),
        counters: Arc::new(Counters::default()),
        join_permits: None,
    };
    let spec = |id: &str| Spec {
        group: group.clone(),
        member: id.to_owned(),
        topic: topic.clone(),
    };
    let mut ids: Vec<String> = (0..n).map(|_| rng.member_id()).collect();
    ids.sort();
    ids.dedup();
    let started = Instant::now();
    let cpu0 = cpu_seconds(coordinator_pid, ticks)?;
    let mut members: Vec<MemberHandle> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let delay = o.interval.mul_f64(rng.unit());
            member::spawn(pool[i % pool.len()].clone(), spec(id), delay, env.clone())
        })
        .collect();
    let base = range_shares(&ids, partitions);
    let (mut epoch, at) = wait_settled(&env.board, &base, 1, "initial group").await?;
    let mut describe = GroupClient::new(ballast_tests::cluster::channel(&address))
        .max_decoding_message_size(64 << 20);
    check_describe(&mut describe, &group, &base, epoch).await?;
    println!(
        "  {n} members (group {group}, {partitions} partitions, coordinator: agent {coordinator_id}, pid {coordinator_pid}): {n} members starting within one interval settled at epoch {epoch} after {:.2} s (agent CPU {:.2} s); load {}",
        at.duration_since(started).as_secs_f64(),
        cpu_seconds(coordinator_pid, ticks)? - cpu0,
        load_average()
    );

    let mut result = SizeResult::default();
    for run in 1..=o.runs {
        // A pause at a random phase of the members' heartbeats.
        tokio::time::sleep(o.interval.mul_f64(0.5 + rng.unit())).await;
        let problems = env.counters.problem_count();
        let ok0 = env.counters.ok();
        let cpu0 = cpu_seconds(coordinator_pid, ticks)?;
        let new_id = rng.member_id();
        let mut all = ids.clone();
        all.push(new_id.clone());
        let expected = range_shares(&all, partitions);
        let moved = expected
            .iter()
            .filter(|(id, share)| base.get(*id).is_some_and(|b| b != *share))
            .count();
        env.board.reset_seen();
        let joined = Instant::now();
        let joiner = member::spawn(
            pool[run % pool.len()].clone(),
            spec(&new_id),
            Duration::ZERO,
            env.clone(),
        );
        let (e, at) = wait_settled(&env.board, &expected, epoch + 1, "after a join").await?;
        let join_latency = at.saturating_duration_since(joined);
        let join_round = round_done(&env.board, &expected, joined);
        let join_beats = env.counters.ok() - ok0;
        check_describe(&mut describe, &group, &expected, e).await?;
        epoch = e;

        env.board.reset_seen();
        let left = Instant::now();
        joiner.signal_leave();
        let (e, at) = wait_settled(&env.board, &base, epoch + 1, "after a leave").await?;
        let leave_latency = at.saturating_duration_since(left);
        let leave_round = round_done(&env.board, &base, left);
        check_describe(&mut describe, &group, &base, e).await?;
        epoch = e;
        joiner.leave().await;
        let cpu = cpu_seconds(coordinator_pid, ticks)? - cpu0;
        println!(
            "  {n} members, run {run}: join settled in {} ({} beyond the interval; every member answered once by {}; {moved} members' shares moved, {join_beats} heartbeats), leave settled in {} (all answered by {}); epoch {epoch}; agent CPU {cpu:.2} s for both; {} new problems",
            fmt_ms(join_latency),
            fmt_ms(join_latency.saturating_sub(o.interval)),
            fmt_ms(join_round),
            fmt_ms(leave_latency),
            fmt_ms(leave_round),
            env.counters.problem_count() - problems,
        );
        result.join.push(join_latency);
        result.leave.push(leave_latency);
    }
    println!(
        "  {n} members: heartbeats answered {}, immediate (after a release) {}, {}",
        env.counters.ok(),
        env.counters
            .immediate
            .load(std::sync::atomic::Ordering::Relaxed),
        env.counters.problems()
    );
    // Everyone leaves, so the next size runs alone.
    for m in &members {
        m.signal_leave();
    }
    for m in members.drain(..) {
        m.leave().await;
    }
    Ok(result)
}
