//! Leader epochs through real logs: the epoch cache as appends build it,
//! OffsetsForLeaderEpoch answers, and replicas that diverged (unclean
//! election) converging by KIP-101/279 truncation before they fetch.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod log_support;

use ballast_broker_agent::log::{
    EpochEndOffset, LogConfig, PartitionLog, UNDEFINED_EPOCH, follower_truncation,
};
use log_support::{read_all, simple, small};

fn leader_append(log: &mut PartitionLog, epoch: i32, batches: usize, tag: &str) {
    for i in 0..batches {
        log.append_as_leader(&simple(2, 1, &format!("{tag}{i}")), epoch, 0)
            .unwrap();
    }
}

/// The replication engine's part, as the follower runs it: truncate by
/// epochs until done, then fetch everything the leader has.
fn converge(follower: &mut PartitionLog, leader: &PartitionLog) -> Vec<i64> {
    let mut truncations = Vec::new();
    loop {
        let asked = follower.latest_epoch().unwrap_or(UNDEFINED_EPOCH);
        let answer = leader.end_offset_for_epoch(asked);
        let t = follower_truncation(
            answer,
            follower.epoch_cache(),
            follower.log_end_offset(),
            follower.high_watermark(),
        );
        follower.truncate_to(t.offset).unwrap();
        truncations.push(t.offset);
        if t.complete {
            break;
        }
    }
    loop {
        let r = leader
            .read(follower.log_end_offset(), 1 << 20, None)
            .unwrap();
        if r.records.is_empty() {
            return truncations;
        }
        follower.append_as_follower(&r.records).unwrap();
    }
}

fn same_logs(a: &PartitionLog, b: &PartitionLog) {
    let (x, y) = (read_all(a, None), read_all(b, None));
    assert_eq!(x.len(), y.len());
    for ((hx, bx), (hy, by)) in x.iter().zip(&y) {
        assert_eq!(hx, hy);
        assert_eq!(bx, by);
    }
    assert_eq!(a.epoch_entries(), b.epoch_entries());
}

#[test]
fn end_offset_for_epoch_through_a_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small(300)).unwrap();
    assert_eq!(log.end_offset_for_epoch(0), EpochEndOffset::UNDEFINED);
    leader_append(&mut log, 0, 2, "a"); // [0, 4)
    leader_append(&mut log, 2, 2, "b"); // [4, 8)
    leader_append(&mut log, 4, 1, "c"); // [8, 10)
    let eo = |epoch, end_offset| EpochEndOffset { epoch, end_offset };
    assert_eq!(log.end_offset_for_epoch(0), eo(0, 4));
    assert_eq!(log.end_offset_for_epoch(1), eo(0, 4));
    assert_eq!(log.end_offset_for_epoch(2), eo(2, 8));
    assert_eq!(log.end_offset_for_epoch(3), eo(2, 8));
    assert_eq!(log.end_offset_for_epoch(4), eo(4, 10));
    assert_eq!(log.end_offset_for_epoch(5), EpochEndOffset::UNDEFINED);
    assert_eq!(
        log.end_offset_for_epoch(UNDEFINED_EPOCH),
        EpochEndOffset::UNDEFINED
    );
}

/// KIP-101's case: A led at epoch 0 and wrote [0, 14); B replicated only
/// [0, 10) and, elected uncleanly at epoch 1, wrote [10, 16). A comes back
/// as B's follower: it must drop [10, 14), which B never had.
#[test]
fn a_returning_leader_drops_what_the_unclean_leader_never_had() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = PartitionLog::open(&dir.path().join("a"), small(300)).unwrap();
    let mut b = PartitionLog::open(&dir.path().join("b"), small(300)).unwrap();
    leader_append(&mut a, 0, 5, "x");
    converge(&mut b, &a);
    leader_append(&mut a, 0, 2, "lost");
    a.set_high_watermark(10);
    b.set_high_watermark(10);
    leader_append(&mut b, 1, 3, "new");
    assert_eq!((a.log_end_offset(), b.log_end_offset()), (14, 16));

    let truncations = converge(&mut a, &b);
    assert_eq!(truncations, vec![10]);
    same_logs(&a, &b);
    assert_eq!(a.log_end_offset(), 16);
}

/// The follower B holds a diverging epoch-1 suffix: B led at epoch 1 and
/// wrote [10, 16) that no one replicated; A, elected uncleanly at epoch 2,
/// wrote [10, 14). B asks for epoch 1's end, A answers (0, 10), and B
/// truncates to 10 before fetching, so the replicas never diverge.
#[test]
fn a_diverging_epoch_suffix_is_truncated_before_fetching() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = PartitionLog::open(&dir.path().join("a"), small(300)).unwrap();
    let mut b = PartitionLog::open(&dir.path().join("b"), small(300)).unwrap();
    leader_append(&mut a, 0, 5, "x");
    converge(&mut b, &a);
    leader_append(&mut b, 1, 3, "diverging");
    leader_append(&mut a, 2, 2, "unclean");
    assert_eq!(
        a.end_offset_for_epoch(1),
        EpochEndOffset {
            epoch: 0,
            end_offset: 10
        }
    );

    let truncations = converge(&mut b, &a);
    assert_eq!(truncations, vec![10]);
    same_logs(&a, &b);
    assert_eq!(
        b.epoch_entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect::<Vec<_>>(),
        vec![(0, 0), (2, 10)]
    );

    // And the other way round after more leader changes: B leads at 3.
    leader_append(&mut b, 3, 2, "b3");
    leader_append(&mut a, 2, 1, "stale-a"); // A still thinks it leads at 2
    let truncations = converge(&mut a, &b);
    assert_eq!(truncations, vec![14]);
    same_logs(&a, &b);
}

/// After the truncation, a reopened follower keeps the truncated state.
#[test]
fn truncation_and_refetch_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig::default();
    let mut a = PartitionLog::open(&dir.path().join("a"), cfg.clone()).unwrap();
    let mut b = PartitionLog::open(&dir.path().join("b"), cfg.clone()).unwrap();
    leader_append(&mut a, 0, 3, "x");
    converge(&mut b, &a);
    leader_append(&mut b, 1, 2, "d");
    leader_append(&mut a, 2, 2, "u");
    converge(&mut b, &a);
    drop(b);
    let b = PartitionLog::open(&dir.path().join("b"), cfg).unwrap();
    same_logs(&a, &b);
}
