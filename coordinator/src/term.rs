//! One active term: what a coordinator does between winning the election and
//! losing its lease.
//!
//! A term loads the whole cluster state from the store at one revision, then
//! serves every mutating request under one async write lock: plan against the
//! in-memory state (a `std::sync::Mutex`, never held across `.await`), write
//! to the store fenced by the term's leadership key, and only then apply to
//! memory and notify the pushers. Reads lock the state briefly.
//!
//! Guarantees:
//! * nothing is written or pushed once [`LeaseHealth`] says the lease was not
//!   renewed within the renew deadline, and every write carries the fence, so
//!   a deposed coordinator changes nothing even if it has not noticed;
//! * memory never runs ahead of the store: a failed write leaves it as it was;
//! * brokers known at takeover get a full session timeout to heartbeat the
//!   new coordinator before they can be fenced (no expiry wave at failover).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use ballast_assignor::JavaRandom;
use ballast_proto::v1::metadata::BrokerRecord;
use ballast_proto::v1::{self as pb};
use prost::Message;
use tokio::sync::Mutex as AsyncMutex;

use crate::config::CoordinatorConfig;
use crate::keys::Keys;
use crate::partition::{self, AlterIsr, PartitionState};
use crate::push::Pushers;
use crate::state::{AdminError, ClusterState, CreateTopic, TopicEntry, WritePlan};
use crate::store::{Compare, MetadataStore, StoreError, Txn, TxnOp, TxnOpResult};
use crate::topic::OFFSETS_TOPIC;
use crate::writer::{self, WriteError};

mod balance;
mod reassign;

pub use reassign::plan_reassignment;

/// Whether the leadership lease is fresh. Shared by the keep-alive task
/// (which records renewals) and everything that acts.
#[derive(Debug)]
pub struct LeaseHealth {
    last_renewed: Mutex<Instant>,
    renew_deadline: Duration,
    lost: tokio::sync::watch::Sender<bool>,
}

impl LeaseHealth {
    /// Fresh as of `renewed_at`.
    pub fn new(renewed_at: Instant, renew_deadline: Duration) -> Arc<Self> {
        Arc::new(LeaseHealth {
            last_renewed: Mutex::new(renewed_at),
            renew_deadline,
            lost: tokio::sync::watch::channel(false).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Instant> {
        self.last_renewed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record a renewal whose request was sent at `sent_at`.
    pub fn renewed(&self, sent_at: Instant) {
        let mut last = self.lock();
        if sent_at > *last {
            *last = sent_at;
        }
    }

    /// True while the last renewal is within the renew deadline and the
    /// lease was not declared lost.
    pub fn is_fresh(&self) -> bool {
        !*self.lost.borrow() && self.lock().elapsed() < self.renew_deadline
    }

    /// Declare the lease lost (idempotent).
    pub fn mark_lost(&self) {
        self.lost.send_replace(true);
    }

    /// Resolves once the lease is lost or stale.
    pub async fn lost(&self) {
        let mut rx = self.lost.subscribe();
        loop {
            if !self.is_fresh() {
                self.mark_lost();
                return;
            }
            let remaining = self.renew_deadline.saturating_sub(self.lock().elapsed());
            tokio::select! {
                _ = rx.changed() => {}
                () = tokio::time::sleep(remaining.max(Duration::from_millis(10))) => {}
            }
        }
    }
}

/// Everything a service call can fail with, mapped to gRPC in `service.rs`.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Not the active coordinator; the address of the active one if known.
    #[error("not the active coordinator")]
    NotActive(Option<String>),
    /// Invalid request.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// Broker registration refused: another live agent holds the id.
    #[error(
        "broker {0} is already registered by another live agent (incarnation {1}); refusing the second claim"
    )]
    DuplicateBroker(i32, String),
    /// A request carried a stale broker epoch.
    #[error("stale broker epoch {given} for broker {broker} (current {current})")]
    StaleBrokerEpoch {
        broker: i32,
        given: i64,
        current: i64,
    },
    /// Unknown broker.
    #[error("broker {0} is not registered")]
    UnknownBroker(i32),
    /// Invalid argument outside topic rules.
    #[error("{0}")]
    InvalidArgument(String),
    /// An ISR change was refused.
    #[error(transparent)]
    AlterIsr(#[from] partition::AlterIsrError),
    /// The store could not be reached.
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// A bug or corrupt data.
    #[error("internal error: {0}")]
    Internal(String),
    /// A reassignment is running or cancelling.
    #[error("reassignment {0} is in progress; wait for it to finish or cancel it")]
    ReassignmentInProgress(String),
    /// Nothing to cancel.
    #[error("no reassignment is in progress")]
    NoReassignment,
    /// Every problem of a reassignment plan; nothing was started.
    #[error("invalid reassignment plan ({} problems): {}", .0.len(), .0.join("; "))]
    InvalidPlan(Vec<String>),
}

impl From<WriteError> for ServiceError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Fenced => ServiceError::NotActive(None),
            WriteError::GuardFailed => {
                ServiceError::Unavailable("a concurrent change interfered; retry".into())
            }
            WriteError::RecordTooLarge(n) => {
                ServiceError::InvalidArgument(format!("request too large: a record of {n} bytes"))
            }
            WriteError::Store(StoreError::Unavailable(m)) => ServiceError::Unavailable(m),
            WriteError::Store(e) => ServiceError::Internal(e.to_string()),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        WriteError::Store(e).into()
    }
}

#[derive(Debug, Clone, Copy)]
struct Session {
    epoch: i64,
    last_seen: Instant,
}

/// An active term.
#[derive(Debug)]
pub struct Term {
    /// The coordinator epoch (create revision of the leadership key).
    pub epoch: i64,
    fence: Compare,
    keys: Keys,
    config: Arc<CoordinatorConfig>,
    store: Arc<dyn MetadataStore>,
    health: Arc<LeaseHealth>,
    state: Mutex<ClusterState>,
    sessions: Mutex<HashMap<i32, Session>>,
    write: AsyncMutex<()>,
    rng: Mutex<JavaRandom>,
    pub(crate) pushers: Pushers,
    started: Instant,
    first_live_broker: Mutex<Option<Instant>>,
    sizes: Mutex<reassign::SizeBook>,
    auto: Mutex<balance::AutoBalance>,
    metrics: Arc<crate::metrics::Metrics>,
}

fn random_u64() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        // No OS randomness: fall back to the clock; only placement starts
        // and topic ids depend on it.
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    })
}

/// A Kafka-style topic id: 16 random bytes, URL-safe base64 without padding.
fn new_topic_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes: Vec<u8> = random_u64()
        .to_be_bytes()
        .into_iter()
        .chain(random_u64().to_be_bytes())
        .collect();
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

/// A planned preferred-leader election: the partitions whose leader moves
/// (their new states), how many are already led by their preferred replica,
/// and how many are not eligible (preferred replica fenced or out of sync).
pub type ElectionPlan = (BTreeMap<(String, i32), PartitionState>, u64, u64);

/// Preferred-leader election planned against `state`, restricted to a
/// topic and/or to partitions whose preferred leader is one of `brokers`:
/// (partition changes, already preferred, not eligible). Refuses an unknown
/// topic; no I/O.
pub fn plan_preferred_election(
    state: &ClusterState,
    topic: Option<&str>,
    brokers: Option<&[i32]>,
) -> Result<ElectionPlan, ServiceError> {
    if let Some(t) = topic
        && !state.topics.contains_key(t)
    {
        return Err(AdminError::UnknownTopic(t.to_owned()).into());
    }
    let mut changes = BTreeMap::new();
    let (mut already, mut not_eligible) = (0u64, 0u64);
    for (name, entry) in &state.topics {
        if topic.is_some_and(|t| t != name) {
            continue;
        }
        for (p, s) in entry.partitions.iter().enumerate() {
            if let Some(brokers) = brokers
                && !s.replicas.first().is_some_and(|b| brokers.contains(b))
            {
                continue;
            }
            if s.replicas.first() == Some(&s.leader) {
                already += 1;
            } else if let Some(next) = partition::elect_preferred(s, |b| state.is_live(b)) {
                changes.insert((name.clone(), p as i32), next);
            } else {
                not_eligible += 1;
            }
        }
    }
    Ok((changes, already, not_eligible))
}

impl Term {
    /// Load the cluster state at one revision and start a term.
    pub async fn load(
        epoch: i64,
        fence: Compare,
        config: Arc<CoordinatorConfig>,
        store: Arc<dyn MetadataStore>,
        health: Arc<LeaseHealth>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Arc<Term>, ServiceError> {
        let keys = Keys::new(&config.cluster_id);
        let response = store
            .txn(Txn::new().and_then([
                TxnOp::get_prefix(keys.brokers()),
                TxnOp::get_prefix(keys.topics()),
                TxnOp::get_prefix(keys.all_partitions()),
                TxnOp::get_prefix(keys.reassignments()),
            ]))
            .await?;
        let mut ranges = response.results.into_iter().map(|r| match r {
            TxnOpResult::Get(kvs) => kvs,
            _ => Vec::new(),
        });
        let (brokers, topics, chunks, reassignment) = (
            ranges.next().unwrap_or_default(),
            ranges.next().unwrap_or_default(),
            ranges.next().unwrap_or_default(),
            ranges.next().unwrap_or_default(),
        );
        let (mut state, mut report) = ClusterState::load(&keys, &brokers, &topics, &chunks)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let reassignment: Vec<(Vec<u8>, Vec<u8>)> = reassignment
            .into_iter()
            .map(|kv| (kv.key, kv.value))
            .collect();
        let (current, orphan_plans) = crate::reassignment::Reassignment::load(&keys, &reassignment)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        state.reassignment = current.map(Arc::new);
        report.orphan_chunks.extend(orphan_plans);
        // The broker epoch of a live broker is the revision of its
        // registration write, which is the key's mod revision: live broker
        // keys are written only by registration.
        for kv in &brokers {
            if let Ok(b) = BrokerRecord::decode(kv.value.as_slice())
                && let Some(rec) = state.brokers.get_mut(&b.broker_id)
            {
                rec.broker_epoch = kv.mod_revision;
            }
        }
        let now = Instant::now();
        // Grace: every live broker gets a full session from takeover.
        let sessions = state
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| {
                (
                    b.broker_id,
                    Session {
                        epoch: b.broker_epoch,
                        last_seen: now,
                    },
                )
            })
            .collect();
        let seed = random_u64() as i64;
        let live_any = state.brokers.values().any(|b| !b.fenced);
        let term = Arc::new(Term {
            epoch,
            fence,
            keys,
            config,
            store,
            health,
            sessions: Mutex::new(sessions),
            write: AsyncMutex::new(()),
            rng: Mutex::new(JavaRandom::new(seed)),
            pushers: Pushers::new(epoch),
            started: now,
            first_live_broker: Mutex::new(live_any.then_some(now)),
            state: Mutex::new(std::mem::take(&mut state)),
            sizes: Mutex::new(reassign::SizeBook::default()),
            auto: Mutex::new(balance::AutoBalance::default()),
            metrics,
        });
        if !report.orphan_chunks.is_empty() {
            tracing::info!(
                count = report.orphan_chunks.len(),
                "removing partition chunks left by unfinished operations"
            );
            let plan = WritePlan {
                prepare: report
                    .orphan_chunks
                    .into_iter()
                    .map(TxnOp::delete)
                    .collect(),
                ..Default::default()
            };
            writer::execute(term.store.as_ref(), &term.fence, plan).await?;
        }
        // Agents that are live get a full push right away.
        let live: Vec<BrokerRecord> = term
            .state()
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .cloned()
            .collect();
        for b in live {
            term.pushers.upsert_broker(&b, Arc::downgrade(&term));
        }
        Ok(term)
    }

    /// The state, locked briefly. Never hold across `.await`.
    pub fn state(&self) -> MutexGuard<'_, ClusterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<i32, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The term's config.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// True while the term may act.
    pub fn is_fresh(&self) -> bool {
        self.health.is_fresh()
    }

    fn ensure_fresh(&self) -> Result<(), ServiceError> {
        if self.health.is_fresh() {
            Ok(())
        } else {
            Err(ServiceError::NotActive(None))
        }
    }

    async fn write(&self, plan: WritePlan) -> Result<i64, ServiceError> {
        Ok(self.write_raw(plan).await?)
    }

    async fn write_raw(&self, plan: WritePlan) -> Result<i64, WriteError> {
        if !self.health.is_fresh() {
            return Err(WriteError::Fenced);
        }
        let result = writer::execute(self.store.as_ref(), &self.fence, plan).await;
        if let Err(WriteError::Fenced) = result {
            tracing::warn!(epoch = self.epoch, "write refused by the fence: deposed");
            self.health.mark_lost();
        }
        result
    }

    // ---- topics ---------------------------------------------------------

    /// Create a topic (or answer a retry of one that was created).
    pub async fn create_topic(
        &self,
        req: CreateTopic,
        validate_only: bool,
    ) -> Result<TopicEntry, ServiceError> {
        let _w = self.write.lock().await;
        let planned = {
            let state = self.state();
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            state.plan_create_topic(&self.keys, &req, new_topic_id(), &mut rng)?
        };
        let Some((entry, plan)) = planned else {
            // A retry of a creation that already succeeded.
            return self
                .state()
                .topics
                .get(&req.name)
                .map(|t| TopicEntry::clone(t))
                .ok_or_else(|| ServiceError::Internal("topic vanished".into()));
        };
        if validate_only {
            return Ok(entry);
        }
        let topic = entry.record.name.clone();
        match self.write_raw(plan).await {
            Ok(_) => {}
            // The guard is "topic absent": someone created it meanwhile.
            Err(WriteError::GuardFailed) => {
                return Err(AdminError::TopicAlreadyExists(topic).into());
            }
            Err(e) => return Err(e.into()),
        }
        let changed: Vec<(String, i32)> = (0..entry.partitions.len() as i32)
            .map(|p| (topic.clone(), p))
            .collect();
        self.state()
            .topics
            .insert(topic.clone(), Arc::new(entry.clone()));
        tracing::info!(%topic, partitions = entry.partitions.len(), "topic created");
        self.pushers.notify(&changed);
        Ok(entry)
    }

    /// Delete a topic.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ServiceError> {
        let _w = self.write.lock().await;
        let (plan, count) = {
            let state = self.state();
            let plan = state.plan_delete_topic(&self.keys, name)?;
            (
                plan,
                state.topics.get(name).map_or(0, |t| t.partitions.len()),
            )
        };
        self.write(plan).await?;
        self.state().topics.remove(name);
        let changed: Vec<(String, i32)> = (0..count as i32).map(|p| (name.to_owned(), p)).collect();
        self.pushers.notify(&changed);
        tracing::info!(topic = name, "topic deleted");
        Ok(())
    }

    /// Grow a topic.
    pub async fn add_partitions(
        &self,
        name: &str,
        total: i32,
        assignments: &[Vec<i32>],
        validate_only: bool,
    ) -> Result<TopicEntry, ServiceError> {
        let _w = self.write.lock().await;
        let (next, plan, before) = {
            let state = self.state();
            let before = state.topics.get(name).map_or(0, |t| t.partitions.len());
            let (next, plan) = state.plan_add_partitions(&self.keys, name, total, assignments)?;
            (next, plan, before)
        };
        if validate_only {
            return Ok(next);
        }
        self.write(plan).await?;
        let changed: Vec<(String, i32)> = (before as i32..total)
            .map(|p| (name.to_owned(), p))
            .collect();
        self.state()
            .topics
            .insert(name.to_owned(), Arc::new(next.clone()));
        self.pushers.notify(&changed);
        Ok(next)
    }

    /// Persist and apply partition changes; returns how many were written.
    async fn apply_partition_changes(
        &self,
        changes: BTreeMap<(String, i32), PartitionState>,
    ) -> Result<usize, ServiceError> {
        if changes.is_empty() {
            return Ok(0);
        }
        let (touched, plan, before) = {
            let state = self.state();
            let (touched, plan) = state.plan_partition_changes(&self.keys, &changes);
            (touched, plan, state.partition_states(changes.keys()))
        };
        self.write(plan).await?;
        self.count_changes(&before, &changes);
        {
            let mut state = self.state();
            for (name, entry) in touched {
                state.topics.insert(name, Arc::new(entry));
            }
        }
        let keys: Vec<(String, i32)> = changes.into_keys().collect();
        self.pushers.notify(&keys);
        Ok(keys.len())
    }

    /// Preferred-leader election for one topic or all: (elected, already
    /// preferred, not eligible).
    pub async fn elect_preferred(
        &self,
        topic: Option<&str>,
    ) -> Result<(u64, u64, u64), ServiceError> {
        self.elect_preferred_where(topic, None).await
    }

    /// Preferred-leader election restricted to a topic and/or to partitions
    /// whose preferred leader is one of `brokers`.
    async fn elect_preferred_where(
        &self,
        topic: Option<&str>,
        brokers: Option<&[i32]>,
    ) -> Result<(u64, u64, u64), ServiceError> {
        let _w = self.write.lock().await;
        let (changes, already, not_eligible) =
            plan_preferred_election(&self.state(), topic, brokers)?;
        let elected = self.apply_partition_changes(changes).await? as u64;
        Ok((elected, already, not_eligible))
    }

    // ---- brokers --------------------------------------------------------

    /// Register (or re-register) a broker; returns its new broker epoch.
    pub async fn register(
        &self,
        self_arc: &Arc<Term>,
        req: pb::RegisterBrokerRequest,
    ) -> Result<i64, ServiceError> {
        if req.broker_id < 0 {
            return Err(ServiceError::InvalidArgument(format!(
                "broker_id: must be non-negative, got {}",
                req.broker_id
            )));
        }
        if req.incarnation_id.is_empty() {
            return Err(ServiceError::InvalidArgument(
                "incarnation_id: must not be empty".into(),
            ));
        }
        if req.control_address.is_empty() {
            return Err(ServiceError::InvalidArgument(
                "control_address: must not be empty".into(),
            ));
        }
        let _w = self.write.lock().await;
        let id = req.broker_id;
        let mut existing = self.state().brokers.get(&id).cloned();
        // The same agent (incarnation), a new process, while its previous
        // registration is still live: it restarted faster than the session
        // timeout. Treat the old process as failed first (its leaderships
        // move to other ISR members, which bumps their leader epochs, and it
        // leaves the ISRs), as Kafka treats a bounced broker: a restarted
        // leader must not resume at its old epoch with a log that may have
        // lost its unflushed tail.
        if let Some(old) = &existing
            && !old.fenced
            && old.incarnation_id == req.incarnation_id
            && !old.process_id.is_empty()
            && !req.process_id.is_empty()
            && old.process_id != req.process_id
        {
            tracing::info!(
                broker = id,
                "broker restarted within its session: fencing the old process first"
            );
            self.fence_broker_locked(id).await?;
            existing = self.state().brokers.get(&id).cloned();
        }
        if let Some(old) = &existing
            && !old.fenced
            && old.incarnation_id != req.incarnation_id
        {
            let alive = self
                .sessions()
                .get(&id)
                .is_some_and(|s| s.last_seen.elapsed() < self.config.session_timeout);
            if alive {
                return Err(ServiceError::DuplicateBroker(
                    id,
                    old.incarnation_id.clone(),
                ));
            }
        }
        let record = BrokerRecord {
            broker_id: id,
            incarnation_id: req.incarnation_id.clone(),
            broker_epoch: 0,
            endpoints: req
                .endpoints
                .iter()
                .map(|e| ballast_proto::v1::metadata::EndpointRecord {
                    name: e.name.clone(),
                    address: e.address.clone(),
                })
                .collect(),
            rack: req.rack.clone(),
            disk_capacity_bytes: req.disk_capacity_bytes,
            control_address: req.control_address.clone(),
            fenced: false,
            process_id: req.process_id.clone(),
        };
        let key = self.keys.broker(id);
        let guard = match &existing {
            // Written against the record we planned with.
            Some(_) => Compare::exists(key.clone()),
            None => Compare::absent(key.clone()),
        };
        let plan = WritePlan {
            prepare: Vec::new(),
            final_ops: vec![TxnOp::put(key, record.encode_to_vec())],
            final_guard: vec![guard],
        };
        let epoch = self.write(plan).await?;
        let mut record = record;
        record.broker_epoch = epoch;
        self.sessions().insert(
            id,
            Session {
                epoch,
                last_seen: Instant::now(),
            },
        );
        let returning = existing.as_ref().is_none_or(|o| o.fenced);
        self.state().brokers.insert(id, record.clone());
        self.note_fenced(id, false);
        {
            let mut first = self
                .first_live_broker
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(Instant::now);
        }
        tracing::info!(broker = id, broker_epoch = epoch, rack = %req.rack, "broker registered");
        self.pushers
            .upsert_broker(&record, Arc::downgrade(self_arc));
        self.pushers.notify_brokers();
        if returning {
            self.on_broker_back(id).await?;
        }
        Ok(epoch)
    }

    /// A heartbeat: true when accepted, false when the broker must register
    /// again (fenced, or a stale epoch).
    pub fn heartbeat(&self, broker: i32, epoch: i64) -> bool {
        let mut sessions = self.sessions();
        match sessions.get_mut(&broker) {
            Some(s) if s.epoch == epoch => {
                s.last_seen = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// Elect leaders for offline partitions a returning broker can lead.
    async fn on_broker_back(&self, _broker: i32) -> Result<(), ServiceError> {
        let changes = {
            let state = self.state();
            let mut changes = BTreeMap::new();
            for (name, entry) in &state.topics {
                for (p, s) in entry.partitions.iter().enumerate() {
                    if let Some(next) = partition::on_broker_unfenced(
                        s,
                        |b| state.is_live(b),
                        entry.config.unclean_leader_election,
                    ) {
                        changes.insert((name.clone(), p as i32), next);
                    }
                }
            }
            changes
        };
        self.apply_partition_changes(changes).await?;
        Ok(())
    }

    /// Fence `broker`: mark it fenced and move its leaderships, in the same
    /// write sequence (broker record in the final transaction).
    pub async fn fence_broker(&self, broker: i32) -> Result<(), ServiceError> {
        let _w = self.write.lock().await;
        self.fence_broker_locked(broker).await
    }

    async fn fence_broker_locked(&self, broker: i32) -> Result<(), ServiceError> {
        let (changes, record, touched, plan) = {
            let state = self.state();
            let Some(rec) = state.brokers.get(&broker).cloned() else {
                return Ok(());
            };
            if rec.fenced {
                return Ok(());
            }
            let live = |b: i32| b != broker && state.is_live(b);
            let mut changes = BTreeMap::new();
            for (name, entry) in &state.topics {
                for (p, s) in entry.partitions.iter().enumerate() {
                    if let Some(next) = partition::on_broker_fenced(
                        s,
                        broker,
                        live,
                        entry.config.unclean_leader_election,
                    ) {
                        changes.insert((name.clone(), p as i32), next);
                    }
                }
            }
            let mut rec = rec;
            rec.fenced = true;
            let (touched, plan) = state.plan_partition_changes(&self.keys, &changes);
            let before = state.partition_states(changes.keys());
            (changes, rec, touched, (plan, before))
        };
        let (mut plan, before) = plan;
        plan.final_ops
            .push(TxnOp::put(self.keys.broker(broker), record.encode_to_vec()));
        self.write(plan).await?;
        self.count_changes(&before, &changes);
        self.metrics.broker_fencings.inc();
        {
            let mut state = self.state();
            for (name, entry) in touched {
                state.topics.insert(name, Arc::new(entry));
            }
            state.brokers.insert(broker, record);
        }
        self.sessions().remove(&broker);
        self.pushers.remove_broker(broker);
        self.pushers.notify_brokers();
        let keys: Vec<(String, i32)> = changes.into_keys().collect();
        tracing::warn!(broker, moved = keys.len(), "broker fenced");
        self.note_fenced(broker, true);
        self.pushers.notify(&keys);
        Ok(())
    }

    /// Persist an ISR change requested by a leader.
    pub async fn alter_isr(
        &self,
        req: pb::AlterIsrRequest,
    ) -> Result<PartitionState, ServiceError> {
        let _w = self.write.lock().await;
        let current = {
            let state = self.state();
            let rec = state
                .brokers
                .get(&req.broker_id)
                .ok_or(ServiceError::UnknownBroker(req.broker_id))?;
            if rec.fenced || rec.broker_epoch != req.broker_epoch {
                return Err(ServiceError::StaleBrokerEpoch {
                    broker: req.broker_id,
                    given: req.broker_epoch,
                    current: rec.broker_epoch,
                });
            }
            let entry = state
                .topics
                .get(&req.topic)
                .ok_or_else(|| AdminError::UnknownTopic(req.topic.clone()))?;
            let s = entry
                .partitions
                .get(req.partition.max(0) as usize)
                .filter(|_| req.partition >= 0)
                .ok_or_else(|| {
                    ServiceError::InvalidArgument(format!(
                        "partition: {} does not exist in {}",
                        req.partition, req.topic
                    ))
                })?;
            let next = partition::alter_isr(
                s,
                &AlterIsr {
                    leader: req.broker_id,
                    leader_epoch: req.leader_epoch,
                    partition_epoch: req.partition_epoch,
                    new_isr: req.new_isr.clone(),
                },
                |b| state.is_live(b),
            )?;
            if &next == s {
                return Ok(next);
            }
            next
        };
        let mut changes = BTreeMap::new();
        changes.insert((req.topic.clone(), req.partition), current.clone());
        self.apply_partition_changes(changes).await?;
        Ok(current)
    }

    // ---- periodic work --------------------------------------------------

    /// One pass of the periodic work: expire sessions, create the offsets
    /// topic when due, and check leader imbalance when due.
    pub async fn tick(
        &self,
        self_arc: &Arc<Term>,
        imbalance_due: bool,
    ) -> Result<(), ServiceError> {
        self.ensure_fresh()?;
        let expired: Vec<i32> = {
            let sessions = self.sessions();
            sessions
                .iter()
                .filter(|(_, s)| s.last_seen.elapsed() >= self.config.session_timeout)
                .map(|(id, _)| *id)
                .collect()
        };
        for broker in expired {
            self.fence_broker(broker).await?;
        }
        self.maybe_create_offsets_topic().await?;
        self.drive_reassignment().await?;
        self_arc.auto_balance().await?;
        if imbalance_due {
            self.auto_preferred_election().await?;
        }
        Ok(())
    }

    async fn maybe_create_offsets_topic(&self) -> Result<(), ServiceError> {
        let (exists, live) = {
            let state = self.state();
            (
                state.topics.contains_key(OFFSETS_TOPIC),
                state.live_brokers().len() as i32,
            )
        };
        if exists || live == 0 {
            return Ok(());
        }
        // Wait for the full replication factor, or for a settle period after
        // the first broker went live (a lone broker still gets the topic).
        let settled = self
            .first_live_broker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() >= self.config.session_timeout / 3);
        let rf = self.config.offsets_replication_factor.min(live);
        if live < self.config.offsets_replication_factor && !settled {
            return Ok(());
        }
        let req = CreateTopic {
            name: OFFSETS_TOPIC.into(),
            partitions: self.config.offsets_partitions,
            replication_factor: rf,
            assignments: Vec::new(),
            // Committed offsets are acknowledged with acks=all; with three
            // or more replicas, two must have them (any one agent can go).
            configs: [
                ("cleanup.policy".to_string(), "compact".to_string()),
                (
                    "min.insync.replicas".to_string(),
                    if rf >= 3 { "2" } else { "1" }.to_string(),
                ),
            ]
            .into_iter()
            .collect(),
            request_id: "ballast-offsets-topic".into(),
            internal: true,
        };
        self.create_topic(req, false).await?;
        Ok(())
    }

    /// Kafka's automatic rebalance: for each broker whose leader imbalance
    /// passes the threshold, move back the partitions it prefers to lead
    /// (where it is live and in sync).
    async fn auto_preferred_election(&self) -> Result<(), ServiceError> {
        let imbalanced = {
            let state = self.state();
            let views = state.topics.values().flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| ballast_assignor::PartitionView {
                        replicas: &p.replicas,
                        leader: (p.leader >= 0).then_some(p.leader),
                    })
            });
            let loads = ballast_assignor::broker_loads(&[], views);
            ballast_assignor::leader_imbalance(&loads, self.config.leader_imbalance_percentage)
        };
        if !imbalanced.is_empty() {
            let (elected, _, _) = self.elect_preferred_where(None, Some(&imbalanced)).await?;
            if elected > 0 {
                tracing::info!(elected, brokers = ?imbalanced, "automatic preferred-leader election");
            }
        }
        Ok(())
    }

    /// Count the elections and ISR changes a persisted write made, and log
    /// each changed partition (its topic, partition, leader, epochs and
    /// ISR, with the coordinator epoch that wrote it): the audit trail of
    /// every reconcile pass.
    fn count_changes(
        &self,
        before: &[Option<PartitionState>],
        changes: &BTreeMap<(String, i32), PartitionState>,
    ) {
        for (b, ((topic, partition), after)) in before.iter().zip(changes) {
            if let Some(b) = b {
                self.metrics.partition_changed(b, after);
                if b.leader != after.leader || b.isr != after.isr || b.replicas != after.replicas {
                    tracing::info!(
                        coordinator_epoch = self.epoch,
                        %topic,
                        partition,
                        broker = after.leader,
                        leader_epoch = after.leader_epoch,
                        partition_epoch = after.partition_epoch,
                        isr = ?after.isr,
                        replicas = ?after.replicas,
                        previous_leader = b.leader,
                        "partition changed"
                    );
                }
            }
        }
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// Give every live broker a fresh session (after a stall of our own).
    pub fn grant_grace(&self) {
        let now = Instant::now();
        for s in self.sessions().values_mut() {
            s.last_seen = now;
        }
    }

    /// Stop acting at once (evidence of a newer coordinator).
    pub fn step_down(&self) {
        self.health.mark_lost();
    }

    /// When the term started.
    pub fn started(&self) -> Instant {
        self.started
    }
}
