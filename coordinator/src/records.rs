//! Conversions between the records stored in the metadata store (prost
//! messages of `ballast.v1.metadata`) and the coordinator's in-memory types.
//! Decoding never panics: a malformed record is a named error.

use ballast_proto::v1::metadata::{PartitionChunk, PartitionRecord};
use prost::Message;

use crate::partition::PartitionState;

/// A stored record that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt {what} record at {key}: {reason}")]
pub struct CorruptRecord {
    /// Record type.
    pub what: &'static str,
    /// Key, lossily printed.
    pub key: String,
    /// Decoder message.
    pub reason: String,
}

/// Decode a prost record, naming the key on failure.
pub fn decode<M: Message + Default>(
    what: &'static str,
    key: &[u8],
    value: &[u8],
) -> Result<M, CorruptRecord> {
    M::decode(value).map_err(|e| CorruptRecord {
        what,
        key: String::from_utf8_lossy(key).into_owned(),
        reason: e.to_string(),
    })
}

impl From<&PartitionState> for PartitionRecord {
    fn from(s: &PartitionState) -> Self {
        PartitionRecord {
            replicas: s.replicas.clone(),
            leader: s.leader,
            leader_epoch: s.leader_epoch,
            isr: s.isr.clone(),
            partition_epoch: s.partition_epoch,
            adding_replicas: s.adding.clone(),
            removing_replicas: s.removing.clone(),
        }
    }
}

impl From<PartitionRecord> for PartitionState {
    fn from(r: PartitionRecord) -> Self {
        PartitionState {
            replicas: r.replicas,
            leader: r.leader,
            leader_epoch: r.leader_epoch,
            isr: r.isr,
            partition_epoch: r.partition_epoch,
            adding: r.adding_replicas,
            removing: r.removing_replicas,
        }
    }
}

/// Encode partitions `[first, first + states.len())` as one chunk.
pub fn encode_chunk(first_partition: i32, states: &[PartitionState]) -> Vec<u8> {
    PartitionChunk {
        first_partition,
        partitions: states.iter().map(PartitionRecord::from).collect(),
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_round_trip_and_corruption() {
        let states = vec![
            PartitionState::new(vec![1, 2, 3]),
            PartitionState::new(vec![2, 3, 1]),
        ];
        let bytes = encode_chunk(1000, &states);
        let chunk: PartitionChunk = decode("chunk", b"k", &bytes).unwrap();
        assert_eq!(chunk.first_partition, 1000);
        let back: Vec<PartitionState> = chunk.partitions.into_iter().map(Into::into).collect();
        assert_eq!(back, states);
        let err = decode::<PartitionChunk>("chunk", b"k", &[0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(err.what, "chunk");
        // ~18 bytes per RF-3 partition, as keys.rs claims.
        let many: Vec<PartitionState> = (0..1000)
            .map(|i| PartitionState::new(vec![i, i + 1, i + 2]))
            .collect();
        assert!(encode_chunk(0, &many).len() < 20 * 1024);
    }
}
