//! Shared helpers: the stand-in process from this package's binary, a test
//! key that signs P2WPKH spends, and raw Esplora reads.

#![allow(dead_code)]

use std::str::FromStr;

use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey, ecdsa};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{
    Address, Amount, CompressedPublicKey, Network, OutPoint, ScriptBuf, Sequence, Transaction,
    TxIn, TxOut, Txid, Witness, absolute, transaction,
};
use chain_standin::spawn::{Options, StandIn};

/// Starts this package's binary with `initial_blocks` mined to its own wallet.
pub fn start(initial_blocks: u32) -> StandIn {
    StandIn::start_with(Options {
        binary: Some(env!("CARGO_BIN_EXE_regtest-standin").into()),
        initial_blocks,
        ..Options::default()
    })
    .expect("the stand-in starts")
}

/// A P2WPKH key the test holds.
pub struct Key {
    secret: SecretKey,
    public: CompressedPublicKey,
}

impl Key {
    pub fn new(seed: u8) -> Self {
        let secp = Secp256k1::new();
        let secret = SecretKey::from_slice(&[seed.max(1); 32]).expect("valid key");
        let public = CompressedPublicKey(secret.public_key(&secp));
        Self { secret, public }
    }

    pub fn address(&self) -> Address {
        Address::p2wpkh(&self.public, Network::Regtest)
    }

    pub fn script(&self) -> ScriptBuf {
        self.address().script_pubkey()
    }

    /// The ECDSA signature of input `i` (spending `value` of this key).
    pub fn sign_input(&self, tx: &Transaction, i: usize, value: Amount) -> ecdsa::Signature {
        let secp = Secp256k1::new();
        let sighash = SighashCache::new(tx)
            .p2wpkh_signature_hash(i, &self.script(), value, EcdsaSighashType::All)
            .expect("sighash");
        secp.sign_ecdsa(&Message::from_digest(sighash.to_byte_array()), &self.secret)
    }

    /// Signs every input (each spends `values[i]` of this key).
    pub fn sign(&self, tx: &mut Transaction, values: &[Amount]) {
        for (i, value) in values.iter().enumerate() {
            let sig = self.sign_input(tx, i, *value);
            tx.input[i].witness = self.witness(sig);
        }
    }

    pub fn witness(&self, sig: ecdsa::Signature) -> Witness {
        let sig = bitcoin::ecdsa::Signature {
            signature: sig,
            sighash_type: EcdsaSighashType::All,
        };
        Witness::p2wpkh(&sig, &self.public.0)
    }
}

/// An unsigned version-2 transaction spending `inputs` to `outputs`.
pub fn unsigned(inputs: &[OutPoint], outputs: Vec<TxOut>) -> Transaction {
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: inputs
            .iter()
            .map(|op| TxIn {
                previous_output: *op,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_LOCKTIME_NO_RBF,
                witness: Witness::new(),
            })
            .collect(),
        output: outputs,
    }
}

/// A signed spend of `value` at `outpoint` (held by `key`), paying `to`
/// everything but a 1,000 sat fee.
pub fn spend(key: &Key, outpoint: OutPoint, value: Amount, to: ScriptBuf) -> Transaction {
    let mut tx = unsigned(
        &[outpoint],
        vec![TxOut {
            value: value - Amount::from_sat(1_000),
            script_pubkey: to,
        }],
    );
    key.sign(&mut tx, &[value]);
    tx
}

pub async fn get_text(stand_in: &StandIn, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("{}{path}", stand_in.esplora_url()))
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

pub async fn get_json(stand_in: &StandIn, path: &str) -> serde_json::Value {
    let (status, body) = get_text(stand_in, path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).expect("json")
}

/// The coinbase outpoint of the block at `height` and its value.
pub async fn coinbase_at(stand_in: &StandIn, height: u32) -> (OutPoint, Amount) {
    let (_, hash) = get_text(stand_in, &format!("/block-height/{height}")).await;
    let (_, txid) = get_text(stand_in, &format!("/block/{hash}/txid/0")).await;
    let tx = get_json(stand_in, &format!("/tx/{txid}")).await;
    let value = tx["vout"][0]["value"].as_u64().expect("value");
    (
        OutPoint::new(Txid::from_str(&txid).expect("txid"), 0),
        Amount::from_sat(value),
    )
}

impl Key {
    pub fn public(&self) -> bitcoin::secp256k1::PublicKey {
        self.public.0
    }

    /// Signs a 32-byte digest (a sighash computed by the test).
    pub fn sign_digest(&self, digest: [u8; 32]) -> ecdsa::Signature {
        Secp256k1::new().sign_ecdsa(&Message::from_digest(digest), &self.secret)
    }
}
