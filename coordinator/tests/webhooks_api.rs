//! Callback endpoints through the public GraphQL API, written as a Blink client writes
//! them: add (idempotent, validated, capped), list, delete; scopes; and what another
//! account may not do with them.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;

use api_common::{Api, Cred, api, api_key, customer, error_code};
use axum::http::StatusCode;
use coordinator::bank::Scope;
use serde_json::{Value, json};

const ADD: &str = "mutation callbackEndpointAdd($input: CallbackEndpointAddInput!) {
  callbackEndpointAdd(input: $input) {
    errors { message path code }
    id
    signingSecret
  }
}";

const DELETE: &str = "mutation callbackEndpointDelete($input: CallbackEndpointDeleteInput!) {
  callbackEndpointDelete(input: $input) {
    errors { message path code }
    success
  }
}";

const LIST: &str = "query callbackEndpoints {
  me { defaultAccount { ... on ConsumerAccount { callbackEndpoints { id url } } } }
}";

async fn add(a: &Api, cred: Cred<'_>, url: &str) -> Value {
    let (status, v) = a.gql(cred, ADD, json!({ "input": { "url": url } })).await;
    assert_eq!(status, StatusCode::OK);
    v
}

async fn list(a: &Api, cred: Cred<'_>) -> Vec<Value> {
    let (_, v) = a.gql(cred, LIST, json!({})).await;
    assert!(v["errors"].is_null(), "{v}");
    v["data"]["me"]["defaultAccount"]["callbackEndpoints"]
        .as_array()
        .unwrap()
        .clone()
}

async fn stored(a: &Api) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints")
        .fetch_one(a.bank().ledger().pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn add_list_delete_as_blink_clients_do() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 0).await;
    let key = api_key(a.bank(), &alice, &[Scope::Read, Scope::Write]).await;
    let v = add(&a, Cred::Key(&key), "https://example.com/hooks/1").await;
    let added = &v["data"]["callbackEndpointAdd"];
    assert_eq!(added["errors"], json!([]), "{v}");
    let id = added["id"].as_str().unwrap().to_owned();
    let secret = added["signingSecret"].as_str().unwrap();
    assert!(
        secret.starts_with("whsec_") && secret.len() > 40,
        "{secret}"
    );
    // The same URL again: the same endpoint, and its secret is not shown again.
    let again = add(&a, Cred::Key(&key), "https://example.com/hooks/1").await;
    assert_eq!(again["data"]["callbackEndpointAdd"]["id"], json!(id));
    assert_eq!(
        again["data"]["callbackEndpointAdd"]["signingSecret"],
        Value::Null
    );
    assert_eq!(
        list(&a, Cred::Key(&key)).await,
        [json!({ "id": id, "url": "https://example.com/hooks/1" })]
    );
    // Through the Account interface too.
    let (_, v) = a
        .gql(
            Cred::Key(&key),
            "{ me { defaultAccount { callbackEndpoints { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        v["data"]["me"]["defaultAccount"]["callbackEndpoints"][0]["id"],
        json!(id)
    );
    let (_, v) = a
        .gql(Cred::Key(&key), DELETE, json!({ "input": { "id": id } }))
        .await;
    assert_eq!(
        v["data"]["callbackEndpointDelete"],
        json!({ "errors": [], "success": true })
    );
    assert!(list(&a, Cred::Key(&key)).await.is_empty());
    assert_eq!(stored(&a).await, 0);
}

#[tokio::test]
async fn another_account_can_neither_see_nor_delete_my_endpoints() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 0).await;
    let mallory = customer(a.bank(), "mallory@example.com", 0).await;
    let v = add(&a, Cred::Bearer(&alice.token), "https://alice.example/hook").await;
    let id = v["data"]["callbackEndpointAdd"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(list(&a, Cred::Bearer(&mallory.token)).await.is_empty());
    let (_, v) = a
        .gql(
            Cred::Bearer(&mallory.token),
            DELETE,
            json!({ "input": { "id": id } }),
        )
        .await;
    let payload = &v["data"]["callbackEndpointDelete"];
    assert_eq!(payload["success"], json!(false), "{v}");
    assert_eq!(payload["errors"][0]["code"], "NOT_FOUND");
    // The same answer as for an id that does not exist: nothing tells them apart.
    let (_, unknown) = a
        .gql(
            Cred::Bearer(&mallory.token),
            DELETE,
            json!({ "input": { "id": uuid::Uuid::now_v7().to_string() } }),
        )
        .await;
    assert_eq!(unknown["data"], v["data"]);
    assert_eq!(list(&a, Cred::Bearer(&alice.token)).await.len(), 1);
    // Mallory adding Alice's URL makes Mallory's own endpoint, not a view of Alice's.
    let v = add(
        &a,
        Cred::Bearer(&mallory.token),
        "https://alice.example/hook",
    )
    .await;
    assert_ne!(v["data"]["callbackEndpointAdd"]["id"], json!(id));
    assert_eq!(list(&a, Cred::Bearer(&alice.token)).await.len(), 1);
}

#[tokio::test]
async fn scopes_read_lists_write_changes_none_sees_nothing() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 0).await;
    let read = api_key(a.bank(), &alice, &[Scope::Read]).await;
    let receive = api_key(a.bank(), &alice, &[Scope::Receive]).await;
    let v = add(&a, Cred::Key(&read), "https://example.com/h").await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHORIZED"), "{v}");
    let v = add(&a, Cred::Key(&receive), "https://example.com/h").await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHORIZED"), "{v}");
    let v = add(&a, Cred::None, "https://example.com/h").await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHENTICATED"), "{v}");
    assert_eq!(stored(&a).await, 0);
    add(&a, Cred::Bearer(&alice.token), "https://example.com/h").await;
    assert_eq!(list(&a, Cred::Key(&read)).await.len(), 1);
    let (_, v) = a.gql(Cred::Key(&receive), LIST, json!({})).await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHORIZED"), "{v}");
    let id = list(&a, Cred::Key(&read)).await[0]["id"].clone();
    let (_, v) = a
        .gql(Cred::Key(&read), DELETE, json!({ "input": { "id": id } }))
        .await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHORIZED"), "{v}");
    assert_eq!(stored(&a).await, 1);
}

#[tokio::test]
async fn bad_urls_are_refused_with_nothing_stored() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 0).await;
    let long = format!("https://example.com/{}", "a".repeat(2100));
    for bad in [
        "",
        "not a url",
        "example.com/hook",
        "http://example.com/hook",
        "ftp://example.com/hook",
        "https://user:secret@example.com/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[fd00::1]/hook",
        "javascript:alert(1)",
        long.as_str(),
    ] {
        let v = add(&a, Cred::Bearer(&alice.token), bad).await;
        let payload = &v["data"]["callbackEndpointAdd"];
        assert_eq!(payload["id"], Value::Null, "{bad}: {v}");
        assert_eq!(payload["errors"][0]["code"], "INVALID_INPUT", "{bad}: {v}");
        assert_eq!(
            payload["errors"][0]["path"],
            json!(["input", "url"]),
            "{bad}"
        );
    }
    let (_, v) = a
        .gql(
            Cred::Bearer(&alice.token),
            DELETE,
            json!({ "input": { "id": "not-an-id" } }),
        )
        .await;
    assert_eq!(
        v["data"]["callbackEndpointDelete"]["errors"][0]["code"],
        "INVALID_INPUT"
    );
    assert_eq!(stored(&a).await, 0);
}

#[tokio::test]
async fn at_most_ten_endpoints_per_account() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 0).await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    for i in 0..10 {
        let v = add(
            &a,
            Cred::Bearer(&alice.token),
            &format!("https://example.com/{i}"),
        )
        .await;
        assert_eq!(v["data"]["callbackEndpointAdd"]["errors"], json!([]), "{v}");
    }
    let v = add(&a, Cred::Bearer(&alice.token), "https://example.com/10").await;
    let payload = &v["data"]["callbackEndpointAdd"];
    assert_eq!(payload["errors"][0]["code"], "LIMIT_EXCEEDED", "{v}");
    assert_eq!(payload["id"], Value::Null);
    // At the cap, an existing URL still answers (idempotent); other accounts are not
    // affected.
    let v = add(&a, Cred::Bearer(&alice.token), "https://example.com/3").await;
    assert_eq!(v["data"]["callbackEndpointAdd"]["errors"], json!([]), "{v}");
    let v = add(&a, Cred::Bearer(&bob.token), "https://example.com/10").await;
    assert_eq!(v["data"]["callbackEndpointAdd"]["errors"], json!([]), "{v}");
    assert_eq!(stored(&a).await, 11);
}
