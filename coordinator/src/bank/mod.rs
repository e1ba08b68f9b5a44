//! Users, accounts, wallets and authentication on top of the ledger: registration with a
//! one-time code, password login, sessions, API keys with scopes, usernames, KYC levels
//! and limits, account status with an audit trail, staff roles.

mod accounts;
mod auth;
mod auth_cache;
mod config;
mod error;
pub mod events;
mod history;
mod keys;
pub mod lightning;
mod notifier;
mod passwords;
mod payments;
mod resume;
mod secrets;
mod staff;
pub mod staff_admin;
mod types;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Row};
use uuid::Uuid;

pub use auth_cache::LISTENER_APPLICATION_NAME as AUTH_LISTENER_APPLICATION_NAME;
pub use config::{BankConfig, LevelLimits, LimitsConfig};
pub use error::BankError;
pub use history::{TransactionPage, TxDirection, WalletTransaction};
pub use notifier::{CodePurpose, Notification, Notifier, NotifyError, OutboxNotifier, SendFuture};
pub use passwords::PasswordProof;
pub use payments::{MAX_MEMO_LEN, PaymentResult, PaymentStatus, Recipient, SendRequest};
pub use resume::{ResumeConfig, ResumeReport, ResumerHandle};
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
    /// The role the actor acts in: "user", "system" or the staff member's role.
    fn role(self, staff_role: Option<StaffRole>) -> &'static str {
        match (self, staff_role) {
            (Actor::User(_), _) => "user",
            (Actor::System, _) => "system",
            (Actor::Staff(_), Some(r)) => r.as_str(),
            // Not reached: a staff actor's role is read before any change.
            (Actor::Staff(_), None) => "staff",
        }
    }

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
    /// The role they acted in ("user", "system" or a staff role); none for changes made
    /// before roles were recorded.
    pub actor_role: Option<String>,
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
const CODE_PURPOSE_RESET: &str = "reset";

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
    /// `None` until [`Bank::with_lightning`].
    lightning: Option<Arc<lightning::LightningRail>>,
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
            lightning: None,
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

    /// Spends what checking a password against a stored hash costs, for an identity that
    /// does not exist (no user enumeration by timing). Always false.
    async fn check_unknown_password(&self, password: &Secret) -> Result<bool, BankError> {
        self.check_password(password, secrets::dummy_hash(self.config.password_cost))
            .await
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

/// What changed, from what to what, in the audit trail.
struct Change<'a> {
    kind: &'a str,
    old: &'a str,
    new: &'a str,
}

async fn record_event(
    tx: &mut sqlx::PgConnection,
    account: AccountId,
    change: Change<'_>,
    actor: Actor,
    actor_role: &str,
    reason: &str,
) -> Result<(), BankError> {
    sqlx::query(
        "INSERT INTO account_events \
         (account_id, kind, old_value, new_value, actor, actor_role, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(account.as_uuid())
    .bind(change.kind)
    .bind(change.old)
    .bind(change.new)
    .bind(actor.label())
    .bind(actor_role)
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
    let level: i16 = row.try_get("level")?;
    let status: String = row.try_get("status")?;
    let wallet: Option<Uuid> = row.try_get("default_wallet_id")?;
    Ok(AccountView {
        id: AccountId::from_uuid(row.try_get("id")?),
        user_id: UserId::from_uuid(row.try_get("user_id")?),
        username: row.try_get("username")?,
        level: Level::new(u8::try_from(level).map_err(|e| BankError::Corrupt(e.to_string()))?)?,
        status: status.parse()?,
        default_wallet_id: WalletId::from_uuid(
            wallet.ok_or_else(|| BankError::Corrupt("account without wallet".into()))?,
        ),
        created_at: row.try_get("created_at")?,
    })
}
