//! `ballast reassign`: partition reassignment plans in Kafka's JSON format
//! (`{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2,3]}]}`).
//!
//! * `generate --topics t1,t2 --brokers 1,2,3` prints the current
//!   assignment of those topics and a proposal over those brokers that
//!   moves as few replicas as possible (`ballast_assignor::reassign`), with
//!   the number of moves beside its lower bound and the replicas per broker
//!   before and after;
//! * `validate --plan plan.json` checks a plan against the cluster (unknown
//!   topics, partitions or brokers, duplicate replicas, wrong replica
//!   counts, partitions listed twice) and lists every problem at once.
//!
//! * `execute --plan plan.json [--throttle 50MiB/s] [--max-moves-per-broker N]
//!   [--max-moves N] [--wait]` hands the plan to the coordinator, which
//!   validates it whole, persists it and moves partitions (add replicas,
//!   catch up under the throttle, move leadership, drop old replicas);
//! * `status [--watch]` shows each partition's progress (bytes copied, rate,
//!   ETA); on a terminal `--watch` (and `execute --wait`) draws a progress
//!   bar on stderr until the reassignment ends;
//! * `verify` says complete, in progress, cancelled or failed (failed exits
//!   non-zero);
//! * `cancel` returns unfinished partitions to their original replicas.
//!
//! Plans are parsed here ([`parse_plan`], pure): the file is the user's, so
//! every field is checked and named in errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ballast_assignor::{BrokerMetadata, PartitionReplicas, propose_reassignment, validate_plan};
use ballast_client::admin::{
    AdminClient, DescribeReassignmentResponse, ExecuteReassignmentRequest, PartitionFilter,
    PartitionMoveState, ReassignmentPartition,
};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::admin::{ConnectArgs, block_on};
use crate::assign::Format;

/// The `ballast reassign` subcommands.
#[derive(Debug, Subcommand)]
pub enum ReassignCommand {
    /// Print the current assignment of some topics and a proposal over the
    /// given brokers that moves as few replicas as possible.
    Generate(GenerateArgs),
    /// Check a reassignment plan (Kafka's JSON) against the cluster and
    /// list every problem.
    Validate(ValidateArgs),
    /// Start moving partitions as a plan says (validated whole and
    /// persisted by the coordinator first).
    Execute(ExecuteArgs),
    /// Per-partition progress of the latest reassignment.
    Status(StatusArgs),
    /// Whether the latest reassignment is complete, in progress, cancelled
    /// or failed (failed exits non-zero).
    Verify(VerifyArgs),
    /// Return the partitions that have not finished to their original
    /// replicas.
    Cancel(VerifyArgs),
}

/// Flags of `ballast reassign execute`.
#[derive(Debug, Args)]
pub struct ExecuteArgs {
    /// The plan file (Kafka's reassignment JSON).
    #[arg(long)]
    plan: PathBuf,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// How a plan runs (shared by `reassign execute` and `balance apply`).
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Replication throttle for the replicas being added, per broker:
    /// `50MiB/s`, `10MB/s`, `1048576` (bytes/s). Removed automatically
    /// when the reassignment ends. Default: unthrottled.
    #[arg(long, value_parser = parse_rate)]
    throttle: Option<u64>,
    /// Moves in flight at once that involve one broker (default: the
    /// coordinator's, 5).
    #[arg(long)]
    max_moves_per_broker: Option<u32>,
    /// Moves in flight at once in the cluster (default: the coordinator's,
    /// 50).
    #[arg(long)]
    max_moves: Option<u32>,
    /// Wait until the reassignment ends, showing progress on a terminal.
    #[arg(long)]
    wait: bool,
}

/// Starts a reassignment of `partitions` and, with `--wait`, follows it to
/// its end.
pub(crate) async fn execute(
    admin: &AdminClient,
    format: Format,
    partitions: Vec<ReassignmentPartition>,
    run: &RunArgs,
) -> Result<String> {
    let request = ExecuteReassignmentRequest {
        partitions,
        throttle_bytes_per_sec: run.throttle.unwrap_or(0),
        max_moves_per_broker: run.max_moves_per_broker.unwrap_or(0),
        max_moves: run.max_moves.unwrap_or(0),
        validate_only: false,
    };
    let r = admin.execute_reassignment(request).await?;
    let mut out = match format {
        Format::Table => format!(
            "Started reassignment {}: {} partitions move ({} replicas to copy), {} already in place.\n",
            r.id, r.partitions, r.replica_moves, r.unchanged
        ),
        Format::Json => format!(
            "{}\n",
            json!({"id": r.id, "partitions": r.partitions, "replica_moves": r.replica_moves, "unchanged": r.unchanged})
        ),
    };
    if run.wait {
        let done = watch(admin).await?;
        out.push_str(&match format {
            Format::Table => verify_text(&done)?,
            Format::Json => status_json(&done),
        });
    }
    Ok(out)
}

/// Flags of `ballast reassign status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Keep watching until the reassignment ends (progress bar on a
    /// terminal).
    #[arg(long)]
    watch: bool,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Flags of `ballast reassign verify` and `cancel`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Parses a byte rate: a number of bytes per second, optionally with a
/// unit (`B`, `KB`, `MB`, `GB` powers of 1000; `KiB`, `MiB`, `GiB` powers
/// of 1024) and an optional `/s`.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t).trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a rate (e.g. 50MiB/s)"))?;
    let scale: f64 = match unit.trim() {
        "" | "B" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "{other:?}: unknown unit (B, KB, MB, GB, KiB, MiB, GiB)"
            ));
        }
    };
    let bytes = value * scale;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        return Err(format!("{text:?}: a rate must be at least 1 byte/s"));
    }
    Ok(bytes as u64)
}

/// Flags of `ballast reassign generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Topics to reassign, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    topics: Vec<String>,
    /// Broker ids to place them on, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    brokers: Vec<i32>,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Flags of `ballast reassign validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The plan file (Kafka's reassignment JSON).
    #[arg(long)]
    plan: PathBuf,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Runs a `ballast reassign` command.
pub fn run(cmd: ReassignCommand) -> Result<String> {
    match cmd {
        ReassignCommand::Generate(args) => {
            let GenerateArgs {
                topics,
                brokers,
                connect,
            } = args;
            block_on(connect, |admin, format| async move {
                let registered = admin.list_brokers().await?;
                let mut targets = Vec::new();
                for id in &brokers {
                    let Some(b) = registered.iter().find(|b| b.broker_id == *id) else {
                        bail!("--brokers: broker {id} is not registered");
                    };
                    targets.push(BrokerMetadata {
                        id: *id,
                        rack: (!b.rack.is_empty()).then(|| b.rack.clone()),
                    });
                }
                let described = admin
                    .describe_topics(topics.clone(), PartitionFilter::All, true)
                    .await?;
                let mut current = Vec::new();
                for name in &topics {
                    let Some(t) = described.iter().find(|t| &t.name == name) else {
                        bail!("--topics: topic {name:?} does not exist");
                    };
                    for p in &t.partitions {
                        current.push(PartitionReplicas {
                            topic: t.name.clone(),
                            partition: p.partition,
                            replicas: p.replicas.clone(),
                        });
                    }
                }
                let proposal = propose_reassignment(&current, &targets)?;
                Ok(match format {
                    Format::Table => {
                        let loads: Vec<String> = proposal
                            .loads
                            .iter()
                            .map(|(b, (before, after))| format!("{b}: {before} -> {after}"))
                            .collect();
                        format!(
                            "Current partition replica assignment\n{}\n\nProposed partition reassignment configuration\n{}\n\n\
                             Moves {} replicas (lower bound {}). Replicas per broker: {}.\n",
                            plan_json(&current),
                            plan_json(&proposal.partitions),
                            proposal.moves,
                            proposal.lower_bound,
                            loads.join(", ")
                        )
                    }
                    Format::Json => {
                        let loads: BTreeMap<String, Value> = proposal
                            .loads
                            .iter()
                            .map(|(b, (before, after))| {
                                (b.to_string(), json!({"before": before, "after": after}))
                            })
                            .collect();
                        let v = json!({
                            "current": plan_value(&current),
                            "proposed": plan_value(&proposal.partitions),
                            "moves": proposal.moves,
                            "lower_bound": proposal.lower_bound,
                            "replicas_per_broker": loads,
                        });
                        format!("{v}\n")
                    }
                })
            })
        }
        ReassignCommand::Execute(args) => {
            let plan = read_plan(&args.plan)?;
            block_on(args.connect, |admin, format| async move {
                let partitions = plan
                    .into_iter()
                    .map(|p| ReassignmentPartition {
                        topic: p.topic,
                        partition: p.partition,
                        replicas: p.replicas,
                    })
                    .collect();
                execute(&admin, format, partitions, &args.run).await
            })
        }
        ReassignCommand::Status(args) => block_on(args.connect, |admin, format| async move {
            let r = if args.watch {
                watch(&admin).await?
            } else {
                admin.describe_reassignment().await?
            };
            Ok(match format {
                Format::Table => status_text(&r),
                Format::Json => status_json(&r),
            })
        }),
        ReassignCommand::Verify(args) => block_on(args.connect, |admin, format| async move {
            let r = admin.describe_reassignment().await?;
            match format {
                Format::Table => verify_text(&r),
                Format::Json => {
                    verify_text(&r)?;
                    Ok(status_json(&r))
                }
            }
        }),
        ReassignCommand::Cancel(args) => block_on(args.connect, |admin, format| async move {
            let r = admin.cancel_reassignment().await?;
            Ok(match format {
                Format::Table => format!(
                    "Cancel requested: {} partitions go back to (or stay on) their original replicas, {} are complete.\n",
                    r.cancelled, r.complete
                ),
                Format::Json => format!(
                    "{}\n",
                    json!({"cancelled": r.cancelled, "complete": r.complete})
                ),
            })
        }),
        ReassignCommand::Validate(args) => {
            let plan = read_plan(&args.plan)?;
            block_on(args.connect, |admin, format| async move {
                let brokers: BTreeSet<i32> = admin
                    .list_brokers()
                    .await?
                    .iter()
                    .map(|b| b.broker_id)
                    .collect();
                let names: BTreeSet<String> = plan.iter().map(|p| p.topic.clone()).collect();
                let described = admin
                    .describe_topics(Vec::new(), PartitionFilter::All, true)
                    .await?;
                let topics: BTreeMap<String, Vec<Vec<i32>>> = described
                    .into_iter()
                    .filter(|t| names.contains(&t.name))
                    .map(|t| {
                        let mut parts = t.partitions;
                        parts.sort_by_key(|p| p.partition);
                        (t.name, parts.into_iter().map(|p| p.replicas).collect())
                    })
                    .collect();
                if let Err(problems) = validate_plan(&plan, &topics, &brokers) {
                    let list: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
                    bail!(
                        "the plan has {} problem(s):\n{}",
                        problems.len(),
                        list.join("\n")
                    );
                }
                let moves: usize = plan
                    .iter()
                    .map(|p| {
                        let now = &topics[&p.topic][p.partition as usize];
                        p.replicas.iter().filter(|b| !now.contains(b)).count()
                    })
                    .sum();
                Ok(match format {
                    Format::Table => format!(
                        "The plan is valid: {} partitions, {moves} replica moves.\n",
                        plan.len()
                    ),
                    Format::Json => {
                        format!(
                            "{}\n",
                            json!({"valid": true, "partitions": plan.len(), "moves": moves})
                        )
                    }
                })
            })
        }
    }
}

pub(crate) fn read_plan(path: &PathBuf) -> Result<Vec<PartitionReplicas>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse_plan(&text).with_context(|| format!("{}", path.display()))
}

fn state_name(s: i32) -> &'static str {
    match PartitionMoveState::try_from(s).unwrap_or(PartitionMoveState::Unspecified) {
        PartitionMoveState::Pending => "pending",
        PartitionMoveState::Moving => "moving",
        PartitionMoveState::Complete => "complete",
        PartitionMoveState::Cancelled => "cancelled",
        PartitionMoveState::Failed => "failed",
        PartitionMoveState::Reverting => "reverting",
        PartitionMoveState::Unspecified => "unknown",
    }
}

pub(crate) fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Totals over a reassignment: (partitions final, partitions, bytes copied,
/// bytes total, rate).
fn totals(r: &DescribeReassignmentResponse) -> (usize, usize, u64, u64, f64) {
    let done = r
        .partitions
        .iter()
        .filter(|p| {
            matches!(
                PartitionMoveState::try_from(p.state),
                Ok(PartitionMoveState::Complete
                    | PartitionMoveState::Cancelled
                    | PartitionMoveState::Failed)
            )
        })
        .count();
    let copied = r.partitions.iter().map(|p| p.bytes_copied).sum();
    let total = r.partitions.iter().map(|p| p.bytes_total).sum();
    let rate = r.partitions.iter().map(|p| p.bytes_per_sec).sum();
    (done, r.partitions.len(), copied, total, rate)
}

/// One line with a progress bar (for a terminal).
fn progress_line(r: &DescribeReassignmentResponse) -> String {
    let (done, n, copied, total, rate) = totals(r);
    let fraction = if total > 0 {
        copied as f64 / total as f64
    } else if n > 0 {
        done as f64 / n as f64
    } else {
        1.0
    };
    let width = 30;
    let filled = ((fraction * width as f64).round() as usize).min(width);
    let eta = if rate > 0.0 && total > copied {
        format!(" ETA {:.0}s", (total - copied) as f64 / rate)
    } else {
        String::new()
    };
    format!(
        "[{}{}] {:>3.0}% {done}/{n} partitions, {} of {}, {}/s{eta}",
        "#".repeat(filled),
        ".".repeat(width - filled),
        fraction * 100.0,
        human_bytes(copied as f64),
        human_bytes(total as f64),
        human_bytes(rate)
    )
}

/// The status table.
fn status_text(r: &DescribeReassignmentResponse) -> String {
    if !r.exists {
        return "No reassignment has been started.\n".into();
    }
    let mut out = format!(
        "Reassignment {} is {} (throttle {}, at most {} moves per broker, {} in total).\n",
        r.id,
        r.state,
        if r.throttle_bytes_per_sec == 0 {
            "none".to_owned()
        } else {
            format!("{}/s", human_bytes(r.throttle_bytes_per_sec as f64))
        },
        r.max_moves_per_broker,
        r.max_moves
    );
    let mut table = crate::table::Table::new([
        "PARTITION",
        "STATE",
        "FROM",
        "TO",
        "COPIED",
        "RATE",
        "ETA",
        "DETAIL",
    ]);
    let list = |v: &[i32]| {
        v.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    for p in &r.partitions {
        let eta = if p.bytes_per_sec > 0.0 && p.bytes_total > p.bytes_copied {
            format!(
                "{:.0}s",
                (p.bytes_total - p.bytes_copied) as f64 / p.bytes_per_sec
            )
        } else {
            "-".into()
        };
        table.row([
            format!("{}-{}", p.topic, p.partition),
            state_name(p.state).into(),
            list(&p.original),
            list(&p.target),
            format!(
                "{}/{}",
                human_bytes(p.bytes_copied as f64),
                human_bytes(p.bytes_total as f64)
            ),
            format!("{}/s", human_bytes(p.bytes_per_sec)),
            eta,
            p.detail.clone(),
        ]);
    }
    out.push_str(&table.render());
    out.push_str(&progress_line(r));
    out.push('\n');
    out
}

pub(crate) fn status_json(r: &DescribeReassignmentResponse) -> String {
    let parts: Vec<Value> = r
        .partitions
        .iter()
        .map(|p| {
            json!({
                "topic": p.topic, "partition": p.partition, "state": state_name(p.state),
                "original": p.original, "target": p.target, "replicas": p.replicas,
                "bytes_copied": p.bytes_copied, "bytes_total": p.bytes_total,
                "bytes_per_sec": p.bytes_per_sec, "detail": p.detail,
            })
        })
        .collect();
    let v = json!({
        "exists": r.exists, "id": r.id, "state": r.state,
        "throttle_bytes_per_sec": r.throttle_bytes_per_sec,
        "max_moves_per_broker": r.max_moves_per_broker, "max_moves": r.max_moves,
        "created_ms": r.created_ms, "finished_ms": r.finished_ms, "partitions": parts,
    });
    format!("{v}\n")
}

/// Polls until the reassignment ends, drawing progress on stderr when it is
/// a terminal. Returns the final description.
pub(crate) async fn watch(admin: &AdminClient) -> Result<DescribeReassignmentResponse> {
    let tty = std::io::stderr().is_terminal();
    loop {
        let r = admin.describe_reassignment().await?;
        let running = r.exists && (r.state == "running" || r.state == "cancelling");
        if tty {
            let mut err = std::io::stderr();
            let _ = write!(err, "\r\x1b[2K{}", progress_line(&r));
            if !running {
                let _ = writeln!(err);
            }
            let _ = err.flush();
        }
        if !running {
            return Ok(r);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `verify`: an overall verdict and the partitions that are not complete.
pub(crate) fn verify_text(r: &DescribeReassignmentResponse) -> Result<String> {
    if !r.exists {
        return Ok("No reassignment has been started.\n".into());
    }
    let failed: Vec<String> = r
        .partitions
        .iter()
        .filter(|p| p.state == PartitionMoveState::Failed as i32)
        .map(|p| format!("  {}-{}: {}", p.topic, p.partition, p.detail))
        .collect();
    if !failed.is_empty() {
        bail!(
            "reassignment {} failed for {} partition(s):\n{}",
            r.id,
            failed.len(),
            failed.join("\n")
        );
    }
    let (done, n, ..) = totals(r);
    Ok(match r.state.as_str() {
        "completed" => format!(
            "Reassignment {} is complete: {n} partitions on their target replicas; throttles removed.\n",
            r.id
        ),
        "cancelled" => format!(
            "Reassignment {} was cancelled: partitions not finished are on their original replicas.\n",
            r.id
        ),
        state => format!(
            "Reassignment {} is in progress ({state}): {done} of {n} partitions finished.\n",
            r.id
        ),
    })
}

pub use crate::inputs::{parse_plan, plan_json, plan_value};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_plans_round_trip() {
        let text = r#"{"version":1,"partitions":[{"topic":"t1","partition":0,"replicas":[1,2,3],"log_dirs":["any","any","any"]},{"topic":"t1","partition":1,"replicas":[2,3,1]}]}"#;
        let plan = parse_plan(text).unwrap();
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[1].replicas, vec![2, 3, 1]);
        assert_eq!(
            plan_json(&plan),
            r#"{"partitions":[{"partition":0,"replicas":[1,2,3],"topic":"t1"},{"partition":1,"replicas":[2,3,1],"topic":"t1"}],"version":1}"#
        );
        assert_eq!(parse_plan(&plan_json(&plan)).unwrap(), plan);
    }

    #[test]
    fn rates_parse_with_units() {
        assert_eq!(parse_rate("50MiB/s"), Ok(50 << 20));
        assert_eq!(parse_rate("10MB/s"), Ok(10_000_000));
        assert_eq!(parse_rate("1048576"), Ok(1 << 20));
        assert_eq!(parse_rate("1.5 KiB/s"), Ok(1536));
        assert!(parse_rate("fast").is_err());
        assert!(
            parse_rate("5 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-3MB/s").is_err());
    }

    #[test]
    fn progress_line_shows_bytes_and_eta() {
        let r = DescribeReassignmentResponse {
            exists: true,
            state: "running".into(),
            partitions: vec![ballast_client::admin::PartitionMoveProgress {
                state: PartitionMoveState::Moving as i32,
                bytes_total: 4 << 20,
                bytes_copied: 1 << 20,
                bytes_per_sec: (1 << 20) as f64,
                ..Default::default()
            }],
            ..Default::default()
        };
        let line = progress_line(&r);
        assert!(line.starts_with("[########"), "{line}");
        assert!(
            line.contains(" 25% 0/1 partitions, 1.0 MiB of 4.0 MiB, 1.0 MiB/s ETA 3s"),
            "{line}"
        );
    }

    fn moving(
        topic: &str,
        partition: i32,
        state: PartitionMoveState,
        detail: &str,
    ) -> ballast_client::admin::PartitionMoveProgress {
        ballast_client::admin::PartitionMoveProgress {
            topic: topic.into(),
            partition,
            state: state as i32,
            detail: detail.into(),
            ..Default::default()
        }
    }

    fn described(
        state: &str,
        partitions: Vec<ballast_client::admin::PartitionMoveProgress>,
    ) -> DescribeReassignmentResponse {
        DescribeReassignmentResponse {
            exists: true,
            id: "r-7".into(),
            state: state.into(),
            partitions,
            ..Default::default()
        }
    }

    #[test]
    fn verify_says_in_progress_with_the_partitions_finished() {
        use PartitionMoveState::{Complete, Moving, Pending, Reverting};
        let r = described(
            "running",
            vec![
                moving("t", 0, Complete, ""),
                moving("t", 1, Moving, ""),
                moving("t", 2, Pending, ""),
            ],
        );
        assert_eq!(
            verify_text(&r).unwrap(),
            "Reassignment r-7 is in progress (running): 1 of 3 partitions finished.\n"
        );
        // A cancel still reverting is in progress too, not cancelled.
        let r = described(
            "cancelling",
            vec![moving("t", 0, Complete, ""), moving("t", 1, Reverting, "")],
        );
        assert_eq!(
            verify_text(&r).unwrap(),
            "Reassignment r-7 is in progress (cancelling): 1 of 2 partitions finished.\n"
        );
        let r = described("completed", vec![moving("t", 0, Complete, "")]);
        assert!(
            verify_text(&r)
                .unwrap()
                .contains("is complete: 1 partitions")
        );
        let none = DescribeReassignmentResponse::default();
        assert_eq!(
            verify_text(&none).unwrap(),
            "No reassignment has been started.\n"
        );
    }

    #[test]
    fn verify_fails_listing_every_failed_partition() {
        use PartitionMoveState::{Complete, Failed, Moving};
        let r = described(
            "running",
            vec![
                moving("gone", 0, Failed, "topic deleted"),
                moving("t", 1, Moving, ""),
                moving(
                    "t",
                    4,
                    Failed,
                    "replicas 5,6 are neither the original nor the target",
                ),
            ],
        );
        let err = format!("{:#}", verify_text(&r).unwrap_err());
        assert_eq!(
            err,
            "reassignment r-7 failed for 2 partition(s):\n  gone-0: topic deleted\n  \
             t-4: replicas 5,6 are neither the original nor the target"
        );
        // A failed partition fails the verdict even once the rest ended.
        let r = described(
            "completed",
            vec![moving("t", 0, Complete, ""), moving("t", 1, Failed, "x")],
        );
        assert!(verify_text(&r).is_err());
    }

    #[test]
    fn malformed_plans_name_the_field() {
        let err = |t: &str| format!("{:#}", parse_plan(t).unwrap_err());
        assert!(err("nope").contains("not JSON"));
        assert!(err(r#"{"partitions":[]}"#).contains("version"));
        assert!(err(r#"{"version":2,"partitions":[]}"#).contains("not supported"));
        assert!(err(r#"{"version":1}"#).contains("\"partitions\""));
        assert!(
            err(r#"{"version":1,"partitions":[{"partition":0,"replicas":[1]}]}"#)
                .contains("partitions[0].topic")
        );
        assert!(err(r#"{"version":1,"partitions":[{"topic":"t","partition":9999999999,"replicas":[1]}]}"#).contains("partitions[0].partition"));
        assert!(
            err(r#"{"version":1,"partitions":[{"topic":"t","partition":0,"replicas":["a"]}]}"#)
                .contains("partitions[0].replicas")
        );
    }
}
