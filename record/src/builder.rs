//! Building one uncompressed RecordBatch v2 from records with timestamps,
//! as a producer does before sending (Kafka's `MemoryRecordsBuilder` for
//! magic 2 without compression).
//!
//! Owns the encoder side: deltas, max timestamp, last offset delta, records
//! count and CRC-32C, and exact sizes so a producer can cap its batches. It
//! must never produce a batch that [`crate::Batch::parse`] would refuse, nor
//! one larger than [`MAX_BATCH_BYTES`]. The base offset is 0 and the
//! partition leader epoch -1: the leader stamps both when it appends.
//! Idempotence is out of scope for now, so producer id, producer epoch and
//! base sequence are -1 (the fields are kept for later).

use crate::header::{
    BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2, MAX_BATCH_BYTES, NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE, NO_TIMESTAMP, RecordError, TIMESTAMP_TYPE_MASK,
};
use crate::record::{self, Header, HeadersSrc, RecordParts};

/// Builds one uncompressed batch. Records get offset deltas 0, 1, 2, ...;
/// the base timestamp is the first record's timestamp (as in Kafka's Java
/// client) and timestamp deltas are relative to it (wrapping, so any `i64`
/// round-trips).
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    count: u32,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    log_append_time: Option<i64>,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder::new()
    }
}

impl BatchBuilder {
    /// A builder for a create-time batch (attributes 0).
    pub fn new() -> BatchBuilder {
        BatchBuilder {
            buf: vec![0; BATCH_HEADER_LEN],
            count: 0,
            base_timestamp: None,
            max_timestamp: i64::MIN,
            log_append_time: None,
        }
    }

    /// A builder for a log-append-time batch (attributes bit 3) whose max
    /// timestamp is `append_time`; readers report `append_time` as every
    /// record's timestamp, while each record's own timestamp is still
    /// stored.
    pub fn with_log_append_time(append_time: i64) -> BatchBuilder {
        BatchBuilder {
            log_append_time: Some(append_time),
            ..BatchBuilder::new()
        }
    }

    /// Number of records appended.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// No record appended yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Exact size of the batch if built now, header included.
    pub fn size_in_bytes(&self) -> usize {
        self.buf.len()
    }

    fn parts<'a>(
        &self,
        timestamp: i64,
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
        headers: &'a [Header],
    ) -> RecordParts<'a> {
        let base = self.base_timestamp.unwrap_or(timestamp);
        RecordParts {
            attributes: 0,
            timestamp_delta: timestamp.wrapping_sub(base),
            // `count` stays far below i32::MAX: every record takes at least
            // 7 bytes and a batch at most MAX_BATCH_BYTES.
            offset_delta: self.count as i32,
            key,
            value,
            headers: HeadersSrc::Owned(headers),
        }
    }

    /// Exact size of the batch if this record were appended next.
    pub fn size_after(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> usize {
        self.buf
            .len()
            .saturating_add(self.parts(timestamp, key, value, headers).encoded_len())
    }

    /// An upper bound of the bytes one record adds to any batch, whatever
    /// its timestamp and position (Kafka's
    /// `DefaultRecord.recordSizeUpperBound`). A batch holding only this
    /// record is at most `BATCH_HEADER_LEN` more.
    pub fn record_size_upper_bound(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> usize {
        record::record_size_upper_bound(key, value, headers)
    }

    /// Append a record. Refuses with [`RecordError::BatchTooLarge`], leaving
    /// the builder unchanged, if the batch would exceed
    /// [`MAX_BATCH_BYTES`]; a producer with a smaller cap checks
    /// [`BatchBuilder::size_after`] first.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> Result<(), RecordError> {
        let parts = self.parts(timestamp, key, value, headers);
        let size = self.buf.len().saturating_add(parts.encoded_len());
        if size > MAX_BATCH_BYTES {
            return Err(RecordError::BatchTooLarge {
                size,
                limit: MAX_BATCH_BYTES,
            });
        }
        parts.encode(&mut self.buf);
        self.base_timestamp.get_or_insert(timestamp);
        self.max_timestamp = self.max_timestamp.max(timestamp);
        self.count += 1;
        Ok(())
    }

    /// Finish the batch: base offset 0, partition leader epoch -1, no
    /// producer id, epoch or sequence, CRC-32C filled in. An empty builder
    /// gives a batch with no records (timestamps -1), which
    /// [`crate::validate_for_append`] refuses.
    pub fn build(self) -> Vec<u8> {
        let mut b = self.buf;
        let attributes: i16 = if self.log_append_time.is_some() {
            TIMESTAMP_TYPE_MASK
        } else {
            0
        };
        let count = self.count as i32;
        let base_timestamp = self.base_timestamp.unwrap_or(NO_TIMESTAMP);
        let max_timestamp = match (self.log_append_time, self.base_timestamp) {
            (Some(t), _) => t,
            (None, Some(_)) => self.max_timestamp,
            (None, None) => NO_TIMESTAMP,
        };
        // Bounded by MAX_BATCH_BYTES (16 MiB) in append.
        let batch_length = (b.len() - LOG_OVERHEAD) as i32;
        b[0..8].copy_from_slice(&0i64.to_be_bytes());
        b[8..12].copy_from_slice(&batch_length.to_be_bytes());
        b[12..16].copy_from_slice(&NO_PARTITION_LEADER_EPOCH.to_be_bytes());
        b[16] = MAGIC_V2 as u8;
        b[21..23].copy_from_slice(&attributes.to_be_bytes());
        b[23..27].copy_from_slice(&(count - 1).max(0).to_be_bytes());
        b[27..35].copy_from_slice(&base_timestamp.to_be_bytes());
        b[35..43].copy_from_slice(&max_timestamp.to_be_bytes());
        b[43..51].copy_from_slice(&NO_PRODUCER_ID.to_be_bytes());
        b[51..53].copy_from_slice(&NO_PRODUCER_EPOCH.to_be_bytes());
        b[53..57].copy_from_slice(&NO_SEQUENCE.to_be_bytes());
        b[57..61].copy_from_slice(&count.to_be_bytes());
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Batch, BatchHeader};

    #[test]
    fn builds_a_verified_batch_with_deltas() {
        let mut b = BatchBuilder::new();
        assert!(b.is_empty());
        let hs = [Header::new("trace", "abc")];
        let predicted = b.size_after(1_000, Some(b"k1"), Some(b"v1"), &hs);
        b.append(1_000, Some(b"k1"), Some(b"v1"), &hs).unwrap();
        assert_eq!(b.size_in_bytes(), predicted);
        b.append(990, None, Some(b"v2"), &[]).unwrap();
        b.append(1_010, Some(b"k3"), None, &[]).unwrap();
        assert_eq!(b.len(), 3);
        let size = b.size_in_bytes();
        let bytes = b.build();
        assert_eq!(bytes.len(), size);
        let (h, recs) = Batch::decode(&bytes).unwrap();
        assert_eq!(
            (h.base_offset, h.partition_leader_epoch, h.attributes),
            (0, -1, 0)
        );
        assert_eq!((h.base_timestamp, h.max_timestamp), (1_000, 1_010));
        assert_eq!((h.last_offset_delta, h.records_count), (2, 3));
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (-1, -1, -1)
        );
        let recs: Vec<_> = recs.collect::<Result<_, _>>().unwrap();
        let got: Vec<_> = recs
            .iter()
            .map(|r| (r.offset, r.timestamp, r.timestamp_delta, r.key, r.value))
            .collect();
        assert_eq!(
            got,
            [
                (0, 1_000, 0, Some(&b"k1"[..]), Some(&b"v1"[..])),
                (1, 990, -10, None, Some(&b"v2"[..])),
                (2, 1_010, 10, Some(&b"k3"[..]), None),
            ]
        );
        crate::validate_for_append(&bytes).unwrap();
    }

    #[test]
    fn log_append_time_batches() {
        let mut b = BatchBuilder::with_log_append_time(5_000);
        b.append(1, None, Some(b"a"), &[]).unwrap();
        b.append(2, None, Some(b"b"), &[]).unwrap();
        let bytes = b.build();
        let batch = Batch::parse(&bytes).unwrap();
        assert_eq!(
            batch.header().timestamp_type(),
            crate::TimestampType::LogAppendTime
        );
        assert_eq!(batch.header().max_timestamp, 5_000);
        let ts: Vec<_> = batch.records().map(|r| r.unwrap().timestamp).collect();
        assert_eq!(ts, [5_000, 5_000]);
    }

    #[test]
    fn empty_builder_builds_an_empty_batch() {
        let bytes = BatchBuilder::new().build();
        assert_eq!(bytes.len(), BATCH_HEADER_LEN);
        let (h, _) = BatchHeader::verify(&bytes).unwrap();
        assert_eq!((h.records_count, h.base_timestamp), (0, -1));
        assert_eq!(Batch::decode(&bytes).unwrap().1.count(), 0);
        assert_eq!(
            crate::validate_for_append(&bytes),
            Err(RecordError::EmptyBatch)
        );
    }

    #[test]
    fn refuses_to_exceed_the_limit() {
        let mut b = BatchBuilder::new();
        let big = vec![7u8; MAX_BATCH_BYTES / 2];
        b.append(0, None, Some(&big), &[]).unwrap();
        let before = b.size_in_bytes();
        assert!(matches!(
            b.append(0, None, Some(&big), &[]),
            Err(RecordError::BatchTooLarge { .. })
        ));
        assert_eq!((b.size_in_bytes(), b.len()), (before, 1));
        let bytes = b.build();
        assert!(Batch::parse(&bytes).is_ok());
    }

    #[test]
    fn upper_bound_covers_actual_sizes() {
        let hs = [Header::new("a", vec![0; 200])];
        let bound = BatchBuilder::record_size_upper_bound(Some(b"key"), None, &hs);
        let mut b = BatchBuilder::new();
        b.append(i64::MAX, None, None, &[]).unwrap();
        let before = b.size_in_bytes();
        b.append(i64::MIN, Some(b"key"), None, &hs).unwrap();
        assert!(b.size_in_bytes() - before <= bound);
    }
}
