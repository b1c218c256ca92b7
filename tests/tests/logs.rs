//! Structured logs on real processes: with `--log-format json` every line
//! a coordinator or an agent writes is one JSON object, and what they log
//! about a partition (an append, a reconciled push, a leader or ISR change)
//! carries its topic, partition, broker and epoch fields.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ballast_client::producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use ballast_proto::v1::{self as pb};
use ballast_tests::cluster::{find_active, on_active, start_coordinator_with, wait_live_brokers};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{BallastProcess, eventually};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// Every line of `log` as JSON (panics, naming the line, on one that is not).
fn lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The value of `field` on a line: the event's own fields first, then the
/// spans it was written in, innermost first.
fn field<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line["fields"].get(name).or_else(|| {
        line["spans"]
            .as_array()?
            .iter()
            .rev()
            .find_map(|s| s.get(name))
    })
}

fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

fn agent(coordinator: &str, id: i32, dir: &std::path::Path) -> BallastProcess {
    let (id, dir) = (id.to_string(), dir.to_string_lossy().into_owned());
    BallastProcess::start_with_env(
        &[
            "agent",
            "--coordinator",
            coordinator,
            "--broker-id",
            &id,
            "--data-dir",
            &dir,
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ],
        &[("RUST_LOG", "info,ballast_broker_agent=debug")],
        Duration::from_secs(20),
    )
    .expect("agent starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_topic_partition_broker_and_epoch() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator_with(&etcd.endpoints(), "logs", &["--log-format", "json"]);
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dirs = tempfile::tempdir().unwrap();
    let one = agent(&addrs[0], 1, &dirs.path().join("b1"));
    let mut two = agent(&addrs[0], 2, &dirs.path().join("b2"));
    wait_live_brokers(&addrs, 2, WAIT).await;
    on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: "audit".into(),
            assignments: vec![pb::ReplicaList {
                replicas: vec![1, 2],
            }],
            request_id: "audit-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap();
    let producer = Producer::connect(
        vec![one.address().to_owned(), two.address().to_owned()],
        ProducerConfig {
            acks: Acks::All,
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..3 {
        producer
            .send(ProducerRecord::new("audit", format!("r{i}").into_bytes()).partition(0))
            .await
            .unwrap();
    }

    // The leader's append names the partition, the broker and the epoch.
    let log = lines(&one.log());
    let appended = log
        .iter()
        .find(|l| {
            message(l) == "appended" && field(l, "topic").and_then(Value::as_str) == Some("audit")
        })
        .unwrap_or_else(|| panic!("no append logged:\n{}", one.log()));
    assert_eq!(field(appended, "partition"), Some(&Value::from(0)));
    assert_eq!(field(appended, "broker"), Some(&Value::from(1)));
    assert!(field(appended, "leader_epoch").is_some_and(Value::is_i64));
    assert!(field(appended, "base_offset").is_some_and(Value::is_i64));
    // The push that created it, with the coordinator's epoch.
    let reconciled = log
        .iter()
        .find(|l| {
            message(l) == "reconciled" && field(l, "topic").and_then(Value::as_str) == Some("audit")
        })
        .unwrap_or_else(|| panic!("no reconcile logged:\n{}", one.log()));
    assert_eq!(field(reconciled, "broker"), Some(&Value::from(1)));
    assert!(
        field(reconciled, "coordinator_epoch")
            .and_then(Value::as_i64)
            .is_some_and(|e| e > 0)
    );

    // Broker 2 dies: the coordinator shrinks the ISR and logs the change.
    two.kill();
    eventually("the ISR change in the coordinator's log", WAIT, || async {
        lines(&coordinator.log()).into_iter().find(|l| {
            message(l) == "partition changed"
                && field(l, "topic").and_then(Value::as_str) == Some("audit")
                && field(l, "isr").and_then(Value::as_str) == Some("[1]")
        })
    })
    .await;
    let changed = lines(&coordinator.log())
        .into_iter()
        .find(|l| {
            message(l) == "partition changed"
                && field(l, "isr").and_then(Value::as_str) == Some("[1]")
        })
        .unwrap();
    assert_eq!(field(&changed, "partition"), Some(&Value::from(0)));
    assert_eq!(field(&changed, "broker"), Some(&Value::from(1)));
    assert!(field(&changed, "leader_epoch").is_some_and(Value::is_i64));
    assert!(
        field(&changed, "coordinator_epoch")
            .and_then(Value::as_i64)
            .is_some_and(|e| e > 0)
    );
}
