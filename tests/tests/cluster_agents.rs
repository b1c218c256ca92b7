//! Real agents, a real coordinator and real etcd as separate processes:
//! leaders move when an agent dies and the surviving agents receive them; a
//! restarted agent comes back with a new broker epoch; a second agent
//! claiming a live broker id is refused; `ballast dev` keeps its state across
//! restarts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use ballast_proto::v1::agent_control_client::AgentControlClient;
use ballast_proto::v1::{self as pb};
use ballast_tests::cluster::{channel, find_active, on_active, start_agent, start_coordinator};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{BallastProcess, eventually, free_port};

const WAIT: Duration = Duration::from_secs(30);

async fn agent_state(address: &str) -> Option<pb::GetAgentStateResponse> {
    AgentControlClient::new(channel(address))
        .get_state(pb::GetAgentStateRequest {})
        .await
        .ok()
        .map(|r| r.into_inner())
}

async fn topic(addresses: &[String], name: &str) -> pb::TopicDescription {
    let name = name.to_owned();
    on_active(addresses, WAIT, |mut c| {
        let name = name.clone();
        async move {
            c.describe_topics(pb::DescribeTopicsRequest {
                names: vec![name],
                ..Default::default()
            })
            .await
        }
    })
    .await
    .unwrap()
    .into_inner()
    .topics
    .remove(0)
}

async fn live_brokers(addresses: &[String]) -> BTreeMap<i32, pb::BrokerInfo> {
    on_active(addresses, WAIT, |mut c| async move {
        c.list_brokers(pb::ListBrokersRequest {}).await
    })
    .await
    .map(|r| {
        r.into_inner()
            .brokers
            .into_iter()
            .filter(|b| !b.fenced)
            .map(|b| (b.broker_id, b))
            .collect()
    })
    .unwrap_or_default()
}

/// etcd, one coordinator and agents 1..=3 as processes, with a 6-partition
/// RF-3 topic created.
struct AgentCluster {
    _etcd: EtcdServer,
    _coordinator: BallastProcess,
    _dirs: tempfile::TempDir,
    addrs: Vec<String>,
    agents: Vec<BallastProcess>,
}

impl AgentCluster {
    async fn start(cluster_id: &str, extra: &[&str], topic_name: &str) -> AgentCluster {
        let etcd = EtcdServer::start().unwrap();
        let coordinator =
            ballast_tests::cluster::start_coordinator_with(&etcd.endpoints(), cluster_id, extra);
        let addrs = vec![coordinator.address().to_owned()];
        eventually("active", WAIT, || find_active(&addrs)).await;
        let dirs = tempfile::tempdir().unwrap();
        let agents: Vec<BallastProcess> = (1..=3)
            .map(|id| start_agent(&addrs[0], id, &dirs.path().join(format!("b{id}")), &[]))
            .collect();
        eventually("3 live brokers", WAIT, || async {
            (live_brokers(&addrs).await.len() == 3).then_some(())
        })
        .await;
        let name = topic_name.to_owned();
        on_active(&addrs, WAIT, |mut c| {
            let name = name.clone();
            async move {
                c.create_topic(pb::CreateTopicRequest {
                    request_id: format!("{name}-1"),
                    name,
                    partitions: 6,
                    replication_factor: 3,
                    ..Default::default()
                })
                .await
            }
        })
        .await
        .unwrap();
        AgentCluster {
            _etcd: etcd,
            _coordinator: coordinator,
            _dirs: dirs,
            addrs,
            agents,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_an_agent_moves_its_leaderships_and_the_agents_receive_them() {
    let cluster = AgentCluster::start("agents1", &[], "events").await;
    let addrs = cluster.addrs.clone();
    let mut agents = cluster.agents;
    // Every agent hosts all six partitions with the coordinator's leaders.
    let before = topic(&addrs, "events").await;
    for a in &agents {
        eventually("agent hosts the topic", WAIT, || async {
            let s = agent_state(a.address()).await?;
            let hosted = s.partitions.iter().filter(|p| p.topic == "events").count();
            (hosted == 6).then_some(())
        })
        .await;
    }
    let led_by_1: Vec<i32> = before
        .partitions
        .iter()
        .filter(|p| p.leader == 1)
        .map(|p| p.partition)
        .collect();
    assert!(
        !led_by_1.is_empty(),
        "Kafka's placement gives broker 1 some leaders: {before:?}"
    );
    let epoch_before = live_brokers(&addrs).await[&1].broker_epoch;

    agents[0].kill();
    let after = eventually("broker 1 fenced and its leaders moved", WAIT, || async {
        let t = topic(&addrs, "events").await;
        let moved = t
            .partitions
            .iter()
            .all(|p| p.leader != 1 && !p.isr.contains(&1) && p.leader >= 0);
        moved.then_some(t)
    })
    .await;
    for p in &after.partitions {
        let old = &before.partitions[p.partition as usize];
        if led_by_1.contains(&p.partition) {
            assert_eq!(
                p.leader_epoch,
                old.leader_epoch + 1,
                "leader epoch +1 on partition {}",
                p.partition
            );
            // The new leader is the first live ISR member in replica order.
            let expected = old
                .replicas
                .iter()
                .copied()
                .find(|r| *r != 1 && old.isr.contains(r));
            assert_eq!(Some(p.leader), expected);
        } else {
            assert_eq!(p.leader, old.leader);
        }
    }
    // The surviving agents were told.
    for a in &agents[1..] {
        eventually("agent received the new leaders", WAIT, || async {
            let s = agent_state(a.address()).await?;
            let ok = after.partitions.iter().all(|want| {
                s.partitions.iter().any(|got| {
                    got.topic == "events"
                        && got.partition == want.partition
                        && got.leader == want.leader
                        && got.leader_epoch == want.leader_epoch
                })
            });
            ok.then_some(())
        })
        .await;
    }

    // Broker 1 comes back with a new epoch and gets its partitions pushed.
    agents[0].restart(Duration::from_secs(20)).unwrap();
    let back = eventually("broker 1 back", WAIT, || async {
        let b = live_brokers(&addrs).await.remove(&1)?;
        (b.broker_epoch > epoch_before).then_some(b)
    })
    .await;
    assert!(back.broker_epoch > epoch_before);
    eventually("agent 1 resynced", WAIT, || async {
        let s = agent_state(agents[0].address()).await?;
        let hosted = s.partitions.iter().filter(|p| p.topic == "events").count();
        (s.registered && s.broker_epoch == back.broker_epoch && hosted == 6).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_live_agent_claiming_a_broker_id_is_refused() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator(&etcd.endpoints(), "agents2");
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dirs = tempfile::tempdir().unwrap();
    let first = start_agent(&addrs[0], 7, &dirs.path().join("a"), &[]);
    let registered = eventually("first agent registered", WAIT, || async {
        let s = agent_state(first.address()).await?;
        s.registered.then_some(s)
    })
    .await;
    let second = start_agent(&addrs[0], 7, &dirs.path().join("b"), &[]);
    // Give the second agent several registration attempts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s2 = agent_state(second.address()).await.unwrap();
    assert!(!s2.registered, "the second claim must be refused");
    let brokers = live_brokers(&addrs).await;
    assert_eq!(
        brokers[&7].broker_epoch, registered.broker_epoch,
        "the first agent keeps the id"
    );
    assert!(
        second.log().contains("already registered"),
        "{}",
        second.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ballast_dev_keeps_topics_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").to_string_lossy().into_owned();
    let listen = format!("127.0.0.1:{}", free_port());
    let http = format!("127.0.0.1:{}", free_port());
    let args = [
        "dev",
        "--data-dir",
        &data,
        "--listen",
        &listen,
        "--http-listen",
        &http,
    ];
    let mut dev = BallastProcess::start(&args, Duration::from_secs(60)).unwrap();
    let addrs = vec![dev.address().to_owned()];
    let created = on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: "kept".into(),
            partitions: 4,
            replication_factor: 3,
            request_id: "kept-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap()
    .into_inner()
    .topic
    .unwrap();
    // Ctrl-C stops everything cleanly (exit status 0) and in time.
    let status = dev.interrupt(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "ballast dev on Ctrl-C: {status:?}\n{}",
        dev.log()
    );
    dev.restart(Duration::from_secs(60)).unwrap();
    let after = topic(&addrs, "kept").await;
    assert_eq!(after.topic_id, created.topic_id);
    assert_eq!(after.partitions.len(), 4);
    assert_eq!(live_brokers(&addrs).await.len(), 3);
}

/// Broker 1 dies and returns; its partitions' leaders re-admit it to the
/// ISR once it has caught up (real replication and AlterIsr), and leadership
/// returns to the preferred replicas: on demand, and automatically when
/// broker 1's leader imbalance passes 10 %.
async fn leadership_returns_to_preferred_replicas(automatic: bool) {
    use ballast_proto::v1::broker_control_client::BrokerControlClient;
    let interval = if automatic { "1s" } else { "0s" };
    let cluster = AgentCluster::start(
        if automatic {
            "pref-auto"
        } else {
            "pref-manual"
        },
        &["--leader-imbalance-check-interval", interval],
        "pref",
    )
    .await;
    let addrs = cluster.addrs.clone();
    let mut agents = cluster.agents;
    agents[0].kill();
    eventually("broker 1 out of every ISR", WAIT, || async {
        let t = topic(&addrs, "pref").await;
        t.partitions
            .iter()
            .all(|p| !p.isr.contains(&1))
            .then_some(())
    })
    .await;
    agents[0].restart(Duration::from_secs(20)).unwrap();
    eventually("broker 1 live", WAIT, || async {
        live_brokers(&addrs).await.get(&1).map(|_| ())
    })
    .await;

    // The leaders re-admit broker 1 to the ISR once it has caught up (they
    // send AlterIsr themselves).
    let t = eventually("broker 1 back in every ISR", WAIT, || async {
        let t = topic(&addrs, "pref").await;
        t.partitions.iter().all(|p| p.isr.contains(&1)).then_some(t)
    })
    .await;
    // An ISR change planned under a stale leader epoch is refused and
    // changes nothing.
    let brokers = live_brokers(&addrs).await;
    let mut control = BrokerControlClient::new(channel(&addrs[0]));
    let moved = t.partitions.iter().find(|p| p.leader_epoch > 0).unwrap();
    let stale = pb::AlterIsrRequest {
        broker_id: moved.leader,
        broker_epoch: brokers[&moved.leader].broker_epoch,
        topic: "pref".into(),
        partition: moved.partition,
        leader_epoch: moved.leader_epoch - 1,
        partition_epoch: moved.partition_epoch,
        new_isr: vec![moved.leader],
    };
    let refused = control.alter_isr(stale).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
    assert!(
        refused.message().contains("fenced leader epoch"),
        "{}",
        refused.message()
    );
    let unchanged = topic(&addrs, "pref").await;
    assert!(
        unchanged.partitions[moved.partition as usize]
            .isr
            .contains(&1)
    );
    if !automatic {
        let r = on_active(&addrs, WAIT, |mut c| async move {
            c.elect_preferred_leaders(pb::ElectPreferredLeadersRequest {
                topic: "pref".into(),
            })
            .await
        })
        .await
        .unwrap()
        .into_inner();
        assert!(r.elected > 0, "{r:?}");
        assert_eq!(r.not_eligible, 0);
    }
    let back = eventually("preferred leaders restored", WAIT, || async {
        let t = topic(&addrs, "pref").await;
        t.partitions
            .iter()
            .all(|p| p.leader == p.replicas[0])
            .then_some(t)
    })
    .await;
    // And broker 1's agent was told it leads them again.
    eventually("agent 1 leads its preferred partitions", WAIT, || async {
        let s = agent_state(agents[0].address()).await?;
        let ok = back
            .partitions
            .iter()
            .filter(|p| p.leader == 1)
            .all(|want| {
                s.hosted.iter().any(|h| {
                    h.topic == "pref"
                        && h.partition == want.partition
                        && h.role == pb::ReplicaRole::Leader as i32
                        && h.leader_epoch == want.leader_epoch
                })
            });
        ok.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preferred_leader_election_on_demand_after_the_isr_expands() {
    leadership_returns_to_preferred_replicas(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_preferred_leader_election_when_imbalanced() {
    leadership_returns_to_preferred_replicas(true).await;
}
