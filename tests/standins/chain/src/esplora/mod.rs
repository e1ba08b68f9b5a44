//! Esplora's HTTP API, as Blockstream's esplora/electrs serve it, so that
//! `esplora-client` and `bdk_esplora` (and BDK's bindings for other languages)
//! use the stand-in unchanged.

mod json;
mod scripts;

use std::str::FromStr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bitcoin::consensus::encode::{deserialize_hex, serialize, serialize_hex};
use bitcoin::{BlockHash, OutPoint, Txid};
use serde_json::{Value, json};

use crate::node::{Node, SharedNode, lock};

pub use json::script_type;

/// Esplora's page size for a block's transactions (and a history's confirmed ones).
const CHAIN_TXS_PER_PAGE: usize = 25;
/// Blocks per `GET /blocks` page.
const BLOCKS_PER_PAGE: u32 = 10;

/// An error answered as Esplora does: a status and a plain-text message.
#[derive(Debug)]
pub struct HttpError(StatusCode, String);

impl HttpError {
    pub(crate) fn not_found(what: &str) -> Self {
        Self(StatusCode::NOT_FOUND, format!("{what} not found"))
    }
    pub(crate) fn bad_request(msg: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

pub(crate) type Answer = Result<Response, HttpError>;

fn text(s: impl ToString) -> Answer {
    Ok(s.to_string().into_response())
}

pub(crate) fn json_answer(v: Value) -> Answer {
    Ok(axum::Json(v).into_response())
}

pub(crate) fn parse_txid(s: &str) -> Result<Txid, HttpError> {
    Txid::from_str(s).map_err(|_| HttpError::bad_request("Invalid hex string"))
}

fn parse_block_hash(s: &str) -> Result<BlockHash, HttpError> {
    BlockHash::from_str(s).map_err(|_| HttpError::bad_request("Invalid hex string"))
}

/// The Esplora routes over `node`.
pub fn router(node: SharedNode) -> Router {
    Router::new()
        .route("/blocks/tip/height", get(tip_height))
        .route("/blocks/tip/hash", get(tip_hash))
        .route("/blocks", get(blocks_from_tip))
        .route("/blocks/{start}", get(blocks_from))
        .route("/block-height/{height}", get(block_at_height))
        .route("/block/{hash}", get(block_info))
        .route("/block/{hash}/header", get(block_header))
        .route("/block/{hash}/status", get(block_status))
        .route("/block/{hash}/txids", get(block_txids))
        .route("/block/{hash}/txid/{index}", get(block_txid))
        .route("/block/{hash}/txs", get(block_txs_first))
        .route("/block/{hash}/txs/{start}", get(block_txs))
        .route("/block/{hash}/raw", get(block_raw))
        .route("/scripthash/{hash}", get(scripts::scripthash_stats))
        .route("/scripthash/{hash}/txs", get(scripts::scripthash_txs))
        .route(
            "/scripthash/{hash}/txs/chain",
            get(scripts::scripthash_chain_first),
        )
        .route(
            "/scripthash/{hash}/txs/chain/{last}",
            get(scripts::scripthash_chain),
        )
        .route(
            "/scripthash/{hash}/txs/mempool",
            get(scripts::scripthash_mempool),
        )
        .route("/scripthash/{hash}/utxo", get(scripts::scripthash_utxo))
        .route("/address/{address}", get(scripts::address_stats))
        .route("/address/{address}/txs", get(scripts::address_txs))
        .route(
            "/address/{address}/txs/chain",
            get(scripts::address_chain_first),
        )
        .route(
            "/address/{address}/txs/chain/{last}",
            get(scripts::address_chain),
        )
        .route(
            "/address/{address}/txs/mempool",
            get(scripts::address_mempool),
        )
        .route("/address/{address}/utxo", get(scripts::address_utxo))
        .route("/tx/{txid}", get(tx_info))
        .route("/tx/{txid}/hex", get(tx_hex))
        .route("/tx/{txid}/raw", get(tx_raw))
        .route("/tx/{txid}/status", get(tx_status))
        .route("/tx/{txid}/merkle-proof", get(tx_merkle_proof))
        .route("/tx/{txid}/merkleblock-proof", get(tx_merkleblock_proof))
        .route("/tx/{txid}/outspend/{vout}", get(tx_outspend))
        .route("/tx/{txid}/outspends", get(tx_outspends))
        .route("/tx", post(broadcast))
        .route("/mempool", get(mempool_stats))
        .route("/mempool/txids", get(mempool_txids))
        .route("/mempool/recent", get(mempool_recent))
        .route("/fee-estimates", get(fee_estimates))
        .with_state(node)
}

async fn tip_height(State(node): State<SharedNode>) -> Answer {
    text(lock(&node).chain().tip_height())
}

async fn tip_hash(State(node): State<SharedNode>) -> Answer {
    text(lock(&node).chain().tip().block_hash())
}

fn blocks_page(node: &Node, start: u32) -> Answer {
    let start = start.min(node.chain().tip_height());
    let infos: Vec<Value> = (0..=start)
        .rev()
        .take(BLOCKS_PER_PAGE as usize)
        .filter_map(|h| node.chain().block_at(h).map(|b| json::block(node, b, h)))
        .collect();
    json_answer(Value::Array(infos))
}

async fn blocks_from_tip(State(node): State<SharedNode>) -> Answer {
    let node = lock(&node);
    blocks_page(&node, node.chain().tip_height())
}

async fn blocks_from(State(node): State<SharedNode>, Path(start): Path<u32>) -> Answer {
    blocks_page(&lock(&node), start)
}

async fn block_at_height(State(node): State<SharedNode>, Path(height): Path<u32>) -> Answer {
    let node = lock(&node);
    let block = node
        .chain()
        .block_at(height)
        .ok_or_else(|| HttpError::not_found("Block"))?;
    text(block.block_hash())
}

/// An active or stale block and its height.
fn find_block<'a>(node: &'a Node, hash: &str) -> Result<(u32, &'a bitcoin::Block), HttpError> {
    let hash = parse_block_hash(hash)?;
    if let Some(height) = node.chain().height_of(&hash)
        && let Some(block) = node.chain().block_at(height)
    {
        return Ok((height, block));
    }
    node.chain()
        .stale(&hash)
        .ok_or_else(|| HttpError::not_found("Block"))
}

async fn block_info(State(node): State<SharedNode>, Path(hash): Path<String>) -> Answer {
    let node = lock(&node);
    let (height, block) = find_block(&node, &hash)?;
    json_answer(json::block(&node, block, height))
}

async fn block_header(State(node): State<SharedNode>, Path(hash): Path<String>) -> Answer {
    let node = lock(&node);
    let (_, block) = find_block(&node, &hash)?;
    text(serialize_hex(&block.header))
}

async fn block_status(State(node): State<SharedNode>, Path(hash): Path<String>) -> Answer {
    let node = lock(&node);
    let hash = parse_block_hash(&hash)?;
    json::block_status(&node, &hash).map_or_else(|| Err(HttpError::not_found("Block")), json_answer)
}

async fn block_txids(State(node): State<SharedNode>, Path(hash): Path<String>) -> Answer {
    let node = lock(&node);
    let (_, block) = find_block(&node, &hash)?;
    let txids: Vec<String> = block
        .txdata
        .iter()
        .map(|t| t.compute_txid().to_string())
        .collect();
    json_answer(json!(txids))
}

async fn block_txid(
    State(node): State<SharedNode>,
    Path((hash, index)): Path<(String, usize)>,
) -> Answer {
    let node = lock(&node);
    let (_, block) = find_block(&node, &hash)?;
    let tx = block
        .txdata
        .get(index)
        .ok_or_else(|| HttpError::not_found("Transaction"))?;
    text(tx.compute_txid())
}

fn block_txs_page(node: &Node, hash: &str, start: usize) -> Answer {
    if !start.is_multiple_of(CHAIN_TXS_PER_PAGE) {
        return Err(HttpError::bad_request(format!(
            "start index must be a multiple of {CHAIN_TXS_PER_PAGE}"
        )));
    }
    let (_, block) = find_block(node, hash)?;
    let txs: Vec<Value> = block
        .txdata
        .iter()
        .skip(start)
        .take(CHAIN_TXS_PER_PAGE)
        .map(|t| json::tx(node, t))
        .collect();
    json_answer(Value::Array(txs))
}

async fn block_txs_first(State(node): State<SharedNode>, Path(hash): Path<String>) -> Answer {
    block_txs_page(&lock(&node), &hash, 0)
}

async fn block_txs(
    State(node): State<SharedNode>,
    Path((hash, start)): Path<(String, usize)>,
) -> Answer {
    block_txs_page(&lock(&node), &hash, start)
}

async fn block_raw(State(node): State<SharedNode>, Path(hash): Path<String>) -> Answer {
    let node = lock(&node);
    let (_, block) = find_block(&node, &hash)?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        serialize(block),
    )
        .into_response())
}

fn known_tx<'a>(node: &'a Node, txid: &str) -> Result<&'a bitcoin::Transaction, HttpError> {
    let txid = parse_txid(txid)?;
    node.tx(&txid)
        .ok_or_else(|| HttpError::not_found("Transaction"))
}

async fn tx_info(State(node): State<SharedNode>, Path(txid): Path<String>) -> Answer {
    let node = lock(&node);
    let tx = known_tx(&node, &txid)?;
    json_answer(json::tx(&node, tx))
}

async fn tx_hex(State(node): State<SharedNode>, Path(txid): Path<String>) -> Answer {
    let node = lock(&node);
    text(serialize_hex(known_tx(&node, &txid)?))
}

async fn tx_raw(State(node): State<SharedNode>, Path(txid): Path<String>) -> Answer {
    let node = lock(&node);
    let raw = serialize(known_tx(&node, &txid)?);
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], raw).into_response())
}

async fn tx_status(State(node): State<SharedNode>, Path(txid): Path<String>) -> Answer {
    // As electrs: an unknown transaction is reported unconfirmed, not 404.
    let txid = parse_txid(&txid)?;
    json_answer(json::status(&lock(&node), &txid))
}

async fn tx_merkle_proof(State(node): State<SharedNode>, Path(txid): Path<String>) -> Answer {
    let node = lock(&node);
    let txid = parse_txid(&txid)?;
    let at = node
        .chain()
        .locate(&txid)
        .ok_or_else(|| HttpError::not_found("Transaction"))?;
    let block = node
        .chain()
        .block_at(at.height)
        .ok_or_else(|| HttpError::not_found("Block"))?;
    let txids: Vec<Txid> = block.txdata.iter().map(|t| t.compute_txid()).collect();
    let merkle: Vec<String> = crate::block::merkle_branch(&txids, at.index)
        .into_iter()
        .map(|n| Txid::from_raw_hash(n.to_raw_hash()).to_string())
        .collect();
    json_answer(json!({ "block_height": at.height, "merkle": merkle, "pos": at.index }))
}

async fn tx_merkleblock_proof(State(node): State<SharedNode>, Path(txid): Path<String>) -> Answer {
    let node = lock(&node);
    let txid = parse_txid(&txid)?;
    let at = node
        .chain()
        .locate(&txid)
        .ok_or_else(|| HttpError::not_found("Transaction"))?;
    let block = node
        .chain()
        .block_at(at.height)
        .ok_or_else(|| HttpError::not_found("Block"))?;
    let proof = bitcoin::MerkleBlock::from_block_with_predicate(block, |t| *t == txid);
    text(serialize_hex(&proof))
}

async fn tx_outspend(
    State(node): State<SharedNode>,
    Path((txid, vout)): Path<(String, u32)>,
) -> Answer {
    let txid = parse_txid(&txid)?;
    json_answer(json::outspend(&lock(&node), &OutPoint::new(txid, vout)))
}

async fn tx_outspends(State(node): State<SharedNode>, Path(txid): Path<String>) -> Answer {
    let node = lock(&node);
    let tx = known_tx(&node, &txid)?;
    let txid = tx.compute_txid();
    let spends: Vec<Value> = (0u32..)
        .zip(&tx.output)
        .map(|(vout, _)| json::outspend(&node, &OutPoint::new(txid, vout)))
        .collect();
    json_answer(Value::Array(spends))
}

/// Esplora passes bitcoind's refusal on as `sendrawtransaction RPC error: {json}`.
fn rpc_error_text(code: i32, message: &str) -> String {
    format!(
        "sendrawtransaction RPC error: {}",
        json!({ "code": code, "message": message })
    )
}

async fn broadcast(State(node): State<SharedNode>, body: Bytes) -> Answer {
    let hex = String::from_utf8_lossy(&body);
    let tx: bitcoin::Transaction = deserialize_hex(hex.trim())
        .map_err(|_| HttpError::bad_request(rpc_error_text(-22, "TX decode failed")))?;
    let result = lock(&node).submit(tx);
    match result {
        Ok(txid) => text(txid),
        Err(reject) => Err(HttpError::bad_request(rpc_error_text(
            reject.rpc_code(),
            &reject.to_string(),
        ))),
    }
}

async fn mempool_stats(State(node): State<SharedNode>) -> Answer {
    let node = lock(&node);
    let vsize: usize = node.mempool().iter().map(|(_, e)| e.tx.vsize()).sum();
    let total_fee: u64 = node.mempool().iter().map(|(_, e)| e.fee.to_sat()).sum();
    json_answer(json!({
        "count": node.mempool().len(),
        "vsize": vsize,
        "total_fee": total_fee,
        "fee_histogram": [],
    }))
}

async fn mempool_txids(State(node): State<SharedNode>) -> Answer {
    let node = lock(&node);
    let txids: Vec<String> = node.mempool().iter().map(|(t, _)| t.to_string()).collect();
    json_answer(json!(txids))
}

async fn mempool_recent(State(node): State<SharedNode>) -> Answer {
    let node = lock(&node);
    let recent: Vec<Value> = node
        .mempool()
        .iter()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .take(10)
        .map(|(txid, e)| {
            let value: u64 = e.tx.output.iter().map(|o| o.value.to_sat()).sum();
            json!({ "txid": txid.to_string(), "fee": e.fee.to_sat(), "vsize": e.tx.vsize(), "value": value })
        })
        .collect();
    json_answer(Value::Array(recent))
}

async fn fee_estimates(State(node): State<SharedNode>) -> Answer {
    let node = lock(&node);
    let estimates: serde_json::Map<String, Value> = node
        .fee_estimates()
        .iter()
        // Esplora's unit is sat/vB as a JSON number; kept in sat/kvB inside.
        .map(|(t, sat_per_kvb)| (t.to_string(), json!(*sat_per_kvb as f64 / 1000.0)))
        .collect();
    json_answer(Value::Object(estimates))
}
