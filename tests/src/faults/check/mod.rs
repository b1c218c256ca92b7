//! One checker per property, each a pure function from a
//! [`History`](crate::faults::history::History) to a [`Report`]:
//!
//! * [`acked_present`]: every acknowledged record is in its partition
//!   exactly once, at the acknowledged offset, in acknowledgement order;
//!   losses and duplicates are reported as distinct kinds;
//! * [`single_writer`]: no two different records were acknowledged at the
//!   same (partition, offset) (two leaders accepting writes for one epoch);
//! * [`committed_monotonic`]: committed offsets never move backwards, and
//!   an acknowledged commit is never forgotten by the coordinator;
//! * [`healed`]: within a bound after healing, every partition is back in
//!   full ISR and the group is stable;
//! * [`exclusive_ownership`]: no partition is owned by two members of the
//!   group at once;
//! * [`coordinator_fencing`]: one active coordinator per epoch, a
//!   deposed one (paused past its lease, cut off) never claims its old
//!   epoch again, and a cut-off active one is replaced during the cut;
//! * [`reassigned`]: every accepted reassignment completed or is still
//!   running.
//!
//! Must never do I/O, read a clock or consult anything outside the history.

pub mod acked_present;
pub mod committed_monotonic;
pub mod coordinator_fencing;
pub mod exclusive_ownership;
pub mod healed;
pub mod reassigned;
pub mod single_writer;

use std::collections::BTreeMap;
use std::fmt;

/// One violation of a property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// A short kind (`lost`, `duplicate`, `backwards`, ...), for counting.
    pub kind: &'static str,
    /// What exactly, with partition, offsets, members and times.
    pub detail: String,
}

/// What a checker found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The property's name.
    pub property: &'static str,
    /// Violations (empty: the property held on this history).
    pub violations: Vec<Violation>,
    /// What was checked, for the log (counts, times).
    pub summary: String,
}

impl Report {
    /// Whether the property held.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// Violations counted by kind.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for v in &self.violations {
            *counts.entry(v.kind).or_insert(0) += 1;
        }
        counts
    }

    /// Whether any violation is of `kind`.
    pub fn has(&self, kind: &str) -> bool {
        self.violations.iter().any(|v| v.kind == kind)
    }
}

/// At most this many violations are printed per property.
const SHOWN: usize = 20;

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed() {
            return write!(f, "PASS {}: {}", self.property, self.summary);
        }
        let counts: Vec<String> = self
            .counts()
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        writeln!(
            f,
            "FAIL {}: {} ({})",
            self.property,
            counts.join(", "),
            self.summary
        )?;
        for v in self.violations.iter().take(SHOWN) {
            writeln!(f, "  [{}] {}", v.kind, v.detail)?;
        }
        if self.violations.len() > SHOWN {
            writeln!(f, "  ... and {} more", self.violations.len() - SHOWN)?;
        }
        Ok(())
    }
}

/// Every checker over one history, in the order above, with `bound` the
/// limit for [`healed`].
pub fn all(history: &crate::faults::history::History, bound: std::time::Duration) -> Vec<Report> {
    vec![
        acked_present::check(history),
        single_writer::check(history),
        committed_monotonic::check(history),
        healed::check(history, bound),
        exclusive_ownership::check(history),
        coordinator_fencing::check(history),
        reassigned::check(history),
    ]
}
