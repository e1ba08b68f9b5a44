//! Officers' approvals and policy changes through the HTTP API, as attacks, on
//! real PostgreSQL and a real SoftHSM token: every refused approval answers its
//! code, stores nothing, and `C_Sign` is never called; the quorum grows with
//! the amount; loosening waits for its delay and quorum, tightening does not.
#![allow(clippy::unwrap_used)]

mod officers;
mod support;

use axum::http::StatusCode;
use chrono::Utc;
use officers::{Key, approve, approve_in_an_hour, assert_refused, now, setup};
use serde_json::json;

#[test]
fn two_of_three_under_one_btc_distinct_officers_and_a_duplicate_counts_once() {
    let Some((s, rt)) = setup(
        "two_of_three_under_one_btc_distinct_officers_and_a_duplicate_counts_once",
        60,
    ) else {
        return;
    };
    rt.block_on(async {
        let (request, _) = s
            .request(&[30_000_000, 20_000_000], 40_000_000, "k-1")
            .await;
        let binding = s.binding(&request).await;
        assert_eq!(binding["required"], 2, "{binding}");
        assert_eq!(binding["counted"], 0);

        let alice = approve_in_an_hour(&s.alice, &binding);
        let (status, first) = s.post_approval(&request, &alice).await;
        assert_eq!(status, StatusCode::CREATED, "{first}");
        assert_eq!(first["request"]["status"], "pending_approval");
        assert_eq!(first["approvals"]["counted"], 1);
        assert_eq!(s.hsm.sign_calls(), 0, "one approval must not sign");

        // The same approval again: accepted, counted once.
        let (status, again) = s.post_approval(&request, &alice).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["new"], false);
        assert_eq!(again["approvals"]["counted"], 1);
        // Another approval by the same officer: refused, still one.
        let other = approve(&s.alice, &binding, now() + 1800);
        let (status, dup) = s.post_approval(&request, &other).await;
        assert_eq!(status, StatusCode::CONFLICT, "{dup}");
        assert_eq!(dup["code"], "APPROVAL_DUPLICATE_OFFICER");
        assert_eq!(s.approvals_stored().await, 1);
        assert_eq!(s.hsm.sign_calls(), 0, "a duplicate must not sign");

        // A second, distinct officer reaches 2 of 3: signed.
        let bob = approve_in_an_hour(&s.bob, &binding);
        let (status, signed) = s.post_approval(&request, &bob).await;
        assert_eq!(status, StatusCode::CREATED, "{signed}");
        assert_eq!(signed["request"]["status"], "signed", "{signed}");
        assert!(signed["request"]["signed_psbt"].is_string());
        let calls = s.hsm.sign_calls();
        assert!(calls > 0);
        // Bob's approval replayed: the same answer, no new signature.
        let (status, replay) = s.post_approval(&request, &bob).await;
        assert_eq!(status, StatusCode::OK, "{replay}");
        assert_eq!(
            replay["request"]["signed_psbt"],
            signed["request"]["signed_psbt"]
        );
        assert_eq!(s.hsm.sign_calls(), calls);
        // Carol, after the decision: not pending any more.
        let carol = approve_in_an_hour(&s.carol, &binding);
        let (status, late) = s.post_approval(&request, &carol).await;
        assert_eq!(status, StatusCode::CONFLICT, "{late}");
        assert_eq!(late["code"], "APPROVAL_NOT_PENDING");
        // The approvals are in the audit log.
        let audited: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM signer_audit WHERE kind = 'approval'")
                .fetch_one(s.store.pool())
                .await
                .unwrap();
        assert_eq!(audited, 2);
    });
}

#[test]
fn above_one_btc_the_quorum_grows_to_three_of_three() {
    let Some((s, rt)) = setup("above_one_btc_the_quorum_grows_to_three_of_three", 60) else {
        return;
    };
    rt.block_on(async {
        let (request, _) = s
            .request(&[100_000_000, 80_000_000], 150_000_000, "big-1")
            .await;
        let binding = s.binding(&request).await;
        assert_eq!(binding["required"], 3, "{binding}");
        for key in [&s.alice, &s.bob] {
            let (status, body) = s
                .post_approval(&request, &approve_in_an_hour(key, &binding))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            assert_eq!(body["request"]["status"], "pending_approval", "{body}");
        }
        assert_eq!(s.hsm.sign_calls(), 0, "2 of 3 must not sign above 1 BTC");
        let (status, body) = s
            .post_approval(&request, &approve_in_an_hour(&s.carol, &binding))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["request"]["status"], "signed", "{body}");
        assert!(s.hsm.sign_calls() > 0);
    });
}

#[test]
fn approvals_replayed_forged_expired_or_by_the_wrong_officer_are_refused() {
    let Some((s, rt)) = setup(
        "approvals_replayed_forged_expired_or_by_the_wrong_officer_are_refused",
        60,
    ) else {
        return;
    };
    rt.block_on(async {
        let (a, _) = s.request(&[30_000_000], 10_000_000, "a").await;
        let (b, _) = s.request(&[40_000_000], 20_000_000, "b").await;
        let binding_a = s.binding(&a).await;
        let binding_b = s.binding(&b).await;

        // Replayed from another request.
        let for_a = approve_in_an_hour(&s.alice, &binding_a);
        assert_refused(
            &s,
            &b,
            &for_a,
            StatusCode::UNPROCESSABLE_ENTITY,
            "APPROVAL_WRONG_REQUEST",
        )
        .await;
        // Fields rewritten to name the other request: the signature no longer holds.
        let mut rewritten = for_a.clone();
        for field in ["request_id", "unsigned_txid", "analysis_hash"] {
            let source = match field {
                "request_id" => "request_id",
                "unsigned_txid" => "unsigned_txid",
                _ => "analysis_sha256",
            };
            let target = if field == "unsigned_txid" {
                "txid"
            } else {
                field
            };
            rewritten[target] = binding_b[source].clone();
        }
        assert_refused(
            &s,
            &b,
            &rewritten,
            StatusCode::FORBIDDEN,
            "APPROVAL_SIGNATURE_INVALID",
        )
        .await;
        // Another transaction or another analysis than the one reviewed (the PSBT changed).
        let mut other_tx = binding_b.clone();
        other_tx["unsigned_txid"] = binding_a["unsigned_txid"].clone();
        let approval = approve_in_an_hour(&s.alice, &other_tx);
        assert_refused(
            &s,
            &b,
            &approval,
            StatusCode::UNPROCESSABLE_ENTITY,
            "APPROVAL_WRONG_TXID",
        )
        .await;
        let mut other_analysis = binding_b.clone();
        other_analysis["analysis_sha256"] = binding_a["analysis_sha256"].clone();
        let approval = approve_in_an_hour(&s.alice, &other_analysis);
        assert_refused(
            &s,
            &b,
            &approval,
            StatusCode::UNPROCESSABLE_ENTITY,
            "APPROVAL_WRONG_ANALYSIS",
        )
        .await;
        let mut other_instance = binding_b.clone();
        other_instance["instance"] = json!("another-signer");
        let approval = approve_in_an_hour(&s.alice, &other_instance);
        assert_refused(
            &s,
            &b,
            &approval,
            StatusCode::UNPROCESSABLE_ENTITY,
            "APPROVAL_WRONG_POLICY",
        )
        .await;

        // Expired, and valid for longer than allowed.
        let expired = approve(&s.alice, &binding_b, now() - 1);
        assert_refused(
            &s,
            &b,
            &expired,
            StatusCode::UNPROCESSABLE_ENTITY,
            "APPROVAL_EXPIRED",
        )
        .await;
        let too_long = approve(&s.alice, &binding_b, now() + 25 * 3600);
        assert_refused(
            &s,
            &b,
            &too_long,
            StatusCode::UNPROCESSABLE_ENTITY,
            "APPROVAL_EXPIRY_TOO_FAR",
        )
        .await;

        // Self-approval: dave also acts as the client that submitted the request.
        let by_initiator = approve_in_an_hour(&s.dave, &binding_b);
        assert_refused(
            &s,
            &b,
            &by_initiator,
            StatusCode::FORBIDDEN,
            "APPROVAL_SELF",
        )
        .await;

        // Unknown officer.
        let stranger = approve_in_an_hour(&Key::new(), &binding_b);
        assert_refused(
            &s,
            &b,
            &stranger,
            StatusCode::FORBIDDEN,
            "APPROVAL_OFFICER_UNKNOWN",
        )
        .await;

        // Not an approval at all.
        let (status, body) = s
            .call(
                "POST",
                &format!(
                    "/v1/signing-requests/{}/approvals",
                    b["id"].as_str().unwrap()
                ),
                Some(json!({"officer": "nope"})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["code"], "BODY_NOT_JSON");
        assert_eq!(s.hsm.sign_calls(), 0);

        // Control: the genuine approvals of b still sign it.
        for key in [&s.alice, &s.bob] {
            s.post_approval(&b, &approve_in_an_hour(key, &binding_b))
                .await;
        }
        assert_eq!(s.binding(&b).await["status"], "signed");
    });
}

#[test]
fn tightening_is_immediate_loosening_waits_for_its_delay_and_quorum() {
    let Some((s, rt)) = setup(
        "tightening_is_immediate_loosening_waits_for_its_delay_and_quorum",
        3,
    ) else {
        return;
    };
    rt.block_on(async {
        // A payment signed under the policy in force: its value counts in the velocity ledger.
        let (paid, _) = s.request(&[30_000_000], 10_000_000, "paid").await;
        let binding = s.binding(&paid).await;
        for key in [&s.alice, &s.bob] {
            s.post_approval(&paid, &approve_in_an_hour(key, &binding))
                .await;
        }
        assert_eq!(s.binding(&paid).await["status"], "signed");
        let signed_calls = s.hsm.sign_calls();
        let ledger = |policy: &policies::PolicyDocument| {
            let id = policy.id.to_string();
            let pool = s.store.pool().clone();
            async move {
                sqlx::query_scalar::<_, i64>(
                    "SELECT COUNT(*) FROM signer_velocity WHERE policy_id = $1",
                )
                .bind(id)
                .fetch_one(&pool)
                .await
                .unwrap()
            }
        };
        assert_eq!(ledger(&s.cold).await, 1);

        // Tightening: a per-transaction maximum where there was none. In force at once.
        let tight = s.with_max_per_tx(&s.cold, 50_000_000, 2);
        let (status, change) = s
            .propose(
                json!({"kind": "policy", "document": tight, "replaces": s.cold.id.to_string()}),
                "tighten-1",
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{change}");
        assert_eq!(change["direction"], "tightening");
        assert_eq!(change["status"], "effective", "{change}");
        assert_eq!(s.policy_state(&s.cold).await.as_deref(), Some("retired"));
        assert_eq!(s.policy_state(&tight).await.as_deref(), Some("active"));
        // What was spent under the old document still counts under the new one: a new
        // document id must not reset the velocity windows.
        assert_eq!(ledger(&s.cold).await, 0);
        assert_eq!(ledger(&tight).await, 1);
        // The same proposal again answers the same change; another body under its key is a conflict.
        let (status, again) = s
            .propose(
                json!({"kind": "policy", "document": tight, "replaces": s.cold.id.to_string()}),
                "tighten-1",
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["id"], change["id"]);
        let (status, conflict) = s
            .propose(
                json!({"kind": "revoke_officer", "officer": s.carol.id()}),
                "tighten-1",
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
        assert_eq!(conflict["code"], "IDEMPOTENCY_CONFLICT");

        // Loosening: the maximum raised. Pending until the delay and the quorum.
        let loose = s.with_max_per_tx(&tight, 200_000_000, 3);
        let (status, change) = s
            .propose(
                json!({"kind": "policy", "document": loose, "replaces": tight.id.to_string()}),
                "loosen-1",
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{change}");
        assert_eq!(change["direction"], "loosening");
        assert_eq!(change["status"], "pending");
        assert_eq!(change["quorum"], 2);
        assert_eq!(s.policy_state(&loose).await, None);
        // Dave proposed it through the custodian client: he may not approve it.
        let (status, body) = s.approve_change(&s.dave, &change).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "APPROVAL_SELF");
        // The quorum before the delay: still not in force.
        for key in [&s.alice, &s.bob] {
            let (status, body) = s.approve_change(key, &change).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            assert_eq!(body["status"], "pending", "{body}");
        }
        assert_eq!(s.change(&change).await["status"], "pending");
        assert_eq!(
            s.policy_state(&loose).await,
            None,
            "a loosening before its delay"
        );
        assert_eq!(s.policy_state(&tight).await.as_deref(), Some("active"));

        // After the delay it takes effect (the next look at it applies it).
        let not_before: chrono::DateTime<Utc> =
            change["not_before"].as_str().unwrap().parse().unwrap();
        let wait = (not_before - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait + std::time::Duration::from_millis(300)).await;
        let after = s.change(&change).await;
        assert_eq!(after["status"], "effective", "{after}");
        assert_eq!(s.policy_state(&loose).await.as_deref(), Some("active"));
        assert_eq!(s.policy_state(&tight).await.as_deref(), Some("retired"));
        // The client may now use the new document.
        let (_, policies) = s.call("GET", "/v1/policies", None).await;
        assert!(
            policies.to_string().contains(&loose.id.to_string()),
            "{policies}"
        );
        assert_eq!(ledger(&loose).await, 1);
        assert_eq!(
            s.hsm.sign_calls(),
            signed_calls,
            "a policy change signs nothing"
        );
    });
}

#[test]
fn a_loosening_without_its_quorum_never_takes_effect_and_revocation_needs_the_quorum() {
    let Some((s, rt)) = setup(
        "a_loosening_without_its_quorum_never_takes_effect_and_revocation_needs_the_quorum",
        0,
    ) else {
        return;
    };
    rt.block_on(async {
        // A new officer is a loosening: no delay here, but one approval is not the quorum.
        let erin = Key::new();
        let (status, add) = s
            .propose(
                json!({"kind": "add_officer", "officer": erin.id(), "name": "erin"}),
                "add-erin",
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{add}");
        assert_eq!(add["direction"], "loosening");
        let (status, body) = s.approve_change(&s.alice, &add).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(s.change(&add).await["status"], "pending");
        let (_, officers) = s.call("GET", "/v1/officers", None).await;
        assert!(!officers.to_string().contains(&erin.id().to_string()));
        // Erin cannot approve her own admission.
        let (status, body) = s.approve_change(&erin, &add).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "APPROVAL_OFFICER_UNKNOWN");

        // Revoking carol: a tightening, but only once the quorum signs it.
        let (status, revoke) = s
            .propose(
                json!({"kind": "revoke_officer", "officer": s.carol.id()}),
                "revoke-carol",
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{revoke}");
        assert_eq!(revoke["direction"], "tightening");
        assert_eq!(revoke["status"], "pending");
        // Carol may not approve her own revocation.
        let (status, body) = s.approve_change(&s.carol, &revoke).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "APPROVAL_SELF");
        for key in [&s.alice, &s.bob] {
            s.approve_change(key, &revoke).await;
        }
        assert_eq!(s.change(&revoke).await["status"], "effective");
        let (_, officers) = s.call("GET", "/v1/officers", None).await;
        let carol = officers["officers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["name"] == "carol")
            .unwrap()
            .clone();
        assert_eq!(carol["revoked"], true, "{officers}");

        // A revoked officer's approval is refused, and nothing is signed.
        let (request, _) = s.request(&[30_000_000], 10_000_000, "after-revoke").await;
        let binding = s.binding(&request).await;
        let by_carol = approve_in_an_hour(&s.carol, &binding);
        assert_refused(
            &s,
            &request,
            &by_carol,
            StatusCode::FORBIDDEN,
            "APPROVAL_OFFICER_REVOKED",
        )
        .await;
        // Nor does a revoked officer approve a change.
        let (status, body) = s.approve_change(&s.carol, &add).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "APPROVAL_OFFICER_REVOKED");
        // The second approval completes erin's admission.
        let (status, body) = s.approve_change(&s.bob, &add).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["status"], "effective", "{body}");
        // Erin now counts: with alice she makes the quorum carol no longer can.
        let binding = s.binding(&request).await;
        for key in [&erin, &s.alice] {
            let (status, body) = s
                .post_approval(&request, &approve_in_an_hour(key, &binding))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        assert_eq!(s.binding(&request).await["status"], "signed");
    });
}

#[test]
fn the_last_approvals_at_once_sign_once_and_an_approval_that_expired_stops_counting() {
    let Some((s, rt)) = setup(
        "the_last_approvals_at_once_sign_once_and_an_approval_that_expired_stops_counting",
        60,
    ) else {
        return;
    };
    rt.block_on(async {
        // An approval that expires before the quorum is reached no longer counts.
        let (request, psbt) = s.request(&[30_000_000], 10_000_000, "expiring").await;
        assert_eq!(psbt.inputs.len(), 1);
        let binding = s.binding(&request).await;
        let short = approve(&s.alice, &binding, now() + 2);
        let (status, body) = s.post_approval(&request, &short).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
        let (status, body) = s
            .post_approval(&request, &approve_in_an_hour(&s.bob, &binding))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["request"]["status"], "pending_approval", "{body}");
        assert_eq!(body["approvals"]["counted"], 1, "{body}");
        assert_eq!(s.hsm.sign_calls(), 0, "an expired approval must not count");

        // A second request: the two approvals it needs arrive at the same instant.
        let (other, psbt) = s.request(&[40_000_000], 10_000_000, "racing").await;
        assert_eq!(psbt.inputs.len(), 1);
        let other_binding = s.binding(&other).await;
        let alice = approve_in_an_hour(&s.alice, &other_binding);
        let carol = approve_in_an_hour(&s.carol, &other_binding);
        let ((first, one), (second, two)) = tokio::join!(
            s.post_approval(&other, &alice),
            s.post_approval(&other, &carol)
        );
        assert_eq!(first, StatusCode::CREATED, "{one}");
        assert_eq!(second, StatusCode::CREATED, "{two}");
        // Whichever completes the quorum signs; the request is signed once.
        let signed: Vec<_> = [&one, &two]
            .into_iter()
            .filter(|a| a["request"]["status"] == "signed")
            .collect();
        assert!(!signed.is_empty(), "{one} {two}");
        let view = s.binding(&other).await;
        assert_eq!(view["status"], "signed", "{view}");
        assert_eq!(view["counted"], 2, "{view}");
        // One input, all three keys of the 2-of-3 held: one signing is the two
        // digests the policy needs, never four.
        assert_eq!(s.hsm.sign_calls(), 2);
        let decisions: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM signer_requests WHERE status = 'signed'")
                .fetch_one(s.store.pool())
                .await
                .unwrap();
        assert_eq!(decisions, 1);
    });
}

#[test]
fn an_unknown_change_is_not_found_and_nothing_changes() {
    let Some((s, rt)) = setup("an_unknown_change_is_not_found_and_nothing_changes", 60) else {
        return;
    };
    rt.block_on(async {
        let missing = json!({"id": uuid::Uuid::now_v7().to_string(), "instance": "signer-test",
                             "document_sha256": "00".repeat(32)});
        let (status, body) = s.approve_change(&s.alice, &missing).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["code"], "UNKNOWN_CHANGE");
        let (status, body) = s.call("GET", "/v1/policy-changes/not-an-id", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, body) = s
            .propose(
                json!({"kind": "revoke_officer", "officer": Key::new().id()}),
                "r-1",
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["code"], "APPROVAL_OFFICER_UNKNOWN");
        let (status, body) = s.propose(json!({"kind": "grant_everything"}), "r-2").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["code"], "BODY_NOT_JSON");
        let changes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signer_policy_changes")
            .fetch_one(s.store.pool())
            .await
            .unwrap();
        assert_eq!(changes, 0);
    });
}
