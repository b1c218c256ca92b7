//! The group consumer against an in-test coordinator on loopback.
//!
//! The server here is a TEST DOUBLE of a broker agent's Data and Group
//! services, not the agent: Data answers Metadata (one topic `t` of two
//! partitions led by the double), ListOffsets (7) and Fetch (nothing, after
//! the long poll); Group plays a fixed script of heartbeat answers: first
//! `NOT_COORDINATOR` (the member must find the coordinator again), then an
//! assignment of both partitions, then `FENCED_MEMBER_EPOCH` once the member
//! reports owning them, then one partition, then none (a revocation).
//! End-to-end tests against real agents live in `tests/`.
//!
//! What is checked is the order of what the member did, in one log shared
//! by the double (requests received) and the rebalance listener (callbacks):
//! a partition is reported released only after `on_revoked` ran and its
//! position was committed; after fencing, `on_lost` runs before the member
//! rejoins with epoch 0 under the same member id and owning nothing; the
//! member leaves with epoch -1 on close.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballast_client::{
    CommitEvent, ConsumerConfig, GroupConfig, GroupConsumer, MetadataOptions, RebalanceEvent,
    RebalanceListener,
};
use ballast_proto::v1::data_server::{Data, DataServer};
use ballast_proto::v1::group_server::{Group, GroupServer};
use ballast_proto::v1::*;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

type Answer<T> = Result<Response<T>, Status>;
type Log = Arc<Mutex<Vec<String>>>;

#[derive(Debug, Clone)]
struct Double {
    address: String,
    log: Log,
    stage: Arc<Mutex<u32>>,
}

fn owned_text(owned: &[TopicPartitions]) -> String {
    let mut parts = Vec::new();
    for g in owned {
        for p in &g.partitions {
            parts.push(format!("{}-{p}", g.topic));
        }
    }
    format!("[{}]", parts.join(","))
}

fn assignment(partitions: &[i32]) -> Vec<TopicPartitions> {
    if partitions.is_empty() {
        return vec![];
    }
    vec![TopicPartitions {
        topic: "t".into(),
        partitions: partitions.to_vec(),
    }]
}

#[tonic::async_trait]
impl Data for Double {
    async fn produce(&self, _: Request<ProduceRequest>) -> Answer<ProduceResponse> {
        Err(Status::unimplemented("not in this double"))
    }

    async fn fetch(&self, r: Request<FetchRequest>) -> Answer<FetchResponse> {
        let r = r.into_inner();
        tokio::time::sleep(Duration::from_millis(u64::from(r.max_wait_ms))).await;
        Ok(Response::new(FetchResponse {
            results: r
                .partitions
                .iter()
                .map(|p| FetchPartitionResult {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    ..FetchPartitionResult::default()
                })
                .collect(),
        }))
    }

    async fn list_offsets(&self, r: Request<ListOffsetsRequest>) -> Answer<ListOffsetsResponse> {
        Ok(Response::new(ListOffsetsResponse {
            results: r
                .into_inner()
                .partitions
                .iter()
                .map(|p| ListOffsetsResult {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    offset: 7,
                    ..ListOffsetsResult::default()
                })
                .collect(),
        }))
    }

    async fn metadata(&self, _: Request<MetadataRequest>) -> Answer<MetadataResponse> {
        Ok(Response::new(MetadataResponse {
            brokers: vec![MetadataBroker {
                broker_id: 1,
                address: self.address.clone(),
                rack: String::new(),
            }],
            topics: vec![TopicMetadata {
                name: "t".into(),
                partitions: (0..2)
                    .map(|p| PartitionMetadata {
                        partition: p,
                        leader: 1,
                        leader_epoch: 0,
                        replicas: vec![1],
                        isr: vec![1],
                    })
                    .collect(),
                error: 0,
            }],
            offsets_partitions: 1,
        }))
    }
}

#[tonic::async_trait]
impl Group for Double {
    async fn find_coordinator(
        &self,
        _: Request<FindCoordinatorRequest>,
    ) -> Answer<FindCoordinatorResponse> {
        self.log.lock().unwrap().push("find".into());
        Ok(Response::new(FindCoordinatorResponse {
            coordinator: Some(LeaderHint {
                leader_id: 1,
                leader_epoch: 0,
                address: self.address.clone(),
            }),
            ..FindCoordinatorResponse::default()
        }))
    }

    async fn heartbeat(&self, r: Request<GroupHeartbeatRequest>) -> Answer<GroupHeartbeatResponse> {
        let r = r.into_inner();
        let owned = owned_text(&r.owned);
        self.log.lock().unwrap().push(format!(
            "hb {} {} {owned}",
            r.member_id.len(),
            r.member_epoch
        ));
        let mut stage = self.stage.lock().unwrap();
        let ok = |epoch: i32, partitions: &[i32]| GroupHeartbeatResponse {
            member_id: r.member_id.clone(),
            member_epoch: epoch,
            heartbeat_interval_ms: 50,
            assignment: assignment(partitions),
            ..GroupHeartbeatResponse::default()
        };
        let error = |code: ErrorCode| GroupHeartbeatResponse {
            error: code as i32,
            ..GroupHeartbeatResponse::default()
        };
        if r.member_epoch == -1 {
            self.log.lock().unwrap().push("left".into());
            return Ok(Response::new(ok(-1, &[])));
        }
        let answer = match *stage {
            0 => {
                *stage = 1;
                error(ErrorCode::NotCoordinator)
            }
            1 => {
                *stage = 2;
                ok(1, &[0, 1])
            }
            2 if owned == "[t-0,t-1]" => {
                *stage = 3;
                error(ErrorCode::FencedMemberEpoch)
            }
            2 => ok(1, &[0, 1]),
            3 if r.member_epoch == 0 && owned == "[]" => {
                *stage = 4;
                ok(2, &[0])
            }
            3 => error(ErrorCode::FencedMemberEpoch),
            // A few heartbeats owning t-0 first, so its position (7, from
            // ListOffsets) is known and there is something to commit.
            4..=13 if owned == "[t-0]" => {
                *stage += 1;
                ok(2, &[0])
            }
            4..=13 => ok(2, &[0]),
            14 if owned == "[t-0]" => {
                *stage = 15;
                ok(2, &[])
            }
            14 => ok(2, &[0]),
            15 if owned == "[]" => {
                *stage = 16;
                ok(3, &[])
            }
            15 => ok(2, &[]),
            _ => ok(3, &[]),
        };
        Ok(Response::new(answer))
    }

    async fn commit_offsets(
        &self,
        r: Request<CommitOffsetsRequest>,
    ) -> Answer<CommitOffsetsResponse> {
        let r = r.into_inner();
        let parts: Vec<String> = r
            .partitions
            .iter()
            .map(|p| format!("{}-{}@{}", p.topic, p.partition, p.offset))
            .collect();
        self.log
            .lock()
            .unwrap()
            .push(format!("commit {} [{}]", r.member_epoch, parts.join(",")));
        Ok(Response::new(CommitOffsetsResponse::default()))
    }

    async fn fetch_offsets(&self, _: Request<FetchOffsetsRequest>) -> Answer<FetchOffsetsResponse> {
        Ok(Response::new(FetchOffsetsResponse::default()))
    }

    async fn list_groups(&self, _: Request<ListGroupsRequest>) -> Answer<ListGroupsResponse> {
        Ok(Response::new(ListGroupsResponse::default()))
    }

    async fn describe_group(
        &self,
        _: Request<DescribeGroupRequest>,
    ) -> Answer<DescribeGroupResponse> {
        Err(Status::unimplemented("not in this double"))
    }

    async fn delete_group(&self, _: Request<DeleteGroupRequest>) -> Answer<DeleteGroupResponse> {
        Err(Status::unimplemented("not in this double"))
    }
}

/// Writes the callbacks into the shared log.
struct Recorder(Log);

impl RebalanceListener for Recorder {
    fn on_assigned(&mut self, e: &RebalanceEvent) {
        self.0.lock().unwrap().push(format!("assigned {}", text(e)));
    }
    fn on_revoked(&mut self, e: &RebalanceEvent) {
        self.0.lock().unwrap().push(format!("revoked {}", text(e)));
    }
    fn on_lost(&mut self, e: &RebalanceEvent) {
        self.0.lock().unwrap().push(format!("lost {}", text(e)));
    }
    fn on_committed(&mut self, e: &CommitEvent) {
        self.0
            .lock()
            .unwrap()
            .push(format!("committed {}", e.offsets.len()));
    }
}

fn text(e: &RebalanceEvent) -> String {
    let parts: Vec<String> = e.partitions.iter().map(ToString::to_string).collect();
    format!("{} [{}]", e.member_epoch, parts.join(","))
}

fn position(log: &[String], line: &str) -> usize {
    log.iter()
        .position(|l| l == line)
        .unwrap_or_else(|| panic!("{line:?} not in the log:\n{}", log.join("\n")))
}

#[tokio::test]
async fn revokes_before_releasing_and_gives_up_lost_partitions_before_rejoining() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let log: Log = Arc::default();
    let double = Double {
        address: address.clone(),
        log: log.clone(),
        stage: Arc::default(),
    };
    tokio::spawn(
        Server::builder()
            .add_service(DataServer::new(double.clone()))
            .add_service(GroupServer::new(double.clone()))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let config = ConsumerConfig {
        max_wait: Duration::from_millis(20),
        retry_backoff: Duration::from_millis(10),
        metadata: MetadataOptions {
            min_refresh_interval: Duration::from_millis(10),
            ..MetadataOptions::default()
        },
        ..ConsumerConfig::default()
    };
    let mut consumer =
        GroupConsumer::connect(vec![address], config, GroupConfig::new("g")).unwrap();
    consumer.set_listener(Box::new(Recorder(log.clone())));
    consumer.subscribe(&["t".into()]).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while *double.stage.lock().unwrap() < 16 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "script stuck:\n{}",
            log.lock().unwrap().join("\n")
        );
        consumer.poll(Duration::from_millis(50)).await.unwrap();
    }
    assert_eq!(consumer.member_epoch(), 3);
    assert!(consumer.assignment().is_empty());
    consumer.close().await.unwrap();
    let log = log.lock().unwrap().clone();

    // The first answer was NOT_COORDINATOR: found again, then joined.
    assert_eq!(log.iter().filter(|l| *l == "find").count(), 2, "{log:?}");
    let joined = position(&log, "assigned 1 [t-0,t-1]");
    // Fenced: lost before the rejoin (epoch 0, same 22-char id, nothing owned).
    let lost = position(&log, "lost 1 [t-0,t-1]");
    let rejoin = log[lost..]
        .iter()
        .position(|l| l == "hb 22 0 []")
        .map(|i| i + lost)
        .unwrap_or_else(|| panic!("no rejoin after the loss: {log:?}"));
    assert!(joined < lost && lost < rejoin, "{log:?}");
    assert!(
        !log[lost..rejoin].iter().any(|l| l.starts_with("commit")),
        "lost partitions are not committed: {log:?}"
    );
    // Revocation: callback, then the commit of its position, then the
    // release reported.
    let assigned = position(&log, "assigned 2 [t-0]");
    let revoked = position(&log, "revoked 2 [t-0]");
    let commit = position(&log, "commit 2 [t-0@7]");
    let released = log[revoked..]
        .iter()
        .position(|l| l == "hb 22 2 []")
        .map(|i| i + revoked)
        .unwrap_or_else(|| panic!("release never reported: {log:?}"));
    assert!(
        assigned < revoked && revoked < commit && commit < released,
        "{log:?}"
    );
    // No heartbeat reported t-0 released before the callback.
    assert!(
        !log[assigned..revoked].iter().any(|l| l == "hb 22 2 []"),
        "{log:?}"
    );
    assert_eq!(log.last().map(String::as_str), Some("left"), "{log:?}");
}

/// `GroupConsumer::commit_async` against a second double whose commits are
/// slow: each CommitOffsets is answered only after `COMMIT_DELAY`, the
/// first acknowledged, the second refused for its partition. The member
/// owns `t-0` (position 7 from ListOffsets, nothing committed).
///
/// What is checked, in one log shared by the double and the listener:
/// `commit_async` returns before the coordinator answered; the first
/// acknowledgement reaches `on_committed` from a later `poll`; after the
/// second `commit_async`, `close` (no poll in between) waits for the slow
/// answer, reports the refusal to `on_commit_failed`, and only then leaves
/// the group. `close` itself returns `Ok`: an async commit's outcome goes
/// to the listener, as `commit_async` documents.
mod async_commits {
    use super::*;
    use ballast_client::GroupError;

    const COMMIT_DELAY: Duration = Duration::from_millis(400);

    #[derive(Debug, Clone)]
    struct SlowCommits {
        address: String,
        log: Log,
        commits: Arc<Mutex<u32>>,
    }

    #[tonic::async_trait]
    impl Data for SlowCommits {
        async fn produce(&self, _: Request<ProduceRequest>) -> Answer<ProduceResponse> {
            Err(Status::unimplemented("not in this double"))
        }

        async fn fetch(&self, r: Request<FetchRequest>) -> Answer<FetchResponse> {
            // Nothing to read (after the long poll): the position stays
            // where ListOffsets put it.
            let r = r.into_inner();
            tokio::time::sleep(Duration::from_millis(u64::from(r.max_wait_ms))).await;
            Ok(Response::new(FetchResponse {
                results: r
                    .partitions
                    .iter()
                    .map(|p| FetchPartitionResult {
                        topic: p.topic.clone(),
                        partition: p.partition,
                        ..FetchPartitionResult::default()
                    })
                    .collect(),
            }))
        }

        async fn list_offsets(
            &self,
            r: Request<ListOffsetsRequest>,
        ) -> Answer<ListOffsetsResponse> {
            Ok(Response::new(ListOffsetsResponse {
                results: r
                    .into_inner()
                    .partitions
                    .iter()
                    .map(|p| ListOffsetsResult {
                        topic: p.topic.clone(),
                        partition: p.partition,
                        offset: 7,
                        ..ListOffsetsResult::default()
                    })
                    .collect(),
            }))
        }

        async fn metadata(&self, _: Request<MetadataRequest>) -> Answer<MetadataResponse> {
            Ok(Response::new(MetadataResponse {
                brokers: vec![MetadataBroker {
                    broker_id: 1,
                    address: self.address.clone(),
                    rack: String::new(),
                }],
                topics: vec![TopicMetadata {
                    name: "t".into(),
                    partitions: vec![PartitionMetadata {
                        partition: 0,
                        leader: 1,
                        leader_epoch: 0,
                        replicas: vec![1],
                        isr: vec![1],
                    }],
                    error: 0,
                }],
                offsets_partitions: 1,
            }))
        }
    }

    #[tonic::async_trait]
    impl Group for SlowCommits {
        async fn find_coordinator(
            &self,
            _: Request<FindCoordinatorRequest>,
        ) -> Answer<FindCoordinatorResponse> {
            Ok(Response::new(FindCoordinatorResponse {
                coordinator: Some(LeaderHint {
                    leader_id: 1,
                    leader_epoch: 0,
                    address: self.address.clone(),
                }),
                ..FindCoordinatorResponse::default()
            }))
        }

        async fn heartbeat(
            &self,
            r: Request<GroupHeartbeatRequest>,
        ) -> Answer<GroupHeartbeatResponse> {
            let r = r.into_inner();
            if r.member_epoch == -1 {
                self.log.lock().unwrap().push("left".into());
                return Ok(Response::new(GroupHeartbeatResponse {
                    member_id: r.member_id,
                    member_epoch: -1,
                    ..GroupHeartbeatResponse::default()
                }));
            }
            Ok(Response::new(GroupHeartbeatResponse {
                member_id: r.member_id,
                member_epoch: 1,
                heartbeat_interval_ms: 50,
                assignment: assignment(&[0]),
                ..GroupHeartbeatResponse::default()
            }))
        }

        async fn commit_offsets(
            &self,
            r: Request<CommitOffsetsRequest>,
        ) -> Answer<CommitOffsetsResponse> {
            let r = r.into_inner();
            let n = {
                let mut c = self.commits.lock().unwrap();
                *c += 1;
                *c
            };
            let parts: Vec<String> = r
                .partitions
                .iter()
                .map(|p| format!("{}-{}@{}", p.topic, p.partition, p.offset))
                .collect();
            self.log
                .lock()
                .unwrap()
                .push(format!("commit {n} received [{}]", parts.join(",")));
            tokio::time::sleep(COMMIT_DELAY).await;
            self.log
                .lock()
                .unwrap()
                .push(format!("commit {n} answered"));
            let refuse = n >= 2;
            Ok(Response::new(CommitOffsetsResponse {
                results: r
                    .partitions
                    .iter()
                    .map(|p| CommitPartitionResult {
                        topic: p.topic.clone(),
                        partition: p.partition,
                        error: if refuse {
                            ErrorCode::InvalidCommitOffset as i32
                        } else {
                            ErrorCode::None as i32
                        },
                        error_message: if refuse {
                            "refused by the double".into()
                        } else {
                            String::new()
                        },
                    })
                    .collect(),
                ..CommitOffsetsResponse::default()
            }))
        }

        async fn fetch_offsets(
            &self,
            _: Request<FetchOffsetsRequest>,
        ) -> Answer<FetchOffsetsResponse> {
            Ok(Response::new(FetchOffsetsResponse::default()))
        }

        async fn list_groups(&self, _: Request<ListGroupsRequest>) -> Answer<ListGroupsResponse> {
            Ok(Response::new(ListGroupsResponse::default()))
        }

        async fn describe_group(
            &self,
            _: Request<DescribeGroupRequest>,
        ) -> Answer<DescribeGroupResponse> {
            Err(Status::unimplemented("not in this double"))
        }

        async fn delete_group(
            &self,
            _: Request<DeleteGroupRequest>,
        ) -> Answer<DeleteGroupResponse> {
            Err(Status::unimplemented("not in this double"))
        }
    }

    /// Writes commit outcomes into the shared log.
    struct Outcomes(Log);

    impl RebalanceListener for Outcomes {
        fn on_committed(&mut self, e: &CommitEvent) {
            let parts: Vec<String> = e
                .offsets
                .iter()
                .map(|(tp, o)| format!("{tp}@{o}"))
                .collect();
            self.0
                .lock()
                .unwrap()
                .push(format!("committed [{}]", parts.join(",")));
        }
        fn on_commit_failed(&mut self, e: &GroupError) {
            self.0.lock().unwrap().push(format!("commit failed: {e}"));
        }
    }

    fn answered(log: &Log, n: u32) -> bool {
        log.lock()
            .unwrap()
            .iter()
            .any(|l| *l == format!("commit {n} answered"))
    }

    #[tokio::test]
    async fn async_commits_are_reported_by_poll_and_awaited_by_close() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let log: Log = Arc::default();
        let double = SlowCommits {
            address: address.clone(),
            log: log.clone(),
            commits: Arc::default(),
        };
        tokio::spawn(
            Server::builder()
                .add_service(DataServer::new(double.clone()))
                .add_service(GroupServer::new(double))
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        let config = ConsumerConfig {
            max_wait: Duration::from_millis(20),
            retry_backoff: Duration::from_millis(10),
            ..ConsumerConfig::default()
        };
        let mut group = GroupConfig::new("g");
        group.auto_commit = false;
        let mut consumer = GroupConsumer::connect(vec![address], config, group).unwrap();
        consumer.set_listener(Box::new(Outcomes(log.clone())));
        consumer.subscribe(&["t".into()]).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while consumer.consumer().position("t", 0) != Some(7) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never owned t-0 at 7:\n{}",
                log.lock().unwrap().join("\n")
            );
            consumer.poll(Duration::from_millis(50)).await.unwrap();
        }

        // Returns before the (slow) answer; a later poll reports it.
        consumer.commit_async().unwrap();
        assert!(!answered(&log, 1), "{:?}", log.lock().unwrap());
        while !log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.starts_with("committed"))
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the first async commit was never reported:\n{}",
                log.lock().unwrap().join("\n")
            );
            consumer.poll(Duration::from_millis(50)).await.unwrap();
        }

        // Outstanding at close: awaited, reported as failed, then leave.
        consumer.commit_async().unwrap();
        assert!(!answered(&log, 2), "{:?}", log.lock().unwrap());
        consumer.close().await.unwrap();
        let log = log.lock().unwrap().clone();
        assert_eq!(
            log,
            [
                "commit 1 received [t-0@7]",
                "commit 1 answered",
                "committed [t-0@7]",
                "commit 2 received [t-0@7]",
                "commit 2 answered",
                "commit failed: commit of t-0 for group \"g\": INVALID_COMMIT_OFFSET: refused by the double",
                "left",
            ],
        );
    }
}
