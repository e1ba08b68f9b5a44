//! Control endpoints for tests and the demo, under `/control/` (JSON): mine,
//! fund an address, set fee estimates, invalidate blocks, read the tip.
//! A real node has none of these; they exist because this is a stand-in.

use std::collections::BTreeMap;
use std::str::FromStr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bitcoin::{Address, Amount, BlockHash, Network, ScriptBuf, Txid};
use serde::{Deserialize, Serialize};

use crate::node::{Invalidated, NodeError, SharedNode, lock};

/// `POST /control/mine`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MineRequest {
    /// How many blocks.
    pub blocks: u32,
    /// Who the coinbases pay (regtest address); the stand-in's wallet if absent.
    #[serde(default)]
    pub address: Option<String>,
}

/// Blocks mined and the new tip height.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mined {
    /// Hashes of the new blocks, lowest first.
    pub hashes: Vec<BlockHash>,
    /// Height of the tip afterwards.
    pub height: u32,
}

/// `POST /control/fund`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FundRequest {
    /// Regtest address to pay.
    pub address: String,
    /// Amount in satoshis.
    pub amount_sat: u64,
    /// Blocks to mine afterwards (0: the payment stays in the mempool).
    #[serde(default)]
    pub mine_blocks: u32,
}

/// One output of `POST /control/fund-many`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payee {
    /// Regtest address to pay.
    pub address: String,
    /// Amount in satoshis.
    pub amount_sat: u64,
}

/// `POST /control/fund-many`: one transaction paying every payee, in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FundManyRequest {
    /// Output `i` pays `outputs[i]`.
    pub outputs: Vec<Payee>,
    /// Blocks to mine afterwards (0: the payment stays in the mempool).
    #[serde(default)]
    pub mine_blocks: u32,
}

/// The payment made by `fund`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Funded {
    /// The funding transaction.
    pub txid: Txid,
    /// The output paying the (first) address; `fund-many` pays output `i`
    /// to its `i`-th payee.
    pub vout: u32,
    /// Blocks mined afterwards, if asked.
    pub mined: Vec<BlockHash>,
}

/// `POST /control/fee-estimates`: sat/kvB by confirmation target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FeeEstimatesRequest {
    /// Target (blocks) to fee rate in sat per 1,000 vbytes.
    pub sat_per_kvb: BTreeMap<u16, u64>,
}

/// `POST /control/invalidate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InvalidateRequest {
    /// How many blocks to take off the tip.
    pub blocks: u32,
}

/// `GET /control/tip`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tip {
    /// Tip height.
    pub height: u32,
    /// Tip hash.
    pub hash: BlockHash,
}

/// `GET /control/wallet`: the stand-in's own address (coinbase payee by default).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WalletInfo {
    /// Regtest address.
    pub address: String,
}

/// A control error: 400 with `{"error": "..."}`.
#[derive(Debug)]
pub struct ControlError(String);

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        tracing::info!(target: "regtest_standin", error = %self.0, "control request refused");
        (
            StatusCode::BAD_REQUEST,
            Json(serde_json::json!({ "error": self.0 })),
        )
            .into_response()
    }
}

impl From<NodeError> for ControlError {
    fn from(e: NodeError) -> Self {
        Self(e.to_string())
    }
}

fn regtest_script(address: &str) -> Result<ScriptBuf, ControlError> {
    Address::from_str(address)
        .and_then(|a| a.require_network(Network::Regtest))
        .map(|a| a.script_pubkey())
        .map_err(|e| ControlError(format!("invalid regtest address {address:?}: {e}")))
}

/// The control routes over `node`.
pub fn router(node: SharedNode) -> Router {
    Router::new()
        .route("/control/tip", get(tip))
        .route("/control/wallet", get(wallet))
        .route("/control/mine", post(mine))
        .route("/control/fund", post(fund))
        .route("/control/fund-many", post(fund_many))
        .route("/control/fee-estimates", post(set_fee_estimates))
        .route("/control/invalidate", post(invalidate))
        .with_state(node)
}

async fn tip(State(node): State<SharedNode>) -> Json<Tip> {
    let node = lock(&node);
    Json(Tip {
        height: node.chain().tip_height(),
        hash: node.chain().tip().block_hash(),
    })
}

async fn wallet(State(node): State<SharedNode>) -> Json<WalletInfo> {
    Json(WalletInfo {
        address: lock(&node).wallet().address().to_string(),
    })
}

async fn mine(
    State(node): State<SharedNode>,
    Json(req): Json<MineRequest>,
) -> Result<Json<Mined>, ControlError> {
    let payout = req.address.as_deref().map(regtest_script).transpose()?;
    tracing::info!(target: "regtest_standin", blocks = req.blocks, address = ?req.address, "control: mine");
    let mut node = lock(&node);
    let hashes = node.mine(req.blocks, payout)?;
    Ok(Json(Mined {
        hashes,
        height: node.chain().tip_height(),
    }))
}

async fn fund(
    State(node): State<SharedNode>,
    Json(req): Json<FundRequest>,
) -> Result<Json<Funded>, ControlError> {
    let script = regtest_script(&req.address)?;
    tracing::info!(target: "regtest_standin", address = %req.address, amount_sat = req.amount_sat, mine_blocks = req.mine_blocks, "control: fund");
    let mut node = lock(&node);
    let outpoint = node.fund(script, Amount::from_sat(req.amount_sat))?;
    let mined = node.mine(req.mine_blocks, None)?;
    Ok(Json(Funded {
        txid: outpoint.txid,
        vout: outpoint.vout,
        mined,
    }))
}

async fn fund_many(
    State(node): State<SharedNode>,
    Json(req): Json<FundManyRequest>,
) -> Result<Json<Funded>, ControlError> {
    let payees = req
        .outputs
        .iter()
        .map(|p| Ok((regtest_script(&p.address)?, Amount::from_sat(p.amount_sat))))
        .collect::<Result<Vec<_>, ControlError>>()?;
    tracing::info!(target: "regtest_standin", outputs = payees.len(), mine_blocks = req.mine_blocks, "control: fund many");
    let mut node = lock(&node);
    let txid = node.fund_many(payees)?;
    let mined = node.mine(req.mine_blocks, None)?;
    Ok(Json(Funded {
        txid,
        vout: 0,
        mined,
    }))
}

async fn set_fee_estimates(
    State(node): State<SharedNode>,
    Json(req): Json<FeeEstimatesRequest>,
) -> Result<StatusCode, ControlError> {
    lock(&node).set_fee_estimates(req.sat_per_kvb)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn invalidate(
    State(node): State<SharedNode>,
    Json(req): Json<InvalidateRequest>,
) -> Result<Json<Invalidated>, ControlError> {
    tracing::info!(target: "regtest_standin", blocks = req.blocks, "control: invalidate");
    Ok(Json(lock(&node).invalidate(req.blocks)?))
}
