//! What the group handlers refuse, each variant one Kafka error code.
//! Retriable ones (the member rejoins or heartbeats and retries) are kept
//! apart from the client's mistakes; [`GroupError::code`] is the one
//! mapping to the wire.

use ballast_proto::v1::ErrorCode;

/// A refused group request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// A field is missing or out of range.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The group id is empty or too long.
    #[error("invalid group id: {0}")]
    InvalidGroupId(String),
    /// The member is not in the group: rejoin with epoch 0.
    #[error("member {member_id:?} is not in group {group_id:?}")]
    UnknownMemberId {
        /// Group.
        group_id: String,
        /// Member.
        member_id: String,
    },
    /// A heartbeat with an epoch the coordinator does not accept: give up
    /// every partition and rejoin with epoch 0.
    #[error("member {member_id:?} sent epoch {request}, its epoch is {current}")]
    FencedMemberEpoch {
        /// Member.
        member_id: String,
        /// Epoch in the request.
        request: i32,
        /// The member's epoch.
        current: i32,
    },
    /// An offset commit with an older epoch: heartbeat, then retry.
    #[error("offset commit with member epoch {request}, the member is at {current}")]
    StaleMemberEpoch {
        /// Epoch in the request.
        request: i32,
        /// The member's epoch.
        current: i32,
    },
    /// No such group.
    #[error("group {0:?} does not exist")]
    GroupIdNotFound(String),
    /// The operation needs a group without members.
    #[error("group {group_id:?} has {members} member(s); stop them first")]
    NonEmptyGroup {
        /// Group.
        group_id: String,
        /// How many members it has.
        members: usize,
    },
    /// A join past the configured group size.
    #[error("group {group_id:?} already has the maximum of {max} members")]
    GroupMaxSizeReached {
        /// Group.
        group_id: String,
        /// The limit.
        max: usize,
    },
}

impl GroupError {
    /// The wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            GroupError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            GroupError::InvalidGroupId(_) => ErrorCode::InvalidGroupId,
            GroupError::UnknownMemberId { .. } => ErrorCode::UnknownMemberId,
            GroupError::FencedMemberEpoch { .. } => ErrorCode::FencedMemberEpoch,
            GroupError::StaleMemberEpoch { .. } => ErrorCode::StaleMemberEpoch,
            GroupError::GroupIdNotFound(_) => ErrorCode::GroupIdNotFound,
            GroupError::NonEmptyGroup { .. } => ErrorCode::NonEmptyGroup,
            GroupError::GroupMaxSizeReached { .. } => ErrorCode::GroupMaxSizeReached,
        }
    }
}
