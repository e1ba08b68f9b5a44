//! The Lightning part of the demo: the bank's node embedded in the coordinator (LDK Node,
//! its state in a directory of the demo) and a node "outside" the bank (an LND stand-in:
//! LND's gRPC API over a real LDK node; not LND), on the regtest stand-in's chain, a
//! channel between them, and a customer receiving a payment from outside and paying an
//! outside invoice through the bank's GraphQL API.
#![allow(clippy::print_stdout, reason = "the demo narrates what it does")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use chain_standin::spawn::StandIn;
use coordinator::amount::{Msats, Sats};
use coordinator::lightning::ldk::{ChainAccess, EmbeddedConfig, EmbeddedNode};
use coordinator::lightning::lnd::{LndConfig, LndNode};
use coordinator::lightning::{
    ChannelOperator, InvoiceDescription, InvoiceRequest, LightningNode, PayRequest, PaymentState,
    decode_invoice,
};
use lnd_standin::spawn::LndStandIn;
use serde_json::json;

use crate::bank_process::{Api, wait_until};

const REGTEST: bitcoin::Network = bitcoin::Network::Regtest;

/// The bank's limits in the demo: its unverified (level 0) users may pay out 50,000 sat a
/// day.
const LIMITS: &str = "[bank.limits.level0]\ninternal_send = 100000\nwithdrawal = 50000\n";

/// The outside node, and the coordinator's configuration files.
#[derive(Debug)]
pub struct LightningNet {
    _outside_proc: LndStandIn,
    outside: LndNode,
    /// The `[lightning]` section (the embedded node's directory) and the limits: for the
    /// one coordinator that runs the bank's node.
    pub config: PathBuf,
    /// The limits alone: for a replica. An embedded node runs in one process (its
    /// directory is locked); replicas that all pay over Lightning share an LND instead.
    pub replica_config: PathBuf,
}

/// The embedded node's settings, as the coordinator's `[lightning]` section gives them.
fn embedded_config(dir: &Path, chain: &StandIn, listen: &str) -> EmbeddedConfig {
    let mut c = EmbeddedConfig::new(dir, ChainAccess::esplora(chain.esplora_url()), REGTEST);
    c.listen = Some(listen.to_owned());
    c.sync_interval = Duration::from_secs(1);
    // The outside stand-in opens plain channels (no anchors).
    c.anchor_channels = false;
    c
}

/// Starts the outside node, then the bank's node in this process for its setup: funded
/// on chain, a channel of 1,000,000 sat to the outside node (400,000 of them pushed to
/// it), usable on both sides. The bank's node is stopped again (releasing its directory)
/// for `coordinator serve` to run it.
///
/// # Errors
/// Any step that fails.
pub async fn start(dir: &Path, chain: &StandIn) -> anyhow::Result<LightningNet> {
    let outside_dir = dir.join("ln-outside");
    std::fs::create_dir_all(&outside_dir)?;
    let outside_proc = LndStandIn::start(&outside_dir, chain.esplora_url())
        .map_err(|e| anyhow::anyhow!("starting the outside LND stand-in: {e}"))?;
    let outside = LndNode::connect(LndConfig::new(
        outside_proc.grpc_url(),
        outside_proc.tls_cert_path(),
        outside_proc.macaroon_path(),
        REGTEST,
    ))
    .await
    .map_err(|e| anyhow::anyhow!("connecting to the LND stand-in: {e}"))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("127.0.0.1:{port}");
    let bank_dir = dir.join("ln-bank");
    let settings = embedded_config(&bank_dir, chain, &listen);
    let bank = EmbeddedNode::start(settings.clone())
        .await
        .map_err(|e| anyhow::anyhow!("starting the bank's embedded node: {e}"))?;
    println!(
        "Lightning: the bank's node {} (LDK Node embedded in the coordinator, state in {}) \
         and an outside node {} (an LND stand-in over LDK; not LND)",
        bank.node_id(),
        bank_dir.display(),
        outside_proc.pubkey()
    );
    let address: bitcoin::Address = bank
        .new_onchain_address()
        .await?
        .parse::<bitcoin::Address<_>>()?
        .require_network(REGTEST)?;
    chain
        .control()
        .fund_and_mine(&address, bitcoin::Amount::from_sat(1_100_000), 1)
        .await
        .context("funding the bank's node")?;
    wait_until("the bank's node to see its coins", || async {
        let b = bank.balances().await?;
        Ok((b.onchain.to_sat() >= 1_100_000).then_some(()))
    })
    .await?;
    bank.connect_peer(&outside_proc.peer_uri()).await?;
    let txid = bank
        .open_channel(
            outside_proc.pubkey(),
            Sats::new(1_000_000)?,
            Sats::new(400_000)?.to_msats(),
        )
        .await?;
    wait_until("the channel to be usable", || async {
        chain.control().mine(1).await?;
        let usable = bank.channels().await?.iter().any(|c| c.usable)
            && outside.channels().await?.iter().any(|c| c.usable);
        Ok(usable.then_some(()))
    })
    .await?;
    bank.stop().await?;
    drop(bank);
    println!("channel of 1,000,000 sat open (funding {txid}), 400,000 on the outside node's side");
    let config = dir.join("lightning.toml");
    std::fs::write(
        &config,
        format!(
            "[lightning]\nnetwork = \"regtest\"\nbackend = \"embedded\"\n\
             data_dir = \"{}\"\nesplora_url = \"{}\"\nlisten = \"{listen}\"\n\
             sync_interval_seconds = 1\nanchor_channels = false\n\n{LIMITS}",
            settings.data_dir.display(),
            chain.esplora_url(),
        ),
    )?;
    let replica_config = dir.join("replica.toml");
    std::fs::write(&replica_config, LIMITS)?;
    Ok(LightningNet {
        _outside_proc: outside_proc,
        outside,
        config,
        replica_config,
    })
}

/// A customer (logged in as `api`) receives 30,000 sat from outside and pays a
/// 12,000 sat outside invoice.
///
/// # Errors
/// Any step that fails.
pub async fn run(api: &Api, wallet: &str, net: &LightningNet) -> anyhow::Result<()> {
    println!("\n== bank: Lightning in and out ==");
    // The coordinator's node reconnects to its channel peer within seconds of starting.
    wait_until("the channel to be back", || async {
        let usable = net.outside.channels().await?.iter().any(|c| c.usable);
        Ok(usable.then_some(()))
    })
    .await?;
    let created = api
        .gql(
            "mutation($i: LnInvoiceCreateInput!) { lnInvoiceCreate(input: $i) { \
             invoice { paymentRequest paymentHash satoshis } errors { code message } } }",
            json!({"i": {"walletId": wallet, "amount": 30_000, "memo": "from outside"}}),
        )
        .await?;
    let invoice = &created["lnInvoiceCreate"]["invoice"];
    let request = invoice["paymentRequest"]
        .as_str()
        .with_context(|| format!("lnInvoiceCreate: {created}"))?
        .to_owned();
    let before = api.wallet().await?["balance"].as_i64().unwrap_or(0);
    println!(
        "lnInvoiceCreate: 30000 sat, {}…",
        &request[..40.min(request.len())]
    );
    let decoded = decode_invoice(&request, REGTEST)?;
    let paid = net
        .outside
        .pay(&PayRequest {
            payment_request: request.clone(),
            payment_hash: decoded.payment_hash,
            amount: None,
            max_fee: Msats::new(10_000)?,
            timeout: Duration::from_secs(30),
        })
        .await?;
    anyhow::ensure!(
        matches!(paid, PaymentState::Succeeded { .. }),
        "the outside payment: {paid:?}"
    );
    let credited = wait_until("the Lightning receipt", || async {
        let w = api.wallet().await?;
        Ok((w["balance"].as_i64() == Some(before + 30_000)).then_some(w))
    })
    .await?;
    let status = api
        .gql(
            "query($i: LnInvoicePaymentStatusByHashInput!) { lnInvoicePaymentStatusByHash(input: $i) { status paymentPreimage } }",
            json!({"i": {"paymentHash": invoice["paymentHash"]}}),
        )
        .await?;
    println!(
        "the outside node paid it: balance {} sat, invoice {}",
        credited["balance"], status["lnInvoicePaymentStatusByHash"]
    );

    let outside_invoice = net
        .outside
        .create_invoice(&InvoiceRequest {
            amount: Some(Sats::new(12_000)?.to_msats()),
            description: InvoiceDescription::Memo("coffee beans".into()),
            expiry: Duration::from_secs(600),
        })
        .await?;
    let probe = api
        .gql(
            "mutation($i: LnInvoiceFeeProbeInput!) { lnInvoiceFeeProbe(input: $i) { amount errors { code } } }",
            json!({"i": {"walletId": wallet, "paymentRequest": outside_invoice.payment_request}}),
        )
        .await?;
    let sent = api
        .gql(
            "mutation($i: LnInvoicePaymentInput!) { lnInvoicePaymentSend(input: $i) { status \
             errors { code message } transaction { settlementAmount settlementFee \
             settlementVia { ... on SettlementViaLn { preImage } } } } }",
            json!({"i": {"walletId": wallet, "paymentRequest": outside_invoice.payment_request}}),
        )
        .await?;
    anyhow::ensure!(
        sent["lnInvoicePaymentSend"]["status"] == "SUCCESS",
        "lnInvoicePaymentSend: {sent}"
    );
    let after = api.wallet().await?;
    println!(
        "lnInvoicePaymentSend of a 12000 sat outside invoice (fee probe {}): {}; balance {} sat",
        probe["lnInvoiceFeeProbe"]["amount"], sent["lnInvoicePaymentSend"], after["balance"]
    );
    Ok(())
}

/// The operators' view of the node: the admin API's `lightningNode`, as a treasury officer
/// (`admin`: a staff client of the admin API).
///
/// # Errors
/// The query refused, or no node.
pub async fn show_node(admin: &Api) -> anyhow::Result<()> {
    let v = admin
        .gql(
            "{ lightningNode { pubkey blockHeight synced onchainBalanceSat channelBalanceMsat \
             channels { capacitySat outboundMsat inboundMsat usable } } }",
            json!({}),
        )
        .await?;
    let n = &v["lightningNode"];
    anyhow::ensure!(n["synced"] == true, "lightningNode: {v}");
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("?").to_owned();
    let pubkey = text(&n["pubkey"]);
    println!(
        "admin lightningNode, as treasury: node {}…, synced at height {}, {} sat on chain, \
         {} msat in channels",
        &pubkey[..16.min(pubkey.len())],
        n["blockHeight"],
        text(&n["onchainBalanceSat"]),
        text(&n["channelBalanceMsat"])
    );
    for c in n["channels"].as_array().into_iter().flatten() {
        println!(
            "  channel of {} sat: can send {} msat, receive {} msat, usable {}",
            text(&c["capacitySat"]),
            text(&c["outboundMsat"]),
            text(&c["inboundMsat"]),
            c["usable"]
        );
    }
    Ok(())
}
