//! A full disk on one agent (issue 8's fault suite): the follower whose data
//! directory sits on a small tmpfs runs out of space while acks=all records
//! keep arriving. It must not crash or serve anything corrupt; the leader
//! drops it from the ISR and production continues on the other two (
//! min.insync.replicas=2) without losing an acknowledged record. When space
//! comes back (the tmpfs grows), it catches up and rejoins the ISR with the
//! leader's exact log.
//!
//! Needs `mount -t tmpfs` (root, as on CI and the dev machines); without it
//! the test fails loudly saying so (it never skips).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ballast_client::consumer::{Consumer, ConsumerConfig, StartPosition};
use ballast_client::producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use ballast_proto::v1::{self as pb};
use ballast_tests::cluster::{
    describe_partition, find_active, on_active, start_agent, start_coordinator, wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::eventually;

const WAIT: Duration = Duration::from_secs(60);
const TOPIC: &str = "full";

/// A tmpfs mounted for the test's life.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir_all(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test needs `mount -t tmpfs` (run as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { path, _dir: dir }
    }

    fn grow(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn used_bytes(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=used", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_with_a_full_disk_drops_out_and_catches_up_when_space_returns() {
    let disk = Tmpfs::mount("12m");
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator(&etcd.endpoints(), "diskfull");
    let addrs = vec![coordinator.address().to_owned()];
    eventually("active", WAIT, || find_active(&addrs)).await;
    let dirs = tempfile::tempdir().unwrap();
    let lag = ["--replica-lag-time-max", "2s"];
    let one = start_agent(&addrs[0], 1, &dirs.path().join("b1"), &lag);
    let two = start_agent(&addrs[0], 2, &dirs.path().join("b2"), &lag);
    let mut three = start_agent(&addrs[0], 3, &disk.path.join("b3"), &lag);
    wait_live_brokers(&addrs, 3, WAIT).await;
    on_active(&addrs, WAIT, |mut c| async move {
        c.create_topic(pb::CreateTopicRequest {
            name: TOPIC.into(),
            assignments: vec![pb::ReplicaList {
                replicas: vec![1, 2, 3],
            }],
            configs: [
                ("min.insync.replicas".to_owned(), "2".to_owned()),
                ("segment.bytes".to_owned(), (1 << 20).to_string()),
            ]
            .into(),
            request_id: "full-1".into(),
            ..Default::default()
        })
        .await
    })
    .await
    .unwrap();

    // 24 MiB of acks=all records: twice what agent 3's disk holds.
    let bootstrap = vec![one.address().to_owned(), two.address().to_owned()];
    let producer = Producer::connect(
        bootstrap.clone(),
        ProducerConfig {
            acks: Acks::All,
            delivery_timeout: Duration::from_secs(90),
            ..Default::default()
        },
    )
    .unwrap();
    let payload = vec![b'x'; 32 << 10];
    let mut pending = Vec::new();
    for i in 0..768u32 {
        producer.ready().await;
        let mut v = format!("r-{i:05}-").into_bytes();
        v.extend_from_slice(&payload);
        pending.push((i, producer.send(ProducerRecord::new(TOPIC, v).partition(0))));
    }
    let mut acked = BTreeSet::new();
    for (i, f) in pending {
        let meta = f
            .await
            .expect("production continues on the other two replicas");
        acked.insert((meta.offset, i));
    }
    assert_eq!(acked.len(), 768);

    // Agent 3 ran out of space, is alive, and is out of the ISR.
    assert!(used_bytes(&disk.path) > 11 << 20, "the tmpfs filled up");
    assert!(three.pid().is_some());
    let p = describe_partition(&addrs, TOPIC, 0, WAIT).await;
    assert!(!p.isr.contains(&3), "{p:?}");
    assert!(p.isr.len() >= 2, "{p:?}");
    let log = three.log();
    assert!(
        log.contains("No space left") || log.contains("follower append failed"),
        "agent 3 says why:\n{log}"
    );

    // Every acknowledged record, once, at its offset, from the leader.
    let mut consumer = Consumer::connect(bootstrap.clone(), ConsumerConfig::default()).unwrap();
    consumer.assign(TOPIC, [(0, StartPosition::Earliest)]);
    let mut seen = Vec::new();
    while seen.len() < acked.len() {
        for r in consumer.poll(Duration::from_secs(5)).await.unwrap() {
            let v = r.value.as_deref().unwrap_or_default();
            let i: u32 = std::str::from_utf8(&v[2..7]).unwrap().parse().unwrap();
            seen.push((r.offset, i));
        }
    }
    assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), acked);

    // Space returns: agent 3 catches up and rejoins.
    disk.grow("256m");
    eventually("agent 3 back in the ISR", WAIT, || async {
        let p = describe_partition(&addrs, TOPIC, 0, WAIT).await;
        (p.isr.len() == 3).then_some(())
    })
    .await;
    three.kill();
}
