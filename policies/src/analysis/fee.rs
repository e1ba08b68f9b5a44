//! Totals and size: sums bounded by 21 million bitcoin, the weight once satisfied.

use bitcoin::{Amount, Script, Sequence, Transaction, Weight, absolute, relative};
use miniscript::Descriptor;
use miniscript::descriptor::DefiniteDescriptorKey;
use miniscript::plan::Assets;

use crate::document::PolicyDocument;
use crate::keys::Keychain;

use super::findings::{FindingCode, Findings};
use super::input::InputAnalysis;

/// Sums amounts; `None` if any is `None`, or (with a finding) past 21 million bitcoin.
pub(super) fn sum(
    amounts: impl Iterator<Item = Option<Amount>>,
    what: &str,
    findings: &mut Findings,
) -> Option<Amount> {
    let mut total = Amount::ZERO;
    for amount in amounts {
        match amount?.checked_add(total) {
            Some(t) if t <= Amount::MAX_MONEY => total = t,
            _ => {
                findings.tx(
                    FindingCode::AmountOverflow,
                    format!("sum of {what} exceeds 21 million bitcoin"),
                );
                return None;
            }
        }
    }
    Some(total)
}

/// Unsigned weight, plus the segwit marker and flag, plus for each input its empty-witness
/// count byte and its satisfaction bound. `None` if any input has no bound (not ours), or
/// there is no input.
pub(super) fn estimate_weight(tx: &Transaction, inputs: &[InputAnalysis]) -> Option<Weight> {
    if inputs.is_empty() {
        return None;
    }
    let mut weight = tx.weight().checked_add(Weight::from_wu(2))?;
    for input in inputs {
        let bound = input.max_satisfaction_weight?;
        weight = weight.checked_add(Weight::from_wu(1))?.checked_add(bound)?;
    }
    Some(weight)
}

/// Unsigned weight, plus the segwit marker and flag, plus each input's
/// [`InputAnalysis::signing_weight`]. `None` if any input lacks one, or there is no input.
pub(super) fn signed_weight(tx: &Transaction, inputs: &[InputAnalysis]) -> Option<Weight> {
    if inputs.is_empty() {
        return None;
    }
    let mut weight = tx.weight().checked_add(Weight::from_wu(2))?;
    for input in inputs {
        weight = weight.checked_add(input.signing_weight?)?;
    }
    Some(weight)
}

/// The witness weight of the cheapest satisfaction of `derived` by the policy's HSM keys at
/// this input's timelocks, with 72-byte signatures. Miniscript's plans count 73 bytes per
/// ECDSA signature: its length byte and 72 bytes, the most a low-S DER signature with its
/// sighash byte takes (the signer only puts low-S signatures). The witness script, which
/// plans leave out, is added.
///
/// When the HSM keys alone satisfy no path (a custom policy that needs the recovery key
/// too), the recovery key is added, unless its master fingerprint equals an HSM key's (then
/// miniscript could not tell them apart).
pub(super) fn signing_weight(
    policy: &PolicyDocument,
    derived: &Descriptor<DefiniteDescriptorKey>,
    witness_script: &Script,
    tx: &Transaction,
    sequence: Sequence,
) -> Option<Weight> {
    let (age, lock_time) = effective_timelocks(tx, sequence);
    let hsm = policy
        .hsm_keys
        .iter()
        .fold(Assets::new(), |assets, key| {
            assets.add(key.descriptor_key())
        })
        .older(age)
        .after(lock_time);
    let plan = match derived.clone().plan(&hsm) {
        Ok(plan) => plan,
        Err(_) => {
            let recovery_fp = policy.recovery.master_fingerprint();
            if policy.hsm_keys.iter().any(|k| k.fingerprint == recovery_fp) {
                return None;
            }
            let keychain = Keychain::Receive;
            let with_recovery = hsm
                .add(policy.recovery.descriptor_key(keychain))
                .add(policy.recovery.descriptor_key(Keychain::Change));
            derived.clone().plan(&with_recovery).ok()?
        }
    };
    // The plan leaves out the witness script, the last stack item of a p2wsh spend.
    let items = plan.witness_template().len();
    let bytes = plan
        .witness_size()
        .checked_sub(varint_len(items))?
        .checked_add(varint_len(items.checked_add(1)?))?
        .checked_add(varint_len(witness_script.len()))?
        .checked_add(witness_script.len())?;
    Some(Weight::from_wu(u64::try_from(bytes).ok()?))
}

/// Bytes of a Bitcoin compact size.
fn varint_len(n: usize) -> usize {
    match n {
        0..=0xfc => 1,
        0xfd..=0xffff => 3,
        _ => 5,
    }
}

/// The relative lock an input's nSequence gives (zero when CSV is off: version below 2 or the
/// disable flag) and the absolute lock the transaction gives (zero when this input's nSequence
/// is final).
pub(super) fn effective_timelocks(
    tx: &Transaction,
    sequence: Sequence,
) -> (relative::LockTime, absolute::LockTime) {
    let csv_active = u32::from_ne_bytes(tx.version.0.to_ne_bytes()) >= 2;
    let age = if csv_active {
        sequence
            .to_relative_lock_time()
            .unwrap_or(relative::LockTime::ZERO)
    } else {
        relative::LockTime::ZERO
    };
    let lock_time = if sequence.enables_absolute_lock_time() {
        tx.lock_time
    } else {
        absolute::LockTime::ZERO
    };
    (age, lock_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_stop_at_21_million_bitcoin() {
        let mut findings = Findings::default();
        let max = Some(Amount::MAX_MONEY);
        assert_eq!(sum([max].into_iter(), "x", &mut findings), max);
        assert!(findings.tx.is_empty());
        assert_eq!(
            sum([max, Some(Amount::ONE_SAT)].into_iter(), "x", &mut findings),
            None
        );
        assert_eq!(findings.tx.len(), 1);
        assert_eq!(findings.tx[0].code, FindingCode::AmountOverflow);
        assert_eq!(
            sum(
                [Some(Amount::MAX), Some(Amount::MAX)].into_iter(),
                "x",
                &mut findings
            ),
            None
        );
        // An unproven amount makes the sum unproven without a finding of its own.
        let mut findings = Findings::default();
        assert_eq!(
            sum(
                [Some(Amount::ONE_SAT), None].into_iter(),
                "x",
                &mut findings
            ),
            None
        );
        assert!(findings.tx.is_empty());
    }
}
