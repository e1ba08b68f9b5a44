//! Registration, one-time codes, login and logout.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};

use super::{ErrorInterface, SuccessPayload, meta, payload_error};
use crate::api::errors::ApiError;
use crate::api::gql::scalars::{
    AuthTokenScalar, EmailAddressScalar, OneTimeAuthCodeScalar, PhoneScalar,
};
use crate::api::gql::types::app;
use crate::api::ratelimit::LimitedOp;
use crate::bank::{AuthMethod, BankError, Identity, NewPassword, PasswordProof, Secret};

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

/// Our extension: registration with an e-mail address or a phone number. The password is
/// set when the code is confirmed (`userCodeLogin`), not here: only the identity's proven
/// owner may choose it.
#[derive(InputObject, Clone, Debug)]
pub struct UserRegisterInput {
    /// E-mail address (give this or `phone`).
    pub email: Option<EmailAddressScalar>,
    /// Phone number in E.164 form (give this or `email`).
    pub phone: Option<PhoneScalar>,
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
    /// With the first confirmation only: the account's password (10 to 128 characters).
    /// Without it the account logs in by code until a password is set by a reset.
    #[graphql(secret)]
    pub password: Option<String>,
}

/// Our extension: change the password of the logged-in user (a session, not an API key),
/// proved by the current password or a code from `userPasswordResetRequest`.
#[derive(InputObject, Clone, Debug)]
pub struct UserPasswordChangeInput {
    /// The current password (give this or `code`).
    #[graphql(secret)]
    pub current_password: Option<String>,
    /// A password reset code (give this or `currentPassword`).
    #[graphql(secret)]
    pub code: Option<OneTimeAuthCodeScalar>,
    /// 10 to 128 characters.
    #[graphql(secret)]
    pub new_password: String,
}

/// Our extension: ask for a password reset code.
#[derive(InputObject, Clone, Debug)]
pub struct UserPasswordResetRequestInput {
    /// E-mail address (give this or `phone`).
    pub email: Option<EmailAddressScalar>,
    /// Phone number (give this or `email`).
    pub phone: Option<PhoneScalar>,
}

/// Our extension: set a new password with a reset code.
#[derive(InputObject, Clone, Debug)]
pub struct UserPasswordResetInput {
    /// E-mail address (give this or `phone`).
    pub email: Option<EmailAddressScalar>,
    /// Phone number (give this or `email`).
    pub phone: Option<PhoneScalar>,
    /// The code from `userPasswordResetRequest`.
    #[graphql(secret)]
    pub code: OneTimeAuthCodeScalar,
    /// 10 to 128 characters.
    #[graphql(secret)]
    pub new_password: String,
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

/// Checks the rate limits of an unauthenticated operation (per client, per identity).
async fn rate_limit(ctx: &Context<'_>, op: LimitedOp, identity: &Identity) -> Result<(), ApiError> {
    app(ctx)
        .limiter
        .check(op, &meta(ctx).client, identity)
        .await
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
        code_login(ctx, identity, &input.code.0, None).await
    }

    /// Our extension: log in with a code sent to an e-mail address or phone; the first
    /// confirmation may set the account's password. Rate-limited.
    async fn user_code_login(
        &self,
        ctx: &Context<'_>,
        input: UserCodeLoginInput,
    ) -> AuthTokenPayload {
        let identity = match identity(input.email.as_ref(), input.phone.as_ref()) {
            Ok(i) => i,
            Err(e) => return AuthTokenPayload::failed(e),
        };
        let password = match input.password.map(|p| NewPassword::new(Secret::new(p))) {
            None => None,
            Some(Ok(p)) => Some(p),
            Some(Err(e)) => return AuthTokenPayload::failed(ApiError::invalid(e.to_string())),
        };
        code_login(ctx, identity, &input.code.0, password.as_ref()).await
    }

    /// Our extension: changes the password of the logged-in user, proved by the current
    /// password or a reset code; ends the user's other sessions (API keys stay).
    /// Needs a session. Rate-limited with logins.
    async fn user_password_change(
        &self,
        ctx: &Context<'_>,
        input: UserPasswordChangeInput,
    ) -> Result<SuccessPayload> {
        let p = meta(ctx)
            .principal
            .clone()
            .ok_or_else(|| ApiError::unauthenticated().to_graphql())?;
        let (AuthMethod::Session, Some(token)) = (p.method, meta(ctx).bearer.as_ref()) else {
            return Ok(SuccessPayload::failed(BankError::Forbidden {
                needed: "session",
            }));
        };
        let proof = match (input.current_password, input.code) {
            (Some(pw), None) => PasswordProof::Current(Secret::new(pw)),
            (None, Some(code)) => PasswordProof::Code(Secret::new(code.0)),
            _ => {
                return Ok(SuccessPayload::failed(ApiError::invalid(
                    "give exactly one of currentPassword and code",
                )));
            }
        };
        let password = match NewPassword::new(Secret::new(input.new_password)) {
            Ok(p) => p,
            Err(e) => return Ok(SuccessPayload::failed(ApiError::invalid(e.to_string()))),
        };
        let app = app(ctx);
        if let Err(e) = app
            .limiter
            .check_account(LimitedOp::Login, &meta(ctx).client, p.account_id)
            .await
        {
            return Ok(SuccessPayload::failed(e));
        }
        match app.bank.change_password(&p, token, &proof, &password).await {
            Ok(()) => Ok(SuccessPayload::ok()),
            Err(e) => Ok(SuccessPayload::failed(e)),
        }
    }

    /// Our extension: sends a password reset code to a verified e-mail address or phone.
    /// Says nothing about whether the identity is registered. Rate-limited with code
    /// requests.
    async fn user_password_reset_request(
        &self,
        ctx: &Context<'_>,
        input: UserPasswordResetRequestInput,
    ) -> SuccessPayload {
        let identity = match identity(input.email.as_ref(), input.phone.as_ref()) {
            Ok(i) => i,
            Err(e) => return SuccessPayload::failed(e),
        };
        if let Err(e) = rate_limit(ctx, LimitedOp::Code, &identity).await {
            return SuccessPayload::failed(e);
        }
        match app(ctx).bank.request_password_reset(&identity).await {
            Ok(()) => SuccessPayload::ok(),
            Err(e) => SuccessPayload::failed(e),
        }
    }

    /// Our extension: sets a new password with a reset code; ends every session of the
    /// user and revokes the account's API keys. Rate-limited with logins.
    async fn user_password_reset(
        &self,
        ctx: &Context<'_>,
        input: UserPasswordResetInput,
    ) -> SuccessPayload {
        let identity = match identity(input.email.as_ref(), input.phone.as_ref()) {
            Ok(i) => i,
            Err(e) => return SuccessPayload::failed(e),
        };
        if let Err(e) = rate_limit(ctx, LimitedOp::Login, &identity).await {
            return SuccessPayload::failed(e);
        }
        let password = match NewPassword::new(Secret::new(input.new_password)) {
            Ok(p) => p,
            Err(e) => return SuccessPayload::failed(ApiError::invalid(e.to_string())),
        };
        match app(ctx)
            .bank
            .reset_password(&identity, &input.code.0, &password)
            .await
        {
            Ok(()) => SuccessPayload::ok(),
            Err(e) => SuccessPayload::failed(e),
        }
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
        if let Err(e) = rate_limit(ctx, LimitedOp::Login, &identity).await {
            return AuthTokenPayload::failed(e);
        }
        let password = Secret::new(input.password);
        match app(ctx).bank.login(&identity, &password).await {
            Ok(session) => AuthTokenPayload::token(&session.token),
            Err(e) => AuthTokenPayload::failed(e),
        }
    }

    /// Our extension: registers an e-mail address or phone and sends a verification code
    /// (confirm it with `userLogin` or `userCodeLogin`, which may set the password).
    /// Registering an unconfirmed identity again sends a new code. Rate-limited.
    async fn user_register(&self, ctx: &Context<'_>, input: UserRegisterInput) -> SuccessPayload {
        let identity = match identity(input.email.as_ref(), input.phone.as_ref()) {
            Ok(i) => i,
            Err(e) => return SuccessPayload::failed(e),
        };
        if let Err(e) = rate_limit(ctx, LimitedOp::Register, &identity).await {
            return SuccessPayload::failed(e);
        }
        match app(ctx).bank.register(&identity).await {
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
        if let Err(e) = rate_limit(ctx, LimitedOp::Code, &identity).await {
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

async fn code_login(
    ctx: &Context<'_>,
    identity: Identity,
    code: &str,
    password: Option<&NewPassword>,
) -> AuthTokenPayload {
    if let Err(e) = rate_limit(ctx, LimitedOp::Login, &identity).await {
        return AuthTokenPayload::failed(e);
    }
    match app(ctx)
        .bank
        .confirm_code_with_password(&identity, code, password)
        .await
    {
        Ok((session, _)) => AuthTokenPayload::token(&session.token),
        Err(e) => AuthTokenPayload::failed(e),
    }
}
