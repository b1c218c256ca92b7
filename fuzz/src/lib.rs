//! What the fuzz targets exercise, as plain functions (so a regression test
//! or a debugger can call them on a saved input).

use std::sync::{Mutex, OnceLock};

use ballast_broker_agent::log::{LogConfig, LogError, PartitionLog};

/// The command line's pure input parsers, compiled as they are.
#[path = "../../cli/src/inputs.rs"]
pub mod inputs;

/// One log for the whole run (opening one per input would be all fsyncs).
fn shared_log() -> &'static Mutex<(tempfile::TempDir, PartitionLog)> {
    static LOG: OnceLock<Mutex<(tempfile::TempDir, PartitionLog)>> = OnceLock::new();
    LOG.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = LogConfig {
            segment_bytes: 1 << 20,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(dir.path(), config).expect("open a log");
        Mutex::new((dir, log))
    })
}

/// Untrusted produce bytes appended as the leader: a named error leaves the
/// log as it was; an append is read back whole and verified.
pub fn produce_request(data: &[u8]) {
    let mut guard = shared_log().lock().unwrap_or_else(|e| e.into_inner());
    let log = &mut guard.1;
    let before = (log.log_end_offset(), log.size_bytes());
    match log.append_as_leader(data, 1, 0) {
        Ok(info) => {
            if info.records > 0 {
                let r = log
                    .read(info.first_offset, usize::MAX >> 1, None)
                    .expect("an appended batch reads back");
                let mut pos = 0;
                while pos < r.records.len() {
                    let (h, _) = ballast_record::BatchHeader::verify(&r.records[pos..])
                        .expect("what the log serves verifies");
                    pos += h.total_len();
                }
            }
        }
        Err(LogError::Offline { .. }) => panic!("a refused append took the log offline"),
        Err(_) => assert_eq!(
            (log.log_end_offset(), log.size_bytes()),
            before,
            "a refused append changed the log"
        ),
    }
}

/// Untrusted bytes as a partition's only segment (and, from the input's
/// tail, its offset index): the log opens, recovers, and serves only
/// batches that verify.
pub fn segment_recovery(data: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let split = data.len() * 3 / 4;
    std::fs::write(dir.path().join("00000000000000000000.log"), &data[..split]).expect("write");
    std::fs::write(dir.path().join("00000000000000000000.index"), &data[split..]).expect("write");
    let Ok(log) = PartitionLog::open(dir.path(), LogConfig::default()) else {
        return;
    };
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        let Ok(r) = log.read(at, 1 << 20, None) else {
            return;
        };
        if r.records.is_empty() {
            return;
        }
        let mut pos = 0;
        let mut next = at;
        while pos < r.records.len() {
            let (h, _) = ballast_record::BatchHeader::verify(&r.records[pos..])
                .expect("what a recovered log serves verifies");
            pos += h.total_len();
            next = h.next_offset();
        }
        if next <= at {
            return;
        }
        at = next;
    }
}

/// Untrusted text as a reassignment plan: a plan or a named error; a plan
/// written back as JSON parses to itself.
pub fn reassignment_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(plan) = inputs::parse_plan(text) {
        let again = inputs::parse_plan(&inputs::plan_json(&plan)).expect("a written plan parses");
        assert_eq!(again, plan);
    }
}

/// Untrusted text as a server's TOML config file: flags or a named error.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((flags, keys)) = inputs::config_flags(text, "fuzz.toml", |k| k.len() % 7 == 3) {
        assert!(keys.len() <= flags.len());
    }
}
