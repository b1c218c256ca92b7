//! One record inside a RecordBatch v2, as Kafka's `DefaultRecord` lays it
//! out (all varints zigzag, as Kafka's `ByteUtils`):
//!
//! ```text
//! length          varint   bytes after this field
//! attributes      int8     unused, 0
//! timestampDelta  varlong  timestamp - batch base timestamp
//! offsetDelta     varint   offset - batch base offset
//! keyLength       varint   -1 = null
//! key             bytes
//! valueLength     varint   -1 = null
//! value           bytes
//! headersCount    varint
//! headers         per header: keyLength varint, key (UTF-8),
//!                 valueLength varint (-1 = null), value
//! ```
//!
//! Owns the owned ([`Record`], [`Header`]) and borrowed ([`RecordRef`],
//! [`HeaderRef`]) forms of a record and their encoding. Decoding must never
//! copy keys, values or headers, allocate, or trust a length: every length
//! and count is checked against the bytes left before it is used.

use crate::header::RecordError;
use crate::varint::{self, Fault, Reader};

/// A record header: a UTF-8 key (duplicates allowed, order kept) and an
/// optional value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Header {
    /// Header key.
    pub key: String,
    /// Header value (`None` is Kafka's null).
    pub value: Option<Vec<u8>>,
}

impl Header {
    /// A header with a value.
    pub fn new(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Header {
        Header {
            key: key.into(),
            value: Some(value.into()),
        }
    }
}

/// An owned record as stored in a batch: offsets and timestamps are deltas
/// from the batch's base offset and base timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Record {
    /// Offset minus the batch's base offset.
    pub offset_delta: i32,
    /// Timestamp minus the batch's base timestamp (wrapping).
    pub timestamp_delta: i64,
    /// Key (`None` is Kafka's null key).
    pub key: Option<Vec<u8>>,
    /// Value (`None` is Kafka's null value, a tombstone).
    pub value: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

/// A record borrowed from a verified batch: keys, values and headers point
/// into the batch's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Absolute offset: the batch's base offset plus `offset_delta`.
    pub offset: i64,
    /// Absolute timestamp: the batch's max timestamp for a log-append-time
    /// batch (as Kafka reports it), else the base timestamp plus
    /// `timestamp_delta` (wrapping, as Kafka's Java does).
    pub timestamp: i64,
    /// Offset minus the batch's base offset; within
    /// `0..=last_offset_delta`.
    pub offset_delta: i32,
    /// Timestamp minus the batch's base timestamp, as stored.
    pub timestamp_delta: i64,
    /// The record's attributes byte (unused by Kafka; normally 0).
    pub attributes: i8,
    /// Key (`None` is Kafka's null key).
    pub key: Option<&'a [u8]>,
    /// Value (`None` is Kafka's null value).
    pub value: Option<&'a [u8]>,
    header_count: u32,
    header_bytes: &'a [u8],
}

impl<'a> RecordRef<'a> {
    /// Number of headers.
    pub fn header_count(&self) -> u32 {
        self.header_count
    }

    /// The headers, in order, borrowed (already validated when the record
    /// was decoded).
    pub fn headers(&self) -> HeadersIter<'a> {
        HeadersIter {
            reader: Reader::new(self.header_bytes),
            left: self.header_count,
        }
    }

    /// Copy into an owned [`Record`].
    pub fn to_record(&self) -> Record {
        Record {
            offset_delta: self.offset_delta,
            timestamp_delta: self.timestamp_delta,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers: self
                .headers()
                .map(|h| Header {
                    key: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect(),
        }
    }

    /// The headers' encoded bytes (after the count), for re-encoding.
    pub(crate) fn raw_headers(&self) -> (u32, &'a [u8]) {
        (self.header_count, self.header_bytes)
    }
}

/// A header borrowed from a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderRef<'a> {
    /// Header key.
    pub key: &'a str,
    /// Header value (`None` is Kafka's null).
    pub value: Option<&'a [u8]>,
}

/// Iterator over a [`RecordRef`]'s headers.
#[derive(Debug, Clone)]
pub struct HeadersIter<'a> {
    reader: Reader<'a>,
    left: u32,
}

impl<'a> Iterator for HeadersIter<'a> {
    type Item = HeaderRef<'a>;

    fn next(&mut self) -> Option<HeaderRef<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The bytes were validated when the record was decoded, so these
        // reads succeed; should they not, the iteration just ends.
        let parsed = (|| {
            let key_len = usize::try_from(self.reader.varint().ok()?).ok()?;
            let key = std::str::from_utf8(self.reader.take(key_len).ok()?).ok()?;
            let value_len = self.reader.varint().ok()?;
            let value = match usize::try_from(value_len) {
                Ok(n) => Some(self.reader.take(n).ok()?),
                Err(_) => None,
            };
            Some(HeaderRef { key, value })
        })();
        if parsed.is_none() {
            self.left = 0;
        }
        parsed
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

/// What a record is decoded against: the batch's header fields it needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordContext {
    pub(crate) base_offset: i64,
    pub(crate) base_timestamp: i64,
    pub(crate) last_offset_delta: i32,
    /// `Some(max_timestamp)` for a log-append-time batch.
    pub(crate) log_append_time: Option<i64>,
}

fn fault(record: u32, field: &'static str) -> impl Fn(Fault) -> RecordError {
    move |f| match f {
        Fault::Eof => RecordError::RecordTruncated { record, field },
        Fault::Overlong => RecordError::InvalidVarint { record, field },
    }
}

/// A length that may be -1 (null) but no other negative value, bounded by
/// the bytes left.
fn nullable_bytes<'a>(
    r: &mut Reader<'a>,
    record: u32,
    field: &'static str,
) -> Result<Option<&'a [u8]>, RecordError> {
    let len = r.varint().map_err(fault(record, field))?;
    if len == -1 {
        return Ok(None);
    }
    let n = bounded_len(r, record, field, len, r.remaining())?;
    Ok(Some(r.take(n).map_err(fault(record, field))?))
}

/// A non-negative length or count no larger than `limit`.
fn bounded_len(
    r: &Reader<'_>,
    record: u32,
    field: &'static str,
    len: i32,
    limit: usize,
) -> Result<usize, RecordError> {
    let n = usize::try_from(len).map_err(|_| RecordError::NegativeLength {
        record,
        field,
        length: len,
    })?;
    if n > limit {
        return Err(RecordError::LengthOutOfBounds {
            record,
            field,
            length: len,
            remaining: r.remaining(),
        });
    }
    Ok(n)
}

/// Decode the record at the reader's position (record number `index` of
/// the batch), advancing past it.
pub(crate) fn decode_record<'a>(
    r: &mut Reader<'a>,
    index: u32,
    ctx: &RecordContext,
) -> Result<RecordRef<'a>, RecordError> {
    let len = r.varint().map_err(fault(index, "record length"))?;
    let declared = bounded_len(r, index, "record length", len, r.remaining())?;
    let body = r.take(declared).map_err(fault(index, "record length"))?;
    let mut b = Reader::new(body);

    let attributes = b.u8().map_err(fault(index, "attributes"))? as i8;
    let timestamp_delta = b.varlong().map_err(fault(index, "timestamp delta"))?;
    let offset_delta = b.varint().map_err(fault(index, "offset delta"))?;
    if !(0..=ctx.last_offset_delta).contains(&offset_delta) {
        return Err(RecordError::OffsetDeltaOutOfRange {
            record: index,
            offset_delta,
            last_offset_delta: ctx.last_offset_delta,
        });
    }
    let key = nullable_bytes(&mut b, index, "key length")?;
    let value = nullable_bytes(&mut b, index, "value length")?;

    let count = b.varint().map_err(fault(index, "header count"))?;
    // Each header takes at least two bytes (two one-byte varints).
    let count = bounded_len(&b, index, "header count", count, b.remaining() / 2)?;
    let headers_start = b.position();
    for h in 0..count {
        let key_len = b.varint().map_err(fault(index, "header key length"))?;
        let n = bounded_len(&b, index, "header key length", key_len, b.remaining())?;
        let key = b.take(n).map_err(fault(index, "header key"))?;
        if std::str::from_utf8(key).is_err() {
            return Err(RecordError::InvalidHeaderKey {
                record: index,
                header: h as u32,
            });
        }
        nullable_bytes(&mut b, index, "header value length")?;
    }
    let header_bytes = &body[headers_start..b.position()];
    if b.remaining() != 0 {
        return Err(RecordError::RecordSizeMismatch {
            record: index,
            declared,
            used: b.position(),
        });
    }

    // Cannot overflow: BatchHeader::parse bounds base offset + last delta.
    let offset = ctx.base_offset + i64::from(offset_delta);
    let timestamp = ctx
        .log_append_time
        .unwrap_or_else(|| ctx.base_timestamp.wrapping_add(timestamp_delta));
    Ok(RecordRef {
        offset,
        timestamp,
        offset_delta,
        timestamp_delta,
        attributes,
        key,
        value,
        header_count: count as u32,
        header_bytes,
    })
}

/// The headers of a record to encode: owned, or already-encoded bytes
/// copied from a decoded record.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HeadersSrc<'a> {
    Owned(&'a [Header]),
    Raw { count: u32, bytes: &'a [u8] },
}

/// The parts of a record to encode.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordParts<'a> {
    pub(crate) attributes: i8,
    pub(crate) timestamp_delta: i64,
    pub(crate) offset_delta: i32,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) headers: HeadersSrc<'a>,
}

/// Lengths are written as `i32`; callers bound every batch by
/// `MAX_BATCH_BYTES` (16 MiB) before encoding, so this never saturates.
fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn nullable_len(b: Option<&[u8]>) -> usize {
    match b {
        None => varint::varint_len(-1),
        Some(b) => varint::varint_len(len_i32(b.len())).saturating_add(b.len()),
    }
}

fn header_len(h: &Header) -> usize {
    varint::varint_len(len_i32(h.key.len()))
        .saturating_add(h.key.len())
        .saturating_add(nullable_len(h.value.as_deref()))
}

impl RecordParts<'_> {
    /// Bytes after the length prefix.
    pub(crate) fn body_len(&self) -> usize {
        let (count, header_bytes) = match self.headers {
            HeadersSrc::Owned(hs) => (
                hs.len(),
                hs.iter()
                    .fold(0usize, |acc, h| acc.saturating_add(header_len(h))),
            ),
            HeadersSrc::Raw { count, bytes } => (count as usize, bytes.len()),
        };
        1usize
            .saturating_add(varint::varlong_len(self.timestamp_delta))
            .saturating_add(varint::varint_len(self.offset_delta))
            .saturating_add(nullable_len(self.key))
            .saturating_add(nullable_len(self.value))
            .saturating_add(varint::varint_len(len_i32(count)))
            .saturating_add(header_bytes)
    }

    /// Bytes including the length prefix.
    pub(crate) fn encoded_len(&self) -> usize {
        let body = self.body_len();
        varint::varint_len(len_i32(body)).saturating_add(body)
    }

    /// Append the encoded record to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        fn nullable(out: &mut Vec<u8>, b: Option<&[u8]>) {
            match b {
                None => varint::write_varint(out, -1),
                Some(b) => {
                    varint::write_varint(out, len_i32(b.len()));
                    out.extend_from_slice(b);
                }
            }
        }
        varint::write_varint(out, len_i32(self.body_len()));
        out.push(self.attributes as u8);
        varint::write_varlong(out, self.timestamp_delta);
        varint::write_varint(out, self.offset_delta);
        nullable(out, self.key);
        nullable(out, self.value);
        match self.headers {
            HeadersSrc::Owned(hs) => {
                varint::write_varint(out, len_i32(hs.len()));
                for h in hs {
                    varint::write_varint(out, len_i32(h.key.len()));
                    out.extend_from_slice(h.key.as_bytes());
                    nullable(out, h.value.as_deref());
                }
            }
            HeadersSrc::Raw { count, bytes } => {
                varint::write_varint(out, len_i32(count as usize));
                out.extend_from_slice(bytes);
            }
        }
    }
}

/// Kafka's `DefaultRecord.MAX_RECORD_OVERHEAD`: the largest size of the
/// length prefix, attributes, timestamp delta and offset delta.
pub(crate) const MAX_RECORD_OVERHEAD: usize =
    varint::MAX_VARINT_LEN + 1 + varint::MAX_VARLONG_LEN + varint::MAX_VARINT_LEN;

/// An upper bound of a record's encoded size whatever its deltas (Kafka's
/// `DefaultRecord.recordSizeUpperBound`).
pub(crate) fn record_size_upper_bound(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) -> usize {
    let hs = headers
        .iter()
        .fold(0usize, |acc, h| acc.saturating_add(header_len(h)));
    MAX_RECORD_OVERHEAD
        .saturating_add(nullable_len(key))
        .saturating_add(nullable_len(value))
        .saturating_add(varint::varint_len(len_i32(headers.len())))
        .saturating_add(hs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: RecordContext = RecordContext {
        base_offset: 100,
        base_timestamp: 1_000,
        last_offset_delta: 10,
        log_append_time: None,
    };

    fn encode(parts: &RecordParts<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        parts.encode(&mut out);
        assert_eq!(out.len(), parts.encoded_len());
        out
    }

    fn decode(bytes: &[u8]) -> Result<RecordRef<'_>, RecordError> {
        let mut r = Reader::new(bytes);
        let rec = decode_record(&mut r, 0, &CTX)?;
        assert_eq!(r.remaining(), 0);
        Ok(rec)
    }

    fn parts<'a>(headers: &'a [Header]) -> RecordParts<'a> {
        RecordParts {
            attributes: 0,
            timestamp_delta: 5,
            offset_delta: 3,
            key: Some(b"k"),
            value: None,
            headers: HeadersSrc::Owned(headers),
        }
    }

    #[test]
    fn encodes_kafka_layout() {
        let hs = [Header::new("h", "v")];
        let bytes = encode(&parts(&hs));
        // length 11, attributes, ts delta 5, offset delta 3, key len 1, "k",
        // value null, 1 header: key len 1 "h", value len 1 "v".
        assert_eq!(
            bytes,
            [22, 0, 10, 6, 2, b'k', 1, 2, 2, b'h', 2, b'v'],
            "{bytes:x?}"
        );
        let rec = decode(&bytes).unwrap();
        assert_eq!((rec.offset, rec.timestamp), (103, 1_005));
        assert_eq!((rec.key, rec.value), (Some(&b"k"[..]), None));
        let h: Vec<_> = rec.headers().collect();
        assert_eq!(
            h,
            [HeaderRef {
                key: "h",
                value: Some(b"v")
            }]
        );
        assert_eq!(
            rec.to_record(),
            Record {
                offset_delta: 3,
                timestamp_delta: 5,
                key: Some(b"k".to_vec()),
                value: None,
                headers: hs.to_vec(),
            }
        );
    }

    #[test]
    fn log_append_time_replaces_timestamps() {
        let bytes = encode(&parts(&[]));
        let ctx = RecordContext {
            log_append_time: Some(77),
            ..CTX
        };
        let rec = decode_record(&mut Reader::new(&bytes), 0, &ctx).unwrap();
        assert_eq!((rec.timestamp, rec.timestamp_delta), (77, 5));
    }

    #[test]
    fn names_each_fault() {
        let hs = [Header::new("h", "v")];
        let good = encode(&parts(&hs));
        // Record length beyond the bytes.
        let mut b = good.clone();
        b[0] = 40;
        assert!(matches!(
            decode(&b),
            Err(RecordError::LengthOutOfBounds {
                field: "record length",
                length: 20,
                ..
            })
        ));
        // Negative record length.
        b[0] = 1;
        assert!(matches!(
            decode(&b),
            Err(RecordError::NegativeLength { length: -1, .. })
        ));
        // Offset delta beyond the batch's last offset delta.
        let mut b = good.clone();
        b[3] = 2 * 11;
        assert!(matches!(
            decode(&b),
            Err(RecordError::OffsetDeltaOutOfRange {
                offset_delta: 11,
                ..
            })
        ));
        // Key length -2.
        let mut b = good.clone();
        b[4] = 3;
        assert!(matches!(
            decode(&b),
            Err(RecordError::NegativeLength {
                field: "key length",
                length: -2,
                ..
            })
        ));
        // Header count larger than the bytes left.
        let mut b = good.clone();
        b[7] = 100;
        assert!(matches!(
            decode(&b),
            Err(RecordError::LengthOutOfBounds {
                field: "header count",
                length: 50,
                ..
            })
        ));
        // Header key that is not UTF-8.
        let mut b = good.clone();
        b[9] = 0xff;
        assert!(matches!(
            decode(&b),
            Err(RecordError::InvalidHeaderKey {
                record: 0,
                header: 0
            })
        ));
        // Record length longer than the fields (an extra byte inside).
        let mut b = good.clone();
        b[0] = 24;
        b.push(0);
        assert!(matches!(
            decode(&b),
            Err(RecordError::RecordSizeMismatch {
                declared: 12,
                used: 11,
                ..
            })
        ));
        // Record length shorter than the fields.
        let mut b = good.clone();
        b[0] = 20;
        b.pop();
        assert!(matches!(
            decode(&b),
            Err(RecordError::RecordTruncated {
                field: "header value length",
                ..
            }) | Err(RecordError::LengthOutOfBounds { .. })
        ));
        // Overlong timestamp delta.
        let mut b = vec![24u8, 0];
        b.extend_from_slice(&[0x80; 11]);
        assert!(matches!(
            decode(&b),
            Err(RecordError::InvalidVarint {
                field: "timestamp delta",
                ..
            })
        ));
        // Truncated at every position.
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn upper_bound_holds() {
        let hs = [
            Header::new("key", vec![1; 300]),
            Header {
                key: String::new(),
                value: None,
            },
        ];
        let p = RecordParts {
            timestamp_delta: i64::MIN,
            offset_delta: i32::MAX,
            ..parts(&hs)
        };
        assert!(encode(&p).len() <= record_size_upper_bound(p.key, p.value, &hs));
    }
}
