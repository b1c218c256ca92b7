//! The key layout in the metadata store. Every key of a cluster lives under
//! `/ballast/<cluster id>/`; this module is the only place that spells keys.
//!
//! | key | record |
//! |---|---|
//! | `coordinator/election/` | election candidates (see `store::election`) |
//! | `brokers/<id:010>` | `BrokerRecord` |
//! | `topics/<name>` | `TopicRecord` |
//! | `partitions/<name>/<chunk:06>` | `PartitionChunk` of [`CHUNK_PARTITIONS`] partitions |
//! | `reassignment/current` | `ReassignmentRecord` (the latest reassignment) |
//! | `reassignment/plan/<id>/<chunk:06>` | `ReassignmentChunk` of its plan |
//!
//! Broker ids are zero-padded so a prefix range returns them in id order.

/// Partitions per stored chunk. One leader change rewrites one chunk
/// (about 18 KiB at RF 3); creating 10,000 partitions writes 10 chunks, which
/// fit in one transaction.
pub const CHUNK_PARTITIONS: i32 = 1000;

/// Keys of one cluster.
#[derive(Debug, Clone)]
pub struct Keys {
    root: String,
}

impl Keys {
    /// Keys under `/ballast/<cluster_id>/`.
    pub fn new(cluster_id: &str) -> Self {
        Keys {
            root: format!("/ballast/{cluster_id}/"),
        }
    }

    /// Everything of this cluster.
    pub fn root(&self) -> Vec<u8> {
        self.root.as_bytes().to_vec()
    }

    /// The election prefix of the coordinators.
    pub fn election(&self) -> Vec<u8> {
        format!("{}coordinator/election/", self.root).into_bytes()
    }

    /// All broker records.
    pub fn brokers(&self) -> Vec<u8> {
        format!("{}brokers/", self.root).into_bytes()
    }

    /// One broker record. Negative ids never reach here (validated at
    /// registration).
    pub fn broker(&self, id: i32) -> Vec<u8> {
        format!("{}brokers/{id:010}", self.root).into_bytes()
    }

    /// All topic records.
    pub fn topics(&self) -> Vec<u8> {
        format!("{}topics/", self.root).into_bytes()
    }

    /// One topic record.
    pub fn topic(&self, name: &str) -> Vec<u8> {
        format!("{}topics/{name}", self.root).into_bytes()
    }

    /// All partition chunks of all topics.
    pub fn all_partitions(&self) -> Vec<u8> {
        format!("{}partitions/", self.root).into_bytes()
    }

    /// All partition chunks of one topic.
    pub fn partitions(&self, topic: &str) -> Vec<u8> {
        format!("{}partitions/{topic}/", self.root).into_bytes()
    }

    /// Everything about reassignments.
    pub fn reassignments(&self) -> Vec<u8> {
        format!("{}reassignment/", self.root).into_bytes()
    }

    /// The latest reassignment's record.
    pub fn reassignment(&self) -> Vec<u8> {
        format!("{}reassignment/current", self.root).into_bytes()
    }

    /// Every plan chunk of every reassignment.
    pub fn reassignment_plans(&self) -> Vec<u8> {
        format!("{}reassignment/plan/", self.root).into_bytes()
    }

    /// The plan chunks of reassignment `id`.
    pub fn reassignment_plan(&self, id: &str) -> Vec<u8> {
        format!("{}reassignment/plan/{id}/", self.root).into_bytes()
    }

    /// One plan chunk of reassignment `id`.
    pub fn reassignment_chunk(&self, id: &str, chunk: u32) -> Vec<u8> {
        format!("{}reassignment/plan/{id}/{chunk:06}", self.root).into_bytes()
    }

    /// One partition chunk.
    pub fn chunk(&self, topic: &str, chunk: u32) -> Vec<u8> {
        format!("{}partitions/{topic}/{chunk:06}", self.root).into_bytes()
    }

    /// Parse a chunk key back into (topic, chunk index).
    pub fn parse_chunk<'k>(&self, key: &'k [u8]) -> Option<(&'k str, u32)> {
        let s = std::str::from_utf8(key).ok()?;
        let rest = s.strip_prefix(&self.root)?.strip_prefix("partitions/")?;
        let (topic, chunk) = rest.rsplit_once('/')?;
        Some((topic, chunk.parse().ok()?))
    }
}

/// The chunk index holding partition `p`.
pub fn chunk_of(partition: i32) -> u32 {
    (partition / CHUNK_PARTITIONS) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let k = Keys::new("c1");
        assert_eq!(k.broker(7), b"/ballast/c1/brokers/0000000007".to_vec());
        assert_eq!(
            k.chunk("orders", 3),
            b"/ballast/c1/partitions/orders/000003".to_vec()
        );
        assert_eq!(k.parse_chunk(&k.chunk("a.b-c", 12)), Some(("a.b-c", 12)));
        assert_eq!(k.parse_chunk(b"/ballast/c2/partitions/x/000001"), None);
        assert!(k.chunk("orders", 0).starts_with(&k.partitions("orders")));
        assert!(!k.chunk("orders2", 0).starts_with(&k.partitions("orders")));
        assert_eq!((chunk_of(0), chunk_of(999), chunk_of(1000)), (0, 0, 1));
    }
}
