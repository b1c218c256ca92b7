//! What the fuzz targets exercise, as plain functions (so a regression test
//! or a debugger can call them on a saved input). Each one takes bytes
//! from outside and may only end in a value or a named error: a panic, an
//! abort or a broken invariant below is a finding.

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use ballast_broker_agent::log::{LogConfig, LogError, PartitionLog};
use ballast_record::BatchHeader;

/// gRPC requests through the servers' validation (`grpc_requests`).
pub mod grpc;
pub use grpc::grpc_requests;

/// The command line's pure input parsers, compiled as they are.
#[path = "../../cli/src/inputs.rs"]
pub mod inputs;

/// A log in a temp dir of its own, kept for a whole run (opening one per
/// input would be all fsyncs).
type RunLog = Mutex<(tempfile::TempDir, PartitionLog)>;

fn run_log() -> RunLog {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = LogConfig {
        segment_bytes: 1 << 20,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(dir.path(), config).expect("open a log");
    Mutex::new((dir, log))
}

/// The leader's log for `produce_request`.
fn shared_log() -> &'static RunLog {
    static LOG: OnceLock<RunLog> = OnceLock::new();
    LOG.get_or_init(run_log)
}

/// The agent's produce gate (`ballast_broker_agent::validate_batches`, the
/// function the agent runs): true when the agent hands the bytes to the log.
pub fn agent_accepts(bytes: &[u8], max_message_bytes: usize) -> bool {
    ballast_broker_agent::validate_batches(bytes, max_message_bytes).is_ok()
}

/// Every batch in `records` verifies (CRC) and they tile it exactly.
fn assert_all_verify(records: &[u8], what: &str) {
    let mut pos = 0;
    while pos < records.len() {
        let (h, _) = BatchHeader::verify(&records[pos..])
            .unwrap_or_else(|e| panic!("{what}: a batch at byte {pos} fails to verify: {e}"));
        pos += h.total_len();
    }
}

/// Untrusted produce bytes through the agent's gate and then appended as
/// the leader: a named error leaves the log as it was; an append is read
/// back whole and verified; the gate and the log agree on what is
/// malformed (the log never appends what the gate refuses, and never
/// calls corrupt what the gate let through).
pub fn produce_request(data: &[u8]) {
    let mut guard = shared_log().lock().unwrap_or_else(|e| e.into_inner());
    let log = &mut guard.1;
    let accepted = agent_accepts(data, LogConfig::default().max_message_bytes);
    let before = (log.log_end_offset(), log.size_bytes());
    match log.append_as_leader(data, 1, 0) {
        Ok(info) => {
            assert!(accepted, "the log appended what the agent's gate refuses");
            if info.records > 0 {
                let r = log
                    .read(info.first_offset, usize::MAX >> 1, None)
                    .expect("an appended batch reads back");
                assert_all_verify(&r.records, "what the log serves");
            }
        }
        Err(LogError::Offline { .. }) => panic!("a refused append took the log offline"),
        Err(e) => {
            assert_eq!(
                (log.log_end_offset(), log.size_bytes()),
                before,
                "a refused append changed the log ({e})"
            );
            if accepted {
                assert!(
                    !matches!(
                        e,
                        LogError::Corrupt { .. }
                            | LogError::RecordTooLarge { .. }
                            | LogError::InvalidRecord(_)
                    ),
                    "the agent's gate accepted what the log refuses as malformed: {e}"
                );
            }
        }
    }
}

/// The follower's log for `follower_append`.
fn follower_log() -> &'static RunLog {
    static LOG: OnceLock<RunLog> = OnceLock::new();
    LOG.get_or_init(run_log)
}

/// Untrusted bytes as a fetch answer from a (hostile) leader, appended as a
/// follower. Layout: `[mode][records...]`; mode bit 0 rewrites the base
/// offsets of the batches found (outside the CRC) so that they follow the
/// log end, bit 1 stamps them with the log's latest leader epoch (also
/// outside the CRC), so the search gets past the offset and epoch checks
/// to what follows. An append reads back whole and every batch verifies,
/// the leader-epoch cache stays increasing in both epoch and start offset,
/// and a refusal is a named error that leaves the log as it was.
pub fn follower_append(data: &[u8]) {
    let [mode, rest @ ..] = data else {
        return;
    };
    let mut guard = follower_log().lock().unwrap_or_else(|e| e.into_inner());
    let log = &mut guard.1;
    let mut bytes = rest.to_vec();
    let mut next = log.log_end_offset();
    let epoch = log.latest_epoch().unwrap_or(0);
    let mut pos = 0;
    while mode & 3 != 0 && pos < bytes.len() {
        let Ok(h) = BatchHeader::parse(&bytes[pos..]) else {
            break;
        };
        let end = pos.saturating_add(h.total_len()).min(bytes.len());
        if mode & 1 != 0 {
            ballast_record::set_base_offset(&mut bytes[pos..end], next);
            next = next
                .saturating_add(i64::from(h.last_offset_delta))
                .saturating_add(1);
        }
        if mode & 2 != 0 {
            ballast_record::set_partition_leader_epoch(&mut bytes[pos..end], epoch);
        }
        pos = end;
    }
    let state = |log: &PartitionLog| {
        (
            log.log_end_offset(),
            log.size_bytes(),
            log.epoch_entries().to_vec(),
        )
    };
    let before = state(log);
    match log.append_as_follower(&bytes) {
        Ok(info) => {
            if info.records > 0 {
                let r = log
                    .read(info.first_offset, usize::MAX >> 1, None)
                    .expect("an appended batch reads back");
                assert_all_verify(&r.records, "what the follower serves");
            }
            let entries = log.epoch_entries();
            for pair in entries.windows(2) {
                assert!(
                    pair[0].epoch < pair[1].epoch && pair[0].start_offset <= pair[1].start_offset,
                    "the leader-epoch cache went backwards: {pair:?}"
                );
            }
        }
        Err(LogError::Offline { .. }) => panic!("a refused fetch answer took the log offline"),
        Err(e) => {
            assert_eq!(
                state(log),
                before,
                "a refused fetch answer changed the log ({e})"
            );
        }
    }
}

/// Reads the whole log from its start: every batch served verifies.
/// Returns (log start, log end).
fn read_all(log: &PartitionLog) -> (i64, i64) {
    let mut at = log.log_start_offset();
    while at < log.log_end_offset() {
        // A read may refuse a batch that fails its CRC (CorruptOnDisk):
        // a named error, and what follows is not served.
        let Ok(r) = log.read(at, 1 << 20, None) else {
            break;
        };
        if r.records.is_empty() || r.next_offset <= at {
            break;
        }
        assert_all_verify(&r.records, "what a recovered log serves");
        at = r.next_offset;
    }
    (log.log_start_offset(), log.log_end_offset())
}

/// Untrusted bytes as a partition's only segment and its offset and time
/// indexes. Layout: `[mode][index len][time index len][index][time index]
/// [segment...]`; mode bit 0 opens and closes the log cleanly first (so
/// checkpoints say "clean" and the next open trusts the indexes), bits 1
/// and 2 leave the offset / time index out. The log opens (or fails with
/// a named error), serves only batches that verify, and recovery is a
/// fixpoint: opening it again, as after a crash, gives the same start and
/// end offsets.
pub fn segment_recovery(data: &[u8]) {
    let [mode, index_len, time_len, rest @ ..] = data else {
        return;
    };
    let (index, rest) = rest.split_at(usize::from(*index_len).min(rest.len()));
    let (time_index, segment) = rest.split_at(usize::from(*time_len).min(rest.len()));
    let dir = tempfile::tempdir().expect("temp dir");
    let file = |suffix: &str| dir.path().join(format!("00000000000000000000{suffix}"));
    std::fs::write(file(".log"), segment).expect("write");
    if mode & 1 == 1 {
        let Ok(log) = open(dir.path()) else {
            return;
        };
        if log.close().is_err() {
            return;
        }
    }
    if mode & 2 == 0 {
        std::fs::write(file(".index"), index).expect("write");
    }
    if mode & 4 == 0 {
        std::fs::write(file(".timeindex"), time_index).expect("write");
    }
    let Ok(log) = open(dir.path()) else {
        return;
    };
    let first = read_all(&log);
    drop(log);
    let log = open(dir.path()).expect("a log that opened once opens again");
    assert_eq!(
        read_all(&log),
        first,
        "a second recovery moved the log's start or end"
    );
}

fn open(dir: &Path) -> Result<PartitionLog, LogError> {
    PartitionLog::open(dir, LogConfig::default())
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

/// Untrusted text as a server's TOML config file: flags or a named error;
/// every key kept is one `--flag` in the output, and a key the command
/// line or environment set is left out.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let elsewhere = |k: &str| k.len() % 7 == 3;
    if let Ok((flags, keys)) = inputs::config_flags(text, "fuzz.toml", elsewhere) {
        let named: Vec<_> = flags
            .iter()
            .filter_map(|f| f.to_str()?.strip_prefix("--"))
            .collect();
        for key in &keys {
            assert!(!elsewhere(key), "{key} was set elsewhere but kept");
            assert!(named.contains(&key.as_str()), "{key} has no --flag");
        }
        assert!(keys.len() <= flags.len());
    }
}
