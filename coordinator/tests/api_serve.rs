//! `coordinator serve`: the binary migrates a fresh database, answers over a real socket,
//! and stops cleanly (exit status 0) on SIGTERM.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use test_support::ScratchDatabase;
use test_support::db::database_url_from_env;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn http(addr: &str, request: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(request.as_bytes()).await.ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.ok()?;
    Some(out)
}

#[tokio::test]
async fn serve_answers_and_stops_on_sigterm() {
    let db = ScratchDatabase::create(&database_url_from_env(), "coordinator_serve")
        .await
        .expect("PostgreSQL must be reachable at DATABASE_URL");
    let url = db.url();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_coordinator"))
        .args(["serve", "--bind", &addr, "--connections", "4"])
        .env("DATABASE_URL", &url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let started = Instant::now();
    let health = loop {
        if let Some(r) = http(
            &addr,
            "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        {
            break r;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the server did not start"
        );
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.ends_with("ok"), "{health}");

    let body = r#"{"query":"{ usernameAvailable(username: \"alice\") }"}"#;
    let r = http(
        &addr,
        &format!(
            "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
    .unwrap();
    assert!(r.contains(r#"{"data":{"usernameAvailable":true}}"#), "{r}");
    // Not in dev mode: no GraphiQL page.
    let r = http(
        &addr,
        "GET /graphql HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let stopped = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "no graceful stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
}
