//! Kafka's zigzag variable-length integers (`ByteUtils.writeVarint` /
//! `writeVarlong`) and a bounds-checked reader over a byte slice.
//!
//! Owns the byte-level primitives of the record format. It must never read
//! past the slice it was given, allocate, or panic on any input: every read
//! returns a [`Fault`] instead, and the caller names the field.
//!
//! Decoding is stricter than Kafka's Java reader in one way: a varint whose
//! fifth byte carries more than the four bits an `i32` can hold (or a
//! varlong whose tenth byte carries more than one bit) is refused rather than
//! silently truncated. No Kafka encoder writes such bytes.

/// Why a primitive could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The bytes ended first.
    Eof,
    /// A varint longer than 5 bytes (varlong: 10), or with bits beyond the
    /// type's width.
    Overlong,
}

/// Largest encoded size of a varint.
pub(crate) const MAX_VARINT_LEN: usize = 5;
/// Largest encoded size of a varlong.
pub(crate) const MAX_VARLONG_LEN: usize = 10;

fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn write_unsigned(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn unsigned_len(v: u64) -> usize {
    // 1 byte per started group of 7 bits, at least 1.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Append `v` as a zigzag varint.
pub(crate) fn write_varint(out: &mut Vec<u8>, v: i32) {
    write_unsigned(out, u64::from(zigzag32(v)));
}

/// Append `v` as a zigzag varlong.
pub(crate) fn write_varlong(out: &mut Vec<u8>, v: i64) {
    write_unsigned(out, zigzag64(v));
}

/// Encoded size of `v` as a zigzag varint.
pub(crate) fn varint_len(v: i32) -> usize {
    unsigned_len(u64::from(zigzag32(v)))
}

/// Encoded size of `v` as a zigzag varlong.
pub(crate) fn varlong_len(v: i64) -> usize {
    unsigned_len(zigzag64(v))
}

/// A cursor over a byte slice; every read is bounded by the slice.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    /// Bytes read so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Fault> {
        let b = *self.buf.get(self.pos).ok_or(Fault::Eof)?;
        self.pos += 1;
        Ok(b)
    }

    /// The next `n` bytes, borrowed.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], Fault> {
        if n > self.remaining() {
            return Err(Fault::Eof);
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn unsigned(&mut self, max_len: usize) -> Result<u64, Fault> {
        // Bits the last allowed byte may carry: 32 - 28 = 4 for varints,
        // 64 - 63 = 1 for varlongs.
        let last_bits = if max_len == MAX_VARINT_LEN { 4 } else { 1 };
        let mut raw = 0u64;
        for i in 0..max_len {
            let b = self.u8()?;
            if i == max_len - 1 && b >> last_bits != 0 {
                return Err(Fault::Overlong);
            }
            raw |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(raw);
            }
        }
        Err(Fault::Overlong)
    }

    /// A zigzag varint (at most 5 bytes).
    pub(crate) fn varint(&mut self) -> Result<i32, Fault> {
        let raw = self.unsigned(MAX_VARINT_LEN)? as u32;
        Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
    }

    /// A zigzag varlong (at most 10 bytes).
    pub(crate) fn varlong(&mut self) -> Result<i64, Fault> {
        let raw = self.unsigned(MAX_VARLONG_LEN)?;
        Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc32(v: i32) -> Vec<u8> {
        let mut out = Vec::new();
        write_varint(&mut out, v);
        out
    }

    fn enc64(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        write_varlong(&mut out, v);
        out
    }

    /// Encodings asserted by Kafka's `ByteUtilsTest` (`testVarintSerde`,
    /// `testVarlongSerde`, `testInvalidVarint`, `testInvalidVarlong`).
    #[test]
    fn kafka_byte_patterns() {
        let ints: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (-65, &[0x81, 0x01]),
            (8191, &[0xfe, 0x7f]),
            (-8192, &[0xff, 0x7f]),
            (8192, &[0x80, 0x80, 0x01]),
            (-8193, &[0x81, 0x80, 0x01]),
            (134217727, &[0xfe, 0xff, 0xff, 0x7f]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for &(v, bytes) in ints {
            assert_eq!(enc32(v), bytes, "{v}");
            assert_eq!(Reader::new(bytes).varint(), Ok(v), "{v}");
        }
        let longs: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (134217728, &[0x80, 0x80, 0x80, 0x80, 0x01]),
            (17179869183, &[0xfe, 0xff, 0xff, 0xff, 0x7f]),
            (-17179869185, &[0x81, 0x80, 0x80, 0x80, 0x80, 0x01]),
            (
                4611686018427387904,
                &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
            ),
            (
                i64::MAX,
                &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
            (
                i64::MIN,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for &(v, bytes) in longs {
            assert_eq!(enc64(v), bytes, "{v}");
            assert_eq!(Reader::new(bytes).varlong(), Ok(v), "{v}");
        }
        // One overflow byte each.
        let bad32 = [0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&bad32).varint(), Err(Fault::Overlong));
        let bad64 = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(Reader::new(&bad64).varlong(), Err(Fault::Overlong));
    }

    #[test]
    fn round_trips_and_lengths() {
        let ints = [0, 1, -1, 63, 64, -64, -65, 300, -300, i32::MAX, i32::MIN];
        for v in ints {
            let b = enc32(v);
            assert_eq!(b.len(), varint_len(v), "{v}");
            let mut r = Reader::new(&b);
            assert_eq!(r.varint(), Ok(v));
            assert_eq!(r.remaining(), 0);
        }
        let longs = [0, 1, -1, 1 << 40, -(1 << 40), i64::MAX, i64::MIN];
        for v in longs {
            let b = enc64(v);
            assert_eq!(b.len(), varlong_len(v), "{v}");
            let mut r = Reader::new(&b);
            assert_eq!(r.varlong(), Ok(v));
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn refuses_overlong_and_truncated() {
        // Six bytes with continuation bits: too long for a varint.
        let six = [0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
        assert_eq!(Reader::new(&six).varint(), Err(Fault::Overlong));
        // Fifth byte with bits beyond 32.
        let wide = [0xff, 0xff, 0xff, 0xff, 0x1f];
        assert_eq!(Reader::new(&wide).varint(), Err(Fault::Overlong));
        // Eleven bytes: too long for a varlong.
        let eleven = [0x80; 11];
        assert_eq!(Reader::new(&eleven).varlong(), Err(Fault::Overlong));
        let wide64 = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x03];
        assert_eq!(Reader::new(&wide64).varlong(), Err(Fault::Overlong));
        // Ends inside the varint.
        assert_eq!(Reader::new(&[0x80, 0x80]).varint(), Err(Fault::Eof));
        assert_eq!(Reader::new(&[]).varint(), Err(Fault::Eof));
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.take(4), Err(Fault::Eof));
        assert_eq!(r.take(3), Ok(&[1u8, 2, 3][..]));
    }
}
