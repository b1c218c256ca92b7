//! The data directory's identity: `<data_dir>/agent.json` and the process
//! lock `<data_dir>/.lock`.
//!
//! `agent.json` holds the broker id the directory belongs to, the
//! incarnation id (random, made on first start and kept thereafter: the same
//! agent restarting presents the same id to the coordinator, another agent
//! claiming the broker id does not) and the highest coordinator epoch
//! accepted. The epoch is persisted *before* a push from a new coordinator
//! epoch is applied, so a restarted agent still refuses a deposed
//! coordinator. Every write is atomic: temporary file, fsync, rename, fsync
//! of the directory.
//!
//! [`DataDir`] holds an exclusive lock on `.lock` for its lifetime, so two
//! agents (processes or in-process instances) never share a directory.
//! This module never touches partition directories.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// File holding the directory's identity.
pub const META_FILE: &str = "agent.json";
/// File locked exclusively by the agent using the directory.
pub const LOCK_FILE: &str = ".lock";

/// Contents of `agent.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentMeta {
    /// Broker id the directory belongs to.
    pub broker_id: i32,
    /// 128 random bits in lower-case hex, made once per directory.
    pub incarnation_id: String,
    /// Highest coordinator epoch a push was accepted from. Fencing rule: a
    /// push with a lower coordinator epoch is refused, also after restarts.
    pub highest_coordinator_epoch: i64,
}

/// An opened, locked data directory. Dropping it releases the lock.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    meta: AgentMeta,
    /// Held (locked) for the lifetime of the value; closing it unlocks.
    _lock: File,
}

impl DataDir {
    /// Opens (creating when missing) and locks `root` for `broker_id`.
    ///
    /// Fails with [`AgentError::DataDirInUse`] when another agent holds the
    /// lock, and [`AgentError::DataDirOwnedByOtherBroker`] when the
    /// directory was made for another broker id.
    pub fn open(root: &Path, broker_id: i32) -> Result<Self, AgentError> {
        fs::create_dir_all(root).map_err(|e| AgentError::io("create", root, e))?;
        let lock_path = root.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| AgentError::io("open", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(AgentError::DataDirInUse {
                    path: root.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(AgentError::io("lock", &lock_path, e)),
        }

        let meta_path = root.join(META_FILE);
        let meta = match fs::read(&meta_path) {
            Ok(bytes) => {
                let meta: AgentMeta =
                    serde_json::from_slice(&bytes).map_err(|e| AgentError::CorruptMeta {
                        path: meta_path.clone(),
                        reason: e.to_string(),
                    })?;
                if meta.incarnation_id.is_empty() {
                    return Err(AgentError::CorruptMeta {
                        path: meta_path,
                        reason: "empty incarnation_id".to_owned(),
                    });
                }
                if meta.broker_id != broker_id {
                    return Err(AgentError::DataDirOwnedByOtherBroker {
                        path: root.to_path_buf(),
                        found: meta.broker_id,
                        expected: broker_id,
                    });
                }
                meta
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let meta = AgentMeta {
                    broker_id,
                    incarnation_id: new_incarnation_id()
                        .map_err(|e| AgentError::io("generate an incarnation id for", root, e))?,
                    highest_coordinator_epoch: 0,
                };
                write_meta(&meta_path, &meta)?;
                meta
            }
            Err(e) => return Err(AgentError::io("read", &meta_path, e)),
        };
        Ok(Self {
            root: root.to_path_buf(),
            meta,
            _lock: lock,
        })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What `agent.json` holds now.
    pub fn meta(&self) -> &AgentMeta {
        &self.meta
    }

    /// Persists a new highest coordinator epoch (atomically, durably), then
    /// remembers it. A lower or equal epoch is a no-op.
    pub fn raise_coordinator_epoch(&mut self, epoch: i64) -> Result<(), AgentError> {
        if epoch <= self.meta.highest_coordinator_epoch {
            return Ok(());
        }
        let next = AgentMeta {
            highest_coordinator_epoch: epoch,
            ..self.meta.clone()
        };
        write_meta(&self.root.join(META_FILE), &next)?;
        self.meta = next;
        Ok(())
    }
}

fn write_meta(path: &Path, meta: &AgentMeta) -> Result<(), AgentError> {
    let mut bytes = serde_json::to_vec_pretty(meta).map_err(|e| AgentError::CorruptMeta {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes).map_err(|e| AgentError::io("write", path, e))
}

/// 128 random bits as 32 lower-case hex digits.
fn new_incarnation_id() -> io::Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Replaces `path` with `bytes` atomically and durably: a temporary file
/// beside it, fsync, rename over `path`, fsync of the parent directory. A
/// crash leaves either the old or the new contents (and maybe a stale
/// `.tmp` file, overwritten by the next write).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent directory"))?;
    let mut tmp_name = path
        .file_name()
        .ok_or_else(|| io::Error::other("path has no file name"))?
        .to_os_string();
    tmp_name.push(".tmp");
    let tmp = parent.join(tmp_name);
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(parent)
}

/// Makes a directory's entries (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_open_creates_identity_and_reopen_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::open(dir.path(), 4).unwrap();
        let id = first.meta().incarnation_id.clone();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(first.meta().broker_id, 4);
        assert_eq!(first.meta().highest_coordinator_epoch, 0);
        drop(first);

        let again = DataDir::open(dir.path(), 4).unwrap();
        assert_eq!(again.meta().incarnation_id, id);
    }

    #[test]
    fn coordinator_epoch_is_persisted_and_never_lowered() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = DataDir::open(dir.path(), 1).unwrap();
        d.raise_coordinator_epoch(17).unwrap();
        d.raise_coordinator_epoch(5).unwrap();
        assert_eq!(d.meta().highest_coordinator_epoch, 17);
        drop(d);
        let d = DataDir::open(dir.path(), 1).unwrap();
        assert_eq!(d.meta().highest_coordinator_epoch, 17);
        let on_disk: AgentMeta =
            serde_json::from_slice(&fs::read(dir.path().join(META_FILE)).unwrap()).unwrap();
        assert_eq!(&on_disk, d.meta());
        assert!(!dir.path().join("agent.json.tmp").exists());
    }

    #[test]
    fn another_broker_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(DataDir::open(dir.path(), 1).unwrap());
        let err = DataDir::open(dir.path(), 2).unwrap_err();
        assert!(matches!(
            err,
            AgentError::DataDirOwnedByOtherBroker {
                found: 1,
                expected: 2,
                ..
            }
        ));
        assert!(
            err.to_string()
                .contains("belongs to broker 1, not broker 2"),
            "{err}"
        );
    }

    #[test]
    fn a_held_lock_refuses_a_second_agent_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::open(dir.path(), 1).unwrap();
        let err = DataDir::open(dir.path(), 1).unwrap_err();
        assert!(matches!(err, AgentError::DataDirInUse { .. }));
        assert!(
            err.to_string().contains("is in use by another agent"),
            "{err}"
        );
        drop(first);
        DataDir::open(dir.path(), 1).unwrap();
    }

    #[test]
    fn corrupt_meta_is_a_named_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(META_FILE), b"{not json").unwrap();
        let err = DataDir::open(dir.path(), 1).unwrap_err();
        assert!(matches!(err, AgentError::CorruptMeta { .. }), "{err}");
    }

    #[test]
    fn write_atomic_replaces_contents() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!dir.path().join("f.json.tmp").exists());
    }
}
