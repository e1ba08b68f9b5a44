//! The stand-in refuses what bitcoind refuses, with bitcoind's reasons and
//! codes, through Esplora's `POST /tx`: each test is an attack a custody bug
//! (or a malicious counterparty) could make.

mod common;

use bitcoin::hashes::Hash;
use bitcoin::opcodes::all::{OP_CHECKSIG, OP_CSV, OP_DROP};
use bitcoin::script::Builder;
use bitcoin::secp256k1::ecdsa;
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, TxOut, Txid, Witness, absolute};
use chain_standin::spawn::{ControlClientError, StandIn};
use common::{Key, coinbase_at, spend, unsigned};

/// A stand-in whose first 101 coinbases pay `key` (so heights 1 and 2 are mature).
async fn funded(key: &Key) -> StandIn {
    let stand_in = common::start(0);
    stand_in
        .control()
        .mine_to(101, &key.address())
        .await
        .expect("mine");
    stand_in
}

/// The refusal's text (`sendrawtransaction RPC error: {"code":..,"message":..}`).
async fn refused(stand_in: &StandIn, tx: &bitcoin::Transaction) -> String {
    match stand_in.control().broadcast(tx).await {
        Err(ControlClientError::Refused { status, message }) => {
            assert_eq!(status, 400, "{message}");
            message
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_signature_is_refused_by_the_script_interpreter() {
    let key = Key::new(1);
    let stand_in = funded(&key).await;
    let (coin, value) = coinbase_at(&stand_in, 1).await;
    let mut tx = spend(&key, coin, value, key.script());
    // Flip one bit inside the DER signature's S value.
    let mut sig = tx.input[0].witness.nth(0).expect("signature").to_vec();
    sig[60] ^= 1;
    let pubkey = tx.input[0].witness.nth(1).expect("pubkey").to_vec();
    tx.input[0].witness = Witness::from_slice(&[sig, pubkey]);
    let message = refused(&stand_in, &tx).await;
    assert!(
        message.contains("mandatory-script-verify-flag-failed"),
        "{message}"
    );
    assert!(message.contains("\"code\":-26"), "{message}");

    // A signature by another key over the right sighash fails the same way.
    let other = Key::new(2);
    let mut tx = spend(&key, coin, value, key.script());
    let sig = other.sign_input(&tx, 0, value);
    let mut witness = key.witness(sig);
    tx.input[0].witness = std::mem::take(&mut witness);
    let message = refused(&stand_in, &tx).await;
    assert!(
        message.contains("mandatory-script-verify-flag-failed"),
        "{message}"
    );

    // The honest spend is accepted: the refusals were about the signatures.
    let tx = spend(&key, coin, value, key.script());
    let txid = stand_in
        .control()
        .broadcast(&tx)
        .await
        .expect("valid spend");
    assert_eq!(txid, tx.compute_txid());
}

/// The curve order n; n - s is the high-S twin of a low-S signature.
const CURVE_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
];

fn high_s(sig: ecdsa::Signature) -> ecdsa::Signature {
    let compact = sig.serialize_compact();
    let mut s = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(CURVE_ORDER[i]) - i16::from(compact[32 + i]) - borrow;
        borrow = i16::from(d < 0);
        s[i] = u8::try_from((d + 256) % 256).expect("a byte");
    }
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(&compact[..32]);
    out[32..].copy_from_slice(&s);
    ecdsa::Signature::from_compact(&out).expect("valid compact signature")
}

#[tokio::test]
async fn high_s_signature_is_refused_as_non_canonical() {
    // libbitcoinconsensus accepts high S (it is policy, not consensus); an HSM
    // returns it half the time, and bitcoind would not relay it.
    let key = Key::new(1);
    let stand_in = funded(&key).await;
    let (coin, value) = coinbase_at(&stand_in, 1).await;
    let mut tx = spend(&key, coin, value, key.script());
    let sig = key.sign_input(&tx, 0, value);
    tx.input[0].witness = key.witness(high_s(sig));
    let message = refused(&stand_in, &tx).await;
    assert!(
        message.contains("non-mandatory-script-verify-flag (Non-canonical signature: S value is unnecessarily high)"),
        "{message}"
    );
}

#[tokio::test]
async fn double_spends_of_mempool_and_chain_outputs_are_refused() {
    let key = Key::new(1);
    let stand_in = funded(&key).await;
    let (coin, value) = coinbase_at(&stand_in, 1).await;
    let first = spend(&key, coin, value, key.script());
    stand_in
        .control()
        .broadcast(&first)
        .await
        .expect("first spend");
    // Same input, different output: a conflict with the mempool.
    let second = spend(&key, coin, value, Key::new(3).script());
    let message = refused(&stand_in, &second).await;
    assert!(message.contains("txn-mempool-conflict"), "{message}");
    assert!(message.contains("\"code\":-26"), "{message}");

    stand_in.control().mine(1).await.expect("mine");
    // Once the first spend is confirmed the output is gone: missing inputs (-25).
    let message = refused(&stand_in, &second).await;
    assert!(
        message.contains("bad-txns-inputs-missingorspent"),
        "{message}"
    );
    assert!(message.contains("\"code\":-25"), "{message}");
    // The confirmed transaction itself, sent again: already in the chain (-27).
    let message = refused(&stand_in, &first).await;
    assert!(message.contains("\"code\":-27"), "{message}");
}

#[tokio::test]
async fn immature_coinbase_spend_is_refused() {
    let key = Key::new(1);
    let stand_in = funded(&key).await;
    // Height 3's coinbase at tip 101: the next block is 99 deep, one short.
    let (coin, value) = coinbase_at(&stand_in, 3).await;
    let tx = spend(&key, coin, value, key.script());
    let message = refused(&stand_in, &tx).await;
    assert!(
        message
            .contains("bad-txns-premature-spend-of-coinbase, tried to spend coinbase at depth 99"),
        "{message}"
    );
    // One block later it is mature.
    stand_in.control().mine(1).await.expect("mine");
    stand_in.control().broadcast(&tx).await.expect("mature now");
}

#[tokio::test]
async fn missing_input_is_refused() {
    let key = Key::new(1);
    let stand_in = funded(&key).await;
    let made_up = OutPoint::new(Txid::hash(b"no such transaction"), 0);
    let tx = spend(&key, made_up, Amount::from_sat(100_000), key.script());
    let message = refused(&stand_in, &tx).await;
    assert!(
        message.contains("bad-txns-inputs-missingorspent"),
        "{message}"
    );
}

#[tokio::test]
async fn non_final_and_dust_and_overspend_are_refused() {
    let key = Key::new(1);
    let stand_in = funded(&key).await;
    let (coin, value) = coinbase_at(&stand_in, 1).await;

    // Absolute lock time above the next block.
    let mut tx = unsigned(
        &[coin],
        vec![TxOut {
            value: value - Amount::from_sat(1_000),
            script_pubkey: key.script(),
        }],
    );
    tx.lock_time = absolute::LockTime::from_height(110).expect("height");
    key.sign(&mut tx, &[value]);
    let message = refused(&stand_in, &tx).await;
    assert!(message.contains("\"message\":\"non-final\""), "{message}");

    // An output below the P2WPKH dust threshold (294 sat).
    let mut tx = unsigned(
        &[coin],
        vec![
            TxOut {
                value: Amount::from_sat(293),
                script_pubkey: Key::new(4).script(),
            },
            TxOut {
                value: value - Amount::from_sat(10_000),
                script_pubkey: key.script(),
            },
        ],
    );
    key.sign(&mut tx, &[value]);
    let message = refused(&stand_in, &tx).await;
    assert!(message.contains("\"message\":\"dust\""), "{message}");

    // Outputs above inputs.
    let mut tx = unsigned(
        &[coin],
        vec![TxOut {
            value: value + Amount::from_sat(1),
            script_pubkey: key.script(),
        }],
    );
    key.sign(&mut tx, &[value]);
    let message = refused(&stand_in, &tx).await;
    assert!(message.contains("bad-txns-in-belowout"), "{message}");

    // Undecodable hex.
    let response = reqwest::Client::new()
        .post(format!("{}/tx", stand_in.esplora_url()))
        .body("00zz")
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 400);
    assert!(
        response
            .text()
            .await
            .expect("body")
            .contains("TX decode failed")
    );
}

/// `<n> OP_CSV OP_DROP <key> OP_CHECKSIG`: the shape of a recovery path's `older(n)`.
fn csv_script(key: &Key, n: u16) -> ScriptBuf {
    Builder::new()
        .push_int(i64::from(n))
        .push_opcode(OP_CSV)
        .push_opcode(OP_DROP)
        .push_key(&bitcoin::PublicKey::new(key.public()))
        .push_opcode(OP_CHECKSIG)
        .into_script()
}

#[tokio::test]
async fn relative_lock_time_is_enforced_by_script_and_by_bip68() {
    let key = Key::new(1);
    let stand_in = funded(&key).await;
    let (coin, value) = coinbase_at(&stand_in, 1).await;
    let witness_script = csv_script(&key, 5);
    let locked = ScriptBuf::new_p2wsh(&witness_script.wscript_hash());
    let lock_tx = spend(&key, coin, value, locked.clone());
    let lock_txid = stand_in.control().broadcast(&lock_tx).await.expect("lock");
    stand_in.control().mine(1).await.expect("confirm");
    let locked_value = lock_tx.output[0].value;

    let spend_with_sequence = |sequence: Sequence| {
        let mut tx = unsigned(
            &[OutPoint::new(lock_txid, 0)],
            vec![TxOut {
                value: locked_value - Amount::from_sat(1_000),
                script_pubkey: key.script(),
            }],
        );
        tx.input[0].sequence = sequence;
        let sighash = SighashCache::new(&tx)
            .p2wsh_signature_hash(0, &witness_script, locked_value, EcdsaSighashType::All)
            .expect("sighash");
        let sig = key.sign_digest(sighash.to_byte_array());
        let sig = bitcoin::ecdsa::Signature {
            signature: sig,
            sighash_type: EcdsaSighashType::All,
        };
        tx.input[0].witness = Witness::from_slice(&[sig.to_vec(), witness_script.to_bytes()]);
        tx
    };

    // nSequence 5 satisfies the script, but the output is 1 block deep: BIP68
    // (checked before scripts, as Bitcoin Core does).
    let good = spend_with_sequence(Sequence::from_height(5));
    let message = refused(&stand_in, &good).await;
    assert!(message.contains("non-BIP68-final"), "{message}");
    stand_in.control().mine(3).await.expect("mine");
    let message = refused(&stand_in, &good).await;
    assert!(
        message.contains("non-BIP68-final"),
        "one block short: {message}"
    );
    stand_in.control().mine(1).await.expect("mine");

    // Deep enough now, but nSequence 4 is below the script's 5: OP_CSV fails.
    let message = refused(&stand_in, &spend_with_sequence(Sequence::from_height(4))).await;
    assert!(
        message.contains("mandatory-script-verify-flag-failed"),
        "{message}"
    );

    stand_in
        .control()
        .broadcast(&good)
        .await
        .expect("lock satisfied");
}
