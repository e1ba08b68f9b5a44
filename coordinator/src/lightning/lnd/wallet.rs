//! The node itself over LND: GetInfo, WalletBalance, ChannelBalance, ListChannels, and the
//! operator's NewAddress, ConnectPeer, OpenChannelSync.

use bitcoin::hashes::Hash;
use fedimint_tonic_lnd::lnrpc;

use super::LndNode;
use super::error::{call, non_negative};
use crate::amount::{MSATS_PER_SAT, Msats, Sats};
use crate::lightning::{Balances, ChannelInfo, LightningError, NodeInfo, parse_peer};

/// The network LND names (`chains[].network`).
fn network(name: &str) -> Option<bitcoin::Network> {
    match name {
        "mainnet" | "bitcoin" => Some(bitcoin::Network::Bitcoin),
        "testnet" | "testnet3" => Some(bitcoin::Network::Testnet),
        "testnet4" => Some(bitcoin::Network::Testnet4),
        "signet" => Some(bitcoin::Network::Signet),
        "regtest" | "simnet" => Some(bitcoin::Network::Regtest),
        _ => None,
    }
}

fn sats(what: &str, value: i64) -> Result<Sats, LightningError> {
    Sats::new(non_negative(what, value)?)
        .map_err(|e| LightningError::Protocol(format!("{what}: {e}")))
}

/// A channel's spendable side: its balance less the reserve it must keep, in msat.
fn spendable(
    balance: i64,
    constraints: Option<&lnrpc::ChannelConstraints>,
) -> Result<Msats, LightningError> {
    let reserve = constraints.map_or(0, |c| c.chan_reserve_sat);
    let sat = non_negative("balance", balance)?.saturating_sub(reserve);
    Msats::new(sat.saturating_mul(MSATS_PER_SAT))
        .map_err(|e| LightningError::Protocol(format!("balance: {e}")))
}

impl LndNode {
    pub(super) async fn get_info(&self) -> Result<NodeInfo, LightningError> {
        let mut client = self.client.clone();
        let info = call(
            "GetInfo",
            self.config.request_timeout,
            client.lightning().get_info(lnrpc::GetInfoRequest {}),
        )
        .await?;
        let chain = info
            .chains
            .first()
            .ok_or_else(|| LightningError::Protocol("GetInfo names no chain".into()))?;
        let network = network(&chain.network).ok_or_else(|| {
            LightningError::Protocol(format!("unknown network {}", chain.network))
        })?;
        if network != self.config.network {
            return Err(LightningError::Invalid(format!(
                "the node runs on {network}, the bank on {}",
                self.config.network
            )));
        }
        Ok(NodeInfo {
            pubkey: info.identity_pubkey,
            network,
            block_height: info.block_height,
            synced: info.synced_to_chain,
        })
    }

    pub(super) async fn get_balances(&self) -> Result<Balances, LightningError> {
        let mut client = self.client.clone();
        let wallet = call(
            "WalletBalance",
            self.config.request_timeout,
            client
                .lightning()
                .wallet_balance(lnrpc::WalletBalanceRequest::default()),
        )
        .await?;
        let channels = call(
            "ChannelBalance",
            self.config.request_timeout,
            client
                .lightning()
                .channel_balance(lnrpc::ChannelBalanceRequest {}),
        )
        .await?;
        let lightning = channels.local_balance.map_or(0, |a| a.msat);
        Ok(Balances {
            onchain: sats("confirmed balance", wallet.confirmed_balance)?,
            lightning: Msats::new(lightning)
                .map_err(|e| LightningError::Protocol(format!("channel balance: {e}")))?,
        })
    }

    pub(super) async fn list_channels(&self) -> Result<Vec<ChannelInfo>, LightningError> {
        let mut client = self.client.clone();
        let list = call(
            "ListChannels",
            self.config.request_timeout,
            client
                .lightning()
                .list_channels(lnrpc::ListChannelsRequest::default()),
        )
        .await?;
        list.channels
            .iter()
            .map(|c| {
                Ok(ChannelInfo {
                    peer: c.remote_pubkey.clone(),
                    capacity: sats("capacity", c.capacity)?,
                    outbound: spendable(c.local_balance, c.local_constraints.as_ref())?,
                    inbound: spendable(c.remote_balance, c.remote_constraints.as_ref())?,
                    usable: c.active,
                })
            })
            .collect()
    }

    pub(super) async fn address(&self) -> Result<String, LightningError> {
        let mut client = self.client.clone();
        let address = call(
            "NewAddress",
            self.config.request_timeout,
            client.lightning().new_address(lnrpc::NewAddressRequest {
                r#type: lnrpc::AddressType::WitnessPubkeyHash as i32,
                ..Default::default()
            }),
        )
        .await?;
        Ok(address.address)
    }

    pub(super) async fn connect_to(&self, peer: &str) -> Result<(), LightningError> {
        let (key, host) = parse_peer(peer)?;
        let host = host.ok_or_else(|| LightningError::Invalid("peer needs @host:port".into()))?;
        let mut client = self.client.clone();
        let connected = call(
            "ConnectPeer",
            self.config.request_timeout,
            client.lightning().connect_peer(lnrpc::ConnectPeerRequest {
                addr: Some(lnrpc::LightningAddress {
                    pubkey: key.to_string(),
                    host: host.to_string(),
                }),
                perm: true,
                timeout: self.config.request_timeout.as_secs(),
            }),
        )
        .await;
        match connected {
            Ok(_) => Ok(()),
            // LND refuses a second connection to a connected peer: that is the goal reached.
            Err(LightningError::Protocol(m) | LightningError::Invalid(m))
                if m.contains("already connected") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    pub(super) async fn open(
        &self,
        peer: &str,
        capacity: Sats,
        push: Msats,
    ) -> Result<String, LightningError> {
        let (key, _) = parse_peer(peer)?;
        let push = push
            .to_sats_exact()
            .map_err(|_| LightningError::Invalid("LND pushes whole satoshis only".into()))?;
        let mut client = self.client.clone();
        let point = call(
            "OpenChannelSync",
            self.config.request_timeout,
            client
                .lightning()
                .open_channel_sync(lnrpc::OpenChannelRequest {
                    node_pubkey: key.serialize().to_vec(),
                    local_funding_amount: i64::try_from(capacity.to_sat())
                        .map_err(|_| LightningError::Invalid("capacity too large".into()))?,
                    push_sat: i64::try_from(push.to_sat())
                        .map_err(|_| LightningError::Invalid("push too large".into()))?,
                    ..Default::default()
                }),
        )
        .await?;
        use lnrpc::channel_point::FundingTxid;
        match point.funding_txid {
            // Bytes in the transaction's internal order, as LND sends them.
            Some(FundingTxid::FundingTxidBytes(bytes)) => bitcoin::Txid::from_slice(&bytes)
                .map(|t| t.to_string())
                .map_err(|_| LightningError::Protocol("unreadable funding txid".into())),
            Some(FundingTxid::FundingTxidStr(s)) => Ok(s),
            None => Err(LightningError::Protocol("no funding txid".into())),
        }
    }
}
