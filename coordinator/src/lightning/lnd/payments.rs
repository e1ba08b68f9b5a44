//! Payments over LND's router: SendPaymentV2 (idempotent by hash: LND refuses a second
//! one with ALREADY_EXISTS, then TrackPaymentV2 answers the existing one), TrackPaymentV2,
//! TrackPayments, EstimateRouteFee.

use std::time::Duration;

use async_graphql::futures_util::stream::{BoxStream, StreamExt};
use bitcoin::hex::FromHex;
use fedimint_tonic_lnd::tonic::{Code, Streaming};
use fedimint_tonic_lnd::{lnrpc, routerrpc};

use super::LndNode;
use super::error::{call, from_status, non_negative};
use crate::amount::Msats;
use crate::lightning::{
    DecodedInvoice, LightningError, PayRequest, PaymentFailure, PaymentHash, PaymentState,
    PaymentUpdate, Preimage,
};

/// Our failure reason for LND's.
fn failure(reason: i32) -> PaymentFailure {
    use lnrpc::PaymentFailureReason as R;
    match R::try_from(reason) {
        Ok(R::FailureReasonNoRoute | R::FailureReasonInsufficientBalance) => {
            PaymentFailure::NoRoute
        }
        Ok(R::FailureReasonIncorrectPaymentDetails) => PaymentFailure::RecipientRejected,
        Ok(R::FailureReasonTimeout) => PaymentFailure::Timeout,
        _ => PaymentFailure::Other,
    }
}

/// A payment's state from LND's record, checked against the hash it should be for.
fn state_of(payment: &lnrpc::Payment, hash: &PaymentHash) -> Result<PaymentState, LightningError> {
    use lnrpc::payment::PaymentStatus as S;
    match S::try_from(payment.status) {
        Ok(S::Succeeded) => {
            let preimage = <[u8; 32]>::from_hex(&payment.payment_preimage)
                .map(Preimage)
                .map_err(|_| LightningError::Protocol("unreadable preimage".into()))?;
            if preimage.payment_hash() != *hash {
                return Err(LightningError::Protocol(format!(
                    "LND's preimage does not pay {hash}"
                )));
            }
            let fee = Msats::new(non_negative("fee", payment.fee_msat)?)
                .map_err(|e| LightningError::Protocol(format!("fee: {e}")))?;
            Ok(PaymentState::Succeeded { preimage, fee })
        }
        Ok(S::Failed) => Ok(PaymentState::Failed(failure(payment.failure_reason))),
        #[allow(deprecated)]
        Ok(S::InFlight | S::Initiated | S::Unknown) => Ok(PaymentState::InFlight),
        Err(_) => Err(LightningError::Protocol(format!(
            "payment status {}",
            payment.status
        ))),
    }
}

fn is_final(state: &PaymentState) -> bool {
    !matches!(state, PaymentState::InFlight)
}

/// Reads a payment stream until a final state; the last state seen if it ends first.
async fn until_final(
    mut stream: Streaming<lnrpc::Payment>,
    hash: &PaymentHash,
) -> Result<PaymentState, LightningError> {
    let mut state = PaymentState::InFlight;
    while let Some(item) = stream.next().await {
        let payment = item.map_err(|s| from_status(&s))?;
        state = state_of(&payment, hash)?;
        if is_final(&state) {
            break;
        }
    }
    Ok(state)
}

impl LndNode {
    async fn track(
        &self,
        hash: &PaymentHash,
        no_inflight_updates: bool,
    ) -> Result<Option<Streaming<lnrpc::Payment>>, LightningError> {
        let mut client = self.client.clone();
        let tracked = call(
            "TrackPaymentV2",
            self.config.request_timeout,
            client
                .router()
                .track_payment_v2(routerrpc::TrackPaymentRequest {
                    payment_hash: hash.0.to_vec(),
                    no_inflight_updates,
                }),
        )
        .await;
        match tracked {
            Ok(stream) => Ok(Some(stream)),
            Err(LightningError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(super) async fn send(&self, request: &PayRequest) -> Result<PaymentState, LightningError> {
        let amt_msat = request.amount.map_or(0, Msats::to_i64);
        let send = routerrpc::SendPaymentRequest {
            payment_request: request.payment_request.clone(),
            amt_msat,
            fee_limit_msat: request.max_fee.to_i64(),
            timeout_seconds: i32::try_from(self.config.payment_timeout.as_secs().max(1))
                .unwrap_or(i32::MAX),
            no_inflight_updates: true,
            ..Default::default()
        };
        let hash = request.payment_hash;
        // The wait for an outcome starts now; the start itself has the call timeout, so that
        // an InFlight answer always means LND took the payment.
        let deadline = tokio::time::Instant::now() + request.timeout;
        let mut client = self.client.clone();
        let started = tokio::time::timeout(
            self.config.request_timeout,
            client.router().send_payment_v2(send),
        )
        .await
        .map_err(|_| {
            LightningError::Unavailable("SendPaymentV2: no answer within the timeout".into())
        })?;
        let stream = match started {
            Ok(response) => response.into_inner(),
            // Paid or being paid already: answer that payment, do not pay again.
            Err(status) if status.code() == Code::AlreadyExists => {
                tracing::info!(%hash, "LND has this payment already; tracking it");
                match self.track(&hash, false).await? {
                    Some(stream) => stream,
                    None => return Err(from_status(&status)),
                }
            }
            Err(status) => return Err(from_status(&status)),
        };
        match tokio::time::timeout_at(deadline, until_final(stream, &hash)).await {
            Ok(result) => result,
            // Still in flight: the caller follows it with `payment`.
            Err(_) => Ok(PaymentState::InFlight),
        }
    }

    pub(super) async fn payment_state(
        &self,
        hash: &PaymentHash,
    ) -> Result<Option<PaymentState>, LightningError> {
        let Some(mut stream) = self.track(hash, false).await? else {
            return Ok(None);
        };
        // LND sends the current state first.
        let first = tokio::time::timeout(self.config.request_timeout, stream.next()).await;
        match first {
            Err(_) => Err(LightningError::Unavailable(
                "TrackPaymentV2: no state within the timeout".into(),
            )),
            Ok(None) => Err(LightningError::Protocol(
                "TrackPaymentV2 ended without a state".into(),
            )),
            Ok(Some(Err(status))) if status.code() == Code::NotFound => Ok(None),
            Ok(Some(Err(status))) => Err(from_status(&status)),
            Ok(Some(Ok(payment))) => state_of(&payment, hash).map(Some),
        }
    }

    pub(super) async fn updates(
        &self,
    ) -> Result<BoxStream<'static, Result<PaymentUpdate, LightningError>>, LightningError> {
        let mut client = self.client.clone();
        let stream = call(
            "TrackPayments",
            self.config.request_timeout,
            client
                .router()
                .track_payments(routerrpc::TrackPaymentsRequest {
                    no_inflight_updates: false,
                }),
        )
        .await?;
        Ok(stream
            .map(|item| {
                let payment = item.map_err(|s| from_status(&s))?;
                let hash: PaymentHash = payment
                    .payment_hash
                    .parse()
                    .map_err(|_| LightningError::Protocol("unreadable payment hash".into()))?;
                Ok(PaymentUpdate {
                    payment_hash: hash,
                    state: state_of(&payment, &hash)?,
                })
            })
            .boxed())
    }

    pub(super) async fn estimate_fee(
        &self,
        invoice: &DecodedInvoice,
        amount: Msats,
    ) -> Result<Msats, LightningError> {
        let timeout = u32::try_from(self.config.request_timeout.as_secs().max(1)).unwrap_or(60);
        let request = match invoice.amount {
            // LND probes the invoice's own route hints and amount.
            Some(_) => routerrpc::RouteFeeRequest {
                payment_request: invoice.payment_request.clone(),
                timeout,
                ..Default::default()
            },
            // A no-amount invoice cannot be probed as such: estimate to its payee (in
            // whole satoshis, rounded up, so that the estimate is not short).
            None => {
                let payee = Vec::<u8>::from_hex(&invoice.payee)
                    .map_err(|_| LightningError::Invalid("unreadable payee".into()))?;
                let sats = amount.to_msat().div_ceil(1000);
                routerrpc::RouteFeeRequest {
                    dest: payee,
                    amt_sat: i64::try_from(sats)
                        .map_err(|_| LightningError::Invalid("amount too large".into()))?,
                    timeout,
                    ..Default::default()
                }
            }
        };
        let mut client = self.client.clone();
        // A probe may take as long as its own timeout, plus the call.
        let estimate = call(
            "EstimateRouteFee",
            self.config.request_timeout + Duration::from_secs(u64::from(timeout)),
            client.router().estimate_route_fee(request),
        )
        .await?;
        if estimate.failure_reason != lnrpc::PaymentFailureReason::FailureReasonNone as i32 {
            return Err(LightningError::NoRoute(format!(
                "probe failed: {:?}",
                lnrpc::PaymentFailureReason::try_from(estimate.failure_reason)
            )));
        }
        Msats::new(non_negative("routing fee", estimate.routing_fee_msat)?)
            .map_err(|e| LightningError::Protocol(format!("routing fee: {e}")))
    }
}
