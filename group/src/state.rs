//! The groups of one `__consumer_offsets` partition, as the records in that
//! partition define them.
//!
//! [`Shard::apply`] is the only way this state changes: handlers
//! ([`crate::handlers`]) read it and return records; the host writes the
//! records to the offsets partition and applies them, and a new coordinator
//! rebuilds the same state by applying every record of the partition in
//! order. Nothing here knows about time, sessions or I/O.

use std::collections::{BTreeMap, HashMap};

use crate::assignment::Assignment;
use crate::record::GroupRecord;

/// Where a member stands on its way to its target assignment (KIP-848).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemberState {
    /// Owns its target (or all of it that is free) at the assignment epoch.
    #[default]
    Stable,
    /// Must release `revoking` before it moves to the next epoch.
    UnrevokedPartitions,
    /// At the assignment epoch, waiting for partitions other members still
    /// hold.
    UnreleasedPartitions,
}

impl MemberState {
    /// The record encoding.
    pub fn code(self) -> i32 {
        match self {
            MemberState::Stable => 0,
            MemberState::UnrevokedPartitions => 1,
            MemberState::UnreleasedPartitions => 2,
        }
    }

    /// From the record encoding (unknown values read as stable: the member
    /// then reconciles again from its assigned partitions).
    pub fn from_code(code: i32) -> Self {
        match code {
            1 => MemberState::UnrevokedPartitions,
            2 => MemberState::UnreleasedPartitions,
            _ => MemberState::Stable,
        }
    }

    /// The name tools print.
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Stable => "Stable",
            MemberState::UnrevokedPartitions => "UnrevokedPartitions",
            MemberState::UnreleasedPartitions => "UnreleasedPartitions",
        }
    }
}

/// One member of a group.
///
/// Fencing rule: a heartbeat is accepted with `member_epoch`, or with
/// `previous_member_epoch` when the member owns nothing beyond `assigned`
/// (it missed the answer that moved it on); an offset commit with
/// `member_epoch`, or `previous_member_epoch` for partitions still in
/// `assigned`. Anything else is fenced or stale.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Member {
    /// Chosen by the client, kept across its rejoins.
    pub member_id: String,
    /// Static membership.
    pub instance_id: Option<String>,
    /// For tools.
    pub client_id: String,
    /// Sorted, without duplicates.
    pub subscribed_topics: Vec<String>,
    /// How long the member may take to release partitions.
    pub rebalance_timeout_ms: u32,
    /// Removed after this long without a heartbeat.
    pub session_timeout_ms: u32,
    /// The member's epoch.
    pub member_epoch: i32,
    /// The epoch before the last move.
    pub previous_member_epoch: i32,
    /// Reconciliation state.
    pub state: MemberState,
    /// What the member is told to own.
    pub assigned: Assignment,
    /// What it must release before moving on (it still owns these).
    pub revoking: Assignment,
    /// What it will own once reconciled (the target assignment).
    pub target: Assignment,
}

impl Member {
    /// Partitions the member may hold right now: assigned and revoking.
    pub fn holds(&self, topic: &str, partition: i32) -> bool {
        self.assigned.contains(topic, partition) || self.revoking.contains(topic, partition)
    }
}

/// Group-level metadata (one record per group).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupMetadata {
    /// Bumped by every rebalance trigger.
    pub group_epoch: i32,
    /// The epoch of the current target assignment.
    pub assignment_epoch: i32,
    /// Partition counts of the subscribed topics at `group_epoch`.
    pub subscription_metadata: BTreeMap<String, i32>,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset to consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record (-1: unknown), KIP-320.
    pub leader_epoch: i32,
    /// Free text from the client.
    pub metadata: String,
    /// When it was committed (ms since the epoch).
    pub commit_timestamp_ms: i64,
}

/// A group: its membership (`metadata` + `members`) and its offsets. A
/// group with offsets but no metadata record is a "simple" group (offsets
/// committed without membership, e.g. an admin reset).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Group {
    /// Absent until the first member joins (or after a delete).
    pub metadata: Option<GroupMetadata>,
    /// By member id.
    pub members: BTreeMap<String, Member>,
    /// By (topic, partition).
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
}

impl Group {
    /// The group epoch (0 without metadata).
    pub fn group_epoch(&self) -> i32 {
        self.metadata.as_ref().map_or(0, |m| m.group_epoch)
    }

    /// The assignment epoch (0 without metadata).
    pub fn assignment_epoch(&self) -> i32 {
        self.metadata.as_ref().map_or(0, |m| m.assignment_epoch)
    }

    /// KIP-848's group states.
    pub fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else if self.group_epoch() > self.assignment_epoch() {
            GroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.member_epoch != self.assignment_epoch() || m.state != MemberState::Stable)
        {
            GroupState::Reconciling
        } else {
            GroupState::Stable
        }
    }

    /// The member with this static instance id.
    pub fn member_by_instance(&self, instance_id: &str) -> Option<&Member> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance_id))
    }

    fn is_gone(&self) -> bool {
        self.metadata.is_none() && self.members.is_empty() && self.offsets.is_empty()
    }
}

/// KIP-848's group states, for tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members.
    Empty,
    /// The group epoch moved past the target assignment.
    Assigning,
    /// Some member is not yet at the target.
    Reconciling,
    /// Every member owns its target.
    Stable,
}

impl GroupState {
    /// The name tools print.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::Assigning => "Assigning",
            GroupState::Reconciling => "Reconciling",
            GroupState::Stable => "Stable",
        }
    }
}

/// Every group of one offsets partition, plus an index of which member
/// holds which partition (derived, rebuilt by the same [`Shard::apply`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shard {
    groups: BTreeMap<String, Group>,
    /// (group, topic, partition) -> member id holding it (assigned or
    /// revoking). One holder at most: the protocol never gives a partition
    /// to a second member before the first released it.
    holders: HashMap<(String, String, i32), String>,
}

impl Shard {
    /// No groups.
    pub fn new() -> Self {
        Shard::default()
    }

    /// A group.
    pub fn group(&self, group_id: &str) -> Option<&Group> {
        self.groups.get(group_id)
    }

    /// Every group, by id.
    pub fn groups(&self) -> &BTreeMap<String, Group> {
        &self.groups
    }

    /// The member of `group_id` holding a partition, if any.
    pub fn holder(&self, group_id: &str, topic: &str, partition: i32) -> Option<&str> {
        self.holders
            .get(&(group_id.to_owned(), topic.to_owned(), partition))
            .map(String::as_str)
    }

    /// Applies records in order: the only way the state changes.
    pub fn apply(&mut self, records: &[GroupRecord]) {
        for r in records {
            self.apply_one(r);
        }
    }

    fn apply_one(&mut self, record: &GroupRecord) {
        let group_id = record.group_id();
        match record {
            GroupRecord::Metadata { value, .. } => {
                let g = self.groups.entry(group_id.to_owned()).or_default();
                g.metadata = value.clone();
            }
            GroupRecord::Member {
                member_id, value, ..
            } => {
                let g = self.groups.entry(group_id.to_owned()).or_default();
                if let Some(old) = g.members.remove(member_id) {
                    for (t, p) in old.assigned.iter().chain(old.revoking.iter()) {
                        let key = (group_id.to_owned(), t.to_owned(), p);
                        if self.holders.get(&key) == Some(member_id) {
                            self.holders.remove(&key);
                        }
                    }
                }
                if let Some(m) = value {
                    for (t, p) in m.assigned.iter().chain(m.revoking.iter()) {
                        self.holders
                            .insert((group_id.to_owned(), t.to_owned(), p), member_id.clone());
                    }
                    g.members.insert(member_id.clone(), m.clone());
                }
            }
            GroupRecord::Offset {
                topic,
                partition,
                value,
                ..
            } => {
                let g = self.groups.entry(group_id.to_owned()).or_default();
                let key = (topic.clone(), *partition);
                match value {
                    Some(v) => {
                        g.offsets.insert(key, v.clone());
                    }
                    None => {
                        g.offsets.remove(&key);
                    }
                }
            }
        }
        if self.groups.get(group_id).is_some_and(Group::is_gone) {
            self.groups.remove(group_id);
        }
    }
}
