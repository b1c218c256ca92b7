//! Rebuilding a batch that keeps only some of its records, for log
//! compaction (Kafka's `MemoryRecords.filterTo` for one batch).
//!
//! Owns what a rebuilt batch keeps: the original base offset, last offset
//! delta, partition leader epoch, attributes and producer fields, and every
//! kept record's offset and timestamp. It must never renumber offsets,
//! change a kept record's key, value or headers, or rebuild from a batch
//! that did not verify.
//!
//! When no record is kept the batch is dropped ([`Retained::Dropped`]).
//! Kafka instead keeps an empty batch when it carries idempotent-producer
//! state; Ballast has no idempotent producers yet (producer id -1), so
//! nothing is lost by dropping. Revisit when idempotence arrives.

use crate::batch::Batch;
use crate::header::{BATCH_HEADER_LEN, LOG_OVERHEAD, RecordError, TimestampType};
use crate::record::{HeadersSrc, RecordParts, RecordRef};

/// What [`retain_records`] made of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retained {
    /// Every record was kept: use the original bytes as they are.
    Unchanged,
    /// No record was kept: drop the batch.
    Dropped,
    /// Some records were kept: the rebuilt batch.
    Rebuilt(Vec<u8>),
}

/// Keep the records of the (verified, uncompressed) batch at the start of
/// `bytes` for which `keep` returns true.
///
/// A rebuilt batch has the original base offset, last offset delta,
/// partition leader epoch, attributes, producer id, producer epoch and base
/// sequence; its records keep their offset deltas (so their offsets) and
/// timestamps. As in Kafka, the base timestamp becomes the first kept
/// record's timestamp and, for a create-time batch, the max timestamp the
/// largest kept one (a log-append-time batch keeps its max timestamp).
/// Every record is decoded (and so checked) before `keep` sees any.
pub fn retain_records<F>(bytes: &[u8], mut keep: F) -> Result<Retained, RecordError>
where
    F: FnMut(&RecordRef<'_>) -> bool,
{
    let batch = Batch::parse(bytes)?;
    let h = *batch.header();
    let all = batch.records().collect::<Result<Vec<_>, _>>()?;
    let kept: Vec<&RecordRef<'_>> = all.iter().filter(|r| keep(r)).collect();
    if kept.len() == all.len() {
        return Ok(Retained::Unchanged);
    }
    let Some(first) = kept.first() else {
        return Ok(Retained::Dropped);
    };
    // The record's own stored timestamp (not the log-append time readers
    // see).
    let stored = |r: &RecordRef<'_>| h.base_timestamp.wrapping_add(r.timestamp_delta);
    let base_timestamp = stored(first);
    let max_timestamp = match h.timestamp_type() {
        TimestampType::LogAppendTime => h.max_timestamp,
        TimestampType::CreateTime => kept
            .iter()
            .map(|r| stored(r))
            .max()
            .unwrap_or(base_timestamp),
    };

    let mut out = Vec::with_capacity(bytes.len().min(h.total_len()));
    // Header fields outside the CRC and the ones kept as they are.
    out.extend_from_slice(&batch.as_bytes()[..BATCH_HEADER_LEN]);
    for r in &kept {
        let (count, raw) = r.raw_headers();
        RecordParts {
            attributes: r.attributes,
            timestamp_delta: stored(r).wrapping_sub(base_timestamp),
            offset_delta: r.offset_delta,
            key: r.key,
            value: r.value,
            headers: HeadersSrc::Raw { count, bytes: raw },
        }
        .encode(&mut out);
    }
    // No larger than the original, so within i32.
    let batch_length = (out.len() - LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    out[27..35].copy_from_slice(&base_timestamp.to_be_bytes());
    out[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
    out[57..61].copy_from_slice(&(kept.len() as i32).to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(Retained::Rebuilt(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header::{set_base_offset, set_partition_leader_epoch};
    use crate::{BatchBuilder, Header};

    fn batch() -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for (i, (ts, key)) in [(500, "a"), (400, "b"), (700, "a"), (600, "c")]
            .into_iter()
            .enumerate()
        {
            let hs = [Header::new("i", i.to_string())];
            b.append(ts, Some(key.as_bytes()), Some(&[i as u8]), &hs)
                .unwrap();
        }
        let mut bytes = b.build();
        set_base_offset(&mut bytes, 1_000);
        set_partition_leader_epoch(&mut bytes, 4);
        bytes
    }

    #[test]
    fn keeps_offsets_timestamps_and_header_fields() {
        let original = batch();
        let Retained::Rebuilt(out) =
            retain_records(&original, |r| r.key != Some(b"a") || r.offset == 1_002).unwrap()
        else {
            panic!("expected a rebuilt batch");
        };
        let b = Batch::parse(&out).unwrap();
        let h = b.header();
        let o = Batch::parse(&original).unwrap();
        let oh = o.header();
        assert_eq!(
            (h.base_offset, h.last_offset_delta, h.partition_leader_epoch),
            (1_000, 3, 4)
        );
        assert_eq!(
            (h.attributes, h.producer_id),
            (oh.attributes, oh.producer_id)
        );
        assert_eq!(h.records_count, 3);
        // First kept is offset 1001 at 400; max of 400, 700, 600.
        assert_eq!((h.base_timestamp, h.max_timestamp), (400, 700));
        let got: Vec<_> = b
            .records()
            .map(|r| {
                let r = r.unwrap();
                let hv = r.headers().next().unwrap().value.unwrap().to_vec();
                (r.offset, r.timestamp, r.value.unwrap().to_vec(), hv)
            })
            .collect();
        assert_eq!(
            got,
            [
                (1_001, 400, vec![1], b"1".to_vec()),
                (1_002, 700, vec![2], b"2".to_vec()),
                (1_003, 600, vec![3], b"3".to_vec()),
            ]
        );
        // The rebuilt batch has a gap at 1000 and so is not appendable as a
        // client batch, but it is a valid batch.
        assert!(matches!(
            crate::validate_for_append(&out),
            Err(RecordError::LastOffsetDeltaMismatch { .. })
        ));
    }

    #[test]
    fn unchanged_and_dropped() {
        let original = batch();
        assert_eq!(retain_records(&original, |_| true), Ok(Retained::Unchanged));
        assert_eq!(retain_records(&original, |_| false), Ok(Retained::Dropped));
        let mut corrupt = original.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 0x40;
        assert!(matches!(
            retain_records(&corrupt, |_| true),
            Err(RecordError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn log_append_time_keeps_stored_timestamps() {
        let mut b = BatchBuilder::with_log_append_time(9_000);
        b.append(10, Some(b"x"), None, &[]).unwrap();
        b.append(20, Some(b"y"), None, &[]).unwrap();
        b.append(30, Some(b"z"), None, &[]).unwrap();
        let bytes = b.build();
        let Retained::Rebuilt(out) = retain_records(&bytes, |r| r.offset != 0).unwrap() else {
            panic!("expected a rebuilt batch");
        };
        let b = Batch::parse(&out).unwrap();
        assert_eq!(
            (b.header().base_timestamp, b.header().max_timestamp),
            (20, 9_000)
        );
        let stored: Vec<_> = b
            .records()
            .map(|r| {
                let r = r.unwrap();
                (r.timestamp, b.header().base_timestamp + r.timestamp_delta)
            })
            .collect();
        assert_eq!(stored, [(9_000, 20), (9_000, 30)]);
    }
}
