//! [`PartitionLog`]: one partition's log in its directory — segments,
//! recovery at open, leader and follower appends, reads, truncation, the
//! leader-epoch cache, checkpoints, flush policy and retention.
//!
//! Synchronous and blocking: the async agent calls it from a blocking
//! thread (`spawn_blocking` or a dedicated one). It is `Send + Sync`;
//! reads take `&self`, everything that changes the log takes `&mut self`,
//! so a `RwLock` around it is enough.
//!
//! Guarantees:
//! * The log is always the longest prefix of good batches: recovery cuts
//!   every segment file at its first bad or incomplete batch, and deletes
//!   the segments after a cut segment.
//! * An append is all or nothing: every batch is verified before any byte
//!   is written; a write that fails half-way is cut back (or the log goes
//!   [`LogError::Offline`] when even that fails).
//! * A read returns whole batches, each CRC-verified as it is read.
//! * Offsets increase strictly; epochs in the leader-epoch cache increase
//!   strictly and are persisted before the batches that start them.
//! * Checkpoint files are replaced atomically; none is trusted blindly.
//!
//! It never decides who leads, what the high watermark should be, or when
//! to run retention, compaction or a background flush: the agent does,
//! and passes the clock in (`now_ms`).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ballast_record::header::{set_base_offset, set_partition_leader_epoch};
use ballast_record::{BatchHeader, RecordError, validate_for_append};
use tracing::{debug, info, warn};

use super::checkpoint::{
    self, Checkpoint, HIGH_WATERMARK_FILE, LEADER_EPOCH_FILE, LOG_START_OFFSET_FILE,
    RECOVERY_POINT_FILE,
};
use super::compaction;
use super::config::LogConfig;
use super::epoch::{EpochEndOffset, EpochEntry, LeaderEpochCache};
use super::error::{LogError, LogResult};
use super::producer_state::{KeptBatch, ProducerStates, Verdict};
use super::retention::{self, RetentionReason, SegmentInfo};
use super::segment::{
    self, INDEX_SUFFIX, LOG_SUFFIX, MAX_OFFSET_SPAN, NO_TIMESTAMP, Segment, TIME_INDEX_SUFFIX,
};

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInfo {
    /// Base offset of the first batch appended.
    pub first_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// Largest batch max timestamp appended.
    pub max_timestamp: i64,
    /// Batches appended.
    pub batches: usize,
    /// Records appended (the batches' record counts).
    pub records: u64,
    /// Bytes appended.
    pub bytes: usize,
    /// The log end offset after the append.
    pub log_end_offset: i64,
    /// A new segment was rolled for this append.
    pub rolled: bool,
    /// The flush policy calls for [`PartitionLog::flush`] now (always true
    /// under SYNC_FLUSH: flush before acknowledging).
    pub flush_due: bool,
}

/// What a read returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadResult {
    /// Whole batches, back to back, each CRC-verified; empty when there is
    /// nothing to read.
    pub records: Vec<u8>,
    /// Base offset of the first batch (it may be below the offset asked
    /// for, as in Kafka).
    pub first_offset: Option<i64>,
    /// Offset after the last batch returned (the offset asked for when
    /// nothing was).
    pub next_offset: i64,
    /// The log start offset at the time of the read.
    pub log_start_offset: i64,
    /// The log end offset at the time of the read.
    pub log_end_offset: i64,
    /// The high watermark at the time of the read.
    pub high_watermark: i64,
}

/// What opening the log found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments whose batches were all verified (past the recovery point).
    pub segments_recovered: usize,
    /// Record files cut at a bad batch: (file, position, bytes dropped,
    /// reason).
    pub truncated: Vec<(PathBuf, u64, u64, String)>,
    /// Indexes rebuilt: (record file, reason).
    pub rebuilt_indexes: Vec<(PathBuf, String)>,
    /// Segments deleted because an earlier one was cut or they lay below
    /// the log start offset.
    pub deleted_segments: Vec<i64>,
    /// Stray or leftover files removed or completed (temporary files,
    /// orphan indexes, compaction leftovers).
    pub cleaned_files: Vec<PathBuf>,
    /// Checkpoints that could not be used, and why.
    pub bad_checkpoints: Vec<(String, String)>,
}

/// What [`PartitionLog::apply_retention`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Base offsets of the deleted segments.
    pub deleted_segments: Vec<i64>,
    /// Bytes freed.
    pub deleted_bytes: u64,
    /// The rule that applied.
    pub reason: Option<RetentionReason>,
    /// The log start offset afterwards.
    pub log_start_offset: i64,
}

/// One partition's log. See the module docs for its guarantees.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    /// By base offset; never empty; the last one is the active segment.
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    high_watermark: i64,
    /// Every batch below it is fsynced.
    recovery_point: i64,
    epochs: LeaderEpochCache,
    /// Records appended since the last flush.
    unflushed_messages: u64,
    /// When the oldest unflushed append happened.
    first_unflushed_ms: Option<i64>,
    /// (high watermark, recovery point, log start) as last written.
    persisted: (i64, i64, i64),
    /// Set when an I/O failure left the log in a state it could not undo.
    offline: Option<String>,
    report: RecoveryReport,
    /// Idempotent producers' recent batches (rebuilt from the last
    /// [`PRODUCER_STATE_SEGMENTS`] segments at open and after truncation).
    producers: ProducerStates,
}

/// Segments whose batch headers rebuild the producer state: the active one
/// and the one before (a retry arrives right after its original, which a
/// roll in between leaves in the previous segment).
const PRODUCER_STATE_SEGMENTS: usize = 2;

fn is_not_found(e: &LogError) -> bool {
    matches!(e, LogError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
}

/// A produced batch that [`validate_for_append`] refused: malformed bytes
/// are [`LogError::Corrupt`], well-formed but unacceptable batches
/// [`LogError::InvalidRecord`].
fn refused(batch: usize, position: usize, reason: RecordError) -> LogError {
    match reason {
        RecordError::EmptyBatch
        | RecordError::ControlBatch
        | RecordError::LastOffsetDeltaMismatch { .. }
        | RecordError::OffsetDeltaGap { .. }
        | RecordError::MaxTimestampMismatch { .. }
        | RecordError::UnsupportedCompression(_) => {
            LogError::InvalidRecord(format!("batch #{batch}: {reason}"))
        }
        reason => LogError::Corrupt {
            batch,
            position,
            reason,
        },
    }
}

/// Splits `bytes` into verified batches: (header, position in `bytes`).
fn split_verified(bytes: &[u8]) -> LogResult<Vec<(BatchHeader, usize)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        match BatchHeader::verify(&bytes[pos..]) {
            Ok((h, _)) => {
                out.push((h, pos));
                pos += h.total_len();
            }
            Err(reason) => {
                return Err(LogError::Corrupt {
                    batch: out.len(),
                    position: pos,
                    reason,
                });
            }
        }
    }
    if out.is_empty() {
        return Err(LogError::InvalidRecord("no batches to append".to_owned()));
    }
    if bytes.len() > i32::MAX as usize {
        return Err(LogError::InvalidRecord(format!(
            "{} bytes in one append; at most {} are accepted",
            bytes.len(),
            i32::MAX
        )));
    }
    Ok(out)
}

impl PartitionLog {
    /// Opens (creating when empty) the log in `dir`, recovering it: every
    /// segment from the one holding the recovery point on is verified
    /// batch by batch and cut at the first bad batch; other segments have
    /// their indexes checked and their tail verified; bad or missing
    /// indexes are rebuilt; checkpoints are read, checked against the
    /// segments, and rewritten. What was repaired is in
    /// [`PartitionLog::recovery_report`] (and logged).
    pub fn open(dir: &Path, config: LogConfig) -> LogResult<PartitionLog> {
        fs::create_dir_all(dir).map_err(|e| LogError::io("create", dir, e))?;
        let mut report = RecoveryReport::default();
        report
            .cleaned_files
            .extend(compaction::recover_leftovers(dir)?);
        let bases = list_segments(dir, &mut report)?;

        let recovery_ckpt = read_offset_checkpoint(dir, RECOVERY_POINT_FILE, &mut report)?;
        let start_ckpt = read_offset_checkpoint(dir, LOG_START_OFFSET_FILE, &mut report)?;
        let hw_ckpt = read_offset_checkpoint(dir, HIGH_WATERMARK_FILE, &mut report)?;
        let recovery_point = recovery_ckpt.unwrap_or(0);
        // A brand-new log: nothing on disk yet. Its empty first segment has
        // nothing to sync, and absent checkpoints already mean what it
        // would write (start 0, recovery point 0, high watermark 0), so
        // opening it costs one directory fsync instead of eleven syncs.
        let fresh = bases.is_empty()
            && recovery_ckpt.is_none()
            && start_ckpt.is_none()
            && hw_ckpt.is_none();
        // Verify the segment holding the recovery point and every later one.
        let recover_from = bases
            .iter()
            .rev()
            .find(|b| **b <= recovery_point)
            .copied()
            .unwrap_or(i64::MIN);
        let last_base = bases.last().copied();

        let mut segments: BTreeMap<i64, Segment> = BTreeMap::new();
        let mut scanned_epochs: Vec<(i32, i64)> = Vec::new();
        let mut cut = false;
        for &base in &bases {
            if cut {
                delete_segment_files(dir, base)?;
                report.deleted_segments.push(base);
                continue;
            }
            // The segment holding the recovery point needs a full recovery
            // only when it holds data past it (after a clean close it ends
            // exactly there, and its verified tail is enough).
            let mut recover = base > recover_from;
            let full_check = Some(base) == last_base;
            let (mut seg, mut outcome) =
                Segment::open(dir, base, config.index_interval_bytes, recover, full_check)?;
            if base == recover_from && seg.next_offset() != recovery_point {
                drop(seg);
                recover = true;
                let first = outcome;
                (seg, outcome) =
                    Segment::open(dir, base, config.index_interval_bytes, true, full_check)?;
                outcome.truncated = first.truncated.or(outcome.truncated);
                outcome.rebuilt_index = first.rebuilt_index.or(outcome.rebuilt_index);
            }
            if recover {
                report.segments_recovered += 1;
            }
            if let Some(reason) = outcome.rebuilt_index {
                warn!(segment = %seg.log_path().display(), %reason, "rebuilt segment indexes");
                report
                    .rebuilt_indexes
                    .push((seg.log_path().to_owned(), reason));
            }
            if let Some((pos, bytes, reason)) = outcome.truncated {
                warn!(
                    segment = %seg.log_path().display(),
                    position = pos,
                    bytes,
                    %reason,
                    "truncated a torn or corrupt segment tail"
                );
                report
                    .truncated
                    .push((seg.log_path().to_owned(), pos, bytes, reason));
                cut = Some(base) != last_base;
            }
            scanned_epochs.extend(outcome.epochs);
            if let Some((_, prev)) = segments.iter_mut().next_back()
                && prev.next_offset() > base
            {
                warn!(
                    segment = %prev.log_path().display(),
                    next = base,
                    "segment overlaps the next one; truncating it"
                );
                prev.truncate_to(base)?;
            }
            segments.insert(base, seg);
        }

        let mut log = PartitionLog {
            dir: dir.to_owned(),
            config,
            segments,
            log_start_offset: 0,
            high_watermark: 0,
            recovery_point: 0,
            epochs: LeaderEpochCache::new(),
            unflushed_messages: 0,
            first_unflushed_ms: None,
            persisted: (
                hw_ckpt.unwrap_or(-1),
                recovery_ckpt.unwrap_or(-1),
                start_ckpt.unwrap_or(-1),
            ),
            offline: None,
            report,
            producers: ProducerStates::default(),
        };
        if log.segments.is_empty() {
            let base = start_ckpt.unwrap_or(0);
            log.add_segment(base)?;
        }

        // The log start offset: never below the first segment.
        let first_base = log.first_base();
        let log_start = start_ckpt.unwrap_or(first_base).max(first_base);
        let single_empty_at_start = log.segments.len() == 1
            && log
                .active()
                .is_some_and(|a| a.is_empty() && a.base_offset() == log_start);
        if log_start >= log.log_end_offset() && !single_empty_at_start {
            // Everything is below the log start (an interrupted full
            // truncation or retention): start over, empty, at the log start.
            info!(dir = %dir.display(), log_start, "log is entirely below its start offset; resetting");
            let bases: Vec<i64> = log.segments.keys().copied().collect();
            log.report.deleted_segments.extend(bases);
            log.replace_all_segments(log_start)?;
        } else {
            // Segments entirely below the log start go.
            let doomed: Vec<i64> = log
                .segments
                .iter()
                .take(log.segments.len() - 1)
                .filter(|(b, s)| **b < log_start && s.next_offset() <= log_start)
                .map(|(b, _)| *b)
                .collect();
            for b in doomed {
                if let Some(s) = log.segments.remove(&b) {
                    s.delete()?;
                    log.report.deleted_segments.push(b);
                }
            }
        }
        log.log_start_offset = log_start;

        log.load_epochs(&scanned_epochs)?;
        log.high_watermark = hw_ckpt
            .unwrap_or(log_start)
            .min(log.log_end_offset())
            .max(log.log_start_offset);

        // What was scanned is in the page cache, maybe not on disk: make it
        // durable before the recovery point moves past it.
        if !fresh {
            for (base, seg) in &log.segments {
                if *base >= recover_from || Some(*base) == last_base {
                    seg.sync()?;
                }
            }
            checkpoint::sync_dir(dir)?;
        }
        // Loading read the indexes it checked: close them until needed.
        for seg in log.segments.values_mut() {
            seg.release_index_handles();
        }
        log.recovery_point = log.log_end_offset();
        if fresh {
            // On disk: no checkpoint files, which reads back as these.
            log.persisted = (log.high_watermark, log.recovery_point, log.log_start_offset);
        }
        log.write_checkpoints()?;
        log.rebuild_producers()?;
        info!(
            dir = %dir.display(),
            log_start = log.log_start_offset,
            log_end = log.log_end_offset(),
            high_watermark = log.high_watermark,
            segments = log.segments.len(),
            recovered = log.report.segments_recovered,
            "opened partition log"
        );
        Ok(log)
    }

    /// Loads the leader-epoch cache: the checkpoint when it is valid
    /// (plus the epochs of the batches recovery scanned), else rebuilt
    /// from every batch header; then cut to the log's offsets.
    fn load_epochs(&mut self, scanned: &[(i32, i64)]) -> LogResult<()> {
        let path = self.dir.join(LEADER_EPOCH_FILE);
        let has_data = self.segments.values().any(|s| !s.is_empty());
        let loaded = match checkpoint::read_epochs(&path)? {
            Checkpoint::Valid(entries) => match LeaderEpochCache::from_entries(entries) {
                Ok(c) => Some(c),
                Err(reason) => {
                    self.report
                        .bad_checkpoints
                        .push((LEADER_EPOCH_FILE.to_owned(), reason));
                    None
                }
            },
            Checkpoint::Missing if !has_data => Some(LeaderEpochCache::new()),
            Checkpoint::Missing => {
                self.report.bad_checkpoints.push((
                    LEADER_EPOCH_FILE.to_owned(),
                    "missing while the log holds batches".to_owned(),
                ));
                None
            }
            Checkpoint::Corrupt(reason) => {
                self.report
                    .bad_checkpoints
                    .push((LEADER_EPOCH_FILE.to_owned(), reason));
                None
            }
        };
        let on_disk = loaded.clone();
        let mut cache = match loaded {
            Some(mut c) => {
                for &(epoch, offset) in scanned {
                    assign_if_newer(&mut c, epoch, offset);
                }
                c
            }
            None => {
                warn!(dir = %self.dir.display(), "rebuilding the leader-epoch cache from batch headers");
                let mut c = LeaderEpochCache::new();
                for seg in self.segments.values() {
                    seg.for_each_header(|h| {
                        assign_if_newer(&mut c, h.partition_leader_epoch, h.base_offset);
                    })?;
                }
                c
            }
        };
        cache.truncate_from_start(self.log_start_offset);
        cache.truncate_from_end(self.log_end_offset());
        self.epochs = cache;
        if on_disk.as_ref() != Some(&self.epochs) {
            self.persist_epochs()?;
        }
        Ok(())
    }

    fn persist_epochs(&self) -> LogResult<()> {
        checkpoint::write_epochs(&self.dir.join(LEADER_EPOCH_FILE), self.epochs.entries())
    }

    /// The active (last) segment. There is always one, except after a
    /// failure to recreate the segments, which takes the log offline.
    fn active(&self) -> Option<&Segment> {
        self.segments.values().next_back()
    }

    fn active_mut(&mut self) -> LogResult<&mut Segment> {
        let dir = &self.dir;
        self.segments
            .values_mut()
            .next_back()
            .ok_or_else(|| no_segment(dir))
    }

    fn first_base(&self) -> i64 {
        self.segments
            .keys()
            .next()
            .copied()
            .unwrap_or(self.log_start_offset)
    }

    /// Creates an empty segment at `base` and makes its files durable.
    fn add_segment(&mut self, base: i64) -> LogResult<()> {
        let seg = Segment::create(&self.dir, base, self.config.index_interval_bytes)?;
        checkpoint::sync_dir(&self.dir)?;
        self.segments.insert(base, seg);
        Ok(())
    }

    /// Deletes every segment and starts one, empty, at `base`. A failure
    /// takes the log offline (the segments on disk are then whatever the
    /// failure left; the next open sorts them out).
    fn replace_all_segments(&mut self, base: i64) -> LogResult<()> {
        let old = std::mem::take(&mut self.segments);
        let mut deleted = Ok(());
        for (_, seg) in old {
            if deleted.is_ok() {
                deleted = seg.delete();
            }
        }
        // `add_segment` fsyncs the directory, making the removals durable
        // too.
        match deleted.and_then(|()| self.add_segment(base)) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(format!("could not recreate the segments: {e}"))),
        }
    }

    fn fail(&mut self, reason: String) -> LogError {
        warn!(dir = %self.dir.display(), %reason, "partition log is offline");
        self.offline.get_or_insert(reason.clone());
        LogError::Offline {
            dir: self.dir.clone(),
            reason,
        }
    }

    fn check_online(&self) -> LogResult<()> {
        match &self.offline {
            Some(reason) => Err(LogError::Offline {
                dir: self.dir.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    // ---- appends -------------------------------------------------------

    /// Appends a producer's batches as the leader at `leader_epoch`.
    ///
    /// Every batch is verified first (CRC, sizes, `max.message.bytes`,
    /// records count matching its offsets); if any fails, nothing is
    /// written. Then each batch gets the next offsets (base offset stamped)
    /// and `leader_epoch` as its partition leader epoch (both outside the
    /// CRC), a new epoch is recorded in the leader-epoch cache (persisted
    /// before the batches are written), the active segment is rolled when
    /// the append would pass `segment.bytes`, when the batches are
    /// `segment.ms` newer than the segment's first batch, or when the
    /// offsets would not fit it, and the batches are written as one write.
    ///
    /// `now_ms` is the wall clock, for the flush policy. The append is not
    /// fsynced: when [`AppendInfo::flush_due`] is set the caller calls
    /// [`PartitionLog::flush`] (before acknowledging, for SYNC_FLUSH).
    pub fn append_as_leader(
        &mut self,
        batches: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> LogResult<AppendInfo> {
        self.check_online()?;
        if leader_epoch < 0 {
            return Err(LogError::InvalidRecord(format!(
                "leader epoch {leader_epoch} is negative"
            )));
        }
        if let Some(latest) = self.epochs.latest_epoch()
            && leader_epoch < latest
        {
            return Err(LogError::StaleLeaderEpoch {
                epoch: leader_epoch,
                latest,
            });
        }
        let mut parsed = split_verified(batches)?;
        for (i, (h, pos)) in parsed.iter().enumerate() {
            let size = h.total_len();
            if size > self.config.max_message_bytes {
                return Err(LogError::RecordTooLarge {
                    size,
                    max: self.config.max_message_bytes,
                });
            }
            validate_for_append(&batches[*pos..]).map_err(|e| refused(i, *pos, e))?;
        }
        compaction::check_keys_for_append(&self.config, batches, &parsed)?;
        if let Some(dup) = self.duplicates(&parsed)? {
            return Ok(dup);
        }

        let mut bytes = batches.to_vec();
        let mut next = self.log_end_offset();
        for (h, pos) in &mut parsed {
            set_base_offset(&mut bytes[*pos..], next);
            set_partition_leader_epoch(&mut bytes[*pos..], leader_epoch);
            h.base_offset = next;
            h.partition_leader_epoch = leader_epoch;
            next = h.next_offset();
        }
        let first_offset = self.log_end_offset();
        if self.epochs.assign(leader_epoch, first_offset) {
            self.persist_epochs()?;
        }
        let info = self.append_parsed(&bytes, &parsed)?;
        for (h, _) in &parsed {
            self.producers.record(h);
        }
        self.first_unflushed_ms.get_or_insert(now_ms);
        Ok(AppendInfo {
            flush_due: self.flush_due(now_ms),
            ..info
        })
    }

    /// Appends batches fetched from the leader, which carry their offsets
    /// and partition leader epochs.
    ///
    /// Every batch is verified first; nothing is written if one fails. The
    /// first batch must start at the log end offset and each must follow
    /// the previous one (in a compacted log, gaps between batches are
    /// allowed: compaction removes whole batches), else
    /// [`LogError::UnexpectedAppendOffset`]. A batch whose epoch is below
    /// the log's latest is [`LogError::EpochOutOfOrder`] (truncate first).
    /// New epochs are recorded in the leader-epoch cache, persisted before
    /// the batches are written. Not fsynced; see [`AppendInfo::flush_due`]
    /// (time-based flushing counts from the next
    /// [`PartitionLog::flush_if_due`] for follower appends, which carry no
    /// clock).
    pub fn append_as_follower(&mut self, batches: &[u8]) -> LogResult<AppendInfo> {
        self.check_online()?;
        let parsed = split_verified(batches)?;
        let gaps_allowed = self.config.is_compacted();
        let mut expected = self.log_end_offset();
        let mut latest = self.epochs.latest_epoch();
        for (h, _) in &parsed {
            let continues = if gaps_allowed {
                h.base_offset >= expected
            } else {
                h.base_offset == expected
            };
            if !continues {
                return Err(LogError::UnexpectedAppendOffset {
                    expected,
                    got: h.base_offset,
                });
            }
            let epoch = h.partition_leader_epoch;
            if epoch >= 0 {
                if let Some(l) = latest
                    && epoch < l
                {
                    return Err(LogError::EpochOutOfOrder {
                        offset: h.base_offset,
                        epoch,
                        latest: l,
                    });
                }
                latest = Some(epoch);
            }
            expected = h.next_offset();
        }
        let mut changed = false;
        for (h, _) in &parsed {
            changed |= assign_if_newer(&mut self.epochs, h.partition_leader_epoch, h.base_offset);
        }
        if changed {
            self.persist_epochs()?;
        }
        let info = self.append_parsed(batches, &parsed)?;
        for (h, _) in &parsed {
            self.producers.record(h);
        }
        let flush_due = self.flush_due_at(None);
        Ok(AppendInfo { flush_due, ..info })
    }

    /// Rolls when needed and writes verified batches whose offsets follow
    /// the log.
    fn append_parsed(
        &mut self,
        bytes: &[u8],
        parsed: &[(BatchHeader, usize)],
    ) -> LogResult<AppendInfo> {
        let (first, _) = parsed[0];
        let (last, _) = parsed[parsed.len() - 1];
        let last_offset = last.last_offset();
        if last_offset - first.base_offset > MAX_OFFSET_SPAN {
            return Err(LogError::InvalidRecord(format!(
                "offsets {}..={last_offset} span more than one segment can hold",
                first.base_offset
            )));
        }
        let max_timestamp = parsed
            .iter()
            .map(|(h, _)| h.max_timestamp)
            .max()
            .unwrap_or(NO_TIMESTAMP);
        let rolled = self.maybe_roll(
            first.base_offset,
            last_offset,
            bytes.len() as u64,
            max_timestamp,
        )?;
        if let Err(failure) = self.active_mut()?.append(bytes, parsed) {
            if !failure.undone {
                return Err(self.fail(format!(
                    "append failed and could not be undone: {}",
                    failure.error
                )));
            }
            return Err(failure.error);
        }
        let records: u64 = parsed
            .iter()
            .map(|(h, _)| u64::try_from(h.records_count).unwrap_or(0))
            .sum();
        self.unflushed_messages = self.unflushed_messages.saturating_add(records.max(1));
        Ok(AppendInfo {
            first_offset: first.base_offset,
            last_offset,
            max_timestamp,
            batches: parsed.len(),
            records,
            bytes: bytes.len(),
            log_end_offset: self.log_end_offset(),
            rolled,
            flush_due: false,
        })
    }

    /// Rolls the active segment when the incoming batches (offsets
    /// `first..=last`, `size` bytes, newest timestamp `max_timestamp`)
    /// should not go into it. Returns whether it rolled.
    fn maybe_roll(
        &mut self,
        first: i64,
        last: i64,
        size: u64,
        max_timestamp: i64,
    ) -> LogResult<bool> {
        let segment_bytes = self.config.segment_bytes;
        let segment_ms = self.config.segment_ms;
        let Some(active) = self.active() else {
            return Err(no_segment(&self.dir));
        };
        if active.is_empty() {
            if last - active.base_offset() > MAX_OFFSET_SPAN {
                // A follower jumping far ahead over a compacted gap: move
                // the empty active segment up.
                let old = active.base_offset();
                if let Some(seg) = self.segments.remove(&old) {
                    seg.delete()?;
                }
                self.add_segment(first)?;
                return Ok(true);
            }
            return Ok(false);
        }
        let full = active.size() + size > segment_bytes;
        let old = active
            .first_batch_timestamp()
            .is_some_and(|t| t >= 0 && max_timestamp.saturating_sub(t) > segment_ms);
        let overflow = last - active.base_offset() > MAX_OFFSET_SPAN;
        if !(full || old || overflow) {
            return Ok(false);
        }
        self.roll(first)?;
        Ok(true)
    }

    /// Starts a new active segment at `base` (>= the log end offset).
    fn roll(&mut self, base: i64) -> LogResult<()> {
        let base = base.max(self.log_end_offset());
        if self.segments.contains_key(&base) {
            return Ok(());
        }
        self.add_segment(base)
    }

    // ---- reads ---------------------------------------------------------

    /// Whole batches from the one holding `start_offset` (which may begin
    /// before it): at least one batch when there is one, even if larger
    /// than `max_bytes`, then more while the total stays within
    /// `max_bytes`; never a batch holding an offset at or above
    /// `max_offset_exclusive` (the high watermark, for consumers) — so
    /// with a bound nothing may be returned. Reads stop at a segment's end.
    ///
    /// `start_offset` must be in `[log start, log end]`, else
    /// [`LogError::OffsetOutOfRange`]; at the log end the result is empty.
    /// Every batch returned passed its CRC check as it was read; a bad
    /// batch on disk is [`LogError::CorruptOnDisk`] when it is the first,
    /// and ends the read before it otherwise. A torn batch is never
    /// returned (recovery cut it, and the CRC check would refuse it).
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: Option<i64>,
    ) -> LogResult<ReadResult> {
        let log_end = self.log_end_offset();
        if start_offset < self.log_start_offset || start_offset > log_end {
            return Err(LogError::OffsetOutOfRange {
                requested: start_offset,
                log_start: self.log_start_offset,
                log_end,
            });
        }
        let mut result = ReadResult {
            records: Vec::new(),
            first_offset: None,
            next_offset: start_offset,
            log_start_offset: self.log_start_offset,
            log_end_offset: log_end,
            high_watermark: self.high_watermark,
        };
        let bound = max_offset_exclusive.map_or(log_end, |m| m.min(log_end));
        if start_offset >= bound {
            return Ok(result);
        }
        let from = self
            .segments
            .range(..=start_offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        for seg in self.segments.range(from..).map(|(_, s)| s) {
            if let Some(r) = seg.read(start_offset, max_bytes, Some(bound))? {
                if r.bytes.is_empty() {
                    break;
                }
                result.records = r.bytes;
                result.first_offset = Some(r.first_offset);
                result.next_offset = r.next_offset;
                break;
            }
            if seg.next_offset() >= bound {
                break;
            }
        }
        Ok(result)
    }

    /// The first record at or after the log start whose timestamp is >=
    /// `timestamp` (Kafka's ListOffsets by time): (its offset, its
    /// timestamp). Segments are searched oldest first, each from its time
    /// index's hint on; within a batch, record by record, as Kafka does
    /// (so a batch holding earlier-stamped records first answers with the
    /// first record that qualifies, not the batch's base offset).
    pub fn offset_for_timestamp(&self, timestamp: i64) -> LogResult<Option<(i64, i64)>> {
        for seg in self.segments.values() {
            if seg.max_timestamp() < timestamp || seg.next_offset() <= self.log_start_offset {
                continue;
            }
            if let Some(found) = seg.find_timestamp(timestamp, self.log_start_offset)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    // ---- offsets, epochs, truncation -----------------------------------

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The configuration in force.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration (a topic config change). Index interval
    /// changes apply to new segments.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// First offset held.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// Offset the next batch gets.
    pub fn log_end_offset(&self) -> i64 {
        self.active()
            .map_or(self.log_start_offset, Segment::next_offset)
    }

    /// Whether `h` overtook an earlier batch of its idempotent producer
    /// (see [`ProducerStates::is_ahead`]).
    pub fn sequence_ahead(&self, h: &BatchHeader) -> bool {
        self.producers.is_ahead(h)
    }

    /// The high watermark.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Every batch below it is fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Raises the high watermark to `offset`, clamped to the log end
    /// offset; a lower value is ignored (the high watermark only goes down
    /// by truncation). Returns the high watermark. Persisted by
    /// [`PartitionLog::write_checkpoints`].
    pub fn set_high_watermark(&mut self, offset: i64) -> i64 {
        let o = offset.min(self.log_end_offset());
        if o > self.high_watermark {
            self.high_watermark = o;
        }
        self.high_watermark
    }

    /// Bytes in every segment.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.keys().copied().collect()
    }

    /// The latest epoch in the leader-epoch cache.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// The leader-epoch cache's entries, oldest first.
    pub fn epoch_entries(&self) -> &[EpochEntry] {
        self.epochs.entries()
    }

    /// The leader-epoch cache.
    pub fn epoch_cache(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    /// OffsetsForLeaderEpoch, as the leader answers it (KIP-279): see
    /// [`LeaderEpochCache::end_offset_for_epoch`].
    pub fn end_offset_for_epoch(&self, requested: i32) -> EpochEndOffset {
        self.epochs
            .end_offset_for_epoch(requested, self.log_end_offset())
    }

    /// What recovery found and repaired when the log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Removes every batch holding an offset >= `offset` (a batch holding
    /// `offset` goes entirely, so the log end offset may end up below
    /// `offset`), durably, and the leader-epoch entries starting at or
    /// after the new log end; clamps the high watermark and recovery point.
    /// An offset at or past the log end changes nothing; one below the log
    /// start empties the log ([`PartitionLog::truncate_fully_and_start_at`]).
    /// Returns the log end offset.
    pub fn truncate_to(&mut self, offset: i64) -> LogResult<i64> {
        self.check_online()?;
        if offset < 0 {
            return Err(LogError::InvalidRecord(format!(
                "cannot truncate to negative offset {offset}"
            )));
        }
        if offset >= self.log_end_offset() {
            return Ok(self.log_end_offset());
        }
        if offset < self.log_start_offset {
            self.truncate_fully_and_start_at(offset)?;
            return Ok(self.log_end_offset());
        }
        info!(dir = %self.dir.display(), offset, log_end = self.log_end_offset(), "truncating log");
        // Segments starting after `offset` go; the one holding it stays
        // (there is one: offset >= log start >= the first base).
        let later: Vec<i64> = self.segments.range(offset + 1..).map(|(b, _)| *b).collect();
        for b in later.into_iter().rev() {
            if let Some(seg) = self.segments.remove(&b) {
                seg.delete()?;
            }
        }
        checkpoint::sync_dir(&self.dir)?;
        self.active_mut()?.truncate_to(offset)?;
        let log_end = self.log_end_offset();
        if self.epochs.truncate_from_end(log_end) {
            self.persist_epochs()?;
        }
        self.high_watermark = self.high_watermark.min(log_end);
        self.recovery_point = self.recovery_point.min(log_end);
        self.write_checkpoints()?;
        self.rebuild_producers()?;
        Ok(log_end)
    }

    /// Empties the log and starts it again at `offset` (a follower whose
    /// log end is below the leader's log start, or whose whole log
    /// diverged): every segment goes, one empty segment starts at
    /// `offset`, the leader-epoch cache is cleared, and the log start, high
    /// watermark and recovery point become `offset`.
    ///
    /// Crash-safe: the log is first truncated durably to at most `offset`
    /// (when it holds data at or above it), then the log start checkpoint
    /// is set, then the segments are replaced; a crash in between reopens
    /// either as a prefix of the old log or as the empty log at `offset`.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> LogResult<()> {
        self.check_online()?;
        if offset < 0 {
            return Err(LogError::InvalidRecord(format!(
                "cannot start the log at negative offset {offset}"
            )));
        }
        info!(dir = %self.dir.display(), offset, "truncating the log fully");
        let first_base = self.first_base();
        if offset < self.log_end_offset() {
            // Drops every segment but the first and empties it when
            // `offset` is at or below the first base.
            let cut = offset.max(first_base);
            let later: Vec<i64> = self.segments.range(cut + 1..).map(|(b, _)| *b).collect();
            for b in later.into_iter().rev() {
                if self.segments.len() == 1 {
                    break;
                }
                if let Some(seg) = self.segments.remove(&b) {
                    seg.delete()?;
                }
            }
            checkpoint::sync_dir(&self.dir)?;
            self.active_mut()?.truncate_to(cut)?;
        }
        checkpoint::write_offset(&self.dir.join(LOG_START_OFFSET_FILE), offset)?;
        self.persisted.2 = offset;
        self.replace_all_segments(offset)?;
        self.log_start_offset = offset;
        self.high_watermark = offset;
        self.recovery_point = offset;
        self.unflushed_messages = 0;
        self.first_unflushed_ms = None;
        self.epochs.clear();
        self.persist_epochs()?;
        self.producers.clear();
        self.write_checkpoints()
    }

    /// Rebuilds the idempotent producers' state from the batch headers of
    /// the last [`PRODUCER_STATE_SEGMENTS`] segments.
    fn rebuild_producers(&mut self) -> LogResult<()> {
        self.producers.clear();
        let from: Vec<i64> = self
            .segments
            .keys()
            .rev()
            .take(PRODUCER_STATE_SEGMENTS)
            .copied()
            .collect();
        for base in from.into_iter().rev() {
            if let Some(seg) = self.segments.get(&base) {
                let producers = &mut self.producers;
                seg.for_each_header(|h| producers.record(h))?;
            }
        }
        Ok(())
    }

    /// When the incoming batches are retries of batches the log holds
    /// (every one a duplicate by its producer's sequences), what they were
    /// appended as; nothing is written then. A mix of duplicates and new
    /// batches, a gap in a producer's sequences, or an old producer epoch is
    /// refused (module `producer_state`).
    fn duplicates(&self, parsed: &[(BatchHeader, usize)]) -> LogResult<Option<AppendInfo>> {
        // Batches of one producer within the request follow each other.
        let mut in_request: Vec<(i64, i16, i32)> = Vec::new();
        let mut dups: Vec<(BatchHeader, KeptBatch)> = Vec::new();
        let mut fresh = 0usize;
        for (h, _) in parsed {
            if let Some(&(_, epoch, last)) = in_request.iter().find(|(p, ..)| *p == h.producer_id)
                && h.producer_id >= 0
            {
                let follows = h.producer_epoch == epoch
                    && h.base_sequence == if last == i32::MAX { 0 } else { last + 1 };
                if !follows {
                    return Err(LogError::OutOfOrderSequence {
                        producer_id: h.producer_id,
                        epoch: h.producer_epoch,
                        last,
                        got: h.base_sequence,
                    });
                }
            } else {
                match self.producers.check(h)? {
                    Verdict::Duplicate(k) => {
                        dups.push((*h, k));
                        continue;
                    }
                    Verdict::Append => {}
                }
            }
            fresh += 1;
            if h.producer_id >= 0 {
                in_request.retain(|(p, ..)| *p != h.producer_id);
                in_request.push((h.producer_id, h.producer_epoch, h.last_sequence()));
            }
        }
        match (dups.first(), dups.last()) {
            (Some((_, first)), Some((_, last))) if fresh == 0 => {
                debug!(
                    first_offset = first.base_offset,
                    last_offset = last.last_offset,
                    "duplicate batches from an idempotent producer: answered, not written"
                );
                Ok(Some(AppendInfo {
                    first_offset: first.base_offset,
                    last_offset: last.last_offset,
                    max_timestamp: NO_TIMESTAMP,
                    batches: 0,
                    records: 0,
                    bytes: 0,
                    log_end_offset: self.log_end_offset(),
                    rolled: false,
                    flush_due: false,
                }))
            }
            // Part of the request was written before, part not: not a
            // retry of one append.
            (Some((h, k)), _) => Err(LogError::OutOfOrderSequence {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                last: k.last_seq,
                got: h.base_sequence,
            }),
            _ => Ok(None),
        }
    }

    // ---- flush and checkpoints -----------------------------------------

    /// True when the flush policy calls for a flush at `now_ms`.
    pub fn flush_due(&self, now_ms: i64) -> bool {
        self.flush_due_at(Some(now_ms))
    }

    /// The flush policy; without a clock, only by count and SYNC_FLUSH.
    fn flush_due_at(&self, now_ms: Option<i64>) -> bool {
        if self.unflushed_messages == 0 {
            return false;
        }
        let policy = &self.config.flush;
        if policy.sync_every_append || self.unflushed_messages >= policy.messages {
            return true;
        }
        // i64::MAX ms (Kafka's Long.MAX_VALUE) and above: never by time.
        let interval_ms = i64::try_from(policy.interval.as_millis()).unwrap_or(i64::MAX);
        match (now_ms, self.first_unflushed_ms) {
            (Some(now), Some(t)) if interval_ms < i64::MAX => now.saturating_sub(t) >= interval_ms,
            _ => false,
        }
    }

    /// fsyncs every segment holding data past the recovery point (record
    /// files and indexes) and moves the recovery point to the log end
    /// offset. The recovery-point file is written by
    /// [`PartitionLog::write_checkpoints`].
    pub fn flush(&mut self) -> LogResult<()> {
        self.check_online()?;
        let log_end = self.log_end_offset();
        if self.recovery_point >= log_end && self.unflushed_messages == 0 {
            return Ok(());
        }
        let from = self
            .segments
            .range(..=self.recovery_point)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        for seg in self.segments.range(from..).map(|(_, s)| s) {
            seg.sync()?;
        }
        self.recovery_point = log_end;
        self.unflushed_messages = 0;
        self.first_unflushed_ms = None;
        Ok(())
    }

    /// For a background task (ASYNC_FLUSH, `flush.ms`): flushes when the
    /// policy calls for it at `now_ms`. Returns whether it flushed.
    pub fn flush_if_due(&mut self, now_ms: i64) -> LogResult<bool> {
        if self.unflushed_messages > 0 && self.first_unflushed_ms.is_none() {
            // Follower appends carry no clock: start counting now.
            self.first_unflushed_ms = Some(now_ms);
        }
        if self.flush_due(now_ms) {
            self.flush()?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Writes the `high-watermark`, `recovery-point` and `log-start-offset`
    /// files that changed since they were last written (each atomically:
    /// temp file, fsync, rename, fsync of the directory).
    pub fn write_checkpoints(&mut self) -> LogResult<()> {
        let (hw, rp, start) = self.persisted;
        if hw != self.high_watermark {
            checkpoint::write_offset(&self.dir.join(HIGH_WATERMARK_FILE), self.high_watermark)?;
            self.persisted.0 = self.high_watermark;
        }
        if rp != self.recovery_point {
            checkpoint::write_offset(&self.dir.join(RECOVERY_POINT_FILE), self.recovery_point)?;
            self.persisted.1 = self.recovery_point;
        }
        if start != self.log_start_offset {
            checkpoint::write_offset(&self.dir.join(LOG_START_OFFSET_FILE), self.log_start_offset)?;
            self.persisted.2 = self.log_start_offset;
        }
        Ok(())
    }

    /// Flushes and writes the checkpoints: after a clean close, the next
    /// open verifies nothing but the segments' tails.
    pub fn close(mut self) -> LogResult<()> {
        self.flush()?;
        self.write_checkpoints()
    }

    // ---- retention -----------------------------------------------------

    /// Deletes the oldest segments that retention (`retention.ms`,
    /// `retention.bytes`, or lying below the log start) allows at `now_ms`
    /// (see [`retention::plan`]), rolling the active segment first when it
    /// goes too, and advances the log start offset (persisted before any
    /// file is removed) and the leader-epoch cache's first entry.
    pub fn apply_retention(&mut self, now_ms: i64) -> LogResult<RetentionOutcome> {
        self.check_online()?;
        let infos = self
            .segments
            .values()
            .map(|s| {
                let largest_timestamp = if s.max_timestamp() >= 0 {
                    s.max_timestamp()
                } else {
                    s.last_modified_ms()?
                };
                Ok(SegmentInfo {
                    base_offset: s.base_offset(),
                    next_offset: s.next_offset(),
                    size: s.size(),
                    largest_timestamp,
                })
            })
            .collect::<LogResult<Vec<_>>>()?;
        let plan = retention::plan(
            &infos,
            &self.config,
            self.log_start_offset,
            self.high_watermark,
            now_ms,
        );
        let mut outcome = RetentionOutcome {
            log_start_offset: self.log_start_offset,
            reason: plan.reason,
            ..RetentionOutcome::default()
        };
        if plan.delete == 0 {
            return Ok(outcome);
        }
        if plan.roll_first {
            let end = self.log_end_offset();
            self.roll(end)?;
        }
        let doomed: Vec<i64> = self.segments.keys().take(plan.delete).copied().collect();
        let new_start = self
            .segments
            .keys()
            .nth(plan.delete)
            .copied()
            .unwrap_or_else(|| self.log_end_offset())
            .max(self.log_start_offset);
        checkpoint::write_offset(&self.dir.join(LOG_START_OFFSET_FILE), new_start)?;
        self.persisted.2 = new_start;
        self.log_start_offset = new_start;
        for b in doomed {
            if let Some(seg) = self.segments.remove(&b) {
                outcome.deleted_bytes += seg.size();
                seg.delete()?;
                outcome.deleted_segments.push(b);
            }
        }
        checkpoint::sync_dir(&self.dir)?;
        if self.epochs.truncate_from_start(new_start) {
            self.persist_epochs()?;
        }
        self.recovery_point = self.recovery_point.max(new_start);
        self.high_watermark = self.high_watermark.max(new_start);
        outcome.log_start_offset = new_start;
        info!(
            dir = %self.dir.display(),
            deleted = outcome.deleted_segments.len(),
            bytes = outcome.deleted_bytes,
            reason = ?outcome.reason,
            log_start = new_start,
            "retention deleted segments"
        );
        Ok(outcome)
    }

    // ---- for compaction --------------------------------------------------

    pub(super) fn segments(&self) -> &BTreeMap<i64, Segment> {
        &self.segments
    }

    pub(super) fn segments_mut(&mut self) -> &mut BTreeMap<i64, Segment> {
        &mut self.segments
    }
}

fn no_segment(dir: &Path) -> LogError {
    LogError::Offline {
        dir: dir.to_owned(),
        reason: "the log has no segment".to_owned(),
    }
}

/// Assigns `epoch` at `offset` when it is newer than the latest epoch
/// (the rule for batches read back from disk or from the leader).
fn assign_if_newer(cache: &mut LeaderEpochCache, epoch: i32, offset: i64) -> bool {
    if epoch >= 0 && cache.latest_epoch().is_none_or(|l| epoch > l) {
        cache.assign(epoch, offset)
    } else {
        false
    }
}

fn read_offset_checkpoint(
    dir: &Path,
    name: &str,
    report: &mut RecoveryReport,
) -> LogResult<Option<i64>> {
    match checkpoint::read_offset(&dir.join(name))? {
        Checkpoint::Valid(o) => Ok(Some(o)),
        Checkpoint::Missing => Ok(None),
        Checkpoint::Corrupt(reason) => {
            warn!(dir = %dir.display(), file = name, %reason, "ignoring a corrupt checkpoint");
            report.bad_checkpoints.push((name.to_owned(), reason));
            Ok(None)
        }
    }
}

fn delete_segment_files(dir: &Path, base: i64) -> LogResult<()> {
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        segment::remove_if_present(&segment::file_path(dir, base, suffix))?;
    }
    Ok(())
}

/// Lists the segments in `dir` (by their `.log` files), removing
/// temporary files and indexes without a record file.
fn list_segments(dir: &Path, report: &mut RecoveryReport) -> LogResult<Vec<i64>> {
    let entries = fs::read_dir(dir).map_err(|e| LogError::io("list", dir, e))?;
    let mut bases = Vec::new();
    let mut indexes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("list", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.ends_with(".tmp") {
            remove_stray(&path, report)?;
            continue;
        }
        let Some((stem, suffix)) = name.split_at_checked(20) else {
            continue;
        };
        let Some(base) = segment::parse_stem(stem) else {
            continue;
        };
        match suffix {
            LOG_SUFFIX => bases.push(base),
            INDEX_SUFFIX | TIME_INDEX_SUFFIX => indexes.push((base, path)),
            _ => {}
        }
    }
    bases.sort_unstable();
    for (base, path) in indexes {
        if bases.binary_search(&base).is_err() {
            remove_stray(&path, report)?;
        }
    }
    Ok(bases)
}

fn remove_stray(path: &Path, report: &mut RecoveryReport) -> LogResult<()> {
    match segment::remove_if_present(path) {
        Ok(()) => {
            report.cleaned_files.push(path.to_owned());
            Ok(())
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}
