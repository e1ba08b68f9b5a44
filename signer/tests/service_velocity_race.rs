//! Velocity stays exact when signings of one policy overlap, on real
//! PostgreSQL and a real SoftHSM token.
//!
//! The service signs after a velocity pre-check without the policy's lock and
//! checks again under the lock before it records the payment (ADR 0006): a
//! request that loses the race is refused with the velocity code, and the
//! signatures it made never leave the service.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use axum::http::StatusCode;
use signer::audit::{self, Verification};
use support::Service;

const WINDOW_CAP: i64 = 450_000;

async fn velocity_rows(service: &Service) -> (i64, i64) {
    sqlx::query_as("SELECT COUNT(*), COALESCE(SUM(value_out_sat), 0)::BIGINT FROM signer_velocity")
        .fetch_one(service.store.pool())
        .await
        .unwrap()
}

#[test]
fn a_signing_that_loses_the_velocity_race_is_refused_and_its_signatures_never_leave() {
    let Some((service, rt)) = Service::isolated(
        "a_signing_that_loses_the_velocity_race_is_refused_and_its_signatures_never_leave",
    ) else {
        return;
    };
    // 200,000 and 260,000 (plus fees) each fit the 450,000 window; together they do not.
    let (_wa, slow) = support::payment_to(&service.limited, &[300_000], 200_000, 4);
    let (_wb, fast) = support::payment_to(&service.limited, &[300_000], 260_000, 6);
    rt.block_on(async {
        // The slow request passes the pre-check and waits inside its HSM call...
        let guard = service.hsm.hold_next_sign();
        let slow_call = {
            let app = service.app.clone();
            let client = service.client.clone();
            let body = serde_json::json!({"policy_id": service.limited.id.to_string(),
                "psbt": slow.to_string(), "purpose": "withdrawal 42", "idempotency_key": "slow"});
            tokio::spawn(async move {
                support::call(
                    &app,
                    "POST",
                    "/v1/signing-requests",
                    Some(&client),
                    Some(body.to_string()),
                )
                .await
            })
        };
        while !guard.is_hung() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // ...while another signing of the policy commits and takes the budget.
        let (status, fast_answer) = service.submit(&service.limited, &fast, "fast").await;
        assert_eq!(status, StatusCode::CREATED, "{fast_answer}");
        assert_eq!(fast_answer["status"], "signed", "{fast_answer}");
        assert_eq!(service.hsm.sign_calls(), 1);

        drop(guard);
        let (status, answer) = slow_call.await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        assert_eq!(answer["status"], "refused", "{answer}");
        assert_eq!(answer["refusal"]["code"], "RULE_VELOCITY_24H", "{answer}");
        assert!(answer["signed_psbt"].is_null(), "{answer}");
        // Its signature was made, then dropped: never stored, never answered.
        assert_eq!(service.hsm.sign_calls(), 2);
        let slow_id = answer["id"].as_str().unwrap().to_owned();
        let stored: Option<String> =
            sqlx::query_scalar("SELECT signed_psbt FROM signer_requests WHERE id = $1::uuid")
                .bind(&slow_id)
                .fetch_one(service.store.pool())
                .await
                .unwrap();
        assert_eq!(stored, None);
        let (rows, sum) = velocity_rows(&service).await;
        assert_eq!(rows, 1, "only the committed signing counts");
        assert!(sum <= WINDOW_CAP, "{sum}");
        let records: Vec<(String, String)> = sqlx::query_as(
            "SELECT kind, body FROM signer_audit WHERE body LIKE '%' || $1 || '%' ORDER BY seq",
        )
        .bind(&slow_id)
        .fetch_all(service.store.pool())
        .await
        .unwrap();
        assert!(
            records.iter().all(|(kind, _)| kind != "signature"),
            "{records:?}"
        );
        let refusal = records
            .iter()
            .find(|(kind, _)| kind == "refusal")
            .map(|(_, body)| serde_json::from_str::<serde_json::Value>(body).unwrap())
            .unwrap();
        assert_eq!(refusal["code"], "RULE_VELOCITY_24H");
        assert_eq!(refusal["discarded_signatures"], 1, "{refusal}");

        // A replay answers the refusal again and signs nothing.
        let (status, replay) = service.submit(&service.limited, &slow, "slow").await;
        assert_eq!(status, StatusCode::OK, "{replay}");
        assert_eq!(replay["status"], "refused", "{replay}");
        assert_eq!(service.hsm.sign_calls(), 2);
        let Verification::Intact { head } = audit::verify(&service.store).await.unwrap() else {
            panic!("audit chain broken");
        };
        // The anchor covers the signing that was released (a refusal releases
        // nothing, so it is not anchored on its own).
        let anchor = service.hsm.read_anchor().await.unwrap().unwrap();
        assert!(anchor.seq <= head.seq);
        assert_eq!(
            audit::hash_at(&service.store, anchor.seq).await.unwrap(),
            Some(anchor.hash)
        );
    });
}

#[test]
fn concurrent_requests_past_the_velocity_window_never_all_sign() {
    let Some((service, rt)) =
        Service::isolated("concurrent_requests_past_the_velocity_window_never_all_sign")
    else {
        return;
    };
    // Six payments of 200,000 (plus fees) at once: the 450,000 window holds two.
    let payments: Vec<_> = (0..6u64)
        .map(|i| support::payment_to(&service.limited, &[300_000 + 1_000 * i], 200_000, 4))
        .collect();
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for (i, (_, psbt)) in payments.iter().enumerate() {
            let app = service.app.clone();
            let client = service.client.clone();
            let body = serde_json::json!({"policy_id": service.limited.id.to_string(),
                "psbt": psbt.to_string(), "purpose": "race", "idempotency_key": format!("race-{i}")});
            set.spawn(async move {
                support::call(
                    &app,
                    "POST",
                    "/v1/signing-requests",
                    Some(&client),
                    Some(body.to_string()),
                )
                .await
            });
        }
        let answers = set.join_all().await;
        let mut signed = 0;
        for (status, answer) in &answers {
            assert_eq!(*status, StatusCode::CREATED, "{answer}");
            if answer["status"] == "signed" {
                signed += 1;
            } else {
                assert_eq!(answer["status"], "refused", "{answer}");
                assert_eq!(answer["refusal"]["code"], "RULE_VELOCITY_24H", "{answer}");
                assert!(answer["signed_psbt"].is_null(), "{answer}");
            }
        }
        // Exactly two: never more (the window), never fewer (a refusal needs
        // two committed signings before it).
        assert_eq!(signed, 2, "{answers:?}");
        let (rows, sum) = velocity_rows(&service).await;
        assert_eq!(rows, 2);
        assert!(sum <= WINDOW_CAP, "{sum}");
        let stored: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM signer_requests WHERE signed_psbt IS NOT NULL",
        )
        .fetch_one(service.store.pool())
        .await
        .unwrap();
        assert_eq!(stored, 2);
        assert!(service.hsm.sign_calls() >= 2);
        let Verification::Intact { .. } = audit::verify(&service.store).await.unwrap() else {
            panic!("audit chain broken");
        };
    });
}
