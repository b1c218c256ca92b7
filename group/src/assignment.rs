//! Sets of partitions by topic, the currency of membership: what a member
//! owns, is assigned, is revoking, or is targeted to own.
//!
//! An [`Assignment`] never holds a topic with an empty set, so two equal
//! sets of partitions compare equal.

use std::collections::{BTreeMap, BTreeSet};

use ballast_proto::v1::TopicPartitions;

/// Topic -> partitions. Invariant: no empty partition sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment(BTreeMap<String, BTreeSet<i32>>);

impl Assignment {
    /// The empty assignment.
    pub fn new() -> Self {
        Assignment::default()
    }

    /// From `(topic, partition)` pairs.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, i32)>) -> Self {
        let mut a = Assignment::new();
        for (t, p) in pairs {
            a.insert(t, p);
        }
        a
    }

    /// Adds one partition.
    pub fn insert(&mut self, topic: &str, partition: i32) {
        match self.0.get_mut(topic) {
            Some(s) => {
                s.insert(partition);
            }
            None => {
                self.0.insert(topic.to_owned(), BTreeSet::from([partition]));
            }
        }
    }

    /// Whether it holds the partition.
    pub fn contains(&self, topic: &str, partition: i32) -> bool {
        self.0.get(topic).is_some_and(|s| s.contains(&partition))
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of partitions.
    pub fn len(&self) -> usize {
        self.0.values().map(BTreeSet::len).sum()
    }

    /// Every `(topic, partition)`, ordered.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i32)> + '_ {
        self.0
            .iter()
            .flat_map(|(t, ps)| ps.iter().map(move |&p| (t.as_str(), p)))
    }

    /// Topic -> partitions.
    pub fn topics(&self) -> &BTreeMap<String, BTreeSet<i32>> {
        &self.0
    }

    /// The partitions held by both.
    pub fn intersection(&self, other: &Assignment) -> Assignment {
        self.filter(|t, p| other.contains(t, p))
    }

    /// The partitions of `self` not in `other`.
    pub fn difference(&self, other: &Assignment) -> Assignment {
        self.filter(|t, p| !other.contains(t, p))
    }

    /// The partitions of `self` for which `keep` holds.
    pub fn filter(&self, mut keep: impl FnMut(&str, i32) -> bool) -> Assignment {
        Assignment::from_pairs(self.iter().filter(|&(t, p)| keep(t, p)))
    }

    /// Both together.
    pub fn union(&self, other: &Assignment) -> Assignment {
        let mut out = self.clone();
        for (t, p) in other.iter() {
            out.insert(t, p);
        }
        out
    }

    /// Whether any partition is in both.
    pub fn overlaps(&self, other: &Assignment) -> bool {
        self.iter().any(|(t, p)| other.contains(t, p))
    }

    /// Whether every partition of `self` is in `other`.
    pub fn is_subset(&self, other: &Assignment) -> bool {
        self.iter().all(|(t, p)| other.contains(t, p))
    }

    /// As the wire and record format list it.
    pub fn to_proto(&self) -> Vec<TopicPartitions> {
        self.0
            .iter()
            .map(|(t, ps)| TopicPartitions {
                topic: t.clone(),
                partitions: ps.iter().copied().collect(),
            })
            .collect()
    }

    /// From the wire: duplicates merge, empty topics vanish.
    pub fn from_proto(list: &[TopicPartitions]) -> Assignment {
        let mut a = Assignment::new();
        for tp in list {
            for &p in &tp.partitions {
                a.insert(&tp.topic, p);
            }
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let a = Assignment::from_pairs([("t", 0), ("t", 1), ("u", 0)]);
        let b = Assignment::from_pairs([("t", 1), ("v", 2)]);
        assert_eq!(a.intersection(&b), Assignment::from_pairs([("t", 1)]));
        assert_eq!(
            a.difference(&b),
            Assignment::from_pairs([("t", 0), ("u", 0)])
        );
        assert_eq!(a.union(&b).len(), 4);
        assert!(a.overlaps(&b));
        assert!(Assignment::from_pairs([("t", 1)]).is_subset(&a));
        assert!(!b.is_subset(&a));
        // No empty topic survives a difference.
        assert!(b.difference(&b).topics().is_empty());
        assert_eq!(Assignment::from_proto(&a.to_proto()), a);
    }
}
