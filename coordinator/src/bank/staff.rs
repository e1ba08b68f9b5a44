//! Staff users: creation, login and authentication.

use super::*;

impl Bank {
    /// Creates a staff member (bootstrap and admin tool).
    ///
    /// # Errors
    /// [`BankError::IdentityTaken`] if the e-mail is taken.
    #[tracing::instrument(skip_all, fields(role = role.as_str()))]
    pub async fn create_staff(
        &self,
        email: &Email,
        password: &NewPassword,
        role: StaffRole,
    ) -> Result<StaffId, BankError> {
        let hash = self.hash(password.secret()).await?;
        staff_admin::insert_staff(&self.pool, email, hash, role).await
    }

    /// Staff login.
    ///
    /// # Errors
    /// [`BankError::InvalidCredentials`].
    #[tracing::instrument(skip_all)]
    pub async fn staff_login(
        &self,
        email: &Email,
        password: &Secret,
    ) -> Result<Session, BankError> {
        let row = sqlx::query!(
            "SELECT id, password_hash FROM staff WHERE email = $1 AND disabled_at IS NULL",
            email.as_str(),
        )
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            // One argon2 verification of the configured cost, as for a known user.
            let _ = self.check_unknown_password(password).await?;
            return Err(BankError::InvalidCredentials);
        };
        let id = StaffId::from_uuid(row.id);
        if !self.check_password(password, row.password_hash).await? {
            return Err(BankError::InvalidCredentials);
        }
        let mut conn = self.pool.acquire().await?;
        self.new_session_in(&mut conn, None, Some(id)).await
    }

    /// Resolves a staff session token.
    ///
    /// # Errors
    /// [`BankError::Unauthenticated`].
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn authenticate_staff(&self, token: &str) -> Result<StaffPrincipal, BankError> {
        let row = sqlx::query!(
            "SELECT st.id, st.role FROM sessions s JOIN staff st ON st.id = s.staff_id \
             WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now() \
               AND st.disabled_at IS NULL",
            secrets::token_hash(token),
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(BankError::Unauthenticated)?;
        Ok(StaffPrincipal {
            staff_id: StaffId::from_uuid(row.id),
            role: row.role.parse()?,
        })
    }
}
