//! Registration, one-time codes, login and logout.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};

use super::{ErrorInterface, SuccessPayload, meta, payload_error};
use crate::api::errors::ApiError;
use crate::api::gql::scalars::{
    AuthTokenScalar, EmailAddressScalar, OneTimeAuthCodeScalar, PhoneScalar,
};
use crate::api::gql::types::app;
use crate::bank::{AuthMethod, BankError, Identity, NewPassword, Secret};

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

/// Authentication mutations.
#[derive(Debug, Default)]
pub struct AuthMutation;

#[Object]
impl AuthMutation {
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
