//! The service's OpenAPI document is committed as `src/service/openapi.json`;
//! this test fails when the code and the file differ.
//! Regenerate with `UPDATE_API_SNAPSHOTS=1 cargo nextest run -p signer -E 'test(snapshot)'`.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

#[test]
fn snapshot_openapi_matches_committed_file() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/service/openapi.json");
    let generated = signer::service::openapi_json();
    if std::env::var_os("UPDATE_API_SNAPSHOTS").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "openapi.json differs from the generated contract; regenerate it with \
         UPDATE_API_SNAPSHOTS=1 and commit the result"
    );
}

#[test]
fn openapi_lists_every_route() {
    let doc: serde_json::Value = serde_json::from_str(&signer::service::openapi_json()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/v1/health", "get"),
        ("/v1/policies", "get"),
        ("/v1/signing-requests", "get"),
        ("/v1/signing-requests", "post"),
        ("/v1/signing-requests/{id}", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
    }
}
