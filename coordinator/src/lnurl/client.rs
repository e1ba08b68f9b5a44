//! The HTTP side of paying an LNURL: GET a URL the call policy allows and read a small
//! JSON answer. The service is untrusted: calls are bounded in time and size, redirects
//! stay on the host first called, and status codes are ignored (LUD-01: the body alone
//! says what happened).

use std::time::Duration;

use reqwest::Url;
use reqwest::redirect::{Attempt, Policy};

use super::LnurlError;
use super::codec::check_callable;

/// Largest answer read: a payRequest with a 100 kB image in its metadata fits.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Most redirects followed.
const MAX_REDIRECTS: usize = 3;

/// Calls LNURL services.
#[derive(Clone, Debug)]
pub(super) struct Client {
    http: reqwest::Client,
    allow_loopback: bool,
}

fn same_host_redirect(attempt: Attempt<'_>) -> reqwest::redirect::Action {
    let first = attempt.previous().first();
    let next = attempt.url();
    let same = first.is_some_and(|f| {
        f.host_str() == next.host_str()
            && f.port_or_known_default() == next.port_or_known_default()
            // Never from HTTPS down to HTTP.
            && (f.scheme() == next.scheme() || next.scheme() == "https")
    });
    if same && attempt.previous().len() <= MAX_REDIRECTS {
        attempt.follow()
    } else {
        attempt.stop()
    }
}

impl Client {
    /// A client whose every call ends within `timeout`.
    pub(super) fn new(timeout: Duration, allow_loopback: bool) -> Result<Client, LnurlError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(Policy::custom(same_host_redirect))
            .user_agent(concat!("bastion-coordinator/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                tracing::error!(error = %e, "LNURL HTTP client");
                LnurlError::Unreachable
            })?;
        Ok(Client {
            http,
            allow_loopback,
        })
    }

    /// GETs `url` and reads its JSON answer.
    ///
    /// # Errors
    /// [`LnurlError::InsecureUrl`] for a URL the policy refuses (nothing is sent);
    /// [`LnurlError::Unreachable`]; [`LnurlError::TooLarge`];
    /// [`LnurlError::BadResponse`] for an answer that is not JSON.
    pub(super) async fn get_json(&self, url: Url) -> Result<serde_json::Value, LnurlError> {
        check_callable(&url, self.allow_loopback)?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let unreachable = |e: reqwest::Error| {
            tracing::info!(%host, error = %e, "LNURL service unreachable");
            LnurlError::Unreachable
        };
        let mut answer = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(unreachable)?;
        if answer
            .content_length()
            .is_some_and(|l| l > MAX_ANSWER_BYTES as u64)
        {
            return Err(LnurlError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = answer.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(LnurlError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|_| LnurlError::BadResponse("not JSON"))
    }
}
