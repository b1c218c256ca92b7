//! The broker agent.
//!
//! Hosts partition logs (segments, indexes, recovery, retention), serves
//! produce and fetch, replicates from leaders, and hosts the group
//! coordinator for the `__consumer_offsets` partitions it leads. It applies
//! the desired state the coordinator pushes and reports what it reached.
//!
//! [`start`] opens and locks the data directory ([`meta`]), loads the
//! partition directories ([`partition_dir`]), serves AgentControl (Apply,
//! GetState) and Data (produce, fetch, list offsets, metadata) on one
//! gRPC server, and runs the control loop that registers with the active
//! coordinator and heartbeats. A push is fenced by coordinator epoch,
//! broker epoch and version, then reconciled ([`reconcile`], pure) into
//! partition directories with the leader or follower role and epochs it
//! names; the cluster metadata it carries is kept ([`metadata`]) to answer
//! clients. The [`replica`] manager then opens each partition's
//! [`log`] and takes the pushed role: a leader serves produce and fetch
//! and tracks its ISR, a follower fetches from its leader (see
//! [`replica`] for what is and is not guaranteed).
//!
//! On disk (`<data_dir>/`):
//! * `agent.json`: broker id, incarnation id, highest coordinator epoch;
//! * `.lock`: held exclusively while an agent uses the directory;
//! * `partitions/<topic>-<partition>/partition.json`: one per hosted
//!   partition (topic id, replicas, configs; the leader, ISR and epochs in
//!   it are those of its last rewrite, see `reconcile::Action::Refresh`).

pub mod config;
mod control;
mod data;
pub mod error;
pub mod group;
pub mod http;
pub mod limits;
pub mod log;
pub mod meta;
pub mod metadata;
pub mod metrics;
mod par;
pub mod partition;
pub mod partition_dir;
pub mod reconcile;
pub mod replica;
mod service;
mod state;

/// The produce gate (`data.rs`), for the fuzzer.
pub use data::validate_batches;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use ballast_proto::v1::agent_control_server::AgentControlServer;
use ballast_proto::v1::data_server::DataServer;
use ballast_proto::v1::group_server::GroupServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use ballast_group::GroupConfig;
pub use config::AgentConfig;

/// Largest push (and GetState answer) the agent accepts: 256 MiB, room for
/// the leaders of several million partitions.
pub const MAX_PUSH_BYTES: usize = 256 << 20;
pub use control::ACTIVE_COORDINATOR_KEY;
pub use error::{AgentError, ERROR_REASON_KEY};

use control::{ControlLoop, Identity};
use data::DataService;
use group::GroupCoordinator;
use group::service::GroupService;
use meta::DataDir;
use replica::ReplicaManager;
pub use replica::ReplicationConfig;
use service::AgentService;
use state::AgentState;

/// A running agent. [`AgentHandle::shutdown`] stops it and waits; dropping
/// the handle also asks it to stop, without waiting.
#[derive(Debug)]
pub struct AgentHandle {
    broker_id: i32,
    local_addr: SocketAddr,
    advertised: String,
    incarnation_id: String,
    cancel: CancellationToken,
    server: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    control: Option<JoinHandle<()>>,
    replicas: Arc<ReplicaManager>,
}

impl AgentHandle {
    /// The broker id.
    pub fn broker_id(&self) -> i32 {
        self.broker_id
    }

    /// The address the AgentControl server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The `host:port` given to the coordinator (control address and client
    /// endpoint).
    pub fn advertised_address(&self) -> &str {
        &self.advertised
    }

    /// The data directory's incarnation id, as sent in Register.
    pub fn incarnation_id(&self) -> &str {
        &self.incarnation_id
    }

    /// Resolves only if the server stops on its own (it never does while
    /// healthy), with the reason. Use it in a `select!` beside a shutdown
    /// signal.
    pub async fn failed(&mut self) -> AgentError {
        let Some(server) = self.server.as_mut() else {
            return std::future::pending().await;
        };
        let result = server.await;
        self.server = None;
        match result {
            Ok(Ok(())) => AgentError::Task("AgentControl server stopped".to_owned()),
            Ok(Err(e)) => AgentError::Serve(e),
            Err(e) => AgentError::Task(e.to_string()),
        }
    }

    /// The running partitions (for tests and operators: roles, offsets).
    pub fn replicas(&self) -> &Arc<ReplicaManager> {
        &self.replicas
    }

    /// Stops serving, the control loop and replication, waits for them,
    /// flushes and closes every partition log, and releases the data
    /// directory (another agent may open it once this returns).
    pub async fn shutdown(mut self) -> Result<(), AgentError> {
        self.cancel.cancel();
        let mut outcome = Ok(());
        if let Some(control) = self.control.take()
            && let Err(e) = control.await
        {
            outcome = Err(AgentError::Task(e.to_string()));
        }
        if let Some(server) = self.server.take() {
            match server.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => outcome = Err(AgentError::Serve(e)),
                Err(e) => outcome = Err(AgentError::Task(e.to_string())),
            }
        }
        self.replicas.shutdown().await;
        info!(broker_id = self.broker_id, "agent stopped");
        outcome
    }
}

impl Drop for AgentHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Starts an agent with the default [`ReplicationConfig`]: see
/// [`start_with`].
pub async fn start(config: AgentConfig) -> Result<AgentHandle, AgentError> {
    start_with(config, ReplicationConfig::default()).await
}

/// Starts an agent: validates `config` and `replication`, opens and locks
/// the data directory, loads hosted partitions, binds and serves
/// AgentControl and Data on one server, starts replication, and starts
/// registering with the coordinator. Returns once serving.
pub async fn start_with(
    config: AgentConfig,
    replication: ReplicationConfig,
) -> Result<AgentHandle, AgentError> {
    config.validate()?;
    replication
        .validate()
        .map_err(|(field, reason)| AgentError::Config { field, reason })?;
    let data_dir_path = config.data_dir.clone();
    let broker_id = config.broker_id;
    let (data_dir, hosted, problems, disk) = tokio::task::spawn_blocking(move || {
        let data_dir = DataDir::open(&data_dir_path, broker_id)?;
        let (hosted, problems) = partition_dir::load_all(&data_dir_path)?;
        let disk = disk_capacity(&data_dir_path);
        Ok::<_, AgentError>((data_dir, hosted, problems, disk))
    })
    .await
    .map_err(|e| AgentError::Task(e.to_string()))??;
    for p in &problems {
        warn!(problem = %p, "skipped a partition directory");
    }

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| AgentError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| AgentError::Bind {
        addr: config.listen,
        source,
    })?;
    let advertised = match &config.advertise {
        Some(a) => a.clone(),
        None => default_advertised(local_addr),
    };

    let on_disk = hosted.clone();
    let state = Arc::new(AgentState::new(data_dir, hosted));
    let incarnation_id = state.incarnation_id().to_owned();
    let cancel = CancellationToken::new();
    let data_message_bytes = replica::manager::max_message_bytes(&replication);
    let replicas = ReplicaManager::new(
        broker_id,
        partition_dir::partitions_root(&config.data_dir),
        replication,
        state.subscribe_registration(),
        state.subscribe_coordinator(),
        cancel.child_token(),
    );
    replicas.open_existing(on_disk).await;
    state.set_replica_manager(Arc::clone(&replicas));
    replicas.start_background();
    let groups = GroupCoordinator::start(Arc::clone(&replicas), config.group.clone());

    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        builder = builder
            .tls_config(tls.config())
            .map_err(|e| AgentError::Config {
                field: "tls",
                reason: e.to_string(),
            })?;
    }
    // With a client CA, only cluster members push assignments or fetch as
    // followers.
    let cluster_certs = config.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
    let server = tokio::spawn(
        builder
            .add_service(tonic::service::interceptor::InterceptedService::new(
                // A full push carries every partition's leader in the
                // cluster: allow far more than tonic's 4 MiB default.
                AgentControlServer::new(AgentService::new(Arc::clone(&state)))
                    .max_decoding_message_size(MAX_PUSH_BYTES)
                    .max_encoding_message_size(MAX_PUSH_BYTES),
                move |req: tonic::Request<()>| {
                    ballast_net::require_cluster_cert(
                        &req,
                        cluster_certs,
                        "agent control (the coordinator's pushes)",
                    )?;
                    Ok(req)
                },
            ))
            .add_service(
                // Produce requests up to the configured limit (and a little
                // more, so that they are refused by name), fetch answers up
                // to theirs plus one batch.
                DataServer::new(
                    DataService::new(Arc::clone(&replicas)).cluster_certs(cluster_certs),
                )
                .max_decoding_message_size(data_message_bytes)
                .max_encoding_message_size(data_message_bytes),
            )
            .add_service(
                GroupServer::new(GroupService::new(groups))
                    .max_decoding_message_size(data_message_bytes)
                    .max_encoding_message_size(data_message_bytes),
            )
            .serve_with_incoming_shutdown(
                // TCP_NODELAY on every accepted connection: without it a
                // response's last segment can wait for a delayed ACK (~40 ms
                // per acks=all round trip on Linux).
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                cancel.clone().cancelled_owned(),
            ),
    );
    let identity = Identity {
        incarnation_id: incarnation_id.clone(),
        process_id: process_id(),
        rack: config.rack.clone().unwrap_or_default(),
        disk_capacity_bytes: config.disk_capacity_bytes.unwrap_or(disk),
        advertised: advertised.clone(),
    };
    let control = tokio::spawn(
        ControlLoop::new(
            Arc::clone(&state),
            identity,
            config.coordinators.clone(),
            cancel.clone(),
        )
        .run(),
    );
    info!(
        broker_id,
        listen = %local_addr,
        advertised = %advertised,
        hosted = state.get_state().hosted.len(),
        "agent serving AgentControl and Data"
    );
    Ok(AgentHandle {
        broker_id,
        local_addr,
        advertised,
        incarnation_id,
        cancel,
        server: Some(server),
        control: Some(control),
        replicas,
    })
}

/// Runs an agent until `shutdown` resolves (or the server fails), then
/// stops it cleanly.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let mut handle = start(config).await?;
    let failure = tokio::select! {
        () = shutdown => None,
        e = handle.failed() => Some(e),
    };
    let stopped = handle.shutdown().await;
    match failure {
        Some(e) => Err(e),
        None => stopped,
    }
}

/// The bound address, with an unspecified IP replaced by loopback (a
/// wildcard address cannot be dialled; set `advertise` for other hosts).
fn default_advertised(local: SocketAddr) -> String {
    if local.ip().is_unspecified() {
        let loopback = match local.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        warn!(
            listen = %local,
            "listening on a wildcard address without --advertise; advertising loopback"
        );
        SocketAddr::new(loopback, local.port()).to_string()
    } else {
        local.to_string()
    }
}

/// Size of the file system holding `dir`, 0 when unknown.
fn disk_capacity(dir: &Path) -> u64 {
    match rustix::fs::statvfs(dir) {
        Ok(s) => s.f_blocks.saturating_mul(s.f_frsize),
        Err(_) => 0,
    }
}

/// A random id for this process start (hex of 16 random bytes; the clock
/// and pid if the system has no randomness to give).
fn process_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (now ^ u128::from(std::process::id()) << 64).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
