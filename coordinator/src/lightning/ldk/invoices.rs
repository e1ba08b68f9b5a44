//! Invoices on the embedded node: made for a preimage the book keeps (LDK Node's
//! `receive_for_hash`, so each payment waits for our claim), cancelled in the book, looked
//! up there, and the settlement stream from the book's log.

use async_graphql::futures_util::stream::{self, BoxStream, StreamExt};
use bitcoin::hashes::{Hash, sha256};
use chrono::{DateTime, Utc};
use ldk_node::lightning_invoice::{Bolt11InvoiceDescription, Description, Sha256};
use ldk_node::lightning_types::payment::PaymentHash as LdkHash;
use tokio::sync::broadcast::error::RecvError;

use super::EmbeddedNode;
use super::book::{Cancelled, Entry, Stage};
use super::error::from_node;
use super::events::now;
use crate::lightning::{
    CreatedInvoice, InvoiceDescription, InvoiceRequest, InvoiceState, LightningError, PaymentHash,
    Preimage, SettleCursor, SettledInvoice,
};

impl EmbeddedNode {
    pub(super) fn add_invoice(
        &self,
        request: &InvoiceRequest,
    ) -> Result<CreatedInvoice, LightningError> {
        let description = match &request.description {
            InvoiceDescription::Memo(m) => Bolt11InvoiceDescription::Direct(
                Description::new(m.clone())
                    .map_err(|e| LightningError::Invalid(format!("memo: {e}")))?,
            ),
            InvoiceDescription::Hash(h) => {
                Bolt11InvoiceDescription::Hash(Sha256(sha256::Hash::from_byte_array(*h)))
            }
        };
        let expiry = u32::try_from(request.expiry.as_secs().max(1))
            .map_err(|_| LightningError::Invalid("expiry too long".into()))?;
        let preimage = Preimage(rand::random());
        let hash = preimage.payment_hash();
        let expires_at = now().saturating_add(i64::from(expiry));
        // In the book before LDK knows it: a payment can only come after the invoice is out.
        self.book
            .add(&hash, &Entry::new(&preimage, request.amount, expires_at))?;
        let bolt11 = self.node.bolt11_payment();
        let invoice = match request.amount {
            Some(a) => bolt11.receive_for_hash(a.to_msat(), &description, expiry, LdkHash(hash.0)),
            None => bolt11.receive_variable_amount_for_hash(&description, expiry, LdkHash(hash.0)),
        }
        .map_err(from_node)?;
        let expires_at = invoice
            .expires_at()
            .and_then(|d| i64::try_from(d.as_secs()).ok())
            .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Ok(CreatedInvoice {
            payment_request: invoice.to_string(),
            payment_hash: hash,
            expires_at,
        })
    }

    pub(super) fn cancel(&self, hash: &PaymentHash) -> Result<(), LightningError> {
        match self.book.cancel(hash)? {
            Cancelled::Done => {
                // Fails back anything LDK holds for it now; later payments are failed on
                // arrival (the book says cancelled).
                if let Err(e) = self.node.bolt11_payment().fail_for_hash(LdkHash(hash.0)) {
                    tracing::debug!(%hash, error = %e, "nothing held for a cancelled invoice");
                }
                Ok(())
            }
            Cancelled::AlreadySettled => Err(LightningError::AlreadySettled),
            Cancelled::Unknown => Err(LightningError::NotFound),
        }
    }

    pub(super) fn lookup(&self, hash: &PaymentHash) -> Result<InvoiceState, LightningError> {
        Ok(match self.book.get(hash)? {
            None => InvoiceState::Unknown,
            Some((_, Some(settled))) => InvoiceState::Settled(settled),
            Some((entry, None)) => match entry.stage {
                Stage::Cancelled => InvoiceState::Cancelled,
                // Claiming: the payment is being taken, not settled yet.
                Stage::Claiming => InvoiceState::Open,
                Stage::Open if now() >= entry.expires_at => InvoiceState::Cancelled,
                Stage::Open => InvoiceState::Open,
            },
        })
    }

    pub(super) fn settlements(
        &self,
        after: SettleCursor,
    ) -> Result<BoxStream<'static, Result<SettledInvoice, LightningError>>, LightningError> {
        // Subscribed before the backlog is read, so that nothing falls between the two; one
        // in both is dropped from the live part by its cursor.
        let live = self.settled.subscribe();
        let backlog = self.book.settled_after(after)?;
        let last = backlog.last().map_or(after, |s| s.cursor);
        let live = stream::unfold((live, last), |(mut rx, last)| async move {
            loop {
                match rx.recv().await {
                    Ok(s) if s.cursor <= last => continue,
                    Ok(s) => {
                        let cursor = s.cursor;
                        return Some((Ok(s), (rx, cursor)));
                    }
                    // The caller resubscribes from its cursor and reads the missed ones
                    // from the book.
                    Err(RecvError::Lagged(_)) => {
                        return Some((
                            Err(LightningError::Unavailable(
                                "settlement stream lagged".into(),
                            )),
                            (rx, last),
                        ));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        });
        Ok(stream::iter(backlog.into_iter().map(Ok))
            .chain(live)
            .boxed())
    }
}
