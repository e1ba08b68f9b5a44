//! The `signer officer` commands against a running service (a real listener on
//! 127.0.0.1): key creation, the pending list, a request in plain words,
//! approval with and without confirmation, revocation by signed change.
#![allow(clippy::unwrap_used)]

mod officers;
mod support;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use officers::{approve_in_an_hour, setup_with};
use signer::approvals::{Officer, OfficerId};
use test_support::softhsm::isolate;

fn officer_cli(dir: &Path, url: &str, token: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_signer"))
        .current_dir(dir)
        .arg("officer")
        .args(args)
        .env("SIGNER_URL", url)
        .env("SIGNER_TOKEN", token)
        .env_remove("SIGNER_TOKEN_FILE")
        .env("OFFICER_PASSPHRASE_FILE", dir.join("passphrase"))
        .env_remove("OFFICER_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn an_officer_creates_a_key_reviews_approves_and_revokes_from_the_command_line() {
    const NAME: &str =
        "an_officer_creates_a_key_reviews_approves_and_revokes_from_the_command_line";
    if !isolate(NAME).unwrap() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("passphrase"), "correct horse battery\n").unwrap();
    // Key creation: prints the officer id; the file holds no secret in the clear.
    let created = officer_cli(
        dir.path(),
        "http://unused",
        "unused",
        &["key", "create", "--out", "erin.key"],
        "",
    );
    assert!(created.status.success(), "{}", text(&created));
    let erin: OfficerId = String::from_utf8(created.stdout.clone())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let again = officer_cli(
        dir.path(),
        "http://unused",
        "unused",
        &["key", "create", "--out", "erin.key"],
        "",
    );
    assert!(
        !again.status.success(),
        "a key file must never be overwritten"
    );

    let erin_officer = Officer {
        id: erin,
        name: "erin".into(),
        client: None,
        revoked: false,
    };
    let (s, rt) = setup_with(NAME, 60, vec![erin_officer]).unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = s.app.clone();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let (request, _) = s
            .request(&[30_000_000, 20_000_000], 40_000_000, "cli-1")
            .await;
        let id = request["id"].as_str().unwrap().to_owned();
        let run = |args: Vec<String>, stdin: &'static str| {
            let dir = dir.path().to_owned();
            let url = url.clone();
            let token = s.client.clone();
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                officer_cli(&dir, &url, &token, &args, stdin)
            })
        };

        let pending = run(vec!["pending".into(), "--limit".into(), "5".into()], "")
            .await
            .unwrap();
        assert!(pending.status.success(), "{}", text(&pending));
        assert!(text(&pending).contains(&id), "{}", text(&pending));
        let page_two = run(
            vec![
                "pending".into(),
                "--page".into(),
                "2".into(),
                "--limit".into(),
                "1".into(),
            ],
            "",
        )
        .await
        .unwrap();
        assert!(
            text(&page_two).contains("no pending requests on page 2"),
            "{}",
            text(&page_two)
        );

        let shown = run(vec!["show".into(), id.clone()], "").await.unwrap();
        assert!(shown.status.success(), "{}", text(&shown));
        let shown = text(&shown);
        for needle in [
            "0.40000000 BTC (40000000 sat)",
            "PAYMENT leaving the policy",
            "change back to this policy, proven",
            "sat/vB",
            "signature(s)",
            "Approvals: 0 counted, 2 required",
        ] {
            assert!(shown.contains(needle), "{needle:?} missing:\n{shown}");
        }

        // Declined at the prompt: nothing is sent.
        let key = vec!["--key".to_owned(), "erin.key".to_owned()];
        let mut approve = vec!["approve".to_owned(), id.clone()];
        approve.extend(key.clone());
        let declined = run(approve.clone(), "n\n").await.unwrap();
        assert!(!declined.status.success(), "{}", text(&declined));
        assert!(text(&declined).contains("not approved"));
        assert_eq!(s.approvals_stored().await, 0);

        // Confirmed: erin's approval counts.
        let confirmed = run(approve.clone(), "y\n").await.unwrap();
        assert!(confirmed.status.success(), "{}", text(&confirmed));
        assert!(
            text(&confirmed).contains("1 of 2 approvals counted"),
            "{}",
            text(&confirmed)
        );
        assert_eq!(s.hsm.sign_calls(), 0);
        // Again with --yes and another expiry (the same second and expiry would be the very
        // same approval, a harmless replay): a second approval by the same officer is refused.
        let mut twice = approve.clone();
        twice.extend(["--yes".into(), "--ttl-secs".into(), "3600".into()]);
        let twice = run(twice, "").await.unwrap();
        assert!(!twice.status.success());
        assert!(
            text(&twice).contains("APPROVAL_DUPLICATE_OFFICER"),
            "{}",
            text(&twice)
        );

        // A second officer completes the quorum: signed.
        let binding = s.binding(&request).await;
        let (_, signed) = s
            .post_approval(&request, &approve_in_an_hour(&s.bob, &binding))
            .await;
        assert_eq!(signed["request"]["status"], "signed", "{signed}");

        // Revocation: erin proposes and signs carol's revocation; one more officer makes it effective.
        let mut revoke = vec![
            "revoke".to_owned(),
            s.carol.id().to_string(),
            "--yes".to_owned(),
        ];
        revoke.extend(key.clone());
        let revoked = run(revoke, "").await.unwrap();
        assert!(revoked.status.success(), "{}", text(&revoked));
        assert!(
            text(&revoked).contains("is pending with 1 of 2 approvals"),
            "{}",
            text(&revoked)
        );
        let changes = run(
            vec!["changes".into(), "--status".into(), "pending".into()],
            "",
        )
        .await
        .unwrap();
        let changes = text(&changes);
        assert!(changes.contains("tightening revoke_officer"), "{changes}");
        let change_id = changes.split_whitespace().next().unwrap().to_owned();
        let change = s.change(&serde_json::json!({"id": change_id})).await;
        let (_, done) = s.approve_change(&s.alice, &change).await;
        assert_eq!(done["status"], "effective", "{done}");
    });
}
