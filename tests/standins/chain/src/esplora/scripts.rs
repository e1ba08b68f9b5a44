//! Script-hash and address routes: histories paged as Esplora pages them,
//! unspent outputs and funded/spent statistics.

use std::str::FromStr;

use axum::extract::{Path, State};
use bitcoin::hashes::sha256;
use bitcoin::{Address, Network, OutPoint, Txid};
use serde_json::{Value, json};

use super::json as shape;
use super::{Answer, HttpError, json_answer, parse_txid};
use crate::chain::script_hash;
use crate::node::{Node, SharedNode, lock};

/// Esplora's page sizes: mempool transactions on a history's first page, and
/// confirmed ones per page.
const MEMPOOL_TXS: usize = 50;
const CHAIN_TXS_PER_PAGE: usize = 25;

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
                .map(|tx| shape::tx(node, tx)),
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
            .map(|tx| shape::tx(node, tx)),
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
                    "status": shape::status(node, &txid),
                    "value": o.value.to_sat(),
                }));
            }
        }
    }
    out
}

/// Funded and spent outputs of a script among `txs`, as Esplora's
/// `chain_stats` / `mempool_stats`.
fn stats<'a>(
    node: &Node,
    sh: &sha256::Hash,
    txs: impl Iterator<Item = &'a bitcoin::Transaction>,
) -> Value {
    let (mut funded, mut funded_sum, mut spent, mut spent_sum, mut count) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for tx in txs {
        count += 1;
        for o in &tx.output {
            if script_hash(&o.script_pubkey) == *sh {
                funded += 1;
                funded_sum += o.value.to_sat();
            }
        }
        for i in &tx.input {
            if let Some(o) = node.output(&i.previous_output)
                && script_hash(&o.script_pubkey) == *sh
            {
                spent += 1;
                spent_sum += o.value.to_sat();
            }
        }
    }
    json!({
        "funded_txo_count": funded,
        "funded_txo_sum": funded_sum,
        "spent_txo_count": spent,
        "spent_txo_sum": spent_sum,
        "tx_count": count,
    })
}

fn script_stats(node: &Node, sh: &sha256::Hash) -> (Value, Value) {
    let chain = stats(
        node,
        sh,
        node.chain()
            .history(sh)
            .iter()
            .filter_map(|t| node.chain().tx(t)),
    );
    let mempool = stats(
        node,
        sh,
        node.mempool()
            .iter()
            .map(|(_, e)| &e.tx)
            .filter(|tx| touches(node, tx, sh)),
    );
    (chain, mempool)
}

pub(super) async fn scripthash_stats(
    State(node): State<SharedNode>,
    Path(hash): Path<String>,
) -> Answer {
    let sh = parse_script_hash(&hash)?;
    let (chain, mempool) = script_stats(&lock(&node), &sh);
    json_answer(json!({ "scripthash": hash, "chain_stats": chain, "mempool_stats": mempool }))
}

pub(super) async fn address_stats(
    State(node): State<SharedNode>,
    Path(address): Path<String>,
) -> Answer {
    let sh = parse_address(&address)?;
    let (chain, mempool) = script_stats(&lock(&node), &sh);
    json_answer(json!({ "address": address, "chain_stats": chain, "mempool_stats": mempool }))
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

pub(super) async fn scripthash_txs(
    State(node): State<SharedNode>,
    Path(hash): Path<String>,
) -> Answer {
    let sh = parse_script_hash(&hash)?;
    json_answer(Value::Array(history(&lock(&node), &sh, &Page::First)))
}

pub(super) async fn scripthash_chain_first(
    State(node): State<SharedNode>,
    Path(hash): Path<String>,
) -> Answer {
    let sh = parse_script_hash(&hash)?;
    json_answer(Value::Array(history(&lock(&node), &sh, &Page::Chain(None))))
}

pub(super) async fn scripthash_chain(
    State(node): State<SharedNode>,
    Path((hash, last)): Path<(String, String)>,
) -> Answer {
    let sh = parse_script_hash(&hash)?;
    let page = Page::Chain(parse_last(&last)?);
    json_answer(Value::Array(history(&lock(&node), &sh, &page)))
}

pub(super) async fn scripthash_mempool(
    State(node): State<SharedNode>,
    Path(hash): Path<String>,
) -> Answer {
    let sh = parse_script_hash(&hash)?;
    json_answer(Value::Array(history(&lock(&node), &sh, &Page::Mempool)))
}

pub(super) async fn scripthash_utxo(
    State(node): State<SharedNode>,
    Path(hash): Path<String>,
) -> Answer {
    let sh = parse_script_hash(&hash)?;
    json_answer(Value::Array(utxos(&lock(&node), &sh)))
}

pub(super) async fn address_txs(
    State(node): State<SharedNode>,
    Path(address): Path<String>,
) -> Answer {
    let sh = parse_address(&address)?;
    json_answer(Value::Array(history(&lock(&node), &sh, &Page::First)))
}

pub(super) async fn address_chain_first(
    State(node): State<SharedNode>,
    Path(address): Path<String>,
) -> Answer {
    let sh = parse_address(&address)?;
    json_answer(Value::Array(history(&lock(&node), &sh, &Page::Chain(None))))
}

pub(super) async fn address_chain(
    State(node): State<SharedNode>,
    Path((address, last)): Path<(String, String)>,
) -> Answer {
    let sh = parse_address(&address)?;
    let page = Page::Chain(parse_last(&last)?);
    json_answer(Value::Array(history(&lock(&node), &sh, &page)))
}

pub(super) async fn address_mempool(
    State(node): State<SharedNode>,
    Path(address): Path<String>,
) -> Answer {
    let sh = parse_address(&address)?;
    json_answer(Value::Array(history(&lock(&node), &sh, &Page::Mempool)))
}

pub(super) async fn address_utxo(
    State(node): State<SharedNode>,
    Path(address): Path<String>,
) -> Answer {
    let sh = parse_address(&address)?;
    json_answer(Value::Array(utxos(&lock(&node), &sh)))
}
