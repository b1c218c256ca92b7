//! The control loop: register with the active coordinator, heartbeat, and
//! register again whenever the registration is lost.
//!
//! Addressing: the configured coordinators are tried in order. A call
//! refused with `FAILED_PRECONDITION` carrying the metadata key
//! [`ACTIVE_COORDINATOR_KEY`] (a standby) switches to that address at once;
//! an unreachable coordinator (`UNAVAILABLE`, deadline, transport error)
//! moves on to the next configured address, with capped exponential
//! backoff ([`Backoff`]: 100 ms doubling to 2 s).
//!
//! Registration: `ALREADY_EXISTS` means another live agent holds the broker
//! id. The agent stays unregistered (GetState says `registered = false`),
//! logs it as an error at most once a minute, and keeps retrying with
//! backoff, since the other agent may die. Other refusals are logged the
//! same way.
//!
//! A standby that knows no active coordinator yet (`FAILED_PRECONDITION`
//! without the key, message containing [`NOT_ACTIVE_MESSAGE`]) is treated as
//! unreachable: the agent moves on to the next address.
//!
//! Heartbeats go out every `heartbeat_interval_ms` from the Register
//! response. The registration is lost, and the agent registers again (and so
//! gets a new broker epoch), when a heartbeat is answered `fenced = true`,
//! refused with `NOT_FOUND` or with any other `FAILED_PRECONDITION` (an
//! epoch refusal), or when no heartbeat succeeded for `session_timeout_ms`.
//!
//! The address of the coordinator that last answered a registration or
//! heartbeat is published in [`AgentState`] (the replica manager sends
//! AlterIsr there, with the broker epoch of the registration).
//!
//! This module never touches the disk or the hosted partitions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ballast_proto::v1::broker_control_client::BrokerControlClient;
use ballast_proto::v1::{
    BrokerHeartbeatRequest, Endpoint as ProtoEndpoint, RegisterBrokerRequest,
    RegisterBrokerResponse,
};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tracing::{debug, error, info, warn};

use crate::config::coordinator_endpoint;
use crate::state::AgentState;

/// Metadata key a standby coordinator sets to the active one's address.
pub const ACTIVE_COORDINATOR_KEY: &str = "ballast-active-coordinator";
/// What a coordinator's refusal says when it is not the active one.
pub const NOT_ACTIVE_MESSAGE: &str = "not the active coordinator";

/// First retry delay.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest retry delay.
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A repeated refusal is logged at most this often.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);
/// Used when the coordinator sends 0.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// All hosted replica sizes go to the coordinator this often (for balancing
/// by disk); replicas being reassigned are reported every heartbeat.
const SIZE_REPORT_INTERVAL: Duration = Duration::from_secs(30);

/// What the agent tells the coordinator about itself.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub incarnation_id: String,
    /// Random per process start (RegisterBrokerRequest.process_id).
    pub process_id: String,
    pub rack: String,
    pub disk_capacity_bytes: u64,
    /// `host:port` of this agent's AgentControl server (also its client
    /// endpoint until the log issue adds a listener of its own).
    pub advertised: String,
}

/// Capped exponential backoff.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub fn new() -> Self {
        Self { next: BACKOFF_MIN }
    }

    /// The delay to wait now; doubles the next one up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        d
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// Logs a refusal once, then again only when it changes or a minute passed.
#[derive(Debug, Default)]
struct RateLimitedLog {
    last: Option<(String, Instant)>,
}

impl RateLimitedLog {
    fn should_log(&mut self, message: &str) -> bool {
        let now = Instant::now();
        let due = match &self.last {
            Some((m, at)) => m != message || now.duration_since(*at) >= REFUSAL_LOG_EVERY,
            None => true,
        };
        if due {
            self.last = Some((message.to_owned(), now));
        }
        due
    }

    fn clear(&mut self) {
        self.last = None;
    }
}

/// How a failed call should be handled.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// A standby named the active coordinator.
    Redirect(String),
    /// Another live agent holds this broker id (Register only).
    DuplicateBroker,
    /// The broker epoch is unknown or fenced (Heartbeat only).
    Fenced,
    /// The coordinator could not be reached, or is a standby that knows
    /// no active coordinator.
    Unreachable,
    /// Any other refusal.
    Refused,
}

fn classify(status: &Status, current: &str, heartbeat: bool) -> Failure {
    let redirect = status
        .metadata()
        .get(ACTIVE_COORDINATOR_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != current);
    match status.code() {
        Code::FailedPrecondition => match redirect {
            Some(to) => Failure::Redirect(to.to_owned()),
            None if status.message().contains(NOT_ACTIVE_MESSAGE) => Failure::Unreachable,
            None if heartbeat => Failure::Fenced,
            None => Failure::Refused,
        },
        Code::NotFound if heartbeat => Failure::Fenced,
        Code::AlreadyExists if !heartbeat => Failure::DuplicateBroker,
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            Failure::Unreachable
        }
        _ => Failure::Refused,
    }
}

/// The coordinator addresses: the configured list and where we are now.
#[derive(Debug)]
struct Addresses {
    configured: Vec<String>,
    /// Index in `configured` to try after the current one fails.
    next: usize,
    current: String,
}

impl Addresses {
    fn new(configured: Vec<String>) -> Self {
        let current = configured.first().cloned().unwrap_or_default();
        Self {
            next: 1 % configured.len().max(1),
            configured,
            current,
        }
    }

    fn advance(&mut self) {
        if let Some(a) = self.configured.get(self.next) {
            self.current = a.clone();
        }
        self.next = (self.next + 1) % self.configured.len().max(1);
    }

    fn redirect(&mut self, to: String) {
        self.current = to;
    }
}

/// The registration and heartbeat loop of one agent.
#[derive(Debug)]
pub(crate) struct ControlLoop {
    state: Arc<AgentState>,
    identity: Identity,
    addresses: Addresses,
    channels: HashMap<String, Channel>,
    cancel: CancellationToken,
    backoff: Backoff,
    refusals: RateLimitedLog,
}

/// Why a registration ended.
enum Lost {
    Fenced,
    SessionExpired,
    Cancelled,
}

impl ControlLoop {
    pub fn new(
        state: Arc<AgentState>,
        identity: Identity,
        coordinators: Vec<String>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            state,
            identity,
            addresses: Addresses::new(coordinators),
            channels: HashMap::new(),
            cancel,
            backoff: Backoff::new(),
            refusals: RateLimitedLog::default(),
        }
    }

    /// Runs until cancelled.
    pub async fn run(mut self) {
        loop {
            let Some(registered) = self.register().await else {
                return;
            };
            self.backoff.reset();
            match self.heartbeat(&registered).await {
                Lost::Cancelled => return,
                Lost::Fenced | Lost::SessionExpired => self.state.set_unregistered(),
            }
        }
    }

    fn client(&mut self, addr: &str) -> Option<BrokerControlClient<Channel>> {
        if let Some(ch) = self.channels.get(addr) {
            return Some(BrokerControlClient::new(ch.clone()));
        }
        match coordinator_endpoint(addr) {
            Ok(ep) => {
                let ch = ep.connect_timeout(CONNECT_TIMEOUT).connect_lazy();
                self.channels.insert(addr.to_owned(), ch.clone());
                Some(BrokerControlClient::new(ch))
            }
            Err(e) => {
                if self.refusals.should_log(&format!("bad address {addr}")) {
                    error!(coordinator = addr, error = %e, "invalid coordinator address");
                }
                None
            }
        }
    }

    /// Sleeps `d` unless cancelled first; false when cancelled.
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            () = self.cancel.cancelled() => false,
            () = tokio::time::sleep(d) => true,
        }
    }

    async fn backoff_sleep(&mut self) -> bool {
        let d = self.backoff.next_delay();
        self.sleep(d).await
    }

    /// Registers with the active coordinator; `None` when cancelled.
    async fn register(&mut self) -> Option<RegisterBrokerResponse> {
        let mut redirects_in_a_row = 0u32;
        loop {
            if self.cancel.is_cancelled() {
                return None;
            }
            let addr = self.addresses.current.clone();
            let Some(mut client) = self.client(&addr) else {
                self.addresses.advance();
                if !self.backoff_sleep().await {
                    return None;
                }
                continue;
            };
            let mut request = Request::new(RegisterBrokerRequest {
                broker_id: self.state.broker_id(),
                incarnation_id: self.identity.incarnation_id.clone(),
                endpoints: vec![ProtoEndpoint {
                    name: "client".to_owned(),
                    address: self.identity.advertised.clone(),
                }],
                rack: self.identity.rack.clone(),
                disk_capacity_bytes: self.identity.disk_capacity_bytes,
                control_address: self.identity.advertised.clone(),
                process_id: self.identity.process_id.clone(),
            });
            request.set_timeout(Duration::from_secs(5));
            let result = tokio::select! {
                () = self.cancel.cancelled() => return None,
                r = client.register(request) => r,
            };
            let status = match result {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    info!(
                        coordinator = %addr,
                        broker_epoch = resp.broker_epoch,
                        coordinator_epoch = resp.coordinator_epoch,
                        cluster_id = %resp.cluster_id,
                        "registered"
                    );
                    self.refusals.clear();
                    self.state.set_active_coordinator(&addr);
                    self.state
                        .set_registered(resp.broker_epoch, resp.cluster_id.clone());
                    return Some(resp);
                }
                Err(status) => status,
            };
            match classify(&status, &addr, false) {
                Failure::Redirect(to) => {
                    info!(from = %addr, to = %to, "standby coordinator redirected registration");
                    self.addresses.redirect(to);
                    redirects_in_a_row += 1;
                    // Follow one redirect at once; a chain of them backs off.
                    if redirects_in_a_row > 1 && !self.backoff_sleep().await {
                        return None;
                    }
                    continue;
                }
                Failure::DuplicateBroker => {
                    if self.refusals.should_log("duplicate") {
                        error!(
                            broker_id = self.state.broker_id(),
                            coordinator = %addr,
                            reason = status.message(),
                            "registration refused: this broker id is already registered by \
                             another live agent; retrying until it goes away"
                        );
                    }
                }
                Failure::Unreachable => {
                    // Now and then at warn: a refused TLS handshake (no
                    // cluster certificate) looks like this too.
                    if self.refusals.should_log(&format!("unreachable {addr}")) {
                        warn!(coordinator = %addr, error = %status, "cannot reach the coordinator to register; retrying");
                    } else {
                        debug!(coordinator = %addr, error = %status, "coordinator unreachable");
                    }
                    self.addresses.advance();
                }
                Failure::Refused | Failure::Fenced => {
                    if self.refusals.should_log(status.message()) {
                        error!(
                            coordinator = %addr,
                            code = ?status.code(),
                            reason = status.message(),
                            "registration refused; retrying"
                        );
                    }
                    self.addresses.advance();
                }
            }
            redirects_in_a_row = 0;
            self.state.set_unregistered();
            if !self.backoff_sleep().await {
                return None;
            }
        }
    }

    /// Heartbeats until the registration is lost or the loop is cancelled.
    async fn heartbeat(&mut self, reg: &RegisterBrokerResponse) -> Lost {
        let interval = match reg.heartbeat_interval_ms {
            0 => DEFAULT_HEARTBEAT,
            ms => Duration::from_millis(u64::from(ms)),
        };
        let session = match reg.session_timeout_ms {
            0 => interval * 6,
            ms => Duration::from_millis(u64::from(ms)),
        };
        let rpc_timeout = (session / 2).clamp(Duration::from_millis(200), Duration::from_secs(5));
        let mut last_ok = Instant::now();
        let mut wait = interval;
        // Whether the previous attempt was redirected by a standby.
        let mut redirected = false;
        // All replica sizes go with the first heartbeat and then every
        // SIZE_REPORT_INTERVAL; the others carry those being reassigned.
        let mut next_size_report = Instant::now();
        loop {
            if !self.sleep(wait).await {
                return Lost::Cancelled;
            }
            wait = interval;
            if last_ok.elapsed() > session {
                warn!(
                    session_timeout = ?session,
                    "no successful heartbeat within the session timeout; registering again"
                );
                return Lost::SessionExpired;
            }
            let addr = self.addresses.current.clone();
            let Some(mut client) = self.client(&addr) else {
                self.addresses.advance();
                continue;
            };
            let all_replicas = Instant::now() >= next_size_report;
            let state = Arc::clone(&self.state);
            let replica_sizes =
                tokio::task::spawn_blocking(move || state.replica_sizes(all_replicas))
                    .await
                    .unwrap_or_default();
            let mut request = Request::new(BrokerHeartbeatRequest {
                broker_id: self.state.broker_id(),
                broker_epoch: reg.broker_epoch,
                coordinator_epoch: self.state.highest_coordinator_epoch(),
                replica_sizes,
                all_replicas,
            });
            request.set_timeout(rpc_timeout);
            let result = tokio::select! {
                () = self.cancel.cancelled() => return Lost::Cancelled,
                r = client.heartbeat(request) => r,
            };
            match result {
                Ok(resp) if resp.get_ref().fenced => {
                    warn!(
                        broker_epoch = reg.broker_epoch,
                        "heartbeat answered fenced; registering again"
                    );
                    return Lost::Fenced;
                }
                Ok(_) => {
                    last_ok = Instant::now();
                    if all_replicas {
                        next_size_report = last_ok + SIZE_REPORT_INTERVAL;
                    }
                    redirected = false;
                    self.state.set_active_coordinator(&addr);
                }
                Err(status) => match classify(&status, &addr, true) {
                    Failure::Redirect(to) => {
                        info!(from = %addr, to = %to, "standby coordinator redirected heartbeat");
                        self.addresses.redirect(to);
                        // Follow one redirect at once; a chain of them waits.
                        if !redirected {
                            wait = Duration::ZERO;
                        }
                        redirected = true;
                    }
                    Failure::Fenced => {
                        warn!(
                            broker_epoch = reg.broker_epoch,
                            code = ?status.code(),
                            reason = status.message(),
                            "heartbeat refused; registering again"
                        );
                        return Lost::Fenced;
                    }
                    Failure::Unreachable | Failure::Refused | Failure::DuplicateBroker => {
                        debug!(coordinator = %addr, error = %status, "heartbeat failed");
                        self.addresses.advance();
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<_> = (0..7).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1600, 2000, 2000]);
        b.reset();
        assert_eq!(b.next_delay(), BACKOFF_MIN);
    }

    #[test]
    fn classification() {
        let mut standby = Status::failed_precondition("not the active coordinator");
        standby
            .metadata_mut()
            .insert(ACTIVE_COORDINATOR_KEY, MetadataValue::from_static("h:2"));
        assert_eq!(
            classify(&standby, "h:1", false),
            Failure::Redirect("h:2".into())
        );
        // A redirect to where we already are is not a redirect.
        assert_eq!(classify(&standby, "h:2", true), Failure::Unreachable);
        let epoch = Status::failed_precondition("stale broker epoch");
        assert_eq!(classify(&epoch, "h:1", true), Failure::Fenced);
        assert_eq!(classify(&epoch, "h:1", false), Failure::Refused);
        assert_eq!(
            classify(&Status::not_found("no such broker"), "h:1", true),
            Failure::Fenced
        );
        assert_eq!(
            classify(&Status::already_exists("broker 1"), "h:1", false),
            Failure::DuplicateBroker
        );
        assert_eq!(
            classify(&Status::unavailable("down"), "h:1", true),
            Failure::Unreachable
        );
        assert_eq!(
            classify(&Status::invalid_argument("bad rack"), "h:1", false),
            Failure::Refused
        );
        let lost = Status::failed_precondition(
            "not the active coordinator; no active coordinator is known yet",
        );
        assert_eq!(classify(&lost, "h:1", true), Failure::Unreachable);
        assert_eq!(classify(&lost, "h:1", false), Failure::Unreachable);
    }

    #[test]
    fn addresses_rotate_and_redirect() {
        let mut a = Addresses::new(vec!["a:1".into(), "b:1".into(), "c:1".into()]);
        assert_eq!(a.current, "a:1");
        a.advance();
        assert_eq!(a.current, "b:1");
        a.redirect("z:9".into());
        assert_eq!(a.current, "z:9");
        a.advance();
        assert_eq!(a.current, "c:1");
        a.advance();
        assert_eq!(a.current, "a:1");
        let mut one = Addresses::new(vec!["a:1".into()]);
        one.advance();
        assert_eq!(one.current, "a:1");
    }

    #[test]
    fn refusal_log_is_rate_limited_per_message() {
        let mut log = RateLimitedLog::default();
        assert!(log.should_log("dup"));
        assert!(!log.should_log("dup"));
        assert!(log.should_log("other"));
        log.clear();
        assert!(log.should_log("other"));
    }
}
