//! Which fault when: a pure function of the seed, the length of the fault
//! phase and the cluster's shape. At most one fault is active at a time:
//! each step injects one fault, holds it, heals it, and leaves a quiet gap
//! for the cluster to recover (ISR expansion, group rebalance) before the
//! next. Fault kinds come in shuffled rounds, so even a short schedule
//! tries each kind once before repeating one; a kind the cluster cannot
//! host (no tmpfs agent, no network namespace) is left out of the rounds.
//!
//! Must never do I/O or read a clock: the same inputs give the same plan.

use std::fmt;
use std::time::Duration;

use crate::faults::rng::Rng;

/// One fault against one process (indices into the cluster's lists), or
/// one administrative change made while the workload runs.
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
    /// SIGSTOP of coordinator `i` for longer than its lease TTL, so a
    /// paused active coordinator is replaced by the standby; healed by
    /// SIGCONT, after which it must not act as active (fencing). The run
    /// pauses the active coordinator instead of `i` when one is active (the
    /// schedule, being pure, cannot know which one is).
    PauseCoordinator(usize),
    /// SIGSTOP of etcd member `i` (a leader's pause forces an election);
    /// healed by SIGCONT.
    PauseEtcd(usize),
    /// Agent `i`'s data dir (a tmpfs of its own) filled up by a ballast
    /// file; healed by deleting the file.
    FillDisk(usize),
    /// Agent `i` (running in its own network namespace) cut off from every
    /// other process and the clients; healed by restoring the link.
    IsolateAgent(usize),
    /// Coordinator `i` (each runs in a network namespace of its own) cut
    /// off from etcd, the agents, the other coordinator and the clients for
    /// longer than its lease TTL, so a cut-off active coordinator stops
    /// acting at its renew deadline and the standby takes over; healed by
    /// restoring the link, after which it must not act as active (fencing).
    /// As for [`Fault::PauseCoordinator`], the run cuts off the active
    /// coordinator instead of `i` when one is active.
    IsolateCoordinator(usize),
    /// Partition `p` of the workload's topic reassigned to a rotation of
    /// its replicas, and the preferred leaders elected (the leader moves);
    /// "healed" by describing how the reassignment ended.
    Reassign(i32),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::KillAgent(i) => write!(f, "kill -9 agent {}", i + 1),
            Fault::KillCoordinator(i) => write!(f, "kill -9 coordinator {}", i + 1),
            Fault::KillEtcd(i) => write!(f, "kill -9 etcd member {i}"),
            Fault::PauseAgent(i) => write!(f, "SIGSTOP agent {}", i + 1),
            Fault::PauseCoordinator(i) => write!(f, "SIGSTOP coordinator {}", i + 1),
            Fault::PauseEtcd(i) => write!(f, "SIGSTOP etcd member {i}"),
            Fault::FillDisk(i) => write!(f, "full disk on agent {}", i + 1),
            Fault::IsolateAgent(i) => write!(f, "network partition isolating agent {}", i + 1),
            Fault::IsolateCoordinator(i) => {
                write!(f, "network partition isolating coordinator {}", i + 1)
            }
            Fault::Reassign(p) => write!(f, "reassign partition {p}"),
        }
    }
}

/// The kinds of [`Fault`], without their targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// [`Fault::KillAgent`].
    KillAgent,
    /// [`Fault::KillCoordinator`].
    KillCoordinator,
    /// [`Fault::KillEtcd`].
    KillEtcd,
    /// [`Fault::PauseAgent`].
    PauseAgent,
    /// [`Fault::PauseCoordinator`].
    PauseCoordinator,
    /// [`Fault::PauseEtcd`].
    PauseEtcd,
    /// [`Fault::FillDisk`].
    FillDisk,
    /// [`Fault::IsolateAgent`].
    IsolateAgent,
    /// [`Fault::IsolateCoordinator`].
    IsolateCoordinator,
    /// [`Fault::Reassign`].
    Reassign,
}

impl Fault {
    /// This fault's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Fault::KillAgent(_) => Kind::KillAgent,
            Fault::KillCoordinator(_) => Kind::KillCoordinator,
            Fault::KillEtcd(_) => Kind::KillEtcd,
            Fault::PauseAgent(_) => Kind::PauseAgent,
            Fault::PauseCoordinator(_) => Kind::PauseCoordinator,
            Fault::PauseEtcd(_) => Kind::PauseEtcd,
            Fault::FillDisk(_) => Kind::FillDisk,
            Fault::IsolateAgent(_) => Kind::IsolateAgent,
            Fault::IsolateCoordinator(_) => Kind::IsolateCoordinator,
            Fault::Reassign(_) => Kind::Reassign,
        }
    }
}

/// How many processes of each kind the cluster has, and which agents can
/// take the faults that need set-up at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Agents (brokers 1..=agents).
    pub agents: usize,
    /// Coordinators.
    pub coordinators: usize,
    /// etcd members.
    pub etcd: usize,
    /// The agent whose data dir is a tmpfs of its own (for
    /// [`Fault::FillDisk`]), if any.
    pub small_disk_agent: Option<usize>,
    /// The agent running in a network namespace of its own (for
    /// [`Fault::IsolateAgent`]), if any.
    pub isolated_agent: Option<usize>,
    /// Whether every coordinator runs in a network namespace of its own
    /// (for [`Fault::IsolateCoordinator`]).
    pub isolated_coordinators: bool,
    /// Partitions of the workload's topic (for [`Fault::Reassign`]; 0
    /// leaves reassignments out).
    pub partitions: i32,
}

impl Shape {
    /// The kinds this cluster can host, in [`Kind`] order.
    pub fn kinds(&self) -> Vec<Kind> {
        let mut kinds = Vec::new();
        if self.agents > 0 {
            kinds.extend([Kind::KillAgent, Kind::PauseAgent]);
        }
        if self.coordinators > 0 {
            kinds.extend([Kind::KillCoordinator, Kind::PauseCoordinator]);
        }
        if self.etcd > 0 {
            kinds.extend([Kind::KillEtcd, Kind::PauseEtcd]);
        }
        if self.small_disk_agent.is_some() {
            kinds.push(Kind::FillDisk);
        }
        if self.isolated_agent.is_some() {
            kinds.push(Kind::IsolateAgent);
        }
        if self.isolated_coordinators && self.coordinators > 0 {
            kinds.push(Kind::IsolateCoordinator);
        }
        if self.partitions > 0 {
            kinds.push(Kind::Reassign);
        }
        kinds.sort();
        kinds
    }
}

/// Timing bounds of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a killed process stays down.
    pub kill_hold: (Duration, Duration),
    /// How long a paused agent stays stopped (must exceed the broker
    /// session timeout).
    pub pause_hold: (Duration, Duration),
    /// How long a paused coordinator stays stopped (must exceed its lease
    /// TTL, so the standby takes over).
    pub coordinator_pause_hold: (Duration, Duration),
    /// How long a paused etcd member stays stopped.
    pub etcd_pause_hold: (Duration, Duration),
    /// How long a disk stays full (must exceed the replica lag limit, so
    /// the agent leaves the ISR).
    pub disk_hold: (Duration, Duration),
    /// How long an agent stays cut off (must exceed the broker session
    /// timeout, so it is fenced).
    pub isolate_hold: (Duration, Duration),
    /// How long a coordinator stays cut off (must exceed its lease TTL by
    /// enough for the standby to take over and be seen active before the
    /// heal).
    pub coordinator_isolate_hold: (Duration, Duration),
    /// How long a reassignment runs before it is described.
    pub reassign_hold: (Duration, Duration),
    /// Quiet time after a heal before the next fault.
    pub gap: (Duration, Duration),
}

impl Timing {
    /// For the test cluster's timings (broker session 3 s, coordinator
    /// lease 2 s, replica lag limit 2 s).
    pub const DEFAULT: Timing = Timing {
        kill_hold: (Duration::from_secs(2), Duration::from_secs(5)),
        pause_hold: (Duration::from_millis(4500), Duration::from_secs(6)),
        coordinator_pause_hold: (Duration::from_secs(3), Duration::from_secs(5)),
        etcd_pause_hold: (Duration::from_secs(2), Duration::from_secs(5)),
        disk_hold: (Duration::from_secs(4), Duration::from_secs(6)),
        isolate_hold: (Duration::from_millis(4500), Duration::from_secs(6)),
        coordinator_isolate_hold: (Duration::from_secs(4), Duration::from_secs(5)),
        reassign_hold: (Duration::from_secs(2), Duration::from_secs(4)),
        gap: (Duration::from_secs(4), Duration::from_secs(7)),
    };

    fn hold(&self, kind: Kind) -> (Duration, Duration) {
        match kind {
            Kind::KillAgent | Kind::KillCoordinator | Kind::KillEtcd => self.kill_hold,
            Kind::PauseAgent => self.pause_hold,
            Kind::PauseCoordinator => self.coordinator_pause_hold,
            Kind::PauseEtcd => self.etcd_pause_hold,
            Kind::FillDisk => self.disk_hold,
            Kind::IsolateAgent => self.isolate_hold,
            Kind::IsolateCoordinator => self.coordinator_isolate_hold,
            Kind::Reassign => self.reassign_hold,
        }
    }
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
    let kinds = shape.kinds();
    let mut steps = Vec::new();
    if kinds.is_empty() {
        return steps;
    }
    let mut round: Vec<Kind> = Vec::new();
    let mut t = rng.duration_between(Duration::from_secs(1), Duration::from_secs(3));
    loop {
        if round.is_empty() {
            round = kinds.clone();
            rng.shuffle(&mut round);
        }
        let Some(kind) = round.pop() else {
            return steps;
        };
        let pick = |rng: &mut Rng, n: usize| rng.below(n as u64) as usize;
        let fault = match kind {
            Kind::KillAgent => Fault::KillAgent(pick(&mut rng, shape.agents)),
            Kind::KillCoordinator => Fault::KillCoordinator(pick(&mut rng, shape.coordinators)),
            Kind::KillEtcd => Fault::KillEtcd(pick(&mut rng, shape.etcd)),
            Kind::PauseAgent => Fault::PauseAgent(pick(&mut rng, shape.agents)),
            Kind::PauseCoordinator => Fault::PauseCoordinator(pick(&mut rng, shape.coordinators)),
            Kind::PauseEtcd => Fault::PauseEtcd(pick(&mut rng, shape.etcd)),
            Kind::FillDisk => Fault::FillDisk(shape.small_disk_agent.unwrap_or(0)),
            Kind::IsolateAgent => Fault::IsolateAgent(shape.isolated_agent.unwrap_or(0)),
            Kind::IsolateCoordinator => {
                Fault::IsolateCoordinator(pick(&mut rng, shape.coordinators))
            }
            Kind::Reassign => Fault::Reassign(rng.below(shape.partitions as u64) as i32),
        };
        let (lo, hi) = timing.hold(kind);
        let hold = rng.duration_between(lo, hi);
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
        small_disk_agent: Some(0),
        isolated_agent: Some(2),
        isolated_coordinators: true,
        partitions: 4,
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
                match s.fault {
                    Fault::PauseAgent(_) | Fault::IsolateAgent(_) => {
                        assert!(s.hold > Duration::from_secs(3), "longer than the session")
                    }
                    Fault::PauseCoordinator(_) => {
                        assert!(s.hold > Duration::from_secs(2), "longer than the lease")
                    }
                    Fault::IsolateCoordinator(i) => {
                        assert!(i < 2, "a coordinator");
                        assert!(s.hold > Duration::from_secs(3), "well past the lease")
                    }
                    Fault::FillDisk(i) => {
                        assert_eq!(i, 0);
                        assert!(s.hold > Duration::from_secs(2), "longer than the lag limit")
                    }
                    Fault::Reassign(p) => assert!((0..4).contains(&p)),
                    _ => {}
                }
                if let Fault::IsolateAgent(i) = s.fault {
                    assert_eq!(i, 2, "only the namespaced agent");
                }
            }
        }
    }

    #[test]
    fn the_first_round_tries_every_kind() {
        for seed in [1, 5, 99] {
            let steps = plan(seed, Duration::from_secs(600), SHAPE, Timing::DEFAULT);
            let kinds = SHAPE.kinds();
            assert_eq!(kinds.len(), 10);
            let mut first: Vec<Kind> = steps[..kinds.len()]
                .iter()
                .map(|s| s.fault.kind())
                .collect();
            first.sort();
            assert_eq!(first, kinds, "seed {seed}");
        }
    }

    #[test]
    fn kinds_the_cluster_cannot_host_are_left_out() {
        let bare = Shape {
            small_disk_agent: None,
            isolated_agent: None,
            isolated_coordinators: false,
            partitions: 0,
            ..SHAPE
        };
        assert_eq!(bare.kinds().len(), 6);
        for s in plan(3, Duration::from_secs(600), bare, Timing::DEFAULT) {
            assert!(
                !matches!(
                    s.fault,
                    Fault::FillDisk(_)
                        | Fault::IsolateAgent(_)
                        | Fault::IsolateCoordinator(_)
                        | Fault::Reassign(_)
                ),
                "{s:?}"
            );
        }
    }

    #[test]
    fn the_default_ci_phase_tries_every_kind() {
        // scripts/test runs seed 1 with the default phase: it must reach
        // every kind once.
        let steps = plan(
            1,
            crate::faults::rng::DEFAULT_DURATION,
            SHAPE,
            Timing::DEFAULT,
        );
        let mut kinds: Vec<Kind> = steps.iter().map(|s| s.fault.kind()).collect();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds, SHAPE.kinds(), "{steps:?}");
    }
}
