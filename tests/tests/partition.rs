//! A network partition (issue 8's fault suite): the leader's agent runs in
//! its own network namespace and the link is cut under acks=all production
//! (min.insync.replicas=2). The coordinator fences it after the session
//! timeout and elects a leader from the ISR; producers move on by
//! themselves; when the link heals the old leader rejoins as a follower,
//! truncates whatever it wrote alone, and converges. No acknowledged record
//! is lost, none is duplicated, and all sit at their acknowledged offsets.
//!
//! Needs `ip netns` (root; CI has it); fails loudly without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use ballast_client::consumer::{Consumer, ConsumerConfig, StartPosition};
use ballast_client::producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use ballast_proto::v1::{self as pb};
use ballast_tests::cluster::{FAST, describe_partition, find_active, on_active, wait_live_brokers};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::netns::Isolated;
use ballast_tests::process::{BallastProcess, eventually};

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "split";

fn agent(
    wrapper: &[&str],
    coordinator: &str,
    id: i32,
    dir: &std::path::Path,
    listen: &str,
) -> BallastProcess {
    let (id, dir) = (id.to_string(), dir.to_string_lossy().into_owned());
    BallastProcess::start_under(
        wrapper,
        &[
            "agent",
            "--coordinator",
            coordinator,
            "--broker-id",
            &id,
            "--data-dir",
            &dir,
            "--listen",
            listen,
            "--replica-lag-time-max",
            "2s",
        ],
        Duration::from_secs(20),
    )
    .expect("agent starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_is_replaced_and_rejoins_without_losing_acknowledged_records() {
    let net = Isolated::create().expect("a network namespace");
    let etcd = EtcdServer::start().unwrap();
    let here = format!("{}:0", net.host_ip);
    let etcd_endpoint = etcd.endpoint();
    let mut args = vec![
        "coordinator",
        "--etcd",
        &etcd_endpoint,
        "--listen",
        &here,
        "--cluster-id",
        "split",
    ];
    args.extend_from_slice(FAST);
    let coordinator = BallastProcess::start(&args, Duration::from_secs(20)).unwrap();
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dirs = tempfile::tempdir().unwrap();
    // Agent 3, the preferred leader, lives behind the link.
    let three = agent(
        &net.wrapper(),
        &addrs[0],
        3,
        &dirs.path().join("b3"),
        &format!("{}:0", net.ns_ip),
    );
    let one = agent(&[], &addrs[0], 1, &dirs.path().join("b1"), &here);
    let two = agent(&[], &addrs[0], 2, &dirs.path().join("b2"), &here);
    wait_live_brokers(&addrs, 3, WAIT).await;
    on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: TOPIC.into(),
            assignments: vec![pb::ReplicaList {
                replicas: vec![3, 1, 2],
            }],
            configs: [("min.insync.replicas".to_owned(), "2".to_owned())].into(),
            request_id: "split-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap();
    eventually("agent 3 leads with a full ISR", WAIT, || async {
        let p = describe_partition(&addrs, TOPIC, 0, WAIT).await;
        (p.leader == 3 && p.isr.len() == 3).then_some(())
    })
    .await;

    let bootstrap: Vec<String> = [&one, &two, &three]
        .iter()
        .map(|a| a.address().to_owned())
        .collect();
    let producer = Producer::connect(
        bootstrap.clone(),
        ProducerConfig {
            acks: Acks::All,
            request_timeout: Duration::from_secs(3),
            delivery_timeout: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .unwrap();
    let mut acked: BTreeMap<i64, String> = BTreeMap::new();
    let mut failed = 0;
    let mut cut = false;
    for round in 0..6 {
        let mut pending = Vec::new();
        for i in 0..50 {
            producer.ready().await;
            let v = format!("r-{round}-{i:02}");
            pending.push((
                v.clone(),
                producer.send(ProducerRecord::new(TOPIC, v.into_bytes()).partition(0)),
            ));
        }
        for (v, f) in pending {
            match f.await {
                Ok(meta) => {
                    let before = acked.insert(meta.offset, v.clone());
                    assert!(
                        before.is_none(),
                        "offset {} acknowledged twice",
                        meta.offset
                    );
                }
                Err(_) => failed += 1,
            }
        }
        if round == 1 && !cut {
            net.cut().unwrap();
            cut = true;
        }
    }
    assert!(
        acked.len() >= 250,
        "{} acknowledged, {failed} failed",
        acked.len()
    );

    // A leader from the ISR took over; agent 3 is fenced.
    let p = describe_partition(&addrs, TOPIC, 0, WAIT).await;
    assert_ne!(p.leader, 3, "{p:?}");
    assert!(!p.isr.contains(&3), "{p:?}");

    // Heal: agent 3 rejoins and catches up.
    net.heal().unwrap();
    eventually("agent 3 back in the ISR", WAIT, || async {
        let p = describe_partition(&addrs, TOPIC, 0, WAIT).await;
        (p.isr.len() == 3).then_some(())
    })
    .await;

    // Every acknowledged record once, at its offset, from the current
    // leader; then from agent 3's copy, the same.
    for from in [bootstrap.clone(), vec![three.address().to_owned()]] {
        let mut consumer = Consumer::connect(from, ConsumerConfig::default()).unwrap();
        consumer.assign(TOPIC, [(0, StartPosition::Earliest)]);
        let last = *acked.keys().next_back().unwrap();
        let mut got: BTreeMap<i64, String> = BTreeMap::new();
        let mut seen = std::collections::BTreeSet::new();
        while got.keys().next_back().is_none_or(|o| *o < last) {
            for r in consumer.poll(Duration::from_secs(5)).await.unwrap() {
                let v = String::from_utf8(r.value.unwrap().to_vec()).unwrap();
                assert!(seen.insert(v.clone()), "{v} is in the log twice");
                got.insert(r.offset, v);
            }
        }
        for (o, v) in &acked {
            assert_eq!(got.get(o), Some(v), "acknowledged {v} at {o}");
        }
    }
}
