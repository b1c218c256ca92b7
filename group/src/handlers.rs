//! The group coordinator's request handlers: each reads the [`Shard`] and
//! returns the records to persist plus the response, and changes nothing.
//! The host appends the records to the offsets partition, applies them
//! with [`Shard::apply`], and answers once they are replicated.
//!
//! # Heartbeat (KIP-848)
//! A member joins with epoch 0, stays with the epoch it was last given,
//! and leaves with -1 (or -2: a static member keeping its place until its
//! session times out). Three things bump the group epoch: membership (a
//! join or a removal), a member's subscription, and the partition count of
//! a subscribed topic (seen at any heartbeat). A bump recomputes the
//! target assignment with the range assignor at once; each member then
//! moves towards its target through [`crate::reconcile`] when it
//! heartbeats. A static member joining with an instance id already in the
//! group takes over that member's place, epoch and partitions without a
//! bump (the previous incarnation is gone: it gets UNKNOWN_MEMBER_ID if it
//! is not).
//!
//! # Offsets
//! Commits are fenced by member epoch (see [`crate::state::Member`]); a
//! commit with member id "" and epoch -1 is accepted only while the group
//! has no members (admin resets, simple consumers). Fetches read the
//! applied state; the host must not answer before the records that state
//! came from are replicated.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ballast_assignor::{Subscriber, TopicId, range_assign_ids};
use ballast_proto::v1::{
    CommitOffsetsRequest, CommitOffsetsResponse, CommitPartitionResult,
    CommittedOffset as WireOffset, DescribeGroupResponse, ErrorCode, FetchOffsetsRequest,
    FetchOffsetsResponse, GroupHeartbeatRequest, GroupHeartbeatResponse, GroupListing,
    GroupMemberDescription,
};

use crate::assignment::Assignment;
use crate::error::GroupError;
use crate::reconcile::reconcile;
use crate::record::GroupRecord;
use crate::state::{CommittedOffset, Group, GroupMetadata, Member, MemberState, Shard};

/// Longest group, member, instance or topic id accepted (bytes).
pub const MAX_ID_BYTES: usize = 1024;

/// Limits and defaults of the group coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// Shortest session timeout a member may ask for.
    pub min_session_timeout_ms: u32,
    /// Longest session timeout a member may ask for.
    pub max_session_timeout_ms: u32,
    /// Session timeout when the member asks for none (Kafka's 45 s).
    pub default_session_timeout_ms: u32,
    /// Rebalance timeout when the member asks for none (5 minutes).
    pub default_rebalance_timeout_ms: u32,
    /// How often members heartbeat; at most a third of their session.
    pub heartbeat_interval_ms: u32,
    /// How often a member heartbeats while it waits for partitions other
    /// members still hold (UnreleasedPartitions): they are released within
    /// one interval of the rebalance, and polling faster for them bounds
    /// the second half of a rebalance by this instead of a full interval.
    pub pending_heartbeat_interval_ms: u32,
    /// Most members in one group.
    pub max_group_size: usize,
    /// Longest commit metadata string (bytes).
    pub max_metadata_bytes: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 1_000,
            max_session_timeout_ms: 1_800_000,
            default_session_timeout_ms: 45_000,
            default_rebalance_timeout_ms: 300_000,
            heartbeat_interval_ms: 5_000,
            pending_heartbeat_interval_ms: 50,
            max_group_size: 100_000,
            max_metadata_bytes: 4_096,
        }
    }
}

impl GroupConfig {
    /// The heartbeat interval for a member with this session timeout.
    pub fn heartbeat_interval_for(&self, session_timeout_ms: u32) -> u32 {
        self.heartbeat_interval_ms
            .min(session_timeout_ms / 3)
            .max(1)
    }

    /// The interval told to a member: short while it waits for partitions
    /// others still hold.
    pub fn interval_for(&self, member: &Member) -> u32 {
        let normal = self.heartbeat_interval_for(member.session_timeout_ms);
        if member.state == MemberState::UnreleasedPartitions {
            normal.min(self.pending_heartbeat_interval_ms.max(1))
        } else {
            normal
        }
    }
}

/// Partition counts of the cluster's topics, as the host knows them.
pub trait TopicCounts {
    /// The topic's partition count; `None` when it does not exist.
    fn partitions(&self, topic: &str) -> Option<i32>;
}

impl TopicCounts for HashMap<String, i32> {
    fn partitions(&self, topic: &str) -> Option<i32> {
        self.get(topic).copied()
    }
}

impl TopicCounts for BTreeMap<String, i32> {
    fn partitions(&self, topic: &str) -> Option<i32> {
        self.get(topic).copied()
    }
}

/// Records to persist and the answer to give once they are replicated.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome<R> {
    /// In order; empty when nothing changes.
    pub records: Vec<GroupRecord>,
    /// The answer.
    pub response: R,
}

fn check_id(what: &str, id: &str) -> Result<(), GroupError> {
    if id.len() > MAX_ID_BYTES {
        return Err(GroupError::InvalidRequest(format!(
            "{what} is {} bytes; the limit is {MAX_ID_BYTES}",
            id.len()
        )));
    }
    Ok(())
}

fn check_group_id(group_id: &str) -> Result<(), GroupError> {
    if group_id.is_empty() {
        return Err(GroupError::InvalidGroupId(
            "the group id must not be empty".into(),
        ));
    }
    if group_id.len() > MAX_ID_BYTES {
        return Err(GroupError::InvalidGroupId(format!(
            "{} bytes; the limit is {MAX_ID_BYTES}",
            group_id.len()
        )));
    }
    Ok(())
}

/// A group's membership being changed by one request: the applied group
/// plus an overlay of the members this request changes (copy on write),
/// compared with the applied group at the end to make the records. A
/// heartbeat thus costs what its own member costs; only a rebalance (a new
/// target for everyone) touches every member.
struct Draft<'a> {
    group_id: &'a str,
    shard: &'a Shard,
    old: Option<&'a Group>,
    metadata: GroupMetadata,
    /// Member id -> new value (`None`: removed).
    changed: BTreeMap<String, Option<Member>>,
}

impl<'a> Draft<'a> {
    fn new(group_id: &'a str, shard: &'a Shard) -> Self {
        let old = shard.group(group_id);
        Draft {
            group_id,
            shard,
            old,
            metadata: old.and_then(|g| g.metadata.clone()).unwrap_or_default(),
            changed: BTreeMap::new(),
        }
    }

    fn member(&self, id: &str) -> Option<&Member> {
        match self.changed.get(id) {
            Some(m) => m.as_ref(),
            None => self.old.and_then(|g| g.members.get(id)),
        }
    }

    /// The member, copied into the overlay for changing.
    fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        if !self.changed.contains_key(id) {
            let m = self.old.and_then(|g| g.members.get(id))?.clone();
            self.changed.insert(id.to_owned(), Some(m));
        }
        self.changed.get_mut(id).and_then(Option::as_mut)
    }

    fn insert(&mut self, m: Member) {
        self.changed.insert(m.member_id.clone(), Some(m));
    }

    fn remove(&mut self, id: &str) -> Option<Member> {
        let m = self.member(id).cloned();
        self.changed.insert(id.to_owned(), None);
        m
    }

    /// Every member after this request, ordered by id.
    fn members(&self) -> Vec<&Member> {
        let mut out: Vec<&Member> = self
            .old
            .map(|g| {
                g.members
                    .values()
                    .filter(|m| !self.changed.contains_key(&m.member_id))
                    .collect()
            })
            .unwrap_or_default();
        out.extend(self.changed.values().flatten());
        out.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        out
    }

    fn len(&self) -> usize {
        let old = self.old.map_or(0, |g| g.members.len());
        let added = self
            .changed
            .iter()
            .filter(|(id, m)| m.is_some() && !self.old.is_some_and(|g| g.members.contains_key(*id)))
            .count();
        let removed = self
            .changed
            .iter()
            .filter(|(id, m)| m.is_none() && self.old.is_some_and(|g| g.members.contains_key(*id)))
            .count();
        old + added - removed
    }

    fn find_instance(&self, instance_id: &str) -> Option<String> {
        self.members()
            .into_iter()
            .find(|m| m.instance_id.as_deref() == Some(instance_id))
            .map(|m| m.member_id.clone())
    }

    /// Bumps the group epoch when membership or a subscription changed, or
    /// when the subscribed topics' partition counts differ from the
    /// recorded ones; then recomputes the target assignment if the epoch
    /// moved past it.
    fn rebalance_if_needed(
        &mut self,
        changed: bool,
        topics: &dyn TopicCounts,
    ) -> Result<(), GroupError> {
        // The recorded metadata lists exactly the subscribed topics unless
        // membership or a subscription changed (then it is recomputed).
        let subscription = if changed {
            subscription_metadata(self.members().into_iter(), topics)
        } else {
            self.metadata
                .subscription_metadata
                .keys()
                .map(|t| (t.clone(), topics.partitions(t).unwrap_or(0).max(0)))
                .collect()
        };
        if changed || subscription != self.metadata.subscription_metadata {
            self.metadata.group_epoch += 1;
            self.metadata.subscription_metadata = subscription;
        }
        if self.metadata.group_epoch > self.metadata.assignment_epoch {
            let (ids, targets) = {
                let members = self.members();
                let targets = target_assignment(&self.metadata.subscription_metadata, &members)?;
                let ids: Vec<(String, bool)> = members
                    .iter()
                    .zip(&targets)
                    .map(|(m, t)| (m.member_id.clone(), &m.target != t))
                    .collect();
                (ids, targets)
            };
            for ((id, differs), target) in ids.into_iter().zip(targets) {
                if differs && let Some(m) = self.member_mut(&id) {
                    m.target = target;
                }
            }
            self.metadata.assignment_epoch = self.metadata.group_epoch;
        }
        Ok(())
    }

    /// Whether a member other than `me` holds a partition after this
    /// request: the overlay first, then the shard's holder index.
    fn held_by_other(&self, me: &str, topic: &str, partition: i32) -> bool {
        let in_overlay = self
            .changed
            .iter()
            .any(|(id, m)| id != me && m.as_ref().is_some_and(|m| m.holds(topic, partition)));
        in_overlay
            || self
                .shard
                .holder(self.group_id, topic, partition)
                .is_some_and(|h| h != me && !self.changed.contains_key(h))
    }

    /// Reconciles one member towards its target.
    fn reconcile(&mut self, member_id: &str, owned: Option<&Assignment>) {
        let Some(m) = self.member(member_id) else {
            return;
        };
        let next = reconcile(m, self.metadata.assignment_epoch, owned, |t, p| {
            self.held_by_other(member_id, t, p)
        });
        if Some(&next) != self.member(member_id) {
            self.insert(next);
        }
    }

    /// The records that turn the applied group into this draft.
    fn records(&self) -> Vec<GroupRecord> {
        let mut out = Vec::new();
        let old_meta = self.old.and_then(|g| g.metadata.as_ref());
        if old_meta != Some(&self.metadata) {
            out.push(GroupRecord::Metadata {
                group_id: self.group_id.to_owned(),
                value: Some(self.metadata.clone()),
            });
        }
        for (id, m) in &self.changed {
            let before = self.old.and_then(|g| g.members.get(id));
            if before != m.as_ref() && (before.is_some() || m.is_some()) {
                out.push(GroupRecord::Member {
                    group_id: self.group_id.to_owned(),
                    member_id: id.clone(),
                    value: m.clone(),
                });
            }
        }
        out
    }
}

/// Partition counts of every topic some member subscribes to (0 for a
/// topic that does not exist, so its creation is a change too).
fn subscription_metadata<'m>(
    members: impl Iterator<Item = &'m Member>,
    topics: &dyn TopicCounts,
) -> BTreeMap<String, i32> {
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for m in members {
        names.extend(m.subscribed_topics.iter().map(String::as_str));
    }
    names
        .into_iter()
        .map(|t| (t.to_owned(), topics.partitions(t).unwrap_or(0).max(0)))
        .collect()
}

/// The range assignment of the members (in their map order) over the
/// subscribed topics.
fn target_assignment(
    subscription: &BTreeMap<String, i32>,
    members: &[&Member],
) -> Result<Vec<Assignment>, GroupError> {
    let names: Vec<&str> = subscription.keys().map(String::as_str).collect();
    let counts: Vec<Option<u32>> = subscription
        .values()
        .map(|&n| u32::try_from(n).ok().filter(|&n| n > 0))
        .collect();
    let index: HashMap<&str, TopicId> = names
        .iter()
        .enumerate()
        .map(|(i, &t)| (t, i as TopicId))
        .collect();
    let resolved: Vec<Vec<TopicId>> = members
        .iter()
        .map(|m| {
            m.subscribed_topics
                .iter()
                .filter_map(|t| index.get(t.as_str()).copied())
                .collect()
        })
        .collect();
    let subscribers: Vec<Subscriber<'_>> = members
        .iter()
        .zip(&resolved)
        .map(|(m, topics)| Subscriber {
            member_id: &m.member_id,
            group_instance_id: m.instance_id.as_deref(),
            topics,
        })
        .collect();
    let by_member = range_assign_ids(&counts, &subscribers)
        .map_err(|e| GroupError::InvalidRequest(e.to_string()))?;
    Ok(by_member
        .into_iter()
        .map(|ranges| {
            let mut a = Assignment::new();
            for (t, range) in ranges {
                for p in range {
                    a.insert(names[t as usize], p as i32);
                }
            }
            a
        })
        .collect())
}

fn sorted_topics(topics: &[String]) -> Result<Vec<String>, GroupError> {
    for t in topics {
        if t.is_empty() {
            return Err(GroupError::InvalidRequest(
                "an empty topic name in the subscription".into(),
            ));
        }
        check_id("a subscribed topic", t)?;
    }
    let set: BTreeSet<&String> = topics.iter().collect();
    Ok(set.into_iter().cloned().collect())
}

impl Shard {
    /// A member's heartbeat: join, stay, or leave. See the module docs.
    pub fn heartbeat(
        &self,
        req: &GroupHeartbeatRequest,
        topics: &dyn TopicCounts,
        config: &GroupConfig,
    ) -> Result<Outcome<GroupHeartbeatResponse>, GroupError> {
        check_group_id(&req.group_id)?;
        if req.member_id.is_empty() {
            return Err(GroupError::InvalidRequest(
                "the member id must be set (members choose their own)".into(),
            ));
        }
        check_id("the member id", &req.member_id)?;
        check_id("the instance id", &req.instance_id)?;
        let subscribed = sorted_topics(&req.subscribed_topics)?;
        let owned = Assignment::from_proto(&req.owned);
        let old = self.group(&req.group_id);
        let response = |m: &Member| GroupHeartbeatResponse {
            error: ErrorCode::None as i32,
            error_message: String::new(),
            member_id: m.member_id.clone(),
            member_epoch: m.member_epoch,
            heartbeat_interval_ms: config.interval_for(m),
            assignment: m.assigned.to_proto(),
        };
        let left = |epoch: i32| GroupHeartbeatResponse {
            error: ErrorCode::None as i32,
            error_message: String::new(),
            member_id: req.member_id.clone(),
            member_epoch: epoch,
            heartbeat_interval_ms: 0,
            assignment: Vec::new(),
        };
        let existing = old.and_then(|g| g.members.get(&req.member_id));

        match req.member_epoch {
            -1 | -2 => {
                let Some(_) = existing else {
                    return Ok(Outcome {
                        records: Vec::new(),
                        response: left(req.member_epoch),
                    });
                };
                if req.member_epoch == -2 {
                    if req.instance_id.is_empty() {
                        return Err(GroupError::InvalidRequest(
                            "epoch -2 (static leave) needs an instance id".into(),
                        ));
                    }
                    // Keeps its place until the session timeout.
                    return Ok(Outcome {
                        records: Vec::new(),
                        response: left(-2),
                    });
                }
                let outcome = self.remove_member(&req.group_id, &req.member_id, topics)?;
                return Ok(Outcome {
                    records: outcome.records,
                    response: left(-1),
                });
            }
            0 => {}
            e if e > 0 => {
                let Some(m) = existing else {
                    return Err(GroupError::UnknownMemberId {
                        group_id: req.group_id.clone(),
                        member_id: req.member_id.clone(),
                    });
                };
                let resent = e == m.previous_member_epoch && owned.is_subset(&m.assigned);
                if e != m.member_epoch && !resent {
                    return Err(GroupError::FencedMemberEpoch {
                        member_id: m.member_id.clone(),
                        request: e,
                        current: m.member_epoch,
                    });
                }
                // The common case: nothing to change.
                let g = old.and_then(|g| g.metadata.as_ref());
                let settled = m.state == MemberState::Stable
                    && g.is_some_and(|g| {
                        m.member_epoch == g.assignment_epoch
                            && g.assignment_epoch == g.group_epoch
                            && g.subscription_metadata
                                .iter()
                                .all(|(t, &n)| topics.partitions(t).unwrap_or(0).max(0) == n)
                    })
                    && m.assigned == m.target
                    && m.subscribed_topics == subscribed
                    && clamp_session(req.session_timeout_ms, config) == m.session_timeout_ms
                    && rebalance_timeout(req.rebalance_timeout_ms, config)
                        == m.rebalance_timeout_ms
                    && m.client_id == req.client_id;
                if settled {
                    return Ok(Outcome {
                        records: Vec::new(),
                        response: response(m),
                    });
                }
            }
            e => {
                return Err(GroupError::InvalidRequest(format!(
                    "member epoch {e}: use 0 (join), -1 (leave), -2 (static leave) or the current epoch"
                )));
            }
        }

        let mut draft = Draft::new(&req.group_id, self);
        let mut changed = false;
        if req.member_epoch == 0 {
            if subscribed.is_empty() {
                return Err(GroupError::InvalidRequest(
                    "a joining member must subscribe to at least one topic".into(),
                ));
            }
            let instance = (!req.instance_id.is_empty()).then(|| req.instance_id.clone());
            let previous = instance.as_deref().and_then(|i| draft.find_instance(i));
            match previous {
                // A static member back: takes the old place as it was.
                Some(prev) if prev != req.member_id => {
                    if let Some(mut m) = draft.remove(&prev) {
                        m.member_id = req.member_id.clone();
                        draft.insert(m);
                    }
                }
                _ => match draft.member_mut(&req.member_id) {
                    // A member rejoining after being fenced: it released
                    // everything, so it starts from nothing.
                    Some(m) => {
                        m.assigned = Assignment::new();
                        m.revoking = Assignment::new();
                        m.member_epoch = 0;
                        m.state = MemberState::Stable;
                    }
                    None => {
                        if draft.len() >= config.max_group_size {
                            return Err(GroupError::GroupMaxSizeReached {
                                group_id: req.group_id.clone(),
                                max: config.max_group_size,
                            });
                        }
                        draft.insert(Member {
                            member_id: req.member_id.clone(),
                            instance_id: instance.clone(),
                            ..Member::default()
                        });
                        changed = true;
                    }
                },
            }
        }
        let Some(m) = draft.member_mut(&req.member_id) else {
            return Err(GroupError::UnknownMemberId {
                group_id: req.group_id.clone(),
                member_id: req.member_id.clone(),
            });
        };
        if m.subscribed_topics != subscribed {
            m.subscribed_topics = subscribed;
            changed = true;
        }
        m.client_id = req.client_id.clone();
        m.session_timeout_ms = clamp_session(req.session_timeout_ms, config);
        m.rebalance_timeout_ms = rebalance_timeout(req.rebalance_timeout_ms, config);
        draft.rebalance_if_needed(changed, topics)?;
        let reported = (req.member_epoch > 0).then_some(&owned);
        draft.reconcile(&req.member_id, reported);
        let records = draft.records();
        let Some(m) = draft.member(&req.member_id) else {
            return Err(GroupError::UnknownMemberId {
                group_id: req.group_id.clone(),
                member_id: req.member_id.clone(),
            });
        };
        Ok(Outcome {
            records,
            response: response(m),
        })
    }

    /// Removes a member (left, session expired, or too slow to revoke):
    /// its partitions are free at once, and the group rebalances.
    pub fn remove_member(
        &self,
        group_id: &str,
        member_id: &str,
        topics: &dyn TopicCounts,
    ) -> Result<Outcome<()>, GroupError> {
        let old = self.group(group_id);
        if !old.is_some_and(|g| g.members.contains_key(member_id)) {
            return Ok(Outcome {
                records: Vec::new(),
                response: (),
            });
        }
        let mut draft = Draft::new(group_id, self);
        draft.remove(member_id);
        draft.rebalance_if_needed(true, topics)?;
        Ok(Outcome {
            records: draft.records(),
            response: (),
        })
    }

    /// An offset commit. Group-level refusals are errors; per-partition
    /// ones are in the response.
    pub fn commit_offsets(
        &self,
        req: &CommitOffsetsRequest,
        now_ms: i64,
        config: &GroupConfig,
    ) -> Result<Outcome<CommitOffsetsResponse>, GroupError> {
        check_group_id(&req.group_id)?;
        let group = self.group(&req.group_id);
        let members = group.map_or(0, |g| g.members.len());
        let member = if req.member_epoch == -1 && req.member_id.is_empty() {
            if members > 0 {
                return Err(GroupError::NonEmptyGroup {
                    group_id: req.group_id.clone(),
                    members,
                });
            }
            None
        } else {
            let Some(m) = group.and_then(|g| g.members.get(&req.member_id)) else {
                return Err(GroupError::UnknownMemberId {
                    group_id: req.group_id.clone(),
                    member_id: req.member_id.clone(),
                });
            };
            Some(m)
        };
        if let Some(m) = member {
            let e = req.member_epoch;
            let previous_ok = e == m.previous_member_epoch
                && req
                    .partitions
                    .iter()
                    .all(|p| m.assigned.contains(&p.topic, p.partition));
            if e > m.member_epoch {
                return Err(GroupError::FencedMemberEpoch {
                    member_id: m.member_id.clone(),
                    request: e,
                    current: m.member_epoch,
                });
            }
            if e != m.member_epoch && !previous_ok {
                return Err(GroupError::StaleMemberEpoch {
                    request: e,
                    current: m.member_epoch,
                });
            }
        }
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(req.partitions.len());
        for p in &req.partitions {
            let refuse = if p.topic.is_empty() || p.topic.len() > MAX_ID_BYTES || p.partition < 0 {
                Some((
                    ErrorCode::UnknownTopicOrPartition,
                    format!("{:?}-{} is not a partition", p.topic, p.partition),
                ))
            } else if p.offset < 0 {
                Some((
                    ErrorCode::InvalidCommitOffset,
                    format!("offset {} is negative", p.offset),
                ))
            } else if p.metadata.len() > config.max_metadata_bytes {
                Some((
                    ErrorCode::OffsetMetadataTooLarge,
                    format!(
                        "metadata of {} bytes; the limit is {}",
                        p.metadata.len(),
                        config.max_metadata_bytes
                    ),
                ))
            } else {
                None
            };
            let (code, message) = refuse.unwrap_or((ErrorCode::None, String::new()));
            if code == ErrorCode::None {
                records.push(GroupRecord::Offset {
                    group_id: req.group_id.clone(),
                    topic: p.topic.clone(),
                    partition: p.partition,
                    value: Some(CommittedOffset {
                        offset: p.offset,
                        leader_epoch: p.leader_epoch.max(-1),
                        metadata: p.metadata.clone(),
                        commit_timestamp_ms: now_ms,
                    }),
                });
            }
            results.push(CommitPartitionResult {
                topic: p.topic.clone(),
                partition: p.partition,
                error: code as i32,
                error_message: message,
            });
        }
        Ok(Outcome {
            records,
            response: CommitOffsetsResponse {
                error: ErrorCode::None as i32,
                error_message: String::new(),
                results,
            },
        })
    }

    /// Committed offsets of a group (all of them when none are asked for);
    /// -1 for a partition without one. An unknown group has none.
    pub fn fetch_offsets(&self, req: &FetchOffsetsRequest) -> FetchOffsetsResponse {
        let empty = BTreeMap::new();
        let offsets = self.group(&req.group_id).map_or(&empty, |g| &g.offsets);
        let wire = |t: &str, p: i32, o: Option<&CommittedOffset>| match o {
            Some(o) => WireOffset {
                topic: t.to_owned(),
                partition: p,
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: o.metadata.clone(),
                commit_timestamp_ms: o.commit_timestamp_ms,
            },
            None => WireOffset {
                topic: t.to_owned(),
                partition: p,
                offset: -1,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: -1,
            },
        };
        let list = if req.partitions.is_empty() {
            offsets
                .iter()
                .map(|((t, p), o)| wire(t, *p, Some(o)))
                .collect()
        } else {
            Assignment::from_proto(&req.partitions)
                .iter()
                .map(|(t, p)| wire(t, p, offsets.get(&(t.to_owned(), p))))
                .collect()
        };
        FetchOffsetsResponse {
            error: ErrorCode::None as i32,
            error_message: String::new(),
            offsets: list,
        }
    }

    /// Every group of this shard, for ListGroups.
    pub fn list_groups(&self, coordinator: i32) -> Vec<GroupListing> {
        self.groups()
            .iter()
            .map(|(id, g)| GroupListing {
                group_id: id.clone(),
                state: g.state().name().to_owned(),
                group_epoch: g.group_epoch(),
                members: g.members.len() as i32,
                coordinator,
            })
            .collect()
    }

    /// One group in full.
    pub fn describe_group(
        &self,
        group_id: &str,
        coordinator: i32,
    ) -> Result<DescribeGroupResponse, GroupError> {
        let g = self
            .group(group_id)
            .ok_or_else(|| GroupError::GroupIdNotFound(group_id.to_owned()))?;
        let fetched = self.fetch_offsets(&FetchOffsetsRequest {
            group_id: group_id.to_owned(),
            partitions: Vec::new(),
        });
        Ok(DescribeGroupResponse {
            error: ErrorCode::None as i32,
            error_message: String::new(),
            group_id: group_id.to_owned(),
            state: g.state().name().to_owned(),
            group_epoch: g.group_epoch(),
            assignment_epoch: g.assignment_epoch(),
            members: g
                .members
                .values()
                .map(|m| GroupMemberDescription {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone().unwrap_or_default(),
                    client_id: m.client_id.clone(),
                    member_epoch: m.member_epoch,
                    state: m.state.name().to_owned(),
                    subscribed_topics: m.subscribed_topics.clone(),
                    assignment: m.assigned.to_proto(),
                    target_assignment: m.target.to_proto(),
                    revoking: m.revoking.to_proto(),
                })
                .collect(),
            offsets: fetched.offsets,
            coordinator,
        })
    }

    /// Deletes a group without members: its metadata and every committed
    /// offset.
    pub fn delete_group(&self, group_id: &str) -> Result<Outcome<()>, GroupError> {
        let g = self
            .group(group_id)
            .ok_or_else(|| GroupError::GroupIdNotFound(group_id.to_owned()))?;
        if !g.members.is_empty() {
            return Err(GroupError::NonEmptyGroup {
                group_id: group_id.to_owned(),
                members: g.members.len(),
            });
        }
        let mut records: Vec<GroupRecord> = g
            .offsets
            .keys()
            .map(|(t, p)| GroupRecord::Offset {
                group_id: group_id.to_owned(),
                topic: t.clone(),
                partition: *p,
                value: None,
            })
            .collect();
        if g.metadata.is_some() {
            records.push(GroupRecord::Metadata {
                group_id: group_id.to_owned(),
                value: None,
            });
        }
        Ok(Outcome {
            records,
            response: (),
        })
    }
}

fn clamp_session(requested: u32, config: &GroupConfig) -> u32 {
    let s = if requested == 0 {
        config.default_session_timeout_ms
    } else {
        requested
    };
    s.clamp(config.min_session_timeout_ms, config.max_session_timeout_ms)
}

fn rebalance_timeout(requested: u32, config: &GroupConfig) -> u32 {
    if requested == 0 {
        config.default_rebalance_timeout_ms
    } else {
        requested
    }
}
