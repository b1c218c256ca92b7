//! Idempotent producers at the log: a retried batch is answered with its
//! original offsets and written once, also after the log is reopened
//! (state rebuilt from the segments), on a follower that becomes leader,
//! and not after a truncation removed the original.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod log_support;

use ballast_broker_agent::log::{LogError, PartitionLog};
use ballast_record::set_producer;
use log_support::{headers, read_all, simple, small};

fn produced(n: usize, tag: &str, pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
    let mut b = simple(n, 1_000, tag);
    set_producer(&mut b, pid, epoch, seq).unwrap();
    b
}

#[test]
fn a_retried_batch_is_written_once_even_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small(1 << 20)).unwrap();
    let a = produced(3, "a", 7, 0, 0);
    let b = produced(2, "b", 7, 0, 3);
    assert_eq!(log.append_as_leader(&a, 1, 0).unwrap().first_offset, 0);
    // Another producer in between.
    log.append_as_leader(&produced(1, "x", 8, 0, 0), 1, 0)
        .unwrap();
    assert_eq!(log.append_as_leader(&b, 1, 0).unwrap().first_offset, 4);
    assert_eq!(log.log_end_offset(), 6);
    // Retries of either: the original offsets, nothing written.
    let again = log.append_as_leader(&a, 1, 0).unwrap();
    assert_eq!(
        (again.first_offset, again.last_offset, again.records),
        (0, 2, 0)
    );
    let again = log.append_as_leader(&b, 1, 0).unwrap();
    assert_eq!((again.first_offset, again.last_offset), (4, 5));
    assert_eq!(log.log_end_offset(), 6);
    // A gap and an old epoch are refused with named errors.
    assert!(matches!(
        log.append_as_leader(&produced(1, "c", 7, 0, 9), 1, 0),
        Err(LogError::OutOfOrderSequence {
            last: 4,
            got: 9,
            ..
        })
    ));
    log.append_as_leader(&produced(1, "d", 7, 1, 0), 1, 0)
        .unwrap();
    assert!(matches!(
        log.append_as_leader(&produced(1, "e", 7, 0, 5), 1, 0),
        Err(LogError::InvalidProducerEpoch {
            current: 1,
            got: 0,
            ..
        })
    ));
    log.close().unwrap();

    // Reopened: the state comes back from the segments.
    let mut log = PartitionLog::open(dir.path(), small(1 << 20)).unwrap();
    let again = log
        .append_as_leader(&produced(1, "d", 7, 1, 0), 1, 0)
        .unwrap();
    assert_eq!((again.first_offset, again.records), (6, 0));
    assert_eq!(log.log_end_offset(), 7);
    assert_eq!(read_all(&log, None).len(), 4, "a, x, b and d, once each");
}

#[test]
fn a_follower_that_becomes_leader_knows_the_batches_it_fetched() {
    let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = PartitionLog::open(ld.path(), small(1 << 20)).unwrap();
    let mut follower = PartitionLog::open(fd.path(), small(1 << 20)).unwrap();
    let a = produced(2, "a", 3, 0, 0);
    leader.append_as_leader(&a, 1, 0).unwrap();
    let fetched: Vec<u8> = read_all(&leader, None)
        .into_iter()
        .flat_map(|(_, bytes)| bytes)
        .collect();
    follower.append_as_follower(&fetched).unwrap();
    // The producer did not get its answer and retries on the new leader.
    let again = follower.append_as_leader(&a, 2, 0).unwrap();
    assert_eq!((again.first_offset, again.records), (0, 0));
    assert_eq!(follower.log_end_offset(), 2);
}

#[test]
fn a_truncated_batch_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small(1 << 20)).unwrap();
    log.append_as_leader(&produced(2, "a", 4, 0, 0), 1, 0)
        .unwrap();
    let b = produced(2, "b", 4, 0, 2);
    log.append_as_leader(&b, 1, 0).unwrap();
    // A diverged tail is cut (as a follower does before fetching).
    log.truncate_to(2).unwrap();
    let info = log.append_as_leader(&b, 2, 0).unwrap();
    assert_eq!((info.first_offset, info.records), (2, 2));
    let hs = headers(
        &read_all(&log, None)
            .into_iter()
            .flat_map(|(_, bytes)| bytes)
            .collect::<Vec<u8>>(),
    );
    assert_eq!(hs.len(), 2);
}

#[test]
fn a_request_mixing_a_retry_and_new_batches_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small(1 << 20)).unwrap();
    let a = produced(1, "a", 5, 0, 0);
    log.append_as_leader(&a, 1, 0).unwrap();
    let mut both = a.clone();
    both.extend_from_slice(&produced(1, "b", 5, 0, 1));
    assert!(matches!(
        log.append_as_leader(&both, 1, 0),
        Err(LogError::OutOfOrderSequence { .. })
    ));
    assert_eq!(log.log_end_offset(), 1);
    // Two new batches of one producer in one request must follow each other.
    let mut gap = produced(1, "c", 5, 0, 1);
    gap.extend_from_slice(&produced(1, "d", 5, 0, 3));
    assert!(matches!(
        log.append_as_leader(&gap, 1, 0),
        Err(LogError::OutOfOrderSequence {
            last: 1,
            got: 3,
            ..
        })
    ));
    let mut ok = produced(1, "c", 5, 0, 1);
    ok.extend_from_slice(&produced(1, "d", 5, 0, 2));
    assert_eq!(log.append_as_leader(&ok, 1, 0).unwrap().records, 2);
}
