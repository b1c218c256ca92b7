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
//! Executing a plan (moving data, throttles, progress, cancel) is the
//! coordinator's reassignment machinery, not built yet; `validate` is the
//! check `execute` will run before anything moves.
//!
//! Plans are parsed here ([`parse_plan`], pure): the file is the user's, so
//! every field is checked and named in errors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use ballast_assignor::{BrokerMetadata, PartitionReplicas, propose_reassignment, validate_plan};
use ballast_client::admin::PartitionFilter;
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
        ReassignCommand::Validate(args) => {
            let text = std::fs::read_to_string(&args.plan)
                .with_context(|| format!("cannot read {}", args.plan.display()))?;
            let plan = parse_plan(&text).with_context(|| format!("{}", args.plan.display()))?;
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

/// A plan as Kafka's reassignment JSON (one line).
pub fn plan_json(partitions: &[PartitionReplicas]) -> String {
    plan_value(partitions).to_string()
}

fn plan_value(partitions: &[PartitionReplicas]) -> Value {
    json!({
        "version": 1,
        "partitions": partitions
            .iter()
            .map(|p| json!({"topic": p.topic, "partition": p.partition, "replicas": p.replicas}))
            .collect::<Vec<_>>(),
    })
}

/// Parses Kafka's reassignment JSON. `log_dirs` is accepted and ignored
/// (Ballast agents have one data directory); anything else malformed is
/// an error naming the entry and field.
pub fn parse_plan(text: &str) -> Result<Vec<PartitionReplicas>> {
    let v: Value = serde_json::from_str(text).context("not JSON")?;
    match v.get("version").and_then(Value::as_i64) {
        Some(1) => {}
        Some(other) => bail!("\"version\": {other} is not supported (1 is)"),
        None => bail!("\"version\": missing (Kafka's format has \"version\": 1)"),
    }
    let Some(list) = v.get("partitions").and_then(Value::as_array) else {
        bail!("\"partitions\": missing or not a list");
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let Some(topic) = entry.get("topic").and_then(Value::as_str) else {
            bail!("partitions[{i}].topic: missing or not a string");
        };
        let partition = entry
            .get("partition")
            .and_then(Value::as_i64)
            .and_then(|p| i32::try_from(p).ok())
            .with_context(|| format!("partitions[{i}].partition: missing or not a partition id"))?;
        let Some(replicas) = entry.get("replicas").and_then(Value::as_array) else {
            bail!("partitions[{i}].replicas: missing or not a list");
        };
        let replicas = replicas
            .iter()
            .map(|r| r.as_i64().and_then(|r| i32::try_from(r).ok()))
            .collect::<Option<Vec<i32>>>()
            .with_context(|| format!("partitions[{i}].replicas: not a list of broker ids"))?;
        out.push(PartitionReplicas {
            topic: topic.to_owned(),
            partition,
            replicas,
        });
    }
    Ok(out)
}

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
