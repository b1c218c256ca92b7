//! The agent's in-memory state and the logic of the two AgentControl calls:
//! accepting (or refusing) a push and reporting what the agent reached.
//!
//! Fencing, in the order checked for every push:
//! 1. broker id must be this agent's (`WRONG_BROKER`);
//! 2. coordinator epoch must be `>=` the highest accepted, which is
//!    persisted in `agent.json` *before* a push from a higher epoch is
//!    applied (`STALE_COORDINATOR_EPOCH`, also after a restart);
//! 3. broker epoch must be the current registration's: lower is an older
//!    incarnation (`STALE_BROKER_EPOCH`); higher is waited for briefly (the
//!    push can overtake the Register response) and then refused
//!    (`UNKNOWN_BROKER_EPOCH`);
//! 4. within one (coordinator epoch, broker epoch) the push version must
//!    not go down (`STALE_PUSH_VERSION`); an equal version is a retry and is
//!    applied again, idempotently.
//!
//! Pushes are serialised (one at a time). Each one plans under the view's
//! `std::sync::Mutex` ([`crate::reconcile::plan`]), does its disk I/O on a
//! blocking thread without any lock, then folds the results back in.
//!
//! Replication hooks: partitions about to be removed or recreated are
//! released by the [`ReplicaManager`] first (it closes their logs), and
//! after the push is reconciled the manager gets every hosted record and
//! the cluster metadata, inside the same push gate, so the roles a push
//! names are in effect when Apply answers. The control loop publishes the
//! active coordinator's address and the broker epoch here for the
//! manager's AlterIsr requests and follower fetches.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use ballast_proto::v1::{ApplyRequest, ApplyResponse, ClusterMetadata, GetAgentStateResponse};
use tokio::sync::watch;
use tracing::{debug, info, instrument, warn};

use crate::error::AgentError;
use crate::meta::DataDir;
use crate::partition::{PartitionKey, PartitionRecord};
use crate::reconcile::{self, Action, Desired};
use crate::replica::ReplicaManager;
use crate::{metadata, partition_dir};

/// How long a push for a broker epoch newer than the agent knows waits for
/// the agent's own registration to catch up.
const UNKNOWN_EPOCH_WAIT: Duration = Duration::from_secs(5);

/// The agent's registration with the coordinator, as the control loop last
/// left it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Registration {
    /// Whether the agent holds a live registration now.
    pub registered: bool,
    /// Broker epoch of the latest successful registration (0: never).
    pub broker_epoch: i64,
    /// Cluster id the coordinator reported.
    pub cluster_id: String,
}

/// The last push applied.
#[derive(Debug, Clone, Copy)]
struct AppliedPush {
    coordinator_epoch: i64,
    broker_epoch: i64,
    version: u64,
}

/// Actions carried out by one push, for its summary log line.
#[derive(Debug, Default)]
struct Counts {
    created: usize,
    updated: usize,
    recreated: usize,
    removed: usize,
}

impl Counts {
    fn count(&mut self, action: &Action) {
        match action {
            Action::Create(_) => self.created += 1,
            Action::Update(_) | Action::Refresh(_) => self.updated += 1,
            Action::Recreate { .. } => self.recreated += 1,
            Action::Remove(_) => self.removed += 1,
        }
    }
}

/// What GetState reports, besides the registration.
#[derive(Debug)]
struct View {
    hosted: BTreeMap<PartitionKey, PartitionRecord>,
    metadata: ClusterMetadata,
    highest_coordinator_epoch: i64,
    applied: Option<AppliedPush>,
}

/// Shared by the AgentControl service and the control loop.
#[derive(Debug)]
pub(crate) struct AgentState {
    broker_id: i32,
    incarnation_id: String,
    partitions_root: PathBuf,
    data_dir: Arc<Mutex<DataDir>>,
    /// Serialises pushes (held across their I/O).
    apply_gate: tokio::sync::Mutex<()>,
    view: Mutex<View>,
    registration: watch::Sender<Registration>,
    /// `host:port` of the coordinator the control loop last reached (empty
    /// until it registers).
    coordinator: watch::Sender<String>,
    /// The partitions at run time (set once at start-up).
    replicas: OnceLock<Arc<ReplicaManager>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind, never a
    // half-done file operation (I/O happens outside it).
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AgentState {
    /// State for an opened data directory and the partitions loaded from it.
    pub fn new(data_dir: DataDir, hosted: BTreeMap<PartitionKey, PartitionRecord>) -> Self {
        let meta = data_dir.meta().clone();
        Self {
            broker_id: meta.broker_id,
            incarnation_id: meta.incarnation_id,
            partitions_root: partition_dir::partitions_root(data_dir.root()),
            data_dir: Arc::new(Mutex::new(data_dir)),
            apply_gate: tokio::sync::Mutex::new(()),
            view: Mutex::new(View {
                hosted,
                metadata: ClusterMetadata::default(),
                highest_coordinator_epoch: meta.highest_coordinator_epoch,
                applied: None,
            }),
            registration: watch::Sender::new(Registration::default()),
            coordinator: watch::Sender::new(String::new()),
            replicas: OnceLock::new(),
        }
    }

    /// Hands pushes to `manager` from now on (called once, at start-up).
    pub fn set_replica_manager(&self, manager: Arc<ReplicaManager>) {
        let _ = self.replicas.set(manager);
    }

    /// Replica sizes for a heartbeat (see
    /// [`ReplicaManager::replica_sizes`]); empty before start-up finishes.
    pub fn replica_sizes(&self, all: bool) -> Vec<ballast_proto::v1::ReplicaSize> {
        self.replicas
            .get()
            .map(|r| r.replica_sizes(all))
            .unwrap_or_default()
    }

    /// Watches the registration (broker epoch).
    pub fn subscribe_registration(&self) -> watch::Receiver<Registration> {
        self.registration.subscribe()
    }

    /// Watches the active coordinator's address.
    pub fn subscribe_coordinator(&self) -> watch::Receiver<String> {
        self.coordinator.subscribe()
    }

    /// The control loop reached the active coordinator at `addr`.
    pub fn set_active_coordinator(&self, addr: &str) {
        self.coordinator.send_if_modified(|a| {
            if a == addr {
                false
            } else {
                addr.clone_into(a);
                true
            }
        });
    }

    pub fn broker_id(&self) -> i32 {
        self.broker_id
    }

    pub fn incarnation_id(&self) -> &str {
        &self.incarnation_id
    }

    pub fn registration(&self) -> Registration {
        self.registration.borrow().clone()
    }

    pub fn set_registered(&self, broker_epoch: i64, cluster_id: String) {
        self.registration.send_replace(Registration {
            registered: true,
            broker_epoch,
            cluster_id,
        });
    }

    /// The registration is lost (fenced, refused or timed out); the last
    /// broker epoch is kept for fencing pushes.
    pub fn set_unregistered(&self) {
        self.registration.send_modify(|r| r.registered = false);
    }

    pub fn highest_coordinator_epoch(&self) -> i64 {
        lock(&self.view).highest_coordinator_epoch
    }

    /// Applies one push (see the module doc for the fencing rules).
    #[instrument(skip_all, fields(
        broker = self.broker_id,
        coordinator_epoch = req.coordinator_epoch,
        broker_epoch = req.broker_epoch,
        version = req.version,
        full = req.full,
    ))]
    pub async fn apply(&self, req: ApplyRequest) -> Result<ApplyResponse, AgentError> {
        let _gate = self.apply_gate.lock().await;

        if req.broker_id != self.broker_id {
            return Err(AgentError::WrongBroker {
                got: req.broker_id,
                own: self.broker_id,
            });
        }
        let highest = self.highest_coordinator_epoch();
        if req.coordinator_epoch < highest {
            return Err(AgentError::StaleCoordinatorEpoch {
                got: req.coordinator_epoch,
                highest,
            });
        }
        self.check_broker_epoch(req.broker_epoch).await?;
        if let Some(replicas) = self.replicas.get() {
            replicas.throttles().set(
                req.throttle_bytes_per_sec,
                req.catch_up_throttle_bytes_per_sec,
                std::time::Instant::now(),
            );
        }
        let desired = Desired::from_push(req.full, &req.partitions, &req.removed)
            .map_err(AgentError::InvalidPush)?;
        let applied = lock(&self.view).applied;
        if let Some(a) = applied
            && a.coordinator_epoch == req.coordinator_epoch
            && a.broker_epoch == req.broker_epoch
            && req.version < a.version
        {
            return Err(AgentError::StalePushVersion {
                got: req.version,
                applied: a.version,
                coordinator_epoch: a.coordinator_epoch,
            });
        }

        if req.coordinator_epoch > highest {
            let data_dir = Arc::clone(&self.data_dir);
            let epoch = req.coordinator_epoch;
            blocking(move || lock(&data_dir).raise_coordinator_epoch(epoch)).await??;
            lock(&self.view).highest_coordinator_epoch = epoch;
            info!(
                epoch,
                previous = highest,
                "accepted a new coordinator epoch"
            );
        }

        let reconcile::Plan { actions, skipped } =
            reconcile::plan(&lock(&self.view).hosted, &desired);
        for s in &skipped {
            info!(
                topic = %s.key.topic, partition = s.key.partition, have = ?s.have, got = ?s.got,
                "kept the newer partition state: push has lower (leader, partition) epochs"
            );
        }
        let root = self.partitions_root.clone();
        if let Some(replicas) = self.replicas.get() {
            let leaving: Vec<PartitionKey> = actions
                .iter()
                .filter(|a| matches!(a, Action::Remove(_) | Action::Recreate { .. }))
                .map(Action::key)
                .collect();
            if !leaving.is_empty() {
                replicas.release(leaving).await;
            }
        }

        let disk_started = std::time::Instant::now();
        let results: Vec<(Action, std::io::Result<()>)> =
            blocking(move || partition_dir::execute_all(&root, actions)).await?;
        let disk_ms = disk_started.elapsed().as_millis() as u64;

        let mut failures = Vec::new();
        let (hosted_now, metadata_now) = {
            let mut view = lock(&self.view);
            let mut done = Counts::default();
            for (action, result) in results {
                match result {
                    Ok(()) => {
                        let k = action.key();
                        debug!(topic = %k.topic, partition = k.partition, ?action, "reconciled");
                        done.count(&action);
                        reconcile::apply(&mut view.hosted, &action);
                    }
                    Err(e) => {
                        let k = action.key();
                        warn!(topic = %k.topic, partition = k.partition, error = %e, "reconcile failed");
                        failures.push(format!("{}: {e}", action.key()));
                    }
                }
            }
            info!(
                created = done.created,
                updated = done.updated,
                recreated = done.recreated,
                removed = done.removed,
                skipped = skipped.len(),
                failed = failures.len(),
                hosted = view.hosted.len(),
                disk_ms,
                "push applied"
            );
            if failures.is_empty() {
                metadata::update(&mut view.metadata, req.full, req.metadata.as_ref());
                view.applied = Some(AppliedPush {
                    coordinator_epoch: req.coordinator_epoch,
                    broker_epoch: req.broker_epoch,
                    version: req.version,
                });
            }
            (view.hosted.clone(), view.metadata.clone())
        };
        if let Some(replicas) = self.replicas.get() {
            let started = std::time::Instant::now();
            replicas.apply(hosted_now.clone(), metadata_now).await;
            debug!(
                roles_ms = started.elapsed().as_millis() as u64,
                "roles of the push in effect"
            );
        }
        if !failures.is_empty() {
            return Err(AgentError::ApplyFailed { failures });
        }
        Ok(ApplyResponse {
            applied_version: req.version,
            hosted: hosted_now
                .values()
                .map(|r| r.hosted(self.broker_id))
                .collect(),
        })
    }

    async fn check_broker_epoch(&self, want: i64) -> Result<(), AgentError> {
        let current = self.registration.borrow().broker_epoch;
        if want < current {
            return Err(AgentError::StaleBrokerEpoch { got: want, current });
        }
        if want > current {
            // The coordinator may push before our Register call returns.
            let mut rx = self.registration.subscribe();
            let _ =
                tokio::time::timeout(UNKNOWN_EPOCH_WAIT, rx.wait_for(|r| r.broker_epoch >= want))
                    .await;
            let current = self.registration.borrow().broker_epoch;
            if want < current {
                return Err(AgentError::StaleBrokerEpoch { got: want, current });
            }
            if want > current {
                return Err(AgentError::UnknownBrokerEpoch { got: want, current });
            }
        }
        Ok(())
    }

    /// Everything GetState reports.
    pub fn get_state(&self) -> GetAgentStateResponse {
        let registration = self.registration();
        let view = lock(&self.view);
        GetAgentStateResponse {
            broker_id: self.broker_id,
            broker_epoch: registration.broker_epoch,
            coordinator_epoch: view.highest_coordinator_epoch,
            applied_version: view.applied.map_or(0, |a| a.version),
            partitions: view
                .hosted
                .values()
                .map(PartitionRecord::to_proto)
                .collect(),
            hosted: view
                .hosted
                .values()
                .map(|r| r.hosted(self.broker_id))
                .collect(),
            metadata: Some(view.metadata.clone()),
            registered: registration.registered,
            throttle_bytes_per_sec: self.replicas.get().map_or(0, |r| {
                r.throttles()
                    .rate(crate::replica::throttle::ThrottleClass::Reassignment)
            }),
            catch_up_throttle_bytes_per_sec: self.replicas.get().map_or(0, |r| {
                r.throttles()
                    .rate(crate::replica::throttle::ThrottleClass::CatchUp)
            }),
        }
    }
}

/// Runs blocking file I/O off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AgentError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::Task(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_proto::v1::{AssignedPartition, PartitionRef, ReplicaRole};

    fn agent(dir: &std::path::Path) -> AgentState {
        let data_dir = DataDir::open(dir, 1).unwrap();
        let (hosted, _) = partition_dir::load_all(dir).unwrap();
        let state = AgentState::new(data_dir, hosted);
        state.set_registered(10, "c".into());
        state
    }

    fn part(topic: &str, p: i32, leader: i32, leader_epoch: i32) -> AssignedPartition {
        AssignedPartition {
            topic: topic.into(),
            topic_id: format!("{topic}-id"),
            partition: p,
            replicas: vec![1, 2],
            leader,
            leader_epoch,
            isr: vec![1, 2],
            partition_epoch: leader_epoch,
            configs: Default::default(),
            ..Default::default()
        }
    }

    fn push(coordinator_epoch: i64, version: u64, full: bool) -> ApplyRequest {
        ApplyRequest {
            coordinator_epoch,
            broker_id: 1,
            broker_epoch: 10,
            full,
            partitions: vec![],
            removed: vec![],
            version,
            metadata: None,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn full_then_delta_reports_roles_and_versions() {
        let dir = tempfile::tempdir().unwrap();
        let a = agent(dir.path());
        let mut full = push(5, 1, true);
        full.partitions = vec![part("t", 0, 1, 0), part("t", 1, 2, 0)];
        let resp = a.apply(full.clone()).await.unwrap();
        assert_eq!(resp.applied_version, 1);
        let roles: Vec<_> = resp.hosted.iter().map(|h| h.role()).collect();
        assert_eq!(roles, vec![ReplicaRole::Leader, ReplicaRole::Follower]);
        // A retry of the same push is fine.
        assert_eq!(a.apply(full).await.unwrap().hosted.len(), 2);

        let mut delta = push(5, 2, false);
        delta.removed = vec![PartitionRef {
            topic: "t".into(),
            partition: 0,
        }];
        let resp = a.apply(delta).await.unwrap();
        assert_eq!(resp.hosted.len(), 1);
        let s = a.get_state();
        assert_eq!(
            (s.applied_version, s.coordinator_epoch, s.broker_epoch),
            (2, 5, 10)
        );
        assert!(s.registered);
        assert!(!dir.path().join("partitions/t-0").exists());
        assert!(dir.path().join("partitions/t-1/partition.json").is_file());
    }

    #[tokio::test]
    async fn fencing_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let a = agent(dir.path());
        a.apply(push(7, 3, true)).await.unwrap();
        // The new epoch is on disk.
        assert_eq!(persisted_epoch(dir.path()), 7);

        let stale = a.apply(push(6, 9, true)).await.unwrap_err();
        assert_eq!(stale.to_string(), "stale coordinator epoch 6 < 7");

        let mut other = push(7, 9, true);
        other.broker_id = 2;
        assert!(matches!(
            a.apply(other).await.unwrap_err(),
            AgentError::WrongBroker { got: 2, own: 1 }
        ));

        let mut old_incarnation = push(7, 9, true);
        old_incarnation.broker_epoch = 9;
        assert!(matches!(
            a.apply(old_incarnation).await.unwrap_err(),
            AgentError::StaleBrokerEpoch {
                got: 9,
                current: 10
            }
        ));

        assert!(matches!(
            a.apply(push(7, 2, true)).await.unwrap_err(),
            AgentError::StalePushVersion {
                got: 2,
                applied: 3,
                ..
            }
        ));
        // A new coordinator epoch starts its own version sequence.
        a.apply(push(8, 1, true)).await.unwrap();

        let mut bad = push(8, 2, true);
        bad.partitions = vec![part("../escape", 0, 1, 0)];
        assert!(matches!(
            a.apply(bad).await.unwrap_err(),
            AgentError::InvalidPush(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_push_for_a_newer_broker_epoch_waits_for_registration() {
        let dir = tempfile::tempdir().unwrap();
        let a = Arc::new(agent(dir.path()));
        let mut ahead = push(1, 1, true);
        ahead.broker_epoch = 11;
        let err = a.apply(ahead.clone()).await.unwrap_err();
        assert!(matches!(
            err,
            AgentError::UnknownBrokerEpoch {
                got: 11,
                current: 10
            }
        ));

        let waiting = tokio::spawn({
            let a = Arc::clone(&a);
            async move { a.apply(ahead).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        a.set_registered(11, "c".into());
        waiting.await.unwrap().unwrap();
    }

    /// The coordinator epoch in `agent.json` (read without the lock).
    fn persisted_epoch(dir: &std::path::Path) -> i64 {
        let bytes = std::fs::read(dir.join(crate::meta::META_FILE)).unwrap();
        let meta: crate::meta::AgentMeta = serde_json::from_slice(&bytes).unwrap();
        meta.highest_coordinator_epoch
    }
}
