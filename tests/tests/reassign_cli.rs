//! `ballast reassign generate|validate` against a real coordinator (etcd,
//! brokers standing in over the real registration API): a topic on brokers
//! 1 and 2 spread over 1–4 moves exactly its lower bound of replicas and
//! keeps every leader; the proposal validates; a bad plan is refused with
//! every problem listed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use ballast_proto::v1 as pb;
use ballast_tests::cluster::{
    BrokerStandIn, find_active, on_active, start_coordinator, wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{eventually, run_ballast};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

fn ballast(args: &[&str]) -> Output {
    run_ballast(args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_moves_the_minimum_and_validate_lists_every_problem() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator(&etcd.endpoints(), "reassign-cli");
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let _brokers: Vec<BrokerStandIn> = (1..=4)
        .map(|id| BrokerStandIn::start(id, "", addrs.clone()))
        .collect();
    wait_live_brokers(&addrs, 4, WAIT).await;
    on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: "t".into(),
            assignments: (0..4)
                .map(|i| pb::ReplicaList {
                    replicas: if i % 2 == 0 { vec![1, 2] } else { vec![2, 1] },
                })
                .collect(),
            request_id: "t-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap();
    let coord = addrs[0].as_str();

    let out = ballast(&[
        "reassign",
        "generate",
        "--topics",
        "t",
        "--brokers",
        "1,2,3,4",
        "--format",
        "json",
        "--coordinator",
        coord,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["moves"].as_u64(), v["lower_bound"].as_u64()),
        (Some(4), Some(4)),
        "{v}"
    );
    let replicas = |plan: &Value| -> BTreeMap<i64, Vec<i64>> {
        plan["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let r = p["replicas"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b.as_i64().unwrap())
                    .collect();
                (p["partition"].as_i64().unwrap(), r)
            })
            .collect()
    };
    let (before, after) = (replicas(&v["current"]), replicas(&v["proposed"]));
    for (p, r) in &after {
        assert_eq!(r[0], before[p][0], "partition {p} keeps its leader");
    }
    let mut per_broker = BTreeMap::new();
    for r in after.values() {
        for b in r {
            *per_broker.entry(*b).or_insert(0) += 1;
        }
    }
    assert_eq!(
        per_broker,
        (1..=4).map(|b| (b, 2)).collect::<BTreeMap<i64, i32>>()
    );

    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, v["proposed"].to_string()).unwrap();
    let out = ballast(&[
        "reassign",
        "validate",
        "--plan",
        plan.to_str().unwrap(),
        "--coordinator",
        coord,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("4 replica moves"));

    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"version":1,"partitions":[
            {"topic":"t","partition":0,"replicas":[1,1]},
            {"topic":"t","partition":1,"replicas":[1,9]},
            {"topic":"t","partition":2,"replicas":[1,2,3]},
            {"topic":"t","partition":7,"replicas":[1,2]},
            {"topic":"nope","partition":0,"replicas":[1,2]}]}"#,
    )
    .unwrap();
    let out = ballast(&[
        "reassign",
        "validate",
        "--plan",
        bad.to_str().unwrap(),
        "--coordinator",
        coord,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("5 problem(s)"), "{err}");
    for needle in [
        "listed twice",
        "broker 9 does not exist",
        "3 replicas, the partition has 2",
        "t-7",
        "\"nope\" does not exist",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from: {err}");
    }
}
