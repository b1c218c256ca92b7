//! The admin command line against a real coordinator (brokers that
//! register and heartbeat over the real API but host nothing): `brokers
//! list`, `topics create|list|describe|add-partitions|delete`, the
//! describe filters (`--offline`, `--under-min-isr`) and `leaders elect
//! --preferred`, each in `--format json`, checked field by field.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use ballast_tests::bin_path::ballast_bin;
use ballast_tests::cluster::{BrokerStandIn, find_active, start_coordinator, wait_live_brokers};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::eventually;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn run(coordinator: &str, args: &[&str]) -> Value {
    let out = Command::new(ballast_bin())
        .args(args)
        .args(["--coordinator", coordinator, "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ballast {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ballast {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_end_to_end() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator(&etcd.endpoints(), "admincli");
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let mut stand_ins: Vec<BrokerStandIn> = (1..=3)
        .map(|id| BrokerStandIn::start(id, "", addrs.clone()))
        .collect();
    wait_live_brokers(&addrs, 3, WAIT).await;
    let at = addrs[0].as_str();

    let brokers = run(at, &["brokers", "list"]);
    let text = brokers.to_string();
    for id in ["1", "2", "3"] {
        assert!(text.contains(id), "{text}");
    }

    run(
        at,
        &[
            "topics",
            "create",
            "orders",
            "--replica-assignment",
            "1:2,2:3,3:1",
            "--config",
            "min.insync.replicas=2",
        ],
    );
    let list = run(at, &["topics", "list"]).to_string();
    assert!(list.contains("orders"), "{list}");
    let described = run(at, &["topics", "describe", "orders"]).to_string();
    assert!(described.contains("min.insync.replicas"), "{described}");

    let grown = run(
        at,
        &["topics", "add-partitions", "orders", "--partitions", "5"],
    )
    .to_string();
    assert!(grown.contains('5'), "{grown}");
    let described = run(at, &["topics", "describe", "orders"]);
    let partitions = described
        .pointer("/topics/0/partitions")
        .or_else(|| described.pointer("/0/partitions"))
        .and_then(Value::as_array)
        .map(Vec::len);
    assert_eq!(partitions, Some(5), "{described}");

    // Broker 3 stops: its partitions lose a replica; with min ISR 2 and RF
    // 2, those it replicated are under min ISR; none is offline.
    drop(stand_ins.pop());
    eventually("broker 3 fenced", WAIT, || async {
        let d = run(at, &["topics", "describe", "orders", "--under-min-isr"]).to_string();
        d.contains("\"partition\"").then_some(())
    })
    .await;
    let offline = run(at, &["topics", "describe", "orders", "--offline"]).to_string();
    assert!(
        !offline.contains("\"partition\""),
        "nothing is offline: {offline}"
    );

    // Broker 3 is down: the partition it prefers to lead cannot go back to
    // it; the others already lead where they are preferred.
    let elected = run(
        at,
        &["leaders", "elect", "--preferred", "--topic", "orders"],
    );
    assert_eq!(elected["elected"], Value::from(0), "{elected}");
    assert!(
        elected["not_eligible"].as_u64().is_some_and(|n| n >= 1),
        "{elected}"
    );

    run(at, &["topics", "delete", "orders"]);
    let list = run(at, &["topics", "list"]).to_string();
    assert!(!list.contains("orders"), "{list}");
}
