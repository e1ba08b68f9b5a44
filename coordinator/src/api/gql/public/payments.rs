//! Internal transfers.

use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject};

use super::accounts::parse_wallet_id;
use super::{ErrorInterface, meta, payload_error, payload_error_at, principal};
use crate::Sats;
use crate::api::errors::ApiError;
use crate::api::gql::scalars::{MemoScalar, SatAmount, WalletIdScalar};
use crate::api::gql::types::{Transaction, app};
use crate::api::payments::send_payment;
use crate::bank::{BankError, PaymentStatus, Recipient, Scope, SendRequest};

/// Outcome of a payment.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "PaymentSendResult")]
pub enum PaymentSendResult {
    /// Paid before with the same idempotency key: nothing moved this time.
    AlreadyPaid,
    /// Refused: see `errors`. Nothing moved.
    Failure,
    /// Accepted, not yet posted; it completes later.
    Pending,
    /// Paid now.
    Success,
}

/// Result of a payment.
#[derive(SimpleObject, Clone, Debug)]
pub struct PaymentSendPayload {
    /// Why it failed.
    pub errors: Vec<ErrorInterface>,
    /// What happened.
    pub status: Option<PaymentSendResult>,
    /// The sender's side of the transaction (when the credential may read).
    pub transaction: Option<Transaction>,
}

impl PaymentSendPayload {
    fn failure(e: Vec<ErrorInterface>) -> PaymentSendPayload {
        PaymentSendPayload {
            errors: e,
            status: Some(PaymentSendResult::Failure),
            transaction: None,
        }
    }
}

/// An internal transfer.
#[derive(InputObject, Clone, Debug)]
pub struct IntraLedgerPaymentSendInput {
    /// Amount in satoshis.
    pub amount: SatAmount,
    /// Optional memo to be attached to the payment.
    pub memo: Option<MemoScalar>,
    /// The recipient's wallet.
    pub recipient_wallet_id: WalletIdScalar,
    /// The wallet ID of the sender.
    pub wallet_id: WalletIdScalar,
    /// Our extension (not in Blink): an idempotency key. Sending again with the same key
    /// returns `ALREADY_PAID` and moves nothing. The HTTP `Idempotency-Key` header does
    /// the same for clients that cannot add fields; if both are given they must agree.
    pub idempotency_key: Option<String>,
}

/// Payment mutations.
#[derive(Debug, Default)]
pub struct PaymentMutation;

#[Object]
impl PaymentMutation {
    /// Actions a payment which is internal to the ledger. Returns SUCCESS, FAILURE (with
    /// errors; nothing moved), PENDING or ALREADY_PAID (an idempotent replay); a null
    /// status with an error means the outcome is unknown (retry with the same key).
    async fn intra_ledger_payment_send(
        &self,
        ctx: &Context<'_>,
        input: IntraLedgerPaymentSendInput,
    ) -> Result<PaymentSendPayload> {
        let p = principal(ctx, Scope::Write)?;
        let header_key = meta(ctx).idempotency_key.clone();
        let key = match (header_key, input.idempotency_key.clone()) {
            (Some(h), Some(f)) if h != f => {
                return Ok(PaymentSendPayload::failure(payload_error_at(
                    ApiError::invalid("the Idempotency-Key header and idempotencyKey differ"),
                    &["input", "idempotencyKey"],
                )));
            }
            (h, f) => h.or(f),
        };
        let wallet = match parse_wallet_id(&input.wallet_id, "walletId") {
            Ok(w) => w,
            Err(e) => {
                return Ok(PaymentSendPayload::failure(payload_error_at(
                    e,
                    &["input", "walletId"],
                )));
            }
        };
        let to = match parse_wallet_id(&input.recipient_wallet_id, "recipientWalletId") {
            Ok(w) => w,
            Err(e) => {
                return Ok(PaymentSendPayload::failure(payload_error_at(
                    e,
                    &["input", "recipientWalletId"],
                )));
            }
        };
        let Ok(amount) = Sats::new(input.amount.0) else {
            return Ok(PaymentSendPayload::failure(payload_error_at(
                ApiError::from(&BankError::InvalidAmount),
                &["input", "amount"],
            )));
        };
        let request = SendRequest {
            wallet_id: wallet,
            recipient: Recipient::Wallet(to),
            amount,
            memo: input.memo.map(|m| m.0),
            idempotency_key: key,
        };
        // The sender's history line costs three more queries: only when selected.
        let want_line = ctx.look_ahead().field("transaction").exists();
        match send_payment(app(ctx), &p, request, want_line).await {
            Ok((status, _, transaction)) => Ok(PaymentSendPayload {
                errors: Vec::new(),
                status: Some(match status {
                    PaymentStatus::Success => PaymentSendResult::Success,
                    PaymentStatus::AlreadyPaid => PaymentSendResult::AlreadyPaid,
                    PaymentStatus::Pending => PaymentSendResult::Pending,
                }),
                transaction: transaction.map(Transaction::new),
            }),
            Err(e) => {
                let api = ApiError::from(&e);
                // A server-side failure (e.g. OUTCOME_UNKNOWN) may have moved the money or
                // not: the status is left null rather than claiming FAILURE; the client
                // retries with the same idempotency key to learn the outcome.
                let status = (api.http_status < 500).then_some(PaymentSendResult::Failure);
                Ok(PaymentSendPayload {
                    errors: payload_error(api),
                    status,
                    transaction: None,
                })
            }
        }
    }
}
