//! The replica manager: the hosted partitions at run time, kept in step
//! with the pushes the control side applies, plus the agent's background
//! work on them.
//!
//! Driven by [`crate::state::AgentState::apply`], inside its push gate (so
//! pushes and this module's reactions never interleave):
//! * [`ReplicaManager::release`] before partition directories are removed
//!   or recreated: the partitions stop and close their logs;
//! * [`ReplicaManager::apply`] after a push was reconciled, with every
//!   hosted record and the cluster metadata: opens the logs of new
//!   partitions, applies each record (become leader, become follower, new
//!   ISR), closes partitions no longer hosted, and starts, feeds or stops
//!   one fetcher per leader broker. When `apply` returns, the roles of the
//!   push are in effect.
//!
//! At start-up the logs found on disk are opened (recovered) before the
//! agent serves, but without a role: the role a restarted agent last knew
//! may be stale, so a partition leads or follows only once a push (after
//! registration the coordinator sends a full one) says so.
//!
//! Background tasks: ISR checks (every `replica.lag.time.max.ms / 4`),
//! background flushes, high-watermark checkpoints, retention and
//! compaction. All log work runs on blocking threads.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use ballast_proto::v1::ClusterMetadata;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::alter_isr::AlterIsrClient;
use super::fetcher::{self, FetchContext};
use super::isr::IsrChange;
use super::partition::{Partition, TopicSettings};
use super::throttle::Throttles;
use super::{Clock, ReplicationConfig, wall_clock_ms};
use crate::partition::{PartitionKey, PartitionRecord};
use crate::state::Registration;

/// `items.iter().filter_map(f)` over a few threads ([`crate::par`]). An
/// item whose thread panicked is left out, with a warning (its partition is
/// not served until the next push).
fn par_filter_map<I: Sync, T: Send>(items: &[I], f: impl Fn(&I) -> Option<T> + Sync) -> Vec<T> {
    crate::par::par_map(items, f, || {
        warn!("a thread opening partition logs panicked; its partition is not served until the next push");
        None
    })
    .into_iter()
    .flatten()
    .collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The cluster metadata of the last push, indexed for lookups.
#[derive(Debug, Default)]
pub struct MetadataView {
    inner: RwLock<Arc<Indexed>>,
}

/// Cluster metadata with its lookups built.
#[derive(Debug, Default)]
pub struct Indexed {
    /// As pushed (merged over deltas by [`crate::metadata`]).
    pub metadata: ClusterMetadata,
    /// (topic, partition) -> (leader, leader epoch).
    pub leaders: HashMap<(String, i32), (i32, i32)>,
    /// broker id -> `client` endpoint address.
    pub addresses: HashMap<i32, String>,
    /// broker id -> broker epoch.
    pub broker_epochs: HashMap<i32, i64>,
    /// topic -> partition count (highest partition id + 1).
    pub partition_counts: HashMap<String, i32>,
}

impl MetadataView {
    /// Replaces the metadata.
    pub fn set(&self, metadata: ClusterMetadata) {
        let leaders = metadata
            .leaders
            .iter()
            .map(|l| ((l.topic.clone(), l.partition), (l.leader, l.leader_epoch)))
            .collect();
        let addresses = metadata
            .brokers
            .iter()
            .filter_map(|b| {
                let ep = b
                    .endpoints
                    .iter()
                    .find(|e| e.name == "client")
                    .or_else(|| b.endpoints.first())?;
                Some((b.broker_id, ep.address.clone()))
            })
            .collect();
        let broker_epochs = metadata
            .brokers
            .iter()
            .map(|b| (b.broker_id, b.broker_epoch))
            .collect();
        let mut partition_counts: HashMap<String, i32> = HashMap::new();
        for l in &metadata.leaders {
            let n = partition_counts.entry(l.topic.clone()).or_insert(0);
            *n = (*n).max(l.partition.saturating_add(1));
        }
        let indexed = Indexed {
            metadata,
            leaders,
            addresses,
            broker_epochs,
            partition_counts,
        };
        *self.inner.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(indexed);
    }

    /// The current snapshot.
    pub fn get(&self) -> Arc<Indexed> {
        Arc::clone(&self.inner.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// A broker's `client` address.
    pub fn client_address(&self, broker: i32) -> Option<String> {
        self.get().addresses.get(&broker).cloned()
    }
}

struct FetcherHandle {
    partitions: watch::Sender<Vec<Arc<Partition>>>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FetcherHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetcherHandle")
            .field("partitions", &self.partitions.borrow().len())
            .finish_non_exhaustive()
    }
}

/// The hosted partitions at run time and the agent's replication tasks.
#[derive(Debug)]
pub struct ReplicaManager {
    me: i32,
    root: PathBuf,
    config: ReplicationConfig,
    clock: Clock,
    partitions: RwLock<HashMap<PartitionKey, Arc<Partition>>>,
    metadata: Arc<MetadataView>,
    registration: watch::Receiver<Registration>,
    alter_isr: AlterIsrClient,
    fetchers: Mutex<HashMap<i32, FetcherHandle>>,
    background: Mutex<Option<JoinHandle<()>>>,
    cancel: CancellationToken,
    /// Counts the pushes applied (roles in effect), for the group
    /// coordinator to follow leadership of the offsets partitions.
    applied: watch::Sender<u64>,
    /// Follower fetch throttles, set by every push.
    throttles: Arc<Throttles>,
    metrics: crate::metrics::AgentMetrics,
}

impl ReplicaManager {
    /// A manager for broker `me` whose partition directories live under
    /// `root` (`<data_dir>/partitions`). `cancel` stops every task.
    pub(crate) fn new(
        me: i32,
        root: PathBuf,
        config: ReplicationConfig,
        registration: watch::Receiver<Registration>,
        coordinator: watch::Receiver<String>,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        let clock = Clock::new();
        Arc::new(ReplicaManager {
            me,
            root,
            alter_isr: AlterIsrClient::new(
                me,
                clock,
                registration.clone(),
                coordinator,
                cancel.clone(),
            ),
            config,
            clock,
            partitions: RwLock::new(HashMap::new()),
            metadata: Arc::new(MetadataView::default()),
            registration,
            fetchers: Mutex::new(HashMap::new()),
            background: Mutex::new(None),
            cancel,
            applied: watch::Sender::new(0),
            throttles: Arc::new(Throttles::default()),
            metrics: crate::metrics::AgentMetrics::new(),
        })
    }

    /// The agent's metrics, gauges refreshed.
    pub fn metrics_text(&self) -> String {
        let (mut leaders, mut followers) = (0i64, 0i64);
        for p in self.all() {
            if p.following().is_none() {
                leaders += 1;
            } else {
                followers += 1;
            }
        }
        let m = &self.metrics;
        m.partitions
            .get_or_create(&vec![("role", "leader")])
            .set(leaders);
        m.partitions
            .get_or_create(&vec![("role", "follower")])
            .set(followers);
        use super::throttle::ThrottleClass;
        m.throttle
            .get_or_create(&vec![("kind", "reassignment")])
            .set(self.throttles.rate(ThrottleClass::Reassignment) as i64);
        m.throttle
            .get_or_create(&vec![("kind", "catch_up")])
            .set(self.throttles.rate(ThrottleClass::CatchUp) as i64);
        m.encode()
    }

    /// The agent's metrics.
    pub fn metrics(&self) -> &crate::metrics::AgentMetrics {
        &self.metrics
    }

    /// The follower fetch throttles.
    pub fn throttles(&self) -> &Arc<Throttles> {
        &self.throttles
    }

    /// Sizes of hosted replicas for the coordinator: all of them, or only
    /// those a reassignment is moving. Blocking (reads each log's size).
    pub fn replica_sizes(&self, all: bool) -> Vec<ballast_proto::v1::ReplicaSize> {
        self.all()
            .into_iter()
            .filter_map(|p| p.size_report(self.me, all))
            .collect()
    }

    /// This broker's id.
    pub fn broker_id(&self) -> i32 {
        self.me
    }

    /// The settings.
    pub fn config(&self) -> &ReplicationConfig {
        &self.config
    }

    /// The monotonic clock (ms) the ISR rules run on.
    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The cluster metadata of the last push.
    pub fn metadata(&self) -> Arc<Indexed> {
        self.metadata.get()
    }

    /// A hosted partition.
    pub fn partition(&self, key: &PartitionKey) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// A hosted partition by topic and index.
    pub fn find(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        let key = PartitionKey {
            topic: topic.to_owned(),
            partition,
        };
        self.partition(&key)
    }

    /// Every hosted partition.
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Opens the logs of the partitions found on disk at start-up
    /// (recovering them) without a role: they serve nothing until a push
    /// names their leader, but recovery happens before the agent serves
    /// and registers, not inside a push.
    pub(crate) async fn open_existing(&self, hosted: BTreeMap<PartitionKey, PartitionRecord>) {
        let me = self.me;
        let root = self.root.clone();
        let lag_ms = duration_ms(self.config.replica_lag_time_max);
        let opened = blocking(move || {
            let records: Vec<&PartitionRecord> = hosted.values().collect();
            par_filter_map(&records, |record: &&PartitionRecord| {
                let (settings, _) = TopicSettings::from_configs(&record.configs);
                let dir = root.join(record.key().dir_name());
                match Partition::open(&dir, me, record, settings, lag_ms) {
                    Ok(p) => Some(Arc::new(p)),
                    Err(e) => {
                        warn!(
                            partition = %record.key(), error = %e,
                            "cannot open the partition log; not serving it"
                        );
                        None
                    }
                }
            })
        })
        .await;
        info!(partitions = opened.len(), "opened partition logs");
        let mut map = self
            .partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for p in opened {
            map.insert(p.key().clone(), p);
        }
    }

    /// True once the manager is stopping.
    pub(crate) fn is_stopping(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Resolves once the manager is stopping (long polls and acks=all
    /// waits end early then).
    pub(crate) async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// Sends ISR changes a partition planned.
    pub(crate) fn dispatch(&self, partition: &Arc<Partition>, changes: Vec<IsrChange>) {
        self.alter_isr.dispatch(partition, changes);
    }

    /// Stops and closes `keys` (their directories are about to be removed
    /// or recreated).
    pub(crate) async fn release(&self, keys: Vec<PartitionKey>) {
        let closing: Vec<Arc<Partition>> = {
            let mut map = self
                .partitions
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        if closing.is_empty() {
            return;
        }
        for p in &closing {
            info!(partition = %p.key(), "releasing partition");
        }
        blocking(move || {
            for p in closing {
                p.close(false);
            }
        })
        .await;
        self.update_fetchers();
    }

    /// Brings the runtime in line with a push: `hosted` is everything the
    /// agent hosts now, `metadata` the cluster metadata.
    pub(crate) async fn apply(
        &self,
        hosted: BTreeMap<PartitionKey, PartitionRecord>,
        metadata: ClusterMetadata,
    ) {
        self.metadata.set(metadata);
        let current: HashMap<PartitionKey, Arc<Partition>> = self
            .partitions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut updates = Vec::new();
        let mut opens = Vec::new();
        let mut closes = Vec::new();
        for (key, record) in &hosted {
            match current.get(key) {
                Some(p) if p.topic_id() == record.topic_id => {
                    updates.push((Arc::clone(p), record.clone()));
                }
                Some(p) => {
                    closes.push(Arc::clone(p));
                    opens.push(record.clone());
                }
                None => opens.push(record.clone()),
            }
        }
        for (key, p) in &current {
            if !hosted.contains_key(key) {
                closes.push(Arc::clone(p));
            }
        }
        let me = self.me;
        let root = self.root.clone();
        let lag_ms = duration_ms(self.config.replica_lag_time_max);
        let now_ms = self.clock.now_ms();
        let closed: Vec<PartitionKey> = closes.iter().map(|p| p.key().clone()).collect();
        let (opened, changes) = blocking(move || {
            for p in &closes {
                p.close(true);
            }
            let open_one = |record: &PartitionRecord| {
                let (settings, problems) = TopicSettings::from_configs(&record.configs);
                for problem in problems {
                    warn!(partition = %record.key(), %problem, "topic config ignored");
                }
                let dir = root.join(record.key().dir_name());
                match Partition::open(&dir, me, record, settings.clone(), lag_ms) {
                    Ok(p) => {
                        let p = Arc::new(p);
                        let c = p.apply_record(record, settings, now_ms);
                        Some((p, c))
                    }
                    Err(e) => {
                        warn!(
                            partition = %record.key(), error = %e,
                            "cannot open the partition log; not serving it"
                        );
                        None
                    }
                }
            };
            let results = par_filter_map(&opens, open_one);
            let mut opened = Vec::with_capacity(results.len());
            let mut changes = Vec::with_capacity(results.len());
            for (p, c) in results {
                changes.push((Arc::clone(&p), c));
                opened.push(p);
            }
            for (p, record) in updates {
                let (settings, problems) = TopicSettings::from_configs(&record.configs);
                for problem in problems {
                    warn!(partition = %record.key(), %problem, "topic config ignored");
                }
                let c = p.apply_record(&record, settings, now_ms);
                changes.push((p, c));
            }
            (opened, changes)
        })
        .await;
        {
            let mut map = self
                .partitions
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            for k in &closed {
                map.remove(k);
            }
            for p in opened {
                map.insert(p.key().clone(), p);
            }
        }
        for (p, c) in changes {
            self.dispatch(&p, c);
        }
        self.update_fetchers();
        self.applied.send_modify(|n| *n += 1);
    }

    /// Changes after every applied push (roles in effect).
    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// The token that stops the agent's tasks.
    pub(crate) fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The wall clock (ms since the epoch) and the monotonic one (ms).
    pub(crate) fn clocks(&self) -> (i64, i64) {
        (wall_clock_ms(), self.clock.now_ms())
    }

    /// Starts, feeds and stops the per-leader fetchers to match the roles.
    fn update_fetchers(&self) {
        let mut groups: HashMap<i32, Vec<Arc<Partition>>> = HashMap::new();
        for p in self.all() {
            if let Some(leader) = p.following()
                && leader >= 0
                && leader != self.me
            {
                groups.entry(leader).or_default().push(p);
            }
        }
        let mut fetchers = lock(&self.fetchers);
        fetchers.retain(|leader, f| {
            let keep = groups.contains_key(leader);
            if !keep {
                f.cancel.cancel();
            }
            keep
        });
        for (leader, list) in groups {
            if let Some(f) = fetchers.get(&leader) {
                f.partitions.send_replace(list);
                continue;
            }
            if self.cancel.is_cancelled() {
                continue;
            }
            let (tx, rx) = watch::channel(list);
            let cancel = self.cancel.child_token();
            let ctx = FetchContext {
                me: self.me,
                registration: self.registration.clone(),
                metadata: Arc::clone(&self.metadata),
                max_wait: self.config.replica_fetch_max_wait,
                max_bytes: self.config.replica_fetch_max_bytes,
                partition_max_bytes: self.config.replica_fetch_partition_max_bytes,
                max_message_bytes: max_message_bytes(&self.config),
                throttles: Arc::clone(&self.throttles),
            };
            let task = tokio::spawn(fetcher::run(ctx, leader, rx, cancel.clone()));
            info!(leader, "started a fetcher");
            fetchers.insert(
                leader,
                FetcherHandle {
                    partitions: tx,
                    cancel,
                    task,
                },
            );
        }
    }

    /// Starts the background tasks (ISR checks, flushes, checkpoints,
    /// retention and compaction).
    pub(crate) fn start_background(self: &Arc<Self>) {
        let this = Arc::clone(self);
        let task = tokio::spawn(async move { this.background_loop().await });
        *lock(&self.background) = Some(task);
    }

    async fn background_loop(self: Arc<Self>) {
        let isr_every = (self.config.replica_lag_time_max / 4)
            .clamp(Duration::from_millis(50), Duration::from_secs(5));
        let mut isr = tokio::time::interval(isr_every);
        let mut flush = tokio::time::interval(self.config.flush_check_interval);
        let mut checkpoint = tokio::time::interval(self.config.checkpoint_interval);
        let mut retention = tokio::time::interval(self.config.retention_check_interval);
        for i in [&mut isr, &mut flush, &mut checkpoint, &mut retention] {
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        // The first tick of an interval is immediate; retention waits a full
        // period after start-up.
        retention.tick().await;
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => return,
                _ = isr.tick() => {
                    let now = self.clock.now_ms();
                    for p in self.all() {
                        let changes = p.tick(now);
                        self.dispatch(&p, changes);
                    }
                }
                _ = flush.tick() => {
                    let all = self.all();
                    blocking(move || {
                        let now = wall_clock_ms();
                        for p in all {
                            p.flush_if_due(now);
                        }
                    }).await;
                }
                _ = checkpoint.tick() => {
                    let all = self.all();
                    blocking(move || for p in all { p.checkpoint() }).await;
                }
                _ = retention.tick() => {
                    let all = self.all();
                    blocking(move || {
                        let now = wall_clock_ms();
                        for p in all {
                            p.retain_and_compact(now);
                        }
                    }).await;
                }
            }
        }
    }

    /// Stops every task and closes every partition (flushing it). Call
    /// after the servers stopped.
    pub(crate) async fn shutdown(&self) {
        self.cancel.cancel();
        let fetchers: Vec<FetcherHandle> = lock(&self.fetchers).drain().map(|(_, f)| f).collect();
        for f in fetchers {
            f.cancel.cancel();
            let _ = f.task.await;
        }
        let background = lock(&self.background).take();
        if let Some(task) = background {
            let _ = task.await;
        }
        self.alter_isr.join().await;
        let all: Vec<Arc<Partition>> = self
            .partitions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .map(|(_, p)| p)
            .collect();
        blocking(move || {
            for p in all {
                p.close(true);
            }
        })
        .await;
    }
}

/// Largest gRPC message of the Data service: the larger of the request
/// and fetch limits, plus one batch over the fetch limit (a fetch always
/// returns one batch) and room for framing.
pub fn max_message_bytes(config: &ReplicationConfig) -> usize {
    config
        .max_request_bytes
        .max(config.max_fetch_bytes)
        .max(config.replica_fetch_max_bytes as usize)
        .saturating_add(ballast_record::MAX_BATCH_BYTES)
        .saturating_add(1 << 20)
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Runs blocking log work; a panic there is logged and yields the default.
async fn blocking<T: Send + Default + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(t) => t,
        Err(e) => {
            warn!(error = %e, "blocking replica work failed");
            T::default()
        }
    }
}
