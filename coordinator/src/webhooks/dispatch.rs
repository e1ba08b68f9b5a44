//! The dispatcher: turns the ledger outbox's payment events into deliveries.
//!
//! One row (`webhook_cursor`) holds the position in the outbox. A pass locks it (`FOR
//! UPDATE SKIP LOCKED`: while one instance dispatches, the others skip), reads the events
//! after it, inserts one delivery per event and endpoint of the accounts involved, and
//! moves the cursor, all in one transaction: a crash before the commit leaves neither
//! deliveries nor a moved cursor, so the next pass (on any instance) does the same again.

use chrono::SecondsFormat;
use serde::Serialize;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{WebhookConfig, WebhookError};
use crate::bank::Bank;
use crate::bank::events::{PostedPayment, posted_payment};
use crate::commit_order::{CommitCursor, CommitPosition};
use crate::ids::{AccountId, WalletId};
use crate::ledger::read_outbox;

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DispatchReport {
    /// Outbox events passed.
    pub events: usize,
    /// Deliveries inserted.
    pub deliveries: usize,
    /// A full batch was read: more may be waiting.
    pub more: bool,
}

/// Blink's `TxDirection`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
enum Direction {
    Send,
    Receive,
}

impl Direction {
    fn verb(self) -> &'static str {
        match self {
            Direction::Send => "send",
            Direction::Receive => "receive",
        }
    }
}

/// How the payment was made or settled (Blink's `initiationVia` / `settlementVia`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct Via {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    counter_party_wallet_id: Option<String>,
}

/// The transaction of an event, as Blink's callback payloads carry it (without its
/// display-currency fields: this bank has no price feed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct TransactionBody {
    id: String,
    wallet_id: String,
    status: &'static str,
    direction: Direction,
    memo: Option<String>,
    created_at: String,
    /// Satoshis, negative for a send (as Blink's `settlementAmount`).
    settlement_amount: i64,
    settlement_currency: &'static str,
    settlement_fee: u64,
    initiation_via: Via,
    settlement_via: Via,
}

/// The JSON body of a delivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct EventBody {
    account_id: String,
    event_type: String,
    wallet_id: String,
    transaction: TransactionBody,
}

/// One dispatcher pass.
///
/// # Errors
/// The database or the ledger; nothing is dispatched then and the cursor stays.
pub async fn dispatch_once(
    bank: &Bank,
    config: &WebhookConfig,
) -> Result<DispatchReport, WebhookError> {
    let pool = bank.ledger().pool();
    let mut tx = pool.begin().await?;
    let Some(row) =
        sqlx::query("SELECT xid, seq, since FROM webhook_cursor FOR UPDATE SKIP LOCKED")
            .fetch_optional(&mut *tx)
            .await?
    else {
        // Another instance is dispatching.
        return Ok(DispatchReport::default());
    };
    let mut cursor = CommitCursor::resume(
        CommitPosition {
            xid: row.try_get("xid")?,
            seq: row.try_get("seq")?,
        },
        row.try_get("since")?,
    );
    // Read outside the transaction: committed rows only, and the row lock keeps every
    // other dispatcher from moving the cursor meanwhile.
    let events = read_outbox(pool, &cursor, config.dispatch_batch).await?;
    let mut report = DispatchReport {
        events: events.len(),
        deliveries: 0,
        more: i64::try_from(events.len()).unwrap_or(i64::MAX) >= config.dispatch_batch,
    };
    if events.is_empty() {
        return Ok(report);
    }
    for e in &events {
        if let Some(p) = posted_payment(e) {
            report.deliveries += fan_out(bank, &mut tx, &p).await?;
        }
        cursor.advance(e.position);
    }
    sqlx::query("UPDATE webhook_cursor SET xid = $1, seq = $2")
        .bind(cursor.after.xid)
        .bind(cursor.after.seq)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    metrics::counter!("bastion_webhook_events_total").increment(report.deliveries as u64);
    Ok(report)
}

/// Inserts the deliveries of one payment: its send to the payer's endpoints, its receipt
/// to the payee's. Sides that are not customer wallets (the bank's accounts) have none.
async fn fan_out(
    bank: &Bank,
    tx: &mut PgConnection,
    p: &PostedPayment,
) -> Result<usize, WebhookError> {
    let mut inserted = 0;
    for (wallet, direction) in [
        (p.sender_wallet, Direction::Send),
        (p.recipient_wallet, Direction::Receive),
    ] {
        let rows = sqlx::query(
            "SELECT w.account_id, e.id AS endpoint_id FROM wallets w \
             JOIN webhook_endpoints e ON e.account_id = w.account_id WHERE w.id = $1",
        )
        .bind(wallet.as_uuid())
        .fetch_all(&mut *tx)
        .await?;
        let Some(first) = rows.first() else {
            continue;
        };
        let account = AccountId::from_uuid(first.try_get("account_id")?);
        let event_type = format!("{}.{}", direction.verb(), p.rail.as_str());
        let body = event_body(bank, account, wallet, direction, &event_type, p).await?;
        let payload = serde_json::to_string(&body)
            .map_err(|e| WebhookError::Corrupt(format!("event payload: {e}")))?;
        for r in &rows {
            let endpoint: Uuid = r.try_get("endpoint_id")?;
            let done = sqlx::query(
                "INSERT INTO webhook_deliveries \
                 (id, endpoint_id, account_id, event_type, transaction_id, payload) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (endpoint_id, transaction_id, event_type) DO NOTHING",
            )
            .bind(Uuid::now_v7())
            .bind(endpoint)
            .bind(account.as_uuid())
            .bind(&event_type)
            .bind(p.transaction_id.as_uuid())
            .bind(&payload)
            .execute(&mut *tx)
            .await?;
            inserted += usize::try_from(done.rows_affected()).unwrap_or(0);
        }
    }
    Ok(inserted)
}

/// The event as the wallet sees it: its history line (memo, time, fee) where it has one.
async fn event_body(
    bank: &Bank,
    account: AccountId,
    wallet: WalletId,
    direction: Direction,
    event_type: &str,
    p: &PostedPayment,
) -> Result<EventBody, WebhookError> {
    let line = bank.sender_transaction(wallet, p.transaction_id).await?;
    let amount = i64::try_from(line.as_ref().map_or(p.amount, |l| l.amount).to_sat())
        .map_err(|_| WebhookError::Corrupt("amount out of range".to_owned()))?;
    let counterparty = match direction {
        Direction::Send => p.recipient_wallet,
        Direction::Receive => p.sender_wallet,
    };
    let via = |with_counterparty: bool| Via {
        kind: p.rail.as_str(),
        counter_party_wallet_id: (with_counterparty
            && p.rail == crate::bank::events::Rail::IntraLedger)
            .then(|| counterparty.to_string()),
    };
    Ok(EventBody {
        account_id: account.to_string(),
        event_type: event_type.to_owned(),
        wallet_id: wallet.to_string(),
        transaction: TransactionBody {
            id: p.transaction_id.to_string(),
            wallet_id: wallet.to_string(),
            status: "success",
            direction,
            memo: line
                .as_ref()
                .map(|l| l.memo.clone())
                .filter(|m| !m.is_empty()),
            created_at: line
                .as_ref()
                .map_or_else(chrono::Utc::now, |l| l.created_at)
                .to_rfc3339_opts(SecondsFormat::Millis, true),
            settlement_amount: match direction {
                Direction::Send => -amount,
                Direction::Receive => amount,
            },
            settlement_currency: "BTC",
            settlement_fee: line.as_ref().map_or(0, |l| l.fee.to_sat()),
            initiation_via: via(true),
            settlement_via: via(true),
        },
    })
}
