//! The admin commands: `ballast cluster`, `brokers`, `topics`, `leaders`.
//!
//! Owns their flags, turning flags into `ballast-client` calls, and the
//! order of those calls; what the answers look like is [`crate::format`]'s
//! business, and the retry and redirect rules are the client's. Every
//! command takes `--coordinator` (any coordinator will do: standbys name
//! the active one) and `--format table|json`.
//!
//! User input is never unwrapped: `--config` and `--replica-assignment` are
//! parsed by value parsers whose errors name the entry and what is wrong
//! with it, so clap reports them as one line. Rules that need the cluster
//! (topic name syntax, known brokers, partition limits) are the
//! coordinator's to check; its message comes back in the error.

use std::collections::BTreeMap;
use std::future::Future;
use std::num::IntErrorKind;

use anyhow::{Context, Result, bail};
use ballast_client::admin::PartitionFilter;
use ballast_client::{AdminClient, AdminOptions, NewTopic};
use clap::{Args, Subcommand};

use crate::assign::Format;
use crate::format::{self, ClusterStatus};

/// The admin command groups, flattened into the top-level command list.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Cluster health: problems first, then the summary.
    Cluster(ClusterArgs),
    /// Registered brokers.
    Brokers(BrokersArgs),
    /// Create, list, describe, grow and delete topics.
    Topics(TopicsArgs),
    /// Leader elections.
    Leaders(LeadersArgs),
}

/// Where the coordinators are and how to print answers; accepted before or
/// after the subcommand.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Coordinator addresses (host:port), comma-separated. Any coordinator
    /// will do: a standby names the active one.
    #[arg(
        long,
        global = true,
        env = "BALLAST_COORDINATOR",
        value_name = "ADDR,...",
        value_delimiter = ',',
        default_value = "127.0.0.1:9410"
    )]
    coordinator: Vec<String>,

    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t)]
    format: Format,
}

/// `ballast cluster`.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: ClusterCommand,
}

/// The `ballast cluster` subcommands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Offline, under-min-ISR and under-replicated partitions, stuck
    /// reassignment partitions, fenced brokers and lagging consumer groups,
    /// then cluster id, active coordinator and counts.
    Status {
        /// A group whose committed offsets trail the logs by more than this
        /// many records in total is listed as lagging.
        #[arg(long, default_value_t = 1000)]
        lag_threshold: i64,
    },
}

/// `ballast brokers`.
#[derive(Debug, Args)]
pub struct BrokersArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: BrokersCommand,
}

/// The `ballast brokers` subcommands.
#[derive(Debug, Subcommand)]
pub enum BrokersCommand {
    /// Every registered broker: rack, live or fenced, epoch, load, endpoints.
    List,
}

/// `ballast topics`.
#[derive(Debug, Args)]
pub struct TopicsArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: TopicsCommand,
}

/// The `ballast topics` subcommands.
#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topics with their partition counts and replication factors.
    List(ListArgs),
    /// Describe topics partition by partition (all topics if none named).
    Describe(DescribeArgs),
    /// Delete a topic.
    Delete(DeleteArgs),
    /// Grow a topic to a new total partition count.
    AddPartitions(AddPartitionsArgs),
}

/// Flags of `ballast topics create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Topic name.
    name: String,

    /// Number of partitions (not with --replica-assignment).
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        required_unless_present = "replica_assignment",
        conflicts_with = "replica_assignment"
    )]
    partitions: Option<i32>,

    /// Replicas per partition (not with --replica-assignment).
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        required_unless_present = "replica_assignment",
        conflicts_with = "replica_assignment"
    )]
    replication_factor: Option<i32>,

    /// A topic config override; repeat for several.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_config)]
    configs: Vec<ConfigEntry>,

    /// Explicit replicas, Kafka's syntax: partitions separated by commas,
    /// broker ids by colons, preferred leader first (`1:2:3,2:3:1` is two
    /// partitions of three replicas).
    #[arg(long, value_name = "LISTS", value_parser = parse_replica_assignment)]
    replica_assignment: Option<ReplicaAssignment>,

    /// Check the request and show the plan; create nothing.
    #[arg(long)]
    validate_only: bool,
}

/// Flags of `ballast topics list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Also list internal topics (__consumer_offsets).
    #[arg(long)]
    include_internal: bool,
}

/// Flags of `ballast topics describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// Topics to describe; none means every topic.
    #[arg(value_name = "NAME")]
    names: Vec<String>,

    /// Only partitions whose ISR is smaller than their replica set.
    #[arg(long, alias = "under-replicated-partitions", conflicts_with_all = ["offline", "under_min_isr"])]
    under_replicated: bool,

    /// Only partitions without a leader.
    #[arg(
        long,
        alias = "unavailable-partitions",
        conflicts_with = "under_min_isr"
    )]
    offline: bool,

    /// Only partitions whose ISR is smaller than min.insync.replicas.
    #[arg(long, alias = "under-min-isr-partitions")]
    under_min_isr: bool,

    /// Include internal topics (__consumer_offsets) when describing all.
    #[arg(long)]
    include_internal: bool,
}

/// Flags of `ballast topics delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Topic name.
    name: String,
}

/// Flags of `ballast topics add-partitions`.
#[derive(Debug, Args)]
pub struct AddPartitionsArgs {
    /// Topic name.
    name: String,

    /// The new total partition count (not the number to add).
    #[arg(long, value_name = "TOTAL", allow_negative_numbers = true)]
    partitions: i32,

    /// Replicas of the NEW partitions only, Kafka's syntax (`1:2,2:3` for
    /// two new partitions); default: the coordinator places them.
    #[arg(long, value_name = "LISTS", value_parser = parse_replica_assignment)]
    replica_assignment: Option<ReplicaAssignment>,
}

/// `ballast leaders`.
#[derive(Debug, Args)]
pub struct LeadersArgs {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: LeadersCommand,
}

/// The `ballast leaders` subcommands.
#[derive(Debug, Subcommand)]
pub enum LeadersCommand {
    /// Move leadership back to preferred replicas.
    Elect(ElectArgs),
}

/// Flags of `ballast leaders elect`.
#[derive(Debug, Args)]
pub struct ElectArgs {
    /// Elect each partition's preferred replica (the first in its replica
    /// list); the only election type so far, and required.
    #[arg(long, required = true)]
    preferred: bool,

    /// Only this topic's partitions (default: every topic).
    #[arg(long, value_name = "TOPIC")]
    topic: Option<String>,
}

/// One `--config key=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    key: String,
    value: String,
}

/// A parsed `--replica-assignment`: replicas per partition, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaAssignment(Vec<Vec<i32>>);

/// Runs one admin command and returns what to print on stdout.
pub fn run(cmd: AdminCommand) -> Result<String> {
    match cmd {
        AdminCommand::Cluster(args) => block_on(args.connect, |admin, format| async move {
            match args.command {
                ClusterCommand::Status { lag_threshold } => {
                    cluster_status(&admin, format, lag_threshold).await
                }
            }
        }),
        AdminCommand::Brokers(args) => block_on(args.connect, |admin, format| async move {
            match args.command {
                BrokersCommand::List => {
                    let brokers = admin.list_brokers().await?;
                    Ok(match format {
                        Format::Table => format::brokers_table(&brokers),
                        Format::Json => format::brokers_json(&brokers),
                    })
                }
            }
        }),
        AdminCommand::Topics(args) => block_on(args.connect, |admin, format| async move {
            topics(&admin, format, args.command).await
        }),
        AdminCommand::Leaders(args) => block_on(args.connect, |admin, format| async move {
            match args.command {
                LeadersCommand::Elect(e) => {
                    // clap requires --preferred; it is the only kind.
                    debug_assert!(e.preferred);
                    let r = admin.elect_preferred_leaders(e.topic.as_deref()).await?;
                    Ok(match format {
                        Format::Table => format::elect_text(&r),
                        Format::Json => format::elect_json(&r),
                    })
                }
            }
        }),
    }
}

/// Connects (lazily), runs `body` on a single-threaded runtime and waits
/// for it.
pub(crate) fn block_on<F, Fut>(connect: ConnectArgs, body: F) -> Result<String>
where
    F: FnOnce(AdminClient, Format) -> Fut,
    Fut: Future<Output = Result<String>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let addresses = coordinator_addresses(&connect.coordinator)?;
    runtime.block_on(async {
        let admin = AdminClient::connect(addresses, AdminOptions::default())?;
        body(admin, connect.format).await
    })
}

/// The `--coordinator` list without blanks (`a:1,,b:2` and a trailing comma
/// are forgiven); an empty list is an error.
fn coordinator_addresses(given: &[String]) -> Result<Vec<String>> {
    let addresses: Vec<String> = given
        .iter()
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if addresses.is_empty() {
        bail!("--coordinator: no address given (host:port, comma-separated)");
    }
    Ok(addresses)
}

/// Groups whose total lag passes `threshold`: (group, lag, members), or a
/// note on why groups could not be read. At most 200 groups are described.
async fn lagging_groups(
    brokers: &[ballast_client::admin::BrokerInfo],
    threshold: i64,
) -> Result<Vec<(String, i64, usize)>, String> {
    use ballast_client::group_admin::{GroupAdmin, GroupAdminOptions};
    let addresses: Vec<String> = brokers
        .iter()
        .filter(|b| !b.fenced)
        .filter_map(|b| b.endpoints.first().map(|e| e.address.clone()))
        .filter(|a| !a.is_empty())
        .collect();
    if addresses.is_empty() {
        return Ok(Vec::new());
    }
    let groups =
        GroupAdmin::connect(addresses, GroupAdminOptions::default()).map_err(|e| e.to_string())?;
    let list = groups.list_groups().await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for g in list.groups.iter().take(200) {
        let Ok(d) = groups.describe_group(&g.group_id).await else {
            continue;
        };
        let lag: i64 = d.partitions.iter().filter_map(|p| p.lag).sum();
        if lag > threshold {
            out.push((g.group_id.clone(), lag, d.group.members.len()));
        }
    }
    Ok(out)
}

async fn cluster_status(admin: &AdminClient, format: Format, lag_threshold: i64) -> Result<String> {
    let describe = |filter| admin.describe_topics(Vec::new(), filter, true);
    let (info, brokers, offline, under_min_isr, under_replicated) = tokio::try_join!(
        admin.cluster_info(),
        admin.list_brokers(),
        describe(PartitionFilter::Offline),
        describe(PartitionFilter::UnderMinIsr),
        describe(PartitionFilter::UnderReplicated),
    )?;
    let lagging = lagging_groups(&brokers, lag_threshold).await;
    let status = ClusterStatus {
        info,
        brokers,
        offline,
        under_min_isr,
        under_replicated,
        lagging: lagging.as_ref().cloned().unwrap_or_default(),
        groups_error: lagging.err(),
        lag_threshold,
    };
    Ok(match format {
        Format::Table => format::cluster_status_text(&status),
        Format::Json => format::cluster_status_json(&status),
    })
}

async fn topics(admin: &AdminClient, format: Format, cmd: TopicsCommand) -> Result<String> {
    let table = format == Format::Table;
    match cmd {
        TopicsCommand::Create(args) => {
            let validate_only = args.validate_only;
            let topic = admin.create_topic(new_topic(args)?).await?;
            Ok(if table {
                format::created_text(&topic, validate_only)
            } else {
                format::created_json(&topic, validate_only)
            })
        }
        TopicsCommand::List(args) => {
            let topics = admin.list_topics(args.include_internal).await?;
            Ok(if table {
                format::topics_table(&topics)
            } else {
                format::topics_json(&topics)
            })
        }
        TopicsCommand::Describe(args) => {
            let filter = partition_filter(&args);
            let topics = admin
                .describe_topics(args.names, filter, args.include_internal)
                .await?;
            Ok(if table {
                format::describe_text(&topics, filter != PartitionFilter::All)
            } else {
                format::describe_json(&topics)
            })
        }
        TopicsCommand::Delete(args) => {
            admin.delete_topic(&args.name).await?;
            Ok(if table {
                format::deleted_text(&args.name)
            } else {
                format::deleted_json(&args.name)
            })
        }
        TopicsCommand::AddPartitions(args) => {
            let assignments = args.replica_assignment.map(|a| a.0).unwrap_or_default();
            let topic = admin
                .add_partitions(&args.name, args.partitions, assignments)
                .await?;
            Ok(if table {
                format::added_partitions_text(&topic)
            } else {
                format::added_partitions_json(&topic)
            })
        }
    }
}

/// The creation request the flags describe. With `--replica-assignment`
/// the counts stay 0, as the coordinator requires.
fn new_topic(args: CreateArgs) -> Result<NewTopic> {
    let configs = config_map(args.configs)?;
    let (partitions, replication_factor, assignments) = match args.replica_assignment {
        Some(ReplicaAssignment(lists)) => (0, 0, lists),
        None => (
            args.partitions.unwrap_or_default(),
            args.replication_factor.unwrap_or_default(),
            Vec::new(),
        ),
    };
    Ok(NewTopic {
        name: args.name,
        partitions,
        replication_factor,
        assignments,
        configs,
        validate_only: args.validate_only,
    })
}

fn partition_filter(args: &DescribeArgs) -> PartitionFilter {
    if args.under_replicated {
        PartitionFilter::UnderReplicated
    } else if args.offline {
        PartitionFilter::Offline
    } else if args.under_min_isr {
        PartitionFilter::UnderMinIsr
    } else {
        PartitionFilter::All
    }
}

/// The `--config` entries as a map; a key given twice is an error rather
/// than a silent last-one-wins.
fn config_map(entries: Vec<ConfigEntry>) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for ConfigEntry { key, value } in entries {
        if let Some(first) = map.get(&key) {
            bail!("--config {key} is given twice ({key}={first} and {key}={value})");
        }
        map.insert(key, value);
    }
    Ok(map)
}

/// `key=value`: the key non-empty and free of whitespace, the value
/// non-empty (it may itself contain `=`).
fn parse_config(s: &str) -> Result<ConfigEntry, String> {
    let Some((key, value)) = s.split_once('=') else {
        return Err(format!("{s:?} is not key=value"));
    };
    if key.is_empty() {
        return Err(format!("{s:?} has an empty key"));
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "key {key:?} contains whitespace or a control character"
        ));
    }
    if value.is_empty() {
        return Err(format!("{s:?} has an empty value"));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("the value of {key} contains a control character"));
    }
    Ok(ConfigEntry {
        key: key.to_owned(),
        value: value.to_owned(),
    })
}

/// Kafka's `--replica-assignment`: `1:2:3,2:3:1`. Every entry needs at
/// least one broker id (each in `0..=i32::MAX`), no broker twice, and every
/// entry the same number of replicas.
fn parse_replica_assignment(s: &str) -> Result<ReplicaAssignment, String> {
    if s.trim().is_empty() {
        return Err("no partitions given".into());
    }
    let mut lists: Vec<Vec<i32>> = Vec::new();
    for (i, entry) in s.split(',').enumerate() {
        let n = i + 1;
        if entry.trim().is_empty() {
            return Err(format!("entry {n} is empty (no replicas)"));
        }
        let mut replicas = Vec::new();
        for id in entry.split(':') {
            let id = parse_broker_id(id).map_err(|e| format!("entry {n} ({entry:?}): {e}"))?;
            if replicas.contains(&id) {
                return Err(format!(
                    "entry {n} ({entry:?}) lists broker {id} twice; a broker holds at most one replica of a partition"
                ));
            }
            replicas.push(id);
        }
        if let Some(first) = lists.first()
            && first.len() != replicas.len()
        {
            return Err(format!(
                "entry {n} ({entry:?}) has {} replica(s) but entry 1 has {}; every partition needs the same number",
                replicas.len(),
                first.len()
            ));
        }
        lists.push(replicas);
    }
    Ok(ReplicaAssignment(lists))
}

/// A broker id in `0..=i32::MAX`.
fn parse_broker_id(s: &str) -> Result<i32, String> {
    let t = s.trim();
    let v: i64 = t
        .parse()
        .map_err(|e: std::num::ParseIntError| match e.kind() {
            IntErrorKind::Empty => "empty broker id".to_owned(),
            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => {
                format!("broker id {t} is out of range")
            }
            _ => format!("broker id {t:?} is not an integer"),
        })?;
    if v < 0 {
        return Err(format!("broker id {v} is negative"));
    }
    i32::try_from(v).map_err(|_| format!("broker id {v} is out of range (at most {})", i32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_entries() {
        let ok = |s: &str| parse_config(s).map(|e| (e.key, e.value));
        assert_eq!(
            ok("retention.ms=1000"),
            Ok(("retention.ms".into(), "1000".into()))
        );
        assert_eq!(ok("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(
            ok("retention.ms").unwrap_err(),
            "\"retention.ms\" is not key=value"
        );
        assert_eq!(ok("=5").unwrap_err(), "\"=5\" has an empty key");
        assert_eq!(
            ok("retention.ms=").unwrap_err(),
            "\"retention.ms=\" has an empty value"
        );
        assert!(ok("a b=1").unwrap_err().contains("whitespace"));
        assert!(ok("a=1\n").unwrap_err().contains("control character"));

        let entry = |k: &str, v: &str| ConfigEntry {
            key: k.into(),
            value: v.into(),
        };
        let map = config_map(vec![entry("b", "2"), entry("a", "1")]).unwrap();
        assert_eq!(map.keys().collect::<Vec<_>>(), ["a", "b"]);
        let e = config_map(vec![entry("a", "1"), entry("a", "2")]).unwrap_err();
        assert_eq!(e.to_string(), "--config a is given twice (a=1 and a=2)");
    }

    #[test]
    fn replica_assignments() {
        assert_eq!(
            parse_replica_assignment("1:2:3,2:3:1"),
            Ok(ReplicaAssignment(vec![vec![1, 2, 3], vec![2, 3, 1]]))
        );
        assert_eq!(
            parse_replica_assignment(" 5 , 6 "),
            Ok(ReplicaAssignment(vec![vec![5], vec![6]]))
        );
        let err = |s: &str| parse_replica_assignment(s).unwrap_err();
        assert_eq!(err(""), "no partitions given");
        assert_eq!(err("1:2,,2:1"), "entry 2 is empty (no replicas)");
        assert_eq!(err("1:2,"), "entry 2 is empty (no replicas)");
        assert_eq!(
            err("1:2,2:x"),
            "entry 2 (\"2:x\"): broker id \"x\" is not an integer"
        );
        assert_eq!(err("1::2"), "entry 1 (\"1::2\"): empty broker id");
        assert_eq!(err("1:-2"), "entry 1 (\"1:-2\"): broker id -2 is negative");
        assert!(err("2147483648").contains("out of range"));
        assert!(err("99999999999999999999").contains("out of range"));
        assert_eq!(
            err("1:2:1"),
            "entry 1 (\"1:2:1\") lists broker 1 twice; a broker holds at most one replica of a partition"
        );
        assert_eq!(
            err("1:2:3,2:3"),
            "entry 2 (\"2:3\") has 2 replica(s) but entry 1 has 3; every partition needs the same number"
        );
    }

    /// Parses a command line the way `main` does.
    fn parse(args: &[&str]) -> Result<AdminCommand, String> {
        use clap::Parser;
        let argv = std::iter::once("ballast").chain(args.iter().copied());
        match crate::Cli::try_parse_from(argv) {
            Ok(crate::Cli {
                command: crate::Command::Admin(cmd),
                ..
            }) => Ok(cmd),
            Ok(other) => Err(format!("not an admin command: {other:?}")),
            Err(e) => Err(crate::first_paragraph(&e.render().to_string())),
        }
    }

    #[test]
    fn connect_flags_go_before_or_after_the_subcommand() {
        let Ok(AdminCommand::Topics(t)) = parse(&[
            "topics",
            "--coordinator",
            "a:1,b:2",
            "list",
            "--format",
            "json",
        ]) else {
            panic!("topics list did not parse");
        };
        assert_eq!(t.connect.coordinator, ["a:1", "b:2"]);
        assert_eq!(t.connect.format, Format::Json);

        let Ok(AdminCommand::Cluster(c)) = parse(&["cluster", "status", "--coordinator=c:3"])
        else {
            panic!("cluster status did not parse");
        };
        assert_eq!(c.connect.coordinator, ["c:3"]);
        assert_eq!(c.connect.format, Format::Table);
    }

    #[test]
    fn create_flags() {
        let Ok(AdminCommand::Topics(TopicsArgs {
            command: TopicsCommand::Create(c),
            ..
        })) = parse(&[
            "topics",
            "create",
            "orders",
            "--partitions",
            "6",
            "--replication-factor",
            "3",
            "--config",
            "retention.ms=1000",
            "--config",
            "cleanup.policy=compact",
            "--validate-only",
        ])
        else {
            panic!("topics create did not parse");
        };
        assert_eq!((c.partitions, c.replication_factor), (Some(6), Some(3)));
        assert_eq!(c.configs.len(), 2);
        assert!(c.validate_only);

        let manual = parse(&["topics", "create", "m", "--replica-assignment", "1:2,2:1"]);
        assert!(manual.is_ok(), "{manual:?}");

        let err = |args: &[&str]| parse(args).err().unwrap_or_default();
        let both = err(&[
            "topics",
            "create",
            "m",
            "--partitions",
            "2",
            "--replica-assignment",
            "1:2,2:1",
        ]);
        assert!(both.contains("cannot be used with"), "{both}");
        let missing = err(&["topics", "create", "m", "--partitions", "2"]);
        assert!(missing.contains("--replication-factor"), "{missing}");
        let bad = err(&[
            "topics",
            "create",
            "m",
            "--partitions",
            "1",
            "--replication-factor",
            "1",
            "--config",
            "x",
        ]);
        assert!(bad.contains("\"x\" is not key=value"), "{bad}");
        assert!(!bad.contains('\n'));
        let bad = err(&["topics", "create", "m", "--replica-assignment", "1:2,3"]);
        assert!(bad.contains("entry 2 (\"3\") has 1 replica(s)"), "{bad}");
    }

    #[test]
    fn describe_filters_are_exclusive_and_have_kafka_aliases() {
        let Ok(AdminCommand::Topics(TopicsArgs {
            command: TopicsCommand::Describe(d),
            ..
        })) = parse(&["topics", "describe", "a", "b", "--unavailable-partitions"])
        else {
            panic!("topics describe did not parse");
        };
        assert_eq!(d.names, ["a", "b"]);
        assert_eq!(partition_filter(&d), PartitionFilter::Offline);
        let e = parse(&["topics", "describe", "--offline", "--under-min-isr"])
            .err()
            .unwrap_or_default();
        assert!(e.contains("cannot be used with"), "{e}");
    }

    #[test]
    fn elect_needs_preferred() {
        let e = parse(&["leaders", "elect", "--topic", "t"])
            .err()
            .unwrap_or_default();
        assert!(e.contains("--preferred"), "{e}");
        assert!(parse(&["leaders", "elect", "--preferred"]).is_ok());
    }

    #[test]
    fn coordinator_list() {
        assert_eq!(
            coordinator_addresses(&["a:1".into(), " ".into(), "b:2".into()]).unwrap(),
            ["a:1", "b:2"]
        );
        assert!(coordinator_addresses(&[String::new()]).is_err());
    }

    #[test]
    fn new_topic_from_flags() {
        let args = CreateArgs {
            name: "orders".into(),
            partitions: Some(6),
            replication_factor: Some(3),
            configs: vec![ConfigEntry {
                key: "retention.ms".into(),
                value: "1000".into(),
            }],
            replica_assignment: None,
            validate_only: true,
        };
        let t = new_topic(args).unwrap();
        assert_eq!((t.partitions, t.replication_factor), (6, 3));
        assert!(t.assignments.is_empty() && t.validate_only);
        assert_eq!(t.configs["retention.ms"], "1000");

        let manual = CreateArgs {
            name: "m".into(),
            partitions: None,
            replication_factor: None,
            configs: vec![],
            replica_assignment: Some(ReplicaAssignment(vec![vec![1, 2]])),
            validate_only: false,
        };
        let t = new_topic(manual).unwrap();
        assert_eq!((t.partitions, t.replication_factor), (0, 0));
        assert_eq!(t.assignments, [[1, 2]]);
    }
}
