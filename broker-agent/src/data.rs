//! The Data gRPC service (produce, fetch, list offsets, metadata), served
//! on the same server and port as AgentControl. A thin edge over
//! [`crate::replica`]: it validates requests, runs the partitions' log work
//! on blocking threads, waits (acks=all, long polls) without holding any
//! lock, and turns [`ReplicaError`]s into per-partition error codes with
//! leader hints.
//!
//! # Produce
//! Per partition, in request order: not hosted here → NOT_LEADER with the
//! leader from the pushed metadata when it knows one, else
//! UNKNOWN_TOPIC_OR_PARTITION; hosted but not led → NOT_LEADER with the
//! leader hint (id, epoch, `client` address); each batch is checked before
//! anything is written (CRC and structure → CORRUPT_MESSAGE, larger than
//! `max.message.bytes` → RECORD_TOO_LARGE, compressed → INVALID_REQUEST);
//! `__consumer_offsets` is refused with INVALID_TOPIC (only the group
//! coordinator writes it);
//! acks=all under `replication.mode=sync` with a committed ISR smaller
//! than `min.insync.replicas` → NOT_ENOUGH_REPLICAS (nothing written);
//! a request of an idempotent producer that overtook its producer's
//! earlier request waits briefly for it (see [`wait_for_overtaken`]);
//! then the leader appends (and fsyncs first when the topic's flush policy
//! says so, always under `flush.mode=sync`). acks=0 and acks=1 answer
//! after that. acks=all under sync replication answers once the high
//! watermark passes the records (every ISR member has them), with
//! NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR fell below
//! `min.insync.replicas` first, REQUEST_TIMED_OUT at the request's
//! timeout (0: the default; capped), NOT_LEADER if leadership moved;
//! under `replication.mode=async` (MetaQ's ASYNC_MASTER) acks=all answers
//! at once like acks=1. The whole request is refused with
//! REQUEST_TOO_LARGE past `max_request_bytes` of records (gRPC refuses
//! messages far beyond that at the transport). acks=0 still gets an
//! answer: gRPC has no one-way calls.
//!
//! # Fetch
//! Consumers (`replica_id` = -1) read from the leader only, batches below
//! the high watermark; OFFSET_OUT_OF_RANGE carries the log start and end
//! offsets. Followers (`replica_id` >= 0, a replica, with a current broker
//! epoch) read up to the log end, and their fetch offset is their
//! progress (see [`crate::replica::isr`]); the answer carries
//! `diverging_epoch` when their log diverges. `current_leader_epoch` >= 0
//! is checked (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH). Long poll: the
//! answer waits up to `max_wait_ms` (capped) until `min_bytes` are
//! available, a partition errs, or a follower must truncate. Sizes: at
//! most `max_bytes` (capped) in all and `partition_max_bytes` per
//! partition, except that the first batch found is returned whole.
//!
//! A stopping agent ends long polls at once and answers pending acks=all
//! waits with NOT_LEADER (the records may survive; the producer should go
//! to the next leader), so shutdown never waits for a producer's timeout.
//!
//! # ListOffsets
//! -2: the log start; -1: the high watermark; otherwise the first batch
//! whose max timestamp is at least the one asked for, and never one at or
//! past the high watermark (-1 when none).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use ballast_proto::v1::data_server::Data;
use ballast_proto::v1::{
    EpochEndOffset as ProtoEpochEndOffset, ErrorCode, FetchPartition, FetchPartitionResult,
    FetchRequest, FetchResponse, LeaderHint, ListOffsetsPartition, ListOffsetsRequest,
    ListOffsetsResponse, ListOffsetsResult, MetadataBroker, MetadataRequest, MetadataResponse,
    PartitionMetadata, ProducePartition, ProducePartitionResult, ProduceRequest, ProduceResponse,
    TopicMetadata,
};
use ballast_record::{RecordError, SplitError, split_batches, validate_for_append};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use tracing::{debug, instrument};

use crate::replica::partition::{AckResult, Offsets, Partition};
use crate::replica::{ReplicaError, ReplicaManager, wall_clock_ms};

/// Serves Data for one agent.
/// How long a produce request that overtook an earlier one of its
/// idempotent producer waits for it (see [`wait_for_overtaken`]).
const OVERTAKEN_WAIT: Duration = Duration::from_millis(200);

/// A producer with several requests of one partition in flight sends them
/// in sequence order, but they reach the append in whatever order the
/// transport and the tasks deliver them. A request whose first batch lies
/// ahead of its producer's next sequence waits here, up to
/// [`OVERTAKEN_WAIT`], until the earlier request is written, so that it is
/// appended instead of refused with OUT_OF_ORDER_SEQUENCE_NUMBER and sent
/// again. Past the wait (the earlier request was lost) the append decides
/// as before. Requests in order, duplicates and batches without a producer
/// do not wait.
async fn wait_for_overtaken(p: &Partition, records: &[u8]) {
    let Ok(first) = ballast_record::BatchHeader::parse(records) else {
        return;
    };
    if first.producer_id < 0 {
        return;
    }
    let deadline = Instant::now() + OVERTAKEN_WAIT;
    let mut changes = p.subscribe();
    loop {
        let retry_after = match p.sequence_ahead(&first) {
            Some(false) => return,
            Some(true) => OVERTAKEN_WAIT,
            // An append holds the log: look again when it is done.
            None => Duration::from_millis(1),
        };
        let wake = deadline.min(Instant::now() + retry_after);
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = tokio::time::sleep_until(wake) => {}
        }
        if Instant::now() >= deadline {
            return;
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct DataService {
    manager: Arc<ReplicaManager>,
    /// Follower fetches need a cluster certificate.
    cluster_certs: bool,
}

impl DataService {
    /// A produce request's partition results with the record bytes each
    /// carried.
    async fn produce_inner(&self, req: ProduceRequest) -> Vec<(ProducePartitionResult, usize)> {
        let config = self.manager.config();
        let size: usize = req.partitions.iter().map(|p| p.records.len()).sum();
        let refuse_all = if size > config.max_request_bytes {
            Some(ReplicaError::RequestTooLarge {
                size,
                max: config.max_request_bytes,
            })
        } else if !matches!(req.acks, -1..=1) {
            Some(ReplicaError::InvalidRequest(format!(
                "acks must be -1 (all), 0 or 1, got {}",
                req.acks
            )))
        } else {
            None
        };
        if let Some(e) = refuse_all {
            let results: Vec<ProducePartitionResult> = req
                .partitions
                .into_iter()
                .map(|p| self.produce_error(p.topic, p.partition, &e))
                .collect();
            return results.into_iter().map(|r| (r, 0)).collect();
        }
        let timeout = match req.timeout_ms {
            0 => config.default_produce_timeout,
            ms => millis(ms, config.max_produce_timeout),
        };
        let deadline = Instant::now() + timeout;
        let acks_all = req.acks == -1;
        let mut results = Vec::with_capacity(req.partitions.len());
        let mut sizes = Vec::with_capacity(req.partitions.len());
        let mut waits = Vec::new();
        for pp in req.partitions {
            let (topic, partition) = (pp.topic.clone(), pp.partition);
            sizes.push(pp.records.len());
            match self.produce_one(pp, acks_all).await {
                Ok((result, wait)) => {
                    if let Some(rx) = wait {
                        waits.push((results.len(), rx));
                    }
                    results.push(result);
                }
                Err(e) => results.push(self.produce_error(topic, partition, &e)),
            }
        }
        let gone = ReplicaError::NotLeader {
            leader: -1,
            leader_epoch: -1,
        };
        for (i, rx) in waits {
            let outcome = tokio::select! {
                r = tokio::time::timeout_at(deadline, rx) => match r {
                    Ok(Ok(r)) => r,
                    // The partition closed (removed from this agent).
                    Ok(Err(_)) => Err(gone.clone()),
                    Err(_) => Err(ReplicaError::RequestTimedOut {
                        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    }),
                },
                // The agent is stopping: the producer should find the next
                // leader.
                () = self.manager.cancelled() => Err(gone.clone()),
            };
            if let Err(e) = outcome {
                let r = &results[i];
                results[i] = self.produce_error(r.topic.clone(), r.partition, &e);
            }
        }
        results.into_iter().zip(sizes).collect()
    }

    /// A fetch request's answer.
    async fn fetch_inner(&self, req: FetchRequest) -> FetchResponse {
        let config = self.manager.config();
        let replica = (req.replica_id >= 0).then_some(req.replica_id);
        if let Some(r) = replica {
            let known = self.manager.metadata().broker_epochs.get(&r).copied();
            if let Some(current) = known
                && req.broker_epoch < current
            {
                let e = ReplicaError::NotReplica(format!(
                    "broker {r} fetched with broker epoch {}, current is {current}",
                    req.broker_epoch
                ));
                let results = req
                    .partitions
                    .into_iter()
                    .map(|p| self.fetch_error(p.topic, p.partition, &e))
                    .collect();
                return FetchResponse { results };
            }
        }
        let max_bytes = match req.max_bytes {
            0 => config.max_fetch_bytes,
            n => (n as usize).min(config.max_fetch_bytes),
        };
        let deadline = Instant::now() + millis(req.max_wait_ms, config.max_fetch_wait);
        let parts: Vec<(FetchPartition, Option<Arc<Partition>>)> = req
            .partitions
            .into_iter()
            .map(|fp| {
                let p = self.manager.find(&fp.topic, fp.partition);
                (fp, p)
            })
            .collect();
        let mut rxs: Vec<watch::Receiver<Offsets>> = parts
            .iter()
            .filter_map(|(_, p)| p.as_ref().map(|p| p.subscribe()))
            .collect();
        loop {
            let (results, bytes, urgent) = self.fetch_once(parts.clone(), replica, max_bytes).await;
            let enough = bytes > 0 && bytes >= req.min_bytes as usize;
            let stopping = self.manager.is_stopping();
            if enough || urgent || stopping || req.min_bytes == 0 || Instant::now() >= deadline {
                return FetchResponse { results };
            }
            tokio::select! {
                () = wait_any(&mut rxs, deadline) => {}
                () = self.manager.cancelled() => {}
            }
        }
    }

    pub fn new(manager: Arc<ReplicaManager>) -> Self {
        Self {
            manager,
            cluster_certs: false,
        }
    }

    /// Require a cluster certificate (mutual TLS) of follower fetches.
    pub fn cluster_certs(self, required: bool) -> Self {
        Self {
            cluster_certs: required,
            ..self
        }
    }

    /// The leader hint for an error, from the pushed metadata.
    fn hint(&self, topic: &str, partition: i32, e: &ReplicaError) -> Option<LeaderHint> {
        let ReplicaError::NotLeader {
            leader,
            leader_epoch,
        } = *e
        else {
            return None;
        };
        let meta = self.manager.metadata();
        let (leader, leader_epoch) = if leader >= 0 {
            (leader, leader_epoch)
        } else {
            meta.leaders
                .get(&(topic.to_owned(), partition))
                .copied()
                .unwrap_or((-1, -1))
        };
        Some(LeaderHint {
            leader_id: leader,
            leader_epoch,
            address: meta.addresses.get(&leader).cloned().unwrap_or_default(),
        })
    }

    /// A hosted partition, or the error for one that is not: NOT_LEADER
    /// when the metadata names a leader elsewhere.
    fn lookup(&self, topic: &str, partition: i32) -> Result<Arc<Partition>, ReplicaError> {
        if let Some(p) = self.manager.find(topic, partition) {
            return Ok(p);
        }
        match self
            .manager
            .metadata()
            .leaders
            .get(&(topic.to_owned(), partition))
        {
            Some(&(leader, leader_epoch)) if leader >= 0 && leader != self.manager.broker_id() => {
                Err(ReplicaError::NotLeader {
                    leader,
                    leader_epoch,
                })
            }
            _ => Err(ReplicaError::UnknownTopicOrPartition),
        }
    }

    fn produce_error(
        &self,
        topic: String,
        partition: i32,
        e: &ReplicaError,
    ) -> ProducePartitionResult {
        ProducePartitionResult {
            leader_hint: self.hint(&topic, partition, e),
            topic,
            partition,
            error: e.code() as i32,
            error_message: e.to_string(),
            base_offset: -1,
            log_start_offset: -1,
        }
    }

    fn fetch_error(&self, topic: String, partition: i32, e: &ReplicaError) -> FetchPartitionResult {
        let (log_start, log_end) = match *e {
            ReplicaError::OffsetOutOfRange {
                log_start, log_end, ..
            } => (log_start, log_end),
            _ => (-1, -1),
        };
        FetchPartitionResult {
            leader_hint: self.hint(&topic, partition, e),
            topic,
            partition,
            error: e.code() as i32,
            error_message: e.to_string(),
            high_watermark: -1,
            log_start_offset: log_start,
            log_end_offset: log_end,
            records: Vec::new(),
            diverging_epoch: None,
        }
    }

    /// Appends one partition's batches; `Ok` carries the result and, for
    /// acks=all under sync replication, what to wait for.
    #[instrument(skip_all, fields(
        topic = %pp.topic,
        partition = pp.partition,
        broker = self.manager.broker_id(),
        leader_epoch = tracing::field::Empty,
    ))]
    async fn produce_one(
        &self,
        pp: ProducePartition,
        acks_all: bool,
    ) -> Result<(ProducePartitionResult, Option<oneshot::Receiver<AckResult>>), ReplicaError> {
        if pp.topic == crate::group::OFFSETS_TOPIC {
            return Err(ReplicaError::InvalidTopic(pp.topic));
        }
        let p = self.lookup(&pp.topic, pp.partition)?;
        if let Some(epoch) = p.leading_epoch() {
            tracing::Span::current().record("leader_epoch", epoch);
        }
        let max = p.settings().log.max_message_bytes;
        let wall = wall_clock_ms();
        let now = self.manager.now_ms();
        let records = pp.records;
        wait_for_overtaken(&p, &records).await;
        let appended = tokio::task::spawn_blocking(move || {
            validate_batches(&records, max)?;
            p.append(&records, acks_all, wall, now)
        })
        .await
        .map_err(|e| ReplicaError::Storage(e.to_string()))??;
        debug!(
            base_offset = appended.base_offset,
            log_start = appended.log_start,
            "appended"
        );
        Ok((
            ProducePartitionResult {
                topic: pp.topic,
                partition: pp.partition,
                error: ErrorCode::None as i32,
                error_message: String::new(),
                base_offset: appended.base_offset,
                log_start_offset: appended.log_start,
                leader_hint: None,
            },
            appended.replicated,
        ))
    }

    /// One pass over a fetch's partitions: (results, record bytes, whether
    /// to answer now regardless of size).
    async fn fetch_once(
        &self,
        parts: Vec<(FetchPartition, Option<Arc<Partition>>)>,
        replica: Option<i32>,
        max_bytes: usize,
    ) -> (Vec<FetchPartitionResult>, usize, bool) {
        let now = self.manager.now_ms();
        let this = self.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut results = Vec::with_capacity(parts.len());
            let mut total = 0usize;
            let mut urgent = false;
            for (fp, p) in parts {
                let Some(p) = p else {
                    let e = this
                        .lookup(&fp.topic, fp.partition)
                        .err()
                        .unwrap_or(ReplicaError::UnknownTopicOrPartition);
                    results.push(this.fetch_error(fp.topic, fp.partition, &e));
                    urgent = true;
                    continue;
                };
                let budget = max_bytes.saturating_sub(total);
                let per_partition = match fp.partition_max_bytes {
                    0 => budget,
                    n => budget.min(n as usize),
                };
                // The log returns at least one batch; once something was
                // read, a batch that does not fit the rest of the budget is
                // dropped (a follower's progress is still recorded).
                let limit = per_partition.max(1);
                let result = match replica {
                    Some(r) => {
                        let (result, changes) = p.serve_replica_fetch(
                            r,
                            fp.fetch_offset,
                            fp.current_leader_epoch,
                            fp.last_fetched_epoch,
                            limit,
                            now,
                        );
                        this.manager.dispatch(&p, changes);
                        result
                    }
                    None => p.serve_consumer_fetch(
                        fp.fetch_offset,
                        fp.current_leader_epoch,
                        fp.last_fetched_epoch,
                        limit,
                    ),
                };
                match result {
                    Ok(mut d) => {
                        if total > 0 && d.records.len() > budget {
                            d.records.clear();
                        }
                        total += d.records.len();
                        if d.diverging.is_some() {
                            urgent = true;
                        }
                        results.push(FetchPartitionResult {
                            topic: fp.topic,
                            partition: fp.partition,
                            error: ErrorCode::None as i32,
                            error_message: String::new(),
                            high_watermark: d.high_watermark,
                            log_start_offset: d.log_start,
                            log_end_offset: d.log_end,
                            records: d.records,
                            leader_hint: None,
                            diverging_epoch: d.diverging.map(|e| ProtoEpochEndOffset {
                                epoch: e.epoch,
                                end_offset: e.end_offset,
                            }),
                        });
                    }
                    Err(e) => {
                        urgent = true;
                        results.push(this.fetch_error(fp.topic, fp.partition, &e));
                    }
                }
            }
            (results, total, urgent)
        })
        .await;
        outcome.unwrap_or_else(|e| {
            debug!(error = %e, "fetch task failed");
            (Vec::new(), 0, true)
        })
    }
}

/// Checks a produce request's batches before anything is written: CRC and
/// structure (CORRUPT_MESSAGE), size (RECORD_TOO_LARGE), compression
/// (INVALID_REQUEST: only uncompressed batches are accepted for now).
/// Public (re-exported at the crate root) so that the fuzzer runs this very
/// gate.
pub fn validate_batches(bytes: &[u8], max_message_bytes: usize) -> Result<(), ReplicaError> {
    if bytes.is_empty() {
        return Err(ReplicaError::InvalidRequest("no record batches".to_owned()));
    }
    for (i, batch) in split_batches(bytes).enumerate() {
        let (h, b) = match batch {
            Ok(hb) => hb,
            Err(SplitError {
                error: RecordError::InvalidLength(len),
                ..
            }) if len > 0 && len as u64 + 12 > max_message_bytes as u64 => {
                return Err(ReplicaError::RecordTooLarge {
                    size: usize::try_from(len)
                        .unwrap_or(usize::MAX)
                        .saturating_add(12),
                    max: max_message_bytes,
                });
            }
            Err(e) => {
                return Err(ReplicaError::CorruptMessage(format!(
                    "batch {i}: {}",
                    e.error
                )));
            }
        };
        if h.total_len() > max_message_bytes {
            return Err(ReplicaError::RecordTooLarge {
                size: h.total_len(),
                max: max_message_bytes,
            });
        }
        match validate_for_append(b) {
            Ok(_) => {}
            Err(e @ RecordError::UnsupportedCompression(_)) => {
                return Err(ReplicaError::InvalidRequest(format!("batch {i}: {e}")));
            }
            Err(e) => return Err(ReplicaError::CorruptMessage(format!("batch {i}: {e}"))),
        }
    }
    Ok(())
}

/// Waits until any of `rxs` changes or `deadline` passes.
async fn wait_any(rxs: &mut [watch::Receiver<Offsets>], deadline: Instant) {
    type Changed<'a> =
        Pin<Box<dyn Future<Output = Result<(), watch::error::RecvError>> + Send + 'a>>;
    let mut futures: Vec<Changed<'_>> = rxs
        .iter_mut()
        .map(|rx| Box::pin(rx.changed()) as Changed<'_>)
        .collect();
    let any = std::future::poll_fn(move |cx| {
        for f in &mut futures {
            if f.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    });
    let _ = tokio::time::timeout_at(deadline, any).await;
}

fn millis(ms: u32, cap: Duration) -> Duration {
    Duration::from_millis(u64::from(ms)).min(cap)
}

#[tonic::async_trait]
impl Data for DataService {
    #[instrument(skip_all, fields(broker = self.manager.broker_id(), acks = request.get_ref().acks, partitions = request.get_ref().partitions.len()))]
    async fn produce(
        &self,
        request: Request<ProduceRequest>,
    ) -> Result<Response<ProduceResponse>, Status> {
        let started = Instant::now();
        let req = request.into_inner();
        let acks = req.acks;
        let results = self.produce_inner(req).await;
        let (mut ok, mut failed, mut bytes) = (0u64, 0u64, 0u64);
        for (r, size) in &results {
            if r.error == ErrorCode::None as i32 {
                ok += 1;
                bytes += *size as u64;
            } else {
                failed += 1;
            }
        }
        self.manager
            .metrics()
            .produced(acks, ok, failed, bytes, started.elapsed());
        Ok(Response::new(ProduceResponse {
            results: results.into_iter().map(|(r, _)| r).collect(),
        }))
    }

    #[instrument(skip_all, fields(broker = self.manager.broker_id(), replica = request.get_ref().replica_id, replica_broker_epoch = request.get_ref().broker_epoch, partitions = request.get_ref().partitions.len()))]
    async fn fetch(
        &self,
        request: Request<FetchRequest>,
    ) -> Result<Response<FetchResponse>, Status> {
        let started = Instant::now();
        if request.get_ref().replica_id >= 0 {
            ballast_net::require_cluster_cert(&request, self.cluster_certs, "a follower fetch")?;
        }
        let req = request.into_inner();
        let replica = req.replica_id >= 0;
        let response = self.fetch_inner(req).await;
        let bytes: u64 = response
            .results
            .iter()
            .map(|r| r.records.len() as u64)
            .sum();
        self.manager
            .metrics()
            .fetched(replica, bytes, started.elapsed());
        Ok(Response::new(response))
    }

    #[instrument(skip_all, fields(partitions = request.get_ref().partitions.len()))]
    async fn list_offsets(
        &self,
        request: Request<ListOffsetsRequest>,
    ) -> Result<Response<ListOffsetsResponse>, Status> {
        let req = request.into_inner();
        let mut results = Vec::with_capacity(req.partitions.len());
        for lp in req.partitions {
            let ListOffsetsPartition {
                topic,
                partition,
                timestamp,
                current_leader_epoch,
            } = lp;
            let found = match self.lookup(&topic, partition) {
                Ok(p) => tokio::task::spawn_blocking(move || {
                    p.list_offset(timestamp, current_leader_epoch)
                })
                .await
                .unwrap_or_else(|e| Err(ReplicaError::Storage(e.to_string()))),
                Err(e) => Err(e),
            };
            results.push(match found {
                Ok(o) => ListOffsetsResult {
                    topic,
                    partition,
                    error: ErrorCode::None as i32,
                    error_message: String::new(),
                    offset: o.offset,
                    timestamp: o.timestamp,
                    leader_epoch: o.leader_epoch,
                    leader_hint: None,
                },
                Err(e) => ListOffsetsResult {
                    leader_hint: self.hint(&topic, partition, &e),
                    topic,
                    partition,
                    error: e.code() as i32,
                    error_message: e.to_string(),
                    offset: -1,
                    timestamp: -1,
                    leader_epoch: -1,
                },
            });
        }
        Ok(Response::new(ListOffsetsResponse { results }))
    }

    async fn metadata(
        &self,
        request: Request<MetadataRequest>,
    ) -> Result<Response<MetadataResponse>, Status> {
        let req = request.into_inner();
        let meta = self.manager.metadata();
        let brokers = meta
            .metadata
            .brokers
            .iter()
            .filter(|b| !b.fenced)
            .map(|b| MetadataBroker {
                broker_id: b.broker_id,
                address: meta
                    .addresses
                    .get(&b.broker_id)
                    .cloned()
                    .unwrap_or_default(),
                rack: b.rack.clone(),
            })
            .collect();
        let wanted: Option<std::collections::BTreeSet<&str>> =
            (!req.topics.is_empty()).then(|| req.topics.iter().map(String::as_str).collect());
        let mut topics: BTreeMap<String, BTreeMap<i32, PartitionMetadata>> = BTreeMap::new();
        for l in &meta.metadata.leaders {
            if wanted
                .as_ref()
                .is_some_and(|w| !w.contains(l.topic.as_str()))
            {
                continue;
            }
            topics.entry(l.topic.clone()).or_default().insert(
                l.partition,
                PartitionMetadata {
                    partition: l.partition,
                    leader: l.leader,
                    leader_epoch: l.leader_epoch,
                    replicas: Vec::new(),
                    isr: Vec::new(),
                },
            );
        }
        for p in self.manager.all() {
            let key = p.key();
            if wanted
                .as_ref()
                .is_some_and(|w| !w.contains(key.topic.as_str()))
            {
                continue;
            }
            let record = p.record();
            let (replicas, isr) = p.replicas_and_isr();
            let entry = topics
                .entry(key.topic.clone())
                .or_default()
                .entry(key.partition)
                .or_insert(PartitionMetadata {
                    partition: key.partition,
                    leader: record.leader,
                    leader_epoch: record.leader_epoch,
                    replicas: Vec::new(),
                    isr: Vec::new(),
                });
            entry.replicas = replicas;
            entry.isr = isr;
        }
        let mut out: Vec<TopicMetadata> = topics
            .into_iter()
            .map(|(name, parts)| TopicMetadata {
                name,
                partitions: parts.into_values().collect(),
                error: ErrorCode::None as i32,
            })
            .collect();
        if let Some(w) = &wanted {
            for t in w {
                if !out.iter().any(|m| m.name == *t) {
                    out.push(TopicMetadata {
                        name: (*t).to_owned(),
                        partitions: Vec::new(),
                        error: ErrorCode::UnknownTopicOrPartition as i32,
                    });
                }
            }
        }
        Ok(Response::new(MetadataResponse {
            brokers,
            topics: out,
            offsets_partitions: meta.metadata.offsets_partitions,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_record::BatchBuilder;

    fn batch(n: usize, value_len: usize) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for i in 0..n {
            b.append(
                1_000 + i as i64,
                Some(b"k"),
                Some(&vec![7u8; value_len]),
                &[],
            )
            .unwrap();
        }
        b.build()
    }

    #[test]
    fn validation_names_the_problem() {
        let good = batch(3, 10);
        validate_batches(&good, 1 << 20).unwrap();
        let mut two = good.clone();
        two.extend_from_slice(&batch(1, 5));
        validate_batches(&two, 1 << 20).unwrap();

        let mut corrupt = good.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0xff;
        assert_eq!(
            validate_batches(&corrupt, 1 << 20).unwrap_err().code(),
            ErrorCode::CorruptMessage
        );
        assert_eq!(
            validate_batches(&good[..good.len() - 1], 1 << 20)
                .unwrap_err()
                .code(),
            ErrorCode::CorruptMessage
        );
        assert!(matches!(
            validate_batches(&good, 20).unwrap_err(),
            ReplicaError::RecordTooLarge { max: 20, .. }
        ));
        assert_eq!(
            validate_batches(&[], 1 << 20).unwrap_err().code(),
            ErrorCode::InvalidRequest
        );
    }
}
