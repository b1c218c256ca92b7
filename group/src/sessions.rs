//! Session and rebalance deadlines of the members of one shard.
//!
//! Soft state: never persisted. A member's session is renewed by every
//! accepted heartbeat (not by a static leave, epoch -2, which lets the
//! session run out). A member that was told to revoke partitions has until
//! its rebalance timeout to report them released. A newly loaded shard
//! gives every member a full session, as a new coordinator must (the
//! members had no way to heartbeat it before). Time is a parameter (ms on
//! the host's monotonic clock).

use std::collections::HashMap;

use crate::state::{MemberState, Shard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Deadlines {
    session_at: i64,
    rebalance_at: Option<i64>,
}

/// Why a member is due for removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Expiry {
    /// No heartbeat within the session timeout.
    Session,
    /// Did not release its revoked partitions within the rebalance timeout.
    Rebalance,
}

/// Deadlines by (group, member).
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    deadlines: HashMap<(String, String), Deadlines>,
}

impl Sessions {
    /// Every member of `shard` with a full session from `now_ms`.
    pub fn loaded(shard: &Shard, now_ms: i64) -> Self {
        let mut s = Sessions::default();
        for (g, group) in shard.groups() {
            for m in group.members.values() {
                s.deadlines.insert(
                    (g.clone(), m.member_id.clone()),
                    Deadlines {
                        session_at: now_ms + i64::from(m.session_timeout_ms),
                        rebalance_at: (m.state == MemberState::UnrevokedPartitions)
                            .then(|| now_ms + i64::from(m.rebalance_timeout_ms)),
                    },
                );
            }
        }
        s
    }

    /// After an accepted heartbeat (records applied): renews the member's
    /// session; starts its rebalance clock when it must revoke, stops it
    /// when it need not. Forgets members no longer in the group.
    pub fn heartbeat(&mut self, shard: &Shard, group_id: &str, member_id: &str, now_ms: i64) {
        let key = (group_id.to_owned(), member_id.to_owned());
        let Some(m) = shard.group(group_id).and_then(|g| g.members.get(member_id)) else {
            self.deadlines.remove(&key);
            return;
        };
        let previous = self.deadlines.get(&key).and_then(|d| d.rebalance_at);
        let rebalance_at = (m.state == MemberState::UnrevokedPartitions)
            .then(|| previous.unwrap_or(now_ms + i64::from(m.rebalance_timeout_ms)));
        self.deadlines.insert(
            key,
            Deadlines {
                session_at: now_ms + i64::from(m.session_timeout_ms),
                rebalance_at,
            },
        );
    }

    /// Drops deadlines of members no longer in the shard (after a leave,
    /// a removal or a delete).
    pub fn retain_members(&mut self, shard: &Shard) {
        self.deadlines.retain(|(g, m), _| {
            shard
                .group(g)
                .is_some_and(|group| group.members.contains_key(m))
        });
    }

    /// Members whose session or rebalance deadline has passed, ordered.
    pub fn expired(&self, now_ms: i64) -> Vec<(String, String, Expiry)> {
        let mut out: Vec<(String, String, Expiry)> = self
            .deadlines
            .iter()
            .filter_map(|((g, m), d)| {
                if d.session_at <= now_ms {
                    Some((g.clone(), m.clone(), Expiry::Session))
                } else if d.rebalance_at.is_some_and(|t| t <= now_ms) {
                    Some((g.clone(), m.clone(), Expiry::Rebalance))
                } else {
                    None
                }
            })
            .collect();
        out.sort();
        out
    }

    /// The earliest deadline, for the host's timer.
    pub fn next_deadline(&self) -> Option<i64> {
        self.deadlines
            .values()
            .map(|d| d.rebalance_at.map_or(d.session_at, |r| r.min(d.session_at)))
            .min()
    }

    /// Members tracked.
    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    /// Whether none are tracked.
    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }
}
