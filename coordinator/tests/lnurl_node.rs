//! Lightning addresses over real Lightning: two banks, each with its own database and its
//! own LND stand-in, one channel between the nodes. A user of the first pays a Lightning
//! address and an LNURL of the second (its endpoints served on 127.0.0.1), and an address
//! of its own bank (settled inside the ledger); a service that answers a crafted invoice
//! is refused with nothing paid. The stand-ins must be built (see lightning_common).
#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod common;
mod lightning_common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use coordinator::amount::Sats;
use coordinator::api::ApiConfig;
use coordinator::bank::lightning::{InvoiceStatus, LightningConfig, LightningRail, LnPayStatus};
use coordinator::bank::{Bank, Scope, Username};
use coordinator::lightning::LightningNode;
use coordinator::lnurl::{LnurlConfig, PayTarget};
use lightning_common::{Net, REGTEST, adapter, eventually};
use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use serde_json::{Value, json};
use tower::ServiceExt;

fn ln_config() -> LightningConfig {
    let mut c = LightningConfig::new(REGTEST);
    c.reconcile_interval = Duration::from_millis(300);
    c.reconcile_grace = Duration::from_secs(1);
    c.pay_timeout = Duration::from_secs(20);
    c
}

async fn with_node(bank: Bank, node: &lnd_standin::spawn::LndStandIn) -> Bank {
    let node: Arc<dyn LightningNode> = Arc::new(adapter(node).await);
    bank.with_lightning(LightningRail::new(node, ln_config()).await.unwrap())
}

fn lnurl_config(public_url: &str) -> LnurlConfig {
    LnurlConfig {
        public_url: Some(public_url.parse().unwrap()),
        allow_loopback: true,
        timeout: Duration::from_secs(10),
        ..LnurlConfig::default()
    }
}

/// Settled millisatoshis of a wallet.
async fn settled(bank: &Bank, wallet: coordinator::WalletId) -> i64 {
    bank.ledger()
        .balance(Bank::ledger_account(wallet))
        .await
        .unwrap()
        .settled
}

async fn gql(router: &axum::Router, key: &str, query: &str, input: Value) -> Value {
    let body = json!({"query": query, "variables": {"input": input}}).to_string();
    let req = Request::post("/graphql")
        .header("content-type", "application/json")
        .header("x-api-key", key)
        .body(Body::from(body))
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

const ADDRESS_SEND: &str = "mutation LnAddressPaymentSend($input: LnAddressPaymentSendInput!) {
  lnAddressPaymentSend(input: $input) { status errors { code message path } }
}";

const LNURL_SEND: &str = "mutation LnurlPaymentSend($input: LnurlPaymentSendInput!) {
  lnurlPaymentSend(input: $input) { status errors { code message path } }
}";

/// A service at 127.0.0.1 whose callback answers a signed invoice for the right
/// metadata but one satoshi more than asked.
async fn greedy_service() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let domain = listener.local_addr().unwrap().to_string();
    let metadata = json!([["text/plain", "greedy"]]).to_string();
    let pay_request = json!({
        "tag": "payRequest",
        "callback": format!("http://{domain}/cb"),
        "minSendable": 1_000,
        "maxSendable": 100_000_000,
        "metadata": metadata,
    });
    let app = axum::Router::new()
        .route(
            "/.well-known/lnurlp/greedy",
            get(move || {
                let p = pay_request.clone();
                async move { Json(p) }
            }),
        )
        .route(
            "/cb",
            get(
                move |q: axum::extract::Query<std::collections::HashMap<String, String>>| {
                    let metadata = metadata.clone();
                    async move {
                        let asked: u64 = q["amount"].parse().unwrap();
                        let secp = Secp256k1::new();
                        let key = SecretKey::from_slice(&[0x24; 32]).unwrap();
                        let now = SystemTime::now()
                            .duration_since(SystemTime::UNIX_EPOCH)
                            .unwrap();
                        let pr = InvoiceBuilder::new(Currency::Regtest)
                            .amount_milli_satoshis(asked + 1_000)
                            .description_hash(sha256::Hash::hash(metadata.as_bytes()))
                            .payment_hash(sha256::Hash::hash(b"greedy"))
                            .payment_secret(PaymentSecret([9; 32]))
                            .duration_since_epoch(now)
                            .min_final_cltv_expiry_delta(144)
                            .build_signed(|m| secp.sign_ecdsa_recoverable(m, &key))
                            .unwrap();
                        Json(json!({"pr": pr.to_string(), "routes": []}))
                    }
                },
            ),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    domain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lightning_addresses_are_paid_over_lightning_and_inside_the_bank() {
    let net = Net::start().await;

    // Bank B (node b): Bob's address, served on a real listener.
    // Each TestBank keeps its scratch database alive.
    let b_db = common::bank().await;
    let b_bank = with_node(b_db.bank.clone(), &net.b_proc).await;
    let _b_tasks = b_bank.spawn_lightning_tasks().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b_domain = listener.local_addr().unwrap().to_string();
    let b_router = coordinator::api::router(
        b_bank.clone(),
        ApiConfig {
            lnurl: lnurl_config(&format!("http://{b_domain}")),
            ..ApiConfig::default()
        },
    );
    tokio::spawn(async move { axum::serve(listener, b_router).await.unwrap() });
    let bob = common::customer(&b_bank, "bob@example.com", 0).await;
    let bob_name: Username = "bob".parse().unwrap();
    b_bank.set_username(&bob.me, &bob_name).await.unwrap();

    // Bank A (node a): Alice pays, Carol has an address at A.
    let a_db = common::bank_with(lightning_common::paying_config(100_000)).await;
    let a_bank = with_node(a_db.bank.clone(), &net.a_proc).await;
    let _a_tasks = a_bank.spawn_lightning_tasks().unwrap();
    let a_router = coordinator::api::router(
        a_bank.clone(),
        ApiConfig {
            lnurl: lnurl_config("https://bank-a.example"),
            ..ApiConfig::default()
        },
    );
    let alice = common::customer(&a_bank, "alice@example.com", 200_000).await;
    let (_, key) = a_bank
        .create_api_key(&alice.me, "lnurl", &[Scope::Read, Scope::Write], None)
        .await
        .unwrap();
    let key = key.expose().to_owned();
    let carol = common::customer(&a_bank, "carol@example.com", 0).await;
    a_bank
        .set_username(&carol.me, &"carol".parse().unwrap())
        .await
        .unwrap();

    // Alice pays bob@<bank B> over Lightning.
    let input = json!({
        "walletId": alice.wallet.to_string(),
        "lnAddress": format!("bob@{b_domain}"),
        "amount": 20_000,
    });
    let v = gql(&a_router, &key, ADDRESS_SEND, input).await;
    assert_eq!(
        v["data"]["lnAddressPaymentSend"]["status"], "SUCCESS",
        "{v}"
    );
    eventually(
        "Bob is credited at bank B",
        Duration::from_secs(30),
        || async { (settled(&b_bank, bob.wallet).await == 20_000_000).then_some(()) },
    )
    .await;
    // One invoice of Bob's, paid, its memo the address's description.
    let rows: Vec<(Vec<u8>, String)> =
        sqlx::query_as("SELECT payment_hash, memo FROM ln_invoices WHERE wallet_id = $1")
            .bind(bob.wallet.as_uuid())
            .fetch_all(b_bank.ledger().pool())
            .await
            .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].1, "Payment to bob");
    let hash = coordinator::lightning::PaymentHash(rows[0].0.clone().try_into().unwrap());
    let invoice = b_bank.ln_invoice_by_hash(&hash).await.unwrap();
    assert_eq!(invoice.status, InvoiceStatus::Paid);
    let alice_after_one = settled(&a_bank, alice.wallet).await;
    assert!(
        alice_after_one <= 180_000_000,
        "the amount and any fee left Alice's wallet: {alice_after_one}"
    );

    // Then Bob's LNURL (bech32), as bank B hands it out.
    let b_lnurl = coordinator::lnurl::Lnurl::new(lnurl_config(&format!("http://{b_domain}")))
        .unwrap()
        .lnurl_of(&bob_name)
        .unwrap();
    let input = json!({
        "walletId": alice.wallet.to_string(),
        "lnurl": b_lnurl,
        "amount": 5_000,
    });
    let v = gql(&a_router, &key, LNURL_SEND, input).await;
    assert_eq!(v["data"]["lnurlPaymentSend"]["status"], "SUCCESS", "{v}");
    eventually("Bob is credited again", Duration::from_secs(30), || async {
        (settled(&b_bank, bob.wallet).await == 25_000_000).then_some(())
    })
    .await;

    // Both payments and their routing fees left Alice's wallet.
    let alice_before_carol = settled(&a_bank, alice.wallet).await;
    assert!(alice_before_carol <= 175_000_000, "{alice_before_carol}");

    // Carol's address at bank A: resolved without HTTP, settled inside the ledger (no
    // fee).
    let a_lnurl = coordinator::lnurl::Lnurl::new(lnurl_config("https://bank-a.example")).unwrap();
    let r = a_lnurl
        .pay(
            &a_bank,
            &alice.me,
            alice.wallet,
            &PayTarget::Address("carol@bank-a.example".parse().unwrap()),
            Sats::new(3_000).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, LnPayStatus::Success);
    assert_eq!(settled(&a_bank, carol.wallet).await, 3_000_000);
    assert_eq!(
        settled(&a_bank, alice.wallet).await,
        alice_before_carol - 3_000_000
    );

    // A service whose invoice asks for more than the amount: refused, nothing paid.
    let balance = || async {
        let b = a_bank
            .ledger()
            .balance(Bank::ledger_account(alice.wallet))
            .await
            .unwrap();
        (b.settled, b.pending)
    };
    let before = balance().await;
    let greedy = greedy_service().await;
    let input = json!({
        "walletId": alice.wallet.to_string(),
        "lnAddress": format!("greedy@{greedy}"),
        "amount": 1_000,
    });
    let v = gql(&a_router, &key, ADDRESS_SEND, input).await;
    let payload = &v["data"]["lnAddressPaymentSend"];
    assert_eq!(payload["status"], "FAILURE", "{v}");
    assert_eq!(
        payload["errors"][0]["code"], "LNURL_INVOICE_MISMATCH",
        "{v}"
    );
    assert_eq!(balance().await, before, "nothing paid, nothing held");
}
