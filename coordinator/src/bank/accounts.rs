//! Accounts and users: usernames, lookups, wallets, status, levels, events and limits.

use super::*;

impl Bank {
    /// Sets the account's username, once.
    ///
    /// # Errors
    /// [`BankError::UsernameTaken`], [`BankError::UsernameAlreadySet`],
    /// [`BankError::Forbidden`] without the write scope.
    #[tracing::instrument(skip_all, fields(account = %principal.account_id))]
    pub async fn set_username(
        &self,
        principal: &Principal,
        username: &Username,
    ) -> Result<(), BankError> {
        principal.require(Scope::Write)?;
        let result = sqlx::query!(
            "UPDATE accounts SET username = $1 WHERE id = $2 AND username IS NULL",
            username.as_str(),
            principal.account_id.as_uuid()
        )
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
    #[tracing::instrument(skip_all, fields(account = %id))]
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
    #[tracing::instrument(skip_all, fields(staff = %staff.staff_id))]
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
    #[tracing::instrument(skip_all, fields(user = %id))]
    pub async fn user(&self, id: UserId) -> Result<UserView, BankError> {
        // `!`: an IS NOT NULL test is never null (the macro cannot know).
        let row = sqlx::query!(
            r#"SELECT email, phone, verified_at IS NOT NULL AS "verified!", created_at
               FROM users WHERE id = $1"#,
            id.as_uuid(),
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(BankError::NotFound { what: "user" })?;
        Ok(UserView {
            id,
            email: row.email,
            phone: row.phone,
            verified: row.verified,
            created_at: row.created_at,
        })
    }

    /// Whether a username is free.
    ///
    /// # Errors
    /// [`BankError::Database`].
    #[tracing::instrument(skip_all)]
    pub async fn username_available(&self, username: &Username) -> Result<bool, BankError> {
        let taken: bool = sqlx::query_scalar!(
            r#"SELECT EXISTS (SELECT 1 FROM accounts WHERE username = $1) AS "taken!""#,
            username.as_str()
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(!taken)
    }

    /// The principal's own account.
    ///
    /// # Errors
    /// [`BankError::Forbidden`] without the read scope.
    #[tracing::instrument(skip_all, fields(account = %principal.account_id))]
    pub async fn me(&self, principal: &Principal) -> Result<AccountView, BankError> {
        principal.require(Scope::Read)?;
        self.account(principal.account_id).await
    }

    /// The wallets of an account with their balances.
    ///
    /// # Errors
    /// [`BankError::Database`].
    #[tracing::instrument(skip_all, fields(account = %account))]
    pub async fn wallets_of(&self, account: AccountId) -> Result<Vec<WalletView>, BankError> {
        // Pending incoming: the ledger's pending layer plus on-chain deposits not yet
        // credited (in msat, as the ledger; migration 0013).
        let rows = sqlx::query(
            "SELECT w.id, w.currency, b.settled, b.pending + coalesce(( \
                 SELECT sum(d.amount_sat) * 1000 FROM deposits d \
                 WHERE d.wallet_id = w.id AND d.state = 'PENDING'), 0)::int8 AS pending \
             FROM wallets w \
             JOIN ledger_balances b ON b.account_id = w.id WHERE w.account_id = $1 \
             ORDER BY w.created_at",
        )
        .bind(account.as_uuid())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let pending: i64 = r.try_get("pending")?;
                Ok(WalletView {
                    id: WalletId::from_uuid(r.try_get("id")?),
                    account_id: account,
                    currency: r.try_get("currency")?,
                    balance: to_sats_floor(r.try_get("settled")?),
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
    #[tracing::instrument(skip_all, fields(account = %principal.account_id, wallet = %id))]
    pub async fn wallet(
        &self,
        principal: &Principal,
        id: WalletId,
    ) -> Result<WalletView, BankError> {
        principal.require(Scope::Read)?;
        self.own_wallet(principal, id).await
    }

    /// One of the principal's wallets, to receive into it (a deposit address or an
    /// invoice): needs the receive scope, not read, so a receive-only key can hand out
    /// addresses without seeing balances or history.
    ///
    /// # Errors
    /// [`BankError::Forbidden`] without the receive scope; [`BankError::NotFound`] for a
    /// wallet of another account.
    #[tracing::instrument(skip_all, fields(account = %principal.account_id, wallet = %id))]
    pub async fn receiving_wallet(
        &self,
        principal: &Principal,
        id: WalletId,
    ) -> Result<WalletView, BankError> {
        principal.require(Scope::Receive)?;
        self.own_wallet(principal, id).await
    }

    /// One of the principal's wallets (another account's is not found), whatever the
    /// scope: the callers check the scope their use needs.
    pub(super) async fn own_wallet(
        &self,
        principal: &Principal,
        id: WalletId,
    ) -> Result<WalletView, BankError> {
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
    #[tracing::instrument(skip_all)]
    pub async fn wallet_of_username(&self, username: &Username) -> Result<WalletId, BankError> {
        let id: Option<Uuid> = sqlx::query_scalar!(
            "SELECT default_wallet_id FROM accounts WHERE username = $1 AND status <> 'CLOSED'",
            username.as_str()
        )
        .fetch_optional(&self.pool)
        .await?
        .flatten();
        id.map(WalletId::from_uuid)
            .ok_or(BankError::NotFound { what: "username" })
    }

    /// Changes an account's status and records who, when, why and in which role. CLOSED
    /// is final; only staff may unlock, and only the role that placed the lock or an
    /// admin (see [`may_lift`]); a user may close a locked account only if the user
    /// placed the lock. A staff actor's role is read from the database in the
    /// same transaction, so a role changed since login counts as it is now.
    ///
    /// # Errors
    /// [`BankError::InvalidTransition`], [`BankError::NotFound`], [`BankError::Forbidden`],
    /// [`BankError::LockHeld`].
    #[tracing::instrument(skip_all, fields(account = %account, status = ?status))]
    pub async fn set_status(
        &self,
        actor: Actor,
        account: AccountId,
        status: AccountStatus,
        reason: &str,
    ) -> Result<(), BankError> {
        let reason = checked_reason(reason)?;
        let mut tx = self.pool.begin().await?;
        let staff_role = match actor {
            Actor::Staff(id) => {
                let role = staff_role_in(&mut tx, id).await?;
                let action = match status {
                    AccountStatus::Closed => StaffAction::CloseAccount,
                    _ => StaffAction::LockAccount,
                };
                StaffPrincipal { staff_id: id, role }.require(action)?;
                Some(role)
            }
            _ => None,
        };
        let row = sqlx::query("SELECT status, locked_by FROM accounts WHERE id = $1 FOR UPDATE")
            .bind(account.as_uuid())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(BankError::NotFound { what: "account" })?;
        let current: AccountStatus = row.try_get::<String, _>("status")?.parse()?;
        let locked_by: Option<String> = row.try_get("locked_by")?;
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
        let role = actor.role(staff_role);
        if let (AccountStatus::Locked, AccountStatus::Active, Some(staff)) =
            (current, status, staff_role)
        {
            may_lift(locked_by.as_deref().unwrap_or("admin"), staff.as_str())?;
        }
        // A user may close their own account, but not one that staff or the system
        // locked: closing is final, so it would end a review no one else could reopen.
        if let (AccountStatus::Locked, Actor::User(_)) = (current, actor) {
            may_lift(locked_by.as_deref().unwrap_or("admin"), "user")?;
        }
        let holder = (status == AccountStatus::Locked).then_some(role);
        sqlx::query!(
            "UPDATE accounts SET status = $1, locked_by = $2 WHERE id = $3",
            status.as_str(),
            holder,
            account.as_uuid()
        )
        .execute(&mut *tx)
        .await?;
        let change = Change {
            kind: "status",
            old: current.as_str(),
            new: status.as_str(),
        };
        record_event(&mut tx, account, change, actor, role, reason).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Who holds an account's lock ("user", "system" or a staff role); `None` unless the
    /// account is LOCKED.
    ///
    /// # Errors
    /// [`BankError::NotFound`].
    #[tracing::instrument(skip_all, fields(account = %account))]
    pub async fn lock_holder(&self, account: AccountId) -> Result<Option<String>, BankError> {
        sqlx::query_scalar!(
            "SELECT locked_by FROM accounts WHERE id = $1",
            account.as_uuid()
        )
        .fetch_optional(&self.pool)
        .await?
        .ok_or(BankError::NotFound { what: "account" })
    }

    /// Staff changes an account's status (needs the right role).
    ///
    /// # Errors
    /// As [`Bank::set_status`], and [`BankError::Forbidden`] for a role that may not.
    #[tracing::instrument(skip_all, fields(staff = %staff.staff_id, account = %account, status = ?status))]
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
    #[tracing::instrument(skip_all, fields(staff = %staff.staff_id, account = %account))]
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
        let current: i16 = sqlx::query_scalar!(
            "SELECT level FROM accounts WHERE id = $1 FOR UPDATE",
            account.as_uuid()
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(BankError::NotFound { what: "account" })?;
        sqlx::query!(
            "UPDATE accounts SET level = $1 WHERE id = $2",
            i16::from(level.get()),
            account.as_uuid()
        )
        .execute(&mut *tx)
        .await?;
        let change = Change {
            kind: "level",
            old: &current.to_string(),
            new: &level.get().to_string(),
        };
        record_event(
            &mut tx,
            account,
            change,
            Actor::Staff(staff.staff_id),
            staff.role.as_str(),
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
    #[tracing::instrument(skip_all, fields(account = %account))]
    pub async fn account_events(&self, account: AccountId) -> Result<Vec<AccountEvent>, BankError> {
        Ok(sqlx::query_as!(
            AccountEvent,
            "SELECT kind, old_value, new_value, actor, reason, created_at, actor_role \
             FROM account_events WHERE account_id = $1 ORDER BY id",
            account.as_uuid(),
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// An account's limits and what is left of them over the last 24 hours.
    ///
    /// # Errors
    /// [`BankError::NotFound`].
    #[tracing::instrument(skip_all, fields(account = %account))]
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
}

/// Whether a staff member in `role` (or `"user"`, the owner closing the account) may lift a
/// lock placed by `placed_by`: an admin always; the role that placed it; anyone for a lock
/// the user placed on their own account; compliance for a lock the system placed.
///
/// # Errors
/// [`BankError::LockHeld`].
fn may_lift(placed_by: &str, role: &str) -> Result<(), BankError> {
    let ok = role == StaffRole::Admin.as_str()
        || role == placed_by
        || placed_by == "user"
        || (placed_by == "system" && role == StaffRole::Compliance.as_str());
    if ok {
        return Ok(());
    }
    let placed_by = match placed_by {
        "system" => "system",
        other => other
            .parse::<StaffRole>()
            .map(StaffRole::as_str)
            .unwrap_or("admin"),
    };
    Err(BankError::LockHeld { placed_by })
}

/// The role of an active staff member, read inside the change's transaction.
async fn staff_role_in(tx: &mut sqlx::PgConnection, id: StaffId) -> Result<StaffRole, BankError> {
    let role: Option<String> = sqlx::query_scalar!(
        "SELECT role FROM staff WHERE id = $1 AND disabled_at IS NULL",
        id.as_uuid()
    )
    .fetch_optional(tx)
    .await?;
    role.ok_or(BankError::Forbidden {
        needed: "an active staff member",
    })?
    .parse()
    .map_err(BankError::from)
}
