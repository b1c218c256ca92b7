//! Replication end to end with real processes and real files: etcd, a
//! coordinator and three agents. The leader is killed with SIGKILL during
//! acks=all production with min.insync.replicas=2; no acknowledged record
//! is lost, and once the old leader rejoins every replica's log is the same
//! batch for batch. A torn tail written by the test is truncated when the
//! agent restarts, and the replica catches up again. A corrupt batch is
//! refused and never served.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ballast_broker_agent::log::{LogConfig, PartitionLog};
use ballast_client::consumer::{Consumer, ConsumerConfig, StartPosition};
use ballast_client::producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use ballast_proto::v1::data_client::DataClient;
use ballast_proto::v1::{self as pb};
use ballast_tests::cluster::{
    channel, describe_partition, find_active, high_watermark, on_active, start_agent,
    start_coordinator, wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{BallastProcess, eventually};

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "durable";

async fn partition0(addrs: &[String]) -> pb::PartitionDescription {
    describe_partition(addrs, TOPIC, 0, WAIT).await
}

fn partition_dir(data: &Path) -> PathBuf {
    data.join("partitions").join(format!("{TOPIC}-0"))
}

/// Every batch of a stopped replica's log, as bytes.
fn log_bytes(data: &Path) -> Vec<u8> {
    let log = PartitionLog::open(&partition_dir(data), LogConfig::default()).unwrap();
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let r = log.read(offset, 1 << 20, None).unwrap();
        if r.records.is_empty() {
            break;
        }
        out.extend_from_slice(&r.records);
        offset = r.next_offset;
    }
    out
}

fn values(records: &[ballast_client::consumer::ConsumerRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_the_leader_during_acks_all_loses_no_acknowledged_record() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator(&etcd.endpoints(), "repl1");
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dirs = tempfile::tempdir().unwrap();
    let data: Vec<PathBuf> = (1..=3)
        .map(|id| dirs.path().join(format!("b{id}")))
        .collect();
    let mut agents: BTreeMap<i32, BallastProcess> = (1..=3)
        .map(|id| (id, start_agent(&addrs[0], id, &data[id as usize - 1], &[])))
        .collect();
    let bootstrap: Vec<String> = agents.values().map(|a| a.address().to_owned()).collect();
    wait_live_brokers(&addrs, 3, WAIT).await;
    on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: TOPIC.into(),
            partitions: 1,
            replication_factor: 3,
            configs: [("min.insync.replicas".to_string(), "2".to_string())]
                .into_iter()
                .collect(),
            request_id: "durable-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap();
    let leader = partition0(&addrs).await.leader;

    let producer = Producer::connect(
        bootstrap.clone(),
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(2),
            request_timeout: Duration::from_secs(5),
            delivery_timeout: Duration::from_secs(60),
            ..Default::default()
        },
    )
    .unwrap();
    // Produce 3,000 records in order; kill the leader after the first 500
    // are acknowledged.
    let total = 3000usize;
    let mut pending = Vec::new();
    let mut acked: Vec<(String, i64)> = Vec::new();
    let mut failed = 0usize;
    let mut killed = false;
    for i in 0..total {
        producer.ready().await;
        let value = format!("r-{i:06}");
        pending.push((
            value.clone(),
            producer.send(ProducerRecord::new(TOPIC, value.into_bytes())),
        ));
        if !killed && (i + 1) % 100 == 0 {
            for (v, f) in pending.drain(..) {
                match f.await {
                    Ok(meta) => acked.push((v, meta.offset)),
                    Err(_) => failed += 1,
                }
            }
            if acked.len() >= 500 {
                agents.get_mut(&leader).unwrap().kill();
                killed = true;
            }
        }
    }
    for (v, f) in pending {
        match f.await {
            Ok(meta) => acked.push((v, meta.offset)),
            Err(_) => failed += 1,
        }
    }
    assert!(killed);
    assert!(
        acked.len() > 500,
        "production continued after the failover ({} acked, {failed} failed)",
        acked.len()
    );
    let after = partition0(&addrs).await;
    assert_ne!(after.leader, leader, "a new leader took over");

    // The old leader rejoins and is re-admitted to the ISR once caught up.
    agents
        .get_mut(&leader)
        .unwrap()
        .restart(Duration::from_secs(20))
        .unwrap();
    eventually("ISR back to 3 replicas", WAIT, || async {
        let p = partition0(&addrs).await;
        (p.isr.len() == 3).then_some(())
    })
    .await;

    // Every acknowledged record is there, at the offset it was acknowledged
    // with, and in production order.
    let mut consumer = Consumer::connect(bootstrap.clone(), ConsumerConfig::default()).unwrap();
    consumer.assign(TOPIC, [(0, StartPosition::Earliest)]);
    let mut got = Vec::new();
    let last_acked = acked.iter().map(|(_, o)| *o).max().unwrap();
    while got
        .last()
        .map_or(-1, |r: &ballast_client::consumer::ConsumerRecord| r.offset)
        < last_acked
    {
        got.extend(consumer.poll(Duration::from_secs(5)).await.unwrap());
    }
    let by_offset: BTreeMap<i64, String> = got
        .iter()
        .zip(values(&got))
        .map(|(r, v)| (r.offset, v))
        .collect();
    for (v, o) in &acked {
        assert_eq!(
            by_offset.get(o),
            Some(v),
            "acknowledged record {v} at offset {o} is missing"
        );
    }
    let vals = values(&got);
    let mut first_seen = BTreeMap::new();
    for (i, v) in vals.iter().enumerate() {
        first_seen.entry(v.clone()).or_insert(i);
    }
    let order: Vec<usize> = acked.iter().map(|(v, _)| first_seen[v]).collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "acknowledged records keep production order"
    );

    // Quiesce and compare the three logs batch for batch.
    let end = consumer.high_watermark(TOPIC, 0).unwrap();
    eventually("all replicas at the high watermark", WAIT, || async {
        let p = partition0(&addrs).await;
        (p.isr.len() == 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for a in agents.values_mut() {
        a.stop();
    }
    let logs: Vec<Vec<u8>> = data.iter().map(|d| log_bytes(d)).collect();
    assert!(!logs[0].is_empty() && end > 0);
    assert_eq!(logs[0], logs[1], "replicas 1 and 2 diverge");
    assert_eq!(logs[0], logs[2], "replicas 1 and 3 diverge");

    // A torn tail on one replica is cut at restart and re-replicated.
    let victim = if after.leader == 1 { 2 } else { 1 };
    let dir = partition_dir(&data[victim as usize - 1]);
    let segment = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let torn: Vec<u8> = logs[0][..40.min(logs[0].len())].to_vec();
    bytes.extend_from_slice(&torn);
    std::fs::write(&segment, &bytes).unwrap();
    for a in agents.values_mut() {
        a.restart(Duration::from_secs(20)).unwrap();
    }
    eventually("ISR of 3 after restart", WAIT, || async {
        let p = partition0(&addrs).await;
        (p.isr.len() == 3 && p.leader >= 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for a in agents.values_mut() {
        a.stop();
    }
    let logs2: Vec<Vec<u8>> = data.iter().map(|d| log_bytes(d)).collect();
    assert_eq!(
        logs2[victim as usize - 1],
        logs[0],
        "the torn tail was cut and nothing else lost"
    );
    assert_eq!(logs2[0], logs2[1]);
    assert_eq!(logs2[0], logs2[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_batch_is_refused_and_never_served() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator(&etcd.endpoints(), "repl2");
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dirs = tempfile::tempdir().unwrap();
    let agent = start_agent(&addrs[0], 1, &dirs.path().join("b1"), &[]);
    wait_live_brokers(&addrs, 1, WAIT).await;
    on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: TOPIC.into(),
            partitions: 1,
            replication_factor: 1,
            request_id: "c-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap();
    let mut b = ballast_record::BatchBuilder::new();
    b.append(1_000, Some(b"k"), Some(b"good"), &[]).unwrap();
    let good = b.build();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x40;
    let mut data = DataClient::new(channel(agent.address()));
    let produce = |records: Vec<u8>| pb::ProduceRequest {
        acks: 1,
        timeout_ms: 5000,
        partitions: vec![pb::ProducePartition {
            topic: TOPIC.into(),
            partition: 0,
            records,
        }],
    };
    let refused = eventually("the agent leads the partition", WAIT, || {
        let mut data = data.clone();
        let req = produce(bad.clone());
        async move {
            let r = data.produce(req).await.ok()?.into_inner().results.remove(0);
            (r.error != pb::ErrorCode::NotLeader as i32
                && r.error != pb::ErrorCode::UnknownTopicOrPartition as i32)
                .then_some(r)
        }
    })
    .await;
    assert_eq!(
        refused.error,
        pb::ErrorCode::CorruptMessage as i32,
        "{refused:?}"
    );
    let ok = data
        .produce(produce(good.clone()))
        .await
        .unwrap()
        .into_inner()
        .results
        .remove(0);
    assert_eq!((ok.error, ok.base_offset), (pb::ErrorCode::None as i32, 0));
    let fetched = data
        .fetch(pb::FetchRequest {
            replica_id: -1,
            max_wait_ms: 100,
            max_bytes: 1 << 20,
            partitions: vec![pb::FetchPartition {
                topic: TOPIC.into(),
                partition: 0,
                fetch_offset: 0,
                current_leader_epoch: -1,
                last_fetched_epoch: -1,
                partition_max_bytes: 1 << 20,
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .remove(0);
    // Exactly the good batch, with the offset and leader epoch stamped.
    let (h, _) = ballast_record::BatchHeader::verify(&fetched.records).unwrap();
    assert_eq!(h.base_offset, 0);
    assert_eq!(fetched.records.len(), good.len());
    assert_eq!(fetched.high_watermark, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_compact_and_apply_retention_in_the_background() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator(&etcd.endpoints(), "repl3");
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dirs = tempfile::tempdir().unwrap();
    let dir = dirs.path().join("b1").to_string_lossy().into_owned();
    let agent = BallastProcess::start(
        &[
            "agent",
            "--coordinator",
            &addrs[0],
            "--broker-id",
            "1",
            "--data-dir",
            &dir,
            "--listen",
            "127.0.0.1:0",
            "--retention-check-interval",
            "300ms",
        ],
        Duration::from_secs(20),
    )
    .unwrap();
    wait_live_brokers(&addrs, 1, WAIT).await;
    for (name, configs) in [
        (
            "compacted",
            vec![
                ("cleanup.policy", "compact"),
                ("segment.bytes", "1024"),
                ("delete.retention.ms", "0"),
            ],
        ),
        (
            "retained",
            vec![("retention.bytes", "2048"), ("segment.bytes", "1024")],
        ),
    ] {
        let configs: std::collections::HashMap<String, String> = configs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        on_active(&addrs, WAIT, |mut c| {
            let configs = configs.clone();
            async move {
                c.create_topic(pb::CreateTopicRequest {
                    name: name.into(),
                    partitions: 1,
                    replication_factor: 1,
                    configs,
                    request_id: name.into(),
                    ..Default::default()
                })
                .await
            }
        })
        .await
        .unwrap();
    }
    let bootstrap = vec![agent.address().to_owned()];
    let producer = Producer::connect(
        bootstrap.clone(),
        ProducerConfig {
            acks: Acks::Leader,
            linger: Duration::ZERO,
            ..Default::default()
        },
    )
    .unwrap();
    // 10 keys written 40 times each, one record per batch.
    for round in 0..40 {
        for k in 0..10 {
            let r = ProducerRecord::new("compacted", format!("v{round}").into_bytes())
                .key(format!("k{k}").into_bytes());
            producer.send(r).await.unwrap();
            producer
                .send(ProducerRecord::new("retained", vec![b'x'; 100]))
                .await
                .unwrap();
        }
    }
    let read_all = |topic: &'static str| {
        let bootstrap = bootstrap.clone();
        async move {
            let mut c = Consumer::connect(bootstrap, ConsumerConfig::default()).ok()?;
            c.assign(topic, [(0, StartPosition::Earliest)]);
            let mut all = Vec::new();
            loop {
                let got = c.poll(Duration::from_millis(300)).await.ok()?;
                if got.is_empty() {
                    return Some(all);
                }
                all.extend(got);
            }
        }
    };
    // Compaction: earlier values of each key disappear, every key keeps its
    // latest value, offsets stay increasing.
    let compacted = eventually("compaction removed superseded records", WAIT, || async {
        let all = read_all("compacted").await?;
        (all.len() < 400 && !all.is_empty()).then_some(all)
    })
    .await;
    for k in 0..10 {
        let key = format!("k{k}");
        let last = compacted
            .iter()
            .rev()
            .find(|r| r.key.as_deref() == Some(key.as_bytes()))
            .unwrap();
        assert_eq!(
            last.value.as_deref(),
            Some(&b"v39"[..]),
            "latest value of {key}"
        );
    }
    assert!(compacted.windows(2).all(|w| w[0].offset < w[1].offset));
    // Retention by size: old segments go and the log start offset moves.
    let retained = eventually("retention deleted old segments", WAIT, || async {
        let all = read_all("retained").await?;
        (all.first()?.offset > 0).then_some(all)
    })
    .await;
    assert_eq!(
        retained.last().unwrap().offset,
        399,
        "the newest records stay"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_unclean_election_the_old_leader_truncates_and_replicas_converge() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator(&etcd.endpoints(), "repl4");
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dirs = tempfile::tempdir().unwrap();
    let data: Vec<PathBuf> = (1..=2)
        .map(|id| dirs.path().join(format!("b{id}")))
        .collect();
    let mut agents: BTreeMap<i32, BallastProcess> = (1..=2)
        .map(|id| (id, start_agent(&addrs[0], id, &data[id as usize - 1], &[])))
        .collect();
    wait_live_brokers(&addrs, 2, WAIT).await;
    // Broker 1 leads; unclean election allowed.
    on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: TOPIC.into(),
            assignments: vec![pb::ReplicaList {
                replicas: vec![1, 2],
            }],
            configs: [(
                "unclean.leader.election.enable".to_string(),
                "true".to_string(),
            )]
            .into_iter()
            .collect(),
            request_id: "u-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap();
    let produce = |bootstrap: Vec<String>, prefix: &'static str, n: usize| async move {
        let p = Producer::connect(
            bootstrap,
            ProducerConfig {
                acks: Acks::Leader,
                delivery_timeout: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .unwrap();
        for i in 0..n {
            p.send(ProducerRecord::new(
                TOPIC,
                format!("{prefix}-{i}").into_bytes(),
            ))
            .await
            .unwrap();
        }
    };
    produce(vec![agents[&1].address().to_owned()], "shared", 20).await;
    // Both replicas hold all 20: the high watermark (the end of what every
    // ISR member has) reaches 20 with the ISR still [1, 2].
    let leader = agents[&1].address().to_owned();
    eventually("both replicas in sync", WAIT, || async {
        let hw = high_watermark(&leader, TOPIC, 0).await?;
        (hw == 20 && partition0(&addrs).await.isr.len() == 2).then_some(())
    })
    .await;
    // Broker 2 dies; broker 1 goes on alone (ISR [1]) and writes a suffix
    // broker 2 never sees.
    agents.get_mut(&2).unwrap().kill();
    eventually("ISR shrinks to broker 1", WAIT, || async {
        let p = partition0(&addrs).await;
        (p.isr == vec![1]).then_some(())
    })
    .await;
    produce(vec![agents[&1].address().to_owned()], "lost", 10).await;
    // Broker 1 dies, broker 2 returns: the unclean election makes it leader.
    agents.get_mut(&1).unwrap().kill();
    agents
        .get_mut(&2)
        .unwrap()
        .restart(Duration::from_secs(20))
        .unwrap();
    let p = eventually("broker 2 leads by unclean election", WAIT, || async {
        let p = partition0(&addrs).await;
        (p.leader == 2).then_some(p)
    })
    .await;
    assert_eq!(p.isr, vec![2]);
    produce(vec![agents[&2].address().to_owned()], "new", 5).await;
    // Broker 1 returns, truncates its "lost" suffix and follows broker 2.
    agents
        .get_mut(&1)
        .unwrap()
        .restart(Duration::from_secs(20))
        .unwrap();
    eventually("broker 1 back in the ISR", WAIT, || async {
        let p = partition0(&addrs).await;
        (p.isr.len() == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bootstrap = vec![agents[&2].address().to_owned()];
    let mut consumer = Consumer::connect(bootstrap, ConsumerConfig::default()).unwrap();
    consumer.assign(TOPIC, [(0, StartPosition::Earliest)]);
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while got.len() < 25 && std::time::Instant::now() < deadline {
        got.extend(consumer.poll(Duration::from_secs(5)).await.unwrap());
    }
    let vals = values(&got);
    assert_eq!(vals.len(), 25, "{vals:?}");
    assert!(vals[..20].iter().all(|v| v.starts_with("shared-")));
    assert!(vals[20..].iter().all(|v| v.starts_with("new-")));
    for a in agents.values_mut() {
        a.stop();
    }
    let logs: Vec<Vec<u8>> = data.iter().map(|d| log_bytes(d)).collect();
    assert_eq!(
        logs[0], logs[1],
        "the old leader's divergent suffix was truncated"
    );
}
