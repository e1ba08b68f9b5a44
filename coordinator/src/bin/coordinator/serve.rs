//! `coordinator serve`: its flags (the top layer of the configuration) and the server.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use coordinator::ops::Config;
use coordinator::ops::readiness::{self, Readiness};

/// The flags of `serve`; each one, when given, overrides its configuration key.
#[derive(clap::Args, Debug, Default)]
pub struct ServeFlags {
    /// Address to listen on (`api.bind`).
    #[arg(long, env = "COORDINATOR_BIND")]
    bind: Option<std::net::SocketAddr>,
    /// Development mode: serves the GraphiQL pages (`api.dev`).
    #[arg(long, env = "COORDINATOR_DEV")]
    dev: bool,
    /// A TOML file with the limits per KYC level (`level0 = { internal_send = ..,
    /// withdrawal = .. }` to `level3`): replaces `bank.limits`.
    #[arg(long, env = "COORDINATOR_LIMITS")]
    limits: Option<PathBuf>,
    /// A TOML file saying where one-time codes go (`email = "outbox" | "smtp"`,
    /// `sms = "outbox" | "none" | "twilio"`, `[smtp]` and `[twilio]` tables): replaces
    /// `notifier`.
    #[arg(long, env = "COORDINATOR_NOTIFIER")]
    notifier: Option<PathBuf>,
    /// Database connections (`database.connections`).
    #[arg(long)]
    connections: Option<u32>,
    /// Seconds a request may run before it is abandoned (`api.request_timeout_seconds`).
    #[arg(long, env = "COORDINATOR_REQUEST_TIMEOUT")]
    request_timeout: Option<u64>,
    /// Origins allowed to call the API from a browser (CORS), comma-separated
    /// (`api.cors_origins`).
    #[arg(long, env = "COORDINATOR_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Option<Vec<String>>,
    /// Seconds an authentication may be answered from memory (`api.auth_cache_seconds`).
    #[arg(long, env = "COORDINATOR_AUTH_CACHE_SECONDS")]
    auth_cache_seconds: Option<u64>,
    /// Reverse proxies (CIDRs, comma-separated) whose forwarding header names the client
    /// (`api.trusted_proxies`).
    #[arg(long, env = "COORDINATOR_TRUSTED_PROXIES", value_delimiter = ',')]
    trusted_proxies: Option<Vec<ipnet::IpNet>>,
    /// The header the trusted proxies write: `x-forwarded-for` or `forwarded`
    /// (`api.forwarded_header`).
    #[arg(long, env = "COORDINATOR_FORWARDED_HEADER")]
    forwarded_header: Option<String>,
    /// A TOML file with the chain source (`[chain]`), the bank's wallets (`[[wallets]]`)
    /// and the deposit rules (`[deposits]`): replaces `onchain`.
    #[arg(long, env = "COORDINATOR_ONCHAIN")]
    onchain: Option<PathBuf>,
    /// Do not migrate (`database.migrate = false`): wait, not ready, until the schema is
    /// this binary's.
    #[arg(long)]
    no_migrate: bool,
}

impl ServeFlags {
    /// Writes the flags given over `config`.
    pub fn apply(&self, config: &mut Config) -> anyhow::Result<()> {
        if let Some(b) = self.bind {
            config.api.bind = b;
        }
        if self.dev {
            config.api.dev = true;
        }
        if let Some(path) = &self.limits {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the limits file {}", path.display()))?;
            config.bank.limits = toml::from_str(&text)
                .with_context(|| format!("parsing the limits file {}", path.display()))?;
        }
        if let Some(path) = &self.notifier {
            config.notifier = coordinator::notify::NotifierConfig::load(path)?;
        }
        if let Some(n) = self.connections {
            config.database.connections = n;
        }
        if let Some(t) = self.request_timeout {
            config.api.request_timeout_seconds = t;
        }
        if let Some(o) = &self.cors_origins {
            config.api.cors_origins = o.iter().map(|s| s.trim().to_owned()).collect();
        }
        if let Some(s) = self.auth_cache_seconds {
            config.api.auth_cache_seconds = s;
        }
        if let Some(p) = &self.trusted_proxies {
            config.api.trusted_proxies = p.clone();
        }
        if let Some(h) = &self.forwarded_header {
            config.api.forwarded_header = h.clone();
        }
        if let Some(path) = &self.onchain {
            config.onchain = Some(
                coordinator::deposits::OnchainFile::load(path)
                    .map_err(|e| anyhow::anyhow!("on-chain configuration: {e}"))?,
            );
        }
        if self.no_migrate {
            config.database.migrate = false;
        }
        Ok(())
    }
}

/// Serves until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    use coordinator::bank::Bank;
    let bind = config.api.bind;
    let api = config.api_config()?;
    // Before anything starts, so a bad file or a missing password stops the start.
    let notifier = config
        .notifier
        .prepare()
        .context("setting up the notifier")?;
    let metrics = match config.metrics.bind {
        Some(addr) => {
            let handle = coordinator::ops::metrics::install()?;
            Some(coordinator::ops::metrics::serve(addr, handle, shutdown_signal()).await?)
        }
        None => None,
    };
    let pool = coordinator::db::connect(config.database.url.expose(), config.database.connections)
        .await
        .context("connecting to PostgreSQL")?;
    let std_listener =
        std::net::TcpListener::bind(bind).with_context(|| format!("binding {bind}"))?;
    std_listener.set_nonblocking(true)?;
    if config.database.migrate {
        coordinator::db::migrate(&pool).await.context("migrating")?;
    } else if !wait_for_migrations(&pool, &std_listener).await? {
        tracing::info!("stopped before the migrations were applied");
        return Ok(());
    }
    let ledger = coordinator::Ledger::start(pool.clone(), config.ledger_config())
        .await
        .context("starting the ledger")?;
    // Without a notifier table, codes land in the notification outbox table (development).
    let notifier_impl = notifier.build(&pool);
    tracing::info!(email = ?config.notifier.email, sms = ?config.notifier.sms, "notifier");
    let mut bank = Bank::new(ledger.clone(), notifier_impl, config.bank_config());
    // Lightning: the node behind the bank, its settlement watcher and reconciler.
    let mut _lightning = None;
    let mut lightning_check = None;
    let mut embedded = None;
    if let Some(file) = &config.lightning {
        use coordinator::lightning::{
            LightningNode, NodeSettings, ldk::EmbeddedNode, lnd::LndNode,
        };
        let settings = file
            .node_settings()
            .map_err(|e| anyhow::anyhow!("lightning: {e}"))?;
        let node: Arc<dyn LightningNode> = match settings {
            NodeSettings::Lnd(c) => Arc::new(
                LndNode::connect(c)
                    .await
                    .map_err(|e| anyhow::anyhow!("connecting to LND: {e}"))?,
            ),
            NodeSettings::Embedded(c) => {
                let node = EmbeddedNode::start(c)
                    .await
                    .map_err(|e| anyhow::anyhow!("starting the embedded Lightning node: {e}"))?;
                embedded = Some(Arc::clone(&node));
                node
            }
        };
        let ln_config = file
            .bank_config()
            .map_err(|e| anyhow::anyhow!("lightning: {e}"))?;
        lightning_check = Some(Arc::new(readiness::LightningCheck { node: node.clone() }));
        let rail = coordinator::bank::lightning::LightningRail::new(node, ln_config)
            .await
            .map_err(|e| anyhow::anyhow!("starting Lightning: {e}"))?;
        tracing::info!(node = rail.pubkey(), "Lightning enabled");
        bank = bank.with_lightning(rail);
        _lightning = Some(
            bank.spawn_lightning_tasks()
                .map_err(|e| anyhow::anyhow!("starting Lightning: {e}"))?,
        );
    }
    // Payments left PENDING by any instance (a crash, a ledger outage) are claimed and
    // finished by a live one, now and continuously.
    let _resumer = bank.spawn_payment_resumer(config.resume_config());
    // Webhooks: every instance dispatches (one at a time) and delivers (claimed rows).
    let _webhooks = if config.bank.webhooks.enabled {
        Some(coordinator::webhooks::spawn(
            bank.clone(),
            config.webhook_config()?,
        )?)
    } else {
        None
    };
    let mut state = coordinator::api::AppState::new(bank, api);
    if let Some(check) = lightning_check {
        state = state.with_readiness_check(check);
    }
    // Deposits: the driver runs in every instance; one at a time holds its lease.
    let driver = match &config.onchain {
        Some(file) => {
            let rt = file
                .start(ledger)
                .await
                .map_err(|e| anyhow::anyhow!("starting on-chain deposits: {e}"))?;
            tracing::info!(hot_wallet = %rt.hot_wallet, "on-chain deposits enabled");
            state = state
                .with_onchain(coordinator::api::OnchainConfig {
                    wallets: rt.wallets,
                    hot_wallet: rt.hot_wallet,
                })
                .with_readiness_check(Arc::new(readiness::ChainCheck { chain: rt.chain }));
            Some(rt.driver)
        }
        None => None,
    };
    let sampler = metrics.is_some().then(|| {
        coordinator::ops::metrics::spawn_sampler(
            pool.clone(),
            Duration::from_secs(config.metrics.sample_seconds),
        )
    });
    let app = coordinator::api::router_with_state(state);
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    tracing::info!(%bind, dev = config.api.dev, "serving the API");
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
    if let Some(s) = sampler {
        s.abort();
    }
    if let Some(m) = metrics {
        let _ = m.await;
    }
    if let Some(node) = embedded {
        // Disconnects from peers cleanly; channel state is persisted as it changes.
        if let Err(e) = node.stop().await {
            tracing::warn!(error = %e, "stopping the embedded Lightning node");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Serves only the probes (`/readyz` naming the missing migrations) until the database
/// has every migration of this binary. False if a signal came first.
async fn wait_for_migrations(
    pool: &sqlx::PgPool,
    listener: &std::net::TcpListener,
) -> anyhow::Result<bool> {
    let readiness = Readiness::default()
        .with(Arc::new(readiness::DatabaseCheck { pool: pool.clone() }))
        .with(Arc::new(readiness::MigrationsCheck { pool: pool.clone() }))
        .with(Arc::new(readiness::NotStarted("ledger")));
    let probes = coordinator::api::health_routes(Arc::new(readiness));
    let listener = tokio::net::TcpListener::from_std(listener.try_clone()?)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, probes)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut logged = false;
    let current = loop {
        match readiness::missing_migrations(pool).await {
            Ok(missing) if missing.is_empty() => break true,
            Ok(missing) if !logged => {
                tracing::warn!(
                    ?missing,
                    "the database lacks migrations; waiting (not ready)"
                );
                logged = true;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the applied migrations"),
        }
        tokio::select! {
            () = &mut signal => break false,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    let _ = stop.send(());
    server.await??;
    Ok(current)
}

/// Resolves on SIGINT or SIGTERM; in-flight requests then finish before the server stops.
pub async fn shutdown_signal() {
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
