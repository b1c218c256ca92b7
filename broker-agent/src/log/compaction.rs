//! Log compaction (`cleanup.policy=compact`, Kafka's log cleaner): keep
//! the latest record per key, drop the records it supersedes, drop
//! tombstones (null values) once they are older than
//! `delete.retention.ms`, and drop keyless records. The offsets topic
//! depends on it.
//!
//! Scope: the *cleanable* segments, every segment but the active one that
//! lies entirely below the high watermark. Offsets never change: a rebuilt
//! batch keeps its base offset and last offset delta
//! ([`ballast_record::retain_records`]); a batch with no record left goes.
//! Compressed and control batches are kept as they are (they cannot be
//! filtered yet).
//!
//! Each cleaned segment replaces its original crash-safely:
//! 1. the kept batches are written to `<base>.log.cleaned` and fsynced;
//! 2. it is renamed to `<base>.log.swap` and the directory fsynced — from
//!    here the cleaned version wins;
//! 3. the old indexes are removed and `.swap` is renamed over `<base>.log`,
//!    the directory fsynced, and the segment reopened (indexes rebuilt).
//!
//! [`recover_leftovers`], run at open, deletes `.cleaned` files (step 1
//! interrupted) and finishes step 3 for `.swap` files. A cleaned segment
//! left empty is removed unless it is the first. This module never touches
//! the active segment, data at or above the high watermark, or offsets.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use ballast_record::{Batch, BatchHeader, RecordError, Retained, retain_records};
use tracing::{info, warn};

use super::checkpoint;
use super::config::LogConfig;
use super::error::{LogError, LogResult};
use super::partition_log::PartitionLog;
use super::segment::{self, INDEX_SUFFIX, LOG_SUFFIX, Segment, TIME_INDEX_SUFFIX};

/// Suffix of a cleaned record file being written.
pub const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a complete cleaned record file waiting to replace the
/// original.
pub const SWAP_SUFFIX: &str = ".swap";

/// What one compaction pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionOutcome {
    /// Segments looked at (the cleanable ones).
    pub segments_scanned: usize,
    /// Segments rewritten.
    pub segments_cleaned: usize,
    /// Segments removed because nothing was left in them.
    pub segments_removed: usize,
    /// Records dropped because a later record has the same key.
    pub superseded_removed: u64,
    /// Expired tombstones dropped.
    pub tombstones_removed: u64,
    /// Keyless records dropped.
    pub keyless_removed: u64,
    /// Bytes of the rewritten segments before and after.
    pub bytes_before: u64,
    /// See `bytes_before`.
    pub bytes_after: u64,
}

/// A leader append to a compacted log: every record needs a key (Kafka
/// refuses keyless records at produce time). Batches are the verified
/// batches of `bytes` at their positions.
pub fn check_keys_for_append(
    config: &LogConfig,
    bytes: &[u8],
    batches: &[(BatchHeader, usize)],
) -> LogResult<()> {
    if !config.is_compacted() {
        return Ok(());
    }
    for (i, (_, pos)) in batches.iter().enumerate() {
        let batch = Batch::parse(&bytes[*pos..]).map_err(|reason| LogError::Corrupt {
            batch: i,
            position: *pos,
            reason,
        })?;
        for r in batch.records() {
            let r = r.map_err(|reason| LogError::Corrupt {
                batch: i,
                position: *pos,
                reason,
            })?;
            if r.key.is_none() {
                return Err(LogError::InvalidRecord(format!(
                    "compacted topic refuses the keyless record at offset delta {} of batch #{i}",
                    r.offset_delta
                )));
            }
        }
    }
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Finishes or discards interrupted compactions in `dir` (run before the
/// segments are opened). Returns the files it removed or renamed.
pub fn recover_leftovers(dir: &Path) -> LogResult<Vec<PathBuf>> {
    let mut touched = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| LogError::io("list", dir, e))?;
    let mut swaps = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| LogError::io("list", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(CLEANED_SUFFIX) {
            segment::remove_if_present(&entry.path())?;
            touched.push(entry.path());
        } else if let Some(log_name) = name.strip_suffix(SWAP_SUFFIX)
            && let Some(stem) = log_name.strip_suffix(LOG_SUFFIX)
            && let Some(base) = segment::parse_stem(stem)
        {
            swaps.push((base, entry.path()));
        }
    }
    for (base, swap) in swaps {
        warn!(file = %swap.display(), "finishing an interrupted compaction swap");
        install_swap(dir, base, &swap)?;
        touched.push(swap);
    }
    if !touched.is_empty() {
        checkpoint::sync_dir(dir)?;
    }
    Ok(touched)
}

/// Step 3: the old indexes go, then `.swap` replaces the record file.
fn install_swap(dir: &Path, base: i64, swap: &Path) -> LogResult<()> {
    segment::remove_if_present(&segment::file_path(dir, base, INDEX_SUFFIX))?;
    segment::remove_if_present(&segment::file_path(dir, base, TIME_INDEX_SUFFIX))?;
    let log = segment::file_path(dir, base, LOG_SUFFIX);
    fs::rename(swap, &log).map_err(|e| LogError::io("rename into place", &log, e))?;
    checkpoint::sync_dir(dir)
}

/// Why a record is dropped, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    Superseded,
    Tombstone,
    Keyless,
}

impl PartitionLog {
    /// One compaction pass at `now_ms` (see the module docs). Does nothing
    /// unless `cleanup.policy` includes `compact`. Holds the log
    /// exclusively while it runs.
    pub fn compact(&mut self, now_ms: i64) -> LogResult<CompactionOutcome> {
        let mut outcome = CompactionOutcome::default();
        if !self.config().is_compacted() {
            return Ok(outcome);
        }
        let hw = self.high_watermark();
        let bases: Vec<i64> = self.segments().keys().copied().collect();
        // Every segment but the last, whose offsets are all below the high
        // watermark (the next segment starts at or below it).
        let cleanable: Vec<i64> = bases
            .windows(2)
            .take_while(|w| w[1] <= hw)
            .map(|w| w[0])
            .collect();
        if cleanable.is_empty() {
            return Ok(outcome);
        }
        outcome.segments_scanned = cleanable.len();

        // Pass 1: the latest offset of every key.
        let mut latest: HashMap<Vec<u8>, i64> = HashMap::new();
        for base in &cleanable {
            let Some(seg) = self.segments().get(base) else {
                continue;
            };
            seg.for_each_batch(|pos, h, bytes| {
                let Ok(batch) = Batch::parse(bytes) else {
                    return Ok(()); // compressed: kept as is, keys unknown
                };
                if h.is_control() {
                    return Ok(());
                }
                for r in batch.records() {
                    let r = r.map_err(|e| corrupt_record(seg, pos, e))?;
                    if let Some(k) = r.key {
                        match latest.get_mut(k) {
                            Some(o) => *o = (*o).max(r.offset),
                            None => {
                                latest.insert(k.to_vec(), r.offset);
                            }
                        }
                    }
                }
                Ok(())
            })?;
        }

        // Pass 2: rewrite each segment that loses records.
        let delete_retention_ms = self.config().delete_retention_ms;
        let first_base = bases[0];
        for base in cleanable {
            let Some(seg) = self.segments().get(&base) else {
                continue;
            };
            let mut cleaned = Vec::new();
            let mut changed = false;
            let mut counts = [0u64; 3];
            seg.for_each_batch(|pos, h, bytes| {
                if h.is_control() || h.compression_codec() != 0 {
                    cleaned.extend_from_slice(bytes);
                    return Ok(());
                }
                let retained = retain_records(bytes, |r| {
                    let why = match r.key {
                        None => Some(Removal::Keyless),
                        Some(k) if latest.get(k).is_some_and(|o| *o > r.offset) => {
                            Some(Removal::Superseded)
                        }
                        Some(_)
                            if r.value.is_none()
                                && now_ms.saturating_sub(r.timestamp) > delete_retention_ms =>
                        {
                            Some(Removal::Tombstone)
                        }
                        Some(_) => None,
                    };
                    match why {
                        None => true,
                        Some(d) => {
                            counts[d as usize] += 1;
                            false
                        }
                    }
                })
                .map_err(|e| corrupt_record(seg, pos, e))?;
                match retained {
                    Retained::Unchanged => cleaned.extend_from_slice(bytes),
                    Retained::Dropped => changed = true,
                    Retained::Rebuilt(b) => {
                        changed = true;
                        cleaned.extend_from_slice(&b);
                    }
                }
                Ok(())
            })?;
            if !changed {
                continue;
            }
            outcome.superseded_removed += counts[Removal::Superseded as usize];
            outcome.tombstones_removed += counts[Removal::Tombstone as usize];
            outcome.keyless_removed += counts[Removal::Keyless as usize];
            outcome.bytes_before += seg.size();
            outcome.bytes_after += cleaned.len() as u64;
            let removed = self.swap_in(base, &cleaned, base != first_base)?;
            outcome.segments_cleaned += 1;
            if removed {
                outcome.segments_removed += 1;
            }
        }
        info!(
            dir = %self.dir().display(),
            cleaned = outcome.segments_cleaned,
            superseded = outcome.superseded_removed,
            tombstones = outcome.tombstones_removed,
            bytes_before = outcome.bytes_before,
            bytes_after = outcome.bytes_after,
            "compacted log"
        );
        Ok(outcome)
    }

    /// Replaces segment `base` with `cleaned` (steps 1-3), removing it when
    /// it is left empty and `may_remove`. Returns whether it was removed.
    fn swap_in(&mut self, base: i64, cleaned: &[u8], may_remove: bool) -> LogResult<bool> {
        let dir = self.dir().to_owned();
        let interval = self.config().index_interval_bytes;
        let log = segment::file_path(&dir, base, LOG_SUFFIX);
        let cleaned_path = with_suffix(&log, CLEANED_SUFFIX);
        let swap = with_suffix(&log, SWAP_SUFFIX);
        {
            let mut f = File::create(&cleaned_path)
                .map_err(|e| LogError::io("create", &cleaned_path, e))?;
            f.write_all(cleaned)
                .map_err(|e| LogError::io("write", &cleaned_path, e))?;
            f.sync_all()
                .map_err(|e| LogError::io("fsync", &cleaned_path, e))?;
        }
        fs::rename(&cleaned_path, &swap).map_err(|e| LogError::io("rename", &swap, e))?;
        checkpoint::sync_dir(&dir)?;
        // The old segment's handles go before its files are replaced.
        if let Some(old) = self.segments_mut().remove(&base) {
            drop(old);
        }
        install_swap(&dir, base, &swap)?;
        let (seg, _) = Segment::open(&dir, base, interval, true, false)?;
        seg.sync()?;
        if seg.is_empty() && may_remove {
            seg.delete()?;
            checkpoint::sync_dir(&dir)?;
            return Ok(true);
        }
        self.segments_mut().insert(base, seg);
        Ok(false)
    }
}

fn corrupt_record(seg: &Segment, position: u64, reason: RecordError) -> LogError {
    LogError::CorruptOnDisk {
        path: seg.log_path().to_owned(),
        position,
        reason,
    }
}
