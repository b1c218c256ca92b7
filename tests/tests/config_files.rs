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
