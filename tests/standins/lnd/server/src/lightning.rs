//! `lnrpc.Lightning`: the calls the coordinator's LND adapter makes, over LDK.

use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use fedimint_tonic_lnd::lnrpc;
use ldk_node::LightningBalance;
use ldk_node::bitcoin::hashes::{Hash, sha256};
use ldk_node::bitcoin::hex::{DisplayHex, FromHex};
use ldk_node::bitcoin::secp256k1::PublicKey;
use ldk_node::lightning::ln::msgs::SocketAddress;
use ldk_node::lightning_invoice::{Bolt11InvoiceDescription, Description, Sha256};
use ldk_node::lightning_types::payment::PaymentHash;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::node::{Shared, new_preimage, now, to_lnrpc_invoice};
use crate::store::InvoiceRecord;

/// What the generated traits return for server streams.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The Lightning service.
#[derive(Debug, Clone)]
pub struct LightningService(pub Arc<Shared>);

/// LND's default invoice expiry (24 hours).
const DEFAULT_EXPIRY: i64 = 86_400;

fn internal(e: impl std::fmt::Display) -> Status {
    Status::unknown(e.to_string())
}

/// Runs a call of LDK Node that blocks on its own runtime.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ldk_node::NodeError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(internal)?
        .map_err(internal)
}

fn parse_pubkey(bytes: &[u8], text: &str) -> Result<PublicKey, Status> {
    let parsed = if bytes.is_empty() {
        PublicKey::from_str(text).ok()
    } else {
        PublicKey::from_slice(bytes).ok()
    };
    parsed.ok_or_else(|| Status::invalid_argument("invalid node pubkey"))
}

impl LightningService {
    fn peer_address(&self, pubkey: &PublicKey) -> Option<SocketAddress> {
        self.0
            .node
            .list_peers()
            .into_iter()
            .find(|p| p.node_id == *pubkey)
            .map(|p| p.address)
    }

    fn add_invoice_inner(&self, req: lnrpc::Invoice) -> Result<InvoiceRecord, Status> {
        let secret = if req.r_preimage.is_empty() {
            let (preimage, _) = new_preimage();
            Secret::Preimage(preimage)
        } else {
            Secret::Preimage(
                <[u8; 32]>::try_from(req.r_preimage.as_slice())
                    .map_err(|_| Status::unknown("preimage must be exactly 32 bytes"))?,
            )
        };
        add_invoice(
            &self.0,
            NewInvoice {
                memo: req.memo,
                description_hash: req.description_hash,
                value: req.value,
                value_msat: req.value_msat,
                expiry: req.expiry,
            },
            secret,
        )
    }
}

/// The fields `AddInvoice` and `invoicesrpc.AddHoldInvoice` share.
#[derive(Debug)]
pub struct NewInvoice {
    pub memo: String,
    pub description_hash: Vec<u8>,
    pub value: i64,
    pub value_msat: i64,
    pub expiry: i64,
}

/// What the node knows of a new invoice's preimage.
#[derive(Debug)]
pub enum Secret {
    /// The preimage: the stand-in claims a payment itself, as LND does.
    Preimage([u8; 32]),
    /// Only the hash (a hold invoice): the payment is held until `SettleInvoice`.
    Hold([u8; 32]),
}

/// Makes an invoice at the LDK node for a hash of ours and records it (its add index),
/// as LND's `AddInvoice` and `AddHoldInvoice` do.
pub fn add_invoice(
    shared: &Shared,
    req: NewInvoice,
    secret: Secret,
) -> Result<InvoiceRecord, Status> {
    let value_msat = match (req.value, req.value_msat) {
        (0, 0) => None,
        (sat, 0) if sat > 0 => Some(sat as u64 * 1000),
        (0, msat) if msat > 0 => Some(msat as u64),
        _ => {
            return Err(Status::unknown(
                "value and value_msat are mutually exclusive or negative",
            ));
        }
    };
    let description = if req.description_hash.is_empty() {
        let memo = Description::new(req.memo.clone())
            .map_err(|e| Status::unknown(format!("memo too long: {e}")))?;
        Bolt11InvoiceDescription::Direct(memo)
    } else {
        let hash = <[u8; 32]>::try_from(req.description_hash.as_slice())
            .map_err(|_| Status::unknown("description hash must be exactly 32 bytes"))?;
        Bolt11InvoiceDescription::Hash(Sha256(sha256::Hash::from_byte_array(hash)))
    };
    let expiry = if req.expiry > 0 {
        req.expiry
    } else {
        DEFAULT_EXPIRY
    };
    let expiry_secs = u32::try_from(expiry).map_err(|_| Status::unknown("expiry too large"))?;
    let (preimage, hash, hold) = match secret {
        Secret::Preimage(p) => (
            p.to_lower_hex_string(),
            sha256::Hash::hash(&p).to_byte_array(),
            false,
        ),
        Secret::Hold(h) => (String::new(), h, true),
    };
    let hex = hash.to_lower_hex_string();
    if shared.store().invoice(&hex).is_some() {
        // LND's words for a second invoice on one payment hash.
        return Err(Status::unknown("invoice with payment hash already exists"));
    }
    let bolt11 = shared.node.bolt11_payment();
    let invoice = match value_msat {
        Some(v) => bolt11.receive_for_hash(v, &description, expiry_secs, PaymentHash(hash)),
        None => {
            bolt11.receive_variable_amount_for_hash(&description, expiry_secs, PaymentHash(hash))
        }
    }
    .map_err(internal)?;
    let record = InvoiceRecord {
        hash: hex,
        preimage,
        memo: if req.description_hash.is_empty() {
            req.memo
        } else {
            String::new()
        },
        description_hash: req.description_hash.to_lower_hex_string(),
        value_msat,
        creation_date: i64::try_from(invoice.duration_since_epoch().as_secs()).unwrap_or(i64::MAX),
        expiry,
        payment_request: invoice.to_string(),
        add_index: 0,
        state: crate::store::State::Open,
        settle_index: 0,
        settle_date: 0,
        amt_paid_msat: 0,
        hold,
    };
    shared.store().add(record).map_err(internal)
}

#[tonic::async_trait]
impl crate::proto::lnrpc::lightning_server::Lightning for LightningService {
    async fn get_info(
        &self,
        _req: Request<lnrpc::GetInfoRequest>,
    ) -> Result<Response<lnrpc::GetInfoResponse>, Status> {
        let node = &self.0.node;
        let status = node.status();
        let channels = node.list_channels();
        let active = channels.iter().filter(|c| c.is_usable).count();
        let pending = channels.iter().filter(|c| !c.is_channel_ready).count();
        Ok(Response::new(lnrpc::GetInfoResponse {
            version: "lnd-standin (a stand-in for LND, not LND)".into(),
            identity_pubkey: node.node_id().to_string(),
            alias: "lnd-standin".into(),
            num_active_channels: u32::try_from(active).unwrap_or(u32::MAX),
            num_pending_channels: u32::try_from(pending).unwrap_or(u32::MAX),
            num_inactive_channels: u32::try_from(channels.len() - active - pending)
                .unwrap_or(u32::MAX),
            num_peers: u32::try_from(node.list_peers().iter().filter(|p| p.is_connected).count())
                .unwrap_or(u32::MAX),
            block_height: status.current_best_block.height,
            block_hash: status.current_best_block.block_hash.to_string(),
            synced_to_chain: status.latest_onchain_wallet_sync_timestamp.is_some()
                && status.latest_lightning_wallet_sync_timestamp.is_some(),
            chains: vec![lnrpc::Chain {
                network: "regtest".into(),
                ..Default::default()
            }],
            ..Default::default()
        }))
    }

    async fn wallet_balance(
        &self,
        _req: Request<lnrpc::WalletBalanceRequest>,
    ) -> Result<Response<lnrpc::WalletBalanceResponse>, Status> {
        let b = self.0.node.list_balances();
        let total = i64::try_from(b.total_onchain_balance_sats).unwrap_or(i64::MAX);
        let confirmed = i64::try_from(b.spendable_onchain_balance_sats).unwrap_or(i64::MAX);
        Ok(Response::new(lnrpc::WalletBalanceResponse {
            total_balance: total,
            confirmed_balance: confirmed,
            unconfirmed_balance: total.saturating_sub(confirmed),
            ..Default::default()
        }))
    }

    async fn channel_balance(
        &self,
        _req: Request<lnrpc::ChannelBalanceRequest>,
    ) -> Result<Response<lnrpc::ChannelBalanceResponse>, Status> {
        // Our side of each open channel as LDK would claim it on close (whole satoshis).
        let sat: u64 = self
            .0
            .node
            .list_balances()
            .lightning_balances
            .iter()
            .map(|b| match b {
                LightningBalance::ClaimableOnChannelClose {
                    amount_satoshis, ..
                } => *amount_satoshis,
                _ => 0,
            })
            .sum();
        let amount = |sat: u64| lnrpc::Amount {
            sat,
            msat: sat.saturating_mul(1000),
        };
        Ok(Response::new(lnrpc::ChannelBalanceResponse {
            local_balance: Some(amount(sat)),
            remote_balance: Some(amount(0)),
            ..Default::default()
        }))
    }

    async fn list_channels(
        &self,
        req: Request<lnrpc::ListChannelsRequest>,
    ) -> Result<Response<lnrpc::ListChannelsResponse>, Status> {
        let req = req.into_inner();
        let channels = self
            .0
            .node
            .list_channels()
            .into_iter()
            .filter(|c| c.is_channel_ready)
            .filter(|c| !req.active_only || c.is_usable)
            .map(|c| {
                let local_reserve = c.unspendable_punishment_reserve.unwrap_or(0);
                let remote_reserve = c.counterparty_unspendable_punishment_reserve;
                lnrpc::Channel {
                    active: c.is_usable,
                    remote_pubkey: c.counterparty_node_id.to_string(),
                    channel_point: c
                        .funding_txo
                        .map(|o| format!("{}:{}", o.txid, o.vout))
                        .unwrap_or_default(),
                    chan_id: c.short_channel_id.unwrap_or(0),
                    capacity: i64::try_from(c.channel_value_sats).unwrap_or(i64::MAX),
                    local_balance: i64::try_from(c.outbound_capacity_msat / 1000 + local_reserve)
                        .unwrap_or(i64::MAX),
                    remote_balance: i64::try_from(c.inbound_capacity_msat / 1000 + remote_reserve)
                        .unwrap_or(i64::MAX),
                    local_constraints: Some(lnrpc::ChannelConstraints {
                        chan_reserve_sat: local_reserve,
                        ..Default::default()
                    }),
                    remote_constraints: Some(lnrpc::ChannelConstraints {
                        chan_reserve_sat: remote_reserve,
                        ..Default::default()
                    }),
                    initiator: c.is_outbound,
                    private: !c.is_announced,
                    ..Default::default()
                }
            })
            .collect();
        Ok(Response::new(lnrpc::ListChannelsResponse { channels }))
    }

    async fn new_address(
        &self,
        _req: Request<lnrpc::NewAddressRequest>,
    ) -> Result<Response<lnrpc::NewAddressResponse>, Status> {
        let address = self
            .0
            .node
            .onchain_payment()
            .new_address()
            .map_err(internal)?;
        Ok(Response::new(lnrpc::NewAddressResponse {
            address: address.to_string(),
        }))
    }

    async fn connect_peer(
        &self,
        req: Request<lnrpc::ConnectPeerRequest>,
    ) -> Result<Response<lnrpc::ConnectPeerResponse>, Status> {
        let addr = req
            .into_inner()
            .addr
            .ok_or_else(|| Status::invalid_argument("need: addr"))?;
        let pubkey = parse_pubkey(&[], &addr.pubkey)?;
        let host = SocketAddress::from_str(&addr.host)
            .map_err(|_| Status::invalid_argument(format!("invalid host {}", addr.host)))?;
        let node = Arc::clone(&self.0.node);
        blocking(move || node.connect(pubkey, host, true)).await?;
        Ok(Response::new(lnrpc::ConnectPeerResponse::default()))
    }

    async fn open_channel_sync(
        &self,
        req: Request<lnrpc::OpenChannelRequest>,
    ) -> Result<Response<lnrpc::ChannelPoint>, Status> {
        let req = req.into_inner();
        #[allow(deprecated)]
        let pubkey = parse_pubkey(&req.node_pubkey, &req.node_pubkey_string)?;
        let address = self
            .peer_address(&pubkey)
            .ok_or_else(|| Status::unknown(format!("peer {pubkey} is not online")))?;
        let capacity = u64::try_from(req.local_funding_amount)
            .map_err(|_| Status::invalid_argument("negative funding amount"))?;
        let push_msat = u64::try_from(req.push_sat)
            .map_err(|_| Status::invalid_argument("negative push amount"))?
            .saturating_mul(1000);
        let node = Arc::clone(&self.0.node);
        let user_channel_id = blocking(move || {
            node.open_channel(
                pubkey,
                address,
                capacity,
                Some(push_msat).filter(|p| *p > 0),
                None,
            )
        })
        .await?;
        // OpenChannelSync answers once the funding transaction is published: wait for LDK
        // to know its outpoint.
        for _ in 0..200 {
            let channel = self
                .0
                .node
                .list_channels()
                .into_iter()
                .find(|c| c.user_channel_id == user_channel_id);
            if let Some(txo) = channel.and_then(|c| c.funding_txo) {
                return Ok(Response::new(lnrpc::ChannelPoint {
                    funding_txid: Some(lnrpc::channel_point::FundingTxid::FundingTxidBytes(
                        txo.txid.to_byte_array().to_vec(),
                    )),
                    output_index: txo.vout,
                }));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(Status::unknown("channel funding was not published in time"))
    }

    async fn add_invoice(
        &self,
        req: Request<lnrpc::Invoice>,
    ) -> Result<Response<lnrpc::AddInvoiceResponse>, Status> {
        let record = self.add_invoice_inner(req.into_inner())?;
        tracing::info!(
            hash = record.hash,
            add_index = record.add_index,
            "invoice added"
        );
        let _ = self.0.invoice_events.send(to_lnrpc_invoice(&record, now()));
        Ok(Response::new(lnrpc::AddInvoiceResponse {
            r_hash: Vec::from_hex(&record.hash).unwrap_or_default(),
            payment_request: record.payment_request,
            add_index: record.add_index,
            ..Default::default()
        }))
    }

    async fn lookup_invoice(
        &self,
        req: Request<lnrpc::PaymentHash>,
    ) -> Result<Response<lnrpc::Invoice>, Status> {
        let req = req.into_inner();
        #[allow(deprecated)]
        let hash = if req.r_hash.is_empty() {
            req.r_hash_str
        } else {
            req.r_hash.to_lower_hex_string()
        };
        let store = self.0.store();
        let record = store
            .invoice(&hash)
            .ok_or_else(|| Status::not_found("unable to locate invoice"))?;
        Ok(Response::new(to_lnrpc_invoice(record, now())))
    }

    async fn list_invoices(
        &self,
        req: Request<lnrpc::ListInvoiceRequest>,
    ) -> Result<Response<lnrpc::ListInvoiceResponse>, Status> {
        let req = req.into_inner();
        if req.reversed {
            return Err(Status::unimplemented("the stand-in lists forwards only"));
        }
        let max = if req.num_max_invoices == 0 {
            100
        } else {
            req.num_max_invoices
        };
        let now = now();
        let invoices: Vec<lnrpc::Invoice> = self
            .0
            .store()
            .invoices()
            .iter()
            .filter(|i| i.add_index > req.index_offset)
            .map(|i| to_lnrpc_invoice(i, now))
            // As LND: pending means neither settled nor cancelled (open or accepted).
            .filter(|i| {
                use lnrpc::invoice::InvoiceState as S;
                !req.pending_only || i.state == S::Open as i32 || i.state == S::Accepted as i32
            })
            .take(usize::try_from(max).unwrap_or(usize::MAX))
            .collect();
        Ok(Response::new(lnrpc::ListInvoiceResponse {
            first_index_offset: invoices.first().map_or(0, |i| i.add_index),
            last_index_offset: invoices.last().map_or(0, |i| i.add_index),
            invoices,
        }))
    }

    async fn subscribe_invoices(
        &self,
        req: Request<lnrpc::InvoiceSubscription>,
    ) -> Result<Response<BoxStream<lnrpc::Invoice>>, Status> {
        let req = req.into_inner();
        // Subscribed before the backlog is read, so that nothing falls between the two; a
        // settlement in both is sent once (by its index).
        let mut live = self.0.invoice_events.subscribe();
        let now = now();
        let mut backlog: Vec<lnrpc::Invoice> = Vec::new();
        {
            let store = self.0.store();
            // As LND: index 0 means "no backlog".
            if req.add_index > 0 {
                backlog.extend(
                    store
                        .invoices()
                        .iter()
                        .filter(|i| i.add_index > req.add_index)
                        .map(|i| to_lnrpc_invoice(i, now)),
                );
            }
            if req.settle_index > 0 {
                let mut settled: Vec<_> = store
                    .invoices()
                    .iter()
                    .filter(|i| i.settle_index > req.settle_index)
                    .map(|i| to_lnrpc_invoice(i, now))
                    .collect();
                settled.sort_by_key(|i| i.settle_index);
                backlog.extend(settled);
            }
        }
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut last_settle = backlog.iter().map(|i| i.settle_index).max().unwrap_or(0);
            for invoice in backlog {
                if tx.send(Ok(invoice)).await.is_err() {
                    return;
                }
            }
            loop {
                let invoice = match live.recv().await {
                    Ok(i) => i,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let _ = tx
                            .send(Err(Status::unavailable("subscriber too slow")))
                            .await;
                        return;
                    }
                    Err(_) => return,
                };
                if invoice.settle_index > 0 {
                    if invoice.settle_index <= last_settle {
                        continue;
                    }
                    last_settle = invoice.settle_index;
                }
                if tx.send(Ok(invoice)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
