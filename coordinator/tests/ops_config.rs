//! `coordinator config defaults | check` through the binary: the layers in their order,
//! unknown keys and bad values named, secrets redacted, and docs/configuration.md holding
//! the defaults the code has.

#![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

use std::path::Path;
use std::process::Command;

/// Runs the binary with only the given `COORDINATOR_*` / `DATABASE_URL` variables (any set
/// in the test's own environment are removed, so they cannot change the outcome).
fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_coordinator"));
    for (k, _) in std::env::vars() {
        if k.starts_with("COORDINATOR_") || k == "DATABASE_URL" || k == "RUST_LOG" {
            cmd.env_remove(k);
        }
    }
    let out = cmd
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check(args: &[&str], env: &[(&str, &str)]) -> toml::Value {
    let mut all = vec!["config", "check"];
    all.extend_from_slice(args);
    let (code, out, err) = run(&all, env);
    assert_eq!(code, 0, "{err}");
    toml::from_str(&out).unwrap()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    f
}

#[test]
fn layers_apply_in_order_defaults_file_environment_flags() {
    let f = file(
        "[api]\nbind = \"127.0.0.1:9001\"\n[ledger]\nmax_batch = 64\n[log]\nformat = \"json\"\n",
    );
    let path = f.path().to_str().unwrap();
    let c = check(&[], &[]);
    assert_eq!(c["api"]["bind"].as_str(), Some("127.0.0.1:8080"));
    assert_eq!(c["ledger"]["max_batch"].as_integer(), Some(512));

    let c = check(&["--config", path], &[]);
    assert_eq!(c["api"]["bind"].as_str(), Some("127.0.0.1:9001"));
    assert_eq!(c["ledger"]["max_batch"].as_integer(), Some(64));
    assert_eq!(c["log"]["format"].as_str(), Some("json"));
    // The file's path may also come from the environment.
    let c = check(&[], &[("COORDINATOR_CONFIG", path)]);
    assert_eq!(c["ledger"]["max_batch"].as_integer(), Some(64));

    let env = [
        ("COORDINATOR_API__BIND", "127.0.0.1:9002"),
        ("COORDINATOR_METRICS__BIND", "127.0.0.1:9464"),
    ];
    let c = check(&["--config", path], &env);
    assert_eq!(c["api"]["bind"].as_str(), Some("127.0.0.1:9002"));
    assert_eq!(
        c["ledger"]["max_batch"].as_integer(),
        Some(64),
        "kept from the file"
    );
    assert_eq!(c["metrics"]["bind"].as_str(), Some("127.0.0.1:9464"));

    let c = check(&["--config", path, "--bind", "127.0.0.1:9003"], &env);
    assert_eq!(c["api"]["bind"].as_str(), Some("127.0.0.1:9003"));
    // The flags' own variables are flags too: over the configuration variables.
    let mut with_flag_env = env.to_vec();
    with_flag_env.push(("COORDINATOR_BIND", "127.0.0.1:9004"));
    let c = check(&["--config", path], &with_flag_env);
    assert_eq!(c["api"]["bind"].as_str(), Some("127.0.0.1:9004"));

    let c = check(
        &["--no-migrate", "--connections", "3"],
        &[("DATABASE_URL", "postgres://bank@db.internal/bastion")],
    );
    assert_eq!(c["database"]["migrate"].as_bool(), Some(false));
    assert_eq!(c["database"]["connections"].as_integer(), Some(3));
    assert_eq!(
        c["database"]["url"].as_str(),
        Some("postgres://bank@db.internal/bastion")
    );
}

#[test]
fn unknown_keys_fail_and_are_named() {
    let f = file("[api]\nbnd = \"127.0.0.1:9001\"\n");
    let (code, out, err) = run(
        &["--config", f.path().to_str().unwrap(), "config", "check"],
        &[],
    );
    assert_ne!(code, 0);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("api.bnd"), "{err}");

    let (code, _, err) = run(
        &["config", "check"],
        &[("COORDINATOR_LEDGER__LEASE_TIMEOUT", "5")],
    );
    assert_ne!(code, 0);
    assert!(err.contains("COORDINATOR_LEDGER__LEASE_TIMEOUT"), "{err}");
    let (code, _, err) = run(&["config", "check"], &[("COORDINATOR_NOSUCH__KEY", "1")]);
    assert_ne!(code, 0);
    assert!(err.contains("nosuch"), "{err}");

    // Single-underscore names are flags' variables (or someone else's), not keys.
    let (code, _, err) = run(
        &["config", "check"],
        &[("COORDINATOR_SERVICE_HOST", "10.0.0.1")],
    );
    assert_eq!(code, 0, "{err}");
}

#[test]
fn bad_values_fail_and_are_named() {
    for (var, value, named) in [
        ("COORDINATOR_LOG__FORMAT", "xml", "log.format"),
        (
            "COORDINATOR_DATABASE__CONNECTIONS",
            "many",
            "database.connections",
        ),
        (
            "COORDINATOR_DATABASE__CONNECTIONS",
            "0",
            "database.connections",
        ),
        (
            "COORDINATOR_API__FORWARDED_HEADER",
            "x-real-ip",
            "api.forwarded_header",
        ),
        ("COORDINATOR_API__BIND", "not-an-address", "api.bind"),
        (
            "COORDINATOR_BANK__RESUME__LEASE_SECONDS",
            "0",
            "bank.resume.lease_seconds",
        ),
        ("COORDINATOR_BANK__RESUME__BATCH", "-3", "bank.resume.batch"),
    ] {
        let (code, out, err) = run(&["config", "check"], &[(var, value)]);
        assert_ne!(code, 0, "{var}={value} was accepted: {out}");
        assert!(err.contains(named), "{var}={value}: {err}");
    }
    let (code, _, err) = run(
        &["config", "check", "--trusted-proxies", "10.0.0.0/40"],
        &[],
    );
    assert_ne!(code, 0);
    assert!(err.contains("trusted-proxies"), "{err}");
    let missing = run(
        &[
            "--config",
            "/nonexistent/coordinator.toml",
            "config",
            "check",
        ],
        &[],
    );
    assert_ne!(missing.0, 0);
    assert!(
        missing.2.contains("/nonexistent/coordinator.toml"),
        "{}",
        missing.2
    );
}

#[test]
fn secrets_are_redacted_whichever_layer_gave_them() {
    let secret = "hunter2-Zq9";
    let url = format!("postgres://bank:{secret}@db.internal:5432/bastion");
    let f = file(&format!("[database]\nurl = \"{url}\"\n"));
    for (args, env) in [
        (
            vec!["config", "check"],
            vec![("DATABASE_URL", url.as_str())],
        ),
        (
            vec!["config", "check"],
            vec![("COORDINATOR_DATABASE__URL", url.as_str())],
        ),
        (
            vec!["--config", f.path().to_str().unwrap(), "config", "check"],
            vec![],
        ),
        (
            vec!["--database-url", url.as_str(), "config", "check"],
            vec![],
        ),
    ] {
        let (code, out, err) = run(&args, &env);
        assert_eq!(code, 0, "{err}");
        assert!(!out.contains(secret) && !err.contains(secret), "{out}{err}");
        assert!(
            out.contains("postgres://bank:REDACTED@db.internal:5432/bastion"),
            "{out}"
        );
    }
}

#[test]
fn the_documented_defaults_are_the_code_s() {
    let (code, out, err) = run(&["config", "defaults"], &[]);
    assert_eq!(code, 0, "{err}");
    // The printed defaults are a configuration that loads to the defaults.
    let f = file(&out);
    let (code, loaded, err) = run(
        &["--config", f.path().to_str().unwrap(), "config", "check"],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let (_, plain, _) = run(&["config", "check"], &[]);
    assert_eq!(loaded, plain);

    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let text = std::fs::read_to_string(&doc).unwrap();
    let block = text
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_default();
    assert!(
        block == out,
        "docs/configuration.md differs from `coordinator config defaults`; paste its output \
         into the first toml block of the file"
    );
}
