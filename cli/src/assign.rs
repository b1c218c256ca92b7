//! `ballast assign`: offline planning over the pure assignor.
//!
//! Owns the three subcommands (`replicas`, `range`, `coordinator`): their
//! flags, turning flags and request files into the assignor's input types,
//! and formatting the answers as JSON (for scripts) or aligned tables (for
//! people). The algorithms themselves live in `ballast-assignor`; nothing
//! here changes an answer, it only reads input and prints output.
//!
//! Formatting functions are pure (data in, `String` out) so they are unit
//! tested here; [`run`] returns the text to print and never prints itself.
//! User input is never unwrapped: every refusal is an error whose message
//! names the bad flag or field, in Kafka's wording where Kafka has one (the
//! assignor's errors already are).

use std::collections::BTreeMap;
use std::io::Read;
use std::num::IntErrorKind;

use anyhow::{Context, Result, bail};
use ballast_assignor::range::member_order;
use ballast_assignor::{
    BrokerMetadata, DEFAULT_OFFSETS_PARTITIONS, JavaRandom, Member, PartitionView,
    PlacementRequest, RangeAssignment, ReplicaAssignment, Spread, StartIndex, Subscriber,
    TopicPartitions, assign_replicas_to_brokers, broker_loads, coordinator_partition,
    kafka_coordinator_partition, preferred_leader, range_assign,
};
use clap::{Args, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::table::Table;

/// The `ballast assign` subcommands.
#[derive(Debug, Subcommand)]
pub enum AssignCommand {
    /// Place partition replicas on brokers, exactly as Kafka's
    /// AdminUtils.assignReplicasToBrokers would.
    Replicas(ReplicasArgs),
    /// Assign topic partitions to consumer-group members, exactly as Kafka's
    /// RangeAssignor would.
    Range(RangeArgs),
    /// Print which __consumer_offsets partition coordinates a consumer group.
    Coordinator(CoordinatorArgs),
}

/// Output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns, for people.
    #[default]
    Table,
    /// One line of JSON, for scripts.
    Json,
}

/// Flags of `ballast assign replicas`.
#[derive(Debug, Args)]
pub struct ReplicasArgs {
    /// Broker ids, comma-separated, in the order Kafka would list them (they
    /// are not sorted: Kafka indexes the list as given).
    #[arg(long, value_name = "IDS", value_parser = parse_broker_ids, allow_hyphen_values = true)]
    brokers: BrokerIds,

    /// Each broker's rack, comma-separated, in --brokers order; an empty entry
    /// means that broker has no rack (e.g. `a,,b`). With racks the placement
    /// is rack-aware, and Kafka requires every broker to have one.
    #[arg(long, value_name = "RACKS", value_parser = parse_racks)]
    racks: Option<Racks>,

    /// Number of partitions to place.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    partitions: i32,

    /// Replicas per partition.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    replication_factor: i32,

    /// Fixed start index (Kafka's fixedStartIndex); it also fixes the
    /// initial follower shift. Without it both are drawn from a
    /// java.util.Random (see --seed).
    #[arg(long, value_name = "N", value_parser = parse_non_negative, allow_negative_numbers = true)]
    start_index: Option<i32>,

    /// Id of the first partition placed (non-zero when adding partitions to
    /// an existing topic).
    #[arg(
        long,
        value_name = "ID",
        default_value_t = 0,
        value_parser = parse_non_negative,
        allow_negative_numbers = true
    )]
    start_partition: i32,

    /// Seed of the java.util.Random that draws the start index and follower
    /// shift when --start-index is not given; random if omitted (the table
    /// output prints it so a placement can be replayed).
    #[arg(
        long,
        value_name = "SEED",
        allow_negative_numbers = true,
        conflicts_with = "start_index"
    )]
    seed: Option<i64>,

    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Flags of `ballast assign range`.
#[derive(Debug, Args)]
#[command(after_help = RANGE_INPUT_HELP)]
pub struct RangeArgs {
    /// The request file (JSON, see below); `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    input: String,

    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

const RANGE_INPUT_HELP: &str = "\
Input: {\"topics\":[{\"name\":\"orders\",\"partitions\":6}],
        \"members\":[{\"member_id\":\"c1\",\"group_instance_id\":\"i1\",\"topics\":[\"orders\"]}]}
group_instance_id is optional (null or absent for a dynamic member).
JSON output: member id -> topic -> partitions, every member present.";

/// Flags of `ballast assign coordinator`.
#[derive(Debug, Args)]
#[command(after_help = COORDINATOR_HELP)]
pub struct CoordinatorArgs {
    /// The consumer group id (any string, the empty one included; write
    /// `--group-id=-x` for an id starting with a hyphen).
    #[arg(long, value_name = "ID")]
    group_id: String,

    /// Partitions of __consumer_offsets (Kafka's offsets.topic.num.partitions).
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_OFFSETS_PARTITIONS,
        allow_negative_numbers = true
    )]
    offsets_partitions: i32,

    /// Print Kafka's formula, Utils.abs(hash) % n, instead of Ballast's
    /// abs(hash % n).
    #[arg(long)]
    kafka: bool,
}

const COORDINATOR_HELP: &str = "\
Ballast computes abs(hash % n) and Kafka Utils.abs(hash) % n, with hash Java's
String.hashCode. They differ only when the hash is i32::MIN (Integer.MIN_VALUE),
e.g. \"polygenelubricants\": 48 here, 0 with --kafka (50 partitions).";

/// Broker ids as given on the command line (a newtype so clap parses the
/// whole list with one value parser).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerIds(Vec<i32>);

/// Racks as given on the command line, `None` for an empty entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Racks(Vec<Option<String>>);

/// Runs one subcommand and returns what to print on stdout.
pub fn run(cmd: AssignCommand) -> Result<String> {
    match cmd {
        AssignCommand::Replicas(args) => replicas(args),
        AssignCommand::Range(args) => range(args),
        AssignCommand::Coordinator(args) => coordinator(args),
    }
}

fn replicas(args: ReplicasArgs) -> Result<String> {
    let brokers = broker_metadata(&args.brokers, args.racks.as_ref())?;
    // A seed is only needed (and only printed) when the start is random.
    let seed = match (args.start_index, args.seed) {
        (Some(_), _) => None,
        (None, Some(seed)) => Some(seed),
        (None, None) => Some(random_seed()?),
    };
    let mut rng = JavaRandom::new(seed.unwrap_or(0));
    let start_index = match args.start_index {
        // parse_non_negative guarantees 0..=i32::MAX.
        Some(i) => StartIndex::Fixed(i.unsigned_abs()),
        None => StartIndex::Random(&mut rng),
    };
    let assignment = assign_replicas_to_brokers(PlacementRequest {
        brokers: &brokers,
        partitions: args.partitions,
        replication_factor: args.replication_factor,
        start_index,
        start_partition_id: args.start_partition,
    })?;
    Ok(match args.format {
        Format::Json => replicas_json(&assignment),
        Format::Table => replicas_table(&assignment, &brokers, seed),
    })
}

fn random_seed() -> Result<i64> {
    let bits = getrandom::u64()
        .map_err(|e| anyhow::anyhow!("cannot draw a random seed ({e}); pass --seed"))?;
    Ok(i64::from_ne_bytes(bits.to_ne_bytes()))
}

/// Pairs broker ids with their racks, checking `--racks` has one entry per
/// broker.
fn broker_metadata(ids: &BrokerIds, racks: Option<&Racks>) -> Result<Vec<BrokerMetadata>> {
    let Some(Racks(racks)) = racks else {
        return Ok(ids.0.iter().copied().map(BrokerMetadata::new).collect());
    };
    if racks.len() != ids.0.len() {
        bail!(
            "--racks must give one rack per broker, in --brokers order (an empty entry for \
             a broker without a rack): got {} for {} brokers",
            racks.len(),
            ids.0.len()
        );
    }
    Ok(ids
        .0
        .iter()
        .zip(racks)
        .map(|(&id, rack)| BrokerMetadata {
            id,
            rack: rack.clone(),
        })
        .collect())
}

/// `{"0":[101,5,33],"1":[5,33,101]}` plus a newline: partition id (as a
/// string) to replicas, preferred leader first, in partition order.
pub fn replicas_json(assignment: &ReplicaAssignment) -> String {
    let entries: Vec<String> = assignment
        .iter()
        .map(|(p, replicas)| format!("\"{p}\":[{}]", join(replicas)))
        .collect();
    format!("{{{}}}\n", entries.join(","))
}

/// The placement as a `PARTITION REPLICAS` table, then a per-broker summary
/// (brokers in the order given), the min/max spread of leaders and replicas
/// over brokers, and the seed when the start was random.
pub fn replicas_table(
    assignment: &ReplicaAssignment,
    brokers: &[BrokerMetadata],
    seed: Option<i64>,
) -> String {
    let mut partitions = Table::new(["PARTITION", "REPLICAS"]);
    for (p, replicas) in assignment.iter() {
        partitions.row([p.to_string(), join(replicas)]);
    }

    let ids: Vec<i32> = brokers.iter().map(|b| b.id).collect();
    let loads = broker_loads(
        &ids,
        assignment.iter().map(|(_, replicas)| PartitionView {
            replicas,
            leader: preferred_leader(replicas),
        }),
    );
    let racked = brokers.iter().any(|b| b.rack.is_some());
    let mut summary = if racked {
        Table::new(["BROKER", "RACK", "LEADERS", "REPLICAS"])
    } else {
        Table::new(["BROKER", "LEADERS", "REPLICAS"])
    };
    let load = |id: i32| loads.get(&id).copied().unwrap_or_default();
    for b in brokers {
        let l = load(b.id);
        let mut row = vec![b.id.to_string()];
        if racked {
            row.push(b.rack.clone().unwrap_or_else(|| "-".into()));
        }
        row.extend([l.leaders.to_string(), l.replicas.to_string()]);
        summary.row(row);
    }
    let leaders = Spread::of(brokers.iter().map(|b| load(b.id).leaders));
    let replicas = Spread::of(brokers.iter().map(|b| load(b.id).replicas));

    let mut out = partitions.render();
    out.push('\n');
    out.push_str(&summary.render());
    out.push('\n');
    out.push_str(&format!(
        "spread: leaders min {} max {}, replicas min {} max {}\n",
        leaders.min, leaders.max, replicas.min, replicas.max
    ));
    if let Some(seed) = seed {
        out.push_str(&format!("seed: {seed}\n"));
    }
    out
}

fn range(args: RangeArgs) -> Result<String> {
    let (name, text) = if args.input == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        ("<stdin>".to_owned(), text)
    } else {
        let text = std::fs::read_to_string(&args.input)
            .with_context(|| format!("cannot read {}", args.input))?;
        (args.input, text)
    };
    let (topics, members) = parse_range_request(&text).with_context(|| name.clone())?;
    let assignment = range_assign(&topics, &members)?;
    Ok(match args.format {
        Format::Json => range_json(&assignment)?,
        Format::Table => range_table(&assignment, &members),
    })
}

/// The `ballast assign range` request file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeRequest {
    topics: Vec<TopicInput>,
    members: Vec<MemberInput>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicInput {
    name: String,
    /// i32 as in Kafka, so serde itself refuses counts past `i32::MAX`.
    partitions: i32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberInput {
    member_id: String,
    #[serde(default)]
    group_instance_id: Option<String>,
    topics: Vec<String>,
}

/// Parses and checks a range request, returning the assignor's input.
/// Errors carry serde's line and column.
pub fn parse_range_request(text: &str) -> Result<(Vec<TopicPartitions>, Vec<Member>)> {
    let req: RangeRequest = serde_json::from_str(text).context("malformed range request")?;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let Ok(partitions) = u32::try_from(t.partitions) else {
            bail!(
                "topic {:?}: partitions must not be negative, got {}",
                t.name,
                t.partitions
            );
        };
        topics.push(TopicPartitions {
            name: t.name,
            partitions,
        });
    }
    let mut members = Vec::with_capacity(req.members.len());
    for m in req.members {
        if m.group_instance_id.as_deref() == Some("") {
            // Kafka's JoinGroup refuses this too ("Group instance id must be
            // non-empty string").
            bail!(
                "member {:?}: group_instance_id must be a non-empty string (null for a dynamic member)",
                m.member_id
            );
        }
        members.push(Member {
            member_id: m.member_id,
            group_instance_id: m.group_instance_id,
            topics: m.topics,
        });
    }
    Ok((topics, members))
}

/// `{"c1":{"orders":[0,1,2]},"c2":{}}` plus a newline.
pub fn range_json(assignment: &RangeAssignment) -> Result<String> {
    let mut out = serde_json::to_string(assignment)?;
    out.push('\n');
    Ok(out)
}

/// `MEMBER INSTANCE TOPIC PARTITIONS`, one row per member and topic, members
/// in the assignor's order (static members by instance id, then dynamic ones
/// by member id); `-` marks no instance id and a member that got nothing.
pub fn range_table(assignment: &RangeAssignment, members: &[Member]) -> String {
    let mut ordered: Vec<&Member> = members.iter().collect();
    ordered.sort_by(|a, b| member_order(&subscriber(a), &subscriber(b)));
    let empty = BTreeMap::new();
    let mut table = Table::new(["MEMBER", "INSTANCE", "TOPIC", "PARTITIONS"]);
    for m in ordered {
        let instance = m.group_instance_id.as_deref().unwrap_or("-");
        let topics = assignment.get(&m.member_id).unwrap_or(&empty);
        if topics.is_empty() {
            table.row([m.member_id.as_str(), instance, "-", "-"]);
        }
        for (topic, partitions) in topics {
            table.row([
                m.member_id.clone(),
                instance.to_owned(),
                topic.clone(),
                join(partitions),
            ]);
        }
    }
    table.render()
}

/// A member as the assignor's ordering sees it (subscriptions do not take
/// part in the order).
fn subscriber(m: &Member) -> Subscriber<'_> {
    Subscriber {
        member_id: &m.member_id,
        group_instance_id: m.group_instance_id.as_deref(),
        topics: &[],
    }
}

fn coordinator(args: CoordinatorArgs) -> Result<String> {
    let partition = if args.kafka {
        kafka_coordinator_partition(&args.group_id, args.offsets_partitions)?
    } else {
        coordinator_partition(&args.group_id, args.offsets_partitions)?
    };
    Ok(format!("{partition}\n"))
}

fn join(values: &[i32]) -> String {
    let parts: Vec<String> = values.iter().map(i32::to_string).collect();
    parts.join(",")
}

/// An integer, with a message saying what is wrong with it.
fn parse_int(s: &str) -> Result<i64, String> {
    s.trim().parse::<i64>().map_err(|e| match e.kind() {
        IntErrorKind::Empty => "empty value".to_owned(),
        IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => format!("{s} is out of range"),
        _ => format!("{s:?} is not an integer"),
    })
}

/// A value in `0..=i32::MAX` (Kafka's start index and partition ids are Java
/// ints).
fn parse_non_negative(s: &str) -> Result<i32, String> {
    let v = parse_int(s)?;
    if v < 0 {
        return Err(format!("must not be negative, got {v}"));
    }
    i32::try_from(v).map_err(|_| format!("must be at most {}, got {v}", i32::MAX))
}

/// `1,2,3`: broker ids, each in `0..=i32::MAX` (Kafka's broker.id rule).
fn parse_broker_ids(s: &str) -> Result<BrokerIds, String> {
    if s.is_empty() {
        return Err("no broker ids given".into());
    }
    s.split(',')
        .enumerate()
        .map(|(i, entry)| {
            let v =
                parse_int(entry).map_err(|e| format!("broker id at position {}: {e}", i + 1))?;
            if v < 0 {
                return Err(format!(
                    "broker id {v} is negative; Kafka broker ids must be non-negative"
                ));
            }
            i32::try_from(v).map_err(|_| {
                format!(
                    "broker id {v} is out of range; broker ids are 0..={}",
                    i32::MAX
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(BrokerIds)
}

/// `a,,b`: a rack per broker, an empty entry for no rack. Refuses racks with
/// surrounding whitespace or control characters, which are almost always a
/// quoting mistake.
fn parse_racks(s: &str) -> Result<Racks, String> {
    s.split(',')
        .map(|entry| {
            if entry.is_empty() {
                Ok(None)
            } else if entry.trim() != entry {
                Err(format!("rack {entry:?} has leading or trailing whitespace"))
            } else if entry.chars().any(char::is_control) {
                Err(format!("rack {entry:?} contains a control character"))
            } else {
                Ok(Some(entry.to_owned()))
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Racks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(
        brokers: &[BrokerMetadata],
        partitions: i32,
        rf: i32,
        start: i32,
    ) -> ReplicaAssignment {
        assign_replicas_to_brokers(PlacementRequest {
            brokers,
            partitions,
            replication_factor: rf,
            start_index: StartIndex::Fixed(0),
            start_partition_id: start,
        })
        .unwrap()
    }

    #[test]
    fn replicas_json_is_one_line_in_partition_order() {
        let brokers: Vec<_> = [101, 5, 33].map(BrokerMetadata::new).to_vec();
        // More than ten partitions: numeric order, not string order.
        let a = place(&brokers, 11, 2, 0);
        let json = replicas_json(&a);
        assert!(json.starts_with("{\"0\":[101,5],\"1\":[5,33],"), "{json}");
        assert!(
            json.ends_with(",\"9\":[101,33],\"10\":[5,101]}\n"),
            "{json}"
        );
        let parsed: BTreeMap<String, Vec<i32>> = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed.len(), 11);
        assert_eq!(
            replicas_json(&place(&brokers, 1, 3, 7)),
            "{\"7\":[5,33,101]}\n"
        );
    }

    #[test]
    fn replicas_table_with_racks_and_seed() {
        let brokers = vec![
            BrokerMetadata::with_rack(1, "a"),
            BrokerMetadata::with_rack(2, "b"),
        ];
        let a = place(&brokers, 3, 2, 0);
        assert_eq!(
            replicas_table(&a, &brokers, Some(-7)),
            "PARTITION  REPLICAS\n\
             0          1,2\n\
             1          2,1\n\
             2          1,2\n\
             \n\
             BROKER  RACK  LEADERS  REPLICAS\n\
             1       a     2        3\n\
             2       b     1        3\n\
             \n\
             spread: leaders min 1 max 2, replicas min 3 max 3\n\
             seed: -7\n"
        );
    }

    #[test]
    fn replicas_table_without_racks_keeps_broker_order() {
        let brokers: Vec<_> = [9, 3, 5].map(BrokerMetadata::new).to_vec();
        let a = place(&brokers, 1, 1, 0);
        let out = replicas_table(&a, &brokers, None);
        assert!(
            out.contains("BROKER  LEADERS  REPLICAS\n9       1        1\n3       0        0\n5       0        0\n"),
            "{out}"
        );
        assert!(out.ends_with("spread: leaders min 0 max 1, replicas min 0 max 1\n"));
        assert!(!out.contains("seed"));
    }

    #[test]
    fn range_request_parsing() {
        let (topics, members) = parse_range_request(
            r#"{"topics":[{"name":"t","partitions":3}],
                "members":[{"member_id":"a","topics":["t"]},
                           {"member_id":"b","group_instance_id":null,"topics":[]},
                           {"member_id":"c","group_instance_id":"i","topics":["t"]}]}"#,
        )
        .unwrap();
        assert_eq!(topics[0].partitions, 3);
        assert_eq!(members[0].group_instance_id, None);
        assert_eq!(members[1].group_instance_id, None);
        assert_eq!(members[2].group_instance_id.as_deref(), Some("i"));

        let err = |text: &str| format!("{:#}", parse_range_request(text).unwrap_err());
        assert!(err("{").contains("line 1 column 1"), "{}", err("{"));
        assert!(err(r#"{"topics":[],"members":[],"x":1}"#).contains("unknown field `x`"));
        assert!(
            err(r#"{"topics":[{"name":"t","partitions":-1}],"members":[]}"#)
                .contains("partitions must not be negative, got -1")
        );
        assert!(
            err(r#"{"topics":[{"name":"t","partitions":2147483648}],"members":[]}"#)
                .contains("expected i32")
        );
        assert!(
            err(
                r#"{"topics":[],"members":[{"member_id":"m","group_instance_id":"","topics":[]}]}"#
            )
            .contains("non-empty")
        );
    }

    #[test]
    fn range_output() {
        let topics = vec![TopicPartitions {
            name: "orders".into(),
            partitions: 3,
        }];
        let members = vec![
            Member {
                member_id: "c1".into(),
                group_instance_id: None,
                topics: vec!["orders".into()],
            },
            Member {
                member_id: "c2".into(),
                group_instance_id: Some("i9".into()),
                topics: vec!["orders".into(), "gone".into()],
            },
            Member {
                member_id: "c0".into(),
                group_instance_id: None,
                topics: vec!["gone".into()],
            },
        ];
        let a = range_assign(&topics, &members).unwrap();
        assert_eq!(
            range_json(&a).unwrap(),
            "{\"c0\":{},\"c1\":{\"orders\":[2]},\"c2\":{\"orders\":[0,1]}}\n"
        );
        assert_eq!(
            range_table(&a, &members),
            "MEMBER  INSTANCE  TOPIC   PARTITIONS\n\
             c2      i9        orders  0,1\n\
             c0      -         -       -\n\
             c1      -         orders  2\n"
        );
    }

    #[test]
    fn value_parsers() {
        assert_eq!(
            parse_broker_ids("101,5,33"),
            Ok(BrokerIds(vec![101, 5, 33]))
        );
        assert!(
            parse_broker_ids("1,-2")
                .unwrap_err()
                .contains("non-negative")
        );
        assert!(parse_broker_ids("1,,2").unwrap_err().contains("position 2"));
        assert!(
            parse_broker_ids("x")
                .unwrap_err()
                .contains("not an integer")
        );
        assert!(
            parse_broker_ids("2147483648")
                .unwrap_err()
                .contains("out of range")
        );
        assert!(parse_broker_ids("").is_err());
        assert_eq!(
            parse_racks("a,,b"),
            Ok(Racks(vec![Some("a".into()), None, Some("b".into())]))
        );
        assert!(parse_racks("a, b").is_err());
        assert!(parse_racks("a\tb").is_err());
        assert_eq!(parse_non_negative("0"), Ok(0));
        assert!(parse_non_negative("-1").unwrap_err().contains("negative"));
        assert!(parse_non_negative("2147483648").is_err());
    }

    #[test]
    fn racks_must_match_brokers() {
        let ids = BrokerIds(vec![1, 2, 3]);
        let two = Racks(vec![Some("a".into()), None]);
        let msg = broker_metadata(&ids, Some(&two)).unwrap_err().to_string();
        assert!(msg.contains("got 2 for 3 brokers"), "{msg}");
        let three = Racks(vec![Some("a".into()), None, Some("b".into())]);
        let b = broker_metadata(&ids, Some(&three)).unwrap();
        assert_eq!(b[1], BrokerMetadata::new(2));
        assert_eq!(b[2], BrokerMetadata::with_rack(3, "b"));
    }
}
