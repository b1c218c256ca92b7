//! Cluster helpers for integration tests: coordinator processes on real etcd,
//! raw gRPC clients that follow the active-coordinator hint, and a minimal
//! broker stand-in ([`BrokerStandIn`]) that registers and heartbeats over the
//! real BrokerControl API without hosting anything (for coordinator tests
//! that do not need real agents).

use std::time::Duration;

use ballast_proto::v1::admin_client::AdminClient;
use ballast_proto::v1::broker_control_client::BrokerControlClient;
use ballast_proto::v1::{self as pb};
use tonic::transport::Channel;

use crate::process::BallastProcess;

/// Metadata key carrying the active coordinator's address on a standby's
/// refusal.
pub const ACTIVE_KEY: &str = "ballast-active-coordinator";

/// Timings short enough for tests: lease 2 s, renew deadline 1.3 s, session
/// 3 s, heartbeat 300 ms.
pub const FAST: &[&str] = &[
    "--lease-ttl",
    "2s",
    "--renew-deadline",
    "1300ms",
    "--session-timeout",
    "3s",
    "--heartbeat-interval",
    "300ms",
    "--offsets-partitions",
    "3",
    "--full-sync-interval",
    "5s",
];

/// Start a coordinator process on `etcd` endpoints with [`FAST`] timings.
pub fn start_coordinator(etcd: &[String], cluster_id: &str) -> BallastProcess {
    start_coordinator_with(etcd, cluster_id, &[])
}

/// [`start_coordinator`] with extra flags; a flag of [`FAST`] given in
/// `extra` takes `extra`'s value.
pub fn start_coordinator_with(etcd: &[String], cluster_id: &str, extra: &[&str]) -> BallastProcess {
    let endpoints = etcd.join(",");
    let mut args = vec![
        "coordinator",
        "--etcd",
        &endpoints,
        "--listen",
        "127.0.0.1:0",
        "--cluster-id",
        cluster_id,
    ];
    // `extra` overrides FAST: the command refuses a flag given twice, so
    // FAST's pair is left out when `extra` sets the same flag.
    for pair in FAST.chunks(2) {
        if !extra.contains(&pair[0]) {
            args.extend_from_slice(pair);
        }
    }
    args.extend_from_slice(extra);
    BallastProcess::start(&args, Duration::from_secs(20)).expect("coordinator starts")
}

/// A lazy channel to `address`.
pub fn channel(address: &str) -> Channel {
    tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("valid address")
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

/// An admin client for `address`.
pub fn admin(address: &str) -> AdminClient<Channel> {
    AdminClient::new(channel(address)).max_decoding_message_size(256 << 20)
}

/// Ask each address for cluster info; the address of the one that says it is
/// active, with its epoch.
pub async fn find_active(addresses: &[String]) -> Option<(String, i64)> {
    for a in addresses {
        if let Ok(info) = admin(a)
            .get_cluster_info(pb::GetClusterInfoRequest {})
            .await
        {
            let info = info.into_inner();
            if info.active {
                return Some((a.clone(), info.coordinator_epoch));
            }
        }
    }
    None
}

/// The hint a standby attached to its refusal.
pub fn active_hint(status: &tonic::Status) -> Option<String> {
    status
        .metadata()
        .get(ACTIVE_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A broker that registers and heartbeats over the real API but hosts
/// nothing (its control address refuses connections, so pushes to it fail
/// and are retried by the coordinator). Stops when dropped.
#[derive(Debug)]
pub struct BrokerStandIn {
    task: tokio::task::JoinHandle<()>,
    /// Latest broker epoch (0 until registered).
    pub epoch: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl BrokerStandIn {
    /// Register broker `id` (rack optional) with whichever of `coordinators`
    /// is active and keep heartbeating, re-registering when fenced.
    pub fn start(id: i32, rack: &str, coordinators: Vec<String>) -> BrokerStandIn {
        let epoch = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
        let task = tokio::spawn(register_and_heartbeat(
            id,
            rack.to_owned(),
            "127.0.0.1:1".to_owned(),
            coordinators,
            epoch.clone(),
        ));
        BrokerStandIn { task, epoch }
    }
}

/// The register / heartbeat loop of a broker that hosts nothing itself:
/// registers broker `id` with `control` as its control and client address,
/// follows the active-coordinator hint, heartbeats every 250 ms, registers
/// again when fenced, and keeps the latest broker epoch in `epoch`.
pub async fn register_and_heartbeat(
    id: i32,
    rack: String,
    control: String,
    coordinators: Vec<String>,
    epoch: std::sync::Arc<std::sync::atomic::AtomicI64>,
) {
    let incarnation = format!("stand-in-{id}-{}", std::process::id());
    let mut target = 0usize;
    let mut registered: Option<(String, i64)> = None;
    loop {
        match &registered {
            None => {
                let address = coordinators[target % coordinators.len()].clone();
                let req = pb::RegisterBrokerRequest {
                    broker_id: id,
                    incarnation_id: incarnation.clone(),
                    endpoints: vec![pb::Endpoint {
                        name: "client".into(),
                        address: control.clone(),
                    }],
                    rack: rack.clone(),
                    disk_capacity_bytes: 0,
                    control_address: control.clone(),
                    // One stand-in process for the whole run.
                    process_id: incarnation.clone(),
                };
                match BrokerControlClient::new(channel(&address))
                    .register(req)
                    .await
                {
                    Ok(r) => {
                        let e = r.into_inner().broker_epoch;
                        epoch.store(e, std::sync::atomic::Ordering::SeqCst);
                        registered = Some((address, e));
                    }
                    Err(s) => {
                        match active_hint(&s)
                            .and_then(|h| coordinators.iter().position(|c| *c == h))
                        {
                            Some(i) => target = i,
                            None => target += 1,
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            Some((address, e)) => {
                let req = pb::BrokerHeartbeatRequest {
                    broker_id: id,
                    broker_epoch: *e,
                    coordinator_epoch: 0,
                    ..Default::default()
                };
                match BrokerControlClient::new(channel(address))
                    .heartbeat(req)
                    .await
                {
                    Ok(r) if !r.get_ref().fenced => {}
                    Ok(_) => registered = None,
                    Err(s) => {
                        // Standby now, or dead: find the active one and keep
                        // the epoch (it survives failover).
                        let e = *e;
                        let next = match active_hint(&s) {
                            Some(h) => h,
                            None => {
                                target += 1;
                                coordinators[target % coordinators.len()].clone()
                            }
                        };
                        registered = Some((next, e));
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

impl Drop for BrokerStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Run `call` against the active coordinator among `addresses`, following
/// hints and retrying through failover until `timeout`.
pub async fn on_active<T, F, Fut>(
    addresses: &[String],
    timeout: Duration,
    mut call: F,
) -> Result<T, tonic::Status>
where
    F: FnMut(AdminClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    let start = std::time::Instant::now();
    let mut i = 0usize;
    let mut target = addresses[0].clone();
    loop {
        match call(admin(&target)).await {
            Ok(v) => return Ok(v),
            Err(s) => {
                let retry = matches!(
                    s.code(),
                    tonic::Code::FailedPrecondition
                        | tonic::Code::Unavailable
                        | tonic::Code::Unknown
                        | tonic::Code::DeadlineExceeded
                );
                if !retry || start.elapsed() > timeout {
                    return Err(s);
                }
                target = match active_hint(&s) {
                    Some(h) => h,
                    None => {
                        i += 1;
                        addresses[i % addresses.len()].clone()
                    }
                };
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Start `ballast agent` for broker `id` with its data in `dir`, registering
/// with `coordinator`; `extra` flags are appended.
pub fn start_agent(
    coordinator: &str,
    id: i32,
    dir: &std::path::Path,
    extra: &[&str],
) -> BallastProcess {
    let id = id.to_string();
    let dir = dir.to_string_lossy().into_owned();
    let mut args = vec![
        "agent",
        "--coordinator",
        coordinator,
        "--broker-id",
        &id,
        "--data-dir",
        &dir,
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    BallastProcess::start(&args, Duration::from_secs(20)).expect("agent starts")
}

/// Wait until the active coordinator among `addresses` counts `n` live
/// brokers (panics with the wait's name after `timeout`).
pub async fn wait_live_brokers(addresses: &[String], n: u32, timeout: Duration) {
    crate::process::eventually(&format!("{n} live brokers"), timeout, || async {
        let info = on_active(addresses, timeout, |mut c| async move {
            c.get_cluster_info(pb::GetClusterInfoRequest {}).await
        })
        .await
        .ok()?
        .into_inner();
        (info.live_brokers == n).then_some(())
    })
    .await;
}

/// One partition as the active coordinator describes it (panics after
/// `timeout` without an active coordinator or when the partition does not
/// exist).
pub async fn describe_partition(
    addresses: &[String],
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> pb::PartitionDescription {
    let topics = on_active(addresses, timeout, |mut c| async move {
        c.describe_topics(pb::DescribeTopicsRequest {
            names: vec![topic.to_owned()],
            ..Default::default()
        })
        .await
    })
    .await
    .expect("describe_topics")
    .into_inner()
    .topics;
    topics
        .into_iter()
        .find(|t| t.name == topic)
        .and_then(|t| t.partitions.into_iter().find(|p| p.partition == partition))
        .unwrap_or_else(|| panic!("{topic}-{partition} is not described"))
}

/// The high watermark of a partition, from the agent at `agent` (its
/// leader); `None` on any refusal.
pub async fn high_watermark(agent: &str, topic: &str, partition: i32) -> Option<i64> {
    let mut data = pb::data_client::DataClient::new(channel(agent));
    let r = data
        .list_offsets(pb::ListOffsetsRequest {
            partitions: vec![pb::ListOffsetsPartition {
                topic: topic.into(),
                partition,
                timestamp: -1,
                current_leader_epoch: -1,
            }],
        })
        .await
        .ok()?
        .into_inner();
    r.results
        .first()
        .filter(|r| r.error == pb::ErrorCode::None as i32)
        .map(|r| r.offset)
}

/// The coordinator of `group` as the first answering agent of `agents`
/// reports it: (broker id, address).
pub async fn group_coordinator(agents: &[String], group: &str) -> Option<(i32, String)> {
    for a in agents {
        let mut c = pb::group_client::GroupClient::new(channel(a));
        let Ok(r) = c
            .find_coordinator(pb::FindCoordinatorRequest {
                group_id: group.into(),
            })
            .await
        else {
            continue;
        };
        let r = r.into_inner();
        if r.error == pb::ErrorCode::None as i32
            && let Some(h) = r.coordinator
            && !h.address.is_empty()
        {
            return Some((h.leader_id, h.address));
        }
    }
    None
}

/// `group`'s committed offsets from its coordinator at `address`, by
/// (topic, partition): (offset, leader epoch); `None` on any refusal.
pub async fn committed_offsets(
    address: &str,
    group: &str,
) -> Option<std::collections::BTreeMap<(String, i32), (i64, i32)>> {
    let mut c = pb::group_client::GroupClient::new(channel(address));
    let r = c
        .fetch_offsets(pb::FetchOffsetsRequest {
            group_id: group.into(),
            partitions: Vec::new(),
        })
        .await
        .ok()?
        .into_inner();
    (r.error == pb::ErrorCode::None as i32).then(|| {
        r.offsets
            .into_iter()
            .map(|o| ((o.topic, o.partition), (o.offset, o.leader_epoch)))
            .collect()
    })
}
