//! Per-client bearer tokens: `Authorization: Bearer sgn_…`, looked up by SHA-256.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use secrecy::SecretString;

use super::{ApiError, AppState};
use crate::store::Client;

/// The authenticated client of a request.
#[derive(Debug, Clone)]
pub struct AuthClient(pub Client);

impl FromRequestParts<AppState> for AuthClient {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthenticated)?;
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthenticated)?;
        let token = SecretString::from(token.to_owned());
        state
            .store()
            .client_by_token(&token)
            .await?
            .map(AuthClient)
            .ok_or(ApiError::Unauthenticated)
    }
}
