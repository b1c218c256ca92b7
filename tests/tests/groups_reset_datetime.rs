//! `ballast groups reset-offsets --to-datetime` against a real cluster
//! (etcd, a coordinator, one agent).
//!
//! Records are produced with explicit create times, one minute apart
//! (record i of each partition at `BASE + i min`), each in its own batch.
//! A member reads them all and commits the log end. Then: a dry run by an
//! RFC 3339 time between records 4 and 5 plans offset 5 and changes
//! nothing; a time in milliseconds equal to record 7's plans 7 (the first
//! record *at or after* the time); `--execute` commits the plan, as
//! `groups describe` shows; a time after the last record plans the log end
//! and one before the first plans the log start.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ballast_client::producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use ballast_proto::v1 as pb;
use ballast_tests::cluster::{
    find_active, on_active, start_agent, start_coordinator, wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{eventually, run_ballast};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);
const GROUP: &str = "clickstream";
const TOPIC: &str = "clicks";
const MINUTE: i64 = 60_000;
const PER_PARTITION: i64 = 10;

/// Runs a command that must succeed and print one JSON document.
fn json(args: &[&str]) -> Value {
    let out = run_ballast(args);
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

/// `YYYY-MM-DDTHH:MM:SSZ` for `ms` since the epoch (whole seconds), by
/// Howard Hinnant's civil-from-days.
fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// (partition, current, new, log start, log end) rows of a reset plan.
fn plan_rows(plan: &Value) -> Vec<(i64, i64, i64, i64, i64)> {
    let mut rows: Vec<_> = plan["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().unwrap(),
                p["current_offset"].as_i64().unwrap_or(-1),
                p["new_offset"].as_i64().unwrap(),
                p["log_start_offset"].as_i64().unwrap(),
                p["log_end_offset"].as_i64().unwrap(),
            )
        })
        .collect();
    rows.sort_unstable();
    rows
}

/// (partition, committed offset) from `groups describe`.
fn committed(bootstrap: &str) -> Vec<(i64, i64)> {
    let d = json(&[
        "groups",
        "describe",
        GROUP,
        "--format",
        "json",
        "--bootstrap",
        bootstrap,
    ]);
    let mut rows: Vec<(i64, i64)> = d["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().unwrap(),
                p["committed_offset"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    rows.sort_unstable();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_offsets_to_a_datetime_plans_and_commits_the_first_record_at_or_after_it() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator(&etcd.endpoints(), "groups-datetime");
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
            partitions: 2,
            replication_factor: 1,
            request_id: "clicks-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap();

    // Two hours ago, on a whole minute: record i at BASE + i minutes.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base = (now_ms - 120 * MINUTE) / MINUTE * MINUTE;
    let producer = Producer::connect(
        vec![b.clone()],
        ProducerConfig {
            acks: Acks::All,
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..PER_PARTITION {
        for partition in 0..2 {
            // Awaited one by one: each record is its own batch.
            producer
                .send(ProducerRecord {
                    partition: Some(partition),
                    timestamp: Some(base + i * MINUTE),
                    ..ProducerRecord::new(TOPIC, format!("c{partition}-{i}").into_bytes())
                })
                .await
                .unwrap();
        }
    }

    // A member reads everything, commits the log end and leaves.
    let out = run_ballast(&[
        "consume",
        "--group",
        GROUP,
        "--topic",
        TOPIC,
        "--from-beginning",
        "--max-messages",
        "20",
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
    assert_eq!(committed(&b), vec![(0, 10), (1, 10)]);

    let reset = |to: &str, extra: &[&str]| {
        let mut args = vec![
            "groups",
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-datetime",
            to,
            "--format",
            "json",
            "--bootstrap",
            &b,
        ];
        args.extend_from_slice(extra);
        json(&args)
    };

    // Between records 4 (BASE + 4 min) and 5 (BASE + 5 min): a dry run
    // plans 5 and commits nothing.
    let between = rfc3339(base + 4 * MINUTE + 30_000);
    let plan = reset(&between, &[]);
    assert_eq!(plan["executed"], false, "{plan}");
    assert_eq!(
        plan_rows(&plan),
        vec![(0, 10, 5, 0, 10), (1, 10, 5, 0, 10)],
        "--to-datetime {between}: {plan}"
    );
    assert_eq!(committed(&b), vec![(0, 10), (1, 10)]);

    // Milliseconds, exactly record 7's time: at or after, so 7.
    let exact = (base + 7 * MINUTE).to_string();
    let plan = reset(&exact, &["--partition", "1"]);
    assert_eq!(plan_rows(&plan), vec![(1, 10, 7, 0, 10)], "{plan}");
    // ... and one millisecond later: 8.
    let plan = reset(&(base + 7 * MINUTE + 1).to_string(), &["--partition", "1"]);
    assert_eq!(plan_rows(&plan), vec![(1, 10, 8, 0, 10)], "{plan}");

    // Executed: the plan is what is committed.
    let plan = reset(&between, &["--execute"]);
    assert_eq!(plan["executed"], true, "{plan}");
    assert_eq!(committed(&b), vec![(0, 5), (1, 5)]);
    reset(&exact, &["--partition", "1", "--execute"]);
    assert_eq!(committed(&b), vec![(0, 5), (1, 7)]);

    // After the last record: the log end. Before the first: the log start.
    let late = rfc3339(base + PER_PARTITION * MINUTE);
    reset(&late, &["--execute"]);
    assert_eq!(committed(&b), vec![(0, 10), (1, 10)]);
    let early = rfc3339(base - MINUTE);
    reset(&early, &["--execute"]);
    assert_eq!(committed(&b), vec![(0, 0), (1, 0)]);
}

#[test]
fn rfc3339_of_known_instants() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_714_564_800_000), "2024-05-01T12:00:00Z");
    assert_eq!(rfc3339(951_782_400_000 + 1_500), "2000-02-29T00:00:01Z");
}
