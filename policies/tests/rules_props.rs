//! Properties of the rules' decisions over generated rule sets: an allowlist entry never
//! refuses more, a lower cap never admits more, and a change that `compare_rules` calls
//! tightening-only never admits anything the old rules did not.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use bitcoin::{Address, Amount, Network, Psbt};
use policies::rules::{
    AllowlistEntry, Context, Decision, FeeCaps, HighestUsed, OfficerId, Quorum, QuorumTier, Rules,
    VelocityWindow, compare_rules,
};
use policies::{CompiledRules, PolicyDocument, PsbtAnalysis, analyze, evaluate};
use proptest::prelude::*;

use common::*;

fn address(seed: u8) -> String {
    let pk = bitcoin::CompressedPublicKey(public(seed));
    Address::p2wpkh(&pk, Network::Regtest).to_string()
}

/// Candidate allowlist entries: the payee of the PSBTs (seed 77) and others.
fn candidates() -> Vec<AllowlistEntry> {
    [77u8, 78, 79, 80]
        .iter()
        .map(|s| AllowlistEntry::Address(address(*s)))
        .collect()
}

/// Two PSBTs of the cold policy: a small one at 2 sat/vB and a larger one at 30 sat/vB.
fn fixtures() -> &'static (PolicyDocument, Vec<PsbtAnalysis>) {
    static F: OnceLock<(PolicyDocument, Vec<PsbtAnalysis>)> = OnceLock::new();
    F.get_or_init(|| {
        let policy = cold_policy();
        let mut wallet = wallet_for(&policy);
        fund(&mut wallet, 100_000);
        fund(&mut wallet, 200_000);
        let small: Psbt = build_psbt(&mut wallet, 30_000);
        let mut builder = wallet.build_tx();
        builder
            .add_recipient(external_script(), Amount::from_sat(150_000))
            .set_condition(Default::default())
            .fee_rate(bitcoin::FeeRate::from_sat_per_vb_u32(30));
        let large = builder.finish().unwrap();
        let analyses = [small, large]
            .iter()
            .map(|p| {
                let a = analyze(&policy, p);
                assert!(a.is_clean(), "{a}");
                a
            })
            .collect();
        (policy, analyses)
    })
}

fn rank(d: Decision) -> u8 {
    match d {
        Decision::Allow => 0,
        Decision::NeedsApproval { .. } => 1,
        Decision::Refuse => 2,
    }
}

/// The decision on each fixture PSBT under `rules`. The analysis does not depend on the
/// rules, only the policy id does, so the fixture analyses are re-labelled with the id of the
/// document carrying these rules.
fn decisions(rules: &Rules, ctx: &Context) -> Vec<u8> {
    let (policy, analyses) = fixtures();
    let doc = policy.clone().with_rules(rules.clone()).unwrap();
    let compiled = CompiledRules::new(&doc).unwrap();
    analyses
        .iter()
        .map(|a| {
            let mut a = a.clone();
            a.policy_id = doc.id;
            rank(evaluate(&compiled, &a, ctx).unwrap().decision)
        })
        .collect()
}

prop_compose! {
    fn rules_strategy()(
        allow in proptest::option::of(proptest::collection::btree_set(0usize..4, 0..4)),
        max in proptest::option::of(0u64..300_000),
        velocity in proptest::option::of(0u64..400_000),
        fee_abs in proptest::option::of(0u64..20_000),
        fee_rate in proptest::option::of(1u64..60),
        fee_share in proptest::option::of(1u32..3_000),
        distance in proptest::option::of(0u32..3),
    ) -> Rules {
        let c = candidates();
        Rules {
            allowlist: allow.map(|s| s.into_iter().map(|i| c[i].clone()).collect()),
            max_per_tx_sat: max.map(Amount::from_sat),
            velocity: velocity
                .map(|v| vec![VelocityWindow { window_secs: 3600, max_sat: Amount::from_sat(v) }])
                .unwrap_or_default(),
            fee: FeeCaps {
                max_absolute_sat: fee_abs.map(Amount::from_sat),
                max_rate_sat_vb: fee_rate,
                max_share_bps: fee_share,
            },
            change_max_distance: distance,
            locktime: None,
            approvals: Some(Quorum {
                tiers: vec![
                    QuorumTier { up_to_sat: Some(Amount::from_sat(100_000)), required: 1 },
                    QuorumTier { up_to_sat: None, required: 2 },
                ],
            }),
            warn_only: Vec::new(),
        }
    }
}

prop_compose! {
    fn ctx_strategy()(
        spent in 0u64..200_000,
        approvals in proptest::collection::vec(0usize..4, 0..4),
        highest in proptest::option::of(0u32..3),
    ) -> Context {
        let names = ["alice", "bob", "carol", "mallory"];
        let mut c = Context::new(Network::Regtest, 1_800_000_000, 1_000);
        c.officers = names[..3].iter().map(|n| OfficerId((*n).into())).collect();
        c.approvals = approvals.into_iter().map(|i| OfficerId(names[i].into())).collect();
        c.spent = BTreeMap::from([(3600, Amount::from_sat(spent))]);
        c.highest_used = HighestUsed { receive: highest, change: highest };
        c
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn an_allowlist_entry_never_refuses_more(
        rules in rules_strategy(),
        ctx in ctx_strategy(),
        extra in 0usize..4,
    ) {
        let mut wider = rules.clone();
        let list = wider.allowlist.get_or_insert_with(Vec::new);
        let entry = candidates()[extra].clone();
        if !list.contains(&entry) {
            list.push(entry);
        }
        let mut narrow = rules;
        narrow.allowlist.get_or_insert_with(Vec::new);
        let before = decisions(&narrow, &ctx);
        let after = decisions(&wider, &ctx);
        for (b, a) in before.iter().zip(&after) {
            prop_assert!(a <= b, "adding an entry went from {b} to {a}");
        }
    }

    #[test]
    fn a_lower_cap_never_admits_more(
        rules in rules_strategy(),
        ctx in ctx_strategy(),
        which in 0usize..6,
        cut in 1u64..100_000,
    ) {
        let mut lower = rules.clone();
        let cut_amount = |a: Option<Amount>| {
            Some(Amount::from_sat(a.map_or(500_000, |a| a.to_sat()).saturating_sub(cut)))
        };
        match which {
            0 => lower.max_per_tx_sat = cut_amount(lower.max_per_tx_sat),
            1 => {
                let v = lower.velocity.first().map(|w| w.max_sat);
                lower.velocity = vec![VelocityWindow {
                    window_secs: 3600,
                    max_sat: cut_amount(v).unwrap(),
                }];
            }
            2 => lower.fee.max_absolute_sat = cut_amount(lower.fee.max_absolute_sat),
            3 => lower.fee.max_rate_sat_vb =
                Some(lower.fee.max_rate_sat_vb.unwrap_or(1_000).saturating_sub(cut % 60)),
            4 => lower.fee.max_share_bps = Some(
                lower.fee.max_share_bps.unwrap_or(10_000).saturating_sub(u32::try_from(cut % 3_000).unwrap()),
            ),
            _ => lower.change_max_distance =
                Some(lower.change_max_distance.unwrap_or(1_000).saturating_sub(u32::try_from(cut % 3).unwrap())),
        }
        let before = decisions(&rules, &ctx);
        let after = decisions(&lower, &ctx);
        for (b, a) in before.iter().zip(&after) {
            prop_assert!(a >= b, "lowering cap {which} went from {b} to {a}");
        }
    }

    #[test]
    fn a_tightening_by_compare_never_admits_more(
        old in rules_strategy(),
        new in rules_strategy(),
        ctx in ctx_strategy(),
    ) {
        let comparison = compare_rules("cold", &old, &new);
        if !comparison.is_loosening() {
            let before = decisions(&old, &ctx);
            let after = decisions(&new, &ctx);
            for (b, a) in before.iter().zip(&after) {
                prop_assert!(a >= b, "{:?} admitted more: {b} -> {a}", comparison.changes);
            }
        }
    }

    #[test]
    fn more_approvals_never_refuse_more(
        rules in rules_strategy(),
        ctx in ctx_strategy(),
        extra in 0usize..4,
    ) {
        let names = ["alice", "bob", "carol", "mallory"];
        let mut more = ctx.clone();
        more.approvals.push(OfficerId(names[extra].into()));
        let before = decisions(&rules, &ctx);
        let after = decisions(&rules, &more);
        for (b, a) in before.iter().zip(&after) {
            prop_assert!(a <= b);
        }
    }
}

prop_compose! {
    /// A fixture PSBT with hostile edits: amounts, version, locktime, sequences, a dropped
    /// previous transaction, a script swapped.
    fn hostile_psbt()(
        which in 0usize..2,
        value in proptest::option::of((0usize..3, 0u64..300_000)),
        version in proptest::option::of(-2i32..5),
        lock in proptest::option::of(any::<u32>()),
        sequence in proptest::option::of(any::<u32>()),
        drop_prev in any::<bool>(),
        swap_script in proptest::option::of(0usize..3),
    ) -> Psbt {
        let mut psbt = hostile_fixtures()[which].clone();
        let outputs = psbt.unsigned_tx.output.len();
        if let Some((i, v)) = value {
            psbt.unsigned_tx.output[i % outputs].value = Amount::from_sat(v);
        }
        if let Some(v) = version {
            psbt.unsigned_tx.version = bitcoin::transaction::Version(v);
        }
        if let Some(l) = lock {
            psbt.unsigned_tx.lock_time = bitcoin::absolute::LockTime::from_consensus(l);
        }
        if let Some(s) = sequence {
            psbt.unsigned_tx.input[0].sequence = bitcoin::Sequence(s);
        }
        if drop_prev {
            psbt.inputs[0].non_witness_utxo = None;
        }
        if let Some(i) = swap_script {
            psbt.unsigned_tx.output[i % outputs].script_pubkey = external_script();
        }
        psbt
    }
}

fn hostile_fixtures() -> &'static Vec<Psbt> {
    static F: OnceLock<Vec<Psbt>> = OnceLock::new();
    F.get_or_init(|| {
        let (policy, _) = fixtures();
        let mut wallet = wallet_for(policy);
        fund(&mut wallet, 100_000);
        fund(&mut wallet, 200_000);
        vec![
            build_psbt(&mut wallet, 30_000),
            build_psbt(&mut wallet, 250_000),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever the PSBT holds, evaluation does not panic, and a PSBT with any finding is
    /// refused whatever the approvals.
    #[test]
    fn a_psbt_with_findings_is_always_refused(
        psbt in hostile_psbt(),
        rules in rules_strategy(),
        ctx in ctx_strategy(),
    ) {
        let (policy, _) = fixtures();
        let doc = policy.clone().with_rules(rules).unwrap();
        let a = analyze(&doc, &psbt);
        let e = evaluate(&CompiledRules::new(&doc).unwrap(), &a, &ctx).unwrap();
        if !a.is_clean() {
            prop_assert_eq!(e.decision, Decision::Refuse, "{}", a);
        }
        // Nothing leaves unproven: an allowed request always knows what it spends.
        if e.decision == Decision::Allow {
            prop_assert!(e.leaving.is_some() && a.fee.is_some() && a.signed_vsize.is_some());
        }
    }
}

/// Applies tightening edits only: lower or new caps, fewer allowlist entries, more approvals.
fn tighten(mut r: Rules, edits: &[(usize, u64)]) -> Rules {
    for &(which, by) in edits {
        match which {
            0 => {
                r.max_per_tx_sat = Some(Amount::from_sat(
                    r.max_per_tx_sat
                        .map_or(400_000, |a| a.to_sat())
                        .saturating_sub(by),
                ))
            }
            1 => {
                let v = r.velocity.first().map_or(400_000, |w| w.max_sat.to_sat());
                r.velocity = vec![VelocityWindow {
                    window_secs: 3600,
                    max_sat: Amount::from_sat(v.saturating_sub(by)),
                }];
            }
            2 => {
                r.fee.max_absolute_sat = Some(Amount::from_sat(
                    r.fee
                        .max_absolute_sat
                        .map_or(50_000, |a| a.to_sat())
                        .saturating_sub(by),
                ))
            }
            3 => {
                r.fee.max_rate_sat_vb =
                    Some(r.fee.max_rate_sat_vb.unwrap_or(100).saturating_sub(by % 50))
            }
            4 => match &mut r.allowlist {
                None => r.allowlist = Some(candidates()[..2].to_vec()),
                Some(list) => {
                    list.pop();
                }
            },
            5 => {
                if let Some(q) = &mut r.approvals {
                    for t in &mut q.tiers {
                        t.required = (t.required + 1).min(3);
                    }
                }
            }
            _ => {
                r.change_max_distance = Some(
                    r.change_max_distance
                        .unwrap_or(1_000)
                        .saturating_sub((by % 3) as u32),
                )
            }
        }
    }
    r
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Tightening edits are classified as such, and never admit more.
    #[test]
    fn tightening_edits_are_tightenings_and_never_admit_more(
        old in rules_strategy(),
        edits in proptest::collection::vec((0usize..7, 0u64..200_000), 1..4),
        ctx in ctx_strategy(),
    ) {
        let new = tighten(old.clone(), &edits);
        let comparison = compare_rules("cold", &old, &new);
        prop_assert!(!comparison.is_loosening(), "{:?}", comparison.changes);
        let before = decisions(&old, &ctx);
        let after = decisions(&new, &ctx);
        for (b, a) in before.iter().zip(&after) {
            prop_assert!(a >= b, "{:?} admitted more: {b} -> {a}", comparison.changes);
        }
        // And the way back is a loosening whenever anything changed.
        if !comparison.is_unchanged() {
            prop_assert!(compare_rules("cold", &new, &old).is_loosening());
        }
    }
}
