//! The `coordinator` command: migrations and ledger checks.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::Write;

#[derive(Parser, Debug)]
#[command(name = "coordinator", version, about = "The banking core")]
struct Cli {
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", default_value = coordinator::db::DEFAULT_DATABASE_URL)]
    database_url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the database migrations.
    Migrate,
    /// Ledger tools.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
}

#[derive(Subcommand, Debug)]
enum LedgerCommand {
    /// Checks every ledger invariant; exits with status 1 if one is broken.
    Verify {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let pool = coordinator::db::connect(&cli.database_url, 2)
        .await
        .context("connecting to PostgreSQL")?;
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Migrate => {
            coordinator::db::migrate(&pool).await.context("migrating")?;
            writeln!(out, "migrations applied")?;
        }
        Command::Ledger {
            command: LedgerCommand::Verify { json },
        } => {
            let report = coordinator::ledger::verify(&pool)
                .await
                .context("verifying the ledger")?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
            } else {
                writeln!(
                    out,
                    "checked {} accounts, {} transactions, {} entries",
                    report.accounts, report.transactions, report.entries
                )?;
                for v in &report.violations {
                    writeln!(out, "VIOLATION: {v}")?;
                }
                if report.is_ok() {
                    writeln!(out, "ledger OK: every invariant holds")?;
                }
            }
            if !report.is_ok() {
                out.flush()?;
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
