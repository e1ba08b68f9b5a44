//! Policy-checked PSBT signing.
//!
//! The order matters: everything the signer can check is checked before the
//! first HSM call, so a refused PSBT never reaches the token.

use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::{self, Secp256k1};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{Psbt, Transaction};
use miniscript::Satisfier;
use miniscript::psbt::{PsbtExt, PsbtInputSatisfier};
use policies::PolicyDocument;
use policies::analysis::{PsbtAnalysis, analyze};
use serde::Serialize;

use crate::error::SignError;
use crate::hsm::{Hsm, SignRequest};

/// The result of [`sign_psbt`].
#[derive(Debug, Clone)]
pub struct Signed {
    /// The PSBT with our partial signatures, finalized if it could be.
    pub psbt: Psbt,
    /// What the PSBT does, as checked before signing: every external output is listed here.
    pub analysis: PsbtAnalysis,
    /// How many signatures the HSM added.
    pub signatures: usize,
    /// Each signature the HSM added, in the order they were made.
    pub made: Vec<MadeSignature>,
    /// Whether every input is now finalized (the transaction can be extracted).
    pub finalized: bool,
    /// Why finalization did not happen, when it did not (usually: more approvals needed).
    pub not_finalized_because: Vec<String>,
}

/// One signature the HSM made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeSignature {
    /// The input signed.
    pub input: usize,
    /// The key's label.
    pub key_label: String,
    /// The BIP143 sighash signed (SIGHASH_ALL).
    pub sighash: [u8; 32],
}

/// A short, serialisable summary of a signing, for logs and the CLI.
#[derive(Debug, Clone, Serialize)]
pub struct SignSummary {
    /// The policy that was applied.
    pub policy_id: String,
    /// The unsigned transaction's id.
    pub txid: String,
    /// Signatures added.
    pub signatures: usize,
    /// Whether the PSBT is final.
    pub finalized: bool,
}

impl Signed {
    /// A summary for logs and the CLI.
    pub fn summary(&self, policy: &PolicyDocument) -> SignSummary {
        SignSummary {
            policy_id: policy.id.to_string(),
            txid: self.psbt.unsigned_tx.compute_txid().to_string(),
            signatures: self.signatures,
            finalized: self.finalized,
        }
    }
}

/// Verifies `psbt` against `policy` and signs every input with as many of the
/// policy's HSM keys that `hsm` holds as the input's descriptor needs (the
/// fewest held keys, in policy order, that satisfy it: two for a 2-of-3 when
/// all three are held; every held key when they cannot satisfy it alone, so
/// that another signer can add the rest), then finalizes with miniscript when
/// enough signatures are present.
///
/// Refuses unless every input belongs to the policy and is proven (the full
/// previous transaction matches the outpoint; the witness script is the
/// policy's descriptor at the claimed index), every sighash is ALL, every
/// output claiming to be change is proven change, and the fee is not
/// negative. The external outputs are reported in [`Signed::analysis`].
///
/// # Errors
/// A [`SignError`] with a stable code. On any refusal no HSM call was made
/// and the input PSBT is untouched.
pub fn sign_psbt(policy: &PolicyDocument, psbt: &Psbt, hsm: &dyn Hsm) -> Result<Signed, SignError> {
    sign_analyzed(policy, psbt, analyze(policy, psbt), hsm)
}

/// As [`sign_psbt`], with `analysis` made by `policies::analysis::analyze(policy, psbt)`
/// of these very values: the service has just analysed the request, and a 50-input
/// analysis costs tens of milliseconds. An analysis of another policy or
/// transaction is not used: the PSBT is analysed again then.
///
/// # Errors
/// As [`sign_psbt`].
pub fn sign_analyzed(
    policy: &PolicyDocument,
    psbt: &Psbt,
    analysis: PsbtAnalysis,
    hsm: &dyn Hsm,
) -> Result<Signed, SignError> {
    let analysis =
        if analysis.policy_id == policy.id && analysis.txid == psbt.unsigned_tx.compute_txid() {
            analysis
        } else {
            analyze(policy, psbt)
        };
    if !analysis.is_clean() {
        return Err(SignError::Refused {
            findings: analysis.findings().to_vec(),
        });
    }

    // The token's keys must be the policy's keys, not just share their labels.
    let mut held = Vec::new();
    for key in &policy.hsm_keys {
        if let Some(index) = hsm.key_index(&key.label) {
            let found = hsm.keys()[index].public_key;
            if found != key.public_key {
                return Err(SignError::KeyMismatch {
                    label: key.label.clone(),
                    expected: key.public_key.to_string(),
                    found: found.to_string(),
                });
            }
            held.push((key.label.as_str(), index, key.public_key));
        }
    }
    if held.is_empty() {
        return Err(SignError::NoPolicyKeysHeld {
            policy_keys: policy.hsm_keys.iter().map(|k| k.label.clone()).collect(),
        });
    }

    let mut cache = SighashCache::new(&psbt.unsigned_tx);
    // Inputs of one policy differ only in their derivation index, which moves
    // the recovery key and never the HSM keys: how many held keys an input
    // needs is found once per spending paths (named by label) and nSequence.
    let mut needed: std::collections::HashMap<(Vec<&str>, bitcoin::Sequence), usize> =
        std::collections::HashMap::new();
    let mut sighashes = Vec::with_capacity(psbt.inputs.len());
    let mut requests = Vec::new();
    // (input index, public key) for each request, in request order.
    let mut targets = Vec::new();
    for (i, (input, report)) in psbt.inputs.iter().zip(&analysis.inputs).enumerate() {
        if input.final_script_witness.is_some() || input.final_script_sig.is_some() {
            return Err(SignError::InputAlreadyFinal { input: i });
        }
        // A clean analysis proves both; their absence would be a bug there.
        let (Some(witness_script), Some(amount)) = (&report.witness_script, report.amount) else {
            return Err(SignError::Sighash {
                input: i,
                reason: "analysis gave no witness script or amount".into(),
            });
        };
        let sighash = cache
            .p2wsh_signature_hash(i, witness_script, amount, EcdsaSighashType::All)
            .map_err(|e| SignError::Sighash {
                input: i,
                reason: e.to_string(),
            })?;
        sighashes.push(secp256k1::Message::from_digest(sighash.to_byte_array()));
        let eligible: Vec<&(&str, usize, secp256k1::PublicKey)> = held
            .iter()
            .filter(|(label, _, _)| report.hsm_keys.iter().any(|k| k == label))
            .collect();
        if eligible.is_empty() {
            return Err(SignError::NothingToSign { input: i });
        }
        let shape = (
            report
                .spending_paths
                .iter()
                .map(|p| p.description.as_str())
                .collect(),
            psbt.unsigned_tx.input[i].sequence,
        );
        let n = *needed
            .entry(shape)
            .or_insert_with(|| fewest_that_satisfy(psbt, i, report, &eligible));
        for (label, index, public_key) in eligible.iter().take(n) {
            requests.push(SignRequest {
                key: *index,
                digest: sighash.to_byte_array(),
            });
            targets.push((i, *public_key, *label));
        }
    }

    let signatures = hsm.sign_digests(&requests)?;

    let mut signed = psbt.clone();
    let mut made = Vec::with_capacity(targets.len());
    for (((input, public_key, label), request), signature) in
        targets.into_iter().zip(&requests).zip(&signatures)
    {
        made.push(MadeSignature {
            input,
            key_label: label.to_owned(),
            sighash: request.digest,
        });
        signed.inputs[input].partial_sigs.insert(
            bitcoin::PublicKey::new(public_key),
            bitcoin::ecdsa::Signature {
                signature: *signature,
                sighash_type: EcdsaSighashType::All,
            },
        );
    }

    let secp = Secp256k1::verification_only();
    let (psbt, finalized, not_finalized_because) =
        match finalize_with_policy(&signed, &analysis, &sighashes, &held, &secp) {
            Ok(finalized) => (finalized, true, Vec::new()),
            Err(reasons) => (signed, false, reasons),
        };
    tracing::info!(
        policy = %policy.id,
        txid = %psbt.unsigned_tx.compute_txid(),
        signatures = signatures.len(),
        finalized,
        "psbt signed"
    );
    Ok(Signed {
        psbt,
        analysis,
        signatures: signatures.len(),
        made,
        finalized,
        not_finalized_because,
    })
}

/// The length of the shortest prefix of `eligible` (held keys of input `i`, in
/// policy order) whose signatures satisfy the input's descriptor under its
/// timelocks, or of all of `eligible` when none does (the held keys cannot
/// spend it alone).
///
/// Checked with stand-in signatures before any HSM call: a signature the
/// policy does not need is `C_Sign` time spent and a key used for nothing (the
/// finalizer drops it).
fn fewest_that_satisfy(
    psbt: &Psbt,
    i: usize,
    report: &policies::analysis::InputAnalysis,
    eligible: &[&(&str, usize, secp256k1::PublicKey)],
) -> usize {
    let Some(descriptor) = &report.descriptor else {
        return eligible.len();
    };
    for n in 1..eligible.len() {
        let chosen = StandIn {
            keys: eligible[..n].iter().map(|(_, _, k)| *k).collect(),
            timelocks: PsbtInputSatisfier::new(psbt, i),
        };
        if descriptor.get_satisfaction(&chosen).is_ok() {
            return n;
        }
    }
    eligible.len()
}

/// A satisfier with a stand-in signature for each of `keys` and none other,
/// and the input's own timelocks: whether these keys alone can spend it.
struct StandIn<'a> {
    keys: Vec<secp256k1::PublicKey>,
    timelocks: PsbtInputSatisfier<'a>,
}

impl Satisfier<bitcoin::PublicKey> for StandIn<'_> {
    fn lookup_ecdsa_sig(&self, key: &bitcoin::PublicKey) -> Option<bitcoin::ecdsa::Signature> {
        // Any well-formed signature: only its presence and size matter here.
        let stand_in = secp256k1::ecdsa::Signature::from_compact(&[1; 64]).ok()?;
        self.keys
            .contains(&key.inner)
            .then_some(bitcoin::ecdsa::Signature {
                signature: stand_in,
                sighash_type: EcdsaSighashType::All,
            })
    }

    fn check_older(&self, n: bitcoin::relative::LockTime) -> bool {
        <PsbtInputSatisfier<'_> as Satisfier<bitcoin::PublicKey>>::check_older(&self.timelocks, n)
    }

    fn check_after(&self, n: bitcoin::absolute::LockTime) -> bool {
        <PsbtInputSatisfier<'_> as Satisfier<bitcoin::PublicKey>>::check_after(&self.timelocks, n)
    }
}

/// Finalizes every input by satisfying the policy's own descriptor at the
/// proven derivation (miniscript's non-malleable satisfier over the PSBT's
/// signatures), if every input can be satisfied.
///
/// Unlike miniscript's PSBT finalizer this neither re-parses the witness
/// script (the analysis proved it is the policy's) nor re-verifies the
/// signatures the HSM just made (each was verified when it was made); it does
/// verify every signature that came from elsewhere, so an invalid one can never
/// end up in a witness.
fn finalize_with_policy<C: secp256k1::Verification>(
    signed: &Psbt,
    analysis: &PsbtAnalysis,
    sighashes: &[secp256k1::Message],
    ours: &[(&str, usize, secp256k1::PublicKey)],
    secp: &Secp256k1<C>,
) -> Result<Psbt, Vec<String>> {
    let mut reasons = Vec::new();
    let mut witnesses = Vec::with_capacity(signed.inputs.len());
    for (i, (input, report)) in signed.inputs.iter().zip(&analysis.inputs).enumerate() {
        for (key, signature) in &input.partial_sigs {
            if ours.iter().any(|(_, _, k)| *k == key.inner) {
                continue;
            }
            if signature.sighash_type != EcdsaSighashType::All
                || secp
                    .verify_ecdsa(&sighashes[i], &signature.signature, &key.inner)
                    .is_err()
            {
                reasons.push(format!(
                    "input {i}: invalid partial signature for key {key}"
                ));
            }
        }
        let Some(descriptor) = &report.descriptor else {
            reasons.push(format!("input {i}: no proven descriptor"));
            continue;
        };
        let satisfier = miniscript::psbt::PsbtInputSatisfier::new(signed, i);
        match descriptor.get_satisfaction(&satisfier) {
            Ok((witness, script_sig)) if script_sig.is_empty() => witnesses.push(witness),
            Ok(_) => reasons.push(format!("input {i}: unexpected script_sig for a wsh input")),
            Err(e) => reasons.push(format!("input {i}: {e}")),
        }
    }
    if !reasons.is_empty() {
        return Err(reasons);
    }
    let mut finalized = signed.clone();
    for (input, witness) in finalized.inputs.iter_mut().zip(witnesses) {
        input.final_script_witness = Some(bitcoin::Witness::from_slice(&witness));
        // BIP174 finalizer: everything but the UTXOs and the final fields goes.
        input.partial_sigs.clear();
        input.sighash_type = None;
        input.redeem_script = None;
        input.witness_script = None;
        input.bip32_derivation.clear();
        input.ripemd160_preimages.clear();
        input.sha256_preimages.clear();
        input.hash160_preimages.clear();
        input.hash256_preimages.clear();
    }
    Ok(finalized)
}

/// Finalizes every input with miniscript if all of them can be; otherwise
/// returns the PSBT unchanged with the reasons.
pub fn try_finalize<C: secp256k1::Verification>(
    psbt: Psbt,
    secp: &Secp256k1<C>,
) -> (Psbt, bool, Vec<String>) {
    let mut attempt = psbt.clone();
    match attempt.finalize_mut(secp) {
        Ok(()) => (attempt, true, Vec::new()),
        Err(errors) => (
            psbt,
            false,
            errors.iter().map(ToString::to_string).collect(),
        ),
    }
}

/// Finalizes a fully signed PSBT and extracts its transaction.
///
/// For offline flows (for example a recovery-path spend signed with the
/// recovery key), where miniscript's finalizer enforces the timelocks.
///
/// # Errors
/// The finalizer's or extractor's reasons, when an input cannot be satisfied.
pub fn finalize_and_extract(psbt: &Psbt) -> Result<Transaction, Vec<String>> {
    let secp = Secp256k1::verification_only();
    let (psbt, finalized, reasons) = try_finalize(psbt.clone(), &secp);
    if !finalized {
        return Err(reasons);
    }
    psbt.extract(&secp).map_err(|e| vec![e.to_string()])
}
