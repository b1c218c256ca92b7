//! Property: within `bound` after the last fault healed (every process
//! running again), every partition of every topic has a leader and its
//! full replica set in the ISR, and the group is `Stable` with all its
//! members stable and every workload partition assigned.

use std::time::Duration;

use crate::faults::check::{Report, Violation};
use crate::faults::history::{HealthSample, History};

/// The property's name.
pub const PROPERTY: &str = "full ISR and a stable group after healing";

/// What is still unhealthy in `sample` (empty: healthy).
pub fn problems(sample: &HealthSample, history: &History) -> Vec<String> {
    let mut out = Vec::new();
    if sample.partitions.is_empty() {
        out.push("no partitions described".to_owned());
    }
    if !sample.partitions.iter().any(|p| p.topic == history.topic) {
        out.push(format!("topic {} not described", history.topic));
    }
    for p in &sample.partitions {
        let mut replicas = p.replicas.clone();
        replicas.sort();
        let mut isr = p.isr.clone();
        isr.sort();
        if p.leader < 0 {
            out.push(format!("{}-{} offline", p.topic, p.partition));
        } else if isr != replicas {
            out.push(format!(
                "{}-{} ISR {:?} of replicas {:?}",
                p.topic, p.partition, p.isr, p.replicas
            ));
        }
        if p.topic == history.topic && p.replicas.len() != history.replication_factor {
            out.push(format!(
                "{}-{} has {} replicas, not {}",
                p.topic,
                p.partition,
                p.replicas.len(),
                history.replication_factor
            ));
        }
    }
    if sample.group_state != "Stable" {
        out.push(format!("group state {:?}", sample.group_state));
    }
    if sample.group_members != history.group_members
        || sample.stable_members != history.group_members
    {
        out.push(format!(
            "group has {} members ({} stable), expected {}",
            sample.group_members, sample.stable_members, history.group_members
        ));
    }
    if sample.assigned_partitions != history.partitions as usize {
        out.push(format!(
            "{} of {} partitions assigned",
            sample.assigned_partitions, history.partitions
        ));
    }
    out
}

/// Checks [`PROPERTY`] with the given bound.
pub fn check(history: &History, bound: Duration) -> Report {
    let Some(healed_at) = history.healed_at else {
        return Report {
            property: PROPERTY,
            violations: vec![Violation {
                kind: "never healed",
                detail: "the run did not record when the faults healed".to_owned(),
            }],
            summary: "no heal time".to_owned(),
        };
    };
    let after: Vec<&HealthSample> = history
        .health
        .iter()
        .filter(|s| s.at >= healed_at)
        .collect();
    let first_healthy = after
        .iter()
        .find(|s| problems(s, history).is_empty())
        .map(|s| s.at - healed_at);
    let violations = match first_healthy {
        Some(t) if t <= bound => Vec::new(),
        Some(t) => vec![Violation {
            kind: "slow",
            detail: format!("healthy only {t:?} after healing, bound {bound:?}"),
        }],
        None => vec![Violation {
            kind: "not healed",
            detail: format!(
                "not healthy in {} looks over {:?} after healing; last look: {}",
                after.len(),
                after.last().map(|s| s.at - healed_at).unwrap_or_default(),
                after
                    .last()
                    .map(|s| problems(s, history).join("; "))
                    .unwrap_or_else(|| "none taken".to_owned())
            ),
        }],
    };
    Report {
        property: PROPERTY,
        summary: match first_healthy {
            Some(t) => format!("healthy {t:?} after healing (bound {bound:?})"),
            None => format!("never healthy (bound {bound:?})"),
        },
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::history::PartitionHealth;

    fn history(health: Vec<HealthSample>) -> History {
        History {
            topic: "t".into(),
            partitions: 2,
            replication_factor: 3,
            group_members: 2,
            healed_at: Some(Duration::from_secs(10)),
            health,
            ..Default::default()
        }
    }

    fn sample(at_s: u64, isr: &[i32], state: &str) -> HealthSample {
        HealthSample {
            at: Duration::from_secs(at_s),
            partitions: (0..2)
                .map(|p| PartitionHealth {
                    topic: "t".into(),
                    partition: p,
                    replicas: vec![1, 2, 3],
                    isr: isr.to_vec(),
                    leader: 1,
                })
                .collect(),
            group_state: state.into(),
            group_members: 2,
            stable_members: 2,
            assigned_partitions: 2,
        }
    }

    #[test]
    fn healthy_within_the_bound_passes() {
        let h = history(vec![
            sample(11, &[1, 2], "Reconciling"),
            sample(20, &[3, 1, 2], "Stable"),
        ]);
        let r = check(&h, Duration::from_secs(60));
        assert!(r.passed(), "{r}");
    }

    #[test]
    fn a_shrunk_isr_or_a_slow_recovery_fails() {
        let h = history(vec![sample(11, &[1, 2], "Stable")]);
        assert!(check(&h, Duration::from_secs(60)).has("not healed"));
        let h = history(vec![sample(80, &[1, 2, 3], "Stable")]);
        assert!(check(&h, Duration::from_secs(60)).has("slow"));
        let h = history(vec![sample(12, &[1, 2, 3], "Reconciling")]);
        assert!(check(&h, Duration::from_secs(60)).has("not healed"));
    }
}
