//! HSM faults and the audit log's defences, through the service: a missing
//! module, a wrong PIN, the token directory moved away and back, a tampered
//! audit record, and a database restored from before the last signing.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use axum::http::StatusCode;
use secrecy::SecretString;
use signer::audit::{self, Verification};
use signer::hsm::pool::HsmPool;
use signer::service::{AnchorCheckError, check_anchor};
use support::{Service, payment, settings_all};
use test_support::softhsm::TestToken;

#[test]
fn an_unloadable_module_answers_503_and_stores_nothing() {
    let Some((mut service, rt)) =
        Service::isolated("an_unloadable_module_answers_503_and_stores_nothing")
    else {
        return;
    };
    let mut settings = settings_all(service.token());
    settings.module_path = "/nonexistent/libpkcs11.so".into();
    service.with_hsm(HsmPool::new(settings));
    let (_wallet, psbt) = payment(&service.hot, &[300_000], 100_000);
    rt.block_on(async {
        let (status, health) = service.call("GET", "/v1/health", None, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(health["code"], "HSM_MODULE_UNLOADABLE");
        assert_eq!(health["database"], "ok");
        assert!(
            health["hsm"]
                .as_str()
                .unwrap()
                .contains("/nonexistent/libpkcs11.so")
        );
        let (status, body) = service.submit(&service.hot, &psbt, "k").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["code"], "HSM_MODULE_UNLOADABLE");
        assert_eq!(
            service.count("signer_requests").await,
            0,
            "nothing half-signed stored"
        );
        assert_eq!(service.count("signer_audit").await, 0);
        assert_eq!(service.hsm.sign_calls(), 0);
    });
}

#[test]
fn a_wrong_pin_answers_503_and_attempts_are_limited() {
    let Some((mut service, rt)) =
        Service::isolated("a_wrong_pin_answers_503_and_attempts_are_limited")
    else {
        return;
    };
    let mut settings = settings_all(service.token());
    settings.pin = hsm_config::pin::UserPin::new(SecretString::from("wrong-pin"));
    settings.max_pin_attempts = 2;
    service.with_hsm(HsmPool::new(settings));
    // Login is per process: the test token's own session would make any PIN
    // pass (CKR_USER_ALREADY_LOGGED_IN). Closing it logs the token out.
    let token = service.token.take().unwrap();
    let (module, label) = (token.module().clone(), token.token_label().to_owned());
    drop(token);
    let (_wallet, psbt) = payment(&service.hot, &[300_000], 100_000);
    rt.block_on(async {
        let (status, body) = service.submit(&service.hot, &psbt, "k").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["code"], "HSM_WRONG_PIN");
        let (_, body) = service.submit(&service.hot, &psbt, "k").await;
        assert_eq!(body["code"], "HSM_PIN_ATTEMPTS_EXHAUSTED", "{body}");
        // No further attempt reaches the token.
        let (_, health) = service.call("GET", "/v1/health", None, None).await;
        assert_eq!(health["code"], "HSM_PIN_ATTEMPTS_EXHAUSTED");
        assert_eq!(service.count("signer_requests").await, 0);
        assert_eq!(service.hsm.sign_calls(), 0);
    });
    // The token itself still takes the right PIN (the service stopped trying).
    module.open_session(&label, &TestToken::user_pin()).unwrap();
}

#[test]
fn the_token_moved_away_answers_503_and_the_service_recovers_when_it_is_back() {
    let Some((service, rt)) = Service::isolated(
        "the_token_moved_away_answers_503_and_the_service_recovers_when_it_is_back",
    ) else {
        return;
    };
    let (_wallet, psbt) = payment(&service.hot, &[300_000, 200_000], 100_000);
    let conf = std::fs::read_to_string(std::env::var("SOFTHSM2_CONF").unwrap()).unwrap();
    let dir = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("directories.tokendir"))
        .map(|v| v.trim_start_matches([' ', '=']).trim().to_owned())
        .unwrap();
    let aside = format!("{dir}.away");
    rt.block_on(async {
        let (status, _) = service.call("GET", "/v1/health", None, None).await;
        assert_eq!(status, StatusCode::OK);
        std::fs::rename(&dir, &aside).unwrap();
        let (status, health) = service.call("GET", "/v1/health", None, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
        let (status, body) = service.submit(&service.hot, &psbt, "k").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(body["code"].as_str().unwrap().starts_with("HSM_"), "{body}");
        assert_eq!(
            service.count("signer_requests").await,
            0,
            "nothing half-signed stored"
        );
        std::fs::rename(&aside, &dir).unwrap();
        let (status, health) = service.call("GET", "/v1/health", None, None).await;
        assert_eq!(status, StatusCode::OK, "{health}");
        let (status, body) = service.submit(&service.hot, &psbt, "k").await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["status"], "signed");
    });
}

#[test]
fn audit_verify_reports_the_first_tampered_record() {
    let Some((service, rt)) = Service::isolated("audit_verify_reports_the_first_tampered_record")
    else {
        return;
    };
    let (_wallet, psbt) = payment(&service.hot, &[300_000], 100_000);
    rt.block_on(async {
        let (_, body) = service.submit(&service.hot, &psbt, "k").await;
        assert_eq!(body["status"], "signed");
        let records = service.count("signer_audit").await;
        assert!(matches!(
            audit::verify(&service.store).await.unwrap(),
            Verification::Intact { head } if head.seq == records
        ));
        // The table refuses updates and deletes.
        let refused = sqlx::query("DELETE FROM signer_audit WHERE seq = 4")
            .execute(service.store.pool())
            .await;
        assert!(refused.is_err());
        // Someone with the owner's rights goes around the trigger.
        sqlx::raw_sql(
            "ALTER TABLE signer_audit DISABLE TRIGGER signer_audit_no_update;
             UPDATE signer_audit SET body = replace(body, 'withdrawal 42', 'withdrawal 43')
             WHERE seq = 1;",
        )
        .execute(service.store.pool())
        .await
        .unwrap();
        let Verification::Broken { seq, reason } = audit::verify(&service.store).await.unwrap()
        else {
            panic!("tampering not detected");
        };
        assert_eq!(seq, 1, "{reason}");
        let mut out = Vec::new();
        let count = audit::export(&service.store, &mut out).await.unwrap();
        assert_eq!(count as i64, records);
        assert_eq!(
            String::from_utf8(out).unwrap().lines().count() as i64,
            records
        );
    });
}

#[test]
fn a_database_restored_from_before_the_last_signing_is_refused_at_start() {
    let Some((service, rt)) =
        Service::isolated("a_database_restored_from_before_the_last_signing_is_refused_at_start")
    else {
        return;
    };
    let (_w1, first) = payment(&service.hot, &[300_000], 100_000);
    let (_w2, second) = payment(&service.hot, &[300_000], 150_000);
    rt.block_on(async {
        let (_, body) = service.submit(&service.hot, &first, "one").await;
        assert_eq!(body["status"], "signed");
        // The backup: a copy of the database as it is now.
        service.store.pool().close().await;
        let backup = service.db.copy().await;
        let store = service.db.store(4).await;
        let hsm = Arc::clone(&service.hsm);
        let state = signer::service::AppState::new(
            store.clone(),
            Arc::clone(&hsm),
            Arc::new(signer::service::NoQuorum),
            check_anchor(&store, &hsm).await.unwrap(),
        );
        let app = signer::service::router(state);
        let body = serde_json::json!({"policy_id": service.hot.id.to_string(),
            "psbt": second.to_string(), "purpose": "p", "idempotency_key": "two"});
        let (status, answer) = support::call(
            &app,
            "POST",
            "/v1/signing-requests",
            Some(&service.client),
            Some(body.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        assert_eq!(answer["status"], "signed");
        // The current database starts; the restored backup does not.
        check_anchor(&store, &hsm).await.unwrap();
        let restored = backup.store(2).await;
        let err = check_anchor(&restored, &hsm).await.unwrap_err();
        assert!(matches!(err, AnchorCheckError::Behind { .. }), "{err}");
        assert!(err.to_string().contains("older than the last signing"));
    });
}
