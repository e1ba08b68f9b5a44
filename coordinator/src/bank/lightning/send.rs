//! Paying over Lightning (`lnInvoicePaymentSend`, `lnNoAmountInvoicePaymentSend`) and
//! the fee probes.
//!
//! A payment is a row (`ln_payments`) and at most three ledger postings (mod.rs). The row
//! is written first, under the account's lock, with the withdrawal limit checked and the
//! invoice's one live attempt claimed (a unique index on the payment hash); then the hold;
//! then the node is called; then the final posting settles it. A crash anywhere leaves a
//! PENDING row that the reconciler (watch.rs) finishes from the node's own record of the
//! payment, on any instance.
//!
//! An invoice of the bank's own node is paid inside the ledger: its invoice row is claimed
//! in the same transaction as the payment row, so a payment over Lightning that arrives
//! later is not credited twice (receive.rs).

use sqlx::Row;
use uuid::Uuid;

use super::receive::InvoiceStatus;
use super::{Bank, BankError, hash_bytes, lightning_error, msats_from_db};
use crate::amount::{Msats, Sats};
use crate::bank::Principal;
use crate::bank::types::{AccountStatus, Level, ParseError, Scope};
use crate::ids::{PaymentId, TransactionId, WalletId};
use crate::lightning::{DecodedInvoice, PaymentHash};

/// A payment out.
#[derive(Clone, Debug)]
pub struct LnPayRequest {
    /// The paying wallet (the caller's).
    pub wallet_id: WalletId,
    /// BOLT 11 payment request.
    pub payment_request: String,
    /// The amount, for a no-amount invoice (and only then).
    pub amount: Option<Sats>,
    /// A memo for the payer's own history.
    pub memo: Option<String>,
}

/// Blink's `PaymentSendResult`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LnPayStatus {
    /// Paid now.
    Success,
    /// This invoice was paid before, by this account.
    AlreadyPaid,
    /// Sent, outcome not known yet: the funds stay held until it is.
    Pending,
    /// Not paid; the held funds were returned.
    Failure,
}

/// The outcome of a send.
#[derive(Clone, Debug)]
pub struct LnPayResult {
    /// What happened.
    pub status: LnPayStatus,
    /// The payment.
    pub payment_id: PaymentId,
    /// Why it failed, for [`LnPayStatus::Failure`].
    pub failure: Option<&'static str>,
    /// The ledger transaction that settled it, once settled.
    pub transaction_id: Option<TransactionId>,
}

/// A PENDING payment as stored.
#[derive(Clone, Debug)]
pub(super) struct LnPending {
    pub(super) id: PaymentId,
    pub(super) hash: PaymentHash,
    pub(super) wallet: WalletId,
    pub(super) payment_request: String,
    pub(super) amount: Msats,
    pub(super) fee_reserve: Msats,
    pub(super) internal_recipient: Option<WalletId>,
    pub(super) memo: String,
    /// Whether the invoice asked for no amount (the node is told the amount then).
    pub(super) no_amount: bool,
}

pub(super) const PENDING_COLUMNS: &str = "id, payment_hash, wallet_id, payment_request, \
    amount_msats, fee_reserve_msats, internal_recipient, memo";

impl LnPending {
    /// What the payment holds in the pending layer: the amount plus the fee reserve.
    pub(super) fn held(&self) -> Result<Msats, BankError> {
        self.amount
            .checked_add(self.fee_reserve)
            .map_err(|_| BankError::InvalidAmount)
    }

    pub(super) fn from_row(
        r: &sqlx::postgres::PgRow,
        network: bitcoin::Network,
    ) -> Result<LnPending, BankError> {
        let payment_request: String = r.try_get("payment_request")?;
        let no_amount = crate::lightning::decode_invoice(&payment_request, network)
            .map(|d| d.amount.is_none())
            .map_err(|e| BankError::Corrupt(format!("stored payment request: {e}")))?;
        Ok(LnPending {
            id: PaymentId::from_uuid(r.try_get("id")?),
            hash: super::hash_from_db(&r.try_get::<Vec<u8>, _>("payment_hash")?)?,
            wallet: WalletId::from_uuid(r.try_get("wallet_id")?),
            payment_request,
            amount: msats_from_db(r.try_get("amount_msats")?)?,
            fee_reserve: msats_from_db(r.try_get("fee_reserve_msats")?)?,
            internal_recipient: r
                .try_get::<Option<Uuid>, _>("internal_recipient")?
                .map(WalletId::from_uuid),
            memo: r.try_get("memo")?,
            no_amount,
        })
    }
}

fn invalid(why: &'static str) -> BankError {
    BankError::Invalid(ParseError {
        what: "payment request",
        why,
    })
}

pub(super) fn hold_id(id: PaymentId) -> String {
    format!("lnsend:{id}:hold")
}

pub(super) fn final_id(id: PaymentId) -> String {
    format!("lnsend:{id}:final")
}

pub(super) fn internal_id(id: PaymentId) -> String {
    format!("lnsend:{id}:internal")
}

impl Bank {
    /// The amount a request pays: the invoice's own, or the caller's for a no-amount one.
    fn ln_amount(decoded: &DecodedInvoice, amount: Option<Sats>) -> Result<Msats, BankError> {
        match (decoded.amount, amount) {
            (Some(_), Some(_)) => Err(invalid("has an amount: use the payment without one")),
            (None, None) => Err(invalid("has no amount: give one")),
            (Some(a), None) => {
                if a == Msats::ZERO {
                    Err(BankError::InvalidAmount)
                } else {
                    Ok(a)
                }
            }
            (None, Some(a)) if a == Sats::ZERO => Err(BankError::InvalidAmount),
            (None, Some(a)) => Ok(a.to_msats()),
        }
    }

    /// What paying this invoice would cost in fees: nothing for an invoice of the bank's
    /// own node, else the node's probe.
    ///
    /// # Errors
    /// [`BankError::Forbidden`] without the read scope; [`BankError::NotFound`] for a
    /// wallet not the caller's; [`BankError::Invalid`]; [`BankError::InvoiceExpired`];
    /// [`BankError::NoRoute`]; [`BankError::LightningUnavailable`].
    pub async fn ln_fee_probe(
        &self,
        principal: &Principal,
        wallet: WalletId,
        payment_request: &str,
        amount: Option<Sats>,
    ) -> Result<Sats, BankError> {
        let rail = self.rail()?;
        self.wallet(principal, wallet).await?;
        let decoded = rail.decode(payment_request)?;
        if decoded.is_expired(chrono::Utc::now()) {
            return Err(BankError::InvoiceExpired);
        }
        let amount = Bank::ln_amount(&decoded, amount)?;
        if decoded.payee == rail.pubkey {
            return Ok(Sats::ZERO);
        }
        let fee = rail
            .node
            .probe_fee(&decoded, amount)
            .await
            .map_err(lightning_error)?;
        // Round up: the fee shown must not be less than what will be charged.
        let sats = fee.to_msat().div_ceil(1_000);
        Sats::new(sats).map_err(|_| BankError::InvalidAmount)
    }

    /// Pays an invoice from one of the caller's wallets.
    ///
    /// # Errors
    /// [`BankError::Forbidden`] without the write scope; [`BankError::NotFound`];
    /// [`BankError::Invalid`] for a malformed, wrong-network or amount-mismatched request;
    /// [`BankError::InvoiceExpired`]; [`BankError::InvoiceAlreadyPaid`] when another
    /// account pays or paid it; [`BankError::SelfPayment`]; [`BankError::LimitExceeded`];
    /// [`BankError::AccountNotActive`]; [`BankError::InsufficientBalance`];
    /// [`BankError::LightningUnavailable`] (nothing moved). A failure over Lightning is not
    /// an error: it is [`LnPayStatus::Failure`], with the funds returned. A node lost after
    /// the funds were held, when it cannot say whether it took the payment, is
    /// [`LnPayStatus::Pending`]: the reconciler finishes the payment when it is back.
    pub async fn ln_send(
        &self,
        principal: &Principal,
        request: &LnPayRequest,
    ) -> Result<LnPayResult, BankError> {
        principal.require(Scope::Write)?;
        let rail = self.rail()?;
        let decoded = rail.decode(&request.payment_request)?;
        let amount = Bank::ln_amount(&decoded, request.amount)?;
        let memo = request.memo.clone().unwrap_or_default();
        if memo.len() > crate::bank::MAX_MEMO_LEN {
            return Err(BankError::Invalid(ParseError {
                what: "memo",
                why: "longer than 1000 bytes",
            }));
        }
        self.own_wallet(principal, request.wallet_id).await?;
        let internal = decoded.payee == rail.pubkey;
        if decoded.is_expired(chrono::Utc::now()) {
            return Err(BankError::InvoiceExpired);
        }
        if !internal {
            // Refuse before writing anything when the node is down.
            rail.node.info().await.map_err(lightning_error)?;
        }
        let fee_reserve = if internal {
            Msats::ZERO
        } else {
            rail.config.fee_reserve(amount)?
        };
        let (pending, fresh) = match self
            .ln_reserve(
                principal,
                request,
                &decoded,
                amount,
                fee_reserve,
                &memo,
                internal,
            )
            .await?
        {
            Reserved::New(p) => (p, true),
            Reserved::Existing(result) => return Ok(result),
            // A retry of a payment still PENDING: finish it from what the node knows.
            Reserved::Resume(p) => (p, false),
        };
        if pending.internal_recipient.is_some() {
            self.ln_finish_internal(rail, &pending).await
        } else {
            self.ln_finish_external(rail, &pending, fresh).await
        }
    }

    /// Writes the PENDING payment row: account locked, status and withdrawal limit
    /// checked, the invoice's one live attempt claimed, and for an invoice of the bank's
    /// own node its invoice row claimed too. One transaction.
    #[allow(clippy::too_many_arguments)]
    async fn ln_reserve(
        &self,
        principal: &Principal,
        request: &LnPayRequest,
        decoded: &DecodedInvoice,
        amount: Msats,
        fee_reserve: Msats,
        memo: &str,
        internal: bool,
    ) -> Result<Reserved, BankError> {
        let mut tx = self.pool.begin().await?;
        let account = sqlx::query("SELECT status, level FROM accounts WHERE id = $1 FOR UPDATE")
            .bind(principal.account_id.as_uuid())
            .fetch_one(&mut *tx)
            .await?;
        let status: AccountStatus = account.try_get::<String, _>("status")?.parse()?;
        if status != AccountStatus::Active {
            return Err(BankError::AccountNotActive {
                status: status.as_str(),
            });
        }
        // The invoice's live attempt, if there is one.
        let existing = sqlx::query(&format!(
            "SELECT {PENDING_COLUMNS}, account_id, status, transaction_id FROM ln_payments \
             WHERE payment_hash = $1 AND status <> 'FAILURE'"
        ))
        .bind(hash_bytes(&decoded.payment_hash))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(r) = existing {
            if r.try_get::<Uuid, _>("account_id")? != principal.account_id.as_uuid() {
                return Err(BankError::InvoiceAlreadyPaid);
            }
            let id = PaymentId::from_uuid(r.try_get("id")?);
            return Ok(match r.try_get::<String, _>("status")?.as_str() {
                "SUCCESS" => Reserved::Existing(LnPayResult {
                    status: LnPayStatus::AlreadyPaid,
                    payment_id: id,
                    failure: None,
                    transaction_id: r
                        .try_get::<Option<Uuid>, _>("transaction_id")?
                        .map(TransactionId::from_uuid),
                }),
                _ => Reserved::Resume(LnPending::from_row(&r, self.rail()?.config.network)?),
            });
        }
        let level = u8::try_from(account.try_get::<i16, _>("level")?)
            .map_err(|_| BankError::Corrupt("account level".into()))
            .and_then(|l| Level::new(l).map_err(BankError::from))?;
        let limit = self.config.limits.of(level).withdrawal;
        let used: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(amount_msats), 0)::bigint FROM ln_payments \
             WHERE account_id = $1 AND status <> 'FAILURE' \
               AND internal_recipient IS NULL AND created_at > now() - interval '24 hours'",
        )
        .bind(principal.account_id.as_uuid())
        .fetch_one(&mut *tx)
        .await?;
        let used = msats_from_db(used)?;
        if !internal
            && used
                .checked_add(amount)
                .map_err(|_| BankError::InvalidAmount)?
                > limit.to_msats()
        {
            return Err(BankError::LimitExceeded {
                limit,
                used: used.to_sats_floor(),
                amount: amount.to_sats_floor(),
            });
        }
        let id = PaymentId::new();
        let mut internal_recipient = None;
        if internal {
            let claimed = sqlx::query(
                "UPDATE ln_invoices SET status = 'PAID', paid_via = 'INTRALEDGER', \
                     paid_msats = $2, paid_at = now() \
                 WHERE payment_hash = $1 AND status = 'PENDING' AND expires_at > now() \
                   AND (amount_msats IS NULL OR amount_msats = $2) \
                 RETURNING wallet_id",
            )
            .bind(hash_bytes(&decoded.payment_hash))
            .bind(amount.to_i64())
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = claimed else {
                let invoice = self.ln_invoice_by_hash(&decoded.payment_hash).await;
                return Err(match invoice.map(|i| i.status) {
                    Ok(InvoiceStatus::Paid) => BankError::InvoiceAlreadyPaid,
                    Ok(_) => BankError::InvoiceExpired,
                    Err(_) => invalid("names the bank's node but no invoice of the bank"),
                });
            };
            let recipient = WalletId::from_uuid(row.try_get("wallet_id")?);
            if recipient == request.wallet_id {
                return Err(BankError::SelfPayment);
            }
            internal_recipient = Some(recipient);
        }
        sqlx::query(
            "INSERT INTO ln_payments (id, payment_hash, account_id, wallet_id, payment_request, \
                 amount_msats, fee_reserve_msats, memo, internal_recipient, next_check_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + $10 * interval '1 second')",
        )
        .bind(id.as_uuid())
        .bind(hash_bytes(&decoded.payment_hash))
        .bind(principal.account_id.as_uuid())
        .bind(request.wallet_id.as_uuid())
        .bind(&decoded.payment_request)
        .bind(amount.to_i64())
        .bind(fee_reserve.to_i64())
        .bind(memo)
        .bind(internal_recipient.map(|w| w.as_uuid()))
        .bind(self.rail()?.config.reconcile_grace.as_secs_f64())
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            // A concurrent attempt on the same invoice committed first.
            sqlx::Error::Database(d) if d.constraint() == Some("ln_payments_live_hash") => {
                BankError::InvoiceAlreadyPaid
            }
            _ => BankError::from(e),
        })?;
        tx.commit().await?;
        Ok(Reserved::New(LnPending {
            id,
            hash: decoded.payment_hash,
            wallet: request.wallet_id,
            payment_request: decoded.payment_request.clone(),
            amount,
            fee_reserve,
            internal_recipient,
            memo: memo.to_string(),
            no_amount: decoded.amount.is_none(),
        }))
    }

    /// The stored state of a payment of the caller's account, by payment hash.
    ///
    /// # Errors
    /// [`BankError::NotFound`].
    pub async fn ln_payment_status(
        &self,
        principal: &Principal,
        hash: &PaymentHash,
    ) -> Result<(LnPayStatus, Option<Sats>), BankError> {
        principal.require(Scope::Read)?;
        let row = sqlx::query(
            "SELECT status, fee_msats FROM ln_payments WHERE payment_hash = $1 AND account_id = $2 \
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(hash_bytes(hash))
        .bind(principal.account_id.as_uuid())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(BankError::NotFound { what: "payment" })?;
        let status = match row.try_get::<String, _>("status")?.as_str() {
            "SUCCESS" => LnPayStatus::Success,
            "FAILURE" => LnPayStatus::Failure,
            _ => LnPayStatus::Pending,
        };
        let fee = row
            .try_get::<Option<i64>, _>("fee_msats")?
            .map(|f| msats_from_db(f).map(Msats::to_sats_floor))
            .transpose()?;
        Ok((status, fee))
    }
}

enum Reserved {
    New(LnPending),
    Existing(LnPayResult),
    Resume(LnPending),
}
