//! The SMTP notifier against an in-repo SMTP stand-in (real SMTP over TCP on
//! 127.0.0.1): codes delivered to the right recipient and usable, AUTH checked, and what
//! the bank does when the server refuses, is down or stalls.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod common;
mod standins;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::{TestLedger, code_in, id, ledger, users};
use coordinator::api::ApiConfig;
use coordinator::bank::{
    Bank, BankConfig, BankError, Identity, Notification, Notifier, NotifyError, PasswordCost,
    Secret,
};
use coordinator::notify::{NotifierConfig, RoutingNotifier, SmtpConfig, SmtpNotifier, SmtpTls};
use standins::smtp::{Behaviour, SmtpStandIn, StandInTls};
use tower::ServiceExt;

const USER: &str = "bastion-relay";
const PASSWORD: &str = "relay password 42";

fn smtp_config(port: u16, auth: bool, timeout_secs: u64) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".to_owned(),
        port: Some(port),
        tls: SmtpTls::None,
        from: "Bastion <codes@bank.example>".to_owned(),
        timeout_secs,
        hello_name: Some("coordinator.test".to_owned()),
        username: auth.then(|| USER.to_owned()),
        password_env: auth.then(|| "UNUSED_PASSWORD_GIVEN_DIRECTLY".to_owned()),
        password_file: None,
        ca_file: None,
    }
}

fn smtp(port: u16, password: Option<&str>, timeout_secs: u64) -> Arc<dyn Notifier> {
    let config = smtp_config(port, password.is_some(), timeout_secs);
    Arc::new(SmtpNotifier::new(&config, password.map(Secret::new)).unwrap())
}

fn bank(t: &TestLedger, notifier: Arc<dyn Notifier>) -> Bank {
    let config = BankConfig {
        password_cost: PasswordCost::insecure_for_tests(),
        ..BankConfig::default()
    };
    Bank::new(t.ledger.clone(), notifier, config)
}

fn standin_with_auth() -> Behaviour {
    Behaviour {
        credentials: Some((USER.to_owned(), PASSWORD.to_owned())),
        ..Behaviour::default()
    }
}

async fn outbox(t: &TestLedger) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM notification_outbox")
        .fetch_one(t.ledger.pool())
        .await
        .unwrap()
}

/// A port with nothing listening on it.
async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

#[tokio::test]
async fn registration_code_is_delivered_by_smtp_and_confirms_the_registration() {
    let t = ledger().await;
    let server = SmtpStandIn::start(standin_with_auth()).await;
    // The production path: a config file naming a password file, built into the router
    // of channels.
    let password_file =
        std::env::temp_dir().join(format!("smtp-password-{}", uuid::Uuid::now_v7()));
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let text = format!(
        "email = \"smtp\"\nsms = \"none\"\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\n\
         tls = \"none\"\nfrom = \"Bastion <codes@bank.example>\"\nusername = \"{USER}\"\n\
         password_file = {:?}\n",
        server.addr.port(),
        password_file.display().to_string(),
    );
    let notifier = NotifierConfig::parse(&text)
        .unwrap()
        .build(t.ledger.pool())
        .unwrap();
    std::fs::remove_file(&password_file).unwrap();
    assert!(
        !format!("{notifier:?}").contains(PASSWORD),
        "the password shows in Debug"
    );
    let b = bank(&t, notifier);

    let alice = id("Alice@Example.com");
    b.register(&alice).await.unwrap();

    let messages = server.messages();
    assert_eq!(messages.len(), 1, "one message");
    let m = &messages[0];
    assert_eq!(m.rcpt_to, vec!["alice@example.com".to_owned()]);
    assert_eq!(m.mail_from, "codes@bank.example");
    assert_eq!(m.auth_user.as_deref(), Some(USER));
    assert_eq!(
        m.hello, "[127.0.0.1]",
        "lettre's default without a hello_name"
    );
    assert_eq!(m.header("To").as_deref(), Some("alice@example.com"));
    assert_eq!(
        m.header("Subject").as_deref(),
        Some("Confirm your registration")
    );
    assert!(m.header("From").unwrap().contains("codes@bank.example"));
    assert!(
        m.body().contains("It expires in 10 minutes."),
        "{}",
        m.body()
    );
    assert!(
        m.body().contains("Use it to confirm your registration."),
        "{}",
        m.body()
    );
    assert_eq!(outbox(&t).await, 0, "nothing went to the outbox");

    let code = code_in(m.body());
    let (session, account) = b.confirm_code(&alice, &code).await.unwrap();
    let p = b.authenticate(session.token.expose()).await.unwrap();
    assert_eq!(p.account_id, account);

    // A login code takes the same way, with its own subject.
    b.request_code(&alice).await.unwrap();
    let messages = server.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[1].header("Subject").as_deref(),
        Some("Your login code")
    );
    b.confirm_code(&alice, &code_in(messages[1].body()))
        .await
        .unwrap();
}

#[tokio::test]
async fn starttls_and_implicit_tls_deliver_encrypted_to_a_relay_with_a_private_ca() {
    let t = ledger().await;
    for (mode, who) in [
        (SmtpTls::Starttls, "starttls@example.com"),
        (SmtpTls::Implicit, "implicit@example.com"),
    ] {
        let tls = StandInTls::new(mode == SmtpTls::Implicit);
        let ca = TempFile::new(&tls.ca_pem);
        let server = SmtpStandIn::start(Behaviour {
            tls: Some(tls),
            ..standin_with_auth()
        })
        .await;
        let mut config = smtp_config(server.addr.port(), true, 5);
        config.tls = mode;
        config.ca_file = Some(ca.0.clone());
        let n = SmtpNotifier::new(&config, Some(Secret::new(PASSWORD))).unwrap();
        let b = bank(&t, Arc::new(n));
        b.register(&id(who)).await.unwrap();
        let messages = server.messages();
        assert_eq!(messages.len(), 1, "{mode:?}");
        let m = &messages[0];
        assert!(m.tls, "{mode:?}: not encrypted");
        assert_eq!(m.auth_user.as_deref(), Some(USER), "{mode:?}");
        assert_eq!(m.rcpt_to, vec![who.to_owned()]);
        b.confirm_code(&id(who), &code_in(m.body())).await.unwrap();
    }
}

#[tokio::test]
async fn an_untrusted_certificate_fails_before_the_password_is_sent() {
    let t = ledger().await;
    for implicit in [false, true] {
        let server = SmtpStandIn::start(Behaviour {
            tls: Some(StandInTls::new(implicit)),
            ..standin_with_auth()
        })
        .await;
        let mut config = smtp_config(server.addr.port(), true, 5);
        // The stand-in's self-signed certificate is not among the public roots.
        config.tls = if implicit {
            SmtpTls::Implicit
        } else {
            SmtpTls::Starttls
        };
        let n = SmtpNotifier::new(&config, Some(Secret::new(PASSWORD))).unwrap();
        let err = bank(&t, Arc::new(n))
            .register(&id("alice@example.com"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, BankError::Notify(NotifyError::Unavailable { .. })),
            "{err:?}"
        );
        assert_eq!(server.auth_attempts(), 0, "the password went out");
        assert!(server.messages().is_empty());
        assert_eq!(users(&t).await, 0);
    }
}

#[tokio::test]
async fn auth_login_is_used_when_the_server_offers_only_that() {
    let t = ledger().await;
    let server = SmtpStandIn::start(Behaviour {
        login_only: true,
        ..standin_with_auth()
    })
    .await;
    let b = bank(&t, smtp(server.addr.port(), Some(PASSWORD), 5));
    b.register(&id("alice@example.com")).await.unwrap();
    assert_eq!(server.auth_failures(), 0);
    let m = &server.messages()[0];
    assert_eq!(m.auth_user.as_deref(), Some(USER));
    b.confirm_code(&id("alice@example.com"), &code_in(m.body()))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_hello_name_and_message_lines_arrive_intact() {
    let server = SmtpStandIn::start(Behaviour::default()).await;
    let mut config = smtp_config(server.addr.port(), false, 5);
    config.hello_name = Some("coordinator.bank.example".to_owned());
    let n = SmtpNotifier::new(&config, None).unwrap();
    // Lines starting with a dot are stuffed by the client and unstuffed by the server;
    // a lone "." would otherwise end the message early.
    let body = "first line\r\n.\r\n.leading dot\r\n..two dots\r\nlast line\r\n";
    n.send(Notification {
        to: "bob@example.com".parse::<Identity>().unwrap(),
        subject: "Lines".to_owned(),
        body: Secret::new(body),
    })
    .await
    .unwrap();
    let m = &server.messages()[0];
    assert_eq!(m.hello, "coordinator.bank.example");
    assert_eq!(m.auth_user, None);
    assert_eq!(m.body().trim_end(), body.trim_end());
}

#[tokio::test]
async fn wrong_credentials_are_an_auth_error_and_the_registration_can_be_repeated() {
    let t = ledger().await;
    let server = SmtpStandIn::start(standin_with_auth()).await;
    let wrong = bank(&t, smtp(server.addr.port(), Some("not the password"), 5));
    let alice = id("alice@example.com");

    let err = wrong.register(&alice).await.unwrap_err();
    match &err {
        BankError::Notify(NotifyError::Auth { channel, detail }) => {
            assert_eq!(*channel, "smtp");
            assert!(detail.contains("535"), "{detail}");
            assert!(!detail.contains("not the password"), "{detail}");
        }
        other => panic!("expected an SMTP auth error, got {other:?}"),
    }
    assert_eq!(server.auth_failures(), 1);
    assert!(server.messages().is_empty());
    assert_eq!(users(&t).await, 0, "the failed registration left nothing");

    // Without credentials the server refuses MAIL: also an auth error.
    let none = bank(&t, smtp(server.addr.port(), None, 5));
    let err = none.register(&alice).await.unwrap_err();
    assert!(
        matches!(err, BankError::Notify(NotifyError::Auth { .. })),
        "{err:?}"
    );

    // Fixed credentials: the same identity registers.
    let right = bank(&t, smtp(server.addr.port(), Some(PASSWORD), 5));
    right.register(&alice).await.unwrap();
    assert_eq!(server.messages().len(), 1);
    assert_eq!(users(&t).await, 1);
}

#[tokio::test]
async fn a_server_that_is_down_fails_cleanly_and_the_registration_can_be_repeated() {
    let t = ledger().await;
    let down = bank(&t, smtp(closed_port().await, None, 5));
    let alice = id("alice@example.com");
    let err = down.register(&alice).await.unwrap_err();
    match &err {
        BankError::Notify(NotifyError::Unavailable { channel, detail }) => {
            assert_eq!(*channel, "smtp");
            assert!(detail.contains("127.0.0.1:"), "{detail}");
        }
        other => panic!("expected the SMTP server to be unavailable, got {other:?}"),
    }
    assert_eq!(users(&t).await, 0);
    let codes: i64 = sqlx::query_scalar("SELECT count(*) FROM one_time_codes")
        .fetch_one(t.ledger.pool())
        .await
        .unwrap();
    assert_eq!(codes, 0);
    // Logging in is refused the normal way: the user does not exist.
    assert!(matches!(
        down.login(&alice, &Secret::new("a long password")).await,
        Err(BankError::InvalidCredentials)
    ));

    let server = SmtpStandIn::start(Behaviour::default()).await;
    let up = bank(&t, smtp(server.addr.port(), None, 5));
    up.register(&alice).await.unwrap();
    let code = code_in(server.messages()[0].body());
    up.confirm_code(&alice, &code).await.unwrap();
}

#[tokio::test]
async fn a_silent_server_times_out() {
    let t = ledger().await;
    let server = SmtpStandIn::start(Behaviour {
        stall: true,
        ..Behaviour::default()
    })
    .await;
    let b = bank(&t, smtp(server.addr.port(), None, 1));
    let started = Instant::now();
    let err = b.register(&id("alice@example.com")).await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(err, BankError::Notify(NotifyError::Unavailable { .. })),
        "{err:?}"
    );
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(
        took < Duration::from_secs(5),
        "the timeout did not hold: {took:?}"
    );
    assert_eq!(server.connections(), 1);
    assert_eq!(users(&t).await, 0);
}

#[tokio::test]
async fn a_code_that_could_not_be_sent_does_not_replace_the_one_delivered() {
    let t = ledger().await;
    let server = SmtpStandIn::start(Behaviour::default()).await;
    let up = bank(&t, smtp(server.addr.port(), None, 5));
    let alice = id("alice@example.com");
    up.register(&alice).await.unwrap();
    let verify = code_in(server.messages()[0].body());
    up.confirm_code(&alice, &verify).await.unwrap();
    up.request_code(&alice).await.unwrap();
    let login = code_in(server.messages()[1].body());

    let down = bank(&t, smtp(closed_port().await, None, 5));
    let err = down.request_code(&alice).await.unwrap_err();
    assert!(
        matches!(err, BankError::Notify(NotifyError::Unavailable { .. })),
        "{err:?}"
    );
    // The code the user did receive still works.
    up.confirm_code(&alice, &login).await.unwrap();
}

#[tokio::test]
async fn starttls_is_required_when_configured_and_the_password_never_goes_in_clear() {
    let t = ledger().await;
    // The stand-in speaks plain SMTP only: it does not offer STARTTLS.
    let server = SmtpStandIn::start(standin_with_auth()).await;
    let mut config = smtp_config(server.addr.port(), true, 5);
    config.tls = SmtpTls::Starttls;
    let n = SmtpNotifier::new(&config, Some(Secret::new(PASSWORD))).unwrap();
    let b = bank(&t, Arc::new(n));
    let err = b.register(&id("alice@example.com")).await.unwrap_err();
    match &err {
        BankError::Notify(NotifyError::Unavailable { detail, .. }) => {
            assert!(detail.to_ascii_lowercase().contains("starttls"), "{detail}");
        }
        other => panic!("expected a STARTTLS failure, got {other:?}"),
    }
    assert_eq!(server.auth_attempts(), 0, "AUTH was tried without TLS");
    assert!(server.messages().is_empty());
    assert_eq!(users(&t).await, 0);
}

#[tokio::test]
async fn phone_identities_without_an_sms_channel_fail_specifically() {
    let t = ledger().await;
    let server = SmtpStandIn::start(Behaviour::default()).await;
    let router = RoutingNotifier::new(smtp(server.addr.port(), None, 5), None);
    let b = bank(&t, Arc::new(router));
    let err = b.register(&id("+41791234567")).await.unwrap_err();
    assert!(
        matches!(
            err,
            BankError::Notify(NotifyError::NoChannel { channel: "sms" })
        ),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "notifier: no sms channel is configured");
    assert_eq!(server.connections(), 0);
    assert_eq!(users(&t).await, 0);
    // A code request gets the same answer for a phone registered while an SMS channel
    // existed and for an unknown one: the error does not tell them apart.
    let with_outbox = bank(
        &t,
        Arc::new(coordinator::bank::OutboxNotifier::new(
            t.ledger.pool().clone(),
        )),
    );
    with_outbox.register(&id("+41791234567")).await.unwrap();
    for phone in ["+41791234567", "+41790000001"] {
        let err = b.request_code(&id(phone)).await.unwrap_err();
        assert!(
            matches!(
                err,
                BankError::Notify(NotifyError::NoChannel { channel: "sms" })
            ),
            "{phone}: {err:?}"
        );
    }
    // E-mail identities still go by SMTP through the router.
    b.register(&id("alice@example.com")).await.unwrap();
    assert_eq!(server.messages().len(), 1);
    assert_eq!(users(&t).await, 2);
}

async fn rest_register(router: &axum::Router, body: &str) -> (StatusCode, serde_json::Value) {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/auth/register")
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let res = router.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn the_api_reports_notifier_failures_with_safe_specific_errors() {
    let t = ledger().await;
    let port = closed_port().await;
    let router = RoutingNotifier::new(smtp(port, None, 5), None);
    let api = coordinator::api::router(bank(&t, Arc::new(router)), ApiConfig::default());

    let (s, v) = rest_register(&api, r#"{"email": "alice@example.com"}"#).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["code"], "NOTIFICATION_FAILED");
    assert!(!v["message"].as_str().unwrap().contains("127.0.0.1"), "{v}");
    let (s, v) = rest_register(&api, r#"{"phone": "+41791234567"}"#).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "CHANNEL_UNAVAILABLE");
    assert_eq!(users(&t).await, 0);
}

/// A file for a test (a notifier config, a CA certificate), removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("smtp-test-{}", uuid::Uuid::now_v7()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn serve_sends_codes_through_the_configured_smtp_server() {
    use sqlx::ConnectOptions;
    let db = test_support::ScratchDatabase::create(
        &test_support::db::database_url_from_env(),
        "coordinator_serve_smtp",
    )
    .await
    .expect("PostgreSQL must be reachable at DATABASE_URL");
    let url = db.options().to_url_lossy().to_string();
    let server = SmtpStandIn::start(Behaviour::default()).await;
    let file = TempFile::new(&format!(
        "email = \"smtp\"\nsms = \"none\"\n[smtp]\nhost = \"127.0.0.1\"\nport = {}\n\
         tls = \"none\"\nfrom = \"codes@bank.example\"\nhello_name = \"coordinator.test\"\n",
        server.addr.port()
    ));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--connections",
            "4",
        ])
        .arg("--notifier")
        .arg(&file.0)
        .env("DATABASE_URL", &url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let started = Instant::now();
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "no start");
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let register = |body: serde_json::Value| {
        client
            .post(format!("{base}/v1/auth/register"))
            .json(&body)
            .send()
    };
    let r = register(serde_json::json!({"email": "alice@example.com"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = register(serde_json::json!({"phone": "+41791234567"}))
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "no SMS channel configured");
    child.kill().unwrap();
    child.wait().unwrap();

    let messages = server.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].rcpt_to, vec!["alice@example.com".to_owned()]);
    assert_eq!(messages[0].hello, "coordinator.test");
}

#[test]
fn serve_refuses_to_start_when_the_smtp_password_is_missing() {
    let file = TempFile::new(
        "email = \"smtp\"\nsms = \"none\"\n[smtp]\nhost = \"smtp.example.com\"\n\
         tls = \"implicit\"\nfrom = \"codes@bank.example\"\nusername = \"bastion\"\n\
         password_env = \"BASTION_TEST_SMTP_PASSWORD_NOT_SET\"\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .args(["serve", "--bind", "127.0.0.1:0", "--notifier"])
        .arg(&file.0)
        // Never reached: the notifier file is read first.
        .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
        .env_remove("BASTION_TEST_SMTP_PASSWORD_NOT_SET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("BASTION_TEST_SMTP_PASSWORD_NOT_SET"),
        "{stderr}"
    );
}
