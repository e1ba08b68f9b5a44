//! Outgoing payments on the embedded node: send (idempotent by payment hash, as LDK Node
//! keys a payment by it), look up, a stream of changes, and the fee estimate.

use std::str::FromStr;

use bitcoin::hashes::Hash as _;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::futures_util::stream::{self, BoxStream, StreamExt};
use ldk_node::lightning::ln::channelmanager::PaymentId;
use ldk_node::lightning::routing::router::RouteParametersConfig;
use ldk_node::lightning_invoice::Bolt11Invoice;
use ldk_node::payment::{PaymentDirection, PaymentKind, PaymentStatus};
use tokio::sync::broadcast::error::RecvError;

use super::EmbeddedNode;
use super::book::Book;
use super::error::from_node;
use super::events::now;
use crate::amount::Msats;
use crate::lightning::{
    DecodedInvoice, LightningError, PayRequest, PaymentFailure, PaymentHash, PaymentState,
    PaymentUpdate, Preimage,
};

/// How long a failed payment may wait for its reason. LDK marks a payment failed a moment
/// before the event that carries the reason reaches the event loop: until then it still
/// reads as in flight. A reason never recorded (a crash in between) reads as `Other`.
const FAILURE_REASON_GRACE_SECS: u64 = 5;

/// How often a waiting send looks again without an event (a backstop).
const POLL: Duration = Duration::from_millis(250);

fn msats(what: &str, v: u64) -> Result<Msats, LightningError> {
    Msats::new(v).map_err(|e| LightningError::Protocol(format!("{what}: {e}")))
}

/// Fee of forwarding `amount_msat` over one hop with these fees, rounded up.
fn hop_fee(base_msat: u32, ppm: u32, amount_msat: u64) -> u64 {
    let proportional = (u128::from(amount_msat) * u128::from(ppm)).div_ceil(1_000_000);
    u64::from(base_msat).saturating_add(u64::try_from(proportional).unwrap_or(u64::MAX))
}

/// An outgoing payment's state from LDK Node's record and the book's failure reasons.
fn state_of(
    node: &ldk_node::Node,
    book: &Book,
    hash: &PaymentHash,
) -> Result<Option<PaymentState>, LightningError> {
    let Some(details) = node.payment(&PaymentId(hash.0)) else {
        return Ok(None);
    };
    if details.direction != PaymentDirection::Outbound {
        return Ok(None);
    }
    Ok(Some(match details.status {
        PaymentStatus::Pending => PaymentState::InFlight,
        PaymentStatus::Succeeded => {
            let PaymentKind::Bolt11 {
                preimage: Some(p), ..
            } = details.kind
            else {
                return Err(LightningError::Protocol(
                    "a succeeded payment without its preimage".into(),
                ));
            };
            let preimage = Preimage(p.0);
            if preimage.payment_hash() != *hash {
                return Err(LightningError::Protocol(format!(
                    "the preimage of payment {hash} does not match it"
                )));
            }
            PaymentState::Succeeded {
                preimage,
                fee: msats("routing fee", details.fee_paid_msat.unwrap_or(0))?,
            }
        }
        PaymentStatus::Failed => match book.failure(hash)? {
            Some(reason) => PaymentState::Failed(reason),
            None => {
                let age = u64::try_from(now())
                    .unwrap_or(0)
                    .saturating_sub(details.latest_update_timestamp);
                if age < FAILURE_REASON_GRACE_SECS {
                    PaymentState::InFlight
                } else {
                    PaymentState::Failed(PaymentFailure::Other)
                }
            }
        },
    }))
}

impl EmbeddedNode {
    pub(super) fn payment_state(
        &self,
        hash: &PaymentHash,
    ) -> Result<Option<PaymentState>, LightningError> {
        state_of(&self.node, &self.book, hash)
    }

    pub(super) async fn send(&self, request: &PayRequest) -> Result<PaymentState, LightningError> {
        let invoice = Bolt11Invoice::from_str(request.payment_request.trim())
            .map_err(|e| LightningError::Invalid(format!("payment request: {e}")))?;
        let hash = request.payment_hash;
        if invoice.payment_hash().to_byte_array() != hash.0 {
            return Err(LightningError::Invalid(
                "the payment hash is not the invoice's".into(),
            ));
        }
        // Subscribed before sending, so that the outcome cannot slip past.
        let mut updates = self.payments.subscribe();
        match self.payment_state(&hash)? {
            Some(s @ PaymentState::Succeeded { .. }) => return Ok(s),
            Some(PaymentState::InFlight) => {}
            // A failed payment may be tried again; anything else starts it.
            Some(PaymentState::Failed(_)) | None => {
                self.book.clear_failure(&hash)?;
                let params = RouteParametersConfig {
                    max_total_routing_fee_msat: Some(request.max_fee.to_msat()),
                    ..Default::default()
                };
                let bolt11 = self.node.bolt11_payment();
                let sent = match request.amount {
                    None => bolt11.send(&invoice, Some(params)),
                    Some(a) => bolt11.send_using_amount(&invoice, a.to_msat(), Some(params)),
                };
                match sent {
                    // Another call started it a moment ago: follow that one.
                    Ok(_) | Err(ldk_node::NodeError::DuplicatePayment) => {}
                    Err(ldk_node::NodeError::PaymentSendingFailed) => {
                        // LDK found no route at all; nothing left the node.
                        tracing::info!(%hash, "payment failed to start: no route");
                        self.book.record_failure(&hash, PaymentFailure::NoRoute)?;
                        return Ok(PaymentState::Failed(PaymentFailure::NoRoute));
                    }
                    Err(e) => return Err(from_node(e)),
                }
            }
        }
        let deadline = tokio::time::Instant::now() + request.timeout;
        loop {
            match self.payment_state(&hash)? {
                Some(PaymentState::InFlight) | None => {}
                Some(done) => return Ok(done),
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(PaymentState::InFlight);
            }
            let _ = tokio::time::timeout(left.min(POLL), updates.recv()).await;
        }
    }

    pub(super) fn updates(&self) -> BoxStream<'static, Result<PaymentUpdate, LightningError>> {
        let rx = self.payments.subscribe();
        let (node, book) = (Arc::clone(&self.node), Arc::clone(&self.book));
        stream::unfold(rx, move |mut rx| {
            let (node, book) = (Arc::clone(&node), Arc::clone(&book));
            async move {
                loop {
                    let hash = match rx.recv().await {
                        Ok(h) => PaymentHash(h),
                        // Updates are hints (the bank reads the payment itself): skip.
                        Err(RecvError::Lagged(_)) => continue,
                        Err(RecvError::Closed) => return None,
                    };
                    match state_of(&node, &book, &hash) {
                        Ok(Some(state)) => {
                            return Some((
                                Ok(PaymentUpdate {
                                    payment_hash: hash,
                                    state,
                                }),
                                rx,
                            ));
                        }
                        Ok(None) => continue,
                        Err(e) => return Some((Err(e), rx)),
                    }
                }
            }
        })
        .boxed()
    }

    /// A direct peer with room costs nothing; a payee reached through a route hint of the
    /// invoice, or through a public channel of one of our peers, costs what those hops
    /// charge. Anything further has no route this node can price without paying.
    pub(super) fn estimate_fee(
        &self,
        invoice: &DecodedInvoice,
        amount: Msats,
    ) -> Result<Msats, LightningError> {
        let payee: bitcoin::secp256k1::PublicKey = invoice
            .payee
            .parse()
            .map_err(|_| LightningError::Invalid("unreadable payee".into()))?;
        let amount_msat = amount.to_msat();
        let channels = self.node.list_channels();
        let room_to = |peer: &bitcoin::secp256k1::PublicKey, needed: u64| {
            channels.iter().any(|c| {
                c.counterparty_node_id == *peer
                    && c.is_usable
                    && c.next_outbound_htlc_limit_msat >= needed
            })
        };
        if room_to(&payee, amount_msat) {
            return Ok(Msats::ZERO);
        }
        let mut best: Option<u64> = None;
        // Route hints: private channels into the payee; the last hop is the payee's own.
        let parsed = Bolt11Invoice::from_str(&invoice.payment_request)
            .map_err(|e| LightningError::Invalid(format!("payment request: {e}")))?;
        for hint in parsed.route_hints() {
            let Some(first) = hint.0.first() else {
                continue;
            };
            // Fees from the payee backwards: each hop charges on what it forwards.
            let mut forwarded = amount_msat;
            for hop in hint.0.iter().rev() {
                forwarded = forwarded.saturating_add(hop_fee(
                    hop.fees.base_msat,
                    hop.fees.proportional_millionths,
                    forwarded,
                ));
            }
            if room_to(&first.src_node_id, forwarded) {
                best =
                    Some(best.map_or(forwarded - amount_msat, |b| b.min(forwarded - amount_msat)));
            }
        }
        // One public hop: a channel of one of our peers to the payee.
        let graph = self.node.network_graph();
        let payee_id = ldk_node::lightning::routing::gossip::NodeId::from_pubkey(&payee);
        if let Some(node) = graph.node(&payee_id) {
            for scid in node.channels {
                let Some(info) = graph.channel(scid) else {
                    continue;
                };
                let (peer, update) = if info.node_two == payee_id {
                    (info.node_one, info.one_to_two)
                } else {
                    (info.node_two, info.two_to_one)
                };
                let (Some(update), Ok(peer)) = (update, peer.as_pubkey()) else {
                    continue;
                };
                if !update.enabled {
                    continue;
                }
                let fee = hop_fee(
                    update.fees.base_msat,
                    update.fees.proportional_millionths,
                    amount_msat,
                );
                if room_to(&peer, amount_msat.saturating_add(fee)) {
                    best = Some(best.map_or(fee, |b| b.min(fee)));
                }
            }
        }
        match best {
            Some(fee) => msats("routing fee", fee),
            None => Err(LightningError::NoRoute(
                "no route to the payee through this node's channels".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::hop_fee;

    #[test]
    fn a_hop_charges_its_base_and_its_rate_rounded_up() {
        assert_eq!(hop_fee(1_000, 0, 5_000_000), 1_000);
        assert_eq!(hop_fee(0, 1, 1_000_000), 1);
        assert_eq!(
            hop_fee(0, 1, 1),
            1,
            "a fraction of a millisatoshi is a millisatoshi"
        );
        assert_eq!(hop_fee(1_000, 100, 10_000_000), 2_000);
        assert_eq!(hop_fee(u32::MAX, u32::MAX, u64::MAX), u64::MAX, "saturates");
    }
}
