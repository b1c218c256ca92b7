//! The producer: records in, RecordBatch v2 `Produce` requests out to each
//! partition's leader, acknowledgements back to the caller.
//!
//! Owns the producer's task and its I/O. [`Producer::send`] only queues a
//! record (the call order is the order records of a partition are written);
//! one background task partitions it (Kafka's default partitioner, see
//! [`crate::partitioner`]), appends it to its partition's batch in the pure
//! `accumulator` module, sends ready batches to the partitions' leaders
//! (one `Produce` request per leader per round, carrying each partition's
//! queued batches, up to `max_request_bytes`),
//! and settles each record's [`DeliveryFuture`] from the answers. Leaders
//! come from the [`crate::metadata`] cache, which a `NOT_LEADER` hint
//! updates at once and a refresh updates otherwise.
//!
//! # Guarantees
//!
//! * **Order within a partition is kept**, retries included. With
//!   idempotence (the default) a partition has up to `max_in_flight`
//!   requests in flight (default 1, at most 5); the leader refuses a batch whose sequence does not
//!   follow the last one it wrote, so a request that overtakes an earlier
//!   one (the agent may handle two requests of one connection in either
//!   order) or follows a lost one is refused and sent again, and retries go
//!   one at a time in order (the rules are in the `accumulator` module).
//!   Without idempotence a partition has one request in flight, and a
//!   retried send goes again (same bytes) before any later batch.
//! * **With idempotence a record is written once**: a retry after a lost
//!   answer carries the same producer id, epoch and sequences, and the
//!   leader answers it with the offsets it already has. Without
//!   idempotence a record is acknowledged at most once but may be written
//!   twice: when an answer is lost (a request timed out, a connection
//!   dropped, `REQUEST_TIMED_OUT` or `NOT_ENOUGH_REPLICAS_AFTER_APPEND`
//!   from the leader), the retry writes the batch again, right after
//!   itself.
//! * Without idempotence, the one case where order can break: a request
//!   this producer gave up on (no answer within `request_timeout` plus a
//!   grace period) that the agent still applies after the retry was
//!   written. The agent is asked to answer within `request_timeout`, so
//!   this needs an agent that ignored its own deadline.
//! * Acknowledgements of a partition complete in order: a request answered
//!   before an earlier one of its partition waits for that one.
//! * Every record's future completes: acknowledged with its offset, or
//!   failed with a non-retriable error, or failed with
//!   [`ProduceError::Timeout`] once `delivery_timeout` has passed since its
//!   batch was started (a batch in flight is not failed before its answer).
//!   A failed batch of a partition does not stop the following ones: the
//!   caller sees a gap, never a reordering.
//! * `acks`: `All` is acknowledged once every in-sync replica has the
//!   batch; `Leader` once the leader wrote it (lost if the leader fails
//!   before a follower copies it); `None` once the agent took the request
//!   (the offset is then -1).
//!
//! ```no_run
//! # async fn demo() -> Result<(), ballast_client::ProduceError> {
//! use ballast_client::{Producer, ProducerConfig, ProducerRecord};
//!
//! let producer = Producer::connect(vec!["127.0.0.1:9092".into()], ProducerConfig::default())?;
//! // Queue many, then wait: records of a partition keep the send order.
//! let acks: Vec<_> = (0..100)
//!     .map(|i| producer.send(ProducerRecord::new("orders", format!("order {i}")).key("user-1")))
//!     .collect();
//! for ack in acks {
//!     let written = ack.await?;
//!     println!("{}-{} @ {}", written.topic, written.partition, written.offset);
//! }
//! producer.close().await;
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ballast_proto::v1::{
    ErrorCode, LeaderHint, ProducePartition, ProducePartitionResult, ProduceRequest,
    ProduceResponse,
};
use ballast_record::{BATCH_HEADER_LEN, BatchBuilder, Header, MAX_BATCH_BYTES};
use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};
use tonic::{Code, Status};

use crate::accumulator::{
    Accumulator, AccumulatorConfig, Completed, MAX_BATCHES_IN_FLIGHT, NewRecord, SendOutcome,
    TopicPartition,
};
use crate::connection::{Connections, DEFAULT_MAX_DECODE, error_code_name, transport_retriable};
use crate::metadata::{Metadata, MetadataError, MetadataOptions};
use crate::partitioner::{
    KeylessPartitioner, Partitioner, RoundRobinPartitioner, StickyPartitioner,
};
use crate::retry::code_name;

/// How long past `request_timeout` the producer waits for an answer before
/// it gives up on a request: the agent is asked to answer within
/// `request_timeout`, so its own timeout answer normally comes first.
const REQUEST_GRACE: Duration = Duration::from_secs(1);

/// The longest the producer's task sleeps without looking at its state.
const MAX_IDLE: Duration = Duration::from_secs(1);

/// Commands handled per wake-up before the task sends what is ready.
const COMMANDS_PER_ROUND: usize = 1024;

/// Acknowledgement level (Kafka's `acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// `acks=0`: done once the agent took the request; offsets are -1.
    None,
    /// `acks=1`: done once the leader wrote the batch.
    Leader,
    /// `acks=all`: done once every in-sync replica has the batch.
    #[default]
    All,
}

impl Acks {
    /// The wire value: 0, 1 or -1.
    pub fn wire(self) -> i32 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

/// How records without a key are spread over partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Keyless {
    /// Kafka's default (KIP-794): stick to one partition for about a
    /// batch's worth of bytes, then switch.
    #[default]
    Sticky,
    /// One record per partition in turn.
    RoundRobin,
}

/// Producer settings; the defaults are Kafka's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// Acknowledgement level.
    pub acks: Acks,
    /// How long a batch waits for more records once it has one
    /// (`linger.ms`).
    pub linger: Duration,
    /// A batch is sent once it reaches this many bytes (`batch.size`).
    pub batch_size_bytes: usize,
    /// Limit on one Produce request's records; a record larger than this
    /// is refused at once (`max.request.size`).
    pub max_request_bytes: usize,
    /// The agent is asked to answer within this; the producer gives up on
    /// a request a second later and retries (`request.timeout.ms`).
    pub request_timeout: Duration,
    /// A record not acknowledged this long after its batch started fails
    /// with [`ProduceError::Timeout`] (`delivery.timeout.ms`).
    pub delivery_timeout: Duration,
    /// Pause before the first retry of a batch; doubles per retry
    /// (`retry.backoff.ms`).
    pub retry_backoff: Duration,
    /// Longest pause between retries (`retry.backoff.max.ms`).
    pub retry_backoff_max: Duration,
    /// How long a record waits for its topic (and partition) to appear in
    /// metadata before it fails (`max.block.ms`, but the caller is never
    /// blocked).
    pub metadata_timeout: Duration,
    /// [`Producer::ready`] waits while more than this many bytes of
    /// records are not yet acknowledged (`buffer.memory`).
    pub buffer_memory: usize,
    /// Partitioning of records without a key.
    pub keyless: Keyless,
    /// Metadata refresh settings.
    pub metadata: MetadataOptions,
    /// Idempotence (`enable.idempotence`, on by default as in Kafka 3):
    /// batches carry a random producer id and per-partition sequences, so
    /// the leader writes a retried batch once. Off: a retry after a lost
    /// answer may write records twice.
    pub idempotence: bool,
    /// Requests of one partition in flight at once, 1 to 5
    /// (`max.in.flight.requests.per.connection`, per partition here;
    /// default 1, see [`ProducerConfig::default`]). Only
    /// with idempotence: without it a partition has one in flight, whatever
    /// this says. Above 5 is refused: the leader remembers the last 5
    /// batches of a producer, and a retry must find its batch there.
    pub max_in_flight: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size_bytes: 16 * 1024,
            max_request_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            delivery_timeout: Duration::from_secs(120),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            metadata_timeout: Duration::from_secs(60),
            buffer_memory: 32 * 1024 * 1024,
            keyless: Keyless::Sticky,
            metadata: MetadataOptions::default(),
            idempotence: true,
            // Kafka's default is 5. The agent now holds a request that
            // overtook an earlier one of the same producer until that one
            // is written (no out-of-order refusals), but on loopback 5 in
            // flight measured no faster than 1, and slower on 3 partitions
            // (docs/BENCHMARKS.md, "Several sends in flight"): 5 pays off
            // only where round trips are long.
            max_in_flight: 1,
        }
    }
}

impl ProducerConfig {
    fn validate(&self) -> Result<(), ProduceError> {
        let bad = |field: &'static str, reason: &str| {
            Err(ProduceError::InvalidConfig {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.batch_size_bytes == 0 {
            return bad("batch_size_bytes", "must be at least 1");
        }
        if self.max_request_bytes <= BATCH_HEADER_LEN {
            return bad("max_request_bytes", "must exceed the 61-byte batch header");
        }
        if self.request_timeout.is_zero() {
            return bad("request_timeout", "must be positive");
        }
        if self.request_timeout.as_millis() > u128::from(u32::MAX) {
            return bad("request_timeout", "must be below 49 days");
        }
        if self.delivery_timeout.is_zero() {
            return bad("delivery_timeout", "must be positive");
        }
        if self.buffer_memory == 0 {
            return bad("buffer_memory", "must be at least 1");
        }
        if self.max_in_flight == 0 {
            return bad("max_in_flight", "must be at least 1");
        }
        if self.max_in_flight > MAX_BATCHES_IN_FLIGHT {
            return bad(
                "max_in_flight",
                "must be at most 5: the leader deduplicates only a producer's last 5 batches",
            );
        }
        Ok(())
    }
}

/// A record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    /// Topic.
    pub topic: String,
    /// Partition; `None` to let the partitioner choose (murmur2 of the key,
    /// or the keyless partitioner).
    pub partition: Option<i32>,
    /// Key (`None` is Kafka's null key; an empty key is still a key).
    pub key: Option<Bytes>,
    /// Value (`None` is a tombstone).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// Create time in ms since the epoch; `None`: now.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    /// A keyless record with a value.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> ProducerRecord {
        ProducerRecord {
            topic: topic.into(),
            value: Some(value.into()),
            ..ProducerRecord::default()
        }
    }

    /// With a key.
    pub fn key(mut self, key: impl Into<Bytes>) -> ProducerRecord {
        self.key = Some(key.into());
        self
    }

    /// To this partition.
    pub fn partition(mut self, partition: i32) -> ProducerRecord {
        self.partition = Some(partition);
        self
    }

    /// With one more header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> ProducerRecord {
        self.headers.push(Header::new(key, value));
        self
    }

    /// With this create time (ms since the epoch).
    pub fn timestamp(mut self, timestamp: i64) -> ProducerRecord {
        self.timestamp = Some(timestamp);
        self
    }
}

/// Where an acknowledged record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset; -1 with `acks=0`.
    pub offset: i64,
    /// The record's create time.
    pub timestamp: i64,
}

/// Why a record was not produced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProduceError {
    /// No bootstrap address, a bad one, or the topic or partition never
    /// appeared in metadata.
    #[error(transparent)]
    Metadata(#[from] MetadataError),

    /// A setting is out of range.
    #[error("invalid producer config: {field}: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },

    /// [`Producer::connect`] was called outside a tokio runtime.
    #[error("a producer needs a tokio runtime: call Producer::connect inside one")]
    NoRuntime,

    /// The record alone is larger than a request or batch may be.
    #[error("record of up to {size} bytes exceeds the limit of {limit} bytes")]
    RecordTooLarge {
        /// Bytes the record takes in a batch of its own (upper bound).
        size: usize,
        /// `max_request_bytes` (or the largest batch, 16 MiB).
        limit: usize,
    },

    /// A negative partition was given.
    #[error("invalid partition {partition} for topic {topic:?}")]
    InvalidPartition {
        /// Topic.
        topic: String,
        /// The partition given.
        partition: i32,
    },

    /// The leader refused the batch with an error that a retry would not
    /// cure (`RECORD_TOO_LARGE`, `CORRUPT_MESSAGE`, `INVALID_REQUEST`, ...).
    #[error("{topic}-{partition}: {}: {message} (agent {address})", error_code_name(*.code))]
    Rejected {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The Data service's error code (see [`ErrorCode`]).
        code: i32,
        /// The agent's message.
        message: String,
        /// The agent that answered.
        address: String,
    },

    /// The agent's gRPC server refused the call in a way a retry would not
    /// cure (e.g. `UNIMPLEMENTED`: no Data service there).
    #[error("{topic}-{partition}: {} from agent {address}: {message}", code_name(*.code))]
    Transport {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The agent called.
        address: String,
        /// The gRPC status code.
        code: Code,
        /// The status message.
        message: String,
    },

    /// The agent's answer had no result for the partition.
    #[error("{topic}-{partition}: agent {address} answered without a result for the partition")]
    MalformedResponse {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The agent that answered.
        address: String,
    },

    /// Not acknowledged within `delivery_timeout`. If the batch was sent,
    /// it may have been written all the same.
    #[error(
        "{topic}-{partition}: not acknowledged within {:.1}s; last error: {last_error}",
        elapsed.as_secs_f64()
    )]
    Timeout {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Time since the batch started.
        elapsed: Duration,
        /// The last retriable error, or why the batch was never sent.
        last_error: String,
    },

    /// The producer was closed (or its task ended) before the record was
    /// sent.
    #[error("the producer was closed before the record was acknowledged")]
    Closed,
}

impl ProduceError {
    /// The Data service's error code behind a [`ProduceError::Rejected`].
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            ProduceError::Rejected { code, .. } => ErrorCode::try_from(*code).ok(),
            _ => None,
        }
    }
}

/// Completes when the record is acknowledged or has failed.
#[derive(Debug)]
#[must_use = "a DeliveryFuture does nothing unless awaited; dropping it does not cancel the send"]
pub struct DeliveryFuture {
    rx: oneshot::Receiver<Result<RecordMetadata, ProduceError>>,
}

impl DeliveryFuture {
    fn failed(error: ProduceError) -> DeliveryFuture {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Err(error));
        DeliveryFuture { rx }
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ProduceError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ProduceError::Closed)))
    }
}

/// A producer. Cheap to clone; clones share the task, the buffer and the
/// metadata. Dropping every clone lets the task deliver what it holds and
/// stop; [`Producer::close`] does the same and waits for it.
#[derive(Debug, Clone)]
pub struct Producer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    commands: mpsc::UnboundedSender<Command>,
    buffer: Arc<Buffer>,
    config: Arc<ProducerConfig>,
    metadata: Metadata,
    closed: AtomicBool,
}

/// Bytes of records sent and not yet settled, for [`Producer::ready`].
#[derive(Debug)]
struct Buffer {
    used: AtomicUsize,
    limit: usize,
    freed: Notify,
}

impl Buffer {
    fn add(&self, n: usize) {
        self.used.fetch_add(n, Ordering::SeqCst);
    }

    fn release(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::SeqCst);
        self.freed.notify_waiters();
    }

    async fn wait_below_limit(&self) {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.used.load(Ordering::SeqCst) < self.limit {
                return;
            }
            freed.await;
        }
    }
}

impl Producer {
    /// A producer that finds the cluster through the agents at `bootstrap`
    /// (`host:port` of their Data service; any agent will do). Starts its
    /// task on the current tokio runtime and dials nothing until the first
    /// record.
    pub fn connect(
        bootstrap: Vec<String>,
        config: ProducerConfig,
    ) -> Result<Producer, ProduceError> {
        config.validate()?;
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ProduceError::NoRuntime)?;
        let connections = Connections::new(config.metadata.connect_timeout);
        let metadata = Metadata::new(bootstrap, config.metadata.clone(), connections.clone())?;
        let config = Arc::new(config);
        let buffer = Arc::new(Buffer {
            used: AtomicUsize::new(0),
            limit: config.buffer_memory,
            freed: Notify::new(),
        });
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let runner = Runner {
            acc: Accumulator::new(AccumulatorConfig {
                batch_size: config.batch_size_bytes,
                linger: config.linger,
                delivery_timeout: config.delivery_timeout,
                retry_backoff: config.retry_backoff,
                retry_backoff_max: config.retry_backoff_max,
                producer_id: config.idempotence.then(producer_id),
                max_in_flight: if config.idempotence {
                    config.max_in_flight
                } else {
                    1
                },
            }),
            config: config.clone(),
            metadata: metadata.clone(),
            connections,
            buffer: buffer.clone(),
            partitioners: HashMap::new(),
            waiting: BTreeMap::new(),
            rng: seed(),
            next_seq: 0,
            outstanding: BTreeSet::new(),
            flushes: Vec::new(),
            closers: Vec::new(),
            commands: commands_rx,
            events_tx,
            events_rx,
            input_closed: false,
            refreshing: false,
            refresh_wanted: false,
            last_refresh_error: None,
            requests_in_flight: 0,
        };
        runtime.spawn(runner.run());
        Ok(Producer {
            shared: Arc::new(Shared {
                commands,
                buffer,
                config,
                metadata,
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Queues a record and returns at once; the future completes when the
    /// record is acknowledged (with its offset) or has failed. Records of a
    /// partition are written in the order of `send` calls. Never blocks:
    /// call [`Producer::ready`] first when producing faster than the
    /// cluster acknowledges.
    pub fn send(&self, record: ProducerRecord) -> DeliveryFuture {
        if self.shared.closed.load(Ordering::SeqCst) {
            return DeliveryFuture::failed(ProduceError::Closed);
        }
        if let Some(p) = record.partition.filter(|p| *p < 0) {
            return DeliveryFuture::failed(ProduceError::InvalidPartition {
                topic: record.topic,
                partition: p,
            });
        }
        let size = BATCH_HEADER_LEN
            + BatchBuilder::record_size_upper_bound(
                record.key.as_deref(),
                record.value.as_deref(),
                &record.headers,
            );
        let limit = self.shared.config.max_request_bytes.min(MAX_BATCH_BYTES);
        if size > limit {
            return DeliveryFuture::failed(ProduceError::RecordTooLarge { size, limit });
        }
        let (reply, rx) = oneshot::channel();
        let timestamp = record.timestamp.unwrap_or_else(now_ms);
        self.shared.buffer.add(size);
        let pending = Pending {
            record,
            timestamp,
            size,
            seq: 0,
            enqueued: tokio::time::Instant::now().into_std(),
            reply,
        };
        if let Err(mpsc::error::SendError(Command::Send(p))) =
            self.shared.commands.send(Command::Send(pending))
        {
            self.shared.buffer.release(p.size);
            let _ = p.reply.send(Err(ProduceError::Closed));
        }
        DeliveryFuture { rx }
    }

    /// Waits until less than `buffer_memory` bytes of records are waiting
    /// to be acknowledged.
    pub async fn ready(&self) {
        self.shared.buffer.wait_below_limit().await;
    }

    /// Bytes of records sent and not yet settled.
    pub fn buffered_bytes(&self) -> usize {
        self.shared.buffer.used.load(Ordering::SeqCst)
    }

    /// Sends every record queued before this call without waiting for the
    /// linger, and waits until each is settled (acknowledged or failed).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.shared.commands.send(Command::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Refuses further records, delivers (or fails) those queued, and waits
    /// until the producer's task has stopped. Other clones are closed too.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        let (tx, rx) = oneshot::channel();
        if self.shared.commands.send(Command::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// The topic's partition count, waiting up to `metadata_timeout` for it
    /// to appear in metadata.
    pub async fn partitions_for(&self, topic: &str) -> Result<i32, ProduceError> {
        let timeout = self.shared.config.metadata_timeout;
        Ok(self
            .shared
            .metadata
            .wait_for_topic(topic, None, timeout)
            .await?)
    }
}

/// A record queued by `send`, not yet in a batch.
#[derive(Debug)]
struct Pending {
    record: ProducerRecord,
    timestamp: i64,
    /// Buffer bytes accounted for it.
    size: usize,
    /// Order of arrival at the task (for flush).
    seq: u64,
    enqueued: Instant,
    reply: oneshot::Sender<Result<RecordMetadata, ProduceError>>,
}

/// A record in a batch: what is needed to settle it.
#[derive(Debug)]
struct Handle {
    seq: u64,
    size: usize,
    timestamp: i64,
    reply: oneshot::Sender<Result<RecordMetadata, ProduceError>>,
}

#[derive(Debug)]
enum Command {
    Send(Pending),
    Flush(oneshot::Sender<()>),
    Close(oneshot::Sender<()>),
}

#[derive(Debug)]
enum Event {
    Produced {
        broker_id: i32,
        address: String,
        /// Each partition with the id of its send.
        partitions: Vec<(TopicPartition, u64)>,
        result: Result<ProduceResponse, Status>,
    },
    Refreshed(Result<(), MetadataError>),
}

/// The producer's task state.
#[derive(Debug)]
struct Runner {
    config: Arc<ProducerConfig>,
    metadata: Metadata,
    connections: Connections,
    buffer: Arc<Buffer>,
    acc: Accumulator<Handle>,
    partitioners: HashMap<String, Partitioner>,
    /// Records whose topic (or partition) is not in metadata yet, in order.
    waiting: BTreeMap<String, VecDeque<Pending>>,
    rng: u64,
    next_seq: u64,
    /// Sequence numbers of records not settled yet.
    outstanding: BTreeSet<u64>,
    /// Flush callers, each with the first sequence number after its call.
    flushes: Vec<(u64, oneshot::Sender<()>)>,
    closers: Vec<oneshot::Sender<()>>,
    commands: mpsc::UnboundedReceiver<Command>,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    /// Every producer handle is gone: deliver what is held, then stop.
    input_closed: bool,
    refreshing: bool,
    refresh_wanted: bool,
    last_refresh_error: Option<String>,
    requests_in_flight: usize,
}

impl Runner {
    async fn run(mut self) {
        loop {
            let now = tokio::time::Instant::now().into_std();
            self.place_waiting(now);
            self.expire(now);
            let next_check = self.send_ready(now);
            self.maybe_refresh(now);
            self.settle_flushes();
            let stopping = self.input_closed || !self.closers.is_empty();
            if stopping && self.is_idle() {
                break;
            }
            let wake = self.next_wake(now, next_check);
            tokio::select! {
                biased;
                Some(event) = self.events_rx.recv() => self.on_event(event),
                command = self.commands.recv(), if !self.input_closed => match command {
                    Some(c) => {
                        self.on_command(c);
                        for _ in 1..COMMANDS_PER_ROUND {
                            match self.commands.try_recv() {
                                Ok(c) => self.on_command(c),
                                Err(_) => break,
                            }
                        }
                    }
                    None => self.input_closed = true,
                },
                () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
            }
        }
        // Anything that raced in after close is refused.
        self.commands.close();
        while let Ok(c) = self.commands.try_recv() {
            match c {
                Command::Send(p) => self.refuse(p, ProduceError::Closed),
                Command::Flush(tx) | Command::Close(tx) => {
                    let _ = tx.send(());
                }
            }
        }
        for (_, tx) in self.flushes.drain(..) {
            let _ = tx.send(());
        }
        for tx in self.closers.drain(..) {
            let _ = tx.send(());
        }
    }

    fn is_idle(&self) -> bool {
        self.acc.is_empty() && self.waiting.is_empty() && self.requests_in_flight == 0
    }

    fn next_wake(&self, now: Instant, next_check: Option<Instant>) -> Instant {
        let mut wake = now + MAX_IDLE;
        let mut earlier = |t: Option<Instant>| {
            if let Some(t) = t {
                wake = wake.min(t);
            }
        };
        earlier(next_check);
        earlier(self.acc.next_expiry());
        for q in self.waiting.values() {
            earlier(q.front().map(|p| p.enqueued + self.config.metadata_timeout));
        }
        wake.max(now)
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Send(mut p) => {
                p.seq = self.next_seq;
                self.next_seq += 1;
                self.outstanding.insert(p.seq);
                let topic = p.record.topic.clone();
                if self.metadata.with(|c| c.want(&topic)) {
                    self.refresh_wanted = true;
                }
                let queue_empty = self.waiting.get(&topic).is_none_or(VecDeque::is_empty);
                match self.placement(&topic, p.record.partition) {
                    Some((count, available)) if queue_empty => {
                        let now = tokio::time::Instant::now().into_std();
                        self.place(p, count, &available, now);
                    }
                    _ => {
                        self.refresh_wanted = true;
                        self.waiting.entry(topic).or_default().push_back(p);
                    }
                }
            }
            Command::Flush(tx) => self.flushes.push((self.next_seq, tx)),
            Command::Close(tx) => self.closers.push(tx),
        }
    }

    /// The topic's partition count and partitions with a leader, if the
    /// record can be placed now.
    fn placement(&self, topic: &str, partition: Option<i32>) -> Option<(i32, Vec<i32>)> {
        self.metadata.with(|c| {
            let n = c.partition_count(topic)?;
            if partition.is_some_and(|p| p >= n) {
                return None;
            }
            Some((n, c.available_partitions(topic)))
        })
    }

    fn place(&mut self, p: Pending, count: i32, available: &[i32], now: Instant) {
        let Pending {
            record,
            timestamp,
            size,
            seq,
            reply,
            ..
        } = p;
        let key = record.key.as_deref();
        let keyless = self.config.keyless;
        let batch_size = self.config.batch_size_bytes;
        let partitioner = self
            .partitioners
            .entry(record.topic.clone())
            .or_insert_with(|| {
                Partitioner::new(match keyless {
                    Keyless::Sticky => {
                        KeylessPartitioner::Sticky(StickyPartitioner::new(batch_size))
                    }
                    Keyless::RoundRobin => {
                        KeylessPartitioner::RoundRobin(RoundRobinPartitioner::new())
                    }
                })
            });
        let partition = match record.partition {
            Some(p) => p,
            None => {
                self.rng = splitmix64(self.rng);
                partitioner
                    .partition(key, count, available, (self.rng >> 32) as u32)
                    .unwrap_or(0)
            }
        };
        let tp = TopicPartition::new(record.topic.clone(), partition);
        let handle = Handle {
            seq,
            size,
            timestamp,
            reply,
        };
        let new = NewRecord {
            timestamp,
            key,
            value: record.value.as_deref(),
            headers: &record.headers,
        };
        match self.acc.append(&tp, new, handle, now) {
            Ok(appended) => {
                if record.partition.is_none() {
                    partitioner.record_appended(
                        key,
                        partition,
                        appended.bytes,
                        appended.batch_full,
                    );
                }
            }
            Err((handle, e)) => {
                let limit = MAX_BATCH_BYTES;
                tracing::debug!(%tp, error = %e, "record refused by the batch builder");
                self.settle(handle, Err(ProduceError::RecordTooLarge { size, limit }));
            }
        }
    }

    /// Places waiting records whose topic is now known; fails those that
    /// waited longer than `metadata_timeout`.
    fn place_waiting(&mut self, now: Instant) {
        let topics: Vec<String> = self.waiting.keys().cloned().collect();
        for topic in topics {
            while let Some(front) = self.waiting.get(&topic).and_then(VecDeque::front) {
                let partition = front.record.partition;
                let enqueued = front.enqueued;
                let placement = self.placement(&topic, partition);
                let expired = now >= enqueued + self.config.metadata_timeout;
                if placement.is_none() && !expired {
                    self.refresh_wanted = true;
                    break;
                }
                let Some(p) = self.waiting.get_mut(&topic).and_then(VecDeque::pop_front) else {
                    break;
                };
                match placement {
                    Some((count, available)) => self.place(p, count, &available, now),
                    None => {
                        let error = MetadataError::UnknownTopic {
                            topic: topic.clone(),
                            partition,
                            waited: now.saturating_duration_since(enqueued),
                            last_error: self.last_refresh_error.clone(),
                        };
                        self.refuse(p, error.into());
                    }
                }
            }
            if self.waiting.get(&topic).is_some_and(VecDeque::is_empty) {
                self.waiting.remove(&topic);
            }
        }
    }

    fn expire(&mut self, now: Instant) {
        for e in self.acc.expire(now) {
            let error = ProduceError::Timeout {
                topic: e.tp.topic.clone(),
                partition: e.tp.partition,
                elapsed: e.age,
                last_error: e
                    .last_error
                    .unwrap_or_else(|| "never sent: no leader known for the partition".into()),
            };
            for h in e.records {
                self.settle(h, Err(error.clone()));
            }
        }
        self.settle_delivered();
    }

    /// Sends every ready partition whose leader is known: one request per
    /// leader (its partitions' queued batches), split at
    /// `max_request_bytes`. Returns when to look again.
    fn send_ready(&mut self, now: Instant) -> Option<Instant> {
        let force = self.input_closed || !self.flushes.is_empty() || !self.closers.is_empty();
        let ready = self.acc.ready(now, force);
        let mut by_leader: BTreeMap<(i32, String), Vec<TopicPartition>> = BTreeMap::new();
        for tp in ready.partitions {
            match self.metadata.with(|c| c.leader(&tp.topic, tp.partition)) {
                Some(l) => by_leader
                    .entry((l.broker_id, l.address))
                    .or_default()
                    .push(tp),
                None => self.refresh_wanted = true,
            }
        }
        for ((broker_id, address), mut tps) in by_leader {
            // One send per partition per request (the agent appends a
            // request's partitions in order, so a second send of a
            // partition belongs in another request, in flight alongside).
            while !tps.is_empty() {
                let mut parts = Vec::new();
                let mut sent = Vec::new();
                let mut size = 0usize;
                for tp in &tps {
                    let next = self.acc.front_size(tp).unwrap_or(0);
                    if !parts.is_empty() && size + next > self.config.max_request_bytes {
                        self.dispatch(
                            broker_id,
                            &address,
                            std::mem::take(&mut parts),
                            std::mem::take(&mut sent),
                        );
                        size = 0;
                    }
                    let budget = self.config.max_request_bytes.saturating_sub(size);
                    if let Some(send) = self.acc.start_send(tp, budget) {
                        size += send.bytes.len();
                        parts.push(ProducePartition {
                            topic: tp.topic.clone(),
                            partition: tp.partition,
                            records: send.bytes,
                        });
                        sent.push((tp.clone(), send.id));
                    }
                }
                if !parts.is_empty() {
                    self.dispatch(broker_id, &address, parts, sent);
                }
                tps.retain(|tp| self.acc.is_ready(tp, now, force));
            }
        }
        ready.next_check
    }

    fn dispatch(
        &mut self,
        broker_id: i32,
        address: &str,
        parts: Vec<ProducePartition>,
        partitions: Vec<(TopicPartition, u64)>,
    ) {
        let request_timeout = self.config.request_timeout;
        let request = ProduceRequest {
            acks: self.config.acks.wire(),
            timeout_ms: u32::try_from(request_timeout.as_millis()).unwrap_or(u32::MAX),
            partitions: parts,
        };
        let client = self.connections.data_client(address, DEFAULT_MAX_DECODE);
        let connections = self.connections.clone();
        let events = self.events_tx.clone();
        let address = address.to_owned();
        self.requests_in_flight += 1;
        tokio::spawn(async move {
            let wait = request_timeout + REQUEST_GRACE;
            let result = match client {
                Err(reason) => Err(Status::unavailable(format!("invalid address: {reason}"))),
                Ok(mut client) => match tokio::time::timeout(wait, client.produce(request)).await {
                    Ok(r) => r.map(tonic::Response::into_inner),
                    Err(_) => {
                        connections.forget(&address);
                        Err(Status::deadline_exceeded(format!(
                            "no answer within {:.1}s",
                            wait.as_secs_f64()
                        )))
                    }
                },
            };
            let _ = events.send(Event::Produced {
                broker_id,
                address,
                partitions,
                result,
            });
        });
    }

    fn maybe_refresh(&mut self, now: Instant) {
        if self.refreshing {
            return;
        }
        let has_work = !self.acc.is_empty() || !self.waiting.is_empty();
        let max_age = self.config.metadata.max_age;
        let stale = has_work && self.metadata.with(|c| c.is_stale(now, max_age));
        if !(self.refresh_wanted || stale) {
            return;
        }
        self.refresh_wanted = false;
        self.refreshing = true;
        let metadata = self.metadata.clone();
        let events = self.events_tx.clone();
        tokio::spawn(async move {
            let result = metadata.refresh().await;
            let _ = events.send(Event::Refreshed(result));
        });
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Refreshed(result) => {
                self.refreshing = false;
                match result {
                    Ok(()) => self.last_refresh_error = None,
                    Err(e) => {
                        tracing::debug!(error = %e, "metadata refresh failed");
                        self.last_refresh_error = Some(e.to_string());
                    }
                }
            }
            Event::Produced {
                broker_id,
                address,
                partitions,
                result,
            } => {
                self.requests_in_flight -= 1;
                self.on_produced(broker_id, &address, partitions, result);
            }
        }
    }

    fn on_produced(
        &mut self,
        broker_id: i32,
        address: &str,
        partitions: Vec<(TopicPartition, u64)>,
        result: Result<ProduceResponse, Status>,
    ) {
        let now = tokio::time::Instant::now().into_std();
        match result {
            Err(status) => {
                let retriable = transport_retriable(status.code());
                let text = format!(
                    "{}: {} (agent {broker_id} at {address})",
                    code_name(status.code()),
                    status.message()
                );
                tracing::debug!(broker_id, address, error = %text, "produce request failed");
                if retriable {
                    self.refresh_wanted = true;
                }
                for (tp, id) in partitions {
                    let (outcome, fatal) = if retriable {
                        let outcome = SendOutcome::Retry {
                            error: text.clone(),
                            redirected: false,
                        };
                        (outcome, None)
                    } else {
                        let e = ProduceError::Transport {
                            topic: tp.topic.clone(),
                            partition: tp.partition,
                            address: address.to_owned(),
                            code: status.code(),
                            message: status.message().to_owned(),
                        };
                        (SendOutcome::Failed, Some(e))
                    };
                    let completed = self.acc.complete(&tp, id, outcome, now);
                    self.settle_batch(&tp, completed, fatal);
                }
            }
            Ok(response) => {
                let mut results: HashMap<(String, i32), ProducePartitionResult> = response
                    .results
                    .into_iter()
                    .map(|r| ((r.topic.clone(), r.partition), r))
                    .collect();
                for (tp, id) in partitions {
                    let result = results.remove(&(tp.topic.clone(), tp.partition));
                    let (outcome, fatal) = self.judge(&tp, result, broker_id, address);
                    let completed = self.acc.complete(&tp, id, outcome, now);
                    self.settle_batch(&tp, completed, fatal);
                }
            }
        }
        self.settle_delivered();
    }

    /// What one partition's result means: acknowledged, retry (after
    /// updating metadata as the error asks), or a failure to report.
    fn judge(
        &mut self,
        tp: &TopicPartition,
        result: Option<ProducePartitionResult>,
        broker_id: i32,
        address: &str,
    ) -> (SendOutcome, Option<ProduceError>) {
        let acks_none = self.config.acks == Acks::None;
        let Some(r) = result else {
            if acks_none {
                return (SendOutcome::Acked { base_offset: -1 }, None);
            }
            let e = ProduceError::MalformedResponse {
                topic: tp.topic.clone(),
                partition: tp.partition,
                address: address.to_owned(),
            };
            return (SendOutcome::Failed, Some(e));
        };
        let retry = |redirected: bool| {
            let error = format!(
                "{}: {} (agent {broker_id} at {address})",
                error_code_name(r.error),
                r.error_message
            );
            (SendOutcome::Retry { error, redirected }, None)
        };
        match ErrorCode::try_from(r.error) {
            Ok(ErrorCode::None) => {
                let base_offset = if acks_none { -1 } else { r.base_offset };
                (SendOutcome::Acked { base_offset }, None)
            }
            Ok(ErrorCode::NotLeader) => {
                let hint = r.leader_hint.clone().unwrap_or(LeaderHint {
                    leader_id: -1,
                    leader_epoch: -1,
                    address: String::new(),
                });
                let redirected = self
                    .metadata
                    .with(|c| c.apply_hint(&tp.topic, tp.partition, &hint, broker_id));
                if !redirected {
                    self.refresh_wanted = true;
                }
                retry(redirected)
            }
            Ok(
                ErrorCode::UnknownTopicOrPartition
                | ErrorCode::FencedLeaderEpoch
                | ErrorCode::UnknownLeaderEpoch
                | ErrorCode::StorageError,
            ) => {
                self.refresh_wanted = true;
                retry(false)
            }
            Ok(
                ErrorCode::NotEnoughReplicas
                | ErrorCode::NotEnoughReplicasAfterAppend
                | ErrorCode::RequestTimedOut,
            ) => retry(false),
            // Retried if an earlier batch of the partition explains it (the
            // accumulator judges), else this error.
            Ok(ErrorCode::OutOfOrderSequenceNumber) => {
                let e = ProduceError::Rejected {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    code: r.error,
                    message: r.error_message.clone(),
                    address: address.to_owned(),
                };
                let error = format!(
                    "{}: {} (agent {broker_id} at {address})",
                    error_code_name(r.error),
                    r.error_message
                );
                (SendOutcome::OutOfOrder { error }, Some(e))
            }
            Ok(
                ErrorCode::RecordTooLarge
                | ErrorCode::CorruptMessage
                | ErrorCode::OffsetOutOfRange
                | ErrorCode::InvalidRequest
                | ErrorCode::RequestTooLarge
                | ErrorCode::NotReplica
                | ErrorCode::InvalidTopic
                | ErrorCode::InvalidProducerEpoch,
            )
            // Group errors never answer a produce.
            | Ok(
                ErrorCode::NotCoordinator
                | ErrorCode::CoordinatorLoadInProgress
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::UnknownMemberId
                | ErrorCode::FencedMemberEpoch
                | ErrorCode::StaleMemberEpoch
                | ErrorCode::GroupIdNotFound
                | ErrorCode::NonEmptyGroup
                | ErrorCode::InvalidGroupId
                | ErrorCode::GroupMaxSizeReached
                | ErrorCode::OffsetMetadataTooLarge
                | ErrorCode::InvalidCommitOffset,
            )
            | Err(_) => {
                let e = ProduceError::Rejected {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                    code: r.error,
                    message: r.error_message.clone(),
                    address: address.to_owned(),
                };
                (SendOutcome::Failed, Some(e))
            }
        }
    }

    fn settle_batch(
        &mut self,
        tp: &TopicPartition,
        completed: Completed<Handle>,
        fatal: Option<ProduceError>,
    ) {
        match completed {
            // Handed out in order by `settle_delivered`.
            Completed::Acked | Completed::WillRetry | Completed::Split => {}
            Completed::Failed { records } => {
                let error = fatal.unwrap_or(ProduceError::Closed);
                for h in records {
                    self.settle(h, Err(error.clone()));
                }
            }
            Completed::NotInFlight => {
                tracing::warn!(%tp, "an answer for a partition with no batch in flight");
            }
        }
    }

    /// Settles the records the accumulator has found written, in order.
    fn settle_delivered(&mut self) {
        for d in self.acc.take_delivered() {
            for (i, h) in d.records.into_iter().enumerate() {
                let offset = if d.base_offset >= 0 {
                    d.base_offset + i as i64
                } else {
                    -1
                };
                let meta = RecordMetadata {
                    topic: d.tp.topic.clone(),
                    partition: d.tp.partition,
                    offset,
                    timestamp: h.timestamp,
                };
                self.settle(h, Ok(meta));
            }
        }
    }

    fn settle(&mut self, h: Handle, result: Result<RecordMetadata, ProduceError>) {
        self.outstanding.remove(&h.seq);
        self.buffer.release(h.size);
        let _ = h.reply.send(result);
    }

    fn refuse(&mut self, p: Pending, error: ProduceError) {
        self.outstanding.remove(&p.seq);
        self.buffer.release(p.size);
        let _ = p.reply.send(Err(error));
    }

    fn settle_flushes(&mut self) {
        if self.flushes.is_empty() {
            return;
        }
        let oldest = self.outstanding.first().copied();
        let (done, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut self.flushes)
            .into_iter()
            .partition(|(bound, _)| oldest.is_none_or(|o| o >= *bound));
        self.flushes = pending;
        for (_, tx) in done {
            let _ = tx.send(());
        }
    }
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A random producer id for idempotence: non-negative, as the log
/// requires (a collision between two live producers writing the same
/// partition has odds of about one in 2^63 per pair).
fn producer_id() -> i64 {
    (splitmix64(seed()) >> 1) as i64
}

/// A seed for the keyless partitioner's random picks.
fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        // Only the spread of keyless records depends on it.
        Err(_) => now_ms() as u64,
    }
}

/// One step of SplitMix64.
fn splitmix64(state: u64) -> u64 {
    let mut z = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_validated() {
        assert!(ProducerConfig::default().validate().is_ok());
        let e = ProducerConfig {
            batch_size_bytes: 0,
            ..ProducerConfig::default()
        }
        .validate()
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("invalid producer config: batch_size_bytes: must be at least 1")
        );
        let e = ProducerConfig {
            max_in_flight: 6,
            ..ProducerConfig::default()
        }
        .validate()
        .err()
        .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "invalid producer config: max_in_flight: must be at most 5: \
                 the leader deduplicates only a producer's last 5 batches"
            )
        );
        for n in 1..=5 {
            let c = ProducerConfig {
                max_in_flight: n,
                ..ProducerConfig::default()
            };
            assert!(c.validate().is_ok());
        }
    }

    #[test]
    fn connect_needs_a_runtime_and_addresses() {
        let e = Producer::connect(vec!["a:1".into()], ProducerConfig::default()).err();
        assert_eq!(e, Some(ProduceError::NoRuntime));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let e = Producer::connect(vec![], ProducerConfig::default()).err();
            assert_eq!(e, Some(ProduceError::Metadata(MetadataError::NoAddresses)));
            let e = Producer::connect(vec!["a".into()], ProducerConfig::default())
                .err()
                .map(|e| e.to_string());
            assert_eq!(
                e.as_deref(),
                Some("invalid bootstrap address \"a\": no port; give host:port")
            );
        });
    }

    #[tokio::test]
    async fn oversized_and_closed_sends_fail_at_once() {
        let config = ProducerConfig {
            max_request_bytes: 1_000,
            ..ProducerConfig::default()
        };
        let p = Producer::connect(vec!["127.0.0.1:1".into()], config).unwrap();
        let e = p.send(ProducerRecord::new("t", vec![0u8; 2_000])).await;
        assert!(
            matches!(e, Err(ProduceError::RecordTooLarge { limit: 1_000, .. })),
            "{e:?}"
        );
        let e = p.send(ProducerRecord::new("t", "v").partition(-1)).await;
        assert!(matches!(
            e,
            Err(ProduceError::InvalidPartition { partition: -1, .. })
        ));
        assert_eq!(p.buffered_bytes(), 0);
        p.close().await;
        assert_eq!(
            p.send(ProducerRecord::new("t", "v")).await,
            Err(ProduceError::Closed)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn unknown_topic_fails_after_the_metadata_timeout() {
        let config = ProducerConfig {
            metadata_timeout: Duration::from_secs(3),
            ..ProducerConfig::default()
        };
        // Nothing listens on port 1 of loopback: every refresh fails.
        let p = Producer::connect(vec!["127.0.0.1:1".into()], config).unwrap();
        let e = p.send(ProducerRecord::new("t", "v")).await.unwrap_err();
        match &e {
            ProduceError::Metadata(MetadataError::UnknownTopic {
                topic, last_error, ..
            }) => {
                assert_eq!(topic, "t");
                assert!(last_error.is_some(), "{e}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.buffered_bytes(), 0);
    }

    #[test]
    fn splitmix_moves() {
        assert_ne!(splitmix64(0), splitmix64(1));
        assert_eq!(Acks::All.wire(), -1);
        assert_eq!(Acks::None.wire(), 0);
        assert_eq!(Acks::Leader.wire(), 1);
    }
}
