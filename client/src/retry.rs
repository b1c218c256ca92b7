//! The admin client's retry policy, as pure functions and small state.
//!
//! Owns three decisions: what a failed call's gRPC status means for the
//! call (follow the active coordinator's hint at once, move on to the next
//! address after a backoff, or give the answer to the caller), the backoff
//! schedule, and the order in which coordinator addresses are tried. It does
//! no I/O and reads no clock: the loop in [`crate::admin`] asks it what to do,
//! does it, and enforces the overall deadline.
//!
//! The rules, from the coordinator's design:
//! * a standby answers every call with `FAILED_PRECONDITION` and the metadata
//!   key [`ACTIVE_COORDINATOR_KEY`] set to the active coordinator's address,
//!   empty when it does not know it (an election is under way);
//! * `FAILED_PRECONDITION` *without* that key is the active coordinator's
//!   own answer and is never retried;
//! * `UNAVAILABLE` (no connection, or the metadata store is down) means the
//!   request was refused before it was applied, and is retried for every
//!   call;
//! * a timeout (`DEADLINE_EXCEEDED`, `CANCELLED`) leaves a write's outcome
//!   unknown, so only reads and writes made idempotent by a request id
//!   (CreateTopic) are retried after one.

use std::time::Duration;

use tonic::Code;

/// Response metadata key in which a standby coordinator names the active
/// one (`host:port`, empty when unknown).
pub const ACTIVE_COORDINATOR_KEY: &str = "ballast-active-coordinator";

/// Redirects followed back to back without a pause; past this the client
/// backs off before following the next hint, so two coordinators that point
/// at each other during a hand-over cannot make it spin.
pub(crate) const MAX_IMMEDIATE_REDIRECTS: u32 = 3;

/// What a call may safely be repeated after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    /// Changes nothing: retried after any transient failure, timeouts
    /// included.
    ReadOnly,
    /// A write that carries a request id the coordinator deduplicates on
    /// (CreateTopic): as safe to repeat as a read.
    Idempotent,
    /// Any other write: repeated only when it was surely not applied (a
    /// standby refused it, or the coordinator was unavailable).
    Mutating,
}

/// What to do after a call failed with a given status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A standby named the active coordinator: call it.
    Redirect(String),
    /// Transient: try the next configured address after a backoff.
    NextAddress,
    /// The coordinator's answer: give it to the caller.
    Fail,
    /// A write timed out: it may or may not have been applied, so it is not
    /// repeated and the caller is told the outcome is unknown.
    OutcomeUnknown,
}

/// Classifies a failed call. `hint` is the value of
/// [`ACTIVE_COORDINATOR_KEY`] in the status metadata (`None` when the key is
/// absent, `Some("")` when present but empty or unreadable); `current` is the
/// address that answered.
pub(crate) fn classify(code: Code, hint: Option<&str>, kind: CallKind, current: &str) -> Verdict {
    match code {
        Code::FailedPrecondition => match hint.map(str::trim) {
            // Not a standby: the active coordinator refused the request.
            None => Verdict::Fail,
            // A standby that does not know the active coordinator, or that
            // names the very address that just refused: look elsewhere.
            Some("") => Verdict::NextAddress,
            Some(h) if h == current => Verdict::NextAddress,
            Some(h) => Verdict::Redirect(h.to_owned()),
        },
        Code::Unavailable => Verdict::NextAddress,
        Code::DeadlineExceeded | Code::Cancelled => match kind {
            CallKind::ReadOnly | CallKind::Idempotent => Verdict::NextAddress,
            CallKind::Mutating => Verdict::OutcomeUnknown,
        },
        _ => Verdict::Fail,
    }
}

/// Capped exponential backoff: `initial`, doubling up to `max`, no jitter
/// (a handful of admin clients cannot stampede a coordinator).
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `initial` (raised to 1 ms so the schedule always grows),
    /// never exceeding `max`.
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            next: initial.min(max),
            max,
        }
    }

    /// The pause before the next attempt; each call doubles the following
    /// one, up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }
}

/// The address to call next: the configured list walked round-robin, with
/// detours to addresses a standby named.
#[derive(Debug, Clone)]
pub(crate) struct Targets<'a> {
    configured: &'a [String],
    /// Position in `configured` of the last configured address tried (the
    /// walk resumes after it), `None` before any.
    cursor: Option<usize>,
    current: String,
    redirects_in_a_row: u32,
}

impl<'a> Targets<'a> {
    /// Starts at `start` (the last known active coordinator) when given,
    /// else at the first configured address. `configured` must not be empty.
    pub(crate) fn new(configured: &'a [String], start: Option<&str>) -> Self {
        let current = start
            .map(str::to_owned)
            .or_else(|| configured.first().cloned())
            .unwrap_or_default();
        let cursor = configured.iter().position(|a| *a == current);
        Targets {
            configured,
            cursor,
            current,
            redirects_in_a_row: 0,
        }
    }

    /// The address to call now.
    pub(crate) fn current(&self) -> &str {
        &self.current
    }

    /// Moves to the configured address after the last one tried.
    pub(crate) fn advance(&mut self) {
        self.redirects_in_a_row = 0;
        if self.configured.is_empty() {
            return;
        }
        let next = self.cursor.map_or(0, |i| (i + 1) % self.configured.len());
        self.cursor = Some(next);
        self.current.clone_from(&self.configured[next]);
    }

    /// Moves to the address a standby named. Returns true when the client
    /// should back off first (too many redirects in a row).
    pub(crate) fn redirect(&mut self, to: &str) -> bool {
        self.redirects_in_a_row += 1;
        if let Some(i) = self.configured.iter().position(|a| a == to) {
            self.cursor = Some(i);
        }
        to.clone_into(&mut self.current);
        self.redirects_in_a_row > MAX_IMMEDIATE_REDIRECTS
    }
}

/// The name gRPC gives a status code (`ALREADY_EXISTS`), for messages.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use CallKind::{Idempotent, Mutating, ReadOnly};

    #[test]
    fn standby_hints() {
        let fp = Code::FailedPrecondition;
        assert_eq!(
            classify(fp, Some("b:2"), Mutating, "a:1"),
            Verdict::Redirect("b:2".into())
        );
        assert_eq!(
            classify(fp, Some(" b:2 "), ReadOnly, "a:1"),
            Verdict::Redirect("b:2".into())
        );
        // Election under way: nobody knows the active coordinator.
        assert_eq!(
            classify(fp, Some(""), Mutating, "a:1"),
            Verdict::NextAddress
        );
        // A hint naming the refuser itself cannot be followed.
        assert_eq!(
            classify(fp, Some("a:1"), ReadOnly, "a:1"),
            Verdict::NextAddress
        );
        // No key: the active coordinator's own refusal.
        assert_eq!(classify(fp, None, ReadOnly, "a:1"), Verdict::Fail);
    }

    #[test]
    fn transient_failures_by_call_kind() {
        for kind in [ReadOnly, Idempotent, Mutating] {
            assert_eq!(
                classify(Code::Unavailable, None, kind, "a"),
                Verdict::NextAddress
            );
        }
        for code in [Code::DeadlineExceeded, Code::Cancelled] {
            assert_eq!(classify(code, None, ReadOnly, "a"), Verdict::NextAddress);
            assert_eq!(classify(code, None, Idempotent, "a"), Verdict::NextAddress);
            assert_eq!(classify(code, None, Mutating, "a"), Verdict::OutcomeUnknown);
        }
    }

    #[test]
    fn answers_are_not_retried() {
        for code in [
            Code::InvalidArgument,
            Code::AlreadyExists,
            Code::NotFound,
            Code::Internal,
            Code::Unimplemented,
            Code::Unknown,
        ] {
            // Even a stray hint does not make them retryable.
            assert_eq!(classify(code, Some("b:2"), ReadOnly, "a"), Verdict::Fail);
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
        let delays: Vec<u128> = (0..7).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1000, 1000]);
        let mut zero = Backoff::new(Duration::ZERO, Duration::from_millis(3));
        let delays: Vec<u128> = (0..4).map(|_| zero.next_delay().as_millis()).collect();
        assert_eq!(delays, [1, 2, 3, 3]);
    }

    #[test]
    fn targets_walk_round_robin_and_follow_hints() {
        let configured = vec!["a:1".to_owned(), "b:2".to_owned(), "c:3".to_owned()];
        let mut t = Targets::new(&configured, None);
        assert_eq!(t.current(), "a:1");
        t.advance();
        assert_eq!(t.current(), "b:2");
        t.advance();
        t.advance();
        assert_eq!(t.current(), "a:1");

        // A hint to a configured address moves the walk there.
        assert!(!t.redirect("c:3"));
        t.advance();
        assert_eq!(t.current(), "a:1");

        // A hint outside the list is a detour; the walk resumes after the
        // last configured address tried.
        assert!(!t.redirect("z:9"));
        assert_eq!(t.current(), "z:9");
        t.advance();
        assert_eq!(t.current(), "b:2");

        // Starting from a remembered active address outside the list.
        let mut t = Targets::new(&configured, Some("z:9"));
        assert_eq!(t.current(), "z:9");
        t.advance();
        assert_eq!(t.current(), "a:1");
    }

    #[test]
    fn redirect_loops_back_off() {
        let configured = vec!["a:1".to_owned(), "b:2".to_owned()];
        let mut t = Targets::new(&configured, None);
        let pauses: Vec<bool> = (0..5)
            .map(|i| t.redirect(if i % 2 == 0 { "b:2" } else { "a:1" }))
            .collect();
        assert_eq!(pauses, [false, false, false, true, true]);
        t.advance();
        assert!(!t.redirect("b:2"), "advancing resets the count");
    }

    #[test]
    fn code_names() {
        assert_eq!(code_name(Code::AlreadyExists), "ALREADY_EXISTS");
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
    }
}
