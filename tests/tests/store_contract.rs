#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The metadata store contract: one suite, run against both backends.
//!
//! Every contract check is a generic async function over
//! `Arc<dyn MetadataStore>`; the `contract!` macro generates `local::<name>`
//! (a fresh `LocalStore` in a temp dir) and `etcd::<name>` (a fresh etcd
//! process on free loopback ports) for each. Then come the checks only one
//! backend can have: LocalStore persistence across a drop and a real crash
//! (abort), etcd unavailability and recovery, a 3-member cluster losing a
//! member. Timing is only ever asserted with generous upper bounds.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast_coordinator::store::{
    Compare, CompareOp, EtcdOptions, EtcdStore, KeyValue, LocalStore, MAX_TXN_OPS, MetadataStore,
    Reflector, ReflectorEvent, StoreError, Txn, TxnOp, TxnOpResult, WatchEvent, WatchMessage,
    WatchStream, campaign, leader, observe, resign,
};
use ballast_tests::etcd::{EtcdCluster, EtcdServer};

type Store = Arc<dyn MetadataStore>;

/// Generous bound for anything that should happen "soon".
const PATIENCE: Duration = Duration::from_secs(10);

/// A store and whatever must outlive it (dropped after the store).
struct Harness {
    store: Store,
    _backing: Backing,
}

enum Backing {
    Local(#[allow(dead_code)] tempfile::TempDir),
    Etcd(#[allow(dead_code)] EtcdServer),
}

async fn local_harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("meta.redb"))
        .await
        .unwrap();
    Harness {
        store: Arc::new(store),
        _backing: Backing::Local(dir),
    }
}

async fn etcd_harness() -> Harness {
    let server = EtcdServer::start().unwrap();
    let store = EtcdStore::connect(&server.endpoints(), EtcdOptions::default())
        .await
        .unwrap();
    Harness {
        store: Arc::new(store),
        _backing: Backing::Etcd(server),
    }
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let harness = super::local_harness().await;
                    super::$name(harness.store.clone()).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let harness = super::etcd_harness().await;
                    super::$name(harness.store.clone()).await;
                }
            )*
        }
    };
}

contract!(
    put_get_and_range_in_key_order,
    revision_arithmetic,
    compares_follow_etcd,
    txn_branches_and_reads_see_earlier_writes,
    delete_prefix_counts,
    duplicate_keys_refused,
    limits_refused,
    leases_grant_keep_alive_revoke,
    lease_expiry_deletes_keys,
    keep_alive_keeps_keys,
    watch_replays_history_then_live,
    watch_from_compacted_revision,
    reflector_stays_consistent_and_resets_after_compaction,
    election_second_waits_until_first_resigns,
    election_revoked_lease_hands_over,
);

// ---- helpers ----

async fn recv(watch: &mut WatchStream) -> WatchMessage {
    tokio::time::timeout(PATIENCE, watch.recv())
        .await
        .expect("a watch message within the patience bound")
        .expect("the watch stream ended unexpectedly")
}

async fn recv_events(watch: &mut WatchStream) -> (i64, Vec<WatchEvent>) {
    match recv(watch).await {
        WatchMessage::Events { revision, events } => (revision, events),
        other => panic!("expected events, got {other:?}"),
    }
}

async fn holds(store: &Store, compare: Compare) -> bool {
    store
        .txn(Txn::new().when([compare]))
        .await
        .unwrap()
        .succeeded
}

async fn keys(store: &Store, prefix: &str) -> Vec<String> {
    store
        .range_prefix(prefix.as_bytes())
        .await
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| String::from_utf8(kv.key).unwrap())
        .collect()
}

fn put_of(event: &WatchEvent) -> &KeyValue {
    match event {
        WatchEvent::Put(kv) => kv,
        other => panic!("expected a put event, got {other:?}"),
    }
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {PATIENCE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---- the contract ----

async fn put_get_and_range_in_key_order(store: Store) {
    for (key, value) in [
        ("p/b", "2"),
        ("p/a", "1"),
        ("p/ab", "3"),
        ("q/x", "out"),
        ("p", "no-slash"),
    ] {
        store.put(key.as_bytes(), value.as_bytes()).await.unwrap();
    }
    assert_eq!(keys(&store, "p/").await, ["p/a", "p/ab", "p/b"]);
    assert_eq!(keys(&store, "").await.len(), 5);
    assert!(keys(&store, "zzz").await.is_empty());

    let range = store.range_prefix(b"p/").await.unwrap();
    assert_eq!(range.revision, store.current_revision().await.unwrap());

    let a = store.get(b"p/a").await.unwrap().unwrap();
    assert_eq!(a.value, b"1");
    assert_eq!(a.version, 1);
    assert_eq!(a.create_revision, a.mod_revision);
    assert_eq!(a.lease, 0);

    let revision = store.put(b"p/a", b"1bis").await.unwrap();
    let a2 = store.get(b"p/a").await.unwrap().unwrap();
    assert_eq!(a2.value, b"1bis");
    assert_eq!(a2.version, 2);
    assert_eq!(a2.create_revision, a.create_revision);
    assert_eq!(a2.mod_revision, revision);

    assert_eq!(store.get(b"p/missing").await.unwrap(), None);
    assert!(matches!(
        store.get(b"").await.unwrap_err(),
        StoreError::InvalidArgument(_)
    ));
    assert!(matches!(
        store.put(b"", b"v").await.unwrap_err(),
        StoreError::InvalidArgument(_)
    ));
    assert_eq!(store.delete(b"p/a").await.unwrap(), 1);
    assert_eq!(store.get(b"p/a").await.unwrap(), None);
    // Re-created: a new life, version 1 again.
    let revision = store.put(b"p/a", b"new").await.unwrap();
    let a3 = store.get(b"p/a").await.unwrap().unwrap();
    assert_eq!((a3.version, a3.create_revision), (1, revision));
}

async fn revision_arithmetic(store: Store) {
    assert_eq!(
        store.current_revision().await.unwrap(),
        1,
        "a fresh store is at 1"
    );
    let write = store
        .txn(Txn::new().and_then([
            TxnOp::put("r/a", "1"),
            TxnOp::put("r/b", "2"),
            TxnOp::put("r/c", "3"),
        ]))
        .await
        .unwrap();
    assert_eq!(write.revision, 2, "one revision for the whole txn");
    for kv in store.range_prefix(b"r/").await.unwrap().kvs {
        assert_eq!(kv.mod_revision, 2);
    }

    let read = store
        .txn(Txn::new().and_then([TxnOp::get("r/a"), TxnOp::get_prefix("r/")]))
        .await
        .unwrap();
    assert_eq!(read.revision, 2, "reads do not move the revision");
    let failed = store
        .txn(
            Txn::new()
                .when([Compare::absent("r/a")])
                .and_then([TxnOp::put("r/x", "1")]),
        )
        .await
        .unwrap();
    assert!(!failed.succeeded);
    assert_eq!(failed.revision, 2, "a failed compare without writes");
    assert_eq!(store.delete(b"r/missing").await.unwrap(), 0);
    assert_eq!(
        store.current_revision().await.unwrap(),
        2,
        "deleting nothing"
    );
    assert_eq!(store.delete(b"r/c").await.unwrap(), 1);
    assert_eq!(store.current_revision().await.unwrap(), 3);

    let lease = store.lease_grant(Duration::from_secs(30)).await.unwrap();
    store.lease_keep_alive(lease.id).await.unwrap();
    assert_eq!(
        store.current_revision().await.unwrap(),
        3,
        "lease grant and renewal"
    );
    store
        .txn(Txn::new().and_then([
            TxnOp::put_with_lease("r/l1", "1", lease.id),
            TxnOp::put_with_lease("r/l2", "2", lease.id),
        ]))
        .await
        .unwrap();
    assert_eq!(store.current_revision().await.unwrap(), 4);
    store.lease_revoke(lease.id).await.unwrap();
    assert_eq!(
        store.current_revision().await.unwrap(),
        5,
        "revoking deletes both keys in one revision"
    );
    let empty = store.lease_grant(Duration::from_secs(30)).await.unwrap();
    store.lease_revoke(empty.id).await.unwrap();
    assert_eq!(
        store.current_revision().await.unwrap(),
        5,
        "revoking a lease without keys"
    );
}

async fn compares_follow_etcd(store: Store) {
    let created = store.put(b"k", b"m").await.unwrap();
    let modified = store.put(b"k", b"m").await.unwrap();
    use CompareOp::{Equal, Greater, Less, NotEqual};
    let cases = [
        (Compare::version("k", Equal, 2), true),
        (Compare::version("k", Greater, 1), true),
        (Compare::version("k", Less, 2), false),
        (Compare::version("k", NotEqual, 2), false),
        (Compare::exists("k"), true),
        (Compare::absent("k"), false),
        (Compare::create_revision("k", Equal, created), true),
        (Compare::create_revision("k", Less, modified), true),
        (Compare::mod_revision("k", Equal, modified), true),
        (Compare::mod_revision("k", Less, modified), false),
        (Compare::mod_revision("k", Greater, created), true),
        (Compare::value("k", Equal, "m"), true),
        (Compare::value("k", Greater, "l"), true),
        (Compare::value("k", Less, "n"), true),
        (Compare::value("k", Less, "m"), false),
        (Compare::value("k", NotEqual, "m"), false),
        // A missing key has version, create and mod revision 0 ...
        (Compare::absent("missing"), true),
        (Compare::exists("missing"), false),
        (Compare::create_revision("missing", Equal, 0), true),
        (Compare::mod_revision("missing", Less, 1), true),
        // ... and every value compare against it is false.
        (Compare::value("missing", Equal, ""), false),
        (Compare::value("missing", NotEqual, "x"), false),
        (Compare::value("missing", Less, "x"), false),
    ];
    for (compare, expected) in cases {
        assert_eq!(
            holds(&store, compare.clone()).await,
            expected,
            "{compare:?}"
        );
    }
    // All compares must hold.
    let both = store
        .txn(Txn::new().when([Compare::exists("k"), Compare::exists("missing")]))
        .await
        .unwrap();
    assert!(!both.succeeded);
}

async fn txn_branches_and_reads_see_earlier_writes(store: Store) {
    let create = || {
        Txn::new()
            .when([Compare::absent("t/k")])
            .and_then([TxnOp::put("t/k", "1"), TxnOp::get("t/k")])
            .or_else([TxnOp::get("t/k"), TxnOp::get("t/other")])
    };
    let first = store.txn(create()).await.unwrap();
    assert!(first.succeeded);
    assert_eq!(first.results.len(), 2);
    assert_eq!(first.results[0], TxnOpResult::Put);
    let TxnOpResult::Get(seen) = &first.results[1] else {
        panic!("expected a get result, got {:?}", first.results[1]);
    };
    assert_eq!(seen.len(), 1, "a read after a put in the same txn sees it");
    assert_eq!(seen[0].value, b"1");
    assert_eq!(seen[0].mod_revision, first.revision);

    let second = store.txn(create()).await.unwrap();
    assert!(!second.succeeded);
    assert_eq!(second.revision, first.revision);
    assert_eq!(
        second.results,
        vec![
            TxnOpResult::Get(vec![seen[0].clone()]),
            TxnOpResult::Get(Vec::new())
        ]
    );
}

async fn delete_prefix_counts(store: Store) {
    for key in ["d/1", "d/2", "d/3", "e/1", "d"] {
        store.put(key.as_bytes(), b"v").await.unwrap();
    }
    let before = store.current_revision().await.unwrap();
    let deleted = store
        .txn(Txn::new().and_then([TxnOp::delete_prefix("d/")]))
        .await
        .unwrap();
    assert_eq!(deleted.results, vec![TxnOpResult::Delete { deleted: 3 }]);
    assert_eq!(deleted.revision, before + 1);
    assert!(keys(&store, "d/").await.is_empty());
    assert_eq!(keys(&store, "").await, ["d", "e/1"]);

    let again = store
        .txn(Txn::new().and_then([TxnOp::delete_prefix("d/")]))
        .await
        .unwrap();
    assert_eq!(again.results, vec![TxnOpResult::Delete { deleted: 0 }]);
    assert_eq!(again.revision, before + 1, "deleting nothing");

    let mixed = store
        .txn(Txn::new().and_then([TxnOp::delete_prefix("e/"), TxnOp::get_prefix("e/")]))
        .await
        .unwrap();
    assert_eq!(
        mixed.results,
        vec![
            TxnOpResult::Delete { deleted: 1 },
            TxnOpResult::Get(Vec::new())
        ]
    );
}

async fn duplicate_keys_refused(store: Store) {
    store.put(b"a", b"0").await.unwrap();
    let before = store.current_revision().await.unwrap();
    let refused = [
        Txn::new().and_then([TxnOp::put("a", "1"), TxnOp::put("a", "2")]),
        Txn::new().and_then([TxnOp::put("a", "1"), TxnOp::delete("a")]),
        Txn::new().and_then([TxnOp::delete_prefix("a"), TxnOp::put("ab", "1")]),
        // Both branches are checked, whichever applies.
        Txn::new()
            .when([Compare::exists("a")])
            .and_then([TxnOp::put("b", "1")])
            .or_else([TxnOp::put("c", "1"), TxnOp::put("c", "2")]),
    ];
    for txn in refused {
        let error = store.txn(txn.clone()).await.unwrap_err();
        assert!(
            matches!(error, StoreError::DuplicateKey { .. }),
            "{txn:?}: {error:?}"
        );
        assert!(!error.is_retryable());
    }
    assert_eq!(
        store.current_revision().await.unwrap(),
        before,
        "nothing applied"
    );
    assert_eq!(store.get(b"b").await.unwrap(), None);

    // Deletes may overlap, and a put in the other branch is no duplicate.
    let fine = store
        .txn(
            Txn::new()
                .and_then([
                    TxnOp::delete("a"),
                    TxnOp::delete("a"),
                    TxnOp::delete_prefix(""),
                ])
                .or_else([TxnOp::put("a", "x")]),
        )
        .await
        .unwrap();
    assert_eq!(
        fine.results,
        vec![
            TxnOpResult::Delete { deleted: 1 },
            TxnOpResult::Delete { deleted: 0 },
            TxnOpResult::Delete { deleted: 0 }
        ]
    );
}

async fn limits_refused(store: Store) {
    let before = store.current_revision().await.unwrap();
    let too_many =
        Txn::new().and_then((0..=MAX_TXN_OPS).map(|i| TxnOp::put(format!("n/{i}"), "v")));
    assert_eq!(
        store.txn(too_many).await.unwrap_err(),
        StoreError::TooManyOps { ops: 129, max: 128 }
    );
    let too_many_compares =
        Txn::new().when((0..=MAX_TXN_OPS).map(|i| Compare::absent(format!("n/{i}"))));
    assert!(matches!(
        store.txn(too_many_compares).await.unwrap_err(),
        StoreError::TooManyOps { ops: 129, .. }
    ));
    let too_large = Txn::new().and_then([TxnOp::put("big", vec![7u8; 1_600 * 1024])]);
    assert!(matches!(
        store.txn(too_large).await.unwrap_err(),
        StoreError::RequestTooLarge { max: 1_572_864, .. }
    ));
    assert_eq!(store.current_revision().await.unwrap(), before);

    let just_enough =
        Txn::new().and_then((0..MAX_TXN_OPS).map(|i| TxnOp::put(format!("n/{i}"), "v")));
    let applied = store.txn(just_enough).await.unwrap();
    assert_eq!(applied.revision, before + 1);
    assert_eq!(keys(&store, "n/").await.len(), MAX_TXN_OPS);

    let big = vec![42u8; 1024 * 1024];
    store.put(b"big", &big).await.unwrap();
    assert_eq!(store.get(b"big").await.unwrap().unwrap().value, big);
}

async fn leases_grant_keep_alive_revoke(store: Store) {
    let lease = store.lease_grant(Duration::from_secs(10)).await.unwrap();
    assert_ne!(lease.id, 0);
    assert_eq!(lease.ttl, Duration::from_secs(10));
    let rounded = store
        .lease_grant(Duration::from_millis(1500))
        .await
        .unwrap();
    assert_eq!(
        rounded.ttl,
        Duration::from_secs(2),
        "TTLs round up to seconds"
    );
    assert_ne!(rounded.id, lease.id);

    store
        .txn(Txn::new().and_then([
            TxnOp::put_with_lease("l/a", "1", lease.id),
            TxnOp::put_with_lease("l/b", "2", lease.id),
            TxnOp::put("l/c", "3"),
        ]))
        .await
        .unwrap();
    assert_eq!(store.get(b"l/a").await.unwrap().unwrap().lease, lease.id);
    assert_eq!(
        store.lease_keep_alive(lease.id).await.unwrap(),
        Duration::from_secs(10)
    );

    // A put without lease detaches a key from its lease.
    store
        .txn(Txn::new().and_then([TxnOp::put_with_lease("l/d", "4", rounded.id)]))
        .await
        .unwrap();
    store.put(b"l/d", b"4").await.unwrap();

    let before = store.current_revision().await.unwrap();
    store.lease_revoke(lease.id).await.unwrap();
    assert_eq!(store.current_revision().await.unwrap(), before + 1);
    assert_eq!(keys(&store, "l/").await, ["l/c", "l/d"]);
    store.lease_revoke(rounded.id).await.unwrap();
    assert_eq!(keys(&store, "l/").await, ["l/c", "l/d"]);

    assert_eq!(
        store.lease_keep_alive(lease.id).await.unwrap_err(),
        StoreError::LeaseNotFound(lease.id)
    );
    assert_eq!(
        store.lease_revoke(lease.id).await.unwrap_err(),
        StoreError::LeaseNotFound(lease.id)
    );
    let revision = store.current_revision().await.unwrap();
    let error = store
        .txn(Txn::new().and_then([TxnOp::put_with_lease("l/e", "5", lease.id)]))
        .await
        .unwrap_err();
    assert_eq!(error, StoreError::LeaseNotFound(lease.id));
    assert_eq!(store.current_revision().await.unwrap(), revision);
    assert_eq!(store.get(b"l/e").await.unwrap(), None);
}

async fn lease_expiry_deletes_keys(store: Store) {
    let lease = store.lease_grant(Duration::from_secs(1)).await.unwrap();
    assert_eq!(lease.ttl, Duration::from_secs(1));
    let written = store
        .txn(Txn::new().and_then([
            TxnOp::put_with_lease("x/1", "1", lease.id),
            TxnOp::put_with_lease("x/2", "2", lease.id),
        ]))
        .await
        .unwrap();
    let mut watch = store
        .watch_prefix(b"x/", written.revision + 1)
        .await
        .unwrap();
    let (revision, events) = recv_events(&mut watch).await;
    assert_eq!(
        revision,
        written.revision + 1,
        "expiry is the next revision"
    );
    assert_eq!(
        events,
        vec![
            WatchEvent::Delete {
                key: b"x/1".to_vec(),
                mod_revision: revision
            },
            WatchEvent::Delete {
                key: b"x/2".to_vec(),
                mod_revision: revision
            },
        ]
    );
    assert!(keys(&store, "x/").await.is_empty());
    assert_eq!(
        store.lease_keep_alive(lease.id).await.unwrap_err(),
        StoreError::LeaseNotFound(lease.id)
    );
}

async fn keep_alive_keeps_keys(store: Store) {
    let lease = store.lease_grant(Duration::from_secs(2)).await.unwrap();
    store
        .txn(Txn::new().and_then([TxnOp::put_with_lease("ka/1", "1", lease.id)]))
        .await
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        store.lease_keep_alive(lease.id).await.unwrap();
    }
    assert!(
        store.get(b"ka/1").await.unwrap().is_some(),
        "renewed past its TTL"
    );
}

async fn watch_replays_history_then_live(store: Store) {
    let r1 = store.put(b"w/a", b"1").await.unwrap();
    let _outside = store.put(b"v/x", b"outside").await.unwrap();
    let r3 = store
        .txn(Txn::new().and_then([TxnOp::put("w/b", "2"), TxnOp::put("w/c", "3")]))
        .await
        .unwrap()
        .revision;
    let r4 = store
        .txn(Txn::new().and_then([TxnOp::delete("w/a")]))
        .await
        .unwrap()
        .revision;
    let r5 = store.put(b"w/b", b"22").await.unwrap();

    let mut from_r3 = store.watch_prefix(b"w/", r3).await.unwrap();
    let (revision, events) = recv_events(&mut from_r3).await;
    assert_eq!(revision, r3);
    let puts: Vec<_> = events.iter().map(put_of).collect();
    assert_eq!(
        puts.iter().map(|kv| kv.key.as_slice()).collect::<Vec<_>>(),
        [b"w/b", b"w/c"]
    );
    assert_eq!(puts[0].mod_revision, r3);
    assert_eq!(
        recv_events(&mut from_r3).await,
        (
            r4,
            vec![WatchEvent::Delete {
                key: b"w/a".to_vec(),
                mod_revision: r4
            }]
        )
    );
    let (revision, events) = recv_events(&mut from_r3).await;
    assert_eq!(revision, r5);
    assert_eq!(put_of(&events[0]).value, b"22");
    assert_eq!(put_of(&events[0]).version, 2);

    // The revision outside the prefix is skipped, not delivered empty.
    let mut from_r1 = store.watch_prefix(b"w/", r1).await.unwrap();
    assert_eq!(recv_events(&mut from_r1).await.0, r1);
    assert_eq!(recv_events(&mut from_r1).await.0, r3);

    // From "now" (0): only what comes next.
    let mut live = store.watch_prefix(b"w/", 0).await.unwrap();
    let r6 = store.put(b"w/d", b"4").await.unwrap();
    assert_eq!(recv_events(&mut live).await.0, r6);
    assert_eq!(recv_events(&mut from_r3).await.0, r6, "history, then live");
    assert_eq!(recv_events(&mut from_r1).await.0, r4);
}

async fn watch_from_compacted_revision(store: Store) {
    let mut revisions = Vec::new();
    for i in 0..5 {
        revisions.push(store.put(format!("c/{i}").as_bytes(), b"v").await.unwrap());
    }
    let compact_at = revisions[2];
    store.compact(compact_at).await.unwrap();

    let mut old = store.watch_prefix(b"c/", revisions[1]).await.unwrap();
    assert_eq!(
        recv(&mut old).await,
        WatchMessage::Compacted {
            compact_revision: compact_at
        }
    );
    let end = tokio::time::timeout(PATIENCE, old.recv()).await.unwrap();
    assert_eq!(end, None, "the stream ends after Compacted");

    let mut at = store.watch_prefix(b"c/", compact_at).await.unwrap();
    assert_eq!(recv_events(&mut at).await.0, compact_at);
    assert_eq!(recv_events(&mut at).await.0, revisions[3]);

    assert!(matches!(
        store.compact(compact_at).await.unwrap_err(),
        StoreError::Compacted { requested, .. } if requested == compact_at
    ));
    let current = store.current_revision().await.unwrap();
    assert_eq!(
        store.compact(current + 10).await.unwrap_err(),
        StoreError::FutureRevision {
            requested: current + 10,
            current
        }
    );
    // Data is untouched by compaction.
    assert_eq!(keys(&store, "c/").await.len(), 5);

    // etcd drops tombstones at compaction: a watch from exactly the compact
    // revision does not see that revision's deletes.
    store.put(b"t/x", b"v").await.unwrap();
    let deleted_at = store
        .txn(Txn::new().and_then([TxnOp::delete("t/x")]))
        .await
        .unwrap()
        .revision;
    let after = store.put(b"t/y", b"v").await.unwrap();
    store.compact(deleted_at).await.unwrap();
    let mut at_delete = store.watch_prefix(b"t/", deleted_at).await.unwrap();
    assert_eq!(recv_events(&mut at_delete).await.0, after);
}

fn as_map(kvs: Vec<KeyValue>) -> BTreeMap<Vec<u8>, KeyValue> {
    kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect()
}

async fn reflector_stays_consistent_and_resets_after_compaction(store: Store) {
    store.put(b"r/a", b"1").await.unwrap();
    store.put(b"r/b", b"2").await.unwrap();

    // Live: a Reset first, then events, always equal to a fresh range.
    let mut live = Reflector::new(store.clone(), "r/");
    let ReflectorEvent::Reset { kvs, revision } = live.next().await.unwrap() else {
        panic!("the first event must be a reset");
    };
    assert_eq!(kvs.len(), 2);
    let stale_snapshot = (kvs, revision);

    store.put(b"r/c", b"3").await.unwrap();
    store.put(b"other/x", b"outside").await.unwrap();
    store.delete(b"r/a").await.unwrap();
    let last = store.put(b"r/b", b"22").await.unwrap();
    while live.revision() < last {
        let event = tokio::time::timeout(PATIENCE, live.next())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(event, ReflectorEvent::Events { .. }), "{event:?}");
    }
    assert_eq!(
        live.snapshot(),
        &as_map(store.range_prefix(b"r/").await.unwrap().kvs)
    );

    // Resuming from a snapshot whose revision was compacted: a Reset with
    // the current state, never a silent gap.
    store
        .compact(store.current_revision().await.unwrap())
        .await
        .unwrap();
    let (kvs, revision) = stale_snapshot;
    let mut resumed = Reflector::from_snapshot(store.clone(), "r/", kvs, revision);
    let event = tokio::time::timeout(PATIENCE, resumed.next())
        .await
        .unwrap()
        .unwrap();
    let ReflectorEvent::Reset { kvs, revision } = event else {
        panic!("expected a reset after compaction, got {event:?}");
    };
    let range = store.range_prefix(b"r/").await.unwrap();
    assert_eq!(kvs, range.kvs);
    assert_eq!(revision, range.revision);

    let next = store.put(b"r/d", b"4").await.unwrap();
    let event = tokio::time::timeout(PATIENCE, resumed.next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(event, ReflectorEvent::Events { revision, .. } if revision == next));
    assert_eq!(
        resumed.snapshot(),
        &as_map(store.range_prefix(b"r/").await.unwrap().kvs)
    );
}

const ELECTION: &[u8] = b"test/election";

async fn fenced_write(store: &Store, fence: Compare, value: &str) -> bool {
    store
        .txn(
            Txn::new()
                .when([fence])
                .and_then([TxnOp::put("fenced/data", value)]),
        )
        .await
        .unwrap()
        .succeeded
}

async fn election_second_waits_until_first_resigns(store: Store) {
    let lease_a = store.lease_grant(Duration::from_secs(30)).await.unwrap();
    let lease_b = store.lease_grant(Duration::from_secs(30)).await.unwrap();
    assert_eq!(leader(store.as_ref(), ELECTION).await.unwrap(), None);

    let a = campaign(store.as_ref(), ELECTION, b"A".to_vec(), lease_a.id)
        .await
        .unwrap();
    assert_eq!(a.epoch(), a.create_revision);
    let current = leader(store.as_ref(), ELECTION).await.unwrap().unwrap();
    assert_eq!(
        (current.value.as_slice(), current.create_revision),
        (&b"A"[..], a.create_revision)
    );
    let mut observer = observe(store.clone(), ELECTION);
    let seen = tokio::time::timeout(PATIENCE, observer.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.unwrap().value, b"A");

    let b_store = store.clone();
    let b_campaign = tokio::spawn(async move {
        campaign(b_store.as_ref(), ELECTION, b"B".to_vec(), lease_b.id).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !b_campaign.is_finished(),
        "the second candidate must wait while the first leads"
    );
    assert!(fenced_write(&store, a.fence(), "from A").await);

    assert!(resign(store.as_ref(), &a).await.unwrap());
    let b = tokio::time::timeout(PATIENCE, b_campaign)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(b.epoch() > a.epoch(), "a new leadership has a higher epoch");
    let current = leader(store.as_ref(), ELECTION).await.unwrap().unwrap();
    assert_eq!(current.value, b"B");
    let seen = tokio::time::timeout(PATIENCE, observer.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.unwrap().value, b"B");

    assert!(
        !fenced_write(&store, a.fence(), "from deposed A").await,
        "a deposed leader cannot write"
    );
    assert!(fenced_write(&store, b.fence(), "from B").await);
    assert_eq!(
        store.get(b"fenced/data").await.unwrap().unwrap().value,
        b"from B"
    );
    assert!(
        !resign(store.as_ref(), &a).await.unwrap(),
        "already deposed"
    );

    // Campaigning again with the same lease reuses the key.
    let b_again = campaign(store.as_ref(), ELECTION, b"B".to_vec(), lease_b.id)
        .await
        .unwrap();
    assert_eq!(b_again, b);
}

async fn election_revoked_lease_hands_over(store: Store) {
    let lease_a = store.lease_grant(Duration::from_secs(30)).await.unwrap();
    let lease_b = store.lease_grant(Duration::from_secs(30)).await.unwrap();
    let a = campaign(store.as_ref(), ELECTION, b"A".to_vec(), lease_a.id)
        .await
        .unwrap();
    let b_store = store.clone();
    let b_campaign = tokio::spawn(async move {
        campaign(b_store.as_ref(), ELECTION, b"B".to_vec(), lease_b.id).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b_campaign.is_finished());

    store.lease_revoke(lease_a.id).await.unwrap();
    let b = tokio::time::timeout(PATIENCE, b_campaign)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(b.epoch() > a.epoch());
    assert!(!fenced_write(&store, a.fence(), "from A").await);
    assert!(fenced_write(&store, b.fence(), "from B").await);
    assert_eq!(
        campaign(store.as_ref(), ELECTION, b"A".to_vec(), lease_a.id)
            .await
            .unwrap_err(),
        StoreError::LeaseNotFound(lease_a.id),
        "campaigning on a dead lease"
    );
}

// ---- LocalStore only ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_data_and_revision_survive_drop_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.redb");
    let (revision, lease) = {
        let store = LocalStore::open(&path).await.unwrap();
        for i in 0..10 {
            store.put(format!("s/{i}").as_bytes(), b"v").await.unwrap();
        }
        store.delete(b"s/0").await.unwrap();
        let lease = store.lease_grant(Duration::from_secs(30)).await.unwrap();
        let revision = store
            .txn(Txn::new().and_then([TxnOp::put_with_lease("s/leased", "v", lease.id)]))
            .await
            .unwrap()
            .revision;
        (revision, lease)
        // Dropped here without any shutdown call.
    };
    let store: Store = Arc::new(LocalStore::open(&path).await.unwrap());
    assert_eq!(store.current_revision().await.unwrap(), revision);
    assert_eq!(keys(&store, "s/").await.len(), 10);
    // The history survives too: a watch replays from an old revision.
    let mut watch = store.watch_prefix(b"s/", 2).await.unwrap();
    assert_eq!(recv_events(&mut watch).await.0, 2);
    // Leases come back with a fresh TTL and keep their keys.
    assert_eq!(
        store.lease_keep_alive(lease.id).await.unwrap(),
        Duration::from_secs(30)
    );
    store.lease_revoke(lease.id).await.unwrap();
    assert_eq!(store.get(b"s/leased").await.unwrap(), None);
    let next = store.lease_grant(Duration::from_secs(5)).await.unwrap();
    assert_ne!(next.id, lease.id, "lease ids are never reused");
}

const CRASH_DIR_ENV: &str = "BALLAST_STORE_CRASH_DIR";

/// The child half of `local_survives_a_crash`: does nothing unless that test
/// runs it (with the env var set), then writes and aborts the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_crash_child() {
    let Some(dir) = std::env::var_os(CRASH_DIR_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    let store = LocalStore::open(dir.join("meta.redb")).await.unwrap();
    for i in 0..20 {
        store
            .put(format!("crash/{i}").as_bytes(), b"v")
            .await
            .unwrap();
    }
    let lease = store.lease_grant(Duration::from_secs(60)).await.unwrap();
    store
        .txn(Txn::new().and_then([TxnOp::put_with_lease("crash/leased", "v", lease.id)]))
        .await
        .unwrap();
    std::fs::write(dir.join("lease"), lease.id.to_string()).unwrap();
    std::process::abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "local_crash_child", "--test-threads=1"])
        .env(CRASH_DIR_ENV, dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must have aborted");
    let lease: i64 = std::fs::read_to_string(dir.path().join("lease"))
        .expect("the child wrote its lease id before aborting")
        .parse()
        .unwrap();
    let store: Store = Arc::new(
        LocalStore::open(dir.path().join("meta.redb"))
            .await
            .unwrap(),
    );
    assert_eq!(
        store.current_revision().await.unwrap(),
        22,
        "1 + 20 puts + 1 leased put"
    );
    assert_eq!(keys(&store, "crash/").await.len(), 21);
    store.lease_keep_alive(lease).await.unwrap();
}

// ---- etcd only ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_connect_reports_unavailable_when_nothing_listens() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = EtcdOptions {
        retry_budget: Duration::from_secs(1),
        ..EtcdOptions::default()
    };
    let started = Instant::now();
    let error = EtcdStore::connect(&[format!("http://127.0.0.1:{port}")], options)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(started.elapsed() < PATIENCE);
    let short_keep_alive = EtcdOptions {
        keep_alive_interval: Duration::from_secs(1),
        ..EtcdOptions::default()
    };
    assert!(matches!(
        EtcdStore::connect(&[format!("http://127.0.0.1:{port}")], short_keep_alive).await,
        Err(StoreError::InvalidArgument(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_unavailable_while_stopped_then_recovers() {
    let mut server = EtcdServer::start().unwrap();
    let options = EtcdOptions {
        retry_budget: Duration::from_secs(1),
        request_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(300),
        ..EtcdOptions::default()
    };
    let store: Store = Arc::new(
        EtcdStore::connect(&server.endpoints(), options.clone())
            .await
            .unwrap(),
    );
    store.put(b"a", b"1").await.unwrap();
    let mut reflector = Reflector::new(store.clone(), "a");
    assert!(matches!(
        reflector.next().await.unwrap(),
        ReflectorEvent::Reset { .. }
    ));

    server.stop();
    let started = Instant::now();
    let error = store.get(b"a").await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    assert!(error.is_retryable());
    assert!(
        elapsed < options.retry_budget + options.request_timeout + Duration::from_secs(2),
        "gave up after {elapsed:?}, budget {:?}",
        options.retry_budget
    );

    server.restart().unwrap();
    eventually("reads work again after the restart", || {
        let store = store.clone();
        async move { store.get(b"a").await.is_ok() }
    })
    .await;
    let revision = store.put(b"a", b"2").await.unwrap();
    // The reflector catches up across the outage without a gap.
    let deadline = Instant::now() + PATIENCE;
    while reflector.revision() < revision {
        assert!(Instant::now() < deadline, "reflector did not catch up");
        if tokio::time::timeout(Duration::from_secs(2), reflector.next())
            .await
            .is_err()
        {
            continue;
        }
    }
    assert_eq!(reflector.snapshot()[&b"a".to_vec()].value, b"2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_cluster_keeps_writing_with_a_member_killed() {
    let mut cluster = EtcdCluster::start(3).unwrap();
    let store: Store = Arc::new(
        EtcdStore::connect(&cluster.endpoints(), EtcdOptions::default())
            .await
            .unwrap(),
    );
    store.put(b"before", b"1").await.unwrap();
    cluster.kill_member(0);
    for i in 0..30 {
        let key = format!("k/{i:02}");
        store.put(key.as_bytes(), b"v").await.unwrap();
        assert!(store.get(key.as_bytes()).await.unwrap().is_some());
    }
    assert_eq!(keys(&store, "k/").await.len(), 30);
    cluster.restart_member(0).unwrap();
    store.put(b"after", b"1").await.unwrap();
}
