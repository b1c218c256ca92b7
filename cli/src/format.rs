//! Output of the admin commands (`cluster`, `brokers`, `topics`, `leaders`).
//!
//! Owns how the coordinator's answers look: aligned tables and Kafka-like
//! `Topic: ... Partition: ...` lines for people, one line of JSON for
//! scripts. Every function is pure (proto messages in, `String` out, every
//! line ending in `\n`) so the exact output is unit tested here; nothing in
//! this file talks to a cluster or prints.
//!
//! Conventions: rows are sorted (brokers by id, topics by name, partitions
//! by id) whatever order the coordinator used; a leader of -1 is `none` as in
//! Kafka; an empty list or map is `-`; JSON objects are shaped here (never a
//! serialization of the proto types) so the JSON stays stable if the proto
//! grows, and a missing leader is `null`.

use std::collections::BTreeMap;

use ballast_client::admin::{
    BrokerInfo, ClusterInfo, ElectPreferredLeadersResponse, PartitionDescription, TopicDescription,
    TopicSummary,
};
use serde_json::{Value, json};

use crate::table::Table;

/// At most this many partitions are listed per problem in `cluster status`
/// (the JSON output lists them all).
pub const PROBLEM_LIST_LIMIT: usize = 20;

/// Everything `ballast cluster status` shows, as fetched.
#[derive(Debug, Clone, Default)]
pub struct ClusterStatus {
    /// GetClusterInfo's answer.
    pub info: ClusterInfo,
    /// ListBrokers' answer.
    pub brokers: Vec<BrokerInfo>,
    /// DescribeTopics filtered to offline partitions.
    pub offline: Vec<TopicDescription>,
    /// DescribeTopics filtered to partitions under min ISR.
    pub under_min_isr: Vec<TopicDescription>,
    /// DescribeTopics filtered to under-replicated partitions.
    pub under_replicated: Vec<TopicDescription>,
    /// Groups lagging past the threshold (group, lag, members).
    pub lagging: Vec<(String, i64, usize)>,
    /// Why groups could not be read, if they could not.
    pub groups_error: Option<String>,
    /// The threshold used.
    pub lag_threshold: i64,
}

/// `ballast cluster status`: the problems (offline, under-min-ISR and
/// under-replicated partitions, fenced brokers), or `problems: none`; then a
/// blank line and the summary.
pub fn cluster_status_text(status: &ClusterStatus) -> String {
    let mut out = String::new();
    let problems: [(&str, &str, &[TopicDescription]); 3] = [
        ("offline partitions", "--offline", &status.offline),
        (
            "under-min-ISR partitions",
            "--under-min-isr",
            &status.under_min_isr,
        ),
        (
            "under-replicated partitions",
            "--under-replicated",
            &status.under_replicated,
        ),
    ];
    for (label, flag, topics) in problems {
        let rows = partition_rows(topics);
        if rows.is_empty() {
            continue;
        }
        out.push_str(&format!("{label}: {}\n", rows.len()));
        let mut table = Table::new(["TOPIC", "PARTITION", "LEADER", "REPLICAS", "ISR"]);
        for (topic, p) in rows.iter().take(PROBLEM_LIST_LIMIT) {
            table.row([
                topic.to_string(),
                p.partition.to_string(),
                leader(p.leader),
                ids(&p.replicas),
                ids(&p.isr),
            ]);
        }
        out.push_str(&indent(&table.render()));
        if rows.len() > PROBLEM_LIST_LIMIT {
            out.push_str(&format!(
                "  ... and {} more (ballast topics describe {flag})\n",
                rows.len() - PROBLEM_LIST_LIMIT
            ));
        }
    }
    if status.info.stuck_reassignment_partitions > 0 {
        out.push_str(&format!(
            "stuck reassignment partitions: {} (ballast reassign status)\n",
            status.info.stuck_reassignment_partitions
        ));
    }
    let fenced = fenced_broker_ids(&status.brokers);
    if !fenced.is_empty() {
        out.push_str(&format!(
            "fenced brokers: {} ({})\n",
            fenced.len(),
            ids(&fenced)
        ));
    }
    if !status.lagging.is_empty() {
        out.push_str(&format!(
            "lagging groups (lag > {}): {}\n",
            status.lag_threshold,
            status.lagging.len()
        ));
        let mut table = Table::new(["GROUP", "LAG", "MEMBERS"]);
        for (g, lag, members) in status.lagging.iter().take(PROBLEM_LIST_LIMIT) {
            table.row([g.clone(), lag.to_string(), members.to_string()]);
        }
        out.push_str(&indent(&table.render()));
    }
    if let Some(e) = &status.groups_error {
        out.push_str(&format!("consumer groups: not checked ({e})\n"));
    }
    if out.is_empty() {
        out.push_str("problems: none\n");
    }
    out.push('\n');

    let info = &status.info;
    let active = match (info.active_address.as_str(), info.active) {
        ("", _) => "unknown (the answer came from a standby)".to_owned(),
        (address, true) => format!("{address} (epoch {})", info.coordinator_epoch),
        (address, false) => format!("{address} (not confirmed: the answer came from a standby)"),
    };
    let mut summary = Table::default();
    summary.row(["cluster id:".to_owned(), or_dash(&info.cluster_id)]);
    summary.row(["active coordinator:".to_owned(), active]);
    summary.row([
        "brokers:".to_owned(),
        format!("{} live, {} fenced", info.live_brokers, info.fenced_brokers),
    ]);
    summary.row(["topics:".to_owned(), info.topics.to_string()]);
    summary.row(["partitions:".to_owned(), info.partitions.to_string()]);
    summary.row(["reassignment:".to_owned(), or_dash(&info.reassignment)]);
    summary.row(["auto-balance:".to_owned(), or_dash(&info.auto_balance)]);
    out.push_str(&summary.render());
    out
}

/// `ballast cluster status --format json`: one object with the summary and
/// every problem partition (not capped).
pub fn cluster_status_json(status: &ClusterStatus) -> String {
    let info = &status.info;
    let problem = |topics: &[TopicDescription]| -> Vec<Value> {
        partition_rows(topics)
            .into_iter()
            .map(|(topic, p)| {
                let mut v = partition_json(p);
                v["topic"] = json!(topic);
                v
            })
            .collect()
    };
    line(&json!({
        "cluster_id": info.cluster_id,
        "active_coordinator": {
            "address": info.active_address,
            "epoch": info.coordinator_epoch,
            "answered_by_active": info.active,
        },
        "brokers": { "live": info.live_brokers, "fenced": info.fenced_brokers },
        "topics": info.topics,
        "partitions": info.partitions,
        "reassignment": info.reassignment,
        "auto_balance": info.auto_balance,
        "problems": {
            "offline": problem(&status.offline),
            "under_min_isr": problem(&status.under_min_isr),
            "under_replicated": problem(&status.under_replicated),
            "fenced_brokers": fenced_broker_ids(&status.brokers),
            "stuck_reassignment_partitions": info.stuck_reassignment_partitions,
            "lagging_groups": status
                .lagging
                .iter()
                .map(|(g, lag, members)| json!({"group": g, "lag": lag, "members": members}))
                .collect::<Vec<_>>(),
            "groups_error": status.groups_error,
        },
    }))
}

/// `ballast brokers list`: `BROKER RACK STATE EPOCH LEADERS REPLICAS
/// ENDPOINT`, endpoints as `name=host:port` joined by commas.
pub fn brokers_table(brokers: &[BrokerInfo]) -> String {
    let mut table = Table::new([
        "BROKER", "RACK", "STATE", "EPOCH", "LEADERS", "REPLICAS", "ENDPOINT",
    ]);
    for b in sorted_brokers(brokers) {
        let endpoints: Vec<String> = b
            .endpoints
            .iter()
            .map(|e| format!("{}={}", e.name, e.address))
            .collect();
        table.row([
            b.broker_id.to_string(),
            or_dash(&b.rack),
            broker_state(b).to_owned(),
            b.broker_epoch.to_string(),
            b.leaders.to_string(),
            b.replicas.to_string(),
            or_dash(&endpoints.join(",")),
        ]);
    }
    table.render()
}

/// `ballast brokers list --format json`: an array of broker objects.
pub fn brokers_json(brokers: &[BrokerInfo]) -> String {
    let rows: Vec<Value> = sorted_brokers(brokers)
        .into_iter()
        .map(|b| {
            json!({
                "broker_id": b.broker_id,
                "rack": (!b.rack.is_empty()).then_some(&b.rack),
                "state": broker_state(b),
                "epoch": b.broker_epoch,
                "leaders": b.leaders,
                "replicas": b.replicas,
                "endpoints": b.endpoints.iter()
                    .map(|e| json!({ "name": e.name, "address": e.address }))
                    .collect::<Vec<_>>(),
                "disk_capacity_bytes": b.disk_capacity_bytes,
            })
        })
        .collect();
    line(&Value::Array(rows))
}

/// `ballast topics list`: `TOPIC PARTITIONS REPLICATION-FACTOR`, plus an
/// `INTERNAL` column when an internal topic is listed.
pub fn topics_table(topics: &[TopicSummary]) -> String {
    let mut sorted: Vec<&TopicSummary> = topics.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let internal = sorted.iter().any(|t| t.internal);
    let mut header = vec!["TOPIC", "PARTITIONS", "REPLICATION-FACTOR"];
    if internal {
        header.push("INTERNAL");
    }
    let mut table = Table::new(header);
    for t in sorted {
        let mut row = vec![
            t.name.clone(),
            t.partitions.to_string(),
            t.replication_factor.to_string(),
        ];
        if internal {
            row.push(if t.internal { "yes" } else { "no" }.to_owned());
        }
        table.row(row);
    }
    table.render()
}

/// `ballast topics list --format json`: an array of topic summaries.
pub fn topics_json(topics: &[TopicSummary]) -> String {
    let mut sorted: Vec<&TopicSummary> = topics.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let rows: Vec<Value> = sorted
        .into_iter()
        .map(|t| {
            json!({
                "name": t.name,
                "partitions": t.partitions,
                "replication_factor": t.replication_factor,
                "internal": t.internal,
            })
        })
        .collect();
    line(&Value::Array(rows))
}

/// `ballast topics describe`, Kafka-like. Unfiltered, each topic is a
/// header line then its partitions indented:
///
/// ```text
/// Topic: orders  TopicId: Xy  PartitionCount: 2  ReplicationFactor: 2  Configs: retention.ms=1000
///   Partition: 0  Leader: 1  LeaderEpoch: 0  Replicas: 1,2  Isr: 1,2
///   Partition: 1  Leader: none  LeaderEpoch: 3  Replicas: 2,1  Isr: -  Offline
/// ```
///
/// With a partition filter (`filtered`) the partition list is partial, so,
/// as Kafka does, there is no header: each matching partition is one line
/// starting `Topic: orders  Partition: ...`.
pub fn describe_text(topics: &[TopicDescription], filtered: bool) -> String {
    let mut out = String::new();
    for t in sorted_topics(topics) {
        if filtered {
            for p in sorted_partitions(t) {
                out.push_str(&format!("Topic: {}  {}\n", t.name, partition_line(p)));
            }
        } else {
            out.push_str(&topic_header(t));
            for p in sorted_partitions(t) {
                out.push_str(&format!("  {}\n", partition_line(p)));
            }
        }
    }
    out
}

/// `ballast topics describe --format json`: an array of topic objects (see
/// [`topic_json`]).
pub fn describe_json(topics: &[TopicDescription]) -> String {
    line(&Value::Array(
        sorted_topics(topics).into_iter().map(topic_json).collect(),
    ))
}

/// A topic as JSON: `name`, `topic_id`, `internal`, `replication_factor`,
/// `configs` (object), `partitions` (array, see [`partition_json`]).
pub fn topic_json(t: &TopicDescription) -> Value {
    json!({
        "name": t.name,
        "topic_id": t.topic_id,
        "internal": t.internal,
        "replication_factor": t.replication_factor,
        "configs": sorted_configs(t),
        "partitions": sorted_partitions(t).into_iter().map(partition_json).collect::<Vec<_>>(),
    })
}

/// A partition as JSON; `leader` is `null` when there is none.
pub fn partition_json(p: &PartitionDescription) -> Value {
    json!({
        "partition": p.partition,
        "leader": (p.leader >= 0).then_some(p.leader),
        "leader_epoch": p.leader_epoch,
        "partition_epoch": p.partition_epoch,
        "replicas": p.replicas,
        "isr": p.isr,
        "offline": p.offline,
        "under_replicated": p.under_replicated,
        "under_min_isr": p.under_min_isr,
    })
}

/// `ballast topics create`: what was created (or, validating only, what
/// would be), then the topic as `describe` shows it.
pub fn created_text(t: &TopicDescription, validate_only: bool) -> String {
    let first = if validate_only {
        format!(
            "Topic {} is valid; nothing was created. It would be:\n",
            t.name
        )
    } else {
        format!("Created topic {}.\n", t.name)
    };
    first + &describe_text(std::slice::from_ref(t), false)
}

/// `ballast topics create --format json`.
pub fn created_json(t: &TopicDescription, validate_only: bool) -> String {
    line(&json!({ "created": !validate_only, "topic": topic_json(t) }))
}

/// `ballast topics delete`.
pub fn deleted_text(name: &str) -> String {
    format!("Deleted topic {name}.\n")
}

/// `ballast topics delete --format json`.
pub fn deleted_json(name: &str) -> String {
    line(&json!({ "deleted": name }))
}

/// `ballast topics add-partitions`: the new count, then the topic.
pub fn added_partitions_text(t: &TopicDescription) -> String {
    format!(
        "Topic {} now has {} partitions.\n",
        t.name,
        t.partitions.len()
    ) + &describe_text(std::slice::from_ref(t), false)
}

/// `ballast topics add-partitions --format json`.
pub fn added_partitions_json(t: &TopicDescription) -> String {
    line(&json!({ "topic": topic_json(t) }))
}

/// `ballast leaders elect --preferred`: the three counts.
pub fn elect_text(r: &ElectPreferredLeadersResponse) -> String {
    let mut table = Table::default();
    table.row(["elected:".to_owned(), r.elected.to_string()]);
    table.row([
        "already preferred:".to_owned(),
        r.already_preferred.to_string(),
    ]);
    table.row(["not eligible:".to_owned(), r.not_eligible.to_string()]);
    table.render()
}

/// `ballast leaders elect --preferred --format json`.
pub fn elect_json(r: &ElectPreferredLeadersResponse) -> String {
    line(&json!({
        "elected": r.elected,
        "already_preferred": r.already_preferred,
        "not_eligible": r.not_eligible,
    }))
}

fn topic_header(t: &TopicDescription) -> String {
    let configs: Vec<String> = sorted_configs(t)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "Topic: {}  TopicId: {}  PartitionCount: {}  ReplicationFactor: {}  Configs: {}\n",
        t.name,
        or_dash(&t.topic_id),
        t.partitions.len(),
        t.replication_factor,
        or_dash(&configs.join(","))
    )
}

fn partition_line(p: &PartitionDescription) -> String {
    let mut s = format!(
        "Partition: {}  Leader: {}  LeaderEpoch: {}  Replicas: {}  Isr: {}",
        p.partition,
        leader(p.leader),
        p.leader_epoch,
        ids(&p.replicas),
        ids(&p.isr)
    );
    // Offline is the worse state and usually implies the other.
    if p.offline {
        s.push_str("  Offline");
    } else if p.under_min_isr {
        s.push_str("  UnderMinIsr");
    }
    s
}

/// (topic, partition) pairs of `topics`, by topic name then partition id.
fn partition_rows(topics: &[TopicDescription]) -> Vec<(&str, &PartitionDescription)> {
    sorted_topics(topics)
        .into_iter()
        .flat_map(|t| {
            sorted_partitions(t)
                .into_iter()
                .map(move |p| (t.name.as_str(), p))
        })
        .collect()
}

fn sorted_topics(topics: &[TopicDescription]) -> Vec<&TopicDescription> {
    let mut sorted: Vec<&TopicDescription> = topics.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    sorted
}

fn sorted_partitions(t: &TopicDescription) -> Vec<&PartitionDescription> {
    let mut sorted: Vec<&PartitionDescription> = t.partitions.iter().collect();
    sorted.sort_by_key(|p| p.partition);
    sorted
}

fn sorted_configs(t: &TopicDescription) -> BTreeMap<&str, &str> {
    t.configs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn sorted_brokers(brokers: &[BrokerInfo]) -> Vec<&BrokerInfo> {
    let mut sorted: Vec<&BrokerInfo> = brokers.iter().collect();
    sorted.sort_by_key(|b| b.broker_id);
    sorted
}

fn fenced_broker_ids(brokers: &[BrokerInfo]) -> Vec<i32> {
    sorted_brokers(brokers)
        .into_iter()
        .filter(|b| b.fenced)
        .map(|b| b.broker_id)
        .collect()
}

fn broker_state(b: &BrokerInfo) -> &'static str {
    if b.fenced { "fenced" } else { "live" }
}

fn leader(id: i32) -> String {
    if id < 0 {
        "none".to_owned()
    } else {
        id.to_string()
    }
}

fn ids(values: &[i32]) -> String {
    let parts: Vec<String> = values.iter().map(i32::to_string).collect();
    or_dash(&parts.join(","))
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn line(v: &Value) -> String {
    format!("{v}\n")
}

#[cfg(test)]
mod tests {
    use ballast_client::admin::BrokerEndpoint;

    use super::*;

    fn partition(id: i32, leader: i32, replicas: &[i32], isr: &[i32]) -> PartitionDescription {
        PartitionDescription {
            partition: id,
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: 2,
            isr: isr.to_vec(),
            partition_epoch: 5,
            offline: leader < 0,
            under_replicated: isr.len() < replicas.len(),
            under_min_isr: isr.len() < 2,
        }
    }

    fn orders() -> TopicDescription {
        TopicDescription {
            name: "orders".into(),
            topic_id: "AAAAAAAAAAAAAAAAAAAAAA".into(),
            replication_factor: 3,
            configs: [
                ("segment.bytes".to_owned(), "1048576".to_owned()),
                ("cleanup.policy".to_owned(), "compact".to_owned()),
            ]
            .into_iter()
            .collect(),
            // Out of order on purpose: output sorts by partition id.
            partitions: vec![
                partition(1, -1, &[2, 3, 1], &[]),
                partition(0, 1, &[1, 2, 3], &[1, 2, 3]),
                partition(2, 3, &[3, 1, 2], &[3]),
            ],
            internal: false,
        }
    }

    fn broker(id: i32, rack: &str, fenced: bool) -> BrokerInfo {
        BrokerInfo {
            broker_id: id,
            broker_epoch: 40 + i64::from(id),
            endpoints: vec![BrokerEndpoint {
                name: "client".into(),
                address: format!("10.0.0.{id}:9092"),
            }],
            rack: rack.into(),
            fenced,
            leaders: 2,
            replicas: 6,
            disk_capacity_bytes: 0,
        }
    }

    #[test]
    fn describe_is_kafka_like() {
        let empty = TopicDescription {
            name: "a.empty".into(),
            replication_factor: 1,
            ..Default::default()
        };
        assert_eq!(
            describe_text(&[orders(), empty], false),
            "Topic: a.empty  TopicId: -  PartitionCount: 0  ReplicationFactor: 1  Configs: -\n\
             Topic: orders  TopicId: AAAAAAAAAAAAAAAAAAAAAA  PartitionCount: 3  ReplicationFactor: 3  \
             Configs: cleanup.policy=compact,segment.bytes=1048576\n\
             \x20 Partition: 0  Leader: 1  LeaderEpoch: 2  Replicas: 1,2,3  Isr: 1,2,3\n\
             \x20 Partition: 1  Leader: none  LeaderEpoch: 2  Replicas: 2,3,1  Isr: -  Offline\n\
             \x20 Partition: 2  Leader: 3  LeaderEpoch: 2  Replicas: 3,1,2  Isr: 3  UnderMinIsr\n"
        );
    }

    #[test]
    fn filtered_describe_has_no_header() {
        let mut t = orders();
        t.partitions.retain(|p| p.under_replicated);
        assert_eq!(
            describe_text(&[t], true),
            "Topic: orders  Partition: 1  Leader: none  LeaderEpoch: 2  Replicas: 2,3,1  Isr: -  Offline\n\
             Topic: orders  Partition: 2  Leader: 3  LeaderEpoch: 2  Replicas: 3,1,2  Isr: 3  UnderMinIsr\n"
        );
        assert_eq!(describe_text(&[], true), "");
    }

    #[test]
    fn describe_json_shape() {
        let out = describe_json(&[orders()]);
        assert!(out.ends_with('\n') && !out.trim_end().contains('\n'));
        let v: Value = serde_json::from_str(&out).unwrap();
        let t = &v[0];
        assert_eq!(t["name"], "orders");
        assert_eq!(t["topic_id"], "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(t["internal"], false);
        assert_eq!(t["replication_factor"], 3);
        assert_eq!(t["configs"]["cleanup.policy"], "compact");
        let p = &t["partitions"];
        assert_eq!(p.as_array().map(Vec::len), Some(3));
        assert_eq!(p[0]["partition"], 0);
        assert_eq!(p[0]["leader"], 1);
        assert_eq!(p[0]["isr"], json!([1, 2, 3]));
        assert_eq!(p[1]["leader"], Value::Null);
        assert_eq!(p[1]["offline"], true);
        assert_eq!(p[2]["under_min_isr"], true);
        assert_eq!(p[2]["partition_epoch"], 5);
    }

    #[test]
    fn brokers_table_and_json() {
        let brokers = [broker(3, "", true), broker(1, "rack-a", false)];
        assert_eq!(
            brokers_table(&brokers),
            "BROKER  RACK    STATE   EPOCH  LEADERS  REPLICAS  ENDPOINT\n\
             1       rack-a  live    41     2        6         client=10.0.0.1:9092\n\
             3       -       fenced  43     2        6         client=10.0.0.3:9092\n"
        );
        let v: Value = serde_json::from_str(&brokers_json(&brokers)).unwrap();
        assert_eq!(v[0]["broker_id"], 1);
        assert_eq!(v[0]["rack"], "rack-a");
        assert_eq!(v[1]["rack"], Value::Null);
        assert_eq!(v[1]["state"], "fenced");
        assert_eq!(v[1]["endpoints"][0]["address"], "10.0.0.3:9092");
    }

    #[test]
    fn topics_table_shows_internal_only_when_listed() {
        let t = |name: &str, internal| TopicSummary {
            name: name.into(),
            partitions: 3,
            replication_factor: 2,
            internal,
        };
        assert_eq!(
            topics_table(&[t("orders", false), t("audit", false)]),
            "TOPIC   PARTITIONS  REPLICATION-FACTOR\n\
             audit   3           2\n\
             orders  3           2\n"
        );
        assert_eq!(
            topics_table(&[t("orders", false), t("__consumer_offsets", true)]),
            "TOPIC               PARTITIONS  REPLICATION-FACTOR  INTERNAL\n\
             __consumer_offsets  3           2                   yes\n\
             orders              3           2                   no\n"
        );
        assert_eq!(
            topics_json(&[t("b", false), t("a", true)]),
            "[{\"internal\":true,\"name\":\"a\",\"partitions\":3,\"replication_factor\":2},\
             {\"internal\":false,\"name\":\"b\",\"partitions\":3,\"replication_factor\":2}]\n"
        );
    }

    fn status() -> ClusterStatus {
        let t = orders();
        let only = |keep: fn(&PartitionDescription) -> bool| {
            let mut t = t.clone();
            t.partitions.retain(keep);
            vec![t]
        };
        ClusterStatus {
            info: ClusterInfo {
                cluster_id: "c-1".into(),
                coordinator_epoch: 7,
                active: true,
                active_address: "10.0.0.9:9410".into(),
                live_brokers: 2,
                fenced_brokers: 1,
                topics: 1,
                partitions: 3,
                offline_partitions: 1,
                under_replicated_partitions: 2,
                under_min_isr_partitions: 2,
                reassignment: "r-1 running: 1 of 4 partitions finished".into(),
                auto_balance: "off".into(),
                stuck_reassignment_partitions: 1,
            },
            brokers: vec![
                broker(1, "", false),
                broker(3, "", true),
                broker(2, "", false),
            ],
            offline: only(|p| p.offline),
            under_min_isr: only(|p| p.under_min_isr),
            under_replicated: only(|p| p.under_replicated),
            lagging: vec![("billing".into(), 4200, 2)],
            groups_error: None,
            lag_threshold: 1000,
        }
    }

    #[test]
    fn cluster_status_lists_problems_first() {
        assert_eq!(
            cluster_status_text(&status()),
            "offline partitions: 1\n\
             \x20 TOPIC   PARTITION  LEADER  REPLICAS  ISR\n\
             \x20 orders  1          none    2,3,1     -\n\
             under-min-ISR partitions: 2\n\
             \x20 TOPIC   PARTITION  LEADER  REPLICAS  ISR\n\
             \x20 orders  1          none    2,3,1     -\n\
             \x20 orders  2          3       3,1,2     3\n\
             under-replicated partitions: 2\n\
             \x20 TOPIC   PARTITION  LEADER  REPLICAS  ISR\n\
             \x20 orders  1          none    2,3,1     -\n\
             \x20 orders  2          3       3,1,2     3\n\
             stuck reassignment partitions: 1 (ballast reassign status)\n\
             fenced brokers: 1 (3)\n\
             lagging groups (lag > 1000): 1\n\
             \x20 GROUP    LAG   MEMBERS\n\
             \x20 billing  4200  2\n\
             \n\
             cluster id:          c-1\n\
             active coordinator:  10.0.0.9:9410 (epoch 7)\n\
             brokers:             2 live, 1 fenced\n\
             topics:              1\n\
             partitions:          3\n\
             reassignment:        r-1 running: 1 of 4 partitions finished\n\
             auto-balance:        off\n"
        );
    }

    #[test]
    fn cluster_status_healthy_and_capped() {
        let healthy = ClusterStatus {
            info: ClusterInfo {
                cluster_id: "c-1".into(),
                ..Default::default()
            },
            ..Default::default()
        };
        let out = cluster_status_text(&healthy);
        assert!(out.starts_with("problems: none\n\ncluster id:"), "{out}");
        assert!(
            out.contains("active coordinator:  unknown (the answer came from a standby)\n"),
            "{out}"
        );

        let many = TopicDescription {
            name: "big".into(),
            partitions: (0..25).map(|i| partition(i, -1, &[1], &[])).collect(),
            ..Default::default()
        };
        let capped = ClusterStatus {
            offline: vec![many],
            ..Default::default()
        };
        let out = cluster_status_text(&capped);
        assert!(out.starts_with("offline partitions: 25\n"), "{out}");
        let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("  big ")).collect();
        assert_eq!(rows.len(), PROBLEM_LIST_LIMIT, "{out}");
        assert!(rows[19].starts_with("  big    19 "), "{out}");
        assert!(
            out.contains("  ... and 5 more (ballast topics describe --offline)\n"),
            "{out}"
        );
    }

    #[test]
    fn cluster_status_json_lists_everything() {
        let v: Value = serde_json::from_str(&cluster_status_json(&status())).unwrap();
        assert_eq!(v["cluster_id"], "c-1");
        assert_eq!(v["active_coordinator"]["address"], "10.0.0.9:9410");
        assert_eq!(v["active_coordinator"]["epoch"], 7);
        assert_eq!(v["brokers"]["live"], 2);
        assert_eq!(v["partitions"], 3);
        assert_eq!(v["problems"]["fenced_brokers"], json!([3]));
        assert_eq!(v["problems"]["offline"][0]["topic"], "orders");
        assert_eq!(v["problems"]["offline"][0]["partition"], 1);
        assert_eq!(
            v["problems"]["under_replicated"].as_array().map(Vec::len),
            Some(2)
        );
    }

    #[test]
    fn write_results() {
        let mut t = orders();
        t.partitions.truncate(0);
        t.configs.clear();
        let header = "Topic: orders  TopicId: AAAAAAAAAAAAAAAAAAAAAA  PartitionCount: 0  \
                      ReplicationFactor: 3  Configs: -\n";
        assert_eq!(
            created_text(&t, false),
            format!("Created topic orders.\n{header}")
        );
        assert_eq!(
            created_text(&t, true),
            format!("Topic orders is valid; nothing was created. It would be:\n{header}")
        );
        let v: Value = serde_json::from_str(&created_json(&t, true)).unwrap();
        assert_eq!(v["created"], false);
        assert_eq!(v["topic"]["name"], "orders");
        assert_eq!(deleted_text("orders"), "Deleted topic orders.\n");
        assert_eq!(deleted_json("orders"), "{\"deleted\":\"orders\"}\n");
        assert_eq!(
            added_partitions_text(&orders()).lines().next(),
            Some("Topic orders now has 3 partitions.")
        );
        let v: Value = serde_json::from_str(&added_partitions_json(&orders())).unwrap();
        assert_eq!(v["topic"]["partitions"].as_array().map(Vec::len), Some(3));
    }

    #[test]
    fn election_counts() {
        let r = ElectPreferredLeadersResponse {
            elected: 3,
            already_preferred: 10,
            not_eligible: 1,
        };
        assert_eq!(
            elect_text(&r),
            "elected:            3\nalready preferred:  10\nnot eligible:       1\n"
        );
        assert_eq!(
            elect_json(&r),
            "{\"already_preferred\":10,\"elected\":3,\"not_eligible\":1}\n"
        );
    }
}
