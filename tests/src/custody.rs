//! Policies over real HSM keys, and the helpers the custody tests share.

use bitcoin::secp256k1::{Secp256k1, SecretKey};
use bitcoin::{Network, ScriptBuf};
use hsm_config::token::KeyInfo;
use policies::{HsmKey, PolicyDocument, Template};

use crate::recovery::TestRecoveryKey;

/// The network every test policy uses.
pub const NETWORK: Network = Network::Regtest;

/// The recovery timelock of the test policies, in blocks: short enough to
/// mine past in a test, and long enough to prove "not yet".
pub const RECOVERY_AFTER: u16 = 144;

/// The seed of the test recovery key (never use a fixed seed for real money).
pub const RECOVERY_SEED: &[u8] = b"bastion test recovery seed 0001";

/// The policy's view of a key generated in the token.
pub fn hsm_key(info: &KeyInfo) -> HsmKey {
    HsmKey::new(info.label.clone(), info.public_key)
}

/// The test recovery key.
pub fn recovery_key() -> TestRecoveryKey {
    TestRecoveryKey::from_seed(RECOVERY_SEED, NETWORK)
}

/// A cold `threshold`-of-n policy over `keys`, with the test recovery path.
///
/// # Panics
/// If the template does not compile (a bug in the fixture or in `policies`).
pub fn cold_policy(name: &str, threshold: usize, keys: &[KeyInfo]) -> PolicyDocument {
    let template = Template::Cold {
        threshold,
        hsm_keys: keys.iter().map(hsm_key).collect(),
        recovery: recovery_key().public,
        recovery_after: RECOVERY_AFTER,
    };
    PolicyDocument::new(name, 1, NETWORK, &template).expect("cold template compiles")
}

/// A hot policy over one key, with the test recovery path.
///
/// # Panics
/// If the template does not compile.
pub fn hot_policy(name: &str, key: &KeyInfo) -> PolicyDocument {
    let template = Template::Hot {
        hsm_key: hsm_key(key),
        recovery: recovery_key().public,
        recovery_after: RECOVERY_AFTER,
    };
    PolicyDocument::new(name, 1, NETWORK, &template).expect("hot template compiles")
}

/// A P2WPKH destination outside every policy (a customer's withdrawal address).
pub fn external_destination(seed: u8) -> ScriptBuf {
    use bitcoin::hashes::{Hash, sha256};
    let secp = Secp256k1::new();
    let scalar = sha256::Hash::hash(&[b'x', seed]).to_byte_array();
    let secret = SecretKey::from_slice(&scalar).expect("a hash is a valid scalar but for 2^-128");
    let key = bitcoin::CompressedPublicKey(secret.public_key(&secp));
    ScriptBuf::new_p2wpkh(&key.wpubkey_hash())
}

/// A signer's view of the test token: the keys named by `labels`, over
/// `sessions` PKCS#11 sessions.
///
/// # Errors
/// As [`signer::Pkcs11Hsm::open`].
pub fn open_hsm(
    token: &test_support::softhsm::TestToken,
    labels: &[&str],
    sessions: usize,
) -> Result<signer::Pkcs11Hsm, signer::HsmError> {
    let labels: Vec<String> = labels.iter().map(ToString::to_string).collect();
    signer::Pkcs11Hsm::open(
        token.module(),
        token.token_label(),
        &test_support::softhsm::TestToken::user_pin(),
        &labels,
        sessions,
    )
}
