//! The process's open-file limit. An agent holds one descriptor per
//! segment, three for a busy partition's active segment (its offset and
//! time indexes open on the first write or lookup), plus one per
//! connection, and Linux's usual soft limit of 1,024 is spent by a few
//! hundred busy partitions; so the agent raises its soft limit to the
//! hard limit at start (as Go's runtime and Kafka's packaging do) and says
//! how many partitions the result allows. The hard limit is the operator's
//! (`LimitNOFILE=` in the systemd unit, `ulimit -Hn`).

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors an agent holds per busy partition replica (the estimate
/// stays on the safe side: an idle one holds one).
pub const FILES_PER_PARTITION: u64 = 3;

/// The open-file limit before and after [`raise_open_files_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// Soft limit found at start (`None`: unlimited).
    pub before: Option<u64>,
    /// Soft limit now.
    pub now: Option<u64>,
    /// Hard limit.
    pub hard: Option<u64>,
}

impl OpenFiles {
    /// About how many partition replicas fit under the soft limit, keeping
    /// a tenth (at least 64) for connections and everything else.
    pub fn partitions_fitting(&self) -> Option<u64> {
        self.now
            .map(|n| n.saturating_sub((n / 10).max(64)) / FILES_PER_PARTITION)
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. Never lowers it; an
/// error from `setrlimit` leaves the limit as it was (`now == before`).
pub fn raise_open_files_limit() -> OpenFiles {
    let current = getrlimit(Resource::Nofile);
    let (before, hard) = (current.current, current.maximum);
    let raise = match (before, hard) {
        (Some(soft), Some(hard)) => soft < hard,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let now = if raise
        && setrlimit(
            Resource::Nofile,
            Rlimit {
                current: hard,
                maximum: hard,
            },
        )
        .is_ok()
    {
        hard
    } else {
        before
    };
    OpenFiles { before, now, hard }
}

#[cfg(test)]
mod tests {
    use super::*;

    // nextest runs each test in its own process, so changing this process's
    // limit touches no other test.
    #[test]
    fn raises_a_low_soft_limit_to_the_hard_limit() {
        let hard = getrlimit(Resource::Nofile).maximum;
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(256),
                maximum: hard,
            },
        )
        .expect("lowering the soft limit is always allowed");
        let r = raise_open_files_limit();
        assert_eq!(r.before, Some(256));
        assert_eq!(r.now, hard);
        assert_eq!(getrlimit(Resource::Nofile).current, hard);
        // Calling again changes nothing.
        let again = raise_open_files_limit();
        assert_eq!((again.before, again.now), (hard, hard));
    }

    #[test]
    fn partitions_fitting_keeps_room_for_connections() {
        let at = |n| OpenFiles {
            before: Some(n),
            now: Some(n),
            hard: Some(n),
        };
        assert_eq!(at(1_024).partitions_fitting(), Some((1_024 - 102) / 3));
        assert_eq!(at(200).partitions_fitting(), Some((200 - 64) / 3));
        assert_eq!(at(10).partitions_fitting(), Some(0));
        let unlimited = OpenFiles {
            before: None,
            now: None,
            hard: None,
        };
        assert_eq!(unlimited.partitions_fitting(), None);
    }
}
