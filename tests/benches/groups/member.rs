//! A simulated consumer-group member: one tokio task speaking the raw
//! Group protocol as a KIP-848 client would. It joins with epoch 0, sends
//! what it owns with every heartbeat, adopts the assignment of each answer
//! (releasing what is no longer listed and taking up what is), heartbeats
//! again at once when it released something, and otherwise waits the
//! interval the coordinator returned. Fenced or unknown: it gives up
//! everything and rejoins. Stopped through its handle: it leaves (epoch
//! -1). It consumes nothing.
//!
//! What each member last saw goes to a shared [`Board`] with the instant it
//! changed, so a scenario can tell when every member reached its expected
//! assignment without asking the coordinator.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ballast_proto::v1::group_client::GroupClient;
use ballast_proto::v1::{self as pb, ErrorCode};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// Session timeout members ask for (the heartbeat interval is at most a
/// third of it).
pub(crate) const SESSION_MS: u32 = 30_000;
/// Rebalance timeout members ask for.
pub(crate) const REBALANCE_MS: u32 = 60_000;

/// What a member last saw.
#[derive(Debug, Clone)]
pub(crate) struct View {
    pub(crate) epoch: i32,
    /// Partitions of the subscribed topic it owns, ascending.
    pub(crate) owned: Vec<i32>,
    /// When `epoch` or `owned` last changed (answer received).
    pub(crate) changed_at: Instant,
    /// The first answer since [`Board::reset_seen`].
    pub(crate) seen_at: Option<Instant>,
}

/// Every member's latest [`View`], by member id.
#[derive(Debug, Default)]
pub(crate) struct Board {
    views: Mutex<HashMap<String, View>>,
}

impl Board {
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<String, View>> {
        self.views.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, member: &str, epoch: i32, owned: &[i32]) {
        let now = Instant::now();
        let mut views = self.lock();
        match views.get_mut(member) {
            Some(v) => {
                if v.epoch != epoch || v.owned != owned {
                    v.epoch = epoch;
                    v.owned = owned.to_vec();
                    v.changed_at = now;
                }
                v.seen_at.get_or_insert(now);
            }
            None => {
                views.insert(
                    member.to_owned(),
                    View {
                        epoch,
                        owned: owned.to_vec(),
                        changed_at: now,
                        seen_at: Some(now),
                    },
                );
            }
        }
    }

    /// Forgets every member's first answer, so that `seen_at` tells who
    /// has been answered since now.
    pub(crate) fn reset_seen(&self) {
        for v in self.lock().values_mut() {
            v.seen_at = None;
        }
    }

    fn remove(&self, member: &str) {
        self.lock().remove(member);
    }
}

/// Counts over all members of a scenario.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Heartbeats answered without error (joins and leaves included).
    pub(crate) ok: AtomicU64,
    /// Answers that told a member to rejoin (fenced or unknown member).
    pub(crate) fenced: AtomicU64,
    /// Other refusals (not coordinator, loading, not available, ...).
    pub(crate) refused: AtomicU64,
    /// RPCs that failed (transport, deadline).
    pub(crate) failed: AtomicU64,
    /// Heartbeats sent at once after releasing partitions.
    pub(crate) immediate: AtomicU64,
}

impl Counters {
    pub(crate) fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// "fenced F, refused R, failed X" for reports.
    pub(crate) fn problems(&self) -> String {
        format!(
            "fenced {}, refused {}, failed {}",
            self.fenced.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed)
        )
    }

    pub(crate) fn problem_count(&self) -> u64 {
        self.fenced.load(Ordering::Relaxed)
            + self.refused.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
    }
}

/// Who a member is.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) group: String,
    pub(crate) member: String,
    pub(crate) topic: String,
}

/// A running member; dropping it aborts the task without leaving.
#[derive(Debug)]
pub(crate) struct MemberHandle {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl MemberHandle {
    /// Asks the member to leave (epoch -1) and waits until it has.
    pub(crate) async fn leave(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    /// Asks the member to leave without waiting.
    pub(crate) fn signal_leave(&self) {
        let _ = self.stop.send(true);
    }
}

impl Drop for MemberHandle {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Shared by every member of a scenario.
#[derive(Debug, Clone)]
pub(crate) struct Env {
    pub(crate) board: Arc<Board>,
    pub(crate) counters: Arc<Counters>,
    /// Bounds the joins in flight (first heartbeats), if set.
    pub(crate) join_permits: Option<Arc<Semaphore>>,
}

/// Starts a member that sends its join after `delay`.
pub(crate) fn spawn(
    client: GroupClient<Channel>,
    spec: Spec,
    delay: Duration,
    env: Env,
) -> MemberHandle {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run(client, spec, delay, env, stopped));
    MemberHandle {
        stop,
        task: Some(task),
    }
}

fn request(spec: &Spec, epoch: i32, owned: &[i32]) -> pb::GroupHeartbeatRequest {
    pb::GroupHeartbeatRequest {
        group_id: spec.group.clone(),
        member_id: spec.member.clone(),
        member_epoch: epoch,
        instance_id: String::new(),
        rebalance_timeout_ms: REBALANCE_MS,
        session_timeout_ms: SESSION_MS,
        subscribed_topics: vec![spec.topic.clone()],
        owned: if owned.is_empty() {
            Vec::new()
        } else {
            vec![pb::TopicPartitions {
                topic: spec.topic.clone(),
                partitions: owned.to_vec(),
            }]
        },
        client_id: "ballast-bench".into(),
    }
}

async fn run(
    mut client: GroupClient<Channel>,
    spec: Spec,
    delay: Duration,
    env: Env,
    mut stopped: watch::Receiver<bool>,
) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        _ = stopped.changed() => return,
    }
    let mut epoch = 0i32;
    let mut owned: Vec<i32> = Vec::new();
    loop {
        let permit = match (&env.join_permits, epoch) {
            (Some(s), 0) => Some(Arc::clone(s).acquire_owned().await),
            _ => None,
        };
        let answer = client.heartbeat(request(&spec, epoch, &owned)).await;
        drop(permit);
        let mut wait = Duration::from_millis(100);
        match answer {
            Ok(r) => {
                let r = r.into_inner();
                match ErrorCode::try_from(r.error) {
                    Ok(ErrorCode::None) => {
                        env.counters.ok.fetch_add(1, Ordering::Relaxed);
                        let assigned: Vec<i32> = r
                            .assignment
                            .iter()
                            .filter(|t| t.topic == spec.topic)
                            .flat_map(|t| t.partitions.iter().copied())
                            .collect();
                        let released = owned.iter().any(|p| !assigned.contains(p));
                        epoch = r.member_epoch;
                        owned = assigned;
                        env.board.update(&spec.member, epoch, &owned);
                        if released {
                            env.counters.immediate.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        wait = Duration::from_millis(u64::from(r.heartbeat_interval_ms.max(1)));
                    }
                    Ok(ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId) => {
                        env.counters.fenced.fetch_add(1, Ordering::Relaxed);
                        epoch = 0;
                        owned.clear();
                        env.board.update(&spec.member, epoch, &owned);
                        wait = Duration::from_millis(10);
                    }
                    _ => {
                        env.counters.refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(_) => {
                env.counters.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => break,
        }
    }
    // Leave: the coordinator frees the partitions at once.
    env.board.remove(&spec.member);
    match client.heartbeat(request(&spec, -1, &owned)).await {
        Ok(r) if r.get_ref().error == ErrorCode::None as i32 => {
            env.counters.ok.fetch_add(1, Ordering::Relaxed);
        }
        Ok(_) => {
            env.counters.refused.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            env.counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
