//! Registration, one-time codes, login, authentication and logout.

use super::*;

impl Bank {
    /// Registers an e-mail address or phone number and sends a verification code. The
    /// account and its wallet are created, and a password can be set, only when the code
    /// is confirmed ([`Bank::confirm_code_with_password`]): nothing anyone chooses here
    /// attaches to the identity before its owner proved it.
    ///
    /// An unverified registration of the same identity never blocks it: registering
    /// again sends a new code. Registrations left unverified for
    /// [`BankConfig::registration_ttl`] are deleted.
    ///
    /// # Errors
    /// [`BankError::IdentityTaken`] if the e-mail or phone is verified already;
    /// [`BankError::Notify`] if the code cannot be sent (a new registration is then not
    /// kept, so it can be tried again).
    #[tracing::instrument(skip_all)]
    pub async fn register(&self, identity: &Identity) -> Result<UserId, BankError> {
        self.notifier.check_channel(identity)?;
        self.forget_expired_registrations(identity).await?;
        let id = UserId::new();
        let (email, phone) = match identity {
            Identity::Email(e) => (Some(e.as_str()), None),
            Identity::Phone(p) => (None, Some(p.as_str())),
        };
        let inserted = sqlx::query!(
            "INSERT INTO users (id, email, phone) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            id.as_uuid(),
            email,
            phone
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 0 {
            return match self.user_by_identity(identity).await? {
                Some((user, _, false)) => {
                    self.issue_code(user, identity, CODE_PURPOSE_VERIFY).await?;
                    Ok(user)
                }
                _ => Err(BankError::IdentityTaken),
            };
        }
        if let Err(e) = self.issue_code(id, identity, CODE_PURPOSE_VERIFY).await {
            // No code reached the user: undo the registration so that they can simply
            // register again.
            self.forget_unverified(id).await;
            return Err(e);
        }
        Ok(id)
    }

    /// Deletes registrations left unverified past their time: `identity`'s, and a bounded
    /// batch of others (each registration sweeps a little, so abandoned ones never pile
    /// up).
    async fn forget_expired_registrations(&self, identity: &Identity) -> Result<(), BankError> {
        let ttl = self.config.registration_ttl.as_secs_f64();
        let (email, phone) = match identity {
            Identity::Email(e) => (Some(e.as_str()), None),
            Identity::Phone(p) => (None, Some(p.as_str())),
        };
        let mut tx = self.pool.begin().await?;
        let expired: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM users WHERE verified_at IS NULL \
               AND created_at < now() - make_interval(secs => $1) \
               AND (email = $2 OR phone = $3 OR id IN ( \
                 SELECT id FROM users WHERE verified_at IS NULL \
                   AND created_at < now() - make_interval(secs => $1) \
                 ORDER BY created_at LIMIT 100)) \
             FOR UPDATE SKIP LOCKED",
        )
        .bind(ttl)
        .bind(email)
        .bind(phone)
        .fetch_all(&mut *tx)
        .await?;
        if expired.is_empty() {
            return Ok(());
        }
        sqlx::query!(
            "DELETE FROM one_time_codes WHERE user_id = ANY($1)",
            &expired
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query!(
            "DELETE FROM users WHERE id = ANY($1) AND verified_at IS NULL",
            &expired
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Deletes a user who was never verified (their registration could not be
    /// completed). Failures are logged: the row is then as if the process had crashed.
    async fn forget_unverified(&self, user: UserId) {
        let result: Result<(), sqlx::Error> = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query!(
                "DELETE FROM one_time_codes WHERE user_id = $1",
                user.as_uuid()
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "DELETE FROM users WHERE id = $1 AND verified_at IS NULL",
                user.as_uuid()
            )
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(%user, error = %e, "could not undo an unconfirmed registration");
        }
    }

    pub(super) async fn issue_code(
        &self,
        user: UserId,
        identity: &Identity,
        purpose: &str,
    ) -> Result<(), BankError> {
        let code = secrets::new_code();
        let id = Uuid::now_v7();
        let ttl = chrono::Duration::from_std(self.config.code_ttl)
            .map_err(|e| BankError::Corrupt(e.to_string()))?;
        sqlx::query(
            "INSERT INTO one_time_codes (id, user_id, purpose, code_hash, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(user.as_uuid())
        .bind(purpose)
        .bind(secrets::code_hash(id, code.expose()))
        .bind(Utc::now() + ttl)
        .execute(&self.pool)
        .await?;
        let purpose = match purpose {
            CODE_PURPOSE_LOGIN => CodePurpose::Login,
            CODE_PURPOSE_RESET => CodePurpose::PasswordReset,
            _ => CodePurpose::Verify,
        };
        let message =
            Notification::one_time_code(identity.clone(), purpose, &code, self.config.code_ttl);
        if let Err(e) = self.notifier.send(message).await {
            // The user never saw this code; as the latest code it would shadow one they
            // did receive earlier, so it goes.
            if let Err(db) = sqlx::query!("DELETE FROM one_time_codes WHERE id = $1", id)
                .execute(&self.pool)
                .await
            {
                tracing::warn!(%user, error = %db, "could not drop an undelivered code");
            }
            return Err(e.into());
        }
        Ok(())
    }

    /// The user of an identity: id, password hash (none until one is set), verified. A
    /// registration left unverified past its time is as if it did not exist.
    pub(super) async fn user_by_identity(
        &self,
        identity: &Identity,
    ) -> Result<Option<(UserId, Option<String>, bool)>, BankError> {
        let (column, value) = match identity {
            Identity::Email(e) => ("email", e.as_str()),
            Identity::Phone(p) => ("phone", p.as_str()),
        };
        let row = sqlx::query(&format!(
            "SELECT id, password_hash, verified_at IS NOT NULL AS verified FROM users \
             WHERE {column} = $1 \
               AND (verified_at IS NOT NULL OR created_at >= now() - make_interval(secs => $2))"
        ))
        .bind(value)
        .bind(self.config.registration_ttl.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                UserId::from_uuid(r.try_get("id")?),
                r.try_get("password_hash")?,
                r.try_get("verified")?,
            ))
        })
        .transpose()
    }

    /// Sends a fresh code: a verification code to an unverified user, a login code to a
    /// verified one. Says nothing about whether the identity is registered.
    ///
    /// # Errors
    /// [`BankError::Notify`] if the message cannot be sent (a code sent earlier stays
    /// valid).
    #[tracing::instrument(skip_all)]
    pub async fn request_code(&self, identity: &Identity) -> Result<(), BankError> {
        self.notifier.check_channel(identity)?;
        if let Some((user, _, verified)) = self.user_by_identity(identity).await? {
            let purpose = if verified {
                CODE_PURPOSE_LOGIN
            } else {
                CODE_PURPOSE_VERIFY
            };
            self.issue_code(user, identity, purpose).await?;
        }
        Ok(())
    }

    /// Confirms a one-time code and logs the user in. The first confirmation verifies the
    /// user and creates the account with its default BTC wallet.
    ///
    /// # Errors
    /// [`BankError::InvalidCode`] for an unknown identity, a wrong, used or expired code,
    /// or too many attempts.
    #[tracing::instrument(skip_all)]
    pub async fn confirm_code(
        &self,
        identity: &Identity,
        code: &str,
    ) -> Result<(Session, AccountId), BankError> {
        self.confirm_code_with_password(identity, code, None).await
    }

    /// [`Bank::confirm_code`], setting the account's password with the first
    /// confirmation: the password attaches in the same step that proves the identity, so
    /// whoever registered the identity before its owner cannot choose it.
    ///
    /// # Errors
    /// As [`Bank::confirm_code`]; [`BankError::Invalid`] for a password given after the
    /// first confirmation (change it with [`Bank::change_password`] or reset it).
    #[tracing::instrument(skip_all)]
    pub async fn confirm_code_with_password(
        &self,
        identity: &Identity,
        code: &str,
        password: Option<&NewPassword>,
    ) -> Result<(Session, AccountId), BankError> {
        let Some((user, _, verified)) = self.user_by_identity(identity).await? else {
            return Err(BankError::InvalidCode);
        };
        let hash = match password {
            Some(p) => Some(self.hash(p.secret()).await?),
            None => None,
        };
        let purpose = if verified {
            CODE_PURPOSE_LOGIN
        } else {
            CODE_PURPOSE_VERIFY
        };
        let mut tx = self.consume_code(user, purpose, code).await?;
        // Only after the code: before it, this answer would tell anyone which identities
        // are confirmed. The transaction rolls back, so the code stays usable.
        if verified && password.is_some() {
            return Err(BankError::Invalid(ParseError {
                what: "password",
                why: "is set with the first confirmation only; change or reset it instead",
            }));
        }
        let account = if verified {
            let id: Uuid =
                sqlx::query_scalar!("SELECT id FROM accounts WHERE user_id = $1", user.as_uuid())
                    .fetch_one(&mut *tx)
                    .await?;
            AccountId::from_uuid(id)
        } else {
            sqlx::query(
                "UPDATE users SET verified_at = now(), password_hash = $2 WHERE id = $1 \
                   AND verified_at IS NULL",
            )
            .bind(user.as_uuid())
            .bind(hash)
            .execute(&mut *tx)
            .await?;
            let account = AccountId::new();
            let wallet = ledger::create_account_in(
                &mut *tx,
                NewAccount::user_wallet(format!("wallet of account {account}")),
            )
            .await?;
            let wallet = WalletId::from_uuid(wallet.id.as_uuid());
            sqlx::query!(
                "INSERT INTO accounts (id, user_id, default_wallet_id) VALUES ($1, $2, $3)",
                account.as_uuid(),
                user.as_uuid(),
                wallet.as_uuid()
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query!(
                "INSERT INTO wallets (id, account_id, currency) VALUES ($1, $2, 'BTC')",
                wallet.as_uuid(),
                account.as_uuid()
            )
            .execute(&mut *tx)
            .await?;
            account
        };
        let session = self.new_session_in(&mut tx, Some(user), None).await?;
        tx.commit().await?;
        Ok((session, account))
    }

    /// Checks and uses up the latest code of `purpose` for `user`, in a transaction that
    /// the caller commits with what the code allows. A wrong guess counts against the
    /// code (committed at once); after `max_code_attempts` wrong guesses the code is dead,
    /// even for the right digits, and a new one is needed.
    ///
    /// # Errors
    /// [`BankError::InvalidCode`].
    pub(super) async fn consume_code(
        &self,
        user: UserId,
        purpose: &str,
        code: &str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, BankError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT id, code_hash, attempts, expires_at > now() AS fresh FROM one_time_codes \
             WHERE user_id = $1 AND purpose = $2 AND consumed_at IS NULL \
             ORDER BY created_at DESC LIMIT 1 FOR UPDATE",
        )
        .bind(user.as_uuid())
        .bind(purpose)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Err(BankError::InvalidCode);
        };
        let code_id: Uuid = row.try_get("id")?;
        let stored: Vec<u8> = row.try_get("code_hash")?;
        let attempts: i32 = row.try_get("attempts")?;
        let fresh: bool = row.try_get("fresh")?;
        if !fresh || attempts >= self.config.max_code_attempts {
            return Err(BankError::InvalidCode);
        }
        if secrets::code_hash(code_id, code.trim()) != stored {
            sqlx::query!(
                "UPDATE one_time_codes SET attempts = attempts + 1 WHERE id = $1",
                code_id
            )
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Err(BankError::InvalidCode);
        }
        sqlx::query!(
            "UPDATE one_time_codes SET consumed_at = now() WHERE id = $1",
            code_id
        )
        .execute(&mut *tx)
        .await?;
        Ok(tx)
    }

    pub(super) async fn new_session_in(
        &self,
        tx: &mut sqlx::PgConnection,
        user: Option<UserId>,
        staff: Option<StaffId>,
    ) -> Result<Session, BankError> {
        let (token, hash) = secrets::new_token("sess");
        let ttl = chrono::Duration::from_std(self.config.session_ttl)
            .map_err(|e| BankError::Corrupt(e.to_string()))?;
        let expires_at = Utc::now() + ttl;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, staff_id, token_hash, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(Uuid::now_v7())
        .bind(user.map(|u| u.as_uuid()))
        .bind(staff.map(|s| s.as_uuid()))
        .bind(hash)
        .bind(expires_at)
        .execute(tx)
        .await?;
        Ok(Session { token, expires_at })
    }

    /// Logs in with a password.
    ///
    /// # Errors
    /// [`BankError::InvalidCredentials`] for an unknown or unverified identity, one without
    /// a password, or a wrong password.
    #[tracing::instrument(skip_all)]
    pub async fn login(
        &self,
        identity: &Identity,
        password: &Secret,
    ) -> Result<Session, BankError> {
        let found = self.user_by_identity(identity).await?;
        let Some((user, Some(hash), true)) = found else {
            // One argon2 verification of the configured cost against a dummy hash, as for
            // a known user with a password, so timing does not tell. An identity without a
            // password logs in by code only; an unverified one has none (a stored one is
            // not checked, so it cannot be probed).
            let _ = self.check_unknown_password(password).await?;
            return Err(BankError::InvalidCredentials);
        };
        if !self.check_password(password, hash).await? {
            return Err(BankError::InvalidCredentials);
        }
        let mut conn = self.pool.acquire().await?;
        self.new_session_in(&mut conn, Some(user), None).await
    }

    /// Resolves a bearer token (`sess_...`) or an API key (`key_...`).
    ///
    /// A credential seen recently is answered from memory (see `auth_cache.rs`: a
    /// revocation anywhere reaches every instance through PostgreSQL notifications).
    ///
    /// # Errors
    /// [`BankError::Unauthenticated`] for an unknown, expired or revoked credential.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn authenticate(&self, token: &str) -> Result<Principal, BankError> {
        self.authenticate_with_expiry(token).await.map(|(p, _)| p)
    }

    /// [`Bank::authenticate`], with the moment the credential expires (`None`: an API key
    /// without expiry). A connection that holds the credential open must stop using it
    /// then, or at the next revocation ([`Bank::revocations`]), whichever comes first.
    ///
    /// # Errors
    /// [`BankError::Unauthenticated`] for an unknown, expired or revoked credential.
    #[tracing::instrument(level = "debug", skip_all)]
    pub async fn authenticate_with_expiry(
        &self,
        token: &str,
    ) -> Result<(Principal, Option<DateTime<Utc>>), BankError> {
        let session = token.starts_with("sess_");
        if !session && !token.starts_with("key_") {
            return Err(BankError::Unauthenticated);
        }
        let hash = secrets::token_hash(token);
        if let Some(found) = self.auth.as_ref().and_then(|c| c.get(&hash)) {
            return Ok(found);
        }
        let ticket = self.auth.as_ref().map(|c| c.ticket());
        let (principal, expires_at, valid_until) = if session {
            let (p, e) = self.authenticate_session(&hash).await?;
            (p, e, e)
        } else {
            self.authenticate_api_key(&hash).await?
        };
        if let (Some(cache), Some(ticket)) = (&self.auth, ticket) {
            cache.remember(ticket, &hash, &principal, expires_at, valid_until);
        }
        Ok((principal, expires_at))
    }

    /// The name under which [`Bank::revocations`] announces a credential (its hash in
    /// hex, never the credential).
    pub fn credential_key(token: &str) -> String {
        secrets::hex(&secrets::token_hash(token))
    }

    /// Announces every credential revoked, re-scoped or logged out from now on, on any
    /// instance (a [`Bank::credential_key`]), and `None` when announcements may have been
    /// missed (then every holder must check again). `None` when the authentication cache
    /// is off: holders must then check on their own schedule.
    pub fn revocations(&self) -> Option<tokio::sync::broadcast::Receiver<Option<Arc<str>>>> {
        self.auth.as_ref().map(|c| c.revocations())
    }

    /// The session's principal and its expiry.
    async fn authenticate_session(
        &self,
        hash: &[u8],
    ) -> Result<(Principal, Option<DateTime<Utc>>), BankError> {
        let row = sqlx::query(
            "SELECT s.user_id, a.id AS account_id, s.expires_at FROM sessions s \
             JOIN accounts a ON a.user_id = s.user_id \
             WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(BankError::Unauthenticated)?;
        let principal = Principal {
            user_id: UserId::from_uuid(row.try_get("user_id")?),
            account_id: AccountId::from_uuid(row.try_get("account_id")?),
            scopes: Scope::ALL.to_vec(),
            method: AuthMethod::Session,
        };
        Ok((principal, Some(row.try_get("expires_at")?)))
    }

    /// The key's principal, its expiry, and until when it may be answered from memory.
    async fn authenticate_api_key(
        &self,
        hash: &[u8],
    ) -> Result<(Principal, Option<DateTime<Utc>>, Option<DateTime<Utc>>), BankError> {
        // One statement: the look-up, and a refresh of last_used_at only when it is older
        // than the granularity. A data-modifying CTE runs even though the outer query does
        // not read it; when it updates no row, no transaction id is taken and the
        // autocommit ends without a WAL flush. The UPDATE repeats the conditions so that,
        // when two requests race, the second sees the first's new value after the row
        // lock and writes nothing, and a key revoked in the meantime is not touched.
        // A remembered key is not seen here: its entry is valid only until its recorded
        // last use is a granularity old, so that the next use comes here and records it.
        let row = sqlx::query(
            "WITH k AS ( \
               SELECT k.id, a.user_id, a.id AS account_id, k.scopes, k.expires_at, \
                 k.last_used_at \
               FROM api_keys k JOIN accounts a ON a.id = k.account_id \
               WHERE k.secret_hash = $1 AND k.revoked_at IS NULL \
                 AND (k.expires_at IS NULL OR k.expires_at > now()) \
             ), touched AS ( \
               UPDATE api_keys u SET last_used_at = now() FROM k \
               WHERE u.id = k.id AND u.revoked_at IS NULL \
                 AND (u.last_used_at IS NULL \
                      OR u.last_used_at < now() - make_interval(secs => $2)) \
               RETURNING u.last_used_at \
             ) \
             SELECT id, user_id, account_id, scopes, expires_at, \
               coalesce((SELECT last_used_at FROM touched), last_used_at) AS last_used_at \
             FROM k",
        )
        .bind(hash)
        .bind(API_KEY_LAST_USED_GRANULARITY.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(BankError::Unauthenticated)?;
        let scopes: Vec<String> = row.try_get("scopes")?;
        let principal = Principal {
            user_id: UserId::from_uuid(row.try_get("user_id")?),
            account_id: AccountId::from_uuid(row.try_get("account_id")?),
            scopes: scopes.iter().map(|s| s.parse()).collect::<Result<_, _>>()?,
            method: AuthMethod::ApiKey(ApiKeyId::from_uuid(row.try_get("id")?)),
        };
        let expires_at: Option<DateTime<Utc>> = row.try_get("expires_at")?;
        let last_used_at: Option<DateTime<Utc>> = row.try_get("last_used_at")?;
        let record_again = last_used_at.and_then(|at| {
            chrono::Duration::from_std(API_KEY_LAST_USED_GRANULARITY)
                .ok()
                .and_then(|g| at.checked_add_signed(g))
        });
        // Remembered until it expires or its last use must be recorded again; the
        // statement has just recorded it, so `record_again` is always set.
        let valid_until = match (expires_at, record_again) {
            (Some(e), Some(r)) => Some(e.min(r)),
            (e, r) => e.or(r),
        };
        Ok((principal, expires_at, valid_until))
    }

    /// Forgets a credential in this instance at once (the others hear of it through
    /// migration 0007's notification).
    pub(super) fn forget_credential(&self, hash: &[u8]) {
        if let Some(cache) = &self.auth {
            cache.evict(&secrets::hex(hash));
        }
    }

    /// Whether authentications are being answered from memory (the cache is on and its
    /// revocation listener listens). For tests and health checks.
    pub fn auth_cache_live(&self) -> bool {
        self.auth.as_ref().is_some_and(|c| c.is_live())
    }

    /// Revokes a session token. Unknown tokens are ignored.
    ///
    /// # Errors
    /// [`BankError::Database`].
    #[tracing::instrument(skip_all)]
    pub async fn logout(&self, token: &str) -> Result<(), BankError> {
        let hash = secrets::token_hash(token);
        sqlx::query!(
            "UPDATE sessions SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL",
            &hash
        )
        .execute(&self.pool)
        .await?;
        self.forget_credential(&hash);
        Ok(())
    }
}
