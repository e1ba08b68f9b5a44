//! The bitcoind JSON-RPC face: the methods a block-based chain source calls,
//! answered from the same node as Esplora, with Bitcoin Core's error codes.

mod common;

use std::str::FromStr;

use bitcoin::consensus::encode::{deserialize_hex, serialize_hex};
use bitcoin::{Amount, Block, BlockHash, Network, Transaction, Txid, block};
use chain_standin::spawn::StandIn;
use common::{Key, coinbase_at, spend};
use serde_json::{Value, json};

/// One JSON-RPC 1.0 call: (HTTP status, reply).
async fn call(stand_in: &StandIn, method: &str, params: Value) -> (u16, Value) {
    let (user, password) = stand_in.rpc_credentials();
    let response = reqwest::Client::new()
        .post(stand_in.rpc_url())
        .basic_auth(user, Some(password))
        .json(&json!({ "jsonrpc": "1.0", "id": "t", "method": method, "params": params }))
        .send()
        .await
        .expect("rpc request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json reply"))
}

async fn ok(stand_in: &StandIn, method: &str, params: Value) -> Value {
    let (status, reply) = call(stand_in, method, params).await;
    assert_eq!(status, 200, "{method}: {reply}");
    assert!(reply["error"].is_null(), "{method}: {reply}");
    reply["result"].clone()
}

async fn err(stand_in: &StandIn, method: &str, params: Value) -> (u16, i64, String) {
    let (status, reply) = call(stand_in, method, params).await;
    assert!(reply["result"].is_null(), "{method}: {reply}");
    let code = reply["error"]["code"].as_i64().expect("error code");
    let message = reply["error"]["message"]
        .as_str()
        .expect("message")
        .to_string();
    (status, code, message)
}

#[tokio::test]
async fn chain_methods_answer_as_bitcoind() {
    let stand_in = common::start(105);
    let info = ok(&stand_in, "getblockchaininfo", json!([])).await;
    assert_eq!(info["chain"], "regtest");
    assert_eq!(info["blocks"], 105);
    assert_eq!(info["chainwork"].as_str().map(str::len), Some(64));
    assert_eq!(ok(&stand_in, "getblockcount", json!([])).await, 105);
    let best = ok(&stand_in, "getbestblockhash", json!([])).await;
    let esplora_tip = stand_in.control().tip().await.expect("tip").hash;
    assert_eq!(best, esplora_tip.to_string());
    let genesis = ok(&stand_in, "getblockhash", json!([0])).await;
    assert_eq!(
        genesis,
        bitcoin::constants::genesis_block(Network::Regtest)
            .block_hash()
            .to_string()
    );

    let h104 = ok(&stand_in, "getblockhash", json!([104])).await;
    let h104 = h104.as_str().expect("hash");
    let header = ok(&stand_in, "getblockheader", json!([h104, true])).await;
    assert_eq!(header["height"], 104);
    assert_eq!(header["confirmations"], 2);
    assert_eq!(header["nextblockhash"], best);
    assert_eq!(header["bits"], "207fffff");
    let raw_header = ok(&stand_in, "getblockheader", json!([h104, false])).await;
    let decoded: block::Header =
        deserialize_hex(raw_header.as_str().expect("hex")).expect("header");
    assert_eq!(decoded.block_hash().to_string(), h104);
    assert_eq!(
        header["previousblockhash"],
        decoded.prev_blockhash.to_string()
    );

    let raw_block = ok(&stand_in, "getblock", json!([h104, 0])).await;
    let decoded: Block = deserialize_hex(raw_block.as_str().expect("hex")).expect("block");
    assert_eq!(decoded.block_hash().to_string(), h104);
    assert!(decoded.check_merkle_root());
    let verbose = ok(&stand_in, "getblock", json!([h104, 1])).await;
    assert_eq!(
        verbose["tx"][0],
        decoded.txdata[0].compute_txid().to_string()
    );
    assert_eq!(verbose["nTx"], 1);
    let full = ok(&stand_in, "getblock", json!([h104])).await;
    assert_eq!(full["hash"], h104);
    let with_txs = ok(&stand_in, "getblock", json!([h104, 2])).await;
    assert!(with_txs["tx"][0]["vin"][0]["coinbase"].is_string());

    // Errors: codes and messages as Bitcoin Core.
    assert_eq!(
        err(&stand_in, "getblockhash", json!([106])).await,
        (500, -8, "Block height out of range".into())
    );
    let unknown = "00".repeat(32);
    assert_eq!(
        err(&stand_in, "getblockheader", json!([unknown])).await,
        (500, -5, "Block not found".into())
    );
    let (_, code, _) = err(&stand_in, "getblock", json!(["xyz"])).await;
    assert_eq!(code, -8);
    let (_, code, _) = err(&stand_in, "getblockhash", json!(["one"])).await;
    assert_eq!(code, -3);
    assert_eq!(
        err(&stand_in, "nosuchmethod", json!([])).await,
        (404, -32601, "Method not found".into())
    );
}

#[tokio::test]
async fn mempool_transaction_and_fee_methods() {
    let key = Key::new(1);
    let stand_in = common::start(0);
    stand_in
        .control()
        .mine_to(101, &key.address())
        .await
        .expect("mine");
    let (coin, value) = coinbase_at(&stand_in, 1).await;
    let tx = spend(&key, coin, value, key.script());
    let txid = ok(&stand_in, "sendrawtransaction", json!([serialize_hex(&tx)])).await;
    assert_eq!(txid, tx.compute_txid().to_string());
    // Sent again while in the mempool: accepted without change, as bitcoind.
    assert_eq!(
        ok(&stand_in, "sendrawtransaction", json!([serialize_hex(&tx)])).await,
        txid
    );

    assert_eq!(
        ok(&stand_in, "getrawmempool", json!([])).await,
        json!([txid])
    );
    let verbose = ok(&stand_in, "getrawmempool", json!([true])).await;
    assert_eq!(
        verbose[txid.as_str().expect("txid")]["fees"]["base"],
        json!(0.00001)
    );
    let entry = ok(&stand_in, "getmempoolentry", json!([txid])).await;
    assert_eq!(entry["ancestorcount"], 1);
    assert_eq!(entry["vsize"], tx.vsize());
    assert_eq!(entry["wtxid"], tx.compute_wtxid().to_string());

    let hex = ok(&stand_in, "getrawtransaction", json!([txid])).await;
    let decoded: Transaction = deserialize_hex(hex.as_str().expect("hex")).expect("tx");
    assert_eq!(decoded, tx);
    let verbose = ok(&stand_in, "getrawtransaction", json!([txid, true])).await;
    assert_eq!(
        verbose["vout"][0]["value"],
        json!((value - Amount::from_sat(1_000)).to_btc())
    );
    assert!(verbose.get("blockhash").is_none());

    // gettxout: the spent coinbase is gone (mempool included), the new output is there.
    let spent = ok(&stand_in, "gettxout", json!([coin.txid.to_string(), 0])).await;
    assert!(spent.is_null());
    let confirmed_view = ok(
        &stand_in,
        "gettxout",
        json!([coin.txid.to_string(), 0, false]),
    )
    .await;
    assert_eq!(confirmed_view["coinbase"], true);
    let out = ok(&stand_in, "gettxout", json!([txid, 0])).await;
    assert_eq!(out["confirmations"], 0);
    assert_eq!(out["scriptPubKey"]["type"], "witness_v0_keyhash");

    let mined = stand_in.control().mine(1).await.expect("mine");
    let verbose = ok(&stand_in, "getrawtransaction", json!([txid, true])).await;
    assert_eq!(verbose["blockhash"], mined.hashes[0].to_string());
    assert_eq!(verbose["confirmations"], 1);
    assert!(verbose.get("in_active_chain").is_none());
    let in_block = ok(
        &stand_in,
        "getrawtransaction",
        json!([txid, true, mined.hashes[0].to_string()]),
    )
    .await;
    assert_eq!(in_block["in_active_chain"], true);
    let genesis = ok(&stand_in, "getblockhash", json!([0])).await;
    let (_, code, _) = err(&stand_in, "getrawtransaction", json!([txid, true, genesis])).await;
    assert_eq!(code, -5);
    assert_eq!(ok(&stand_in, "getrawmempool", json!([])).await, json!([]));
    let (_, code, message) = err(&stand_in, "getmempoolentry", json!([txid])).await;
    assert_eq!((code, message.as_str()), (-5, "Transaction not in mempool"));
    let missing = Txid::from_str(&"11".repeat(32)).expect("txid");
    let (_, code, _) = err(&stand_in, "getrawtransaction", json!([missing.to_string()])).await;
    assert_eq!(code, -5);

    // sendrawtransaction's refusals: -22 undecodable, -25 missing or spent
    // inputs, -26 rejected, -27 already in the chain.
    let (_, code, _) = err(&stand_in, "sendrawtransaction", json!(["00"])).await;
    assert_eq!(code, -22);
    let other = spend(&key, coin, value, Key::new(2).script());
    let (_, code, message) = err(
        &stand_in,
        "sendrawtransaction",
        json!([serialize_hex(&other)]),
    )
    .await;
    assert_eq!(
        (code, message.as_str()),
        (-25, "bad-txns-inputs-missingorspent")
    );
    let (_, code, _) = err(&stand_in, "sendrawtransaction", json!([serialize_hex(&tx)])).await;
    assert_eq!(code, -27);
    let (c2, v2) = coinbase_at(&stand_in, 2).await;
    let mut bad = spend(&key, c2, v2, key.script());
    bad.input[0].witness = bitcoin::Witness::new();
    let (_, code, message) = err(
        &stand_in,
        "sendrawtransaction",
        json!([serialize_hex(&bad)]),
    )
    .await;
    assert_eq!(code, -26);
    assert!(
        message.starts_with("mandatory-script-verify-flag-failed"),
        "{message}"
    );

    // estimatesmartfee: BTC/kvB of the nearest target at or above the request.
    let rates = std::collections::BTreeMap::from([
        (2u16, bitcoin::FeeRate::from_sat_per_vb(20).expect("rate")),
        (10, bitcoin::FeeRate::from_sat_per_vb(5).expect("rate")),
    ]);
    stand_in
        .control()
        .set_fee_estimates(&rates)
        .await
        .expect("set");
    let fee = ok(&stand_in, "estimatesmartfee", json!([6])).await;
    assert_eq!(fee, json!({ "feerate": 0.00005, "blocks": 10 }));
    let fee = ok(&stand_in, "estimatesmartfee", json!([1, "conservative"])).await;
    assert_eq!(fee, json!({ "feerate": 0.0002, "blocks": 2 }));
    let (_, code, _) = err(&stand_in, "estimatesmartfee", json!([0])).await;
    assert_eq!(code, -8);
}

#[tokio::test]
async fn auth_versions_and_batches() {
    let stand_in = common::start(1);
    let http = reqwest::Client::new();
    let body = json!({ "jsonrpc": "1.0", "id": 1, "method": "getblockcount", "params": [] });

    // No credentials, or wrong ones: 401 and nothing else.
    let response = http
        .post(stand_in.rpc_url())
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let response = http
        .post(stand_in.rpc_url())
        .basic_auth("standin", Some("wrong"))
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 401);

    // JSON-RPC 2.0: errors answer 200, with `error` and without `result`.
    let (user, password) = stand_in.rpc_credentials();
    let response = http
        .post(stand_in.rpc_url())
        .basic_auth(user, Some(password))
        .json(&json!({ "jsonrpc": "2.0", "id": 7, "method": "getblockhash", "params": [9] }))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 200);
    let reply: Value = response.json().await.expect("json");
    assert_eq!(reply["error"]["code"], -8);
    assert!(reply.get("result").is_none());
    assert_eq!(reply["id"], 7);

    // A batch: one reply per request, in order.
    let response = http
        .post(stand_in.rpc_url())
        .basic_auth(user, Some(password))
        .json(&json!([
            { "jsonrpc": "2.0", "id": 1, "method": "getblockcount" },
            { "jsonrpc": "2.0", "id": 2, "method": "getbestblockhash" },
        ]))
        .send()
        .await
        .expect("post");
    let replies: Value = response.json().await.expect("json");
    assert_eq!(replies[0]["result"], 1);
    let best = BlockHash::from_str(replies[1]["result"].as_str().expect("hash")).expect("hash");
    assert_eq!(best, stand_in.control().tip().await.expect("tip").hash);
}
