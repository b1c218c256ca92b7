//! Talking to agents' Data service: addresses, channels, and what an answer
//! means for a retry.
//!
//! Owns three things the producer, the consumer and the metadata cache
//! share: checking an agent address (`host:port`), one lazy tonic channel
//! per address ([`Connections`]), and the one place that decides which
//! transport statuses and Data-service error codes are worth retrying
//! ([`transport_retriable`], [`error_code_name`]). It keeps no cluster state
//! and never retries anything itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ballast_proto::v1::ErrorCode;
use ballast_proto::v1::data_client::DataClient;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// Largest gRPC message the client decodes from an agent when the caller
/// does not say more (tonic's own default is 4 MiB, too small for fetches).
pub(crate) const DEFAULT_MAX_DECODE: usize = 64 << 20;

/// The tonic endpoint for an agent `address` (`host:port` or
/// `http://host:port`), or why it is not one.
pub(crate) fn endpoint(address: &str, connect_timeout: Duration) -> Result<Endpoint, String> {
    let trimmed = address.trim();
    if trimmed.is_empty() {
        return Err("empty address".into());
    }
    if trimmed != address {
        return Err("leading or trailing whitespace".into());
    }
    let uri = match address.split_once("://") {
        None => ballast_net::uri(address),
        Some(("http", _)) => address.to_owned(),
        Some((scheme, _)) => {
            return Err(format!(
                "scheme {scheme:?} is not supported; give host:port"
            ));
        }
    };
    let endpoint = Endpoint::from_shared(uri).map_err(|e| format!("not host:port ({e})"))?;
    if endpoint.uri().port_u16().is_none() {
        return Err("no port; give host:port".into());
    }
    if !matches!(endpoint.uri().path(), "" | "/") {
        return Err("a path is not allowed; give host:port".into());
    }
    let endpoint = ballast_net::secure(endpoint).map_err(|e| e.to_string())?;
    // Per-call timeouts are the caller's (they also bound retries).
    Ok(endpoint
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(false))
}

/// One lazy channel per agent address, shared by clones.
#[derive(Debug, Clone)]
pub(crate) struct Connections {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    connect_timeout: Duration,
}

impl Connections {
    pub(crate) fn new(connect_timeout: Duration) -> Connections {
        Connections {
            channels: Arc::new(Mutex::new(HashMap::new())),
            connect_timeout,
        }
    }

    /// The channel to `address`, created (without dialling) on first use.
    pub(crate) fn channel(&self, address: &str) -> Result<Channel, String> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = channels.get(address) {
            return Ok(c.clone());
        }
        let c = endpoint(address, self.connect_timeout)?.connect_lazy();
        channels.insert(address.to_owned(), c.clone());
        Ok(c)
    }

    /// A Data client for `address`, its channel created (without dialling)
    /// on first use; decodes answers up to `max_decode` bytes.
    pub(crate) fn data_client(
        &self,
        address: &str,
        max_decode: usize,
    ) -> Result<DataClient<Channel>, String> {
        Ok(DataClient::new(self.channel(address)?)
            .max_decoding_message_size(max_decode)
            .max_encoding_message_size(usize::MAX))
    }

    /// Drops the channel to `address` (after a call to it timed out): the
    /// next call dials a new connection instead of queueing behind a stuck
    /// one.
    pub(crate) fn forget(&self, address: &str) {
        self.channels
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(address);
    }
}

/// A call that failed with this gRPC status may be repeated: the agent
/// could not be reached, went away, or did not answer in time. Everything
/// else (`UNIMPLEMENTED` from a server without the Data service,
/// `RESOURCE_EXHAUSTED` for a message over a size limit, `INVALID_ARGUMENT`)
/// would fail again.
pub(crate) fn transport_retriable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::Unknown
            | Code::Internal
    )
}

/// A Data-service error code's name without the `ERROR_CODE_` prefix
/// (`NOT_LEADER`), or `UNKNOWN_ERROR_CODE(n)` for a number this client does
/// not know.
pub fn error_code_name(code: i32) -> String {
    match ErrorCode::try_from(code) {
        Ok(c) => c.as_str_name().trim_start_matches("ERROR_CODE_").to_owned(),
        Err(_) => format!("UNKNOWN_ERROR_CODE({code})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        let t = Duration::from_secs(1);
        assert!(endpoint("127.0.0.1:9092", t).is_ok());
        assert!(endpoint("http://agent-1:9092", t).is_ok());
        assert!(endpoint("[::1]:9092", t).is_ok());
        let err = |a: &str| endpoint(a, t).err().unwrap_or_default();
        assert_eq!(err(""), "empty address");
        assert!(err("agent").contains("no port"));
        assert!(err("https://a:1").contains("\"https\""));
        assert!(err("a:1/x").contains("path"));
    }

    #[test]
    fn code_names() {
        assert_eq!(error_code_name(1), "NOT_LEADER");
        assert_eq!(error_code_name(0), "NONE");
        assert_eq!(error_code_name(99), "UNKNOWN_ERROR_CODE(99)");
        assert!(transport_retriable(Code::Unavailable));
        assert!(!transport_retriable(Code::Unimplemented));
        assert!(!transport_retriable(Code::ResourceExhausted));
    }
}
