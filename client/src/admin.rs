//! The admin client: typed calls to the coordinators' `Admin` service.
//!
//! Owns the connections (one lazy tonic channel per coordinator address),
//! the memory of which coordinator was last seen active, and the single
//! retry loop every call goes through ([`AdminClient::call`]). The policy
//! that loop applies (follow a standby's hint, back off and try the next
//! address, or give up) lives in [`crate::retry`] as pure functions; this
//! module does the I/O and keeps the clock.
//!
//! Guarantees: every call either returns the active coordinator's answer or
//! a [`ClientError`] within [`AdminOptions::deadline`] (each attempt's
//! timeout is cut to the time left, and no pause runs past it). CreateTopic
//! carries one random request id over all its retries, so a retry of a
//! creation that succeeded (the answer was lost in a failover) is answered
//! with success. Non-guarantees: other writes (DeleteTopic, AddPartitions,
//! ElectPreferredLeaders) are repeated after `UNAVAILABLE`, which the
//! coordinator only sends when it did not apply the request, but never
//! after a timeout; a DeleteTopic repeated after a coordinator failed
//! mid-way may answer `NOT_FOUND` for a topic this very call deleted.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ballast_proto::v1::admin_client::AdminClient as GrpcAdminClient;
use ballast_proto::v1::{
    AddPartitionsRequest, CreateTopicRequest, DeleteTopicRequest, DescribeTopicsRequest,
    ElectPreferredLeadersRequest, FindCoordinatorPartitionRequest, GetClusterInfoRequest,
    ListBrokersRequest, ListTopicsRequest, ReplicaList,
};
pub use ballast_proto::v1::{
    BalanceGoal, BrokerUsage, ProposeBalanceRequest, ProposeBalanceResponse,
};
pub use ballast_proto::v1::{
    BrokerInfo, ElectPreferredLeadersResponse, Endpoint as BrokerEndpoint,
    GetClusterInfoResponse as ClusterInfo, PartitionDescription, PartitionFilter, TopicDescription,
    TopicSummary,
};
use ballast_proto::v1::{CancelReassignmentRequest, DescribeReassignmentRequest};
pub use ballast_proto::v1::{
    CancelReassignmentResponse, DescribeReassignmentResponse, ExecuteReassignmentRequest,
    ExecuteReassignmentResponse, PartitionMoveProgress, PartitionMoveState, ReassignmentPartition,
};
use tokio::time::Instant;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Attempts, ClientError};
use crate::retry::{ACTIVE_COORDINATOR_KEY, Backoff, CallKind, Targets, Verdict, classify};

/// Timeouts and backoff of an [`AdminClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminOptions {
    /// Limit on opening a TCP connection to one coordinator.
    pub connect_timeout: Duration,
    /// Limit on one call to one coordinator.
    pub call_timeout: Duration,
    /// Limit on a whole logical call, all retries and redirects included.
    pub deadline: Duration,
    /// First pause before trying the next address; doubles per pause.
    pub initial_backoff: Duration,
    /// Longest pause between attempts.
    pub max_backoff: Duration,
}

impl Default for AdminOptions {
    fn default() -> Self {
        AdminOptions {
            connect_timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(15),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
        }
    }
}

/// A topic to create, for [`AdminClient::create_topic`].
///
/// Give either `partitions` and `replication_factor` (the coordinator
/// places the replicas), or `assignments` with both counts left at 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewTopic {
    /// Topic name (Kafka's rules: `[a-zA-Z0-9._-]`, at most 249 chars).
    pub name: String,
    /// Partition count; 0 with explicit `assignments`.
    pub partitions: i32,
    /// Replicas per partition; 0 with explicit `assignments`.
    pub replication_factor: i32,
    /// `assignments[i]` = broker ids of partition `i`, preferred leader
    /// first; empty to let the coordinator place replicas.
    pub assignments: Vec<Vec<i32>>,
    /// Topic config overrides (`retention.ms` = `86400000`, ...).
    pub configs: BTreeMap<String, String>,
    /// Validate and plan only: the returned description is what would be
    /// created, and nothing is written.
    pub validate_only: bool,
}

impl NewTopic {
    /// A topic whose replicas the coordinator places.
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i32) -> Self {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor,
            ..NewTopic::default()
        }
    }
}

/// A client of the coordinators' admin API.
///
/// Cheap to clone; clones share connections and the last known active
/// coordinator. Every method follows the retry rules described in the
/// module documentation.
#[derive(Debug, Clone)]
pub struct AdminClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The configured addresses, `host:port` or `http://host:port`.
    addresses: Vec<String>,
    options: AdminOptions,
    /// The coordinator that last answered a call, or that a standby named.
    active: Mutex<Option<String>>,
    /// One lazy channel per address called (configured or hinted).
    channels: Mutex<HashMap<String, Channel>>,
}

/// The generated tonic client over one channel.
type Grpc = GrpcAdminClient<Channel>;

impl AdminClient {
    /// A client of the coordinators at `addresses` (`host:port`, or
    /// `http://host:port`). Connects lazily: nothing is dialled until the
    /// first call, so this only checks the addresses.
    pub fn connect(addresses: Vec<String>, options: AdminOptions) -> Result<Self, ClientError> {
        if addresses.is_empty() {
            return Err(ClientError::NoAddresses);
        }
        for address in &addresses {
            endpoint(address, &options).map_err(|reason| ClientError::InvalidAddress {
                address: address.clone(),
                reason,
            })?;
        }
        Ok(AdminClient {
            inner: Arc::new(Inner {
                addresses,
                options,
                active: Mutex::new(None),
                channels: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The coordinator that last answered as the active one (or that a
    /// standby named), if any. Calls start there.
    pub fn active_address(&self) -> Option<String> {
        lock(&self.inner.active).clone()
    }

    /// The active coordinator's view of the cluster: its id, the active
    /// coordinator's address and epoch, and broker, topic and partition
    /// counts.
    ///
    /// A standby answers this call itself (`active` false, epoch 0, no
    /// counts, and the active address if it knows one); the client then asks
    /// the address it named, once. So the answer comes from a standby
    /// (`active` false) only when no active coordinator is known or the one
    /// named did not confirm, e.g. during an election.
    pub async fn cluster_info(&self) -> Result<ClusterInfo, ClientError> {
        let (address, info) = self.get_cluster_info().await?;
        if info.active {
            return Ok(info);
        }
        // The retry loop took the standby's answer for the active one's.
        self.forget_active(&address);
        let named = info.active_address.trim();
        if named.is_empty() || named == address {
            return Ok(info);
        }
        self.remember_active(Some(named));
        let (again, second) = self.get_cluster_info().await?;
        if second.active {
            Ok(second)
        } else {
            // The named coordinator is not (or no longer) active: the first
            // answer is as good as any.
            self.forget_active(&again);
            Ok(info)
        }
    }

    async fn get_cluster_info(&self) -> Result<(String, ClusterInfo), ClientError> {
        self.call(
            "GetClusterInfo",
            CallKind::ReadOnly,
            GetClusterInfoRequest {},
            |mut c: Grpc, r| async move { c.get_cluster_info(r).await },
        )
        .await
    }

    /// Every registered broker, fenced ones included.
    pub async fn list_brokers(&self) -> Result<Vec<BrokerInfo>, ClientError> {
        let (_, resp) = self
            .call(
                "ListBrokers",
                CallKind::ReadOnly,
                ListBrokersRequest {},
                |mut c: Grpc, r| async move { c.list_brokers(r).await },
            )
            .await?;
        Ok(resp.brokers)
    }

    /// Creates a topic (or with `validate_only`, plans it) and returns its
    /// description. One request id is drawn per call and sent with every
    /// retry, so a retry after a lost answer does not fail with
    /// `ALREADY_EXISTS`.
    pub async fn create_topic(&self, topic: NewTopic) -> Result<TopicDescription, ClientError> {
        let request = CreateTopicRequest {
            name: topic.name,
            partitions: topic.partitions,
            replication_factor: topic.replication_factor,
            assignments: replica_lists(topic.assignments),
            configs: topic.configs.into_iter().collect(),
            request_id: new_request_id()?,
            validate_only: topic.validate_only,
        };
        let (address, resp) = self
            .call(
                "CreateTopic",
                CallKind::Idempotent,
                request,
                |mut c: Grpc, r| async move { c.create_topic(r).await },
            )
            .await?;
        resp.topic
            .ok_or_else(|| missing_topic("CreateTopic", address))
    }

    /// Deletes a topic. `NOT_FOUND` comes back as
    /// [`ClientError::Rejected`].
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        self.call(
            "DeleteTopic",
            CallKind::Mutating,
            DeleteTopicRequest {
                name: name.to_owned(),
            },
            |mut c: Grpc, r| async move { c.delete_topic(r).await },
        )
        .await?;
        Ok(())
    }

    /// Names, partition counts and replication factors of the topics;
    /// internal ones (`__consumer_offsets`) only when asked.
    pub async fn list_topics(
        &self,
        include_internal: bool,
    ) -> Result<Vec<TopicSummary>, ClientError> {
        let (_, resp) = self
            .call(
                "ListTopics",
                CallKind::ReadOnly,
                ListTopicsRequest { include_internal },
                |mut c: Grpc, r| async move { c.list_topics(r).await },
            )
            .await?;
        Ok(resp.topics)
    }

    /// Describes the named topics (every topic when `names` is empty), with
    /// only the partitions `filter` selects.
    pub async fn describe_topics(
        &self,
        names: Vec<String>,
        filter: PartitionFilter,
        include_internal: bool,
    ) -> Result<Vec<TopicDescription>, ClientError> {
        let (_, resp) = self
            .call(
                "DescribeTopics",
                CallKind::ReadOnly,
                DescribeTopicsRequest {
                    names,
                    filter: filter.into(),
                    include_internal,
                },
                |mut c: Grpc, r| async move { c.describe_topics(r).await },
            )
            .await?;
        Ok(resp.topics)
    }

    /// Grows topic `name` to `total` partitions. `assignments` gives the
    /// replicas of the new partitions only (empty: the coordinator places
    /// them). Returns the topic as it now is.
    pub async fn add_partitions(
        &self,
        name: &str,
        total: i32,
        assignments: Vec<Vec<i32>>,
    ) -> Result<TopicDescription, ClientError> {
        let (address, resp) = self
            .call(
                "AddPartitions",
                CallKind::Mutating,
                AddPartitionsRequest {
                    name: name.to_owned(),
                    total_partitions: total,
                    assignments: replica_lists(assignments),
                    validate_only: false,
                },
                |mut c: Grpc, r| async move { c.add_partitions(r).await },
            )
            .await?;
        resp.topic
            .ok_or_else(|| missing_topic("AddPartitions", address))
    }

    /// Moves leadership to each partition's preferred replica, for one
    /// topic or (with `None`) all, and returns how many moved, were already
    /// there, or could not move.
    pub async fn elect_preferred_leaders(
        &self,
        topic: Option<&str>,
    ) -> Result<ElectPreferredLeadersResponse, ClientError> {
        let (_, resp) = self
            .call(
                "ElectPreferredLeaders",
                CallKind::Mutating,
                ElectPreferredLeadersRequest {
                    topic: topic.unwrap_or_default().to_owned(),
                },
                |mut c: Grpc, r| async move { c.elect_preferred_leaders(r).await },
            )
            .await?;
        Ok(resp)
    }

    /// Starts a partition reassignment. The coordinator validates the whole
    /// plan (an `InvalidArgument` error lists every problem, nothing
    /// started) and persists it before anything moves. Not repeated after
    /// a timeout: a second try of an accepted plan answers that a
    /// reassignment is in progress.
    pub async fn execute_reassignment(
        &self,
        request: ExecuteReassignmentRequest,
    ) -> Result<ExecuteReassignmentResponse, ClientError> {
        let (_, resp) = self
            .call(
                "ExecuteReassignment",
                CallKind::Mutating,
                request,
                |mut c: Grpc, r| async move { c.execute_reassignment(r).await },
            )
            .await?;
        Ok(resp)
    }

    /// The latest reassignment and the progress of each partition.
    pub async fn describe_reassignment(&self) -> Result<DescribeReassignmentResponse, ClientError> {
        let (_, resp) = self
            .call(
                "DescribeReassignment",
                CallKind::ReadOnly,
                DescribeReassignmentRequest {},
                |mut c: Grpc, r| async move { c.describe_reassignment(r).await },
            )
            .await?;
        Ok(resp)
    }

    /// Cancels the running reassignment: partitions not finished go back
    /// to their original replicas.
    pub async fn cancel_reassignment(&self) -> Result<CancelReassignmentResponse, ClientError> {
        let (_, resp) = self
            .call(
                "CancelReassignment",
                CallKind::Mutating,
                CancelReassignmentRequest {},
                |mut c: Grpc, r| async move { c.cancel_reassignment(r).await },
            )
            .await?;
        Ok(resp)
    }

    /// A balancing plan computed by the coordinator (nothing moves).
    pub async fn propose_balance(
        &self,
        request: ProposeBalanceRequest,
    ) -> Result<ProposeBalanceResponse, ClientError> {
        let (_, resp) = self
            .call(
                "ProposeBalance",
                CallKind::ReadOnly,
                request,
                |mut c: Grpc, r| async move { c.propose_balance(r).await },
            )
            .await?;
        Ok(resp)
    }

    /// The `__consumer_offsets` partition whose leader coordinates
    /// `group_id`. `offsets_partitions` overrides that topic's partition
    /// count (`None`: the cluster's).
    pub async fn find_coordinator_partition(
        &self,
        group_id: &str,
        offsets_partitions: Option<i32>,
    ) -> Result<i32, ClientError> {
        let (_, resp) = self
            .call(
                "FindCoordinatorPartition",
                CallKind::ReadOnly,
                FindCoordinatorPartitionRequest {
                    group_id: group_id.to_owned(),
                    offsets_partitions: offsets_partitions.unwrap_or(0),
                },
                |mut c: Grpc, r| async move { c.find_coordinator_partition(r).await },
            )
            .await?;
        Ok(resp.partition)
    }

    /// The one retry loop: calls `send` on the current target until it
    /// answers, following standby hints at once and moving to the next
    /// address after a backoff, until the overall deadline. Returns the
    /// answering address with the response.
    async fn call<Req, Resp, F, Fut>(
        &self,
        rpc: &'static str,
        kind: CallKind,
        request: Req,
        mut send: F,
    ) -> Result<(String, Resp), ClientError>
    where
        Req: Clone,
        F: FnMut(Grpc, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let options = &self.inner.options;
        let started = Instant::now();
        let deadline = started + options.deadline;
        let active = self.active_address();
        let mut targets = Targets::new(&self.inner.addresses, active.as_deref());
        let mut backoff = Backoff::new(options.initial_backoff, options.max_backoff);
        let mut attempts = Attempts::default();
        loop {
            let address = targets.current().to_owned();
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(attempts.exhausted(rpc, started.elapsed()));
            }
            let timeout = options.call_timeout.min(remaining);
            let outcome = match self.channel(&address) {
                Ok(channel) => {
                    // The timeout is ours alone: no grpc-timeout header, so
                    // tonic's own timer cannot race this one and report the
                    // same expiry as CANCELLED.
                    let mut req = tonic::Request::new(request.clone());
                    ballast_net::authorize(&mut req);
                    match tokio::time::timeout(timeout, send(GrpcAdminClient::new(channel), req))
                        .await
                    {
                        Ok(result) => result,
                        Err(_) => Err(Status::deadline_exceeded(format!(
                            "no answer within {:.1}s",
                            timeout.as_secs_f64()
                        ))),
                    }
                }
                // Only a hint can be malformed; configured addresses were
                // checked in `connect`.
                Err(reason) => Err(Status::unavailable(format!("invalid address: {reason}"))),
            };
            let status = match outcome {
                Ok(response) => {
                    self.remember_active(Some(&address));
                    return Ok((address, response.into_inner()));
                }
                Err(status) => status,
            };
            attempts.record(&address, status.code(), status.message());
            let hint = active_hint(&status);
            let pause = match classify(status.code(), hint.as_deref(), kind, &address) {
                Verdict::Fail => {
                    // Only the active coordinator answers for itself.
                    self.remember_active(Some(&address));
                    return Err(rejected(rpc, address, &status));
                }
                Verdict::OutcomeUnknown => {
                    return Err(ClientError::OutcomeUnknown {
                        rpc,
                        address,
                        code: status.code(),
                        message: status.message().to_owned(),
                    });
                }
                Verdict::Redirect(to) => {
                    self.remember_active(Some(&to));
                    targets.redirect(&to)
                }
                Verdict::NextAddress => {
                    self.forget_active(&address);
                    targets.advance();
                    true
                }
            };
            if pause {
                let delay = backoff.next_delay();
                if Instant::now() + delay >= deadline {
                    return Err(attempts.exhausted(rpc, started.elapsed()));
                }
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// The channel to `address`, created (lazily, without dialling) on
    /// first use.
    fn channel(&self, address: &str) -> Result<Channel, String> {
        let mut channels = lock(&self.inner.channels);
        if let Some(c) = channels.get(address) {
            return Ok(c.clone());
        }
        let channel = endpoint(address, &self.inner.options)?.connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Ok(channel)
    }

    fn remember_active(&self, address: Option<&str>) {
        *lock(&self.inner.active) = address.map(str::to_owned);
    }

    /// Forgets `address` as the active coordinator if it was remembered as
    /// such: it just failed, so the next call starts at the configured list.
    fn forget_active(&self, address: &str) {
        let mut active = lock(&self.inner.active);
        if active.as_deref() == Some(address) {
            *active = None;
        }
    }
}

/// The tonic endpoint for `address`, or why it is not a usable address.
fn endpoint(address: &str, options: &AdminOptions) -> Result<Endpoint, String> {
    let trimmed = address.trim();
    if trimmed.is_empty() {
        return Err("empty address".into());
    }
    if trimmed != address {
        return Err("leading or trailing whitespace".into());
    }
    let uri = match address.split_once("://") {
        None => ballast_net::uri(address),
        Some(("http", _)) => address.to_owned(),
        Some((scheme, _)) => {
            return Err(format!(
                "scheme {scheme:?} is not supported; give host:port"
            ));
        }
    };
    let endpoint = Endpoint::from_shared(uri).map_err(|e| format!("not host:port ({e})"))?;
    if endpoint.uri().port_u16().is_none() {
        return Err("no port; give host:port".into());
    }
    if !matches!(endpoint.uri().path(), "" | "/") {
        return Err("a path is not allowed; give host:port".into());
    }
    let endpoint = ballast_net::secure(endpoint).map_err(|e| e.to_string())?;
    // The per-call timeout is applied by the retry loop (it also bounds a
    // call by the overall deadline), not by the channel.
    Ok(endpoint.connect_timeout(options.connect_timeout))
}

/// The active coordinator a standby named: `None` when the status does not
/// carry the key, `Some("")` when it is empty or not readable text.
fn active_hint(status: &Status) -> Option<String> {
    status
        .metadata()
        .get(ACTIVE_COORDINATOR_KEY)
        .map(|v| v.to_str().map(str::to_owned).unwrap_or_default())
}

fn rejected(rpc: &'static str, address: String, status: &Status) -> ClientError {
    ClientError::Rejected {
        rpc,
        address,
        code: status.code(),
        message: status.message().to_owned(),
    }
}

fn missing_topic(rpc: &'static str, address: String) -> ClientError {
    ClientError::MalformedResponse {
        rpc,
        address,
        reason: "the response has no topic description".into(),
    }
}

fn replica_lists(assignments: Vec<Vec<i32>>) -> Vec<ReplicaList> {
    assignments
        .into_iter()
        .map(|replicas| ReplicaList { replicas })
        .collect()
}

/// 128 random bits as 32 lowercase hex digits.
fn new_request_id() -> Result<String, ClientError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(ClientError::RequestId)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Locks a mutex, taking the data even if another thread panicked while
/// holding it (every critical section here is a single assignment).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_up_front() {
        let opts = AdminOptions::default();
        assert!(endpoint("127.0.0.1:9410", &opts).is_ok());
        assert!(endpoint("http://coord-1.example:9410", &opts).is_ok());
        assert!(endpoint("[::1]:9410", &opts).is_ok());
        let err = |a: &str| endpoint(a, &opts).err().unwrap_or_default();
        assert_eq!(err(""), "empty address");
        assert!(err("localhost").contains("no port"), "{}", err("localhost"));
        assert!(err("https://a:1").contains("\"https\""));
        assert!(err(" a:1").contains("whitespace"));
        assert!(err("a:1/x").contains("path"));
        assert!(err("a b:1").contains("not host:port"), "{}", err("a b:1"));

        assert!(matches!(
            AdminClient::connect(vec![], opts.clone()),
            Err(ClientError::NoAddresses)
        ));
        let e = AdminClient::connect(vec!["a:1".into(), "b".into()], opts)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("invalid coordinator address \"b\": no port; give host:port")
        );
    }

    #[test]
    fn request_ids_are_128_bit_hex() {
        let a = new_request_id().unwrap();
        let b = new_request_id().unwrap();
        assert_eq!(a.len(), 32);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn hints_come_from_status_metadata() {
        let mut s = Status::failed_precondition("standby");
        assert_eq!(active_hint(&s), None);
        s.metadata_mut()
            .insert(ACTIVE_COORDINATOR_KEY, "10.0.0.2:9410".parse().unwrap());
        assert_eq!(active_hint(&s).as_deref(), Some("10.0.0.2:9410"));
        s.metadata_mut()
            .insert(ACTIVE_COORDINATOR_KEY, "".parse().unwrap());
        assert_eq!(active_hint(&s).as_deref(), Some(""));
    }
}
