//! The two sparse indexes of a segment, as files of fixed-size big-endian
//! entries:
//! * [`OffsetIndex`] (`.index`): relative offset `u32` + file position
//!   `u32`, one entry every `index.interval.bytes` of batches, keyed by
//!   the batch's base offset;
//! * [`TimeIndex`] (`.timeindex`): the largest timestamp so far `i64` +
//!   the relative offset `u32` of the batch holding it, appended beside an
//!   offset entry when that timestamp grew.
//!
//! Entries are strictly increasing in both fields. Lookups are binary
//! searches with positioned reads (`pread`, so `&self` and no mmap); a file
//! grows by one entry per append and a partial trailing entry (torn write)
//! is trimmed on load. An index is only an accelerator: the segment checks
//! it at load ([`OffsetIndex::check`], [`TimeIndex::check`]) and rebuilds it
//! from the record file when it is missing or wrong. This module never
//! reads the record file.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::error::{LogError, LogResult};

fn open_rw(path: &Path) -> LogResult<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| LogError::io("open index", path, e))
}

/// A file of `N`-byte entries. Its handle is opened on first use, not at
/// load: a partition that takes no writes and serves no lookups holds only
/// its record file open (one descriptor per idle partition instead of
/// three).
#[derive(Debug)]
struct IndexFile<const N: usize> {
    path: PathBuf,
    file: OnceLock<File>,
    entries: u64,
}

impl<const N: usize> IndexFile<N> {
    /// Opens (creating when missing) the file, counts its entries and
    /// closes it again; returns it and whether it had a partial trailing
    /// entry, which is trimmed.
    fn open(path: &Path) -> LogResult<(Self, bool)> {
        let file = open_rw(path)?;
        let len = file
            .metadata()
            .map_err(|e| LogError::io("stat index", path, e))?
            .len();
        let entries = len / N as u64;
        let torn = len % N as u64 != 0;
        if torn {
            file.set_len(entries * N as u64)
                .map_err(|e| LogError::io("trim index", path, e))?;
        }
        let f = IndexFile {
            path: path.to_owned(),
            file: OnceLock::new(),
            entries,
        };
        Ok((f, torn))
    }

    /// The handle, opened now if it is not yet.
    fn file(&self) -> LogResult<&File> {
        if let Some(f) = self.file.get() {
            return Ok(f);
        }
        // Two readers may race here: one handle wins, the other is closed.
        let _ = self.file.set(open_rw(&self.path)?);
        self.file
            .get()
            .ok_or_else(|| LogError::io("open index", &self.path, io::Error::other("not opened")))
    }

    fn read(&self, i: u64) -> LogResult<[u8; N]> {
        let mut buf = [0u8; N];
        self.file()?
            .read_exact_at(&mut buf, i * N as u64)
            .map_err(|e| LogError::io("read index", &self.path, e))?;
        Ok(buf)
    }

    /// Every entry, read sequentially (for the full check).
    fn read_all(&self) -> LogResult<Vec<[u8; N]>> {
        if self.entries == 0 {
            return Ok(Vec::new());
        }
        let mut reader = BufReader::with_capacity(
            64 * 1024,
            PositionedReader {
                file: self.file()?,
                pos: 0,
            },
        );
        let mut out = Vec::with_capacity(usize::try_from(self.entries).unwrap_or(0));
        for _ in 0..self.entries {
            let mut buf = [0u8; N];
            reader
                .read_exact(&mut buf)
                .map_err(|e| LogError::io("read index", &self.path, e))?;
            out.push(buf);
        }
        Ok(out)
    }

    fn append(&mut self, entry: [u8; N]) -> LogResult<()> {
        self.file()?
            .write_all_at(&entry, self.entries * N as u64)
            .map_err(|e| LogError::io("append to index", &self.path, e))?;
        self.entries += 1;
        Ok(())
    }

    fn truncate_entries(&mut self, n: u64) -> LogResult<()> {
        if n >= self.entries {
            return Ok(());
        }
        self.file()?
            .set_len(n * N as u64)
            .map_err(|e| LogError::io("truncate index", &self.path, e))?;
        self.entries = n;
        Ok(())
    }

    /// Closes the handle (the next use opens it again). Unsynced writes
    /// stay in the page cache, as after any close.
    fn release(&mut self) {
        self.file.take();
    }

    /// Makes this process's writes durable. A handle never opened has
    /// written nothing (the trim at load, if any, is synced by the
    /// segment's recovery), so there is nothing to sync.
    fn sync(&self) -> LogResult<()> {
        match self.file.get() {
            Some(f) => f
                .sync_data()
                .map_err(|e| LogError::io("fsync index", &self.path, e)),
            None => Ok(()),
        }
    }

    /// The largest `i` whose key is <= `target` (by `key`), if any.
    fn floor(&self, target: i64, key: impl Fn(&[u8; N]) -> i64) -> LogResult<Option<u64>> {
        let (mut lo, mut hi) = (0u64, self.entries);
        // Invariant: entries [0, lo) have key <= target, [hi, len) > target.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if key(&self.read(mid)?) <= target {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo.checked_sub(1))
    }
}

/// Positioned reads from a file handle without touching its cursor (so
/// that readers holding `&File` never interfere).
#[derive(Debug)]
pub(super) struct PositionedReader<'a> {
    /// The file.
    pub(super) file: &'a File,
    /// Next byte to read.
    pub(super) pos: u64,
}

impl Read for PositionedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_be_bytes(a)
}

/// One offset index entry, with the offset made absolute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetPosition {
    /// Base offset of the batch.
    pub offset: i64,
    /// Its byte position in the record file.
    pub position: u32,
}

/// The sparse offset index of one segment.
#[derive(Debug)]
pub struct OffsetIndex {
    inner: IndexFile<8>,
    base_offset: i64,
    last: Option<OffsetPosition>,
}

impl OffsetIndex {
    /// Opens (or creates) the index of the segment at `base_offset`.
    /// Returns it and whether a partial trailing entry was trimmed.
    pub fn open(path: &Path, base_offset: i64) -> LogResult<(Self, bool)> {
        let (inner, torn) = IndexFile::open(path)?;
        let mut index = OffsetIndex {
            inner,
            base_offset,
            last: None,
        };
        index.last = index.entry(index.inner.entries.checked_sub(1))?;
        Ok((index, torn))
    }

    fn decode(&self, b: &[u8; 8]) -> OffsetPosition {
        OffsetPosition {
            offset: self.base_offset + i64::from(be_u32(&b[0..4])),
            position: be_u32(&b[4..8]),
        }
    }

    fn entry(&self, i: Option<u64>) -> LogResult<Option<OffsetPosition>> {
        match i {
            Some(i) => Ok(Some(self.decode(&self.inner.read(i)?))),
            None => Ok(None),
        }
    }

    /// Number of entries.
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.inner.entries
    }

    /// The last entry.
    pub fn last(&self) -> Option<OffsetPosition> {
        self.last
    }

    /// The index file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The entry with the largest offset <= `target`, or the start of the
    /// segment when there is none.
    pub fn lookup(&self, target: i64) -> LogResult<OffsetPosition> {
        let rel = target - self.base_offset;
        let found = if rel < 0 {
            None
        } else {
            self.inner.floor(rel, |b| i64::from(be_u32(&b[0..4])))?
        };
        Ok(self.entry(found)?.unwrap_or(OffsetPosition {
            offset: self.base_offset,
            position: 0,
        }))
    }

    /// Appends an entry; it must be after the last one in both fields.
    pub fn append(&mut self, offset: i64, position: u32) -> LogResult<()> {
        let rel = u32::try_from(offset - self.base_offset).map_err(|_| {
            LogError::InvalidRecord(format!(
                "offset {offset} does not fit the index of segment {}",
                self.base_offset
            ))
        })?;
        if let Some(last) = self.last
            && (offset <= last.offset || position <= last.position)
        {
            // Never write an unsorted index; the caller skips the entry.
            return Ok(());
        }
        let mut e = [0u8; 8];
        e[0..4].copy_from_slice(&rel.to_be_bytes());
        e[4..8].copy_from_slice(&position.to_be_bytes());
        self.inner.append(e)?;
        self.last = Some(OffsetPosition { offset, position });
        Ok(())
    }

    /// Drops the entries for offsets >= `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> LogResult<()> {
        let keep = match self.inner.floor(offset - self.base_offset - 1, |b| {
            i64::from(be_u32(&b[0..4]))
        })? {
            Some(i) => i + 1,
            None => 0,
        };
        self.inner.truncate_entries(keep)?;
        self.last = self.entry(keep.checked_sub(1))?;
        Ok(())
    }

    /// Drops every entry.
    pub fn reset(&mut self) -> LogResult<()> {
        self.inner.truncate_entries(0)?;
        self.last = None;
        Ok(())
    }

    /// Full check: strictly increasing offsets and positions, every
    /// position below `log_size`. Returns the problem, if any.
    pub fn check(&self, log_size: u64) -> LogResult<Option<String>> {
        let mut prev: Option<OffsetPosition> = None;
        for raw in self.inner.read_all()? {
            let e = self.decode(&raw);
            if u64::from(e.position) >= log_size.max(1) {
                return Ok(Some(format!(
                    "entry {e:?} points past the record file ({log_size} bytes)"
                )));
            }
            if let Some(p) = prev
                && (e.offset <= p.offset || e.position <= p.position)
            {
                return Ok(Some(format!("entry {e:?} does not follow {p:?}")));
            }
            prev = Some(e);
        }
        Ok(None)
    }

    /// Closes the file handle until the next lookup or write needs it.
    pub fn release(&mut self) {
        self.inner.release();
    }

    /// fsync.
    pub fn sync(&self) -> LogResult<()> {
        self.inner.sync()
    }
}

/// One time index entry, with the offset made absolute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    /// The largest timestamp in the segment up to `offset`.
    pub timestamp: i64,
    /// Base offset of the batch holding it.
    pub offset: i64,
}

/// The sparse time index of one segment.
#[derive(Debug)]
pub struct TimeIndex {
    inner: IndexFile<12>,
    base_offset: i64,
    last: Option<TimestampOffset>,
}

impl TimeIndex {
    /// Opens (or creates) the index of the segment at `base_offset`.
    /// Returns it and whether a partial trailing entry was trimmed.
    pub fn open(path: &Path, base_offset: i64) -> LogResult<(Self, bool)> {
        let (inner, torn) = IndexFile::open(path)?;
        let mut index = TimeIndex {
            inner,
            base_offset,
            last: None,
        };
        index.last = index.entry(index.inner.entries.checked_sub(1))?;
        Ok((index, torn))
    }

    fn decode(&self, b: &[u8; 12]) -> TimestampOffset {
        TimestampOffset {
            timestamp: be_i64(&b[0..8]),
            offset: self.base_offset + i64::from(be_u32(&b[8..12])),
        }
    }

    fn entry(&self, i: Option<u64>) -> LogResult<Option<TimestampOffset>> {
        match i {
            Some(i) => Ok(Some(self.decode(&self.inner.read(i)?))),
            None => Ok(None),
        }
    }

    /// Number of entries.
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.inner.entries
    }

    /// The last entry.
    pub fn last(&self) -> Option<TimestampOffset> {
        self.last
    }

    /// The index file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The entry with the largest timestamp strictly below `timestamp`:
    /// no batch at or before its offset holds a timestamp >= `timestamp`,
    /// so a search for the first such record can start after it. `None`
    /// when the search must start at the segment's beginning.
    pub fn lookup_below(&self, timestamp: i64) -> LogResult<Option<TimestampOffset>> {
        if timestamp == i64::MIN {
            return Ok(None);
        }
        let found = self.inner.floor(timestamp - 1, |b| be_i64(&b[0..8]))?;
        self.entry(found)
    }

    /// Appends an entry when `timestamp` is above the last entry's (and
    /// `offset` after it); otherwise does nothing.
    pub fn maybe_append(&mut self, timestamp: i64, offset: i64) -> LogResult<()> {
        if let Some(last) = self.last
            && (timestamp <= last.timestamp || offset <= last.offset)
        {
            return Ok(());
        }
        let rel = u32::try_from(offset - self.base_offset).map_err(|_| {
            LogError::InvalidRecord(format!(
                "offset {offset} does not fit the time index of segment {}",
                self.base_offset
            ))
        })?;
        let mut e = [0u8; 12];
        e[0..8].copy_from_slice(&timestamp.to_be_bytes());
        e[8..12].copy_from_slice(&rel.to_be_bytes());
        self.inner.append(e)?;
        self.last = Some(TimestampOffset { timestamp, offset });
        Ok(())
    }

    /// Drops the entries for offsets >= `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> LogResult<()> {
        // Offsets are increasing too: binary search on them.
        let keep = match self.inner.floor(offset - self.base_offset - 1, |b| {
            i64::from(be_u32(&b[8..12]))
        })? {
            Some(i) => i + 1,
            None => 0,
        };
        self.inner.truncate_entries(keep)?;
        self.last = self.entry(keep.checked_sub(1))?;
        Ok(())
    }

    /// Drops every entry.
    pub fn reset(&mut self) -> LogResult<()> {
        self.inner.truncate_entries(0)?;
        self.last = None;
        Ok(())
    }

    /// Full check: strictly increasing timestamps and offsets, offsets
    /// below `next_offset`. Returns the problem, if any.
    pub fn check(&self, next_offset: i64) -> LogResult<Option<String>> {
        let mut prev: Option<TimestampOffset> = None;
        for raw in self.inner.read_all()? {
            let e = self.decode(&raw);
            if e.offset >= next_offset.max(self.base_offset + 1) {
                return Ok(Some(format!(
                    "entry {e:?} is past the segment's end offset {next_offset}"
                )));
            }
            if let Some(p) = prev
                && (e.offset <= p.offset || e.timestamp <= p.timestamp)
            {
                return Ok(Some(format!("entry {e:?} does not follow {p:?}")));
            }
            prev = Some(e);
        }
        Ok(None)
    }

    /// Closes the file handle until the next lookup or write needs it.
    pub fn release(&mut self) {
        self.inner.release();
    }

    /// fsync.
    pub fn sync(&self) -> LogResult<()> {
        self.inner.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_lookup_append_truncate_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.index");
        let (mut idx, torn) = OffsetIndex::open(&p, 100).unwrap();
        assert!(!torn);
        assert_eq!(
            idx.lookup(150).unwrap(),
            OffsetPosition {
                offset: 100,
                position: 0
            }
        );
        for (o, pos) in [(110, 1000), (120, 2000), (130, 3000)] {
            idx.append(o, pos).unwrap();
        }
        // Out-of-order appends are ignored.
        idx.append(125, 4000).unwrap();
        idx.append(140, 2500).unwrap();
        assert_eq!(idx.len(), 3);
        let at = |idx: &OffsetIndex, t| idx.lookup(t).unwrap();
        assert_eq!(at(&idx, 99).offset, 100);
        assert_eq!(at(&idx, 109).position, 0);
        assert_eq!(at(&idx, 110).position, 1000);
        assert_eq!(at(&idx, 125).position, 2000);
        assert_eq!(at(&idx, 1_000_000).position, 3000);
        assert_eq!(idx.check(3001).unwrap(), None);
        assert!(idx.check(3000).unwrap().is_some());

        idx.truncate_to(120).unwrap();
        assert_eq!(idx.len(), 1);
        assert_eq!(idx.last().unwrap().offset, 110);
        idx.append(120, 2100).unwrap();
        drop(idx);

        // A torn trailing entry is trimmed on open.
        let mut bytes = std::fs::read(&p).unwrap();
        bytes.extend_from_slice(&[1, 2, 3]);
        std::fs::write(&p, &bytes).unwrap();
        let (idx, torn) = OffsetIndex::open(&p, 100).unwrap();
        assert!(torn);
        assert_eq!(idx.len(), 2);
        assert_eq!(at(&idx, 121).position, 2100);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 16);
    }

    #[test]
    fn offset_index_check_finds_unsorted_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.index");
        let mut raw = Vec::new();
        for (rel, pos) in [(5u32, 100u32), (3, 200)] {
            raw.extend_from_slice(&rel.to_be_bytes());
            raw.extend_from_slice(&pos.to_be_bytes());
        }
        std::fs::write(&p, &raw).unwrap();
        let (idx, _) = OffsetIndex::open(&p, 0).unwrap();
        assert!(idx.check(1000).unwrap().is_some());
    }

    #[test]
    fn time_index_lookup_below_and_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.timeindex");
        let (mut idx, _) = TimeIndex::open(&p, 50).unwrap();
        assert_eq!(idx.lookup_below(1000).unwrap(), None);
        idx.maybe_append(1000, 55).unwrap();
        idx.maybe_append(1000, 60).unwrap(); // not larger: skipped
        idx.maybe_append(2000, 60).unwrap();
        idx.maybe_append(3000, 70).unwrap();
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.lookup_below(1000).unwrap(), None);
        assert_eq!(idx.lookup_below(1001).unwrap().unwrap().offset, 55);
        assert_eq!(idx.lookup_below(2000).unwrap().unwrap().offset, 55);
        assert_eq!(idx.lookup_below(2500).unwrap().unwrap().offset, 60);
        assert_eq!(idx.lookup_below(i64::MAX).unwrap().unwrap().offset, 70);
        assert_eq!(idx.check(71).unwrap(), None);
        assert!(idx.check(70).unwrap().is_some());
        idx.truncate_to(60).unwrap();
        assert_eq!(
            idx.last(),
            Some(TimestampOffset {
                timestamp: 1000,
                offset: 55
            })
        );
        drop(idx);
        let (idx, _) = TimeIndex::open(&p, 50).unwrap();
        assert_eq!(idx.len(), 1);
    }
}
