//! How the coordinator delivers desired state to an agent, seen from the
//! agent's side: a real coordinator on real etcd pushes to a recording
//! agent (a tonic `AgentControl` server in this process that registers and
//! heartbeats over the real API). Checked:
//!
//! * the first push after registration is a full sync;
//! * with nothing changing, a full sync is repeated every
//!   `--full-sync-interval` (the safety net);
//! * the partitions of one topic creation arrive batched (a few requests,
//!   not one per partition), every one of them;
//! * a push the agent fails is retried with a growing backoff (100 ms,
//!   then doubled), and the first push that lands after failures is a full
//!   sync that carries what changed meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballast_proto::v1::agent_control_server::{AgentControl, AgentControlServer};
use ballast_proto::v1::{self as pb};
use ballast_tests::cluster::{
    find_active, on_active, register_and_heartbeat, start_coordinator_with, wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::eventually;

const WAIT: Duration = Duration::from_secs(60);

/// One Apply the agent received.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    full: bool,
    version: u64,
    coordinator_epoch: i64,
    partitions: Vec<(String, i32)>,
    /// Whether the agent answered it with a failure.
    failed: bool,
}

#[derive(Debug, Default)]
struct Recorder {
    received: Mutex<Vec<Received>>,
    /// Fail this many of the next Apply calls with UNAVAILABLE.
    fail_next: AtomicUsize,
}

impl Recorder {
    fn snapshot(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[derive(Debug, Clone)]
struct RecordingAgent(Arc<Recorder>);

#[tonic::async_trait]
impl AgentControl for RecordingAgent {
    async fn apply(
        &self,
        request: tonic::Request<pb::ApplyRequest>,
    ) -> Result<tonic::Response<pb::ApplyResponse>, tonic::Status> {
        let req = request.into_inner();
        let failed = self
            .0
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        self.0
            .received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Received {
                at: Instant::now(),
                full: req.full,
                version: req.version,
                coordinator_epoch: req.coordinator_epoch,
                partitions: req
                    .partitions
                    .iter()
                    .map(|p| (p.topic.clone(), p.partition))
                    .collect(),
                failed,
            });
        if failed {
            return Err(tonic::Status::unavailable("recording agent: told to fail"));
        }
        Ok(tonic::Response::new(pb::ApplyResponse {
            applied_version: req.version,
            hosted: Vec::new(),
        }))
    }

    async fn get_state(
        &self,
        _: tonic::Request<pb::GetAgentStateRequest>,
    ) -> Result<tonic::Response<pb::GetAgentStateResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::GetAgentStateResponse::default()))
    }
}

async fn create_topic(addrs: &[String], name: &str, partitions: i32) {
    let name = name.to_owned();
    on_active(addrs, WAIT, move |mut c| {
        let name = name.clone();
        async move {
            c.create_topic(pb::CreateTopicRequest {
                request_id: format!("{name}-1"),
                name,
                partitions,
                replication_factor: 1,
                ..Default::default()
            })
            .await
        }
    })
    .await
    .expect("topic created");
}

/// Partitions of `topic` delivered by successful pushes at or after `from`.
fn delivered(received: &[Received], topic: &str, from: usize) -> BTreeSet<i32> {
    received[from..]
        .iter()
        .filter(|r| !r.failed)
        .flat_map(|r| r.partitions.iter())
        .filter(|(t, _)| t == topic)
        .map(|(_, p)| *p)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_are_full_at_registration_periodic_batched_and_retried_with_backoff() {
    let etcd = EtcdServer::start().unwrap();
    let coordinator = start_coordinator_with(
        &etcd.endpoints(),
        "push-delivery",
        &["--full-sync-interval", "1s"],
    );
    let addrs = vec![coordinator.address().to_owned()];
    let (_, epoch) = eventually("active", WAIT, || find_active(&addrs)).await;

    let recorder = Arc::new(Recorder::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let control = listener.local_addr().unwrap().to_string();
    let server = tokio::spawn({
        let agent = RecordingAgent(Arc::clone(&recorder));
        async move {
            let _ = tonic::transport::Server::builder()
                .add_service(AgentControlServer::new(agent))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await;
        }
    });
    let broker_epoch = Arc::new(AtomicI64::new(0));
    let registrar = tokio::spawn(register_and_heartbeat(
        1,
        String::new(),
        control,
        addrs.clone(),
        Arc::clone(&broker_epoch),
    ));
    wait_live_brokers(&addrs, 1, WAIT).await;

    // 1. The first push after registration is a full sync, at the active
    //    coordinator's epoch.
    let first = eventually("a first push", WAIT, || {
        let r = recorder.snapshot();
        async move { r.first().cloned() }
    })
    .await;
    assert!(first.full, "the first push is a full sync: {first:?}");
    assert_eq!(first.coordinator_epoch, epoch);

    // 2. Nothing changes for a while: full syncs keep coming, about one
    //    per second (the interval), not more often than the interval.
    let quiet_from = recorder.snapshot().len();
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let quiet: Vec<Received> = recorder.snapshot()[quiet_from..].to_vec();
    let fulls: Vec<&Received> = quiet.iter().filter(|r| r.full && !r.failed).collect();
    assert!(
        fulls.len() >= 2,
        "at least two periodic full syncs in 3.5 s at a 1 s interval: {quiet:?}"
    );
    for w in fulls.windows(2) {
        let gap = w[1].at - w[0].at;
        assert!(
            gap >= Duration::from_millis(900),
            "periodic full syncs are an interval apart, got {gap:?}"
        );
    }
    let versions: Vec<u64> = recorder.snapshot().iter().map(|r| r.version).collect();
    assert!(
        versions.windows(2).all(|w| w[1] > w[0]),
        "versions increase: {versions:?}"
    );

    // 3. A topic of 200 partitions, all on this broker: every partition
    //    arrives, in a handful of requests rather than 200.
    let before = recorder.snapshot().len();
    create_topic(&addrs, "batched", 200).await;
    eventually("all 200 partitions delivered", WAIT, || {
        let r = recorder.snapshot();
        async move { (delivered(&r, "batched", before).len() == 200).then_some(()) }
    })
    .await;
    let carrying = recorder.snapshot()[before..]
        .iter()
        .filter(|r| !r.full && r.partitions.iter().any(|(t, _)| t == "batched"))
        .count();
    assert!(
        carrying <= 5,
        "the creation's partitions came in {carrying} delta pushes, not batched"
    );

    // 4. The agent fails the next four pushes; a change made meanwhile is
    //    retried with backoff and lands in a full sync.
    let before = recorder.snapshot().len();
    recorder.fail_next.store(4, Ordering::SeqCst);
    create_topic(&addrs, "after-failures", 8).await;
    eventually("the new topic delivered after the failures", WAIT, || {
        let r = recorder.snapshot();
        async move { (delivered(&r, "after-failures", before).len() == 8).then_some(()) }
    })
    .await;
    let tail: Vec<Received> = recorder.snapshot()[before..].to_vec();
    let failed: Vec<&Received> = tail.iter().filter(|r| r.failed).collect();
    assert_eq!(failed.len(), 4, "{tail:?}");
    for (i, w) in failed.windows(2).enumerate() {
        let gap = w[1].at - w[0].at;
        let backoff = Duration::from_millis(100 << i);
        assert!(
            gap >= backoff - Duration::from_millis(20),
            "retry {} came {gap:?} after the failure, before its {backoff:?} backoff",
            i + 1
        );
    }
    let first_success = tail
        .iter()
        .find(|r| !r.failed && r.at > failed[3].at)
        .expect("a push lands after the failures");
    assert!(
        first_success.full,
        "the first push after failures is a full sync: {first_success:?}"
    );
    assert!(
        first_success
            .partitions
            .iter()
            .any(|(t, _)| t == "after-failures"),
        "the full sync carries the change made meanwhile"
    );
    assert!(
        first_success.at - failed[3].at >= Duration::from_millis(780),
        "the fourth retry waited its 800 ms backoff"
    );

    registrar.abort();
    server.abort();
}
