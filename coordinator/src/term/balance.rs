//! The active term's balancer: proposals on demand (`ProposeBalance`) and
//! the continuous mode (off by default) that proposes and executes on its
//! own, rate-limited, when a broker joins empty, a broker has been down
//! longer than a grace period, or replica counts drift past a threshold.
//!
//! The proposal itself is `ballast_assignor::balance` (pure), run on a
//! blocking thread over a snapshot: brokers live now (fenced ones are
//! drained only when asked, or by the continuous mode after the grace), the
//! partitions' replicas, and the sizes agents report with their heartbeats.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use ballast_assignor::BrokerMetadata;
use ballast_assignor::rebalance::{
    BalancePartition, BalancePlan, BalanceRequest, Goal, balanced_ranges, propose_balance,
};
use ballast_proto::v1::{self as pb};

use super::{ServiceError, Term};
use crate::state::ClusterState;

/// What the continuous balancer remembers (in memory: a new term starts
/// afresh, with every fenced broker's clock starting at takeover).
#[derive(Debug, Default)]
pub(crate) struct AutoBalance {
    /// When each fenced broker was first seen fenced by this term.
    fenced_since: HashMap<i32, Instant>,
    /// When the last automatic reassignment started.
    last_run: Option<Instant>,
    /// When conditions were last checked.
    last_check: Option<Instant>,
    /// One line about the last thing it did.
    last: String,
}

/// The input of a proposal, taken under the state lock.
struct Snapshot {
    brokers: Vec<BrokerMetadata>,
    partitions: Vec<BalancePartition>,
    unknown_sizes: u64,
}

fn snapshot(
    state: &ClusterState,
    sizes: &HashMap<(String, i32), u64>,
    include: &BTreeSet<i32>,
) -> Snapshot {
    let brokers = state
        .brokers
        .values()
        .filter(|b| !b.fenced || include.contains(&b.broker_id))
        .map(|b| BrokerMetadata {
            id: b.broker_id,
            rack: (!b.rack.is_empty()).then(|| b.rack.clone()),
        })
        .collect();
    let mut unknown_sizes = 0;
    let mut partitions = Vec::new();
    for (name, entry) in &state.topics {
        for (p, s) in entry.partitions.iter().enumerate() {
            let size = sizes.get(&(name.clone(), p as i32)).copied();
            unknown_sizes += u64::from(size.is_none());
            partitions.push(BalancePartition {
                topic: name.clone(),
                partition: p as i32,
                replicas: s.replicas.clone(),
                size_bytes: size.unwrap_or(0),
            });
        }
    }
    Snapshot {
        brokers,
        partitions,
        unknown_sizes,
    }
}

fn usage(map: &BTreeMap<i32, ballast_assignor::rebalance::BrokerUsage>) -> Vec<pb::BrokerUsage> {
    map.iter()
        .map(|(id, u)| pb::BrokerUsage {
            broker_id: *id,
            replicas: u.replicas as u64,
            leaders: u.leaders as u64,
            bytes: u.bytes,
        })
        .collect()
}

fn to_response(plan: BalancePlan, unknown_sizes: u64, secs: f64) -> pb::ProposeBalanceResponse {
    pb::ProposeBalanceResponse {
        partitions: plan
            .partitions
            .into_iter()
            .map(|p| pb::ReassignmentPartition {
                topic: p.topic,
                partition: p.partition,
                replicas: p.replicas,
            })
            .collect(),
        replica_moves: plan.replica_moves as u64,
        bytes_moved: plan.bytes_moved,
        lower_bound_moves: plan.lower_bound_moves as u64,
        lower_bound_bytes: plan.lower_bound_bytes,
        leader_changes: plan.leader_changes as u64,
        before: usage(&plan.before),
        after: usage(&plan.after),
        unknown_sizes,
        compute_seconds: secs,
    }
}

/// Replica counts per live broker: (max - min) past the threshold (percent
/// of the mean, and at least 2 replicas)? With racks, each count is first
/// taken relative to the low end of that broker's balanced range (as even
/// as the rack rule allows, `ballast_assignor::rebalance::balanced_ranges`):
/// on uneven racks a balanced cluster has brokers of very different counts,
/// and only a spread past what the racks explain is an imbalance. Without
/// racks every range has the same low end and this is the plain spread.
fn imbalanced(state: &ClusterState, threshold_percent: u32) -> Option<String> {
    let mut counts: BTreeMap<i32, u64> = state
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .map(|b| (b.broker_id, 0))
        .collect();
    if counts.len() < 2 {
        return None;
    }
    let mut total = 0u64;
    for t in state.topics.values() {
        for p in &t.partitions {
            for r in &p.replicas {
                if let Some(c) = counts.get_mut(r) {
                    *c += 1;
                    total += 1;
                }
            }
        }
    }
    let racks = state
        .brokers
        .values()
        .any(|b| !b.fenced && !b.rack.is_empty());
    let low: BTreeMap<i32, u64> = if racks {
        let brokers: Vec<BrokerMetadata> = state
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| BrokerMetadata {
                id: b.broker_id,
                rack: (!b.rack.is_empty()).then(|| b.rack.clone()),
            })
            .collect();
        let partitions: Vec<BalancePartition> = state
            .topics
            .iter()
            .flat_map(|(name, t)| {
                t.partitions
                    .iter()
                    .enumerate()
                    .map(move |(p, s)| BalancePartition {
                        topic: name.clone(),
                        partition: p as i32,
                        replicas: s.replicas.clone(),
                        size_bytes: 0,
                    })
            })
            .collect();
        match balanced_ranges(&BalanceRequest {
            brokers: &brokers,
            partitions: &partitions,
            goal: Goal::Replicas,
            remove: &[],
            add: &[],
        }) {
            Ok(ranges) => ranges
                .into_iter()
                .map(|(b, (lo, _))| (b, lo as u64))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot compute balanced ranges; judging plain counts");
                BTreeMap::new()
            }
        }
    } else {
        BTreeMap::new()
    };
    let off = |b: &i32, c: u64| c as i64 - low.get(b).copied().unwrap_or(0) as i64;
    // (offset from the balanced minimum, broker, count); first of equals.
    let offs: Vec<(i64, i32, u64)> = counts.iter().map(|(b, c)| (off(b, *c), *b, *c)).collect();
    let min = *offs.iter().min_by_key(|x| x.0)?;
    let max = *offs.iter().rev().max_by_key(|x| x.0)?;
    let mean = total as f64 / counts.len() as f64;
    let spread = (max.0 - min.0) as f64;
    if !(spread >= 2.0 && spread > mean * f64::from(threshold_percent) / 100.0) {
        return None;
    }
    Some(if low.is_empty() {
        format!(
            "replica counts range from {} to {} per broker (mean {mean:.1})",
            min.2, max.2
        )
    } else {
        format!(
            "replica counts are {} apart beyond what the racks explain: broker {} holds {} ({} over its balanced minimum), broker {} holds {} ({} over its) (mean {mean:.1})",
            max.0 - min.0,
            max.1,
            max.2,
            max.0,
            min.1,
            min.2,
            min.0
        )
    })
}

impl Term {
    /// A balancing plan (nothing moves).
    pub async fn propose_balance(
        &self,
        req: pb::ProposeBalanceRequest,
    ) -> Result<pb::ProposeBalanceResponse, ServiceError> {
        self.ensure_fresh()?;
        let goal = match pb::BalanceGoal::try_from(req.goal).unwrap_or(pb::BalanceGoal::Unspecified)
        {
            pb::BalanceGoal::Unspecified | pb::BalanceGoal::Replicas => Goal::Replicas,
            pb::BalanceGoal::Leaders => Goal::Leaders,
            pb::BalanceGoal::Disk => Goal::Disk,
        };
        let sizes = self.partition_sizes();
        let snap = {
            let state = self.state();
            for b in req.remove_brokers.iter().chain(&req.add_brokers) {
                if !state.brokers.contains_key(b) {
                    return Err(ServiceError::UnknownBroker(*b));
                }
            }
            for b in &req.add_brokers {
                if !state.is_live(*b) {
                    return Err(ServiceError::InvalidArgument(format!(
                        "--add-broker {b}: the broker is fenced; start it first"
                    )));
                }
            }
            // Fenced brokers being drained stay in the input (their
            // replicas must move off them).
            let include: BTreeSet<i32> = req.remove_brokers.iter().copied().collect();
            snapshot(&state, &sizes, &include)
        };
        let (remove, add) = (req.remove_brokers, req.add_brokers);
        let started = Instant::now();
        let plan = tokio::task::spawn_blocking(move || {
            propose_balance(&BalanceRequest {
                brokers: &snap.brokers,
                partitions: &snap.partitions,
                goal,
                remove: &remove,
                add: &add,
            })
            .map(|plan| (plan, snap.unknown_sizes))
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
        .map_err(|e| ServiceError::InvalidArgument(e.to_string()))?;
        Ok(to_response(plan.0, plan.1, started.elapsed().as_secs_f64()))
    }

    /// One line about the latest reassignment, for `cluster status`, and
    /// how many of its partitions are stuck.
    pub fn reassignment_summary(&self) -> (String, u64) {
        let r = self.describe_reassignment();
        if !r.exists {
            return (String::new(), 0);
        }
        let stuck = r.partitions.iter().filter(|p| p.stuck).count() as u64;
        let done = r
            .partitions
            .iter()
            .filter(|p| {
                matches!(
                    pb::PartitionMoveState::try_from(p.state),
                    Ok(pb::PartitionMoveState::Complete
                        | pb::PartitionMoveState::Cancelled
                        | pb::PartitionMoveState::Failed)
                )
            })
            .count();
        (
            format!(
                "{} {}: {done} of {} partitions finished",
                r.id,
                r.state,
                r.partitions.len()
            ),
            stuck,
        )
    }

    /// The continuous balancer's line for `cluster status`.
    pub fn auto_balance_summary(&self) -> String {
        if !self.config.auto_balance {
            return "off".into();
        }
        let a = self.auto.lock().unwrap_or_else(|e| e.into_inner());
        if a.last.is_empty() {
            "on; nothing done yet".into()
        } else {
            format!("on; last: {}", a.last)
        }
    }

    /// Remember fencing changes for the grace period.
    pub(crate) fn note_fenced(&self, broker: i32, fenced: bool) {
        let mut a = self.auto.lock().unwrap_or_else(|e| e.into_inner());
        if fenced {
            a.fenced_since.entry(broker).or_insert_with(Instant::now);
        } else {
            a.fenced_since.remove(&broker);
        }
    }

    /// The continuous mode's check, from the tick: propose and execute when
    /// a trigger holds, at most once per `auto_balance_interval`, never
    /// while another reassignment runs.
    pub(crate) async fn auto_balance(self: &Arc<Self>) -> Result<(), ServiceError> {
        let cfg = &self.config;
        if !cfg.auto_balance {
            return Ok(());
        }
        let now = Instant::now();
        let (reason, remove) = {
            let state = self.state();
            if state.reassignment.as_ref().is_some_and(|r| r.is_active()) {
                return Ok(());
            }
            let mut a = self.auto.lock().unwrap_or_else(|e| e.into_inner());
            // Brokers fenced at takeover start their grace now.
            for b in state.brokers.values().filter(|b| b.fenced) {
                a.fenced_since.entry(b.broker_id).or_insert(now);
            }
            if a.last_run
                .is_some_and(|t| now.duration_since(t) < cfg.auto_balance_interval)
                || a.last_check
                    .is_some_and(|t| now.duration_since(t) < cfg.auto_balance_check_interval)
            {
                return Ok(());
            }
            a.last_check = Some(now);
            let holding: BTreeSet<i32> = state
                .topics
                .values()
                .flat_map(|t| t.partitions.iter().flat_map(|p| p.replicas.iter().copied()))
                .collect();
            let dead: Vec<i32> = a
                .fenced_since
                .iter()
                .filter(|(b, since)| {
                    now.duration_since(**since) >= cfg.auto_balance_grace && holding.contains(b)
                })
                .map(|(b, _)| *b)
                .collect();
            let empty: Vec<i32> = state
                .brokers
                .values()
                .filter(|b| !b.fenced && !holding.contains(&b.broker_id))
                .map(|b| b.broker_id)
                .collect();
            let reason = if !dead.is_empty() {
                Some(format!(
                    "broker(s) {dead:?} down longer than {:?}",
                    cfg.auto_balance_grace
                ))
            } else if !empty.is_empty() && !holding.is_empty() {
                Some(format!("broker(s) {empty:?} joined with no replicas"))
            } else {
                imbalanced(&state, cfg.auto_balance_threshold_percent)
            };
            (reason, dead)
        };
        let Some(reason) = reason else {
            return Ok(());
        };
        let plan = self
            .propose_balance(pb::ProposeBalanceRequest {
                goal: pb::BalanceGoal::Replicas as i32,
                remove_brokers: remove,
                add_brokers: Vec::new(),
            })
            .await?;
        let mut a_last = format!("{reason}: ");
        if plan.partitions.is_empty() {
            a_last.push_str("nothing to move");
        } else {
            let r = self
                .execute_reassignment(pb::ExecuteReassignmentRequest {
                    partitions: plan.partitions,
                    throttle_bytes_per_sec: cfg.auto_balance_throttle_bytes_per_sec,
                    ..Default::default()
                })
                .await?;
            self.metrics.auto_balance_runs.inc();
            a_last.push_str(&format!(
                "started reassignment {} ({} partitions, {} replica moves, lower bound {})",
                r.id, r.partitions, plan.replica_moves, plan.lower_bound_moves
            ));
        }
        tracing::info!(what = %a_last, "automatic balance");
        let mut a = self.auto.lock().unwrap_or_else(|e| e.into_inner());
        a.last_run = Some(now);
        a.last = a_last;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::PartitionState;
    use crate::state::TopicEntry;
    use crate::topic::TopicConfig;
    use ballast_proto::v1::metadata::{BrokerRecord, TopicRecord};

    /// A cluster of `live` and `fenced` brokers and one topic with these
    /// replica lists.
    fn cluster(live: &[i32], fenced: &[i32], partitions: &[&[i32]]) -> ClusterState {
        let mut s = ClusterState::default();
        for (id, f) in live
            .iter()
            .map(|b| (*b, false))
            .chain(fenced.iter().map(|b| (*b, true)))
        {
            s.brokers.insert(
                id,
                BrokerRecord {
                    broker_id: id,
                    fenced: f,
                    ..Default::default()
                },
            );
        }
        s.topics.insert(
            "t".into(),
            Arc::new(TopicEntry {
                record: TopicRecord::default(),
                config: TopicConfig::default(),
                partitions: partitions
                    .iter()
                    .map(|r| PartitionState::new(r.to_vec()))
                    .collect(),
            }),
        );
        s
    }

    #[test]
    fn imbalance_needs_a_spread_strictly_past_the_threshold() {
        // Counts 3 and 1: mean 2, spread 2 = 100 % of the mean.
        let s = cluster(&[1, 2], &[], &[&[1, 2], &[1], &[1]]);
        assert_eq!(
            imbalanced(&s, 99).as_deref(),
            Some("replica counts range from 1 to 3 per broker (mean 2.0)")
        );
        // Exactly at the threshold is not past it.
        assert_eq!(imbalanced(&s, 100), None);
        assert_eq!(imbalanced(&s, 101), None);
        assert!(imbalanced(&s, 0).is_some());
    }

    #[test]
    fn imbalance_needs_a_spread_of_at_least_two_replicas() {
        // Counts 2 and 1: spread 1, 66 % of the mean 1.5, but one replica
        // more or less is as even as an odd total allows.
        let s = cluster(&[1, 2], &[], &[&[1, 2], &[1]]);
        assert_eq!(imbalanced(&s, 0), None);
        // Counts 102 and 100: spread 2 is 2 % of the mean 101.
        let mut many: Vec<Vec<i32>> = (0..100).map(|_| vec![1, 2]).collect();
        many.push(vec![1]);
        many.push(vec![1]);
        let refs: Vec<&[i32]> = many.iter().map(Vec::as_slice).collect();
        let s = cluster(&[1, 2], &[], &refs);
        assert!(imbalanced(&s, 1).is_some());
        assert_eq!(imbalanced(&s, 2), None);
        assert_eq!(imbalanced(&s, 10), None);
    }

    #[test]
    fn a_live_broker_without_replicas_counts_and_fenced_ones_do_not() {
        // Live broker 3 holds nothing: counts 2, 2, 0.
        let s = cluster(&[1, 2, 3], &[], &[&[1, 2], &[2, 1]]);
        assert_eq!(
            imbalanced(&s, 10).as_deref(),
            Some("replica counts range from 0 to 2 per broker (mean 1.3)")
        );
        // The same broker fenced is out of the picture: 2 and 2 are even.
        let s = cluster(&[1, 2], &[3], &[&[1, 2], &[2, 1]]);
        assert_eq!(imbalanced(&s, 10), None);
        // Replicas on a fenced broker count for nobody: live 1 and 2 hold
        // 2 each whatever fenced broker 3 holds.
        let s = cluster(&[1, 2], &[3], &[&[1, 3], &[2, 3], &[3, 1], &[3, 2]]);
        assert_eq!(imbalanced(&s, 0), None);
    }

    #[test]
    fn fewer_than_two_live_brokers_are_never_imbalanced() {
        let s = cluster(&[1], &[2], &[&[1, 2], &[1], &[1], &[1]]);
        assert_eq!(imbalanced(&s, 0), None);
        let s = cluster(&[], &[1, 2], &[&[1, 2]]);
        assert_eq!(imbalanced(&s, 0), None);
    }

    fn with_racks(mut s: ClusterState, racks: &[(i32, &str)]) -> ClusterState {
        for (id, rack) in racks {
            if let Some(b) = s.brokers.get_mut(id) {
                b.rack = (*rack).to_owned();
            }
        }
        s
    }

    #[test]
    fn uneven_racks_balanced_by_the_rack_rule_are_not_imbalanced() {
        // Rack a has broker 1 alone, rack b brokers 2, 3 and 4; RF 2 with
        // one replica per rack: broker 1 must hold every partition.
        let racks = [(1, "a"), (2, "b"), (3, "b"), (4, "b")];
        let balanced = with_racks(
            cluster(
                &[1, 2, 3, 4],
                &[],
                &[&[1, 2], &[3, 1], &[1, 4], &[2, 1], &[1, 3], &[4, 1]],
            ),
            &racks,
        );
        assert_eq!(imbalanced(&balanced, 10), None);
        // The same counts without racks are a spread of 4 around a mean of 3.
        let plain = cluster(
            &[1, 2, 3, 4],
            &[],
            &[&[1, 2], &[3, 1], &[1, 4], &[2, 1], &[1, 3], &[4, 1]],
        );
        assert!(imbalanced(&plain, 10).is_some());
        // Uneven inside rack b: broker 2 holds 4, broker 3 none.
        let skewed = with_racks(
            cluster(
                &[1, 2, 3, 4],
                &[],
                &[&[1, 2], &[2, 1], &[1, 4], &[2, 1], &[1, 2], &[4, 1]],
            ),
            &racks,
        );
        let why = imbalanced(&skewed, 10).expect("skewed inside a rack");
        assert!(
            why.contains("broker 2 holds 4") && why.contains("broker 3 holds 0"),
            "{why}"
        );
    }
}
