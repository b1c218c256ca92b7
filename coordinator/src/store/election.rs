//! Leader election with a fencing token, written once on top of
//! [`MetadataStore`] (etcd's own recipe from its `concurrency` package, so it
//! behaves the same on etcd and on the local store).
//!
//! A candidate creates `<name>/<lease id in hex>` attached to its lease; the
//! candidate whose key has the lowest create revision leads. The others wait,
//! through a watch (never by polling), until every key created before theirs
//! is gone: resigned, or deleted with an expired or revoked lease. The
//! leader's create revision is its fencing token: the coordinator epoch.
//!
//! This module owns the election keys under `<name>/`. It must never write
//! anything else, and never decide what a leader does: it only tells who
//! leads, and gives the leader the compare that fences its writes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{
    Compare, CompareOp, KeyValue, MetadataStore, Reflector, StoreError, StoreResult, Txn, TxnOp,
    TxnOpResult, WatchEvent, WatchMessage,
};

/// The key a candidate holds in an election, and once it leads, its
/// leadership.
///
/// # Fencing rule
///
/// `create_revision` is the leader's epoch (the coordinator epoch). It is
/// unique and grows with every new leadership, because a new candidate key
/// can only be created at a later revision. Every write a leader makes must
/// carry [`LeaderKey::fence`] among its compares: the compare holds only while
/// this exact key (same create revision) still exists. Once the leader's lease
/// expires or it resigns, the key is gone, the compare fails and the write is
/// refused, so a deposed leader that has not noticed yet cannot change
/// anything. Whatever the leader sends to others (pushes to agents) carries
/// `create_revision`, and receivers refuse anything lower than the highest
/// epoch they have seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderKey {
    /// The election's name (the key prefix without the trailing `/`).
    pub name: Vec<u8>,
    /// The candidate's key: `<name>/<lease hex>`.
    pub key: Vec<u8>,
    /// Create revision of `key`: the fencing token (epoch).
    pub create_revision: i64,
    /// The lease the key is attached to; keep it alive to stay leader.
    pub lease: i64,
}

impl LeaderKey {
    /// The epoch this leadership fences with (= `create_revision`).
    pub fn epoch(&self) -> i64 {
        self.create_revision
    }

    /// The compare to add to every write made as leader: true only while this
    /// leadership's key still exists with the same create revision.
    pub fn fence(&self) -> Compare {
        Compare::create_revision(self.key.clone(), CompareOp::Equal, self.create_revision)
    }
}

fn election_prefix(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

fn candidate_key(name: &[u8], lease: i64) -> Vec<u8> {
    let mut key = election_prefix(name);
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

/// Campaigns in election `name` with `value` (e.g. the candidate's address)
/// and returns once this candidate leads.
///
/// The candidate key is attached to `lease`; keep the lease alive, here and
/// while leading. Campaigning again with the same lease reuses the existing
/// key (updating its value). Fails with [`StoreError::LeaseNotFound`] if the
/// lease expires (or the key is deleted) while waiting. Dropping the future
/// leaves the key in place: call [`resign`] or revoke the lease to withdraw.
pub async fn campaign(
    store: &dyn MetadataStore,
    name: &[u8],
    value: Vec<u8>,
    lease: i64,
) -> StoreResult<LeaderKey> {
    let key = candidate_key(name, lease);
    let response = store
        .txn(
            Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put_with_lease(key.clone(), value.clone(), lease)])
                .or_else([TxnOp::get(key.clone())]),
        )
        .await?;
    let create_revision = if response.succeeded {
        response.revision
    } else {
        let existing = match response.results.into_iter().next() {
            Some(TxnOpResult::Get(kvs)) => kvs.into_iter().next(),
            _ => None,
        }
        .ok_or_else(|| StoreError::Internal("election: candidate key vanished".into()))?;
        if existing.value != value {
            let updated = store
                .txn(
                    Txn::new()
                        .when([Compare::create_revision(
                            key.clone(),
                            CompareOp::Equal,
                            existing.create_revision,
                        )])
                        .and_then([TxnOp::put_with_lease(key.clone(), value, lease)]),
                )
                .await?;
            if !updated.succeeded {
                return Err(StoreError::LeaseNotFound(lease));
            }
        }
        existing.create_revision
    };
    let leader_key = LeaderKey {
        name: name.to_vec(),
        key,
        create_revision,
        lease,
    };
    wait_for_turn(store, &leader_key).await?;
    Ok(leader_key)
}

/// Waits until no candidate key older than ours remains.
async fn wait_for_turn(store: &dyn MetadataStore, ours: &LeaderKey) -> StoreResult<()> {
    let prefix = election_prefix(&ours.name);
    loop {
        let range = store.range_prefix(&prefix).await?;
        let still_ours = range
            .kvs
            .iter()
            .any(|kv| kv.key == ours.key && kv.create_revision == ours.create_revision);
        if !still_ours {
            return Err(StoreError::LeaseNotFound(ours.lease));
        }
        if !range
            .kvs
            .iter()
            .any(|kv| kv.create_revision < ours.create_revision)
        {
            return Ok(());
        }
        // Wait for a deletion under the prefix, then look again.
        let mut watch = store.watch_prefix(&prefix, range.revision + 1).await?;
        loop {
            match watch.recv().await {
                Some(WatchMessage::Events { events, .. }) => {
                    if events
                        .iter()
                        .any(|event| matches!(event, WatchEvent::Delete { .. }))
                    {
                        break;
                    }
                }
                Some(WatchMessage::Compacted { .. }) => break,
                None => {
                    // The watch broke (store unreachable); pace the re-check.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    break;
                }
            }
        }
    }
}

/// The current leader of election `name`: the candidate key with the lowest
/// create revision, `None` when nobody campaigns.
pub async fn leader(store: &dyn MetadataStore, name: &[u8]) -> StoreResult<Option<KeyValue>> {
    let range = store.range_prefix(&election_prefix(name)).await?;
    Ok(range.kvs.into_iter().min_by_key(|kv| kv.create_revision))
}

/// Gives up leadership (or candidacy): deletes the key if it is still this
/// leadership's. Returns whether it was (false: already deposed).
pub async fn resign(store: &dyn MetadataStore, leader_key: &LeaderKey) -> StoreResult<bool> {
    let response = store
        .txn(
            Txn::new()
                .when([leader_key.fence()])
                .and_then([TxnOp::delete(leader_key.key.clone())]),
        )
        .await?;
    Ok(response.succeeded)
}

/// Changes the value the leader advertises (e.g. its address), fenced.
/// Returns false when deposed (nothing written).
pub async fn proclaim(
    store: &dyn MetadataStore,
    leader_key: &LeaderKey,
    value: Vec<u8>,
) -> StoreResult<bool> {
    let response = store
        .txn(
            Txn::new()
                .when([leader_key.fence()])
                .and_then([TxnOp::put_with_lease(
                    leader_key.key.clone(),
                    value,
                    leader_key.lease,
                )]),
        )
        .await?;
    Ok(response.succeeded)
}

/// Follows election `name`: the receiver gets the current leader (`None`:
/// nobody) at once, then every change of leader or of its value. Used by
/// standbys to learn the active coordinator's address. The background task
/// retries through store outages and ends when the receiver is dropped.
pub fn observe(store: Arc<dyn MetadataStore>, name: &[u8]) -> mpsc::Receiver<Option<KeyValue>> {
    let (tx, rx) = mpsc::channel(16);
    let mut reflector = Reflector::new(store, election_prefix(name));
    tokio::spawn(async move {
        let mut last: Option<Option<KeyValue>> = None;
        let mut backoff = Duration::from_millis(50);
        loop {
            let step = tokio::select! {
                step = reflector.next() => step,
                () = tx.closed() => return,
            };
            if let Err(e) = step {
                tracing::debug!(error = %e, "election observer: store error, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
            backoff = Duration::from_millis(50);
            let current = reflector
                .snapshot()
                .values()
                .min_by_key(|kv| kv.create_revision)
                .cloned();
            if last.as_ref() != Some(&current) {
                if tx.send(current.clone()).await.is_err() {
                    return;
                }
                last = Some(current);
            }
        }
    });
    rx
}
