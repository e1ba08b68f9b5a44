//! Policies and signing requests: `GET /v1/policies`, `POST /v1/signing-requests`,
//! `GET /v1/signing-requests`, `GET /v1/signing-requests/{id}`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::decide::needs_quorum;
use super::signing::submit;
use super::views::{
    PolicyList, PolicyView, SigningRequestPage, SigningRequestView, SubmitSigningRequest,
};
use super::{ApiError, ApiJson, AppState, AuthClient, ErrorBody};
use crate::store::{RequestId, RequestStatus};

const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/policies", get(list_policies))
        .route("/signing-requests", get(list_requests).post(create_request))
        .route("/signing-requests/{id}", get(get_request))
}

/// The policies this client may submit to, with their rules.
#[utoipa::path(
    get,
    path = "/v1/policies",
    tag = "policies",
    security(("bearer" = [])),
    responses(
        (status = 200, body = PolicyList),
        (status = 401, body = ErrorBody),
    )
)]
pub(crate) async fn list_policies(
    State(state): State<AppState>,
    AuthClient(client): AuthClient,
) -> Result<Json<PolicyList>, ApiError> {
    let mut policies = Vec::new();
    for registered in state.store().policies().await? {
        let doc = &registered.document;
        let id = doc.id.to_string();
        if !client.may_use(&id) {
            continue;
        }
        policies.push(PolicyView {
            id,
            name: doc.name.clone(),
            state: registered.state,
            template: doc.template.clone(),
            needs_quorum: needs_quorum(doc),
            document: serde_json::to_value(doc.as_ref())
                .map_err(|e| ApiError::Internal(e.to_string()))?,
        });
    }
    Ok(Json(PolicyList { policies }))
}

/// Submits a PSBT for signing under a policy.
///
/// `201` for a new request, `200` for a replay of an identical one (same
/// idempotency key and body: the same answer, the same signature).
#[utoipa::path(
    post,
    path = "/v1/signing-requests",
    tag = "signing-requests",
    security(("bearer" = [])),
    request_body = SubmitSigningRequest,
    responses(
        (status = 201, description = "decided: signed, refused or pending_approval", body = SigningRequestView),
        (status = 200, description = "replay of an earlier identical request", body = SigningRequestView),
        (status = 400, description = "BODY_NOT_JSON, INVALID_FIELD, PSBT_MALFORMED", body = ErrorBody),
        (status = 401, description = "UNAUTHENTICATED", body = ErrorBody),
        (status = 403, description = "POLICY_FORBIDDEN", body = ErrorBody),
        (status = 404, description = "UNKNOWN_POLICY", body = ErrorBody),
        (status = 409, description = "IDEMPOTENCY_CONFLICT, POLICY_RETIRED", body = ErrorBody),
        (status = 503, description = "HSM_* or DATABASE_UNAVAILABLE: nothing stored, nothing signed", body = ErrorBody),
    )
)]
pub(crate) async fn create_request(
    State(state): State<AppState>,
    AuthClient(client): AuthClient,
    ApiJson(body): ApiJson<SubmitSigningRequest>,
) -> Result<(StatusCode, Json<SigningRequestView>), ApiError> {
    let submitted = submit(&state, &client, body).await?;
    let status = if submitted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(SigningRequestView::from(&submitted.record))))
}

/// Filters of `GET /v1/signing-requests`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// `pending_approval`, `signed` or `refused`.
    status: Option<String>,
    /// Page size (default 50, at most 500).
    limit: Option<i64>,
    /// The `next_before` of the previous page.
    before: Option<String>,
}

/// Signing requests under this client's policies, newest first, paged.
#[utoipa::path(
    get,
    path = "/v1/signing-requests",
    tag = "signing-requests",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, body = SigningRequestPage),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
    )
)]
pub(crate) async fn list_requests(
    State(state): State<AppState>,
    AuthClient(client): AuthClient,
    Query(query): Query<ListQuery>,
) -> Result<Json<SigningRequestPage>, ApiError> {
    let status = query
        .status
        .as_deref()
        .map(|s| {
            RequestStatus::parse(s).ok_or(ApiError::InvalidField {
                field: "status",
                reason: "pending_approval, signed or refused".into(),
            })
        })
        .transpose()?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::InvalidField {
            field: "limit",
            reason: format!("1 to {MAX_PAGE}"),
        });
    }
    let before = query
        .before
        .as_deref()
        .map(|b| {
            Uuid::parse_str(b)
                .map(RequestId)
                .map_err(|_| ApiError::InvalidField {
                    field: "before",
                    reason: "a request id".into(),
                })
        })
        .transpose()?;
    let records = state
        .store()
        .list_requests(status, Some(&client.policies), before, limit)
        .await?;
    let next_before = (records.len() as i64 == limit)
        .then(|| records.last().map(|r| r.id.to_string()))
        .flatten();
    Ok(Json(SigningRequestPage {
        requests: records.iter().map(SigningRequestView::from).collect(),
        next_before,
    }))
}

/// One signing request.
#[utoipa::path(
    get,
    path = "/v1/signing-requests/{id}",
    tag = "signing-requests",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "the request id")),
    responses(
        (status = 200, body = SigningRequestView),
        (status = 401, body = ErrorBody),
        (status = 404, description = "UNKNOWN_REQUEST", body = ErrorBody),
    )
)]
pub(crate) async fn get_request(
    State(state): State<AppState>,
    AuthClient(client): AuthClient,
    Path(id): Path<String>,
) -> Result<Json<SigningRequestView>, ApiError> {
    let unknown = || ApiError::UnknownRequest(id.clone());
    let uuid = Uuid::parse_str(&id).map_err(|_| unknown())?;
    let record = state
        .store()
        .request(RequestId(uuid))
        .await?
        .filter(|r| client.may_use(&r.policy_id))
        .ok_or_else(unknown)?;
    Ok(Json(SigningRequestView::from(&record)))
}
