//! The producer's per-partition record accumulator: a pure state machine
//! (no I/O, no clock; the time is passed in) that the producer's task
//! drives.
//!
//! Owns batching and the ordering rule. Records appended to a partition go
//! into its open batch until the batch reaches `batch_size` bytes; a batch
//! becomes sendable when it is full, when another batch follows it, when it
//! is `linger` old, or when the caller forces it (flush, close). Each
//! partition has **at most one send in flight**: its oldest batch, together
//! with the closed batches right behind it that fit the request (one
//! request carries them concatenated, and the leader appends them as one
//! contiguous range). Nothing else of the partition is handed out before
//! that send is acknowledged, failed or expired. A retried send goes back
//! to the front of its queue with the very same bytes, so a retry can never
//! put a later batch of the partition before an earlier one (Kafka's
//! `max.in.flight.requests = 1` without idempotence). A send of several
//! batches that fails for good is split: each batch is sent alone, so one
//! bad batch (say, over the topic's size limit) fails only its own records.
//!
//! **Idempotence** (when the config names a producer id): every batch is
//! stamped, as it closes, with the producer id, the partition's producer
//! epoch and the sequence of its first record (sequences count the
//! partition's records from 0). A retry resends the very same bytes, so the
//! leader recognises a batch it already wrote and answers with its offsets
//! instead of writing it twice. When batches leave a partition's queue
//! without being written (failed for good, expired), the sequences would
//! have a gap the leader refuses; so the partition's epoch goes up and the
//! batches still queued are stamped again from sequence 0.
//!
//! Generic over `T`, the caller's per-record completion handle, so tests use
//! plain numbers. Must never reorder batches of a partition, have two sends
//! of a partition in flight, or drop a record without returning its handle.

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
    /// The idempotent producer id stamped on every batch; `None`: batches
    /// carry no producer (retries may duplicate).
    pub producer_id: Option<i64>,
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

/// What [`Accumulator::complete`] did with the send in flight.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Completed<T> {
    /// The records of every batch sent, in order, with the base offset of
    /// the first (the others follow contiguously).
    Acked { records: Vec<T>, base_offset: i64 },
    /// The batches are back at the front of their queue, to be sent again
    /// after the backoff (or to expire, see [`Accumulator::expire`]).
    WillRetry,
    /// Several batches failed for good together: each goes again alone.
    Split,
    /// The one batch sent failed for good (the outcome was `Failed`).
    Failed { records: Vec<T> },
    /// No send of that partition was in flight (a caller bug; nothing
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
    /// Failed in a send of several batches: sent alone from now on.
    solo: bool,
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
            solo: false,
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

    /// Closes an open batch, stamping it with `producer` (id, epoch, first
    /// sequence) when given; returns whether it was open.
    fn close(&mut self, producer: Option<(i64, i16, i32)>) -> bool {
        let Contents::Open(b) = &mut self.contents else {
            return false;
        };
        let mut bytes = std::mem::take(b).build();
        if let Some((id, epoch, seq)) = producer {
            // The batch was just built, so it verifies.
            let _ = ballast_record::set_producer(&mut bytes, id, epoch, seq);
        }
        self.contents = Contents::Closed(bytes);
        true
    }
}

/// `seq + n`, wrapping at `i32::MAX` as Kafka's sequences do.
fn add_seq(seq: i32, n: usize) -> i32 {
    let m = i64::from(i32::MAX) + 1;
    ((i64::from(seq) + n as i64) % m) as i32
}

#[derive(Debug)]
struct Queue<T> {
    batches: VecDeque<Batch<T>>,
    /// How many batches at the front are in flight (one send), 0 if none.
    in_flight: usize,
    /// Idempotence: the partition's producer epoch and the sequence of the
    /// next record to be stamped.
    epoch: i16,
    next_seq: i32,
}

impl<T> Queue<T> {
    fn new((epoch, next_seq): (i16, i32)) -> Queue<T> {
        Queue {
            batches: VecDeque::new(),
            in_flight: 0,
            epoch,
            next_seq,
        }
    }

    /// Closes batch `i` (if open), stamping the next sequences.
    fn close(&mut self, i: usize, producer_id: Option<i64>) {
        let stamp = producer_id.map(|id| (id, self.epoch, self.next_seq));
        if let Some(b) = self.batches.get_mut(i)
            && b.close(stamp)
            && producer_id.is_some()
        {
            self.next_seq = add_seq(self.next_seq, b.records.len());
        }
    }

    /// Batches left without being written: a new epoch, and the closed
    /// batches not in flight stamped again from sequence 0.
    fn restart_sequences(&mut self, producer_id: Option<i64>) {
        let Some(id) = producer_id else {
            return;
        };
        self.epoch = if self.epoch == i16::MAX {
            0
        } else {
            self.epoch + 1
        };
        self.next_seq = 0;
        let skip = self.in_flight;
        for b in self.batches.iter_mut().skip(skip) {
            if let Contents::Closed(bytes) = &mut b.contents {
                let _ = ballast_record::set_producer(bytes, id, self.epoch, self.next_seq);
                self.next_seq = add_seq(self.next_seq, b.records.len());
            }
        }
    }
}

/// The accumulator. See the module documentation.
#[derive(Debug)]
pub(crate) struct Accumulator<T> {
    config: AccumulatorConfig,
    partitions: BTreeMap<TopicPartition, Queue<T>>,
    /// Idempotence: (epoch, next sequence) of partitions with no queue now.
    sequences: BTreeMap<TopicPartition, (i16, i32)>,
}

impl<T> Accumulator<T> {
    pub(crate) fn new(config: AccumulatorConfig) -> Accumulator<T> {
        Accumulator {
            config,
            partitions: BTreeMap::new(),
            sequences: BTreeMap::new(),
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
        let producer_id = self.config.producer_id;
        let sequences = &self.sequences;
        let queue = self
            .partitions
            .entry(tp.clone())
            .or_insert_with(|| Queue::new(sequences.get(tp).copied().unwrap_or((0, 0))));
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
            if let Some(last) = queue.batches.len().checked_sub(1) {
                queue.close(last, producer_id);
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
            if q.in_flight > 0 {
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

    /// Size in bytes of the partition's front batch, if no send of the
    /// partition is in flight.
    pub(crate) fn front_size(&self, tp: &TopicPartition) -> Option<usize> {
        let q = self.partitions.get(tp)?;
        if q.in_flight > 0 {
            return None;
        }
        q.batches.front().map(Batch::size)
    }

    /// Starts the partition's send: its front batch (closed now if open),
    /// then the closed batches right behind it while the total stays within
    /// `budget` bytes (a batch marked solo goes alone). Returns the bytes
    /// to send, concatenated; `None` if a send of the partition is already
    /// in flight, or there is no batch.
    pub(crate) fn start_send(&mut self, tp: &TopicPartition, budget: usize) -> Option<Vec<u8>> {
        let q = self.partitions.get_mut(tp)?;
        if q.in_flight > 0 {
            return None;
        }
        q.close(0, self.config.producer_id);
        let front = q.batches.front()?;
        let solo = front.solo;
        let mut total = front.size();
        let mut count = 1;
        if !solo {
            for b in q.batches.iter().skip(1) {
                if b.is_open() || b.solo || total + b.size() > budget {
                    break;
                }
                total += b.size();
                count += 1;
            }
        }
        let mut bytes = Vec::with_capacity(total);
        for b in q.batches.iter_mut().take(count) {
            b.attempts += 1;
            b.retry_at = None;
            if let Contents::Closed(batch) = &b.contents {
                bytes.extend_from_slice(batch);
            }
        }
        q.in_flight = count;
        Some(bytes)
    }

    /// Records how the partition's send in flight ended.
    pub(crate) fn complete(
        &mut self,
        tp: &TopicPartition,
        outcome: SendOutcome,
        now: Instant,
    ) -> Completed<T> {
        let Some(q) = self.partitions.get_mut(tp) else {
            return Completed::NotInFlight;
        };
        let sent = std::mem::take(&mut q.in_flight);
        if sent == 0 {
            return Completed::NotInFlight;
        }
        let completed = match outcome {
            SendOutcome::Acked { base_offset } => {
                let mut records = Vec::new();
                for b in q.batches.drain(..sent.min(q.batches.len())) {
                    records.extend(b.records);
                }
                Completed::Acked {
                    records,
                    base_offset,
                }
            }
            SendOutcome::Failed if sent > 1 => {
                for b in q.batches.iter_mut().take(sent) {
                    b.solo = true;
                }
                Completed::Split
            }
            SendOutcome::Failed => match q.batches.pop_front() {
                Some(b) => {
                    q.restart_sequences(self.config.producer_id);
                    Completed::Failed { records: b.records }
                }
                None => Completed::NotInFlight,
            },
            SendOutcome::Retry { error, redirected } => {
                let Some(front) = q.batches.front() else {
                    return Completed::NotInFlight;
                };
                let redirects = if redirected {
                    front.redirects_in_a_row + 1
                } else {
                    0
                };
                let pause = if redirected && redirects <= IMMEDIATE_REDIRECTS {
                    Duration::ZERO
                } else {
                    backoff(&self.config, front.attempts)
                };
                for b in q.batches.iter_mut().take(sent) {
                    b.redirects_in_a_row = redirects;
                    b.retry_at = Some(now + pause);
                    b.last_error = Some(error.clone());
                }
                Completed::WillRetry
            }
        };
        if q.batches.is_empty() {
            if self.config.producer_id.is_some() {
                self.sequences.insert(tp.clone(), (q.epoch, q.next_seq));
            }
            self.partitions.remove(tp);
        }
        completed
    }

    /// Removes the batches, not in flight, whose delivery timeout passed
    /// (a batch whose send failed and waits to be retried included).
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Expired<T>> {
        let timeout = self.config.delivery_timeout;
        let producer_id = self.config.producer_id;
        let mut out = Vec::new();
        let sequences = &mut self.sequences;
        self.partitions.retain(|tp, q| {
            let skip = q.in_flight;
            let mut kept = VecDeque::with_capacity(q.batches.len());
            let before = out.len();
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
            if out.len() > before {
                q.restart_sequences(producer_id);
            }
            if q.batches.is_empty() && producer_id.is_some() {
                sequences.insert(tp.clone(), (q.epoch, q.next_seq));
            }
            !q.batches.is_empty()
        });
        out
    }

    /// When the next queued batch (not in flight) reaches its delivery
    /// timeout.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.partitions
            .values()
            .filter_map(|q| q.batches.get(q.in_flight))
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
    use ballast_record::split_batches;

    fn config() -> AccumulatorConfig {
        AccumulatorConfig {
            batch_size: 200,
            linger: Duration::from_millis(5),
            delivery_timeout: Duration::from_secs(10),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            producer_id: None,
        }
    }

    /// (producer id, epoch, first sequence, records) of each batch.
    fn stamps(bytes: &[u8]) -> Vec<(i64, i16, i32, i32)> {
        split_batches(bytes)
            .map(|b| {
                let (h, _) = b.unwrap();
                (
                    h.producer_id,
                    h.producer_epoch,
                    h.base_sequence,
                    h.records_count,
                )
            })
            .collect()
    }

    #[test]
    fn idempotent_batches_carry_sequences_that_survive_retries_and_gaps() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(AccumulatorConfig {
            producer_id: Some(42),
            ..config()
        });
        let v = [7u8; 60];
        for i in 0..6u32 {
            acc.append(&tp(0), rec(&v), i, t0).unwrap();
        }
        // Two records per batch: sequences 0, 2, 4.
        let first = acc.start_send(&tp(0), ONE).unwrap();
        assert_eq!(stamps(&first), [(42, 0, 0, 2)]);
        // A retry sends the same bytes.
        acc.complete(&tp(0), retry("timeout", false), t0);
        let again = acc.start_send(&tp(0), ONE).unwrap();
        assert_eq!(again, first);
        acc.complete(&tp(0), SendOutcome::Acked { base_offset: 0 }, t0);
        let second = acc.start_send(&tp(0), ONE).unwrap();
        assert_eq!(stamps(&second), [(42, 0, 2, 2)]);
        // It fails for good: its records never reach the log, so the next
        // batch starts a new epoch at sequence 0.
        assert!(matches!(
            acc.complete(&tp(0), SendOutcome::Failed, t0),
            Completed::Failed { .. }
        ));
        let third = acc.start_send(&tp(0), ONE).unwrap();
        assert_eq!(stamps(&third), [(42, 1, 0, 2)]);
        acc.complete(&tp(0), SendOutcome::Acked { base_offset: 2 }, t0);
        assert!(acc.is_empty());
        // The partition's queue is gone; its sequences are not.
        acc.append(&tp(0), rec(b"x"), 9, t0).unwrap();
        let fourth = acc.start_send(&tp(0), ONE).unwrap();
        assert_eq!(stamps(&fourth), [(42, 1, 2, 1)]);
        // Another partition counts from 0; without a producer id, no stamp.
        acc.append(&tp(1), rec(b"y"), 10, t0).unwrap();
        assert_eq!(
            stamps(&acc.start_send(&tp(1), ONE).unwrap()),
            [(42, 0, 0, 1)]
        );
        let mut plain = Accumulator::new(config());
        plain.append(&tp(0), rec(b"z"), 1, t0).unwrap();
        assert_eq!(
            stamps(&plain.start_send(&tp(0), ONE).unwrap()),
            [(-1, -1, -1, 1)]
        );
    }

    #[test]
    fn expired_batches_restart_the_sequences_of_those_left() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(AccumulatorConfig {
            producer_id: Some(5),
            ..config()
        });
        let v = [7u8; 60];
        for i in 0..4u32 {
            acc.append(&tp(0), rec(&v), i, t0).unwrap();
        }
        // Batches: [0,1] in flight, [2,3] closed behind it.
        let first = acc.start_send(&tp(0), ONE).unwrap();
        assert_eq!(stamps(&first), [(5, 0, 0, 2)]);
        // A later record, appended after the second batch expires.
        let late = t0 + Duration::from_secs(11);
        let expired = acc.expire(late);
        assert_eq!(expired.len(), 1);
        acc.append(&tp(0), rec(&v), 4, late).unwrap();
        acc.complete(&tp(0), SendOutcome::Acked { base_offset: 0 }, late);
        let next = acc.start_send(&tp(0), ONE).unwrap();
        assert_eq!(stamps(&next), [(5, 1, 0, 1)], "a new epoch after the gap");
    }

    /// Room for one 200-byte batch only.
    const ONE: usize = 200;
    /// Room for many batches.
    const MANY: usize = 1 << 20;

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

    /// Values of every record in concatenated batches, and the batch count.
    fn values(bytes: &[u8]) -> (Vec<Vec<u8>>, usize) {
        let mut out = Vec::new();
        let mut batches = 0;
        for b in split_batches(bytes) {
            let (_, b) = b.unwrap();
            batches += 1;
            let (_, records) = ballast_record::Batch::decode(b).unwrap();
            out.extend(records.map(|r| r.unwrap().value.unwrap().to_vec()));
        }
        (out, batches)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn retry(error: &str, redirected: bool) -> SendOutcome {
        SendOutcome::Retry {
            error: error.into(),
            redirected,
        }
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
        let bytes = acc.start_send(&tp(0), MANY).unwrap();
        assert_eq!(values(&bytes), (vec![b"a".to_vec(), b"b".to_vec()], 1));
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
        assert_eq!(acc.front_size(&tp(0)), Some(197));
        let first = acc.start_send(&tp(0), ONE).unwrap();
        assert!(first.len() <= 200);
        assert_eq!(values(&first).0.len(), 2);
        // A record larger than the batch size gets a batch of its own.
        let big = [1u8; 500];
        let a = acc.append(&tp(1), rec(&big), 9, t0).unwrap();
        assert!(a.batch_full);
        assert_eq!(acc.ready(t0, false).partitions, [tp(1)]);
    }

    #[test]
    fn one_send_in_flight_per_partition_and_order_kept_across_retries() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(config());
        let v = [7u8; 60];
        for i in 0..6u32 {
            acc.append(&tp(0), rec(&v), i, t0).unwrap();
        }
        acc.append(&tp(1), rec(b"x"), 100, t0).unwrap();
        let first = acc.start_send(&tp(0), ONE).unwrap();
        assert_eq!(acc.start_send(&tp(0), MANY), None, "second send held back");
        assert_eq!(acc.front_size(&tp(0)), None);
        let r = acc.ready(t0 + ms(10), false);
        assert_eq!(r.partitions, [tp(1)], "partition 0 is in flight");

        // A retriable failure: the same bytes go again, first, after the
        // backoff; later batches wait.
        let c = acc.complete(&tp(0), retry("NOT_ENOUGH_REPLICAS", false), t0 + ms(10));
        assert_eq!(c, Completed::WillRetry);
        let r = acc.ready(t0 + ms(50), false);
        assert!(!r.partitions.contains(&tp(0)));
        assert_eq!(r.next_check, Some(t0 + ms(110)));
        assert_eq!(acc.ready(t0 + ms(110), false).partitions, [tp(0), tp(1)]);
        assert_eq!(acc.start_send(&tp(0), ONE).unwrap(), first, "same bytes");
        // Second failure backs off twice as long.
        acc.complete(&tp(0), retry("x", false), t0 + ms(120));
        assert_eq!(
            acc.ready(t0 + ms(120), false).next_check,
            Some(t0 + ms(320))
        );
        assert_eq!(acc.start_send(&tp(0), ONE).unwrap(), first);

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
            if acc.start_send(&tp(0), ONE).is_none() {
                break;
            }
        }
        assert_eq!(delivered, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn queued_batches_go_together_within_the_budget() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(config());
        let v = [7u8; 60];
        // Three full batches and an open one (two records each).
        for i in 0..7u32 {
            acc.append(&tp(0), rec(&v), i, t0).unwrap();
        }
        // Room for two of the three closed batches.
        let bytes = acc.start_send(&tp(0), 450).unwrap();
        let (vals, batches) = values(&bytes);
        assert_eq!((vals.len(), batches), (4, 2));
        // A retry resends both, byte for byte.
        acc.complete(&tp(0), retry("REQUEST_TIMED_OUT", false), t0);
        assert_eq!(acc.start_send(&tp(0), 450).unwrap(), bytes);
        match acc.complete(&tp(0), SendOutcome::Acked { base_offset: 10 }, t0) {
            Completed::Acked {
                records,
                base_offset,
            } => assert_eq!((records, base_offset), (vec![0, 1, 2, 3], 10)),
            other => panic!("{other:?}"),
        }
        // The last closed batch goes alone: the open one behind it waits
        // for its linger.
        let (vals, batches) = values(&acc.start_send(&tp(0), MANY).unwrap());
        assert_eq!((vals.len(), batches), (2, 1));
        acc.complete(&tp(0), SendOutcome::Acked { base_offset: 14 }, t0);
        assert!(acc.ready(t0, false).partitions.is_empty());
        assert_eq!(acc.ready(t0 + ms(5), false).partitions, [tp(0)]);
    }

    #[test]
    fn a_failed_send_of_several_batches_is_split() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(config());
        let v = [7u8; 60];
        for i in 0..7u32 {
            acc.append(&tp(0), rec(&v), i, t0).unwrap();
        }
        let (_, batches) = values(&acc.start_send(&tp(0), MANY).unwrap());
        assert_eq!(batches, 3);
        assert_eq!(
            acc.complete(&tp(0), SendOutcome::Failed, t0),
            Completed::Split
        );
        // Now one batch per send: only the bad one fails.
        let (_, batches) = values(&acc.start_send(&tp(0), MANY).unwrap());
        assert_eq!(batches, 1);
        assert!(matches!(
            acc.complete(&tp(0), SendOutcome::Acked { base_offset: 0 }, t0),
            Completed::Acked { .. }
        ));
        let (_, batches) = values(&acc.start_send(&tp(0), MANY).unwrap());
        assert_eq!(batches, 1);
        assert_eq!(
            acc.complete(&tp(0), SendOutcome::Failed, t0),
            Completed::Failed {
                records: vec![2, 3]
            }
        );
        let (_, batches) = values(&acc.start_send(&tp(0), MANY).unwrap());
        assert_eq!(batches, 1);
    }

    #[test]
    fn redirects_retry_at_once_a_few_times_then_back_off() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(config());
        acc.append(&tp(0), rec(b"a"), 1, t0).unwrap();
        let mut pauses = Vec::new();
        for _ in 0..5 {
            acc.start_send(&tp(0), MANY).unwrap();
            acc.complete(&tp(0), retry("NOT_LEADER", true), t0);
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
        acc.start_send(&tp(0), ONE).unwrap();
        assert_eq!(acc.next_expiry(), Some(t0 + Duration::from_secs(10)));
        // Queued batches expire; the one in flight waits for its answer.
        let late = t0 + Duration::from_secs(11);
        let expired = acc.expire(late);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].records, [2, 3]);
        assert_eq!(expired[0].last_error, None);
        // Its answer is a retriable error after the timeout: it expires
        // with that error instead of going again.
        assert_eq!(
            acc.complete(&tp(0), retry("timeout", false), late),
            Completed::WillRetry
        );
        let expired = acc.expire(late);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].records, [0, 1]);
        assert_eq!(expired[0].last_error.as_deref(), Some("timeout"));
        assert_eq!(expired[0].age, Duration::from_secs(11));
        assert!(acc.is_empty());

        acc.append(&tp(0), rec(b"a"), 7, t0).unwrap();
        acc.start_send(&tp(0), MANY).unwrap();
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
