//! One hung HSM call never blocks other requests, on real PostgreSQL and a
//! real SoftHSM token.
//!
//! SoftHSM cannot be made to hang, so the pool's test hook (`test-hooks`
//! feature, turned on only for tests through the system-tests crate) blocks
//! the next signing call before it reaches `C_Sign`, as a PKCS#11 call that
//! never returns would; it holds no session while blocked, as a real hung call
//! would hold only its own.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use support::{COLD, HOT, Service, payment, settings};
use test_support::softhsm::TestToken;

const CALL_TIMEOUT: Duration = Duration::from_secs(3);

fn short_timeout(token: &TestToken) -> signer::hsm::pool::HsmSettings {
    let mut labels = vec![HOT];
    labels.extend(COLD);
    let mut s = settings(token, &labels);
    s.call_timeout = CALL_TIMEOUT;
    s
}

#[test]
fn a_hung_hsm_call_answers_503_stores_nothing_and_never_blocks_other_requests() {
    let mut labels = vec![HOT];
    labels.extend(COLD);
    let Some(token) = TestToken::isolated(
        "a_hung_hsm_call_answers_503_stores_nothing_and_never_blocks_other_requests",
        &labels,
    )
    .unwrap() else {
        return;
    };
    let rt = support::runtime();
    let service = rt.block_on(Service::start(token, short_timeout));
    rt.block_on(async {
        let (_, hung_psbt) = payment(&service.hot, &[300_000], 100_000);
        let (_, other_psbt) = payment(&service.limited, &[250_000], 100_000);
        let (_, after_psbt) = payment(&service.hot, &[400_000], 100_000);

        let guard = service.hsm.hang_next_sign();
        let hung = {
            let app = service.app.clone();
            let client = service.client.clone();
            let body = serde_json::json!({"policy_id": service.hot.id.to_string(),
                "psbt": hung_psbt.to_string(), "purpose": "hung", "idempotency_key": "hung"});
            tokio::spawn(async move {
                let t = Instant::now();
                let answer = support::call(
                    &app,
                    "POST",
                    "/v1/signing-requests",
                    Some(&client),
                    Some(body.to_string()),
                )
                .await;
                (answer, t.elapsed())
            })
        };
        while !guard.is_hung() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // Another policy's request signs while the first call hangs, on the
        // same pool, well inside the hung call's timeout.
        let t = Instant::now();
        let (status, other) = service.submit(&service.limited, &other_psbt, "other").await;
        assert_eq!(status, StatusCode::CREATED, "{other}");
        assert_eq!(other["status"], "signed", "{other}");
        assert!(t.elapsed() < CALL_TIMEOUT, "waited {:?}", t.elapsed());
        assert!(
            !hung.is_finished(),
            "the hung call answered before its timeout"
        );
        assert!(guard.is_hung());
        let signed_by_other = service.hsm.sign_calls();
        assert_eq!(signed_by_other, 1, "one input, one key");

        // The hung one answers 503 with its code at the timeout, storing nothing.
        let ((status, body), waited) = hung.await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["code"], "HSM_TIMEOUT", "{body}");
        assert!(waited >= CALL_TIMEOUT, "answered after {waited:?}");
        assert_eq!(
            service.hsm.sign_calls(),
            signed_by_other,
            "C_Sign was called"
        );
        assert_eq!(
            service.count("signer_requests").await,
            1,
            "the hung request was stored"
        );
        assert_eq!(service.count("signer_velocity").await, 1);
        let records: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM signer_audit WHERE body LIKE '%\"hung\"%'")
                .fetch_one(service.store.pool())
                .await
                .unwrap();
        assert_eq!(records, 0, "the hung request left audit records");

        // The pool dropped the hung handle; the next request opens fresh
        // sessions and signs, with the hung thread still blocked.
        let (status, after) = service.submit(&service.hot, &after_psbt, "after").await;
        assert_eq!(status, StatusCode::CREATED, "{after}");
        assert_eq!(after["status"], "signed", "{after}");
        assert!(guard.is_hung());
        drop(guard);
        // Released, the hung call fails without reaching C_Sign.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(service.hsm.sign_calls(), signed_by_other + 1);
        let (status, replay) = service.submit(&service.hot, &hung_psbt, "hung").await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "the hung request is new: {replay}"
        );
        assert_eq!(replay["status"], "signed", "{replay}");
    });
}
