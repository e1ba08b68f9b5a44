//! The officer commands' HTTP client of the signer service.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

use super::Server;

fn bearer() -> anyhow::Result<SecretString> {
    if let Some(path) = std::env::var_os("SIGNER_TOKEN_FILE") {
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading SIGNER_TOKEN_FILE {}",
                PathBuf::from(&path).display()
            )
        })?;
        return Ok(SecretString::from(text.trim_end().to_owned()));
    }
    match std::env::var("SIGNER_TOKEN") {
        Ok(token) if !token.is_empty() => Ok(SecretString::from(token)),
        _ => bail!("set SIGNER_TOKEN or SIGNER_TOKEN_FILE to the bearer token"),
    }
}

pub(super) struct Api {
    http: reqwest::Client,
    base: String,
    token: SecretString,
}

impl Api {
    pub(super) fn new(server: &Server) -> anyhow::Result<Api> {
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30));
        // A private CA for the service's certificate, when it is not publicly issued.
        if let Some(path) = std::env::var_os("SIGNER_CA_FILE") {
            let path = PathBuf::from(path);
            let pem = std::fs::read(&path)
                .with_context(|| format!("reading SIGNER_CA_FILE {}", path.display()))?;
            builder = builder.add_root_certificate(
                reqwest::Certificate::from_pem(&pem)
                    .with_context(|| format!("{} is not a PEM certificate", path.display()))?,
            );
        }
        Ok(Api {
            http: builder.build()?,
            base: server.url.trim_end_matches('/').to_owned(),
            token: bearer()?,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}/v1{path}", self.base))
            .bearer_auth(self.token.expose_secret());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("calling {}", self.base))?;
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!(
                "the service refused: {} {}: {}",
                status.as_u16(),
                value["code"].as_str().unwrap_or("?"),
                value["message"].as_str().unwrap_or("")
            );
        }
        Ok(value)
    }

    pub(super) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub(super) async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Follows `next_before` to page `page` (from 1) of `path`'s `field` list.
    pub(super) async fn page(
        &self,
        path: &str,
        query: &str,
        page: u32,
        limit: u32,
    ) -> anyhow::Result<Value> {
        let mut before: Option<String> = None;
        for n in 1..=page.max(1) {
            let cursor = before
                .as_deref()
                .map(|b| format!("&before={b}"))
                .unwrap_or_default();
            let value = self
                .get(&format!("{path}?limit={limit}{query}{cursor}"))
                .await?;
            if n == page.max(1) {
                return Ok(value);
            }
            match value["next_before"].as_str() {
                Some(next) => before = Some(next.to_owned()),
                None => return Ok(json!({})),
            }
        }
        Ok(json!({}))
    }
}
