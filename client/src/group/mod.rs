//! Consumer groups, the member's side: [`GroupConsumer`] (a [`Consumer`]
//! whose partitions a group coordinator assigns) and the settings, events
//! and errors it shares with [`crate::group_admin`].
//!
//! Owns the client half of the KIP-848-style protocol of
//! `proto/ballast/v1/group.proto`: choosing the member id, heartbeating the
//! subscription and owned partitions from a background task, moving the
//! consumer to each assignment the coordinator sends (revoke, commit,
//! release, then take up new partitions at their committed offsets),
//! committing offsets, and finding the coordinator again whenever an agent
//! says it is not (or not yet) the coordinator or cannot be reached. The
//! module is split by concern:
//!
//! * `membership`: the member state machine, pure (no I/O, no clock: the
//!   time is passed in), unit tested beside it;
//! * `rpc`: the Group-service channels, coordinator discovery and the one
//!   retry loop every coordinator-routed call goes through;
//! * `consumer`: [`GroupConsumer`] and its heartbeat task.
//!
//! Must never hold a `std` lock across an `.await`, unwrap anything that came
//! from the network, or report a partition as released before the caller's
//! [`RebalanceListener::on_revoked`] returned and its offsets were committed
//! (with auto-commit). Fetching records is the [`Consumer`]'s business.
//!
//! [`Consumer`]: crate::Consumer

mod consumer;
mod membership;
pub(crate) mod rpc;

use std::time::Duration;

use tonic::Code;

use crate::accumulator::TopicPartition;
use crate::connection::error_code_name;
use crate::consumer::ConsumeError;
use crate::metadata::MetadataError;
use crate::retry::code_name;

pub use consumer::GroupConsumer;
pub(crate) use consumer::{check_commit_results, commit_event, commit_partitions, fetch_offsets};

/// Group-member settings; the defaults are Kafka's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// The group to join (`group.id`).
    pub group_id: String,
    /// Static membership (`group.instance.id`): a restart with the same id
    /// within the session timeout takes the old member's place without a
    /// rebalance. `None`: dynamic.
    pub instance_id: Option<String>,
    /// The coordinator removes the member after this long without a
    /// heartbeat (`session.timeout.ms`, bounded by the agent). The member
    /// also gives its partitions up as lost after this long without an
    /// answered heartbeat.
    pub session_timeout: Duration,
    /// How long the member may take to release partitions once asked
    /// (`max.poll.interval.ms` plays this part in Kafka).
    pub rebalance_timeout: Duration,
    /// Commit the positions of owned partitions every
    /// `auto_commit_interval`, before revoking partitions and on close
    /// (`enable.auto.commit`).
    pub auto_commit: bool,
    /// See `auto_commit` (`auto.commit.interval.ms`).
    pub auto_commit_interval: Duration,
    /// Reported to the coordinator and shown by `ballast groups describe`.
    pub client_id: String,
}

impl GroupConfig {
    /// Kafka's defaults for group `group_id`.
    pub fn new(group_id: impl Into<String>) -> GroupConfig {
        GroupConfig {
            group_id: group_id.into(),
            instance_id: None,
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            client_id: "ballast-client".to_owned(),
        }
    }
}

/// A partition set changed hands: what [`RebalanceListener`] is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebalanceEvent {
    /// The partitions, sorted.
    pub partitions: Vec<TopicPartition>,
    /// This member's id.
    pub member_id: String,
    /// The member epoch at the time (for `assigned`, the epoch of the
    /// assignment).
    pub member_epoch: i32,
}

/// Offsets the coordinator acknowledged (written to the replicated offsets
/// partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitEvent {
    /// Each partition with the committed offset (the next to consume),
    /// sorted.
    pub offsets: Vec<(TopicPartition, i64)>,
    /// The member id the commit carried (`""` for an admin commit).
    pub member_id: String,
    /// The member epoch the commit carried.
    pub member_epoch: i32,
}

/// One offset to commit, for [`GroupConsumer::commit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    /// The partition.
    pub partition: TopicPartition,
    /// The next offset to consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record (KIP-320); `None`: unknown.
    pub leader_epoch: Option<i32>,
    /// Free text stored with the offset.
    pub metadata: String,
}

/// A committed offset as the coordinator holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The next offset to consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record; `None`: unknown.
    pub leader_epoch: Option<i32>,
}

/// Told about membership changes by [`GroupConsumer::poll`] and
/// [`GroupConsumer::close`], on the caller's task, in order, and never
/// concurrently with the caller's own use of the consumer.
///
/// Ordering guarantees (what makes ownership intervals recorded here
/// sound across processes): `on_revoked` runs before the revoked
/// partitions' positions are committed and before their release is
/// reported to the coordinator, so no other member can own them yet;
/// `on_assigned` runs after the coordinator's answer naming the partitions
/// arrived, before any of their records is handed out; `on_lost` runs
/// before the member rejoins, and after it no record of those partitions is
/// handed out. Callbacks must not block for long: the heartbeat goes on in
/// the background, but the coordinator waits for releases.
pub trait RebalanceListener: Send {
    /// Partitions newly owned; their records come from the next polls.
    fn on_assigned(&mut self, event: &RebalanceEvent) {
        let _ = event;
    }

    /// Partitions about to be released; with auto-commit their positions
    /// (those not committed yet) are committed right after this returns.
    fn on_revoked(&mut self, event: &RebalanceEvent) {
        let _ = event;
    }

    /// Partitions lost without a chance to commit: the member was fenced,
    /// forgotten by the coordinator, or went a session timeout without an
    /// answered heartbeat. Another member may already own them.
    fn on_lost(&mut self, event: &RebalanceEvent) {
        let _ = event;
    }

    /// Offsets the coordinator acknowledged (auto-commit, revocation,
    /// close, [`GroupConsumer::commit_sync`] and finished
    /// [`GroupConsumer::commit_async`] calls).
    fn on_committed(&mut self, event: &CommitEvent) {
        let _ = event;
    }

    /// A commit the consumer made on its own (auto-commit, revocation,
    /// close, [`GroupConsumer::commit_async`]) failed. Logged by default.
    fn on_commit_failed(&mut self, error: &GroupError) {
        tracing::warn!(error = %error, "offset commit failed");
    }
}

/// The listener used when none is set: does nothing beyond logging failed
/// commits.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopListener;

impl RebalanceListener for NoopListener {}

/// Why a group operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// Fetching records failed (see [`ConsumeError`]).
    #[error(transparent)]
    Consume(#[from] ConsumeError),

    /// No bootstrap address, a bad one, a topic never found, or no agent
    /// answered Metadata.
    #[error(transparent)]
    Metadata(#[from] MetadataError),

    /// A setting is out of range.
    #[error("invalid group config: {field}: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// No coordinator answered the call before its deadline (none elected,
    /// still loading, unreachable). Retriable later.
    #[error(
        "{rpc} for group {group:?}: no coordinator answered within {:.1}s (last: {last})",
        waited.as_secs_f64()
    )]
    CoordinatorUnavailable {
        /// The RPC.
        rpc: &'static str,
        /// The group.
        group: String,
        /// Time spent.
        waited: Duration,
        /// The last failure seen.
        last: String,
    },

    /// The member is no longer in the group at this epoch (fenced or
    /// unknown): its partitions are lost and it rejoins.
    #[error("group {group:?}: member {member_id} was fenced ({}): its partitions are lost", error_code_name(*.code))]
    Fenced {
        /// The group.
        group: String,
        /// This member's id.
        member_id: String,
        /// `FENCED_MEMBER_EPOCH` or `UNKNOWN_MEMBER_ID`.
        code: i32,
    },

    /// The group still has members (delete, or an admin offset reset).
    #[error(
        "group {group:?} has active members; stop its consumers (or wait for their session timeout) and try again"
    )]
    GroupNotEmpty {
        /// The group.
        group: String,
    },

    /// The coordinator does not know the group.
    #[error("group {group:?} does not exist")]
    GroupNotFound {
        /// The group.
        group: String,
    },

    /// The coordinator refused with an error a retry will not cure.
    #[error("{rpc} for group {group:?}: {}: {message} (coordinator {address})", error_code_name(*.code))]
    Rejected {
        /// The RPC.
        rpc: &'static str,
        /// The group.
        group: String,
        /// The error code.
        code: i32,
        /// The coordinator's message.
        message: String,
        /// The agent that answered.
        address: String,
    },

    /// The coordinator refused one partition of a commit.
    #[error("commit of {partition} for group {group:?}: {}: {message}", error_code_name(*.code))]
    CommitRejected {
        /// The group.
        group: String,
        /// The partition.
        partition: TopicPartition,
        /// The error code.
        code: i32,
        /// The coordinator's message.
        message: String,
    },

    /// An agent's gRPC server refused a call in a way a retry will not cure
    /// (e.g. `UNIMPLEMENTED`: an agent without the Group service).
    #[error("{rpc}: {} from agent {address}: {message}", code_name(*.code))]
    Transport {
        /// The RPC.
        rpc: &'static str,
        /// The agent called.
        address: String,
        /// The gRPC status code.
        code: Code,
        /// The status message.
        message: String,
    },

    /// Nothing is committed for a newly assigned partition and the reset
    /// policy is `Error`.
    #[error("{partition}: no committed offset for group {group:?} and the reset policy is error")]
    NoCommittedOffset {
        /// The group.
        group: String,
        /// The partition.
        partition: TopicPartition,
    },

    /// Looking up a partition's offsets (earliest, latest, by time) failed.
    #[error("{partition}: cannot look up offsets: {reason}")]
    ListOffsets {
        /// The partition.
        partition: TopicPartition,
        /// What went wrong.
        reason: String,
    },

    /// An offset-reset request cannot be planned.
    #[error("cannot plan the offset reset: {0}")]
    InvalidReset(String),

    /// The consumer was closed.
    #[error("the group consumer is closed")]
    Closed,

    /// The system's random source failed while drawing a member id.
    #[error("cannot draw a random member id: {0}")]
    MemberId(getrandom::Error),
}

/// A random member id: 22 URL-safe base64 characters (128 bits).
pub(crate) fn random_member_id() -> Result<String, GroupError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(GroupError::MemberId)?;
    Ok(base64url(&bytes))
}

/// Unpadded URL-safe base64.
fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let index = (n >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[index as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_are_22_url_safe_chars() {
        assert_eq!(base64url(b"\xfb\xff"), "-_8");
        assert_eq!(base64url(b"Man"), "TWFu");
        assert_eq!(base64url(b"Ma"), "TWE");
        let a = random_member_id().unwrap();
        let b = random_member_id().unwrap();
        assert_eq!(a.len(), 22);
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn defaults_are_kafkas() {
        let c = GroupConfig::new("g");
        assert_eq!(c.session_timeout, Duration::from_secs(45));
        assert_eq!(c.rebalance_timeout, Duration::from_secs(300));
        assert!(c.auto_commit);
        assert_eq!(c.auto_commit_interval, Duration::from_secs(5));
        assert_eq!(c.instance_id, None);
    }
}
