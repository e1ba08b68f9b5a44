//! bdk_wallet full-scans a wallet through bdk_esplora against the running
//! stand-in, with no adapter: balances, confirmations, a reorg, and a script
//! with more transactions than one Esplora page.

mod common;

use bdk_esplora::EsploraAsyncExt as _;
use bdk_esplora::esplora_client::{self, AsyncClient};
use bdk_wallet::chain::ChainPosition;
use bdk_wallet::{KeychainKind, Wallet};
use bitcoin::{Address, Amount, BlockHash, Network, Txid};
use chain_standin::spawn::StandIn;

// A BIP32 test key (testnet form), only ever used on the stand-in's regtest.
const TPRV: &str = "tprv8ZgxMBicQKsPd1EzCPZcQSPhsotX5HvRDCivA7ASNQFmjWuTsW3WWEwUNKFAZrnD9qpz55rtyLdphqkwRZUqNWYXwSEzd6P4pYvXGByRim3";

fn wallet() -> Wallet {
    Wallet::create(
        format!("wpkh({TPRV}/84'/1'/0'/0/*)"),
        format!("wpkh({TPRV}/84'/1'/0'/1/*)"),
    )
    .network(Network::Regtest)
    .create_wallet_no_persist()
    .expect("wallet")
}

fn client(stand_in: &StandIn) -> AsyncClient {
    esplora_client::Builder::new(stand_in.esplora_url())
        .build_async()
        .expect("esplora client")
}

async fn scan(wallet: &mut Wallet, client: &AsyncClient) {
    let request = wallet.start_full_scan().build();
    let update = client
        .full_scan(request, 5, 4)
        .await
        .expect("full scan against the stand-in");
    wallet.apply_update(update).expect("apply update");
}

fn confirmation_height(wallet: &Wallet, txid: Txid) -> Option<u32> {
    match wallet
        .get_tx(txid)
        .expect("wallet knows the tx")
        .chain_position
    {
        ChainPosition::Confirmed { anchor, .. } => Some(anchor.block_id.height),
        ChainPosition::Unconfirmed { .. } => None,
    }
}

fn confirmations(wallet: &Wallet, txid: Txid) -> u32 {
    confirmation_height(wallet, txid).map_or(0, |h| wallet.latest_checkpoint().height() - h + 1)
}

async fn tip(stand_in: &StandIn) -> (u32, BlockHash) {
    let tip = stand_in.control().tip().await.expect("tip");
    (tip.height, tip.hash)
}

#[tokio::test]
async fn full_scan_sees_funded_addresses_with_balance_and_confirmations() {
    let stand_in = common::start(101);
    let client = client(&stand_in);
    let mut wallet = wallet();
    let first: Address = wallet.reveal_next_address(KeychainKind::External).address;
    let second: Address = wallet.reveal_next_address(KeychainKind::External).address;

    let confirmed = stand_in
        .control()
        .fund_and_mine(&first, Amount::from_sat(123_456), 1)
        .await
        .expect("fund first");
    let pending = stand_in
        .control()
        .fund(&second, Amount::from_sat(50_000))
        .await
        .expect("fund second");

    scan(&mut wallet, &client).await;
    let balance = wallet.balance();
    assert_eq!(balance.confirmed, Amount::from_sat(123_456));
    assert_eq!(balance.untrusted_pending, Amount::from_sat(50_000));
    assert_eq!(balance.immature, Amount::ZERO);
    let (height, hash) = tip(&stand_in).await;
    assert_eq!(wallet.latest_checkpoint().height(), height);
    assert_eq!(wallet.latest_checkpoint().hash(), hash);
    assert_eq!(confirmations(&wallet, confirmed.txid), 1);
    assert_eq!(confirmation_height(&wallet, pending.txid), None);

    // Two blocks: the pending payment confirms, the first reaches 3 confirmations.
    stand_in.control().mine(2).await.expect("mine");
    scan(&mut wallet, &client).await;
    assert_eq!(confirmations(&wallet, confirmed.txid), 3);
    assert_eq!(confirmations(&wallet, pending.txid), 2);
    assert_eq!(wallet.balance().confirmed, Amount::from_sat(173_456));
    // The wallet's next address is still unused, so the scan stopped past it.
    assert_eq!(
        wallet.derivation_index(KeychainKind::External),
        Some(1),
        "two addresses used"
    );
}

#[tokio::test]
async fn full_scan_follows_a_reorg() {
    let stand_in = common::start(101);
    let client = client(&stand_in);
    let mut wallet = wallet();
    let address = wallet.reveal_next_address(KeychainKind::External).address;
    let funded = stand_in
        .control()
        .fund_and_mine(&address, Amount::from_sat(80_000), 2)
        .await
        .expect("fund");
    scan(&mut wallet, &client).await;
    assert_eq!(confirmation_height(&wallet, funded.txid), Some(102));
    let (_, old_tip) = tip(&stand_in).await;

    let old_block = client.get_block_hash(102).await.expect("block 102");

    // Both blocks go: the payment is back in the mempool (Esplora says so).
    // bdk keeps its checkpoints above the new tip until a longer branch
    // replaces them, as it does against a real Esplora.
    let invalidated = stand_in.control().invalidate(2).await.expect("invalidate");
    assert!(invalidated.returned_to_mempool.contains(&funded.txid));
    let status = client.get_tx_status(&funded.txid).await.expect("status");
    assert!(!status.confirmed);
    assert_eq!(client.get_height().await.expect("height"), 101);

    // A longer branch confirms it again, in a different block at the same height.
    stand_in.control().mine(3).await.expect("new branch");
    scan(&mut wallet, &client).await;
    let (height, new_tip) = tip(&stand_in).await;
    assert_eq!(height, 104);
    assert_ne!(new_tip, old_tip);
    assert_eq!(wallet.latest_checkpoint().hash(), new_tip);
    let new_block = client.get_block_hash(102).await.expect("block 102");
    assert_ne!(new_block, old_block);
    assert_eq!(
        wallet.latest_checkpoint().get(102).map(|cp| cp.hash()),
        Some(new_block)
    );
    match wallet.get_tx(funded.txid).expect("tx").chain_position {
        ChainPosition::Confirmed { anchor, .. } => assert_eq!(anchor.block_id.hash, new_block),
        other => panic!("expected confirmed on the new branch, got {other:?}"),
    }
    assert_eq!(wallet.balance().confirmed, Amount::from_sat(80_000));
}

#[tokio::test]
async fn full_scan_pages_through_a_script_with_more_than_fifty_transactions() {
    let stand_in = common::start(101);
    let client = client(&stand_in);
    let mut wallet = wallet();
    let address = wallet.reveal_next_address(KeychainKind::External).address;
    // 60 confirmed and 50 unconfirmed payments to one address: the first page
    // holds 50 mempool and 25 confirmed transactions, then 25, then 10.
    // (Esplora lists at most 50 mempool transactions per script, so a 51st
    // would not reach bdk through it: see the `esplora_api` paging test.)
    let mut expected = Amount::ZERO;
    for i in 0..110u64 {
        let amount = Amount::from_sat(10_000 + i);
        stand_in
            .control()
            .fund(&address, amount)
            .await
            .expect("fund");
        expected += amount;
        if i == 59 {
            stand_in.control().mine(1).await.expect("mine");
        }
    }
    scan(&mut wallet, &client).await;
    let balance = wallet.balance();
    assert_eq!(balance.confirmed + balance.untrusted_pending, expected);
    assert_eq!(
        balance.confirmed,
        Amount::from_sat((0..60).map(|i| 10_000 + i).sum())
    );
    assert_eq!(wallet.transactions().count(), 110);
}
