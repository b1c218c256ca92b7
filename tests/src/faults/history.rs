//! The client-visible history of one run: what the producers had
//! acknowledged, what the group members were assigned, handed and had
//! committed, what the group coordinator reported as committed, the
//! cluster's health after healing, and each partition's full log as read
//! at the end. Times are offsets from the start of the run on one
//! monotonic clock (every client lives in the test process).
//!
//! Plain data: recorded by the workload, read by the checkers. Must never
//! hold anything that needs I/O to interpret.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::faults::schedule::Fault;

/// A record a producer saw acknowledged (acks=all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Producer index.
    pub producer: u32,
    /// The producer's sequence number (send order).
    pub seq: u64,
    /// Partition.
    pub partition: i32,
    /// Offset the acknowledgement named.
    pub offset: i64,
    /// The unique value `p{producer}-{seq}`.
    pub value: String,
    /// When the acknowledgement arrived.
    pub at: Duration,
}

/// A send that failed (indeterminate: it may or may not be in the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendFailure {
    /// Producer index.
    pub producer: u32,
    /// The value.
    pub value: String,
    /// The error.
    pub error: String,
    /// When.
    pub at: Duration,
}

/// Offsets a group coordinator acknowledged to a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The member's label (`c0`, `c1`).
    pub member: String,
    /// The member epoch the commit carried.
    pub member_epoch: i32,
    /// Partition.
    pub partition: i32,
    /// The committed offset (next to consume).
    pub offset: i64,
    /// When the acknowledgement arrived.
    pub at: Duration,
}

/// How a member's ownership changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `on_assigned`: newly owned.
    Assigned,
    /// `on_revoked`: about to be released (no other member owns them yet).
    Revoked,
    /// `on_lost`: given up without a release; another member may own them.
    Lost,
}

/// One ownership change of a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ownership {
    /// The member's label.
    pub member: String,
    /// The member epoch of the event (for `Assigned`, the assignment's).
    pub member_epoch: i32,
    /// The partitions.
    pub partitions: Vec<i32>,
    /// What happened.
    pub change: Change,
    /// When the callback ran.
    pub at: Duration,
}

/// Records of one partition handed out by one poll of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The member's label.
    pub member: String,
    /// Partition.
    pub partition: i32,
    /// First offset handed out.
    pub first: i64,
    /// Last offset handed out.
    pub last: i64,
    /// When the poll returned.
    pub at: Duration,
}

/// The group's committed offsets as its coordinator described them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetSample {
    /// When the request was sent (every commit acknowledged before this
    /// must be reflected).
    pub at: Duration,
    /// Committed offset by partition (partitions without one are absent).
    pub offsets: BTreeMap<i32, i64>,
}

/// One partition as the active coordinator described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionHealth {
    /// Topic (the workload's and the internal offsets topic).
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Assigned replicas.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Leader, -1 when offline.
    pub leader: i32,
}

/// A look at the cluster after every fault healed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSample {
    /// When, from the run's start.
    pub at: Duration,
    /// Every partition of every topic; empty when no coordinator answered.
    pub partitions: Vec<PartitionHealth>,
    /// The group's state (`Stable`, ...), empty when not described.
    pub group_state: String,
    /// Members of the group.
    pub group_members: usize,
    /// Members whose own state is `Stable`.
    pub stable_members: usize,
    /// Distinct workload partitions in the members' current assignments.
    pub assigned_partitions: usize,
}

/// One coordinator's answer to `GetClusterInfo` (sampled every 250 ms
/// from every coordinator, for the fencing checker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorSample {
    /// Coordinator index.
    pub coordinator: usize,
    /// When the request was sent.
    pub sent: Duration,
    /// When the answer arrived.
    pub answered: Duration,
    /// Whether it said it is the active coordinator.
    pub active: bool,
    /// The epoch it named (0 when not active).
    pub epoch: i64,
}

/// A cut-off active coordinator ([`Fault::IsolateCoordinator`] resolved
/// to the active one): who it was and at which epoch it was active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoordinatorIsolation {
    /// Coordinator index.
    pub coordinator: usize,
    /// The epoch it answered as active at, just before the cut.
    pub epoch: i64,
    /// When it was cut off.
    pub start: Duration,
    /// When the link came back.
    pub end: Duration,
}

/// One reassignment the workload asked for, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassignment {
    /// Partition of the workload's topic.
    pub partition: i32,
    /// The replicas before.
    pub original: Vec<i32>,
    /// The replicas asked for.
    pub target: Vec<i32>,
    /// When it was asked for.
    pub at: Duration,
    /// The reassignment id, or the error the execute call failed with
    /// (indeterminate: a timeout may still have started it).
    pub accepted: Result<String, String>,
    /// The latest reassignment as described after the hold: its id, its
    /// state (`running`, `completed`, ...) and this partition's move state
    /// and replicas; `None` when no coordinator answered.
    pub described: Option<ReassignmentOutcome>,
}

/// A described reassignment, as far as one partition is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassignmentOutcome {
    /// Its id.
    pub id: String,
    /// `running`, `cancelling`, `completed` or `cancelled`.
    pub state: String,
    /// The partition's move state (`Complete`, `Moving`, ...).
    pub partition_state: String,
    /// The partition's replicas at the time.
    pub replicas: Vec<i32>,
}

/// The whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The workload topic.
    pub topic: String,
    /// Its partition count.
    pub partitions: i32,
    /// Its replication factor.
    pub replication_factor: usize,
    /// Members in the group.
    pub group_members: usize,
    /// Acknowledged records.
    pub acks: Vec<Ack>,
    /// Failed sends.
    pub failures: Vec<SendFailure>,
    /// Acknowledged commits, in the order the acknowledgements arrived.
    pub commits: Vec<Commit>,
    /// Ownership changes, in callback order.
    pub ownership: Vec<Ownership>,
    /// Records handed out to members.
    pub deliveries: Vec<Delivery>,
    /// Committed offsets described by the group coordinator, in time order.
    pub offset_samples: Vec<OffsetSample>,
    /// Faults injected and healed: (start, end, fault).
    pub faults: Vec<(Duration, Duration, Fault)>,
    /// When the last fault healed and every process was running again.
    pub healed_at: Option<Duration>,
    /// Looks at the cluster after `healed_at`.
    pub health: Vec<HealthSample>,
    /// Each partition's log as read after healing: (offset, value).
    pub logs: BTreeMap<i32, Vec<(i64, String)>>,
    /// Partitions whose full read did not reach the high watermark (or the
    /// highest acknowledged offset), with the reason.
    pub incomplete_reads: BTreeMap<i32, String>,
    /// When the run ended (open ownership intervals end here).
    pub end: Duration,
    /// Every coordinator's view of who is active, sampled over the run.
    pub coordinator_samples: Vec<CoordinatorSample>,
    /// Reassignments asked for during the fault phase.
    pub reassignments: Vec<Reassignment>,
    /// Active coordinators cut off from the network.
    pub isolations: Vec<CoordinatorIsolation>,
}
