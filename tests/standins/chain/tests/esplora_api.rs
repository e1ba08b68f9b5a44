//! Esplora's API as esplora-client reads it: blocks that are real regtest
//! blocks, merkle proofs that verify, script histories paged as Esplora
//! pages them, outspends, fee estimates, and a reorg that returns
//! transactions to the mempool where they are still valid.

mod common;

use std::collections::BTreeMap;

use bdk_esplora::esplora_client::{self, AsyncClient};
use bitcoin::hashes::Hash;
use bitcoin::{Amount, CompactTarget, FeeRate, Target, TxMerkleNode};
use chain_standin::block::{REGTEST_BITS, merkle_root_from_branch};
use chain_standin::spawn::{ControlClientError, StandIn};
use common::{Key, coinbase_at, spend};

fn client(stand_in: &StandIn) -> AsyncClient {
    esplora_client::Builder::new(stand_in.esplora_url())
        .build_async()
        .expect("client")
}

#[tokio::test]
async fn blocks_are_real_regtest_blocks_and_merkle_proofs_verify() {
    let stand_in = common::start(101);
    let client = client(&stand_in);
    let mut funded = Vec::new();
    for i in 0..5u8 {
        let f = stand_in
            .control()
            .fund(&Key::new(10 + i).address(), Amount::from_sat(20_000))
            .await
            .expect("fund");
        funded.push(f.txid);
    }
    // Not yet in a block: no proof.
    assert!(
        client
            .get_merkle_proof(&funded[0])
            .await
            .expect("proof")
            .is_none()
    );
    let mined = stand_in.control().mine(1).await.expect("mine");
    let hash = mined.hashes[0];

    let block = client
        .get_block_by_hash(&hash)
        .await
        .expect("raw block")
        .expect("known block");
    assert_eq!(block.block_hash(), hash);
    assert!(block.check_merkle_root());
    assert!(block.check_witness_commitment());
    assert_eq!(block.bip34_block_height().expect("bip34 height"), 102);
    let target = Target::from_compact(CompactTarget::from_consensus(REGTEST_BITS));
    block
        .header
        .validate_pow(target)
        .expect("regtest proof of work");
    assert_eq!(
        block.header.prev_blockhash,
        client.get_block_hash(101).await.expect("parent")
    );
    assert_eq!(block.txdata.len(), 6);
    // Subsidy plus the five fees, to the stand-in's wallet.
    let fees: u64 = {
        let mut sum = 0;
        for txid in &funded {
            sum += client
                .get_tx_info(txid)
                .await
                .expect("tx")
                .expect("known")
                .fee;
        }
        sum
    };
    assert_eq!(
        block.txdata[0].output[0].value,
        Amount::from_sat(5_000_000_000 + fees)
    );

    let header = client.get_header_by_hash(&hash).await.expect("header");
    assert_eq!(header, block.header);
    let info = client.get_block_info(&hash).await.expect("info");
    assert_eq!((info.height, info.tx_count), (102, 6));
    assert_eq!(info.merkle_root, header.merkle_root);
    let status = client.get_block_status(&hash).await.expect("status");
    assert!(status.in_best_chain);
    assert_eq!(status.height, Some(102));
    let txids = client.get_block_txids(&hash).await.expect("txids");
    assert_eq!(txids.len(), 6);
    let infos = client.get_block_infos(None).await.expect("blocks");
    assert_eq!(infos.len(), 10);
    assert_eq!(infos[0].id, hash);

    for txid in &funded {
        let proof = client
            .get_merkle_proof(txid)
            .await
            .expect("proof")
            .expect("confirmed");
        assert_eq!(proof.block_height, 102);
        assert_eq!(txids[proof.pos], *txid);
        let branch: Vec<TxMerkleNode> = proof
            .merkle
            .iter()
            .map(|t| TxMerkleNode::from_raw_hash(t.to_raw_hash()))
            .collect();
        assert_eq!(
            merkle_root_from_branch(*txid, &branch, proof.pos),
            header.merkle_root
        );
        // A proof for the wrong position does not verify.
        assert_ne!(
            merkle_root_from_branch(*txid, &branch, proof.pos ^ 1),
            header.merkle_root
        );
    }
}

#[tokio::test]
async fn transactions_statuses_and_outspends() {
    let key = Key::new(1);
    let stand_in = common::start(0);
    stand_in
        .control()
        .mine_to(101, &key.address())
        .await
        .expect("mine");
    let client = client(&stand_in);
    let (coin, value) = coinbase_at(&stand_in, 1).await;
    let a = spend(&key, coin, value, key.script());
    client.broadcast(&a).await.expect("broadcast a");
    let a_out = bitcoin::OutPoint::new(a.compute_txid(), 0);
    let b = spend(&key, a_out, a.output[0].value, Key::new(2).script());
    client
        .broadcast(&b)
        .await
        .expect("broadcast b (child of a)");

    let info = client
        .get_tx_info(&a.compute_txid())
        .await
        .expect("a")
        .expect("known");
    assert_eq!(info.fee, 1_000);
    assert!(!info.status.confirmed);
    assert_eq!(info.to_tx(), a);
    assert_eq!(
        info.vin[0].prevout.as_ref().map(|p| p.value),
        Some(value.to_sat())
    );
    assert!(info.vin[0].is_coinbase.eq(&false));

    let spent = client
        .get_output_status(&coin.txid, 0)
        .await
        .expect("outspend")
        .expect("some");
    assert!(spent.spent);
    assert_eq!(spent.txid, Some(a.compute_txid()));
    assert_eq!(spent.vin, Some(0));
    let outspends = client
        .get_tx_outspends(&b.compute_txid())
        .await
        .expect("outspends");
    assert_eq!(outspends.len(), 1);
    assert!(!outspends[0].spent);

    let mined = stand_in.control().mine(1).await.expect("mine");
    let status = client
        .get_tx_status(&b.compute_txid())
        .await
        .expect("status");
    assert!(status.confirmed);
    assert_eq!(status.block_hash, Some(mined.hashes[0]));
    assert_eq!(status.block_height, Some(102));
    let raw = client
        .get_tx(&b.compute_txid())
        .await
        .expect("raw")
        .expect("known");
    assert_eq!(raw, b);
    // Unknown transactions: 404 for the transaction, "unconfirmed" for the status (as electrs).
    let unknown = bitcoin::Txid::hash(b"unknown");
    assert!(client.get_tx_info(&unknown).await.expect("info").is_none());
    assert!(
        !client
            .get_tx_status(&unknown)
            .await
            .expect("status")
            .confirmed
    );
    assert_eq!(client.get_mempool_txids().await.expect("mempool"), vec![]);
}

#[tokio::test]
async fn script_history_is_paged_as_esplora_pages_it() {
    let stand_in = common::start(101);
    let client = client(&stand_in);
    let address = Key::new(7).address();
    let script = address.script_pubkey();
    let mut confirmed = Vec::new();
    for _ in 0..30 {
        confirmed.push(
            stand_in
                .control()
                .fund(&address, Amount::from_sat(5_000))
                .await
                .expect("fund")
                .txid,
        );
    }
    stand_in.control().mine(1).await.expect("mine");
    let mut pending = Vec::new();
    for _ in 0..55 {
        pending.push(
            stand_in
                .control()
                .fund(&address, Amount::from_sat(5_000))
                .await
                .expect("fund")
                .txid,
        );
    }

    // First page: the 50 newest mempool transactions, then the 25 newest confirmed.
    let first = client
        .scripthash_txs(&script, None)
        .await
        .expect("first page");
    assert_eq!(first.len(), 75);
    let first_ids: Vec<_> = first.iter().map(|t| t.txid).collect();
    let newest_pending: Vec<_> = pending.iter().rev().take(50).copied().collect();
    assert_eq!(first_ids[..50], newest_pending[..]);
    assert!(first[..50].iter().all(|t| !t.status.confirmed));
    assert!(first[50..].iter().all(|t| t.status.confirmed));
    // Confirmed transactions newest first: same block, so in reverse block order.
    let newest_confirmed: Vec<_> = confirmed.iter().rev().take(25).copied().collect();
    assert_eq!(first_ids[50..], newest_confirmed[..]);

    // Next page after the last confirmed one seen: the remaining 5.
    let next = client
        .scripthash_txs(&script, Some(first_ids[74]))
        .await
        .expect("next page");
    let next_ids: Vec<_> = next.iter().map(|t| t.txid).collect();
    let oldest: Vec<_> = confirmed.iter().rev().skip(25).copied().collect();
    assert_eq!(next_ids, oldest);
    let after_last = client
        .scripthash_txs(&script, Some(next_ids[4]))
        .await
        .expect("end");
    assert!(after_last.is_empty());

    // The mempool listing alone, and the address form of the same history.
    let mempool = client
        .get_mempool_scripthash_txs(&script)
        .await
        .expect("mempool");
    assert_eq!(mempool.len(), 50);
    let by_address = client
        .get_address_txs(&address, None)
        .await
        .expect("address");
    assert_eq!(
        by_address.iter().map(|t| t.txid).collect::<Vec<_>>(),
        first_ids
    );
    let utxos = client.get_address_utxos(&address).await.expect("utxos");
    assert_eq!(utxos.len(), 85);
    let stats = client.get_address_stats(&address).await.expect("stats");
    assert_eq!(
        (stats.chain_stats.tx_count, stats.chain_stats.funded_txo_sum),
        (30, 150_000)
    );
    assert_eq!(
        (
            stats.mempool_stats.tx_count,
            stats.mempool_stats.funded_txo_count
        ),
        (55, 55)
    );
    assert_eq!(stats.chain_stats.spent_txo_count, 0);
    let by_hash = client.get_scripthash_stats(&script).await.expect("stats");
    assert_eq!(by_hash.chain_stats, stats.chain_stats);
}

#[tokio::test]
async fn fee_estimates_are_set_and_served() {
    let stand_in = common::start(0);
    let client = client(&stand_in);
    let estimates = BTreeMap::from([
        (1u16, FeeRate::from_sat_per_vb(25).expect("rate")),
        (6, FeeRate::from_sat_per_vb(10).expect("rate")),
        (144, FeeRate::from_sat_per_vb(2).expect("rate")),
    ]);
    stand_in
        .control()
        .set_fee_estimates(&estimates)
        .await
        .expect("set");
    let served = client.get_fee_estimates().await.expect("estimates");
    assert_eq!(served.len(), 3);
    assert_eq!(served.get(&1).copied(), Some(25.0));
    assert_eq!(served.get(&6).copied(), Some(10.0));
    assert_eq!(served.get(&144).copied(), Some(2.0));
    // A target Bitcoin Core would never answer is refused, and changes nothing.
    let bad = BTreeMap::from([(0u16, FeeRate::from_sat_per_vb(1).expect("rate"))]);
    let err = stand_in
        .control()
        .set_fee_estimates(&bad)
        .await
        .expect_err("target 0");
    assert!(
        matches!(err, ControlClientError::Refused { status: 400, .. }),
        "{err}"
    );
    assert_eq!(
        client.get_fee_estimates().await.expect("estimates").len(),
        3
    );
}

#[tokio::test]
async fn reorg_returns_still_valid_transactions_to_the_mempool() {
    let key = Key::new(1);
    let stand_in = common::start(0);
    stand_in
        .control()
        .mine_to(101, &key.address())
        .await
        .expect("mine");
    let client = client(&stand_in);
    let (coin1, value1) = coinbase_at(&stand_in, 1).await;
    let (coin2, value2) = coinbase_at(&stand_in, 2).await;
    let a = spend(&key, coin1, value1, key.script());
    let b = spend(&key, coin2, value2, key.script());
    client.broadcast(&a).await.expect("a");
    client.broadcast(&b).await.expect("b");
    let mined = stand_in.control().mine(1).await.expect("mine");
    let stale = mined.hashes[0];

    // Back to height 100: the coinbase of height 2 is one block short of
    // maturity for the next block, so `b` is dropped; `a` is still valid.
    let invalidated = stand_in.control().invalidate(2).await.expect("invalidate");
    assert_eq!(invalidated.removed.len(), 2);
    assert_eq!(invalidated.removed[0], stale);
    assert_eq!(invalidated.returned_to_mempool, vec![a.compute_txid()]);
    assert_eq!(invalidated.dropped, vec![b.compute_txid()]);
    assert_eq!(client.get_height().await.expect("height"), 100);
    assert_eq!(
        client.get_mempool_txids().await.expect("mempool"),
        vec![a.compute_txid()]
    );
    assert!(
        !client
            .get_tx_status(&a.compute_txid())
            .await
            .expect("status")
            .confirmed
    );
    assert!(
        client
            .get_tx_info(&b.compute_txid())
            .await
            .expect("b")
            .is_none()
    );
    let status = client.get_block_status(&stale).await.expect("stale status");
    assert!(!status.in_best_chain);
    // The dropped one is refused for the reason bitcoind gives.
    let err = client.broadcast(&b).await.expect_err("immature again");
    assert!(
        err.to_string()
            .contains("bad-txns-premature-spend-of-coinbase"),
        "{err}"
    );

    // Mining builds the new branch and confirms `a` in it.
    let branch = stand_in.control().mine(2).await.expect("new branch");
    assert_ne!(branch.hashes[1], stale);
    let status = client
        .get_tx_status(&a.compute_txid())
        .await
        .expect("status");
    assert_eq!(status.block_hash, Some(branch.hashes[0]));
    // Invalidating the genesis block is refused.
    let err = stand_in
        .control()
        .invalidate(103)
        .await
        .expect_err("genesis stays");
    assert!(err.to_string().contains("genesis"), "{err}");
}

#[tokio::test]
async fn fund_pays_from_matured_coinbase_only_and_several_payees_at_once() {
    let stand_in = common::start(100);
    let client = client(&stand_in);
    let (a, b) = (Key::new(21).address(), Key::new(22).address());
    // At height 100 no coinbase is mature for the next block but the first.
    stand_in.control().invalidate(1).await.expect("to 99");
    let err = stand_in
        .control()
        .fund(&a, Amount::from_sat(10_000))
        .await
        .expect_err("nothing mature");
    assert!(
        err.to_string()
            .contains("coinbase matures after 100 blocks"),
        "{err}"
    );
    stand_in.control().mine(2).await.expect("to 101");

    // Dust is refused by the same mempool rules as any transaction.
    let err = stand_in
        .control()
        .fund(&a, Amount::from_sat(100))
        .await
        .expect_err("dust");
    assert!(err.to_string().contains("dust"), "{err}");

    let funded = stand_in
        .control()
        .fund_many(
            &[
                (a.clone(), Amount::from_sat(30_000)),
                (b.clone(), Amount::from_sat(40_000)),
            ],
            1,
        )
        .await
        .expect("fund many");
    assert_eq!(funded.mined.len(), 1);
    let tx = client
        .get_tx_info(&funded.txid)
        .await
        .expect("tx")
        .expect("known");
    assert!(tx.status.confirmed);
    assert_eq!(tx.vout[0].scriptpubkey, a.script_pubkey());
    assert_eq!(tx.vout[0].value, 30_000);
    assert_eq!(tx.vout[1].scriptpubkey, b.script_pubkey());
    assert_eq!(tx.vout[1].value, 40_000);
    // The input was a matured coinbase, signed by the stand-in's own key.
    let input = tx.vin[0].prevout.as_ref().expect("prevout");
    let wallet = stand_in.control().wallet_address().await.expect("wallet");
    assert_eq!(input.scriptpubkey, wallet.script_pubkey());
}
