//! Internal transfers (`intraLedgerPaymentSend`) and wallet transaction history.
//!
//! A payment is a small state machine: a PENDING row is written (with the account row
//! locked, so the rolling limit cannot be raced) and committed; the ledger posting follows
//! with the external id `intraledger:<payment id>`; the row then becomes SUCCESS or
//! FAILURE. A crash between the steps leaves a PENDING row that
//! [`Bank::resume_pending_payments`] finishes: the ledger posting is idempotent.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::types::{AccountStatus, Level, ParseError, Scope, Username};
use super::{Bank, BankError, Principal, sats_from_db};
use crate::amount::Sats;
use crate::ids::{PaymentId, TransactionId, WalletId};
use crate::ledger::{Direction, HistoryCursor, LedgerError, Posting, system};

/// Longest memo, in bytes.
pub const MAX_MEMO_LEN: usize = 1_000;

/// Whom to pay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recipient {
    /// A wallet id.
    Wallet(WalletId),
    /// The default wallet of a username.
    Username(Username),
}

/// An internal transfer request.
#[derive(Clone, Debug)]
pub struct SendRequest {
    /// The paying wallet (the caller's).
    pub wallet_id: WalletId,
    /// The recipient.
    pub recipient: Recipient,
    /// The amount.
    pub amount: Sats,
    /// A memo shown to both sides.
    pub memo: Option<String>,
    /// The caller's idempotency key: sending again with it returns the first outcome.
    pub idempotency_key: Option<String>,
}

/// Outcome of a send, named as in Blink's `PaymentSendResult`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// Paid now.
    Success,
    /// Paid before with the same idempotency key.
    AlreadyPaid,
    /// Written but not yet posted (the ledger was unreachable); it is finished later.
    Pending,
}

/// A completed (or pending) send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PaymentResult {
    /// What happened.
    pub status: PaymentStatus,
    /// The payment.
    pub payment_id: PaymentId,
    /// The ledger transaction, once posted.
    pub transaction_id: Option<TransactionId>,
}

/// Direction of a history line, from the wallet's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TxDirection {
    /// Money out.
    Send,
    /// Money in.
    Receive,
}

/// One line of a wallet's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WalletTransaction {
    /// The ledger transaction.
    pub id: TransactionId,
    /// In or out.
    pub direction: TxDirection,
    /// Settled or pending funds ("SUCCESS" or "PENDING").
    pub status: &'static str,
    /// Amount in satoshis (rounded down from millisatoshis).
    pub amount: Sats,
    /// Fee paid by this wallet.
    pub fee: Sats,
    /// Memo.
    pub memo: String,
    /// The other wallet, for internal transfers.
    pub counterparty_wallet_id: Option<WalletId>,
    /// The other side's username, when it has one.
    pub counterparty_username: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
    /// Opaque cursor of this line.
    pub cursor: String,
}

/// A page of history, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TransactionPage {
    /// The lines.
    pub lines: Vec<WalletTransaction>,
    /// Whether older lines follow.
    pub has_next_page: bool,
}

fn encode_cursor(c: HistoryCursor) -> String {
    format!("{}.{}", c.transaction_id, c.seq)
}

fn decode_cursor(s: &str) -> Result<HistoryCursor, BankError> {
    let bad = || {
        BankError::Invalid(ParseError {
            what: "cursor",
            why: "malformed",
        })
    };
    let (tx, seq) = s.split_once('.').ok_or_else(bad)?;
    Ok(HistoryCursor {
        transaction_id: tx.parse().map_err(|_| bad())?,
        seq: seq.parse().map_err(|_| bad())?,
    })
}

const FAILURE_INSUFFICIENT: &str = "INSUFFICIENT_BALANCE";

struct Pending {
    id: PaymentId,
    sender: WalletId,
    recipient: WalletId,
    amount: Sats,
    memo: String,
}

impl Bank {
    /// Sends satoshis from one of the caller's wallets to another wallet of this bank.
    ///
    /// # Errors
    /// [`BankError::Forbidden`] without the write scope; [`BankError::NotFound`] for a
    /// wallet that is not the caller's or an unknown recipient; [`BankError::InvalidAmount`];
    /// [`BankError::SelfPayment`]; [`BankError::AccountNotActive`];
    /// [`BankError::RecipientUnavailable`]; [`BankError::LimitExceeded`];
    /// [`BankError::InsufficientBalance`]; [`BankError::IdempotencyConflict`]. Nothing
    /// moves when one is returned.
    pub async fn send_internal(
        &self,
        principal: &Principal,
        request: &SendRequest,
    ) -> Result<PaymentResult, BankError> {
        principal.require(Scope::Write)?;
        if request.amount == Sats::ZERO {
            return Err(BankError::InvalidAmount);
        }
        let memo = request.memo.clone().unwrap_or_default();
        if memo.len() > MAX_MEMO_LEN {
            return Err(BankError::Invalid(ParseError {
                what: "memo",
                why: "longer than 1000 bytes",
            }));
        }
        if let Some(key) = &request.idempotency_key
            && (key.is_empty() || key.len() > 200)
        {
            return Err(BankError::Invalid(ParseError {
                what: "idempotency key",
                why: "must be 1 to 200 characters",
            }));
        }
        let recipient = match &request.recipient {
            Recipient::Wallet(w) => *w,
            Recipient::Username(u) => self.wallet_of_username(u).await?,
        };
        if recipient == request.wallet_id {
            return Err(BankError::SelfPayment);
        }

        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT a.status, a.level FROM accounts a JOIN wallets w ON w.account_id = a.id \
             WHERE w.id = $1 AND a.id = $2 FOR UPDATE OF a",
        )
        .bind(request.wallet_id.as_uuid())
        .bind(principal.account_id.as_uuid())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(BankError::NotFound { what: "wallet" })?;
        let status: AccountStatus = row.try_get::<String, _>(0)?.parse()?;
        let level = Level::new(
            u8::try_from(row.try_get::<i16, _>(1)?)
                .map_err(|e| BankError::Corrupt(e.to_string()))?,
        )?;

        // One statement, under the account lock taken above (and so with a snapshot that
        // sees every payment committed before the lock was granted): the earlier payment
        // with this idempotency key, the recipient's status, the last 24 hours' use, and the
        // PENDING row, inserted only if every check passes.
        let limit = self.config.limits.of(level).internal_send;
        let id = PaymentId::new();
        let amount =
            i64::try_from(request.amount.to_sat()).map_err(|_| BankError::InvalidAmount)?;
        let limit_i64 = i64::try_from(limit.to_sat()).map_err(|_| BankError::InvalidAmount)?;
        let row = sqlx::query(
            "WITH existing AS ( \
                SELECT id, sender_wallet_id, recipient_wallet_id, amount_sats, memo, status, \
                       transaction_id, failure_reason \
                FROM intraledger_payments \
                WHERE sender_account_id = $1 AND idempotency_key = $2), \
             recipient AS ( \
                SELECT a.status FROM accounts a JOIN wallets w ON w.account_id = a.id \
                WHERE w.id = $3), \
             used AS ( \
                SELECT coalesce(sum(amount_sats), 0)::bigint AS used FROM intraledger_payments \
                WHERE sender_account_id = $1 AND status <> 'FAILURE' \
                  AND created_at > now() - interval '24 hours'), \
             ins AS ( \
                INSERT INTO intraledger_payments (id, sender_account_id, sender_wallet_id, \
                  recipient_wallet_id, amount_sats, memo, idempotency_key, status) \
                SELECT $4, $1, $5, $3, $6, $7, $2, 'PENDING' \
                WHERE NOT EXISTS (SELECT 1 FROM existing) AND $8 \
                  AND (SELECT status FROM recipient) IN ('ACTIVE', 'LOCKED') \
                  AND (SELECT used FROM used) + $6 <= $9 \
                RETURNING id) \
             SELECT e.id, e.sender_wallet_id, e.recipient_wallet_id, e.amount_sats, e.memo, \
                    e.status, e.transaction_id, e.failure_reason, \
                    (SELECT status FROM recipient), (SELECT used FROM used), \
                    EXISTS (SELECT 1 FROM ins) \
             FROM (SELECT 1) AS one LEFT JOIN existing e ON TRUE",
        )
        .bind(principal.account_id.as_uuid())
        .bind(&request.idempotency_key)
        .bind(recipient.as_uuid())
        .bind(id.as_uuid())
        .bind(request.wallet_id.as_uuid())
        .bind(amount)
        .bind(&memo)
        .bind(status == AccountStatus::Active)
        .bind(limit_i64)
        .fetch_one(&mut *tx)
        .await?;

        let existing: Option<Uuid> = row.try_get(0)?;
        if let Some(existing) = existing {
            tx.commit().await?;
            let same = row.try_get::<Uuid, _>(1)? == request.wallet_id.as_uuid()
                && row.try_get::<Uuid, _>(2)? == recipient.as_uuid()
                && sats_from_db(row.try_get(3)?)? == request.amount
                && row.try_get::<String, _>(4)? == memo;
            if !same {
                return Err(BankError::IdempotencyConflict);
            }
            let id = PaymentId::from_uuid(existing);
            let state: String = row.try_get(5)?;
            let transaction: Option<Uuid> = row.try_get(6)?;
            return match state.as_str() {
                "SUCCESS" => Ok(PaymentResult {
                    status: PaymentStatus::AlreadyPaid,
                    payment_id: id,
                    transaction_id: transaction.map(TransactionId::from_uuid),
                }),
                "PENDING" => {
                    self.finish(Pending {
                        id,
                        sender: request.wallet_id,
                        recipient,
                        amount: request.amount,
                        memo,
                    })
                    .await
                }
                _ => {
                    let reason: Option<String> = row.try_get(7)?;
                    Err(match reason.as_deref() {
                        Some(FAILURE_INSUFFICIENT) => BankError::InsufficientBalance,
                        _ => BankError::Corrupt("failed payment without a reason".into()),
                    })
                }
            };
        }
        let inserted: bool = row.try_get(10)?;
        if !inserted {
            // Nothing was written; say why, in the order the rules are checked.
            if status != AccountStatus::Active {
                return Err(BankError::AccountNotActive {
                    status: status.as_str(),
                });
            }
            let recipient_status: Option<String> = row.try_get(8)?;
            match recipient_status.as_deref() {
                None => return Err(BankError::NotFound { what: "recipient" }),
                Some("CLOSED") => return Err(BankError::RecipientUnavailable),
                Some(_) => {}
            }
            let used = sats_from_db(row.try_get(9)?)?;
            return Err(BankError::LimitExceeded {
                limit,
                used,
                amount: request.amount,
            });
        }
        tx.commit().await?;
        self.finish(Pending {
            id,
            sender: request.wallet_id,
            recipient,
            amount: request.amount,
            memo,
        })
        .await
    }

    /// Posts a pending payment to the ledger and records the outcome.
    async fn finish(&self, p: Pending) -> Result<PaymentResult, BankError> {
        let posting = Posting::builder(system::MAIN_JOURNAL, format!("intraledger:{}", p.id))
            .description(p.memo.clone())
            .metadata(serde_json::json!({ "type": "intraledger", "payment_id": p.id }))
            .debit(Bank::ledger_account(p.sender), p.amount.to_msats())
            .credit(Bank::ledger_account(p.recipient), p.amount.to_msats())
            .build()
            .map_err(LedgerError::from)?;
        match self.ledger.post(posting).await {
            Ok(posted) => {
                sqlx::query(
                    "UPDATE intraledger_payments SET status = 'SUCCESS', transaction_id = $2 \
                     WHERE id = $1 AND status = 'PENDING'",
                )
                .bind(p.id.as_uuid())
                .bind(posted.id.as_uuid())
                .execute(&self.pool)
                .await?;
                Ok(PaymentResult {
                    status: PaymentStatus::Success,
                    payment_id: p.id,
                    transaction_id: Some(posted.id),
                })
            }
            Err(LedgerError::InsufficientBalance { .. }) => {
                sqlx::query(
                    "UPDATE intraledger_payments SET status = 'FAILURE', failure_reason = $2 \
                     WHERE id = $1 AND status = 'PENDING'",
                )
                .bind(p.id.as_uuid())
                .bind(FAILURE_INSUFFICIENT)
                .execute(&self.pool)
                .await?;
                Err(BankError::InsufficientBalance)
            }
            // Anything else leaves the payment PENDING, to be finished later.
            Err(e) => Err(e.into()),
        }
    }

    /// Finishes every PENDING payment (after a crash or a ledger outage). Safe to run at
    /// any time: the ledger posting of a payment is idempotent.
    ///
    /// # Errors
    /// The first error that stops a payment from finishing.
    pub async fn resume_pending_payments(&self) -> Result<usize, BankError> {
        let rows = sqlx::query(
            "SELECT id, sender_wallet_id, recipient_wallet_id, amount_sats, memo \
             FROM intraledger_payments WHERE status = 'PENDING' ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut finished = 0;
        for r in rows {
            let p = Pending {
                id: PaymentId::from_uuid(r.try_get(0)?),
                sender: WalletId::from_uuid(r.try_get(1)?),
                recipient: WalletId::from_uuid(r.try_get(2)?),
                amount: sats_from_db(r.try_get(3)?)?,
                memo: r.try_get(4)?,
            };
            match self.finish(p).await {
                Ok(_) | Err(BankError::InsufficientBalance) => finished += 1,
                Err(e) => return Err(e),
            }
        }
        Ok(finished)
    }

    /// A wallet's transactions, newest first: `first` lines after the cursor `after`.
    ///
    /// # Errors
    /// [`BankError::Forbidden`] without the read scope; [`BankError::NotFound`] for a
    /// wallet that is not the caller's; [`BankError::Invalid`] for a bad cursor.
    pub async fn transactions(
        &self,
        principal: &Principal,
        wallet: WalletId,
        first: u32,
        after: Option<&str>,
    ) -> Result<TransactionPage, BankError> {
        principal.require(Scope::Read)?;
        self.wallet(principal, wallet).await?;
        self.wallet_transactions(wallet, first, after).await
    }

    /// The line of one transaction in a wallet's history, if the transaction touched it.
    ///
    /// # Errors
    /// [`BankError::Database`].
    pub async fn sender_transaction(
        &self,
        wallet: WalletId,
        transaction: TransactionId,
    ) -> Result<Option<WalletTransaction>, BankError> {
        // Lines strictly before (transaction, i16::MAX): the first is this transaction's,
        // if it has one on this wallet.
        let cursor = encode_cursor(HistoryCursor {
            transaction_id: transaction,
            seq: i16::MAX,
        });
        let page = self.wallet_transactions(wallet, 1, Some(&cursor)).await?;
        Ok(page.lines.into_iter().find(|l| l.id == transaction))
    }

    /// A wallet's transactions without an ownership check (staff and internal use).
    ///
    /// # Errors
    /// [`BankError::Invalid`] for a bad cursor.
    pub async fn wallet_transactions(
        &self,
        wallet: WalletId,
        first: u32,
        after: Option<&str>,
    ) -> Result<TransactionPage, BankError> {
        let first = first.clamp(1, 100);
        let cursor = after.map(decode_cursor).transpose()?;
        let mut lines = self
            .ledger
            .history(Bank::ledger_account(wallet), first + 1, cursor)
            .await?;
        let has_next_page = lines.len() > first as usize;
        lines.truncate(first as usize);
        let ids: Vec<Uuid> = lines.iter().map(|l| l.transaction_id.as_uuid()).collect();
        let parties = sqlx::query(
            "SELECT p.transaction_id, p.sender_wallet_id, p.recipient_wallet_id, \
                    sa.username, ra.username \
             FROM intraledger_payments p \
             JOIN accounts sa ON sa.id = p.sender_account_id \
             JOIN wallets rw ON rw.id = p.recipient_wallet_id \
             JOIN accounts ra ON ra.id = rw.account_id \
             WHERE p.transaction_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let mut by_tx = std::collections::HashMap::new();
        for r in parties {
            let tx: Uuid = r.try_get(0)?;
            let sender: Uuid = r.try_get(1)?;
            let recipient: Uuid = r.try_get(2)?;
            let s_name: Option<String> = r.try_get(3)?;
            let r_name: Option<String> = r.try_get(4)?;
            by_tx.insert(tx, (sender, recipient, s_name, r_name));
        }
        let lines = lines
            .into_iter()
            .map(|l| {
                let direction = match l.direction {
                    Direction::Debit => TxDirection::Send,
                    Direction::Credit => TxDirection::Receive,
                };
                let (counterparty_wallet_id, counterparty_username) =
                    match by_tx.get(&l.transaction_id.as_uuid()) {
                        Some((s, r, s_name, r_name)) => match direction {
                            TxDirection::Send => (Some(WalletId::from_uuid(*r)), r_name.clone()),
                            TxDirection::Receive => (Some(WalletId::from_uuid(*s)), s_name.clone()),
                        },
                        None => (None, None),
                    };
                WalletTransaction {
                    id: l.transaction_id,
                    direction,
                    status: match l.layer {
                        crate::ledger::Layer::Settled => "SUCCESS",
                        crate::ledger::Layer::Pending => "PENDING",
                    },
                    amount: l.amount.to_sats_floor(),
                    fee: Sats::ZERO,
                    memo: l.description.clone(),
                    counterparty_wallet_id,
                    counterparty_username,
                    created_at: l.created_at,
                    cursor: encode_cursor(l.cursor()),
                }
            })
            .collect();
        Ok(TransactionPage {
            lines,
            has_next_page,
        })
    }
}
