//! Receiving over Lightning: invoices for a wallet (`lnInvoiceCreate` and its no-amount
//! and on-behalf-of-recipient forms), their cancellation and status, and the credit of a
//! settled invoice (called by the settlement watcher, watch.rs).

use chrono::{DateTime, Utc};
use sqlx::Row;
use uuid::Uuid;

use super::{Bank, BankError, hash_bytes, hash_from_db, lightning_error, msats_from_db};
use crate::amount::{Msats, Sats};
use crate::bank::Principal;
use crate::bank::types::ParseError;
use crate::ids::{TransactionId, WalletId};
use crate::ledger::{LedgerError, Posting, system};
use crate::lightning::{InvoiceDescription, InvoiceRequest, PaymentHash, Preimage, SettledInvoice};

/// Longest memo: what fits in a BOLT 11 description field.
pub const MAX_INVOICE_MEMO_LEN: usize = 639;

/// A new invoice.
#[derive(Clone, Debug, Default)]
pub struct InvoiceCreate {
    /// The wallet it credits.
    pub wallet_id: Option<WalletId>,
    /// The amount; `None` for a no-amount invoice.
    pub amount: Option<Sats>,
    /// A memo shown to the payer.
    pub memo: Option<String>,
    /// Instead of a memo: the hash of a longer description (LNURL-pay).
    pub description_hash: Option<[u8; 32]>,
    /// Lifetime in minutes.
    pub expires_in_minutes: Option<u32>,
    /// The creator's reference, unique per wallet; asking again with it returns the same
    /// invoice.
    pub external_id: Option<String>,
}

/// Blink's `InvoicePaymentStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvoiceStatus {
    /// Payable.
    Pending,
    /// Paid.
    Paid,
    /// No longer payable (expired or cancelled).
    Expired,
}

/// An invoice of a wallet.
#[derive(Clone, Debug)]
pub struct LnInvoiceView {
    /// Payment hash.
    pub payment_hash: PaymentHash,
    /// BOLT 11 request.
    pub payment_request: String,
    /// The invoice's payment secret (not the preimage).
    pub payment_secret: [u8; 32],
    /// Amount asked, if any.
    pub amount: Option<Sats>,
    /// Memo.
    pub memo: String,
    /// Creator's reference.
    pub external_id: String,
    /// The wallet it credits.
    pub wallet_id: WalletId,
    /// Status now.
    pub status: InvoiceStatus,
    /// Proof of payment, once paid.
    pub preimage: Option<Preimage>,
    /// The ledger transaction that credited it.
    pub transaction_id: Option<TransactionId>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Stops being payable.
    pub expires_at: DateTime<Utc>,
}

const INVOICE_COLUMNS: &str = "payment_hash, wallet_id, payment_request, payment_secret, \
    amount_msats, memo, external_id, status, paid_via, preimage, transaction_id, created_at, \
    expires_at";

impl LnInvoiceView {
    fn from_row(r: &sqlx::postgres::PgRow) -> Result<LnInvoiceView, BankError> {
        let expires_at: DateTime<Utc> = r.try_get("expires_at")?;
        let paid_via: Option<String> = r.try_get("paid_via")?;
        let transaction_id: Option<Uuid> = r.try_get("transaction_id")?;
        let status = match r.try_get::<String, _>("status")?.as_str() {
            // Claimed by a payment from a wallet of this bank whose posting has not
            // committed: it may still fail and free the invoice, so not PAID yet (a status
            // stream ends at PAID and must not see it taken back).
            "PAID" if paid_via.as_deref() == Some("INTRALEDGER") && transaction_id.is_none() => {
                InvoiceStatus::Pending
            }
            "PAID" => InvoiceStatus::Paid,
            "CANCELLED" => InvoiceStatus::Expired,
            _ if expires_at <= Utc::now() => InvoiceStatus::Expired,
            _ => InvoiceStatus::Pending,
        };
        let secret: Vec<u8> = r.try_get("payment_secret")?;
        let preimage: Option<Vec<u8>> = r.try_get("preimage")?;
        Ok(LnInvoiceView {
            payment_hash: hash_from_db(&r.try_get::<Vec<u8>, _>("payment_hash")?)?,
            payment_request: r.try_get("payment_request")?,
            payment_secret: <[u8; 32]>::try_from(secret.as_slice())
                .map_err(|_| BankError::Corrupt("payment secret length".into()))?,
            amount: r
                .try_get::<Option<i64>, _>("amount_msats")?
                .map(|m| msats_from_db(m).map(Msats::to_sats_floor))
                .transpose()?,
            memo: r.try_get("memo")?,
            external_id: r.try_get("external_id")?,
            wallet_id: WalletId::from_uuid(r.try_get("wallet_id")?),
            status,
            preimage: preimage
                .map(|p| {
                    <[u8; 32]>::try_from(p.as_slice())
                        .map(Preimage)
                        .map_err(|_| BankError::Corrupt("preimage length".into()))
                })
                .transpose()?,
            transaction_id: transaction_id.map(TransactionId::from_uuid),
            created_at: r.try_get("created_at")?,
            expires_at,
        })
    }
}

fn invalid(what: &'static str, why: &'static str) -> BankError {
    BankError::Invalid(ParseError { what, why })
}

/// The ledger external id of an invoice's credit.
pub(super) fn receive_external_id(hash: &PaymentHash) -> String {
    format!("lnrecv:{hash}")
}

impl Bank {
    /// Creates an invoice for one of the caller's wallets (`principal`), or for any
    /// wallet of the bank (`None`: Blink's on-behalf-of-recipient forms, which need no
    /// credential: whoever holds a wallet id may ask for an invoice that pays it).
    ///
    /// # Errors
    /// [`BankError::Forbidden`] without the receive scope; [`BankError::NotFound`] for a
    /// wallet that is not the caller's (or not the bank's); [`BankError::Invalid`] for a
    /// bad memo, expiry or external id; [`BankError::InvalidAmount`];
    /// [`BankError::RecipientUnavailable`] for a closed account;
    /// [`BankError::IdempotencyConflict`] for an external id used for another invoice;
    /// [`BankError::LightningUnavailable`].
    pub async fn ln_invoice_create(
        &self,
        principal: Option<&Principal>,
        request: &InvoiceCreate,
    ) -> Result<LnInvoiceView, BankError> {
        let rail = self.rail()?;
        let wallet = request
            .wallet_id
            .ok_or(BankError::NotFound { what: "wallet" })?;
        match principal {
            Some(p) => {
                self.receiving_wallet(p, wallet).await?;
            }
            None => self.payable_wallet(wallet).await?,
        }
        let memo = request.memo.clone().unwrap_or_default();
        if memo.len() > MAX_INVOICE_MEMO_LEN {
            return Err(invalid("memo", "longer than 639 bytes"));
        }
        let amount = match request.amount {
            Some(a) if a == Sats::ZERO => return Err(BankError::InvalidAmount),
            Some(a) => Some(a.to_msats()),
            None => None,
        };
        let expiry = match request.expires_in_minutes {
            None => rail.config.default_expiry,
            Some(0) => return Err(invalid("expiresIn", "must be at least one minute")),
            Some(m) => {
                let e = std::time::Duration::from_secs(u64::from(m) * 60);
                if e > rail.config.max_expiry {
                    return Err(invalid("expiresIn", "longer than the bank allows"));
                }
                e
            }
        };
        if let Some(id) = &request.external_id {
            if id.is_empty() || id.len() > 100 {
                return Err(invalid("externalId", "must be 1 to 100 characters"));
            }
            if let Some(existing) = self.invoice_by_external_id(wallet, id).await? {
                let same = existing.amount == request.amount
                    && (existing.memo == memo || request.description_hash.is_some());
                return if same {
                    Ok(existing)
                } else {
                    Err(BankError::IdempotencyConflict)
                };
            }
        }
        let description = match request.description_hash {
            Some(h) => InvoiceDescription::Hash(h),
            None => InvoiceDescription::Memo(memo.clone()),
        };
        let created = rail
            .node
            .create_invoice(&InvoiceRequest {
                amount,
                description,
                expiry,
            })
            .await
            .map_err(lightning_error)?;
        let decoded = rail.decode(&created.payment_request)?;
        if decoded.payment_hash != created.payment_hash {
            return Err(BankError::Corrupt(
                "the node's invoice names another payment hash".into(),
            ));
        }
        let external_id = request
            .external_id
            .clone()
            .unwrap_or_else(|| created.payment_hash.to_string());
        let row = sqlx::query(&format!(
            "INSERT INTO ln_invoices (payment_hash, wallet_id, payment_request, payment_secret, \
                 amount_msats, memo, external_id, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (wallet_id, external_id) DO NOTHING \
             RETURNING {INVOICE_COLUMNS}"
        ))
        .bind(hash_bytes(&created.payment_hash))
        .bind(wallet.as_uuid())
        .bind(&created.payment_request)
        .bind(decoded.payment_secret.to_vec())
        .bind(amount.map(Msats::to_i64))
        .bind(&memo)
        .bind(&external_id)
        .bind(decoded.expires_at)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(r) => LnInvoiceView::from_row(&r),
            // A concurrent request with the same external id won: the node's invoice is
            // left unused (it expires), and the caller gets the one that was recorded.
            None => {
                let _ = rail.node.cancel_invoice(&created.payment_hash).await;
                self.invoice_by_external_id(wallet, &external_id)
                    .await?
                    .ok_or_else(|| BankError::Corrupt("invoice vanished".into()))
            }
        }
    }

    /// A wallet of the bank that can be paid (its account is not closed).
    async fn payable_wallet(&self, wallet: WalletId) -> Result<(), BankError> {
        let status: Option<String> = sqlx::query_scalar(
            "SELECT a.status FROM wallets w JOIN accounts a ON a.id = w.account_id \
             WHERE w.id = $1",
        )
        .bind(wallet.as_uuid())
        .fetch_optional(&self.pool)
        .await?;
        match status.as_deref() {
            None => Err(BankError::NotFound { what: "wallet" }),
            Some("CLOSED") => Err(BankError::RecipientUnavailable),
            Some(_) => Ok(()),
        }
    }

    async fn invoice_by_external_id(
        &self,
        wallet: WalletId,
        external_id: &str,
    ) -> Result<Option<LnInvoiceView>, BankError> {
        sqlx::query(&format!(
            "SELECT {INVOICE_COLUMNS} FROM ln_invoices WHERE wallet_id = $1 AND external_id = $2"
        ))
        .bind(wallet.as_uuid())
        .bind(external_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| LnInvoiceView::from_row(&r))
        .transpose()
    }

    /// An invoice of the bank by payment hash, whoever owns it (Blink's
    /// `lnInvoicePaymentStatusByHash` needs no credential: the hash is the capability).
    ///
    /// # Errors
    /// [`BankError::NotFound`] for a hash the bank did not issue.
    pub async fn ln_invoice_by_hash(&self, hash: &PaymentHash) -> Result<LnInvoiceView, BankError> {
        sqlx::query(&format!(
            "SELECT {INVOICE_COLUMNS} FROM ln_invoices WHERE payment_hash = $1"
        ))
        .bind(hash_bytes(hash))
        .fetch_optional(&self.pool)
        .await?
        .map(|r| LnInvoiceView::from_row(&r))
        .transpose()?
        .ok_or(BankError::NotFound { what: "invoice" })
    }

    /// An invoice of the bank by its payment request.
    ///
    /// # Errors
    /// [`BankError::Invalid`] for a request that does not decode; [`BankError::NotFound`].
    pub async fn ln_invoice_by_request(&self, request: &str) -> Result<LnInvoiceView, BankError> {
        let decoded = self.rail()?.decode(request)?;
        self.ln_invoice_by_hash(&decoded.payment_hash).await
    }

    /// A wallet's invoices, newest first: `first` after the invoice `after` (a payment
    /// hash). The caller checks that the viewer may read the wallet.
    ///
    /// # Errors
    /// [`BankError::Invalid`] for a bad cursor; [`BankError::Database`].
    pub async fn ln_wallet_invoices(
        &self,
        wallet: WalletId,
        first: u32,
        after: Option<&str>,
    ) -> Result<Vec<LnInvoiceView>, BankError> {
        let after = after
            .map(|a| {
                a.parse::<PaymentHash>()
                    .map_err(|_| invalid("after", "not a cursor of this list"))
            })
            .transpose()?;
        let rows = sqlx::query(&format!(
            "SELECT {INVOICE_COLUMNS} FROM ln_invoices i WHERE wallet_id = $1 \
               AND ($3::bytea IS NULL OR (created_at, payment_hash) < \
                    (SELECT created_at, payment_hash FROM ln_invoices \
                     WHERE payment_hash = $3 AND wallet_id = $1)) \
             ORDER BY created_at DESC, payment_hash DESC LIMIT $2"
        ))
        .bind(wallet.as_uuid())
        .bind(i64::from(first.clamp(1, 100)))
        .bind(after.map(|h| hash_bytes(&h)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(LnInvoiceView::from_row).collect()
    }

    /// Cancels an unpaid invoice of one of the caller's wallets: the node refuses payments
    /// to it from now on.
    ///
    /// # Errors
    /// [`BankError::Forbidden`] without the receive scope; [`BankError::NotFound`];
    /// [`BankError::InvoiceAlreadyPaid`]; [`BankError::LightningUnavailable`].
    pub async fn ln_invoice_cancel(
        &self,
        principal: &Principal,
        wallet: WalletId,
        hash: &PaymentHash,
    ) -> Result<(), BankError> {
        let rail = self.rail()?;
        self.receiving_wallet(principal, wallet).await?;
        let invoice = self.ln_invoice_by_hash(hash).await?;
        if invoice.wallet_id != wallet {
            return Err(BankError::NotFound { what: "invoice" });
        }
        if invoice.status == InvoiceStatus::Paid {
            return Err(BankError::InvoiceAlreadyPaid);
        }
        rail.node
            .cancel_invoice(hash)
            .await
            .map_err(lightning_error)?;
        // Only an unpaid invoice is cancelled here; a payment from a wallet of this bank
        // may have claimed it since it was read (its status showed PENDING until posted).
        let status: String = sqlx::query_scalar(
            "WITH cancelled AS (UPDATE ln_invoices SET status = 'CANCELLED' \
                 WHERE payment_hash = $1 AND status = 'PENDING' RETURNING status) \
             SELECT coalesce((SELECT status FROM cancelled), \
                 (SELECT status FROM ln_invoices WHERE payment_hash = $1))",
        )
        .bind(hash_bytes(hash))
        .fetch_one(&self.pool)
        .await?;
        if status == "PAID" {
            return Err(BankError::InvoiceAlreadyPaid);
        }
        Ok(())
    }

    /// Credits a settled invoice to its wallet, once: claims the invoice row for Lightning
    /// (unless the bank paid it internally first), then posts `lnrecv:<hash>`, which the
    /// ledger takes once. Safe to call again for the same settlement.
    ///
    /// Returns the credited wallet and transaction, or `None` for a settlement the bank
    /// cannot credit (an invoice it did not issue, or one paid inside the bank first:
    /// the node then holds funds that no wallet owns, which the logs report).
    ///
    /// # Errors
    /// [`BankError::Database`], [`BankError::Ledger`]: the settlement stays unhandled
    /// and is offered again.
    pub async fn ln_credit_settlement(
        &self,
        s: &SettledInvoice,
    ) -> Result<Option<(WalletId, TransactionId)>, BankError> {
        let amount = i64::try_from(s.amount.to_msat()).map_err(|_| BankError::InvalidAmount)?;
        let claimed = sqlx::query(
            "UPDATE ln_invoices SET status = 'PAID', paid_via = 'LIGHTNING', paid_msats = $2, \
                 preimage = $3, paid_at = coalesce(paid_at, now()) \
             WHERE payment_hash = $1 AND (status <> 'PAID' OR paid_via = 'LIGHTNING') \
             RETURNING wallet_id, memo",
        )
        .bind(hash_bytes(&s.payment_hash))
        .bind(amount)
        .bind(s.preimage.0.to_vec())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = claimed else {
            tracing::warn!(
                payment_hash = %s.payment_hash,
                amount_msat = s.amount.to_msat(),
                "settlement for an invoice the bank did not issue or paid internally: not credited"
            );
            return Ok(None);
        };
        let wallet = WalletId::from_uuid(row.try_get("wallet_id")?);
        let memo: String = row.try_get("memo")?;
        let posting = Posting::builder(system::MAIN_JOURNAL, receive_external_id(&s.payment_hash))
            .description(memo)
            .metadata(serde_json::json!({
                "type": "ln_receive",
                "payment_hash": s.payment_hash.to_string(),
            }))
            .debit(system::BANK_LIGHTNING, s.amount)
            .credit(Bank::ledger_account(wallet), s.amount)
            .build()
            .map_err(LedgerError::from)?;
        let posted = self.ledger.post(posting).await?;
        sqlx::query("UPDATE ln_invoices SET transaction_id = $2 WHERE payment_hash = $1")
            .bind(hash_bytes(&s.payment_hash))
            .bind(posted.id.as_uuid())
            .execute(&self.pool)
            .await?;
        if !posted.replayed {
            metrics::counter!("bastion_lightning_received_total").increment(1);
        }
        Ok(Some((wallet, posted.id)))
    }
}
