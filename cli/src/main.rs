//! The `ballast` command.
//!
//! Owns the command-line surface: the top-level clap [`Cli`], dispatch to one
//! module per command group, and the process contract every command keeps:
//! results on stdout; on failure nothing on stdout, exactly one line on
//! stderr (`error: ...`) and a non-zero exit (2 when clap refuses the
//! arguments, 1 for everything else). Commands return their output as a
//! `String` and never print or exit themselves; only this file does.
//!
//! Command groups: `assign` (offline planning, [`assign`]). Later groups
//! (`dev`, `coordinator`, `agent`, `topics`, ...) add a variant to
//! [`Command`] and a module beside `assign.rs`.

mod admin;
mod agent;
mod assign;
mod balance;
mod config;
mod data;
mod format;
mod group_format;
mod groups;
mod inputs;
mod reassign;
mod security;
mod server;
mod table;

use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};

/// Ballast: a Kafka-style control plane.
#[derive(Debug, Parser)]
#[command(name = "ballast", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    security: security::SecurityArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Offline planning: compute what the cluster would decide, with no
    /// cluster (replica placement, range assignment, group coordinator).
    #[command(subcommand)]
    Assign(assign::AssignCommand),
    /// Cluster administration: `cluster`, `brokers`, `topics`, `leaders`.
    #[command(flatten)]
    Admin(admin::AdminCommand),
    /// Run a cluster coordinator (etcd-backed; one of several is active).
    Coordinator(server::CoordinatorArgs),
    /// Run a whole local cluster in one process: the embedded store, a
    /// coordinator and broker agents on loopback.
    Dev(server::DevArgs),
    /// Run a broker agent: register with the coordinator, heartbeat, and
    /// apply the partitions it pushes.
    Agent(agent::AgentArgs),
    /// Produce one record per stdin line.
    Produce(data::ProduceArgs),
    /// Print a topic's records, one per line (alone, or as a member of a
    /// consumer group with --group).
    Consume(data::ConsumeArgs),
    /// Consumer groups: list, describe (with lag), delete, reset offsets.
    #[command(subcommand)]
    Groups(groups::GroupsCommand),
    /// Partition reassignment plans (Kafka's JSON): generate a minimal-move
    /// proposal, validate a plan against the cluster.
    #[command(subcommand)]
    Reassign(reassign::ReassignCommand),
    /// The rebalancer: propose a plan that evens out replicas, leaders or
    /// disk per broker (draining or filling brokers), and apply it.
    #[command(subcommand)]
    Balance(balance::BalanceCommand),
    /// Server configuration: print the effective configuration of a role.
    #[command(subcommand)]
    Config(config::ConfigCommand),
}

/// Exit code for arguments clap refuses (clap's own convention).
const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let argv = match config::expand(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => return fail(&format!("error: {e:#}"), ExitCode::from(USAGE_ERROR)),
    };
    let cli = match Cli::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => return clap_exit(&e),
    };
    if let Err(e) = cli.security.apply_client() {
        return fail(&format!("error: {e:#}"), ExitCode::from(USAGE_ERROR));
    }
    let security = cli.security;
    let result = match cli.command {
        Command::Assign(cmd) => assign::run(cmd),
        Command::Admin(cmd) => admin::run(cmd),
        Command::Coordinator(args) => server::coordinator(args, &security),
        Command::Dev(args) => server::dev(args),
        Command::Agent(args) => agent::run(args, &security),
        Command::Produce(args) => data::produce(args),
        Command::Consume(args) => data::consume(args),
        Command::Groups(cmd) => groups::run(cmd),
        Command::Reassign(cmd) => reassign::run(cmd),
        Command::Balance(cmd) => balance::run(cmd),
        Command::Config(config::ConfigCommand::Print(args)) => config::print(args),
    };
    match result {
        Ok(out) => write_stdout(&out),
        Err(e) => fail(&format!("error: {e:#}"), ExitCode::FAILURE),
    }
}

/// Help and version go out as clap prints them; a refusal becomes one line.
fn clap_exit(e: &clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // Printing help can only fail if the stream is gone; nothing
            // useful is left to do then.
            let _ = e.print();
            ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(USAGE_ERROR))
        }
        _ => fail(
            &first_paragraph(&e.render().to_string()),
            ExitCode::from(USAGE_ERROR),
        ),
    }
}

/// The first paragraph of a clap error, on one line: `error: the following
/// required arguments were not provided: --brokers <IDS>` rather than the
/// multi-line message with usage and tips.
fn first_paragraph(rendered: &str) -> String {
    rendered
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Prints `message` as exactly one line on stderr and returns `code`.
fn fail(message: &str, code: ExitCode) -> ExitCode {
    let line: String = message
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    // If stderr itself is gone there is nowhere left to report to.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
    code
}

fn write_stdout(out: &str) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`ballast ... | head`): not our failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(
            &format!("error: cannot write output: {e}"),
            ExitCode::FAILURE,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn clap_errors_become_one_line() {
        let missing = "error: the following required arguments were not provided:\n  \
                       --brokers <IDS>\n  --partitions <N>\n\nUsage: ballast assign replicas\n\n\
                       For more information, try '--help'.\n";
        assert_eq!(
            first_paragraph(missing),
            "error: the following required arguments were not provided: --brokers <IDS> --partitions <N>"
        );
        let e = Cli::try_parse_from(["ballast", "assign", "coordinator"]).unwrap_err();
        let line = first_paragraph(&e.render().to_string());
        assert!(line.contains("--group-id"), "{line}");
        assert!(!line.contains('\n'));
    }
}
