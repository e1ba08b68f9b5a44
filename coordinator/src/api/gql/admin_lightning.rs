//! The staff view of the bank's Lightning node (our extension of the admin schema): who it
//! is, whether it follows the chain, what it holds on chain and in channels, and each
//! channel's room to send and receive. It needs `ViewTreasury` (treasury and admin), as
//! the omnibus balances do: these are the bank's own funds. Both backends answer it.

use async_graphql::SimpleObject;

use crate::api::AppState;
use crate::api::errors::ApiError;
use crate::bank::lightning::lightning_error;
use crate::lightning::{Balances, ChannelInfo, NodeInfo};

/// The bank's Lightning node as this instance reaches it.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "LightningNodeStatus")]
pub struct NodeView {
    /// The node's public key, hex.
    pub pubkey: String,
    /// `bitcoin`, `testnet`, `signet` or `regtest`.
    pub network: String,
    /// The chain tip the node has seen.
    pub block_height: u32,
    /// Synced to the chain and ready to pay.
    pub synced: bool,
    /// Confirmed on-chain balance of the node's wallet, satoshis.
    pub onchain_balance_sat: String,
    /// The node's side of all its channels, millisatoshis.
    pub channel_balance_msat: String,
    /// Its channels.
    pub channels: Vec<ChannelView>,
}

/// One channel of the node.
#[derive(SimpleObject, Clone, Debug)]
#[graphql(name = "LightningChannel")]
pub struct ChannelView {
    /// The peer's public key, hex.
    pub peer: String,
    /// The channel's size, satoshis.
    pub capacity_sat: String,
    /// What the node can send through it now, millisatoshis.
    pub outbound_msat: String,
    /// What the node can receive through it now, millisatoshis.
    pub inbound_msat: String,
    /// Open and usable for payments.
    pub usable: bool,
}

fn view(info: NodeInfo, balances: Balances, channels: Vec<ChannelInfo>) -> NodeView {
    NodeView {
        pubkey: info.pubkey,
        network: info.network.to_string(),
        block_height: info.block_height,
        synced: info.synced,
        onchain_balance_sat: balances.onchain.to_sat().to_string(),
        channel_balance_msat: balances.lightning.to_msat().to_string(),
        channels: channels
            .into_iter()
            .map(|c| ChannelView {
                peer: c.peer,
                capacity_sat: c.capacity.to_sat().to_string(),
                outbound_msat: c.outbound.to_msat().to_string(),
                inbound_msat: c.inbound.to_msat().to_string(),
                usable: c.usable,
            })
            .collect(),
    }
}

/// The node's status; `None` where this instance runs no Lightning node.
///
/// # Errors
/// The node cannot be reached (`LIGHTNING_UNAVAILABLE`).
pub(crate) async fn node(app: &AppState) -> Result<Option<NodeView>, ApiError> {
    let Some(rail) = app.bank.lightning() else {
        return Ok(None);
    };
    let node = rail.node();
    let (info, balances, channels) =
        tokio::try_join!(node.info(), node.balances(), node.channels())
            .map_err(|e| ApiError::from(&lightning_error(e)))?;
    Ok(Some(view(info, balances, channels)))
}
