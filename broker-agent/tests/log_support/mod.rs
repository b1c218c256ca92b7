//! Shared helpers for the `log_*` integration tests: building batches with
//! the record crate's builder, configs with small segments, and reading a
//! whole log back.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ballast_broker_agent::log::{LogConfig, PartitionLog};
use ballast_record::header::{set_base_offset, set_partition_leader_epoch};
use ballast_record::{Batch, BatchBuilder, BatchHeader};

/// One record: timestamp, key, value.
pub type Rec<'a> = (i64, Option<&'a [u8]>, Option<&'a [u8]>);

/// A producer batch (base offset 0, epoch -1) of `records`.
pub fn batch(records: &[Rec<'_>]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for (ts, k, v) in records {
        b.append(*ts, *k, *v, &[]).expect("record fits");
    }
    b.build()
}

/// A producer batch of `n` records keyed `k0..`, valued `v<tag>-<i>`, all
/// at timestamp `ts`.
pub fn simple(n: usize, ts: i64, tag: &str) -> Vec<u8> {
    let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("k{i}").into_bytes()).collect();
    let vals: Vec<Vec<u8>> = (0..n).map(|i| format!("v{tag}-{i}").into_bytes()).collect();
    let recs: Vec<Rec<'_>> = (0..n)
        .map(|i| (ts, Some(&keys[i][..]), Some(&vals[i][..])))
        .collect();
    batch(&recs)
}

/// A batch as a leader wrote it: stamped at `base` with `epoch`.
pub fn stamped(mut bytes: Vec<u8>, base: i64, epoch: i32) -> Vec<u8> {
    set_base_offset(&mut bytes, base);
    set_partition_leader_epoch(&mut bytes, epoch);
    bytes
}

/// Defaults with small segments and an index entry per batch.
pub fn small(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 0,
        ..LogConfig::default()
    }
}

/// The headers of the batches in `bytes` (which must be valid).
pub fn headers(bytes: &[u8]) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let (h, _) = BatchHeader::verify(&bytes[pos..]).expect("valid batch");
        pos += h.total_len();
        out.push(h);
    }
    out
}

/// Every batch of the log from its start (up to `bound`), read with small
/// reads: (header, bytes).
pub fn read_all(log: &PartitionLog, bound: Option<i64>) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = log.log_start_offset();
    loop {
        let r = log.read(at, 1, bound).expect("read");
        if r.records.is_empty() {
            return out;
        }
        let mut pos = 0;
        while pos < r.records.len() {
            let (h, b) = BatchHeader::verify(&r.records[pos..]).expect("reads verify");
            out.push((h, b.to_vec()));
            pos += h.total_len();
        }
        assert!(r.next_offset > at, "reads make progress");
        at = r.next_offset;
    }
}

/// A record read back: offset, key, value.
pub type OwnedRec = (i64, Option<Vec<u8>>, Option<Vec<u8>>);

/// (offset, key, value) of every record of the log.
pub fn records(log: &PartitionLog) -> Vec<OwnedRec> {
    let mut out = Vec::new();
    for (_, bytes) in read_all(log, None) {
        let batch = Batch::parse(&bytes).expect("uncompressed");
        for r in batch.records() {
            let r = r.expect("record");
            out.push((
                r.offset,
                r.key.map(<[u8]>::to_vec),
                r.value.map(<[u8]>::to_vec),
            ));
        }
    }
    out
}

/// The files of `dir` with `suffix`, sorted.
pub fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}
