//! Builds the server traits of LND's Lightning, Router and Invoices services from the
//! .proto files that fedimint-tonic-lnd vendors (found through `cargo metadata`, never
//! copied here). Messages are not generated: they are fedimint-tonic-lnd's own.

use std::path::PathBuf;
use std::process::Command;

fn vendored_protos() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").map_err(|e| format!("CARGO: {e}"))?;
    let manifest_dir =
        std::env::var("CARGO_MANIFEST_DIR").map_err(|e| format!("CARGO_MANIFEST_DIR: {e}"))?;
    let target = std::env::var("TARGET").map_err(|e| format!("TARGET: {e}"))?;
    let manifest = PathBuf::from(manifest_dir).join("Cargo.toml");
    // Offline first (everything this build needs is downloaded already); `cargo metadata`
    // may still want the manifests of other platforms' crates: then it fetches them.
    let run = |offline: bool| {
        let mut command = Command::new(&cargo);
        command
            .args(["metadata", "--format-version", "1", "--filter-platform"])
            .arg(&target)
            .arg("--manifest-path")
            .arg(&manifest);
        if offline {
            command.arg("--offline");
        }
        command.output()
    };
    let output = match run(true) {
        Ok(o) if o.status.success() => o,
        _ => run(false).map_err(|e| format!("running cargo metadata: {e}"))?,
    };
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let manifest = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "fedimint-tonic-lnd")
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or("fedimint-tonic-lnd is not in this workspace's dependencies")?;
    let vendor = PathBuf::from(manifest)
        .parent()
        .ok_or("manifest path without a parent")?
        .join("vendor");
    Ok(vendor)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../../../../Cargo.lock");
    let dir = vendored_protos()?;
    let protos = [
        dir.join("lightning.proto"),
        dir.join("routerrpc/router.proto"),
        dir.join("invoicesrpc/invoices.proto"),
    ];
    tonic_build::configure()
        .build_client(false)
        .build_server(true)
        .generate_default_stubs(true)
        .extern_path(".lnrpc", "::fedimint_tonic_lnd::lnrpc")
        .extern_path(".routerrpc", "::fedimint_tonic_lnd::routerrpc")
        .extern_path(".invoicesrpc", "::fedimint_tonic_lnd::invoicesrpc")
        .compile_protos(&protos, &[dir])?;
    Ok(())
}
