//! Rules of the workspace's dependency graph that a reviewer would otherwise have to
//! remember: test support never reaches a production crate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// The crates that ship: nothing they link (outside dev-dependencies) may be test code.
const PRODUCTION: [&str; 4] = ["coordinator", "signer", "policies", "hsm-config"];
/// Test-only crates of the workspace.
const TEST_ONLY: [&str; 4] = [
    "test-support",
    "system-tests",
    "chain-standin",
    "lnd-standin",
];

/// Each workspace package with the workspace packages it depends on outside
/// dev-dependencies (normal and build).
fn linked_workspace_crates() -> BTreeMap<String, BTreeSet<String>> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .expect("running cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let members: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    packages
        .iter()
        .map(|p| {
            let linked = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .filter(|name| members.contains(name))
                .collect();
            (p["name"].as_str().unwrap().to_owned(), linked)
        })
        .collect()
}

#[test]
fn production_crates_link_no_test_crate() {
    let graph = linked_workspace_crates();
    for test_crate in TEST_ONLY {
        assert!(
            graph.contains_key(test_crate),
            "{test_crate} is not in the workspace"
        );
    }
    for root in PRODUCTION {
        // Everything `root` links, through other workspace crates too.
        let mut seen = BTreeSet::new();
        let mut todo = vec![root.to_owned()];
        while let Some(name) = todo.pop() {
            let deps = graph
                .get(&name)
                .unwrap_or_else(|| panic!("{name} is not in the workspace"));
            for dep in deps {
                if seen.insert(dep.clone()) {
                    todo.push(dep.clone());
                }
            }
        }
        for test_crate in TEST_ONLY {
            assert!(
                !seen.contains(test_crate),
                "{root} links {test_crate} (a test crate may only be a dev-dependency); \
                 it links {seen:?}"
            );
        }
    }
}

#[test]
fn the_graph_sees_the_links_it_checks() {
    // Sanity check of the rule above: the graph does see test-support where it is used,
    // so an empty graph cannot pass the rule.
    let graph = linked_workspace_crates();
    assert!(graph["system-tests"].contains("test-support"));
    assert!(graph["test-support"].contains("hsm-config"));
    assert!(graph["signer"].contains("hsm-config"));
}
