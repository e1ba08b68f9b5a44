//! The on-chain operations through the real router, with the regtest stand-in and a
//! deposit driver: addresses (Blink's `onChainAddressCreate`/`Current`), another user's
//! wallet and a missing scope refused, a deposit pending then settled as Blink shows it,
//! REST, and the Blink fields added with them (`User.language`, `Transaction.externalId`,
//! `UsdWallet`).

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;
mod wallets_common;

use std::sync::Arc;

use api_common::{Api, Cred, api_key, customer};
use bdk_wallet::bitcoin::{Address, Amount, Network};
use chain_standin::spawn::{Options, StandIn};
use coordinator::api::{ApiConfig, AppState, OnchainConfig};
use coordinator::bank::Scope;
use coordinator::chain::esplora::EsploraSource;
use coordinator::chain::{CallPolicy, ChainSource};
use coordinator::deposits::{AddressBookIndex, DepositConfig, DepositDriver};
use serde_json::{Value, json};

const CREATE: &str = "mutation($i: OnChainAddressCreateInput!) { onChainAddressCreate(input: $i) { address errors { code message path } } }";
const CURRENT: &str = "mutation($i: OnChainAddressCurrentInput!) { onChainAddressCurrent(input: $i) { address errors { code message } } }";
const WALLET: &str = "query { me { defaultAccount { \
    pendingIncomingTransactions { id status } \
    wallets { id pendingIncomingBalance balance \
      pendingIncomingTransactions { status direction settlementAmount externalId \
        initiationVia { ... on InitiationViaOnChain { address } } \
        settlementVia { ... on SettlementViaOnChain { transactionHash vout } } } \
      transactions(first: 1) { edges { node { status settlementAmount \
        settlementVia { __typename ... on SettlementViaOnChain { transactionHash vout } } } } } \
      ... on UsdWallet { id } } } } }";

fn address(v: &Value, field: &str) -> String {
    v["data"][field]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no address in {v}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_and_a_deposit_through_graphql_and_rest() {
    let standin = StandIn::start_with(Options {
        initial_blocks: 101,
        ..Options::default()
    })
    .unwrap();
    let t = common::bank().await;
    let pool = t.bank.ledger().pool().clone();
    let (wallets, hot) = wallets_common::hot_wallet(&pool).await;
    let state = AppState::new(t.bank.clone(), ApiConfig::default()).with_onchain(OnchainConfig {
        wallets: wallets.clone(),
        hot_wallet: hot.id,
    });
    let api = Api {
        router: coordinator::api::router_with_state(state),
        t,
    };
    let alice = customer(api.bank(), "alice@example.com", 0).await;
    let bob = customer(api.bank(), "bob@example.com", 0).await;
    let a = Cred::Bearer(&alice.token);
    let input = json!({ "i": { "walletId": alice.wallet.to_string() } });

    // New addresses each time; the current one is the latest, stable.
    let (_, v) = api.gql(a, CREATE, input.clone()).await;
    let first = address(&v, "onChainAddressCreate");
    let (_, v) = api.gql(a, CREATE, input.clone()).await;
    let second = address(&v, "onChainAddressCreate");
    assert_ne!(first, second);
    let (_, v) = api.gql(a, CURRENT, input.clone()).await;
    assert_eq!(address(&v, "onChainAddressCurrent"), second);
    let (_, v) = api.gql(a, CURRENT, input.clone()).await;
    assert_eq!(address(&v, "onChainAddressCurrent"), second);
    let to: Address = second
        .parse::<Address<_>>()
        .unwrap()
        .require_network(Network::Regtest)
        .unwrap();

    // Bob cannot get an address for Alice's wallet; a read-only key gets none at all.
    let (_, v) = api
        .gql(Cred::Bearer(&bob.token), CREATE, input.clone())
        .await;
    assert_eq!(
        v["data"]["onChainAddressCreate"]["address"],
        Value::Null,
        "{v}"
    );
    assert_eq!(
        v["data"]["onChainAddressCreate"]["errors"][0]["code"],
        "NOT_FOUND"
    );
    let read_only = api_key(api.bank(), &alice, &[Scope::Read]).await;
    let (_, v) = api.gql(Cred::Key(&read_only), CREATE, input.clone()).await;
    assert!(v["errors"].is_array(), "{v}");
    let bad = json!({ "i": { "walletId": "not-a-wallet" } });
    let (_, v) = api.gql(a, CREATE, bad).await;
    assert_eq!(
        v["data"]["onChainAddressCreate"]["errors"][0]["code"],
        "INVALID_INPUT"
    );

    // A deposit: pending, as Blink shows it.
    let chain: Arc<dyn ChainSource> =
        Arc::new(EsploraSource::new(standin.esplora_url(), CallPolicy::default()).unwrap());
    let mut driver = DepositDriver::new(
        api.bank().ledger().clone(),
        chain,
        Arc::new(AddressBookIndex::new(wallets.clone())),
        DepositConfig {
            confirmations: 1,
            ..DepositConfig::default()
        },
    );
    let funded = standin
        .control()
        .fund(&to, Amount::from_sat(42_000))
        .await
        .unwrap();
    driver.tick().await.unwrap();
    let (_, v) = api.gql(a, WALLET, json!({})).await;
    let w = &v["data"]["me"]["defaultAccount"]["wallets"][0];
    assert_eq!(w["pendingIncomingBalance"], 42_000, "{v}");
    assert_eq!(w["balance"], 0);
    let p = &w["pendingIncomingTransactions"][0];
    assert_eq!(p["status"], "PENDING");
    assert_eq!(p["direction"], "RECEIVE");
    assert_eq!(p["settlementAmount"], 42_000);
    assert_eq!(p["externalId"], Value::Null);
    assert_eq!(p["initiationVia"]["address"], second.as_str());
    assert_eq!(
        p["settlementVia"]["transactionHash"],
        funded.txid.to_string()
    );
    assert_eq!(p["settlementVia"]["vout"], funded.vout);
    assert_eq!(
        v["data"]["me"]["defaultAccount"]["pendingIncomingTransactions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // Bob sees nothing of it.
    let (_, v) = api.gql(Cred::Bearer(&bob.token), WALLET, json!({})).await;
    let bw = &v["data"]["me"]["defaultAccount"]["wallets"][0];
    assert_eq!(bw["pendingIncomingTransactions"], json!([]));

    // By address, pending; the first address has nothing.
    let by_address = "query($a: OnChainAddress!) { me { defaultAccount { wallets { \
        pendingIncomingTransactionsByAddress(address: $a) { status } \
        transactionsByAddress(address: $a, first: 10) { edges { node { status } } } } } } }";
    let (_, v) = api.gql(a, by_address, json!({ "a": second })).await;
    let w = &v["data"]["me"]["defaultAccount"]["wallets"][0];
    assert_eq!(
        w["pendingIncomingTransactionsByAddress"][0]["status"],
        "PENDING"
    );
    assert_eq!(
        w["transactionsByAddress"]["edges"][0]["node"]["status"],
        "PENDING"
    );
    let (_, v) = api.gql(a, by_address, json!({ "a": first })).await;
    let w = &v["data"]["me"]["defaultAccount"]["wallets"][0];
    assert_eq!(w["pendingIncomingTransactionsByAddress"], json!([]));
    let (_, v) = api.gql(a, by_address, json!({ "a": "nonsense" })).await;
    assert!(v["errors"].is_array(), "a bad address is refused: {v}");

    // REST sees the same.
    let path = format!("/v1/wallets/{}/pending-incoming", alice.wallet);
    let (status, _, body) = api.get(&path, a).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["amount_sats"], 42_000);
    assert_eq!(body[0]["transaction_hash"], funded.txid.to_string());

    // Settled: in the history, settled on chain.
    standin.control().mine(1).await.unwrap();
    driver.tick().await.unwrap();
    let (_, v) = api.gql(a, WALLET, json!({})).await;
    let w = &v["data"]["me"]["defaultAccount"]["wallets"][0];
    assert_eq!(w["balance"], 42_000, "{v}");
    assert_eq!(w["pendingIncomingBalance"], 0);
    assert_eq!(w["pendingIncomingTransactions"], json!([]));
    let node = &w["transactions"]["edges"][0]["node"];
    assert_eq!(node["status"], "SUCCESS");
    assert_eq!(node["settlementVia"]["__typename"], "SettlementViaOnChain");
    assert_eq!(
        node["settlementVia"]["transactionHash"],
        funded.txid.to_string()
    );
    let (_, v) = api.gql(a, by_address, json!({ "a": second })).await;
    let w = &v["data"]["me"]["defaultAccount"]["wallets"][0];
    assert_eq!(
        w["transactionsByAddress"]["edges"][0]["node"]["status"],
        "SUCCESS"
    );
}

#[tokio::test]
async fn blink_fields_language_external_id_and_usd_wallet() {
    let api = api_common::api().await;
    let alice = customer(api.bank(), "alice@example.com", 0).await;
    let a = Cred::Bearer(&alice.token);
    let (_, v) = api.gql(a, "query { me { language } }", json!({})).await;
    assert_eq!(v["data"]["me"]["language"], "default", "{v}");
    let set = "mutation($i: UserUpdateLanguageInput!) { userUpdateLanguage(input: $i) { errors { code path } user { language } } }";
    let (_, v) = api
        .gql(a, set, json!({ "i": { "language": "pt-BR" } }))
        .await;
    assert_eq!(
        v["data"]["userUpdateLanguage"]["user"]["language"], "pt-BR",
        "{v}"
    );
    let (_, v) = api
        .gql(a, set, json!({ "i": { "language": "x'; DROP" } }))
        .await;
    assert_eq!(
        v["data"]["userUpdateLanguage"]["errors"][0]["code"],
        "INVALID_INPUT"
    );
    let (_, v) = api.gql(a, "query { me { language } }", json!({})).await;
    assert_eq!(v["data"]["me"]["language"], "pt-BR");
    // Without on-chain configured, the address operations say so.
    let (_, v) = api
        .gql(
            a,
            CREATE,
            json!({ "i": { "walletId": alice.wallet.to_string() } }),
        )
        .await;
    assert_eq!(
        v["data"]["onChainAddressCreate"]["errors"][0]["code"],
        "ONCHAIN_UNAVAILABLE"
    );
    // Blink's account and history documents with externalId and UsdWallet validate.
    let doc = "query { me { defaultAccount { wallets { id walletCurrency \
        ... on UsdWallet { balance } \
        transactions(first: 5) { edges { node { id externalId } } } } } } }";
    let (_, v) = api.gql(a, doc, json!({})).await;
    assert!(v.get("errors").is_none(), "{v}");
}

mod ws {
    use std::time::Duration;

    use async_graphql::futures_util::{SinkExt, StreamExt};
    use serde_json::{Value, json};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    pub type Ws = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    pub async fn serve(router: axum::Router) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .await
            .unwrap();
        });
        addr
    }

    async fn next_json(ws: &mut Ws) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .ok()??;
            match msg.ok()? {
                Message::Text(t) => return Some(serde_json::from_str(t.as_str()).unwrap()),
                Message::Close(_) => return None,
                _ => continue,
            }
        }
    }

    pub async fn subscribe(addr: std::net::SocketAddr, token: &str, query: &str) -> Ws {
        let mut req = format!("ws://{addr}/graphql/ws")
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        let auth = json!({"Authorization": format!("Bearer {token}")});
        ws.send(Message::text(
            json!({"type": "connection_init", "payload": auth}).to_string(),
        ))
        .await
        .unwrap();
        let ack = next_json(&mut ws).await.unwrap();
        assert_eq!(ack["type"], "connection_ack", "{ack}");
        ws.send(Message::text(
            json!({"id": "1", "type": "subscribe", "payload": {"query": query}}).to_string(),
        ))
        .await
        .unwrap();
        ws
    }

    pub async fn next_update(ws: &mut Ws) -> Value {
        let msg = next_json(ws).await.expect("an update");
        assert_eq!(msg["type"], "next", "{msg}");
        msg["payload"]["data"]["myUpdates"]["update"].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn my_updates_shows_a_deposit_pending_then_settled_over_a_websocket() {
    let standin = StandIn::start_with(Options {
        initial_blocks: 101,
        ..Options::default()
    })
    .unwrap();
    let t = common::bank().await;
    let pool = t.bank.ledger().pool().clone();
    let (wallets, hot) = wallets_common::hot_wallet(&pool).await;
    let state = AppState::new(t.bank.clone(), ApiConfig::default()).with_onchain(OnchainConfig {
        wallets: wallets.clone(),
        hot_wallet: hot.id,
    });
    let addr = ws::serve(coordinator::api::router_with_state(state)).await;
    let alice = customer(&t.bank, "alice@example.com", 0).await;
    let to = wallets
        .current_address(hot.id, alice.account)
        .await
        .unwrap()
        .address;
    let query = "subscription { myUpdates { errors { message } update { __typename \
        ... on OnChainUpdate { txNotificationType amount txHash walletId \
          transaction { status settlementAmount \
            settlementVia { ... on SettlementViaOnChain { transactionHash vout } } } } } } }";
    let mut sub = ws::subscribe(addr, &alice.token, query).await;
    // Let the subscription reach the feed before the deposit is made.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let chain: Arc<dyn ChainSource> =
        Arc::new(EsploraSource::new(standin.esplora_url(), CallPolicy::default()).unwrap());
    let driver = DepositDriver::new(
        t.bank.ledger().clone(),
        chain,
        Arc::new(AddressBookIndex::new(wallets.clone())),
        DepositConfig {
            confirmations: 1,
            poll_interval: std::time::Duration::from_millis(50),
            ..DepositConfig::default()
        },
    )
    .spawn();
    let funded = standin
        .control()
        .fund(&to, Amount::from_sat(33_000))
        .await
        .unwrap();
    let u = ws::next_update(&mut sub).await;
    assert_eq!(u["__typename"], "OnChainUpdate", "{u}");
    assert_eq!(u["txNotificationType"], "OnchainReceiptPending");
    assert_eq!(u["amount"], 33_000);
    assert_eq!(u["txHash"], funded.txid.to_string());
    assert_eq!(u["walletId"], alice.wallet.to_string());
    assert_eq!(u["transaction"]["status"], "PENDING");

    standin.control().mine(1).await.unwrap();
    let u = ws::next_update(&mut sub).await;
    assert_eq!(u["txNotificationType"], "OnchainReceipt", "{u}");
    assert_eq!(u["transaction"]["status"], "SUCCESS");
    assert_eq!(
        u["transaction"]["settlementVia"]["transactionHash"],
        funded.txid.to_string()
    );
    driver.stop().await;
}
