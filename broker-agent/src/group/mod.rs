//! Group-coordinator hosting: this agent coordinates the consumer groups
//! whose `__consumer_offsets` partition it leads.
//!
//! [`GroupCoordinator`] follows the roles of the offsets partitions after
//! every applied push (and on a one-second resync as a safety net): a
//! partition led at epoch `e` gets a [`host::ShardHost`] bound to `e`
//! (which loads, then serves); a host whose partition is no longer led at
//! its epoch is stopped. The state machine itself is the pure
//! `ballast-group` crate; [`service`] is the gRPC edge.
//!
//! The group of id G lives in partition `abs(javaStringHash(G) % N)`,
//! N the offsets topic's partition count from the pushed metadata. N is
//! fixed once the topic exists: changing it would move groups to
//! partitions that hold none of their records.

pub mod host;
pub mod service;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ballast_group::GroupConfig;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::replica::manager::ReplicaManager;
use host::ShardHost;

/// The internal topic holding groups and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The shards this agent hosts, by offsets partition.
#[derive(Debug)]
pub struct GroupCoordinator {
    manager: Arc<ReplicaManager>,
    config: GroupConfig,
    hosts: Mutex<HashMap<i32, Arc<ShardHost>>>,
    cancel: CancellationToken,
}

impl GroupCoordinator {
    /// Starts following the offsets partitions' roles.
    pub(crate) fn start(manager: Arc<ReplicaManager>, config: GroupConfig) -> Arc<Self> {
        let cancel = manager.cancel_token();
        let gc = Arc::new(GroupCoordinator {
            manager,
            config,
            hosts: Mutex::new(HashMap::new()),
            cancel,
        });
        let g = Arc::clone(&gc);
        tokio::spawn(async move { g.follow().await });
        gc
    }

    async fn follow(self: Arc<Self>) {
        let mut applied = self.manager.subscribe_applied();
        loop {
            self.sync();
            tokio::select! {
                () = self.cancel.cancelled() => break,
                r = applied.changed() => if r.is_err() { break },
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        for h in lock(&self.hosts).drain().map(|(_, h)| h) {
            h.stop();
        }
    }

    /// Starts a host for every offsets partition led here and stops the
    /// rest.
    fn sync(&self) {
        let mut led: HashMap<i32, (i32, Arc<crate::replica::partition::Partition>)> =
            HashMap::new();
        for p in self.manager.all() {
            if p.key().topic == OFFSETS_TOPIC
                && let Some(epoch) = p.leading_epoch()
            {
                led.insert(p.key().partition, (epoch, p));
            }
        }
        let mut hosts = lock(&self.hosts);
        hosts.retain(|index, h| {
            let keep = led.get(index).is_some_and(|(e, _)| *e == h.leader_epoch);
            if !keep {
                info!(
                    partition = index,
                    leader_epoch = h.leader_epoch,
                    "no longer coordinating this offsets partition"
                );
                h.stop();
            }
            keep
        });
        for (index, (epoch, p)) in led {
            hosts.entry(index).or_insert_with(|| {
                info!(
                    partition = index,
                    leader_epoch = epoch,
                    "coordinating offsets partition; loading"
                );
                ShardHost::start(index, epoch, p, Arc::clone(&self.manager), &self.cancel)
            });
        }
    }

    /// The host of an offsets partition, if led here.
    pub(crate) fn host(&self, partition: i32) -> Option<Arc<ShardHost>> {
        lock(&self.hosts).get(&partition).cloned()
    }

    /// Every host.
    pub(crate) fn hosts(&self) -> Vec<Arc<ShardHost>> {
        let mut v: Vec<_> = lock(&self.hosts).values().cloned().collect();
        v.sort_by_key(|h| h.partition_index);
        v
    }

    /// Limits and defaults.
    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The replica manager (metadata, partitions).
    pub(crate) fn manager(&self) -> &Arc<ReplicaManager> {
        &self.manager
    }

    /// Offsets partitions this agent serves groups for (loaded).
    pub fn active_partitions(&self) -> Vec<i32> {
        self.hosts()
            .iter()
            .filter(|h| h.is_active())
            .map(|h| h.partition_index)
            .collect()
    }
}
