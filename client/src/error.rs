//! The client's one error type, [`ClientError`].
//!
//! Owns the split between failures worth retrying later (the cluster could
//! not be reached in time: [`ClientError::Exhausted`]), answers that stand
//! (the active coordinator refused the request: [`ClientError::Rejected`]),
//! and writes whose outcome is unknown ([`ClientError::OutcomeUnknown`]).
//! Messages name the RPC, the coordinator address and the gRPC code so that
//! one line on a terminal says what happened where.

use std::fmt;
use std::time::Duration;

use tonic::Code;

use crate::retry::code_name;

/// Errors of the admin client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// [`crate::AdminClient::connect`] was given no address.
    #[error("no coordinator address given")]
    NoAddresses,

    /// A coordinator address is not `host:port` (or `http://host:port`).
    #[error("invalid coordinator address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The active coordinator answered with an error: the request is
    /// invalid, names a topic that exists or does not, or cannot be done now.
    /// Retrying the same request will not help.
    #[error("{rpc} failed: {}: {message} (coordinator {address})", code_name(*.code))]
    Rejected {
        /// The RPC, e.g. `CreateTopic`.
        rpc: &'static str,
        /// The coordinator that answered.
        address: String,
        /// The gRPC status code.
        code: Code,
        /// The coordinator's message (it names the field and the rule).
        message: String,
    },

    /// A write timed out: it may or may not have been applied. It was not
    /// repeated; look at the cluster before trying again.
    #[error(
        "{rpc} may or may not have been applied: {}: {message} (coordinator {address})",
        code_name(*.code)
    )]
    OutcomeUnknown {
        /// The RPC, e.g. `DeleteTopic`.
        rpc: &'static str,
        /// The coordinator that was called.
        address: String,
        /// `DEADLINE_EXCEEDED` or `CANCELLED`.
        code: Code,
        /// What the transport said.
        message: String,
    },

    /// No active coordinator answered before the overall deadline.
    #[error(
        "{rpc}: no active coordinator answered within {:.1}s ({attempts} attempts); tried {}",
        elapsed.as_secs_f64(),
        AttemptList(tried)
    )]
    Exhausted {
        /// The RPC, e.g. `GetClusterInfo`.
        rpc: &'static str,
        /// Time spent, at most the overall deadline.
        elapsed: Duration,
        /// Calls made.
        attempts: u32,
        /// Every address called, in the order first called, each with the
        /// last status it gave. The last status of all is [`Self::last`].
        tried: Vec<Attempt>,
    },

    /// The coordinator's answer lacked something the protocol promises.
    #[error("{rpc}: malformed response from {address}: {reason}")]
    MalformedResponse {
        /// The RPC.
        rpc: &'static str,
        /// The coordinator that answered.
        address: String,
        /// What was missing or wrong.
        reason: String,
    },

    /// The system's random source failed while drawing a request id.
    #[error("cannot draw a random request id: {0}")]
    RequestId(getrandom::Error),
}

impl ClientError {
    /// The gRPC status code behind the error, if one: the coordinator's
    /// answer, or for [`ClientError::Exhausted`] the last status seen.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Rejected { code, .. } | ClientError::OutcomeUnknown { code, .. } => {
                Some(*code)
            }
            ClientError::Exhausted { .. } => self.last().map(|a| a.code),
            _ => None,
        }
    }

    /// For [`ClientError::Exhausted`], the last failed call.
    pub fn last(&self) -> Option<&Attempt> {
        match self {
            ClientError::Exhausted { tried, .. } => tried.iter().max_by_key(|a| a.sequence),
            _ => None,
        }
    }
}

/// One address the client called, and the last status it got from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The address, as configured or as a standby named it.
    pub address: String,
    /// The last status code from this address.
    pub code: Code,
    /// The last status message from this address.
    pub message: String,
    /// Which call (1-based, over the whole operation) gave that status.
    pub sequence: u32,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.address, code_name(self.code))?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        f.write_str(")")
    }
}

/// Records the failures of one logical call, one entry per address.
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    tried: Vec<Attempt>,
    count: u32,
}

impl Attempts {
    /// Notes that `address` failed with `code` and `message`.
    pub(crate) fn record(&mut self, address: &str, code: Code, message: &str) {
        self.count += 1;
        let attempt = Attempt {
            address: address.to_owned(),
            code,
            message: message.to_owned(),
            sequence: self.count,
        };
        match self.tried.iter_mut().find(|a| a.address == address) {
            Some(slot) => *slot = attempt,
            None => self.tried.push(attempt),
        }
    }

    /// The [`ClientError::Exhausted`] these failures add up to.
    pub(crate) fn exhausted(self, rpc: &'static str, elapsed: Duration) -> ClientError {
        ClientError::Exhausted {
            rpc,
            elapsed,
            attempts: self.count,
            tried: self.tried,
        }
    }
}

struct AttemptList<'a>(&'a [Attempt]);

impl fmt::Display for AttemptList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            // Only when the deadline is zero.
            return f.write_str("nothing");
        }
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhausted_names_every_address_with_its_last_status() {
        let mut a = Attempts::default();
        a.record("a:1", Code::Unavailable, "tcp connect error");
        a.record(
            "b:2",
            Code::FailedPrecondition,
            "not the active coordinator",
        );
        a.record("a:1", Code::DeadlineExceeded, "");
        let e = a.exhausted("GetClusterInfo", Duration::from_millis(15_040));
        assert_eq!(
            e.to_string(),
            "GetClusterInfo: no active coordinator answered within 15.0s (3 attempts); \
             tried a:1 (DEADLINE_EXCEEDED), b:2 (FAILED_PRECONDITION: not the active coordinator)"
        );
        assert_eq!(e.code(), Some(Code::DeadlineExceeded));
        assert_eq!(e.last().map(|l| l.address.as_str()), Some("a:1"));
    }

    #[test]
    fn rejected_reads_as_one_line() {
        let e = ClientError::Rejected {
            rpc: "CreateTopic",
            address: "127.0.0.1:9410".into(),
            code: Code::AlreadyExists,
            message: "Topic 'orders' already exists.".into(),
        };
        assert_eq!(
            e.to_string(),
            "CreateTopic failed: ALREADY_EXISTS: Topic 'orders' already exists. \
             (coordinator 127.0.0.1:9410)"
        );
        assert_eq!(e.code(), Some(Code::AlreadyExists));
        assert_eq!(ClientError::NoAddresses.code(), None);
    }
}
