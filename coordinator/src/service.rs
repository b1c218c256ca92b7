//! The coordinator's gRPC services (Admin for operators and clients,
//! BrokerControl for agents) and the one place where errors become gRPC
//! statuses.
//!
//! Every call first asks for the active term; a standby answers
//! `FAILED_PRECONDITION` with the metadata key [`ACTIVE_COORDINATOR_KEY`] set
//! to the active coordinator's address (empty while unknown).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use ballast_proto::v1::admin_server::{Admin, AdminServer};
use ballast_proto::v1::broker_control_server::{BrokerControl, BrokerControlServer};
use ballast_proto::v1::{self as pb, PartitionFilter};
use tonic::{Request, Response, Status};

use crate::ha::Coordinator;
use crate::partition::PartitionState;
use crate::state::{AdminError, ClusterState, CreateTopic, TopicEntry};
use crate::term::ServiceError;

/// Response metadata key naming the active coordinator.
pub const ACTIVE_COORDINATOR_KEY: &str = "ballast-active-coordinator";

/// The only mapping from errors to gRPC statuses.
pub fn to_status(e: ServiceError) -> Status {
    match e {
        ServiceError::NotActive(address) => {
            let mut s = Status::failed_precondition(match &address {
                Some(a) => format!("not the active coordinator; the active coordinator is {a}"),
                None => "not the active coordinator; no active coordinator is known yet".to_owned(),
            });
            if let Ok(v) = address.unwrap_or_default().parse() {
                s.metadata_mut().insert(ACTIVE_COORDINATOR_KEY, v);
            }
            s
        }
        ServiceError::Admin(AdminError::TopicAlreadyExists(t)) => {
            Status::already_exists(AdminError::TopicAlreadyExists(t).to_string())
        }
        ServiceError::Admin(AdminError::UnknownTopic(t)) => {
            Status::not_found(AdminError::UnknownTopic(t).to_string())
        }
        ServiceError::Admin(e) => Status::invalid_argument(e.to_string()),
        ServiceError::DuplicateBroker(..) => Status::already_exists(e.to_string()),
        ServiceError::StaleBrokerEpoch { .. } => Status::failed_precondition(e.to_string()),
        ServiceError::UnknownBroker(_) => Status::not_found(e.to_string()),
        ServiceError::InvalidArgument(m) => Status::invalid_argument(m),
        ServiceError::AlterIsr(e) => Status::failed_precondition(e.to_string()),
        ServiceError::Unavailable(m) => {
            Status::unavailable(format!("metadata store unavailable: {m}"))
        }
        ServiceError::Internal(m) => Status::internal(m),
        ServiceError::ReassignmentInProgress(_) => Status::already_exists(e.to_string()),
        ServiceError::NoReassignment => Status::not_found(e.to_string()),
        ServiceError::InvalidPlan(_) => Status::invalid_argument(e.to_string()),
    }
}

/// Both services over one coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorService {
    coordinator: Coordinator,
}

/// How the coordinator's listener is secured (module `ballast_net`).
#[derive(Debug, Clone, Default)]
pub struct ServeSecurity {
    /// TLS; with a client CA, broker control (registration, heartbeats, ISR
    /// changes) needs a cluster certificate.
    pub tls: Option<ballast_net::ServerSecurity>,
    /// Who may run admin operations (a token, a certificate role).
    pub admin: ballast_net::AdminAuth,
}

impl CoordinatorService {
    /// Serve `coordinator`.
    pub fn new(coordinator: Coordinator) -> Self {
        CoordinatorService { coordinator }
    }

    fn term(&self) -> Result<std::sync::Arc<crate::term::Term>, Status> {
        self.coordinator.active_term().map_err(to_status)
    }

    /// The tonic router for both services, secured by `security`.
    pub fn router(
        self,
        security: &ServeSecurity,
    ) -> Result<tonic::transport::server::Router, tonic::transport::Error> {
        use tonic::service::interceptor::InterceptedService;
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &security.tls {
            builder = builder.tls_config(tls.config())?;
        }
        let admin = std::sync::Arc::new(security.admin.clone());
        let cluster_certs = security.tls.as_ref().is_some_and(|t| t.client_ca.is_some());
        Ok(builder
            .add_service(InterceptedService::new(
                AdminServer::new(self.clone())
                    .max_decoding_message_size(64 << 20)
                    .max_encoding_message_size(256 << 20),
                move |req: Request<()>| {
                    ballast_net::check_admin(&req, &admin)?;
                    Ok(req)
                },
            ))
            .add_service(InterceptedService::new(
                BrokerControlServer::new(self),
                move |req: Request<()>| {
                    ballast_net::require_cluster_cert(
                        &req,
                        cluster_certs,
                        "broker control (registration, heartbeats, ISR changes)",
                    )?;
                    Ok(req)
                },
            )))
    }
}

fn min_isr(entry: &TopicEntry) -> usize {
    entry.config.min_insync_replicas.max(1) as usize
}

fn describe_partition(
    entry: &TopicEntry,
    p: usize,
    s: &PartitionState,
) -> pb::PartitionDescription {
    pb::PartitionDescription {
        partition: p as i32,
        replicas: s.replicas.clone(),
        leader: s.leader,
        leader_epoch: s.leader_epoch,
        isr: s.isr.clone(),
        partition_epoch: s.partition_epoch,
        offline: s.is_offline(),
        under_replicated: s.is_under_replicated(),
        under_min_isr: s.isr.len() < min_isr(entry),
    }
}

/// A topic as the API shows it, its partitions filtered.
pub fn describe_topic(entry: &TopicEntry, filter: PartitionFilter) -> pb::TopicDescription {
    let partitions = entry
        .partitions
        .iter()
        .enumerate()
        .map(|(p, s)| describe_partition(entry, p, s))
        .filter(|d| match filter {
            PartitionFilter::All => true,
            PartitionFilter::UnderReplicated => d.under_replicated,
            PartitionFilter::Offline => d.offline,
            PartitionFilter::UnderMinIsr => d.under_min_isr,
        })
        .collect();
    pb::TopicDescription {
        name: entry.record.name.clone(),
        topic_id: entry.record.topic_id.clone(),
        replication_factor: entry.record.replication_factor,
        configs: entry.config.to_map().into_iter().collect(),
        partitions,
        internal: entry.record.internal,
    }
}

pub(crate) fn counts(state: &ClusterState) -> (u64, u64, u64, u64) {
    let (mut total, mut offline, mut under, mut under_min) = (0, 0, 0, 0);
    for t in state.topics.values() {
        for s in &t.partitions {
            total += 1;
            offline += u64::from(s.is_offline());
            under += u64::from(s.is_under_replicated());
            under_min += u64::from(s.isr.len() < min_isr(t));
        }
    }
    (total, offline, under, under_min)
}

/// Replica lists as the planners take them (partition `i` at index `i`).
pub fn replica_lists(lists: &[pb::ReplicaList]) -> Vec<Vec<i32>> {
    lists.iter().map(|l| l.replicas.clone()).collect()
}

/// A CreateTopic request as [`crate::state::ClusterState::plan_create_topic`]
/// takes it (a client never creates an internal topic), and its
/// `validate_only` flag.
pub fn create_topic_request(req: pb::CreateTopicRequest) -> (CreateTopic, bool) {
    let create = CreateTopic {
        name: req.name,
        partitions: req.partitions,
        replication_factor: req.replication_factor,
        assignments: replica_lists(&req.assignments),
        configs: req.configs.into_iter().collect::<BTreeMap<_, _>>(),
        request_id: req.request_id,
        internal: false,
    };
    (create, req.validate_only)
}

#[tonic::async_trait]
impl Admin for CoordinatorService {
    async fn get_cluster_info(
        &self,
        _: Request<pb::GetClusterInfoRequest>,
    ) -> Result<Response<pb::GetClusterInfoResponse>, Status> {
        let cfg = self.coordinator.config();
        let Ok(term) = self.coordinator.active_term() else {
            return Ok(Response::new(pb::GetClusterInfoResponse {
                cluster_id: cfg.cluster_id.clone(),
                coordinator_epoch: 0,
                active: false,
                active_address: self.coordinator.active_address().unwrap_or_default(),
                ..Default::default()
            }));
        };
        // Both take the state lock themselves.
        let (reassignment, stuck_reassignment_partitions) = term.reassignment_summary();
        let auto_balance = term.auto_balance_summary();
        let state = term.state();
        let (partitions, offline, under, under_min) = counts(&state);
        let fenced = state.brokers.values().filter(|b| b.fenced).count() as u32;
        Ok(Response::new(pb::GetClusterInfoResponse {
            cluster_id: cfg.cluster_id.clone(),
            coordinator_epoch: term.epoch,
            active: true,
            active_address: cfg.advertised_address.clone(),
            live_brokers: state.brokers.len() as u32 - fenced,
            fenced_brokers: fenced,
            topics: state.topics.len() as u32,
            partitions,
            offline_partitions: offline,
            under_replicated_partitions: under,
            under_min_isr_partitions: under_min,
            reassignment,
            auto_balance,
            stuck_reassignment_partitions,
        }))
    }

    async fn find_coordinator_partition(
        &self,
        request: Request<pb::FindCoordinatorPartitionRequest>,
    ) -> Result<Response<pb::FindCoordinatorPartitionResponse>, Status> {
        let req = request.into_inner();
        let n = if req.offsets_partitions == 0 {
            self.coordinator.config().offsets_partitions
        } else {
            req.offsets_partitions
        };
        let partition = ballast_assignor::coordinator_partition(&req.group_id, n)
            .map_err(|e| Status::invalid_argument(format!("offsets_partitions: {e}")))?;
        Ok(Response::new(pb::FindCoordinatorPartitionResponse {
            partition,
        }))
    }

    async fn list_brokers(
        &self,
        _: Request<pb::ListBrokersRequest>,
    ) -> Result<Response<pb::ListBrokersResponse>, Status> {
        let term = self.term()?;
        let brokers = crate::push::broker_infos(&term.state());
        Ok(Response::new(pb::ListBrokersResponse { brokers }))
    }

    async fn create_topic(
        &self,
        request: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::CreateTopicResponse>, Status> {
        let term = self.term()?;
        let (create, validate_only) = create_topic_request(request.into_inner());
        let entry = term
            .create_topic(create, validate_only)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::CreateTopicResponse {
            topic: Some(describe_topic(&entry, PartitionFilter::All)),
        }))
    }

    async fn delete_topic(
        &self,
        request: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        let term = self.term()?;
        term.delete_topic(&request.into_inner().name)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeleteTopicResponse {}))
    }

    async fn list_topics(
        &self,
        request: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let term = self.term()?;
        let include_internal = request.into_inner().include_internal;
        let topics = term
            .state()
            .topics
            .values()
            .filter(|t| include_internal || !t.record.internal)
            .map(|t| pb::TopicSummary {
                name: t.record.name.clone(),
                partitions: t.record.partitions,
                replication_factor: t.record.replication_factor,
                internal: t.record.internal,
            })
            .collect();
        Ok(Response::new(pb::ListTopicsResponse { topics }))
    }

    async fn describe_topics(
        &self,
        request: Request<pb::DescribeTopicsRequest>,
    ) -> Result<Response<pb::DescribeTopicsResponse>, Status> {
        let term = self.term()?;
        let req = request.into_inner();
        let filter = PartitionFilter::try_from(req.filter).unwrap_or(PartitionFilter::All);
        let state = term.state();
        let mut topics = Vec::new();
        if req.names.is_empty() {
            for t in state.topics.values() {
                if req.include_internal || !t.record.internal {
                    topics.push(describe_topic(t, filter));
                }
            }
        } else {
            for name in &req.names {
                let t = state.topics.get(name).ok_or_else(|| {
                    to_status(ServiceError::Admin(AdminError::UnknownTopic(name.clone())))
                })?;
                topics.push(describe_topic(t, filter));
            }
        }
        Ok(Response::new(pb::DescribeTopicsResponse { topics }))
    }

    async fn add_partitions(
        &self,
        request: Request<pb::AddPartitionsRequest>,
    ) -> Result<Response<pb::AddPartitionsResponse>, Status> {
        let term = self.term()?;
        let req = request.into_inner();
        let entry = term
            .add_partitions(
                &req.name,
                req.total_partitions,
                &replica_lists(&req.assignments),
                req.validate_only,
            )
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::AddPartitionsResponse {
            topic: Some(describe_topic(&entry, PartitionFilter::All)),
        }))
    }

    async fn elect_preferred_leaders(
        &self,
        request: Request<pb::ElectPreferredLeadersRequest>,
    ) -> Result<Response<pb::ElectPreferredLeadersResponse>, Status> {
        let term = self.term()?;
        let topic = request.into_inner().topic;
        let (elected, already_preferred, not_eligible) = term
            .elect_preferred((!topic.is_empty()).then_some(topic.as_str()))
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ElectPreferredLeadersResponse {
            elected,
            already_preferred,
            not_eligible,
        }))
    }

    async fn execute_reassignment(
        &self,
        request: Request<pb::ExecuteReassignmentRequest>,
    ) -> Result<Response<pb::ExecuteReassignmentResponse>, Status> {
        let term = self.term()?;
        let r = term
            .execute_reassignment(request.into_inner())
            .await
            .map_err(to_status)?;
        Ok(Response::new(r))
    }

    async fn describe_reassignment(
        &self,
        _request: Request<pb::DescribeReassignmentRequest>,
    ) -> Result<Response<pb::DescribeReassignmentResponse>, Status> {
        let term = self.term()?;
        Ok(Response::new(term.describe_reassignment()))
    }

    async fn cancel_reassignment(
        &self,
        _request: Request<pb::CancelReassignmentRequest>,
    ) -> Result<Response<pb::CancelReassignmentResponse>, Status> {
        let term = self.term()?;
        let r = term.cancel_reassignment().await.map_err(to_status)?;
        Ok(Response::new(r))
    }

    async fn propose_balance(
        &self,
        request: Request<pb::ProposeBalanceRequest>,
    ) -> Result<Response<pb::ProposeBalanceResponse>, Status> {
        let term = self.term()?;
        let r = term
            .propose_balance(request.into_inner())
            .await
            .map_err(to_status)?;
        Ok(Response::new(r))
    }
}

#[tonic::async_trait]
impl BrokerControl for CoordinatorService {
    async fn register(
        &self,
        request: Request<pb::RegisterBrokerRequest>,
    ) -> Result<Response<pb::RegisterBrokerResponse>, Status> {
        let term = self.term()?;
        let broker_epoch = term
            .register(&term, request.into_inner())
            .await
            .map_err(to_status)?;
        let cfg = term.config();
        Ok(Response::new(pb::RegisterBrokerResponse {
            broker_epoch,
            coordinator_epoch: term.epoch,
            heartbeat_interval_ms: cfg.heartbeat_interval.as_millis() as u32,
            session_timeout_ms: cfg.session_timeout.as_millis() as u32,
            cluster_id: cfg.cluster_id.clone(),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::BrokerHeartbeatRequest>,
    ) -> Result<Response<pb::BrokerHeartbeatResponse>, Status> {
        let term = self.term()?;
        let req = request.into_inner();
        let accepted = term.heartbeat(req.broker_id, req.broker_epoch);
        if accepted {
            term.record_sizes(req.broker_id, &req.replica_sizes, req.all_replicas);
        }
        Ok(Response::new(pb::BrokerHeartbeatResponse {
            coordinator_epoch: term.epoch,
            fenced: !accepted,
        }))
    }

    async fn alter_isr(
        &self,
        request: Request<pb::AlterIsrRequest>,
    ) -> Result<Response<pb::AlterIsrResponse>, Status> {
        let term = self.term()?;
        let req = request.into_inner();
        let (topic, partition) = (req.topic.clone(), req.partition);
        let s = term.alter_isr(req).await.map_err(to_status)?;
        if s.is_moving() {
            // An added replica may have joined the ISR: finish its move now
            // rather than at the next tick.
            let t = std::sync::Arc::clone(&term);
            tokio::spawn(async move {
                if let Err(e) = t.drive_reassignment().await {
                    tracing::debug!(error = %e, "reassignment pass after an ISR change failed");
                }
            });
        }
        Ok(Response::new(pb::AlterIsrResponse {
            state: Some(pb::AssignedPartition {
                topic,
                partition,
                replicas: s.replicas,
                leader: s.leader,
                leader_epoch: s.leader_epoch,
                isr: s.isr,
                partition_epoch: s.partition_epoch,
                adding_replicas: s.adding,
                removing_replicas: s.removing,
                ..Default::default()
            }),
        }))
    }
}

/// Serve both services on `listener`, in plaintext and open to all, until
/// `shutdown` resolves.
pub async fn serve(
    coordinator: Coordinator,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    serve_secured(coordinator, listener, ServeSecurity::default(), shutdown).await
}

/// Serve both services on `listener`, secured by `security`, until
/// `shutdown` resolves.
pub async fn serve_secured(
    coordinator: Coordinator,
    listener: tokio::net::TcpListener,
    security: ServeSecurity,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), tonic::transport::Error> {
    // TCP_NODELAY on accepted connections (tonic sets it only on listeners it
    // binds itself): small answers must not wait for a delayed ACK.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    CoordinatorService::new(coordinator)
        .router(&security)?
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// Bind `address` (port 0 picks a free one) and return the listener and the
/// bound address.
pub async fn bind(address: &str) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}
