//! The staff schema (`/admin/graphql`), with Blink's admin names where they exist
//! (`accountDetailsByAccountId`, `accountDetailsByUsername`, `accountDetailsByEmail`,
//! `accountDetailsByUserId`, `accountDetailsByUserPhone`, `accountUpdateStatus`, `accountUpdateLevel`, `AuditedAccount`). Every field checks the
//! staff role against the action (`StaffRole::may`): support, compliance, treasury, admin.
//!
//! Differences from Blink, because our domain asks for more: a status or level change
//! needs a `comment` (the audit trail records who, when and why), so `comment` is
//! required in practice (a missing one is an `INVALID_INPUT` payload error) and
//! `AccountUpdateLevelInput` has a `comment` field of our own. Statuses are ACTIVE, LOCKED
//! and CLOSED (Blink's NEW and PENDING do not exist here).

use async_graphql::{Context, Enum, ID, InputObject, Object, Result, SimpleObject};

use super::public::ErrorInterface;
use super::scalars::{AccountIdScalar, EmailAddressScalar, PhoneScalar, Timestamp, UsernameScalar};
use super::types::{AccountLevel, BtcWallet, Viewer, Wallet, app, gql};
use crate::api::errors::ApiError;
use crate::bank::{
    AccountQuery, AccountStatus as DomainStatus, AccountView, BankError, Email, ParseError, Phone,
    Secret, StaffAction, StaffPrincipal,
};
use crate::ids::{AccountId, UserId};
use crate::ledger::system;

/// What the admin resolvers know about the request.
#[derive(Clone, Debug)]
pub(crate) struct AdminMeta {
    /// The staff member, if authenticated.
    pub staff: Option<StaffPrincipal>,
    /// The client's address, for rate limits.
    pub client: String,
}

fn staff(ctx: &Context<'_>, action: StaffAction) -> Result<StaffPrincipal> {
    let s = ctx
        .data_unchecked::<AdminMeta>()
        .staff
        .ok_or_else(|| ApiError::unauthenticated().to_graphql())?;
    s.require(action).map_err(gql)?;
    Ok(s)
}

/// Status of an account.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "AccountStatus")]
pub enum AccountStatus {
    /// May send and receive.
    Active,
    /// Closed for good: may neither send nor receive.
    Closed,
    /// May receive, not send.
    Locked,
}

impl From<DomainStatus> for AccountStatus {
    fn from(s: DomainStatus) -> AccountStatus {
        match s {
            DomainStatus::Active => AccountStatus::Active,
            DomainStatus::Locked => AccountStatus::Locked,
            DomainStatus::Closed => AccountStatus::Closed,
        }
    }
}

impl From<AccountStatus> for DomainStatus {
    fn from(s: AccountStatus) -> DomainStatus {
        match s {
            AccountStatus::Active => DomainStatus::Active,
            AccountStatus::Locked => DomainStatus::Locked,
            AccountStatus::Closed => DomainStatus::Closed,
        }
    }
}

/// The owner of an account.
#[derive(SimpleObject, Clone, Debug)]
pub struct AuditedUser {
    /// The user.
    pub id: ID,
    /// E-mail address and whether it was confirmed.
    pub email: Option<super::public::Email>,
    /// Phone number.
    pub phone: Option<PhoneScalar>,
    /// When they registered.
    pub created_at: Timestamp,
}

/// One change of an account's status or level (our extension).
#[derive(SimpleObject, Clone, Debug)]
pub struct AccountAuditEvent {
    /// "status" or "level".
    pub kind: String,
    /// Value before.
    pub old_value: String,
    /// Value after.
    pub new_value: String,
    /// Who ("user:<id>", "staff:<id>" or "system").
    pub actor: String,
    /// The role they acted in ("user", "system" or a staff role such as "compliance");
    /// null for changes recorded before roles were.
    pub actor_role: Option<String>,
    /// Why.
    pub reason: String,
    /// When.
    pub created_at: Timestamp,
}

/// An account as staff see it.
#[derive(Clone, Debug)]
pub struct AuditedAccount {
    view: AccountView,
    staff: StaffPrincipal,
}

#[Object]
impl AuditedAccount {
    async fn id(&self) -> ID {
        ID(self.view.id.to_string())
    }

    async fn created_at(&self) -> Timestamp {
        self.view.created_at.into()
    }

    async fn level(&self) -> AccountLevel {
        AccountLevel::from_level(self.view.level)
    }

    async fn status(&self) -> AccountStatus {
        self.view.status.into()
    }

    async fn username(&self) -> Option<UsernameScalar> {
        self.view.username.clone().map(UsernameScalar)
    }

    /// Who placed the lock of a LOCKED account ("user", "system" or a staff role): only
    /// that role or an admin may lift it (our extension). Null unless LOCKED.
    async fn locked_by(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        self.staff.require(StaffAction::ViewAccounts).map_err(gql)?;
        app(ctx).bank.lock_holder(self.view.id).await.map_err(gql)
    }

    async fn owner(&self, ctx: &Context<'_>) -> Result<AuditedUser> {
        self.staff.require(StaffAction::ViewAccounts).map_err(gql)?;
        let u = app(ctx).bank.user(self.view.user_id).await.map_err(gql)?;
        Ok(AuditedUser {
            id: ID(u.id.to_string()),
            email: u.email.map(|address| super::public::Email {
                address: Some(EmailAddressScalar(address)),
                verified: Some(u.verified),
            }),
            phone: u.phone.map(PhoneScalar),
            created_at: u.created_at.into(),
        })
    }

    /// The account's wallets; their `transactions` need the ViewTransactions action.
    async fn wallets(&self, ctx: &Context<'_>) -> Result<Vec<Wallet>> {
        self.staff.require(StaffAction::ViewAccounts).map_err(gql)?;
        let wallets = app(ctx).bank.wallets_of(self.view.id).await.map_err(gql)?;
        Ok(wallets
            .into_iter()
            .map(|w| Wallet::BtcWallet(BtcWallet::new(w, Viewer::Staff(self.staff))))
            .collect())
    }

    /// Every status and level change, oldest first (our extension).
    async fn audit_trail(&self, ctx: &Context<'_>) -> Result<Vec<AccountAuditEvent>> {
        self.staff.require(StaffAction::ViewAccounts).map_err(gql)?;
        let events = app(ctx)
            .bank
            .account_events(self.view.id)
            .await
            .map_err(gql)?;
        Ok(events
            .into_iter()
            .map(|e| AccountAuditEvent {
                kind: e.kind,
                old_value: e.old_value,
                new_value: e.new_value,
                actor: e.actor,
                actor_role: e.actor_role,
                reason: e.reason,
                created_at: e.created_at.into(),
            })
            .collect())
    }
}

fn invalid(e: ParseError) -> async_graphql::Error {
    ApiError::invalid(e.to_string()).to_graphql()
}

async fn find(ctx: &Context<'_>, query: AccountQuery) -> Result<AuditedAccount> {
    let s = staff(ctx, StaffAction::ViewAccounts)?;
    let view = app(ctx).bank.find_account(&s, &query).await.map_err(gql)?;
    Ok(AuditedAccount { view, staff: s })
}

fn account_id(s: &str) -> Result<AccountId, ApiError> {
    s.trim()
        .parse()
        .map_err(|_| ApiError::invalid("invalid accountId: not an account id"))
}

/// A balance of one of the bank's own accounts (our extension, for treasury). Amounts
/// are millisatoshis as decimal strings: exact, and safe from JSON number rounding.
#[derive(SimpleObject, Clone, Debug)]
pub struct TreasuryBalance {
    /// The account's well-known code (`bank.onchain`, `bank.lightning`, ...).
    pub code: Option<String>,
    /// Its name.
    pub name: String,
    /// Its currency.
    pub currency: String,
    /// Settled balance in its normal direction, millisatoshis.
    pub settled_msat: String,
    /// Pending balance, millisatoshis.
    pub pending_msat: String,
}

/// The staff query root.
#[derive(Debug, Default)]
pub struct AdminQuery;

#[Object(name = "Query")]
impl AdminQuery {
    /// An account by id.
    async fn account_details_by_account_id(
        &self,
        ctx: &Context<'_>,
        account_id: ID,
    ) -> Result<AuditedAccount> {
        let id = self::account_id(&account_id).map_err(|e| e.to_graphql())?;
        find(ctx, AccountQuery::Id(id)).await
    }

    /// An account by username.
    async fn account_details_by_username(
        &self,
        ctx: &Context<'_>,
        username: UsernameScalar,
    ) -> Result<AuditedAccount> {
        let u = username.0.parse().map_err(invalid)?;
        find(ctx, AccountQuery::Username(u)).await
    }

    /// An account by its owner's e-mail address.
    async fn account_details_by_email(
        &self,
        ctx: &Context<'_>,
        email: EmailAddressScalar,
    ) -> Result<AuditedAccount> {
        let e: Email = email.0.parse().map_err(invalid)?;
        find(ctx, AccountQuery::Email(e)).await
    }

    /// The account of a user, by the user's id.
    async fn account_details_by_user_id(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
    ) -> Result<AuditedAccount> {
        let id: UserId = user_id
            .trim()
            .parse()
            .map_err(|_| ApiError::invalid("invalid userId: not a user id").to_graphql())?;
        find(ctx, AccountQuery::UserId(id)).await
    }

    /// An account by its owner's phone number (E.164; spaces and dashes are ignored).
    async fn account_details_by_user_phone(
        &self,
        ctx: &Context<'_>,
        phone: PhoneScalar,
    ) -> Result<AuditedAccount> {
        let p: Phone = phone.0.parse().map_err(invalid)?;
        find(ctx, AccountQuery::Phone(p)).await
    }

    /// On-chain deposits in some states (default: below the minimum, held, pending),
    /// newest first, `first` of them (1 to 100, default 20; every staff role; our
    /// extension).
    async fn on_chain_deposits(
        &self,
        ctx: &Context<'_>,
        states: Option<Vec<super::admin_onchain::DepositStateEnum>>,
        first: Option<i32>,
    ) -> Result<Vec<super::admin_onchain::DepositView>> {
        staff(ctx, StaffAction::ViewTransactions)?;
        super::admin_onchain::deposits(app(ctx), states, first)
            .await
            .map_err(|e| e.to_graphql())
    }

    /// Compliance alerts of reorgs after settlement, oldest first (every staff role; our
    /// extension). Only unresolved ones unless `openOnly` is false.
    async fn on_chain_deposit_alerts(
        &self,
        ctx: &Context<'_>,
        open_only: Option<bool>,
    ) -> Result<Vec<super::admin_onchain::AlertView>> {
        staff(ctx, StaffAction::ViewTransactions)?;
        super::admin_onchain::alerts(app(ctx), open_only.unwrap_or(true))
            .await
            .map_err(|e| e.to_graphql())
    }

    /// The bank's omnibus and system balances (treasury and admin; our extension).
    async fn treasury_balances(&self, ctx: &Context<'_>) -> Result<Vec<TreasuryBalance>> {
        staff(ctx, StaffAction::ViewTreasury)?;
        let ledger = app(ctx).bank.ledger();
        let mut out = Vec::new();
        for id in [
            system::BANK_ONCHAIN,
            system::BANK_LIGHTNING,
            system::BANK_FEES,
            system::BANK_EQUITY,
        ] {
            let account = ledger
                .account(id)
                .await
                .map_err(|e| gql(BankError::from(e)))?;
            let balance = ledger
                .balance(id)
                .await
                .map_err(|e| gql(BankError::from(e)))?;
            out.push(TreasuryBalance {
                code: account.code,
                name: account.name,
                currency: account.currency.code().to_owned(),
                settled_msat: balance.settled.to_string(),
                pending_msat: balance.pending.to_string(),
            });
        }
        Ok(out)
    }

    /// The bank's Lightning node: identity, chain, balances and channels (treasury and
    /// admin; our extension). Null where this instance runs no node.
    async fn lightning_node(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Option<super::admin_lightning::NodeView>> {
        staff(ctx, StaffAction::ViewTreasury)?;
        super::admin_lightning::node(app(ctx))
            .await
            .map_err(|e| e.to_graphql())
    }

    /// Every KYC level.
    async fn all_levels(&self, ctx: &Context<'_>) -> Result<Vec<AccountLevel>> {
        staff(ctx, StaffAction::ViewAccounts)?;
        Ok(vec![
            AccountLevel::Zero,
            AccountLevel::One,
            AccountLevel::Two,
            AccountLevel::Three,
        ])
    }
}

/// Change an account's status.
#[derive(InputObject, Clone, Debug)]
pub struct AccountUpdateStatusInput {
    /// The account.
    pub account_id: AccountIdScalar,
    /// Why (required here: 1 to 1000 characters, kept in the audit trail).
    pub comment: Option<String>,
    /// The new status.
    pub status: AccountStatus,
}

/// Change an account's KYC level.
#[derive(InputObject, Clone, Debug)]
pub struct AccountUpdateLevelInput {
    /// The account.
    pub account_id: AccountIdScalar,
    /// The new level.
    pub level: AccountLevel,
    /// Our extension: why (required: 1 to 1000 characters, kept in the audit trail).
    pub comment: Option<String>,
}

/// Result of an account change.
#[derive(SimpleObject, Clone, Debug)]
pub struct AccountDetailPayload {
    /// The account after the change.
    pub account_details: Option<AuditedAccount>,
    /// Why it failed.
    pub errors: Vec<ErrorInterface>,
}

/// A staff login (our extension).
#[derive(InputObject, Clone, Debug)]
pub struct StaffLoginInput {
    /// E-mail address.
    pub email: EmailAddressScalar,
    /// Password.
    #[graphql(secret)]
    pub password: String,
}

/// A staff session token.
#[derive(SimpleObject, Clone, Debug)]
pub struct StaffLoginPayload {
    /// The bearer token for `/admin/graphql`, shown once.
    pub auth_token: Option<String>,
    /// Why it failed.
    pub errors: Vec<ErrorInterface>,
}

fn errors(e: impl Into<ApiError>) -> Vec<ErrorInterface> {
    super::public::payload_errors(e.into())
}

async fn after_change(
    ctx: &Context<'_>,
    s: StaffPrincipal,
    id: AccountId,
    result: Result<(), BankError>,
) -> Result<AccountDetailPayload> {
    if let Err(e) = result {
        return Ok(AccountDetailPayload {
            account_details: None,
            errors: errors(e),
        });
    }
    let view = app(ctx)
        .bank
        .find_account(&s, &AccountQuery::Id(id))
        .await
        .map_err(gql)?;
    Ok(AccountDetailPayload {
        account_details: Some(AuditedAccount { view, staff: s }),
        errors: Vec::new(),
    })
}

/// The staff mutation root.
#[derive(Debug, Default)]
pub struct AdminMutation;

#[Object(name = "Mutation")]
impl AdminMutation {
    /// Locks, unlocks or closes an account, with a comment for the audit trail. Support
    /// may lock and unlock; compliance and admin may also close. A lock is lifted only by
    /// the role that placed it or an admin (`LOCK_HELD` otherwise).
    async fn account_update_status(
        &self,
        ctx: &Context<'_>,
        input: AccountUpdateStatusInput,
    ) -> Result<AccountDetailPayload> {
        let needed = match input.status {
            AccountStatus::Closed => StaffAction::CloseAccount,
            _ => StaffAction::LockAccount,
        };
        let s = staff(ctx, needed)?;
        let id = match account_id(&input.account_id.0) {
            Ok(id) => id,
            Err(e) => {
                return Ok(AccountDetailPayload {
                    account_details: None,
                    errors: errors(e),
                });
            }
        };
        let comment = input.comment.unwrap_or_default();
        let result = app(ctx)
            .bank
            .staff_set_status(&s, id, input.status.into(), &comment)
            .await;
        after_change(ctx, s, id, result).await
    }

    /// Changes an account's KYC level, with a comment for the audit trail (compliance
    /// and admin).
    async fn account_update_level(
        &self,
        ctx: &Context<'_>,
        input: AccountUpdateLevelInput,
    ) -> Result<AccountDetailPayload> {
        let s = staff(ctx, StaffAction::ChangeLevel)?;
        let id = match account_id(&input.account_id.0) {
            Ok(id) => id,
            Err(e) => {
                return Ok(AccountDetailPayload {
                    account_details: None,
                    errors: errors(e),
                });
            }
        };
        let comment = input.comment.unwrap_or_default();
        let result = app(ctx)
            .bank
            .set_level(&s, id, input.level.to_level(), &comment)
            .await;
        after_change(ctx, s, id, result).await
    }

    /// Our extension: resolves a compliance alert of a reorg after settlement, reversing
    /// the deposit's credit or dismissing the alert (compliance and admin). Idempotent.
    async fn on_chain_deposit_alert_resolve(
        &self,
        ctx: &Context<'_>,
        input: super::admin_onchain::OnChainDepositAlertResolveInput,
    ) -> Result<super::admin_onchain::OnChainDepositAlertPayload> {
        let s = staff(ctx, StaffAction::CloseAccount)?;
        Ok(super::admin_onchain::resolve(app(ctx), &s, input).await)
    }

    /// Our extension: a staff member logs in with e-mail and password. Rate-limited.
    async fn staff_login(&self, ctx: &Context<'_>, input: StaffLoginInput) -> StaffLoginPayload {
        let failed = |e: ApiError| StaffLoginPayload {
            auth_token: None,
            errors: errors(e),
        };
        let email: Email = match input.email.0.parse() {
            Ok(e) => e,
            Err(e) => {
                let e: ParseError = e;
                return failed(ApiError::invalid(e.to_string()));
            }
        };
        let app = app(ctx);
        let client = &ctx.data_unchecked::<AdminMeta>().client;
        if let Err(e) = app.limiter.check_staff(client, email.as_str()).await {
            return failed(e);
        }
        match app
            .bank
            .staff_login(&email, &Secret::new(input.password))
            .await
        {
            Ok(session) => StaffLoginPayload {
                auth_token: Some(session.token.expose().to_owned()),
                errors: Vec::new(),
            },
            Err(e) => failed(e.into()),
        }
    }
}
