//! `routerrpc.Router` (send, track, estimate the fee) and `invoicesrpc.Invoices` (hold
//! invoices: add, settle, cancel; cancel of any invoice), over LDK.

use std::sync::Arc;
use std::time::Duration;

use fedimint_tonic_lnd::{invoicesrpc, lnrpc, routerrpc};
use ldk_node::bitcoin::hashes::{Hash, sha256};
use ldk_node::bitcoin::hex::DisplayHex;
use ldk_node::lightning::ln::channelmanager::PaymentId;
use ldk_node::lightning::routing::router::RouteParametersConfig;
use ldk_node::lightning_invoice::Bolt11Invoice;
use ldk_node::lightning_types::payment::{PaymentHash, PaymentPreimage};
use ldk_node::payment::{PaymentDirection, PaymentKind, PaymentStatus};
use tonic::{Request, Response, Status};

use crate::lightning::{BoxStream, NewInvoice, Secret, add_invoice};
use crate::node::{Shared, now, to_lnrpc_invoice};

/// The Router service.
#[derive(Debug, Clone)]
pub struct RouterService(pub Arc<Shared>);

/// The Invoices service.
#[derive(Debug, Clone)]
pub struct InvoicesService(pub Arc<Shared>);

/// How often a payment stream looks again without an event (a backstop).
const POLL: Duration = Duration::from_millis(500);

/// How long a failed payment may wait for its reason (see `payment_of`).
const FAILURE_REASON_GRACE_SECS: u64 = 5;

/// LND's view of our outgoing payment to `hash`, if we ever tried it.
fn payment_of(shared: &Shared, hash: [u8; 32]) -> Option<lnrpc::Payment> {
    use lnrpc::payment::PaymentStatus as S;
    let details = shared.node.payment(&PaymentId(hash))?;
    if details.direction != PaymentDirection::Outbound {
        return None;
    }
    let hex = hash.to_lower_hex_string();
    let (status, failure) = match details.status {
        PaymentStatus::Pending => (S::InFlight, lnrpc::PaymentFailureReason::FailureReasonNone),
        PaymentStatus::Succeeded => (S::Succeeded, lnrpc::PaymentFailureReason::FailureReasonNone),
        PaymentStatus::Failed => {
            let recorded = shared
                .store()
                .failure(&hex)
                .and_then(|r| lnrpc::PaymentFailureReason::try_from(r).ok());
            let age = u64::try_from(now())
                .unwrap_or(0)
                .saturating_sub(details.latest_update_timestamp);
            match recorded {
                Some(reason) => (S::Failed, reason),
                // LDK marks the payment failed a moment before its event (which carries the
                // reason) reaches the event loop: until then it is still in flight to LND's
                // clients. A reason never recorded (a crash in between) counts as an error.
                None if age < FAILURE_REASON_GRACE_SECS => {
                    (S::InFlight, lnrpc::PaymentFailureReason::FailureReasonNone)
                }
                None => (S::Failed, lnrpc::PaymentFailureReason::FailureReasonError),
            }
        }
    };
    let preimage = match details.kind {
        PaymentKind::Bolt11 {
            preimage: Some(p), ..
        } if status == S::Succeeded => p.0.to_lower_hex_string(),
        _ => String::new(),
    };
    let value_msat = i64::try_from(details.amount_msat.unwrap_or(0)).unwrap_or(i64::MAX);
    let fee_msat = i64::try_from(details.fee_paid_msat.unwrap_or(0)).unwrap_or(i64::MAX);
    Some(lnrpc::Payment {
        payment_hash: hex,
        value_sat: value_msat / 1000,
        value_msat,
        payment_preimage: preimage,
        status: status as i32,
        fee_sat: fee_msat / 1000,
        fee_msat,
        creation_time_ns: i64::try_from(details.latest_update_timestamp)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000),
        failure_reason: failure as i32,
        ..Default::default()
    })
}

fn is_final(p: &lnrpc::Payment) -> bool {
    use lnrpc::payment::PaymentStatus as S;
    p.status == S::Succeeded as i32 || p.status == S::Failed as i32
}

/// Streams the payment's states until a final one.
fn follow(
    shared: Arc<Shared>,
    hash: [u8; 32],
    no_inflight_updates: bool,
) -> BoxStream<lnrpc::Payment> {
    let mut events = shared.payment_events.subscribe();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        let mut last: Option<lnrpc::Payment> = None;
        loop {
            if let Some(p) = payment_of(&shared, hash) {
                let changed = last.as_ref() != Some(&p);
                let final_ = is_final(&p);
                if changed
                    && (final_ || !no_inflight_updates)
                    && tx.send(Ok(p.clone())).await.is_err()
                {
                    return;
                }
                if final_ {
                    return;
                }
                last = Some(p);
            }
            let _ = tokio::time::timeout(POLL, events.recv()).await;
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

fn parse_hash(bytes: &[u8]) -> Result<[u8; 32], Status> {
    <[u8; 32]>::try_from(bytes).map_err(|_| Status::invalid_argument("invalid hash length"))
}

#[tonic::async_trait]
impl crate::proto::routerrpc::router_server::Router for RouterService {
    async fn send_payment_v2(
        &self,
        req: Request<routerrpc::SendPaymentRequest>,
    ) -> Result<Response<BoxStream<lnrpc::Payment>>, Status> {
        let req = req.into_inner();
        let invoice: Bolt11Invoice = req
            .payment_request
            .parse()
            .map_err(|e| Status::unknown(format!("unable to decode payment request: {e}")))?;
        if invoice.is_expired() {
            return Err(Status::unknown(format!(
                "invoice expired. Valid until {} seconds after the epoch",
                invoice.duration_since_epoch().as_secs() + invoice.expiry_time().as_secs()
            )));
        }
        let hash: [u8; 32] = *invoice.payment_hash().as_ref();
        if let Some(existing) = payment_of(&self.0, hash) {
            use lnrpc::payment::PaymentStatus as S;
            if existing.status == S::Succeeded as i32 {
                return Err(Status::already_exists("invoice is already paid"));
            }
            if existing.status == S::InFlight as i32 {
                return Err(Status::already_exists("payment is in transition"));
            }
        }
        let amount_msat = match (req.amt, req.amt_msat) {
            (0, 0) => None,
            (sat, 0) if sat > 0 => Some(sat as u64 * 1000),
            (0, msat) if msat > 0 => Some(msat as u64),
            _ => {
                return Err(Status::invalid_argument(
                    "amt and amt_msat are mutually exclusive",
                ));
            }
        };
        match (invoice.amount_milli_satoshis(), amount_msat) {
            (None, None) => {
                return Err(Status::invalid_argument(
                    "amount must be specified when paying a zero amount invoice",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(Status::invalid_argument(
                    "amount must not be specified when paying a non-zero amount invoice",
                ));
            }
            _ => {}
        }
        // As LND: both limits zero means only fee-free routes.
        let fee_limit_msat = match (req.fee_limit_sat, req.fee_limit_msat) {
            (sat, 0) => u64::try_from(sat).unwrap_or(0).saturating_mul(1000),
            (_, msat) => u64::try_from(msat).unwrap_or(0),
        };
        let route = RouteParametersConfig {
            max_total_routing_fee_msat: Some(fee_limit_msat),
            ..Default::default()
        };
        let hex = hash.to_lower_hex_string();
        self.0
            .store()
            .clear_failure(&hex)
            .map_err(|e| Status::unknown(e.to_string()))?;
        let bolt11 = self.0.node.bolt11_payment();
        let sent = match amount_msat {
            None => bolt11.send(&invoice, Some(route)),
            Some(a) => bolt11.send_using_amount(&invoice, a, Some(route)),
        };
        match sent {
            Ok(_) => tracing::info!(hash = hex, fee_limit_msat, "payment started"),
            Err(ldk_node::NodeError::DuplicatePayment) => {
                return Err(Status::already_exists("invoice is already paid"));
            }
            Err(ldk_node::NodeError::PaymentSendingFailed) => {
                // LDK found no route at all: LND reports that as a failed payment.
                tracing::info!(hash = hex, "payment failed to start: no route");
                self.0
                    .store()
                    .record_failure(
                        &hex,
                        lnrpc::PaymentFailureReason::FailureReasonNoRoute as i32,
                    )
                    .map_err(|e| Status::unknown(e.to_string()))?;
            }
            Err(e) => return Err(Status::unknown(e.to_string())),
        }
        Ok(Response::new(follow(
            Arc::clone(&self.0),
            hash,
            req.no_inflight_updates,
        )))
    }

    async fn track_payment_v2(
        &self,
        req: Request<routerrpc::TrackPaymentRequest>,
    ) -> Result<Response<BoxStream<lnrpc::Payment>>, Status> {
        let req = req.into_inner();
        let hash = parse_hash(&req.payment_hash)?;
        if payment_of(&self.0, hash).is_none() {
            return Err(Status::not_found("payment isn't initiated"));
        }
        Ok(Response::new(follow(
            Arc::clone(&self.0),
            hash,
            req.no_inflight_updates,
        )))
    }

    async fn track_payments(
        &self,
        req: Request<routerrpc::TrackPaymentsRequest>,
    ) -> Result<Response<BoxStream<lnrpc::Payment>>, Status> {
        let no_inflight_updates = req.into_inner().no_inflight_updates;
        let mut events = self.0.payment_events.subscribe();
        let shared = Arc::clone(&self.0);
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let hash = match events.recv().await {
                    Ok(h) => h,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return,
                };
                let Some(p) = payment_of(&shared, hash) else {
                    continue;
                };
                if (no_inflight_updates && !is_final(&p)) || tx.send(Ok(p)).await.is_ok() {
                    continue;
                }
                return;
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn estimate_route_fee(
        &self,
        req: Request<routerrpc::RouteFeeRequest>,
    ) -> Result<Response<routerrpc::RouteFeeResponse>, Status> {
        let req = req.into_inner();
        let (dest, amount_msat) = if req.payment_request.is_empty() {
            let dest = ldk_node::bitcoin::secp256k1::PublicKey::from_slice(&req.dest)
                .map_err(|_| Status::invalid_argument("invalid dest"))?;
            (
                dest,
                u64::try_from(req.amt_sat).unwrap_or(0).saturating_mul(1000),
            )
        } else {
            let invoice: Bolt11Invoice = req
                .payment_request
                .parse()
                .map_err(|e| Status::unknown(format!("unable to decode payment request: {e}")))?;
            let amount = invoice.amount_milli_satoshis().ok_or_else(|| {
                Status::invalid_argument("amount must be specified for a zero amount invoice")
            })?;
            (invoice.recover_payee_pub_key(), amount)
        };
        // The stand-in routes over its own channels only: a payee that is a direct peer
        // with room costs nothing; anything else has no route.
        let direct = self.0.node.list_channels().into_iter().any(|c| {
            c.counterparty_node_id == dest
                && c.is_usable
                && c.next_outbound_htlc_limit_msat >= amount_msat
        });
        let reason = if direct {
            lnrpc::PaymentFailureReason::FailureReasonNone
        } else {
            lnrpc::PaymentFailureReason::FailureReasonNoRoute
        };
        Ok(Response::new(routerrpc::RouteFeeResponse {
            routing_fee_msat: 0,
            time_lock_delay: if direct { 144 } else { 0 },
            failure_reason: reason as i32,
        }))
    }
}

/// How long `SettleInvoice` waits for LDK to report the held payment claimed, so that
/// the invoice reads SETTLED when it answers (as LND's does).
const SETTLE_WAIT: Duration = Duration::from_secs(10);

#[tonic::async_trait]
impl crate::proto::invoicesrpc::invoices_server::Invoices for InvoicesService {
    async fn add_hold_invoice(
        &self,
        req: Request<invoicesrpc::AddHoldInvoiceRequest>,
    ) -> Result<Response<invoicesrpc::AddHoldInvoiceResp>, Status> {
        let req = req.into_inner();
        // LND's words for a hash of the wrong length.
        let hash = <[u8; 32]>::try_from(req.hash.as_slice()).map_err(|_| {
            Status::unknown(format!(
                "invalid hash length of {}, want 32",
                req.hash.len()
            ))
        })?;
        let record = add_invoice(
            &self.0,
            NewInvoice {
                memo: req.memo,
                description_hash: req.description_hash,
                value: req.value,
                value_msat: req.value_msat,
                expiry: req.expiry,
            },
            Secret::Hold(hash),
        )?;
        tracing::info!(
            hash = record.hash,
            add_index = record.add_index,
            "hold invoice added"
        );
        let _ = self.0.invoice_events.send(to_lnrpc_invoice(&record, now()));
        let payment_addr = record
            .payment_request
            .parse::<Bolt11Invoice>()
            .map(|i| i.payment_secret().0.to_vec())
            .unwrap_or_default();
        Ok(Response::new(invoicesrpc::AddHoldInvoiceResp {
            payment_request: record.payment_request,
            add_index: record.add_index,
            payment_addr,
        }))
    }

    async fn settle_invoice(
        &self,
        req: Request<invoicesrpc::SettleInvoiceMsg>,
    ) -> Result<Response<invoicesrpc::SettleInvoiceResp>, Status> {
        use crate::store::State;
        let bytes = req.into_inner().preimage;
        let preimage = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            Status::unknown(format!(
                "invalid preimage length of {}, want 32",
                bytes.len()
            ))
        })?;
        let hash = sha256::Hash::hash(&preimage).to_byte_array();
        let hex = hash.to_lower_hex_string();
        let record = self.0.store().invoice(&hex).cloned();
        // LND's answers: settled already is a success; open and cancelled are refused.
        let record = match record {
            None => return Err(Status::unknown("unable to locate invoice")),
            Some(r) => match r.effective_state(now()) {
                State::Settled => return Ok(Response::new(Default::default())),
                State::Open => return Err(Status::unknown("invoice still open")),
                State::Canceled => return Err(Status::unknown("invoice already canceled")),
                State::Accepted => r,
            },
        };
        // Kept first: a restart before LDK reports the claim claims again on the replayed
        // event.
        self.0
            .store()
            .set_preimage(&hex, &preimage.to_lower_hex_string())
            .map_err(|e| Status::unknown(e.to_string()))?;
        self.0
            .node
            .bolt11_payment()
            .claim_for_hash(
                PaymentHash(hash),
                record.amt_paid_msat,
                PaymentPreimage(preimage),
            )
            .map_err(|e| Status::unknown(e.to_string()))?;
        tracing::info!(hash = hex, "hold invoice settling");
        let deadline = tokio::time::Instant::now() + SETTLE_WAIT;
        while tokio::time::Instant::now() < deadline {
            let settled = self
                .0
                .store()
                .invoice(&hex)
                .is_some_and(|r| r.state == State::Settled);
            if settled {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Response::new(Default::default()))
    }

    async fn cancel_invoice(
        &self,
        req: Request<invoicesrpc::CancelInvoiceMsg>,
    ) -> Result<Response<invoicesrpc::CancelInvoiceResp>, Status> {
        let hash = parse_hash(&req.into_inner().payment_hash)?;
        let hex = hash.to_lower_hex_string();
        let before = self
            .0
            .store()
            .cancel(&hex)
            .map_err(|e| Status::unknown(e.to_string()))?;
        match before {
            None => Err(Status::not_found("unable to locate invoice")),
            Some(crate::store::State::Settled) => Err(Status::unknown("invoice already settled")),
            Some(crate::store::State::Canceled) => Ok(Response::new(Default::default())),
            Some(crate::store::State::Open | crate::store::State::Accepted) => {
                // Fails any HTLCs already held for it; later ones are failed on arrival.
                let _ = self
                    .0
                    .node
                    .bolt11_payment()
                    .fail_for_hash(PaymentHash(hash));
                tracing::info!(hash = hex, "invoice cancelled");
                if let Some(record) = self.0.store().invoice(&hex) {
                    let _ = self.0.invoice_events.send(to_lnrpc_invoice(record, now()));
                }
                Ok(Response::new(Default::default()))
            }
        }
    }
}
