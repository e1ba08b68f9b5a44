//! The audit anchor's two slots on a real SoftHSM token: the earlier format is
//! read and replaced, writes alternate between two objects, and losing the
//! slot being written (a torn write) leaves the previous head.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use bitcoin::hex::DisplayHex as _;
use cryptoki::object::{Attribute, ObjectClass};
use signer::audit::Head;
use signer::audit::anchor::ANCHOR_LABEL;
use signer::hsm::pool::HsmPool;
use support::{HOT, settings};
use test_support::softhsm::TestToken;

fn head(seq: i64) -> Head {
    Head {
        seq,
        hash: [u8::try_from(seq).unwrap(); 32],
    }
}

fn anchor_objects(session: &hsm_config::token::TokenSession) -> Vec<String> {
    let template = [
        Attribute::Class(ObjectClass::DATA),
        Attribute::Application(b"bastion-signer".to_vec()),
    ];
    let mut labels: Vec<String> = session
        .raw()
        .find_objects(&template)
        .unwrap()
        .into_iter()
        .map(|o| {
            let attributes = session
                .raw()
                .get_attributes(o, &[cryptoki::object::AttributeType::Label])
                .unwrap();
            match attributes.first() {
                Some(Attribute::Label(l)) => String::from_utf8(l.clone()).unwrap(),
                _ => String::new(),
            }
        })
        .collect();
    labels.sort();
    labels
}

#[test]
fn anchor_slots_replace_the_earlier_format_alternate_and_survive_a_lost_slot() {
    let Some(token) = TestToken::isolated(
        "anchor_slots_replace_the_earlier_format_alternate_and_survive_a_lost_slot",
        &[HOT],
    )
    .unwrap() else {
        return;
    };
    let session = token
        .module()
        .open_session(token.token_label(), &TestToken::user_pin())
        .unwrap();
    // An anchor of the earlier format: one object, the head in its value.
    let mut value = 7i64.to_be_bytes().to_vec();
    value.extend_from_slice(&head(7).hash);
    session
        .raw()
        .create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(ANCHOR_LABEL.as_bytes().to_vec()),
            Attribute::Application(b"bastion-signer".to_vec()),
            Attribute::Value(value),
        ])
        .unwrap();
    let rt = support::runtime();
    let hsm = Arc::new(HsmPool::new(settings(&token, &[HOT])));
    rt.block_on(async {
        assert_eq!(hsm.read_anchor().await.unwrap(), Some(head(7)));
        // The first write makes a slot and replaces the earlier object.
        hsm.write_anchor(head(8)).await.unwrap();
        assert_eq!(hsm.read_anchor().await.unwrap(), Some(head(8)));
        let slot = |seq: i64| {
            format!(
                "{ANCHOR_LABEL} {seq} {}",
                head(seq).hash.to_lower_hex_string()
            )
        };
        assert_eq!(anchor_objects(&session), vec![slot(8)]);
        // Then two slots, the older one rewritten each time.
        for seq in 9..=12 {
            hsm.write_anchor(head(seq)).await.unwrap();
            assert_eq!(hsm.read_anchor().await.unwrap(), Some(head(seq)));
        }
        assert_eq!(anchor_objects(&session), vec![slot(11), slot(12)]);
        // The slot being written is lost (as a torn write would lose it): the
        // other still holds the previous head.
        let newest = session
            .raw()
            .find_objects(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Label(slot(12).into_bytes()),
            ])
            .unwrap();
        session.raw().destroy_object(newest[0]).unwrap();
        assert_eq!(hsm.read_anchor().await.unwrap(), Some(head(11)));
        // The next write makes the missing slot again.
        hsm.write_anchor(head(13)).await.unwrap();
        assert_eq!(anchor_objects(&session), vec![slot(11), slot(13)]);
        assert_eq!(hsm.read_anchor().await.unwrap(), Some(head(13)));
    });
}
