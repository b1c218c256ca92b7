//! A leader's agent killed with SIGKILL and restarted faster than the
//! broker session timeout: the coordinator sees a new process of the same
//! agent register while the old registration is live, and treats the old
//! one as failed first. Leadership moves to another ISR member at a new
//! leader epoch (the restarted agent must not resume leading at its old
//! epoch with a log that may have lost its unflushed tail), and the agent
//! rejoins the ISR as a follower.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use ballast_proto::v1::{self as pb};
use ballast_tests::cluster::{
    describe_partition, find_active, on_active, start_agent, start_coordinator, wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::eventually;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_restarted_within_its_session_loses_leadership_to_a_new_epoch() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator(&etcd.endpoints(), "bounce");
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dirs = tempfile::tempdir().unwrap();
    let mut agents: BTreeMap<i32, _> = (1..=3)
        .map(|id| {
            (
                id,
                start_agent(&addrs[0], id, &dirs.path().join(format!("b{id}")), &[]),
            )
        })
        .collect();
    wait_live_brokers(&addrs, 3, WAIT).await;
    on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: "bounce".into(),
            assignments: vec![pb::ReplicaList {
                replicas: vec![1, 2, 3],
            }],
            request_id: "bounce-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap();
    let before = eventually("agent 1 leads with a full ISR", WAIT, || async {
        let p = describe_partition(&addrs, "bounce", 0, WAIT).await;
        (p.leader == 1 && p.isr.len() == 3).then_some(p)
    })
    .await;

    // Killed and back well within the 3 s session.
    agents
        .get_mut(&1)
        .unwrap()
        .restart(Duration::from_secs(20))
        .unwrap();
    let after = eventually("leadership moved at a new epoch", WAIT, || async {
        let p = describe_partition(&addrs, "bounce", 0, WAIT).await;
        (p.leader != 1 && p.leader >= 0).then_some(p)
    })
    .await;
    assert!(
        after.leader_epoch > before.leader_epoch,
        "{before:?} -> {after:?}"
    );
    assert!(
        coordinator.log().contains("restarted within its session"),
        "{}",
        coordinator.log()
    );
    eventually("agent 1 back in the ISR as a follower", WAIT, || async {
        let p = describe_partition(&addrs, "bounce", 0, WAIT).await;
        (p.isr.len() == 3).then_some(())
    })
    .await;
}
