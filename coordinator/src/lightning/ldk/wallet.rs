//! The embedded node itself: identity, balances and channels, the operator's calls (fund,
//! connect, open), and the loops that keep it synced with the chain and its peers.

use std::str::FromStr;
use std::sync::Arc;

use ldk_node::LightningBalance;
use ldk_node::lightning::ln::msgs::SocketAddress;

use super::EmbeddedNode;
use super::error::{blocking, from_node};
use crate::amount::{MSATS_PER_SAT, Msats, Sats};
use crate::lightning::{Balances, ChannelInfo, LightningError, NodeInfo};

fn sats(what: &str, v: u64) -> Result<Sats, LightningError> {
    Sats::new(v).map_err(|e| LightningError::Protocol(format!("{what}: {e}")))
}

fn msats(what: &str, v: u64) -> Result<Msats, LightningError> {
    Msats::new(v).map_err(|e| LightningError::Protocol(format!("{what}: {e}")))
}

/// `pubkey@host:port`, the host optional and read as LDK's address.
fn parse_peer(
    peer: &str,
) -> Result<(bitcoin::secp256k1::PublicKey, Option<SocketAddress>), LightningError> {
    let (key, host) = crate::lightning::parse_peer(peer)?;
    let host = host
        .map(|h| {
            SocketAddress::from_str(h)
                .map_err(|_| LightningError::Invalid(format!("not a host:port: {h}")))
        })
        .transpose()?;
    Ok((key, host))
}

impl EmbeddedNode {
    pub(super) fn node_info(&self) -> NodeInfo {
        let status = self.node.status();
        NodeInfo {
            pubkey: self.node.node_id().to_string(),
            network: self.config.network,
            block_height: status.current_best_block.height,
            // Synced once both wallets have caught up with the chain since the start.
            synced: status.is_running
                && status.latest_onchain_wallet_sync_timestamp.is_some()
                && status.latest_lightning_wallet_sync_timestamp.is_some(),
        }
    }

    pub(super) fn get_balances(&self) -> Result<Balances, LightningError> {
        let b = self.node.list_balances();
        // Our side of each channel as it would be claimed on close (as LND's local balance).
        let lightning_sat: u64 = b
            .lightning_balances
            .iter()
            .map(|l| match l {
                LightningBalance::ClaimableOnChannelClose {
                    amount_satoshis, ..
                } => *amount_satoshis,
                _ => 0,
            })
            .sum();
        Ok(Balances {
            onchain: sats("on-chain balance", b.spendable_onchain_balance_sats)?,
            lightning: msats(
                "channel balance",
                lightning_sat.saturating_mul(MSATS_PER_SAT),
            )?,
        })
    }

    pub(super) fn list_channels(&self) -> Result<Vec<ChannelInfo>, LightningError> {
        self.node
            .list_channels()
            .into_iter()
            .filter(|c| c.is_channel_ready)
            .map(|c| {
                Ok(ChannelInfo {
                    peer: c.counterparty_node_id.to_string(),
                    capacity: sats("capacity", c.channel_value_sats)?,
                    outbound: msats("outbound", c.outbound_capacity_msat)?,
                    inbound: msats("inbound", c.inbound_capacity_msat)?,
                    usable: c.is_usable,
                })
            })
            .collect()
    }

    pub(super) fn address(&self) -> Result<String, LightningError> {
        self.node
            .onchain_payment()
            .new_address()
            .map(|a| a.to_string())
            .map_err(from_node)
    }

    pub(super) async fn connect_to(&self, peer: &str) -> Result<(), LightningError> {
        let (key, host) = parse_peer(peer)?;
        let host = host.ok_or_else(|| LightningError::Invalid("peer needs @host:port".into()))?;
        let node = Arc::clone(&self.node);
        // Persisted: reconnected after a restart (LDK Node keeps the peer).
        blocking(move || node.connect(key, host, true)).await
    }

    pub(super) async fn open(
        &self,
        peer: &str,
        capacity: Sats,
        push: Msats,
    ) -> Result<String, LightningError> {
        let (key, host) = parse_peer(peer)?;
        let address = match host {
            Some(h) => h,
            None => self
                .node
                .list_peers()
                .into_iter()
                .find(|p| p.node_id == key)
                .map(|p| p.address)
                .ok_or_else(|| LightningError::Invalid(format!("peer {key} is not connected")))?,
        };
        let node = Arc::clone(&self.node);
        let push = Some(push.to_msat()).filter(|p| *p > 0);
        let capacity = capacity.to_sat();
        let user_channel_id =
            blocking(move || node.open_channel(key, address, capacity, push, None)).await?;
        // Answers once the funding transaction is out (as LND's OpenChannelSync): wait for
        // LDK to know its outpoint.
        for _ in 0..300 {
            let funded = self
                .node
                .list_channels()
                .into_iter()
                .find(|c| c.user_channel_id == user_channel_id)
                .and_then(|c| c.funding_txo);
            if let Some(txo) = funded {
                return Ok(txo.txid.to_string());
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Err(LightningError::Unavailable(
            "the channel's funding was not published within 30 s".into(),
        ))
    }
}

/// Syncs the node's wallets with the chain at the configured interval, for ever.
pub(super) async fn sync_loop(this: Arc<EmbeddedNode>) {
    loop {
        let node = Arc::clone(&this.node);
        if let Err(e) = blocking(move || node.sync_wallets()).await {
            tracing::warn!(error = %e, "Lightning node: chain sync failed");
        }
        tokio::time::sleep(this.config.sync_interval).await;
    }
}

/// Reconnects to the peers the node keeps while they are away (LDK Node alone retries
/// once a minute): a channel peer that restarted is back within seconds.
pub(super) async fn reconnect_loop(this: Arc<EmbeddedNode>) {
    loop {
        tokio::time::sleep(this.config.reconnect_interval).await;
        let away = this
            .node
            .list_peers()
            .into_iter()
            .filter(|p| p.is_persisted && !p.is_connected);
        for peer in away {
            let node = Arc::clone(&this.node);
            let (id, address) = (peer.node_id, peer.address.clone());
            match blocking(move || node.connect(id, address, true)).await {
                Ok(()) => tracing::info!(peer = %id, "Lightning node: reconnected to a peer"),
                Err(e) => {
                    tracing::debug!(peer = %id, error = %e, "Lightning node: peer still away")
                }
            }
        }
    }
}
