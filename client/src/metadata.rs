//! Where partitions' leaders are: the metadata cache the producer and the
//! consumer route by.
//!
//! Owns two layers. [`MetadataCache`] is pure state (no I/O, no clock: the
//! time is passed in): brokers by id with their Data-service address, and
//! per topic the leader and leader epoch of every partition. It applies a
//! `Metadata` answer, a `LeaderHint` that came with a `NOT_LEADER` refusal
//! (one partition, no round trip), or a plain "that leader is wrong", and
//! says when the next refresh may start. `Metadata` wraps it for the
//! async callers: it asks any reachable agent (known brokers first, then the
//! bootstrap addresses) for the topics in use, coalesces concurrent refresh
//! requests into one call, and spaces refreshes by a minimum interval that
//! doubles while refreshes fail, so a burst of refusals cannot become a
//! storm of Metadata calls.
//!
//! Rules, next to the type that applies them:
//! * Leader epochs only move forward: an answer naming an older epoch than
//!   the cached one for a partition is ignored (it came from an agent that
//!   has not heard of the newer leader yet), unless the cached leader was
//!   already found wrong.
//! * A hint is taken when its epoch is at least the cached one, or the
//!   cached leader is the very agent that refused.
//! * An agent that does not know a topic makes the topic unknown: the most
//!   recent answer wins (the topic may have been deleted).
//!
//! Must never block on I/O while holding the cache's lock.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use ballast_proto::v1::{ErrorCode, LeaderHint, MetadataRequest, MetadataResponse};

use crate::connection::{Connections, DEFAULT_MAX_DECODE, endpoint};

/// Partition ids above this in a Metadata answer are ignored as nonsense
/// (Kafka allows far fewer partitions per topic in practice).
const MAX_PARTITION_ID: i32 = 1 << 20;

/// How the metadata cache talks to agents and how often it may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataOptions {
    /// Limit on opening a TCP connection to one agent.
    pub connect_timeout: Duration,
    /// Limit on one Metadata call to one agent.
    pub request_timeout: Duration,
    /// Least time between two refreshes (Kafka's `retry.backoff.ms` for
    /// metadata); doubles per failed refresh up to `max_refresh_backoff`.
    pub min_refresh_interval: Duration,
    /// Longest pause between refreshes while they keep failing.
    pub max_refresh_backoff: Duration,
    /// Metadata older than this is refreshed when next used (Kafka's
    /// `metadata.max.age.ms`).
    pub max_age: Duration,
}

impl Default for MetadataOptions {
    fn default() -> Self {
        MetadataOptions {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            min_refresh_interval: Duration::from_millis(100),
            max_refresh_backoff: Duration::from_secs(1),
            max_age: Duration::from_secs(300),
        }
    }
}

/// Why metadata could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// No bootstrap address was given.
    #[error("no bootstrap address given")]
    NoAddresses,

    /// A bootstrap address is not `host:port`.
    #[error("invalid bootstrap address {address:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: String,
    },

    /// No agent answered a Metadata call.
    #[error("no agent answered Metadata; tried {}", .tried.join(", "))]
    Unreachable {
        /// Each address called with what went wrong (`addr (UNAVAILABLE: ...)`).
        tried: Vec<String>,
    },

    /// The topic (or the partition) was not in any answer within the wait.
    #[error(
        "topic {topic:?}{} not found in metadata within {:.1}s{}",
        .partition.map(|p| format!(" partition {p}")).unwrap_or_default(),
        .waited.as_secs_f64(),
        .last_error.as_ref().map(|e| format!(" (last error: {e})")).unwrap_or_default()
    )]
    UnknownTopic {
        /// The topic.
        topic: String,
        /// The partition asked for, when a specific one was.
        partition: Option<i32>,
        /// How long the client waited.
        waited: Duration,
        /// The last refresh failure, if the cluster could not be asked.
        last_error: Option<String>,
    },
}

/// The leader of one partition as the cache knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLeader {
    /// Broker id of the leader; -1 when there is none or it was found wrong.
    pub leader: i32,
    /// The leader epoch that leader was named at (-1 unknown).
    pub leader_epoch: i32,
}

/// Where to send a partition's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderAddress {
    /// The leader's broker id.
    pub broker_id: i32,
    /// The leader's Data-service address.
    pub address: String,
    /// Its leader epoch (-1 unknown).
    pub leader_epoch: i32,
}

/// What the cache knows of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicMetadata {
    /// The last answer said the topic does not exist.
    Missing,
    /// The topic's partitions by id.
    Known(BTreeMap<i32, PartitionLeader>),
}

/// The pure metadata state. See the module documentation for its rules.
#[derive(Debug, Clone, Default)]
pub struct MetadataCache {
    brokers: BTreeMap<i32, String>,
    topics: BTreeMap<String, TopicMetadata>,
    wanted: BTreeSet<String>,
    generation: u64,
    last_success: Option<Instant>,
    last_attempt: Option<Instant>,
    failures: u32,
}

impl MetadataCache {
    /// An empty cache.
    pub fn new() -> MetadataCache {
        MetadataCache::default()
    }

    /// Counts applied Metadata answers; a caller that saw generation `g`
    /// and now sees another knows a refresh happened in between.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Adds `topic` to the topics refreshes ask for. True when it is new.
    pub fn want(&mut self, topic: &str) -> bool {
        if self.wanted.contains(topic) {
            return false;
        }
        self.wanted.insert(topic.to_owned())
    }

    /// The topics refreshes ask for.
    pub fn wanted(&self) -> Vec<String> {
        self.wanted.iter().cloned().collect()
    }

    /// Broker addresses by id.
    pub fn brokers(&self) -> &BTreeMap<i32, String> {
        &self.brokers
    }

    /// What is known of `topic`; `None` when never answered for.
    pub fn topic(&self, topic: &str) -> Option<&TopicMetadata> {
        self.topics.get(topic)
    }

    /// Partition count of a known topic (highest partition id + 1).
    pub fn partition_count(&self, topic: &str) -> Option<i32> {
        match self.topics.get(topic)? {
            TopicMetadata::Known(ps) => ps.keys().next_back().map(|p| p + 1),
            TopicMetadata::Missing => None,
        }
    }

    /// Partitions of `topic` whose leader is known, in id order.
    pub fn available_partitions(&self, topic: &str) -> Vec<i32> {
        match self.topics.get(topic) {
            Some(TopicMetadata::Known(ps)) => ps
                .iter()
                .filter(|(_, l)| l.leader >= 0 && self.brokers.contains_key(&l.leader))
                .map(|(p, _)| *p)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The cached leader of a partition.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<PartitionLeader> {
        match self.topics.get(topic)? {
            TopicMetadata::Known(ps) => ps.get(&partition).copied(),
            TopicMetadata::Missing => None,
        }
    }

    /// Where to send the partition's requests: its leader, if known and
    /// its address is known.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<LeaderAddress> {
        let l = self.partition(topic, partition)?;
        if l.leader < 0 {
            return None;
        }
        let address = self.brokers.get(&l.leader)?;
        Some(LeaderAddress {
            broker_id: l.leader,
            address: address.clone(),
            leader_epoch: l.leader_epoch,
        })
    }

    /// Applies a Metadata answer received at `now`.
    pub fn apply_response(&mut self, response: &MetadataResponse, now: Instant) {
        for b in &response.brokers {
            if b.broker_id >= 0 && !b.address.is_empty() {
                self.brokers.insert(b.broker_id, b.address.clone());
            }
        }
        for t in &response.topics {
            if t.error != ErrorCode::None as i32 {
                self.topics.insert(t.name.clone(), TopicMetadata::Missing);
                continue;
            }
            let entry = self
                .topics
                .entry(t.name.clone())
                .or_insert_with(|| TopicMetadata::Known(BTreeMap::new()));
            if let TopicMetadata::Missing = entry {
                *entry = TopicMetadata::Known(BTreeMap::new());
            }
            let TopicMetadata::Known(partitions) = entry else {
                continue;
            };
            for p in &t.partitions {
                if !(0..=MAX_PARTITION_ID).contains(&p.partition) {
                    continue;
                }
                let new = PartitionLeader {
                    leader: p.leader.max(-1),
                    leader_epoch: p.leader_epoch,
                };
                match partitions.get_mut(&p.partition) {
                    // Stale answer: an agent that has not heard of the
                    // newer leader yet.
                    Some(old) if old.leader >= 0 && old.leader_epoch > new.leader_epoch => {}
                    Some(old) => *old = new,
                    None => {
                        partitions.insert(p.partition, new);
                    }
                }
            }
        }
        self.generation += 1;
        self.last_success = Some(now);
        self.last_attempt = Some(now);
        self.failures = 0;
    }

    /// A refresh started at `now` failed.
    pub fn refresh_failed(&mut self, now: Instant) {
        self.last_attempt = Some(now);
        self.failures = self.failures.saturating_add(1);
    }

    /// The earliest time the next refresh may start: `min_interval` after
    /// the last attempt, doubled per consecutive failure up to
    /// `max_backoff`. `None`: at once.
    pub fn next_refresh_at(
        &self,
        min_interval: Duration,
        max_backoff: Duration,
    ) -> Option<Instant> {
        let last = self.last_attempt?;
        let factor = 1u32 << self.failures.min(16);
        let pause = min_interval
            .saturating_mul(factor)
            .min(max_backoff.max(min_interval));
        Some(last + pause)
    }

    /// True when the last successful refresh is older than `max_age` (or
    /// there was none).
    pub fn is_stale(&self, now: Instant, max_age: Duration) -> bool {
        self.last_success
            .is_none_or(|t| now.saturating_duration_since(t) >= max_age)
    }

    /// Applies the hint an agent (`refused_by`) sent with `NOT_LEADER` for
    /// one partition. Returns true when the cache now names a leader other
    /// than `refused_by` with a known address, so the request can go there
    /// at once; false when a refresh is needed.
    pub fn apply_hint(
        &mut self,
        topic: &str,
        partition: i32,
        hint: &LeaderHint,
        refused_by: i32,
    ) -> bool {
        if hint.leader_id >= 0 && hint.leader_id != refused_by {
            if !hint.address.is_empty() {
                self.brokers.insert(hint.leader_id, hint.address.clone());
            }
            if let Some(TopicMetadata::Known(ps)) = self.topics.get_mut(topic)
                && let Some(old) = ps.get_mut(&partition)
                && (hint.leader_epoch >= old.leader_epoch
                    || old.leader == refused_by
                    || old.leader < 0)
            {
                *old = PartitionLeader {
                    leader: hint.leader_id,
                    leader_epoch: hint.leader_epoch,
                };
            }
        } else {
            self.invalidate_leader(topic, partition, refused_by);
        }
        match self.leader(topic, partition) {
            Some(l) => l.broker_id != refused_by,
            None => false,
        }
    }

    /// `refused_by` said it does not lead the partition and gave no usable
    /// hint: forget the leader if the cache still names that agent, so no
    /// request goes there until a refresh names one.
    pub fn invalidate_leader(&mut self, topic: &str, partition: i32, refused_by: i32) {
        if let Some(TopicMetadata::Known(ps)) = self.topics.get_mut(topic)
            && let Some(old) = ps.get_mut(&partition)
            && old.leader == refused_by
        {
            old.leader = -1;
        }
    }
}

/// The cache shared by a producer's or consumer's tasks, with the I/O to
/// refresh it.
#[derive(Debug, Clone)]
pub(crate) struct Metadata {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bootstrap: Vec<String>,
    options: MetadataOptions,
    connections: Connections,
    cache: Mutex<MetadataCache>,
    /// Held for the length of one refresh: concurrent callers wait and then
    /// see the generation moved.
    refreshing: tokio::sync::Mutex<()>,
    /// Rotates the first agent asked, so a lagging agent is not always the
    /// one answering.
    rotate: AtomicUsize,
}

impl Metadata {
    /// Checks the bootstrap addresses; dials nothing.
    pub(crate) fn new(
        bootstrap: Vec<String>,
        options: MetadataOptions,
        connections: Connections,
    ) -> Result<Metadata, MetadataError> {
        if bootstrap.is_empty() {
            return Err(MetadataError::NoAddresses);
        }
        for address in &bootstrap {
            endpoint(address, options.connect_timeout).map_err(|reason| {
                MetadataError::InvalidAddress {
                    address: address.clone(),
                    reason,
                }
            })?;
        }
        Ok(Metadata {
            inner: Arc::new(Inner {
                bootstrap,
                options,
                connections,
                cache: Mutex::new(MetadataCache::new()),
                refreshing: tokio::sync::Mutex::new(()),
                rotate: AtomicUsize::new(0),
            }),
        })
    }

    /// Runs `f` on the cache under its lock (never across an await).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut MetadataCache) -> R) -> R {
        let mut cache = self
            .inner
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut cache)
    }

    /// Asks one agent for the wanted topics and applies the answer. Waits
    /// first for the minimum interval since the last refresh; returns at
    /// once if another caller's refresh completed while this one waited.
    pub(crate) async fn refresh(&self) -> Result<(), MetadataError> {
        let seen = self.with(|c| c.generation());
        let _turn = self.inner.refreshing.lock().await;
        let opts = &self.inner.options;
        let (generation, next) = self.with(|c| {
            (
                c.generation(),
                c.next_refresh_at(opts.min_refresh_interval, opts.max_refresh_backoff),
            )
        });
        if generation != seen {
            return Ok(());
        }
        if let Some(at) = next {
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
        }
        let (topics, candidates) = self.with(|c| (c.wanted(), self.candidates(c)));
        let mut tried = Vec::new();
        for address in candidates {
            match self.call(&address, &topics).await {
                Ok(response) => {
                    let now = tokio::time::Instant::now().into_std();
                    self.with(|c| c.apply_response(&response, now));
                    return Ok(());
                }
                Err(e) => tried.push(format!("{address} ({e})")),
            }
        }
        let now = tokio::time::Instant::now().into_std();
        self.with(|c| c.refresh_failed(now));
        Err(MetadataError::Unreachable { tried })
    }

    /// Known brokers (rotated) then bootstrap addresses, without repeats.
    fn candidates(&self, cache: &MetadataCache) -> Vec<String> {
        let known: Vec<&String> = cache.brokers().values().collect();
        let mut out: Vec<String> = Vec::new();
        if !known.is_empty() {
            let start = self.inner.rotate.fetch_add(1, Ordering::Relaxed) % known.len();
            for i in 0..known.len() {
                out.push(known[(start + i) % known.len()].clone());
            }
        }
        for b in &self.inner.bootstrap {
            if !out.contains(b) {
                out.push(b.clone());
            }
        }
        out
    }

    async fn call(&self, address: &str, topics: &[String]) -> Result<MetadataResponse, String> {
        let mut client = self
            .inner
            .connections
            .data_client(address, DEFAULT_MAX_DECODE)?;
        let request = MetadataRequest {
            topics: topics.to_vec(),
        };
        let timeout = self.inner.options.request_timeout;
        match tokio::time::timeout(timeout, client.metadata(request)).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(format!(
                "{}: {}",
                crate::retry::code_name(status.code()),
                status.message()
            )),
            Err(_) => {
                self.inner.connections.forget(address);
                Err(format!(
                    "DEADLINE_EXCEEDED: no answer within {:.1}s",
                    timeout.as_secs_f64()
                ))
            }
        }
    }

    /// Waits until `topic` (and `partition`, if given) is in the cache,
    /// refreshing as needed, for at most `timeout`. Returns the topic's
    /// partition count.
    pub(crate) async fn wait_for_topic(
        &self,
        topic: &str,
        partition: Option<i32>,
        timeout: Duration,
    ) -> Result<i32, MetadataError> {
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        self.with(|c| c.want(topic));
        let mut last_error = None;
        loop {
            if let Some(n) = self.with(|c| c.partition_count(topic))
                && partition.is_none_or(|p| (0..n).contains(&p))
            {
                return Ok(n);
            }
            let refresh = tokio::time::timeout_at(deadline, self.refresh()).await;
            match refresh {
                Ok(Ok(())) => {}
                Ok(Err(e)) => last_error = Some(e.to_string()),
                Err(_) => {
                    return Err(MetadataError::UnknownTopic {
                        topic: topic.to_owned(),
                        partition,
                        waited: started.elapsed(),
                        last_error,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_proto::v1::{MetadataBroker, PartitionMetadata, TopicMetadata as ProtoTopic};

    /// (partition, leader, leader epoch)
    type Partitions<'a> = &'a [(i32, i32, i32)];

    fn response(brokers: &[(i32, &str)], topics: &[(&str, Partitions<'_>)]) -> MetadataResponse {
        MetadataResponse {
            brokers: brokers
                .iter()
                .map(|(id, a)| MetadataBroker {
                    broker_id: *id,
                    address: (*a).into(),
                    rack: String::new(),
                })
                .collect(),
            topics: topics
                .iter()
                .map(|(name, ps)| ProtoTopic {
                    name: (*name).into(),
                    partitions: ps
                        .iter()
                        .map(|(p, leader, epoch)| PartitionMetadata {
                            partition: *p,
                            leader: *leader,
                            leader_epoch: *epoch,
                            replicas: vec![],
                            isr: vec![],
                        })
                        .collect(),
                    error: 0,
                })
                .collect(),
            offsets_partitions: 0,
        }
    }

    fn hint(id: i32, epoch: i32, address: &str) -> LeaderHint {
        LeaderHint {
            leader_id: id,
            leader_epoch: epoch,
            address: address.into(),
        }
    }

    #[test]
    fn applies_answers_and_keeps_epochs_moving_forward() {
        let now = Instant::now();
        let mut c = MetadataCache::new();
        assert!(c.is_stale(now, Duration::from_secs(1)));
        c.apply_response(
            &response(
                &[(1, "a:1"), (2, "b:2")],
                &[("t", &[(0, 1, 5), (1, 2, 3), (2, -1, 1)])],
            ),
            now,
        );
        assert_eq!(c.partition_count("t"), Some(3));
        assert_eq!(c.available_partitions("t"), [0, 1]);
        assert_eq!(
            c.leader("t", 0),
            Some(LeaderAddress {
                broker_id: 1,
                address: "a:1".into(),
                leader_epoch: 5
            })
        );
        assert_eq!(c.leader("t", 2), None);
        // A lagging agent's older epoch is ignored; a newer one is taken.
        c.apply_response(&response(&[], &[("t", &[(0, 2, 4), (1, 1, 4)])]), now);
        assert_eq!(
            c.partition("t", 0).map(|l| (l.leader, l.leader_epoch)),
            Some((1, 5))
        );
        assert_eq!(
            c.partition("t", 1).map(|l| (l.leader, l.leader_epoch)),
            Some((1, 4))
        );
        assert_eq!(c.generation(), 2);
        // An unknown topic becomes missing.
        let mut r = response(&[], &[("t", &[])]);
        r.topics[0].error = ErrorCode::UnknownTopicOrPartition as i32;
        c.apply_response(&r, now);
        assert_eq!(c.topic("t"), Some(&TopicMetadata::Missing));
        assert_eq!(c.partition_count("t"), None);
    }

    #[test]
    fn stale_answer_is_taken_once_the_leader_was_found_wrong() {
        let now = Instant::now();
        let mut c = MetadataCache::new();
        c.apply_response(
            &response(&[(1, "a:1"), (2, "b:2")], &[("t", &[(0, 1, 5)])]),
            now,
        );
        c.invalidate_leader("t", 0, 1);
        assert_eq!(c.leader("t", 0), None);
        c.apply_response(&response(&[], &[("t", &[(0, 2, 4)])]), now);
        assert_eq!(c.leader("t", 0).map(|l| l.broker_id), Some(2));
    }

    #[test]
    fn hints_update_one_partition_without_a_refresh() {
        let now = Instant::now();
        let mut c = MetadataCache::new();
        c.apply_response(
            &response(&[(1, "a:1")], &[("t", &[(0, 1, 5), (1, 1, 5)])]),
            now,
        );
        let g = c.generation();
        // A hint with a new broker's address: taken at once.
        assert!(c.apply_hint("t", 0, &hint(3, 6, "c:3"), 1));
        assert_eq!(
            c.leader("t", 0),
            Some(LeaderAddress {
                broker_id: 3,
                address: "c:3".into(),
                leader_epoch: 6
            })
        );
        assert_eq!(
            c.leader("t", 1).map(|l| l.broker_id),
            Some(1),
            "other partitions untouched"
        );
        assert_eq!(c.generation(), g);
        // A hint naming the refuser, or no leader: the leader is forgotten.
        assert!(!c.apply_hint("t", 1, &hint(1, 6, "a:1"), 1));
        assert_eq!(c.leader("t", 1), None);
        // A hint without address for an unknown broker is not usable.
        assert!(!c.apply_hint("t", 1, &hint(7, 9, ""), 1));
        assert_eq!(c.leader("t", 1), None);
        // A hint older than what the cache knows, from an agent that is not
        // the cached leader: the cache keeps its newer leader, which is
        // still usable.
        assert!(c.apply_hint("t", 0, &hint(1, 2, ""), 2));
        assert_eq!(
            c.leader("t", 0).map(|l| (l.broker_id, l.leader_epoch)),
            Some((3, 6))
        );
        // The cached leader refusing with an older-epoch hint: taken.
        assert!(c.apply_hint("t", 0, &hint(1, 2, ""), 3));
        assert_eq!(
            c.leader("t", 0).map(|l| (l.broker_id, l.leader_epoch)),
            Some((1, 2))
        );
        // A hint for a topic the cache does not know changes nothing.
        assert!(!c.apply_hint("u", 0, &hint(1, 1, "a:1"), 2));
    }

    #[test]
    fn refreshes_are_spaced_and_back_off_while_failing() {
        let t0 = Instant::now();
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        let mut c = MetadataCache::new();
        assert_eq!(c.next_refresh_at(min, max), None);
        c.refresh_failed(t0);
        assert_eq!(
            c.next_refresh_at(min, max),
            Some(t0 + Duration::from_millis(200))
        );
        for _ in 0..10 {
            c.refresh_failed(t0);
        }
        assert_eq!(c.next_refresh_at(min, max), Some(t0 + max));
        c.apply_response(&response(&[], &[]), t0);
        assert_eq!(c.next_refresh_at(min, max), Some(t0 + min));
        assert!(!c.is_stale(t0, Duration::from_secs(1)));
        assert!(c.is_stale(t0 + Duration::from_secs(1), Duration::from_secs(1)));
    }

    #[test]
    fn wanted_topics() {
        let mut c = MetadataCache::new();
        assert!(c.want("b"));
        assert!(c.want("a"));
        assert!(!c.want("a"));
        assert_eq!(c.wanted(), ["a", "b"]);
    }
}
