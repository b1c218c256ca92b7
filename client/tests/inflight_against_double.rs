//! The idempotent producer with several sends in flight per partition,
//! against an in-test Data service that reorders and loses answers.
//!
//! The server here is a TEST DOUBLE of a broker agent's Data service, not
//! the agent. It keeps, like the agent's log (`producer_state.rs`), per
//! producer its epoch and its last 5 batches: a batch already held is
//! answered with its original offsets and not written, a sequence gap or a
//! mix of held and new batches is refused with OUT_OF_ORDER_SEQUENCE_NUMBER,
//! an older epoch with INVALID_PRODUCER_EPOCH, and a producer it does not
//! know is accepted at any sequence. Faults, drawn from a seeded generator
//! (printed, and set with `BALLAST_TEST_SEED`): every request waits a
//! random few milliseconds before it is handled (so two sends of a
//! partition overtake each other), some are refused NOT_LEADER (with a
//! hint back to the same server), and some are written and then lose their
//! answer (UNAVAILABLE, or REQUEST_TIMED_OUT).
//!
//! What is checked is the client-visible history: every record is
//! acknowledged, the log holds exactly the records sent, in send order,
//! each once, and each acknowledged offset is the record's place in the log.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ballast_client::{Acks, MetadataOptions, Producer, ProducerConfig, ProducerRecord};
use ballast_proto::v1::data_server::{Data, DataServer};
use ballast_proto::v1::*;
use ballast_record::{Batch, BatchHeader, set_base_offset, split_batches};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

type Answer<T> = Result<Response<T>, Status>;

const TOPIC: &str = "events";
const PARTITIONS: usize = 2;
/// Batches remembered per producer, as the agent's log.
const KEPT: usize = 5;

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// (first sequence, last sequence, base offset) of a batch written.
type Kept = (i32, i32, i64);

#[derive(Debug, Default)]
struct ProducerEntry {
    epoch: i16,
    kept: VecDeque<Kept>,
}

#[derive(Debug, Default)]
struct PartitionLog {
    batches: Vec<Vec<u8>>,
    producers: HashMap<i64, ProducerEntry>,
    /// Produce requests of this partition being handled now, and the most
    /// at once.
    handling: usize,
    most_at_once: usize,
}

impl PartitionLog {
    fn log_end(&self) -> i64 {
        self.batches
            .last()
            .map_or(0, |b| Batch::parse(b).unwrap().header().next_offset())
    }

    fn values(&self) -> Vec<String> {
        let mut out = Vec::new();
        for b in &self.batches {
            for r in Batch::parse(b).unwrap().records() {
                out.push(String::from_utf8(r.unwrap().value.unwrap().to_vec()).unwrap());
            }
        }
        out
    }

    /// The leader's idempotence rules: `Ok(Some(base))` a retry of
    /// batches held (answered, not written), `Ok(None)` to be written.
    fn check(&self, headers: &[BatchHeader]) -> Result<Option<i64>, ErrorCode> {
        let Some(h) = headers.first() else {
            return Ok(None);
        };
        let Some(e) = self.producers.get(&h.producer_id) else {
            return Ok(None);
        };
        if h.producer_epoch < e.epoch {
            return Err(ErrorCode::InvalidProducerEpoch);
        }
        if h.producer_epoch > e.epoch {
            return if h.base_sequence == 0 {
                Ok(None)
            } else {
                Err(ErrorCode::OutOfOrderSequenceNumber)
            };
        }
        let held = |h: &BatchHeader| {
            e.kept
                .iter()
                .find(|k| k.0 == h.base_sequence && k.1 == h.last_sequence())
                .map(|k| k.2)
        };
        let dups: Vec<Option<i64>> = headers.iter().map(held).collect();
        if dups.iter().all(Option::is_some) {
            return Ok(dups[0]);
        }
        if dups.iter().any(Option::is_some) {
            return Err(ErrorCode::OutOfOrderSequenceNumber);
        }
        let last = e.kept.back().map_or(-1, |k| k.1);
        if h.base_sequence == last + 1 {
            Ok(None)
        } else {
            Err(ErrorCode::OutOfOrderSequenceNumber)
        }
    }

    fn append(&mut self, records: &[u8]) -> i64 {
        let base = self.log_end();
        let mut next = base;
        for batch in split_batches(records) {
            let (mut h, bytes) = batch.unwrap();
            let mut stored = bytes.to_vec();
            set_base_offset(&mut stored, next);
            h.base_offset = next;
            next += i64::from(h.records_count);
            let e = self.producers.entry(h.producer_id).or_default();
            if e.epoch != h.producer_epoch {
                e.epoch = h.producer_epoch;
                e.kept.clear();
            }
            e.kept
                .push_back((h.base_sequence, h.last_sequence(), h.base_offset));
            while e.kept.len() > KEPT {
                e.kept.pop_front();
            }
            self.batches.push(stored);
        }
        base
    }
}

#[derive(Debug, Default)]
struct Stats {
    out_of_order: u32,
    duplicates: u32,
    lost_answers: u32,
    not_leader: u32,
}

#[derive(Debug)]
struct State {
    address: String,
    logs: Vec<PartitionLog>,
    rng: u64,
    stats: Stats,
}

/// A TEST DOUBLE of one agent's Data service, leader of every partition.
#[derive(Debug, Clone)]
struct ReorderingDouble {
    state: Arc<Mutex<State>>,
}

#[tonic::async_trait]
impl Data for ReorderingDouble {
    async fn produce(&self, r: Request<ProduceRequest>) -> Answer<ProduceResponse> {
        let req = r.into_inner();
        let parts: Vec<usize> = req
            .partitions
            .iter()
            .filter(|p| p.topic == TOPIC && (0..PARTITIONS as i32).contains(&p.partition))
            .map(|p| p.partition as usize)
            .collect();
        let (delay, fault) = {
            let mut s = self.state.lock().unwrap();
            for &p in &parts {
                s.logs[p].handling += 1;
                s.logs[p].most_at_once = s.logs[p].most_at_once.max(s.logs[p].handling);
            }
            let roll = splitmix64(&mut s.rng);
            (Duration::from_micros(roll % 4_000), (roll >> 32) % 100)
        };
        // Requests overtake each other here.
        tokio::time::sleep(delay).await;
        let mut s = self.state.lock().unwrap();
        for &p in &parts {
            s.logs[p].handling -= 1;
        }
        let mut results = Vec::new();
        let mut wrote = false;
        for pp in req.partitions {
            let mut result = ProducePartitionResult {
                topic: pp.topic.clone(),
                partition: pp.partition,
                base_offset: -1,
                ..Default::default()
            };
            if pp.topic != TOPIC || !(0..PARTITIONS as i32).contains(&pp.partition) {
                result.error = ErrorCode::UnknownTopicOrPartition as i32;
                results.push(result);
                continue;
            }
            if fault < 3 {
                s.stats.not_leader += 1;
                result.error = ErrorCode::NotLeader as i32;
                result.leader_hint = Some(LeaderHint {
                    leader_id: 1,
                    leader_epoch: 1,
                    address: s.address.clone(),
                });
                results.push(result);
                continue;
            }
            let headers: Vec<BatchHeader> = split_batches(&pp.records)
                .map(|b| b.expect("the producer sends whole batches").0)
                .collect();
            let log = &mut s.logs[pp.partition as usize];
            match log.check(&headers) {
                Ok(Some(base)) => {
                    result.base_offset = base;
                    s.stats.duplicates += 1;
                }
                Ok(None) => {
                    result.base_offset = log.append(&pp.records);
                    wrote = true;
                }
                Err(code) => {
                    if code == ErrorCode::OutOfOrderSequenceNumber {
                        s.stats.out_of_order += 1;
                    }
                    result.error = code as i32;
                    result.error_message = "refused by the double".into();
                }
            }
            if (3..6).contains(&fault) && result.error == 0 {
                result.error = ErrorCode::RequestTimedOut as i32;
                result.error_message = "replication timed out (double)".into();
                result.base_offset = -1;
                s.stats.lost_answers += 1;
            }
            results.push(result);
        }
        if (6..10).contains(&fault) && wrote {
            s.stats.lost_answers += 1;
            return Err(Status::unavailable("answer lost (double)"));
        }
        Ok(Response::new(ProduceResponse { results }))
    }

    async fn fetch(&self, _: Request<FetchRequest>) -> Answer<FetchResponse> {
        Err(Status::unimplemented("not in this double"))
    }

    async fn list_offsets(&self, _: Request<ListOffsetsRequest>) -> Answer<ListOffsetsResponse> {
        Err(Status::unimplemented("not in this double"))
    }

    async fn metadata(&self, r: Request<MetadataRequest>) -> Answer<MetadataResponse> {
        let address = self.state.lock().unwrap().address.clone();
        let topics = r
            .into_inner()
            .topics
            .into_iter()
            .map(|t| {
                if t != TOPIC {
                    return TopicMetadata {
                        name: t,
                        partitions: vec![],
                        error: ErrorCode::UnknownTopicOrPartition as i32,
                    };
                }
                TopicMetadata {
                    name: t,
                    partitions: (0..PARTITIONS as i32)
                        .map(|p| PartitionMetadata {
                            partition: p,
                            leader: 1,
                            leader_epoch: 1,
                            replicas: vec![1],
                            isr: vec![1],
                        })
                        .collect(),
                    error: 0,
                }
            })
            .collect();
        Ok(Response::new(MetadataResponse {
            brokers: vec![MetadataBroker {
                broker_id: 1,
                address,
                rack: String::new(),
            }],
            topics,
            offsets_partitions: 0,
        }))
    }
}

async fn start_double(seed: u64) -> (Arc<Mutex<State>>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let state = Arc::new(Mutex::new(State {
        address: addr.to_string(),
        logs: (0..PARTITIONS).map(|_| PartitionLog::default()).collect(),
        rng: seed,
        stats: Stats::default(),
    }));
    let double = ReorderingDouble {
        state: state.clone(),
    };
    tokio::spawn(
        Server::builder()
            .add_service(DataServer::new(double))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    (state, addr.to_string())
}

fn seed() -> u64 {
    std::env::var("BALLAST_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_in_flight_through_reordering_and_lost_answers_write_each_record_once_in_order() {
    let seed = seed();
    eprintln!("BALLAST_TEST_SEED={seed}");
    let (state, address) = start_double(seed).await;
    let config = ProducerConfig {
        acks: Acks::All,
        linger: Duration::from_millis(1),
        // Small batches: many sends per partition.
        batch_size_bytes: 300,
        request_timeout: Duration::from_millis(500),
        delivery_timeout: Duration::from_secs(60),
        retry_backoff: Duration::from_millis(5),
        retry_backoff_max: Duration::from_millis(50),
        metadata: MetadataOptions {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(2),
            min_refresh_interval: Duration::from_millis(20),
            max_refresh_backoff: Duration::from_millis(200),
            max_age: Duration::from_secs(300),
        },
        max_in_flight: 5,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(vec![address], config).unwrap();
    let mut sent: Vec<Vec<String>> = vec![Vec::new(); PARTITIONS];
    let mut acks = Vec::new();
    for round in 0..10 {
        for i in 0..400 {
            let p = i % PARTITIONS;
            let value = format!("r{round}-{i:04}-{}", "x".repeat(20));
            sent[p].push(value.clone());
            acks.push((
                p,
                value.clone(),
                producer.send(ProducerRecord::new(TOPIC, value).partition(p as i32)),
            ));
        }
        // Let the sends of a round pile up, then go on.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut offsets: Vec<Vec<i64>> = vec![Vec::new(); PARTITIONS];
    let mut acked: Vec<Vec<(i64, String)>> = vec![Vec::new(); PARTITIONS];
    for (p, value, ack) in acks {
        let meta = ack
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: {value}: {e}"));
        assert_eq!(meta.partition, p as i32);
        offsets[p].push(meta.offset);
        acked[p].push((meta.offset, value));
    }
    producer.close().await;

    let s = state.lock().unwrap();
    eprintln!(
        "seed {seed}: {:?}; most requests of a partition at once: {:?}",
        s.stats,
        s.logs.iter().map(|l| l.most_at_once).collect::<Vec<_>>()
    );
    for p in 0..PARTITIONS {
        let log = s.logs[p].values();
        assert_eq!(
            log, sent[p],
            "seed {seed}: partition {p}: the log is what was sent, in order, each once"
        );
        assert!(
            offsets[p].windows(2).all(|w| w[0] < w[1]),
            "seed {seed}: partition {p}: offsets increase in send order"
        );
        for (offset, value) in &acked[p] {
            assert_eq!(
                log.get(*offset as usize),
                Some(value),
                "seed {seed}: partition {p}: the acknowledged offset holds the record"
            );
        }
    }
    // The faults happened: sends overtook each other (refused as out of
    // order), answers were lost (retries answered as duplicates).
    assert!(
        s.logs.iter().any(|l| l.most_at_once > 1),
        "seed {seed}: several sends of a partition in flight"
    );
    assert!(s.stats.out_of_order > 0, "seed {seed}: {:?}", s.stats);
    assert!(s.stats.lost_answers > 0, "seed {seed}: {:?}", s.stats);
    assert!(s.stats.duplicates > 0, "seed {seed}: {:?}", s.stats);
}
