//! User enumeration by timing, as an attacker would try it: log in as a staff member (and
//! as a user) who exists and as one who does not, and compare how long the answers take.
//! Both must cost one argon2id verification of the configured cost.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use coordinator::bank::{Bank, BankConfig, OutboxNotifier, PasswordCost, Secret, StaffRole};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Why this cannot flake, yet catches the bug:
///
/// - Both paths are dominated by the same work: one argon2id verification of the
///   configured cost (tens of milliseconds here), next to one indexed look-up (about a
///   millisecond). The runs are interleaved (known, unknown, known,
///   ...), so a load spike from other processes falls on both series alike, and the median
///   of 15 ignores up to 7 disturbed runs in either series. For the ratio to leave the
///   0.5x–2x band, one series alone would have to be slowed by half for most of its runs.
/// - Without the dummy verification, an unknown identity costs the look-up only: about
///   20 to 100 times less, far outside the band. The test measures that look-up too and checks
///   that it is at least 4 times cheaper than a verification, so it proves on this very
///   machine that a missing verification could not hide inside the band.
#[tokio::test]
async fn unknown_and_known_identities_cost_the_same_to_refuse() {
    let t = common::ledger().await;
    // Production's cost (19 MiB, 2 passes): the workspace builds argon2 optimised even in
    // test builds, so one verification takes tens of milliseconds here as in production,
    // far above the look-up. The dummy follows the configured cost, whatever it is (a unit
    // test checks its parameters against the default).
    let config = BankConfig {
        password_cost: PasswordCost::default(),
        ..BankConfig::default()
    };
    let notifier = Arc::new(OutboxNotifier::new(t.ledger.pool().clone()));
    let bank = Bank::new(t.ledger.clone(), notifier, config);
    let known = "ops@bank.example".parse().unwrap();
    let unknown = "nobody@bank.example".parse().unwrap();
    bank.create_staff(&known, &common::pw("the right password"), StaffRole::Admin)
        .await
        .unwrap();
    // A verified user with a password: the only kind whose hash a login checks.
    let user = common::id("alice@example.com");
    let stranger = common::id("mallory-target@example.com");
    common::signed_up(&bank, "alice@example.com").await;
    let wrong = Secret::new("a wrong guess");

    // Times one refused login.
    macro_rules! time {
        ($login:expr) => {{
            let start = Instant::now();
            let refused = $login.await.is_err();
            assert!(refused, "a wrong password must be refused");
            start.elapsed()
        }};
    }
    // Warm-up: the blocking pool and the connections.
    for _ in 0..2 {
        let _ = bank.staff_login(&known, &wrong).await;
        let _ = bank.staff_login(&unknown, &wrong).await;
    }
    let (mut staff_known, mut staff_unknown) = (Vec::new(), Vec::new());
    let (mut user_known, mut user_unknown) = (Vec::new(), Vec::new());
    let mut lookup = Vec::new();
    for _ in 0..15 {
        staff_known.push(time!(bank.staff_login(&known, &wrong)));
        staff_unknown.push(time!(bank.staff_login(&unknown, &wrong)));
        user_known.push(time!(bank.login(&user, &wrong)));
        user_unknown.push(time!(bank.login(&stranger, &wrong)));
        // What the unknown path would cost without the dummy verification: the look-up.
        let start = Instant::now();
        let _: Option<uuid::Uuid> =
            sqlx::query_scalar("SELECT id FROM staff WHERE email = $1 AND disabled_at IS NULL")
                .bind("nobody@bank.example")
                .fetch_optional(t.ledger.pool())
                .await
                .unwrap();
        lookup.push(start.elapsed());
    }
    let lookup = median(lookup);
    for (what, known, unknown) in [
        ("staff", median(staff_known), median(staff_unknown)),
        ("user", median(user_known), median(user_unknown)),
    ] {
        let ratio = unknown.as_secs_f64() / known.as_secs_f64();
        eprintln!("{what} login: known {known:?}, unknown {unknown:?}, look-up {lookup:?}");
        assert!(
            (0.5..=2.0).contains(&ratio),
            "{what} login: unknown {unknown:?} vs known {known:?} (ratio {ratio:.2}) tells \
             whether the identity exists"
        );
        assert!(
            known > lookup * 4,
            "{what} login: a verification ({known:?}) must dwarf the look-up ({lookup:?}), \
             or this test could not see a missing one"
        );
    }
}
