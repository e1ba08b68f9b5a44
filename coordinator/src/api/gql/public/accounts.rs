//! Accounts, users, API keys and usernames.

use async_graphql::{Context, Enum, ID, InputObject, Interface, Object, Result, SimpleObject};
use chrono::Utc;

use super::{ErrorInterface, meta, payload_error, principal};
use crate::api::errors::ApiError;
use crate::api::gql::scalars::{
    DisplayCurrencyScalar, EmailAddressScalar, LanguageScalar, PhoneScalar, Timestamp,
    UsernameScalar, WalletIdScalar,
};
use crate::api::gql::types::{
    AccountLevel, AccountLimits, BtcWallet, Transaction, TransactionConnection, Viewer, Wallet,
    WalletCurrency, app, gql, page_size, wallet_page,
};
use crate::bank::{AccountView, ApiKeyInfo, BankError, Principal, Scope, Username};
use crate::ids::{ApiKeyId, WalletId};

/// What an API key may do.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "Scope")]
pub enum ScopeEnum {
    /// Read balances, transactions and account data.
    Read,
    /// Send money and change settings.
    Write,
    /// Receive money (invoices, addresses).
    Receive,
}

impl From<ScopeEnum> for Scope {
    fn from(s: ScopeEnum) -> Scope {
        match s {
            ScopeEnum::Read => Scope::Read,
            ScopeEnum::Write => Scope::Write,
            ScopeEnum::Receive => Scope::Receive,
        }
    }
}

impl From<Scope> for ScopeEnum {
    fn from(s: Scope) -> ScopeEnum {
        match s {
            Scope::Read => ScopeEnum::Read,
            Scope::Write => ScopeEnum::Write,
            Scope::Receive => ScopeEnum::Receive,
        }
    }
}

/// An API key (never its secret).
#[derive(Clone, Debug)]
pub struct ApiKey {
    info: ApiKeyInfo,
}

#[Object]
impl ApiKey {
    async fn id(&self) -> ID {
        ID(self.info.id.to_string())
    }

    async fn name(&self) -> String {
        self.info.name.clone()
    }

    async fn created_at(&self) -> Timestamp {
        self.info.created_at.into()
    }

    async fn revoked(&self) -> bool {
        self.info.revoked_at.is_some()
    }

    async fn expired(&self) -> bool {
        self.info.expires_at.is_some_and(|t| t <= Utc::now())
    }

    async fn expires_at(&self) -> Option<Timestamp> {
        self.info.expires_at.map(Timestamp::from)
    }

    /// When the key last authenticated a request, to within a minute (the store
    /// refreshes it at most once a minute so that authentication stays read-only).
    async fn last_used_at(&self) -> Option<Timestamp> {
        self.info.last_used_at.map(Timestamp::from)
    }

    /// True when the key may only read.
    async fn read_only(&self) -> bool {
        self.info.scopes == [Scope::Read]
    }

    async fn scopes(&self) -> Vec<ScopeEnum> {
        self.info
            .scopes
            .iter()
            .copied()
            .map(ScopeEnum::from)
            .collect()
    }
}

/// The caller as a user.
#[derive(Clone, Debug)]
pub struct User {
    pub(super) account: AccountView,
    pub(super) principal: Principal,
}

#[Object]
impl User {
    async fn id(&self) -> Result<ID> {
        self.principal.require(Scope::Read).map_err(gql)?;
        Ok(ID(self.account.user_id.to_string()))
    }

    /// Optional immutable user friendly identifier.
    async fn username(&self) -> Result<Option<UsernameScalar>> {
        self.principal.require(Scope::Read).map_err(gql)?;
        Ok(self.account.username.clone().map(UsernameScalar))
    }

    async fn default_account(&self) -> Result<Account> {
        self.principal.require(Scope::Read).map_err(gql)?;
        Ok(Account::ConsumerAccount(ConsumerAccount {
            view: self.account.clone(),
            principal: self.principal.clone(),
        }))
    }

    /// The account's API keys.
    async fn api_keys(&self, ctx: &Context<'_>) -> Result<Vec<ApiKey>> {
        let keys = app(ctx).bank.api_keys(&self.principal).await.map_err(gql)?;
        Ok(keys.into_iter().map(|info| ApiKey { info }).collect())
    }

    /// E-mail address, if the user registered with one.
    async fn email(&self, ctx: &Context<'_>) -> Result<Option<Email>> {
        self.principal.require(Scope::Read).map_err(gql)?;
        let u = app(ctx)
            .bank
            .user(self.account.user_id)
            .await
            .map_err(gql)?;
        Ok(u.email.map(|address| Email {
            address: Some(EmailAddressScalar(address)),
            verified: Some(u.verified),
        }))
    }

    /// Phone number with international calling code, if the user registered with one.
    async fn phone(&self, ctx: &Context<'_>) -> Result<Option<PhoneScalar>> {
        self.principal.require(Scope::Read).map_err(gql)?;
        let u = app(ctx)
            .bank
            .user(self.account.user_id)
            .await
            .map_err(gql)?;
        Ok(u.phone.map(PhoneScalar))
    }

    /// When the user registered.
    async fn created_at(&self, ctx: &Context<'_>) -> Result<Timestamp> {
        self.principal.require(Scope::Read).map_err(gql)?;
        let u = app(ctx)
            .bank
            .user(self.account.user_id)
            .await
            .map_err(gql)?;
        Ok(u.created_at.into())
    }

    /// Preferred language: a BCP 47 tag, or `default` for the device's own.
    async fn language(&self, ctx: &Context<'_>) -> Result<LanguageScalar> {
        self.principal.require(Scope::Read).map_err(gql)?;
        super::language::of_user(app(ctx), self.account.user_id)
            .await
            .map(LanguageScalar)
            .map_err(gql)
    }

    /// Whether TOTP is enabled: this bank has no TOTP yet, so never.
    async fn totp_enabled(&self) -> Result<bool> {
        self.principal.require(Scope::Read).map_err(gql)?;
        Ok(false)
    }
}

/// An e-mail address and whether it was confirmed.
#[derive(SimpleObject, Clone, Debug)]
pub struct Email {
    /// The address.
    pub address: Option<EmailAddressScalar>,
    /// Whether the registration code sent to it was confirmed.
    pub verified: Option<bool>,
}

/// A public view of a wallet.
#[derive(SimpleObject, Clone, Debug)]
pub struct PublicWallet {
    /// Its id.
    pub id: ID,
    /// Its currency.
    pub currency: WalletCurrency,
    /// Its currency (Blink's deprecated name).
    pub wallet_currency: WalletCurrency,
}

impl PublicWallet {
    fn btc(id: WalletId) -> PublicWallet {
        PublicWallet {
            id: ID(id.to_string()),
            currency: WalletCurrency::Btc,
            wallet_currency: WalletCurrency::Btc,
        }
    }
}

/// A customer's account.
#[derive(Clone, Debug)]
pub struct ConsumerAccount {
    view: AccountView,
    principal: Principal,
}

impl ConsumerAccount {
    fn read(&self) -> Result<()> {
        self.principal.require(Scope::Read).map_err(gql)
    }
}

pub(super) fn parse_wallet_id(s: &WalletIdScalar, field: &str) -> Result<WalletId, ApiError> {
    s.0.trim()
        .parse()
        .map_err(|_| ApiError::invalid(format!("invalid {field}: not a wallet id")))
}

#[Object]
impl ConsumerAccount {
    async fn id(&self) -> Result<ID> {
        self.read()?;
        Ok(ID(self.view.id.to_string()))
    }

    async fn level(&self) -> Result<AccountLevel> {
        self.read()?;
        Ok(AccountLevel::from_level(self.view.level))
    }

    async fn default_wallet_id(&self) -> Result<WalletIdScalar> {
        self.read()?;
        Ok(WalletIdScalar(self.view.default_wallet_id.to_string()))
    }

    async fn default_wallet(&self) -> Result<PublicWallet> {
        self.read()?;
        Ok(PublicWallet::btc(self.view.default_wallet_id))
    }

    /// Always BTC: this bank is BTC-only and has no price feed.
    async fn display_currency(&self) -> Result<DisplayCurrencyScalar> {
        self.read()?;
        Ok(DisplayCurrencyScalar("BTC".to_owned()))
    }

    async fn wallets(&self, ctx: &Context<'_>) -> Result<Vec<Wallet>> {
        self.read()?;
        let wallets = app(ctx).bank.wallets_of(self.view.id).await.map_err(gql)?;
        Ok(wallets
            .into_iter()
            .map(|w| Wallet::BtcWallet(BtcWallet::new(w, Viewer::User(self.principal.clone()))))
            .collect())
    }

    async fn wallet_by_id(&self, ctx: &Context<'_>, wallet_id: WalletIdScalar) -> Result<Wallet> {
        self.read()?;
        let id = parse_wallet_id(&wallet_id, "walletId").map_err(|e| e.to_graphql())?;
        let w = app(ctx)
            .bank
            .wallet(&self.principal, id)
            .await
            .map_err(gql)?;
        Ok(Wallet::BtcWallet(BtcWallet::new(
            w,
            Viewer::User(self.principal.clone()),
        )))
    }

    /// Pending incoming on-chain transactions of the account's wallets (all of them
    /// unless `walletIds` names some), newest first.
    async fn pending_incoming_transactions(
        &self,
        ctx: &Context<'_>,
        wallet_ids: Option<Vec<Option<WalletIdScalar>>>,
    ) -> Result<Vec<Transaction>> {
        self.read()?;
        let wallets: Vec<WalletId> = match wallet_ids {
            Some(ids) => ids
                .iter()
                .flatten()
                .map(|w| parse_wallet_id(w, "walletIds"))
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_graphql())?,
            None => app(ctx)
                .bank
                .wallets_of(self.view.id)
                .await
                .map_err(gql)?
                .into_iter()
                .map(|w| w.id)
                .collect(),
        };
        let viewer = Viewer::User(self.principal.clone());
        let mut out = Vec::new();
        for w in wallets {
            out.extend(super::wallet_pending(app(ctx), &viewer, w, None).await?);
        }
        Ok(out)
    }

    /// The URLs the account's payment events are sent to.
    async fn callback_endpoints(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Vec<super::callbacks::CallbackEndpoint>> {
        self.read()?;
        super::callbacks::of_account(ctx, self.view.id).await
    }

    /// Limits over a rolling 24 hours, in satoshis.
    async fn limits(&self, ctx: &Context<'_>) -> Result<AccountLimits> {
        self.read()?;
        let l = app(ctx).bank.limits(self.view.id).await.map_err(gql)?;
        Ok(l.into())
    }

    /// Transactions of one wallet of the account (the default wallet unless `walletIds`
    /// names one), newest first.
    async fn transactions(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
        wallet_ids: Option<Vec<Option<WalletIdScalar>>>,
    ) -> Result<Option<TransactionConnection>> {
        self.read()?;
        let n = page_size(first, last, before.as_ref()).map_err(|e| e.to_graphql())?;
        let ids: Vec<WalletId> = wallet_ids
            .unwrap_or_default()
            .iter()
            .flatten()
            .map(|w| parse_wallet_id(w, "walletIds"))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_graphql())?;
        // One history at a time: every account has one wallet today, and a merged
        // multi-wallet history would need a merged cursor.
        let wallet = match ids.as_slice() {
            [] => self.view.default_wallet_id,
            [one] => *one,
            _ => {
                return Err(ApiError::invalid("walletIds: name at most one wallet").to_graphql());
            }
        };
        let page = wallet_page(
            app(ctx),
            &Viewer::User(self.principal.clone()),
            wallet,
            n,
            after.as_deref(),
        )
        .await
        .map_err(gql)?;
        Ok(Some(TransactionConnection::from_page(
            page,
            after.is_some(),
        )))
    }
}

/// An account.
#[allow(
    clippy::duplicated_attributes,
    reason = "each `field`/`arg` of the interface derive is a distinct item, not a duplicate"
)]
#[derive(Interface, Clone, Debug)]
#[graphql(
    field(name = "id", ty = "ID"),
    field(name = "level", ty = "AccountLevel"),
    field(name = "default_wallet_id", ty = "WalletIdScalar"),
    field(name = "default_wallet", ty = "PublicWallet"),
    field(name = "display_currency", ty = "DisplayCurrencyScalar"),
    field(name = "wallets", ty = "Vec<Wallet>"),
    field(
        name = "wallet_by_id",
        ty = "Wallet",
        arg(name = "wallet_id", ty = "WalletIdScalar")
    ),
    field(name = "limits", ty = "AccountLimits"),
    field(
        name = "callback_endpoints",
        ty = "Vec<super::callbacks::CallbackEndpoint>"
    ),
    field(
        name = "transactions",
        ty = "Option<TransactionConnection>",
        arg(name = "after", ty = "Option<String>"),
        arg(name = "before", ty = "Option<String>"),
        arg(name = "first", ty = "Option<i32>"),
        arg(name = "last", ty = "Option<i32>"),
        arg(name = "wallet_ids", ty = "Option<Vec<Option<WalletIdScalar>>>")
    ),
    field(
        name = "pending_incoming_transactions",
        ty = "Vec<Transaction>",
        arg(name = "wallet_ids", ty = "Option<Vec<Option<WalletIdScalar>>>")
    )
)]
pub enum Account {
    /// A customer's account.
    ConsumerAccount(ConsumerAccount),
}

/// The scopes of the caller's credential.
#[derive(SimpleObject, Clone, Debug)]
pub struct Authorization {
    /// What it may do.
    pub scopes: Vec<ScopeEnum>,
}

/// Account queries.
#[derive(Debug, Default)]
pub struct AccountQuery;

#[Object]
impl AccountQuery {
    /// The caller (needs the read scope).
    async fn me(&self, ctx: &Context<'_>) -> Result<Option<User>> {
        let p = principal(ctx, Scope::Read)?;
        let account = app(ctx).bank.me(&p).await.map_err(gql)?;
        Ok(Some(User {
            account,
            principal: p,
        }))
    }

    /// The scopes of the caller's credential.
    async fn authorization(&self, ctx: &Context<'_>) -> Result<Authorization> {
        let p = meta(ctx)
            .principal
            .clone()
            .ok_or_else(|| ApiError::unauthenticated().to_graphql())?;
        Ok(Authorization {
            scopes: p.scopes.iter().copied().map(ScopeEnum::from).collect(),
        })
    }

    /// The default wallet of a username, to pay it. Public, as in Blink.
    async fn account_default_wallet(
        &self,
        ctx: &Context<'_>,
        username: UsernameScalar,
        wallet_currency: Option<WalletCurrency>,
    ) -> Result<PublicWallet> {
        let username: Username = username
            .0
            .parse()
            .map_err(|e: crate::bank::ParseError| ApiError::invalid(e.to_string()).to_graphql())?;
        if wallet_currency == Some(WalletCurrency::Usd) {
            return Err(gql(BankError::NotFound { what: "wallet" }));
        }
        let id = app(ctx)
            .bank
            .wallet_of_username(&username)
            .await
            .map_err(gql)?;
        Ok(PublicWallet::btc(id))
    }

    /// Whether a username is free (public, as in Blink). Null for a malformed one.
    async fn username_available(
        &self,
        ctx: &Context<'_>,
        username: UsernameScalar,
    ) -> Result<Option<bool>> {
        let Ok(username) = username.0.parse::<Username>() else {
            return Ok(None);
        };
        let free = app(ctx)
            .bank
            .username_available(&username)
            .await
            .map_err(gql)?;
        Ok(Some(free))
    }

    /// The default wallet id of a username (Blink's deprecated form).
    async fn user_default_wallet_id(
        &self,
        ctx: &Context<'_>,
        username: UsernameScalar,
    ) -> Result<WalletIdScalar> {
        let username: Username = username
            .0
            .parse()
            .map_err(|e: crate::bank::ParseError| ApiError::invalid(e.to_string()).to_graphql())?;
        let id = app(ctx)
            .bank
            .wallet_of_username(&username)
            .await
            .map_err(gql)?;
        Ok(WalletIdScalar(id.to_string()))
    }
}

/// Set a username.
#[derive(InputObject, Clone, Debug)]
pub struct UserUpdateUsernameInput {
    /// The username.
    pub username: UsernameScalar,
}

/// Result of setting a username.
#[derive(SimpleObject, Clone, Debug)]
pub struct UserUpdateUsernamePayload {
    /// Why it failed.
    pub errors: Vec<ErrorInterface>,
    /// The user.
    pub user: Option<User>,
}

/// Create an API key.
#[derive(InputObject, Clone, Debug)]
pub struct ApiKeyCreateInput {
    /// Its name (1 to 100 characters).
    pub name: String,
    /// Days until it expires (1 to 3650); never when absent.
    pub expire_in_days: Option<i32>,
    /// What it may do.
    #[graphql(default_with = "vec![ScopeEnum::Read, ScopeEnum::Write]")]
    pub scopes: Vec<ScopeEnum>,
}

/// A new API key and its secret, shown once.
#[derive(SimpleObject, Clone, Debug)]
pub struct ApiKeyCreatePayload {
    /// The key.
    pub api_key: ApiKey,
    /// The secret for the `X-API-KEY` header. It is not stored and cannot be shown again.
    pub api_key_secret: String,
}

/// Revoke an API key.
#[derive(InputObject, Clone, Debug)]
pub struct ApiKeyRevokeInput {
    /// The key.
    pub id: ID,
}

/// The revoked key.
#[derive(SimpleObject, Clone, Debug)]
pub struct ApiKeyRevokePayload {
    /// The key.
    pub api_key: ApiKey,
}

/// Account mutations.
#[derive(Debug, Default)]
pub struct AccountMutation;

#[Object]
impl AccountMutation {
    /// Sets the account's username (once).
    async fn user_update_username(
        &self,
        ctx: &Context<'_>,
        input: UserUpdateUsernameInput,
    ) -> Result<UserUpdateUsernamePayload> {
        let p = principal(ctx, Scope::Write)?;
        let failed = |e: ApiError| UserUpdateUsernamePayload {
            errors: payload_error(e),
            user: None,
        };
        let username: Username = match input.username.0.parse() {
            Ok(u) => u,
            Err(e) => {
                let e: crate::bank::ParseError = e;
                return Ok(failed(ApiError::invalid(e.to_string())));
            }
        };
        let bank = &app(ctx).bank;
        if let Err(e) = bank.set_username(&p, &username).await {
            return Ok(failed(e.into()));
        }
        let account = bank.account(p.account_id).await.map_err(gql)?;
        Ok(UserUpdateUsernamePayload {
            errors: Vec::new(),
            user: Some(User {
                account,
                principal: p,
            }),
        })
    }

    /// Creates an API key (needs a login session, not an API key).
    async fn api_key_create(
        &self,
        ctx: &Context<'_>,
        input: ApiKeyCreateInput,
    ) -> Result<ApiKeyCreatePayload> {
        let p = principal(ctx, Scope::Write)?;
        let expires_at = match input.expire_in_days {
            None => None,
            Some(d) if (1..=3650).contains(&d) => {
                Some(Utc::now() + chrono::Duration::days(i64::from(d)))
            }
            Some(_) => {
                return Err(ApiError::invalid("expireInDays must be 1 to 3650").to_graphql());
            }
        };
        let scopes: Vec<Scope> = input.scopes.into_iter().map(Scope::from).collect();
        let (info, secret) = app(ctx)
            .bank
            .create_api_key(&p, &input.name, &scopes, expires_at)
            .await
            .map_err(gql)?;
        Ok(ApiKeyCreatePayload {
            api_key: ApiKey { info },
            api_key_secret: secret.expose().to_owned(),
        })
    }

    /// Revokes one of the account's API keys (needs a login session).
    async fn api_key_revoke(
        &self,
        ctx: &Context<'_>,
        input: ApiKeyRevokeInput,
    ) -> Result<ApiKeyRevokePayload> {
        let p = principal(ctx, Scope::Write)?;
        let id: ApiKeyId = input
            .id
            .parse()
            .map_err(|_| ApiError::invalid("invalid id: not an API key id").to_graphql())?;
        let bank = &app(ctx).bank;
        bank.revoke_api_key(&p, id).await.map_err(gql)?;
        let info = bank
            .api_keys(&p)
            .await
            .map_err(gql)?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| gql(BankError::NotFound { what: "api key" }))?;
        Ok(ApiKeyRevokePayload {
            api_key: ApiKey { info },
        })
    }
}
