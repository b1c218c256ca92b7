//! Coordinator paths on a real coordinator over etcd, with brokers that
//! register and heartbeat over the real API but host nothing:
//! * a broker's old epoch is refused once it registered again (heartbeat
//!   told to re-register, AlterIsr refused by name);
//! * a topic is deleted for good: gone from list and describe, and its
//!   name can be used again;
//! * the offsets topic is created by the coordinator itself: 3 partitions
//!   here (`--offsets-partitions 3`), RF min(3, live brokers), compacted,
//!   internal.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ballast_proto::v1::broker_control_client::BrokerControlClient;
use ballast_proto::v1::{self as pb};
use ballast_tests::cluster::{
    BrokerStandIn, admin, channel, find_active, on_active, start_coordinator, wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::eventually;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_broker_epochs_deleted_topics_and_the_offsets_topic() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator(&etcd.endpoints(), "paths");
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let _stand_ins: Vec<BrokerStandIn> = (1..=3)
        .map(|id| BrokerStandIn::start(id, "", addrs.clone()))
        .collect();
    wait_live_brokers(&addrs, 3, WAIT).await;

    // Broker 9 registers twice (the same process, as after a lost answer):
    // the first epoch is dead.
    let mut control = BrokerControlClient::new(channel(&addrs[0]));
    let register = || pb::RegisterBrokerRequest {
        broker_id: 9,
        incarnation_id: "nine".into(),
        endpoints: vec![pb::Endpoint {
            name: "client".into(),
            address: "127.0.0.1:1".into(),
        }],
        control_address: "127.0.0.1:1".into(),
        process_id: "nine-1".into(),
        ..Default::default()
    };
    let first = control
        .register(register())
        .await
        .unwrap()
        .into_inner()
        .broker_epoch;
    let second = control
        .register(register())
        .await
        .unwrap()
        .into_inner()
        .broker_epoch;
    assert!(second > first);
    let beat = |epoch: i64| pb::BrokerHeartbeatRequest {
        broker_id: 9,
        broker_epoch: epoch,
        ..Default::default()
    };
    assert!(
        control
            .heartbeat(beat(first))
            .await
            .unwrap()
            .into_inner()
            .fenced
    );
    assert!(
        !control
            .heartbeat(beat(second))
            .await
            .unwrap()
            .into_inner()
            .fenced
    );
    on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: "gone".into(),
            assignments: vec![pb::ReplicaList {
                replicas: vec![9, 1],
            }],
            request_id: "gone-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap();
    let e = control
        .alter_isr(pb::AlterIsrRequest {
            broker_id: 9,
            broker_epoch: first,
            topic: "gone".into(),
            partition: 0,
            leader_epoch: 0,
            partition_epoch: 0,
            new_isr: vec![9],
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.message().contains(&first.to_string()), "{e}");

    // Delete it: gone, and the name is free again.
    let mut c = admin(&addrs[0]);
    c.delete_topic(pb::DeleteTopicRequest {
        name: "gone".into(),
    })
    .await
    .unwrap();
    let names: Vec<String> = c
        .list_topics(pb::ListTopicsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .topics
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(!names.contains(&"gone".to_owned()), "{names:?}");
    let e = c
        .describe_topics(pb::DescribeTopicsRequest {
            names: vec!["gone".into()],
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().topics.len());
    assert!(matches!(e, Err(_) | Ok(0)), "{e:?}");
    c.create_topic(pb::CreateTopicRequest {
        name: "gone".into(),
        partitions: 1,
        replication_factor: 1,
        request_id: "gone-2".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    // The offsets topic, made by the coordinator.
    let offsets = eventually("the offsets topic exists", WAIT, || {
        let mut c = c.clone();
        async move {
            let d = c
                .describe_topics(pb::DescribeTopicsRequest {
                    names: vec!["__consumer_offsets".into()],
                    include_internal: true,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            d.topics.into_iter().next()
        }
    })
    .await;
    assert_eq!(offsets.partitions.len(), 3, "{offsets:?}");
    assert!(
        offsets.partitions.iter().all(|p| p.replicas.len() == 3),
        "{offsets:?}"
    );
    assert!(offsets.internal, "{offsets:?}");
    assert_eq!(
        offsets.configs.get("cleanup.policy").map(String::as_str),
        Some("compact"),
        "{offsets:?}"
    );
}
