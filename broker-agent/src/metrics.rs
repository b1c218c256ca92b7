//! The agent's Prometheus metrics (`GET /metrics` on `--http-listen`):
//! produce and fetch requests, bytes and latency, partitions hosted by
//! role, the follower throttles in force, and the rebalances of the groups
//! the agent coordinates. Counters and histograms are
//! updated by the data service as requests finish; the gauges are set from
//! the replica manager when scraped. Label sets are bounded (acks, result,
//! fetch kind, role): per-topic figures belong to `ballast` commands, not
//! to time series. docs/OPERATIONS.md lists every metric.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// Latency buckets: 0.1 ms to about 13 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// Every metric of an agent.
#[derive(Debug)]
pub struct AgentMetrics {
    registry: Registry,
    /// Partition results of produce requests by acks and result.
    pub produce_partitions: Family<Labels, Counter>,
    /// Record bytes accepted by produce requests.
    pub produce_bytes: Counter,
    /// Produce request latency by acks.
    pub produce_latency: Family<Labels, Histogram, fn() -> Histogram>,
    /// Fetch requests by kind (consumer, replica).
    pub fetch_requests: Family<Labels, Counter>,
    /// Record bytes returned by fetches, by kind.
    pub fetch_bytes: Family<Labels, Counter>,
    /// Fetch latency (long polls included) by kind.
    pub fetch_latency: Family<Labels, Histogram, fn() -> Histogram>,
    /// Partitions hosted, by role (leader, follower).
    pub partitions: Family<Labels, Gauge>,
    /// Follower throttles in force, bytes per second (0 = none), by kind
    /// (reassignment, catch_up).
    pub throttle: Family<Labels, Gauge>,
    /// Group epoch bumps (rebalances) of the groups this agent coordinates.
    pub group_epoch_bumps: Counter,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentMetrics {
    /// All metrics, registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ballast_agent");
        let m = AgentMetrics {
            registry: Registry::default(),
            produce_partitions: Family::default(),
            produce_bytes: Counter::default(),
            produce_latency: Family::new_with_constructor(latency),
            fetch_requests: Family::default(),
            fetch_bytes: Family::default(),
            fetch_latency: Family::new_with_constructor(latency),
            partitions: Family::default(),
            throttle: Family::default(),
            group_epoch_bumps: Counter::default(),
        };
        registry.register(
            "produce_partitions",
            "Partition results of produce requests, by acks and result (ok, error)",
            m.produce_partitions.clone(),
        );
        registry.register(
            "produce_bytes",
            "Record bytes accepted by produce requests",
            m.produce_bytes.clone(),
        );
        registry.register(
            "produce_latency_seconds",
            "Produce request latency, by acks",
            m.produce_latency.clone(),
        );
        registry.register(
            "fetch_requests",
            "Fetch requests, by kind (consumer, replica)",
            m.fetch_requests.clone(),
        );
        registry.register(
            "fetch_bytes",
            "Record bytes returned by fetch requests, by kind",
            m.fetch_bytes.clone(),
        );
        registry.register(
            "fetch_latency_seconds",
            "Fetch request latency including long-poll waits, by kind",
            m.fetch_latency.clone(),
        );
        registry.register(
            "partitions",
            "Partitions hosted, by role (leader, follower)",
            m.partitions.clone(),
        );
        registry.register(
            "follower_throttle_bytes_per_second",
            "Follower fetch throttle in force, by kind (reassignment, catch_up); 0 = none",
            m.throttle.clone(),
        );
        registry.register(
            "group_rebalances",
            "Group epoch bumps (membership, subscription or partition-count changes) of the groups this agent coordinates",
            m.group_epoch_bumps.clone(),
        );
        AgentMetrics { registry, ..m }
    }

    /// Record a finished produce request.
    pub fn produced(&self, acks: i32, ok: u64, failed: u64, bytes: u64, took: Duration) {
        let acks = match acks {
            0 => "0",
            1 => "1",
            _ => "all",
        };
        self.produce_partitions
            .get_or_create(&vec![("acks", acks), ("result", "ok")])
            .inc_by(ok);
        self.produce_partitions
            .get_or_create(&vec![("acks", acks), ("result", "error")])
            .inc_by(failed);
        self.produce_bytes.inc_by(bytes);
        self.produce_latency
            .get_or_create(&vec![("acks", acks)])
            .observe(took.as_secs_f64());
    }

    /// Record a finished fetch request.
    pub fn fetched(&self, replica: bool, bytes: u64, took: Duration) {
        let kind = vec![("kind", if replica { "replica" } else { "consumer" })];
        self.fetch_requests.get_or_create(&kind).inc();
        self.fetch_bytes.get_or_create(&kind).inc_by(bytes);
        self.fetch_latency
            .get_or_create(&kind)
            .observe(took.as_secs_f64());
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
