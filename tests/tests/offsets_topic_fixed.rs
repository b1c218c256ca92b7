//! The partition count of `__consumer_offsets` cannot be changed, end to
//! end: a real coordinator on real etcd (brokers that register and
//! heartbeat over the real API but host nothing) creates the offsets topic
//! itself; AddPartitions on it, validate-only or not, is refused with
//! INVALID_ARGUMENT naming the topic, `ballast topics add-partitions` fails
//! with that message, and the topic keeps its partitions. Groups are placed
//! by `hash(group) % count`, so a new count would move every group to a
//! partition that holds none of its records.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ballast_proto::v1 as pb;
use ballast_tests::cluster::{
    BrokerStandIn, admin, find_active, on_active, start_coordinator, wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{eventually, run_ballast};

const WAIT: Duration = Duration::from_secs(60);
const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// `--offsets-partitions` of the harness's coordinator (`cluster::FAST`).
const OFFSETS_PARTITIONS: usize = 3;

async fn offsets_partitions(at: &str) -> Option<usize> {
    let d = admin(at)
        .describe_topics(pb::DescribeTopicsRequest {
            names: vec![OFFSETS_TOPIC.into()],
            include_internal: true,
            ..Default::default()
        })
        .await
        .ok()?
        .into_inner();
    d.topics
        .into_iter()
        .find(|t| t.name == OFFSETS_TOPIC)
        .map(|t| t.partitions.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_offsets_topic_cannot_gain_partitions() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator(&etcd.endpoints(), "offsets-fixed");
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let _stand_ins: Vec<BrokerStandIn> = (1..=3)
        .map(|id| BrokerStandIn::start(id, "", addrs.clone()))
        .collect();
    wait_live_brokers(&addrs, 3, WAIT).await;
    let at = addrs[0].as_str();
    let n = eventually("the coordinator creates the offsets topic", WAIT, || {
        offsets_partitions(at)
    })
    .await;
    assert_eq!(n, OFFSETS_PARTITIONS);

    for validate_only in [true, false] {
        let refused = on_active(&addrs, WAIT, |mut c| async move {
            c.add_partitions(pb::AddPartitionsRequest {
                name: OFFSETS_TOPIC.into(),
                total_partitions: 10,
                validate_only,
                ..Default::default()
            })
            .await
        })
        .await
        .expect_err("growing the offsets topic is refused");
        assert_eq!(
            refused.code(),
            tonic::Code::InvalidArgument,
            "validate_only={validate_only}: {refused:?}"
        );
        assert!(
            refused.message().contains(OFFSETS_TOPIC) && refused.message().contains("fixed"),
            "the refusal names the topic and says why: {:?}",
            refused.message()
        );
    }

    let out = run_ballast(&[
        "topics",
        "add-partitions",
        OFFSETS_TOPIC,
        "--partitions",
        "10",
        "--coordinator",
        at,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the CLI must fail: {stderr}");
    assert!(stderr.contains(OFFSETS_TOPIC), "{stderr}");

    assert_eq!(offsets_partitions(at).await, Some(OFFSETS_PARTITIONS));
}
