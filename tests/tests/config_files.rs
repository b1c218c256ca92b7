//! Servers started from TOML config files, as docs/OPERATIONS.md shows: a
//! coordinator and an agent read their options from files (flags still
//! win), the agent registers with the rack its file names, and `ballast
//! config print` shows each value's source.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ballast_proto::v1::{self as pb};
use ballast_tests::cluster::{find_active, on_active, wait_live_brokers};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{BallastProcess, eventually, run_ballast};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_and_an_agent_run_from_config_files() {
    let etcd = EtcdServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let endpoints: Vec<String> = etcd.endpoints().iter().map(|e| format!("{e:?}")).collect();
    let coordinator_toml = dir.path().join("coordinator.toml");
    std::fs::write(
        &coordinator_toml,
        format!(
            "etcd = [{}]\ncluster-id = \"from-file\"\nlisten = \"127.0.0.1:0\"\nlease_ttl = \"2s\"\nrenew-deadline = \"1300ms\"\nsession-timeout = \"3s\"\nheartbeat-interval = \"300ms\"\noffsets-partitions = 3\n",
            endpoints.join(", ")
        ),
    )
    .unwrap();
    let coordinator = BallastProcess::start(
        &[
            "coordinator",
            "--config",
            coordinator_toml.to_str().unwrap(),
        ],
        Duration::from_secs(20),
    )
    .unwrap();
    let addrs = vec![coordinator.address().to_owned()];
    let (_, epoch) = eventually("active", WAIT, || find_active(&addrs)).await;
    assert!(epoch > 0);

    let agent_toml = dir.path().join("agent.toml");
    std::fs::write(
        &agent_toml,
        format!(
            "coordinator = \"{}\"\nbroker-id = 4\nrack = \"rack-from-file\"\ndata-dir = \"{}\"\nlisten = \"127.0.0.1:0\"\n",
            addrs[0],
            dir.path().join("b4").display()
        ),
    )
    .unwrap();
    // A flag overrides the file: the agent registers as broker 5.
    let _agent = BallastProcess::start(
        &[
            "agent",
            "--config",
            agent_toml.to_str().unwrap(),
            "--broker-id",
            "5",
        ],
        Duration::from_secs(20),
    )
    .unwrap();
    wait_live_brokers(&addrs, 1, WAIT).await;
    let brokers = on_active(&addrs, WAIT, |mut c| async move {
        c.list_brokers(pb::ListBrokersRequest {}).await
    })
    .await
    .unwrap()
    .into_inner()
    .brokers;
    assert_eq!(brokers.len(), 1);
    assert_eq!(
        (brokers[0].broker_id, brokers[0].rack.as_str()),
        (5, "rack-from-file")
    );

    let out = tokio::task::spawn_blocking(move || {
        run_ballast(&[
            "config",
            "print",
            "--role",
            "agent",
            "--config",
            agent_toml.to_str().unwrap(),
            "--",
            "--broker-id",
            "5",
        ])
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("broker-id = \"5\"  # flag"), "{text}");
    assert!(text.contains("rack = \"rack-from-file\"  # file"), "{text}");
    assert!(text.contains("log-format = \"text\"  # default"), "{text}");

    // A bad value in a file is refused by the option's name.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "lease-ttl = \"soon\"\n").unwrap();
    let out = tokio::task::spawn_blocking(move || {
        run_ballast(&[
            "coordinator",
            "--config",
            bad.to_str().unwrap(),
            "--etcd",
            "http://127.0.0.1:1",
        ])
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--lease-ttl"), "{err}");
}

/// The production layout of docs/OPERATIONS.md on loopback, every server
/// from its config file: 3 etcd members, 2 coordinators, 3 agents on three
/// racks; a topic with RF 3 and a produce/consume round trip with
/// acks=all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_production_layout_from_config_files_round_trips_records() {
    use ballast_client::consumer::{Consumer, ConsumerConfig, StartPosition};
    use ballast_client::producer::{Acks, Producer, ProducerConfig, ProducerRecord};
    use ballast_tests::etcd::EtcdCluster;

    let etcd = EtcdCluster::start(3).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let etcd_list: Vec<String> = etcd.endpoints().iter().map(|e| format!("{e:?}")).collect();
    let coordinators: Vec<BallastProcess> = (1..=2)
        .map(|i| {
            let path = dir.path().join(format!("coordinator{i}.toml"));
            std::fs::write(
                &path,
                format!(
                    "etcd = [{}]\ncluster-id = \"layout\"\nlisten = \"127.0.0.1:0\"\nlease-ttl = \"2s\"\nrenew-deadline = \"1300ms\"\nsession-timeout = \"3s\"\nheartbeat-interval = \"300ms\"\noffsets-partitions = 3\n",
                    etcd_list.join(", ")
                ),
            )
            .unwrap();
            BallastProcess::start(
                &["coordinator", "--config", path.to_str().unwrap()],
                Duration::from_secs(20),
            )
            .unwrap()
        })
        .collect();
    let addrs: Vec<String> = coordinators
        .iter()
        .map(|c| c.address().to_owned())
        .collect();
    eventually("active", WAIT, || find_active(&addrs)).await;
    let agents: Vec<BallastProcess> = (1..=3)
        .map(|id| {
            let path = dir.path().join(format!("agent{id}.toml"));
            std::fs::write(
                &path,
                format!(
                    "coordinator = \"{}\"\nbroker-id = {id}\nrack = \"rack-{id}\"\ndata-dir = \"{}\"\nlisten = \"127.0.0.1:0\"\nlog-format = \"json\"\n",
                    addrs.join(","),
                    dir.path().join(format!("b{id}")).display()
                ),
            )
            .unwrap();
            BallastProcess::start(
                &["agent", "--config", path.to_str().unwrap()],
                Duration::from_secs(20),
            )
            .unwrap()
        })
        .collect();
    wait_live_brokers(&addrs, 3, WAIT).await;
    on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: "layout".into(),
            partitions: 3,
            replication_factor: 3,
            configs: [("min.insync.replicas".to_string(), "2".to_string())]
                .into_iter()
                .collect(),
            request_id: "layout-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap();
    let bootstrap: Vec<String> = agents.iter().map(|a| a.address().to_owned()).collect();
    let producer = Producer::connect(
        bootstrap.clone(),
        ProducerConfig {
            acks: Acks::All,
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..30 {
        producer
            .send(ProducerRecord::new("layout", format!("r{i}").into_bytes()).partition(i % 3))
            .await
            .unwrap();
    }
    let mut consumer = Consumer::connect(bootstrap, ConsumerConfig::default()).unwrap();
    consumer.assign("layout", (0..3).map(|p| (p, StartPosition::Earliest)));
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while got.len() < 30 && std::time::Instant::now() < deadline {
        got.extend(consumer.poll(Duration::from_secs(2)).await.unwrap());
    }
    let mut values: Vec<String> = got
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect();
    values.sort();
    let mut want: Vec<String> = (0..30).map(|i| format!("r{i}")).collect();
    want.sort();
    assert_eq!(values, want);
}
