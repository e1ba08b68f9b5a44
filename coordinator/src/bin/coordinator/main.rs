//! The `coordinator` command: configuration, migrations, staff, ledger checks and the API
//! server.

mod serve;
mod staff;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use coordinator::ops::{Config, LogFormat};

#[derive(Parser, Debug)]
#[command(name = "coordinator", version, about = "The banking core")]
struct Cli {
    /// A TOML configuration file (see `coordinator config defaults`).
    #[arg(long, global = true, env = "COORDINATOR_CONFIG")]
    config: Option<PathBuf>,
    /// PostgreSQL URL (over `database.url`).
    #[arg(long, global = true, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the database migrations.
    Migrate,
    /// Migrates (unless --no-migrate), then serves the HTTP API until SIGINT or SIGTERM.
    Serve(Box<serve::ServeFlags>),
    /// Ledger tools.
    Ledger {
        #[command(subcommand)]
        command: LedgerCommand,
    },
    /// The configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Staff members of the admin API.
    Staff {
        #[command(subcommand)]
        command: staff::StaffCommand,
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

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Prints the full default configuration as commented TOML.
    Defaults,
    /// Loads the configuration (file, environment, the flags of `serve`), checks it, and
    /// prints the result with secrets redacted; exits non-zero on any error.
    Check(Box<serve::ServeFlags>),
}

/// The configuration of this invocation: every layer, then the flags, checked.
fn load_config(cli: &Cli, serve: Option<&serve::ServeFlags>) -> anyhow::Result<Config> {
    let mut config = coordinator::ops::load(cli.config.as_deref())?;
    if let Some(url) = &cli.database_url {
        config.database.url = coordinator::ops::DatabaseUrl::new(url.clone());
    }
    if let Some(flags) = serve {
        flags.apply(&mut config)?;
    }
    config.validate()?;
    Ok(config)
}

/// Logs to standard error in the configured format; `RUST_LOG` overrides the filter.
fn init_logs(config: &Config) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| f.parse::<tracing_subscriber::EnvFilter>().ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new(&config.log.filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    match &cli.command {
        Command::Config {
            command: ConfigCommand::Defaults,
        } => {
            let text = coordinator::ops::defaults::render()
                .map_err(|keys| anyhow::anyhow!("keys without a comment: {keys:?}"))?;
            out.write_all(text.as_bytes())?;
            return Ok(());
        }
        Command::Config {
            command: ConfigCommand::Check(flags),
        } => {
            let config = load_config(&cli, Some(flags))?;
            // Secrets are redacted by their types' serialisation.
            out.write_all(toml::to_string_pretty(&config)?.as_bytes())?;
            return Ok(());
        }
        Command::Serve(flags) => {
            let config = load_config(&cli, Some(flags))?;
            drop(out);
            init_logs(&config);
            return serve::serve(config).await;
        }
        _ => {}
    }
    let config = load_config(&cli, None)?;
    init_logs(&config);
    let pool = coordinator::db::connect(config.database.url.expose(), 2)
        .await
        .context("connecting to PostgreSQL")?;
    match cli.command {
        Command::Migrate => {
            coordinator::db::migrate(&pool).await.context("migrating")?;
            writeln!(out, "migrations applied")?;
        }
        Command::Staff { command } => {
            staff::run(&pool, &config, command, &mut out).await?;
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
        Command::Serve(_) | Command::Config { .. } => unreachable!("handled above"),
    }
    Ok(())
}
