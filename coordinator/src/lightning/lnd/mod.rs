//! The LND adapter: [`LndNode`] speaks LND's gRPC API (lnrpc.Lightning, routerrpc.Router,
//! invoicesrpc.Invoices) with the macaroon and TLS certificate an LND operator hands out,
//! through fedimint-tonic-lnd.
//!
//! Every call has a timeout; none is retried here (the bank retries what the trait says is
//! safe to repeat). By concern: `invoices.rs`, `payments.rs`, `wallet.rs` (node, balances,
//! channels, the operator's calls), `error.rs` (LND's answers as [`LightningError`]).

mod error;
mod invoices;
mod payments;
mod wallet;

use std::path::PathBuf;
use std::time::Duration;

use async_graphql::futures_util::stream::BoxStream;
use async_trait::async_trait;

use super::{
    Balances, ChannelInfo, ChannelOperator, CreatedInvoice, DecodedInvoice, InvoiceRequest,
    InvoiceState, LightningError, LightningNode, NodeInfo, PayRequest, PaymentHash, PaymentState,
    PaymentUpdate, SettleCursor, SettledInvoice,
};
use crate::amount::{Msats, Sats};

/// Where LND is and how to prove who we are to it.
#[derive(Clone, Debug)]
pub struct LndConfig {
    /// LND's gRPC address, `https://host:port` (LND's `rpclisten`, 10009 by default).
    pub address: String,
    /// LND's TLS certificate (`tls.cert`, PEM): the only certificate accepted.
    pub tls_cert_path: PathBuf,
    /// The macaroon file (e.g. `admin.macaroon`); read at connect, never logged.
    pub macaroon_path: PathBuf,
    /// The bank's network; a node on another is refused.
    pub network: bitcoin::Network,
    /// The longest any one call may take before the node counts as unavailable.
    pub request_timeout: Duration,
    /// How long LND itself keeps trying routes for a payment (`timeout_seconds`).
    pub payment_timeout: Duration,
}

impl LndConfig {
    /// A configuration with the usual timeouts (10 s per call, 60 s per payment).
    pub fn new(
        address: impl Into<String>,
        tls_cert_path: impl Into<PathBuf>,
        macaroon_path: impl Into<PathBuf>,
        network: bitcoin::Network,
    ) -> Self {
        Self {
            address: address.into(),
            tls_cert_path: tls_cert_path.into(),
            macaroon_path: macaroon_path.into(),
            network,
            request_timeout: Duration::from_secs(10),
            payment_timeout: Duration::from_secs(60),
        }
    }
}

/// An LND node over gRPC.
#[derive(Clone)]
pub struct LndNode {
    config: LndConfig,
    // Holds the macaroon (hex, inside fedimint-tonic-lnd's interceptor): never printed.
    client: fedimint_tonic_lnd::Client,
}

impl std::fmt::Debug for LndNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LndNode")
            .field("address", &self.config.address)
            .finish_non_exhaustive()
    }
}

impl LndNode {
    /// Reads the certificate and macaroon and prepares the connection. Nothing is sent
    /// yet: a node that is down makes the first call fail with
    /// [`LightningError::Unavailable`], not this one.
    ///
    /// # Errors
    /// [`LightningError::Invalid`] if the files cannot be read or the address parsed.
    pub async fn connect(config: LndConfig) -> Result<Self, LightningError> {
        // fedimint-tonic-lnd checks the certificate with the process's rustls provider;
        // ring is the one this project builds. An error means one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = fedimint_tonic_lnd::connect(
            config.address.clone(),
            config.tls_cert_path.clone(),
            config.macaroon_path.clone(),
        )
        .await
        // The error names the file, never its content.
        .map_err(|e| LightningError::Invalid(format!("LND connection settings: {e}")))?;
        Ok(Self { config, client })
    }
}

#[async_trait]
impl LightningNode for LndNode {
    async fn info(&self) -> Result<NodeInfo, LightningError> {
        self.get_info().await
    }

    async fn create_invoice(
        &self,
        request: &InvoiceRequest,
    ) -> Result<CreatedInvoice, LightningError> {
        self.add_invoice(request).await
    }

    async fn cancel_invoice(&self, hash: &PaymentHash) -> Result<(), LightningError> {
        self.cancel(hash).await
    }

    async fn invoice(&self, hash: &PaymentHash) -> Result<InvoiceState, LightningError> {
        self.lookup(hash).await
    }

    async fn settled_invoices(
        &self,
        after: SettleCursor,
    ) -> Result<BoxStream<'static, Result<SettledInvoice, LightningError>>, LightningError> {
        self.settlements(after).await
    }

    async fn pay(&self, request: &PayRequest) -> Result<PaymentState, LightningError> {
        self.send(request).await
    }

    async fn probe_fee(
        &self,
        invoice: &DecodedInvoice,
        amount: Msats,
    ) -> Result<Msats, LightningError> {
        self.estimate_fee(invoice, amount).await
    }

    async fn payment(&self, hash: &PaymentHash) -> Result<Option<PaymentState>, LightningError> {
        self.payment_state(hash).await
    }

    async fn payment_updates(
        &self,
    ) -> Result<BoxStream<'static, Result<PaymentUpdate, LightningError>>, LightningError> {
        self.updates().await
    }

    async fn balances(&self) -> Result<Balances, LightningError> {
        self.get_balances().await
    }

    async fn channels(&self) -> Result<Vec<ChannelInfo>, LightningError> {
        self.list_channels().await
    }
}

#[async_trait]
impl ChannelOperator for LndNode {
    async fn new_onchain_address(&self) -> Result<String, LightningError> {
        self.address().await
    }

    async fn connect_peer(&self, peer: &str) -> Result<(), LightningError> {
        self.connect_to(peer).await
    }

    async fn open_channel(
        &self,
        peer: &str,
        capacity: Sats,
        push: Msats,
    ) -> Result<String, LightningError> {
        self.open(peer, capacity, push).await
    }
}
