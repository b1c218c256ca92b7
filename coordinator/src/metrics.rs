//! The coordinator's Prometheus metrics (`GET /metrics` on `--http-listen`).
//!
//! Two kinds: counters of events the active term sees (leader elections,
//! ISR shrinks and expands, broker fencings, automatic balance runs),
//! incremented where they happen; and gauges of the cluster's state
//! (brokers, partitions by problem, the reassignment), set from the active
//! term's state when scraped. A standby exports `ballast_coordinator_active
//! 0` and its counters. Label sets are bounded: no partition or broker id
//! labels (those belong to `cluster status` and the console); consumer lag
//! is labelled by group and topic, for at most [`MAX_GROUPS`] groups, and
//! refreshed from the agents at most every [`GROUP_LAG_TTL`].
//! docs/OPERATIONS.md lists every metric.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::partition::PartitionState;

type Labels = Vec<(&'static str, &'static str)>;
type GroupLabels = Vec<(&'static str, String)>;

/// Groups whose lag is exported (the first by id); the rest are counted in
/// `ballast_consumer_groups` only.
pub const MAX_GROUPS: usize = 1000;

/// How old the exported consumer lag may be before a scrape asks the agents
/// again.
pub const GROUP_LAG_TTL: std::time::Duration = std::time::Duration::from_secs(10);

/// Every metric of a coordinator process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// 1 while this process is the active coordinator.
    pub active: Gauge,
    /// The active term's coordinator epoch (0 on a standby).
    pub epoch: Gauge,
    /// Registered brokers by state (`alive`, `fenced`).
    pub brokers: Family<Labels, Gauge>,
    /// Topics.
    pub topics: Gauge,
    /// Partitions.
    pub partitions: Gauge,
    /// Partitions with a problem (`offline`, `under_replicated`,
    /// `under_min_isr`).
    pub problem_partitions: Family<Labels, Gauge>,
    /// Partitions of the latest reassignment by state.
    pub reassignment_partitions: Family<Labels, Gauge>,
    /// Bytes the running reassignment still has to copy.
    pub reassignment_bytes_left: Gauge,
    /// Leader changes written (elections, preferred elections, moves).
    pub leader_elections: Counter,
    /// ISR changes written that removed members.
    pub isr_shrinks: Counter,
    /// ISR changes written that added members.
    pub isr_expands: Counter,
    /// Brokers fenced (session expiry or a newer registration).
    pub broker_fencings: Counter,
    /// Reassignments the continuous balancer started.
    pub auto_balance_runs: Counter,
    /// Consumer groups the agents list.
    pub groups: Gauge,
    /// Records behind the high watermark, by group and topic (summed over
    /// partitions with a committed offset).
    pub group_lag: Family<GroupLabels, Gauge>,
    /// Members, by group.
    pub group_members: Family<GroupLabels, Gauge>,
    /// When the group gauges were last refreshed.
    pub group_refreshed: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics, registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ballast");
        let m = Metrics {
            registry: Registry::default(),
            active: Gauge::default(),
            epoch: Gauge::default(),
            brokers: Family::default(),
            topics: Gauge::default(),
            partitions: Gauge::default(),
            problem_partitions: Family::default(),
            reassignment_partitions: Family::default(),
            reassignment_bytes_left: Gauge::default(),
            leader_elections: Counter::default(),
            isr_shrinks: Counter::default(),
            isr_expands: Counter::default(),
            broker_fencings: Counter::default(),
            auto_balance_runs: Counter::default(),
            groups: Gauge::default(),
            group_lag: Family::default(),
            group_members: Family::default(),
            group_refreshed: std::sync::Mutex::new(None),
        };
        registry.register(
            "coordinator_active",
            "1 while this process is the active coordinator",
            m.active.clone(),
        );
        registry.register(
            "coordinator_epoch",
            "Coordinator epoch of the active term (0 on a standby)",
            m.epoch.clone(),
        );
        registry.register(
            "brokers",
            "Registered brokers by state (alive, fenced)",
            m.brokers.clone(),
        );
        registry.register("topics", "Topics", m.topics.clone());
        registry.register("partitions", "Partitions", m.partitions.clone());
        registry.register(
            "partitions_with_problem",
            "Partitions that are offline, under-replicated or under min ISR",
            m.problem_partitions.clone(),
        );
        registry.register(
            "reassignment_partitions",
            "Partitions of the latest reassignment by state",
            m.reassignment_partitions.clone(),
        );
        registry.register(
            "reassignment_bytes_left",
            "Bytes the running reassignment still has to copy (from agent reports)",
            m.reassignment_bytes_left.clone(),
        );
        registry.register(
            "leader_elections",
            "Partition leader changes written by the active coordinator",
            m.leader_elections.clone(),
        );
        registry.register(
            "isr_shrinks",
            "ISR changes written that removed a replica",
            m.isr_shrinks.clone(),
        );
        registry.register(
            "isr_expands",
            "ISR changes written that added a replica",
            m.isr_expands.clone(),
        );
        registry.register(
            "broker_fencings",
            "Brokers fenced by the active coordinator",
            m.broker_fencings.clone(),
        );
        registry.register(
            "auto_balance_runs",
            "Reassignments started by the continuous balancer",
            m.auto_balance_runs.clone(),
        );
        registry.register(
            "consumer_groups",
            "Consumer groups the agents list",
            m.groups.clone(),
        );
        registry.register(
            "consumer_group_lag",
            "Records between the committed offset and the high watermark, by group and topic",
            m.group_lag.clone(),
        );
        registry.register(
            "consumer_group_members",
            "Members of each consumer group",
            m.group_members.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Count what a partition change did.
    pub fn partition_changed(&self, before: &PartitionState, after: &PartitionState) {
        if before.leader != after.leader {
            self.leader_elections.inc();
        }
        if before.isr.iter().any(|b| !after.isr.contains(b)) {
            self.isr_shrinks.inc();
        }
        if after.isr.iter().any(|b| !before.isr.contains(b)) {
            self.isr_expands.inc();
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Shared handle.
pub type SharedMetrics = Arc<Metrics>;
