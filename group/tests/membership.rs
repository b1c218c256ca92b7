//! The group state machine driven without a network: scenario tests of
//! KIP-848 membership and offsets, and a property test that random
//! interleavings never give a partition to two members, always converge to
//! Kafka's range assignment, and that replaying the records rebuilds the
//! same state.

use std::collections::BTreeMap;

use ballast_assignor::{Member as RangeMember, TopicPartitions as RangeTopic, range_assign};
use ballast_group::{
    Assignment, Expiry, GroupConfig, GroupError, GroupRecord, GroupState, MemberState, Sessions,
    Shard,
};
use ballast_proto::v1::{
    CommitOffsetsRequest, CommitPartition, ErrorCode, FetchOffsetsRequest, GroupHeartbeatRequest,
    GroupHeartbeatResponse,
};
use proptest::prelude::*;

/// A coordinator shard plus the log of every record it wrote.
struct Coordinator {
    shard: Shard,
    log: Vec<GroupRecord>,
    topics: BTreeMap<String, i32>,
    config: GroupConfig,
}

impl Coordinator {
    fn new(topics: &[(&str, i32)]) -> Self {
        Coordinator {
            shard: Shard::new(),
            log: Vec::new(),
            topics: topics.iter().map(|(t, n)| (t.to_string(), *n)).collect(),
            config: GroupConfig::default(),
        }
    }

    fn persist(&mut self, records: Vec<GroupRecord>) {
        // Every record survives its own encoding, as it will in the log.
        for r in &records {
            let decoded = GroupRecord::decode(&r.key(), r.value().as_deref());
            assert_eq!(decoded.as_ref(), Ok(r));
        }
        self.shard.apply(&records);
        self.log.extend(records);
    }

    fn heartbeat(
        &mut self,
        req: &GroupHeartbeatRequest,
    ) -> Result<GroupHeartbeatResponse, GroupError> {
        let out = self.shard.heartbeat(req, &self.topics, &self.config)?;
        self.persist(out.records);
        Ok(out.response)
    }

    fn remove(&mut self, group: &str, member: &str) {
        let out = self
            .shard
            .remove_member(group, member, &self.topics)
            .expect("remove");
        self.persist(out.records);
    }

    /// The state a new coordinator rebuilds from the log.
    fn replayed(&self) -> Shard {
        let mut s = Shard::new();
        s.apply(&self.log);
        s
    }
}

/// A member as a client sees itself.
#[derive(Debug, Clone)]
struct Client {
    id: String,
    instance: Option<String>,
    epoch: i32,
    owned: Assignment,
    topics: Vec<String>,
}

impl Client {
    fn new(id: &str, topics: &[&str]) -> Self {
        Client {
            id: id.into(),
            instance: None,
            epoch: 0,
            owned: Assignment::new(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn request(&self, group: &str) -> GroupHeartbeatRequest {
        GroupHeartbeatRequest {
            group_id: group.into(),
            member_id: self.id.clone(),
            member_epoch: self.epoch,
            instance_id: self.instance.clone().unwrap_or_default(),
            rebalance_timeout_ms: 60_000,
            session_timeout_ms: 10_000,
            subscribed_topics: self.topics.clone(),
            owned: self.owned.to_proto(),
            client_id: "test".into(),
        }
    }

    /// Heartbeats and does what the answer says (release, take up).
    fn beat(&mut self, c: &mut Coordinator, group: &str) -> Result<(), GroupError> {
        match c.heartbeat(&self.request(group)) {
            Ok(r) => {
                self.epoch = r.member_epoch;
                self.owned = Assignment::from_proto(&r.assignment);
                Ok(())
            }
            Err(
                e @ (GroupError::FencedMemberEpoch { .. } | GroupError::UnknownMemberId { .. }),
            ) => {
                self.epoch = 0;
                self.owned = Assignment::new();
                Err(e)
            }
            Err(e) => Err(e),
        }
    }
}

fn expected_range(
    clients: &[Client],
    topics: &BTreeMap<String, i32>,
) -> BTreeMap<String, Assignment> {
    let members: Vec<RangeMember> = clients
        .iter()
        .map(|c| RangeMember {
            member_id: c.id.clone(),
            group_instance_id: c.instance.clone(),
            topics: c.topics.clone(),
        })
        .collect();
    let metadata: Vec<RangeTopic> = topics
        .iter()
        .map(|(t, &n)| RangeTopic {
            name: t.clone(),
            partitions: n as u32,
        })
        .collect();
    range_assign(&metadata, &members)
        .expect("range")
        .into_iter()
        .map(|(m, per_topic)| {
            let mut a = Assignment::new();
            for (t, ps) in per_topic {
                for p in ps {
                    a.insert(&t, p);
                }
            }
            (m, a)
        })
        .collect()
}

fn assert_disjoint(clients: &[Client]) {
    for (i, a) in clients.iter().enumerate() {
        for b in &clients[i + 1..] {
            assert!(
                !a.owned.overlaps(&b.owned),
                "{} and {} both own {:?}",
                a.id,
                b.id,
                a.owned.intersection(&b.owned)
            );
        }
    }
}

/// Heartbeats every client `rounds` times, checking ownership after each.
fn rounds(c: &mut Coordinator, clients: &mut [Client], group: &str, n: usize) {
    for _ in 0..n {
        for i in 0..clients.len() {
            let _ = clients[i].beat(c, group);
            assert_disjoint(clients);
        }
    }
}

fn assert_converged(c: &Coordinator, clients: &[Client], group: &str) {
    let expected = expected_range(clients, &c.topics);
    let g = c.shard.group(group).expect("group");
    assert_eq!(g.state(), GroupState::Stable, "{g:#?}");
    for cl in clients {
        assert_eq!(cl.owned, expected[&cl.id], "{}", cl.id);
        assert_eq!(cl.epoch, g.assignment_epoch());
    }
    assert_eq!(&c.replayed(), &c.shard);
}

#[test]
fn three_members_get_the_range_assignment_and_two_survivors_take_over() {
    let mut c = Coordinator::new(&[("orders", 7)]);
    let mut clients: Vec<Client> = ["a", "b", "c"]
        .iter()
        .map(|id| Client::new(id, &["orders"]))
        .collect();
    rounds(&mut c, &mut clients, "g", 4);
    assert_converged(&c, &clients, "g");
    let epoch = c.shard.group("g").map(|g| g.group_epoch());
    assert_eq!(epoch, Some(3), "one bump per join");

    // "b" crashes: the coordinator removes it when its session ends.
    c.remove("g", "b");
    clients.remove(1);
    rounds(&mut c, &mut clients, "g", 3);
    assert_converged(&c, &clients, "g");
    assert_eq!(clients[0].owned.len() + clients[1].owned.len(), 7);
}

#[test]
fn a_partition_moves_only_after_its_owner_released_it() {
    let mut c = Coordinator::new(&[("t", 2)]);
    let mut a = Client::new("a", &["t"]);
    a.beat(&mut c, "g").expect("join");
    assert_eq!(a.owned.len(), 2);
    let mut b = Client::new("b", &["t"]);
    b.beat(&mut c, "g").expect("join");
    // Range gives a: 0, b: 1, but a still holds 1.
    assert!(b.owned.is_empty());
    let member_b = &c.shard.group("g").expect("g").members["b"];
    assert_eq!(member_b.state, MemberState::UnreleasedPartitions);
    // While it waits it is told to heartbeat often; a member that must
    // revoke first is not (it heartbeats as soon as it has released).
    let waiting = c.heartbeat(&b.request("g")).expect("hb");
    assert_eq!(
        waiting.heartbeat_interval_ms,
        c.config.pending_heartbeat_interval_ms
    );
    let settled = c.heartbeat(&a.request("g")).expect("hb");
    assert_eq!(
        settled.heartbeat_interval_ms,
        c.config.heartbeat_interval_for(10_000)
    );
    // a is told to keep only 0 and revoke 1 (without a new epoch yet).
    let before = a.epoch;
    a.beat(&mut c, "g").expect("hb");
    assert_eq!(a.owned, Assignment::from_pairs([("t", 0)]));
    assert_eq!(a.epoch, before);
    assert_eq!(c.shard.holder("g", "t", 1), Some("a"));
    // b still waits: a has not reported the release.
    b.beat(&mut c, "g").expect("hb");
    assert!(b.owned.is_empty());
    // a reports it, and moves to the new epoch; then b gets 1.
    a.beat(&mut c, "g").expect("hb");
    assert_eq!(c.shard.holder("g", "t", 1), None);
    b.beat(&mut c, "g").expect("hb");
    assert_eq!(b.owned, Assignment::from_pairs([("t", 1)]));
    assert_converged(&c, &[a, b], "g");
}

#[test]
fn subscription_and_partition_count_changes_bump_the_group_epoch() {
    let mut c = Coordinator::new(&[("x", 2), ("y", 2)]);
    let mut clients = vec![Client::new("a", &["x"]), Client::new("b", &["x"])];
    rounds(&mut c, &mut clients, "g", 3);
    let epoch = |c: &Coordinator| c.shard.group("g").map_or(0, |g| g.group_epoch());
    let e0 = epoch(&c);

    clients[1].topics = vec!["x".into(), "y".into()];
    rounds(&mut c, &mut clients, "g", 3);
    assert_eq!(epoch(&c), e0 + 1, "subscription change");
    assert_converged(&c, &clients, "g");

    c.topics.insert("x".into(), 5);
    rounds(&mut c, &mut clients, "g", 3);
    assert_eq!(epoch(&c), e0 + 2, "partition count change");
    assert_converged(&c, &clients, "g");

    // A subscribed topic that does not exist yet counts once created.
    clients[0].topics.push("z".into());
    rounds(&mut c, &mut clients, "g", 2);
    let e1 = epoch(&c);
    c.topics.insert("z".into(), 3);
    rounds(&mut c, &mut clients, "g", 3);
    assert_eq!(epoch(&c), e1 + 1);
    assert_converged(&c, &clients, "g");
}

#[test]
fn a_static_member_restarting_takes_its_place_without_a_rebalance() {
    let mut c = Coordinator::new(&[("t", 4)]);
    let mut clients = vec![Client::new("a", &["t"]), Client::new("b", &["t"])];
    clients[0].instance = Some("host-1".into());
    rounds(&mut c, &mut clients, "g", 3);
    let epoch = c.shard.group("g").map(|g| g.group_epoch());
    let owned = clients[0].owned.clone();

    // kill -9, restart with a new member id and the same instance id.
    let mut restarted = Client::new("a2", &["t"]);
    restarted.instance = Some("host-1".into());
    restarted.beat(&mut c, "g").expect("rejoin");
    assert_eq!(restarted.owned, owned);
    assert_eq!(c.shard.group("g").map(|g| g.group_epoch()), epoch);
    let g = c.shard.group("g").expect("g");
    assert!(!g.members.contains_key("a"));
    // The old incarnation is gone.
    let err = clients[0].beat(&mut c, "g");
    assert!(
        matches!(err, Err(GroupError::UnknownMemberId { .. })),
        "{err:?}"
    );
    assert_eq!(&c.replayed(), &c.shard);

    // A static leave (-2) keeps the place; a plain leave (-1) gives it up.
    let mut leave = restarted.request("g");
    leave.member_epoch = -2;
    let out = c
        .shard
        .heartbeat(&leave, &c.topics, &c.config)
        .expect("static leave");
    assert!(out.records.is_empty());
    assert_eq!(out.response.member_epoch, -2);
    leave.member_epoch = -1;
    let out = c
        .shard
        .heartbeat(&leave, &c.topics, &c.config)
        .expect("leave");
    c.persist(out.records);
    assert!(!c.shard.group("g").expect("g").members.contains_key("a2"));
}

#[test]
fn epochs_fence_zombies_and_tolerate_a_lost_answer() {
    let mut c = Coordinator::new(&[("t", 2)]);
    let mut a = Client::new("a", &["t"]);
    a.beat(&mut c, "g").expect("join");
    let mut b = Client::new("b", &["t"]);
    b.beat(&mut c, "g").expect("join");
    // A member from nowhere.
    let mut ghost = Client::new("ghost", &["t"]);
    ghost.epoch = 5;
    assert!(matches!(
        ghost.beat(&mut c, "g"),
        Err(GroupError::UnknownMemberId { .. })
    ));
    // A made-up epoch.
    let mut req = a.request("g");
    req.member_epoch = a.epoch + 10;
    assert!(matches!(
        c.heartbeat(&req),
        Err(GroupError::FencedMemberEpoch { .. })
    ));
    // Converge, then lose one answer: a resends its previous epoch and
    // owns nothing beyond its assignment: accepted.
    let mut clients = vec![a, b];
    rounds(&mut c, &mut clients, "g", 3);
    let m = c.shard.group("g").expect("g").members["a"].clone();
    let mut stale = clients[0].request("g");
    stale.member_epoch = m.previous_member_epoch;
    assert!(c.heartbeat(&stale).is_ok());
    // The same old epoch claiming extra partitions: fenced.
    stale.owned = Assignment::from_pairs([("t", 0), ("t", 1)]).to_proto();
    assert!(matches!(
        c.heartbeat(&stale),
        Err(GroupError::FencedMemberEpoch { .. })
    ));
    // Nonsense input is refused by name.
    let mut bad = clients[0].request("");
    assert!(matches!(
        c.heartbeat(&bad),
        Err(GroupError::InvalidGroupId(_))
    ));
    bad = clients[0].request("g");
    bad.member_epoch = -7;
    assert!(matches!(
        c.heartbeat(&bad),
        Err(GroupError::InvalidRequest(_))
    ));
    let mut empty = Client::new("new", &[]);
    assert!(matches!(
        empty.beat(&mut c, "g"),
        Err(GroupError::InvalidRequest(_))
    ));
}

fn commit(
    group: &str,
    member: &str,
    epoch: i32,
    offsets: &[(&str, i32, i64)],
) -> CommitOffsetsRequest {
    CommitOffsetsRequest {
        group_id: group.into(),
        member_id: member.into(),
        member_epoch: epoch,
        partitions: offsets
            .iter()
            .map(|&(t, p, o)| CommitPartition {
                topic: t.into(),
                partition: p,
                offset: o,
                leader_epoch: 4,
                metadata: String::new(),
            })
            .collect(),
    }
}

#[test]
fn commits_are_fenced_by_member_epoch_and_survive_replay() {
    let mut c = Coordinator::new(&[("t", 2)]);
    let mut a = Client::new("a", &["t"]);
    a.beat(&mut c, "g").expect("join");
    let ok = c.shard.commit_offsets(
        &commit("g", "a", a.epoch, &[("t", 0, 10), ("t", 1, 20)]),
        1000,
        &c.config,
    );
    let out = ok.expect("commit");
    assert!(
        out.response
            .results
            .iter()
            .all(|r| r.error == ErrorCode::None as i32)
    );
    c.persist(out.records);

    let future = c.shard.commit_offsets(
        &commit("g", "a", a.epoch + 1, &[("t", 0, 11)]),
        0,
        &c.config,
    );
    assert!(matches!(future, Err(GroupError::FencedMemberEpoch { .. })));
    let unknown = c
        .shard
        .commit_offsets(&commit("g", "zz", 1, &[("t", 0, 11)]), 0, &c.config);
    assert!(matches!(unknown, Err(GroupError::UnknownMemberId { .. })));
    // Admin commits need an empty group.
    let admin = c
        .shard
        .commit_offsets(&commit("g", "", -1, &[("t", 0, 0)]), 0, &c.config);
    assert!(matches!(
        admin,
        Err(GroupError::NonEmptyGroup { members: 1, .. })
    ));
    // Per-partition refusals leave the rest.
    let mut mixed = commit("g", "a", a.epoch, &[("t", 0, -5), ("t", 1, 21)]);
    mixed.partitions.push(CommitPartition {
        topic: "t".into(),
        partition: 0,
        offset: 1,
        leader_epoch: -1,
        metadata: "x".repeat(5000),
    });
    let out = c
        .shard
        .commit_offsets(&mixed, 2000, &c.config)
        .expect("mixed");
    let codes: Vec<i32> = out.response.results.iter().map(|r| r.error).collect();
    assert_eq!(
        codes,
        vec![
            ErrorCode::InvalidCommitOffset as i32,
            ErrorCode::None as i32,
            ErrorCode::OffsetMetadataTooLarge as i32
        ]
    );
    assert_eq!(out.records.len(), 1);
    c.persist(out.records);

    let fetched = c.replayed().fetch_offsets(&FetchOffsetsRequest {
        group_id: "g".into(),
        partitions: Assignment::from_pairs([("t", 0), ("t", 1), ("t", 9)]).to_proto(),
    });
    let got: Vec<(i32, i64, i32)> = fetched
        .offsets
        .iter()
        .map(|o| (o.partition, o.offset, o.leader_epoch))
        .collect();
    assert_eq!(got, vec![(0, 10, 4), (1, 21, 4), (9, -1, -1)]);

    // Leave, then the group is empty: admin reset works, delete works.
    let mut leave = a.request("g");
    leave.member_epoch = -1;
    let out = c
        .shard
        .heartbeat(&leave, &c.topics, &c.config)
        .expect("leave");
    c.persist(out.records);
    let out = c
        .shard
        .commit_offsets(&commit("g", "", -1, &[("t", 0, 0)]), 3000, &c.config)
        .expect("reset");
    c.persist(out.records);
    assert_eq!(
        c.shard
            .group("g")
            .map(|g| g.offsets[&("t".to_string(), 0)].offset),
        Some(0)
    );
    let out = c.shard.delete_group("g").expect("delete");
    c.persist(out.records);
    assert!(c.shard.group("g").is_none());
    assert!(c.replayed().group("g").is_none());
    assert!(matches!(
        c.shard.delete_group("g"),
        Err(GroupError::GroupIdNotFound(_))
    ));
}

#[test]
fn commits_with_the_previous_epoch_are_accepted_for_partitions_still_held() {
    let mut c = Coordinator::new(&[("t", 4)]);
    let mut clients = vec![Client::new("a", &["t"])];
    rounds(&mut c, &mut clients, "g", 2);
    let old_epoch = clients[0].epoch;
    // b joins; a moves to a new epoch after revoking 2 and 3.
    clients.push(Client::new("b", &["t"]));
    rounds(&mut c, &mut clients, "g", 3);
    assert!(clients[0].epoch > old_epoch);
    let m = c.shard.group("g").expect("g").members["a"].clone();
    let kept = c.shard.commit_offsets(
        &commit("g", "a", m.previous_member_epoch, &[("t", 0, 5)]),
        0,
        &c.config,
    );
    assert!(kept.is_ok(), "{kept:?}");
    let moved = c.shard.commit_offsets(
        &commit("g", "a", m.previous_member_epoch, &[("t", 3, 5)]),
        0,
        &c.config,
    );
    assert!(
        matches!(moved, Err(GroupError::StaleMemberEpoch { .. })),
        "{moved:?}"
    );
}

#[test]
fn sessions_expire_and_a_slow_revoker_is_removed() {
    let mut c = Coordinator::new(&[("t", 2)]);
    let mut a = Client::new("a", &["t"]);
    a.beat(&mut c, "g").expect("join");
    let mut sessions = Sessions::loaded(&c.shard, 0);
    assert_eq!(sessions.expired(9_999), vec![]);
    assert_eq!(
        sessions.expired(10_000),
        vec![("g".into(), "a".into(), Expiry::Session)]
    );
    // b joins; a must revoke 1 and has 60 s (rebalance timeout) to do so.
    let mut b = Client::new("b", &["t"]);
    b.beat(&mut c, "g").expect("join");
    sessions.heartbeat(&c.shard, "g", "b", 1_000);
    let mut stuck = a.request("g");
    stuck.owned = a.owned.to_proto();
    let out = c.shard.heartbeat(&stuck, &c.topics, &c.config).expect("hb");
    c.persist(out.records);
    sessions.heartbeat(&c.shard, "g", "a", 1_000);
    // Heartbeating without releasing does not restart the rebalance clock.
    let out = c.shard.heartbeat(&stuck, &c.topics, &c.config).expect("hb");
    c.persist(out.records);
    sessions.heartbeat(&c.shard, "g", "a", 55_000);
    sessions.heartbeat(&c.shard, "g", "b", 55_000);
    assert_eq!(sessions.expired(60_999), vec![]);
    assert_eq!(
        sessions.expired(61_000),
        vec![("g".into(), "a".into(), Expiry::Rebalance)]
    );
    c.remove("g", "a");
    sessions.retain_members(&c.shard);
    assert_eq!(sessions.len(), 1);
    b.beat(&mut c, "g").expect("hb");
    assert_eq!(b.owned.len(), 2);
}

#[derive(Debug, Clone)]
enum Op {
    Beat(usize),
    Join,
    Crash(usize),
    Leave(usize),
    Subscribe(usize, bool),
    Grow(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..8usize).prop_map(Op::Beat),
        1 => Just(Op::Join),
        1 => (0..8usize).prop_map(Op::Crash),
        1 => (0..8usize).prop_map(Op::Leave),
        1 => (0..8usize, any::<bool>()).prop_map(|(i, b)| Op::Subscribe(i, b)),
        1 => (0..2usize).prop_map(Op::Grow),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any interleaving: live members never own a partition together; after
    /// the churn stops everyone converges to Kafka's range assignment; the
    /// records rebuild the same state.
    #[test]
    fn random_churn_is_safe_and_converges(ops in proptest::collection::vec(op(), 1..120)) {
        let mut c = Coordinator::new(&[("x", 5), ("y", 3)]);
        let mut live: Vec<Client> = Vec::new();
        let mut next = 0;
        for o in ops {
            match o {
                Op::Join => {
                    let topics: &[&str] = if next % 2 == 0 { &["x"] } else { &["x", "y"] };
                    let mut cl = Client::new(&format!("m{next:02}"), topics);
                    next += 1;
                    let _ = cl.beat(&mut c, "g");
                    live.push(cl);
                }
                Op::Beat(i) if !live.is_empty() => {
                    let i = i % live.len();
                    let _ = live[i].beat(&mut c, "g");
                }
                Op::Crash(i) if !live.is_empty() => {
                    let cl = live.remove(i % live.len());
                    c.remove("g", &cl.id);
                }
                Op::Leave(i) if !live.is_empty() => {
                    let cl = live.remove(i % live.len());
                    let mut req = cl.request("g");
                    req.member_epoch = -1;
                    let out = c.shard.heartbeat(&req, &c.topics, &c.config);
                    prop_assert!(out.is_ok());
                    if let Ok(out) = out {
                        c.persist(out.records);
                    }
                }
                Op::Subscribe(i, both) if !live.is_empty() => {
                    let i = i % live.len();
                    live[i].topics = if both { vec!["x".into(), "y".into()] } else { vec!["y".into()] };
                }
                Op::Grow(t) => {
                    let name = if t == 0 { "x" } else { "y" };
                    *c.topics.entry(name.into()).or_insert(0) += 1;
                }
                _ => {}
            }
            for (i, a) in live.iter().enumerate() {
                for b in &live[i + 1..] {
                    prop_assert!(!a.owned.overlaps(&b.owned), "{} and {} overlap", a.id, b.id);
                }
            }
        }
        rounds(&mut c, &mut live, "g", 4);
        if !live.is_empty() {
            assert_converged(&c, &live, "g");
        }
        prop_assert_eq!(&c.replayed(), &c.shard);
    }
}
