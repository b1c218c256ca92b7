//! Hostile admin input against a real coordinator: every invalid request
//! (negative counts, enormous partition counts, names past Kafka's limits,
//! unknown brokers and topics, duplicate replicas, unknown or malformed
//! configs, bad reassignment plans) gets a named refusal — the right gRPC
//! code and a message naming the problem — and changes nothing; the
//! coordinator keeps serving.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use ballast_proto::v1::{self as pb};
use ballast_tests::cluster::{
    admin, find_active, on_active, start_agent, start_coordinator, wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::eventually;
use tonic::Code;

const WAIT: Duration = Duration::from_secs(60);

fn create(name: &str, partitions: i32, rf: i32) -> pb::CreateTopicRequest {
    pb::CreateTopicRequest {
        name: name.into(),
        partitions,
        replication_factor: rf,
        ..Default::default()
    }
}

fn assigned(name: &str, lists: &[&[i32]]) -> pb::CreateTopicRequest {
    pb::CreateTopicRequest {
        name: name.into(),
        assignments: lists
            .iter()
            .map(|r| pb::ReplicaList {
                replicas: r.to_vec(),
            })
            .collect(),
        ..Default::default()
    }
}

fn configured(k: &str, v: &str) -> pb::CreateTopicRequest {
    pb::CreateTopicRequest {
        configs: HashMap::from([(k.to_owned(), v.to_owned())]),
        ..create("configured", 1, 1)
    }
}

fn moves(list: &[(&str, i32, &[i32])]) -> pb::ExecuteReassignmentRequest {
    pb::ExecuteReassignmentRequest {
        partitions: list
            .iter()
            .map(|(t, p, r)| pb::ReassignmentPartition {
                topic: (*t).into(),
                partition: *p,
                replicas: r.to_vec(),
            })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_admin_requests_are_refused_by_name_and_change_nothing() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator(&etcd.endpoints(), "hostile");
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dirs = tempfile::tempdir().unwrap();
    let _agents: Vec<_> = (1..=2)
        .map(|id| start_agent(&addrs[0], id, &dirs.path().join(format!("b{id}")), &[]))
        .collect();
    wait_live_brokers(&addrs, 2, WAIT).await;
    on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(create("ok", 2, 2)).await
    })
    .await
    .unwrap();
    let mut c = admin(&addrs[0]);

    let long = "x".repeat(250);
    let creates: Vec<(&str, pb::CreateTopicRequest, Code, &str)> = vec![
        (
            "empty name",
            create("", 1, 1),
            Code::InvalidArgument,
            "name",
        ),
        (
            "name past 249",
            create(&long, 1, 1),
            Code::InvalidArgument,
            "249",
        ),
        (
            "illegal character",
            create("a/b", 1, 1),
            Code::InvalidArgument,
            "a/b",
        ),
        ("dot", create(".", 1, 1), Code::InvalidArgument, "."),
        (
            "negative partitions",
            create("n", -1, 1),
            Code::InvalidArgument,
            "artition",
        ),
        (
            "no partitions",
            create("n", 0, 1),
            Code::InvalidArgument,
            "artition",
        ),
        (
            "enormous partitions",
            create("n", 2_000_000, 1),
            Code::InvalidArgument,
            "limit",
        ),
        (
            "negative factor",
            create("n", 1, -1),
            Code::InvalidArgument,
            "eplication",
        ),
        (
            "factor past brokers",
            create("n", 1, 3),
            Code::InvalidArgument,
            "larger than available brokers",
        ),
        (
            "unknown broker",
            assigned("n", &[&[1, 99]]),
            Code::InvalidArgument,
            "99",
        ),
        (
            "duplicate replica",
            assigned("n", &[&[1, 1]]),
            Code::InvalidArgument,
            "1",
        ),
        (
            "uneven lists",
            assigned("n", &[&[1, 2], &[1]]),
            Code::InvalidArgument,
            "replica",
        ),
        (
            "malformed config",
            configured("retention.ms", "soon"),
            Code::InvalidArgument,
            "retention.ms",
        ),
        (
            "unknown config",
            configured("no.such.config", "1"),
            Code::InvalidArgument,
            "no.such.config",
        ),
        (
            "negative min ISR",
            configured("min.insync.replicas", "-1"),
            Code::InvalidArgument,
            "min.insync.replicas",
        ),
        (
            "existing topic",
            create("ok", 1, 1),
            Code::AlreadyExists,
            "ok",
        ),
    ];
    for (what, req, code, needle) in creates {
        let e = c.create_topic(req).await.expect_err(what);
        assert_eq!(e.code(), code, "{what}: {e}");
        assert!(
            e.message().contains(needle),
            "{what}: {:?} lacks {needle:?}",
            e.message()
        );
    }

    let adds: Vec<(&str, pb::AddPartitionsRequest, Code)> = vec![
        (
            "unknown topic",
            pb::AddPartitionsRequest {
                name: "missing".into(),
                total_partitions: 3,
                ..Default::default()
            },
            Code::NotFound,
        ),
        (
            "fewer partitions",
            pb::AddPartitionsRequest {
                name: "ok".into(),
                total_partitions: 1,
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            "enormous",
            pb::AddPartitionsRequest {
                name: "ok".into(),
                total_partitions: 2_000_000,
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
        (
            "negative",
            pb::AddPartitionsRequest {
                name: "ok".into(),
                total_partitions: -5,
                ..Default::default()
            },
            Code::InvalidArgument,
        ),
    ];
    for (what, req, code) in adds {
        let e = c.add_partitions(req).await.expect_err(what);
        assert_eq!(e.code(), code, "{what}: {e}");
        assert!(!e.message().is_empty(), "{what}");
    }

    // One refusal lists every problem of a plan.
    let e = c
        .execute_reassignment(moves(&[
            ("missing", 0, &[1, 2]),
            ("ok", 0, &[1, 99]),
            ("ok", 1, &[2, 2]),
            ("ok", 7, &[1, 2]),
        ]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    for needle in ["missing", "99", "ok-7"] {
        assert!(
            e.message().contains(needle),
            "{:?} lacks {needle:?}",
            e.message()
        );
    }
    let e = c.execute_reassignment(moves(&[])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "empty plan: {e}");
    let e = c
        .propose_balance(pb::ProposeBalanceRequest {
            remove_brokers: vec![99],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(e.code(), Code::InvalidArgument | Code::NotFound),
        "{e}"
    );
    assert!(e.message().contains("99"), "{e}");
    let e = c
        .delete_topic(pb::DeleteTopicRequest {
            name: "missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e}");

    // Nothing changed, and the coordinator still serves.
    let topics = c
        .list_topics(pb::ListTopicsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let names: Vec<String> = topics.topics.iter().map(|t| t.name.clone()).collect();
    assert_eq!(names, ["ok"], "{topics:?}");
    let d = c
        .describe_topics(pb::DescribeTopicsRequest {
            names: vec!["ok".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(d.topics[0].partitions.len(), 2);
    let r = c
        .describe_reassignment(pb::DescribeReassignmentRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(r.partitions.is_empty(), "{r:?}");
}
