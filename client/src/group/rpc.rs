//! Talking to group coordinators: Group-service channels, finding a group's
//! coordinator, and the one retry loop coordinator-routed calls go through.
//!
//! Owns a lazy tonic channel per agent address (for the `Group` service,
//! served beside `Data` on the same address), the last known coordinator of
//! each group, and the rule for what an answer means: `NOT_COORDINATOR`,
//! `COORDINATOR_LOAD_IN_PROGRESS`, `COORDINATOR_NOT_AVAILABLE` and a
//! retriable transport status forget the coordinator and, after a backoff
//! that doubles up to [`MAX_BACKOFF`], find it again (FindCoordinator at
//! any agent); every other answer goes back to the caller, who interprets
//! its error code. Must never hold its locks across an await.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use ballast_proto::v1::group_client::GroupClient;
use ballast_proto::v1::{ErrorCode, FindCoordinatorRequest};
use tokio::time::Instant;
use tonic::Status;
use tonic::transport::Channel;

use super::GroupError;
use crate::connection::{Connections, DEFAULT_MAX_DECODE, error_code_name, transport_retriable};
use crate::metadata::Metadata;

/// Longest pause between two attempts to reach a coordinator.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// An answer's group-level error code, for the retry loop.
pub(crate) trait GroupAnswer {
    /// The answer's `error` field.
    fn error(&self) -> i32;
    /// The answer's `error_message` field.
    fn message(&self) -> &str;
}

macro_rules! group_answer {
    ($($t:ty),*) => {$(
        impl GroupAnswer for $t {
            fn error(&self) -> i32 {
                self.error
            }
            fn message(&self) -> &str {
                &self.error_message
            }
        }
    )*};
}

group_answer!(
    ballast_proto::v1::GroupHeartbeatResponse,
    ballast_proto::v1::CommitOffsetsResponse,
    ballast_proto::v1::FetchOffsetsResponse,
    ballast_proto::v1::DescribeGroupResponse,
    ballast_proto::v1::DeleteGroupResponse,
    ballast_proto::v1::ListGroupsResponse
);

/// True for the codes after which the coordinator is found again.
pub(crate) fn rediscover(code: i32) -> bool {
    matches!(
        ErrorCode::try_from(code),
        Ok(ErrorCode::NotCoordinator
            | ErrorCode::CoordinatorLoadInProgress
            | ErrorCode::CoordinatorNotAvailable)
    )
}

/// Channels, discovery and retries; see the module documentation.
#[derive(Debug)]
pub(crate) struct GroupRpc {
    bootstrap: Vec<String>,
    metadata: Metadata,
    connections: Connections,
    /// Limit on one call.
    pub(crate) request_timeout: Duration,
    /// First pause after a retriable failure.
    pub(crate) retry_backoff: Duration,
    coordinators: Mutex<HashMap<String, String>>,
}

impl GroupRpc {
    pub(crate) fn new(
        bootstrap: Vec<String>,
        metadata: Metadata,
        connect_timeout: Duration,
        request_timeout: Duration,
        retry_backoff: Duration,
    ) -> GroupRpc {
        GroupRpc {
            bootstrap,
            metadata,
            connections: Connections::new(connect_timeout),
            request_timeout,
            retry_backoff,
            coordinators: Mutex::new(HashMap::new()),
        }
    }

    /// The metadata cache this client routes by.
    pub(crate) fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// A Group client for `address` (channel created, not dialled, on first
    /// use).
    pub(crate) fn client(&self, address: &str) -> Result<GroupClient<Channel>, String> {
        Ok(GroupClient::new(self.connections.channel(address)?)
            .max_decoding_message_size(DEFAULT_MAX_DECODE)
            .max_encoding_message_size(usize::MAX))
    }

    fn forget_channel(&self, address: &str) {
        self.connections.forget(address);
    }

    /// Forgets `address` as `group`'s coordinator (if it still is the one
    /// remembered).
    pub(crate) fn forget_coordinator(&self, group: &str, address: &str) {
        let mut known = self
            .coordinators
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if known.get(group).is_some_and(|a| a == address) {
            known.remove(group);
        }
    }

    /// Every agent address worth asking: known brokers, then bootstrap.
    pub(crate) fn agents(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .metadata
            .with(|c| c.brokers().values().cloned().collect());
        for b in &self.bootstrap {
            if !out.contains(b) {
                out.push(b.clone());
            }
        }
        out
    }

    /// One call with the request timeout; a timeout drops the channel so
    /// the next call dials afresh.
    pub(crate) async fn call_once<T, F, Fut>(&self, address: &str, send: F) -> Result<T, Status>
    where
        F: FnOnce(GroupClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let client = self
            .client(address)
            .map_err(|reason| Status::unavailable(format!("invalid address: {reason}")))?;
        match tokio::time::timeout(self.request_timeout, send(client)).await {
            Ok(r) => r.map(tonic::Response::into_inner),
            Err(_) => {
                self.forget_channel(address);
                Err(Status::deadline_exceeded(format!(
                    "no answer within {:.1}s",
                    self.request_timeout.as_secs_f64()
                )))
            }
        }
    }

    /// `group`'s coordinator: the one remembered, or asked for once at each
    /// agent in turn until one names it. `Err` carries the last failure.
    pub(crate) async fn coordinator(&self, group: &str) -> Result<String, String> {
        if let Some(a) = self
            .coordinators
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(group)
        {
            return Ok(a.clone());
        }
        let mut last = "no agent address known".to_owned();
        for agent in self.agents() {
            let request = FindCoordinatorRequest {
                group_id: group.to_owned(),
            };
            let answer = self
                .call_once(
                    &agent,
                    |mut c| async move { c.find_coordinator(request).await },
                )
                .await;
            match answer {
                Ok(r) if r.error == ErrorCode::None as i32 => {
                    let address = r.coordinator.map(|c| c.address).unwrap_or_default();
                    if address.is_empty() {
                        last = format!("{agent} named a coordinator without an address");
                        continue;
                    }
                    self.coordinators
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(group.to_owned(), address.clone());
                    return Ok(address);
                }
                Ok(r) => {
                    last = format!(
                        "FindCoordinator at {agent}: {}: {}",
                        error_code_name(r.error),
                        r.error_message
                    );
                    if r.error == ErrorCode::CoordinatorNotAvailable as i32 {
                        // Every agent would say the same: no leader now.
                        break;
                    }
                }
                Err(s) => {
                    last = format!(
                        "FindCoordinator at {agent}: {}: {}",
                        crate::retry::code_name(s.code()),
                        s.message()
                    );
                }
            }
        }
        Err(last)
    }

    /// Calls `group`'s coordinator until it answers with something other
    /// than a coordinator error, or `deadline` passes. `send` builds one
    /// call (it runs once per attempt). Returns the answer and the address
    /// that gave it; the caller interprets the answer's error code.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        rpc: &'static str,
        group: &str,
        deadline: Instant,
        mut send: F,
    ) -> Result<(T, String), GroupError>
    where
        T: GroupAnswer,
        F: FnMut(GroupClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let started = Instant::now();
        let mut backoff = self.retry_backoff;
        let mut last: String;
        loop {
            match self.coordinator(group).await {
                Ok(address) => match self.call_once(&address, &mut send).await {
                    Ok(answer) if rediscover(answer.error()) => {
                        last = format!(
                            "{address}: {}: {}",
                            error_code_name(answer.error()),
                            answer.message()
                        );
                        self.forget_coordinator(group, &address);
                    }
                    Ok(answer) => return Ok((answer, address)),
                    Err(status) if transport_retriable(status.code()) => {
                        last = format!(
                            "{address}: {}: {}",
                            crate::retry::code_name(status.code()),
                            status.message()
                        );
                        self.forget_coordinator(group, &address);
                        // The agent may be gone: learn the brokers anew.
                        let _ = self.metadata.refresh().await;
                    }
                    Err(status) => {
                        return Err(GroupError::Transport {
                            rpc,
                            address,
                            code: status.code(),
                            message: status.message().to_owned(),
                        });
                    }
                },
                Err(e) => last = e,
            }
            let now = Instant::now();
            if now + backoff > deadline {
                return Err(GroupError::CoordinatorUnavailable {
                    rpc,
                    group: group.to_owned(),
                    waited: now - started,
                    last,
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_codes_rediscover() {
        assert!(rediscover(ErrorCode::NotCoordinator as i32));
        assert!(rediscover(ErrorCode::CoordinatorLoadInProgress as i32));
        assert!(rediscover(ErrorCode::CoordinatorNotAvailable as i32));
        assert!(!rediscover(ErrorCode::None as i32));
        assert!(!rediscover(ErrorCode::StaleMemberEpoch as i32));
        assert!(!rediscover(99));
    }
}
