//! The `hsm-config` binary against a real SoftHSM2, one private token directory per test.
//!
//! Each command runs in a new process with `SOFTHSM2_CONF` set, which is also how slot
//! renumbering after `C_InitToken` and persistence across processes get exercised.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::str::FromStr;

use bitcoin::bip32::Fingerprint;
use bitcoin::hashes::{Hash, hash160};
use bitcoin::hex::FromHex;
use bitcoin::secp256k1::PublicKey;
use test_support::softhsm::{SoftHsmDir, module_path};

const SO_PIN: &str = "so-pin-cli-0000";
const USER_PIN: &str = "user-pin-cli-1234";
const TOKEN: &str = "custody-dev";
const KEYS: [&str; 4] = ["cold-a", "cold-b", "cold-c", "hot-a"];

struct Hsm {
    dir: SoftHsmDir,
    profile: PathBuf,
}

impl Hsm {
    fn new() -> Hsm {
        let dir = SoftHsmDir::new().unwrap();
        let profile = dir.root().join("profile.toml");
        let keys = KEYS.map(|k| format!("{k:?}")).join(", ");
        std::fs::write(
            &profile,
            format!(
                "name = \"softhsm2-test\"\nmodule = {:?}\ntoken_label = {TOKEN:?}\nkeys = [{keys}]\n",
                module_path().unwrap()
            ),
        )
        .unwrap();
        Hsm { dir, profile }
    }

    /// A command with the private SoftHSM2 configuration and both PINs, nothing inherited.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hsm-config"));
        for var in [
            "HSM_PROFILE",
            "HSM_SO_PIN",
            "HSM_SO_PIN_FILE",
            "HSM_USER_PIN",
            "HSM_USER_PIN_FILE",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        self.dir.configure(&mut cmd);
        cmd.arg("--profile")
            .arg(&self.profile)
            .args(args)
            .env("HSM_SO_PIN", SO_PIN)
            .env("HSM_USER_PIN", USER_PIN);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed:\n{}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn fails(&self, mut cmd: Command) -> String {
        let out = cmd.output().unwrap();
        assert!(
            !out.status.success(),
            "expected a failure:\n{}",
            text(&out.stdout)
        );
        text(&out.stderr)
    }

    fn with_keys(labels: &[&str]) -> Hsm {
        let hsm = Hsm::new();
        hsm.ok(&["init-token"]);
        for label in labels {
            hsm.ok(&["gen-key", "--label", label]);
        }
        hsm
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn init_token_then_find_it_by_label_in_a_new_process() {
    let hsm = Hsm::new();
    let out = hsm.ok(&["init-token"]);
    assert!(out.starts_with(&format!("token {TOKEN} serial ")), "{out}");
    let serial = out.trim().rsplit(' ').next().unwrap();
    assert!(!serial.is_empty());
    // A new process sees the token on another slot; it is found by label.
    assert_eq!(
        hsm.ok(&["list"]).trim(),
        format!("no keys on token {TOKEN}")
    );
}

#[test]
fn init_token_refuses_a_duplicate_label() {
    let hsm = Hsm::new();
    hsm.ok(&["init-token"]);
    let err = hsm.fails(hsm.cmd(&["init-token"]));
    assert!(err.contains("already exists"), "{err}");
    // Another label is fine: SoftHSM2 always offers a free slot.
    hsm.ok(&["init-token", "--label", "second"]);
    assert!(
        hsm.ok(&["--token-label", "second", "list"])
            .contains("no keys")
    );
}

#[test]
fn unknown_token_label_is_a_clear_error() {
    let hsm = Hsm::with_keys(&[]);
    let err = hsm.fails(hsm.cmd(&["--token-label", "nope", "list"]));
    assert!(err.contains("no token labelled \"nope\""), "{err}");
    assert!(err.contains(TOKEN), "{err}");
}

#[test]
fn generated_keys_persist_across_processes() {
    let hsm = Hsm::with_keys(&[]);
    let generated: serde_json::Value =
        serde_json::from_str(&hsm.ok(&["gen-key", "--label", "cold-a"])).unwrap();
    let exported: serde_json::Value =
        serde_json::from_str(&hsm.ok(&["export-pubkeys", "--json", "--all"])).unwrap();
    assert_eq!(exported, serde_json::Value::Array(vec![generated.clone()]));
    let listed = hsm.ok(&["list"]);
    assert!(listed.contains("cold-a"), "{listed}");
    assert!(
        listed.contains(generated["public_key"].as_str().unwrap()),
        "{listed}"
    );
    // And a third process signs with it.
    let out = hsm.ok(&["smoke-test", "--all"]);
    assert!(out.contains("OK   cold-a"), "{out}");
}

#[test]
fn duplicate_key_label_is_refused() {
    let hsm = Hsm::with_keys(&["cold-a"]);
    let err = hsm.fails(hsm.cmd(&["gen-key", "--label", "cold-a"]));
    assert!(err.contains("already exists"), "{err}");
    let keys: Vec<serde_json::Value> =
        serde_json::from_str(&hsm.ok(&["export-pubkeys", "--json", "--all"])).unwrap();
    assert_eq!(keys.len(), 1);
}

#[test]
fn smoke_test_signs_with_every_profile_key() {
    let hsm = Hsm::with_keys(&KEYS);
    let out = hsm.ok(&["smoke-test"]);
    for key in KEYS {
        assert!(out.contains(&format!("OK   {key} ")), "{out}");
    }
    assert!(!out.contains("FAIL"), "{out}");
}

#[test]
fn smoke_test_fails_when_a_profile_key_is_missing() {
    let hsm = Hsm::with_keys(&["cold-a", "cold-b"]);
    let err = hsm.fails(hsm.cmd(&["smoke-test"]));
    assert!(err.contains("cold-c"), "{err}");
}

#[test]
fn export_pubkeys_json_is_what_the_policy_tooling_expects() {
    let hsm = Hsm::with_keys(&KEYS);
    let keys: Vec<serde_json::Value> =
        serde_json::from_str(&hsm.ok(&["export-pubkeys", "--json"])).unwrap();
    let labels: Vec<&str> = keys.iter().map(|k| k["label"].as_str().unwrap()).collect();
    assert_eq!(labels, KEYS, "profile order");
    for key in &keys {
        let hex = key["public_key"].as_str().unwrap();
        assert_eq!(hex.len(), 66, "compressed: {hex}");
        assert!(hex.starts_with("02") || hex.starts_with("03"), "{hex}");
        let public_key = PublicKey::from_str(hex).unwrap();
        let hash = hash160::Hash::hash(&public_key.serialize()).to_byte_array();
        let fingerprint = Fingerprint::from_str(key["fingerprint"].as_str().unwrap()).unwrap();
        assert_eq!(fingerprint.as_bytes(), &hash[..4]);
        assert_eq!(Vec::from_hex(key["id"].as_str().unwrap()).unwrap(), hash);
        // The library type reads it back too.
        let info: hsm_config::KeyInfo = serde_json::from_value(key.clone()).unwrap();
        assert_eq!(info.public_key, public_key);
    }
}

#[test]
fn attributes_read_back_as_a_custody_key() {
    let hsm = Hsm::with_keys(&["cold-a"]);
    let out = hsm.ok(&["attributes", "--label", "cold-a", "--json"]);
    let attrs: serde_json::Value = serde_json::from_str(&out).unwrap();
    for (name, want) in [
        ("sensitive", true),
        ("always_sensitive", true),
        ("extractable", false),
        ("never_extractable", true),
        ("local", true),
        ("token", true),
        ("private", true),
        ("sign", true),
        ("decrypt", false),
        ("unwrap", false),
        ("derive", false),
    ] {
        assert_eq!(attrs[name], want, "{name}");
    }
    assert!(
        hsm.ok(&["attributes", "--label", "cold-a"])
            .contains("CKA_NEVER_EXTRACTABLE  true")
    );
}

#[test]
fn wrong_user_pin_is_refused_clearly() {
    let hsm = Hsm::with_keys(&["cold-a"]);
    let mut cmd = hsm.cmd(&["list"]);
    cmd.env("HSM_USER_PIN", "wrong-pin-9999");
    let err = hsm.fails(cmd);
    assert!(err.contains("refused the user PIN"), "{err}");
    assert!(err.contains("CKR_PIN_INCORRECT"), "{err}");
    assert!(!err.contains("wrong-pin-9999"), "PIN echoed: {err}");
}

#[test]
fn missing_pins_name_the_variables() {
    let hsm = Hsm::new();
    let mut cmd = hsm.cmd(&["init-token"]);
    cmd.env_remove("HSM_SO_PIN");
    let err = hsm.fails(cmd);
    assert!(
        err.contains("HSM_SO_PIN") && err.contains("HSM_SO_PIN_FILE"),
        "{err}"
    );

    hsm.ok(&["init-token"]);
    let mut cmd = hsm.cmd(&["list"]);
    cmd.env_remove("HSM_USER_PIN");
    let err = hsm.fails(cmd);
    assert!(
        err.contains("HSM_USER_PIN") && err.contains("HSM_USER_PIN_FILE"),
        "{err}"
    );
}

#[test]
fn pin_files_are_read_and_win_over_variables() {
    let hsm = Hsm::with_keys(&["hot-a"]);
    let file = hsm.dir.root().join("user.pin");
    std::fs::write(&file, format!("{USER_PIN}\n")).unwrap();
    // A PIN file must be the owner's alone (see the next test).
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cmd = hsm.cmd(&["list"]);
    cmd.env("HSM_USER_PIN", "stale-wrong-pin")
        .env("HSM_USER_PIN_FILE", &file);
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("hot-a"));
}

#[test]
fn a_pin_file_others_can_read_is_refused() {
    let hsm = Hsm::with_keys(&["hot-a"]);
    let file = hsm.dir.root().join("user.pin");
    std::fs::write(&file, format!("{USER_PIN}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = hsm.cmd(&["list"]);
    cmd.env_remove("HSM_USER_PIN")
        .env("HSM_USER_PIN_FILE", &file);
    let err = hsm.fails(cmd);
    assert!(
        err.contains("0644") && err.contains("HSM_USER_PIN_FILE") && err.contains("chmod 600"),
        "{err}"
    );
    assert!(!err.contains(USER_PIN), "{err}");
}

#[test]
fn a_profile_is_required() {
    let hsm = Hsm::new();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hsm-config"));
    cmd.env_remove("HSM_PROFILE").arg("list");
    hsm.dir.configure(&mut cmd);
    let err = hsm.fails(cmd);
    assert!(
        err.contains("HSM_PROFILE") && err.contains("--profile"),
        "{err}"
    );
}

#[test]
fn the_shipped_softhsm2_profile_drives_the_cli() {
    let hsm = Hsm::new();
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("profiles/softhsm2.toml");
    // Through HSM_PROFILE rather than --profile.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hsm-config"));
    hsm.dir.configure(&mut cmd);
    cmd.env("HSM_PROFILE", &shipped)
        .env("HSM_SO_PIN", SO_PIN)
        .env("HSM_USER_PIN", USER_PIN)
        .env_remove("HSM_SO_PIN_FILE")
        .env_remove("HSM_USER_PIN_FILE")
        .arg("init-token");
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("token custody-dev serial"));
}
