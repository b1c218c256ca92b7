//! Parsers of what users hand the command line as files: Kafka's
//! reassignment JSON and the servers' TOML config files. Pure (text in,
//! values or a named error out) and kept to this one file, with only
//! `anyhow`, `serde_json`, `toml` and `ballast-assignor` as dependencies, so
//! that the fuzz targets in `fuzz/` compile it as it is (`#[path]`).

use std::collections::BTreeSet;
use std::ffi::OsString;

use anyhow::{Context, Result, bail};
use ballast_assignor::PartitionReplicas;
use serde_json::{Value, json};

/// A plan as Kafka's reassignment JSON (one line).
pub fn plan_json(partitions: &[PartitionReplicas]) -> String {
    plan_value(partitions).to_string()
}

/// A plan as Kafka's reassignment JSON value.
pub fn plan_value(partitions: &[PartitionReplicas]) -> Value {
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

/// A TOML config file's `text` as command-line flags (`--key value`, a bare
/// `--key` for `true`; `false` leaves the flag out; arrays comma-joined),
/// skipping keys `set_elsewhere` says the command line or the environment
/// set. `source` names the file in errors. Returns the flags and the keys
/// they came from.
pub fn config_flags(
    text: &str,
    source: &str,
    set_elsewhere: impl Fn(&str) -> bool,
) -> Result<(Vec<OsString>, BTreeSet<String>)> {
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("--config {source}: not valid TOML"))?;
    let mut flags = Vec::new();
    let mut keys = BTreeSet::new();
    for (raw_key, value) in table {
        let key = raw_key.replace('_', "-");
        if key == "config" {
            bail!("--config {source}: a config file cannot name another");
        }
        if set_elsewhere(&key) {
            continue;
        }
        let text = match &value {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            toml::Value::Boolean(true) => None,
            toml::Value::Boolean(false) => continue,
            toml::Value::Array(items) => Some(
                items
                    .iter()
                    .map(|v| match v {
                        toml::Value::String(s) => Ok(s.clone()),
                        toml::Value::Integer(i) => Ok(i.to_string()),
                        other => Err(anyhow::anyhow!(
                            "--config {source}: {raw_key}: list items must be strings or numbers, got {other}"
                        )),
                    })
                    .collect::<Result<Vec<_>>>()?
                    .join(","),
            ),
            other => bail!("--config {source}: {raw_key}: unsupported value {other}"),
        };
        flags.push(OsString::from(format!("--{key}")));
        if let Some(t) = text {
            flags.push(OsString::from(t));
        }
        keys.insert(key);
    }
    Ok((flags, keys))
}
