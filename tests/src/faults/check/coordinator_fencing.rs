//! Property: at most one coordinator acts as active per epoch, a
//! deposed coordinator (paused past its lease, killed, cut off) never
//! claims to be active again at its old epoch once a successor's higher
//! epoch was seen, and an active coordinator cut off from the network is
//! replaced while it is cut off.
//!
//! Decided from every coordinator's `GetClusterInfo` answers, sampled over
//! the whole run on one clock. A coordinator answers `active` only while
//! its lease is fresh (it stops acting at its renew deadline, before the
//! lease can expire), so after SIGCONT a paused one must answer standby.
//!
//! Kinds: `two active` (two coordinators claimed the same epoch), `stale
//! active` (a claim at epoch `e` in an answer to a request sent after an
//! answer claiming a higher epoch had arrived), `not replaced` (no other
//! coordinator answered as active at a higher epoch between the cut of an
//! active coordinator and the heal: it kept its lease or nobody took over;
//! the cut lasts well past the lease TTL, see `schedule::Timing`).

use std::collections::BTreeMap;

use crate::faults::check::{Report, Violation};
use crate::faults::history::{CoordinatorSample, History};

/// The property's name.
pub const PROPERTY: &str =
    "one active coordinator per epoch, no deposed one acts, a cut-off one is replaced";

/// Checks [`PROPERTY`].
pub fn check(history: &History) -> Report {
    let mut violations = Vec::new();
    let claims: Vec<&CoordinatorSample> = history
        .coordinator_samples
        .iter()
        .filter(|s| s.active)
        .collect();
    let mut owner: BTreeMap<i64, &CoordinatorSample> = BTreeMap::new();
    for c in &claims {
        match owner.get(&c.epoch) {
            Some(first) if first.coordinator != c.coordinator => violations.push(Violation {
                kind: "two active",
                detail: format!(
                    "epoch {}: coordinator {} claimed it at {:?} and coordinator {} at {:?}",
                    c.epoch,
                    first.coordinator + 1,
                    first.answered,
                    c.coordinator + 1,
                    c.answered
                ),
            }),
            Some(_) => {}
            None => {
                owner.insert(c.epoch, c);
            }
        }
    }
    let mut by_answer = claims.clone();
    by_answer.sort_by_key(|c| c.answered);
    for c in &claims {
        // The highest epoch claimed in an answer that arrived before this
        // request was sent.
        let newer = by_answer
            .iter()
            .take_while(|o| o.answered < c.sent)
            .filter(|o| o.epoch > c.epoch)
            .max_by_key(|o| o.epoch);
        if let Some(o) = newer {
            violations.push(Violation {
                kind: "stale active",
                detail: format!(
                    "coordinator {} claimed epoch {} (asked at {:?}) after coordinator {} had claimed epoch {} at {:?}",
                    c.coordinator + 1,
                    c.epoch,
                    c.sent,
                    o.coordinator + 1,
                    o.epoch,
                    o.answered
                ),
            });
        }
    }
    for cut in &history.isolations {
        let successor = claims.iter().find(|c| {
            c.coordinator != cut.coordinator
                && c.epoch > cut.epoch
                && c.answered > cut.start
                && c.answered <= cut.end
        });
        if successor.is_none() {
            violations.push(Violation {
                kind: "not replaced",
                detail: format!(
                    "coordinator {} was active at epoch {} when cut off at {:?}; no other coordinator answered as active at a higher epoch before the heal at {:?}",
                    cut.coordinator + 1,
                    cut.epoch,
                    cut.start,
                    cut.end
                ),
            });
        }
    }
    Report {
        property: PROPERTY,
        summary: format!(
            "{} coordinator samples, {} active claims, {} epochs, {} active coordinators cut off",
            history.coordinator_samples.len(),
            claims.len(),
            owner.len(),
            history.isolations.len()
        ),
        violations,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::faults::history::CoordinatorIsolation;

    fn sample(coordinator: usize, sent_ms: u64, active: bool, epoch: i64) -> CoordinatorSample {
        CoordinatorSample {
            coordinator,
            sent: Duration::from_millis(sent_ms),
            answered: Duration::from_millis(sent_ms + 5),
            active,
            epoch,
        }
    }

    #[test]
    fn a_clean_takeover_passes() {
        let h = History {
            coordinator_samples: vec![
                sample(0, 0, true, 1),
                sample(1, 0, false, 0),
                // 0 paused; 1 takes over; 0 continues as a standby.
                sample(1, 3000, true, 2),
                sample(0, 5000, false, 0),
                sample(1, 5000, true, 2),
            ],
            ..Default::default()
        };
        let r = check(&h);
        assert!(r.passed(), "{r}");
    }

    #[test]
    fn a_deposed_coordinator_claiming_its_old_epoch_fails() {
        let h = History {
            coordinator_samples: vec![
                sample(0, 0, true, 1),
                sample(1, 3000, true, 2),
                sample(0, 5000, true, 1),
            ],
            ..Default::default()
        };
        assert!(check(&h).has("stale active"));
    }

    fn cut(coordinator: usize, epoch: i64, start_ms: u64, end_ms: u64) -> CoordinatorIsolation {
        CoordinatorIsolation {
            coordinator,
            epoch,
            start: Duration::from_millis(start_ms),
            end: Duration::from_millis(end_ms),
        }
    }

    #[test]
    fn a_cut_off_coordinator_replaced_during_the_cut_passes() {
        let h = History {
            coordinator_samples: vec![
                sample(0, 0, true, 1),
                sample(1, 0, false, 0),
                // 0 cut off at 1000 (it does not answer); 1 takes over.
                sample(1, 3500, true, 2),
                // Healed at 5000: 0 answers as a standby.
                sample(0, 5500, false, 0),
            ],
            isolations: vec![cut(0, 1, 1000, 5000)],
            ..Default::default()
        };
        let r = check(&h);
        assert!(r.passed(), "{r}");
    }

    #[test]
    fn a_cut_off_coordinator_not_replaced_before_the_heal_fails() {
        let h = History {
            coordinator_samples: vec![
                sample(0, 0, true, 1),
                sample(1, 2000, false, 0),
                // The takeover is seen only after the heal.
                sample(1, 5500, true, 2),
            ],
            isolations: vec![cut(0, 1, 1000, 5000)],
            ..Default::default()
        };
        assert!(check(&h).has("not replaced"));
        // Still active at its old epoch after the heal: nobody took over.
        let h = History {
            coordinator_samples: vec![sample(0, 0, true, 1), sample(0, 5500, true, 1)],
            isolations: vec![cut(0, 1, 1000, 5000)],
            ..Default::default()
        };
        let r = check(&h);
        assert!(r.has("not replaced") && !r.has("stale active"), "{r}");
    }

    #[test]
    fn two_coordinators_at_one_epoch_fail() {
        let h = History {
            coordinator_samples: vec![sample(0, 0, true, 3), sample(1, 10, true, 3)],
            ..Default::default()
        };
        assert!(check(&h).has("two active"));
    }
}
