//! Reading whole batches: verifying one ([`Batch`]), iterating its records
//! without copying ([`RecordsIter`]), walking concatenated batches
//! ([`split_batches`]) and the checks a leader makes before appending a
//! client's batch ([`validate_for_append`]).
//!
//! Owns the order of checks: sizes and magic, then the CRC over the whole
//! batch, then compression, and only then the records. It must never look
//! at a record of a batch whose CRC did not match, allocate in proportion
//! to a count read from the bytes, or panic on any input.

use crate::header::{BATCH_HEADER_LEN, BatchHeader, RecordError, TimestampType};
use crate::record::{Record, RecordContext, RecordRef, decode_record};
use crate::varint::Reader;

/// Smallest encoded record: a one-byte length and six one-byte fields.
const MIN_RECORD_LEN: usize = 7;

/// A verified, uncompressed batch borrowed from a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch<'a> {
    header: BatchHeader,
    bytes: &'a [u8],
}

impl<'a> Batch<'a> {
    /// Verify the batch at the start of `bytes` (sizes, magic, CRC-32C,
    /// compression) and return its header and an iterator over its
    /// records. Bytes after the batch are ignored (use [`split_batches`]
    /// for several). Records are checked as they are iterated: a malformed
    /// record, or a records count that disagrees with the records present,
    /// is an `Err` item.
    pub fn decode(bytes: &'a [u8]) -> Result<(BatchHeader, RecordsIter<'a>), RecordError> {
        let batch = Batch::parse(bytes)?;
        Ok((batch.header, batch.records()))
    }

    /// Verify the batch at the start of `bytes` as [`Batch::decode`] does.
    pub fn parse(bytes: &'a [u8]) -> Result<Batch<'a>, RecordError> {
        let (header, bytes) = BatchHeader::verify(bytes)?;
        let codec = header.compression_codec();
        if codec != 0 {
            return Err(RecordError::UnsupportedCompression(codec));
        }
        Ok(Batch { header, bytes })
    }

    /// The batch's header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The batch's bytes, header included.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Iterate the records, borrowing from the batch.
    pub fn records(&self) -> RecordsIter<'a> {
        let h = &self.header;
        RecordsIter {
            reader: Reader::new(&self.bytes[BATCH_HEADER_LEN..]),
            ctx: RecordContext {
                base_offset: h.base_offset,
                base_timestamp: h.base_timestamp,
                last_offset_delta: h.last_offset_delta,
                log_append_time: match h.timestamp_type() {
                    TimestampType::LogAppendTime => Some(h.max_timestamp),
                    TimestampType::CreateTime => None,
                },
            },
            declared: h.records_count,
            next: 0,
            done: false,
        }
    }

    /// Decode every record into owned [`Record`]s (copies; prefer
    /// [`Batch::records`] on hot paths).
    pub fn to_records(&self) -> Result<Vec<Record>, RecordError> {
        // Capacity bounded by the bytes present, never by the count alone.
        let region = self.bytes.len() - BATCH_HEADER_LEN;
        let cap = (self.header.records_count as usize).min(region / MIN_RECORD_LEN);
        let mut out = Vec::with_capacity(cap);
        for r in self.records() {
            out.push(r?.to_record());
        }
        Ok(out)
    }
}

/// Verify the batch at the start of `bytes` and iterate its records (see
/// [`Batch::decode`]).
pub fn records(bytes: &[u8]) -> Result<RecordsIter<'_>, RecordError> {
    Ok(Batch::parse(bytes)?.records())
}

/// Iterator over a verified batch's records, yielding borrowed
/// [`RecordRef`]s. Stops after the first `Err`. After the declared number
/// of records it yields [`RecordError::TrailingBytes`] if bytes are left;
/// if the bytes end first it yields [`RecordError::RecordCountMismatch`].
#[derive(Debug, Clone)]
pub struct RecordsIter<'a> {
    reader: Reader<'a>,
    ctx: RecordContext,
    declared: i32,
    next: u32,
    done: bool,
}

impl<'a> Iterator for RecordsIter<'a> {
    type Item = Result<RecordRef<'a>, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if i64::from(self.next) == i64::from(self.declared) {
            self.done = true;
            let extra = self.reader.remaining();
            return (extra != 0).then_some(Err(RecordError::TrailingBytes {
                declared: self.declared,
                extra,
            }));
        }
        if self.reader.remaining() == 0 {
            self.done = true;
            return Some(Err(RecordError::RecordCountMismatch {
                declared: self.declared,
                found: self.next,
            }));
        }
        let item = decode_record(&mut self.reader, self.next, &self.ctx);
        match item {
            Ok(_) => self.next += 1,
            Err(_) => self.done = true,
        }
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.done {
            return (0, Some(0));
        }
        let left = (i64::from(self.declared) - i64::from(self.next)).max(0) as usize;
        // One more item for a trailing error.
        (0, Some(left.saturating_add(1)))
    }
}

impl std::iter::FusedIterator for RecordsIter<'_> {}

/// Why [`split_batches`] stopped: the error of the first bad batch and the
/// number of bytes of good batches before it (where a log recovering a
/// segment truncates).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad batch after {valid_bytes} valid bytes ({valid_batches} batches): {error}")]
pub struct SplitError {
    /// Bytes of complete, verified batches before the bad one.
    pub valid_bytes: usize,
    /// Number of those batches.
    pub valid_batches: usize,
    /// What is wrong with the batch at `valid_bytes`.
    #[source]
    pub error: RecordError,
}

/// Walk concatenated batches (a produce request's records, a log segment,
/// a fetch response's records). Each item is one batch's header and bytes,
/// verified as [`BatchHeader::verify`] does (sizes, magic, CRC); records
/// and compression are not looked at (use [`Batch::parse`] or
/// [`validate_for_append`] on each). Stops after the first bad batch,
/// including a truncated last one, with a [`SplitError`] saying how many
/// valid bytes precede it.
pub fn split_batches(bytes: &[u8]) -> Batches<'_> {
    Batches {
        bytes,
        pos: 0,
        count: 0,
        done: false,
    }
}

/// Iterator returned by [`split_batches`].
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    bytes: &'a [u8],
    pos: usize,
    count: usize,
    done: bool,
}

impl<'a> Batches<'a> {
    /// Bytes of the batches yielded so far.
    pub fn valid_bytes(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<(BatchHeader, &'a [u8]), SplitError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos == self.bytes.len() {
            return None;
        }
        match BatchHeader::verify(&self.bytes[self.pos..]) {
            Ok((h, b)) => {
                self.pos += b.len();
                self.count += 1;
                Some(Ok((h, b)))
            }
            Err(error) => {
                self.done = true;
                Some(Err(SplitError {
                    valid_bytes: self.pos,
                    valid_batches: self.count,
                    error,
                }))
            }
        }
    }
}

impl std::iter::FusedIterator for Batches<'_> {}

/// The checks a leader makes on a client's batch before appending it, on
/// top of [`Batch::parse`] (sizes, magic, CRC, no compression): at least
/// one record; not a control batch; last offset delta = records count - 1;
/// every record well formed with offset deltas 0, 1, 2, ... in order; the
/// records count matching the records present; and, for a create-time
/// batch, a max timestamp equal to the largest record timestamp. The
/// producer id, epoch, base sequence and transactional bit are not judged
/// here (idempotence is not implemented yet). Checks the batch at the
/// start of `bytes`; use [`split_batches`] for several.
pub fn validate_for_append(bytes: &[u8]) -> Result<BatchHeader, RecordError> {
    let batch = Batch::parse(bytes)?;
    let h = batch.header;
    if h.is_control() {
        return Err(RecordError::ControlBatch);
    }
    if h.records_count == 0 {
        return Err(RecordError::EmptyBatch);
    }
    if i64::from(h.last_offset_delta) != i64::from(h.records_count) - 1 {
        return Err(RecordError::LastOffsetDeltaMismatch {
            last_offset_delta: h.last_offset_delta,
            records_count: h.records_count,
        });
    }
    let mut max_timestamp = i64::MIN;
    for (i, r) in batch.records().enumerate() {
        let r = r?;
        if i64::from(r.offset_delta) != i as i64 {
            return Err(RecordError::OffsetDeltaGap {
                record: i as u32,
                offset_delta: r.offset_delta,
            });
        }
        max_timestamp = max_timestamp.max(r.timestamp);
    }
    if h.timestamp_type() == TimestampType::CreateTime && max_timestamp != h.max_timestamp {
        return Err(RecordError::MaxTimestampMismatch {
            stored: h.max_timestamp,
            computed: max_timestamp,
        });
    }
    Ok(h)
}
