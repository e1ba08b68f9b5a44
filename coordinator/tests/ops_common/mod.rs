//! Helpers of the `ops_*` tests: a `coordinator serve` process on a scratch database.

#![allow(dead_code, reason = "each test binary uses some of these helpers")]
#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use test_support::ScratchDatabase;
use test_support::db::database_url_from_env;

pub fn free_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

pub fn coordinator() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coordinator"));
    for (k, _) in std::env::vars() {
        if k.starts_with("COORDINATOR_") || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// A `coordinator serve`, killed when dropped; its standard error in a file.
pub struct Served {
    pub child: Child,
    pub api: String,
    pub metrics: String,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
    pub http: reqwest::Client,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    pub fn start(url: &str, args: &[&str], env: &[(&str, &str)]) -> Served {
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
    pub async fn readyz(&mut self) -> (u16, Value) {
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
    pub async fn wait_ready(&mut self, want: u16) -> Value {
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

    pub async fn post(
        &self,
        path: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut r = self
            .http
            .post(format!("http://{}{path}", self.api))
            .json(&body);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.unwrap()
    }

    pub async fn scrape(&self) -> String {
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
pub fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub fn failing(report: &Value) -> Vec<&str> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["name"].as_str().unwrap())
        .collect()
}

pub async fn scratch(prefix: &str) -> (ScratchDatabase, String) {
    let db = ScratchDatabase::create(&database_url_from_env(), prefix)
        .await
        .expect("PostgreSQL must be reachable at DATABASE_URL");
    let url = db.url();
    (db, url)
}
