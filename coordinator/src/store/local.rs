//! [`LocalStore`]: the embedded metadata store for `ballast dev` and
//! one-machine clusters.
//!
//! Owns a redb database file and emulates etcd's data model on it, so that
//! the coordinator cannot tell the two apart (the contract suite checks it):
//! one revision counter starting at 1; one new revision per transaction that
//! changes something; create/mod revision and version per key; transactions
//! with etcd's compares, validation and limits; leases whose expiry deletes
//! their keys in one revision; prefix watches that replay history from any
//! revision not compacted away, and report [`WatchMessage::Compacted`] for
//! older ones.
//!
//! Tables: `kv` (key -> encoded [`KeyValue`]), `history` (revision -> encoded
//! events of that revision, the watch history), `meta` (revision, compact
//! revision, next lease id), `leases` (id -> TTL in seconds). Every write is
//! one redb write transaction committed with immediate durability, so a crash
//! loses nothing that was acknowledged. Lease deadlines live in memory only:
//! after a restart every lease gets a fresh full TTL, as etcd does when a new
//! leader takes over.
//!
//! It must never be opened by two processes at once (redb's file lock refuses
//! it), never hand-roll a file format (redb does the storage; [`codec`]
//! only encodes records), and never block the async runtime: every redb call
//! runs on the blocking pool.
//!
//! [`codec`]: super::codec

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redb::{
    Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use tokio::sync::{mpsc, watch};

use super::codec::{decode_events, decode_kv, encode_events, encode_kv};
use super::{
    KeyValue, Lease, MetadataStore, Range, StoreError, StoreResult, Txn, TxnOp, TxnOpResult,
    TxnResponse, WatchEvent, WatchMessage, WatchStream, check_key, ttl_seconds,
};

const KV: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("kv");
const HISTORY: TableDefinition<'static, i64, &[u8]> = TableDefinition::new("history");
const META: TableDefinition<'static, &str, i64> = TableDefinition::new("meta");
const LEASES: TableDefinition<'static, i64, i64> = TableDefinition::new("leases");

const META_REVISION: &str = "revision";
const META_COMPACT_REVISION: &str = "compact_revision";
const META_NEXT_LEASE_ID: &str = "next_lease_id";

/// How often the background task looks for expired leases. etcd checks every
/// 500 ms; checking more often only makes expiry more punctual.
const REAP_INTERVAL: Duration = Duration::from_millis(100);
/// Revisions a watcher reads from history per batch ...
const HISTORY_BATCH: usize = 256;
/// ... and bytes, so a lagging watcher never holds much in memory.
const HISTORY_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// How long `open` waits for a previous handle on the same file (being dropped
/// by a background task) to release redb's lock.
const OPEN_LOCK_WAIT: Duration = Duration::from_secs(2);

/// The embedded, persistent, single-process [`MetadataStore`].
///
/// Cloning is cheap and shares the database; the file is closed when the last
/// clone is dropped (watch streams then end). Must be used inside a Tokio
/// runtime (lease expiry and watches run as tasks).
#[derive(Clone)]
pub struct LocalStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    /// Serializes writers; holds what the database implies but cannot index
    /// cheaply (lease deadlines and attachments). Never held across `.await`.
    state: Mutex<State>,
    /// The last committed revision; watchers wait on it.
    revision_tx: watch::Sender<i64>,
    location: String,
}

struct State {
    revision: i64,
    compact_revision: i64,
    next_lease_id: i64,
    leases: HashMap<i64, LeaseState>,
}

struct LeaseState {
    ttl_secs: i64,
    deadline: Instant,
    keys: BTreeSet<Vec<u8>>,
}

/// A key moving between leases (0 = none) in a committed write.
struct LeaseChange {
    key: Vec<u8>,
    from: i64,
    to: i64,
}

impl fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalStore")
            .field("location", &self.inner.location)
            .finish_non_exhaustive()
    }
}

/// Maps any redb error to [`StoreError::Internal`] with what was being done.
trait OrInternal<T> {
    fn internal(self, doing: &str) -> StoreResult<T>;
}

impl<T, E: fmt::Display> OrInternal<T> for Result<T, E> {
    fn internal(self, doing: &str) -> StoreResult<T> {
        self.map_err(|e| StoreError::Internal(format!("local store: {doing}: {e}")))
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> StoreResult<T> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Internal(format!("local store task failed: {e}")))?
}

impl LocalStore {
    /// Opens (or creates) the database file at `path`. Refuses a file another
    /// process has open.
    pub async fn open(path: impl AsRef<Path>) -> StoreResult<LocalStore> {
        let path: PathBuf = path.as_ref().to_path_buf();
        let location = path.display().to_string();
        let db = blocking(move || open_file(&path)).await?;
        Self::start(db, location).await
    }

    /// An in-memory store with the same semantics, gone when dropped (unit
    /// tests, throwaway clusters).
    pub async fn open_temporary() -> StoreResult<LocalStore> {
        let db = blocking(|| {
            redb::Builder::new()
                .create_with_backend(redb::backends::InMemoryBackend::new())
                .internal("create in-memory database")
        })
        .await?;
        Self::start(db, "<memory>".into()).await
    }

    async fn start(db: Database, location: String) -> StoreResult<LocalStore> {
        let inner = blocking(move || Inner::load(db, location)).await?;
        let inner = Arc::new(inner);
        tokio::spawn(reap_loop(Arc::downgrade(&inner)));
        Ok(LocalStore { inner })
    }
}

fn open_file(path: &Path) -> StoreResult<Database> {
    let started = Instant::now();
    loop {
        match Database::create(path) {
            Ok(db) => return Ok(db),
            Err(DatabaseError::DatabaseAlreadyOpen) if started.elapsed() < OPEN_LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                return Err(StoreError::Internal(format!(
                    "local store: open {}: {e}",
                    path.display()
                )));
            }
        }
    }
}

fn get_kv(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> StoreResult<Option<KeyValue>> {
    match table.get(key).internal("read key")? {
        None => Ok(None),
        Some(guard) => decode_kv(key, guard.value()).map(Some),
    }
}

fn scan_prefix(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    prefix: &[u8],
) -> StoreResult<Vec<KeyValue>> {
    let mut kvs = Vec::new();
    for entry in table.range::<&[u8]>(prefix..).internal("range keys")? {
        let (key, value) = entry.internal("range keys")?;
        let key = key.value();
        if !key.starts_with(prefix) {
            break;
        }
        kvs.push(decode_kv(key, value.value())?);
    }
    Ok(kvs)
}

fn meta_get(table: &impl ReadableTable<&'static str, i64>, name: &str) -> StoreResult<Option<i64>> {
    Ok(table.get(name).internal("read meta")?.map(|v| v.value()))
}

/// What a watcher read from history.
enum HistoryRead {
    Compacted(i64),
    Revisions {
        revisions: Vec<(i64, Vec<WatchEvent>)>,
        next: i64,
    },
}

impl Inner {
    /// Creates missing tables, reads the counters and rebuilds the lease
    /// index (every lease gets a fresh full TTL).
    fn load(db: Database, location: String) -> StoreResult<Inner> {
        let wtx = db.begin_write().internal("begin write")?;
        let (revision, compact_revision, next_lease_id, leases) = {
            let mut meta = wtx.open_table(META).internal("open meta")?;
            let revision = meta_get(&meta, META_REVISION)?.unwrap_or(1);
            let compact_revision = meta_get(&meta, META_COMPACT_REVISION)?.unwrap_or(0);
            let next_lease_id = meta_get(&meta, META_NEXT_LEASE_ID)?.unwrap_or(1);
            meta.insert(META_REVISION, revision)
                .internal("write meta")?;
            wtx.open_table(HISTORY).internal("open history")?;
            let now = Instant::now();
            let mut leases = HashMap::new();
            for entry in wtx
                .open_table(LEASES)
                .internal("open leases")?
                .iter()
                .internal("read leases")?
            {
                let (id, ttl) = entry.internal("read leases")?;
                let ttl_secs = ttl.value().max(1);
                leases.insert(
                    id.value(),
                    LeaseState {
                        ttl_secs,
                        deadline: now + Duration::from_secs(ttl_secs.unsigned_abs()),
                        keys: BTreeSet::new(),
                    },
                );
            }
            let kv = wtx.open_table(KV).internal("open kv")?;
            for kv in scan_prefix(&kv, b"")? {
                if let Some(lease) = leases.get_mut(&kv.lease) {
                    lease.keys.insert(kv.key);
                }
            }
            (revision, compact_revision, next_lease_id, leases)
        };
        wtx.commit().internal("commit")?;
        let (revision_tx, _) = watch::channel(revision);
        Ok(Inner {
            db,
            state: Mutex::new(State {
                revision,
                compact_revision,
                next_lease_id,
                leases,
            }),
            revision_tx,
            location,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // State changes only after a successful commit, so a panicking writer
        // leaves it consistent with the database.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn begin_write(&self) -> StoreResult<WriteTransaction> {
        self.db.begin_write().internal("begin write")
    }

    fn get(&self, key: &[u8]) -> StoreResult<Option<KeyValue>> {
        check_key(key)?;
        let rtx = self.db.begin_read().internal("begin read")?;
        let kv = rtx.open_table(KV).internal("open kv")?;
        get_kv(&kv, key)
    }

    fn range_prefix(&self, prefix: &[u8]) -> StoreResult<Range> {
        let rtx = self.db.begin_read().internal("begin read")?;
        let meta = rtx.open_table(META).internal("open meta")?;
        let revision = meta_get(&meta, META_REVISION)?.unwrap_or(1);
        let kv = rtx.open_table(KV).internal("open kv")?;
        Ok(Range {
            kvs: scan_prefix(&kv, prefix)?,
            revision,
        })
    }

    /// Writes the events of a new revision to history, moves the revision
    /// counter and commits.
    fn commit_revision(
        &self,
        wtx: WriteTransaction,
        revision: i64,
        events: &[WatchEvent],
    ) -> StoreResult<()> {
        {
            let mut history = wtx.open_table(HISTORY).internal("open history")?;
            history
                .insert(revision, encode_events(events).as_slice())
                .internal("write history")?;
            let mut meta = wtx.open_table(META).internal("open meta")?;
            meta.insert(META_REVISION, revision)
                .internal("write meta")?;
        }
        wtx.commit().internal("commit")
    }

    /// After a commit: moves the revision and the lease index, wakes watchers.
    fn applied(&self, st: &mut State, revision: i64, changes: Vec<LeaseChange>) {
        for change in changes {
            if let Some(lease) = st.leases.get_mut(&change.from) {
                lease.keys.remove(&change.key);
            }
            if let Some(lease) = st.leases.get_mut(&change.to) {
                lease.keys.insert(change.key);
            }
        }
        st.revision = revision;
        self.revision_tx.send_replace(revision);
    }

    fn txn(&self, txn: &Txn) -> StoreResult<TxnResponse> {
        txn.validate()?;
        let mut st = self.lock();
        self.reap_expired(&mut st)?;
        let revision = st.revision + 1;
        let wtx = self.begin_write()?;
        let mut changes = Vec::new();
        let mut events = Vec::new();
        let mut results = Vec::new();
        let succeeded;
        {
            let mut kv = wtx.open_table(KV).internal("open kv")?;
            let mut holds = true;
            for compare in &txn.compares {
                if !compare.evaluate(get_kv(&kv, &compare.key)?.as_ref()) {
                    holds = false;
                    break;
                }
            }
            succeeded = holds;
            let ops = if succeeded {
                &txn.success
            } else {
                &txn.failure
            };
            for op in ops {
                if let TxnOp::Put { lease, .. } = op
                    && *lease != 0
                    && !st.leases.contains_key(lease)
                {
                    return Err(StoreError::LeaseNotFound(*lease));
                }
            }
            for op in ops {
                match op {
                    TxnOp::Put { key, value, lease } => {
                        let old = get_kv(&kv, key)?;
                        let new = KeyValue {
                            key: key.clone(),
                            value: value.clone(),
                            create_revision: old.as_ref().map_or(revision, |o| o.create_revision),
                            mod_revision: revision,
                            version: old.as_ref().map_or(1, |o| o.version + 1),
                            lease: *lease,
                        };
                        kv.insert(key.as_slice(), encode_kv(&new).as_slice())
                            .internal("write key")?;
                        changes.push(LeaseChange {
                            key: key.clone(),
                            from: old.map_or(0, |o| o.lease),
                            to: *lease,
                        });
                        events.push(WatchEvent::Put(new));
                        results.push(TxnOpResult::Put);
                    }
                    TxnOp::Delete { key } => {
                        let old = match kv.remove(key.as_slice()).internal("delete key")? {
                            Some(guard) => Some(decode_kv(key, guard.value())?),
                            None => None,
                        };
                        let deleted = match old {
                            Some(old) => {
                                changes.push(LeaseChange {
                                    key: key.clone(),
                                    from: old.lease,
                                    to: 0,
                                });
                                events.push(WatchEvent::Delete {
                                    key: key.clone(),
                                    mod_revision: revision,
                                });
                                1
                            }
                            None => 0,
                        };
                        results.push(TxnOpResult::Delete { deleted });
                    }
                    TxnOp::DeletePrefix { prefix } => {
                        let victims = scan_prefix(&kv, prefix)?;
                        let deleted = i64::try_from(victims.len()).unwrap_or(i64::MAX);
                        for old in victims {
                            kv.remove(old.key.as_slice()).internal("delete key")?;
                            changes.push(LeaseChange {
                                key: old.key.clone(),
                                from: old.lease,
                                to: 0,
                            });
                            events.push(WatchEvent::Delete {
                                key: old.key,
                                mod_revision: revision,
                            });
                        }
                        results.push(TxnOpResult::Delete { deleted });
                    }
                    TxnOp::Get { key } => {
                        results.push(TxnOpResult::Get(get_kv(&kv, key)?.into_iter().collect()));
                    }
                    TxnOp::GetPrefix { prefix } => {
                        results.push(TxnOpResult::Get(scan_prefix(&kv, prefix)?));
                    }
                }
            }
        }
        if events.is_empty() {
            wtx.abort().internal("abort")?;
            return Ok(TxnResponse {
                succeeded,
                revision: st.revision,
                results,
            });
        }
        self.commit_revision(wtx, revision, &events)?;
        self.applied(&mut st, revision, changes);
        Ok(TxnResponse {
            succeeded,
            revision,
            results,
        })
    }

    fn lease_grant(&self, ttl: Duration) -> StoreResult<Lease> {
        let ttl_secs = ttl_seconds(ttl);
        let mut st = self.lock();
        let id = st.next_lease_id;
        let wtx = self.begin_write()?;
        {
            let mut leases = wtx.open_table(LEASES).internal("open leases")?;
            leases.insert(id, ttl_secs).internal("write lease")?;
            let mut meta = wtx.open_table(META).internal("open meta")?;
            meta.insert(META_NEXT_LEASE_ID, id + 1)
                .internal("write meta")?;
        }
        wtx.commit().internal("commit")?;
        st.next_lease_id = id + 1;
        let ttl = Duration::from_secs(ttl_secs.unsigned_abs());
        st.leases.insert(
            id,
            LeaseState {
                ttl_secs,
                deadline: Instant::now() + ttl,
                keys: BTreeSet::new(),
            },
        );
        Ok(Lease { id, ttl })
    }

    fn lease_keep_alive(&self, id: i64) -> StoreResult<Duration> {
        let mut st = self.lock();
        let now = Instant::now();
        let Some(lease) = st.leases.get_mut(&id) else {
            return Err(StoreError::LeaseNotFound(id));
        };
        if lease.deadline <= now {
            // Expired but not reaped yet: etcd waits for the revocation and
            // then answers not found.
            self.revoke(&mut st, id)?;
            return Err(StoreError::LeaseNotFound(id));
        }
        let ttl = Duration::from_secs(lease.ttl_secs.unsigned_abs());
        lease.deadline = now + ttl;
        Ok(ttl)
    }

    /// Deletes the lease and its keys (one revision if it had keys).
    fn revoke(&self, st: &mut State, id: i64) -> StoreResult<()> {
        let Some(lease) = st.leases.get(&id) else {
            return Err(StoreError::LeaseNotFound(id));
        };
        let revision = st.revision + 1;
        let wtx = self.begin_write()?;
        let mut events = Vec::new();
        {
            let mut kv = wtx.open_table(KV).internal("open kv")?;
            for key in &lease.keys {
                if kv.remove(key.as_slice()).internal("delete key")?.is_some() {
                    events.push(WatchEvent::Delete {
                        key: key.clone(),
                        mod_revision: revision,
                    });
                }
            }
            let mut leases = wtx.open_table(LEASES).internal("open leases")?;
            leases.remove(id).internal("delete lease")?;
        }
        if events.is_empty() {
            wtx.commit().internal("commit")?;
        } else {
            self.commit_revision(wtx, revision, &events)?;
        }
        st.leases.remove(&id);
        if !events.is_empty() {
            self.applied(st, revision, Vec::new());
        }
        Ok(())
    }

    /// Whether a lease has expired. Called from the async reaper, so it never
    /// waits for the lock: a writer holding it reaps expired leases itself.
    fn has_expired(&self) -> bool {
        let now = Instant::now();
        match self.state.try_lock() {
            Ok(st) => st.leases.values().any(|l| l.deadline <= now),
            Err(std::sync::TryLockError::Poisoned(st)) => {
                st.into_inner().leases.values().any(|l| l.deadline <= now)
            }
            Err(std::sync::TryLockError::WouldBlock) => false,
        }
    }

    /// Revokes every expired lease, each in its own revision (as etcd does).
    fn reap_expired(&self, st: &mut State) -> StoreResult<()> {
        let now = Instant::now();
        let expired: Vec<i64> = st
            .leases
            .iter()
            .filter(|(_, lease)| lease.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            tracing::debug!(lease = format!("{id:#x}"), "local store: lease expired");
            self.revoke(st, id)?;
        }
        Ok(())
    }

    fn compact(&self, revision: i64) -> StoreResult<()> {
        let mut st = self.lock();
        if revision <= st.compact_revision {
            return Err(StoreError::Compacted {
                requested: revision,
                compacted: st.compact_revision,
            });
        }
        if revision > st.revision {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current: st.revision,
            });
        }
        let wtx = self.begin_write()?;
        {
            let mut history = wtx.open_table(HISTORY).internal("open history")?;
            let mut old = Vec::new();
            for entry in history.range(..revision).internal("read history")? {
                old.push(entry.internal("read history")?.0.value());
            }
            for rev in old {
                history.remove(rev).internal("compact history")?;
            }
            // etcd keeps, for every key, its latest version at the compact
            // revision but drops tombstones: a watch from exactly `revision`
            // sees its puts and not its deletes. Do the same.
            let kept = match history.get(revision).internal("read history")? {
                Some(bytes) => Some(decode_events(revision, bytes.value())?),
                None => None,
            };
            if let Some(mut events) = kept {
                events.retain(|event| matches!(event, WatchEvent::Put(_)));
                if events.is_empty() {
                    history.remove(revision).internal("compact history")?;
                } else {
                    history
                        .insert(revision, encode_events(&events).as_slice())
                        .internal("compact history")?;
                }
            }
            let mut meta = wtx.open_table(META).internal("open meta")?;
            meta.insert(META_COMPACT_REVISION, revision)
                .internal("write meta")?;
        }
        wtx.commit().internal("commit")?;
        st.compact_revision = revision;
        Ok(())
    }

    /// Reads up to [`HISTORY_BATCH`] revisions from `from` on, keeping the
    /// events under `prefix` (a revision with none is returned empty, so the
    /// watcher advances past it).
    fn read_history(&self, prefix: &[u8], from: i64) -> StoreResult<HistoryRead> {
        let rtx = self.db.begin_read().internal("begin read")?;
        let meta = rtx.open_table(META).internal("open meta")?;
        let compact = meta_get(&meta, META_COMPACT_REVISION)?.unwrap_or(0);
        if from < compact {
            return Ok(HistoryRead::Compacted(compact));
        }
        let history = rtx.open_table(HISTORY).internal("open history")?;
        let mut revisions = Vec::new();
        let mut next = from;
        let mut read_bytes = 0;
        for entry in history
            .range(from..)
            .internal("read history")?
            .take(HISTORY_BATCH)
        {
            if read_bytes >= HISTORY_BATCH_BYTES {
                break;
            }
            let (revision, bytes) = entry.internal("read history")?;
            let revision = revision.value();
            read_bytes += bytes.value().len();
            let mut events = decode_events(revision, bytes.value())?;
            events.retain(|event| event.key().starts_with(prefix));
            revisions.push((revision, events));
            next = revision + 1;
        }
        Ok(HistoryRead::Revisions { revisions, next })
    }
}

/// Revokes expired leases in the background until the store is dropped.
async fn reap_loop(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if !inner.has_expired() {
            continue;
        }
        let result = blocking(move || {
            let mut st = inner.lock();
            inner.reap_expired(&mut st)
        })
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "local store: revoking expired leases failed");
        }
    }
}

/// Feeds one watch stream from history, then live, until the consumer drops
/// the stream, the store is dropped or the watcher falls behind compaction.
async fn run_watcher(
    inner: Weak<Inner>,
    prefix: Vec<u8>,
    mut next: i64,
    tx: mpsc::Sender<WatchMessage>,
    mut revision_rx: watch::Receiver<i64>,
) {
    loop {
        // Caught up: wait for a newer revision (or for the end).
        while *revision_rx.borrow_and_update() < next {
            tokio::select! {
                changed = revision_rx.changed() => {
                    if changed.is_err() {
                        return; // store dropped
                    }
                }
                () = tx.closed() => return,
            }
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let read_prefix = prefix.clone();
        let read = blocking(move || strong.read_history(&read_prefix, next)).await;
        match read {
            Err(e) => {
                tracing::error!(error = %e, "local store: watch history read failed, ending watch");
                return;
            }
            Ok(HistoryRead::Compacted(compact_revision)) => {
                let _ = tx.send(WatchMessage::Compacted { compact_revision }).await;
                return;
            }
            Ok(HistoryRead::Revisions {
                revisions,
                next: after,
            }) => {
                for (revision, events) in revisions {
                    if events.is_empty() {
                        continue;
                    }
                    if tx
                        .send(WatchMessage::Events { revision, events })
                        .await
                        .is_err()
                    {
                        return; // consumer gone
                    }
                }
                next = after;
            }
        }
    }
}

#[async_trait]
impl MetadataStore for LocalStore {
    async fn get(&self, key: &[u8]) -> StoreResult<Option<KeyValue>> {
        let inner = self.inner.clone();
        let key = key.to_vec();
        blocking(move || inner.get(&key)).await
    }

    async fn range_prefix(&self, prefix: &[u8]) -> StoreResult<Range> {
        let inner = self.inner.clone();
        let prefix = prefix.to_vec();
        blocking(move || inner.range_prefix(&prefix)).await
    }

    async fn txn(&self, txn: Txn) -> StoreResult<TxnResponse> {
        let inner = self.inner.clone();
        blocking(move || inner.txn(&txn)).await
    }

    async fn lease_grant(&self, ttl: Duration) -> StoreResult<Lease> {
        let inner = self.inner.clone();
        blocking(move || inner.lease_grant(ttl)).await
    }

    async fn lease_keep_alive(&self, id: i64) -> StoreResult<Duration> {
        let inner = self.inner.clone();
        blocking(move || inner.lease_keep_alive(id)).await
    }

    async fn lease_revoke(&self, id: i64) -> StoreResult<()> {
        let inner = self.inner.clone();
        blocking(move || {
            let mut st = inner.lock();
            inner.revoke(&mut st, id)
        })
        .await
    }

    async fn watch_prefix(&self, prefix: &[u8], start_revision: i64) -> StoreResult<WatchStream> {
        let revision_rx = self.inner.revision_tx.subscribe();
        let next = if start_revision <= 0 {
            *revision_rx.borrow() + 1
        } else {
            start_revision
        };
        let (tx, stream) = WatchStream::channel();
        tokio::spawn(run_watcher(
            Arc::downgrade(&self.inner),
            prefix.to_vec(),
            next,
            tx,
            revision_rx,
        ));
        Ok(stream)
    }

    async fn compact(&self, revision: i64) -> StoreResult<()> {
        let inner = self.inner.clone();
        blocking(move || inner.compact(revision)).await
    }

    async fn current_revision(&self) -> StoreResult<i64> {
        Ok(*self.inner.revision_tx.borrow())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Compare;

    #[tokio::test]
    async fn revisions_start_at_one_and_move_once_per_write_txn() {
        let store = LocalStore::open_temporary().await.unwrap();
        assert_eq!(store.current_revision().await.unwrap(), 1);
        let response = store
            .txn(Txn::new().and_then([TxnOp::put("a", "1"), TxnOp::put("b", "2")]))
            .await
            .unwrap();
        assert_eq!(response.revision, 2);
        let read = store
            .txn(Txn::new().and_then([TxnOp::get("a")]))
            .await
            .unwrap();
        assert_eq!(read.revision, 2);
        let kv = store.get(b"a").await.unwrap().unwrap();
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 2, 1));
    }

    #[tokio::test]
    async fn failed_compare_runs_the_failure_branch() {
        let store = LocalStore::open_temporary().await.unwrap();
        let response = store
            .txn(
                Txn::new()
                    .when([Compare::exists("missing")])
                    .and_then([TxnOp::put("x", "1")])
                    .or_else([TxnOp::get("missing")]),
            )
            .await
            .unwrap();
        assert!(!response.succeeded);
        assert_eq!(response.results, vec![TxnOpResult::Get(Vec::new())]);
        assert_eq!(response.revision, 1);
    }

    #[tokio::test]
    async fn reopen_keeps_data_revision_and_leases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        let lease;
        {
            let store = LocalStore::open(&path).await.unwrap();
            lease = store.lease_grant(Duration::from_secs(30)).await.unwrap();
            store
                .txn(Txn::new().and_then([TxnOp::put_with_lease("l", "v", lease.id)]))
                .await
                .unwrap();
            store.put(b"k", b"v").await.unwrap();
        }
        let store = LocalStore::open(&path).await.unwrap();
        assert_eq!(store.current_revision().await.unwrap(), 3);
        assert_eq!(
            store.lease_keep_alive(lease.id).await.unwrap(),
            Duration::from_secs(30)
        );
        store.lease_revoke(lease.id).await.unwrap();
        assert_eq!(store.get(b"l").await.unwrap(), None);
        assert_eq!(store.current_revision().await.unwrap(), 4);
        let next = store.lease_grant(Duration::from_secs(5)).await.unwrap();
        assert_ne!(next.id, lease.id);
    }
}
