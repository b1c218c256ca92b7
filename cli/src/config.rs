//! Server configuration from a TOML file, environment variables and flags,
//! in that order of precedence (flags win): `ballast coordinator --config
//! coordinator.toml ...`, `ballast agent --config agent.toml ...`, and
//! `ballast config print --role agent|coordinator [--config f] [-- flags]`.
//!
//! Keys are the long flag names (`lease-ttl = "6s"`, or with underscores);
//! values are strings, numbers, booleans (a flag: `auto-balance = true`) or
//! arrays (comma-joined, e.g. `etcd = ["http://a:2379", "http://b:2379"]`).
//! Every option is also an environment variable `BALLAST_<NAME>` (e.g.
//! `BALLAST_LEASE_TTL`). The file is turned into flags placed before the
//! command line's own, skipping keys that the environment or the command
//! line set, so one parser (clap's) validates everything and an invalid
//! value names its option; an unknown key is refused by name.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::parser::ValueSource;
use clap::{Args, CommandFactory};

/// The roles that read config files.
const ROLES: &[&str] = &["coordinator", "agent"];

/// `ballast config print`.
#[derive(Debug, Args)]
pub struct PrintArgs {
    /// Which server.
    #[arg(long, value_parser = ["coordinator", "agent"])]
    role: String,
    /// The config file to read.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Flags as they would be given to the server (after `--`).
    #[arg(last = true)]
    flags: Vec<String>,
}

/// `ballast config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration of a server and where each value
    /// comes from (default, file, env, flag).
    Print(PrintArgs),
}

fn env_name(key: &str) -> String {
    format!("BALLAST_{}", key.replace('-', "_").to_uppercase())
}

/// Flags from a TOML file, minus the keys set by `given` flags or the
/// environment. Returns the flags and the keys they came from.
fn file_flags(path: &Path, given: &[OsString]) -> Result<(Vec<OsString>, BTreeSet<String>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--config: cannot read {}", path.display()))?;
    let on_command_line = |key: &str| {
        let flag = format!("--{key}");
        given.iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
        })
    };
    crate::inputs::config_flags(&text, &path.display().to_string(), |key| {
        on_command_line(key) || std::env::var_os(env_name(key)).is_some()
    })
}

/// Splits `--config <file>` / `--config=<file>` out of `args`.
fn take_config(args: &mut Vec<OsString>) -> Result<Option<PathBuf>> {
    let mut found = None;
    let mut i = 0;
    while i < args.len() {
        let Some(a) = args[i].to_str().map(str::to_owned) else {
            i += 1;
            continue;
        };
        if a == "--" {
            break;
        }
        if a == "--config" {
            let Some(v) = args.get(i + 1).cloned() else {
                bail!("--config: a file name is required");
            };
            args.drain(i..=i + 1);
            found = Some(PathBuf::from(v));
            continue;
        }
        if let Some(v) = a.strip_prefix("--config=") {
            found = Some(PathBuf::from(v));
            args.remove(i);
            continue;
        }
        i += 1;
    }
    Ok(found)
}

/// The command line with a server's `--config` file expanded into flags
/// (unchanged for other commands).
pub fn expand(argv: Vec<OsString>) -> Result<Vec<OsString>> {
    let is_server = argv
        .get(1)
        .and_then(|a| a.to_str())
        .is_some_and(|a| ROLES.contains(&a));
    if !is_server {
        return Ok(argv);
    }
    let mut rest: Vec<OsString> = argv[2..].to_vec();
    let Some(path) = take_config(&mut rest)? else {
        return Ok(argv);
    };
    let (flags, _) = file_flags(&path, &rest)?;
    let mut out = argv[..2].to_vec();
    out.extend(flags);
    out.extend(rest);
    Ok(out)
}

/// `ballast config print`: every option of the role with its effective
/// value and its source, as TOML.
pub fn print(args: PrintArgs) -> Result<String> {
    let given: Vec<OsString> = args.flags.iter().map(OsString::from).collect();
    let (flags, from_file) = match &args.config {
        Some(p) => file_flags(p, &given)?,
        None => (Vec::new(), BTreeSet::new()),
    };
    let mut command = crate::Cli::command();
    // Global flags (--tls-*) become the role's too.
    command.build();
    let sub = command
        .find_subcommand_mut(&args.role)
        .context("unknown role")?
        .clone();
    let mut argv = vec![OsString::from(format!("ballast {}", args.role))];
    argv.extend(flags);
    argv.extend(given);
    let matches = sub.clone().try_get_matches_from(argv).map_err(|e| {
        let text = e.render().to_string();
        anyhow::anyhow!("{}", text.trim_start_matches("error: ").trim_end())
    })?;
    let mut out = format!("# effective configuration of `ballast {}`\n", args.role);
    for arg in sub.get_arguments() {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" || id == "config" {
            continue;
        }
        let key = arg.get_long().unwrap_or(id);
        let source = match matches.value_source(id) {
            Some(ValueSource::DefaultValue) => "default",
            Some(ValueSource::EnvVariable) => "env",
            Some(ValueSource::CommandLine) if from_file.contains(key) => "file",
            Some(ValueSource::CommandLine) => "flag",
            _ => "unset",
        };
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|v| v.map(|s| s.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let value = match values.as_slice() {
            [] if source == "unset" => {
                out.push_str(&format!(
                    "# {key}: not set, the built-in default applies (env {})\n",
                    env_name(key)
                ));
                continue;
            }
            [] => "true".to_owned(),
            [one] => toml::Value::String(one.clone()).to_string(),
            many => toml::Value::Array(
                many.iter()
                    .map(|s| toml::Value::String(s.clone()))
                    .collect(),
            )
            .to_string(),
        };
        out.push_str(&format!("{key} = {value}  # {source}\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_file_becomes_flags_before_the_command_lines_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "lease_ttl = \"8s\"\nsession-timeout = \"12s\"\nauto-balance = true\nfull-sync-interval = \"1m\"\noffsets-partitions = 10\netcd = [\"http://a:2379\", \"http://b:2379\"]\n",
        )
        .unwrap();
        let argv = os(&[
            "ballast",
            "coordinator",
            "--config",
            path.to_str().unwrap(),
            "--session-timeout",
            "20s",
        ]);
        let out = expand(argv).unwrap();
        let text: Vec<String> = out
            .iter()
            .map(|s| s.to_string_lossy().into_owned())
            .collect();
        assert_eq!(&text[..2], &["ballast", "coordinator"]);
        assert!(text.windows(2).any(|w| w == ["--lease-ttl", "8s"]));
        assert!(
            text.windows(2)
                .any(|w| w == ["--etcd", "http://a:2379,http://b:2379"])
        );
        assert!(text.windows(2).any(|w| w == ["--offsets-partitions", "10"]));
        assert!(text.contains(&"--auto-balance".to_owned()));
        // The command line's value wins: the file's is left out.
        assert!(!text.contains(&"12s".to_owned()));
        assert_eq!(&text[text.len() - 2..], &["--session-timeout", "20s"]);
        assert!(!text.contains(&"--config".to_owned()));
    }

    #[test]
    fn other_commands_are_untouched_and_bad_files_are_named() {
        let argv = os(&["ballast", "topics", "list", "--config", "x"]);
        assert_eq!(expand(argv.clone()).unwrap(), argv);
        let err = expand(os(&["ballast", "agent", "--config", "/nonexistent.toml"])).unwrap_err();
        assert!(format!("{err:#}").contains("cannot read /nonexistent.toml"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "lease-ttl = \n").unwrap();
        let err = expand(os(&[
            "ballast",
            "agent",
            "--config",
            path.to_str().unwrap(),
        ]))
        .unwrap_err();
        assert!(format!("{err:#}").contains("not valid TOML"));
    }
}
