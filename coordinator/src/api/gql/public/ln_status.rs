//! The Lightning invoice status subscriptions, with Blink's names and shapes:
//! `lnInvoicePaymentStatusByHash`, `lnInvoicePaymentStatusByPaymentRequest` and the
//! deprecated `lnInvoicePaymentStatus`.
//!
//! The first message is the invoice's status now; then one message per change; the stream
//! ends after a final status. As the queries of the same names, they need no credential:
//! the hash or the request is what the payer holds.
//!
//! What wakes a stream, so that a subscriber on any instance sees every change:
//! - a payment credited to the invoice's wallet, read from the ledger outbox (a settlement,
//!   over Lightning or through the ledger, is a posting): the invoice is read again;
//! - its expiry instant, which no event announces;
//! - every [`RECHECK`], for what posts nothing (a cancellation) and for a subscriber that
//!   fell behind the feed.

use std::time::Duration;

use async_graphql::futures_util::stream::{self, BoxStream};
use async_graphql::futures_util::{Stream, StreamExt};
use async_graphql::{Context, InputObject, Result, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use super::lightning::{
    LnInvoicePaymentStatusByHashInput, LnInvoicePaymentStatusByPaymentRequestInput, parse_hash,
};
use super::{ErrorInterface, payload_error};
use crate::api::errors::ApiError;
use crate::api::gql::scalars::{
    LnPaymentPreImageScalar, LnPaymentRequestScalar, PaymentHashScalar,
};
use crate::api::gql::types::{InvoicePaymentStatus, app};
use crate::api::{AppState, PaymentEvent};
use crate::bank::BankError;
use crate::bank::lightning::{InvoiceStatus, LnInvoiceView};
use crate::ids::WalletId;
use crate::lightning::PaymentHash;

/// How often a stream reads its invoice again without being woken.
const RECHECK: Duration = Duration::from_secs(5);

/// How long past its expiry a stream waits for a settlement recorded late (paid at the
/// node just before the expiry, credited by the settlement watcher just after) before
/// ending with EXPIRED.
const EXPIRY_GRACE: Duration = Duration::from_secs(30);

/// Read again a moment after the expiry instant, when the invoice reads as expired.
const EXPIRY_MARGIN: Duration = Duration::from_millis(50);

/// Input of the deprecated `lnInvoicePaymentStatus`.
#[derive(InputObject, Debug)]
pub struct LnInvoicePaymentStatusInput {
    payment_request: LnPaymentRequestScalar,
}

/// One message of an invoice status subscription.
#[derive(SimpleObject, Clone, Debug)]
pub struct LnInvoicePaymentStatusPayload {
    errors: Vec<ErrorInterface>,
    payment_hash: Option<PaymentHashScalar>,
    payment_request: Option<LnPaymentRequestScalar>,
    status: Option<InvoicePaymentStatus>,
    /// Our extension of Blink's type: the proof of payment, once paid.
    payment_preimage: Option<LnPaymentPreImageScalar>,
}

impl LnInvoicePaymentStatusPayload {
    fn of(v: &LnInvoiceView) -> LnInvoicePaymentStatusPayload {
        LnInvoicePaymentStatusPayload {
            errors: Vec::new(),
            payment_hash: Some(PaymentHashScalar(v.payment_hash.to_string())),
            payment_request: Some(LnPaymentRequestScalar(v.payment_request.clone())),
            status: Some(v.status.into()),
            payment_preimage: v
                .preimage
                .as_ref()
                .map(|p| LnPaymentPreImageScalar(p.to_hex())),
        }
    }

    fn failed(e: &BankError) -> LnInvoicePaymentStatusPayload {
        LnInvoicePaymentStatusPayload {
            errors: payload_error(ApiError::from(e)),
            payment_hash: None,
            payment_request: None,
            status: None,
            payment_preimage: None,
        }
    }
}

/// The invoice status subscriptions.
#[derive(Debug, Default)]
pub struct LnStatusSubscription;

#[Subscription]
impl LnStatusSubscription {
    /// The status of an invoice of this bank, by payment hash: now, then on each change,
    /// until it is PAID or EXPIRED (a cancelled invoice reads EXPIRED, as in the query).
    /// An unknown hash answers one message with an error.
    async fn ln_invoice_payment_status_by_hash(
        &self,
        ctx: &Context<'_>,
        input: LnInvoicePaymentStatusByHashInput,
    ) -> Result<impl Stream<Item = LnInvoicePaymentStatusPayload> + use<>> {
        let hash = parse_hash(&input.payment_hash).map_err(|e| e.to_graphql())?;
        watch(app(ctx).clone(), Lookup::Hash(hash)).await
    }

    /// The status of an invoice of this bank, by payment request (as
    /// `lnInvoicePaymentStatusByHash`).
    async fn ln_invoice_payment_status_by_payment_request(
        &self,
        ctx: &Context<'_>,
        input: LnInvoicePaymentStatusByPaymentRequestInput,
    ) -> Result<impl Stream<Item = LnInvoicePaymentStatusPayload> + use<>> {
        watch(app(ctx).clone(), Lookup::Request(input.payment_request.0)).await
    }

    /// The status of an invoice of this bank, by payment request.
    #[graphql(deprecation = "Deprecated in favor of lnInvoicePaymentStatusByPaymentRequest")]
    async fn ln_invoice_payment_status(
        &self,
        ctx: &Context<'_>,
        input: LnInvoicePaymentStatusInput,
    ) -> Result<impl Stream<Item = LnInvoicePaymentStatusPayload> + use<>> {
        watch(app(ctx).clone(), Lookup::Request(input.payment_request.0)).await
    }
}

/// How the subscriber names the invoice.
enum Lookup {
    Hash(PaymentHash),
    Request(String),
}

/// Where a stream is after sending a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Payable: changes follow.
    Open,
    /// Expired by time: a settlement recorded late may still follow until the grace ends.
    Grace,
    /// Final: the stream ends.
    Done,
}

/// The phase after a status: PAID and cancelled are final at once; expiry by time waits
/// out [`EXPIRY_GRACE`] from the expiry instant.
fn phase_after(status: InvoiceStatus, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> Phase {
    match status {
        InvoiceStatus::Pending => Phase::Open,
        InvoiceStatus::Paid => Phase::Done,
        InvoiceStatus::Expired if expires_at <= now && grace_left(expires_at, now).is_some() => {
            Phase::Grace
        }
        // Cancelled (expired before its time), or expired longer ago than the grace.
        InvoiceStatus::Expired => Phase::Done,
    }
}

/// What is left of the grace after an expiry, if anything.
fn grace_left(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> Option<Duration> {
    let grace = chrono::TimeDelta::from_std(EXPIRY_GRACE).ok()?;
    (expires_at + grace - now)
        .to_std()
        .ok()
        .filter(|d| !d.is_zero())
}

/// How long to wait before reading the invoice again unprompted: until just after its
/// expiry when that comes sooner than the next [`RECHECK`].
fn next_read(phase: Phase, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    match phase {
        Phase::Open => match (expires_at - now).to_std() {
            Ok(left) => (left + EXPIRY_MARGIN).min(RECHECK),
            Err(_) => RECHECK,
        },
        Phase::Grace | Phase::Done => RECHECK,
    }
}

struct Watch {
    app: AppState,
    rx: Option<broadcast::Receiver<PaymentEvent>>,
    hash: PaymentHash,
    wallet: WalletId,
    expires_at: DateTime<Utc>,
    last: InvoiceStatus,
    phase: Phase,
    /// When a stream in [`Phase::Grace`] ends.
    grace_ends: tokio::time::Instant,
    first: Option<LnInvoiceView>,
}

async fn watch(
    app: AppState,
    lookup: Lookup,
) -> Result<BoxStream<'static, LnInvoicePaymentStatusPayload>> {
    let found = match lookup {
        Lookup::Hash(h) => app.bank.ln_invoice_by_hash(&h).await,
        Lookup::Request(r) => app.bank.ln_invoice_by_request(&r).await,
    };
    let found = match found {
        Ok(v) => v,
        // As Blink: one message with the error (an unknown invoice, a request that does
        // not decode, no Lightning here), then the stream ends.
        Err(e) => {
            tracing::debug!(error = %e, "invoice status subscription refused");
            return Ok(
                stream::once(async move { LnInvoicePaymentStatusPayload::failed(&e) }).boxed(),
            );
        }
    };
    let rx = app
        .updates
        .subscribe()
        .await
        .map_err(|e| ApiError::internal(&e).to_graphql())?;
    // Read again once subscribed: a settlement committed in between is read here or
    // heard afterwards.
    let first = app
        .bank
        .ln_invoice_by_hash(&found.payment_hash)
        .await
        .map_err(crate::api::gql::types::gql)?;
    let state = Watch {
        app,
        rx: Some(rx),
        hash: first.payment_hash,
        wallet: first.wallet_id,
        expires_at: first.expires_at,
        last: first.status,
        phase: Phase::Open,
        grace_ends: tokio::time::Instant::now(),
        first: Some(first),
    };
    Ok(stream::unfold(state, next).boxed())
}

/// The next message of a stream, or `None` when it has ended.
async fn next(mut w: Watch) -> Option<(LnInvoicePaymentStatusPayload, Watch)> {
    if let Some(v) = w.first.take() {
        w.enter(v.status);
        return Some((LnInvoicePaymentStatusPayload::of(&v), w));
    }
    loop {
        if w.phase == Phase::Done {
            return None;
        }
        let wait = next_read(w.phase, w.expires_at, Utc::now());
        let grace_ends = w.grace_ends;
        let in_grace = w.phase == Phase::Grace;
        tokio::select! {
            r = async {
                match w.rx.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => match r {
                Ok(ev) if ev.recipient_wallet != w.wallet => continue,
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "invoice status subscriber lagged");
                }
                Err(broadcast::error::RecvError::Closed) => w.rx = None,
            },
            () = tokio::time::sleep(wait) => {}
            () = tokio::time::sleep_until(grace_ends), if in_grace => return None,
        }
        match w.app.bank.ln_invoice_by_hash(&w.hash).await {
            Ok(v) if v.status != w.last => {
                w.enter(v.status);
                return Some((LnInvoicePaymentStatusPayload::of(&v), w));
            }
            Ok(_) => {}
            // Read again at the next wake-up: a passing outage must not end the stream.
            Err(e) => {
                tracing::warn!(payment_hash = %w.hash, error = %e, "reading an invoice's status failed")
            }
        }
    }
}

impl Watch {
    fn enter(&mut self, status: InvoiceStatus) {
        let now = Utc::now();
        self.last = status;
        self.phase = phase_after(status, self.expires_at, now);
        if let Some(left) = grace_left(self.expires_at, now) {
            self.grace_ends = tokio::time::Instant::now() + left;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{
        EXPIRY_GRACE, EXPIRY_MARGIN, InvoiceStatus, Phase, RECHECK, grace_left, next_read,
        phase_after,
    };
    use chrono::{TimeDelta, Utc};

    #[test]
    fn final_statuses_end_the_stream() {
        let now = Utc::now();
        let later = now + TimeDelta::minutes(10);
        let earlier = now - TimeDelta::seconds(1);
        assert_eq!(phase_after(InvoiceStatus::Pending, later, now), Phase::Open);
        assert_eq!(phase_after(InvoiceStatus::Paid, later, now), Phase::Done);
        assert_eq!(phase_after(InvoiceStatus::Paid, earlier, now), Phase::Done);
        // Cancelled before its expiry: final at once.
        assert_eq!(phase_after(InvoiceStatus::Expired, later, now), Phase::Done);
        // Expired by time: a late settlement may still come, for a while.
        assert_eq!(
            phase_after(InvoiceStatus::Expired, earlier, now),
            Phase::Grace
        );
        assert_eq!(phase_after(InvoiceStatus::Expired, now, now), Phase::Grace);
        let long_ago = now - TimeDelta::from_std(EXPIRY_GRACE).unwrap();
        assert_eq!(
            phase_after(InvoiceStatus::Expired, long_ago, now),
            Phase::Done
        );
        assert_eq!(
            grace_left(earlier, now),
            Some(EXPIRY_GRACE - std::time::Duration::from_secs(1))
        );
        assert_eq!(grace_left(long_ago, now), None);
    }

    #[test]
    fn an_open_invoice_is_read_again_just_after_its_expiry() {
        let now = Utc::now();
        let soon = now + TimeDelta::milliseconds(1_500);
        assert_eq!(
            next_read(Phase::Open, soon, now),
            std::time::Duration::from_millis(1_500) + EXPIRY_MARGIN
        );
        let far = now + TimeDelta::hours(24);
        assert_eq!(next_read(Phase::Open, far, now), RECHECK);
        let past = now - TimeDelta::seconds(3);
        assert_eq!(next_read(Phase::Open, past, now), RECHECK);
        assert_eq!(next_read(Phase::Grace, soon, now), RECHECK);
    }
}
