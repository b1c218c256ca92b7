//! [`LogConfig`]: what a partition log needs from its topic's configuration
//! (segment size and age, index interval, retention, cleanup policy, flush
//! policy, batch size limit), typed and validated.
//!
//! Built from the `key=value` map the coordinator pushes
//! ([`LogConfig::from_topic_config`]); the key names and defaults are
//! Kafka's, as in `coordinator/src/topic.rs`. Keys that are not about the
//! log (`min.insync.replicas`, `replication.mode`, ...) and unknown keys are
//! ignored: the coordinator validates the full set. A bad value is an error
//! naming its key. Pure: no I/O, no clock.

use std::collections::BTreeMap;
use std::time::Duration;

use ballast_record::header::MAX_BATCH_BYTES;

use super::error::LogConfigError;

/// Kafka's default `segment.bytes`: 1 GiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 30;
/// Kafka's default `segment.ms`: 7 days.
pub const DEFAULT_SEGMENT_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's default `index.interval.bytes`.
pub const DEFAULT_INDEX_INTERVAL_BYTES: u32 = 4096;
/// Kafka's default `retention.ms`: 7 days.
pub const DEFAULT_RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's default `delete.retention.ms`: 1 day.
pub const DEFAULT_DELETE_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;
/// Kafka's default `max.message.bytes` (1 MiB plus the batch overhead).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;
/// Background flush interval of the ASYNC_FLUSH preset when `flush.ms` is
/// not set (RocketMQ's `flushIntervalCommitLog`).
pub const DEFAULT_ASYNC_FLUSH_INTERVAL: Duration = Duration::from_millis(500);
/// Largest `segment.bytes`: index positions are 32-bit (as in Kafka).
pub const MAX_SEGMENT_BYTES: u64 = i32::MAX as u64;

/// `cleanup.policy`: delete old segments, compact by key, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// `delete`: retention by time and size.
    pub delete: bool,
    /// `compact`: keep the latest record per key.
    pub compact: bool,
}

impl CleanupPolicy {
    /// `cleanup.policy=delete` (the default).
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };
    /// `cleanup.policy=compact`.
    pub const COMPACT: CleanupPolicy = CleanupPolicy {
        delete: false,
        compact: true,
    };
}

/// When appended data is fsynced.
///
/// Presets: [`FlushPolicy::KAFKA_DEFAULT`] (never by count or time: rely on
/// replication, as Kafka does), [`FlushPolicy::sync_flush`] (MetaQ's
/// SYNC_FLUSH: fsync before acknowledging), [`FlushPolicy::async_flush`]
/// (MetaQ's ASYNC_FLUSH: acknowledge, fsync in the background).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    /// `flush.messages`: a flush is due once this many records are
    /// unflushed (`u64::MAX`: never by count).
    pub messages: u64,
    /// `flush.ms`: a flush is due once the oldest unflushed append is this
    /// old (`Duration::MAX`: never by time).
    pub interval: Duration,
    /// SYNC_FLUSH: a flush is due after every append; the caller fsyncs
    /// before acknowledging.
    pub sync_every_append: bool,
}

impl FlushPolicy {
    /// Kafka's defaults: never flush by count or time.
    pub const KAFKA_DEFAULT: FlushPolicy = FlushPolicy {
        messages: u64::MAX,
        interval: Duration::MAX,
        sync_every_append: false,
    };

    /// MetaQ's SYNC_FLUSH: every append is fsynced before it is
    /// acknowledged.
    pub fn sync_flush() -> FlushPolicy {
        FlushPolicy {
            sync_every_append: true,
            ..FlushPolicy::KAFKA_DEFAULT
        }
    }

    /// MetaQ's ASYNC_FLUSH: acknowledge at once, fsync in the background
    /// once the oldest unflushed append is `interval` old.
    pub fn async_flush(interval: Duration) -> FlushPolicy {
        FlushPolicy {
            interval,
            ..FlushPolicy::KAFKA_DEFAULT
        }
    }
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy::KAFKA_DEFAULT
    }
}

/// The log's view of a topic's configuration. Defaults are Kafka's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before it would pass this
    /// size (a segment always takes at least one append).
    pub segment_bytes: u64,
    /// `segment.ms`: roll once the newest appended timestamp is this much
    /// later than the active segment's first batch's timestamp.
    pub segment_ms: i64,
    /// `index.interval.bytes`: bytes of batches between two sparse index
    /// entries.
    pub index_interval_bytes: u32,
    /// `retention.ms`: delete segments whose largest timestamp is older
    /// (-1: keep forever).
    pub retention_ms: i64,
    /// `retention.bytes`: delete the oldest segments while the log is
    /// larger (-1: unbounded).
    pub retention_bytes: i64,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long compaction keeps a tombstone.
    pub delete_retention_ms: i64,
    /// `max.message.bytes`: largest batch a leader accepts.
    pub max_message_bytes: usize,
    /// `flush.messages`, `flush.ms` and `flush.mode`.
    pub flush: FlushPolicy,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            segment_ms: DEFAULT_SEGMENT_MS,
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            retention_ms: DEFAULT_RETENTION_MS,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy::DELETE,
            delete_retention_ms: DEFAULT_DELETE_RETENTION_MS,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            flush: FlushPolicy::KAFKA_DEFAULT,
        }
    }
}

/// Every key [`LogConfig::from_topic_config`] reads.
pub const LOG_CONFIG_KEYS: &[&str] = &[
    "segment.bytes",
    "segment.ms",
    "index.interval.bytes",
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "delete.retention.ms",
    "max.message.bytes",
    "flush.messages",
    "flush.ms",
    "flush.mode",
];

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> LogConfigError {
    LogConfigError {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: reason.into(),
    }
}

fn parse_long(key: &str, value: &str, min: i64, max: i64) -> Result<i64, LogConfigError> {
    let v: i64 = value.trim().parse().map_err(|_| {
        invalid(
            key,
            value,
            "Expected value to be a 64-bit integer, but it was not",
        )
    })?;
    if v < min {
        return Err(invalid(key, value, format!("Value must be at least {min}")));
    }
    if v > max {
        return Err(invalid(
            key,
            value,
            format!("Value must be no more than {max}"),
        ));
    }
    Ok(v)
}

/// A retention-like value: -1 (disabled) or at least 0.
fn parse_retention(key: &str, value: &str) -> Result<i64, LogConfigError> {
    let v = parse_long(key, value, i64::MIN, i64::MAX)?;
    if v < -1 {
        return Err(invalid(
            key,
            value,
            "Value must be -1 (disabled) or at least 0",
        ));
    }
    Ok(v)
}

impl LogConfig {
    /// Builds the configuration from a topic's `key=value` map (Kafka's
    /// keys, plus `flush.mode` = `sync` | `async` for MetaQ's presets),
    /// on top of the defaults. Non-log and unknown keys are ignored.
    ///
    /// `flush.mode=sync` makes every append due for a flush (the other
    /// flush keys then do not matter); `flush.mode=async` flushes in the
    /// background every `flush.ms` (500 ms when not set); without
    /// `flush.mode`, `flush.messages` and `flush.ms` apply as in Kafka.
    pub fn from_topic_config(map: &BTreeMap<String, String>) -> Result<LogConfig, LogConfigError> {
        let mut c = LogConfig::default();
        let mut flush_ms: Option<i64> = None;
        let mut flush_mode: Option<&str> = None;
        for (k, v) in map {
            match k.as_str() {
                "segment.bytes" => {
                    c.segment_bytes = parse_long(k, v, 1, MAX_SEGMENT_BYTES as i64)? as u64;
                }
                "segment.ms" => c.segment_ms = parse_long(k, v, 1, i64::MAX)?,
                "index.interval.bytes" => {
                    c.index_interval_bytes = parse_long(k, v, 0, i64::from(i32::MAX))? as u32;
                }
                "retention.ms" => c.retention_ms = parse_retention(k, v)?,
                "retention.bytes" => c.retention_bytes = parse_retention(k, v)?,
                "delete.retention.ms" => c.delete_retention_ms = parse_long(k, v, 0, i64::MAX)?,
                "max.message.bytes" => {
                    c.max_message_bytes = parse_long(k, v, 0, MAX_BATCH_BYTES as i64)? as usize;
                }
                "flush.messages" => c.flush.messages = parse_long(k, v, 1, i64::MAX)? as u64,
                "flush.ms" => flush_ms = Some(parse_long(k, v, 0, i64::MAX)?),
                "flush.mode" => match v.trim() {
                    "sync" => flush_mode = Some("sync"),
                    "async" => flush_mode = Some("async"),
                    _ => return Err(invalid(k, v, "String must be one of: sync, async")),
                },
                "cleanup.policy" => {
                    let mut policy = CleanupPolicy {
                        delete: false,
                        compact: false,
                    };
                    for part in v.split(',').map(str::trim) {
                        match part {
                            "compact" => policy.compact = true,
                            "delete" => policy.delete = true,
                            _ => {
                                return Err(invalid(
                                    k,
                                    v,
                                    "String must be one of: compact, delete",
                                ));
                            }
                        }
                    }
                    c.cleanup_policy = policy;
                }
                _ => {}
            }
        }
        // i64::MAX (the coordinator's "never") and above stay Duration::MAX.
        let flush_interval = flush_ms
            .filter(|ms| *ms < i64::MAX)
            .map(|ms| Duration::from_millis(ms as u64));
        c.flush = match flush_mode {
            Some("sync") => FlushPolicy::sync_flush(),
            Some(_) => FlushPolicy {
                messages: c.flush.messages,
                ..FlushPolicy::async_flush(flush_interval.unwrap_or(DEFAULT_ASYNC_FLUSH_INTERVAL))
            },
            None => FlushPolicy {
                interval: flush_interval.unwrap_or(Duration::MAX),
                ..c.flush
            },
        };
        Ok(c)
    }

    /// True when `cleanup.policy` includes `compact`.
    pub fn is_compacted(&self) -> bool {
        self.cleanup_policy.compact
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_kafkas() {
        let c = LogConfig::from_topic_config(&BTreeMap::new()).unwrap();
        assert_eq!(c, LogConfig::default());
        assert_eq!(c.segment_bytes, 1 << 30);
        assert_eq!(c.retention_bytes, -1);
        assert_eq!(c.flush, FlushPolicy::KAFKA_DEFAULT);
        assert!(!c.is_compacted());
    }

    #[test]
    fn reads_the_coordinators_map_and_ignores_other_keys() {
        let c = LogConfig::from_topic_config(&map(&[
            ("min.insync.replicas", "2"),
            ("replication.mode", "async"),
            ("retention.ms", "-1"),
            ("retention.bytes", "1000"),
            ("cleanup.policy", "compact,delete"),
            ("flush.messages", "9223372036854775807"),
            ("flush.ms", "9223372036854775807"),
            ("segment.bytes", "4096"),
            ("segment.ms", "60000"),
            ("delete.retention.ms", "10"),
            ("max.message.bytes", "2048"),
            ("index.interval.bytes", "0"),
        ]))
        .unwrap();
        assert_eq!(c.retention_ms, -1);
        assert_eq!(c.retention_bytes, 1000);
        assert_eq!(
            c.cleanup_policy,
            CleanupPolicy {
                delete: true,
                compact: true
            }
        );
        assert_eq!(c.flush.interval, Duration::MAX);
        assert_eq!(c.flush.messages, i64::MAX as u64);
        assert_eq!(
            (
                c.segment_bytes,
                c.segment_ms,
                c.delete_retention_ms,
                c.max_message_bytes,
                c.index_interval_bytes
            ),
            (4096, 60_000, 10, 2048, 0)
        );
    }

    #[test]
    fn flush_presets() {
        let sync = LogConfig::from_topic_config(&map(&[("flush.mode", "sync")])).unwrap();
        assert_eq!(sync.flush, FlushPolicy::sync_flush());
        let asy = LogConfig::from_topic_config(&map(&[("flush.mode", "async")])).unwrap();
        assert_eq!(asy.flush.interval, DEFAULT_ASYNC_FLUSH_INTERVAL);
        assert!(!asy.flush.sync_every_append);
        let asy_ms =
            LogConfig::from_topic_config(&map(&[("flush.mode", "async"), ("flush.ms", "20")]))
                .unwrap();
        assert_eq!(asy_ms.flush.interval, Duration::from_millis(20));
        let kafka =
            LogConfig::from_topic_config(&map(&[("flush.messages", "3"), ("flush.ms", "1000")]))
                .unwrap();
        assert_eq!(
            kafka.flush,
            FlushPolicy {
                messages: 3,
                interval: Duration::from_secs(1),
                sync_every_append: false
            }
        );
    }

    #[test]
    fn errors_name_the_key() {
        for (k, v) in [
            ("segment.bytes", "0"),
            ("segment.bytes", "4294967296"),
            ("retention.ms", "-2"),
            ("retention.bytes", "x"),
            ("cleanup.policy", "compact,shred"),
            ("flush.mode", "sometimes"),
            ("flush.messages", "0"),
            ("max.message.bytes", "999999999"),
        ] {
            let e = LogConfig::from_topic_config(&map(&[(k, v)])).unwrap_err();
            assert_eq!(e.key, k);
            assert_eq!(e.value, v);
            assert!(e.to_string().contains(k), "{e}");
        }
    }
}
