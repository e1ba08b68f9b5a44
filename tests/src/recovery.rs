//! The offline recovery key of a policy, held in software by the tests.
//!
//! In production it is an xpub whose seed sits in a safe; here a fixed test
//! seed stands in so that recovery-path spends can be signed and checked.

use std::str::FromStr;

use bitcoin::bip32::{DerivationPath, Xpriv, Xpub};
use bitcoin::secp256k1::Secp256k1;
use bitcoin::{Network, NetworkKind, Psbt};
use policies::keys::RecoveryKey;

/// The BIP48-style account path the recovery key is published at.
pub const ACCOUNT_PATH: &str = "m/48'/1'/0'/2'";

/// A recovery key pair derived from a test seed.
#[derive(Debug, Clone)]
pub struct TestRecoveryKey {
    master: Xpriv,
    /// The public side, as a policy records it (`[fingerprint/48'/1'/0'/2']tpub...`).
    pub public: RecoveryKey,
}

impl TestRecoveryKey {
    /// Derives the recovery key from `seed` for `network`.
    pub fn from_seed(seed: &[u8], network: Network) -> Self {
        let secp = Secp256k1::new();
        let kind: NetworkKind = network.into();
        let master = Xpriv::new_master(kind, seed).expect("a test seed of 16..64 bytes");
        let path = DerivationPath::from_str(ACCOUNT_PATH).expect("constant path");
        let account = Xpub::from_priv(
            &secp,
            &master
                .derive_priv(&secp, &path)
                .expect("non-hardened depth is small"),
        );
        let fingerprint = master.fingerprint(&secp);
        let text = format!("[{fingerprint}/{}]{account}", &ACCOUNT_PATH[2..]);
        let public = RecoveryKey::from_str(&text).expect("a well-formed key with origin");
        Self { master, public }
    }

    /// Signs every input of `psbt` that names this key in its BIP32
    /// derivations, returning how many signatures were added.
    ///
    /// # Errors
    /// The signing errors rust-bitcoin reports.
    pub fn sign(&self, psbt: &mut Psbt) -> Result<usize, String> {
        let secp = Secp256k1::new();
        match psbt.sign(&self.master, &secp) {
            Ok(keys) => Ok(keys
                .values()
                .map(|k| match k {
                    bitcoin::psbt::SigningKeys::Ecdsa(keys) => keys.len(),
                    bitcoin::psbt::SigningKeys::Schnorr(keys) => keys.len(),
                })
                .sum()),
            Err((_, errors)) => Err(format!("{errors:?}")),
        }
    }
}
