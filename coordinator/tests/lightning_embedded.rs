//! The embedded backend: LDK Node inside this process as the bank's node, with a real
//! channel to an LND stand-in (the outside world) on the regtest stand-in's chain. The node
//! alone (receive, send, cancel, the settlement cursor, a restart on the same directory,
//! one process per directory), then the bank over it.
#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;
mod lightning_common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use api_common::Cred;
use async_graphql::futures_util::StreamExt;
use chain_standin::spawn::StandIn;
use coordinator::amount::{Msats, Sats};
use coordinator::api::ApiConfig;
use coordinator::bank::StaffRole;
use coordinator::bank::lightning::{InvoiceCreate, InvoiceStatus, LightningRail, LnPayStatus};
use coordinator::chain::BitcoindAuth;
use coordinator::lightning::ldk::{ChainAccess, EmbeddedConfig, EmbeddedNode};
use coordinator::lightning::lnd::LndNode;
use coordinator::lightning::{
    InvoiceDescription, InvoiceRequest, InvoiceState, LightningError, LightningNode, PayRequest,
    PaymentFailure, PaymentHash, PaymentState, SettleCursor, SettledInvoice, decode_invoice,
};
use lightning_common::{
    REGTEST, adapter, balance, chain, embedded, embedded_config, eventually, ln_config, lnd,
    open_channel, pay,
};
use lnd_standin::spawn::LndStandIn;
use serde_json::{Value, json};

fn request(amount_sat: Option<u64>, memo: &str) -> InvoiceRequest {
    InvoiceRequest {
        amount: amount_sat.map(|s| Sats::new(s).unwrap().to_msats()),
        description: InvoiceDescription::Memo(memo.into()),
        expiry: Duration::from_secs(600),
    }
}

fn pay_request(payment_request: &str, amount_sat: Option<u64>) -> PayRequest {
    let d = decode_invoice(payment_request, REGTEST).unwrap();
    PayRequest {
        payment_request: payment_request.into(),
        payment_hash: d.payment_hash,
        amount: amount_sat.map(|s| Sats::new(s).unwrap().to_msats()),
        max_fee: Msats::new(50_000).unwrap(),
        timeout: Duration::from_secs(30),
    }
}

/// An invoice of a node nobody is connected to (a fresh key), without route hints.
fn stranger_invoice() -> String {
    use bitcoin::hashes::{Hash, sha256};
    use bitcoin::secp256k1::{Secp256k1, SecretKey};
    use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
    let key = SecretKey::from_slice(&[0x42; 32]).unwrap();
    InvoiceBuilder::new(Currency::Regtest)
        .description("stranger".into())
        .payment_hash(sha256::Hash::hash(b"stranger"))
        .payment_secret(PaymentSecret([9; 32]))
        .amount_milli_satoshis(1_000)
        .current_timestamp()
        .min_final_cltv_expiry_delta(144)
        .build_signed(|m| Secp256k1::new().sign_ecdsa_recoverable(m, &key))
        .unwrap()
        .to_string()
}

/// The first `n` settlements after `after`, or fewer if no more come within a second.
async fn settlements(node: &EmbeddedNode, after: u64, n: usize) -> Vec<SettledInvoice> {
    let mut stream = node.settled_invoices(SettleCursor(after)).await.unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
            Ok(Some(s)) => out.push(s.unwrap()),
            _ => break,
        }
    }
    out
}

async fn usable(a: &EmbeddedNode, b: &LndNode) -> Option<()> {
    let on_a = a.channels().await.ok()?.iter().any(|c| c.usable);
    let on_b = b.channels().await.ok()?.iter().any(|c| c.usable);
    (on_a && on_b).then_some(())
}

/// The embedded node `a` with a channel of 1,000,000 sat to an LND stand-in `b`, 400,000
/// of them pushed to `b`.
struct EmbeddedNet {
    chain: StandIn,
    a: Arc<EmbeddedNode>,
    _b_proc: LndStandIn,
    b: LndNode,
    dir_a: tempfile::TempDir,
    _dir_b: tempfile::TempDir,
}

impl EmbeddedNet {
    async fn start() -> EmbeddedNet {
        Self::start_with(embedded_config).await
    }

    /// The network with node `a` configured by `config` (given its directory).
    async fn start_with(config: impl FnOnce(&Path, &StandIn) -> EmbeddedConfig) -> EmbeddedNet {
        let chain = chain();
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = EmbeddedNode::start(config(dir_a.path(), &chain))
            .await
            .unwrap();
        let b_proc = lnd(dir_b.path(), &chain);
        let b = adapter(&b_proc).await;
        open_channel(
            &chain,
            &*a,
            &b,
            &b_proc,
            Sats::new(1_000_000).unwrap(),
            Sats::new(400_000).unwrap().to_msats(),
        )
        .await;
        EmbeddedNet {
            chain,
            a,
            _b_proc: b_proc,
            b,
            dir_a,
            _dir_b: dir_b,
        }
    }
}

/// `a` pays a fresh invoice of `sat` from `b`, and succeeds.
async fn pays(a: &EmbeddedNode, b: &LndNode, sat: u64, memo: &str) {
    let invoice = b.create_invoice(&request(Some(sat), memo)).await.unwrap();
    let sent = a
        .pay(&pay_request(&invoice.payment_request, None))
        .await
        .unwrap();
    assert!(
        matches!(sent, PaymentState::Succeeded { .. }),
        "{memo}: {sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_embedded_node_receives_pays_cancels_and_survives_a_restart() {
    // Every part bound (none dropped here): `_`-named ones stay alive to the end.
    let EmbeddedNet {
        chain,
        a,
        b,
        dir_a,
        _b_proc,
        _dir_b,
    } = EmbeddedNet::start().await;
    // One process per directory: a second node on it is refused while the first runs.
    let second = EmbeddedNode::start(embedded_config(dir_a.path(), &chain)).await;
    assert!(
        matches!(&second, Err(LightningError::Invalid(m)) if m.contains("another process")),
        "{second:?}"
    );
    let info = a.info().await.unwrap();
    assert_eq!(info.pubkey, a.node_id());
    assert_eq!(info.network, REGTEST);
    assert!(info.synced);

    // Receive: paid from outside, logged once with cursor 1 and the preimage.
    let inv = a
        .create_invoice(&request(Some(50_000), "in"))
        .await
        .unwrap();
    let paid = b
        .pay(&pay_request(&inv.payment_request, None))
        .await
        .unwrap();
    assert!(matches!(paid, PaymentState::Succeeded { .. }), "{paid:?}");
    let first = eventually(
        "the settlement is logged",
        Duration::from_secs(30),
        || async { settlements(&a, 0, 1).await.pop() },
    )
    .await;
    assert_eq!(first.cursor, SettleCursor(1));
    assert_eq!(first.payment_hash, inv.payment_hash);
    assert_eq!(first.amount, Sats::new(50_000).unwrap().to_msats());
    assert_eq!(first.preimage.payment_hash(), inv.payment_hash);
    assert!(matches!(
        a.invoice(&inv.payment_hash).await.unwrap(),
        InvoiceState::Settled(s) if s.cursor == SettleCursor(1)
    ));
    assert!(matches!(
        a.cancel_invoice(&inv.payment_hash).await,
        Err(LightningError::AlreadySettled)
    ));
    // Paying it again is refused by the node: one settlement, not two.
    let again = b.pay(&pay_request(&inv.payment_request, None)).await;
    assert!(
        !matches!(again, Ok(PaymentState::Succeeded { ref preimage, .. }) if *preimage != first.preimage),
        "{again:?}"
    );

    // A no-amount invoice takes what the payer sends.
    let open = a.create_invoice(&request(None, "any")).await.unwrap();
    b.pay(&pay_request(&open.payment_request, Some(1_234)))
        .await
        .unwrap();
    let second = eventually("the second settlement", Duration::from_secs(30), || async {
        settlements(&a, 1, 1).await.pop()
    })
    .await;
    assert_eq!(second.cursor, SettleCursor(2));
    assert_eq!(second.amount, Msats::new(1_234_000).unwrap());

    // Cancel holds: a cancelled invoice refuses the payment that comes after.
    let cancelled = a
        .create_invoice(&request(Some(10_000), "cancel"))
        .await
        .unwrap();
    a.cancel_invoice(&cancelled.payment_hash).await.unwrap();
    a.cancel_invoice(&cancelled.payment_hash).await.unwrap();
    let refused = b
        .pay(&pay_request(&cancelled.payment_request, None))
        .await
        .unwrap();
    assert!(matches!(refused, PaymentState::Failed(_)), "{refused:?}");
    assert!(matches!(
        a.invoice(&cancelled.payment_hash).await.unwrap(),
        InvoiceState::Cancelled
    ));
    assert!(settlements(&a, 2, 1).await.is_empty(), "nothing settled");
    let unknown = PaymentHash([7; 32]);
    assert!(matches!(
        a.invoice(&unknown).await.unwrap(),
        InvoiceState::Unknown
    ));
    assert!(matches!(
        a.cancel_invoice(&unknown).await,
        Err(LightningError::NotFound)
    ));

    // Send: a direct peer costs nothing; the payment succeeds once, however often asked.
    let out = b
        .create_invoice(&request(Some(20_000), "out"))
        .await
        .unwrap();
    let decoded = decode_invoice(&out.payment_request, REGTEST).unwrap();
    let fee = a
        .probe_fee(&decoded, decoded.amount.unwrap())
        .await
        .unwrap();
    assert_eq!(fee, Msats::ZERO);
    let mut updates = a.payment_updates().await.unwrap();
    let sent = a
        .pay(&pay_request(&out.payment_request, None))
        .await
        .unwrap();
    let PaymentState::Succeeded { preimage, fee } = sent else {
        panic!("{sent:?}");
    };
    assert_eq!(preimage.payment_hash(), out.payment_hash);
    assert_eq!(fee, Msats::ZERO);
    let update = tokio::time::timeout(Duration::from_secs(10), updates.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(update.payment_hash, out.payment_hash);
    let repeat = a
        .pay(&pay_request(&out.payment_request, None))
        .await
        .unwrap();
    assert!(matches!(repeat, PaymentState::Succeeded { preimage: p, .. } if p == preimage));
    match b.invoice(&out.payment_hash).await.unwrap() {
        InvoiceState::Settled(s) => assert_eq!(s.amount, Sats::new(20_000).unwrap().to_msats()),
        other => panic!("{other:?}"),
    }
    // A payee no channel or hint leads to: no route to price.
    let stranger = decode_invoice(&stranger_invoice(), REGTEST).unwrap();
    assert!(matches!(
        a.probe_fee(&stranger, Msats::new(1_000).unwrap()).await,
        Err(LightningError::NoRoute(_))
    ));
    // The recipient cancelled: the payment fails for good, and says so later too.
    let gone = b
        .create_invoice(&request(Some(5_000), "gone"))
        .await
        .unwrap();
    b.cancel_invoice(&gone.payment_hash).await.unwrap();
    let failed = a
        .pay(&pay_request(&gone.payment_request, None))
        .await
        .unwrap();
    assert!(
        matches!(
            failed,
            PaymentState::Failed(PaymentFailure::RecipientRejected)
        ),
        "{failed:?}"
    );
    assert!(matches!(
        a.payment(&gone.payment_hash).await.unwrap(),
        Some(PaymentState::Failed(PaymentFailure::RecipientRejected))
    ));

    // Restart on the same directory: the same log, the same payments, the channel back.
    a.stop().await.unwrap();
    drop(a);
    let a = embedded(dir_a.path(), &chain).await;
    let replayed = settlements(&a, 0, 3).await;
    let hashes: Vec<_> = replayed
        .iter()
        .map(|s| (s.cursor.0, s.payment_hash))
        .collect();
    assert_eq!(hashes, [(1, inv.payment_hash), (2, open.payment_hash)]);
    assert_eq!(replayed[0].preimage, first.preimage);
    assert!(matches!(
        a.payment(&out.payment_hash).await.unwrap(),
        Some(PaymentState::Succeeded { preimage: p, .. }) if p == preimage
    ));
    assert!(matches!(
        a.invoice(&cancelled.payment_hash).await.unwrap(),
        InvoiceState::Cancelled
    ));
    eventually("the channel is back", Duration::from_secs(60), || {
        usable(&a, &b)
    })
    .await;
    pays(&a, &b, 3_000, "after the restart").await;
    a.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bank_pays_and_is_paid_through_the_embedded_node() {
    let EmbeddedNet {
        chain: _chain,
        a,
        b,
        dir_a: _dir_a,
        _b_proc,
        _dir_b,
    } = EmbeddedNet::start().await;
    let config = lightning_common::paying_config(100_000);
    let t = common::bank_with(config).await;
    let node: Arc<dyn LightningNode> = a.clone();
    let bank = t
        .bank
        .clone()
        .with_lightning(LightningRail::new(node.clone(), ln_config()).await.unwrap());
    let _tasks = bank.spawn_lightning_tasks().unwrap();
    // A second instance of the bank in this process shares the node (one per directory).
    let other = common::second_instance(&bank)
        .await
        .with_lightning(LightningRail::new(node, ln_config()).await.unwrap());
    let _other_tasks = other.spawn_lightning_tasks().unwrap();
    let alice = common::customer(&bank, "alice@example.com", 0).await;

    let inv = bank
        .ln_invoice_create(
            Some(&alice.me),
            &InvoiceCreate {
                wallet_id: Some(alice.wallet),
                amount: Some(Sats::new(50_000).unwrap()),
                memo: Some("for alice".into()),
                ..InvoiceCreate::default()
            },
        )
        .await
        .unwrap();
    let paid = b
        .pay(&pay_request(&inv.payment_request, None))
        .await
        .unwrap();
    assert!(matches!(paid, PaymentState::Succeeded { .. }), "{paid:?}");
    eventually("Alice is credited", Duration::from_secs(30), || async {
        (balance(&bank, alice.wallet).await.0 == 50_000_000).then_some(())
    })
    .await;
    let seen = other.ln_invoice_by_hash(&inv.payment_hash).await.unwrap();
    assert_eq!(seen.status, InvoiceStatus::Paid);
    assert_eq!(seen.preimage.unwrap().payment_hash(), inv.payment_hash);

    let out = b
        .create_invoice(&request(Some(20_000), "out"))
        .await
        .unwrap();
    let fee = bank
        .ln_fee_probe(&alice.me, alice.wallet, &out.payment_request, None)
        .await
        .unwrap();
    assert_eq!(fee, Sats::ZERO);
    let sent = bank
        .ln_send(&alice.me, &pay(alice.wallet, &out.payment_request, None))
        .await
        .unwrap();
    assert_eq!(sent.status, LnPayStatus::Success, "{sent:?}");
    let again = other
        .ln_send(&alice.me, &pay(alice.wallet, &out.payment_request, None))
        .await
        .unwrap();
    assert_eq!(again.status, LnPayStatus::AlreadyPaid);
    // 50,000 in, 20,000 out, no fee, the reserve returned: exact.
    assert_eq!(balance(&bank, alice.wallet).await, (30_000_000, 0));
    match b.invoice(&out.payment_hash).await.unwrap() {
        InvoiceState::Settled(s) => assert_eq!(s.amount, Sats::new(20_000).unwrap().to_msats()),
        other => panic!("{other:?}"),
    }
    let report = bank.ledger().verify().await.unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);

    // The operators' view (treasury and admin): null on an instance without a node, and
    // on this one what the node itself reports.
    let token = api_common::staff_token(&bank, "treasury@bank.example", StaffRole::Treasury).await;
    let bare = coordinator::api::router(t.bank.clone(), ApiConfig::default());
    let mut api = api_common::Api { router: bare, t };
    let query = "{ lightningNode { pubkey network blockHeight synced onchainBalanceSat \
        channelBalanceMsat channels { peer capacitySat outboundMsat inboundMsat usable } } }";
    let (status, v) = api.admin(Cred::Bearer(&token), query, json!({})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["data"]["lightningNode"], Value::Null, "{v}");
    api.router = coordinator::api::router(bank.clone(), ApiConfig::default());
    let (_, v) = api.admin(Cred::Bearer(&token), query, json!({})).await;
    let n = &v["data"]["lightningNode"];
    let (info, balances, channels) = (
        a.info().await.unwrap(),
        a.balances().await.unwrap(),
        a.channels().await.unwrap(),
    );
    assert_eq!(n["pubkey"], a.node_id(), "{v}");
    assert_eq!(n["network"], "regtest");
    assert_eq!(n["blockHeight"], info.block_height);
    assert_eq!(n["synced"], true);
    assert_eq!(
        n["onchainBalanceSat"],
        balances.onchain.to_sat().to_string()
    );
    assert_eq!(
        n["channelBalanceMsat"],
        balances.lightning.to_msat().to_string()
    );
    let [c] = channels.as_slice() else {
        panic!("{channels:?}")
    };
    assert_eq!(
        n["channels"],
        json!([{
            "peer": b.info().await.unwrap().pubkey,
            "capacitySat": "1000000",
            "outboundMsat": c.outbound.to_msat().to_string(),
            "inboundMsat": c.inbound.to_msat().to_string(),
            "usable": true,
        }])
    );
    a.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_embedded_node_follows_the_chain_over_bitcoind_rpc() {
    // Funding seen, the channel confirmed and the payment made: all from bitcoind's RPC.
    let EmbeddedNet {
        chain,
        a,
        b,
        dir_a: _dir_a,
        _b_proc,
        _dir_b,
    } = EmbeddedNet::start_with(|dir, chain| {
        let (user, password) = chain.rpc_credentials();
        let password_file = dir.join("rpc-password");
        std::fs::write(&password_file, format!("{password}\n")).unwrap();
        let mut config = embedded_config(&dir.join("node"), chain);
        config.chain = ChainAccess::Bitcoind {
            url: chain.rpc_url().to_owned(),
            auth: BitcoindAuth::UserPassword {
                user: user.to_owned(),
                password_file,
            },
        };
        config
    })
    .await;
    let tip = chain.control().tip().await.unwrap().height;
    eventually(
        "the node is at the tip",
        Duration::from_secs(30),
        || async {
            let info = a.info().await.ok()?;
            (info.synced && info.block_height == tip).then_some(())
        },
    )
    .await;
    pays(&a, &b, 7_000, "over rpc").await;
    a.stop().await.unwrap();
}
