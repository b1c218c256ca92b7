//! [`EtcdStore`]: the [`MetadataStore`] on a real etcd cluster (3.4+),
//! through the `etcd-client` crate.
//!
//! Owns the client and the translation between the store's types and etcd's,
//! including errors: etcd's refusals map to the precise [`StoreError`]
//! variants, and everything transient (a dead member, no leader, a timeout, a
//! broken connection) is retried with capped exponential backoff for a
//! bounded time, then reported as [`StoreError::Unavailable`].
//!
//! The client's measured traps, handled here (see docs ENVIRONMENT):
//! `Client::connect` is lazy, so `connect` probes with `status()`; HTTP/2
//! keep-alive must be at least 5 s against etcd 3.4 or the server drops the
//! connection (and every watch with it), so shorter intervals are refused;
//! with several endpoints the client keeps routing some calls to a dead
//! member, so every call retries on `Unavailable`.
//!
//! It must never retry a refusal (a failed compare is an answer, not an
//! error), never hide a compacted watch, and never add semantics etcd does
//! not have: [`LocalStore`](super::LocalStore) has to match it.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Client, ConnectOptions, DeleteOptions, EventType, GetOptions, KvClient, LeaseClient,
    MaintenanceClient, PutOptions, TxnOpResponse, WatchClient, WatchOptions,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{
    Compare, CompareOp, CompareTarget, KeyValue, Lease, MAX_REQUEST_BYTES, MAX_TXN_OPS,
    MetadataStore, Range, StoreError, StoreResult, Txn, TxnOp, TxnOpResult, TxnResponse,
    WatchEvent, WatchMessage, WatchStream, check_key, ttl_seconds,
};

/// The smallest HTTP/2 keep-alive interval etcd 3.4 tolerates.
pub const MIN_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// Largest response the client decodes (a big `range_prefix`).
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// How an [`EtcdStore`] connects and retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Timeout of one TCP/HTTP2 connection attempt.
    pub connect_timeout: Duration,
    /// Timeout of one attempt of one call (a retry follows if the budget
    /// allows).
    pub request_timeout: Duration,
    /// Total time a call keeps retrying transient failures before it returns
    /// [`StoreError::Unavailable`]. Also bounds how long a broken watch tries
    /// to resume before its stream ends.
    pub retry_budget: Duration,
    /// HTTP/2 keep-alive ping interval; at least [`MIN_KEEP_ALIVE_INTERVAL`].
    pub keep_alive_interval: Duration,
    /// How long a keep-alive ping may go unanswered before the connection is
    /// considered dead.
    pub keep_alive_timeout: Duration,
    /// TLS to etcd (endpoints `https://...`): the CA (PEM) etcd's
    /// certificate chains to, and a client certificate and key (PEM) when
    /// etcd requires one (`--client-cert-auth`).
    pub tls: Option<EtcdTls>,
}

/// TLS settings of the etcd connection.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA certificate(s), PEM.
    pub ca: Vec<u8>,
    /// Client certificate chain and key, PEM.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("EtcdTls")
            .field("identity", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
            retry_budget: Duration::from_secs(5),
            keep_alive_interval: Duration::from_secs(10),
            keep_alive_timeout: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// The [`MetadataStore`] on etcd. Cheap to clone (clones share connections).
#[derive(Clone)]
pub struct EtcdStore {
    /// Kept so the balanced channel's endpoint set stays open.
    _client: Client,
    kv: KvClient,
    watch: WatchClient,
    lease: LeaseClient,
    maintenance: MaintenanceClient,
    endpoints: Vec<String>,
    options: EtcdOptions,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.endpoints)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// What a failed call was about, to name it in the mapped error.
#[derive(Debug, Clone, Copy, Default)]
struct ErrorContext {
    lease: i64,
    revision: i64,
    ops: usize,
    bytes: usize,
}

/// A failed attempt: retry it, or give this answer.
enum Failure {
    Retry(String),
    Fatal(StoreError),
}

fn classify(error: etcd_client::Error, ctx: ErrorContext) -> Failure {
    use etcd_client::Error as E;
    match error {
        E::GRpcStatus(status) => classify_status(&status, ctx),
        E::TransportError(e) => Failure::Retry(format!("transport error: {e}")),
        E::IoError(e) => Failure::Retry(format!("io error: {e}")),
        E::LeaseKeepAliveError(message) if message.contains("lease not found") => {
            Failure::Fatal(StoreError::LeaseNotFound(ctx.lease))
        }
        // Both come from a request channel of a stream that broke.
        E::LeaseKeepAliveError(message) | E::WatchError(message) => Failure::Retry(message),
        E::InvalidArgs(message) => Failure::Fatal(StoreError::InvalidArgument(message)),
        E::InvalidUri(e) => Failure::Fatal(StoreError::InvalidArgument(format!(
            "invalid etcd endpoint: {e}"
        ))),
        other => Failure::Fatal(StoreError::Internal(format!("etcd: {other}"))),
    }
}

fn classify_status(status: &tonic::Status, ctx: ErrorContext) -> Failure {
    use tonic::Code;
    let message = status.message();
    let retry = || Failure::Retry(format!("{:?}: {message}", status.code()));
    let fatal = Failure::Fatal;
    match status.code() {
        // etcd: "no leader", "leader changed", "request timed out"; the
        // client: "tcp connect error" to a dead member.
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded | Code::Aborted => retry(),
        Code::Unknown if looks_like_transport(message) => retry(),
        Code::ResourceExhausted if message.contains("too many requests") => retry(),
        Code::ResourceExhausted if message.contains("larger than max") => {
            fatal(StoreError::RequestTooLarge {
                bytes: ctx.bytes,
                max: MAX_REQUEST_BYTES,
            })
        }
        _ if message.contains("lease not found") => fatal(StoreError::LeaseNotFound(ctx.lease)),
        _ if message.contains("required revision has been compacted") => {
            fatal(StoreError::Compacted {
                requested: ctx.revision,
                compacted: 0,
            })
        }
        _ if message.contains("required revision is a future revision") => {
            fatal(StoreError::FutureRevision {
                requested: ctx.revision,
                current: 0,
            })
        }
        _ if message.contains("too many operations in txn request") => {
            fatal(StoreError::TooManyOps {
                ops: ctx.ops,
                max: MAX_TXN_OPS,
            })
        }
        _ if message.contains("request is too large") => fatal(StoreError::RequestTooLarge {
            bytes: ctx.bytes,
            max: MAX_REQUEST_BYTES,
        }),
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
            fatal(StoreError::InvalidArgument(format!("etcd: {message}")))
        }
        code => fatal(StoreError::Internal(format!("etcd: {code:?}: {message}"))),
    }
}

fn looks_like_transport(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "transport",
        "connect",
        "connection",
        "broken pipe",
        "h2 protocol",
        "stream closed",
        "reset",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

fn kv_from(kv: &etcd_client::KeyValue) -> KeyValue {
    KeyValue {
        key: kv.key().to_vec(),
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
        version: kv.version(),
        lease: kv.lease(),
    }
}

fn compare_to_etcd(compare: &Compare) -> etcd_client::Compare {
    let op = match compare.op {
        CompareOp::Equal => etcd_client::CompareOp::Equal,
        CompareOp::NotEqual => etcd_client::CompareOp::NotEqual,
        CompareOp::Greater => etcd_client::CompareOp::Greater,
        CompareOp::Less => etcd_client::CompareOp::Less,
    };
    let key = compare.key.clone();
    match &compare.target {
        CompareTarget::Version(v) => etcd_client::Compare::version(key, op, *v),
        CompareTarget::CreateRevision(r) => etcd_client::Compare::create_revision(key, op, *r),
        CompareTarget::ModRevision(r) => etcd_client::Compare::mod_revision(key, op, *r),
        CompareTarget::Value(v) => etcd_client::Compare::value(key, op, v.clone()),
    }
}

fn op_to_etcd(op: &TxnOp) -> etcd_client::TxnOp {
    match op {
        TxnOp::Put { key, value, lease } => {
            let options = (*lease != 0).then(|| PutOptions::new().with_lease(*lease));
            etcd_client::TxnOp::put(key.clone(), value.clone(), options)
        }
        TxnOp::Delete { key } => etcd_client::TxnOp::delete(key.clone(), None),
        TxnOp::DeletePrefix { prefix } => {
            etcd_client::TxnOp::delete(prefix.clone(), Some(DeleteOptions::new().with_prefix()))
        }
        TxnOp::Get { key } => etcd_client::TxnOp::get(key.clone(), None),
        TxnOp::GetPrefix { prefix } => {
            etcd_client::TxnOp::get(prefix.clone(), Some(GetOptions::new().with_prefix()))
        }
    }
}

fn txn_to_etcd(txn: &Txn) -> etcd_client::Txn {
    etcd_client::Txn::new()
        .when(txn.compares.iter().map(compare_to_etcd).collect::<Vec<_>>())
        .and_then(txn.success.iter().map(op_to_etcd).collect::<Vec<_>>())
        .or_else(txn.failure.iter().map(op_to_etcd).collect::<Vec<_>>())
}

/// A key read (count only) for the current raft term; its value is never
/// used, and it need not exist.
const TERM_PROBE_KEY: &[u8] = b"ballast-term-probe";

/// Whether a lease renewal answered in raft term `renewed_in` counts, given
/// the term `current` that a linearizable read made after it saw (0: the
/// header was missing, which does not count).
fn renewal_term_current(renewed_in: u64, current: u64) -> bool {
    renewed_in != 0 && renewed_in >= current
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> StoreResult<i64> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| StoreError::Internal("etcd response without header".into()))
}

/// Splits a watch response into one message per revision.
fn group_events(events: &[etcd_client::Event]) -> Vec<(i64, Vec<WatchEvent>)> {
    let mut grouped: Vec<(i64, Vec<WatchEvent>)> = Vec::new();
    for event in events {
        let Some(kv) = event.kv() else {
            continue;
        };
        let revision = kv.mod_revision();
        let event = match event.event_type() {
            EventType::Put => WatchEvent::Put(kv_from(kv)),
            EventType::Delete => WatchEvent::Delete {
                key: kv.key().to_vec(),
                mod_revision: revision,
            },
        };
        match grouped.last_mut() {
            Some((last, batch)) if *last == revision => batch.push(event),
            _ => grouped.push((revision, vec![event])),
        }
    }
    grouped
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (`http://host:port`) and checks that it
    /// answers (the client itself connects lazily): `Unavailable` if no
    /// endpoint answers within the retry budget.
    pub async fn connect(endpoints: &[String], options: EtcdOptions) -> StoreResult<EtcdStore> {
        if endpoints.is_empty() {
            return Err(StoreError::InvalidArgument("no etcd endpoint given".into()));
        }
        if options.keep_alive_interval < MIN_KEEP_ALIVE_INTERVAL {
            return Err(StoreError::InvalidArgument(format!(
                "etcd keep-alive interval {:?} is below {:?}: etcd 3.4 drops such connections",
                options.keep_alive_interval, MIN_KEEP_ALIVE_INTERVAL
            )));
        }
        let mut connect = ConnectOptions::new()
            .with_keep_alive(options.keep_alive_interval, options.keep_alive_timeout)
            .with_connect_timeout(options.connect_timeout)
            .with_require_leader(true);
        if let Some(tls) = &options.tls {
            if let Some(plain) = endpoints.iter().find(|e| !e.starts_with("https://")) {
                return Err(StoreError::InvalidArgument(format!(
                    "etcd endpoint {plain}: TLS is configured, give https:// endpoints"
                )));
            }
            let mut t = etcd_client::TlsOptions::new()
                .ca_certificate(etcd_client::Certificate::from_pem(&tls.ca));
            if let Some((cert, key)) = &tls.identity {
                t = t.identity(etcd_client::Identity::from_pem(cert, key));
            }
            connect = connect.with_tls(t);
        }
        let client =
            Client::connect(endpoints, Some(connect))
                .await
                .map_err(|e| match classify(e, ErrorContext::default()) {
                    Failure::Retry(message) => StoreError::Unavailable(message),
                    Failure::Fatal(error) => error,
                })?;
        let store = EtcdStore {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            lease: client.lease_client(),
            maintenance: client.maintenance_client(),
            _client: client,
            endpoints: endpoints.to_vec(),
            options,
        };
        store
            .call("status", ErrorContext::default(), || {
                let mut maintenance = store.maintenance.clone();
                async move { maintenance.status().await }
            })
            .await?;
        Ok(store)
    }

    /// The endpoints this store was connected with.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retry budget
    /// is spent.
    async fn call<T, F, Fut>(&self, what: &str, ctx: ErrorContext, mut attempt: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.options.retry_budget;
        let mut backoff = Duration::from_millis(20);
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let timeout = self
                .options
                .request_timeout
                .min(remaining.max(Duration::from_millis(100)));
            let failure = match tokio::time::timeout(timeout, attempt()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(error)) => classify(error, ctx),
                Err(_) => Failure::Retry(format!("no answer within {timeout:?}")),
            };
            let reason = match failure {
                Failure::Fatal(error) => return Err(error),
                Failure::Retry(reason) => reason,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Unavailable(format!(
                    "etcd {what} failed {attempts} times in {:?} ({}): last error: {reason}",
                    self.options.retry_budget,
                    self.endpoints.join(",")
                )));
            }
            tracing::debug!(what, attempts, %reason, "etcd call failed, retrying");
            // The last attempt starts at the deadline at the latest.
            tokio::time::sleep(backoff.min(deadline - now)).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    async fn open_watch(&self, prefix: &[u8], start: i64) -> StoreResult<etcd_client::WatchStream> {
        let ctx = ErrorContext {
            revision: start,
            ..ErrorContext::default()
        };
        self.call("watch", ctx, || {
            let mut watch = self.watch.clone();
            let prefix = prefix.to_vec();
            async move {
                watch
                    .watch(
                        prefix,
                        Some(WatchOptions::new().with_prefix().with_start_revision(start)),
                    )
                    .await
            }
        })
        .await
    }
}

/// Forwards one etcd watch into a [`WatchStream`], resuming it from the next
/// revision when it breaks, for at most the retry budget without progress.
async fn forward_watch(
    store: EtcdStore,
    prefix: Vec<u8>,
    mut next: i64,
    mut stream: etcd_client::WatchStream,
    tx: mpsc::Sender<WatchMessage>,
) {
    let mut broken_since: Option<Instant> = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        let reason = loop {
            let message = tokio::select! {
                message = stream.message() => message,
                () = tx.closed() => return,
            };
            let response = match message {
                Ok(Some(response)) => response,
                Ok(None) => break "watch stream closed by etcd".to_string(),
                Err(e) => break e.to_string(),
            };
            if response.compact_revision() != 0 {
                let compact_revision = response.compact_revision();
                let _ = tx.send(WatchMessage::Compacted { compact_revision }).await;
                return;
            }
            if response.canceled() {
                break format!("watch canceled by etcd: {}", response.cancel_reason());
            }
            for (revision, events) in group_events(response.events()) {
                if tx
                    .send(WatchMessage::Events { revision, events })
                    .await
                    .is_err()
                {
                    return;
                }
                next = revision + 1;
                broken_since = None;
                backoff = Duration::from_millis(50);
            }
        };
        let since = *broken_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= store.options.retry_budget {
            tracing::warn!(%reason, next, "etcd watch could not be resumed, ending it");
            return;
        }
        tracing::debug!(%reason, next, "etcd watch broke, resuming");
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = tx.closed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
        stream = match store.open_watch(&prefix, next).await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, next, "etcd watch could not be resumed, ending it");
                return;
            }
        };
    }
}

#[async_trait]
impl MetadataStore for EtcdStore {
    async fn get(&self, key: &[u8]) -> StoreResult<Option<KeyValue>> {
        check_key(key)?;
        let response = self
            .call("get", ErrorContext::default(), || {
                let mut kv = self.kv.clone();
                let key = key.to_vec();
                async move { kv.get(key, None).await }
            })
            .await?;
        Ok(response.kvs().first().map(kv_from))
    }

    async fn range_prefix(&self, prefix: &[u8]) -> StoreResult<Range> {
        let response = self
            .call("range", ErrorContext::default(), || {
                let mut kv = self.kv.clone();
                let prefix = prefix.to_vec();
                async move { kv.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        Ok(Range {
            kvs: response.kvs().iter().map(kv_from).collect(),
            revision: header_revision(response.header())?,
        })
    }

    async fn txn(&self, txn: Txn) -> StoreResult<TxnResponse> {
        txn.validate()?;
        let ctx = ErrorContext {
            lease: txn
                .success
                .iter()
                .chain(&txn.failure)
                .find_map(|op| match op {
                    TxnOp::Put { lease, .. } if *lease != 0 => Some(*lease),
                    _ => None,
                })
                .unwrap_or(0),
            ops: txn.success.len().max(txn.failure.len()),
            bytes: txn.request_bytes(),
            ..ErrorContext::default()
        };
        let request = txn_to_etcd(&txn);
        let response = self
            .call("txn", ctx, || {
                let mut kv = self.kv.clone();
                let request = request.clone();
                async move { kv.txn(request).await }
            })
            .await?;
        let results = response
            .op_responses()
            .into_iter()
            .map(|op| match op {
                TxnOpResponse::Put(_) => Ok(TxnOpResult::Put),
                TxnOpResponse::Delete(delete) => Ok(TxnOpResult::Delete {
                    deleted: delete.deleted(),
                }),
                TxnOpResponse::Get(get) => {
                    Ok(TxnOpResult::Get(get.kvs().iter().map(kv_from).collect()))
                }
                TxnOpResponse::Txn(_) => Err(StoreError::Internal(
                    "etcd answered a nested txn that was never sent".into(),
                )),
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(TxnResponse {
            succeeded: response.succeeded(),
            revision: header_revision(response.header())?,
            results,
        })
    }

    async fn lease_grant(&self, ttl: Duration) -> StoreResult<Lease> {
        let secs = ttl_seconds(ttl);
        let response = self
            .call("lease grant", ErrorContext::default(), || {
                let mut lease = self.lease.clone();
                async move { lease.grant(secs, None).await }
            })
            .await?;
        if !response.error().is_empty() {
            return Err(StoreError::Internal(format!(
                "etcd lease grant: {}",
                response.error()
            )));
        }
        Ok(Lease {
            id: response.id(),
            ttl: Duration::from_secs(response.ttl().max(0).unsigned_abs()),
        })
    }

    async fn renewal_connection(&self) -> StoreResult<Option<std::sync::Arc<dyn MetadataStore>>> {
        let store = EtcdStore::connect(&self.endpoints, self.options.clone()).await?;
        Ok(Some(std::sync::Arc::new(store)))
    }

    async fn lease_keep_alive(&self, id: i64) -> StoreResult<Duration> {
        let ctx = ErrorContext {
            lease: id,
            ..ErrorContext::default()
        };
        let (ttl, renewed_in) = self
            .call("lease keep-alive", ctx, || {
                let mut lease = self.lease.clone();
                async move {
                    // Opening the stream renews once (and checks the lease);
                    // a second renewal on it reports the TTL.
                    let (mut keeper, mut stream) = lease.keep_alive(id).await?;
                    keeper.keep_alive().await?;
                    let response = stream.message().await?;
                    Ok(response.map_or((0, 0), |r| {
                        (r.ttl(), r.header().map_or(0, |h| h.raft_term()))
                    }))
                }
            })
            .await?;
        if ttl <= 0 {
            return Err(StoreError::LeaseNotFound(id));
        }
        // etcd before 3.4.25 / 3.5.8 (Debian's 3.4.23 among them) lets a
        // deposed leader that has not yet heard of its successor (it was
        // paused, or its disk stalled) renew a lease in its own lessor
        // only (etcd-io/etcd#15247): the renewal answers success while the
        // real leader lets the lease expire. A linearizable read cannot be
        // served by such a member (its read index needs a quorum of the
        // current term), so it tells the current term: a renewal answered
        // in an older term is not counted. A legitimate election in
        // between also fails the check, which only costs one renewal.
        let current = self
            .call("lease keep-alive term check", ctx, || {
                let mut kv = self.kv.clone();
                async move {
                    kv.get(TERM_PROBE_KEY, Some(GetOptions::new().with_count_only()))
                        .await
                }
            })
            .await?
            .header()
            .map_or(0, |h| h.raft_term());
        if !renewal_term_current(renewed_in, current) {
            return Err(StoreError::Unavailable(format!(
                "lease {id} renewal answered in raft term {renewed_in} but the cluster is at term \
                 {current} (a deposed etcd leader); not counted"
            )));
        }
        Ok(Duration::from_secs(ttl.unsigned_abs()))
    }

    async fn lease_revoke(&self, id: i64) -> StoreResult<()> {
        let ctx = ErrorContext {
            lease: id,
            ..ErrorContext::default()
        };
        self.call("lease revoke", ctx, || {
            let mut lease = self.lease.clone();
            async move { lease.revoke(id).await }
        })
        .await?;
        Ok(())
    }

    async fn watch_prefix(&self, prefix: &[u8], start_revision: i64) -> StoreResult<WatchStream> {
        let next = if start_revision <= 0 {
            self.current_revision().await? + 1
        } else {
            start_revision
        };
        let stream = self.open_watch(prefix, next).await?;
        let (tx, watch_stream) = WatchStream::channel();
        tokio::spawn(forward_watch(
            self.clone(),
            prefix.to_vec(),
            next,
            stream,
            tx,
        ));
        Ok(watch_stream)
    }

    async fn compact(&self, revision: i64) -> StoreResult<()> {
        let ctx = ErrorContext {
            revision,
            ..ErrorContext::default()
        };
        let result = self
            .call("compact", ctx, || {
                let mut kv = self.kv.clone();
                async move { kv.compact(revision, None).await }
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(StoreError::FutureRevision { requested, .. }) => Err(StoreError::FutureRevision {
                requested,
                current: self.current_revision().await?,
            }),
            Err(e) => Err(e),
        }
    }

    async fn current_revision(&self) -> StoreResult<i64> {
        let response = self
            .call("get revision", ErrorContext::default(), || {
                let mut kv = self.kv.clone();
                async move {
                    kv.get(vec![0u8], Some(GetOptions::new().with_count_only()))
                        .await
                }
            })
            .await?;
        header_revision(response.header())
    }
}

#[cfg(test)]
mod tests {
    use super::renewal_term_current;

    #[test]
    fn a_renewal_counts_only_in_the_current_term() {
        assert!(renewal_term_current(7, 7));
        // Answered by a deposed leader still in term 6.
        assert!(!renewal_term_current(6, 7));
        // The read landed on a member that had not yet seen term 8: the
        // renewal's own term is the newer one.
        assert!(renewal_term_current(8, 7));
        assert!(!renewal_term_current(0, 7), "no header: not counted");
        assert!(!renewal_term_current(0, 0));
    }
}
