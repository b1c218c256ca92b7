//! Partition log: appends as leader and follower, reads, rolling, flush
//! policy, offsets by timestamp. Real files in temp dirs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod log_support;

use std::collections::BTreeMap;
use std::time::Duration;

use ballast_broker_agent::log::{FlushPolicy, LOG_SUFFIX, LogConfig, LogError, PartitionLog};
use log_support::{batch, files, headers, read_all, simple, small, stamped};

#[test]
fn partition_log_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<PartitionLog>();
}

#[test]
fn round_trip_across_segments_with_offsets_and_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small(400)).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    let mut expected = Vec::new();
    for i in 0..20 {
        let epoch = if i < 10 { 3 } else { 5 };
        let b = simple(1 + i % 3, 1_000 + i as i64, &i.to_string());
        let info = log.append_as_leader(&b, epoch, 0).unwrap();
        assert_eq!(
            info.first_offset,
            expected.iter().map(|(_, n, _)| *n as i64).sum::<i64>()
        );
        assert_eq!(info.last_offset - info.first_offset + 1, (1 + i % 3) as i64);
        assert_eq!(info.log_end_offset, info.last_offset + 1);
        expected.push((epoch, 1 + i % 3, b));
    }
    assert!(log.segment_base_offsets().len() > 3, "rolled by size");
    assert_eq!(
        files(dir.path(), LOG_SUFFIX).len(),
        log.segment_base_offsets().len()
    );
    let got = read_all(&log, None);
    assert_eq!(got.len(), 20);
    let mut next = 0;
    for ((h, bytes), (epoch, n, original)) in got.iter().zip(&expected) {
        assert_eq!(h.base_offset, next);
        assert_eq!(h.partition_leader_epoch, *epoch);
        assert_eq!(h.records_count as usize, *n);
        // Only the base offset and epoch (outside the CRC) changed.
        assert_eq!(bytes[16..], original[16..]);
        next = h.next_offset();
    }
    assert_eq!(
        log.epoch_entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect::<Vec<_>>(),
        vec![(3, 0), (5, got[10].0.base_offset)]
    );

    // Reads start at the batch holding the offset, across segments.
    for (h, _) in &got {
        for o in h.base_offset..h.next_offset() {
            let r = log.read(o, 1, None).unwrap();
            assert_eq!(r.first_offset, Some(h.base_offset), "offset {o}");
        }
    }
    // Reopen: same content.
    drop(log);
    let log = PartitionLog::open(dir.path(), small(400)).unwrap();
    assert_eq!(read_all(&log, None).len(), 20);
    assert_eq!(log.log_end_offset(), next);
}

#[test]
fn read_limits_bytes_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small(1 << 20)).unwrap();
    for i in 0..5 {
        log.append_as_leader(&simple(2, 10, &i.to_string()), 0, 0)
            .unwrap();
    }
    let one = headers(&log.read(0, 1, None).unwrap().records);
    assert_eq!(one.len(), 1, "at least one batch even when over max_bytes");
    let size = one[0].total_len();
    let two = log.read(0, 2 * size + size / 2, None).unwrap();
    assert_eq!(headers(&two.records).len(), 2);
    assert_eq!(two.next_offset, 4);
    // From the middle of a batch: the batch holding it.
    let mid = log.read(3, usize::MAX, None).unwrap();
    assert_eq!(mid.first_offset, Some(2));
    assert_eq!(headers(&mid.records).len(), 4);
    // Never past the bound (the high watermark for consumers).
    let bounded = log.read(0, usize::MAX, Some(5)).unwrap();
    assert_eq!(bounded.next_offset, 4, "the batch [4, 5] is not below 5");
    assert!(log.read(4, usize::MAX, Some(5)).unwrap().records.is_empty());
    // At the log end: empty; past it or below the start: out of range.
    let end = log.read(10, 100, None).unwrap();
    assert!(end.records.is_empty());
    assert_eq!(end.log_end_offset, 10);
    assert!(matches!(
        log.read(11, 100, None),
        Err(LogError::OffsetOutOfRange {
            requested: 11,
            log_start: 0,
            log_end: 10
        })
    ));
    assert!(matches!(
        log.read(-1, 100, None),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn a_corrupt_or_oversized_produce_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small(1 << 20)).unwrap();
    log.append_as_leader(&simple(1, 1, "a"), 0, 0).unwrap();
    let size_before = log.size_bytes();

    // Second batch of the request has a flipped byte.
    let mut req = simple(2, 1, "b");
    let mut bad = simple(2, 1, "c");
    let last = bad.len() - 1;
    bad[last] ^= 0x10;
    let good_len = req.len();
    req.extend_from_slice(&bad);
    match log.append_as_leader(&req, 0, 0) {
        Err(LogError::Corrupt {
            batch: 1, position, ..
        }) => assert_eq!(position, good_len),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // A truncated request.
    let whole = simple(2, 1, "d");
    assert!(matches!(
        log.append_as_leader(&whole[..whole.len() - 3], 0, 0),
        Err(LogError::Corrupt { batch: 0, .. })
    ));
    // Empty.
    assert!(matches!(
        log.append_as_leader(&[], 0, 0),
        Err(LogError::InvalidRecord(_))
    ));
    // Too large for max.message.bytes.
    let mut cfg = small(1 << 20);
    cfg.max_message_bytes = 100;
    log.set_config(cfg);
    let big = simple(10, 1, "big");
    assert!(matches!(
        log.append_as_leader(&big, 0, 0),
        Err(LogError::RecordTooLarge { max: 100, .. })
    ));
    // A batch a producer may not send (gap in offset deltas): refused.
    let mut gappy = simple(3, 1, "g");
    gappy[23..27].copy_from_slice(&5i32.to_be_bytes());
    let crc = crc32c::crc32c(&gappy[21..]);
    gappy[17..21].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        log.append_as_leader(&gappy, 0, 0),
        Err(LogError::InvalidRecord(_))
    ));

    assert_eq!(log.size_bytes(), size_before);
    assert_eq!(log.log_end_offset(), 1);
    assert_eq!(read_all(&log, None).len(), 1);
}

#[test]
fn stale_leader_epoch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    log.append_as_leader(&simple(1, 1, "a"), 4, 0).unwrap();
    assert!(matches!(
        log.append_as_leader(&simple(1, 1, "b"), 3, 0),
        Err(LogError::StaleLeaderEpoch {
            epoch: 3,
            latest: 4
        })
    ));
    log.append_as_leader(&simple(1, 1, "c"), 6, 0).unwrap();
    assert_eq!(log.latest_epoch(), Some(6));
}

#[test]
fn follower_appends_continue_the_log_or_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default()).unwrap();
    let b0 = stamped(simple(3, 10, "a"), 0, 1);
    let info = log.append_as_follower(&b0).unwrap();
    assert_eq!((info.first_offset, info.last_offset), (0, 2));
    assert_eq!(log.latest_epoch(), Some(1));

    // Gap, overlap: refused, nothing written.
    for base in [4, 2] {
        assert!(matches!(
            log.append_as_follower(&stamped(simple(1, 10, "x"), base, 1)),
            Err(LogError::UnexpectedAppendOffset { expected: 3, got }) if got == base
        ));
    }
    // A gap inside the request.
    let mut req = stamped(simple(1, 10, "y"), 3, 1);
    req.extend(stamped(simple(1, 10, "z"), 7, 1));
    assert!(matches!(
        log.append_as_follower(&req),
        Err(LogError::UnexpectedAppendOffset {
            expected: 4,
            got: 7
        })
    ));
    // An older epoch than the log's latest: truncate first.
    log.append_as_follower(&stamped(simple(1, 10, "e"), 3, 4))
        .unwrap();
    assert!(matches!(
        log.append_as_follower(&stamped(simple(1, 10, "f"), 4, 2)),
        Err(LogError::EpochOutOfOrder {
            offset: 4,
            epoch: 2,
            latest: 4
        })
    ));
    // A corrupt batch anywhere: nothing written.
    let mut good = stamped(simple(1, 10, "g"), 4, 4);
    let mut bad = stamped(simple(1, 10, "h"), 5, 4);
    bad[40] ^= 1;
    good.extend(bad);
    assert!(matches!(
        log.append_as_follower(&good),
        Err(LogError::Corrupt { batch: 1, .. })
    ));
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(
        log.epoch_entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect::<Vec<_>>(),
        vec![(1, 0), (4, 3)]
    );
}

#[test]
fn compacted_followers_accept_gaps_between_batches() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig::from_topic_config(&BTreeMap::from([(
        "cleanup.policy".to_owned(),
        "compact".to_owned(),
    )]))
    .unwrap();
    let mut log = PartitionLog::open(dir.path(), cfg).unwrap();
    log.append_as_follower(&stamped(simple(2, 1, "a"), 0, 0))
        .unwrap();
    log.append_as_follower(&stamped(simple(2, 1, "b"), 10, 0))
        .unwrap();
    assert_eq!(log.log_end_offset(), 12);
    assert_eq!(log.read(5, 1, None).unwrap().first_offset, Some(10));
    assert!(matches!(
        log.append_as_follower(&stamped(simple(1, 1, "c"), 11, 0)),
        Err(LogError::UnexpectedAppendOffset { .. })
    ));
}

#[test]
fn segments_roll_by_age_of_their_first_batch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_ms: 1_000,
        ..small(1 << 20)
    };
    let mut log = PartitionLog::open(dir.path(), cfg).unwrap();
    assert!(
        !log.append_as_leader(&simple(1, 5_000, "a"), 0, 0)
            .unwrap()
            .rolled
    );
    assert!(
        !log.append_as_leader(&simple(1, 5_900, "b"), 0, 0)
            .unwrap()
            .rolled
    );
    let info = log.append_as_leader(&simple(1, 6_001, "c"), 0, 0).unwrap();
    assert!(info.rolled);
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);
}

#[test]
fn flush_policies() {
    let dir = tempfile::tempdir().unwrap();
    let base = small(1 << 20);
    // Kafka's default: never due.
    let mut log = PartitionLog::open(&dir.path().join("kafka"), base.clone()).unwrap();
    let info = log.append_as_leader(&simple(5, 1, "a"), 0, 0).unwrap();
    assert!(!info.flush_due);
    assert!(!log.flush_due(i64::MAX));
    assert_eq!(log.recovery_point(), 0);
    log.flush().unwrap();
    assert_eq!(log.recovery_point(), 5);

    // SYNC_FLUSH: every append.
    let mut log = PartitionLog::open(
        &dir.path().join("sync"),
        LogConfig {
            flush: FlushPolicy::sync_flush(),
            ..base.clone()
        },
    )
    .unwrap();
    assert!(
        log.append_as_leader(&simple(1, 1, "a"), 0, 0)
            .unwrap()
            .flush_due
    );
    assert!(
        log.append_as_follower(&stamped(simple(1, 1, "b"), 1, 0))
            .unwrap()
            .flush_due
    );
    log.flush().unwrap();
    assert_eq!(log.recovery_point(), 2);
    assert!(!log.flush_due(0));

    // flush.messages.
    let mut log = PartitionLog::open(
        &dir.path().join("count"),
        LogConfig {
            flush: FlushPolicy {
                messages: 4,
                ..FlushPolicy::KAFKA_DEFAULT
            },
            ..base.clone()
        },
    )
    .unwrap();
    assert!(
        !log.append_as_leader(&simple(3, 1, "a"), 0, 0)
            .unwrap()
            .flush_due
    );
    assert!(
        log.append_as_leader(&simple(1, 1, "b"), 0, 0)
            .unwrap()
            .flush_due
    );

    // ASYNC_FLUSH / flush.ms: due once the oldest unflushed append is old.
    let mut log = PartitionLog::open(
        &dir.path().join("async"),
        LogConfig {
            flush: FlushPolicy::async_flush(Duration::from_millis(500)),
            ..base
        },
    )
    .unwrap();
    assert!(
        !log.append_as_leader(&simple(1, 1, "a"), 0, 1_000)
            .unwrap()
            .flush_due
    );
    assert!(
        !log.append_as_leader(&simple(1, 1, "b"), 0, 1_400)
            .unwrap()
            .flush_due
    );
    assert!(!log.flush_if_due(1_499).unwrap());
    assert!(log.flush_if_due(1_500).unwrap());
    assert_eq!(log.recovery_point(), 2);
    assert!(!log.flush_if_due(10_000).unwrap(), "nothing left to flush");
    // Follower appends start the clock at the next check.
    log.append_as_follower(&stamped(simple(1, 1, "c"), 2, 0))
        .unwrap();
    assert!(!log.flush_if_due(20_000).unwrap());
    assert!(log.flush_if_due(20_500).unwrap());
}

#[test]
fn offset_for_timestamp_finds_the_first_batch_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small(300)).unwrap();
    // Timestamps not monotonic across batches, as producers may send.
    let stamps = [100, 200, 150, 300, 250, 400, 350, 500];
    for (i, ts) in stamps.iter().enumerate() {
        log.append_as_leader(
            &batch(&[(*ts, Some(b"k"), Some(i.to_string().as_bytes()))]),
            0,
            0,
        )
        .unwrap();
    }
    assert!(log.segment_base_offsets().len() > 1);
    let cases = [
        (0, Some((0, 100))),
        (100, Some((0, 100))),
        (101, Some((1, 200))),
        (160, Some((1, 200))),
        (201, Some((3, 300))),
        (301, Some((5, 400))),
        (450, Some((7, 500))),
        (500, Some((7, 500))),
        (501, None),
    ];
    for (ts, want) in cases {
        assert_eq!(
            log.offset_for_timestamp(ts).unwrap(),
            want,
            "timestamp {ts}"
        );
    }
    drop(log);
    // Same answers after a reopen (indexes loaded from disk).
    let log = PartitionLog::open(dir.path(), small(300)).unwrap();
    for (ts, want) in cases {
        assert_eq!(
            log.offset_for_timestamp(ts).unwrap(),
            want,
            "timestamp {ts}"
        );
    }
}

#[test]
fn offset_for_timestamp_answers_with_the_first_record_not_the_batch() {
    // Kafka's LogSegment.findOffsetByTimestamp: inside the first batch whose
    // max timestamp reaches the target, the first record stamped at or after
    // it, with that record's own timestamp.
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small(1 << 20)).unwrap();
    log.append_as_leader(
        &batch(&[
            (100, None, Some(b"a")),
            (300, None, Some(b"b")),
            (200, None, Some(b"c")),
            (400, None, Some(b"d")),
        ]),
        0,
        0,
    )
    .unwrap();
    log.append_as_leader(
        &batch(&[(150, None, Some(b"e")), (500, None, Some(b"f"))]),
        0,
        0,
    )
    .unwrap();
    let cases = [
        (50, Some((0, 100))),
        (100, Some((0, 100))),
        (150, Some((1, 300))),
        (250, Some((1, 300))),
        (301, Some((3, 400))),
        (400, Some((3, 400))),
        (401, Some((5, 500))),
        (501, None),
    ];
    for (ts, want) in cases {
        assert_eq!(
            log.offset_for_timestamp(ts).unwrap(),
            want,
            "timestamp {ts}"
        );
    }
}
