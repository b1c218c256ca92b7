//! Output of the `ballast groups` commands.
//!
//! Owns how group listings, descriptions and offset-reset plans look:
//! aligned tables for people, one line of JSON for scripts, in the
//! conventions of [`crate::format`] (rows sorted, `-` for nothing, JSON
//! shaped here rather than serialized from proto types, `null` for
//! unknown). Every function is pure (data in, `String` out, every line
//! ending in `\n`); nothing here talks to a cluster or prints.

use ballast_client::group_admin::{GroupMemberDescription, TopicPartitions};
use ballast_client::{GroupDescription, GroupList, ResetPlan};
use serde_json::{Value, json};

use crate::table::Table;

/// `ballast groups list`: `GROUP STATE MEMBERS EPOCH COORDINATOR`, then a
/// note per agent that did not answer.
pub fn list_table(list: &GroupList) -> String {
    let mut table = Table::new(["GROUP", "STATE", "MEMBERS", "EPOCH", "COORDINATOR"]);
    for g in &list.groups {
        table.row([
            g.group_id.clone(),
            or_dash(&g.state),
            g.members.to_string(),
            g.group_epoch.to_string(),
            g.coordinator.to_string(),
        ]);
    }
    let mut out = table.render();
    out.push_str(&unreachable_notes(list));
    out
}

fn unreachable_notes(list: &GroupList) -> String {
    list.failed
        .iter()
        .map(|(id, address, reason)| {
            format!(
                "note: broker {id} ({address}) did not answer ({reason}); its groups are missing\n"
            )
        })
        .collect()
}

/// `ballast groups list --format json`:
/// `{"groups": [...], "unreachable": [{"broker_id", "address", "error"}]}`.
pub fn list_json(list: &GroupList) -> String {
    let groups: Vec<Value> = list
        .groups
        .iter()
        .map(|g| {
            json!({
                "group_id": g.group_id,
                "state": g.state,
                "members": g.members,
                "group_epoch": g.group_epoch,
                "coordinator": g.coordinator,
            })
        })
        .collect();
    let unreachable: Vec<Value> = list
        .failed
        .iter()
        .map(
            |(id, address, reason)| json!({ "broker_id": id, "address": address, "error": reason }),
        )
        .collect();
    line(&json!({ "groups": groups, "unreachable": unreachable }))
}

/// `ballast groups describe`: a header line, the partitions with offsets,
/// lag and owner, then the members.
///
/// ```text
/// Group: billing  State: Stable  GroupEpoch: 4  AssignmentEpoch: 4  Coordinator: 2
///
/// TOPIC   PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG  MEMBER-ID
/// orders  0          40              50              10   m1
///
/// MEMBER-ID  INSTANCE-ID  CLIENT-ID  EPOCH  STATE   SUBSCRIBED  ASSIGNMENT
/// m1         -            cli        4      Stable  orders      orders:0,1
/// ```
pub fn describe_text(d: &GroupDescription) -> String {
    let g = &d.group;
    let mut out = format!(
        "Group: {}  State: {}  GroupEpoch: {}  AssignmentEpoch: {}  Coordinator: {}\n\n",
        g.group_id,
        or_dash(&g.state),
        g.group_epoch,
        g.assignment_epoch,
        g.coordinator
    );
    if d.partitions.is_empty() {
        out.push_str("no partitions assigned or committed\n");
    } else {
        let mut table = Table::new([
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "MEMBER-ID",
            "INSTANCE-ID",
            "CLIENT-ID",
        ]);
        for p in &d.partitions {
            table.row([
                p.partition.topic.clone(),
                p.partition.partition.to_string(),
                opt(p.committed),
                opt(p.log_end),
                opt(p.lag),
                p.member_id.clone().unwrap_or_else(|| "-".into()),
                p.instance_id.clone().unwrap_or_else(|| "-".into()),
                p.client_id.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        out.push_str(&table.render());
    }
    out.push('\n');
    if g.members.is_empty() {
        out.push_str("no members\n");
    } else {
        let mut members: Vec<&GroupMemberDescription> = g.members.iter().collect();
        members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
        let mut table = Table::new([
            "MEMBER-ID",
            "INSTANCE-ID",
            "CLIENT-ID",
            "EPOCH",
            "STATE",
            "SUBSCRIBED",
            "ASSIGNMENT",
            "REVOKING",
        ]);
        for m in members {
            let mut topics = m.subscribed_topics.clone();
            topics.sort();
            table.row([
                m.member_id.clone(),
                or_dash(&m.instance_id),
                or_dash(&m.client_id),
                m.member_epoch.to_string(),
                or_dash(&m.state),
                or_dash(&topics.join(",")),
                partitions_text(&m.assignment),
                partitions_text(&m.revoking),
            ]);
        }
        out.push_str(&table.render());
    }
    out
}

/// `ballast groups describe --format json`.
pub fn describe_json(d: &GroupDescription) -> String {
    let g = &d.group;
    let partitions: Vec<Value> = d
        .partitions
        .iter()
        .map(|p| {
            json!({
                "topic": p.partition.topic,
                "partition": p.partition.partition,
                "committed_offset": p.committed,
                "log_end_offset": p.log_end,
                "lag": p.lag,
                "member_id": p.member_id,
                "instance_id": p.instance_id,
                "client_id": p.client_id,
            })
        })
        .collect();
    let mut members: Vec<&GroupMemberDescription> = g.members.iter().collect();
    members.sort_by(|a, b| a.member_id.cmp(&b.member_id));
    let members: Vec<Value> = members
        .into_iter()
        .map(|m| {
            json!({
                "member_id": m.member_id,
                "instance_id": (!m.instance_id.is_empty()).then_some(&m.instance_id),
                "client_id": m.client_id,
                "member_epoch": m.member_epoch,
                "state": m.state,
                "subscribed_topics": m.subscribed_topics,
                "assignment": partitions_json(&m.assignment),
                "target_assignment": partitions_json(&m.target_assignment),
                "revoking": partitions_json(&m.revoking),
            })
        })
        .collect();
    line(&json!({
        "group_id": g.group_id,
        "state": g.state,
        "group_epoch": g.group_epoch,
        "assignment_epoch": g.assignment_epoch,
        "coordinator": g.coordinator,
        "members": members,
        "partitions": partitions,
    }))
}

/// `ballast groups delete`.
pub fn deleted_text(group: &str) -> String {
    format!("Deleted group {group}.\n")
}

/// `ballast groups delete --format json`.
pub fn deleted_json(group: &str) -> String {
    line(&json!({ "deleted": group }))
}

/// `ballast groups reset-offsets`: the plan as a table, then what happened
/// (a dry run says how to apply it).
pub fn reset_text(plan: &ResetPlan, executed: bool) -> String {
    let mut table = Table::new([
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "NEW-OFFSET",
        "LOG-START",
        "LOG-END",
    ]);
    for p in &plan.partitions {
        table.row([
            plan.group_id.clone(),
            p.partition.topic.clone(),
            p.partition.partition.to_string(),
            opt(p.current),
            p.new_offset.to_string(),
            p.log_start.to_string(),
            p.log_end.to_string(),
        ]);
    }
    let mut out = table.render();
    if executed {
        out.push_str(&format!(
            "Reset the offsets of group {} for {} partitions.\n",
            plan.group_id,
            plan.partitions.len()
        ));
    } else {
        out.push_str("Dry run: nothing was committed; add --execute to apply this plan.\n");
        if plan.members > 0 {
            out.push_str(&format!(
                "warning: group {} has {} members (state {}); --execute is refused until they leave.\n",
                plan.group_id, plan.members, plan.state
            ));
        }
    }
    out
}

/// `ballast groups reset-offsets --format json`.
pub fn reset_json(plan: &ResetPlan, executed: bool) -> String {
    let partitions: Vec<Value> = plan
        .partitions
        .iter()
        .map(|p| {
            json!({
                "topic": p.partition.topic,
                "partition": p.partition.partition,
                "current_offset": p.current,
                "new_offset": p.new_offset,
                "log_start_offset": p.log_start,
                "log_end_offset": p.log_end,
            })
        })
        .collect();
    line(&json!({
        "group_id": plan.group_id,
        "state": plan.state,
        "members": plan.members,
        "executed": executed,
        "partitions": partitions,
    }))
}

/// `t:0,1;u:2` (sorted), or `-`.
fn partitions_text(groups: &[TopicPartitions]) -> String {
    let mut sorted: Vec<&TopicPartitions> = groups.iter().collect();
    sorted.sort_by(|a, b| a.topic.cmp(&b.topic));
    let parts: Vec<String> = sorted
        .into_iter()
        .filter(|g| !g.partitions.is_empty())
        .map(|g| {
            let mut ps = g.partitions.clone();
            ps.sort_unstable();
            let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
            format!("{}:{}", g.topic, ps.join(","))
        })
        .collect();
    or_dash(&parts.join(";"))
}

fn partitions_json(groups: &[TopicPartitions]) -> Value {
    let mut pairs: Vec<(&str, i32)> = groups
        .iter()
        .flat_map(|g| g.partitions.iter().map(move |p| (g.topic.as_str(), *p)))
        .collect();
    pairs.sort_unstable();
    Value::Array(pairs.into_iter().map(|(t, p)| json!([t, p])).collect())
}

fn opt(v: Option<i64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

fn line(v: &Value) -> String {
    format!("{v}\n")
}

#[cfg(test)]
mod tests {
    use ballast_client::group_admin::{
        CommittedOffset, DescribeGroupResponse, GroupListing, lag_rows,
    };
    use ballast_client::{PlannedReset, TopicPartition};

    use super::*;

    fn description() -> GroupDescription {
        let group = DescribeGroupResponse {
            group_id: "billing".into(),
            state: "Stable".into(),
            group_epoch: 4,
            assignment_epoch: 4,
            coordinator: 2,
            members: vec![GroupMemberDescription {
                member_id: "m1".into(),
                client_id: "cli".into(),
                member_epoch: 4,
                state: "Stable".into(),
                subscribed_topics: vec!["orders".into()],
                assignment: vec![TopicPartitions {
                    topic: "orders".into(),
                    partitions: vec![1, 0],
                }],
                ..GroupMemberDescription::default()
            }],
            offsets: vec![CommittedOffset {
                topic: "orders".into(),
                partition: 0,
                offset: 40,
                ..CommittedOffset::default()
            }],
            ..DescribeGroupResponse::default()
        };
        let ends = [(TopicPartition::new("orders", 0), 50)]
            .into_iter()
            .collect();
        GroupDescription {
            partitions: lag_rows(&group, &ends),
            group,
        }
    }

    #[test]
    fn describe_shows_lag_and_members() {
        assert_eq!(
            describe_text(&description()),
            "Group: billing  State: Stable  GroupEpoch: 4  AssignmentEpoch: 4  Coordinator: 2\n\
             \n\
             TOPIC   PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG  MEMBER-ID  INSTANCE-ID  CLIENT-ID\n\
             orders  0          40              50              10   m1         -            cli\n\
             orders  1          -               -               -    m1         -            cli\n\
             \n\
             MEMBER-ID  INSTANCE-ID  CLIENT-ID  EPOCH  STATE   SUBSCRIBED  ASSIGNMENT  REVOKING\n\
             m1         -            cli        4      Stable  orders      orders:0,1  -\n"
        );
        let v: Value = serde_json::from_str(&describe_json(&description())).unwrap();
        assert_eq!(v["partitions"][0]["lag"], 10);
        assert_eq!(v["partitions"][1]["lag"], Value::Null);
        assert_eq!(
            v["members"][0]["assignment"],
            json!([["orders", 0], ["orders", 1]])
        );
        assert_eq!(v["members"][0]["instance_id"], Value::Null);
    }

    #[test]
    fn list_names_unreachable_agents() {
        let list = GroupList {
            groups: vec![GroupListing {
                group_id: "billing".into(),
                state: "Empty".into(),
                group_epoch: 3,
                members: 0,
                coordinator: 1,
            }],
            failed: vec![(2, "b:1".into(), "UNAVAILABLE: down".into())],
        };
        assert_eq!(
            list_table(&list),
            "GROUP    STATE  MEMBERS  EPOCH  COORDINATOR\n\
             billing  Empty  0        3      1\n\
             note: broker 2 (b:1) did not answer (UNAVAILABLE: down); its groups are missing\n"
        );
        let v: Value = serde_json::from_str(&list_json(&list)).unwrap();
        assert_eq!(v["groups"][0]["group_id"], "billing");
        assert_eq!(v["unreachable"][0]["broker_id"], 2);
    }

    #[test]
    fn reset_plans() {
        let plan = ResetPlan {
            group_id: "g".into(),
            state: "Stable".into(),
            members: 2,
            partitions: vec![PlannedReset {
                partition: TopicPartition::new("t", 0),
                current: None,
                new_offset: 0,
                log_start: 0,
                log_end: 9,
            }],
        };
        let text = reset_text(&plan, false);
        assert!(text.starts_with(
            "GROUP  TOPIC  PARTITION  CURRENT-OFFSET  NEW-OFFSET  LOG-START  LOG-END\n\
             g      t      0          -               0           0          9\n\
             Dry run"
        ));
        assert!(text.contains("has 2 members"));
        assert!(reset_text(&plan, true).ends_with("for 1 partitions.\n"));
        let v: Value = serde_json::from_str(&reset_json(&plan, true)).unwrap();
        assert_eq!(v["executed"], true);
        assert_eq!(v["partitions"][0]["current_offset"], Value::Null);
    }
}
