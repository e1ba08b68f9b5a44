//! What the bank stored about a Lightning payment, read straight from its tables: the
//! row's status and reconciler lease, the ledger postings made for it, a wallet's posting
//! count. Tests check with these that a fault moved nothing, or moved it once.

use coordinator::WalletId;
use coordinator::bank::Bank;
use coordinator::ids::PaymentId;
use coordinator::lightning::PaymentHash;
use sqlx::Row;

/// The stored status of a payment.
pub async fn row_status(bank: &Bank, id: PaymentId) -> String {
    sqlx::query("SELECT status FROM ln_payments WHERE id = $1")
        .bind(id.as_uuid())
        .fetch_one(bank.ledger().pool())
        .await
        .expect("the test database answers")
        .get("status")
}

/// The reconciler's lease on a payment (it moves at each pass that looks at it).
pub async fn next_check(bank: &Bank, id: PaymentId) -> chrono::DateTime<chrono::Utc> {
    sqlx::query("SELECT next_check_at FROM ln_payments WHERE id = $1")
        .bind(id.as_uuid())
        .fetch_one(bank.ledger().pool())
        .await
        .expect("the test database answers")
        .get("next_check_at")
}

/// The ledger postings of a payment: (external id suffix, type), in order.
pub async fn postings(bank: &Bank, id: PaymentId) -> Vec<(String, String)> {
    let prefix = format!("lnsend:{id}:");
    sqlx::query(
        "SELECT external_id, metadata->>'type' AS kind FROM ledger_transactions \
         WHERE starts_with(external_id, $1) ORDER BY created_at, external_id",
    )
    .bind(&prefix)
    .fetch_all(bank.ledger().pool())
    .await
    .expect("the test database answers")
    .iter()
    .map(|r| {
        let ext: String = r.get("external_id");
        (ext[prefix.len()..].to_string(), r.get("kind"))
    })
    .collect()
}

/// Postings that changed a wallet's balance so far.
pub async fn version(bank: &Bank, wallet: WalletId) -> i64 {
    bank.ledger()
        .balance(Bank::ledger_account(wallet))
        .await
        .expect("the test database answers")
        .version
}

pub async fn payments_for(bank: &Bank, hash: &PaymentHash) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ln_payments WHERE payment_hash = $1")
        .bind(hash.0.to_vec())
        .fetch_one(bank.ledger().pool())
        .await
        .expect("the test database answers")
}
