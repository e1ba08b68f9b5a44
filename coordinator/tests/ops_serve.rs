//! `coordinator serve` as an operator runs it: probes, request ids, metrics, JSON logs, the
//! staff commands and `--no-migrate`, all through the real binary on a scratch database.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coordinator::db::{ScratchDatabase, database_url_from_env};
use serde_json::{Value, json};

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{name}{query}", &base[..host_end])
}

fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

fn coordinator() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coordinator"));
    for (k, _) in std::env::vars() {
        if k.starts_with("COORDINATOR_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// A `coordinator serve`, killed when dropped; its standard error in a file.
struct Served {
    child: Child,
    api: String,
    metrics: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    fn start(url: &str, args: &[&str], env: &[(&str, &str)]) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("coordinator.log");
        let (api, metrics) = (free_addr(), free_addr());
        let child = coordinator()
            .args(["serve", "--bind", &api, "--connections", "4"])
            .args(args)
            .env("DATABASE_URL", url)
            .env("COORDINATOR_METRICS__BIND", &metrics)
            .env("COORDINATOR_METRICS__SAMPLE_SECONDS", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Served {
            child,
            api,
            metrics,
            log,
            _dir: dir,
            http: reqwest::Client::new(),
        }
    }

    /// `/readyz` once it answers at all: its status and body.
    async fn readyz(&mut self) -> (u16, Value) {
        let started = Instant::now();
        loop {
            if let Ok(r) = self
                .http
                .get(format!("http://{}/readyz", self.api))
                .send()
                .await
            {
                return (r.status().as_u16(), r.json().await.unwrap());
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "the coordinator exited: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            assert!(started.elapsed() < Duration::from_secs(60), "no answer");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `/readyz` answers `want`.
    async fn wait_ready(&mut self, want: u16) -> Value {
        let started = Instant::now();
        loop {
            let (status, body) = self.readyz().await;
            if status == want {
                return body;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "readyz stayed {status}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn post(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut r = self
            .http
            .post(format!("http://{}{path}", self.api))
            .json(&body);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.unwrap()
    }

    async fn scrape(&self) -> String {
        self.http
            .get(format!("http://{}/metrics", self.metrics))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The value of the sample of `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn failing(report: &Value) -> Vec<&str> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

async fn scratch(prefix: &str) -> (ScratchDatabase, String) {
    let db = ScratchDatabase::create(&database_url_from_env(), prefix)
        .await
        .expect("PostgreSQL must be reachable at DATABASE_URL");
    let url = with_database(&database_url_from_env(), db.name());
    (db, url)
}

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
