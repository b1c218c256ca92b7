//! The fixed part of a RecordBatch v2 (all integers big-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | base offset |
//! | 8 | 4 | batch length (bytes after this field) |
//! | 12 | 4 | partition leader epoch |
//! | 16 | 1 | magic (2) |
//! | 17 | 4 | CRC-32C of bytes 21.. (attributes to the end) |
//! | 21 | 2 | attributes |
//! | 23 | 4 | last offset delta |
//! | 27 | 8 | base (first) timestamp |
//! | 35 | 8 | max timestamp |
//! | 43 | 8 | producer id |
//! | 51 | 2 | producer epoch |
//! | 53 | 4 | base sequence |
//! | 57 | 4 | records count |
//! | 61 | .. | records |
//!
//! The partition leader epoch and base offset are outside the CRC, so a
//! leader can stamp them without recomputing it (as Kafka does).
//!
//! Owns the header's layout, its checks, the crate's error type and the
//! in-place stamping of header fields. It must never hand out a batch whose
//! CRC did not match, read past the bytes it was given, or give a corrupt
//! batch a fresh CRC.

/// Size of the fixed header.
pub const BATCH_HEADER_LEN: usize = 61;

/// Offset of the batch-length field's end: `batch_length` counts the bytes
/// after it.
pub const LOG_OVERHEAD: usize = 12;

/// The only magic this crate reads or writes.
pub const MAGIC_V2: i8 = 2;

/// Largest batch accepted anywhere (Kafka's default `message.max.bytes` is
/// about 1 MiB; we allow up to 16 MiB and let topics set less).
pub const MAX_BATCH_BYTES: usize = 16 << 20;

/// Why bytes are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Fewer bytes than the header, or than the batch length says.
    #[error("truncated batch: need {needed} bytes, have {have}")]
    Truncated {
        /// Bytes the batch needs.
        needed: usize,
        /// Bytes available.
        have: usize,
    },
    /// A batch length below the header size or above the limit.
    #[error("invalid batch length {0}")]
    InvalidLength(i64),
    /// Not magic 2.
    #[error("unsupported magic {0} (only RecordBatch v2 is supported)")]
    UnsupportedMagic(i8),
    /// The stored CRC does not match the bytes.
    #[error("corrupt batch: CRC-32C {computed:#010x} does not match the stored {stored:#010x}")]
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// A field is out of range or inconsistent.
    #[error("invalid batch: {0}")]
    Invalid(String),
    /// The batch's records are compressed (attributes bits 0-2); only
    /// uncompressed batches are decoded.
    #[error("unsupported compression codec {0} ({name}): only uncompressed batches are supported", name = compression_name(*.0))]
    UnsupportedCompression(u8),
    /// A varint longer than 5 bytes or a varlong longer than 10, or one with
    /// bits beyond its type's width.
    #[error("record {record}: invalid varint in {field}")]
    InvalidVarint {
        /// Index of the record in the batch.
        record: u32,
        /// Which field.
        field: &'static str,
    },
    /// The bytes a record is bounded by ended inside a field.
    #[error("record {record}: truncated in {field}")]
    RecordTruncated {
        /// Index of the record in the batch.
        record: u32,
        /// Which field.
        field: &'static str,
    },
    /// A negative length or count where none may be (-1, meaning null, is
    /// allowed only for keys, values and header values).
    #[error("record {record}: negative {field} {length}")]
    NegativeLength {
        /// Index of the record in the batch.
        record: u32,
        /// Which length or count.
        field: &'static str,
        /// The value read.
        length: i32,
    },
    /// A length or count larger than the bytes left to hold it (a header
    /// count is bounded by half the bytes left: each header takes at least
    /// two).
    #[error("record {record}: {field} {length} exceeds the {remaining} bytes left")]
    LengthOutOfBounds {
        /// Index of the record in the batch.
        record: u32,
        /// Which length or count.
        field: &'static str,
        /// The value read.
        length: i32,
        /// Bytes left where it was read.
        remaining: usize,
    },
    /// A record's length prefix disagrees with the bytes its fields take.
    #[error("record {record}: length says {declared} bytes but its fields take {used}")]
    RecordSizeMismatch {
        /// Index of the record in the batch.
        record: u32,
        /// The record's length prefix.
        declared: usize,
        /// Bytes its fields took.
        used: usize,
    },
    /// A header key that is not UTF-8.
    #[error("record {record}: header {header} key is not UTF-8")]
    InvalidHeaderKey {
        /// Index of the record in the batch.
        record: u32,
        /// Index of the header in the record.
        header: u32,
    },
    /// A record's offset delta outside `0..=last_offset_delta`.
    #[error("record {record}: offset delta {offset_delta} outside 0..={last_offset_delta}")]
    OffsetDeltaOutOfRange {
        /// Index of the record in the batch.
        record: u32,
        /// The record's offset delta.
        offset_delta: i32,
        /// The batch's last offset delta.
        last_offset_delta: i32,
    },
    /// The records ended before the batch's records count.
    #[error("batch declares {declared} records but holds {found}")]
    RecordCountMismatch {
        /// Records count in the header.
        declared: i32,
        /// Records present.
        found: u32,
    },
    /// Bytes left over after the batch's records count.
    #[error("{extra} bytes after the {declared} records the batch declares")]
    TrailingBytes {
        /// Records count in the header.
        declared: i32,
        /// Bytes left over.
        extra: usize,
    },
    /// Building would exceed the largest batch allowed.
    #[error("batch of {size} bytes exceeds the limit of {limit}")]
    BatchTooLarge {
        /// Size the batch would have.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Appending: a batch with no records.
    #[error("batch holds no records")]
    EmptyBatch,
    /// Appending: control batches are written by the broker, never by clients.
    #[error("control batches may not be produced by clients")]
    ControlBatch,
    /// Appending: the last offset delta must be the records count minus one.
    #[error("last offset delta {last_offset_delta} does not match {records_count} records")]
    LastOffsetDeltaMismatch {
        /// Last offset delta in the header.
        last_offset_delta: i32,
        /// Records count in the header.
        records_count: i32,
    },
    /// Appending: offset deltas must be 0, 1, 2, ... in order.
    #[error("record {record} has offset delta {offset_delta}, expected {record}")]
    OffsetDeltaGap {
        /// Index of the record in the batch.
        record: u32,
        /// The record's offset delta.
        offset_delta: i32,
    },
    /// Appending: a create-time batch whose max timestamp is not the largest
    /// record timestamp.
    #[error("max timestamp {stored} in the header, {computed} in the records")]
    MaxTimestampMismatch {
        /// Max timestamp in the header.
        stored: i64,
        /// Largest record timestamp.
        computed: i64,
    },
}

/// Kafka's name for a compression codec id (attributes bits 0-2).
pub fn compression_name(codec: u8) -> &'static str {
    match codec {
        0 => "none",
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "unknown",
    }
}

/// Attributes bits 0-2: the compression codec (0 = none).
pub const COMPRESSION_CODEC_MASK: i16 = 0x07;
/// Attributes bit 3: timestamps are log-append time.
pub const TIMESTAMP_TYPE_MASK: i16 = 0x08;
/// Attributes bit 4: part of a transaction.
pub const TRANSACTIONAL_FLAG_MASK: i16 = 0x10;
/// Attributes bit 5: a control batch (transaction markers).
pub const CONTROL_FLAG_MASK: i16 = 0x20;

/// "No value" for producer id, producer epoch, base sequence, partition
/// leader epoch and timestamps, as Kafka writes it.
pub const NO_PRODUCER_ID: i64 = -1;
/// See [`NO_PRODUCER_ID`].
pub const NO_PRODUCER_EPOCH: i16 = -1;
/// See [`NO_PRODUCER_ID`].
pub const NO_SEQUENCE: i32 = -1;
/// See [`NO_PRODUCER_ID`].
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;
/// See [`NO_PRODUCER_ID`].
pub const NO_TIMESTAMP: i64 = -1;

/// What a batch's timestamps mean (attributes bit 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimestampType {
    /// Set by the producer when it created the record.
    CreateTime,
    /// Set by the leader when it appended the batch: every record's
    /// timestamp is the batch's max timestamp.
    LogAppendTime,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    be_i32(b, at) as u32
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

/// The decoded fixed header of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the length field; the whole batch is `batch_length + 12`.
    pub batch_length: i32,
    /// Leader epoch of the leader that appended the batch.
    pub partition_leader_epoch: i32,
    /// Magic (always 2 once parsed).
    pub magic: i8,
    /// Stored CRC-32C.
    pub crc: u32,
    /// Attributes (compression bits 0-2, timestamp type bit 3,
    /// transactional bit 4, control bit 5).
    pub attributes: i16,
    /// Offset of the last record minus the base offset.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id (-1 when none).
    pub producer_id: i64,
    /// Producer epoch (-1 when none).
    pub producer_epoch: i16,
    /// Sequence of the first record (-1 when none).
    pub base_sequence: i32,
    /// Number of records.
    pub records_count: i32,
}

impl BatchHeader {
    /// Parse the header at the start of `bytes` and check what can be checked
    /// without the records: sizes and magic. Does not check the CRC (see
    /// [`BatchHeader::verify`]).
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, RecordError> {
        if bytes.len() < BATCH_HEADER_LEN {
            return Err(RecordError::Truncated {
                needed: BATCH_HEADER_LEN,
                have: bytes.len(),
            });
        }
        let batch_length = be_i32(bytes, 8);
        let total = i64::from(batch_length) + LOG_OVERHEAD as i64;
        if total < BATCH_HEADER_LEN as i64 || total > MAX_BATCH_BYTES as i64 {
            return Err(RecordError::InvalidLength(i64::from(batch_length)));
        }
        let magic = bytes[16] as i8;
        if magic != MAGIC_V2 {
            return Err(RecordError::UnsupportedMagic(magic));
        }
        let h = BatchHeader {
            base_offset: be_i64(bytes, 0),
            batch_length,
            partition_leader_epoch: be_i32(bytes, 12),
            magic,
            crc: be_u32(bytes, 17),
            attributes: be_i16(bytes, 21),
            last_offset_delta: be_i32(bytes, 23),
            base_timestamp: be_i64(bytes, 27),
            max_timestamp: be_i64(bytes, 35),
            producer_id: be_i64(bytes, 43),
            producer_epoch: be_i16(bytes, 51),
            base_sequence: be_i32(bytes, 53),
            records_count: be_i32(bytes, 57),
        };
        if h.last_offset_delta < 0 || h.records_count < 0 {
            return Err(RecordError::Invalid(format!(
                "negative last offset delta {} or record count {}",
                h.last_offset_delta, h.records_count
            )));
        }
        if h.base_offset < 0 {
            return Err(RecordError::Invalid(format!(
                "negative base offset {}",
                h.base_offset
            )));
        }
        // So that last_offset() and next_offset() cannot overflow.
        if h.base_offset > i64::MAX - 1 - i64::from(h.last_offset_delta) {
            return Err(RecordError::Invalid(format!(
                "base offset {} plus last offset delta {} overflows",
                h.base_offset, h.last_offset_delta
            )));
        }
        Ok(h)
    }

    /// Compression codec id (attributes bits 0-2; 0 = none, see
    /// [`compression_name`]).
    pub fn compression_codec(&self) -> u8 {
        (self.attributes & COMPRESSION_CODEC_MASK) as u8
    }

    /// What the timestamps mean (attributes bit 3).
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_MASK != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    /// Part of a transaction (attributes bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG_MASK != 0
    }

    /// A control batch (attributes bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG_MASK != 0
    }

    /// Total size of the batch in bytes (header and records).
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Offset after the batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Parse the batch at the start of `bytes` and verify its CRC over the
    /// whole batch; returns the header and the batch's bytes.
    pub fn verify(bytes: &[u8]) -> Result<(BatchHeader, &[u8]), RecordError> {
        let h = BatchHeader::parse(bytes)?;
        let total = h.total_len();
        if bytes.len() < total {
            return Err(RecordError::Truncated {
                needed: total,
                have: bytes.len(),
            });
        }
        let computed = crc32c::crc32c(&bytes[21..total]);
        if computed != h.crc {
            return Err(RecordError::CrcMismatch {
                stored: h.crc,
                computed,
            });
        }
        Ok((h, &bytes[..total]))
    }
}

/// Rewrite the base offset of the batch in `bytes` (outside the CRC).
pub fn set_base_offset(bytes: &mut [u8], base_offset: i64) {
    if bytes.len() >= 8 {
        bytes[0..8].copy_from_slice(&base_offset.to_be_bytes());
    }
}

/// Rewrite the partition leader epoch of the batch in `bytes` (outside the
/// CRC).
pub fn set_partition_leader_epoch(bytes: &mut [u8], epoch: i32) {
    if bytes.len() >= 16 {
        bytes[12..16].copy_from_slice(&epoch.to_be_bytes());
    }
}

/// Mark the verified batch in `bytes` as log-append time stamped at
/// `append_time` (Kafka's `setMaxTimestamp(LOG_APPEND_TIME, now)`): sets
/// attributes bit 3 and the max timestamp, then rewrites the CRC, which
/// covers both. Verifies the batch (CRC included) first, so a corrupt batch
/// is never given a fresh, valid CRC.
pub fn set_log_append_time(bytes: &mut [u8], append_time: i64) -> Result<(), RecordError> {
    let (h, _) = BatchHeader::verify(bytes)?;
    let total = h.total_len();
    let attributes = h.attributes | TIMESTAMP_TYPE_MASK;
    bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
    bytes[35..43].copy_from_slice(&append_time.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[21..total]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Stamp the verified batch in `bytes` with an idempotent producer's id,
/// epoch and first sequence (Kafka's idempotent producer), then rewrite the
/// CRC, which covers them. Verifies the batch (CRC included) first, so a
/// corrupt batch is never given a fresh, valid CRC.
pub fn set_producer(
    bytes: &mut [u8],
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
) -> Result<(), RecordError> {
    let (h, _) = BatchHeader::verify(bytes)?;
    let total = h.total_len();
    bytes[43..51].copy_from_slice(&producer_id.to_be_bytes());
    bytes[51..53].copy_from_slice(&producer_epoch.to_be_bytes());
    bytes[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[21..total]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

impl BatchHeader {
    /// The sequence of the last record (wrapping, as Kafka's sequences do);
    /// -1 without a producer.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.records_count.max(1)) - 1;
        (last % (i64::from(i32::MAX) + 1)) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_fields_are_stamped_under_a_fresh_crc() {
        let mut b = crate::BatchBuilder::new();
        b.append(1, None, Some(b"a"), &[]).unwrap();
        b.append(2, None, Some(b"b"), &[]).unwrap();
        let mut bytes = b.build();
        set_producer(&mut bytes, 77, 3, i32::MAX).unwrap();
        let (h, _) = BatchHeader::verify(&bytes).unwrap();
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (77, 3, i32::MAX)
        );
        // Two records from i32::MAX wrap to 0.
        assert_eq!(h.last_sequence(), 0);
        // A corrupt batch is refused, not re-signed.
        bytes[70] ^= 1;
        assert!(set_producer(&mut bytes, 1, 0, 0).is_err());
    }

    /// A hand-built batch with no records body beyond the header.
    fn batch(records_count: i32, extra: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&5i64.to_be_bytes());
        let len = (BATCH_HEADER_LEN - LOG_OVERHEAD + extra.len()) as i32;
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(&7i32.to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(records_count - 1).max(0).to_be_bytes());
        b.extend_from_slice(&100i64.to_be_bytes());
        b.extend_from_slice(&200i64.to_be_bytes());
        b.extend_from_slice(&(-1i64).to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&records_count.to_be_bytes());
        b.extend_from_slice(extra);
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn parses_and_verifies() {
        let b = batch(3, b"abc");
        let (h, bytes) = BatchHeader::verify(&b).unwrap();
        assert_eq!(bytes.len(), b.len());
        assert_eq!(
            (
                h.base_offset,
                h.partition_leader_epoch,
                h.last_offset(),
                h.next_offset()
            ),
            (5, 7, 7, 8)
        );
        assert_eq!(
            (h.base_timestamp, h.max_timestamp, h.records_count),
            (100, 200, 3)
        );
        // Stamping the offset and epoch keeps the CRC valid.
        let mut c = b.clone();
        set_base_offset(&mut c, 1000);
        set_partition_leader_epoch(&mut c, 9);
        let (h2, _) = BatchHeader::verify(&c).unwrap();
        assert_eq!((h2.base_offset, h2.partition_leader_epoch), (1000, 9));
    }

    #[test]
    fn stamps_log_append_time_and_refuses_corrupt_batches() {
        let mut b = batch(2, b"ab");
        set_log_append_time(&mut b, 9_999).unwrap();
        let (h, _) = BatchHeader::verify(&b).unwrap();
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!((h.max_timestamp, h.base_timestamp), (9_999, 100));
        let mut corrupt = batch(2, b"ab");
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        let before = corrupt.clone();
        assert!(matches!(
            set_log_append_time(&mut corrupt, 1),
            Err(RecordError::CrcMismatch { .. })
        ));
        assert_eq!(corrupt, before);
    }

    #[test]
    fn refuses_bad_bytes() {
        let b = batch(1, b"xyz");
        assert!(matches!(
            BatchHeader::verify(&b[..30]),
            Err(RecordError::Truncated { .. })
        ));
        assert!(matches!(
            BatchHeader::verify(&b[..b.len() - 1]),
            Err(RecordError::Truncated { .. })
        ));
        let mut flipped = b.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            BatchHeader::verify(&flipped),
            Err(RecordError::CrcMismatch { .. })
        ));
        let mut magic = b.clone();
        magic[16] = 1;
        assert_eq!(
            BatchHeader::parse(&magic),
            Err(RecordError::UnsupportedMagic(1))
        );
        let mut huge = b.clone();
        huge[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            BatchHeader::parse(&huge),
            Err(RecordError::InvalidLength(_))
        ));
        let mut small = b;
        small[8..12].copy_from_slice(&3i32.to_be_bytes());
        assert!(matches!(
            BatchHeader::parse(&small),
            Err(RecordError::InvalidLength(3))
        ));
    }
}
