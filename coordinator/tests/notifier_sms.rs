//! The Twilio SMS notifier against an in-repo stand-in of Twilio's Messages API: a
//! phone registration's code arrives by SMS and confirms it; wrong credentials, an
//! invalid number, a server down or slow give specific errors and leave nothing behind.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod common;
mod standins;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestLedger, code_in, id, ledger, users};
use coordinator::bank::{
    Bank, BankConfig, BankError, Notification, Notifier, NotifyError, PasswordCost, Secret,
};
use coordinator::notify::{NotifierConfig, TwilioConfig, TwilioNotifier};
use standins::twilio::{Behaviour, TwilioStandIn};

const SID: &str = "AC00000000000000000000000000000042";
const TOKEN: &str = "auth token 0123456789";
const FROM: &str = "+15005550006";

fn behaviour() -> Behaviour {
    Behaviour {
        account_sid: SID.to_owned(),
        auth_token: TOKEN.to_owned(),
        from: FROM.to_owned(),
        invalid_numbers: vec!["+41790000000".to_owned()],
        delay: None,
    }
}

fn twilio(base_url: &str, token: &str, timeout_secs: u64) -> Arc<dyn Notifier> {
    let config = TwilioConfig {
        account_sid: SID.to_owned(),
        from: FROM.to_owned(),
        base_url: base_url.to_owned(),
        timeout_secs,
        auth_token_env: Some("UNUSED_TOKEN_GIVEN_DIRECTLY".to_owned()),
        auth_token_file: None,
    };
    Arc::new(TwilioNotifier::new(&config, Secret::new(token)).unwrap())
}

fn bank(t: &TestLedger, notifier: Arc<dyn Notifier>) -> Bank {
    let config = BankConfig {
        password_cost: PasswordCost::insecure_for_tests(),
        ..BankConfig::default()
    };
    Bank::new(t.ledger.clone(), notifier, config)
}

#[tokio::test]
async fn a_phone_registration_code_arrives_by_sms_and_confirms_it() {
    let t = ledger().await;
    let server = TwilioStandIn::start(behaviour()).await;
    // The production path: a config file naming a token file.
    let token_file = std::env::temp_dir().join(format!("twilio-token-{}", uuid::Uuid::now_v7()));
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let text = format!(
        "email = \"outbox\"\nsms = \"twilio\"\n[twilio]\naccount_sid = \"{SID}\"\n\
         from = \"{FROM}\"\nbase_url = \"{}\"\nauth_token_file = {:?}\n",
        server.base_url,
        token_file.display().to_string(),
    );
    let notifier = NotifierConfig::parse(&text)
        .unwrap()
        .build(t.ledger.pool())
        .unwrap();
    std::fs::remove_file(&token_file).unwrap();
    assert!(!format!("{notifier:?}").contains(TOKEN));
    let b = bank(&t, notifier);

    let phone = id("+41 79 123 45 67");
    b.register(&phone).await.unwrap();
    let sms = server.messages();
    assert_eq!(sms.len(), 1);
    assert_eq!(sms[0].to, "+41791234567");
    assert_eq!(sms[0].from, FROM);
    assert!(sms[0].body.starts_with("Your code is "), "{}", sms[0].body);
    assert!(
        !sms[0].body.contains('\n'),
        "one paragraph: {:?}",
        sms[0].body
    );
    let (session, _) = b
        .confirm_code(&phone, &code_in(&sms[0].body))
        .await
        .unwrap();
    b.authenticate(session.token.expose()).await.unwrap();
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM notification_outbox")
        .fetch_one(t.ledger.pool())
        .await
        .unwrap();
    assert_eq!(outbox, 0);

    // E-mail still goes to the outbox in this configuration.
    b.register(&id("alice@example.com")).await.unwrap();
    assert_eq!(server.messages().len(), 1);
}

#[tokio::test]
async fn a_wrong_token_is_an_auth_error_and_nothing_is_kept() {
    let t = ledger().await;
    let server = TwilioStandIn::start(behaviour()).await;
    let b = bank(&t, twilio(&server.base_url, "not the token", 5));
    let err = b.register(&id("+41791234567")).await.unwrap_err();
    match &err {
        BankError::Notify(NotifyError::Auth { channel, detail }) => {
            assert_eq!(*channel, "twilio");
            assert!(detail.contains("20003"), "{detail}");
            assert!(!detail.contains("not the token"), "{detail}");
        }
        other => panic!("expected an auth error, got {other:?}"),
    }
    assert_eq!(server.requests(), 1);
    assert!(server.messages().is_empty());
    assert_eq!(users(&t).await, 0);
}

#[tokio::test]
async fn an_invalid_number_is_rejected_for_good() {
    let t = ledger().await;
    let server = TwilioStandIn::start(behaviour()).await;
    let b = bank(&t, twilio(&server.base_url, TOKEN, 5));
    let err = b.register(&id("+41790000000")).await.unwrap_err();
    match &err {
        BankError::Notify(NotifyError::Rejected { detail, .. }) => {
            assert!(detail.contains("21211"), "{detail}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(users(&t).await, 0);
}

#[tokio::test]
async fn a_server_down_or_too_slow_is_unavailable() {
    let t = ledger().await;
    let port = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    };
    let down = bank(&t, twilio(&format!("http://127.0.0.1:{port}"), TOKEN, 5));
    let err = down.register(&id("+41791234567")).await.unwrap_err();
    assert!(
        matches!(err, BankError::Notify(NotifyError::Unavailable { .. })),
        "{err:?}"
    );

    let slow = TwilioStandIn::start(Behaviour {
        delay: Some(Duration::from_secs(30)),
        ..behaviour()
    })
    .await;
    let b = bank(&t, twilio(&slow.base_url, TOKEN, 1));
    let started = Instant::now();
    let err = b.register(&id("+41791234567")).await.unwrap_err();
    match &err {
        BankError::Notify(NotifyError::Unavailable { detail, .. }) => {
            assert!(detail.contains("no answer within 1 s"), "{detail}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(users(&t).await, 0);
}

#[tokio::test]
async fn twilio_does_not_take_e_mail() {
    let server = TwilioStandIn::start(behaviour()).await;
    let n = twilio(&server.base_url, TOKEN, 5);
    let err = n
        .send(Notification {
            to: id("alice@example.com"),
            subject: "x".to_owned(),
            body: Secret::new("y"),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, NotifyError::NoChannel { channel: "email" }),
        "{err:?}"
    );
    assert_eq!(server.requests(), 0);
}
