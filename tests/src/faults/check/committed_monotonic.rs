//! Property: a group's committed offsets never move backwards, and a
//! commit the coordinator acknowledged is never forgotten.
//!
//! Three views of the same sequence:
//! * `backwards`: the acknowledged commits of a partition, in the order
//!   the acknowledgements arrived (across members: a partition changes
//!   owner only after the old owner's revoke-time commit was acknowledged,
//!   and a fenced member's commits are refused), never decrease;
//! * `coordinator backwards`: the committed offsets the group coordinator
//!   described, sampled over the run (across coordinator moves), never
//!   decrease;
//! * `forgotten`: a sample taken after a commit was acknowledged shows at
//!   least that offset.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::faults::check::{Report, Violation};
use crate::faults::history::{Commit, History};

/// The property's name.
pub const PROPERTY: &str = "committed offsets never move backwards";

/// Checks [`PROPERTY`].
pub fn check(history: &History) -> Report {
    let mut violations = Vec::new();
    let mut commits: Vec<&Commit> = history.commits.iter().collect();
    commits.sort_by_key(|c| c.at); // stable: ties keep recording order
    let mut last: BTreeMap<i32, &Commit> = BTreeMap::new();
    for c in &commits {
        if let Some(prev) = last.get(&c.partition)
            && c.offset < prev.offset
        {
            violations.push(Violation {
                kind: "backwards",
                detail: format!(
                    "partition {}: {} (epoch {}) committed {} at {:?} after {} (epoch {}) committed {} at {:?}",
                    c.partition,
                    c.member,
                    c.member_epoch,
                    c.offset,
                    c.at,
                    prev.member,
                    prev.member_epoch,
                    prev.offset,
                    prev.at
                ),
            });
        }
        last.insert(c.partition, c);
    }

    let mut sampled: BTreeMap<i32, (i64, Duration)> = BTreeMap::new();
    let mut next_commit = 0usize;
    let mut acked: BTreeMap<i32, &Commit> = BTreeMap::new();
    for sample in &history.offset_samples {
        while let Some(c) = commits.get(next_commit).filter(|c| c.at < sample.at) {
            let best = acked.entry(c.partition).or_insert(c);
            if c.offset > best.offset {
                *best = c;
            }
            next_commit += 1;
        }
        for (partition, offset) in &sample.offsets {
            if let Some((prev, at)) = sampled.get(partition)
                && offset < prev
            {
                violations.push(Violation {
                    kind: "coordinator backwards",
                    detail: format!(
                        "partition {partition}: the coordinator described {offset} at {:?} after {prev} at {at:?}",
                        sample.at
                    ),
                });
            }
            sampled.insert(*partition, (*offset, sample.at));
        }
        for (partition, c) in &acked {
            let shown = sample.offsets.get(partition).copied();
            if shown.is_none_or(|o| o < c.offset) {
                violations.push(Violation {
                    kind: "forgotten",
                    detail: format!(
                        "partition {partition}: committed {} acknowledged to {} at {:?}, but the coordinator described {} at {:?}",
                        c.offset,
                        c.member,
                        c.at,
                        shown.map_or("nothing".to_owned(), |o| o.to_string()),
                        sample.at
                    ),
                });
            }
        }
    }
    Report {
        property: PROPERTY,
        summary: format!(
            "{} acknowledged commits, {} coordinator samples",
            history.commits.len(),
            history.offset_samples.len()
        ),
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::history::OffsetSample;

    fn commit(member: &str, partition: i32, offset: i64, at_ms: u64) -> Commit {
        Commit {
            member: member.to_owned(),
            member_epoch: 1,
            partition,
            offset,
            at: Duration::from_millis(at_ms),
        }
    }

    fn sample(at_ms: u64, offsets: &[(i32, i64)]) -> OffsetSample {
        OffsetSample {
            at: Duration::from_millis(at_ms),
            offsets: offsets.iter().copied().collect(),
        }
    }

    #[test]
    fn rising_commits_and_samples_pass() {
        let h = History {
            commits: vec![
                commit("c0", 0, 5, 10),
                commit("c1", 1, 3, 15),
                commit("c1", 0, 9, 30),
            ],
            offset_samples: vec![
                sample(12, &[(0, 5)]),
                sample(20, &[(0, 5), (1, 3)]),
                sample(40, &[(0, 9), (1, 3)]),
            ],
            ..Default::default()
        };
        let r = check(&h);
        assert!(r.passed(), "{r}");
    }

    #[test]
    fn a_commit_below_the_previous_one_fails() {
        let h = History {
            commits: vec![commit("c0", 0, 5, 10), commit("c1", 0, 4, 20)],
            ..Default::default()
        };
        assert!(check(&h).has("backwards"));
    }

    #[test]
    fn a_sample_below_an_earlier_one_or_an_acknowledged_commit_fails() {
        let h = History {
            commits: vec![commit("c0", 0, 5, 10)],
            offset_samples: vec![sample(5, &[(0, 7)]), sample(20, &[(0, 4)])],
            ..Default::default()
        };
        let r = check(&h);
        assert!(r.has("coordinator backwards") && r.has("forgotten"), "{r}");
    }
}
