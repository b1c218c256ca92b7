//! `ballast balance`: the rebalancer.
//!
//! * `propose [--goal replicas|leaders|disk] [--remove-broker 3]...
//!   [--add-broker 7]... [--output plan.json]` asks the coordinator for a
//!   plan (`ballast_assignor::balance`, over the live brokers and the sizes
//!   agents report) and prints the distribution per broker before and
//!   after, the replica moves and bytes beside their lower bounds, and the
//!   plan in Kafka's reassignment JSON (to a file with `--output`);
//! * `apply` computes the same proposal and executes it through the
//!   reassignment machinery (`--plan` executes a saved proposal instead),
//!   with the same throttle and concurrency flags as `reassign execute`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ballast_assignor::PartitionReplicas;
use ballast_client::admin::{
    AdminClient, BalanceGoal, BrokerUsage, ProposeBalanceRequest, ProposeBalanceResponse,
    ReassignmentPartition,
};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use crate::admin::{ConnectArgs, block_on};
use crate::assign::Format;
use crate::reassign::{RunArgs, execute, human_bytes, plan_json, read_plan};
use crate::table::Table;

/// The `ballast balance` subcommands.
#[derive(Debug, Subcommand)]
pub enum BalanceCommand {
    /// Compute a plan and print it with before/after distributions.
    Propose(ProposeArgs),
    /// Compute a plan (or take `--plan`) and execute it.
    Apply(ApplyArgs),
}

/// What to even out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum GoalArg {
    /// Replica counts per broker.
    #[default]
    Replicas,
    /// Replica counts, then preferred-leader counts (reordering replicas).
    Leaders,
    /// Bytes per broker, from the sizes agents report.
    Disk,
}

/// The proposal's inputs.
#[derive(Debug, Args)]
pub struct GoalArgs {
    /// What to even out.
    #[arg(long, value_enum, default_value_t)]
    goal: GoalArg,
    /// Drain this broker completely (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    remove_broker: Vec<i32>,
    /// Fill this (new, live) broker (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    add_broker: Vec<i32>,
}

/// Flags of `ballast balance propose`.
#[derive(Debug, Args)]
pub struct ProposeArgs {
    #[command(flatten)]
    goal: GoalArgs,
    /// Write the plan (Kafka's reassignment JSON) to this file.
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    connect: ConnectArgs,
}

/// Flags of `ballast balance apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    goal: GoalArgs,
    /// Execute this saved proposal instead of computing a new one.
    #[arg(long, conflicts_with_all = ["goal", "remove_broker", "add_broker"])]
    plan: Option<PathBuf>,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    connect: ConnectArgs,
}

fn request(g: &GoalArgs) -> ProposeBalanceRequest {
    ProposeBalanceRequest {
        goal: match g.goal {
            GoalArg::Replicas => BalanceGoal::Replicas,
            GoalArg::Leaders => BalanceGoal::Leaders,
            GoalArg::Disk => BalanceGoal::Disk,
        } as i32,
        remove_brokers: g.remove_broker.clone(),
        add_brokers: g.add_broker.clone(),
    }
}

fn plan_of(r: &ProposeBalanceResponse) -> Vec<PartitionReplicas> {
    r.partitions
        .iter()
        .map(|p| PartitionReplicas {
            topic: p.topic.clone(),
            partition: p.partition,
            replicas: p.replicas.clone(),
        })
        .collect()
}

/// The before/after table and the figures beside their lower bounds (the
/// moves' bound is the assignor's `rebalance::lower_bound_moves`: the fewest
/// moves of any result as even as the rack rule allows, so on uneven racks
/// it is not the rack-blind `R / n` count).
pub fn proposal_text(r: &ProposeBalanceResponse) -> String {
    let mut table = Table::new(["BROKER", "REPLICAS", "LEADERS", "BYTES"]);
    let after = |id: i32| -> BrokerUsage {
        r.after
            .iter()
            .find(|u| u.broker_id == id)
            .copied()
            .unwrap_or(BrokerUsage {
                broker_id: id,
                ..Default::default()
            })
    };
    let mut ids: Vec<i32> = r
        .before
        .iter()
        .chain(&r.after)
        .map(|u| u.broker_id)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let b = r
            .before
            .iter()
            .find(|u| u.broker_id == id)
            .copied()
            .unwrap_or_default();
        let a = after(id);
        table.row([
            id.to_string(),
            format!("{} -> {}", b.replicas, a.replicas),
            format!("{} -> {}", b.leaders, a.leaders),
            format!(
                "{} -> {}",
                human_bytes(b.bytes as f64),
                human_bytes(a.bytes as f64)
            ),
        ]);
    }
    let mut out = table.render();
    out.push_str(&format!(
        "\n{} partitions change: {} replica moves (lower bound {}), {} moved (lower bound {}), {} preferred-leader changes; computed in {:.3} s.\n",
        r.partitions.len(),
        r.replica_moves,
        r.lower_bound_moves,
        human_bytes(r.bytes_moved as f64),
        human_bytes(r.lower_bound_bytes as f64),
        r.leader_changes,
        r.compute_seconds
    ));
    if r.unknown_sizes > 0 {
        out.push_str(&format!(
            "{} partitions have no reported size yet (agents report every 30 s); they count as 0 bytes.\n",
            r.unknown_sizes
        ));
    }
    out
}

fn usage_json(list: &[BrokerUsage]) -> serde_json::Value {
    list.iter()
        .map(|u| json!({"broker": u.broker_id, "replicas": u.replicas, "leaders": u.leaders, "bytes": u.bytes}))
        .collect()
}

fn proposal_json(r: &ProposeBalanceResponse) -> String {
    let plan: serde_json::Value = serde_json::from_str(&plan_json(&plan_of(r))).unwrap_or_default();
    format!(
        "{}\n",
        json!({
            "plan": plan,
            "replica_moves": r.replica_moves, "lower_bound_moves": r.lower_bound_moves,
            "bytes_moved": r.bytes_moved, "lower_bound_bytes": r.lower_bound_bytes,
            "leader_changes": r.leader_changes, "unknown_sizes": r.unknown_sizes,
            "compute_seconds": r.compute_seconds,
            "before": usage_json(&r.before), "after": usage_json(&r.after),
        })
    )
}

async fn propose(admin: &AdminClient, g: &GoalArgs) -> Result<ProposeBalanceResponse> {
    Ok(admin.propose_balance(request(g)).await?)
}

/// Runs a `ballast balance` command.
pub fn run(cmd: BalanceCommand) -> Result<String> {
    match cmd {
        BalanceCommand::Propose(args) => block_on(args.connect, |admin, format| async move {
            let r = propose(&admin, &args.goal).await?;
            let mut out = match format {
                Format::Table => proposal_text(&r),
                Format::Json => proposal_json(&r),
            };
            match (&args.output, format) {
                (Some(path), _) => {
                    std::fs::write(path, format!("{}\n", plan_json(&plan_of(&r))))
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    if format == Format::Table {
                        out.push_str(&format!(
                            "Plan written to {}: ballast balance apply --plan {0} (or ballast reassign execute --plan {0}).\n",
                            path.display()
                        ));
                    }
                }
                (None, Format::Table) => {
                    out.push_str(&format!("\n{}\n", plan_json(&plan_of(&r))));
                }
                (None, Format::Json) => {}
            }
            Ok(out)
        }),
        BalanceCommand::Apply(args) => {
            let saved = match &args.plan {
                Some(path) => Some(read_plan(path)?),
                None => None,
            };
            block_on(args.connect, |admin, format| async move {
                let (partitions, mut out) = match saved {
                    Some(plan) => (
                        plan.into_iter()
                            .map(|p| ReassignmentPartition {
                                topic: p.topic,
                                partition: p.partition,
                                replicas: p.replicas,
                            })
                            .collect::<Vec<_>>(),
                        String::new(),
                    ),
                    None => {
                        let r = propose(&admin, &args.goal).await?;
                        let text = match format {
                            Format::Table => proposal_text(&r),
                            Format::Json => String::new(),
                        };
                        (r.partitions, text)
                    }
                };
                if partitions.is_empty() {
                    out.push_str("Already balanced: nothing to move.\n");
                    return Ok(out);
                }
                out.push_str(&execute(&admin, format, partitions, &args.run).await?);
                Ok(out)
            })
        }
    }
}
