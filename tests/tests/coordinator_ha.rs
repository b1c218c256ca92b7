//! The coordinator against real etcd, as separate processes: election and
//! failover, exactly-once topic creation across a kill -9, a paused
//! coordinator that must not act when it wakes, the fence refusing a deposed
//! leader's write, etcd restarts and a 3-member etcd losing a member.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use ballast_coordinator::state::WritePlan;
use ballast_coordinator::store::{self, EtcdOptions, EtcdStore, MetadataStore, TxnOp};
use ballast_coordinator::writer::{self, WriteError};
use ballast_proto::v1::{self as pb};
use ballast_tests::cluster::{
    BrokerStandIn, find_active, on_active, start_coordinator, wait_live_brokers,
};
use ballast_tests::etcd::{EtcdCluster, EtcdServer};
use ballast_tests::process::eventually;

const WAIT: Duration = Duration::from_secs(30);

fn create(name: &str, request_id: &str) -> pb::CreateTopicRequest {
    pb::CreateTopicRequest {
        name: name.into(),
        partitions: 6,
        replication_factor: 3,
        request_id: request_id.into(),
        ..Default::default()
    }
}

/// Create through whichever coordinator is active, following failover.
async fn create_on_active(
    addresses: &[String],
    req: pb::CreateTopicRequest,
) -> Result<pb::TopicDescription, tonic::Status> {
    on_active(addresses, WAIT, |mut c| {
        let req = req.clone();
        async move { c.create_topic(req).await }
    })
    .await
    .map(|r| r.into_inner().topic.unwrap_or_default())
}

async fn describe(addresses: &[String]) -> Vec<pb::TopicDescription> {
    on_active(addresses, WAIT, |mut c| async move {
        c.describe_topics(pb::DescribeTopicsRequest::default())
            .await
    })
    .await
    .unwrap()
    .into_inner()
    .topics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_active_coordinator_fails_over_and_creation_completes_once() {
    let etcd = EtcdServer::start().unwrap();
    let mut c1 = start_coordinator(&etcd.endpoints(), "ha1");
    let mut c2 = start_coordinator(&etcd.endpoints(), "ha1");
    let addrs = vec![c1.address().to_owned(), c2.address().to_owned()];
    let (active, epoch1) = eventually("an active coordinator", WAIT, || find_active(&addrs)).await;
    let _brokers: Vec<BrokerStandIn> = (1..=3)
        .map(|id| BrokerStandIn::start(id, "", addrs.clone()))
        .collect();
    wait_live_brokers(&addrs, 3, WAIT).await;

    // The standby refuses and names the active coordinator.
    let standby = if active == addrs[0] {
        &addrs[1]
    } else {
        &addrs[0]
    };
    let refusal = ballast_tests::cluster::admin(standby)
        .list_topics(pb::ListTopicsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refusal.code(), tonic::Code::FailedPrecondition);
    assert_eq!(
        ballast_tests::cluster::active_hint(&refusal).as_deref(),
        Some(active.as_str())
    );

    // Send a creation and kill the active coordinator while it may be in flight.
    let in_flight = tokio::spawn({
        let active = active.clone();
        async move {
            ballast_tests::cluster::admin(&active)
                .create_topic(create("orders", "req-1"))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(5)).await;
    if active == addrs[0] {
        c1.kill();
    } else {
        c2.kill();
    }
    let _ = in_flight.await;

    // The client retries with the same request id until the new active
    // coordinator answers: the topic exists exactly once.
    let created = create_on_active(&addrs, create("orders", "req-1"))
        .await
        .unwrap();
    assert_eq!(created.partitions.len(), 6);
    let again = create_on_active(&addrs, create("orders", "req-1"))
        .await
        .unwrap();
    assert_eq!(
        again.topic_id, created.topic_id,
        "a retry must not create a second topic"
    );
    let other = create_on_active(&addrs, create("orders", "req-2")).await;
    assert_eq!(other.unwrap_err().code(), tonic::Code::AlreadyExists);

    let topics = describe(&addrs).await;
    assert_eq!(topics.iter().filter(|t| t.name == "orders").count(), 1);
    let (_, epoch2) = find_active(&addrs).await.unwrap();
    assert!(
        epoch2 > epoch1,
        "the new term has a higher epoch ({epoch2} > {epoch1})"
    );
    // Placement went through Kafka's algorithm over brokers 1..3: every
    // partition has 3 distinct replicas and the leader is the first.
    for p in &topics
        .iter()
        .find(|t| t.name == "orders")
        .unwrap()
        .partitions
    {
        let mut r = p.replicas.clone();
        r.sort_unstable();
        assert_eq!(r, vec![1, 2, 3]);
        assert_eq!(p.leader, p.replicas[0]);
    }
    // The new active coordinator gave every broker a full session from its
    // takeover (their heartbeats went to a dead coordinator meanwhile): it
    // fenced none of them, and all are still live a session later.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let survivor = if active == addrs[0] { &c2 } else { &c1 };
    assert!(
        !survivor.log().contains("broker fenced"),
        "{}",
        survivor.log()
    );
    wait_live_brokers(&addrs, 3, WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_coordinator_does_not_act_after_it_wakes() {
    let etcd = EtcdServer::start().unwrap();
    let c1 = start_coordinator(&etcd.endpoints(), "ha2");
    let addrs1 = vec![c1.address().to_owned()];
    eventually("c1 active", WAIT, || find_active(&addrs1)).await;
    let c2 = start_coordinator(&etcd.endpoints(), "ha2");
    let addrs = vec![c1.address().to_owned(), c2.address().to_owned()];
    let _brokers: Vec<BrokerStandIn> = (1..=2)
        .map(|id| BrokerStandIn::start(id, "", addrs.clone()))
        .collect();

    // A pause longer than the lease TTL: c2 takes over.
    c1.pause();
    let c2_addr = vec![c2.address().to_owned()];
    let (_, epoch2) = eventually("c2 active", WAIT, || find_active(&c2_addr)).await;
    c1.resume();
    // The very first thing c1 is asked after waking must be refused.
    let mut admin1 = ballast_tests::cluster::admin(c1.address());
    let r = admin1
        .create_topic(pb::CreateTopicRequest {
            name: "late".into(),
            partitions: 1,
            replication_factor: 1,
            ..Default::default()
        })
        .await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::FailedPrecondition);
    // And it settles as a standby pointing at c2.
    eventually("c1 redirects to c2", WAIT, || {
        let mut a = admin1.clone();
        let c2 = c2.address().to_owned();
        async move {
            let s = a
                .list_topics(pb::ListTopicsRequest::default())
                .await
                .err()?;
            (ballast_tests::cluster::active_hint(&s)? == c2).then_some(())
        }
    })
    .await;
    let topics = describe(&addrs).await;
    assert!(topics.iter().all(|t| t.name != "late"));
    let (_, epoch_now) = find_active(&addrs).await.unwrap();
    assert_eq!(epoch_now, epoch2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leaders_write_is_refused_by_the_fence() {
    let etcd = EtcdServer::start().unwrap();
    let s: Arc<dyn MetadataStore> = Arc::new(
        EtcdStore::connect(&etcd.endpoints(), EtcdOptions::default())
            .await
            .unwrap(),
    );
    let lease = s.lease_grant(Duration::from_secs(5)).await.unwrap();
    let leader = store::campaign(
        s.as_ref(),
        b"/ballast/fence/election",
        b"a".to_vec(),
        lease.id,
    )
    .await
    .unwrap();
    let put = |k: &str| WritePlan {
        final_ops: vec![TxnOp::put(k.as_bytes().to_vec(), b"v".to_vec())],
        ..Default::default()
    };
    writer::execute(s.as_ref(), &leader.fence(), put("/ballast/fence/ok"))
        .await
        .unwrap();
    // Deposed: the lease is gone (as when it expires).
    s.lease_revoke(lease.id).await.unwrap();
    let lease2 = s.lease_grant(Duration::from_secs(5)).await.unwrap();
    let successor = store::campaign(
        s.as_ref(),
        b"/ballast/fence/election",
        b"b".to_vec(),
        lease2.id,
    )
    .await
    .unwrap();
    assert!(successor.epoch() > leader.epoch());
    let refused = writer::execute(s.as_ref(), &leader.fence(), put("/ballast/fence/late")).await;
    assert_eq!(refused, Err(WriteError::Fenced));
    assert!(s.get(b"/ballast/fence/late").await.unwrap().is_none());
    assert!(s.get(b"/ballast/fence/ok").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_recovers_after_etcd_restart() {
    let mut etcd = EtcdServer::start().unwrap();
    let c1 = start_coordinator(&etcd.endpoints(), "ha3");
    let addrs = vec![c1.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let _b = BrokerStandIn::start(1, "", addrs.clone());
    wait_live_brokers(&addrs, 1, WAIT).await;
    etcd.stop();
    // While etcd is down the coordinator refuses to act (no panic, a status).
    let r = ballast_tests::cluster::admin(&addrs[0])
        .create_topic(pb::CreateTopicRequest {
            name: "during".into(),
            partitions: 1,
            replication_factor: 1,
            ..Default::default()
        })
        .await;
    // Within its lease the coordinator tries etcd and says what is wrong;
    // past it, it no longer acts and says so.
    match r {
        Err(s) if s.code() == tonic::Code::Unavailable => {
            assert!(s.message().contains("metadata store unavailable"), "{s}")
        }
        Err(s) if s.code() == tonic::Code::FailedPrecondition => {
            assert!(s.message().contains("active"), "{s}")
        }
        other => panic!("a write while etcd is down: {other:?}"),
    }
    etcd.restart().unwrap();
    let created = on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: "after".into(),
            partitions: 2,
            replication_factor: 1,
            request_id: "after-1".into(),
            ..Default::default()
        })
        .await
    })
    .await;
    assert!(created.is_ok(), "{created:?}\n{}", c1.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_member_etcd_keeps_working_after_a_member_dies() {
    let mut etcd = EtcdCluster::start(3).unwrap();
    let c1 = start_coordinator(&etcd.endpoints(), "ha4");
    let addrs = vec![c1.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let _b = BrokerStandIn::start(1, "", addrs.clone());
    etcd.kill_member(0);
    for i in 0..5 {
        let name = format!("t{i}");
        let r = on_active(&addrs, WAIT, |mut c| {
            let name = name.clone();
            async move {
                c.create_topic(pb::CreateTopicRequest {
                    name: name.clone(),
                    partitions: 1,
                    replication_factor: 1,
                    request_id: name,
                    ..Default::default()
                })
                .await
            }
        })
        .await;
        assert!(r.is_ok(), "{r:?}\n{}", c1.log());
    }
    assert_eq!(
        describe(&addrs)
            .await
            .iter()
            .filter(|t| t.name.starts_with('t'))
            .count(),
        5
    );
}
