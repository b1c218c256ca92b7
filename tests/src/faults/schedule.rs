//! Which fault when: a pure function of the seed, the length of the fault
//! phase and the cluster's shape. At most one fault is active at a time:
//! each step injects one fault, holds it, heals it, and leaves a quiet gap
//! for the cluster to recover (ISR expansion, group rebalance) before the
//! next. Fault kinds come in shuffled rounds, so even a short schedule
//! tries each kind once before repeating one.
//!
//! Must never do I/O or read a clock: the same inputs give the same plan.

use std::fmt;
use std::time::Duration;

use crate::faults::rng::Rng;

/// One fault against one process (indices into the cluster's lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `kill -9` of agent `i`; healed by starting it again on its data dir.
    KillAgent(usize),
    /// `kill -9` of coordinator `i`; healed by starting it again.
    KillCoordinator(usize),
    /// `kill -9` of etcd member `i`; healed by restarting it on its data dir.
    KillEtcd(usize),
    /// SIGSTOP of agent `i` for longer than the broker session timeout (a
    /// stand-in for a long GC pause); healed by SIGCONT.
    PauseAgent(usize),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::KillAgent(i) => write!(f, "kill -9 agent {}", i + 1),
            Fault::KillCoordinator(i) => write!(f, "kill -9 coordinator {}", i + 1),
            Fault::KillEtcd(i) => write!(f, "kill -9 etcd member {i}"),
            Fault::PauseAgent(i) => write!(f, "SIGSTOP agent {}", i + 1),
        }
    }
}

/// How many processes of each kind the cluster has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Agents (brokers 1..=agents).
    pub agents: usize,
    /// Coordinators.
    pub coordinators: usize,
    /// etcd members.
    pub etcd: usize,
}

/// Timing bounds of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a killed process stays down.
    pub kill_hold: (Duration, Duration),
    /// How long a paused agent stays stopped (must exceed the broker
    /// session timeout).
    pub pause_hold: (Duration, Duration),
    /// Quiet time after a heal before the next fault.
    pub gap: (Duration, Duration),
}

impl Timing {
    /// For the test cluster's timings (broker session 3 s).
    pub const DEFAULT: Timing = Timing {
        kill_hold: (Duration::from_secs(2), Duration::from_secs(6)),
        pause_hold: (Duration::from_millis(4500), Duration::from_secs(7)),
        gap: (Duration::from_secs(4), Duration::from_secs(8)),
    };
}

/// One step of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// When to inject, from the start of the fault phase.
    pub at: Duration,
    /// What.
    pub fault: Fault,
    /// How long before healing it.
    pub hold: Duration,
}

/// The plan for a fault phase of `length`: steps in time order, each
/// healed (`at + hold`) before `length` and before the next one starts.
pub fn plan(seed: u64, length: Duration, shape: Shape, timing: Timing) -> Vec<Step> {
    let mut rng = Rng::new(seed);
    let mut kinds: Vec<u8> = Vec::new();
    if shape.agents > 0 {
        kinds.extend([0, 3]);
    }
    if shape.coordinators > 0 {
        kinds.push(1);
    }
    if shape.etcd > 0 {
        kinds.push(2);
    }
    let mut steps = Vec::new();
    if kinds.is_empty() {
        return steps;
    }
    let mut round: Vec<u8> = Vec::new();
    let mut t = rng.duration_between(Duration::from_secs(1), Duration::from_secs(3));
    loop {
        if round.is_empty() {
            round = kinds.clone();
            rng.shuffle(&mut round);
        }
        let kind = round.pop().unwrap_or(0);
        let (fault, hold) = match kind {
            0 => (
                Fault::KillAgent(rng.below(shape.agents as u64) as usize),
                rng.duration_between(timing.kill_hold.0, timing.kill_hold.1),
            ),
            1 => (
                Fault::KillCoordinator(rng.below(shape.coordinators as u64) as usize),
                rng.duration_between(timing.kill_hold.0, timing.kill_hold.1),
            ),
            2 => (
                Fault::KillEtcd(rng.below(shape.etcd as u64) as usize),
                rng.duration_between(timing.kill_hold.0, timing.kill_hold.1),
            ),
            _ => (
                Fault::PauseAgent(rng.below(shape.agents as u64) as usize),
                rng.duration_between(timing.pause_hold.0, timing.pause_hold.1),
            ),
        };
        if t + hold > length {
            return steps;
        }
        steps.push(Step { at: t, fault, hold });
        t += hold + rng.duration_between(timing.gap.0, timing.gap.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape {
        agents: 3,
        coordinators: 2,
        etcd: 3,
    };

    #[test]
    fn a_seed_replays_the_same_plan() {
        let a = plan(42, Duration::from_secs(120), SHAPE, Timing::DEFAULT);
        let b = plan(42, Duration::from_secs(120), SHAPE, Timing::DEFAULT);
        assert_eq!(a, b);
        assert_ne!(
            a,
            plan(43, Duration::from_secs(120), SHAPE, Timing::DEFAULT)
        );
    }

    #[test]
    fn faults_never_overlap_and_heal_within_the_phase() {
        for seed in 0..200 {
            let length = Duration::from_secs(60);
            let steps = plan(seed, length, SHAPE, Timing::DEFAULT);
            assert!(!steps.is_empty());
            for w in steps.windows(2) {
                assert!(w[0].at + w[0].hold < w[1].at, "{seed}: {w:?}");
            }
            for s in &steps {
                assert!(s.at + s.hold <= length);
                if let Fault::PauseAgent(_) = s.fault {
                    assert!(s.hold > Duration::from_secs(3), "longer than the session");
                }
            }
        }
    }

    #[test]
    fn the_first_round_tries_every_kind() {
        let steps = plan(5, Duration::from_secs(600), SHAPE, Timing::DEFAULT);
        let first: Vec<u8> = steps[..4]
            .iter()
            .map(|s| match s.fault {
                Fault::KillAgent(_) => 0,
                Fault::KillCoordinator(_) => 1,
                Fault::KillEtcd(_) => 2,
                Fault::PauseAgent(_) => 3,
            })
            .collect();
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2, 3], "{first:?}");
    }
}
