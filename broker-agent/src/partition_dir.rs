//! Partition directories on disk: the executor of [`crate::reconcile`]'s
//! plans and the loader that rebuilds the hosted map at start-up.
//!
//! Layout: `<data_dir>/partitions/<topic>-<partition>/partition.json`
//! (a [`PartitionRecord`], written atomically). A directory is removed by
//! renaming it to `<topic>-<partition>.deleting` (durable), then deleting
//! it; the loader finishes removals a crash interrupted. Partition
//! directory names always end in `-<digits>`, so `.deleting` names never
//! collide with them.
//!
//! Blocking I/O: callers run these on a blocking thread. This module never
//! decides *what* to do; it only does it.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::AgentError;
use crate::meta::{sync_dir, write_atomic};
use crate::partition::{PartitionKey, PartitionRecord};
use crate::reconcile::Action;

/// Folder under the data directory holding one directory per partition.
pub const PARTITIONS_DIR: &str = "partitions";
/// The record file inside a partition directory.
pub const PARTITION_FILE: &str = "partition.json";
const DELETING_SUFFIX: &str = ".deleting";

/// `<data_dir>/partitions`.
pub fn partitions_root(data_dir: &Path) -> PathBuf {
    data_dir.join(PARTITIONS_DIR)
}

/// Executes one action under `root` (`<data_dir>/partitions`). Idempotent:
/// creating an existing directory rewrites its record; removing a missing
/// one succeeds.
pub fn execute(root: &Path, action: &Action) -> io::Result<()> {
    match action {
        Action::Create(r) | Action::Update(r) => write_record(root, r),
        Action::Recreate { record, .. } => {
            remove(root, &record.key())?;
            write_record(root, record)
        }
        Action::Remove(key) => remove(root, key),
        // Memory only (see `Action::Refresh`).
        Action::Refresh(_) => Ok(()),
    }
}

/// Executes a push's actions. Updates of partitions whose directory exists
/// (a new leader, ISR or epoch: thousands at once when a broker is fenced)
/// share their durability work: every new `partition.json` is written to
/// its temporary file, one `syncfs` makes them all durable, each is
/// renamed into place, and a second `syncfs` makes the renames durable —
/// the guarantees of [`write_atomic`] (each file is the old or the new
/// record, never a mix) for two syncs per push instead of two per
/// partition. Other actions run one by one through [`execute`]. A plan
/// lists each partition at most once, so the order between the batched
/// updates and the other actions does not matter.
pub fn execute_all(root: &Path, actions: Vec<Action>) -> Vec<(Action, io::Result<()>)> {
    let mut done = Vec::with_capacity(actions.len());
    let mut staged: Vec<(Action, PathBuf, PathBuf)> = Vec::new();
    let mut creates: Vec<Action> = Vec::new();
    for a in actions {
        match &a {
            Action::Create(_) => creates.push(a),
            Action::Update(r) if root.join(r.key().dir_name()).is_dir() => {
                let dir = root.join(r.key().dir_name());
                let file = dir.join(PARTITION_FILE);
                let tmp = dir.join(format!("{PARTITION_FILE}.tmp"));
                match stage(&tmp, r) {
                    Ok(()) => staged.push((a, tmp, file)),
                    Err(e) => done.push((a, Err(e))),
                }
            }
            _ => {
                let r = execute(root, &a);
                done.push((a, r));
            }
        }
    }
    done.extend(create_all(root, creates));
    if staged.is_empty() {
        return done;
    }
    let synced = syncfs(root);
    for (a, tmp, file) in staged {
        let r = match &synced {
            Ok(()) => fs::rename(&tmp, &file),
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        done.push((a, r));
    }
    if let Err(e) = syncfs(root) {
        for (_, r) in done.iter_mut() {
            if r.is_ok() {
                *r = Err(io::Error::new(e.kind(), e.to_string()));
            }
        }
    }
    done
}

/// Runs creations through [`execute`], over a few threads when there are
/// many ([`crate::par`]): each waits on its own fsyncs (directory, file,
/// directory), and the disk takes several at once.
fn create_all(root: &Path, creates: Vec<Action>) -> Vec<(Action, io::Result<()>)> {
    let results = crate::par::par_map(
        &creates,
        |a| execute(root, a),
        || Err(io::Error::other("the thread creating it panicked")),
    );
    creates.into_iter().zip(results).collect()
}

fn stage(tmp: &Path, record: &PartitionRecord) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
    bytes.push(b'\n');
    fs::write(tmp, &bytes)
}

/// Flushes the whole file system holding `dir` (data and metadata).
fn syncfs(dir: &Path) -> io::Result<()> {
    let f = fs::File::open(dir)?;
    rustix::fs::syncfs(&f).map_err(io::Error::from)
}

fn write_record(root: &Path, record: &PartitionRecord) -> io::Result<()> {
    let dir = root.join(record.key().dir_name());
    let existed = dir.is_dir();
    fs::create_dir_all(&dir)?;
    if !existed {
        sync_dir(root)?;
    }
    let mut bytes = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
    bytes.push(b'\n');
    write_atomic(&dir.join(PARTITION_FILE), &bytes)
}

fn remove(root: &Path, key: &PartitionKey) -> io::Result<()> {
    let dir = root.join(key.dir_name());
    let doomed = root.join(format!("{}{DELETING_SUFFIX}", key.dir_name()));
    remove_dir_if_present(&doomed)?;
    match fs::rename(&dir, &doomed) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    sync_dir(root)?;
    remove_dir_if_present(&doomed)
}

fn remove_dir_if_present(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Loads every hosted partition under `<data_dir>/partitions` (creating the
/// folder when missing) and finishes interrupted removals. Directories
/// without a readable, matching `partition.json` are left alone and
/// reported in the second value (a later push rewrites them).
pub fn load_all(
    data_dir: &Path,
) -> Result<(BTreeMap<PartitionKey, PartitionRecord>, Vec<String>), AgentError> {
    let root = partitions_root(data_dir);
    fs::create_dir_all(&root).map_err(|e| AgentError::io("create", &root, e))?;
    let entries = fs::read_dir(&root).map_err(|e| AgentError::io("list", &root, e))?;
    let mut hosted = BTreeMap::new();
    let mut problems = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| AgentError::io("list", &root, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !path.is_dir() {
            continue;
        }
        if name.ends_with(DELETING_SUFFIX) {
            if let Err(e) = remove_dir_if_present(&path) {
                problems.push(format!("cannot finish removing {}: {e}", path.display()));
            }
            continue;
        }
        match load_one(&path, &name) {
            Ok(record) => {
                hosted.insert(record.key(), record);
            }
            Err(problem) => problems.push(problem),
        }
    }
    Ok((hosted, problems))
}

fn load_one(dir: &Path, name: &str) -> Result<PartitionRecord, String> {
    let file = dir.join(PARTITION_FILE);
    let bytes = fs::read(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let record: PartitionRecord = serde_json::from_slice(&bytes)
        .map_err(|e| format!("cannot parse {}: {e}", file.display()))?;
    let key = PartitionKey::new(&record.topic, record.partition)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    if key.dir_name() != name {
        return Err(format!(
            "{} describes partition {key}, not the directory's {name}",
            file.display()
        ));
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(topic: &str, p: i32, topic_id: &str) -> PartitionRecord {
        PartitionRecord {
            topic: topic.into(),
            topic_id: topic_id.into(),
            partition: p,
            replicas: vec![1],
            leader: 1,
            leader_epoch: 0,
            isr: vec![1],
            partition_epoch: 0,
            configs: BTreeMap::new(),
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    #[test]
    fn create_update_remove_and_reload() {
        let data = tempfile::tempdir().unwrap();
        let (empty, problems) = load_all(data.path()).unwrap();
        assert!(empty.is_empty() && problems.is_empty());
        let root = partitions_root(data.path());

        execute(&root, &Action::Create(rec("a-b", 0, "X"))).unwrap();
        execute(&root, &Action::Create(rec("c", 3, "Y"))).unwrap();
        let mut newer = rec("c", 3, "Y");
        newer.leader_epoch = 4;
        execute(&root, &Action::Update(newer.clone())).unwrap();
        assert!(root.join("a-b-0").join(PARTITION_FILE).is_file());

        let (hosted, problems) = load_all(data.path()).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(hosted.len(), 2);
        assert_eq!(hosted[&newer.key()], newer);

        execute(&root, &Action::Remove(newer.key())).unwrap();
        execute(&root, &Action::Remove(newer.key())).unwrap();
        assert!(!root.join("c-3").exists());
        let (hosted, _) = load_all(data.path()).unwrap();
        assert_eq!(
            hosted.keys().cloned().collect::<Vec<_>>(),
            vec![PartitionKey::new("a-b", 0).unwrap()]
        );
    }

    #[test]
    fn many_creations_over_threads_each_land_and_report_in_order() {
        let data = tempfile::tempdir().unwrap();
        let root = partitions_root(data.path());
        load_all(data.path()).unwrap();
        // Enough for every thread; one of them fails (a file in the way).
        let n = (crate::par::THREADS * crate::par::PER_THREAD + 7) as i32;
        fs::write(root.join("t-77"), b"in the way").unwrap();
        let actions: Vec<Action> = (0..n).map(|p| Action::Create(rec("t", p, "X"))).collect();
        let results = execute_all(&root, actions);
        assert_eq!(results.len(), n as usize);
        for (i, (a, r)) in results.iter().enumerate() {
            assert_eq!(a.key(), rec("t", i as i32, "X").key(), "reported in order");
            assert_eq!(r.is_err(), i == 77, "{i}: {r:?}");
        }
        let (hosted, _) = load_all(data.path()).unwrap();
        assert_eq!(hosted.len(), n as usize - 1);
    }

    #[test]
    fn a_batch_of_updates_lands_whole_and_leaves_no_temporary_file() {
        let data = tempfile::tempdir().unwrap();
        let root = partitions_root(data.path());
        load_all(data.path()).unwrap();
        for p in 0..6 {
            execute(&root, &Action::Create(rec("t", p, "X"))).unwrap();
        }
        let mut actions: Vec<Action> = (0..5)
            .map(|p| {
                let mut r = rec("t", p, "X");
                r.leader_epoch = 7;
                Action::Update(r)
            })
            .collect();
        actions.push(Action::Create(rec("u", 0, "Y")));
        actions.push(Action::Remove(rec("t", 5, "X").key()));
        let results = execute_all(&root, actions);
        assert_eq!(results.len(), 7);
        assert!(results.iter().all(|(_, r)| r.is_ok()), "{results:?}");
        let (hosted, problems) = load_all(data.path()).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        // A plan lists each partition once (see `reconcile`).
        assert_eq!(hosted.len(), 6);
        assert!(!root.join("t-5").exists());
        for p in 0..5 {
            assert_eq!(hosted[&rec("t", p, "X").key()].leader_epoch, 7);
        }
        for p in 0..5 {
            assert!(
                !root
                    .join(format!("t-{p}"))
                    .join("partition.json.tmp")
                    .exists()
            );
        }
    }

    #[test]
    fn recreate_drops_old_contents() {
        let data = tempfile::tempdir().unwrap();
        let root = partitions_root(data.path());
        load_all(data.path()).unwrap();
        execute(&root, &Action::Create(rec("t", 0, "OLD"))).unwrap();
        fs::write(root.join("t-0").join("00000000.log"), b"old data").unwrap();
        execute(
            &root,
            &Action::Recreate {
                old_topic_id: "OLD".into(),
                record: rec("t", 0, "NEW"),
            },
        )
        .unwrap();
        assert!(!root.join("t-0").join("00000000.log").exists());
        let (hosted, _) = load_all(data.path()).unwrap();
        assert_eq!(hosted[&PartitionKey::new("t", 0).unwrap()].topic_id, "NEW");
    }

    #[test]
    fn loader_finishes_removals_and_reports_strays() {
        let data = tempfile::tempdir().unwrap();
        let root = partitions_root(data.path());
        fs::create_dir_all(root.join("t-0.deleting")).unwrap();
        fs::create_dir_all(root.join("no-record-0")).unwrap();
        fs::create_dir_all(root.join("wrong-0")).unwrap();
        let bytes = serde_json::to_vec(&rec("other", 1, "Z")).unwrap();
        fs::write(root.join("wrong-0").join(PARTITION_FILE), &bytes).unwrap();
        let (hosted, problems) = load_all(data.path()).unwrap();
        assert!(hosted.is_empty());
        assert!(!root.join("t-0.deleting").exists());
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
