//! `signer serve`: the signing service, and `signer client add`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hsm_config::pin::UserPin;
use hsm_config::profile::Profile;
use secrecy::ExposeSecret as _;
use signer::hsm::pool::{HsmPool, HsmSettings};
use signer::service::approvals::OfficerQuorum;
use signer::service::{AppState, check_anchor, router};
use signer::store::Store;

/// Where the signer's database is.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// The signer's own PostgreSQL database.
    #[arg(long, env = "SIGNER_DATABASE_URL")]
    pub database_url: String,
}

impl DatabaseArgs {
    /// Connects and migrates.
    pub async fn store(&self, max_connections: u32) -> anyhow::Result<Store> {
        Store::connect(&self.database_url, max_connections)
            .await
            .context("connecting to the signer database")
    }
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    database: DatabaseArgs,
    /// Address to listen on.
    #[arg(long, env = "SIGNER_LISTEN", default_value = "127.0.0.1:8480")]
    listen: SocketAddr,
    /// The HSM profile (TOML); its `keys` are the key labels the service opens.
    ///
    /// The user PIN comes from HSM_USER_PIN or the file named by HSM_USER_PIN_FILE.
    #[arg(long, env = "HSM_PROFILE")]
    profile: PathBuf,
    /// Overrides the profile's token label.
    #[arg(long)]
    token_label: Option<String>,
    /// The limit on any one HSM call, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    hsm_timeout_ms: u64,
    /// Wrong-PIN answers accepted before the service stops trying until restarted.
    #[arg(long, default_value_t = 3)]
    max_pin_attempts: u32,
    /// Database connections.
    #[arg(long, default_value_t = 16)]
    db_connections: u32,
    /// Policy documents (JSON) to register at first start only, when no policy
    /// is registered yet (the ceremony's bootstrap); ignored afterwards.
    #[arg(long = "register-policy")]
    register_policies: Vec<PathBuf>,
    /// The chain tip height the locktime rule compares with (the signer has no
    /// chain source of its own; a height locktime more than the policy's horizon
    /// above this is refused).
    #[arg(long, env = "SIGNER_TIP_HEIGHT", default_value_t = 0)]
    tip_height: u32,
    /// The officers' ceremony file (JSON: governance and officers), read at
    /// first start only; ignored once officers exist.
    #[arg(long)]
    officers: Option<PathBuf>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let profile = Profile::load(&args.profile)
        .with_context(|| format!("reading profile {}", args.profile.display()))?;
    if profile.keys.is_empty() {
        anyhow::bail!(
            "profile {} names no keys: list the key labels this service signs with",
            args.profile.display()
        );
    }
    let store = args.database.store(args.db_connections).await?;
    if !args.register_policies.is_empty() {
        bootstrap_policies(&store, &args.register_policies).await?;
    }
    if let Some(path) = &args.officers {
        let ceremony = signer::store::policy_changes::OfficerCeremony::load(path)?;
        if ceremony.bootstrap(&store).await? {
            eprintln!("signer: registered {} officer(s)", ceremony.officers.len());
        }
    }
    let settings = HsmSettings {
        module_path: profile.module.clone(),
        token_label: args
            .token_label
            .clone()
            .unwrap_or_else(|| profile.token_label.clone()),
        pin: UserPin::from_env()?,
        key_labels: profile.keys.clone(),
        sessions: profile.sessions(),
        call_timeout: Duration::from_millis(args.hsm_timeout_ms),
        max_pin_attempts: args.max_pin_attempts,
        retry_after: Duration::from_secs(1),
    };
    let hsm = Arc::new(HsmPool::new(settings));
    let anchored = check_anchor(&store, &hsm)
        .await
        .context("checking the database against the HSM's audit anchor")?;
    let state = AppState::new(store, hsm, Arc::new(OfficerQuorum), anchored);
    state.set_tip_height(args.tip_height);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %args.listen, "signer serving /v1");
    eprintln!("signer: serving on http://{}/v1", listener.local_addr()?);
    axum::serve(listener, router(state))
        .with_graceful_shutdown(stop_signal())
        .await
        .context("serving")?;
    Ok(())
}

/// SIGINT or SIGTERM (what container runtimes send to stop a process): in-flight
/// requests finish, each with its decision committed, before the service stops.
async fn stop_signal() {
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
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = term => {},
    }
}

async fn bootstrap_policies(store: &Store, files: &[PathBuf]) -> anyhow::Result<()> {
    if !store.policies().await?.is_empty() {
        tracing::info!("policies already registered: --register-policy ignored");
        return Ok(());
    }
    let mut tx = store.begin().await?;
    for file in files {
        let policy = super::psbt::read_policy(file)?;
        Store::register_policy_in_tx(&mut tx, &policy).await?;
        signer::audit::append_in_tx(
            &mut tx,
            signer::audit::Kind::Policy,
            &serde_json::json!({"event": "bootstrap", "policy_id": policy.id.to_string(),
                                "name": policy.name}),
        )
        .await?;
        eprintln!("signer: registered policy {} ({})", policy.id, policy.name);
    }
    tx.commit().await?;
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Add a client and print its bearer token (shown once, stored hashed).
    Add {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The client's name.
        #[arg(long)]
        name: String,
        /// The policy ids it may submit to (comma-separated or repeated).
        #[arg(long, value_delimiter = ',', required = true)]
        policies: Vec<String>,
    },
}

pub fn client(cmd: ClientCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        match cmd {
            ClientCommand::Add {
                database,
                name,
                policies,
            } => {
                let store = database.store(1).await?;
                let made = store.add_client(&name, &policies).await?;
                eprintln!(
                    "client {} added; its token is shown once, keep it now:",
                    made.client.name
                );
                println!("{}", made.token.expose_secret());
                Ok(())
            }
        }
    })
}
