//! The public GraphQL API through the real router: Blink client documents, payments and
//! their idempotent replay, the authorization matrix, validation, account status,
//! limits and pagination (sign-up and login: `api_graphql_auth.rs`).

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;

use api_common::{
    Cred, ME, SEND, api, api_key, api_with, balance, customer, error_code, ok, send_error,
    send_input, send_status,
};
use axum::http::StatusCode;
use coordinator::bank::{AccountStatus, Actor, Scope};
use serde_json::{Value, json};

const WALLET_TRANSACTIONS: &str =
    "query walletTransactions($walletId: WalletId!, $first: Int, $after: String) {
  me {
    defaultAccount {
      walletById(walletId: $walletId) {
        __typename
        ... on BTCWallet {
          id
          walletCurrency
          balance
          transactions(first: $first, after: $after) {
            ...TransactionList
          }
        }
      }
    }
  }
}

fragment TransactionList on TransactionConnection {
  pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
  edges {
    cursor
    node {
      __typename
      id
      status
      direction
      memo
      createdAt
      settlementAmount
      settlementFee
      settlementCurrency
      settlementDisplayAmount
      settlementDisplayFee
      settlementDisplayCurrency
      settlementPrice { base offset currencyUnit formattedAmount }
      initiationVia {
        __typename
        ... on InitiationViaIntraLedger { counterPartyWalletId counterPartyUsername }
        ... on InitiationViaLn { paymentHash paymentRequest }
        ... on InitiationViaOnChain { address }
      }
      settlementVia {
        __typename
        ... on SettlementViaIntraLedger { counterPartyWalletId counterPartyUsername preImage }
        ... on SettlementViaLn { preImage }
        ... on SettlementViaOnChain { transactionHash vout arrivalInMempoolEstimatedAt }
      }
    }
  }
}";

const ACCOUNT_TRANSACTIONS: &str = "query transactions($first: Int, $after: String) {
  me {
    defaultAccount {
      transactions(first: $first, after: $after) {
        pageInfo { hasNextPage endCursor }
        edges { cursor node { id direction settlementAmount memo } }
      }
    }
  }
}";

const USER_DETAILS: &str =
    "query userDetails($username: Username!, $walletId: WalletId!, $txId: ID!) {
  usernameAvailable(username: $username)
  me {
    id
    email { address verified }
    phone
    createdAt
    totpEnabled
    defaultAccount {
      defaultWalletId
      defaultWallet { id currency }
      displayCurrency
      walletById(walletId: $walletId) {
        transactionById(transactionId: $txId) { id direction settlementAmount }
      }
    }
  }
}";

const LIMITS: &str = "query accountLimits {
  me {
    defaultAccount {
      limits {
        withdrawal { totalLimit remainingLimit interval }
        internalSend { totalLimit remainingLimit interval }
        convert { totalLimit remainingLimit interval }
      }
    }
  }
}";

const USERNAME: &str = "mutation userUpdateUsername($input: UserUpdateUsernameInput!) {
  userUpdateUsername(input: $input) {
    errors { code message }
    user { id username }
  }
}";

const DEFAULT_WALLET: &str =
    "query accountDefaultWallet($username: Username!, $walletCurrency: WalletCurrency) {
  accountDefaultWallet(username: $username, walletCurrency: $walletCurrency) {
    id
    walletCurrency
  }
}";

const API_KEYS: &str = "mutation ApiKeyCreate($input: ApiKeyCreateInput!) {
  apiKeyCreate(input: $input) {
    apiKey { id name createdAt revoked expired expiresAt readOnly scopes }
    apiKeySecret
  }
}";

const LIST_KEYS: &str =
    "query ApiKeys { me { apiKeys { id name revoked expired readOnly scopes lastUsedAt } } }";

const REVOKE_KEY: &str = "mutation ApiKeyRevoke($input: ApiKeyRevokeInput!) {
  apiKeyRevoke(input: $input) { apiKey { id revoked } }
}";

/// Operation documents written the way Blink's clients write them validate against our
/// schema and run with real results.
#[tokio::test]
async fn blink_documents_validate_and_run() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 50_000).await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    let auth = Cred::Bearer(&alice.token);

    let (s, v) = a.gql(auth, ME, json!({})).await;
    ok(s, &v);
    let me = &v["data"]["me"];
    assert_eq!(me["defaultAccount"]["id"], alice.account.to_string());
    assert_eq!(me["defaultAccount"]["level"], "ZERO");
    let w = &me["defaultAccount"]["wallets"][0];
    assert_eq!(w["id"], alice.wallet.to_string());
    assert_eq!(w["walletCurrency"], "BTC");
    assert_eq!(w["balance"], 50_000);
    assert_eq!(w["pendingIncomingBalance"], 0);

    let (s, v) = a
        .gql(
            Cred::Bearer(&bob.token),
            USERNAME,
            json!({"input": {"username": "Bob"}}),
        )
        .await;
    ok(s, &v);
    assert_eq!(v["data"]["userUpdateUsername"]["user"]["username"], "bob");
    assert_eq!(v["data"]["userUpdateUsername"]["errors"], json!([]));

    let (s, v) = a
        .gql(
            Cred::None,
            DEFAULT_WALLET,
            json!({"username": "bob", "walletCurrency": "BTC"}),
        )
        .await;
    ok(s, &v);
    assert_eq!(
        v["data"]["accountDefaultWallet"]["id"],
        bob.wallet.to_string()
    );

    let (s, v) = a
        .send_via_graphql(auth, alice.wallet, bob.wallet, 1_200)
        .await;
    ok(s, &v);
    assert_eq!(send_status(&v), Some("SUCCESS"));
    assert_eq!(v["data"]["intraLedgerPaymentSend"]["errors"], json!([]));

    let (s, v) = a
        .gql(
            auth,
            WALLET_TRANSACTIONS,
            json!({"walletId": alice.wallet.to_string(), "first": 10}),
        )
        .await;
    ok(s, &v);
    let wallet = &v["data"]["me"]["defaultAccount"]["walletById"];
    assert_eq!(wallet["__typename"], "BTCWallet");
    assert_eq!(wallet["balance"], 48_800);
    let edges = wallet["transactions"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2, "the deposit and the payment");
    let sent = &edges[0]["node"];
    assert_eq!(sent["direction"], "SEND");
    assert_eq!(sent["status"], "SUCCESS");
    assert_eq!(sent["memo"], "lunch");
    assert_eq!(sent["settlementAmount"], -1_200);
    assert_eq!(sent["settlementFee"], 0);
    assert_eq!(sent["settlementCurrency"], "BTC");
    assert_eq!(sent["settlementDisplayAmount"], "-0.00001200");
    assert_eq!(sent["settlementDisplayCurrency"], "BTC");
    assert_eq!(sent["settlementPrice"]["base"], 1);
    assert_eq!(
        sent["initiationVia"]["__typename"],
        "InitiationViaIntraLedger"
    );
    assert_eq!(
        sent["initiationVia"]["counterPartyWalletId"],
        bob.wallet.to_string()
    );
    assert_eq!(
        sent["settlementVia"]["__typename"],
        "SettlementViaIntraLedger"
    );
    assert_eq!(sent["settlementVia"]["counterPartyUsername"], "bob");
    assert!(
        sent["createdAt"].as_i64().unwrap() > 1_700_000_000,
        "unix seconds"
    );

    let tx_id = sent["id"].as_str().unwrap().to_owned();
    let (s, v) = a
        .gql(
            auth,
            USER_DETAILS,
            json!({"username": "bob", "walletId": alice.wallet.to_string(), "txId": tx_id}),
        )
        .await;
    ok(s, &v);
    assert_eq!(v["data"]["usernameAvailable"], false);
    let me = &v["data"]["me"];
    assert_eq!(me["email"]["address"], "alice@example.com");
    assert_eq!(me["email"]["verified"], true);
    assert!(me["phone"].is_null());
    assert_eq!(me["totpEnabled"], false);
    assert_eq!(me["defaultAccount"]["displayCurrency"], "BTC");
    assert_eq!(me["defaultAccount"]["defaultWallet"]["currency"], "BTC");
    let t = &me["defaultAccount"]["walletById"]["transactionById"];
    assert_eq!(t["id"], tx_id.as_str());
    assert_eq!(t["settlementAmount"], -1_200);
    let (_, v) = a
        .gql(
            Cred::None,
            "query { usernameAvailable(username: \"nobody_yet\") }",
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["usernameAvailable"], true);
    // Alice's wallet (and so her transaction) is not found by Bob.
    let (_, v) = a
        .gql(
            Cred::Bearer(&bob.token),
            USER_DETAILS,
            json!({"username": "bob", "walletId": alice.wallet.to_string(), "txId": tx_id}),
        )
        .await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_FOUND"), "{v}");

    let (s, v) = a
        .gql(
            Cred::Bearer(&bob.token),
            ACCOUNT_TRANSACTIONS,
            json!({"first": 5}),
        )
        .await;
    ok(s, &v);
    let node = &v["data"]["me"]["defaultAccount"]["transactions"]["edges"][0]["node"];
    assert_eq!(node["direction"], "RECEIVE");
    assert_eq!(node["settlementAmount"], 1_200);

    let (s, v) = a.gql(auth, LIMITS, json!({})).await;
    ok(s, &v);
    let l = &v["data"]["me"]["defaultAccount"]["limits"];
    assert_eq!(l["internalSend"][0]["totalLimit"], 100_000);
    assert_eq!(l["internalSend"][0]["remainingLimit"], 98_800);
    assert_eq!(l["internalSend"][0]["interval"], 86_400);
    assert_eq!(l["withdrawal"][0]["totalLimit"], 0);
    assert_eq!(l["convert"], json!([]));

    let (s, v) = a
        .gql(
            auth,
            API_KEYS,
            json!({"input": {"name": "pos", "scopes": ["READ"], "expireInDays": 30}}),
        )
        .await;
    ok(s, &v);
    let created = &v["data"]["apiKeyCreate"];
    assert_eq!(created["apiKey"]["readOnly"], true);
    assert_eq!(created["apiKey"]["scopes"], json!(["READ"]));
    let key = created["apiKeySecret"].as_str().unwrap().to_owned();
    let key_id = created["apiKey"]["id"].as_str().unwrap().to_owned();
    // The key works with Blink's header.
    let (s, v) = a.gql(Cred::Key(&key), ME, json!({})).await;
    ok(s, &v);
    let (s, v) = a.gql(auth, LIST_KEYS, json!({})).await;
    ok(s, &v);
    assert_eq!(v["data"]["me"]["apiKeys"][0]["name"], "pos");
    // Its use above was recorded.
    assert!(v["data"]["me"]["apiKeys"][0]["lastUsedAt"].is_u64(), "{v}");
    // Default scopes are Blink's [READ, WRITE].
    let (s, v) = a
        .gql(auth, API_KEYS, json!({"input": {"name": "bot"}}))
        .await;
    ok(s, &v);
    let mut scopes: Vec<String> =
        serde_json::from_value(v["data"]["apiKeyCreate"]["apiKey"]["scopes"].clone()).unwrap();
    scopes.sort();
    assert_eq!(scopes, ["READ", "WRITE"]);
    let (s, v) = a
        .gql(auth, REVOKE_KEY, json!({"input": {"id": key_id}}))
        .await;
    ok(s, &v);
    assert_eq!(v["data"]["apiKeyRevoke"]["apiKey"]["revoked"], true);
    let (s, v) = a.gql(Cred::Key(&key), ME, json!({})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a revoked key is refused: {v}");

    let (s, v) = a
        .gql(auth, "query { authorization { scopes } }", json!({}))
        .await;
    ok(s, &v);
    assert_eq!(
        v["data"]["authorization"]["scopes"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn payment_replay_with_the_same_key_is_already_paid_and_moves_nothing() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 10_000).await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    let auth = Cred::Bearer(&alice.token);
    let input = send_input(alice.wallet, bob.wallet, 1_000);

    // The HTTP header.
    let (_, v) = a.send_via_graphql_keyed(auth, "pay-1", input.clone()).await;
    assert_eq!(send_status(&v), Some("SUCCESS"), "{v}");
    let (_, v) = a.send_via_graphql_keyed(auth, "pay-1", input.clone()).await;
    assert_eq!(send_status(&v), Some("ALREADY_PAID"), "{v}");
    assert_eq!(balance(a.bank(), alice.wallet).await, 9_000);
    assert_eq!(balance(a.bank(), bob.wallet).await, 1_000);

    // The sender's side of the transaction comes back when selected.
    let with_tx = "mutation s($input: IntraLedgerPaymentSendInput!) {
      intraLedgerPaymentSend(input: $input) { status transaction { direction settlementAmount memo } }
    }";
    let (_, v) = a
        .gql_headers(
            "/graphql",
            auth,
            &[("idempotency-key", "pay-1")],
            with_tx,
            input.clone(),
        )
        .await;
    let r = &v["data"]["intraLedgerPaymentSend"];
    assert_eq!(r["status"], "ALREADY_PAID", "{v}");
    assert_eq!(r["transaction"]["settlementAmount"], -1_000, "{v}");
    assert_eq!(r["transaction"]["memo"], "lunch");

    // Our input extension field.
    let mut with_field = input.clone();
    with_field["input"]["idempotencyKey"] = json!("pay-2");
    let (_, v) = a.gql(auth, SEND, with_field.clone()).await;
    assert_eq!(send_status(&v), Some("SUCCESS"), "{v}");
    let (_, v) = a.gql(auth, SEND, with_field.clone()).await;
    assert_eq!(send_status(&v), Some("ALREADY_PAID"), "{v}");
    assert_eq!(balance(a.bank(), alice.wallet).await, 8_000);

    // The same key for another payment is refused and moves nothing.
    let (_, v) = a
        .send_via_graphql_keyed(auth, "pay-1", send_input(alice.wallet, bob.wallet, 5))
        .await;
    assert_eq!(send_status(&v), Some("FAILURE"), "{v}");
    assert_eq!(send_error(&v), Some("IDEMPOTENCY_CONFLICT"), "{v}");
    // Header and field disagreeing is refused.
    let (_, v) = a.send_via_graphql_keyed(auth, "other", with_field).await;
    assert_eq!(send_error(&v), Some("INVALID_INPUT"));
    assert_eq!(balance(a.bank(), alice.wallet).await, 8_000);
    assert_eq!(balance(a.bank(), bob.wallet).await, 2_000);
}

#[tokio::test]
async fn a_user_cannot_read_or_move_another_users_money() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 10_000).await;
    let mallory = customer(a.bank(), "mallory@example.com", 0).await;
    let m = Cred::Bearer(&mallory.token);

    let (_, v) = a
        .send_via_graphql(m, alice.wallet, mallory.wallet, 5_000)
        .await;
    assert_eq!(send_status(&v), Some("FAILURE"), "{v}");
    assert_eq!(send_error(&v), Some("NOT_FOUND"), "{v}");

    let (_, v) = a
        .gql(
            m,
            WALLET_TRANSACTIONS,
            json!({"walletId": alice.wallet.to_string()}),
        )
        .await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_FOUND"), "{v}");
    assert!(v["data"]["me"].is_null() || v["data"]["me"]["defaultAccount"]["walletById"].is_null());

    let (_, v) = a
        .gql(
            m,
            ACCOUNT_TRANSACTIONS
                .replace(
                    "transactions(first: $first, after: $after)",
                    "transactions(first: $first, after: $after, walletIds: [$w])",
                )
                .replace(
                    "query transactions($first: Int, $after: String)",
                    "query transactions($first: Int, $after: String, $w: WalletId)",
                )
                .as_str(),
            json!({"w": alice.wallet.to_string()}),
        )
        .await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_FOUND"), "{v}");

    // Her key cannot be used as a bearer token, nor a made-up one.
    let (s, _) = a.gql(Cred::Bearer("sess_forged"), ME, json!({})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(balance(a.bank(), alice.wallet).await, 10_000);
    assert_eq!(balance(a.bank(), mallory.wallet).await, 0);
}

#[tokio::test]
async fn each_api_key_scope_allows_only_its_operations() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 10_000).await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    let read = api_key(a.bank(), &alice, &[Scope::Read]).await;
    let write = api_key(a.bank(), &alice, &[Scope::Write]).await;
    let receive = api_key(a.bank(), &alice, &[Scope::Receive]).await;
    let all = api_key(a.bank(), &alice, &[Scope::Read, Scope::Write]).await;

    // read: reads, cannot send or change settings or make keys.
    let (s, v) = a.gql(Cred::Key(&read), ME, json!({})).await;
    ok(s, &v);
    let (_, v) = a
        .send_via_graphql(Cred::Key(&read), alice.wallet, bob.wallet, 100)
        .await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHORIZED"), "{v}");
    let (_, v) = a
        .gql(
            Cred::Key(&read),
            USERNAME,
            json!({"input": {"username": "alice"}}),
        )
        .await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHORIZED"), "{v}");

    // write: sends, cannot read.
    let (_, v) = a.gql(Cred::Key(&write), ME, json!({})).await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHORIZED"), "{v}");
    let (_, v) = a.gql(Cred::Key(&write), LIMITS, json!({})).await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHORIZED"), "{v}");
    let (_, v) = a
        .send_via_graphql(Cred::Key(&write), alice.wallet, bob.wallet, 100)
        .await;
    assert_eq!(send_status(&v), Some("SUCCESS"), "{v}");

    // receive: neither reads nor sends.
    let (_, v) = a.gql(Cred::Key(&receive), ME, json!({})).await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHORIZED"), "{v}");
    let (_, v) = a
        .send_via_graphql(Cred::Key(&receive), alice.wallet, bob.wallet, 100)
        .await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHORIZED"), "{v}");
    let (_, v) = a
        .gql(
            Cred::Key(&receive),
            "query { authorization { scopes } }",
            json!({}),
        )
        .await;
    assert_eq!(v["data"]["authorization"]["scopes"], json!(["RECEIVE"]));

    // No key, whatever its scopes, can make or revoke keys: only a login session.
    let (_, v) = a
        .gql(
            Cred::Key(&all),
            API_KEYS,
            json!({"input": {"name": "more"}}),
        )
        .await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHORIZED"), "{v}");

    // A key in the Bearer header is refused, as is a session in X-API-KEY.
    let (s, _) = a.gql(Cred::Bearer(&read), ME, json!({})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = a.gql(Cred::Key(&alice.token), ME, json!({})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(balance(a.bank(), alice.wallet).await, 9_900);
}

#[tokio::test]
async fn unauthenticated_requests_are_refused() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 10_000).await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    for doc in [ME, LIMITS, LIST_KEYS] {
        let (_, v) = a.gql(Cred::None, doc, json!({})).await;
        assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHENTICATED"), "{v}");
    }
    let (_, v) = a
        .send_via_graphql(Cred::None, alice.wallet, bob.wallet, 100)
        .await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHENTICATED"), "{v}");
    let (s, v) = a.gql(Cred::Key("key_unknown"), ME, json!({})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHENTICATED"));
    assert_eq!(balance(a.bank(), alice.wallet).await, 10_000);
}

#[tokio::test]
async fn bad_payments_get_specific_errors_and_change_nothing() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 10_000).await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    let auth = Cred::Bearer(&alice.token);

    let cases: Vec<(Value, &str)> = vec![
        (send_input(alice.wallet, bob.wallet, 0), "INVALID_AMOUNT"),
        (
            send_input(alice.wallet, bob.wallet, 10_001),
            "INSUFFICIENT_BALANCE",
        ),
        (send_input(alice.wallet, alice.wallet, 10), "SELF_PAYMENT"),
        (
            send_input(alice.wallet, coordinator::WalletId::new(), 10),
            "NOT_FOUND",
        ),
        (
            json!({"input": {"walletId": "not-a-uuid", "recipientWalletId": bob.wallet.to_string(), "amount": 10}}),
            "INVALID_INPUT",
        ),
        (
            json!({"input": {"walletId": alice.wallet.to_string(), "recipientWalletId": bob.wallet.to_string(), "amount": 10, "memo": "x".repeat(1001)}}),
            "INVALID_INPUT",
        ),
    ];
    for (input, code) in cases {
        let (_, v) = a.gql(auth, SEND, input).await;
        assert_eq!(send_status(&v), Some("FAILURE"), "{v}");
        assert_eq!(send_error(&v), Some(code), "{v}");
    }
    let (_, v) = a
        .gql(auth, SEND, json!({"input": {"walletId": "x", "recipientWalletId": bob.wallet.to_string(), "amount": 10}}))
        .await;
    assert_eq!(
        v["data"]["intraLedgerPaymentSend"]["errors"][0]["path"],
        json!(["input", "walletId"])
    );
    // Amounts are integers: a float or a negative number does not even reach the domain.
    for amount in [json!(1.5), json!(-3), json!("10")] {
        let (_, v) = a
            .gql(auth, SEND, json!({"input": {"walletId": alice.wallet.to_string(), "recipientWalletId": bob.wallet.to_string(), "amount": amount}}))
            .await;
        assert!(v["errors"].is_array(), "{v}");
        assert!(v["data"].is_null(), "{v}");
    }
    // Over the level-0 limit of 100,000 sats a day.
    let rich = customer(a.bank(), "rich@example.com", 200_000).await;
    let (_, v) = a
        .send_via_graphql(Cred::Bearer(&rich.token), rich.wallet, bob.wallet, 100_001)
        .await;
    assert_eq!(send_error(&v), Some("LIMIT_EXCEEDED"), "{v}");

    assert_eq!(balance(a.bank(), alice.wallet).await, 10_000);
    assert_eq!(balance(a.bank(), bob.wallet).await, 0);
    assert_eq!(balance(a.bank(), rich.wallet).await, 200_000);
    let (_, v) = a
        .gql(Cred::Bearer(&bob.token), ACCOUNT_TRANSACTIONS, json!({}))
        .await;
    assert_eq!(
        v["data"]["me"]["defaultAccount"]["transactions"]["edges"],
        json!([])
    );
    let report = a.bank().ledger().verify().await.unwrap();
    assert!(report.is_ok(), "{report:?}");
}

#[tokio::test]
async fn locked_and_closed_accounts_cannot_send() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 10_000).await;
    let bob = customer(a.bank(), "bob@example.com", 10_000).await;
    a.bank()
        .set_status(
            Actor::System,
            alice.account,
            AccountStatus::Locked,
            "fraud review",
        )
        .await
        .unwrap();
    let (_, v) = a
        .send_via_graphql(Cred::Bearer(&alice.token), alice.wallet, bob.wallet, 100)
        .await;
    assert_eq!(send_error(&v), Some("ACCOUNT_NOT_ACTIVE"), "{v}");
    // A locked account still receives.
    let (_, v) = a
        .send_via_graphql(Cred::Bearer(&bob.token), bob.wallet, alice.wallet, 100)
        .await;
    assert_eq!(send_status(&v), Some("SUCCESS"), "{v}");
    a.bank()
        .set_status(
            Actor::User(bob.principal.user_id),
            bob.account,
            AccountStatus::Closed,
            "leaving",
        )
        .await
        .unwrap();
    let (_, v) = a
        .send_via_graphql(Cred::Bearer(&bob.token), bob.wallet, alice.wallet, 100)
        .await;
    assert_eq!(send_error(&v), Some("ACCOUNT_NOT_ACTIVE"), "{v}");
    assert_eq!(balance(a.bank(), alice.wallet).await, 10_100);
    assert_eq!(balance(a.bank(), bob.wallet).await, 9_900);
}

#[tokio::test]
async fn transactions_paginate_with_cursors_newest_first() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 10_000).await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    let auth = Cred::Bearer(&alice.token);
    for amount in [1, 2, 3] {
        let (_, v) = a
            .send_via_graphql(auth, alice.wallet, bob.wallet, amount)
            .await;
        assert_eq!(send_status(&v), Some("SUCCESS"));
    }
    let page = |v: &Value| v["data"]["me"]["defaultAccount"]["transactions"].clone();
    let (_, v) = a
        .gql(
            Cred::Bearer(&bob.token),
            ACCOUNT_TRANSACTIONS,
            json!({"first": 2}),
        )
        .await;
    let p1 = page(&v);
    let amounts: Vec<i64> = p1["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["settlementAmount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, [3, 2]);
    assert_eq!(p1["pageInfo"]["hasNextPage"], true);
    let after = p1["pageInfo"]["endCursor"].clone();
    let (_, v) = a
        .gql(
            Cred::Bearer(&bob.token),
            ACCOUNT_TRANSACTIONS,
            json!({"first": 2, "after": after}),
        )
        .await;
    let p2 = page(&v);
    let amounts: Vec<i64> = p2["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["settlementAmount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, [1]);
    assert_eq!(p2["pageInfo"]["hasNextPage"], false);
    for vars in [
        json!({"first": 0}),
        json!({"first": 101}),
        json!({"after": "garbage"}),
    ] {
        let (_, v) = a
            .gql(Cred::Bearer(&bob.token), ACCOUNT_TRANSACTIONS, vars)
            .await;
        assert_eq!(error_code(&v).as_deref(), Some("INVALID_INPUT"), "{v}");
    }
    let (_, v) = a
        .gql(
            Cred::Bearer(&bob.token),
            "query { me { defaultAccount { transactions(last: 2) { edges { cursor } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&v).as_deref(), Some("INVALID_INPUT"), "{v}");
}

#[tokio::test]
async fn graphiql_only_in_dev_mode_and_healthz() {
    let a = api().await;
    let (s, _, _) = a.get("/graphql", Cred::None).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    let (s, _, v) = a.get("/healthz", Cred::None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, "ok");
    let dev = api_with(coordinator::api::ApiConfig {
        dev_mode: true,
        ..Default::default()
    })
    .await;
    let (s, _, v) = dev.get("/graphql", Cred::None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.as_str().unwrap().contains("graphiql"), "{v}");
}

#[tokio::test]
async fn malformed_oversized_and_non_json_requests_are_refused() {
    use axum::body::Body;
    use axum::http::Request;
    let a = api().await;
    let post = |ct: &str, body: String| {
        Request::builder()
            .method("POST")
            .uri("/graphql")
            .header("content-type", ct)
            .body(Body::from(body))
            .unwrap()
    };
    let (s, _, v) = a.call(post("application/json", "{not json".into())).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&v).as_deref(), Some("INVALID_INPUT"), "{v}");
    let (s, _, v) = a
        .call(post(
            "multipart/form-data; boundary=x",
            "--x\r\n\r\n--x--".into(),
        ))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&v).as_deref(), Some("INVALID_INPUT"), "{v}");
    let huge = json!({"query": format!("{{ __typename }} #{}", "x".repeat(100_000))}).to_string();
    let (s, _, _) = a.call(post("application/json", huge)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // Too wide a document is refused before anything runs.
    let wide = format!(
        "{{ {} }}",
        (0..1100)
            .map(|i| format!("a{i}: usernameAvailable(username: \"ab\")"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let (_, v) = a.gql(Cred::None, &wide, json!({})).await;
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("complex"),
        "{v}"
    );
}
