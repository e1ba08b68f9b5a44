//! Blink's callback endpoints (webhooks): `callbackEndpointAdd`, `callbackEndpointDelete`
//! and the account's `callbackEndpoints`. Events are signed in Svix's format with the
//! endpoint's secret, which Blink's payload has no field for: ours adds `signingSecret`,
//! given once, by the call that creates the endpoint (docs/adr/0017-webhooks.md).

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};

use super::{ErrorInterface, SuccessPayload, payload_error, payload_error_at, principal};
use crate::api::errors::ApiError;
use crate::api::gql::scalars::{EndpointIdScalar, EndpointUrlScalar};
use crate::api::gql::types::app;
use crate::bank::Scope;
use crate::ids::AccountId;
use crate::webhooks::{self, EndpointId, EndpointUrl, WebhookError};

/// A URL the account's payment events are sent to.
#[derive(SimpleObject, Clone, Debug)]
pub struct CallbackEndpoint {
    /// Its id.
    pub id: EndpointIdScalar,
    /// The URL.
    pub url: EndpointUrlScalar,
}

/// Add a callback endpoint.
#[derive(InputObject, Debug)]
pub struct CallbackEndpointAddInput {
    /// callback endpoint to be called
    pub url: EndpointUrlScalar,
}

/// The endpoint added, or why not.
#[derive(SimpleObject, Debug)]
pub struct CallbackEndpointAddPayload {
    /// Why it failed.
    pub errors: Vec<ErrorInterface>,
    /// The endpoint (also when the account had this URL already).
    pub id: Option<EndpointIdScalar>,
    /// Ours, not Blink's: the endpoint's signing secret (`whsec_...`, Svix's format), to
    /// verify the `svix-signature` of every event. Shown only by the call that creates the
    /// endpoint; for a new secret, delete the endpoint and add it again.
    pub signing_secret: Option<String>,
}

/// Delete a callback endpoint.
#[derive(InputObject, Debug)]
pub struct CallbackEndpointDeleteInput {
    /// The endpoint.
    pub id: EndpointIdScalar,
}

fn failed(e: &WebhookError) -> ApiError {
    ApiError::from(e)
}

/// The account's endpoints (the `callbackEndpoints` field of its account).
pub(super) async fn of_account(
    ctx: &Context<'_>,
    account: AccountId,
) -> Result<Vec<CallbackEndpoint>> {
    let list = webhooks::endpoints(app(ctx).bank.ledger().pool(), account)
        .await
        .map_err(|e| failed(&e).to_graphql())?;
    Ok(list
        .into_iter()
        .map(|e| CallbackEndpoint {
            id: EndpointIdScalar(e.id.to_string()),
            url: EndpointUrlScalar(e.url),
        })
        .collect())
}

/// Callback endpoint mutations.
#[derive(Debug, Default)]
pub struct CallbackMutation;

#[Object]
impl CallbackMutation {
    /// Adds a URL the account's payment events are POSTed to, signed (needs the write
    /// scope). `https` only (`http` to a loopback host for development); at most 10 per
    /// account. Idempotent: the same URL again answers the same endpoint.
    async fn callback_endpoint_add(
        &self,
        ctx: &Context<'_>,
        input: CallbackEndpointAddInput,
    ) -> Result<CallbackEndpointAddPayload> {
        let p = principal(ctx, Scope::Write)?;
        let fail = |errors| CallbackEndpointAddPayload {
            errors,
            id: None,
            signing_secret: None,
        };
        let url: EndpointUrl = match input.url.0.parse() {
            Ok(u) => u,
            Err(e) => return Ok(fail(payload_error_at(failed(&e), &["input", "url"]))),
        };
        match webhooks::add_endpoint(app(ctx).bank.ledger().pool(), p.account_id, &url).await {
            Ok(added) => Ok(CallbackEndpointAddPayload {
                errors: Vec::new(),
                id: Some(EndpointIdScalar(added.id.to_string())),
                signing_secret: added.secret.map(|s| s.expose().to_owned()),
            }),
            Err(e @ (WebhookError::TooManyEndpoints { .. } | WebhookError::NotFound)) => {
                Ok(fail(payload_error(failed(&e))))
            }
            Err(e) => Err(failed(&e).to_graphql()),
        }
    }

    /// Deletes one of the account's callback endpoints and its undelivered events (needs
    /// the write scope). Another account's endpoint answers NOT_FOUND.
    async fn callback_endpoint_delete(
        &self,
        ctx: &Context<'_>,
        input: CallbackEndpointDeleteInput,
    ) -> Result<SuccessPayload> {
        let p = principal(ctx, Scope::Write)?;
        let Ok(id) = input.id.0.parse::<EndpointId>() else {
            return Ok(SuccessPayload::failed(ApiError::invalid(
                "invalid id: not a callback endpoint id",
            )));
        };
        match webhooks::delete_endpoint(app(ctx).bank.ledger().pool(), p.account_id, id).await {
            Ok(()) => Ok(SuccessPayload::ok()),
            Err(e @ WebhookError::NotFound) => Ok(SuccessPayload::failed(failed(&e))),
            Err(e) => Err(failed(&e).to_graphql()),
        }
    }
}
