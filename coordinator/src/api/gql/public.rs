//! The public GraphQL schema (`/graphql`), Blink-compatible where the domain has the same
//! operation. Authentication failures and missing scopes are top-level errors with
//! `extensions.code` (as Blink's `NOT_AUTHENTICATED`/`NOT_AUTHORIZED`); business failures of
//! a mutation are payload errors `errors { message path code }` with status `FAILURE`.

use async_graphql::futures_util::Stream;
use async_graphql::futures_util::stream;
use async_graphql::{
    Context, Enum, ID, InputObject, Interface, Object, Result, SimpleObject, Subscription, Union,
};
use chrono::Utc;

use super::scalars::{
    AuthTokenScalar, DisplayCurrencyScalar, EmailAddressScalar, MemoScalar, OneTimeAuthCodeScalar,
    PaymentHashScalar, PhoneScalar, SatAmount, Timestamp, UsernameScalar, WalletIdScalar,
};
use super::types::{
    AccountLevel, AccountLimits, BtcWallet, Transaction, TransactionConnection, Viewer, Wallet,
    WalletCurrency, app, gql, page_size, wallet_page,
};
use crate::Sats;
use crate::api::errors::ApiError;
use crate::api::{AppState, PaymentEvent, RequestMeta};
use crate::bank::{
    AccountView, ApiKeyInfo, AuthMethod, BankError, Identity, NewPassword, PaymentStatus,
    Principal, Recipient, Scope, Secret, SendRequest, Username, WalletTransaction,
};
use crate::ids::{ApiKeyId, TransactionId, WalletId};

fn meta<'a>(ctx: &Context<'a>) -> &'a RequestMeta {
    ctx.data_unchecked::<RequestMeta>()
}

/// The caller, if it has `scope`.
fn principal(ctx: &Context<'_>, scope: Scope) -> Result<Principal> {
    let p = meta(ctx)
        .principal
        .clone()
        .ok_or_else(|| ApiError::unauthenticated().to_graphql())?;
    p.require(scope).map_err(gql)?;
    Ok(p)
}

/// An error in a mutation payload.
#[derive(Clone, Debug)]
pub struct ApplicationError {
    code: String,
    message: String,
    path: Option<Vec<Option<String>>>,
}

impl From<ApiError> for ApplicationError {
    fn from(e: ApiError) -> ApplicationError {
        ApplicationError {
            code: e.code.to_owned(),
            message: e.message,
            path: None,
        }
    }
}

#[Object(name = "GraphQLApplicationError")]
impl ApplicationError {
    /// Stable machine-readable code.
    async fn code(&self) -> Option<String> {
        Some(self.code.clone())
    }

    /// Safe human-readable message.
    async fn message(&self) -> String {
        self.message.clone()
    }

    /// Where in the input the problem is, when known.
    async fn path(&self) -> Option<Vec<Option<String>>> {
        self.path.clone()
    }
}

/// An error of a mutation.
#[derive(Interface, Clone, Debug)]
#[graphql(
    name = "Error",
    field(name = "code", ty = "Option<String>"),
    field(name = "message", ty = "String"),
    field(name = "path", ty = "Option<Vec<Option<String>>>")
)]
pub enum ErrorInterface {
    /// The only implementation.
    #[graphql(name = "GraphQLApplicationError")]
    GraphQLApplicationError(ApplicationError),
}

/// One payload error.
pub(crate) fn payload_errors(e: ApiError) -> Vec<ErrorInterface> {
    payload_error(e)
}

fn payload_error(e: impl Into<ApiError>) -> Vec<ErrorInterface> {
    vec![ErrorInterface::GraphQLApplicationError(
        ApplicationError::from(e.into()),
    )]
}

fn payload_error_at(e: ApiError, path: &[&str]) -> Vec<ErrorInterface> {
    let mut err = ApplicationError::from(e);
    err.path = Some(path.iter().map(|p| Some((*p).to_owned())).collect());
    vec![ErrorInterface::GraphQLApplicationError(err)]
}

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
    account: AccountView,
    principal: Principal,
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

fn parse_wallet_id(s: &WalletIdScalar, field: &str) -> Result<WalletId, ApiError> {
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
        name = "transactions",
        ty = "Option<TransactionConnection>",
        arg(name = "after", ty = "Option<String>"),
        arg(name = "before", ty = "Option<String>"),
        arg(name = "first", ty = "Option<i32>"),
        arg(name = "last", ty = "Option<i32>"),
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

/// The public query root.
#[derive(Debug, Default)]
pub struct Query;

#[Object]
impl Query {
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

/// Outcome of a payment.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "PaymentSendResult")]
pub enum PaymentSendResult {
    /// Paid before with the same idempotency key: nothing moved this time.
    AlreadyPaid,
    /// Refused: see `errors`. Nothing moved.
    Failure,
    /// Accepted, not yet posted; it completes later.
    Pending,
    /// Paid now.
    Success,
}

/// Result of a payment.
#[derive(SimpleObject, Clone, Debug)]
pub struct PaymentSendPayload {
    /// Why it failed.
    pub errors: Vec<ErrorInterface>,
    /// What happened.
    pub status: Option<PaymentSendResult>,
    /// The sender's side of the transaction (when the credential may read).
    pub transaction: Option<Transaction>,
}

impl PaymentSendPayload {
    fn failure(e: Vec<ErrorInterface>) -> PaymentSendPayload {
        PaymentSendPayload {
            errors: e,
            status: Some(PaymentSendResult::Failure),
            transaction: None,
        }
    }
}

/// An internal transfer.
#[derive(InputObject, Clone, Debug)]
pub struct IntraLedgerPaymentSendInput {
    /// Amount in satoshis.
    pub amount: SatAmount,
    /// Optional memo to be attached to the payment.
    pub memo: Option<MemoScalar>,
    /// The recipient's wallet.
    pub recipient_wallet_id: WalletIdScalar,
    /// The wallet ID of the sender.
    pub wallet_id: WalletIdScalar,
    /// Our extension (not in Blink): an idempotency key. Sending again with the same key
    /// returns `ALREADY_PAID` and moves nothing. The HTTP `Idempotency-Key` header does
    /// the same for clients that cannot add fields; if both are given they must agree.
    pub idempotency_key: Option<String>,
}

/// A generic payload.
#[derive(SimpleObject, Clone, Debug)]
pub struct SuccessPayload {
    /// Why it failed.
    pub errors: Vec<ErrorInterface>,
    /// Whether it worked.
    pub success: Option<bool>,
}

impl SuccessPayload {
    fn ok() -> SuccessPayload {
        SuccessPayload {
            errors: Vec::new(),
            success: Some(true),
        }
    }

    fn failed(e: impl Into<ApiError>) -> SuccessPayload {
        SuccessPayload {
            errors: payload_error(e),
            success: Some(false),
        }
    }
}

/// A login result.
#[derive(SimpleObject, Clone, Debug)]
pub struct AuthTokenPayload {
    /// The bearer token (shown once).
    pub auth_token: Option<AuthTokenScalar>,
    /// Why it failed.
    pub errors: Vec<ErrorInterface>,
    /// Always false: no TOTP yet.
    pub totp_required: Option<bool>,
}

impl AuthTokenPayload {
    fn failed(e: impl Into<ApiError>) -> AuthTokenPayload {
        AuthTokenPayload {
            auth_token: None,
            errors: payload_error(e),
            totp_required: None,
        }
    }

    fn token(token: &Secret) -> AuthTokenPayload {
        AuthTokenPayload {
            auth_token: Some(AuthTokenScalar(token.expose().to_owned())),
            errors: Vec::new(),
            totp_required: Some(false),
        }
    }
}

/// Blink's phone login: a phone number and the code sent to it.
#[derive(InputObject, Clone, Debug)]
pub struct UserLoginInput {
    /// The code.
    #[graphql(secret)]
    pub code: OneTimeAuthCodeScalar,
    /// The phone number.
    pub phone: PhoneScalar,
}

/// Blink's logout input; the device token is for push notifications, which this bank
/// does not send, so it is ignored.
#[derive(InputObject, Clone, Debug)]
pub struct UserLogoutInput {
    /// Ignored.
    pub device_token: String,
}

/// Our extension: registration with an e-mail address or a phone number and a password.
#[derive(InputObject, Clone, Debug)]
pub struct UserRegisterInput {
    /// E-mail address (give this or `phone`).
    pub email: Option<EmailAddressScalar>,
    /// Phone number in E.164 form (give this or `email`).
    pub phone: Option<PhoneScalar>,
    /// 10 to 128 characters.
    #[graphql(secret)]
    pub password: String,
}

/// Our extension: ask for a one-time code (verification or login).
#[derive(InputObject, Clone, Debug)]
pub struct UserRequestAuthCodeInput {
    /// E-mail address (give this or `phone`).
    pub email: Option<EmailAddressScalar>,
    /// Phone number (give this or `email`).
    pub phone: Option<PhoneScalar>,
}

/// Our extension: log in with a one-time code sent to an e-mail address or phone.
#[derive(InputObject, Clone, Debug)]
pub struct UserCodeLoginInput {
    /// E-mail address (give this or `phone`).
    pub email: Option<EmailAddressScalar>,
    /// Phone number (give this or `email`).
    pub phone: Option<PhoneScalar>,
    /// The code.
    #[graphql(secret)]
    pub code: OneTimeAuthCodeScalar,
}

/// Our extension: log in with a password.
#[derive(InputObject, Clone, Debug)]
pub struct UserPasswordLoginInput {
    /// E-mail address (give this or `phone`).
    pub email: Option<EmailAddressScalar>,
    /// Phone number (give this or `email`).
    pub phone: Option<PhoneScalar>,
    /// The password.
    #[graphql(secret)]
    pub password: String,
}

fn identity(
    email: Option<&EmailAddressScalar>,
    phone: Option<&PhoneScalar>,
) -> Result<Identity, ApiError> {
    match (email, phone) {
        (Some(e), None) => {
            e.0.parse()
                .map(Identity::Email)
                .map_err(|e: crate::bank::ParseError| ApiError::invalid(e.to_string()))
        }
        (None, Some(p)) => {
            p.0.parse()
                .map(Identity::Phone)
                .map_err(|e: crate::bank::ParseError| ApiError::invalid(e.to_string()))
        }
        _ => Err(ApiError::invalid("give exactly one of email and phone")),
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

/// Checks a per-client and per-identity rate limit for an unauthenticated operation.
fn rate_limit(ctx: &Context<'_>, op: &str, identity: Option<&Identity>) -> Result<(), ApiError> {
    let app = app(ctx);
    app.limiter
        .check(&format!("{op}:ip:{}", meta(ctx).client))?;
    if let Some(id) = identity {
        app.limiter.check(&format!("{op}:id:{id}"))?;
    }
    Ok(())
}

/// Sends an internal transfer and builds the payload; shared by GraphQL and REST.
pub(crate) async fn send_payment(
    app: &AppState,
    p: &Principal,
    request: SendRequest,
    want_line: bool,
) -> Result<
    (
        PaymentStatus,
        Option<TransactionId>,
        Option<WalletTransaction>,
    ),
    BankError,
> {
    // `myUpdates` learns of the transfer from the ledger outbox, on every instance.
    let result = app.bank.send_internal(p, &request).await?;
    let line = match result.transaction_id {
        Some(tx) if want_line && p.require(Scope::Read).is_ok() => {
            find_line(app, p, request.wallet_id, tx).await?
        }
        _ => None,
    };
    Ok((result.status, result.transaction_id, line))
}

/// The line of `tx` in a recent page of `wallet`'s history.
pub(crate) async fn find_line(
    app: &AppState,
    p: &Principal,
    wallet: WalletId,
    tx: TransactionId,
) -> Result<Option<WalletTransaction>, BankError> {
    // Ownership and the read scope first; then the one line, without a page scan.
    app.bank.wallet(p, wallet).await?;
    app.bank.sender_transaction(wallet, tx).await
}

/// The public mutation root.
#[derive(Debug, Default)]
pub struct Mutation;

#[Object]
impl Mutation {
    /// Actions a payment which is internal to the ledger. Returns SUCCESS, FAILURE (with
    /// errors; nothing moved), PENDING or ALREADY_PAID (an idempotent replay); a null
    /// status with an error means the outcome is unknown (retry with the same key).
    async fn intra_ledger_payment_send(
        &self,
        ctx: &Context<'_>,
        input: IntraLedgerPaymentSendInput,
    ) -> Result<PaymentSendPayload> {
        let p = principal(ctx, Scope::Write)?;
        let header_key = meta(ctx).idempotency_key.clone();
        let key = match (header_key, input.idempotency_key.clone()) {
            (Some(h), Some(f)) if h != f => {
                return Ok(PaymentSendPayload::failure(payload_error_at(
                    ApiError::invalid("the Idempotency-Key header and idempotencyKey differ"),
                    &["input", "idempotencyKey"],
                )));
            }
            (h, f) => h.or(f),
        };
        let wallet = match parse_wallet_id(&input.wallet_id, "walletId") {
            Ok(w) => w,
            Err(e) => {
                return Ok(PaymentSendPayload::failure(payload_error_at(
                    e,
                    &["input", "walletId"],
                )));
            }
        };
        let to = match parse_wallet_id(&input.recipient_wallet_id, "recipientWalletId") {
            Ok(w) => w,
            Err(e) => {
                return Ok(PaymentSendPayload::failure(payload_error_at(
                    e,
                    &["input", "recipientWalletId"],
                )));
            }
        };
        let Ok(amount) = Sats::new(input.amount.0) else {
            return Ok(PaymentSendPayload::failure(payload_error_at(
                ApiError::from(&BankError::InvalidAmount),
                &["input", "amount"],
            )));
        };
        let request = SendRequest {
            wallet_id: wallet,
            recipient: Recipient::Wallet(to),
            amount,
            memo: input.memo.map(|m| m.0),
            idempotency_key: key,
        };
        // The sender's history line costs three more queries: only when selected.
        let want_line = ctx.look_ahead().field("transaction").exists();
        match send_payment(app(ctx), &p, request, want_line).await {
            Ok((status, _, transaction)) => Ok(PaymentSendPayload {
                errors: Vec::new(),
                status: Some(match status {
                    PaymentStatus::Success => PaymentSendResult::Success,
                    PaymentStatus::AlreadyPaid => PaymentSendResult::AlreadyPaid,
                    PaymentStatus::Pending => PaymentSendResult::Pending,
                }),
                transaction: transaction.map(Transaction::new),
            }),
            Err(e) => {
                let api = ApiError::from(&e);
                // A server-side failure (e.g. OUTCOME_UNKNOWN) may have moved the money or
                // not: the status is left null rather than claiming FAILURE; the client
                // retries with the same idempotency key to learn the outcome.
                let status = (api.http_status < 500).then_some(PaymentSendResult::Failure);
                Ok(PaymentSendPayload {
                    errors: payload_error(api),
                    status,
                    transaction: None,
                })
            }
        }
    }

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

    /// Blink's phone login: confirms the code sent to the phone. The first confirmation
    /// verifies the registration and opens the account. Rate-limited.
    async fn user_login(&self, ctx: &Context<'_>, input: UserLoginInput) -> AuthTokenPayload {
        let identity = match identity(None, Some(&input.phone)) {
            Ok(i) => i,
            Err(e) => return AuthTokenPayload::failed(e),
        };
        code_login(ctx, identity, &input.code.0).await
    }

    /// Our extension: log in with a code sent to an e-mail address or phone. Rate-limited.
    async fn user_code_login(
        &self,
        ctx: &Context<'_>,
        input: UserCodeLoginInput,
    ) -> AuthTokenPayload {
        let identity = match identity(input.email.as_ref(), input.phone.as_ref()) {
            Ok(i) => i,
            Err(e) => return AuthTokenPayload::failed(e),
        };
        code_login(ctx, identity, &input.code.0).await
    }

    /// Our extension: log in with a password. Rate-limited.
    async fn user_password_login(
        &self,
        ctx: &Context<'_>,
        input: UserPasswordLoginInput,
    ) -> AuthTokenPayload {
        let identity = match identity(input.email.as_ref(), input.phone.as_ref()) {
            Ok(i) => i,
            Err(e) => return AuthTokenPayload::failed(e),
        };
        if let Err(e) = rate_limit(ctx, "login", Some(&identity)) {
            return AuthTokenPayload::failed(e);
        }
        let password = Secret::new(input.password);
        match app(ctx).bank.login(&identity, &password).await {
            Ok(session) => AuthTokenPayload::token(&session.token),
            Err(e) => AuthTokenPayload::failed(e),
        }
    }

    /// Our extension: registers with an e-mail address or phone and a password, and
    /// sends a verification code (confirm it with `userLogin` or `userCodeLogin`).
    /// Rate-limited.
    async fn user_register(&self, ctx: &Context<'_>, input: UserRegisterInput) -> SuccessPayload {
        let identity = match identity(input.email.as_ref(), input.phone.as_ref()) {
            Ok(i) => i,
            Err(e) => return SuccessPayload::failed(e),
        };
        if let Err(e) = rate_limit(ctx, "register", Some(&identity)) {
            return SuccessPayload::failed(e);
        }
        let password = match NewPassword::new(Secret::new(input.password)) {
            Ok(p) => p,
            Err(e) => return SuccessPayload::failed(ApiError::invalid(e.to_string())),
        };
        match app(ctx).bank.register(&identity, &password).await {
            Ok(_) => SuccessPayload::ok(),
            Err(e) => SuccessPayload::failed(e),
        }
    }

    /// Our extension (Blink's `captchaRequestAuthCode` needs a captcha): sends a fresh
    /// one-time code. Says nothing about whether the identity is registered. Rate-limited.
    async fn user_request_auth_code(
        &self,
        ctx: &Context<'_>,
        input: UserRequestAuthCodeInput,
    ) -> SuccessPayload {
        let identity = match identity(input.email.as_ref(), input.phone.as_ref()) {
            Ok(i) => i,
            Err(e) => return SuccessPayload::failed(e),
        };
        if let Err(e) = rate_limit(ctx, "code", Some(&identity)) {
            return SuccessPayload::failed(e);
        }
        match app(ctx).bank.request_code(&identity).await {
            Ok(()) => SuccessPayload::ok(),
            Err(e) => SuccessPayload::failed(e),
        }
    }

    /// Revokes the login session of this request.
    async fn user_logout(
        &self,
        ctx: &Context<'_>,
        input: Option<UserLogoutInput>,
    ) -> Result<SuccessPayload> {
        let _ = input;
        let p = meta(ctx)
            .principal
            .clone()
            .ok_or_else(|| ApiError::unauthenticated().to_graphql())?;
        let (AuthMethod::Session, Some(token)) = (p.method, meta(ctx).bearer.as_ref()) else {
            return Ok(SuccessPayload::failed(BankError::Forbidden {
                needed: "session",
            }));
        };
        match app(ctx).bank.logout(token.expose()).await {
            Ok(()) => Ok(SuccessPayload::ok()),
            Err(e) => Ok(SuccessPayload::failed(e)),
        }
    }
}

async fn code_login(ctx: &Context<'_>, identity: Identity, code: &str) -> AuthTokenPayload {
    if let Err(e) = rate_limit(ctx, "login", Some(&identity)) {
        return AuthTokenPayload::failed(e);
    }
    match app(ctx).bank.confirm_code(&identity, code).await {
        Ok((session, _)) => AuthTokenPayload::token(&session.token),
        Err(e) => AuthTokenPayload::failed(e),
    }
}

/// What happened to a wallet in an internal transfer.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "TxNotificationType")]
pub enum TxNotificationType {
    /// The wallet paid.
    #[graphql(name = "IntraLedgerPayment")]
    IntraLedgerPayment,
    /// The wallet received.
    #[graphql(name = "IntraLedgerReceipt")]
    IntraLedgerReceipt,
}

/// An internal transfer touched one of the caller's wallets. Blink's deprecated float
/// price fields (`usdPerSat`, `displayCurrencyPerSat`) are left out: no price feed here.
#[derive(SimpleObject, Clone, Debug)]
pub struct IntraLedgerUpdate {
    /// Amount in satoshis.
    pub amount: SatAmount,
    /// The wallet's side of the transaction.
    pub transaction: Transaction,
    /// Payment or receipt.
    pub tx_notification_type: TxNotificationType,
    /// The wallet.
    pub wallet_id: WalletIdScalar,
}

/// Payment status of a Lightning invoice.
#[derive(Enum, Clone, Copy, Debug, PartialEq, Eq)]
#[graphql(name = "InvoicePaymentStatus")]
pub enum InvoicePaymentStatus {
    /// Expired unpaid.
    Expired,
    /// Paid.
    Paid,
    /// Waiting.
    Pending,
}

/// A Lightning invoice update. Declared so that Blink clients' `myUpdates` documents
/// validate; never sent until Lightning exists here.
#[derive(SimpleObject, Clone, Debug)]
pub struct LnUpdate {
    /// The invoice's payment hash.
    pub payment_hash: PaymentHashScalar,
    /// Its status.
    pub status: InvoicePaymentStatus,
    /// The transaction.
    pub transaction: Transaction,
    /// The wallet.
    pub wallet_id: WalletIdScalar,
}

/// An update for the caller. Only internal transfers exist so far; `LnUpdate` is
/// declared for Blink clients' fragments.
#[derive(Union, Clone, Debug)]
#[allow(dead_code, reason = "LnUpdate exists for schema compatibility only")]
pub enum UserUpdate {
    /// An internal transfer.
    IntraLedgerUpdate(IntraLedgerUpdate),
    /// A Lightning invoice (not yet).
    LnUpdate(LnUpdate),
}

/// One event of `myUpdates`.
#[derive(SimpleObject, Clone, Debug)]
pub struct MyUpdatesPayload {
    /// Errors.
    pub errors: Vec<ErrorInterface>,
    /// The caller.
    pub me: Option<User>,
    /// What happened.
    pub update: Option<UserUpdate>,
}

/// The public subscription root.
#[derive(Debug, Default)]
pub struct Subscription;

#[Subscription]
impl Subscription {
    /// Internal transfers into and out of the caller's wallets, as they happen (needs the
    /// read scope).
    async fn my_updates(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = MyUpdatesPayload> + use<>> {
        let p = principal(ctx, Scope::Read)?;
        let app = app(ctx).clone();
        let wallets: Vec<WalletId> = app
            .bank
            .wallets_of(p.account_id)
            .await
            .map_err(gql)?
            .into_iter()
            .map(|w| w.id)
            .collect();
        let rx = app
            .updates
            .subscribe()
            .await
            .map_err(|e| ApiError::internal(&e).to_graphql())?;
        Ok(stream::unfold(
            (rx, app, p, wallets),
            |(mut rx, app, p, wallets)| async move {
                loop {
                    let event = match rx.recv().await {
                        Ok(ev) => ev,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(missed = n, "myUpdates subscriber lagged");
                            continue;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    };
                    let (wallet, kind) = if wallets.contains(&event.sender_wallet) {
                        (event.sender_wallet, TxNotificationType::IntraLedgerPayment)
                    } else if wallets.contains(&event.recipient_wallet) {
                        (
                            event.recipient_wallet,
                            TxNotificationType::IntraLedgerReceipt,
                        )
                    } else {
                        continue;
                    };
                    let payload = update_with_retry(&app, &p, wallet, kind, &event).await;
                    match payload {
                        Ok(Some(payload)) => return Some((payload, (rx, app, p, wallets))),
                        Ok(None) => continue,
                        Err(e) => {
                            let api = ApiError::from(&e);
                            let payload = MyUpdatesPayload {
                                errors: payload_error(api),
                                me: None,
                                update: None,
                            };
                            return Some((payload, (rx, app, p, wallets)));
                        }
                    }
                }
            },
        ))
    }
}

/// [`update_payload`], retried over a short database outage: the transfer is committed,
/// so a passing failure to read it should not turn the update into an error. The reads
/// are idempotent.
async fn update_with_retry(
    app: &AppState,
    p: &Principal,
    wallet: WalletId,
    kind: TxNotificationType,
    event: &PaymentEvent,
) -> Result<Option<MyUpdatesPayload>, BankError> {
    let mut delay = std::time::Duration::from_millis(100);
    for _ in 0..5 {
        match update_payload(app, p, wallet, kind, event).await {
            Err(
                BankError::Database(e) | BankError::Ledger(crate::ledger::LedgerError::Database(e)),
            ) => {
                tracing::warn!(error = %e, "myUpdates: reading the update failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
    update_payload(app, p, wallet, kind, event).await
}

async fn update_payload(
    app: &AppState,
    p: &Principal,
    wallet: WalletId,
    kind: TxNotificationType,
    event: &PaymentEvent,
) -> Result<Option<MyUpdatesPayload>, BankError> {
    let Some(line) = find_line(app, p, wallet, event.transaction_id).await? else {
        return Ok(None);
    };
    let transaction = Transaction::new(line);
    let account = app.bank.me(p).await?;
    Ok(Some(MyUpdatesPayload {
        errors: Vec::new(),
        me: Some(User {
            account,
            principal: p.clone(),
        }),
        update: Some(UserUpdate::IntraLedgerUpdate(IntraLedgerUpdate {
            amount: SatAmount(event.amount.to_sat()),
            transaction,
            tx_notification_type: kind,
            wallet_id: WalletIdScalar(wallet.to_string()),
        })),
    }))
}
