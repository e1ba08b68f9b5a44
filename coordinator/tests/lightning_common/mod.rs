//! A small Lightning network for tests: the regtest stand-in's chain, two LND stand-ins
//! (LND's gRPC API over real LDK nodes) and the LND adapter to each, with a channel from
//! the first to the second that both sides can pay over.
//!
//! Both stand-in binaries must be built: `cargo build -p chain-standin -p
//! lnd-standin-server` (scripts/test.sh does).
#![allow(dead_code, reason = "each test binary uses part of it")]

pub mod flaky;
pub mod hold;
pub mod rows;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use chain_standin::spawn::{Options, StandIn};
use coordinator::amount::{Msats, Sats};
use coordinator::lightning::ldk::{ChainAccess, EmbeddedConfig, EmbeddedNode};
use coordinator::lightning::lnd::{LndConfig, LndNode};
use std::sync::Arc;

use coordinator::bank::Bank;
use coordinator::bank::lightning::{LightningConfig, LightningRail, LnPayRequest};
use coordinator::lightning::{ChannelOperator, LightningNode};
use lnd_standin::spawn::LndStandIn;
use tempfile::TempDir;

pub const REGTEST: bitcoin::Network = bitcoin::Network::Regtest;

/// The regtest stand-in with mature coinbases, so that it can fund the nodes.
pub fn chain() -> StandIn {
    StandIn::start_with(Options {
        initial_blocks: 101,
        ..Options::default()
    })
    .expect("the regtest stand-in starts (cargo build -p chain-standin)")
}

/// An LND stand-in keeping its state in `dir`.
pub fn lnd(dir: &Path, chain: &StandIn) -> LndStandIn {
    LndStandIn::start(dir, chain.esplora_url()).expect("the LND stand-in starts (see the header)")
}

/// The adapter's configuration for a stand-in.
pub fn config(node: &LndStandIn) -> LndConfig {
    let mut config = LndConfig::new(
        node.grpc_url(),
        node.tls_cert_path(),
        node.macaroon_path(),
        REGTEST,
    );
    config.request_timeout = Duration::from_secs(15);
    config
}

/// The LND adapter connected to a stand-in.
pub async fn adapter(node: &LndStandIn) -> LndNode {
    LndNode::connect(config(node))
        .await
        .expect("the adapter connects")
}

/// An embedded LDK node keeping its state in `dir`, on the stand-in's chain, listening on
/// a free port, syncing every second. Plain channels, as the LND stand-in opens them.
pub async fn embedded(dir: &Path, chain: &StandIn) -> Arc<EmbeddedNode> {
    EmbeddedNode::start(embedded_config(dir, chain))
        .await
        .expect("the embedded node starts")
}

/// The embedded node's configuration in tests.
pub fn embedded_config(dir: &Path, chain: &StandIn) -> EmbeddedConfig {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut c = EmbeddedConfig::new(dir, ChainAccess::esplora(chain.esplora_url()), REGTEST);
    c.listen = Some(format!("127.0.0.1:{port}"));
    c.sync_interval = Duration::from_secs(1);
    c.reconnect_interval = Duration::from_secs(1);
    c.anchor_channels = false;
    c
}

/// Polls `check` until it gives a value, for at most `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Funds `a` on chain, connects it to `b` and opens a channel of `capacity` pushing
/// `push` to `b`, then mines until both sides can use it.
pub async fn open_channel<A, B>(
    chain: &StandIn,
    a: &A,
    b: &B,
    b_proc: &LndStandIn,
    capacity: Sats,
    push: Msats,
) where
    A: LightningNode + ChannelOperator + ?Sized,
    B: LightningNode + ?Sized,
{
    let address = a.new_onchain_address().await.expect("an address");
    let address = address
        .parse::<bitcoin::Address<_>>()
        .expect("an address")
        .require_network(REGTEST)
        .expect("a regtest address");
    let funding = capacity.to_sat() + 100_000;
    chain
        .control()
        .fund_and_mine(&address, bitcoin::Amount::from_sat(funding), 1)
        .await
        .expect("funded");
    eventually(
        "the node sees its coins",
        Duration::from_secs(60),
        || async {
            let b = a.balances().await.ok()?;
            (b.onchain.to_sat() >= funding).then_some(())
        },
    )
    .await;
    a.connect_peer(&b_proc.peer_uri()).await.expect("connected");
    // Idempotent.
    a.connect_peer(&b_proc.peer_uri())
        .await
        .expect("connected again");
    let txid = a
        .open_channel(b_proc.pubkey(), capacity, push)
        .await
        .expect("channel opened");
    assert_eq!(txid.len(), 64, "a txid: {txid}");
    // Mine until both sides can use the channel (the funding transaction reaches the
    // mempool a moment after OpenChannelSync answers; LDK wants some confirmations).
    eventually(
        "the channel is usable on both sides",
        Duration::from_secs(120),
        || async {
            chain.control().mine(1).await.ok()?;
            let usable = |c: Vec<coordinator::lightning::ChannelInfo>| c.iter().any(|c| c.usable);
            let on_a = usable(a.channels().await.ok()?);
            let on_b = usable(b.channels().await.ok()?);
            (on_a && on_b).then_some(())
        },
    )
    .await;
}

/// Two nodes with a channel: `a` (the bank's, in bank tests) and `b` (the outside world).
pub struct Net {
    pub chain: StandIn,
    pub a_proc: LndStandIn,
    pub b_proc: LndStandIn,
    pub a: LndNode,
    pub b: LndNode,
    pub dir_a: TempDir,
    pub dir_b: TempDir,
}

impl Net {
    /// A channel of 1,000,000 sats from `a` to `b`, 400,000 of them pushed to `b` so
    /// that both can pay.
    pub async fn start() -> Net {
        Net::start_with(
            Sats::new(1_000_000).expect("sats"),
            Sats::new(400_000).expect("sats").to_msats(),
        )
        .await
    }

    /// A channel of `capacity` from `a` to `b`, `push` of it on `b`'s side.
    pub async fn start_with(capacity: Sats, push: Msats) -> Net {
        let chain = chain();
        let (dir_a, dir_b) = (
            tempfile::tempdir().expect("tempdir"),
            tempfile::tempdir().expect("tempdir"),
        );
        let a_proc = lnd(dir_a.path(), &chain);
        let b_proc = lnd(dir_b.path(), &chain);
        let a = adapter(&a_proc).await;
        let b = adapter(&b_proc).await;
        open_channel(&chain, &a, &b, &b_proc, capacity, push).await;
        Net {
            chain,
            a_proc,
            b_proc,
            a,
            b,
            dir_a,
            dir_b,
        }
    }
}

/// A bank whose unverified (level 0) customers may pay out `withdrawal_sat` a day over
/// Lightning (the default allows nothing) and send 1,000,000 sat inside the bank.
pub fn paying_config(withdrawal_sat: u64) -> coordinator::bank::BankConfig {
    use coordinator::bank::{BankConfig, LevelLimits, LimitsConfig};
    BankConfig {
        limits: LimitsConfig {
            level0: LevelLimits {
                internal_send: Sats::new(1_000_000).expect("sats"),
                withdrawal: Sats::new(withdrawal_sat).expect("sats"),
            },
            ..BankConfig::default().limits
        },
        ..BankConfig::default()
    }
}

/// The bank's Lightning configuration in tests: quick reconciler passes.
pub fn ln_config() -> LightningConfig {
    let mut c = LightningConfig::new(REGTEST);
    c.reconcile_interval = Duration::from_millis(300);
    c.reconcile_grace = Duration::from_secs(1);
    c.pay_timeout = Duration::from_secs(20);
    c
}

/// `bank` with the network's first node as its Lightning node.
pub async fn with_node(bank: Bank, net: &Net) -> Bank {
    let node: Arc<dyn LightningNode> = Arc::new(adapter(&net.a_proc).await);
    bank.with_lightning(LightningRail::new(node, ln_config()).await.unwrap())
}

/// What the ledger says a wallet holds: (settled, pending), millisatoshis.
pub async fn balance(bank: &Bank, wallet: coordinator::WalletId) -> (i64, i64) {
    let b = bank
        .ledger()
        .balance(Bank::ledger_account(wallet))
        .await
        .unwrap();
    (b.settled, b.pending)
}

/// A payment of `request` from `wallet`.
pub fn pay(wallet: coordinator::WalletId, request: &str, amount: Option<u64>) -> LnPayRequest {
    LnPayRequest {
        wallet_id: wallet,
        payment_request: request.into(),
        amount: amount.map(|a| Sats::new(a).unwrap()),
        memo: Some("out".into()),
    }
}
