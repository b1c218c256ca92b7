//! The records of `__consumer_offsets` and their bytes.
//!
//! Three kinds, each keyed so that compaction keeps exactly the latest state
//! of one thing: the group's metadata (key: group), one member (group,
//! member id), one committed offset (group, topic, partition). A record
//! without a value is a tombstone: the key's thing is gone.
//!
//! Keys: a big-endian u16 kind (1 metadata, 2 member, 3 offset), then each
//! string as a big-endian u16 length and its UTF-8 bytes, then (offsets) the
//! partition as a big-endian i32. Values: the protobuf messages
//! `GroupMetadataValue`, `GroupMemberValue` and `OffsetCommitValue` of
//! `group.proto`. Decoding checks every length against the bytes present;
//! it never panics on any input.

use ballast_proto::v1::{
    GroupMemberValue, GroupMetadataValue, OffsetCommitValue, TopicPartitionCount,
};
use prost::Message;

use crate::assignment::Assignment;
use crate::state::{CommittedOffset, GroupMetadata, Member, MemberState};

const KIND_METADATA: u16 = 1;
const KIND_MEMBER: u16 = 2;
const KIND_OFFSET: u16 = 3;

/// One record of the offsets topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRecord {
    /// The group's epochs and subscription metadata (`None`: deleted).
    Metadata {
        /// Group id.
        group_id: String,
        /// The metadata.
        value: Option<GroupMetadata>,
    },
    /// One member (`None`: left or removed).
    Member {
        /// Group id.
        group_id: String,
        /// Member id.
        member_id: String,
        /// The member.
        value: Option<Member>,
    },
    /// One committed offset (`None`: deleted).
    Offset {
        /// Group id.
        group_id: String,
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// The offset.
        value: Option<CommittedOffset>,
    },
}

/// Bytes that are not a record of this format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The key is malformed.
    #[error("bad offsets-topic key: {0}")]
    BadKey(String),
    /// The key's kind is one this version does not know.
    #[error("unknown offsets-topic record kind {0}")]
    UnknownKind(u16),
    /// The value does not decode.
    #[error("bad offsets-topic value: {0}")]
    BadValue(String),
}

impl GroupRecord {
    /// The group the record belongs to.
    pub fn group_id(&self) -> &str {
        match self {
            GroupRecord::Metadata { group_id, .. }
            | GroupRecord::Member { group_id, .. }
            | GroupRecord::Offset { group_id, .. } => group_id,
        }
    }

    /// Whether it deletes its key.
    pub fn is_tombstone(&self) -> bool {
        match self {
            GroupRecord::Metadata { value, .. } => value.is_none(),
            GroupRecord::Member { value, .. } => value.is_none(),
            GroupRecord::Offset { value, .. } => value.is_none(),
        }
    }

    /// The key bytes. Strings longer than 65,535 bytes cannot be encoded;
    /// the handlers refuse such ids before any record is made.
    pub fn key(&self) -> Vec<u8> {
        let mut k = Vec::with_capacity(64);
        match self {
            GroupRecord::Metadata { group_id, .. } => {
                k.extend_from_slice(&KIND_METADATA.to_be_bytes());
                put_str(&mut k, group_id);
            }
            GroupRecord::Member {
                group_id,
                member_id,
                ..
            } => {
                k.extend_from_slice(&KIND_MEMBER.to_be_bytes());
                put_str(&mut k, group_id);
                put_str(&mut k, member_id);
            }
            GroupRecord::Offset {
                group_id,
                topic,
                partition,
                ..
            } => {
                k.extend_from_slice(&KIND_OFFSET.to_be_bytes());
                put_str(&mut k, group_id);
                put_str(&mut k, topic);
                k.extend_from_slice(&partition.to_be_bytes());
            }
        }
        k
    }

    /// The value bytes (`None`: a tombstone).
    pub fn value(&self) -> Option<Vec<u8>> {
        match self {
            GroupRecord::Metadata { value, .. } => value.as_ref().map(|m| {
                GroupMetadataValue {
                    group_epoch: m.group_epoch,
                    assignment_epoch: m.assignment_epoch,
                    subscription_metadata: m
                        .subscription_metadata
                        .iter()
                        .map(|(t, &n)| TopicPartitionCount {
                            topic: t.clone(),
                            partitions: n,
                        })
                        .collect(),
                }
                .encode_to_vec()
            }),
            GroupRecord::Member { value, .. } => value.as_ref().map(|m| {
                GroupMemberValue {
                    instance_id: m.instance_id.clone().unwrap_or_default(),
                    client_id: m.client_id.clone(),
                    subscribed_topics: m.subscribed_topics.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    member_epoch: m.member_epoch,
                    previous_member_epoch: m.previous_member_epoch,
                    state: m.state.code(),
                    assigned: m.assigned.to_proto(),
                    revoking: m.revoking.to_proto(),
                    target: m.target.to_proto(),
                }
                .encode_to_vec()
            }),
            GroupRecord::Offset { value, .. } => value.as_ref().map(|o| {
                OffsetCommitValue {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata.clone(),
                    commit_timestamp_ms: o.commit_timestamp_ms,
                }
                .encode_to_vec()
            }),
        }
    }

    /// Decodes a record from its key and value.
    pub fn decode(key: &[u8], value: Option<&[u8]>) -> Result<GroupRecord, RecordError> {
        let mut r = Reader { bytes: key };
        let kind = u16::from_be_bytes(r.array()?);
        let bad = |e: prost::DecodeError| RecordError::BadValue(e.to_string());
        let record = match kind {
            KIND_METADATA => {
                let group_id = r.string()?;
                let value = match value {
                    None => None,
                    Some(v) => {
                        let m = GroupMetadataValue::decode(v).map_err(bad)?;
                        Some(GroupMetadata {
                            group_epoch: m.group_epoch,
                            assignment_epoch: m.assignment_epoch,
                            subscription_metadata: m
                                .subscription_metadata
                                .into_iter()
                                .map(|t| (t.topic, t.partitions))
                                .collect(),
                        })
                    }
                };
                GroupRecord::Metadata { group_id, value }
            }
            KIND_MEMBER => {
                let group_id = r.string()?;
                let member_id = r.string()?;
                let value = match value {
                    None => None,
                    Some(v) => {
                        let m = GroupMemberValue::decode(v).map_err(bad)?;
                        Some(Member {
                            member_id: member_id.clone(),
                            instance_id: (!m.instance_id.is_empty()).then_some(m.instance_id),
                            client_id: m.client_id,
                            subscribed_topics: m.subscribed_topics,
                            rebalance_timeout_ms: m.rebalance_timeout_ms,
                            session_timeout_ms: m.session_timeout_ms,
                            member_epoch: m.member_epoch,
                            previous_member_epoch: m.previous_member_epoch,
                            state: MemberState::from_code(m.state),
                            assigned: Assignment::from_proto(&m.assigned),
                            revoking: Assignment::from_proto(&m.revoking),
                            target: Assignment::from_proto(&m.target),
                        })
                    }
                };
                GroupRecord::Member {
                    group_id,
                    member_id,
                    value,
                }
            }
            KIND_OFFSET => {
                let group_id = r.string()?;
                let topic = r.string()?;
                let partition = i32::from_be_bytes(r.array()?);
                let value = match value {
                    None => None,
                    Some(v) => {
                        let o = OffsetCommitValue::decode(v).map_err(bad)?;
                        Some(CommittedOffset {
                            offset: o.offset,
                            leader_epoch: o.leader_epoch,
                            metadata: o.metadata,
                            commit_timestamp_ms: o.commit_timestamp_ms,
                        })
                    }
                };
                GroupRecord::Offset {
                    group_id,
                    topic,
                    partition,
                    value,
                }
            }
            other => return Err(RecordError::UnknownKind(other)),
        };
        if !r.bytes.is_empty() {
            return Err(RecordError::BadKey(format!(
                "{} bytes after the key's last field",
                r.bytes.len()
            )));
        }
        Ok(record)
    }
}

fn put_str(k: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let Some((head, rest)) = self.bytes.split_first_chunk::<N>() else {
            return Err(RecordError::BadKey(format!(
                "needs {N} more bytes, has {}",
                self.bytes.len()
            )));
        };
        self.bytes = rest;
        Ok(*head)
    }

    fn string(&mut self) -> Result<String, RecordError> {
        let len = usize::from(u16::from_be_bytes(self.array()?));
        if self.bytes.len() < len {
            return Err(RecordError::BadKey(format!(
                "a string of {len} bytes with {} left",
                self.bytes.len()
            )));
        }
        let (s, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        String::from_utf8(s.to_vec()).map_err(|_| RecordError::BadKey("not UTF-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(r: &GroupRecord) -> GroupRecord {
        let v = r.value();
        match GroupRecord::decode(&r.key(), v.as_deref()) {
            Ok(d) => d,
            Err(e) => panic!("{r:?}: {e}"),
        }
    }

    #[test]
    fn every_kind_round_trips() {
        let member = Member {
            member_id: "m1".into(),
            instance_id: Some("i1".into()),
            client_id: "c".into(),
            subscribed_topics: vec!["a".into(), "b".into()],
            rebalance_timeout_ms: 300_000,
            session_timeout_ms: 45_000,
            member_epoch: 7,
            previous_member_epoch: 5,
            state: MemberState::UnrevokedPartitions,
            assigned: Assignment::from_pairs([("a", 0), ("a", 1)]),
            revoking: Assignment::from_pairs([("b", 3)]),
            target: Assignment::from_pairs([("a", 0), ("a", 1), ("a", 2)]),
        };
        let records = [
            GroupRecord::Metadata {
                group_id: "g".into(),
                value: Some(GroupMetadata {
                    group_epoch: 3,
                    assignment_epoch: 2,
                    subscription_metadata: [("a".to_string(), 4)].into_iter().collect(),
                }),
            },
            GroupRecord::Metadata {
                group_id: "".into(),
                value: None,
            },
            GroupRecord::Member {
                group_id: "g".into(),
                member_id: "m1".into(),
                value: Some(member),
            },
            GroupRecord::Member {
                group_id: "g".into(),
                member_id: "m1".into(),
                value: None,
            },
            GroupRecord::Offset {
                group_id: "g".into(),
                topic: "a".into(),
                partition: -5,
                value: Some(CommittedOffset {
                    offset: 42,
                    leader_epoch: 3,
                    metadata: "x".into(),
                    commit_timestamp_ms: 1_700_000_000_000,
                }),
            },
            GroupRecord::Offset {
                group_id: "é".into(),
                topic: "a".into(),
                partition: 0,
                value: None,
            },
        ];
        for r in &records {
            assert_eq!(&round_trip(r), r);
        }
    }

    #[test]
    fn keys_differ_per_thing() {
        let off = |g: &str, t: &str, p| GroupRecord::Offset {
            group_id: g.into(),
            topic: t.into(),
            partition: p,
            value: None,
        };
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        assert_ne!(off("ab", "c", 0).key(), off("a", "bc", 0).key());
        assert_ne!(off("g", "t", 0).key(), off("g", "t", 1).key());
        let meta = GroupRecord::Metadata {
            group_id: "g".into(),
            value: None,
        };
        assert_ne!(meta.key(), off("g", "", 0).key());
    }

    #[test]
    fn malformed_keys_are_errors_not_panics() {
        assert!(matches!(
            GroupRecord::decode(&[], None),
            Err(RecordError::BadKey(_))
        ));
        assert!(matches!(
            GroupRecord::decode(&[0, 9, 0, 0], None),
            Err(RecordError::UnknownKind(9))
        ));
        // A string length past the end.
        assert!(matches!(
            GroupRecord::decode(&[0, 1, 0, 200, b'g'], None),
            Err(RecordError::BadKey(_))
        ));
        // Trailing bytes.
        assert!(matches!(
            GroupRecord::decode(&[0, 1, 0, 1, b'g', 0], None),
            Err(RecordError::BadKey(_))
        ));
        // A value that is not the message.
        assert!(matches!(
            GroupRecord::decode(&[0, 1, 0, 1, b'g'], Some(&[0xff, 0xff, 0xff])),
            Err(RecordError::BadValue(_))
        ));
    }
}
