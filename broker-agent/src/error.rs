//! The crate's one error type, [`AgentError`], and its one mapping to gRPC
//! status codes (`impl From<AgentError> for tonic::Status`).
//!
//! Fencing refusals (stale coordinator epoch, stale or unknown broker epoch,
//! stale push version) are their own variants: the coordinator reacts to them
//! differently from a malformed push or a disk failure. Every refusal also
//! carries the metadata key [`ERROR_REASON_KEY`] with a stable name
//! (`STALE_COORDINATOR_EPOCH`, ...) so callers need not parse messages.

use std::io;
use std::path::PathBuf;

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

/// Metadata key on every refusal the agent sends: a stable, upper-case
/// reason such as `STALE_COORDINATOR_EPOCH`.
pub const ERROR_REASON_KEY: &str = "ballast-error";

/// Everything that can go wrong at the agent's boundary: start-up, the data
/// directory, serving, and applying a push.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A configuration field is invalid; `field` names it.
    #[error("invalid agent configuration: {field}: {reason}")]
    Config {
        /// The field (command-line flag name without dashes).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Another agent (process or in-process instance) holds the data
    /// directory's lock.
    #[error("data directory {} is in use by another agent", path.display())]
    DataDirInUse {
        /// The data directory.
        path: PathBuf,
    },
    /// The data directory was created by an agent with another broker id.
    #[error(
        "data directory {} belongs to broker {found}, not broker {expected}; \
         use that broker id or another data directory",
        path.display()
    )]
    DataDirOwnedByOtherBroker {
        /// The data directory.
        path: PathBuf,
        /// Broker id recorded in its `agent.json`.
        found: i32,
        /// Broker id this agent was started with.
        expected: i32,
    },
    /// `agent.json` exists but cannot be understood.
    #[error("corrupt agent metadata {}: {reason}", path.display())]
    CorruptMeta {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file-system operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What the agent was doing ("create", "read", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The AgentControl listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// The AgentControl server failed while serving.
    #[error("AgentControl server failed: {0}")]
    Serve(#[source] tonic::transport::Error),
    /// A background task of the agent panicked or was aborted.
    #[error("agent task failed: {0}")]
    Task(String),

    /// Fencing: the push comes from a coordinator epoch lower than the
    /// highest this agent has accepted (a deposed coordinator).
    #[error("stale coordinator epoch {got} < {highest}")]
    StaleCoordinatorEpoch {
        /// Epoch in the push.
        got: i64,
        /// Highest epoch accepted so far (persisted).
        highest: i64,
    },
    /// Fencing: the push is for an older registration of this broker.
    #[error("stale broker epoch {got} < {current} (the agent's current registration)")]
    StaleBrokerEpoch {
        /// Broker epoch in the push.
        got: i64,
        /// The agent's current broker epoch.
        current: i64,
    },
    /// The push is for a broker epoch this agent has not (yet) been given.
    #[error(
        "unknown broker epoch {got}: the agent's current registration has broker epoch {current}"
    )]
    UnknownBrokerEpoch {
        /// Broker epoch in the push.
        got: i64,
        /// The agent's current broker epoch (0: not registered yet).
        current: i64,
    },
    /// The push is addressed to another broker id.
    #[error("push for broker {got} reached broker {own}")]
    WrongBroker {
        /// Broker id in the push.
        got: i32,
        /// This agent's broker id.
        own: i32,
    },
    /// Fencing: within one (coordinator epoch, broker epoch) the push
    /// version went down: an older push arrived after a newer one.
    #[error("stale push version {got} < {applied} (coordinator epoch {coordinator_epoch})")]
    StalePushVersion {
        /// Version in the push.
        got: u64,
        /// Version last applied.
        applied: u64,
        /// The coordinator epoch both belong to.
        coordinator_epoch: i64,
    },
    /// The push is malformed (bad topic name, duplicate partition, ...).
    /// Nothing was applied.
    #[error("invalid push: {0}")]
    InvalidPush(String),
    /// Some partitions could not be reconciled on disk. The others were;
    /// GetState reports what the agent reached.
    #[error("could not apply every partition: {}", failures.join("; "))]
    ApplyFailed {
        /// One message per failed partition.
        failures: Vec<String>,
    },
}

impl AgentError {
    /// Shorthand for [`AgentError::Io`].
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// The gRPC code and stable reason name for this error.
    fn code_and_reason(&self) -> (Code, &'static str) {
        match self {
            Self::StaleCoordinatorEpoch { .. } => {
                (Code::FailedPrecondition, "STALE_COORDINATOR_EPOCH")
            }
            Self::StaleBrokerEpoch { .. } => (Code::FailedPrecondition, "STALE_BROKER_EPOCH"),
            Self::UnknownBrokerEpoch { .. } => (Code::FailedPrecondition, "UNKNOWN_BROKER_EPOCH"),
            Self::WrongBroker { .. } => (Code::FailedPrecondition, "WRONG_BROKER"),
            Self::StalePushVersion { .. } => (Code::FailedPrecondition, "STALE_PUSH_VERSION"),
            Self::InvalidPush(_) => (Code::InvalidArgument, "INVALID_PUSH"),
            Self::Config { .. } => (Code::InvalidArgument, "INVALID_CONFIG"),
            Self::DataDirInUse { .. } | Self::DataDirOwnedByOtherBroker { .. } => {
                (Code::FailedPrecondition, "DATA_DIR")
            }
            Self::ApplyFailed { .. } => (Code::Internal, "APPLY_FAILED"),
            Self::CorruptMeta { .. }
            | Self::Io { .. }
            | Self::Bind { .. }
            | Self::Serve(_)
            | Self::Task(_) => (Code::Internal, "INTERNAL"),
        }
    }
}

/// The one place agent errors become gRPC statuses.
impl From<AgentError> for Status {
    fn from(e: AgentError) -> Self {
        let (code, reason) = e.code_and_reason();
        let mut status = Status::new(code, e.to_string());
        status
            .metadata_mut()
            .insert(ERROR_REASON_KEY, MetadataValue::from_static(reason));
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_coordinator_epoch_is_failed_precondition_with_reason() {
        let status = Status::from(AgentError::StaleCoordinatorEpoch { got: 3, highest: 7 });
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), "stale coordinator epoch 3 < 7");
        assert_eq!(
            status.metadata().get(ERROR_REASON_KEY).unwrap(),
            "STALE_COORDINATOR_EPOCH"
        );
    }

    #[test]
    fn stale_broker_epoch_message_names_it() {
        let status = Status::from(AgentError::StaleBrokerEpoch { got: 3, current: 9 });
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(status.message().starts_with("stale broker epoch"));
    }
}
