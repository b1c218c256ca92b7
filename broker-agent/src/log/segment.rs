//! One segment of a partition log: `<base offset, 20 digits>.log` (record
//! batches back to back, exactly as on the wire), its sparse offset index
//! (`.index`) and time index (`.timeindex`).
//!
//! A segment appends verified batches, reads whole batches from a
//! position, translates offsets and timestamps to positions through its
//! indexes, truncates to an offset, fsyncs, and at load recovers: it scans
//! batches (length, magic, CRC, offsets increasing) from the start (full
//! recovery) or from its last index entry (the tail), truncates the file
//! at the first bad or incomplete batch, and rebuilds indexes that are
//! missing or fail their checks.
//!
//! A segment never decides when to roll, what to delete or which offsets
//! to assign: [`super::PartitionLog`] does. It never hands out a batch
//! whose CRC it has not just verified.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use ballast_record::{BATCH_HEADER_LEN, Batch, BatchHeader, RecordError};

use super::error::{LogError, LogResult};
use super::index::{OffsetIndex, PositionedReader, TimeIndex};

/// Suffix of the record file.
pub const LOG_SUFFIX: &str = ".log";
/// Suffix of the offset index.
pub const INDEX_SUFFIX: &str = ".index";
/// Suffix of the time index.
pub const TIME_INDEX_SUFFIX: &str = ".timeindex";
/// Kafka's `RecordBatch.NO_TIMESTAMP`.
pub const NO_TIMESTAMP: i64 = -1;
/// Largest span of offsets one segment holds (relative offsets are 32-bit
/// in the index; Kafka keeps them below `Int.MaxValue`).
pub const MAX_OFFSET_SPAN: i64 = i32::MAX as i64;

/// `<base offset>` as 20 zero-padded digits, the stem of a segment's files.
pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// The base offset named by a file stem, if it is one.
pub fn parse_stem(stem: &str) -> Option<i64> {
    if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
        stem.parse().ok()
    } else {
        None
    }
}

/// `<dir>/<stem><suffix>`.
pub fn file_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{}{suffix}", file_stem(base_offset)))
}

/// What a scan or append keeps track of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ScanState {
    /// Offset after the last batch (the base offset when empty).
    next_offset: i64,
    /// Largest batch max timestamp ([`NO_TIMESTAMP`] when none).
    max_timestamp: i64,
    /// Base offset of the batch holding it.
    offset_of_max_timestamp: i64,
    /// Bytes appended since the last offset index entry.
    bytes_since_index: u64,
}

/// What loading or recovering a segment found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoadOutcome {
    /// The indexes were rebuilt, and why.
    pub rebuilt_index: Option<String>,
    /// The record file was truncated at this position, dropping this many
    /// bytes, for this reason.
    pub truncated: Option<(u64, u64, String)>,
    /// (partition leader epoch, base offset) of each scanned batch whose
    /// epoch differs from the previous batch's.
    pub epochs: Vec<(i32, i64)>,
}

/// Whole batches read from a segment.
#[derive(Debug, Default)]
pub struct SegmentRead {
    /// The batches, back to back.
    pub bytes: Vec<u8>,
    /// Base offset of the first batch.
    pub first_offset: i64,
    /// Offset after the last batch.
    pub next_offset: i64,
}

/// One segment: files, indexes and what is known about its batches.
#[derive(Debug)]
pub struct Segment {
    base_offset: i64,
    log_path: PathBuf,
    log: File,
    size: u64,
    indexes: Indexes,
    state: ScanState,
    /// Max timestamp of the first batch: the reference for age-based roll.
    first_batch_timestamp: Option<i64>,
}

fn empty_state(base_offset: i64) -> ScanState {
    ScanState {
        next_offset: base_offset,
        max_timestamp: NO_TIMESTAMP,
        offset_of_max_timestamp: base_offset,
        bytes_since_index: 0,
    }
}

fn open_log_file(path: &Path, create: bool) -> LogResult<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
        .map_err(|e| LogError::io("open segment", path, e))
}

/// A segment's two indexes and the interval between entries.
#[derive(Debug)]
struct Indexes {
    offset: OffsetIndex,
    time: TimeIndex,
    interval: u32,
}

impl Indexes {
    /// Adds the index entries an append of batch `h` at `pos` calls for,
    /// and advances `state` past it. Appends and scans both go through
    /// here, so a rebuilt index equals the one appends wrote.
    fn index_batch(&mut self, pos: u64, h: &BatchHeader, state: &mut ScanState) -> LogResult<()> {
        if h.max_timestamp > state.max_timestamp {
            state.max_timestamp = h.max_timestamp;
            state.offset_of_max_timestamp = h.base_offset;
        }
        if state.bytes_since_index >= u64::from(self.interval) {
            let position = u32::try_from(pos).map_err(|_| {
                LogError::InvalidRecord(format!("segment position {pos} does not fit the index"))
            })?;
            self.offset.append(h.base_offset, position)?;
            self.time
                .maybe_append(state.max_timestamp, state.offset_of_max_timestamp)?;
            state.bytes_since_index = 0;
        }
        state.bytes_since_index += h.total_len() as u64;
        state.next_offset = h.next_offset();
        Ok(())
    }
}

/// Where a scan stopped.
#[derive(Debug)]
struct ScanEnd {
    /// Position after the last good batch.
    end: u64,
    state: ScanState,
    /// Why the scan stopped before the end of the file.
    stopped: Option<String>,
    /// Whether the very first batch scanned was bad.
    first_bad: bool,
    epochs: Vec<(i32, i64)>,
}

/// An append that failed; `undone` tells whether the segment is back to
/// its state before the append (otherwise it may hold a partial write and
/// must not be appended to again).
#[derive(Debug)]
pub struct AppendFailure {
    /// The failure.
    pub error: LogError,
    /// Whether the partial append was undone.
    pub undone: bool,
}

impl Segment {
    /// Creates an empty segment at `base_offset` in `dir` (existing files
    /// of that name are emptied).
    pub fn create(dir: &Path, base_offset: i64, index_interval: u32) -> LogResult<Segment> {
        let log_path = file_path(dir, base_offset, LOG_SUFFIX);
        let log = open_log_file(&log_path, true)?;
        log.set_len(0)
            .map_err(|e| LogError::io("truncate segment", &log_path, e))?;
        let (mut offset_index, _) =
            OffsetIndex::open(&file_path(dir, base_offset, INDEX_SUFFIX), base_offset)?;
        offset_index.reset()?;
        let (mut time_index, _) =
            TimeIndex::open(&file_path(dir, base_offset, TIME_INDEX_SUFFIX), base_offset)?;
        time_index.reset()?;
        Ok(Segment {
            base_offset,
            log_path,
            log,
            size: 0,
            indexes: Indexes {
                offset: offset_index,
                time: time_index,
                interval: index_interval,
            },
            state: empty_state(base_offset),
            first_batch_timestamp: None,
        })
    }

    /// Opens the existing segment at `base_offset`.
    ///
    /// With `recover`, every batch is verified from the start and the
    /// indexes are rebuilt. Otherwise the indexes are checked (fully when
    /// `full_index_check`, else their last entries) and the batches after
    /// the last offset index entry are verified; a failed check rebuilds
    /// the indexes with a full recovery. Either way the record file ends
    /// at its last good batch.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        index_interval: u32,
        recover: bool,
        full_index_check: bool,
    ) -> LogResult<(Segment, LoadOutcome)> {
        let log_path = file_path(dir, base_offset, LOG_SUFFIX);
        let log = open_log_file(&log_path, false)?;
        let size = log
            .metadata()
            .map_err(|e| LogError::io("stat segment", &log_path, e))?
            .len();
        let index_path = file_path(dir, base_offset, INDEX_SUFFIX);
        let time_path = file_path(dir, base_offset, TIME_INDEX_SUFFIX);
        let missing = if !index_path.exists() {
            Some(format!("{} is missing", index_path.display()))
        } else if !time_path.exists() {
            Some(format!("{} is missing", time_path.display()))
        } else {
            None
        };
        let (offset_index, torn_offset) = OffsetIndex::open(&index_path, base_offset)?;
        let (time_index, torn_time) = TimeIndex::open(&time_path, base_offset)?;
        let mut seg = Segment {
            base_offset,
            log_path,
            log,
            size,
            indexes: Indexes {
                offset: offset_index,
                time: time_index,
                interval: index_interval,
            },
            state: empty_state(base_offset),
            first_batch_timestamp: None,
        };
        let outcome = if recover {
            seg.recover_all()?
        } else {
            let problem = if missing.is_some() {
                missing
            } else if torn_offset || torn_time {
                Some("an index ends with a partial entry".to_owned())
            } else {
                None
            };
            let loaded = match problem {
                Some(p) => Err(p),
                None => seg.load_tail(full_index_check)?,
            };
            match loaded {
                Ok(outcome) => outcome,
                Err(reason) => {
                    let mut o = seg.recover_all()?;
                    o.rebuilt_index = Some(reason);
                    o
                }
            }
        };
        seg.first_batch_timestamp = seg.read_first_batch_timestamp()?;
        Ok((seg, outcome))
    }

    /// Verifies every batch from the start, rebuilding both indexes, and
    /// truncates the record file at the first bad batch.
    fn recover_all(&mut self) -> LogResult<LoadOutcome> {
        self.indexes.offset.reset()?;
        self.indexes.time.reset()?;
        let end = self.scan(0, empty_state(self.base_offset))?;
        self.finish_scan(end)
    }

    /// Checks the indexes and verifies the batches after the last offset
    /// index entry. `Err(reason)` when the indexes cannot be trusted.
    fn load_tail(&mut self, full_check: bool) -> LogResult<Result<LoadOutcome, String>> {
        if full_check && let Some(p) = self.indexes.offset.check(self.size)? {
            return Ok(Err(p));
        }
        let last_time = self.indexes.time.last();
        let (pos, mut state) = match self.indexes.offset.last() {
            Some(e) => {
                if u64::from(e.position) >= self.size {
                    return Ok(Err(format!(
                        "last index entry {e:?} points past the record file"
                    )));
                }
                (
                    u64::from(e.position),
                    ScanState {
                        next_offset: e.offset,
                        ..empty_state(self.base_offset)
                    },
                )
            }
            None => (0, empty_state(self.base_offset)),
        };
        match (self.indexes.offset.last(), last_time) {
            (None, Some(_)) => return Ok(Err("time index without offset index".to_owned())),
            (Some(o), Some(t)) if t.offset > o.offset => {
                return Ok(Err(format!(
                    "time index entry {t:?} is past the last offset index entry {o:?}"
                )));
            }
            _ => {}
        }
        if let Some(t) = last_time {
            state.max_timestamp = t.timestamp;
            state.offset_of_max_timestamp = t.offset;
        }
        let end = self.scan(pos, state)?;
        if pos > 0 && end.first_bad {
            return Ok(Err(
                "the last index entry does not point at a good batch".to_owned()
            ));
        }
        if full_check && let Some(p) = self.indexes.time.check(end.state.next_offset)? {
            return Ok(Err(p));
        }
        Ok(Ok(self.finish_scan(end)?))
    }

    /// Applies a scan's result: truncates the record file after the last
    /// good batch (durably) and takes the scanned state.
    fn finish_scan(&mut self, end: ScanEnd) -> LogResult<LoadOutcome> {
        let mut outcome = LoadOutcome {
            epochs: end.epochs,
            ..LoadOutcome::default()
        };
        if end.end < self.size {
            let reason = end.stopped.unwrap_or_else(|| "trailing bytes".to_owned());
            self.log
                .set_len(end.end)
                .map_err(|e| LogError::io("truncate segment", &self.log_path, e))?;
            self.log
                .sync_data()
                .map_err(|e| LogError::io("fsync segment", &self.log_path, e))?;
            outcome.truncated = Some((end.end, self.size - end.end, reason));
            self.size = end.end;
        }
        self.state = end.state;
        Ok(outcome)
    }

    /// Reads and verifies batches from `pos` to the end of the file,
    /// adding index entries as appends would. Stops at the first batch
    /// that is incomplete, malformed, fails its CRC, or does not follow
    /// the previous one's offsets.
    fn scan(&mut self, pos: u64, mut state: ScanState) -> LogResult<ScanEnd> {
        let size = self.size;
        let mut reader = BufReader::with_capacity(
            1 << 20,
            PositionedReader {
                file: &self.log,
                pos,
            },
        );
        let mut at = pos;
        let mut stopped = None;
        let mut first_bad = false;
        let mut epochs = Vec::new();
        let mut last_epoch = None;
        let mut batch = Vec::new();
        while at < size {
            let problem = match read_verified(&mut reader, size - at, &mut batch) {
                Ok(Ok(h)) => match check_follows(&h, self.base_offset, state.next_offset) {
                    None => {
                        self.indexes.index_batch(at, &h, &mut state)?;
                        if last_epoch != Some(h.partition_leader_epoch) {
                            epochs.push((h.partition_leader_epoch, h.base_offset));
                            last_epoch = Some(h.partition_leader_epoch);
                        }
                        at += h.total_len() as u64;
                        continue;
                    }
                    Some(p) => p,
                },
                Ok(Err(e)) => e.to_string(),
                Err(e) => return Err(LogError::io("read segment", &self.log_path, e)),
            };
            first_bad = at == pos;
            stopped = Some(format!("bad batch at position {at}: {problem}"));
            break;
        }
        Ok(ScanEnd {
            end: at,
            state,
            stopped,
            first_bad,
            epochs,
        })
    }

    fn read_first_batch_timestamp(&self) -> LogResult<Option<i64>> {
        if self.size == 0 {
            return Ok(None);
        }
        Ok(self.header_at(0)?.ok().map(|h| h.max_timestamp))
    }

    /// The header of the batch at `pos` (unverified: only sizes and magic).
    fn header_at(&self, pos: u64) -> LogResult<Result<BatchHeader, RecordError>> {
        let avail = self.size.saturating_sub(pos).min(BATCH_HEADER_LEN as u64) as usize;
        let mut buf = [0u8; BATCH_HEADER_LEN];
        self.log
            .read_exact_at(&mut buf[..avail], pos)
            .map_err(|e| LogError::io("read segment", &self.log_path, e))?;
        Ok(BatchHeader::parse(&buf[..avail]))
    }

    fn corrupt(&self, position: u64, reason: RecordError) -> LogError {
        LogError::CorruptOnDisk {
            path: self.log_path.clone(),
            position,
            reason,
        }
    }

    /// Position and header of the first batch whose last offset is >=
    /// `target`, if any.
    fn locate(&self, target: i64) -> LogResult<Option<(u64, BatchHeader)>> {
        let entry = self.indexes.offset.lookup(target)?;
        let mut pos = u64::from(entry.position);
        if pos != 0 {
            let trusted = matches!(self.header_at(pos)?, Ok(h) if h.base_offset == entry.offset);
            if !trusted {
                tracing::warn!(
                    segment = %self.log_path.display(),
                    ?entry,
                    "offset index entry does not point at its batch; scanning from the start"
                );
                pos = 0;
            }
        }
        while pos < self.size {
            let h = self.header_at(pos)?.map_err(|e| self.corrupt(pos, e))?;
            if h.last_offset() >= target {
                return Ok(Some((pos, h)));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Whole batches from the first one holding an offset >= `start_offset`
    /// (it may start before it): at least that batch, then more while the
    /// total stays within `max_bytes`, never a batch with an offset >=
    /// `max_offset_exclusive`. Every batch returned passed its CRC check
    /// just now; a bad first batch is an error, a bad later batch ends the
    /// read before it. `None` when the segment has no such batch.
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: Option<i64>,
    ) -> LogResult<Option<SegmentRead>> {
        let Some((pos, first)) = self.locate(start_offset)? else {
            return Ok(None);
        };
        if max_offset_exclusive.is_some_and(|m| first.last_offset() >= m) {
            return Ok(None);
        }
        let want = max_bytes.max(first.total_len()) as u64;
        let len = want.min(self.size - pos) as usize;
        let mut bytes = vec![0u8; len];
        self.log
            .read_exact_at(&mut bytes, pos)
            .map_err(|e| LogError::io("read segment", &self.log_path, e))?;
        let mut off = 0usize;
        let mut next_offset = first.base_offset;
        while off < bytes.len() {
            let h = match BatchHeader::verify(&bytes[off..]) {
                Ok((h, _)) => h,
                // Cut by max_bytes: stop before it.
                Err(RecordError::Truncated { .. }) if off > 0 => break,
                Err(e) if off == 0 => return Err(self.corrupt(pos, e)),
                Err(e) => {
                    tracing::error!(
                        segment = %self.log_path.display(),
                        position = pos + off as u64,
                        error = %e,
                        "corrupt batch on disk; ending the read before it"
                    );
                    break;
                }
            };
            if max_offset_exclusive.is_some_and(|m| h.last_offset() >= m) {
                break;
            }
            off += h.total_len();
            next_offset = h.next_offset();
        }
        bytes.truncate(off);
        Ok(Some(SegmentRead {
            bytes,
            first_offset: first.base_offset,
            next_offset,
        }))
    }

    /// Kafka's `findOffsetByTimestamp`: the first record, from the time
    /// index's hint on, whose timestamp is >= `timestamp` and whose offset
    /// is >= `start_offset`: its (offset, timestamp). Only batches whose max
    /// timestamp reaches `timestamp` are decoded.
    pub fn find_timestamp(
        &self,
        timestamp: i64,
        start_offset: i64,
    ) -> LogResult<Option<(i64, i64)>> {
        let mut pos = match self.indexes.time.lookup_below(timestamp)? {
            Some(e) => match self.locate(e.offset)? {
                Some((p, _)) => p,
                None => return Ok(None),
            },
            None => 0,
        };
        let mut bytes = Vec::new();
        while pos < self.size {
            let h = self.header_at(pos)?.map_err(|e| self.corrupt(pos, e))?;
            if h.max_timestamp >= timestamp && h.last_offset() >= start_offset {
                bytes.resize(h.total_len(), 0);
                self.log
                    .read_exact_at(&mut bytes, pos)
                    .map_err(|e| LogError::io("read segment", &self.log_path, e))?;
                let batch = Batch::parse(&bytes).map_err(|e| self.corrupt(pos, e))?;
                for r in batch.records() {
                    let r = r.map_err(|e| self.corrupt(pos, e))?;
                    if r.timestamp >= timestamp && r.offset >= start_offset {
                        return Ok(Some((r.offset, r.timestamp)));
                    }
                }
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Calls `f` with every batch of the segment (position, header,
    /// bytes), in order, each verified.
    pub fn for_each_batch(
        &self,
        mut f: impl FnMut(u64, &BatchHeader, &[u8]) -> LogResult<()>,
    ) -> LogResult<()> {
        let mut reader = BufReader::with_capacity(
            1 << 20,
            PositionedReader {
                file: &self.log,
                pos: 0,
            },
        );
        let mut at = 0u64;
        let mut batch = Vec::new();
        while at < self.size {
            let h = match read_verified(&mut reader, self.size - at, &mut batch) {
                Ok(Ok(h)) => h,
                Ok(Err(e)) => return Err(self.corrupt(at, e)),
                Err(e) => return Err(LogError::io("read segment", &self.log_path, e)),
            };
            f(at, &h, &batch)?;
            at += h.total_len() as u64;
        }
        Ok(())
    }

    /// Calls `f` with the header of every batch, in order (unverified:
    /// sizes and magic only). Stops at the first unparsable header.
    pub fn for_each_header(&self, mut f: impl FnMut(&BatchHeader)) -> LogResult<()> {
        let mut pos = 0u64;
        while pos < self.size {
            let Ok(h) = self.header_at(pos)? else {
                break;
            };
            f(&h);
            pos += h.total_len() as u64;
        }
        Ok(())
    }

    /// Appends `bytes`, whose batches (verified by the caller, offsets
    /// following this segment's) are `batches` at the given byte offsets
    /// inside `bytes`. On failure the append is undone when possible.
    pub fn append(
        &mut self,
        bytes: &[u8],
        batches: &[(BatchHeader, usize)],
    ) -> Result<(), AppendFailure> {
        let start = self.size;
        let saved = self.state;
        let result = self
            .log
            .write_all_at(bytes, start)
            .map_err(|e| LogError::io("append to segment", &self.log_path, e))
            .and_then(|()| {
                let mut state = self.state;
                for (h, rel) in batches {
                    self.indexes
                        .index_batch(start + *rel as u64, h, &mut state)?;
                }
                Ok(state)
            });
        match result {
            Ok(state) => {
                self.state = state;
                self.size = start + bytes.len() as u64;
                if self.first_batch_timestamp.is_none() {
                    self.first_batch_timestamp = batches.first().map(|(h, _)| h.max_timestamp);
                }
                Ok(())
            }
            Err(error) => {
                let undone = self.undo(start, saved).is_ok();
                Err(AppendFailure { error, undone })
            }
        }
    }

    fn undo(&mut self, size: u64, state: ScanState) -> LogResult<()> {
        self.log
            .set_len(size)
            .map_err(|e| LogError::io("truncate segment", &self.log_path, e))?;
        self.indexes.offset.truncate_to(state.next_offset)?;
        self.indexes.time.truncate_to(state.next_offset)?;
        self.size = size;
        self.state = state;
        Ok(())
    }

    /// Removes every batch holding an offset >= `offset` (the batch holding
    /// `offset` goes entirely), durably. Returns the bytes removed.
    pub fn truncate_to(&mut self, offset: i64) -> LogResult<u64> {
        let Some((pos, h)) = self.locate(offset)? else {
            return Ok(0);
        };
        let removed = self.size - pos;
        self.log
            .set_len(pos)
            .map_err(|e| LogError::io("truncate segment", &self.log_path, e))?;
        self.log
            .sync_data()
            .map_err(|e| LogError::io("fsync segment", &self.log_path, e))?;
        self.indexes.offset.truncate_to(h.base_offset)?;
        self.indexes.time.truncate_to(h.base_offset)?;
        self.size = pos;
        // Recompute what is known from the new tail.
        let (start, mut state) = match self.indexes.offset.last() {
            Some(e) => (
                u64::from(e.position),
                ScanState {
                    next_offset: e.offset,
                    ..empty_state(self.base_offset)
                },
            ),
            None => (0, empty_state(self.base_offset)),
        };
        if let Some(t) = self.indexes.time.last() {
            state.max_timestamp = t.timestamp;
            state.offset_of_max_timestamp = t.offset;
        }
        let end = self.scan(start, state)?;
        self.finish_scan(end)?;
        if self.size == 0 {
            self.first_batch_timestamp = None;
        }
        Ok(removed)
    }

    /// Closes the index files' handles (they reopen on the next lookup or
    /// write): after loading, an idle segment holds one descriptor.
    pub fn release_index_handles(&mut self) {
        self.indexes.offset.release();
        self.indexes.time.release();
    }

    /// fsyncs the record file and both indexes.
    pub fn sync(&self) -> LogResult<()> {
        self.log
            .sync_data()
            .map_err(|e| LogError::io("fsync segment", &self.log_path, e))?;
        self.indexes.offset.sync()?;
        self.indexes.time.sync()
    }

    /// Deletes the segment's files (the record file first: a segment
    /// without it is gone; orphan indexes are removed at the next open).
    pub fn delete(self) -> LogResult<()> {
        let paths = [
            self.log_path.clone(),
            self.indexes.offset.path().to_owned(),
            self.indexes.time.path().to_owned(),
        ];
        drop(self);
        for p in paths {
            remove_if_present(&p)?;
        }
        Ok(())
    }

    /// First offset the segment may hold (its file name).
    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Offset after its last batch (`base_offset` when empty).
    pub fn next_offset(&self) -> i64 {
        self.state.next_offset
    }

    /// Bytes in the record file.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// True when it holds no batch.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Largest batch max timestamp ([`NO_TIMESTAMP`] when none).
    pub fn max_timestamp(&self) -> i64 {
        self.state.max_timestamp
    }

    /// Max timestamp of the first batch (the age reference for rolling).
    pub fn first_batch_timestamp(&self) -> Option<i64> {
        self.first_batch_timestamp
    }

    /// The record file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The record file's modification time in ms since the epoch (the
    /// retention age of a segment whose batches carry no timestamp).
    pub fn last_modified_ms(&self) -> LogResult<i64> {
        let modified = self
            .log
            .metadata()
            .and_then(|m| m.modified())
            .map_err(|e| LogError::io("stat segment", &self.log_path, e))?;
        Ok(modified
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0))
    }
}

/// Removes a file, succeeding when it is already gone.
pub fn remove_if_present(path: &Path) -> LogResult<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(LogError::io("remove", path, e)),
        _ => Ok(()),
    }
}

/// Why a batch does not follow the previous one, if it does not.
fn check_follows(h: &BatchHeader, base_offset: i64, next_offset: i64) -> Option<String> {
    if h.base_offset < next_offset {
        Some(format!(
            "base offset {} overlaps the previous batch (next offset {next_offset})",
            h.base_offset
        ))
    } else if h.base_offset < base_offset || h.last_offset() - base_offset > MAX_OFFSET_SPAN {
        Some(format!(
            "offsets [{}, {}] do not belong in segment {base_offset}",
            h.base_offset,
            h.last_offset()
        ))
    } else {
        None
    }
}

/// Reads one batch from `reader` into `batch` (which then holds exactly
/// it) and verifies it. `avail` bounds what may be read. The outer error
/// is I/O; the inner one says why the bytes are not a good batch.
fn read_verified(
    reader: &mut impl Read,
    avail: u64,
    batch: &mut Vec<u8>,
) -> io::Result<Result<BatchHeader, RecordError>> {
    batch.clear();
    if avail < BATCH_HEADER_LEN as u64 {
        return Ok(Err(RecordError::Truncated {
            needed: BATCH_HEADER_LEN,
            have: avail as usize,
        }));
    }
    batch.resize(BATCH_HEADER_LEN, 0);
    reader.read_exact(batch)?;
    let h = match BatchHeader::parse(batch) {
        Ok(h) => h,
        Err(e) => return Ok(Err(e)),
    };
    let total = h.total_len();
    if (total as u64) > avail {
        return Ok(Err(RecordError::Truncated {
            needed: total,
            have: avail as usize,
        }));
    }
    batch.resize(total, 0);
    reader.read_exact(&mut batch[BATCH_HEADER_LEN..])?;
    Ok(BatchHeader::verify(batch).map(|(h, _)| h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ballast_record::BatchBuilder;
    use ballast_record::header::set_base_offset;

    fn batch_at(base: i64, n: usize, ts: i64) -> (Vec<u8>, BatchHeader) {
        let mut b = BatchBuilder::new();
        for i in 0..n {
            b.append(ts + i as i64, Some(b"k"), Some(b"value"), &[])
                .unwrap();
        }
        let mut bytes = b.build();
        set_base_offset(&mut bytes, base);
        let (h, _) = BatchHeader::verify(&bytes).unwrap();
        (bytes, h)
    }

    #[test]
    fn stems() {
        assert_eq!(file_stem(42), "00000000000000000042");
        assert_eq!(parse_stem("00000000000000000042"), Some(42));
        assert_eq!(parse_stem("0000000000000000042"), None);
        assert_eq!(parse_stem("0000000000000000004x"), None);
    }

    #[test]
    fn rebuilt_indexes_equal_appended_ones() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 100, 150).unwrap();
        let mut next = 100;
        for i in 0..20 {
            let (bytes, h) = batch_at(next, 1 + i % 3, 1_000 - i as i64 * 7 + (i as i64 % 4) * 50);
            seg.append(&bytes, &[(h, 0)]).unwrap();
            next = h.next_offset();
        }
        assert_eq!(seg.next_offset(), next);
        let index = fs::read(file_path(dir.path(), 100, INDEX_SUFFIX)).unwrap();
        let time = fs::read(file_path(dir.path(), 100, TIME_INDEX_SUFFIX)).unwrap();
        assert!(index.len() >= 8 * 4);
        let (max_ts, size) = (seg.max_timestamp(), seg.size());
        drop(seg);
        fs::remove_file(file_path(dir.path(), 100, INDEX_SUFFIX)).unwrap();
        fs::write(file_path(dir.path(), 100, TIME_INDEX_SUFFIX), b"junk").unwrap();
        let (seg, outcome) = Segment::open(dir.path(), 100, 150, false, true).unwrap();
        assert!(outcome.rebuilt_index.is_some());
        assert_eq!(outcome.truncated, None);
        assert_eq!(
            fs::read(file_path(dir.path(), 100, INDEX_SUFFIX)).unwrap(),
            index
        );
        assert_eq!(
            fs::read(file_path(dir.path(), 100, TIME_INDEX_SUFFIX)).unwrap(),
            time
        );
        assert_eq!(
            (seg.max_timestamp(), seg.size(), seg.next_offset()),
            (max_ts, size, next)
        );
        // A clean reopen loads the same state from the tail alone.
        drop(seg);
        let (seg, outcome) = Segment::open(dir.path(), 100, 150, false, false).unwrap();
        assert_eq!(outcome.rebuilt_index, None);
        assert_eq!(
            (seg.max_timestamp(), seg.size(), seg.next_offset()),
            (max_ts, size, next)
        );
    }

    #[test]
    fn batches_that_do_not_follow_are_cut_at_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(dir.path(), 0, 0).unwrap();
        let (a, ha) = batch_at(0, 2, 10);
        seg.append(&a, &[(ha, 0)]).unwrap();
        drop(seg);
        // A valid batch whose offsets go backwards.
        let (b, _) = batch_at(1, 1, 10);
        let mut bytes = fs::read(file_path(dir.path(), 0, LOG_SUFFIX)).unwrap();
        bytes.extend_from_slice(&b);
        fs::write(file_path(dir.path(), 0, LOG_SUFFIX), &bytes).unwrap();
        let (seg, outcome) = Segment::open(dir.path(), 0, 0, true, true).unwrap();
        let (pos, dropped, reason) = outcome.truncated.unwrap();
        assert_eq!((pos, dropped), (a.len() as u64, b.len() as u64));
        assert!(reason.contains("overlaps"), "{reason}");
        assert_eq!(seg.next_offset(), 2);
    }
}
