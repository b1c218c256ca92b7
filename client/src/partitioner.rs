//! Choosing a partition for a produced record, as Kafka's Java producer
//! does, so a key lands on the same partition number in Ballast as in Kafka.
//!
//! * A record with a key goes to `to_positive(murmur2(key)) % partitions`
//!   ([`partition_for_key`]), exactly Kafka's `BuiltInPartitioner
//!   .partitionForKey` with `Utils.murmur2` and `Utils.toPositive`. An empty
//!   key is a key; only a missing key is keyless.
//! * A record without a key goes to a partition chosen by a
//!   [`StickyPartitioner`] (Kafka's built-in partitioner since KIP-794:
//!   stick to one partition until about a batch's worth of bytes went to
//!   it, then switch to a random available one) or a
//!   [`RoundRobinPartitioner`] (Kafka's `RoundRobinPartitioner`).
//!
//! Owns only that choice. Everything here is pure and deterministic: no
//! clock, no I/O, no global state, no random number generator — the caller
//! passes the randomness in and keeps one partitioner per topic. It must
//! never return a partition outside `0..num_partitions` or outside the
//! available list it was given (when that list is not empty).

/// Kafka's `Utils.murmur2`: 32-bit MurmurHash2 with seed `0x9747b28c`,
/// little-endian 4-byte blocks and Java's wrapping `int` arithmetic
/// (`>>>` is a logical shift, done here on `u32`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java: `int h = seed ^ length` (the length as a 32-bit int).
    let mut h: u32 = SEED ^ (data.len() as u32);
    let mut blocks = data.chunks_exact(4);
    for b in &mut blocks {
        let mut k = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    // Java's fall-through `switch (length % 4)` over the last 1-3 bytes.
    let tail = blocks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: clears the sign bit (not `abs`, which
/// overflows on `i32::MIN`).
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// Kafka's partition for a keyed record: `to_positive(murmur2(key)) %
/// num_partitions`, whatever partitions are available. `None` when
/// `num_partitions` is not positive.
pub fn partition_for_key(key: &[u8], num_partitions: i32) -> Option<i32> {
    (num_partitions > 0).then(|| to_positive(murmur2(key)) % num_partitions)
}

/// A uniformly chosen partition: one of `available` if any (partitions with
/// a leader, in metadata order), else one of `0..num_partitions`. Kafka's
/// `BuiltInPartitioner.nextPartition` without load statistics.
fn pick(num_partitions: i32, available: &[i32], random: u32) -> Option<i32> {
    if num_partitions <= 0 {
        return None;
    }
    let r = to_positive(random as i32) as usize;
    match available.len() {
        0 => i32::try_from(r % num_partitions as usize).ok(),
        n => Some(available[r % n]),
    }
}

/// Kafka's batch size default (`batch.size`), also the sticky switch point.
pub const DEFAULT_STICKY_BATCH_BYTES: usize = 16_384;

/// Sticky partitioning for keyless records (KIP-794, without the adaptive
/// load statistics): every keyless record goes to the current partition
/// until the bytes appended to it reach the batch size, then the next
/// keyless record picks a new partition uniformly among the available ones.
///
/// Differences from Kafka's `BuiltInPartitioner`, both deliberate: the new
/// partition is picked on the next call (with that call's availability and
/// randomness) rather than at the moment of the switch, and a current
/// partition that is no longer available (while some are) is abandoned at
/// once instead of at the next switch.
///
/// Keep one per topic. Usage per keyless record:
/// `let p = sticky.partition(n, &available, random)?;` append the record to
/// `p`, then `sticky.record_appended(p, bytes, batch_ready)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyPartitioner {
    batch_bytes: usize,
    current: Option<i32>,
    produced_bytes: usize,
}

impl Default for StickyPartitioner {
    fn default() -> Self {
        StickyPartitioner::new(DEFAULT_STICKY_BATCH_BYTES)
    }
}

impl StickyPartitioner {
    /// Switch after about `batch_bytes` (at least 1) per partition.
    pub fn new(batch_bytes: usize) -> StickyPartitioner {
        StickyPartitioner {
            batch_bytes: batch_bytes.max(1),
            current: None,
            produced_bytes: 0,
        }
    }

    /// The partition keyless records currently go to, if one is chosen.
    pub fn current(&self) -> Option<i32> {
        self.current
    }

    /// The partition for the next keyless record: the current one, or a new
    /// one picked with `random` (any `u32`, uniformly distributed) among
    /// `available` (or among all `num_partitions` if none is available).
    /// `None` when `num_partitions` is not positive.
    pub fn partition(
        &mut self,
        num_partitions: i32,
        available: &[i32],
        random: u32,
    ) -> Option<i32> {
        let keep = self.current.filter(|&p| {
            (0..num_partitions).contains(&p) && (available.is_empty() || available.contains(&p))
        });
        if let Some(p) = keep {
            return Some(p);
        }
        let p = pick(num_partitions, available, random)?;
        self.current = Some(p);
        self.produced_bytes = 0;
        Some(p)
    }

    /// Record that a keyless record of `bytes` was appended to `partition`
    /// (Kafka's `updatePartitionInfo`). Once the bytes reach the batch size
    /// the partitioner switches at the next record, if `batch_ready` (the
    /// producer's batch for this partition is ready to send; pass `true`
    /// when not tracking that); at twice the batch size it switches anyway.
    /// Appends to another partition than the current one are ignored.
    pub fn record_appended(&mut self, partition: i32, bytes: usize, batch_ready: bool) {
        if self.current != Some(partition) {
            return;
        }
        self.produced_bytes = self.produced_bytes.saturating_add(bytes);
        let full = self.produced_bytes >= self.batch_bytes;
        let overfull = self.produced_bytes >= self.batch_bytes.saturating_mul(2);
        if (full && batch_ready) || overfull {
            self.current = None;
            self.produced_bytes = 0;
        }
    }
}

/// Round-robin over the available partitions for keyless records (Kafka's
/// `RoundRobinPartitioner`, one counter per topic).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundRobinPartitioner {
    next: u32,
}

impl RoundRobinPartitioner {
    /// Starts at the first available partition.
    pub fn new() -> RoundRobinPartitioner {
        RoundRobinPartitioner::default()
    }

    /// The next partition in turn among `available` (or all
    /// `num_partitions` if none is available). `None` when `num_partitions`
    /// is not positive.
    pub fn partition(&mut self, num_partitions: i32, available: &[i32]) -> Option<i32> {
        let p = pick(num_partitions, available, self.next)?;
        // Kafka's counter is a wrapping int passed through toPositive.
        self.next = self.next.wrapping_add(1) & 0x7fff_ffff;
        Some(p)
    }
}

/// How keyless records are spread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeylessPartitioner {
    /// Kafka's default since KIP-794.
    Sticky(StickyPartitioner),
    /// One record per partition in turn.
    RoundRobin(RoundRobinPartitioner),
}

impl Default for KeylessPartitioner {
    fn default() -> Self {
        KeylessPartitioner::Sticky(StickyPartitioner::default())
    }
}

/// Kafka's default partitioning for one topic: keyed records by murmur2,
/// keyless ones by the chosen [`KeylessPartitioner`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partitioner {
    keyless: KeylessPartitioner,
}

impl Partitioner {
    /// Partition keyless records with `keyless`.
    pub fn new(keyless: KeylessPartitioner) -> Partitioner {
        Partitioner { keyless }
    }

    /// The partition for a record with `key` (`None`: keyless). `random`
    /// is used only when a sticky partitioner picks a new partition.
    /// `None` when `num_partitions` is not positive.
    pub fn partition(
        &mut self,
        key: Option<&[u8]>,
        num_partitions: i32,
        available: &[i32],
        random: u32,
    ) -> Option<i32> {
        match (key, &mut self.keyless) {
            (Some(key), _) => partition_for_key(key, num_partitions),
            (None, KeylessPartitioner::Sticky(s)) => s.partition(num_partitions, available, random),
            (None, KeylessPartitioner::RoundRobin(r)) => r.partition(num_partitions, available),
        }
    }

    /// Record that a record was appended (see
    /// [`StickyPartitioner::record_appended`]); keyed records do not count
    /// towards the sticky switch, as in Kafka.
    pub fn record_appended(
        &mut self,
        key: Option<&[u8]>,
        partition: i32,
        bytes: usize,
        batch_ready: bool,
    ) {
        if let (None, KeylessPartitioner::Sticky(s)) = (key, &mut self.keyless) {
            s.record_appended(partition, bytes, batch_ready);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's `UtilsTest.testMurmur2` (its last case is the bytes `{'a', 'b', 'c'}`).
    #[test]
    fn murmur2_matches_kafka_utils_test() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (key, want) in cases {
            assert_eq!(murmur2(key), want, "{:?}", String::from_utf8_lossy(key));
        }
    }

    /// Values computed by Kafka's `Utils.murmur2` Java code (transcribed
    /// from the Kafka source and run on OpenJDK 17), with the partition
    /// among 6 and 100 (`toPositive(h) % n`). Cover every tail length, the
    /// empty key, UTF-8 keys and bytes >= 0x80 (Java's signed bytes).
    #[test]
    fn murmur2_matches_kafka_java() {
        let cases: &[(&str, i32, i32, i32)] = &[
            ("", 275646681, 3, 81),
            ("a", -1563381124, 4, 24),
            ("ab", 316155434, 2, 34),
            ("abcd", -1323649548, 2, 0),
            ("abcde", 461995741, 1, 41),
            ("hello", 2132663229, 3, 29),
            ("order-100", -955961047, 1, 1),
            ("order-101", 1112104930, 4, 30),
            ("user-1002", 494644997, 5, 97),
            ("user-1", 1404122828, 2, 28),
            ("key-0", 29210041, 1, 41),
            ("key-1", 193331640, 0, 40),
            ("key-2", 852269702, 2, 2),
            ("key-3", -1839136101, 5, 47),
            ("\u{e9}t\u{e9}", -2101193575, 1, 73),
            ("\u{65e5}\u{672c}\u{8a9e}", 1431860170, 4, 70),
            (
                "The quick brown fox jumps over the lazy dog",
                495243318,
                0,
                18,
            ),
            ("21", -973932308, 0, 40),
            ("a-little-bit-longer-string", -1486304829, 5, 19),
        ];
        for &(key, hash, p6, p100) in cases {
            let k = key.as_bytes();
            assert_eq!(murmur2(k), hash, "{key:?}");
            assert_eq!(partition_for_key(k, 6), Some(p6), "{key:?}");
            assert_eq!(partition_for_key(k, 100), Some(p100), "{key:?}");
        }
        let bins: &[(&[u8], i32)] = &[
            (&[0xff], -311467685),
            (&[0x80, 0x7f], -894759045),
            (&[0xff, 0xfe, 0xfd], 998637092),
            (&[0xff, 0xff, 0xff, 0xff], 644171429),
            (&[0, 0, 0, 0, 0], 263274959),
        ];
        for &(key, hash) in bins {
            assert_eq!(murmur2(key), hash, "{key:x?}");
        }
        // Pseudo-random keys of lengths 1, 6, ..., 36 from a 64-bit LCG
        // (the same generator in the Java program).
        let want = [
            2074567662,
            -1169216561,
            237684771,
            -407840027,
            -1670005706,
            -916306803,
            2015742522,
            1500123988,
        ];
        let mut seed: u64 = 42;
        for (i, want) in want.into_iter().enumerate() {
            let key: Vec<u8> = (0..i * 5 + 1)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seed >> 56) as u8
                })
                .collect();
            assert_eq!(murmur2(&key), want, "length {}", key.len());
        }
    }

    #[test]
    fn to_positive_clears_the_sign_bit() {
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(-1), i32::MAX);
        assert_eq!(to_positive(5), 5);
        assert_eq!(partition_for_key(b"x", 0), None);
        assert_eq!(partition_for_key(b"x", -3), None);
    }

    #[test]
    fn keyed_records_ignore_availability() {
        let mut p = Partitioner::default();
        // "21" -> 0 among 6 even when only 3 and 4 are available.
        assert_eq!(p.partition(Some(b"21"), 6, &[3, 4], 999), Some(0));
        // An empty key is a key.
        assert_eq!(p.partition(Some(b""), 6, &[], 0), Some(3));
    }

    #[test]
    fn sticky_sticks_then_switches_among_available() {
        let mut s = StickyPartitioner::new(100);
        let avail = [1, 3, 5];
        let p = s.partition(6, &avail, 4).unwrap();
        assert_eq!(p, 3); // 4 % 3 = 1 -> available[1]
        for _ in 0..3 {
            assert_eq!(s.partition(6, &avail, 0), Some(3));
            s.record_appended(3, 30, true);
        }
        assert_eq!(s.current(), Some(3));
        s.record_appended(3, 10, true); // 100 bytes: switch
        assert_eq!(s.current(), None);
        assert_eq!(s.partition(6, &avail, 2), Some(5));
        // Appends to another partition (a race) do not count.
        s.record_appended(1, 1_000, true);
        assert_eq!(s.current(), Some(5));
    }

    #[test]
    fn sticky_waits_for_a_ready_batch_up_to_twice_the_size() {
        let mut s = StickyPartitioner::new(100);
        assert_eq!(s.partition(4, &[], 7), Some(3));
        s.record_appended(3, 150, false);
        assert_eq!(s.current(), Some(3));
        s.record_appended(3, 50, false);
        assert_eq!(s.current(), None);
    }

    #[test]
    fn sticky_leaves_an_unavailable_partition() {
        let mut s = StickyPartitioner::default();
        assert_eq!(s.partition(3, &[0, 1, 2], 2), Some(2));
        assert_eq!(s.partition(3, &[0, 1], 1), Some(1));
        // Nothing available: any partition, and the current one stays.
        assert_eq!(s.partition(3, &[], 0), Some(1));
        assert_eq!(s.partition(0, &[], 0), None);
        // Random values with the sign bit set are still uniform picks.
        let mut s = StickyPartitioner::default();
        assert_eq!(s.partition(3, &[], u32::MAX), Some(i32::MAX % 3));
    }

    #[test]
    fn round_robin_cycles_through_available() {
        let mut r = RoundRobinPartitioner::new();
        let got: Vec<_> = (0..5).map(|_| r.partition(6, &[2, 4]).unwrap()).collect();
        assert_eq!(got, [2, 4, 2, 4, 2]);
        let got: Vec<_> = (0..4).map(|_| r.partition(3, &[]).unwrap()).collect();
        assert_eq!(got, [2, 0, 1, 2]);
        assert_eq!(r.partition(0, &[]), None);
        let mut p = Partitioner::new(KeylessPartitioner::RoundRobin(RoundRobinPartitioner::new()));
        assert_eq!(p.partition(None, 2, &[], 0), Some(0));
        assert_eq!(p.partition(None, 2, &[], 0), Some(1));
    }

    #[test]
    fn keyed_appends_do_not_move_the_sticky_partition() {
        let mut p = Partitioner::new(KeylessPartitioner::Sticky(StickyPartitioner::new(10)));
        let sticky = p.partition(None, 4, &[], 1).unwrap();
        p.record_appended(Some(b"k"), sticky, 1_000, true);
        assert_eq!(p.partition(None, 4, &[], 2), Some(sticky));
        p.record_appended(None, sticky, 10, true);
        assert_eq!(p.partition(None, 4, &[], 2), Some(2));
    }
}
