//! The coordinator's typed configuration. The binary (`ballast coordinator`)
//! builds it from flags; `ballast dev` builds it directly.

use std::time::Duration;

/// Everything a coordinator process needs to know.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// Cluster id: every key lives under `/ballast/<cluster id>/`.
    pub cluster_id: String,
    /// Address other processes reach this coordinator at (host:port), stored
    /// in the election so standbys can redirect to it.
    pub advertised_address: String,
    /// TTL of the leadership lease.
    pub lease_ttl: Duration,
    /// The active coordinator stops acting when it has not renewed its lease
    /// for this long. Must be shorter than `lease_ttl`, so it stops before a
    /// successor can be elected.
    pub renew_deadline: Duration,
    /// Brokers heartbeat at this interval.
    pub heartbeat_interval: Duration,
    /// A broker without a heartbeat for this long is fenced.
    pub session_timeout: Duration,
    /// Partitions of `__consumer_offsets` (fixed once the topic exists).
    pub offsets_partitions: i32,
    /// Upper bound of the offsets topic's replication factor
    /// (min(this, live brokers)).
    pub offsets_replication_factor: i32,
    /// Kafka's `leader.imbalance.per.broker.percentage`.
    pub leader_imbalance_percentage: u32,
    /// How often the automatic preferred-leader check runs (Kafka's
    /// `leader.imbalance.check.interval.seconds`, default 300 s); zero turns
    /// it off.
    pub leader_imbalance_check_interval: Duration,
    /// Every agent gets a full push at least this often (the safety net).
    pub full_sync_interval: Duration,
    /// Default bound of reassignment moves in flight that involve one broker.
    pub reassignment_max_moves_per_broker: u32,
    /// Default bound of reassignment moves in flight in the cluster.
    pub reassignment_max_moves: u32,
    /// Catch-up throttle pushed to agents (bytes per second for followers
    /// out of the ISR); 0 = none.
    pub catch_up_throttle_bytes_per_sec: u64,
    /// The continuous balancer (off by default).
    pub auto_balance: bool,
    /// At most one automatic reassignment this often.
    pub auto_balance_interval: Duration,
    /// How often the continuous balancer looks at the cluster.
    pub auto_balance_check_interval: Duration,
    /// A broker fenced this long is drained by the continuous balancer.
    pub auto_balance_grace: Duration,
    /// Replica-count spread (max - min, percent of the mean) that starts a
    /// rebalance.
    pub auto_balance_threshold_percent: u32,
    /// Throttle of automatic reassignments (bytes per second; 0 = none).
    pub auto_balance_throttle_bytes_per_sec: u64,
    /// A moving partition whose new replicas copy nothing for this long is
    /// reported stuck.
    pub reassignment_stuck_after: Duration,
}

impl CoordinatorConfig {
    /// Defaults suited to production, for `cluster_id` at `advertised_address`.
    pub fn new(cluster_id: impl Into<String>, advertised_address: impl Into<String>) -> Self {
        CoordinatorConfig {
            cluster_id: cluster_id.into(),
            advertised_address: advertised_address.into(),
            lease_ttl: Duration::from_secs(6),
            renew_deadline: Duration::from_secs(4),
            heartbeat_interval: Duration::from_millis(1000),
            session_timeout: Duration::from_secs(9),
            offsets_partitions: ballast_assignor::DEFAULT_OFFSETS_PARTITIONS,
            offsets_replication_factor: 3,
            leader_imbalance_percentage: ballast_assignor::DEFAULT_LEADER_IMBALANCE_PERCENTAGE,
            leader_imbalance_check_interval: Duration::from_secs(300),
            full_sync_interval: Duration::from_secs(60),
            reassignment_max_moves_per_broker: 5,
            reassignment_max_moves: 50,
            catch_up_throttle_bytes_per_sec: 0,
            auto_balance: false,
            auto_balance_interval: Duration::from_secs(300),
            auto_balance_check_interval: Duration::from_secs(30),
            auto_balance_grace: Duration::from_secs(600),
            auto_balance_threshold_percent: 10,
            auto_balance_throttle_bytes_per_sec: 0,
            reassignment_stuck_after: Duration::from_secs(300),
        }
    }

    /// Check the relations between the settings; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.cluster_id.is_empty() || self.cluster_id.contains('/') {
            return Err("cluster_id: must be non-empty and contain no '/'".into());
        }
        if self.renew_deadline >= self.lease_ttl {
            return Err(format!(
                "renew_deadline ({:?}) must be shorter than lease_ttl ({:?})",
                self.renew_deadline, self.lease_ttl
            ));
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err("lease_ttl: must be at least 1s".into());
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.session_timeout {
            return Err(
                "heartbeat_interval: must be positive and shorter than session_timeout".into(),
            );
        }
        if self.offsets_partitions < 1 {
            return Err("offsets_partitions: must be at least 1".into());
        }
        if self.reassignment_max_moves_per_broker < 1 || self.reassignment_max_moves < 1 {
            return Err(
                "reassignment_max_moves_per_broker, reassignment_max_moves: must be at least 1"
                    .into(),
            );
        }
        if self.offsets_replication_factor < 1 {
            return Err("offsets_replication_factor: must be at least 1".into());
        }
        Ok(())
    }
}
