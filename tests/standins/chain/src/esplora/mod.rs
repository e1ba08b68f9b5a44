//! Esplora's HTTP API, as Blockstream's esplora/electrs serve it, so that
//! `esplora-client` and `bdk_esplora` (and BDK's bindings for other languages)
//! use the stand-in unchanged.

mod json;

use std::str::FromStr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bitcoin::consensus::encode::{deserialize_hex, serialize, serialize_hex};
use bitcoin::hashes::sha256;
use bitcoin::{Address, BlockHash, Network, OutPoint, Txid};
use serde_json::{Value, json};

use crate::chain::script_hash;
use crate::node::{Node, SharedNode, lock};

pub use json::script_type;

/// Esplora's page sizes: mempool transactions on a history's first page, and
/// confirmed ones per page.
const MEMPOOL_TXS: usize = 50;
const CHAIN_TXS_PER_PAGE: usize = 25;
/// Blocks per `GET /blocks` page.
const BLOCKS_PER_PAGE: u32 = 10;

/// An error answered as Esplora does: a status and a plain-text message.
#[derive(Debug)]
pub struct HttpError(StatusCode, String);

impl HttpError {
    fn not_found(what: &str) -> Self {
        Self(StatusCode::NOT_FOUND, format!("{what} not found"))
    }
    fn bad_request(msg: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

type Answer = Result<Response, HttpError>;

fn text(s: impl ToString) -> Answer {
    Ok(s.to_string().into_response())
}

fn json_answer(v: Value) -> Answer {
    Ok(axum::Json(v).into_response())
}

fn parse_txid(s: &str) -> Result<Txid, HttpError> {
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
        .route("/scripthash/{hash}/txs", get(scripthash_txs))
        .route("/scripthash/{hash}/txs/chain", get(scripthash_chain_first))
        .route("/scripthash/{hash}/txs/chain/{last}", get(scripthash_chain))
        .route("/scripthash/{hash}/txs/mempool", get(scripthash_mempool))
        .route("/scripthash/{hash}/utxo", get(scripthash_utxo))
        .route("/address/{address}/txs", get(address_txs))
        .route("/address/{address}/txs/chain", get(address_chain_first))
        .route("/address/{address}/txs/chain/{last}", get(address_chain))
        .route("/address/{address}/txs/mempool", get(address_mempool))
        .route("/address/{address}/utxo", get(address_utxo))
        .route("/tx/{txid}", get(tx_info))
        .route("/tx/{txid}/hex", get(tx_hex))
        .route("/tx/{txid}/raw", get(tx_raw))
        .route("/tx/{txid}/status", get(tx_status))
        .route("/tx/{txid}/merkle-proof", get(tx_merkle_proof))
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

/// Which part of a script's history a request asks for.
enum Page {
    /// Up to 50 mempool transactions, then the first 25 confirmed.
    First,
    /// 25 confirmed transactions after `last_seen` (newest first).
    Chain(Option<Txid>),
    /// Mempool transactions only.
    Mempool,
}

fn touches(node: &Node, tx: &bitcoin::Transaction, sh: &sha256::Hash) -> bool {
    tx.output
        .iter()
        .any(|o| script_hash(&o.script_pubkey) == *sh)
        || tx.input.iter().any(|i| {
            node.output(&i.previous_output)
                .is_some_and(|o| script_hash(&o.script_pubkey) == *sh)
        })
}

fn history(node: &Node, sh: &sha256::Hash, page: &Page) -> Vec<Value> {
    let mut out = Vec::new();
    if matches!(page, Page::First | Page::Mempool) {
        let mempool: Vec<&bitcoin::Transaction> = node
            .mempool()
            .iter()
            .map(|(_, e)| &e.tx)
            .filter(|tx| touches(node, tx, sh))
            .collect();
        out.extend(
            mempool
                .into_iter()
                .rev()
                .take(MEMPOOL_TXS)
                .map(|tx| json::tx(node, tx)),
        );
    }
    let last_seen = match page {
        Page::Mempool => return out,
        Page::First => None,
        Page::Chain(last) => *last,
    };
    let confirmed = node.chain().history(sh).iter().rev();
    let page: Vec<&Txid> = match last_seen {
        // As electrs: the page after `last_seen`, or nothing if it is not in
        // this script's confirmed history.
        Some(last) => confirmed
            .skip_while(|t| **t != last)
            .skip(1)
            .take(CHAIN_TXS_PER_PAGE)
            .collect(),
        None => confirmed.take(CHAIN_TXS_PER_PAGE).collect(),
    };
    out.extend(
        page.into_iter()
            .filter_map(|t| node.tx(t))
            .map(|tx| json::tx(node, tx)),
    );
    out
}

fn utxos(node: &Node, sh: &sha256::Hash) -> Vec<Value> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let candidates = node
        .chain()
        .history(sh)
        .iter()
        .copied()
        .chain(node.mempool().iter().map(|(t, _)| *t));
    for txid in candidates {
        if !seen.insert(txid) {
            continue;
        }
        let Some(tx) = node.tx(&txid) else { continue };
        for (vout, o) in (0u32..).zip(&tx.output) {
            let op = OutPoint::new(txid, vout);
            if script_hash(&o.script_pubkey) == *sh && node.spender(&op).is_none() {
                out.push(json!({
                    "txid": txid.to_string(),
                    "vout": vout,
                    "status": json::status(node, &txid),
                    "value": o.value.to_sat(),
                }));
            }
        }
    }
    out
}

fn parse_script_hash(s: &str) -> Result<sha256::Hash, HttpError> {
    sha256::Hash::from_str(s).map_err(|_| HttpError::bad_request("Invalid hex string"))
}

fn parse_address(s: &str) -> Result<sha256::Hash, HttpError> {
    let address = Address::from_str(s)
        .map_err(|e| HttpError::bad_request(format!("Invalid Bitcoin address: {e}")))?
        .require_network(Network::Regtest)
        .map_err(|e| HttpError::bad_request(format!("Invalid Bitcoin address: {e}")))?;
    Ok(script_hash(&address.script_pubkey()))
}

fn parse_last(s: &str) -> Result<Option<Txid>, HttpError> {
    parse_txid(s).map(Some)
}

async fn scripthash_txs(State(node): State<SharedNode>, Path(hash): Path<String>) -> Answer {
    let sh = parse_script_hash(&hash)?;
    json_answer(Value::Array(history(&lock(&node), &sh, &Page::First)))
}

async fn scripthash_chain_first(
    State(node): State<SharedNode>,
    Path(hash): Path<String>,
) -> Answer {
    let sh = parse_script_hash(&hash)?;
    json_answer(Value::Array(history(&lock(&node), &sh, &Page::Chain(None))))
}

async fn scripthash_chain(
    State(node): State<SharedNode>,
    Path((hash, last)): Path<(String, String)>,
) -> Answer {
    let sh = parse_script_hash(&hash)?;
    let page = Page::Chain(parse_last(&last)?);
    json_answer(Value::Array(history(&lock(&node), &sh, &page)))
}

async fn scripthash_mempool(State(node): State<SharedNode>, Path(hash): Path<String>) -> Answer {
    let sh = parse_script_hash(&hash)?;
    json_answer(Value::Array(history(&lock(&node), &sh, &Page::Mempool)))
}

async fn scripthash_utxo(State(node): State<SharedNode>, Path(hash): Path<String>) -> Answer {
    let sh = parse_script_hash(&hash)?;
    json_answer(Value::Array(utxos(&lock(&node), &sh)))
}

async fn address_txs(State(node): State<SharedNode>, Path(address): Path<String>) -> Answer {
    let sh = parse_address(&address)?;
    json_answer(Value::Array(history(&lock(&node), &sh, &Page::First)))
}

async fn address_chain_first(
    State(node): State<SharedNode>,
    Path(address): Path<String>,
) -> Answer {
    let sh = parse_address(&address)?;
    json_answer(Value::Array(history(&lock(&node), &sh, &Page::Chain(None))))
}

async fn address_chain(
    State(node): State<SharedNode>,
    Path((address, last)): Path<(String, String)>,
) -> Answer {
    let sh = parse_address(&address)?;
    let page = Page::Chain(parse_last(&last)?);
    json_answer(Value::Array(history(&lock(&node), &sh, &page)))
}

async fn address_mempool(State(node): State<SharedNode>, Path(address): Path<String>) -> Answer {
    let sh = parse_address(&address)?;
    json_answer(Value::Array(history(&lock(&node), &sh, &Page::Mempool)))
}

async fn address_utxo(State(node): State<SharedNode>, Path(address): Path<String>) -> Answer {
    let sh = parse_address(&address)?;
    json_answer(Value::Array(utxos(&lock(&node), &sh)))
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
