//! LND's hold invoices on the outside node, driven over its own gRPC API (invoicesrpc), as
//! a recipient that holds a payment would: the bank's node pays, the HTLC arrives and is
//! held (ACCEPTED) until the recipient settles it with the preimage or cancels it. The
//! bank never makes hold invoices, so this is no part of the adapter.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::futures_util::StreamExt;
use coordinator::amount::Sats;
use coordinator::lightning::{PaymentHash, Preimage};
use fedimint_tonic_lnd::{invoicesrpc, lnrpc};
use lnd_standin::spawn::LndStandIn;

use super::eventually;

/// LND's invoice states.
pub use lnrpc::invoice::InvoiceState as LndState;

/// A gRPC client of one stand-in.
#[derive(Clone)]
pub struct HoldClient(fedimint_tonic_lnd::Client);

/// Every invoice update `SubscribeInvoices` streamed, in order: (payment hash, state).
pub type Seen = Arc<Mutex<Vec<(Vec<u8>, i32)>>>;

impl HoldClient {
    /// Connects to `node` with its certificate and macaroon.
    pub async fn connect(node: &LndStandIn) -> HoldClient {
        // The process's rustls provider, as the adapter installs it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = fedimint_tonic_lnd::connect(
            node.grpc_url().to_string(),
            node.tls_cert_path(),
            node.macaroon_path(),
        )
        .await
        .expect("a gRPC client of the stand-in");
        HoldClient(client)
    }

    /// A hold invoice of `amount` for the hash of `preimage` (which the node does not get).
    pub async fn add(&self, preimage: &Preimage, amount: Sats, memo: &str) -> String {
        let mut c = self.0.clone();
        let added = c
            .invoices()
            .add_hold_invoice(invoicesrpc::AddHoldInvoiceRequest {
                memo: memo.into(),
                hash: preimage.payment_hash().0.to_vec(),
                value: i64::try_from(amount.to_sat()).expect("amount"),
                expiry: 3600,
                ..Default::default()
            })
            .await
            .expect("AddHoldInvoice")
            .into_inner();
        assert!(added.add_index > 0, "{added:?}");
        assert_eq!(added.payment_addr.len(), 32, "{added:?}");
        added.payment_request
    }

    /// The invoice as LND reports it.
    pub async fn lookup(&self, hash: &PaymentHash) -> lnrpc::Invoice {
        let mut c = self.0.clone();
        #[allow(deprecated)]
        let request = lnrpc::PaymentHash {
            r_hash: hash.0.to_vec(),
            ..Default::default()
        };
        c.lightning()
            .lookup_invoice(request)
            .await
            .expect("LookupInvoice")
            .into_inner()
    }

    /// Waits until the invoice is in `state`.
    pub async fn wait_for(&self, hash: &PaymentHash, state: LndState) -> lnrpc::Invoice {
        eventually(
            &format!("the invoice is {state:?}"),
            Duration::from_secs(90),
            || async {
                let invoice = self.lookup(hash).await;
                (invoice.state == state as i32).then_some(invoice)
            },
        )
        .await
    }

    /// Settles a held payment with its preimage.
    pub async fn settle(
        &self,
        preimage: &Preimage,
    ) -> Result<(), fedimint_tonic_lnd::tonic::Status> {
        let mut c = self.0.clone();
        c.invoices()
            .settle_invoice(invoicesrpc::SettleInvoiceMsg {
                preimage: preimage.0.to_vec(),
            })
            .await
            .map(|_| ())
    }

    /// Cancels an invoice, failing a held payment back.
    pub async fn cancel(
        &self,
        hash: &PaymentHash,
    ) -> Result<(), fedimint_tonic_lnd::tonic::Status> {
        let mut c = self.0.clone();
        c.invoices()
            .cancel_invoice(invoicesrpc::CancelInvoiceMsg {
                payment_hash: hash.0.to_vec(),
            })
            .await
            .map(|_| ())
    }

    /// Records every update `SubscribeInvoices` streams from now on.
    pub async fn subscribe(&self) -> Seen {
        let mut c = self.0.clone();
        let mut stream = c
            .lightning()
            .subscribe_invoices(lnrpc::InvoiceSubscription::default())
            .await
            .expect("SubscribeInvoices")
            .into_inner();
        let seen: Seen = Arc::default();
        let out = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Some(Ok(invoice)) = stream.next().await {
                out.lock()
                    .expect("not poisoned")
                    .push((invoice.r_hash, invoice.state));
            }
        });
        seen
    }
}

/// The states `seen` streamed for `hash`, in order.
pub fn states_of(seen: &Seen, hash: &PaymentHash) -> Vec<i32> {
    seen.lock()
        .expect("not poisoned")
        .iter()
        .filter(|(h, _)| h.as_slice() == hash.0.as_slice())
        .map(|(_, s)| *s)
        .collect()
}
