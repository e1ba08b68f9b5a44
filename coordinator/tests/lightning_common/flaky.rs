//! A Lightning node that goes out of reach at a chosen moment: the real node behind it
//! answers every call until `cut` is set; then `pay` and `payment` fail as a node that
//! cannot be reached does (the rest keeps answering, so that the bank gets past its own
//! checks and holds the funds first).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql::futures_util::stream::BoxStream;
use async_trait::async_trait;
use coordinator::amount::Msats;
use coordinator::lightning::{
    Balances, ChannelInfo, CreatedInvoice, DecodedInvoice, InvoiceRequest, InvoiceState,
    LightningError, LightningNode, NodeInfo, PayRequest, PaymentHash, PaymentState, PaymentUpdate,
    SettleCursor, SettledInvoice,
};

/// The node, and the switch that cuts it off for payments.
#[derive(Debug)]
pub struct Flaky {
    pub inner: Arc<dyn LightningNode>,
    pub cut: AtomicBool,
}

impl Flaky {
    fn check(&self) -> Result<(), LightningError> {
        if self.cut.load(Ordering::SeqCst) {
            Err(LightningError::Unavailable("cut off by the test".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl LightningNode for Flaky {
    async fn info(&self) -> Result<NodeInfo, LightningError> {
        self.inner.info().await
    }
    async fn create_invoice(&self, r: &InvoiceRequest) -> Result<CreatedInvoice, LightningError> {
        self.inner.create_invoice(r).await
    }
    async fn cancel_invoice(&self, hash: &PaymentHash) -> Result<(), LightningError> {
        self.inner.cancel_invoice(hash).await
    }
    async fn invoice(&self, hash: &PaymentHash) -> Result<InvoiceState, LightningError> {
        self.inner.invoice(hash).await
    }
    async fn settled_invoices(
        &self,
        after: SettleCursor,
    ) -> Result<BoxStream<'static, Result<SettledInvoice, LightningError>>, LightningError> {
        self.inner.settled_invoices(after).await
    }
    async fn pay(&self, request: &PayRequest) -> Result<PaymentState, LightningError> {
        self.check()?;
        self.inner.pay(request).await
    }
    async fn probe_fee(&self, i: &DecodedInvoice, a: Msats) -> Result<Msats, LightningError> {
        self.inner.probe_fee(i, a).await
    }
    async fn payment(&self, hash: &PaymentHash) -> Result<Option<PaymentState>, LightningError> {
        self.check()?;
        self.inner.payment(hash).await
    }
    async fn payment_updates(
        &self,
    ) -> Result<BoxStream<'static, Result<PaymentUpdate, LightningError>>, LightningError> {
        self.inner.payment_updates().await
    }
    async fn balances(&self) -> Result<Balances, LightningError> {
        self.inner.balances().await
    }
    async fn channels(&self) -> Result<Vec<ChannelInfo>, LightningError> {
        self.inner.channels().await
    }
}
