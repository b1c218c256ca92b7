//! Partition log crash recovery: torn and corrupt tails, missing or
//! garbage indexes, checkpoints, interrupted operations. Each test damages
//! real files the way a crash or bit rot would, then reopens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod log_support;

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use ballast_broker_agent::log::{
    INDEX_SUFFIX, LOG_SUFFIX, LogError, PartitionLog, TIME_INDEX_SUFFIX,
};
use log_support::{files, headers, read_all, simple, small};

fn fill(log: &mut PartitionLog, batches: usize) {
    for i in 0..batches {
        log.append_as_leader(&simple(2, 1_000 + i as i64, &i.to_string()), 0, 0)
            .unwrap();
    }
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

fn flip(path: &Path, at: u64) {
    let mut b = fs::read(path).unwrap();
    b[at as usize] ^= 0x20;
    fs::write(path, b).unwrap();
}

#[test]
fn a_torn_write_is_truncated_on_open_dirty_or_clean() {
    for clean in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small(1 << 20)).unwrap();
        fill(&mut log, 5);
        let end = log.log_end_offset();
        let size = log.size_bytes();
        if clean {
            log.close().unwrap();
        } else {
            drop(log);
        }
        let seg = files(dir.path(), LOG_SUFFIX).pop().unwrap();
        // Half a batch, as a crash in the middle of a write leaves.
        let next = simple(3, 9, "torn");
        append_bytes(&seg, &next[..next.len() / 2]);

        let mut log = PartitionLog::open(dir.path(), small(1 << 20)).unwrap();
        assert_eq!(log.log_end_offset(), end, "clean={clean}");
        assert_eq!(fs::metadata(&seg).unwrap().len(), size);
        let report = log.recovery_report();
        assert_eq!(report.truncated.len(), 1, "{report:?}");
        assert_eq!(report.truncated[0].2, (next.len() / 2) as u64);
        assert_eq!(report.segments_recovered, usize::from(!clean));
        // The log goes on from there.
        let info = log.append_as_leader(&simple(1, 9, "after"), 0, 0).unwrap();
        assert_eq!(info.first_offset, end);
        assert_eq!(read_all(&log, None).len(), 6);
    }
}

#[test]
fn a_flipped_byte_cuts_the_log_at_that_batch_and_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small(1 << 20)).unwrap();
    fill(&mut log, 6);
    let all = read_all(&log, None);
    let seg = files(dir.path(), LOG_SUFFIX).pop().unwrap();
    // Damage the 4th batch (its value bytes) under the open log.
    let pos: usize = all[..3].iter().map(|(h, _)| h.total_len()).sum();
    flip(&seg, (pos + all[3].0.total_len() - 2) as u64);
    let damaged = all[3].0.base_offset;

    // The open log never serves it: the first batch read fails its CRC...
    assert!(matches!(
        log.read(damaged, usize::MAX, None),
        Err(LogError::CorruptOnDisk { .. })
    ));
    // ... and a read from before it stops before it.
    let r = log.read(0, usize::MAX, None).unwrap();
    assert_eq!(headers(&r.records).len(), 3);
    assert_eq!(r.next_offset, damaged);
    drop(log);

    // Recovery cuts the log at the damaged batch.
    let log = PartitionLog::open(dir.path(), small(1 << 20)).unwrap();
    assert_eq!(log.log_end_offset(), damaged);
    assert_eq!(log.recovery_report().truncated.len(), 1);
    assert_eq!(read_all(&log, None).len(), 3);
    assert_eq!(fs::metadata(&seg).unwrap().len(), pos as u64);
}

#[test]
fn damage_in_an_older_segment_past_the_recovery_point_drops_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small(250)).unwrap();
    fill(&mut log, 8);
    let bases = log.segment_base_offsets();
    assert!(bases.len() >= 3);
    drop(log); // never flushed: every segment is recovered
    let segs = files(dir.path(), LOG_SUFFIX);
    flip(&segs[1], 70);
    let log = PartitionLog::open(dir.path(), small(250)).unwrap();
    assert_eq!(log.log_end_offset(), bases[1]);
    assert_eq!(log.segment_base_offsets(), bases[..2].to_vec());
    assert_eq!(log.recovery_report().deleted_segments, bases[2..].to_vec());
    assert_eq!(files(dir.path(), LOG_SUFFIX).len(), 2);
}

#[test]
fn missing_or_garbage_indexes_are_rebuilt_and_lookups_stay_right() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small(300)).unwrap();
    fill(&mut log, 12);
    log.close().unwrap();
    let expected = {
        let log = PartitionLog::open(dir.path(), small(300)).unwrap();
        read_all(&log, None)
    };
    let idx = files(dir.path(), INDEX_SUFFIX);
    let tidx = files(dir.path(), TIME_INDEX_SUFFIX);
    assert!(idx.len() >= 3);
    fs::remove_file(&idx[0]).unwrap();
    fs::remove_file(&tidx[1]).unwrap();
    // Garbage of a valid length in an old segment and in the active one.
    let garbage: Vec<u8> = (0..64u32).map(|i| (i * 37 % 251) as u8).collect();
    fs::write(&idx[1], &garbage).unwrap();
    fs::write(idx.last().unwrap(), &garbage).unwrap();
    // A torn entry.
    append_bytes(&tidx[2], &[1, 2, 3]);

    let log = PartitionLog::open(dir.path(), small(300)).unwrap();
    let rebuilt = &log.recovery_report().rebuilt_indexes;
    assert!(rebuilt.len() >= 4, "{rebuilt:?}");
    assert_eq!(read_all(&log, None), expected);
    for (h, _) in &expected {
        for o in h.base_offset..h.next_offset() {
            assert_eq!(
                log.read(o, 1, None).unwrap().first_offset,
                Some(h.base_offset)
            );
        }
        let ts = h.max_timestamp;
        assert_eq!(
            log.offset_for_timestamp(ts).unwrap(),
            Some((h.base_offset, ts))
        );
    }
    // Rebuilt files equal what appends wrote.
    drop(log);
    let log = PartitionLog::open(dir.path(), small(300)).unwrap();
    assert!(log.recovery_report().rebuilt_indexes.is_empty());
}

#[test]
fn checkpoints_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small(300);
    let mut log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    for (i, epoch) in [0, 0, 2, 2, 5, 5, 5].iter().enumerate() {
        log.append_as_leader(&simple(2, i as i64, "x"), *epoch, 0)
            .unwrap();
    }
    assert_eq!(log.set_high_watermark(9), 9);
    assert_eq!(log.set_high_watermark(4), 9, "monotonic");
    assert_eq!(log.set_high_watermark(100), 14, "clamped to the log end");
    log.flush().unwrap();
    log.write_checkpoints().unwrap();
    let epochs = log.epoch_entries().to_vec();
    drop(log);
    for name in [
        "high-watermark",
        "recovery-point",
        "leader-epoch-checkpoint",
    ] {
        assert!(dir.path().join(name).exists(), "{name}");
    }
    // The log start never moved from 0, which is what an absent file means:
    // a new log does not write it.
    assert!(!dir.path().join("log-start-offset").exists());
    let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(log.high_watermark(), 14);
    assert_eq!(log.recovery_point(), 14);
    assert_eq!(log.epoch_entries(), &epochs[..]);
    assert_eq!(log.recovery_report().segments_recovered, 0);
    drop(log);

    // Corrupt or missing checkpoints fall back safely.
    fs::write(dir.path().join("high-watermark"), "0\nnot a number\n").unwrap();
    fs::remove_file(dir.path().join("leader-epoch-checkpoint")).unwrap();
    let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(log.high_watermark(), 0, "back to the log start");
    assert_eq!(
        log.epoch_entries(),
        &epochs[..],
        "rebuilt from batch headers"
    );
    let bad: Vec<_> = log
        .recovery_report()
        .bad_checkpoints
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(bad, ["high-watermark", "leader-epoch-checkpoint"]);
    drop(log);
    fs::write(
        dir.path().join("leader-epoch-checkpoint"),
        "0\n2\n5 0\n2 4\n",
    )
    .unwrap();
    let log = PartitionLog::open(dir.path(), cfg).unwrap();
    assert_eq!(
        log.epoch_entries(),
        &epochs[..],
        "unsorted entries: rebuilt"
    );
    // The file was rewritten.
    assert_eq!(
        fs::read_to_string(dir.path().join("leader-epoch-checkpoint")).unwrap(),
        "0\n3\n0 0\n2 4\n5 8\n"
    );
}

#[test]
fn leftovers_are_cleaned_and_an_interrupted_full_truncation_completes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small(1 << 20)).unwrap();
    fill(&mut log, 3);
    log.close().unwrap();
    fs::write(dir.path().join("high-watermark.tmp"), "junk").unwrap();
    fs::write(dir.path().join("00000000000000000999.index"), [0u8; 8]).unwrap();
    fs::write(dir.path().join("partition.json"), "{}").unwrap();
    // A crash after the log start checkpoint of truncate_fully_and_start_at(100).
    fs::write(dir.path().join("log-start-offset"), "0\n100\n").unwrap();

    let log = PartitionLog::open(dir.path(), small(1 << 20)).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 100));
    assert_eq!(log.high_watermark(), 100);
    assert!(log.epoch_entries().is_empty());
    assert_eq!(log.segment_base_offsets(), vec![100]);
    assert!(!dir.path().join("high-watermark.tmp").exists());
    assert!(!dir.path().join("00000000000000000999.index").exists());
    assert!(dir.path().join("partition.json").exists(), "not ours: kept");
    assert_eq!(files(dir.path(), LOG_SUFFIX).len(), 1);
}

#[test]
fn truncation_is_durable_and_cuts_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small(300);
    let mut log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    for (i, epoch) in [0, 0, 1, 1, 3, 3].iter().enumerate() {
        log.append_as_leader(&simple(2, i as i64, "x"), *epoch, 0)
            .unwrap();
    }
    log.set_high_watermark(12);
    log.flush().unwrap();
    // Inside the batch [4, 5]: the whole batch goes.
    assert_eq!(log.truncate_to(5).unwrap(), 4);
    assert_eq!(log.high_watermark(), 4);
    assert_eq!(
        log.epoch_entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect::<Vec<_>>(),
        vec![(0, 0)]
    );
    assert_eq!(log.truncate_to(50).unwrap(), 4, "past the end: no-op");
    log.append_as_leader(&simple(1, 9, "y"), 7, 0).unwrap();
    drop(log);
    let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(log.high_watermark(), 4);
    assert_eq!(log.latest_epoch(), Some(7));
    drop(log);

    let mut log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    log.truncate_fully_and_start_at(42).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (42, 42));
    assert!(log.epoch_entries().is_empty());
    log.append_as_follower(&log_support::stamped(simple(1, 1, "z"), 42, 8))
        .unwrap();
    drop(log);
    let log = PartitionLog::open(dir.path(), cfg).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (42, 43));
    assert_eq!(log.latest_epoch(), Some(8));
    assert!(matches!(
        log.read(41, 10, None),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn a_new_log_writes_no_checkpoints_until_they_change_and_reopens_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small(300);
    let log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    for name in ["high-watermark", "recovery-point", "log-start-offset"] {
        assert!(
            !dir.path().join(name).exists(),
            "{name}: absent means its value"
        );
    }
    let (start, end, hw) = (
        log.log_start_offset(),
        log.log_end_offset(),
        log.high_watermark(),
    );
    drop(log);
    // Reopened as after a crash right after creation: the same empty log.
    let mut log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.high_watermark()
        ),
        (start, end, hw)
    );
    assert_eq!((start, end, hw), (0, 0, 0));
    // Data, then a crash before any checkpoint: recovered from segment 0.
    log.append_as_leader(&simple(3, 1, "a"), 0, 0).unwrap();
    log.flush().unwrap();
    drop(log);
    let log = PartitionLog::open(dir.path(), cfg).unwrap();
    assert_eq!(log.log_end_offset(), 3);
    assert_eq!(read_all(&log, None).len(), 1);
}

/// Descriptors this process holds on files under `dir`, by extension.
fn open_files_under(dir: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Ok(target) = fs::read_link(e.path())
            && target.starts_with(dir)
        {
            let ext = target
                .extension()
                .map(|x| x.to_string_lossy().into_owned())
                .unwrap_or_default();
            *out.entry(ext).or_default() += 1;
        }
    }
    out
}

#[test]
fn an_idle_log_holds_only_its_record_files_open() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small(300);
    let mut log = PartitionLog::open(dir.path(), cfg.clone()).unwrap();
    for i in 0..12 {
        log.append_as_leader(&simple(4, 1_000 + i, "v"), 0, 0)
            .unwrap();
    }
    let segments = log.segment_base_offsets().len();
    assert!(segments > 2, "{segments} segments");
    log.close().unwrap();

    let log = PartitionLog::open(dir.path(), cfg).unwrap();
    let open = open_files_under(dir.path());
    assert_eq!(open.get("log").copied(), Some(segments), "{open:?}");
    assert_eq!(open.get("index"), None, "{open:?}");
    assert_eq!(open.get("timeindex"), None, "{open:?}");
    // A lookup opens what it reads, and reads the same as before.
    let end = log.log_end_offset();
    let read = log.read(end - 1, 1 << 20, None).unwrap();
    assert_eq!(read.first_offset, Some(end - 4));
    assert_eq!(log.offset_for_timestamp(1_005).unwrap(), Some((20, 1_005)));
    let open = open_files_under(dir.path());
    assert!(open.get("index").copied().unwrap_or(0) >= 1, "{open:?}");
    assert!(open.get("timeindex").copied().unwrap_or(0) >= 1, "{open:?}");
}
