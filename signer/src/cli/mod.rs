//! The `signer` command line: one file per subcommand group.
//!
//! `policy` belongs to `policy.rs`, `officer` to `officer.rs`, `serve` to
//! `serve.rs`, `audit` to `audit.rs`; the offline PSBT commands to `psbt.rs`.
#![allow(clippy::print_stdout)]

mod audit;
mod officer;
mod policy;
mod psbt;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use signer::SignError;

/// Verify PSBTs against a registered policy and sign them with HSM keys.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a PSBT against the policy and sign it with the keys this HSM holds.
    ///
    /// The user PIN comes from HSM_USER_PIN or the file named by HSM_USER_PIN_FILE.
    SignPsbt(psbt::SignArgs),
    /// Show what a PSBT does under the policy, and anything that cannot be proven.
    InspectPsbt(psbt::InspectArgs),
    /// Policy ceremony: create, show, register policies and derive addresses.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Treasury officers: keys, pending requests, approvals, revocation.
    #[command(subcommand)]
    Officer(officer::OfficerCommand),
    /// Run the signing service (REST under /v1).
    Serve(serve::ServeArgs),
    /// API clients of the service: bearer tokens and the policies they may use.
    #[command(subcommand)]
    Client(serve::ClientCommand),
    /// The hash-chained audit log: verify it or export it.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

/// Exit status for a refused PSBT; 1 is any other failure.
const EXIT_REFUSED: u8 = 2;

pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<SignError>() {
            Some(refusal) => {
                eprintln!("error[{}]: {refusal}", refusal.code());
                ExitCode::from(EXIT_REFUSED)
            }
            None => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::SignPsbt(args) => psbt::sign(args),
        Command::InspectPsbt(args) => psbt::inspect(args),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Officer(cmd) => officer::run(cmd),
        Command::Serve(args) => serve::run(args),
        Command::Client(cmd) => serve::client(cmd),
        Command::Audit(cmd) => audit::run(cmd),
    }
}
