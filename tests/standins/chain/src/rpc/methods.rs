//! The bitcoind methods the stand-in answers, with Bitcoin Core's parameter
//! handling and error codes.

use std::collections::BTreeSet;
use std::str::FromStr;

use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::{Amount, BlockHash, OutPoint, Txid};
use serde_json::{Value, json};

use super::decode;
use super::{RpcError, codes};
use crate::node::Node;

/// Runs `method` with positional `params`.
pub fn dispatch(node: &mut Node, method: &str, params: &[Value]) -> Result<Value, RpcError> {
    match method {
        "getblockchaininfo" => Ok(blockchain_info(node)),
        "getblockcount" => Ok(json!(node.chain().tip_height())),
        "getbestblockhash" => Ok(json!(node.chain().tip().block_hash().to_string())),
        "getblockhash" => block_hash(node, params),
        "getblockheader" => block_header(node, params),
        "getblock" => get_block(node, params),
        "getrawmempool" => raw_mempool(node, params),
        "getrawtransaction" => raw_transaction(node, params),
        "sendrawtransaction" => send_raw_transaction(node, params),
        "estimatesmartfee" => estimate_smart_fee(node, params),
        "getmempoolentry" => mempool_entry(node, params),
        "getmempoolinfo" => Ok(mempool_info(node)),
        "gettxout" => tx_out(node, params),
        _ => Err(RpcError::new(codes::METHOD_NOT_FOUND, "Method not found")),
    }
}

fn type_error(value: &Value, expected: &str) -> RpcError {
    let actual = match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    RpcError::new(
        codes::TYPE_ERROR,
        format!("JSON value of type {actual} is not of expected type {expected}"),
    )
}

fn required<'a>(params: &'a [Value], i: usize, method: &str) -> Result<&'a Value, RpcError> {
    params.get(i).filter(|v| !v.is_null()).ok_or_else(|| {
        RpcError::new(
            codes::MISC_ERROR,
            format!("{method}: missing required parameter {}", i + 1),
        )
    })
}

fn str_param<'a>(params: &'a [Value], i: usize, method: &str) -> Result<&'a str, RpcError> {
    let v = required(params, i, method)?;
    v.as_str().ok_or_else(|| type_error(v, "string"))
}

fn u64_param(params: &[Value], i: usize, method: &str) -> Result<u64, RpcError> {
    let v = required(params, i, method)?;
    v.as_u64()
        .or_else(|| v.as_i64().map(|_| u64::MAX))
        .ok_or_else(|| type_error(v, "number"))
}

fn bool_or(params: &[Value], i: usize, default: bool) -> Result<bool, RpcError> {
    match params.get(i) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        // Bitcoin Core accepts 0/1 for these flags.
        Some(Value::Number(n)) => Ok(n.as_u64().is_some_and(|n| n != 0)),
        Some(v) => Err(type_error(v, "bool")),
    }
}

/// A 64-hex-digit hash parameter, as Bitcoin Core's `ParseHashV`.
fn hash_param<T: FromStr>(
    params: &[Value],
    i: usize,
    method: &str,
    name: &str,
) -> Result<T, RpcError> {
    let s = str_param(params, i, method)?;
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RpcError::new(
            codes::INVALID_PARAMETER,
            format!("{name} must be of length 64 (not {}, for '{s}')", s.len()),
        ));
    }
    T::from_str(s).map_err(|_| {
        RpcError::new(
            codes::INVALID_PARAMETER,
            format!("{name} must be hexadecimal string (not '{s}')"),
        )
    })
}

fn blockchain_info(node: &Node) -> Value {
    let tip = node.chain().tip();
    let height = node.chain().tip_height();
    json!({
        "chain": "regtest",
        "blocks": height,
        "headers": height,
        "bestblockhash": tip.block_hash().to_string(),
        "difficulty": tip.header.difficulty_float(),
        "time": tip.header.time,
        "mediantime": node.chain().median_time_past(height),
        "verificationprogress": 1,
        "initialblockdownload": false,
        "chainwork": decode::chainwork(node, height),
        "size_on_disk": 0,
        "pruned": false,
        "warnings": "",
    })
}

/// Bitcoin Core's fields; the fee floors are Core's defaults (1 sat/vB), which a wallet
/// reads as the least it may pay.
fn mempool_info(node: &Node) -> Value {
    let vsize: u64 = node
        .mempool()
        .iter()
        .map(|(_, e)| e.tx.vsize() as u64)
        .sum();
    json!({
        "loaded": true,
        "size": node.mempool().len(),
        "bytes": vsize,
        "usage": vsize,
        "maxmempool": 300_000_000,
        "mempoolminfee": 0.00001,
        "minrelaytxfee": 0.00001,
        "incrementalrelayfee": 0.00001,
        "unbroadcastcount": 0,
        "fullrbf": true,
    })
}

fn block_hash(node: &Node, params: &[Value]) -> Result<Value, RpcError> {
    let height = u64_param(params, 0, "getblockhash")?;
    u32::try_from(height)
        .ok()
        .and_then(|h| node.chain().block_at(h))
        .map(|b| json!(b.block_hash().to_string()))
        .ok_or_else(|| RpcError::new(codes::INVALID_PARAMETER, "Block height out of range"))
}

/// An active or stale block: (height, block, active).
fn find_block<'a>(
    node: &'a Node,
    params: &[Value],
    method: &str,
) -> Result<(u32, &'a bitcoin::Block, bool), RpcError> {
    let hash: BlockHash = hash_param(params, 0, method, "blockhash")?;
    if let Some(h) = node.chain().height_of(&hash)
        && let Some(b) = node.chain().block_at(h)
    {
        return Ok((h, b, true));
    }
    node.chain()
        .stale(&hash)
        .map(|(h, b)| (h, b, false))
        .ok_or_else(|| RpcError::new(codes::INVALID_ADDRESS_OR_KEY, "Block not found"))
}

fn block_header(node: &Node, params: &[Value]) -> Result<Value, RpcError> {
    let (height, block, active) = find_block(node, params, "getblockheader")?;
    if bool_or(params, 1, true)? {
        Ok(decode::header(node, block, height, active))
    } else {
        Ok(json!(serialize_hex(&block.header)))
    }
}

fn get_block(node: &Node, params: &[Value]) -> Result<Value, RpcError> {
    let (height, block, active) = find_block(node, params, "getblock")?;
    let verbosity = match params.get(1) {
        None | Some(Value::Null) => 1,
        Some(Value::Bool(b)) => u64::from(*b),
        Some(Value::Number(n)) => n.as_u64().unwrap_or(u64::MAX),
        Some(v) => return Err(type_error(v, "number")),
    };
    match verbosity {
        0 => Ok(json!(serialize_hex(block))),
        1 | 2 => Ok(decode::block(node, block, height, active, verbosity)),
        _ => Err(RpcError::new(
            codes::INVALID_PARAMETER,
            "Verbosity 3 (transactions with prevouts) is not offered by the stand-in; use 0, 1 or 2",
        )),
    }
}

/// In-mempool parents and children of `txid`, and its full ancestor and
/// descendant sets (each including `txid` itself, as Bitcoin Core counts).
struct Family {
    depends: Vec<Txid>,
    spent_by: Vec<Txid>,
    ancestors: BTreeSet<Txid>,
    descendants: BTreeSet<Txid>,
}

fn family(node: &Node, txid: &Txid) -> Family {
    let mempool = node.mempool();
    let parents = |t: &Txid| -> Vec<Txid> {
        mempool.get(t).map_or_else(Vec::new, |e| {
            let mut p: Vec<Txid> =
                e.tx.input
                    .iter()
                    .map(|i| i.previous_output.txid)
                    .filter(|p| mempool.contains(p))
                    .collect();
            p.sort_unstable();
            p.dedup();
            p
        })
    };
    let children = |t: &Txid| -> Vec<Txid> {
        let outputs = mempool.get(t).map_or(0, |e| e.tx.output.len());
        let mut c: Vec<Txid> = (0..u32::try_from(outputs).unwrap_or(u32::MAX))
            .filter_map(|v| mempool.spender(&OutPoint::new(*t, v)).map(|s| s.0))
            .collect();
        c.sort_unstable();
        c.dedup();
        c
    };
    let walk = |start: Txid, next: &dyn Fn(&Txid) -> Vec<Txid>| -> BTreeSet<Txid> {
        let mut seen = BTreeSet::from([start]);
        let mut stack = vec![start];
        while let Some(t) = stack.pop() {
            for n in next(&t) {
                if seen.insert(n) {
                    stack.push(n);
                }
            }
        }
        seen
    };
    Family {
        depends: parents(txid),
        spent_by: children(txid),
        ancestors: walk(*txid, &parents),
        descendants: walk(*txid, &children),
    }
}

fn mempool_entry_json(node: &Node, txid: &Txid) -> Option<Value> {
    let entry = node.mempool().get(txid)?;
    let f = family(node, txid);
    let sum = |set: &BTreeSet<Txid>| -> (usize, Amount) {
        set.iter().filter_map(|t| node.mempool().get(t)).fold(
            (0, Amount::ZERO),
            |(size, fee), e| {
                (
                    size + e.tx.vsize(),
                    fee.checked_add(e.fee).unwrap_or(Amount::MAX),
                )
            },
        )
    };
    let (ancestor_size, ancestor_fees) = sum(&f.ancestors);
    let (descendant_size, descendant_fees) = sum(&f.descendants);
    Some(json!({
        "vsize": entry.tx.vsize(),
        "weight": entry.tx.weight().to_wu(),
        "time": entry.time,
        "height": entry.height,
        "descendantcount": f.descendants.len(),
        "descendantsize": descendant_size,
        "ancestorcount": f.ancestors.len(),
        "ancestorsize": ancestor_size,
        "wtxid": entry.tx.compute_wtxid().to_string(),
        "fees": {
            "base": decode::btc(entry.fee),
            "modified": decode::btc(entry.fee),
            "ancestor": decode::btc(ancestor_fees),
            "descendant": decode::btc(descendant_fees),
        },
        "depends": f.depends.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "spentby": f.spent_by.iter().map(ToString::to_string).collect::<Vec<_>>(),
        // Replacement is not offered by the stand-in (see the README).
        "bip125-replaceable": false,
        "unbroadcast": false,
    }))
}

fn raw_mempool(node: &Node, params: &[Value]) -> Result<Value, RpcError> {
    if bool_or(params, 0, false)? {
        let entries: serde_json::Map<String, Value> = node
            .mempool()
            .iter()
            .filter_map(|(t, _)| mempool_entry_json(node, t).map(|e| (t.to_string(), e)))
            .collect();
        return Ok(Value::Object(entries));
    }
    Ok(json!(
        node.mempool()
            .iter()
            .map(|(t, _)| t.to_string())
            .collect::<Vec<_>>()
    ))
}

fn raw_transaction(node: &Node, params: &[Value]) -> Result<Value, RpcError> {
    let txid: Txid = hash_param(params, 0, "getrawtransaction", "parameter 1")?;
    let verbose = match params.get(1) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_u64().is_some_and(|n| n > 0),
        Some(v) => return Err(type_error(v, "number")),
    };
    let not_found = || {
        RpcError::new(
            codes::INVALID_ADDRESS_OR_KEY,
            "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.",
        )
    };
    let tx = node.tx(&txid).ok_or_else(not_found)?;
    // An optional block hash: the transaction must be in that block.
    let block_given = params.get(2).is_some_and(|v| !v.is_null());
    if block_given {
        let hash: BlockHash = hash_param(params, 2, "getrawtransaction", "parameter 3")?;
        if node.chain().height_of(&hash).is_none() {
            return Err(RpcError::new(
                codes::INVALID_ADDRESS_OR_KEY,
                "Block hash not found",
            ));
        }
        if node.confirmation(&txid).map(|c| c.1) != Some(hash) {
            return Err(RpcError::new(
                codes::INVALID_ADDRESS_OR_KEY,
                "No such transaction found in the provided block. Use gettransaction for wallet transactions.",
            ));
        }
    }
    if !verbose {
        return Ok(json!(serialize_hex(tx)));
    }
    let mut v = decode::tx(node, tx);
    if let Some((height, hash, time)) = node.confirmation(&txid) {
        v["blockhash"] = json!(hash.to_string());
        v["confirmations"] = json!(node.chain().tip_height() - height + 1);
        v["time"] = json!(time);
        v["blocktime"] = json!(time);
        // Bitcoin Core adds this field only when a block hash was given.
        if block_given {
            v["in_active_chain"] = json!(true);
        }
    }
    Ok(v)
}

fn send_raw_transaction(node: &mut Node, params: &[Value]) -> Result<Value, RpcError> {
    let hex = str_param(params, 0, "sendrawtransaction")?;
    let tx: bitcoin::Transaction = deserialize_hex(hex).map_err(|_| {
        RpcError::new(
            codes::DESERIALIZATION_ERROR,
            "TX decode failed. Make sure the tx has at least one input.",
        )
    })?;
    node.submit(tx)
        .map(|txid| json!(txid.to_string()))
        .map_err(|r| RpcError::new(r.rpc_code(), r.to_string()))
}

fn estimate_smart_fee(node: &Node, params: &[Value]) -> Result<Value, RpcError> {
    let target = u64_param(params, 0, "estimatesmartfee")?;
    let target = u16::try_from(target)
        .ok()
        .filter(|t| (1..=1008).contains(t))
        .ok_or_else(|| {
            RpcError::new(
                codes::INVALID_PARAMETER,
                "Invalid conf_target, must be between 1 and 1008",
            )
        })?;
    if let Some(mode) = params.get(1).and_then(Value::as_str)
        && !["unset", "economical", "conservative"].contains(&mode.to_ascii_lowercase().as_str())
    {
        return Err(RpcError::new(
            codes::INVALID_PARAMETER,
            "Invalid estimate_mode parameter, must be one of: \"unset\", \"economical\", \"conservative\"",
        ));
    }
    Ok(match node.fee_estimate(target) {
        // BTC per kvB: sat/kvB over 10^8.
        Some((blocks, sat_per_kvb)) => {
            json!({ "feerate": decode::btc(Amount::from_sat(sat_per_kvb)), "blocks": blocks })
        }
        None => json!({ "errors": ["Insufficient data or no feerate found"], "blocks": 0 }),
    })
}

fn mempool_entry(node: &Node, params: &[Value]) -> Result<Value, RpcError> {
    let txid: Txid = hash_param(params, 0, "getmempoolentry", "parameter 1")?;
    mempool_entry_json(node, &txid)
        .ok_or_else(|| RpcError::new(codes::INVALID_ADDRESS_OR_KEY, "Transaction not in mempool"))
}

fn tx_out(node: &Node, params: &[Value]) -> Result<Value, RpcError> {
    let txid: Txid = hash_param(params, 0, "gettxout", "txid")?;
    let vout = u32::try_from(u64_param(params, 1, "gettxout")?).unwrap_or(u32::MAX);
    let include_mempool = bool_or(params, 2, true)?;
    let op = OutPoint::new(txid, vout);
    let best = node.chain().tip().block_hash().to_string();
    let tip = node.chain().tip_height();
    if let Some(coin) = node.chain().utxos().get(&op) {
        if include_mempool && node.mempool().spender(&op).is_some() {
            return Ok(Value::Null);
        }
        return Ok(json!({
            "bestblock": best,
            "confirmations": tip - coin.height + 1,
            "value": decode::btc(coin.output.value),
            "scriptPubKey": decode::script_pubkey(&coin.output.script_pubkey),
            "coinbase": coin.is_coinbase,
        }));
    }
    if include_mempool
        && node.mempool().spender(&op).is_none()
        && let Some(out) = node.mempool().output(&op)
    {
        return Ok(json!({
            "bestblock": best,
            "confirmations": 0,
            "value": decode::btc(out.value),
            "scriptPubKey": decode::script_pubkey(&out.script_pubkey),
            "coinbase": false,
        }));
    }
    Ok(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_method_is_method_not_found() {
        let mut node = Node::new("t").expect("node");
        let e = dispatch(&mut node, "nosuch", &[]).expect_err("unknown");
        assert_eq!(e.code, codes::METHOD_NOT_FOUND);
    }

    #[test]
    fn block_hash_out_of_range_is_invalid_parameter() {
        let mut node = Node::new("t").expect("node");
        let e = dispatch(&mut node, "getblockhash", &[json!(5)]).expect_err("range");
        assert_eq!(e.code, codes::INVALID_PARAMETER);
        assert_eq!(e.message, "Block height out of range");
    }
}
