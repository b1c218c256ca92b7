//! `ballast agent`: run one broker agent in the foreground.
//!
//! Owns the command's flags ([`AgentArgs`]) and their mapping to
//! [`AgentConfig`] (which validates them and names the bad flag), the tokio
//! runtime and logging (`tracing` to stderr as text or JSON; level from
//! `RUST_LOG`, default `info`). SIGTERM or SIGINT (`server::shutdown_signal`)
//! stops the agent cleanly. The agent itself lives in `ballast-broker-agent`;
//! `ballast dev` runs several in one process with its `start`.
//!
//! Exception to the command contract in `main.rs`: this command runs until
//! stopped, so it prints its one stdout line itself as soon as it serves,
//! `agent <broker-id> listening on <addr>` (the bound AgentControl address;
//! harnesses parse it), and returns an empty output when it stops.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use ballast_broker_agent::{AgentConfig, GroupConfig, ReplicationConfig};
use clap::{Args, ValueEnum};

/// Log line format on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of `ballast agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Coordinator addresses (host:port), comma-separated, tried in order; a
    /// standby redirects the agent to the active coordinator.
    #[arg(
        long = "coordinator",
        env = "BALLAST_COORDINATOR",
        value_name = "ADDRS",
        value_delimiter = ',',
        required = true
    )]
    coordinators: Vec<String>,
    /// This agent's broker id (>= 0); its data directory remembers it.
    #[arg(
        long,
        env = "BALLAST_BROKER_ID",
        value_name = "ID",
        allow_negative_numbers = true
    )]
    broker_id: i32,
    /// Rack name, for rack-aware replica placement.
    #[arg(long, env = "BALLAST_RACK")]
    rack: Option<String>,
    /// Directory for the agent's identity and partition directories
    /// (created when missing; one agent at a time).
    #[arg(long, env = "BALLAST_DATA_DIR", value_name = "DIR")]
    data_dir: PathBuf,
    /// Address the AgentControl gRPC server listens on.
    #[arg(
        long,
        env = "BALLAST_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:0"
    )]
    listen: SocketAddr,
    /// host:port the coordinator and clients use to reach this agent
    /// (default: the bound address).
    #[arg(long, env = "BALLAST_ADVERTISE", value_name = "HOST:PORT")]
    advertise: Option<String>,
    /// Disk capacity to report, in bytes (default: the size of the file
    /// system holding the data directory).
    #[arg(long, env = "BALLAST_DISK_CAPACITY", value_name = "BYTES")]
    disk_capacity: Option<u64>,
    /// Log format on stderr.
    #[arg(long, env = "BALLAST_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Read options from this TOML file (keys are the flag names); the
    /// environment (`BALLAST_<NAME>`) and flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Serve `GET /metrics` (Prometheus text format) over HTTP on this
    /// address (default: off).
    #[arg(long, env = "BALLAST_HTTP_LISTEN", value_name = "HOST:PORT")]
    http_listen: Option<String>,
    /// Drop a follower from the ISR after it lags this long (Kafka's
    /// replica.lag.time.max.ms; default 30s).
    #[arg(long, env = "BALLAST_REPLICA_LAG_TIME_MAX", value_parser = humantime::parse_duration)]
    replica_lag_time_max: Option<Duration>,
    /// Long-poll wait of follower fetches (default 500ms).
    #[arg(long, env = "BALLAST_REPLICA_FETCH_MAX_WAIT", value_parser = humantime::parse_duration)]
    replica_fetch_max_wait: Option<Duration>,
    /// Largest produce request accepted, in bytes (default 64 MiB).
    #[arg(long, env = "BALLAST_MAX_REQUEST_BYTES", value_name = "BYTES")]
    max_request_bytes: Option<usize>,
    /// Largest fetch answer, in bytes (default 64 MiB).
    #[arg(long, env = "BALLAST_MAX_FETCH_BYTES", value_name = "BYTES")]
    max_fetch_bytes: Option<usize>,
    /// How often retention and compaction run (default 5m).
    #[arg(long, env = "BALLAST_RETENTION_CHECK_INTERVAL", value_parser = humantime::parse_duration)]
    retention_check_interval: Option<Duration>,
    /// How often high-watermark and recovery checkpoints are written
    /// (default 5s).
    #[arg(long, env = "BALLAST_CHECKPOINT_INTERVAL", value_parser = humantime::parse_duration)]
    checkpoint_interval: Option<Duration>,
    /// How often background (ASYNC_FLUSH, flush.ms) flushes are checked
    /// (default 100ms).
    #[arg(long, env = "BALLAST_FLUSH_CHECK_INTERVAL", value_parser = humantime::parse_duration)]
    flush_check_interval: Option<Duration>,
    /// Heartbeat interval given to consumer-group members (at most a third
    /// of a member's session; default 5s).
    #[arg(long, env = "BALLAST_GROUP_HEARTBEAT_INTERVAL", value_parser = humantime::parse_duration)]
    group_heartbeat_interval: Option<Duration>,
    /// Shortest session timeout a group member may ask for (default 1s).
    #[arg(long, env = "BALLAST_GROUP_MIN_SESSION_TIMEOUT", value_parser = humantime::parse_duration)]
    group_min_session_timeout: Option<Duration>,
    /// Longest session timeout a group member may ask for (default 30m).
    #[arg(long, env = "BALLAST_GROUP_MAX_SESSION_TIMEOUT", value_parser = humantime::parse_duration)]
    group_max_session_timeout: Option<Duration>,
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl AgentArgs {
    /// Replication settings: the defaults, with the flags given on top.
    fn replication(&self) -> Result<ReplicationConfig> {
        let mut r = ReplicationConfig::default();
        if let Some(v) = self.replica_lag_time_max {
            r.replica_lag_time_max = v;
        }
        if let Some(v) = self.replica_fetch_max_wait {
            r.replica_fetch_max_wait = v;
        }
        if let Some(v) = self.max_request_bytes {
            r.max_request_bytes = v;
        }
        if let Some(v) = self.max_fetch_bytes {
            r.max_fetch_bytes = v;
        }
        if let Some(v) = self.retention_check_interval {
            r.retention_check_interval = v;
        }
        if let Some(v) = self.checkpoint_interval {
            r.checkpoint_interval = v;
        }
        if let Some(v) = self.flush_check_interval {
            r.flush_check_interval = v;
        }
        r.validate().map_err(|(field, reason)| {
            anyhow::anyhow!("--{}: {reason}", field.replace('_', "-"))
        })?;
        Ok(r)
    }

    fn config(&self) -> AgentConfig {
        AgentConfig {
            broker_id: self.broker_id,
            rack: self.rack.clone(),
            data_dir: self.data_dir.clone(),
            listen: self.listen,
            advertise: self.advertise.clone(),
            coordinators: self
                .coordinators
                .iter()
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect(),
            disk_capacity_bytes: self.disk_capacity,
            group: self.group(),
            tls: None,
        }
    }

    /// Consumer-group limits: the defaults, with the flags given on top.
    fn group(&self) -> GroupConfig {
        let mut g = GroupConfig::default();
        if let Some(d) = self.group_heartbeat_interval {
            g.heartbeat_interval_ms = millis(d);
        }
        if let Some(d) = self.group_min_session_timeout {
            g.min_session_timeout_ms = millis(d);
        }
        if let Some(d) = self.group_max_session_timeout {
            g.max_session_timeout_ms = millis(d);
        }
        g
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(args: AgentArgs, security: &crate::security::SecurityArgs) -> Result<String> {
    // `--config` was expanded into flags before parsing (`config.rs`).
    debug_assert!(args.config.is_none());
    let mut config = args.config();
    config.tls = security.server()?;
    config.validate()?;
    let replication = args.replication()?;
    init_logging(args.log_format)?;
    report_open_files(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config, replication, args.http_listen))?;
    Ok(String::new())
}

/// Raises the open-file limit (see `ballast_broker_agent::limits`) and
/// logs it, with a warning when `agents` agents in this process can host
/// fewer than 1,000 partitions each.
pub fn report_open_files(agents: u64) {
    let limit = ballast_broker_agent::limits::raise_open_files_limit();
    let per_agent = limit.partitions_fitting().map(|n| n / agents.max(1));
    match per_agent {
        Some(n) if n < 1_000 => tracing::warn!(
            before = ?limit.before,
            now = ?limit.now,
            hard = ?limit.hard,
            partitions_per_agent = n,
            "the open-file limit allows only about this many partitions per agent (3 files each); raise the hard limit (ulimit -Hn, LimitNOFILE=)"
        ),
        _ => tracing::info!(
            before = ?limit.before,
            now = ?limit.now,
            hard = ?limit.hard,
            partitions_per_agent = ?per_agent,
            "open-file limit"
        ),
    }
}

async fn serve(
    config: AgentConfig,
    replication: ReplicationConfig,
    http_listen: Option<String>,
) -> Result<()> {
    let broker_id = config.broker_id;
    let http = match &http_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("--http-listen {address}"))?,
        ),
        None => None,
    };
    let mut agent = ballast_broker_agent::start_with(config, replication).await?;
    announce(broker_id, agent.local_addr())?;
    let stop_http = http_stopper();
    if let Some(l) = http {
        let bound = l.local_addr()?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "agent {broker_id} http on {bound}")
            .and_then(|()| out.flush())
            .context("cannot write to stdout")?;
        drop(out);
        let stop = stop_http.clone();
        tokio::spawn(ballast_broker_agent::http::serve(
            std::sync::Arc::clone(agent.replicas()),
            l,
            async move { stop.notified().await },
        ));
    }
    let failure = tokio::select! {
        () = crate::server::shutdown_signal() => None,
        e = agent.failed() => Some(e),
    };
    tracing::info!(broker_id, "stopping");
    stop_http.notify_one();
    agent.shutdown().await?;
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Stops the HTTP server at shutdown.
fn http_stopper() -> std::sync::Arc<tokio::sync::Notify> {
    std::sync::Arc::new(tokio::sync::Notify::new())
}

/// The one stdout line, flushed at once so a parent process can read it.
fn announce(broker_id: i32, addr: SocketAddr) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", listening_line(broker_id, addr))
        .and_then(|()| out.flush())
        .context("cannot write to stdout")
}

fn listening_line(broker_id: i32, addr: SocketAddr) -> String {
    format!("agent {broker_id} listening on {addr}")
}

pub(crate) fn init_logging(format: LogFormat) -> Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        // Every line carries the fields of the spans it was written in
        // (broker, topic, partition, epochs), in its `spans` list.
        LogFormat::Json => builder
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: AgentArgs,
    }

    #[test]
    fn flags_become_a_config() {
        let w = Wrapper::try_parse_from([
            "agent",
            "--coordinator",
            "127.0.0.1:1, 127.0.0.1:2",
            "--broker-id",
            "3",
            "--rack",
            "a",
            "--data-dir",
            "/tmp/d",
        ])
        .unwrap();
        let c = w.args.config();
        assert_eq!(c.coordinators, vec!["127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(c.broker_id, 3);
        assert_eq!(c.listen, "127.0.0.1:0".parse::<SocketAddr>().unwrap());
        assert_eq!(c.rack.as_deref(), Some("a"));
        c.validate().unwrap();
    }

    #[test]
    fn a_negative_broker_id_is_refused_by_name() {
        let w = Wrapper::try_parse_from([
            "agent",
            "--coordinator",
            "h:1",
            "--broker-id",
            "-1",
            "--data-dir",
            "/tmp/d",
        ])
        .unwrap();
        let err = w.args.config().validate().unwrap_err().to_string();
        assert!(err.contains("broker-id"), "{err}");
    }

    #[test]
    fn the_listening_line() {
        assert_eq!(
            listening_line(2, "127.0.0.1:4000".parse().unwrap()),
            "agent 2 listening on 127.0.0.1:4000"
        );
    }
}
