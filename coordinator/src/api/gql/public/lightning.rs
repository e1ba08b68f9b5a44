//! Lightning payments of the public schema, with Blink's names: fee probes, payments
//! (`lnInvoicePaymentSend`, `lnNoAmountInvoicePaymentSend`) and invoice status by hash or
//! payment request. Invoices are created and cancelled in [`super::invoices`].

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};

use super::accounts::parse_wallet_id;
use super::payments::{PaymentSendPayload, PaymentSendResult};
use super::{ErrorInterface, payload_error, payload_error_at, principal};
use crate::Sats;
use crate::api::errors::ApiError;
use crate::api::gql::scalars::{
    LnPaymentRequestScalar, MemoScalar, PaymentHashScalar, SatAmount, WalletIdScalar,
};
use crate::api::gql::types::{InvoicePaymentStatus, Transaction, app};
use crate::bank::lightning::{LnInvoiceView, LnPayRequest, LnPayResult, LnPayStatus};
use crate::bank::{BankError, Scope};
use crate::lightning::PaymentHash;

/// An amount in satoshis, or why there is none.
#[derive(SimpleObject, Clone, Debug)]
pub struct SatAmountPayload {
    amount: Option<SatAmount>,
    errors: Vec<ErrorInterface>,
}

/// Input of `lnInvoiceFeeProbe`.
#[derive(InputObject, Debug)]
pub struct LnInvoiceFeeProbeInput {
    payment_request: LnPaymentRequestScalar,
    wallet_id: WalletIdScalar,
}

/// Input of `lnNoAmountInvoiceFeeProbe`.
#[derive(InputObject, Debug)]
pub struct LnNoAmountInvoiceFeeProbeInput {
    amount: SatAmount,
    payment_request: LnPaymentRequestScalar,
    wallet_id: WalletIdScalar,
}

/// Input of `lnInvoicePaymentSend`.
#[derive(InputObject, Debug)]
pub struct LnInvoicePaymentInput {
    /// Optional memo to associate with the lightning invoice.
    memo: Option<MemoScalar>,
    /// Payment request representing the invoice which is being paid.
    payment_request: LnPaymentRequestScalar,
    /// Wallet ID with sufficient balance to cover amount of invoice. Must belong to the
    /// account of the current user.
    wallet_id: WalletIdScalar,
}

/// Input of `lnNoAmountInvoicePaymentSend`.
#[derive(InputObject, Debug)]
pub struct LnNoAmountInvoicePaymentInput {
    /// Amount to pay in satoshis.
    amount: SatAmount,
    /// Optional memo to associate with the lightning invoice.
    memo: Option<MemoScalar>,
    /// Payment request representing the invoice which is being paid.
    payment_request: LnPaymentRequestScalar,
    /// Wallet ID with sufficient balance to cover amount defined in mutation request.
    /// Must belong to the account of the current user.
    wallet_id: WalletIdScalar,
}

pub(super) fn parse_hash(s: &PaymentHashScalar) -> Result<PaymentHash, ApiError> {
    s.0.parse()
        .map_err(|_| ApiError::invalid("paymentHash must be 64 hex digits"))
}

pub(super) fn amount(a: SatAmount) -> Result<Sats, ApiError> {
    Sats::new(a.0).map_err(|_| ApiError::from(&BankError::InvalidAmount))
}

/// Where in the input a bank error belongs, for the payload's `path`.
fn field_of(e: &BankError) -> Option<&'static str> {
    match e {
        BankError::InvalidAmount => Some("amount"),
        BankError::Invalid(p) => match p.what {
            "memo" => Some("memo"),
            "expiresIn" => Some("expiresIn"),
            "externalId" => Some("externalId"),
            "payment request" => Some("paymentRequest"),
            _ => None,
        },
        _ => None,
    }
}

pub(super) fn errors_of(e: &BankError) -> Vec<ErrorInterface> {
    match field_of(e) {
        Some(f) => payload_error_at(ApiError::from(e), &["input", f]),
        None => payload_error(ApiError::from(e)),
    }
}

/// The Lightning mutations.
#[derive(Debug, Default)]
pub struct LightningMutation;

#[Object]
impl LightningMutation {
    /// The fee paying this invoice would cost now.
    async fn ln_invoice_fee_probe(
        &self,
        ctx: &Context<'_>,
        input: LnInvoiceFeeProbeInput,
    ) -> Result<SatAmountPayload> {
        probe(ctx, &input.wallet_id, &input.payment_request, None).await
    }

    /// The fee paying this no-amount invoice with `amount` would cost now.
    async fn ln_no_amount_invoice_fee_probe(
        &self,
        ctx: &Context<'_>,
        input: LnNoAmountInvoiceFeeProbeInput,
    ) -> Result<SatAmountPayload> {
        let a = match amount(input.amount) {
            Ok(a) => a,
            Err(e) => {
                return Ok(SatAmountPayload {
                    amount: None,
                    errors: payload_error_at(e, &["input", "amount"]),
                });
            }
        };
        probe(ctx, &input.wallet_id, &input.payment_request, Some(a)).await
    }

    /// Pay a lightning invoice using a balance from a wallet which is owned by the
    /// account of the current user. The amount plus a fee reserve is held until the
    /// payment settles; the unused reserve is returned. Returns SUCCESS, FAILURE,
    /// PENDING or ALREADY_PAID.
    async fn ln_invoice_payment_send(
        &self,
        ctx: &Context<'_>,
        input: LnInvoicePaymentInput,
    ) -> Result<PaymentSendPayload> {
        pay(
            ctx,
            &input.wallet_id,
            input.payment_request.0,
            None,
            input.memo,
        )
        .await
    }

    /// Pay a lightning invoice without an amount, with `amount`, using a balance from a
    /// wallet which is owned by the account of the current user.
    async fn ln_no_amount_invoice_payment_send(
        &self,
        ctx: &Context<'_>,
        input: LnNoAmountInvoicePaymentInput,
    ) -> Result<PaymentSendPayload> {
        let a = match amount(input.amount) {
            Ok(a) => a,
            Err(e) => {
                return Ok(PaymentSendPayload {
                    errors: payload_error_at(e, &["input", "amount"]),
                    status: Some(PaymentSendResult::Failure),
                    transaction: None,
                });
            }
        };
        pay(
            ctx,
            &input.wallet_id,
            input.payment_request.0,
            Some(a),
            input.memo,
        )
        .await
    }
}

async fn probe(
    ctx: &Context<'_>,
    wallet_id: &WalletIdScalar,
    request: &LnPaymentRequestScalar,
    amount: Option<Sats>,
) -> Result<SatAmountPayload> {
    let p = principal(ctx, Scope::Read)?;
    let w = match parse_wallet_id(wallet_id, "walletId") {
        Ok(w) => w,
        Err(e) => {
            return Ok(SatAmountPayload {
                amount: None,
                errors: payload_error_at(e, &["input", "walletId"]),
            });
        }
    };
    Ok(
        match app(ctx).bank.ln_fee_probe(&p, w, &request.0, amount).await {
            Ok(fee) => SatAmountPayload {
                amount: Some(SatAmount(fee.to_sat())),
                errors: Vec::new(),
            },
            Err(e) => SatAmountPayload {
                amount: None,
                errors: errors_of(&e),
            },
        },
    )
}

async fn pay(
    ctx: &Context<'_>,
    wallet_id: &WalletIdScalar,
    payment_request: String,
    amount: Option<Sats>,
    memo: Option<MemoScalar>,
) -> Result<PaymentSendPayload> {
    let p = principal(ctx, Scope::Write)?;
    let w = match parse_wallet_id(wallet_id, "walletId") {
        Ok(w) => w,
        Err(e) => {
            return Ok(PaymentSendPayload {
                errors: payload_error_at(e, &["input", "walletId"]),
                status: Some(PaymentSendResult::Failure),
                transaction: None,
            });
        }
    };
    let request = LnPayRequest {
        wallet_id: w,
        payment_request,
        amount,
        memo: memo.map(|m| m.0),
    };
    let outcome = app(ctx).bank.ln_send(&p, &request).await;
    send_payload(ctx, w, outcome).await
}

/// The payload of a Lightning send (shared with the LNURL payments).
pub(super) async fn send_payload(
    ctx: &Context<'_>,
    w: crate::ids::WalletId,
    outcome: Result<LnPayResult, BankError>,
) -> Result<PaymentSendPayload> {
    let bank = &app(ctx).bank;
    match outcome {
        Ok(r) => {
            let transaction = match r.transaction_id {
                Some(t) if ctx.look_ahead().field("transaction").exists() => bank
                    .sender_transaction(w, t)
                    .await
                    .ok()
                    .flatten()
                    .map(Transaction::new),
                _ => None,
            };
            let (status, errors) = match r.status {
                LnPayStatus::Success => (PaymentSendResult::Success, Vec::new()),
                LnPayStatus::AlreadyPaid => (PaymentSendResult::AlreadyPaid, Vec::new()),
                LnPayStatus::Pending => (PaymentSendResult::Pending, Vec::new()),
                LnPayStatus::Failure => (
                    PaymentSendResult::Failure,
                    payload_error(ApiError::payment_failed(r.failure.unwrap_or("FAILED"))),
                ),
            };
            Ok(PaymentSendPayload {
                errors,
                status: Some(status),
                transaction,
            })
        }
        Err(e) => Ok(send_failed(&e)),
    }
}

/// The payload of a send the bank refused: FAILURE when nothing can have moved (a
/// refusal, or no node), no status when the outcome is unknown.
pub(super) fn send_failed(e: &BankError) -> PaymentSendPayload {
    let api = ApiError::from(e);
    let status = (api.http_status < 500 || matches!(e, BankError::LightningUnavailable))
        .then_some(PaymentSendResult::Failure);
    PaymentSendPayload {
        errors: errors_of(e),
        status,
        transaction: None,
    }
}

/// Input of `lnInvoicePaymentStatusByHash`.
#[derive(InputObject, Debug)]
pub struct LnInvoicePaymentStatusByHashInput {
    pub(super) payment_hash: PaymentHashScalar,
}

/// Input of `lnInvoicePaymentStatusByPaymentRequest`.
#[derive(InputObject, Debug)]
pub struct LnInvoicePaymentStatusByPaymentRequestInput {
    pub(super) payment_request: LnPaymentRequestScalar,
}

/// The status of an invoice of the bank.
#[derive(SimpleObject, Clone, Debug)]
pub struct LnInvoicePaymentStatus {
    payment_hash: Option<PaymentHashScalar>,
    payment_request: Option<LnPaymentRequestScalar>,
    status: Option<InvoicePaymentStatus>,
    /// Our extension of Blink's type: the proof of payment, once paid.
    payment_preimage: Option<crate::api::gql::scalars::LnPaymentPreImageScalar>,
}

impl LnInvoicePaymentStatus {
    pub(crate) fn of(v: &LnInvoiceView) -> LnInvoicePaymentStatus {
        LnInvoicePaymentStatus {
            payment_hash: Some(PaymentHashScalar(v.payment_hash.to_string())),
            payment_request: Some(LnPaymentRequestScalar(v.payment_request.clone())),
            status: Some(v.status.into()),
            payment_preimage: v
                .preimage
                .as_ref()
                .map(|p| crate::api::gql::scalars::LnPaymentPreImageScalar(p.to_hex())),
        }
    }
}

/// The Lightning queries. Blink answers them without a credential: the payment hash or
/// request is what the payer holds.
#[derive(Debug, Default)]
pub struct LightningQuery;

#[Object]
impl LightningQuery {
    /// The status of an invoice of this bank, by payment hash.
    async fn ln_invoice_payment_status_by_hash(
        &self,
        ctx: &Context<'_>,
        input: LnInvoicePaymentStatusByHashInput,
    ) -> Result<LnInvoicePaymentStatus> {
        let hash = parse_hash(&input.payment_hash).map_err(|e| e.to_graphql())?;
        let v = app(ctx)
            .bank
            .ln_invoice_by_hash(&hash)
            .await
            .map_err(crate::api::gql::types::gql)?;
        Ok(LnInvoicePaymentStatus::of(&v))
    }

    /// The status of an invoice of this bank, by payment request.
    async fn ln_invoice_payment_status_by_payment_request(
        &self,
        ctx: &Context<'_>,
        input: LnInvoicePaymentStatusByPaymentRequestInput,
    ) -> Result<LnInvoicePaymentStatus> {
        let v = app(ctx)
            .bank
            .ln_invoice_by_request(&input.payment_request.0)
            .await
            .map_err(crate::api::gql::types::gql)?;
        Ok(LnInvoicePaymentStatus::of(&v))
    }
}
