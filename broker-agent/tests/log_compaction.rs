//! Log compaction (cleanup.policy=compact): the latest record per key
//! stays, superseded records and old tombstones go, offsets never change,
//! the active segment and data above the high watermark are untouched,
//! and an interrupted swap is finished or discarded at open.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod log_support;

use std::collections::BTreeMap;
use std::fs;

use ballast_broker_agent::log::{LOG_SUFFIX, LogConfig, LogError, PartitionLog};
use log_support::{batch, files, read_all, records};

fn compacted(segment_bytes: u64) -> LogConfig {
    let mut c = LogConfig::from_topic_config(&BTreeMap::from([
        ("cleanup.policy".to_owned(), "compact".to_owned()),
        ("delete.retention.ms".to_owned(), "1000".to_owned()),
        ("index.interval.bytes".to_owned(), "0".to_owned()),
    ]))
    .unwrap();
    c.segment_bytes = segment_bytes;
    c
}

use log_support::OwnedRec as Rec;

fn put(log: &mut PartitionLog, ts: i64, key: &str, value: Option<&str>) {
    log.append_as_leader(
        &batch(&[(ts, Some(key.as_bytes()), value.map(str::as_bytes))]),
        0,
        0,
    )
    .unwrap();
}

fn kv(offset: i64, key: &str, value: Option<&str>) -> Rec {
    (
        offset,
        Some(key.as_bytes().to_vec()),
        value.map(|v| v.as_bytes().to_vec()),
    )
}

#[test]
fn keeps_the_latest_value_per_key_and_expires_tombstones() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compacted(200)).unwrap();
    put(&mut log, 100, "k1", Some("a")); // 0
    put(&mut log, 100, "k2", Some("b")); // 1
    put(&mut log, 200, "k1", Some("c")); // 2
    put(&mut log, 200, "k3", Some("x")); // 3
    put(&mut log, 300, "k2", None); // 4: tombstone
    put(&mut log, 400, "k3", Some("y")); // 5
    put(&mut log, 400, "k4", Some("z")); // 6
    put(&mut log, 500, "k1", Some("d")); // 7
    put(&mut log, 500, "k9", Some("q")); // 8: in the active segment
    let end = log.log_end_offset();
    // Two one-record batches per 200-byte segment.
    assert_eq!(log.segment_base_offsets(), vec![0, 2, 4, 6, 8]);
    // Nothing is cleanable below a zero high watermark.
    assert_eq!(log.compact(1_000).unwrap().segments_scanned, 0);
    log.set_high_watermark(end);

    let out = log.compact(1_000).unwrap();
    assert_eq!(out.segments_scanned, 4);
    assert_eq!(out.tombstones_removed, 0, "the tombstone is 700 ms old");
    // k1@0, k1@2 (k1@7), k2@1 (the tombstone), k3@3 (k3@5).
    assert_eq!(out.superseded_removed, 4);
    let want_after_first: Vec<Rec> = vec![
        kv(4, "k2", None),
        kv(5, "k3", Some("y")),
        kv(6, "k4", Some("z")),
        kv(7, "k1", Some("d")),
        kv(8, "k9", Some("q")),
    ];
    assert_eq!(records(&log), want_after_first);
    assert_eq!(log.log_end_offset(), end, "offsets never change");
    assert_eq!(log.log_start_offset(), 0);
    // The emptied second segment is gone; the first stays (it holds the
    // log start), empty.
    assert_eq!(log.segment_base_offsets(), vec![0, 4, 6, 8]);
    assert_eq!(out.segments_removed, 1);
    // Reads of removed offsets land on the next batch kept.
    assert_eq!(log.read(0, 1, None).unwrap().first_offset, Some(4));
    assert_eq!(log.read(3, 1, None).unwrap().first_offset, Some(4));

    // Once older than delete.retention.ms, the tombstone goes too.
    let out = log.compact(1_301).unwrap();
    assert_eq!((out.tombstones_removed, out.superseded_removed), (1, 0));
    let want: Vec<Rec> = want_after_first[1..].to_vec();
    assert_eq!(records(&log), want);
    // Idempotent.
    assert_eq!(log.compact(1_301).unwrap().segments_cleaned, 0);

    // Reopen: same records, indexes fine, offsets go on.
    drop(log);
    let mut log = PartitionLog::open(dir.path(), compacted(200)).unwrap();
    assert_eq!(records(&log), want);
    assert!(log.recovery_report().rebuilt_indexes.is_empty());
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.segment_base_offsets(), vec![0, 4, 6, 8]);
    put(&mut log, 600, "k5", Some("w"));
    assert_eq!(log.log_end_offset(), end + 1);
}

#[test]
fn the_active_segment_and_data_above_the_high_watermark_are_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compacted(200)).unwrap();
    for i in 0..8 {
        put(&mut log, 100, "same", Some(&i.to_string()));
    }
    let before = read_all(&log, None);
    // High watermark 0: nothing is cleanable.
    assert_eq!(log.compact(10_000).unwrap().segments_scanned, 0);
    assert_eq!(read_all(&log, None), before);
    // Only segments wholly below the high watermark.
    let bases = log.segment_base_offsets();
    log.set_high_watermark(bases[2]);
    let out = log.compact(10_000).unwrap();
    assert_eq!(out.segments_scanned, 2);
    let kept: Vec<i64> = records(&log).iter().map(|r| r.0).collect();
    let untouched: Vec<i64> = (bases[2]..8).collect();
    // In the first two segments only the latest of the key survives
    // there; everything from bases[2] on is as it was.
    assert_eq!(kept[kept.len() - untouched.len()..], untouched[..]);
    assert_eq!(kept.len(), untouched.len() + 1);
    assert_eq!(kept[0], bases[2] - 1);
}

#[test]
fn keyless_records_are_refused_in_a_compacted_topic() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compacted(1 << 20)).unwrap();
    let keyless = batch(&[(1, Some(b"k"), Some(b"v")), (1, None, Some(b"v"))]);
    assert!(matches!(
        log.append_as_leader(&keyless, 0, 0),
        Err(LogError::InvalidRecord(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
    // Fine in a delete topic.
    let mut plain = PartitionLog::open(&dir.path().join("plain"), LogConfig::default()).unwrap();
    plain.append_as_leader(&keyless, 0, 0).unwrap();
}

#[test]
fn an_interrupted_swap_is_finished_and_a_partial_clean_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), compacted(200)).unwrap();
    for (i, k) in ["a", "b", "a", "b", "c", "c", "d"].iter().enumerate() {
        put(&mut log, 100, k, Some(&i.to_string()));
    }
    log.set_high_watermark(log.log_end_offset());
    log.close().unwrap();
    let segs = files(dir.path(), LOG_SUFFIX);
    assert!(segs.len() >= 3);

    // A crash after step 2: a complete `.swap` holding the first segment's
    // second half only.
    let original = fs::read(&segs[0]).unwrap();
    let first_len = log_support::headers(&original)[0].total_len();
    let swap = segs[0].with_extension("log.swap");
    fs::write(&swap, &original[first_len..]).unwrap();
    // A crash during step 1 of the second segment.
    let cleaned = segs[1].with_extension("log.cleaned");
    fs::write(&cleaned, b"half written").unwrap();

    let log = PartitionLog::open(dir.path(), compacted(200)).unwrap();
    assert!(!swap.exists() && !cleaned.exists());
    assert_eq!(fs::read(&segs[0]).unwrap(), original[first_len..]);
    let offsets: Vec<i64> = records(&log).iter().map(|r| r.0).collect();
    assert_eq!(offsets, (1..7).collect::<Vec<_>>());
    assert_eq!(log.recovery_report().cleaned_files.len(), 2);
}
