//! The cluster every consumer-group scenario runs on: one etcd, one
//! `ballast coordinator` and three `ballast agent` processes (the release
//! binary, through the shared harness), plus what the scenarios read from
//! it: the agent coordinating a group, and a process's RSS and CPU time
//! from /proc. Dropping a [`Cluster`] stops every process it started and
//! removes its data directories.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use ballast_proto::v1::group_client::GroupClient;
use ballast_proto::v1::{self as pb, ErrorCode};
use ballast_tests::cluster::{
    channel, find_active, on_active, start_agent, start_coordinator_with, wait_live_brokers,
};
use ballast_tests::etcd::EtcdServer;
use ballast_tests::process::{BallastProcess, eventually};
use tonic::transport::Channel;

/// Longest wait for the cluster to reach a state (not a measurement).
pub(crate) const WAIT: Duration = Duration::from_secs(120);

/// etcd + coordinator + agents 1..=3. Fields drop in order: agents first.
#[derive(Debug)]
pub(crate) struct Cluster {
    /// Broker id -> agent process.
    pub(crate) agents: BTreeMap<i32, BallastProcess>,
    _coordinator: BallastProcess,
    _etcd: EtcdServer,
    _dirs: tempfile::TempDir,
    /// The coordinator's address (for admin calls).
    pub(crate) admin: Vec<String>,
}

impl Cluster {
    /// Starts everything; `coordinator_flags` and `agent_flags` are added
    /// to the harness's defaults (later flags win). Returns once the three
    /// agents are live and `__consumer_offsets` has a leader for every
    /// partition.
    pub(crate) async fn start(coordinator_flags: &[&str], agent_flags: &[&str]) -> Result<Cluster> {
        let etcd = EtcdServer::start()?;
        let coordinator = start_coordinator(&etcd.endpoints(), coordinator_flags)?;
        let admin = vec![coordinator.address().to_owned()];
        eventually("an active coordinator", WAIT, || find_active(&admin)).await;
        let dirs = tempfile::Builder::new()
            .prefix("ballast-bench-groups-")
            .tempdir()?;
        let data: Vec<PathBuf> = (1..=3)
            .map(|id| dirs.path().join(format!("b{id}")))
            .collect();
        let agents: BTreeMap<i32, BallastProcess> = (1..=3)
            .map(|id| {
                (
                    id,
                    start_agent(&admin[0], id, &data[id as usize - 1], agent_flags),
                )
            })
            .collect();
        wait_live_brokers(&admin, 3, WAIT).await;
        let c = Cluster {
            agents,
            _coordinator: coordinator,
            _etcd: etcd,
            _dirs: dirs,
            admin,
        };
        Ok(c)
    }

    /// The agents' Data/Group addresses.
    pub(crate) fn bootstrap(&self) -> Vec<String> {
        self.agents
            .values()
            .map(|a| a.address().to_owned())
            .collect()
    }

    /// Creates a topic and waits until it is created (not hosted: the
    /// group coordinator needs only its partition count).
    pub(crate) async fn create_topic(&self, name: &str, partitions: i32, rf: i32) -> Result<()> {
        let name = name.to_owned();
        on_active(&self.admin, WAIT, |mut c| {
            let name = name.clone();
            async move {
                c.create_topic(pb::CreateTopicRequest {
                    name: name.clone(),
                    partitions,
                    replication_factor: rf,
                    request_id: format!("bench-{name}"),
                    ..Default::default()
                })
                .await
            }
        })
        .await
        .map_err(|s| anyhow!("create topic {name}: {s}"))?;
        Ok(())
    }

    /// The agent coordinating `group` (broker id, address), once it serves
    /// the group: FindCoordinator through any agent, then a read
    /// (FetchOffsets) that the coordinator answers without a load error.
    pub(crate) async fn coordinator_of(&self, group: &str) -> Result<(i32, String)> {
        let bootstrap = self.bootstrap();
        let group = group.to_owned();
        let found = eventually(&format!("a coordinator serving {group}"), WAIT, || {
            let bootstrap = bootstrap.clone();
            let group = group.clone();
            async move {
                for a in &bootstrap {
                    let Ok(r) = GroupClient::new(channel(a))
                        .find_coordinator(pb::FindCoordinatorRequest {
                            group_id: group.clone(),
                        })
                        .await
                    else {
                        continue;
                    };
                    let r = r.into_inner();
                    let Some(h) = r.coordinator.filter(|_| r.error == ErrorCode::None as i32)
                    else {
                        continue;
                    };
                    if h.address.is_empty() {
                        continue;
                    }
                    let served = GroupClient::new(channel(&h.address))
                        .fetch_offsets(pb::FetchOffsetsRequest {
                            group_id: group.clone(),
                            partitions: Vec::new(),
                        })
                        .await
                        .ok()?
                        .into_inner();
                    if served.error == ErrorCode::None as i32 {
                        return Some((h.leader_id, h.address));
                    }
                }
                None
            }
        })
        .await;
        Ok(found)
    }

    /// The pid of broker `id`'s agent.
    pub(crate) fn agent_pid(&self, id: i32) -> Result<u32> {
        self.agents
            .get(&id)
            .and_then(BallastProcess::pid)
            .with_context(|| format!("agent {id} is not running"))
    }

    /// Every agent's pid, by broker id.
    pub(crate) fn agent_pids(&self) -> Result<BTreeMap<i32, u32>> {
        self.agents
            .keys()
            .map(|&id| Ok((id, self.agent_pid(id)?)))
            .collect()
    }
}

/// A `ballast coordinator` on `etcd` with the harness's timings, `flags`
/// replacing the same ones.
fn start_coordinator(etcd: &[String], flags: &[&str]) -> Result<BallastProcess> {
    Ok(start_coordinator_with(etcd, "bench-groups", flags))
}

/// `count` lazy channels to `address` (HTTP/2 connections, shared by many
/// simulated members).
pub(crate) fn clients(address: &str, count: usize) -> Vec<GroupClient<Channel>> {
    (0..count.max(1))
        .map(|_| GroupClient::new(channel(address)).max_decoding_message_size(64 << 20))
        .collect()
}

// ---- /proc ----------------------------------------------------------------

/// A `kB` field of /proc/<pid>/status, in bytes.
pub(crate) use ballast_tests::bench::status_bytes;

/// VmRSS of a process, in bytes.
pub(crate) fn rss(pid: u32) -> Result<u64> {
    status_bytes(pid, "VmRSS:")
}

/// "VmRSS X MiB (anon Y MiB)" of a process: anonymous memory is the heap;
/// the rest is mapped files (the binary, segment indexes).
pub(crate) fn rss_line(pid: u32) -> Result<String> {
    Ok(format!(
        "VmRSS {:.1} MiB (RssAnon {:.1} MiB)",
        mib(rss(pid)?),
        mib(status_bytes(pid, "RssAnon:")?)
    ))
}

/// Clock ticks per second of /proc/<pid>/stat times (`getconf CLK_TCK`,
/// 100 when that cannot be run).
pub(crate) fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds a process has used (/proc/<pid>/stat fields
/// 14 and 15); `pid` 0 means this process.
pub(crate) fn cpu_seconds(pid: u32, ticks: f64) -> Result<f64> {
    let path = if pid == 0 {
        "/proc/self/stat".to_owned()
    } else {
        format!("/proc/{pid}/stat")
    };
    let text = std::fs::read_to_string(&path).with_context(|| path.clone())?;
    // The command name may hold spaces: fields start after its ')'.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("malformed {path}"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    if f.len() < 13 {
        bail!("malformed {path}");
    }
    let utime: f64 = f[11].parse().context("utime")?;
    let stime: f64 = f[12].parse().context("stime")?;
    Ok((utime + stime) / ticks)
}

/// The 1-minute load average.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
