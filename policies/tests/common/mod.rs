//! Shared fixtures: real keys from fixed seeds, policies, and bdk wallets that build PSBTs.
#![allow(dead_code, clippy::unwrap_used)]

use std::str::FromStr;

use bdk_wallet::chain::{BlockId, ConfirmationBlockTime};
use bdk_wallet::descriptor::policy::Condition;
use bdk_wallet::test_utils::{insert_checkpoint, receive_output};
use bdk_wallet::{KeychainKind, Wallet};
use bitcoin::bip32::{DerivationPath, Xpriv, Xpub};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use bitcoin::{
    Address, Amount, BlockHash, FeeRate, Network, NetworkKind, OutPoint, Psbt, ScriptBuf,
};
use policies::{HsmKey, PolicyDocument, RecoveryKey, Template};

/// Height of the block the funding outputs confirm in.
pub const FUNDING_HEIGHT: u32 = 100;
/// The recovery timelock of the test policies.
pub const RECOVERY_AFTER: u16 = 144;

pub fn secret(seed: u8) -> SecretKey {
    SecretKey::from_slice(&[seed; 32]).unwrap()
}

pub fn public(seed: u8) -> PublicKey {
    PublicKey::from_secret_key(&Secp256k1::new(), &secret(seed))
}

pub fn hsm(label: &str, seed: u8) -> HsmKey {
    HsmKey::new(label, public(seed))
}

pub fn hsm_keys() -> Vec<HsmKey> {
    vec![hsm("ops-a", 1), hsm("ops-b", 2), hsm("ops-c", 3)]
}

pub fn recovery_xpriv(kind: NetworkKind) -> Xpriv {
    Xpriv::new_master(kind, &[42; 32]).unwrap()
}

pub fn recovery_path() -> DerivationPath {
    DerivationPath::from_str("m/48'/1'/0'/2'").unwrap()
}

/// `[fp/48'/1'/0'/2']xpub` (tpub for test networks).
pub fn recovery(kind: NetworkKind) -> RecoveryKey {
    let secp = Secp256k1::new();
    let master = recovery_xpriv(kind);
    let xpub = Xpub::from_priv(&secp, &master.derive_priv(&secp, &recovery_path()).unwrap());
    RecoveryKey::new(xpub, Some((master.fingerprint(&secp), recovery_path())))
}

pub fn cold_template() -> Template {
    Template::Cold {
        threshold: 2,
        hsm_keys: hsm_keys(),
        recovery: recovery(NetworkKind::Test),
        recovery_after: RECOVERY_AFTER,
    }
}

pub fn cold_policy() -> PolicyDocument {
    PolicyDocument::new("treasury", 1, Network::Regtest, &cold_template()).unwrap()
}

pub fn wallet_for(policy: &PolicyDocument) -> Wallet {
    Wallet::create(
        policy.descriptors.receive.to_string(),
        policy.descriptors.change.to_string(),
    )
    .network(policy.network)
    .create_wallet_no_persist()
    .unwrap()
}

/// Pays `sats` to the wallet's next receive address in a block at [`FUNDING_HEIGHT`].
///
/// Confirmed on purpose: bdk mishandles unconfirmed outputs of descriptors with `older()`.
pub fn fund(wallet: &mut Wallet, sats: u64) -> OutPoint {
    let block_id = BlockId {
        height: FUNDING_HEIGHT,
        hash: BlockHash::all_zeros(),
    };
    insert_checkpoint(wallet, block_id);
    receive_output(
        wallet,
        Amount::from_sat(sats),
        ConfirmationBlockTime {
            block_id,
            confirmation_time: 1_700_000_000,
        },
    )
}

/// A p2wpkh script of a key that is not in the policy.
pub fn external_script() -> ScriptBuf {
    let pk = bitcoin::CompressedPublicKey(public(77));
    Address::p2wpkh(&pk, Network::Regtest).script_pubkey()
}

/// A PSBT spending the wallet's coins on the HSM path: pays `sats` out, change back.
pub fn build_psbt(wallet: &mut Wallet, sats: u64) -> Psbt {
    let mut builder = wallet.build_tx();
    builder
        .add_recipient(external_script(), Amount::from_sat(sats))
        .set_condition(Condition::default())
        .fee_rate(FeeRate::from_sat_per_vb_u32(2));
    builder.finish().unwrap()
}

/// A funded cold wallet (one 100_000 sat coin at receive/0) and a PSBT paying 30_000 sat out.
pub fn cold_setup() -> (PolicyDocument, Wallet, Psbt) {
    let policy = cold_policy();
    let mut wallet = wallet_for(&policy);
    fund(&mut wallet, 100_000);
    let psbt = build_psbt(&mut wallet, 30_000);
    (policy, wallet, psbt)
}

/// Index of the output paying `script`.
pub fn output_index(psbt: &Psbt, script: &ScriptBuf) -> usize {
    psbt.unsigned_tx
        .output
        .iter()
        .position(|o| &o.script_pubkey == script)
        .unwrap()
}

pub fn keychain_kind(k: policies::Keychain) -> KeychainKind {
    match k {
        policies::Keychain::Receive => KeychainKind::External,
        policies::Keychain::Change => KeychainKind::Internal,
    }
}
