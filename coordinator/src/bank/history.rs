//! A wallet's history: its ledger lines, newest first, with the payment behind each
//! (an internal transfer's other party, a Lightning payment's hash, request and preimage).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use super::lightning::{LnLine, LnShow};
use super::payments::EXTERNAL_ID_PREFIX;
use super::types::{ParseError, Scope};
use super::{Bank, BankError, Principal};
use crate::amount::Sats;
use crate::ids::{TransactionId, WalletId};
use crate::ledger::{Direction, HistoryCursor};

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
    /// The Lightning payment behind it, if any.
    pub lightning: Option<LnLine>,
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

impl Bank {
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
        // A few lines: some lines of a transaction are not shown (a Lightning payment's
        // released hold), and the shown one may come after them.
        let page = self.wallet_transactions(wallet, 4, Some(&cursor)).await?;
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
        // The payment behind each line, named by the posting's external id (the payment
        // row's own transaction id is recorded later, by the settler).
        let ids: Vec<Uuid> = lines
            .iter()
            .filter_map(|l| l.external_id.strip_prefix(EXTERNAL_ID_PREFIX)?.parse().ok())
            .collect();
        let parties = sqlx::query(
            "SELECT p.id, p.sender_wallet_id, p.recipient_wallet_id, \
                    sa.username AS sender_username, ra.username AS recipient_username \
             FROM intraledger_payments p \
             JOIN accounts sa ON sa.id = p.sender_account_id \
             JOIN wallets rw ON rw.id = p.recipient_wallet_id \
             JOIN accounts ra ON ra.id = rw.account_id \
             WHERE p.id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let mut by_payment = std::collections::HashMap::new();
        for r in parties {
            let payment: Uuid = r.try_get("id")?;
            let sender: Uuid = r.try_get("sender_wallet_id")?;
            let recipient: Uuid = r.try_get("recipient_wallet_id")?;
            let s_name: Option<String> = r.try_get("sender_username")?;
            let r_name: Option<String> = r.try_get("recipient_username")?;
            by_payment.insert(payment, (sender, recipient, s_name, r_name));
        }
        let ln = self.ln_history(&lines).await?;
        let lines = lines
            .into_iter()
            .filter_map(|l| {
                let direction = match l.direction {
                    Direction::Debit => TxDirection::Send,
                    Direction::Credit => TxDirection::Receive,
                };
                let (counterparty_wallet_id, counterparty_username) = match l
                    .external_id
                    .strip_prefix(EXTERNAL_ID_PREFIX)
                    .and_then(|id| id.parse::<Uuid>().ok())
                    .and_then(|id| by_payment.get(&id))
                {
                    Some((s, r, s_name, r_name)) => match direction {
                        TxDirection::Send => (Some(WalletId::from_uuid(*r)), r_name.clone()),
                        TxDirection::Receive => (Some(WalletId::from_uuid(*s)), s_name.clone()),
                    },
                    None => (None, None),
                };
                let mut line = WalletTransaction {
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
                    lightning: None,
                };
                match ln.get(&(l.transaction_id, l.seq)) {
                    Some(LnShow::Hide) => return None,
                    Some(LnShow::Line {
                        status,
                        amount,
                        fee,
                        counterparty,
                        ln,
                    }) => {
                        line.status = status;
                        line.amount = *amount;
                        line.fee = *fee;
                        // A failed payment's line is its release (a credit): still a send.
                        if *status == "FAILURE" {
                            line.direction = TxDirection::Send;
                        }
                        line.counterparty_wallet_id = *counterparty;
                        line.lightning = Some(ln.clone());
                    }
                    None => {}
                }
                Some(line)
            })
            .collect();
        Ok(TransactionPage {
            lines,
            has_next_page,
        })
    }
}
