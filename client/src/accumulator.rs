//! The producer's per-partition record accumulator: a pure state machine
//! (no I/O, no clock; the time is passed in) that the producer's task
//! drives.
//!
//! Owns batching and the ordering rule. Records appended to a partition go
//! into its open batch until the batch reaches `batch_size` bytes; a batch
//! becomes sendable when it is full, when another batch follows it, when it
//! is `linger` old, or when the caller forces it (flush, close). Each
//! partition has **at most one batch in flight**, always its oldest: the
//! next batch is not handed out before the one in flight is acknowledged,
//! failed or expired. A retried batch goes back to the front of its queue
//! with the very same bytes, so a retry can never put a later batch of the
//! partition before an earlier one (Kafka's `max.in.flight.requests = 1`
//! without idempotence).
//!
//! Generic over `T`, the caller's per-record completion handle, so tests use
//! plain numbers. Must never reorder batches of a partition, hand out a
//! second batch of a partition while one is in flight, or drop a record
//! without returning its handle.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use ballast_record::{BatchBuilder, Header, RecordError};

/// A topic and one of its partitions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition id.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`, `partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Batching and retry timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AccumulatorConfig {
    /// A batch is closed once the next record would take it past this many
    /// bytes (a record larger than this gets a batch of its own).
    pub batch_size: usize,
    /// A batch is sendable this long after its first record.
    pub linger: Duration,
    /// A batch not acknowledged this long after its first record fails,
    /// unless it is in flight (then it fails when the answer comes).
    pub delivery_timeout: Duration,
    /// Pause before the first retry; doubles per retry.
    pub retry_backoff: Duration,
    /// Longest pause before a retry.
    pub retry_backoff_max: Duration,
}

/// Redirects to a hinted leader retried without a pause before backing off.
const IMMEDIATE_REDIRECTS: u32 = 3;

/// The fields of a record to append.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewRecord<'a> {
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [Header],
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    /// Bytes the record added to its batch.
    pub bytes: usize,
    /// The partition now has a batch ready on size (the sticky partitioner
    /// may move on).
    pub batch_full: bool,
}

/// How a send of a partition's batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendOutcome {
    /// Written; its first record got `base_offset` (-1 when unknown, acks=0).
    Acked { base_offset: i64 },
    /// Worth repeating: `error` says what happened. `redirected`: the cache
    /// now names a new leader, so the retry may go at once.
    Retry { error: String, redirected: bool },
    /// Will not succeed; the caller knows why.
    Failed,
}

/// What [`Accumulator::complete`] did with the batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Completed<T> {
    /// The batch's records, in order, with the base offset.
    Acked { records: Vec<T>, base_offset: i64 },
    /// The batch is back at the front of its queue.
    WillRetry,
    /// The batch's records failed (the outcome was `Failed`).
    Failed { records: Vec<T> },
    /// The batch was to be retried but its delivery timeout has passed.
    Expired { records: Vec<T>, last_error: String },
    /// No batch of that partition was in flight (a caller bug; nothing
    /// changed).
    NotInFlight,
}

/// Batches whose delivery timeout passed while queued.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Expired<T> {
    pub tp: TopicPartition,
    pub records: Vec<T>,
    /// The last send error, if the batch was sent before.
    pub last_error: Option<String>,
    pub age: Duration,
}

/// Partitions with a batch to send now, and when to look again.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Ready {
    pub partitions: Vec<TopicPartition>,
    /// The earliest time another partition becomes sendable (linger or
    /// retry backoff), if any is waiting on time.
    pub next_check: Option<Instant>,
}

#[derive(Debug)]
enum Contents {
    Open(BatchBuilder),
    Closed(Vec<u8>),
}

#[derive(Debug)]
struct Batch<T> {
    contents: Contents,
    records: Vec<T>,
    created: Instant,
    /// Sends so far.
    attempts: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
    redirects_in_a_row: u32,
}

impl<T> Batch<T> {
    fn new(now: Instant) -> Batch<T> {
        Batch {
            contents: Contents::Open(BatchBuilder::new()),
            records: Vec::new(),
            created: now,
            attempts: 0,
            retry_at: None,
            last_error: None,
            redirects_in_a_row: 0,
        }
    }

    fn size(&self) -> usize {
        match &self.contents {
            Contents::Open(b) => b.size_in_bytes(),
            Contents::Closed(bytes) => bytes.len(),
        }
    }

    fn is_open(&self) -> bool {
        matches!(self.contents, Contents::Open(_))
    }

    fn close(&mut self) {
        if let Contents::Open(b) = &mut self.contents {
            let bytes = std::mem::take(b).build();
            self.contents = Contents::Closed(bytes);
        }
    }
}

#[derive(Debug)]
struct Queue<T> {
    batches: VecDeque<Batch<T>>,
    /// The front batch is in flight.
    in_flight: bool,
}

/// The accumulator. See the module documentation.
#[derive(Debug)]
pub(crate) struct Accumulator<T> {
    config: AccumulatorConfig,
    partitions: BTreeMap<TopicPartition, Queue<T>>,
}

impl<T> Accumulator<T> {
    pub(crate) fn new(config: AccumulatorConfig) -> Accumulator<T> {
        Accumulator {
            config,
            partitions: BTreeMap::new(),
        }
    }

    /// No record held (queued or in flight).
    pub(crate) fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    /// Appends a record to the partition's open batch, or to a new batch
    /// when it would not fit. Gives the handle back with the error when the
    /// record cannot be encoded (larger than a batch may ever be).
    pub(crate) fn append(
        &mut self,
        tp: &TopicPartition,
        record: NewRecord<'_>,
        handle: T,
        now: Instant,
    ) -> Result<Appended, (T, RecordError)> {
        let batch_size = self.config.batch_size;
        let queue = self.partitions.entry(tp.clone()).or_insert_with(|| Queue {
            batches: VecDeque::new(),
            in_flight: false,
        });
        let fits = |b: &Batch<T>| match &b.contents {
            Contents::Open(builder) => {
                builder.is_empty()
                    || builder.size_after(
                        record.timestamp,
                        record.key,
                        record.value,
                        record.headers,
                    ) <= batch_size
            }
            Contents::Closed(_) => false,
        };
        let mut started_new = false;
        if !queue.batches.back().is_some_and(fits) {
            if let Some(last) = queue.batches.back_mut() {
                last.close();
            }
            queue.batches.push_back(Batch::new(now));
            started_new = true;
        }
        let appended = match queue.batches.back_mut() {
            Some(batch) => {
                let before = batch.size();
                let result = match &mut batch.contents {
                    Contents::Open(builder) => {
                        builder.append(record.timestamp, record.key, record.value, record.headers)
                    }
                    // `fits` refused closed batches above.
                    Contents::Closed(_) => Err(RecordError::Invalid("batch closed".into())),
                };
                match result {
                    Ok(()) => {
                        batch.records.push(handle);
                        let size = batch.size();
                        Ok(Appended {
                            bytes: size - before,
                            batch_full: started_new && queue.batches.len() > 1
                                || size >= batch_size,
                        })
                    }
                    Err(e) => Err((handle, e)),
                }
            }
            None => Err((handle, RecordError::Invalid("no batch".into()))),
        };
        // Do not leave an empty batch behind a failed append.
        if appended.is_err() {
            if queue.batches.back().is_some_and(|b| b.records.is_empty()) {
                queue.batches.pop_back();
            }
            if queue.batches.is_empty() {
                self.partitions.remove(tp);
            }
        }
        appended
    }

    /// Partitions whose front batch may be sent now (none in flight,
    /// backoff over, and full, followed, `linger` old, or `force`d).
    pub(crate) fn ready(&self, now: Instant, force: bool) -> Ready {
        let mut ready = Ready::default();
        let wake = |t: Instant, ready: &mut Ready| {
            ready.next_check = Some(ready.next_check.map_or(t, |n| n.min(t)));
        };
        for (tp, q) in &self.partitions {
            if q.in_flight {
                continue;
            }
            let Some(front) = q.batches.front() else {
                continue;
            };
            if let Some(at) = front.retry_at
                && at > now
            {
                wake(at, &mut ready);
                continue;
            }
            let due = front.created + self.config.linger;
            let sendable = force
                || !front.is_open()
                || q.batches.len() > 1
                || front.attempts > 0
                || front.size() >= self.config.batch_size
                || due <= now;
            if sendable {
                ready.partitions.push(tp.clone());
            } else {
                wake(due, &mut ready);
            }
        }
        ready
    }

    /// Size in bytes of the partition's front batch, if it has one not in
    /// flight.
    pub(crate) fn front_size(&self, tp: &TopicPartition) -> Option<usize> {
        let q = self.partitions.get(tp)?;
        if q.in_flight {
            return None;
        }
        q.batches.front().map(Batch::size)
    }

    /// Closes the partition's front batch, marks it in flight and returns
    /// its bytes to send. `None` if a batch of the partition is already in
    /// flight (or there is none): one in flight per partition.
    pub(crate) fn start_send(&mut self, tp: &TopicPartition) -> Option<Vec<u8>> {
        let q = self.partitions.get_mut(tp)?;
        if q.in_flight {
            return None;
        }
        let front = q.batches.front_mut()?;
        front.close();
        front.attempts += 1;
        front.retry_at = None;
        q.in_flight = true;
        match &front.contents {
            Contents::Closed(bytes) => Some(bytes.clone()),
            Contents::Open(_) => None,
        }
    }

    /// Records how the send of the partition's in-flight batch ended.
    pub(crate) fn complete(
        &mut self,
        tp: &TopicPartition,
        outcome: SendOutcome,
        now: Instant,
    ) -> Completed<T> {
        let Some(q) = self.partitions.get_mut(tp) else {
            return Completed::NotInFlight;
        };
        if !q.in_flight {
            return Completed::NotInFlight;
        }
        q.in_flight = false;
        let completed = match outcome {
            SendOutcome::Acked { base_offset } => match q.batches.pop_front() {
                Some(b) => Completed::Acked {
                    records: b.records,
                    base_offset,
                },
                None => Completed::NotInFlight,
            },
            SendOutcome::Failed => match q.batches.pop_front() {
                Some(b) => Completed::Failed { records: b.records },
                None => Completed::NotInFlight,
            },
            SendOutcome::Retry { error, redirected } => {
                let Some(front) = q.batches.front_mut() else {
                    return Completed::NotInFlight;
                };
                if now >= front.created + self.config.delivery_timeout {
                    match q.batches.pop_front() {
                        Some(b) => Completed::Expired {
                            records: b.records,
                            last_error: error,
                        },
                        None => Completed::NotInFlight,
                    }
                } else {
                    front.redirects_in_a_row = if redirected {
                        front.redirects_in_a_row + 1
                    } else {
                        0
                    };
                    let pause = if redirected && front.redirects_in_a_row <= IMMEDIATE_REDIRECTS {
                        Duration::ZERO
                    } else {
                        backoff(&self.config, front.attempts)
                    };
                    front.retry_at = Some(now + pause);
                    front.last_error = Some(error);
                    Completed::WillRetry
                }
            }
        };
        if q.batches.is_empty() {
            self.partitions.remove(tp);
        }
        completed
    }

    /// Removes the batches, not in flight, whose delivery timeout passed.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Expired<T>> {
        let timeout = self.config.delivery_timeout;
        let mut out = Vec::new();
        self.partitions.retain(|tp, q| {
            let skip = usize::from(q.in_flight);
            let mut kept = VecDeque::with_capacity(q.batches.len());
            for (i, b) in std::mem::take(&mut q.batches).into_iter().enumerate() {
                if i >= skip && now >= b.created + timeout {
                    out.push(Expired {
                        tp: tp.clone(),
                        age: now.saturating_duration_since(b.created),
                        records: b.records,
                        last_error: b.last_error,
                    });
                } else {
                    kept.push_back(b);
                }
            }
            q.batches = kept;
            !q.batches.is_empty()
        });
        out
    }

    /// When the next queued batch (not in flight) reaches its delivery
    /// timeout.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.partitions
            .values()
            .filter_map(|q| q.batches.get(usize::from(q.in_flight)))
            .map(|b| b.created + self.config.delivery_timeout)
            .min()
    }
}

/// `retry_backoff` doubled per earlier attempt, capped.
fn backoff(config: &AccumulatorConfig, attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(16);
    config
        .retry_backoff
        .saturating_mul(1 << exp)
        .min(config.retry_backoff_max.max(config.retry_backoff))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_record::Batch as RecordBatch;

    fn config() -> AccumulatorConfig {
        AccumulatorConfig {
            batch_size: 200,
            linger: Duration::from_millis(5),
            delivery_timeout: Duration::from_secs(10),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
        }
    }

    fn rec(value: &[u8]) -> NewRecord<'_> {
        NewRecord {
            timestamp: 1_000,
            key: None,
            value: Some(value),
            headers: &[],
        }
    }

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    fn values(bytes: &[u8]) -> Vec<Vec<u8>> {
        let (_, records) = RecordBatch::decode(bytes).unwrap();
        records
            .map(|r| r.unwrap().value.unwrap().to_vec())
            .collect()
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn linger_closes_a_small_batch() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(config());
        acc.append(&tp(0), rec(b"a"), 1, t0).unwrap();
        acc.append(&tp(0), rec(b"b"), 2, t0 + ms(1)).unwrap();
        let r = acc.ready(t0 + ms(4), false);
        assert!(r.partitions.is_empty());
        assert_eq!(
            r.next_check,
            Some(t0 + ms(5)),
            "linger counts from the first record"
        );
        assert_eq!(acc.ready(t0 + ms(5), false).partitions, [tp(0)]);
        // Forced (flush) before the linger.
        assert_eq!(acc.ready(t0, true).partitions, [tp(0)]);
        let bytes = acc.start_send(&tp(0)).unwrap();
        assert_eq!(values(&bytes), [b"a".to_vec(), b"b".to_vec()]);
    }

    #[test]
    fn size_closes_a_batch_and_starts_the_next() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(config());
        let v = [7u8; 60];
        let mut fulls = Vec::new();
        for i in 0..5 {
            fulls.push(acc.append(&tp(0), rec(&v), i, t0).unwrap().batch_full);
        }
        // Two 60-byte records and the 61-byte header fill 200 bytes; the
        // third starts a new batch.
        assert_eq!(fulls, [false, false, true, false, true]);
        assert_eq!(
            acc.ready(t0, false).partitions,
            [tp(0)],
            "a full batch goes at once"
        );
        let first = acc.start_send(&tp(0)).unwrap();
        assert!(first.len() <= 200);
        assert_eq!(values(&first).len(), 2);
        // A record larger than the batch size gets a batch of its own.
        let big = [1u8; 500];
        let a = acc.append(&tp(1), rec(&big), 9, t0).unwrap();
        assert!(a.batch_full);
        assert_eq!(acc.ready(t0, false).partitions, [tp(1)]);
    }

    #[test]
    fn one_batch_in_flight_per_partition_and_order_kept_across_retries() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(config());
        let v = [7u8; 60];
        for i in 0..6u32 {
            acc.append(&tp(0), rec(&v), i, t0).unwrap();
        }
        acc.append(&tp(1), rec(b"x"), 100, t0).unwrap();
        let first = acc.start_send(&tp(0)).unwrap();
        assert_eq!(acc.start_send(&tp(0)), None, "second batch held back");
        let r = acc.ready(t0 + ms(10), false);
        assert_eq!(r.partitions, [tp(1)], "partition 0 is in flight");

        // A retriable failure: the same bytes go again, first, after the
        // backoff; later batches wait.
        let c = acc.complete(
            &tp(0),
            SendOutcome::Retry {
                error: "NOT_ENOUGH_REPLICAS".into(),
                redirected: false,
            },
            t0 + ms(10),
        );
        assert_eq!(c, Completed::WillRetry);
        let r = acc.ready(t0 + ms(50), false);
        assert!(!r.partitions.contains(&tp(0)));
        assert_eq!(r.next_check, Some(t0 + ms(110)));
        assert_eq!(acc.ready(t0 + ms(110), false).partitions, [tp(0), tp(1)]);
        assert_eq!(acc.start_send(&tp(0)).unwrap(), first, "same bytes");
        // Second failure backs off twice as long.
        acc.complete(
            &tp(0),
            SendOutcome::Retry {
                error: "x".into(),
                redirected: false,
            },
            t0 + ms(120),
        );
        assert_eq!(
            acc.ready(t0 + ms(120), false).next_check,
            Some(t0 + ms(320))
        );
        assert_eq!(acc.start_send(&tp(0)).unwrap(), first);

        let mut delivered = Vec::new();
        let mut base = 0;
        loop {
            match acc.complete(
                &tp(0),
                SendOutcome::Acked { base_offset: base },
                t0 + ms(400),
            ) {
                Completed::Acked {
                    records,
                    base_offset,
                } => {
                    assert_eq!(base_offset, base);
                    base += records.len() as i64;
                    delivered.extend(records);
                }
                other => panic!("{other:?}"),
            }
            if acc.start_send(&tp(0)).is_none() {
                break;
            }
        }
        assert_eq!(delivered, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn redirects_retry_at_once_a_few_times_then_back_off() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(config());
        acc.append(&tp(0), rec(b"a"), 1, t0).unwrap();
        let mut pauses = Vec::new();
        for _ in 0..5 {
            acc.start_send(&tp(0)).unwrap();
            acc.complete(
                &tp(0),
                SendOutcome::Retry {
                    error: "NOT_LEADER".into(),
                    redirected: true,
                },
                t0,
            );
            let r = acc.ready(t0, false);
            pauses.push(if r.partitions.is_empty() {
                r.next_check.map(|t| t - t0)
            } else {
                None
            });
        }
        assert_eq!(pauses, [None, None, None, Some(ms(800)), Some(ms(1000))]);
    }

    #[test]
    fn failures_and_expiry_return_every_handle() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(config());
        let v = [7u8; 60];
        for i in 0..4u32 {
            acc.append(&tp(0), rec(&v), i, t0).unwrap();
        }
        acc.start_send(&tp(0)).unwrap();
        assert_eq!(acc.next_expiry(), Some(t0 + Duration::from_secs(10)));
        // Queued batches expire; the one in flight waits for its answer.
        let late = t0 + Duration::from_secs(11);
        let expired = acc.expire(late);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].records, [2, 3]);
        assert_eq!(expired[0].last_error, None);
        // Its answer is a retriable error after the timeout: expired too.
        match acc.complete(
            &tp(0),
            SendOutcome::Retry {
                error: "timeout".into(),
                redirected: false,
            },
            late,
        ) {
            Completed::Expired {
                records,
                last_error,
            } => {
                assert_eq!((records, last_error.as_str()), (vec![0, 1], "timeout"));
            }
            other => panic!("{other:?}"),
        }
        assert!(acc.is_empty());

        acc.append(&tp(0), rec(b"a"), 7, t0).unwrap();
        acc.start_send(&tp(0)).unwrap();
        assert_eq!(
            acc.complete(&tp(0), SendOutcome::Failed, t0),
            Completed::Failed { records: vec![7] }
        );
        assert_eq!(
            acc.complete(&tp(0), SendOutcome::Failed, t0),
            Completed::NotInFlight
        );
        assert!(acc.is_empty());
    }
}
