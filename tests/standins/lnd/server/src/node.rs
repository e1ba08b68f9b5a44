//! The LDK node behind the stand-in: how it is built, the event loop that claims, fails
//! and records payments, the sync loop, and the state the gRPC services share.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fedimint_tonic_lnd::lnrpc;
use ldk_node::bitcoin::hashes::{Hash, sha256};
use ldk_node::bitcoin::hex::{DisplayHex, FromHex};
use ldk_node::config::{Config, EsploraSyncConfig};
use ldk_node::lightning::events::PaymentFailureReason;
use ldk_node::lightning::ln::msgs::SocketAddress;
use ldk_node::lightning_types::payment::{PaymentHash, PaymentPreimage};
use ldk_node::{Builder, Event, Node};
use tokio::sync::broadcast;

use crate::store::{InvoiceRecord, State as InvoiceState, Store};

/// What the stand-in runs on.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub data_dir: PathBuf,
    pub esplora_url: String,
    pub p2p_port: u16,
}

/// Shared by the gRPC services.
pub struct Shared {
    pub node: Arc<Node>,
    store: Mutex<Store>,
    /// Every added, settled or cancelled invoice (SubscribeInvoices).
    pub invoice_events: broadcast::Sender<lnrpc::Invoice>,
    /// Payment hashes of outgoing payments that changed (TrackPaymentV2, TrackPayments).
    pub payment_events: broadcast::Sender<[u8; 32]>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("node_id", &self.node.node_id())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves the store as the file has it: go on.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Builds and starts the LDK node (outside any tokio runtime: LDK Node runs its own).
pub fn start(options: &NodeOptions) -> anyhow::Result<Arc<Shared>> {
    let config = Config {
        storage_dir_path: options.data_dir.join("ldk").display().to_string(),
        network: ldk_node::bitcoin::Network::Regtest,
        listening_addresses: Some(vec![SocketAddress::TcpIpV4 {
            addr: [127, 0, 0, 1],
            port: options.p2p_port,
        }]),
        // Plain (non-anchor) channels: an anchor channel needs an on-chain reserve on the
        // accepting side too, which a fresh test node does not have.
        anchor_channels_config: None,
        ..Config::default()
    };
    let mut builder = Builder::from_config(config);
    // No background sync (its floor is 10 s): the sync loop below runs much more often,
    // so that tests wait for blocks seconds, not tens of seconds.
    builder.set_chain_source_esplora(
        options.esplora_url.clone(),
        Some(EsploraSyncConfig {
            background_sync_config: None,
        }),
    );
    builder.set_entropy_seed_path(options.data_dir.join("seed").display().to_string());
    let node = Arc::new(builder.build()?);
    node.start()?;
    let store = Store::open(&options.data_dir)?;
    let (invoice_events, _) = broadcast::channel(1024);
    let (payment_events, _) = broadcast::channel(1024);
    Ok(Arc::new(Shared {
        node,
        store: Mutex::new(store),
        invoice_events,
        payment_events,
    }))
}

/// Syncs the wallets every `interval`, for ever.
pub async fn sync_loop(shared: Arc<Shared>, interval: Duration) {
    loop {
        let node = Arc::clone(&shared.node);
        match tokio::task::spawn_blocking(move || node.sync_wallets()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "wallet sync failed"),
            Err(e) => tracing::warn!(error = %e, "wallet sync task failed"),
        }
        tokio::time::sleep(interval).await;
    }
}

/// Reconnects to the peers it keeps (those it opened channels to or connected to) every
/// `interval` while they are away, as LND reconnects to its persistent peers within
/// seconds (LDK Node alone tries once a minute): a peer that restarted is back soon.
pub async fn reconnect_loop(shared: Arc<Shared>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let away = shared
            .node
            .list_peers()
            .into_iter()
            .filter(|p| p.is_persisted && !p.is_connected);
        for peer in away {
            let node = Arc::clone(&shared.node);
            let (id, address) = (peer.node_id, peer.address.clone());
            match tokio::task::spawn_blocking(move || node.connect(id, address, true)).await {
                Ok(Ok(())) => tracing::info!(peer = %peer.node_id, "reconnected to a peer"),
                Ok(Err(e)) => tracing::debug!(peer = %peer.node_id, error = %e, "peer still away"),
                Err(e) => tracing::warn!(error = %e, "reconnect task failed"),
            }
        }
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// LND's `PaymentFailureReason` for LDK's.
fn failure_reason(reason: Option<PaymentFailureReason>) -> lnrpc::PaymentFailureReason {
    use lnrpc::PaymentFailureReason as R;
    match reason {
        Some(PaymentFailureReason::RecipientRejected) => R::FailureReasonIncorrectPaymentDetails,
        Some(PaymentFailureReason::RouteNotFound | PaymentFailureReason::RetriesExhausted) => {
            R::FailureReasonNoRoute
        }
        Some(PaymentFailureReason::PaymentExpired) => R::FailureReasonTimeout,
        Some(PaymentFailureReason::UserAbandoned) => R::FailureReasonCanceled,
        _ => R::FailureReasonError,
    }
}

/// Handles LDK's events for ever. Each is acknowledged only after what it changes is
/// persisted (the settle index above all), so a crash replays it rather than losing it.
pub async fn event_loop(shared: Arc<Shared>) {
    loop {
        let event = shared.node.next_event_async().await;
        if let Err(e) = handle(&shared, &event) {
            // Not acknowledged: LDK hands it out again.
            tracing::error!(error = %e, ?event, "handling an LDK event failed; retrying");
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        if let Err(e) = shared.node.event_handled() {
            tracing::error!(error = %e, "acknowledging an LDK event failed");
        }
    }
}

fn handle(shared: &Shared, event: &Event) -> anyhow::Result<()> {
    match event {
        Event::PaymentClaimable {
            payment_hash,
            claimable_amount_msat,
            ..
        } => claim_or_fail(shared, *payment_hash, *claimable_amount_msat)?,
        Event::PaymentReceived {
            payment_hash,
            amount_msat,
            ..
        } => {
            let hash = payment_hash.0.to_lower_hex_string();
            let settled = shared.store().settle(&hash, *amount_msat, now())?;
            if let Some(record) = settled {
                tracing::info!(hash, settle_index = record.settle_index, "invoice settled");
                let _ = shared.invoice_events.send(to_lnrpc_invoice(&record, now()));
            }
        }
        Event::PaymentSuccessful { payment_hash, .. } => {
            tracing::info!(hash = %payment_hash.0.to_lower_hex_string(), "payment succeeded");
            let _ = shared.payment_events.send(payment_hash.0);
        }
        Event::PaymentFailed {
            payment_hash: Some(payment_hash),
            reason,
            ..
        } => {
            let hash = payment_hash.0.to_lower_hex_string();
            let reason = failure_reason(*reason);
            tracing::info!(hash, ?reason, "payment failed");
            shared.store().record_failure(&hash, reason as i32)?;
            let _ = shared.payment_events.send(payment_hash.0);
        }
        other => tracing::info!(event = ?other, "ldk event"),
    }
    Ok(())
}

/// Claims an HTLC set paying an open invoice of ours with at least its amount; fails any
/// other (cancelled, expired, underpaid, unknown), as LND does. A hold invoice's payment is
/// accepted and held instead (until `SettleInvoice` or `CancelInvoice`); one whose preimage
/// came already (an event replayed after a restart) is claimed.
fn claim_or_fail(shared: &Shared, hash: PaymentHash, amount_msat: u64) -> anyhow::Result<()> {
    let hex = hash.0.to_lower_hex_string();
    let record = shared.store().invoice(&hex).cloned();
    let payable = |r: &InvoiceRecord| r.value_msat.is_none_or(|v| amount_msat >= v);
    let bolt11 = shared.node.bolt11_payment();
    let preimage = |r: &InvoiceRecord| <[u8; 32]>::from_hex(&r.preimage).ok();
    let action = match &record {
        Some(r) if r.hold => match r.effective_state(now()) {
            InvoiceState::Open if payable(r) => Action::Hold,
            InvoiceState::Accepted => preimage(r).map_or(Action::Keep, Action::Claim),
            _ => Action::Fail,
        },
        Some(r) if r.effective_state(now()) == InvoiceState::Open && payable(r) => {
            preimage(r).map_or(Action::Fail, Action::Claim)
        }
        _ => Action::Fail,
    };
    match action {
        Action::Claim(preimage) => {
            tracing::info!(hash = hex, amount_msat, "claiming");
            bolt11.claim_for_hash(hash, amount_msat, PaymentPreimage(preimage))?;
        }
        Action::Hold => {
            if let Some(record) = shared.store().accept(&hex, amount_msat)? {
                tracing::info!(hash = hex, amount_msat, "hold invoice accepted; holding");
                let _ = shared.invoice_events.send(to_lnrpc_invoice(&record, now()));
            }
        }
        Action::Keep => tracing::info!(hash = hex, amount_msat, "still holding"),
        Action::Fail => {
            tracing::info!(hash = hex, amount_msat, "refusing a payment");
            bolt11.fail_for_hash(hash)?;
        }
    }
    Ok(())
}

/// What to do with a payment that arrived for one of our invoices.
enum Action {
    Claim([u8; 32]),
    /// Accept and hold it (a hold invoice).
    Hold,
    /// Held already: keep holding.
    Keep,
    Fail,
}

/// A fresh preimage and its hash.
pub fn new_preimage() -> ([u8; 32], [u8; 32]) {
    let preimage: [u8; 32] = rand::random();
    let hash = sha256::Hash::hash(&preimage).to_byte_array();
    (preimage, hash)
}

/// LND's view of one of our invoices.
pub fn to_lnrpc_invoice(r: &InvoiceRecord, now: i64) -> lnrpc::Invoice {
    use lnrpc::invoice::InvoiceState as S;
    let state = match r.effective_state(now) {
        InvoiceState::Open => S::Open,
        InvoiceState::Settled => S::Settled,
        InvoiceState::Canceled => S::Canceled,
        InvoiceState::Accepted => S::Accepted,
    };
    let value_msat = r.value_msat.unwrap_or(0);
    let settled = state == S::Settled;
    lnrpc::Invoice {
        memo: r.memo.clone(),
        r_preimage: if settled {
            Vec::from_hex(&r.preimage).unwrap_or_default()
        } else {
            Vec::new()
        },
        r_hash: Vec::from_hex(&r.hash).unwrap_or_default(),
        value: i64::try_from(value_msat / 1000).unwrap_or(i64::MAX),
        value_msat: i64::try_from(value_msat).unwrap_or(i64::MAX),
        creation_date: r.creation_date,
        settle_date: r.settle_date,
        payment_request: r.payment_request.clone(),
        description_hash: Vec::from_hex(&r.description_hash).unwrap_or_default(),
        expiry: r.expiry,
        add_index: r.add_index,
        settle_index: r.settle_index,
        amt_paid_sat: i64::try_from(r.amt_paid_msat / 1000).unwrap_or(i64::MAX),
        amt_paid_msat: i64::try_from(r.amt_paid_msat).unwrap_or(i64::MAX),
        state: state as i32,
        ..Default::default()
    }
}
