//! Topic names and per-topic configuration: validation with Kafka's rules and
//! Kafka's wording, and the typed configuration the rest of the cluster reads.
//!
//! Pure: no store, no clock. The admin service calls these before it plans
//! any write, so an invalid request never has a partial effect.

use std::collections::BTreeMap;

/// Kafka's `Topic.MAX_NAME_LENGTH`.
pub const MAX_TOPIC_NAME_LENGTH: usize = 249;

/// The internal offsets topic.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Why a topic request is refused. Messages follow Kafka's wording where
/// Kafka has one (`InvalidTopicException`, `ConfigException`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// Kafka: InvalidTopicException.
    #[error("Topic name is illegal, it can't be empty")]
    EmptyName,
    /// Kafka: InvalidTopicException.
    #[error("Topic name cannot be \".\" or \"..\"")]
    DotName,
    /// Kafka: InvalidTopicException.
    #[error(
        "Topic name is illegal, it can't be longer than {max} characters, Topic name: {0}",
        max = MAX_TOPIC_NAME_LENGTH
    )]
    NameTooLong(String),
    /// Kafka: InvalidTopicException.
    #[error(
        "Topic name \"{0}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
    )]
    IllegalCharacter(String),
    /// Kafka: InvalidTopicException.
    #[error("Topic '{topic}' collides with existing topic: {existing}")]
    Collision { topic: String, existing: String },
    /// The name is reserved for a topic the cluster creates itself.
    #[error("Topic name {0} is reserved for the cluster's internal use")]
    Reserved(String),
    /// Kafka: ConfigException.
    #[error("Invalid value {value} for configuration {name}: {rule}")]
    InvalidConfig {
        name: String,
        value: String,
        rule: String,
    },
    /// Kafka: InvalidConfigurationException for an unknown key.
    #[error("Unknown topic config name: {0}")]
    UnknownConfig(String),
}

/// Kafka's `Topic.validate`: 1 to 249 characters from `[a-zA-Z0-9._-]`, and
/// not `.` or `..`. Checks run in Kafka's order.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    if name.is_empty() {
        return Err(TopicError::EmptyName);
    }
    if name == "." || name == ".." {
        return Err(TopicError::DotName);
    }
    // Kafka counts UTF-16 units; every legal name is ASCII, and an illegal one
    // is refused by the next check anyway, so the order of the two checks
    // only matters for the message: count as Java does.
    if name.encode_utf16().count() > MAX_TOPIC_NAME_LENGTH {
        return Err(TopicError::NameTooLong(name.to_owned()));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(TopicError::IllegalCharacter(name.to_owned()));
    }
    Ok(())
}

/// Kafka's `Topic.unifyCollisionChars`: metrics names replace '.' with '_',
/// so two topics that differ only there would collide.
pub fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// Kafka's collision check against the existing topic names.
pub fn check_collision<'a>(
    name: &str,
    existing: impl IntoIterator<Item = &'a str>,
) -> Result<(), TopicError> {
    if !name.contains(['.', '_']) {
        return Ok(());
    }
    let key = collision_key(name);
    for other in existing {
        if other != name && collision_key(other) == key {
            return Err(TopicError::Collision {
                topic: name.to_owned(),
                existing: other.to_owned(),
            });
        }
    }
    Ok(())
}

/// `cleanup.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    /// Delete old segments by time and size.
    Delete,
    /// Keep the latest record per key.
    Compact,
    /// Both.
    CompactDelete,
}

/// How the leader acknowledges with respect to followers (MetaQ's
/// SYNC_MASTER / ASYNC_MASTER): `Sync` waits for the ISR when the producer
/// asks for acks=all; `Async` acknowledges once the leader has the batch and
/// replicates in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicationMode {
    /// Wait for the ISR (acks=all honoured).
    Sync,
    /// Leader-only acknowledgement; followers catch up asynchronously.
    Async,
}

/// The per-topic configuration, typed. Defaults are Kafka's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// `min.insync.replicas` (default 1, at least 1).
    pub min_insync_replicas: i32,
    /// `retention.ms` (default 7 days, -1 = forever).
    pub retention_ms: i64,
    /// `retention.bytes` (default -1 = unbounded).
    pub retention_bytes: i64,
    /// `cleanup.policy` (default delete).
    pub cleanup_policy: CleanupPolicy,
    /// `flush.messages`: fsync after this many messages (default: never by count).
    pub flush_messages: i64,
    /// `flush.ms`: fsync after this long (default: never by time).
    pub flush_ms: i64,
    /// `unclean.leader.election.enable` (default false).
    pub unclean_leader_election: bool,
    /// `replication.mode` (ours; default sync).
    pub replication_mode: ReplicationMode,
    /// `segment.bytes` (default 1 GiB).
    pub segment_bytes: i64,
    /// `segment.ms` (default 7 days).
    pub segment_ms: i64,
    /// `index.interval.bytes` (default 4096).
    pub index_interval_bytes: i64,
    /// `delete.retention.ms`: how long tombstones of a compacted topic live
    /// (default 1 day).
    pub delete_retention_ms: i64,
    /// `max.message.bytes`: largest batch (default 1,048,588 as Kafka).
    pub max_message_bytes: i64,
    /// `flush.mode` (ours): MetaQ's SYNC_FLUSH (`sync`: fsync before
    /// acknowledging) or ASYNC_FLUSH (`async`: flush in the background every
    /// `flush.ms`); unset: Kafka's `flush.messages` / `flush.ms`.
    pub flush_mode: Option<FlushMode>,
}

/// MetaQ's flush presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushMode {
    /// fsync before acknowledging.
    Sync,
    /// Acknowledge, flush in the background.
    Async,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            min_insync_replicas: 1,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy::Delete,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            unclean_leader_election: false,
            replication_mode: ReplicationMode::Sync,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            max_message_bytes: 1_048_588,
            flush_mode: None,
        }
    }
}

/// Every config key a topic accepts.
pub const TOPIC_CONFIG_KEYS: &[&str] = &[
    "min.insync.replicas",
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "flush.messages",
    "flush.ms",
    "unclean.leader.election.enable",
    "replication.mode",
    "segment.bytes",
    "segment.ms",
    "index.interval.bytes",
    "delete.retention.ms",
    "max.message.bytes",
    "flush.mode",
];

fn invalid(name: &str, value: &str, rule: &str) -> TopicError {
    TopicError::InvalidConfig {
        name: name.to_owned(),
        value: value.to_owned(),
        rule: rule.to_owned(),
    }
}

fn parse_long(name: &str, value: &str, at_least: i64) -> Result<i64, TopicError> {
    let v: i64 = value.trim().parse().map_err(|_| {
        invalid(
            name,
            value,
            "Expected value to be a 64-bit integer, but it was not",
        )
    })?;
    if v < at_least {
        return Err(invalid(
            name,
            value,
            &format!("Value must be at least {at_least}"),
        ));
    }
    Ok(v)
}

fn parse_range(name: &str, value: &str, at_least: i64, at_most: i64) -> Result<i64, TopicError> {
    let v = parse_long(name, value, at_least)?;
    if v > at_most {
        return Err(invalid(
            name,
            value,
            &format!("Value must be no more than {at_most}"),
        ));
    }
    Ok(v)
}

impl TopicConfig {
    /// Apply `key=value` overrides on top of `self`, validating each as Kafka
    /// does. Unknown keys are refused.
    pub fn with_overrides(
        mut self,
        overrides: &BTreeMap<String, String>,
    ) -> Result<Self, TopicError> {
        for (k, v) in overrides {
            match k.as_str() {
                "min.insync.replicas" => {
                    let n = parse_long(k, v, 1)?;
                    self.min_insync_replicas = i32::try_from(n).map_err(|_| {
                        invalid(
                            k,
                            v,
                            "Expected value to be a 32-bit integer, but it was not",
                        )
                    })?;
                }
                "retention.ms" => self.retention_ms = parse_long(k, v, -1)?,
                "retention.bytes" => self.retention_bytes = parse_long(k, v, i64::MIN)?,
                "flush.messages" => self.flush_messages = parse_long(k, v, 1)?,
                "flush.ms" => self.flush_ms = parse_long(k, v, 0)?,
                "cleanup.policy" => {
                    let mut compact = false;
                    let mut delete = false;
                    for part in v.split(',').map(str::trim) {
                        match part {
                            "compact" => compact = true,
                            "delete" => delete = true,
                            _ => {
                                return Err(invalid(
                                    k,
                                    v,
                                    "String must be one of: compact, delete",
                                ));
                            }
                        }
                    }
                    self.cleanup_policy = match (compact, delete) {
                        (true, true) => CleanupPolicy::CompactDelete,
                        (true, false) => CleanupPolicy::Compact,
                        _ => CleanupPolicy::Delete,
                    };
                }
                "unclean.leader.election.enable" => {
                    self.unclean_leader_election = match v.trim().to_ascii_lowercase().as_str() {
                        "true" => true,
                        "false" => false,
                        _ => {
                            return Err(invalid(k, v, "Expected value to be either true or false"));
                        }
                    };
                }
                "replication.mode" => {
                    self.replication_mode = match v.trim() {
                        "sync" => ReplicationMode::Sync,
                        "async" => ReplicationMode::Async,
                        _ => return Err(invalid(k, v, "String must be one of: sync, async")),
                    };
                }
                "segment.bytes" => self.segment_bytes = parse_range(k, v, 14, i64::from(i32::MAX))?,
                "segment.ms" => self.segment_ms = parse_long(k, v, 1)?,
                "index.interval.bytes" => {
                    self.index_interval_bytes = parse_range(k, v, 0, i64::from(i32::MAX))?;
                }
                "delete.retention.ms" => self.delete_retention_ms = parse_long(k, v, 0)?,
                "max.message.bytes" => self.max_message_bytes = parse_range(k, v, 0, 16 << 20)?,
                "flush.mode" => {
                    self.flush_mode = Some(match v.trim() {
                        "sync" => FlushMode::Sync,
                        "async" => FlushMode::Async,
                        _ => return Err(invalid(k, v, "String must be one of: sync, async")),
                    });
                }
                _ => return Err(TopicError::UnknownConfig(k.clone())),
            }
        }
        Ok(self)
    }

    /// The configuration as `key=value` pairs (every key, defaults included).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let policy = match self.cleanup_policy {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        };
        let mode = match self.replication_mode {
            ReplicationMode::Sync => "sync",
            ReplicationMode::Async => "async",
        };
        [
            ("min.insync.replicas", self.min_insync_replicas.to_string()),
            ("retention.ms", self.retention_ms.to_string()),
            ("retention.bytes", self.retention_bytes.to_string()),
            ("cleanup.policy", policy.to_owned()),
            ("flush.messages", self.flush_messages.to_string()),
            ("flush.ms", self.flush_ms.to_string()),
            (
                "unclean.leader.election.enable",
                self.unclean_leader_election.to_string(),
            ),
            ("replication.mode", mode.to_owned()),
            ("segment.bytes", self.segment_bytes.to_string()),
            ("segment.ms", self.segment_ms.to_string()),
            (
                "index.interval.bytes",
                self.index_interval_bytes.to_string(),
            ),
            ("delete.retention.ms", self.delete_retention_ms.to_string()),
            ("max.message.bytes", self.max_message_bytes.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(self.flush_mode.map(|m| {
            let m = match m {
                FlushMode::Sync => "sync",
                FlushMode::Async => "async",
            };
            ("flush.mode".to_owned(), m.to_owned())
        }))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka() {
        for ok in ["a", "orders", "a.b_c-D9", &"x".repeat(249)] {
            assert_eq!(validate_topic_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_topic_name(""), Err(TopicError::EmptyName));
        assert_eq!(validate_topic_name("."), Err(TopicError::DotName));
        assert_eq!(validate_topic_name(".."), Err(TopicError::DotName));
        assert_eq!(validate_topic_name("..."), Ok(()));
        let long = "x".repeat(250);
        assert_eq!(
            validate_topic_name(&long),
            Err(TopicError::NameTooLong(long.clone()))
        );
        assert_eq!(
            validate_topic_name("a b").map_err(|e| e.to_string()),
            Err("Topic name \"a b\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'".into())
        );
        assert!(validate_topic_name("é").is_err());
        assert!(validate_topic_name("a/b").is_err());
    }

    #[test]
    fn collisions() {
        assert_eq!(
            check_collision("a.b", ["a_b", "c"]).map_err(|e| e.to_string()),
            Err("Topic 'a.b' collides with existing topic: a_b".into())
        );
        assert!(check_collision("a_b", ["a.b"]).is_err());
        assert_eq!(check_collision("a.b", ["a.b"]), Ok(()));
        assert_eq!(check_collision("ab", ["a_b"]), Ok(()));
    }

    #[test]
    fn configs_validate_and_round_trip() {
        let over: BTreeMap<String, String> = [
            ("min.insync.replicas", "2"),
            ("cleanup.policy", "compact,delete"),
            ("unclean.leader.election.enable", "TRUE"),
            ("replication.mode", "async"),
            ("retention.ms", "-1"),
            ("segment.bytes", "1048576"),
            ("flush.mode", "sync"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let c = TopicConfig::default().with_overrides(&over).unwrap();
        assert_eq!(c.min_insync_replicas, 2);
        assert_eq!(c.cleanup_policy, CleanupPolicy::CompactDelete);
        assert!(c.unclean_leader_election);
        assert_eq!(c.replication_mode, ReplicationMode::Async);
        assert_eq!(
            (c.segment_bytes, c.flush_mode),
            (1_048_576, Some(FlushMode::Sync))
        );
        let again = TopicConfig::default().with_overrides(&c.to_map()).unwrap();
        assert_eq!(again, c);

        let bad = |k: &str, v: &str| {
            let m: BTreeMap<String, String> = [(k.to_owned(), v.to_owned())].into_iter().collect();
            TopicConfig::default()
                .with_overrides(&m)
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            bad("retention.ms", "-2"),
            Err(
                "Invalid value -2 for configuration retention.ms: Value must be at least -1".into()
            )
        );
        assert_eq!(
            bad("min.insync.replicas", "0"),
            Err(
                "Invalid value 0 for configuration min.insync.replicas: Value must be at least 1"
                    .into()
            )
        );
        assert!(bad("min.insync.replicas", "99999999999").is_err());
        assert!(bad("flush.messages", "x").is_err());
        assert!(bad("cleanup.policy", "shred").is_err());
        assert!(bad("segment.bytes", "13").is_err());
        assert!(bad("max.message.bytes", "99999999").is_err());
        assert!(bad("flush.mode", "sometimes").is_err());
        assert_eq!(
            bad("segment.jiggle", "1"),
            Err("Unknown topic config name: segment.jiggle".into())
        );
    }
}
