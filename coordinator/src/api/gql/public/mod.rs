//! The public GraphQL schema (`/graphql`), Blink-compatible where the domain has the same
//! operation. Authentication failures and missing scopes are top-level errors with
//! `extensions.code` (as Blink's `NOT_AUTHENTICATED`/`NOT_AUTHORIZED`); business failures of
//! a mutation are payload errors `errors { message path code }` with status `FAILURE`.

mod accounts;
mod auth;
mod callbacks;
mod invoices;
mod language;
mod lightning;
mod ln_status;
mod lnurl;
mod onchain;
mod payments;
mod updates;

use async_graphql::{Context, Interface, Object, Result, SimpleObject};

use super::types::gql;
use crate::api::RequestMeta;
use crate::api::errors::ApiError;
use crate::bank::{Principal, Scope};

pub use accounts::Email;
pub(crate) use onchain::{wallet_by_address, wallet_pending};

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
// The public query root, merged from one object per domain (no description in the SDL).
#[derive(async_graphql::MergedObject, Debug, Default)]
pub struct Query(accounts::AccountQuery, lightning::LightningQuery);

// The public mutation root, merged from one object per domain (no description in the SDL).
#[derive(async_graphql::MergedObject, Debug, Default)]
pub struct Mutation(
    payments::PaymentMutation,
    accounts::AccountMutation,
    auth::AuthMutation,
    onchain::OnChainMutation,
    language::LanguageMutation,
    invoices::InvoiceMutation,
    lightning::LightningMutation,
    callbacks::CallbackMutation,
    lnurl::LnurlMutation,
);

// The public subscription root, merged from one object per domain (no description in the
// SDL).
#[derive(async_graphql::MergedSubscription, Debug, Default)]
pub struct Subscription(
    updates::UpdatesSubscription,
    ln_status::LnStatusSubscription,
);
