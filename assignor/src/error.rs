//! The assignor's one error type. Where Kafka defines an error, the message is
//! Kafka's wording and [`Error::kafka_error`] names Kafka's exception.

/// Everything the assignor refuses, with a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Kafka: `InvalidPartitionsException`.
    #[error("Number of partitions must be larger than 0.")]
    InvalidPartitions,
    /// Kafka: `InvalidReplicationFactorException`.
    #[error("Replication factor must be larger than 0.")]
    ReplicationFactorNotPositive,
    /// Kafka: `InvalidReplicationFactorException`.
    #[error("Replication factor: {replication_factor} larger than available brokers: {brokers}.")]
    ReplicationFactorTooLarge {
        replication_factor: i32,
        brokers: usize,
    },
    /// Kafka: `AdminOperationException`.
    #[error("Not all brokers have rack information for replica rack aware assignment.")]
    PartialRackInformation,
    /// Not checked by Kafka's `AdminUtils` (a map there silently merges the
    /// duplicates); refused here.
    #[error("Duplicate broker id {0} in the broker list.")]
    DuplicateBrokerId(i32),
    /// The last partition id would not fit in a Java int.
    #[error(
        "{count} partitions starting at partition id {start} would pass the largest partition id {max}.",
        max = i32::MAX
    )]
    PartitionIdOverflow { start: i32, count: i32 },
    /// The result would not fit in memory (allocation refused).
    #[error("The result of {what} is too large to hold in memory ({bytes} bytes).")]
    TooLarge { what: &'static str, bytes: u128 },
    /// A partition count past Java's int range.
    #[error("Topic {topic:?} has {partitions} partitions; the largest count is {max}.", max = i32::MAX)]
    TooManyPartitions { topic: String, partitions: u32 },
    /// A start partition id or start index below zero.
    #[error("{field} must not be negative, got {value}.")]
    Negative { field: &'static str, value: i64 },
    /// The offsets topic needs at least one partition.
    #[error("Number of offsets topic partitions must be larger than 0, got {0}.")]
    InvalidOffsetsPartitions(i32),
    /// Two members of one group share a member id.
    #[error("Duplicate member id {0:?} in the group.")]
    DuplicateMemberId(String),
    /// Two members of one group share a group instance id; Kafka would have
    /// fenced one of them.
    #[error("Duplicate group instance id {0:?} in the group.")]
    DuplicateGroupInstanceId(String),
    /// Two topics of one metadata snapshot share a name.
    #[error("Duplicate topic {0:?} in the topic metadata.")]
    DuplicateTopic(String),
    /// A balancing request the balancer cannot serve.
    #[error("Invalid balancing request: {0}.")]
    InvalidBalance(String),
    /// A subscription names a topic id outside the metadata table.
    #[error(
        "Member {member:?} subscribes to topic id {topic_id}, which is outside the topic table of {topics} topics."
    )]
    UnknownTopicId {
        member: String,
        topic_id: u32,
        topics: usize,
    },
}

impl Error {
    /// The name of the Kafka exception this error corresponds to, if Kafka
    /// defines one for it.
    pub fn kafka_error(&self) -> Option<&'static str> {
        match self {
            Error::InvalidPartitions => Some("InvalidPartitionsException"),
            Error::ReplicationFactorNotPositive | Error::ReplicationFactorTooLarge { .. } => {
                Some("InvalidReplicationFactorException")
            }
            Error::PartialRackInformation => Some("AdminOperationException"),
            Error::DuplicateBrokerId(_)
            | Error::PartitionIdOverflow { .. }
            | Error::Negative { .. }
            | Error::InvalidOffsetsPartitions(_)
            | Error::DuplicateMemberId(_)
            | Error::DuplicateGroupInstanceId(_)
            | Error::DuplicateTopic(_)
            | Error::UnknownTopicId { .. }
            | Error::TooLarge { .. }
            | Error::TooManyPartitions { .. }
            | Error::InvalidBalance(_) => None,
        }
    }
}
