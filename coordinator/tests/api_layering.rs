//! The REST API stands beside the GraphQL API, not on it: what both need lives in modules
//! owned by neither (`api::payments`, `api::paging`, `api::onchain`). This reads the REST
//! sources and fails on any reference to the GraphQL module.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

#[test]
fn rest_sources_do_not_reach_into_graphql() {
    let api = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&api).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let is_rest = name.starts_with("rest") && (name.ends_with(".rs") || path.is_dir());
        if !is_rest {
            continue;
        }
        let files = if path.is_dir() {
            std::fs::read_dir(&path)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect()
        } else {
            vec![path.clone()]
        };
        for file in files {
            let source = std::fs::read_to_string(&file).unwrap();
            for (n, line) in source.lines().enumerate() {
                assert!(
                    !line.contains("gql") && !line.contains("async_graphql"),
                    "{}:{}: REST must not use the GraphQL module: {line}",
                    file.display(),
                    n + 1
                );
            }
            checked.push(file);
        }
    }
    // rest.rs, rest_auth.rs and rest_onchain.rs at least: a rename cannot empty the check.
    assert!(checked.len() >= 3, "found only {checked:?}");
}
