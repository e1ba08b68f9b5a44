//! The embedded backend: [`EmbeddedNode`] runs LDK Node inside the coordinator, chained to
//! an Esplora API, its keys and state in one directory (ADR 0018 says why these keys are
//! software keys and what protects them).
//!
//! One process at a time may run a node's directory (`dir.rs`: two would sign conflicting
//! channel states, which a peer punishes by taking the channel). The bank keeps its
//! invoices' preimages itself and claims each payment by hand (`book.rs`, `events.rs`), so
//! that a cancelled invoice stays unpaid and every settlement has a durable cursor. By
//! concern: `invoices.rs`, `payments.rs`, `wallet.rs` (the node, balances, channels and the
//! operator's calls), `error.rs` (LDK's errors as [`LightningError`]).

mod book;
mod dir;
mod error;
mod events;
mod invoices;
mod payments;
mod wallet;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::futures_util::stream::BoxStream;
use async_trait::async_trait;
use ldk_node::lightning::ln::msgs::SocketAddress;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::{
    Balances, ChannelInfo, ChannelOperator, CreatedInvoice, DecodedInvoice, InvoiceRequest,
    InvoiceState, LightningError, LightningNode, NodeInfo, PayRequest, PaymentHash, PaymentState,
    PaymentUpdate, SettleCursor, SettledInvoice,
};
use crate::amount::{Msats, Sats};
use book::Book;
use error::{blocking, from_node};

/// Where the embedded node keeps its state and how it reaches the chain and its peers.
#[derive(Clone, Debug)]
pub struct EmbeddedConfig {
    /// The node's directory (made with mode 0700; locked while the node runs).
    pub data_dir: PathBuf,
    /// Where the node reads the chain and sends its transactions.
    pub chain: ChainAccess,
    /// The chain.
    pub network: bitcoin::Network,
    /// Where peers may connect, `host:port`; `None`: outbound connections only.
    pub listen: Option<String>,
    /// How often the node syncs its wallets with the chain.
    pub sync_interval: Duration,
    /// How often peers the node keeps (channel peers) are reconnected while away.
    pub reconnect_interval: Duration,
    /// Negotiate anchor channels (fee-bumpable closes; each keeps an on-chain reserve).
    pub anchor_channels: bool,
}

/// The embedded node's chain source.
#[derive(Clone, Debug)]
pub enum ChainAccess {
    /// An Esplora API (Blockstream's esplora, or an electrs in front of bitcoind).
    Esplora {
        /// Its base URL.
        url: String,
    },
    /// Bitcoin Core's JSON-RPC.
    Bitcoind {
        /// `http://host:port`, without credentials.
        url: String,
        /// Where the RPC credentials are read from (once, at start).
        auth: crate::chain::BitcoindAuth,
    },
}

impl ChainAccess {
    /// An Esplora API at `url`.
    pub fn esplora(url: impl Into<String>) -> Self {
        Self::Esplora { url: url.into() }
    }
}

impl EmbeddedConfig {
    /// A configuration with the usual intervals (sync every 10 s, reconnect every 5 s) and
    /// anchor channels.
    pub fn new(
        data_dir: impl Into<PathBuf>,
        chain: ChainAccess,
        network: bitcoin::Network,
    ) -> Self {
        Self {
            data_dir: data_dir.into(),
            chain,
            network,
            listen: None,
            sync_interval: Duration::from_secs(10),
            reconnect_interval: Duration::from_secs(5),
            anchor_channels: true,
        }
    }
}

/// LDK Node in this process.
pub struct EmbeddedNode {
    config: EmbeddedConfig,
    node: Arc<ldk_node::Node>,
    book: Arc<Book>,
    /// Each settlement once it is in the book (the live part of `settled_invoices`).
    settled: broadcast::Sender<SettledInvoice>,
    /// Payment hashes of outgoing payments whose state changed.
    payments: broadcast::Sender<[u8; 32]>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    _lock: dir::DirLock,
}

impl std::fmt::Debug for EmbeddedNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedNode")
            .field("node_id", &self.node.node_id())
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl EmbeddedNode {
    /// Locks the directory, starts the node (creating its seed on first start) and its
    /// event, sync and reconnect loops. Needs a multi-threaded tokio runtime: LDK Node runs
    /// its own tasks on it.
    ///
    /// # Errors
    /// [`LightningError::Invalid`] for a directory another process holds or settings LDK
    /// refuses; [`LightningError::Unavailable`] if the node cannot start.
    pub async fn start(config: EmbeddedConfig) -> Result<Arc<Self>, LightningError> {
        let lock = dir::lock(&config.data_dir)?;
        let ldk_config = ldk_config(&config)?;
        let chain = chain_source(&config.chain)?;
        let storage = config.data_dir.join("ldk").display().to_string();
        // Building opens the store and may block on the chain source: off the async threads.
        let (node, store) = tokio::task::spawn_blocking(move || {
            let store: Arc<ldk_node::DynStore> = Arc::new(
                ldk_node::io::sqlite_store::SqliteStore::new(
                    storage.into(),
                    Some(ldk_node::io::sqlite_store::SQLITE_DB_FILE_NAME.to_string()),
                    Some(ldk_node::io::sqlite_store::KV_TABLE_NAME.to_string()),
                )
                .map_err(|e| LightningError::Invalid(format!("the node's store: {e}")))?,
            );
            let mut builder = ldk_node::Builder::from_config(ldk_config);
            // Into the coordinator's own log (tracing reads the log facade), not a file of
            // LDK's.
            builder.set_log_facade_logger();
            match chain {
                // No background sync: ours (below) runs at the configured interval, which
                // LDK's own floor (10 s) would not allow in tests.
                Source::Esplora(url) => builder.set_chain_source_esplora(
                    url,
                    Some(ldk_node::config::EsploraSyncConfig {
                        background_sync_config: None,
                    }),
                ),
                Source::Bitcoind {
                    host,
                    port,
                    user,
                    password,
                } => builder.set_chain_source_bitcoind_rpc(host, port, user, password.to_string()),
            };
            let node = builder
                .build_with_store(Arc::clone(&store))
                .map_err(|e| LightningError::Invalid(format!("building the node: {e}")))?;
            node.start().map_err(from_node)?;
            Ok::<_, LightningError>((Arc::new(node), store))
        })
        .await
        .map_err(|e| LightningError::Unavailable(format!("starting the node: {e}")))??;
        let book = Arc::new(Book::open(store)?);
        let (settled, _) = broadcast::channel(1024);
        let (payments, _) = broadcast::channel(1024);
        let this = Arc::new(Self {
            config,
            node,
            book,
            settled,
            payments,
            tasks: Mutex::new(Vec::new()),
            _lock: lock,
        });
        let loops = vec![
            tokio::spawn(events::run(Arc::clone(&this))),
            tokio::spawn(wallet::sync_loop(Arc::clone(&this))),
            tokio::spawn(wallet::reconnect_loop(Arc::clone(&this))),
        ];
        *this.tasks.lock().unwrap_or_else(|p| p.into_inner()) = loops;
        tracing::info!(node_id = %this.node.node_id(), dir = %this.config.data_dir.display(),
            "embedded Lightning node started");
        Ok(this)
    }

    /// The node's public key, hex.
    pub fn node_id(&self) -> String {
        self.node.node_id().to_string()
    }

    /// `pubkey@host:port` for peers, when it listens.
    pub fn peer_uri(&self) -> Option<String> {
        self.config
            .listen
            .as_ref()
            .map(|l| format!("{}@{l}", self.node.node_id()))
    }

    /// Stops the loops and the node (channel state is persisted as it changes; this only
    /// disconnects cleanly). The directory stays locked until the last handle is dropped.
    ///
    /// # Errors
    /// [`LightningError::Unavailable`] if LDK Node fails to stop.
    pub async fn stop(&self) -> Result<(), LightningError> {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
        let node = Arc::clone(&self.node);
        match blocking(move || node.stop()).await {
            Ok(()) => {
                tracing::info!("embedded Lightning node stopped");
                Ok(())
            }
            // Stopped already.
            Err(_) if !self.node.status().is_running => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// A chain source as LDK Node takes it, credentials read.
enum Source {
    Esplora(String),
    Bitcoind {
        host: String,
        port: u16,
        user: String,
        password: zeroize::Zeroizing<String>,
    },
}

fn chain_source(access: &ChainAccess) -> Result<Source, LightningError> {
    match access {
        ChainAccess::Esplora { url } => Ok(Source::Esplora(url.clone())),
        ChainAccess::Bitcoind { url, auth } => {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| LightningError::Invalid(format!("bitcoind_url {url:?}: {e}")))?;
            if !parsed.username().is_empty() || parsed.password().is_some() {
                return Err(LightningError::Invalid(
                    "bitcoind_url must not hold credentials; use bitcoind_auth".into(),
                ));
            }
            let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default())
            else {
                return Err(LightningError::Invalid(format!(
                    "bitcoind_url {url:?}: needs a host and port"
                )));
            };
            let credentials = crate::chain::bitcoind::read_credentials(auth)
                .map_err(|e| LightningError::Invalid(e.to_string()))?;
            use secrecy::ExposeSecret as _;
            Ok(Source::Bitcoind {
                host: host.to_owned(),
                port,
                user: credentials.user,
                password: zeroize::Zeroizing::new(credentials.password.expose_secret().to_owned()),
            })
        }
    }
}

/// LDK Node's configuration for ours.
fn ldk_config(config: &EmbeddedConfig) -> Result<ldk_node::config::Config, LightningError> {
    let listening_addresses = match &config.listen {
        Some(l) => Some(vec![l.parse::<SocketAddress>().map_err(|_| {
            LightningError::Invalid(format!("listen: not a host:port: {l}"))
        })?]),
        None => None,
    };
    let mut ldk = ldk_node::config::Config {
        storage_dir_path: config.data_dir.join("ldk").display().to_string(),
        network: config.network,
        listening_addresses,
        ..Default::default()
    };
    if !config.anchor_channels {
        ldk.anchor_channels_config = None;
    }
    Ok(ldk)
}

#[async_trait]
impl LightningNode for EmbeddedNode {
    async fn info(&self) -> Result<NodeInfo, LightningError> {
        Ok(self.node_info())
    }

    async fn create_invoice(
        &self,
        request: &InvoiceRequest,
    ) -> Result<CreatedInvoice, LightningError> {
        self.add_invoice(request)
    }

    async fn cancel_invoice(&self, hash: &PaymentHash) -> Result<(), LightningError> {
        self.cancel(hash)
    }

    async fn invoice(&self, hash: &PaymentHash) -> Result<InvoiceState, LightningError> {
        self.lookup(hash)
    }

    async fn settled_invoices(
        &self,
        after: SettleCursor,
    ) -> Result<BoxStream<'static, Result<SettledInvoice, LightningError>>, LightningError> {
        self.settlements(after)
    }

    async fn pay(&self, request: &PayRequest) -> Result<PaymentState, LightningError> {
        self.send(request).await
    }

    async fn probe_fee(
        &self,
        invoice: &DecodedInvoice,
        amount: Msats,
    ) -> Result<Msats, LightningError> {
        self.estimate_fee(invoice, amount)
    }

    async fn payment(&self, hash: &PaymentHash) -> Result<Option<PaymentState>, LightningError> {
        self.payment_state(hash)
    }

    async fn payment_updates(
        &self,
    ) -> Result<BoxStream<'static, Result<PaymentUpdate, LightningError>>, LightningError> {
        Ok(self.updates())
    }

    async fn balances(&self) -> Result<Balances, LightningError> {
        self.get_balances()
    }

    async fn channels(&self) -> Result<Vec<ChannelInfo>, LightningError> {
        self.list_channels()
    }
}

#[async_trait]
impl ChannelOperator for EmbeddedNode {
    async fn new_onchain_address(&self) -> Result<String, LightningError> {
        self.address()
    }

    async fn connect_peer(&self, peer: &str) -> Result<(), LightningError> {
        self.connect_to(peer).await
    }

    async fn open_channel(
        &self,
        peer: &str,
        capacity: Sats,
        push: Msats,
    ) -> Result<String, LightningError> {
        self.open(peer, capacity, push).await
    }
}
