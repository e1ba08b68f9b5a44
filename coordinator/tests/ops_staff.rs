//! The staff commands and JSON logs, through the real binary on a scratch database.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

mod ops_common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use ops_common::{Served, coordinator, scratch};
use serde_json::{Value, json};

fn staff(url: &str, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = coordinator()
        .args(["--database-url", url, "staff"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn staff_login(s: &Served, email: &str, password: &str) -> Option<String> {
    let r = s
        .post(
            "/admin/graphql",
            json!({"query": "mutation($i: StaffLoginInput!) { staffLogin(input: $i) { authToken errors { code } } }",
                   "variables": {"i": {"email": email, "password": password}}}),
            &[],
        )
        .await;
    let v: Value = r.json().await.unwrap();
    v["data"]["staffLogin"]["authToken"]
        .as_str()
        .map(str::to_owned)
}

/// The status of an admin query with `token`: 200 while the session works, 401 after.
async fn admin_query(s: &Served, token: &str) -> u16 {
    s.http
        .post(format!("http://{}/admin/graphql", s.api))
        .bearer_auth(token)
        .json(&json!({"query": "{ accountDetailsByEmail(email: \"nobody@bank.example\") { id } }"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn staff_created_by_the_cli_log_in_and_disabled_ones_cannot() {
    let (_db, url) = scratch("ops_staff").await;
    let mut s = Served::start(&url, &[], &[]);
    s.wait_ready(200).await;
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, "Admin-Passw0rd-Long\n").unwrap();

    let (code, out, err) = staff(
        &url,
        &[
            "create",
            "--role",
            "admin",
            "--username",
            "root@bank.example",
            "--password-file",
            pw_file.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created admin root@bank.example"), "{out}");
    // From standard input; treasury is a role.
    let (code, _, err) = staff(
        &url,
        &[
            "create",
            "--role",
            "treasury",
            "--username",
            "books@bank.example",
        ],
        Some("Treasury-Passw0rd-Long\n"),
    );
    assert_eq!(code, 0, "{err}");
    // Refused: an unknown role, a taken e-mail, a weak password; nothing is created.
    let (code, _, err) = staff(
        &url,
        &["create", "--role", "root", "--username", "x@bank.example"],
        Some("Whatever-Passw0rd-Long"),
    );
    assert_ne!(code, 0);
    assert!(err.contains("--role"), "{err}");
    let (code, _, _) = staff(
        &url,
        &[
            "create",
            "--role",
            "support",
            "--username",
            "root@bank.example",
        ],
        Some("Another-Passw0rd-Long"),
    );
    assert_ne!(code, 0);
    let (code, _, _) = staff(
        &url,
        &[
            "create",
            "--role",
            "support",
            "--username",
            "weak@bank.example",
        ],
        Some("short"),
    );
    assert_ne!(code, 0);

    let (code, out, _) = staff(&url, &["list"], None);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("root@bank.example\tadmin\tactive"),
        "{out}"
    );
    assert!(
        lines[1].contains("books@bank.example\ttreasury\tactive"),
        "{out}"
    );
    assert!(!out.contains("argon2"), "{out}");

    let token = staff_login(&s, "root@bank.example", "Admin-Passw0rd-Long")
        .await
        .expect("the created admin logs in");
    assert_eq!(admin_query(&s, &token).await, 200);

    let (code, out, err) = staff(&url, &["disable", "--username", "root@bank.example"], None);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 session(s) revoked"), "{out}");
    // The session stops at once (the revocation reaches the instance's cache), and the
    // password no longer opens one.
    let started = Instant::now();
    while admin_query(&s, &token).await != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the session still works"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        staff_login(&s, "root@bank.example", "Admin-Passw0rd-Long").await,
        None
    );
    let (_, out, _) = staff(&url, &["list"], None);
    assert!(out.contains("root@bank.example\tadmin\tdisabled"), "{out}");
    let (code, _, err) = staff(&url, &["disable", "--username", "ghost@bank.example"], None);
    assert_ne!(code, 0);
    assert!(err.contains("not found"), "{err}");
}

fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// `needle` as a whole token: not inside a longer run of letters or digits.
fn contains_token(hay: &str, needle: &str) -> bool {
    hay.match_indices(needle).any(|(i, _)| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

#[tokio::test]
async fn json_logs_of_a_login_carry_the_request_id_and_no_secret() {
    let (_db, url) = scratch("ops_jsonlog").await;
    let mut s = Served::start(
        &url,
        &[],
        &[
            ("COORDINATOR_LOG__FORMAT", "json"),
            ("RUST_LOG", "debug,sqlx=info,hyper=info,h2=info"),
        ],
    );
    s.wait_ready(200).await;
    let password = "Correct-Horse-Battery-7781";
    let email = "alice@example.com";
    let r = s
        .post(
            "/v1/auth/register",
            json!({"email": email}),
            &[("x-request-id", "req-register-1")],
        )
        .await;
    assert_eq!(r.status(), 201);
    let pool = coordinator::db::connect(&url, 1).await.unwrap();
    let body: String = sqlx::query_scalar(
        "SELECT body FROM notification_outbox WHERE recipient = $1 ORDER BY id DESC LIMIT 1",
    )
    .bind(email)
    .fetch_one(&pool)
    .await
    .unwrap();
    let code = body
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap()
        .to_owned();
    let r = s
        .post(
            "/v1/auth/code/confirm",
            json!({"email": email, "code": code, "password": password}),
            &[("x-request-id", "req-confirm-1")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = s
        .post(
            "/v1/auth/login",
            json!({"email": email, "password": password}),
            &[("x-request-id", "req-login-1")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let lines = log_lines(&s.log);
    let login: Vec<&Value> = lines
        .iter()
        .filter(|l| l.to_string().contains("req-login-1"))
        .collect();
    assert!(
        !login.is_empty(),
        "no line of the login request carries its id"
    );
    assert!(
        login
            .iter()
            .any(|l| l["span"]["route"] == "POST /v1/auth/login"),
        "{login:?}"
    );
    for line in &lines {
        let mut line = line.clone();
        // Timestamps hold digit runs that a 6-digit code could match by chance.
        line.as_object_mut().unwrap().remove("timestamp");
        let text = line.to_string();
        assert!(!text.contains(password), "the password is logged: {text}");
        assert!(
            !text.contains(&token),
            "the session token is logged: {text}"
        );
        assert!(
            !contains_token(&text, &code),
            "the one-time code is logged: {text}"
        );
    }
    pool.close().await;
}
