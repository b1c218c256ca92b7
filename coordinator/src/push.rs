//! Pushing desired state to agents: one task per live agent.
//!
//! The term marks partitions dirty after every change it persisted; each
//! agent's task wakes, builds a delta (the partitions it hosts among the dirty
//! ones, the ones it no longer hosts, and the new leaders of every dirty
//! partition for its client metadata) from the term's state, and sends it
//! with the coordinator epoch. Deltas are batched: many changes between two
//! sends become one request. A failed send turns the next one into a full
//! sync and retries with capped backoff; a full sync also runs when the agent
//! registers and every `full_sync_interval` as a safety net.
//!
//! Pushes only reflect persisted state (the term notifies after its write),
//! and stop the moment the term's lease is stale.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use ballast_proto::v1::agent_control_client::AgentControlClient;
use ballast_proto::v1::metadata::BrokerRecord;
use ballast_proto::v1::{self as pb};
use tokio::sync::Notify;

use crate::state::ClusterState;
use crate::term::Term;

type Key = (String, i32);

#[derive(Debug, Default)]
struct Dirty {
    full: bool,
    /// The broker list changed (a registration or a fencing): every agent
    /// gets it, even with no partition change.
    brokers: bool,
    keys: BTreeSet<Key>,
}

impl Dirty {
    fn has_work(&self) -> bool {
        self.full || self.brokers || !self.keys.is_empty()
    }
}

#[derive(Debug)]
struct Queue {
    broker_id: i32,
    broker_epoch: i64,
    address: String,
    dirty: Mutex<Dirty>,
    wake: Notify,
    stopped: std::sync::atomic::AtomicBool,
    acked_version: AtomicU64,
    sent_version: AtomicU64,
}

impl Queue {
    fn dirty(&self) -> MutexGuard<'_, Dirty> {
        self.dirty.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
}

/// The push tasks of one term.
#[derive(Debug)]
pub struct Pushers {
    epoch: i64,
    queues: Mutex<HashMap<i32, Arc<Queue>>>,
}

/// Per-agent push progress, for status and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushProgress {
    /// Broker id.
    pub broker_id: i32,
    /// Last version sent.
    pub sent: u64,
    /// Last version the agent acknowledged.
    pub acked: u64,
    /// True when nothing is waiting to be sent.
    pub idle: bool,
}

impl Pushers {
    /// No agents yet.
    pub fn new(epoch: i64) -> Self {
        Pushers {
            epoch,
            queues: Mutex::new(HashMap::new()),
        }
    }

    fn queues(&self) -> MutexGuard<'_, HashMap<i32, Arc<Queue>>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start (or restart, for a new broker epoch or address) the task of a
    /// live broker, beginning with a full sync.
    pub fn upsert_broker(&self, record: &BrokerRecord, term: Weak<Term>) {
        let mut queues = self.queues();
        if let Some(q) = queues.get(&record.broker_id) {
            if q.broker_epoch == record.broker_epoch && q.address == record.control_address {
                q.dirty().full = true;
                q.wake.notify_one();
                return;
            }
            q.stop();
        }
        let q = Arc::new(Queue {
            broker_id: record.broker_id,
            broker_epoch: record.broker_epoch,
            address: record.control_address.clone(),
            dirty: Mutex::new(Dirty {
                full: true,
                brokers: false,
                keys: BTreeSet::new(),
            }),
            wake: Notify::new(),
            stopped: std::sync::atomic::AtomicBool::new(false),
            acked_version: AtomicU64::new(0),
            sent_version: AtomicU64::new(0),
        });
        queues.insert(record.broker_id, q.clone());
        let span = tracing::info_span!(
            "push",
            broker = q.broker_id,
            broker_epoch = q.broker_epoch,
            coordinator_epoch = self.epoch
        );
        tokio::spawn(tracing::Instrument::instrument(
            run(q, term, self.epoch),
            span,
        ));
    }

    /// Stop pushing to a fenced broker.
    pub fn remove_broker(&self, broker: i32) {
        if let Some(q) = self.queues().remove(&broker) {
            q.stop();
        }
    }

    /// Stop every task (end of term).
    pub fn stop_all(&self) {
        for (_, q) in self.queues().drain() {
            q.stop();
        }
    }

    /// Mark partitions changed: every agent gets their new leaders, the
    /// hosting agents their new state.
    pub fn notify(&self, keys: &[Key]) {
        if keys.is_empty() {
            return;
        }
        for q in self.queues().values() {
            q.dirty().keys.extend(keys.iter().cloned());
            q.wake.notify_one();
        }
    }

    /// The broker list changed: send it to every agent (their clients and
    /// partition leaders need to know who is live).
    pub fn notify_brokers(&self) {
        for q in self.queues().values() {
            q.dirty().brokers = true;
            q.wake.notify_one();
        }
    }

    /// Progress of every agent's task.
    pub fn progress(&self) -> Vec<PushProgress> {
        let mut v: Vec<PushProgress> = self
            .queues()
            .values()
            .map(|q| {
                let d = q.dirty();
                PushProgress {
                    broker_id: q.broker_id,
                    sent: q.sent_version.load(Ordering::SeqCst),
                    acked: q.acked_version.load(Ordering::SeqCst),
                    idle: !d.has_work(),
                }
            })
            .collect();
        v.sort_by_key(|p| p.broker_id);
        v
    }
}

/// Build the assigned-partition message of `topic`/`p` for a broker.
fn assigned(state: &ClusterState, topic: &str, p: i32) -> Option<pb::AssignedPartition> {
    let entry = state.topics.get(topic)?;
    let s = entry.partitions.get(usize::try_from(p).ok()?)?;
    Some(pb::AssignedPartition {
        topic: topic.to_owned(),
        topic_id: entry.record.topic_id.clone(),
        partition: p,
        replicas: s.replicas.clone(),
        leader: s.leader,
        leader_epoch: s.leader_epoch,
        isr: s.isr.clone(),
        partition_epoch: s.partition_epoch,
        configs: entry.record.configs.clone(),
        adding_replicas: s.adding.clone(),
        removing_replicas: s.removing.clone(),
    })
}

/// Broker list for client metadata.
pub fn broker_infos(state: &ClusterState) -> Vec<pb::BrokerInfo> {
    let mut leaders: HashMap<i32, u32> = HashMap::new();
    let mut replicas: HashMap<i32, u32> = HashMap::new();
    for t in state.topics.values() {
        for p in &t.partitions {
            *leaders.entry(p.leader).or_default() += 1;
            for r in &p.replicas {
                *replicas.entry(*r).or_default() += 1;
            }
        }
    }
    state
        .brokers
        .values()
        .map(|b| pb::BrokerInfo {
            broker_id: b.broker_id,
            broker_epoch: b.broker_epoch,
            endpoints: b
                .endpoints
                .iter()
                .map(|e| pb::Endpoint {
                    name: e.name.clone(),
                    address: e.address.clone(),
                })
                .collect(),
            rack: b.rack.clone(),
            fenced: b.fenced,
            leaders: leaders.get(&b.broker_id).copied().unwrap_or(0),
            replicas: replicas.get(&b.broker_id).copied().unwrap_or(0),
            disk_capacity_bytes: b.disk_capacity_bytes,
        })
        .collect()
}

/// What one send is about.
struct Send<'a> {
    epoch: i64,
    full: bool,
    keys: &'a BTreeSet<Key>,
    hosted: &'a HashSet<Key>,
    version: u64,
    offsets_partitions: i32,
    catch_up_throttle: u64,
}

/// The request for one send, and the hosted set it leads to.
/// How the agent's hosted set changes once a send succeeds: a full push
/// replaces it, a delta adds and removes a few keys (never a copy of the
/// whole set per delta).
enum HostedUpdate {
    Replace(HashSet<Key>),
    Delta { added: Vec<Key>, removed: Vec<Key> },
}

impl HostedUpdate {
    fn apply(self, hosted: &mut HashSet<Key>) {
        match self {
            HostedUpdate::Replace(set) => *hosted = set,
            HostedUpdate::Delta { added, removed } => {
                for k in removed {
                    hosted.remove(&k);
                }
                hosted.extend(added);
            }
        }
    }
}

/// The broker list agents need (endpoints, racks, fenced flags), without
/// the per-broker leader and replica counts: those walk every partition and
/// only the admin API shows them.
fn broker_endpoints(state: &ClusterState) -> Vec<pb::BrokerInfo> {
    state
        .brokers
        .values()
        .map(|b| pb::BrokerInfo {
            broker_id: b.broker_id,
            broker_epoch: b.broker_epoch,
            endpoints: b
                .endpoints
                .iter()
                .map(|e| pb::Endpoint {
                    name: e.name.clone(),
                    address: e.address.clone(),
                })
                .collect(),
            rack: b.rack.clone(),
            fenced: b.fenced,
            leaders: 0,
            replicas: 0,
            disk_capacity_bytes: b.disk_capacity_bytes,
        })
        .collect()
}

fn build(state: &ClusterState, q: &Queue, send: Send<'_>) -> (pb::ApplyRequest, HostedUpdate) {
    let Send {
        epoch,
        full,
        keys,
        hosted,
        version,
        offsets_partitions,
        catch_up_throttle,
    } = send;
    let me = q.broker_id;
    let mut partitions = Vec::new();
    let mut removed = Vec::new();
    let mut leaders = Vec::new();
    let mut replaced: HashSet<Key> = HashSet::new();
    let mut added: Vec<Key> = Vec::new();
    let mut gone: Vec<Key> = Vec::new();
    if full {
        for (name, entry) in &state.topics {
            for (p, s) in entry.partitions.iter().enumerate() {
                let p = p as i32;
                leaders.push(pb::PartitionLeader {
                    topic: name.clone(),
                    partition: p,
                    leader: s.leader,
                    leader_epoch: s.leader_epoch,
                });
                if s.replicas.contains(&me)
                    && let Some(a) = assigned(state, name, p)
                {
                    partitions.push(a);
                    replaced.insert((name.clone(), p));
                }
            }
        }
    } else {
        for (topic, p) in keys {
            let current = state
                .topics
                .get(topic)
                .and_then(|t| t.partitions.get(*p as usize));
            match current {
                Some(s) => {
                    leaders.push(pb::PartitionLeader {
                        topic: topic.clone(),
                        partition: *p,
                        leader: s.leader,
                        leader_epoch: s.leader_epoch,
                    });
                    if s.replicas.contains(&me) {
                        if let Some(a) = assigned(state, topic, *p) {
                            partitions.push(a);
                            added.push((topic.clone(), *p));
                        }
                    } else if hosted.contains(&(topic.clone(), *p)) {
                        gone.push((topic.clone(), *p));
                        removed.push(pb::PartitionRef {
                            topic: topic.clone(),
                            partition: *p,
                        });
                    }
                }
                None => {
                    // Deleted: leader -1 with leader epoch -1 tells clients
                    // the partition is gone.
                    leaders.push(pb::PartitionLeader {
                        topic: topic.clone(),
                        partition: *p,
                        leader: -1,
                        leader_epoch: -1,
                    });
                    if hosted.contains(&(topic.clone(), *p)) {
                        gone.push((topic.clone(), *p));
                        removed.push(pb::PartitionRef {
                            topic: topic.clone(),
                            partition: *p,
                        });
                    }
                }
            }
        }
    }
    let request = pb::ApplyRequest {
        coordinator_epoch: epoch,
        broker_id: me,
        broker_epoch: q.broker_epoch,
        full,
        partitions,
        removed,
        version,
        metadata: Some(pb::ClusterMetadata {
            brokers: broker_endpoints(state),
            leaders,
            offsets_partitions,
        }),
        throttle_bytes_per_sec: Term::reassignment_throttle(state),
        catch_up_throttle_bytes_per_sec: catch_up_throttle,
    };
    let update = if full {
        HostedUpdate::Replace(replaced)
    } else {
        HostedUpdate::Delta {
            added,
            removed: gone,
        }
    };
    (request, update)
}

/// Whether a failed push says the agent could not be reached (rather than
/// refused the push): then the next one probes the connection first.
fn transport_failure(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown
    )
}

/// How long an agent may take to apply a push of `partitions` partition
/// states: 10 s, plus 10 ms for each (an agent creating a partition
/// writes and syncs its directory and opens its log: about 2-4 ms each on
/// the test machine with three agents on one disk), at most 2 minutes.
/// A push that runs out is retried as a full sync, which finds the work
/// done.
fn push_timeout(partitions: usize) -> Duration {
    let extra =
        Duration::from_millis(10).saturating_mul(u32::try_from(partitions).unwrap_or(u32::MAX));
    (Duration::from_secs(10) + extra).min(Duration::from_secs(120))
}

async fn run(q: Arc<Queue>, term: Weak<Term>, epoch: i64) {
    let endpoint = match ballast_net::endpoint(&q.address) {
        // No channel-wide timeout: each push gets one that grows with the
        // partitions it carries (`push_timeout`).
        Ok(e) => e.connect_timeout(Duration::from_secs(2)),
        Err(e) => {
            tracing::error!(broker = q.broker_id, address = %q.address, error = %e, "invalid agent control address");
            return;
        }
    };
    let mut client = AgentControlClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
    let mut connected = false;
    let mut hosted: HashSet<Key> = HashSet::new();
    let mut version = 0u64;
    let mut backoff = Duration::from_millis(100);
    let full_sync_interval = match term.upgrade() {
        Some(t) => t.config().full_sync_interval,
        None => return,
    };
    let mut next_full = tokio::time::Instant::now() + full_sync_interval;
    loop {
        if q.stopped.load(Ordering::SeqCst) {
            return;
        }
        let has_work = q.dirty().has_work();
        if !has_work {
            tokio::select! {
                () = q.wake.notified() => {}
                () = tokio::time::sleep_until(next_full) => { q.dirty().full = true; }
            }
            continue;
        }
        let Some(t) = term.upgrade() else { return };
        if !t.is_fresh() {
            return;
        }
        // Build nothing for an agent that cannot be reached: probe the
        // connection first (after a failure, and before the first send).
        if !connected {
            drop(t);
            match endpoint.connect().await {
                Ok(channel) => {
                    client = AgentControlClient::new(channel)
                        .max_decoding_message_size(256 << 20)
                        .max_encoding_message_size(256 << 20);
                    connected = true;
                }
                Err(e) => {
                    tracing::debug!(broker = q.broker_id, error = %e, "agent unreachable; not building a push");
                    q.dirty().full = true;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            continue;
        }
        let (full, keys) = {
            let mut d = q.dirty();
            d.brokers = false;
            (std::mem::take(&mut d.full), std::mem::take(&mut d.keys))
        };
        if full {
            next_full = tokio::time::Instant::now() + full_sync_interval;
        }
        version += 1;
        let offsets_partitions = t.config().offsets_partitions;
        let catch_up_throttle = t.config().catch_up_throttle_bytes_per_sec;
        let (request, update) = if full {
            // A full sync lists every partition: build it from a snapshot
            // (shared topic entries, one cheap clone under the lock) on a
            // blocking thread, so neither the state lock nor a runtime
            // worker is held while it is built.
            let snapshot = {
                let state = t.state();
                ClusterState {
                    brokers: state.brokers.clone(),
                    topics: state.topics.clone(),
                    reassignment: state.reassignment.clone(),
                }
            };
            drop(t);
            let q2 = Arc::clone(&q);
            let built = tokio::task::spawn_blocking(move || {
                build(
                    &snapshot,
                    &q2,
                    Send {
                        epoch,
                        full: true,
                        keys: &BTreeSet::new(),
                        hosted: &HashSet::new(),
                        version,
                        offsets_partitions,
                        catch_up_throttle,
                    },
                )
            })
            .await;
            match built {
                Ok(b) => b,
                Err(_) => return,
            }
        } else {
            let state = t.state();
            let built = build(
                &state,
                &q,
                Send {
                    epoch,
                    full,
                    keys: &keys,
                    hosted: &hosted,
                    version,
                    offsets_partitions,
                    catch_up_throttle,
                },
            );
            drop(state);
            drop(t);
            built
        };
        if !term.upgrade().is_some_and(|t| t.is_fresh()) {
            return;
        }
        q.sent_version.store(version, Ordering::SeqCst);
        let timeout = push_timeout(request.partitions.len());
        let answer = match tokio::time::timeout(timeout, client.apply(request)).await {
            Ok(answer) => answer,
            Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                "no answer to the push within {timeout:?}"
            ))),
        };
        match answer {
            Ok(response) => {
                update.apply(&mut hosted);
                q.acked_version
                    .store(response.into_inner().applied_version, Ordering::SeqCst);
                backoff = Duration::from_millis(100);
            }
            Err(status) => {
                if status.code() == tonic::Code::FailedPrecondition
                    && status.message().contains("stale coordinator epoch")
                {
                    // The agent has followed a newer coordinator: we are deposed.
                    tracing::warn!(
                        broker = q.broker_id,
                        epoch,
                        "agent reports a newer coordinator epoch; stepping down"
                    );
                    if let Some(t) = term.upgrade() {
                        t.step_down();
                    }
                    return;
                }
                tracing::debug!(broker = q.broker_id, code = ?status.code(), message = status.message(), "push failed; retrying with a full sync");
                {
                    let mut d = q.dirty();
                    d.full = true;
                }
                if transport_failure(&status) {
                    connected = false;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_timeout_grows_with_the_partitions_and_is_capped() {
        assert_eq!(push_timeout(0), Duration::from_secs(10));
        assert_eq!(push_timeout(1_000), Duration::from_secs(20));
        assert_eq!(push_timeout(30_000), Duration::from_secs(120));
        assert_eq!(push_timeout(usize::MAX), Duration::from_secs(120));
    }
}
