//! The agent's control side over real gRPC on loopback: registration,
//! heartbeats, pushes and their fencing, re-registration, standby redirects.
//!
//! The coordinator here is a TEST DOUBLE ([`CoordinatorDouble`]): a tiny
//! in-test BrokerControl server that hands out broker epochs, counts
//! heartbeats and can be told to fence, refuse or redirect. The real
//! coordinator is `ballast-coordinator`; cross-process tests against it live
//! in `tests/`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ballast_broker_agent::{ACTIVE_COORDINATOR_KEY, AgentConfig, AgentHandle, ERROR_REASON_KEY};
use ballast_proto::v1::agent_control_client::AgentControlClient;
use ballast_proto::v1::broker_control_server::{BrokerControl, BrokerControlServer};
use ballast_proto::v1::{
    AlterIsrRequest, AlterIsrResponse, ApplyRequest, AssignedPartition, BrokerHeartbeatRequest,
    BrokerHeartbeatResponse, BrokerInfo, ClusterMetadata, GetAgentStateRequest,
    GetAgentStateResponse, PartitionLeader, PartitionRef, RegisterBrokerRequest,
    RegisterBrokerResponse, ReplicaRole,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

/// Generous bound for anything the tests wait for.
const WAIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Test double of the coordinator's BrokerControl service.
// ---------------------------------------------------------------------------

/// What the double saw and how it behaves.
#[derive(Debug, Default)]
struct DoubleState {
    /// Every Register call that was accepted, with the epoch it got.
    registrations: Vec<(RegisterBrokerRequest, i64)>,
    /// Register calls refused (standby or duplicate).
    refused_registrations: usize,
    heartbeats: Vec<BrokerHeartbeatRequest>,
    /// Live broker epoch per broker id.
    live: HashMap<i32, i64>,
    last_epoch: i64,
    /// Answer the next heartbeat `fenced = true`.
    fence_next_heartbeat: bool,
    /// Act as a standby redirecting to this address.
    standby_for: Option<String>,
    /// Refuse registrations with ALREADY_EXISTS (another agent holds the id).
    refuse_as_duplicate: bool,
}

#[derive(Debug, Clone)]
struct DoubleService(Arc<Mutex<DoubleState>>);

fn lock(m: &Mutex<DoubleState>) -> std::sync::MutexGuard<'_, DoubleState> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn redirect(to: &str) -> Status {
    let mut s = Status::failed_precondition("not the active coordinator");
    s.metadata_mut()
        .insert(ACTIVE_COORDINATOR_KEY, to.parse().expect("ascii address"));
    s
}

#[tonic::async_trait]
impl BrokerControl for DoubleService {
    async fn register(
        &self,
        request: Request<RegisterBrokerRequest>,
    ) -> Result<Response<RegisterBrokerResponse>, Status> {
        let req = request.into_inner();
        let mut st = lock(&self.0);
        if let Some(to) = st.standby_for.clone() {
            st.refused_registrations += 1;
            return Err(redirect(&to));
        }
        if st.refuse_as_duplicate {
            st.refused_registrations += 1;
            return Err(Status::already_exists(format!(
                "broker {} is registered by another live agent",
                req.broker_id
            )));
        }
        st.last_epoch += 100;
        let epoch = st.last_epoch;
        st.live.insert(req.broker_id, epoch);
        st.registrations.push((req, epoch));
        Ok(Response::new(RegisterBrokerResponse {
            broker_epoch: epoch,
            coordinator_epoch: 1,
            heartbeat_interval_ms: 50,
            session_timeout_ms: 3_000,
            cluster_id: "test-cluster".into(),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<BrokerHeartbeatRequest>,
    ) -> Result<Response<BrokerHeartbeatResponse>, Status> {
        let req = request.into_inner();
        let mut st = lock(&self.0);
        if let Some(to) = st.standby_for.clone() {
            return Err(redirect(&to));
        }
        let live = st.live.get(&req.broker_id).copied();
        let (broker_id, broker_epoch) = (req.broker_id, req.broker_epoch);
        st.heartbeats.push(req);
        let fenced = std::mem::take(&mut st.fence_next_heartbeat) || live != Some(broker_epoch);
        if fenced {
            st.live.remove(&broker_id);
        }
        Ok(Response::new(BrokerHeartbeatResponse {
            coordinator_epoch: 1,
            fenced,
        }))
    }

    async fn alter_isr(
        &self,
        _request: Request<AlterIsrRequest>,
    ) -> Result<Response<AlterIsrResponse>, Status> {
        Err(Status::unimplemented("test double"))
    }
}

/// A running BrokerControl test double on a free loopback port.
struct CoordinatorDouble {
    addr: SocketAddr,
    state: Arc<Mutex<DoubleState>>,
    cancel: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl CoordinatorDouble {
    async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(DoubleState::default()));
        let cancel = CancellationToken::new();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(BrokerControlServer::new(DoubleService(Arc::clone(&state))))
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    cancel.clone().cancelled_owned(),
                ),
        );
        Ok(Self {
            addr,
            state,
            cancel,
            server,
        })
    }

    fn address(&self) -> String {
        self.addr.to_string()
    }

    fn with<T>(&self, f: impl FnOnce(&mut DoubleState) -> T) -> T {
        f(&mut lock(&self.state))
    }

    async fn stop(self) -> Result<()> {
        self.cancel.cancel();
        self.server.await??;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

fn config(broker_id: i32, data_dir: &Path, coordinators: &[String]) -> AgentConfig {
    let mut c = AgentConfig::new(broker_id, data_dir, coordinators.to_vec());
    c.rack = Some("a".into());
    c.disk_capacity_bytes = Some(1 << 30);
    c
}

async fn control_client(agent: &AgentHandle) -> Result<AgentControlClient<Channel>> {
    Ok(AgentControlClient::connect(format!("http://{}", agent.local_addr())).await?)
}

async fn state(client: &mut AgentControlClient<Channel>) -> Result<GetAgentStateResponse> {
    Ok(client
        .get_state(GetAgentStateRequest {})
        .await?
        .into_inner())
}

/// Polls `check` until it returns `Some`, failing after [`WAIT`].
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the agent reports a registration with a broker epoch the
/// double handed out, and returns that epoch.
async fn registered_epoch(
    client: &mut AgentControlClient<Channel>,
    double: &CoordinatorDouble,
    not: i64,
) -> Result<i64> {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = state(client).await?;
        let live = double.with(|st| st.live.get(&s.broker_id).copied());
        if s.registered && s.broker_epoch != not && live == Some(s.broker_epoch) {
            return Ok(s.broker_epoch);
        }
        if Instant::now() > deadline {
            bail!("agent did not register (last state {s:?})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn partition(topic: &str, p: i32, leader: i32, leader_epoch: i32) -> AssignedPartition {
    AssignedPartition {
        topic: topic.into(),
        topic_id: format!("{topic}-id"),
        partition: p,
        replicas: vec![1, 2, 3],
        leader,
        leader_epoch,
        isr: vec![1, 2, 3],
        partition_epoch: leader_epoch,
        configs: Default::default(),
        ..Default::default()
    }
}

fn push(coordinator_epoch: i64, broker_epoch: i64, version: u64) -> ApplyRequest {
    ApplyRequest {
        coordinator_epoch,
        broker_id: 1,
        broker_epoch,
        full: true,
        partitions: vec![],
        removed: vec![],
        version,
        metadata: None,
        ..Default::default()
    }
}

fn incarnation_on_disk(data_dir: &Path) -> Result<String> {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("agent.json"))?)?;
    meta["incarnation_id"]
        .as_str()
        .map(str::to_owned)
        .context("agent.json has no incarnation_id")
}

fn reason(status: &Status) -> String {
    status
        .metadata()
        .get(ERROR_REASON_KEY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------------------
// Tests.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn registers_heartbeats_and_reconciles_pushes() -> Result<()> {
    let coordinator = CoordinatorDouble::start().await?;
    let dir = tempfile::tempdir()?;
    let agent =
        ballast_broker_agent::start(config(1, dir.path(), &[coordinator.address()])).await?;
    let mut client = control_client(&agent).await?;

    // Registration carries the data directory's incarnation id and identity.
    let epoch = registered_epoch(&mut client, &coordinator, 0).await?;
    let (reg, _) = coordinator.with(|st| st.registrations[0].clone());
    assert_eq!(reg.broker_id, 1);
    assert_eq!(reg.incarnation_id, incarnation_on_disk(dir.path())?);
    assert_eq!(reg.incarnation_id, agent.incarnation_id());
    assert_eq!(reg.rack, "a");
    assert_eq!(reg.disk_capacity_bytes, 1 << 30);
    assert_eq!(reg.control_address, agent.local_addr().to_string());
    assert_eq!(reg.endpoints[0].name, "client");

    // Heartbeats arrive with the registration's epoch.
    eventually("three heartbeats", || {
        coordinator.with(|st| {
            (st.heartbeats
                .iter()
                .filter(|h| h.broker_epoch == epoch)
                .count()
                >= 3)
                .then_some(())
        })
    })
    .await?;

    // A full push creates directories and gives roles.
    let mut full = push(7, epoch, 1);
    full.partitions = vec![partition("orders", 0, 1, 3), partition("orders", 1, 2, 4)];
    full.metadata = Some(ClusterMetadata {
        brokers: vec![BrokerInfo {
            broker_id: 1,
            ..Default::default()
        }],
        leaders: vec![PartitionLeader {
            topic: "orders".into(),
            partition: 0,
            leader: 1,
            leader_epoch: 3,
        }],
        offsets_partitions: 50,
    });
    let resp = client.apply(full).await?.into_inner();
    assert_eq!(resp.applied_version, 1);
    assert_eq!(resp.hosted.len(), 2);
    for p in ["orders-0", "orders-1"] {
        assert!(
            dir.path()
                .join("partitions")
                .join(p)
                .join("partition.json")
                .is_file()
        );
    }
    let s = state(&mut client).await?;
    let roles: Vec<_> = s
        .hosted
        .iter()
        .map(|h| (h.partition, h.role(), h.leader_epoch))
        .collect();
    assert_eq!(
        roles,
        vec![(0, ReplicaRole::Leader, 3), (1, ReplicaRole::Follower, 4)]
    );
    assert_eq!(s.coordinator_epoch, 7);
    assert_eq!(s.metadata.as_ref().map(|m| m.offsets_partitions), Some(50));
    assert_eq!(s.partitions.len(), 2);

    // The next heartbeat reports the coordinator epoch now accepted.
    eventually("a heartbeat with coordinator epoch 7", || {
        coordinator.with(|st| {
            st.heartbeats
                .iter()
                .any(|h| h.coordinator_epoch == 7)
                .then_some(())
        })
    })
    .await?;

    // A delta removes one.
    let mut delta = push(7, epoch, 2);
    delta.full = false;
    delta.removed = vec![PartitionRef {
        topic: "orders".into(),
        partition: 1,
    }];
    let resp = client.apply(delta).await?.into_inner();
    assert_eq!(resp.applied_version, 2);
    assert_eq!(resp.hosted.len(), 1);
    assert!(!dir.path().join("partitions/orders-1").exists());
    assert!(dir.path().join("partitions/orders-0").exists());

    agent.shutdown().await?;
    coordinator.stop().await
}

#[tokio::test]
async fn fencing_survives_a_restart_and_the_old_broker_epoch_is_refused() -> Result<()> {
    let coordinator = CoordinatorDouble::start().await?;
    let dir = tempfile::tempdir()?;
    let cfg = config(1, dir.path(), &[coordinator.address()]);

    let agent = ballast_broker_agent::start(cfg.clone()).await?;
    let mut client = control_client(&agent).await?;
    let first_epoch = registered_epoch(&mut client, &coordinator, 0).await?;
    let mut p = push(5, first_epoch, 1);
    p.partitions = vec![partition("t", 0, 1, 0)];
    client.apply(p).await?;

    // A second agent cannot use the same data directory meanwhile.
    let err = ballast_broker_agent::start(cfg.clone()).await.unwrap_err();
    assert!(
        err.to_string().contains("is in use by another agent"),
        "{err}"
    );

    drop(client);
    agent.shutdown().await?;
    let agent = ballast_broker_agent::start(cfg).await?;
    let mut client = control_client(&agent).await?;

    // Before any push, the restarted agent reports what is on disk.
    let s = state(&mut client).await?;
    assert_eq!(s.coordinator_epoch, 5);
    assert_eq!(s.hosted.len(), 1);
    assert_eq!(s.hosted[0].role(), ReplicaRole::Leader);

    // Same incarnation, new broker epoch.
    let second_epoch = registered_epoch(&mut client, &coordinator, first_epoch).await?;
    assert!(second_epoch > first_epoch);
    let incarnations: Vec<_> = coordinator.with(|st| {
        st.registrations
            .iter()
            .map(|(r, _)| r.incarnation_id.clone())
            .collect()
    });
    assert_eq!(incarnations.len(), 2);
    assert_eq!(incarnations[0], incarnations[1]);

    // A deposed coordinator is refused, also after the restart.
    let stale = client.apply(push(4, second_epoch, 9)).await.unwrap_err();
    assert_eq!(stale.code(), Code::FailedPrecondition);
    assert_eq!(stale.message(), "stale coordinator epoch 4 < 5");
    assert_eq!(reason(&stale), "STALE_COORDINATOR_EPOCH");

    // A push meant for the previous incarnation is refused.
    let old = client.apply(push(5, first_epoch, 9)).await.unwrap_err();
    assert_eq!(old.code(), Code::FailedPrecondition);
    assert!(
        old.message().starts_with("stale broker epoch"),
        "{}",
        old.message()
    );
    assert_eq!(reason(&old), "STALE_BROKER_EPOCH");

    // Nothing changed on disk.
    assert!(dir.path().join("partitions/t-0/partition.json").is_file());
    // The current epoch is accepted.
    let ok = client.apply(push(6, second_epoch, 1)).await?.into_inner();
    assert!(ok.hosted.is_empty());

    agent.shutdown().await?;
    coordinator.stop().await
}

#[tokio::test]
async fn a_fenced_heartbeat_makes_the_agent_register_again() -> Result<()> {
    let coordinator = CoordinatorDouble::start().await?;
    let dir = tempfile::tempdir()?;
    let agent =
        ballast_broker_agent::start(config(1, dir.path(), &[coordinator.address()])).await?;
    let mut client = control_client(&agent).await?;
    let first = registered_epoch(&mut client, &coordinator, 0).await?;

    coordinator.with(|st| st.fence_next_heartbeat = true);
    let second = registered_epoch(&mut client, &coordinator, first).await?;
    assert!(second > first);
    assert_eq!(coordinator.with(|st| st.registrations.len()), 2);

    agent.shutdown().await?;
    coordinator.stop().await
}

#[tokio::test]
async fn a_standby_redirects_the_agent_to_the_active_coordinator() -> Result<()> {
    let active = CoordinatorDouble::start().await?;
    let standby = CoordinatorDouble::start().await?;
    standby.with(|st| st.standby_for = Some(active.address()));
    let dir = tempfile::tempdir()?;
    // Only the standby is configured: the agent learns the active address.
    let agent = ballast_broker_agent::start(config(1, dir.path(), &[standby.address()])).await?;
    let mut client = control_client(&agent).await?;

    registered_epoch(&mut client, &active, 0).await?;
    assert!(standby.with(|st| st.refused_registrations) >= 1);
    assert!(standby.with(|st| st.registrations.is_empty()));
    eventually("heartbeats at the active coordinator", || {
        active.with(|st| (st.heartbeats.len() >= 2).then_some(()))
    })
    .await?;

    agent.shutdown().await?;
    standby.stop().await?;
    active.stop().await
}

#[tokio::test]
async fn an_unreachable_coordinator_is_skipped() -> Result<()> {
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        l.local_addr()?.to_string()
    };
    let coordinator = CoordinatorDouble::start().await?;
    let dir = tempfile::tempdir()?;
    let agent =
        ballast_broker_agent::start(config(1, dir.path(), &[dead, coordinator.address()])).await?;
    let mut client = control_client(&agent).await?;
    registered_epoch(&mut client, &coordinator, 0).await?;
    agent.shutdown().await?;
    coordinator.stop().await
}

#[tokio::test]
async fn a_duplicate_broker_id_stays_unregistered_and_retries() -> Result<()> {
    let coordinator = CoordinatorDouble::start().await?;
    coordinator.with(|st| st.refuse_as_duplicate = true);
    let dir = tempfile::tempdir()?;
    let agent =
        ballast_broker_agent::start(config(1, dir.path(), &[coordinator.address()])).await?;
    let mut client = control_client(&agent).await?;

    eventually("two refused registrations", || {
        coordinator.with(|st| (st.refused_registrations >= 2).then_some(()))
    })
    .await?;
    let s = state(&mut client).await?;
    assert!(!s.registered);
    assert_eq!(s.broker_epoch, 0);

    // Once the other agent is gone, the retry succeeds.
    coordinator.with(|st| st.refuse_as_duplicate = false);
    registered_epoch(&mut client, &coordinator, 0).await?;

    agent.shutdown().await?;
    coordinator.stop().await
}

#[tokio::test]
async fn a_data_dir_of_another_broker_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let coordinators = ["127.0.0.1:1".to_owned()];
    let agent = ballast_broker_agent::start(config(1, dir.path(), &coordinators)).await?;
    agent.shutdown().await?;
    let err = ballast_broker_agent::start(config(2, dir.path(), &coordinators))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("belongs to broker 1, not broker 2"),
        "{err}"
    );
    Ok(())
}
