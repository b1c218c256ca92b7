//! `ballast groups` against a real cluster (etcd, a coordinator, one
//! agent): list, describe with lag, reset-offsets (dry run, then each
//! --to-* with --execute, clamped to the log), and the refusals while the
//! group has a member (delete, reset --execute), then delete.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use ballast_client::producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use ballast_proto::v1 as pb;
use ballast_tests::bin_path::ballast_bin;
use ballast_tests::cluster::{
    find_active, on_active, start_agent, start_coordinator, wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{eventually, run_ballast};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const GROUP: &str = "reporting";
const TOPIC: &str = "sales";

fn ballast(args: &[&str]) -> Output {
    run_ballast(args)
}

/// Runs a command that must succeed and print one JSON document.
fn json(args: &[&str]) -> Value {
    let out = ballast(args);
    assert!(
        out.status.success(),
        "ballast {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ballast {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Committed offset per partition from `groups describe`.
fn committed(bootstrap: &str) -> Vec<(i64, i64, i64)> {
    let d = json(&[
        "groups",
        "describe",
        GROUP,
        "--format",
        "json",
        "--bootstrap",
        bootstrap,
    ]);
    let mut rows: Vec<(i64, i64, i64)> = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().unwrap(),
                p["committed_offset"].as_i64().unwrap_or(-1),
                p["lag"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    rows.sort_unstable();
    rows
}

async fn produce(bootstrap: &str, partition: i32, n: usize) {
    let p = Producer::connect(
        vec![bootstrap.to_owned()],
        ProducerConfig {
            acks: Acks::All,
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..n {
        p.send(ProducerRecord {
            partition: Some(partition),
            ..ProducerRecord::new(TOPIC, format!("r{i}").into_bytes())
        })
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_describe_reset_and_delete_a_group() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator(&etcd.endpoints(), "groups-cli");
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dir = tempfile::tempdir().unwrap();
    let agent = start_agent(
        &addrs[0],
        1,
        &dir.path().join("b1"),
        &["--group-heartbeat-interval", "200ms"],
    );
    let b = agent.address().to_owned();
    wait_live_brokers(&addrs, 1, WAIT).await;
    on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: TOPIC.into(),
            partitions: 3,
            replication_factor: 1,
            request_id: "sales-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap();
    for p in 0..3 {
        produce(&b, p, 10).await;
    }

    // A member reads all 30 records, commits them and leaves.
    let out = ballast(&[
        "consume",
        "--group",
        GROUP,
        "--topic",
        TOPIC,
        "--from-beginning",
        "--max-messages",
        "30",
        "--timeout-ms",
        "30000",
        "--bootstrap",
        &b,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 30);

    let list = json(&["groups", "list", "--format", "json", "--bootstrap", &b]);
    let g = list["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["group_id"] == GROUP)
        .cloned()
        .unwrap_or_else(|| panic!("{GROUP} not listed: {list}"));
    assert_eq!(g["state"], "Empty", "{g}");
    assert_eq!(committed(&b), vec![(0, 10, 0), (1, 10, 0), (2, 10, 0)]);

    // Lag appears as records arrive.
    produce(&b, 0, 5).await;
    assert_eq!(committed(&b)[0], (0, 10, 5));
    // `cluster status` lists the group as lagging past a threshold of 4,
    // and not past the default of 1,000.
    let status = json(&[
        "cluster",
        "status",
        "--lag-threshold",
        "4",
        "--format",
        "json",
        "--coordinator",
        &addrs[0],
    ]);
    assert_eq!(
        status["problems"]["lagging_groups"],
        serde_json::json!([{"group": GROUP, "lag": 5, "members": 0}]),
        "{status}"
    );
    let status = json(&[
        "cluster",
        "status",
        "--format",
        "json",
        "--coordinator",
        &addrs[0],
    ]);
    assert_eq!(
        status["problems"]["lagging_groups"],
        serde_json::json!([]),
        "{status}"
    );

    // A dry run changes nothing.
    let plan = json(&[
        "groups",
        "reset-offsets",
        GROUP,
        "--topic",
        TOPIC,
        "--to-earliest",
        "--format",
        "json",
        "--bootstrap",
        &b,
    ]);
    assert_eq!(plan["executed"], false);
    assert!(
        plan["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["new_offset"] == 0)
    );
    assert_eq!(committed(&b)[0], (0, 10, 5));

    let reset = |extra: &[&str]| {
        let mut args = vec![
            "groups",
            "reset-offsets",
            GROUP,
            "--execute",
            "--format",
            "json",
            "--bootstrap",
            &b,
        ];
        args.extend_from_slice(extra);
        json(&args)
    };
    assert_eq!(
        reset(&["--topic", TOPIC, "--to-earliest"])["executed"],
        true
    );
    assert_eq!(committed(&b), vec![(0, 0, 15), (1, 0, 10), (2, 0, 10)]);
    reset(&["--topic", TOPIC, "--shift-by", "4"]);
    assert_eq!(committed(&b), vec![(0, 4, 11), (1, 4, 6), (2, 4, 6)]);
    // Clamped to the log end.
    reset(&["--topic", TOPIC, "--partition", "1", "--to-offset", "100"]);
    reset(&["--topic", &format!("{TOPIC}:0"), "--to-latest"]);
    reset(&["--topic", TOPIC, "--partition", "2", "--shift-by", "-10"]);
    assert_eq!(committed(&b), vec![(0, 15, 0), (1, 10, 0), (2, 0, 10)]);

    // With a member in the group: delete and reset --execute are refused.
    let mut member = Command::new(ballast_bin())
        .args([
            "consume",
            "--group",
            GROUP,
            "--topic",
            TOPIC,
            "--bootstrap",
            &b,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    eventually("the member joined", WAIT, || async {
        let d = json(&[
            "groups",
            "describe",
            GROUP,
            "--format",
            "json",
            "--bootstrap",
            &b,
        ]);
        (d["members"].as_array().is_some_and(|m| m.len() == 1)).then_some(())
    })
    .await;
    let refused = ballast(&["groups", "delete", GROUP, "--bootstrap", &b]);
    assert!(!refused.status.success());
    let refused = ballast(&[
        "groups",
        "reset-offsets",
        GROUP,
        "--topic",
        TOPIC,
        "--to-earliest",
        "--execute",
        "--bootstrap",
        &b,
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("member"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let _ = Command::new("kill")
        .args(["-TERM", &member.id().to_string()])
        .status();
    let _ = member.wait();

    eventually("the member left", WAIT, || async {
        let d = json(&[
            "groups",
            "describe",
            GROUP,
            "--format",
            "json",
            "--bootstrap",
            &b,
        ]);
        (d["state"] == "Empty").then_some(())
    })
    .await;
    let deleted = json(&[
        "groups",
        "delete",
        GROUP,
        "--format",
        "json",
        "--bootstrap",
        &b,
    ]);
    assert_eq!(deleted["deleted"], GROUP);
    let list = json(&["groups", "list", "--format", "json", "--bootstrap", &b]);
    assert!(
        list["groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["group_id"] != GROUP)
    );
    assert!(
        !ballast(&["groups", "describe", GROUP, "--bootstrap", &b])
            .status
            .success()
    );
}
