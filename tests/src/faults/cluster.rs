//! The cluster the suite injects faults into: 3 etcd members, 2
//! coordinators and 4 agents, each coordinator and agent on a fixed free
//! port so that a restarted process comes back at the address its peers
//! and clients already know. Data lives in temp dirs that survive a kill,
//! so a restarted agent recovers its log and a restarted etcd member
//! rejoins with its data.
//!
//! Processes are set up at start for the faults that need it:
//! * agent 1's data dir is a tmpfs of its own ([`SMALL_DISK`]), filled by a
//!   ballast file for [`Fault::FillDisk`] (needs `mount`, i.e. root);
//! * agent 3 runs in a network namespace of its own (`crate::netns`), cut
//!   off for [`Fault::IsolateAgent`]; the other agents listen on the test
//!   side of its veth pair (the layout of `tests/tests/partition.rs`);
//! * each coordinator runs in a network namespace of its own, cut off for
//!   [`Fault::IsolateCoordinator`] (every coordinator, so that the fault
//!   can always hit the active one, whichever it is). etcd listens on
//!   loopback and on the test side of each coordinator's veth pair, and
//!   each coordinator is given etcd's addresses on its own pair.
//!
//! Every namespace routes the address pool via the test's namespace, which
//! forwards between the pairs (`crate::netns`): until a cut, every process
//! reaches every other (agent 3 and the coordinators through two pairs),
//! and the clients in the test process reach all of them.
//!
//! When a set-up is impossible (not root, no iproute2) the cluster says why
//! on stderr and its [`Shape`] leaves those fault kinds out (the processes
//! then all listen on loopback).
//!
//! Owns every process it starts (they die with it), the namespaces and the
//! mount (removed when it drops, after the processes), and the record of
//! which process is down or paused. Must never leave two faults active at
//! once: the schedule heals each before the next, and
//! [`FaultCluster::heal_all`] brings everything back at the end.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use ballast_proto::v1::{self as pb};

use crate::cluster::{FAST, find_active, on_active, wait_live_brokers};
use crate::etcd::EtcdCluster;
use crate::faults::history::PartitionHealth;
use crate::faults::schedule::{Fault, Shape};
use crate::netns::Isolated;
use crate::process::{BallastProcess, eventually, free_port};

/// Size of the small-disk agent's tmpfs: room for the whole run's logs
/// (a few MiB), small enough to fill at once.
pub const SMALL_DISK: &str = "128m";
/// The agent (index) whose data dir is a tmpfs.
const SMALL_DISK_AGENT: usize = 0;
/// The agent (index) that runs in its own network namespace.
const ISOLATED_AGENT: usize = 2;
/// The file that fills the small disk.
const BALLAST_FILE: &str = "ballast";

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

/// A tmpfs mounted for the cluster's life (unmounted when dropped).
#[derive(Debug)]
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> anyhow::Result<Tmpfs> {
        std::fs::create_dir_all(path).context("tmpfs mount point")?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .context("run mount")?;
        anyhow::ensure!(
            out.status.success(),
            "`mount -t tmpfs` failed (needs root): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        Ok(Tmpfs {
            path: path.to_owned(),
        })
    }

    /// Writes a ballast file until the tmpfs is full; returns its size.
    fn fill(&self) -> anyhow::Result<u64> {
        let mut f = std::fs::File::create(self.path.join(BALLAST_FILE))
            .context("create the ballast file")?;
        let chunk = vec![0u8; 1 << 20];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => return Err(e).context("fill the tmpfs"),
            }
        }
        Ok(written)
    }

    /// Deletes the ballast file (a no-op without one).
    fn empty(&self) -> anyhow::Result<()> {
        match std::fs::remove_file(self.path.join(BALLAST_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).context("remove the ballast file")
            }
            _ => Ok(()),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The running cluster.
#[derive(Debug)]
pub struct FaultCluster {
    // Dropped in this order: agents, coordinators, etcd, the namespaces,
    // the mount, then the data.
    agents: Vec<Server>,
    coordinators: Vec<Server>,
    etcd: EtcdCluster,
    etcd_paused: Vec<bool>,
    nets: Option<Namespaces>,
    disk: Option<Tmpfs>,
    coordinator_addrs: Vec<String>,
    agent_addrs: Vec<String>,
    shape: Shape,
    _data: tempfile::TempDir,
}

/// The network namespaces of the namespaced agent and of the coordinators.
#[derive(Debug)]
struct Namespaces {
    agent: Isolated,
    /// One per coordinator, by index.
    coordinators: Vec<Isolated>,
}

impl Namespaces {
    /// All of them, or none (an error saying why).
    fn create(coordinators: usize) -> anyhow::Result<Namespaces> {
        Ok(Namespaces {
            agent: Isolated::create()?,
            coordinators: (0..coordinators)
                .map(|_| Isolated::create())
                .collect::<anyhow::Result<_>>()?,
        })
    }

    fn all(&self) -> impl Iterator<Item = &Isolated> {
        std::iter::once(&self.agent).chain(&self.coordinators)
    }
}

/// Starts `[wrapper] ballast <args(address)>` on a free port of `ip`,
/// trying another port if the first start fails.
fn start_on_free_port(
    wrapper: &[&str],
    ip: &str,
    args: impl Fn(&str) -> Vec<String>,
) -> anyhow::Result<BallastProcess> {
    let mut last = None;
    for _ in 0..START_ATTEMPTS {
        let address = format!("{ip}:{}", free_port());
        let args = args(&address);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        match BallastProcess::start_under(wrapper, &refs, START_TIMEOUT) {
            Ok(p) => return Ok(p),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no start attempt")))
}

/// The pid of the etcd process whose command line names `data_dir`.
fn etcd_pid(data_dir: &Path) -> anyhow::Result<u32> {
    let wanted = data_dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc").context("read /proc")?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let names_dir = args
            .windows(2)
            .any(|w| w[0] == b"--data-dir" && w[1] == wanted.as_bytes());
        if names_dir && !exited(pid) {
            return Ok(pid);
        }
    }
    anyhow::bail!("no etcd process with --data-dir {wanted}")
}

/// Whether process `pid` has exited (a zombie not yet reaped, or gone).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => true,
    }
}

fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let status = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .context("run kill")?;
    anyhow::ensure!(status.success(), "kill -{sig} {pid} failed");
    Ok(())
}

impl FaultCluster {
    /// The shape [`FaultCluster::start`] builds.
    pub const SHAPE: Shape = Shape {
        agents: 4,
        coordinators: 2,
        etcd: 3,
        small_disk_agent: None,
        isolated_agent: None,
        isolated_coordinators: false,
        partitions: 0,
    };

    /// Starts etcd, the coordinators (waiting for an active one) and the
    /// agents (waiting until all are live). Call it from the test's own
    /// task: etcd members die with the thread that started them.
    pub async fn start(cluster_id: &str, wait: Duration) -> anyhow::Result<FaultCluster> {
        let mut shape = Self::SHAPE;
        let nets = match Namespaces::create(shape.coordinators) {
            Ok(nets) => {
                shape.isolated_agent = Some(ISOLATED_AGENT);
                shape.isolated_coordinators = true;
                Some(nets)
            }
            Err(e) => {
                eprintln!(
                    "faults: no network namespaces, so no network partitions in the schedule: {e:#}"
                );
                None
            }
        };
        // Where the other agents listen: the test side of the agent's veth
        // pair.
        let host_ip = nets
            .as_ref()
            .map_or_else(|| "127.0.0.1".to_owned(), |n| n.agent.host_ip.clone());
        let coordinator_host_ips: Vec<String> = nets
            .iter()
            .flat_map(|n| n.coordinators.iter().map(|c| c.host_ip.clone()))
            .collect();
        let etcd = EtcdCluster::start_listening_also_on(shape.etcd, &coordinator_host_ips)
            .context("etcd cluster")?;
        let mut coordinators = Vec::new();
        for i in 0..shape.coordinators {
            // A namespaced coordinator reaches etcd on its pair's test side.
            let (wrapper, ip, endpoints) = match &nets {
                Some(n) => {
                    let net = &n.coordinators[i];
                    (
                        net.wrapper(),
                        net.ns_ip.clone(),
                        etcd.endpoints_on(&net.host_ip).join(","),
                    )
                }
                None => (Vec::new(), host_ip.clone(), etcd.endpoints().join(",")),
            };
            let process = start_on_free_port(&wrapper, &ip, |address| {
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
            .with_context(|| format!("coordinator {}", i + 1))?;
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
        let disk = match Tmpfs::mount(&data.path().join("small-disk"), SMALL_DISK) {
            Ok(disk) => {
                shape.small_disk_agent = Some(SMALL_DISK_AGENT);
                Some(disk)
            }
            Err(e) => {
                eprintln!("faults: no tmpfs, so no full disk in the schedule: {e:#}");
                None
            }
        };
        let joined = coordinator_addrs.join(",");
        let mut agents = Vec::new();
        for id in 1..=shape.agents {
            let i = id - 1;
            let dir: PathBuf = match &disk {
                Some(d) if i == SMALL_DISK_AGENT => d.path.join(format!("b{id}")),
                _ => data.path().join(format!("b{id}")),
            };
            let (wrapper, ip) = match &nets {
                Some(n) if i == ISOLATED_AGENT => (n.agent.wrapper(), n.agent.ns_ip.clone()),
                _ => (Vec::new(), host_ip.clone()),
            };
            let process = start_on_free_port(&wrapper, &ip, |address| {
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
            etcd_paused: vec![false; shape.etcd],
            etcd,
            nets,
            disk,
            coordinator_addrs,
            agent_addrs,
            shape,
            _data: data,
        })
    }

    /// The shape this cluster has: [`FaultCluster::SHAPE`] plus the agents
    /// set up for a full disk and a partition and the namespaced
    /// coordinators, when the machine allowed them (`partitions` is left
    /// for the workload to fill in).
    pub fn shape(&self) -> Shape {
        self.shape
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
            Fault::PauseAgent(i) => pause(self.agents.get_mut(i).context("no such agent")?),
            Fault::PauseCoordinator(i) => pause(
                self.coordinators
                    .get_mut(i)
                    .context("no such coordinator")?,
            ),
            Fault::PauseEtcd(i) => {
                anyhow::ensure!(i < self.etcd.size(), "no such etcd member");
                signal(etcd_pid(&self.etcd.data_dir(i))?, "STOP")?;
                self.etcd_paused[i] = true;
            }
            Fault::FillDisk(i) => {
                anyhow::ensure!(
                    self.shape.small_disk_agent == Some(i),
                    "agent {i} has no small disk"
                );
                let disk = self.disk.as_ref().context("no tmpfs")?;
                let bytes = disk.fill()?;
                eprintln!(
                    "faults: filled agent {}'s disk with {} MiB",
                    i + 1,
                    bytes >> 20
                );
            }
            Fault::IsolateAgent(i) => {
                anyhow::ensure!(
                    self.shape.isolated_agent == Some(i),
                    "agent {i} is not namespaced"
                );
                self.nets.as_ref().context("no namespace")?.agent.cut()?;
            }
            Fault::IsolateCoordinator(i) => self.coordinator_net(i)?.cut()?,
            Fault::Reassign(_) => {
                anyhow::bail!("a reassignment is the workload's, not the cluster's")
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
            Fault::PauseCoordinator(i) => revive(
                self.coordinators
                    .get_mut(i)
                    .context("no such coordinator")?,
            ),
            Fault::PauseEtcd(i) => self.continue_etcd(i),
            Fault::FillDisk(i) => {
                self.disk.as_ref().context("no tmpfs")?.empty()?;
                // The agent must ride out a full disk (it drops out of the
                // ISR); if it died, bring it back but fail the run.
                let a = self.agents.get_mut(i).context("no such agent")?;
                if a.process.pid().is_none_or(exited) {
                    a.down = true;
                    revive(a)?;
                    anyhow::bail!("agent {} exited while its disk was full (restarted)", i + 1);
                }
                Ok(())
            }
            Fault::IsolateAgent(_) => self.nets.as_ref().context("no namespace")?.agent.heal(),
            Fault::IsolateCoordinator(i) => self.coordinator_net(i)?.heal(),
            Fault::Reassign(_) => Ok(()),
        }
    }

    fn coordinator_net(&self, i: usize) -> anyhow::Result<&Isolated> {
        anyhow::ensure!(
            self.shape.isolated_coordinators,
            "the coordinators are not namespaced"
        );
        self.nets
            .as_ref()
            .and_then(|n| n.coordinators.get(i))
            .with_context(|| format!("no namespace for coordinator {}", i + 1))
    }

    fn continue_etcd(&mut self, i: usize) -> anyhow::Result<()> {
        anyhow::ensure!(i < self.etcd.size(), "no such etcd member");
        if self.etcd_paused[i] {
            signal(etcd_pid(&self.etcd.data_dir(i))?, "CONT")?;
            self.etcd_paused[i] = false;
        }
        Ok(())
    }

    /// Brings every process back (continues the paused, restarts the
    /// killed); a no-op when nothing is down.
    pub fn heal_all(&mut self) -> anyhow::Result<()> {
        for net in self.nets.iter().flat_map(Namespaces::all) {
            net.heal()?;
        }
        if let Some(disk) = &self.disk {
            disk.empty()?;
        }
        for i in 0..self.etcd.size() {
            self.continue_etcd(i)?;
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
        for i in 0..self.etcd.size() {
            let _ = self.continue_etcd(i);
        }
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

fn pause(s: &mut Server) {
    s.process.pause();
    s.paused = true;
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
