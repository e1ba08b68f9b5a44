//! Locks hold against the wrong role: a support agent tries to lift a lock compliance
//! placed (through the staff API and through the domain), and fails; compliance and an
//! admin may; every change is in the audit trail with the role it was made in.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod api_common;
mod common;

use api_common::{Cred, api, customer, error_code, staff_token};
use coordinator::bank::{AccountStatus, Actor, BankError, Secret, StaffRole};
use serde_json::{Value, json};

const STATUS: &str = "mutation s($input: AccountUpdateStatusInput!) {
  accountUpdateStatus(input: $input) { errors { code message } accountDetails { id status lockedBy } }
}";
const TRAIL: &str = "query a($id: ID!) { accountDetailsByAccountId(accountId: $id) {
  status lockedBy auditTrail { oldValue newValue actor actorRole reason } } }";

fn input(account: &impl ToString, status: &str, comment: &str) -> Value {
    json!({"input": {"accountId": account.to_string(), "status": status, "comment": comment}})
}

#[tokio::test]
async fn only_the_role_that_placed_a_lock_or_an_admin_lifts_it() {
    let a = api().await;
    let alice = customer(a.bank(), "alice@example.com", 0).await;
    let support = staff_token(a.bank(), "support@bank.example", StaffRole::Support).await;
    let compliance = staff_token(a.bank(), "compliance@bank.example", StaffRole::Compliance).await;
    let admin = staff_token(a.bank(), "admin@bank.example", StaffRole::Admin).await;
    let status = |v: &Value| v["data"]["accountUpdateStatus"].clone();

    // Compliance locks.
    let (_, v) = a
        .admin(
            Cred::Bearer(&compliance),
            STATUS,
            input(&alice.account, "LOCKED", "sanctions hit"),
        )
        .await;
    assert_eq!(
        status(&v)["accountDetails"]["lockedBy"],
        "compliance",
        "{v}"
    );
    // Support tries to lift it: refused, nothing changes.
    let (_, v) = a
        .admin(
            Cred::Bearer(&support),
            STATUS,
            input(&alice.account, "ACTIVE", "customer called"),
        )
        .await;
    assert_eq!(status(&v)["errors"][0]["code"], "LOCK_HELD", "{v}");
    assert!(
        status(&v)["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("compliance"),
        "{v}"
    );
    assert_eq!(
        a.bank().account(alice.account).await.unwrap().status,
        AccountStatus::Locked
    );
    // Compliance lifts its own lock.
    let (_, v) = a
        .admin(
            Cred::Bearer(&compliance),
            STATUS,
            input(&alice.account, "ACTIVE", "false positive"),
        )
        .await;
    assert_eq!(status(&v)["accountDetails"]["status"], "ACTIVE", "{v}");
    assert!(status(&v)["accountDetails"]["lockedBy"].is_null(), "{v}");
    // Compliance locks again; an admin lifts it.
    a.admin(
        Cred::Bearer(&compliance),
        STATUS,
        input(&alice.account, "LOCKED", "second hit"),
    )
    .await;
    let (_, v) = a
        .admin(
            Cred::Bearer(&support),
            STATUS,
            input(&alice.account, "ACTIVE", "again"),
        )
        .await;
    assert_eq!(status(&v)["errors"][0]["code"], "LOCK_HELD", "{v}");
    let (_, v) = a
        .admin(
            Cred::Bearer(&admin),
            STATUS,
            input(&alice.account, "ACTIVE", "reviewed"),
        )
        .await;
    assert_eq!(status(&v)["accountDetails"]["status"], "ACTIVE", "{v}");
    // A support lock: compliance is not support, so it may not lift it either.
    a.admin(
        Cred::Bearer(&support),
        STATUS,
        input(&alice.account, "LOCKED", "phishing report"),
    )
    .await;
    let (_, v) = a
        .admin(
            Cred::Bearer(&compliance),
            STATUS,
            input(&alice.account, "ACTIVE", "x"),
        )
        .await;
    assert_eq!(status(&v)["errors"][0]["code"], "LOCK_HELD", "{v}");
    let (_, v) = a
        .admin(
            Cred::Bearer(&support),
            STATUS,
            input(&alice.account, "ACTIVE", "customer verified"),
        )
        .await;
    assert_eq!(status(&v)["accountDetails"]["status"], "ACTIVE", "{v}");

    // Every change is recorded, with the role it was made in; refusals changed nothing.
    let (_, v) = a
        .admin(
            Cred::Bearer(&admin),
            TRAIL,
            json!({"id": alice.account.to_string()}),
        )
        .await;
    assert_eq!(error_code(&v), None, "{v}");
    let trail: Vec<(String, String, String)> = v["data"]["accountDetailsByAccountId"]["auditTrail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["newValue"].as_str().unwrap().to_owned(),
                e["actorRole"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("LOCKED", "compliance", "sanctions hit"),
        ("ACTIVE", "compliance", "false positive"),
        ("LOCKED", "compliance", "second hit"),
        ("ACTIVE", "admin", "reviewed"),
        ("LOCKED", "support", "phishing report"),
        ("ACTIVE", "support", "customer verified"),
    ]
    .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()));
    assert_eq!(trail, expected);
}

#[tokio::test]
async fn the_domain_holds_the_rule_too() {
    let a = api().await;
    let b = a.bank();
    let alice = customer(b, "alice@example.com", 0).await;
    let staff = |email: &'static str, role| async move {
        let e = email.parse().unwrap();
        b.create_staff(&e, &common::pw("staff password"), role)
            .await
            .unwrap();
        let token = b
            .staff_login(&e, &Secret::new("staff password"))
            .await
            .unwrap()
            .token;
        b.authenticate_staff(token.expose()).await.unwrap()
    };
    let support = staff("s@bank.example", StaffRole::Support).await;
    let compliance = staff("c@bank.example", StaffRole::Compliance).await;
    b.staff_set_status(&compliance, alice.account, AccountStatus::Locked, "aml")
        .await
        .unwrap();
    assert!(matches!(
        b.staff_set_status(&support, alice.account, AccountStatus::Active, "x")
            .await,
        Err(BankError::LockHeld {
            placed_by: "compliance"
        })
    ));
    // Calling `set_status` with a staff actor directly reads the role from the database:
    // the support agent gets no further that way.
    assert!(matches!(
        b.set_status(
            Actor::Staff(support.staff_id),
            alice.account,
            AccountStatus::Active,
            "x"
        )
        .await,
        Err(BankError::LockHeld {
            placed_by: "compliance"
        })
    ));
    // Nor does the owner end the review by closing the account (closing is final).
    assert!(matches!(
        b.set_status(
            Actor::User(alice.principal.user_id),
            alice.account,
            AccountStatus::Closed,
            "leaving"
        )
        .await,
        Err(BankError::LockHeld {
            placed_by: "compliance"
        })
    ));
    assert_eq!(
        b.lock_holder(alice.account).await.unwrap().as_deref(),
        Some("compliance")
    );
    // A lock the system placed is for compliance (or an admin) to lift.
    b.staff_set_status(&compliance, alice.account, AccountStatus::Active, "cleared")
        .await
        .unwrap();
    b.set_status(
        Actor::System,
        alice.account,
        AccountStatus::Locked,
        "velocity rule",
    )
    .await
    .unwrap();
    assert_eq!(
        b.lock_holder(alice.account).await.unwrap().as_deref(),
        Some("system")
    );
    assert!(matches!(
        b.staff_set_status(&support, alice.account, AccountStatus::Active, "x")
            .await,
        Err(BankError::LockHeld {
            placed_by: "system"
        })
    ));
    b.staff_set_status(
        &compliance,
        alice.account,
        AccountStatus::Active,
        "reviewed",
    )
    .await
    .unwrap();
    // A lock the user placed on their own account: any staff member who may unlock.
    b.set_status(
        Actor::User(alice.principal.user_id),
        alice.account,
        AccountStatus::Locked,
        "lost phone",
    )
    .await
    .unwrap();
    b.staff_set_status(
        &support,
        alice.account,
        AccountStatus::Active,
        "identity checked",
    )
    .await
    .unwrap();
    let roles: Vec<Option<String>> = b
        .account_events(alice.account)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.actor_role)
        .collect();
    let expected = [
        "compliance",
        "compliance",
        "system",
        "compliance",
        "user",
        "support",
    ];
    assert_eq!(roles, expected.map(|r| Some(r.to_owned())));
}
