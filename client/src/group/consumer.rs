//! [`GroupConsumer`]: a [`Consumer`] whose partitions a group coordinator
//! assigns, and the background task that heartbeats for it.
//!
//! Owns the two halves of a member and what passes between them. The
//! heartbeat task sends the subscription and owned partitions every
//! heartbeat interval (and at once when woken), applies answers to the
//! shared [`Membership`] and wakes the caller's side when the assignment
//! changed; it never touches partitions. The caller's side
//! ([`GroupConsumer::poll`], [`GroupConsumer::close`]) applies changes in
//! the order the protocol needs: revoked partitions go to
//! [`RebalanceListener::on_revoked`], then their positions are committed
//! (auto-commit), then they leave the consumer and only then are they
//! reported released; new partitions start at their committed offset and
//! leader epoch (or per `auto_offset_reset` when nothing is committed)
//! before [`RebalanceListener::on_assigned`]. A slow caller between polls
//! keeps its session (the task heartbeats), but releases wait for its next
//! poll, as in Kafka; the coordinator fences a member that takes longer
//! than the rebalance timeout.
//!
//! Must never hold the membership lock across an await (every access is a
//! closure through `Inner::with`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ballast_proto::v1::{CommitOffsetsRequest, CommitPartition, ErrorCode, FetchOffsetsRequest};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::membership::{Membership, Outcome, Phase, Plan, to_proto};
use super::rpc::{GroupRpc, MAX_BACKOFF};
use super::{
    CommitEvent, Committed, GroupConfig, GroupError, NoopListener, OffsetCommit, RebalanceEvent,
    RebalanceListener, random_member_id,
};
use crate::accumulator::TopicPartition;
use crate::connection::transport_retriable;
use crate::consumer::{
    ConsumeError, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, StartPosition,
};

/// What the heartbeat task and the caller's side share.
#[derive(Debug)]
struct Inner {
    group_id: String,
    rpc: GroupRpc,
    membership: Mutex<Membership>,
    /// Wakes the heartbeat task for an immediate heartbeat.
    wake: Notify,
    /// Wakes `poll`: the assignment changed, the member was fenced, or a
    /// fatal error is waiting.
    changed: Notify,
    /// A refusal a retry will not cure, for the next `poll`.
    fatal: Mutex<Option<GroupError>>,
}

impl Inner {
    /// Runs `f` on the membership under its lock (never across an await).
    fn with<R>(&self, f: impl FnOnce(&mut Membership) -> R) -> R {
        let mut m = self
            .membership
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut m)
    }

    fn set_fatal(&self, e: GroupError) {
        *self.fatal.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
        self.changed.notify_one();
    }

    fn take_fatal(&self) -> Option<GroupError> {
        self.fatal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// A consumer-group member. Not shared: one task polls it.
///
/// ```no_run
/// # async fn demo() -> Result<(), ballast_client::GroupError> {
/// use std::time::Duration;
/// use ballast_client::{ConsumerConfig, GroupConfig, GroupConsumer};
///
/// let mut consumer = GroupConsumer::connect(
///     vec!["127.0.0.1:9092".into()],
///     ConsumerConfig::default(),
///     GroupConfig::new("billing"),
/// )?;
/// consumer.subscribe(&["orders".to_owned()])?;
/// for _ in 0..100 {
///     for r in consumer.poll(Duration::from_secs(1)).await? {
///         println!("{}-{} @ {}", r.topic, r.partition, r.offset);
///     }
/// }
/// consumer.close().await?;
/// # Ok(())
/// # }
/// ```
pub struct GroupConsumer {
    consumer: Consumer,
    config: GroupConfig,
    inner: Arc<Inner>,
    heartbeat: Option<JoinHandle<()>>,
    listener: Box<dyn RebalanceListener>,
    next_auto_commit: Instant,
    /// The last offset committed per owned partition (auto-commit skips
    /// unchanged ones).
    last_committed: HashMap<TopicPartition, i64>,
    async_commits: JoinSet<Result<CommitEvent, GroupError>>,
    closed: bool,
}

impl fmt::Debug for GroupConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupConsumer")
            .field("group_id", &self.config.group_id)
            .field("inner", &self.inner)
            .field("consumer", &self.consumer)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        // Without close() the coordinator removes the member after its
        // session timeout.
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

impl GroupConsumer {
    /// A member of `group.group_id` that finds the cluster through the
    /// agents at `bootstrap`, with a fresh random member id. Dials nothing
    /// until polled. `consumer.auto_offset_reset` says where a partition
    /// without a committed offset starts.
    pub fn connect(
        bootstrap: Vec<String>,
        consumer: ConsumerConfig,
        group: GroupConfig,
    ) -> Result<GroupConsumer, GroupError> {
        validate(&group)?;
        let member_id = random_member_id()?;
        let rpc_config = (
            consumer.metadata.connect_timeout,
            heartbeat_timeout(&consumer, &group),
            consumer.retry_backoff,
        );
        let consumer = Consumer::connect(bootstrap.clone(), consumer)?;
        let rpc = GroupRpc::new(
            bootstrap,
            consumer.metadata_handle(),
            rpc_config.0,
            rpc_config.1,
            rpc_config.2,
        );
        let membership = Membership::new(
            group.group_id.clone(),
            member_id,
            group.instance_id.clone(),
            group.client_id.clone(),
            group.session_timeout,
            group.rebalance_timeout,
        );
        Ok(GroupConsumer {
            consumer,
            inner: Arc::new(Inner {
                group_id: group.group_id.clone(),
                rpc,
                membership: Mutex::new(membership),
                wake: Notify::new(),
                changed: Notify::new(),
                fatal: Mutex::new(None),
            }),
            next_auto_commit: Instant::now() + group.auto_commit_interval,
            config: group,
            heartbeat: None,
            listener: Box::new(NoopListener),
            last_committed: HashMap::new(),
            async_commits: JoinSet::new(),
            closed: false,
        })
    }

    /// Sets who is told about assignments, revocations, losses and
    /// commits (default: nobody).
    pub fn set_listener(&mut self, listener: Box<dyn RebalanceListener>) {
        self.listener = listener;
    }

    /// Subscribes to `topics` (replacing the previous subscription). The
    /// member joins at the next [`GroupConsumer::poll`]; a change is sent
    /// with the next heartbeat, which is sent at once.
    pub fn subscribe(&mut self, topics: &[String]) -> Result<(), GroupError> {
        self.check_open()?;
        if topics.is_empty() {
            return Err(GroupError::InvalidConfig {
                field: "topics",
                reason: "subscribe to at least one topic".into(),
            });
        }
        if let Some(t) = topics.iter().find(|t| t.trim().is_empty()) {
            return Err(GroupError::InvalidConfig {
                field: "topics",
                reason: format!("{t:?} is not a topic name"),
            });
        }
        if self.inner.with(|m| m.subscribe(topics)) {
            self.inner.wake.notify_one();
        }
        Ok(())
    }

    /// The partitions this member owns now.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.inner.with(|m| m.owned())
    }

    /// This member's id (random, kept across rejoins).
    pub fn member_id(&self) -> String {
        self.inner.with(|m| m.member_id.clone())
    }

    /// The member epoch last received (0 while joining).
    pub fn member_epoch(&self) -> i32 {
        self.inner.with(|m| m.epoch())
    }

    /// The group id.
    pub fn group_id(&self) -> &str {
        &self.config.group_id
    }

    /// The underlying consumer, for positions and high watermarks.
    pub fn consumer(&self) -> &Consumer {
        &self.consumer
    }

    /// Moves an owned partition's position to `offset` (the next record
    /// handed out), with `leader_epoch` the epoch of the record before it
    /// when known; what commits send from then on. Records fetched for the
    /// old position are dropped.
    pub fn seek(
        &mut self,
        partition: &TopicPartition,
        offset: i64,
        leader_epoch: Option<i32>,
    ) -> Result<(), GroupError> {
        if !self.assignment().contains(partition) {
            return Err(GroupError::Consume(ConsumeError::NotAssigned {
                topic: partition.topic.clone(),
                partition: partition.partition,
            }));
        }
        self.consumer
            .assign_at(&partition.topic, partition.partition, offset, leader_epoch);
        Ok(())
    }

    /// Waits up to `timeout` for records of the owned partitions, applying
    /// assignment changes first (see the module documentation), and
    /// auto-commits when due. Returns at most `max_poll_records` records
    /// (empty when none came). Records are handed out only while the
    /// member's session is alive: after a session timeout without an
    /// answered heartbeat the partitions are given up as lost.
    ///
    /// Not cancel-safe during a rebalance: dropping the future while it
    /// revokes may call [`RebalanceListener::on_revoked`] again for the same
    /// partitions on the next call (or in `close`). Poll with a timeout
    /// instead of cancelling it.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, GroupError> {
        self.check_open()?;
        self.start_heartbeat();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.inner.take_fatal() {
                return Err(e);
            }
            self.report_async_commits();
            self.reconcile().await?;
            if self.config.auto_commit && Instant::now() >= self.next_auto_commit {
                self.auto_commit().await;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let mut wake = deadline;
            if self.config.auto_commit {
                wake = wake.min(self.next_auto_commit.max(now + Duration::from_millis(1)));
            }
            if let Some(d) = self.inner.with(|m| m.session_deadline()) {
                wake = wake.min(Instant::from_std(d).max(now + Duration::from_millis(1)));
            }
            let inner = Arc::clone(&self.inner);
            let records = tokio::select! {
                r = self.consumer.poll(wake - now) => r?,
                () = inner.changed.notified() => continue,
            };
            if records.is_empty() {
                continue;
            }
            let now = Instant::now().into_std();
            if matches!(self.inner.with(|m| m.plan(now)), Plan::Lost(_)) {
                // Fenced, or the session ran out, while fetching: these
                // partitions may be someone else's already.
                continue;
            }
            return Ok(records);
        }
    }

    /// Commits the positions of every owned partition (the next offset to
    /// consume, with the leader epoch of the last record handed out) and
    /// waits for the coordinator's acknowledgement.
    pub async fn commit_sync(&mut self) -> Result<CommitEvent, GroupError> {
        self.check_open()?;
        let offsets = self.positions(&self.assignment());
        self.commit(offsets).await
    }

    /// Starts committing the positions of every owned partition and
    /// returns at once; the outcome reaches the listener
    /// ([`RebalanceListener::on_committed`] or
    /// [`RebalanceListener::on_commit_failed`]) from a later `poll` or
    /// `close`.
    pub fn commit_async(&mut self) -> Result<(), GroupError> {
        self.check_open()?;
        let offsets = self.positions(&self.assignment());
        if offsets.is_empty() {
            return Ok(());
        }
        let inner = Arc::clone(&self.inner);
        let deadline = Instant::now() + self.consumer.config().request_timeout;
        self.async_commits
            .spawn(async move { commit_offsets(&inner, offsets, deadline).await });
        Ok(())
    }

    /// Commits these offsets and waits for the acknowledgement. A commit
    /// refused as `STALE_MEMBER_EPOCH` is retried after a heartbeat; one
    /// refused because the member was fenced fails with
    /// [`GroupError::Fenced`].
    pub async fn commit(&mut self, offsets: Vec<OffsetCommit>) -> Result<CommitEvent, GroupError> {
        self.check_open()?;
        let deadline = Instant::now() + self.consumer.config().request_timeout;
        let result = commit_offsets(&self.inner, offsets, deadline).await;
        if let Ok(event) = &result {
            self.committed(event);
        }
        result
    }

    /// Leaves the group: gives up the owned partitions (revoked, and with
    /// auto-commit their positions committed first; lost if the member was
    /// fenced), stops heartbeating and sends the leave heartbeat (epoch -1,
    /// or -2 for a static member, whose partitions the coordinator keeps
    /// for a restart until the session timeout). Returns the commit's error
    /// if it failed; the member leaves anyway. Calling it again does
    /// nothing.
    pub async fn close(&mut self) -> Result<(), GroupError> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        while let Some(joined) = self.async_commits.join_next().await {
            self.report_async(joined);
        }
        let mut result = Ok(());
        let now = Instant::now().into_std();
        let (plan, owned, epoch, member_id) = self
            .inner
            .with(|m| (m.plan(now), m.owned(), m.epoch(), m.member_id.clone()));
        if !owned.is_empty() {
            let event = RebalanceEvent {
                partitions: owned.clone(),
                member_id,
                member_epoch: epoch,
            };
            if matches!(plan, Plan::Lost(_)) {
                self.listener.on_lost(&event);
            } else {
                self.listener.on_revoked(&event);
                if self.config.auto_commit {
                    let offsets = self.uncommitted(&owned);
                    if let Err(e) = self.commit_reporting(offsets).await {
                        result = Err(e);
                    }
                }
            }
            self.consumer.unassign_partitions(&owned);
            self.inner.with(|m| m.released(&owned));
        }
        let leave = self.inner.with(Membership::leave);
        if let Some(h) = self.heartbeat.take() {
            h.abort();
            // Cancelled (or already finished): either way it is stopped.
            let _ = h.await;
        }
        if let Some(request) = leave {
            let deadline = Instant::now() + self.inner.rpc.request_timeout;
            let answer = self
                .inner
                .rpc
                .call("Heartbeat", &self.config.group_id, deadline, |mut c| {
                    let r = request.clone();
                    async move { c.heartbeat(r).await }
                })
                .await;
            match answer {
                Ok((r, _))
                    if matches!(
                        ErrorCode::try_from(r.error),
                        Ok(ErrorCode::None
                            | ErrorCode::UnknownMemberId
                            | ErrorCode::FencedMemberEpoch)
                    ) => {}
                Ok((r, address)) => tracing::warn!(
                    group = %self.config.group_id,
                    coordinator = %address,
                    error = %crate::connection::error_code_name(r.error),
                    message = %r.error_message,
                    "leaving the group was refused; the coordinator removes the member after its session timeout"
                ),
                Err(e) => tracing::warn!(
                    group = %self.config.group_id,
                    error = %e,
                    "could not leave the group; the coordinator removes the member after its session timeout"
                ),
            }
        }
        result
    }

    fn check_open(&self) -> Result<(), GroupError> {
        if self.closed {
            Err(GroupError::Closed)
        } else {
            Ok(())
        }
    }

    fn start_heartbeat(&mut self) {
        if self.heartbeat.is_none() && self.inner.with(|m| m.phase()) != Phase::Idle {
            let inner = Arc::clone(&self.inner);
            self.heartbeat = Some(tokio::spawn(heartbeat_loop(inner)));
        }
    }

    /// Applies what the membership asks for, once.
    async fn reconcile(&mut self) -> Result<(), GroupError> {
        let now = Instant::now().into_std();
        let (plan, member_id) = self.inner.with(|m| (m.plan(now), m.member_id.clone()));
        match plan {
            Plan::Nothing => {}
            Plan::Lost(partitions) => {
                let epoch = self.member_epoch();
                if !partitions.is_empty() {
                    tracing::warn!(
                        group = %self.config.group_id,
                        member_id = %member_id,
                        partitions = partitions.len(),
                        "partitions lost (fenced, or no answered heartbeat for a session timeout); rejoining"
                    );
                    self.listener.on_lost(&RebalanceEvent {
                        partitions: partitions.clone(),
                        member_id,
                        member_epoch: epoch,
                    });
                }
                self.consumer.unassign_partitions(&partitions);
                for tp in &partitions {
                    self.last_committed.remove(tp);
                }
                self.inner.with(Membership::lost_handled);
                self.inner.wake.notify_one();
            }
            Plan::Change {
                revoke,
                assign,
                epoch,
            } => {
                if !revoke.is_empty() {
                    self.listener.on_revoked(&RebalanceEvent {
                        partitions: revoke.clone(),
                        member_id: member_id.clone(),
                        member_epoch: epoch,
                    });
                    if self.config.auto_commit {
                        let offsets = self.uncommitted(&revoke);
                        // A failed commit does not hold the release up:
                        // the coordinator is waiting for it.
                        let _ = self.commit_reporting(offsets).await;
                    }
                    self.consumer.unassign_partitions(&revoke);
                    for tp in &revoke {
                        self.last_committed.remove(tp);
                    }
                    self.inner.with(|m| m.released(&revoke));
                    self.inner.wake.notify_one();
                }
                if !assign.is_empty() {
                    self.take_up(assign, member_id, epoch).await?;
                }
            }
        }
        Ok(())
    }

    /// Starts newly assigned partitions at their committed offsets.
    async fn take_up(
        &mut self,
        assign: Vec<TopicPartition>,
        member_id: String,
        epoch: i32,
    ) -> Result<(), GroupError> {
        let deadline = Instant::now() + self.consumer.config().request_timeout;
        let committed = match fetch_committed(&self.inner, &assign, deadline).await {
            Ok(c) => c,
            Err(e @ (GroupError::CoordinatorUnavailable { .. } | GroupError::Fenced { .. })) => {
                // Tried again at the next pass.
                tracing::warn!(group = %self.config.group_id, error = %e, "cannot fetch committed offsets yet");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let reset = self.consumer.config().auto_offset_reset;
        let mut starts = Vec::with_capacity(assign.len());
        for tp in &assign {
            let start = match (committed.get(tp), reset) {
                (Some(c), _) => Ok(*c),
                (None, OffsetReset::Earliest) => Err(StartPosition::Earliest),
                (None, OffsetReset::Latest) => Err(StartPosition::Latest),
                (None, OffsetReset::Error) => {
                    return Err(GroupError::NoCommittedOffset {
                        group: self.config.group_id.clone(),
                        partition: tp.clone(),
                    });
                }
            };
            starts.push((tp, start));
        }
        for (tp, start) in starts {
            match start {
                Ok(c) => {
                    self.consumer
                        .assign_at(&tp.topic, tp.partition, c.offset, c.leader_epoch);
                    self.last_committed.insert(tp.clone(), c.offset);
                }
                Err(s) => self.consumer.assign(&tp.topic, [(tp.partition, s)]),
            }
        }
        self.inner.with(|m| m.taken(&assign));
        self.listener.on_assigned(&RebalanceEvent {
            partitions: assign,
            member_id,
            member_epoch: epoch,
        });
        // Tell the coordinator soon: it may be waiting to move on.
        self.inner.wake.notify_one();
        Ok(())
    }

    /// The commit of `partitions` at their positions (those with a known
    /// position).
    fn positions(&self, partitions: &[TopicPartition]) -> Vec<OffsetCommit> {
        partitions
            .iter()
            .filter_map(|tp| {
                let offset = self.consumer.position(&tp.topic, tp.partition)?;
                Some(OffsetCommit {
                    partition: tp.clone(),
                    offset,
                    leader_epoch: self.consumer.last_epoch(&tp.topic, tp.partition),
                    metadata: String::new(),
                })
            })
            .collect()
    }

    /// [`Self::positions`] without the partitions whose position is
    /// already committed.
    fn uncommitted(&self, partitions: &[TopicPartition]) -> Vec<OffsetCommit> {
        self.positions(partitions)
            .into_iter()
            .filter(|o| self.last_committed.get(&o.partition) != Some(&o.offset))
            .collect()
    }

    async fn auto_commit(&mut self) {
        self.next_auto_commit = Instant::now() + self.config.auto_commit_interval;
        let offsets = self.uncommitted(&self.assignment());
        let _ = self.commit_reporting(offsets).await;
    }

    /// Commits and tells the listener either way.
    async fn commit_reporting(&mut self, offsets: Vec<OffsetCommit>) -> Result<(), GroupError> {
        if offsets.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + self.consumer.config().request_timeout;
        match commit_offsets(&self.inner, offsets, deadline).await {
            Ok(event) => {
                self.committed(&event);
                Ok(())
            }
            Err(e) => {
                self.listener.on_commit_failed(&e);
                Err(e)
            }
        }
    }

    fn committed(&mut self, event: &CommitEvent) {
        if event.offsets.is_empty() {
            return;
        }
        for (tp, offset) in &event.offsets {
            self.last_committed.insert(tp.clone(), *offset);
        }
        self.listener.on_committed(event);
    }

    fn report_async_commits(&mut self) {
        while let Some(joined) = self.async_commits.try_join_next() {
            self.report_async(joined);
        }
    }

    fn report_async(
        &mut self,
        joined: Result<Result<CommitEvent, GroupError>, tokio::task::JoinError>,
    ) {
        match joined {
            Ok(Ok(event)) => self.committed(&event),
            Ok(Err(e)) => self.listener.on_commit_failed(&e),
            Err(e) => tracing::warn!(error = %e, "an async commit task failed"),
        }
    }
}

/// Checks the settings.
fn validate(group: &GroupConfig) -> Result<(), GroupError> {
    let bad = |field: &'static str, reason: &str| {
        Err(GroupError::InvalidConfig {
            field,
            reason: reason.to_owned(),
        })
    };
    if group.group_id.trim().is_empty() {
        return bad("group_id", "must not be empty");
    }
    if group
        .instance_id
        .as_ref()
        .is_some_and(|i| i.trim().is_empty())
    {
        return bad(
            "instance_id",
            "must not be empty (use None for a dynamic member)",
        );
    }
    let max = Duration::from_millis(u64::from(u32::MAX));
    if group.session_timeout.is_zero() || group.session_timeout > max {
        return bad("session_timeout", "must be between 1 ms and 49 days");
    }
    if group.rebalance_timeout.is_zero() || group.rebalance_timeout > max {
        return bad("rebalance_timeout", "must be between 1 ms and 49 days");
    }
    if group.auto_commit && group.auto_commit_interval.is_zero() {
        return bad("auto_commit_interval", "must be above zero");
    }
    Ok(())
}

/// Limit on one heartbeat (or other group call): the consumer's request
/// timeout, but at most a third of the session so a stuck call leaves time
/// for retries.
fn heartbeat_timeout(consumer: &ConsumerConfig, group: &GroupConfig) -> Duration {
    consumer
        .request_timeout
        .min(group.session_timeout / 3)
        .max(Duration::from_millis(500))
}

/// The heartbeat task: see the module documentation. Ends when the member
/// left.
async fn heartbeat_loop(inner: Arc<Inner>) {
    let mut backoff = inner.rpc.retry_backoff;
    loop {
        let Some(request) = inner.with(|m| m.request()) else {
            if inner.with(|m| m.phase()) == Phase::Left {
                return;
            }
            inner.wake.notified().await;
            continue;
        };
        let sent_epoch = request.member_epoch;
        let sent_at = Instant::now();
        let group = inner.group_id.as_str();
        let mut pause = None;
        match inner.rpc.coordinator(group).await {
            Err(last) => {
                tracing::debug!(group, last = %last, "no coordinator found");
                pause = Some(backoff);
            }
            Ok(address) => {
                let answer = inner
                    .rpc
                    .call_once(&address, |mut c| async move { c.heartbeat(request).await })
                    .await;
                match answer {
                    Err(status) if transport_retriable(status.code()) => {
                        tracing::debug!(group, coordinator = %address, status = %status, "heartbeat failed");
                        inner.rpc.forget_coordinator(group, &address);
                        let _ = inner.rpc.metadata().refresh().await;
                        pause = Some(backoff);
                    }
                    Err(status) => {
                        inner.set_fatal(GroupError::Transport {
                            rpc: "Heartbeat",
                            address,
                            code: status.code(),
                            message: status.message().to_owned(),
                        });
                        pause = Some(MAX_BACKOFF);
                    }
                    Ok(response) => {
                        let outcome = inner
                            .with(|m| m.on_response(&response, sent_at.into_std(), sent_epoch));
                        match outcome {
                            Outcome::Applied { changed } => {
                                if changed {
                                    inner.changed.notify_one();
                                }
                            }
                            Outcome::Rediscover => {
                                tracing::debug!(group, coordinator = %address, error = response.error, "rediscovering the coordinator");
                                inner.rpc.forget_coordinator(group, &address);
                                pause = Some(backoff);
                            }
                            Outcome::Fenced { code } => {
                                tracing::warn!(
                                    group,
                                    error = %crate::connection::error_code_name(code),
                                    "member fenced; its partitions are lost"
                                );
                                inner.changed.notify_one();
                            }
                            Outcome::Fatal { code, message } => {
                                inner.set_fatal(GroupError::Rejected {
                                    rpc: "Heartbeat",
                                    group: group.to_owned(),
                                    code,
                                    message,
                                    address,
                                });
                                pause = Some(MAX_BACKOFF);
                            }
                            Outcome::Ignored => {}
                        }
                    }
                }
            }
        }
        match pause {
            Some(p) => {
                tokio::time::sleep(p).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            None => {
                backoff = inner.rpc.retry_backoff;
                let next = sent_at + inner.with(|m| m.heartbeat_interval());
                tokio::select! {
                    () = tokio::time::sleep_until(next) => {}
                    () = inner.wake.notified() => {}
                }
            }
        }
    }
}

/// Commits `offsets` as the member (its id and current epoch), retrying a
/// stale epoch after a heartbeat until `deadline`.
async fn commit_offsets(
    inner: &Inner,
    offsets: Vec<OffsetCommit>,
    deadline: Instant,
) -> Result<CommitEvent, GroupError> {
    let group = inner.group_id.as_str();
    let mut backoff = inner.rpc.retry_backoff;
    loop {
        let (member_id, epoch, phase) = inner.with(|m| (m.member_id.clone(), m.epoch(), m.phase()));
        if phase == Phase::Fenced {
            return Err(GroupError::Fenced {
                group: group.to_owned(),
                member_id,
                code: ErrorCode::FencedMemberEpoch as i32,
            });
        }
        let request = CommitOffsetsRequest {
            group_id: group.to_owned(),
            member_id: member_id.clone(),
            member_epoch: epoch,
            partitions: commit_partitions(&offsets),
        };
        let (response, address) = inner
            .rpc
            .call("CommitOffsets", group, deadline, |mut c| {
                let r = request.clone();
                async move { c.commit_offsets(r).await }
            })
            .await?;
        match ErrorCode::try_from(response.error) {
            Ok(ErrorCode::None) => {
                check_commit_results(group, &response.results)?;
                return Ok(commit_event(&offsets, member_id, epoch));
            }
            Ok(ErrorCode::StaleMemberEpoch) if Instant::now() + backoff < deadline => {
                // Heartbeat first, then retry with the new epoch.
                inner.wake.notify_one();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Ok(ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId) => {
                if inner.with(|m| {
                    let same = m.epoch() == epoch;
                    if same {
                        m.fence();
                    }
                    same
                }) {
                    inner.changed.notify_one();
                }
                return Err(GroupError::Fenced {
                    group: group.to_owned(),
                    member_id,
                    code: response.error,
                });
            }
            _ => {
                return Err(GroupError::Rejected {
                    rpc: "CommitOffsets",
                    group: group.to_owned(),
                    code: response.error,
                    message: response.error_message,
                    address,
                });
            }
        }
    }
}

/// The request's partitions.
pub(crate) fn commit_partitions(offsets: &[OffsetCommit]) -> Vec<CommitPartition> {
    offsets
        .iter()
        .map(|o| CommitPartition {
            topic: o.partition.topic.clone(),
            partition: o.partition.partition,
            offset: o.offset,
            leader_epoch: o.leader_epoch.unwrap_or(-1),
            metadata: o.metadata.clone(),
        })
        .collect()
}

/// The first per-partition refusal, as an error.
pub(crate) fn check_commit_results(
    group: &str,
    results: &[ballast_proto::v1::CommitPartitionResult],
) -> Result<(), GroupError> {
    match results.iter().find(|r| r.error != ErrorCode::None as i32) {
        Some(r) => Err(GroupError::CommitRejected {
            group: group.to_owned(),
            partition: TopicPartition::new(r.topic.clone(), r.partition),
            code: r.error,
            message: r.error_message.clone(),
        }),
        None => Ok(()),
    }
}

/// The event for an acknowledged commit (sorted).
pub(crate) fn commit_event(offsets: &[OffsetCommit], member_id: String, epoch: i32) -> CommitEvent {
    let mut sorted: Vec<(TopicPartition, i64)> = offsets
        .iter()
        .map(|o| (o.partition.clone(), o.offset))
        .collect();
    sorted.sort();
    CommitEvent {
        offsets: sorted,
        member_id,
        member_epoch: epoch,
    }
}

/// The committed offsets of `partitions` (those with none are absent).
async fn fetch_committed(
    inner: &Inner,
    partitions: &[TopicPartition],
    deadline: Instant,
) -> Result<BTreeMap<TopicPartition, Committed>, GroupError> {
    fetch_offsets(&inner.rpc, &inner.group_id, partitions, deadline).await
}

/// FetchOffsets for `partitions` (empty: all) of `group`; a group the
/// coordinator does not know has nothing committed.
pub(crate) async fn fetch_offsets(
    rpc: &GroupRpc,
    group: &str,
    partitions: &[TopicPartition],
    deadline: Instant,
) -> Result<BTreeMap<TopicPartition, Committed>, GroupError> {
    let request = FetchOffsetsRequest {
        group_id: group.to_owned(),
        partitions: to_proto(partitions),
    };
    let (response, address) = rpc
        .call("FetchOffsets", group, deadline, |mut c| {
            let r = request.clone();
            async move { c.fetch_offsets(r).await }
        })
        .await?;
    match ErrorCode::try_from(response.error) {
        Ok(ErrorCode::None) => Ok(response
            .offsets
            .iter()
            .filter(|o| o.offset >= 0)
            .map(|o| {
                (
                    TopicPartition::new(o.topic.clone(), o.partition),
                    Committed {
                        offset: o.offset,
                        leader_epoch: (o.leader_epoch >= 0).then_some(o.leader_epoch),
                    },
                )
            })
            .collect()),
        Ok(ErrorCode::GroupIdNotFound) => Ok(BTreeMap::new()),
        _ => Err(GroupError::Rejected {
            rpc: "FetchOffsets",
            group: group.to_owned(),
            code: response.error,
            message: response.error_message,
            address,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_proto::v1::CommitPartitionResult;

    #[test]
    fn config_is_checked() {
        let ok = GroupConfig::new("g");
        assert!(validate(&ok).is_ok());
        let err = |c: GroupConfig| validate(&c).err().map(|e| e.to_string());
        assert_eq!(
            err(GroupConfig::new(" ")).as_deref(),
            Some("invalid group config: group_id: must not be empty")
        );
        let mut c = GroupConfig::new("g");
        c.instance_id = Some(String::new());
        assert!(err(c).is_some_and(|e| e.contains("instance_id")));
        let mut c = GroupConfig::new("g");
        c.session_timeout = Duration::ZERO;
        assert!(err(c).is_some_and(|e| e.contains("session_timeout")));
        let mut c = GroupConfig::new("g");
        c.auto_commit_interval = Duration::ZERO;
        assert!(err(c).is_some_and(|e| e.contains("auto_commit_interval")));
        assert!(
            GroupConsumer::connect(vec![], ConsumerConfig::default(), GroupConfig::new("g"))
                .is_err()
        );
    }

    #[test]
    fn commits_carry_epochs_and_report_the_first_refusal() {
        let o = |t: &str, p, offset, epoch| OffsetCommit {
            partition: TopicPartition::new(t, p),
            offset,
            leader_epoch: epoch,
            metadata: String::new(),
        };
        let offsets = [o("b", 0, 7, None), o("a", 1, 3, Some(2))];
        let parts = commit_partitions(&offsets);
        assert_eq!((parts[0].leader_epoch, parts[1].leader_epoch), (-1, 2));
        let e = commit_event(&offsets, "m".into(), 4);
        assert_eq!(
            e.offsets,
            [
                (TopicPartition::new("a", 1), 3),
                (TopicPartition::new("b", 0), 7)
            ]
        );
        let results = [
            CommitPartitionResult {
                topic: "a".into(),
                partition: 1,
                ..CommitPartitionResult::default()
            },
            CommitPartitionResult {
                topic: "b".into(),
                partition: 0,
                error: ErrorCode::InvalidCommitOffset as i32,
                error_message: "negative".into(),
            },
        ];
        let err = check_commit_results("g", &results).unwrap_err().to_string();
        assert_eq!(
            err,
            "commit of b-0 for group \"g\": INVALID_COMMIT_OFFSET: negative"
        );
        assert!(check_commit_results("g", &results[..1]).is_ok());
    }

    #[tokio::test]
    async fn subscribe_and_close_without_a_cluster() {
        let mut c = GroupConsumer::connect(
            vec!["127.0.0.1:1".into()],
            ConsumerConfig::default(),
            GroupConfig::new("g"),
        )
        .unwrap();
        assert!(c.subscribe(&[]).is_err());
        assert!(c.subscribe(&[" ".into()]).is_err());
        c.subscribe(&["t".into()]).unwrap();
        assert_eq!(c.member_id().len(), 22);
        assert_eq!(c.member_epoch(), 0);
        assert!(c.assignment().is_empty());
        // Never joined: nothing to leave, nothing to commit.
        c.close().await.unwrap();
        assert!(matches!(
            c.poll(Duration::ZERO).await,
            Err(GroupError::Closed)
        ));
    }
}
