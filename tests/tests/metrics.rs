//! `/metrics` on a real coordinator and real agents: the cluster gauges
//! follow the cluster (brokers alive and fenced, partitions, problems), the
//! event counters count (leader elections, ISR shrinks, fencings), and the
//! agents count produce and fetch traffic with latency histograms.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use ballast_client::TopicPartition;
use ballast_client::consumer::ConsumerConfig;
use ballast_client::group::{GroupConfig, GroupConsumer, OffsetCommit};
use ballast_client::producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use ballast_proto::v1::{self as pb};
use ballast_tests::cluster::{
    find_active, on_active, start_agent, start_coordinator_with, wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{BallastProcess, eventually, free_port};

const WAIT: Duration = Duration::from_secs(60);

/// `GET /metrics` over plain HTTP/1.1; the body, or `None` when it fails.
fn scrape(address: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(address).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_owned())
}

/// The value of one sample (`name{labels}` exactly as exposed).
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == series).then(|| v.parse().ok())?
    })
}

async fn value(address: &str, series: &str) -> Option<f64> {
    let address = address.to_owned();
    let series = series.to_owned();
    tokio::task::spawn_blocking(move || scrape(&address).and_then(|b| sample(&b, &series)))
        .await
        .ok()?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_and_agent_metrics_follow_the_cluster() {
    let etcd = EtcdServer::start().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let coordinator =
        start_coordinator_with(&etcd.endpoints(), "metrics", &["--http-listen", &http]);
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dirs = tempfile::tempdir().unwrap();
    let https: BTreeMap<i32, String> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", free_port())))
        .collect();
    let agent_http = https[&1].clone();
    let mut agents: BTreeMap<i32, BallastProcess> = (1..=3)
        .map(|id| {
            let dir = dirs.path().join(format!("b{id}"));
            (
                id,
                start_agent(&addrs[0], id, &dir, &["--http-listen", &https[&id]]),
            )
        })
        .collect();
    wait_live_brokers(&addrs, 3, WAIT).await;
    on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: "m".into(),
            assignments: vec![pb::ReplicaList {
                replicas: vec![1, 2, 3],
            }],
            request_id: "m-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap();

    assert_eq!(value(&http, "ballast_coordinator_active").await, Some(1.0));
    assert!(value(&http, "ballast_coordinator_epoch").await.unwrap() > 0.0);
    assert_eq!(
        value(&http, "ballast_brokers{state=\"alive\"}").await,
        Some(3.0)
    );
    assert!(value(&http, "ballast_partitions").await.unwrap() >= 1.0);

    // Produce through broker 1, which leads the topic's partition.
    let bootstrap: Vec<String> = agents.values().map(|a| a.address().to_owned()).collect();
    let producer = Producer::connect(
        bootstrap,
        ProducerConfig {
            acks: Acks::All,
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..20 {
        producer
            .send(ProducerRecord::new("m", format!("v{i}").into_bytes()).partition(0))
            .await
            .unwrap();
    }
    let ok = value(
        &agent_http,
        "ballast_agent_produce_partitions_total{acks=\"all\",result=\"ok\"}",
    )
    .await
    .unwrap();
    assert!(ok >= 1.0, "{ok}");
    assert!(
        value(
            &agent_http,
            "ballast_agent_produce_latency_seconds_count{acks=\"all\"}"
        )
        .await
        .unwrap()
            >= 1.0
    );
    assert!(
        value(&agent_http, "ballast_agent_produce_bytes_total")
            .await
            .unwrap()
            > 0.0
    );
    assert!(
        value(&agent_http, "ballast_agent_partitions{role=\"leader\"}")
            .await
            .unwrap()
            >= 1.0
    );

    // A member joins a group: its coordinator (whichever agent leads the
    // group's offsets partition) counts the rebalance.
    let mut group = GroupConfig::new("metrics-group");
    group.auto_commit = false;
    let bootstrap: Vec<String> = agents.values().map(|a| a.address().to_owned()).collect();
    let mut member = GroupConsumer::connect(bootstrap, ConsumerConfig::default(), group).unwrap();
    member.subscribe(&["m".to_owned()]).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let _ = member.poll(Duration::from_millis(200)).await;
        let mut total = 0.0;
        for h in https.values() {
            total += value(h, "ballast_agent_group_rebalances_total")
                .await
                .unwrap_or(0.0);
        }
        if total >= 1.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no rebalance counted");
    }
    // It commits offset 5 of the 20 records: the active coordinator
    // exports a lag of 15 for the group and topic, and one member.
    member
        .commit(vec![OffsetCommit {
            partition: TopicPartition::new("m", 0),
            offset: 5,
            leader_epoch: None,
            metadata: String::new(),
        }])
        .await
        .unwrap();
    eventually(
        "the group's lag in the coordinator's metrics",
        WAIT,
        || async {
            (value(
                &http,
                "ballast_consumer_group_lag{group=\"metrics-group\",topic=\"m\"}",
            )
            .await?
                == 15.0)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        value(
            &http,
            "ballast_consumer_group_members{group=\"metrics-group\"}"
        )
        .await,
        Some(1.0)
    );
    assert!(value(&http, "ballast_consumer_groups").await.unwrap() >= 1.0);
    member.close().await.unwrap();

    // Broker 2 dies: fenced, and the ISR shrinks.
    agents.get_mut(&2).unwrap().kill();
    eventually("broker 2 fenced in the metrics", WAIT, || async {
        (value(&http, "ballast_brokers{state=\"fenced\"}").await? == 1.0).then_some(())
    })
    .await;
    assert!(value(&http, "ballast_broker_fencings_total").await.unwrap() >= 1.0);
    assert!(value(&http, "ballast_isr_shrinks_total").await.unwrap() >= 1.0);
    eventually("under-replicated partitions counted", WAIT, || async {
        (value(
            &http,
            "ballast_partitions_with_problem{problem=\"under_replicated\"}",
        )
        .await?
            >= 1.0)
            .then_some(())
    })
    .await;
    // Broker 1 leads; its followers fetched.
    assert!(
        value(
            &agent_http,
            "ballast_agent_fetch_requests_total{kind=\"replica\"}"
        )
        .await
        .unwrap()
            >= 1.0
    );
}
