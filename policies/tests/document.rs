//! Policy documents: JSON round trip, id stability, and refusal of tampered documents.
#![allow(clippy::unwrap_used)]

mod common;

use bitcoin::{Network, NetworkKind};
use policies::{PolicyDocument, PolicyError, PolicyId, Template};
use serde_json::{Value, json};

use common::*;

/// Compact JSON with the documented field order (serde_json's `Value` sorts keys), the way
/// another language would write the canonical content. Unknown keys go last.
fn ordered(v: &Value, order: &[&str]) -> String {
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&String> = order
        .iter()
        .filter_map(|k| obj.get_key_value(*k).map(|(k, _)| k))
        .collect();
    keys.extend(obj.keys().filter(|k| !order.contains(&k.as_str())));
    let parts: Vec<String> = keys
        .into_iter()
        .map(|k| {
            let val = &obj[k];
            let inner = match k.as_str() {
                "descriptors" if val.is_object() => ordered(val, &["receive", "change"]),
                "hsm_keys" if val.is_array() => {
                    let items: Vec<String> = val
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|key| ordered(key, &["label", "public_key", "fingerprint"]))
                        .collect();
                    format!("[{}]", items.join(","))
                }
                _ => val.to_string(),
            };
            format!("{}:{inner}", Value::String(k.clone()))
        })
        .collect();
    format!("{{{}}}", parts.join(","))
}

const FIELDS: [&str; 9] = [
    "id",
    "version",
    "name",
    "network",
    "template",
    "descriptors",
    "hsm_keys",
    "recovery",
    "rules",
];

/// Re-hashes a tampered document's content so that only the check under test can fail.
fn with_fresh_id(mut v: Value) -> String {
    v.as_object_mut().unwrap().remove("id");
    let content = ordered(&v, &FIELDS);
    let id = bitcoin::hashes::sha256::Hash::hash(content.as_bytes());
    v["id"] = json!(id.to_string());
    ordered(&v, &FIELDS)
}

use bitcoin::hashes::Hash;

#[test]
fn json_round_trip_and_field_order() {
    let doc = cold_policy();
    let json = doc.to_json_pretty().unwrap();
    let back = PolicyDocument::from_json(&json).unwrap();
    assert_eq!(back, doc);
    assert_eq!(back.id, doc.id);
    let positions: Vec<usize> = FIELDS
        .iter()
        .map(|f| json.find(&format!("\n  \"{f}\":")).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "fields out of order: {json}"
    );
    assert!(json.contains("\"network\": \"regtest\""), "{json}");
    assert!(json.contains("\"template\": \"cold\""), "{json}");
    assert!(json.contains("\"rules\": {}"), "{json}");
    // Serde's own path verifies as well.
    let via_serde: PolicyDocument = serde_json::from_str(&json).unwrap();
    assert_eq!(via_serde, doc);
}

#[test]
fn id_is_sha256_of_the_documented_canonical_content() {
    let doc = cold_policy();
    let content = doc.canonical_content().unwrap();
    assert!(content.starts_with("{\"version\":1,\"name\":\"treasury\",\"network\":\"regtest\",\"template\":\"cold\",\"descriptors\":{\"receive\":\"wsh("), "{content}");
    assert!(!content.contains(' ') && !content.contains('\n'));
    // Reproduce it the way another language would: drop "id" from the compact JSON.
    let mut v: Value = serde_json::from_str(&serde_json::to_string(&doc).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("id");
    assert_eq!(ordered(&v, &FIELDS), content);
    let expected = bitcoin::hashes::sha256::Hash::hash(content.as_bytes()).to_string();
    assert_eq!(doc.id.to_string(), expected);
    assert_eq!(expected.parse::<PolicyId>().unwrap(), doc.id);
    assert!(expected.to_uppercase().parse::<PolicyId>().is_err());
}

#[test]
fn id_is_stable_and_changes_with_every_field() {
    let doc = cold_policy();
    assert_eq!(cold_policy().id, doc.id, "same inputs, same id");
    let t = cold_template();
    let mut ids = vec![doc.id];
    ids.push(
        PolicyDocument::new("treasury", 2, Network::Regtest, &t)
            .unwrap()
            .id,
    );
    ids.push(
        PolicyDocument::new("treasury2", 1, Network::Regtest, &t)
            .unwrap()
            .id,
    );
    ids.push(
        PolicyDocument::new("treasury", 1, Network::Testnet, &t)
            .unwrap()
            .id,
    );
    let other_after = Template::Cold {
        threshold: 2,
        hsm_keys: hsm_keys(),
        recovery: recovery(NetworkKind::Test),
        recovery_after: 145,
    };
    ids.push(
        PolicyDocument::new("treasury", 1, Network::Regtest, &other_after)
            .unwrap()
            .id,
    );
    let mut renamed = hsm_keys();
    renamed[0].label = "ops-z".into();
    let relabelled = Template::Cold {
        threshold: 2,
        hsm_keys: renamed,
        recovery: recovery(NetworkKind::Test),
        recovery_after: RECOVERY_AFTER,
    };
    ids.push(
        PolicyDocument::new("treasury", 1, Network::Regtest, &relabelled)
            .unwrap()
            .id,
    );
    let custom = Template::Custom {
        policy: format!(
            "or(99@thresh(2,pk(ops-a),pk(ops-b),pk(ops-c)),1@and(pk(recovery),older({RECOVERY_AFTER})))"
        ),
        hsm_keys: hsm_keys(),
        recovery: recovery(NetworkKind::Test),
    };
    let custom_doc = PolicyDocument::new("treasury", 1, Network::Regtest, &custom).unwrap();
    assert_eq!(
        custom_doc.descriptors, doc.descriptors,
        "same policy, same descriptors"
    );
    ids.push(custom_doc.id); // only the template kind differs
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
}

#[test]
fn tampered_documents_are_refused() {
    let doc = cold_policy();
    let v: Value = serde_json::to_value(&doc).unwrap();

    // Content changed, id kept.
    let mut t = v.clone();
    t["name"] = json!("evil");
    let err = PolicyDocument::from_json(&t.to_string()).unwrap_err();
    assert!(matches!(err, PolicyError::IdMismatch { .. }), "{err}");

    // Id changed.
    let mut t = v.clone();
    t["id"] = json!("00".repeat(32));
    assert!(matches!(
        PolicyDocument::from_json(&t.to_string()),
        Err(PolicyError::IdMismatch { .. })
    ));

    // Unknown fields, at top level and inside.
    let mut t = v.clone();
    t["extra"] = json!(true);
    assert!(matches!(
        PolicyDocument::from_json(&t.to_string()),
        Err(PolicyError::Json(_))
    ));
    let mut t = v.clone();
    t["rules"] = json!({"max_fee": 1});
    assert!(matches!(
        PolicyDocument::from_json(&with_fresh_id(t)),
        Err(PolicyError::Json(_))
    ));
    let mut t = v.clone();
    t["hsm_keys"][0]["extra"] = json!(1);
    assert!(matches!(
        PolicyDocument::from_json(&with_fresh_id(t)),
        Err(PolicyError::Json(_))
    ));

    // An HSM key dropped from the list, with a fresh id: the descriptor holds an unlisted key.
    let mut t = v.clone();
    t["hsm_keys"].as_array_mut().unwrap().pop();
    let err = PolicyDocument::from_json(&with_fresh_id(t)).unwrap_err();
    assert!(matches!(err, PolicyError::UnexpectedKey { .. }), "{err}");

    // An extra HSM key listed that the descriptors do not hold.
    let mut t = v.clone();
    t["hsm_keys"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::to_value(hsm("ops-d", 4)).unwrap());
    let err = PolicyDocument::from_json(&with_fresh_id(t)).unwrap_err();
    assert!(
        matches!(err, PolicyError::HsmKeyNotInDescriptor { ref label, .. } if label == "ops-d"),
        "{err}"
    );

    // Change descriptor that is not receive with /1/*: here receive twice.
    let mut t = v.clone();
    t["descriptors"]["change"] = t["descriptors"]["receive"].clone();
    let err = PolicyDocument::from_json(&with_fresh_id(t)).unwrap_err();
    assert!(
        matches!(
            err,
            PolicyError::UnexpectedKey { .. } | PolicyError::RecoveryNotInDescriptor { .. }
        ),
        "{err}"
    );

    // Change with another timelock but the right keys.
    let other = Template::Cold {
        threshold: 2,
        hsm_keys: hsm_keys(),
        recovery: recovery(NetworkKind::Test),
        recovery_after: 7,
    }
    .compile()
    .unwrap();
    let mut t = v.clone();
    t["descriptors"]["change"] = json!(other.change.to_string());
    let err = PolicyDocument::from_json(&with_fresh_id(t)).unwrap_err();
    assert!(matches!(err, PolicyError::ChangeMismatch { .. }), "{err}");

    // Descriptor without checksum, and with a wrong checksum.
    let mut t = v.clone();
    let receive = t["descriptors"]["receive"].as_str().unwrap().to_owned();
    let bare = receive.split('#').next().unwrap().to_owned();
    t["descriptors"]["receive"] = json!(bare.clone());
    assert!(matches!(
        PolicyDocument::from_json(&with_fresh_id(t)),
        Err(PolicyError::Json(_))
    ));
    let mut t = v.clone();
    t["descriptors"]["receive"] = json!(format!("{bare}#aaaaaaaa"));
    assert!(matches!(
        PolicyDocument::from_json(&with_fresh_id(t)),
        Err(PolicyError::Json(_))
    ));

    // Not wsh, and not ranged.
    let single = format!("wpkh({})", hsm_keys()[0].descriptor_key());
    let single = miniscript::Descriptor::<miniscript::DescriptorPublicKey>::from_str(&single)
        .unwrap()
        .to_string();
    let mut t = v.clone();
    t["descriptors"]["receive"] = json!(single);
    let err = PolicyDocument::from_json(&with_fresh_id(t)).unwrap_err();
    assert!(matches!(err, PolicyError::NotWsh { .. }), "{err}");

    // Network not consistent with the tpub.
    let mut t = v.clone();
    t["network"] = json!("bitcoin");
    let err = PolicyDocument::from_json(&with_fresh_id(t)).unwrap_err();
    assert!(matches!(err, PolicyError::NetworkMismatch { .. }), "{err}");

    // Unknown template kind; empty name.
    let mut t = v.clone();
    t["template"] = json!("warm");
    assert!(matches!(
        PolicyDocument::from_json(&with_fresh_id(t)),
        Err(PolicyError::UnknownTemplate { .. })
    ));
    let mut t = v.clone();
    t["name"] = json!(" ");
    assert!(matches!(
        PolicyDocument::from_json(&with_fresh_id(t)),
        Err(PolicyError::EmptyName)
    ));

    // A recovery key different from the one in the descriptors.
    let mut t = v.clone();
    t["recovery"] = json!(recovery(NetworkKind::Test).xpub().to_string());
    let err = PolicyDocument::from_json(&with_fresh_id(t)).unwrap_err();
    assert!(matches!(err, PolicyError::UnexpectedKey { .. }), "{err}");

    // Sanity: the untouched document still verifies through the same helper.
    PolicyDocument::from_json(&with_fresh_id(v)).unwrap();
}

#[test]
fn lookups_by_fingerprint_and_pubkey() {
    let doc = cold_policy();
    let b = &doc.hsm_keys[1];
    assert_eq!(
        doc.hsm_key_by_fingerprint(b.fingerprint).unwrap().label,
        "ops-b"
    );
    assert_eq!(doc.hsm_key_by_pubkey(&b.public_key).unwrap().label, "ops-b");
    assert!(doc.hsm_key_by_pubkey(&public(99)).is_none());
    assert!(
        doc.hsm_key_by_fingerprint(bitcoin::bip32::Fingerprint::from([0; 4]))
            .is_none()
    );
}

use std::str::FromStr;
