//! Sends a leader's ISR changes to the active coordinator
//! (`BrokerControl.AlterIsr`, Kafka's AlterPartition) and hands the answer
//! back to the partition.
//!
//! One task per change; [`super::isr`] keeps at most one change in flight
//! per partition. The request carries this broker's id and current broker
//! epoch, and the leader and partition epochs the change was planned at
//! (the coordinator refuses stale ones). Answers:
//! * success: the partition adopts the returned ISR and partition epoch;
//! * `FAILED_PRECONDITION` with `ballast-active-coordinator`: a standby;
//!   retried at once at the named address;
//! * `FAILED_PRECONDITION` otherwise, `NOT_FOUND`, `INVALID_ARGUMENT`:
//!   refused (fenced or stale); the partition plans nothing more until the
//!   coordinator's next push (or a retry period) brings its state;
//! * transport errors, `UNAVAILABLE`: retried with capped backoff for as
//!   long as the change is still the one in flight.
//!
//! The coordinator address and the broker epoch come from the control
//! loop (watch channels); this module never registers or heartbeats.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ballast_proto::v1::AlterIsrRequest;
use ballast_proto::v1::broker_control_client::BrokerControlClient;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;
use tracing::{debug, info, warn};

use super::Clock;
use super::isr::{AlterIsrOutcome, IsrChange};
use super::partition::Partition;
use crate::control::{ACTIVE_COORDINATOR_KEY, Backoff, NOT_ACTIVE_MESSAGE};
use crate::state::Registration;

const RPC_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Sends ISR changes; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct AlterIsrClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    me: i32,
    clock: Clock,
    registration: watch::Receiver<Registration>,
    coordinator: watch::Receiver<String>,
    channels: Mutex<HashMap<String, Channel>>,
    tasks: Mutex<JoinSet<()>>,
    cancel: CancellationToken,
}

impl AlterIsrClient {
    pub fn new(
        me: i32,
        clock: Clock,
        registration: watch::Receiver<Registration>,
        coordinator: watch::Receiver<String>,
        cancel: CancellationToken,
    ) -> Self {
        AlterIsrClient {
            inner: Arc::new(Inner {
                me,
                clock,
                registration,
                coordinator,
                channels: Mutex::new(HashMap::new()),
                tasks: Mutex::new(JoinSet::new()),
                cancel,
            }),
        }
    }

    /// Sends each change (normally at most one) for `partition`.
    pub fn dispatch(&self, partition: &Arc<Partition>, changes: Vec<IsrChange>) {
        if changes.is_empty() || self.inner.cancel.is_cancelled() {
            return;
        }
        let mut tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while tasks.try_join_next().is_some() {}
        for change in changes {
            let this = self.clone();
            let p = Arc::clone(partition);
            tasks.spawn(async move { this.run(p, change).await });
        }
    }

    /// Waits for every task after the cancellation token fired.
    pub async fn join(&self) {
        let mut tasks = std::mem::take(
            &mut *self
                .inner
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        while tasks.join_next().await.is_some() {}
    }

    fn client(&self, addr: &str) -> Option<BrokerControlClient<Channel>> {
        let mut channels = self
            .inner
            .channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(ch) = channels.get(addr) {
            return Some(BrokerControlClient::new(ch.clone()));
        }
        let ch = crate::config::coordinator_endpoint(addr)
            .ok()?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect_lazy();
        channels.insert(addr.to_owned(), ch.clone());
        Some(BrokerControlClient::new(ch))
    }

    async fn run(self, partition: Arc<Partition>, change: IsrChange) {
        let key = partition.key().clone();
        let mut backoff = Backoff::new();
        let mut redirect: Option<String> = None;
        loop {
            if partition.pending_change().as_ref() != Some(&change) {
                return; // superseded by a push, or no longer leader
            }
            let addr = redirect
                .take()
                .unwrap_or_else(|| self.inner.coordinator.borrow().clone());
            let client = if addr.is_empty() {
                None
            } else {
                self.client(&addr)
            };
            let Some(mut client) = client else {
                if !self.sleep(backoff.next_delay()).await {
                    return;
                }
                continue;
            };
            let mut request = tonic::Request::new(AlterIsrRequest {
                broker_id: self.inner.me,
                broker_epoch: self.inner.registration.borrow().broker_epoch,
                topic: key.topic.clone(),
                partition: key.partition,
                leader_epoch: change.leader_epoch,
                partition_epoch: change.partition_epoch,
                new_isr: change.new_isr.clone(),
            });
            request.set_timeout(RPC_TIMEOUT);
            info!(
                partition = %key, new_isr = ?change.new_isr, kind = ?change.kind,
                leader_epoch = change.leader_epoch, partition_epoch = change.partition_epoch,
                coordinator = %addr, "asking the coordinator to change the ISR"
            );
            let result = tokio::select! {
                () = self.inner.cancel.cancelled() => return,
                r = client.alter_isr(request) => r,
            };
            let outcome = match result {
                Ok(resp) => match resp.into_inner().state {
                    Some(s) => AlterIsrOutcome::Committed {
                        isr: s.isr,
                        leader_epoch: s.leader_epoch,
                        partition_epoch: s.partition_epoch,
                    },
                    None => AlterIsrOutcome::Refused,
                },
                Err(status) => {
                    let hint = status
                        .metadata()
                        .get(ACTIVE_COORDINATOR_KEY)
                        .and_then(|v| v.to_str().ok())
                        .map(str::trim)
                        .filter(|a| !a.is_empty() && *a != addr)
                        .map(str::to_owned);
                    match status.code() {
                        Code::FailedPrecondition if hint.is_some() => {
                            redirect = hint;
                            continue;
                        }
                        Code::FailedPrecondition
                            if !status.message().contains(NOT_ACTIVE_MESSAGE) =>
                        {
                            warn!(partition = %key, reason = status.message(), "ISR change refused");
                            AlterIsrOutcome::Refused
                        }
                        Code::NotFound | Code::InvalidArgument => {
                            warn!(partition = %key, reason = status.message(), "ISR change refused");
                            AlterIsrOutcome::Refused
                        }
                        _ => {
                            debug!(partition = %key, error = %status, "AlterIsr failed; retrying");
                            if !self.sleep(backoff.next_delay()).await {
                                return;
                            }
                            continue;
                        }
                    }
                }
            };
            let more = partition.on_alter_isr_outcome(&change, outcome, self.inner.clock.now_ms());
            self.dispatch(&partition, more);
            return;
        }
    }

    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            () = self.inner.cancel.cancelled() => false,
            () = tokio::time::sleep(d) => true,
        }
    }
}
