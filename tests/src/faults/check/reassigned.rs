//! Property: every reassignment the coordinator accepted during the fault
//! phase either completed (the partition's replicas are the target) or is
//! legitimately still running; none was lost, cancelled or failed by the
//! faults. A request that failed (a coordinator down, a timeout) is
//! indeterminate and not required. Records moved under reassignment are
//! covered by [`super::acked_present`].
//!
//! Kinds: `undescribed` (no coordinator described the reassignment after
//! its hold), `forgotten` (the latest reassignment described is not the
//! accepted one and nothing newer was asked for), `not completed` (it
//! ended cancelled or failed), `wrong replicas` (completed with other
//! replicas than the target).

use crate::faults::check::{Report, Violation};
use crate::faults::history::History;

/// The property's name.
pub const PROPERTY: &str = "reassignments complete or are still running";

/// Checks [`PROPERTY`].
pub fn check(history: &History) -> Report {
    let mut violations = Vec::new();
    let mut completed = 0usize;
    let mut running = 0usize;
    let mut refused = 0usize;
    for r in &history.reassignments {
        let Ok(id) = &r.accepted else {
            refused += 1;
            continue;
        };
        let what = format!(
            "partition {} {:?} -> {:?} (id {id}, asked at {:?})",
            r.partition, r.original, r.target, r.at
        );
        let Some(d) = &r.described else {
            violations.push(Violation {
                kind: "undescribed",
                detail: format!("{what}: no coordinator described it"),
            });
            continue;
        };
        if &d.id != id {
            violations.push(Violation {
                kind: "forgotten",
                detail: format!("{what}: the latest reassignment is {:?}", d.id),
            });
            continue;
        }
        match d.state.as_str() {
            "completed" => {
                completed += 1;
                if d.replicas != r.target {
                    violations.push(Violation {
                        kind: "wrong replicas",
                        detail: format!("{what}: completed with replicas {:?}", d.replicas),
                    });
                }
            }
            "running" => running += 1,
            other => violations.push(Violation {
                kind: "not completed",
                detail: format!(
                    "{what}: ended {other:?} (partition {:?}, replicas {:?})",
                    d.partition_state, d.replicas
                ),
            }),
        }
    }
    Report {
        property: PROPERTY,
        summary: format!(
            "{} asked for: {completed} completed, {running} still running, {refused} refused or indeterminate",
            history.reassignments.len()
        ),
        violations,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::faults::history::{Reassignment, ReassignmentOutcome};

    fn asked(accepted: Result<&str, &str>, state: &str, replicas: &[i32]) -> Reassignment {
        Reassignment {
            partition: 1,
            original: vec![1, 2, 3],
            target: vec![2, 3, 1],
            at: Duration::from_secs(10),
            accepted: accepted.map(str::to_owned).map_err(str::to_owned),
            described: Some(ReassignmentOutcome {
                id: "r1".into(),
                state: state.into(),
                partition_state: "Complete".into(),
                replicas: replicas.to_vec(),
            }),
        }
    }

    #[test]
    fn completed_running_or_refused_pass() {
        let h = History {
            reassignments: vec![
                asked(Ok("r1"), "completed", &[2, 3, 1]),
                asked(Ok("r1"), "running", &[1, 2, 3]),
                asked(Err("unavailable"), "cancelled", &[1, 2, 3]),
            ],
            ..Default::default()
        };
        let r = check(&h);
        assert!(r.passed(), "{r}");
    }

    #[test]
    fn cancelled_forgotten_or_misplaced_fail() {
        let h = History {
            reassignments: vec![
                asked(Ok("r1"), "cancelled", &[1, 2, 3]),
                asked(Ok("r0"), "completed", &[2, 3, 1]),
                asked(Ok("r1"), "completed", &[1, 2, 3]),
            ],
            ..Default::default()
        };
        let r = check(&h);
        assert!(
            r.has("not completed") && r.has("forgotten") && r.has("wrong replicas"),
            "{r}"
        );
    }
}
