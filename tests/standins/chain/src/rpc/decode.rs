//! Bitcoin Core's verbose JSON for transactions, headers and blocks.
//! Amounts are BTC as JSON numbers: that is the protocol; they are made from
//! whole satoshis at the edge (every satoshi amount round-trips through f64).

use bitcoin::hex::DisplayHex;
use bitcoin::{Address, Amount, Block, Network, Script, Transaction};
use serde_json::{Value, json};

use crate::node::Node;

/// BTC as a JSON number, from an exact amount.
pub fn btc(amount: Amount) -> Value {
    json!(amount.to_btc())
}

/// Bitcoin Core's name for an output script's type.
pub fn script_type(script: &Script) -> &'static str {
    if script.is_p2pkh() {
        "pubkeyhash"
    } else if script.is_p2sh() {
        "scripthash"
    } else if script.is_p2wpkh() {
        "witness_v0_keyhash"
    } else if script.is_p2wsh() {
        "witness_v0_scripthash"
    } else if script.is_p2tr() {
        "witness_v1_taproot"
    } else if script.is_op_return() {
        "nulldata"
    } else if script.is_p2pk() {
        "pubkey"
    } else if script.is_multisig() {
        "multisig"
    } else {
        "nonstandard"
    }
}

/// `scriptPubKey` as Bitcoin Core shows it.
pub fn script_pubkey(script: &Script) -> Value {
    let mut v = json!({
        "asm": script.to_asm_string(),
        "hex": script.to_hex_string(),
        "type": script_type(script),
    });
    if let Ok(address) = Address::from_script(script, Network::Regtest) {
        v["address"] = json!(address.to_string());
    }
    v
}

/// A decoded transaction (`getrawtransaction` verbose, `getblock` verbosity 2).
pub fn tx(node: &Node, tx: &Transaction) -> Value {
    let is_coinbase = tx.is_coinbase();
    let vin: Vec<Value> = tx
        .input
        .iter()
        .map(|input| {
            let mut v = if is_coinbase {
                json!({ "coinbase": input.script_sig.to_hex_string() })
            } else {
                json!({
                    "txid": input.previous_output.txid.to_string(),
                    "vout": input.previous_output.vout,
                    "scriptSig": {
                        "asm": input.script_sig.to_asm_string(),
                        "hex": input.script_sig.to_hex_string(),
                    },
                })
            };
            if !input.witness.is_empty() {
                v["txinwitness"] = input
                    .witness
                    .iter()
                    .map(|w| Value::String(w.to_lower_hex_string()))
                    .collect();
            }
            v["sequence"] = json!(input.sequence.to_consensus_u32());
            v
        })
        .collect();
    let vout: Vec<Value> = (0u32..)
        .zip(&tx.output)
        .map(|(n, o)| {
            json!({
                "value": btc(o.value),
                "n": n,
                "scriptPubKey": script_pubkey(&o.script_pubkey),
            })
        })
        .collect();
    let mut v = json!({
        "txid": tx.compute_txid().to_string(),
        "hash": tx.compute_wtxid().to_string(),
        "version": tx.version.0,
        "size": tx.total_size(),
        "vsize": tx.vsize(),
        "weight": tx.weight().to_wu(),
        "locktime": tx.lock_time.to_consensus_u32(),
        "vin": vin,
        "vout": vout,
        "hex": bitcoin::consensus::encode::serialize_hex(tx),
    });
    if let Some(fee) = node.fee(&tx.compute_txid()).filter(|_| !is_coinbase) {
        v["fee"] = btc(fee);
    }
    v
}

/// Accumulated work up to `height` as 64 hex digits, as `chainwork`.
pub fn chainwork(node: &Node, height: u32) -> String {
    let mut work: Option<bitcoin::Work> = None;
    for h in 0..=height {
        if let Some(b) = node.chain().block_at(h) {
            let w = b.header.work();
            work = Some(work.map_or(w, |acc| acc + w));
        }
    }
    work.map_or_else(|| "0".repeat(64), |w| w.to_be_bytes().to_lower_hex_string())
}

/// Confirmations of a block at `height` (-1 for a stale block, as Bitcoin Core).
fn confirmations(node: &Node, height: u32, active: bool) -> i64 {
    if active {
        i64::from(node.chain().tip_height()) - i64::from(height) + 1
    } else {
        -1
    }
}

/// `getblockheader` verbose.
pub fn header(node: &Node, block: &Block, height: u32, active: bool) -> Value {
    let h = &block.header;
    let mut v = json!({
        "hash": block.block_hash().to_string(),
        "confirmations": confirmations(node, height, active),
        "height": height,
        "version": h.version.to_consensus(),
        "versionHex": format!("{:08x}", h.version.to_consensus()),
        "merkleroot": h.merkle_root.to_string(),
        "time": h.time,
        "mediantime": node.chain().median_time_past(height),
        "nonce": h.nonce,
        "bits": format!("{:08x}", h.bits.to_consensus()),
        // A ratio of targets (the protocol's field), not an amount.
        "difficulty": h.difficulty_float(),
        "chainwork": chainwork(node, height),
        "nTx": block.txdata.len(),
    });
    if height > 0 {
        v["previousblockhash"] = json!(h.prev_blockhash.to_string());
    }
    if active && let Some(next) = node.chain().block_at(height + 1) {
        v["nextblockhash"] = json!(next.block_hash().to_string());
    }
    v
}

/// `getblock` verbosity 1 (txids) or 2 (decoded transactions).
pub fn block(node: &Node, block: &Block, height: u32, active: bool, verbosity: u64) -> Value {
    let mut v = header(node, block, height, active);
    v["size"] = json!(block.total_size());
    // Serialized without witnesses: header, transaction count, base transactions.
    let stripped = 80
        + bitcoin::VarInt::from(block.txdata.len()).size()
        + block
            .txdata
            .iter()
            .map(Transaction::base_size)
            .sum::<usize>();
    v["strippedsize"] = json!(stripped);
    v["weight"] = json!(block.weight().to_wu());
    v["tx"] = if verbosity >= 2 {
        block.txdata.iter().map(|t| tx(node, t)).collect()
    } else {
        block
            .txdata
            .iter()
            .map(|t| Value::String(t.compute_txid().to_string()))
            .collect()
    };
    v
}
