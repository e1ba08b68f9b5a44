//! API keys: creation, listing and revocation.

use super::*;

impl Bank {
    /// Creates an API key; its secret is returned once and stored only hashed.
    ///
    /// # Errors
    /// [`BankError::Forbidden`] unless logged in with a session (an API key cannot make
    /// keys); [`BankError::Invalid`] for an empty name or no scopes.
    #[tracing::instrument(skip_all, fields(account = %principal.account_id))]
    pub async fn create_api_key(
        &self,
        principal: &Principal,
        name: &str,
        scopes: &[Scope],
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<(ApiKeyInfo, Secret), BankError> {
        if principal.method != AuthMethod::Session {
            return Err(BankError::Forbidden { needed: "session" });
        }
        let name = name.trim();
        if name.is_empty() || name.len() > 100 {
            return Err(BankError::Invalid(ParseError {
                what: "api key name",
                why: "must be 1 to 100 characters",
            }));
        }
        let mut scopes = scopes.to_vec();
        scopes.sort();
        scopes.dedup();
        if scopes.is_empty() {
            return Err(BankError::Invalid(ParseError {
                what: "scopes",
                why: "at least one",
            }));
        }
        if expires_at.is_some_and(|t| t <= Utc::now()) {
            return Err(BankError::Invalid(ParseError {
                what: "expiry",
                why: "must be in the future",
            }));
        }
        let id = ApiKeyId::new();
        let (secret, hash) = secrets::new_token("key");
        let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        let created_at: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO api_keys (id, account_id, name, scopes, secret_hash, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at",
        )
        .bind(id.as_uuid())
        .bind(principal.account_id.as_uuid())
        .bind(name)
        .bind(&names)
        .bind(hash)
        .bind(expires_at)
        .fetch_one(&self.pool)
        .await?;
        Ok((
            ApiKeyInfo {
                id,
                name: name.to_owned(),
                scopes,
                created_at,
                expires_at,
                revoked_at: None,
                last_used_at: None,
            },
            secret,
        ))
    }

    /// The account's API keys (without secrets).
    ///
    /// # Errors
    /// [`BankError::Forbidden`] without the read scope.
    #[tracing::instrument(skip_all, fields(account = %principal.account_id))]
    pub async fn api_keys(&self, principal: &Principal) -> Result<Vec<ApiKeyInfo>, BankError> {
        principal.require(Scope::Read)?;
        let rows = sqlx::query!(
            "SELECT id, name, scopes, created_at, expires_at, revoked_at, last_used_at \
             FROM api_keys WHERE account_id = $1 ORDER BY created_at",
            principal.account_id.as_uuid(),
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(ApiKeyInfo {
                    id: ApiKeyId::from_uuid(r.id),
                    name: r.name,
                    scopes: r
                        .scopes
                        .iter()
                        .map(|s| s.parse())
                        .collect::<Result<_, _>>()?,
                    created_at: r.created_at,
                    expires_at: r.expires_at,
                    revoked_at: r.revoked_at,
                    last_used_at: r.last_used_at,
                })
            })
            .collect()
    }

    /// Revokes one of the account's API keys.
    ///
    /// # Errors
    /// [`BankError::Forbidden`] without a session; [`BankError::NotFound`] for a key of
    /// another account or an unknown one.
    #[tracing::instrument(skip_all, fields(account = %principal.account_id, key = %id))]
    pub async fn revoke_api_key(
        &self,
        principal: &Principal,
        id: ApiKeyId,
    ) -> Result<(), BankError> {
        if principal.method != AuthMethod::Session {
            return Err(BankError::Forbidden { needed: "session" });
        }
        let hash: Vec<u8> = sqlx::query_scalar(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) \
             WHERE id = $1 AND account_id = $2 RETURNING secret_hash",
        )
        .bind(id.as_uuid())
        .bind(principal.account_id.as_uuid())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(BankError::NotFound { what: "api key" })?;
        self.forget_credential(&hash);
        Ok(())
    }
}
