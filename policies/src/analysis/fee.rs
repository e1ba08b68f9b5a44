//! Totals and size: sums bounded by 21 million bitcoin, the weight once satisfied.

use bitcoin::{Amount, Transaction, Weight};

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
