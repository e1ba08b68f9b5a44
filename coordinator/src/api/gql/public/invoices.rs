//! Lightning invoices of the public schema, with Blink's names: `lnInvoiceCreate`,
//! `lnNoAmountInvoiceCreate`, their on-behalf-of-recipient forms and `lnInvoiceCancel`.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};

use super::accounts::parse_wallet_id;
use super::lightning::{amount, errors_of, parse_hash};
use super::{ErrorInterface, SuccessPayload, meta, payload_error, payload_error_at, principal};
use crate::api::errors::ApiError;
use crate::api::gql::scalars::{
    Hex32BytesScalar, MemoScalar, Minutes, PaymentHashScalar, SatAmount, TxExternalIdScalar,
    WalletIdScalar,
};
use crate::api::gql::types::{LnInvoice, LnNoAmountInvoice, app};
use crate::bank::Scope;
use crate::bank::lightning::{InvoiceCreate, LnInvoiceView};
use crate::lightning::PaymentHash;

/// An invoice, or why there is none.
#[derive(SimpleObject, Clone, Debug)]
pub struct LnInvoicePayload {
    errors: Vec<ErrorInterface>,
    invoice: Option<LnInvoice>,
}

/// A no-amount invoice, or why there is none.
#[derive(SimpleObject, Clone, Debug)]
pub struct LnNoAmountInvoicePayload {
    errors: Vec<ErrorInterface>,
    invoice: Option<LnNoAmountInvoice>,
}

/// Input of `lnInvoiceCreate`.
#[derive(InputObject, Debug)]
pub struct LnInvoiceCreateInput {
    /// Amount in satoshis.
    amount: SatAmount,
    /// Optional invoice expiration time in minutes.
    expires_in: Option<Minutes>,
    /// Optional external reference, unique per wallet.
    external_id: Option<TxExternalIdScalar>,
    /// Optional memo for the lightning invoice.
    memo: Option<MemoScalar>,
    /// Wallet ID for a BTC wallet belonging to the current account.
    wallet_id: WalletIdScalar,
}

/// Input of `lnNoAmountInvoiceCreate`.
#[derive(InputObject, Debug)]
pub struct LnNoAmountInvoiceCreateInput {
    /// Optional invoice expiration time in minutes.
    expires_in: Option<Minutes>,
    /// Optional external reference, unique per wallet.
    external_id: Option<TxExternalIdScalar>,
    /// Optional memo for the lightning invoice.
    memo: Option<MemoScalar>,
    /// ID for either a USD or BTC wallet belonging to the account of the current user.
    wallet_id: WalletIdScalar,
}

/// Input of `lnInvoiceCreateOnBehalfOfRecipient`.
#[derive(InputObject, Debug)]
pub struct LnInvoiceCreateOnBehalfOfRecipientInput {
    /// Amount in satoshis.
    amount: SatAmount,
    /// The hash of a longer description (LNURL-pay), used instead of the memo.
    description_hash: Option<Hex32BytesScalar>,
    /// Optional invoice expiration time in minutes.
    expires_in: Option<Minutes>,
    /// Optional external reference, unique per wallet.
    external_id: Option<TxExternalIdScalar>,
    /// Optional memo for the lightning invoice.
    memo: Option<MemoScalar>,
    /// Wallet ID for a BTC wallet which belongs to any account.
    recipient_wallet_id: WalletIdScalar,
}

/// Input of `lnNoAmountInvoiceCreateOnBehalfOfRecipient`.
#[derive(InputObject, Debug)]
pub struct LnNoAmountInvoiceCreateOnBehalfOfRecipientInput {
    /// Optional invoice expiration time in minutes.
    expires_in: Option<Minutes>,
    /// Optional external reference, unique per wallet.
    external_id: Option<TxExternalIdScalar>,
    /// Optional memo for the lightning invoice.
    memo: Option<MemoScalar>,
    /// ID for either a USD or BTC wallet which belongs to the account of any user.
    recipient_wallet_id: WalletIdScalar,
}

/// Input of `lnInvoiceCancel`.
#[derive(InputObject, Debug)]
pub struct LnInvoiceCancelInput {
    payment_hash: PaymentHashScalar,
    wallet_id: WalletIdScalar,
}

fn parse_hex32(s: &Hex32BytesScalar) -> Result<[u8; 32], ApiError> {
    s.0.parse::<PaymentHash>()
        .map(|h| h.0)
        .map_err(|_| ApiError::invalid("descriptionHash must be 64 hex digits"))
}

/// What the four invoice-create inputs carry, before checking: the inputs name the
/// wallet differently (`walletId`, or `recipientWalletId` on behalf of a recipient) and
/// only some carry an amount or a description hash.
struct CreateFields<'a> {
    wallet: &'a WalletIdScalar,
    wallet_field: &'static str,
    amount: Option<SatAmount>,
    description_hash: Option<&'a Hex32BytesScalar>,
    memo: Option<MemoScalar>,
    expires_in: Option<Minutes>,
    external_id: Option<TxExternalIdScalar>,
}

impl<'a> CreateFields<'a> {
    fn new(
        wallet: &'a WalletIdScalar,
        wallet_field: &'static str,
        memo: Option<MemoScalar>,
        expires_in: Option<Minutes>,
        external_id: Option<TxExternalIdScalar>,
    ) -> Self {
        CreateFields {
            wallet,
            wallet_field,
            amount: None,
            description_hash: None,
            memo,
            expires_in,
            external_id,
        }
    }

    fn amount(self, amount: SatAmount) -> Self {
        CreateFields {
            amount: Some(amount),
            ..self
        }
    }

    fn description_hash(self, hash: Option<&'a Hex32BytesScalar>) -> Self {
        CreateFields {
            description_hash: hash,
            ..self
        }
    }

    /// The bank's request, or the first input field that is wrong.
    fn request(self) -> Result<InvoiceCreate, (ApiError, &'static str)> {
        let wallet_id =
            parse_wallet_id(self.wallet, self.wallet_field).map_err(|e| (e, self.wallet_field))?;
        let amount = self
            .amount
            .map(amount)
            .transpose()
            .map_err(|e| (e, "amount"))?;
        let description_hash = self
            .description_hash
            .map(parse_hex32)
            .transpose()
            .map_err(|e| (e, "descriptionHash"))?;
        Ok(InvoiceCreate {
            wallet_id: Some(wallet_id),
            amount,
            memo: self.memo.map(|m| m.0),
            description_hash,
            expires_in_minutes: self.expires_in.map(|m| m.0),
            external_id: self.external_id.map(|e| e.0),
        })
    }
}

/// Creates an invoice for the caller's wallet, or (`on_behalf`) for any wallet without a
/// credential.
async fn create(
    ctx: &Context<'_>,
    on_behalf: bool,
    fields: CreateFields<'_>,
) -> Result<Result<LnInvoiceView, Vec<ErrorInterface>>> {
    let principal = if on_behalf {
        // Anyone may ask, so each one is counted against the caller's network first.
        let limited = app(ctx)
            .limiter
            .check_public_invoice(&meta(ctx).client)
            .await;
        if let Err(e) = limited {
            return Ok(Err(payload_error(e)));
        }
        None
    } else {
        Some(principal(ctx, Scope::Receive)?)
    };
    let request = match fields.request() {
        Ok(r) => r,
        Err((e, field)) => return Ok(Err(payload_error_at(e, &["input", field]))),
    };
    Ok(app(ctx)
        .bank
        .ln_invoice_create(principal.as_ref(), &request)
        .await
        .map_err(|e| errors_of(&e)))
}

fn with_amount(r: Result<LnInvoiceView, Vec<ErrorInterface>>) -> LnInvoicePayload {
    match r {
        Ok(v) => LnInvoicePayload {
            errors: Vec::new(),
            invoice: Some(LnInvoice::from(&v)),
        },
        Err(errors) => LnInvoicePayload {
            errors,
            invoice: None,
        },
    }
}

fn no_amount(r: Result<LnInvoiceView, Vec<ErrorInterface>>) -> LnNoAmountInvoicePayload {
    match r {
        Ok(v) => LnNoAmountInvoicePayload {
            errors: Vec::new(),
            invoice: Some(LnNoAmountInvoice::from(&v)),
        },
        Err(errors) => LnNoAmountInvoicePayload {
            errors,
            invoice: None,
        },
    }
}

/// The invoice mutations.
#[derive(Debug, Default)]
pub struct InvoiceMutation;

#[Object]
impl InvoiceMutation {
    /// Returns a lightning invoice for an associated wallet. When invoice is paid the
    /// value will be credited to a BTC wallet. Expires after 'expiresIn' or 24 hours.
    async fn ln_invoice_create(
        &self,
        ctx: &Context<'_>,
        input: LnInvoiceCreateInput,
    ) -> Result<LnInvoicePayload> {
        let fields = CreateFields::new(
            &input.wallet_id,
            "walletId",
            input.memo,
            input.expires_in,
            input.external_id,
        );
        Ok(with_amount(
            create(ctx, false, fields.amount(input.amount)).await?,
        ))
    }

    /// Returns a lightning invoice for an associated wallet. Can be used to receive any
    /// supported currency value (currently USD or BTC). Expires after 'expiresIn' or 24
    /// hours for BTC invoices.
    async fn ln_no_amount_invoice_create(
        &self,
        ctx: &Context<'_>,
        input: LnNoAmountInvoiceCreateInput,
    ) -> Result<LnNoAmountInvoicePayload> {
        let fields = CreateFields::new(
            &input.wallet_id,
            "walletId",
            input.memo,
            input.expires_in,
            input.external_id,
        );
        Ok(no_amount(create(ctx, false, fields).await?))
    }

    /// Returns a lightning invoice for an associated wallet. When invoice is paid the
    /// value will be credited to a BTC wallet. Expires after 'expiresIn' or 24 hours.
    /// Needs no credential: it pays the recipient, whoever asks. Rate-limited per client
    /// network.
    async fn ln_invoice_create_on_behalf_of_recipient(
        &self,
        ctx: &Context<'_>,
        input: LnInvoiceCreateOnBehalfOfRecipientInput,
    ) -> Result<LnInvoicePayload> {
        let fields = CreateFields::new(
            &input.recipient_wallet_id,
            "recipientWalletId",
            input.memo,
            input.expires_in,
            input.external_id,
        )
        .amount(input.amount)
        .description_hash(input.description_hash.as_ref());
        Ok(with_amount(create(ctx, true, fields).await?))
    }

    /// Returns a lightning invoice for an associated wallet, without an amount. Needs no
    /// credential. Rate-limited per client network.
    async fn ln_no_amount_invoice_create_on_behalf_of_recipient(
        &self,
        ctx: &Context<'_>,
        input: LnNoAmountInvoiceCreateOnBehalfOfRecipientInput,
    ) -> Result<LnNoAmountInvoicePayload> {
        let fields = CreateFields::new(
            &input.recipient_wallet_id,
            "recipientWalletId",
            input.memo,
            input.expires_in,
            input.external_id,
        );
        Ok(no_amount(create(ctx, true, fields).await?))
    }

    /// Cancel an unpaid lightning invoice for an associated wallet.
    async fn ln_invoice_cancel(
        &self,
        ctx: &Context<'_>,
        input: LnInvoiceCancelInput,
    ) -> Result<SuccessPayload> {
        let p = principal(ctx, Scope::Receive)?;
        let w = match parse_wallet_id(&input.wallet_id, "walletId") {
            Ok(w) => w,
            Err(e) => return Ok(SuccessPayload::failed(e)),
        };
        let hash = match parse_hash(&input.payment_hash) {
            Ok(h) => h,
            Err(e) => return Ok(SuccessPayload::failed(e)),
        };
        Ok(match app(ctx).bank.ln_invoice_cancel(&p, w, &hash).await {
            Ok(()) => SuccessPayload::ok(),
            Err(e) => SuccessPayload::failed(ApiError::from(&e)),
        })
    }
}
