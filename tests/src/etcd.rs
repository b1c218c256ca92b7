//! Real etcd processes for tests: one server ([`EtcdServer`]) or a
//! loopback cluster ([`EtcdCluster`]), each on free loopback ports with its
//! own temporary data directory, started with short raft timings
//! (`--heartbeat-interval=10 --election-timeout=100`: healthy in ~0.1 s,
//! minimum lease TTL 1 s). Clients reach a member on 127.0.0.1 only, unless
//! a cluster is started with extra client addresses
//! ([`EtcdCluster::start_listening_also_on`]: a process in a network
//! namespace reaches etcd on the test side of its veth pair).
//!
//! Owns the child processes and their directories; every process is killed
//! when its handle drops (tests run in parallel and must never leak one), and
//! on Linux also if the test thread that started it dies (`setpriv
//! --pdeathsig`): so start servers from the test's own thread, not from a
//! short-lived helper thread. It must never skip: without an etcd binary it
//! panics with the command that installs one.
//!
//! The binary is `$BALLAST_ETCD_BIN`, else `etcd` on `PATH`, else
//! `/usr/bin/etcd`. Each process writes its output to `etcd.log` in its
//! directory; the tail is printed when a handle drops during a panic.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a process may take to report healthy.
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Fresh-port attempts when a start fails (a port taken meanwhile).
const START_ATTEMPTS: usize = 4;

/// Finds the etcd binary or panics with the install command (tests never
/// skip).
pub fn etcd_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BALLAST_ETCD_BIN") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return path;
        }
        panic!(
            "BALLAST_ETCD_BIN={} is not a file. etcd not found: install it with \
             `apt-get install -y etcd-server` (tests never skip)",
            path.display()
        );
    }
    if let Some(path) = find_on_path("etcd") {
        return path;
    }
    let fallback = PathBuf::from("/usr/bin/etcd");
    if fallback.is_file() {
        return fallback;
    }
    panic!(
        "etcd not found: install it with `apt-get install -y etcd-server` (tests never skip); \
         or point BALLAST_ETCD_BIN at an etcd 3.4+ binary"
    );
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Distinct free loopback ports (all held open together, then released).
fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .context("binding a free loopback port")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

fn url(port: u16) -> String {
    url_on("127.0.0.1", port)
}

fn url_on(ip: &str, port: u16) -> String {
    format!("http://{ip}:{port}")
}

/// A unique token per cluster, so members of different tests never join.
fn cluster_token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "ballast-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// TLS for etcd's client port: its certificate and key, and the CA that
/// clients' certificates must chain to (client certificates required).
#[derive(Debug, Clone)]
pub struct EtcdTls {
    /// Server certificate (PEM), valid for 127.0.0.1.
    pub cert: PathBuf,
    /// Its key (PEM).
    pub key: PathBuf,
    /// CA of client certificates (PEM).
    pub client_ca: PathBuf,
}

/// One etcd process and everything needed to restart it identically.
#[derive(Debug)]
struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    /// With TLS on the client port, health is asked on a plaintext metrics
    /// port.
    tls: Option<Box<(EtcdTls, u16)>>,
    /// Addresses the client port listens on besides 127.0.0.1.
    extra_client_ips: Vec<String>,
    initial_cluster: String,
    token: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("opening the etcd log")?;
        let etcd = etcd_binary();
        let mut command = match find_on_path("setpriv") {
            // Dies with the thread that started it, even if the test process
            // is killed before any Drop runs.
            Some(setpriv) => {
                let mut command = Command::new(setpriv);
                command.args(["--pdeathsig", "KILL", "--"]).arg(&etcd);
                command
            }
            None => Command::new(&etcd),
        };
        let client_url = self.client_url();
        let listen_client_urls = std::iter::once(client_url.clone())
            .chain(
                self.extra_client_ips
                    .iter()
                    .map(|ip| self.client_url_on(ip)),
            )
            .collect::<Vec<_>>()
            .join(",");
        if let Some((tls, metrics_port)) = self.tls.as_deref() {
            command
                .arg("--cert-file")
                .arg(&tls.cert)
                .arg("--key-file")
                .arg(&tls.key)
                .arg("--trusted-ca-file")
                .arg(&tls.client_ca)
                .arg("--client-cert-auth")
                .arg("--listen-metrics-urls")
                .arg(url(*metrics_port));
        }
        command
            .arg("--name")
            .arg(&self.name)
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen-client-urls")
            .arg(&listen_client_urls)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(url(self.peer_port))
            .arg("--initial-advertise-peer-urls")
            .arg(url(self.peer_port))
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--heartbeat-interval=10")
            .arg("--election-timeout=100")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cloning the log handle")?)
            .stderr(log);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", etcd.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Whether the process is still running.
    fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn client_url(&self) -> String {
        self.client_url_on("127.0.0.1")
    }

    fn client_url_on(&self, ip: &str) -> String {
        match self.tls {
            Some(_) => format!("https://{ip}:{}", self.client_port),
            None => url_on(ip, self.client_port),
        }
    }

    fn healthy(&self) -> bool {
        let port = self.tls.as_deref().map_or(self.client_port, |(_, m)| *m);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.contains("\"health\":\"true\"")
    }

    fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if !self.running() {
                bail!(
                    "etcd {} exited during start-up; log tail:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if self.healthy() {
                return Ok(());
            }
            if started.elapsed() > timeout {
                bail!(
                    "etcd {} not healthy after {timeout:?}; log tail:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(self.log_path()) {
            let _ = file.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// Starts members with fresh ports, retrying with new ports when a start
/// fails (a port taken by someone else in between).
fn start_members(count: usize) -> anyhow::Result<(tempfile::TempDir, Vec<Member>)> {
    start_members_with(count, None, &[])
}

fn start_members_with(
    count: usize,
    tls: Option<&EtcdTls>,
    extra_client_ips: &[String],
) -> anyhow::Result<(tempfile::TempDir, Vec<Member>)> {
    let _ = etcd_binary(); // panic early and loudly if missing
    let mut last_error = None;
    for _ in 0..START_ATTEMPTS {
        let root = tempfile::Builder::new()
            .prefix("ballast-etcd-")
            .tempdir()
            .context("creating the etcd temp dir")?;
        let ports = free_ports(3 * count)?;
        let names: Vec<String> = (0..count).map(|i| format!("m{i}")).collect();
        let initial_cluster = names
            .iter()
            .enumerate()
            .map(|(i, name)| format!("{name}={}", url(ports[2 * i + 1])))
            .collect::<Vec<_>>()
            .join(",");
        let token = cluster_token();
        let mut members = Vec::with_capacity(count);
        for (i, name) in names.into_iter().enumerate() {
            let dir = root.path().join(&name);
            std::fs::create_dir_all(&dir).context("creating a member dir")?;
            members.push(Member {
                name,
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                tls: tls.map(|t| Box::new((t.clone(), ports[2 * count + i]))),
                extra_client_ips: extra_client_ips.to_vec(),
                initial_cluster: initial_cluster.clone(),
                token: token.clone(),
                dir,
                child: None,
            });
        }
        let started = members
            .iter_mut()
            .try_for_each(Member::spawn)
            .and_then(|()| {
                members
                    .iter_mut()
                    .try_for_each(|m| m.wait_healthy(HEALTHY_TIMEOUT))
            });
        match started {
            Ok(()) => return Ok((root, members)),
            Err(e) => {
                members.iter_mut().for_each(Member::kill);
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("etcd did not start")))
}

fn print_logs_if_panicking(members: &[Member]) {
    if std::thread::panicking() {
        for member in members {
            eprintln!(
                "---- etcd {} log ({}) ----\n{}",
                member.name,
                member.log_path().display(),
                member.log_tail()
            );
        }
    }
}

/// One etcd server on free loopback ports with a temporary data directory.
#[derive(Debug)]
pub struct EtcdServer {
    member: Member,
    _root: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts a single-member etcd and waits until it is healthy. Panics if
    /// no etcd binary exists (tests never skip).
    pub fn start() -> anyhow::Result<EtcdServer> {
        let (root, mut members) = start_members(1)?;
        let member = members.pop().context("no member started")?;
        Ok(EtcdServer {
            member,
            _root: root,
        })
    }

    /// Starts a single-member etcd serving TLS on its client port and
    /// requiring client certificates signed by `tls.client_ca`.
    pub fn start_tls(tls: &EtcdTls) -> anyhow::Result<EtcdServer> {
        let (root, mut members) = start_members_with(1, Some(tls), &[])?;
        let member = members.pop().context("no member started")?;
        Ok(EtcdServer {
            member,
            _root: root,
        })
    }

    /// The client URL, `http://127.0.0.1:<port>` (`https://` with TLS).
    pub fn endpoint(&self) -> String {
        self.member.client_url()
    }

    /// The client URL as a one-element list, for `EtcdStore::connect`.
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint()]
    }

    /// The data directory (kept across `stop`/`kill` and `restart`).
    pub fn data_dir(&self) -> PathBuf {
        self.member.data_dir()
    }

    /// The log file of the process.
    pub fn log_path(&self) -> PathBuf {
        self.member.log_path()
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.member.running()
    }

    /// Kills the process (SIGKILL), as a crash.
    pub fn kill(&mut self) {
        self.member.kill();
    }

    /// Stops the process: SIGTERM, then SIGKILL after 3 s.
    pub fn stop(&mut self) {
        self.member.stop();
    }

    /// Starts the process again with the same data directory and ports (stops
    /// it first if running) and waits until it is healthy.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.member.stop();
        self.member.spawn()?;
        self.member.wait_healthy(HEALTHY_TIMEOUT)
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        print_logs_if_panicking(std::slice::from_ref(&self.member));
        self.member.kill();
    }
}

/// A loopback etcd cluster: members with distinct client and peer ports and
/// one `--initial-cluster` list.
#[derive(Debug)]
pub struct EtcdCluster {
    members: Vec<Member>,
    _root: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `size` members and waits until every one is healthy (the
    /// cluster has a leader). Panics if no etcd binary exists.
    pub fn start(size: usize) -> anyhow::Result<EtcdCluster> {
        Self::start_listening_also_on(size, &[])
    }

    /// [`EtcdCluster::start`] with each member's client port listening on
    /// `ips` too (the same port on each), for clients that cannot reach
    /// 127.0.0.1 (a process in a network namespace, through the test side
    /// of its veth pair: `crate::netns`). The addresses must exist in the
    /// test's namespace whenever a member starts or restarts.
    pub fn start_listening_also_on(size: usize, ips: &[String]) -> anyhow::Result<EtcdCluster> {
        if size == 0 {
            bail!("an etcd cluster needs at least one member");
        }
        let (root, members) = start_members_with(size, None, ips)?;
        Ok(EtcdCluster {
            members,
            _root: root,
        })
    }

    /// Number of members.
    pub fn size(&self) -> usize {
        self.members.len()
    }

    /// Client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        url(self.members[i].client_port)
    }

    /// Client URLs of every member (running or not).
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Client URLs of every member on `ip`, one of the extra addresses the
    /// cluster was started with ([`EtcdCluster::start_listening_also_on`]).
    pub fn endpoints_on(&self, ip: &str) -> Vec<String> {
        self.members
            .iter()
            .map(|m| url_on(ip, m.client_port))
            .collect()
    }

    /// Kills member `i` (SIGKILL), as a crash.
    pub fn kill_member(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Stops member `i`: SIGTERM, then SIGKILL after 3 s.
    pub fn stop_member(&mut self, i: usize) {
        self.members[i].stop();
    }

    /// Whether member `i` is running.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.members[i].running()
    }

    /// Restarts member `i` with its data directory and ports and waits until
    /// it is healthy.
    pub fn restart_member(&mut self, i: usize) -> anyhow::Result<()> {
        let member = &mut self.members[i];
        member.stop();
        member.spawn()?;
        member.wait_healthy(HEALTHY_TIMEOUT)
    }

    /// Data directory of member `i`.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.members[i].data_dir()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        print_logs_if_panicking(&self.members);
        for member in &mut self.members {
            member.kill();
        }
    }
}

/// Reads a whole file to a string, empty if unreadable (for log assertions).
pub fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
