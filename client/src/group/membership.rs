//! The member state machine of the heartbeat protocol, pure: no I/O, no
//! clock (times are passed in), no locks.
//!
//! Owns the member id and epoch, the subscription, the partitions the
//! caller owns (reported with every heartbeat), the last assignment the
//! coordinator sent, and the phase. It builds heartbeat requests, applies
//! answers ([`Membership::on_response`]) and tells the caller's side what
//! to do ([`Membership::plan`]): give partitions up as lost, revoke some,
//! take up others. The caller does the I/O and reports back with
//! [`Membership::released`], [`Membership::taken`] and
//! [`Membership::lost_handled`].
//!
//! Fencing rules (the coordinator's, restated for the member):
//! * join with epoch 0, then always send the epoch last received;
//! * `FENCED_MEMBER_EPOCH` / `UNKNOWN_MEMBER_ID`: every owned partition is
//!   lost; nothing is sent until the caller has given them up, then the
//!   member rejoins with epoch 0 under the same member id;
//! * no answered heartbeat for a session timeout (counted from when the
//!   last answered one was SENT, so never later than the coordinator's own
//!   timer): the member treats its partitions as lost too, because the
//!   coordinator may already have handed them on;
//! * a partition is owned from when the caller took it up until the caller
//!   released it; only the caller's side changes `owned`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use ballast_proto::v1::{
    ErrorCode, GroupHeartbeatRequest, GroupHeartbeatResponse, TopicPartitions,
};

use crate::accumulator::TopicPartition;

/// Used when an answer names no heartbeat interval.
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);

/// Where the member is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not subscribed: nothing to send.
    Idle,
    /// Heartbeating (epoch 0 to join, else the epoch last received).
    Active,
    /// Fenced or forgotten: waits for the caller to give its partitions up.
    Fenced,
    /// Left (or leaving): nothing more is sent.
    Left,
}

/// What one heartbeat answer means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Applied; `changed` when the assignment differs from the last one.
    Applied { changed: bool },
    /// The agent is not (or not yet) the coordinator, or none is: find it
    /// again after a backoff.
    Rediscover,
    /// The member lost its partitions and must rejoin.
    Fenced { code: i32 },
    /// A refusal a retry will not cure.
    Fatal { code: i32, message: String },
    /// The member is not heartbeating any more (left, or fenced while the
    /// request was in flight): the answer is dropped.
    Ignored,
}

/// What the caller's side must do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Nothing.
    Nothing,
    /// Give every owned partition up without committing, then
    /// [`Membership::lost_handled`].
    Lost(Vec<TopicPartition>),
    /// Release `revoke`, then take up `assign` (each may be empty).
    Change {
        revoke: Vec<TopicPartition>,
        assign: Vec<TopicPartition>,
        epoch: i32,
    },
}

/// The member state; see the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct Membership {
    pub(crate) group_id: String,
    pub(crate) member_id: String,
    instance_id: Option<String>,
    client_id: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    epoch: i32,
    phase: Phase,
    subscription: Vec<String>,
    owned: BTreeSet<TopicPartition>,
    /// The last assignment received since (re)joining.
    assignment: Option<BTreeSet<TopicPartition>>,
    heartbeat_interval: Duration,
    /// When the last heartbeat answered without error was sent.
    last_answered_send: Option<Instant>,
}

impl Membership {
    pub(crate) fn new(
        group_id: String,
        member_id: String,
        instance_id: Option<String>,
        client_id: String,
        session_timeout: Duration,
        rebalance_timeout: Duration,
    ) -> Membership {
        Membership {
            group_id,
            member_id,
            instance_id,
            client_id,
            session_timeout,
            rebalance_timeout,
            epoch: 0,
            phase: Phase::Idle,
            subscription: Vec::new(),
            owned: BTreeSet::new(),
            assignment: None,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            last_answered_send: None,
        }
    }

    pub(crate) fn epoch(&self) -> i32 {
        self.epoch
    }

    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    pub(crate) fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
    }

    pub(crate) fn owned(&self) -> Vec<TopicPartition> {
        self.owned.iter().cloned().collect()
    }

    /// Sets the subscription (sorted, without repeats). True when it
    /// changed. A first subscription starts heartbeating.
    pub(crate) fn subscribe(&mut self, topics: &[String]) -> bool {
        let mut topics = topics.to_vec();
        topics.sort();
        topics.dedup();
        let changed = topics != self.subscription;
        self.subscription = topics;
        if self.phase == Phase::Idle && !self.subscription.is_empty() {
            self.phase = Phase::Active;
        }
        changed
    }

    /// The next heartbeat, when one is due in this phase.
    pub(crate) fn request(&self) -> Option<GroupHeartbeatRequest> {
        (self.phase == Phase::Active).then(|| self.heartbeat(self.epoch))
    }

    fn heartbeat(&self, epoch: i32) -> GroupHeartbeatRequest {
        GroupHeartbeatRequest {
            group_id: self.group_id.clone(),
            member_id: self.member_id.clone(),
            member_epoch: epoch,
            instance_id: self.instance_id.clone().unwrap_or_default(),
            rebalance_timeout_ms: millis(self.rebalance_timeout),
            session_timeout_ms: millis(self.session_timeout),
            subscribed_topics: self.subscription.clone(),
            owned: to_proto(&self.owned),
            client_id: self.client_id.clone(),
        }
    }

    /// Stops heartbeating and returns the leave request (epoch -1, or -2
    /// for a static member), or `None` when the member never joined or is
    /// already out.
    pub(crate) fn leave(&mut self) -> Option<GroupHeartbeatRequest> {
        let joined = self.phase == Phase::Active && self.epoch > 0;
        self.phase = Phase::Left;
        let epoch = if self.instance_id.is_some() { -2 } else { -1 };
        joined.then(|| self.heartbeat(epoch))
    }

    /// Applies the answer to a heartbeat sent at `sent_at` with epoch
    /// `sent_epoch`.
    pub(crate) fn on_response(
        &mut self,
        response: &GroupHeartbeatResponse,
        sent_at: Instant,
        sent_epoch: i32,
    ) -> Outcome {
        if self.phase != Phase::Active || sent_epoch != self.epoch {
            // Left, fenced, or rejoined while the request was in flight.
            return Outcome::Ignored;
        }
        match ErrorCode::try_from(response.error) {
            Ok(ErrorCode::None) => {
                if response.member_epoch <= 0 {
                    return Outcome::Fatal {
                        code: ErrorCode::InvalidRequest as i32,
                        message: format!(
                            "the coordinator answered with member epoch {}",
                            response.member_epoch
                        ),
                    };
                }
                self.epoch = response.member_epoch;
                self.heartbeat_interval = match response.heartbeat_interval_ms {
                    0 => DEFAULT_HEARTBEAT_INTERVAL,
                    ms => Duration::from_millis(u64::from(ms)),
                };
                self.last_answered_send = Some(sent_at);
                let assignment = from_proto(&response.assignment);
                let changed = self.assignment.as_ref() != Some(&assignment);
                self.assignment = Some(assignment);
                Outcome::Applied { changed }
            }
            Ok(
                ErrorCode::NotCoordinator
                | ErrorCode::CoordinatorLoadInProgress
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::RequestTimedOut,
            ) => Outcome::Rediscover,
            Ok(ErrorCode::FencedMemberEpoch | ErrorCode::UnknownMemberId) => {
                self.phase = Phase::Fenced;
                self.assignment = None;
                Outcome::Fenced {
                    code: response.error,
                }
            }
            Ok(_) | Err(_) => Outcome::Fatal {
                code: response.error,
                message: response.error_message.clone(),
            },
        }
    }

    /// Marks the member fenced (e.g. a commit was refused as
    /// `FENCED_MEMBER_EPOCH`).
    pub(crate) fn fence(&mut self) {
        if self.phase == Phase::Active {
            self.phase = Phase::Fenced;
            self.assignment = None;
        }
    }

    /// When the owned partitions count as lost for want of an answered
    /// heartbeat; `None` when nothing is owned.
    pub(crate) fn session_deadline(&self) -> Option<Instant> {
        if self.owned.is_empty() || self.phase != Phase::Active {
            return None;
        }
        self.last_answered_send.map(|t| t + self.session_timeout)
    }

    /// What the caller's side must do at `now`.
    pub(crate) fn plan(&self, now: Instant) -> Plan {
        match self.phase {
            Phase::Fenced => return Plan::Lost(self.owned()),
            Phase::Idle | Phase::Left => return Plan::Nothing,
            Phase::Active => {}
        }
        if self.session_deadline().is_some_and(|d| d <= now) {
            return Plan::Lost(self.owned());
        }
        let Some(target) = &self.assignment else {
            return Plan::Nothing;
        };
        let revoke: Vec<TopicPartition> = self.owned.difference(target).cloned().collect();
        let assign: Vec<TopicPartition> = target.difference(&self.owned).cloned().collect();
        if revoke.is_empty() && assign.is_empty() {
            Plan::Nothing
        } else {
            Plan::Change {
                revoke,
                assign,
                epoch: self.epoch,
            }
        }
    }

    /// The caller released these partitions (after committing them).
    pub(crate) fn released(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.owned.remove(tp);
        }
    }

    /// The caller took these partitions up.
    pub(crate) fn taken(&mut self, partitions: &[TopicPartition]) {
        self.owned.extend(partitions.iter().cloned());
    }

    /// The caller gave every partition up as lost: rejoin with epoch 0
    /// under the same member id.
    pub(crate) fn lost_handled(&mut self) {
        self.owned.clear();
        self.assignment = None;
        self.epoch = 0;
        self.last_answered_send = None;
        if matches!(self.phase, Phase::Active | Phase::Fenced) {
            self.phase = if self.subscription.is_empty() {
                Phase::Idle
            } else {
                Phase::Active
            };
        }
    }
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Partitions grouped by topic, ascending, as the protocol sends them.
pub(crate) fn to_proto<'a>(
    partitions: impl IntoIterator<Item = &'a TopicPartition>,
) -> Vec<TopicPartitions> {
    let mut out: Vec<TopicPartitions> = Vec::new();
    let mut sorted: Vec<&TopicPartition> = partitions.into_iter().collect();
    sorted.sort();
    sorted.dedup();
    for tp in sorted {
        match out.last_mut() {
            Some(last) if last.topic == tp.topic => last.partitions.push(tp.partition),
            _ => out.push(TopicPartitions {
                topic: tp.topic.clone(),
                partitions: vec![tp.partition],
            }),
        }
    }
    out
}

/// The partitions of an answer; entries with an empty topic or a negative
/// partition are dropped.
pub(crate) fn from_proto(groups: &[TopicPartitions]) -> BTreeSet<TopicPartition> {
    groups
        .iter()
        .filter(|g| !g.topic.is_empty())
        .flat_map(|g| {
            g.partitions
                .iter()
                .filter(|p| **p >= 0)
                .map(|p| TopicPartition::new(g.topic.clone(), *p))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(instance: Option<&str>) -> Membership {
        Membership::new(
            "g".into(),
            "m1".into(),
            instance.map(str::to_owned),
            "c".into(),
            Duration::from_secs(45),
            Duration::from_secs(300),
        )
    }

    fn tp(t: &str, p: i32) -> TopicPartition {
        TopicPartition::new(t, p)
    }

    fn ok(epoch: i32, assignment: &[(&str, i32)]) -> GroupHeartbeatResponse {
        let tps: Vec<TopicPartition> = assignment.iter().map(|(t, p)| tp(t, *p)).collect();
        GroupHeartbeatResponse {
            member_id: "m1".into(),
            member_epoch: epoch,
            heartbeat_interval_ms: 500,
            assignment: to_proto(&tps),
            ..GroupHeartbeatResponse::default()
        }
    }

    fn err(code: ErrorCode) -> GroupHeartbeatResponse {
        GroupHeartbeatResponse {
            error: code as i32,
            ..GroupHeartbeatResponse::default()
        }
    }

    #[test]
    fn joins_after_subscribing_and_sends_the_last_epoch_and_owned() {
        let t0 = Instant::now();
        let mut m = member(None);
        assert_eq!(m.request(), None, "nothing before a subscription");
        assert!(m.subscribe(&["b".into(), "a".into(), "a".into()]));
        assert!(!m.subscribe(&["a".into(), "b".into()]));
        let r = m.request().unwrap();
        assert_eq!((r.member_epoch, r.member_id.as_str()), (0, "m1"));
        assert_eq!(r.subscribed_topics, ["a", "b"]);
        assert_eq!(
            (r.session_timeout_ms, r.rebalance_timeout_ms),
            (45_000, 300_000)
        );

        let out = m.on_response(&ok(3, &[("a", 1), ("a", 0), ("b", 2)]), t0, 0);
        assert_eq!(out, Outcome::Applied { changed: true });
        assert_eq!(m.heartbeat_interval(), Duration::from_millis(500));
        assert_eq!(
            m.plan(t0),
            Plan::Change {
                revoke: vec![],
                assign: vec![tp("a", 0), tp("a", 1), tp("b", 2)],
                epoch: 3
            }
        );
        m.taken(&[tp("a", 0), tp("a", 1), tp("b", 2)]);
        assert_eq!(m.plan(t0), Plan::Nothing);
        let r = m.request().unwrap();
        assert_eq!(r.member_epoch, 3);
        assert_eq!(
            r.owned,
            [
                TopicPartitions {
                    topic: "a".into(),
                    partitions: vec![0, 1]
                },
                TopicPartitions {
                    topic: "b".into(),
                    partitions: vec![2]
                }
            ]
        );
        assert_eq!(
            m.on_response(&ok(3, &[("a", 0), ("a", 1), ("b", 2)]), t0, 3),
            Outcome::Applied { changed: false }
        );
    }

    #[test]
    fn revokes_what_the_assignment_drops_and_reports_it_only_once_released() {
        let t0 = Instant::now();
        let mut m = member(None);
        m.subscribe(&["a".into()]);
        m.on_response(&ok(1, &[("a", 0), ("a", 1)]), t0, 0);
        m.taken(&[tp("a", 0), tp("a", 1)]);
        m.on_response(&ok(1, &[("a", 0)]), t0, 1);
        assert_eq!(
            m.plan(t0),
            Plan::Change {
                revoke: vec![tp("a", 1)],
                assign: vec![],
                epoch: 1
            }
        );
        // Until released, a heartbeat still reports it owned.
        assert_eq!(m.request().unwrap().owned[0].partitions, [0, 1]);
        m.released(&[tp("a", 1)]);
        assert_eq!(m.request().unwrap().owned[0].partitions, [0]);
        assert_eq!(m.plan(t0), Plan::Nothing);
    }

    #[test]
    fn fencing_loses_everything_then_rejoins_with_epoch_zero() {
        let t0 = Instant::now();
        let mut m = member(None);
        m.subscribe(&["a".into()]);
        m.on_response(&ok(4, &[("a", 0)]), t0, 0);
        m.taken(&[tp("a", 0)]);
        let out = m.on_response(&err(ErrorCode::FencedMemberEpoch), t0, 4);
        assert!(matches!(out, Outcome::Fenced { .. }));
        assert_eq!(
            m.request(),
            None,
            "nothing is sent until the loss is handled"
        );
        assert_eq!(m.plan(t0), Plan::Lost(vec![tp("a", 0)]));
        // A late answer to an earlier request is dropped.
        assert_eq!(m.on_response(&ok(5, &[]), t0, 4), Outcome::Ignored);
        m.lost_handled();
        let r = m.request().unwrap();
        assert_eq!((r.member_epoch, r.member_id.as_str()), (0, "m1"));
        assert!(r.owned.is_empty());
        assert_eq!(m.plan(t0), Plan::Nothing);
        // UNKNOWN_MEMBER_ID too.
        m.on_response(&ok(6, &[]), t0, 0);
        assert!(matches!(
            m.on_response(&err(ErrorCode::UnknownMemberId), t0, 6),
            Outcome::Fenced { .. }
        ));
    }

    #[test]
    fn coordinator_errors_rediscover_and_others_are_fatal() {
        let t0 = Instant::now();
        let mut m = member(None);
        m.subscribe(&["a".into()]);
        for code in [
            ErrorCode::NotCoordinator,
            ErrorCode::CoordinatorLoadInProgress,
            ErrorCode::CoordinatorNotAvailable,
        ] {
            assert_eq!(m.on_response(&err(code), t0, 0), Outcome::Rediscover);
        }
        assert!(matches!(
            m.on_response(&err(ErrorCode::GroupMaxSizeReached), t0, 0),
            Outcome::Fatal { .. }
        ));
        assert!(matches!(
            m.on_response(&ok(0, &[]), t0, 0),
            Outcome::Fatal { .. }
        ));
        assert_eq!(m.phase(), Phase::Active);
    }

    #[test]
    fn no_answered_heartbeat_for_a_session_means_lost() {
        let t0 = Instant::now();
        let mut m = member(None);
        m.subscribe(&["a".into()]);
        m.on_response(&ok(2, &[("a", 0)]), t0, 0);
        assert_eq!(m.session_deadline(), None, "nothing owned yet");
        m.taken(&[tp("a", 0)]);
        let deadline = t0 + Duration::from_secs(45);
        assert_eq!(m.session_deadline(), Some(deadline));
        assert_eq!(m.plan(deadline - Duration::from_millis(1)), Plan::Nothing);
        assert_eq!(m.plan(deadline), Plan::Lost(vec![tp("a", 0)]));
        m.lost_handled();
        assert_eq!(m.request().unwrap().member_epoch, 0);
    }

    #[test]
    fn leaving() {
        let t0 = Instant::now();
        let mut m = member(None);
        assert_eq!(m.leave(), None, "never joined");
        let mut m = member(None);
        m.subscribe(&["a".into()]);
        m.on_response(&ok(2, &[]), t0, 0);
        assert_eq!(m.leave().unwrap().member_epoch, -1);
        assert_eq!(m.request(), None);
        assert_eq!(m.on_response(&ok(3, &[]), t0, 2), Outcome::Ignored);
        let mut s = member(Some("i-1"));
        s.subscribe(&["a".into()]);
        s.on_response(&ok(2, &[]), t0, 0);
        let r = s.leave().unwrap();
        assert_eq!((r.member_epoch, r.instance_id.as_str()), (-2, "i-1"));
    }

    #[test]
    fn malformed_assignments_are_filtered() {
        let got = from_proto(&[
            TopicPartitions {
                topic: String::new(),
                partitions: vec![1],
            },
            TopicPartitions {
                topic: "a".into(),
                partitions: vec![-1, 2, 2],
            },
        ]);
        assert_eq!(got.into_iter().collect::<Vec<_>>(), [tp("a", 2)]);
    }
}
