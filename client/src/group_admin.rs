//! Consumer-group administration: list (cluster-wide), describe with lag,
//! delete, and offset resets planned before they are applied.
//!
//! Owns the fan-out of `ListGroups` to every broker in metadata (each agent
//! lists only the groups it coordinates; the answers are merged), the lag
//! computation (the partition's high watermark from `ListOffsets` minus the
//! committed offset), and reset planning: [`plan_offset`] (pure) turns a
//! [`ResetSpec`] and a partition's log bounds into the new offset, always
//! clamped to `[log start, high watermark]`. Executing a plan commits it
//! as an admin (member id `""`, member epoch -1), which the coordinator
//! accepts only for a group without members; otherwise
//! [`GroupError::GroupNotEmpty`].
//!
//! Guarantees: every call returns within about [`GroupAdminOptions::deadline`]
//! (per step: describe, offsets lookups and the commit each get one);
//! coordinator-routed calls find the coordinator again after the retriable
//! answers. A plan is a snapshot: offsets may move between planning and
//! executing; execute it soon or plan again. Must never unwrap network
//! input or hold a lock across an await.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ballast_proto::v1::{
    CommitOffsetsRequest, DeleteGroupRequest, DescribeGroupRequest, ErrorCode, ListGroupsRequest,
    ListOffsetsPartition, ListOffsetsRequest,
};
pub use ballast_proto::v1::{
    CommittedOffset, DescribeGroupResponse, GroupListing, GroupMemberDescription, TopicPartitions,
};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::accumulator::TopicPartition;
use crate::connection::{Connections, DEFAULT_MAX_DECODE, error_code_name};
use crate::group::rpc::GroupRpc;
use crate::group::{CommitEvent, GroupError, OffsetCommit};
use crate::metadata::{Metadata, MetadataOptions};

/// Timeouts of a [`GroupAdmin`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupAdminOptions {
    /// Limit on opening a TCP connection to one agent.
    pub connect_timeout: Duration,
    /// Limit on one call to one agent.
    pub request_timeout: Duration,
    /// Limit on each step of an operation, retries included.
    pub deadline: Duration,
    /// First pause after a retriable failure (doubles up to 1 s).
    pub retry_backoff: Duration,
}

impl Default for GroupAdminOptions {
    fn default() -> Self {
        GroupAdminOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(15),
            retry_backoff: Duration::from_millis(100),
        }
    }
}

/// The groups of the whole cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupList {
    /// One listing per group (sorted by id); when two agents both listed a
    /// group (a coordinator move), the one with the higher group epoch.
    pub groups: Vec<GroupListing>,
    /// Agents that did not answer: `(broker id, address, what went wrong)`;
    /// their groups are missing from `groups`.
    pub failed: Vec<(i32, String, String)>,
}

/// One partition of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub partition: TopicPartition,
    /// The committed offset; `None` when nothing is committed.
    pub committed: Option<i64>,
    /// The high watermark; `None` when it could not be looked up.
    pub log_end: Option<i64>,
    /// `log_end - committed` (at least 0) when both are known.
    pub lag: Option<i64>,
    /// The member that owns it now (by the coordinator's assignment).
    pub member_id: Option<String>,
    /// That member's instance id (static members).
    pub instance_id: Option<String>,
    /// That member's client id.
    pub client_id: Option<String>,
}

/// A group as `DescribeGroup` tells it, with lag per partition.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDescription {
    /// The coordinator's answer (state, epochs, members, offsets).
    pub group: DescribeGroupResponse,
    /// Every partition assigned to a member or with a committed offset,
    /// sorted.
    pub partitions: Vec<PartitionLag>,
}

/// Where an offset reset moves each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark.
    Latest,
    /// This offset (clamped to the log).
    Offset(i64),
    /// The first offset whose timestamp is at or after this one (ms since
    /// the epoch); the high watermark if none is.
    Timestamp(i64),
    /// The committed offset moved by this much (clamped to the log).
    ShiftBy(i64),
}

/// One partition of a [`ResetPlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedReset {
    /// The partition.
    pub partition: TopicPartition,
    /// The committed offset now; `None` when nothing is committed.
    pub current: Option<i64>,
    /// The offset the reset commits.
    pub new_offset: i64,
    /// The log start offset when planned.
    pub log_start: i64,
    /// The high watermark when planned.
    pub log_end: i64,
}

/// An offset reset, planned and not yet applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetPlan {
    /// The group.
    pub group_id: String,
    /// The group's state when planned (`Empty`, `Stable`, ...; `Dead` when
    /// the coordinator does not know it).
    pub state: String,
    /// Members when planned; executing fails unless this is 0 by then.
    pub members: usize,
    /// The partitions, sorted.
    pub partitions: Vec<PlannedReset>,
}

/// The new offset of one partition (pure): `spec` applied to the committed
/// offset `current`, the log bounds `[log_start, log_end]` and, for
/// [`ResetSpec::Timestamp`], the offset the time lookup found (`-1`: none),
/// clamped to the log.
pub fn plan_offset(
    spec: ResetSpec,
    current: Option<i64>,
    log_start: i64,
    log_end: i64,
    by_time: Option<i64>,
) -> Result<i64, String> {
    let wanted = match spec {
        ResetSpec::Earliest => log_start,
        ResetSpec::Latest => log_end,
        ResetSpec::Offset(o) => o,
        ResetSpec::Timestamp(_) => match by_time {
            Some(o) if o >= 0 => o,
            _ => log_end,
        },
        ResetSpec::ShiftBy(n) => match current {
            Some(c) => c.saturating_add(n),
            None => return Err("nothing is committed to shift".into()),
        },
    };
    Ok(wanted.clamp(log_start.min(log_end), log_end))
}

/// Consumer-group administration against the agents; see the module
/// documentation. Cheap to clone.
#[derive(Debug, Clone)]
pub struct GroupAdmin {
    rpc: Arc<GroupRpc>,
    connections: Connections,
    options: GroupAdminOptions,
}

impl GroupAdmin {
    /// An admin that finds the cluster through the agents at `bootstrap`
    /// (`host:port` of their Data service). Dials nothing yet.
    pub fn connect(
        bootstrap: Vec<String>,
        options: GroupAdminOptions,
    ) -> Result<GroupAdmin, GroupError> {
        let connections = Connections::new(options.connect_timeout);
        let metadata = Metadata::new(
            bootstrap.clone(),
            MetadataOptions {
                connect_timeout: options.connect_timeout,
                request_timeout: options.request_timeout,
                ..MetadataOptions::default()
            },
            connections.clone(),
        )?;
        Ok(GroupAdmin {
            rpc: Arc::new(GroupRpc::new(
                bootstrap,
                metadata,
                options.connect_timeout,
                options.request_timeout,
                options.retry_backoff,
            )),
            connections,
            options,
        })
    }

    fn deadline(&self) -> Instant {
        Instant::now() + self.options.deadline
    }

    /// Every group of the cluster: `ListGroups` at each broker in metadata
    /// (concurrently), merged. Agents that fail are named in
    /// [`GroupList::failed`]; it is an error only when none answered.
    pub async fn list_groups(&self) -> Result<GroupList, GroupError> {
        self.rpc.metadata().refresh().await?;
        let brokers: BTreeMap<i32, String> = self.rpc.metadata().with(|c| c.brokers().clone());
        let mut calls = JoinSet::new();
        for (id, address) in brokers {
            let rpc = Arc::clone(&self.rpc);
            calls.spawn(async move {
                let answer = rpc
                    .call_once(&address, |mut c| async move {
                        c.list_groups(ListGroupsRequest {}).await
                    })
                    .await;
                (id, address, answer)
            });
        }
        let mut answers = Vec::new();
        let mut failed = Vec::new();
        while let Some(joined) = calls.join_next().await {
            let Ok((id, address, answer)) = joined else {
                continue;
            };
            match answer {
                Ok(r) if r.error == ErrorCode::None as i32 => answers.push(r.groups),
                Ok(r) => failed.push((
                    id,
                    address,
                    format!("{}: {}", error_code_name(r.error), r.error_message),
                )),
                Err(s) => failed.push((
                    id,
                    address,
                    format!("{}: {}", crate::retry::code_name(s.code()), s.message()),
                )),
            }
        }
        failed.sort();
        if answers.is_empty()
            && let Some((_, address, reason)) = failed.first()
        {
            return Err(GroupError::CoordinatorUnavailable {
                rpc: "ListGroups",
                group: String::new(),
                waited: Duration::ZERO,
                last: format!("{address}: {reason}"),
            });
        }
        Ok(GroupList {
            groups: merge_listings(answers),
            failed,
        })
    }

    /// The group's state, members and committed offsets from its
    /// coordinator, with the lag of every assigned or committed partition.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription, GroupError> {
        let described = self.describe(group).await?;
        let partitions = lag_rows(&described, &BTreeMap::new());
        let tps: Vec<TopicPartition> = partitions.iter().map(|p| p.partition.clone()).collect();
        let (ends, errors) = self.list_offsets(&tps, -1).await;
        for (tp, reason) in errors {
            tracing::debug!(partition = %tp, reason = %reason, "no high watermark for lag");
        }
        Ok(GroupDescription {
            partitions: lag_rows(&described, &ends),
            group: described,
        })
    }

    async fn describe(&self, group: &str) -> Result<DescribeGroupResponse, GroupError> {
        let request = DescribeGroupRequest {
            group_id: group.to_owned(),
        };
        let (r, address) = self
            .rpc
            .call("DescribeGroup", group, self.deadline(), |mut c| {
                let r = request.clone();
                async move { c.describe_group(r).await }
            })
            .await?;
        match ErrorCode::try_from(r.error) {
            Ok(ErrorCode::None) => Ok(r),
            Ok(ErrorCode::GroupIdNotFound) => Err(GroupError::GroupNotFound {
                group: group.to_owned(),
            }),
            _ => Err(GroupError::Rejected {
                rpc: "DescribeGroup",
                group: group.to_owned(),
                code: r.error,
                message: r.error_message,
                address,
            }),
        }
    }

    /// Deletes an empty group and its committed offsets.
    pub async fn delete_group(&self, group: &str) -> Result<(), GroupError> {
        let request = DeleteGroupRequest {
            group_id: group.to_owned(),
        };
        let (r, address) = self
            .rpc
            .call("DeleteGroup", group, self.deadline(), |mut c| {
                let r = request.clone();
                async move { c.delete_group(r).await }
            })
            .await?;
        match ErrorCode::try_from(r.error) {
            Ok(ErrorCode::None) => Ok(()),
            Ok(ErrorCode::NonEmptyGroup) => Err(GroupError::GroupNotEmpty {
                group: group.to_owned(),
            }),
            Ok(ErrorCode::GroupIdNotFound) => Err(GroupError::GroupNotFound {
                group: group.to_owned(),
            }),
            _ => Err(GroupError::Rejected {
                rpc: "DeleteGroup",
                group: group.to_owned(),
                code: r.error,
                message: r.error_message,
                address,
            }),
        }
    }

    /// Plans moving `group`'s offsets for the chosen partitions: each
    /// `(topic, partitions)` pair names a topic and some of its partitions
    /// (`None`: all). Nothing is written; see [`GroupAdmin::execute_reset`].
    pub async fn plan_reset(
        &self,
        group: &str,
        selection: &[(String, Option<Vec<i32>>)],
        spec: ResetSpec,
    ) -> Result<ResetPlan, GroupError> {
        if selection.is_empty() {
            return Err(GroupError::InvalidReset("name at least one topic".into()));
        }
        let (state, members) = match self.describe(group).await {
            Ok(d) => (d.state, d.members.len()),
            Err(GroupError::GroupNotFound { .. }) => ("Dead".to_owned(), 0),
            Err(e) => return Err(e),
        };
        let mut tps = BTreeSet::new();
        for (topic, partitions) in selection {
            let count = self
                .rpc
                .metadata()
                .wait_for_topic(topic, None, self.options.deadline)
                .await?;
            match partitions {
                None => tps.extend((0..count).map(|p| TopicPartition::new(topic.clone(), p))),
                Some(ps) => {
                    for p in ps {
                        if !(0..count).contains(p) {
                            return Err(GroupError::InvalidReset(format!(
                                "topic {topic} has partitions 0..{}; there is no partition {p}",
                                count - 1
                            )));
                        }
                        tps.insert(TopicPartition::new(topic.clone(), *p));
                    }
                }
            }
        }
        let tps: Vec<TopicPartition> = tps.into_iter().collect();
        let starts = self.offsets_or_fail(&tps, -2).await?;
        let ends = self.offsets_or_fail(&tps, -1).await?;
        let by_time = match spec {
            ResetSpec::Timestamp(t) => Some(self.offsets_or_fail(&tps, t).await?),
            _ => None,
        };
        let committed =
            crate::group::fetch_offsets(&self.rpc, group, &tps, self.deadline()).await?;
        let mut partitions = Vec::with_capacity(tps.len());
        for tp in tps {
            let (Some(&log_start), Some(&log_end)) = (starts.get(&tp), ends.get(&tp)) else {
                continue;
            };
            let current = committed.get(&tp).map(|c| c.offset);
            let found = by_time.as_ref().and_then(|m| m.get(&tp).copied());
            let new_offset = plan_offset(spec, current, log_start, log_end, found)
                .map_err(|e| GroupError::InvalidReset(format!("{tp}: {e}")))?;
            partitions.push(PlannedReset {
                partition: tp,
                current,
                new_offset,
                log_start,
                log_end,
            });
        }
        Ok(ResetPlan {
            group_id: group.to_owned(),
            state,
            members,
            partitions,
        })
    }

    /// Commits a plan's offsets as an admin (member epoch -1, leader epoch
    /// unknown). Refused with [`GroupError::GroupNotEmpty`] while the group
    /// has members.
    pub async fn execute_reset(&self, plan: &ResetPlan) -> Result<CommitEvent, GroupError> {
        let group = plan.group_id.as_str();
        let offsets: Vec<OffsetCommit> = plan
            .partitions
            .iter()
            .map(|p| OffsetCommit {
                partition: p.partition.clone(),
                offset: p.new_offset,
                leader_epoch: None,
                metadata: String::new(),
            })
            .collect();
        let request = CommitOffsetsRequest {
            group_id: group.to_owned(),
            member_id: String::new(),
            member_epoch: -1,
            partitions: crate::group::commit_partitions(&offsets),
        };
        let (r, address) = self
            .rpc
            .call("CommitOffsets", group, self.deadline(), |mut c| {
                let r = request.clone();
                async move { c.commit_offsets(r).await }
            })
            .await?;
        match ErrorCode::try_from(r.error) {
            Ok(ErrorCode::None) => {
                crate::group::check_commit_results(group, &r.results)?;
                Ok(crate::group::commit_event(&offsets, String::new(), -1))
            }
            Ok(ErrorCode::NonEmptyGroup) => Err(GroupError::GroupNotEmpty {
                group: group.to_owned(),
            }),
            _ => Err(GroupError::Rejected {
                rpc: "CommitOffsets",
                group: group.to_owned(),
                code: r.error,
                message: r.error_message,
                address,
            }),
        }
    }

    async fn offsets_or_fail(
        &self,
        tps: &[TopicPartition],
        timestamp: i64,
    ) -> Result<BTreeMap<TopicPartition, i64>, GroupError> {
        let (found, errors) = self.list_offsets(tps, timestamp).await;
        match errors.into_iter().next() {
            Some((partition, reason)) => Err(GroupError::ListOffsets { partition, reason }),
            None => Ok(found),
        }
    }

    /// `ListOffsets` at each partition's leader (-2 earliest, -1 the high
    /// watermark, else by timestamp), retrying leader moves and unreachable
    /// agents until the deadline. Returns what was found and, for the rest,
    /// why not.
    async fn list_offsets(
        &self,
        tps: &[TopicPartition],
        timestamp: i64,
    ) -> (BTreeMap<TopicPartition, i64>, Vec<(TopicPartition, String)>) {
        let metadata = self.rpc.metadata();
        let mut found = BTreeMap::new();
        let mut failed: BTreeMap<TopicPartition, String> = BTreeMap::new();
        let mut pending: BTreeSet<TopicPartition> = tps.iter().cloned().collect();
        let mut wanted_new = false;
        for tp in &pending {
            wanted_new |= metadata.with(|c| c.want(&tp.topic));
        }
        if wanted_new {
            let _ = metadata.refresh().await;
        }
        let deadline = self.deadline();
        let mut backoff = self.options.retry_backoff;
        loop {
            let mut by_leader: BTreeMap<String, Vec<(TopicPartition, i32)>> = BTreeMap::new();
            for tp in &pending {
                match metadata.with(|c| c.leader(&tp.topic, tp.partition)) {
                    Some(l) => by_leader
                        .entry(l.address)
                        .or_default()
                        .push((tp.clone(), l.leader_epoch)),
                    None => {
                        failed.insert(tp.clone(), "no leader known".into());
                    }
                }
            }
            for (address, parts) in by_leader {
                let request = ListOffsetsRequest {
                    partitions: parts
                        .iter()
                        .map(|(tp, epoch)| ListOffsetsPartition {
                            topic: tp.topic.clone(),
                            partition: tp.partition,
                            timestamp,
                            current_leader_epoch: *epoch,
                        })
                        .collect(),
                };
                let answer = match self.connections.data_client(&address, DEFAULT_MAX_DECODE) {
                    Ok(mut c) => {
                        match tokio::time::timeout(
                            self.options.request_timeout,
                            c.list_offsets(request),
                        )
                        .await
                        {
                            Ok(Ok(r)) => Ok(r.into_inner()),
                            Ok(Err(s)) => Err(format!(
                                "{} from {address}: {}",
                                crate::retry::code_name(s.code()),
                                s.message()
                            )),
                            Err(_) => {
                                self.connections.forget(&address);
                                Err(format!("no answer from {address}"))
                            }
                        }
                    }
                    Err(e) => Err(format!("invalid address {address:?}: {e}")),
                };
                match answer {
                    Ok(r) => {
                        for res in r.results {
                            let tp = TopicPartition::new(res.topic.clone(), res.partition);
                            if !pending.contains(&tp) {
                                continue;
                            }
                            if res.error == ErrorCode::None as i32 {
                                failed.remove(&tp);
                                pending.remove(&tp);
                                found.insert(tp, res.offset);
                            } else {
                                let reason = format!(
                                    "{}: {}",
                                    error_code_name(res.error),
                                    res.error_message
                                );
                                if retriable_list_error(res.error) {
                                    failed.insert(tp, reason);
                                } else {
                                    pending.remove(&tp);
                                    failed.insert(tp, reason);
                                }
                            }
                        }
                    }
                    Err(reason) => {
                        for (tp, _) in parts {
                            failed.insert(tp, reason.clone());
                        }
                    }
                }
            }
            for tp in &pending {
                failed
                    .entry(tp.clone())
                    .or_insert_with(|| "no answer".into());
            }
            if pending.is_empty() || Instant::now() + backoff > deadline {
                return (found, failed.into_iter().collect());
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(crate::group::rpc::MAX_BACKOFF);
            let _ = metadata.refresh().await;
        }
    }
}

/// A ListOffsets refusal worth another try after a metadata refresh.
fn retriable_list_error(code: i32) -> bool {
    matches!(
        ErrorCode::try_from(code),
        Ok(ErrorCode::NotLeader
            | ErrorCode::UnknownTopicOrPartition
            | ErrorCode::FencedLeaderEpoch
            | ErrorCode::UnknownLeaderEpoch
            | ErrorCode::StorageError
            | ErrorCode::RequestTimedOut)
    )
}

/// The agents' listings merged (pure): one per group id, the highest group
/// epoch winning, sorted by id.
pub fn merge_listings(answers: Vec<Vec<GroupListing>>) -> Vec<GroupListing> {
    let mut by_id: BTreeMap<String, GroupListing> = BTreeMap::new();
    for g in answers.into_iter().flatten() {
        match by_id.get(&g.group_id) {
            Some(old) if old.group_epoch >= g.group_epoch => {}
            _ => {
                by_id.insert(g.group_id.clone(), g);
            }
        }
    }
    by_id.into_values().collect()
}

/// The partitions of a description with committed offsets, owners and, with
/// `ends` (high watermarks), lag (pure).
pub fn lag_rows(
    group: &DescribeGroupResponse,
    ends: &BTreeMap<TopicPartition, i64>,
) -> Vec<PartitionLag> {
    let mut rows: BTreeMap<TopicPartition, PartitionLag> = BTreeMap::new();
    let blank = |tp: &TopicPartition| PartitionLag {
        partition: tp.clone(),
        committed: None,
        log_end: None,
        lag: None,
        member_id: None,
        instance_id: None,
        client_id: None,
    };
    for m in &group.members {
        for tps in &m.assignment {
            for p in &tps.partitions {
                let tp = TopicPartition::new(tps.topic.clone(), *p);
                let row = rows.entry(tp.clone()).or_insert_with(|| blank(&tp));
                row.member_id = Some(m.member_id.clone());
                row.instance_id = (!m.instance_id.is_empty()).then(|| m.instance_id.clone());
                row.client_id = (!m.client_id.is_empty()).then(|| m.client_id.clone());
            }
        }
    }
    for o in &group.offsets {
        let tp = TopicPartition::new(o.topic.clone(), o.partition);
        let row = rows.entry(tp.clone()).or_insert_with(|| blank(&tp));
        row.committed = (o.offset >= 0).then_some(o.offset);
    }
    for row in rows.values_mut() {
        row.log_end = ends.get(&row.partition).copied().filter(|e| *e >= 0);
        row.lag = match (row.committed, row.log_end) {
            (Some(c), Some(e)) => Some((e - c).max(0)),
            _ => None,
        };
    }
    rows.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_offsets_are_clamped_to_the_log() {
        let plan = |spec, current| plan_offset(spec, current, 10, 100, None);
        assert_eq!(plan(ResetSpec::Earliest, None), Ok(10));
        assert_eq!(plan(ResetSpec::Latest, Some(50)), Ok(100));
        assert_eq!(plan(ResetSpec::Offset(5), None), Ok(10));
        assert_eq!(plan(ResetSpec::Offset(500), None), Ok(100));
        assert_eq!(plan(ResetSpec::Offset(42), None), Ok(42));
        assert_eq!(plan(ResetSpec::ShiftBy(-5), Some(50)), Ok(45));
        assert_eq!(plan(ResetSpec::ShiftBy(-100), Some(50)), Ok(10));
        assert_eq!(plan(ResetSpec::ShiftBy(100), Some(50)), Ok(100));
        assert_eq!(plan(ResetSpec::ShiftBy(i64::MAX), Some(50)), Ok(100));
        assert!(plan(ResetSpec::ShiftBy(1), None).is_err());
        let by_time = |found| plan_offset(ResetSpec::Timestamp(1), None, 10, 100, found);
        assert_eq!(by_time(Some(30)), Ok(30));
        assert_eq!(by_time(Some(-1)), Ok(100), "no record that late: the end");
        assert_eq!(by_time(None), Ok(100));
        // An empty log: start == end.
        assert_eq!(plan_offset(ResetSpec::Offset(3), None, 7, 7, None), Ok(7));
    }

    #[test]
    fn listings_merge_by_highest_epoch() {
        let l = |id: &str, epoch, coordinator| GroupListing {
            group_id: id.into(),
            state: "Stable".into(),
            group_epoch: epoch,
            members: 1,
            coordinator,
        };
        let merged = merge_listings(vec![
            vec![l("b", 3, 1), l("a", 1, 1)],
            vec![l("b", 5, 2)],
            vec![],
        ]);
        assert_eq!(merged, [l("a", 1, 1), l("b", 5, 2)]);
    }

    #[test]
    fn lag_is_the_high_watermark_minus_the_committed_offset() {
        let group = DescribeGroupResponse {
            members: vec![GroupMemberDescription {
                member_id: "m1".into(),
                client_id: "c".into(),
                assignment: vec![TopicPartitions {
                    topic: "t".into(),
                    partitions: vec![0, 1],
                }],
                ..GroupMemberDescription::default()
            }],
            offsets: vec![
                CommittedOffset {
                    topic: "t".into(),
                    partition: 0,
                    offset: 40,
                    ..CommittedOffset::default()
                },
                CommittedOffset {
                    topic: "u".into(),
                    partition: 2,
                    offset: 9,
                    ..CommittedOffset::default()
                },
            ],
            ..DescribeGroupResponse::default()
        };
        let ends = BTreeMap::from([
            (TopicPartition::new("t", 0), 50),
            (TopicPartition::new("t", 1), 7),
            (TopicPartition::new("u", 2), 5),
        ]);
        let rows = lag_rows(&group, &ends);
        type Row<'a> = (String, Option<i64>, Option<i64>, Option<&'a str>);
        let got: Vec<Row<'_>> = rows
            .iter()
            .map(|r| {
                (
                    r.partition.to_string(),
                    r.committed,
                    r.lag,
                    r.member_id.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("t-0".into(), Some(40), Some(10), Some("m1")),
                ("t-1".into(), None, None, Some("m1")),
                ("u-2".into(), Some(9), Some(0), None),
            ]
        );
        assert_eq!(rows[1].log_end, Some(7));
        assert_eq!(rows[0].client_id.as_deref(), Some("c"));
    }
}
