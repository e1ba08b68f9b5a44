//! Esplora's JSON shapes (as esplora-client's `Tx`, `BlockInfo`, `TxStatus`,
//! `OutputStatus` read them), built from the node's state.

use bitcoin::{Address, Block, BlockHash, Network, OutPoint, Script, Transaction, TxOut, Txid};
use serde_json::{Value, json};

use crate::node::Node;

/// Esplora's name for an output script's type.
pub fn script_type(script: &Script) -> &'static str {
    if script.is_p2pkh() {
        "p2pkh"
    } else if script.is_p2sh() {
        "p2sh"
    } else if script.is_p2wpkh() {
        "v0_p2wpkh"
    } else if script.is_p2wsh() {
        "v0_p2wsh"
    } else if script.is_p2tr() {
        "v1_p2tr"
    } else if script.is_op_return() {
        "op_return"
    } else if script.is_p2pk() {
        "p2pk"
    } else if script.is_empty() {
        "empty"
    } else if script.is_multisig() {
        "multisig"
    } else {
        "unknown"
    }
}

/// An output as Esplora shows it in `vout` and `vin[].prevout`.
pub fn output(out: &TxOut) -> Value {
    let mut value = json!({
        "scriptpubkey": out.script_pubkey.to_hex_string(),
        "scriptpubkey_asm": out.script_pubkey.to_asm_string(),
        "scriptpubkey_type": script_type(&out.script_pubkey),
        "value": out.value.to_sat(),
    });
    if let Ok(address) = Address::from_script(&out.script_pubkey, Network::Regtest) {
        value["scriptpubkey_address"] = json!(address.to_string());
    }
    value
}

/// A transaction's status: confirmed with block fields, or `{"confirmed": false}`.
pub fn status(node: &Node, txid: &Txid) -> Value {
    match node.confirmation(txid) {
        Some((height, hash, time)) => json!({
            "confirmed": true,
            "block_height": height,
            "block_hash": hash.to_string(),
            "block_time": time,
        }),
        None => json!({ "confirmed": false }),
    }
}

/// A transaction as `GET /tx/:txid` shows it.
pub fn tx(node: &Node, tx: &Transaction) -> Value {
    let txid = tx.compute_txid();
    let is_coinbase = tx.is_coinbase();
    let vin: Vec<Value> = tx
        .input
        .iter()
        .map(|input| {
            let prevout = if is_coinbase {
                Value::Null
            } else {
                node.output(&input.previous_output)
                    .map_or(Value::Null, output)
            };
            let mut v = json!({
                "txid": input.previous_output.txid.to_string(),
                "vout": input.previous_output.vout,
                "prevout": prevout,
                "scriptsig": input.script_sig.to_hex_string(),
                "scriptsig_asm": input.script_sig.to_asm_string(),
                "is_coinbase": is_coinbase,
                "sequence": input.sequence.to_consensus_u32(),
            });
            if !input.witness.is_empty() {
                v["witness"] = input
                    .witness
                    .iter()
                    .map(|w| Value::String(bitcoin::hex::DisplayHex::to_lower_hex_string(w)))
                    .collect();
            }
            if let Some(script) = input.witness.witness_script()
                && node
                    .output(&input.previous_output)
                    .is_some_and(|o| o.script_pubkey.is_p2wsh())
            {
                v["inner_witnessscript_asm"] = json!(script.to_asm_string());
            }
            v
        })
        .collect();
    json!({
        "txid": txid.to_string(),
        "version": tx.version.0,
        "locktime": tx.lock_time.to_consensus_u32(),
        "vin": vin,
        "vout": tx.output.iter().map(output).collect::<Vec<_>>(),
        "size": tx.total_size(),
        "weight": tx.weight().to_wu(),
        "fee": node.fee(&txid).map_or(0, |f| f.to_sat()),
        "status": status(node, &txid),
    })
}

/// A block as `GET /block/:hash` and `GET /blocks` show it.
pub fn block(node: &Node, block: &Block, height: u32) -> Value {
    let header = &block.header;
    let prev = (height > 0).then(|| header.prev_blockhash.to_string());
    json!({
        "id": block.block_hash().to_string(),
        "height": height,
        "version": header.version.to_consensus(),
        "timestamp": header.time,
        "tx_count": block.txdata.len(),
        "size": block.total_size(),
        "weight": block.weight().to_wu(),
        "merkle_root": header.merkle_root.to_string(),
        "previousblockhash": prev,
        "mediantime": node.chain().median_time_past(height),
        "nonce": header.nonce,
        "bits": header.bits.to_consensus(),
        // Esplora's protocol field (a ratio of targets, not an amount).
        "difficulty": header.difficulty_float(),
    })
}

/// A block's place in the chain, as `GET /block/:hash/status` shows it.
pub fn block_status(node: &Node, hash: &BlockHash) -> Option<Value> {
    if let Some(height) = node.chain().height_of(hash) {
        let next = node
            .chain()
            .block_at(height + 1)
            .map(|b| b.block_hash().to_string());
        return Some(json!({ "in_best_chain": true, "height": height, "next_best": next }));
    }
    node.chain()
        .stale(hash)
        .map(|_| json!({ "in_best_chain": false }))
}

/// Whether and where an output is spent, as `GET /tx/:txid/outspend/:vout` shows it.
pub fn outspend(node: &Node, outpoint: &OutPoint) -> Value {
    match node.spender(outpoint) {
        Some((txid, vin)) => json!({
            "spent": true,
            "txid": txid.to_string(),
            "vin": vin,
            "status": status(node, &txid),
        }),
        None => json!({ "spent": false }),
    }
}
