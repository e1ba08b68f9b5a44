//! `coordinator serve` as an operator runs it: probes, request ids, metrics and
//! `--no-migrate`, through the real binary on a scratch database.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod ops_common;

use std::time::Duration;

use ops_common::{Served, coordinator, failing, sample, scratch};
use serde_json::{Value, json};
use test_support::db::database_url_from_env;

#[tokio::test]
async fn probes_request_ids_and_metrics() {
    let (_db, url) = scratch("ops_probes").await;
    let mut s = Served::start(&url, &[], &[]);
    let report = s.wait_ready(200).await;
    assert_eq!(report["ready"], true);
    let names: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["database", "migrations", "ledger"]);
    let health = s
        .http
        .get(format!("http://{}/healthz", s.api))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // A well-formed id comes back; a malformed or missing one is replaced by a UUID.
    let sent = "req-7f3a.probe_1";
    let r = s
        .post(
            "/graphql",
            json!({"query": "{ usernameAvailable(username: \"alice\") }"}),
            &[("x-request-id", sent)],
        )
        .await;
    assert_eq!(r.headers()["x-request-id"], sent);
    for header in [None, Some("bad id\twith tab"), Some(&*"x".repeat(65))] {
        let mut req = s.http.get(format!("http://{}/readyz", s.api));
        if let Some(h) = header {
            req = req.header("x-request-id", h);
        }
        let r = req.send().await.unwrap();
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{header:?} gave {id}");
    }

    // A failed staff login: counted as an authentication failure, labelled by the
    // schema's field, never by the client's operation name.
    let r = s
        .post(
            "/admin/graphql",
            json!({"query": "mutation ClientChosenName123 { staffLogin(input: {email: \"nobody@bank.example\", password: \"wrong-password-1\"}) { authToken errors { code } } }"}),
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["data"]["staffLogin"]["errors"][0]["code"],
        "INVALID_CREDENTIALS"
    );
    let r = s
        .http
        .get(format!(
            "http://{}/v1/wallets/0193a4b2-0000-7000-8000-000000000001",
            s.api
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The pool sampler runs every second here.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = s.scrape().await;
    let ok_readyz = sample(
        &m,
        "bastion_http_requests_total",
        &["operation=\"GET /readyz\"", "outcome=\"ok\""],
    );
    assert!(ok_readyz.is_some_and(|n| n >= 4.0), "{m}");
    assert_eq!(
        sample(
            &m,
            "bastion_http_requests_total",
            &["operation=\"admin:staffLogin\""]
        ),
        Some(1.0),
        "{m}"
    );
    assert!(
        sample(
            &m,
            "bastion_http_requests_total",
            &["operation=\"graphql:usernameAvailable\""]
        )
        .is_some(),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "bastion_http_requests_total",
            &[
                "operation=\"GET /v1/wallets/{wallet_id}\"",
                "outcome=\"client_error\""
            ]
        ),
        Some(1.0),
        "{m}"
    );
    assert!(
        !m.contains("ClientChosenName123") && !m.contains("0193a4b2"),
        "{m}"
    );
    assert!(
        sample(
            &m,
            "bastion_auth_failures_total",
            &["kind=\"invalid_credentials\""]
        )
        .is_some_and(|n| n >= 1.0),
        "{m}"
    );
    assert!(
        sample(
            &m,
            "bastion_http_request_duration_seconds_count",
            &["operation=\"GET /readyz\""]
        )
        .is_some_and(|n| n >= 4.0),
        "{m}"
    );
    assert!(
        sample(&m, "bastion_db_pool_connections", &["state=\"used\""]).is_some(),
        "{m}"
    );
    assert_eq!(
        sample(&m, "bastion_payments", &["state=\"pending\""]),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "bastion_lightning_payments", &["state=\"pending\""]),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, "bastion_lightning_oldest_pending_seconds", &[]),
        Some(0.0),
        "{m}"
    );
}

#[tokio::test]
async fn a_replica_without_migrate_waits_not_ready_until_the_schema_is_current() {
    let (_db, url) = scratch("ops_nomigrate").await;
    let mut s = Served::start(&url, &["--no-migrate"], &[]);
    let (status, report) = s.readyz().await;
    assert_eq!(status, 503, "{report}");
    assert_eq!(report["ready"], false);
    let failed = failing(&report);
    assert!(failed.contains(&"migrations"), "{report}");
    assert!(!failed.contains(&"database"), "{report}");
    let why = report["checks"][1]["error"].as_str().unwrap();
    assert!(why.contains("coordinator migrate"), "{why}");
    // It did not migrate.
    let pool = coordinator::db::connect(&url, 1).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 0);

    let out = coordinator()
        .args(["--database-url", &url, "migrate"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let report = s.wait_ready(200).await;
    assert_eq!(failing(&report), Vec::<&str>::new());
    let r = s
        .post(
            "/graphql",
            json!({"query": "{ usernameAvailable(username: \"alice\") }"}),
            &[],
        )
        .await;
    assert_eq!(r.status(), 200);
    pool.close().await;
}

#[tokio::test]
async fn readiness_names_the_database_when_it_goes_away() {
    let (db, url) = scratch("ops_dbgone").await;
    let mut s = Served::start(&url, &[], &[]);
    s.wait_ready(200).await;
    let admin = coordinator::db::connect(&database_url_from_env(), 1)
        .await
        .unwrap();
    sqlx::query(&format!("DROP DATABASE \"{}\" WITH (FORCE)", db.name()))
        .execute(&admin)
        .await
        .unwrap();
    let report = s.wait_ready(503).await;
    assert!(failing(&report).contains(&"database"), "{report}");
    let why = report["checks"][0]["error"].as_str().unwrap();
    assert!(!why.is_empty(), "{report}");
    // Liveness is not readiness: the process still serves.
    let health = s
        .http
        .get(format!("http://{}/healthz", s.api))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    admin.close().await;
}
