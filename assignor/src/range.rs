//! Range assignment: Kafka's classic consumer `RangeAssignor`, exactly.
//!
//! Per topic, independently: the partitions `0..n` in numeric order; the
//! members subscribed to the topic ordered with static members (those with a
//! group instance id) first, sorted by instance id, then the rest sorted by
//! member id, both compared as Java compares strings (UTF-16 code units);
//! member `i` of `m` takes `n / m` consecutive partitions, and the first
//! `n % m` members one more. Topics missing from the metadata or with no
//! partitions are skipped; every member appears in the result, possibly
//! with nothing.
//!
//! Two layers:
//! * [`range_assign_ids`], the core, works on interned topic ids (a member's
//!   subscription is resolved once, when it changes, not at every
//!   rebalance). It touches each subscription entry twice and sorts the
//!   members once, so 10,000 members over 1,000 topics cost two passes over
//!   ten million small integers.
//! * [`range_assign`], by names, interns and calls the core; it is what
//!   `ballast assign range` and the JSON format use.
//!
//! Departures from Kafka, all on input Kafka never produces: duplicate member
//! ids and duplicate group instance ids are errors (Kafka fences one of two
//! static members sharing an id); a topic listed twice in one subscription
//! counts once (Kafka's subscriptions are sets).

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use crate::error::Error;
use crate::java::java_string_cmp;

/// Index of a topic in a metadata table.
pub type TopicId = u32;

/// A member, as the core sees it.
#[derive(Debug, Clone, Copy)]
pub struct Subscriber<'a> {
    /// The member id.
    pub member_id: &'a str,
    /// The group instance id of a static member.
    pub group_instance_id: Option<&'a str>,
    /// Subscribed topics, as ids into the partition-count table.
    pub topics: &'a [TopicId],
}

/// Per member (in input order): `(topic, partitions)` in subscription order,
/// only for topics that gave the member at least one partition.
pub type IdAssignment = Vec<Vec<(TopicId, Range<u32>)>>;

/// Java-comparable ordering of two members: static members first by
/// instance id, then dynamic members by member id (Kafka's
/// `MemberInfo.compareTo`).
pub fn member_order(a: &Subscriber<'_>, b: &Subscriber<'_>) -> Ordering {
    match (a.group_instance_id, b.group_instance_id) {
        (Some(x), Some(y)) => java_string_cmp(x, y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => java_string_cmp(a.member_id, b.member_id),
    }
}

/// The core range assignor. `partitions[t]` is topic `t`'s partition count,
/// `None` when the topic is missing from metadata.
pub fn range_assign_ids(
    partitions: &[Option<u32>],
    members: &[Subscriber<'_>],
) -> Result<IdAssignment, Error> {
    let m = u32::try_from(members.len()).unwrap_or(u32::MAX);
    let mut order: Vec<u32> = (0..m).collect();
    order.sort_unstable_by(|&x, &y| member_order(&members[x as usize], &members[y as usize]));
    check_duplicates(members, &order)?;

    // Pass 1: subscribers per topic. `seen[t] == i + 1` while member i is
    // visited dedupes a topic listed twice in one subscription.
    let mut seen = vec![0u32; partitions.len()];
    let mut subscribers = vec![0u32; partitions.len()];
    for (i, member) in members.iter().enumerate() {
        let stamp = i as u32 + 1;
        for &t in member.topics {
            let slot = seen
                .get_mut(t as usize)
                .ok_or_else(|| Error::UnknownTopicId {
                    member: member.member_id.to_owned(),
                    topic_id: t,
                    topics: partitions.len(),
                })?;
            if *slot != stamp {
                *slot = stamp;
                subscribers[t as usize] += 1;
            }
        }
    }

    // Pass 2: walk members in order; a member's rank in topic t is the number
    // of earlier subscribers of t.
    let mut rank = vec![0u32; partitions.len()];
    seen.fill(0);
    let mut out: IdAssignment = vec![Vec::new(); members.len()];
    for (pos, &i) in order.iter().enumerate() {
        let member = &members[i as usize];
        let stamp = pos as u32 + 1;
        for &t in member.topics {
            let t_us = t as usize;
            if seen[t_us] == stamp {
                continue;
            }
            seen[t_us] = stamp;
            let Some(n) = partitions[t_us] else { continue };
            let r = rank[t_us];
            rank[t_us] += 1;
            let count = subscribers[t_us];
            let (per, extra) = (n / count, n % count);
            let start = per * r + r.min(extra);
            let len = per + u32::from(r < extra);
            if len > 0 {
                out[i as usize].push((t, start..start + len));
            }
        }
    }
    Ok(out)
}

fn check_duplicates(members: &[Subscriber<'_>], order: &[u32]) -> Result<(), Error> {
    // In sorted order equal instance ids are adjacent.
    for w in order.windows(2) {
        let (a, b) = (&members[w[0] as usize], &members[w[1] as usize]);
        if let (Some(x), Some(y)) = (a.group_instance_id, b.group_instance_id)
            && x == y
        {
            return Err(Error::DuplicateGroupInstanceId(x.to_owned()));
        }
    }
    let mut ids: Vec<&str> = members.iter().map(|m| m.member_id).collect();
    ids.sort_unstable();
    match ids.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(Error::DuplicateMemberId(w[0].to_owned())),
        None => Ok(()),
    }
}

/// A topic in the metadata snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitions {
    /// Topic name.
    pub name: String,
    /// Partition count.
    pub partitions: u32,
}

/// A group member, by names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Member id.
    pub member_id: String,
    /// Group instance id of a static member.
    pub group_instance_id: Option<String>,
    /// Subscribed topic names.
    pub topics: Vec<String>,
}

/// Member id -> topic -> partitions (ascending). Every member is present.
pub type RangeAssignment = BTreeMap<String, BTreeMap<String, Vec<i32>>>;

/// The range assignor over names: interns the topics and runs
/// [`range_assign_ids`]. Subscribed topics absent from `topics` are skipped.
pub fn range_assign(
    topics: &[TopicPartitions],
    members: &[Member],
) -> Result<RangeAssignment, Error> {
    let mut index: HashMap<&str, TopicId> = HashMap::with_capacity(topics.len());
    let mut counts: Vec<Option<u32>> = Vec::with_capacity(topics.len() + 1);
    for t in topics {
        if index
            .insert(t.name.as_str(), counts.len() as TopicId)
            .is_some()
        {
            return Err(Error::DuplicateTopic(t.name.clone()));
        }
        counts.push(Some(t.partitions));
    }
    // One shared id for every name missing from metadata.
    let missing = counts.len() as TopicId;
    counts.push(None);
    // The members of a group nearly always share one subscription: a list
    // equal to the previous member's reuses its resolution, so ten thousand
    // identical lists cost one resolution and one vector, and string
    // compares instead of hash lookups.
    let mut resolved: Vec<Vec<TopicId>> = Vec::new();
    let mut which: Vec<usize> = Vec::with_capacity(members.len());
    let mut previous: Option<&[String]> = None;
    for m in members {
        if previous != Some(m.topics.as_slice()) {
            resolved.push(
                m.topics
                    .iter()
                    .map(|name| index.get(name.as_str()).copied().unwrap_or(missing))
                    .collect(),
            );
            previous = Some(&m.topics);
        }
        which.push(resolved.len() - 1);
    }
    let subscribers: Vec<Subscriber<'_>> = members
        .iter()
        .zip(&which)
        .map(|(m, &w)| Subscriber {
            member_id: &m.member_id,
            group_instance_id: m.group_instance_id.as_deref(),
            topics: &resolved[w],
        })
        .collect();
    let by_id = range_assign_ids(&counts, &subscribers)?;
    let mut out = RangeAssignment::new();
    for (m, assigned) in members.iter().zip(by_id) {
        let mut per_topic = BTreeMap::new();
        for (t, range) in assigned {
            let name = topics[t as usize].name.clone();
            per_topic.insert(name, range.map(|p| p as i32).collect());
        }
        out.insert(m.member_id.clone(), per_topic);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, partitions: u32) -> TopicPartitions {
        TopicPartitions {
            name: name.into(),
            partitions,
        }
    }

    fn member(id: &str, instance: Option<&str>, topics: &[&str]) -> Member {
        Member {
            member_id: id.into(),
            group_instance_id: instance.map(Into::into),
            topics: topics.iter().map(|t| t.to_string()).collect(),
        }
    }

    type Row<'a> = (&'a str, &'a [(&'a str, &'a [i32])]);

    fn expect(rows: &[Row<'_>]) -> RangeAssignment {
        rows.iter()
            .map(|(m, ts)| {
                let per: BTreeMap<String, Vec<i32>> = ts
                    .iter()
                    .map(|(t, ps)| (t.to_string(), ps.to_vec()))
                    .collect();
                (m.to_string(), per)
            })
            .collect()
    }

    // Kafka: RangeAssignorTest.testOneConsumerNoTopic / NonexistentTopic.
    #[test]
    fn kafka_one_consumer_no_topic_and_nonexistent_topic() {
        assert_eq!(
            range_assign(&[], &[member("c", None, &[])]),
            Ok(expect(&[("c", &[])]))
        );
        assert_eq!(
            range_assign(&[], &[member("c", None, &["topic"])]),
            Ok(expect(&[("c", &[])]))
        );
    }

    // Kafka: RangeAssignorTest.testOnlyAssignsPartitionsFromSubscribedTopics.
    #[test]
    fn kafka_only_subscribed_topics() {
        let got = range_assign(
            &[topic("t1", 3), topic("t2", 3)],
            &[member("c", None, &["t1"])],
        );
        assert_eq!(got, Ok(expect(&[("c", &[("t1", &[0, 1, 2])])])));
    }

    // Kafka: RangeAssignorTest.testTwoConsumersOneTopicOnePartition / ...TwoPartitions.
    #[test]
    fn kafka_two_consumers_one_topic() {
        let ms = [
            member("consumer1", None, &["t"]),
            member("consumer2", None, &["t"]),
        ];
        assert_eq!(
            range_assign(&[topic("t", 1)], &ms),
            Ok(expect(&[("consumer1", &[("t", &[0])]), ("consumer2", &[])]))
        );
        assert_eq!(
            range_assign(&[topic("t", 2)], &ms),
            Ok(expect(&[
                ("consumer1", &[("t", &[0])]),
                ("consumer2", &[("t", &[1])])
            ]))
        );
    }

    // Kafka: RangeAssignorTest.testMultipleConsumersMixedTopics.
    #[test]
    fn kafka_multiple_consumers_mixed_topics() {
        let ms = [
            member("consumer1", None, &["t1"]),
            member("consumer2", None, &["t1", "t2"]),
            member("consumer3", None, &["t1"]),
        ];
        assert_eq!(
            range_assign(&[topic("t1", 3), topic("t2", 2)], &ms),
            Ok(expect(&[
                ("consumer1", &[("t1", &[0])]),
                ("consumer2", &[("t1", &[1]), ("t2", &[0, 1])]),
                ("consumer3", &[("t1", &[2])]),
            ]))
        );
    }

    // Kafka: RangeAssignorTest.testTwoConsumersTwoTopicsSixPartitions.
    #[test]
    fn kafka_two_consumers_two_topics_six_partitions() {
        let ms = [
            member("consumer1", None, &["t1", "t2"]),
            member("consumer2", None, &["t1", "t2"]),
        ];
        assert_eq!(
            range_assign(&[topic("t1", 3), topic("t2", 3)], &ms),
            Ok(expect(&[
                ("consumer1", &[("t1", &[0, 1]), ("t2", &[0, 1])]),
                ("consumer2", &[("t1", &[2]), ("t2", &[2])]),
            ]))
        );
    }

    // Kafka: RangeAssignorTest.testStaticMemberRangeAssignmentPersistent: static
    // members first by instance id, then dynamic members by member id.
    #[test]
    fn kafka_static_members_first() {
        let ms = [
            member("consumer-a", None, &["t"]),
            member("consumer-z", Some("instance-2"), &["t"]),
            member("consumer-b", Some("instance-1"), &["t"]),
        ];
        assert_eq!(
            range_assign(&[topic("t", 5)], &ms),
            Ok(expect(&[
                ("consumer-b", &[("t", &[0, 1])]),
                ("consumer-z", &[("t", &[2, 3])]),
                ("consumer-a", &[("t", &[4])]),
            ]))
        );
    }

    #[test]
    fn java_order_for_astral_member_ids() {
        // "\u{1F600}" sorts before "\u{FF61}" in Java, after it in Rust.
        let ms = [
            member("\u{FF61}", None, &["t"]),
            member("\u{1F600}", None, &["t"]),
        ];
        assert_eq!(
            range_assign(&[topic("t", 3)], &ms),
            Ok(expect(&[
                ("\u{1F600}", &[("t", &[0, 1])]),
                ("\u{FF61}", &[("t", &[2])])
            ]))
        );
    }

    #[test]
    fn zero_partitions_and_duplicates() {
        let ms = [
            member("a", None, &["t", "t", "empty"]),
            member("b", None, &["t"]),
        ];
        assert_eq!(
            range_assign(&[topic("t", 3), topic("empty", 0)], &ms),
            Ok(expect(&[("a", &[("t", &[0, 1])]), ("b", &[("t", &[2])])]))
        );
        assert_eq!(
            range_assign(
                &[topic("t", 1)],
                &[member("a", None, &[]), member("a", None, &[])]
            ),
            Err(Error::DuplicateMemberId("a".into()))
        );
        assert_eq!(
            range_assign(
                &[topic("t", 1)],
                &[member("a", Some("i"), &[]), member("b", Some("i"), &[])]
            ),
            Err(Error::DuplicateGroupInstanceId("i".into()))
        );
        assert_eq!(
            range_assign(&[topic("t", 1), topic("t", 2)], &[]),
            Err(Error::DuplicateTopic("t".into()))
        );
        let bad = [Subscriber {
            member_id: "x",
            group_instance_id: None,
            topics: &[5],
        }];
        assert!(matches!(
            range_assign_ids(&[Some(1)], &bad),
            Err(Error::UnknownTopicId { topic_id: 5, .. })
        ));
    }
}
