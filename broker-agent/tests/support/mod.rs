//! Shared setup of the `replication_*` tests: three (or more) real agents
//! in-process on loopback, each with its own temporary data directory,
//! against [`CoordinatorDouble`].
//!
//! [`CoordinatorDouble`] is a TEST DOUBLE of the coordinator's
//! BrokerControl service, not the coordinator: it registers agents (broker
//! epochs 100, 200, ...), accepts heartbeats, pushes the partitions the
//! test defines to every live agent with `AgentControl.Apply` (full pushes,
//! coordinator epoch 1), and answers AlterIsr with Kafka's checks (leader,
//! leader epoch, partition epoch) by accepting and pushing again. It never
//! elects leaders or fences brokers on its own: tests move leadership with
//! [`CoordinatorDouble::set_partition`]. The real coordinator is tested end
//! to end elsewhere (`tests/`).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ballast_broker_agent::log::{LogConfig, PartitionLog};
use ballast_broker_agent::{AgentConfig, AgentHandle, ReplicationConfig};
use ballast_proto::v1::agent_control_client::AgentControlClient;
use ballast_proto::v1::broker_control_server::{BrokerControl, BrokerControlServer};
use ballast_proto::v1::data_client::DataClient;
use ballast_proto::v1::{
    AlterIsrRequest, AlterIsrResponse, ApplyRequest, AssignedPartition, BrokerHeartbeatRequest,
    BrokerHeartbeatResponse, BrokerInfo, ClusterMetadata, Endpoint, ErrorCode, FetchPartition,
    FetchPartitionResult, FetchRequest, ListOffsetsPartition, ListOffsetsRequest,
    ListOffsetsResult, PartitionLeader, ProducePartition, ProducePartitionResult, ProduceRequest,
    RegisterBrokerRequest, RegisterBrokerResponse,
};
use ballast_record::{Batch, BatchBuilder, split_batches};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// Generous bound for anything the tests wait for.
pub const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The coordinator test double.
// ---------------------------------------------------------------------------

/// One partition as the double holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    pub replicas: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
    pub partition_epoch: i32,
}

#[derive(Debug, Clone)]
struct Topic {
    id: String,
    configs: BTreeMap<String, String>,
    partitions: Vec<PartitionState>,
}

#[derive(Debug, Clone)]
struct Broker {
    epoch: i64,
    address: String,
    rack: String,
    live: bool,
}

#[derive(Debug, Default)]
struct DoubleState {
    brokers: BTreeMap<i32, Broker>,
    topics: BTreeMap<String, Topic>,
    last_epoch: i64,
    version: u64,
    /// Every AlterIsr the double accepted, in order.
    accepted_alter_isr: Vec<AlterIsrRequest>,
    refused_alter_isr: usize,
}

fn lock(m: &Mutex<DoubleState>) -> std::sync::MutexGuard<'_, DoubleState> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Debug, Clone)]
struct DoubleService {
    state: Arc<Mutex<DoubleState>>,
    /// Serialises pushes so versions reach each agent in order.
    push_gate: Arc<tokio::sync::Mutex<()>>,
}

impl DoubleService {
    /// A full push to every live broker: its partitions and the metadata.
    async fn push_all(&self) {
        let _gate = self.push_gate.lock().await;
        let pushes: Vec<(String, ApplyRequest)> = {
            let mut st = lock(&self.state);
            st.version += 1;
            let version = st.version;
            let metadata = ClusterMetadata {
                brokers: st
                    .brokers
                    .iter()
                    .map(|(&id, b)| BrokerInfo {
                        broker_id: id,
                        broker_epoch: b.epoch,
                        endpoints: vec![Endpoint {
                            name: "client".into(),
                            address: b.address.clone(),
                        }],
                        rack: b.rack.clone(),
                        ..Default::default()
                    })
                    .collect(),
                leaders: st
                    .topics
                    .iter()
                    .flat_map(|(name, t)| {
                        t.partitions
                            .iter()
                            .enumerate()
                            .map(|(i, p)| PartitionLeader {
                                topic: name.clone(),
                                partition: i as i32,
                                leader: p.leader,
                                leader_epoch: p.leader_epoch,
                            })
                    })
                    .collect(),
                offsets_partitions: 0,
            };
            st.brokers
                .iter()
                .filter(|(_, b)| b.live)
                .map(|(&id, b)| {
                    let partitions = st
                        .topics
                        .iter()
                        .flat_map(|(name, t)| {
                            t.partitions
                                .iter()
                                .enumerate()
                                .filter(|(_, p)| p.replicas.contains(&id))
                                .map(|(i, p)| AssignedPartition {
                                    topic: name.clone(),
                                    topic_id: t.id.clone(),
                                    partition: i as i32,
                                    replicas: p.replicas.clone(),
                                    leader: p.leader,
                                    leader_epoch: p.leader_epoch,
                                    isr: p.isr.clone(),
                                    partition_epoch: p.partition_epoch,
                                    configs: t.configs.clone().into_iter().collect(),
                                    ..Default::default()
                                })
                        })
                        .collect();
                    (
                        b.address.clone(),
                        ApplyRequest {
                            coordinator_epoch: 1,
                            broker_id: id,
                            broker_epoch: b.epoch,
                            full: true,
                            partitions,
                            removed: vec![],
                            version,
                            metadata: Some(metadata.clone()),
                            ..Default::default()
                        },
                    )
                })
                .collect()
        };
        for (address, push) in pushes {
            let broker = push.broker_id;
            let sent = tokio::time::timeout(Duration::from_secs(5), async {
                let mut client = AgentControlClient::connect(format!("http://{address}")).await?;
                client.apply(push).await?;
                Ok::<_, anyhow::Error>(())
            })
            .await;
            match sent {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("double: push to broker {broker} failed: {e:#}"),
                Err(_) => eprintln!("double: push to broker {broker} timed out"),
            }
        }
    }
}

#[tonic::async_trait]
impl BrokerControl for DoubleService {
    async fn register(
        &self,
        request: Request<RegisterBrokerRequest>,
    ) -> Result<Response<RegisterBrokerResponse>, Status> {
        let req = request.into_inner();
        let epoch = {
            let mut st = lock(&self.state);
            st.last_epoch += 100;
            let epoch = st.last_epoch;
            let address = req
                .endpoints
                .iter()
                .find(|e| e.name == "client")
                .map(|e| e.address.clone())
                .unwrap_or_else(|| req.control_address.clone());
            st.brokers.insert(
                req.broker_id,
                Broker {
                    epoch,
                    address,
                    rack: req.rack.clone(),
                    live: true,
                },
            );
            epoch
        };
        // As the coordinator does: a full sync after registration (the
        // agent waits for its Register answer before accepting it).
        let this = self.clone();
        tokio::spawn(async move { this.push_all().await });
        Ok(Response::new(RegisterBrokerResponse {
            broker_epoch: epoch,
            coordinator_epoch: 1,
            heartbeat_interval_ms: 100,
            session_timeout_ms: 10_000,
            cluster_id: "replication-test".into(),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<BrokerHeartbeatRequest>,
    ) -> Result<Response<BrokerHeartbeatResponse>, Status> {
        let req = request.into_inner();
        let st = lock(&self.state);
        let fenced = st
            .brokers
            .get(&req.broker_id)
            .is_none_or(|b| b.epoch != req.broker_epoch);
        Ok(Response::new(BrokerHeartbeatResponse {
            coordinator_epoch: 1,
            fenced,
        }))
    }

    async fn alter_isr(
        &self,
        request: Request<AlterIsrRequest>,
    ) -> Result<Response<AlterIsrResponse>, Status> {
        let req = request.into_inner();
        let state = {
            let mut st = lock(&self.state);
            if st.brokers.get(&req.broker_id).map(|b| b.epoch) != Some(req.broker_epoch) {
                st.refused_alter_isr += 1;
                return Err(Status::failed_precondition("stale broker epoch"));
            }
            let Some(p) = st
                .topics
                .get(&req.topic)
                .and_then(|t| t.partitions.get(req.partition as usize))
                .cloned()
            else {
                return Err(Status::not_found("no such partition"));
            };
            if p.leader != req.broker_id || p.leader_epoch != req.leader_epoch {
                st.refused_alter_isr += 1;
                return Err(Status::failed_precondition("fenced leader epoch"));
            }
            if p.partition_epoch != req.partition_epoch {
                st.refused_alter_isr += 1;
                return Err(Status::failed_precondition("invalid update version"));
            }
            if !req.new_isr.contains(&req.broker_id)
                || req.new_isr.iter().any(|b| !p.replicas.contains(b))
            {
                st.refused_alter_isr += 1;
                return Err(Status::failed_precondition("invalid ISR"));
            }
            let isr: Vec<i32> = p
                .replicas
                .iter()
                .copied()
                .filter(|b| req.new_isr.contains(b))
                .collect();
            let next = PartitionState {
                isr,
                partition_epoch: p.partition_epoch + 1,
                ..p
            };
            if let Some(slot) = st
                .topics
                .get_mut(&req.topic)
                .and_then(|t| t.partitions.get_mut(req.partition as usize))
            {
                *slot = next.clone();
            }
            st.accepted_alter_isr.push(req.clone());
            next
        };
        let this = self.clone();
        tokio::spawn(async move { this.push_all().await });
        Ok(Response::new(AlterIsrResponse {
            state: Some(AssignedPartition {
                topic: req.topic,
                partition: req.partition,
                replicas: state.replicas,
                leader: state.leader,
                leader_epoch: state.leader_epoch,
                isr: state.isr,
                partition_epoch: state.partition_epoch,
                ..Default::default()
            }),
        }))
    }
}

/// A running coordinator test double on a free loopback port.
pub struct CoordinatorDouble {
    addr: SocketAddr,
    service: DoubleService,
    cancel: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl CoordinatorDouble {
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let service = DoubleService {
            state: Arc::new(Mutex::new(DoubleState::default())),
            push_gate: Arc::new(tokio::sync::Mutex::new(())),
        };
        let cancel = CancellationToken::new();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(BrokerControlServer::new(service.clone()))
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    cancel.clone().cancelled_owned(),
                ),
        );
        Ok(Self {
            addr,
            service,
            cancel,
            server,
        })
    }

    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Defines a topic: every partition led by its first replica, ISR =
    /// replicas, epochs 0. Pushed with the next push.
    pub fn create_topic(&self, name: &str, replicas: &[&[i32]], configs: &[(&str, &str)]) {
        let mut st = lock(&self.service.state);
        st.topics.insert(
            name.to_owned(),
            Topic {
                id: format!("{name}-id"),
                configs: configs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                partitions: replicas
                    .iter()
                    .map(|r| PartitionState {
                        replicas: r.to_vec(),
                        leader: r[0],
                        leader_epoch: 0,
                        isr: r.to_vec(),
                        partition_epoch: 0,
                    })
                    .collect(),
            },
        );
    }

    /// Moves a partition's leadership (and ISR): leader epoch +1 when the
    /// leader changes, partition epoch +1. Pushed with the next push.
    pub fn set_partition(&self, topic: &str, partition: i32, leader: i32, isr: &[i32]) {
        let mut st = lock(&self.service.state);
        let p = &mut st.topics.get_mut(topic).expect("topic").partitions[partition as usize];
        if p.leader != leader {
            p.leader_epoch += 1;
        }
        p.leader = leader;
        p.isr = isr.to_vec();
        p.partition_epoch += 1;
    }

    pub fn partition(&self, topic: &str, partition: i32) -> PartitionState {
        lock(&self.service.state).topics[topic].partitions[partition as usize].clone()
    }

    /// Stops pushing to a broker (its agent is being stopped).
    pub fn mark_down(&self, broker: i32) {
        if let Some(b) = lock(&self.service.state).brokers.get_mut(&broker) {
            b.live = false;
        }
    }

    pub fn accepted_alter_isr(&self) -> Vec<AlterIsrRequest> {
        lock(&self.service.state).accepted_alter_isr.clone()
    }

    pub async fn push_all(&self) {
        self.service.push_all().await;
    }

    pub async fn stop(self) -> Result<()> {
        self.cancel.cancel();
        self.server.await??;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// A cluster of agents.
// ---------------------------------------------------------------------------

pub struct Cluster {
    pub double: CoordinatorDouble,
    pub replication: ReplicationConfig,
    dirs: HashMap<i32, tempfile::TempDir>,
    agents: HashMap<i32, AgentHandle>,
}

/// Replication settings for tests: short long polls and the given lag.
pub fn replication(lag: Duration) -> ReplicationConfig {
    ReplicationConfig {
        replica_lag_time_max: lag,
        replica_fetch_max_wait: Duration::from_millis(200),
        checkpoint_interval: Duration::from_millis(500),
        max_request_bytes: 256 << 10,
        ..ReplicationConfig::default()
    }
}

impl Cluster {
    /// Starts the double and agents `1..=n`.
    pub async fn start(n: i32, replication: ReplicationConfig) -> Result<Self> {
        let double = CoordinatorDouble::start().await?;
        let mut cluster = Cluster {
            double,
            replication,
            dirs: HashMap::new(),
            agents: HashMap::new(),
        };
        for id in 1..=n {
            cluster
                .dirs
                .insert(id, tempfile::tempdir().context("tempdir")?);
            cluster.start_agent(id).await?;
        }
        Ok(cluster)
    }

    pub fn data_dir(&self, id: i32) -> PathBuf {
        self.dirs[&id].path().to_owned()
    }

    async fn start_agent(&mut self, id: i32) -> Result<()> {
        let mut config = AgentConfig::new(id, self.data_dir(id), vec![self.double.address()]);
        config.disk_capacity_bytes = Some(1 << 30);
        let handle = ballast_broker_agent::start_with(config, self.replication.clone())
            .await
            .with_context(|| format!("start agent {id}"))?;
        self.agents.insert(id, handle);
        Ok(())
    }

    pub fn agent(&self, id: i32) -> &AgentHandle {
        &self.agents[&id]
    }

    /// Stops agent `id` (flushing its logs) and stops pushing to it.
    pub async fn stop(&mut self, id: i32) -> Result<()> {
        self.double.mark_down(id);
        let handle = self.agents.remove(&id).context("agent not running")?;
        handle.shutdown().await?;
        Ok(())
    }

    /// Starts agent `id` again on its data directory (a new port; it
    /// registers, and the double pushes the new address to everyone).
    pub async fn restart(&mut self, id: i32) -> Result<()> {
        self.start_agent(id).await
    }

    pub async fn shutdown(mut self) -> Result<()> {
        let ids: Vec<i32> = self.agents.keys().copied().collect();
        for id in ids {
            self.stop(id).await?;
        }
        let Cluster { double, .. } = self;
        double.stop().await
    }

    /// Stops every agent and returns the data directories (kept alive).
    pub async fn stop_all(&mut self) -> Result<()> {
        let ids: Vec<i32> = self.agents.keys().copied().collect();
        for id in ids {
            self.stop(id).await?;
        }
        Ok(())
    }

    pub async fn data(&self, id: i32) -> Result<DataClient<Channel>> {
        Ok(DataClient::connect(format!("http://{}", self.agent(id).advertised_address())).await?)
    }

    /// Waits until agent `id` plays the role the double last pushed for
    /// `topic`-`partition` (leading it, or following its leader).
    pub async fn wait_for_role(&self, id: i32, topic: &str, partition: i32) -> Result<()> {
        let want = self.double.partition(topic, partition);
        eventually(
            &format!("agent {id} takes its role in {topic}-{partition}"),
            move || async move {
                let p = self.agent(id).replicas().find(topic, partition)?;
                let record = p.record();
                let role_ok = if want.leader == id {
                    p.following().is_none()
                } else {
                    p.following() == Some(want.leader)
                };
                (role_ok && record.leader_epoch == want.leader_epoch).then_some(())
            },
        )
        .await
    }

    /// Log end offset of agent `id`'s replica.
    pub fn log_end(&self, id: i32, topic: &str, partition: i32) -> Option<i64> {
        Some(
            self.agent(id)
                .replicas()
                .find(topic, partition)?
                .offsets()
                .log_end,
        )
    }

    /// High watermark of agent `id`'s replica.
    pub fn high_watermark(&self, id: i32, topic: &str, partition: i32) -> Option<i64> {
        Some(
            self.agent(id)
                .replicas()
                .find(topic, partition)?
                .offsets()
                .high_watermark,
        )
    }
}

/// Polls `check` every 20 ms until it returns `Some`, failing after [`WAIT`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// Records and requests.
// ---------------------------------------------------------------------------

/// One batch holding `values` (keys `k-<value>`), record timestamps from
/// `timestamp` on.
pub fn batch(values: &[&str], timestamp: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for (i, v) in values.iter().enumerate() {
        let key = format!("k-{v}");
        b.append(
            timestamp + i as i64,
            Some(key.as_bytes()),
            Some(v.as_bytes()),
            &[],
        )
        .expect("small batch");
    }
    b.build()
}

pub async fn produce(
    client: &mut DataClient<Channel>,
    topic: &str,
    partition: i32,
    acks: i32,
    records: Vec<u8>,
    timeout_ms: u32,
) -> Result<ProducePartitionResult> {
    let resp = client
        .produce(ProduceRequest {
            acks,
            timeout_ms,
            partitions: vec![ProducePartition {
                topic: topic.into(),
                partition,
                records,
            }],
        })
        .await?
        .into_inner();
    resp.results.into_iter().next().context("no result")
}

/// Produces and insists on success; returns the base offset.
pub async fn produce_ok(
    client: &mut DataClient<Channel>,
    topic: &str,
    acks: i32,
    values: &[&str],
) -> Result<i64> {
    let r = produce(client, topic, 0, acks, batch(values, 1_000), 10_000).await?;
    if r.error != ErrorCode::None as i32 {
        bail!(
            "produce to {topic} failed: {:?} {}",
            r.error(),
            r.error_message
        );
    }
    Ok(r.base_offset)
}

/// A consumer fetch of one partition.
pub async fn fetch(
    client: &mut DataClient<Channel>,
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: u32,
) -> Result<FetchPartitionResult> {
    let resp = client
        .fetch(FetchRequest {
            replica_id: -1,
            broker_epoch: 0,
            max_wait_ms,
            min_bytes: 1,
            max_bytes: 1 << 20,
            partitions: vec![FetchPartition {
                topic: topic.into(),
                partition,
                fetch_offset: offset,
                current_leader_epoch: -1,
                last_fetched_epoch: -1,
                partition_max_bytes: 1 << 20,
            }],
        })
        .await?
        .into_inner();
    resp.results.into_iter().next().context("no result")
}

pub async fn list_offset(
    client: &mut DataClient<Channel>,
    topic: &str,
    timestamp: i64,
) -> Result<ListOffsetsResult> {
    let resp = client
        .list_offsets(ListOffsetsRequest {
            partitions: vec![ListOffsetsPartition {
                topic: topic.into(),
                partition: 0,
                timestamp,
                current_leader_epoch: -1,
            }],
        })
        .await?
        .into_inner();
    resp.results.into_iter().next().context("no result")
}

/// (offset, value) of every record in `records`, checking every batch.
pub fn decode(records: &[u8]) -> Result<Vec<(i64, String)>> {
    let mut out = Vec::new();
    for b in split_batches(records) {
        let (_, bytes) = b?;
        let batch = Batch::parse(bytes)?;
        for r in batch.records() {
            let r = r?;
            out.push((
                r.offset,
                String::from_utf8_lossy(r.value.unwrap_or_default()).into_owned(),
            ));
        }
    }
    Ok(out)
}

/// Every batch of a stopped agent's replica, as stored, opened from disk.
pub fn read_log(data_dir: &Path, topic: &str, partition: i32) -> Result<Vec<Vec<u8>>> {
    let dir = data_dir
        .join("partitions")
        .join(format!("{topic}-{partition}"));
    let log = PartitionLog::open(&dir, LogConfig::default())?;
    let mut batches = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let r = log.read(offset, 1 << 20, None)?;
        if r.records.is_empty() {
            break;
        }
        for b in split_batches(&r.records) {
            let (_, bytes) = b?;
            batches.push(bytes.to_vec());
        }
        offset = r.next_offset;
    }
    Ok(batches)
}

/// The values in stored batches.
pub fn values_of(batches: &[Vec<u8>]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for b in batches {
        out.extend(decode(b)?.into_iter().map(|(_, v)| v));
    }
    Ok(out)
}
