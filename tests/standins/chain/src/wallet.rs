//! The stand-in's own key: it receives the coinbase of blocks mined without an
//! address and pays `fund` requests from it, with real signed transactions.

use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{All, Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{Address, Amount, CompressedPublicKey, Network, ScriptBuf, Transaction, Witness};

/// A P2WPKH key derived from a seed string (test money only).
#[derive(Debug)]
pub struct Wallet {
    secp: Secp256k1<All>,
    secret: SecretKey,
    public: CompressedPublicKey,
}

impl Wallet {
    /// The key for `seed` (SHA-256 of the seed; a different seed gives a
    /// different key, the same seed the same one).
    ///
    /// # Errors
    /// In the 2^-128 case where the hash is not a valid secret key.
    pub fn from_seed(seed: &str) -> Result<Self, bitcoin::secp256k1::Error> {
        let secp = Secp256k1::new();
        let digest = sha256::Hash::hash(seed.as_bytes());
        let secret = SecretKey::from_slice(digest.as_byte_array())?;
        let public = CompressedPublicKey(secret.public_key(&secp));
        Ok(Self {
            secp,
            secret,
            public,
        })
    }

    /// The wallet's address on regtest.
    pub fn address(&self) -> Address {
        Address::p2wpkh(&self.public, Network::Regtest)
    }

    /// The wallet's output script.
    pub fn script_pubkey(&self) -> ScriptBuf {
        ScriptBuf::new_p2wpkh(&self.public.wpubkey_hash())
    }

    /// Signs every input of `tx`, each spending one of the wallet's outputs
    /// worth `values[i]` (BIP143, SIGHASH_ALL).
    ///
    /// # Errors
    /// If a sighash cannot be computed (an input index out of range).
    pub fn sign(&self, tx: &mut Transaction, values: &[Amount]) -> Result<(), String> {
        let script = self.script_pubkey();
        let mut witnesses = Vec::with_capacity(values.len());
        {
            let mut cache = SighashCache::new(&*tx);
            for (i, value) in values.iter().enumerate() {
                let sighash = cache
                    .p2wpkh_signature_hash(i, &script, *value, EcdsaSighashType::All)
                    .map_err(|e| format!("sighash of input {i}: {e}"))?;
                let msg = Message::from_digest(sighash.to_byte_array());
                let signature = bitcoin::ecdsa::Signature {
                    signature: self.secp.sign_ecdsa(&msg, &self.secret),
                    sighash_type: EcdsaSighashType::All,
                };
                witnesses.push(Witness::p2wpkh(&signature, &self.public.0));
            }
        }
        for (input, witness) in tx.input.iter_mut().zip(witnesses) {
            input.witness = witness;
        }
        Ok(())
    }
}
