//! The idempotent producer against real agents: a produce request sent
//! again (a retry after a lost answer) is answered with the first answer's
//! offsets and written once, on the leader and, after the leader is killed
//! with SIGKILL, on the follower that took over; the Rust producer stamps
//! its batches so that this holds for its own retries. A request that
//! overtook an earlier one of its producer is held for it, not refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ballast_proto::v1::data_client::DataClient;
use ballast_proto::v1::{self as pb};
use ballast_tests::cluster::{
    channel, describe_partition, find_active, on_active, start_agent, start_coordinator,
    wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::eventually;

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "once";

fn batch(values: &[&str], producer_id: i64, epoch: i16, seq: i32) -> Vec<u8> {
    let mut b = ballast_record::BatchBuilder::new();
    for v in values {
        b.append(1_000, None, Some(v.as_bytes()), &[]).unwrap();
    }
    let mut bytes = b.build();
    ballast_record::set_producer(&mut bytes, producer_id, epoch, seq).unwrap();
    bytes
}

fn produce(records: &[u8]) -> pb::ProduceRequest {
    pb::ProduceRequest {
        acks: -1,
        timeout_ms: 5000,
        partitions: vec![pb::ProducePartition {
            topic: TOPIC.into(),
            partition: 0,
            records: records.to_vec(),
        }],
    }
}

/// Sends `records` to `address` until the answer is not a redirect or a
/// wait (each attempt is itself a retry of the same batch); returns it.
async fn send(address: &str, records: &[u8]) -> pb::ProducePartitionResult {
    let data = DataClient::new(channel(address));
    eventually("a produce answer", WAIT, || {
        let mut data = data.clone();
        let req = produce(records);
        async move {
            let r = data.produce(req).await.ok()?.into_inner().results.remove(0);
            let transient = [
                pb::ErrorCode::NotLeader,
                pb::ErrorCode::UnknownTopicOrPartition,
                pb::ErrorCode::NotEnoughReplicas,
                pb::ErrorCode::NotEnoughReplicasAfterAppend,
                pb::ErrorCode::RequestTimedOut,
                pb::ErrorCode::FencedLeaderEpoch,
            ];
            (!transient.iter().any(|c| *c as i32 == r.error)).then_some(r)
        }
    })
    .await
}

/// Every record value in the partition, read from `address`.
async fn values(address: &str) -> Vec<String> {
    let mut data = DataClient::new(channel(address));
    let r = data
        .fetch(pb::FetchRequest {
            replica_id: -1,
            max_wait_ms: 100,
            max_bytes: 1 << 20,
            partitions: vec![pb::FetchPartition {
                topic: TOPIC.into(),
                partition: 0,
                fetch_offset: 0,
                current_leader_epoch: -1,
                last_fetched_epoch: -1,
                partition_max_bytes: 1 << 20,
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .remove(0);
    let mut out = Vec::new();
    for b in ballast_record::split_batches(&r.records) {
        let (_, b) = b.unwrap();
        let (_, records) = ballast_record::Batch::decode(b).unwrap();
        out.extend(records.map(|r| String::from_utf8(r.unwrap().value.unwrap().to_vec()).unwrap()));
    }
    out
}

/// Creates the one-partition topic on `replicas`.
async fn create_topic(addrs: &[String], replicas: Vec<i32>) {
    on_active(addrs, WAIT, |mut c| {
        let replicas = replicas.clone();
        async move {
            c.create_topic(pb::CreateTopicRequest {
                name: TOPIC.into(),
                assignments: vec![pb::ReplicaList { replicas }],
                request_id: "once-1".into(),
                ..Default::default()
            })
            .await
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_overtook_an_earlier_one_waits_for_it() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator(&etcd.endpoints(), "idem");
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dirs = tempfile::tempdir().unwrap();
    let one = start_agent(&addrs[0], 1, &dirs.path().join("b1"), &[]);
    wait_live_brokers(&addrs, 1, WAIT).await;
    create_topic(&addrs, vec![1]).await;
    let first = send(one.address(), &batch(&["a0", "a1", "a2"], 11, 0, 0)).await;
    assert_eq!((first.error, first.base_offset), (0, 0), "{first:?}");

    // Sequences 5 (sent first) and 3-4 (sent 50 ms later): the leader holds
    // the later batch for the earlier one instead of refusing it.
    let address = one.address().to_owned();
    let later = tokio::spawn(async move { send(&address, &batch(&["c"], 11, 0, 5)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let earlier = send(one.address(), &batch(&["b0", "b1"], 11, 0, 3)).await;
    let later = later.await.unwrap();
    assert_eq!((earlier.error, earlier.base_offset), (0, 3), "{earlier:?}");
    assert_eq!((later.error, later.base_offset), (0, 5), "{later:?}");
    assert_eq!(
        values(one.address()).await,
        ["a0", "a1", "a2", "b0", "b1", "c"]
    );
    // A gap nothing fills is still refused, after the wait.
    let gap = send(one.address(), &batch(&["d"], 11, 0, 9)).await;
    assert_eq!(
        gap.error,
        pb::ErrorCode::OutOfOrderSequenceNumber as i32,
        "{gap:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_is_written_once_across_a_leader_failover() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator(&etcd.endpoints(), "idem");
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dirs = tempfile::tempdir().unwrap();
    let mut one = start_agent(&addrs[0], 1, &dirs.path().join("b1"), &[]);
    let two = start_agent(&addrs[0], 2, &dirs.path().join("b2"), &[]);
    wait_live_brokers(&addrs, 2, WAIT).await;
    create_topic(&addrs, vec![1, 2]).await;

    let a = batch(&["a0", "a1", "a2"], 11, 0, 0);
    let first = send(one.address(), &a).await;
    assert_eq!((first.error, first.base_offset), (0, 0), "{first:?}");
    let again = send(one.address(), &a).await;
    assert_eq!((again.error, again.base_offset), (0, 0), "{again:?}");
    assert_eq!(values(one.address()).await, ["a0", "a1", "a2"]);

    // The leader dies; broker 2 (in the ISR) takes over and recognises the
    // batch it replicated.
    one.kill();
    eventually("broker 2 leads", WAIT, || async {
        (describe_partition(&addrs, TOPIC, 0, WAIT).await.leader == 2).then_some(())
    })
    .await;
    let again = send(two.address(), &a).await;
    assert_eq!((again.error, again.base_offset), (0, 0), "{again:?}");
    let b = batch(&["b0", "b1"], 11, 0, 3);
    let next = send(two.address(), &b).await;
    assert_eq!((next.error, next.base_offset), (0, 3), "{next:?}");
    let again = send(two.address(), &b).await;
    assert_eq!((again.error, again.base_offset), (0, 3), "{again:?}");
    // A batch after a gap is refused, by name.
    let gap = send(two.address(), &batch(&["c"], 11, 0, 9)).await;
    assert_eq!(
        gap.error,
        pb::ErrorCode::OutOfOrderSequenceNumber as i32,
        "{gap:?}"
    );
    assert_eq!(values(two.address()).await, ["a0", "a1", "a2", "b0", "b1"]);
}
