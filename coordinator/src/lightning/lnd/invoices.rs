//! Invoices over LND: AddInvoice, CancelInvoice (invoicesrpc), LookupInvoice, and the
//! settlement stream (SubscribeInvoices from the settle index, after ListInvoices when the
//! cursor is 0, which LND reads as "no backlog").

use async_graphql::futures_util::stream::{self, BoxStream, StreamExt};
use fedimint_tonic_lnd::{invoicesrpc, lnrpc};

use super::LndNode;
use super::error::{bytes32, call, from_status, non_negative};
use crate::amount::Msats;
use crate::lightning::{
    CreatedInvoice, InvoiceDescription, InvoiceRequest, InvoiceState, LightningError, PaymentHash,
    Preimage, SettleCursor, SettledInvoice, decode_invoice,
};

/// How many invoices one ListInvoices page holds while replaying settlements.
const PAGE: u64 = 500;

/// A settled invoice from LND's record of it.
fn settled(invoice: &lnrpc::Invoice) -> Result<SettledInvoice, LightningError> {
    let amount = non_negative("amount paid", invoice.amt_paid_msat)?;
    Ok(SettledInvoice {
        cursor: SettleCursor(invoice.settle_index),
        payment_hash: PaymentHash(bytes32("payment hash", &invoice.r_hash)?),
        amount: Msats::new(amount)
            .map_err(|e| LightningError::Protocol(format!("amount paid: {e}")))?,
        preimage: Preimage(bytes32("preimage", &invoice.r_preimage)?),
    })
}

fn is_settled(invoice: &lnrpc::Invoice) -> bool {
    invoice.state == lnrpc::invoice::InvoiceState::Settled as i32
}

impl LndNode {
    pub(super) async fn add_invoice(
        &self,
        request: &InvoiceRequest,
    ) -> Result<CreatedInvoice, LightningError> {
        let (memo, description_hash) = match &request.description {
            InvoiceDescription::Memo(m) => (m.clone(), Vec::new()),
            InvoiceDescription::Hash(h) => (String::new(), h.to_vec()),
        };
        // LND counts expiry in whole seconds; zero would mean its default (a day).
        let expiry = i64::try_from(request.expiry.as_secs().max(1))
            .map_err(|_| LightningError::Invalid("expiry too long".into()))?;
        let invoice = lnrpc::Invoice {
            memo,
            description_hash,
            value_msat: request.amount.map_or(0, Msats::to_i64),
            expiry,
            ..Default::default()
        };
        let mut client = self.client.clone();
        let added = call(
            "AddInvoice",
            self.config.request_timeout,
            client.lightning().add_invoice(invoice),
        )
        .await?;
        let decoded = decode_invoice(&added.payment_request, self.config.network)
            .map_err(|e| LightningError::Protocol(format!("LND's invoice: {e}")))?;
        let hash = PaymentHash(bytes32("payment hash", &added.r_hash)?);
        if decoded.payment_hash != hash {
            return Err(LightningError::Protocol(
                "LND's invoice is for another payment hash".into(),
            ));
        }
        Ok(CreatedInvoice {
            payment_request: added.payment_request,
            payment_hash: hash,
            expires_at: decoded.expires_at,
        })
    }

    pub(super) async fn cancel(&self, hash: &PaymentHash) -> Result<(), LightningError> {
        let mut client = self.client.clone();
        let cancelled = call(
            "CancelInvoice",
            self.config.request_timeout,
            client
                .invoices()
                .cancel_invoice(invoicesrpc::CancelInvoiceMsg {
                    payment_hash: hash.0.to_vec(),
                }),
        )
        .await;
        // LND cancels a cancelled invoice again without complaint, and refuses a settled
        // one ("invoice already settled": AlreadySettled).
        cancelled.map(|_| ())
    }

    pub(super) async fn lookup(&self, hash: &PaymentHash) -> Result<InvoiceState, LightningError> {
        use lnrpc::invoice::InvoiceState as S;
        let mut client = self.client.clone();
        #[allow(deprecated)]
        let request = lnrpc::PaymentHash {
            r_hash: hash.0.to_vec(),
            ..Default::default()
        };
        let invoice = match call(
            "LookupInvoice",
            self.config.request_timeout,
            client.lightning().lookup_invoice(request),
        )
        .await
        {
            Ok(i) => i,
            Err(LightningError::NotFound) => return Ok(InvoiceState::Unknown),
            Err(e) => return Err(e),
        };
        Ok(match S::try_from(invoice.state) {
            // Accepted: HTLCs held for a hold invoice, not settled yet.
            Ok(S::Open | S::Accepted) => InvoiceState::Open,
            Ok(S::Settled) => InvoiceState::Settled(settled(&invoice)?),
            Ok(S::Canceled) => InvoiceState::Cancelled,
            Err(_) => {
                return Err(LightningError::Protocol(format!(
                    "invoice state {}",
                    invoice.state
                )));
            }
        })
    }

    /// Every settled invoice, in settlement order (ListInvoices, page by page).
    async fn settled_so_far(&self) -> Result<Vec<SettledInvoice>, LightningError> {
        let mut client = self.client.clone();
        let mut all = Vec::new();
        let mut offset = 0;
        loop {
            let page = call(
                "ListInvoices",
                self.config.request_timeout,
                client.lightning().list_invoices(lnrpc::ListInvoiceRequest {
                    index_offset: offset,
                    num_max_invoices: PAGE,
                    ..Default::default()
                }),
            )
            .await?;
            for invoice in page.invoices.iter().filter(|i| is_settled(i)) {
                all.push(settled(invoice)?);
            }
            if page.invoices.is_empty() || page.last_index_offset <= offset {
                break;
            }
            offset = page.last_index_offset;
        }
        all.sort_by_key(|s| s.cursor);
        Ok(all)
    }

    pub(super) async fn settlements(
        &self,
        after: SettleCursor,
    ) -> Result<BoxStream<'static, Result<SettledInvoice, LightningError>>, LightningError> {
        let mut client = self.client.clone();
        // Subscribed first, so that a settlement during the backlog read is not lost; one
        // in both is dropped from the live part by its cursor.
        let live = call(
            "SubscribeInvoices",
            self.config.request_timeout,
            client
                .lightning()
                .subscribe_invoices(lnrpc::InvoiceSubscription {
                    add_index: 0,
                    settle_index: after.0,
                }),
        )
        .await?;
        let backlog = if after.0 == 0 {
            self.settled_so_far().await?
        } else {
            Vec::new()
        };
        let last = backlog.last().map_or(after, |s| s.cursor);
        let live = live.filter_map(move |item| {
            let out = match item {
                Err(status) => Some(Err(from_status(&status))),
                Ok(invoice) if is_settled(&invoice) && invoice.settle_index > last.0 => {
                    Some(settled(&invoice))
                }
                Ok(_) => None,
            };
            async move { out }
        });
        Ok(stream::iter(backlog.into_iter().map(Ok))
            .chain(live)
            .boxed())
    }
}
