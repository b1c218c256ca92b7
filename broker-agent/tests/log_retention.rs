//! Partition log retention (cleanup.policy=delete): by time, by size,
//! bounded by the high watermark; the log start offset advances and
//! survives reopen.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod log_support;

use std::fs;

use ballast_broker_agent::log::{LOG_SUFFIX, LogConfig, PartitionLog, RetentionReason};
use log_support::{files, read_all, simple, small};

/// Ten batches of two records at timestamps 1000, 2000, ... in segments
/// of about three batches.
fn filled(dir: &std::path::Path, cfg: LogConfig) -> PartitionLog {
    let mut log = PartitionLog::open(dir, cfg).unwrap();
    for i in 0..10 {
        log.append_as_leader(&simple(2, 1_000 * (i + 1), &i.to_string()), i as i32 / 4, 0)
            .unwrap();
    }
    let end = log.log_end_offset();
    log.set_high_watermark(end);
    log
}

fn seg_config() -> LogConfig {
    small(300)
}

#[test]
fn retention_by_time_deletes_expired_segments_and_advances_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_ms: 5_000,
        ..seg_config()
    };
    let mut log = filled(dir.path(), cfg.clone());
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 4, "{bases:?}");
    // Nothing older than 5 s at t = 6 s (the first segment's newest batch
    // is at least 2 s old only).
    assert!(
        log.apply_retention(5_000)
            .unwrap()
            .deleted_segments
            .is_empty()
    );

    // At t = 9.5 s, batches up to 4.5 s are expired: the segments whose
    // newest batch is <= 4 s go.
    let expired: Vec<i64> = {
        let all = read_all(&log, None);
        bases
            .iter()
            .enumerate()
            .take_while(|(i, _)| {
                let next = bases.get(i + 1).copied().unwrap_or(i64::MAX);
                all.iter()
                    .filter(|(h, _)| h.base_offset >= bases[*i] && h.base_offset < next)
                    .all(|(h, _)| 9_500 - h.max_timestamp > 5_000)
            })
            .map(|(_, b)| *b)
            .collect()
    };
    assert!(!expired.is_empty());
    let out = log.apply_retention(9_500).unwrap();
    assert_eq!(out.deleted_segments, expired);
    assert_eq!(out.reason, Some(RetentionReason::Time));
    let new_start = bases[expired.len()];
    assert_eq!(out.log_start_offset, new_start);
    assert_eq!(log.log_start_offset(), new_start);
    assert_eq!(
        files(dir.path(), LOG_SUFFIX).len(),
        bases.len() - expired.len()
    );
    assert!(log.read(new_start - 1, 10, None).is_err());
    assert_eq!(read_all(&log, None)[0].0.base_offset, new_start);
    // The epoch cache starts at the new log start.
    assert_eq!(log.epoch_entries()[0].start_offset, new_start);
    drop(log);
    let log = PartitionLog::open(dir.path(), cfg).unwrap();
    assert_eq!(log.log_start_offset(), new_start);
}

#[test]
fn everything_expired_rolls_the_active_segment_and_keeps_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_ms: 1_000,
        ..seg_config()
    };
    let log = filled(dir.path(), cfg.clone());
    let end = log.log_end_offset();
    // Not past the high watermark: the last segment stays.
    drop(log);
    fs::write(
        dir.path().join("high-watermark"),
        format!("0\n{}\n", end - 2),
    )
    .unwrap();
    let mut log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(log.high_watermark(), end - 2);
    let out = log.apply_retention(1_000_000).unwrap();
    assert!(!out.deleted_segments.is_empty());
    assert!(log.log_end_offset() == end && log.log_start_offset() < end);
    // Once replicated, the active segment too (after a roll).
    log.set_high_watermark(end);
    let out = log.apply_retention(1_000_000).unwrap();
    assert!(!out.deleted_segments.is_empty());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (end, end));
    assert_eq!(log.segment_base_offsets(), vec![end]);
    // As in Kafka, the latest epoch stays, re-based to the new start.
    assert!(log.epoch_entries().iter().all(|e| e.start_offset == end));
    // Offsets go on.
    let info = log.append_as_leader(&simple(1, 5, "n"), 9, 0).unwrap();
    assert_eq!(info.first_offset, end);
    drop(log);
    let log = PartitionLog::open(dir.path(), cfg).unwrap();
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (end, end + 1)
    );
}

#[test]
fn retention_by_size_deletes_oldest_while_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = filled(dir.path(), seg_config());
    let total = log.size_bytes();
    let first_two: u64 = {
        let bases = log.segment_base_offsets();
        let all = read_all(&log, None);
        all.iter()
            .filter(|(h, _)| h.base_offset < bases[2])
            .map(|(h, _)| h.total_len() as u64)
            .sum()
    };
    log.set_config(LogConfig {
        retention_bytes: (total - first_two) as i64,
        ..seg_config()
    });
    let before = log.segment_base_offsets();
    let out = log.apply_retention(0).unwrap();
    assert_eq!(out.reason, Some(RetentionReason::Size));
    assert_eq!(out.deleted_segments, before[..2].to_vec());
    assert_eq!(out.deleted_bytes, first_two);
    assert_eq!(log.size_bytes(), total - first_two);
    assert_eq!(log.log_start_offset(), before[2]);
    // Disabled: nothing happens.
    log.set_config(seg_config());
    assert!(log.apply_retention(0).unwrap().deleted_segments.is_empty());
}

#[test]
fn compact_only_topics_are_not_retained_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        retention_ms: 1,
        retention_bytes: 1,
        cleanup_policy: ballast_broker_agent::log::CleanupPolicy::COMPACT,
        ..seg_config()
    };
    let mut log = filled(dir.path(), cfg);
    assert!(
        log.apply_retention(i64::MAX)
            .unwrap()
            .deleted_segments
            .is_empty()
    );
}
