//! Inputs: ownership proven by derivation, amounts proven by the previous transaction,
//! spending paths.

use std::collections::{BTreeMap, BTreeSet};

use bitcoin::bip32::KeySource;
use bitcoin::hashes::{hash160, ripemd160, sha256};
use bitcoin::psbt;
use bitcoin::secp256k1::{PublicKey, Secp256k1, VerifyOnly};
use bitcoin::{
    Amount, EcdsaSighashType, OutPoint, ScriptBuf, Sequence, Transaction, TxOut, Weight,
};
use miniscript::descriptor::DefiniteDescriptorKey;
use miniscript::policy::{Liftable, semantic};
use miniscript::{Descriptor, ForEachKey, Translator, hash256};
use serde::Serialize;

use super::findings::{FindingCode, Findings};
use crate::document::PolicyDocument;
use crate::keys::{Keychain, RECOVERY_NAME};

/// A proven owner of an input or output: the policy descriptor at this keychain and index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ownership {
    /// Receive (`/0/*`) or change (`/1/*`).
    pub keychain: Keychain,
    /// The derivation index.
    pub derivation_index: u32,
}

/// One top-level alternative of the input's policy (for the templates: the HSM path and the
/// recovery path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpendingPath {
    /// The path as a semantic policy with keys named by label and `recovery`.
    pub description: String,
    /// Labels of the keys involved (`recovery` for the recovery key), in policy order.
    pub keys: Vec<String>,
    /// The fewest signatures that satisfy the path (`None` if it can never be satisfied).
    pub signatures_needed: Option<usize>,
    /// The largest relative timelock (`older`, consensus value) in the path.
    pub relative_timelock: Option<u32>,
    /// The largest absolute timelock (`after`, consensus value) in the path.
    pub absolute_timelock: Option<u32>,
    /// Whether the path's timelocks are met by this input's nSequence and the transaction's
    /// locktime and version. Signatures and hash preimages are assumed available.
    pub satisfiable_now: bool,
}

/// What the analysis found about one input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InputAnalysis {
    /// Position in the transaction.
    pub index: usize,
    /// The outpoint spent.
    pub previous_output: OutPoint,
    /// The input's nSequence.
    pub sequence: Sequence,
    /// Proven owner, when the policy's script at the claimed derivation is the spent script.
    pub ownership: Option<Ownership>,
    /// Amount spent, proven by the full previous transaction; `None` if unproven.
    pub amount: Option<Amount>,
    /// The sighash type the PSBT asks, if any (absent means ALL).
    pub sighash_type: Option<String>,
    /// The policy's witness script at the proven derivation: the script code to sign with
    /// `SighashCache::p2wsh_signature_hash(index, &witness_script, amount, EcdsaSighashType::All)`.
    /// `None` unless ownership is proven.
    pub witness_script: Option<ScriptBuf>,
    /// Labels of the HSM keys in the input's descriptor (those that may sign it), in policy order.
    pub hsm_keys: Vec<String>,
    /// Top-level spending alternatives of the input's descriptor.
    pub spending_paths: Vec<SpendingPath>,
    /// Upper bound on the witness weight of the input once satisfied.
    pub max_satisfaction_weight: Option<Weight>,
    /// Witness weight (count byte included) of the cheapest satisfaction the HSM keys can
    /// give with this input's timelocks, counting 72 bytes per signature (a low-S DER
    /// signature with its sighash byte, at most). `None` unless ownership is proven and the
    /// HSM keys can satisfy the input.
    pub signing_weight: Option<Weight>,
    /// The policy descriptor at the proven derivation, with concrete keys: what a finalizer
    /// satisfies. `None` unless ownership is proven. Not serialised (the witness script and
    /// the ownership say the same).
    #[serde(skip)]
    pub descriptor: Option<Descriptor<bitcoin::PublicKey>>,
}

/// What a `bip32_derivation` map says about ownership.
pub(super) enum Claim {
    /// No recovery-key derivation; whether any of our HSM keys is named.
    None { names_hsm_key: bool },
    /// One well-formed recovery-key derivation.
    Ours(Keychain, u32),
    /// Recovery-key derivations that are malformed or contradict each other.
    Invalid(String),
}

pub(super) fn read_claim(
    policy: &PolicyDocument,
    derivations: &BTreeMap<PublicKey, KeySource>,
) -> Claim {
    let mut claims = BTreeSet::new();
    let mut malformed = Vec::new();
    let mut names_hsm_key = false;
    for (public_key, source) in derivations {
        // HSM keys first: their (fingerprint, empty path) sources could share the recovery
        // fingerprint by chance.
        if policy.hsm_key_by_pubkey(public_key).is_some() {
            names_hsm_key = true;
            continue;
        }
        if !policy.recovery.is_claimed_by(source) {
            continue;
        }
        match policy.recovery.claimed_derivation(source) {
            Some(claim) => {
                claims.insert(claim);
            }
            None => malformed.push(format!("[{}]{}", source.0, source.1)),
        }
    }
    if !malformed.is_empty() {
        return Claim::Invalid(format!(
            "recovery key derivation {} is not {}/(0|1)/index",
            malformed.join(", "),
            policy.recovery.origin_path()
        ));
    }
    let mut iter = claims.into_iter();
    match (iter.next(), iter.next()) {
        (None, _) => Claim::None { names_hsm_key },
        (Some((keychain, index)), None) => Claim::Ours(keychain, index),
        (Some(a), Some(b)) => Claim::Invalid(format!(
            "several recovery key derivations claimed: {}/{} and {}/{}",
            a.0, a.1, b.0, b.1
        )),
    }
}

pub(super) fn analyze_input(
    policy: &PolicyDocument,
    secp: &Secp256k1<VerifyOnly>,
    tx: &Transaction,
    index: usize,
    psbt_input: Option<&psbt::Input>,
    findings: &mut Findings,
) -> InputAnalysis {
    let txin = tx.input.get(index);
    let previous_output = txin.map(|t| t.previous_output).unwrap_or_default();
    let sequence = txin.map(|t| t.sequence).unwrap_or_default();
    let mut analysis = InputAnalysis {
        index,
        previous_output,
        sequence,
        ownership: None,
        amount: None,
        sighash_type: None,
        witness_script: None,
        hsm_keys: Vec::new(),
        spending_paths: Vec::new(),
        max_satisfaction_weight: None,
        signing_weight: None,
        descriptor: None,
    };
    // The missing map is already a PSBT_MALFORMED finding.
    let Some(input) = psbt_input else {
        return analysis;
    };

    if let Some(sighash) = input.sighash_type {
        analysis.sighash_type = Some(sighash.to_string());
        if sighash.ecdsa_hash_ty() != Ok(EcdsaSighashType::All) {
            findings.input(
                index,
                FindingCode::InputSighashNotAll,
                format!("sighash type {sighash} asked; only ALL is signed"),
            );
        }
    }

    // The amount comes only from the full previous transaction: BIP143 signatures commit to
    // the amount, but a lying witness_utxo on another input can still make us overpay fees.
    let proven_prevout: Option<&TxOut> = match &input.non_witness_utxo {
        None => {
            findings.input(
                index,
                FindingCode::InputPreviousTxMissing,
                format!("no previous transaction for {previous_output}: amount unproven"),
            );
            None
        }
        Some(prev) => {
            let prev_txid = prev.compute_txid();
            if prev_txid != previous_output.txid {
                findings.input(
                    index,
                    FindingCode::InputPreviousTxMismatch,
                    format!(
                        "previous transaction has txid {prev_txid}, outpoint is {previous_output}"
                    ),
                );
                None
            } else {
                let out = usize::try_from(previous_output.vout)
                    .ok()
                    .and_then(|vout| prev.output.get(vout));
                if out.is_none() {
                    findings.input(
                        index,
                        FindingCode::InputPreviousTxMismatch,
                        format!(
                            "previous transaction {prev_txid} has {} outputs, no vout {}",
                            prev.output.len(),
                            previous_output.vout
                        ),
                    );
                }
                out
            }
        }
    };
    match (proven_prevout, &input.witness_utxo) {
        (Some(proven), Some(claimed)) if proven != claimed => findings.input(
            index,
            FindingCode::InputWitnessUtxoMismatch,
            format!(
                "witness_utxo says {} sat to {}, previous transaction says {} sat to {}",
                claimed.value.to_sat(),
                claimed.script_pubkey,
                proven.value.to_sat(),
                proven.script_pubkey
            ),
        ),
        _ => {}
    }
    analysis.amount = proven_prevout.map(|o| o.value);

    let spent_script = proven_prevout
        .or(input.witness_utxo.as_ref())
        .map(|o| o.script_pubkey.clone());
    if let Some(script) = spent_script.as_ref().filter(|s| !s.is_p2wsh()) {
        findings.input(
            index,
            FindingCode::InputNotSegwitV0,
            format!("spent output script {script} is not p2wsh"),
        );
    }

    let (keychain, derivation_index) = match read_claim(policy, &input.bip32_derivation) {
        Claim::None {
            names_hsm_key: false,
        } => {
            findings.input(
                index,
                FindingCode::InputNotOurs,
                "no derivation for the policy's keys".to_owned(),
            );
            return analysis;
        }
        Claim::None {
            names_hsm_key: true,
        } => {
            findings.input(
                index,
                FindingCode::InputDerivationMissing,
                "derivations name our hsm keys but none the recovery key".to_owned(),
            );
            return analysis;
        }
        Claim::Invalid(reason) => {
            findings.input(index, FindingCode::InputDerivationInvalid, reason);
            return analysis;
        }
        Claim::Ours(keychain, derivation_index) => (keychain, derivation_index),
    };

    let derived = match policy.derive(keychain, derivation_index) {
        Ok(d) => d,
        Err(e) => {
            findings.input(index, FindingCode::InputDerivationInvalid, e.to_string());
            return analysis;
        }
    };
    // Scripts come from one concrete derivation with a shared context: converting each
    // descriptor key on demand would build a fresh secp256k1 context per key.
    let concrete = match derived.derived_descriptor(secp) {
        Ok(c) => c,
        Err(e) => {
            findings.input(index, FindingCode::InputDerivationInvalid, e.to_string());
            return analysis;
        }
    };
    let witness_script = match concrete.explicit_script() {
        Ok(s) => s,
        Err(e) => {
            findings.input(index, FindingCode::InputDerivationInvalid, e.to_string());
            return analysis;
        }
    };

    // Whether the spent output is ours comes first: a foreign input is INPUT_NOT_OURS, not
    // a witness script mismatch.
    let expected_script = concrete.script_pubkey();
    match spent_script {
        // No script to compare: the missing previous transaction is already a finding.
        None => return analysis,
        Some(script) if script != expected_script => {
            findings.input(
                index,
                FindingCode::InputNotOurs,
                format!(
                    "claims {keychain}/{derivation_index} but spends {script}, the policy gives {expected_script}"
                ),
            );
            return analysis;
        }
        Some(_) => {}
    }

    match &input.witness_script {
        None => findings.input(
            index,
            FindingCode::InputWitnessScriptMissing,
            format!("no witness script; expected the policy's at {keychain}/{derivation_index}"),
        ),
        Some(given) if *given != witness_script => findings.input(
            index,
            FindingCode::InputWitnessScriptMismatch,
            format!("witness script differs from the policy's at {keychain}/{derivation_index}"),
        ),
        Some(_) => {}
    }

    analysis.ownership = Some(Ownership {
        keychain,
        derivation_index,
    });
    analysis.descriptor = Some(concrete);
    analysis.hsm_keys = hsm_labels(policy, &derived);
    analysis.max_satisfaction_weight = derived.max_weight_to_satisfy().ok();
    analysis.signing_weight =
        super::fee::signing_weight(policy, &derived, &witness_script, tx, sequence);
    analysis.witness_script = Some(witness_script);
    match spending_paths(policy, &derived, tx, sequence) {
        Ok(paths) => {
            if !paths.iter().any(|p| p.satisfiable_now) {
                let needs: Vec<&str> = paths.iter().map(|p| p.description.as_str()).collect();
                findings.input(
                    index,
                    FindingCode::InputNoSatisfiablePath,
                    format!(
                        "no path satisfiable with nSequence {:#010x}, locktime {}, version {}: {}",
                        sequence.to_consensus_u32(),
                        tx.lock_time,
                        tx.version.0,
                        needs.join(" | ")
                    ),
                );
            }
            analysis.spending_paths = paths;
        }
        Err(reason) => {
            findings.input(index, FindingCode::InputNoSatisfiablePath, reason);
        }
    }
    analysis
}

/// Labels of the HSM keys in a derived descriptor, in the policy's order.
fn hsm_labels(policy: &PolicyDocument, derived: &Descriptor<DefiniteDescriptorKey>) -> Vec<String> {
    let mut present = BTreeSet::new();
    derived.for_each_key(|key| {
        if let Some(k) = policy.hsm_key_of(key) {
            present.insert(k.label.clone());
        }
        true
    });
    policy
        .hsm_keys
        .iter()
        .filter(|k| present.contains(&k.label))
        .map(|k| k.label.clone())
        .collect()
}

/// Names keys by label (`recovery` for the recovery key) and hashes by hex.
struct Labeler<'a> {
    policy: &'a PolicyDocument,
}

impl Translator<DefiniteDescriptorKey, String, ()> for Labeler<'_> {
    fn pk(&mut self, key: &DefiniteDescriptorKey) -> Result<String, ()> {
        if let Some(k) = self.policy.hsm_key_of(key) {
            Ok(k.label.clone())
        } else if self.policy.is_recovery_key(key) {
            Ok(RECOVERY_NAME.to_owned())
        } else {
            Ok(key.to_string())
        }
    }

    fn sha256(&mut self, h: &sha256::Hash) -> Result<String, ()> {
        Ok(h.to_string())
    }

    fn hash256(&mut self, h: &hash256::Hash) -> Result<String, ()> {
        Ok(h.to_string())
    }

    fn ripemd160(&mut self, h: &ripemd160::Hash) -> Result<String, ()> {
        Ok(h.to_string())
    }

    fn hash160(&mut self, h: &hash160::Hash) -> Result<String, ()> {
        Ok(h.to_string())
    }
}

/// The top-level spending alternatives of the policy at a keychain and index, as the analysis
/// reports them for an input, keys named by label. `satisfiable_now` is as for a coin spent
/// at once (version 2, nSequence 0, locktime 0): timelocked paths read false.
///
/// # Errors
/// A message if the index cannot be derived or the policy cannot be lifted.
pub fn describe_paths(
    policy: &PolicyDocument,
    keychain: Keychain,
    index: u32,
) -> Result<Vec<SpendingPath>, String> {
    let derived = policy.derive(keychain, index).map_err(|e| e.to_string())?;
    let tx = Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: Vec::new(),
        output: Vec::new(),
    };
    spending_paths(policy, &derived, &tx, Sequence::ZERO)
}

/// The top-level alternatives of the lifted policy, with their timelocks checked against the
/// input's nSequence and the transaction's locktime and version.
fn spending_paths(
    policy: &PolicyDocument,
    derived: &Descriptor<DefiniteDescriptorKey>,
    tx: &Transaction,
    sequence: Sequence,
) -> Result<Vec<SpendingPath>, String> {
    let lifted = derived
        .lift()
        .map_err(|e| format!("cannot lift the input's policy: {e}"))?;
    let named = lifted
        .normalized()
        .translate_pk(&mut Labeler { policy })
        .map_err(|()| "cannot name the input's keys".to_owned())?;

    // OP_CSV fails below version 2 (compared as unsigned) or with the disable flag set;
    // an age of zero then satisfies no `older`. OP_CLTV fails when this input's nSequence
    // is final.
    let (age, lock_time) = super::fee::effective_timelocks(tx, sequence);

    let alternatives: Vec<semantic::Policy<String>> = match &named {
        semantic::Policy::Thresh(t) if t.k() == 1 && t.n() > 1 => {
            t.iter().map(|alt| alt.as_ref().clone()).collect()
        }
        other => vec![other.clone()],
    };
    Ok(alternatives
        .into_iter()
        .map(|alt| {
            let mut keys = Vec::new();
            alt.for_each_key(|k| {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
                true
            });
            let satisfiable_now = !alt
                .clone()
                .at_age(age)
                .at_lock_time(lock_time)
                .is_unsatisfiable();
            SpendingPath {
                description: alt.to_string(),
                keys,
                signatures_needed: alt.minimum_n_keys(),
                relative_timelock: alt.relative_timelocks().last().copied(),
                absolute_timelock: alt.absolute_timelocks().last().copied(),
                satisfiable_now,
            }
        })
        .collect())
}
