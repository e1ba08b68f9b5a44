//! Password change and reset. Both end the user's other sessions; a reset (the password
//! may be known to someone else) also revokes the account's API keys, a change (the user
//! proved the current password or a fresh code) keeps them.

use super::*;

/// What proves a password change.
#[derive(Debug)]
pub enum PasswordProof {
    /// The current password.
    Current(Secret),
    /// A password reset code sent to the user's e-mail or phone
    /// ([`Bank::request_password_reset`]).
    Code(Secret),
}

impl Bank {
    /// Sends a password reset code to a verified identity. Says nothing about whether the
    /// identity is registered.
    ///
    /// # Errors
    /// [`BankError::Notify`] if the message cannot be sent.
    #[tracing::instrument(skip_all)]
    pub async fn request_password_reset(&self, identity: &Identity) -> Result<(), BankError> {
        self.notifier.check_channel(identity)?;
        if let Some((user, _, true)) = self.user_by_identity(identity).await? {
            self.issue_code(user, identity, CODE_PURPOSE_RESET).await?;
        }
        Ok(())
    }

    /// Sets a new password with a reset code, and ends every session of the user and
    /// revokes the account's API keys (whoever knew the old password is out).
    ///
    /// # Errors
    /// [`BankError::InvalidCode`] for an unknown identity or a wrong, used, expired or
    /// exhausted code.
    #[tracing::instrument(skip_all)]
    pub async fn reset_password(
        &self,
        identity: &Identity,
        code: &str,
        password: &NewPassword,
    ) -> Result<(), BankError> {
        let Some((user, _, true)) = self.user_by_identity(identity).await? else {
            return Err(BankError::InvalidCode);
        };
        let hash = self.hash(password.secret()).await?;
        let mut tx = self.consume_code(user, CODE_PURPOSE_RESET, code).await?;
        set_password_in(&mut tx, user, &hash).await?;
        let mut revoked: Vec<Vec<u8>> = sqlx::query_scalar!(
            "UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL \
             RETURNING token_hash",
            user.as_uuid(),
        )
        .fetch_all(&mut *tx)
        .await?;
        revoked.extend(
            sqlx::query_scalar!(
                "UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL \
                   AND account_id IN (SELECT id FROM accounts WHERE user_id = $1) \
                 RETURNING secret_hash",
                user.as_uuid(),
            )
            .fetch_all(&mut *tx)
            .await?,
        );
        tx.commit().await?;
        // This instance at once; the others through migration 0007's notifications.
        for hash in &revoked {
            self.forget_credential(hash);
        }
        Ok(())
    }

    /// Changes the password of the logged-in user, proved by the current password or a
    /// reset code, and ends the user's other sessions (the one making the change stays).
    /// API keys stay valid.
    ///
    /// # Errors
    /// [`BankError::Forbidden`] unless logged in with a session (an API key cannot change
    /// the password); [`BankError::InvalidCredentials`] for a wrong current password (or
    /// none set); [`BankError::InvalidCode`] for a wrong code.
    #[tracing::instrument(skip_all, fields(account = %principal.account_id))]
    pub async fn change_password(
        &self,
        principal: &Principal,
        session_token: &Secret,
        proof: &PasswordProof,
        password: &NewPassword,
    ) -> Result<(), BankError> {
        if principal.method != AuthMethod::Session {
            return Err(BankError::Forbidden { needed: "session" });
        }
        let user = principal.user_id;
        let hash = self.hash(password.secret()).await?;
        let mut tx = match proof {
            PasswordProof::Current(current) => {
                let stored: Option<String> = sqlx::query_scalar!(
                    "SELECT password_hash FROM users WHERE id = $1",
                    user.as_uuid(),
                )
                .fetch_one(&self.pool)
                .await?;
                let Some(stored) = stored else {
                    return Err(BankError::InvalidCredentials);
                };
                if !self.check_password(current, stored).await? {
                    return Err(BankError::InvalidCredentials);
                }
                self.pool.begin().await?
            }
            PasswordProof::Code(code) => {
                self.consume_code(user, CODE_PURPOSE_RESET, code.expose())
                    .await?
            }
        };
        set_password_in(&mut tx, user, &hash).await?;
        let revoked: Vec<Vec<u8>> = sqlx::query_scalar!(
            "UPDATE sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL \
               AND token_hash <> $2 RETURNING token_hash",
            user.as_uuid(),
            secrets::token_hash(session_token.expose()),
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        for hash in &revoked {
            self.forget_credential(hash);
        }
        Ok(())
    }
}

async fn set_password_in(
    tx: &mut sqlx::PgConnection,
    user: UserId,
    hash: &str,
) -> Result<(), BankError> {
    sqlx::query!(
        "UPDATE users SET password_hash = $2 WHERE id = $1",
        user.as_uuid(),
        hash,
    )
    .execute(tx)
    .await?;
    Ok(())
}
