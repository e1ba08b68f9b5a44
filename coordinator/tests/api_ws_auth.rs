//! Attacks on WebSocket credentials and limits, over real sockets on 127.0.0.1: a socket
//! must not outlive its credential (revoked through the API, by hand in SQL on another
//! instance, logged out, expired), and must stay within its connection and operation
//! limits.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;

use std::time::Duration;

use api_common::{Api, Cred, SEND, api, balance, customer, send_input};
use async_graphql::futures_util::{SinkExt, StreamExt};
use coordinator::api::{ApiConfig, CLOSE_CREDENTIAL_REVOKED, CLOSE_TOO_MANY_CONNECTIONS, WsConfig};
use coordinator::bank::{Bank, BankConfig, Scope};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the server did next: a protocol message, or a close with its code.
#[derive(Debug)]
enum Next {
    Json(Value),
    Closed(Option<u16>),
    Silent,
}

async fn next(ws: &mut Ws, wait: Duration) -> Next {
    loop {
        let Ok(msg) = tokio::time::timeout(wait, ws.next()).await else {
            return Next::Silent;
        };
        match msg {
            Some(Ok(Message::Text(t))) => return Next::Json(serde_json::from_str(&t).unwrap()),
            Some(Ok(Message::Close(frame))) => {
                return Next::Closed(frame.map(|f| u16::from(f.code)));
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Next::Closed(None),
        }
    }
}

async fn serve(router: axum::Router) -> std::net::SocketAddr {
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

/// A connection initialised with `auth`; asserts the acknowledgement.
async fn open(addr: std::net::SocketAddr, auth: Value) -> Ws {
    let mut ws = try_open(addr, auth).await;
    match next(&mut ws, Duration::from_secs(10)).await {
        Next::Json(v) if v["type"] == "connection_ack" => ws,
        other => panic!("not acknowledged: {other:?}"),
    }
}

async fn try_open(addr: std::net::SocketAddr, auth: Value) -> Ws {
    let mut req = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::text(
        json!({"type": "connection_init", "payload": auth}).to_string(),
    ))
    .await
    .unwrap();
    ws
}

async fn start(ws: &mut Ws, id: &str, query: &str, variables: Value) {
    ws.send(Message::text(
        json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}})
            .to_string(),
    ))
    .await
    .unwrap();
}

const ME: &str = "query { me { id } }";
const MY_UPDATES: &str = "subscription { myUpdates { update { __typename } } }";
const KEY_CREATE: &str = "mutation { apiKeyCreate(input: {name: \"minted\"}) { apiKey { id } } }";

fn bearer(token: &str) -> Value {
    json!({"Authorization": format!("Bearer {token}")})
}

fn key(k: &str) -> Value {
    json!({"X-API-KEY": k})
}

/// Asserts that the server closes with 4403 and sends no result first.
async fn assert_closed_for_credential(ws: &mut Ws) {
    loop {
        match next(ws, Duration::from_secs(10)).await {
            Next::Closed(code) => {
                assert_eq!(code, Some(CLOSE_CREDENTIAL_REVOKED));
                return;
            }
            // A subscription may complete as the socket goes; nothing else may arrive.
            Next::Json(v) if v["type"] == "complete" => continue,
            other => panic!("expected the socket to close with 4403, got {other:?}"),
        }
    }
}

async fn me_works(ws: &mut Ws, id: &str) {
    start(ws, id, ME, json!({})).await;
    match next(ws, Duration::from_secs(10)).await {
        Next::Json(v) if v["type"] == "next" => {
            assert!(v["payload"]["data"]["me"]["id"].is_string(), "{v}")
        }
        other => panic!("{other:?}"),
    }
    match next(ws, Duration::from_secs(10)).await {
        Next::Json(v) => assert_eq!(v["type"], "complete", "{v}"),
        other => panic!("{other:?}"),
    }
}

async fn api_with_configs(bank_config: BankConfig, api_config: ApiConfig) -> Api {
    let t = common::bank_with(bank_config).await;
    let router = coordinator::api::router(t.bank.clone(), api_config);
    Api { router, t }
}

#[tokio::test]
async fn a_key_revoked_through_the_api_closes_its_socket_and_ends_its_subscription() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 1_000).await;
    let k = api_common::api_key(a.bank(), &alice, &[Scope::Read, Scope::Write]).await;
    let addr = serve(a.router.clone()).await;
    let mut ws = open(addr, key(&k)).await;
    me_works(&mut ws, "q1").await;
    start(&mut ws, "updates", MY_UPDATES, json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let keys = a.bank().api_keys(&alice.principal).await.unwrap();
    let (_, v) = a
        .gql(
            Cred::Bearer(&alice.token),
            "mutation($id: ID!) { apiKeyRevoke(input: {id: $id}) { apiKey { revoked } } }",
            json!({"id": keys[0].id.to_string()}),
        )
        .await;
    assert_eq!(v["data"]["apiKeyRevoke"]["apiKey"]["revoked"], true, "{v}");
    // Without another message from the client: the revocation itself closes it.
    assert_closed_for_credential(&mut ws).await;
}

#[tokio::test]
async fn a_key_revoked_by_hand_in_sql_closes_its_socket_on_another_instance() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 1_000).await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    let k = api_common::api_key(a.bank(), &alice, &[Scope::Read, Scope::Write]).await;
    // A second instance: its own bank, so its own authentication cache and listener.
    let other = Bank::new(
        a.bank().ledger().clone(),
        std::sync::Arc::new(coordinator::bank::OutboxNotifier::new(
            a.bank().ledger().pool().clone(),
        )),
        BankConfig::default(),
    );
    let addr = serve(coordinator::api::router(
        other.clone(),
        ApiConfig::default(),
    ))
    .await;
    let mut ws = open(addr, key(&k)).await;
    me_works(&mut ws, "q1").await;
    start(&mut ws, "updates", MY_UPDATES, json!({})).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    sqlx::query("UPDATE api_keys SET revoked_at = now()")
        .execute(a.bank().ledger().pool())
        .await
        .unwrap();
    assert_closed_for_credential(&mut ws).await;

    // And a send on a new socket with the dead key is refused before it runs.
    let mut ws = try_open(addr, key(&k)).await;
    start(
        &mut ws,
        "send",
        SEND,
        send_input(alice.wallet, bob.wallet, 10),
    )
    .await;
    assert!(matches!(
        next(&mut ws, Duration::from_secs(10)).await,
        Next::Closed(Some(CLOSE_CREDENTIAL_REVOKED))
    ));
    assert_eq!(balance(a.bank(), bob.wallet).await, 0);
}

/// With no announcement to rely on (the cache is off and the periodic check is an hour
/// away), the check before each operation is what refuses it.
#[tokio::test]
async fn every_operation_on_a_socket_checks_its_credential_again() {
    let a = api_with_configs(
        BankConfig {
            auth_cache_ttl: Duration::ZERO,
            ..BankConfig::default()
        },
        ApiConfig {
            ws: WsConfig {
                recheck_interval: Duration::from_secs(3600),
                ..WsConfig::default()
            },
            ..ApiConfig::default()
        },
    )
    .await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    let addr = serve(a.router.clone()).await;
    for (i, (name, query, variables)) in [
        ("query", ME, json!({})),
        ("subscription", MY_UPDATES, json!({})),
        ("apiKeyCreate", KEY_CREATE, json!({})),
        ("send", SEND, Value::Null),
    ]
    .into_iter()
    .enumerate()
    {
        let alice = customer(a.bank(), &format!("alice{i}@example.com"), 1_000).await;
        let variables = if variables.is_null() {
            send_input(alice.wallet, bob.wallet, 25)
        } else {
            variables
        };
        let mut ws = open(addr, bearer(&alice.token)).await;
        me_works(&mut ws, "before").await;
        let (status, _) = a
            .gql(
                Cred::Bearer(&alice.token),
                "mutation { userLogout { success } }",
                json!({}),
            )
            .await;
        assert!(status.is_success());
        assert!(a.bank().authenticate(&alice.token).await.is_err());

        start(&mut ws, "after", query, variables).await;
        match next(&mut ws, Duration::from_secs(10)).await {
            Next::Closed(code) => assert_eq!(code, Some(CLOSE_CREDENTIAL_REVOKED), "{name}"),
            other => panic!("{name} after logout: {other:?}"),
        }
        assert_eq!(
            a.bank().api_keys(&alice.principal).await.unwrap().len(),
            0,
            "{name}"
        );
        assert_eq!(balance(a.bank(), alice.wallet).await, 1_000, "{name}");
    }
    assert_eq!(balance(a.bank(), bob.wallet).await, 0);
}

#[tokio::test]
async fn a_session_expiring_mid_socket_closes_it() {
    let a = api_with_configs(
        BankConfig {
            session_ttl: Duration::from_secs(3),
            ..BankConfig::default()
        },
        ApiConfig {
            ws: WsConfig {
                recheck_interval: Duration::from_secs(3600),
                ..WsConfig::default()
            },
            ..ApiConfig::default()
        },
    )
    .await;
    let alice = customer(a.bank(), "alice@example.com", 0).await;
    let addr = serve(a.router.clone()).await;
    let mut ws = open(addr, bearer(&alice.token)).await;
    me_works(&mut ws, "q1").await;
    start(&mut ws, "updates", MY_UPDATES, json!({})).await;
    let opened = std::time::Instant::now();
    assert_closed_for_credential(&mut ws).await;
    // Closed at the expiry (3 s after login), not by the hourly check.
    assert!(
        opened.elapsed() < Duration::from_secs(10),
        "{:?}",
        opened.elapsed()
    );
}

#[tokio::test]
async fn websocket_limits_refuse_connections_and_operations_over_them() {
    let a = api_with_configs(
        BankConfig::default(),
        ApiConfig {
            ws: WsConfig {
                max_connections: 3,
                max_connections_per_credential: 2,
                max_operations_per_connection: 2,
                ..WsConfig::default()
            },
            ..ApiConfig::default()
        },
    )
    .await;
    let alice = customer(a.bank(), "alice@example.com", 0).await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    let addr = serve(a.router.clone()).await;

    // Per credential: the third connection with Alice's session is closed at init.
    let mut first = open(addr, bearer(&alice.token)).await;
    let _second = open(addr, bearer(&alice.token)).await;
    let mut third = try_open(addr, bearer(&alice.token)).await;
    assert!(matches!(
        next(&mut third, Duration::from_secs(10)).await,
        Next::Closed(Some(CLOSE_TOO_MANY_CONNECTIONS))
    ));
    // Its place is given back when it closes: Bob still gets the instance's last one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _bob = open(addr, bearer(&bob.token)).await;
    // In total: a fourth connection is refused at the upgrade.
    let mut req = format!("ws://{addr}/graphql/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            assert_eq!(res.status(), 503);
        }
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }

    // Per connection: two subscriptions run, the third is refused, the first two go on.
    start(&mut first, "s1", MY_UPDATES, json!({})).await;
    start(&mut first, "s2", MY_UPDATES, json!({})).await;
    start(&mut first, "s3", MY_UPDATES, json!({})).await;
    match next(&mut first, Duration::from_secs(10)).await {
        Next::Json(v) => {
            assert_eq!(v["type"], "error", "{v}");
            assert_eq!(v["id"], "s3");
            assert_eq!(v["payload"][0]["extensions"]["code"], "TOO_MANY_OPERATIONS");
        }
        other => panic!("{other:?}"),
    }
    // Ending one makes room again.
    first
        .send(Message::text(
            json!({"id": "s1", "type": "complete"}).to_string(),
        ))
        .await
        .unwrap();
    match next(&mut first, Duration::from_secs(10)).await {
        Next::Json(v) => assert_eq!((&v["type"], &v["id"]), (&json!("complete"), &json!("s1"))),
        other => panic!("{other:?}"),
    }
    me_works(&mut first, "q").await;
}

#[tokio::test]
async fn a_dead_credential_at_connection_init_is_closed_with_4403() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 0).await;
    a.bank().logout(&alice.token).await.unwrap();
    let addr = serve(a.router.clone()).await;
    for auth in [
        bearer(&alice.token),
        key("key_forged"),
        bearer("sess_forged"),
    ] {
        let mut ws = try_open(addr, auth.clone()).await;
        match next(&mut ws, Duration::from_secs(10)).await {
            Next::Closed(code) => assert_eq!(code, Some(CLOSE_CREDENTIAL_REVOKED), "{auth}"),
            other => panic!("{auth}: {other:?}"),
        }
    }
}
