//! The `signer` binary as an operator uses it in an offline ceremony: files in,
//! files out, a stable code and exit status on refusal, nothing written then.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use bitcoin::Amount;
use signer::psbt_io::{self, Encoding};
use system_tests::custody::{cold_policy, external_destination};
use system_tests::wallet::{PolicyWallet, SpendPath};
use test_support::softhsm::{TEST_USER_PIN, TestToken};

struct Ceremony {
    _token: TestToken,
    dir: tempfile::TempDir,
    psbt: bitcoin::Psbt,
}

fn ceremony(name: &str) -> Option<Ceremony> {
    let token = TestToken::isolated(name, &["cold-a", "cold-b", "cold-c"]).unwrap()?;
    let policy = cold_policy("vault", 2, token.keys());
    let mut wallet = PolicyWallet::new(&policy).unwrap();
    wallet
        .fund(&[Amount::from_sat(80_000), Amount::from_sat(70_000)])
        .unwrap();
    let psbt = wallet
        .pay(
            external_destination(8),
            Amount::from_sat(100_000),
            SpendPath::Hsm,
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("policy.json"),
        policy.to_json_pretty().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("in.psbt"),
        psbt_io::encode(&psbt, Encoding::Base64),
    )
    .unwrap();
    // This signer's profile names two of the three keys.
    let profile = format!(
        "name = \"ceremony\"\nmodule = {:?}\ntoken_label = {:?}\nkeys = [\"cold-a\", \"cold-b\"]\nsessions = 2\n",
        token.module().path().display().to_string(),
        token.token_label()
    );
    std::fs::write(dir.path().join("hsm.toml"), profile).unwrap();
    Some(Ceremony {
        _token: token,
        dir,
        psbt,
    })
}

fn signer(dir: &Path, args: &[&str], pin: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_signer"));
    command
        .current_dir(dir)
        .args(args)
        .env_remove("HSM_USER_PIN_FILE");
    match pin {
        Some(pin) => command.env("HSM_USER_PIN", pin),
        None => command.env_remove("HSM_USER_PIN"),
    };
    command.output().unwrap()
}

const SIGN: [&str; 9] = [
    "sign-psbt",
    "--policy",
    "policy.json",
    "--psbt",
    "in.psbt",
    "--out",
    "out.psbt",
    "--profile",
    "hsm.toml",
];

#[test]
fn sign_psbt_writes_a_final_psbt() {
    let Some(c) = ceremony("sign_psbt_writes_a_final_psbt") else {
        return;
    };
    let out = signer(c.dir.path(), &SIGN, Some(TEST_USER_PIN));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("finalized"), "{stdout}");
    let (signed, encoding) =
        psbt_io::decode(&std::fs::read(c.dir.path().join("out.psbt")).unwrap()).unwrap();
    assert_eq!(encoding, Encoding::Base64, "keeps the input's encoding");
    assert_eq!(signed.unsigned_tx, c.psbt.unsigned_tx);
    assert!(
        signed
            .inputs
            .iter()
            .all(|i| i.final_script_witness.is_some())
    );
}

#[test]
fn sign_psbt_refusal_exits_2_with_the_code_and_writes_nothing() {
    let Some(c) = ceremony("sign_psbt_refusal_exits_2_with_the_code_and_writes_nothing") else {
        return;
    };
    let mut tampered = c.psbt.clone();
    tampered.inputs[0].non_witness_utxo = None;
    std::fs::write(
        c.dir.path().join("in.psbt"),
        psbt_io::encode(&tampered, Encoding::Binary),
    )
    .unwrap();
    let out = signer(c.dir.path(), &SIGN, Some(TEST_USER_PIN));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error[INPUT_PREVIOUS_TX_MISSING]"),
        "{stderr}"
    );
    assert!(!c.dir.path().join("out.psbt").exists());
}

#[test]
fn sign_psbt_without_a_pin_names_the_variable() {
    let Some(c) = ceremony("sign_psbt_without_a_pin_names_the_variable") else {
        return;
    };
    let out = signer(c.dir.path(), &SIGN, None);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HSM_USER_PIN"), "{stderr}");
    assert!(!c.dir.path().join("out.psbt").exists());
}

#[test]
fn inspect_psbt_reports_outputs_and_findings_as_json() {
    let Some(c) = ceremony("inspect_psbt_reports_outputs_and_findings_as_json") else {
        return;
    };
    let args = [
        "inspect-psbt",
        "--policy",
        "policy.json",
        "--psbt",
        "in.psbt",
        "--json",
    ];
    let out = signer(c.dir.path(), &args, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let outputs = report["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2);
    assert!(
        outputs
            .iter()
            .any(|o| o["class"]["kind"] == "external" && o["value"] == 100_000)
    );
    assert!(outputs.iter().any(|o| o["class"]["kind"] == "change"));
    assert_eq!(report["inputs"].as_array().unwrap().len(), 2);

    // A policy file that was edited after registration is refused outright.
    let path = c.dir.path().join("policy.json");
    let edited = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"vault\"", "\"vault2\"");
    std::fs::write(&path, edited).unwrap();
    let out = signer(c.dir.path(), &args, None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("policy"));
}
