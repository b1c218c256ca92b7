//! The byte encoding of the records [`LocalStore`](super::LocalStore) keeps
//! in redb: a key's state (value + etcd metadata) and the events of one
//! revision (the watch history).
//!
//! Owns only encoding and decoding. Every record starts with a format byte;
//! integers are little-endian, byte strings are length-prefixed (u32). It must
//! never panic on what it reads back: a short, truncated or unknown record is
//! a [`StoreError::Internal`] naming what was wrong.

use super::{KeyValue, StoreError, StoreResult, WatchEvent};

/// Format byte of every record written by this version.
const FORMAT_V1: u8 = 1;

const EVENT_PUT: u8 = 1;
const EVENT_DELETE: u8 = 2;

/// Encodes a key's state; the key itself is the table key and not repeated.
pub(crate) fn encode_kv(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 32 + 4 + kv.value.len());
    out.push(FORMAT_V1);
    put_kv_fields(&mut out, kv);
    out
}

/// Decodes a record written by [`encode_kv`] for `key`.
pub(crate) fn decode_kv(key: &[u8], bytes: &[u8]) -> StoreResult<KeyValue> {
    let mut reader = Reader::new(bytes, "kv record");
    reader.format()?;
    let kv = reader.kv_fields(key.to_vec())?;
    reader.finish()?;
    Ok(kv)
}

/// Encodes the events of one revision (the revision is the table key).
pub(crate) fn encode_events(events: &[WatchEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    out.push(FORMAT_V1);
    put_len(&mut out, events.len());
    for event in events {
        match event {
            WatchEvent::Put(kv) => {
                out.push(EVENT_PUT);
                put_bytes(&mut out, &kv.key);
                put_kv_fields(&mut out, kv);
            }
            WatchEvent::Delete { key, .. } => {
                out.push(EVENT_DELETE);
                put_bytes(&mut out, key);
            }
        }
    }
    out
}

/// Decodes the events of `revision` written by [`encode_events`].
pub(crate) fn decode_events(revision: i64, bytes: &[u8]) -> StoreResult<Vec<WatchEvent>> {
    let mut reader = Reader::new(bytes, "history record");
    reader.format()?;
    let count = reader.len()?;
    // Every event takes at least 5 bytes: refuse counts the record cannot hold.
    if count > bytes.len() / 5 {
        return Err(reader.corrupt("event count larger than the record"));
    }
    let mut events = Vec::with_capacity(count);
    for _ in 0..count {
        let event = match reader.u8()? {
            EVENT_PUT => {
                let key = reader.bytes()?;
                WatchEvent::Put(reader.kv_fields(key)?)
            }
            EVENT_DELETE => WatchEvent::Delete {
                key: reader.bytes()?,
                mod_revision: revision,
            },
            other => return Err(reader.corrupt(&format!("unknown event type {other}"))),
        };
        events.push(event);
    }
    reader.finish()?;
    Ok(events)
}

fn put_kv_fields(out: &mut Vec<u8>, kv: &KeyValue) {
    out.extend_from_slice(&kv.create_revision.to_le_bytes());
    out.extend_from_slice(&kv.mod_revision.to_le_bytes());
    out.extend_from_slice(&kv.version.to_le_bytes());
    out.extend_from_slice(&kv.lease.to_le_bytes());
    put_bytes(out, &kv.value);
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Keys and values are bounded by MAX_REQUEST_BYTES, far below u32::MAX.
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// A bounds-checked cursor over one record.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Reader {
            bytes,
            pos: 0,
            what,
        }
    }

    fn corrupt(&self, why: &str) -> StoreError {
        StoreError::Internal(format!(
            "corrupt {} at byte {} of {}: {why}",
            self.what,
            self.pos,
            self.bytes.len()
        ))
    }

    fn take(&mut self, n: usize) -> StoreResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or_else(|| self.corrupt(&format!("{n} bytes past the end")))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn u8(&mut self) -> StoreResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn i64(&mut self) -> StoreResult<i64> {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(raw))
    }

    fn len(&mut self) -> StoreResult<usize> {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(self.take(4)?);
        usize::try_from(u32::from_le_bytes(raw)).map_err(|_| self.corrupt("length overflow"))
    }

    fn bytes(&mut self) -> StoreResult<Vec<u8>> {
        let len = self.len()?;
        Ok(self.take(len)?.to_vec())
    }

    fn format(&mut self) -> StoreResult<()> {
        match self.u8()? {
            FORMAT_V1 => Ok(()),
            other => Err(self.corrupt(&format!("unknown format {other}"))),
        }
    }

    fn kv_fields(&mut self, key: Vec<u8>) -> StoreResult<KeyValue> {
        Ok(KeyValue {
            key,
            create_revision: self.i64()?,
            mod_revision: self.i64()?,
            version: self.i64()?,
            lease: self.i64()?,
            value: self.bytes()?,
        })
    }

    fn finish(&self) -> StoreResult<()> {
        if self.pos == self.bytes.len() {
            Ok(())
        } else {
            Err(self.corrupt("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> KeyValue {
        KeyValue {
            key: b"brokers/1".to_vec(),
            value: b"endpoint".to_vec(),
            create_revision: 3,
            mod_revision: 9,
            version: 4,
            lease: 0x7f00_0000_0001,
        }
    }

    #[test]
    fn kv_round_trips() {
        let kv = sample();
        assert_eq!(decode_kv(&kv.key, &encode_kv(&kv)), Ok(kv));
    }

    #[test]
    fn events_round_trip() {
        let events = vec![
            WatchEvent::Put(sample()),
            WatchEvent::Delete {
                key: b"x".to_vec(),
                mod_revision: 9,
            },
        ];
        assert_eq!(decode_events(9, &encode_events(&events)), Ok(events));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let kv = encode_kv(&sample());
        for cut in 0..kv.len() {
            assert!(decode_kv(b"k", &kv[..cut]).is_err(), "cut at {cut}");
        }
        let events = encode_events(&[WatchEvent::Put(sample())]);
        for cut in 0..events.len() {
            assert!(decode_events(1, &events[..cut]).is_err(), "cut at {cut}");
        }
        let mut trailing = kv.clone();
        trailing.push(0);
        assert!(decode_kv(b"k", &trailing).is_err());
        assert!(decode_events(1, &[FORMAT_V1, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_kv(b"k", &[9]).is_err());
    }
}
