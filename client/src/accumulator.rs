//! The producer's per-partition record accumulator: a pure state machine
//! (no I/O, no clock; the time is passed in) that the producer's task
//! drives.
//!
//! Owns batching and the ordering rule. Records appended to a partition go
//! into its open batch until the batch reaches `batch_size` bytes; a batch
//! becomes sendable when it is full, when another batch follows it, when it
//! is `linger` old, or when the caller forces it (flush, close). A send
//! carries the partition's next unsent batch, together with the closed
//! batches right behind it that fit the request (one request carries them
//! concatenated, and the leader appends them as one contiguous range).
//!
//! **Sends in flight.** A partition has up to `max_in_flight` sends in
//! flight (Kafka's `max.in.flight.requests.per.connection`), each with the
//! batches that follow the previous send's. With idempotence they carry at
//! most [`MAX_BATCHES_IN_FLIGHT`] batches in all (counting acknowledged
//! batches still held behind an earlier one): the leader remembers only
//! that many batches per producer, and a retry must find its batch there to
//! be answered as a duplicate. A new send then carries at most
//! `MAX_BATCHES_IN_FLIGHT / max_in_flight` batches (one with 5 in flight,
//! as Kafka's producer), so the window frees a send at a time. Without idempotence the producer asks for
//! one send in flight (a retry could otherwise land after a later batch).
//! Two sends of a partition may reach the leader in either order; the
//! leader holds the later one up to 200 ms for the earlier one, and past
//! that refuses it (`OUT_OF_ORDER_SEQUENCE_NUMBER`), which is then
//! retried, so the log keeps the order. The rules that make
//! this hold:
//! * a second send goes only once the partition's leader has acknowledged
//!   a batch of this producer (`confirmed`): a leader that does not know
//!   the producer accepts any sequence, so an overtaking send would be
//!   written before the one it overtook;
//! * a batch that was sent before (a retry) goes again with the very same
//!   bytes and batches (so a duplicate is recognised and answered with its
//!   offsets), and only once every batch before it is acknowledged; while a
//!   retry is in flight no new send starts. Retries are thus one at a time,
//!   in order, as Kafka's producer does;
//! * an `OUT_OF_ORDER_SEQUENCE_NUMBER` answer ([`SendOutcome::OutOfOrder`])
//!   is retried when an earlier batch of the partition was not acknowledged
//!   yet when the send started (it may simply have overtaken it), or when
//!   an earlier batch left without being written; otherwise it fails for
//!   good;
//! * acknowledgements are handed out in order ([`Accumulator::take_delivered`]):
//!   a send acknowledged while an earlier one is outstanding is held until
//!   that one is settled.
//!
//! A send of several batches that fails for good is split: each batch is
//! sent alone, so one bad batch (say, over the topic's size limit) fails
//! only its own records.
//!
//! **Idempotence** (when the config names a producer id): every batch is
//! stamped, as it closes, with the producer id, the partition's producer
//! epoch and the sequence of its first record (sequences count the
//! partition's records from 0). A retry resends the very same bytes, so the
//! leader recognises a batch it already wrote and answers with its offsets
//! instead of writing it twice. When batches leave a partition's queue
//! without being written (failed for good, expired), the sequences would
//! have a gap the leader refuses; so the partition's epoch goes up and the
//! batches behind the gap are stamped again from sequence 0. That restart
//! waits until no send of the partition is in flight and every batch
//! before the gap is acknowledged (a batch before it may still be retried
//! with its old stamp); until then nothing behind the gap is sent, and the
//! answers to sends in flight (stamped with the old epoch) are taken as
//! they come: written, or back in the queue to be stamped again.
//!
//! Generic over `T`, the caller's per-record completion handle, so tests use
//! plain numbers. Must never reorder batches of a partition, write a batch
//! of an idempotent producer twice, or drop a record without returning its
//! handle.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use ballast_record::{BatchBuilder, Header, RecordError};

/// Batches of an idempotent producer a partition may have sent and not yet
/// settled: the leader remembers the last 5 batches per producer
/// (`producer_state::KEPT_BATCHES`), and a retry of an older one would be
/// refused instead of answered as a duplicate.
pub(crate) const MAX_BATCHES_IN_FLIGHT: usize = 5;

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
    /// Sends of one partition in flight at once (at least 1).
    pub max_in_flight: usize,
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

/// A send handed out by [`Accumulator::start_send`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StartedSend {
    /// Names the send in [`Accumulator::complete`].
    pub id: u64,
    /// The batches, concatenated.
    pub bytes: Vec<u8>,
}

/// How a send of a partition's batches ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendOutcome {
    /// Written; its first record got `base_offset` (-1 when unknown, acks=0).
    Acked { base_offset: i64 },
    /// Worth repeating: `error` says what happened. `redirected`: the cache
    /// now names a new leader, so the retry may go at once.
    Retry { error: String, redirected: bool },
    /// The leader refused the sequences (`OUT_OF_ORDER_SEQUENCE_NUMBER`):
    /// retried when an earlier batch of the partition explains it (see the
    /// module documentation), else failed for good.
    OutOfOrder { error: String },
    /// Will not succeed; the caller knows why.
    Failed,
}

/// What [`Accumulator::complete`] did with the send.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Completed<T> {
    /// Written. The records are handed out, in order, by
    /// [`Accumulator::take_delivered`] (at once, or once the earlier sends
    /// of the partition are settled).
    Acked,
    /// The batches wait in their queue to be sent again after the backoff
    /// (or to expire, see [`Accumulator::expire`]).
    WillRetry,
    /// Several batches failed for good together: each goes again alone.
    Split,
    /// The one batch sent failed for good.
    Failed { records: Vec<T> },
    /// No such send of that partition was in flight (a caller bug; nothing
    /// changed).
    NotInFlight,
}

/// Records written: their base offset (-1 when unknown), the others follow
/// contiguously.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Delivered<T> {
    pub tp: TopicPartition,
    pub records: Vec<T>,
    pub base_offset: i64,
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
    /// The send it is in flight in.
    in_flight: Option<u64>,
    /// The send it went in last: a retry carries the same batches.
    group: Option<u64>,
    /// Written, with this base offset (-1 unknown); held until the batches
    /// before it are settled.
    acked: Option<i64>,
    /// When last sent, a batch before it was not acknowledged yet.
    sent_behind: bool,
    /// Refused as out of order because of an earlier batch: surely not
    /// written, so it goes again like a new batch (no backoff, alongside
    /// other sends).
    refused: bool,
    /// In flight as a retry of a send whose outcome was unknown.
    retrying: bool,
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
            in_flight: None,
            group: None,
            acked: None,
            sent_behind: false,
            refused: false,
            retrying: false,
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

    /// Neither in flight nor written: waiting to be sent (again).
    fn is_queued(&self) -> bool {
        self.in_flight.is_none() && self.acked.is_none()
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

/// Idempotence state of a partition, kept while it has no queue.
#[derive(Debug, Clone, Copy, Default)]
struct Sequences {
    epoch: i16,
    next_seq: i32,
    /// The leader acknowledged a batch of this producer.
    confirmed: bool,
}

#[derive(Debug)]
struct Queue<T> {
    /// In order: written batches not yet handed out (held behind an earlier
    /// one), batches in flight, batches waiting for a retry, new batches.
    batches: VecDeque<Batch<T>>,
    /// Sends in flight.
    sends: usize,
    seqs: Sequences,
    /// Batches left without being written: how many batches are before the
    /// gap. Nothing at or behind it is sent until the restart.
    gap: Option<usize>,
}

impl<T> Queue<T> {
    fn new(seqs: Sequences) -> Queue<T> {
        Queue {
            batches: VecDeque::new(),
            sends: 0,
            seqs,
            gap: None,
        }
    }

    /// Closes batch `i` (if open), stamping the next sequences.
    fn close(&mut self, i: usize, producer_id: Option<i64>) {
        let stamp = producer_id.map(|id| (id, self.seqs.epoch, self.seqs.next_seq));
        if let Some(b) = self.batches.get_mut(i)
            && b.close(stamp)
            && producer_id.is_some()
        {
            self.seqs.next_seq = add_seq(self.seqs.next_seq, b.records.len());
        }
    }

    /// Notes that batches left at position `at` without being written.
    fn note_gap(&mut self, at: usize) {
        self.gap = Some(self.gap.map_or(at, |g| g.min(at)));
    }

    /// Once nothing is in flight and every batch before the gap is
    /// settled: a new epoch, and the closed batches stamped again from
    /// sequence 0.
    fn maybe_restart(&mut self, producer_id: Option<i64>) {
        if self.gap != Some(0) || self.sends > 0 {
            return;
        }
        self.gap = None;
        let Some(id) = producer_id else {
            return;
        };
        self.seqs.epoch = if self.seqs.epoch == i16::MAX {
            0
        } else {
            self.seqs.epoch + 1
        };
        self.seqs.next_seq = 0;
        for b in self.batches.iter_mut().filter(|b| b.acked.is_none()) {
            if let Contents::Closed(bytes) = &mut b.contents {
                let _ =
                    ballast_record::set_producer(bytes, id, self.seqs.epoch, self.seqs.next_seq);
                self.seqs.next_seq = add_seq(self.seqs.next_seq, b.records.len());
            }
        }
    }

    /// The position of the batch the next send starts with, if the rules
    /// allow one now (timing aside): see the module documentation.
    fn next_send(&self, max_in_flight: usize, max_batches: usize) -> Option<usize> {
        let i = self.batches.iter().position(Batch::is_queued)?;
        if self.gap.is_some_and(|g| i >= g) {
            return None;
        }
        let b = &self.batches[i];
        if b.attempts > 0 && !b.refused {
            // A retry: only once everything before it is settled.
            return (i == 0).then_some(i);
        }
        if self.sends >= max_in_flight.max(1) || i >= max_batches {
            return None;
        }
        if self.sends > 0 {
            let retry_in_flight = self
                .batches
                .iter()
                .any(|b| b.in_flight.is_some() && b.retrying);
            if !self.seqs.confirmed || retry_in_flight {
                return None;
            }
        }
        Some(i)
    }
}

/// The accumulator. See the module documentation.
#[derive(Debug)]
pub(crate) struct Accumulator<T> {
    config: AccumulatorConfig,
    partitions: BTreeMap<TopicPartition, Queue<T>>,
    /// Idempotence: the state of partitions with no queue now.
    sequences: BTreeMap<TopicPartition, Sequences>,
    next_send_id: u64,
    /// Written records to hand out, in order per partition.
    delivered: Vec<Delivered<T>>,
}

impl<T> Accumulator<T> {
    pub(crate) fn new(config: AccumulatorConfig) -> Accumulator<T> {
        Accumulator {
            config,
            partitions: BTreeMap::new(),
            sequences: BTreeMap::new(),
            next_send_id: 0,
            delivered: Vec::new(),
        }
    }

    /// No record held (queued, in flight, or written and not handed out).
    pub(crate) fn is_empty(&self) -> bool {
        self.partitions.is_empty() && self.delivered.is_empty()
    }

    fn max_batches(&self) -> usize {
        if self.config.producer_id.is_some() {
            MAX_BATCHES_IN_FLIGHT
        } else {
            usize::MAX
        }
    }

    /// Batches one new send may carry: with idempotence the leader's window
    /// shared among the sends in flight (one batch each with 5 in flight,
    /// as Kafka's producer sends), so that acknowledgements free it a send
    /// at a time.
    fn batches_per_send(&self) -> usize {
        if self.config.producer_id.is_some() {
            (MAX_BATCHES_IN_FLIGHT / self.config.max_in_flight.max(1)).max(1)
        } else {
            usize::MAX
        }
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
            .or_insert_with(|| Queue::new(sequences.get(tp).copied().unwrap_or_default()));
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
            if queue.batches.is_empty() && queue.sends == 0 {
                let seqs = queue.seqs;
                self.partitions.remove(tp);
                if producer_id.is_some() {
                    self.sequences.insert(tp.clone(), seqs);
                }
            }
        }
        appended
    }

    /// Whether the partition's next send may go now (`Ok`), or when to
    /// look again (`Err(Some(t))`), or not on time (`Err(None)`: a send in
    /// flight or no batch).
    fn sendable(&self, q: &Queue<T>, now: Instant, force: bool) -> Result<(), Option<Instant>> {
        let Some(i) = q.next_send(self.config.max_in_flight, self.max_batches()) else {
            return Err(None);
        };
        let b = &q.batches[i];
        if let Some(at) = b.retry_at
            && at > now
        {
            return Err(Some(at));
        }
        let due = b.created + self.config.linger;
        let sendable = force
            || !b.is_open()
            || q.batches.len() > i + 1
            || b.attempts > 0
            || b.size() >= self.config.batch_size
            || due <= now;
        if sendable { Ok(()) } else { Err(Some(due)) }
    }

    /// Partitions whose next batch may be sent now (the send rules allow
    /// it, backoff over, and full, followed, `linger` old, or `force`d).
    pub(crate) fn ready(&self, now: Instant, force: bool) -> Ready {
        let mut ready = Ready::default();
        for (tp, q) in &self.partitions {
            match self.sendable(q, now, force) {
                Ok(()) => ready.partitions.push(tp.clone()),
                Err(Some(t)) => {
                    ready.next_check = Some(ready.next_check.map_or(t, |n| n.min(t)));
                }
                Err(None) => {}
            }
        }
        ready
    }

    /// Whether the partition's next send may go now (as [`Self::ready`]).
    pub(crate) fn is_ready(&self, tp: &TopicPartition, now: Instant, force: bool) -> bool {
        self.partitions
            .get(tp)
            .is_some_and(|q| self.sendable(q, now, force).is_ok())
    }

    /// Size in bytes of the first batch of the partition's next send (of
    /// all its batches for a retry of several), if one may start.
    pub(crate) fn front_size(&self, tp: &TopicPartition) -> Option<usize> {
        let q = self.partitions.get(tp)?;
        let i = q.next_send(self.config.max_in_flight, self.max_batches())?;
        let first = &q.batches[i];
        match first.group.filter(|_| first.attempts > 0 && !first.solo) {
            Some(g) => Some(
                q.batches
                    .iter()
                    .skip(i)
                    .take_while(|b| b.group == Some(g))
                    .map(Batch::size)
                    .sum(),
            ),
            None => Some(first.size()),
        }
    }

    /// Starts the partition's next send: the batch the rules allow (closed
    /// now if open), then the closed new batches right behind it while the
    /// total stays within `budget` bytes (and, with idempotence,
    /// [`MAX_BATCHES_IN_FLIGHT`]); a retry carries exactly the batches it
    /// carried before, a batch marked solo goes alone. `None` if no send
    /// may start (see the module documentation; timing is the caller's,
    /// through [`Self::ready`]).
    pub(crate) fn start_send(&mut self, tp: &TopicPartition, budget: usize) -> Option<StartedSend> {
        let max_in_flight = self.config.max_in_flight;
        let max_batches = self.max_batches();
        let per_send = self.batches_per_send();
        let q = self.partitions.get_mut(tp)?;
        let i = q.next_send(max_in_flight, max_batches)?;
        q.close(i, self.config.producer_id);
        let first = &q.batches[i];
        let mut total = first.size();
        let mut count = 1;
        if let Some(g) = first.group.filter(|_| first.attempts > 0 && !first.solo) {
            count = q
                .batches
                .iter()
                .skip(i)
                .take_while(|b| b.group == Some(g))
                .count();
        } else if !first.solo {
            for b in q.batches.iter().skip(i + 1) {
                if b.is_open()
                    || b.solo
                    || b.attempts > 0
                    || total + b.size() > budget
                    || i + count >= max_batches
                    || count >= per_send
                {
                    break;
                }
                total += b.size();
                count += 1;
            }
        }
        let id = self.next_send_id;
        self.next_send_id += 1;
        let mut bytes = Vec::with_capacity(total);
        for b in q.batches.iter_mut().skip(i).take(count) {
            b.retrying = b.attempts > 0 && !b.refused;
            b.refused = false;
            b.attempts += 1;
            b.retry_at = None;
            b.in_flight = Some(id);
            b.group = (!b.solo).then_some(id);
            b.sent_behind = i > 0;
            if let Contents::Closed(batch) = &b.contents {
                bytes.extend_from_slice(batch);
            }
        }
        q.sends += 1;
        Some(StartedSend { id, bytes })
    }

    /// Records how send `id` of the partition ended.
    pub(crate) fn complete(
        &mut self,
        tp: &TopicPartition,
        id: u64,
        outcome: SendOutcome,
        now: Instant,
    ) -> Completed<T> {
        let Some(q) = self.partitions.get_mut(tp) else {
            return Completed::NotInFlight;
        };
        let Some(start) = q.batches.iter().position(|b| b.in_flight == Some(id)) else {
            return Completed::NotInFlight;
        };
        let sent = q
            .batches
            .iter()
            .skip(start)
            .take_while(|b| b.in_flight == Some(id))
            .count();
        q.sends -= 1;
        for b in q.batches.iter_mut().skip(start).take(sent) {
            b.in_flight = None;
        }
        let outcome = match outcome {
            SendOutcome::Acked { base_offset } => Verdict::Acked(base_offset),
            SendOutcome::Retry { error, redirected } => Verdict::Retry(error, redirected),
            SendOutcome::Failed => Verdict::Failed,
            SendOutcome::OutOfOrder { error } => {
                // Explained by an earlier batch that had not been written
                // when this send started, or that left unwritten.
                let explained = q.batches[start].sent_behind
                    || q.gap.is_some_and(|g| g <= start)
                    || q.batches.iter().take(start).any(|b| b.acked.is_none());
                if explained {
                    Verdict::Refused(error)
                } else {
                    Verdict::Failed
                }
            }
        };
        let completed = match outcome {
            Verdict::Acked(base_offset) => {
                q.seqs.confirmed = true;
                let mut offset = base_offset;
                for b in q.batches.iter_mut().skip(start).take(sent) {
                    b.acked = Some(offset);
                    if offset >= 0 {
                        offset += b.records.len() as i64;
                    }
                }
                Completed::Acked
            }
            Verdict::Failed if sent > 1 => {
                for b in q.batches.iter_mut().skip(start).take(sent) {
                    b.solo = true;
                    b.group = None;
                }
                Completed::Split
            }
            Verdict::Failed => match q.batches.remove(start) {
                Some(b) => {
                    q.note_gap(start);
                    Completed::Failed { records: b.records }
                }
                None => Completed::NotInFlight,
            },
            Verdict::Retry(error, redirected) => {
                let front = &q.batches[start];
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
                for b in q.batches.iter_mut().skip(start).take(sent) {
                    b.redirects_in_a_row = redirects;
                    b.retry_at = Some(now + pause);
                    b.last_error = Some(error.clone());
                }
                Completed::WillRetry
            }
            Verdict::Refused(error) => {
                for b in q.batches.iter_mut().skip(start).take(sent) {
                    b.refused = true;
                    b.retry_at = None;
                    b.last_error = Some(error.clone());
                }
                Completed::WillRetry
            }
        };
        self.settle(tp);
        completed
    }

    /// Hands out written batches at the front of the partition's queue,
    /// restarts its sequences if due, and drops an empty queue.
    fn settle(&mut self, tp: &TopicPartition) {
        let producer_id = self.config.producer_id;
        let Some(q) = self.partitions.get_mut(tp) else {
            return;
        };
        while let Some(base_offset) = q.batches.front().and_then(|b| b.acked) {
            let Some(b) = q.batches.pop_front() else {
                break;
            };
            q.gap = q.gap.map(|g| g.saturating_sub(1));
            match self.delivered.last_mut() {
                Some(d)
                    if d.tp == *tp
                        && d.base_offset >= 0
                        && d.base_offset + d.records.len() as i64 == base_offset =>
                {
                    d.records.extend(b.records);
                }
                _ => self.delivered.push(Delivered {
                    tp: tp.clone(),
                    records: b.records,
                    base_offset,
                }),
            }
        }
        q.maybe_restart(producer_id);
        if q.batches.is_empty() && q.sends == 0 {
            if producer_id.is_some() {
                self.sequences.insert(tp.clone(), q.seqs);
            }
            self.partitions.remove(tp);
        }
    }

    /// Written records, in order per partition, each run with its base
    /// offset (-1 unknown); the others of a run follow contiguously.
    pub(crate) fn take_delivered(&mut self) -> Vec<Delivered<T>> {
        std::mem::take(&mut self.delivered)
    }

    /// Removes the batches, neither in flight nor written, whose delivery
    /// timeout passed (a batch whose send failed and waits to be retried
    /// included).
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Expired<T>> {
        let timeout = self.config.delivery_timeout;
        let mut out = Vec::new();
        let mut touched = Vec::new();
        for (tp, q) in &mut self.partitions {
            let mut kept = VecDeque::with_capacity(q.batches.len());
            let mut gap = None;
            for b in std::mem::take(&mut q.batches) {
                if b.is_queued() && now >= b.created + timeout {
                    gap.get_or_insert(kept.len());
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
            if let Some(at) = gap {
                q.note_gap(at);
                touched.push(tp.clone());
            }
        }
        for tp in touched {
            self.settle(&tp);
        }
        out
    }

    /// When the next batch neither in flight nor written reaches its
    /// delivery timeout.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.partitions
            .values()
            .filter_map(|q| q.batches.iter().find(|b| b.is_queued()))
            .map(|b| b.created + self.config.delivery_timeout)
            .min()
    }
}

/// A send's outcome once an out-of-order refusal is judged.
enum Verdict {
    Acked(i64),
    Retry(String, bool),
    /// Out of order, explained by an earlier batch: not written.
    Refused(String),
    Failed,
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
            max_in_flight: 1,
        }
    }

    /// Completes the partition's oldest send in flight.
    fn done(
        acc: &mut Accumulator<u32>,
        tp: &TopicPartition,
        outcome: SendOutcome,
        now: Instant,
    ) -> Completed<u32> {
        let id = oldest(acc, tp).unwrap_or(u64::MAX);
        acc.complete(tp, id, outcome, now)
    }

    /// The id of the partition's oldest send in flight.
    fn oldest(acc: &Accumulator<u32>, tp: &TopicPartition) -> Option<u64> {
        acc.partitions
            .get(tp)
            .and_then(|q| q.batches.iter().find_map(|b| b.in_flight))
    }

    /// Acknowledges the oldest send at `base`: the records handed out and
    /// the base offset of the first.
    fn ack(
        acc: &mut Accumulator<u32>,
        tp: &TopicPartition,
        base: i64,
        now: Instant,
    ) -> (Vec<u32>, i64) {
        let c = done(acc, tp, SendOutcome::Acked { base_offset: base }, now);
        assert_eq!(c, Completed::Acked);
        delivered(acc)
    }

    /// The records handed out, and the base offset of the first run (-2
    /// when none).
    fn delivered(acc: &mut Accumulator<u32>) -> (Vec<u32>, i64) {
        let runs = acc.take_delivered();
        let base = runs.first().map_or(-2, |d| d.base_offset);
        (runs.into_iter().flat_map(|d| d.records).collect(), base)
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
        let first = acc.start_send(&tp(0), ONE).unwrap().bytes;
        assert_eq!(stamps(&first), [(42, 0, 0, 2)]);
        // A retry sends the same bytes.
        done(&mut acc, &tp(0), retry("timeout", false), t0);
        let again = acc.start_send(&tp(0), ONE).unwrap().bytes;
        assert_eq!(again, first);
        assert_eq!(ack(&mut acc, &tp(0), 0, t0), (vec![0, 1], 0));
        let second = acc.start_send(&tp(0), ONE).unwrap().bytes;
        assert_eq!(stamps(&second), [(42, 0, 2, 2)]);
        // It fails for good: its records never reach the log, so the next
        // batch starts a new epoch at sequence 0.
        assert!(matches!(
            done(&mut acc, &tp(0), SendOutcome::Failed, t0),
            Completed::Failed { .. }
        ));
        let third = acc.start_send(&tp(0), ONE).unwrap().bytes;
        assert_eq!(stamps(&third), [(42, 1, 0, 2)]);
        assert_eq!(ack(&mut acc, &tp(0), 2, t0), (vec![4, 5], 2));
        assert!(acc.is_empty());
        // The partition's queue is gone; its sequences are not.
        acc.append(&tp(0), rec(b"x"), 9, t0).unwrap();
        let fourth = acc.start_send(&tp(0), ONE).unwrap().bytes;
        assert_eq!(stamps(&fourth), [(42, 1, 2, 1)]);
        // Another partition counts from 0; without a producer id, no stamp.
        acc.append(&tp(1), rec(b"y"), 10, t0).unwrap();
        assert_eq!(
            stamps(&acc.start_send(&tp(1), ONE).unwrap().bytes),
            [(42, 0, 0, 1)]
        );
        let mut plain = Accumulator::new(config());
        plain.append(&tp(0), rec(b"z"), 1, t0).unwrap();
        assert_eq!(
            stamps(&plain.start_send(&tp(0), ONE).unwrap().bytes),
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
        let first = acc.start_send(&tp(0), ONE).unwrap().bytes;
        assert_eq!(stamps(&first), [(5, 0, 0, 2)]);
        // A later record, appended after the second batch expires.
        let late = t0 + Duration::from_secs(11);
        let expired = acc.expire(late);
        assert_eq!(expired.len(), 1);
        acc.append(&tp(0), rec(&v), 4, late).unwrap();
        done(
            &mut acc,
            &tp(0),
            SendOutcome::Acked { base_offset: 0 },
            late,
        );
        let next = acc.start_send(&tp(0), ONE).unwrap().bytes;
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
        let bytes = acc.start_send(&tp(0), MANY).unwrap().bytes;
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
        let first = acc.start_send(&tp(0), ONE).unwrap().bytes;
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
        let first = acc.start_send(&tp(0), ONE).unwrap().bytes;
        assert_eq!(acc.start_send(&tp(0), MANY), None, "second send held back");
        assert_eq!(acc.front_size(&tp(0)), None);
        let r = acc.ready(t0 + ms(10), false);
        assert_eq!(r.partitions, [tp(1)], "partition 0 is in flight");

        // A retriable failure: the same bytes go again, first, after the
        // backoff; later batches wait.
        let c = done(
            &mut acc,
            &tp(0),
            retry("NOT_ENOUGH_REPLICAS", false),
            t0 + ms(10),
        );
        assert_eq!(c, Completed::WillRetry);
        let r = acc.ready(t0 + ms(50), false);
        assert!(!r.partitions.contains(&tp(0)));
        assert_eq!(r.next_check, Some(t0 + ms(110)));
        assert_eq!(acc.ready(t0 + ms(110), false).partitions, [tp(0), tp(1)]);
        assert_eq!(
            acc.start_send(&tp(0), ONE).unwrap().bytes,
            first,
            "same bytes"
        );
        // Second failure backs off twice as long.
        done(&mut acc, &tp(0), retry("x", false), t0 + ms(120));
        assert_eq!(
            acc.ready(t0 + ms(120), false).next_check,
            Some(t0 + ms(320))
        );
        assert_eq!(acc.start_send(&tp(0), ONE).unwrap().bytes, first);

        let mut delivered = Vec::new();
        let mut base = 0;
        loop {
            let (records, base_offset) = ack(&mut acc, &tp(0), base, t0 + ms(400));
            assert_eq!(base_offset, base);
            base += records.len() as i64;
            delivered.extend(records);
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
        let bytes = acc.start_send(&tp(0), 450).unwrap().bytes;
        let (vals, batches) = values(&bytes);
        assert_eq!((vals.len(), batches), (4, 2));
        // A retry resends both, byte for byte.
        done(&mut acc, &tp(0), retry("REQUEST_TIMED_OUT", false), t0);
        assert_eq!(acc.start_send(&tp(0), 450).unwrap().bytes, bytes);
        assert_eq!(ack(&mut acc, &tp(0), 10, t0), (vec![0, 1, 2, 3], 10));
        // The last closed batch goes alone: the open one behind it waits
        // for its linger.
        let (vals, batches) = values(&acc.start_send(&tp(0), MANY).unwrap().bytes);
        assert_eq!((vals.len(), batches), (2, 1));
        done(&mut acc, &tp(0), SendOutcome::Acked { base_offset: 14 }, t0);
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
        let (_, batches) = values(&acc.start_send(&tp(0), MANY).unwrap().bytes);
        assert_eq!(batches, 3);
        assert_eq!(
            done(&mut acc, &tp(0), SendOutcome::Failed, t0),
            Completed::Split
        );
        // Now one batch per send: only the bad one fails.
        let (_, batches) = values(&acc.start_send(&tp(0), MANY).unwrap().bytes);
        assert_eq!(batches, 1);
        assert_eq!(ack(&mut acc, &tp(0), 0, t0), (vec![0, 1], 0));
        let (_, batches) = values(&acc.start_send(&tp(0), MANY).unwrap().bytes);
        assert_eq!(batches, 1);
        assert_eq!(
            done(&mut acc, &tp(0), SendOutcome::Failed, t0),
            Completed::Failed {
                records: vec![2, 3]
            }
        );
        let (_, batches) = values(&acc.start_send(&tp(0), MANY).unwrap().bytes);
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
            done(&mut acc, &tp(0), retry("NOT_LEADER", true), t0);
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
            done(&mut acc, &tp(0), retry("timeout", false), late),
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
            done(&mut acc, &tp(0), SendOutcome::Failed, t0),
            Completed::Failed { records: vec![7] }
        );
        assert_eq!(
            done(&mut acc, &tp(0), SendOutcome::Failed, t0),
            Completed::NotInFlight
        );
        assert!(acc.is_empty());
    }

    /// An idempotent accumulator with `n` sends in flight and `records`
    /// records of 60 bytes on partition 0 (two per batch: record `2k` and
    /// `2k + 1` in batch `k`, sequence `2k`), batch 0 acknowledged at
    /// offset 0 so that the partition is confirmed.
    fn pipelined(n: usize, records: u32, t0: Instant) -> Accumulator<u32> {
        let mut acc = Accumulator::new(AccumulatorConfig {
            producer_id: Some(7),
            max_in_flight: n,
            ..config()
        });
        let v = [7u8; 60];
        for i in 0..records {
            acc.append(&tp(0), rec(&v), i, t0).unwrap();
        }
        let first = acc.start_send(&tp(0), ONE).unwrap();
        assert_eq!(stamps(&first.bytes), [(7, 0, 0, 2)]);
        assert_eq!(
            acc.start_send(&tp(0), ONE),
            None,
            "no second send before the leader knows the producer"
        );
        acc.complete(&tp(0), first.id, SendOutcome::Acked { base_offset: 0 }, t0);
        assert_eq!(delivered(&mut acc), (vec![0, 1], 0));
        acc
    }

    /// Starts up to `n` sends of one batch; their ids and first sequences.
    fn start(acc: &mut Accumulator<u32>, n: usize) -> Vec<(u64, i32)> {
        (0..n)
            .map_while(|_| acc.start_send(&tp(0), ONE))
            .map(|s| (s.id, stamps(&s.bytes)[0].2))
            .collect()
    }

    fn ooo() -> SendOutcome {
        SendOutcome::OutOfOrder {
            error: "OUT_OF_ORDER_SEQUENCE_NUMBER".into(),
        }
    }

    #[test]
    fn several_sends_in_flight_are_handed_out_in_order() {
        let t0 = Instant::now();
        let mut acc = pipelined(5, 14, t0);
        // Batches 1..=5 go in five sends; a sixth would exceed both limits.
        let sends = start(&mut acc, 6);
        let seqs: Vec<i32> = sends.iter().map(|s| s.1).collect();
        assert_eq!(seqs, [2, 4, 6, 8, 10]);
        assert!(acc.ready(t0, true).partitions.is_empty());
        // Answers out of order: each is held until those before it are in.
        acc.complete(
            &tp(0),
            sends[2].0,
            SendOutcome::Acked { base_offset: 6 },
            t0,
        );
        acc.complete(
            &tp(0),
            sends[1].0,
            SendOutcome::Acked { base_offset: 4 },
            t0,
        );
        assert_eq!(delivered(&mut acc), (vec![], -2));
        assert_eq!(
            start(&mut acc, 1),
            [],
            "held batches count against the leader's window"
        );
        acc.complete(
            &tp(0),
            sends[0].0,
            SendOutcome::Acked { base_offset: 2 },
            t0,
        );
        assert_eq!(delivered(&mut acc), (vec![2, 3, 4, 5, 6, 7], 2));
        // Room again: batches 6 (sent) after 4 and 5 are answered.
        let more = start(&mut acc, 5);
        assert_eq!(more.iter().map(|s| s.1).collect::<Vec<_>>(), [12]);
        for (id, base) in [(sends[3].0, 8), (sends[4].0, 10), (more[0].0, 12)] {
            acc.complete(&tp(0), id, SendOutcome::Acked { base_offset: base }, t0);
        }
        let (records, base) = delivered(&mut acc);
        assert_eq!((records, base), ((8..14).collect::<Vec<u32>>(), 8));
        assert!(acc.is_empty());
    }

    #[test]
    fn sends_refused_out_of_order_go_again_at_once_in_order() {
        let t0 = Instant::now();
        let mut acc = pipelined(5, 8, t0);
        // Batches 1, 2, 3 in flight (sequences 2, 4, 6). The agent handles
        // 2 and 3 before 1: both refused as out of order.
        let sends = start(&mut acc, 5);
        assert_eq!(sends.len(), 3);
        let bytes_of =
            |acc: &Accumulator<u32>, k: usize| match &acc.partitions[&tp(0)].batches[k].contents {
                Contents::Closed(b) => b.clone(),
                Contents::Open(_) => Vec::new(),
            };
        let (b2, b3) = (bytes_of(&acc, 1), bytes_of(&acc, 2));
        assert_eq!(
            acc.complete(&tp(0), sends[1].0, ooo(), t0),
            Completed::WillRetry
        );
        assert_eq!(
            acc.complete(&tp(0), sends[2].0, ooo(), t0),
            Completed::WillRetry
        );
        // Surely not written: they go again at once, in order, same bytes,
        // alongside batch 1.
        assert_eq!(acc.ready(t0, false).partitions, [tp(0)]);
        let again = acc.start_send(&tp(0), MANY).unwrap();
        assert_eq!(again.bytes, b2);
        let last = acc.start_send(&tp(0), MANY).unwrap();
        assert_eq!(last.bytes, b3);
        // Batch 3's retry overtakes batch 2's again: refused again, and
        // again explained (batch 2 was not acknowledged when it went).
        assert_eq!(
            acc.complete(&tp(0), last.id, ooo(), t0),
            Completed::WillRetry
        );
        for (id, base) in [(sends[0].0, 2), (again.id, 4)] {
            acc.complete(&tp(0), id, SendOutcome::Acked { base_offset: base }, t0);
        }
        assert_eq!(delivered(&mut acc), (vec![2, 3, 4, 5], 2));
        let last = acc.start_send(&tp(0), MANY).unwrap();
        assert_eq!(last.bytes, b3);
        // Alone now, with nothing before it: out of order is for good.
        assert_eq!(
            acc.complete(&tp(0), last.id, ooo(), t0),
            Completed::Failed {
                records: vec![6, 7]
            }
        );
        assert!(acc.is_empty());
    }

    #[test]
    fn a_lost_answer_brings_the_sends_behind_it_back_without_duplicates() {
        let t0 = Instant::now();
        let mut acc = pipelined(5, 8, t0);
        let sends = start(&mut acc, 5);
        // Batch 1 was written but its answer lost; batch 2 written and
        // acknowledged (held); batch 3 refused by a leader that moved.
        assert_eq!(
            acc.complete(&tp(0), sends[0].0, retry("DEADLINE_EXCEEDED", false), t0),
            Completed::WillRetry
        );
        acc.complete(
            &tp(0),
            sends[1].0,
            SendOutcome::Acked { base_offset: 4 },
            t0,
        );
        acc.complete(&tp(0), sends[2].0, retry("NOT_LEADER", true), t0);
        assert_eq!(delivered(&mut acc), (vec![], -2));
        // After the backoff, batch 1 alone: the leader answers it as a
        // duplicate with its offsets, which releases batch 2 as well.
        let later = t0 + ms(100);
        let again = acc.start_send(&tp(0), MANY).unwrap();
        assert_eq!(stamps(&again.bytes), [(7, 0, 2, 2)]);
        assert_eq!(acc.start_send(&tp(0), MANY), None, "one retry at a time");
        acc.complete(
            &tp(0),
            again.id,
            SendOutcome::Acked { base_offset: 2 },
            later,
        );
        assert_eq!(delivered(&mut acc), (vec![2, 3, 4, 5], 2));
        let third = acc.start_send(&tp(0), MANY).unwrap();
        assert_eq!(stamps(&third.bytes), [(7, 0, 6, 2)]);
        acc.complete(
            &tp(0),
            third.id,
            SendOutcome::Acked { base_offset: 6 },
            later,
        );
        assert_eq!(delivered(&mut acc), (vec![6, 7], 6));
        assert!(acc.is_empty());
    }

    #[test]
    fn out_of_order_with_nothing_before_it_fails_for_good() {
        let t0 = Instant::now();
        let mut acc = pipelined(5, 4, t0);
        let s = acc.start_send(&tp(0), MANY).unwrap();
        assert_eq!(
            acc.complete(&tp(0), s.id, ooo(), t0),
            Completed::Failed {
                records: vec![2, 3]
            }
        );
        assert!(acc.is_empty());
        // The next batch starts a new epoch.
        acc.append(&tp(0), rec(b"z"), 9, t0).unwrap();
        let next = acc.start_send(&tp(0), MANY).unwrap();
        assert_eq!(stamps(&next.bytes), [(7, 1, 0, 1)]);
    }

    #[test]
    fn a_failure_for_good_restarts_the_epoch_once_the_sends_in_flight_are_back() {
        let t0 = Instant::now();
        let mut acc = pipelined(5, 10, t0);
        let sends = start(&mut acc, 5);
        assert_eq!(sends.len(), 4);
        // Batch 2 (sequence 4) is refused for good; batches 3 and 4 behind
        // it were refused as out of order; batch 1 is still unanswered.
        assert_eq!(
            acc.complete(&tp(0), sends[1].0, SendOutcome::Failed, t0),
            Completed::Failed {
                records: vec![4, 5]
            }
        );
        assert_eq!(
            acc.complete(&tp(0), sends[2].0, ooo(), t0),
            Completed::WillRetry,
            "a gap before it explains the refusal"
        );
        acc.append(&tp(0), rec(b"late"), 10, t0).unwrap();
        assert_eq!(start(&mut acc, 5), [], "nothing behind the gap goes yet");
        assert_eq!(
            acc.complete(&tp(0), sends[3].0, ooo(), t0),
            Completed::WillRetry
        );
        // Batch 1 (old epoch) is written; then the rest restart at epoch 1.
        acc.complete(
            &tp(0),
            sends[0].0,
            SendOutcome::Acked { base_offset: 2 },
            t0,
        );
        assert_eq!(delivered(&mut acc), (vec![2, 3], 2));
        let later = t0 + ms(500);
        let mut stamped = Vec::new();
        let mut base = 4;
        while let Some(s) = acc.start_send(&tp(0), MANY) {
            stamped.extend(stamps(&s.bytes));
            acc.complete(
                &tp(0),
                s.id,
                SendOutcome::Acked { base_offset: base },
                later,
            );
            base += i64::from(stamps(&s.bytes)[0].3);
        }
        assert_eq!(stamped, [(7, 1, 0, 2), (7, 1, 2, 2), (7, 1, 4, 1)]);
        assert_eq!(delivered(&mut acc).0, [6, 7, 8, 9, 10]);
        assert!(acc.is_empty());
    }

    #[test]
    fn an_acknowledgement_in_flight_during_a_restart_is_kept() {
        let t0 = Instant::now();
        let mut acc = pipelined(5, 6, t0);
        let sends = start(&mut acc, 5);
        assert_eq!(sends.len(), 2);
        // Batch 2 (behind batch 1, in flight) waits for a retry, then
        // expires; batch 1's answer (old epoch) comes after.
        acc.complete(&tp(0), sends[1].0, retry("timeout", false), t0);
        let late = t0 + Duration::from_secs(11);
        let expired = acc.expire(late);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].records, [4, 5]);
        acc.append(&tp(0), rec(b"after"), 6, late).unwrap();
        assert_eq!(start(&mut acc, 5), [], "the gap holds new batches back");
        acc.complete(
            &tp(0),
            sends[0].0,
            SendOutcome::Acked { base_offset: 2 },
            late,
        );
        assert_eq!(delivered(&mut acc), (vec![2, 3], 2));
        let next = acc.start_send(&tp(0), MANY).unwrap();
        assert_eq!(stamps(&next.bytes), [(7, 1, 0, 1)]);
    }

    #[test]
    fn idempotent_sends_share_the_leaders_window_of_five_batches() {
        let t0 = Instant::now();
        let mut acc = Accumulator::new(AccumulatorConfig {
            producer_id: Some(3),
            ..config()
        });
        let v = [7u8; 60];
        for i in 0..16u32 {
            acc.append(&tp(0), rec(&v), i, t0).unwrap();
        }
        let s = acc.start_send(&tp(0), MANY).unwrap();
        assert_eq!(stamps(&s.bytes).len(), MAX_BATCHES_IN_FLIGHT);
        // With 5 sends in flight, one batch each.
        let mut five = pipelined(5, 16, t0);
        let s = five.start_send(&tp(0), MANY).unwrap();
        assert_eq!(stamps(&s.bytes).len(), 1);
    }
}
