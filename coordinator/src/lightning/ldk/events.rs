//! LDK Node's events, handled in order: payments that arrive are claimed or failed back
//! against the book, settlements are logged, outgoing payments' outcomes are announced.
//! An event is acknowledged only after what it changed is written, so a crash in between
//! hands it out again (every handler is safe to repeat).

use std::sync::Arc;
use std::time::Duration;

use bitcoin::hex::DisplayHex;
use ldk_node::Event;
use ldk_node::lightning::events::PaymentFailureReason;
use ldk_node::lightning_types::payment::PaymentPreimage;

use super::EmbeddedNode;
use super::book::Claim;
use crate::lightning::{LightningError, PaymentFailure, PaymentHash};

/// How long to wait before handling an event again after a failure (the store was
/// unavailable): it is handed out again, not dropped.
const RETRY: Duration = Duration::from_millis(500);

pub(super) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Our reason for LDK's.
pub(super) fn failure(reason: Option<PaymentFailureReason>) -> PaymentFailure {
    match reason {
        Some(PaymentFailureReason::RecipientRejected) => PaymentFailure::RecipientRejected,
        Some(PaymentFailureReason::RouteNotFound | PaymentFailureReason::RetriesExhausted) => {
            PaymentFailure::NoRoute
        }
        Some(PaymentFailureReason::PaymentExpired) => PaymentFailure::Timeout,
        _ => PaymentFailure::Other,
    }
}

/// Handles events for ever (until the node stops and the task is aborted).
pub(super) async fn run(this: Arc<EmbeddedNode>) {
    loop {
        let event = this.node.next_event_async().await;
        if let Err(e) = handle(&this, &event) {
            tracing::error!(error = %e, ?event, "handling a Lightning event failed; retrying");
            tokio::time::sleep(RETRY).await;
            continue;
        }
        if let Err(e) = this.node.event_handled() {
            tracing::error!(error = %e, "acknowledging a Lightning event failed");
            tokio::time::sleep(RETRY).await;
        }
    }
}

fn handle(this: &EmbeddedNode, event: &Event) -> Result<(), LightningError> {
    match event {
        Event::PaymentClaimable {
            payment_hash,
            claimable_amount_msat,
            ..
        } => {
            let hash = PaymentHash(payment_hash.0);
            let bolt11 = this.node.bolt11_payment();
            match this.book.claim(&hash, *claimable_amount_msat, now())? {
                Claim::Claim(preimage) => {
                    tracing::info!(%hash, amount_msat = claimable_amount_msat, "claiming a payment");
                    let claimed = bolt11.claim_for_hash(
                        *payment_hash,
                        *claimable_amount_msat,
                        PaymentPreimage(preimage.0),
                    );
                    // LDK refuses only what it cannot claim at all (it no longer knows the
                    // payment): retrying would not help, and holding it would stall the
                    // events behind it.
                    if let Err(e) = claimed {
                        tracing::error!(%hash, error = %e, "LDK refused the claim; failing back");
                        let _ = bolt11.fail_for_hash(*payment_hash);
                    }
                }
                Claim::Fail(why) => {
                    tracing::info!(%hash, amount_msat = claimable_amount_msat, why, "failing a payment back");
                    // An error here means LDK no longer holds it: nothing to fail.
                    if let Err(e) = bolt11.fail_for_hash(*payment_hash) {
                        tracing::debug!(%hash, error = %e, "failing back");
                    }
                }
            }
        }
        Event::PaymentReceived {
            payment_hash,
            amount_msat,
            ..
        } => {
            let hash = PaymentHash(payment_hash.0);
            match this.book.settle(&hash, *amount_msat)? {
                Some(settled) => {
                    tracing::info!(%hash, cursor = settled.cursor.0, amount_msat, "invoice settled");
                    let _ = this.settled.send(settled);
                }
                // A spontaneous (keysend) payment: no invoice, so no wallet to credit. The
                // funds are the node's; an operator sees them in its balance.
                None => {
                    tracing::warn!(%hash, amount_msat, "a payment without an invoice of the bank arrived")
                }
            }
        }
        Event::PaymentSuccessful { payment_hash, .. } => {
            tracing::info!(hash = %payment_hash.0.to_lower_hex_string(), "payment succeeded");
            let _ = this.payments.send(payment_hash.0);
        }
        Event::PaymentFailed {
            payment_hash: Some(payment_hash),
            reason,
            ..
        } => {
            let hash = PaymentHash(payment_hash.0);
            let reason = failure(*reason);
            tracing::info!(%hash, reason = reason.as_str(), "payment failed");
            this.book.record_failure(&hash, reason)?;
            let _ = this.payments.send(payment_hash.0);
        }
        other => tracing::info!(event = ?other, "Lightning event"),
    }
    Ok(())
}
