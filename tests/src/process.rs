//! Child processes of the `ballast` binary for integration tests: start one
//! with arguments, wait for its "listening on" line, send it signals, and
//! never leak it (Drop kills it).
//!
//! Each process writes stderr to a log file in its own temp dir; a failing
//! test can print it with [`BallastProcess::log`].

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::bin_path::ballast_bin;

/// A free loopback port (bind port 0, read it, release it). Another process
/// could take it in between; callers that bind it retry on failure.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback port")
}

/// A running `ballast` child process.
#[derive(Debug)]
pub struct BallastProcess {
    child: Option<Child>,
    args: Vec<String>,
    log_path: PathBuf,
    address: String,
    /// Extra environment variables (`RUST_LOG` among them overrides the
    /// default).
    env: Vec<(String, String)>,
    /// A command the binary runs under (`ip netns exec <ns>`), or empty.
    wrapper: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl BallastProcess {
    /// Start `ballast <args>` and wait (up to `timeout`) for a stdout line
    /// containing `listening on <address>`; returns with that address.
    pub fn start(args: &[&str], timeout: Duration) -> anyhow::Result<BallastProcess> {
        Self::start_with_env(args, &[], timeout)
    }

    /// [`BallastProcess::start`] with extra environment variables.
    pub fn start_with_env(
        args: &[&str],
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> anyhow::Result<BallastProcess> {
        let dir = tempfile::tempdir().context("temp dir")?;
        let log_path = dir.path().join("stderr.log");
        let mut p = BallastProcess {
            child: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            log_path,
            address: String::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            wrapper: Vec::new(),
            _dir: Some(dir),
        };
        p.spawn(timeout)?;
        Ok(p)
    }

    /// [`BallastProcess::start`] under `wrapper` (e.g. `ip netns exec ns`,
    /// which execs the binary in place: the pid stays the binary's).
    pub fn start_under(
        wrapper: &[&str],
        args: &[&str],
        timeout: Duration,
    ) -> anyhow::Result<BallastProcess> {
        let dir = tempfile::tempdir().context("temp dir")?;
        let log_path = dir.path().join("stderr.log");
        let mut p = BallastProcess {
            child: None,
            args: args.iter().map(|s| s.to_string()).collect(),
            log_path,
            address: String::new(),
            env: Vec::new(),
            wrapper: wrapper.iter().map(|s| s.to_string()).collect(),
            _dir: Some(dir),
        };
        p.spawn(timeout)?;
        Ok(p)
    }

    fn spawn(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .context("log file")?;
        let mut command = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(ballast_bin());
                c
            }
            None => Command::new(ballast_bin()),
        };
        let mut child = command
            .args(&self.args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("spawn ballast {:?}", self.args))?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if let Some(addr) = line.split("listening on ").nth(1) {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        self.child = Some(child);
        match rx.recv_timeout(timeout) {
            Ok(addr) => {
                self.address = addr;
                Ok(())
            }
            Err(_) => {
                self.kill();
                bail!(
                    "ballast {:?} did not report its address within {timeout:?}; log:\n{}",
                    self.args,
                    self.log()
                )
            }
        }
    }

    /// The address from the "listening on" line.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, wait up to 5 s, then SIGKILL.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "TERM");
            for _ in 0..100 {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGINT (Ctrl-C) and wait up to `timeout` for the process to exit;
    /// its exit status, or `None` if it did not exit (it is then killed).
    pub fn interrupt(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        signal(c.id(), "INT");
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// SIGSTOP (a stand-in for a long GC pause).
    pub fn pause(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, "STOP");
        }
    }

    /// SIGCONT.
    pub fn resume(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, "CONT");
        }
    }

    /// Start again with the same arguments (after `kill` or `stop`).
    pub fn restart(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.kill();
        self.spawn(timeout)
    }
}

impl Drop for BallastProcess {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // A paused process ignores SIGTERM until continued.
            signal(pid, "CONT");
        }
        self.kill();
    }
}

/// Poll `f` every 50 ms until it returns `Some`, or fail after `timeout`
/// with `what` in the message. For waiting on a cluster, never for asserting
/// speed.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `ballast <args>` to completion (stdin empty) and returns its output.
pub fn run_ballast(args: &[&str]) -> std::process::Output {
    Command::new(ballast_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ballast")
}
