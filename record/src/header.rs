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
        Ok(h)
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

#[cfg(test)]
mod tests {
    use super::*;

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
