//! The agent's typed configuration, [`AgentConfig`], and its validation.
//!
//! Owns the rules for each field (broker id range, coordinator address form,
//! rack and advertised address shape). It never reads flags, files or the
//! environment: the `ballast agent` command does that and hands a filled-in
//! struct to [`AgentConfig::validate`] (called by [`crate::start`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::error::AgentError;

/// Default AgentControl listen address: loopback, any free port.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// Everything an agent needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// This agent's broker id, `>= 0`. The data directory remembers it and
    /// refuses another.
    pub broker_id: i32,
    /// Rack name, for rack-aware placement. `None`: no rack.
    pub rack: Option<String>,
    /// Where the agent keeps `agent.json`, its lock and partition
    /// directories. Created when missing.
    pub data_dir: PathBuf,
    /// Where the AgentControl gRPC server listens ([`DEFAULT_LISTEN`]).
    pub listen: SocketAddr,
    /// `host:port` the coordinator and clients use to reach this agent.
    /// `None`: the bound address (loopback when bound to an unspecified IP).
    pub advertise: Option<String>,
    /// Coordinator addresses (`host:port` or `http://host:port`), tried in
    /// order; a standby redirects to the active one.
    pub coordinators: Vec<String>,
    /// Disk capacity reported at registration. `None`: the size of the file
    /// system holding the data directory (0 when it cannot be read).
    pub disk_capacity_bytes: Option<u64>,
    /// Consumer-group limits (session timeout bounds, heartbeat interval).
    pub group: ballast_group::GroupConfig,
    /// TLS for the agent's listener; with a client CA, pushes from the
    /// coordinator and follower fetches need a cluster certificate.
    pub tls: Option<ballast_net::ServerSecurity>,
}

impl AgentConfig {
    /// A configuration with defaults for everything but the required fields.
    pub fn new(broker_id: i32, data_dir: impl Into<PathBuf>, coordinators: Vec<String>) -> Self {
        Self {
            broker_id,
            rack: None,
            data_dir: data_dir.into(),
            listen: DEFAULT_LISTEN,
            advertise: None,
            coordinators,
            disk_capacity_bytes: None,
            group: ballast_group::GroupConfig::default(),
            tls: None,
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), AgentError> {
        if self.broker_id < 0 {
            return Err(bad(
                "broker-id",
                format!("must be >= 0, got {}", self.broker_id),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(bad("data-dir", "must not be empty".to_owned()));
        }
        if self.coordinators.is_empty() {
            return Err(bad(
                "coordinator",
                "at least one coordinator address (host:port) is required".to_owned(),
            ));
        }
        for addr in &self.coordinators {
            check_host_port("coordinator", strip_scheme(addr))?;
        }
        if let Some(rack) = &self.rack
            && (rack.is_empty() || rack.chars().any(char::is_control))
        {
            return Err(bad(
                "rack",
                format!("must be non-empty printable text, got {rack:?}"),
            ));
        }
        if let Some(advertise) = &self.advertise {
            check_host_port("advertise", advertise)?;
        }
        let g = &self.group;
        if g.heartbeat_interval_ms == 0 {
            return Err(bad(
                "group-heartbeat-interval",
                "must be at least 1ms".to_owned(),
            ));
        }
        if g.min_session_timeout_ms == 0 || g.min_session_timeout_ms > g.max_session_timeout_ms {
            return Err(bad(
                "group-min-session-timeout",
                format!(
                    "must be at least 1ms and at most group-max-session-timeout ({} ms), got {} ms",
                    g.max_session_timeout_ms, g.min_session_timeout_ms
                ),
            ));
        }
        Ok(())
    }
}

/// The gRPC URI for a coordinator address: `host:port` gains `http://`.
pub(crate) fn coordinator_uri(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        ballast_net::uri(addr)
    }
}

/// The endpoint for the coordinator at `addr`, with this process's TLS
/// settings.
pub(crate) fn coordinator_endpoint(
    addr: &str,
) -> Result<tonic::transport::Endpoint, ballast_net::NetError> {
    let e = tonic::transport::Endpoint::from_shared(coordinator_uri(addr))
        .map_err(|e| ballast_net::NetError::Invalid(format!("{addr}: {e}")))?;
    ballast_net::secure(e)
}

fn strip_scheme(addr: &str) -> &str {
    addr.split_once("://").map_or(addr, |(_, rest)| rest)
}

/// `host:port` with a non-empty host and a port in 1..=65535.
fn check_host_port(field: &'static str, addr: &str) -> Result<(), AgentError> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err(bad(field, format!("expected host:port, got {addr:?}")));
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(bad(field, format!("expected host:port, got {addr:?}")));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(bad(field, format!("bad port in {addr:?}"))),
    }
}

fn bad(field: &'static str, reason: String) -> AgentError {
    AgentError::Config { field, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AgentConfig {
        AgentConfig::new(1, "/tmp/x", vec!["127.0.0.1:9000".to_owned()])
    }

    #[test]
    fn valid_config_passes() {
        config().validate().unwrap();
        let mut c = config();
        c.coordinators = vec!["http://localhost:1".into(), "[::1]:7".into()];
        c.rack = Some("a".into());
        c.advertise = Some("broker-1.example:9092".into());
        c.validate().unwrap();
    }

    #[test]
    fn errors_name_the_field() {
        let mut c = config();
        c.broker_id = -1;
        assert!(c.validate().unwrap_err().to_string().contains("broker-id"));
        let mut c = config();
        c.coordinators.clear();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("coordinator")
        );
        let mut c = config();
        c.coordinators = vec!["localhost".into()];
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("coordinator")
        );
        let mut c = config();
        c.coordinators = vec!["localhost:0".into()];
        assert!(c.validate().unwrap_err().to_string().contains("bad port"));
        let mut c = config();
        c.rack = Some(String::new());
        assert!(c.validate().unwrap_err().to_string().contains("rack"));
        let mut c = config();
        c.advertise = Some(":80".into());
        assert!(c.validate().unwrap_err().to_string().contains("advertise"));
    }

    #[test]
    fn uri_gains_a_scheme_only_when_missing() {
        assert_eq!(coordinator_uri("h:1"), "http://h:1");
        assert_eq!(coordinator_uri("https://h:1"), "https://h:1");
    }
}
