//! The staff GraphQL API through the real router: staff-only access, each role on each
//! operation, the audit trail, and a lock made here blocking a send through the public API.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;

use api_common::{Cred, api, balance, customer, error_code, send_error, staff_token};
use axum::http::StatusCode;
use coordinator::bank::{Scope, StaffRole};
use serde_json::{Value, json};

const BY_ID: &str = "query a($id: ID!) {
  accountDetailsByAccountId(accountId: $id) {
    id username level status createdAt
    owner { id email { address verified } phone createdAt }
    wallets { id balance ... on BTCWallet { transactions(first: 10) { edges { node { id direction settlementAmount } } } } }
    auditTrail { kind oldValue newValue actor reason }
  }
}";
const BY_EMAIL: &str =
    "query a($email: EmailAddress!) { accountDetailsByEmail(email: $email) { id status } }";
const BY_USERNAME: &str =
    "query a($u: Username!) { accountDetailsByUsername(username: $u) { id status level } }";
const BY_USER_ID: &str =
    "query a($id: ID!) { accountDetailsByUserId(userId: $id) { id status owner { id phone } } }";
const BY_PHONE: &str = "query a($phone: Phone!) { accountDetailsByUserPhone(phone: $phone) { id owner { id phone } } }";
const STATUS: &str = "mutation s($input: AccountUpdateStatusInput!) {
  accountUpdateStatus(input: $input) { errors { code message } accountDetails { id status } }
}";
const LEVEL: &str = "mutation l($input: AccountUpdateLevelInput!) {
  accountUpdateLevel(input: $input) { errors { code message } accountDetails { id level } }
}";
const WALLET_TXS: &str = "query a($id: ID!) { accountDetailsByAccountId(accountId: $id) { wallets { transactions(first: 5) { edges { cursor } } } } }";

fn status_input(account: &impl ToString, status: &str, comment: Option<&str>) -> Value {
    json!({"input": {"accountId": account.to_string(), "status": status, "comment": comment}})
}

#[tokio::test]
async fn admin_api_is_for_staff_only() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 0).await;
    let key = api_common::api_key(a.bank(), &alice, &[Scope::Read, Scope::Write]).await;
    let vars = json!({"id": alice.account.to_string()});
    let (_, v) = a.admin(Cred::None, BY_ID, vars.clone()).await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHENTICATED"), "{v}");
    let (s, _) = a
        .admin(Cred::Bearer(&alice.token), BY_ID, vars.clone())
        .await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "a customer session is not a staff session"
    );
    let (s, _) = a.admin(Cred::Key(&key), BY_ID, vars.clone()).await;
    assert_eq!(
        s,
        StatusCode::UNAUTHORIZED,
        "API keys are not for the admin API"
    );
    let (_, v) = a
        .admin(
            Cred::None,
            STATUS,
            status_input(&alice.account, "LOCKED", Some("x")),
        )
        .await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHENTICATED"));
    // A staff token is useless on the public API.
    let support = staff_token(a.bank(), "s@bank.example", StaffRole::Support).await;
    let (s, _) = a
        .gql(Cred::Bearer(&support), "{ me { id } }", json!({}))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn each_staff_role_on_each_operation() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 5_000).await;
    a.bank()
        .set_username(&alice.principal, &"alice".parse().unwrap())
        .await
        .unwrap();
    let support = staff_token(a.bank(), "support@bank.example", StaffRole::Support).await;
    let compliance = staff_token(a.bank(), "compliance@bank.example", StaffRole::Compliance).await;
    let treasury = staff_token(a.bank(), "treasury@bank.example", StaffRole::Treasury).await;
    let admin = staff_token(a.bank(), "admin@bank.example", StaffRole::Admin).await;
    let id = alice.account.to_string();

    // Everyone may find accounts and read a wallet's transactions.
    for t in [&support, &compliance, &treasury, &admin] {
        let (_, v) = a
            .admin(
                Cred::Bearer(t),
                BY_EMAIL,
                json!({"email": "Alice@Example.com"}),
            )
            .await;
        assert_eq!(v["data"]["accountDetailsByEmail"]["id"], id.as_str(), "{v}");
        let (_, v) = a
            .admin(Cred::Bearer(t), BY_USERNAME, json!({"u": "alice"}))
            .await;
        assert_eq!(
            v["data"]["accountDetailsByUsername"]["status"], "ACTIVE",
            "{v}"
        );
        let (_, v) = a
            .admin(Cred::Bearer(t), WALLET_TXS, json!({"id": id}))
            .await;
        assert!(v.get("errors").is_none(), "{v}");
        assert_eq!(
            v["data"]["accountDetailsByAccountId"]["wallets"][0]["transactions"]["edges"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    // Treasury balances: treasury and admin only. Alice's deposit came from the on-chain
    // omnibus account (debit-normal), which holds the 5,000 sats as the bank's asset.
    const TREASURY: &str = "{ treasuryBalances { code currency settledMsat pendingMsat } }";
    for t in [&support, &compliance] {
        let (_, v) = a.admin(Cred::Bearer(t), TREASURY, json!({})).await;
        assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHORIZED"), "{v}");
    }
    for t in [&treasury, &admin] {
        let (_, v) = a.admin(Cred::Bearer(t), TREASURY, json!({})).await;
        let rows = v["data"]["treasuryBalances"].as_array().unwrap().clone();
        assert_eq!(rows.len(), 4, "{v}");
        let onchain = rows.iter().find(|r| r["code"] == "bank.onchain").unwrap();
        assert_eq!(onchain["settledMsat"], "5000000", "{v}");
        assert_eq!(onchain["currency"], "BTC");
    }

    // Lock and unlock: support, compliance, admin; not treasury.
    let (_, v) = a
        .admin(
            Cred::Bearer(&treasury),
            STATUS,
            status_input(&id, "LOCKED", Some("no")),
        )
        .await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHORIZED"), "{v}");
    for t in [&support, &compliance, &admin] {
        let (_, v) = a
            .admin(
                Cred::Bearer(t),
                STATUS,
                status_input(&id, "LOCKED", Some("suspicious login")),
            )
            .await;
        assert_eq!(
            v["data"]["accountUpdateStatus"]["accountDetails"]["status"], "LOCKED",
            "{v}"
        );
        let (_, v) = a
            .admin(
                Cred::Bearer(t),
                STATUS,
                status_input(&id, "ACTIVE", Some("cleared")),
            )
            .await;
        assert_eq!(
            v["data"]["accountUpdateStatus"]["accountDetails"]["status"], "ACTIVE",
            "{v}"
        );
    }

    // Levels: compliance and admin.
    for t in [&support, &treasury] {
        let (_, v) = a
            .admin(
                Cred::Bearer(t),
                LEVEL,
                json!({"input": {"accountId": id, "level": "TWO", "comment": "kyc"}}),
            )
            .await;
        assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHORIZED"), "{v}");
    }
    let (_, v) = a
        .admin(
            Cred::Bearer(&compliance),
            LEVEL,
            json!({"input": {"accountId": id, "level": "TWO", "comment": "passport checked"}}),
        )
        .await;
    assert_eq!(
        v["data"]["accountUpdateLevel"]["accountDetails"]["level"], "TWO",
        "{v}"
    );
    let (_, v) = a
        .admin(
            Cred::Bearer(&admin),
            LEVEL,
            json!({"input": {"accountId": id, "level": "ONE", "comment": "downgrade"}}),
        )
        .await;
    assert_eq!(
        v["data"]["accountUpdateLevel"]["accountDetails"]["level"], "ONE",
        "{v}"
    );

    // Close: compliance and admin only; support may not.
    let (_, v) = a
        .admin(
            Cred::Bearer(&support),
            STATUS,
            status_input(&id, "CLOSED", Some("x")),
        )
        .await;
    assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHORIZED"), "{v}");
    let (_, v) = a
        .admin(
            Cred::Bearer(&compliance),
            STATUS,
            status_input(&id, "CLOSED", Some("customer request")),
        )
        .await;
    assert_eq!(
        v["data"]["accountUpdateStatus"]["accountDetails"]["status"], "CLOSED",
        "{v}"
    );
    // Closed is final.
    let (_, v) = a
        .admin(
            Cred::Bearer(&admin),
            STATUS,
            status_input(&id, "ACTIVE", Some("oops")),
        )
        .await;
    assert_eq!(
        v["data"]["accountUpdateStatus"]["errors"][0]["code"], "INVALID_STATUS_CHANGE",
        "{v}"
    );

    // The audit trail records who, what and why.
    let (_, v) = a
        .admin(Cred::Bearer(&admin), BY_ID, json!({"id": id}))
        .await;
    let trail = v["data"]["accountDetailsByAccountId"]["auditTrail"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(trail.len(), 9, "{trail:?}");
    assert_eq!(trail[0]["newValue"], "LOCKED");
    assert_eq!(trail[0]["reason"], "suspicious login");
    assert!(trail[0]["actor"].as_str().unwrap().starts_with("staff:"));
    assert_eq!(trail.last().unwrap()["newValue"], "CLOSED");
    let owner = &v["data"]["accountDetailsByAccountId"]["owner"];
    assert_eq!(owner["id"], alice.principal.user_id.to_string());
    assert_eq!(owner["email"]["address"], "alice@example.com");
    assert!(owner["phone"].is_null());
}

#[tokio::test]
async fn a_lock_made_by_staff_blocks_sending_and_bad_input_changes_nothing() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 5_000).await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    let support = staff_token(a.bank(), "support@bank.example", StaffRole::Support).await;
    let id = alice.account.to_string();

    // A change without a comment, with a bad id or an unknown account changes nothing.
    let (_, v) = a
        .admin(
            Cred::Bearer(&support),
            STATUS,
            status_input(&id, "LOCKED", None),
        )
        .await;
    assert_eq!(
        v["data"]["accountUpdateStatus"]["errors"][0]["code"], "INVALID_INPUT",
        "{v}"
    );
    let (_, v) = a
        .admin(
            Cred::Bearer(&support),
            STATUS,
            status_input(&"nope", "LOCKED", Some("x")),
        )
        .await;
    assert_eq!(
        v["data"]["accountUpdateStatus"]["errors"][0]["code"], "INVALID_INPUT",
        "{v}"
    );
    let (_, v) = a
        .admin(
            Cred::Bearer(&support),
            STATUS,
            status_input(&coordinator::AccountId::new(), "LOCKED", Some("x")),
        )
        .await;
    assert_eq!(
        v["data"]["accountUpdateStatus"]["errors"][0]["code"], "NOT_FOUND",
        "{v}"
    );
    let (_, v) = a
        .admin(Cred::Bearer(&support), BY_ID, json!({"id": id}))
        .await;
    assert_eq!(v["data"]["accountDetailsByAccountId"]["status"], "ACTIVE");
    assert_eq!(
        v["data"]["accountDetailsByAccountId"]["auditTrail"],
        json!([])
    );

    let (_, v) = a
        .admin(
            Cred::Bearer(&support),
            STATUS,
            status_input(&id, "LOCKED", Some("chargeback")),
        )
        .await;
    assert_eq!(v["data"]["accountUpdateStatus"]["errors"], json!([]), "{v}");
    let (_, v) = a
        .send_via_graphql(Cred::Bearer(&alice.token), alice.wallet, bob.wallet, 100)
        .await;
    assert_eq!(send_error(&v), Some("ACCOUNT_NOT_ACTIVE"), "{v}");
    assert_eq!(balance(a.bank(), alice.wallet).await, 5_000);

    // Staff login through the admin API, with its rate limit.
    let (_, v) = a
        .admin(Cred::None, "mutation { staffLogin(input: {email: \"support@bank.example\", password: \"staff password\"}) { authToken errors { code } } }", json!({}))
        .await;
    let token = v["data"]["staffLogin"]["authToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, v) = a
        .admin(Cred::Bearer(&token), "{ allLevels }", json!({}))
        .await;
    assert_eq!(
        v["data"]["allLevels"],
        json!(["ZERO", "ONE", "TWO", "THREE"])
    );
    let (_, v) = a
        .admin(Cred::None, "mutation { staffLogin(input: {email: \"support@bank.example\", password: \"wrong\"}) { authToken errors { code } } }", json!({}))
        .await;
    assert_eq!(
        v["data"]["staffLogin"]["errors"][0]["code"], "INVALID_CREDENTIALS",
        "{v}"
    );
}

#[tokio::test]
async fn accounts_are_found_by_user_id_and_phone_by_every_role_and_staff_only() {
    let a = api().await;
    let alice = customer(a.bank(), "+41795550100", 0).await;
    let bob = customer(a.bank(), "bob@example.com", 0).await;
    let user = alice.principal.user_id.to_string();
    let id = alice.account.to_string();

    for role in [
        StaffRole::Support,
        StaffRole::Compliance,
        StaffRole::Treasury,
        StaffRole::Admin,
    ] {
        let t = staff_token(a.bank(), &format!("{role:?}@bank.example"), role).await;
        let (_, v) = a
            .admin(Cred::Bearer(&t), BY_USER_ID, json!({"id": user}))
            .await;
        assert_eq!(
            v["data"]["accountDetailsByUserId"]["id"],
            id.as_str(),
            "{v}"
        );
        assert_eq!(v["data"]["accountDetailsByUserId"]["status"], "ACTIVE");
        assert_eq!(
            v["data"]["accountDetailsByUserId"]["owner"]["phone"],
            "+41795550100"
        );
        // Spaces and dashes, as people write numbers, find the same account.
        let (_, v) = a
            .admin(
                Cred::Bearer(&t),
                BY_PHONE,
                json!({"phone": "+41 79 555-01-00"}),
            )
            .await;
        assert_eq!(
            v["data"]["accountDetailsByUserPhone"]["id"],
            id.as_str(),
            "{v}"
        );
        assert_eq!(
            v["data"]["accountDetailsByUserPhone"]["owner"]["id"],
            user.as_str()
        );
    }

    let admin = staff_token(a.bank(), "admin2@bank.example", StaffRole::Admin).await;
    // Bob's user id finds Bob's account, not Alice's.
    let (_, v) = a
        .admin(
            Cred::Bearer(&admin),
            BY_USER_ID,
            json!({"id": bob.principal.user_id.to_string()}),
        )
        .await;
    assert_eq!(
        v["data"]["accountDetailsByUserId"]["id"],
        bob.account.to_string().as_str(),
        "{v}"
    );
    // Unknown and malformed look-ups.
    for (query, vars, code) in [
        (
            BY_USER_ID,
            json!({"id": coordinator::UserId::new().to_string()}),
            "NOT_FOUND",
        ),
        (BY_USER_ID, json!({"id": "nope"}), "INVALID_INPUT"),
        (
            BY_USER_ID,
            json!({"id": alice.account.to_string()}),
            "NOT_FOUND",
        ),
        (BY_PHONE, json!({"phone": "+41795550199"}), "NOT_FOUND"),
        (BY_PHONE, json!({"phone": "0795550100"}), "INVALID_INPUT"),
    ] {
        let (_, v) = a.admin(Cred::Bearer(&admin), query, vars.clone()).await;
        assert_eq!(error_code(&v).as_deref(), Some(code), "{vars}: {v}");
        assert!(v["data"].is_null(), "{v}");
    }

    // Staff only: no credential, a customer's session or API key are refused.
    let key = api_common::api_key(a.bank(), &alice, &[Scope::Read]).await;
    for (query, vars) in [
        (BY_USER_ID, json!({"id": user})),
        (BY_PHONE, json!({"phone": "+41795550100"})),
    ] {
        let (_, v) = a.admin(Cred::None, query, vars.clone()).await;
        assert_eq!(error_code(&v).as_deref(), Some("NOT_AUTHENTICATED"), "{v}");
        assert!(v["data"].is_null(), "{v}");
        let (s, _) = a
            .admin(Cred::Bearer(&alice.token), query, vars.clone())
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _) = a.admin(Cred::Key(&key), query, vars).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    }
}
