//! The cluster the suite injects faults into: 3 etcd members, 2
//! coordinators and 3 agents on loopback, each coordinator and agent on a
//! fixed free port so that a restarted process comes back at the address
//! its peers and clients already know. Data lives in temp dirs that survive
//! a kill, so a restarted agent recovers its log and a restarted etcd
//! member rejoins with its data.
//!
//! Owns every process it starts (they die with it) and the record of which
//! one is down or paused. Must never leave two faults active at once: the
//! schedule heals each before the next, and [`FaultCluster::heal_all`]
//! brings everything back at the end.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ballast_proto::v1::{self as pb};

use crate::cluster::{FAST, find_active, on_active, wait_live_brokers};
use crate::etcd::EtcdCluster;
use crate::faults::history::PartitionHealth;
use crate::faults::schedule::{Fault, Shape};
use crate::process::{BallastProcess, eventually, free_port};

/// How long a process may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Fresh-port attempts when a first start fails (the port was taken).
const START_ATTEMPTS: usize = 3;

/// Agent flags: fast group heartbeats, and followers leave the ISR after
/// 2 s of lag so a fault shows up as ISR changes within a test.
const AGENT_FLAGS: &[&str] = &[
    "--group-heartbeat-interval",
    "200ms",
    "--replica-lag-time-max",
    "2s",
];

#[derive(Debug)]
struct Server {
    process: BallastProcess,
    down: bool,
    paused: bool,
}

/// The running cluster.
#[derive(Debug)]
pub struct FaultCluster {
    // Dropped in this order: agents, coordinators, etcd, then the data.
    agents: Vec<Server>,
    coordinators: Vec<Server>,
    etcd: EtcdCluster,
    coordinator_addrs: Vec<String>,
    agent_addrs: Vec<String>,
    _data: tempfile::TempDir,
}

/// Starts `ballast <args(address)>` on a free port, trying another port
/// if the first start fails.
fn start_on_free_port(args: impl Fn(&str) -> Vec<String>) -> anyhow::Result<BallastProcess> {
    let mut last = None;
    for _ in 0..START_ATTEMPTS {
        let address = format!("127.0.0.1:{}", free_port());
        let args = args(&address);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        match BallastProcess::start(&refs, START_TIMEOUT) {
            Ok(p) => return Ok(p),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no start attempt")))
}

impl FaultCluster {
    /// The shape [`FaultCluster::start`] builds.
    pub const SHAPE: Shape = Shape {
        agents: 3,
        coordinators: 2,
        etcd: 3,
    };

    /// Starts etcd, the coordinators (waiting for an active one) and the
    /// agents (waiting until all are live). Call it from the test's own
    /// task: etcd members die with the thread that started them.
    pub async fn start(cluster_id: &str, wait: Duration) -> anyhow::Result<FaultCluster> {
        let shape = Self::SHAPE;
        let etcd = EtcdCluster::start(shape.etcd).context("etcd cluster")?;
        let endpoints = etcd.endpoints().join(",");
        let mut coordinators = Vec::new();
        for _ in 0..shape.coordinators {
            let process = start_on_free_port(|address| {
                let mut args: Vec<String> = [
                    "coordinator",
                    "--etcd",
                    &endpoints,
                    "--listen",
                    address,
                    "--cluster-id",
                    cluster_id,
                ]
                .iter()
                .map(|s| (*s).to_owned())
                .collect();
                args.extend(FAST.iter().map(|s| (*s).to_owned()));
                args
            })
            .context("coordinator")?;
            coordinators.push(Server {
                process,
                down: false,
                paused: false,
            });
        }
        let coordinator_addrs: Vec<String> = coordinators
            .iter()
            .map(|c| c.process.address().to_owned())
            .collect();
        eventually("an active coordinator", wait, || {
            find_active(&coordinator_addrs)
        })
        .await;
        let data = tempfile::Builder::new()
            .prefix("ballast-faults-")
            .tempdir()
            .context("data dir")?;
        let joined = coordinator_addrs.join(",");
        let mut agents = Vec::new();
        for id in 1..=shape.agents {
            let dir: PathBuf = data.path().join(format!("b{id}"));
            let process = start_on_free_port(|address| {
                let mut args: Vec<String> = vec![
                    "agent".into(),
                    "--coordinator".into(),
                    joined.clone(),
                    "--broker-id".into(),
                    id.to_string(),
                    "--rack".into(),
                    format!("rack-{id}"),
                    "--data-dir".into(),
                    dir.to_string_lossy().into_owned(),
                    "--listen".into(),
                    address.to_owned(),
                ];
                args.extend(AGENT_FLAGS.iter().map(|s| (*s).to_owned()));
                args
            })
            .with_context(|| format!("agent {id}"))?;
            agents.push(Server {
                process,
                down: false,
                paused: false,
            });
        }
        let agent_addrs = agents
            .iter()
            .map(|a| a.process.address().to_owned())
            .collect();
        wait_live_brokers(&coordinator_addrs, shape.agents as u32, wait).await;
        Ok(FaultCluster {
            agents,
            coordinators,
            etcd,
            coordinator_addrs,
            agent_addrs,
            _data: data,
        })
    }

    /// The coordinators' addresses (stable across restarts).
    pub fn coordinators(&self) -> &[String] {
        &self.coordinator_addrs
    }

    /// The agents' addresses (stable across restarts), for bootstrap.
    pub fn agents(&self) -> &[String] {
        &self.agent_addrs
    }

    /// Injects `fault`. A blocking call; run it on the test's own task.
    pub fn inject(&mut self, fault: Fault) -> anyhow::Result<()> {
        match fault {
            Fault::KillAgent(i) => kill(self.agents.get_mut(i).context("no such agent")?),
            Fault::KillCoordinator(i) => kill(
                self.coordinators
                    .get_mut(i)
                    .context("no such coordinator")?,
            ),
            Fault::KillEtcd(i) => {
                anyhow::ensure!(i < self.etcd.size(), "no such etcd member");
                self.etcd.kill_member(i);
            }
            Fault::PauseAgent(i) => {
                let a = self.agents.get_mut(i).context("no such agent")?;
                a.process.pause();
                a.paused = true;
            }
        }
        Ok(())
    }

    /// Heals `fault`: restarts the killed process on its data and port, or
    /// continues the paused one. A blocking call (waits for the process to
    /// listen or, for etcd, to be healthy).
    pub fn heal(&mut self, fault: Fault) -> anyhow::Result<()> {
        match fault {
            Fault::KillAgent(i) => revive(self.agents.get_mut(i).context("no such agent")?),
            Fault::KillCoordinator(i) => revive(
                self.coordinators
                    .get_mut(i)
                    .context("no such coordinator")?,
            ),
            Fault::KillEtcd(i) => self
                .etcd
                .restart_member(i)
                .with_context(|| format!("restart etcd member {i}")),
            Fault::PauseAgent(i) => revive(self.agents.get_mut(i).context("no such agent")?),
        }
    }

    /// Brings every process back (continues the paused, restarts the
    /// killed); a no-op when nothing is down.
    pub fn heal_all(&mut self) -> anyhow::Result<()> {
        for i in 0..self.etcd.size() {
            if !self.etcd.is_running(i) {
                self.etcd
                    .restart_member(i)
                    .with_context(|| format!("restart etcd member {i}"))?;
            }
        }
        for s in self.coordinators.iter_mut().chain(self.agents.iter_mut()) {
            revive(s)?;
        }
        Ok(())
    }

    /// Every partition of every topic as the active coordinator describes
    /// it; empty when none answers within `timeout`.
    pub async fn describe_partitions(&self, timeout: Duration) -> Vec<PartitionHealth> {
        let answer = on_active(&self.coordinator_addrs, timeout, |mut c| async move {
            c.describe_topics(pb::DescribeTopicsRequest::default())
                .await
        })
        .await;
        let Ok(answer) = answer else {
            return Vec::new();
        };
        answer
            .into_inner()
            .topics
            .into_iter()
            .flat_map(|t| {
                let topic = t.name;
                t.partitions.into_iter().map(move |p| PartitionHealth {
                    topic: topic.clone(),
                    partition: p.partition,
                    replicas: p.replicas,
                    isr: p.isr,
                    leader: p.leader,
                })
            })
            .collect()
    }

    /// Each ballast process's name and log file (the files go with the
    /// cluster: copy them before it drops).
    pub fn log_files(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        for (i, c) in self.coordinators.iter().enumerate() {
            out.push((
                format!("coordinator{}", i + 1),
                c.process.log_path().to_owned(),
            ));
        }
        for (i, a) in self.agents.iter().enumerate() {
            out.push((format!("agent{}", i + 1), a.process.log_path().to_owned()));
        }
        out
    }

    /// Stops every ballast process (SIGTERM, then SIGKILL); etcd stops when
    /// the cluster drops.
    pub fn stop(&mut self) {
        for s in self.agents.iter_mut().chain(self.coordinators.iter_mut()) {
            if s.paused {
                s.process.resume();
                s.paused = false;
            }
            s.process.stop();
            s.down = true;
        }
    }
}

fn kill(s: &mut Server) {
    s.process.kill();
    s.down = true;
}

fn revive(s: &mut Server) -> anyhow::Result<()> {
    if s.paused {
        s.process.resume();
        s.paused = false;
    }
    if s.down {
        s.process
            .restart(START_TIMEOUT)
            .context("restart on the same port and data")?;
        s.down = false;
    }
    Ok(())
}
