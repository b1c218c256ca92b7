//! Reconciliation, the pure part: the desired partitions of one push against
//! what the agent hosts, giving a [`Plan`] of actions.
//!
//! Rules (the agent's side of "desired vs observed"):
//! * full push: the listed partitions are everything the agent must host;
//!   anything else hosted is removed. Delta push: the listed partitions are
//!   upserted and the `removed` ones go (a partition both listed and removed
//!   is upserted: the listing is the newer fact).
//! * a listed partition not hosted is created; one hosted under another
//!   topic id (topic deleted and recreated) is removed and created anew;
//! * for the same topic id, a record with lower `(leader_epoch,
//!   partition_epoch)` than the hosted one is skipped (the agent keeps the
//!   newer); an identical record needs no action; anything else is an
//!   update.
//!
//! No I/O, no clock, no lock: [`crate::partition_dir`] executes the plan and
//! [`apply`] folds the executed actions back into the hosted map, so the same
//! inputs always give the same plan.

use std::collections::{BTreeMap, BTreeSet};

use ballast_proto::v1::{AssignedPartition, PartitionRef};

use crate::partition::{PartitionKey, PartitionRecord};

/// What one push asks for, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Desired {
    /// The complete set to host.
    Full(Vec<PartitionRecord>),
    /// Changes only.
    Delta {
        /// Partitions to create or update.
        upserts: Vec<PartitionRecord>,
        /// Partitions to stop hosting.
        removed: Vec<PartitionKey>,
    },
}

impl Desired {
    /// Validates a push's partition lists: topic names, indexes, topic ids,
    /// and no partition listed twice. `removed` is ignored in a full push.
    pub fn from_push(
        full: bool,
        partitions: &[AssignedPartition],
        removed: &[PartitionRef],
    ) -> Result<Self, String> {
        let mut seen = BTreeSet::new();
        let mut upserts = Vec::with_capacity(partitions.len());
        for p in partitions {
            let record = PartitionRecord::from_proto(p)?;
            if !seen.insert(record.key()) {
                return Err(format!("partition {} is listed twice", record.key()));
            }
            upserts.push(record);
        }
        if full {
            return Ok(Self::Full(upserts));
        }
        let removed = removed
            .iter()
            .map(PartitionKey::from_proto)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::Delta { upserts, removed })
    }
}

/// One thing to do on disk for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the directory and write `partition.json`.
    Create(PartitionRecord),
    /// Rewrite `partition.json` (same topic id, newer or equal epochs, and
    /// new replicas or configs).
    Update(PartitionRecord),
    /// Only the leader, the ISR or the epochs changed: taken in memory,
    /// nothing written. `partition.json` keeps what a restart needs (topic
    /// id, replicas, configs); the leader, ISR and epochs in it are those
    /// of the last rewrite. Nothing reads them for roles or safety: a
    /// restarted agent leads or follows only once a push says so, and
    /// pushes built for its previous incarnation are refused by broker
    /// epoch. Skipping the write keeps a fencing (thousands of leader
    /// changes) off the disk.
    Refresh(PartitionRecord),
    /// Remove the directory of the old topic id, then create this one.
    Recreate {
        /// Topic id being replaced.
        old_topic_id: String,
        /// The new record.
        record: PartitionRecord,
    },
    /// Remove the directory.
    Remove(PartitionKey),
}

impl Action {
    /// The partition acted on.
    pub fn key(&self) -> PartitionKey {
        match self {
            Self::Create(r)
            | Self::Update(r)
            | Self::Refresh(r)
            | Self::Recreate { record: r, .. } => r.key(),
            Self::Remove(k) => k.clone(),
        }
    }
}

/// A listed partition the plan leaves alone because the agent already has a
/// newer record for the same topic id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The partition.
    pub key: PartitionKey,
    /// `(leader_epoch, partition_epoch)` hosted.
    pub have: (i32, i32),
    /// `(leader_epoch, partition_epoch)` in the push.
    pub got: (i32, i32),
}

/// The result of [`plan`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Removals first (in key order), then creations, recreations and
    /// updates (in key order).
    pub actions: Vec<Action>,
    /// Listed partitions left alone (stale epochs).
    pub skipped: Vec<Skipped>,
}

/// Plans the actions that bring `hosted` to `desired`.
pub fn plan(hosted: &BTreeMap<PartitionKey, PartitionRecord>, desired: &Desired) -> Plan {
    let (upserts, removals): (&[PartitionRecord], Vec<PartitionKey>) = match desired {
        Desired::Full(wanted) => {
            let keep: BTreeSet<PartitionKey> = wanted.iter().map(PartitionRecord::key).collect();
            let gone = hosted
                .keys()
                .filter(|k| !keep.contains(*k))
                .cloned()
                .collect();
            (wanted, gone)
        }
        Desired::Delta { upserts, removed } => {
            let listed: BTreeSet<PartitionKey> = upserts.iter().map(PartitionRecord::key).collect();
            let gone: BTreeSet<PartitionKey> = removed
                .iter()
                .filter(|k| hosted.contains_key(*k) && !listed.contains(*k))
                .cloned()
                .collect();
            (upserts, gone.into_iter().collect())
        }
    };

    let mut out = Plan {
        actions: removals.into_iter().map(Action::Remove).collect(),
        skipped: Vec::new(),
    };
    let mut sorted: Vec<&PartitionRecord> = upserts.iter().collect();
    sorted.sort_by_key(|r| r.key());
    for wanted in sorted {
        let key = wanted.key();
        match hosted.get(&key) {
            None => out.actions.push(Action::Create(wanted.clone())),
            Some(have) if have.topic_id != wanted.topic_id => out.actions.push(Action::Recreate {
                old_topic_id: have.topic_id.clone(),
                record: wanted.clone(),
            }),
            Some(have) if wanted.epochs() < have.epochs() => out.skipped.push(Skipped {
                key,
                have: have.epochs(),
                got: wanted.epochs(),
            }),
            Some(have) if have == wanted => {}
            Some(have) if have.replicas == wanted.replicas && have.configs == wanted.configs => {
                out.actions.push(Action::Refresh(wanted.clone()));
            }
            Some(_) => out.actions.push(Action::Update(wanted.clone())),
        }
    }
    out
}

/// Folds one executed action into the hosted map.
pub fn apply(hosted: &mut BTreeMap<PartitionKey, PartitionRecord>, action: &Action) {
    match action {
        Action::Create(r)
        | Action::Update(r)
        | Action::Refresh(r)
        | Action::Recreate { record: r, .. } => {
            hosted.insert(r.key(), r.clone());
        }
        Action::Remove(k) => {
            hosted.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(topic: &str, p: i32, topic_id: &str, leader: i32, le: i32, pe: i32) -> PartitionRecord {
        PartitionRecord {
            topic: topic.into(),
            topic_id: topic_id.into(),
            partition: p,
            replicas: vec![1, 2],
            leader,
            leader_epoch: le,
            isr: vec![1, 2],
            partition_epoch: pe,
            configs: BTreeMap::new(),
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    fn hosted(records: &[PartitionRecord]) -> BTreeMap<PartitionKey, PartitionRecord> {
        records.iter().map(|r| (r.key(), r.clone())).collect()
    }

    fn key(t: &str, p: i32) -> PartitionKey {
        PartitionKey::new(t, p).unwrap()
    }

    #[test]
    fn full_push_creates_missing_and_removes_unlisted() {
        let have = hosted(&[rec("a", 0, "A", 1, 0, 0), rec("old", 0, "O", 1, 0, 0)]);
        let want = Desired::Full(vec![rec("b", 1, "B", 2, 0, 0), rec("a", 0, "A", 1, 0, 0)]);
        let p = plan(&have, &want);
        assert_eq!(
            p.actions,
            vec![
                Action::Remove(key("old", 0)),
                Action::Create(rec("b", 1, "B", 2, 0, 0)),
            ]
        );
        assert!(p.skipped.is_empty());
    }

    #[test]
    fn applying_the_same_push_twice_is_a_no_op() {
        let want = Desired::Full(vec![rec("a", 0, "A", 1, 3, 4), rec("a", 1, "A", 2, 3, 4)]);
        let mut h = BTreeMap::new();
        for a in plan(&h, &want).actions {
            apply(&mut h, &a);
        }
        assert_eq!(plan(&h, &want), Plan::default());
    }

    #[test]
    fn delta_upserts_and_removes_only_what_it_names() {
        let have = hosted(&[rec("a", 0, "A", 1, 0, 0), rec("a", 1, "A", 1, 0, 0)]);
        let want = Desired::Delta {
            upserts: vec![rec("a", 0, "A", 2, 1, 1)],
            removed: vec![key("a", 1), key("never-hosted", 0)],
        };
        let p = plan(&have, &want);
        assert_eq!(
            p.actions,
            vec![
                Action::Remove(key("a", 1)),
                Action::Refresh(rec("a", 0, "A", 2, 1, 1)),
            ]
        );
    }

    #[test]
    fn delta_listing_wins_over_removal_of_the_same_partition() {
        let have = hosted(&[rec("a", 0, "A", 1, 0, 0)]);
        let want = Desired::Delta {
            upserts: vec![rec("a", 0, "A2", 1, 0, 0)],
            removed: vec![key("a", 0)],
        };
        assert_eq!(
            plan(&have, &want).actions,
            vec![Action::Recreate {
                old_topic_id: "A".into(),
                record: rec("a", 0, "A2", 1, 0, 0)
            }]
        );
    }

    #[test]
    fn new_topic_id_recreates_even_with_lower_epochs() {
        let have = hosted(&[rec("a", 0, "OLD", 1, 9, 9)]);
        let want = Desired::Full(vec![rec("a", 0, "NEW", 1, 0, 0)]);
        assert_eq!(
            plan(&have, &want).actions,
            vec![Action::Recreate {
                old_topic_id: "OLD".into(),
                record: rec("a", 0, "NEW", 1, 0, 0)
            }]
        );
    }

    #[test]
    fn lower_leader_epoch_for_same_topic_id_is_skipped() {
        let have = hosted(&[rec("a", 0, "A", 2, 5, 7)]);
        let want = Desired::Full(vec![rec("a", 0, "A", 1, 4, 99)]);
        let p = plan(&have, &want);
        assert!(p.actions.is_empty(), "{p:?}");
        assert_eq!(
            p.skipped,
            vec![Skipped {
                key: key("a", 0),
                have: (5, 7),
                got: (4, 99)
            }]
        );
        // A full push that skips a partition still keeps it: it is listed.
        let same_leader_older_isr = Desired::Full(vec![rec("a", 0, "A", 2, 5, 6)]);
        let p = plan(&have, &same_leader_older_isr);
        assert!(p.actions.is_empty());
        assert_eq!(p.skipped.len(), 1);
    }

    #[test]
    fn higher_epochs_update() {
        let have = hosted(&[rec("a", 0, "A", 1, 5, 7)]);
        let isr_change = Desired::Full(vec![rec("a", 0, "A", 1, 5, 8)]);
        assert_eq!(
            plan(&have, &isr_change).actions,
            vec![Action::Refresh(rec("a", 0, "A", 1, 5, 8))]
        );
        // New replicas or configs are written.
        let mut moved = rec("a", 0, "A", 1, 5, 9);
        moved.replicas = vec![1, 3];
        assert_eq!(
            plan(&have, &Desired::Full(vec![moved.clone()])).actions,
            vec![Action::Update(moved)]
        );
        let mut reconfigured = rec("a", 0, "A", 1, 5, 7);
        reconfigured
            .configs
            .insert("retention.ms".into(), "1000".into());
        assert_eq!(
            plan(&have, &Desired::Full(vec![reconfigured.clone()])).actions,
            vec![Action::Update(reconfigured)]
        );
    }

    #[test]
    fn push_validation() {
        let ap = |topic: &str, p: i32| AssignedPartition {
            topic: topic.into(),
            topic_id: "id".into(),
            partition: p,
            ..Default::default()
        };
        assert!(Desired::from_push(true, &[ap("a", 0), ap("a", 1)], &[]).is_ok());
        let dup = Desired::from_push(true, &[ap("a", 0), ap("a", 0)], &[]).unwrap_err();
        assert!(dup.contains("listed twice"), "{dup}");
        assert!(Desired::from_push(true, &[ap("../x", 0)], &[]).is_err());
        assert!(Desired::from_push(true, &[ap("a", -1)], &[]).is_err());
        let bad_removed = PartitionRef {
            topic: "a/b".into(),
            partition: 0,
        };
        assert!(Desired::from_push(false, &[], &[bad_removed]).is_err());
    }
}
