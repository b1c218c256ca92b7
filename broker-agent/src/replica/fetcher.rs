//! Follower fetchers: one task per leader broker, fetching every partition
//! this agent follows on that broker in one long-poll request
//! (`Data.Fetch` with `replica_id` = this broker).
//!
//! Each round: take the partitions' positions (log end offset, the leader
//! epoch this agent knows, the latest epoch in its log), send one request
//! to the leader's `client` endpoint from the pushed cluster metadata,
//! and hand each partition its answer ([`Partition::apply_fetch_result`]:
//! truncate on divergence, append, move the high watermark, or pause).
//! Transport errors back off (100 ms doubling to 2 s) and retry;
//! per-partition refusals pause that partition only, until the next push
//! or a retry delay (200 ms for an epoch or partition the leader does not
//! know yet, 1 s for NOT_LEADER, FENCED_LEADER_EPOCH and NOT_REPLICA).
//!
//! Replicas under a throttle ([`super::throttle`]) join a round only when
//! their bucket has tokens, ask for at most that many bytes, and are
//! charged for what the answer carried.
//!
//! The task never decides whom to follow: [`super::manager`] starts, feeds
//! (a watch of the partition list) and stops fetchers as pushes change
//! roles.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast_proto::v1::data_client::DataClient;
use ballast_proto::v1::{FetchPartition, FetchRequest};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tracing::debug;

use super::manager::MetadataView;
use super::partition::{FollowerPosition, Partition};
use super::throttle::{ThrottleClass, Throttles};
use crate::control::Backoff;
use crate::state::Registration;

/// How often an idle fetcher looks again at paused partitions.
const IDLE_RECHECK: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a fetcher needs from the agent.
#[derive(Debug, Clone)]
pub(crate) struct FetchContext {
    /// This broker.
    pub me: i32,
    /// The registration, for the current broker epoch.
    pub registration: watch::Receiver<Registration>,
    /// The pushed cluster metadata, for the leader's address.
    pub metadata: Arc<MetadataView>,
    /// Long poll of each request.
    pub max_wait: Duration,
    /// Bytes per request.
    pub max_bytes: u32,
    /// Bytes per partition.
    pub partition_max_bytes: u32,
    /// Largest answer decoded.
    pub max_message_bytes: usize,
    /// Follower throttles (reassignment, catch-up).
    pub throttles: Arc<Throttles>,
}

/// Runs the fetch loop for `leader` until cancelled.
pub(crate) async fn run(
    ctx: FetchContext,
    leader: i32,
    mut partitions: watch::Receiver<Vec<Arc<Partition>>>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new();
    let mut client: Option<(String, DataClient<Channel>)> = None;
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let list = partitions.borrow_and_update().clone();
        let now = Instant::now();
        // Throttled replicas join a round only with an allowance, and ask
        // for no more than it.
        let mut throttled_wait = IDLE_RECHECK;
        let work: Vec<Work> = list
            .iter()
            .filter_map(|p| {
                let pos = p.follower_position(leader, now)?;
                let class = p.throttle_class(ctx.me);
                let max_bytes = match class.map(|c| ctx.throttles.allowance(c, now)) {
                    None | Some(Ok(None)) => ctx.partition_max_bytes,
                    Some(Ok(Some(n))) => n.min(ctx.partition_max_bytes),
                    Some(Err(wait)) => {
                        throttled_wait = throttled_wait.min(wait);
                        return None;
                    }
                };
                Some(Work {
                    partition: Arc::clone(p),
                    pos,
                    class,
                    max_bytes,
                })
            })
            .collect();
        if work.is_empty() {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = partitions.changed() => {}
                () = tokio::time::sleep(throttled_wait) => {}
            }
            continue;
        }
        let Some(addr) = ctx.metadata.client_address(leader) else {
            debug!(leader, "no address known for the leader yet");
            if !sleep(&cancel, backoff.next_delay()).await {
                return;
            }
            continue;
        };
        let c = match &client {
            Some((a, c)) if *a == addr => c.clone(),
            _ => match ballast_net::endpoint(&addr) {
                Ok(ep) => {
                    let c = DataClient::new(ep.connect_timeout(CONNECT_TIMEOUT).connect_lazy())
                        .max_decoding_message_size(ctx.max_message_bytes)
                        .max_encoding_message_size(ctx.max_message_bytes);
                    client = Some((addr.clone(), c.clone()));
                    c
                }
                Err(e) => {
                    debug!(leader, address = %addr, error = %e, "bad leader address");
                    if !sleep(&cancel, backoff.next_delay()).await {
                        return;
                    }
                    continue;
                }
            },
        };
        let request = FetchRequest {
            replica_id: ctx.me,
            broker_epoch: ctx.registration.borrow().broker_epoch,
            max_wait_ms: u32::try_from(ctx.max_wait.as_millis()).unwrap_or(u32::MAX),
            min_bytes: 1,
            max_bytes: ctx.max_bytes,
            partitions: work
                .iter()
                .map(|w| FetchPartition {
                    topic: w.partition.key().topic.clone(),
                    partition: w.partition.key().partition,
                    fetch_offset: w.pos.fetch_offset,
                    current_leader_epoch: w.pos.leader_epoch,
                    last_fetched_epoch: w.pos.last_fetched_epoch,
                    partition_max_bytes: w.max_bytes,
                })
                .collect(),
        };
        let mut request = tonic::Request::new(request);
        request.set_timeout(ctx.max_wait + Duration::from_secs(10));
        let mut c = c;
        let response = tokio::select! {
            () = cancel.cancelled() => return,
            r = c.fetch(request) => r,
        };
        let response = match response {
            Ok(r) => r.into_inner(),
            Err(status) => {
                debug!(leader, address = %addr, error = %status, "follower fetch failed");
                if status.code() != tonic::Code::DeadlineExceeded {
                    client = None;
                }
                if !sleep(&cancel, backoff.next_delay()).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        let throttles = Arc::clone(&ctx.throttles);
        let applied = tokio::task::spawn_blocking(move || {
            let now = Instant::now();
            for result in response.results {
                let Some(w) = work.iter().find(|w| {
                    w.partition.key().topic == result.topic
                        && w.partition.key().partition == result.partition
                }) else {
                    continue;
                };
                if let Some(class) = w.class {
                    throttles.charge(class, result.records.len() as u64, now);
                }
                w.partition.apply_fetch_result(leader, w.pos, &result);
            }
        })
        .await;
        if let Err(e) = applied {
            debug!(leader, error = %e, "applying a fetch answer failed");
        }
    }
}

/// One partition of a fetch round.
struct Work {
    partition: Arc<Partition>,
    pos: FollowerPosition,
    class: Option<ThrottleClass>,
    max_bytes: u32,
}

async fn sleep(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}
