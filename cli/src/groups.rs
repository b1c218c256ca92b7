//! The consumer-group commands: `ballast groups list | describe | delete |
//! reset-offsets`.
//!
//! Owns their flags and turning them into `ballast-client`
//! [`GroupAdmin`] calls; what the answers look like is
//! [`crate::group_format`]'s business, and coordinator discovery and
//! retries are the client's. Every command takes the agents' bootstrap
//! flags of `ballast consume` (`--bootstrap`, or `--coordinator` to ask for
//! the brokers) and `--format table|json`.
//!
//! `reset-offsets` is a dry run unless `--execute` is given: it prints the
//! plan (current -> new offset per partition). Executing commits the plan
//! as an admin, which the group's coordinator refuses while the group has
//! members.

use anyhow::{Result, bail};
use ballast_client::{GroupAdmin, GroupAdminOptions, ResetSpec};
use clap::{ArgGroup, Args, Subcommand};

use crate::assign::Format;
use crate::data::{BootstrapArgs, bootstrap, runtime};
use crate::group_format;

/// The `ballast groups` subcommands.
#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Every consumer group of the cluster (each agent lists the groups it
    /// coordinates; the answers are merged).
    List(ListArgs),
    /// A group's state, members, and committed offsets with lag.
    Describe(GroupArgs),
    /// Delete a group without members, with its committed offsets.
    Delete(GroupArgs),
    /// Plan (and with --execute apply) new committed offsets for a group
    /// without members.
    ResetOffsets(ResetArgs),
}

/// Flags every groups command takes.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,

    #[command(flatten)]
    connect: BootstrapArgs,
}

/// Flags of `ballast groups list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    common: CommonArgs,
}

/// Flags of `ballast groups describe` and `delete`.
#[derive(Debug, Args)]
pub struct GroupArgs {
    /// The group id.
    group: String,

    #[command(flatten)]
    common: CommonArgs,
}

/// Flags of `ballast groups reset-offsets`.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("to")
        .required(true)
        .args(["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"])
))]
pub struct ResetArgs {
    /// The group id.
    group: String,

    /// A topic whose offsets to reset, optionally with partitions
    /// (`orders` or `orders:0,2`); repeat for several.
    #[arg(long = "topic", required = true, value_name = "TOPIC[:P,...]", value_parser = parse_topic)]
    topics: Vec<(String, Option<Vec<i32>>)>,

    /// Only these partitions (with a single --topic); repeat or separate by
    /// commas.
    #[arg(long, value_name = "P", value_delimiter = ',')]
    partition: Vec<i32>,

    /// To each partition's log start offset.
    #[arg(long)]
    to_earliest: bool,

    /// To each partition's high watermark.
    #[arg(long)]
    to_latest: bool,

    /// To this offset (clamped to each partition's log).
    #[arg(long, value_name = "N")]
    to_offset: Option<i64>,

    /// To the first record at or after this time: RFC 3339 in UTC
    /// (`2024-05-01T12:00:00Z`) or milliseconds since the epoch.
    #[arg(long, value_name = "TIME", value_parser = parse_datetime)]
    to_datetime: Option<i64>,

    /// Move each committed offset by N (negative: back), clamped to the
    /// log.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,

    /// Commit the plan (default: only print it).
    #[arg(long)]
    execute: bool,

    #[command(flatten)]
    common: CommonArgs,
}

/// `--topic orders` or `--topic orders:0,2`.
fn parse_topic(s: &str) -> Result<(String, Option<Vec<i32>>), String> {
    let (topic, partitions) = match s.split_once(':') {
        None => (s, None),
        Some((t, ps)) => {
            let parsed: Result<Vec<i32>, String> = ps
                .split(',')
                .map(|p| {
                    p.trim()
                        .parse::<i32>()
                        .ok()
                        .filter(|p| *p >= 0)
                        .ok_or_else(|| format!("{p:?} in {s:?} is not a partition number"))
                })
                .collect();
            (t, Some(parsed?))
        }
    };
    if topic.trim().is_empty() {
        return Err(format!("{s:?}: no topic name"));
    }
    Ok((topic.to_owned(), partitions))
}

/// Milliseconds since the epoch, or an RFC 3339 time in UTC.
fn parse_datetime(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| {
        format!("{s:?} is neither milliseconds since the epoch nor an RFC 3339 UTC time ({e})")
    })?;
    let since = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("{s:?} is before 1970"))?;
    i64::try_from(since.as_millis()).map_err(|_| format!("{s:?} is too far in the future"))
}

impl ResetArgs {
    fn spec(&self) -> ResetSpec {
        match (self.to_offset, self.to_datetime, self.shift_by) {
            (Some(o), _, _) => ResetSpec::Offset(o),
            (_, Some(t), _) => ResetSpec::Timestamp(t),
            (_, _, Some(n)) => ResetSpec::ShiftBy(n),
            _ if self.to_earliest => ResetSpec::Earliest,
            _ => ResetSpec::Latest,
        }
    }

    /// The topics with their partitions, `--partition` applied to the one
    /// topic.
    fn selection(&self) -> Result<Vec<(String, Option<Vec<i32>>)>> {
        if self.partition.is_empty() {
            return Ok(self.topics.clone());
        }
        match self.topics.as_slice() {
            [(topic, None)] => Ok(vec![(topic.clone(), Some(self.partition.clone()))]),
            [(_, Some(_))] => bail!("--partition: the partitions are already given in --topic"),
            _ => bail!(
                "--partition needs exactly one --topic (give several as --topic T:0,1 instead)"
            ),
        }
    }
}

/// Runs one groups command and returns what to print on stdout.
pub fn run(cmd: GroupsCommand) -> Result<String> {
    let common = match &cmd {
        GroupsCommand::List(a) => &a.common,
        GroupsCommand::Describe(a) | GroupsCommand::Delete(a) => &a.common,
        GroupsCommand::ResetOffsets(a) => &a.common,
    };
    let format = common.format;
    runtime()?.block_on(async {
        let addresses = bootstrap(&common.connect).await?;
        let admin = GroupAdmin::connect(addresses, GroupAdminOptions::default())?;
        let json = format == Format::Json;
        Ok(match &cmd {
            GroupsCommand::List(_) => {
                let list = admin.list_groups().await?;
                if json {
                    group_format::list_json(&list)
                } else {
                    group_format::list_table(&list)
                }
            }
            GroupsCommand::Describe(a) => {
                let d = admin.describe_group(&a.group).await?;
                if json {
                    group_format::describe_json(&d)
                } else {
                    group_format::describe_text(&d)
                }
            }
            GroupsCommand::Delete(a) => {
                admin.delete_group(&a.group).await?;
                if json {
                    group_format::deleted_json(&a.group)
                } else {
                    group_format::deleted_text(&a.group)
                }
            }
            GroupsCommand::ResetOffsets(a) => {
                let selection = a.selection()?;
                let plan = admin.plan_reset(&a.group, &selection, a.spec()).await?;
                if a.execute {
                    admin.execute_reset(&plan).await?;
                }
                if json {
                    group_format::reset_json(&plan, a.execute)
                } else {
                    group_format::reset_text(&plan, a.execute)
                }
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_and_time_flags() {
        assert_eq!(parse_topic("orders"), Ok(("orders".into(), None)));
        assert_eq!(
            parse_topic("orders:0, 2"),
            Ok(("orders".into(), Some(vec![0, 2])))
        );
        assert!(parse_topic("orders:x").is_err());
        assert!(parse_topic("orders:-1").is_err());
        assert!(parse_topic(":1").is_err());
        assert_eq!(parse_datetime("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_datetime("1970-01-01T00:00:01Z"), Ok(1_000));
        assert_eq!(
            parse_datetime("2024-05-01T12:00:00Z"),
            Ok(1_714_564_800_000)
        );
        assert!(parse_datetime("yesterday").is_err());
    }
}
