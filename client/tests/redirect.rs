//! The admin client's retry and redirect loop against in-test gRPC servers.
//!
//! The servers here are TEST DOUBLES, not the coordinator: a
//! [`StandbyDouble`] that refuses everything the way a standby coordinator
//! does (FAILED_PRECONDITION plus the `ballast-active-coordinator` hint), and
//! an [`ActiveDouble`] that answers GetClusterInfo and CreateTopic and can
//! be told to fail or stall. They run on loopback ports chosen by the OS.
//! End-to-end tests against the real coordinator live with the coordinator.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ballast_client::{ACTIVE_COORDINATOR_KEY, AdminClient, AdminOptions, ClientError, NewTopic};
use ballast_proto::v1::admin_server::{Admin, AdminServer};
use ballast_proto::v1::*;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};

type Answer<T> = Result<Response<T>, Status>;

/// Test double of a standby coordinator: answers every call with
/// FAILED_PRECONDITION and `hint` in the response metadata (GetClusterInfo
/// too, unless `answers_info`: then it answers that one as a standby would,
/// `active: false`), and records the request ids of the CreateTopic calls it
/// refused.
#[derive(Debug, Default)]
struct StandbyDouble {
    hint: String,
    answers_info: bool,
    calls: AtomicU32,
    create_ids: Mutex<Vec<String>>,
}

impl StandbyDouble {
    fn refuse<T>(&self) -> Answer<T> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut status = Status::failed_precondition("not the active coordinator");
        status.metadata_mut().insert(
            ACTIVE_COORDINATOR_KEY,
            self.hint.parse().expect("ascii hint"),
        );
        Err(status)
    }
}

#[tonic::async_trait]
impl Admin for StandbyDouble {
    async fn get_cluster_info(
        &self,
        _: Request<GetClusterInfoRequest>,
    ) -> Answer<GetClusterInfoResponse> {
        if !self.answers_info {
            return self.refuse();
        }
        // As the real coordinator does: a standby answers this one itself.
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(GetClusterInfoResponse {
            cluster_id: "double-cluster".into(),
            active: false,
            active_address: self.hint.clone(),
            ..Default::default()
        }))
    }
    async fn find_coordinator_partition(
        &self,
        _: Request<FindCoordinatorPartitionRequest>,
    ) -> Answer<FindCoordinatorPartitionResponse> {
        self.refuse()
    }
    async fn list_brokers(&self, _: Request<ListBrokersRequest>) -> Answer<ListBrokersResponse> {
        self.refuse()
    }
    async fn create_topic(&self, r: Request<CreateTopicRequest>) -> Answer<CreateTopicResponse> {
        self.create_ids
            .lock()
            .unwrap()
            .push(r.into_inner().request_id);
        self.refuse()
    }
    async fn delete_topic(&self, _: Request<DeleteTopicRequest>) -> Answer<DeleteTopicResponse> {
        self.refuse()
    }
    async fn list_topics(&self, _: Request<ListTopicsRequest>) -> Answer<ListTopicsResponse> {
        self.refuse()
    }
    async fn describe_topics(
        &self,
        _: Request<DescribeTopicsRequest>,
    ) -> Answer<DescribeTopicsResponse> {
        self.refuse()
    }
    async fn add_partitions(
        &self,
        _: Request<AddPartitionsRequest>,
    ) -> Answer<AddPartitionsResponse> {
        self.refuse()
    }
    async fn elect_preferred_leaders(
        &self,
        _: Request<ElectPreferredLeadersRequest>,
    ) -> Answer<ElectPreferredLeadersResponse> {
        self.refuse()
    }

    async fn execute_reassignment(
        &self,
        _: Request<ballast_proto::v1::ExecuteReassignmentRequest>,
    ) -> Answer<ballast_proto::v1::ExecuteReassignmentResponse> {
        self.refuse()
    }

    async fn describe_reassignment(
        &self,
        _: Request<ballast_proto::v1::DescribeReassignmentRequest>,
    ) -> Answer<ballast_proto::v1::DescribeReassignmentResponse> {
        self.refuse()
    }

    async fn cancel_reassignment(
        &self,
        _: Request<ballast_proto::v1::CancelReassignmentRequest>,
    ) -> Answer<ballast_proto::v1::CancelReassignmentResponse> {
        self.refuse()
    }

    async fn propose_balance(
        &self,
        _: Request<ballast_proto::v1::ProposeBalanceRequest>,
    ) -> Answer<ballast_proto::v1::ProposeBalanceResponse> {
        self.refuse()
    }
}

/// Test double of the active coordinator. GetClusterInfo answers with
/// `address`; CreateTopic records the request id and fails the first
/// `unavailable_creates` calls with UNAVAILABLE; DeleteTopic refuses with
/// INVALID_ARGUMENT; ElectPreferredLeaders never answers in time. Anything
/// else is UNIMPLEMENTED.
#[derive(Debug, Default)]
struct ActiveDouble {
    address: String,
    unavailable_creates: AtomicU32,
    create_ids: Mutex<Vec<String>>,
    info_calls: AtomicU32,
    delete_calls: AtomicU32,
    elect_calls: AtomicU32,
}

#[tonic::async_trait]
impl Admin for ActiveDouble {
    async fn get_cluster_info(
        &self,
        _: Request<GetClusterInfoRequest>,
    ) -> Answer<GetClusterInfoResponse> {
        self.info_calls.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(GetClusterInfoResponse {
            cluster_id: "double-cluster".into(),
            coordinator_epoch: 7,
            active: true,
            active_address: self.address.clone(),
            ..Default::default()
        }))
    }
    async fn find_coordinator_partition(
        &self,
        _: Request<FindCoordinatorPartitionRequest>,
    ) -> Answer<FindCoordinatorPartitionResponse> {
        Err(Status::unimplemented("test double"))
    }
    async fn list_brokers(&self, _: Request<ListBrokersRequest>) -> Answer<ListBrokersResponse> {
        Err(Status::unimplemented("test double"))
    }
    async fn create_topic(&self, r: Request<CreateTopicRequest>) -> Answer<CreateTopicResponse> {
        let req = r.into_inner();
        self.create_ids.lock().unwrap().push(req.request_id.clone());
        let failing = self
            .unavailable_creates
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(Status::unavailable("metadata store unavailable"));
        }
        Ok(Response::new(CreateTopicResponse {
            topic: Some(TopicDescription {
                name: req.name,
                topic_id: "t-1".into(),
                replication_factor: req.replication_factor,
                partitions: (0..req.partitions)
                    .map(|p| PartitionDescription {
                        partition: p,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
        }))
    }
    async fn delete_topic(&self, _: Request<DeleteTopicRequest>) -> Answer<DeleteTopicResponse> {
        self.delete_calls.fetch_add(1, Ordering::SeqCst);
        Err(Status::invalid_argument("name: must not be empty"))
    }
    async fn list_topics(&self, _: Request<ListTopicsRequest>) -> Answer<ListTopicsResponse> {
        Err(Status::unimplemented("test double"))
    }
    async fn describe_topics(
        &self,
        _: Request<DescribeTopicsRequest>,
    ) -> Answer<DescribeTopicsResponse> {
        Err(Status::unimplemented("test double"))
    }
    async fn add_partitions(
        &self,
        _: Request<AddPartitionsRequest>,
    ) -> Answer<AddPartitionsResponse> {
        Err(Status::unimplemented("test double"))
    }
    async fn elect_preferred_leaders(
        &self,
        _: Request<ElectPreferredLeadersRequest>,
    ) -> Answer<ElectPreferredLeadersResponse> {
        self.elect_calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(Response::new(ElectPreferredLeadersResponse::default()))
    }

    async fn execute_reassignment(
        &self,
        _: Request<ballast_proto::v1::ExecuteReassignmentRequest>,
    ) -> Answer<ballast_proto::v1::ExecuteReassignmentResponse> {
        Err(Status::unimplemented("not in this double"))
    }

    async fn describe_reassignment(
        &self,
        _: Request<ballast_proto::v1::DescribeReassignmentRequest>,
    ) -> Answer<ballast_proto::v1::DescribeReassignmentResponse> {
        Err(Status::unimplemented("not in this double"))
    }

    async fn cancel_reassignment(
        &self,
        _: Request<ballast_proto::v1::CancelReassignmentRequest>,
    ) -> Answer<ballast_proto::v1::CancelReassignmentResponse> {
        Err(Status::unimplemented("not in this double"))
    }

    async fn propose_balance(
        &self,
        _: Request<ballast_proto::v1::ProposeBalanceRequest>,
    ) -> Answer<ballast_proto::v1::ProposeBalanceResponse> {
        Err(Status::unimplemented("not in this double"))
    }
}

/// A loopback listener on a port the OS picked, and its address.
async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    (listener, addr.to_string())
}

fn serve<S: Admin>(listener: TcpListener, service: Arc<S>) {
    tokio::spawn(
        Server::builder()
            .add_service(AdminServer::from_arc(service))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
}

/// A standby double and an active double; the standby's hint names the
/// active one. Returns (standby address, standby, active address, active).
async fn standby_and_active(
    unavailable_creates: u32,
) -> (String, Arc<StandbyDouble>, String, Arc<ActiveDouble>) {
    let (active_listener, active_addr) = listen().await;
    let (standby_listener, standby_addr) = listen().await;
    let active = Arc::new(ActiveDouble {
        address: active_addr.clone(),
        unavailable_creates: AtomicU32::new(unavailable_creates),
        ..Default::default()
    });
    let standby = Arc::new(StandbyDouble {
        hint: active_addr.clone(),
        ..Default::default()
    });
    serve(active_listener, Arc::clone(&active));
    serve(standby_listener, Arc::clone(&standby));
    (standby_addr, standby, active_addr, active)
}

fn quick() -> AdminOptions {
    AdminOptions {
        connect_timeout: Duration::from_millis(500),
        call_timeout: Duration::from_secs(2),
        deadline: Duration::from_secs(5),
        ..AdminOptions::default()
    }
}

#[tokio::test]
async fn follows_the_standby_hint_and_remembers_the_active_coordinator() {
    let (standby_addr, standby, active_addr, active) = standby_and_active(0).await;
    // Only the standby is configured: the active one is known from the hint.
    let client = AdminClient::connect(vec![standby_addr], quick()).unwrap();

    let info = client.cluster_info().await.unwrap();
    assert_eq!(info.cluster_id, "double-cluster");
    assert_eq!(info.active_address, active_addr);
    assert_eq!(
        client.active_address().as_deref(),
        Some(active_addr.as_str())
    );
    assert_eq!(standby.calls.load(Ordering::SeqCst), 1);

    // The next call goes straight to the active coordinator.
    client.cluster_info().await.unwrap();
    assert_eq!(standby.calls.load(Ordering::SeqCst), 1);
    assert_eq!(active.info_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn create_topic_retries_reuse_one_request_id() {
    let (standby_addr, standby, active_addr, active) = standby_and_active(1).await;
    let client = AdminClient::connect(vec![standby_addr, active_addr], quick()).unwrap();

    let topic = client
        .create_topic(NewTopic::new("orders", 3, 1))
        .await
        .unwrap();
    assert_eq!(topic.name, "orders");
    assert_eq!(topic.partitions.len(), 3);

    // Standby (redirect) -> active (UNAVAILABLE) -> standby again (the next
    // address) -> active (success): one id throughout.
    let active_ids = active.create_ids.lock().unwrap().clone();
    let standby_ids = standby.create_ids.lock().unwrap().clone();
    assert_eq!(active_ids.len(), 2, "{active_ids:?}");
    assert_eq!(standby_ids.len(), 2, "{standby_ids:?}");
    let id = &active_ids[0];
    assert_eq!(id.len(), 32);
    assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    assert!(active_ids.iter().chain(&standby_ids).all(|i| i == id));

    // A new logical call draws a new id.
    client
        .create_topic(NewTopic::new("payments", 1, 1))
        .await
        .unwrap();
    let ids = active.create_ids.lock().unwrap().clone();
    assert_eq!(ids.len(), 3);
    assert_ne!(&ids[2], id);
}

#[tokio::test]
async fn both_addresses_dead_fails_within_the_deadline_naming_both() {
    // Bind, note the port, close: connections are then refused.
    let (l1, dead1) = listen().await;
    let (l2, dead2) = listen().await;
    drop((l1, l2));
    let options = AdminOptions {
        deadline: Duration::from_millis(1500),
        ..quick()
    };
    let client = AdminClient::connect(vec![dead1.clone(), dead2.clone()], options).unwrap();

    let started = Instant::now();
    let err = client.cluster_info().await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed <= Duration::from_millis(1500), "took {elapsed:?}");
    // It kept trying until close to the deadline: the next backoff (1 s at
    // most) would have passed it.
    assert!(
        elapsed >= Duration::from_millis(400),
        "gave up after {elapsed:?}"
    );

    let ClientError::Exhausted {
        rpc,
        attempts,
        ref tried,
        ..
    } = err
    else {
        panic!("expected Exhausted, got {err:?}");
    };
    assert_eq!(rpc, "GetClusterInfo");
    assert!(attempts >= 4, "{attempts} attempts");
    let addresses: Vec<&str> = tried.iter().map(|a| a.address.as_str()).collect();
    assert_eq!(addresses, [dead1.as_str(), dead2.as_str()]);
    assert!(
        tried.iter().all(|a| a.code == Code::Unavailable),
        "{tried:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&dead1) && message.contains(&dead2),
        "{message}"
    );
    assert_eq!(err.code(), Some(Code::Unavailable));
}

#[tokio::test]
async fn cluster_info_answered_by_a_standby_is_asked_again_of_the_active_one() {
    let (active_listener, active_addr) = listen().await;
    let active = Arc::new(ActiveDouble {
        address: active_addr.clone(),
        ..Default::default()
    });
    serve(active_listener, Arc::clone(&active));
    let (standby_listener, standby_addr) = listen().await;
    let standby = Arc::new(StandbyDouble {
        hint: active_addr.clone(),
        answers_info: true,
        ..Default::default()
    });
    serve(standby_listener, Arc::clone(&standby));

    let client = AdminClient::connect(vec![standby_addr.clone()], quick()).unwrap();
    let info = client.cluster_info().await.unwrap();
    assert!(info.active);
    assert_eq!(info.coordinator_epoch, 7);
    assert_eq!(
        client.active_address().as_deref(),
        Some(active_addr.as_str())
    );
    assert_eq!(standby.calls.load(Ordering::SeqCst), 1);
    assert_eq!(active.info_calls.load(Ordering::SeqCst), 1);

    // A standby that knows no active coordinator: its own answer stands,
    // and it is not remembered as the active one.
    let (lonely_listener, lonely_addr) = listen().await;
    serve(
        lonely_listener,
        Arc::new(StandbyDouble {
            answers_info: true,
            ..Default::default()
        }),
    );
    let client = AdminClient::connect(vec![lonely_addr], quick()).unwrap();
    let info = client.cluster_info().await.unwrap();
    assert!(!info.active);
    assert_eq!(info.active_address, "");
    assert_eq!(client.active_address(), None);
}

#[tokio::test]
async fn an_empty_hint_moves_on_to_the_next_address() {
    let (standby_listener, standby_addr) = listen().await;
    let standby = Arc::new(StandbyDouble::default()); // election under way
    serve(standby_listener, Arc::clone(&standby));
    let (active_listener, active_addr) = listen().await;
    let active = Arc::new(ActiveDouble {
        address: active_addr.clone(),
        ..Default::default()
    });
    serve(active_listener, Arc::clone(&active));

    let client = AdminClient::connect(vec![standby_addr, active_addr.clone()], quick()).unwrap();
    let info = client.cluster_info().await.unwrap();
    assert_eq!(info.active_address, active_addr);
    assert_eq!(standby.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn the_active_coordinators_refusal_is_returned_at_once() {
    let (standby_addr, _standby, active_addr, active) = standby_and_active(0).await;
    let client = AdminClient::connect(vec![standby_addr], quick()).unwrap();

    let err = client.delete_topic("").await.unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument));
    assert!(
        matches!(&err, ClientError::Rejected { address, .. } if *address == active_addr),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "DeleteTopic failed: INVALID_ARGUMENT: name: must not be empty (coordinator {active_addr})"
        )
    );
    assert_eq!(active.delete_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_write_that_times_out_is_not_repeated() {
    let (_standby_addr, _standby, active_addr, active) = standby_and_active(0).await;
    let options = AdminOptions {
        call_timeout: Duration::from_millis(300),
        ..quick()
    };
    let client = AdminClient::connect(vec![active_addr], options).unwrap();

    let err = client.elect_preferred_leaders(None).await.unwrap_err();
    assert!(matches!(err, ClientError::OutcomeUnknown { .. }), "{err:?}");
    assert_eq!(err.code(), Some(Code::DeadlineExceeded));
    assert_eq!(active.elect_calls.load(Ordering::SeqCst), 1);
}
