//! The weaker spots of the API, each tried as an attacker would: introspecting the
//! schemas in production, an expensive `first: 10000` page, an alias flood of pages, and
//! paths no route serves.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;

use api_common::{Cred, api, api_with, customer, error_code, staff_token};
use axum::http::StatusCode;
use coordinator::api::ApiConfig;
use coordinator::bank::StaffRole;
use serde_json::json;

const SCHEMA: &str = "{ __schema { queryType { name } types { name } } }";
const TYPE: &str = "{ __type(name: \"Query\") { fields { name } } }";

fn dev() -> ApiConfig {
    ApiConfig {
        dev_mode: true,
        ..ApiConfig::default()
    }
}

#[tokio::test]
async fn introspection_is_refused_in_production_without_an_admin() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 0).await;
    for doc in [SCHEMA, TYPE] {
        for cred in [Cred::None, Cred::Bearer(&alice.token)] {
            let (_, v) = a.gql(cred, doc, json!({})).await;
            assert_eq!(
                error_code(&v).as_deref(),
                Some("INTROSPECTION_DISABLED"),
                "{doc} {v}"
            );
            assert!(v["data"].is_null() || v.get("data").is_none(), "{v}");
        }
    }
    // Hidden inside a fragment, it is found all the same.
    let (_, v) = a
        .gql(
            Cred::None,
            "query { ...f } fragment f on Query { __schema { types { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        error_code(&v).as_deref(),
        Some("INTROSPECTION_DISABLED"),
        "{v}"
    );
    // `__typename` is not introspection: clients use it to tell union members apart.
    let (s, v) = a.gql(Cred::None, "{ __typename }", json!({})).await;
    assert_eq!(
        (s, &v["data"]["__typename"]),
        (StatusCode::OK, &json!("Query"))
    );

    // The staff schema: anonymous, user and non-admin staff are refused.
    let (_, v) = a.admin(Cred::None, SCHEMA, json!({})).await;
    assert_eq!(
        error_code(&v).as_deref(),
        Some("INTROSPECTION_DISABLED"),
        "{v}"
    );
    for (email, role) in [
        ("support@bank.example", StaffRole::Support),
        ("compliance@bank.example", StaffRole::Compliance),
        ("treasury@bank.example", StaffRole::Treasury),
    ] {
        let token = staff_token(a.bank(), email, role).await;
        for doc in [SCHEMA, TYPE] {
            let (_, v) = a.admin(Cred::Bearer(&token), doc, json!({})).await;
            assert_eq!(
                error_code(&v).as_deref(),
                Some("INTROSPECTION_DISABLED"),
                "{role:?} {v}"
            );
        }
    }
    // An admin may.
    let admin = staff_token(a.bank(), "admin@bank.example", StaffRole::Admin).await;
    let (s, v) = a.admin(Cred::Bearer(&admin), SCHEMA, json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["__schema"]["queryType"]["name"], "Query", "{v}");
    let (_, v) = a.admin(Cred::Bearer(&admin), TYPE, json!({})).await;
    let fields = v["data"]["__type"]["fields"].as_array().unwrap();
    assert!(
        fields.iter().any(|f| f["name"] == "treasuryBalances"),
        "{v}"
    );
}

#[tokio::test]
async fn development_mode_keeps_introspection() {
    let a = api_with(dev()).await;
    let (s, v) = a.gql(Cred::None, SCHEMA, json!({})).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["data"]["__schema"]["queryType"]["name"], "Query", "{v}");
    let (_, v) = a.admin(Cred::None, TYPE, json!({})).await;
    assert!(v["data"]["__type"]["fields"].is_array(), "{v}");
}

const PAGE: &str = "query p($first: Int) { me { defaultAccount { transactions(first: $first) {
  pageInfo { hasNextPage } edges { cursor node { id direction settlementAmount memo } } } } } }";

#[tokio::test]
async fn an_expensive_page_is_refused_before_it_runs() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 1_000).await;
    let cred = Cred::Bearer(&alice.token);
    // The largest page is served.
    let (s, v) = a.gql(cred, PAGE, json!({"first": 100})).await;
    assert_eq!(s, StatusCode::OK);
    assert!(v.get("errors").is_none(), "{v}");
    // `first: 10000`, as a literal or a variable, through the `Account` interface or the
    // `BTCWallet` object, is refused with a clear error.
    let literal = "{ me { defaultAccount { transactions(first: 10000) { edges { cursor } } } } }";
    let wallet = "{ me { defaultAccount { wallets { ... on BTCWallet {
      transactions(first: 10000) { edges { cursor } } } } } } }";
    for (doc, vars) in [
        (PAGE, json!({"first": 10000})),
        (literal, json!({})),
        (wallet, json!({})),
        (
            "{ me { defaultAccount { transactions(last: 10000) { edges { cursor } } } } }",
            json!({}),
        ),
    ] {
        let (_, v) = a.gql(cred, doc, vars).await;
        assert_eq!(error_code(&v).as_deref(), Some("INVALID_INPUT"), "{v}");
        let message = v["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.contains("1 to 100") && message.contains("10000"),
            "{message}"
        );
    }
    // A variable's default counts too.
    let (_, v) = a
        .gql(
            cred,
            "query p($n: Int = 5000) { me { defaultAccount { transactions(first: $n) { edges { cursor } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&v).as_deref(), Some("INVALID_INPUT"), "{v}");
    // Fifty aliases of the largest page: each is allowed alone, together they cost
    // 50 x 100 rows. Counted by list size, the document is refused before it runs.
    let flood = format!(
        "{{ me {{ defaultAccount {{ {} }} }} }}",
        (0..50)
            .map(|i| format!(
                "t{i}: transactions(first: 100) {{ edges {{ cursor node {{ id memo }} }} }}"
            ))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let (_, v) = a.gql(cred, &flood, json!({})).await;
    assert_eq!(error_code(&v).as_deref(), Some("QUERY_TOO_COMPLEX"), "{v}");
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("limit is 10000"),
        "{v}"
    );
    // Without `first`, a page is 20 items: 50 aliases of the default page pass no more
    // than they would with `first: 20` (50 x 20 x 5 fields > 1000 with a lower limit).
    let strict = api_with(ApiConfig {
        max_query_cost: 1_000,
        ..ApiConfig::default()
    })
    .await;
    let bob = customer(strict.bank(), "bob@example.com", 0).await;
    let default_pages = format!(
        "{{ me {{ defaultAccount {{ {} }} }} }}",
        (0..50)
            .map(|i| format!("t{i}: transactions {{ edges {{ cursor node {{ id memo }} }} }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let (_, v) = strict
        .gql(Cred::Bearer(&bob.token), &default_pages, json!({}))
        .await;
    assert_eq!(error_code(&v).as_deref(), Some("QUERY_TOO_COMPLEX"), "{v}");
    // The staff schema is guarded the same way.
    let admin = staff_token(a.bank(), "admin@bank.example", StaffRole::Admin).await;
    let (_, v) = a
        .admin(
            Cred::Bearer(&admin),
            "query a($id: ID!) { accountDetailsByAccountId(accountId: $id) { wallets { ... on BTCWallet { transactions(first: 10000) { edges { cursor } } } } } }",
            json!({"id": alice.account.to_string()}),
        )
        .await;
    assert_eq!(error_code(&v).as_deref(), Some("INVALID_INPUT"), "{v}");
}

#[tokio::test]
async fn unknown_paths_answer_a_clear_404() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 0).await;
    let body = json!({"query": "{ __typename }"}).to_string();
    for (path, cred) in [
        ("/graphql/", Cred::None),
        ("/graphql/", Cred::Bearer(&alice.token)),
        ("/admin/graphql/", Cred::None),
        ("/v1/nothing-here", Cred::Bearer(&alice.token)),
        ("/v1/me/", Cred::Bearer(&alice.token)),
        ("/nothing", Cred::None),
    ] {
        let (s, _, v) = a.post(path, cred, None, &body).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "POST {path}: {v}");
        assert_eq!(v["code"], "NOT_FOUND", "POST {path}: {v}");
        assert!(v["message"].as_str().unwrap().contains(path), "{v}");
        let (s, _, v) = a.get(path, cred).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("NOT_FOUND")),
            "GET {path}: {v}"
        );
    }
    // A known path with the wrong method says so.
    let (s, _, v) = a
        .get("/v1/payments/intraledger", Cred::Bearer(&alice.token))
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{v}");
    assert_eq!(v["code"], "METHOD_NOT_ALLOWED", "{v}");
    // The real routes still work, with their own errors.
    let (s, _, v) = a
        .post("/v1/me/username", Cred::Bearer(&alice.token), None, "{}")
        .await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("IDEMPOTENCY_KEY_REQUIRED"))
    );
    let (s, _, v) = a.get("/v1/me", Cred::None).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("NOT_AUTHENTICATED"))
    );
    let (s, v) = a.gql(Cred::None, "{ __typename }", json!({})).await;
    assert_eq!(
        (s, &v["data"]["__typename"]),
        (StatusCode::OK, &json!("Query"))
    );
}
