//! The policy ceremony from the command line, from an empty SoftHSM2 token to a policy
//! document and its first addresses: `hsm-config init-token`, `gen-key` three times,
//! `export-pubkeys`, then `signer policy create`, `show`, `address` and `verify`. Addresses
//! are compared with ones derived here, independently of the policies crate, from the
//! documented descriptor shape.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::str::FromStr;
use std::sync::OnceLock;

use bitcoin::bip32::{DerivationPath, Xpriv, Xpub};
use bitcoin::secp256k1::Secp256k1;
use bitcoin::{Address, Network, NetworkKind};
use miniscript::Descriptor;
use miniscript::descriptor::DescriptorPublicKey;
use test_support::softhsm::{SoftHsmDir, module_path};

const SO_PIN: &str = "so-pin-ceremony-0000";
const USER_PIN: &str = "user-pin-ceremony-1234";
const TOKEN: &str = "custody-ceremony";
const KEYS: [&str; 3] = ["cold-a", "cold-b", "cold-c"];

/// The `hsm-config` binary next to `signer`. Cargo builds only the binaries of the package
/// under test, so it is built here once (a no-op when it is up to date).
fn hsm_config_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let signer = Path::new(env!("CARGO_BIN_EXE_signer"));
        let mut build = Command::new(env!("CARGO"));
        build.args([
            "build",
            "--quiet",
            "-p",
            "hsm-config",
            "--bin",
            "hsm-config",
        ]);
        if signer.parent().and_then(Path::file_name) == Some("release".as_ref()) {
            build.arg("--release");
        }
        let status = build.status().unwrap();
        assert!(status.success(), "building hsm-config failed");
        signer.with_file_name("hsm-config")
    })
    .clone()
}

struct Ceremony {
    hsm: SoftHsmDir,
    dir: tempfile::TempDir,
    profile: PathBuf,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Ceremony {
    fn new() -> Ceremony {
        let hsm = SoftHsmDir::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("hsm.toml");
        let keys = KEYS.map(|k| format!("{k:?}")).join(", ");
        std::fs::write(
            &profile,
            format!(
                "name = \"ceremony\"\nmodule = {:?}\ntoken_label = {TOKEN:?}\nkeys = [{keys}]\n",
                module_path().unwrap()
            ),
        )
        .unwrap();
        Ceremony { hsm, dir, profile }
    }

    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
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
        self.hsm.configure(&mut cmd);
        cmd.current_dir(self.dir.path())
            .args(args)
            .env("HSM_SO_PIN", SO_PIN)
            .env("HSM_USER_PIN", USER_PIN);
        cmd
    }

    fn hsm_config(&self, args: &[&str]) -> String {
        let profile = self.profile.display().to_string();
        let mut all = vec!["--profile", profile.as_str()];
        all.extend_from_slice(args);
        let out = self.command(&hsm_config_bin(), &all).output().unwrap();
        assert!(
            out.status.success(),
            "hsm-config {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn signer(&self, args: &[&str]) -> Output {
        self.command(Path::new(env!("CARGO_BIN_EXE_signer")), args)
            .output()
            .unwrap()
    }

    fn signer_ok(&self, args: &[&str]) -> String {
        let out = self.signer(args);
        assert!(
            out.status.success(),
            "signer {args:?}: {}",
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn signer_fails(&self, args: &[&str]) -> String {
        let out = self.signer(args);
        assert!(
            !out.status.success(),
            "signer {args:?} succeeded: {}",
            text(&out.stdout)
        );
        text(&out.stderr)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// init-token, three gen-key, export-pubkeys into keys.json.
    fn token_with_keys(&self) -> serde_json::Value {
        let out = self.hsm_config(&["init-token"]);
        assert!(out.starts_with(&format!("token {TOKEN} serial")), "{out}");
        for label in KEYS {
            self.hsm_config(&["gen-key", "--label", label]);
        }
        let exported = self.hsm_config(&["export-pubkeys", "--json"]);
        std::fs::write(self.path("keys.json"), &exported).unwrap();
        serde_json::from_str(&exported).unwrap()
    }
}

/// `[fingerprint/48'/1'/0'/2']tpub…` of a fixed seed, and the tpub alone.
fn recovery() -> (String, Xpub) {
    let secp = Secp256k1::new();
    let master = Xpriv::new_master(NetworkKind::Test, &[7; 32]).unwrap();
    let path = DerivationPath::from_str("m/48'/1'/0'/2'").unwrap();
    let xpub = Xpub::from_priv(&secp, &master.derive_priv(&secp, &path).unwrap());
    (
        format!("[{}/48'/1'/0'/2']{xpub}", master.fingerprint(&secp)),
        xpub,
    )
}

/// The address of the documented cold 2-of-3 shape, built here from the exported keys.
fn expected_address(exported: &serde_json::Value, keychain: u32, index: u32) -> Address {
    let key = |i: usize| {
        format!(
            "[{}]{}",
            exported[i]["fingerprint"].as_str().unwrap(),
            exported[i]["public_key"].as_str().unwrap()
        )
    };
    let (origin_xpub, _) = recovery();
    let descriptor = format!(
        "wsh(or_d(multi(2,{},{},{}),and_v(v:pkh({origin_xpub}/{keychain}/*),older(144))))",
        key(0),
        key(1),
        key(2)
    );
    let d = Descriptor::<DescriptorPublicKey>::from_str(&descriptor).unwrap();
    d.at_derivation_index(index)
        .unwrap()
        .address(Network::Regtest)
        .unwrap()
}

fn create_args(recovery: &str) -> Vec<String> {
    [
        "policy",
        "create",
        "--template",
        "cold",
        "--keys",
        "keys.json",
        "--recovery",
        recovery,
        "--threshold",
        "2",
        "--recovery-after",
        "144",
        "--network",
        "regtest",
        "--name",
        "vault",
        "--out",
        "policy.json",
    ]
    .map(String::from)
    .to_vec()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn ceremony_from_an_empty_token_to_a_first_address() {
    let c = Ceremony::new();
    let exported = c.token_with_keys();
    assert_eq!(exported.as_array().unwrap().len(), 3);
    let (recovery, _) = recovery();

    let out = c.signer_ok(&strs(&create_args(&recovery)));
    assert!(out.starts_with("policy "), "{out}");
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(c.path("policy.json")).unwrap()).unwrap();
    let id = doc["id"].as_str().unwrap().to_owned();
    assert!(out.contains(&id), "{out}");
    assert!(out.contains("without an approval quorum"), "{out}");
    assert_eq!(doc["rules"], serde_json::json!({}));

    // show: descriptor, keys with their labels, spending paths in plain words, hashes.
    let shown = c.signer_ok(&["policy", "show", "--policy", "policy.json"]);
    assert!(
        shown.contains(&format!("id (document hash)  {id}")),
        "{shown}"
    );
    assert!(shown.contains("descriptor hash"), "{shown}");
    for (i, label) in KEYS.iter().enumerate() {
        let fp = exported[i]["fingerprint"].as_str().unwrap();
        assert!(
            shown.contains(&format!("{label:<16} fingerprint {fp}")),
            "{label}: {shown}"
        );
    }
    assert!(
        shown.contains("signatures: 2 of cold-a, cold-b, cold-c"),
        "{shown}"
    );
    assert!(
        shown.contains("signatures: recovery alone, once the coin is 144 blocks old"),
        "{shown}"
    );
    assert!(
        shown.contains("is refused by the signer for every spend"),
        "{shown}"
    );
    let json: serde_json::Value = serde_json::from_str(&c.signer_ok(&[
        "policy",
        "show",
        "--policy",
        "policy.json",
        "--json",
    ]))
    .unwrap();
    assert_eq!(json["id"], serde_json::json!(id));
    assert_eq!(json["spending_paths"].as_array().unwrap().len(), 2);

    // The first receive address, and a change address, against our own derivation.
    for (args, keychain, index) in [
        (vec!["--index", "0"], 0, 0),
        (vec!["--index", "7"], 0, 7),
        (vec!["--index", "3", "--change"], 1, 3),
    ] {
        let mut all = vec!["policy", "address", "--policy", "policy.json"];
        all.extend(args);
        let address = c.signer_ok(&all);
        assert_eq!(
            address.trim(),
            expected_address(&exported, keychain, index).to_string()
        );
    }
    let err = c.signer_fails(&[
        "policy",
        "address",
        "--policy",
        "policy.json",
        "--index",
        "2147483648",
    ]);
    assert!(err.contains("below 2^31"), "{err}");

    // verify against the approved id, the exported keys and the token itself.
    let out = c.signer_ok(&[
        "policy",
        "verify",
        "--policy",
        "policy.json",
        "--expect-hash",
        &id,
        "--keys",
        "keys.json",
        "--profile",
        "hsm.toml",
    ]);
    assert_eq!(out.trim(), format!("policy {id} verified"));

    // A second create never overwrites the document.
    let err = c.signer_fails(&strs(&create_args(&recovery)));
    assert!(err.contains("must not exist yet"), "{err}");
}

#[test]
fn verify_names_the_key_that_differs() {
    let c = Ceremony::new();
    let mut exported = c.token_with_keys();
    let (recovery, _) = recovery();
    c.signer_ok(&strs(&create_args(&recovery)));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(c.path("policy.json")).unwrap()).unwrap();
    let id = doc["id"].as_str().unwrap().to_owned();

    // Another id: refused, saying the document is not the approved one.
    let other = "0".repeat(64);
    let err = c.signer_fails(&[
        "policy",
        "verify",
        "--policy",
        "policy.json",
        "--expect-hash",
        &other,
    ]);
    assert!(err.contains("is not the approved"), "{err}");
    assert!(err.contains("give --keys or --profile"), "{err}");

    // The exported keys of a token where cold-b is another key: named.
    let swapped = exported[2]["public_key"].clone();
    exported[1]["public_key"] = swapped;
    exported[1]["fingerprint"] = exported[2]["fingerprint"].clone();
    std::fs::write(c.path("other-keys.json"), exported.to_string()).unwrap();
    let err = c.signer_fails(&[
        "policy",
        "verify",
        "--policy",
        "policy.json",
        "--expect-hash",
        &id,
        "--keys",
        "other-keys.json",
    ]);
    assert!(err.contains("key \"cold-b\" differs"), "{err}");

    // A document made from other keys, checked against this token: the key is named.
    let policy_text = std::fs::read_to_string(c.path("policy.json")).unwrap();
    let a = exported[0]["public_key"].as_str().unwrap();
    let c_key = exported[2]["public_key"].as_str().unwrap();
    // Swap cold-a and cold-c's keys in a fresh document built by the CLI from swapped keys.
    let mut swapped_keys = exported.clone();
    swapped_keys[0]["public_key"] = serde_json::json!(c_key);
    swapped_keys[0]["fingerprint"] = exported[2]["fingerprint"].clone();
    swapped_keys[2]["public_key"] = serde_json::json!(a);
    swapped_keys[2]["fingerprint"] = exported[0]["fingerprint"].clone();
    swapped_keys[1] = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(c.path("keys.json")).unwrap(),
    )
    .unwrap()[1]
        .clone();
    std::fs::write(c.path("swapped.json"), swapped_keys.to_string()).unwrap();
    let mut args = create_args(&recovery);
    let n = args.len();
    args[n - 1] = "swapped-policy.json".into();
    args[5] = "swapped.json".into();
    c.signer_ok(&strs(&args));
    let swapped_doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(c.path("swapped-policy.json")).unwrap())
            .unwrap();
    let swapped_id = swapped_doc["id"].as_str().unwrap().to_owned();
    assert_ne!(swapped_id, id);
    assert_ne!(policy_text, swapped_doc.to_string());
    let err = c.signer_fails(&[
        "policy",
        "verify",
        "--policy",
        "swapped-policy.json",
        "--expect-hash",
        &swapped_id,
        "--profile",
        "hsm.toml",
    ]);
    assert!(err.contains("key \"cold-a\" differs"), "{err}");
    assert!(err.contains("token \"custody-ceremony\""), "{err}");
}

#[test]
fn create_refuses_bad_input_and_writes_nothing() {
    let c = Ceremony::new();
    c.token_with_keys();
    let (recovery, _) = recovery();

    // A tpub without --network.
    let mut args = create_args(&recovery);
    let at = args.iter().position(|a| a == "--network").unwrap();
    args.drain(at..at + 2);
    let err = c.signer_fails(&strs(&args));
    assert!(err.contains("say which with --network"), "{err}");

    // A malformed recovery key.
    let args = create_args("[zz]tpub");
    let err = c.signer_fails(&strs(&args));
    assert!(err.contains("--recovery"), "{err}");

    // A threshold above the keys.
    let mut args = create_args(&recovery);
    let at = args.iter().position(|a| a == "--threshold").unwrap();
    args[at + 1] = "4".into();
    let err = c.signer_fails(&strs(&args));
    assert!(err.contains("threshold 4 exceeds the 3 hsm keys"), "{err}");

    // Rules with an unknown field, and rules that do not fit (warn-only quorum).
    std::fs::write(c.path("rules.json"), r#"{"max_fee": 1}"#).unwrap();
    let mut args = create_args(&recovery);
    args.extend(["--rules".into(), "rules.json".into()]);
    let err = c.signer_fails(&strs(&args));
    assert!(err.contains("not a rules section"), "{err}");
    std::fs::write(
        c.path("rules.json"),
        r#"{"approvals": {"tiers": [{"required": 2}]}, "warn_only": ["approval_quorum"]}"#,
    )
    .unwrap();
    let err = c.signer_fails(&strs(&args));
    assert!(err.contains("approval_quorum cannot be warn-only"), "{err}");

    // A hot policy from three keys.
    let mut args = create_args(&recovery);
    args[3] = "hot".into();
    let at = args.iter().position(|a| a == "--threshold").unwrap();
    args.drain(at..at + 2);
    let err = c.signer_fails(&strs(&args));
    assert!(err.contains("exactly one hsm key, 3 given"), "{err}");
    assert!(!c.path("policy.json").exists());

    // With rules and one key picked: a hot policy that signs up to its tier automatically.
    std::fs::write(
        c.path("rules.json"),
        r#"{"max_per_tx_sat": 100000, "approvals": {"tiers": [{"up_to_sat": 50000, "required": 0}, {"required": 1}]}}"#,
    )
    .unwrap();
    args.extend(["--key", "cold-c", "--rules", "rules.json"].map(String::from));
    c.signer_ok(&strs(&args));
    let shown = c.signer_ok(&["policy", "show", "--policy", "policy.json"]);
    assert!(shown.contains("signatures: cold-c alone"), "{shown}");
    assert!(shown.contains("\"max_per_tx_sat\":100000"), "{shown}");
}

#[test]
fn custom_template_from_a_miniscript_policy() {
    let c = Ceremony::new();
    let exported = c.token_with_keys();
    let (recovery, _) = recovery();
    let out = c.signer_ok(&[
        "policy",
        "create",
        "--template",
        "custom",
        "--keys",
        "keys.json",
        "--recovery",
        &recovery,
        "--miniscript",
        "or(9@thresh(2,pk(cold-a),pk(cold-b),pk(cold-c)),1@and(pk(recovery),older(144)))",
        "--network",
        "regtest",
        "--out",
        "custom.json",
    ]);
    assert!(out.contains("without an approval quorum"), "{out}");
    let shown = c.signer_ok(&["policy", "show", "--policy", "custom.json"]);
    assert!(shown.contains("(custom template, regtest)"), "{shown}");
    assert!(
        shown.contains("signatures: 2 of cold-a, cold-b, cold-c"),
        "{shown}"
    );
    // The same policy as the cold template: the same first address.
    let address = c.signer_ok(&[
        "policy",
        "address",
        "--policy",
        "custom.json",
        "--index",
        "0",
    ]);
    assert_eq!(
        address.trim(),
        expected_address(&exported, 0, 0).to_string()
    );
    // A name that is not a key of the file.
    let err = c.signer_fails(&[
        "policy",
        "create",
        "--template",
        "custom",
        "--keys",
        "keys.json",
        "--recovery",
        &recovery,
        "--miniscript",
        "or(pk(cold-z),and(pk(recovery),older(144)))",
        "--network",
        "regtest",
        "--out",
        "bad.json",
    ]);
    assert!(err.contains("unknown key \"cold-z\""), "{err}");
}
