//! The `rules` section of the policy document: serde, canonical form, id, validation; and the
//! tightening / loosening comparison.
#![allow(clippy::unwrap_used)]

mod common;

use bitcoin::{Amount, Network};
use policies::rules::{
    AllowlistEntry, ChangeKind, FeeCaps, Quorum, QuorumTier, Rules, VelocityWindow,
    compare_documents, compare_rules,
};
use policies::{PolicyDocument, PolicyError};
use serde_json::json;

use common::*;

fn full_rules() -> Rules {
    Rules {
        allowlist: Some(vec![AllowlistEntry::Address(
            bitcoin::Address::from_script(&external_script(), Network::Regtest)
                .unwrap()
                .to_string(),
        )]),
        max_per_tx_sat: Some(Amount::from_sat(1_000_000)),
        velocity: vec![
            VelocityWindow {
                window_secs: 3600,
                max_sat: Amount::from_sat(2_000_000),
            },
            VelocityWindow {
                window_secs: 86_400,
                max_sat: Amount::from_sat(5_000_000),
            },
        ],
        fee: FeeCaps {
            max_absolute_sat: Some(Amount::from_sat(50_000)),
            max_rate_sat_vb: Some(200),
            max_share_bps: Some(500),
        },
        change_max_distance: Some(500),
        locktime: None,
        approvals: Some(Quorum {
            tiers: vec![
                QuorumTier {
                    up_to_sat: Some(Amount::ONE_BTC),
                    required: 2,
                },
                QuorumTier {
                    up_to_sat: None,
                    required: 3,
                },
            ],
        }),
        warn_only: vec!["velocity_24h".into()],
    }
}

#[test]
fn old_documents_with_empty_rules_load_and_keep_their_id() {
    let doc = cold_policy();
    let json = doc.to_json_pretty().unwrap();
    assert!(json.contains("\"rules\": {}"), "{json}");
    assert!(doc.canonical_content().unwrap().ends_with(",\"rules\":{}}"));
    let back = PolicyDocument::from_json(&json).unwrap();
    assert_eq!(back.id, doc.id);
    assert!(back.rules.is_empty());
    // Setting the empty rules again is the same document.
    assert_eq!(doc.clone().with_rules(Rules::default()).unwrap().id, doc.id);
}

#[test]
fn rules_are_canonical_and_in_the_id() {
    let doc = cold_policy();
    let ruled = doc.clone().with_rules(full_rules()).unwrap();
    assert_ne!(ruled.id, doc.id);
    assert_eq!(ruled.id, ruled.compute_id().unwrap());
    let content = ruled.canonical_content().unwrap();
    let rules_json = &content[content.find(",\"rules\":").unwrap() + 9..content.len() - 1];
    // Declared order, amounts in satoshis, absent fields left out.
    assert!(
        rules_json.starts_with("{\"allowlist\":[{\"address\":\"bcrt1q"),
        "{rules_json}"
    );
    for part in [
        "\"max_per_tx_sat\":1000000,\"velocity\":[{\"window_secs\":3600,\"max_sat\":2000000}",
        "\"fee\":{\"max_absolute_sat\":50000,\"max_rate_sat_vb\":200,\"max_share_bps\":500}",
        "\"change_max_distance\":500,\"approvals\":{\"tiers\":[{\"up_to_sat\":100000000,\"required\":2},{\"required\":3}]}",
        "\"warn_only\":[\"velocity_24h\"]}",
    ] {
        assert!(rules_json.contains(part), "{part} not in {rules_json}");
    }
    assert!(!rules_json.contains("locktime"));
    let back = PolicyDocument::from_json(&ruled.to_json_pretty().unwrap()).unwrap();
    assert_eq!(back, ruled);
}

#[test]
fn rules_sections_refuse_unknown_fields_and_invalid_values() {
    let ruled = cold_policy().with_rules(full_rules()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&ruled.to_json_pretty().unwrap()).unwrap();
    // Tampering without a new id: the id no longer matches.
    let mut t = v.clone();
    t["rules"]["max_per_tx_sat"] = json!(2_000_000);
    assert!(matches!(
        PolicyDocument::from_json(&t.to_string()),
        Err(PolicyError::IdMismatch { .. })
    ));
    for (path, value) in [
        (
            "velocity",
            json!([{"window_secs": 3600, "max_sat": 1, "extra": 1}]),
        ),
        ("fee", json!({"max_absolute_sat": 1, "max_fee": 1})),
        ("approvals", json!({"tiers": [{"required": 2, "who": "x"}]})),
        ("allowlist", json!([{"script": "00"}])),
    ] {
        let mut t = v.clone();
        t["rules"][path] = value;
        // Refused while parsing, before the id is even compared.
        let err = PolicyDocument::from_json(&t.to_string()).unwrap_err();
        assert!(matches!(err, PolicyError::Json(_)), "{path}: {err}");
    }
    for (rules, needle) in [
        (
            Rules {
                allowlist: Some(vec![AllowlistEntry::Address(
                    "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq".into(),
                )]),
                ..Rules::default()
            },
            "allowlist address",
        ),
        (
            Rules {
                allowlist: Some(vec![AllowlistEntry::Descriptor("wpkh(nonsense)".into())]),
                ..Rules::default()
            },
            "allowlist descriptor",
        ),
        (
            Rules {
                velocity: vec![
                    VelocityWindow {
                        window_secs: 60,
                        max_sat: Amount::ONE_SAT,
                    },
                    VelocityWindow {
                        window_secs: 60,
                        max_sat: Amount::ONE_SAT,
                    },
                ],
                ..Rules::default()
            },
            "listed twice",
        ),
        (
            Rules {
                approvals: Some(Quorum {
                    tiers: vec![QuorumTier {
                        up_to_sat: Some(Amount::ONE_BTC),
                        required: 2,
                    }],
                }),
                ..Rules::default()
            },
            "last approval tier",
        ),
        (
            Rules {
                approvals: Some(Quorum { tiers: vec![] }),
                ..Rules::default()
            },
            "no tier",
        ),
    ] {
        let err = cold_policy().with_rules(rules).unwrap_err();
        assert!(matches!(err, PolicyError::Rules(_)), "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }
}

#[test]
fn comparison_tightening_and_loosening() {
    let base = full_rules();
    assert!(compare_rules("cold", &base, &base).is_unchanged());

    let mut lower = base.clone();
    lower.max_per_tx_sat = Some(Amount::from_sat(500_000));
    lower.velocity.pop();
    lower.velocity.push(VelocityWindow {
        window_secs: 86_400,
        max_sat: Amount::from_sat(4_000_000),
    });
    lower.fee.max_rate_sat_vb = Some(100);
    lower.allowlist = Some(vec![]);
    lower.warn_only.clear();
    lower.approvals = Some(Quorum {
        tiers: vec![QuorumTier {
            up_to_sat: None,
            required: 3,
        }],
    });
    let c = compare_rules("cold", &base, &lower);
    assert!(!c.is_loosening(), "{:?}", c.changes);
    assert!(c.changes.len() >= 6, "{:?}", c.changes);
    assert!(c.changes.iter().all(|x| x.kind == ChangeKind::Tightening));

    // The reverse is a loosening, listing each.
    let c = compare_rules("cold", &lower, &base);
    assert!(c.is_loosening());
    let loosenings: Vec<String> = c.loosenings().map(|x| x.description.clone()).collect();
    for needle in [
        "max_per_tx raised from 500000 sat to 1000000 sat",
        "velocity_24h raised",
        "fee_rate raised from 100 sat/vB to 200 sat/vB",
        "allowlist entry added",
        "velocity_24h made warn-only",
        "fewer approvals needed at 0 sat: 3 approvals -> 2 approvals",
    ] {
        assert!(
            loosenings.iter().any(|l| l.contains(needle)),
            "{needle} not in {loosenings:?}"
        );
    }

    // Removing a limit or the allowlist loosens; adding them tightens.
    let none = Rules::default();
    let c = compare_rules("cold", &base, &none);
    assert!(
        c.loosenings()
            .any(|x| x.description == "allowlist removed: any destination")
    );
    assert!(
        c.loosenings()
            .any(|x| x.description.starts_with("max_per_tx removed"))
    );
    let c = compare_rules("cold", &none, &base);
    // A cold policy without quorum refuses everything: adding one loosens (it can now sign);
    // so does a rule that only warns.
    assert!(c.is_loosening());
    let l: Vec<&str> = c.loosenings().map(|x| x.description.as_str()).collect();
    assert_eq!(l.len(), 2, "{l:?}");
    assert!(l[0].starts_with("fewer approvals needed at 0 sat: refused -> 2 approvals"));
    assert_eq!(l[1], "velocity_24h made warn-only");
    // For a hot policy, no quorum signs everything: adding one tightens.
    let mut hot_base = base.clone();
    hot_base.approvals = None;
    hot_base.warn_only.clear();
    let c = compare_rules("hot", &none, &hot_base);
    assert!(!c.is_loosening(), "{:?}", c.changes);
}

#[test]
fn comparison_of_documents_new_policy_is_loosening() {
    let doc = cold_policy();
    let c = compare_documents(None, &doc);
    assert!(c.is_loosening());
    assert!(c.changes[0].description.starts_with("new policy"));
    assert!(compare_documents(Some(&doc), &doc).is_unchanged());
    let tighter = doc
        .clone()
        .with_rules(Rules {
            max_per_tx_sat: Some(Amount::ONE_BTC),
            ..Rules::default()
        })
        .unwrap();
    let c = compare_documents(Some(&doc), &tighter);
    assert!(!c.is_loosening());
    assert_eq!(c.changes.len(), 1);
    let other = PolicyDocument::new(
        "treasury",
        1,
        Network::Regtest,
        &policies::Template::Cold {
            threshold: 1,
            hsm_keys: hsm_keys(),
            recovery: recovery(bitcoin::NetworkKind::Test),
            recovery_after: RECOVERY_AFTER,
        },
    )
    .unwrap();
    assert!(compare_documents(Some(&doc), &other).is_loosening());
}
