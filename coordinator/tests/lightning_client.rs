//! A third-party application that uses the bank as its Lightning funding source, as it
//! would use Blink: over the wire only (HTTP `POST /graphql` with `X-API-KEY`, and
//! `graphql-transport-ws` with the key in the `connection_init` payload), against two
//! coordinator instances on 127.0.0.1 over one database and one real Lightning node (an
//! LND stand-in with a channel to an outside node).
//!
//! The flow: an API key made the way a Blink user makes one (`apiKeyCreate` with a login
//! session); account and wallet lookup; an invoice on behalf of a recipient; its status
//! subscription and `myUpdates` opened first, on the other instance; the outside node
//! pays (PENDING then PAID, the stream ends; `LnUpdate` PAID); a fee probe and a payment
//! out (SUCCESS, and no update: Blink sends none); the status by hash and the wallet's
//! transactions by hash; an invoice paid from another wallet of the bank (through the
//! ledger: PAID and `LnUpdate` too). Then attacks and edges: a wrong or revoked key is refused at
//! `connection_init`, another account hears nothing of the invoice, an unknown hash
//! answers an error, a cancelled invoice and one reaching its expiry end as EXPIRED.
//! The stand-ins must be built (see lightning_common).
#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;
mod lightning_common;
mod wire_client;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coordinator::amount::{Msats, Sats};
use coordinator::api::{ApiConfig, CLOSE_CREDENTIAL_REVOKED};
use coordinator::lightning::{
    InvoiceDescription, InvoiceRequest, LightningNode, PayRequest, PaymentState, decode_invoice,
};
use lightning_common::{Net, REGTEST, eventually, with_node};
use serde_json::{Value, json};
use wire_client::{Auth, Client, gql, key, serve};

const STATUS_BY_HASH: &str = "subscription($input: LnInvoicePaymentStatusByHashInput!) {
  lnInvoicePaymentStatusByHash(input: $input) {
    errors { code message }
    paymentHash paymentRequest status paymentPreimage
  }
}";

const STATUS_BY_REQUEST: &str =
    "subscription($input: LnInvoicePaymentStatusByPaymentRequestInput!) {
  lnInvoicePaymentStatusByPaymentRequest(input: $input) { errors { code } paymentHash status }
}";

const STATUS_DEPRECATED: &str = "subscription($input: LnInvoicePaymentStatusInput!) {
  lnInvoicePaymentStatus(input: $input) { errors { code } status }
}";

const MY_UPDATES: &str = "subscription myUpdates {
  myUpdates {
    errors { message }
    me { defaultAccount { id } }
    update {
      __typename
      ... on LnUpdate {
        paymentHash status walletId
        transaction {
          direction status settlementAmount
          initiationVia { __typename ... on InitiationViaLn { paymentHash } }
          settlementVia { __typename ... on SettlementViaLn { preImage } }
        }
      }
      ... on IntraLedgerUpdate { txNotificationType amount walletId }
    }
  }
}";

const ME: &str = "query me {
  me { id username defaultAccount { id defaultWalletId wallets { id walletCurrency balance } } }
}";

const INVOICE_ON_BEHALF: &str = "mutation lnInvoiceCreateOnBehalfOfRecipient($input: LnInvoiceCreateOnBehalfOfRecipientInput!) {
  lnInvoiceCreateOnBehalfOfRecipient(input: $input) {
    errors { code message }
    invoice { paymentHash paymentRequest paymentSecret satoshis paymentStatus }
  }
}";

/// Blink's user: a login session, then an API key made with it.
async fn api_key_of(addr: SocketAddr, session: &str, name: &str) -> (String, String) {
    let v = gql(
        addr,
        Auth::Bearer(session),
        "mutation($input: ApiKeyCreateInput!) { apiKeyCreate(input: $input) { apiKey { id } apiKeySecret } }",
        json!({"input": {"name": name, "scopes": ["READ", "WRITE", "RECEIVE"]}}),
    )
    .await;
    let p = &v["data"]["apiKeyCreate"];
    (
        p["apiKey"]["id"].as_str().expect("a key id").to_owned(),
        p["apiKeySecret"].as_str().expect("a secret").to_owned(),
    )
}

/// An invoice of `wallet` for `sats`, made on behalf of the recipient (no credential).
async fn invoice_for(addr: SocketAddr, wallet: &str, sats: u64) -> (String, String) {
    let v = gql(
        addr,
        Auth::None,
        INVOICE_ON_BEHALF,
        json!({"input": {"recipientWalletId": wallet, "amount": sats, "memo": "order 42"}}),
    )
    .await;
    let p = &v["data"]["lnInvoiceCreateOnBehalfOfRecipient"];
    assert_eq!(p["errors"], json!([]), "{v}");
    assert_eq!(p["invoice"]["paymentStatus"], "PENDING");
    assert_eq!(p["invoice"]["satoshis"], sats);
    (
        p["invoice"]["paymentHash"].as_str().unwrap().to_owned(),
        p["invoice"]["paymentRequest"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_funding_source_client_works_unchanged() {
    let net = Net::start().await;
    let db = common::bank_with(lightning_common::paying_config(100_000)).await;
    let bank = with_node(db.bank.clone(), &net).await;
    let _tasks = bank.spawn_lightning_tasks().unwrap();
    // Two instances: the client's requests go to one, its sockets to the other.
    let http = serve(coordinator::api::router(bank.clone(), ApiConfig::default())).await;
    let ws = serve(coordinator::api::router(bank.clone(), ApiConfig::default())).await;

    let alice = api_common::customer(&bank, "alice@example.com", 100_000).await;
    bank.set_username(&alice.principal, &"alice".parse().unwrap())
        .await
        .unwrap();
    let mallory = api_common::customer(&bank, "mallory@example.com", 0).await;
    let (_, key_a) = api_key_of(http, &alice.token, "funding source").await;
    let (_, key_m) = api_key_of(http, &mallory.token, "mallory").await;

    // Account and wallet lookup.
    let v = gql(http, key(&key_a), ME, json!({})).await;
    let account = &v["data"]["me"]["defaultAccount"];
    assert_eq!(account["id"], alice.account.to_string(), "{v}");
    let wallet = alice.wallet.to_string();
    assert_eq!(account["defaultWalletId"], wallet);
    assert_eq!(account["wallets"][0]["id"], wallet);
    assert_eq!(account["wallets"][0]["walletCurrency"], "BTC");
    assert_eq!(account["wallets"][0]["balance"], 100_000);
    let v = gql(
        http,
        Auth::None,
        "query($u: Username!) { accountDefaultWallet(username: $u) { id walletCurrency } }",
        json!({"u": "alice"}),
    )
    .await;
    assert_eq!(v["data"]["accountDefaultWallet"]["id"], wallet, "{v}");

    // An invoice on behalf of the recipient; its status and the updates are watched on
    // the other instance before anyone pays.
    let (hash, request) = invoice_for(http, &wallet, 12_345).await;
    let mut a_ws = Client::open(ws, json!({"X-API-KEY": key_a})).await.unwrap();
    let mut m_ws = Client::open(ws, json!({"X-API-KEY": key_m})).await.unwrap();
    a_ws.subscribe(
        "status",
        STATUS_BY_HASH,
        json!({"input": {"paymentHash": hash}}),
    )
    .await;
    a_ws.subscribe(
        "by-request",
        STATUS_BY_REQUEST,
        json!({"input": {"paymentRequest": request}}),
    )
    .await;
    a_ws.subscribe(
        "deprecated",
        STATUS_DEPRECATED,
        json!({"input": {"paymentRequest": request}}),
    )
    .await;
    a_ws.subscribe("updates", MY_UPDATES, json!({})).await;
    m_ws.subscribe("updates", MY_UPDATES, json!({})).await;
    let first = a_ws.data("status", "lnInvoicePaymentStatusByHash").await;
    assert_eq!(first["status"], "PENDING", "{first}");
    assert_eq!(first["paymentHash"], hash);
    assert_eq!(first["paymentRequest"], request);
    assert_eq!(first["paymentPreimage"], Value::Null);
    let first = a_ws
        .data("by-request", "lnInvoicePaymentStatusByPaymentRequest")
        .await;
    assert_eq!(first["status"], "PENDING", "{first}");
    assert_eq!(first["paymentHash"], hash);
    let first = a_ws.data("deprecated", "lnInvoicePaymentStatus").await;
    assert_eq!(first["status"], "PENDING", "{first}");
    // myUpdates sends nothing first: give the subscriptions a moment to register.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The outside node pays.
    let paid = net
        .b
        .pay(&PayRequest {
            payment_request: request.clone(),
            payment_hash: decode_invoice(&request, REGTEST).unwrap().payment_hash,
            amount: None,
            max_fee: Msats::new(50_000).unwrap(),
            timeout: Duration::from_secs(30),
        })
        .await
        .unwrap();
    let PaymentState::Succeeded { preimage, .. } = paid else {
        panic!("the outside payment did not succeed: {paid:?}");
    };
    let p = a_ws.data("status", "lnInvoicePaymentStatusByHash").await;
    assert_eq!(p["status"], "PAID", "{p}");
    assert_eq!(p["errors"], json!([]));
    assert_eq!(p["paymentPreimage"], preimage.to_hex());
    a_ws.completes("status").await;
    let p = a_ws
        .data("by-request", "lnInvoicePaymentStatusByPaymentRequest")
        .await;
    assert_eq!(p["status"], "PAID", "{p}");
    a_ws.completes("by-request").await;
    assert_eq!(
        a_ws.data("deprecated", "lnInvoicePaymentStatus").await["status"],
        "PAID"
    );
    a_ws.completes("deprecated").await;
    let u = a_ws.data("updates", "myUpdates").await;
    assert_eq!(u["me"]["defaultAccount"]["id"], alice.account.to_string());
    let update = &u["update"];
    assert_eq!(update["__typename"], "LnUpdate", "{u}");
    assert_eq!(update["status"], "PAID");
    assert_eq!(update["paymentHash"], hash);
    assert_eq!(update["walletId"], wallet);
    let tx = &update["transaction"];
    assert_eq!(tx["direction"], "RECEIVE");
    assert_eq!(tx["status"], "SUCCESS");
    assert_eq!(tx["settlementAmount"], 12_345);
    assert_eq!(tx["initiationVia"]["paymentHash"], hash);
    assert_eq!(tx["settlementVia"]["__typename"], "SettlementViaLn");
    assert_eq!(tx["settlementVia"]["preImage"], preimage.to_hex());

    // Fee probe and payment out to an outside invoice.
    let out = net
        .b
        .create_invoice(&InvoiceRequest {
            amount: Some(Sats::new(7_000).unwrap().to_msats()),
            description: InvoiceDescription::Memo("coffee".into()),
            expiry: Duration::from_secs(3600),
        })
        .await
        .unwrap();
    let v = gql(
        http,
        key(&key_a),
        "mutation lnInvoiceFeeProbe($input: LnInvoiceFeeProbeInput!) {
           lnInvoiceFeeProbe(input: $input) { errors { code message } amount }
         }",
        json!({"input": {"walletId": wallet, "paymentRequest": out.payment_request}}),
    )
    .await;
    let probe = &v["data"]["lnInvoiceFeeProbe"];
    assert_eq!(probe["errors"], json!([]), "{v}");
    let fee = probe["amount"].as_u64().expect("a fee");
    // Whole satoshis of what one hop to a direct peer may cost at most.
    assert!(fee <= 70, "fee probe {fee}");
    let v = gql(
        http,
        key(&key_a),
        "mutation lnInvoicePaymentSend($input: LnInvoicePaymentInput!) {
           lnInvoicePaymentSend(input: $input) { status errors { code message } }
         }",
        json!({"input": {"walletId": wallet, "paymentRequest": out.payment_request, "memo": "coffee"}}),
    )
    .await;
    assert_eq!(
        v["data"]["lnInvoicePaymentSend"]["status"], "SUCCESS",
        "{v}"
    );
    assert!(matches!(
        net.b.invoice(&out.payment_hash).await.unwrap(),
        coordinator::lightning::InvoiceState::Settled(_)
    ));

    // Status by hash (the received invoice) and the wallet's transactions by hash (the
    // payment out), as a funding source checks them.
    let v = gql(
        http,
        key(&key_a),
        "query($input: LnInvoicePaymentStatusByHashInput!) {
           lnInvoicePaymentStatusByHash(input: $input) { paymentHash status }
         }",
        json!({"input": {"paymentHash": hash}}),
    )
    .await;
    assert_eq!(
        v["data"]["lnInvoicePaymentStatusByHash"]["status"], "PAID",
        "{v}"
    );
    let v = gql(
        http,
        key(&key_a),
        "query($w: WalletId!, $h: PaymentHash!) {
           me { defaultAccount { walletById(walletId: $w) {
             ... on BTCWallet { transactionsByPaymentHash(paymentHash: $h) {
               status direction settlementAmount settlementFee
               settlementVia { __typename ... on SettlementViaLn { preImage } }
             } }
           } } }
         }",
        json!({"w": wallet, "h": out.payment_hash.to_string()}),
    )
    .await;
    let txs = &v["data"]["me"]["defaultAccount"]["walletById"]["transactionsByPaymentHash"];
    assert_eq!(txs.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(txs[0]["status"], "SUCCESS");
    assert_eq!(txs[0]["direction"], "SEND");
    let fee_paid = txs[0]["settlementFee"].as_i64().unwrap();
    assert_eq!(txs[0]["settlementAmount"], -7_000 - fee_paid, "{v}");
    assert_eq!(txs[0]["settlementVia"]["__typename"], "SettlementViaLn");
    assert!(txs[0]["settlementVia"]["preImage"].is_string(), "{v}");

    // Neither the payment out (Blink sends nothing for it) nor Alice's invoice reached
    // anyone's myUpdates since: the next update of each is this transfer.
    let v = gql(
        http,
        key(&key_a),
        api_common::SEND,
        api_common::send_input(alice.wallet, mallory.wallet, 1_000),
    )
    .await;
    assert_eq!(api_common::send_status(&v), Some("SUCCESS"), "{v}");
    let u = a_ws.data("updates", "myUpdates").await;
    assert_eq!(
        u["update"]["txNotificationType"], "IntraLedgerPayment",
        "{u}"
    );
    let u = m_ws.data("updates", "myUpdates").await;
    assert_eq!(
        u["update"]["txNotificationType"], "IntraLedgerReceipt",
        "{u}"
    );
    assert_eq!(u["update"]["walletId"], mallory.wallet.to_string());

    // An invoice of Alice's paid by another wallet of the bank, through the ledger: the
    // stream ends PAID, Alice gets its LnUpdate, the payer an internal payment.
    let (hash, request) = invoice_for(http, &wallet, 400).await;
    a_ws.subscribe(
        "internal",
        STATUS_BY_HASH,
        json!({"input": {"paymentHash": hash}}),
    )
    .await;
    let p = a_ws.data("internal", "lnInvoicePaymentStatusByHash").await;
    assert_eq!(p["status"], "PENDING", "{p}");
    let v = gql(
        http,
        key(&key_m),
        "mutation($input: LnInvoicePaymentInput!) { lnInvoicePaymentSend(input: $input) { status errors { code } } }",
        json!({"input": {"walletId": mallory.wallet.to_string(), "paymentRequest": request}}),
    )
    .await;
    assert_eq!(
        v["data"]["lnInvoicePaymentSend"]["status"], "SUCCESS",
        "{v}"
    );
    let p = a_ws.data("internal", "lnInvoicePaymentStatusByHash").await;
    assert_eq!(p["status"], "PAID", "{p}");
    a_ws.completes("internal").await;
    let u = a_ws.data("updates", "myUpdates").await;
    assert_eq!(u["update"]["__typename"], "LnUpdate", "{u}");
    assert_eq!(u["update"]["paymentHash"], hash);
    assert_eq!(u["update"]["transaction"]["settlementAmount"], 400);
    assert_eq!(
        u["update"]["transaction"]["settlementVia"]["__typename"],
        "SettlementViaIntraLedger"
    );
    let u = m_ws.data("updates", "myUpdates").await;
    assert_eq!(
        u["update"]["txNotificationType"], "IntraLedgerPayment",
        "{u}"
    );
    assert_eq!(u["update"]["amount"], 400);

    attacks_and_edges(&bank, http, ws, &alice, &key_a).await;
}

async fn attacks_and_edges(
    bank: &coordinator::bank::Bank,
    http: SocketAddr,
    ws: SocketAddr,
    alice: &api_common::Customer,
    key_a: &str,
) {
    let wallet = alice.wallet.to_string();

    // A wrong key, and a revoked one, are refused at connection_init.
    assert_eq!(
        Client::open(ws, json!({"X-API-KEY": "not-a-key"}))
            .await
            .err(),
        Some(Some(CLOSE_CREDENTIAL_REVOKED))
    );
    let (id, revoked) = api_key_of(http, &alice.token, "revoked").await;
    assert!(
        Client::open(ws, json!({"X-API-KEY": revoked}))
            .await
            .is_ok()
    );
    let v = gql(
        http,
        Auth::Bearer(&alice.token),
        "mutation($id: ID!) { apiKeyRevoke(input: {id: $id}) { apiKey { revoked } } }",
        json!({"id": id}),
    )
    .await;
    assert_eq!(v["data"]["apiKeyRevoke"]["apiKey"]["revoked"], true, "{v}");
    assert_eq!(
        Client::open(ws, json!({"X-API-KEY": revoked})).await.err(),
        Some(Some(CLOSE_CREDENTIAL_REVOKED))
    );

    // An unknown hash: one message with the error, then the end. No credential needed.
    let mut anon = Client::open(ws, json!({})).await.unwrap();
    anon.subscribe(
        "unknown",
        STATUS_BY_HASH,
        json!({"input": {"paymentHash": "ab".repeat(32)}}),
    )
    .await;
    let p = anon.data("unknown", "lnInvoicePaymentStatusByHash").await;
    assert_eq!(p["errors"][0]["code"], "NOT_FOUND", "{p}");
    assert_eq!(p["status"], Value::Null);
    anon.completes("unknown").await;
    // A malformed hash is refused as the query refuses it.
    anon.subscribe(
        "bad",
        STATUS_BY_HASH,
        json!({"input": {"paymentHash": "xyz"}}),
    )
    .await;
    let m = anon.next("bad", Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        m["payload"]["errors"][0]["extensions"]["code"], "INVALID_INPUT",
        "{m}"
    );
    anon.completes("bad").await;

    // A cancelled invoice ends as EXPIRED (Blink has no cancelled status), though no
    // posting announces it.
    let (hash, _) = invoice_for(http, &wallet, 500).await;
    anon.subscribe(
        "cancel",
        STATUS_BY_HASH,
        json!({"input": {"paymentHash": hash}}),
    )
    .await;
    let p = anon.data("cancel", "lnInvoicePaymentStatusByHash").await;
    assert_eq!(p["status"], "PENDING", "{p}");
    let v = gql(
        http,
        key(key_a),
        "mutation($input: LnInvoiceCancelInput!) { lnInvoiceCancel(input: $input) { success errors { code } } }",
        json!({"input": {"walletId": wallet, "paymentHash": hash}}),
    )
    .await;
    assert_eq!(v["data"]["lnInvoiceCancel"]["success"], true, "{v}");
    let p = anon.data("cancel", "lnInvoicePaymentStatusByHash").await;
    assert_eq!(p["status"], "EXPIRED", "{p}");
    anon.completes("cancel").await;

    // An invoice reaching its expiry: EXPIRED at that instant, from no event (its expiry
    // brought forward in the database, as if it had been made with a short one).
    let (hash, _) = invoice_for(http, &wallet, 600).await;
    sqlx::query(
        "UPDATE ln_invoices SET expires_at = now() + interval '1 second' \
         WHERE payment_hash = decode($1, 'hex')",
    )
    .bind(&hash)
    .execute(bank.ledger().pool())
    .await
    .unwrap();
    let start = Instant::now();
    anon.subscribe(
        "expiry",
        STATUS_BY_HASH,
        json!({"input": {"paymentHash": hash}}),
    )
    .await;
    let p = anon.data("expiry", "lnInvoicePaymentStatusByHash").await;
    assert_eq!(p["status"], "PENDING", "{p}");
    let p = anon.data("expiry", "lnInvoicePaymentStatusByHash").await;
    assert_eq!(p["status"], "EXPIRED", "{p}");
    // By its expiry timer, not the periodic read (every 5 s).
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    eventually("the query agrees", Duration::from_secs(5), || async {
        let v = gql(
            http,
            Auth::None,
            "query($input: LnInvoicePaymentStatusByHashInput!) { lnInvoicePaymentStatusByHash(input: $input) { status } }",
            json!({"input": {"paymentHash": hash}}),
        )
        .await;
        (v["data"]["lnInvoicePaymentStatusByHash"]["status"] == "EXPIRED").then_some(())
    })
    .await;
}
