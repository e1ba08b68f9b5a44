//! The stand-in's credentials, made once in its data directory and kept across restarts
//! as LND keeps its own: `tls.cert`/`tls.key` (self-signed, as LND's) and `admin.macaroon`
//! (random bytes here: the stand-in only compares them, it does not verify caveats).

use std::path::Path;

use ldk_node::bitcoin::hex::DisplayHex;
use tonic::{Request, Status};

/// Reads the certificate and key, making them first if needed. Returns (cert PEM, key PEM).
pub fn tls_identity(dir: &Path) -> anyhow::Result<(String, String)> {
    let cert_path = dir.join("tls.cert");
    let key_path = dir.join("tls.key");
    if !cert_path.exists() || !key_path.exists() {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let certified = rcgen::generate_simple_self_signed(names)?;
        std::fs::write(&key_path, certified.key_pair.serialize_pem())?;
        std::fs::write(&cert_path, certified.cert.pem())?;
    }
    Ok((
        std::fs::read_to_string(&cert_path)?,
        std::fs::read_to_string(&key_path)?,
    ))
}

/// Reads the macaroon, making it first if needed. Returns its hex, as clients send it.
pub fn macaroon_hex(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("admin.macaroon");
    if !path.exists() {
        let bytes: [u8; 32] = rand::random();
        std::fs::write(&path, bytes)?;
    }
    Ok(std::fs::read(&path)?.to_lower_hex_string())
}

/// Refuses a call without the macaroon, with LND's words and code.
#[derive(Clone)]
pub struct MacaroonCheck {
    expected: std::sync::Arc<str>,
}

impl std::fmt::Debug for MacaroonCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacaroonCheck(..)")
    }
}

impl MacaroonCheck {
    pub fn new(expected: String) -> Self {
        Self {
            expected: expected.into(),
        }
    }
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl tonic::service::Interceptor for MacaroonCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let given = request.metadata().get_all("macaroon").iter().count();
        if given != 1 {
            return Err(Status::unknown(format!("expected 1 macaroon, got {given}")));
        }
        let ok = request
            .metadata()
            .get("macaroon")
            .is_some_and(|v| same(v.as_bytes(), self.expected.as_bytes()));
        if ok {
            Ok(request)
        } else {
            tracing::warn!("refused a call with a wrong macaroon");
            Err(Status::unknown(
                "verification failed: signature mismatch after caveat verification",
            ))
        }
    }
}
