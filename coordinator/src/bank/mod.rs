//! Users, accounts, wallets and authentication on top of the ledger: registration with a
//! one-time code, password login, sessions, API keys with scopes, usernames, KYC levels
//! and limits, account status with an audit trail, staff roles.

mod auth_cache;
mod config;
mod error;
mod notifier;
mod payments;
mod secrets;
mod types;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Row};
use uuid::Uuid;

pub use auth_cache::LISTENER_APPLICATION_NAME as AUTH_LISTENER_APPLICATION_NAME;
pub use config::{BankConfig, LevelLimits, LimitsConfig};
pub use error::BankError;
pub use notifier::{CodePurpose, Notification, Notifier, NotifyError, OutboxNotifier, SendFuture};
pub use payments::{
    MAX_MEMO_LEN, PaymentResult, PaymentStatus, Recipient, SendRequest, TransactionPage,
    TxDirection, WalletTransaction,
};
pub use secrets::{PasswordCost, Secret};
pub use types::{
    AccountStatus, Email, Identity, Level, NewPassword, ParseError, Phone, Scope, StaffAction,
    StaffRole, Username,
};

use crate::amount::Sats;
use crate::ids::{AccountId, ApiKeyId, LedgerAccountId, StaffId, UserId, WalletId};
use crate::ledger::{self, Ledger, NewAccount};

/// How a request was authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// A login session (all scopes).
    Session,
    /// An API key (its scopes).
    ApiKey(ApiKeyId),
}

/// An authenticated user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The user.
    pub user_id: UserId,
    /// The user's account.
    pub account_id: AccountId,
    /// What the credential may do.
    pub scopes: Vec<Scope>,
    /// How it was authenticated.
    pub method: AuthMethod,
}

impl Principal {
    /// Fails unless the credential has `scope`.
    ///
    /// # Errors
    /// [`BankError::Forbidden`].
    pub fn require(&self, scope: Scope) -> Result<(), BankError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(BankError::Forbidden {
                needed: scope.as_str(),
            })
        }
    }
}

/// An authenticated staff member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaffPrincipal {
    /// The staff member.
    pub staff_id: StaffId,
    /// Their role.
    pub role: StaffRole,
}

impl StaffPrincipal {
    /// Fails unless the role allows `action`.
    ///
    /// # Errors
    /// [`BankError::Forbidden`].
    pub fn require(&self, action: StaffAction) -> Result<(), BankError> {
        if self.role.may(action) {
            Ok(())
        } else {
            Err(BankError::Forbidden {
                needed: "staff role",
            })
        }
    }
}

/// Who made a change, for the audit trail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Actor {
    /// The account's own user.
    User(UserId),
    /// A staff member.
    Staff(StaffId),
    /// The system itself.
    System,
}

impl Actor {
    fn label(self) -> String {
        match self {
            Actor::User(u) => format!("user:{u}"),
            Actor::Staff(s) => format!("staff:{s}"),
            Actor::System => "system".to_owned(),
        }
    }
}

/// A login session token: shown once, stored hashed.
#[derive(Debug)]
pub struct Session {
    /// The bearer token.
    pub token: Secret,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// An account as its owner or staff sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountView {
    /// Its id.
    pub id: AccountId,
    /// The user.
    pub user_id: UserId,
    /// Payable username, once chosen.
    pub username: Option<String>,
    /// KYC level.
    pub level: Level,
    /// Status.
    pub status: AccountStatus,
    /// The default BTC wallet.
    pub default_wallet_id: WalletId,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A user as they see themselves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserView {
    /// Their id.
    pub id: UserId,
    /// E-mail address, if registered with one.
    pub email: Option<String>,
    /// Phone number, if registered with one.
    pub phone: Option<String>,
    /// Whether the registration code was confirmed.
    pub verified: bool,
    /// When they registered.
    pub created_at: DateTime<Utc>,
}

/// A wallet with its balances in satoshis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WalletView {
    /// Its id (also its ledger account's id).
    pub id: WalletId,
    /// The owning account.
    pub account_id: AccountId,
    /// Currency code ("BTC").
    pub currency: String,
    /// Settled balance, whole satoshis.
    pub balance: Sats,
    /// Pending incoming funds, whole satoshis.
    pub pending_incoming: Sats,
}

/// An API key's public data (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiKeyInfo {
    /// Its id.
    pub id: ApiKeyId,
    /// Its name.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it expires, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// When it last authenticated a request, to within [`API_KEY_LAST_USED_GRANULARITY`].
    pub last_used_at: Option<DateTime<Utc>>,
}

/// How stale an API key's `last_used_at` may get before a request refreshes it. Writing
/// it on every request would make each authentication a commit (a WAL flush); with this
/// granularity a busy key costs one small write a minute and its other requests stay
/// read-only.
pub const API_KEY_LAST_USED_GRANULARITY: std::time::Duration = std::time::Duration::from_secs(60);

/// One entry of an account's audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountEvent {
    /// "status" or "level".
    pub kind: String,
    /// Value before.
    pub old_value: String,
    /// Value after.
    pub new_value: String,
    /// Who.
    pub actor: String,
    /// Why.
    pub reason: String,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A limit over the rolling 24 hours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LimitView {
    /// The limit.
    pub total: Sats,
    /// Used in the last 24 hours.
    pub used: Sats,
    /// What is left.
    pub remaining: Sats,
}

/// An account's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// The level they come from.
    pub level: Level,
    /// Internal sends.
    pub internal_send: LimitView,
    /// Withdrawals.
    pub withdrawal: LimitView,
}

const CODE_PURPOSE_VERIFY: &str = "verify";
const CODE_PURPOSE_LOGIN: &str = "login";

/// The bank service.
#[derive(Clone, Debug)]
pub struct Bank {
    pool: PgPool,
    ledger: Ledger,
    notifier: Arc<dyn Notifier>,
    config: Arc<BankConfig>,
    settler: payments::Settler,
    /// `None` when `config.auth_cache_ttl` is zero.
    auth: Option<Arc<auth_cache::AuthCache>>,
}

fn to_sats_floor(msats: i64) -> Sats {
    u64::try_from(msats)
        .ok()
        .and_then(|v| crate::amount::Msats::new(v).ok())
        .map(|m| m.to_sats_floor())
        .unwrap_or(Sats::ZERO)
}

fn sats_from_db(v: i64) -> Result<Sats, BankError> {
    u64::try_from(v)
        .ok()
        .and_then(|v| Sats::new(v).ok())
        .ok_or_else(|| BankError::Corrupt(format!("amount {v}")))
}

impl Bank {
    /// The service over a migrated database and a running ledger. It starts a background
    /// task, so it must be called within a Tokio runtime.
    pub fn new(ledger: Ledger, notifier: Arc<dyn Notifier>, config: BankConfig) -> Bank {
        Bank {
            settler: payments::Settler::spawn(ledger.pool().clone()),
            auth: auth_cache::AuthCache::spawn(ledger.pool(), config.auth_cache_ttl),
            pool: ledger.pool().clone(),
            ledger,
            notifier,
            config: Arc::new(config),
        }
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The configuration.
    pub fn config(&self) -> &BankConfig {
        &self.config
    }

    async fn hash(&self, password: &Secret) -> Result<String, BankError> {
        let password = password.clone();
        let cost = self.config.password_cost;
        tokio::task::spawn_blocking(move || secrets::hash_password(&password, cost))
            .await
            .map_err(|e| BankError::Corrupt(e.to_string()))?
            .map_err(BankError::from)
    }

    async fn check_password(&self, password: &Secret, stored: String) -> Result<bool, BankError> {
        let password = password.clone();
        tokio::task::spawn_blocking(move || secrets::verify_password(&password, &stored))
            .await
            .map_err(|e| BankError::Corrupt(e.to_string()))
    }

    /// Registers a user and sends a verification code. The account and its wallet are
    /// created when the code is confirmed ([`Bank::confirm_code`]).
    ///
    /// # Errors
    /// [`BankError::IdentityTaken`] if the e-mail or phone is registered;
    /// [`BankError::Notify`] if the code cannot be sent (nothing is kept then, so the
    /// registration can be tried again).
    pub async fn register(
        &self,
        identity: &Identity,
        password: &NewPassword,
    ) -> Result<UserId, BankError> {
        self.notifier.check_channel(identity)?;
        let hash = self.hash(password.secret()).await?;
        let id = UserId::new();
        let (email, phone) = match identity {
            Identity::Email(e) => (Some(e.as_str()), None),
            Identity::Phone(p) => (None, Some(p.as_str())),
        };
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, phone, password_hash) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(id.as_uuid())
        .bind(email)
        .bind(phone)
        .bind(hash)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 0 {
            return Err(BankError::IdentityTaken);
        }
        if let Err(e) = self.issue_code(id, identity, CODE_PURPOSE_VERIFY).await {
            // No code reached the user: undo the registration so that they can simply
            // register again, instead of meeting `IdentityTaken` for an account they
            // cannot confirm.
            self.forget_unverified(id).await;
            return Err(e);
        }
        Ok(id)
    }

    /// Deletes a user who was never verified (their registration could not be
    /// completed). Failures are logged: the row is then as if the process had crashed.
    async fn forget_unverified(&self, user: UserId) {
        let result: Result<(), sqlx::Error> = async {
            let mut tx = self.pool.begin().await?;
            sqlx::query("DELETE FROM one_time_codes WHERE user_id = $1")
                .bind(user.as_uuid())
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM users WHERE id = $1 AND verified_at IS NULL")
                .bind(user.as_uuid())
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(%user, error = %e, "could not undo an unconfirmed registration");
        }
    }

    async fn issue_code(
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
        let purpose = if purpose == CODE_PURPOSE_LOGIN {
            CodePurpose::Login
        } else {
            CodePurpose::Verify
        };
        let message =
            Notification::one_time_code(identity.clone(), purpose, &code, self.config.code_ttl);
        if let Err(e) = self.notifier.send(message).await {
            // The user never saw this code; as the latest code it would shadow one they
            // did receive earlier, so it goes.
            if let Err(db) = sqlx::query("DELETE FROM one_time_codes WHERE id = $1")
                .bind(id)
                .execute(&self.pool)
                .await
            {
                tracing::warn!(%user, error = %db, "could not drop an undelivered code");
            }
            return Err(e.into());
        }
        Ok(())
    }

    async fn user_by_identity(
        &self,
        identity: &Identity,
    ) -> Result<Option<(UserId, String, bool)>, BankError> {
        let row =
            match identity {
                Identity::Email(e) => sqlx::query(
                    "SELECT id, password_hash, verified_at IS NOT NULL FROM users WHERE email = $1",
                )
                .bind(e.as_str())
                .fetch_optional(&self.pool)
                .await?,
                Identity::Phone(p) => sqlx::query(
                    "SELECT id, password_hash, verified_at IS NOT NULL FROM users WHERE phone = $1",
                )
                .bind(p.as_str())
                .fetch_optional(&self.pool)
                .await?,
            };
        row.map(|r| {
            Ok((
                UserId::from_uuid(r.try_get(0)?),
                r.try_get(1)?,
                r.try_get(2)?,
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
    pub async fn confirm_code(
        &self,
        identity: &Identity,
        code: &str,
    ) -> Result<(Session, AccountId), BankError> {
        let Some((user, _, verified)) = self.user_by_identity(identity).await? else {
            return Err(BankError::InvalidCode);
        };
        let purpose = if verified {
            CODE_PURPOSE_LOGIN
        } else {
            CODE_PURPOSE_VERIFY
        };
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT id, code_hash, attempts, expires_at > now() FROM one_time_codes \
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
        let code_id: Uuid = row.try_get(0)?;
        let stored: Vec<u8> = row.try_get(1)?;
        let attempts: i32 = row.try_get(2)?;
        let fresh: bool = row.try_get(3)?;
        if !fresh || attempts >= self.config.max_code_attempts {
            return Err(BankError::InvalidCode);
        }
        if secrets::code_hash(code_id, code.trim()) != stored {
            sqlx::query("UPDATE one_time_codes SET attempts = attempts + 1 WHERE id = $1")
                .bind(code_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            return Err(BankError::InvalidCode);
        }
        sqlx::query("UPDATE one_time_codes SET consumed_at = now() WHERE id = $1")
            .bind(code_id)
            .execute(&mut *tx)
            .await?;
        let account = if verified {
            let id: Uuid = sqlx::query_scalar("SELECT id FROM accounts WHERE user_id = $1")
                .bind(user.as_uuid())
                .fetch_one(&mut *tx)
                .await?;
            AccountId::from_uuid(id)
        } else {
            sqlx::query("UPDATE users SET verified_at = now() WHERE id = $1")
                .bind(user.as_uuid())
                .execute(&mut *tx)
                .await?;
            let account = AccountId::new();
            let wallet = ledger::create_account_in(
                &mut *tx,
                NewAccount::user_wallet(format!("wallet of account {account}")),
            )
            .await?;
            let wallet = WalletId::from_uuid(wallet.id.as_uuid());
            sqlx::query(
                "INSERT INTO accounts (id, user_id, default_wallet_id) VALUES ($1, $2, $3)",
            )
            .bind(account.as_uuid())
            .bind(user.as_uuid())
            .bind(wallet.as_uuid())
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO wallets (id, account_id, currency) VALUES ($1, $2, 'BTC')")
                .bind(wallet.as_uuid())
                .bind(account.as_uuid())
                .execute(&mut *tx)
                .await?;
            account
        };
        let session = self.new_session_in(&mut tx, Some(user), None).await?;
        tx.commit().await?;
        Ok((session, account))
    }

    async fn new_session_in(
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
    /// [`BankError::InvalidCredentials`] for an unknown identity or a wrong password;
    /// [`BankError::NotVerified`] before the registration code was confirmed.
    pub async fn login(
        &self,
        identity: &Identity,
        password: &Secret,
    ) -> Result<Session, BankError> {
        let found = self.user_by_identity(identity).await?;
        let Some((user, hash, verified)) = found else {
            // Spend the same time as for a known user, so timing does not tell.
            let dummy = self.hash(&Secret::new("not a password")).await?;
            let _ = self.check_password(password, dummy).await?;
            return Err(BankError::InvalidCredentials);
        };
        if !self.check_password(password, hash).await? {
            return Err(BankError::InvalidCredentials);
        }
        if !verified {
            return Err(BankError::NotVerified);
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
    pub async fn authenticate(&self, token: &str) -> Result<Principal, BankError> {
        let session = token.starts_with("sess_");
        if !session && !token.starts_with("key_") {
            return Err(BankError::Unauthenticated);
        }
        let hash = secrets::token_hash(token);
        if let Some(principal) = self.auth.as_ref().and_then(|c| c.get(&hash)) {
            return Ok(principal);
        }
        let ticket = self.auth.as_ref().map(|c| c.ticket());
        let (principal, valid_until) = if session {
            self.authenticate_session(&hash).await?
        } else {
            self.authenticate_api_key(&hash).await?
        };
        if let (Some(cache), Some(ticket)) = (&self.auth, ticket) {
            cache.remember(ticket, &hash, &principal, valid_until);
        }
        Ok(principal)
    }

    /// The session's principal and its expiry.
    async fn authenticate_session(
        &self,
        hash: &[u8],
    ) -> Result<(Principal, Option<DateTime<Utc>>), BankError> {
        let row = sqlx::query(
            "SELECT s.user_id, a.id, s.expires_at FROM sessions s \
             JOIN accounts a ON a.user_id = s.user_id \
             WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(BankError::Unauthenticated)?;
        let principal = Principal {
            user_id: UserId::from_uuid(row.try_get(0)?),
            account_id: AccountId::from_uuid(row.try_get(1)?),
            scopes: Scope::ALL.to_vec(),
            method: AuthMethod::Session,
        };
        Ok((principal, Some(row.try_get(2)?)))
    }

    /// The key's principal and until when it may be answered from memory.
    async fn authenticate_api_key(
        &self,
        hash: &[u8],
    ) -> Result<(Principal, Option<DateTime<Utc>>), BankError> {
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
               coalesce((SELECT last_used_at FROM touched), last_used_at) FROM k",
        )
        .bind(hash)
        .bind(API_KEY_LAST_USED_GRANULARITY.as_secs_f64())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(BankError::Unauthenticated)?;
        let scopes: Vec<String> = row.try_get(3)?;
        let principal = Principal {
            user_id: UserId::from_uuid(row.try_get(1)?),
            account_id: AccountId::from_uuid(row.try_get(2)?),
            scopes: scopes.iter().map(|s| s.parse()).collect::<Result<_, _>>()?,
            method: AuthMethod::ApiKey(ApiKeyId::from_uuid(row.try_get(0)?)),
        };
        let expires_at: Option<DateTime<Utc>> = row.try_get(4)?;
        let last_used_at: Option<DateTime<Utc>> = row.try_get(5)?;
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
        Ok((principal, valid_until))
    }

    /// Forgets a credential in this instance at once (the others hear of it through
    /// migration 0007's notification).
    fn forget_credential(&self, hash: &[u8]) {
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
    pub async fn logout(&self, token: &str) -> Result<(), BankError> {
        let hash = secrets::token_hash(token);
        sqlx::query(
            "UPDATE sessions SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL",
        )
        .bind(&hash)
        .execute(&self.pool)
        .await?;
        self.forget_credential(&hash);
        Ok(())
    }

    /// Creates an API key; its secret is returned once and stored only hashed.
    ///
    /// # Errors
    /// [`BankError::Forbidden`] unless logged in with a session (an API key cannot make
    /// keys); [`BankError::Invalid`] for an empty name or no scopes.
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
    pub async fn api_keys(&self, principal: &Principal) -> Result<Vec<ApiKeyInfo>, BankError> {
        principal.require(Scope::Read)?;
        let rows = sqlx::query(
            "SELECT id, name, scopes, created_at, expires_at, revoked_at, last_used_at \
             FROM api_keys WHERE account_id = $1 ORDER BY created_at",
        )
        .bind(principal.account_id.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let scopes: Vec<String> = r.try_get(2)?;
                Ok(ApiKeyInfo {
                    id: ApiKeyId::from_uuid(r.try_get(0)?),
                    name: r.try_get(1)?,
                    scopes: scopes.iter().map(|s| s.parse()).collect::<Result<_, _>>()?,
                    created_at: r.try_get(3)?,
                    expires_at: r.try_get(4)?,
                    revoked_at: r.try_get(5)?,
                    last_used_at: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// Revokes one of the account's API keys.
    ///
    /// # Errors
    /// [`BankError::Forbidden`] without a session; [`BankError::NotFound`] for a key of
    /// another account or an unknown one.
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

    /// Sets the account's username, once.
    ///
    /// # Errors
    /// [`BankError::UsernameTaken`], [`BankError::UsernameAlreadySet`],
    /// [`BankError::Forbidden`] without the write scope.
    pub async fn set_username(
        &self,
        principal: &Principal,
        username: &Username,
    ) -> Result<(), BankError> {
        principal.require(Scope::Write)?;
        let result =
            sqlx::query("UPDATE accounts SET username = $1 WHERE id = $2 AND username IS NULL")
                .bind(username.as_str())
                .bind(principal.account_id.as_uuid())
                .execute(&self.pool)
                .await;
        match result {
            Ok(r) if r.rows_affected() == 1 => Ok(()),
            Ok(_) => Err(BankError::UsernameAlreadySet),
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("23505") => {
                Err(BankError::UsernameTaken)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// An account.
    ///
    /// # Errors
    /// [`BankError::NotFound`].
    pub async fn account(&self, id: AccountId) -> Result<AccountView, BankError> {
        let row = sqlx::query(
            "SELECT id, user_id, username, level, status, default_wallet_id, created_at \
             FROM accounts WHERE id = $1",
        )
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(BankError::NotFound { what: "account" })?;
        account_from_row(&row)
    }

    /// The account that owns a username or an identity, for staff look-ups.
    ///
    /// # Errors
    /// [`BankError::NotFound`].
    pub async fn find_account(
        &self,
        staff: &StaffPrincipal,
        query: &AccountQuery,
    ) -> Result<AccountView, BankError> {
        staff.require(StaffAction::ViewAccounts)?;
        let base = "SELECT a.id, a.user_id, a.username, a.level, a.status, a.default_wallet_id, \
                    a.created_at FROM accounts a JOIN users u ON u.id = a.user_id";
        let row = match query {
            AccountQuery::Id(id) => {
                sqlx::query(&format!("{base} WHERE a.id = $1"))
                    .bind(id.as_uuid())
                    .fetch_optional(&self.pool)
                    .await?
            }
            AccountQuery::Username(u) => {
                sqlx::query(&format!("{base} WHERE a.username = $1"))
                    .bind(u.as_str())
                    .fetch_optional(&self.pool)
                    .await?
            }
            AccountQuery::Email(e) => {
                sqlx::query(&format!("{base} WHERE u.email = $1"))
                    .bind(e.as_str())
                    .fetch_optional(&self.pool)
                    .await?
            }
            AccountQuery::UserId(id) => {
                sqlx::query(&format!("{base} WHERE a.user_id = $1"))
                    .bind(id.as_uuid())
                    .fetch_optional(&self.pool)
                    .await?
            }
            AccountQuery::Phone(p) => {
                sqlx::query(&format!("{base} WHERE u.phone = $1"))
                    .bind(p.as_str())
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        account_from_row(&row.ok_or(BankError::NotFound { what: "account" })?)
    }

    /// A user.
    ///
    /// # Errors
    /// [`BankError::NotFound`].
    pub async fn user(&self, id: UserId) -> Result<UserView, BankError> {
        let row = sqlx::query(
            "SELECT email, phone, verified_at IS NOT NULL, created_at FROM users WHERE id = $1",
        )
        .bind(id.as_uuid())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(BankError::NotFound { what: "user" })?;
        Ok(UserView {
            id,
            email: row.try_get(0)?,
            phone: row.try_get(1)?,
            verified: row.try_get(2)?,
            created_at: row.try_get(3)?,
        })
    }

    /// Whether a username is free.
    ///
    /// # Errors
    /// [`BankError::Database`].
    pub async fn username_available(&self, username: &Username) -> Result<bool, BankError> {
        let taken: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM accounts WHERE username = $1)")
                .bind(username.as_str())
                .fetch_one(&self.pool)
                .await?;
        Ok(!taken)
    }

    /// The principal's own account.
    ///
    /// # Errors
    /// [`BankError::Forbidden`] without the read scope.
    pub async fn me(&self, principal: &Principal) -> Result<AccountView, BankError> {
        principal.require(Scope::Read)?;
        self.account(principal.account_id).await
    }

    /// The wallets of an account with their balances.
    ///
    /// # Errors
    /// [`BankError::Database`].
    pub async fn wallets_of(&self, account: AccountId) -> Result<Vec<WalletView>, BankError> {
        let rows = sqlx::query(
            "SELECT w.id, w.currency, b.settled, b.pending FROM wallets w \
             JOIN ledger_balances b ON b.account_id = w.id WHERE w.account_id = $1 \
             ORDER BY w.created_at",
        )
        .bind(account.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let pending: i64 = r.try_get(3)?;
                Ok(WalletView {
                    id: WalletId::from_uuid(r.try_get(0)?),
                    account_id: account,
                    currency: r.try_get(1)?,
                    balance: to_sats_floor(r.try_get(2)?),
                    pending_incoming: to_sats_floor(pending.max(0)),
                })
            })
            .collect()
    }

    /// One of the principal's wallets. Another account's wallet is reported as not found,
    /// so its existence does not leak.
    ///
    /// # Errors
    /// [`BankError::NotFound`], [`BankError::Forbidden`] without the read scope.
    pub async fn wallet(
        &self,
        principal: &Principal,
        id: WalletId,
    ) -> Result<WalletView, BankError> {
        principal.require(Scope::Read)?;
        self.wallets_of(principal.account_id)
            .await?
            .into_iter()
            .find(|w| w.id == id)
            .ok_or(BankError::NotFound { what: "wallet" })
    }

    /// The default wallet of the account with this username (to pay it).
    ///
    /// # Errors
    /// [`BankError::NotFound`].
    pub async fn wallet_of_username(&self, username: &Username) -> Result<WalletId, BankError> {
        let id: Option<Uuid> = sqlx::query_scalar(
            "SELECT default_wallet_id FROM accounts WHERE username = $1 AND status <> 'CLOSED'",
        )
        .bind(username.as_str())
        .fetch_optional(&self.pool)
        .await?
        .flatten();
        id.map(WalletId::from_uuid)
            .ok_or(BankError::NotFound { what: "username" })
    }

    /// Changes an account's status and records who, when and why. CLOSED is final;
    /// only staff may unlock.
    ///
    /// # Errors
    /// [`BankError::InvalidTransition`], [`BankError::NotFound`], [`BankError::Forbidden`].
    pub async fn set_status(
        &self,
        actor: Actor,
        account: AccountId,
        status: AccountStatus,
        reason: &str,
    ) -> Result<(), BankError> {
        let reason = checked_reason(reason)?;
        let mut tx = self.pool.begin().await?;
        let current: String =
            sqlx::query_scalar("SELECT status FROM accounts WHERE id = $1 FOR UPDATE")
                .bind(account.as_uuid())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(BankError::NotFound { what: "account" })?;
        let current: AccountStatus = current.parse()?;
        let allowed = match (current, status) {
            (AccountStatus::Closed, _) => false,
            (a, b) if a == b => false,
            // Unlocking is for staff only; a user may lock or close their own account.
            (AccountStatus::Locked, AccountStatus::Active) => matches!(actor, Actor::Staff(_)),
            _ => true,
        };
        if !allowed {
            return Err(BankError::InvalidTransition {
                from: current.as_str(),
                to: status.as_str(),
            });
        }
        sqlx::query("UPDATE accounts SET status = $1 WHERE id = $2")
            .bind(status.as_str())
            .bind(account.as_uuid())
            .execute(&mut *tx)
            .await?;
        record_event(
            &mut tx,
            account,
            "status",
            current.as_str(),
            status.as_str(),
            actor,
            reason,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Staff changes an account's status (needs the right role).
    ///
    /// # Errors
    /// As [`Bank::set_status`], and [`BankError::Forbidden`] for a role that may not.
    pub async fn staff_set_status(
        &self,
        staff: &StaffPrincipal,
        account: AccountId,
        status: AccountStatus,
        reason: &str,
    ) -> Result<(), BankError> {
        let action = match status {
            AccountStatus::Closed => StaffAction::CloseAccount,
            _ => StaffAction::LockAccount,
        };
        staff.require(action)?;
        self.set_status(Actor::Staff(staff.staff_id), account, status, reason)
            .await
    }

    /// Staff changes an account's KYC level and the change is recorded.
    ///
    /// # Errors
    /// [`BankError::Forbidden`], [`BankError::NotFound`].
    pub async fn set_level(
        &self,
        staff: &StaffPrincipal,
        account: AccountId,
        level: Level,
        reason: &str,
    ) -> Result<(), BankError> {
        staff.require(StaffAction::ChangeLevel)?;
        let reason = checked_reason(reason)?;
        let mut tx = self.pool.begin().await?;
        let current: i16 =
            sqlx::query_scalar("SELECT level FROM accounts WHERE id = $1 FOR UPDATE")
                .bind(account.as_uuid())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(BankError::NotFound { what: "account" })?;
        sqlx::query("UPDATE accounts SET level = $1 WHERE id = $2")
            .bind(i16::from(level.get()))
            .bind(account.as_uuid())
            .execute(&mut *tx)
            .await?;
        record_event(
            &mut tx,
            account,
            "level",
            &current.to_string(),
            &level.get().to_string(),
            Actor::Staff(staff.staff_id),
            reason,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// An account's audit trail, oldest first.
    ///
    /// # Errors
    /// [`BankError::Database`].
    pub async fn account_events(&self, account: AccountId) -> Result<Vec<AccountEvent>, BankError> {
        let rows = sqlx::query(
            "SELECT kind, old_value, new_value, actor, reason, created_at FROM account_events \
             WHERE account_id = $1 ORDER BY id",
        )
        .bind(account.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AccountEvent {
                    kind: r.try_get(0)?,
                    old_value: r.try_get(1)?,
                    new_value: r.try_get(2)?,
                    actor: r.try_get(3)?,
                    reason: r.try_get(4)?,
                    created_at: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// An account's limits and what is left of them over the last 24 hours.
    ///
    /// # Errors
    /// [`BankError::NotFound`].
    pub async fn limits(&self, account: AccountId) -> Result<Limits, BankError> {
        let view = self.account(account).await?;
        let mut conn = self.pool.acquire().await?;
        let used = internal_sent_24h(&mut conn, account).await?;
        let lim = self.config.limits.of(view.level);
        let internal = LimitView {
            total: lim.internal_send,
            used,
            remaining: lim.internal_send.checked_sub(used).unwrap_or(Sats::ZERO),
        };
        // No withdrawals exist yet: nothing is used.
        let withdrawal = LimitView {
            total: lim.withdrawal,
            used: Sats::ZERO,
            remaining: lim.withdrawal,
        };
        Ok(Limits {
            level: view.level,
            internal_send: internal,
            withdrawal,
        })
    }

    /// Creates a staff member (bootstrap and admin tool).
    ///
    /// # Errors
    /// [`BankError::IdentityTaken`] if the e-mail is taken.
    pub async fn create_staff(
        &self,
        email: &Email,
        password: &NewPassword,
        role: StaffRole,
    ) -> Result<StaffId, BankError> {
        let hash = self.hash(password.secret()).await?;
        let id = StaffId::new();
        let n = sqlx::query(
            "INSERT INTO staff (id, email, password_hash, role) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(id.as_uuid())
        .bind(email.as_str())
        .bind(hash)
        .bind(role.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(BankError::IdentityTaken);
        }
        Ok(id)
    }

    /// Staff login.
    ///
    /// # Errors
    /// [`BankError::InvalidCredentials`].
    pub async fn staff_login(
        &self,
        email: &Email,
        password: &Secret,
    ) -> Result<Session, BankError> {
        let row = sqlx::query(
            "SELECT id, password_hash FROM staff WHERE email = $1 AND disabled_at IS NULL",
        )
        .bind(email.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            let dummy = self.hash(&Secret::new("not a password")).await?;
            let _ = self.check_password(password, dummy).await?;
            return Err(BankError::InvalidCredentials);
        };
        let id = StaffId::from_uuid(row.try_get(0)?);
        if !self.check_password(password, row.try_get(1)?).await? {
            return Err(BankError::InvalidCredentials);
        }
        let mut conn = self.pool.acquire().await?;
        self.new_session_in(&mut conn, None, Some(id)).await
    }

    /// Resolves a staff session token.
    ///
    /// # Errors
    /// [`BankError::Unauthenticated`].
    pub async fn authenticate_staff(&self, token: &str) -> Result<StaffPrincipal, BankError> {
        let row = sqlx::query(
            "SELECT st.id, st.role FROM sessions s JOIN staff st ON st.id = s.staff_id \
             WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now() \
               AND st.disabled_at IS NULL",
        )
        .bind(secrets::token_hash(token))
        .fetch_optional(&self.pool)
        .await?
        .ok_or(BankError::Unauthenticated)?;
        let role: String = row.try_get(1)?;
        Ok(StaffPrincipal {
            staff_id: StaffId::from_uuid(row.try_get(0)?),
            role: role.parse()?,
        })
    }

    /// The ledger account behind a wallet.
    pub fn ledger_account(wallet: WalletId) -> LedgerAccountId {
        LedgerAccountId::from_uuid(wallet.as_uuid())
    }
}

/// How staff look an account up.
#[derive(Clone, Debug)]
pub enum AccountQuery {
    /// By id.
    Id(AccountId),
    /// By username.
    Username(Username),
    /// By e-mail.
    Email(Email),
    /// By the owner's user id.
    UserId(UserId),
    /// By the owner's phone number.
    Phone(Phone),
}

fn checked_reason(reason: &str) -> Result<&str, BankError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.len() > 1000 {
        return Err(BankError::Invalid(ParseError {
            what: "reason",
            why: "must be 1 to 1000 characters",
        }));
    }
    Ok(reason)
}

async fn record_event(
    tx: &mut sqlx::PgConnection,
    account: AccountId,
    kind: &str,
    old: &str,
    new: &str,
    actor: Actor,
    reason: &str,
) -> Result<(), BankError> {
    sqlx::query(
        "INSERT INTO account_events (account_id, kind, old_value, new_value, actor, reason) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(account.as_uuid())
    .bind(kind)
    .bind(old)
    .bind(new)
    .bind(actor.label())
    .bind(reason)
    .execute(tx)
    .await?;
    Ok(())
}

/// Satoshis sent internally by an account over the last 24 hours (pending or succeeded).
async fn internal_sent_24h(
    conn: &mut sqlx::PgConnection,
    account: AccountId,
) -> Result<Sats, BankError> {
    let used: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(amount_sats), 0)::bigint FROM intraledger_payments \
         WHERE sender_account_id = $1 AND status <> 'FAILURE' \
           AND created_at > now() - interval '24 hours'",
    )
    .bind(account.as_uuid())
    .fetch_one(conn)
    .await?;
    sats_from_db(used)
}

fn account_from_row(row: &sqlx::postgres::PgRow) -> Result<AccountView, BankError> {
    let level: i16 = row.try_get(3)?;
    let status: String = row.try_get(4)?;
    let wallet: Option<Uuid> = row.try_get(5)?;
    Ok(AccountView {
        id: AccountId::from_uuid(row.try_get(0)?),
        user_id: UserId::from_uuid(row.try_get(1)?),
        username: row.try_get(2)?,
        level: Level::new(u8::try_from(level).map_err(|e| BankError::Corrupt(e.to_string()))?)?,
        status: status.parse()?,
        default_wallet_id: WalletId::from_uuid(
            wallet.ok_or_else(|| BankError::Corrupt("account without wallet".into()))?,
        ),
        created_at: row.try_get(6)?,
    })
}
