//! The `coordinator` command: migrations, ledger checks and the API server.

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
    /// Migrates, then serves the HTTP API until SIGINT or SIGTERM.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "COORDINATOR_BIND", default_value = "127.0.0.1:8080")]
        bind: std::net::SocketAddr,
        /// Development mode: serves the GraphiQL pages.
        #[arg(long, env = "COORDINATOR_DEV")]
        dev: bool,
        /// A TOML file with the limits per KYC level (`level0 = { internal_send = ..,
        /// withdrawal = .. }` to `level3`); the built-in defaults otherwise.
        #[arg(long, env = "COORDINATOR_LIMITS")]
        limits: Option<std::path::PathBuf>,
        /// A TOML file saying where one-time codes go (`email = "outbox" | "smtp"`,
        /// `sms = "outbox" | "none" | "twilio"`, `[smtp]` and `[twilio]` tables); the
        /// outbox table otherwise.
        #[arg(long, env = "COORDINATOR_NOTIFIER")]
        notifier: Option<std::path::PathBuf>,
        /// Database connections.
        #[arg(long, default_value_t = 16)]
        connections: u32,
        /// Seconds a request may run before it is abandoned (503 REQUEST_TIMEOUT).
        #[arg(long, env = "COORDINATOR_REQUEST_TIMEOUT", default_value_t = 30)]
        request_timeout: u64,
        /// Origins allowed to call the API from a browser (CORS), comma-separated;
        /// none by default.
        #[arg(long, env = "COORDINATOR_CORS_ORIGINS", value_delimiter = ',')]
        cors_origins: Vec<String>,
        /// Seconds an authentication may be answered from memory; revocations still
        /// reach every instance at once (PostgreSQL notifications). 0 reads the database
        /// for every request.
        #[arg(long, env = "COORDINATOR_AUTH_CACHE_SECONDS", default_value_t = 30)]
        auth_cache_seconds: u64,
        /// Reverse proxies (CIDRs, comma-separated) whose forwarding header names the
        /// client, for rate limits; none by default (the TCP peer is the client).
        #[arg(long, env = "COORDINATOR_TRUSTED_PROXIES", value_delimiter = ',')]
        trusted_proxies: Vec<ipnet::IpNet>,
        /// The header the trusted proxies write: `x-forwarded-for` or `forwarded`
        /// (RFC 7239). Only this one is read.
        #[arg(
            long,
            env = "COORDINATOR_FORWARDED_HEADER",
            default_value = "x-forwarded-for"
        )]
        forwarded_header: coordinator::api::ForwardedHeader,
        /// A TOML file with the chain source (`[chain]`), the bank's wallets
        /// (`[[wallets]]`) and the deposit rules (`[deposits]`): deposit addresses and the
        /// deposit driver. Without it, on-chain operations answer ONCHAIN_UNAVAILABLE.
        #[arg(long, env = "COORDINATOR_ONCHAIN")]
        onchain: Option<std::path::PathBuf>,
    },
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
    if let Command::Serve {
        bind,
        dev,
        limits,
        notifier,
        connections,
        request_timeout,
        cors_origins,
        auth_cache_seconds,
        trusted_proxies,
        forwarded_header,
        onchain,
    } = &cli.command
    {
        let http = HttpOptions {
            request_timeout: std::time::Duration::from_secs(*request_timeout),
            auth_cache_ttl: std::time::Duration::from_secs(*auth_cache_seconds),
            cors_allowed_origins: cors_origins
                .iter()
                .map(|o| {
                    o.trim()
                        .parse()
                        .with_context(|| format!("CORS origin {o:?}"))
                })
                .collect::<anyhow::Result<_>>()?,
            trusted_proxies: trusted_proxies.clone(),
            forwarded_header: *forwarded_header,
        };
        return serve(
            &cli.database_url,
            *bind,
            *dev,
            ServeFiles {
                limits: limits.as_deref(),
                notifier: notifier.as_deref(),
                onchain: onchain.as_deref(),
            },
            *connections,
            http,
        )
        .await;
    }
    let pool = coordinator::db::connect(&cli.database_url, 2)
        .await
        .context("connecting to PostgreSQL")?;
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Migrate => {
            coordinator::db::migrate(&pool).await.context("migrating")?;
            writeln!(out, "migrations applied")?;
        }
        Command::Serve { .. } => unreachable!("handled above"),
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

/// How `serve` treats requests.
struct HttpOptions {
    request_timeout: std::time::Duration,
    auth_cache_ttl: std::time::Duration,
    cors_allowed_origins: Vec<axum::http::HeaderValue>,
    trusted_proxies: Vec<ipnet::IpNet>,
    forwarded_header: coordinator::api::ForwardedHeader,
}

/// The configuration files of `serve`.
struct ServeFiles<'a> {
    limits: Option<&'a std::path::Path>,
    notifier: Option<&'a std::path::Path>,
    onchain: Option<&'a std::path::Path>,
}

async fn serve(
    database_url: &str,
    bind: std::net::SocketAddr,
    dev: bool,
    files: ServeFiles<'_>,
    connections: u32,
    http: HttpOptions,
) -> anyhow::Result<()> {
    let ServeFiles {
        limits,
        notifier,
        onchain,
    } = files;
    use coordinator::bank::{Bank, BankConfig};
    use coordinator::notify::NotifierConfig;
    let mut config = BankConfig {
        auth_cache_ttl: http.auth_cache_ttl,
        ..BankConfig::default()
    };
    if let Some(path) = limits {
        let text = std::fs::read_to_string(path).context("reading the limits file")?;
        config.limits = toml::from_str(&text).context("parsing the limits file")?;
    }
    // Before anything starts, so a bad file or a missing password stops the start.
    let notifier_config = match notifier {
        Some(path) => NotifierConfig::load(path)?,
        None => NotifierConfig::default(),
    };
    let notifier = notifier_config
        .prepare()
        .context("setting up the notifier")?;
    let onchain = onchain
        .map(coordinator::deposits::OnchainFile::load)
        .transpose()
        .map_err(|e| anyhow::anyhow!("on-chain configuration: {e}"))?;
    let pool = coordinator::db::connect(database_url, connections)
        .await
        .context("connecting to PostgreSQL")?;
    coordinator::db::migrate(&pool).await.context("migrating")?;
    let ledger = coordinator::Ledger::start(pool.clone(), coordinator::LedgerConfig::default())
        .await
        .context("starting the ledger")?;
    // Without a notifier file, codes land in the notification outbox table (development).
    let notifier = notifier.build(&pool);
    tracing::info!(email = ?notifier_config.email, sms = ?notifier_config.sms, "notifier");
    let bank = Bank::new(ledger.clone(), notifier, config);
    // Payments left PENDING by any instance (a crash, a ledger outage) are claimed and
    // finished by a live one, now and continuously.
    let _resumer = bank.spawn_payment_resumer(coordinator::bank::ResumeConfig::default());
    let api = coordinator::api::ApiConfig {
        dev_mode: dev,
        request_timeout: http.request_timeout,
        cors_allowed_origins: http.cors_allowed_origins,
        trusted_proxies: http.trusted_proxies,
        forwarded_header: http.forwarded_header,
        ..Default::default()
    };
    let mut state = coordinator::api::AppState::new(bank, api);
    // Deposits: the driver runs in every instance; one at a time holds its lease.
    let driver = match &onchain {
        Some(file) => {
            let rt = file
                .start(ledger)
                .await
                .map_err(|e| anyhow::anyhow!("starting on-chain deposits: {e}"))?;
            tracing::info!(hot_wallet = %rt.hot_wallet, "on-chain deposits enabled");
            state = state.with_onchain(coordinator::api::OnchainConfig {
                wallets: rt.wallets,
                hot_wallet: rt.hot_wallet,
            });
            Some(rt.driver)
        }
        None => None,
    };
    let app = coordinator::api::router_with_state(state);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    tracing::info!(%bind, dev, "serving the API");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("serving")?;
    if let Some(driver) = driver {
        // Gives the lease up, so another instance takes over at once.
        driver.stop().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM; in-flight requests then finish before the server stops.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
