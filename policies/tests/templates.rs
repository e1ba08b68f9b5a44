//! Templates compile to the expected `wsh()` shapes, and bad templates are refused.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use bitcoin::{Network, NetworkKind};
use miniscript::ForEachKey;
use miniscript::descriptor::DescriptorPublicKey;
use policies::{Keychain, PolicyDocument, Template, TemplateError};

use common::*;

fn strip_checksum(s: String) -> String {
    s.split('#').next().unwrap().to_owned()
}

#[test]
fn cold_template_compiles_to_the_documented_shape() {
    let keys = hsm_keys();
    let recovery = recovery(NetworkKind::Test);
    let template = Template::Cold {
        threshold: 2,
        hsm_keys: keys.clone(),
        recovery: recovery.clone(),
        recovery_after: 52560,
    };
    assert_eq!(template.kind(), "cold");
    assert_eq!(
        template.policy().unwrap(),
        "or(99@thresh(2,pk(ops-a),pk(ops-b),pk(ops-c)),1@and(pk(recovery),older(52560)))"
    );
    let pair = template.compile().unwrap();
    let k = |i: usize| keys[i].descriptor_key().to_string();
    let expected = |branch: u32| {
        format!(
            "wsh(or_d(multi(2,{},{},{}),and_v(v:pkh({recovery}/{branch}/*),older(52560))))",
            k(0),
            k(1),
            k(2)
        )
    };
    assert_eq!(strip_checksum(pair.receive.to_string()), expected(0));
    assert_eq!(strip_checksum(pair.change.to_string()), expected(1));
    assert!(
        pair.receive.to_string().contains('#'),
        "display carries the checksum"
    );
    // HSM keys appear with their fingerprint as origin and an empty path.
    assert!(
        k(0).starts_with(&format!("[{}]02", keys[0].fingerprint))
            || k(0).starts_with(&format!("[{}]03", keys[0].fingerprint))
    );
}

#[test]
fn hot_and_custom_templates_compile() {
    let recovery = recovery(NetworkKind::Test);
    let hot = Template::Hot {
        hsm_key: hsm("hot-1", 9),
        recovery: recovery.clone(),
        recovery_after: 10,
    };
    assert_eq!(hot.kind(), "hot");
    let pair = hot.compile().unwrap();
    let s = strip_checksum(pair.receive.to_string());
    assert!(s.starts_with("wsh(or_d(pk("), "{s}");
    assert!(s.contains("older(10)"), "{s}");
    assert!(s.contains(&format!("{recovery}/0/*")), "{s}");

    let custom = Template::Custom {
        policy: "or(9@thresh(2,pk(ops-a),pk(ops-b),pk(ops-c)),1@and(pk(recovery),older(1000)))"
            .into(),
        hsm_keys: hsm_keys(),
        recovery: recovery.clone(),
    };
    assert_eq!(custom.kind(), "custom");
    let pair = custom.compile().unwrap();
    let s = strip_checksum(pair.change.to_string());
    assert!(s.starts_with("wsh(or_d(multi(2,"), "{s}");
    assert!(s.contains(&format!("v:pkh({recovery}/1/*)")), "{s}");
    assert!(s.contains("older(1000)"), "{s}");
}

#[test]
fn addresses_are_distinct_while_hsm_keys_stay_fixed() {
    let policy = cold_policy();
    let hsm: BTreeSet<DescriptorPublicKey> =
        policy.hsm_keys.iter().map(|k| k.descriptor_key()).collect();
    let mut addresses = BTreeSet::new();
    for keychain in [Keychain::Receive, Keychain::Change] {
        for index in 0..25 {
            let derived = policy.derive(keychain, index).unwrap();
            let mut fixed = BTreeSet::new();
            derived.for_each_key(|k| {
                if matches!(k.as_descriptor_public_key(), DescriptorPublicKey::Single(_)) {
                    fixed.insert(k.as_descriptor_public_key().clone());
                }
                true
            });
            assert_eq!(fixed, hsm, "{keychain}/{index}");
            let address = policy.address(keychain, index).unwrap();
            assert!(address.to_string().starts_with("bcrt1q"));
            assert!(
                addresses.insert(address.to_string()),
                "address repeats at {keychain}/{index}"
            );
        }
    }
    assert_eq!(addresses.len(), 50);
    assert!(policy.derive(Keychain::Receive, 0x8000_0000).is_err());
    assert!(policy.address(Keychain::Change, u32::MAX).is_err());
}

#[test]
fn bad_templates_are_refused_with_specific_errors() {
    let rec = recovery(NetworkKind::Test);
    let cold = |threshold, keys, after| Template::Cold {
        threshold,
        hsm_keys: keys,
        recovery: rec.clone(),
        recovery_after: after,
    };
    let custom = |policy: &str, keys| Template::Custom {
        policy: policy.into(),
        hsm_keys: keys,
        recovery: rec.clone(),
    };

    assert_eq!(
        cold(0, hsm_keys(), 10).compile(),
        Err(TemplateError::ThresholdZero)
    );
    assert_eq!(
        cold(4, hsm_keys(), 10).compile(),
        Err(TemplateError::ThresholdTooLarge {
            threshold: 4,
            keys: 3
        })
    );
    assert_eq!(
        cold(2, hsm_keys(), 0).compile(),
        Err(TemplateError::RecoveryAfterZero)
    );
    assert_eq!(cold(1, vec![], 10).compile(), Err(TemplateError::NoHsmKeys));
    assert_eq!(
        Template::Hot {
            hsm_key: hsm("h", 1),
            recovery: rec.clone(),
            recovery_after: 0
        }
        .compile(),
        Err(TemplateError::RecoveryAfterZero)
    );
    assert_eq!(
        cold(1, vec![hsm("a", 1), hsm("a", 2)], 10).compile(),
        Err(TemplateError::DuplicateLabel { label: "a".into() })
    );
    assert_eq!(
        cold(1, vec![hsm("a", 1), hsm("b", 1)], 10).compile(),
        Err(TemplateError::DuplicatePublicKey {
            first: "a".into(),
            second: "b".into()
        })
    );
    assert!(matches!(
        cold(1, vec![hsm("recovery", 1)], 10).compile(),
        Err(TemplateError::Key(policies::KeyError::ReservedLabel { .. }))
    ));
    assert!(matches!(
        cold(1, vec![hsm("a,b", 1)], 10).compile(),
        Err(TemplateError::Key(policies::KeyError::InvalidLabel { .. }))
    ));

    assert_eq!(
        custom(
            "or(pk(ops-a),and(pk(recovery),older(10)))",
            vec![hsm("ops-a", 1), hsm("ops-b", 2)]
        )
        .compile(),
        Err(TemplateError::UnusedHsmKey {
            label: "ops-b".into()
        })
    );
    assert_eq!(
        custom(
            "or(pk(ops-a),and(pk(mallory),older(10)))",
            vec![hsm("ops-a", 1)]
        )
        .compile(),
        Err(TemplateError::UnknownKeyName {
            name: "mallory".into()
        })
    );
    assert_eq!(
        custom("thresh(2,pk(ops-a),pk(ops-b),pk(ops-c))", hsm_keys()).compile(),
        Err(TemplateError::RecoveryNotUsed)
    );
    assert!(matches!(
        custom(
            "or(pk(ops-a),and(pk(recovery),older(10))",
            vec![hsm("ops-a", 1)]
        )
        .compile(),
        Err(TemplateError::PolicyParse { .. })
    ));
    // The same key twice: the compiler refuses it.
    assert!(matches!(
        custom(
            "or(pk(ops-a),and(pk(ops-a),pk(recovery)))",
            vec![hsm("ops-a", 1)]
        )
        .compile(),
        Err(TemplateError::Compile { .. })
    ));
}

#[test]
fn template_serde_round_trip() {
    let t = cold_template();
    let json = serde_json::to_string(&t).unwrap();
    assert!(json.starts_with("{\"kind\":\"cold\""), "{json}");
    let back: Template = serde_json::from_str(&json).unwrap();
    assert_eq!(back, t);
    let extra = json.replacen("{\"kind\":\"cold\"", "{\"kind\":\"cold\",\"extra\":1", 1);
    assert!(serde_json::from_str::<Template>(&extra).is_err());
}

#[test]
fn mainnet_document_needs_an_xpub() {
    let t = cold_template(); // tpub
    let err = PolicyDocument::new("p", 1, Network::Bitcoin, &t).unwrap_err();
    assert!(
        matches!(err, policies::PolicyError::NetworkMismatch { .. }),
        "{err}"
    );
    let main = Template::Cold {
        threshold: 2,
        hsm_keys: hsm_keys(),
        recovery: recovery(NetworkKind::Main),
        recovery_after: 5,
    };
    let doc = PolicyDocument::new("p", 1, Network::Bitcoin, &main).unwrap();
    assert!(
        doc.address(Keychain::Receive, 0)
            .unwrap()
            .to_string()
            .starts_with("bc1q")
    );
    // A secret key must never be accepted where the recovery xpub goes.
    let xprv = recovery_xpriv(NetworkKind::Test).to_string();
    assert!(xprv.parse::<policies::RecoveryKey>().is_err());
}
