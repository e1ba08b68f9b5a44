//! Lightning: the [`LightningNode`] trait the bank speaks to, whatever implementation runs
//! the node, and its adapters: [`ldk`] (an embedded LDK node, the default for a
//! single-machine bank and the demo) and [`lnd`] (LND over gRPC, the production backend).
//!
//! The trait is what a bank needs of a node, no more: invoices (create, cancel, look up,
//! and a stream of settlements from a durable cursor), payments (pay with a fee limit and a
//! timeout, probe the fee, look one up, a live stream of updates), balances and channels.
//! Every method documents whether calling it twice is safe; the bank relies on that when a
//! request is retried or another instance finishes a payment.

mod config;
mod error;
mod invoice;
pub mod ldk;
pub mod lnd;
mod types;

pub use config::{Backend, LightningFile, NodeSettings};
pub use error::LightningError;
pub use invoice::{DecodedInvoice, InvoiceError, decode_invoice};
pub use types::{
    Balances, ChannelInfo, CreatedInvoice, InvoiceDescription, InvoiceRequest, InvoiceState,
    NodeInfo, PayRequest, PaymentFailure, PaymentHash, PaymentState, PaymentUpdate, Preimage,
    SettleCursor, SettledInvoice,
};

use async_graphql::futures_util::stream::BoxStream;
use async_trait::async_trait;

use crate::amount::Msats;

/// A Lightning node as the bank uses it.
#[async_trait]
pub trait LightningNode: Send + Sync + std::fmt::Debug {
    /// The node's identity, network and chain tip. Read-only.
    async fn info(&self) -> Result<NodeInfo, LightningError>;

    /// Creates a new invoice. Not idempotent: every call makes another invoice (the bank
    /// records each one before handing it out).
    async fn create_invoice(
        &self,
        request: &InvoiceRequest,
    ) -> Result<CreatedInvoice, LightningError>;

    /// Cancels an open invoice so that the node refuses payments to it. Idempotent;
    /// [`LightningError::AlreadySettled`] when it was paid first.
    async fn cancel_invoice(&self, hash: &PaymentHash) -> Result<(), LightningError>;

    /// An invoice of this node, by payment hash. Read-only.
    async fn invoice(&self, hash: &PaymentHash) -> Result<InvoiceState, LightningError>;

    /// Settled invoices after `after`, in settlement order, then each new settlement as it
    /// happens. The cursor is durable: a caller that stores the last one it handled and
    /// subscribes again from it (after a restart, on another instance) misses none; it may
    /// see one again, so handling must be idempotent (the bank keys it by payment hash).
    async fn settled_invoices(
        &self,
        after: SettleCursor,
    ) -> Result<BoxStream<'static, Result<SettledInvoice, LightningError>>, LightningError>;

    /// Starts paying an invoice and waits until it succeeds, fails or `request.timeout`
    /// passes (then it is still in flight: follow it with [`LightningNode::payment`]).
    /// Idempotent by payment hash: a second call for an invoice this node has paid or is
    /// paying does not pay again; it answers the existing payment's state.
    async fn pay(&self, request: &PayRequest) -> Result<PaymentState, LightningError>;

    /// The fee a payment of `amount` to this invoice would cost now (a probe along a route;
    /// nothing is paid). Read-only.
    async fn probe_fee(
        &self,
        invoice: &DecodedInvoice,
        amount: Msats,
    ) -> Result<Msats, LightningError>;

    /// An outgoing payment by hash; `None` if this node never tried to pay it. Read-only.
    async fn payment(&self, hash: &PaymentHash) -> Result<Option<PaymentState>, LightningError>;

    /// Live updates of outgoing payments (no history: [`LightningNode::payment`] is the
    /// source of truth; the stream only saves the bank from polling often).
    async fn payment_updates(
        &self,
    ) -> Result<BoxStream<'static, Result<PaymentUpdate, LightningError>>, LightningError>;

    /// On-chain and channel balances. Read-only.
    async fn balances(&self) -> Result<Balances, LightningError>;

    /// The node's channels. Read-only.
    async fn channels(&self) -> Result<Vec<ChannelInfo>, LightningError>;
}

/// What an operator does to a node to give it liquidity: fund it on chain, connect to a
/// peer, open a channel. The demo and the admin tools use it; payments never do.
#[async_trait]
pub trait ChannelOperator: Send + Sync + std::fmt::Debug {
    /// A fresh address of the node's on-chain wallet. Not idempotent (a new one each time).
    async fn new_onchain_address(&self) -> Result<String, LightningError>;

    /// Connects to a peer (`pubkey@host:port`) and remembers it. Idempotent.
    async fn connect_peer(&self, peer: &str) -> Result<(), LightningError>;

    /// Opens a channel of `capacity` satoshis to a connected peer, pushing `push` to it.
    /// Not idempotent: every call opens another channel. Returns the funding txid.
    async fn open_channel(
        &self,
        peer: &str,
        capacity: crate::amount::Sats,
        push: Msats,
    ) -> Result<String, LightningError>;
}

/// `pubkey@host:port` split into the key and the host (optional), as both backends'
/// operator calls take a peer.
pub(crate) fn parse_peer(
    peer: &str,
) -> Result<(bitcoin::secp256k1::PublicKey, Option<&str>), LightningError> {
    let (key, host) = match peer.split_once('@') {
        Some((k, h)) => (k, Some(h)),
        None => (peer, None),
    };
    let key = key
        .parse()
        .map_err(|_| LightningError::Invalid(format!("not a node public key: {key}")))?;
    Ok((key, host))
}
