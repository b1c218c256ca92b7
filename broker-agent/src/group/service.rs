//! The Group gRPC service: a thin edge over [`super::GroupCoordinator`].
//! Finds the shard of a group, runs the pure handler through its host, and
//! turns refusals into the response's error code (never a gRPC status:
//! every answer carries `error` and `error_message`, like the Data
//! service's). The one mapping from errors to codes is [`error_code`].

use std::sync::Arc;

use ballast_group::{GroupError, Outcome};
use ballast_proto::v1::group_server::Group;
use ballast_proto::v1::{
    CommitOffsetsRequest, CommitOffsetsResponse, DeleteGroupRequest, DeleteGroupResponse,
    DescribeGroupRequest, DescribeGroupResponse, ErrorCode, FetchOffsetsRequest,
    FetchOffsetsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupHeartbeatRequest,
    GroupHeartbeatResponse, LeaderHint, ListGroupsRequest, ListGroupsResponse,
};
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::host::{HostError, ShardHost};
use super::{GroupCoordinator, OFFSETS_TOPIC};

/// The error code and message of a refusal.
pub fn error_code(e: &HostError) -> (ErrorCode, String) {
    let code = match e {
        HostError::NotCoordinator => ErrorCode::NotCoordinator,
        HostError::LoadInProgress => ErrorCode::CoordinatorLoadInProgress,
        HostError::NotAvailable(_) => ErrorCode::CoordinatorNotAvailable,
        HostError::Group(g) => g.code(),
    };
    (code, e.to_string())
}

/// Responses that carry an error code and message.
trait Refusable: Default {
    fn set_error(&mut self, code: ErrorCode, message: String);

    fn refused(e: &HostError) -> Self {
        let mut r = Self::default();
        let (code, message) = error_code(e);
        r.set_error(code, message);
        r
    }
}

macro_rules! refusable {
    ($($t:ty),*) => {$(
        impl Refusable for $t {
            fn set_error(&mut self, code: ErrorCode, message: String) {
                self.error = code as i32;
                self.error_message = message;
            }
        }
    )*};
}

refusable!(
    FindCoordinatorResponse,
    GroupHeartbeatResponse,
    CommitOffsetsResponse,
    FetchOffsetsResponse,
    ListGroupsResponse,
    DescribeGroupResponse,
    DeleteGroupResponse
);

/// The Group service of one agent.
#[derive(Debug, Clone)]
pub struct GroupService {
    coordinator: Arc<GroupCoordinator>,
}

impl GroupService {
    /// Serves groups through `coordinator`.
    pub fn new(coordinator: Arc<GroupCoordinator>) -> Self {
        GroupService { coordinator }
    }

    /// The offsets partition of a group, from the pushed metadata.
    fn partition_of(&self, group_id: &str) -> Result<i32, HostError> {
        let n = self
            .coordinator
            .manager()
            .metadata()
            .metadata
            .offsets_partitions;
        if n <= 0 {
            return Err(HostError::NotAvailable(format!(
                "{OFFSETS_TOPIC} does not exist yet"
            )));
        }
        ballast_assignor::coordinator_partition(group_id, n)
            .map_err(|e| HostError::NotAvailable(e.to_string()))
    }

    /// The local host of a group's shard.
    fn host_of(&self, group_id: &str) -> Result<Arc<ShardHost>, HostError> {
        let p = self.partition_of(group_id)?;
        self.coordinator.host(p).ok_or(HostError::NotCoordinator)
    }

    async fn run<R, H, A>(&self, group_id: &str, handler: H, after: A) -> Result<R, HostError>
    where
        R: Send + 'static,
        H: Fn(&super::host::Active, i64) -> Result<Outcome<R>, GroupError> + Send + Sync + 'static,
        A: FnOnce(&mut super::host::Active, &R, i64) + Send + 'static,
    {
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId("the group id must not be empty".into()).into());
        }
        self.host_of(group_id)?.execute(handler, after).await
    }
}

fn answer<R: Refusable>(result: Result<R, HostError>) -> Result<Response<R>, Status> {
    Ok(Response::new(result.unwrap_or_else(|e| R::refused(&e))))
}

fn read_only<R>(response: R) -> Result<Outcome<R>, GroupError> {
    Ok(Outcome {
        records: Vec::new(),
        response,
    })
}

#[tonic::async_trait]
impl Group for GroupService {
    #[instrument(skip_all, fields(group = %request.get_ref().group_id))]
    async fn find_coordinator(
        &self,
        request: Request<FindCoordinatorRequest>,
    ) -> Result<Response<FindCoordinatorResponse>, Status> {
        let group_id = &request.get_ref().group_id;
        let result = self.partition_of(group_id).and_then(|p| {
            let meta = self.coordinator.manager().metadata();
            let (leader, epoch) = meta
                .leaders
                .get(&(OFFSETS_TOPIC.to_owned(), p))
                .copied()
                .filter(|(l, _)| *l >= 0)
                .ok_or_else(|| {
                    HostError::NotAvailable(format!("{OFFSETS_TOPIC}-{p} has no leader"))
                })?;
            let address = meta.addresses.get(&leader).cloned().unwrap_or_default();
            Ok(FindCoordinatorResponse {
                error: ErrorCode::None as i32,
                error_message: String::new(),
                partition: p,
                coordinator: Some(LeaderHint {
                    leader_id: leader,
                    leader_epoch: epoch,
                    address,
                }),
            })
        });
        answer(result)
    }

    #[instrument(skip_all, fields(group = %request.get_ref().group_id, member = %request.get_ref().member_id, epoch = request.get_ref().member_epoch))]
    async fn heartbeat(
        &self,
        request: Request<GroupHeartbeatRequest>,
    ) -> Result<Response<GroupHeartbeatResponse>, Status> {
        let req = request.into_inner();
        let topics = self.coordinator.manager().metadata();
        let config = self.coordinator.config().clone();
        let group_id = req.group_id.clone();
        let g = group_id.clone();
        let result = self
            .run(
                &group_id,
                move |a, _| a.shard.heartbeat(&req, &topics.partition_counts, &config),
                move |a, r: &GroupHeartbeatResponse, now_ms| {
                    if r.member_epoch >= 0 {
                        a.sessions.heartbeat(&a.shard, &g, &r.member_id, now_ms);
                    } else {
                        a.sessions.retain_members(&a.shard);
                    }
                },
            )
            .await;
        answer(result)
    }

    #[instrument(skip_all, fields(group = %request.get_ref().group_id, partitions = request.get_ref().partitions.len()))]
    async fn commit_offsets(
        &self,
        request: Request<CommitOffsetsRequest>,
    ) -> Result<Response<CommitOffsetsResponse>, Status> {
        let req = request.into_inner();
        let config = self.coordinator.config().clone();
        let group_id = req.group_id.clone();
        let result = self
            .run(
                &group_id,
                move |a, wall_ms| a.shard.commit_offsets(&req, wall_ms, &config),
                |_, _, _| {},
            )
            .await;
        answer(result)
    }

    #[instrument(skip_all, fields(group = %request.get_ref().group_id))]
    async fn fetch_offsets(
        &self,
        request: Request<FetchOffsetsRequest>,
    ) -> Result<Response<FetchOffsetsResponse>, Status> {
        let req = request.into_inner();
        let group_id = req.group_id.clone();
        let result = self
            .run(
                &group_id,
                move |a, _| read_only(a.shard.fetch_offsets(&req)),
                |_, _, _| {},
            )
            .await;
        answer(result)
    }

    #[instrument(skip_all)]
    async fn list_groups(
        &self,
        _request: Request<ListGroupsRequest>,
    ) -> Result<Response<ListGroupsResponse>, Status> {
        let me = self.coordinator.manager().broker_id();
        let mut groups = Vec::new();
        for host in self.coordinator.hosts() {
            let listed = host
                .execute(move |a, _| read_only(a.shard.list_groups(me)), |_, _, _| {})
                .await;
            // A shard still loading or just lost is left out: its groups
            // are listed by whoever serves them.
            if let Ok(l) = listed {
                groups.extend(l);
            }
        }
        Ok(Response::new(ListGroupsResponse {
            error: ErrorCode::None as i32,
            error_message: String::new(),
            groups,
        }))
    }

    #[instrument(skip_all, fields(group = %request.get_ref().group_id))]
    async fn describe_group(
        &self,
        request: Request<DescribeGroupRequest>,
    ) -> Result<Response<DescribeGroupResponse>, Status> {
        let group_id = request.into_inner().group_id;
        let me = self.coordinator.manager().broker_id();
        let g = group_id.clone();
        let result = self
            .run(
                &group_id,
                move |a, _| {
                    read_only(a.shard.describe_group(&g, me)).and_then(|o| {
                        Ok(Outcome {
                            records: o.records,
                            response: o.response?,
                        })
                    })
                },
                |_, _, _| {},
            )
            .await;
        answer(result)
    }

    #[instrument(skip_all, fields(group = %request.get_ref().group_id))]
    async fn delete_group(
        &self,
        request: Request<DeleteGroupRequest>,
    ) -> Result<Response<DeleteGroupResponse>, Status> {
        let group_id = request.into_inner().group_id;
        let g = group_id.clone();
        let result = self
            .run(
                &group_id,
                move |a, _| {
                    a.shard.delete_group(&g).map(|o| Outcome {
                        records: o.records,
                        response: DeleteGroupResponse::default(),
                    })
                },
                |a, _, _| a.sessions.retain_members(&a.shard),
            )
            .await;
        answer(result)
    }
}
