//! Checkpoint files of a partition directory: `high-watermark`,
//! `recovery-point`, `log-start-offset` and `leader-epoch-checkpoint`.
//!
//! Every write is atomic and durable: the bytes go to `<name>.tmp`, which
//! is fsynced, renamed over `<name>`, and the directory is fsynced. A crash
//! leaves the old or the new contents, never a mix (a stale `.tmp` is
//! overwritten by the next write and ignored by reads).
//!
//! Formats are text, versioned like Kafka's checkpoint files:
//! * offsets: `0\n<offset>\n`;
//! * leader epochs: `0\n<count>\n<epoch> <start offset>\n...`.
//!
//! Reading never trusts the file: a missing file and an unparsable one are
//! reported apart ([`Checkpoint`]), and the caller decides the fallback.
//! This module never decides what a value means.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use super::epoch::EpochEntry;
use super::error::{LogError, LogResult};

/// The high watermark, written by [`super::PartitionLog::write_checkpoints`].
pub const HIGH_WATERMARK_FILE: &str = "high-watermark";
/// Offset below which every batch is known to be fsynced.
pub const RECOVERY_POINT_FILE: &str = "recovery-point";
/// The log start offset (moved by retention and by a full truncation).
pub const LOG_START_OFFSET_FILE: &str = "log-start-offset";
/// The leader-epoch cache (epoch -> start offset).
pub const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";

const VERSION: &str = "0";
/// Checkpoint files are tiny; anything larger is not ours.
const MAX_CHECKPOINT_BYTES: u64 = 16 << 20;

/// What a checkpoint file held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checkpoint<T> {
    /// No such file.
    Missing,
    /// A well-formed value.
    Valid(T),
    /// The file exists but cannot be understood; the reason.
    Corrupt(String),
}

/// Replaces `path` with `bytes` atomically and durably (temp file, fsync,
/// rename, fsync of the directory).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> LogResult<()> {
    let parent = path
        .parent()
        .ok_or_else(|| LogError::io("write", path, io::Error::other("no parent directory")))?;
    let mut tmp_name = path
        .file_name()
        .ok_or_else(|| LogError::io("write", path, io::Error::other("no file name")))?
        .to_os_string();
    tmp_name.push(".tmp");
    let tmp = parent.join(tmp_name);
    {
        let mut f = File::create(&tmp).map_err(|e| LogError::io("create", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| LogError::io("write", &tmp, e))?;
        f.sync_all().map_err(|e| LogError::io("fsync", &tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| LogError::io("rename into place", path, e))?;
    sync_dir(parent)
}

/// Makes a directory's entries (creations, renames, removals) durable.
pub fn sync_dir(dir: &Path) -> LogResult<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LogError::io("fsync directory", dir, e))
}

fn read_text(path: &Path) -> LogResult<Checkpoint<String>> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Checkpoint::Missing),
        Err(e) => return Err(LogError::io("open", path, e)),
    };
    let mut bytes = Vec::new();
    f.take(MAX_CHECKPOINT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| LogError::io("read", path, e))?;
    if bytes.len() as u64 > MAX_CHECKPOINT_BYTES {
        return Ok(Checkpoint::Corrupt(format!(
            "larger than {MAX_CHECKPOINT_BYTES} bytes"
        )));
    }
    match String::from_utf8(bytes) {
        Ok(s) => Ok(Checkpoint::Valid(s)),
        Err(_) => Ok(Checkpoint::Corrupt("not UTF-8".to_owned())),
    }
}

fn expect_version<'a>(lines: &mut impl Iterator<Item = &'a str>) -> Result<(), String> {
    match lines.next() {
        Some(VERSION) => Ok(()),
        Some(v) => Err(format!("unsupported version {v:?}")),
        None => Err("empty file".to_owned()),
    }
}

/// Writes an offset checkpoint.
pub fn write_offset(path: &Path, offset: i64) -> LogResult<()> {
    write_atomic(path, format!("{VERSION}\n{offset}\n").as_bytes())
}

/// Reads an offset checkpoint.
pub fn read_offset(path: &Path) -> LogResult<Checkpoint<i64>> {
    let text = match read_text(path)? {
        Checkpoint::Valid(t) => t,
        Checkpoint::Missing => return Ok(Checkpoint::Missing),
        Checkpoint::Corrupt(r) => return Ok(Checkpoint::Corrupt(r)),
    };
    Ok(match parse_offset(&text) {
        Ok(o) => Checkpoint::Valid(o),
        Err(r) => Checkpoint::Corrupt(r),
    })
}

fn parse_offset(text: &str) -> Result<i64, String> {
    let mut lines = text.lines();
    expect_version(&mut lines)?;
    let line = lines.next().ok_or("no offset line")?;
    let offset: i64 = line
        .trim()
        .parse()
        .map_err(|_| format!("bad offset {line:?}"))?;
    if offset < 0 {
        return Err(format!("negative offset {offset}"));
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err("trailing lines".to_owned());
    }
    Ok(offset)
}

/// Writes the leader-epoch checkpoint.
pub fn write_epochs(path: &Path, entries: &[EpochEntry]) -> LogResult<()> {
    let mut text = format!("{VERSION}\n{}\n", entries.len());
    for e in entries {
        text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
    }
    write_atomic(path, text.as_bytes())
}

/// Reads the leader-epoch checkpoint (entries as written; the caller
/// checks their order).
pub fn read_epochs(path: &Path) -> LogResult<Checkpoint<Vec<EpochEntry>>> {
    let text = match read_text(path)? {
        Checkpoint::Valid(t) => t,
        Checkpoint::Missing => return Ok(Checkpoint::Missing),
        Checkpoint::Corrupt(r) => return Ok(Checkpoint::Corrupt(r)),
    };
    Ok(match parse_epochs(&text) {
        Ok(e) => Checkpoint::Valid(e),
        Err(r) => Checkpoint::Corrupt(r),
    })
}

fn parse_epochs(text: &str) -> Result<Vec<EpochEntry>, String> {
    let mut lines = text.lines();
    expect_version(&mut lines)?;
    let count_line = lines.next().ok_or("no count line")?;
    let count: usize = count_line
        .trim()
        .parse()
        .map_err(|_| format!("bad count {count_line:?}"))?;
    // Each entry takes at least 4 bytes ("0 0\n"): bound before allocating.
    if count > text.len() / 4 {
        return Err(format!("count {count} larger than the file allows"));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let line = lines.next().ok_or("fewer entries than the count")?;
        let mut parts = line.split_whitespace();
        let (Some(epoch), Some(offset), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("bad entry {line:?}"));
        };
        let epoch: i32 = epoch.parse().map_err(|_| format!("bad epoch {line:?}"))?;
        let start_offset: i64 = offset.parse().map_err(|_| format!("bad offset {line:?}"))?;
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err("more entries than the count".to_owned());
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_refuse_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(HIGH_WATERMARK_FILE);
        assert_eq!(read_offset(&p).unwrap(), Checkpoint::Missing);
        write_offset(&p, 42).unwrap();
        assert_eq!(read_offset(&p).unwrap(), Checkpoint::Valid(42));
        write_offset(&p, 7).unwrap();
        assert_eq!(read_offset(&p).unwrap(), Checkpoint::Valid(7));
        assert!(!dir.path().join("high-watermark.tmp").exists());
        for garbage in ["", "1\n5\n", "0\nx\n", "0\n-3\n", "0\n5\n6\n"] {
            fs::write(&p, garbage).unwrap();
            assert!(
                matches!(read_offset(&p).unwrap(), Checkpoint::Corrupt(_)),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn epochs_round_trip_and_refuse_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEADER_EPOCH_FILE);
        let entries = vec![
            EpochEntry {
                epoch: 0,
                start_offset: 0,
            },
            EpochEntry {
                epoch: 3,
                start_offset: 17,
            },
        ];
        write_epochs(&p, &entries).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "0\n2\n0 0\n3 17\n");
        assert_eq!(read_epochs(&p).unwrap(), Checkpoint::Valid(entries));
        write_epochs(&p, &[]).unwrap();
        assert_eq!(read_epochs(&p).unwrap(), Checkpoint::Valid(vec![]));
        for garbage in [
            "0\n2\n0 0\n",
            "0\n1\n0 0\n1 1\n",
            "0\n1\n0\n",
            "0\n99999999\n",
        ] {
            fs::write(&p, garbage).unwrap();
            assert!(
                matches!(read_epochs(&p).unwrap(), Checkpoint::Corrupt(_)),
                "{garbage:?}"
            );
        }
    }
}
