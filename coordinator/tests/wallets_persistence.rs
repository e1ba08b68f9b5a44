//! bdk wallets persisted as changesets in PostgreSQL: a round trip through the database, two
//! handles writing one wallet, a reorg replacing a block.
#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod wallets_common;

use std::sync::Arc;

use bdk_wallet::bitcoin::block::{Header, Version as BlockVersion};
use bdk_wallet::bitcoin::blockdata::constants::genesis_block;
use bdk_wallet::bitcoin::hashes::Hash;
use bdk_wallet::bitcoin::{
    Amount, Block, BlockHash, CompactTarget, Network, OutPoint, ScriptBuf, Sequence, Transaction,
    TxIn, TxMerkleNode, TxOut, Txid, Witness, absolute, transaction,
};
use coordinator::chain::{BlockId, ChainBlock};
use wallets_common::{account, hot_wallet, scratch};

fn pay(to: ScriptBuf, sats: u64, seed: u8) -> Transaction {
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(Txid::from_byte_array([seed; 32]), 0),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(sats),
            script_pubkey: to,
        }],
    }
}

fn block(height: u32, prev: BlockHash, txs: Vec<Transaction>, salt: u32) -> ChainBlock {
    let mut block = Block {
        header: Header {
            version: BlockVersion::TWO,
            prev_blockhash: prev,
            merkle_root: TxMerkleNode::all_zeros(),
            time: 1_700_000_000 + height * 600 + salt,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: 0,
        },
        txdata: txs,
    };
    block.header.merkle_root = block
        .compute_merkle_root()
        .unwrap_or(TxMerkleNode::all_zeros());
    ChainBlock {
        height,
        block: Arc::new(block),
    }
}

fn genesis() -> BlockId {
    BlockId {
        height: 0,
        hash: genesis_block(Network::Regtest).block_hash(),
    }
}

#[tokio::test]
async fn a_wallet_comes_back_from_postgres_as_it_was() {
    let (_db, pool) = scratch().await;
    let (wallets, hot) = hot_wallet(&pool).await;
    let alice = account(&pool).await;
    let a = wallets.current_address(hot.id, alice).await.unwrap();
    let b = wallets.reveal_address_for(hot.id, alice).await.unwrap();

    let wallet = wallets.open(hot.id).await.unwrap();
    let b1 = block(
        1,
        genesis().hash,
        vec![pay(a.script_pubkey.clone(), 50_000, 1)],
        0,
    );
    wallet.apply_block(&b1, genesis()).await.unwrap();
    let b2 = block(
        2,
        b1.id().hash,
        vec![pay(b.script_pubkey.clone(), 7_000, 2)],
        0,
    );
    wallet.apply_block(&b2, b1.id()).await.unwrap();
    let unconfirmed = pay(a.script_pubkey.clone(), 1_000, 3);
    wallet
        .apply_unconfirmed(vec![(Arc::new(unconfirmed), 1_700_000_000)])
        .await
        .unwrap();

    assert_eq!(wallet.utxo_total().await.unwrap(), Amount::from_sat(58_000));
    let reopened = wallets.open(hot.id).await.unwrap();
    assert_eq!(reopened.tip().await, b2.id());
    assert_eq!(reopened.balance().await, wallet.balance().await);
    assert_eq!(reopened.balance().await.confirmed, Amount::from_sat(57_000));
    assert_eq!(
        reopened.balance().await.unconfirmed,
        Amount::from_sat(1_000)
    );
    assert_eq!(
        reopened.utxo_total().await.unwrap(),
        Amount::from_sat(58_000)
    );
    // bdk knows every address the book handed out.
    let revealed = reopened
        .read(|w| w.derivation_index(bdk_wallet::KeychainKind::External))
        .await;
    assert_eq!(revealed, Some(1));
}

#[tokio::test]
async fn two_handles_write_one_wallet_in_turn_and_a_stale_one_catches_up() {
    let (db, pool) = scratch().await;
    let (wallets, hot) = hot_wallet(&pool).await;
    let alice = account(&pool).await;
    // Two instances: separate pools, separate in-memory wallets.
    let other = coordinator::wallets::Wallets::new(db.pool(4).await.unwrap());
    let one = wallets.open(hot.id).await.unwrap();
    let two = other.open(hot.id).await.unwrap();

    // Revealed after both opened: neither copy knows the address yet.
    let a = wallets.current_address(hot.id, alice).await.unwrap();
    let b1 = block(
        1,
        genesis().hash,
        vec![pay(a.script_pubkey.clone(), 10_000, 1)],
        0,
    );
    one.apply_block(&b1, genesis()).await.unwrap();
    // `two` is stale (it has not seen block 1): it reloads under the lock before writing.
    let b2 = block(
        2,
        b1.id().hash,
        vec![pay(a.script_pubkey.clone(), 20_000, 2)],
        0,
    );
    two.apply_block(&b2, b1.id()).await.unwrap();
    assert_eq!(two.utxo_total().await.unwrap(), Amount::from_sat(30_000));

    let third = wallets.open(hot.id).await.unwrap();
    assert_eq!(third.tip().await, b2.id());
    assert_eq!(third.utxo_total().await.unwrap(), Amount::from_sat(30_000));

    // Both at once, many times: every write lands, in some order, none lost.
    let one = Arc::new(one);
    let two = Arc::new(two);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20u8 {
        let w = if i % 2 == 0 {
            Arc::clone(&one)
        } else {
            Arc::clone(&two)
        };
        let tx = pay(a.script_pubkey.clone(), 1_000, 100 + i);
        tasks.spawn(async move {
            w.apply_unconfirmed(vec![(Arc::new(tx), 1_700_000_000 + u64::from(i))])
                .await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap().unwrap();
    }
    let last = wallets.open(hot.id).await.unwrap();
    assert_eq!(last.balance().await.unconfirmed, Amount::from_sat(20_000));
    let seqs: Vec<i64> = sqlx::query_scalar(
        "SELECT seq FROM onchain_wallet_changesets WHERE wallet_id = $1 ORDER BY seq",
    )
    .bind(hot.id.as_uuid())
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        seqs,
        (1..=i64::try_from(seqs.len()).unwrap()).collect::<Vec<_>>(),
        "one writer at a time: no gap, no duplicate"
    );
}

#[tokio::test]
async fn a_replaced_block_takes_its_transactions_out_of_the_balance() {
    let (_db, pool) = scratch().await;
    let (wallets, hot) = hot_wallet(&pool).await;
    let alice = account(&pool).await;
    let a = wallets.current_address(hot.id, alice).await.unwrap();
    let wallet = wallets.open(hot.id).await.unwrap();

    let b1 = block(
        1,
        genesis().hash,
        vec![pay(a.script_pubkey.clone(), 40_000, 1)],
        0,
    );
    wallet.apply_block(&b1, genesis()).await.unwrap();
    assert_eq!(wallet.balance().await.confirmed, Amount::from_sat(40_000));

    // Another block 1 and a block 2 without the payment: the first block 1 is gone.
    let b1x = block(1, genesis().hash, vec![], 1);
    let b2x = block(2, b1x.id().hash, vec![], 1);
    wallet.apply_block(&b1x, genesis()).await.unwrap();
    wallet.apply_block(&b2x, b1x.id()).await.unwrap();
    let reopened = wallets.open(hot.id).await.unwrap();
    assert_eq!(reopened.tip().await, b2x.id());
    assert_eq!(
        reopened.balance().await.confirmed,
        Amount::ZERO,
        "the payment's block left the chain"
    );
}
