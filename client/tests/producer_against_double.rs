//! The producer and the consumer against in-test Data services on loopback.
//!
//! The servers here are TEST DOUBLES of a broker agent's Data service, not
//! the agent: [`DataDouble`]s share one in-memory [`Cluster`] (per
//! partition, a `Vec` of the batches appended, with base offsets stamped)
//! and answer Produce, Fetch, ListOffsets and Metadata the way the protocol
//! says, with faults injected on purpose: a Metadata answer that names the
//! wrong leader for one partition (the refusal carries a hint), a leader
//! that appends and then stalls past the client's timeout once, one that
//! appends and answers `REQUEST_TIMED_OUT` once, and a leader change whose
//! refusals carry no hint. End-to-end tests against real agents live with
//! the agent.
//!
//! What is checked is the client-visible history: per partition, the log
//! holds exactly the records sent to it, in send order, except that a batch
//! whose answer was lost may appear twice in a row; keys land on Kafka's
//! murmur2 partitions; the consumer reads every log back in order.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballast_client::partitioner::partition_for_key;
use ballast_client::{
    Acks, Consumer, ConsumerConfig, ConsumerRecord, MetadataOptions, Producer, ProducerConfig,
    ProducerRecord, StartPosition,
};
use ballast_proto::v1::data_server::{Data, DataServer};
use ballast_proto::v1::*;
use ballast_record::{Batch, set_base_offset, set_partition_leader_epoch, split_batches};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

type Answer<T> = Result<Response<T>, Status>;

const TOPIC: &str = "orders";

/// Faults the doubles inject, each once.
#[derive(Debug, Default)]
struct Faults {
    /// Append the first produce to this partition, then stall past the
    /// client's timeout before answering.
    stall_after_append: Option<i32>,
    /// Append the first produce to this partition, then answer
    /// REQUEST_TIMED_OUT.
    timed_out_after_append: Option<i32>,
    /// Refuse NOT_LEADER without a hint (after a leader change).
    no_hints: bool,
}

/// The doubles' shared state.
#[derive(Debug, Default)]
struct Cluster {
    addresses: BTreeMap<i32, String>,
    /// The real leader of each partition.
    leaders: Vec<i32>,
    epochs: Vec<i32>,
    /// What Metadata answers name as leader (may be wrong on purpose).
    advertised: Vec<i32>,
    /// Per partition, the batches appended, base offsets stamped.
    logs: Vec<Vec<Vec<u8>>>,
    faults: Faults,
    /// (broker, partition) of every NOT_LEADER answer to a produce.
    refusals: Vec<(i32, i32)>,
    /// Partitions whose append's answer was lost (stalled or timed out).
    lost_answers: Vec<i32>,
    metadata_calls: u32,
}

impl Cluster {
    fn new(partitions: usize) -> Cluster {
        Cluster {
            leaders: (0..partitions).map(|p| 1 + (p as i32 % 2)).collect(),
            epochs: vec![1; partitions],
            advertised: (0..partitions).map(|p| 1 + (p as i32 % 2)).collect(),
            logs: vec![Vec::new(); partitions],
            ..Cluster::default()
        }
    }

    fn log_end(&self, p: usize) -> i64 {
        self.logs[p]
            .last()
            .map_or(0, |b| Batch::parse(b).unwrap().header().next_offset())
    }

    /// Values in partition `p`'s log, in offset order.
    fn values(&self, p: usize) -> Vec<String> {
        let mut out = Vec::new();
        for b in &self.logs[p] {
            for r in Batch::parse(b).unwrap().records() {
                let r = r.unwrap();
                out.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
            }
        }
        out
    }

    fn hint(&self, p: usize) -> Option<LeaderHint> {
        if self.faults.no_hints {
            return None;
        }
        Some(LeaderHint {
            leader_id: self.leaders[p],
            leader_epoch: self.epochs[p],
            address: self.addresses[&self.leaders[p]].clone(),
        })
    }
}

/// A TEST DOUBLE of one agent's Data service.
#[derive(Debug, Clone)]
struct DataDouble {
    id: i32,
    cluster: Arc<Mutex<Cluster>>,
    appended: Arc<Notify>,
    stall: Duration,
}

enum AfterAppend {
    Answer,
    Stall,
    TimedOut,
}

impl DataDouble {
    fn index(&self, c: &Cluster, topic: &str, partition: i32) -> Option<usize> {
        (topic == TOPIC && (0..c.leaders.len() as i32).contains(&partition))
            .then_some(partition as usize)
    }
}

#[tonic::async_trait]
impl Data for DataDouble {
    async fn produce(&self, r: Request<ProduceRequest>) -> Answer<ProduceResponse> {
        let req = r.into_inner();
        let mut results = Vec::new();
        let mut after = AfterAppend::Answer;
        let mut appended_here = Vec::new();
        {
            let mut c = self.cluster.lock().unwrap();
            for pp in req.partitions {
                let mut result = ProducePartitionResult {
                    topic: pp.topic.clone(),
                    partition: pp.partition,
                    ..Default::default()
                };
                let Some(p) = self.index(&c, &pp.topic, pp.partition) else {
                    result.error = ErrorCode::UnknownTopicOrPartition as i32;
                    results.push(result);
                    continue;
                };
                if c.leaders[p] != self.id {
                    c.refusals.push((self.id, pp.partition));
                    result.error = ErrorCode::NotLeader as i32;
                    result.leader_hint = c.hint(p);
                    results.push(result);
                    continue;
                }
                let mut base = c.log_end(p);
                result.base_offset = base;
                for batch in split_batches(&pp.records) {
                    let (_, bytes) = batch.expect("the producer sends whole batches");
                    let header = ballast_record::validate_for_append(bytes).unwrap();
                    let mut stored = bytes.to_vec();
                    set_base_offset(&mut stored, base);
                    set_partition_leader_epoch(&mut stored, c.epochs[p]);
                    base += i64::from(header.records_count);
                    c.logs[p].push(stored);
                }
                appended_here.push(pp.partition);
                if c.faults.stall_after_append == Some(pp.partition) {
                    c.faults.stall_after_append = None;
                    after = AfterAppend::Stall;
                }
                if c.faults.timed_out_after_append == Some(pp.partition) {
                    c.faults.timed_out_after_append = None;
                    c.lost_answers.push(pp.partition);
                    result.error = ErrorCode::RequestTimedOut as i32;
                    result.error_message = "replication timed out (double)".into();
                    after = AfterAppend::TimedOut;
                }
                results.push(result);
            }
            if let AfterAppend::Stall = after {
                // Every partition of the request loses its answer.
                c.lost_answers.extend(&appended_here);
            }
        }
        self.appended.notify_waiters();
        match after {
            AfterAppend::Stall => {
                tokio::time::sleep(self.stall).await;
                Err(Status::internal("the client should have given up by now"))
            }
            AfterAppend::Answer | AfterAppend::TimedOut => {
                Ok(Response::new(ProduceResponse { results }))
            }
        }
    }

    async fn fetch(&self, r: Request<FetchRequest>) -> Answer<FetchResponse> {
        let req = r.into_inner();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(req.max_wait_ms.into());
        loop {
            let notified = self.appended.notified();
            let mut results = Vec::new();
            let mut bytes_total = 0usize;
            {
                let c = self.cluster.lock().unwrap();
                for fp in &req.partitions {
                    let mut result = FetchPartitionResult {
                        topic: fp.topic.clone(),
                        partition: fp.partition,
                        ..Default::default()
                    };
                    let Some(p) = self.index(&c, &fp.topic, fp.partition) else {
                        result.error = ErrorCode::UnknownTopicOrPartition as i32;
                        results.push(result);
                        continue;
                    };
                    if c.leaders[p] != self.id {
                        result.error = ErrorCode::NotLeader as i32;
                        result.leader_hint = c.hint(p);
                        results.push(result);
                        continue;
                    }
                    let end = c.log_end(p);
                    result.high_watermark = end;
                    result.log_end_offset = end;
                    if fp.fetch_offset < 0 || fp.fetch_offset > end {
                        result.error = ErrorCode::OffsetOutOfRange as i32;
                        results.push(result);
                        continue;
                    }
                    for b in &c.logs[p] {
                        let h = *Batch::parse(b).unwrap().header();
                        if h.next_offset() <= fp.fetch_offset {
                            continue;
                        }
                        if !result.records.is_empty()
                            && result.records.len() + b.len() > fp.partition_max_bytes as usize
                        {
                            break;
                        }
                        result.records.extend_from_slice(b);
                    }
                    bytes_total += result.records.len();
                    results.push(result);
                }
            }
            if bytes_total > 0 || tokio::time::Instant::now() >= deadline {
                return Ok(Response::new(FetchResponse { results }));
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    async fn list_offsets(&self, r: Request<ListOffsetsRequest>) -> Answer<ListOffsetsResponse> {
        let c = self.cluster.lock().unwrap();
        let results = r
            .into_inner()
            .partitions
            .into_iter()
            .map(|lp| {
                let mut result = ListOffsetsResult {
                    topic: lp.topic.clone(),
                    partition: lp.partition,
                    offset: -1,
                    timestamp: -1,
                    ..Default::default()
                };
                match self.index(&c, &lp.topic, lp.partition) {
                    None => result.error = ErrorCode::UnknownTopicOrPartition as i32,
                    Some(p) if c.leaders[p] != self.id => {
                        result.error = ErrorCode::NotLeader as i32;
                        result.leader_hint = c.hint(p);
                    }
                    Some(p) => {
                        result.offset = match lp.timestamp {
                            -2 => 0,
                            -1 => c.log_end(p),
                            _ => -1,
                        };
                        result.leader_epoch = c.epochs[p];
                    }
                }
                result
            })
            .collect();
        Ok(Response::new(ListOffsetsResponse { results }))
    }

    async fn metadata(&self, r: Request<MetadataRequest>) -> Answer<MetadataResponse> {
        let mut c = self.cluster.lock().unwrap();
        c.metadata_calls += 1;
        let wanted = r.into_inner().topics;
        let topics = wanted
            .iter()
            .map(|t| {
                if t != TOPIC {
                    return ballast_proto::v1::TopicMetadata {
                        name: t.clone(),
                        partitions: vec![],
                        error: ErrorCode::UnknownTopicOrPartition as i32,
                    };
                }
                ballast_proto::v1::TopicMetadata {
                    name: t.clone(),
                    partitions: (0..c.leaders.len())
                        .map(|p| PartitionMetadata {
                            partition: p as i32,
                            leader: c.advertised[p],
                            leader_epoch: c.epochs[p],
                            replicas: vec![1, 2],
                            isr: vec![1, 2],
                        })
                        .collect(),
                    error: 0,
                }
            })
            .collect();
        Ok(Response::new(MetadataResponse {
            brokers: c
                .addresses
                .iter()
                .map(|(id, a)| MetadataBroker {
                    broker_id: *id,
                    address: a.clone(),
                    rack: String::new(),
                })
                .collect(),
            topics,
            offsets_partitions: 0,
        }))
    }
}

/// Two doubles (brokers 1 and 2) on loopback sharing `cluster`.
async fn start_doubles(cluster: Arc<Mutex<Cluster>>, stall: Duration) -> Vec<String> {
    let appended = Arc::new(Notify::new());
    let mut addresses = Vec::new();
    for id in [1, 2] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        cluster
            .lock()
            .unwrap()
            .addresses
            .insert(id, addr.to_string());
        let double = DataDouble {
            id,
            cluster: cluster.clone(),
            appended: appended.clone(),
            stall,
        };
        tokio::spawn(
            Server::builder()
                .add_service(DataServer::new(double))
                .serve_with_incoming(TcpIncoming::from(listener)),
        );
        addresses.push(addr.to_string());
    }
    addresses
}

fn fast_metadata() -> MetadataOptions {
    MetadataOptions {
        connect_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        min_refresh_interval: Duration::from_millis(20),
        max_refresh_backoff: Duration::from_millis(200),
        max_age: Duration::from_secs(300),
    }
}

fn producer_config() -> ProducerConfig {
    ProducerConfig {
        acks: Acks::All,
        linger: Duration::from_millis(5),
        // Small batches: several per partition, so ordering across
        // batches and retries is exercised.
        batch_size_bytes: 512,
        request_timeout: Duration::from_millis(300),
        delivery_timeout: Duration::from_secs(20),
        retry_backoff: Duration::from_millis(20),
        retry_backoff_max: Duration::from_millis(200),
        metadata_timeout: Duration::from_secs(5),
        metadata: fast_metadata(),
        // These doubles write whatever arrives, without the leader's
        // sequence checks that keep several sends in flight in order
        // (tests/inflight_against_double.rs has a double with them).
        max_in_flight: 1,
        ..ProducerConfig::default()
    }
}

/// Sends `values` (with their keys) in order, waiting for every
/// acknowledgement; returns per partition the values in send order.
async fn produce_all(
    producer: &Producer,
    records: &[(Option<String>, String)],
) -> BTreeMap<i32, Vec<String>> {
    let futures: Vec<_> = records
        .iter()
        .map(|(key, value)| {
            let mut r = ProducerRecord::new(TOPIC, value.clone());
            if let Some(k) = key {
                r = r.key(k.clone());
            }
            producer.send(r)
        })
        .collect();
    let mut sent: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut offsets: HashMap<i32, Vec<i64>> = HashMap::new();
    for ((key, value), f) in records.iter().zip(futures) {
        let meta = f.await.unwrap_or_else(|e| panic!("{value}: {e}"));
        assert_eq!(meta.topic, TOPIC);
        if let Some(k) = key {
            assert_eq!(
                Some(meta.partition),
                partition_for_key(k.as_bytes(), 6),
                "key {k} is on Kafka's murmur2 partition"
            );
        }
        sent.entry(meta.partition).or_default().push(value.clone());
        offsets.entry(meta.partition).or_default().push(meta.offset);
    }
    for (p, os) in offsets {
        assert!(
            os.windows(2).all(|w| w[0] < w[1]),
            "partition {p}: offsets increase: {os:?}"
        );
    }
    sent
}

/// The log holds exactly `sent`, or `sent` with one run of records (a
/// batch) repeated right after itself when `may_duplicate`.
fn check_log(partition: i32, log: &[String], sent: &[String], may_duplicate: bool) {
    if log == sent {
        return;
    }
    assert!(
        may_duplicate,
        "partition {partition}: log differs from what was sent\nlog:  {log:?}\nsent: {sent:?}"
    );
    let extra = log
        .len()
        .checked_sub(sent.len())
        .expect("log shorter than sent");
    // Find the duplicated run: log = sent[..k] ++ sent[k-extra..k] ++ sent[k..].
    let found = (extra..=sent.len()).any(|k| {
        let mut rebuilt = sent[..k].to_vec();
        rebuilt.extend_from_slice(&sent[k - extra..k]);
        rebuilt.extend_from_slice(&sent[k..]);
        rebuilt == log
    });
    assert!(
        found,
        "partition {partition}: log is not sent with one batch repeated\nlog:  {log:?}\nsent: {sent:?}"
    );
}

/// Every partition's log values.
type Logs = BTreeMap<i32, Vec<String>>;

/// Refusals, partitions whose answer was lost, and every log's values.
fn snapshot(cluster: &Mutex<Cluster>) -> (Vec<(i32, i32)>, Vec<i32>, Logs) {
    let c = cluster.lock().unwrap();
    let logs = (0..6).map(|p| (p as i32, c.values(p))).collect();
    (c.refusals.clone(), c.lost_answers.clone(), logs)
}

async fn consume_all(bootstrap: Vec<String>, expected: &BTreeMap<i32, Vec<String>>) {
    let mut consumer = Consumer::connect(
        bootstrap,
        ConsumerConfig {
            max_wait: Duration::from_millis(100),
            partition_max_bytes: 1024,
            max_poll_records: 37,
            retry_backoff: Duration::from_millis(20),
            metadata_timeout: Duration::from_secs(5),
            metadata: fast_metadata(),
            ..ConsumerConfig::default()
        },
    )
    .unwrap();
    let n = consumer.partitions_for(TOPIC).await.unwrap();
    assert_eq!(n, 6);
    consumer.assign(TOPIC, (0..n).map(|p| (p, StartPosition::Earliest)));
    let total: usize = expected.values().map(Vec::len).sum();
    let mut read: BTreeMap<i32, Vec<ConsumerRecord>> = BTreeMap::new();
    let mut count = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while count < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "read {count} of {total}"
        );
        let records = consumer.poll(Duration::from_millis(200)).await.unwrap();
        assert!(records.len() <= 37);
        count += records.len();
        for r in records {
            read.entry(r.partition).or_default().push(r);
        }
    }
    for (p, want) in expected {
        let got = read.remove(p).unwrap_or_default();
        let offsets: Vec<i64> = got.iter().map(|r| r.offset).collect();
        assert_eq!(
            offsets,
            (0..want.len() as i64).collect::<Vec<_>>(),
            "partition {p}"
        );
        let values: Vec<String> = got
            .iter()
            .map(|r| String::from_utf8(r.value.as_ref().unwrap().to_vec()).unwrap())
            .collect();
        assert_eq!(&values, want, "partition {p} read back in order");
        assert!(got.iter().all(|r| r.leader_epoch >= 1));
        assert_eq!(consumer.position(TOPIC, *p), Some(want.len() as i64));
    }
    // Nothing more.
    assert!(
        consumer
            .poll(Duration::from_millis(150))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produces_in_order_through_redirects_and_lost_answers_and_reads_back() {
    let mut cluster = Cluster::new(6);
    // Metadata says broker 1 leads partition 3; broker 2 does.
    cluster.advertised[3] = 1;
    cluster.faults.stall_after_append = Some(0);
    cluster.faults.timed_out_after_append = Some(1);
    let cluster = Arc::new(Mutex::new(cluster));
    let addresses = start_doubles(cluster.clone(), Duration::from_secs(5)).await;

    // Only one bootstrap address: the other broker is found via metadata.
    let producer = Producer::connect(vec![addresses[0].clone()], producer_config()).unwrap();
    let records: Vec<(Option<String>, String)> = (0..1_200)
        .map(|i| {
            // Every tenth record keyless (sticky), the rest on 40 keys.
            let key = (i % 10 != 0).then(|| format!("key-{}", i % 40));
            (key, format!("v{i:05}"))
        })
        .collect();
    let sent = produce_all(&producer, &records).await;
    producer.close().await;

    let (refusals, lost, logs) = snapshot(&cluster);
    assert!(
        refusals.contains(&(1, 3)),
        "partition 3 was refused with a hint"
    );
    assert!(
        lost.contains(&0) && lost.contains(&1),
        "both lost answers happened: {lost:?}"
    );
    for (p, want) in &sent {
        check_log(*p, &logs[p], want, lost.contains(p));
    }
    for p in [0, 1] {
        assert!(
            logs[&p].len() > sent[&p].len(),
            "partition {p}: the lost answer's batch was written twice"
        );
    }
    assert_eq!(sent.values().map(Vec::len).sum::<usize>(), 1_200);
    consume_all(addresses, &logs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_change_without_hints_refreshes_metadata_and_keeps_order() {
    let cluster = Arc::new(Mutex::new(Cluster::new(6)));
    let addresses = start_doubles(cluster.clone(), Duration::from_secs(5)).await;
    let producer = Producer::connect(addresses.clone(), producer_config()).unwrap();

    let first: Vec<(Option<String>, String)> = (0..300)
        .map(|i| (Some(format!("k{}", i % 12)), format!("a{i:04}")))
        .collect();
    let mut sent = produce_all(&producer, &first).await;
    let calls_before = cluster.lock().unwrap().metadata_calls;

    // Every partition changes leader; refusals carry no hint.
    {
        let mut c = cluster.lock().unwrap();
        for p in 0..6 {
            c.leaders[p] = 3 - c.leaders[p];
            c.advertised[p] = c.leaders[p];
            c.epochs[p] += 1;
        }
        c.faults.no_hints = true;
    }
    let second: Vec<(Option<String>, String)> = (0..300)
        .map(|i| (Some(format!("k{}", i % 12)), format!("b{i:04}")))
        .collect();
    for (p, values) in produce_all(&producer, &second).await {
        sent.entry(p).or_default().extend(values);
    }
    producer.close().await;

    let (refusals, _, logs) = snapshot(&cluster);
    assert!(!refusals.is_empty(), "the old leaders refused");
    let calls_after = cluster.lock().unwrap().metadata_calls;
    assert!(
        calls_after > calls_before,
        "the producer refreshed metadata"
    );
    for (p, want) in &sent {
        check_log(*p, &logs[p], want, false);
    }
    consume_all(addresses, &logs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_starts_latest_at_an_offset_and_resets_out_of_range() {
    let cluster = Arc::new(Mutex::new(Cluster::new(6)));
    let addresses = start_doubles(cluster.clone(), Duration::from_secs(5)).await;
    let producer = Producer::connect(addresses.clone(), producer_config()).unwrap();
    let records: Vec<(Option<String>, String)> =
        (0..20).map(|i| (None, format!("x{i:02}"))).collect();
    for (_, v) in &records {
        producer
            .send(ProducerRecord::new(TOPIC, v.clone()).partition(2))
            .await
            .unwrap();
    }

    let config = ConsumerConfig {
        max_wait: Duration::from_millis(50),
        retry_backoff: Duration::from_millis(20),
        metadata: fast_metadata(),
        auto_offset_reset: ballast_client::OffsetReset::Earliest,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::connect(addresses, config).unwrap();
    consumer.assign(TOPIC, [(2, StartPosition::Offset(15))]);
    let mut got = Vec::new();
    while got.len() < 5 {
        got.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    let offsets: Vec<i64> = got.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        [15, 16, 17, 18, 19],
        "skips records before the offset in the batch"
    );

    // Latest: nothing until something new is produced.
    consumer.seek(TOPIC, 2, StartPosition::Latest).unwrap();
    assert!(
        consumer
            .poll(Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(consumer.position(TOPIC, 2), Some(20));
    let meta = producer
        .send(ProducerRecord::new(TOPIC, "new").partition(2))
        .await
        .unwrap();
    assert_eq!(meta.offset, 20);
    let mut got = Vec::new();
    while got.is_empty() {
        got = consumer.poll(Duration::from_millis(200)).await.unwrap();
    }
    assert_eq!(
        (got[0].offset, got[0].value.as_deref()),
        (20, Some(&b"new"[..]))
    );

    // Past the end: reset to earliest.
    consumer
        .seek(TOPIC, 2, StartPosition::Offset(1_000))
        .unwrap();
    let mut got = Vec::new();
    while got.is_empty() {
        got = consumer.poll(Duration::from_millis(200)).await.unwrap();
    }
    assert_eq!(got[0].offset, 0);
}
