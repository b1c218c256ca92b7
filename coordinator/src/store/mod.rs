//! The metadata store: the one interface through which the coordinator reads
//! and writes cluster metadata.
//!
//! [`MetadataStore`] holds exactly what the coordinator needs from etcd and no
//! more: get and range by prefix, transactions with compares, leases, prefix
//! watches from a revision, compaction. Two backends implement it with the same
//! semantics, checked by one contract suite (`tests/tests/store_contract.rs`):
//!
//! * [`EtcdStore`] talks to a real etcd (3.4+) through `etcd-client`;
//! * [`LocalStore`] is embedded (redb), single-process, for `ballast dev` and
//!   one-machine use, and emulates etcd's revisions, transactions, leases and
//!   watches exactly.
//!
//! On top of the trait, written once for both backends: leader election with a
//! fencing token ([`election`]) and a prefix mirror that never hides a gap
//! ([`reflector`]).
//!
//! This module owns the types and the validation rules shared by both
//! backends (operation count, request size, duplicate keys), so that both
//! refuse the same requests with the same errors. It must never contain
//! coordinator logic (what keys mean, who may write them): that belongs to the
//! coordinator's services, which only see `Arc<dyn MetadataStore>`.

mod codec;
pub mod election;
pub mod etcd;
pub mod local;
pub mod reflector;

use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use election::{LeaderKey, campaign, leader, observe, proclaim, resign};
pub use etcd::{EtcdOptions, EtcdStore, EtcdTls};
pub use local::LocalStore;
pub use reflector::{Reflector, ReflectorEvent};

/// At most this many compares, and at most this many operations in each branch
/// of a transaction (etcd's `--max-txn-ops` default).
pub const MAX_TXN_OPS: usize = 128;

/// At most this many bytes per request (etcd's `--max-request-bytes` default,
/// 1.5 MiB), as estimated by [`Txn::request_bytes`].
pub const MAX_REQUEST_BYTES: usize = 1_572_864;

/// Result of every store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// Everything a store operation can fail with.
///
/// Only [`StoreError::Unavailable`] is retryable: the store could not be
/// reached within the retry budget, and the operation may or may not have been
/// applied (a write that must happen at most once must therefore be guarded
/// by a compare, as every coordinator write is). Every other variant is a
/// definite answer: the request was refused and nothing was applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store could not be reached (etcd down, no leader, timed out).
    #[error("metadata store unavailable: {0}")]
    Unavailable(String),
    /// The lease does not exist: it expired, was revoked or never existed.
    #[error("lease {0:#x} not found (expired or revoked)")]
    LeaseNotFound(i64),
    /// The revision was compacted away. `compacted` is the store's compact
    /// revision, or 0 when the backend does not report it (etcd's `compact`).
    #[error("revision {requested} has been compacted (compact revision {compacted})")]
    Compacted {
        /// The revision asked for.
        requested: i64,
        /// The store's compact revision, 0 when unknown.
        compacted: i64,
    },
    /// The revision is newer than the store's current revision.
    #[error("revision {requested} is a future revision (current revision {current})")]
    FutureRevision {
        /// The revision asked for.
        requested: i64,
        /// The store's current revision.
        current: i64,
    },
    /// More than [`MAX_TXN_OPS`] compares or operations in one branch.
    #[error("too many operations in txn: {ops} (max {max})")]
    TooManyOps {
        /// The largest of the compare, success and failure counts.
        ops: usize,
        /// The limit.
        max: usize,
    },
    /// The request is larger than [`MAX_REQUEST_BYTES`].
    #[error("request too large: {bytes} bytes (max {max})")]
    RequestTooLarge {
        /// Estimated size of the request.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// One branch of a txn writes the same key twice (two puts, or a put of a
    /// key that a delete in the same branch also covers), as etcd refuses.
    #[error("duplicate key given in txn request: {}", String::from_utf8_lossy(key))]
    DuplicateKey {
        /// The key written twice.
        key: Vec<u8>,
    },
    /// The request is malformed (empty key, bad option).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A bug, a corrupt record or an unexpected answer from the backend.
    #[error("metadata store internal error: {0}")]
    Internal(String),
}

impl StoreError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// One key with its value and etcd's metadata.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
    /// Revision of the write that created the key (since its last deletion).
    pub create_revision: i64,
    /// Revision of the last write to the key.
    pub mod_revision: i64,
    /// Number of writes since creation (1 after the creating put).
    pub version: i64,
    /// Lease the key is attached to, 0 for none.
    pub lease: i64,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &String::from_utf8_lossy(&self.key))
            .field("value", &Bytes(&self.value))
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .field("version", &self.version)
            .field("lease", &self.lease)
            .finish()
    }
}

/// Debug-prints a value as text when it is short UTF-8, else as its length.
struct Bytes<'a>(&'a [u8]);

impl fmt::Debug for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self.0) {
            Ok(s) if s.len() <= 256 => write!(f, "{s:?}"),
            _ => write!(f, "<{} bytes>", self.0.len()),
        }
    }
}

/// Keys under a prefix and the store revision they were read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// Matching keys, sorted by key (bytewise).
    pub kvs: Vec<KeyValue>,
    /// The store's revision when the range was read.
    pub revision: i64,
}

/// How a [`Compare`] relates the key's field to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// field == target
    Equal,
    /// field != target
    NotEqual,
    /// field > target
    Greater,
    /// field < target
    Less,
}

/// Which field of the key a [`Compare`] looks at, and the value to compare
/// against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    /// The key's version (0 when the key is absent).
    Version(i64),
    /// The key's create revision (0 when absent).
    CreateRevision(i64),
    /// The key's mod revision (0 when absent).
    ModRevision(i64),
    /// The key's value, compared bytewise. Always false when the key is
    /// absent, whatever the operator (etcd's rule).
    Value(Vec<u8>),
}

/// A condition of a transaction, evaluated exactly as etcd does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// The key compared.
    pub key: Vec<u8>,
    /// The operator.
    pub op: CompareOp,
    /// The field and the value it is compared with.
    pub target: CompareTarget,
}

impl Compare {
    /// Compares the key's version.
    pub fn version(key: impl Into<Vec<u8>>, op: CompareOp, version: i64) -> Self {
        Compare {
            key: key.into(),
            op,
            target: CompareTarget::Version(version),
        }
    }

    /// Compares the key's create revision.
    pub fn create_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: i64) -> Self {
        Compare {
            key: key.into(),
            op,
            target: CompareTarget::CreateRevision(revision),
        }
    }

    /// Compares the key's mod revision.
    pub fn mod_revision(key: impl Into<Vec<u8>>, op: CompareOp, revision: i64) -> Self {
        Compare {
            key: key.into(),
            op,
            target: CompareTarget::ModRevision(revision),
        }
    }

    /// Compares the key's value (false when the key is absent).
    pub fn value(key: impl Into<Vec<u8>>, op: CompareOp, value: impl Into<Vec<u8>>) -> Self {
        Compare {
            key: key.into(),
            op,
            target: CompareTarget::Value(value.into()),
        }
    }

    /// True when the key does not exist (version == 0).
    pub fn absent(key: impl Into<Vec<u8>>) -> Self {
        Compare::version(key, CompareOp::Equal, 0)
    }

    /// True when the key exists (version > 0).
    pub fn exists(key: impl Into<Vec<u8>>) -> Self {
        Compare::version(key, CompareOp::Greater, 0)
    }

    /// Evaluates the compare against the key's current state (`None` when
    /// absent), with etcd's semantics.
    pub fn evaluate(&self, kv: Option<&KeyValue>) -> bool {
        let ordering = match (&self.target, kv) {
            (CompareTarget::Value(_), None) => return false,
            (CompareTarget::Value(target), Some(kv)) => kv.value.as_slice().cmp(target.as_slice()),
            (CompareTarget::Version(target), kv) => kv.map_or(0, |kv| kv.version).cmp(target),
            (CompareTarget::CreateRevision(target), kv) => {
                kv.map_or(0, |kv| kv.create_revision).cmp(target)
            }
            (CompareTarget::ModRevision(target), kv) => {
                kv.map_or(0, |kv| kv.mod_revision).cmp(target)
            }
        };
        match self.op {
            CompareOp::Equal => ordering == Ordering::Equal,
            CompareOp::NotEqual => ordering != Ordering::Equal,
            CompareOp::Greater => ordering == Ordering::Greater,
            CompareOp::Less => ordering == Ordering::Less,
        }
    }

    fn request_bytes(&self) -> usize {
        let target = match &self.target {
            CompareTarget::Value(value) => value.len(),
            _ => 0,
        };
        self.key.len() + target + OP_OVERHEAD_BYTES
    }
}

/// One operation of a transaction branch. Operations apply in order, and a
/// read sees the writes before it in the same branch (as in etcd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOp {
    /// Sets `key` to `value`, attached to `lease` (0 = none; a put without a
    /// lease detaches the key from any previous lease).
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// The lease, 0 for none.
        lease: i64,
    },
    /// Deletes `key` if present.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Deletes every key starting with `prefix` (the empty prefix is every key).
    DeletePrefix {
        /// The prefix.
        prefix: Vec<u8>,
    },
    /// Reads `key`.
    Get {
        /// The key.
        key: Vec<u8>,
    },
    /// Reads every key starting with `prefix`, sorted by key.
    GetPrefix {
        /// The prefix.
        prefix: Vec<u8>,
    },
}

impl TxnOp {
    /// A put without lease.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        TxnOp::Put {
            key: key.into(),
            value: value.into(),
            lease: 0,
        }
    }

    /// A put attached to `lease`.
    pub fn put_with_lease(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>, lease: i64) -> Self {
        TxnOp::Put {
            key: key.into(),
            value: value.into(),
            lease,
        }
    }

    /// A delete of one key.
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        TxnOp::Delete { key: key.into() }
    }

    /// A delete of every key under `prefix`.
    pub fn delete_prefix(prefix: impl Into<Vec<u8>>) -> Self {
        TxnOp::DeletePrefix {
            prefix: prefix.into(),
        }
    }

    /// A read of one key.
    pub fn get(key: impl Into<Vec<u8>>) -> Self {
        TxnOp::Get { key: key.into() }
    }

    /// A read of every key under `prefix`.
    pub fn get_prefix(prefix: impl Into<Vec<u8>>) -> Self {
        TxnOp::GetPrefix {
            prefix: prefix.into(),
        }
    }

    fn request_bytes(&self) -> usize {
        let payload = match self {
            TxnOp::Put { key, value, .. } => key.len() + value.len(),
            TxnOp::Delete { key } | TxnOp::Get { key } => key.len(),
            TxnOp::DeletePrefix { prefix } | TxnOp::GetPrefix { prefix } => prefix.len(),
        };
        payload + OP_OVERHEAD_BYTES
    }
}

/// Per-operation allowance for protobuf framing in [`Txn::request_bytes`].
const OP_OVERHEAD_BYTES: usize = 16;

/// A transaction: if every compare holds, the success branch applies,
/// otherwise the failure branch; atomically, in one revision if it writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    /// Conditions, all of which must hold for the success branch.
    pub compares: Vec<Compare>,
    /// Operations applied when every compare holds.
    pub success: Vec<TxnOp>,
    /// Operations applied otherwise.
    pub failure: Vec<TxnOp>,
}

impl Txn {
    /// An empty transaction (no compares: the success branch applies).
    pub fn new() -> Self {
        Txn::default()
    }

    /// Adds conditions.
    pub fn when(mut self, compares: impl IntoIterator<Item = Compare>) -> Self {
        self.compares.extend(compares);
        self
    }

    /// Adds operations to the success branch.
    pub fn and_then(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.success.extend(ops);
        self
    }

    /// Adds operations to the failure branch.
    pub fn or_else(mut self, ops: impl IntoIterator<Item = TxnOp>) -> Self {
        self.failure.extend(ops);
        self
    }

    /// Estimated encoded size of the request, compared with
    /// [`MAX_REQUEST_BYTES`]: keys and values plus a small allowance per
    /// compare and operation. etcd measures its own (raft) encoding, a few
    /// bytes per operation larger, so a request within a few hundred bytes of
    /// the limit may pass this check and still be refused by etcd (with the
    /// same error).
    pub fn request_bytes(&self) -> usize {
        self.compares
            .iter()
            .map(Compare::request_bytes)
            .sum::<usize>()
            + self.success.iter().map(TxnOp::request_bytes).sum::<usize>()
            + self.failure.iter().map(TxnOp::request_bytes).sum::<usize>()
    }

    /// Checks etcd's request rules, in etcd's order: operation counts, empty
    /// keys, duplicate keys per branch, request size. Both backends call it
    /// before anything else, so both refuse the same requests the same way.
    pub fn validate(&self) -> StoreResult<()> {
        let ops = self
            .compares
            .len()
            .max(self.success.len())
            .max(self.failure.len());
        if ops > MAX_TXN_OPS {
            return Err(StoreError::TooManyOps {
                ops,
                max: MAX_TXN_OPS,
            });
        }
        for compare in &self.compares {
            check_key(&compare.key)?;
        }
        for op in self.success.iter().chain(&self.failure) {
            match op {
                TxnOp::Put { key, .. } | TxnOp::Delete { key } | TxnOp::Get { key } => {
                    check_key(key)?
                }
                TxnOp::DeletePrefix { .. } | TxnOp::GetPrefix { .. } => {}
            }
        }
        check_duplicates(&self.success)?;
        check_duplicates(&self.failure)?;
        let bytes = self.request_bytes();
        if bytes > MAX_REQUEST_BYTES {
            return Err(StoreError::RequestTooLarge {
                bytes,
                max: MAX_REQUEST_BYTES,
            });
        }
        Ok(())
    }
}

/// etcd refuses an empty key ("key is not provided").
pub(crate) fn check_key(key: &[u8]) -> StoreResult<()> {
    if key.is_empty() {
        Err(StoreError::InvalidArgument("key is not provided".into()))
    } else {
        Ok(())
    }
}

/// etcd's `checkIntervals`: within one branch, no key may be put twice, and no
/// put may touch a key that a delete of the same branch covers. Deletes may
/// overlap each other.
fn check_duplicates(ops: &[TxnOp]) -> StoreResult<()> {
    let mut puts: HashSet<&[u8]> = HashSet::new();
    for op in ops {
        let TxnOp::Put { key, .. } = op else {
            continue;
        };
        let deleted = ops.iter().any(|other| match other {
            TxnOp::Delete { key: deleted } => deleted == key,
            TxnOp::DeletePrefix { prefix } => key.starts_with(prefix),
            _ => false,
        });
        if !puts.insert(key.as_slice()) || deleted {
            return Err(StoreError::DuplicateKey { key: key.clone() });
        }
    }
    Ok(())
}

/// The result of one operation of the branch that applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOpResult {
    /// A put applied.
    Put,
    /// A delete applied; `deleted` keys were removed.
    Delete {
        /// Number of keys removed.
        deleted: i64,
    },
    /// A read: the matching keys, sorted by key.
    Get(Vec<KeyValue>),
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether every compare held (the success branch applied).
    pub succeeded: bool,
    /// The store's revision after the txn: the new revision if it wrote
    /// anything, else the unchanged current revision.
    pub revision: i64,
    /// One result per operation of the branch that applied.
    pub results: Vec<TxnOpResult>,
}

/// A granted lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The lease id (non-zero).
    pub id: i64,
    /// The TTL granted, in whole seconds (the requested TTL rounded up, at
    /// least the store's minimum).
    pub ttl: Duration,
}

/// One change seen by a watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was created or updated; the new state.
    Put(KeyValue),
    /// The key was deleted at `mod_revision`.
    Delete {
        /// The key.
        key: Vec<u8>,
        /// The revision of the deletion.
        mod_revision: i64,
    },
}

impl WatchEvent {
    /// The key the event is about.
    pub fn key(&self) -> &[u8] {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }
}

/// What a [`WatchStream`] delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchMessage {
    /// Every event of one revision under the watched prefix, in order.
    /// Revisions arrive in increasing order, none skipped (a revision with no
    /// event under the prefix is not delivered).
    Events {
        /// The revision the events happened at.
        revision: i64,
        /// The events, in the order the txn applied them.
        events: Vec<WatchEvent>,
    },
    /// The requested start revision (or the revision a slow watcher had
    /// reached) was compacted: events are lost. The stream ends after this
    /// message; the consumer must reload the prefix and watch again from the
    /// reload's revision + 1 (see [`Reflector`]).
    Compacted {
        /// The store's compact revision.
        compact_revision: i64,
    },
}

/// Buffer of a watch stream, in messages.
pub(crate) const WATCH_BUFFER: usize = 64;

/// The receiving end of a prefix watch.
///
/// The stream ends (`recv` returns `None`) after a [`WatchMessage::Compacted`],
/// when the store is dropped, or when the watch broke and could not be resumed
/// within the store's retry budget (etcd unreachable). After an end without
/// `Compacted`, watch again from the last revision seen + 1. Dropping the
/// stream cancels the watch.
#[derive(Debug)]
pub struct WatchStream {
    rx: mpsc::Receiver<WatchMessage>,
}

impl WatchStream {
    pub(crate) fn channel() -> (mpsc::Sender<WatchMessage>, WatchStream) {
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        (tx, WatchStream { rx })
    }

    /// The next message, `None` when the stream has ended.
    pub async fn recv(&mut self) -> Option<WatchMessage> {
        self.rx.recv().await
    }
}

/// The metadata store the coordinator is built on. Implemented by
/// [`EtcdStore`] and [`LocalStore`] with identical semantics (etcd's).
///
/// Revisions: the store has one revision counter, 1 when empty. Every
/// transaction that changes at least one key takes exactly one new revision,
/// shared by all its changes; reads, failed compares without writes, deletes
/// of absent keys and lease grants and renewals do not move it. Revoking (or
/// expiring) a lease deletes its keys in one new revision.
///
/// Durability: a write has been made durable (etcd: committed by a quorum;
/// local: fsynced) when the call returns `Ok`. On `Unavailable` the write may
/// or may not have happened; guard writes with compares.
#[async_trait]
pub trait MetadataStore: Send + Sync + fmt::Debug {
    /// Reads one key ([`StoreError::InvalidArgument`] for the empty key).
    async fn get(&self, key: &[u8]) -> StoreResult<Option<KeyValue>>;

    /// Reads every key starting with `prefix` (sorted by key) with the
    /// revision it was read at. The empty prefix reads everything.
    async fn range_prefix(&self, prefix: &[u8]) -> StoreResult<Range>;

    /// Applies a transaction atomically. Fails without applying anything on
    /// [`StoreError::TooManyOps`], [`StoreError::RequestTooLarge`],
    /// [`StoreError::DuplicateKey`], [`StoreError::InvalidArgument`] or
    /// [`StoreError::LeaseNotFound`] (a put on the applied branch names a
    /// lease that does not exist).
    async fn txn(&self, txn: Txn) -> StoreResult<TxnResponse>;

    /// Grants a lease. The TTL is rounded up to whole seconds, at least 1 s
    /// (etcd raises it further to 1.5 x its election timeout).
    async fn lease_grant(&self, ttl: Duration) -> StoreResult<Lease>;

    /// Renews a lease once, returning the TTL it now has left (the full
    /// granted TTL). [`StoreError::LeaseNotFound`] once it expired or was
    /// revoked. Call it at least every TTL / 3.
    async fn lease_keep_alive(&self, id: i64) -> StoreResult<Duration>;

    /// A second connection to the same store, made on the calling runtime,
    /// for lease renewals: the coordinator renews its leadership lease on a
    /// dedicated thread with its own runtime, so that a busy main runtime
    /// cannot make it miss its renew deadline. `None` (the default): this
    /// store needs no connection of its own (an embedded store) and is used
    /// as it is.
    async fn renewal_connection(&self) -> StoreResult<Option<std::sync::Arc<dyn MetadataStore>>> {
        Ok(None)
    }

    /// Revokes a lease, deleting every key attached to it in one revision.
    async fn lease_revoke(&self, id: i64) -> StoreResult<()>;

    /// Watches every key starting with `prefix`, delivering every revision
    /// from `start_revision` on (0: from the next revision). A
    /// `start_revision` below the compact revision yields one
    /// [`WatchMessage::Compacted`] and the end of the stream: never a silent
    /// gap.
    async fn watch_prefix(&self, prefix: &[u8], start_revision: i64) -> StoreResult<WatchStream>;

    /// Discards the history before `revision` (watches may start at
    /// `revision` or later; as in etcd, a watch from exactly `revision` sees
    /// that revision's puts but not its deletes, whose tombstones compaction
    /// removes). [`StoreError::Compacted`] if `revision` is not
    /// above the current compact revision, [`StoreError::FutureRevision`] if
    /// it is above the current revision.
    async fn compact(&self, revision: i64) -> StoreResult<()>;

    /// The store's current revision.
    async fn current_revision(&self) -> StoreResult<i64>;

    /// Puts one key without lease or condition; returns the new revision.
    async fn put(&self, key: &[u8], value: &[u8]) -> StoreResult<i64> {
        let response = self
            .txn(Txn::new().and_then([TxnOp::put(key, value)]))
            .await?;
        Ok(response.revision)
    }

    /// Deletes one key without condition; returns how many keys were deleted
    /// (0 or 1).
    async fn delete(&self, key: &[u8]) -> StoreResult<i64> {
        let response = self.txn(Txn::new().and_then([TxnOp::delete(key)])).await?;
        match response.results.first() {
            Some(TxnOpResult::Delete { deleted }) => Ok(*deleted),
            other => Err(StoreError::Internal(format!(
                "delete answered with {other:?}"
            ))),
        }
    }
}

/// Rounds a requested lease TTL up to whole seconds, at least 1.
pub(crate) fn ttl_seconds(ttl: Duration) -> i64 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(version: i64, create: i64, modr: i64, value: &[u8]) -> KeyValue {
        KeyValue {
            key: b"k".to_vec(),
            value: value.to_vec(),
            create_revision: create,
            mod_revision: modr,
            version,
            lease: 0,
        }
    }

    #[test]
    fn compares_follow_etcd_on_missing_keys() {
        assert!(Compare::absent("k").evaluate(None));
        assert!(!Compare::exists("k").evaluate(None));
        assert!(Compare::mod_revision("k", CompareOp::Equal, 0).evaluate(None));
        assert!(Compare::create_revision("k", CompareOp::Less, 5).evaluate(None));
        // A value compare against a missing key is false whatever the operator.
        for op in [
            CompareOp::Equal,
            CompareOp::NotEqual,
            CompareOp::Greater,
            CompareOp::Less,
        ] {
            assert!(!Compare::value("k", op, "x").evaluate(None));
        }
    }

    #[test]
    fn compares_on_present_keys() {
        let present = kv(3, 2, 7, b"b");
        assert!(Compare::exists("k").evaluate(Some(&present)));
        assert!(Compare::version("k", CompareOp::Equal, 3).evaluate(Some(&present)));
        assert!(Compare::create_revision("k", CompareOp::Equal, 2).evaluate(Some(&present)));
        assert!(Compare::mod_revision("k", CompareOp::Greater, 6).evaluate(Some(&present)));
        assert!(Compare::value("k", CompareOp::Greater, "a").evaluate(Some(&present)));
        assert!(Compare::value("k", CompareOp::Less, "ba").evaluate(Some(&present)));
        assert!(Compare::value("k", CompareOp::NotEqual, "c").evaluate(Some(&present)));
    }

    #[test]
    fn validation_matches_etcd_rules() {
        let many = Txn::new().and_then((0..129).map(|i| TxnOp::put(format!("k{i}"), "v")));
        assert_eq!(
            many.validate(),
            Err(StoreError::TooManyOps { ops: 129, max: 128 })
        );
        let dup = Txn::new().and_then([TxnOp::put("a", "1"), TxnOp::put("a", "2")]);
        assert!(matches!(
            dup.validate(),
            Err(StoreError::DuplicateKey { .. })
        ));
        let covered = Txn::new().or_else([TxnOp::put("p/a", "1"), TxnOp::delete_prefix("p/")]);
        assert!(matches!(
            covered.validate(),
            Err(StoreError::DuplicateKey { .. })
        ));
        let deletes = Txn::new().and_then([TxnOp::delete("a"), TxnOp::delete_prefix("")]);
        assert_eq!(deletes.validate(), Ok(()));
        let empty = Txn::new().and_then([TxnOp::put("", "1")]);
        assert!(matches!(
            empty.validate(),
            Err(StoreError::InvalidArgument(_))
        ));
        let big = Txn::new().and_then([TxnOp::put("k", vec![0u8; MAX_REQUEST_BYTES])]);
        assert!(matches!(
            big.validate(),
            Err(StoreError::RequestTooLarge { .. })
        ));
    }

    #[test]
    fn ttl_rounds_up_to_whole_seconds() {
        assert_eq!(ttl_seconds(Duration::ZERO), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1)), 1);
        assert_eq!(ttl_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(ttl_seconds(Duration::from_secs(10)), 10);
    }
}
