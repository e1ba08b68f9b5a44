//! Payments to LNURLs and Lightning addresses, with Blink's names (`lnurlPaymentSend`,
//! `lnAddressPaymentSend`). The bank fetches the payRequest, asks its callback for an
//! invoice, verifies that invoice and pays it like `lnInvoicePaymentSend`.

use async_graphql::{Context, InputObject, Object, Result};

use super::accounts::parse_wallet_id;
use super::lightning::{send_failed, send_payload};
use super::payments::{PaymentSendPayload, PaymentSendResult};
use super::{payload_error_at, principal};
use crate::Sats;
use crate::api::errors::ApiError;
use crate::api::gql::scalars::{SatAmount, WalletIdScalar};
use crate::api::gql::types::app;
use crate::bank::{BankError, Scope};
use crate::lnurl::{LnAddress, LnurlError, MAX_TARGET_LEN, PayTarget};

/// Input of `lnurlPaymentSend`.
#[derive(InputObject, Debug)]
pub struct LnurlPaymentSendInput {
    /// Amount in satoshis.
    amount: SatAmount,
    /// Lnurl string to send to.
    lnurl: String,
    /// Wallet ID to send bitcoin from.
    wallet_id: WalletIdScalar,
}

/// Input of `lnAddressPaymentSend`.
#[derive(InputObject, Debug)]
pub struct LnAddressPaymentSendInput {
    /// Amount in satoshis.
    amount: SatAmount,
    /// Lightning address to send to.
    ln_address: String,
    /// Wallet ID to send bitcoin from.
    wallet_id: WalletIdScalar,
}

fn failure_at(e: ApiError, field: &str) -> PaymentSendPayload {
    PaymentSendPayload {
        errors: payload_error_at(e, &["input", field]),
        status: Some(PaymentSendResult::Failure),
        transaction: None,
    }
}

/// Where in the input an LNURL error belongs.
fn field_of(e: &LnurlError, target_field: &'static str) -> Option<&'static str> {
    match e {
        LnurlError::InvalidTarget(_) | LnurlError::InsecureUrl | LnurlError::UnknownUser => {
            Some(target_field)
        }
        LnurlError::AmountOutOfRange { .. } | LnurlError::FractionalAmount => Some("amount"),
        _ => None,
    }
}

async fn send(
    ctx: &Context<'_>,
    wallet_id: &WalletIdScalar,
    amount: SatAmount,
    target: Result<PayTarget, LnurlError>,
    target_field: &'static str,
) -> Result<PaymentSendPayload> {
    let p = principal(ctx, Scope::Write)?;
    let w = match parse_wallet_id(wallet_id, "walletId") {
        Ok(w) => w,
        Err(e) => return Ok(failure_at(e, "walletId")),
    };
    let amount = match Sats::new(amount.0) {
        Ok(a) if a != Sats::ZERO => a,
        _ => {
            return Ok(failure_at(
                ApiError::from(&BankError::InvalidAmount),
                "amount",
            ));
        }
    };
    let target = match target {
        Ok(t) => t,
        Err(e) => return Ok(failure_at(ApiError::from(&e), target_field)),
    };
    let state = app(ctx);
    let Some(lnurl) = state.lnurl.as_deref() else {
        return Ok(send_failed(&BankError::LightningUnavailable));
    };
    match lnurl.pay(&state.bank, &p, w, &target, amount).await {
        Ok(r) => send_payload(ctx, w, Ok(r)).await,
        Err(LnurlError::Bank(e)) => send_payload(ctx, w, Err(e)).await,
        Err(e) => {
            let api = ApiError::from(&e);
            // Nothing was paid: every LNURL check runs before the bank is asked to pay.
            Ok(PaymentSendPayload {
                errors: match field_of(&e, target_field) {
                    Some(f) => payload_error_at(api, &["input", f]),
                    None => super::payload_error(api),
                },
                status: Some(PaymentSendResult::Failure),
                transaction: None,
            })
        }
    }
}

fn bounded(s: &str) -> Result<&str, LnurlError> {
    if s.len() > MAX_TARGET_LEN {
        Err(LnurlError::InvalidTarget("too long"))
    } else {
        Ok(s)
    }
}

/// The LNURL payments.
#[derive(Debug, Default)]
pub struct LnurlMutation;

#[Object]
impl LnurlMutation {
    /// Sends a payment to a lightning address.
    async fn ln_address_payment_send(
        &self,
        ctx: &Context<'_>,
        input: LnAddressPaymentSendInput,
    ) -> Result<PaymentSendPayload> {
        let target = bounded(&input.ln_address)
            .and_then(str::parse::<LnAddress>)
            .map(PayTarget::Address);
        send(ctx, &input.wallet_id, input.amount, target, "lnAddress").await
    }

    /// Sends a payment to a lightning address.
    async fn lnurl_payment_send(
        &self,
        ctx: &Context<'_>,
        input: LnurlPaymentSendInput,
    ) -> Result<PaymentSendPayload> {
        let target = bounded(&input.lnurl).and_then(PayTarget::parse_lnurl);
        send(ctx, &input.wallet_id, input.amount, target, "lnurl").await
    }
}
