//! Property: no two different records were acknowledged at the same
//! (partition, offset). Two acknowledgements naming one offset with
//! different values mean two leaders accepted writes for the same log
//! position (the client-visible form of "two leaders in one leader
//! epoch"): at most one of them can survive.

use std::collections::BTreeMap;

use crate::faults::check::{Report, Violation};
use crate::faults::history::History;

/// The property's name.
pub const PROPERTY: &str = "single writer per offset";

/// Checks [`PROPERTY`].
pub fn check(history: &History) -> Report {
    let mut by_position: BTreeMap<(i32, i64), Vec<&crate::faults::history::Ack>> = BTreeMap::new();
    for ack in &history.acks {
        by_position
            .entry((ack.partition, ack.offset))
            .or_default()
            .push(ack);
    }
    let mut violations = Vec::new();
    for ((partition, offset), acks) in &by_position {
        let first = acks[0];
        for other in &acks[1..] {
            if other.value != first.value {
                violations.push(Violation {
                    kind: "two writers",
                    detail: format!(
                        "partition {partition} offset {offset}: {:?} acked at {:?} and {:?} acked at {:?}",
                        first.value, first.at, other.value, other.at
                    ),
                });
            }
        }
    }
    Report {
        property: PROPERTY,
        summary: format!("{} acknowledged positions", by_position.len()),
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::check::acked_present::tests::ack;

    #[test]
    fn distinct_offsets_pass() {
        let h = History {
            acks: vec![ack(0, 0, 0, 0), ack(0, 1, 0, 1), ack(1, 0, 1, 0)],
            ..Default::default()
        };
        assert!(check(&h).passed());
    }

    #[test]
    fn two_values_at_one_offset_fail() {
        let h = History {
            acks: vec![ack(0, 0, 0, 5), ack(1, 0, 0, 5)],
            ..Default::default()
        };
        let r = check(&h);
        assert!(r.has("two writers"), "{r}");
    }
}
