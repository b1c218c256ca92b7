//! Property test: random leader appends (with leader changes), flushes,
//! truncations, clean reopens and crashes (the active segment loses an
//! unflushed suffix and gains torn garbage) never lose a flushed batch,
//! never change a batch, and never return a batch whose CRC fails.
//! Proptest prints the minimal failing operation list, which reproduces a
//! failure deterministically.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod log_support;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use ballast_broker_agent::log::{LOG_SUFFIX, LogConfig, PartitionLog};
use ballast_record::BatchHeader;
use log_support::{simple, small};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Append {
        records: usize,
        new_epoch: bool,
    },
    Flush,
    /// Truncate to the start of the batch at this fraction of the log.
    Truncate(f64),
    Reopen,
    /// Drop the log, cut the active segment somewhere in its unflushed
    /// part (fraction), append garbage, reopen.
    Crash {
        cut: f64,
        garbage: Vec<u8>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1usize..5, prop::bool::weighted(0.15))
            .prop_map(|(records, new_epoch)| Op::Append { records, new_epoch }),
        2 => Just(Op::Flush),
        1 => (0.0f64..1.0).prop_map(Op::Truncate),
        1 => Just(Op::Reopen),
        2 => ((0.0f64..1.0), prop::collection::vec(any::<u8>(), 0..120))
            .prop_map(|(cut, garbage)| Op::Crash { cut, garbage }),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        index_interval_bytes: 150,
        ..small(700)
    }
}

/// Every batch of the log, checked: CRC, contiguous offsets from the log
/// start to the log end.
fn contents(log: &PartitionLog) -> Result<Vec<Vec<u8>>, TestCaseError> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    loop {
        let r = log
            .read(at, 300, None)
            .map_err(|e| TestCaseError::fail(format!("read at {at}: {e}")))?;
        if r.records.is_empty() {
            break;
        }
        let mut pos = 0;
        while pos < r.records.len() {
            let (h, b) = BatchHeader::verify(&r.records[pos..])
                .map_err(|e| TestCaseError::fail(format!("a read returned a bad batch: {e}")))?;
            prop_assert_eq!(h.base_offset, at, "offsets are contiguous");
            at = h.next_offset();
            out.push(b.to_vec());
            pos += h.total_len();
        }
    }
    prop_assert_eq!(at, log.log_end_offset());
    Ok(out)
}

fn crash(dir: &Path, flushed_in_last: u64, cut: f64, garbage: &[u8]) {
    let Some(seg) = log_support::files(dir, LOG_SUFFIX).pop() else {
        return;
    };
    let len = fs::metadata(&seg).unwrap().len();
    let keep = flushed_in_last + ((len - flushed_in_last) as f64 * cut) as u64;
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(keep).unwrap();
    drop(f);
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(garbage).unwrap();
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let mut log = PartitionLog::open(path, config()).unwrap();
    // The model: the log's batches, the first `flushed` of them durable.
    let mut model: Vec<Vec<u8>> = Vec::new();
    let mut flushed = 0usize;
    let mut epoch = 0;
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Append { records, new_epoch } => {
                if *new_epoch {
                    epoch += 1;
                }
                let info = log
                    .append_as_leader(&simple(*records, step as i64, &step.to_string()), epoch, 0)
                    .unwrap();
                let r = log.read(info.first_offset, 1, None).unwrap();
                model.push(r.records);
            }
            Op::Flush => {
                log.flush().unwrap();
                flushed = model.len();
            }
            Op::Truncate(f) => {
                let k = (model.len() as f64 * f) as usize;
                if k < model.len() {
                    let (h, _) = BatchHeader::verify(&model[k]).unwrap();
                    log.truncate_to(h.base_offset).unwrap();
                    model.truncate(k);
                    flushed = flushed.min(k);
                }
            }
            Op::Reopen => {
                log.close().unwrap();
                log = PartitionLog::open(path, config()).unwrap();
                flushed = model.len();
            }
            Op::Crash { cut, garbage } => {
                let last_base = *log.segment_base_offsets().last().unwrap();
                let flushed_in_last: u64 = model[..flushed]
                    .iter()
                    .filter(|b| BatchHeader::parse(b).unwrap().base_offset >= last_base)
                    .map(|b| b.len() as u64)
                    .sum();
                // Only the active segment loses data here: batches in
                // rolled segments survive whether flushed or not.
                drop(log);
                crash(path, flushed_in_last, *cut, garbage);
                log = PartitionLog::open(path, config()).unwrap();
                let now = contents(&log)?;
                prop_assert!(
                    now.len() >= flushed,
                    "lost a flushed batch at step {}",
                    step
                );
                prop_assert!(now.len() <= model.len());
                prop_assert_eq!(&now[..], &model[..now.len()], "a batch changed");
                model.truncate(now.len());
                flushed = model.len();
            }
        }
        let now = contents(&log)?;
        prop_assert_eq!(&now, &model, "after step {}: {:?}", step, op);
    }
    drop(log);
    let log = PartitionLog::open(path, config()).unwrap();
    prop_assert!(contents(&log)?.len() >= flushed);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn flushed_batches_survive_and_reads_verify(ops in prop::collection::vec(op(), 1..40)) {
        run(&ops)?;
    }
}
