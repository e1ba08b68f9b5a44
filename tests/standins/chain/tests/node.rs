//! The node in-process (no HTTP): subsidy halving, and BIP68 time-based
//! relative locks measured against median time past.

use bitcoin::{
    Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness, absolute, transaction,
};
use chain_standin::node::Node;
use chain_standin::validation::Reject;
use chain_standin::wallet::Wallet;

fn spend(wallet: &Wallet, outpoint: OutPoint, value: Amount, sequence: Sequence) -> Transaction {
    let mut tx = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: outpoint,
            script_sig: ScriptBuf::new(),
            sequence,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: value - Amount::from_sat(1_000),
            script_pubkey: wallet.script_pubkey(),
        }],
    };
    wallet.sign(&mut tx, &[value]).expect("sign");
    tx
}

#[test]
fn subsidy_halves_at_height_150() {
    let mut node = Node::new("halving").expect("node");
    node.mine(151, None).expect("mine");
    let coinbase_value =
        |h: u32| node.chain().block_at(h).expect("block").txdata[0].output[0].value;
    assert_eq!(coinbase_value(149), Amount::from_sat(5_000_000_000));
    assert_eq!(coinbase_value(150), Amount::from_sat(2_500_000_000));
}

#[test]
fn time_based_relative_lock_waits_for_median_time_past() {
    let mut node = Node::new("bip68 time").expect("node");
    let wallet = Wallet::from_seed("bip68 time").expect("same key as the node's");
    node.mine(101, None).expect("mine");
    let coinbase = node.chain().block_at(1).expect("block 1").txdata[0].clone();
    let parent = spend(
        &wallet,
        OutPoint::new(coinbase.compute_txid(), 0),
        coinbase.output[0].value,
        Sequence::ENABLE_LOCKTIME_NO_RBF,
    );
    let parent_txid = node.submit(parent.clone()).expect("parent");
    node.mine(1, None).expect("confirm parent at 102");
    // One 512-second unit: spendable once MTP(tip) > MTP(101) + 511.
    let child = spend(
        &wallet,
        OutPoint::new(parent_txid, 0),
        parent.output[0].value,
        Sequence::from_512_second_intervals(1),
    );
    let base = node.chain().median_time_past(101);
    let mut refusals = 0;
    loop {
        let tip_mtp = node.chain().median_time_past(node.chain().tip_height());
        match node.submit(child.clone()) {
            Ok(_) => {
                assert!(
                    tip_mtp >= base + 512,
                    "accepted early: {tip_mtp} < {base} + 512"
                );
                break;
            }
            Err(Reject::Rejected(reason)) => {
                assert_eq!(reason, "non-BIP68-final");
                assert!(
                    tip_mtp < base + 512,
                    "refused late: {tip_mtp} >= {base} + 512"
                );
                refusals += 1;
            }
            Err(other) => panic!("unexpected refusal {other}"),
        }
        assert!(refusals < 5_000, "median time past never advanced");
        node.mine(1, None).expect("mine");
    }
    assert!(refusals > 0, "the lock was never tested before it expired");
}
